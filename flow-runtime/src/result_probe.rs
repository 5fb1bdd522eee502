//! Whether an operation's output type is a `Result`, and whether encoded output bytes
//! are its `Err`: how a tolerant map counts a child workflow that returned `Err` as a
//! failed item, as it counts a task's `Err`, without the child's type at hand.

use serde::de::{self, DeserializeOwned, Visitor};

/// True if `T` is `Result<_, _>` (as serde sees it: an enum named `Result` with the
/// variants `Ok` and `Err`).
pub fn is_result<T: DeserializeOwned>() -> bool {
    matches!(T::deserialize(Probe), Err(Answer::Result))
}

/// True if `bytes` encode the `Err` variant of a `Result` (postcard writes the variant
/// index first, as a varint: 1 is `Err`).
pub fn encodes_err(bytes: &[u8]) -> bool {
    bytes.first() == Some(&1)
}

/// A deserializer that reads nothing and only reports which kind of type asked.
struct Probe;

#[derive(Debug)]
enum Answer {
    Result,
    Other,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Answer {}

impl de::Error for Answer {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Answer::Other
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Answer;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Answer> {
        Err(Answer::Other)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Answer> {
        if name == "Result" && variants == ["Ok", "Err"] {
            Err(Answer::Result)
        } else {
            Err(Answer::Other)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_told_from_other_types() {
        assert!(is_result::<Result<u64, String>>());
        assert!(is_result::<Result<(), ()>>());
        assert!(!is_result::<Option<u64>>());
        assert!(!is_result::<u64>());
        assert!(!is_result::<Vec<Result<u64, String>>>());
        let err = postcard::to_allocvec(&Result::<u64, String>::Err("no".into())).unwrap();
        let ok = postcard::to_allocvec(&Result::<u64, String>::Ok(1)).unwrap();
        assert!(encodes_err(&err));
        assert!(!encodes_err(&ok));
    }
}
