//! Whether a completed run succeeded: a workflow that returns `Result` and returned `Err`
//! ran to its end but failed, and listings must say so.
//!
//! The journal stores only the encoded output, and the engine knows the output's type
//! only through the registered workflow. So the output is decoded as that type and
//! serialized into [`ErrProbe`], which looks at nothing but the outermost value: serde
//! serializes `Result::Err(e)` as the newtype variant `Err` of the enum `Result`.

use serde::ser::{self, Impossible, Serialize, Serializer};

use crate::codec;

/// Whether `bytes`, an encoded `T`, hold an `Err`; `None` if they do not decode as `T`.
pub(crate) fn returned_err<T: serde::de::DeserializeOwned + Serialize>(
    bytes: &[u8],
) -> Option<bool> {
    let value: T = codec::decode(bytes, String::new).ok()?;
    Some(is_err(&value))
}

/// Whether `value` is a `Result::Err` (any other type is not).
pub(crate) fn is_err<T: Serialize + ?Sized>(value: &T) -> bool {
    value.serialize(ErrProbe).unwrap_or(false)
}

/// A serializer that answers "is this `Result::Err`?" about the outermost value and stops.
struct ErrProbe;

/// Ends a probe early: the value is a compound, so it is not an `Err`.
#[derive(Debug)]
struct NotAnErr;

impl std::fmt::Display for NotAnErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a Result::Err")
    }
}

impl std::error::Error for NotAnErr {}

impl ser::Error for NotAnErr {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotAnErr
    }
}

type Answer = Result<bool, NotAnErr>;

impl Serializer for ErrProbe {
    type Ok = bool;
    type Error = NotAnErr;
    type SerializeSeq = Impossible<bool, NotAnErr>;
    type SerializeTuple = Impossible<bool, NotAnErr>;
    type SerializeTupleStruct = Impossible<bool, NotAnErr>;
    type SerializeTupleVariant = Impossible<bool, NotAnErr>;
    type SerializeMap = Impossible<bool, NotAnErr>;
    type SerializeStruct = Impossible<bool, NotAnErr>;
    type SerializeStructVariant = Impossible<bool, NotAnErr>;

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Answer {
        Ok(name == "Result" && variant == "Err")
    }

    fn serialize_bool(self, _: bool) -> Answer {
        Ok(false)
    }
    fn serialize_i8(self, _: i8) -> Answer {
        Ok(false)
    }
    fn serialize_i16(self, _: i16) -> Answer {
        Ok(false)
    }
    fn serialize_i32(self, _: i32) -> Answer {
        Ok(false)
    }
    fn serialize_i64(self, _: i64) -> Answer {
        Ok(false)
    }
    fn serialize_u8(self, _: u8) -> Answer {
        Ok(false)
    }
    fn serialize_u16(self, _: u16) -> Answer {
        Ok(false)
    }
    fn serialize_u32(self, _: u32) -> Answer {
        Ok(false)
    }
    fn serialize_u64(self, _: u64) -> Answer {
        Ok(false)
    }
    fn serialize_f32(self, _: f32) -> Answer {
        Ok(false)
    }
    fn serialize_f64(self, _: f64) -> Answer {
        Ok(false)
    }
    fn serialize_char(self, _: char) -> Answer {
        Ok(false)
    }
    fn serialize_str(self, _: &str) -> Answer {
        Ok(false)
    }
    fn serialize_bytes(self, _: &[u8]) -> Answer {
        Ok(false)
    }
    fn serialize_none(self) -> Answer {
        Ok(false)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Answer {
        Ok(false)
    }
    fn serialize_unit(self) -> Answer {
        Ok(false)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Answer {
        Ok(false)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Answer {
        Ok(false)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Answer {
        Ok(false)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotAnErr> {
        Err(NotAnErr)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAnErr> {
        Err(NotAnErr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_err_from_ok_and_plain_outputs() {
        let err = codec::encode(&Err::<u32, String>("no".into()), String::new).unwrap();
        let ok = codec::encode(&Ok::<u32, String>(7), String::new).unwrap();
        let plain = codec::encode(&7u32, String::new).unwrap();
        assert_eq!(returned_err::<Result<u32, String>>(&err), Some(true));
        assert_eq!(returned_err::<Result<u32, String>>(&ok), Some(false));
        assert_eq!(returned_err::<u32>(&plain), Some(false));
        assert_eq!(returned_err::<Vec<u32>>(&[0xff, 0xff]), None);
    }
}
