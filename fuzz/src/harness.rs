//! What the fuzz targets and `tests/fuzz_smoke.rs` run on untrusted bytes.
//!
//! This file uses only `flow`, `tokio` and std, so the main workspace's smoke test can
//! include it with `#[path]` and exercise exactly the paths the fuzzers do.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use flow::codec::decode;
use flow::{
    Engine, EngineBuilder, EventKind, FlowError, HistoryEvent, OpRequest, RunStatus, RunSummary,
    TaskPolicy,
};

/// Panics seen outside redb since [`install_panic_policy`] (message and location).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Panics raised inside redb (on a damaged page); the engine catches these and reports
/// `FlowError::Corrupt`, so they are counted, not failures.
pub static REDB_PANICS: AtomicU64 = AtomicU64::new(0);

/// Replaces the panic hook (libFuzzer's aborts on every panic): a panic raised inside
/// redb's own code is let through silently, since flow catches those at its redb
/// boundary and turns them into [`FlowError::Corrupt`]; any other panic (in flow, in a
/// spawned driver task, anywhere) is recorded and, if `abort` is set, aborts the process
/// so the fuzzer reports the input.
pub fn install_panic_policy(abort: bool) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| l.file().to_string());
            if location.as_deref().is_some_and(is_redb_source) {
                REDB_PANICS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            PANICS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{message} at {location:?}"));
            default(info);
            if abort {
                std::process::abort();
            }
        }));
    });
}

fn is_redb_source(file: &str) -> bool {
    file.contains("/redb-") || file.contains("\\redb-")
}

