//! User macros in a workflow body. A proc macro sees a macro call as opaque tokens, so
//! it cannot compile a `return`, a `?` or a jump out of a loop that the call expands to:
//! in the step function they would leave the step function itself. What it can see is
//! refused at the user's span, with the fix, instead of a rustc type error about
//! generated code:
//! - a call of a `macro_rules!` defined in the body whose expansion contains one
//!   (directly or through another such macro);
//! - a `return` or `?` written in the arguments of a macro the compiler does not
//!   compile itself (its expansion decides where they end up).
//!
//! A macro defined outside the body cannot be seen into; the README says so.

use std::collections::BTreeMap;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, Token};

use crate::ctxt::Ctxt;
use crate::lower::tokens_await;
use crate::rewrite::{is_expr_list_macro, vec_repeat};

/// Control flow found in a macro's expansion or arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// `return` or `?`: leaves the function.
    Exit(&'static str),
    /// An unlabelled `break`/`continue` outside any loop of the expansion: leaves the
    /// loop the call is in.
    Jump(&'static str),
}

/// Reports calls of body macros that expand to control flow, and `return`/`?` inside
/// the arguments of macros the compiler does not see into.
pub(crate) fn check_macros(body: &syn::Block, cx: &Ctxt) {
    let mut defined = BTreeMap::new();
    DefinitionFinder {
        found: &mut defined,
    }
    .visit_block(body);
    // A macro calling one that expands to control flow expands to it too.
    loop {
        let mut changed = false;
        let known: Vec<(String, Flow)> = defined
            .iter()
            .filter_map(|(n, d): (&String, &Definition)| d.flow.map(|(f, _)| (n.clone(), f)))
            .collect();
        for d in defined.values_mut() {
            if d.flow.is_none() {
                if let Some((_, flow)) = known.iter().find(|(n, _)| calls(&d.rules, n)) {
                    d.flow = Some((*flow, d.name_span));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut calls = CallChecker {
        defined: &defined,
        loops: Vec::new(),
        cx,
    };
    calls.visit_block(body);
}

/// A `macro_rules!` defined in the body.
struct Definition {
    rules: TokenStream,
    name_span: Span,
    /// What its expansion does, and where in its definition.
    flow: Option<(Flow, Span)>,
}

struct DefinitionFinder<'a> {
    found: &'a mut BTreeMap<String, Definition>,
}

impl<'ast> Visit<'ast> for DefinitionFinder<'_> {
    fn visit_item_macro(&mut self, m: &'ast syn::ItemMacro) {
        let (Some(name), true) = (&m.ident, m.mac.path.is_ident("macro_rules")) else {
            return;
        };
        let flow = transcribers(&m.mac.tokens)
            .iter()
            .find_map(transcriber_flow);
        self.found.insert(
            name.to_string(),
            Definition {
                rules: m.mac.tokens.clone(),
                name_span: name.span(),
                flow,
            },
        );
    }

    fn visit_item_fn(&mut self, _: &'ast syn::ItemFn) {}
}

/// The transcriber of each rule `(matcher) => { transcriber };`.
fn transcribers(rules: &TokenStream) -> Vec<TokenStream> {
    let tokens: Vec<TokenTree> = rules.clone().into_iter().collect();
    tokens
        .windows(3)
        .filter_map(|w| match w {
            [TokenTree::Punct(eq), TokenTree::Punct(gt), TokenTree::Group(g)]
                if eq.as_char() == '=' && gt.as_char() == '>' =>
            {
                Some(g.stream())
            }
            _ => None,
        })
        .collect()
}

/// Whether `tokens` call the macro `name` (`name!`).
fn calls(tokens: &TokenStream, name: &str) -> bool {
    let tokens: Vec<TokenTree> = tokens.clone().into_iter().collect();
    tokens.iter().enumerate().any(|(i, t)| match t {
        TokenTree::Group(g) => calls(&g.stream(), name),
        TokenTree::Ident(id) => {
            id == name
                && matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!')
                && !matches!(i.checked_sub(1).and_then(|j| tokens.get(j)),
                             Some(TokenTree::Punct(p)) if p.as_char() == '$')
        }
        _ => false,
    })
}

/// The control flow a transcriber expands to. It is parsed as statements when it can be
/// (metavariables stand in as identifiers), so a `?` inside a closure of the expansion
/// is told apart; otherwise its tokens are scanned.
fn transcriber_flow(t: &TokenStream) -> Option<(Flow, Span)> {
    if let Some(stmts) = parse_transcriber(t) {
        let mut finder = FlowFinder::default();
        for s in &stmts {
            finder.visit_stmt(s);
        }
        return finder.found;
    }
    scan_flow(t, 0)
}

/// `$name` replaced by `name`; `None` if the transcriber has repetitions or is not a
/// sequence of statements.
fn parse_transcriber(t: &TokenStream) -> Option<Vec<syn::Stmt>> {
    fn strip(t: TokenStream) -> Option<TokenStream> {
        let mut out = Vec::new();
        let mut dollar = false;
        for tt in t {
            match tt {
                TokenTree::Punct(p) if p.as_char() == '$' => dollar = true,
                TokenTree::Group(g) => {
                    if dollar {
                        return None;
                    }
                    let mut ng = proc_macro2::Group::new(g.delimiter(), strip(g.stream())?);
                    ng.set_span(g.span());
                    out.push(TokenTree::Group(ng));
                }
                other => {
                    dollar = false;
                    out.push(other);
                }
            }
        }
        Some(out.into_iter().collect())
    }
    let stripped = strip(t.clone())?;
    syn::parse::Parser::parse2(syn::Block::parse_within, stripped).ok()
}

/// Token scan of a transcriber: `return`, a postfix `?` (after an identifier, a literal
/// or a group other than a `$(..)` repetition), and `break`/`continue` without a label
/// outside a loop of the transcriber (`depth` counts the loops around).
fn scan_flow(t: &TokenStream, depth: usize) -> Option<(Flow, Span)> {
    let tokens: Vec<TokenTree> = t.clone().into_iter().collect();
    // A loop's body is the next brace group after its keyword.
    let mut loop_head = false;
    for (i, tt) in tokens.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| &tokens[j]);
        let before_prev = i.checked_sub(2).map(|j| &tokens[j]);
        match tt {
            TokenTree::Ident(id) if id == "return" => {
                return Some((Flow::Exit("return"), id.span()))
            }
            TokenTree::Ident(id) if id == "loop" || id == "while" || id == "for" => {
                loop_head = true
            }
            TokenTree::Ident(id) if (id == "break" || id == "continue") && depth == 0 => {
                let labelled =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '\'');
                if !labelled {
                    let what = if id == "break" { "break" } else { "continue" };
                    return Some((Flow::Jump(what), id.span()));
                }
            }
            TokenTree::Punct(p) if p.as_char() == '?' => {
                let repetition = matches!(prev, Some(TokenTree::Group(_)))
                    && matches!(before_prev, Some(TokenTree::Punct(d)) if d.as_char() == '$');
                let postfix = matches!(
                    prev,
                    Some(TokenTree::Ident(_) | TokenTree::Literal(_) | TokenTree::Group(_))
                );
                if postfix && !repetition {
                    return Some((Flow::Exit("?"), p.span()));
                }
            }
            TokenTree::Group(g) => {
                let body = loop_head && g.delimiter() == Delimiter::Brace;
                if body {
                    loop_head = false;
                }
                if let Some(found) = scan_flow(&g.stream(), depth + usize::from(body)) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// Finds `return`, `?` and unlabelled `break`/`continue` that would leave the code they
/// are in, skipping closures, async blocks, items and loops (for jumps).
#[derive(Default)]
struct FlowFinder {
    found: Option<(Flow, Span)>,
    loops: usize,
}

impl<'ast> Visit<'ast> for FlowFinder {
    fn visit_expr(&mut self, e: &'ast Expr) {
        if self.found.is_some() {
            return;
        }
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Return(r) => self.found = Some((Flow::Exit("return"), r.return_token.span)),
            Expr::Try(t) => self.found = Some((Flow::Exit("?"), t.question_token.span)),
            Expr::Break(b) if b.label.is_none() && self.loops == 0 => {
                self.found = Some((Flow::Jump("break"), b.break_token.span))
            }
            Expr::Continue(c) if c.label.is_none() && self.loops == 0 => {
                self.found = Some((Flow::Jump("continue"), c.continue_token.span))
            }
            Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_) => {
                self.loops += 1;
                syn::visit::visit_expr(self, e);
                self.loops -= 1;
            }
            Expr::Macro(m) => self.visit_macro(&m.mac),
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if self.found.is_none() {
            if let Some(args) = expr_args(mac) {
                for a in &args {
                    self.visit_expr(a);
                }
            }
        }
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The arguments of a macro call, if they parse as comma-separated expressions.
fn expr_args(mac: &syn::Macro) -> Option<Punctuated<Expr, Token![,]>> {
    if let Some((elem, count)) = vec_repeat(mac) {
        return Some([elem, count].into_iter().collect());
    }
    mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        .ok()
}

struct CallChecker<'a> {
    defined: &'a BTreeMap<String, Definition>,
    /// Enclosing loops of the body: whether each has a step (is compiled into blocks).
    loops: Vec<bool>,
    cx: &'a Ctxt,
}

impl CallChecker<'_> {
    fn check_call(&mut self, mac: &syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if let (Some(def), true) = (self.defined.get(&name), mac.path.segments.len() == 1) {
            let jump_leaves_step = self.loops.last().copied().unwrap_or(false);
            match def.flow {
                Some((Flow::Exit(what), at)) => self.refuse_call(mac, &name, what, at),
                Some((Flow::Jump(what), at)) if jump_leaves_step => {
                    self.refuse_call(mac, &name, what, at)
                }
                _ => {}
            }
        }
        if is_expr_list_macro(mac) || vec_repeat(mac).is_some() || mac.path.is_ident("macro_rules")
        {
            // Compiled by the lowering like any expression.
            if let Some(args) = expr_args(mac) {
                for a in &args {
                    self.visit_expr(a);
                }
            }
            return;
        }
        let found = match expr_args(mac) {
            Some(args) => {
                let mut finder = FlowFinder {
                    found: None,
                    loops: 1,
                };
                args.iter().for_each(|a| finder.visit_expr(a));
                finder.found
            }
            None => scan_flow(&mac.tokens, 1),
        };
        if let Some((Flow::Exit(what), at)) = found {
            self.cx.error_at(
                at,
                format!(
                    "`{what}` inside the arguments of `{name}!` cannot be compiled into a \
                     #[workflow]: where it ends up depends on the macro's expansion, which \
                     the #[workflow] cannot see; bind the value with a `let` before the call \
                     (`let v = ...{what_fix};`) and pass `v` to `{name}!`",
                    what_fix = if what == "?" { "?" } else { "" },
                ),
            );
        }
    }

    fn refuse_call(&self, mac: &syn::Macro, name: &str, what: &str, at: Span) {
        let line = at.start().line;
        let fix = if what == "break" || what == "continue" {
            format!(
                "make the macro produce a value (e.g. a `bool`) and write the `{what}` at the \
                 call (`if {name}!(..) {{ {what}; }}`), or use a function"
            )
        } else {
            format!(
                "make the macro produce a value (e.g. a `Result`) and write the `?` or \
                 `return` at the call (`let v = {name}!(..)?;`), or use a function"
            )
        };
        self.cx.error_spanned_by(
            &mac.path,
            format!(
                "`{name}!` expands to a `{what}` (line {line}), which a #[workflow] cannot \
                 compile inside a macro's expansion: it compiles only the control flow it \
                 sees in the body; {fix}"
            ),
        );
    }
}

impl<'ast> Visit<'ast> for CallChecker<'_> {
    fn visit_expr(&mut self, e: &'ast Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Loop(l) => self.in_loop(tokens_await(&l.body.to_token_stream()), e),
            Expr::While(w) => self.in_loop(tokens_await(&w.body.to_token_stream()), e),
            Expr::ForLoop(f) => self.in_loop(tokens_await(&f.body.to_token_stream()), e),
            Expr::Macro(m) => self.check_call(&m.mac),
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        self.check_call(&m.mac);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

impl CallChecker<'_> {
    fn in_loop(&mut self, with_step: bool, e: &Expr) {
        self.loops.push(with_step);
        syn::visit::visit_expr(self, e);
        self.loops.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(body: TokenStream) -> Vec<String> {
        let block: syn::Block = syn::parse2(quote!({ #body })).unwrap();
        let cx = Ctxt::new();
        check_macros(&block, &cx);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_body_macro_with_return_or_question_mark_is_refused_at_its_call() {
        let found = errors(quote! {
            macro_rules! bail { ($e:expr) => { return Err($e) }; }
            macro_rules! get { ($e:expr) => { $e? }; }
            macro_rules! wrap { ($e:expr) => { get!($e) + 1 }; }
            if x < 0 { bail!("negative".to_string()); }
            let a = get!(num(x).await);
            let b = wrap!(num(a).await);
            Ok(a + b)
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("`bail!` expands to a `return`"),
            "{found:?}"
        );
        assert!(found[1].starts_with("`get!` expands to a `?`"), "{found:?}");
        assert!(
            found[2].starts_with("`wrap!` expands to a `?`"),
            "{found:?}"
        );
    }

    #[test]
    fn harmless_macros_and_closures_are_accepted() {
        let found = errors(quote! {
            macro_rules! twice { ($e:expr) => { $e * 2 }; }
            macro_rules! parse { ($s:expr) => { (|| -> Result<i64, String> { Ok($s.parse::<i64>().map_err(|e| e.to_string())?) })() }; }
            macro_rules! opt { ($($e:expr),* $(,)?) => { vec![$($e),*] }; }
            macro_rules! stop { () => { break }; }
            for i in 0..3 { if i > 1 { stop!(); } }
            let v = opt!(1, 2,);
            let a = twice!(x + 1);
            let p = parse!("4")?;
            println!("{}", x?);
            Ok(a + p + v.len() as i64)
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_jump_out_of_a_loop_with_steps_is_refused() {
        let found = errors(quote! {
            macro_rules! stop { () => { break }; }
            loop { num(x).await?; stop!(); }
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("`stop!` expands to a `break`"),
            "{found:?}"
        );
    }

    #[test]
    fn control_flow_in_an_opaque_macros_arguments_is_refused() {
        let found = errors(quote! {
            let ok = matches!(parse(s)?, Some(3));
            log!("{}", num(x)?);
            let j = json!({ "a": a? });
            Ok(ok)
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("`?` inside the arguments of `matches!`"),
            "{found:?}"
        );
    }
}
