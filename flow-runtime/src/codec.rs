//! The one binary format used for everything stored: postcard (compact, serde-driven).

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
        "stored {what} no longer deserializes as the type the code expects ({message}); \
         the type probably changed since the value was written: restore the old type or \
         migrate the run"
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
    let bytes = match postcard::to_stdvec(value) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Err(CodecError::Encode {
                what: what(),
                message: e.to_string(),
            })
        }
    };
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(CodecError::TooLarge {
            what: what(),
            size: bytes.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes `bytes` as a `T`; trailing bytes are an error (they mean the type changed).
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, CodecError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::Decode {
            what: what(),
            message: format!("{} unexpected trailing bytes", rest.len()),
        }),
        Err(e) => Err(CodecError::Decode {
            what: what(),
            message: e.to_string(),
        }),
    }
}
