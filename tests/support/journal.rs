//! Reading a journal back and proving it consistent: each step committed exactly once,
//! with the result an uninterrupted run produces; and, against the execution log, that no
//! committed attempt ever ran again and idempotency keys were stable.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flow::{Engine, EventKind, RunStatus, TaskFailure};

use super::exec_log::ExecRecord;
use super::workload::{self, Reference};

/// How the history words an attempt interrupted by the engine's end (the end of
/// `TaskFailure::Interrupted`'s message).
const INTERRUPTED: &str = "was interrupted: the engine stopped while it ran";

/// A committed task attempt: run ID, step, attempt number.
pub type AttemptId = (String, u64, u32);

/// What the journal holds about one run.
#[derive(Debug, Clone)]
pub struct RunView {
    pub workflow: String,
    pub status: RunStatus,
    /// Step number -> name, from `StepScheduled`.
    pub scheduled: BTreeMap<u64, String>,
    /// Step number -> encoded output, from `StepCompleted`.
    pub completed: BTreeMap<u64, Vec<u8>>,
    /// `(step, attempt)` of every `AttemptStarted`.
    pub attempts: BTreeSet<(u64, u32)>,
    /// `(step, attempt)` of every `AttemptFailed` -> its error, and whether it was the
    /// step's last attempt (no retry scheduled).
    pub failures: BTreeMap<(u64, u32), (String, bool)>,
    /// The output of `RunCompleted`.
    pub output: Option<Vec<u8>>,
    /// The error of `RunFailed`.
    pub failed: Option<String>,
}

impl RunView {
    /// The attempts crashes interrupted, as `(step, attempt)`.
    pub fn interrupted(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.failures
            .iter()
            .filter(|(_, (error, _))| error.ends_with(INTERRUPTED))
            .map(|(&id, _)| id)
    }

    /// The steps whose last attempt crashes interrupted (their attempts used up), with
    /// that attempt's number.
    pub fn forced_by_crashes(&self) -> Vec<(u64, u32)> {
        self.interrupted()
            .filter(|id| self.failures[id].1)
            .collect()
    }
}

/// The reference `run` must match: `reference` itself, or, when crashes used up the
/// attempts of other calls than it assumed, the reference with those calls' results
/// forced (`workload::reference_with`).
pub async fn modelled(run: &RunView, reference: &Reference) -> Option<Reference> {
    let forced = run.forced_by_crashes();
    if forced == reference.forced {
        return None;
    }
    Some(workload::reference_with(reference.kind, &reference.job, &forced).await)
}

/// Every run in a journal, by run ID.
pub type JournalView = BTreeMap<String, RunView>;

/// Reads every run's history. Fails on what must never be in a journal: a step scheduled,
/// completed or attempted twice, a gap in event numbers, two endings.
///
/// Opened with no workflow registered, an engine drives nothing (its runs are blocked),
/// so this looks at the journal without changing it.
pub async fn inspect(engine: &Engine) -> Result<JournalView, String> {
    let mut view = JournalView::new();
    for summary in engine.list().await.map_err(|e| format!("list: {e}"))? {
        let id = summary.run_id;
        let history = engine
            .history(&id)
            .await
            .map_err(|e| format!("history of {id}: {e}"))?;
        let mut run = RunView {
            workflow: summary.workflow,
            status: summary.status,
            scheduled: BTreeMap::new(),
            completed: BTreeMap::new(),
            attempts: BTreeSet::new(),
            failures: BTreeMap::new(),
            output: None,
            failed: None,
        };
        for (i, event) in history.iter().enumerate() {
            if event.seq != i as u64 {
                return Err(format!("{id}: event #{i} has seq {}", event.seq));
            }
            // Each event kind that may appear once per step (or once per run) is added
            // to its set; an insert that finds the entry already there is a duplicate.
            let duplicate = match &event.kind {
                EventKind::StepScheduled { step, name, .. } => run
                    .scheduled
                    .insert(*step, name.clone())
                    .map(|_| format!("step {step} scheduled twice")),
                EventKind::StepCompleted { step, output } => run
                    .completed
                    .insert(*step, output.clone())
                    .map(|_| format!("step {step} completed twice (committed twice)")),
                EventKind::AttemptStarted { step, attempt, .. } => {
                    (!run.attempts.insert((*step, *attempt)))
                        .then(|| format!("attempt {attempt} of step {step} recorded twice"))
                }
                EventKind::AttemptFailed {
                    step,
                    attempt,
                    error,
                    retry_at_ms,
                    ..
                } => run
                    .failures
                    .insert((*step, *attempt), (error.clone(), retry_at_ms.is_none()))
                    .map(|_| format!("attempt {attempt} of step {step} failed twice")),
                EventKind::RunCompleted { output } => run
                    .output
                    .replace(output.clone())
                    .map(|_| "completed twice".to_string()),
                EventKind::RunFailed { error } => run
                    .failed
                    .replace(error.clone())
                    .map(|_| "failed twice".to_string()),
                EventKind::RunFaulted { error } => Some(format!("run faulted: {error}")),
                _ => None,
            };
            if let Some(problem) = duplicate {
                return Err(format!("{id}: {problem}"));
            }
        }
        view.insert(id, run);
    }
    Ok(view)
}

