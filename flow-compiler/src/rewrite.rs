//! Rewrites `return` and `?` in workflow code that runs inside the generated step
//! function, so they end the run with the workflow's output instead of returning from
//! the step function.
//!
//! ```text
//! return e;   =>  return { let out: Out = e; __flow_ctl.complete::<Out>(&out) };
//! e?          =>  match QuestionMark::branch(e) {
//!                     Continue(v) => v,
//!                     Break(r) => return { let out: Out = FromQuestionResidual::from_residual(r); .. },
//!                 }
//! ```
//! Closures, async blocks and nested items keep their own `return` and `?`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, Token};

/// Macros whose arguments are plain comma-separated expressions, so `?`, `return` and
/// `.await` inside them can be compiled.
pub const EXPR_LIST_MACROS: &[&str] = &[
    "format",
    "print",
    "println",
    "eprint",
    "eprintln",
    "panic",
    "write",
    "writeln",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "vec",
    "format_args",
    "todo",
    "unimplemented",
    "unreachable",
    "dbg",
];

/// Whether `mac` is one of [`EXPR_LIST_MACROS`].
pub fn is_expr_list_macro(mac: &syn::Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| EXPR_LIST_MACROS.contains(&s.ident.to_string().as_str()))
}

/// The arguments of an expression-list macro, if they parse as such.
pub fn macro_args(mac: &syn::Macro) -> Option<Punctuated<Expr, Token![,]>> {
    if !is_expr_list_macro(mac) {
        return None;
    }
    mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        .ok()
}

/// The element and count of `vec![elem; count]`.
pub fn vec_repeat(mac: &syn::Macro) -> Option<(Expr, Expr)> {
    if mac.path.segments.last().is_none_or(|s| s.ident != "vec") {
        return None;
    }
    mac.parse_body_with(|input: syn::parse::ParseStream| {
        let elem: Expr = input.parse()?;
        input.parse::<Token![;]>()?;
        let count: Expr = input.parse()?;
        Ok((elem, count))
    })
    .ok()
}

/// Rewrites `return` and `?` in `expr` (see the module docs). Sets `*exits` when it
/// rewrote any, since such code can end the run.
pub struct ExitRewriter<'a> {
    /// The workflow's return type.
    pub output: &'a TokenStream,
    /// Set to true when a `return` or `?` was rewritten.
    pub exits: bool,
}

impl ExitRewriter<'_> {
    /// The tokens that end the run with `value`.
    pub fn complete(&self, value: TokenStream, span: proc_macro2::Span) -> TokenStream {
        let output = self.output;
        // Bound with the output type first, so a diverging value (`panic!()`, `todo!()`,
        // a `loop` that only returns) coerces to it as in the plain function.
        quote_spanned!(span=> return {
            let __flow_output: #output = #value;
            __flow_ctl.complete::<#output>(&__flow_output)
        })
    }
}

impl VisitMut for ExitRewriter<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Return(r) => {
                if let Some(v) = &mut r.expr {
                    self.visit_expr_mut(v);
                }
                let value = match &r.expr {
                    Some(v) => v.to_token_stream(),
                    None => quote!(()),
                };
                let done = self.complete(value, r.span());
                *e = syn::parse_quote!(#done);
                self.exits = true;
            }
            Expr::Try(t) => {
                self.visit_expr_mut(&mut t.expr);
                let inner = &t.expr;
                let span = t.question_token.span();
                let residual = quote_spanned!(span=>
                    ::flow::__private::FromQuestionResidual::from_residual(__flow_residual));
                let done = self.complete(residual, span);
                *e = syn::parse_quote_spanned!(span=>
                    match ::flow::__private::QuestionMark::branch(#inner) {
                        ::core::ops::ControlFlow::Continue(__flow_value) => __flow_value,
                        ::core::ops::ControlFlow::Break(__flow_residual) => #done,
                    }
                );
                self.exits = true;
            }
            Expr::Macro(m) => self.visit_macro_mut(&mut m.mac),
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        if let Some(mut args) = macro_args(mac) {
            for a in args.iter_mut() {
                self.visit_expr_mut(a);
            }
            mac.tokens = args.to_token_stream();
        } else if let Some((mut elem, mut count)) = vec_repeat(mac) {
            self.visit_expr_mut(&mut elem);
            self.visit_expr_mut(&mut count);
            mac.tokens = quote!(#elem; #count);
        }
    }

    fn visit_stmt_mut(&mut self, s: &mut syn::Stmt) {
        if let syn::Stmt::Macro(m) = s {
            self.visit_macro_mut(&mut m.mac);
        } else {
            syn::visit_mut::visit_stmt_mut(self, s);
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(mut e: Expr) -> (String, bool) {
        let out = quote!(Out);
        let mut r = ExitRewriter {
            output: &out,
            exits: false,
        };
        r.visit_expr_mut(&mut e);
        (e.to_token_stream().to_string(), r.exits)
    }

    #[test]
    fn rewrites_return_and_question_mark() {
        let (s, exits) = rewrite(syn::parse_quote!(if a {
            return b?;
        }));
        assert!(exits);
        assert!(s.contains("complete :: < Out >"));
        assert!(s.contains("QuestionMark :: branch (b)"));
    }

    #[test]
    fn leaves_closures_and_items_alone() {
        let (s, exits) = rewrite(syn::parse_quote!(xs.iter().map(|x| {
            return x?;
        })));
        assert!(!exits);
        assert!(!s.contains("complete"));
    }

    #[test]
    fn rewrites_inside_format_macros() {
        let (s, exits) = rewrite(syn::parse_quote!(println!("{}", f()?)));
        assert!(exits, "{s}");
    }
}