/// The panics recorded outside redb so far (drained).
pub fn take_panics() -> Vec<String> {
    std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Panics unless `error` says something.
pub fn check_error(what: &str, error: &FlowError) {
    let text = error.to_string();
    assert!(!text.trim().is_empty(), "{what}: empty error message");
    let _ = format!("{error:?}");
}

/// Runs `bytes` through every decoder of stored data reachable from the public API
/// (`flow::codec::decode` at each stored type, `flow::codec::to_json`, and the journal's
/// own record decoders);
/// returns how many accepted the bytes. Panics only if an error has no message.
pub fn decode_all(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    let mut note = |what: &str, result: Result<(), FlowError>| match result {
        Ok(()) => accepted += 1,
        Err(e) => check_error(what, &e),
    };
    note(
        "HistoryEvent",
        decode::<HistoryEvent>(bytes, || "history event".into())
            .map(|e| drop(format!("{e:?}")))
            .map_err(FlowError::from),
    );
    note(
        "EventKind",
        decode::<EventKind>(bytes, || "event kind".into())
            .map(|e| drop(format!("{e:?}")))
            .map_err(FlowError::from),
    );
    note(
        "OpRequest",
        decode::<OpRequest>(bytes, || "operation request".into())
            .map(|op| drop(op.label()))
            .map_err(FlowError::from),
    );
    note(
        "RunStatus",
        decode::<RunStatus>(bytes, || "run status".into())
            .map(|s| drop((s.to_string(), s.is_finished())))
            .map_err(FlowError::from),
    );
    note(
        "RunSummary",
        decode::<RunSummary>(bytes, || "run summary".into())
            .map(|s| drop(s.status.to_string()))
            .map_err(FlowError::from),
    );
    note(
        "TaskPolicy",
        decode::<TaskPolicy>(bytes, || "task policy".into())
            .map(|p| drop(format!("{p:?}")))
            .map_err(FlowError::from),
    );
    // User values: any stored value renders as JSON or is refused with a message; race
    // winners check their index.
    note(
        "to_json",
        flow::codec::to_json(bytes)
            .map(drop)
            .map_err(FlowError::from),
    );
    note(
        "Either",
        decode::<flow::Either<u64, String>>(bytes, || "race winner".into())
            .map(drop)
            .map_err(FlowError::from),
    );
    note(
        "OneOf3",
        decode::<flow::OneOf3<(), Vec<u8>, Option<i32>>>(bytes, || "race winner".into())
            .map(drop)
            .map_err(FlowError::from),
    );
    for (what, result) in flow::fuzz_hooks::decode_stored(bytes) {
        note(what, result);
    }
    accepted
}

/// The outcome of opening an engine on untrusted bytes.
#[derive(Debug, Default)]
pub struct Inspected {
    /// The engine opened (the file was empty, or a flow journal).
    pub opened: bool,
    /// Runs listed.
    pub runs: usize,
    /// History events read.
    pub events: usize,
    /// Errors returned (each checked to have a message).
    pub errors: usize,
}

/// A fuzzer-registered workflow: one task, a retry, a sleep; so that stored runs of it
/// are driven (their pending steps, branch records and slots decoded and acted on).
#[flow::task(retry(max_attempts = 2, initial = "1ms"))]
pub async fn fuzz_step(x: u64) -> Result<u64, String> {
    if x & 1 == 0 {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

/// See [`fuzz_step`].
#[flow::workflow]
pub async fn fuzz_flow(x: u64) -> Result<u64, String> {
    let half = fuzz_step(x).await?;
    flow::sleep(Duration::from_millis(1)).await;
    let quarter = fuzz_step(half).await?;
    Ok(quarter)
}

/// An engine builder with [`fuzz_flow`] registered and a small page cache.
pub fn builder() -> EngineBuilder {
    Engine::builder()
        .register::<fuzz_flow>()
        .cache_size(1 << 20)
}

/// Lists every run of an opened engine, reads each one's status and history, lets its
/// drivers run for `settle`, reads again, and shuts the engine down.
pub async fn inspect(opened: Result<Engine, FlowError>, settle: Duration) -> Inspected {
    let mut out = Inspected::default();
    let engine = match opened {
        Ok(engine) => engine,
        Err(e) => {
            check_error("open", &e);
            out.errors += 1;
            return out;
        }
    };
    out.opened = true;
    for round in 0..2 {
        if round == 1 {
            if settle.is_zero() || out.runs == 0 {
                break;
            }
            tokio::time::sleep(settle).await;
        }
        match engine.list().await {
            Ok(runs) => {
                out.runs = runs.len();
                for run in runs.iter().take(16) {
                    match engine.status(&run.run_id).await {
                        Ok(status) => drop(status.to_string()),
                        Err(e) => {
                            check_error("status", &e);
                            out.errors += 1;
                        }
                    }
                    match engine.history(&run.run_id).await {
                        Ok(events) => out.events += events.len(),
                        Err(e) => {
                            check_error("history", &e);
                            out.errors += 1;
                        }
                    }
                }
            }
            Err(e) => {
                check_error("list", &e);
                out.errors += 1;
            }
        }
    }
    engine.shutdown().await;
    out
}

/// A fresh path for a journal file under `dir`.
pub fn temp_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("fuzz-{}-{n}.redb", std::process::id()))
}

/// Writes `bytes` as a file and opens an engine on it (the engine's own file path, with
/// its read-only inspection first); the file is removed afterwards.
pub async fn open_bytes_as_file(bytes: &[u8], dir: &Path, settle: Duration) -> Inspected {
    open_files(bytes, None, dir, settle).await
}

/// Writes `journal` as a file and `log` as its write-ahead log beside it, and opens an
/// engine on them (the log is replayed first); both files are removed afterwards.
pub async fn open_bytes_with_log(
    journal: &[u8],
    log: &[u8],
    dir: &Path,
    settle: Duration,
) -> Inspected {
    open_files(journal, Some(log), dir, settle).await
}

async fn open_files(journal: &[u8], log: Option<&[u8]>, dir: &Path, settle: Duration) -> Inspected {
    let path = temp_path(dir);
    let log_path = path.with_extension("redb-wal");
    std::fs::write(&path, journal).expect("write the fuzz input");
    if let Some(log) = log {
        std::fs::write(&log_path, log).expect("write the fuzz input");
    }
    let out = inspect(builder().open(&path).await, settle).await;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&log_path);
    out
}
