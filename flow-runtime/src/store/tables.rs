//! The journal's redb tables. Values are postcard-encoded records (see `records`).
//!
//! Per-run data is keyed by run ID first, so one run's rows sit together and a step
//! touches a handful of small rows: never all of a run's slots or history.
//!
//! # Checksums
//! Every value but the meta table's is stored [`Sealed`]: followed by the CRC-32 of its
//! bytes, checked each time redb hands the value out. redb's own page checksums are
//! verified only by an integrity check, so without this a damaged byte in a record
//! would be read as another value. A value that fails its check reads as empty (or
//! zero) and is noted for this thread; the store turns the note into
//! `FlowError::Corrupt` naming the table, and discards what was computed from the value
//! (see [`take_damage`]). Call sites read and write plain bytes.

use std::cell::Cell;
use std::marker::PhantomData;

use redb::{TableDefinition, TypeName, Value};

/// Names the table a [`Sealed`] value belongs to, for errors.
pub(crate) trait TableName {
    const NAME: &'static str;
}

/// A value of type `T` stored with a CRC-32 of its bytes appended (see the module docs).
#[derive(Debug)]
pub(crate) struct Sealed<T, N>(PhantomData<(T, N)>);

/// The check's bytes, after the value's.
const SEAL: usize = 4;

thread_local! {
    /// The table of the first value that failed its check since the last `take_damage`.
    static DAMAGE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The table in which a value read on this thread failed its check since the last call
/// (which clears the note). Callers clear it before a transaction's reads and take it
/// after them: if it is set, whatever they computed read a damaged value.
pub(crate) fn take_damage() -> Option<&'static str> {
    DAMAGE.with(|d| d.take())
}

/// The error for a value of `table` that failed its checksum.
pub(crate) fn damaged_value(file: &str, table: &str) -> crate::error::FlowError {
    crate::error::FlowError::Corrupt {
        path: file.to_string(),
        message: format!(
            "a value in its table `{table}` failed its checksum: the file was changed \
             outside flow"
        ),
    }
}

/// What a damaged value reads as: no bytes, or zeros of the type's width.
fn placeholder(width: Option<usize>) -> &'static [u8] {
    static ZEROS: [u8; 16] = [0; 16];
    width.map_or(&[], |w| &ZEROS[..w.min(ZEROS.len())])
}

impl<T: Value + 'static, N: TableName + std::fmt::Debug + 'static> Value for Sealed<T, N> {
    type SelfType<'a>
        = T::SelfType<'a>
    where
        Self: 'a;
    type AsBytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        T::fixed_width().map(|w| w + SEAL)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Self::SelfType<'a>
    where
        Self: 'a,
    {
        let intact = data.len() >= SEAL && {
            let (value, seal) = data.split_at(data.len() - SEAL);
            T::fixed_width().is_none_or(|w| w == value.len())
                && crc32fast::hash(value).to_le_bytes() == seal
        };
        if intact {
            return T::from_bytes(&data[..data.len() - SEAL]);
        }
        DAMAGE.with(|d| {
            if d.get().is_none() {
                d.set(Some(N::NAME));
            }
        });
        T::from_bytes(placeholder(T::fixed_width()))
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Self::SelfType<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        let bytes = T::as_bytes(value);
        let bytes = bytes.as_ref();
        let mut sealed = Vec::with_capacity(bytes.len() + SEAL);
        sealed.extend_from_slice(bytes);
        sealed.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        sealed
    }

    fn type_name() -> TypeName {
        TypeName::new(&format!("flow::sealed<{}>", T::type_name().name()))
    }
}

/// Defines sealed tables: `NAME: key => value = "table"` makes the definition `NAME`,
/// and `values::NAME`, the sealed value type its handles are typed with.
macro_rules! sealed_tables {
    ($($(#[$doc:meta])* $name:ident: $key:ty => $value:ty = $table:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $name: TableDefinition<$key, values::$name> =
                TableDefinition::new($table);
        )*
        /// The sealed value types of the tables, named as the tables are.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub(crate) mod values {
            $(pub(crate) type $name = super::Sealed<$value, names::$name>;)*

            /// Markers naming each table in errors.
            pub(crate) mod names {
                $(
                    #[derive(Debug)]
                    pub(crate) enum $name {}
                    impl super::super::TableName for $name {
                        const NAME: &'static str = $table;
                    }
                )*
            }
        }
    };
}

/// `"magic"` → [`MAGIC`], `"format"` → format version (u32, little endian),
/// [`LOG_POSITION`] → the write-ahead log position the journal holds, [`JOURNAL_ID`] →
/// the ID its write-ahead log is written for, [`LOG_STATE`] → the log in use. Not
/// sealed: a journal of any format must open it to tell its format.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_meta");

