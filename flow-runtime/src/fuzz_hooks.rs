//! Entry points for the fuzz targets (`fuzz/`) and the fuzz smoke test: the journal's own
//! record decoders, reachable from outside the crate. Not a public API.

#![doc(hidden)]

use std::hint::black_box;

use serde::de::DeserializeOwned;

use crate::error::FlowError;
use crate::history::EventKind;
use crate::op::OpRequest;
use crate::store::records::{
    decode_record, decode_run_header, BranchRecord, PendingOp, TokenRecord,
};
use crate::store::LoggedBatch;

/// A history row as stored (mirrors `store::read::StoredEvent`: the seq is the key).
#[derive(serde::Deserialize)]
struct StoredEvent {
    _at_ms: u64,
    _kind: EventKind,
}

/// A batch of history events as stored (mirrors `store::read::StoredEvents`).
#[derive(serde::Deserialize)]
struct StoredEvents {
    _at_ms: u64,
    _kinds: Vec<EventKind>,
}

/// Runs every decoder the engine applies to bytes read from its journal (run header,
/// pending step, branch record, map item, callback token, history row and batch, inbox
/// message, a batch of the write-ahead log, a sealed table value, and the write-ahead
/// log's records) on `bytes`.
///
/// Returns each decoder's name and its outcome; a decoder must return `Ok` or a
/// [`FlowError`], never panic.
pub fn decode_stored(bytes: &[u8]) -> Vec<(&'static str, Result<(), FlowError>)> {
    fn run<T: DeserializeOwned, R>(
        bytes: &[u8],
        what: &'static str,
        check: impl FnOnce(T) -> R,
    ) -> (&'static str, Result<(), FlowError>) {
        (
            what,
            decode_record::<T>(bytes, what).map(|v| {
                black_box(check(v));
            }),
        )
    }
    vec![
        (
            "run header",
            decode_run_header(bytes).map(|r| {
                black_box((r.status.is_settled(), r.status.to_public().to_string()));
            }),
        ),
        run(bytes, "pending step", |op: PendingOp| op.is_multi()),
        run(bytes, "branch record", |r: BranchRecord| r.is_finished()),
        run(bytes, "map item", |op: OpRequest| op.label()),
        run(bytes, "callback token", |t: TokenRecord| t.used),
        run(bytes, "history event", |_: StoredEvent| ()),
        run(bytes, "history events", |_: StoredEvents| ()),
        run(bytes, "inbox message", |_: (String, Vec<u8>)| ()),
        (
            "logged batch",
            LoggedBatch::decode(bytes).map(|(now, changes)| {
                black_box((now, changes.len()));
            }),
        ),
        ("sealed value", crate::store::unseal_for_fuzzing(bytes)),
        ("write-ahead log", crate::store::read_log_for_fuzzing(bytes)),
    ]
}
