//! The output wire format: the bytes a finished durable operation hands its workflow.
//!
//! An operation's output is what the generated code decodes (`codec::decode`, MessagePack
//! with named fields) into the type its `.await` evaluates to, so the engine builds
//! outputs exactly as `codec::encode` writes those types, often around bytes it already
//! holds (a task's encoded result, a signal's payload) rather than decoding and encoding
//! them again:
//!
//! - a value `T`: its encoding (`codec::encode`); `()` (a sleep) is nil;
//! - `Result<T, E>`: a one-entry map from the variant's name to the value, `{"Ok": v}`
//!   or `{"Err": e}`;
//! - a join `(A, B, ...)`: an array of the branches' outputs;
//! - a race: the array `[winner's index, its output]`, which is how `(usize, T)` (for
//!   `race`) is written and how [`Either`](crate::Either) and
//!   [`OneOf3`](crate::OneOf3) are written too (see `race.rs`);
//! - a map `Vec<T>`: an array of the items' outputs in order; a map with a failure
//!   tolerance outputs `Result<Vec<T>, MapFailed>`.
//!
//! These bytes are also stored (branch records, run outputs), so they are part of the
//! on-disk format. Everything that builds them is here.

use std::time::Duration;

use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::durable::SignalTimeout;

/// `{"Ok": ..}`: a one-entry map (0x81), then the key "Ok" as a 2-byte string (0xa2).
const OK: &[u8] = &[0x81, 0xa2, b'O', b'k'];
/// `{"Err": ..}`: a one-entry map, then the key "Err" as a 3-byte string (0xa3).
const ERR: &[u8] = &[0x81, 0xa3, b'E', b'r', b'r'];

/// Appends the header of a MessagePack array of `len` items.
pub(crate) fn push_array_header(len: u32, out: &mut Vec<u8>) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xdc);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends `n` as a MessagePack unsigned integer, in its shortest form.
pub(crate) fn push_uint(n: u32, out: &mut Vec<u8>) {
    if n < 128 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The output of an operation whose type is `()` (a sleep).
pub(crate) fn unit() -> Vec<u8> {
    codec::encode(&(), String::new).unwrap_or_default()
}

/// `Ok(value)` around `value`'s encoding, as it is.
pub(crate) fn ok_bytes(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + OK.len());
    out.extend_from_slice(OK);
    out.extend_from_slice(value);
    out
}

/// The encoded `Ok(value)` of an output typed `Result<T, _>`; `what` names the value in
/// an encoding error.
pub(crate) fn ok<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, CodecError> {
    Ok(ok_bytes(&codec::encode(value, || what.to_string())?))
}

/// The encoded `Err(error)` of an output typed `Result<_, E>`; `what` names the error in
/// an encoding error.
pub(crate) fn err<E: Serialize>(error: &E, what: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = ERR.to_vec();
    out.extend(codec::encode(error, || what.to_string())?);
    Ok(out)
}

/// A race's output: `[winner, output]`.
pub(crate) fn race(winner: u32, output: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(output.len() + 6);
    push_array_header(2, &mut out);
    push_uint(winner, &mut out);
    out.extend_from_slice(output);
    out
}

/// A join's output: the array of its branches' outputs, in branch order.
pub(crate) fn join<'a>(outputs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let outputs: Vec<&[u8]> = outputs.into_iter().collect();
    let mut out = Vec::with_capacity(5 + outputs.iter().map(|o| o.len()).sum::<usize>());
    push_array_header(outputs.len() as u32, &mut out);
    for output in outputs {
        out.extend_from_slice(output);
    }
    out
}

