//! Testing workflows: everything a test needs to run a workflow without an engine, a file
//! or real waiting.
//!
//! - [`TestEnv`] runs workflows in memory with every durable primitive (tasks with
//!   retries, sleeps, signals, callbacks, joins (also with `max_in_flight`), races,
//!   `first_ok`, maps, batches with completion policies (`flow::all`,
//!   `Map::min_successes`, `fail_fast`), named operations, child workflows,
//!   continue-as-new, cancellation, run timeouts) on a **virtual clock** the test moves
//!   ([`TestEnv::advance`], [`TestEnv::advance_to_next_timer`]; [`TestRun::result`]
//!   jumps from timer to timer). Tasks can be **mocked** ([`TestEnv::mock`]): a fixed
//!   output, outputs in order, a closure, or an attempt that never answers; the mock
//!   counts the calls and keeps their arguments.
//! - [`check_resumes`] checks in one line that a run resumed at any step boundary (its
//!   machine rebuilt from its saved slots, as after a crash) ends exactly like an
//!   uninterrupted one.
//! - [`RecordedRun`] replays a recorded run (captured in a test, or taken from an
//!   engine's history) against the current code and reports the first [`Divergence`].
//! - [`Driver`] steps a machine in-process with real time; the corpus and benchmarks use
//!   it.
//!
//! Files: `env.rs` (the public environment and run handle), `world.rs` (the in-memory
//! engine: turns, branches, maps, cancellation, timers), `run.rs` (one run's state),
//! `attempts.rs` (task attempts and their retry policy), `mocks.rs`, `clock.rs`,
//! `resume.rs`, `recorded.rs`, `driver.rs`, `error.rs`.

mod attempts;
mod clock;
mod driver;
mod env;
mod error;
mod mocks;
mod recorded;
mod resume;
mod run;
mod world;

pub use driver::{DriveError, Driver, Restore, StepRecord};
pub use env::{TestEnv, TestRun};
pub use error::TestError;
pub use mocks::{MockTask, NamedMock};
pub use recorded::{Divergence, RecordedRun, RecordedStep, RecordingError};
pub use resume::{assert_resumes, check_resumes, check_resumes_with, ResumeMismatch};
