//! Hand-written workflows and tasks, shaped like the code `#[workflow]` and `#[task]`
//! generate, so the engine can be tested without the macros.

#![allow(dead_code)]

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use flow_runtime::__private::{
    erased_failure_output, erased_run, frame, inventory, BoxFuture, TaskRegistration,
};
use flow_runtime::{
    codec, AttemptClass, CodecError, DurableOp, Machine, OpRequest, RetryPolicy, StateGraph,
    StateInfo, StepFault, Task, TaskContext, TaskFailure, TaskPolicy, Transition, Workflow,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Journal files

/// A journal path in the temp dir, removed on drop.
pub struct TempJournal(pub PathBuf);

impl TempJournal {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "flow-rt-{name}-{}-{}.redb",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        TempJournal(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Execution records (tasks count their runs per label; labels are unique per test)

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

macro_rules! task_op {
    ($t:ty) => {
        impl DurableOp for $t {
            type Output = <$t as Task>::Output;
            fn into_request(self) -> Result<OpRequest, CodecError> {
                Ok(OpRequest::Task {
                    name: <$t as Task>::NAME.to_string(),
                    args: codec::encode(&self, || {
                        format!("arguments of task `{}`", <$t as Task>::NAME)
                    })?,
                    policy: <$t as Task>::policy(),
                })
            }
        }
        inventory::submit!(TaskRegistration {
            name: <$t as Task>::NAME,
            run: erased_run::<$t>,
            failure_output: erased_failure_output::<$t>,
        });
    };
}

fn result_class<T, E: std::fmt::Display>(output: &Result<T, E>) -> AttemptClass {
    match output {
        Ok(_) => AttemptClass::Success,
        Err(e) => AttemptClass::Retryable(e.to_string()),
    }
}

/// Returns `value + 1`; counts its runs under `label`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count {
    pub label: String,
    pub value: u64,
}

impl Task for Count {
    const NAME: &'static str = "tests::count";
    type Output = u64;
    fn policy() -> TaskPolicy {
        TaskPolicy::default()
    }
    fn run(self) -> BoxFuture<u64> {
        Box::pin(async move {
            record(&self.label);
            self.value + 1
        })
    }
    fn classify(_: &u64) -> AttemptClass {
        AttemptClass::Success
    }
    fn from_failure(_: TaskFailure) -> Option<u64> {
        None
    }
}
task_op!(Count);

/// Fails (retryably) on its first `fail_first` attempts, then returns the attempt number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky {
    pub label: String,
    pub fail_first: u32,
}

impl Task for Flaky {
    const NAME: &'static str = "tests::flaky";
    type Output = Result<u32, String>;
    fn policy() -> TaskPolicy {
        TaskPolicy {
            retry: RetryPolicy {
                max_attempts: 3,
                initial_interval: Duration::from_millis(20),
                backoff_rate: 2.0,
                max_interval: Duration::from_secs(1),
                jitter: 0.0,
            },
            timeout: None,
        }
    }
    fn run(self) -> BoxFuture<Self::Output> {
        Box::pin(async move {
            let ctx = record(&self.label);
            if ctx.attempt <= self.fail_first {
                Err(format!("attempt {} failed", ctx.attempt))
            } else {
                Ok(ctx.attempt)
            }
        })
    }
    fn classify(output: &Self::Output) -> AttemptClass {
        result_class(output)
    }
    fn from_failure(failure: TaskFailure) -> Option<Self::Output> {
        Some(Err(failure.to_string()))
    }
}
task_op!(Flaky);

/// Sleeps `ms`; times out after 50 ms, two attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub label: String,
    pub ms: u64,
}

impl Task for Slow {
    const NAME: &'static str = "tests::slow";
    type Output = Result<u64, String>;
    fn policy() -> TaskPolicy {
        TaskPolicy {
            retry: RetryPolicy {
                max_attempts: 2,
                initial_interval: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            timeout: Some(Duration::from_millis(50)),
        }
    }
    fn run(self) -> BoxFuture<Self::Output> {
        Box::pin(async move {
            record(&self.label);
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            Ok(self.ms)
        })
    }
    fn classify(output: &Self::Output) -> AttemptClass {
        result_class(output)
    }
    fn from_failure(failure: TaskFailure) -> Option<Self::Output> {
        Some(Err(failure.to_string()))
    }
}
task_op!(Slow);

/// Panics on its first `panic_first` attempts; the output can carry a failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boom {
    pub label: String,
    pub panic_first: u32,
}

