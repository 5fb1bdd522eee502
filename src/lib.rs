//! # flow — durable workflows written as plain async Rust
//!
//! Mark side-effecting functions `#[task]` and orchestration functions `#[workflow]`.
//! The `#[workflow]` macro compiles the function body into an explicit, serializable
//! state machine (one state per `.await`); the [`Engine`] commits every transition to an
//! embedded redb file, so after `kill -9` or a power cut each run continues from its last
//! committed state and never redoes a finished step.
//!
//! ```no_run
//! use flow::{task, workflow, Engine};
//!
//! #[task(retry(max_attempts = 5, initial = "200ms", backoff = 2.0), timeout = "30s")]
//! async fn charge(card: String, cents: u64) -> Result<String, String> {
//!     Ok(format!("payment for {cents} on {card}"))
//! }
//!
//! #[workflow]
//! async fn checkout(card: String, cents: u64) -> Result<String, String> {
//!     let payment = charge(card, cents).await?;
//!     Ok(payment)
//! }
//!
//! # async fn run() -> Result<(), flow::FlowError> {
//! let engine = Engine::builder().register::<checkout>().open("orders.redb").await?;
//! let run = engine.start("order-1", checkout("4242".into(), 1999)).await?;
//! println!("{:?}", run.result().await?);
//! # Ok(()) }
//! ```
//!
//! See the README for the supported subset of Rust, the durability contract and how
//! recovery differs from replay engines.

#![warn(missing_docs)]

extern crate self as flow;

pub use flow_macros::{task, workflow};
pub use flow_runtime::*;

/// The README's examples, compiled as doctests so they never rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
