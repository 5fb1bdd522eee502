//! Task queues: the attempts of remote tasks (`#[task(queue = "...")]`, see
//! `crate::remote`) waiting for a worker, the leases workers hold on them, and the
//! tokens that name a lease.
//!
//! **Memory, not the journal.** A remote attempt is what a local one is: a future the
//! run's driver awaits (`TaskQueues::run`, started in place of the task's body by
//! `driver/inflight.rs`). The future puts an entry on its queue and waits for the
//! worker's report, the cancellation of its run, or its next deadline; the driver then
//! judges the attempt by the task's policy exactly as it judges a local one (a retry is
//! the next attempt, with the same idempotency key). Nothing is written per poll,
//! heartbeat or lease, so the queues cost no journal writes: a report is committed
//! with the run's next transition, as a local attempt's output is.
//!
//! **Queues.** One FIFO of entry numbers per declared queue, and one `Notify`: a long
//! poll takes what is there or sleeps on the queue's `Notify` until an entry arrives
//! (an enqueue wakes one poller, which passes the wake-up on if it left entries), never
//! scanning. Entries that left the queue (cancelled, expired) are skipped when met.
//!
//! **Tokens.** A token names one lease of one attempt: run, step, branch, attempt
//! number, the engine's boot number and the lease's number, sealed with a 128-bit
//! HMAC-SHA-256 tag under the journal's 256-bit worker key (`token.rs`,
//! `store/worker_key.rs`). It is checked without a table: after a restart the engine
//! still knows its own tokens, and nobody without the journal can make one. A token is
//! honoured only while its lease is the attempt's current one: once the attempt was
//! handed out again (or ended), the token is refused and changes nothing. A report that
//! repeats the one already accepted through the same token is answered as a duplicate.
//!
//! **Deadlines.** Each entry has one deadline at a time, which its future sleeps until:
//! schedule-to-start while queued; the earlier of the heartbeat deadline (moved by each
//! heartbeat) and start-to-close (the task's `timeout`) while leased. A deadline that
//! passes ends the attempt as failed (`TaskFailure::NotStarted`, `HeartbeatTimedOut`,
//! `TimedOut`), which the task's retry policy then judges.
//!
//! **Restart.** The journal holds the pending operation; the attempt is rebuilt when the
//! run's driver starts again on open (the same attempt number: an attempt that never
//! ended is not counted). An attempt that was due before the engine opened may be held
//! by a worker of the previous engine, so it is *held*: kept off its queue for one
//! heartbeat timeout from the engine's opening. If the previous holder heartbeats or
//! reports within that time, its token (same attempt, an earlier boot) adopts the entry
//! and the lease goes on; otherwise the entry joins its queue and the next poll takes
//! it (a new lease; the old token is then refused).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Notify};

mod token;

/// The run a task token names, its seal unchecked (routing only).
pub(crate) fn task_token_run(token: &str) -> Option<String> {
    token::claimed_run(token, super::MAX_RUN_ID_BYTES)
}

use super::attempt::AttemptEnd;
use super::Engine;
use crate::codec;
use crate::error::FlowError;
use crate::remote::{declared_queues, find_remote, RemoteTask};
use crate::task::{AttemptClass, TaskFailure, TaskRegistration};
use crate::time::now_ms;
use token::{Claims, Slot, TokenKey};

/// Told once the transition that took a worker's report in is durable (dropped unsent
/// if the run's driver ends first): what a report's answer waits for.
pub(crate) type DurableAck = oneshot::Sender<()>;

/// The most tasks one poll takes.
pub const MAX_POLL_TASKS: usize = 1000;

/// The longest a poll waits for a task.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(60);

/// How many reported tokens are remembered, to answer a repeated report as a duplicate.
const REMEMBERED_REPORTS: usize = 1 << 16;

/// The most worker names remembered per queue (for `Engine::queues`).
const MAX_WORKER_NAMES: usize = 1024;

/// A worker counts as live this long after its last poll or heartbeat.
const WORKER_LIVE_FOR: Duration = Duration::from_secs(90);

