//! Body checks for `#[workflow]` that the lowering would otherwise only see as rustc
//! errors far from the cause: `.await` where no state machine can resume.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::Expr;

use crate::ctxt::Ctxt;

/// Reports `.await` inside closures and async blocks of a workflow body.
pub(crate) fn check_body(body: &syn::Block, errors: &Ctxt) {
    let mut v = AwaitPlacement {
        inside: None,
        errors,
    };
    v.visit_block(body);
}

struct AwaitPlacement<'a> {
    /// The enclosing closure or async block, if any.
    inside: Option<(&'static str, Span)>,
    errors: &'a Ctxt,
}

impl<'ast> Visit<'ast> for AwaitPlacement<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Closure(c) => {
                let saved = self.inside.replace(("a closure", c.or1_token.span()));
                self.visit_expr(&c.body);
                self.inside = saved;
            }
            Expr::Async(a) => {
                if self.inside.is_none() {
                    self.errors.error_at(
                        a.async_token.span(),
                        "async blocks cannot be compiled into a #[workflow]'s state machine: \
                         await durable operations directly in the body, or use `flow::join!` \
                         to run several at once",
                    );
                }
            }
            Expr::Await(a) => {
                if let Some((what, _)) = self.inside {
                    self.errors.error_at(
                        a.await_token.span(),
                        format!(
                            "`.await` inside {what} cannot be compiled into a #[workflow]'s \
                             state machine; move it out of {what} (e.g. a `for` loop instead \
                             of `.map(|x| ...)`), or into a #[task]"
                        ),
                    );
                }
                self.visit_expr(&a.base);
            }
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}
