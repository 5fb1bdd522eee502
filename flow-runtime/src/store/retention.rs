//! Retention: when a finished run is due for deletion, and deleting a run with
//! everything keyed by it.
//!
//! The engine writes its retention settings into the journal (`RETENTION`) when it
//! opens; a transition that finishes a run reads them and schedules the run's expiry in
//! the same transaction (`EXPIRIES`, `RUN_EXPIRIES`), so replaying the log schedules the
//! same expiry, and a crash never leaves a finished run without one. Deleting is a
//! change like any other (`Change::Purge`, `Change::Expire`): logged, then applied in
//! one transaction, so a crash mid-purge leaves the run whole or gone.

use redb::ReadableTable;

use super::tables::KEEP;
use super::txn_tables::Tables;
use crate::error::FlowError;

/// The retention settings as the journal keeps them: the engine's default, and each
/// workflow's own (`None`: kept for ever), in ms.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RetentionSettings {
    pub default: Option<u64>,
    pub workflows: Vec<(String, Option<u64>)>,
}

impl RetentionSettings {
    /// The rows of `RETENTION` that hold these settings, by key.
    pub(crate) fn rows(&self) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self
            .workflows
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, ms)| (name.clone(), ms.unwrap_or(KEEP)))
            .collect();
        if let Some(ms) = self.default {
            rows.push((String::new(), ms));
        }
        rows.sort();
        rows.dedup_by(|a, b| a.0 == b.0);
        rows
    }
}

impl Tables<'_> {
    /// Replaces the retention settings.
    pub(crate) fn set_retention(&mut self, settings: &RetentionSettings) -> Result<(), FlowError> {
        self.retention.write()?.retain(|_, _| false)?;
        for (name, ms) in settings.rows() {
            self.retention.write()?.insert(name.as_str(), ms)?;
        }
        Ok(())
    }

    /// Schedules the deletion of run `run_id` of `workflow`, which finished at `now_ms`,
    /// as the retention settings say (an expiry scheduled before is replaced).
    pub(super) fn schedule_expiry(
        &mut self,
        run_id: &str,
        workflow: &str,
        now_ms: u64,
    ) -> Result<(), FlowError> {
        self.unschedule_expiry(run_id)?;
        let retention = {
            let table = self.retention.read()?;
            match table.get(workflow)? {
                Some(ms) => Some(ms.value()),
                None => table.get("")?.map(|ms| ms.value()),
            }
        };
        let Some(ms) = retention.filter(|ms| *ms != KEEP) else {
            return Ok(());
        };
        let at = now_ms.saturating_add(ms);
        self.run_expiries.write()?.insert(run_id, at)?;
        self.expiries.write()?.insert((at, run_id), ())?;
        Ok(())
    }

    /// Drops the scheduled deletion of run `run_id`, if it has one.
    pub(super) fn unschedule_expiry(&mut self, run_id: &str) -> Result<(), FlowError> {
        if let Some(at) = self
            .run_expiries
            .write()?
            .remove(run_id)?
            .map(|v| v.value())
        {
            self.expiries.write()?.remove((at, run_id))?;
        }
        Ok(())
    }

    /// Deletes run `run_id` on request: refused unless it exists and no driver works on
    /// it (it finished or faulted).
    pub(crate) fn purge(&mut self, run_id: &str) -> Result<(), FlowError> {
        let header = self.header(run_id)?.ok_or_else(|| FlowError::UnknownRun {
            run_id: run_id.to_string(),
        })?;
        if !header.status.is_settled() {
            return Err(FlowError::RunNotSettled {
                run_id: run_id.to_string(),
                status: header.status.to_public().to_string(),
            });
        }
        self.delete_run(run_id)
    }

    /// Deletes those of `runs` whose expiry has passed at `now_ms` (a run set going again
    /// since the list was read has none, and is kept); returns how many.
    pub(crate) fn expire(&mut self, runs: &[String], now_ms: u64) -> Result<usize, FlowError> {
        let mut deleted = 0;
        for run_id in runs {
            let due = self
                .run_expiries
                .read()?
                .get(run_id.as_str())?
                .is_some_and(|at| at.value() <= now_ms);
            let settled = self.header(run_id)?.is_some_and(|h| h.status.is_settled());
            if due && settled {
                self.delete_run(run_id)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes every row keyed by run `run_id`, its callback tokens among them.
    fn delete_run(&mut self, run_id: &str) -> Result<(), FlowError> {
        self.unschedule_expiry(run_id)?;
        let mut tokens = Vec::new();
        for entry in self
            .run_tokens
            .read()?
            .range((run_id, "")..)?
            .take_while(|e| e.as_ref().map_or(true, |(k, _)| k.value().0 == run_id))
        {
            tokens.push(entry?.0.value().1.to_string());
        }
        for token in &tokens {
            self.tokens.write()?.remove(token.as_str())?;
            self.token_types.write()?.remove(token.as_str())?;
            self.run_tokens.write()?.remove((run_id, token.as_str()))?;
        }
        if let Some(deadline) = self
            .run_deadlines
            .write()?
            .remove(run_id)?
            .map(|d| d.value())
        {
            self.timers.write()?.remove((deadline, run_id))?;
        }
        let old = self
            .runs
            .write()?
            .remove(run_id)?
            .map(|o| super::records::decode_run_header(o.value()))
            .transpose()?;
        if let Some(old) = old {
            self.unindex(run_id, &old)?;
        }
        self.inputs.write()?.remove(run_id)?;
        self.outputs.write()?.remove(run_id)?;
        self.pending.write()?.remove(run_id)?;
        self.generation_inputs.write()?.remove(run_id)?;
        self.nudges.write()?.remove(run_id)?;
        self.active.write()?.remove(run_id)?;
        self.cancels.write()?.remove(run_id)?;
        self.delete_generation(run_id)?;
        self.inbox
            .write()?
            .retain_in((run_id, 0)..=(run_id, u64::MAX), |_, _| false)?;
        Ok(())
    }
}
