//! # flow — durable workflows written as plain async Rust
//!
//! Mark side-effecting functions `#[task]` and orchestration functions `#[workflow]`.
//! The `#[workflow]` macro compiles the function body into an explicit, serializable
//! state machine (one state per `.await`); the [`Engine`] commits every transition to an
//! embedded redb file, so after `kill -9` or a power cut each run continues from its last
//! committed state and never redoes a finished step.
//!
//! ```
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flow::FlowError> {
//! // `open("orders.redb")` for a file; in memory for this example.
//! let engine = Engine::builder().register::<checkout>().open_in_memory().await?;
//! let run = engine.start("order-1", checkout("4242".into(), 1999)).await?;
//! assert_eq!(run.result().await?, Ok("payment for 1999 on 4242".to_string()));
//! # engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See the README for the supported subset of Rust, the durability contract and how
//! recovery differs from replay engines.

#![warn(missing_docs)]

extern crate self as flow;

/// Compiles an `async fn` into a durable state machine: one state per `.await`.
///
/// The function becomes a type of the same name (register it with
/// [`EngineBuilder::register`]) and a constructor function (its call is what you pass to
/// [`Engine::start`], or `.await` directly to run the body as plain async code, or
/// `.await` inside another workflow to start a child run). Inside, `.await` is allowed on
/// durable operations only: task calls, child workflows, [`sleep`], [`signal`],
/// [`join!`]. Locals that live across an `.await` must be serde types.
///
/// Option: `#[workflow(name = "registered_name")]`. The registered name is what the
/// journal stores: it is the function's name unless `name` pins another, for workflows
/// and tasks alike, so moving the function to another module keeps its runs. Two
/// workflows registered under one name make [`EngineBuilder::open`] fail with
/// [`FlowError::DuplicateName`]; rename one or pin distinct names.
///
/// ```
/// use flow::{task, workflow};
///
/// #[task]
/// async fn double(x: u64) -> u64 { x * 2 }
///
/// #[workflow]
/// async fn doubled_sum(xs: Vec<u64>) -> u64 {
///     let mut total = 0;
///     for x in xs {
///         total += double(x).await;
///     }
///     total
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Awaited directly, a workflow runs as the plain async function it reads as.
/// assert_eq!(doubled_sum(vec![1, 2, 3]).await, 12);
/// // Its state graph, for documentation or a console:
/// let graph = <doubled_sum as flow::Workflow>::graph();
/// assert_eq!(graph.states[0].name, "double");
/// # }
/// ```
pub use flow_macros::workflow;

/// Marks an `async fn` as a task: a journaled, retried unit of side-effecting work.
///
/// Arguments and the result are serde types. Options:
/// `retry(max_attempts = 5, initial = "200ms", backoff = 2.0, max_interval = "1m",
/// jitter = 0.1, non_retryable = predicate)` where `predicate: fn(&E) -> bool` marks
/// errors not worth retrying; `timeout = "30s"` (per attempt); `name = "..."`;
/// `at_most_once` (each attempt's start is made durable before it runs, and an attempt
/// the engine's end interrupted is not run again: its [`TaskFailure::Interrupted`] reaches
/// the workflow; needs a `Result` return type). A task returning `Result<T, E>` needs
/// `E: From<TaskFailure>` (timeouts, panics, interruptions and cancellation reach the
/// workflow as an `Err`). An attempt interrupted by the engine's end (a crash, a kill)
/// counts as a failed attempt (see the README's "Interrupted attempts"). The body reads its
/// [`TaskContext`] (idempotency key, attempt) with [`TaskContext::current`].
///
/// Defaults of a bare `#[task]`: **3 attempts** in all (the first and 2 retries), 100 ms
/// before the first retry, doubling up to 60 s, no jitter (see [`RetryPolicy`]); a
/// start-to-close timeout of **5 minutes** per attempt ([`DEFAULT_TASK_TIMEOUT`]), so a
/// hung call fails and is retried instead of holding its run forever. For comparison:
/// Temporal retries activities without limit by default (1 s, doubling to 100 s) and
/// requires a start-to-close or schedule-to-close timeout; Restate retries without limit
/// by default; DBOS does not retry a step unless asked (then 3 attempts, 1 s, doubling)
/// and sets no step timeout; Step Functions retries only with a `Retry` field (then 3
/// attempts, 1 s, doubling) and its task timeout defaults to 99,999,999 s.
///
/// The registered name is the function's name unless `name` pins another (the rule
/// workflows follow too). Two tasks linked under one name make every engine refuse to
/// open ([`FlowError::DuplicateName`]): the engine would otherwise run the wrong body.
///
/// ```
/// use flow::{task, TaskContext};
///
/// fn is_permanent(e: &String) -> bool { e.starts_with("declined") }
///
/// #[task(retry(max_attempts = 3, initial = "100ms", non_retryable = is_permanent), timeout = "10s")]
/// async fn charge(card: String, cents: u64) -> Result<String, String> {
///     let key = TaskContext::current().map(|c| c.idempotency_key);
///     Ok(format!("charged {cents} on {card} with key {key:?}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Awaited outside a workflow, a task call just runs its body.
/// assert_eq!(charge("4242".into(), 5).await.unwrap(), "charged 5 on 4242 with key None");
/// # }
/// ```
pub use flow_macros::task;
pub use flow_runtime::*;

/// The README's examples, compiled as doctests so they never rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
