//! Building journals from fuzz input: raw bytes as a whole redb file, or a well-formed
//! redb file whose flow tables hold fuzzer-chosen rows (so the engine's own record
//! decoders and drivers see hostile values behind valid redb pages).
//!
//! The table names, value sealing and record layouts mirror
//! `flow-runtime/src/store/{tables,records}.rs` (format 2: every value but the meta
//! table's followed by its CRC-32); they are part of the on-disk format, so they only
//! change with it. (The
//! pending step's `shape` is written as the `join: bool` it replaced: postcard encodes
//! `false`/`true` like the variants `Single`/`Join`.) A mirror that drifts shows up as
//! "valid" records the engine refuses: `tests/regressions.rs` checks that it does not.

use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use flow::{EventKind, OpRequest, Task, TaskPolicy, Workflow};
use redb::backends::InMemoryBackend;
use redb::{Database, StorageBackend, TableDefinition, TypeName, Value};
use serde::Serialize;

use crate::harness::{fuzz_flow, fuzz_step};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("flow_meta");
const RUNS: TableDefinition<&str, Bytes> = TableDefinition::new("flow_runs");
const INPUTS: TableDefinition<&str, Bytes> = TableDefinition::new("flow_inputs");
const OUTPUTS: TableDefinition<&str, Bytes> = TableDefinition::new("flow_outputs");
const PENDING: TableDefinition<&str, Bytes> = TableDefinition::new("flow_pending");
const BRANCHES: TableDefinition<(&str, u64, u32), Bytes> = TableDefinition::new("flow_branches");
const SLOTS: TableDefinition<(&str, u32), Bytes> = TableDefinition::new("flow_slots");
const HISTORY: TableDefinition<(&str, u64), Bytes> = TableDefinition::new("flow_history");
const TIMERS: TableDefinition<(u64, &str), ()> = TableDefinition::new("flow_timers");
const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("flow_active");
const INBOX: TableDefinition<(&str, u64), Bytes> = TableDefinition::new("flow_inbox");
const CANCELS: TableDefinition<&str, ()> = TableDefinition::new("flow_cancels");
const MAP_ITEMS: TableDefinition<(&str, u64, u32), Bytes> = TableDefinition::new("flow_map_items");
const TOKENS: TableDefinition<&str, Bytes> = TableDefinition::new("flow_tokens");
const RUN_DEADLINES: TableDefinition<&str, Sealed<u64>> =
    TableDefinition::new("flow_run_deadlines");
const GENERATION_INPUTS: TableDefinition<&str, Bytes> =
    TableDefinition::new("flow_generation_inputs");

/// The journal format these mirrors write.
const FORMAT: u32 = 2;

type Bytes = Sealed<&'static [u8]>;

/// A value as flow stores it: its bytes, then their CRC-32 (mirrors `tables::Sealed`,
/// type name included, which redb checks when a table is opened).
#[derive(Debug)]
struct Sealed<T>(PhantomData<T>);

impl<T: Value + 'static> Value for Sealed<T> {
    type SelfType<'a>
        = T::SelfType<'a>
    where
        Self: 'a;
    type AsBytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        T::fixed_width().map(|w| w + 4)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Self::SelfType<'a>
    where
        Self: 'a,
    {
        T::from_bytes(&data[..data.len().saturating_sub(4)])
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Self::SelfType<'b>) -> Vec<u8>
    where
        Self: 'b,
    {
        let bytes = T::as_bytes(value);
        let mut sealed = bytes.as_ref().to_vec();
        sealed.extend_from_slice(&crc32fast::hash(bytes.as_ref()).to_le_bytes());
        sealed
    }

    fn type_name() -> TypeName {
        TypeName::new(&format!("flow::sealed<{}>", T::type_name().name()))
    }
}

#[derive(Serialize)]
struct RunRecord {
    workflow: String,
    fingerprint: u64,
    status: StoredStatus,
    pc: u32,
    steps: u64,
    started: bool,
    created_at_ms: u64,
    updated_at_ms: u64,
    parent: Option<ParentLink>,
}

