//! Group commit: one OS thread writes the journal for everyone.
//!
//! Requests arrive on a channel. The thread takes the first (polling briefly after a
//! small batch, see `POLL_BEFORE_SLEEP`), drains whatever else is already queued (it never
//! waits for a batch to fill, so a lone request costs exactly one commit), applies them
//! all in one write transaction, commits once (durably), and only then answers each
//! requester. `commit()` blocks on fsync, which is why it never runs on an async worker
//! thread.
//!
//! This thread is the engine's one serial stage, so it does as little as it can: the
//! drivers encode their records before submitting, the records it encodes itself go
//! into a reused buffer, the writes go back to their drivers to be freed, and a large
//! batch's answers are sent from the runtime (`answer`).
//!
//! A request that is alone, from a driver, is committed by the driver's own thread
//! instead (`CommitPipeline::submit_here`): with nothing to batch, the thread hand-offs
//! would cost as much as the rest of the step. `Committer::total` decides who writes.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::metrics::EngineMetrics;
use crate::error::{panic_message, FlowError};
use crate::store::{Applied, BatchWrites, Change, Journal, LoggedBatch, Store, Tables};
use crate::time::now_ms;

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 4096;

/// A request to the commit thread.
trait Request: Send {
    /// The request's change as the write-ahead log holds it (empty without a log).
    fn logged(&self) -> &[u8];
    /// Applies the request's change at time `now`; true if it hit a storage error (the
    /// whole batch is then aborted).
    fn apply(&mut self, tables: &mut Tables<'_>, now: u64) -> bool;
    /// Answers the requester once the batch's commit is known (`Ok` if it is durable).
    fn finish(self: Box<Self>, committed: Result<(), FlowError>);
    /// Counts what the request's change did, once its batch is durable.
    fn observe(&self, metrics: &EngineMetrics);
}

type Job = Box<dyn Request>;

/// What a requester gets back: what its change did, and the change itself (to be freed,
/// or read, on the requester's thread).
pub(crate) type Committed = (Applied, Change);

/// A request built by [`CommitPipeline::submit`]: one allocation holds the change, its
/// encoding for the log, its result and the reply.
struct Submitted {
    change: Change,
    logged: Vec<u8>,
    result: Option<Result<Applied, FlowError>>,
    reply: oneshot::Sender<Result<Committed, FlowError>>,
    _outstanding: Outstanding,
}

impl Request for Submitted {
    fn logged(&self) -> &[u8] {
        &self.logged
    }

    fn apply(&mut self, tables: &mut Tables<'_>, now: u64) -> bool {
        let result = self.change.apply(tables, now);
        let fatal = matches!(
            result,
            Err(FlowError::Storage { .. } | FlowError::Corrupt { .. })
        );
        self.result = Some(result);
        fatal
    }

