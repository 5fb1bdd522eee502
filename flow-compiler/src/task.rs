//! `#[task]`: parse → check → expand.
//!
//! ```text
//! #[task(retry(max_attempts = 5), timeout = "30s")]
//! async fn charge(card: String, cents: u64) -> Result<PaymentId, PaymentError> { BODY }
//! ```
//! expands to (outline):
//! ```text
//! #[derive(Serialize, Deserialize)] struct charge { card: String, cents: u64 }
//! fn charge(card: String, cents: u64) -> charge { charge { card, cents } }
//! impl flow::__private::Task for charge { NAME, Output, policy(), run() -> BODY, classify(), from_failure() }
//! impl flow::DurableOp for charge { ... OpRequest::Task { .. } }     // awaited in a workflow
//! impl IntoFuture for charge { ... runs BODY directly }              // awaited elsewhere
//! inventory::submit!(TaskRegistration { .. })                        // found by name on recovery
//! inventory::submit!(RemoteTask { .. })   // with `queue = "..."`: workers run the attempts
//! ```

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::attr::{self, TaskOptions};
use crate::ctxt::Ctxt;
use crate::signature::{self, is_result};

/// Expands `#[task(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> Result<TokenStream, syn::Error> {
    let cx = Ctxt::new();
    let expanded = expand_checked(&cx, attr, item);
    cx.check()?;
    Ok(expanded.unwrap_or_default())
}

fn expand_checked(cx: &Ctxt, attr: TokenStream, item: TokenStream) -> Option<TokenStream> {
    let opts = attr::task_options(attr, cx);
    let f: ItemFn = syn::parse2(item).map_err(|e| cx.syn_error(e)).ok()?;
    let sig = signature::check(&f, "task", cx);
    let is_result = is_result(&sig.output);
    if opts.non_retryable.is_some() && !is_result {
        cx.error_at(
            f.sig.ident.span(),
            "`non_retryable` needs the task to return a `Result`: it decides which `Err`s are final",
        );
    }
    if opts.at_most_once && !is_result {
        cx.error_at(
            f.sig.ident.span(),
            "`at_most_once` needs the task to return a `Result` whose error implements \
             `From<flow::TaskFailure>`: an interrupted attempt reaches the workflow as that `Err`",
        );
    }
    if opts.queue.is_none() && (opts.heartbeat_ms.is_some() || opts.schedule_to_start_ms.is_some())
    {
        cx.error_at(
            f.sig.ident.span(),
            "`heartbeat` and `schedule_to_start` are timeouts of remote tasks: add \
             `queue = \"...\"` to put this task's attempts on a queue for workers",
        );
    }
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
    let body = &f.block;
    // The registration name is the function's name (stable when the task moves to
    // another module), unless `name = "..."` pins one; workflows follow the same rule.
    let reg_name = match &opts.name {
        Some(n) => quote!(#n),
        None => quote!(::core::stringify!(#name)),
    };
    let policy = policy_tokens(&opts);
    let at_most_once = opts.at_most_once.then(|| {
        quote! {
            ::flow::__private::inventory::submit! {
                ::flow::__private::AtMostOnce { name: <#name as ::flow::__private::Task>::NAME }
            }
        }
    });
    // A remote task: the engine puts its attempts on the queue (workers run the body).
    let remote = opts.queue.as_ref().map(|queue| {
        let ms = |v: Option<u64>| match v {
            Some(ms) => {
                quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms)))
            }
            None => quote!(::core::option::Option::None),
        };
        let heartbeat = ms(opts.heartbeat_ms);
        let schedule_to_start = ms(opts.schedule_to_start_ms);
        quote! {
            ::flow::__private::inventory::submit! {
                ::flow::__private::RemoteTask {
                    name: <#name as ::flow::__private::Task>::NAME,
                    queue: #queue,
                    heartbeat: #heartbeat,
                    schedule_to_start: #schedule_to_start,
                    judge: ::flow::__private::erased_judge::<#name>,
                }
            }
        }
    });
    let (classify, from_failure) = if is_result {
        let permanent = match &opts.non_retryable {
            Some(p) => quote!(#p(__flow_error)),
            None => quote!(false),
        };
        (
            quote! {
                match __flow_output {
                    ::core::result::Result::Ok(_) => ::flow::__private::AttemptClass::Success,
                    ::core::result::Result::Err(__flow_error) => {
                        let __flow_text = ::std::format!("{:?}", __flow_error);
                        if #permanent {
                            ::flow::__private::AttemptClass::NonRetryable(__flow_text)
                        } else {
                            ::flow::__private::AttemptClass::Retryable(__flow_text)
                        }
                    }
                }
            },
            quote!(::core::option::Option::Some(::core::result::Result::Err(
                ::core::convert::From::from(__flow_failure)
            ))),
        )
    } else {
        (
            quote!({
                let _ = __flow_output;
                ::flow::__private::AttemptClass::Success
            }),
            quote!({
                let _ = __flow_failure;
                ::core::option::Option::None
            }),
        )
    };
    let doc = format!(
        "One call of the [`{name}()`] task with its arguments: await it in a `#[workflow]` \
         (journaled, retried) or anywhere else (runs the body)."
    );

    Some(quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #[derive(::flow::__private::serde::Serialize, ::flow::__private::serde::Deserialize)]
        #[serde(crate = "::flow::__private::serde")]
        #vis struct #name {
            #(#idents: #tys,)*
        }

        #(#attrs)*
        #[must_use = "a task call does nothing unless awaited"]
        #vis fn #name(#(#idents: #tys),*) -> #name {
            #name { #(#idents,)* }
        }

        impl ::flow::__private::Task for #name {
            const NAME: &'static str = #reg_name;
            type Output = #output;

            fn policy() -> ::flow::TaskPolicy {
                #policy
            }

            fn run(self) -> ::flow::__private::BoxFuture<#output> {
                #[allow(clippy::needless_return)]
                async fn __flow_task_body(#(#pats: #tys),*) -> #output #body
                let #name { #(#idents,)* } = self;
                ::std::boxed::Box::pin(__flow_task_body(#(#idents),*))
            }

            #[allow(unused_variables)]
            fn classify(__flow_output: &#output) -> ::flow::__private::AttemptClass {
                #classify
            }

            fn from_failure(__flow_failure: ::flow::TaskFailure) -> ::core::option::Option<#output> {
                #from_failure
            }
        }

        impl ::flow::DurableOp for #name {
            type Output = #output;
            fn failure(__flow_output: &#output) -> ::core::option::Option<::std::string::String> {
                match <Self as ::flow::__private::Task>::classify(__flow_output) {
                    ::flow::__private::AttemptClass::Success => ::core::option::Option::None,
                    ::flow::__private::AttemptClass::Retryable(__flow_text)
                    | ::flow::__private::AttemptClass::NonRetryable(__flow_text) => ::core::option::Option::Some(__flow_text),
                }
            }
            fn into_request(self) -> ::core::result::Result<::flow::OpRequest, ::flow::CodecError> {
                ::core::result::Result::Ok(::flow::OpRequest::Task {
                    name: ::std::string::ToString::to_string(<Self as ::flow::__private::Task>::NAME),
                    args: ::flow::codec::encode(&self, || ::std::format!("arguments of task `{}`", <Self as ::flow::__private::Task>::NAME))?,
                    policy: <Self as ::flow::__private::Task>::policy(),
                })
            }
        }

        impl ::core::future::IntoFuture for #name {
            type Output = #output;
            type IntoFuture = ::flow::__private::BoxFuture<#output>;
            fn into_future(self) -> Self::IntoFuture {
                ::flow::__private::Task::run(self)
            }
        }

        ::flow::__private::inventory::submit! {
            ::flow::__private::TaskRegistration {
                name: <#name as ::flow::__private::Task>::NAME,
                run: ::flow::__private::erased_run::<#name>,
                failure_output: ::flow::__private::erased_failure_output::<#name>,
                defined_at: ::core::concat!(
                    ::core::module_path!(), "::", ::core::stringify!(#name),
                    " (", ::core::file!(), ":", ::core::line!(), ")"
                ),
            }
        }
        #at_most_once
        #remote
    })
}

