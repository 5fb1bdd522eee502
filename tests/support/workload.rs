//! The mixed workload of the crash tests: three workflows with loops of 10+ steps, tasks
//! that fail on their first attempt and are retried, errors handled by `match`, retries
//! exhausted into an `Err`, a non-retryable error and a compensation (refund).
//!
//! Every task takes the run ID and the call's index in its run (`call`) as its first two
//! arguments and reports each attempt to the execution log (see `exec_log`): with every
//! await being one task call, `call` is the step number, which ties log records to the
//! journal. Under `flow::testing::Driver` or called as plain async code, tasks neither log
//! nor fail transiently, which makes that the reference an interrupted run must match.
//!
//! An attempt interrupted by a crash counts as a failed attempt, so crashes may use up a
//! call's attempts: its last attempt's `TaskFailure::Interrupted` is then the call's
//! result. The reference of such a run is computed with that result forced on the call
//! (`reference_with`; each task body returns the forced `Err` when called outside an
//! engine), and a task with no error type fails the run there.

use flow::testing::{Driver, Restore, StepRecord};
use std::collections::BTreeMap;
use std::sync::Mutex;

use flow::{
    codec, task, workflow, Engine, EngineBuilder, FlowError, OpRequest, TaskContext, TaskFailure,
};
use serde::{Deserialize, Serialize};

use super::exec_log::executed;

/// The input of every workload run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub run: String,
    pub seed: u64,
    pub len: u32,
}

/// An error the order workflow returns as its (successful) output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ShopError {
    #[error("declined: {0}")]
    Declined(String),
    #[error("out of stock: {0}")]
    OutOfStock(String),
    #[error("engine: {0}")]
    Engine(String),
}

impl From<TaskFailure> for ShopError {
    fn from(f: TaskFailure) -> Self {
        ShopError::Engine(f.to_string())
    }
}

fn is_declined(e: &ShopError) -> bool {
    matches!(e, ShopError::Declined(_))
}

// ---------------------------------------------------------------------------------------
// Tasks
//
// An interrupted attempt counts, so kills can use up any small attempt budget. The tasks
// that succeed in an uninterrupted run get an attempt budget (`u32::MAX`, retries at most
// 20 ms apart) no number of kills exhausts, so that most runs follow their uninterrupted
// path to the end; `reserve` and `checked` exhaust their few attempts by design, and kills
// may exhaust them too, which the references model.

/// Results forced on calls while references are computed: `(run, call)` -> the failure
/// crashes made the call's result.
static FORCED: Mutex<BTreeMap<(String, u32), TaskFailure>> = Mutex::new(BTreeMap::new());

/// The `Err` forced on call `call` of `run`; never under an engine.
fn forced<E: From<TaskFailure>>(run: &str, call: u32) -> Option<E> {
    if TaskContext::current().is_some() {
        return None;
    }
    let forced = FORCED.lock().unwrap();
    forced.get(&(run.to_string(), call)).cloned().map(E::from)
}

/// The attempts each task of the workload gets (its `retry(max_attempts)`), by name.
pub fn max_attempts(task: &str) -> u32 {
    match task {
        "workload_checked" => 2,
        "reserve" => 3,
        _ => u32::MAX,
    }
}

#[task(retry(max_attempts = 4294967295, initial = "2ms", max_interval = "20ms"))]
pub async fn mix(run: String, call: u32, acc: u64, i: u32) -> u64 {
    executed("mix", &run, call, format!("{acc} {i}")).await;
    acc.rotate_left(7) ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Fails its first attempt, succeeds on the second.
#[task(retry(max_attempts = 4294967295, initial = "3ms", max_interval = "20ms"))]
pub async fn flaky(run: String, call: u32, acc: u64) -> Result<u64, String> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    if executed("flaky", &run, call, format!("{acc}")).await == Some(1) {
        return Err(format!("transient failure of call {call}"));
    }
    Ok(acc.wrapping_add(u64::from(call)).rotate_right(3))
}

/// Declines (non-retryable) one card in eleven.
#[task(retry(
    max_attempts = 4294967295,
    initial = "3ms",
    max_interval = "20ms",
    non_retryable = is_declined
))]
pub async fn charge(run: String, call: u32, seed: u64) -> Result<String, ShopError> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    executed("charge", &run, call, format!("{seed}")).await;
    if seed.is_multiple_of(11) {
        return Err(ShopError::Declined(format!("card {seed}")));
    }
    Ok(format!("pay-{seed:x}"))
}

/// Out of stock for one order in five, on every attempt: its retries are exhausted and
/// the last `Err` reaches the workflow.
#[task(retry(max_attempts = 3, initial = "2ms"))]
pub async fn reserve(run: String, call: u32, seed: u64, items: u32) -> Result<String, ShopError> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    executed("reserve", &run, call, format!("{seed} {items}")).await;
    if seed.is_multiple_of(5) {
        return Err(ShopError::OutOfStock(format!("item {}", seed % 97)));
    }
    Ok(format!("res-{items}"))
}

