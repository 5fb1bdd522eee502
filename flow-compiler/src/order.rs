//! Evaluation order of operands around a step.
//!
//! Rust evaluates operands left to right. When a later operand awaits, the state machine
//! evaluates the earlier ones either before the step (bound to a temporary) or after it
//! (left in place in the residual expression). Leaving a read of a place until after
//! the step is only faithful if nothing in between can change the place; this module
//! decides that from how the operand is used and what the later operands do to the
//! place's root local.

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{BinOp, Expr, Ident};

use crate::rewrite::macro_args;

/// How an operand is consumed by the expression it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// Moved or copied at once (tuple and array elements, call arguments, struct
    /// fields, arithmetic operands, `vec!`): a later write or `&mut self` call on the
    /// place would not be seen by plain Rust.
    Value,
    /// A receiver, a callee, an indexed collection or a comparison operand: borrowed by
    /// plain Rust until the whole expression is evaluated, so only a primitive copied by
    /// value can observe a later assignment.
    Operand,
    /// Borrowed by the macro (`format!` and friends): plain Rust rejects any later
    /// write, and reads through `&self` show the same value either way.
    Borrow,
}

/// The local a place expression reads from (`x`, `x.f`, `x[0]`, `&x.f`, `*x`), if the
/// expression is a plain read of a place: evaluating it has no side effect but a
/// bounds check.
pub(crate) fn place_root(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => p.path.get_ident(),
        Expr::Field(f) => place_root(&f.base),
        Expr::Paren(p) => place_root(&p.expr),
        Expr::Group(g) => place_root(&g.expr),
        Expr::Reference(r) => place_root(&r.expr),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => place_root(&u.expr),
        Expr::Index(i) if is_simple_index(&i.index) => place_root(&i.expr),
        _ => None,
    }
}

/// A literal, a place, or a range of those (`&s[..n]`): indexing with it has no side
/// effect but a bounds check.
fn is_simple_index(e: &Expr) -> bool {
    match e {
        Expr::Range(r) => [&r.start, &r.end]
            .into_iter()
            .all(|b| b.as_deref().is_none_or(is_simple_index)),
        _ => matches!(e, Expr::Lit(_)) || place_root(e).is_some(),
    }
}

/// The locals read by the index expressions of a place (`i` and `n` in `v[i][..n]`):
/// copied when the place is evaluated, so a later write to them must not be seen.
pub(crate) fn index_roots(e: &Expr) -> Vec<&Ident> {
    fn indexes_of<'e>(e: &'e Expr, out: &mut Vec<&'e Ident>) {
        match e {
            Expr::Range(r) => {
                for b in [&r.start, &r.end].into_iter().flatten() {
                    indexes_of(b, out);
                }
            }
            other => out.extend(place_root(other)),
        }
    }
    let mut out = Vec::new();
    let mut e = e;
    loop {
        match e {
            Expr::Field(f) => e = &f.base,
            Expr::Paren(p) => e = &p.expr,
            Expr::Group(g) => e = &g.expr,
            Expr::Reference(r) => e = &r.expr,
            Expr::Unary(u) => e = &u.expr,
            Expr::Index(i) => {
                indexes_of(&i.index, &mut out);
                e = &i.expr;
            }
            _ => return out,
        }
    }
}

/// Whether evaluating the place indexes a collection (and so may panic).
pub(crate) fn indexes(e: &Expr) -> bool {
    match e {
        Expr::Index(_) => true,
        Expr::Field(f) => indexes(&f.base),
        Expr::Paren(p) => indexes(&p.expr),
        Expr::Group(g) => indexes(&g.expr),
        Expr::Reference(r) => indexes(&r.expr),
        Expr::Unary(u) => indexes(&u.expr),
        _ => false,
    }
}

/// Whether the operands in `later` may change what a read of `root` used as `how`
/// observes, so the read must happen before them.
pub(crate) fn changed_by(root: &Ident, how: Use, later: &[&Expr]) -> bool {
    let method_calls_count = match how {
        Use::Borrow => return false,
        Use::Value => true,
        Use::Operand => false,
    };
    let mut v = Writes {
        root,
        method_calls_count,
        found: false,
    };
    for e in later {
        v.visit_expr(e);
    }
    v.found
}

/// How a binary operator consumes its left operand.
pub(crate) fn binary_use(op: &BinOp) -> Use {
    match op {
        BinOp::Eq(_) | BinOp::Ne(_) | BinOp::Lt(_) | BinOp::Le(_) | BinOp::Gt(_) | BinOp::Ge(_) => {
            Use::Operand
        }
        _ => Use::Value,
    }
}

/// How an expression-list macro consumes its arguments.
pub(crate) fn macro_use(mac: &syn::Macro) -> Use {
    let name = mac.path.segments.last().map(|s| s.ident.to_string());
    match name.as_deref() {
        Some("vec" | "dbg") => Use::Value,
        _ => Use::Borrow,
    }
}

/// Looks for an assignment to `root`, a `&mut` borrow of it, a closure or macro that
/// may do either, and (when `method_calls_count`) a method call on it.
struct Writes<'r> {
    root: &'r Ident,
    method_calls_count: bool,
    found: bool,
}

