//! Which local names a piece of code mentions, and which names a pattern binds.
//!
//! Both are deliberately conservative: mentioning a name that turns out to be something
//! else only keeps a local alive a little longer; missing a mention would lose a value.

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{Expr, Ident, Pat};

/// Every identifier `expr` may read as a local of the code around it: single-segment
/// paths, identifiers inside macro invocations, and `{name}` captures inside their string
/// literals; not a name where a pattern inside `expr` binds it (a match arm's, a
/// closure's, a `for`'s, an `if let`'s or `while let`'s, or a block's `let`), since there
/// it is that binding. (Counting such a name as the outer local would keep a local that
/// was moved alive across a step, which rustc refuses.)
pub fn mentioned(expr: &Expr) -> Vec<Ident> {
    let mut v = Mentions {
        out: Vec::new(),
        bound: Vec::new(),
    };
    v.visit_expr(expr);
    v.out
}

/// Like [`mentioned`], for code the lowering emits (statements or an expression): parsed
/// when it parses, so names bound inside it by patterns are told apart from the
/// locals around it; scanned token by token otherwise. A `let` at the top level of the
/// code still counts its names as mentions after it (the lowering declares those).
pub fn mentioned_in_code(tokens: &TokenStream) -> Vec<Ident> {
    let parsed = syn::parse::Parser::parse2(syn::Block::parse_within, tokens.clone());
    let Ok(stmts) = parsed else {
        return mentioned_in_tokens(tokens);
    };
    let mut v = Mentions {
        out: Vec::new(),
        bound: Vec::new(),
    };
    for stmt in &stmts {
        v.visit_stmt(stmt);
    }
    v.out
}

/// Like [`mentioned`], for raw tokens (macro arguments).
pub fn mentioned_in_tokens(tokens: &TokenStream) -> Vec<Ident> {
    let mut out = Vec::new();
    scan_tokens(tokens, &mut out);
    out
}

struct Mentions {
    out: Vec<Ident>,
    /// Names bound by patterns inside the expression, innermost last.
    bound: Vec<String>,
}

impl Mentions {
    fn push(&mut self, ident: &Ident) {
        if !self.bound.iter().any(|b| ident == b) {
            self.out.push(ident.clone());
        }
    }

    /// Visits `inside` with the names of `bindings` bound.
    fn with_bound(&mut self, bindings: Vec<Binding>, inside: impl FnOnce(&mut Self)) {
        let depth = self.bound.len();
        self.bound
            .extend(bindings.into_iter().map(|b| b.ident.to_string()));
        inside(self);
        self.bound.truncate(depth);
    }
}

