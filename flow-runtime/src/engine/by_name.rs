//! Starting runs by workflow name, with an input encoded without the workflow's Rust type:
//! what a program that does not link the workflows' types (an HTTP server, a CLI) needs.
//!
//! The caller encodes the input from any serde value of the same shape (e.g. a JSON value
//! transcoded with [`codec::encode`]); the registry's hook decodes it as the workflow's
//! input type and starts the run through [`Engine::start`], so the stored input is the
//! typed encoding and a start by name and a typed start with the same input are the same
//! start (idempotency compares those bytes).

use crate::codec::{self, CodecError};
use crate::engine::registry::WorkflowEntry;
use crate::engine::Engine;
use crate::error::FlowError;
use crate::history::RunSummary;
use crate::signal_types::SignalSites;
use crate::store::Journal;
use crate::task::BoxFuture;
use crate::workflow::Workflow;

/// A workflow registered with an engine, as [`Engine::workflows`] lists it.
#[derive(Debug, Clone, Copy)]
pub struct RegisteredWorkflow {
    /// Its registered name.
    pub name: &'static str,
    /// Its version (`#[workflow(version = N)]`, 1 when not given).
    pub version: u32,
    /// Its input type (`std::any::type_name`): a struct for one argument, a tuple for
    /// several.
    pub input_type: &'static str,
    /// The signals its body waits for.
    pub signals: &'static SignalSites,
    /// Its states (one per await site) and transitions, as compiled.
    pub graph: &'static crate::workflow::StateGraph,
}

/// One run with its encoded input and output, as [`Engine::describe`] reads it: what a
/// program without the workflow's Rust type can show (render the values with
/// [`codec::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDescription {
    /// The run's ID, workflow, status and times.
    pub summary: RunSummary,
    /// The input of the run's current generation (its input until a continue-as-new).
    pub input: Option<Vec<u8>>,
    /// The workflow's encoded output, once the run completed.
    pub output: Option<Vec<u8>>,
}

impl RunDescription {
    /// The run's output as workflow `W`'s output type: `Ok(None)` while the run is
    /// running or waiting, `Ok(Some(output))` once it completed, and the errors
    /// [`RunHandle::result`](crate::RunHandle::result) gives for a run that failed, was
    /// cancelled, faulted or is blocked. [`FlowError::WrongWorkflow`] if the run is not
    /// a run of `W`.
    ///
    /// ```no_run
    /// # async fn demo<W: flow_runtime::Workflow>(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// let description = engine.wait("order-42").await?;
    /// let output: Option<W::Output> = description.into_result::<W>()?;
    /// # Ok(()) }
    /// ```
    pub fn into_result<W: Workflow>(self) -> Result<Option<W::Output>, FlowError> {
        if self.summary.workflow != W::NAME {
            return Err(FlowError::WrongWorkflow {
                run_id: self.summary.run_id,
                stored: self.summary.workflow,
                requested: W::NAME.to_string(),
            });
        }
        super::handle::judge::<W>(&self.summary.run_id, self.summary.status, self.output)
    }
}

/// The type of [`start_encoded`], kept per workflow in the registry.
pub(crate) type StartEncoded = fn(Engine, String, Vec<u8>) -> BoxFuture<Result<(), FlowError>>;

/// The registry's hook behind [`Engine::start_encoded`]: decodes `input` as `W::Input`
/// and starts the run.
pub(crate) fn start_encoded<W: Workflow>(
    engine: Engine,
    run_id: String,
    input: Vec<u8>,
) -> BoxFuture<Result<(), FlowError>> {
    Box::pin(async move {
        let typed: W::Input = codec::decode(&input, String::new).map_err(|error| {
            let message = match error {
                CodecError::Decode { message, .. } => message,
                other => other.to_string(),
            };
            FlowError::InputTypeMismatch {
                workflow: W::NAME.to_string(),
                expected: std::any::type_name::<W::Input>().to_string(),
                message,
            }
        })?;
        engine.start(run_id, W::from_input(typed)).await.map(drop)
    })
}

impl Engine {
    /// Starts a run of the workflow registered as `workflow`, with `input` encoded by
    /// [`codec::encode`] from any value of the input type's shape; returns once the start
    /// is durable. Otherwise like [`start`](Self::start), idempotency included: the input
    /// is decoded as the workflow's input type and stored as a typed start stores it.
    ///
    /// Errors: [`FlowError::UnknownWorkflow`]; [`FlowError::InputTypeMismatch`] when
    /// `input` does not decode as the input type (nothing is written); those of `start`.
    ///
    /// ```no_run
    /// # async fn demo(engine: flow_runtime::Engine) -> Result<(), flow_runtime::FlowError> {
    /// use std::collections::BTreeMap;
    /// // `place_order(order: Order)` where `Order { card: String, total_cents: u64 }`:
    /// let mut order = BTreeMap::new();
    /// order.insert("card", "4242");
    /// let input = flow_runtime::codec::encode(&order, String::new)?;
    /// engine.start_encoded("order-42", "place_order", &input).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_encoded(
        &self,
        run_id: &str,
        workflow: &str,
        input: &[u8],
    ) -> Result<(), FlowError> {
        let entry: WorkflowEntry =
            *self
                .core()
                .registry
                .get(workflow)
                .ok_or_else(|| FlowError::UnknownWorkflow {
                    workflow: workflow.to_string(),
                })?;
        (entry.start_encoded)(self.clone(), run_id.to_string(), input.to_vec()).await
    }

    /// Run `run_id` with its encoded input and output, read without the workflow's type.
    ///
    /// Errors: [`FlowError::UnknownRun`]; a storage error.
    pub async fn describe(&self, run_id: &str) -> Result<RunDescription, FlowError> {
        let store = &self.core().store;
        let (header, output) =
            store
                .header_and_output(run_id)?
                .ok_or_else(|| FlowError::UnknownRun {
                    run_id: run_id.to_string(),
                })?;
        let input = store.generation_input(run_id)?;
        let summary = RunSummary {
            status: self.status_of(run_id, &header, output.as_deref()),
            run_id: run_id.to_string(),
            workflow: header.workflow,
            version: header.version,
            created_at_ms: header.created_at_ms,
            updated_at_ms: header.updated_at_ms,
            steps: header.steps,
        };
        Ok(RunDescription {
            summary,
            input,
            output,
        })
    }

    /// Waits until run `run_id` ends, without its workflow's type, and returns its
    /// [`describe`](Self::describe): as [`RunHandle::result`](crate::RunHandle::result)
    /// waits, it returns at once for a run that ended before (even before a restart),
    /// and also returns for a run that faulted or that this engine cannot drive (its
    /// status says [`RunStatus::Blocked`](crate::RunStatus::Blocked)), where waiting
    /// would be forever. [`RunDescription::into_result`] turns it into the typed result.
    ///
    /// Errors: [`FlowError::UnknownRun`]; the engine stopped; a storage error.
    pub async fn wait(&self, run_id: &str) -> Result<RunDescription, FlowError> {
        super::handle::wait_final(self, run_id).await?;
        self.describe(run_id).await
    }

    /// The workflows registered with this engine, by name.
    pub fn workflows(&self) -> Vec<RegisteredWorkflow> {
        let mut all: Vec<RegisteredWorkflow> = self
            .core()
            .registry
            .entries()
            .map(|entry| RegisteredWorkflow {
                name: entry.name,
                version: entry.version,
                input_type: entry.input_type,
                signals: entry.signals,
                graph: entry.graph,
            })
            .collect();
        all.sort_by_key(|w| (w.name, w.version));
        all
    }
}
