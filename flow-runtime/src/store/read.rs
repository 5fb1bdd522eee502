//! Reads: one run's state for its driver, lists, histories, timers.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable};
use serde::{Deserialize, Serialize};

use super::records::{
    decode_record, decode_run_header, BranchRecord, MapProgress, PendingOp, RunRecord, StepState,
    StoredStatus, TokenRecord, MAP_PROGRESS,
};
use super::tables::*;
use super::Store;
use crate::error::FlowError;
use crate::history::{EventKind, HistoryEvent};
use crate::op::OpRequest;

/// A history event as stored in `HISTORY` by older journals (its seq is the key).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredEvent {
    pub at_ms: u64,
    pub kind: EventKind,
}

/// The events one write appended, as stored in `HISTORY_BATCHES` (the key holds the
/// first event's seq; the others follow it).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvents {
    pub at_ms: u64,
    pub kinds: Vec<EventKind>,
}

/// A run's header, and its output if it completed.
pub(crate) type HeaderAndOutput = (RunRecord, Option<Vec<u8>>);

/// Everything a driver needs to decide a run's next move.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub header: RunRecord,
    pub pending: Option<PendingOp>,
    /// Records of the pending operation's branches, by branch.
    pub branches: BTreeMap<u32, BranchRecord>,
    pub cancel_requested: bool,
    /// For a pending map: its progress and its open items.
    pub map: Option<MapView>,
    /// The run-level deadline, if the run has one.
    pub run_deadline: Option<u64>,
    /// Outside events that reached the run so far (see `NUDGES`).
    pub nudges: u64,
}

impl Snapshot {
    /// A run about to be created with `header`: nothing pending, nothing received.
    pub(crate) fn new_run(header: RunRecord) -> Self {
        Snapshot {
            header,
            pending: None,
            branches: BTreeMap::new(),
            cancel_requested: false,
            map: None,
            run_deadline: None,
            nudges: 0,
        }
    }
}

/// What a driver reads of a pending map each turn: the progress record, and the requests
/// of the open items (their records are in `Snapshot::branches`). Never the whole map.
#[derive(Debug, Clone, Default)]
pub(crate) struct MapView {
    pub progress: MapProgress,
    pub items: BTreeMap<u32, OpRequest>,
}

/// The timers the timer service found due, and the next deadline after them.
#[derive(Debug, Default)]
pub(crate) struct TimerScan {
    pub due: Vec<(u64, String)>,
    /// The first deadline not yet due, when the scan got that far.
    pub next: Option<u64>,
}

/// The run's header in `txn`.
fn header_in(txn: &ReadTransaction, run_id: &str) -> Result<Option<RunRecord>, FlowError> {
    let runs = txn.open_table(RUNS)?;
    let record = runs.get(run_id)?;
    record.map(|r| decode_run_header(r.value())).transpose()
}

// The store's reads, as `Journal` offers them (see `store::journal`).

/// The run's header, if the run exists.
pub(super) fn header(store: &Store, run_id: &str) -> Result<Option<RunRecord>, FlowError> {
    store.read(|txn| header_in(txn, run_id))
}