impl Task for Boom {
    const NAME: &'static str = "tests::boom";
    type Output = Result<u32, String>;
    fn policy() -> TaskPolicy {
        TaskPolicy {
            retry: RetryPolicy {
                max_attempts: 2,
                initial_interval: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            timeout: None,
        }
    }
    fn run(self) -> BoxFuture<Self::Output> {
        Box::pin(async move {
            let ctx = record(&self.label);
            if ctx.attempt <= self.panic_first {
                panic!("boom on attempt {}", ctx.attempt);
            }
            Ok(ctx.attempt)
        })
    }
    fn classify(output: &Self::Output) -> AttemptClass {
        result_class(output)
    }
    fn from_failure(failure: TaskFailure) -> Option<Self::Output> {
        Some(Err(failure.to_string()))
    }
}
task_op!(Boom);

/// Always panics; its output cannot carry the failure, so the run fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlainBoom {
    pub label: String,
}

impl Task for PlainBoom {
    const NAME: &'static str = "tests::plain_boom";
    type Output = u32;
    fn policy() -> TaskPolicy {
        TaskPolicy {
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            timeout: None,
        }
    }
    fn run(self) -> BoxFuture<u32> {
        Box::pin(async move {
            record(&self.label);
            panic!("plain boom");
        })
    }
    fn classify(_: &u32) -> AttemptClass {
        AttemptClass::Success
    }
    fn from_failure(_: TaskFailure) -> Option<u32> {
        None
    }
}
task_op!(PlainBoom);

/// Waits until cancelled (or 10 s); reports cancellation as an `Err`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Patient {
    pub label: String,
}

impl Task for Patient {
    const NAME: &'static str = "tests::patient";
    type Output = Result<(), String>;
    fn policy() -> TaskPolicy {
        TaskPolicy::default()
    }
    fn run(self) -> BoxFuture<Self::Output> {
        Box::pin(async move {
            record(&self.label);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        })
    }
    fn classify(output: &Self::Output) -> AttemptClass {
        result_class(output)
    }
    fn from_failure(failure: TaskFailure) -> Option<Self::Output> {
        Some(Err(failure.to_string()))
    }
}
task_op!(Patient);

// ---------------------------------------------------------------------------------------
// Workflows

/// ```ignore
/// #[workflow]
/// async fn pipeline(input: PipelineInput) -> u64 {
///     let a = count(input.label.clone(), input.n).await;
///     let b = count(input.label.clone(), a).await;
///     let c = count(input.label, a + b).await;
///     a + b + c
/// }
/// ```
pub struct Pipeline(pub PipelineInput);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineInput {
    pub label: String,
    pub n: u64,
}

#[derive(Default)]
struct PipelineFrame {
    label: Option<String>,
    a: Option<u64>,
    b: Option<u64>,
    issued: PhantomData<u64>,
}

static PIPELINE_GRAPH: StateGraph = StateGraph {
    workflow: "tests::pipeline",
    states: &[
        StateInfo {
            name: "count",
            line: 1,
        },
        StateInfo {
            name: "count",
            line: 2,
        },
        StateInfo {
            name: "count",
            line: 3,
        },
    ],
    transitions: &[(StateGraph::START, 0), (0, 1), (1, 2), (2, StateGraph::END)],
};

impl Workflow for Pipeline {
    const NAME: &'static str = "tests::pipeline";
    const FINGERPRINT: u64 = 0x1111;
    type Input = PipelineInput;
    type Output = u64;

    fn into_input(self) -> PipelineInput {
        self.0
    }
    fn from_input(input: PipelineInput) -> Self {
        Pipeline(input)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        let (pc, slot, ctl) = machine.parts();
        let f = frame(slot, PipelineFrame::default);
        for (index, bytes) in ctl.take_persisted() {
            match index {
                0 => f.label = Some(ctl.decode_slot(&bytes, "label")?),
                1 => f.a = Some(ctl.decode_slot(&bytes, "a")?),
                2 => f.b = Some(ctl.decode_slot(&bytes, "b")?),
                _ => {}
            }
        }
        match *pc {
            0 => {
                let input: PipelineInput = ctl.take_input()?;
                f.label = Some(input.label.clone());
                ctl.mark_dirty(0);
                ctl.save_slot(0, &f.label, "label")?;
                *pc = 1;
                ctl.suspend(
                    &mut f.issued,
                    Count {
                        label: input.label,
                        value: input.n,
                    },
                    0,
                )
            }
            1 => {
                let a = ctl.take_output(&f.issued, "count")?;
                f.a = Some(a);
                ctl.mark_dirty(1);
                ctl.save_slot(1, &f.a, "a")?;
                let label = f.label.clone().ok_or_else(|| missing("label"))?;
                *pc = 2;
                ctl.suspend(&mut f.issued, Count { label, value: a }, 1)
            }
            2 => {
                let b = ctl.take_output(&f.issued, "count")?;
                f.b = Some(b);
                ctl.mark_dirty(2);
                ctl.save_slot(2, &f.b, "b")?;
                let a = f.a.ok_or_else(|| missing("a"))?;
                let label = f.label.clone().ok_or_else(|| missing("label"))?;
                *pc = 3;
                ctl.suspend(
                    &mut f.issued,
                    Count {
                        label,
                        value: a + b,
                    },
                    2,
                )
            }
            3 => {
                let c = ctl.take_output(&f.issued, "count")?;
                let a = f.a.ok_or_else(|| missing("a"))?;
                let b = f.b.ok_or_else(|| missing("b"))?;
                ctl.complete(&(a + b + c))
            }
            other => Err(ctl.unknown_state(other)),
        }
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
}

/// Awaited inside another workflow, a workflow call starts a child run.
impl DurableOp for Pipeline {
    type Output = u64;
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::Child {
            workflow: Self::NAME.to_string(),
            input: codec::encode(&self.0, || {
                "input of workflow `tests::pipeline`".to_string()
            })?,
        })
    }
}

