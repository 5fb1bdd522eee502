//! A quick, deterministic version of the fuzz targets in `fuzz/` (always run): random and
//! mutated byte strings through every decoder of stored data, and garbage or damaged
//! journal files opened by an engine. Nothing may panic (in any thread) and every error
//! must be a `FlowError` with a message.
//!
//! With `FLOW_TORTURE=1` it also runs `fuzz/run.sh` (real coverage-guided fuzzing, a
//! bounded time per target) when `cargo fuzz` is installed, and says so when it is not.

#[path = "../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;
mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use flow::codec::encode;
use flow::{EventKind, HistoryEvent, OpRequest, RunStatus, RunSummary, TaskPolicy};
use harness::{decode_all, fuzz_flow, install_panic_policy, open_bytes_as_file, take_panics};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use support::ScratchDir;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_f10e),
        ..Config::default()
    }
}

/// Well-formed encodings of the stored public types, to mutate.
fn samples() -> &'static [Vec<u8>] {
    static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let request = OpRequest::All(vec![
            OpRequest::Task {
                name: "crate::charge".into(),
                args: vec![1, 2, 3],
                policy: TaskPolicy::default(),
            },
            OpRequest::Sleep { until_ms: 1 << 40 },
            OpRequest::Signal {
                name: "approve".into(),
                timeout: Some(Duration::from_secs(5)),
            },
            OpRequest::Child {
                workflow: "crate::child".into(),
                input: vec![7],
            },
        ]);
        let what = || String::from("sample");
        vec![
            encode(
                &HistoryEvent {
                    seq: 3,
                    at_ms: 1_700_000_000_000,
                    kind: EventKind::StepScheduled {
                        step: 1,
                        state: 2,
                        name: "join(4)".into(),
                        request: request.clone(),
                    },
                },
                what,
            )
            .unwrap(),
            encode(
                &EventKind::AttemptFailed {
                    step: 0,
                    branch: 1,
                    attempt: 2,
                    error: "boom".into(),
                    retry_at_ms: Some(5),
                },
                what,
            )
            .unwrap(),
            encode(&request, what).unwrap(),
            encode(
                &RunSummary {
                    run_id: "order-1".into(),
                    workflow: "crate::place_order".into(),
                    version: 1,
                    status: RunStatus::Failed {
                        error: "declined".into(),
                    },
                    created_at_ms: 1,
                    updated_at_ms: 2,
                    steps: 3,
                },
                what,
            )
            .unwrap(),
            encode(
                &RunStatus::Blocked {
                    reason: "not registered".into(),
                },
                what,
            )
            .unwrap(),
            encode(&TaskPolicy::default(), what).unwrap(),
            encode(&("signal".to_string(), vec![1u8, 2]), what).unwrap(),
        ]
    })
}

/// Byte-level edits, as a mutation-based fuzzer makes them.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Flip(i, bit) if len > 0 => bytes[i % len] ^= 1 << bit,
            Edit::Set(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// An in-place change of one byte (the file keeps its length, so redb's layout checks
/// pass and the damage reaches pages and records): flip a bit or set a byte, at a byte
/// that is not zero (zeros are mostly unused page space) or anywhere.
fn in_place_edit() -> impl Strategy<Value = (bool, prop::sample::Index, Edit)> {
    (any::<bool>(), any::<prop::sample::Index>(), edit()).prop_map(|(live, at, edit)| {
        let edit = match edit {
            Edit::Set(_, b) | Edit::Insert(_, b) => Edit::Set(0, b),
            Edit::Flip(_, bit) => Edit::Flip(0, bit),
            Edit::Remove(_) | Edit::Truncate(_) => Edit::Set(0, 0xff),
        };
        (live, at, edit)
    })
}

fn damage_in_place(journal: &[u8], edits: &[(bool, prop::sample::Index, Edit)]) -> Vec<u8> {
    let live: Vec<usize> = (0..journal.len()).filter(|&i| journal[i] != 0).collect();
    let mut bytes = journal.to_vec();
    for (on_live, at, edit) in edits {
        let i = if *on_live && !live.is_empty() {
            live[at.index(live.len())]
        } else {
            at.index(bytes.len())
        };
        match *edit {
            Edit::Flip(_, bit) => bytes[i] ^= 1 << bit,
            Edit::Set(_, b) => bytes[i] = b,
            _ => {}
        }
    }
    bytes
}

fn assert_no_panics() {
    let panics = take_panics();
    assert!(panics.is_empty(), "panicked: {panics:?}");
}

proptest! {
    #![proptest_config(config(1000))]

    /// Random bytes through every decoder.
    #[test]
    fn decoders_take_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        install_panic_policy(false);
        decode_all(&bytes);
        assert_no_panics();
    }

    /// Well-formed records with a few bytes changed, through every decoder.
    #[test]
    fn decoders_take_mutated_records(
        sample in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        install_panic_policy(false);
        let samples = samples();
        let bytes = apply(samples[sample.index(samples.len())].clone(), &edits);
        decode_all(&bytes);
        assert_no_panics();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A real journal: runs of `fuzz_flow` that completed, failed after retries, and one
/// still pending (its engine stopped mid-run).
fn real_journal() -> &'static [u8] {
    static JOURNAL: OnceLock<Vec<u8>> = OnceLock::new();
    JOURNAL.get_or_init(|| {
        let dir = ScratchDir::new("fuzz-smoke-real");
        let path = dir.file("real.redb");
        runtime().block_on(async {
            let engine = harness::builder().open(&path).await.unwrap();
            for (id, x) in [("even", 8), ("odd", 3)] {
                let run = engine.start(id, fuzz_flow(x)).await.unwrap();
                let _ = run.result().await;
            }
            engine.start("pending", fuzz_flow(4)).await.unwrap();
            engine.shutdown().await;
        });
        std::fs::read(&path).unwrap()
    })
}

/// A garbage file, a damaged redb header, a damaged or truncated real journal: the
/// engine opens it (and lists, reads histories, drives runs) or refuses it with a
/// `FlowError`; nothing panics.
#[test]
fn engine_opens_garbage_and_damaged_journals() {
    install_panic_policy(false);
    let journal = real_journal();
    let dir = ScratchDir::new("fuzz-smoke-journals");
    let rt = runtime();
    let mut runner = proptest::test_runner::TestRunner::new(config(120));
    let damaged = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
        4 => proptest::collection::vec(in_place_edit(), 1..8)
            .prop_map(|edits| damage_in_place(journal, &edits)),
        1 => (any::<usize>(), proptest::collection::vec(edit(), 0..4)).prop_map(|(cut, edits)| {
            let head = journal[..cut % (journal.len() + 1)].to_vec();
            apply(head, &edits)
        }),
    ];
    let opened = std::cell::Cell::new(0);
    let (runs, errors) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&damaged, |bytes| {
            let out = rt.block_on(open_bytes_as_file(
                &bytes,
                &dir.path,
                Duration::from_millis(2),
            ));
            opened.set(opened.get() + usize::from(out.opened));
            runs.set(runs.get() + out.runs);
            errors.set(errors.get() + out.errors);
            assert_no_panics();
            Ok(())
        })
        .unwrap();
    println!(
        "{} damaged journals ({} bytes undamaged): {} opened, {} runs listed, {} errors, \
         {} redb panics contained",
        120,
        journal.len(),
        opened.get(),
        runs.get(),
        errors.get(),
        harness::REDB_PANICS.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        opened.get() > 0,
        "no damaged journal opened at all: the mutations are too coarse"
    );
}