/// The run's header, pending operation and branch records.
pub(super) fn snapshot(store: &Store, run_id: &str) -> Result<Option<Snapshot>, FlowError> {
    store.read(|txn| {
        let Some(header) = header_in(txn, run_id)? else {
            return Ok(None);
        };
        let pending: Option<PendingOp> = txn
            .open_table(PENDING)?
            .get(run_id)?
            .map(|p| decode_record(p.value(), "pending step"))
            .transpose()?;
        let mut branches = BTreeMap::new();
        let mut map = None;
        if let Some(op) = pending.as_ref().filter(|op| op.shape.map_spec().is_some()) {
            let table = txn.open_table(BRANCHES)?;
            let progress = match table.get((run_id, op.step, MAP_PROGRESS))? {
                Some(v) => match decode_record(v.value(), "branch record")? {
                    BranchRecord::MapProgress(p) => p,
                    _ => MapProgress::default(),
                },
                None => MapProgress::default(),
            };
            let items_table = txn.open_table(MAP_ITEMS)?;
            let mut items = BTreeMap::new();
            for &i in &progress.open {
                if let Some(v) = table.get((run_id, op.step, i))? {
                    branches.insert(i, decode_record(v.value(), "branch record")?);
                }
                if let Some(v) = items_table.get((run_id, op.step, i))? {
                    items.insert(i, decode_record(v.value(), "map item")?);
                }
            }
            map = Some(MapView { progress, items });
        } else if let Some(op) = &pending {
            let table = txn.open_table(BRANCHES)?;
            for entry in table.range((run_id, op.step, 0)..=(run_id, op.step, u32::MAX))? {
                let (key, value) = entry?;
                branches.insert(
                    key.value().2,
                    decode_record(value.value(), "branch record")?,
                );
            }
        }
        let cancel_requested = txn.open_table(CANCELS)?.get(run_id)?.is_some();
        let run_deadline = txn
            .open_table(RUN_DEADLINES)?
            .get(run_id)?
            .map(|d| d.value());
        let nudges = txn
            .open_table(NUDGES)?
            .get(run_id)?
            .map(|n| n.value())
            .unwrap_or(0);
        Ok(Some(Snapshot {
            header,
            pending,
            branches,
            cancel_requested,
            map,
            run_deadline,
            nudges,
        }))
    })
}

/// Every stored local slot of the run.
pub(super) fn slots(store: &Store, run_id: &str) -> Result<Vec<(u32, Vec<u8>)>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(SLOTS)?;
        let mut slots = Vec::new();
        for entry in table.range((run_id, 0)..=(run_id, u32::MAX))? {
            let (key, value) = entry?;
            slots.push((key.value().1, value.value().to_vec()));
        }
        Ok(slots)
    })
}

/// The run's encoded input.
pub(super) fn input(store: &Store, run_id: &str) -> Result<Option<Vec<u8>>, FlowError> {
    store.read(|txn| {
        Ok(txn
            .open_table(INPUTS)?
            .get(run_id)?
            .map(|v| v.value().to_vec()))
    })
}

/// The input of the run's current generation (differs from `input` after a
/// continue-as-new).
pub(super) fn generation_input(store: &Store, run_id: &str) -> Result<Option<Vec<u8>>, FlowError> {
    let current = store.read(|txn| {
        Ok(txn
            .open_table(GENERATION_INPUTS)?
            .get(run_id)?
            .map(|v| v.value().to_vec()))
    })?;
    match current {
        Some(input) => Ok(Some(input)),
        None => input(store, run_id),
    }
}

/// The name of the type the step of callback `token` awaits, if the token is unused and
/// recorded one.
pub(super) fn token_type(store: &Store, token: &str) -> Result<Option<String>, FlowError> {
    let bytes = store.read(|txn| {
        let open = match txn.open_table(TOKENS)?.get(token)? {
            Some(record) => !decode_record::<TokenRecord>(record.value(), "callback token")?.used,
            None => false,
        };
        if !open {
            return Ok(None);
        }
        Ok(txn
            .open_table(TOKEN_TYPES)?
            .get(token)?
            .map(|v| v.value().to_vec()))
    })?;
    bytes
        .map(|b| {
            String::from_utf8(b).map_err(|_| FlowError::Corrupt {
                path: crate::error::UNNAMED_JOURNAL.into(),
                message: "a callback token's awaited type is not UTF-8".into(),
            })
        })
        .transpose()
}

/// Up to `count` items of a pending map from item `from`, with their index.
pub(super) fn map_items(
    store: &Store,
    run_id: &str,
    step: u64,
    from: u32,
    count: u32,
) -> Result<Vec<(u32, OpRequest)>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(MAP_ITEMS)?;
        let end = from.saturating_add(count.saturating_sub(1));
        let mut items = Vec::new();
        for entry in table.range((run_id, step, from)..=(run_id, step, end))? {
            let (key, value) = entry?;
            items.push((key.value().2, decode_record(value.value(), "map item")?));
        }
        Ok(items)
    })
}

