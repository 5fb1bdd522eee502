//! The engine's own tests, on workflows written with the macros (`workflows.rs`):
//! starting runs, results, recovery after a halt, retries, timeouts and panics
//! (`basics.rs`); durable sleep, signals, child runs, joins and cancellation
//! (`durable.rs`); bad input refused with a clear error (`errors.rs`); a journal whose
//! creation was interrupted (`interrupted_creation.rs`); `Engine::metrics`
//! (`metrics.rs`); memory with many sleeping runs
//! (`scale.rs`, opt-in).

#[path = "../support/mod.rs"]
mod support;
mod workflows;

mod basics;
mod durable;
mod errors;
mod interrupted_creation;
mod metrics;
mod scale;