impl<'ast> Visit<'ast> for Mentions {
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if p.qself.is_none() && p.path.leading_colon.is_none() && p.path.segments.len() == 1 {
            self.push(&p.path.segments[0].ident);
        }
        syn::visit::visit_expr_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut found = Vec::new();
        scan_tokens(&m.tokens, &mut found);
        for i in &found {
            self.push(i);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.visit_pat(&arm.pat);
        self.with_bound(bindings(&arm.pat), |v| {
            if let Some((_, guard)) = &arm.guard {
                v.visit_expr(guard);
            }
            v.visit_expr(&arm.body);
        });
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        let params: Vec<Binding> = c.inputs.iter().flat_map(let_bindings).collect();
        self.with_bound(params, |v| v.visit_expr(&c.body));
    }

    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.with_bound(let_bindings(&f.pat), |v| v.visit_block(&f.body));
    }

    fn visit_expr_if(&mut self, i: &'ast syn::ExprIf) {
        match &*i.cond {
            Expr::Let(l) => {
                self.visit_pat(&l.pat);
                self.visit_expr(&l.expr);
                self.with_bound(bindings(&l.pat), |v| v.visit_block(&i.then_branch));
            }
            cond => {
                self.visit_expr(cond);
                self.visit_block(&i.then_branch);
            }
        }
        if let Some((_, e)) = &i.else_branch {
            self.visit_expr(e);
        }
    }

    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        match &*w.cond {
            Expr::Let(l) => {
                self.visit_pat(&l.pat);
                self.visit_expr(&l.expr);
                self.with_bound(bindings(&l.pat), |v| v.visit_block(&w.body));
            }
            cond => {
                self.visit_expr(cond);
                self.visit_block(&w.body);
            }
        }
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        let depth = self.bound.len();
        for stmt in &b.stmts {
            match stmt {
                syn::Stmt::Local(l) => {
                    // The value and the `else` see the names from before the `let`.
                    if let Some(init) = &l.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, d)) = &init.diverge {
                            self.visit_expr(d);
                        }
                    }
                    self.visit_pat(&l.pat);
                    self.bound.extend(
                        let_bindings(&l.pat)
                            .into_iter()
                            .map(|b| b.ident.to_string()),
                    );
                }
                other => self.visit_stmt(other),
            }
        }
        self.bound.truncate(depth);
    }

    // Items nested in a body cannot see its locals.
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// Identifiers that may name a local: not a field or method after a single `.`, not a
/// path segment next to `::`, not the name of a macro (`name!(..)`).
fn scan_tokens(tokens: &TokenStream, out: &mut Vec<Ident>) {
    let tts: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let punct = |i: usize| match tts.get(i) {
        Some(TokenTree::Punct(p)) => Some(p.as_char()),
        _ => None,
    };
    for (k, tt) in tts.iter().enumerate() {
        match tt {
            TokenTree::Ident(i) => {
                let after_dot =
                    k >= 1 && punct(k - 1) == Some('.') && (k < 2 || punct(k - 2) != Some('.'));
                let after_path = k >= 2 && punct(k - 1) == Some(':') && punct(k - 2) == Some(':');
                let before_path = punct(k + 1) == Some(':') && punct(k + 2) == Some(':');
                let macro_name = punct(k + 1) == Some('!')
                    && matches!(tts.get(k + 2), Some(TokenTree::Group(_)));
                // `name: value` in a struct literal or pattern, `x: T` in a binding.
                let field_name = punct(k + 1) == Some(':') && punct(k + 2) != Some(':');
                if !(after_dot || after_path || before_path || macro_name || field_name) {
                    out.push(i.clone());
                }
            }
            TokenTree::Group(g) => scan_tokens(&g.stream(), out),
            TokenTree::Literal(lit) => format_captures(&lit.to_string(), lit.span(), out),
            TokenTree::Punct(_) => {}
        }
    }
}

/// Names a format string reads implicitly: `{name}`, `{name:?}`, and the `width$` /
/// `.prec$` arguments of a format spec (`{x:>width$}`, `{:.prec$}`).
fn format_captures(lit: &str, span: proc_macro2::Span, out: &mut Vec<Ident>) {
    if !lit.ends_with('"') {
        return;
    }
    let mut push = |name: &str| {
        let starts_like_ident = name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
        if starts_like_ident {
            if let Ok(ident) = syn::parse_str::<Ident>(name) {
                out.push(Ident::new(&ident.to_string(), span));
            }
        }
    };
    let mut rest = lit;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            continue;
        }
        let Some(close) = rest.find('}') else { break };
        let field = &rest[..close];
        rest = &rest[close + 1..];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        push(name.trim());
        // Every `ident$` in the spec is a width or precision argument.
        let mut word = String::new();
        for c in spec.chars() {
            if c == '$' {
                push(&word);
            }
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                word.clear();
            }
        }
    }
}

/// A name bound by a pattern.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The bound identifier.
    pub ident: Ident,
    /// Declared `mut`.
    pub mutable: bool,
    /// Bound by reference (`ref` / `ref mut`).
    pub by_ref: bool,
}

/// The names `pat` binds. An identifier starting with an upper-case letter is taken to
/// be a constant or unit variant (`None`, `MAX`), as rustc's naming lints assume.
pub fn bindings(pat: &Pat) -> Vec<Binding> {
    let mut out = Vec::new();
    collect(pat, &mut out);
    out
}

/// The names a `let` pattern binds. A `let` pattern must be irrefutable, so an
/// identifier in it is a binding whatever its case (`let N = ..;`).
pub fn let_bindings(pat: &Pat) -> Vec<Binding> {
    let mut out = Vec::new();
    collect_with(pat, true, &mut out);
    out
}

fn collect(pat: &Pat, out: &mut Vec<Binding>) {
    collect_with(pat, false, out)
}

