//! The compiler behind flow's `#[workflow]` and `#[task]` macros, as an ordinary library
//! so it can be unit-tested; `flow-macros` is a thin proc-macro wrapper around it.
//!
//! A workflow body goes through, as serde_derive's and thiserror's do: parse
//! (`signature`, `attr`), check (`check`: reject what cannot be compiled, with a span
//! and a fix), lower (`lower`: structured code → a `cfg` of blocks) and emit (`emit`:
//! liveness → the step function; `workflow`: the items users see). Every phase reports
//! to one error collector (`ctxt`).

mod attr;
mod cfg;
mod check;
mod ctxt;
mod emit;
mod lower;
mod macros;
mod names;
mod order;
mod rewrite;
mod signals;
mod signature;
mod stmt_attrs;
mod task;
mod workflow;

use proc_macro2::TokenStream;

/// `#[workflow]`: the expansion, or compile errors at the offending spans.
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(attr, item.clone()).unwrap_or_else(|e| with_errors(item, e))
}

/// `#[task]`: the expansion, or compile errors at the offending spans.
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr, item.clone()).unwrap_or_else(|e| with_errors(item, e))
}

/// On errors, the item as written is kept next to them (as tokio's macros do), so an IDE
/// still knows the function while the user fixes it.
fn with_errors(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote::quote!(#item #errors)
}