fn policy_tokens(o: &TaskOptions) -> TokenStream {
    let d = |ms: Option<u64>, field: TokenStream| match ms {
        Some(ms) => quote!(#field: ::core::time::Duration::from_millis(#ms),),
        None => TokenStream::new(),
    };
    let max_attempts = o.max_attempts.map(|n| quote!(max_attempts: #n,));
    let backoff = o.backoff.map(|b| quote!(backoff_rate: #b,));
    let jitter = o.jitter.map(|j| quote!(jitter: #j,));
    let initial = d(o.initial_ms, quote!(initial_interval));
    let max_interval = d(o.max_interval_ms, quote!(max_interval));
    let timeout = match o.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    // With every field given, `..Default::default()` would trip `clippy::needless_update`
    // in the user's crate.
    let every_field = o.max_attempts.is_some()
        && o.initial_ms.is_some()
        && o.backoff.is_some()
        && o.max_interval_ms.is_some()
        && o.jitter.is_some();
    let rest = if every_field {
        TokenStream::new()
    } else {
        quote!(..::core::default::Default::default())
    };
    quote! {
        ::flow::TaskPolicy {
            retry: ::flow::RetryPolicy {
                #max_attempts #initial #backoff #max_interval #jitter
                #rest
            },
            timeout: #timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(options: &str) -> String {
        let cx = Ctxt::new();
        let opts = crate::attr::task_options(options.parse().unwrap(), &cx);
        cx.check().unwrap();
        policy_tokens(&opts).to_string()
    }

    fn expand_str(attr: &str) -> Result<String, String> {
        let item: TokenStream = "async fn resize(n: u64) -> Result<u64, String> { Ok(n) }"
            .parse()
            .unwrap();
        expand(attr.parse().unwrap(), item)
            .map(|t| t.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_queue_makes_a_remote_task_and_its_timeouts_need_one() {
        let remote =
            expand_str(r#"queue = "resize", heartbeat = "10s", schedule_to_start = "1m""#).unwrap();
        assert!(remote.contains("RemoteTask"), "{remote}");
        assert!(remote.contains(r#"queue : "resize""#), "{remote}");
        assert!(remote.contains("from_millis (10000u64)"), "{remote}");
        assert!(remote.contains("from_millis (60000u64)"), "{remote}");
        let local = expand_str(r#"timeout = "5s""#).unwrap();
        assert!(!local.contains("RemoteTask"), "{local}");
        let error = expand_str(r#"heartbeat = "10s""#).unwrap_err();
        assert!(error.contains("add `queue"), "{error}");
        let error = expand_str(r#"queue = """#).unwrap_err();
        assert!(error.contains("queue name"), "{error}");
    }

    #[test]
    fn a_policy_with_every_retry_option_has_no_default_update() {
        let all = policy_of(
            "retry(max_attempts = 5, initial = \"200ms\", backoff = 2.0, max_interval = \"1m\", jitter = 0.1)",
        );
        assert!(!all.contains("Default"), "{all}");
        let some = policy_of("retry(max_attempts = 5, jitter = 0.1)");
        assert!(some.contains("Default :: default"), "{some}");
    }
}