    fn observe(&self, metrics: &EngineMetrics) {
        if let Some(Ok(applied)) = &self.result {
            metrics.observe_change(&self.change, applied);
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), FlowError>) {
        let Submitted {
            change,
            result,
            reply,
            ..
        } = *self;
        let result = match committed {
            Ok(()) => result
                .unwrap_or_else(|| Err(FlowError::storage("internal: request was not applied")))
                .map(|applied| (applied, change)),
            Err(e) => Err(e),
        };
        let _ = reply.send(result);
    }
}

/// Counts a request as outstanding until it is answered or dropped.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    /// Counts one more; also returns whether no other request was outstanding.
    fn count(counter: &Arc<AtomicUsize>) -> (Self, bool) {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        (Outstanding(counter.clone()), before == 0)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Test and demo hooks, run by whoever commits (see `Committer`).
pub(crate) struct CommitHooks {
    /// Freeze after this many transitions are durable.
    pub halt_after: Option<u64>,
    /// Called after each durable transition with the running total.
    pub on_commit: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// Who writes the journal, and how. Whoever holds `total` writes: the commit thread for each
/// batch, or a driver committing its own transition when it is alone (`submit_here`).
struct Committer {
    store: Arc<Store>,
    hooks: CommitHooks,
    halted: Arc<AtomicBool>,
    stop: Arc<watch::Sender<Option<String>>>,
    metrics: Arc<EngineMetrics>,
    /// Transitions committed so far; holding its lock is the right to write.
    total: Mutex<u64>,
    /// How long without a write before the journal's idle maintenance (`Journal::when_idle`).
    idle_after: Option<Duration>,
}

impl Committer {
    fn is_halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// How many requests the next batch may hold: never past a configured halt, so a
    /// test halts at an exact point.
    fn room(&self, total: u64) -> usize {
        self.hooks
            .halt_after
            .map(|n| n.saturating_sub(total).max(1) as usize)
            .unwrap_or(MAX_BATCH)
            .min(MAX_BATCH)
    }

    /// Logs (if the journal has a log), applies and commits `batch`, then runs the hooks
    /// (setting the halt, when it is reached, before anyone is answered); `None` once the
    /// journal is closed.
    fn write(&self, total: &mut u64, batch: Vec<Job>) -> Option<(Vec<Job>, Result<(), FlowError>)> {
        let count = batch.len() as u64;
        let mut batch = Batch(batch);
        let began = Instant::now();
        let result = self.store.write_batch(now_ms(), &mut batch)?;
        let took = began.elapsed();
        let Batch(batch) = batch;
        match &result {
            Ok(()) => {
                self.metrics.batch_committed(batch.len(), took);
                for job in &batch {
                    job.observe(&self.metrics);
                }
                for _ in 0..count {
                    *total += 1;
                    if let Some(hook) = &self.hooks.on_commit {
                        hook(*total);
                    }
                }
                if self.hooks.halt_after.is_some_and(|n| *total >= n) {
                    self.halted.store(true, Ordering::SeqCst);
                    self.stop.send_replace(Some(format!(
                        "halted after {total} commits by the halt_after_commits test hook"
                    )));
                }
            }
            Err(e) => tracing::error!(error = %e, "journal commit failed"),
        }
        Some((batch, result))
    }

    fn lock_total(&self) -> std::sync::MutexGuard<'_, u64> {
        self.total.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checkpoints the journal if its log has grown enough (see `store::recovery`); run
    /// after a batch is answered, so that no requester waits for it.
    fn checkpoint_if_due(&self) {
        let _writing = self.lock_total();
        self.store.checkpoint_if_due();
    }

    /// Runs the journal's idle maintenance if nothing was written since `seen` (the
    /// total at the previous look) and nothing since the last maintenance (`done`);
    /// returns the total now. Holds the right to write meanwhile.
    fn idle(&self, seen: u64, done: &mut Option<u64>) -> u64 {
        let total = self.lock_total();
        if *total == seen && *done != Some(seen) && !self.is_halted() {
            self.store.when_idle();
            *done = Some(seen);
        }
        *total
    }
}

/// The sending side of the commit thread.
pub(crate) struct CommitPipeline {
    committer: Arc<Committer>,
    /// Whether requests are logged (and so encoded when submitted).
    logged: bool,
    /// Whether a lone driver may commit its own transition (`submit_here`).
    commit_on_drivers: bool,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Requests submitted and not yet answered.
    outstanding: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: std::thread::ThreadId,
}

impl CommitPipeline {
    /// Starts the commit thread (within a tokio runtime: answers go out through it). When
    /// a halt is configured and reached, it sets `halted` and `stop` before answering
    /// anyone, so nothing else happens afterwards.
    pub(crate) fn start(
        store: Arc<Store>,
        hooks: CommitHooks,
        halted: Arc<AtomicBool>,
        stop: Arc<watch::Sender<Option<String>>>,
        metrics: Arc<EngineMetrics>,
        idle_after: Option<Duration>,
        commit_on_drivers: bool,
    ) -> Result<Self, FlowError> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let runtime = tokio::runtime::Handle::current();
        let committer = Arc::new(Committer {
            store,
            hooks,
            halted,
            stop,
            metrics,
            total: Mutex::new(0),
            idle_after,
        });
        let logged = committer.store.is_logged();
        let thread_committer = committer.clone();
        let thread = std::thread::Builder::new()
            .name("flow-commit".into())
            .spawn(move || commit_loop(&thread_committer, &receiver, &runtime))
            .map_err(|e| FlowError::storage(format!("could not start the commit thread: {e}")))?;
        Ok(CommitPipeline {
            committer,
            logged,
            commit_on_drivers,
            sender: Mutex::new(Some(sender)),
            outstanding: Arc::default(),
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `change` for the next transaction; resolves once that transaction is
    /// durable.
    pub(crate) fn submit(
        &self,
        change: Change,
    ) -> impl Future<Output = Result<Committed, FlowError>> + Send + 'static {
        self.submit_with(change, false)
    }

    /// As [`submit`](Self::submit), but when no other request is in flight and the caller
    /// runs on a worker of a multi-thread runtime, the transaction is committed right here
    /// (in `tokio::task::block_in_place`) instead of by the commit thread.
    ///
    /// A lone run's step then costs its commit and its own work, without waking the
    /// commit thread and then being woken by it (on a virtual machine each wake-up costs
    /// tens of microseconds, as much as the rest of the step). Under load requests are
    /// never alone and go to the commit thread, whose batches are what makes many runs
    /// cheap. Only drivers call this: their tasks are spawned on the engine's runtime, and
    /// blocking one of them blocks nothing else of the caller's.
    pub(crate) fn submit_here(
        &self,
        change: Change,
    ) -> impl Future<Output = Result<Committed, FlowError>> + Send + 'static {
        self.submit_with(change, self.commit_on_drivers)
    }

    fn submit_with(
        &self,
        change: Change,
        here: bool,
    ) -> impl Future<Output = Result<Committed, FlowError>> + Send + 'static {
        let (reply, reply_rx) = oneshot::channel();
        // Encoded here, on the requester's thread: the commit thread only copies it.
        let mut logged = Vec::new();
        let encoded = match self.logged {
            true => change.encode_into(&mut logged),
            false => Ok(()),
        };
        let (outstanding, lone) = Outstanding::count(&self.outstanding);
        let job: Job = Box::new(Submitted {
            change,
            logged,
            result: None,
            reply,
            _outstanding: outstanding,
        });
        let job = match encoded {
            Err(e) => {
                job.finish(Err(e));
                None
            }
            Ok(()) if here && lone => self.commit_here(job),
            Ok(()) => Some(job),
        };
        let sent = match job {
            // Committed (or, past a halt, dropped) right here.
            None => true,
            Some(job) => self.send(job),
        };
        // Why the engine refuses, if it does (said now: the reason may be taken later).
        let refused = (!sent).then(|| {
            self.committer
                .stop
                .borrow()
                .clone()
                .unwrap_or_else(|| "the engine was shut down".to_string())
        });
        async move {
            if let Some(reason) = refused {
                return Err(FlowError::stopped(reason));
            }
            // A dropped reply means the thread froze (halt hook) or stopped before this
            // request was written.
            reply_rx.await.unwrap_or_else(|_| {
                Err(FlowError::stopped(
                    "the engine stopped before this change was committed",
                ))
            })
        }
    }

    /// Queues `job` for the commit thread; false once the engine is shut down.
    fn send(&self, job: Job) -> bool {
        match &*self.sender.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(sender) => sender.send(job).is_ok(),
            None => false,
        }
    }

    /// Commits `job` on this thread if it may block here and nobody else is writing;
    /// gives the job back otherwise.
    fn commit_here(&self, job: Job) -> Option<Job> {
        let may_block = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let open = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !may_block || !open {
            return Some(job);
        }
        let mut total = match self.committer.total.try_lock() {
            Ok(total) => total,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Some(job),
        };
        if self.committer.is_halted() {
            // Frozen "as if the process died": the request is dropped unwritten.
            return None;
        }
        tokio::task::block_in_place(|| {
            let written = self.committer.write(&mut total, vec![job]);
            drop(total);
            if let Some((batch, result)) = written {
                for job in batch {
                    job.finish(result.clone());
                }
            }
            self.committer.checkpoint_if_due();
        });
        None
    }

    /// Closes the channel; the thread finishes its current batch and exits.
    pub(crate) fn close(&self) -> Option<JoinHandle<()>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if std::thread::current().id() == self.thread_id {
            // Called from a hook on the commit thread itself: it cannot join itself.
            return None;
        }
        self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

fn commit_loop(
    committer: &Committer,
    receiver: &mpsc::Receiver<Job>,
    runtime: &tokio::runtime::Handle,
) {
    let mut last_batch = 0;
    let mut idle = Idle::default();
    while let Some(first) =
        next_request(receiver, last_batch <= ANSWER_INLINE, committer, &mut idle)
    {
        let mut total = committer.lock_total();
        // Checked with the right to write held: a driver committing its own transition
        // (`commit_here`) may have reached the halt while this thread waited for it.
        if committer.is_halted() {
            // Frozen "as if the process died": requests are dropped unwritten.
            drop(first);
            continue;
        }
        let room = committer.room(*total);
        let mut batch = vec![first];
        while batch.len() < room {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        last_batch = batch.len();
        let Some((batch, result)) = committer.write(&mut total, batch) else {
            return;
        };
        drop(total);
        match result {
            Ok(()) => answer(batch, runtime),
            Err(e) => {
                for job in batch {
                    job.finish(Err(e.clone()));
                }
            }
        }
        committer.checkpoint_if_due();
    }
}

/// How long the thread polls for the next request after a batch before it sleeps.
///
/// With few runs going, the next request often follows within tens of microseconds
/// (a caller starting runs one after another, a few runs taking turns), and waking a
/// sleeping thread costs about as much again on a virtual machine. After a large batch
/// the thread does not poll: the wake-up is shared by the next batch's many requests,
/// and the CPU is better left to the workers preparing them.
const POLL_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Largest batch the commit thread answers itself; larger ones are answered by a tokio task.
const ANSWER_INLINE: usize = 2;

/// Answers the requests of a durable batch.
///
/// Each answer wakes a driver; from this thread, a wake-up goes through the runtime's
/// shared queue and often a futex call to unpark a worker, and a large batch's wake-ups
/// would take the commit thread as long as its writes. One task spawned on the runtime
/// answers them instead (its wake-ups are local to a worker), and the thread goes on to
/// the next batch. A small batch (a lone run, whose single wake-up a task would only
/// delay) is answered here.
fn answer(batch: Vec<Job>, runtime: &tokio::runtime::Handle) {
    if batch.len() <= ANSWER_INLINE {
        for job in batch {
            job.finish(Ok(()));
        }
        return;
    }
    runtime.spawn(async move {
        for job in batch {
            job.finish(Ok(()));
        }
    });
}

/// The next request: polled for `POLL_BEFORE_SLEEP` if `poll`, then waited for; `None`
/// once every sender is gone.
fn next_request(
    receiver: &mpsc::Receiver<Job>,
    poll: bool,
    committer: &Committer,
    idle: &mut Idle,
) -> Option<Job> {
    if poll {
        let polling = Instant::now();
        loop {
            match receiver.try_recv() {
                Ok(job) => return Some(job),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if polling.elapsed() < POLL_BEFORE_SLEEP => {
                    std::hint::spin_loop();
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
    }
    let Some(after) = committer.idle_after else {
        return receiver.recv().ok();
    };
    // Wakes every `after` while no request comes: a journal written by nobody (the
    // thread's own batches and those committed by callers, `commit_here`, alike) for a
    // whole period gets its idle maintenance, once.
    loop {
        match receiver.recv_timeout(after) {
            Ok(job) => return Some(job),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                idle.seen = Some(committer.idle(idle.seen.unwrap_or(u64::MAX), &mut idle.done));
            }
        }
    }
}

/// What the commit thread saw at its last idle look (see `next_request`).
#[derive(Default)]
struct Idle {
    /// Transitions committed then.
    seen: Option<u64>,
    /// The total at the last idle maintenance.
    done: Option<u64>,
}

/// The requests of one transaction.
struct Batch(Vec<Job>);

impl BatchWrites for Batch {
    fn encode(&self, out: &mut Vec<u8>) {
        for job in &self.0 {
            LoggedBatch::push(out, job.logged());
        }
    }

    /// Fails (and with it the batch) on the first storage error; each request keeps its
    /// own logical result.
    fn apply(&mut self, tables: &mut Tables<'_>, now: u64) -> Result<(), FlowError> {
        for job in &mut self.0 {
            // redb may panic on a damaged page (debug builds): fail the batch, not the
            // thread.
            match catch_unwind(AssertUnwindSafe(|| job.apply(tables, now))) {
                Ok(false) => {}
                Ok(true) => return Err(FlowError::storage("a write in this commit failed")),
                Err(panic) => {
                    return Err(FlowError::Corrupt {
                        path: "journal".into(),
                        message: format!("writing it failed: {}", panic_message(&*panic)),
                    })
                }
            }
        }
        Ok(())
    }
}
