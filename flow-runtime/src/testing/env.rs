//! [`TestEnv`] and [`TestRun`]: workflows run in memory on a virtual clock, driven by the
//! test.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;

use super::clock::Clock;
use super::driver::Restore;
use super::mocks::{MockTask, Mocks, NamedMock};
use super::run::{Entry, RunEnd};
use super::world::{Registry, World};
use super::TestError;
use crate::callback::CallbackError;
use crate::codec;
use crate::history::{HistoryEvent, RunStatus};
use crate::output;
use crate::task::Task;
use crate::workflow::Workflow;

/// Runs workflows in memory, with every durable primitive, on a virtual clock: Temporal's
/// time-skipping test environment for flow. No engine, no file, no real waiting.
///
/// - Time stands still until the test moves it: [`advance`](Self::advance) fires every
///   timer due in that span in deadline order (sleeps, signal and callback timeouts,
///   retry back-offs, task timeouts of hung mocks, run timeouts);
///   [`advance_to_next_timer`](Self::advance_to_next_timer) jumps to the next one;
///   [`TestRun::result`] jumps from timer to timer until the run ends.
/// - Whatever needs no time happens at once: after every call the environment moves all
///   runs on until each waits for time or for the test (tasks run, signals in the inbox
///   are delivered, child runs finish).
/// - Tasks run their bodies, unless [`mock`](Self::mock)ed. Retries follow each task's
///   policy (without jitter).
///
/// Where the engine does things concurrently, the environment picks one order: branches
/// in branch order, so a race is won by the first branch (in branch order) that has a
/// result, and a losing branch's task may not run at all.
///
/// ```
/// use std::time::Duration;
/// use flow::{task, workflow};
/// use flow::testing::TestEnv;
///
/// #[task] async fn remind(who: String) -> Result<(), String> { Ok(()) }
///
/// #[workflow]
/// async fn nag(who: String) -> Result<u32, String> {
///     for _ in 0..3 {
///         flow::sleep(Duration::from_secs(86_400)).await;
///         remind(who.clone()).await?;
///     }
///     Ok(3)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = TestEnv::new();
/// let reminders = env.mock::<remind>().returns(Ok(()));
/// let run = env.start(nag("ann".into())).await.unwrap();
/// env.advance(Duration::from_secs(86_400)).await.unwrap();
/// reminders.assert_called(1);
/// assert_eq!(run.result().await.unwrap(), Ok(3)); // skips the other two days
/// assert_eq!(env.elapsed(), Duration::from_secs(3 * 86_400));
/// # }
/// ```
#[derive(Clone)]
pub struct TestEnv {
    world: Arc<Mutex<World>>,
    clock: Clock,
    mocks: Mocks,
    registry: Registry,
    next_run: Arc<AtomicU64>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("now", &self.clock.now())
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// An environment whose virtual clock starts at the real time now.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// An environment whose virtual clock starts at `start`.
    pub fn starting_at(start: SystemTime) -> Self {
        let clock = Clock::starting_at(start);
        let mocks = Mocks::default();
        let registry = Registry::default();
        let world = World {
            clock: clock.clone(),
            mocks: mocks.clone(),
            registry: registry.clone(),
            runs: BTreeMap::new(),
            tokens: HashMap::new(),
            restore: Restore::Never,
        };
        TestEnv {
            world: Arc::new(Mutex::new(world)),
            clock,
            mocks,
            registry,
            next_run: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Rebuilds each run's machine from its saved slots as a restart would (before every
    /// resumption, or once at a chosen one): the check that a run resumed after a crash
    /// ends like one that never stopped. See also [`check_resumes`](super::check_resumes).
    ///
    /// # Panics
    /// If another task is inside a call of this environment at the same time.
    pub fn restoring(self, restore: Restore) -> Self {
        self.world
            .try_lock()
            .expect("TestEnv::restoring is called while the environment is idle")
            .restore = restore;
        self
    }

    /// Makes workflow `W` available as a child workflow (the workflows the test starts
    /// are registered by [`start`](Self::start)).
    pub fn register<W: Workflow>(&self) -> &Self {
        self.registry
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(W::NAME, Entry::of::<W>());
        self
    }

    /// Replaces task `T`'s body in this environment (name it by its function:
    /// `env.mock::<charge>()`); say what it answers with
    /// [`returns`](MockTask::returns), [`returns_in_order`](MockTask::returns_in_order),
    /// [`answers`](MockTask::answers) or [`hangs`](MockTask::hangs). The handle counts
    /// the calls and keeps their arguments.
    pub fn mock<T: Task>(&self) -> MockTask<T> {
        MockTask::new(self.mocks.clone())
    }

    /// Replaces the body of the task registered as `name` (for a task whose type the test
    /// cannot name).
    pub fn mock_named(&self, name: &str) -> NamedMock {
        NamedMock::new(self.mocks.clone(), name)
    }

    /// Starts a run of `call` (its ID is the workflow's name and a number) and moves it
    /// on until it waits for time or for the test.
    pub async fn start<W: Workflow>(&self, call: W) -> Result<TestRun<W>, TestError> {
        let n = self.next_run.fetch_add(1, Ordering::Relaxed);
        self.start_run(format!("{}-{n}", W::NAME), call, None).await
    }

    /// Starts a run with ID `run_id` (its child runs and idempotency keys derive from it).
    pub async fn start_with_id<W: Workflow>(
        &self,
        run_id: &str,
        call: W,
    ) -> Result<TestRun<W>, TestError> {
        self.start_run(run_id.to_string(), call, None).await
    }

    /// Starts a run with a run-level timeout, as `Engine::start_with_timeout`: at the
    /// deadline (virtual) the run is cancelled.
    pub async fn start_with_timeout<W: Workflow>(
        &self,
        call: W,
        timeout: Duration,
    ) -> Result<TestRun<W>, TestError> {
        let n = self.next_run.fetch_add(1, Ordering::Relaxed);
        let timeout = Some(crate::time::millis(timeout));
        self.start_run(format!("{}-{n}", W::NAME), call, timeout)
            .await
    }

    async fn start_run<W: Workflow>(
        &self,
        run_id: String,
        call: W,
        timeout_ms: Option<u64>,
    ) -> Result<TestRun<W>, TestError> {
        let input = codec::encode(&call.into_input(), || {
            format!("input of workflow `{}`", W::NAME)
        })?;
        let mut world = self.world.lock().await;
        if world.runs.contains_key(&run_id) {
            return Err(TestError::Refused(crate::FlowError::RunIdConflict {
                run_id,
                difference: "this test environment already has a run with this ID".into(),
            }));
        }
        self.register::<W>();
        world.start(run_id.clone(), Entry::of::<W>(), input, None, timeout_ms)?;
        world.settle().await?;
        Ok(TestRun {
            env: self.clone(),
            run_id,
            _workflow: PhantomData,
        })
    }

    /// The virtual time now.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Virtual time passed since the environment was made.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Moves the virtual clock forward by `by`, firing every timer due on the way in
    /// deadline order, each followed by whatever it sets going.
    pub async fn advance(&self, by: Duration) -> Result<(), TestError> {
        let mut world = self.world.lock().await;
        let target = self.clock.now_ms().saturating_add(crate::time::millis(by));
        world.settle().await?;
        while let Some(deadline) = world.next_deadline().filter(|d| *d <= target) {
            self.clock.set_ms(deadline);
            world.settle().await?;
        }
        self.clock.set_ms(target);
        world.settle().await
    }

    /// Jumps the virtual clock to the next timer any run waits for and fires it; returns
    /// the instant, or `None` (the clock unchanged) when no run waits for a timer.
    pub async fn advance_to_next_timer(&self) -> Result<Option<SystemTime>, TestError> {
        let mut world = self.world.lock().await;
        world.settle().await?;
        let Some(deadline) = world.next_deadline() else {
            return Ok(None);
        };
        self.clock.set_ms(deadline);
        world.settle().await?;
        Ok(Some(self.clock.now()))
    }

    /// Sends signal `name` with `value` to run `run_id` (a child run too), then moves
    /// the runs on. Checked like `Engine::signal`: a name the workflow never waits for,
    /// or a value of the wrong type, is refused.
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        run_id: &str,
        name: &str,
        value: &T,
    ) -> Result<(), TestError> {
        let payload = codec::encode(value, || format!("signal `{name}` for run `{run_id}`"))?;
        let mut world = self.world.lock().await;
        world.signal(run_id, name, payload, std::any::type_name::<T>())?;
        world.settle().await
    }

    /// Cancels run `run_id`, as `Engine::cancel`, then moves the runs on.
    pub async fn cancel(&self, run_id: &str) -> Result<(), TestError> {
        let mut world = self.world.lock().await;
        world.request_cancel(run_id)?;
        world.settle().await
    }

    /// Completes the callback that issued `token`, as `Engine::complete`: the waiting
    /// step resumes with `Ok(value)`, or `Err(CallbackError::Rejected(error))`.
    pub async fn complete_callback<T: Serialize>(
        &self,
        token: &str,
        result: Result<T, String>,
    ) -> Result<(), TestError> {
        let (bytes, ok) = match &result {
            Ok(value) => (output::ok(value, "callback value")?, true),
            Err(error) => (
                output::err(&CallbackError::Rejected(error.clone()), "an error outcome")?,
                false,
            ),
        };
        let mut world = self.world.lock().await;
        world.complete(token, bytes, ok)?;
        world.settle().await
    }

    /// Records a sign of life for the callback that issued `token`, as
    /// `Engine::heartbeat`: its heartbeat deadline moves to one interval from now.
    pub async fn heartbeat(&self, token: &str) -> Result<(), TestError> {
        let mut world = self.world.lock().await;
        world.heartbeat(token)?;
        world.settle().await
    }

    /// Where run `run_id` stands.
    pub async fn status(&self, run_id: &str) -> Result<RunStatus, TestError> {
        let world = self.world.lock().await;
        let run = world
            .runs
            .get(run_id)
            .ok_or_else(|| TestError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        Ok(run.status())
    }

    /// The history of run `run_id` (a child run too), oldest event first, with virtual
    /// times; a map's `StepScheduled` keeps its items.
    pub async fn history(&self, run_id: &str) -> Result<Vec<HistoryEvent>, TestError> {
        let world = self.world.lock().await;
        let run = world
            .runs
            .get(run_id)
            .ok_or_else(|| TestError::UnknownRun {
                run_id: run_id.to_string(),
            })?;
        Ok(run.history.clone())
    }

    /// The IDs of every run in the environment (child runs included), in order.
    pub async fn run_ids(&self) -> Vec<String> {
        self.world.lock().await.runs.keys().cloned().collect()
    }

    /// The encoded output of a finished run, with every completed step's label and
    /// output, for comparing runs ([`check_resumes`](super::check_resumes)).
    pub(super) async fn finished(
        &self,
        run_id: &str,
    ) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>), TestError> {
        self.finish(run_id).await?;
        let world = self.world.lock().await;
        let run = &world.runs[run_id];
        match &run.end {
            Some(RunEnd::Completed(output)) => Ok((output.clone(), run.completed.clone())),
            _ => unreachable!("`finish` returns only for a completed run"),
        }
    }

    /// Lets virtual time jump from timer to timer until run `run_id` ends.
    async fn finish(&self, run_id: &str) -> Result<Vec<u8>, TestError> {
        let mut world = self.world.lock().await;
        world.settle().await?;
        for _ in 0..MAX_TIMER_JUMPS {
            let run = world
                .runs
                .get(run_id)
                .ok_or_else(|| TestError::UnknownRun {
                    run_id: run_id.to_string(),
                })?;
            let run_id = run_id.to_string();
            match &run.end {
                Some(RunEnd::Completed(output)) => return Ok(output.clone()),
                Some(RunEnd::Failed(error)) => {
                    let error = error.clone();
                    return Err(TestError::Failed { run_id, error });
                }
                Some(RunEnd::Faulted(error)) => {
                    let error = error.clone();
                    return Err(TestError::Faulted { run_id, error });
                }
                Some(RunEnd::Cancelled) => return Err(TestError::Cancelled { run_id }),
                None => {}
            }
            let Some(deadline) = world.next_deadline() else {
                let waiting_for = run.waiting_for();
                return Err(TestError::Stuck {
                    run_id,
                    waiting_for,
                });
            };
            self.clock.set_ms(deadline);
            world.settle().await?;
        }
        Err(TestError::Endless {
            run_id: run_id.to_string(),
            timers: MAX_TIMER_JUMPS,
        })
    }
}

/// How many timers [`TestRun::result`] lets fire before it calls the run endless: far
/// more than a test's run sets (a daily check for a century is 36,500), few enough to
/// fail fast.
const MAX_TIMER_JUMPS: u64 = 100_000;

/// A run in a [`TestEnv`], made by [`TestEnv::start`].
pub struct TestRun<W: Workflow> {
    env: TestEnv,
    run_id: String,
    _workflow: PhantomData<fn() -> W>,
}

impl<W: Workflow> std::fmt::Debug for TestRun<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRun")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl<W: Workflow> TestRun<W> {
    /// The run's ID.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's output: lets virtual time jump from timer to timer until the run ends.
    ///
    /// Errors: [`TestError::Stuck`] when it waits for something only the test can send
    /// (a signal, a callback completion) and no timer is left;
    /// [`TestError::Failed`], [`TestError::Faulted`] or [`TestError::Cancelled`] when it
    /// ended without an output.
    pub async fn result(&self) -> Result<W::Output, TestError> {
        let output = self.env.finish(&self.run_id).await?;
        Ok(codec::decode(&output, || {
            format!("output of workflow `{}`", W::NAME)
        })?)
    }

