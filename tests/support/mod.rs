//! The workspace's one test support module: temp journals in scratch dirs removed when a
//! test passes (`ScratchDir`, `TempJournal`), crash-and-reopen loops (`Commits`,
//! `halting`), waiting for a condition (`eventually`); and, for the crash-safety tests
//! (`tests/crash.rs`, `tests/power_loss.rs`), the mixed workload, the execution log its
//! tasks write, journal inspection and the checks that prove a journal is consistent with
//! an uninterrupted run.
#![allow(dead_code)]

pub mod exec_log;
pub mod flaky;
pub mod journal;
pub mod rng;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flow::{Engine, EngineBuilder};

/// True when the long torture mode is asked for (`FLOW_TORTURE=1`).
pub fn torture() -> bool {
    std::env::var("FLOW_TORTURE").is_ok_and(|v| v == "1")
}

/// A numeric knob from the environment, with a default.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A fresh, empty directory under the system temp dir, removed on drop unless the test
/// failed (then it is kept for post-mortem and its path is printed).
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Tests of one process run in parallel: the counter keeps their dirs apart even
        // when the clock does not.
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("flow-{label}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The path of a journal named `name` in this dir, with neither it nor its log there.
    pub fn journal(&self, name: &str) -> PathBuf {
        let path = self.file(&format!("{name}.redb"));
        Engine::remove_journal(&path).expect("remove an old journal");
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept scratch dir for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One journal in its own scratch dir (so its write-ahead log goes with it).
pub struct TempJournal {
    dir: ScratchDir,
    path: PathBuf,
}

impl TempJournal {
    pub fn new(label: &str) -> Self {
        let dir = ScratchDir::new(label);
        let path = dir.journal("journal");
        TempJournal { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The durable transitions an engine committed, counted by its `on_commit` hook.
#[derive(Clone, Default)]
pub struct Commits(Arc<AtomicU64>);

impl Commits {
    /// `builder` with a hook that counts into a new counter.
    pub fn counting(builder: EngineBuilder) -> (EngineBuilder, Commits) {
        let commits = Commits::default();
        let counter = commits.0.clone();
        let builder = builder.on_commit(move |total| counter.store(total, Ordering::SeqCst));
        (builder, commits)
    }

    /// Transitions committed so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits until `k` transitions are committed or `limit` passed; returns the count.
    pub async fn wait_for(&self, k: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        while self.get() < k && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.get()
    }
}

/// A crash at commit `k`: `builder` freezes right after its `k`-th durable transition, as
/// if its process died, and counts its commits; reopen the journal to recover.
pub fn halting(builder: EngineBuilder, k: u64) -> (EngineBuilder, Commits) {
    Commits::counting(builder.halt_after_commits(k))
}

/// Waits (up to 5 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
