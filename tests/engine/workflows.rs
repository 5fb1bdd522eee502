//! The workflows and tasks the engine's tests drive, written with `#[workflow]` and
//! `#[task]`. Tasks record their attempts under a label unique to each test.
//!
//! Three machines stay hand-written, because they are what no macro emits: a task call
//! whose task is not linked into the program (`Ghost`), and two builds of `pipeline` that
//! disagree with its stored runs under the same fingerprint (`PipelineBadSlots`,
//! `PipelineStringOutput`), as a bug or a careless edit would leave them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use flow::__private::{Machine, StepFault, Transition};
use flow::{
    task, workflow, CodecError, DurableOp, OpRequest, StateGraph, TaskContext, TaskPolicy, Workflow,
};

// ---------------------------------------------------------------------------------------
// Execution records

static RUNS: Mutex<Option<HashMap<String, Vec<TaskContext>>>> = Mutex::new(None);

fn record(label: &str) -> TaskContext {
    let ctx = TaskContext::current().expect("tasks run inside a TaskContext");
    RUNS.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(label.to_string())
        .or_default()
        .push(ctx.clone());
    ctx
}

/// How many times tasks with `label` ran.
pub fn runs(label: &str) -> usize {
    contexts(label).len()
}

/// The contexts of the attempts of tasks with `label`, in order.
pub fn contexts(label: &str) -> Vec<TaskContext> {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(label).cloned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Tasks

/// Returns `value + 1`.
#[task(name = "tests::count")]
pub async fn count(label: String, value: u64) -> u64 {
    record(&label);
    value + 1
}

/// Fails (retryably) on its first `fail_first` attempts, then returns the attempt number.
/// No jitter (the default), so the tests know when retries come.
#[task(
    name = "tests::flaky",
    retry(max_attempts = 3, initial = "20ms", backoff = 2.0, max_interval = "1s")
)]
pub async fn flaky(label: String, fail_first: u32) -> Result<u32, String> {
    let ctx = record(&label);
    if ctx.attempt <= fail_first {
        Err(format!("attempt {} failed", ctx.attempt))
    } else {
        Ok(ctx.attempt)
    }
}

/// Sleeps `ms`; times out after 50 ms, two attempts.
#[task(
    name = "tests::slow",
    retry(max_attempts = 2, initial = "5ms"),
    timeout = "50ms"
)]
pub async fn slow(label: String, ms: u64) -> Result<u64, String> {
    record(&label);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Panics on its first `panic_first` attempts; the output can carry a failure.
#[task(name = "tests::boom", retry(max_attempts = 2, initial = "5ms"))]
pub async fn boom(label: String, panic_first: u32) -> Result<u32, String> {
    let ctx = record(&label);
    if ctx.attempt <= panic_first {
        panic!("boom on attempt {}", ctx.attempt);
    }
    Ok(ctx.attempt)
}

/// Always panics; its output cannot carry the failure, so the run fails.
#[task(name = "tests::plain_boom", retry(max_attempts = 1))]
pub async fn plain_boom(label: String) -> u32 {
    record(&label);
    panic!("plain boom");
}

/// Waits until cancelled (or 10 s); reports cancellation as an `Err`.
#[task(name = "tests::patient")]
pub async fn patient(label: String) -> Result<(), String> {
    record(&label);
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Workflows

#[workflow(name = "tests::pipeline")]
pub async fn pipeline(label: String, n: u64) -> u64 {
    let a = count(label.clone(), n).await;
    let b = count(label.clone(), a).await;
    let c = count(label, a + b).await;
    a + b + c
}

/// `pipeline` compiled from a different body: same name, other fingerprint.
#[workflow(name = "tests::pipeline")]
pub async fn pipeline_v2(label: String, n: u64) -> u64 {
    let a = count(label.clone(), n).await;
    let b = count(label.clone(), a + 1).await;
    let c = count(label, a + b).await;
    a + b + c
}

#[workflow(name = "tests::call_flaky")]
pub async fn call_flaky(label: String, fail_first: u32) -> Result<u32, String> {
    flaky(label, fail_first).await
}

#[workflow(name = "tests::call_slow")]
pub async fn call_slow(label: String, ms: u64) -> Result<u64, String> {
    slow(label, ms).await
}

#[workflow(name = "tests::call_boom")]
pub async fn call_boom(label: String, panic_first: u32) -> Result<u32, String> {
    boom(label, panic_first).await
}

#[workflow(name = "tests::call_plain_boom")]
pub async fn call_plain_boom(label: String) -> u32 {
    plain_boom(label).await
}

#[workflow(name = "tests::call_patient")]
pub async fn call_patient(label: String) -> Result<(), String> {
    patient(label).await
}

/// Panics in its first step.
#[workflow(name = "tests::panics")]
pub async fn panics() {
    panic!("the workflow body panicked");
}

#[workflow(name = "tests::nap")]
pub async fn nap(ms: u64) {
    flow::sleep(Duration::from_millis(ms)).await;
}

#[workflow(name = "tests::await_approval")]
pub async fn await_approval() -> String {
    flow::signal::<String>("approval").await
}

#[workflow(name = "tests::await_with_timeout")]
pub async fn await_with_timeout(ms: u64) -> Result<String, flow::SignalTimeout> {
    flow::signal::<String>("approval")
        .timeout(Duration::from_millis(ms))
        .await
}

#[workflow(name = "tests::nap_then_approval")]
pub async fn nap_then_approval(ms: u64) -> String {
    flow::sleep(Duration::from_millis(ms)).await;
    flow::signal::<String>("approval").await
}

/// Awaits a child run of `pipeline`.
#[workflow(name = "tests::parent")]
pub async fn parent(label: String, n: u64) -> u64 {
    pipeline(label, n).await
}

/// Like `parent`; its child run ID (`"{run}/0"`) may already be taken.
#[workflow(name = "tests::spawns_child")]
pub async fn spawns_child(label: String, n: u64) -> u64 {
    pipeline(label, n).await
}

#[workflow(name = "tests::fanout")]
pub async fn fanout(label: String) -> (u64, (Result<u32, String>, ())) {
    flow::join!(
        count(label.clone(), 10),
        flow::join!(flaky(label, 1), flow::sleep(Duration::from_millis(30)))
    )
    .await
}

#[workflow(name = "tests::two_signals")]
pub async fn two_signals() -> (u32, u32) {
    flow::join!(flow::signal::<u32>("n"), flow::signal::<u32>("n")).await
}

/// A task call whose task is not linked into the program.
pub struct Ghost;

impl DurableOp for Ghost {
    type Output = u32;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Task {
            name: "tests::ghost".into(),
            args: vec![],
            policy: TaskPolicy::default(),
        })
    }
}