sealed_tables! {
    /// run ID → `RunRecord`: the small header rewritten by each transition.
    RUNS: &str => &'static [u8] = "flow_runs";
    /// run ID → encoded workflow input, written once (idempotent start compares it).
    INPUTS: &str => &'static [u8] = "flow_inputs";
    /// run ID → encoded workflow output, written when the run completes.
    OUTPUTS: &str => &'static [u8] = "flow_outputs";
    /// run ID → `PendingOp`: the durable operation the run awaits.
    PENDING: &str => &'static [u8] = "flow_pending";
    /// (run ID, step, branch) → `BranchRecord`: progress and results of the pending
    /// operation.
    BRANCHES: (&str, u64, u32) => &'static [u8] = "flow_branches";
    /// (run ID, slot) → encoded local; a later write of a slot replaces the earlier one.
    SLOTS: (&str, u32) => &'static [u8] = "flow_slots";
    /// (run ID, seq) → `StoredEvent`: one history event. Journals written before
    /// `HISTORY_BATCHES` existed kept their events here; nothing new is written to it.
    HISTORY: (&str, u64) => &'static [u8] = "flow_history";
    /// (run ID, seq of the first event) → `StoredEvents`: the events one write appended
    /// (a transition's two or three events are one B-tree insert, not three).
    HISTORY_BATCHES: (&str, u64) => &'static [u8] = "flow_history_batches";
    /// (run ID, seq) → (signal name, encoded payload): signals not yet consumed.
    INBOX: (&str, u64) => &'static [u8] = "flow_inbox";
    /// (run ID, step, item) → encoded `OpRequest` (without its name, which is in a
    /// `BranchNamed` event): a map's or batch's items, written once when it is scheduled.
    /// The map driver reads the items it starts; the history shows them in the step's
    /// `StepScheduled` request. Kept after the map ends, until the run's next
    /// continue-as-new or the run's deletion (retention, purge).
    MAP_ITEMS: (&str, u64, u32) => &'static [u8] = "flow_map_items";
    /// callback token → `TokenRecord`.
    TOKENS: &str => &'static [u8] = "flow_tokens";
    /// run ID → run-level deadline (ms since the epoch); also in `TIMERS`.
    RUN_DEADLINES: &str => u64 = "flow_run_deadlines";
    /// run ID → the input of the run's current generation, after a continue-as-new
    /// (`INPUTS` keeps the original, which idempotent starts compare).
    GENERATION_INPUTS: &str => &'static [u8] = "flow_generation_inputs";
    /// run ID → how many outside events (a child's result, a callback completion, a
    /// signal the run waits for, a cancellation) reached the run. A transition computed
    /// before the latest of them keeps the run active, so no wake-up is lost across a
    /// crash.
    NUDGES: &str => u64 = "flow_nudges";
    /// callback token → the name of the type its step awaits (UTF-8), for the check
    /// `Engine::complete` makes; tokens issued before it existed have no entry.
    TOKEN_TYPES: &str => &'static [u8] = "flow_token_types";
    /// workflow name (`""`: the engine's default) → how long its finished runs are kept,
    /// ms; [`KEEP`]: for ever. Written by the engine at open (`Change::SetRetention`)
    /// and read when a run finishes, so replay computes the same expiry.
    RETENTION: &str => u64 = "flow_retention";
    /// run ID → when the finished run is to be deleted (ms since the epoch); also in
    /// `EXPIRIES`.
    RUN_EXPIRIES: &str => u64 = "flow_run_expiries";
    /// (run ID, step) → `StepState`: the program counter and the slots written by the
    /// transition that scheduled the step, so the locals as they were at any step of the
    /// run's current generation can be put back together (`Engine::fork`).
    STEP_STATES: (&str, u64) => &'static [u8] = "flow_step_states";
}

/// (expiry ms since the epoch, run ID): the finished run is deleted once the expiry has
/// passed. Read in order by the engine's retention service.
pub(crate) const EXPIRIES: TableDefinition<(u64, &str), ()> = TableDefinition::new("flow_expiries");
/// (run ID, callback token): the tokens the run issued, deleted with it. Tokens issued
/// before this table existed are not in it and stay when their run is deleted.
pub(crate) const RUN_TOKENS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("flow_run_tokens");

/// request ID: a delivery (`Engine::deliver`, see `store::deliveries`) was applied
/// under this ID, so another one with it changes nothing. Deleted by
/// `Engine::forget_deliveries`. Added in format 4 without a new format: a build that
/// does not know it leaves it alone (and cannot replay a log holding deliveries).
pub(crate) const DELIVERIES: TableDefinition<&str, ()> = TableDefinition::new("flow_deliveries");

/// The retention of a workflow whose finished runs are kept for ever.
pub(crate) const KEEP: u64 = u64::MAX;

/// (deadline ms since the epoch, run ID): the run has something due at the deadline
/// (a sleep, a signal timeout, a retry). Read in order by the timer service.
pub(crate) const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("flow_timers");
/// run ID: the run has work that needs no deadline (a task attempt to run, a first step);
/// scanned when the journal is opened.
pub(crate) const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("flow_active");
/// run ID: cancellation requested and not yet delivered.
pub(crate) const CANCELS: TableDefinition<&str, ()> = TableDefinition::new("flow_cancels");

/// The meta key of the write-ahead log position (epoch, seq; u64 each, little endian)
/// that the journal holds: written with every logged batch (see `store::recovery`).
pub(crate) const LOG_POSITION: &str = "log_position";

/// The meta key of the journal's ID (u64, little endian), which its write-ahead log's
/// header repeats (see `store::recovery`).
pub(crate) const JOURNAL_ID: &str = "journal_id";

/// The meta key of the marker of a write-ahead log in use (see `store::recovery`);
/// absent after a clean shutdown.
pub(crate) const LOG_STATE: &str = "log_state";

/// Identifies a flow journal among redb files.
pub(crate) const MAGIC: &[u8] = b"flow journal";
/// Version of the table layout and record encoding. 2: values sealed with a checksum,
/// and the write-ahead log's marker (`LOG_STATE`). 3: user values (inputs, outputs,
/// locals, payloads, task arguments and results) in the self-describing encoding of
/// `codec` instead of postcard. 4: the run indexes of `store::run_index`, which a
/// build that does not know them would leave stale (so such a build must refuse it).
pub(crate) const FORMAT_VERSION: u32 = 4;
/// The one older format this build opens: a format-3 journal is migrated to
/// [`FORMAT_VERSION`] (its run indexes built) on its first writable open, and read by
/// scanning until then.
pub(crate) const MIGRATES_FROM: u32 = 3;
