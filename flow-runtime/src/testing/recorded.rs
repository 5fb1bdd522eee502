//! [`RecordedRun`]: a recorded run replayed against the current code, reporting the
//! first [`Divergence`]; saved to and read from a file (`Engine::export` writes one).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::driver::{Driver, Restore};
use crate::codec;
use crate::engine::step::peel;
use crate::machine::{Machine, StepFault, Transition};
use crate::op::OpRequest;
use crate::workflow::Workflow;

use super::driver::DriveError;

/// One recorded step of a run: what was awaited and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep {
    /// The operation's label (`charge`, `sleep`, `signal:approval`, `join(2)`, ...).
    pub name: String,
    /// The operation with its encoded arguments, when the recording has them.
    pub request: Option<OpRequest>,
    /// The encoded output the workflow received.
    pub output: Vec<u8>,
}

/// A run as recorded: its input, its steps and, if it finished, its output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecordedRun {
    /// The workflow's registered name (empty when the recording does not say).
    pub workflow: String,
    /// The encoded input.
    pub input: Vec<u8>,
    /// Completed steps in order.
    pub steps: Vec<RecordedStep>,
    /// The encoded output, if the run completed.
    pub output: Option<Vec<u8>>,
}

/// Where a replay of a recorded run against the current code first differs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    /// The code awaits a different operation at this step.
    #[error(
        "step {index}: the recording awaited `{recorded}`, the current code awaits `{current}`"
    )]
    DifferentStep {
        /// 0-based step index.
        index: usize,
        /// What the recording awaited.
        recorded: String,
        /// What the current code awaits.
        current: String,
    },
    /// Same operation, different arguments.
    #[error("step {index} (`{name}`): called with different arguments than recorded")]
    DifferentArguments {
        /// 0-based step index.
        index: usize,
        /// The operation.
        name: String,
        /// Recorded request.
        recorded: Box<OpRequest>,
        /// Current request.
        current: Box<OpRequest>,
    },
    /// The current code awaits more steps than were recorded before the run ended.
    #[error("step {index}: the current code awaits `{current}` but the recorded run had ended")]
    ExtraStep {
        /// 0-based step index.
        index: usize,
        /// What the current code awaits.
        current: String,
    },
    /// The current code returns where the recording had more steps.
    #[error(
        "the current code returns after {index} steps; the recording continued with `{recorded}`"
    )]
    EndedEarly {
        /// Steps performed.
        index: usize,
        /// The recorded next step.
        recorded: String,
    },
    /// The run's result differs from the recorded one.
    #[error("the current code returns a different result than the recorded run")]
    DifferentOutcome,
    /// The code cannot even take the recorded values (input or outputs no longer decode).
    #[error("the current code cannot resume the recording: {0}")]
    Incompatible(String),
}

impl RecordedRun {
    /// Records `call` by running it with a [`Driver`].
    pub async fn capture<W: Workflow>(call: W) -> Result<RecordedRun, DriveError> {
        let input =
            codec::encode(&call.into_input(), || "input".into()).map_err(StepFault::from)?;
        let mut driver = Driver::new();
        let output = driver
            .run(
                W::from_input(codec::decode(&input, || "input".into()).map_err(StepFault::from)?),
                Restore::Never,
            )
            .await?;
        Ok(RecordedRun {
            workflow: W::NAME.to_string(),
            input,
            steps: driver
                .steps
                .into_iter()
                .map(|s| RecordedStep {
                    name: s.request.label(),
                    request: Some(s.request),
                    output: s.output,
                })
                .collect(),
            output: Some(codec::encode(&output, || "output".into()).map_err(StepFault::from)?),
        })
    }