#[derive(Serialize)]
enum StoredStatus {
    Running,
    Waiting,
    Completed,
    Failed(String),
    Faulted(String),
    Cancelled,
}

#[derive(Serialize)]
struct ParentLink {
    run_id: String,
    step: u64,
    branch: u32,
}

#[derive(Serialize)]
struct PendingOp {
    step: u64,
    state: u32,
    name: String,
    scheduled_at_ms: u64,
    join: bool,
    branches: Vec<Branch>,
}

#[derive(Serialize)]
enum Branch {
    Task {
        name: String,
        args: Vec<u8>,
        policy: TaskPolicy,
    },
    Sleep {
        until_ms: u64,
    },
    Signal {
        name: String,
        timeout: Option<Duration>,
        deadline_ms: Option<u64>,
    },
    Child {
        run_id: String,
        workflow: String,
    },
}

#[derive(Serialize)]
enum BranchRecord {
    Retrying {
        failed_attempts: u32,
        retry_at_ms: u64,
    },
    Done(Vec<u8>),
    Failed(String),
}

#[derive(Serialize)]
struct TokenRecord {
    run_id: String,
    step: u64,
    branch: u32,
    used: bool,
}

#[derive(Serialize)]
struct StoredEvent {
    at_ms: u64,
    kind: EventKind,
}

/// A transition's events as one history record (`flow_history_batches`).
#[derive(Serialize)]
struct StoredEvents {
    at_ms: u64,
    kinds: Vec<EventKind>,
}

/// A redb backend whose bytes outlive the database (to hand them to the engine after).
#[derive(Debug, Default, Clone)]
struct SharedBackend(Arc<RwLock<Vec<u8>>>);

impl StorageBackend for SharedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.read().unwrap().len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let data = self.0.read().unwrap();
        let start = offset as usize;
        let end = start + out.len();
        match data.get(start..end) {
            Some(src) => {
                out.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::Error::other("read past the end")),
        }
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.write().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut buf = self.0.write().unwrap();
        let start = offset as usize;
        let end = start + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// An in-memory redb backend holding `bytes` (a whole database file image).
pub fn preloaded_backend(bytes: &[u8]) -> InMemoryBackend {
    let backend = InMemoryBackend::new();
    backend
        .set_len(bytes.len() as u64)
        .expect("in-memory set_len");
    backend.write(0, bytes).expect("in-memory write");
    backend
}

fn enc<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encodes the mirror records")
}

fn text(u: &mut Unstructured<'_>, names: &[&str]) -> arbitrary::Result<String> {
    let pick = u.int_in_range(0..=names.len())?;
    match names.get(pick) {
        Some(name) => Ok(name.to_string()),
        None => u.arbitrary(),
    }
}

/// A value: usually a well-formed record from `valid`, sometimes raw bytes.
fn value(
    u: &mut Unstructured<'_>,
    valid: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>>,
) -> arbitrary::Result<Vec<u8>> {
    if u.ratio(1, 4)? {
        u.arbitrary()
    } else {
        valid(u)
    }
}

fn small(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    if u.ratio(1, 8)? {
        edgy(u, &[u64::MAX, u64::from(u32::MAX)])
    } else {
        Ok(u.int_in_range(0..=4)?)
    }
}

/// A plausible time: around now, or anything.
fn time_ms(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(match u.int_in_range(0..=3)? {
        0 => now.saturating_sub(u.int_in_range(0..=10_000)?),
        1 => now + u.int_in_range(0..=50)?,
        2 => *u.choose(&[0, u64::MAX])?,
        _ => u.arbitrary()?,
    })
}

/// An integer, biased toward the edges where arithmetic overflows.
fn edgy<T: for<'a> Arbitrary<'a> + Copy>(
    u: &mut Unstructured<'_>,
    edges: &[T],
) -> arbitrary::Result<T> {
    if u.ratio(1, 2)? {
        Ok(*u.choose(edges)?)
    } else {
        u.arbitrary()
    }
}

