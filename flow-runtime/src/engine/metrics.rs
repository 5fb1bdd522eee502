//! Metrics: counters and histograms the engine keeps as it works, and the snapshot
//! [`Engine::metrics`] returns (`flow-server` renders it for Prometheus at `/metrics`).
//!
//! Recording costs a few relaxed atomic additions and, per task attempt, one hash
//! lookup by task name: no lock, no allocation. The maps of per-workflow and per-task
//! counters are built once, when the engine opens, from the workflows it registers and
//! the tasks linked into the program, and never change; so their labels are bounded by
//! the program's code, never by its runs.
//!
//! Where each thing is recorded:
//! - run starts and ends: by whoever commits (`commit.rs`), from each durable change of a
//!   batch (`observe_change`), so that every way a run starts (a call, a child, a fork)
//!   or ends (a step, a cancellation, a fault) counts once it is durable;
//! - task attempts (their latency) and retries: by the run's driver, when it receives a
//!   finished attempt and when it judges one worth retrying;
//! - commits (batch sizes and durations): around `Journal::write_batch`;
//! - runs in progress, and the journal's and log's sizes: read when the snapshot is taken.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::registry::Registry;
use super::Engine;
use crate::store::{Applied, Change, Journal, RunWrite, StartOutcome, StoredStatus};
use crate::task::TaskRegistration;

/// Upper bounds (inclusive) of the buckets of [`TaskMetrics::attempt_seconds`], in seconds.
pub const ATTEMPT_SECONDS_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 60.0, 300.0,
];

/// Upper bounds (inclusive) of the buckets of [`CommitMetrics::duration_seconds`], in
/// seconds.
pub const COMMIT_SECONDS_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (inclusive) of the buckets of [`CommitMetrics::batch_size`], in changes.
pub const BATCH_SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// What an engine counted since it opened, and a few gauges read when this was taken
/// ([`Engine::metrics`]).
///
/// Counters start at zero when the engine opens: they count what this engine did, not
/// what the journal holds (runs started by an earlier engine and ended by this one count
/// as ended only). Each part is read without stopping the engine, so two numbers may be
/// a few events apart.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Per registered workflow (every version under its name), by name.
    pub workflows: Vec<WorkflowMetrics>,
    /// Per task linked into the program, by name.
    pub tasks: Vec<TaskMetrics>,
    /// Journal commits.
    pub commits: CommitMetrics,
    /// Runs this engine is driving now: each has a step or a task attempt running or due.
    /// Runs that wait for a timer, a signal, a callback or a child have no driver in
    /// memory and are not counted ([`Engine::count_runs`] counts them from the journal).
    pub runs_in_progress: u64,
    /// The journal file's size in bytes; `None` for a journal not on a file (in memory,
    /// or a custom backend).
    pub journal_bytes: Option<u64>,
    /// The write-ahead log's size in bytes; `None` without a log file.
    pub log_bytes: Option<u64>,
}

/// The runs of one workflow (all its versions) that started and ended in this engine.
///
/// A run that ends, is redriven (or its fault retried) and ends again counts at each end.
/// Only workflows the engine registers are counted: it cannot drive others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkflowMetrics {
    /// The workflow's name.
    pub workflow: String,
    /// Runs created: started by a caller or by a parent (children), or forked.
    pub started: u64,
    /// Runs that completed with a value (an `Ok`, for a workflow that returns a `Result`).
    pub completed: u64,
    /// Runs that completed with an `Err` value.
    pub returned_err: u64,
    /// Runs that failed (an error no task or the workflow handled).
    pub failed: u64,
    /// Runs that were cancelled.
    pub cancelled: u64,
    /// Runs that faulted (stopped by a bug or damage; `Engine::retry_faulted` resumes them).
    pub faulted: u64,
}

/// The attempts of one task this engine ran.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskMetrics {
    /// The task's name.
    pub task: String,
    /// How long each finished attempt took, from its start to its result (success or
    /// failure, a timeout included); attempts cancelled before they finished are not
    /// counted. Its `count` is the number of finished attempts.
    pub attempt_seconds: Histogram,
    /// Failed attempts that were scheduled to be tried again.
    pub retries: u64,
}

/// The journal's commits: one per batch of changes (the changes of many runs share one).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CommitMetrics {
    /// Changes per durable batch; its `count` is the number of durable batches.
    pub batch_size: Histogram,
    /// How long each durable batch took to write: log append, sync and apply.
    pub duration_seconds: Histogram,
}

/// A histogram: how many observations fell at or under each bound.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Histogram {
    /// Each bucket's upper bound (inclusive) and the number of observations at most that
    /// (cumulative, as Prometheus counts them); a last bucket at infinity holds `count`.
    pub buckets: Vec<(f64, u64)>,
    /// All observations.
    pub count: u64,
    /// Their sum (seconds for durations).
    pub sum: f64,
}

impl Histogram {
    /// The number of observations at most `bound`, if `bound` is one of the bucket bounds.
    pub fn at_most(&self, bound: f64) -> Option<u64> {
        self.buckets
            .iter()
            .find(|(b, _)| *b == bound)
            .map(|(_, n)| *n)
    }
}