/// A real journal and its write-ahead log as a killed engine leaves them (copied while
/// the engine ran, after runs whose changes are in the log only).
fn real_journal_and_log() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = ScratchDir::new("fuzz-smoke-killed");
        let path = dir.file("killed.redb");
        let log = dir.file("killed.redb-wal");
        let files = runtime().block_on(async {
            let engine = harness::builder().open(&path).await.unwrap();
            for (id, x) in [("even", 8), ("odd", 3)] {
                let run = engine.start(id, fuzz_flow(x)).await.unwrap();
                let _ = run.result().await;
            }
            engine.start("pending", fuzz_flow(4)).await.unwrap();
            let files = (std::fs::read(&path).unwrap(), std::fs::read(&log).unwrap());
            engine.shutdown().await;
            files
        });
        files
    })
}

/// A damaged, truncated or garbage write-ahead log beside an intact journal: the engine
/// replays what is whole of it and opens, or refuses it with a `FlowError`; nothing
/// panics. Undamaged, the log brings back every run.
#[test]
fn engine_opens_journals_with_damaged_logs() {
    install_panic_policy(false);
    let (journal, log) = real_journal_and_log();
    let dir = ScratchDir::new("fuzz-smoke-logs");
    let rt = runtime();
    let whole = rt.block_on(harness::open_bytes_with_log(
        journal,
        log,
        &dir.path,
        Duration::ZERO,
    ));
    assert_eq!(whole.runs, 3, "the log replays every run");
    let mut runner = proptest::test_runner::TestRunner::new(config(60));
    let damaged = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..8192),
        4 => proptest::collection::vec(in_place_edit(), 1..8)
            .prop_map(|edits| damage_in_place(log, &edits)),
        2 => (any::<usize>(), proptest::collection::vec(edit(), 0..4)).prop_map(|(cut, edits)| {
            let head = log[..cut % (log.len() + 1)].to_vec();
            apply(head, &edits)
        }),
    ];
    let opened = std::cell::Cell::new(0);
    runner
        .run(&damaged, |bytes| {
            let out = rt.block_on(harness::open_bytes_with_log(
                journal,
                &bytes,
                &dir.path,
                Duration::from_millis(2),
            ));
            opened.set(opened.get() + usize::from(out.opened));
            assert_no_panics();
            Ok(())
        })
        .unwrap();
    assert!(opened.get() > 0, "no journal with a damaged log opened");
}

/// `FLOW_TORTURE=1`: coverage-guided fuzzing of both targets for a bounded time each
/// (`FLOW_FUZZ_SECONDS`, default 30), if `cargo fuzz` is installed.
#[test]
fn cargo_fuzz_in_torture_mode() {
    if std::env::var("FLOW_TORTURE").as_deref() != Ok("1") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let has_cargo_fuzz = std::process::Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        println!(
            "note: cargo-fuzz is not installed, so fuzz/run.sh was skipped \
             (`cargo install cargo-fuzz` to run it)"
        );
        return;
    }
    let status = std::process::Command::new("bash")
        .arg(root.join("fuzz/run.sh"))
        .current_dir(&root)
        .status()
        .expect("run fuzz/run.sh");
    assert!(
        status.success(),
        "fuzz/run.sh found a crash: see fuzz/artifacts/"
    );
}