fn duration(u: &mut Unstructured<'_>) -> arbitrary::Result<Duration> {
    let edges = [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(u64::MAX / 1000),
        Duration::new(u64::MAX, 0),
        Duration::MAX,
    ];
    edgy(u, &edges)
}

fn float(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    let edges = [
        0.0,
        0.5,
        1.0,
        2.0,
        -1.0,
        1e300,
        f64::INFINITY,
        f64::NAN,
        f64::MAX,
    ];
    edgy(u, &edges)
}

fn task_args(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    // The task struct `fuzz_step { x: u64 }`, as postcard encodes it: one varint.
    value(u, |u| Ok(enc(&u.arbitrary::<u64>()?)))
}

fn policy(u: &mut Unstructured<'_>) -> arbitrary::Result<TaskPolicy> {
    let mut policy = TaskPolicy::default();
    if u.arbitrary()? {
        policy.retry.max_attempts = edgy(u, &[0, 1, 2, u32::MAX])?;
        policy.retry.initial_interval = duration(u)?;
        policy.retry.backoff_rate = float(u)?;
        policy.retry.max_interval = duration(u)?;
        policy.retry.jitter = float(u)?;
    }
    policy.timeout = if u.arbitrary()? {
        Some(duration(u)?)
    } else {
        None
    };
    Ok(policy)
}

fn branch(u: &mut Unstructured<'_>, runs: &[&str]) -> arbitrary::Result<Branch> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Branch::Task {
            name: text(u, &[fuzz_step::NAME])?,
            args: task_args(u)?,
            policy: policy(u)?,
        },
        1 => Branch::Sleep {
            until_ms: time_ms(u)?,
        },
        2 => Branch::Signal {
            name: text(u, &["go"])?,
            timeout: if u.arbitrary()? {
                Some(duration(u)?)
            } else {
                None
            },
            deadline_ms: if u.arbitrary()? {
                Some(time_ms(u)?)
            } else {
                None
            },
        },
        _ => Branch::Child {
            run_id: text(u, runs)?,
            workflow: text(u, &[fuzz_flow::NAME])?,
        },
    })
}

fn status(u: &mut Unstructured<'_>) -> arbitrary::Result<StoredStatus> {
    Ok(match u.int_in_range(0..=5)? {
        0 => StoredStatus::Running,
        1 => StoredStatus::Waiting,
        2 => StoredStatus::Completed,
        3 => StoredStatus::Failed(u.arbitrary()?),
        4 => StoredStatus::Faulted(u.arbitrary()?),
        _ => StoredStatus::Cancelled,
    })
}