/// A histogram of whole numbers (nanoseconds, or changes) in fixed buckets, recorded
/// with atomics.
pub(crate) struct AtomicHistogram {
    /// Upper bounds in the recorded unit, ascending.
    bounds: Box<[u64]>,
    /// The bounds as reported, in the reported unit.
    reported: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is past every bound.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// Recorded units per reported unit.
    per_unit: f64,
}

impl AtomicHistogram {
    /// Buckets at `reported` (in the reported unit), for values recorded in units
    /// `per_unit` of which make one reported unit.
    fn new(reported: &'static [f64], per_unit: f64) -> Self {
        AtomicHistogram {
            bounds: reported
                .iter()
                .map(|b| (b * per_unit).round() as u64)
                .collect(),
            reported,
            buckets: (0..=reported.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            per_unit,
        }
    }

    fn seconds(reported: &'static [f64]) -> Self {
        AtomicHistogram::new(reported, 1e9)
    }

    fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    fn record_duration(&self, took: Duration) {
        self.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    fn snapshot(&self) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.reported.len());
        for (bound, count) in self.reported.iter().zip(self.buckets.iter()) {
            cumulative += count.load(Relaxed);
            buckets.push((*bound, cumulative));
        }
        let past = self.buckets.last().map_or(0, |c| c.load(Relaxed));
        Histogram {
            buckets,
            // From the buckets, so that the snapshot is consistent with itself.
            count: cumulative + past,
            sum: self.sum.load(Relaxed) as f64 / self.per_unit,
        }
    }
}

/// Whether an encoded output of a workflow is an `Err` (see `outcome`).
type ReturnedErr = fn(&[u8]) -> Option<bool>;

/// The counters of one workflow name.
struct WorkflowCounters {
    started: AtomicU64,
    completed: AtomicU64,
    returned_err: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    faulted: AtomicU64,
    /// Whether an encoded output is an `Err`, per version (output types may differ).
    returned_err_of: BTreeMap<u32, ReturnedErr>,
}

struct TaskCounters {
    attempts: AtomicHistogram,
    retries: AtomicU64,
}

/// The engine's counters (see the module documentation).
pub(crate) struct EngineMetrics {
    workflows: HashMap<&'static str, WorkflowCounters>,
    tasks: HashMap<&'static str, TaskCounters>,
    batch_size: AtomicHistogram,
    commit_seconds: AtomicHistogram,
}

impl EngineMetrics {
    /// Counters for every workflow `registry` holds and every task linked into the program.
    pub(crate) fn new(registry: &Registry) -> Self {
        let mut workflows: HashMap<&'static str, WorkflowCounters> = HashMap::new();
        for entry in registry.entries() {
            workflows
                .entry(entry.name)
                .or_insert_with(|| WorkflowCounters {
                    started: AtomicU64::new(0),
                    completed: AtomicU64::new(0),
                    returned_err: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    cancelled: AtomicU64::new(0),
                    faulted: AtomicU64::new(0),
                    returned_err_of: BTreeMap::new(),
                })
                .returned_err_of
                .insert(entry.version, entry.returned_err);
        }
        let tasks = inventory::iter::<TaskRegistration>()
            .map(|task| {
                let counters = TaskCounters {
                    attempts: AtomicHistogram::seconds(&ATTEMPT_SECONDS_BUCKETS),
                    retries: AtomicU64::new(0),
                };
                (task.name, counters)
            })
            .collect();
        EngineMetrics {
            workflows,
            tasks,
            batch_size: AtomicHistogram::new(&BATCH_SIZE_BUCKETS, 1.0),
            commit_seconds: AtomicHistogram::seconds(&COMMIT_SECONDS_BUCKETS),
        }
    }

    /// A finished attempt of task `task` that took `took`.
    pub(crate) fn attempt_finished(&self, task: &str, took: Duration) {
        if let Some(counters) = self.tasks.get(task) {
            counters.attempts.record_duration(took);
        }
    }

    /// A failed attempt of task `task` that will be tried again.
    pub(crate) fn retry_scheduled(&self, task: &str) {
        if let Some(counters) = self.tasks.get(task) {
            counters.retries.fetch_add(1, Relaxed);
        }
    }

    /// A durable batch of `changes` changes that took `took` to write.
    pub(crate) fn batch_committed(&self, changes: usize, took: Duration) {
        self.batch_size.record(changes as u64);
        self.commit_seconds.record_duration(took);
    }

    /// A durable change and what applying it did: counts the runs it created and ended.
    pub(crate) fn observe_change(&self, change: &Change, applied: &Applied) {
        let write = match (change, applied) {
            (Change::Start(start), Applied::Started(StartOutcome::Created(_))) => {
                self.count(&start.write.header.workflow, |c| &c.started);
                &start.write
            }
            (
                Change::Run(write) | Change::RetryFaulted(write) | Change::Redrive(write),
                Applied::Ran(_),
            ) => write,
            _ => return,
        };
        self.observe_write(write);
    }

