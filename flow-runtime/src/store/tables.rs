//! The journal's redb tables. Values are postcard-encoded records (see `records`).
//!
//! Per-run data is keyed by run ID first, so one run's rows sit together and a step
//! touches a handful of small rows: never all of a run's slots or history.

use redb::TableDefinition;

/// `"magic"` → [`MAGIC`], `"format"` → format version (u32, little endian),
/// [`LOG_POSITION`] → the write-ahead log position the journal holds, [`JOURNAL_ID`] →
/// the ID its write-ahead log is written for.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_meta");
/// run ID → `RunRecord`: the small header rewritten by each transition.
pub(crate) const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_runs");
/// run ID → encoded workflow input, written once (idempotent start compares it).
pub(crate) const INPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_inputs");
/// run ID → encoded workflow output, written when the run completes.
pub(crate) const OUTPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_outputs");
/// run ID → `PendingOp`: the durable operation the run awaits.
pub(crate) const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_pending");
/// (run ID, step, branch) → `BranchRecord`: progress and results of the pending operation.
pub(crate) const BRANCHES: TableDefinition<(&str, u64, u32), &[u8]> =
    TableDefinition::new("flow_branches");
/// (run ID, slot) → encoded local; a later write of a slot replaces the earlier one.
pub(crate) const SLOTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("flow_slots");
/// (run ID, seq) → `StoredEvent`: one history event. Journals written before
/// `HISTORY_BATCHES` existed keep their events here; nothing new is written to it.
pub(crate) const HISTORY: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("flow_history");
/// (run ID, seq of the first event) → `StoredEvents`: the events one write appended
/// (a transition's two or three events are one B-tree insert, not three).
pub(crate) const HISTORY_BATCHES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("flow_history_batches");
/// (deadline ms since the epoch, run ID): the run has something due at the deadline
/// (a sleep, a signal timeout, a retry). Read in order by the timer service.
pub(crate) const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("flow_timers");
/// run ID: the run has work that needs no deadline (a task attempt to run, a first step);
/// scanned when the journal is opened.
pub(crate) const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("flow_active");
/// (run ID, seq) → (signal name, encoded payload): signals not yet consumed.
pub(crate) const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("flow_inbox");
/// run ID: cancellation requested and not yet delivered.
pub(crate) const CANCELS: TableDefinition<&str, ()> = TableDefinition::new("flow_cancels");

/// (run ID, step, item) → encoded `OpRequest`: a pending map's items, written once.
pub(crate) const MAP_ITEMS: TableDefinition<(&str, u64, u32), &[u8]> =
    TableDefinition::new("flow_map_items");
/// callback token → `TokenRecord`.
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_tokens");
/// run ID → run-level deadline (ms since the epoch, little endian); also in `TIMERS`.
pub(crate) const RUN_DEADLINES: TableDefinition<&str, u64> =
    TableDefinition::new("flow_run_deadlines");
/// run ID → the input of the run's current generation, after a continue-as-new
/// (`INPUTS` keeps the original, which idempotent starts compare).
pub(crate) const GENERATION_INPUTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("flow_generation_inputs");

/// run ID → how many outside events (a child's result, a callback completion, a signal
/// the run waits for, a cancellation) reached the run. A transition computed before the
/// latest of them keeps the run active, so no wake-up is lost across a crash.
pub(crate) const NUDGES: TableDefinition<&str, u64> = TableDefinition::new("flow_nudges");

/// The meta key of the write-ahead log position (epoch, seq; u64 each, little endian)
/// that the journal holds: written with every logged batch (see `store::recovery`).
pub(crate) const LOG_POSITION: &str = "log_position";

/// The meta key of the journal's ID (u64, little endian), which its write-ahead log's
/// header repeats (see `store::recovery`).
pub(crate) const JOURNAL_ID: &str = "journal_id";

/// Identifies a flow journal among redb files.
pub(crate) const MAGIC: &[u8] = b"flow journal";
/// Version of the table layout and record encoding.
pub(crate) const FORMAT_VERSION: u32 = 1;