/// Builds a redb file image holding a flow journal whose rows come from `u`.
pub fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    const RUN_IDS: &[&str] = &["a", "b", "c"];
    let shared = SharedBackend::default();
    let db = Database::builder()
        .create_with_backend(shared.clone())
        .expect("create an in-memory redb database");
    let txn = db.begin_write().expect("begin_write");
    {
        let mut meta = txn.open_table(META).expect("open meta");
        let magic: Vec<u8> = if u.ratio(1, 16)? {
            u.arbitrary()?
        } else {
            b"flow journal".to_vec()
        };
        let format: Vec<u8> = if u.ratio(1, 16)? {
            u.arbitrary()?
        } else {
            FORMAT.to_le_bytes().to_vec()
        };
        meta.insert("magic", magic.as_slice()).expect("insert");
        meta.insert("format", format.as_slice()).expect("insert");
        let mut runs = txn.open_table(RUNS).expect("open");
        let mut inputs = txn.open_table(INPUTS).expect("open");
        let mut outputs = txn.open_table(OUTPUTS).expect("open");
        let mut pending = txn.open_table(PENDING).expect("open");
        let mut branches = txn.open_table(BRANCHES).expect("open");
        let mut slots = txn.open_table(SLOTS).expect("open");
        let mut history = txn.open_table(HISTORY).expect("open");
        let mut timers = txn.open_table(TIMERS).expect("open");
        let mut active = txn.open_table(ACTIVE).expect("open");
        let mut inbox = txn.open_table(INBOX).expect("open");
        let mut cancels = txn.open_table(CANCELS).expect("open");
        let mut map_items = txn.open_table(MAP_ITEMS).expect("open");
        let mut tokens = txn.open_table(TOKENS).expect("open");
        let mut run_deadlines = txn.open_table(RUN_DEADLINES).expect("open");
        let mut generation_inputs = txn.open_table(GENERATION_INPUTS).expect("open");
        let rows = u.int_in_range(0..=32)?;
        for _ in 0..rows {
            if u.is_empty() {
                break;
            }
            let run = text(u, RUN_IDS)?;
            let run = run.as_str();
            match u.int_in_range(0..=14)? {
                0 => {
                    let v = value(u, |u| {
                        let workflow = text(u, &[fuzz_flow::NAME])?;
                        let fingerprint = if u.ratio(7, 8)? {
                            fuzz_flow::FINGERPRINT
                        } else {
                            u.arbitrary()?
                        };
                        let parent = if u.ratio(1, 4)? {
                            Some(ParentLink {
                                run_id: text(u, RUN_IDS)?,
                                step: small(u)?,
                                branch: small(u)? as u32,
                            })
                        } else {
                            None
                        };
                        Ok(enc(&RunRecord {
                            workflow,
                            fingerprint,
                            status: status(u)?,
                            pc: small(u)? as u32,
                            steps: small(u)?,
                            started: u.arbitrary()?,
                            created_at_ms: time_ms(u)?,
                            updated_at_ms: time_ms(u)?,
                            parent,
                        }))
                    })?;
                    runs.insert(run, v.as_slice()).expect("insert");
                }
                1 => {
                    let v = value(u, |u| Ok(enc(&u.arbitrary::<u64>()?)))?;
                    if u.arbitrary()? {
                        inputs.insert(run, v.as_slice()).expect("insert");
                    } else {
                        outputs.insert(run, v.as_slice()).expect("insert");
                    }
                }
                2 => {
                    let v = value(u, |u| {
                        let n = u.int_in_range(0..=3)?;
                        let branches = (0..n)
                            .map(|_| branch(u, RUN_IDS))
                            .collect::<arbitrary::Result<Vec<_>>>()?;
                        Ok(enc(&PendingOp {
                            step: small(u)?,
                            state: small(u)? as u32,
                            name: u.arbitrary()?,
                            scheduled_at_ms: time_ms(u)?,
                            join: u.arbitrary()?,
                            branches,
                        }))
                    })?;
                    pending.insert(run, v.as_slice()).expect("insert");
                }
                3 => {
                    let key = (run, small(u)?, small(u)? as u32);
                    let v = value(u, |u| {
                        Ok(enc(&match u.int_in_range(0..=2)? {
                            0 => BranchRecord::Retrying {
                                failed_attempts: edgy(u, &[0, 1, u32::MAX - 1, u32::MAX])?,
                                retry_at_ms: time_ms(u)?,
                            },
                            1 => BranchRecord::Done(task_args(u)?),
                            _ => BranchRecord::Failed(u.arbitrary()?),
                        }))
                    })?;
                    branches.insert(key, v.as_slice()).expect("insert");
                }
                4 => {
                    let key = (run, small(u)? as u32);
                    let v = value(u, |u| Ok(enc(&u.arbitrary::<u64>()?)))?;
                    slots.insert(key, v.as_slice()).expect("insert");
                }
                5 => {
                    let key = (run, small(u)?);
                    let v = value(u, |u| {
                        let kind = match u.int_in_range(0..=2)? {
                            0 => EventKind::StepCompleted {
                                step: small(u)?,
                                output: u.arbitrary()?,
                            },
                            1 => EventKind::RunFailed {
                                error: u.arbitrary()?,
                            },
                            _ => EventKind::CancelRequested,
                        };
                        Ok(enc(&StoredEvent {
                            at_ms: time_ms(u)?,
                            kind,
                        }))
                    })?;
                    history.insert(key, v.as_slice()).expect("insert");
                }
                6 => {
                    timers.insert((time_ms(u)?, run), ()).expect("insert");
                }
                7 | 8 => {
                    active.insert(run, ()).expect("insert");
                }
                9 => {
                    let key = (run, small(u)?);
                    let v = value(u, |u| {
                        Ok(enc(&(text(u, &["go"])?, enc(&u.arbitrary::<u64>()?))))
                    })?;
                    inbox.insert(key, v.as_slice()).expect("insert");
                }
                10 => {
                    cancels.insert(run, ()).expect("insert");
                }
                11 => {
                    let key = (run, small(u)?, small(u)? as u32);
                    let v = value(u, |u| {
                        Ok(enc(&OpRequest::Task {
                            name: text(u, &[fuzz_step::NAME])?,
                            args: task_args(u)?,
                            policy: policy(u)?,
                        }))
                    })?;
                    map_items.insert(key, v.as_slice()).expect("insert");
                }
                12 => {
                    let token: String = u.arbitrary()?;
                    let v = value(u, |u| {
                        Ok(enc(&TokenRecord {
                            run_id: text(u, RUN_IDS)?,
                            step: small(u)?,
                            branch: small(u)? as u32,
                            used: u.arbitrary()?,
                        }))
                    })?;
                    tokens.insert(token.as_str(), v.as_slice()).expect("insert");
                }
                13 => {
                    run_deadlines.insert(run, time_ms(u)?).expect("insert");
                }
                _ => {
                    let v = value(u, |u| Ok(enc(&u.arbitrary::<u64>()?)))?;
                    generation_inputs.insert(run, v.as_slice()).expect("insert");
                }
            }
        }
    }
    txn.commit().expect("commit");
    drop(db);
    let bytes = shared.0.read().unwrap().clone();
    Ok(bytes)
}

