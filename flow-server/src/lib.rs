//! An HTTP/JSON API over a flow [`Engine`]: any program, in any language, can start runs
//! of the registered workflows, follow them, signal and cancel them, complete the
//! callback tokens they hand out, and serve the queues of remote tasks as a worker
//! (`/v1/queues/...`: poll, heartbeat, complete, fail; see the `flow-worker` crate for a
//! worker in Rust).
//!
//! ```no_run
//! # async fn demo(engine: flow_runtime::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use flow_server::{Server, ServerOptions};
//!
//! let options = ServerOptions::default(); // 127.0.0.1:8080, no token: loopback only
//! let server = Server::bind(engine, options).await?;
//! println!("serving on http://{}", server.local_addr());
//! server.run().await?;
//! # Ok(()) }
//! ```
//!
//! Endpoints live under `/v1`; the OpenAPI document at `/v1/openapi.json` lists them
//! ([`openapi::document`]). `GET /metrics` serves the engine's metrics for Prometheus
//! ([`metrics`]), guarded like the rest. Values cross the wire as JSON: a workflow's input is decoded
//! as its input type (a struct as an object with its fields, several arguments as an
//! array), a signal's payload is checked against the type the workflow awaits, and
//! stored values are rendered with [`codec::to_json`](flow_runtime::codec::to_json).
//! Every error is a JSON body `{"code": ..., "message": ...}` whose message says what to
//! do.
//!
//! Security: a server bound to anything but loopback refuses to start without an API
//! token (sent as `Authorization: Bearer TOKEN`), unless told it may run open
//! ([`ServerOptions::allow_open`]). Without a token, requests must name a loopback host
//! (against DNS rebinding). Requests with a body must say `Content-Type:
//! application/json`, so a web page cannot post to the server without a CORS preflight,
//! which it does not grant. Bodies are limited to the engine's payload limit
//! ([`MAX_PAYLOAD_BYTES`](flow_runtime::MAX_PAYLOAD_BYTES)). The callback endpoints need
//! no API token: the callback token in their path (128 random bits, single use) is the
//! credential, so that it can travel in an email link.
//!
//! This crate depends on `serde_json`, and that is why it is a crate of its own: in the
//! `flow` crate itself, `serde_json`'s `PartialEq<Value>` impls for the integer types
//! would be in scope of every user's crate graph and break type inference in their code
//! (`assert_eq!(n, iter.sum())`). Programs that serve HTTP opt in by depending on
//! `flow-server`.

#![warn(missing_docs)]

mod auth;
mod console;
mod error;
mod extract;
pub mod metrics;
pub mod openapi;
mod options;
mod routes;
mod server;
pub mod views;

pub use error::{ApiError, MAX_MESSAGE_BYTES};
pub use flow_runtime::Engine;
pub use options::{generate_token, OptionsError, ServerOptions, MIN_TOKEN_BYTES};
pub use server::{router, Server};
