//! Options of `#[workflow(...)]` and `#[task(...)]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Lit, Meta};

use crate::ctxt::Ctxt;

/// Parsed `#[task(...)]` options.
#[derive(Default)]
pub struct TaskOptions {
    /// `name = "..."`.
    pub name: Option<String>,
    /// `timeout = "30s"`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `retry(max_attempts = N)`.
    pub max_attempts: Option<u32>,
    /// `retry(initial = "200ms")`.
    pub initial_ms: Option<u64>,
    /// `retry(backoff = 2.0)`.
    pub backoff: Option<f64>,
    /// `retry(max_interval = "1m")`.
    pub max_interval_ms: Option<u64>,
    /// `retry(jitter = 0.1)`.
    pub jitter: Option<f64>,
    /// `retry(non_retryable = path::to::predicate)`: `fn(&E) -> bool`.
    pub non_retryable: Option<syn::Path>,
    /// `at_most_once`: an attempt interrupted by the engine's end is not run again.
    pub at_most_once: bool,
    /// `queue = "resize"`: a remote task, whose attempts workers take from this queue.
    pub queue: Option<String>,
    /// `heartbeat = "10s"` (remote tasks): the heartbeat timeout, in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// `schedule_to_start = "1m"` (remote tasks): how long an attempt may wait for a
    /// worker, in milliseconds.
    pub schedule_to_start_ms: Option<u64>,
}

/// Parsed `#[workflow(...)]` options.
#[derive(Default)]
pub struct WorkflowOptions {
    /// `name = "..."`.
    pub name: Option<String>,
    /// `version = N` (N >= 1): one of several versions registered under one name.
    pub version: Option<u32>,
}

/// Parses `#[workflow(...)]` options, reporting every error to `cx`.
pub(crate) fn workflow_options(attr: TokenStream, cx: &Ctxt) -> WorkflowOptions {
    let mut opts = WorkflowOptions::default();
    let errors = cx;
    for meta in metas(attr).unwrap_or_else(|e| {
        cx.syn_error(e);
        Vec::new()
    }) {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("name") => match string(&nv.value) {
                Some(s) => opts.name = Some(s),
                None => errors.error_at(
                    nv.value.span(),
                    "expected a string: `name = \"my_workflow\"`",
                ),
            },
            Meta::NameValue(nv) if nv.path.is_ident("version") => match int(&nv.value) {
                Some(n) if n >= 1 && n <= u32::MAX as u64 => opts.version = Some(n as u32),
                _ => errors.error_at(
                    nv.value.span(),
                    "`version` must be a whole number of at least 1, e.g. `version = 2` \
                     (a workflow without it is version 1)",
                ),
            },
            other => errors.error_at(
                other.span(),
                "unknown #[workflow] option; expected `name = \"...\"` or `version = N`",
            ),
        }
    }
    opts
}

/// Parses `#[task(...)]` options, reporting every error to `cx`.
pub(crate) fn task_options(attr: TokenStream, cx: &Ctxt) -> TaskOptions {
    let mut opts = TaskOptions::default();
    let errors = cx;
    for meta in metas(attr).unwrap_or_else(|e| {
        cx.syn_error(e);
        Vec::new()
    }) {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("name") => match string(&nv.value) {
                Some(s) => opts.name = Some(s),
                None => errors.error_at(nv.value.span(), "expected a string: `name = \"charge_card\"`"),
            },
            Meta::Path(path) if path.is_ident("at_most_once") => opts.at_most_once = true,
            Meta::NameValue(nv) if nv.path.is_ident("queue") => match string(&nv.value) {
                Some(s) if !s.is_empty() && s.len() <= 200 => opts.queue = Some(s),
                _ => errors.error_at(
                    nv.value.span(),
                    "expected a queue name, a non-empty string of at most 200 bytes: `queue = \"resize\"`",
                ),
            },
            Meta::NameValue(nv) if nv.path.is_ident("heartbeat") => {
                opts.heartbeat_ms = duration(&nv.value, errors);
            }
            Meta::NameValue(nv) if nv.path.is_ident("schedule_to_start") => {
                opts.schedule_to_start_ms = duration(&nv.value, errors);
            }
            Meta::NameValue(nv) if nv.path.is_ident("timeout") => {
                opts.timeout_ms = duration(&nv.value, errors);
            }
            Meta::List(list) if list.path.is_ident("retry") => {
                let inner = match metas(list.tokens.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        errors.syn_error(e);
                        continue;
                    }
                };
                for m in inner {
                    retry_option(&m, &mut opts, errors);
                }
            }
            other => errors.error_at(
                other.span(),
                "unknown #[task] option; expected `name = \"...\"`, `timeout = \"30s\"`, `at_most_once`, \
                 `queue = \"...\"` (with `heartbeat = \"10s\"`, `schedule_to_start = \"1m\"`) or \
                 `retry(max_attempts = 5, initial = \"200ms\", backoff = 2.0, max_interval = \"1m\", \
                 jitter = 0.1, non_retryable = is_permanent)`",
            ),
        }
    }
    opts
}