/// For `Arbitrary`-driven callers: a journal image and how to open it.
#[derive(Debug)]
pub enum Journal {
    /// The input bytes, as the whole file.
    Raw(Vec<u8>),
    /// A well-formed redb file with fuzzer-chosen flow rows.
    Structured(Vec<u8>),
}

impl<'a> Arbitrary<'a> for Journal {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if u.ratio(1, 4)? {
            Ok(Journal::Raw(u.arbitrary()?))
        } else {
            Ok(Journal::Structured(structured(u)?))
        }
    }
}

/// A journal holding one run of [`fuzz_flow`] (`"r"`) awaiting the task call
/// `fuzz_step(x)` under `policy`, with `failed_attempts` earlier attempts already failed
/// (their retry due now) and, if given, a history event at `history_seq`: for regression
/// inputs that need a driver to act on the records.
pub fn task_run(
    policy: TaskPolicy,
    x: u64,
    failed_attempts: Option<u32>,
    history_seq: Option<u64>,
) -> Vec<u8> {
    let shared = SharedBackend::default();
    let db = Database::builder()
        .create_with_backend(shared.clone())
        .expect("create an in-memory redb database");
    let txn = db.begin_write().expect("begin_write");
    {
        let mut meta = txn.open_table(META).expect("open");
        meta.insert("magic", b"flow journal".as_slice())
            .expect("insert");
        meta.insert("format", FORMAT.to_le_bytes().as_slice())
            .expect("insert");
        let header = RunRecord {
            workflow: fuzz_flow::NAME.into(),
            fingerprint: fuzz_flow::FINGERPRINT,
            status: StoredStatus::Running,
            pc: 1,
            steps: 1,
            started: true,
            created_at_ms: 0,
            updated_at_ms: 0,
            parent: None,
        };
        let op = PendingOp {
            step: 0,
            state: 0,
            name: "fuzz_step".into(),
            scheduled_at_ms: 0,
            join: false,
            branches: vec![Branch::Task {
                name: fuzz_step::NAME.into(),
                args: enc(&x),
                policy,
            }],
        };
        let mut runs = txn.open_table(RUNS).expect("open");
        runs.insert("r", enc(&header).as_slice()).expect("insert");
        let mut inputs = txn.open_table(INPUTS).expect("open");
        inputs.insert("r", enc(&x).as_slice()).expect("insert");
        let mut pending = txn.open_table(PENDING).expect("open");
        pending.insert("r", enc(&op).as_slice()).expect("insert");
        let mut branches = txn.open_table(BRANCHES).expect("open");
        if let Some(failed_attempts) = failed_attempts {
            let record = BranchRecord::Retrying {
                failed_attempts,
                retry_at_ms: 0,
            };
            branches
                .insert(("r", 0, 0), enc(&record).as_slice())
                .expect("insert");
        }
        let mut active = txn.open_table(ACTIVE).expect("open");
        active.insert("r", ()).expect("insert");
        txn.open_table(OUTPUTS).expect("open");
        txn.open_table(SLOTS).expect("open");
        let mut history = txn.open_table(HISTORY).expect("open");
        if let Some(seq) = history_seq {
            let event = StoredEvent {
                at_ms: 0,
                kind: EventKind::CancelRequested,
            };
            history
                .insert(("r", seq), enc(&event).as_slice())
                .expect("insert");
        }
        txn.open_table(TIMERS).expect("open");
        txn.open_table(INBOX).expect("open");
        txn.open_table(CANCELS).expect("open");
        txn.open_table(MAP_ITEMS).expect("open");
        txn.open_table(TOKENS).expect("open");
        txn.open_table(RUN_DEADLINES).expect("open");
        txn.open_table(GENERATION_INPUTS).expect("open");
    }
    txn.commit().expect("commit");
    drop(db);
    let bytes = shared.0.read().unwrap().clone();
    bytes
}

