//! The compiler behind flow's `#[workflow]` and `#[task]` macros, as an ordinary library
//! so it can be unit-tested; `flow-macros` is a thin proc-macro wrapper around it.
//!
//! A workflow body goes through: [`signature`] and [`check`] (reject what cannot be
//! compiled, with a span and a fix), [`lower`] (structured code → [`cfg`] of blocks),
//! [`emit`] (liveness → the step function), [`workflow`] (the items users see).

pub mod attr;
pub mod cfg;
pub mod check;
pub mod emit;
pub mod lower;
pub mod names;
pub mod rewrite;
pub mod signals;
pub mod signature;
pub mod task;
pub mod workflow;

use proc_macro2::TokenStream;

/// `#[workflow]`: the expansion, or compile errors at the offending spans.
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(attr, item).unwrap_or_else(|e| e.to_compile_error())
}

/// `#[task]`: the expansion, or compile errors at the offending spans.
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr, item).unwrap_or_else(|e| e.to_compile_error())
}
