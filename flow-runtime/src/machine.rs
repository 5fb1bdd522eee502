//! The in-memory side of one run's state machine, and the calls `#[workflow]`'s generated
//! step function makes on it.
//!
//! A compiled workflow is a function `step(&mut Machine) -> Result<Transition, StepFault>`
//! that runs from the machine's program counter until the body awaits a durable
//! operation ([`Transition::Suspend`]) or returns ([`Transition::Complete`]). Its locals
//! live in a frame struct private to that function; the machine keeps the frame between
//! steps as `Box<dyn Any>` and, after a restart, hands the step function the slot bytes
//! read from the journal so it can rebuild the frame.

use std::any::Any;
use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{self, CodecError};
use crate::op::{DurableOp, OpRequest};

/// A value a `#[workflow]` keeps across a step: it is journaled, so it must be serde.
///
/// Implemented for every `Serialize + DeserializeOwned` type; it exists so that a local
/// that is not gets an error that says why it must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be kept across a step of a #[workflow]: it is not Serialize + DeserializeOwned",
    label = "this local is still used after a later `.await`, so it is journaled",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or finish using it before the step (end its scope), or move it into a #[task]; a borrowed value such as `&'static str` is kept as an owned one (`String`: `.to_string()`)"
)]
pub trait Journaled: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Journaled for T {}

/// What a step of a run produced.
#[derive(Debug)]
pub enum Transition {
    /// The body awaits a durable operation; resume at `resume_pc` with its output.
    Suspend {
        /// The operation to journal and perform.
        request: OpRequest,
        /// Index of the state (call site) in the workflow's [`StateGraph`](crate::StateGraph).
        state: u32,
    },
    /// The body returned; `output` is the encoded return value.
    Complete {
        /// The encoded workflow output (`codec::encode`).
        output: Vec<u8>,
    },
}

/// Why a step could not run. The run stays in the file; nothing is deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFault {
    /// A stored value (input, local, step output) does not decode, or an encode failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The machine was stepped in a state the compiled code does not have.
    #[error("workflow `{workflow}` has no state {pc}: the stored state comes from different code")]
    UnknownState {
        /// Workflow name.
        workflow: String,
        /// The stored program counter.
        pc: u32,
    },
    /// A local the code needs was not in the stored state.
    #[error("workflow `{workflow}`: local {local} is missing from the stored state")]
    MissingLocal {
        /// Workflow name.
        workflow: String,
        /// The local's name in the source.
        local: String,
    },
    /// The step needed an input or an operation output it was not given.
    #[error("workflow `{workflow}` was resumed without {what}")]
    MissingValue {
        /// Workflow name.
        workflow: String,
        /// "its input" or "the output of the awaited step".
        what: &'static str,
    },
}

/// One run's live state machine.
pub struct Machine {
    pc: u32,
    frame: Option<Box<dyn Any + Send>>,
    ctl: MachineCtl,
}

/// Everything of a [`Machine`] but its program counter and frame, borrowed separately by
/// the step function.
#[doc(hidden)]
pub struct MachineCtl {
    workflow: &'static str,
    input: Option<Vec<u8>>,
    resume: Option<Vec<u8>>,
    persisted: Vec<(u32, Vec<u8>)>,
    /// The bytes the journal holds for each slot, so a suspension writes exactly the
    /// slots whose value changed, whether through a `mut` binding or through `&self`
    /// (`Cell`, `RefCell`, atomics, `Mutex`).
    journaled: Vec<Option<Vec<u8>>>,
    /// Write-once slots (a `for` loop's items) bound since they were last written.
    dirty: Vec<bool>,
    writes: Vec<(u32, Vec<u8>)>,
}

impl Machine {
    /// A machine for a new run, at its first state, holding its encoded input.
    pub fn start(workflow: &'static str, input: Vec<u8>) -> Self {
        Machine {
            pc: 0,
            frame: None,
            ctl: MachineCtl {
                workflow,
                input: Some(input),
                resume: None,
                persisted: Vec::new(),
                journaled: Vec::new(),
                dirty: Vec::new(),
                writes: Vec::new(),
            },
        }
    }

    /// A machine rebuilt from the journal: its program counter and stored local slots.
    pub fn restore(workflow: &'static str, pc: u32, slots: Vec<(u32, Vec<u8>)>) -> Self {
        Machine {
            pc,
            frame: None,
            ctl: MachineCtl {
                workflow,
                input: None,
                resume: None,
                journaled: journaled_from(&slots),
                persisted: slots,
                dirty: Vec::new(),
                writes: Vec::new(),
            },
        }
    }

    /// The program counter: the block the next step starts at.
    pub fn pc(&self) -> u32 {
        self.pc
    }

    /// Gives the next step the encoded output of the operation the run awaits.
    pub fn set_resume(&mut self, output: Vec<u8>) {
        self.ctl.resume = Some(output);
    }

    /// The slots the last step changed, encoded; they belong in the same transaction as
    /// the transition.
    pub fn take_writes(&mut self) -> Vec<(u32, Vec<u8>)> {
        std::mem::take(&mut self.ctl.writes)
    }

    /// Drops the in-memory frame, e.g. after a step failed half-way; the next step
    /// rebuilds it from `slots`.
    pub fn reset(&mut self, pc: u32, slots: Vec<(u32, Vec<u8>)>) {
        self.pc = pc;
        self.frame = None;
        self.ctl.journaled = journaled_from(&slots);
        self.ctl.persisted = slots;
        self.ctl.dirty.clear();
        self.ctl.writes.clear();
        self.ctl.resume = None;
    }

