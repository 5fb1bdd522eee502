//! `#[workflow]` and `#[task]`. The compiler lives in `flow-compiler`; see the `flow`
//! crate for documentation.

use proc_macro::TokenStream;

/// Compiles an `async fn` into a durable, resumable state machine. See `flow::workflow`.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    flow_compiler::workflow(attr.into(), item.into()).into()
}

/// Marks an `async fn` as a task: a journaled, retried unit of work. See `flow::task`.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    flow_compiler::task(attr.into(), item.into()).into()
}
