//! Reading a journal's tables directly, as tests that look at its rows do: every value
//! but the meta table's is stored sealed, its bytes followed by their CRC-32 (mirrors
//! `flow-runtime/src/store/tables.rs`, type name included, which redb checks when a
//! table is opened). Included with `#[path]` by the tests that need it.
#![allow(dead_code)]

use std::marker::PhantomData;

use redb::{TypeName, Value};

/// A sealed value of type `T`: `TableDefinition<&str, Sealed<u64>>` opens `flow_nudges`.
#[derive(Debug)]
pub struct Sealed<T>(PhantomData<T>);

impl<T: Value + 'static> Value for Sealed<T> {
    type SelfType<'a>
        = T::SelfType<'a>
    where
        Self: 'a;
    type AsBytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        T::fixed_width().map(|w| w + 4)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Self::SelfType<'a>
    where
        Self: 'a,
    {
        T::from_bytes(&data[..data.len() - 4])
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Self::SelfType<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        let bytes = T::as_bytes(value);
        let mut sealed = bytes.as_ref().to_vec();
        sealed.extend_from_slice(&crc32fast::hash(bytes.as_ref()).to_le_bytes());
        sealed
    }

    fn type_name() -> TypeName {
        TypeName::new(&format!("flow::sealed<{}>", T::type_name().name()))
    }
}