/// Awaited outside a workflow there is no body to run either.
impl std::future::IntoFuture for Ghost {
    type Output = u32;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = u32> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async { panic!("task `tests::ghost` is not linked into this program") })
    }
}

#[workflow(name = "tests::call_ghost")]
pub async fn call_ghost() -> u32 {
    Ghost.await
}

// ---------------------------------------------------------------------------------------
// Hand-written builds of `pipeline` that disagree with its stored runs

type PipelineInput = <pipeline as Workflow>::Input;

/// `pipeline` whose code now reads its first slot (`label: String`) as a `u64`, under
/// the same fingerprint: its stored state no longer decodes.
pub struct PipelineBadSlots(pub PipelineInput);

impl Workflow for PipelineBadSlots {
    const NAME: &'static str = <pipeline as Workflow>::NAME;
    const FINGERPRINT: u64 = <pipeline as Workflow>::FINGERPRINT;
    type Input = PipelineInput;
    type Output = u64;
    fn into_input(self) -> PipelineInput {
        self.0
    }
    fn from_input(input: PipelineInput) -> Self {
        PipelineBadSlots(input)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        let (pc, _, ctl) = machine.parts();
        for (index, bytes) in ctl.take_persisted() {
            if index == 0 {
                let _: u64 = ctl.decode_slot(&bytes, "`label`")?;
            }
        }
        Err(ctl.unknown_state(*pc))
    }
    fn graph() -> &'static StateGraph {
        <pipeline as Workflow>::graph()
    }
}

/// `pipeline` whose output type changed to `String`, under the same fingerprint.
pub struct PipelineStringOutput(pub PipelineInput);

impl Workflow for PipelineStringOutput {
    const NAME: &'static str = <pipeline as Workflow>::NAME;
    const FINGERPRINT: u64 = <pipeline as Workflow>::FINGERPRINT;
    type Input = PipelineInput;
    type Output = String;
    fn into_input(self) -> PipelineInput {
        self.0
    }
    fn from_input(input: PipelineInput) -> Self {
        PipelineStringOutput(input)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        <pipeline as Workflow>::step(machine)
    }
    fn graph() -> &'static StateGraph {
        <pipeline as Workflow>::graph()
    }
}