    /// Extracts a run from its engine history (`Engine::history`), e.g. one exported
    /// from a production file.
    pub fn from_history(events: &[crate::HistoryEvent]) -> RecordedRun {
        use crate::EventKind;
        let mut run = RecordedRun::default();
        let mut scheduled: BTreeMap<u64, (String, Option<OpRequest>)> = BTreeMap::new();
        for e in events {
            match &e.kind {
                EventKind::RunStarted {
                    input, workflow, ..
                } => {
                    run.workflow = workflow.clone();
                    run.input = input.clone();
                }
                // The history holds the current generation only: it starts here.
                EventKind::ContinuedAsNew { input, .. } => run.input = input.clone(),
                EventKind::StepScheduled {
                    step,
                    name,
                    request,
                    ..
                } => {
                    scheduled.insert(*step, (name.clone(), Some(request.clone())));
                }
                EventKind::StepCompleted { step, output } => {
                    let (name, request) = scheduled.remove(step).unwrap_or_default();
                    run.steps.push(RecordedStep {
                        name,
                        request,
                        output: output.clone(),
                    });
                }
                EventKind::RunCompleted { output } => run.output = Some(output.clone()),
                _ => {}
            }
        }
        run
    }

    /// Replays the recording against the current code of `W`: feeds it the recorded
    /// input and step outputs and reports the first divergence, if any. Code between
    /// steps runs for real (it may differ from the recording's; only what it awaits and
    /// returns is compared).
    pub fn replay<W: Workflow>(&self) -> Result<(), Divergence> {
        let mut machine = Machine::start(W::NAME, self.input.clone());
        let mut index = 0;
        loop {
            let transition =
                W::step(&mut machine).map_err(|e| Divergence::Incompatible(e.to_string()))?;
            machine.take_writes();
            match transition {
                Transition::Complete { output } => {
                    if let Some(next) = self.steps.get(index) {
                        return Err(Divergence::EndedEarly {
                            index,
                            recorded: next.name.clone(),
                        });
                    }
                    return match &self.output {
                        Some(recorded) if *recorded != output => Err(Divergence::DifferentOutcome),
                        _ => Ok(()),
                    };
                }
                Transition::Suspend { request, .. } => {
                    let Some(step) = self.steps.get(index) else {
                        if self.output.is_none() {
                            // The recording stopped while this step was in flight.
                            return Ok(());
                        }
                        return Err(Divergence::ExtraStep {
                            index,
                            current: request.label(),
                        });
                    };
                    if step.name != request.label() {
                        return Err(Divergence::DifferentStep {
                            index,
                            recorded: step.name.clone(),
                            current: request.label(),
                        });
                    }
                    if let Some(recorded) = &step.request {
                        if !same_call(recorded, &request) {
                            return Err(Divergence::DifferentArguments {
                                index,
                                name: step.name.clone(),
                                recorded: Box::new(recorded.clone()),
                                current: Box::new(request),
                            });
                        }
                    }
                    machine.set_resume(step.output.clone());
                    index += 1;
                }
            }
        }
    }
}

