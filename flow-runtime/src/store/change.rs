//! Changes: everything the engine writes to the journal, as data.
//!
//! The commit pipeline logs a batch of changes to the write-ahead log (`store::wal`)
//! before applying it to redb, and opening a journal replays logged changes that redb
//! had not made durable. Replay is exact because a change's effect depends only on
//! itself, the journal's state and the batch's recorded time, and changes are replayed
//! in the order they were first applied.

use serde::{Deserialize, Serialize};

use super::apply::{StartOutcome, WriteEffects};
use super::retention::RetentionSettings;
use super::transition::{RunWrite, StartWrite};
use super::txn_tables::Tables;
use super::upgrade::UpgradeWrite;
use crate::error::FlowError;

/// One request to change the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Change {
    /// A new run (or the same start again, which changes nothing).
    Start(StartWrite),
    /// A transition of a run, computed by its driver.
    Run(RunWrite),
    /// A signal for a run's inbox.
    Signal {
        run: String,
        signal: String,
        payload: Vec<u8>,
    },
    /// A callback's completion (`output` is the encoded result).
    Complete {
        token: String,
        output: Vec<u8>,
        ok: bool,
    },
    /// A callback's sign of life.
    Heartbeat { token: String },
    /// A request to cancel a run.
    Cancel { run: String },
    /// A faulted run set going again (`Engine::retry_faulted`): applied like a
    /// transition, but only to a run that is faulted and as the write expects.
    RetryFaulted(RunWrite),
    // New variants go last: a variant's index is its log encoding.
    /// A run moved to another version of its workflow (`Engine::upgrade`).
    Upgrade(UpgradeWrite),
    /// The engine's retention settings, written when it opens with other settings than
    /// the journal holds.
    SetRetention(RetentionSettings),
    /// Deletes a finished or faulted run (`Engine::purge`).
    Purge { run: String },
    /// Deletes those of these runs whose expiry has passed (the retention service).
    Expire { runs: Vec<String> },
    /// A failed, cancelled or faulted run set going again (`Engine::redrive`): its
    /// pending step's unfinished branch records are dropped (fresh attempts), its expiry
    /// too, then the write is applied like a transition.
    Redrive(RunWrite),
    /// A change from outside a run (a signal, cancellation, callback completion or
    /// heartbeat) applied at most once per request ID (`Engine::deliver`): applied with
    /// the ID recorded, or nothing at all if the ID is recorded already.
    Deliver {
        request: String,
        change: Box<Change>,
    },
    /// Deletes recorded request IDs (`Engine::forget_deliveries`).
    ForgetDeliveries { requests: Vec<String> },
}

/// What applying a [`Change`] did, variant for variant.
#[derive(Debug)]
pub(crate) enum Applied {
    Started(StartOutcome),
    Ran(WriteEffects),
    Signalled,
    /// The run that waits for the completed callback.
    Completed(String),
    /// The callback's new heartbeat deadline, if it has one.
    Heartbeat(Option<u64>),
    Cancelled,
    Upgraded,
    RetentionSet,
    Purged,
    /// How many of the runs were deleted.
    Expired(usize),
    /// What a delivery's change did; `None` if its request ID was recorded already.
    Delivered(Option<Box<Applied>>),
    DeliveriesForgotten,
}

impl Change {
    /// Applies the change at time `now_ms` (ms since the Unix epoch). Logical errors
    /// (conflicts, unknown runs, refused tokens) come before any write.
    pub(crate) fn apply(&self, tables: &mut Tables<'_>, now_ms: u64) -> Result<Applied, FlowError> {
        Ok(match self {
            Change::Start(start) => Applied::Started(tables.apply_start(start, now_ms)?),
            Change::Run(write) => Applied::Ran(tables.apply_run_write(write, now_ms)?),
            Change::Signal {
                run,
                signal,
                payload,
            } => {
                tables.append_signal(run, signal, payload, now_ms)?;
                Applied::Signalled
            }
            Change::Complete { token, output, ok } => {
                Applied::Completed(tables.complete_callback(token, output.clone(), *ok, now_ms)?)
            }
            Change::Heartbeat { token } => {
                Applied::Heartbeat(tables.heartbeat_callback(token, now_ms)?)
            }
            Change::Cancel { run } => {
                tables.request_cancel(run, now_ms)?;
                Applied::Cancelled
            }
            Change::RetryFaulted(write) => Applied::Ran(tables.apply_fault_retry(write, now_ms)?),
            Change::Upgrade(write) => {
                tables.apply_upgrade(write, now_ms)?;
                Applied::Upgraded
            }
            Change::SetRetention(settings) => {
                tables.set_retention(settings)?;
                Applied::RetentionSet
            }
            Change::Purge { run } => {
                tables.purge(run)?;
                Applied::Purged
            }
            Change::Expire { runs } => Applied::Expired(tables.expire(runs, now_ms)?),
            Change::Redrive(write) => Applied::Ran(tables.apply_redrive(write, now_ms)?),
            Change::Deliver { request, change } => {
                Applied::Delivered(tables.deliver(request, change, now_ms)?.map(Box::new))
            }
            Change::ForgetDeliveries { requests } => {
                tables.forget_deliveries(requests)?;
                Applied::DeliveriesForgotten
            }
        })
    }

