//! Applying transitions: a run's start and each later transition, as writes to the
//! journal's tables, and what a finished child run leaves its parent.
//!
//! Checks come before writes, so a request refused with a logical error (conflict,
//! unknown run, a run changed by another driver) leaves the shared transaction untouched.

use redb::ReadableTable;

use super::records::{
    decode_record, encode_record, BranchRecord, ChildStart, ParentLink, PendingOp, RunRecord,
    StoredStatus,
};
use super::transition::{ExpectedHeader, PendingChange, RunWrite, StartWrite};
use super::txn_tables::Tables;
use crate::error::FlowError;
use crate::history::EventKind;

/// Runs to wake once the transaction is durable.
#[derive(Debug, Default)]
pub(crate) struct WriteEffects {
    pub wake: Vec<String>,
}

/// What a start did.
#[derive(Debug)]
pub(crate) enum StartOutcome {
    Created(WriteEffects),
    /// A run with this ID, workflow and input existed already; nothing was written.
    Existing,
}

impl Tables<'_> {
    /// Creates a run from its first transition, or finds the same run already there.
    pub(crate) fn apply_start(
        &mut self,
        start: &StartWrite,
        now_ms: u64,
    ) -> Result<StartOutcome, FlowError> {
        let run_id = start.write.run_id.as_str();
        if let Some(existing) = self.header(run_id)? {
            let input = self.inputs.read()?.get(run_id)?.map(|v| v.value().to_vec());
            same_start(
                run_id,
                &existing,
                input.as_deref(),
                &start.write.header.workflow,
                &start.input,
            )?;
            return Ok(StartOutcome::Existing);
        }
        self.inputs
            .write()?
            .insert(run_id, start.input.as_slice())?;
        let effects = self.apply_unchecked(&start.write, now_ms, Some(0))?;
        Ok(StartOutcome::Created(effects))
    }

    /// Deletes the rows of run `run_id`'s current generation: its history, saved locals,
    /// step-state records, branch records and map items (what a continue-as-new drops,
    /// and a deletion of the run with the rest).
    pub(crate) fn delete_generation(&mut self, run_id: &str) -> Result<(), FlowError> {
        self.history
            .write()?
            .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
        self.history_batches
            .write()?
            .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
        self.slots
            .write()?
            .retain_in((run_id, 0)..=(run_id, u32::MAX), |_, _| false)?;
        self.branches
            .write()?
            .retain_in((run_id, 0, 0)..=(run_id, u64::MAX, u32::MAX), |_, _| false)?;
        self.map_items
            .write()?
            .retain_in((run_id, 0, 0)..=(run_id, u64::MAX, u32::MAX), |_, _| false)?;
        self.step_states
            .write()?
            .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
        Ok(())
    }

    /// Applies one transition of an existing run.
    pub(crate) fn apply_run_write(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
    ) -> Result<WriteEffects, FlowError> {
        let stored = self
            .header(&write.run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: write.run_id.clone(),
            })?;
        // An upgrade (`store::upgrade`) moves a run to another version under its driver's
        // feet: a transition computed with the old version's code is refused too.
        if ExpectedHeader::of(&stored) != write.expect
            || stored.status.is_settled()
            || (stored.version, stored.fingerprint)
                != (write.header.version, write.header.fingerprint)
        {
            return Err(FlowError::storage(format!(
                "internal: run `{}` changed while its transition was computed; it will be \
                 retried when the run is next woken",
                write.run_id
            )));
        }
        self.apply_unchecked(write, now_ms, stored.next_seq)
    }

    /// Applies the write that sets faulted run `write.run_id` going again; refused
    /// (before writing) unless the run is faulted and as the write expects.
    pub(crate) fn apply_fault_retry(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
    ) -> Result<WriteEffects, FlowError> {
        let stored = self
            .header(&write.run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: write.run_id.clone(),
            })?;
        if !matches!(stored.status, StoredStatus::Faulted(_))
            || ExpectedHeader::of(&stored) != write.expect
        {
            return Err(FlowError::NotFaulted {
                run_id: write.run_id.clone(),
                status: format!("{:?}", stored.status.to_public()),
            });
        }
        self.apply_unchecked(write, now_ms, stored.next_seq)
    }

    /// Applies the write that sets failed, cancelled or faulted run `write.run_id` going
    /// again; refused (before writing) unless the run ended so and is as the write
    /// expects. The pending step's branch records that hold no result are dropped, so
    /// what had not finished gets fresh attempts; results stay.
    pub(crate) fn apply_redrive(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
    ) -> Result<WriteEffects, FlowError> {
        let stored = self
            .header(&write.run_id)?
            .ok_or_else(|| FlowError::UnknownRun {
                run_id: write.run_id.clone(),
            })?;
        let ended = matches!(
            stored.status,
            StoredStatus::Failed(_) | StoredStatus::Cancelled | StoredStatus::Faulted(_)
        );
        if !ended || ExpectedHeader::of(&stored) != write.expect {
            return Err(FlowError::NotRedrivable {
                run_id: write.run_id.clone(),
                status: stored.status.to_public().to_string(),
            });
        }
        let run_id = write.run_id.as_str();
        self.unschedule_expiry(run_id)?;
        let step = match self.pending.read()?.get(run_id)? {
            Some(op) => Some(decode_record::<PendingOp>(op.value(), "pending step")?.step),
            None => None,
        };
        if let Some(step) = step {
            let mut unfinished = Vec::new();
            for entry in self
                .branches
                .read()?
                .range((run_id, step, 0)..=(run_id, step, u32::MAX))?
            {
                let (key, record) = entry?;
                let record = decode_record::<BranchRecord>(record.value(), "branch record")?;
                let keep = record.is_finished() || matches!(record, BranchRecord::MapProgress(_));
                if !keep {
                    unfinished.push(key.value().2);
                }
            }
            for branch in unfinished {
                self.branches.write()?.remove((run_id, step, branch))?;
            }
        }
        self.apply_unchecked(write, now_ms, stored.next_seq)
    }

    /// Applies a transition whose header was checked; refuses (before writing) to create
    /// a child run over an existing run. `next_seq` is the stored header's (the driver's
    /// copy may be older: signals and callbacks append events too).
    fn apply_unchecked(
        &mut self,
        write: &RunWrite,
        now_ms: u64,
        next_seq: Option<u64>,
    ) -> Result<WriteEffects, FlowError> {
        for child in &write.children {
            if self.runs.read()?.get(child.run_id.as_str())?.is_some() {
                return Err(FlowError::RunIdConflict {
                    run_id: child.run_id.clone(),
                    difference: format!(
                        "another origin: it cannot be created as the child run of `{}`",
                        write.run_id
                    ),
                });
            }
        }
        let mut effects = WriteEffects::default();
        let run_id = write.run_id.as_str();
        let parts = write.encoded_parts()?;
        let mut header = write.header.clone();
        header.updated_at_ms = now_ms;
        let mut next_seq = next_seq;
        if let Some(input) = &write.continue_as_new {
            // The old generation is dropped, not archived: history, slots, branch
            // records and map items go; the inbox and the run ID stay.
            self.delete_generation(run_id)?;
            self.generation_inputs
                .write()?
                .insert(run_id, input.as_slice())?;
            next_seq = Some(0);
        }
        header.next_seq = Some(self.insert_events(run_id, next_seq, now_ms, &parts)?);
        self.put_header(run_id, &header)?;
        if let Some((step, items)) = &write.map_items {
            for (i, item) in items.iter().enumerate() {
                self.map_items
                    .write()?
                    .insert((run_id, *step, i as u32), item.as_slice())?;
            }
        }
        for (token, record) in &write.tokens {
            self.tokens.write()?.insert(
                token.as_str(),
                encode_record(record, "callback token")?.as_slice(),
            )?;
            self.run_tokens
                .write()?
                .insert((run_id, token.as_str()), ())?;
        }
        for (token, awaited) in &write.token_types {
            self.token_types
                .write()?
                .insert(token.as_str(), awaited.as_bytes())?;
        }
        if let Some(deadline) = write.run_deadline {
            self.run_deadlines.write()?.insert(run_id, deadline)?;
            self.timers.write()?.insert((deadline, run_id), ())?;
        }
        // A run-level deadline is set at start only, so the driver knows whether there is
        // one to delete.
        let had_deadline =
            write.run_deadline.is_some() || write.seen.is_none_or(|seen| seen.run_deadline);
        if (write.run_timed_out || header.status.is_settled()) && had_deadline {
            let deadline = self
                .run_deadlines
                .write()?
                .remove(run_id)?
                .map(|d| d.value());
            if let Some(deadline) = deadline {
                self.timers.write()?.remove((deadline, run_id))?;
            }
        }
        if write.run_timed_out && !header.status.is_settled() {
            self.cancels.write()?.insert(run_id, ())?;
        }
        for (slot, bytes) in &write.slots {
            self.slots
                .write()?
                .insert((run_id, *slot), bytes.as_slice())?;
        }
        if let PendingChange::Set(op) = &write.pending {
            // A transition that schedules a new step keeps what it wrote of the state.
            if header.steps > write.expect.steps {
                // Encoded as a `StepState` is (postcard writes a struct as the tuple of
                // its fields), without copying the slots.
                let state = (header.pc, &write.slots);
                self.step_states.write()?.insert(
                    (run_id, op.step),
                    encode_record(&state, "step state")?.as_slice(),
                )?;
            }
        }
        if let Some(step) = write.clear_branches {
            // A finished map's items stay (`MAP_ITEMS` is the history's copy of them,
            // see `read::history`): they go with the run's generation (continue-as-new)
            // or with the run (retention, purge). Whether a map runs is decided by the
            // pending operation, never by its items being there.
            self.branches
                .write()?
                .retain_in((run_id, step, 0)..=(run_id, step, u32::MAX), |_, _| false)?;
        }
        // A branch finished by someone else meanwhile stays finished (see
        // `BranchPut::replaces`), and the run must get to see it.
        let mut revived = false;
        for put in &write.branch_puts {
            let key = (run_id, put.step, put.branch);
            let replaces = put.replaces(|| match self.branches.read()?.get(key)? {
                Some(old) => {
                    Ok(decode_record::<BranchRecord>(old.value(), "branch record")?.is_finished())
                }
                None => Ok::<_, FlowError>(false),
            })?;
            if !replaces {
                revived = true;
                continue;
            }
            self.branches
                .write()?
                .insert(key, encode_record(&put.record, "branch record")?.as_slice())?;
        }
        // Every outside event (a cancellation among them) nudges the run, so a run never
        // reached from outside has no cancellation or nudge count to delete when it ends.
        let mut reached = true;
        if let Some(seen) = write.seen {
            let now = self.nudge_count(run_id)?;
            // Something reached the run after the driver read it: it must look again.
            revived |= now != seen.nudges;
            reached = now > 0 || seen.cancel || write.run_timed_out;
        }
        if revived && !write.active && !header.status.is_settled() {
            header.status = StoredStatus::Running;
            self.put_header(run_id, &header)?;
        }
        match &write.pending {
            PendingChange::Keep => {}
            PendingChange::Set(_) => {
                let op = parts.pending.as_deref().unwrap_or_default();
                self.pending.write()?.insert(run_id, op)?;
            }
            PendingChange::Remove => {
                self.pending.write()?.remove(run_id)?;
            }
        }
        for deadline in &write.timers_remove {
            self.timers.write()?.remove((*deadline, run_id))?;
        }
        for deadline in &write.timers_add {
            self.timers.write()?.insert((*deadline, run_id), ())?;
        }
        for seq in &write.inbox_consume {
            self.inbox.write()?.remove((run_id, *seq))?;
        }
        if write.consume_cancel || (header.status.is_settled() && reached) {
            self.cancels.write()?.remove(run_id)?;
        }
        if header.status.is_finished() && reached {
            self.nudges.write()?.remove(run_id)?;
        }
        // Most transitions leave this unchanged; a lookup is cheaper than a rewrite.
        let active = write.active || (revived && !header.status.is_settled());
        if active != self.active.read()?.get(run_id)?.is_some() {
            if active {
                self.active.write()?.insert(run_id, ())?;
            } else {
                self.active.write()?.remove(run_id)?;
            }
        }
        if let Some(output) = &write.output {
            self.outputs.write()?.insert(run_id, output.as_slice())?;
        }
        for child in &write.children {
            self.create_child(child, now_ms)?;
            effects.wake.push(child.run_id.clone());
        }
        for other in &write.cancel_runs {
            if self.cancel_if_open(other, now_ms)? {
                effects.wake.push(other.clone());
            }
        }
        if header.status.is_finished() {
            self.schedule_expiry(run_id, &header.workflow, now_ms)?;
            if let Some(parent) = &header.parent {
                if self.deliver_to_parent(
                    parent,
                    run_id,
                    &header.status,
                    write.output.as_deref(),
                )? {
                    effects.wake.push(parent.run_id.clone());
                }
            }
        }
        Ok(effects)
    }

    fn create_child(&mut self, child: &ChildStart, now_ms: u64) -> Result<(), FlowError> {
        let header = RunRecord {
            workflow: child.workflow.clone(),
            fingerprint: child.fingerprint,
            status: StoredStatus::Running,
            pc: 0,
            steps: 0,
            started: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            parent: Some(child.parent.clone()),
            next_seq: Some(0),
            version: child.version,
        };
        let id = child.run_id.as_str();
        self.put_header(id, &header)?;
        self.inputs.write()?.insert(id, child.input.as_slice())?;
        self.append_events(
            id,
            now_ms,
            crate::history::started_events(
                EventKind::RunStarted {
                    workflow: child.workflow.clone(),
                    input: child.input.clone(),
                    parent: Some(child.parent.run_id.clone()),
                },
                child.version,
            ),
        )?;
        self.active.write()?.insert(id, ())?;
        Ok(())
    }

    /// Records a finished child's outcome as its parent's branch result; true if the
    /// parent still waits for it.
    fn deliver_to_parent(
        &mut self,
        parent: &ParentLink,
        child_id: &str,
        status: &StoredStatus,
        output: Option<&[u8]>,
    ) -> Result<bool, FlowError> {
        // A finished parent no longer waits (a faulted one is kept as it is, with the
        // results that reach it).
        let parent_open = match self.header(&parent.run_id)? {
            Some(header) => !header.status.is_finished(),
            None => false,
        };
        if !parent_open {
            return Ok(false);
        }
        let waiting = match self.pending.read()?.get(parent.run_id.as_str())? {
            Some(op) => decode_record::<PendingOp>(op.value(), "pending step")?.step == parent.step,
            None => false,
        };
        if !waiting {
            return Ok(false);
        }
        let record = match (status, output) {
            (StoredStatus::Completed, Some(output)) => BranchRecord::Done(output.to_vec()),
            (StoredStatus::Failed(error), _) => {
                BranchRecord::Failed(format!("child run `{child_id}` failed: {error}"))
            }
            _ => BranchRecord::Failed(format!("child run `{child_id}` was cancelled")),
        };
        let pid = parent.run_id.as_str();
        self.branches.write()?.insert(
            (pid, parent.step, parent.branch),
            encode_record(&record, "branch record")?.as_slice(),
        )?;
        self.nudge(pid)?;
        Ok(true)
    }
}

/// Checks that a start asks for the run that exists: same workflow, same input.
fn same_start(
    run_id: &str,
    existing: &RunRecord,
    existing_input: Option<&[u8]>,
    workflow: &str,
    input: &[u8],
) -> Result<(), FlowError> {
    let difference = if existing.workflow != workflow {
        format!(
            "workflow `{}` (this start asks for `{workflow}`)",
            existing.workflow
        )
    } else if existing_input != Some(input) {
        "the same workflow but a different input".to_string()
    } else {
        return Ok(());
    };
    Err(FlowError::RunIdConflict {
        run_id: run_id.to_string(),
        difference,
    })
}