/// The output of a join with joins inside: its leaves' outputs (in order) nested as the
/// joins are, by `layout` (see `store::join_layout`: each join's part count in pre-order,
/// 0 for a leaf).
pub(crate) fn nested_join<'a>(
    layout: &[u32],
    leaves: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    fn node<'a>(
        layout: &mut std::slice::Iter<'_, u32>,
        leaves: &mut impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) {
        match layout.next() {
            Some(0) => out.extend_from_slice(leaves.next().unwrap_or_default()),
            Some(&parts) => {
                push_array_header(parts, out);
                for _ in 0..parts {
                    node(layout, leaves, out);
                }
            }
            None => {}
        }
    }
    let mut out = Vec::new();
    node(&mut layout.iter(), &mut leaves.into_iter(), &mut out);
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
        out.extend_from_slice(OK);
    }
    push_array_header(len, &mut out);
    for output in outputs {
        out.extend_from_slice(output);
    }
    out
}

/// The output of a signal wait that received `payload`.
///
/// A wait with a timeout outputs a `Result<T, SignalTimeout>`: the payload inside `Ok`.
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
    use crate::race::{Either, OneOf3};

    fn enc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        codec::encode(value, String::new).unwrap()
    }

    #[test]
    fn signal_outputs_match_the_codec() {
        let payload = enc(&42u32);
        let ok: Result<u32, SignalTimeout> = Ok(42);
        assert_eq!(signal_received(payload.clone(), true), enc(&ok));
        assert_eq!(signal_received(payload.clone(), false), payload);

        let after = Duration::from_millis(1500);
        let err: Result<u32, SignalTimeout> = Err(SignalTimeout {
            signal: "approval".into(),
            after,
        });
        assert_eq!(signal_timed_out("approval", after).unwrap(), enc(&err));

        let back: Result<String, SignalTimeout> =
            codec::decode(&signal_received(enc("yes"), true), String::new).unwrap();
        assert_eq!(back, Ok("yes".to_string()));
    }

    #[test]
    fn headers_and_integers_match_the_codec() {
        for n in [
            0u32,
            1,
            15,
            16,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX,
        ] {
            let mut out = Vec::new();
            push_uint(n, &mut out);
            assert_eq!(out, enc(&n), "{n}");
            assert_eq!(codec::decode::<u32>(&out, String::new).unwrap(), n);
            let items = vec![(); n.min(70_000) as usize];
            let mut out = Vec::new();
            push_array_header(items.len() as u32, &mut out);
            out.extend(std::iter::repeat_n(0xc0, items.len()));
            assert_eq!(out, enc(&items), "{n}");
        }
    }

    #[test]
    fn outputs_match_the_codec() {
        let five = enc(&5u32);
        let six = enc(&6u32);
        assert_eq!(ok_bytes(&five), enc(&Ok::<u32, String>(5)));
        assert_eq!(ok(&5u32, "x").unwrap(), enc(&Ok::<u32, String>(5)));
        assert_eq!(err(&"no", "x").unwrap(), enc(&Err::<u32, &str>("no")));
        assert_eq!(race(1, &six), enc(&(1usize, 6u32)));
        assert_eq!(race(300, &six), enc(&(300usize, 6u32)));
        assert_eq!(race(0, &five), enc(&Either::<u32, u32>::Left(5)));
        assert_eq!(race(1, &six), enc(&Either::<u32, u32>::Right(6)));
        assert_eq!(race(2, &six), enc(&OneOf3::<u8, u8, u32>::Third(6)));
        assert_eq!(join([five.as_slice(), six.as_slice()]), enc(&(5u32, 6u32)));
        let seven = enc(&7u32);
        assert_eq!(
            nested_join(&[2, 0, 2, 0, 0], [five.as_slice(), six.as_slice(), &seven]),
            enc(&(5u32, (6u32, 7u32)))
        );
        assert_eq!(
            map(false, 2, [five.as_slice(), six.as_slice()]),
            enc(&vec![5u32, 6])
        );
        assert_eq!(
            map(true, 2, [five.as_slice(), six.as_slice()]),
            enc(&Ok::<Vec<u32>, String>(vec![5, 6]))
        );
        assert_eq!(unit(), enc(&()));
    }
}
