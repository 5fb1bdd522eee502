//! The control-flow graph a workflow body is lowered to.
//!
//! Each block becomes one arm of the step function's `match` on the program counter.
//! Locals that flow from one block to another travel through numbered slots of the
//! frame; code inside a block uses the ordinary Rust locals. Places where a block
//! hands control to another (gotos and suspensions) are left as placeholder identifiers
//! in the block's tokens and filled in once liveness is known.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use syn::Ident;

/// Index of a block.
pub type BlockId = usize;
/// Index of a slot (a local that may outlive its block).
pub type SlotId = usize;

/// A local of the workflow body that the lowering tracks.
#[derive(Clone, Debug)]
pub struct Slot {
    /// The Rust name it has inside blocks.
    pub name: Ident,
    /// Declared `mut` (or a generated counter).
    pub mutable: bool,
    /// Written to the journal only when bound, never compared: a `for` loop's items,
    /// which the loop takes out one by one while only its position is journaled.
    pub write_once: bool,
    /// How errors and stored-state messages name it (a generated local is described,
    /// never named).
    pub label: String,
    /// Where it was bound (errors about it point here).
    pub span: Span,
    /// Bound to a borrow (`let r = &x;`): it cannot outlive a suspension.
    pub borrow: bool,
    /// `#[cfg]` predicates it exists under (declared in a `#[cfg]`'d statement).
    pub cfg: Vec<TokenStream>,
    /// Visibly a `HashMap`/`HashSet`: its iteration order changes when it is restored.
    pub hash_ordered: bool,
    /// Bound to string literals (a `&'static str`), which the journal cannot restore.
    pub static_str: bool,
    /// A borrowed `for` item: blocks that read it bind it again ([`Cfg::rebinds`]).
    pub rebound_by: Option<usize>,
    /// Its type as written (`let x: T = ..`, an argument's type), when the source says.
    pub ty: Option<TokenStream>,
}

/// A `for` loop whose items are a field of a local (`for x in bag.items`).
#[derive(Clone, Debug)]
pub struct PartialMove {
    /// The block that evaluates the items.
    pub block: BlockId,
    /// The local the field belongs to.
    pub root: SlotId,
    /// The field, as lowered (`bag.items`).
    pub field: TokenStream,
    /// The slot holding the loop's items.
    pub items: SlotId,
    /// The iterated expression's span.
    pub span: Span,
}

/// How a block binds again the item of a `for` loop over a borrowed collection, from
/// the collection and the loop's position, instead of taking a borrow from the frame.
#[derive(Clone, Debug)]
pub struct Rebind {
    /// `let PAT = <the item at the loop's position>;`
    pub code: TokenStream,
    /// The slots the code reads (the collection's local and the position).
    pub deps: Vec<SlotId>,
    /// `#[cfg]` predicates it is compiled in under.
    pub cfg: Vec<TokenStream>,
}

/// How control leaves a block.
#[derive(Clone, Debug)]
pub enum ExitKind {
    /// Continue at the target in the same step.
    Goto,
    /// Suspend on a durable operation; resume at the target with its output.
    Suspend {
        /// The operation expression (evaluated before locals are handed over).
        op: TokenStream,
        /// The state (await site) index.
        state: usize,
    },
}

/// One place where control leaves a block.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The block it leaves.
    pub from: BlockId,
    /// Where control goes.
    pub target: BlockId,
    /// Goto or suspension.
    pub kind: ExitKind,
    /// Slots visible at the exit (innermost binding of each name).
    pub visible: Vec<SlotId>,
    /// Slots bound in the block before the exit, on the exit's path.
    pub defined: BTreeSet<SlotId>,
    /// `#[cfg]` predicates the exit is taken under beyond its block's (the path that
    /// skips a `#[cfg]`'d statement: `not(P)`).
    pub cfg: Vec<TokenStream>,
}

/// A `let` that shadows a local the block may hold: the old value must go back to its
/// slot first if it is still needed after the shadowing scope.
#[derive(Clone, Debug)]
pub struct Shadow {
    /// The block the shadowing happens in.
    pub block: BlockId,
    /// The shadowed slot.
    pub slot: SlotId,
    /// The shadowed slot was bound in this block (not taken from the frame).
    pub defined_before: bool,
}

/// A basic block.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Its code, with placeholders.
    pub code: TokenStream,
    /// Slots visible when the block starts.
    pub entry_visible: Vec<SlotId>,
    /// Slots read before the block binds them.
    pub gen: BTreeSet<SlotId>,
    /// Slots the block binds.
    pub kill: BTreeSet<SlotId>,
    /// Slots the block reads at all.
    pub used: BTreeSet<SlotId>,
    /// Exits leaving the block.
    pub exits: Vec<usize>,
    /// The block can end the run (`return`, `?`, the body's end).
    pub completes: bool,
    /// Position in the generated `match` (order in which blocks were first filled), so
    /// the generated code reads in source order and type inference sees definitions
    /// before uses, as in the original function.
    pub order: Option<usize>,
    /// Control leaves the block on every path.
    pub terminated: bool,
    /// Items of the nested blocks it belongs to, outermost block first (indices into
    /// [`Cfg::scoped_items`]).
    pub items: Vec<Vec<usize>>,
    /// `#[cfg]` predicates it is compiled in under.
    pub cfg: Vec<TokenStream>,
    /// Slots first assigned (`x = ..;`) in the block without being taken from the frame:
    /// declared, unassigned, at its start.
    pub declared: BTreeSet<SlotId>,
    /// Borrowed `for` items bound again at its start (indices into [`Cfg::rebinds`]).
    pub rebinds: BTreeSet<usize>,
}

/// An await site: a state of the compiled machine.
#[derive(Clone, Debug)]
pub struct State {
    /// What is awaited (the called function's name).
    pub name: String,
    /// Source line of the `.await`.
    pub line: u32,
    /// Where execution resumes.
    pub resume: BlockId,
    /// Span of the `.await`.
    pub span: Span,
    /// `#[cfg]` predicates it is compiled in under.
    pub cfg: Vec<TokenStream>,
}

/// The lowered body.
#[derive(Default)]
pub struct Cfg {
    /// Blocks; 0 is the entry.
    pub blocks: Vec<Block>,
    /// Tracked locals.
    pub slots: Vec<Slot>,
    /// All exits.
    pub exits: Vec<Exit>,
    /// All shadowing points.
    pub shadows: Vec<Shadow>,
    /// Await sites.
    pub states: Vec<State>,
    /// Items declared in the body, hoisted to the step function.
    pub items: Vec<TokenStream>,
    /// Functions, constants and `use`s of lowered nested blocks, repeated in the arms of
    /// their blocks.
    pub scoped_items: Vec<TokenStream>,
    /// Borrowed `for` items, bound again where they are read.
    pub rebinds: Vec<Rebind>,
    /// `for` loops over a field of a local.
    pub partial_moves: Vec<PartialMove>,
}

/// Placeholder identifier for exit `k`.
pub fn exit_placeholder(k: usize) -> Ident {
    Ident::new(&format!("__flow_exit_{k}"), Span::call_site())
}

/// Placeholder identifier for shadowing point `k`.
pub fn shadow_placeholder(k: usize) -> Ident {
    Ident::new(&format!("__flow_shadow_{k}"), Span::call_site())
}