/// One lease on a remote task's attempt, as a poll hands it to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedTask {
    /// Names this lease in heartbeats and reports; refused once the lease ended.
    pub token: String,
    /// The queue it was polled from.
    pub queue: String,
    /// The task's registered name.
    pub task: String,
    /// The run that awaits it.
    pub run_id: String,
    /// The same for every attempt of this call (retries, restarts): the key to make
    /// the task's outside effects exactly-once.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The task's arguments, encoded as the journal stores them (MessagePack with named
    /// fields; [`codec::to_json`](crate::codec::to_json) renders them as JSON).
    pub args: Vec<u8>,
    /// Heartbeat at least this often, or the attempt is retried elsewhere.
    pub heartbeat_timeout: Duration,
    /// When the lease ends unless a heartbeat moves it (wall clock, ms since the epoch).
    pub heartbeat_deadline_ms: u64,
    /// When the attempt times out, heartbeats or not (start-to-close; wall clock, ms).
    pub deadline_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskHeartbeat {
    /// The run was cancelled (or no longer needs the attempt): stop, and report the
    /// task failed (or just drop it).
    pub cancel_requested: bool,
    /// The lease's new heartbeat deadline (wall clock, ms since the epoch).
    pub heartbeat_deadline_ms: u64,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completed {
    /// The report was accepted: the run goes on with it.
    Accepted,
    /// The same report was accepted before through this token; nothing changed.
    Duplicate,
}

/// A queue as `Engine::queues` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Attempts waiting for a worker (held ones included, see the module doc).
    pub pending: usize,
    /// Attempts a worker holds.
    pub leased: usize,
    /// Workers seen polling or heartbeating this queue in the last 90 seconds, by name.
    pub workers: Vec<String>,
    /// How long the oldest lease has been held, in milliseconds (counted from when this
    /// engine handed it out or, after a restart, took it over); `None` with no lease.
    pub oldest_lease_age_ms: Option<u64>,
}

/// An attempt of a remote task, as the driver hands it to the queues.
pub(crate) struct RemoteCall {
    pub remote: &'static RemoteTask,
    pub task: &'static TaskRegistration,
    pub run: String,
    pub step: u64,
    pub branch: u32,
    pub attempt: u32,
    pub key: String,
    pub args: Vec<u8>,
    pub start_to_close: Duration,
    /// Due before this engine opened: a worker of the previous engine may hold it.
    pub recovered: bool,
}

enum EntryState {
    /// Off the queue until `until` (recovered; see the module doc).
    Held { until: Instant },
    /// On the queue.
    Ready,
    /// A worker holds it.
    Leased(Lease),
}

struct Lease {
    boot: u64,
    number: u64,
    worker: String,
    /// When this engine handed it out (or adopted it after a restart).
    since: Instant,
    heartbeat_deadline: Instant,
    close_deadline: Instant,
}

struct Entry {
    slot: Slot,
    queue: &'static str,
    remote: &'static RemoteTask,
    task: &'static TaskRegistration,
    attempt: u32,
    key: String,
    args: Arc<[u8]>,
    start_to_close: Duration,
    schedule_deadline: Instant,
    state: EntryState,
    cancel_requested: bool,
    report: Option<oneshot::Sender<(AttemptEnd, Option<DurableAck>)>>,
    /// Told when the entry's deadline moves earlier (it was leased).
    changed: Arc<Notify>,
}

struct Queue {
    ready: VecDeque<u64>,
    arrived: Arc<Notify>,
    workers: HashMap<String, Instant>,
}