#[task(retry(max_attempts = 4294967295, initial = "2ms", max_interval = "20ms"))]
pub async fn refund(run: String, call: u32, payment: String) -> Result<String, ShopError> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    executed("refund", &run, call, payment.clone()).await;
    Ok(format!("refunded {payment}"))
}

/// Fails the first attempt for one item in four.
#[task(retry(max_attempts = 4294967295, initial = "2ms", max_interval = "20ms"))]
pub async fn ship(run: String, call: u32, item: u32) -> Result<String, ShopError> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    let attempt = executed("ship", &run, call, format!("{item}")).await;
    if item % 4 == 1 && attempt == Some(1) {
        return Err(ShopError::Engine(format!("carrier busy for item {item}")));
    }
    Ok(format!("parcel-{item}"))
}

#[task(retry(max_attempts = 4294967295, initial = "2ms", max_interval = "20ms"))]
pub async fn plan_batch(run: String, call: u32, seed: u64, len: u32) -> Vec<u64> {
    executed("plan_batch", &run, call, format!("{seed} {len}")).await;
    (0..u64::from(len))
        .map(|i| seed.wrapping_mul(31).wrapping_add(i * 7) % 1000)
        .collect()
}

/// Rejects multiples of three on every attempt (exhausting two attempts).
// Pinned: the corpus has a task of the same name, and both link into engine_resume.
#[task(name = "workload_checked", retry(max_attempts = 2, initial = "2ms"))]
pub async fn checked(run: String, call: u32, item: u64) -> Result<u64, String> {
    if let Some(e) = forced(&run, call) {
        return Err(e);
    }
    executed("checked", &run, call, format!("{item}")).await;
    if item.is_multiple_of(3) {
        return Err(format!("{item} rejected"));
    }
    Ok(item * item)
}

// ---------------------------------------------------------------------------------------
// Workflows

/// A loop of `len` steps, with a retried step after every fourth.
#[workflow]
pub async fn accumulate(job: Job) -> Result<u64, String> {
    let mut call: u32 = 0;
    let mut acc = job.seed;
    let mut i: u32 = 0;
    while i < job.len {
        acc = mix(job.run.clone(), call, acc, i).await;
        call += 1;
        if i % 4 == 3 {
            acc = flaky(job.run.clone(), call, acc).await?;
            call += 1;
        }
        i += 1;
    }
    Ok(acc)
}

/// The order saga of `examples/order.rs`: charge, reserve (refund when that fails),
/// then ship each item.
#[workflow]
pub async fn order(job: Job) -> Result<String, ShopError> {
    let run = job.run.clone();
    let payment = charge(run.clone(), 0, job.seed).await?;
    let reservation = match reserve(run.clone(), 1, job.seed, job.len).await {
        Ok(r) => r,
        Err(e) => {
            let note = refund(run.clone(), 2, payment.clone()).await?;
            return Err(ShopError::OutOfStock(format!("{e}; {note}")));
        }
    };
    let mut shipped = Vec::new();
    for item in 0..job.len {
        // Steps 0 and 1 were charge and reserve.
        shipped.push(ship(run.clone(), 2 + item, item).await?);
    }
    Ok(format!("{payment} {reservation} {}", shipped.join(",")))
}

/// A `for` over a task's output, with each item's error handled by `match`.
#[workflow]
pub async fn batch(job: Job) -> u64 {
    let run = job.run.clone();
    let items = plan_batch(run.clone(), 0, job.seed, job.len).await;
    let mut total: u64 = 0;
    let mut rejected: u64 = 0;
    for (i, item) in items.into_iter().enumerate() {
        // Step 0 was plan_batch.
        match checked(run.clone(), i as u32 + 1, item).await {
            Ok(v) => total = total.wrapping_add(v),
            Err(e) => {
                rejected += 1;
                total ^= e.len() as u64;
            }
        }
    }
    total.wrapping_mul(1000).wrapping_add(rejected)
}

// ---------------------------------------------------------------------------------------
// Runs of the workload

/// Which workflow a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Accumulate,
    Order,
    Batch,
}

/// The workload's workflows, registered.
pub fn register(builder: EngineBuilder) -> EngineBuilder {
    builder
        .register::<accumulate>()
        .register::<order>()
        .register::<batch>()
}

/// Job number `index` of the run-ID namespace `prefix`: the kinds rotate, lengths vary
/// from 10 to 17 and the seed decides which orders are declined or out of stock.
pub fn job(prefix: &str, index: u64) -> (Kind, Job) {
    let kind = match index % 3 {
        0 => Kind::Accumulate,
        1 => Kind::Order,
        _ => Kind::Batch,
    };
    let seed = index
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        .wrapping_add(index);
    let job = Job {
        run: format!("{prefix}{index:05}"),
        seed: seed % 100_000,
        len: 10 + (index * 5 % 8) as u32,
    };
    (kind, job)
}