fn collect_with(pat: &Pat, every_ident_binds: bool, out: &mut Vec<Binding>) {
    let collect = |p: &Pat, out: &mut Vec<Binding>| collect_with(p, every_ident_binds, out);
    match pat {
        Pat::Ident(p) => {
            let name = p.ident.to_string();
            let looks_constant =
                !every_ident_binds && name.chars().next().is_some_and(|c| c.is_uppercase());
            if !looks_constant || p.subpat.is_some() {
                out.push(Binding {
                    ident: p.ident.clone(),
                    mutable: p.mutability.is_some(),
                    by_ref: p.by_ref.is_some(),
                });
            }
            if let Some((_, sub)) = &p.subpat {
                collect(sub, out);
            }
        }
        Pat::Or(p) => {
            if let Some(first) = p.cases.first() {
                collect(first, out);
            }
        }
        Pat::Paren(p) => collect(&p.pat, out),
        Pat::Reference(p) => collect(&p.pat, out),
        Pat::Slice(p) => p.elems.iter().for_each(|e| collect(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| collect(&f.pat, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| collect(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| collect(e, out)),
        Pat::Type(p) => collect(&p.pat, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Vec<Ident>) -> Vec<String> {
        v.into_iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn finds_paths_macro_idents_and_format_captures() {
        let e: Expr = syn::parse_quote!(f(a, b.c, format!("{d} {{e}} {0}", g)));
        assert_eq!(names(mentioned(&e)), ["f", "a", "b", "d", "g"]);
    }

    #[test]
    fn fields_methods_paths_and_macro_names_are_not_locals() {
        let t: TokenStream = syn::parse_quote!(
            user.name.clone() + m::x + Self::y + mac!(z) + s { ..rest } + (0..n) + a
                != b + Bag { name: g, id }
        );
        assert_eq!(
            names(mentioned_in_tokens(&t)),
            ["user", "z", "s", "rest", "n", "a", "b", "Bag", "g", "id"]
        );
    }

    #[test]
    fn format_specs_capture_width_and_precision() {
        let t: TokenStream =
            syn::parse_quote!(format!("[{label:>width$}] {:.prec$} {{no}} {0:1$}", v));
        assert_eq!(
            names(mentioned_in_tokens(&t)),
            ["label", "width", "prec", "v"]
        );
    }

    #[test]
    fn names_bound_inside_are_not_the_outer_locals() {
        let code = quote::quote! {
            let r = match x {
                Ok(a) => a.by + b,
                Err(e) => format!("{e} {a}").len(),
            };
            if let Some(c) = c { c } else { c + 1 };
            for d in ds { d; }
            let f = |g: u8| g + h;
            { let i = 1; i + j };
            while let Some(k) = k.pop() { k; }
            let m = m + 1;
            m
        };
        let found = names(mentioned_in_code(&code));
        for outer in ["x", "b", "a", "c", "ds", "h", "j", "k", "m"] {
            assert!(
                found.contains(&outer.to_string()),
                "`{outer}` missing from {found:?}"
            );
        }
        // Only as bindings: `a` is found once (the `Err` arm's `format!`), not in the
        // `Ok` arm.
        assert_eq!(found.iter().filter(|n| *n == "a").count(), 1);
        for inner in ["e", "d", "g", "i"] {
            assert!(
                !found.contains(&inner.to_string()),
                "`{inner}` found in {found:?}"
            );
        }
        // `c`: in the scrutinee and the `else`, not in the `then` branch.
        assert_eq!(found.iter().filter(|n| *n == "c").count(), 2);
        // Unparsable code falls back to scanning every token.
        let found = names(mentioned_in_code(&quote::quote!(=> a b)));
        assert_eq!(found, ["a", "b"]);
    }

    #[test]
    fn closures_are_scanned_nested_items_are_not() {
        let e: Expr = syn::parse_quote!({
            fn inner(z: u8) -> u8 {
                z
            }
            xs.iter().map(|x| x + y)
        });
        let found = names(mentioned(&e));
        assert!(found.contains(&"y".to_string()) && found.contains(&"xs".to_string()));
        assert!(!found.contains(&"z".to_string()));
    }

    #[test]
    fn pattern_bindings_skip_constants() {
        let p: Pat = syn::parse_quote!((mut a, Some(b), None, Point { x, y: ref yy }, MAX));
        let b = bindings(&p);
        let n: Vec<_> = b.iter().map(|b| b.ident.to_string()).collect();
        assert_eq!(n, ["a", "b", "x", "yy"]);
        assert!(b[0].mutable && b[3].by_ref);
    }
}