    #[doc(hidden)]
    pub fn parts(&mut self) -> (&mut u32, &mut Option<Box<dyn Any + Send>>, &mut MachineCtl) {
        (&mut self.pc, &mut self.frame, &mut self.ctl)
    }
}

/// What the journal holds, indexed by slot.
fn journaled_from(slots: &[(u32, Vec<u8>)]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for (index, bytes) in slots {
        let i = *index as usize;
        if out.len() <= i {
            out.resize(i + 1, None);
        }
        out[i] = Some(bytes.clone());
    }
    out
}

/// The frame in `slot`, created by `init` on the first step (or after a restart).
#[doc(hidden)]
pub fn frame<F: Any + Send>(
    slot: &mut Option<Box<dyn Any + Send>>,
    init: impl FnOnce() -> F,
) -> &mut F {
    let boxed = slot.get_or_insert_with(|| Box::new(init()));
    boxed
        .downcast_mut::<F>()
        .expect("a run's frame belongs to the workflow that created it")
}

#[doc(hidden)]
impl MachineCtl {
    /// Stored slots waiting to be decoded into a fresh frame.
    pub fn take_persisted(&mut self) -> Vec<(u32, Vec<u8>)> {
        std::mem::take(&mut self.persisted)
    }

    /// Decodes a stored local.
    pub fn decode_slot<T: Journaled>(&self, bytes: &[u8], local: &str) -> Result<T, StepFault> {
        let workflow = self.workflow;
        Ok(codec::decode(bytes, || {
            format!("local {local} of workflow `{workflow}`")
        })?)
    }

    /// Takes a local out of its slot.
    pub fn take_slot<T>(&self, slot: &mut Option<T>, local: &str) -> Result<T, StepFault> {
        slot.take().ok_or_else(|| StepFault::MissingLocal {
            workflow: self.workflow.to_string(),
            local: local.to_string(),
        })
    }

    /// Records that write-once slot `index` was bound since it was last written.
    pub fn mark_dirty(&mut self, index: u32) {
        let i = index as usize;
        if self.dirty.len() <= i {
            self.dirty.resize(i + 1, false);
        }
        self.dirty[i] = true;
    }

    /// Encodes slot `index` for the journal if its bytes differ from what the journal
    /// holds. Deciding by the value, not by the binding, keeps changes made through
    /// `&self` (interior mutability) across a restart.
    pub fn save_slot<T: Journaled>(
        &mut self,
        index: u32,
        value: &Option<T>,
        local: &str,
    ) -> Result<(), StepFault> {
        let Some(value) = value else { return Ok(()) };
        let workflow = self.workflow;
        let bytes = codec::encode(value, || format!("local {local} of workflow `{workflow}`"))?;
        let i = index as usize;
        if self.journaled.len() <= i {
            self.journaled.resize(i + 1, None);
        }
        if self.journaled[i].as_deref() != Some(bytes.as_slice()) {
            self.journaled[i] = Some(bytes.clone());
            self.writes.push((index, bytes));
        }
        Ok(())
    }

    /// Encodes write-once slot `index` (a `for` loop's items, which only the loop's
    /// position advances through) if it was bound since it was last written.
    pub fn save_slot_once<T: Journaled>(
        &mut self,
        index: u32,
        value: &Option<T>,
        local: &str,
    ) -> Result<(), StepFault> {
        let i = index as usize;
        if !self.dirty.get(i).copied().unwrap_or(false) {
            return Ok(());
        }
        self.dirty[i] = false;
        if let Some(value) = value {
            let workflow = self.workflow;
            let bytes = codec::encode(value, || format!("local {local} of workflow `{workflow}`"))?;
            self.writes.push((index, bytes));
        }
        Ok(())
    }

    /// Decodes the run's input.
    pub fn take_input<T: DeserializeOwned>(&mut self) -> Result<T, StepFault> {
        let workflow = self.workflow;
        let bytes = self.input.take().ok_or(StepFault::MissingValue {
            workflow: workflow.to_string(),
            what: "its input",
        })?;
        Ok(codec::decode(&bytes, || {
            format!("input of workflow `{workflow}`")
        })?)
    }

    /// Decodes the output of the operation the run awaited; `PhantomData` carries its type
    /// from the suspension that issued it.
    pub fn take_output<T: DeserializeOwned>(
        &mut self,
        _issued: &PhantomData<T>,
        label: &str,
    ) -> Result<T, StepFault> {
        let workflow = self.workflow;
        let bytes = self.resume.take().ok_or(StepFault::MissingValue {
            workflow: workflow.to_string(),
            what: "the output of the awaited step",
        })?;
        Ok(codec::decode(&bytes, || {
            format!("output of step `{label}` in workflow `{workflow}`")
        })?)
    }

    /// Turns an awaited operation into a suspension; records its output type in `issued`.
    pub fn suspend<O: DurableOp>(
        &mut self,
        _issued: &mut PhantomData<O::Output>,
        op: O,
        state: u32,
    ) -> Result<Transition, StepFault> {
        Ok(Transition::Suspend {
            request: op.into_request()?,
            state,
        })
    }

    /// Ends the run with `output`.
    pub fn complete<T: Serialize>(&mut self, output: &T) -> Result<Transition, StepFault> {
        let workflow = self.workflow;
        let output = codec::encode(output, || format!("output of workflow `{workflow}`"))?;
        Ok(Transition::Complete { output })
    }

    /// The fault for a program counter the code does not have.
    pub fn unknown_state(&self, pc: u32) -> StepFault {
        StepFault::UnknownState {
            workflow: self.workflow.to_string(),
            pc,
        }
    }
}
