//! The output wire format: the bytes a finished durable operation hands its workflow.
//!
//! An operation's output is what the generated code decodes with postcard into the type
//! its `.await` evaluates to, so the engine builds outputs exactly as postcard encodes
//! those types, often around bytes it already holds (a task's encoded result, a signal's
//! payload) rather than decoding and encoding them again:
//!
//! - a value `T`: its encoding (`codec::encode`);
//! - `Result<T, E>`: the variant index as a varint (one byte, 0 for `Ok`, 1 for `Err`),
//!   then the value;
//! - a join `(A, B, ...)`: the branches' outputs one after the other;
//! - a race (`OneOf2`, `OneOf3`, or `(usize, T)` for `race`): the winner's index as a
//!   varint, then its output;
//! - a map `Vec<T>`: the item count as a varint, then each item's output in order; a map
//!   with a failure tolerance outputs `Result<Vec<T>, MapFailed>`.
//!
//! These bytes are also stored (branch records, run outputs), so they are part of the
//! on-disk format. Everything that builds them is here.

use std::time::Duration;

use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::durable::SignalTimeout;

/// `Result`'s variant index for `Ok`, as postcard writes it.
const OK: u8 = 0;
/// `Result`'s variant index for `Err`, as postcard writes it.
const ERR: u8 = 1;

/// Appends `n` as a postcard varint (how postcard encodes lengths, `usize` and enum
/// variant indexes).
pub(crate) fn push_varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The output of an operation whose type is `()` (a sleep).
pub(crate) fn unit() -> Vec<u8> {
    codec::encode(&(), String::new).unwrap_or_default()
}

/// `Ok(value)` around `value`'s encoding, as it is.
pub(crate) fn ok_bytes(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 1);
    out.push(OK);
    out.extend_from_slice(value);
    out
}

/// The encoded `Ok(value)` of an output typed `Result<T, _>`; `what` names the value in
/// an encoding error.
pub(crate) fn ok<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![OK];
    out.extend(codec::encode(value, || what.to_string())?);
    Ok(out)
}

/// The encoded `Err(error)` of an output typed `Result<_, E>`; `what` names the error in
/// an encoding error.
pub(crate) fn err<E: Serialize>(error: &E, what: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![ERR];
    out.extend(codec::encode(error, || what.to_string())?);
    Ok(out)
}

/// A race's output: the index of the winning branch, then its output.
pub(crate) fn race(winner: u32, output: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(output.len() + 1);
    push_varint(u64::from(winner), &mut out);
    out.extend_from_slice(output);
    out
}

/// A join's output: its branches' outputs, in branch order.
pub(crate) fn join<'a>(outputs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for output in outputs {
        out.extend_from_slice(output);
    }
    out
}

/// A map's output: the `Vec` of its `len` items' outputs (given in item order), inside
/// `Ok` when the map has a failure tolerance (`tolerant`).
pub(crate) fn map<'a>(
    tolerant: bool,
    len: u32,
    outputs: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if tolerant {
        out.push(OK);
    }
    push_varint(u64::from(len), &mut out);
    for output in outputs {
        out.extend_from_slice(output);
    }
    out
}

/// The output of a signal wait that received `payload`.
///
/// A wait with a timeout outputs a `Result<T, SignalTimeout>`, which postcard encodes as
/// the variant index (a varint: one byte 0 for `Ok`) followed by the value, so the payload
/// bytes are reused as they are.
pub(crate) fn signal_received(payload: Vec<u8>, with_timeout: bool) -> Vec<u8> {
    if !with_timeout {
        return payload;
    }
    ok_bytes(&payload)
}

/// The output of a signal wait whose timeout expired: `Err(SignalTimeout)`.
pub(crate) fn signal_timed_out(
    signal: &str,
    after: Duration,
) -> Result<Vec<u8>, codec::CodecError> {
    let timeout = SignalTimeout {
        signal: signal.to_string(),
        after,
    };
    err(&timeout, "signal timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_outputs_match_postcard_results() {
        let payload = codec::encode(&42u32, String::new).unwrap();
        let ok: Result<u32, SignalTimeout> = Ok(42);
        assert_eq!(
            signal_received(payload.clone(), true),
            postcard::to_stdvec(&ok).unwrap()
        );
        assert_eq!(signal_received(payload.clone(), false), payload);

        let after = Duration::from_millis(1500);
        let err: Result<u32, SignalTimeout> = Err(SignalTimeout {
            signal: "approval".into(),
            after,
        });
        assert_eq!(
            signal_timed_out("approval", after).unwrap(),
            postcard::to_stdvec(&err).unwrap()
        );

        let back: Result<String, SignalTimeout> = codec::decode(
            &signal_received(codec::encode("yes", String::new).unwrap(), true),
            String::new,
        )
        .unwrap();
        assert_eq!(back, Ok("yes".to_string()));
    }

    #[test]
    fn varints_match_postcard() {
        for n in [0u64, 1, 127, 128, 300, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            push_varint(n, &mut out);
            assert_eq!(out, postcard::to_stdvec(&n).unwrap(), "{n}");
        }
        let v: Vec<u32> = vec![5, 6];
        let mut out = Vec::new();
        push_varint(2, &mut out);
        out.extend(postcard::to_stdvec(&5u32).unwrap());
        out.extend(postcard::to_stdvec(&6u32).unwrap());
        assert_eq!(out, postcard::to_stdvec(&v).unwrap());
    }

    #[test]
    fn outputs_match_postcard() {
        let five = postcard::to_stdvec(&5u32).unwrap();
        let six = postcard::to_stdvec(&6u32).unwrap();
        assert_eq!(
            ok_bytes(&five),
            postcard::to_stdvec(&Ok::<u32, String>(5)).unwrap()
        );
        assert_eq!(
            ok(&5u32, "x").unwrap(),
            postcard::to_stdvec(&Ok::<u32, String>(5)).unwrap()
        );
        assert_eq!(
            err(&"no", "x").unwrap(),
            postcard::to_stdvec(&Err::<u32, &str>("no")).unwrap()
        );
        assert_eq!(race(1, &six), postcard::to_stdvec(&(1usize, 6u32)).unwrap());
        assert_eq!(
            join([five.as_slice(), six.as_slice()]),
            postcard::to_stdvec(&(5u32, 6u32)).unwrap()
        );
        assert_eq!(
            map(false, 2, [five.as_slice(), six.as_slice()]),
            postcard::to_stdvec(&vec![5u32, 6]).unwrap()
        );
        assert_eq!(
            map(true, 2, [five.as_slice(), six.as_slice()]),
            postcard::to_stdvec(&Ok::<Vec<u32>, String>(vec![5, 6])).unwrap()
        );
        assert_eq!(unit(), postcard::to_stdvec(&()).unwrap());
    }
}
