//! How a race's winner is stored: the array `[index, value]`.
//!
//! The engine builds a race's output without knowing whether the workflow awaits an
//! [`Either`], a [`OneOf3`] or the `(usize, T)` of [`race`](crate::race) (see
//! `output.rs`), so all three are written alike: the winner's index, then its value. An
//! index the type does not have is an error.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};

use crate::race::{Either, OneOf3};

fn winner<S: Serializer, T: Serialize>(s: S, index: u32, value: &T) -> Result<S::Ok, S::Error> {
    let mut tuple = s.serialize_tuple(2)?;
    tuple.serialize_element(&index)?;
    tuple.serialize_element(value)?;
    tuple.end()
}

impl<A: Serialize, B: Serialize> Serialize for Either<A, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Either::Left(a) => winner(s, 0, a),
            Either::Right(b) => winner(s, 1, b),
        }
    }
}

impl<A: Serialize, B: Serialize, C: Serialize> Serialize for OneOf3<A, B, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOf3::First(a) => winner(s, 0, a),
            OneOf3::Second(b) => winner(s, 1, b),
            OneOf3::Third(c) => winner(s, 2, c),
        }
    }
}

/// Reads `[index, value]` into `T`, given how to read the value at each index.
struct WinnerVisitor<T> {
    /// What `T` is, for errors.
    expecting: &'static str,
    /// How many indexes `T` has.
    arms: u32,
    _type: PhantomData<fn() -> T>,
}

/// A race's result type: reads the value for `index` from the rest of the array.
trait ReadWinner<'de>: Sized {
    fn read<S: SeqAccess<'de>>(index: u32, seq: &mut S) -> Result<Option<Self>, S::Error>;
}

impl<'de, A: Deserialize<'de>, B: Deserialize<'de>> ReadWinner<'de> for Either<A, B> {
    fn read<S: SeqAccess<'de>>(index: u32, seq: &mut S) -> Result<Option<Self>, S::Error> {
        Ok(match index {
            0 => seq.next_element()?.map(Either::Left),
            _ => seq.next_element()?.map(Either::Right),
        })
    }
}

impl<'de, A: Deserialize<'de>, B: Deserialize<'de>, C: Deserialize<'de>> ReadWinner<'de>
    for OneOf3<A, B, C>
{
    fn read<S: SeqAccess<'de>>(index: u32, seq: &mut S) -> Result<Option<Self>, S::Error> {
        Ok(match index {
            0 => seq.next_element()?.map(OneOf3::First),
            1 => seq.next_element()?.map(OneOf3::Second),
            _ => seq.next_element()?.map(OneOf3::Third),
        })
    }
}

impl<'de, T: ReadWinner<'de>> Visitor<'de> for WinnerVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} as [index, value]", self.expecting)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<T, S::Error> {
        let index: u32 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if index >= self.arms {
            return Err(de::Error::custom(format_args!(
                "{} has no arm {index} (it has {})",
                self.expecting, self.arms
            )));
        }
        T::read(index, &mut seq)?.ok_or_else(|| de::Error::invalid_length(1, &self))
    }
}

fn read<'de, D: Deserializer<'de>, T: ReadWinner<'de>>(
    d: D,
    expecting: &'static str,
    arms: u32,
) -> Result<T, D::Error> {
    d.deserialize_tuple(
        2,
        WinnerVisitor {
            expecting,
            arms,
            _type: PhantomData,
        },
    )
}

impl<'de, A: Deserialize<'de>, B: Deserialize<'de>> Deserialize<'de> for Either<A, B> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d, "Either", 2)
    }
}

impl<'de, A: Deserialize<'de>, B: Deserialize<'de>, C: Deserialize<'de>> Deserialize<'de>
    for OneOf3<A, B, C>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d, "OneOf3", 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn winners_round_trip_and_wrong_arms_are_refused() {
        for value in [Either::Left(5u32), Either::Right(6u32)] {
            let bytes = encode(&value, String::new).unwrap();
            assert_eq!(
                decode::<Either<u32, u32>>(&bytes, String::new).unwrap(),
                value
            );
        }
        let third = encode(&OneOf3::<u8, u8, String>::Third("x".into()), String::new).unwrap();
        assert_eq!(
            decode::<OneOf3<u8, u8, String>>(&third, String::new).unwrap(),
            OneOf3::Third("x".into())
        );
        // Index 2 is not an arm of `Either`: an error, not the last arm.
        let error = decode::<Either<u8, String>>(&third, String::new).unwrap_err();
        assert!(error.to_string().contains("no arm 2"), "{error}");
        // A value of the wrong type for its arm.
        let left = encode(&Either::<i32, u8>::Left(-1), String::new).unwrap();
        assert!(decode::<Either<u32, u8>>(&left, String::new).is_err());
    }
}