/// Starts `job` (idempotent by run ID); `Ok` once the start is durable.
pub async fn start(engine: &Engine, kind: Kind, job: &Job) -> Result<(), FlowError> {
    let id = job.run.clone();
    match kind {
        Kind::Accumulate => engine.start(id, accumulate(job.clone())).await.map(drop),
        Kind::Order => engine.start(id, order(job.clone())).await.map(drop),
        Kind::Batch => engine.start(id, batch(job.clone())).await.map(drop),
    }
}

/// Waits for the run of `job` to end; returns its encoded output.
pub async fn result(engine: &Engine, kind: Kind, run: &str) -> Result<Vec<u8>, FlowError> {
    fn enc<T: Serialize>(v: T) -> Vec<u8> {
        codec::encode(&v, || "output".into()).expect("encode output")
    }
    Ok(match kind {
        Kind::Accumulate => enc(engine.handle::<accumulate>(run)?.result().await?),
        Kind::Order => enc(engine.handle::<order>(run)?.result().await?),
        Kind::Batch => enc(engine.handle::<batch>(run)?.result().await?),
    })
}

/// What a run of a job does: its steps and encoded output, uninterrupted or with the
/// results crashes forced on some calls.
#[derive(Debug, Clone)]
pub struct Reference {
    pub kind: Kind,
    pub job: Job,
    pub steps: Vec<StepRecord>,
    pub output: Vec<u8>,
    /// The calls whose last attempt crashes interrupted, with that attempt's number.
    pub forced: Vec<(u64, u32)>,
    /// Where and why the run fails: a forced call of a task with no error type.
    pub failure: Option<(u64, String)>,
}

impl Reference {
    /// The name the journal shows for step `step` (the task's short name).
    pub fn step_name(&self, step: usize) -> Option<String> {
        self.steps.get(step).map(|s| s.request.label())
    }

    /// The task behind step `step`.
    pub fn task_of(&self, step: usize) -> Option<&str> {
        match &self.steps.get(step)?.request {
            OpRequest::Task { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Runs `job` uninterrupted in-process with `flow::testing::Driver`, and as plain async
/// code; both must agree. Needs a tokio runtime.
pub async fn reference(kind: Kind, job: &Job) -> Reference {
    reference_with(kind, job, &[]).await
}

/// The reference of `job` when crashes used up every attempt of the calls in `forced`
/// (step, number of its interrupted last attempt): each such call's result is its
/// `TaskFailure::Interrupted`.
pub async fn reference_with(kind: Kind, job: &Job, forced: &[(u64, u32)]) -> Reference {
    let mut applied: Vec<(u64, u32)> = Vec::new();
    let mut reference = drive_reference(kind, job).await;
    // Forced calls in step order: each changes what the steps after it are.
    let mut pending: Vec<(u64, u32)> = forced.to_vec();
    pending.sort();
    for (step, attempt) in pending {
        let Some(task) = reference.task_of(step as usize).map(str::to_string) else {
            break;
        };
        let failure = TaskFailure::Interrupted {
            task: task.clone(),
            attempt,
        };
        applied.push((step, attempt));
        if matches!(task.as_str(), "mix" | "plan_batch") {
            // No error type: the run fails at this call.
            let error =
                format!("{failure} (task `{task}` has no error type to report it to the workflow)");
            reference.failure = Some((step, error));
            break;
        }
        FORCED
            .lock()
            .unwrap()
            .insert((job.run.clone(), step as u32), failure);
        reference = drive_reference(kind, job).await;
    }
    FORCED.lock().unwrap().retain(|(run, _), _| *run != job.run);
    reference.forced = applied;
    reference
}

async fn drive_reference(kind: Kind, job: &Job) -> Reference {
    async fn drive<W>(call: W, plain: W) -> (Vec<StepRecord>, Vec<u8>)
    where
        W: flow::Workflow + std::future::IntoFuture<Output = <W as flow::Workflow>::Output>,
        <W as flow::Workflow>::Output: PartialEq + std::fmt::Debug,
    {
        let mut driver = Driver::new();
        let output = driver
            .run(call, Restore::Never)
            .await
            .expect("reference run");
        let plain = plain.await;
        assert_eq!(output, plain, "state machine and plain async code disagree");
        let output = codec::encode(&output, || "output".into()).expect("encode output");
        (driver.steps, output)
    }
    let (steps, output) = match kind {
        Kind::Accumulate => drive(accumulate(job.clone()), accumulate(job.clone())).await,
        Kind::Order => drive(order(job.clone()), order(job.clone())).await,
        Kind::Batch => drive(batch(job.clone()), batch(job.clone())).await,
    };
    Reference {
        kind,
        job: job.clone(),
        steps,
        output,
        forced: Vec::new(),
        failure: None,
    }
}