/// Checks one run against its reference (see [`modelled`]): steps numbered 0, 1, 2, ...
/// with no gap, each completed once with exactly the reference's output, attempts of each
/// step numbered 1, 2, ..., interrupted attempts worded as such and a call's attempts
/// used up by crashes only once all of them were interrupted or failed; once the run
/// ended, the reference's output (or its failure).
pub fn check_run(id: &str, run: &RunView, reference: &Reference) -> Result<(), String> {
    let forced = run.forced_by_crashes();
    if forced != reference.forced {
        return Err(format!(
            "{id}: crashes used up the attempts of steps {forced:?}, the reference assumes \
             {:?}",
            reference.forced
        ));
    }
    for (step, attempt) in run.interrupted() {
        let task = reference.task_of(step as usize).unwrap_or("?").to_string();
        let expected = TaskFailure::Interrupted {
            task: task.clone(),
            attempt,
        }
        .to_string();
        let (error, last) = &run.failures[&(step, attempt)];
        if !error.starts_with(&expected) {
            return Err(format!(
                "{id}: step {step} attempt {attempt} failed with {error:?}, expected {expected:?}"
            ));
        }
        if *last && attempt != workload::max_attempts(&task) {
            return Err(format!(
                "{id}: step {step} ({task}) ended on interrupted attempt {attempt}, but the \
                 task has {} attempts",
                workload::max_attempts(&task)
            ));
        }
    }
    let n = run.completed.len() as u64;
    if run.completed.keys().copied().ne(0..n) {
        return Err(format!(
            "{id}: completed steps are not contiguous from 0: {:?}",
            run.completed.keys().collect::<Vec<_>>()
        ));
    }
    let scheduled = run.scheduled.len() as u64;
    if run.scheduled.keys().copied().ne(0..scheduled) || !(n..=n + 1).contains(&scheduled) {
        return Err(format!(
            "{id}: scheduled steps {:?} do not match completed steps 0..{n}",
            run.scheduled.keys().collect::<Vec<_>>()
        ));
    }
    for (&step, name) in &run.scheduled {
        let expected = reference.step_name(step as usize);
        if expected.as_deref() != Some(name.as_str()) {
            return Err(format!(
                "{id}: step {step} is `{name}`, an uninterrupted run has {expected:?}"
            ));
        }
    }
    for (&step, output) in &run.completed {
        if *output != reference.steps[step as usize].output {
            return Err(format!(
                "{id}: step {step} committed a result that differs from an uninterrupted run"
            ));
        }
    }
    let mut by_step: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for &(step, attempt) in &run.attempts {
        by_step.entry(step).or_default().push(attempt);
    }
    for (step, attempts) in &by_step {
        if *step >= scheduled || attempts.iter().copied().ne(1..=attempts.len() as u32) {
            return Err(format!("{id}: step {step} has attempts {attempts:?}"));
        }
    }
    for step in 0..n {
        if !by_step.contains_key(&step) {
            return Err(format!(
                "{id}: step {step} completed without a committed attempt"
            ));
        }
    }
    if let Some((step, expected)) = &reference.failure {
        if n > *step {
            return Err(format!(
                "{id}: completed step {} past step {step}, where the run must fail",
                n - 1
            ));
        }
        return match (&run.status, &run.failed) {
            (RunStatus::Failed { error }, Some(failed))
                if error == failed && failed.contains(expected.as_str()) =>
            {
                Ok(())
            }
            (RunStatus::Failed { .. }, _) | (_, Some(_)) => Err(format!(
                "{id}: {} ({:?}), expected to fail with {expected:?}",
                run.status, run.failed
            )),
            (RunStatus::Completed | RunStatus::Faulted { .. } | RunStatus::Cancelled, _) => {
                Err(format!("{id}: {}", run.status))
            }
            _ => Ok(()),
        };
    }
    if let Some(error) = &run.failed {
        return Err(format!("{id}: run failed: {error}"));
    }
    match (&run.status, &run.output) {
        (RunStatus::Completed, Some(output)) => {
            if n as usize != reference.steps.len() {
                return Err(format!(
                    "{id}: completed after {n} steps, an uninterrupted run takes {}",
                    reference.steps.len()
                ));
            }
            if *output != reference.output {
                return Err(format!("{id}: output differs from an uninterrupted run"));
            }
        }
        (RunStatus::Completed, None) | (_, Some(_)) => {
            return Err(format!(
                "{id}: status {} does not match its history",
                run.status
            ))
        }
        (RunStatus::Failed { .. } | RunStatus::Faulted { .. } | RunStatus::Cancelled, _) => {
            return Err(format!("{id}: {}", run.status))
        }
        _ => {}
    }
    Ok(())
}