/// Same operation and arguments. A sleep's deadline is computed from the clock, so only
/// its kind is compared. A map's or batch's items are compared one by one, each by its
/// outermost name (the journal keeps only that one) and its operation; a map recorded
/// without its items (by a flow version that deleted them when the map ended) is
/// compared by its count (in its label) and its limits.
fn same_call(recorded: &OpRequest, current: &OpRequest) -> bool {
    let all = |x: &[OpRequest], y: &[OpRequest]| {
        x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_call(a, b))
    };
    let same_items = |x: &[OpRequest], y: &[OpRequest]| {
        x.is_empty()
            || x.len() == y.len()
                && x.iter().zip(y).all(|(a, b)| {
                    let ((a, name_a), (b, name_b)) = (peel(a), peel(b));
                    name_a == name_b && same_call(a, b)
                })
    };
    match (recorded, current) {
        (OpRequest::Sleep { .. }, OpRequest::Sleep { .. }) => true,
        (
            OpRequest::Task {
                name: n1, args: a1, ..
            },
            OpRequest::Task {
                name: n2, args: a2, ..
            },
        ) => n1 == n2 && a1 == a2,
        (OpRequest::Named { name: n1, op: a }, OpRequest::Named { name: n2, op: b }) => {
            n1 == n2 && same_call(a, b)
        }
        (OpRequest::All(x), OpRequest::All(y))
        | (OpRequest::Race(x), OpRequest::Race(y))
        | (OpRequest::FirstOk(x), OpRequest::FirstOk(y)) => all(x, y),
        (
            OpRequest::Map {
                items: x,
                max_in_flight: m1,
                tolerance: t1,
            },
            OpRequest::Map {
                items: y,
                max_in_flight: m2,
                tolerance: t2,
            },
        ) => m1 == m2 && t1 == t2 && same_items(x, y),
        (
            OpRequest::Batch {
                items: x,
                max_in_flight: m1,
                policy: p1,
            },
            OpRequest::Batch {
                items: y,
                max_in_flight: m2,
                policy: p2,
            },
        ) => m1 == m2 && p1 == p2 && same_items(x, y),
        (
            OpRequest::Callback {
                task: t1,
                timeout: o1,
                heartbeat: h1,
                ..
            },
            OpRequest::Callback {
                task: t2,
                timeout: o2,
                heartbeat: h2,
                ..
            },
        ) => same_call(t1, t2) && o1 == o2 && h1 == h2,
        _ => recorded == current,
    }
}

/// The first bytes of a recording file.
const MAGIC: &[u8] = b"flow recorded run\n";
/// The version of the recording format this code writes and reads.
const FORMAT_VERSION: u8 = 1;

/// Why a recording file could not be written or read. Reading one changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    /// The file could not be written or read.
    #[error("recording `{path}`: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// The file is not a recording (it lacks the header `Engine::export` writes).
    #[error("`{path}` is not a flow recording; write one with Engine::export")]
    NotARecording {
        /// The file.
        path: String,
    },
    /// The recording was written by a newer format.
    #[error(
        "recording `{path}` has format version {version}; this flow reads version \
         {FORMAT_VERSION}: replay it with the flow that exported it, or a newer one"
    )]
    UnsupportedVersion {
        /// The file.
        path: String,
        /// The version it holds.
        version: u8,
    },
    /// The recording is truncated or damaged.
    #[error("recording `{path}` is damaged: {message}; export the run again")]
    Damaged {
        /// The file.
        path: String,
        /// What did not decode.
        message: String,
    },
}

impl RecordedRun {
    /// The recording as bytes: a header, the format version, then the run (postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_VERSION);
        // A recording holds only plain data (strings, bytes, requests): it always encodes.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Reads a recording from `bytes` (as [`to_bytes`](Self::to_bytes) made them); `path`
    /// names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<RecordedRun, RecordingError> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(RecordingError::NotARecording {
                path: path.to_string(),
            });
        };
        match rest.split_first() {
            Some((&FORMAT_VERSION, body)) => {
                postcard::from_bytes(body).map_err(|e| RecordingError::Damaged {
                    path: path.to_string(),
                    message: e.to_string(),
                })
            }
            Some((&version, _)) => Err(RecordingError::UnsupportedVersion {
                path: path.to_string(),
                version,
            }),
            None => Err(RecordingError::Damaged {
                path: path.to_string(),
                message: "it ends after its header".into(),
            }),
        }
    }

    /// Writes the recording to the file `path` (replacing it).
    pub fn to_file(&self, path: impl AsRef<Path>) -> Result<(), RecordingError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|e| RecordingError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads a recording written by [`Engine::export`](crate::Engine::export) or
    /// [`to_file`](Self::to_file), to [`replay`](Self::replay) it against the current
    /// code.
    pub fn from_file(path: impl AsRef<Path>) -> Result<RecordedRun, RecordingError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| RecordingError::Io {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes, &shown)
    }
}