fn missing(local: &str) -> StepFault {
    StepFault::MissingLocal {
        workflow: "tests".into(),
        local: local.into(),
    }
}

/// Both operations at once: `flow::join!(a, b)`.
pub struct Join2<A, B>(pub A, pub B);

impl<A: DurableOp, B: DurableOp> DurableOp for Join2<A, B> {
    type Output = (A::Output, B::Output);
    fn into_request(self) -> Result<OpRequest, CodecError> {
        Ok(OpRequest::All(vec![
            self.0.into_request()?,
            self.1.into_request()?,
        ]))
    }
}

/// A workflow that awaits one operation built from its input and returns its output:
/// `async fn name(input: I) -> O { make(input).await }`.
#[macro_export]
macro_rules! single_op_workflow {
    ($name:ident, $wf_name:literal, $input:ty => $output:ty, |$arg:ident| $make:expr) => {
        pub struct $name(pub $input);

        impl flow_runtime::Workflow for $name {
            const NAME: &'static str = $wf_name;
            const FINGERPRINT: u64 = 7;
            type Input = $input;
            type Output = $output;
            fn into_input(self) -> $input {
                self.0
            }
            fn from_input(input: $input) -> Self {
                $name(input)
            }
            fn step(
                machine: &mut flow_runtime::Machine,
            ) -> Result<flow_runtime::Transition, flow_runtime::StepFault> {
                #[derive(Default)]
                struct Frame {
                    issued: std::marker::PhantomData<$output>,
                }
                let (pc, slot, ctl) = machine.parts();
                let f = flow_runtime::__private::frame(slot, Frame::default);
                match *pc {
                    0 => {
                        let $arg: $input = ctl.take_input()?;
                        *pc = 1;
                        ctl.suspend(&mut f.issued, $make, 0)
                    }
                    1 => {
                        let out: $output = ctl.take_output(&f.issued, "op")?;
                        ctl.complete(&out)
                    }
                    other => Err(ctl.unknown_state(other)),
                }
            }
            fn graph() -> &'static flow_runtime::StateGraph {
                static GRAPH: flow_runtime::StateGraph = flow_runtime::StateGraph {
                    workflow: $wf_name,
                    states: &[flow_runtime::StateInfo {
                        name: "op",
                        line: 1,
                    }],
                    transitions: &[],
                };
                &GRAPH
            }
        }
    };
}

single_op_workflow!(CallFlaky, "tests::call_flaky", Flaky => Result<u32, String>, |t| t);
single_op_workflow!(CallSlow, "tests::call_slow", Slow => Result<u64, String>, |t| t);
single_op_workflow!(CallBoom, "tests::call_boom", Boom => Result<u32, String>, |t| t);
single_op_workflow!(CallPlainBoom, "tests::call_plain_boom", PlainBoom => u32, |t| t);
single_op_workflow!(CallPatient, "tests::call_patient", Patient => Result<(), String>, |t| t);
single_op_workflow!(Nap, "tests::nap", u64 => (), |ms| flow_runtime::sleep(Duration::from_millis(ms)));
single_op_workflow!(AwaitApproval, "tests::await_approval", () => String, |_unit| flow_runtime::signal::<String>("approval"));
single_op_workflow!(
    AwaitWithTimeout,
    "tests::await_with_timeout",
    u64 => Result<String, flow_runtime::SignalTimeout>,
    |ms| flow_runtime::signal::<String>("approval").timeout(Duration::from_millis(ms))
);
single_op_workflow!(Parent, "tests::parent", PipelineInput => u64, |input| Pipeline(input));
single_op_workflow!(
    Fanout,
    "tests::fanout",
    String => (u64, (Result<u32, String>, ())),
    |label| Join2(
        Count { label: label.clone(), value: 10 },
        Join2(Flaky { label, fail_first: 1 }, flow_runtime::sleep(Duration::from_millis(30)))
    )
);
single_op_workflow!(
    TwoSignals,
    "tests::two_signals",
    () => (u32, u32),
    |_unit| Join2(flow_runtime::signal::<u32>("n"), flow_runtime::signal::<u32>("n"))
);

