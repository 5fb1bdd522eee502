//! Attributes on statements of a workflow body.
//!
//! A statement that needs no lowering keeps its attributes verbatim. A lowered statement
//! is spread over several arms of the step function, so its attributes must be given a
//! meaning there: `#[cfg(..)]` gates the blocks, locals and states the statement creates
//! (and the jump into them); lint attributes only select lints, which the plain copy of
//! the function still reports; anything else is refused.

use proc_macro2::{TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Meta, Stmt, Token};

/// What the attributes of a lowered statement mean for the state machine.
pub(crate) enum StmtAttrs {
    /// Nothing: no attributes, or lint attributes only.
    None,
    /// Compiled in only when the predicate holds.
    Cfg(TokenStream),
}

/// Removes the outer attributes of `stmt`, returning them.
pub(crate) fn take_attrs(stmt: &mut Stmt) -> Vec<Attribute> {
    match stmt {
        Stmt::Local(l) => std::mem::take(&mut l.attrs),
        Stmt::Macro(m) => std::mem::take(&mut m.attrs),
        Stmt::Expr(e, _) => expr_attrs(e).map(std::mem::take).unwrap_or_default(),
        Stmt::Item(_) => Vec::new(),
    }
}

/// The outer attributes of an expression.
pub(crate) fn expr_attrs(e: &mut Expr) -> Option<&mut Vec<Attribute>> {
    macro_rules! attrs_of {
        ($($variant:ident),*) => {
            match e {
                $(Expr::$variant(x) => Some(&mut x.attrs),)*
                _ => None,
            }
        };
    }
    attrs_of!(
        Array, Assign, Async, Await, Binary, Block, Break, Call, Cast, Closure, Const, Continue,
        Field, ForLoop, Group, If, Index, Infer, Let, Lit, Loop, Macro, Match, MethodCall, Paren,
        Path, Range, RawAddr, Reference, Repeat, Return, Struct, Try, TryBlock, Tuple, Unary,
        Unsafe, While, Yield
    )
}

/// Reads the attributes of a statement that contains `.await`: `#[cfg]`s combine into
/// one predicate; lint attributes are dropped; others are errors.
pub(crate) fn classify(attrs: &[Attribute]) -> Result<StmtAttrs, syn::Error> {
    let mut predicates = Vec::new();
    for attr in attrs {
        let path = attr.path();
        if path.is_ident("cfg") {
            let Meta::List(list) = &attr.meta else {
                return Err(syn::Error::new(attr.span(), "expected `#[cfg(predicate)]`"));
            };
            predicates.push(list.tokens.clone());
        } else if path.is_ident("cfg_attr") {
            let Meta::List(list) = &attr.meta else {
                return Err(syn::Error::new(attr.span(), "expected `#[cfg_attr(..)]`"));
            };
            let parts = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
            if !parts.iter().skip(1).all(|m| is_lint(m.path())) {
                return Err(syn::Error::new_spanned(
                    attr,
                    "`#[cfg_attr]` on a statement that contains `.await` can only add lint \
                     attributes in a #[workflow]; write `#[cfg(..)]` on the statement instead",
                ));
            }
        } else if !is_lint(path) {
            return Err(syn::Error::new_spanned(
                attr,
                "this attribute cannot be kept on a statement that contains `.await` in a \
                 #[workflow] (only `#[cfg]` and lint attributes can); move the statement's \
                 work into a function and put the attribute there",
            ));
        }
    }
    Ok(match predicates.len() {
        0 => StmtAttrs::None,
        1 => StmtAttrs::Cfg(predicates.remove(0)),
        _ => StmtAttrs::Cfg(quote::quote!(all(#(#predicates),*))),
    })
}

/// The `#[cfg]` predicate of a match arm's attributes, if any; other attributes stay
/// on the arm as written.
pub(crate) fn cfg_of(attrs: &[Attribute]) -> Option<TokenStream> {
    let predicates: Vec<TokenStream> = attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .filter_map(|a| match &a.meta {
            Meta::List(l) => Some(l.tokens.clone()),
            _ => None,
        })
        .collect();
    match predicates.len() {
        0 => None,
        1 => predicates.into_iter().next(),
        _ => Some(quote::quote!(all(#(#predicates),*))),
    }
}

fn is_lint(path: &syn::Path) -> bool {
    let first = path.segments.first().map(|s| s.ident.to_string());
    matches!(
        first.as_deref(),
        Some("allow" | "warn" | "deny" | "forbid" | "expect" | "rustfmt" | "clippy")
    )
}

/// Every `#[cfg(..)]` and `#[cfg_attr(..)]` predicate in `tokens`, in order: what the
/// compiled code depends on besides its text.
pub(crate) fn cfg_predicates(tokens: &TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    collect_predicates(tokens, &mut out);
    out
}

fn collect_predicates(tokens: &TokenStream, out: &mut Vec<String>) {
    let mut after_pound = false;
    for tt in tokens.clone() {
        if let TokenTree::Group(g) = &tt {
            if after_pound && g.delimiter() == proc_macro2::Delimiter::Bracket {
                let mut inner = g.stream().into_iter();
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(args))) =
                    (inner.next(), inner.next())
                {
                    if name == "cfg" {
                        out.push(args.stream().to_string());
                    } else if name == "cfg_attr" {
                        // The predicate is everything before the first top-level comma.
                        let predicate: TokenStream = args
                            .stream()
                            .into_iter()
                            .take_while(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                            .collect();
                        out.push(predicate.to_string());
                    }
                }
            }
            collect_predicates(&g.stream(), out);
        }
        after_pound = matches!(&tt, TokenTree::Punct(p) if p.as_char() == '#');
    }
}

/// `#[cfg(all(..))]` for the predicates a generated piece of code depends on.
pub(crate) fn cfg_attr(predicates: &[TokenStream]) -> TokenStream {
    match predicates {
        [] => TokenStream::new(),
        [one] => quote::quote!(#[cfg(#one)]),
        many => quote::quote!(#[cfg(all(#(#many),*))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfgs_combine_and_lints_are_dropped() {
        let s: Stmt = syn::parse_quote!(#[cfg(unix)] #[allow(unused)] #[cfg(test)] f().await;);
        let mut s = s;
        let attrs = take_attrs(&mut s);
        assert_eq!(attrs.len(), 3);
        match classify(&attrs).unwrap() {
            StmtAttrs::Cfg(p) => assert_eq!(p.to_string(), "all (unix , test)"),
            StmtAttrs::None => panic!("expected a predicate"),
        }
        let lint: Stmt = syn::parse_quote!(#[rustfmt::skip] let a = f().await;);
        let mut lint = lint;
        assert!(matches!(
            classify(&take_attrs(&mut lint)).unwrap(),
            StmtAttrs::None
        ));
        let other: Stmt = syn::parse_quote!(#[inline] f().await;);
        let mut other = other;
        assert!(classify(&take_attrs(&mut other)).is_err());
    }

    #[test]
    fn predicates_are_found_at_any_depth() {
        let t: TokenStream = syn::parse_quote!({
            #[cfg(a)]
            x;
            {
                #[cfg_attr(b, allow(c))]
                y;
            }
        });
        assert_eq!(cfg_predicates(&t), ["a", "b"]);
    }
}
