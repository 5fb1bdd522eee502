//! Configuring and opening an engine.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::StorageBackend;

use crate::engine::registry::{Registry, WorkflowEntry};
use crate::engine::retention::Retention;
use crate::engine::Engine;
use crate::error::FlowError;
use crate::store;
use crate::workflow::Workflow;

/// redb's page cache default here: small, so memory stays flat however many runs the
/// journal holds.
const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default log size that triggers a checkpoint (see `store::recovery`).
const DEFAULT_CHECKPOINT_BYTES: u64 = 8 << 20;
/// How long without a write before a journal file with mostly free pages is compacted.
const DEFAULT_COMPACT_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Configures an [`Engine`]: the workflows it drives and where its journal lives.
///
/// ```no_run
/// # async fn demo() -> Result<(), flow_runtime::FlowError> {
/// # use flow_runtime::Engine;
/// let engine = Engine::builder()
///     // .register::<place_order>()
///     .open("orders.redb")
///     .await?;
/// # Ok(()) }
/// ```
pub struct EngineBuilder {
    pub(crate) registry: Registry,
    pub(crate) halt_after: Option<u64>,
    pub(crate) on_commit: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    pub(crate) backend: Option<Box<dyn StorageBackend>>,
    pub(crate) log_backend: Option<Box<dyn StorageBackend>>,
    pub(crate) cache_bytes: usize,
    pub(crate) check_integrity: bool,
    pub(crate) accept_log_loss: bool,
    pub(crate) checkpoint_bytes: u64,
    pub(crate) retention: Retention,
    pub(crate) inspect_only: bool,
    pub(crate) compact_when_idle: Option<Duration>,
    pub(crate) commit_on_drivers: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            registry: Registry::default(),
            halt_after: None,
            on_commit: None,
            backend: None,
            log_backend: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
            check_integrity: true,
            accept_log_loss: false,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            retention: Retention::default(),
            inspect_only: false,
            compact_when_idle: Some(DEFAULT_COMPACT_WHEN_IDLE),
            commit_on_drivers: true,
        }
    }
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("halt_after", &self.halt_after)
            .field("custom_backend", &self.backend.is_some())
            .field("custom_log_backend", &self.log_backend.is_some())
            .field("cache_bytes", &self.cache_bytes)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Lets the engine start and resume runs of workflow `W` (a `#[workflow]` function).
    ///
    /// Runs of workflows that are not registered stay in the journal untouched and resume
    /// when an engine that registers them opens it.
    ///
    /// A workflow is registered under its function's name (or the `name = "..."` of its
    /// attribute) and its version (`version = N`, 1 without it). Several versions of one
    /// name can be registered side by side: each run is driven by the version it started
    /// on, new runs start on the newest. Registering a second workflow under a taken name
    /// and version makes [`open`](Self::open) fail with [`FlowError::DuplicateName`]
    /// naming both; so does a program that links two `#[task]`s under one name.
    pub fn register<W: Workflow>(mut self) -> Self {
        self.registry.insert(WorkflowEntry::of::<W>());
        self
    }

    /// Test hook: this engine acts as if no `#[task]` called `name` were linked into the
    /// program, as a build without it would (runs that call it wait, blocked).
    #[doc(hidden)]
    pub fn hide_task_for_test(mut self, name: &str) -> Self {
        self.registry.hide_task(name);
        self
    }

    /// Test hook: after the `n`-th transition is durable, the engine freezes as if the
    /// process had died: no further commits (later requests are dropped unwritten), no
    /// task starts. Shut it down (or drop it) and reopen the journal to recover.
    ///
    /// Only with the `test-hooks` cargo feature.
    #[cfg(feature = "test-hooks")]
    pub fn halt_after_commits(mut self, n: u64) -> Self {
        self.halt_after = Some(n.max(1));
        self
    }

    /// Test and demo hook: `hook(total)` runs after each durable transition, on the
    /// thread that committed it (the commit thread, or the driver of a run that was
    /// alone), with the number of transitions committed so far (e.g. to
    /// `std::process::abort()` at a chosen point). Calls never overlap.
    ///
    /// Only with the `test-hooks` cargo feature.
    #[cfg(feature = "test-hooks")]
    pub fn on_commit(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_commit = Some(Arc::new(hook));
        self
    }

    /// Stores the journal on a custom redb storage backend (e.g. one that simulates power
    /// loss) instead of a file. [`open`](Self::open) then uses the path only to name the
    /// journal in messages, and [`open_in_memory`](Self::open_in_memory) uses this backend.
    ///
    /// Without a [`log_backend`](Self::log_backend) every commit on a custom backend is
    /// a durable redb commit.
    pub fn backend(mut self, backend: impl StorageBackend) -> Self {
        self.backend = Some(Box::new(backend));
        self
    }

    /// Puts the journal's write-ahead log on a custom storage backend, for a journal on
    /// a custom [`backend`](Self::backend). A journal file opened with
    /// [`open`](Self::open) always has its log in the file beside it (its name with
    /// `-wal` appended): a commit appends its changes to the log and syncs the log alone,
    /// and redb's file is made durable every few megabytes of log.
    ///
    /// ```
    /// use redb::backends::InMemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flow_runtime::FlowError> {
    /// let engine = flow_runtime::Engine::builder()
    ///     .backend(InMemoryBackend::new())
    ///     .log_backend(InMemoryBackend::new())
    ///     .open_in_memory()
    ///     .await?;
    /// engine.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn log_backend(mut self, log: impl StorageBackend) -> Self {
        self.log_backend = Some(Box::new(log));
        self
    }

    /// Size of redb's page cache, in bytes (default 64 MiB).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Whether to verify the checksum of every page of a cleanly shut-down journal when it
    /// opens (default: yes). The check reads the whole file (about 1.2 ms per MiB with the
    /// file in the page cache) and refuses a file damaged at rest with
    /// [`FlowError::Corrupt`], where a flipped bit in a key would otherwise rename a run
    /// or renumber a history event without a word. `false` skips it for a journal shut
    /// down cleanly, trusting the file; after an unclean shutdown it always runs.
    pub fn check_integrity_on_open(mut self, enabled: bool) -> Self {
        self.check_integrity = enabled;
        self
    }

    /// Opens a journal whose write-ahead log is refused (missing, emptied, damaged, or
    /// another journal's: [`FlowError::LogDamaged`], [`FlowError::LogMismatch`]) by
    /// accepting the loss: the refused log is copied aside as `<log>.lost-<ms>`, its whole
    /// records that belong to this journal are replayed, and a new log starts. Runs
    /// continue from that earlier, consistent state: transitions acknowledged only in
    /// the lost part of the log are gone (their tasks run again). A last resort after
    /// the log is lost for good, never a default; file journals only (a journal on a
    /// custom backend refuses as before).
    pub fn accept_log_loss(mut self, accept: bool) -> Self {
        self.accept_log_loss = accept;
        self
    }

    /// How much the write-ahead log may hold before redb's file is made durable and the
    /// log starts over (default 8 MiB). A larger log means fewer of those checkpoints
    /// (each a durable redb commit of everything changed since the last) but a longer
    /// replay after a crash and more changed pages held in memory meanwhile.
    pub fn checkpoint_every(mut self, log_bytes: u64) -> Self {
        self.checkpoint_bytes = log_bytes.max(1);
        self
    }

    /// Whether a run's driver may commit its own transition when no other commit is in
    /// flight, on its own thread, instead of handing it to the commit thread (default:
    /// yes; it saves two thread wake-ups per lone step on a file). Turn it off for
    /// storage whose commit is a round trip over the network, as flow-postgres does: a
    /// driver blocked in one holds a runtime worker, and its commit is not batched with
    /// others that arrive meanwhile.
    pub fn commit_on_drivers(mut self, allowed: bool) -> Self {
        self.commit_on_drivers = allowed;
        self
    }

    /// How long the journal must go without a write before its file is compacted, if
    /// free pages are most of it (default one second; `None`: never). Deleted runs
    /// (retention, [`Engine::purge`](crate::Engine::purge)) free their pages and redb
    /// reuses them, but the file keeps the length of the most pages ever in use at once,
    /// and bursts raise that; compacting moves the pages in use to the front of the file
    /// and cuts it. Readers and writers wait while it runs (milliseconds for a file of a
    /// few MiB, longer the more pages it moves). File journals only.
    pub fn compact_when_idle(mut self, after: Option<Duration>) -> Self {
        self.compact_when_idle = after;
        self
    }

    /// How long finished runs (completed, failed or cancelled) are kept before they are
    /// deleted with everything stored for them (history, locals, inbox, callback tokens,
    /// map items): `None` keeps them for ever (the default), `Some(Duration::ZERO)`
    /// deletes them as soon as they finish. A workflow's own setting
    /// ([`retention_of`](Self::retention_of)) comes first.
    ///
    /// A run's expiry is set when it finishes, from the settings of the engine that
    /// drives it then: changing them later does not move the expiry of runs that
    /// finished already. Deleted runs are unknown to `status`, `history` and `list`; a
    /// [`RunHandle::result`](crate::RunHandle::result) that was waiting when the run
    /// finished still gets its result. Faulted runs are kept (they can be retried);
    /// delete one with [`Engine::purge`](crate::Engine::purge).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), flow_runtime::FlowError> {
    /// use std::time::Duration;
    /// let engine = flow_runtime::Engine::builder()
    ///     .retention(Some(Duration::from_secs(7 * 24 * 3600)))
    ///     .open("orders.redb")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.retention.default = keep;
        self
    }

    /// How long finished runs of workflow `W` are kept, over the engine's
    /// [`retention`](Self::retention): `None` keeps them for ever.
    pub fn retention_of<W: Workflow>(mut self, keep: Option<Duration>) -> Self {
        self.retention.workflows.insert(W::NAME.to_string(), keep);
        self
    }

    /// Opens the journal to look at it, not to drive it: for tools (the `flow` command
    /// line) that show runs, histories and recordings of a journal no engine has open,
    /// without the workflows' code.
    ///
    /// Such an engine drives no run, fires no timer, deletes no expired run and leaves
    /// the journal's retention settings as they are; its `status`, `describe` and `list`
    /// show each run's stored status (a run of a workflow it does not register is not
    /// shown as blocked, and a completed run whose workflow returned `Err` shows as
    /// completed, since telling the two apart needs the output type). Every call that
    /// would write (`start`, `signal`, `cancel`, `complete`, `redrive`, ...) is refused
    /// with [`FlowError::EngineStopped`] and writes nothing.
    ///
    /// Opening still takes a lock on the journal (another engine cannot open it
    /// meanwhile, and one that has it open makes this open fail with
    /// [`FlowError::DatabaseAlreadyOpen`]); [`shutdown`](Engine::shutdown) releases it.
    /// No byte of the journal file or of its log changes: a file journal is read through
    /// an in-memory overlay that takes every write the open makes (redb's repair after a
    /// crash, the replay of the write-ahead log, the checkpoint at shutdown), so a
    /// journal a crash left behind is shown with what its log holds and stays as it was
    /// for the engine that recovers it. A missing journal is refused, not created.
    pub fn inspect_only(mut self) -> Self {
        self.inspect_only = true;
        self
    }

    /// Opens the journal at `path`, creating it if missing, and resumes every run in it
    /// that this engine can drive.
    ///
    /// The journal's write-ahead log is the file beside it with `-wal` appended to the
    /// name; what it holds beyond the journal file (after a crash) is replayed first. A
    /// clean [`Engine::shutdown`] leaves the log empty and the journal file whole.
    ///
    /// Fails with a clear [`FlowError`] if two definitions claim one name
    /// ([`FlowError::DuplicateName`], before the file is touched), if the file is not a flow journal, is damaged, is
    /// open in another engine, or has a log that does not go with it; the file is left
    /// as it was.
    pub async fn open(mut self, path: impl AsRef<Path>) -> Result<Engine, FlowError> {
        self.registry.check()?;
        let path = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        let options = self.store_options();
        let backend = self.backend.take();
        let log = self.log_backend.take();
        let journal = name.clone();
        let store = tokio::task::spawn_blocking(move || match backend {
            Some(backend) => store::open_backend(backend, log, &name, options),
            None => store::open_file(&path, options),
        })
        .await
        .map_err(|e| open_failed(&journal, e))??;
        Engine::launch(store, self).await
    }

    /// Opens a journal held in memory (or on the custom [`backend`](Self::backend)): for
    /// tests and examples; nothing survives the process.
    pub async fn open_in_memory(self) -> Result<Engine, FlowError> {
        self.open_backend("in-memory journal").await
    }

    /// Opens the journal on the custom [`backend`](Self::backend) (with its log on the
    /// [`log_backend`](Self::log_backend), if set), naming it `name` in errors and
    /// metrics: for stores that keep the journal's bytes somewhere other than a file
    /// (`flow-postgres` keeps them in a PostgreSQL database). Without a backend the
    /// journal is held in memory, as by [`open_in_memory`](Self::open_in_memory).
    pub async fn open_backend(mut self, name: &str) -> Result<Engine, FlowError> {
        self.registry.check()?;
        let backend = self
            .backend
            .take()
            .unwrap_or_else(|| Box::new(redb::backends::InMemoryBackend::new()));
        let log = self.log_backend.take();
        let options = self.store_options();
        let journal = name.to_string();
        let store = tokio::task::spawn_blocking(move || {
            store::open_backend(backend, log, &journal, options)
        })
        .await
        .map_err(|e| open_failed(name, e))??;
        Engine::launch(store, self).await
    }

    fn store_options(&self) -> store::OpenOptions {
        store::OpenOptions {
            cache_bytes: self.cache_bytes,
            check_integrity: self.check_integrity,
            checkpoint_bytes: self.checkpoint_bytes,
            accept_log_loss: self.accept_log_loss,
            read_only: self.inspect_only,
        }
    }
}

/// The open task did not return: a panic there is redb (or a record decoder) tripping over
/// a damaged file, so the journal is reported corrupt.
fn open_failed(journal: &str, error: tokio::task::JoinError) -> FlowError {
    match error.try_into_panic() {
        Ok(panic) => FlowError::Corrupt {
            path: journal.to_string(),
            message: format!(
                "reading it failed: {}",
                crate::error::panic_message(&*panic)
            ),
        },
        Err(error) => FlowError::storage(format!("opening the journal failed: {error}")),
    }
}