fn retry_option(m: &Meta, opts: &mut TaskOptions, errors: &Ctxt) {
    let Meta::NameValue(nv) = m else {
        errors.error_at(m.span(), "expected `key = value` inside `retry(...)`");
        return;
    };
    let key = nv
        .path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_default();
    match key.as_str() {
        "max_attempts" => match int(&nv.value) {
            Some(n) if n >= 1 && n <= u32::MAX as u64 => opts.max_attempts = Some(n as u32),
            _ => errors.error_at(nv.value.span(), "`max_attempts` must be a whole number of at least 1 (the first attempt counts)"),
        },
        "initial" => opts.initial_ms = duration(&nv.value, errors),
        "max_interval" => opts.max_interval_ms = duration(&nv.value, errors),
        "backoff" => match float(&nv.value) {
            Some(f) if f >= 1.0 => opts.backoff = Some(f),
            _ => errors.error_at(nv.value.span(), "`backoff` must be a number of at least 1.0, e.g. `backoff = 2.0`"),
        },
        "jitter" => match float(&nv.value) {
            Some(f) if (0.0..=1.0).contains(&f) => opts.jitter = Some(f),
            _ => errors.error_at(nv.value.span(), "`jitter` must be a fraction between 0.0 and 1.0, e.g. `jitter = 0.1`"),
        },
        "non_retryable" => match &nv.value {
            Expr::Path(p) => opts.non_retryable = Some(p.path.clone()),
            other => errors.error_at(other.span(), "`non_retryable` takes a function path `fn(&E) -> bool`, e.g. `non_retryable = is_permanent`"),
        },
        _ => errors.error_at(
            nv.path.span(),
            "unknown retry option; expected max_attempts, initial, backoff, max_interval, jitter or non_retryable",
        ),
    }
}

fn metas(tokens: TokenStream) -> Result<Vec<Meta>, syn::Error> {
    let parser = syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated;
    Ok(parser.parse2(tokens)?.into_iter().collect())
}

fn string(e: &Expr) -> Option<String> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

fn int(e: &Expr) -> Option<u64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn float(e: &Expr) -> Option<f64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Float(f) => f.base10_parse().ok(),
            Lit::Int(i) => i.base10_parse::<u64>().ok().map(|v| v as f64),
            _ => None,
        },
        _ => None,
    }
}

fn duration(e: &Expr, errors: &Ctxt) -> Option<u64> {
    let parsed = string(e).and_then(|s| parse_duration_ms(&s));
    if parsed.is_none() {
        errors.error_at(
            e.span(),
            "expected a duration string such as \"250ms\", \"30s\", \"5m\" or \"1h\"",
        );
    }
    parsed
}

/// `"250ms"`, `"30s"`, `"5m"`, `"1h"` (a whole number and a unit) in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("2 days"), None);
        assert_eq!(parse_duration_ms("s"), None);
    }

    #[test]
    fn workflow_versions_parse_and_zero_is_refused() {
        let cx = Ctxt::new();
        let o = workflow_options(quote!(name = "place_order", version = 2), &cx);
        cx.check().unwrap();
        assert_eq!(
            (o.name.as_deref(), o.version),
            (Some("place_order"), Some(2))
        );
        let cx = Ctxt::new();
        workflow_options(quote!(version = 0), &cx);
        assert_eq!(cx.check().unwrap_err().into_iter().count(), 1);
        let cx = Ctxt::new();
        workflow_options(quote!(version = "2"), &cx);
        assert_eq!(cx.check().unwrap_err().into_iter().count(), 1);
    }

    #[test]
    fn task_options_parse_and_errors_accumulate() {
        let cx = Ctxt::new();
        let o = task_options(
            quote!(
                timeout = "5s",
                retry(max_attempts = 4, backoff = 1.5, non_retryable = is_fatal)
            ),
            &cx,
        );
        cx.check().unwrap();
        assert_eq!(
            (o.timeout_ms, o.max_attempts, o.backoff),
            (Some(5000), Some(4), Some(1.5))
        );
        let cx = Ctxt::new();
        task_options(quote!(timeout = 5, retry(max_attempts = 0), bogus), &cx);
        assert_eq!(cx.check().unwrap_err().into_iter().count(), 3);
    }
}
