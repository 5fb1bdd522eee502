//! Turns a lowered [`Cfg`] into the body of the step function: liveness decides which
//! locals each block takes from the frame and hands back, and which travel through a
//! suspension (and so are journaled).
//!
//! For a workflow like
//! ```text
//! async fn wf(n: u32) -> u32 { let a = inc(n).await; a * 2 }
//! ```
//! the step function is, in outline:
//! ```text
//! struct __FlowFrame<T0, P0> { s0: Option<T0>, p0: PhantomData<P0> }
//! let (__flow_pc, __flow_frame, __flow_ctl) = __flow_machine.parts();
//! let __flow_f = frame(__flow_frame, || __FlowFrame { s0: None, p0: PhantomData });
//! for (i, bytes) in __flow_ctl.take_persisted() { /* decode journaled slots after a restart */ }
//! loop {
//!     match *__flow_pc {
//!         0 => { let n: u32 = __flow_ctl.take_input()?;
//!                { let __flow_op = inc(n); *__flow_pc = 1; return __flow_ctl.suspend(&mut __flow_f.p0, __flow_op, 0); } }
//!         1 => { let __flow_await_1 = __flow_ctl.take_output(&__flow_f.p0, "inc")?;
//!                let a = __flow_await_1; return { let out: u32 = a * 2; __flow_ctl.complete::<u32>(&out) }; }
//!         other => return Err(__flow_ctl.unknown_state(other)),
//!     }
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};

use crate::cfg::{BlockId, Cfg, ExitKind, SlotId};
use crate::ctxt::Ctxt;
use crate::stmt_attrs::cfg_attr;

/// Live slots at the start and end of each block.
pub struct Liveness {
    /// Live at block entry.
    pub live_in: Vec<BTreeSet<SlotId>>,
    /// Live at block exit.
    pub live_out: Vec<BTreeSet<SlotId>>,
}

/// Backward data-flow over the blocks until nothing changes.
pub fn liveness(cfg: &Cfg) -> Liveness {
    let n = cfg.blocks.len();
    let mut live_in = vec![BTreeSet::new(); n];
    let mut live_out = vec![BTreeSet::new(); n];
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..n).rev() {
            let block = &cfg.blocks[b];
            let mut out = BTreeSet::new();
            for &e in &block.exits {
                out.extend(live_in[cfg.exits[e].target].iter().copied());
            }
            let mut inn: BTreeSet<SlotId> = block.gen.clone();
            inn.extend(out.difference(&block.kill).copied());
            if inn != live_in[b] || out != live_out[b] {
                live_in[b] = inn;
                live_out[b] = out;
                changed = true;
            }
        }
    }
    Liveness { live_in, live_out }
}

/// What the generated step function needs from the analysis.
pub struct Plan {
    /// Liveness per block.
    pub live: Liveness,
    /// Slots each block takes from the frame when it starts.
    pub prologue: Vec<BTreeSet<SlotId>>,
    /// Slots with a frame field.
    pub framed: BTreeSet<SlotId>,
    /// Slots that live across a suspension, so are journaled.
    pub persistent: BTreeSet<SlotId>,
    /// For framed slots needed only by `#[cfg]`'d blocks: the `#[cfg(any(..))]` their
    /// frame field and its uses exist under.
    pub gates: BTreeMap<SlotId, TokenStream>,
}

/// Computes the [`Plan`]; reports borrows that would be held across a step.
pub(crate) fn plan(cfg: &Cfg, cx: &Ctxt) -> Plan {
    let live = liveness(cfg);
    let prologue = cfg
        .blocks
        .iter()
        .map(|b| {
            b.gen
                .iter()
                .copied()
                .filter(|s| b.entry_visible.contains(s))
                .collect::<BTreeSet<_>>()
        })
        .collect();
    let framed: BTreeSet<SlotId> = live.live_in.iter().flatten().copied().collect();
    let persistent: BTreeSet<SlotId> = cfg
        .states
        .iter()
        .flat_map(|s| live.live_in[s.resume].iter().copied())
        .collect();
    for &s in &persistent {
        let slot = &cfg.slots[s];
        if slot.static_str {
            cx.error_at(
                slot.span,
                format!(
                    "{} is a `&'static str` that is still used after a later step; a \
                     #[workflow] keeps only owned values across steps (they are journaled): \
                     make it a `String` (`.to_string()` on the literals) and borrow it \
                     (`&name`) where a `&str` is needed",
                    slot.label
                ),
            );
        } else if slot.borrow {
            cx.error_at(
                slot.span,
                format!(
                    "{} holds a borrow that is still used after a later step; a #[workflow] \
                     keeps only owned values across steps (they are journaled): clone or \
                     move the value instead of borrowing it, or borrow again after the step",
                    slot.label
                ),
            );
        }
    }
    let gates = framed
        .iter()
        .filter_map(|&s| needed_only_under_cfg(cfg, &live, s).map(|g| (s, g)))
        .collect();
    Plan {
        live,
        prologue,
        framed,
        persistent,
        gates,
    }
}