    /// Counts the children `write` creates and the end it records, if it ends its run.
    fn observe_write(&self, write: &RunWrite) {
        for child in &write.children {
            self.count(&child.workflow, |c| &c.started);
        }
        let header = &write.header;
        // Most writes do not end their run: they cost this one comparison.
        if !header.status.is_settled() {
            return;
        }
        let Some(counters) = self.workflows.get(header.workflow.as_str()) else {
            return;
        };
        let counter = match &header.status {
            StoredStatus::Completed => {
                // Decoding the output costs about what storing it did, once per run.
                let returned_err = match (
                    counters.returned_err_of.get(&header.version),
                    write.output.as_deref(),
                ) {
                    (Some(is_err), Some(output)) => is_err(output) == Some(true),
                    _ => false,
                };
                match returned_err {
                    true => &counters.returned_err,
                    false => &counters.completed,
                }
            }
            StoredStatus::Failed(_) => &counters.failed,
            StoredStatus::Cancelled => &counters.cancelled,
            StoredStatus::Faulted(_) => &counters.faulted,
            _ => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    fn count(&self, workflow: &str, which: impl Fn(&WorkflowCounters) -> &AtomicU64) {
        if let Some(counters) = self.workflows.get(workflow) {
            which(counters).fetch_add(1, Relaxed);
        }
    }

    /// The counters as they stand (the gauges are the caller's).
    fn snapshot(&self) -> (Vec<WorkflowMetrics>, Vec<TaskMetrics>, CommitMetrics) {
        let mut workflows: Vec<WorkflowMetrics> = self
            .workflows
            .iter()
            .map(|(name, c)| WorkflowMetrics {
                workflow: name.to_string(),
                started: c.started.load(Relaxed),
                completed: c.completed.load(Relaxed),
                returned_err: c.returned_err.load(Relaxed),
                failed: c.failed.load(Relaxed),
                cancelled: c.cancelled.load(Relaxed),
                faulted: c.faulted.load(Relaxed),
            })
            .collect();
        workflows.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        let mut tasks: Vec<TaskMetrics> = self
            .tasks
            .iter()
            .map(|(name, c)| TaskMetrics {
                task: name.to_string(),
                attempt_seconds: c.attempts.snapshot(),
                retries: c.retries.load(Relaxed),
            })
            .collect();
        tasks.sort_by(|a, b| a.task.cmp(&b.task));
        let commits = CommitMetrics {
            batch_size: self.batch_size.snapshot(),
            duration_seconds: self.commit_seconds.snapshot(),
        };
        (workflows, tasks, commits)
    }
}

impl Engine {
    /// The engine's metrics now: runs started and ended per workflow, task attempt
    /// latencies and retries per task, commit batch sizes and durations, runs in
    /// progress, and the journal's and log's sizes. Cheap: reads counters and two file
    /// sizes, nothing of the journal. `flow-server` serves it at `/metrics` for
    /// Prometheus; see the README's Metrics section for the names.
    ///
    /// ```no_run
    /// # fn demo(engine: flow_runtime::Engine) {
    /// let metrics = engine.metrics();
    /// for workflow in &metrics.workflows {
    ///     println!("{}: {} started, {} failed", workflow.workflow, workflow.started, workflow.failed);
    /// }
    /// # }
    /// ```
    pub fn metrics(&self) -> Metrics {
        let core = self.core();
        let (workflows, tasks, commits) = core.metrics.snapshot();
        let sizes = core.store.sizes();
        Metrics {
            workflows,
            tasks,
            commits,
            runs_in_progress: core.drivers.live() as u64,
            journal_bytes: sizes.journal_bytes,
            log_bytes: sizes.log_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_at_or_under_each_bound() {
        let h = AtomicHistogram::new(&BATCH_SIZE_BUCKETS, 1.0);
        for value in [1, 1, 2, 3, 4096, 5000] {
            h.record(value);
        }
        let snap = h.snapshot();
        assert_eq!(snap.at_most(1.0), Some(2));
        assert_eq!(snap.at_most(2.0), Some(3));
        assert_eq!(snap.at_most(4.0), Some(4));
        assert_eq!(snap.at_most(2048.0), Some(4));
        assert_eq!(snap.at_most(4096.0), Some(5));
        assert_eq!(snap.count, 6);
        assert_eq!(snap.sum, 9103.0);
        assert_eq!(snap.buckets.len(), BATCH_SIZE_BUCKETS.len());
    }

    #[test]
    fn durations_are_reported_in_seconds() {
        let h = AtomicHistogram::seconds(&ATTEMPT_SECONDS_BUCKETS);
        h.record_duration(Duration::from_micros(100));
        h.record_duration(Duration::from_micros(101));
        h.record_duration(Duration::from_secs(1000));
        let snap = h.snapshot();
        assert_eq!(snap.at_most(0.0001), Some(1));
        assert_eq!(snap.at_most(0.00025), Some(2));
        assert_eq!(snap.at_most(300.0), Some(2));
        assert_eq!(snap.count, 3);
        assert!((snap.sum - 1000.000201).abs() < 1e-9, "{}", snap.sum);
    }
}