    /// Sends signal `name` with `value` (see [`TestEnv::signal`]).
    pub async fn signal<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), TestError> {
        self.env.signal(&self.run_id, name, value).await
    }

    /// Cancels the run (see [`TestEnv::cancel`]).
    pub async fn cancel(&self) -> Result<(), TestError> {
        self.env.cancel(&self.run_id).await
    }

    /// The token of the one callback the run waits for (its task handed it out).
    pub async fn callback_token(&self) -> Result<String, TestError> {
        let world = self.env.world.lock().await;
        let mut tokens = world.open_tokens(&self.run_id);
        if tokens.len() != 1 {
            return Err(TestError::CallbackTokens {
                run_id: self.run_id.clone(),
                found: tokens.len(),
                hint: "ask once the run awaits a single `wait_for_callback`",
            });
        }
        Ok(tokens.remove(0))
    }

    /// Where the run stands: `Waiting` until it ends.
    pub async fn status(&self) -> RunStatus {
        self.env
            .status(&self.run_id)
            .await
            .unwrap_or(RunStatus::Waiting)
    }

    /// What the run waits for now (`signal `approval``, `child run `x``, ...), or `None`
    /// once it has ended.
    pub async fn waiting_for(&self) -> Option<String> {
        let world = self.env.world.lock().await;
        let run = world.runs.get(&self.run_id)?;
        run.end.is_none().then(|| run.waiting_for())
    }

    /// The run's history (see [`TestEnv::history`]).
    pub async fn history(&self) -> Vec<HistoryEvent> {
        self.env.history(&self.run_id).await.unwrap_or_default()
    }
}