impl Writes<'_> {
    fn is_root(&self, e: &Expr) -> bool {
        place_root(e).is_some_and(|r| r == self.root)
    }
}

impl<'ast> Visit<'ast> for Writes<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        if self.found {
            return;
        }
        match e {
            Expr::Assign(a) if self.is_root(&a.left) => self.found = true,
            Expr::Binary(b) if is_compound(&b.op) && self.is_root(&b.left) => self.found = true,
            Expr::Reference(r) if r.mutability.is_some() && self.is_root(&r.expr) => {
                self.found = true
            }
            Expr::MethodCall(m) if self.method_calls_count && self.is_root(&m.receiver) => {
                self.found = true
            }
            Expr::Closure(c) => {
                if tokens_mention(&quote::ToTokens::to_token_stream(&c.body), self.root) {
                    self.found = true;
                }
            }
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        match macro_args(mac) {
            Some(args) => args.iter().for_each(|a| self.visit_expr(a)),
            // An opaque macro: any mention may be a use by value; a borrowed operand is
            // only changed by what looks like a write (`x =`, `x +=`, `&mut x`).
            None if self.method_calls_count => {
                self.found |= tokens_mention(&mac.tokens, self.root);
            }
            None => self.found |= tokens_write(&mac.tokens, self.root),
        }
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn is_compound(op: &BinOp) -> bool {
    matches!(
        op,
        BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_)
            | BinOp::RemAssign(_)
            | BinOp::BitXorAssign(_)
            | BinOp::BitAndAssign(_)
            | BinOp::BitOrAssign(_)
            | BinOp::ShlAssign(_)
            | BinOp::ShrAssign(_)
    )
}

fn tokens_mention(tokens: &TokenStream, name: &Ident) -> bool {
    tokens.clone().into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => &i == name,
        TokenTree::Group(g) => tokens_mention(&g.stream(), name),
        _ => false,
    })
}

/// Whether `tokens` look like they write `name`: `name =` (not `==`), `name op=`, or
/// `&mut name`.
fn tokens_write(tokens: &TokenStream, name: &Ident) -> bool {
    let tts: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let punct = |i: usize| match tts.get(i) {
        Some(TokenTree::Punct(p)) => Some(p.as_char()),
        _ => None,
    };
    let is_mut = |i: usize| matches!(tts.get(i), Some(TokenTree::Ident(m)) if m == "mut");
    tts.iter().enumerate().any(|(k, tt)| match tt {
        TokenTree::Group(g) => tokens_write(&g.stream(), name),
        TokenTree::Ident(i) if i == name => {
            let assigns = match (punct(k + 1), punct(k + 2)) {
                (Some('='), next) => next != Some('='),
                (Some('+' | '-' | '*' | '/' | '%' | '^' | '&' | '|'), Some('=')) => true,
                (Some('<'), Some('<')) | (Some('>'), Some('>')) => punct(k + 3) == Some('='),
                _ => false,
            };
            let borrowed_mut = k >= 2 && is_mut(k - 1) && punct(k - 2) == Some('&');
            assigns || borrowed_mut
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(e: Expr) -> Option<String> {
        place_root(&e).map(|i| i.to_string())
    }

    #[test]
    fn places_have_roots() {
        assert_eq!(root(syn::parse_quote!(a.b.c)), Some("a".into()));
        assert_eq!(root(syn::parse_quote!(&names[0])), Some("names".into()));
        assert_eq!(root(syn::parse_quote!(*r)), Some("r".into()));
        assert_eq!(root(syn::parse_quote!(f().x)), None);
        assert_eq!(root(syn::parse_quote!(v[f()])), None);
        assert_eq!(root(syn::parse_quote!(std::f64::consts::PI)), None);
    }

    #[test]
    fn later_operands_that_change_a_place() {
        let n: Ident = syn::parse_quote!(n);
        let check = |how, e: Expr| changed_by(&n, how, &[&e]);
        assert!(check(
            Use::Value,
            syn::parse_quote!({
                n += 1;
                t(n).await
            })
        ));
        assert!(check(
            Use::Value,
            syn::parse_quote!({
                n = 2;
                t(n).await
            })
        ));
        assert!(check(Use::Value, syn::parse_quote!(t(bump(&mut n)).await)));
        assert!(check(
            Use::Value,
            syn::parse_quote!({
                n.bump();
                t(1).await
            })
        ));
        assert!(check(
            Use::Value,
            syn::parse_quote!({
                (|| n += 1)();
                t(1).await
            })
        ));
        assert!(!check(
            Use::Operand,
            syn::parse_quote!({
                n.len();
                t(1).await
            })
        ));
        assert!(check(
            Use::Operand,
            syn::parse_quote!({
                n.0 = 1;
                t(1).await
            })
        ));
        assert!(!check(Use::Value, syn::parse_quote!(t(n + 1).await)));
        assert!(!check(
            Use::Borrow,
            syn::parse_quote!({
                n += 1;
                t(n).await
            })
        ));
    }
}
