//! Attempts in flight: starting a task's attempt (polled by the driver itself, or in a
//! tokio task of its own), collecting their results, and cancelling them.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{RunDriver, TaskCall};
use tracing::Instrument;

use crate::engine::attempt::{run_attempt, AbortOnDrop, AttemptEnd, Running};
use crate::engine::queues::{remote_of, DurableAck, RemoteCall};
use crate::engine::step;
use crate::history::AttemptInProgress;
use crate::store::{PendingOp, Shape};
use crate::task::{TaskContext, TaskRegistration};
use crate::time::now_ms;

/// Which attempt: of branch `branch` of the operation of step `step`. Ordered by step,
/// then branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct AttemptKey {
    pub step: u64,
    pub branch: u32,
}

/// A finished attempt, waiting to be committed.
pub(super) struct AttemptOutcome {
    pub step: u64,
    pub attempt: u32,
    pub task: &'static TaskRegistration,
    pub end: AttemptEnd,
    /// How long the attempt ran; `None` for one that an earlier engine's end interrupted.
    pub took: Option<Duration>,
    /// A remote worker's report waits for this: sent once the outcome is committed.
    pub ack: Option<DurableAck>,
}

/// A running attempt.
pub(super) struct Inflight {
    /// The attempt's own tokio task; `None` for the attempt in [`RunDriver::inline`].
    handle: Option<AbortOnDrop<()>>,
    /// Tells the task body (`TaskContext::is_cancelled`) that it should stop.
    cancel: watch::Sender<bool>,
    /// Shows the attempt in `Engine::attempts_in_progress` while it is held.
    _shown: Running,
}

/// An attempt the driver polls itself, while it waits: the task of a step that awaits a
/// single task call (most steps). It needs no tokio task of its own and no channel, and
/// its result is judged in the same poll that finishes it; the attempts of joins, races
/// and maps get tasks of their own so that they run in parallel.
pub(super) struct InlineAttempt {
    key: AttemptKey,
    body: Pin<Box<dyn Future<Output = AttemptOutcome> + Send>>,
}

/// Results of attempts with tasks of their own, by branch.
pub(super) type ResultsChannel = (
    mpsc::UnboundedSender<(u32, AttemptOutcome)>,
    mpsc::UnboundedReceiver<(u32, AttemptOutcome)>,
);

/// The next result of an attempt with a task of its own; never if none was started.
pub(super) async fn spawned_finished(
    results: &mut Option<ResultsChannel>,
) -> Option<(u32, AttemptOutcome)> {
    match results {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the inline attempt finishes (taking it out); never while there is none.
pub(super) fn inline_finished(
    inline: &mut Option<InlineAttempt>,
) -> impl Future<Output = (u32, AttemptOutcome)> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(attempt) = inline.as_mut() else {
            return Poll::Pending;
        };
        match attempt.body.as_mut().poll(cx) {
            Poll::Ready(outcome) => {
                let branch = attempt.key.branch;
                *inline = None;
                Poll::Ready((branch, outcome))
            }
            Poll::Pending => Poll::Pending,
        }
    })
}

impl RunDriver {
    /// Cancels the attempts of step `step` (except branch `keep`): told through their
    /// context, then left to finish on their own.
    pub(super) fn cancel_attempts(&mut self, step: u64, keep: Option<u32>) {
        let losers: Vec<_> = self
            .inflight
            .keys()
            .filter(|key| key.step == step && Some(key.branch) != keep)
            .copied()
            .collect();
        for key in losers {
            if let Some(inflight) = self.inflight.remove(&key) {
                self.cancel_and_detach(key, inflight);
            }
        }
    }

    /// Tells an attempt's body to stop and lets it finish on its own; its result is
    /// ignored. An inline attempt gets a task of its own for that.
    fn cancel_and_detach(&mut self, key: AttemptKey, inflight: Inflight) {
        inflight.cancel.send_replace(true);
        match inflight.handle {
            Some(handle) => handle.detach(),
            None => {
                if let Some(attempt) = self.inline.take_if(|a| a.key == key) {
                    tokio::spawn(async move {
                        attempt.body.await;
                    });
                }
            }
        }
    }

    /// Aborts every running attempt, after telling their bodies to stop.
    pub(super) fn abort_attempts(&mut self) {
        for (_, inflight) in self.inflight.drain() {
            inflight.cancel.send_replace(true);
        }
        self.inline = None;
    }

    /// Starts attempt `attempt` of the task in branch `branch`; `Err` if the task is unknown.
    pub(super) fn start_attempt(
        &mut self,
        op: &PendingOp,
        branch: u32,
        call: TaskCall<'_>,
        attempt: u32,
        token: Option<&str>,
    ) -> Result<(), String> {
        let TaskCall { name, args, policy } = call;
        if self.core.is_stopped() {
            return Ok(());
        }
        let Some(task) = self.core.registry.find_task(name) else {
            return Err(format!(
                "task `{name}` is not registered: no #[task] with this name is linked into this \
                 program; the run waits, unchanged, until an engine whose program links the \
                 task opens the journal"
            ));
        };
        let key = step::child_id(&self.run_id, op.step, branch, op.is_multi());
        let cancel = watch::channel(false).0;
        // A remote task (`#[task(queue = ...)]`) is put on its queue for a worker
        // instead of running its body here (`engine/queues.rs`).
        let remote = remote_of(task).map(|remote| {
            let call = RemoteCall {
                remote,
                task,
                run: self.run_id.clone(),
                step: op.step,
                branch,
                attempt,
                key: key.clone(),
                args: args.to_vec(),
                start_to_close: policy.effective_timeout(),
                recovered: self.core.drivers.starts.due_before_open(op.scheduled_at_ms),
            };
            (self.core.queues.clone(), call, cancel.subscribe())
        });
        let mut ctx = TaskContext::new(self.run_id.clone(), key, attempt, cancel.subscribe());
        if let Some(token) = token {
            ctx = ctx.with_callback_token(token.to_string());
        }
        let args = args.to_vec();
        let timeout = Some(policy.effective_timeout());
        let step = op.step;
        // Inside the run's span (the driver's), so its events carry the run's ID too.
        let span = tracing::info_span!("attempt", step, branch, task = name, attempt);
        let body = async move {
            tracing::debug!("attempt started");
            let began = Instant::now();
            let (end, ack) = match remote {
                Some((queues, call, cancel)) => queues.run(call, cancel).await,
                None => (run_attempt(task, &args, timeout, ctx).await, None),
            };
            AttemptOutcome {
                step,
                attempt,
                task,
                end,
                took: Some(began.elapsed()),
                ack,
            }
        }
        .instrument(span);
        let handle = if op.shape == Shape::Single && op.branches.len() == 1 && self.inline.is_none()
        {
            self.inline = Some(InlineAttempt {
                key: AttemptKey { step, branch },
                body: Box::pin(body),
            });
            None
        } else {
            let results = self
                .results
                .get_or_insert_with(mpsc::unbounded_channel)
                .0
                .clone();
            Some(AbortOnDrop::new(tokio::spawn(async move {
                let _ = results.send((branch, body.await));
            })))
        };
        let shown = self.core.drivers.running.begin(
            &self.run_id,
            AttemptInProgress {
                step,
                branch,
                task: name.to_string(),
                attempt,
                started_at_ms: now_ms(),
            },
        );
        let inflight = Inflight {
            handle,
            cancel,
            _shown: shown,
        };
        self.inflight.insert(AttemptKey { step, branch }, inflight);
        Ok(())
    }
}