/// `#[cfg(any(..))]` if every block `s` is live into is `#[cfg]`'d: with none of their
/// predicates holding, nothing would give the slot's frame field a type (nor any code
/// store it: a `#[cfg(all())] let` read only by a `#[cfg(any())]` step). The slot's own
/// predicates, if its `let` is `#[cfg]`'d, hold too.
fn needed_only_under_cfg(cfg: &Cfg, live: &Liveness, s: SlotId) -> Option<TokenStream> {
    let mut alternatives = BTreeMap::new();
    for (b, block) in cfg.blocks.iter().enumerate() {
        if block.order.is_none() || !live.live_in[b].contains(&s) {
            continue;
        }
        if block.cfg.is_empty() {
            return None;
        }
        let preds = &block.cfg;
        let all = quote!(all(#(#preds),*));
        alternatives.insert(all.to_string(), all);
    }
    let alternatives = alternatives.values();
    let own = &cfg.slots[s].cfg;
    (alternatives.len() > 0).then(|| quote!(#[cfg(all(#(#own,)* any(#(#alternatives),*)))]))
}

/// The `#[cfg]` a slot's frame field and the code touching it are compiled under.
fn slot_gate(cfg: &Cfg, plan: &Plan, s: SlotId) -> TokenStream {
    match plan.gates.get(&s) {
        Some(gate) => gate.clone(),
        None => cfg_attr(&cfg.slots[s].cfg),
    }
}

fn field(s: SlotId) -> syn::Ident {
    format_ident!("s{}", s)
}

/// [`field`] at the local's own span, for code whose type errors are about the local (it
/// is not serializable): rustc then points at the user's `let`, not at `#[workflow]`.
fn field_at(cfg: &Cfg, s: SlotId) -> syn::Ident {
    syn::Ident::new(&format!("s{s}"), cfg.slots[s].span)
}

/// The tokens of the step function body (everything inside `fn step(..) { }`).
pub fn step_body(cfg: &Cfg, plan: &Plan, workflow_name: &str) -> TokenStream {
    let slot_params: Vec<_> = plan
        .framed
        .iter()
        .map(|s| format_ident!("T{}", s))
        .collect();
    let state_params: Vec<_> = (0..cfg.states.len())
        .map(|k| format_ident!("P{}", k))
        .collect();
    let slot_fields: Vec<_> = plan.framed.iter().map(|&s| field(s)).collect();
    let state_fields: Vec<_> = (0..cfg.states.len())
        .map(|k| format_ident!("p{}", k))
        .collect();
    // A local or state of a `#[cfg]`'d statement exists only under its predicate.
    let slot_cfgs: Vec<_> = plan
        .framed
        .iter()
        .map(|&s| slot_gate(cfg, plan, s))
        .collect();
    let state_cfgs: Vec<_> = cfg.states.iter().map(|s| cfg_attr(&s.cfg)).collect();

    let loads = plan.persistent.iter().map(|&s| {
        let slot = &cfg.slots[s];
        let (f, idx, name) = (field_at(cfg, s), s as u32, &slot.label);
        let gate = slot_gate(cfg, plan, s);
        quote_spanned!(slot.span=>
            #gate #idx => __flow_f.#f = ::core::option::Option::Some(__flow_ctl.decode_slot(&__flow_bytes, #name)?),)
    });

    let mut order: Vec<BlockId> = (0..cfg.blocks.len())
        .filter(|&b| cfg.blocks[b].order.is_some())
        .collect();
    order.sort_by_key(|&b| cfg.blocks[b].order);
    let arms = order.iter().map(|&b| block_arm(cfg, plan, b));
    let items = &cfg.items;
    let _ = workflow_name;
    // A proc macro cannot emit a warning on stable; using a deprecated constant at the
    // local's span makes rustc print one there.
    let hash_warnings = plan
        .persistent
        .iter()
        .filter(|&&s| cfg.slots[s].hash_ordered)
        .map(|&s| {
            let slot = &cfg.slots[s];
            let note = format!(
                "{} is kept across a step of this #[workflow]: a `HashMap`/`HashSet` restored \
                 after a restart iterates in a different order than before it; use a \
                 `BTreeMap`/`BTreeSet` (or `indexmap`) if the order matters",
                slot.label
            );
            quote_spanned!(slot.span=> {
                #[deprecated(note = #note)]
                #[allow(non_upper_case_globals)]
                const hash_iteration_order_changes_on_resume: () = ();
                let _ = hash_iteration_order_changes_on_resume;
            })
        });

    quote! {
        #(#items)*
        #[allow(non_camel_case_types, non_snake_case)]
        struct __FlowFrame<#(#slot_cfgs #slot_params,)* #(#state_cfgs #state_params,)*> {
            #(#slot_cfgs #slot_fields: ::core::option::Option<#slot_params>,)*
            #(#state_cfgs #state_fields: ::flow::__private::PhantomData<#state_params>,)*
        }
        #(#hash_warnings)*
        let (__flow_pc, __flow_frame, __flow_ctl) = __flow_machine.parts();
        let __flow_f = ::flow::__private::frame(__flow_frame, || __FlowFrame {
            #(#slot_cfgs #slot_fields: ::core::option::Option::None,)*
            #(#state_cfgs #state_fields: ::flow::__private::PhantomData,)*
        });
        for (__flow_index, __flow_bytes) in __flow_ctl.take_persisted() {
            match __flow_index {
                #(#loads)*
                // A slot of a local no longer live: nothing reads it.
                _ => {}
            }
        }
        loop {
            match *__flow_pc {
                #(#arms)*
                __flow_other => return ::core::result::Result::Err(__flow_ctl.unknown_state(__flow_other)),
            }
        }
    }
}

fn block_arm(cfg: &Cfg, plan: &Plan, b: BlockId) -> TokenStream {
    let block = &cfg.blocks[b];
    let takes = plan.prologue[b].iter().map(|&s| {
        let slot = &cfg.slots[s];
        let (f, name, text) = (field(s), &slot.name, &slot.label);
        let gate = slot_gate(cfg, plan, s);
        quote!(#gate let mut #name = __flow_ctl.take_slot(&mut __flow_f.#f, #text)?;)
    });
    let declares = block.declared.iter().map(|&s| {
        let slot = &cfg.slots[s];
        let (gate, name) = (cfg_attr(&slot.cfg), &slot.name);
        quote!(#gate let mut #name;)
    });
    let rebinds = block.rebinds.iter().map(|&g| {
        let rebind = &cfg.rebinds[g];
        let (gate, code) = (cfg_attr(&rebind.cfg), &rebind.code);
        quote!(#gate #code)
    });
    let code = fill_placeholders(block.code.clone(), cfg, plan);
    let end = if block.terminated {
        TokenStream::new()
    } else {
        quote!(return ::core::result::Result::Err(__flow_ctl.unknown_state(*__flow_pc));)
    };
    let pc = b as u32;
    let mut body = quote!(#(#takes)* #(#rebinds)* #(#declares)* #code #end);
    // Each nested block's items in a Rust block of their own, so an inner item hides an
    // outer one of the same name, as in the source.
    for scope in block.items.iter().rev() {
        let items = scope.iter().map(|&i| &cfg.scoped_items[i]);
        body = quote!({ #(#items)* #body });
    }
    let gate = cfg_attr(&block.cfg);
    quote!(#gate #pc => { #body })
}

fn fill_placeholders(code: TokenStream, cfg: &Cfg, plan: &Plan) -> TokenStream {
    let braced = |code: TokenStream| {
        TokenStream::from(TokenTree::Group(Group::new(
            proc_macro2::Delimiter::Brace,
            code,
        )))
    };
    code.into_iter()
        .flat_map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), fill_placeholders(g.stream(), cfg, plan));
                ng.set_span(g.span());
                TokenStream::from(TokenTree::Group(ng))
            }
            TokenTree::Ident(i) => {
                let s = i.to_string();
                if let Some(k) = s.strip_prefix("__flow_exit_") {
                    let k: usize = k.parse().expect("exit placeholder");
                    braced(exit_code(cfg, plan, k))
                } else if let Some(k) = s.strip_prefix("__flow_shadow_") {
                    let k: usize = k.parse().expect("shadow placeholder");
                    braced(shadow_code(cfg, plan, k))
                } else if let Some(k) = s.strip_prefix("__flow_partial_") {
                    let k: usize = k.parse().expect("partial move placeholder");
                    partial_move_code(cfg, plan, k)
                } else {
                    TokenStream::from(TokenTree::Ident(i))
                }
            }
            other => TokenStream::from(other),
        })
        .collect()
}

/// A `for` loop over a field of a local (`for x in bag.items`): moving the field out
/// would leave the local partially moved, so if the local is still needed after the
/// loop the field is taken instead (`mem::take`, the field's type must be `Default`).
fn partial_move_code(cfg: &Cfg, plan: &Plan, k: usize) -> TokenStream {
    let m = &cfg.partial_moves[k];
    let (items, field) = (&cfg.slots[m.items].name, &m.field);
    if plan.live.live_out[m.block].contains(&m.root) {
        let root = &cfg.slots[m.root].name;
        quote_spanned!(m.span=>
            let mut #root = #root;
            let mut #items = ::flow::__private::for_items(::core::mem::take(&mut #field));
        )
    } else {
        quote_spanned!(m.span=> let mut #items = ::flow::__private::for_items(#field);)
    }
}

fn put_back(cfg: &Cfg, plan: &Plan, s: SlotId, defined_here: bool) -> TokenStream {
    let slot = &cfg.slots[s];
    let (f, name, idx) = (field(s), &slot.name, s as u32);
    // Other slots are compared by value when a step suspends (`save_slot`).
    let dirty = (defined_here && slot.write_once).then(|| quote!(__flow_ctl.mark_dirty(#idx);));
    let gate = slot_gate(cfg, plan, s);
    quote!(#gate { __flow_f.#f = ::core::option::Option::Some(#name); #dirty })
}

fn exit_code(cfg: &Cfg, plan: &Plan, k: usize) -> TokenStream {
    let exit = &cfg.exits[k];
    let bound = |s: &SlotId| exit.defined.contains(s) || plan.prologue[exit.from].contains(s);
    let puts = plan.live.live_in[exit.target]
        .iter()
        .filter(|s| exit.visible.contains(s) && bound(s))
        .map(|&s| put_back(cfg, plan, s, exit.defined.contains(&s)));
    let target = exit.target as u32;
    match &exit.kind {
        ExitKind::Goto => quote!(#(#puts)* *__flow_pc = #target; continue;),
        ExitKind::Suspend { op, state } => {
            let saves = plan.persistent.iter().map(|&s| {
                let slot = &cfg.slots[s];
                let (f, idx, name) = (field_at(cfg, s), s as u32, &slot.label);
                let gate = slot_gate(cfg, plan, s);
                if slot.write_once {
                    quote_spanned!(slot.span=> #gate { __flow_ctl.save_slot_once(#idx, &__flow_f.#f, #name)?; })
                } else {
                    quote_spanned!(slot.span=> #gate { __flow_ctl.save_slot(#idx, &__flow_f.#f, #name)?; })
                }
            });
            let phantom = format_ident!("p{}", state);
            let span = cfg.states[*state].span;
            let index = state_index(cfg, *state);
            let suspend = quote_spanned!(span=> __flow_ctl.suspend(&mut __flow_f.#phantom, __flow_op, #index));
            quote! {
                let __flow_op = #op;
                #(#puts)*
                #(#saves)*
                *__flow_pc = #target;
                return #suspend;
            }
        }
    }
}

fn shadow_code(cfg: &Cfg, plan: &Plan, k: usize) -> TokenStream {
    let sh = &cfg.shadows[k];
    let held = sh.defined_before || plan.prologue[sh.block].contains(&sh.slot);
    if held && plan.live.live_out[sh.block].contains(&sh.slot) {
        put_back(cfg, plan, sh.slot, sh.defined_before)
    } else {
        TokenStream::new()
    }
}

/// The index of state `k` in the state graph and the run's history: its position among
/// the states `#[cfg]` compiles in (`cfg!` sums the `#[cfg]`'d ones before it).
pub fn state_index(cfg: &Cfg, k: usize) -> TokenStream {
    let before = &cfg.states[..k];
    let fixed = before.iter().filter(|s| s.cfg.is_empty()).count() as u32;
    let gated = before.iter().filter(|s| !s.cfg.is_empty()).map(|s| {
        let preds = &s.cfg;
        quote!(+ (::core::cfg!(all(#(#preds),*)) as u32))
    });
    if before.iter().all(|s| s.cfg.is_empty()) {
        quote!(#fixed)
    } else {
        quote!((#fixed #(#gated)*))
    }
}

/// What time travel shows of each journaled slot: one `::flow::SlotInfo` per slot that
/// lives across a step, by slot index. A local's name is its name as written; a generated
/// one is described (`the position of the `for` loop at line 3`). Locals that share a name
/// (shadowing, or one name in two scopes) are told apart by the order they are bound in:
/// `x`, then `x#2`, `x#3`.
pub fn slot_table(cfg: &Cfg, plan: &Plan) -> Vec<TokenStream> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    plan.persistent
        .iter()
        .map(|&s| {
            let slot = &cfg.slots[s];
            let ident = slot.name.to_string();
            let base = if ident.starts_with("__flow") {
                slot.label.clone()
            } else {
                ident.trim_start_matches("r#").to_string()
            };
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let name = match *n {
                1 => base,
                n => format!("{base}#{n}"),
            };
            let (idx, line) = (s as u32, slot.span.start().line as u32);
            let ty = match &slot.ty {
                Some(ty) => quote!(::core::option::Option::Some(::core::stringify!(#ty))),
                None => quote!(::core::option::Option::None),
            };
            quote!(::flow::SlotInfo { slot: #idx, name: #name, ty: #ty, line: #line })
        })
        .collect()
}

/// The state graph's entries: each state, and each transition between states (a state
/// index, or `START`/`END`), under the `#[cfg]` of the code it passes through, so the
/// graph shows only what is compiled in.
pub fn graph_entries(cfg: &Cfg) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let states = cfg
        .states
        .iter()
        .map(|s| {
            let (n, l) = (&s.name, s.line);
            let gate = cfg_attr(&s.cfg);
            quote!(#gate ::flow::StateInfo { name: #n, line: #l })
        })
        .collect();
    let index = |k: u32| match cfg.states.get(k as usize) {
        Some(_) => state_index(cfg, k as usize),
        None => quote!(#k),
    };
    let transitions = gated_transitions(cfg)
        .into_iter()
        .map(|((a, b), paths)| {
            let (a, b) = (index(a), index(b));
            let gate = if paths.iter().any(|p| p.is_empty()) {
                TokenStream::new()
            } else {
                let paths = paths.iter().map(|p| {
                    let preds = p.values();
                    quote!(all(#(#preds),*))
                });
                quote!(#[cfg(any(#(#paths),*))])
            };
            quote!(#gate (#a, #b))
        })
        .collect();
    (states, transitions)
}

/// The `#[cfg]` predicates a path is compiled under, by their text.
type PathCfg = BTreeMap<String, TokenStream>;

/// `(from, to)` transitions between states, whatever `#[cfg]` compiles in.
#[cfg(test)]
fn transitions(cfg: &Cfg) -> Vec<(u32, u32)> {
    gated_transitions(cfg).into_keys().collect()
}

/// Each transition with the `#[cfg]` predicates of every distinct path that makes it
/// (the blocks it passes through, the skip path of a `#[cfg]`'d statement, the state it
/// reaches); an empty set of predicates is a path compiled in everywhere.
fn gated_transitions(cfg: &Cfg) -> BTreeMap<(u32, u32), Vec<PathCfg>> {
    const START: u32 = u32::MAX - 1;
    const END: u32 = u32::MAX;
    let mut edges: BTreeMap<(u32, u32), BTreeMap<Vec<String>, PathCfg>> = BTreeMap::new();
    let mut add = |edge: (u32, u32), path: &PathCfg| {
        let key: Vec<String> = path.keys().cloned().collect();
        edges.entry(edge).or_default().insert(key, path.clone());
    };
    let mut origins: BTreeMap<u32, BlockId> = BTreeMap::new();
    origins.insert(START, 0);
    for (k, s) in cfg.states.iter().enumerate() {
        origins.insert(k as u32, s.resume);
    }
    let with = |path: &PathCfg, preds: &[TokenStream]| {
        let mut path = path.clone();
        for p in preds {
            path.insert(p.to_string(), p.clone());
        }
        path
    };
    for (&origin, &start) in &origins {
        let mut seen = BTreeSet::new();
        let mut stack = vec![(start, PathCfg::new())];
        while let Some((b, path)) = stack.pop() {
            let block = &cfg.blocks[b];
            let path = with(&path, &block.cfg);
            let key: Vec<String> = path.keys().cloned().collect();
            if !seen.insert((b, key)) {
                continue;
            }
            if block.completes {
                add((origin, END), &path);
            }
            for &e in &block.exits {
                let exit = &cfg.exits[e];
                let path = with(&path, &exit.cfg);
                match &exit.kind {
                    ExitKind::Goto => stack.push((exit.target, path)),
                    ExitKind::Suspend { state, .. } => {
                        add(
                            (origin, *state as u32),
                            &with(&path, &cfg.states[*state].cfg),
                        );
                    }
                }
            }
        }
    }
    edges
        .into_iter()
        .map(|(edge, paths)| (edge, paths.into_values().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use super::*;
    use crate::lower::Lowerer;

    /// Lowers `async fn wf(x: i64) -> i64 { body }`.
    fn lower(body: TokenStream) -> (Cfg, Plan) {
        let block: syn::Block = syn::parse2(quote!({ #body })).expect("a block");
        let output = quote!(i64);
        let cx = Ctxt::new();
        let mut lowerer = Lowerer::new(&output, &cx);
        lowerer.bind_input(&syn::parse_quote!(x), &quote!(i64));
        lowerer.lower_body(&block);
        let cfg = lowerer.cfg;
        let plan = plan(&cfg, &cx);
        cx.check().expect("lowers without errors");
        (cfg, plan)
    }

    fn slot(cfg: &Cfg, name: &str) -> SlotId {
        cfg.slots
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no slot `{name}`"))
    }

    /// The user locals journaled across some step.
    fn journaled(cfg: &Cfg, plan: &Plan) -> Vec<String> {
        plan.persistent
            .iter()
            .map(|&s| cfg.slots[s].name.to_string())
            .filter(|n| !n.starts_with("__flow"))
            .collect()
    }

    #[test]
    fn the_slot_table_names_journaled_locals_and_tells_shadowed_ones_apart() {
        let (cfg, plan) = lower(quote! {
            let total: u64 = t(x).await;
            let y = t(total).await;
            let z = t(total).await;
            let y = t(y + z).await;
            t(total).await + y
        });
        let table: Vec<String> = slot_table(&cfg, &plan)
            .iter()
            .map(|t| t.to_string().replace(' ', ""))
            .collect();
        let entry = |s: SlotId, name: &str, ty: &str| {
            format!("::flow::SlotInfo{{slot:{s}u32,name:\"{name}\",ty:{ty},line:")
        };
        let none = "::core::option::Option::None";
        let ys: Vec<SlotId> = (0..cfg.slots.len())
            .filter(|&s| cfg.slots[s].name == "y")
            .collect();
        assert_eq!(ys.len(), 2, "two slots named `y`");
        let expected = [
            entry(
                slot(&cfg, "total"),
                "total",
                "::core::option::Option::Some(::core::stringify!(u64))",
            ),
            entry(ys[0], "y", none),
            entry(ys[1], "y#2", none),
        ];
        assert_eq!(table.len(), expected.len(), "{table:?}");
        for (got, want) in table.iter().zip(&expected) {
            assert!(got.starts_with(want.as_str()), "{got} is not {want}..");
        }
    }

    #[test]
    fn only_locals_read_after_a_step_are_journaled() {
        let (cfg, plan) = lower(quote! {
            let a = t(x).await;
            let b = a + 1;
            let c = t(b).await;
            c + a
        });
        assert_eq!(journaled(&cfg, &plan), ["a"]);
    }

    #[test]
    fn an_assignment_defines_the_local_it_does_not_read_it() {
        let (cfg, plan) = lower(quote! {
            let mut acc = vec![x];
            acc = t(acc).await;
            acc.len() as i64
        });
        let acc = slot(&cfg, "acc");
        assert!(!plan.live.live_in[cfg.states[0].resume].contains(&acc));
        assert!(journaled(&cfg, &plan).is_empty());
    }

    #[test]
    fn fields_and_methods_named_like_a_local_are_not_that_local() {
        let (cfg, plan) = lower(quote! {
            let name = user.name.clone();
            let g = t(name).await;
            g + user.name.len() as i64
        });
        assert_eq!(journaled(&cfg, &plan), Vec::<String>::new());
        let (cfg, plan) = lower(quote! {
            let user = make(x);
            let name = user.name.clone();
            let g = t(name).await;
            g + user.name.len() as i64
        });
        assert_eq!(journaled(&cfg, &plan), ["user"]);
    }

    #[test]
    fn format_spec_arguments_are_reads() {
        let (cfg, plan) = lower(quote! {
            let width = 3usize;
            let prec = 2usize;
            let s = t(x).await;
            format!("{s:>width$} {:.prec$}", 1.5).len() as i64
        });
        assert_eq!(journaled(&cfg, &plan), ["width", "prec"]);
    }

    #[test]
    fn liveness_reaches_a_fixpoint_around_loops() {
        let (cfg, plan) = lower(quote! {
            let mut n = x;
            let k = 7;
            loop {
                n = t(n).await + k;
                if n > 30 {
                    break;
                }
            }
            n
        });
        let (n, k) = (slot(&cfg, "n"), slot(&cfg, "k"));
        let resume = cfg.states[0].resume;
        // `k` is read in every iteration, so it lives across the step; `n` is assigned
        // from the step's output before it is read again.
        assert!(plan.live.live_in[resume].contains(&k));
        assert!(!plan.live.live_in[resume].contains(&n));
        assert!(plan.persistent.contains(&k) && !plan.persistent.contains(&n));
        // Around the loop `n` is live: the head reads it.
        assert!(plan.live.live_in.iter().any(|l| l.contains(&n)));
    }

    #[test]
    fn one_state_per_await_and_transitions_between_them() {
        let (cfg, _) = lower(quote! {
            let a = first(x).await;
            let b = if a > 0 { second(a).await } else { a };
            third(b).await
        });
        let names: Vec<&str> = cfg.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "third"]);
        let (start, end) = (u32::MAX - 1, u32::MAX);
        let edges = transitions(&cfg);
        for edge in [(start, 0), (0, 1), (0, 2), (1, 2), (2, end)] {
            assert!(edges.contains(&edge), "{edge:?} missing from {edges:?}");
        }
        assert!(!edges.contains(&(start, end)));
    }

    #[test]
    fn code_without_awaits_stays_in_the_entry_block() {
        let (cfg, plan) = lower(quote! {
            let a = x + 1;
            let b = if a > 2 { a } else { 0 };
            for i in 0..b { let _ = i; }
            b
        });
        assert_eq!(cfg.blocks.len(), 1);
        assert!(cfg.states.is_empty() && plan.persistent.is_empty());
    }

    #[test]
    fn a_cfg_gated_step_belongs_to_its_predicate() {
        let (cfg, _) = lower(quote! {
            #[cfg(any())]
            t(x).await;
            x
        });
        assert_eq!(cfg.states.len(), 1);
        assert_eq!(cfg.states[0].cfg.len(), 1);
        assert_eq!(cfg.states[0].cfg[0].to_string(), "any ()");
        assert!(cfg.blocks[cfg.states[0].resume].cfg.len() == 1);
        assert!(cfg.blocks[0].cfg.is_empty());
    }

    #[test]
    fn a_borrowed_for_item_is_bound_again_not_framed() {
        let (cfg, plan) = lower(quote! {
            let xs = vec![x];
            let mut total = 0;
            for v in &xs {
                total += t(*v).await;
                total += *v;
            }
            total
        });
        let v = slot(&cfg, "v");
        assert!(!plan.framed.contains(&v));
        assert_eq!(cfg.rebinds.len(), 1);
        assert!(cfg.blocks[cfg.states[0].resume].rebinds.contains(&0));
        assert_eq!(journaled(&cfg, &plan), ["xs", "total"]);
    }

    #[test]
    fn a_half_open_range_is_journaled_as_itself() {
        let (cfg, plan) = lower(quote! {
            let mut acc = 0;
            for i in 0..x { acc += t(i).await; }
            acc
        });
        let items: Vec<_> = plan
            .persistent
            .iter()
            .filter(|&&s| cfg.slots[s].name.to_string().starts_with("__flow_items"))
            .collect();
        assert_eq!(items.len(), 1);
        assert!(!cfg.slots[*items[0]].write_once);
        assert!(!cfg
            .slots
            .iter()
            .any(|s| s.name.to_string().starts_with("__flow_pos")));
    }
}
