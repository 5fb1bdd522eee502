//! Changes from outside a run's transitions: signals for its inbox, cancellation
//! requests, callback completions and heartbeats.
//!
//! Each one nudges the run it reaches (see `NUDGES`) so that its driver, or recovery,
//! looks at the run again; none of them moves the run's state machine.

use redb::ReadableTable;

use super::records::{decode_record, encode_record, Branch, BranchRecord, PendingOp, TokenRecord};
use super::txn_tables::{next_seq, Tables};
use crate::error::FlowError;
use crate::history::EventKind;
use crate::time::millis;

impl Tables<'_> {
    /// Appends a signal to the run's inbox.
    pub(crate) fn append_signal(
        &mut self,
        run_id: &str,
        name: &str,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), FlowError> {
        self.check_open(run_id, "signals")?;
        let seq = match self
            .inbox
            .read()?
            .range((run_id, 0)..=(run_id, u64::MAX))?
            .next_back()
        {
            Some(last) => next_seq(last?.0.value().1, "inbox", run_id)?,
            None => 0,
        };
        let message = encode_record(&(name, payload), "inbox message")?;
        self.inbox
            .write()?
            .insert((run_id, seq), message.as_slice())?;
        // A run waiting for this signal now has deadline-free work: recovery must wake it
        // even if the process dies before its driver consumes the message.
        let waits = match self.pending.read()?.get(run_id)? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?
                .branches
                .iter()
                .any(|b| matches!(b, Branch::Signal { name: wanted, .. } if wanted == name)),
            None => false,
        };
        if waits {
            self.nudge(run_id)?;
        }
        self.append_events(
            run_id,
            now_ms,
            vec![EventKind::SignalReceived {
                name: name.to_string(),
                seq,
            }],
        )
    }

    /// Records a cancellation request for the run's driver.
    pub(crate) fn request_cancel(&mut self, run_id: &str, now_ms: u64) -> Result<(), FlowError> {
        self.check_open(run_id, "cancellation")?;
        if self.cancels.write()?.insert(run_id, ())?.is_none() {
            self.append_events(run_id, now_ms, vec![EventKind::CancelRequested])?;
        }
        // Recovery must wake the run for it, even if it waits for nothing else.
        self.nudge(run_id)?;
        Ok(())
    }

    /// Requests cancellation of `run_id` if it exists and has not finished; true if so.
    pub(super) fn cancel_if_open(&mut self, run_id: &str, now_ms: u64) -> Result<bool, FlowError> {
        match self.header(run_id)? {
            Some(header) if !header.status.is_settled() => {}
            _ => return Ok(false),
        }
        if self.cancels.write()?.insert(run_id, ())?.is_none() {
            self.append_events(run_id, now_ms, vec![EventKind::CancelRequested])?;
        }
        self.nudge(run_id)?;
        Ok(true)
    }

    /// Completes callback `token` with `output` (the encoded `Result<T, CallbackError>`);
    /// returns the run to wake.
    pub(crate) fn complete_callback(
        &mut self,
        token: &str,
        output: Vec<u8>,
        ok: bool,
        now_ms: u64,
    ) -> Result<String, FlowError> {
        let refused = |reason: &str| FlowError::InvalidCallbackToken {
            reason: reason.to_string(),
        };
        let mut record: TokenRecord = match self.tokens.read()?.get(token)? {
            Some(r) => decode_record(r.value(), "callback token")?,
            None => return Err(refused("no callback was issued with this token")),
        };
        if record.used {
            return Err(refused(
                "this token was completed already (tokens are single-use)",
            ));
        }
        let run_id = record.run_id.clone();
        let waiting = match self.pending.read()?.get(run_id.as_str())? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?.step == record.step,
            None => false,
        };
        let open = self
            .header(&run_id)?
            .is_some_and(|h| !h.status.is_settled());
        let finished = self
            .branches
            .read()?
            .get((run_id.as_str(), record.step, record.branch))?
            .map(|r| decode_record::<BranchRecord>(r.value(), "branch record"))
            .transpose()?
            .is_some_and(|r| r.is_finished());
        if !waiting || !open || finished {
            return Err(refused(
                "the step that issued it is over (it timed out, was cancelled or lost a race)",
            ));
        }
        record.used = true;
        self.tokens
            .write()?
            .insert(token, encode_record(&record, "callback token")?.as_slice())?;
        self.branches.write()?.insert(
            (run_id.as_str(), record.step, record.branch),
            encode_record(&BranchRecord::Done(output), "branch record")?.as_slice(),
        )?;
        self.nudge(&run_id)?;
        self.append_events(
            &run_id,
            now_ms,
            vec![EventKind::CallbackCompleted {
                step: record.step,
                branch: record.branch,
                ok,
            }],
        )?;
        Ok(run_id)
    }

    /// Records a heartbeat for callback `token`; returns the run and the new heartbeat
    /// deadline, if the callback has a heartbeat interval and its task handed the token out.
    pub(crate) fn heartbeat_callback(
        &mut self,
        token: &str,
        now_ms: u64,
    ) -> Result<Option<u64>, FlowError> {
        let refused = |reason: &str| FlowError::InvalidCallbackToken {
            reason: reason.to_string(),
        };
        let record: TokenRecord = match self.tokens.read()?.get(token)? {
            Some(r) => decode_record(r.value(), "callback token")?,
            None => return Err(refused("no callback was issued with this token")),
        };
        if record.used {
            return Err(refused(
                "this token was completed already (tokens are single-use)",
            ));
        }
        let run_id = record.run_id.as_str();
        let open = self.header(run_id)?.is_some_and(|h| !h.status.is_settled());
        let op = match self.pending.read()?.get(run_id)? {
            Some(op) => Some(decode_record::<PendingOp>(op.value(), "pending step")?),
            None => None,
        };
        let interval = match op.as_ref().filter(|op| open && op.step == record.step) {
            Some(op) => match op.branches.get(record.branch as usize) {
                Some(Branch::Callback { heartbeat, .. }) => *heartbeat,
                _ => None,
            },
            None => {
                return Err(refused(
                    "the step that issued it is over (it timed out, was cancelled or lost a \
                     race)",
                ))
            }
        };
        let key = (run_id, record.step, record.branch);
        let current = self
            .branches
            .read()?
            .get(key)?
            .map(|r| decode_record::<BranchRecord>(r.value(), "branch record"))
            .transpose()?;
        let (
            Some(interval),
            Some(BranchRecord::Awaiting {
                heartbeat_deadline_ms,
            }),
        ) = (interval, current)
        else {
            // No interval, or the task has not handed the token out yet: nothing to extend.
            return Ok(None);
        };
        let deadline = now_ms.saturating_add(millis(interval));
        if let Some(old) = heartbeat_deadline_ms {
            self.timers.write()?.remove((old, run_id))?;
        }
        self.timers.write()?.insert((deadline, run_id), ())?;
        let renewed = BranchRecord::Awaiting {
            heartbeat_deadline_ms: Some(deadline),
        };
        self.branches
            .write()?
            .insert(key, encode_record(&renewed, "branch record")?.as_slice())?;
        Ok(Some(deadline))
    }
}
