//! Many engine processes on one database: the shards, who drives which, and requests
//! for a run driven by another process.
//!
//! A database of a cluster is split into a fixed number of shards (`flow_meta.shards`,
//! set when it is created); a run belongs to shard `route_key(run_id) % shards`
//! (`flow::route_key`: children go with their root run, and callback and task tokens
//! carry their run's route). Each shard is a journal of its own, driven by one process
//! at a time under the shard's lease with its fence (`lease.rs`): the cluster's
//! processes share the shards evenly (`balance.rs`), and take over those of a process
//! that stops or dies.
//!
//! A request for a run of a shard this process drives goes to its engine. Any other is
//! left in `flow_requests` for the shard's owner, which applies it (a signal,
//! cancellation or callback completion exactly once by its request ID, inside the
//! journal commit itself: `Engine::deliver`) and writes the answer back, fenced by its
//! lease (`serve.rs`); the caller waits for the answer. `LISTEN`/`NOTIFY` only hints at
//! new rows; every loop polls behind it.

mod balance;
mod listen;
mod queues;
mod renew;
mod serve;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use flow_runtime::{
    codec, route_key, task_token_route, token_route, Delivery, Engine, EngineBuilder, FlowError,
    HistoryEvent, RunDescription, RunStatus, Workflow,
};
use postgres::Config;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::backend::Shared;
use crate::conn::Conn;
use crate::error::{bad_url, describe, query_error, storage};
use crate::lease::Lease;
use crate::{schema, session_config, shard, Postgres, DEFAULT_SHARDS};
use wire::{Answer, Request};

/// One process of a cluster of engine processes on one PostgreSQL database; see
/// [`Postgres::cluster`].
///
/// Every call may be made on any process, for any run: a run driven here is served by
/// this process's engine, any other through the database by the process that drives
/// it. A call for a shard no live process drives waits until one takes it over.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// The engines of the shards this process drives, and everything its loops share.
pub(crate) struct Inner {
    pub target: String,
    pub config: Config,
    pub owner: String,
    pub ttl: Duration,
    pub shards: u32,
    pub builder: Box<dyn Fn() -> EngineBuilder + Send + Sync>,
    pub held: RwLock<BTreeMap<u32, Held>>,
    /// The leases this process holds (of shards open or opening), for the renewer.
    pub leases: Mutex<BTreeMap<u32, Arc<Lease>>>,
    pub control: Conn,
    pub wakes: Arc<listen::Wakes>,
    /// Requests this process made, waiting for their answers.
    pub pending: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    /// Requests this process is applying as an owner.
    pub serving: Mutex<HashSet<String>>,
    pub stop: Arc<AtomicBool>,
    pub stopped: tokio::sync::Notify,
    /// Shards dropped because their lease was lost.
    pub lost: AtomicU64,
    next_request: AtomicU64,
}

/// A shard this process drives.
pub(crate) struct Held {
    pub engine: Engine,
    pub shared: Arc<Shared>,
    /// Request IDs answered in `flow_requests`, whose records the journal may forget.
    pub answered: Arc<Mutex<Vec<String>>>,
}