/// Every item record of a map step (read once, when the map is done), by item.
pub(super) fn map_records(
    store: &Store,
    run_id: &str,
    step: u64,
) -> Result<Vec<(u32, BranchRecord)>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(BRANCHES)?;
        let mut records = Vec::new();
        for entry in table.range((run_id, step, 0)..(run_id, step, MAP_PROGRESS))? {
            let (key, value) = entry?;
            records.push((
                key.value().2,
                decode_record(value.value(), "branch record")?,
            ));
        }
        Ok(records)
    })
}

/// The run's header and, once it completed, its output: one read transaction.
pub(super) fn header_and_output(
    store: &Store,
    run_id: &str,
) -> Result<Option<HeaderAndOutput>, FlowError> {
    store.read(|txn| {
        let Some(header) = header_in(txn, run_id)? else {
            return Ok(None);
        };
        let output = match header.status {
            StoredStatus::Completed => txn
                .open_table(OUTPUTS)?
                .get(run_id)?
                .map(|v| v.value().to_vec()),
            _ => None,
        };
        Ok(Some((header, output)))
    })
}

/// The oldest signal called `name` not in `skip`: its inbox seq and payload.
pub(super) fn oldest_signal(
    store: &Store,
    run_id: &str,
    name: &str,
    skip: &[u64],
) -> Result<Option<(u64, Vec<u8>)>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(INBOX)?;
        for entry in table.range((run_id, 0)..=(run_id, u64::MAX))? {
            let (key, value) = entry?;
            let (signal, payload): (String, Vec<u8>) =
                decode_record(value.value(), "inbox message")?;
            if signal == name && !skip.contains(&key.value().1) {
                return Ok(Some((key.value().1, payload)));
            }
        }
        Ok(None)
    })
}

/// A run as a listing reads it: its ID, header, and output if it completed.
pub(crate) type ListedRun = (String, RunRecord, Option<Vec<u8>>);

/// Up to `limit` runs after run ID `after` (from the first run without one), in run ID
/// order: one read transaction, memory bounded by `limit`.
pub(super) fn runs_after(
    store: &Store,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ListedRun>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(RUNS)?;
        let outputs = txn.open_table(OUTPUTS)?;
        let lower = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut runs = Vec::new();
        for entry in table.range::<&str>((lower, Bound::Unbounded))? {
            if runs.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let run_id = key.value().to_string();
            let header = decode_run_header(value.value())?;
            let output = match header.status {
                StoredStatus::Completed => {
                    outputs.get(run_id.as_str())?.map(|v| v.value().to_vec())
                }
                _ => None,
            };
            runs.push((run_id, header, output));
        }
        Ok(runs)
    })
}

/// The run's history, oldest first.
pub(super) fn history(store: &Store, run_id: &str) -> Result<Vec<HistoryEvent>, FlowError> {
    store.read(|txn| {
        let mut events = Vec::new();
        // Events from before `HISTORY_BATCHES` existed come first.
        let single = txn.open_table(HISTORY)?;
        for entry in single.range((run_id, 0)..=(run_id, u64::MAX))? {
            let (key, value) = entry?;
            let event: StoredEvent = decode_record(value.value(), "history event")?;
            events.push(HistoryEvent {
                seq: key.value().1,
                at_ms: event.at_ms,
                kind: event.kind,
            });
        }
        let batches = txn.open_table(HISTORY_BATCHES)?;
        for entry in batches.range((run_id, 0)..=(run_id, u64::MAX))? {
            let (key, value) = entry?;
            let batch: StoredEvents = decode_record(value.value(), "history events")?;
            let first = key.value().1;
            for (seq, kind) in (first..).zip(batch.kinds) {
                events.push(HistoryEvent {
                    seq,
                    at_ms: batch.at_ms,
                    kind,
                });
            }
        }
        events.sort_by_key(|e| e.seq);
        // A run's start event leaves its input to the run's input record (see
        // `Engine::start`); events written before that carry it and are left alone.
        for event in &mut events {
            if let EventKind::RunStarted { input, .. } = &mut event.kind {
                if input.is_empty() {
                    if let Some(stored) = txn.open_table(INPUTS)?.get(run_id)? {
                        *input = stored.value().to_vec();
                    }
                }
            }
        }
        fill_map_items(txn, run_id, &mut events)?;
        Ok(events)
    })
}

