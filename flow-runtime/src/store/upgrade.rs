//! Moving a run to another version of its workflow (`Engine::upgrade`) as one change: a
//! new header (version, fingerprint, program counter), the run's slots replaced
//! wholesale by the new version's, the pending operation's state index in the new
//! version's graph, and a `RunUpgraded` event. Everything else (the pending operation,
//! its branches and attempts, timers, inbox, tokens) stays: both versions await the same
//! operation there.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::records::{decode_record, encode_record, PendingOp, RunRecord};
use super::transition::ExpectedHeader;
use super::txn_tables::Tables;
use crate::error::FlowError;
use crate::history::EventKind;

/// A run's move to another version. Logged as it is (postcard): its fields are part of
/// the on-disk format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UpgradeWrite {
    pub run_id: String,
    /// The header the upgrade was computed from: refused if the run moved on since.
    pub expect: RunRecord,
    /// The new version and its fingerprint.
    pub version: u32,
    pub fingerprint: u64,
    /// Where the new version's machine resumes.
    pub pc: u32,
    /// Every slot of the new version's machine; the run's other slots are deleted.
    pub slots: Vec<(u32, Vec<u8>)>,
    /// The pending operation's state index in the new version's graph.
    pub pending_state: Option<u32>,
}

impl Tables<'_> {
    /// Applies `write`, or refuses it (before writing anything) if the run is unknown,
    /// settled, or no longer as the upgrade found it.
    pub(crate) fn apply_upgrade(
        &mut self,
        write: &UpgradeWrite,
        now_ms: u64,
    ) -> Result<(), FlowError> {
        let run_id = write.run_id.as_str();
        let stored = self.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        let expect = &write.expect;
        let unmoved = ExpectedHeader::of(&stored) == ExpectedHeader::of(expect)
            && (&stored.workflow, stored.version, stored.fingerprint)
                == (&expect.workflow, expect.version, expect.fingerprint)
            && stored.status == expect.status;
        if !unmoved || stored.status.is_settled() {
            return Err(FlowError::UpgradeRefused {
                run_id: run_id.to_string(),
                workflow: stored.workflow.clone(),
                from: expect.version,
                to: write.version,
                reason: "the run moved on while the upgrade was prepared (a step or an \
                         outside event changed it); try again"
                    .to_string(),
            });
        }
        let pending = match write.pending_state {
            Some(state) => {
                let mut op = match self.pending.read()?.get(run_id)? {
                    Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?,
                    None => {
                        return Err(FlowError::storage(format!(
                            "internal: run `{run_id}` has no pending operation to upgrade"
                        )))
                    }
                };
                op.state = state;
                Some(encode_record(&op, "pending step")?)
            }
            None => None,
        };
        // Checks are done: from here on, writes only.
        if let Some(bytes) = pending {
            self.pending.write()?.insert(run_id, bytes.as_slice())?;
        }
        self.slots
            .write()?
            .retain_in((run_id, 0)..=(run_id, u32::MAX), |_, _| false)?;
        for (slot, bytes) in &write.slots {
            self.slots
                .write()?
                .insert((run_id, *slot), bytes.as_slice())?;
        }
        let mut header = stored.clone();
        header.version = write.version;
        header.fingerprint = write.fingerprint;
        header.pc = write.pc;
        header.updated_at_ms = now_ms;
        self.put_header(run_id, &header)?;
        self.append_events(
            run_id,
            now_ms,
            vec![EventKind::RunUpgraded {
                from: stored.version,
                to: write.version,
                step: stored.steps.saturating_sub(1),
            }],
        )
    }
}