/// One well-formed record of each mirrored kind, with the name of the store decoder
/// (`flow::fuzz_hooks::decode_stored`) that must accept it: guards the mirrors above
/// against drifting from the engine's records.
pub fn mirror_samples() -> Vec<(&'static str, Vec<u8>)> {
    let header = RunRecord {
        workflow: fuzz_flow::NAME.into(),
        fingerprint: fuzz_flow::FINGERPRINT,
        status: StoredStatus::Failed("boom".into()),
        pc: 1,
        steps: 2,
        started: true,
        created_at_ms: 3,
        updated_at_ms: 4,
        parent: Some(ParentLink {
            run_id: "p".into(),
            step: 5,
            branch: 6,
        }),
    };
    let op = PendingOp {
        step: 1,
        state: 2,
        name: "join(4)".into(),
        scheduled_at_ms: 3,
        join: true,
        branches: vec![
            Branch::Task {
                name: fuzz_step::NAME.into(),
                args: enc(&7u64),
                policy: TaskPolicy::default(),
            },
            Branch::Sleep { until_ms: 8 },
            Branch::Signal {
                name: "go".into(),
                timeout: Some(Duration::from_secs(1)),
                deadline_ms: Some(9),
            },
            Branch::Child {
                run_id: "c".into(),
                workflow: fuzz_flow::NAME.into(),
            },
        ],
    };
    let token = TokenRecord {
        run_id: "r".into(),
        step: 1,
        branch: 2,
        used: false,
    };
    let event = StoredEvent {
        at_ms: 1,
        kind: EventKind::StepCompleted {
            step: 0,
            output: vec![1],
        },
    };
    vec![
        ("run header", enc(&header)),
        ("pending step", enc(&op)),
        (
            "branch record",
            enc(&BranchRecord::Retrying {
                failed_attempts: 1,
                retry_at_ms: 2,
            }),
        ),
        ("branch record", enc(&BranchRecord::Done(vec![1]))),
        ("branch record", enc(&BranchRecord::Failed("x".into()))),
        ("callback token", enc(&token)),
        ("history event", enc(&event)),
        (
            "history events",
            enc(&StoredEvents {
                at_ms: 1,
                kinds: vec![event.kind.clone(), EventKind::CancelRequested],
            }),
        ),
        ("inbox message", enc(&("go".to_string(), enc(&1u64)))),
    ]
}
