//! `#[workflow]`: parse → check → lower → expand.
//!
//! ```text
//! #[workflow]
//! async fn place_order(order: Order) -> Result<Receipt, OrderError> { BODY }
//! ```
//! expands to (outline; `tests/expand/*.expanded.rs` show whole expansions):
//! ```text
//! struct place_order { __input: Order }
//! fn place_order(order: Order) -> place_order
//! impl IntoFuture for place_order     // runs BODY as plain async code
//! impl flow::Workflow for place_order { NAME, [VERSION,] FINGERPRINT, Input, Output,
//!                                        step() = the compiled state machine, graph() }
//! impl flow::DurableOp for place_order // awaited in another workflow: a child run
//! ```

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ItemFn;

use crate::attr;
use crate::ctxt::Ctxt;
use crate::emit;
use crate::lower::Lowerer;
use crate::signature::{self, fingerprint};
use crate::stmt_attrs;

/// Expands `#[workflow(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> Result<TokenStream, syn::Error> {
    let cx = Ctxt::new();
    let expanded = expand_checked(&cx, attr, item);
    cx.check()?;
    Ok(expanded.unwrap_or_default())
}

/// The expansion, or `None` once an error is reported to `cx`. Phases after a failed one
/// do not run: their errors would only echo the first.
fn expand_checked(cx: &Ctxt, attr: TokenStream, item: TokenStream) -> Option<TokenStream> {
    let opts = attr::workflow_options(attr, cx);
    let f: ItemFn = syn::parse2(item).map_err(|e| cx.syn_error(e)).ok()?;
    let sig = signature::check(&f, "workflow", cx);
    crate::check::check_body(&f.block, cx);
    crate::macros::check_macros(&f.block, cx);
    if cx.has_errors() {
        return None;
    }

    let name = &f.sig.ident;
    let vis = &f.vis;
    let attrs = &f.attrs;
    let output = &sig.output;
    let idents: Vec<_> = sig.args.iter().map(|a| &a.ident).collect();
    let tys: Vec<_> = sig.args.iter().map(|a| &a.ty).collect();
    let pats: Vec<_> = sig.args.iter().map(|a| &a.pat).collect();
    let (input_ty, input_pat, input_value) = match sig.args.len() {
        1 => (
            tys[0].to_token_stream(),
            pats[0].to_token_stream(),
            idents[0].to_token_stream(),
        ),
        _ => (
            quote!((#(#tys,)*)),
            quote!((#(#pats,)*)),
            quote!((#(#idents,)*)),
        ),
    };
    let unpack = match sig.args.len() {
        1 => quote!(let #(#idents)* = self.__input;),
        _ => quote!(let (#(#idents,)*) = self.__input;),
    };
    let reg_name = opts.name.clone().unwrap_or_else(|| name.to_string());
    // Without `version = N` the trait's default (1) holds.
    let version = opts.version.map(|v| quote!(const VERSION: u32 = #v;));

    // The state machine.
    let input_pat = syn::parse::Parser::parse2(syn::Pat::parse_single, input_pat)
        .map_err(|e| cx.syn_error(e))
        .ok()?;
    let mut lowerer = Lowerer::new(output, cx);
    lowerer.bind_input(&input_pat, &input_ty);
    // An argument bound by a plain name has its type as written.
    for arg in &sig.args {
        if let syn::Pat::Ident(p) = &arg.pat {
            if let Some(slot) = lowerer.cfg.slots.iter_mut().find(|s| s.name == p.ident) {
                slot.ty = Some(arg.ty.to_token_stream());
            }
        }
    }
    lowerer.lower_body(&f.block);
    let cfg = lowerer.cfg;
    let plan = emit::plan(&cfg, cx);
    if cx.has_errors() {
        return None;
    }
    let step_body = emit::step_body(&cfg, &plan, &reg_name);
    // The compiled machine and the types it stores decide whether a stored state fits
    // this code; doc comments and formatting do not.
    let fp = fingerprint(&format!("{input_ty} -> {output} {step_body}"));
    // What `#[cfg]` compiles in is part of the code: each predicate that holds changes
    // the fingerprint.
    let cfg_terms = stmt_attrs::cfg_predicates(&f.block.to_token_stream())
        .into_iter()
        .enumerate()
        .map(|(i, predicate)| {
            let term = fingerprint(&format!("cfg {i} {predicate}"));
            let predicate: TokenStream = predicate.parse().unwrap_or_default();
            quote!(^ if cfg!(#predicate) { #term } else { 0 })
        });
    let fp = quote!(#fp #(#cfg_terms)*);
    let (state_infos, transitions) = emit::graph_entries(&cfg);
    let slot_infos = emit::slot_table(&cfg, &plan);
    let signal_table = crate::signals::table(&crate::signals::find(&f.block));
    let body = &f.block;
    // `#[allow(..)]` on the workflow also covers the compiled body (the hash-map warning
    // among others); `deny`/`forbid` are not carried over, since the generated code
    // allows lints of its own.
    let allows: Vec<_> = attrs
        .iter()
        .filter(|a| a.path().is_ident("allow"))
        .collect();
    let doc = format!(
        "The `{reg_name}` workflow. Build a call with [`{name}()`]; start it with \
         `Engine::start`, await it in another workflow (a child run), or await it directly \
         (runs as plain async code)."
    );

    Some(quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {
            __input: #input_ty,
        }

        #(#attrs)*
        #[must_use = "a workflow call does nothing unless started or awaited"]
        #vis fn #name(#(#idents: #tys),*) -> #name {
            #name { __input: #input_value }
        }

        // The body as written, as plain async code. An associated function named like
        // the workflow: rustc's messages about it (a future that is not `Send`) name the
        // user's function, and inside the body the name is still the workflow's
        // constructor (an associated function is not in scope by its bare name).
        impl #name {
            #(#allows)*
            #[allow(clippy::needless_return)]
            async fn #name(#(#pats: #tys),*) -> #output #body
        }

        impl ::core::future::IntoFuture for #name {
            type Output = #output;
            type IntoFuture = ::flow::__private::BoxFuture<#output>;
            fn into_future(self) -> Self::IntoFuture {
                #unpack
                ::std::boxed::Box::pin(#name::#name(#(#idents),*))
            }
        }

        #(#allows)*
        impl ::flow::Workflow for #name {
            const NAME: &'static str = #reg_name;
            const FINGERPRINT: u64 = #fp;
            #version
            type Input = #input_ty;
            type Output = #output;

            fn into_input(self) -> Self::Input {
                self.__input
            }

            fn from_input(input: Self::Input) -> Self {
                #name { __input: input }
            }

            #[allow(
                unused_mut, unused_variables, unused_imports, dead_code, unused_braces, unreachable_code, path_statements,
                unused_assignments, redundant_semicolons, non_snake_case, dependency_on_unit_never_type_fallback,
                clippy::all, clippy::pedantic, clippy::nursery
            )]
            fn step(__flow_machine: &mut ::flow::__private::Machine) -> ::core::result::Result<::flow::__private::Transition, ::flow::__private::StepFault> {
                #step_body
            }

            fn signals() -> &'static ::flow::SignalSites {
                #signal_table
            }

            fn graph() -> &'static ::flow::StateGraph {
                static GRAPH: ::flow::StateGraph = ::flow::StateGraph {
                    workflow: #reg_name,
                    states: &[#(#state_infos),*],
                    transitions: &[#(#transitions),*],
                };
                &GRAPH
            }

            fn slots() -> &'static [::flow::SlotInfo] {
                &[#(#slot_infos),*]
            }
        }

        impl ::flow::DurableOp for #name {
            type Output = #output;
            fn into_request(self) -> ::core::result::Result<::flow::OpRequest, ::flow::CodecError> {
                ::core::result::Result::Ok(::flow::OpRequest::Child {
                    workflow: ::std::string::ToString::to_string(#reg_name),
                    input: ::flow::codec::encode(&self.__input, || ::std::format!("input of workflow `{}`", #reg_name))?,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn fingerprint_of(item: proc_macro2::TokenStream) -> String {
        let out = super::expand(quote!(), item).unwrap().to_string();
        let at = out.find("FINGERPRINT").unwrap();
        out[at..at + 60].to_string()
    }

    #[test]
    fn fingerprint_ignores_docs_but_not_code() {
        let base = fingerprint_of(quote!(
            async fn w(x: u8) -> u8 {
                let y = t(x).await;
                y
            }
        ));
        let documented = fingerprint_of(quote!(
            /// Now with docs.
            async fn w(x: u8) -> u8 {
                let y = t(x).await;
                y
            }
        ));
        let changed = fingerprint_of(quote!(
            async fn w(x: u8) -> u8 {
                let y = t(x + 1).await;
                y
            }
        ));
        let retyped = fingerprint_of(quote!(
            async fn w(x: u16) -> u8 {
                let y = t(x).await;
                y
            }
        ));
        assert_eq!(base, documented);
        assert_ne!(base, changed);
        assert_ne!(base, retyped);
    }
}