/// ```ignore
/// #[workflow]
/// async fn nap_then_approval(ms: u64) -> String {
///     flow::sleep(Duration::from_millis(ms)).await;
///     flow::signal::<String>("approval").await
/// }
/// ```
pub struct NapThenApproval(pub u64);

#[derive(Default)]
struct NapThenApprovalFrame {
    slept: PhantomData<()>,
    approval: PhantomData<String>,
}

impl Workflow for NapThenApproval {
    const NAME: &'static str = "tests::nap_then_approval";
    const FINGERPRINT: u64 = 3;
    type Input = u64;
    type Output = String;
    fn into_input(self) -> u64 {
        self.0
    }
    fn from_input(ms: u64) -> Self {
        NapThenApproval(ms)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        let (pc, slot, ctl) = machine.parts();
        let f = frame(slot, NapThenApprovalFrame::default);
        match *pc {
            0 => {
                let ms: u64 = ctl.take_input()?;
                *pc = 1;
                ctl.suspend(
                    &mut f.slept,
                    flow_runtime::sleep(Duration::from_millis(ms)),
                    0,
                )
            }
            1 => {
                ctl.take_output(&f.slept, "sleep")?;
                *pc = 2;
                ctl.suspend(
                    &mut f.approval,
                    flow_runtime::signal::<String>("approval"),
                    1,
                )
            }
            2 => {
                let approval = ctl.take_output(&f.approval, "signal:approval")?;
                ctl.complete(&approval)
            }
            other => Err(ctl.unknown_state(other)),
        }
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
}

/// Panics in its first step.
pub struct Panics;

impl Workflow for Panics {
    const NAME: &'static str = "tests::panics";
    const FINGERPRINT: u64 = 1;
    type Input = ();
    type Output = ();
    fn into_input(self) {}
    fn from_input(_: ()) -> Self {
        Panics
    }
    fn step(_: &mut Machine) -> Result<Transition, StepFault> {
        panic!("the workflow body panicked");
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
}

/// `Pipeline` compiled from a different body: same name, other fingerprint.
pub struct PipelineV2(pub PipelineInput);

impl Workflow for PipelineV2 {
    const NAME: &'static str = "tests::pipeline";
    const FINGERPRINT: u64 = 0x2222;
    type Input = PipelineInput;
    type Output = u64;
    fn into_input(self) -> PipelineInput {
        self.0
    }
    fn from_input(input: PipelineInput) -> Self {
        PipelineV2(input)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        Pipeline::step(machine)
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
}

pub fn pipeline(label: &str, n: u64) -> Pipeline {
    Pipeline(PipelineInput {
        label: label.to_string(),
        n,
    })
}

/// Waits (up to 5 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `Pipeline` whose code now reads slot 0 (`label: String`) as a `u64`: its stored state
/// no longer decodes.
pub struct PipelineBadSlots(pub PipelineInput);

impl Workflow for PipelineBadSlots {
    const NAME: &'static str = "tests::pipeline";
    const FINGERPRINT: u64 = 0x1111;
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
                let _: u64 = ctl.decode_slot(&bytes, "label")?;
            }
        }
        Err(ctl.unknown_state(*pc))
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
}

/// `Pipeline` whose output type changed to `String`.
pub struct PipelineStringOutput(pub PipelineInput);

impl Workflow for PipelineStringOutput {
    const NAME: &'static str = "tests::pipeline";
    const FINGERPRINT: u64 = 0x1111;
    type Input = PipelineInput;
    type Output = String;
    fn into_input(self) -> PipelineInput {
        self.0
    }
    fn from_input(input: PipelineInput) -> Self {
        PipelineStringOutput(input)
    }
    fn step(machine: &mut Machine) -> Result<Transition, StepFault> {
        Pipeline::step(machine)
    }
    fn graph() -> &'static StateGraph {
        &PIPELINE_GRAPH
    }
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

single_op_workflow!(CallGhost, "tests::call_ghost", () => u32, |_unit| Ghost);

// A workflow whose child run ID (`"{run}/0"`) may already be taken.
single_op_workflow!(SpawnsChild, "tests::spawns_child", PipelineInput => u64, |input| Pipeline(input));