impl Cluster {
    pub(crate) async fn open(
        options: Postgres,
        builder: Box<dyn Fn() -> EngineBuilder + Send + Sync>,
    ) -> Result<Cluster, FlowError> {
        let config: Config = options.url.parse().map_err(bad_url)?;
        let target = describe(&config);
        let config = session_config(&config, options.lease);
        let wanted = options.shards.unwrap_or(DEFAULT_SHARDS);
        let (control, shards) = {
            let (config, target) = (config.clone(), target.clone());
            tokio::task::spawn_blocking(move || {
                let control = Conn::connect(&config, "control")?;
                let shards =
                    control.call(move |client| schema::migrate(client, &target, wanted))??;
                Ok::<_, FlowError>((control, shards))
            })
            .await
            .map_err(|e| storage(format!("opening the PostgreSQL cluster failed: {e}")))??
        };
        let inner = Arc::new(Inner {
            target,
            config: config.clone(),
            owner: shard::process_name(),
            ttl: options.lease,
            shards,
            builder,
            held: RwLock::new(BTreeMap::new()),
            leases: Mutex::new(BTreeMap::new()),
            control,
            wakes: Arc::new(listen::Wakes::default()),
            pending: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashSet::new()),
            stop: Arc::new(AtomicBool::new(false)),
            stopped: tokio::sync::Notify::new(),
            lost: AtomicU64::new(0),
            next_request: AtomicU64::new(0),
        });
        listen::spawn(config.clone(), inner.wakes.clone(), inner.stop.clone());
        renew::spawn(&inner, config)?;
        // The first share is taken before `open` returns, so that a lone process
        // serves its runs at once.
        balance::round(&inner).await?;
        tokio::spawn(balance::run(inner.clone()));
        tokio::spawn(serve::run(inner.clone()));
        tokio::spawn(serve::answers(inner.clone()));
        Ok(Cluster { inner })
    }

    /// The database's number of shards.
    pub fn shards(&self) -> u32 {
        self.inner.shards
    }

    /// The shard run `run_id` belongs to.
    pub fn shard_of(&self, run_id: &str) -> u32 {
        (route_key(run_id) % u64::from(self.inner.shards)) as u32
    }

    /// The shards this process drives now.
    pub fn held_shards(&self) -> Vec<u32> {
        self.inner.read_held().keys().copied().collect()
    }

    /// How many shards this process dropped because it lost their lease (it was paused,
    /// or cut off from the database, past the lease's length): their runs went on in
    /// other processes, and this one's late commits to them were refused.
    pub fn lost_leases(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// The engines of the shards this process drives now (for metrics and listings of
    /// this process's runs).
    pub fn engines(&self) -> Vec<Engine> {
        self.inner
            .read_held()
            .values()
            .map(|h| h.engine.clone())
            .collect()
    }

    /// A new run ID `{prefix}-{n}` of a shard this process drives, so that a run started
    /// with it is driven here without a request through the database; `None` while
    /// this process drives no shard.
    pub fn local_run_id(&self, prefix: &str) -> Option<String> {
        let held = self.held_shards();
        if held.is_empty() {
            return None;
        }
        loop {
            let n = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
            let id = format!("{prefix}-{n}");
            if held.contains(&self.shard_of(&id)) {
                return Some(id);
            }
        }
    }

    /// Starts run `run_id` of workflow `W` (its newest version), as
    /// [`Engine::start`] does: idempotent by run ID, and returns once the start is
    /// durable.
    pub async fn start<W: Workflow>(&self, run_id: &str, workflow: W) -> Result<(), FlowError> {
        let input = codec::encode(&workflow.into_input(), || {
            format!("input of workflow `{}`", W::NAME)
        })?;
        let request = Request::Start {
            run_id: run_id.to_string(),
            workflow: W::NAME.to_string(),
            input: input.clone(),
        };
        let shard = self.shard_of(run_id);
        self.route(shard, request, |engine| {
            let (run_id, input) = (run_id.to_string(), input.clone());
            async move { engine.start_encoded(&run_id, W::NAME, &input).await }
        })
        .await
        .and_then(Answer::done)
    }

    /// Waits until run `run_id` ends and returns its output, as
    /// [`RunHandle::result`](flow_runtime::RunHandle::result) does.
    pub async fn result<W: Workflow>(&self, run_id: &str) -> Result<W::Output, FlowError> {
        let description = self.wait(run_id).await?;
        let status = description.summary.status.clone();
        match description.into_result::<W>()? {
            Some(output) => Ok(output),
            None => Err(match status {
                RunStatus::Blocked { reason } => FlowError::RunBlocked {
                    run_id: run_id.to_string(),
                    reason,
                },
                other => storage(format!(
                    "run `{run_id}` is {other:?} after waiting for its end: report this"
                )),
            }),
        }
    }

    /// Waits until run `run_id` ends (or is blocked) and describes it.
    pub async fn wait(&self, run_id: &str) -> Result<RunDescription, FlowError> {
        let request = Request::Wait {
            run_id: run_id.to_string(),
        };
        self.about(run_id, request, |engine, id| async move {
            engine.wait(&id).await
        })
        .await?
        .described()
    }

    /// Run `run_id` as it stands now; see [`Engine::describe`].
    pub async fn describe(&self, run_id: &str) -> Result<RunDescription, FlowError> {
        let request = Request::Describe {
            run_id: run_id.to_string(),
        };
        self.about(run_id, request, |engine, id| async move {
            engine.describe(&id).await
        })
        .await?
        .described()
    }

    /// Run `run_id`'s history, oldest first; see [`Engine::history`].
    pub async fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, FlowError> {
        let request = Request::History {
            run_id: run_id.to_string(),
        };
        let answer = self
            .about(run_id, request, |engine, id| async move {
                engine.history(&id).await
            })
            .await?;
        match answer {
            Answer::History(events) => Ok(events),
            Answer::Refused(e) => Err(e.into()),
            _ => Err(storage("a request for a history was answered without one")),
        }
    }

    /// A read of run `run_id`: by its engine here (`local`, given the run ID), or by its
    /// shard's owner.
    async fn about<T, F, Fut>(
        &self,
        run_id: &str,
        request: Request,
        local: F,
    ) -> Result<Answer, FlowError>
    where
        F: Fn(Engine, String) -> Fut,
        Fut: Future<Output = Result<T, FlowError>>,
        T: Into<Answer>,
    {
        let shard = self.shard_of(run_id);
        self.route(shard, request, |engine| local(engine, run_id.to_string()))
            .await
    }

    /// Sends signal `name` to run `run_id`, as [`Engine::signal`] does; a signal sent
    /// through another process than the run's is delivered exactly once.
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        run_id: &str,
        name: &str,
        value: &T,
    ) -> Result<(), FlowError> {
        let delivery = Delivery::signal(run_id, name, value)?;
        self.deliver(self.shard_of(run_id), delivery).await
    }

    /// Cancels run `run_id`, as [`Engine::cancel`] does.
    pub async fn cancel(&self, run_id: &str) -> Result<(), FlowError> {
        let delivery = Delivery::Cancel {
            run_id: run_id.to_string(),
        };
        self.deliver(self.shard_of(run_id), delivery).await
    }

    /// Completes the callback that issued `token`, as [`Engine::complete`] does.
    pub async fn complete<T: Serialize>(
        &self,
        token: &str,
        result: Result<T, String>,
    ) -> Result<(), FlowError> {
        let delivery = Delivery::complete(token, result)?;
        self.deliver(self.token_shard(token)?, delivery).await
    }

    /// The shard of the run that issued callback or task token `token`.
    pub(crate) fn token_shard(&self, token: &str) -> Result<u32, FlowError> {
        let shards = u64::from(self.inner.shards);
        match token_route(token).or_else(|| task_token_route(token)) {
            Some(route) => Ok((route % shards) as u32),
            None if shards == 1 => Ok(0),
            None => Err(FlowError::InvalidCallbackToken {
                reason: "the token names no run this cluster can route it to (a token issued \
                         by a flow older than clusters, or not a flow token)"
                    .into(),
            }),
        }
    }

    /// Delivers through this process's engine of `shard`, or through the database. A
    /// local delivery's record is forgotten at the next balancing round, as an answered
    /// remote one's is.
    async fn deliver(&self, shard: u32, delivery: Delivery) -> Result<(), FlowError> {
        let request = Request::Deliver(delivery.clone());
        let id = self.inner.request_id();
        self.route_with_id(&id, shard, request, |engine| {
            let (id, delivery, inner) = (id.clone(), delivery.clone(), self.inner.clone());
            async move {
                engine.deliver(&id, delivery).await?;
                if let Some(held) = inner.read_held().get(&shard) {
                    held.answered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id);
                }
                Ok(())
            }
        })
        .await
        .and_then(Answer::done)
    }

    /// Stops this process's engines and gives their shards up to the other processes;
    /// requests of this process still waiting for an answer fail.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }

    pub(crate) async fn route<T, F, Fut>(
        &self,
        shard: u32,
        request: Request,
        local: F,
    ) -> Result<Answer, FlowError>
    where
        F: Fn(Engine) -> Fut,
        Fut: Future<Output = Result<T, FlowError>>,
        T: Into<Answer>,
    {
        let id = self.inner.request_id();
        self.route_with_id(&id, shard, request, local).await
    }

    /// Serves the request here if this process drives `shard`, else through the
    /// database. A local engine stopped under the call (its shard was handed over) is
    /// not an answer: the request is routed again.
    async fn route_with_id<T, F, Fut>(
        &self,
        id: &str,
        shard: u32,
        request: Request,
        local: F,
    ) -> Result<Answer, FlowError>
    where
        F: Fn(Engine) -> Fut,
        Fut: Future<Output = Result<T, FlowError>>,
        T: Into<Answer>,
    {
        loop {
            if self.inner.stop.load(Ordering::Acquire) {
                return Err(FlowError::EngineStopped {
                    reason: "the cluster process was shut down".into(),
                });
            }
            let Some((engine, shared)) = self.inner.engine(shard) else {
                return serve::ask(&self.inner, id, shard, &request).await;
            };
            match local(engine).await {
                Ok(value) => return Ok(value.into()),
                // Its engine stopped, or its lease was lost, under the call: the shard is
                // being handed over. Every request is safe to make again (starts are
                // idempotent by run ID, deliveries by request ID, the rest read).
                Err(e)
                    if matches!(e, FlowError::EngineStopped { .. })
                        || self.inner.moved(shard, &shared) =>
                {
                    tracing::debug!(shard, error = %e, "the shard moved under a request; routing it again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl From<()> for Answer {
    fn from(_: ()) -> Self {
        Answer::Done
    }
}

impl From<Vec<HistoryEvent>> for Answer {
    fn from(events: Vec<HistoryEvent>) -> Self {
        Answer::History(events)
    }
}

impl From<RunDescription> for Answer {
    fn from(d: RunDescription) -> Self {
        Answer::Described(d.into())
    }
}

impl Answer {
    fn done(self) -> Result<(), FlowError> {
        match self {
            Answer::Done => Ok(()),
            Answer::Refused(e) => Err(e.into()),
            _ => Err(storage(
                "a request was answered with a value it does not return",
            )),
        }
    }

    fn described(self) -> Result<RunDescription, FlowError> {
        match self {
            Answer::Described(d) => Ok(d.into()),
            Answer::Refused(e) => Err(e.into()),
            _ => Err(storage(
                "a request for a description was answered without one",
            )),
        }
    }
}

impl Inner {
    pub(crate) fn leases(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Arc<Lease>>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read_held(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Held>> {
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_held(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, Held>> {
        self.held.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine of `shard` and its files' lease, if this process drives it.
    pub(crate) fn engine(&self, shard: u32) -> Option<(Engine, Arc<Shared>)> {
        self.read_held()
            .get(&shard)
            .map(|h| (h.engine.clone(), h.shared.clone()))
    }

    /// Whether `shard` is no longer driven here under the holding of `shared`.
    fn moved(&self, shard: u32, shared: &Arc<Shared>) -> bool {
        shared.lease.lost.load(Ordering::Acquire)
            || self
                .read_held()
                .get(&shard)
                .is_none_or(|h| !Arc::ptr_eq(&h.shared, shared))
    }

    /// A request ID no other request of any process has: the time, this process's
    /// name's hash and a counter.
    pub(crate) fn request_id(&self) -> String {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let me = BuildHasherDefault::<DefaultHasher>::default().hash_one(&self.owner);
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("{now:013}-{me:016x}-{n}")
    }

    /// Stops waiting for the answer to request `id` (its row stays; it is deleted with
    /// the old answered requests).
    pub(crate) fn forget_request(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    async fn shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stopped.notify_waiters();
        let held: Vec<Held> = std::mem::take(&mut *self.write_held())
            .into_values()
            .collect();
        for shard in held {
            shard.engine.shutdown().await;
            self.leases().remove(&(shard.shared.lease.shard as u32));
            let shared = shard.shared.clone();
            let _ = tokio::task::spawn_blocking(move || shared.release()).await;
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let owner = self.owner.clone();
        let left = self
            .control
            .call_async(move |client| {
                // Gone from the members first: a process woken by the NOTIFY counts the
                // members again, and takes a bigger share.
                client
                    .execute("DELETE FROM flow_members WHERE owner = $1", &[&owner])
                    .and_then(|_| client.batch_execute("NOTIFY flow_shards"))
                    .map_err(|e| query_error("leaving the cluster", &e))
            })
            .await;
        if let Ok(Err(e)) | Err(e) = left {
            tracing::warn!(error = %e, "could not leave the cluster; its row expires by itself");
        }
    }
}
