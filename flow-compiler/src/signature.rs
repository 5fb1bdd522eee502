//! Checks shared by `#[task]` and `#[workflow]` on the annotated function's signature.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::ctxt::Ctxt;

/// One argument of the annotated function.
pub struct Arg {
    /// The pattern as written (`order`, `mut n`, `(a, b)`).
    pub pat: Pat,
    /// A plain name for it (`__arg{i}` when the pattern is not a plain identifier).
    pub ident: Ident,
    /// Its type.
    pub ty: Type,
}

/// The parts of the signature the expansions use.
pub struct Signature {
    /// Arguments in order.
    pub args: Vec<Arg>,
    /// The return type (`()` when omitted).
    pub output: TokenStream,
}

/// Validates `f` for `#[{what}]` (async, no generics, no `self`, nameable types).
pub fn check(f: &ItemFn, what: &str, errors: &Ctxt) -> Signature {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.error_at(
            sig.fn_token.span(),
            format!(
                "#[{what}] must be on an `async fn`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.error_at(
            sig.generics.span(),
            format!("#[{what}] functions cannot be generic: runs are stored by name and resumed without knowing type parameters; use concrete types"),
        );
    }
    if let Some(c) = &sig.constness {
        errors.error_at(c.span(), format!("#[{what}] cannot be a `const fn`"));
    }
    if let Some(v) = &sig.variadic {
        errors.error_at(v.span(), format!("#[{what}] functions cannot be variadic"));
    }
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => errors.error_at(
                r.span(),
                format!("#[{what}] must be a free function, not a method: pass the data it needs as arguments"),
            ),
            FnArg::Typed(t) => {
                if contains_impl_trait(&t.ty) || matches!(*t.ty, Type::Reference(_)) {
                    errors.error_at(
                        t.ty.span(),
                        format!("#[{what}] arguments are journaled, so they must be owned serde types (no references or `impl Trait`); e.g. `String` instead of `&str`"),
                    );
                }
                let ident = match &*t.pat {
                    Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => p.ident.clone(),
                    _ => format_ident!("__arg{}", i),
                };
                args.push(Arg {
                    pat: (*t.pat).clone(),
                    ident,
                    ty: (*t.ty).clone(),
                });
            }
        }
    }
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            if contains_impl_trait(ty) {
                errors.error_at(
                    ty.span(),
                    format!("#[{what}] results are journaled, so the return type must be a named serde type, not `impl Trait`"),
                );
            }
            ty.to_token_stream()
        }
    };
    Signature { args, output }
}

fn contains_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(&t, proc_macro2::TokenTree::Ident(i) if i == "impl"))
}

/// Whether `output` names a `Result` (by its last path segment, so aliases such as
/// `io::Result<T>` count too).
pub fn is_result(output: &TokenStream) -> bool {
    match syn::parse2::<Type>(output.clone()) {
        Ok(Type::Path(p)) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

/// 64-bit FNV-1a: a stable fingerprint of source text.
pub fn fingerprint(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