/// Puts each map's and batch's items back into its `StepScheduled` request, named as
/// their `BranchNamed` events name them. A map's items are journaled once, in
/// `MAP_ITEMS`, and its `StepScheduled` event holds the request without them (see
/// `engine::step::without_items`); the items stay there until the run's generation or
/// the run itself is deleted, so a finished map shows its items too. A map scheduled by
/// a flow version that deleted its items when it ended shows none (its label still gives
/// the count).
fn fill_map_items(
    txn: &ReadTransaction,
    run_id: &str,
    events: &mut [HistoryEvent],
) -> Result<(), FlowError> {
    let has_map = events.iter().any(|e| match &e.kind {
        EventKind::StepScheduled { request, .. } => matches!(
            crate::engine::step::peel(request).0,
            OpRequest::Map { .. } | OpRequest::Batch { .. }
        ),
        _ => false,
    });
    if !has_map {
        return Ok(());
    }
    let mut names: BTreeMap<(u64, u32), String> = BTreeMap::new();
    for event in events.iter() {
        if let EventKind::BranchNamed { step, branch, name } = &event.kind {
            names.insert((*step, *branch), name.clone());
        }
    }
    let table = txn.open_table(MAP_ITEMS)?;
    for event in events.iter_mut() {
        let EventKind::StepScheduled { step, request, .. } = &mut event.kind else {
            continue;
        };
        let Some(items) = map_items_mut(request) else {
            continue;
        };
        for entry in table.range((run_id, *step, 0)..=(run_id, *step, u32::MAX))? {
            let (key, value) = entry?;
            let index = key.value().2;
            let item: OpRequest = decode_record(value.value(), "map item")?;
            items.push(match names.get(&(*step, index)) {
                Some(name) => OpRequest::Named {
                    name: name.clone(),
                    op: Box::new(item),
                },
                None => item,
            });
        }
    }
    Ok(())
}

/// The items of `request` (inside any names) when it is a map or batch recorded without
/// them.
fn map_items_mut(request: &mut OpRequest) -> Option<&mut Vec<OpRequest>> {
    match request {
        OpRequest::Named { op, .. } => map_items_mut(op),
        OpRequest::Map { items, .. } | OpRequest::Batch { items, .. } if items.is_empty() => {
            Some(items)
        }
        _ => None,
    }
}

/// A run's program counter and every slot, as they were when a step was scheduled.
pub(crate) type StateAtStep = (u32, Vec<(u32, Vec<u8>)>);

/// The state of run `run_id` as the transition that scheduled `step` left it: its
/// program counter, and every slot as the transitions up to that one wrote it. `None`
/// when that transition's record is missing (written before step states were kept, or
/// in an earlier generation).
pub(super) fn step_state(
    store: &Store,
    run_id: &str,
    step: u64,
) -> Result<Option<StateAtStep>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(STEP_STATES)?;
        let mut slots = BTreeMap::new();
        let mut pc = None;
        for entry in table.range((run_id, 0)..=(run_id, step))? {
            let (key, value) = entry?;
            let state = decode_record::<StepState>(value.value(), "step state")?;
            slots.extend(state.slots);
            if key.value().1 == step {
                pc = Some(state.pc);
            }
        }
        Ok(pc.map(|pc| (pc, slots.into_iter().collect())))
    })
}

