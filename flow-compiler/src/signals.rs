//! The signal call sites of a workflow body, for `Workflow::signals`: each
//! `flow::signal("name")` or `flow::signal::<T>("name")` the body holds, also inside
//! macro calls (`select!`, `join!`), found by scanning its tokens.
//!
//! The set is closed (every name the workflow waits for) only if every call site names
//! its signal with a string literal and there is at least one; a bare `signal(..)` (an
//! import the scan cannot tell from another function) or a computed name leaves it open.
//! A type naming an item declared inside the body cannot be named outside the step
//! function, so such a site records its name without a type.

use std::collections::BTreeSet;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;

/// One call site: the name, and the type when spelled out and nameable.
#[derive(Debug, Clone)]
pub struct Site {
    /// The signal's name.
    pub name: String,
    /// The turbofish type's tokens.
    pub ty: Option<TokenStream>,
}

/// The body's call sites and whether they are all of them.
#[derive(Debug, Default)]
pub struct Sites {
    /// Call sites in source order.
    pub sites: Vec<Site>,
    /// A call site the scan could not read (a computed name, a bare `signal`).
    pub open: bool,
}

/// Scans `body` for signal call sites.
pub fn find(body: &syn::Block) -> Sites {
    let mut local_items = BTreeSet::new();
    for stmt in &body.stmts {
        if let syn::Stmt::Item(item) = stmt {
            collect_item_names(item, &mut local_items);
        }
    }
    let mut sites = Sites::default();
    let tokens: TokenStream = body.stmts.iter().map(|s| quote!(#s)).collect();
    scan(tokens, &local_items, &mut sites);
    sites
}

fn collect_item_names(item: &syn::Item, out: &mut BTreeSet<String>) {
    let ident = match item {
        syn::Item::Struct(i) => Some(&i.ident),
        syn::Item::Enum(i) => Some(&i.ident),
        syn::Item::Type(i) => Some(&i.ident),
        syn::Item::Union(i) => Some(&i.ident),
        syn::Item::Use(_) => {
            // Imports inside the body may bring any name into scope.
            out.insert("*".into());
            None
        }
        _ => None,
    };
    if let Some(ident) = ident {
        out.insert(ident.to_string());
    }
}

fn scan(tokens: TokenStream, local_items: &BTreeSet<String>, out: &mut Sites) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => scan(group.stream(), local_items, out),
            TokenTree::Ident(ident) if ident == "signal" => {
                let after_path =
                    i >= 2 && is_punct(&tokens[i - 1], ':') && is_punct(&tokens[i - 2], ':');
                let from_flow = after_path
                    && i >= 3
                    && matches!(&tokens[i - 3], TokenTree::Ident(f) if f == "flow");
                let method = i >= 1 && is_punct(&tokens[i - 1], '.');
                if method || (after_path && !from_flow) {
                    continue; // `engine.signal(..)`, `other::signal(..)`: not a wait
                }
                if !from_flow {
                    if called(&tokens[i + 1..]) {
                        out.open = true;
                    }
                    continue;
                }
                match site(&tokens[i + 1..], local_items) {
                    Some(site) => out.sites.push(site),
                    None => out.open = true,
                }
            }
            _ => {}
        }
    }
}

fn is_punct(token: &TokenTree, c: char) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == c)
}

/// Whether the tokens after `signal` call it (`(..)` or `::<..>(..)`).
fn called(rest: &[TokenTree]) -> bool {
    matches!(rest.first(), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
        || (rest.len() > 2 && is_punct(&rest[0], ':') && is_punct(&rest[2], '<'))
}

/// Reads `::<T>("name")` or `("name")` after `flow::signal`.
fn site(rest: &[TokenTree], local_items: &BTreeSet<String>) -> Option<Site> {
    let mut at = 0;
    let mut ty = None;
    if rest.len() > 2
        && is_punct(&rest[0], ':')
        && is_punct(&rest[1], ':')
        && is_punct(&rest[2], '<')
    {
        let mut depth = 1;
        let mut end = 3;
        while depth > 0 {
            let token = rest.get(end)?;
            if is_punct(token, '<') {
                depth += 1;
            } else if is_punct(token, '>') {
                depth -= 1;
            }
            end += 1;
        }
        let ty_tokens: TokenStream = rest[3..end - 1].iter().cloned().collect();
        if nameable(&ty_tokens, local_items) {
            ty = Some(ty_tokens);
        }
        at = end;
    }
    let TokenTree::Group(args) = rest.get(at)? else {
        return None;
    };
    if args.delimiter() != Delimiter::Parenthesis {
        return None;
    }
    let name: syn::LitStr = syn::parse2(args.stream()).ok()?;
    Some(Site {
        name: name.value(),
        ty,
    })
}

/// Whether a type can be named outside the body: it mentions no item declared in it and
/// is not left to inference.
fn nameable(ty: &TokenStream, local_items: &BTreeSet<String>) -> bool {
    if local_items.contains("*") {
        return false;
    }
    fn visit(tokens: TokenStream, local_items: &BTreeSet<String>) -> bool {
        tokens.into_iter().all(|t| match t {
            TokenTree::Ident(i) => !local_items.contains(&i.to_string()) && i != "Self" && i != "_",
            TokenTree::Group(g) => visit(g.stream(), local_items),
            TokenTree::Punct(p) => p.as_char() != '_',
            TokenTree::Literal(_) => true,
        })
    }
    !ty.is_empty() && visit(ty.clone(), local_items)
}

/// `Workflow::signals`' static table.
pub fn table(sites: &Sites) -> TokenStream {
    let closed = !sites.open && !sites.sites.is_empty();
    let entries = sites.sites.iter().map(|s| {
        let name = &s.name;
        let ty = match &s.ty {
            Some(ty) => quote!(::core::option::Option::Some(::flow::SignalType::of::<#ty>())),
            None => quote!(::core::option::Option::None),
        };
        quote!(::flow::SignalSite { name: #name, ty: #ty })
    });
    quote! {
        static SITES: ::flow::SignalSites = ::flow::SignalSites {
            closed: #closed,
            sites: &[#(#entries),*],
        };
        &SITES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(body: TokenStream) -> Sites {
        find(&syn::parse2(quote!({ #body })).unwrap())
    }

    #[test]
    fn finds_typed_and_untyped_sites_also_in_macros() {
        let found = sites(quote! {
            let a = flow::signal::<Vec<u32>>("items").await;
            let b: bool = flow::signal("approval").await;
            flow::select!(flow::signal::<String>("stop"), flow::sleep(d)).await;
            engine.signal("x", "y", &1);
        });
        assert!(!found.open);
        let names: Vec<_> = found.sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["items", "approval", "stop"]);
        assert_eq!(
            found.sites[0].ty.as_ref().map(|t| t.to_string()),
            Some("Vec < u32 >".to_string())
        );
        assert!(found.sites[1].ty.is_none());
    }

    #[test]
    fn computed_names_bare_calls_and_local_types_leave_gaps() {
        assert!(sites(quote!(flow::signal::<u32>(&name).await;)).open);
        assert!(sites(quote!(signal::<u32>("x").await;)).open);
        let local = sites(quote! {
            struct Msg;
            flow::signal::<Msg>("m").await;
        });
        assert!(!local.open);
        assert!(local.sites[0].ty.is_none());
        assert!(sites(quote!(flow::signal::<_>("m").await;)).sites[0]
            .ty
            .is_none());
    }
}