/// Every attempt the journal says a crash interrupted.
pub fn interrupted_attempts(view: &JournalView) -> BTreeSet<AttemptId> {
    view.iter()
        .flat_map(|(id, run)| run.interrupted().map(|(s, a)| (id.clone(), s, a)))
        .collect()
}

/// Every committed task attempt in the journal.
pub fn committed_attempts(view: &JournalView) -> BTreeSet<AttemptId> {
    view.iter()
        .flat_map(|(id, run)| run.attempts.iter().map(|&(s, a)| (id.clone(), s, a)))
        .collect()
}

/// What the execution log says about re-executions.
#[derive(Debug, Default, Clone)]
pub struct ExecAudit {
    /// Task attempts executed (log records).
    pub executions: usize,
    /// Distinct `(run, step, attempt)` executed.
    pub distinct: usize,
    /// Executions beyond the first of the same attempt: work redone after a crash.
    pub reexecutions: usize,
    /// Most executions one generation did that were not committed when it ended.
    pub max_lost_in_one_generation: usize,
}

/// Audits the execution log against the journal.
///
/// `committed_before[g]` is the set of committed attempts when generation `g` started
/// (the journal as generation `g - 1` left it); its last entry is the final journal.
/// Checks:
/// - the run ID the workflow passed is the one the engine gave the task;
/// - each run's calls got distinct idempotency keys, and each key is used by one call only
///   (same run, step, task and arguments) in every attempt and every generation; the step
///   a record belongs to is the `call` it passed (the workload's calls are its steps);
/// - an attempt committed before a generation started never ran in that generation
///   ("a step whose result was committed never runs again");
/// - with `one_per_generation`, no attempt ran twice within one generation (a process
///   runs an attempt once; only recovery runs it again);
/// - at most `inflight_bounds[g]` executions of generation `g` were lost with it (the
///   last bound applies to later generations);
/// - with `complete`, the executed attempts are exactly the committed ones, except that
///   an attempt committed as `interrupted` may have no record (the crash came before the
///   task wrote it); a step's executed and interrupted attempts are numbered 1, 2, ...
pub fn audit_executions(
    records: &[ExecRecord],
    committed_before: &[BTreeSet<AttemptId>],
    one_per_generation: bool,
    inflight_bounds: &[usize],
    complete: bool,
    interrupted: &BTreeSet<AttemptId>,
) -> Result<ExecAudit, String> {
    let final_committed = committed_before.last().expect("at least the final journal");
    let mut key_of_step: HashMap<(&str, u32), &str> = HashMap::new();
    let mut call_of_key: HashMap<&str, (&str, u32, &str, &str)> = HashMap::new();
    let mut per_generation: HashMap<(u32, AttemptId), usize> = HashMap::new();
    let mut distinct: BTreeSet<AttemptId> = BTreeSet::new();
    let mut lost: BTreeMap<u32, usize> = BTreeMap::new();
    for r in records {
        if r.run != r.ctx_run {
            return Err(format!(
                "task for run {} ran with the context of run {}",
                r.run, r.ctx_run
            ));
        }
        if r.attempt == 0 {
            return Err(format!(
                "{}: attempt numbers start at 1, got 0 ({})",
                r.run, r.key
            ));
        }
        let step = u64::from(r.call);
        let key = *key_of_step.entry((&r.run, r.call)).or_insert(&r.key);
        if key != r.key {
            return Err(format!(
                "{}: call {} ({}) ran with keys {key:?} and {:?}: keys are not one per call",
                r.run, r.call, r.task, r.key
            ));
        }
        let call = (r.run.as_str(), r.call, r.task.as_str(), r.args.as_str());
        let first = *call_of_key.entry(&r.key).or_insert(call);
        if first != call {
            return Err(format!(
                "idempotency key {:?} used by two different calls: {first:?} and {call:?}",
                r.key
            ));
        }
        let id: AttemptId = (r.run.clone(), step, r.attempt);
        let generation = r.gen as usize;
        if let Some(before) = committed_before.get(generation) {
            if before.contains(&id) {
                return Err(format!(
                    "{}: attempt {} of step {step} ({}) was committed before generation {} \
                     started, and ran again in it",
                    r.run, r.attempt, r.task, r.gen
                ));
            }
        }
        let count = per_generation.entry((r.gen, id.clone())).or_insert(0);
        *count += 1;
        if one_per_generation && *count > 1 {
            return Err(format!(
                "{}: attempt {} of step {step} ({}) ran {count} times in generation {}",
                r.run, r.attempt, r.task, r.gen
            ));
        }
        let after = committed_before
            .get(generation + 1)
            .unwrap_or(final_committed);
        if !after.contains(&id) {
            *lost.entry(r.gen).or_insert(0) += 1;
        }
        distinct.insert(id);
    }
    // Attempt numbers of one key grow 1, 2, 3 ...: retries of a call keep its key (an
    // interrupted attempt may have left no record).
    let mut attempts_of: BTreeMap<(&str, u64), Vec<u32>> = BTreeMap::new();
    for (run, step, attempt) in distinct.union(interrupted) {
        attempts_of.entry((run, *step)).or_default().push(*attempt);
    }
    for ((run, step), attempts) in &attempts_of {
        if attempts.iter().copied().ne(1..=attempts.len() as u32) {
            return Err(format!("{run}: step {step} executed attempts {attempts:?}"));
        }
    }
    for (&generation, &count) in &lost {
        let bound = inflight_bounds
            .get(generation as usize)
            .or(inflight_bounds.last())
            .copied()
            .unwrap_or(0);
        if count > bound {
            return Err(format!(
                "generation {generation} lost {count} executions, more than the {bound} that \
                 can be in flight"
            ));
        }
    }
    let max_lost = lost.values().copied().max().unwrap_or(0);
    if complete {
        if let Some(missing) = final_committed
            .difference(&distinct)
            .find(|id| !interrupted.contains(*id))
        {
            return Err(format!(
                "committed attempt {missing:?} has no execution record"
            ));
        }
        if let Some(extra) = distinct.difference(final_committed).next() {
            return Err(format!("executed attempt {extra:?} was never committed"));
        }
    }
    Ok(ExecAudit {
        executions: records.len(),
        distinct: distinct.len(),
        reexecutions: records.len() - distinct.len(),
        max_lost_in_one_generation: max_lost,
    })
}