    /// Appends the change's log encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        let taken = std::mem::take(out);
        *out = postcard::to_extend(self, taken).map_err(|e| {
            FlowError::storage(format!("could not encode a change for the log: {e}"))
        })?;
        Ok(())
    }
}

/// The variants whose encoding ends with a `RunWrite` (`Start`, `Run`, `RetryFaulted`),
/// by their postcard variant index.
const ENDS_WITH_RUN_WRITE: [u8; 3] = [0, 1, 6];

/// Decodes one logged change. A transition logged before `RunWrite::token_types`
/// existed ends where that field would start; the field is an empty list then, whose
/// encoding is the single byte 0, so such a change decodes with that byte appended. The
/// log is checksummed, so a body that fails to decode was written by another version,
/// never damaged in place.
fn decode_change(body: &[u8]) -> Result<Change, postcard::Error> {
    match postcard::from_bytes(body) {
        Err(postcard::Error::DeserializeUnexpectedEnd)
            if body
                .first()
                .is_some_and(|v| ENDS_WITH_RUN_WRITE.contains(v)) =>
        {
            let mut extended = body.to_vec();
            extended.push(0);
            postcard::from_bytes(&extended)
        }
        decoded => decoded,
    }
}

/// A batch of changes as the log holds it: the batch's time, then each change's
/// encoding behind its length.
pub(crate) struct LoggedBatch;

impl LoggedBatch {
    /// Starts a batch at `now_ms` at the end of `out`.
    pub(crate) fn begin(out: &mut Vec<u8>, now_ms: u64) {
        out.extend_from_slice(&now_ms.to_le_bytes());
    }

    /// Adds one encoded change.
    pub(crate) fn push(out: &mut Vec<u8>, change: &[u8]) {
        out.extend_from_slice(&(change.len() as u32).to_le_bytes());
        out.extend_from_slice(change);
    }

    /// The batch's time and changes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, Vec<Change>), FlowError> {
        let damaged = |what: &str| FlowError::Corrupt {
            path: "write-ahead log".into(),
            message: format!(
                "a logged batch {what}; the log was checksummed, so it was written by an \
                 incompatible version of flow: open the journal with that version"
            ),
        };
        let (now, mut rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| damaged("is too short"))?;
        let mut changes = Vec::new();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            let body = tail.get(..len).ok_or_else(|| damaged("is cut short"))?;
            let change = decode_change(body)
                .map_err(|e| damaged(&format!("holds a change that does not decode ({e})")))?;
            changes.push(change);
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err(damaged("has trailing bytes"));
        }
        Ok((u64::from_le_bytes(*now), changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{RunRecord, StoredStatus};

    fn header() -> RunRecord {
        RunRecord {
            workflow: "w".into(),
            fingerprint: 1,
            status: StoredStatus::Waiting,
            pc: 2,
            steps: 3,
            started: true,
            created_at_ms: 4,
            updated_at_ms: 5,
            parent: None,
            next_seq: Some(6),
            version: 1,
        }
    }

    fn encoded(change: &Change) -> Vec<u8> {
        let mut out = Vec::new();
        change.encode_into(&mut out).unwrap();
        out
    }

    #[test]
    fn transitions_logged_before_token_types_decode_with_an_empty_list() {
        let write = RunWrite::new("run", &header());
        for change in [
            Change::Run(write.clone()),
            Change::RetryFaulted(write.clone()),
            Change::Start(StartWrite {
                input: vec![1, 2],
                write: write.clone(),
            }),
        ] {
            let mut old = encoded(&change);
            assert_eq!(old.pop(), Some(0), "the empty list is the last byte");
            assert!(postcard::from_bytes::<Change>(&old).is_err());
            assert_eq!(encoded(&decode_change(&old).unwrap()), encoded(&change));
        }
        // A current transition with token types decodes as it is.
        let mut typed = write;
        typed.token_types = vec![("t".into(), "u64".into())];
        let change = Change::Run(typed);
        assert_eq!(
            encoded(&decode_change(&encoded(&change)).unwrap()),
            encoded(&change)
        );
        // Other changes are not extended.
        let mut signal = encoded(&Change::Cancel { run: "run".into() });
        signal.pop();
        assert!(decode_change(&signal).is_err());
    }
}
