//! Which local names a piece of code mentions, and which names a pattern binds.
//!
//! Both are deliberately conservative: mentioning a name that turns out to be something
//! else only keeps a local alive a little longer; missing a mention would lose a value.

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{Expr, Ident, Pat};

/// Every identifier `expr` may read as a local: single-segment paths, identifiers inside
/// macro invocations, and `{name}` captures inside their string literals. A name bound
/// inside `expr` (a closure's parameter, a match arm's or an `if let`'s binding, a `let`
/// in a block, a `for` pattern) is not a mention where that binding is in force.
pub fn mentioned(expr: &Expr) -> Vec<Ident> {
    let mut v = Mentions::default();
    v.visit_expr(expr);
    v.found
}

/// Like [`mentioned`], for code as tokens: read as a block's statements when it parses as
/// one, otherwise scanned token by token (every identifier that may name a local).
pub fn mentioned_in_tokens(tokens: &TokenStream) -> Vec<Ident> {
    match syn::parse2::<syn::Block>(quote::quote!({ #tokens })) {
        Ok(block) => {
            let mut v = Mentions::default();
            v.visit_block(&block);
            v.found
        }
        Err(_) => {
            let mut out = Vec::new();
            scan_tokens(tokens, &mut out);
            out
        }
    }
}

/// The scope-aware walk behind [`mentioned`]: `bound` holds the names bound inside the
/// code so far, innermost last, which hide a local of the same name.
#[derive(Default)]
struct Mentions {
    found: Vec<Ident>,
    bound: Vec<String>,
}

impl Mentions {
    fn note(&mut self, ident: &Ident) {
        if !self.bound.iter().any(|b| ident == b) {
            self.found.push(ident.clone());
        }
    }

    /// Runs `walk` with `names` bound, then unbinds them.
    fn with_bound(&mut self, names: Vec<Binding>, walk: impl FnOnce(&mut Self)) {
        let mark = self.bound.len();
        self.bound
            .extend(names.into_iter().map(|b| b.ident.to_string()));
        walk(self);
        self.bound.truncate(mark);
    }

    /// A condition that may hold `let` patterns (`if let`, `while let`, let chains):
    /// visits it, leaving the names its patterns bind in `bound` for the caller to pop.
    fn visit_condition(&mut self, cond: &Expr) {
        match cond {
            Expr::Let(l) => {
                self.visit_expr(&l.expr);
                self.bound
                    .extend(bindings(&l.pat).into_iter().map(|b| b.ident.to_string()));
            }
            Expr::Binary(b) if matches!(b.op, syn::BinOp::And(_)) => {
                self.visit_condition(&b.left);
                self.visit_condition(&b.right);
            }
            other => self.visit_expr(other),
        }
    }
}

impl<'ast> Visit<'ast> for Mentions {
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if p.qself.is_none() && p.path.leading_colon.is_none() && p.path.segments.len() == 1 {
            self.note(&p.path.segments[0].ident);
        }
        syn::visit::visit_expr_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut idents = Vec::new();
        scan_tokens(&m.tokens, &mut idents);
        idents.iter().for_each(|i| self.note(i));
    }

    // Items nested in a body cannot see its locals.
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_block(&mut self, block: &'ast syn::Block) {
        let mark = self.bound.len();
        for stmt in &block.stmts {
            match stmt {
                syn::Stmt::Local(local) => {
                    // The initializer and the `else` do not see the names the `let` binds.
                    if let Some(init) = &local.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, diverge)) = &init.diverge {
                            self.visit_expr(diverge);
                        }
                    }
                    self.bound.extend(
                        let_bindings(&local.pat)
                            .into_iter()
                            .map(|b| b.ident.to_string()),
                    );
                }
                other => self.visit_stmt(other),
            }
        }
        self.bound.truncate(mark);
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        let params = c.inputs.iter().flat_map(let_bindings).collect();
        self.with_bound(params, |v| v.visit_expr(&c.body));
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.with_bound(bindings(&arm.pat), |v| {
            if let Some((_, guard)) = &arm.guard {
                v.visit_expr(guard);
            }
            v.visit_expr(&arm.body);
        });
    }

    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.with_bound(let_bindings(&f.pat), |v| v.visit_block(&f.body));
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        let mark = self.bound.len();
        self.visit_condition(&e.cond);
        self.visit_block(&e.then_branch);
        self.bound.truncate(mark);
        if let Some((_, els)) = &e.else_branch {
            self.visit_expr(els);
        }
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        let mark = self.bound.len();
        self.visit_condition(&e.cond);
        self.visit_block(&e.body);
        self.bound.truncate(mark);
    }
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
        // Parsed as code, a struct literal's name is a type, not a local.
        assert_eq!(
            names(mentioned_in_tokens(&t)),
            ["user", "z", "rest", "n", "a", "b", "g", "id"]
        );
        // Tokens that are not code (`=>` alone) are scanned, conservatively.
        let t: TokenStream =
            syn::parse_quote!(user.name => m::x + s { ..rest } + Bag { name: g, id });
        assert_eq!(
            names(mentioned_in_tokens(&t)),
            ["user", "s", "rest", "Bag", "g", "id"]
        );
    }

    #[test]
    fn names_bound_inside_the_code_hide_locals_where_they_are_in_force() {
        let t: TokenStream = syn::parse_quote!(
            let t: i64 = c.iter().map(|a| a + k).sum();
            let r = match v { Ok(b) => b, Err(e) => e.len() + d };
            if let Some(f) = o { f } else { f + 1 };
            for g in xs { g + h; }
            let w = w + 1;
            w + format!("{a}{w}")
        );
        assert_eq!(
            names(mentioned_in_tokens(&t)),
            ["c", "k", "v", "d", "o", "f", "xs", "h", "w", "a"]
        );
        // A constant-looking name in a pattern may be a constant: not taken as a binding.
        let e: Expr = syn::parse_quote!(match v {
            N => N + 1,
            _ => 0,
        });
        assert_eq!(names(mentioned(&e)), ["v", "N"]);
        // A `let ... else` does not see its own bindings in the `else`.
        let t: TokenStream = syn::parse_quote!(let Some(q) = q else { return q.len(); }; q);
        assert_eq!(names(mentioned_in_tokens(&t)), ["q", "q"]);
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
