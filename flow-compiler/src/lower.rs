//! Lowers a workflow body into a [`Cfg`]: structured control flow that contains an
//! `.await` (or a `break`/`continue` out of such a construct) becomes blocks and gotos;
//! everything else stays ordinary Rust inside a block.
//!
//! Expressions are evaluated in Rust's order: when an operand contains an `.await`, the
//! operands before it that are not plain reads of a place are first bound to temporaries,
//! so their side effects happen before the suspension, exactly once.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, Ident, Pat, Stmt};

use crate::cfg::{
    exit_placeholder, shadow_placeholder, Block, BlockId, Cfg, Exit, ExitKind, PartialMove, Rebind,
    Shadow, Slot, SlotId, State,
};
use crate::ctxt::Ctxt;
use crate::names;
use crate::order::{binary_use, changed_by, index_roots, indexes, macro_use, place_root, Use};
use crate::rewrite::{macro_args, vec_repeat, ExitRewriter};
use crate::stmt_attrs::{cfg_of, classify, take_attrs, StmtAttrs};

/// A `loop`/`while`/`for`/labelled block being lowered.
struct LoopCtx {
    label: Option<String>,
    /// Where `continue` goes; `None` for a labelled block.
    cont: Option<BlockId>,
    /// Where `break` goes.
    exit: BlockId,
    /// Receives `break` values when the loop's value is used.
    result: Option<SlotId>,
}

/// Lowering state.
pub struct Lowerer<'a> {
    /// The graph being built.
    pub cfg: Cfg,
    /// Where errors go (all are reported, not just the first).
    cx: &'a Ctxt,
    output: &'a TokenStream,
    cur: BlockId,
    /// Scope frames: name → slot, innermost last.
    scopes: Vec<Vec<(String, SlotId)>>,
    /// Per frame: a binding in it shadowed an outer one.
    shadowed: Vec<bool>,
    /// Per frame: it holds a loop's or an arm's pattern bindings.
    pattern_frames: Vec<bool>,
    /// Slots bound in the current block so far, on the current path.
    defined: BTreeSet<SlotId>,
    loops: Vec<LoopCtx>,
    next_order: usize,
    temps: usize,
    /// Branches of an `if` whose blocks are lowered once the `if` is emitted.
    pending: Vec<PendingBranch>,
    /// Per lowered nested block that declares them: its functions, constants and `use`s
    /// (indices into [`Cfg::scoped_items`]), repeated in every block of its scope.
    item_scopes: Vec<Vec<usize>>,
    /// Lowered blocks we are inside (0: the body itself).
    depth: usize,
    /// The lowered nested blocks we are inside, innermost last: where a nested item's
    /// name may be used without hiding anything.
    item_blocks: Vec<TokenStream>,
    /// The whole body, to tell whether a nested item's name is used outside its block.
    body: TokenStream,
    /// `#[cfg]` predicates of the statements being lowered, outermost first.
    cfg_stack: Vec<TokenStream>,
}

/// Result of lowering an expression: the residual expression and whether evaluating it
/// later would observe exactly what evaluating it now would (a read of a place).
struct Lowered {
    tokens: TokenStream,
    pure: bool,
}

impl<'a> Lowerer<'a> {
    /// A lowerer for a workflow returning `output`, positioned at the entry block.
    pub(crate) fn new(output: &'a TokenStream, cx: &'a Ctxt) -> Self {
        let mut l = Lowerer {
            cfg: Cfg::default(),
            cx,
            output,
            cur: 0,
            scopes: vec![Vec::new()],
            shadowed: vec![false],
            pattern_frames: vec![false],
            defined: BTreeSet::new(),
            loops: Vec::new(),
            next_order: 0,
            temps: 0,
            pending: Vec::new(),
            item_scopes: Vec::new(),
            depth: 0,
            item_blocks: Vec::new(),
            body: TokenStream::new(),
            cfg_stack: Vec::new(),
        };
        let entry = l.new_block();
        l.switch_to(entry);
        l
    }

