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
//!                let a = __flow_await_1; return __flow_ctl.complete::<u32>(&(a * 2)); }
//!         other => return Err(__flow_ctl.unknown_state(other)),
//!     }
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};

use crate::cfg::{BlockId, Cfg, ExitKind, SlotId};
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
}

/// Computes the [`Plan`]; reports borrows that would be held across a step.
pub fn plan(cfg: &Cfg, errors: &mut Vec<syn::Error>) -> Plan {
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
        if slot.borrow {
            errors.push(syn::Error::new(
                slot.span,
                format!(
                    "{} holds a borrow that is still used after a later step; a #[workflow] \
                     keeps only owned values across steps (they are journaled): clone or \
                     move the value instead of borrowing it, or borrow again after the step",
                    slot.label
                ),
            ));
        }
    }
    Plan {
        live,
        prologue,
        framed,
        persistent,
    }
}

fn field(s: SlotId) -> syn::Ident {
    format_ident!("s{}", s)
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
        .map(|&s| cfg_attr(&cfg.slots[s].cfg))
        .collect();
    let state_cfgs: Vec<_> = cfg.states.iter().map(|s| cfg_attr(&s.cfg)).collect();

    let loads = plan.persistent.iter().map(|&s| {
        let slot = &cfg.slots[s];
        let (f, idx, name) = (field(s), s as u32, &slot.label);
        let gate = cfg_attr(&slot.cfg);
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
        let gate = cfg_attr(&slot.cfg);
        quote!(#gate let mut #name = __flow_ctl.take_slot(&mut __flow_f.#f, #text)?;)
    });
    let declares = block.declared.iter().map(|&s| {
        let slot = &cfg.slots[s];
        let (gate, name) = (cfg_attr(&slot.cfg), &slot.name);
        quote!(#gate let mut #name;)
    });
    let code = fill_placeholders(block.code.clone(), cfg, plan);
    let end = if block.terminated {
        TokenStream::new()
    } else {
        quote!(return ::core::result::Result::Err(__flow_ctl.unknown_state(*__flow_pc));)
    };
    let pc = b as u32;
    let items = block.items.iter().map(|&i| &cfg.scoped_items[i]);
    let gate = cfg_attr(&block.cfg);
    quote!(#gate #pc => { #(#items)* #(#takes)* #(#declares)* #code #end })
}

fn fill_placeholders(code: TokenStream, cfg: &Cfg, plan: &Plan) -> TokenStream {
    code.into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), fill_placeholders(g.stream(), cfg, plan));
                ng.set_span(g.span());
                TokenTree::Group(ng)
            }
            TokenTree::Ident(i) => {
                let s = i.to_string();
                if let Some(k) = s.strip_prefix("__flow_exit_") {
                    let k: usize = k.parse().expect("exit placeholder");
                    TokenTree::Group(Group::new(
                        proc_macro2::Delimiter::Brace,
                        exit_code(cfg, plan, k),
                    ))
                } else if let Some(k) = s.strip_prefix("__flow_shadow_") {
                    let k: usize = k.parse().expect("shadow placeholder");
                    TokenTree::Group(Group::new(
                        proc_macro2::Delimiter::Brace,
                        shadow_code(cfg, plan, k),
                    ))
                } else {
                    TokenTree::Ident(i)
                }
            }
            other => other,
        })
        .collect()
}

fn put_back(cfg: &Cfg, s: SlotId, defined_here: bool) -> TokenStream {
    let slot = &cfg.slots[s];
    let (f, name, idx) = (field(s), &slot.name, s as u32);
    // Other slots are compared by value when a step suspends (`save_slot`).
    let dirty = (defined_here && slot.write_once).then(|| quote!(__flow_ctl.mark_dirty(#idx);));
    let gate = cfg_attr(&slot.cfg);
    quote!(#gate { __flow_f.#f = ::core::option::Option::Some(#name); #dirty })
}

fn exit_code(cfg: &Cfg, plan: &Plan, k: usize) -> TokenStream {
    let exit = &cfg.exits[k];
    let bound = |s: &SlotId| exit.defined.contains(s) || plan.prologue[exit.from].contains(s);
    let puts = plan.live.live_in[exit.target]
        .iter()
        .filter(|s| exit.visible.contains(s) && bound(s))
        .map(|&s| put_back(cfg, s, exit.defined.contains(&s)));
    let target = exit.target as u32;
    match &exit.kind {
        ExitKind::Goto => quote!(#(#puts)* *__flow_pc = #target; continue;),
        ExitKind::Suspend { op, state } => {
            let saves = plan.persistent.iter().map(|&s| {
                let slot = &cfg.slots[s];
                let (f, idx, name) = (field(s), s as u32, &slot.label);
                let gate = cfg_attr(&slot.cfg);
                if slot.write_once {
                    quote_spanned!(slot.span=> #gate { __flow_ctl.save_slot_once(#idx, &__flow_f.#f, #name)?; })
                } else {
                    quote_spanned!(slot.span=> #gate { __flow_ctl.save_slot(#idx, &__flow_f.#f, #name)?; })
                }
            });
            let phantom = format_ident!("p{}", state);
            let state = *state as u32;
            let span = cfg.states[state as usize].span;
            let suspend = quote_spanned!(span=> __flow_ctl.suspend(&mut __flow_f.#phantom, __flow_op, #state));
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
        put_back(cfg, sh.slot, sh.defined_before)
    } else {
        TokenStream::new()
    }
}

/// `(from, to)` transitions between states; see [`flow::StateGraph`].
pub fn transitions(cfg: &Cfg) -> Vec<(u32, u32)> {
    const START: u32 = u32::MAX - 1;
    const END: u32 = u32::MAX;
    let mut edges = BTreeSet::new();
    let mut origins: BTreeMap<u32, BlockId> = BTreeMap::new();
    origins.insert(START, 0);
    for (k, s) in cfg.states.iter().enumerate() {
        origins.insert(k as u32, s.resume);
    }
    for (&origin, &start) in &origins {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(b) = stack.pop() {
            if !seen.insert(b) {
                continue;
            }
            let block = &cfg.blocks[b];
            if block.completes {
                edges.insert((origin, END));
            }
            for &e in &block.exits {
                match &cfg.exits[e].kind {
                    ExitKind::Goto => stack.push(cfg.exits[e].target),
                    ExitKind::Suspend { state, .. } => {
                        edges.insert((origin, *state as u32));
                    }
                }
            }
        }
    }
    edges.into_iter().collect()
}
