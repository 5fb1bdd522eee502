//! The encoding of user values: workflow inputs and outputs, task arguments and results,
//! saved locals, signal and callback payloads, map items' arguments, operation outputs.
//!
//! Values are MessagePack with named fields (`rmp-serde`, structs as maps keyed by field
//! name, enum variants by name, serde's human-readable forms), so that:
//!
//! - any stored value can be read without the user's types ([`to_json`]);
//! - serde's evolution rules hold: a field added with `#[serde(default)]` (or of an
//!   `Option` type), a field removed, a variant added, fields reordered all read back;
//! - a value read as a type it does not fit is an error, never another value (`-5` is
//!   not a `u32`, `true` is not an integer, variant `Yes` is not variant `Approved`).
//!
//! The engine's own records stay in postcard (`store::records`): they are smaller and
//! change only with a journal format change. How operation outputs are assembled from
//! these values is in `output.rs`.
//!
//! One serde limit remains: `None` and `Some(x)` where `x` itself encodes as nil (`()`,
//! an inner `None`) look the same, so `Option<Option<T>>` reads `Some(None)` back as
//! `None`, as it does in every self-describing format.

use std::io::Cursor;

use serde::{de::DeserializeOwned, Serialize};

/// Largest payload (input, local, step result) the engine stores, in bytes.
///
/// Larger values are refused with [`CodecError::TooLarge`] instead of bloating the journal:
/// keep big data outside the run (in a blob store) and pass references.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// A value could not be encoded to or decoded from its stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Serialization failed (a serde impl returned an error).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// What was being encoded (e.g. "input of workflow `place_order`").
        what: String,
        /// The serializer's message.
        message: String,
    },
    /// The stored bytes do not decode as the type the code now expects.
    #[error(
        "stored {what} does not fit the type the code expects ({message}); the type \
         probably changed incompatibly since the value was written: restore the old type \
         or migrate the run"
    )]
    Decode {
        /// What was being decoded.
        what: String,
        /// The deserializer's message.
        message: String,
    },
    /// The encoded value is larger than [`MAX_PAYLOAD_BYTES`].
    #[error(
        "{what} is {size} bytes, over the {limit}-byte payload limit; store large data \
         elsewhere and pass a reference (a key or URL) through the workflow"
    )]
    TooLarge {
        /// What was being encoded.
        what: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Encodes `value`, refusing payloads over [`MAX_PAYLOAD_BYTES`].
pub fn encode<T: Serialize + ?Sized>(
    value: &T,
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = Vec::new();
    let mut serializer = rmp_serde::Serializer::new(&mut bytes)
        .with_struct_map()
        .with_human_readable();
    if let Err(e) = value.serialize(&mut serializer) {
        return Err(CodecError::Encode {
            what: what(),
            message: e.to_string(),
        });
    }
    within_limit(bytes.len(), what).map(|()| bytes)
}

/// Refuses an encoding of `size` bytes over [`MAX_PAYLOAD_BYTES`] (also for values
/// encoded elsewhere, handed over as bytes).
pub(crate) fn within_limit(size: usize, what: impl FnOnce() -> String) -> Result<(), CodecError> {
    if size > MAX_PAYLOAD_BYTES {
        return Err(CodecError::TooLarge {
            what: what(),
            size,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// Decodes `bytes` as a `T`; a value that does not fit `T`, or bytes left over after
/// it, are an error.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, CodecError> {
    let mut deserializer = rmp_serde::Deserializer::new(Cursor::new(bytes)).with_human_readable();
    let message = match T::deserialize(&mut deserializer) {
        Ok(value) => {
            let used = deserializer.get_ref().position() as usize;
            if used == bytes.len() {
                return Ok(value);
            }
            format!("{} unexpected bytes after the value", bytes.len() - used)
        }
        Err(e) => e.to_string(),
    };
    Err(CodecError::Decode {
        what: what(),
        message,
    })
}

/// Renders a stored value as JSON, without its Rust type: structs are objects keyed by
/// field name, enum variants `"Unit"` or `{"Variant": value}`, sequences and tuples
/// arrays, `()` and `None` `null`.
///
/// What JSON cannot say directly: byte strings become arrays of numbers, map keys that
/// are not strings become their JSON text (`{"1": ..}`, `{"[1,2]": ..}`), NaN and the
/// infinities become the strings `"NaN"`, `"inf"` and `"-inf"`. The rendering is for
/// reading: it cannot be decoded back into the stored bytes.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Order { id: u64, express: bool }
/// let bytes = flow_runtime::codec::encode(&Order { id: 7, express: true }, String::new).unwrap();
/// assert_eq!(flow_runtime::codec::to_json(&bytes).unwrap(), r#"{"id":7,"express":true}"#);
/// ```
pub fn to_json(bytes: &[u8]) -> Result<String, CodecError> {
    let value: crate::json::Json = decode(bytes, || "value".to_string())?;
    Ok(value.0)
}