    /// Binds the workflow's arguments from its input at the start of the entry block.
    pub fn bind_input(&mut self, pat: &Pat, input_ty: &TokenStream) {
        let code = quote!(let #pat: #input_ty = __flow_ctl.take_input::<#input_ty>()?;);
        self.push(code);
        self.declare_pattern(pat, false);
    }

    // Input:  the body `{ stmts.. tail }` of `async fn wf(args) -> Out`.
    // Output: the body's blocks; the block that reaches its end completes the run with
    //         `tail` (`return __flow_ctl.complete::<Out>(..)`).
    /// Lowers the body and ends the run with its value.
    pub fn lower_body(&mut self, body: &syn::Block) {
        self.body = body.to_token_stream();
        // The arguments' scope is the body's scope, as in the function it reads as.
        let value = self.lower_stmts(&body.stmts, true);
        if !self.block().terminated {
            self.note_tokens(&value.tokens);
            let done = self.complete(value.tokens, body.span());
            self.push(quote!(#done;));
            self.block_mut().completes = true;
            self.block_mut().terminated = true;
        }
    }

    // ----- blocks, scopes, slots -------------------------------------------------

    fn block(&self) -> &Block {
        &self.cfg.blocks[self.cur]
    }

    fn block_mut(&mut self) -> &mut Block {
        &mut self.cfg.blocks[self.cur]
    }

    fn new_block(&mut self) -> BlockId {
        let entry_visible = self.visible();
        let items = self.item_scopes.clone();
        self.cfg.blocks.push(Block {
            entry_visible,
            items,
            cfg: self.cfg_stack.clone(),
            ..Block::default()
        });
        self.cfg.blocks.len() - 1
    }

    fn switch_to(&mut self, b: BlockId) {
        self.cur = b;
        self.defined.clear();
        if self.cfg.blocks[b].order.is_none() {
            self.cfg.blocks[b].order = Some(self.next_order);
            self.next_order += 1;
        }
    }

    /// Continues in a fresh block no path reaches (code after `return`/`break`).
    fn start_unreachable(&mut self) {
        let b = self.new_block();
        self.switch_to(b);
    }

    fn push(&mut self, code: TokenStream) {
        self.block_mut().code.extend(code);
    }

    fn visible(&self) -> Vec<SlotId> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for frame in self.scopes.iter().rev() {
            for (name, slot) in frame.iter().rev() {
                if seen.insert(name.clone()) {
                    out.push(*slot);
                }
            }
        }
        out
    }

    fn lookup(&self, name: &str) -> Option<SlotId> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|f| f.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    fn note_uses(&mut self, idents: Vec<Ident>) {
        for ident in idents {
            if let Some(slot) = self.lookup(&ident.to_string()) {
                self.note_slot_use(slot);
            }
        }
    }

    fn note_slot_use(&mut self, slot: SlotId) {
        let defined = self.defined.contains(&slot);
        if let (Some(g), false) = (self.cfg.slots[slot].rebound_by, defined) {
            // Bound again from what it borrows rather than taken from the frame.
            self.block_mut().used.insert(slot);
            if self.block_mut().rebinds.insert(g) {
                for dep in self.cfg.rebinds[g].deps.clone() {
                    let name = self.cfg.slots[dep].name.to_string();
                    if self.lookup(&name) != Some(dep) {
                        let span = self.cfg.slots[slot].span;
                        self.error(
                            span,
                            format!(
                                "this item borrows from `{name}`, which is shadowed where the \
                                 item is used again; give the inner `{name}` another name"
                            ),
                        );
                    }
                    self.note_slot_use(dep);
                }
            }
            return;
        }
        let b = self.block_mut();
        b.used.insert(slot);
        if !defined {
            b.gen.insert(slot);
        }
    }

    /// Records the locals that residual code emitted into the current block reads.
    fn note_tokens(&mut self, code: &TokenStream) {
        self.note_uses(names::mentioned_in_code(code));
    }

    fn new_slot(&mut self, name: Ident, mutable: bool, span: Span, label: String) -> SlotId {
        self.cfg.slots.push(Slot {
            name,
            mutable,
            write_once: false,
            label,
            span,
            borrow: false,
            cfg: self.cfg_stack.clone(),
            hash_ordered: false,
            static_str: false,
            rebound_by: None,
            ty: None,
        });
        self.cfg.slots.len() - 1
    }

    /// Marks `slot` bound in the current block on the current path.
    fn define(&mut self, slot: SlotId) {
        self.defined.insert(slot);
        self.block_mut().kill.insert(slot);
    }

    /// Adds a slot named `ident` to the innermost scope and binds it here.
    fn declare(&mut self, ident: &Ident, mutable: bool) -> SlotId {
        let label = generated_label(ident).unwrap_or_else(|| format!("`{ident}`"));
        let slot = self.new_slot(ident.clone(), mutable, ident.span(), label);
        self.scopes
            .last_mut()
            .expect("a scope")
            .push((ident.to_string(), slot));
        self.define(slot);
        slot
    }

    fn declare_pattern(&mut self, pat: &Pat, borrow: bool) -> Vec<SlotId> {
        self.declare_bindings(names::bindings(pat), borrow)
    }

    fn declare_bindings(&mut self, bindings: Vec<names::Binding>, borrow: bool) -> Vec<SlotId> {
        let mut slots = Vec::new();
        for b in bindings {
            if self.lookup(&b.ident.to_string()).is_some() {
                *self.shadowed.last_mut().expect("a scope") = true;
            }
            let s = self.declare(&b.ident, b.mutable);
            self.cfg.slots[s].borrow = borrow || b.by_ref;
            slots.push(s);
        }
        slots
    }

    /// Placeholders that hand shadowed locals back to their slots before `pat` binds.
    fn shadow_points(&mut self, pat: &Pat) -> TokenStream {
        self.shadow_points_of(names::bindings(pat))
    }

    fn shadow_points_of(&mut self, bindings: Vec<names::Binding>) -> TokenStream {
        let mut out = TokenStream::new();
        for b in bindings {
            if let Some(old) = self.lookup(&b.ident.to_string()) {
                let k = self.cfg.shadows.len();
                self.cfg.shadows.push(Shadow {
                    block: self.cur,
                    slot: old,
                    defined_before: self.defined.contains(&old),
                });
                let p = shadow_placeholder(k);
                out.extend(quote!(#p));
            }
        }
        out
    }

    /// A fresh temporary slot in the innermost scope, not yet bound.
    fn temp(&mut self, what: &str, span: Span) -> SlotId {
        self.temps += 1;
        let ident = format_ident!("__flow_{}_{}", what, self.temps, span = span);
        let slot = self.new_slot(ident.clone(), false, span, describe_temp(what, span));
        self.scopes
            .last_mut()
            .expect("a scope")
            .push((ident.to_string(), slot));
        slot
    }

    /// Binds `value` to a new temporary and returns its name.
    fn bind_temp(&mut self, value: TokenStream, span: Span) -> TokenStream {
        self.note_tokens(&value);
        let slot = self.temp("tmp", span);
        let name = self.cfg.slots[slot].name.clone();
        self.push(quote_spanned!(span=> let #name = #value;));
        self.define(slot);
        name.into_token_stream()
    }

    fn assign_temp(&mut self, slot: SlotId, value: TokenStream) {
        self.note_tokens(&value);
        let name = self.cfg.slots[slot].name.clone();
        self.push(quote!(let #name = #value;));
        self.define(slot);
    }

    fn push_scope(&mut self) {
        self.scopes.push(Vec::new());
        self.shadowed.push(false);
        self.pattern_frames.push(false);
    }

    /// A scope holding a pattern's bindings (a loop's or an arm's), which end with the
    /// body they belong to.
    fn push_frame(&mut self, frame: Vec<(String, SlotId)>) {
        self.scopes.push(frame);
        self.shadowed.push(false);
        self.pattern_frames.push(true);
    }

    /// Pops a scope; returns whether a binding in it shadowed an outer one.
    fn pop_scope(&mut self) -> bool {
        self.scopes.pop();
        self.pattern_frames.pop();
        self.shadowed.pop().unwrap_or(false)
    }

    // ----- exits -----------------------------------------------------------------

    fn exit(&mut self, target: BlockId, kind: ExitKind) -> TokenStream {
        let k = self.cfg.exits.len();
        self.cfg.exits.push(Exit {
            from: self.cur,
            target,
            kind,
            visible: self.visible(),
            defined: self.defined.clone(),
            cfg: Vec::new(),
        });
        self.block_mut().exits.push(k);
        exit_placeholder(k).into_token_stream()
    }

    /// Ends the current block with a goto.
    fn goto(&mut self, target: BlockId) {
        let e = self.exit(target, ExitKind::Goto);
        self.push(e);
        self.block_mut().terminated = true;
    }

    fn complete(&self, value: TokenStream, span: Span) -> TokenStream {
        ExitRewriter {
            output: self.output,
            exits: false,
        }
        .complete(value, span)
    }

    // Input:  `op.await`, with `op` already lowered.
    // Output: `{ let __flow_op = op; <hand over live locals>; pc = resume; return suspend(..) }`
    //         ending the current block; the resume block starts with
    //         `let __flow_await_k = take_output(..)?;` and that name is the value.
    /// Suspends on `op`; continues in the resume block and returns the output's name.
    fn suspend(&mut self, op: TokenStream, name: String, span: Span) -> TokenStream {
        self.note_tokens(&op);
        let state = self.cfg.states.len();
        let resume = self.new_block();
        self.cfg.states.push(State {
            name: name.clone(),
            line: span.start().line as u32,
            resume,
            span,
            cfg: self.cfg_stack.clone(),
        });
        let e = self.exit(resume, ExitKind::Suspend { op, state });
        self.push(e);
        self.block_mut().terminated = true;
        self.switch_to(resume);
        let slot = self.temp("await", span);
        let out = self.cfg.slots[slot].name.clone();
        let phantom = format_ident!("p{}", state);
        self.push(
            quote_spanned!(span=> let #out = __flow_ctl.take_output(&__flow_f.#phantom, #name)?;),
        );
        self.define(slot);
        out.into_token_stream()
    }

    // ----- analysis helpers ------------------------------------------------------

    fn lowered_labels(&self) -> Vec<String> {
        self.loops.iter().filter_map(|l| l.label.clone()).collect()
    }

    fn needs_lowering_finder(&self) -> NeedsLowering {
        NeedsLowering {
            labels: self.lowered_labels(),
            in_lowered_loop: !self.loops.is_empty(),
            depth: 0,
            found: false,
        }
    }

    /// Whether `e` must be lowered: it awaits, or jumps out to a lowered loop.
    fn needs_lowering(&self, e: &Expr) -> bool {
        let mut f = self.needs_lowering_finder();
        f.visit_expr(e);
        f.found
    }

    /// Emits code that needs no lowering, with `return`/`?` rewritten.
    fn plain(&mut self, e: &Expr) -> Lowered {
        let mut e2 = e.clone();
        let mut r = ExitRewriter {
            output: self.output,
            exits: false,
        };
        r.visit_expr_mut(&mut e2);
        if r.exits {
            self.block_mut().completes = true;
        }
        Lowered {
            pure: is_place(e),
            tokens: e2.into_token_stream(),
        }
    }

    fn error(&mut self, span: Span, msg: impl std::fmt::Display) -> Lowered {
        self.cx.error_at(span, msg);
        Lowered {
            tokens: quote!(()),
            pure: true,
        }
    }

    // ----- statements ------------------------------------------------------------

    // Input:  `{ fn helper() {..} stmts.. tail }` containing an `.await`
    // Output: the statements lowered into the current block and the blocks after it;
    //         the block's value (a temporary when it may read the block's locals or
    //         items); a fresh block after it when its scope hid outer names.
    fn lower_block(&mut self, block: &syn::Block, want_value: bool) -> Lowered {
        self.push_scope();
        let has_items = self.enter_item_scope(block);
        let value = self.lower_stmts(&block.stmts, want_value);
        let scoped: BTreeSet<String> = self
            .scopes
            .last()
            .into_iter()
            .flatten()
            .map(|(n, _)| n.clone())
            .collect();
        let mentions_scope = names::mentioned_in_tokens(&value.tokens)
            .iter()
            .any(|i| scoped.contains(&i.to_string()));
        let needs_temp =
            want_value && (!value.pure || mentions_scope || has_items) && !self.block().terminated;
        let value = if needs_temp {
            // The value may mention the scope's locals: evaluate it before they go.
            let slot = {
                let frame = self.scopes.len() - 2;
                self.temps += 1;
                let ident = format_ident!("__flow_val_{}", self.temps);
                let s = self.new_slot(
                    ident.clone(),
                    false,
                    block.span(),
                    describe_temp("val", block.span()),
                );
                self.scopes[frame].push((ident.to_string(), s));
                s
            };
            self.assign_temp(slot, value.tokens);
            Lowered {
                tokens: self.cfg.slots[slot].name.to_token_stream(),
                pure: true,
            }
        } else {
            value
        };
        let shadowed = self.shadowed.last().copied().unwrap_or(false);
        if has_items {
            self.item_scopes.pop();
        }
        if (shadowed || has_items) && !self.block().terminated {
            // The flat code of this block still sees the inner bindings: hand over while
            // the scope is still in force (so an inner binding is never stored as the
            // outer one it shadows), then continue in a new block whose prologue rebinds
            // the outer names.
            let next = self.new_block();
            self.goto(next);
            self.pop_scope();
            self.cfg.blocks[next].entry_visible = self.visible();
            self.switch_to(next);
        } else {
            self.pop_scope();
        }
        self.depth -= 1;
        self.item_blocks.pop();
        value
    }

    /// Items declared in a block are visible in the whole block and nowhere else. The
    /// block's statements end up spread over several arms of the step function, so its
    /// functions, constants and `use`s are repeated at the top of each of those arms
    /// (and only those); this starts a fresh block for them. Returns whether it did.
    fn enter_item_scope(&mut self, block: &syn::Block) -> bool {
        self.depth += 1;
        self.item_blocks.push(block.to_token_stream());
        let repeated: Vec<usize> = block
            .stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Item(item @ (syn::Item::Fn(_) | syn::Item::Const(_) | syn::Item::Use(_))) => {
                    self.cfg.scoped_items.push(item.to_token_stream());
                    Some(self.cfg.scoped_items.len() - 1)
                }
                _ => None,
            })
            .collect();
        if repeated.is_empty() {
            return false;
        }
        self.item_scopes.push(repeated);
        let start = self.new_block();
        if self.block().terminated {
            self.switch_to(start);
        } else {
            self.goto(start);
            self.switch_to(start);
        }
        true
    }

    /// Input:  an item statement of the body or of a lowered block.
    /// Output: nothing for a nested function, constant or `use` (see
    ///         [`Self::enter_item_scope`]); otherwise the item goes to the top of the
    ///         step function, which is faithful at the body's top level, and in a nested
    ///         block only if its name is used nowhere in the body outside that block.
    fn lower_item(&mut self, item: &syn::Item) {
        let nested = self.depth > 0;
        if nested
            && matches!(
                item,
                syn::Item::Fn(_) | syn::Item::Const(_) | syn::Item::Use(_)
            )
        {
            return;
        }
        if nested {
            if let Some(name) = item_name(item) {
                let everywhere = count_mentions(&self.body, name);
                let block = self.item_blocks.last().expect("a nested block");
                let inside = count_mentions(block, name);
                if everywhere > inside {
                    self.error(
                        name.span(),
                        format!(
                            "`{name}` is declared in a block that contains `.await`, and the \
                             name is also used outside that block: a #[workflow] compiles \
                             such a {what} at the top of the function, where it would hide \
                             the other `{name}`; give it a name of its own, or declare it \
                             outside the workflow",
                            what = item_kind(item),
                        ),
                    );
                    return;
                }
            }
        }
        self.cfg.items.push(item.to_token_stream());
    }

    // Input:  the statements of the body or of a lowered block.
    // Output: each statement lowered in turn; the value of the tail expression.
    fn lower_stmts(&mut self, stmts: &[Stmt], want_value: bool) -> Lowered {
        let mut value = Lowered {
            tokens: quote!(()),
            pure: true,
        };
        for (i, stmt) in stmts.iter().enumerate() {
            if self.block().terminated {
                self.start_unreachable();
            }
            let tail = i + 1 == stmts.len() && want_value;
            if !self.stmt_needs_lowering(stmt) {
                // Kept verbatim, attributes included; a `#[cfg]`'d `let` binds locals
                // that exist only under its predicate.
                match gated_let(stmt) {
                    Some((predicate, local)) => {
                        let shadowed = self.shadowed_by(&local.pat);
                        self.check_gated_shadows(&shadowed);
                        self.cfg_stack.push(predicate.clone());
                        self.lower_let(local);
                        self.cfg_stack.pop();
                        // Whichever binding is compiled in, the same code names it.
                        for &(_, old) in &shadowed {
                            self.note_slot_use(old);
                        }
                        let p = &predicate;
                        let joins = self.rebind(&shadowed, |l, old| l.join_gate(p, old));
                        self.push(joins);
                        self.declare_joins(&shadowed, p);
                    }
                    None => value = self.lower_stmt(stmt, tail),
                }
                continue;
            }
            let mut bare = stmt.clone();
            let attrs = take_attrs(&mut bare);
            match classify(&attrs) {
                Ok(StmtAttrs::None) => value = self.lower_stmt(&bare, tail),
                Ok(StmtAttrs::Cfg(predicate)) => {
                    self.lower_cfg_gated(predicate, attrs[0].span(), &bare);
                }
                Err(e) => self.cx.syn_error(e),
            }
        }
        value
    }

    /// The visible locals a pattern's bindings would shadow: (name, slot).
    /// The visible locals a pattern's bindings would shadow: (name, slot).
    fn shadowed_by(&self, pat: &Pat) -> Vec<(Ident, SlotId)> {
        names::bindings(pat)
            .into_iter()
            .filter_map(|b| self.lookup(&b.ident.to_string()).map(|s| (b.ident, s)))
            .collect()
    }

    /// The locals a `#[cfg]`'d `let` shadows must belong to the same block: with the
    /// `#[cfg]` off, the join local takes the old value, which an enclosing block could
    /// not get back when this one ends.
    fn check_gated_shadows(&mut self, shadowed: &[(Ident, SlotId)]) {
        // The innermost block, and the pattern bindings of the loop or arm it is the body
        // of (they end with it).
        let mut frames = self.scopes.iter().zip(&self.pattern_frames).rev();
        let mut innermost: Vec<SlotId> = frames
            .next()
            .map(|(f, _)| f.iter().map(|(_, s)| *s).collect())
            .unwrap_or_default();
        for (frame, &pattern) in frames {
            if !pattern {
                break;
            }
            innermost.extend(frame.iter().map(|(_, s)| *s));
        }
        for (ident, old) in shadowed {
            if !innermost.contains(old) {
                self.error(
                    ident.span(),
                    format!(
                        "a `#[cfg]`'d `let` that shadows `{ident}` of an enclosing block is not \
                         supported in a #[workflow] (with the `#[cfg]` off, the outer `{ident}` \
                         could not be kept for after this block); give this binding another \
                         name"
                    ),
                );
            }
        }
    }

    /// The predicate under which `slot` exists beyond those in force here, if any (it
    /// was bound by a `#[cfg]`'d `let` itself).
    fn extra_gate(&self, slot: SlotId) -> Option<TokenStream> {
        let here: BTreeSet<String> = self.cfg_stack.iter().map(|p| p.to_string()).collect();
        let own = &self.cfg.slots[slot].cfg;
        let extra: Vec<&TokenStream> = own
            .iter()
            .filter(|p| !here.contains(&p.to_string()))
            .collect();
        (!extra.is_empty()).then(|| quote!(all(#(#extra),*)))
    }

    /// `let mut x = x;` for each name: binds a join local from whichever `x` is in scope.
    /// `gate(slot)` says under which `#[cfg]` each rebinding is compiled in.
    fn rebind(
        &mut self,
        names: &[(Ident, SlotId)],
        gate: impl Fn(&Self, SlotId) -> TokenStream,
    ) -> TokenStream {
        let code = names
            .iter()
            .map(|(ident, old)| {
                let gate = gate(self, *old);
                quote!(#gate let mut #ident = #ident;)
            })
            .collect();
        self.note_uses(names.iter().map(|(i, _)| i.clone()).collect());
        code
    }

    /// Declares the join locals [`Self::rebind`] bound, so later code resolves the names
    /// to them whether or not the `#[cfg(predicate)]` binding was compiled in. A join of
    /// a local that is itself `#[cfg]`'d exists only if one of the two does.
    fn declare_joins(&mut self, names: &[(Ident, SlotId)], predicate: &TokenStream) -> Vec<SlotId> {
        names
            .iter()
            .map(|(ident, old)| {
                let old_gate = self.extra_gate(*old);
                let join = self.declare(ident, true);
                if let Some(old_gate) = old_gate {
                    self.cfg.slots[join]
                        .cfg
                        .push(quote!(any(#predicate, #old_gate)));
                }
                join
            })
            .collect()
    }

    /// `#[cfg(any(P, old))]` for a join of a `#[cfg]`'d local, nothing otherwise.
    fn join_gate(&self, predicate: &TokenStream, old: SlotId) -> TokenStream {
        match self.extra_gate(old) {
            Some(old_gate) => quote!(#[cfg(any(#predicate, #old_gate))]),
            None => TokenStream::new(),
        }
    }

    /// `#[cfg(old)]` for reading a `#[cfg]`'d local, nothing otherwise.
    fn old_gate(&self, old: SlotId) -> TokenStream {
        match self.extra_gate(old) {
            Some(old_gate) => quote!(#[cfg(#old_gate)]),
            None => TokenStream::new(),
        }
    }

    fn stmt_needs_lowering(&self, stmt: &Stmt) -> bool {
        match stmt {
            Stmt::Local(l) => l.init.as_ref().is_some_and(|init| {
                self.needs_lowering(&init.expr)
                    || init
                        .diverge
                        .as_ref()
                        .is_some_and(|(_, d)| self.needs_lowering(d))
            }),
            Stmt::Expr(e, _) => self.needs_lowering(e) || matches!(e, Expr::Return(_)),
            Stmt::Macro(m) => {
                let mut f = self.needs_lowering_finder();
                f.visit_macro(&m.mac);
                f.found
            }
            Stmt::Item(_) => false,
        }
    }

    // Input:  one statement, its attributes already handled.
    // Output: its code in the current block (and any blocks it needs); the value when it
    //         is the tail expression of a block whose value is used.
    fn lower_stmt(&mut self, stmt: &Stmt, tail: bool) -> Lowered {
        let unit = Lowered {
            tokens: quote!(()),
            pure: true,
        };
        match stmt {
            Stmt::Local(local) => self.lower_let(local),
            Stmt::Item(item) => self.lower_item(item),
            Stmt::Expr(e, None) if tail => return self.lower_expr(e, true),
            Stmt::Expr(Expr::Assign(a), _) if self.whole_local(&a.left).is_some() => {
                self.lower_assign_local(a);
            }
            Stmt::Expr(e, _) => {
                let r = self.lower_expr(e, false);
                if !r.pure && !self.block().terminated {
                    self.note_tokens(&r.tokens);
                    let t = r.tokens;
                    self.push(quote!(#t;));
                }
            }
            Stmt::Macro(m) => {
                let e = Expr::Macro(syn::ExprMacro {
                    attrs: m.attrs.clone(),
                    mac: m.mac.clone(),
                });
                let r = self.lower_expr(&e, false);
                self.note_tokens(&r.tokens);
                let t = r.tokens;
                self.push(quote!(#t;));
            }
        }
        unit
    }

    /// The slot a place names when it is a whole local (`x`, not `x.f` or `x[i]`).
    fn whole_local(&self, place: &Expr) -> Option<SlotId> {
        match place {
            Expr::Path(p) if p.qself.is_none() => self.lookup(&p.path.get_ident()?.to_string()),
            Expr::Paren(p) => self.whole_local(&p.expr),
            _ => None,
        }
    }

    // Input:  `x = VALUE;` as a statement, `x` a whole local.
    // Output: `x = value;` that defines `x` rather than reading it: the old value is not
    //         kept alive up to here (it may have been moved into VALUE's step), and a
    //         block that did not take `x` from the frame declares it.
    fn lower_assign_local(&mut self, a: &syn::ExprAssign) {
        let right = self.lower_expr(&a.right, true);
        if self.block().terminated {
            return;
        }
        let Some(slot) = self.whole_local(&a.left) else {
            return;
        };
        self.note_tokens(&right.tokens);
        let held = self.defined.contains(&slot) || self.block().gen.contains(&slot);
        if !held {
            self.block_mut().declared.insert(slot);
        }
        let (name, value) = (&self.cfg.slots[slot].name, &right.tokens);
        let attrs = &a.attrs;
        self.push(quote!(#(#attrs)* #name = #value;));
        self.define(slot);
    }

    // Input:  `#[cfg(P)] STATEMENT` where the statement contains `.await`.
    // Output: `#[cfg(P)] { goto inside } #[cfg(not(P))] { goto after }`; the blocks,
    //         locals and states of the statement are compiled in under `P` only. A `let`
    //         that shadows a local: both paths bind a join local of that name, from the
    //         new binding or from the old one, which code after the statement reads.
    fn lower_cfg_gated(&mut self, predicate: TokenStream, span: Span, stmt: &Stmt) {
        let shadowed = match stmt {
            Stmt::Local(l) => self.shadowed_by(&l.pat),
            _ => Vec::new(),
        };
        self.check_gated_shadows(&shadowed);
        let after = self.new_block();
        self.cfg_stack.push(predicate.clone());
        let inside = self.new_block();
        self.cfg_stack.pop();
        let enter = self.exit(inside, ExitKind::Goto);
        // The skip path keeps the old values under the join locals' names.
        let saved = self.defined.clone();
        self.push_scope();
        let keep_old = self.rebind(&shadowed, |l, old| l.old_gate(old));
        let joins = self.declare_joins(&shadowed, &predicate);
        let skip = self.exit(after, ExitKind::Goto);
        let skip_exit = self.cfg.exits.len() - 1;
        self.cfg.exits[skip_exit].cfg = vec![quote!(not(#predicate))];
        self.pop_scope();
        self.defined = saved;
        self.push(quote_spanned!(span=>
            #[cfg(#predicate)] { #enter }
            #[cfg(not(#predicate))] { #keep_old #skip }
        ));
        self.block_mut().terminated = true;
        self.switch_to(inside);
        self.cfg_stack.push(predicate);
        self.lower_stmt(stmt, false);
        let reaches_after = !self.block().terminated;
        if reaches_after {
            let take_new = self.rebind(&shadowed, |_, _| TokenStream::new());
            self.push(take_new);
        }
        let frame = self.scopes.last_mut().expect("a scope");
        frame.extend(
            shadowed
                .iter()
                .map(|(i, _)| i.to_string())
                .zip(joins.iter().copied()),
        );
        if reaches_after {
            for &j in &joins {
                self.define(j);
            }
            self.goto(after);
        }
        self.cfg_stack.pop();
        self.cfg.blocks[after].entry_visible = self.visible();
        self.switch_to(after);
    }

    // Input:  `let PAT = INIT else { ..await.. };` binding `a`, `mut b`
    // Output: `let (a, mut b) = match INIT { PAT => (a, b), _ => { ..await.. } };`
    //         lowered as any `let` with a `match`; the `else` block diverges, as Rust
    //         requires, so the `match` has the bindings' type.
    fn lower_let_else_with_steps(&mut self, local: &syn::Local, init: &Expr, diverge: &Expr) {
        let bindings = names::let_bindings(&local.pat);
        if let Some(b) = bindings.iter().find(|b| b.by_ref) {
            self.error(
                b.ident.span(),
                "a `ref` binding in a `let ... else` whose `else` contains `.await` is not \
                 supported in a #[workflow]; bind by value (clone what you need)",
            );
            return;
        }
        let names: Vec<&Ident> = bindings.iter().map(|b| &b.ident).collect();
        let outer: Vec<TokenStream> = bindings
            .iter()
            .map(|b| {
                let (m, i) = (b.mutable.then(|| quote!(mut)), &b.ident);
                quote!(#m #i)
            })
            .collect();
        let pat = &local.pat;
        let attrs = &local.attrs;
        let desugared: Stmt = syn::parse_quote_spanned!(local.span()=>
            #(#attrs)* let (#(#outer,)*) = match #init {
                #[allow(unused_mut)]
                #pat => (#(#names,)*),
                _ => #diverge,
            };
        );
        if let Stmt::Local(desugared) = desugared {
            self.lower_let(&desugared);
        }
    }

    // Input:  `let PAT = INIT;` or `let PAT = INIT else { DIVERGE };`
    // Output: INIT lowered, then `let PAT = init;` in the block INIT ends in, after
    //         handing back the locals PAT shadows; PAT's names become locals (slots) of
    //         the current scope.
    fn lower_let(&mut self, local: &syn::Local) {
        let Some(init) = &local.init else {
            self.error(
                local.span(),
                "a local declared without a value cannot be carried across steps of a \
                 #[workflow]; give it a value where it is declared: `let x = ...;`",
            );
            return;
        };
        if let Some((_, diverge)) = &init.diverge {
            if self.needs_lowering(diverge) {
                return self.lower_let_else_with_steps(local, &init.expr, diverge);
            }
        }
        let value = self.lower_expr(&init.expr, true);
        let value = value.tokens;
        self.note_tokens(&value);
        let pat = &local.pat;
        let diverge = init.diverge.as_ref().map(|(_, d)| {
            let mut d = (**d).clone();
            let mut r = ExitRewriter {
                output: self.output,
                exits: false,
            };
            r.visit_expr_mut(&mut d);
            quote!(else #d)
        });
        if let Some((_, d)) = &init.diverge {
            self.note_uses(names::mentioned(d));
            self.block_mut().completes = true;
        }
        let shadows = self.shadow_points_of(names::let_bindings(pat));
        let attrs = &local.attrs;
        if shadows.is_empty() {
            self.push(quote!(#(#attrs)* let #pat = #value #diverge;));
        } else {
            // Only `#[cfg]` goes on the generated statements; every attribute stays on
            // the `let` itself.
            let cfgs: Vec<_> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
            self.push(quote!(
                #(#cfgs)* let __flow_init = #value;
                #(#cfgs)* { #shadows }
                #(#attrs)* let #pat = __flow_init #diverge;
            ));
        }
        let borrow = matches!(&*init.expr, Expr::Reference(_)) || is_borrowed_item(&init.expr);
        let hashed = visibly_hashed(pat, &init.expr);
        let bindings = names::let_bindings(pat);
        let rebindable =
            is_borrowed_item(&init.expr) && bindings.iter().all(|b| !b.mutable && !b.by_ref);
        let static_str = matches!(pat, Pat::Ident(_)) && is_str_literal(&init.expr);
        let slots = self.declare_bindings(bindings, borrow);
        for &slot in &slots {
            self.cfg.slots[slot].hash_ordered = hashed;
            self.cfg.slots[slot].static_str = static_str;
        }
        // `let x: T = ..`: the type as written, for time travel's view of the slot.
        if let (Pat::Type(t), [slot]) = (pat, slots.as_slice()) {
            if matches!(&*t.pat, Pat::Ident(_)) {
                self.cfg.slots[*slot].ty = Some(t.ty.to_token_stream());
            }
        }
        if rebindable {
            // A borrowed `for` item: later blocks bind it again from the collection and
            // the loop's position instead of carrying a borrow through the frame.
            let deps = self.deps_of(&value, &slots);
            let g = self.cfg.rebinds.len();
            self.cfg.rebinds.push(Rebind {
                code: quote!(let #pat = #value;),
                deps,
                cfg: self.cfg_stack.clone(),
            });
            for &slot in &slots {
                self.cfg.slots[slot].rebound_by = Some(g);
            }
        }
    }

    // ----- expressions -----------------------------------------------------------

    // Input:  an expression; `want_value` when its value is used.
    // Output: the expression unchanged (but `return`/`?` rewritten) if it neither awaits
    //         nor jumps out of a lowered loop; otherwise its awaits become suspensions
    //         and its control flow blocks, and the residual expression is returned.
    fn lower_expr(&mut self, e: &Expr, want_value: bool) -> Lowered {
        if !self.needs_lowering(e) && !matches!(e, Expr::Return(_)) {
            return self.plain(e);
        }
        match e {
            Expr::Await(a) => {
                let op = self.lower_expr(&a.base, true).tokens;
                let tokens = self.suspend(op, op_name(&a.base), a.await_token.span());
                Lowered { tokens, pure: true }
            }
            Expr::Try(t) => {
                let inner = self.lower_expr(&t.expr, true).tokens;
                let inner: Expr = syn::parse_quote!(#inner);
                let q = Expr::Try(syn::ExprTry {
                    attrs: t.attrs.clone(),
                    expr: Box::new(inner),
                    question_token: t.question_token,
                });
                self.plain(&q)
            }
            Expr::Paren(p) => {
                let inner = self.lower_expr(&p.expr, want_value);
                let t = inner.tokens;
                Lowered {
                    tokens: quote!((#t)),
                    pure: inner.pure,
                }
            }
            Expr::Group(g) => self.lower_expr(&g.expr, want_value),
            Expr::Call(c) => {
                let mut ops = vec![(&*c.func, Use::Operand)];
                ops.extend(c.args.iter().map(|a| (a, Use::Value)));
                let mut r = self.lower_operands(&ops).into_iter();
                let f = r.next().unwrap_or_default();
                let args: Vec<_> = r.collect();
                impure(quote!(#f(#(#args),*)))
            }
            Expr::MethodCall(m) => {
                let mut ops = vec![(&*m.receiver, Use::Operand)];
                ops.extend(m.args.iter().map(|a| (a, Use::Value)));
                let mut r = self.lower_operands(&ops).into_iter();
                let recv = r.next().unwrap_or_default();
                let args: Vec<_> = r.collect();
                let method = &m.method;
                let turbofish = &m.turbofish;
                impure(quote!(#recv.#method #turbofish(#(#args),*)))
            }
            Expr::Binary(b) => self.lower_binary(b, want_value),
            Expr::Assign(a) => {
                if self.needs_lowering(&a.left) {
                    return self.error(a.left.span(), unsupported_place());
                }
                let right = self.lower_expr(&a.right, true).tokens;
                let left = self.plain(&a.left).tokens;
                impure(quote!(#left = #right))
            }
            Expr::Unary(u) => {
                let inner = self.lower_expr(&u.expr, true).tokens;
                let op = &u.op;
                impure(quote!(#op #inner))
            }
            Expr::Cast(c) => {
                let inner = self.lower_expr(&c.expr, true).tokens;
                let ty = &c.ty;
                impure(quote!(#inner as #ty))
            }
            Expr::Field(f) => {
                let inner = self.lower_expr(&f.base, true);
                let (t, member) = (inner.tokens, &f.member);
                Lowered {
                    tokens: quote!(#t.#member),
                    pure: inner.pure,
                }
            }
            Expr::Reference(r) => {
                let inner = self.lower_expr(&r.expr, true);
                let (t, m) = (inner.tokens, &r.mutability);
                Lowered {
                    tokens: quote!(&#m #t),
                    pure: inner.pure,
                }
            }
            Expr::Index(i) => {
                let r = self.lower_operands(&[(&*i.expr, Use::Operand), (&*i.index, Use::Value)]);
                let (a, b) = (&r[0], &r[1]);
                impure(quote!(#a[#b]))
            }
            Expr::Tuple(t) => {
                let ops: Vec<_> = t.elems.iter().map(|e| (e, Use::Value)).collect();
                let r = self.lower_operands(&ops);
                impure(quote!((#(#r,)*)))
            }
            Expr::Array(a) => {
                let ops: Vec<_> = a.elems.iter().map(|e| (e, Use::Value)).collect();
                let r = self.lower_operands(&ops);
                impure(quote!([#(#r),*]))
            }
            Expr::Struct(s) => {
                let mut ops: Vec<_> = s.fields.iter().map(|f| (&f.expr, Use::Value)).collect();
                if let Some(rest) = &s.rest {
                    ops.push((rest, Use::Value));
                }
                let mut r = self.lower_operands(&ops);
                let rest = s.rest.as_ref().map(|_| {
                    let v = r.pop().unwrap_or_default();
                    quote!(..#v)
                });
                let fields = s.fields.iter().zip(r).map(|(f, v)| {
                    let m = &f.member;
                    quote!(#m: #v)
                });
                let (qself, path) = (&s.qself, &s.path);
                if qself.is_some() {
                    return self.error(s.span(), unsupported_position());
                }
                impure(quote!(#path { #(#fields,)* #rest }))
            }
            Expr::Range(r) => {
                let ops: Vec<_> = r
                    .start
                    .iter()
                    .chain(r.end.iter())
                    .map(|b| (&**b, Use::Value))
                    .collect();
                let mut v = self.lower_operands(&ops).into_iter();
                let start = r.start.as_ref().map(|_| v.next().unwrap_or_default());
                let end = r.end.as_ref().map(|_| v.next().unwrap_or_default());
                let limits = &r.limits;
                impure(quote!(#start #limits #end))
            }
            Expr::Macro(m) => self.lower_macro(&m.mac),
            Expr::Block(b) if b.label.is_some() => self.lower_labelled_block(b, want_value),
            Expr::Block(b) => self.lower_block(&b.block, want_value),
            Expr::If(i) => self.lower_if(i, want_value),
            Expr::Match(m) => self.lower_match(m, want_value),
            Expr::Loop(l) => self.lower_loop(l, want_value),
            Expr::While(w) => self.lower_while(w),
            Expr::ForLoop(f) => self.lower_for(f),
            Expr::Break(b) => self.lower_break(b),
            Expr::Continue(c) => self.lower_continue(c),
            Expr::Return(r) => {
                let value = match &r.expr {
                    Some(v) => self.lower_expr(v, true).tokens,
                    None => quote!(()),
                };
                self.note_tokens(&value);
                let done = self.complete(value, r.span());
                self.push(quote!(#done;));
                self.block_mut().completes = true;
                self.block_mut().terminated = true;
                Lowered {
                    tokens: quote!(()),
                    pure: true,
                }
            }
            // `.await` in closures and async blocks was reported by `check`, which stops
            // the expansion before lowering.
            Expr::Let(l) => self.error(
                l.span(),
                "`let` conditions are supported only directly in `if` and `while`",
            ),
            other => self.error(other.span(), unsupported_position()),
        }
    }

    /// Lowers operands evaluated left to right. Each operand before the last one that
    /// awaits is evaluated before the step (bound to a temporary) unless leaving it in
    /// place observes exactly the same: a read of a place that the operands in between
    /// cannot change (see [`crate::order`]).
    fn lower_operands(&mut self, ops: &[(&Expr, Use)]) -> Vec<TokenStream> {
        let last = ops.iter().rposition(|(e, _)| self.needs_lowering(e));
        let mut out = Vec::with_capacity(ops.len());
        for (i, &(op, how)) in ops.iter().enumerate() {
            let r = self.lower_expr(op, true);
            let Some(last) = last.filter(|&l| i < l) else {
                out.push(r.tokens);
                continue;
            };
            let later: Vec<&Expr> = ops[i + 1..=last].iter().map(|(e, _)| *e).collect();
            let deferrable = match place_root(op) {
                Some(root) if !self.needs_lowering(op) => {
                    !changed_by(root, how, &later)
                        && index_roots(op)
                            .into_iter()
                            .all(|i| !changed_by(i, Use::Operand, &later))
                }
                _ => r.pure || self.lookup_unchanged(op, &later),
            };
            if !deferrable {
                out.push(self.bind_temp(r.tokens, op.span()));
                continue;
            }
            if indexes(op) {
                // Index now, so an out-of-bounds panic comes before the step as in
                // plain Rust; the value itself is read after it.
                let t = &r.tokens;
                self.note_tokens(t);
                self.push(quote_spanned!(op.span()=> let _ = &#t;));
            }
            out.push(r.tokens);
        }
        out
    }

    /// `m.get(&k)`, `v.first()` on a local, left of a step: a lookup without side
    /// effects whose result borrows the local, which plain Rust keeps borrowed until the
    /// whole expression is evaluated; evaluated after the step it gives the same value
    /// unless a later operand writes the local or a key.
    fn lookup_unchanged(&self, op: &Expr, later: &[&Expr]) -> bool {
        let Expr::MethodCall(m) = op else {
            return false;
        };
        let simple = |a: &Expr| matches!(a, Expr::Lit(_)) || place_root(a).is_some();
        let Some(root) = place_root(&m.receiver) else {
            return false;
        };
        LOOKUPS.contains(&m.method.to_string().as_str())
            && m.args.iter().all(simple)
            && !self.needs_lowering(op)
            && !changed_by(root, Use::Operand, later)
            && m.args
                .iter()
                .filter_map(place_root)
                .all(|k| !changed_by(k, Use::Operand, later))
    }

    // Input:  `a OP b` with an `.await` in it.
    // Output: `a && b` / `a || b` with a step on the right: the `if` they mean;
    //         `a OP= b`: `b` lowered, then the assignment; other operators: both
    //         operands in Rust's order (`lower_operands`).
    fn lower_binary(&mut self, b: &syn::ExprBinary, want_value: bool) -> Lowered {
        use syn::BinOp::*;
        let (left, right, op) = (&b.left, &b.right, &b.op);
        match op {
            And(_) | Or(_) if self.needs_lowering(right) => {
                let desugared: Expr = if matches!(op, And(_)) {
                    syn::parse_quote!(if #left { #right } else { false })
                } else {
                    syn::parse_quote!(if #left { true } else { #right })
                };
                self.lower_expr(&desugared, want_value)
            }
            AddAssign(_) | SubAssign(_) | MulAssign(_) | DivAssign(_) | RemAssign(_)
            | BitXorAssign(_) | BitAndAssign(_) | BitOrAssign(_) | ShlAssign(_) | ShrAssign(_) => {
                if self.needs_lowering(left) {
                    return self.error(left.span(), unsupported_place());
                }
                let r = self.lower_expr(right, true).tokens;
                let l = self.plain(left).tokens;
                impure(quote!(#l #op #r))
            }
            _ => {
                let r = self.lower_operands(&[(&**left, binary_use(op)), (&**right, Use::Value)]);
                let (l, rr) = (&r[0], &r[1]);
                impure(quote!(#l #op #rr))
            }
        }
    }

    // Input:  `name!(a, b.await, ..)` for the expression-list macros, `vec![e; n]`.
    // Output: the macro with its operands lowered in Rust's order.
    fn lower_macro(&mut self, mac: &syn::Macro) -> Lowered {
        if let Some((elem, count)) = vec_repeat(mac) {
            let r = self.lower_operands(&[(&elem, Use::Value), (&count, Use::Value)]);
            let (path, e, n) = (&mac.path, &r[0], &r[1]);
            return impure(quote!(#path![#e; #n]));
        }
        let Some(args) = macro_args(mac) else {
            let name = mac
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default();
            return self.error(
                mac.span(),
                format!(
                    "`.await` inside `{name}!` cannot be compiled; bind the awaited value to \
                     a `let` first and pass the variable to `{name}!`"
                ),
            );
        };
        // `name = value` arguments of format macros: only the value is an expression.
        let how = macro_use(mac);
        let mut names_of = Vec::new();
        let mut ops = Vec::new();
        for a in &args {
            match a {
                Expr::Assign(asg) if matches!(&*asg.left, Expr::Path(_)) => {
                    names_of.push(Some(asg.left.clone()));
                    ops.push((&*asg.right, how));
                }
                other => {
                    names_of.push(None);
                    ops.push((other, how));
                }
            }
        }
        let lowered = self.lower_operands(&ops);
        let parts = names_of.into_iter().zip(lowered).map(|(n, v)| match n {
            Some(n) => quote!(#n = #v),
            None => v,
        });
        let path = &mac.path;
        let body = quote!(#(#parts),*);
        let tokens = match &mac.delimiter {
            syn::MacroDelimiter::Paren(_) => quote!(#path!(#body)),
            syn::MacroDelimiter::Bracket(_) => quote!(#path![#body]),
            syn::MacroDelimiter::Brace(_) => quote!(#path!{#body}),
        };
        impure(tokens)
    }

    // ----- control flow ----------------------------------------------------------

    fn value_temp(&mut self, want_value: bool, span: Span) -> Option<SlotId> {
        want_value.then(|| self.temp("val", span))
    }

    fn result_of(&self, temp: Option<SlotId>) -> Lowered {
        match temp {
            Some(s) => Lowered {
                tokens: self.cfg.slots[s].name.to_token_stream(),
                pure: true,
            },
            None => Lowered {
                tokens: quote!(()),
                pure: true,
            },
        }
    }

    // Input:  a branch body and the block `b` created for it.
    // Output: `b` holds the body; its value goes to `temp`; it ends with a goto `join`.
    /// Lowers one branch (then/else/arm body) into its own block, storing its value in
    /// `temp` and going to `join`.
    fn lower_branch_block(&mut self, b: BlockId, body: &Expr, temp: Option<SlotId>, join: BlockId) {
        self.switch_to(b);
        let v = self.lower_expr(body, temp.is_some());
        if !self.block().terminated {
            if let Some(t) = temp {
                self.assign_temp(t, v.tokens);
            } else if !v.pure {
                self.note_tokens(&v.tokens);
                let t = v.tokens;
                self.push(quote!(#t;));
            }
            self.goto(join);
        }
    }

    // Input:  a branch body without `.await`.
    // Output: `{ let temp = body; goto join }` (or `{ body; goto join }`), inline.
    /// Code for a branch that needs no lowering, inlined in the dispatching block.
    fn inline_branch(&mut self, body: &Expr, temp: Option<SlotId>, join: BlockId) -> TokenStream {
        let saved = self.defined.clone();
        let v = self.plain(body).tokens;
        self.note_tokens(&v);
        let code = match temp {
            Some(t) => {
                let name = self.cfg.slots[t].name.clone();
                self.define(t);
                quote!(let #name = #v;)
            }
            None => quote!(#v;),
        };
        let exit = self.exit(join, ExitKind::Goto);
        self.defined = saved;
        quote!({ #code #exit })
    }

    // Input:  `if COND { THEN } else { ELSE }` with a step somewhere in it.
    // Output: COND lowered, then `if cond { goto then } else { goto else }` (a branch
    //         without steps stays inline); both branches store the value in a
    //         temporary and go to a join block, where lowering continues.
    //         `if let PAT = E`: the `match E { PAT => .., _ => .. }` it means.
    fn lower_if(&mut self, e: &syn::ExprIf, want_value: bool) -> Lowered {
        let temp = self.value_temp(want_value && e.else_branch.is_some(), e.span());
        let join = self.new_block();
        let then_expr = Expr::Block(syn::ExprBlock {
            attrs: Vec::new(),
            label: None,
            block: e.then_branch.clone(),
        });
        let unit: Expr = syn::parse_quote!(());
        let else_expr: &Expr = e.else_branch.as_ref().map(|(_, x)| &**x).unwrap_or(&unit);
        if let Expr::Let(l) = &*e.cond {
            let arms = vec![
                ArmSpec {
                    attrs: Vec::new(),
                    pat: (*l.pat).clone(),
                    guard: None,
                    body: &then_expr,
                },
                ArmSpec {
                    attrs: Vec::new(),
                    pat: syn::parse_quote!(_),
                    guard: None,
                    body: else_expr,
                },
            ];
            self.dispatch_match(&l.expr, arms, temp, join, true);
        } else {
            let cond = self.lower_expr(&e.cond, true).tokens;
            self.note_tokens(&cond);
            let then_code = self.branch_code(&then_expr, temp, join);
            let else_code = self.branch_code(else_expr, temp, join);
            self.push(quote!(if #cond #then_code else #else_code));
            self.block_mut().terminated = true;
            self.finish_branches();
        }
        self.switch_to(join);
        self.result_of(temp)
    }

    /// Either inline code for a branch, or a goto to a block lowered later; see
    /// [`Self::finish_branches`].
    fn branch_code(&mut self, body: &Expr, temp: Option<SlotId>, join: BlockId) -> TokenStream {
        if self.needs_lowering(body) {
            let b = self.new_block();
            self.pending.push(PendingBranch {
                block: b,
                body: body.clone(),
                temp,
                join,
            });
            let exit = self.exit(b, ExitKind::Goto);
            quote!({ #exit })
        } else {
            self.inline_branch(body, temp, join)
        }
    }

    fn finish_branches(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            self.lower_branch_block(p.block, &p.body, p.temp, p.join);
        }
    }

    // Input:  `match E { PAT if GUARD => BODY, .. }` with a step somewhere in it.
    // Output: E lowered, then `match e { PAT if GUARD => { goto arm }, .. }`; each arm
    //         that binds or steps gets a block (its bindings handed over), the others
    //         stay inline; all store the value in a temporary and go to a join block.
    fn lower_match(&mut self, m: &syn::ExprMatch, want_value: bool) -> Lowered {
        for arm in &m.arms {
            if let Some((_, g)) = &arm.guard {
                if self.needs_lowering(g) {
                    self.error(
                        g.span(),
                        "`.await` in a match guard is not supported in a #[workflow]; await \
                         before the `match` and use the result in the guard",
                    );
                }
            }
        }
        let temp = self.value_temp(want_value, m.span());
        let join = self.new_block();
        let arms = m
            .arms
            .iter()
            .map(|a| ArmSpec {
                attrs: a.attrs.clone(),
                pat: a.pat.clone(),
                guard: a.guard.as_ref().map(|(_, g)| (**g).clone()),
                body: &a.body,
            })
            .collect();
        self.dispatch_match(&m.expr, arms, temp, join, false);
        self.switch_to(join);
        self.result_of(temp)
    }

    // Input:  a scrutinee and arms (of a `match`, or of the `match` an `if let` is).
    // Output: `prefix; match scrut { PAT => { goto arm_block } | { inline body }, .. }`
    //         ending the current block; arm blocks lowered after it.
    /// Emits `match scrutinee { arms }` where each arm's bindings are handed to the arm's
    /// block (or the arm runs inline when it needs no lowering).
    fn dispatch_match(
        &mut self,
        scrutinee: &Expr,
        arms: Vec<ArmSpec<'_>>,
        temp: Option<SlotId>,
        join: BlockId,
        force_blocks: bool,
    ) {
        let plain_arms = arms.iter().all(|a| {
            !self.needs_lowering(a.body) && a.guard.as_ref().is_none_or(|g| !self.needs_lowering(g))
        });
        if plain_arms {
            // Only the scrutinee steps: the `match` stays one piece of plain code after
            // it, so its bindings (borrows of the scrutinee included) never leave it.
            let scrut = self.lower_expr(scrutinee, true).tokens;
            self.note_tokens(&scrut);
            let arm_code = arms.iter().map(|a| {
                let (attrs, pat, body) = (&a.attrs, &a.pat, a.body);
                let guard = a.guard.as_ref().map(|g| quote!(if #g));
                quote!(#(#attrs)* #pat #guard => #body)
            });
            let m: Expr = syn::parse_quote!(match __flow_scrutinee { #(#arm_code,)* });
            let code = self.inline_branch(&m, temp, join);
            self.push(replace_ident(code, "__flow_scrutinee", &quote!((#scrut))));
            self.block_mut().terminated = true;
            return;
        }
        let lowered: Vec<bool> = arms
            .iter()
            .map(|a| force_blocks || self.needs_lowering(a.body))
            .collect();
        let hoisted = self.hoist_lookup_args(scrutinee);
        let scrutinee = hoisted.as_ref().unwrap_or(scrutinee);
        let reevaluable = is_reevaluable_borrow(scrutinee);
        if !reevaluable {
            self.check_not_borrowed(scrutinee, arms.iter().map(|a| &a.pat).zip(lowered));
        }
        let scrut = self.lower_expr(scrutinee, true).tokens;
        self.note_tokens(&scrut);
        let shadows: Vec<TokenStream> = arms.iter().map(|a| self.shadow_points(&a.pat)).collect();
        let any_shadow = shadows.iter().any(|s| !s.is_empty());
        // Bindings that borrow from the scrutinee are matched again in the arm's blocks
        // rather than carried through the frame (which owns its values).
        let rebind_from = (reevaluable && !any_shadow).then(|| scrut.clone());
        let (prefix, scrut) = scrutinee_before_shadows(scrut, shadows.into_iter().collect());
        let mut arm_code = Vec::new();
        let mut lowered_arms = Vec::new();
        for arm in &arms {
            let saved = self.defined.clone();
            let gate = cfg_of(&arm.attrs);
            let gated = gate.is_some();
            self.cfg_stack.extend(gate.clone());
            self.push_scope();
            let bound = self.declare_pattern(&arm.pat, false);
            if let Some(g) = &arm.guard {
                self.note_uses(names::mentioned(g));
            }
            let inline =
                !force_blocks && !any_shadow && bound.is_empty() && !self.needs_lowering(arm.body);
            let body = if inline {
                self.inline_branch(arm.body, temp, join)
            } else {
                if let Some(scrut) = &rebind_from {
                    self.rebind_arm(scrut, &arm.pat, &bound);
                }
                let b = self.new_block();
                lowered_arms.push((
                    b,
                    arm.body.clone(),
                    self.scopes.last().cloned().unwrap_or_default(),
                    gate,
                ));
                let exit = self.exit(b, ExitKind::Goto);
                quote!({ #exit })
            };
            self.pop_scope();
            if gated {
                self.cfg_stack.pop();
            }
            self.defined = saved;
            let (attrs, pat) = (&arm.attrs, &arm.pat);
            let guard = arm.guard.as_ref().map(|g| quote!(if #g));
            arm_code.push(quote!(#(#attrs)* #pat #guard => #body));
        }
        self.push(quote!(#prefix match #scrut { #(#arm_code,)* }));
        self.block_mut().terminated = true;
        for (b, body, frame, gate) in lowered_arms {
            let gated = gate.is_some();
            self.cfg_stack.extend(gate);
            self.push_frame(frame);
            self.lower_branch_block(b, &body, temp, join);
            self.pop_scope();
            if gated {
                self.cfg_stack.pop();
            }
        }
    }

    /// `m.get(&key_of(x))`, `m.get(&num(x).await?)`: the computed key is bound to a
    /// temporary first (`let t = key_of(x); m.get(&t)`), so the lookup can be evaluated
    /// again (a key with a step is lowered as any operand is).
    fn hoist_lookup_args(&mut self, scrutinee: &Expr) -> Option<Expr> {
        let Expr::MethodCall(m) = scrutinee else {
            return None;
        };
        let computed_ref =
            |a: &Expr| matches!(a, Expr::Reference(r) if place_root(&r.expr).is_none());
        let simple = |a: &Expr| matches!(a, Expr::Lit(_)) || place_root(a).is_some();
        let steps_outside_keys = self.needs_lowering(&m.receiver)
            || m.args
                .iter()
                .any(|a| !computed_ref(a) && self.needs_lowering(a));
        if steps_outside_keys
            || !LOOKUPS.contains(&m.method.to_string().as_str())
            || place_root(&m.receiver).is_none()
            || !m.args.iter().any(computed_ref)
            || !m.args.iter().all(|a| computed_ref(a) || simple(a))
        {
            return None;
        }
        let mut hoisted = m.clone();
        for arg in hoisted.args.iter_mut() {
            if let Expr::Reference(r) = arg {
                if place_root(&r.expr).is_none() {
                    let value = if self.needs_lowering(&r.expr) {
                        self.lower_expr(&r.expr, true).tokens
                    } else {
                        self.plain(&r.expr).tokens
                    };
                    let temp = self.bind_temp(value, r.expr.span());
                    *r.expr = syn::parse_quote!(#temp);
                }
            }
        }
        Some(Expr::MethodCall(hoisted))
    }

    /// Makes the bindings of an arm matched against a borrow (`&x`, `m.get(&k)`) bound
    /// again, by matching the scrutinee again, in the blocks that read them.
    fn rebind_arm(&mut self, scrut: &TokenStream, pat: &Pat, bound: &[SlotId]) {
        let bindings = names::bindings(pat);
        if bound.is_empty() || bindings.iter().any(|b| b.mutable || b.by_ref) {
            return;
        }
        let names: Vec<&Ident> = bindings.iter().map(|b| &b.ident).collect();
        let deps = self.deps_of(scrut, bound);
        let g = self.cfg.rebinds.len();
        self.cfg.rebinds.push(Rebind {
            code: quote! {
                #[allow(unreachable_patterns)]
                let (#(#names,)*) = match #scrut {
                    #pat => (#(#names,)*),
                    _ => ::core::unreachable!(),
                };
            },
            deps,
            cfg: self.cfg_stack.clone(),
        });
        for &slot in bound {
            self.cfg.slots[slot].rebound_by = Some(g);
            self.cfg.slots[slot].borrow = true;
        }
    }

    /// The slots `code` reads, other than `own`.
    fn deps_of(&self, code: &TokenStream, own: &[SlotId]) -> Vec<SlotId> {
        names::mentioned_in_tokens(code)
            .iter()
            .filter_map(|i| self.lookup(&i.to_string()))
            .filter(|d| !own.contains(d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Patterns matched against a borrow bind references; an arm that then reaches a
    /// step would carry them across it (and through the frame, which owns its values).
    fn check_not_borrowed<'p>(
        &mut self,
        scrutinee: &Expr,
        arms: impl Iterator<Item = (&'p Pat, bool)>,
    ) {
        let mut inner = scrutinee;
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        let Expr::Reference(r) = inner else { return };
        let binds_in_lowered_arm = arms
            .into_iter()
            .any(|(pat, lowered)| lowered && !names::bindings(pat).is_empty());
        if binds_in_lowered_arm {
            self.error(
                r.span(),
                "this pattern matches a borrow, and an arm that binds from it reaches a step: \
                 the bindings would be references to a temporary held across the step; match \
                 on the owned value instead (without the `&`), or clone what you need before \
                 the `.await`",
            );
        }
    }

    fn label_of(label: &Option<syn::Label>) -> Option<String> {
        label.as_ref().map(|l| l.name.ident.to_string())
    }

    // Input:  `'label: loop { BODY }` with a step or a lowered jump in it.
    // Output: goto head; head: BODY; goto head. `break v` stores `v` in the loop's
    //         temporary and goes to the exit block, `continue` to the head.
    fn lower_loop(&mut self, l: &syn::ExprLoop, want_value: bool) -> Lowered {
        let temp = self.value_temp(want_value, l.span());
        let exit = self.new_block();
        let head = self.new_block();
        self.goto(head);
        self.switch_to(head);
        self.loops.push(LoopCtx {
            label: Self::label_of(&l.label),
            cont: Some(head),
            exit,
            result: temp,
        });
        self.lower_block(&l.body, false);
        if !self.block().terminated {
            self.goto(head);
        }
        self.loops.pop();
        self.switch_to(exit);
        self.result_of(temp)
    }

    // Input:  `'label: { BODY }` with a step in it.
    // Output: BODY; its value or a `break 'label v` goes to a temporary and the exit.
    fn lower_labelled_block(&mut self, b: &syn::ExprBlock, want_value: bool) -> Lowered {
        let temp = self.value_temp(want_value, b.span());
        let exit = self.new_block();
        self.loops.push(LoopCtx {
            label: Self::label_of(&b.label),
            cont: None,
            exit,
            result: temp,
        });
        let v = self.lower_block(&b.block, temp.is_some());
        if !self.block().terminated {
            if let Some(t) = temp {
                self.assign_temp(t, v.tokens);
            }
            self.goto(exit);
        }
        self.loops.pop();
        self.switch_to(exit);
        self.result_of(temp)
    }

    // Input:  `'label: while COND { BODY }` (or `while let PAT = E`).
    // Output: see `lower_conditional_loop`.
    fn lower_while(&mut self, w: &syn::ExprWhile) -> Lowered {
        self.lower_conditional_loop(&w.label, &w.cond, &w.body, |_| ())
    }

    // Input:  a loop's label, condition and body.
    // Output: goto head; head: `if cond { goto body } else { goto exit }` (or the
    //         `match` of a `let` condition); body: BODY; goto head. Lowering continues
    //         in the exit block.
    /// A `while`/`while let`/`for` loop: a head block that tests `cond` (built by
    /// `in_head` once the head exists, for loops that need setup there) and a body that
    /// goes back to the head.
    fn lower_conditional_loop(
        &mut self,
        label: &Option<syn::Label>,
        cond: &Expr,
        body: &syn::Block,
        in_head: impl FnOnce(&mut Self),
    ) -> Lowered {
        let exit = self.new_block();
        let head = self.new_block();
        self.goto(head);
        self.switch_to(head);
        self.loops.push(LoopCtx {
            label: Self::label_of(label),
            cont: Some(head),
            exit,
            result: None,
        });
        in_head(self);
        let (body_block, frame) = self.new_block_after_cond(cond, exit);
        self.switch_to(body_block);
        self.push_frame(frame);
        self.lower_block(body, false);
        if !self.block().terminated {
            self.goto(head);
        }
        self.pop_scope();
        self.loops.pop();
        self.switch_to(exit);
        self.result_of(None)
    }

    // Input:  `COND` or `let PAT = E` at the end of a loop head.
    // Output: the test ending the head block; the body block and PAT's bindings.
    /// Emits the condition test of a `while`/`while let`; returns the body block and the
    /// scope frame of the pattern's bindings, which the body sees.
    fn new_block_after_cond(
        &mut self,
        cond: &Expr,
        exit: BlockId,
    ) -> (BlockId, Vec<(String, SlotId)>) {
        if let Expr::Let(l) = cond {
            let hoisted = self.hoist_lookup_args(&l.expr);
            let scrutinee = hoisted.as_ref().unwrap_or(&l.expr);
            let reevaluable = is_reevaluable_borrow(scrutinee);
            if !reevaluable {
                self.check_not_borrowed(scrutinee, std::iter::once((&*l.pat, true)));
            }
            let scrut = self.lower_expr(scrutinee, true).tokens;
            self.note_tokens(&scrut);
            let shadows = self.shadow_points(&l.pat);
            let rebind_from = (reevaluable && shadows.is_empty()).then(|| scrut.clone());
            let (prefix, scrut) = scrutinee_before_shadows(scrut, shadows);
            let saved = self.defined.clone();
            self.push_scope();
            let bound = self.declare_pattern(&l.pat, false);
            if let Some(scrut) = &rebind_from {
                // `while let Some(top) = stack.last()`: matched again where it is read.
                self.rebind_arm(scrut, &l.pat, &bound);
            }
            let body = self.new_block();
            let frame = self.scopes.last().cloned().unwrap_or_default();
            let enter = self.exit(body, ExitKind::Goto);
            self.pop_scope();
            self.defined = saved;
            let leave = self.exit(exit, ExitKind::Goto);
            let pat = &l.pat;
            self.push(quote!(#prefix match #scrut { #pat => { #enter } _ => { #leave } }));
            self.block_mut().terminated = true;
            (body, frame)
        } else {
            let c = self.lower_expr(cond, true).tokens;
            self.note_tokens(&c);
            let body = self.new_block();
            let enter = self.exit(body, ExitKind::Goto);
            let leave = self.exit(exit, ExitKind::Goto);
            self.push(quote!(if #c { #enter } else { #leave }));
            self.block_mut().terminated = true;
            (body, Vec::new())
        }
    }

    // Input:  `for PAT in EXPR { BODY }` with a step in BODY.
    // Output: a half-open range journaled as its bounds; a borrowed collection read again
    //         at each item (see `lower_for_borrowed`); otherwise the items collected
    //         once into a journaled vector and a journaled position:
    //         `let items = for_items(EXPR); let pos = 0;
    //          head: match for_next(&mut items, &mut pos) { Some(PAT) => BODY; goto head,
    //                                                       None => goto exit }`
    fn lower_for(&mut self, f: &syn::ExprForLoop) -> Lowered {
        if is_borrowed_iteration(&f.expr) || is_range_chain(&f.expr) {
            return self.lower_for_borrowed(f);
        }
        if let Some(root) = unbounded_range_root(&f.expr) {
            return self.error(
                root.span(),
                "an unbounded range cannot be iterated with steps in the loop body: the \
                 workflow journals the items up front; bound it (`a..b`) or use `loop` with \
                 a counter instead",
            );
        }
        if let Expr::Reference(r) = &*f.expr {
            self.cx.error_spanned_by(
                r,
                "a `for` loop with steps in its body must own what it iterates: items \
                 borrowed here would be held across a step; iterate over an owned \
                 collection (e.g. `items.clone()` or `items`)",
            );
            return self.result_of(None);
        }
        if let Expr::Range(r) = &*f.expr {
            if r.end.is_none() {
                return self.error(
                    r.span(),
                    "an unbounded range cannot be iterated with steps in the loop body: the \
                     workflow journals the items up front; use `loop` with a counter instead",
                );
            }
        }
        let items = self.lower_expr(&f.expr, true).tokens;
        self.note_tokens(&items);
        let span = f.expr.span();
        let items_slot = self.temp("items", span);
        let items_name = self.cfg.slots[items_slot].name.clone();
        let (half_open, inclusive) = match &*f.expr {
            Expr::Range(r) if r.start.is_some() => (
                matches!(r.limits, syn::RangeLimits::HalfOpen(_)),
                matches!(r.limits, syn::RangeLimits::Closed(_)),
            ),
            _ => (false, false),
        };
        let (next, in_head): (Expr, Vec<Ident>) = if inclusive {
            // `a..=b` is journaled as itself too, but a `RangeInclusive` that yielded its
            // last item does not encode that it is exhausted: once empty it becomes `None`.
            self.push(quote_spanned!(span=>
                let mut #items_name = ::core::option::Option::Some(#items);));
            self.define(items_slot);
            (
                syn::parse_quote_spanned!(span=> {
                    let __flow_item = match &mut #items_name {
                        ::core::option::Option::Some(range) => ::core::iter::Iterator::next(range),
                        ::core::option::Option::None => ::core::option::Option::None,
                    };
                    if #items_name.as_ref().is_some_and(|range| range.is_empty()) {
                        #items_name = ::core::option::Option::None;
                    }
                    __flow_item
                }),
                vec![items_name],
            )
        } else if half_open {
            // A range is journaled as its bounds, and advances by itself: `start` is the
            // position (never materialized, whatever its length).
            self.push(quote_spanned!(span=> let mut #items_name = #items;));
            self.define(items_slot);
            (
                syn::parse_quote_spanned!(span=>
                    ::core::iter::Iterator::next(&mut #items_name)),
                vec![items_name],
            )
        } else {
            let pos_slot = self.temp("pos", span);
            self.cfg.slots[pos_slot].mutable = true;
            self.cfg.slots[items_slot].write_once = true;
            let pos_name = self.cfg.slots[pos_slot].name.clone();
            let root = match &*f.expr {
                Expr::Field(_) => place_root(&f.expr).and_then(|r| self.lookup(&r.to_string())),
                _ => None,
            };
            match root {
                Some(root) => {
                    // Decided once liveness is known (see `emit::partial_move_code`).
                    let k = self.cfg.partial_moves.len();
                    self.cfg.partial_moves.push(PartialMove {
                        block: self.cur,
                        root,
                        field: items,
                        items: items_slot,
                        span,
                    });
                    let placeholder = format_ident!("__flow_partial_{}", k);
                    self.push(quote!(#placeholder));
                }
                None => self.push(quote_spanned!(span=>
                    let mut #items_name = ::flow::__private::for_items(#items);
                )),
            }
            self.push(quote_spanned!(span=> let mut #pos_name: usize = 0;));
            self.define(items_slot);
            self.define(pos_slot);
            (
                syn::parse_quote_spanned!(span=>
                    ::flow::__private::for_next(&mut #items_name, &mut #pos_name)),
                vec![items_name, pos_name],
            )
        };
        let pat = &f.pat;
        let cond: Expr = syn::parse_quote!(let ::core::option::Option::Some(#pat) = #next);
        self.lower_conditional_loop(&f.label, &cond, &f.body, |l| l.note_uses(in_head))
    }

    // Input:  `for PAT in &xs { BODY }` (or `&mut xs`, `xs.iter()`, `xs.values()`, ..,
    //         or a range with adapters: `(a..b).step_by(k)`, `(a..=b).rev().skip(1)`).
    // Output: `{ let src = a..b; let arg = k;      (a range's bounds and the adapters'
    //           let mut next = 0usize;               arguments, evaluated once, in order)
    //           loop { if SOURCE.nth(next).is_none() { break; }
    //                  next += 1;
    //                  let PAT = SOURCE.nth(next - 1).unwrap(); BODY } }`
    //         where SOURCE is the expression rebuilt from `xs` (or `src.clone()`) and the
    //         arguments. Only the position, the bounds and the arguments are journaled;
    //         each item is computed again from them (`nth` of these adapters over a range
    //         or a collection does not iterate the items before it), so nothing is
    //         collected up front, and a block after a step or a jump binds a borrowed
    //         item again the same way (`Cfg::rebinds`): no borrow is held across a step.
    fn lower_for_borrowed(&mut self, f: &syn::ExprForLoop) -> Lowered {
        self.temps += 1;
        let n = self.temps;
        let span = f.expr.span();
        let next = format_ident!("__flow_next_{}", n, span = span);
        let mut prelude = TokenStream::new();
        let source = self.rebuilt_source(&f.expr, n, &mut prelude);
        let (label, pat, body) = (&f.label, &f.pat, &f.body);
        // The end test borrows only inside its condition, and the item is bound in the
        // same block as the start of the body, so no borrow travels through the frame.
        let desugared: Expr = syn::parse_quote_spanned!(span=> {
            #prelude
            let mut #next: usize = 0;
            #label loop {
                if ::core::option::Option::is_none(&::core::iter::Iterator::nth(
                    &mut ::core::iter::IntoIterator::into_iter(#source),
                    #next,
                )) {
                    break;
                }
                #next += 1;
                let #pat = match ::core::iter::Iterator::nth(
                    &mut ::core::iter::IntoIterator::into_iter(#source),
                    #next - 1,
                ) {
                    ::core::option::Option::Some(__flow_borrowed_item) => __flow_borrowed_item,
                    ::core::option::Option::None => ::core::unreachable!(),
                };
                #body
            }
        });
        self.lower_expr(&desugared, false)
    }

    /// The iterated expression of [`Self::lower_for_borrowed`] with what Rust evaluates
    /// once before the loop (a range, the adapters' arguments) bound in `prelude` to
    /// locals of the loop (`__flow_src_N`, `__flow_arg_N_i`), so that evaluating it again
    /// for each item sees the same values whatever the body changes.
    fn rebuilt_source(&mut self, e: &Expr, n: usize, prelude: &mut TokenStream) -> TokenStream {
        match e {
            Expr::Paren(p) => self.rebuilt_source(&p.expr, n, prelude),
            Expr::Range(r) => {
                let src = format_ident!("__flow_src_{}", n, span = r.span());
                prelude.extend(quote_spanned!(r.span()=> let #src = #r;));
                quote_spanned!(r.span()=> ::core::clone::Clone::clone(&#src))
            }
            Expr::MethodCall(m) if m.method != "iter" && !m.args.is_empty() => {
                let receiver = self.rebuilt_source(&m.receiver, n, prelude);
                let args: Vec<TokenStream> = m
                    .args
                    .iter()
                    .map(|a| {
                        if matches!(a, Expr::Lit(_)) {
                            return a.to_token_stream();
                        }
                        self.temps += 1;
                        let arg = format_ident!("__flow_arg_{}_{}", n, self.temps, span = a.span());
                        prelude.extend(quote_spanned!(a.span()=> let #arg = #a;));
                        arg.into_token_stream()
                    })
                    .collect();
                let (method, turbofish) = (&m.method, &m.turbofish);
                quote!((#receiver).#method #turbofish (#(#args),*))
            }
            Expr::MethodCall(m) => {
                let receiver = self.rebuilt_source(&m.receiver, n, prelude);
                let (method, turbofish) = (&m.method, &m.turbofish);
                quote!((#receiver).#method #turbofish ())
            }
            other => other.to_token_stream(),
        }
    }

    fn find_loop(&mut self, label: &Option<syn::Lifetime>, span: Span) -> Option<usize> {
        let found = match label {
            Some(l) => {
                let name = l.ident.to_string();
                self.loops
                    .iter()
                    .rposition(|c| c.label.as_deref() == Some(name.as_str()))
            }
            None => self.loops.iter().rposition(|c| c.cont.is_some()),
        };
        if found.is_none() {
            self.error(
                span,
                "`break`/`continue` target not found among the loops of this #[workflow]",
            );
        }
        found
    }

    // Input:  `break 'label VALUE` out of a lowered loop or labelled block.
    // Output: VALUE into the loop's temporary (or evaluated and dropped); goto exit.
    fn lower_break(&mut self, b: &syn::ExprBreak) -> Lowered {
        let value = b.expr.as_ref().map(|v| self.lower_expr(v, true).tokens);
        let Some(i) = self.find_loop(&b.label, b.span()) else {
            return self.result_of(None);
        };
        let (exit, result) = (self.loops[i].exit, self.loops[i].result);
        match (result, value) {
            (Some(t), Some(v)) => self.assign_temp(t, v),
            (Some(t), None) => self.assign_temp(t, quote!(())),
            (None, Some(v)) => {
                self.note_tokens(&v);
                self.push(quote!(let _ = #v;));
            }
            (None, None) => {}
        }
        self.goto(exit);
        self.result_of(None)
    }

    // Input:  `continue 'label` in a lowered loop.
    // Output: goto the loop's head.
    fn lower_continue(&mut self, c: &syn::ExprContinue) -> Lowered {
        let Some(i) = self.find_loop(&c.label, c.span()) else {
            return self.result_of(None);
        };
        match self.loops[i].cont {
            Some(head) => self.goto(head),
            None => {
                self.error(c.span(), "`continue` cannot target a labelled block");
            }
        }
        self.result_of(None)
    }
}

/// One arm of a `match` being lowered (or of the `match` an `if let` becomes).
struct ArmSpec<'e> {
    /// The arm's attributes (`#[cfg]` gates the arm and, if lowered, its blocks).
    attrs: Vec<syn::Attribute>,
    pat: Pat,
    guard: Option<Expr>,
    body: &'e Expr,
}

/// A branch whose block is lowered after the dispatching `if` is emitted.
struct PendingBranch {
    block: BlockId,
    body: Expr,
    temp: Option<SlotId>,
    join: BlockId,
}

/// When patterns shadow locals the block holds, the scrutinee is evaluated first (it may
/// read them), then the shadowed values go back to their slots, then the `match` binds.
/// Returns the code to emit before the `match` and the scrutinee to match on.
fn scrutinee_before_shadows(
    scrut: TokenStream,
    shadows: TokenStream,
) -> (TokenStream, TokenStream) {
    if shadows.is_empty() {
        (TokenStream::new(), scrut)
    } else {
        (
            quote!(let __flow_scrutinee = #scrut; #shadows),
            quote!(__flow_scrutinee),
        )
    }
}

/// `&xs`, `&mut xs.f`, `xs.iter()`, `xs.values()`, ...: iterating borrows a local.
fn is_borrowed_iteration(e: &Expr) -> bool {
    const BORROWING: &[&str] = &[
        "iter",
        "iter_mut",
        "keys",
        "values",
        "values_mut",
        "chars",
        "char_indices",
        "bytes",
        "lines",
    ];
    match e {
        Expr::Reference(r) => place_root(&r.expr).is_some(),
        Expr::MethodCall(m) if BORROWING.contains(&m.method.to_string().as_str()) => {
            m.args.is_empty() && place_root(&m.receiver).is_some()
        }
        // Adapters that keep the iteration a pure function of the position.
        // Adapters' arguments are evaluated once, before the loop (`rebuilt_source`).
        Expr::MethodCall(m) => {
            POSITIONAL_ADAPTERS.contains(&m.method.to_string().as_str())
                && !m.args.iter().any(|a| tokens_await(&a.to_token_stream()))
                && is_borrowed_iteration(&m.receiver)
        }
        Expr::Paren(p) => is_borrowed_iteration(&p.expr),
        _ => false,
    }
}

/// Adapters whose `nth` over a range or a collection does not go through the items
/// before it, so the iteration is a function of the position.
const POSITIONAL_ADAPTERS: &[&str] = &["enumerate", "rev", "skip", "take", "step_by"];

/// `(a..b).step_by(k)`, `(a..=b).rev()`, `(a..b)`: a bounded range, possibly behind
/// positional adapters whose arguments have no step.
fn is_range_chain(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => match &*p.expr {
            Expr::Range(r) => r.start.is_some() && r.end.is_some(),
            inner => is_range_chain(inner),
        },
        Expr::MethodCall(m) => {
            POSITIONAL_ADAPTERS.contains(&m.method.to_string().as_str())
                && !m.args.iter().any(|a| tokens_await(&a.to_token_stream()))
                && match &*m.receiver {
                    Expr::Range(r) => r.start.is_some() && r.end.is_some(),
                    Expr::Paren(p) => match &*p.expr {
                        Expr::Range(r) => r.start.is_some() && r.end.is_some(),
                        _ => is_range_chain(&m.receiver),
                    },
                    _ => is_range_chain(&m.receiver),
                }
        }
        _ => false,
    }
}

/// The unbounded range (`a..`) at the root of `e`, behind positional adapters other than
/// `take` (which bounds it).
fn unbounded_range_root(e: &Expr) -> Option<&syn::ExprRange> {
    match e {
        Expr::Paren(p) => unbounded_range_root(&p.expr),
        Expr::Range(r) if r.end.is_none() => Some(r),
        Expr::MethodCall(m)
            if m.method != "take"
                && POSITIONAL_ADAPTERS.contains(&m.method.to_string().as_str()) =>
        {
            unbounded_range_root(&m.receiver)
        }
        _ => None,
    }
}

/// Methods that look up a borrow inside their receiver, without side effects.
const LOOKUPS: &[&str] = &[
    "get",
    "get_mut",
    "first",
    "last",
    "first_mut",
    "last_mut",
    "as_ref",
    "as_mut",
    "as_deref",
    "as_deref_mut",
    "get_key_value",
];

/// A scrutinee that borrows from locals and can be evaluated again to the same value:
/// `&x`, `&mut x.f`, or a lookup such as `m.get(&k)` / `v.first()` on a local.
fn is_reevaluable_borrow(e: &Expr) -> bool {
    let simple_arg = |a: &Expr| matches!(a, Expr::Lit(_)) || place_root(a).is_some();
    match e {
        Expr::Reference(r) => place_root(&r.expr).is_some(),
        Expr::MethodCall(m) => {
            LOOKUPS.contains(&m.method.to_string().as_str())
                && place_root(&m.receiver).is_some()
                && m.args.iter().all(simple_arg)
        }
        Expr::Paren(p) => is_reevaluable_borrow(&p.expr),
        _ => false,
    }
}

/// The item of a borrowed iteration (see `Lowerer::lower_for_borrowed`).
fn is_borrowed_item(e: &Expr) -> bool {
    let Expr::Match(m) = e else { return false };
    m.arms.first().is_some_and(|arm| {
        arm.pat
            .to_token_stream()
            .into_iter()
            .any(|t| matches!(&t, proc_macro2::TokenTree::Group(g) if g.stream().to_string() == "__flow_borrowed_item"))
    })
}

/// A `let` with a `#[cfg]`: its predicate and the statement.
fn gated_let(stmt: &Stmt) -> Option<(TokenStream, &syn::Local)> {
    let Stmt::Local(local) = stmt else {
        return None;
    };
    match classify(&local.attrs) {
        Ok(StmtAttrs::Cfg(predicate)) => Some((predicate, local)),
        _ => None,
    }
}

/// A string literal, or an `if`/`match`/block whose every value is one: a `&'static str`.
fn is_str_literal(e: &Expr) -> bool {
    let tail_is_str = |b: &syn::Block| match b.stmts.last() {
        Some(Stmt::Expr(e, None)) => is_str_literal(e),
        _ => false,
    };
    match e {
        Expr::Lit(l) => matches!(l.lit, syn::Lit::Str(_)),
        Expr::Paren(p) => is_str_literal(&p.expr),
        Expr::Block(b) => tail_is_str(&b.block),
        Expr::If(i) => {
            tail_is_str(&i.then_branch)
                && i.else_branch
                    .as_ref()
                    .is_some_and(|(_, e)| is_str_literal(e))
        }
        Expr::Match(m) => !m.arms.is_empty() && m.arms.iter().all(|a| is_str_literal(&a.body)),
        _ => false,
    }
}

/// Whether `let pat = init` visibly binds a `HashMap`/`HashSet` (whose iteration order a
/// restart does not keep): its type names one, or the value is built by one of their
/// constructors (`HashMap::new()`, `HashSet::from(..)`) or a `collect::<HashMap<..>>()`,
/// possibly as a block's or a branch's value. A value merely computed from a map
/// (`let n = m.len()`) is not one: the warning this feeds must not fire on it.
fn visibly_hashed(pat: &Pat, init: &Expr) -> bool {
    match pat {
        Pat::Type(t) => mentions_hashed_collection(&t.ty.to_token_stream()),
        Pat::Ident(_) => builds_hashed_collection(init),
        _ => false,
    }
}

/// Whether the value of `e` is visibly a new `HashMap`/`HashSet` (see [`visibly_hashed`]).
fn builds_hashed_collection(e: &Expr) -> bool {
    match e {
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => mentions_hashed_collection(&p.path.to_token_stream()),
            _ => false,
        },
        Expr::MethodCall(m) => {
            m.method == "collect"
                && m.turbofish
                    .as_ref()
                    .is_some_and(|t| mentions_hashed_collection(&t.to_token_stream()))
        }
        Expr::Paren(p) => builds_hashed_collection(&p.expr),
        Expr::Block(b) => block_builds_hashed_collection(&b.block),
        Expr::If(i) => {
            block_builds_hashed_collection(&i.then_branch)
                || i.else_branch
                    .as_ref()
                    .is_some_and(|(_, e)| builds_hashed_collection(e))
        }
        Expr::Match(m) => m.arms.iter().any(|a| builds_hashed_collection(&a.body)),
        _ => false,
    }
}

/// Whether a block's value is visibly a new `HashMap`/`HashSet`: its tail builds one, or
/// names a local the block bound to one (`{ let mut m = HashMap::new(); ..; m }`).
fn block_builds_hashed_collection(b: &syn::Block) -> bool {
    let Some(Stmt::Expr(tail, None)) = b.stmts.last() else {
        return false;
    };
    if builds_hashed_collection(tail) {
        return true;
    }
    let Expr::Path(p) = tail else {
        return false;
    };
    let Some(name) = p.path.get_ident() else {
        return false;
    };
    b.stmts.iter().rev().any(|s| match s {
        Stmt::Local(l) => {
            let binds = match &l.pat {
                Pat::Ident(i) => &i.ident == name,
                Pat::Type(t) => matches!(&*t.pat, Pat::Ident(i) if &i.ident == name),
                _ => false,
            };
            binds
                && l.init
                    .as_ref()
                    .is_some_and(|i| visibly_hashed(&l.pat, &i.expr))
        }
        _ => false,
    })
}

/// Whether `tokens` name `HashMap` or `HashSet` anywhere.
fn mentions_hashed_collection(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|tt| match tt {
        proc_macro2::TokenTree::Ident(i) => i == "HashMap" || i == "HashSet",
        proc_macro2::TokenTree::Group(g) => mentions_hashed_collection(&g.stream()),
        _ => false,
    })
}

/// The name an item declares, for the items whose name can clash.
fn item_name(item: &syn::Item) -> Option<&Ident> {
    match item {
        syn::Item::Struct(i) => Some(&i.ident),
        syn::Item::Enum(i) => Some(&i.ident),
        syn::Item::Union(i) => Some(&i.ident),
        syn::Item::Trait(i) => Some(&i.ident),
        syn::Item::TraitAlias(i) => Some(&i.ident),
        syn::Item::Type(i) => Some(&i.ident),
        syn::Item::Static(i) => Some(&i.ident),
        syn::Item::Mod(i) => Some(&i.ident),
        syn::Item::Macro(i) => i.ident.as_ref(),
        _ => None,
    }
}

fn item_kind(item: &syn::Item) -> &'static str {
    match item {
        syn::Item::Static(_) => "static",
        syn::Item::Mod(_) => "module",
        syn::Item::Macro(_) => "macro",
        syn::Item::Trait(_) | syn::Item::TraitAlias(_) => "trait",
        _ => "type",
    }
}

fn count_mentions(tokens: &TokenStream, name: &Ident) -> usize {
    tokens
        .clone()
        .into_iter()
        .map(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => usize::from(&i == name),
            proc_macro2::TokenTree::Group(g) => count_mentions(&g.stream(), name),
            _ => 0,
        })
        .sum()
}

/// How messages name a generated local: by what it holds and where, never by its
/// generated identifier.
/// `code` with every identifier `name` replaced by `with`.
fn replace_ident(code: TokenStream, name: &str, with: &TokenStream) -> TokenStream {
    code.into_iter()
        .flat_map(|tt| match tt {
            proc_macro2::TokenTree::Group(g) => {
                let mut ng =
                    proc_macro2::Group::new(g.delimiter(), replace_ident(g.stream(), name, with));
                ng.set_span(g.span());
                TokenStream::from(proc_macro2::TokenTree::Group(ng))
            }
            proc_macro2::TokenTree::Ident(i) if i == name => with.clone(),
            other => TokenStream::from(other),
        })
        .collect()
}

/// What a local the lowering itself binds with a `let` holds, for messages (which never
/// name a generated identifier).
fn generated_label(ident: &Ident) -> Option<String> {
    let name = ident.to_string();
    let line = ident.span().start().line;
    let what = if name.starts_with("__flow_next_") {
        "the position of"
    } else if name.starts_with("__flow_src_") {
        "the range iterated by"
    } else if name.starts_with("__flow_arg_") {
        "an argument of what is iterated by"
    } else {
        return None;
    };
    Some(format!("{what} the `for` loop at line {line}"))
}

fn describe_temp(what: &str, span: Span) -> String {
    let line = span.start().line;
    match what {
        "items" => format!("what the `for` loop at line {line} iterates over"),
        "pos" => format!("the position of the `for` loop at line {line}"),
        "await" => format!("the output of the `.await` at line {line}"),
        "val" => format!("the value of the expression at line {line}"),
        _ => format!("the operand evaluated before the step at line {line}"),
    }
}

fn impure(tokens: TokenStream) -> Lowered {
    Lowered {
        tokens,
        pure: false,
    }
}

/// A read of a place or a literal: evaluating it after a suspension observes the same
/// value (durable operations cannot touch the workflow's locals).
fn is_place(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Path(_) => true,
        Expr::Field(f) => is_place(&f.base),
        Expr::Paren(p) => is_place(&p.expr),
        Expr::Group(g) => is_place(&g.expr),
        Expr::Reference(r) => is_place(&r.expr),
        _ => false,
    }
}

/// The name of what is awaited, for state names and the history.
pub fn op_name(e: &Expr) -> String {
    match e {
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => p
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .unwrap_or_default(),
            other => op_name(other),
        },
        Expr::MethodCall(m) => op_name(&m.receiver),
        Expr::Macro(m) => m
            .mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        Expr::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        Expr::Paren(p) => op_name(&p.expr),
        _ => "await".into(),
    }
}

fn unsupported_position() -> &'static str {
    "`.await` in this position cannot be compiled into a #[workflow]'s state machine; \
     bind the awaited value to a `let` first and use the variable here"
}

fn unsupported_place() -> &'static str {
    "`.await` on the left of an assignment is not supported in a #[workflow]; compute the \
     target first and bind the awaited value to a `let`"
}

/// Finds `.await`s and jumps out to lowered loops.
struct NeedsLowering {
    labels: Vec<String>,
    in_lowered_loop: bool,
    depth: usize,
    found: bool,
}

impl<'ast> Visit<'ast> for NeedsLowering {
    fn visit_expr(&mut self, e: &'ast Expr) {
        if self.found {
            return;
        }
        match e {
            Expr::Await(_) => self.found = true,
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Break(b) => {
                if self.jumps_out(&b.label) {
                    self.found = true;
                } else if let Some(v) = &b.expr {
                    self.visit_expr(v);
                }
            }
            Expr::Continue(c) => {
                if self.jumps_out(&c.label) {
                    self.found = true;
                }
            }
            Expr::Loop(l) => {
                self.depth += 1;
                self.visit_block(&l.body);
                self.depth -= 1;
            }
            Expr::While(w) => {
                self.visit_expr(&w.cond);
                self.depth += 1;
                self.visit_block(&w.body);
                self.depth -= 1;
            }
            Expr::ForLoop(f) => {
                self.visit_expr(&f.expr);
                self.depth += 1;
                self.visit_block(&f.body);
                self.depth -= 1;
            }
            Expr::Macro(m) => self.visit_macro(&m.mac),
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if let Some(args) = macro_args(mac) {
            for a in &args {
                self.visit_expr(a);
            }
        } else if let Some((elem, count)) = vec_repeat(mac) {
            self.visit_expr(&elem);
            self.visit_expr(&count);
        } else if tokens_await(&mac.tokens) {
            self.found = true;
        }
    }

    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        self.visit_macro(&m.mac);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

impl NeedsLowering {
    fn jumps_out(&self, label: &Option<syn::Lifetime>) -> bool {
        match label {
            Some(l) => self.labels.contains(&l.ident.to_string()),
            None => self.depth == 0 && self.in_lowered_loop,
        }
    }
}

/// Whether raw macro tokens contain `.await`.
pub fn tokens_await(tokens: &TokenStream) -> bool {
    let mut prev_dot = false;
    for tt in tokens.clone() {
        match &tt {
            proc_macro2::TokenTree::Ident(i) if prev_dot && i == "await" => return true,
            proc_macro2::TokenTree::Group(g) if tokens_await(&g.stream()) => return true,
            _ => {}
        }
        prev_dot = matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == '.');
    }
    false
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::*;

    /// Lowers the body of `async fn wf(x: i64) -> i64 { body }`; the graph and the
    /// errors reported (their messages).
    fn lower(body: TokenStream) -> (Cfg, Vec<String>) {
        let block: syn::Block = syn::parse2(quote!({ #body })).expect("a block");
        let output = quote!(i64);
        let cx = Ctxt::new();
        let mut lowerer = Lowerer::new(&output, &cx);
        lowerer.bind_input(&syn::parse_quote!(x), &quote!(i64));
        lowerer.lower_body(&block);
        let cfg = lowerer.cfg;
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (cfg, errors)
    }

    /// Lowers a body that must lower without errors.
    fn lower_ok(body: TokenStream) -> Cfg {
        let (cfg, errors) = lower(body);
        assert!(errors.is_empty(), "unexpected errors: {errors:?}");
        cfg
    }

    /// The code of the block that runs first (the entry block), as text.
    fn entry_code(cfg: &Cfg) -> String {
        cfg.blocks[0].code.to_string()
    }

    fn slot<'c>(cfg: &'c Cfg, name: &str) -> &'c Slot {
        cfg.slots
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no slot `{name}`"))
    }

    #[test]
    fn a_place_left_of_a_step_is_read_before_the_step() {
        // Issue 10's repro: `(n, { n += 1; t(n).await })` must see the old `n`.
        let cfg = lower_ok(quote! {
            let mut n = x;
            let pair = (n, { n += 1; t(n).await });
            pair.0 + pair.1
        });
        assert_eq!(cfg.states.len(), 1);
        let code = entry_code(&cfg);
        // `n` goes into a temporary before the block that changes it runs, and the
        // tuple is built from that temporary after the step.
        let copy = code.find("= n ;").expect("n read into a temporary");
        let bump = code.find("n += 1").expect("the operand's side effect");
        assert!(copy < bump, "n read after its change: {code}");
        let resumed = cfg.blocks[cfg.states[0].resume].code.to_string();
        assert!(
            !resumed.contains("(n ,"),
            "the tuple reads `n` after the step: {resumed}"
        );
    }

    #[test]
    fn operands_right_of_the_last_step_stay_in_place() {
        // Nothing to the left of the step changes: no temporary is needed for `n`, and
        // the read after the step is the read Rust does.
        let cfg = lower_ok(quote! {
            let n = x;
            let pair = (t(x).await, n);
            pair.0 + pair.1
        });
        assert!(
            !cfg.slots
                .iter()
                .any(|s| s.name.to_string().starts_with("__flow_op")),
            "no operand temporary expected"
        );
    }

    #[test]
    fn block_scoped_items_are_not_hoisted_and_repeat_in_their_blocks_only() {
        let cfg = lower_ok(quote! {
            let first = fmt(t(x).await);
            let second = {
                fn fmt(x: i64) -> i64 { x * 10 }
                fmt(t(x + 1).await)
            };
            first + second
        });
        // The nested `fn` is not an item of the whole step function.
        assert!(cfg.items.is_empty(), "hoisted: {:?}", cfg.items);
        assert_eq!(cfg.scoped_items.len(), 1);
        assert!(cfg.scoped_items[0].to_string().starts_with("fn fmt"));
        // The blocks that carry it are exactly those inside the inner block: the one
        // resuming from the first step does not.
        let with_item: Vec<BlockId> = (0..cfg.blocks.len())
            .filter(|&b| cfg.blocks[b].items.iter().any(|s| s.contains(&0)))
            .collect();
        assert!(!with_item.is_empty());
        assert!(!with_item.contains(&0));
        assert!(!with_item.contains(&cfg.states[0].resume));
        assert!(with_item.contains(&cfg.states[1].resume));
    }

    #[test]
    fn a_nested_type_whose_name_is_used_outside_its_block_is_refused() {
        let (_, errors) = lower(quote! {
            let a = { struct P(i64); P(t(x).await).0 };
            let P = a;
            P
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("`P` is declared in a block that contains `.await`"));
        // Used only inside: compiled, hoisted to the top.
        let cfg = lower_ok(quote! {
            let a = { struct Q(i64); Q(t(x).await).0 };
            a
        });
        assert_eq!(cfg.items.len(), 1);
    }

    #[test]
    fn a_cfg_gated_let_binds_under_its_predicate() {
        let cfg = lower_ok(quote! {
            #[cfg(all())]
            let b = t(x).await;
            #[cfg(any())]
            let b = t(b).await;
            b
        });
        assert_eq!(cfg.states.len(), 2);
        assert_eq!(cfg.states[0].cfg[0].to_string(), "all ()");
        assert_eq!(cfg.states[1].cfg[0].to_string(), "any ()");
        // Some path skips the `#[cfg(any())]` statement under `not(any())`.
        assert!(cfg
            .exits
            .iter()
            .any(|e| e.cfg.iter().any(|p| p.to_string() == "not (any ())")));
    }

    #[test]
    fn hash_maps_and_string_literals_are_flagged_for_their_checks() {
        let cfg = lower_ok(quote! {
            let m = std::collections::HashMap::<i64, i64>::new();
            let s: HashSet<i64> = HashSet::new();
            let v = vec![x];
            let sep = if x > 0 { "; " } else { ", " };
            t(x).await;
            m.len() as i64 + s.len() as i64 + v.len() as i64 + sep.len() as i64
        });
        assert!(slot(&cfg, "m").hash_ordered && slot(&cfg, "s").hash_ordered);
        assert!(!slot(&cfg, "v").hash_ordered && !slot(&cfg, "sep").hash_ordered);
        assert!(slot(&cfg, "sep").static_str && !slot(&cfg, "v").static_str);
        // Built by a block, a branch or `collect`: flagged; computed from a map: not.
        let cfg = lower_ok(quote! {
            let a = { let mut m = HashMap::new(); m.insert(x, x); m };
            let b = if x > 0 { HashSet::from([x]) } else { HashSet::new() };
            let c = vec![x].into_iter().map(|k| (k, k)).collect::<HashMap<_, _>>();
            let n = HashMap::<i64, i64>::new().len();
            let f: Option<BTreeMap<i64, i64>> = None;
            t(x).await;
            (a.len() + b.len() + c.len() + n + f.map_or(0, |f| f.len())) as i64
        });
        for (name, hashed) in [("a", true), ("b", true), ("c", true), ("n", false)] {
            assert_eq!(slot(&cfg, name).hash_ordered, hashed, "`{name}`");
        }
        assert!(!slot(&cfg, "f").hash_ordered);
    }

    #[test]
    fn a_range_is_iterated_by_its_bounds_and_a_position() {
        let cfg = lower_ok(quote! {
            let mut acc = 0;
            for i in 0..(1i64 << 40) { acc += t(i).await; if acc > 3 { return acc; } }
            acc
        });
        let code: String = cfg.blocks.iter().map(|b| b.code.to_string()).collect();
        assert!(!code.contains("collect"), "a range was collected: {code}");
        assert!(
            !code.contains("for_items"),
            "a range was materialized: {code}"
        );
    }

    #[test]
    fn let_else_may_step_in_its_else() {
        let cfg = lower_ok(quote! {
            let Some(v) = t(x).await else {
                let n = t(0).await;
                return n;
            };
            v
        });
        let names: Vec<&str> = cfg.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["t", "t"]);
    }

    #[test]
    fn generated_locals_are_described_never_named() {
        // A body that makes the lowering bind every kind of local of its own: operand
        // temporaries, block values, `for` items and positions, range bounds, borrowed
        // iteration, adapters' arguments.
        let cfg = lower_ok(quote! {
            let mut n = x;
            let xs = vec![x, 2];
            let pair = (n, { n += 1; t(n).await });
            let v = { let k = t(n).await; k + 1 };
            let mut acc = 0;
            for i in xs.clone() { acc += t(i).await; }
            for i in (0..n).step_by(2) { acc += t(i).await; }
            for y in &xs { acc += t(*y).await; }
            for (j, y) in xs.iter().enumerate().skip(1) { acc += t(*y + j as i64).await; }
            acc + pair.0 + v
        });
        let generated: Vec<&Slot> = cfg
            .slots
            .iter()
            .filter(|s| s.name.to_string().starts_with("__flow"))
            .collect();
        assert!(generated.len() >= 5, "expected generated locals");
        for s in &cfg.slots {
            assert!(
                !s.label.contains("__flow") && !s.label.contains("__Flow"),
                "slot {} is labelled {:?}",
                s.name,
                s.label
            );
        }
        for s in generated {
            assert!(s.label.contains("line"), "{:?} does not say where", s.label);
        }
    }

    #[test]
    fn refusals_never_name_generated_identifiers() {
        let refused = [
            quote! { let r = &x; t(x).await; *r },
            quote! { for i in 0.. { t(i).await; } x },
            quote! { let y; y = t(x).await; y },
            quote! { for a in &make(x) { t(*a).await; } x },
            quote! { if let Some(n) = &lookup(x) { t(*n).await; } x },
            quote! { let a = { static S: i64 = 1; t(S).await }; let S = a; S },
            quote! { let n = t(x).await; for i in 0..2 { #[cfg(any())] let n = t(i).await; } n },
            quote! { let v: Vec<i64> = vec![x].iter().map(|a| t(*a).await).collect(); v[0] },
            quote! { let s = async { 1 }; s.await },
            quote! { match x { n if t(n).await > 0 => 1, _ => 0 } },
            quote! { macro_rules! bail { () => { return 0 } } t(x).await; bail!() },
            quote! { let sep = if x > 0 { "a" } else { "b" }; t(x).await; sep.len() as i64 },
            quote! { let ok = matches!(t(x).await, 1); ok as i64 },
        ];
        for body in refused {
            let text = body.to_string();
            // The whole expansion: every phase's errors, not only the lowering's.
            let errors: Vec<String> = match crate::workflow::expand(
                quote!(),
                quote!(async fn wf(x: i64) -> i64 { #body }),
            ) {
                Ok(_) => Vec::new(),
                Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
            };
            assert!(!errors.is_empty(), "not refused: {text}");
            for e in errors {
                assert!(
                    !e.contains("__flow") && !e.contains("__Flow"),
                    "`{text}` refused with a generated name: {e}"
                );
            }
        }
    }
}