/// [`step_state`] of each step in `steps` that has a record, in one pass over the
/// run's step states from its first: what a listing of many steps reads.
pub(super) fn step_states(
    store: &Store,
    run_id: &str,
    steps: std::ops::Range<u64>,
) -> Result<Vec<(u64, StateAtStep)>, FlowError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    store.read(|txn| {
        let table = txn.open_table(STEP_STATES)?;
        let mut slots = BTreeMap::new();
        let mut out = Vec::new();
        for entry in table.range((run_id, 0)..(run_id, steps.end))? {
            let (key, value) = entry?;
            let state = decode_record::<StepState>(value.value(), "step state")?;
            slots.extend(state.slots);
            let step = key.value().1;
            if steps.contains(&step) {
                let now = slots.iter().map(|(slot, bytes)| (*slot, bytes.clone()));
                out.push((step, (state.pc, now.collect())));
            }
        }
        Ok(out)
    })
}

/// The rows of `RETENTION`, by key.
pub(super) fn retention_rows(store: &Store) -> Result<Vec<(String, u64)>, FlowError> {
    store.read(|txn| {
        let mut rows = Vec::new();
        for entry in txn.open_table(RETENTION)?.iter()? {
            let (key, ms) = entry?;
            rows.push((key.value().to_string(), ms.value()));
        }
        Ok(rows)
    })
}

/// Up to `limit` runs whose expiry has passed at `now_ms`, oldest first, and when the
/// next expiry after them is due.
pub(super) fn due_expiries(
    store: &Store,
    now_ms: u64,
    limit: usize,
) -> Result<(Vec<String>, Option<u64>), FlowError> {
    store.read(|txn| {
        let mut due = Vec::new();
        for entry in txn.open_table(EXPIRIES)?.iter()? {
            let (key, _) = entry?;
            let (at, run_id) = key.value();
            if at > now_ms || due.len() == limit {
                return Ok((due, Some(at)));
            }
            due.push(run_id.to_string());
        }
        Ok((due, None))
    })
}

/// Runs with work that needs no deadline.
pub(super) fn active_runs(store: &Store) -> Result<Vec<String>, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(ACTIVE)?;
        let mut runs = std::collections::BTreeSet::new();
        for entry in table.iter()? {
            runs.insert(entry?.0.value().to_string());
        }
        // A signal that arrived before its run waited for it is taken by the driver's
        // turn after the transition that starts the wait, not by that transition: if
        // the engine stopped in between (a crash, a shard handed over), only this finds
        // the run again. A run whose inbox holds nothing it waits for just looks.
        let inbox = txn.open_table(INBOX)?;
        for entry in inbox.iter()? {
            let (key, _) = entry?;
            let run = key.value().0;
            if !runs.contains(run) {
                runs.insert(run.to_string());
            }
        }
        Ok(runs.into_iter().collect())
    })
}

/// Up to `limit` timers due at `now_ms`, starting after `after` (or at `from_ms`).
pub(super) fn scan_timers(
    store: &Store,
    start: &TimerStart,
    now_ms: u64,
    limit: usize,
) -> Result<TimerScan, FlowError> {
    store.read(|txn| {
        let table = txn.open_table(TIMERS)?;
        let lower = match start {
            TimerStart::From(ms) => Bound::Included((*ms, "")),
            TimerStart::After(ms, run) => Bound::Excluded((*ms, run.as_str())),
        };
        let mut scan = TimerScan::default();
        for entry in table.range::<(u64, &str)>((lower, Bound::Unbounded))? {
            let (key, ()) = entry.map(|(k, _)| (k, ()))?;
            let (deadline, run) = key.value();
            if deadline > now_ms {
                scan.next = Some(deadline);
                break;
            }
            scan.due.push((deadline, run.to_string()));
            if scan.due.len() >= limit {
                break;
            }
        }
        Ok(scan)
    })
}

/// Where a timer scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimerStart {
    /// At the first timer with this deadline or later.
    From(u64),
    /// After this timer.
    After(u64, String),
}
