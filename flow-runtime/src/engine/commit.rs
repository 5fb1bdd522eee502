//! Group commit: one OS thread owns the journal's write side.
//!
//! Requests arrive on a channel. The thread blocks for the first, drains whatever else is
//! already queued (it never waits for a batch to fill, so a lone request costs exactly one
//! commit), applies them all in one write transaction, commits once (durably), and only
//! then answers each requester. `commit()` blocks on fsync, which is why it never runs on
//! an async worker thread.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

use crate::engine::now_ms;
use crate::error::{panic_message, FlowError};
use crate::store::{Store, Tables};

/// Most requests applied in one transaction.
const MAX_BATCH: usize = 4096;

/// Applies a request's writes at the given time; true if it hit a storage error (the
/// whole batch is then aborted).
type Apply = Box<dyn FnOnce(&mut Tables<'_>, u64) -> bool + Send>;
/// Learns whether the commit of the request's batch succeeded.
type Finish = Box<dyn FnOnce(Result<(), FlowError>) + Send>;

/// A request to the commit thread.
struct Job {
    apply: Apply,
    finish: Finish,
}

/// Test and demo hooks run by the commit thread.
pub(crate) struct CommitHooks {
    /// Freeze after this many transitions are durable.
    pub halt_after: Option<u64>,
    /// Called after each durable transition with the running total.
    pub on_commit: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// The sending side of the commit thread.
pub(crate) struct CommitPipeline {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: std::thread::ThreadId,
}

impl CommitPipeline {
    /// Starts the commit thread. When a halt is configured and reached, it sets `halted`
    /// and `stop` before answering anyone, so nothing else happens afterwards.
    pub(crate) fn start(
        store: Arc<Store>,
        hooks: CommitHooks,
        halted: Arc<AtomicBool>,
        stop: Arc<watch::Sender<Option<String>>>,
    ) -> Result<Self, FlowError> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("flow-commit".into())
            .spawn(move || commit_loop(&store, &receiver, &hooks, &halted, &stop))
            .map_err(|e| FlowError::storage(format!("could not start the commit thread: {e}")))?;
        Ok(CommitPipeline {
            sender: Mutex::new(Some(sender)),
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `apply` for the next transaction; resolves once that transaction is durable.
    ///
    /// `apply` must return logical errors (conflicts, unknown runs) before writing anything:
    /// the transaction is shared with other requests.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        apply: impl FnOnce(&mut Tables<'_>, u64) -> Result<T, FlowError> + Send + 'static,
    ) -> impl Future<Output = Result<T, FlowError>> + Send + 'static {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, FlowError>>();
        let slot: Arc<Mutex<Option<Result<T, FlowError>>>> = Arc::new(Mutex::new(None));
        let applied = slot.clone();
        let job = Job {
            apply: Box::new(move |tables, now| {
                let result = apply(tables, now);
                let fatal = matches!(
                    result,
                    Err(FlowError::Storage { .. } | FlowError::Corrupt { .. })
                );
                *applied.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                fatal
            }),
            finish: Box::new(move |committed| {
                let result = match committed {
                    Ok(()) => slot
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .unwrap_or_else(|| {
                            Err(FlowError::storage("internal: request was not applied"))
                        }),
                    Err(e) => Err(e),
                };
                let _ = reply_tx.send(result);
            }),
        };
        let sent = match &*self.sender.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(sender) => sender.send(job).is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(FlowError::stopped("the engine was shut down"));
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
    store: &Store,
    receiver: &mpsc::Receiver<Job>,
    hooks: &CommitHooks,
    halted: &AtomicBool,
    stop: &watch::Sender<Option<String>>,
) {
    let mut total: u64 = 0;
    while let Ok(first) = receiver.recv() {
        if halted.load(Ordering::SeqCst) {
            // Frozen "as if the process died": requests are dropped unwritten.
            drop(first);
            continue;
        }
        // With a halt configured, never commit past it, so a test halts at an exact point.
        let room = hooks
            .halt_after
            .map(|n| n.saturating_sub(total).max(1) as usize)
            .unwrap_or(MAX_BATCH)
            .min(MAX_BATCH);
        let mut batch = vec![first];
        while batch.len() < room {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        let (finishes, result) = match store.with_db(|db| commit_batch(db, batch)) {
            Some(outcome) => outcome,
            None => return,
        };
        match result {
            Ok(()) => {
                for _ in 0..count {
                    total += 1;
                    if let Some(hook) = &hooks.on_commit {
                        hook(total);
                    }
                }
                if hooks.halt_after.is_some_and(|n| total >= n) {
                    halted.store(true, Ordering::SeqCst);
                    stop.send_replace(Some(format!(
                        "halted after {total} commits by the halt_after_commits test hook"
                    )));
                }
                for finish in finishes {
                    finish(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal commit failed");
                for finish in finishes {
                    finish(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies and commits one batch; returns each request's `finish` and the commit result.
fn commit_batch(db: &redb::Database, batch: Vec<Job>) -> (Vec<Finish>, Result<(), FlowError>) {
    let mut finishes = Vec::with_capacity(batch.len());
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            finishes.extend(batch.into_iter().map(|j| j.finish));
            return (finishes, Err(e.into()));
        }
    };
    let now = now_ms();
    let mut fatal = None;
    match Tables::open(&txn) {
        Ok(mut tables) => {
            for job in batch {
                let Job { apply, finish } = job;
                finishes.push(finish);
                if fatal.is_some() {
                    continue;
                }
                // redb may panic on a damaged page (debug builds): fail the batch, not
                // the commit thread.
                match catch_unwind(AssertUnwindSafe(|| apply(&mut tables, now))) {
                    Ok(false) => {}
                    Ok(true) => fatal = Some(FlowError::storage("a write in this commit failed")),
                    Err(panic) => {
                        fatal = Some(FlowError::Corrupt {
                            path: "journal".into(),
                            message: format!("writing it failed: {}", panic_message(&*panic)),
                        })
                    }
                }
            }
        }
        Err(e) => {
            fatal = Some(e);
            finishes.extend(batch.into_iter().map(|j| j.finish));
        }
    }
    if let Some(e) = fatal {
        let _ = txn.abort();
        return (finishes, Err(e));
    }
    let result = txn.commit().map_err(FlowError::from);
    (finishes, result)
}