#[derive(Default)]
struct State {
    queues: HashMap<&'static str, Queue>,
    entries: HashMap<u64, Entry>,
    by_slot: HashMap<Slot, u64>,
    next_entry: u64,
    next_lease: u64,
    /// Tokens reported through, with a hash of the report: a repeat is a duplicate.
    reported: HashMap<String, (u64, &'static str)>,
    reported_order: VecDeque<String>,
}

/// The engine's task queues (see the module doc).
pub(crate) struct TaskQueues {
    state: Mutex<State>,
    /// The journal's worker key: seals tokens and digests reports.
    key: TokenKey,
    /// A random number per engine: tells this engine's leases from earlier ones'.
    boot: u64,
    opened: Instant,
    /// The longest heartbeat timeout of a declared remote task: how long after opening
    /// an unknown token of an earlier engine may still name an attempt being rebuilt.
    recovery_window: Duration,
    /// Set by `release_polls`: polls answer at once.
    released: AtomicBool,
}

impl TaskQueues {
    /// Queues for every queue a linked remote task declares, sealing tokens with `key`.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        let mut boot = [0u8; 8];
        // A failed random source leaves boot 0: tokens of an earlier engine then look
        // like this one's, and are refused as stale rather than adopted.
        let _ = getrandom::fill(&mut boot);
        let mut state = State::default();
        for name in declared_queues() {
            state.queues.insert(
                name,
                Queue {
                    ready: VecDeque::new(),
                    arrived: Arc::new(Notify::new()),
                    workers: HashMap::new(),
                },
            );
        }
        TaskQueues {
            state: Mutex::new(state),
            key: TokenKey::new(&key),
            boot: u64::from_le_bytes(boot),
            opened: Instant::now(),
            released: AtomicBool::new(false),
            recovery_window: inventory::iter::<RemoteTask>()
                .map(RemoteTask::heartbeat_timeout)
                .max()
                .unwrap_or_default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one attempt of a remote task: queued, leased, reported (or timed out). A
    /// worker's report comes with the acknowledgement its answer waits for, which the
    /// driver sends once the report is committed.
    pub(crate) async fn run(
        self: &Arc<Self>,
        call: RemoteCall,
        mut cancel: watch::Receiver<bool>,
    ) -> (AttemptEnd, Option<DurableAck>) {
        let (id, mut report, changed) = self.enqueue(call);
        let _dequeue = Dequeue {
            queues: self.clone(),
            id,
        };
        let mut cancel_open = true;
        while let Some(deadline) = self.deadline(id) {
            let moved = changed.notified();
            tokio::select! {
                biased;
                end = &mut report => return end.unwrap_or_else(|_| (dropped(), None)),
                _ = moved => {}
                changed = cancel.changed(), if cancel_open => match changed {
                    Ok(()) if *cancel.borrow() => {
                        if let Some(end) = self.cancel(id) {
                            return (end, None);
                        }
                    }
                    Ok(()) => {}
                    Err(_) => cancel_open = false,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Some(end) = self.expire(id) {
                        return (end, None);
                    }
                }
            }
        }
        // The entry is gone: its report was sent.
        report.await.unwrap_or_else(|_| (dropped(), None))
    }

    #[allow(clippy::type_complexity)] // A receiver of `run`'s own answer.
    fn enqueue(
        &self,
        call: RemoteCall,
    ) -> (
        u64,
        oneshot::Receiver<(AttemptEnd, Option<DurableAck>)>,
        Arc<Notify>,
    ) {
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        let changed = Arc::new(Notify::new());
        let queue = call.remote.queue;
        let hold_until = self.opened + call.remote.heartbeat_timeout();
        let state = if call.recovered && now < hold_until {
            EntryState::Held { until: hold_until }
        } else {
            EntryState::Ready
        };
        let ready = matches!(state, EntryState::Ready);
        let slot = Slot {
            run: call.run,
            step: call.step,
            branch: call.branch,
        };
        let mut st = self.lock();
        let id = st.next_entry;
        st.next_entry += 1;
        st.by_slot.insert(slot.clone(), id);
        st.entries.insert(
            id,
            Entry {
                slot,
                queue,
                remote: call.remote,
                task: call.task,
                attempt: call.attempt,
                key: call.key,
                args: call.args.into(),
                start_to_close: call.start_to_close,
                schedule_deadline: now + call.remote.schedule_to_start_timeout(),
                state,
                cancel_requested: false,
                report: Some(tx),
                changed: changed.clone(),
            },
        );
        if ready {
            push_ready(&mut st, queue, id);
        }
        (id, rx, changed)
    }

    /// The entry's current deadline; `None` once it is gone.
    fn deadline(&self, id: u64) -> Option<Instant> {
        let st = self.lock();
        let entry = st.entries.get(&id)?;
        Some(match &entry.state {
            EntryState::Held { until } => (*until).min(entry.schedule_deadline),
            EntryState::Ready => entry.schedule_deadline,
            EntryState::Leased(lease) => lease.heartbeat_deadline.min(lease.close_deadline),
        })
    }

    /// Acts on a deadline that came: a held entry joins its queue; a queued or leased
    /// one whose time is up ends as failed.
    fn expire(&self, id: u64) -> Option<AttemptEnd> {
        let now = Instant::now();
        let mut st = self.lock();
        let entry = st.entries.get_mut(&id)?;
        let name = entry.task.name.to_string();
        let attempt = entry.attempt;
        let failure = match &entry.state {
            EntryState::Held { until } if now >= *until && now < entry.schedule_deadline => {
                entry.state = EntryState::Ready;
                let queue = entry.queue;
                push_ready(&mut st, queue, id);
                return None;
            }
            EntryState::Held { .. } | EntryState::Ready if now >= entry.schedule_deadline => {
                TaskFailure::NotStarted {
                    task: name,
                    queue: entry.queue.to_string(),
                    attempt,
                    after: entry.remote.schedule_to_start_timeout(),
                }
            }
            EntryState::Leased(lease) if now >= lease.close_deadline => TaskFailure::TimedOut {
                task: name,
                after: entry.start_to_close,
            },
            EntryState::Leased(lease) if now >= lease.heartbeat_deadline => {
                TaskFailure::HeartbeatTimedOut {
                    task: name,
                    attempt,
                    after: entry.remote.heartbeat_timeout(),
                }
            }
            _ => return None,
        };
        remove(&mut st, id);
        Some(AttemptEnd::Failed(failure))
    }

    /// The run no longer needs the attempt: a queued one ends now as cancelled; a
    /// leased one is told at its worker's next heartbeat, and waits for its report.
    fn cancel(&self, id: u64) -> Option<AttemptEnd> {
        let mut st = self.lock();
        let entry = st.entries.get_mut(&id)?;
        if let EntryState::Leased(_) = entry.state {
            entry.cancel_requested = true;
            return None;
        }
        let task = entry.task.name.to_string();
        remove(&mut st, id);
        Some(AttemptEnd::Failed(TaskFailure::Cancelled { task }))
    }

    /// Takes up to `max` tasks from `queue`, waiting up to `wait` for the first.
    async fn poll(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LeasedTask>, FlowError> {
        let max = max.clamp(1, MAX_POLL_TASKS);
        let until = Instant::now() + wait.min(MAX_POLL_WAIT);
        loop {
            let arrived = {
                let mut st = self.lock();
                let taken = self.take(&mut st, queue, worker, max)?;
                if !taken.is_empty() || Instant::now() >= until {
                    return Ok(taken);
                }
                st.queues.get(queue).map(|q| q.arrived.clone())
            };
            let Some(arrived) = arrived else {
                return Ok(Vec::new());
            };
            let arrival = arrived.notified();
            // Checked after `arrival` exists: `release_polls` sets the flag, then wakes
            // every `Notified` created before.
            if self.released.load(Ordering::Acquire) {
                return Ok(Vec::new());
            }
            if tokio::time::timeout_at(until.into(), arrival)
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    /// Answers every waiting poll now, and every later one at once, without tasks.
    pub(crate) fn release_polls(&self) {
        self.released.store(true, Ordering::Release);
        for queue in self.lock().queues.values() {
            queue.arrived.notify_waiters();
        }
    }

    /// Leases up to `max` entries of `queue` to `worker`.
    fn take(
        &self,
        st: &mut State,
        queue: &str,
        worker: &str,
        max: usize,
    ) -> Result<Vec<LeasedTask>, FlowError> {
        let now = Instant::now();
        let wall = now_ms();
        let Some(q) = st.queues.get_mut(queue) else {
            return Err(unknown_queue(queue));
        };
        if let Some(seen) = q.workers.get_mut(worker) {
            *seen = now;
        } else {
            if q.workers.len() >= MAX_WORKER_NAMES {
                // Names of workers long gone (a worker per process ID, say) go first.
                q.workers
                    .retain(|_, seen| now.duration_since(*seen) < WORKER_LIVE_FOR);
            }
            if q.workers.len() < MAX_WORKER_NAMES {
                q.workers.insert(worker.to_string(), now);
            }
        }
        let mut ids = Vec::new();
        while ids.len() < max {
            let Some(id) = q.ready.pop_front() else {
                break;
            };
            ids.push(id);
        }
        let more = !q.ready.is_empty();
        let arrived = q.arrived.clone();
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(entry) = st.entries.get_mut(&id) else {
                continue;
            };
            if !matches!(entry.state, EntryState::Ready) {
                continue;
            }
            let number = st.next_lease;
            st.next_lease += 1;
            let heartbeat = entry.remote.heartbeat_timeout();
            let lease = Lease {
                boot: self.boot,
                number,
                worker: worker.to_string(),
                since: now,
                heartbeat_deadline: now + heartbeat,
                close_deadline: now + entry.start_to_close,
            };
            entry.state = EntryState::Leased(lease);
            entry.changed.notify_one();
            let claims = Claims {
                slot: entry.slot.clone(),
                attempt: entry.attempt,
                boot: self.boot,
                lease: number,
            };
            taken.push(LeasedTask {
                token: self.key.seal(&claims),
                queue: entry.queue.to_string(),
                task: entry.task.name.to_string(),
                run_id: entry.slot.run.clone(),
                idempotency_key: entry.key.clone(),
                attempt: entry.attempt,
                args: entry.args.to_vec(),
                heartbeat_timeout: heartbeat,
                heartbeat_deadline_ms: wall.saturating_add(crate::time::millis(heartbeat)),
                deadline_ms: wall.saturating_add(crate::time::millis(entry.start_to_close)),
            });
        }
        if more {
            // Pass the wake-up on: another poller may take the rest.
            arrived.notify_one();
        }
        Ok(taken)
    }

    /// Finds the entry `token`'s lease is on, adopting a held entry for a token of an
    /// earlier engine (see the module doc).
    fn leased<'s>(
        &self,
        st: &'s mut State,
        queue: &str,
        token: &str,
    ) -> Result<(u64, &'s mut Entry), FlowError> {
        let claims = self.key.open(token, super::MAX_RUN_ID_BYTES)?;
        let Some(&id) = st.by_slot.get(&claims.slot) else {
            // A lease of an earlier engine whose attempt may not be rebuilt yet.
            if claims.boot != self.boot && self.opened.elapsed() < self.recovery_window {
                return Err(FlowError::QueuesRecovering);
            }
            return Err(gone(&claims));
        };
        let entry = st.entries.get_mut(&id).ok_or_else(|| gone(&claims))?;
        if entry.queue != queue {
            return Err(FlowError::WrongQueue {
                queue: queue.to_string(),
                token_queue: entry.queue.to_string(),
            });
        }
        if entry.attempt != claims.attempt {
            return Err(FlowError::StaleTaskToken {
                reason: format!(
                    "the token is for attempt {} of this task; attempt {} is under way",
                    claims.attempt, entry.attempt
                ),
            });
        }
        let now = Instant::now();
        match &mut entry.state {
            EntryState::Leased(lease)
                if lease.boot == claims.boot && lease.number == claims.lease =>
            {
                Ok((id, entry))
            }
            EntryState::Leased(_) => Err(FlowError::StaleTaskToken {
                reason: "the attempt was handed out again, to another lease".to_string(),
            }),
            state if claims.boot != self.boot => {
                // A lease of an earlier engine on an attempt nobody took since: adopted.
                *state = EntryState::Leased(Lease {
                    boot: claims.boot,
                    number: claims.lease,
                    worker: String::new(),
                    since: now,
                    heartbeat_deadline: now + entry.remote.heartbeat_timeout(),
                    close_deadline: now + entry.start_to_close,
                });
                entry.changed.notify_one();
                Ok((id, entry))
            }
            _ => Err(FlowError::StaleTaskToken {
                reason: "the lease ended (its heartbeat or start-to-close timeout passed) \
                         and the attempt waits for another worker"
                    .to_string(),
            }),
        }
    }

    fn heartbeat(&self, queue: &str, token: &str) -> Result<TaskHeartbeat, FlowError> {
        let now = Instant::now();
        let mut st = self.lock();
        let (_, entry) = self.leased(&mut st, queue, token)?;
        let timeout = entry.remote.heartbeat_timeout();
        let cancel_requested = entry.cancel_requested;
        let mut worker = String::new();
        if let EntryState::Leased(lease) = &mut entry.state {
            lease.heartbeat_deadline = now + timeout;
            worker = lease.worker.clone();
        }
        if let Some(q) = st.queues.get_mut(queue) {
            if !worker.is_empty() {
                q.workers.insert(worker, now);
            }
        }
        Ok(TaskHeartbeat {
            cancel_requested,
            heartbeat_deadline_ms: now_ms().saturating_add(crate::time::millis(timeout)),
        })
    }

    /// Reports the attempt `token` leases: `report` builds its end from the entry (or
    /// refuses the report, changing nothing).
    fn report(
        &self,
        queue: &str,
        token: &str,
        how: &'static str,
        digest: u64,
        report: impl FnOnce(&Entry) -> Result<AttemptEnd, FlowError>,
    ) -> Result<(Completed, Option<oneshot::Receiver<()>>), FlowError> {
        let mut st = self.lock();
        if let Some(&(seen, seen_how)) = st.reported.get(token) {
            return if seen == digest && seen_how == how {
                Ok((Completed::Duplicate, None))
            } else {
                Err(FlowError::TaskAlreadyReported { how: seen_how })
            };
        }
        let (id, entry) = self.leased(&mut st, queue, token)?;
        let end = report(entry)?;
        let sender = entry.report.take();
        remove(&mut st, id);
        st.reported.insert(token.to_string(), (digest, how));
        st.reported_order.push_back(token.to_string());
        if st.reported_order.len() > REMEMBERED_REPORTS {
            if let Some(old) = st.reported_order.pop_front() {
                st.reported.remove(&old);
            }
        }
        drop(st);
        let (ack, durable) = oneshot::channel();
        if let Some(sender) = sender {
            let _ = sender.send((end, Some(ack)));
        }
        Ok((Completed::Accepted, Some(durable)))
    }

    fn complete(
        &self,
        queue: &str,
        token: &str,
        output: &[u8],
    ) -> Result<(Completed, Option<oneshot::Receiver<()>>), FlowError> {
        let digest = self.key.digest(&[b"ok", output]);
        self.report(queue, token, "completed", digest, |entry| {
            let judged =
                (entry.remote.judge)(output).map_err(|e| FlowError::TaskOutputMismatch {
                    task: entry.task.name.to_string(),
                    // The decoder's own words: the codec's wording is about stored values.
                    message: match e {
                        codec::CodecError::Decode { message, .. } => message,
                        other => other.to_string(),
                    },
                })?;
            Ok(AttemptEnd::Returned {
                class: judged.class,
                output: judged.output,
                retry_after: judged.retry_after,
            })
        })
    }

    fn fail(
        &self,
        queue: &str,
        token: &str,
        error: &str,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<(Completed, Option<oneshot::Receiver<()>>), FlowError> {
        let flag = [retryable as u8];
        let after = retry_after
            .map_or(u64::MAX, crate::time::millis)
            .to_le_bytes();
        let digest = self.key.digest(&[b"err", error.as_bytes(), &flag, &after]);
        self.report(queue, token, "failed", digest, |entry| {
            let failure = TaskFailure::WorkerFailed {
                task: entry.task.name.to_string(),
                attempt: entry.attempt,
                message: error.to_string(),
            };
            // A task whose output can carry the failure (a `Result` whose error is
            // `From<TaskFailure>`) gets it as its output, judged as the worker said; any
            // other task's failure is retried while its policy allows.
            Ok(match (entry.task.failure_output)(failure.clone()) {
                Some(Ok(output)) => AttemptEnd::Returned {
                    class: if retryable {
                        AttemptClass::Retryable(failure.to_string())
                    } else {
                        AttemptClass::NonRetryable(failure.to_string())
                    },
                    output: Ok(output),
                    retry_after,
                },
                _ => AttemptEnd::Failed(failure),
            })
        })
    }

    fn queues(&self) -> Vec<QueueInfo> {
        let now = Instant::now();
        let st = self.lock();
        let mut infos: Vec<QueueInfo> = st
            .queues
            .iter()
            .map(|(name, q)| {
                let mut workers: Vec<String> = q
                    .workers
                    .iter()
                    .filter(|(_, seen)| now.duration_since(**seen) < WORKER_LIVE_FOR)
                    .map(|(w, _)| w.clone())
                    .collect();
                workers.sort();
                QueueInfo {
                    name: name.to_string(),
                    pending: 0,
                    leased: 0,
                    workers,
                    oldest_lease_age_ms: None,
                }
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in st.entries.values() {
            if let Ok(i) = infos.binary_search_by(|q| q.name.as_str().cmp(entry.queue)) {
                match &entry.state {
                    EntryState::Leased(lease) => {
                        let info = &mut infos[i];
                        info.leased += 1;
                        let age = now.duration_since(lease.since).as_millis();
                        let age = u64::try_from(age).unwrap_or(u64::MAX);
                        info.oldest_lease_age_ms = info.oldest_lease_age_ms.max(Some(age));
                    }
                    _ => infos[i].pending += 1,
                }
            }
        }
        infos
    }
}

fn push_ready(st: &mut State, queue: &str, id: u64) {
    if let Some(q) = st.queues.get_mut(queue) {
        q.ready.push_back(id);
        q.arrived.notify_one();
    }
}

fn remove(st: &mut State, id: u64) {
    if let Some(entry) = st.entries.remove(&id) {
        if st.by_slot.get(&entry.slot) == Some(&id) {
            st.by_slot.remove(&entry.slot);
        }
    }
}

fn dropped() -> AttemptEnd {
    AttemptEnd::Failed(TaskFailure::WorkerFailed {
        task: String::new(),
        attempt: 0,
        message: "the attempt's queue entry was dropped without a report".to_string(),
    })
}

fn gone(claims: &Claims) -> FlowError {
    FlowError::TaskTokenGone {
        reason: format!(
            "no attempt of step {} (branch {}) of run `{}` is waiting for a worker's report: \
             it was reported, timed out, or the run moved on",
            claims.slot.step, claims.slot.branch, claims.slot.run
        ),
    }
}

fn unknown_queue(queue: &str) -> FlowError {
    let known = declared_queues();
    FlowError::UnknownQueue {
        queue: queue.to_string(),
        known: if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        },
    }
}

/// Takes the entry off its queue when the attempt's future ends or is dropped.
struct Dequeue {
    queues: Arc<TaskQueues>,
    id: u64,
}

impl Drop for Dequeue {
    fn drop(&mut self) {
        let mut st = self.queues.lock();
        remove(&mut st, self.id);
    }
}

/// The remote declaration of `task`, if it is a remote task.
pub(crate) fn remote_of(task: &TaskRegistration) -> Option<&'static RemoteTask> {
    find_remote(task.name)
}

/// The worker side of remote tasks (`#[task(queue = "...")]`): polling a queue,
/// heartbeats and reports. flow-server serves these over HTTP; a worker in the same
/// process may call them directly.
impl Engine {
    /// Takes up to `max` tasks (at most [`MAX_POLL_TASKS`]) from `queue` for `worker` (a
    /// name shown by [`queues`](Self::queues)), waiting up to `wait` (at most
    /// [`MAX_POLL_WAIT`]) for the first: it answers the moment a task arrives. Each task
    /// is leased: heartbeat it ([`heartbeat_task`](Self::heartbeat_task)) within its
    /// heartbeat timeout and report it ([`complete_task`](Self::complete_task) or
    /// [`fail_task`](Self::fail_task)) before its deadline, or it is retried elsewhere.
    ///
    /// Fails with [`FlowError::UnknownQueue`] for a queue no linked remote task
    /// declares, and with [`FlowError::EngineStopped`] once the engine stopped.
    pub async fn poll_tasks(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<LeasedTask>, FlowError> {
        let core = self.core();
        if core.inspect_only || core.is_stopped() {
            return Err(FlowError::stopped("the engine does not hand out tasks now"));
        }
        core.queues.poll(queue, worker, max, wait).await
    }

    /// Records a sign of life for the lease `token` names on a task of `queue`: its
    /// heartbeat deadline moves one heartbeat timeout on. The answer says whether the
    /// run was cancelled (the worker should stop).
    ///
    /// Refused, changing nothing, with [`FlowError::InvalidTaskToken`] (not a token of
    /// this journal), [`FlowError::WrongQueue`], [`FlowError::StaleTaskToken`] (the task
    /// was handed out again) or [`FlowError::TaskTokenGone`] (the attempt ended).
    pub fn heartbeat_task(&self, queue: &str, token: &str) -> Result<TaskHeartbeat, FlowError> {
        self.core().queues.heartbeat(queue, token)
    }

    /// Reports the task `token` leases as finished with `output`, a value of the task's
    /// output type (encoded without the Rust type: a `serde_json::Value` will do; a
    /// `Result` as `{"Ok": value}` or `{"Err": error}`). The output is judged as a local
    /// attempt's is (an `Err` may be retried by the task's policy); the run's next
    /// step follows.
    ///
    /// Repeating an accepted report through the same token answers
    /// [`Completed::Duplicate`] and changes nothing. Refused, changing nothing, like
    /// [`heartbeat_task`](Self::heartbeat_task), and with
    /// [`FlowError::TaskOutputMismatch`] for an output that does not fit the task's type
    /// or [`FlowError::TaskAlreadyReported`] for a different second report.
    ///
    /// An accepted report is answered once the transition that took it in is durable,
    /// so an answer of [`Completed::Accepted`] is never lost; if the engine stops first
    /// the answer is [`FlowError::TaskReportNotDurable`], and the worker reports again.
    pub async fn complete_task<T: Serialize + ?Sized>(
        &self,
        queue: &str,
        token: &str,
        output: &T,
    ) -> Result<Completed, FlowError> {
        let bytes = codec::encode(output, || "a remote task's output".to_string())?;
        self.complete_task_encoded(queue, token, &bytes).await
    }

    /// [`complete_task`](Self::complete_task) with the output already encoded (with
    /// [`codec::encode`]): for a store that forwards a report to the process whose
    /// engine leased the task.
    pub async fn complete_task_encoded(
        &self,
        queue: &str,
        token: &str,
        output: &[u8],
    ) -> Result<Completed, FlowError> {
        let taken = self.core().queues.complete(queue, token, output)?;
        durable(taken, "completed").await
    }

    /// Reports the task `token` leases as failed with `error`. A `retryable` failure is
    /// retried as the task's policy allows, no sooner than `retry_after`; one that is
    /// not reaches the workflow at once as `Err(TaskFailure::WorkerFailed)` (a task
    /// whose output cannot carry that error is retried either way). Refused like
    /// [`complete_task`](Self::complete_task), and answered, like it, once durable.
    pub async fn fail_task(
        &self,
        queue: &str,
        token: &str,
        error: &str,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Result<Completed, FlowError> {
        let taken = self
            .core()
            .queues
            .fail(queue, token, error, retryable, retry_after)?;
        durable(taken, "failed").await
    }

    /// Answers every long poll waiting in [`poll_tasks`](Self::poll_tasks) now, and every
    /// later one at once, without tasks: for a server's graceful shutdown, which waits
    /// for the requests in flight. Tasks already leased stay leased (their workers may
    /// still heartbeat and report them); the engine's shutdown does the same.
    pub fn release_task_polls(&self) {
        self.core().queues.release_polls();
    }

    /// The queues the linked remote tasks declare: their waiting and leased attempts
    /// and the workers seen lately.
    pub fn queues(&self) -> Vec<QueueInfo> {
        self.core().queues.queues()
    }
}

/// A report's answer, once the transition holding it is durable (an accepted report's
/// acknowledgement is sent by the run's driver after its commit; see `driver/mod.rs`).
async fn durable(
    (completed, ack): (Completed, Option<oneshot::Receiver<()>>),
    how: &'static str,
) -> Result<Completed, FlowError> {
    match ack {
        Some(ack) => ack
            .await
            .map(|()| completed)
            .map_err(|_| FlowError::TaskReportNotDurable { how }),
        None => Ok(completed),
    }
}
