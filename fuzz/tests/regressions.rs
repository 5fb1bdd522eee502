//! What the fuzzers found, replayed as tests: the inputs saved under `fuzz/regressions/`
//! (named `TARGET-what`), and the same defects rebuilt as small journals.
//!
//! Each test that still fails on the engine is `#[ignore]`d (some take the whole test
//! binary down: a stack overflow aborts). Check a fix with
//! `cargo test --manifest-path fuzz/Cargo.toml -- --ignored --test-threads=1`, then drop
//! the `#[ignore]`. The defects described below are fixed (depth limit on decoded
//! `OpRequest`s, checked step/attempt/sequence counters, saturating delays); the tests
//! keep them fixed.

use std::path::PathBuf;
use std::time::Duration;

use flow::{RetryPolicy, TaskPolicy};
use flow_fuzz::harness::{builder, decode_all, inspect, install_panic_policy, take_panics};
use flow_fuzz::journal::{mirror_samples, preloaded_backend, task_run};

/// Opens an engine on `bytes`, lets it drive its runs for a while; returns the panics.
fn drive(bytes: Vec<u8>) -> Vec<String> {
    install_panic_policy(false);
    take_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opened = builder()
            .backend(preloaded_backend(&bytes))
            .open_in_memory()
            .await;
        inspect(opened, Duration::from_millis(200)).await;
    });
    drop(rt);
    take_panics()
}

fn saved(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut inputs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    inputs.sort();
    inputs
}

/// The fuzzers' hand-written mirrors of the journal's records still match the engine's.
#[test]
fn mirrored_records_decode_as_the_engine_reads_them() {
    for (what, bytes) in mirror_samples() {
        let results = flow::fuzz_hooks::decode_stored(&bytes);
        let (_, result) = results.iter().find(|(name, _)| *name == what).unwrap();
        assert!(result.is_ok(), "mirrored {what} refused: {result:?}");
    }
}

/// The mirrored journal is one the engine opens and reads: its format, table types and
/// sealed values match the engine's.
#[test]
fn a_mirrored_journal_opens_with_its_run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bytes = task_run(TaskPolicy::default(), 3, None, None);
        let engine = builder()
            .backend(preloaded_backend(&bytes))
            .open_in_memory()
            .await
            .unwrap();
        let runs = engine.list().await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        engine.history("r").await.unwrap();
        engine.shutdown().await;
    });
}

#[test]
fn a_well_formed_task_run_is_driven_without_panics() {
    let panics = drive(task_run(TaskPolicy::default(), 3, None, None));
    assert!(panics.is_empty(), "{panics:?}");
}

/// Found by reasoning, confirmed here: a history row whose `StepScheduled` request is a
/// join nested a few thousand deep overflows the stack of the thread decoding it
/// (`OpRequest`'s derived `Deserialize` recurses once per level; ~1,500 levels = 3 KB of
/// input suffice in a debug build on a 2 MiB tokio worker, ~4,500 in release). The
/// process aborts: `Engine::history` on a hostile journal kills the program.
#[test]
fn saved_decode_records_inputs() {
    for (name, bytes) in saved("decode_records-") {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || decode_all(&bytes))
            .unwrap()
            .join()
            .unwrap_or_else(|_| panic!("{name} panicked"));
    }
}

/// Journals (`open_file-*.redb`, made from `open_file` crash inputs, kept beside them as
/// `*.input`, with the `journal_image` example) opened and driven by an engine.
///
/// `open_file-run-steps-u64-max.redb`: a run header whose `steps` is `u64::MAX`; when the
/// run schedules its next step, `step + 1` (flow-runtime/src/engine/step.rs, `step_run`)
/// overflows: a panic in the run's driver task in debug builds (the run stalls), a wrap
/// to step 0 in release builds (step numbers, idempotency keys and branch rows collide
/// with the run's first step).
///
/// `open_file-history-seq-u64-max.redb`: see [`history_seq_at_u64_max`].
#[test]
fn saved_open_file_inputs() {
    for (name, bytes) in saved("open_file-") {
        if name.ends_with(".redb") {
            let panics = drive(bytes);
            assert!(panics.is_empty(), "{name}: {panics:?}");
        }
    }
}

/// A history row keyed at seq `u64::MAX` (found by `open_file`, twice): the next append
/// computes `last + 1` (flow-runtime/src/store/txn_tables.rs, `append_events`): a panic in
/// debug builds (caught by the commit thread, reported as a corrupt journal), a wrap to
/// seq 0 in release builds, where the insert overwrites the run's first history event.
#[test]
fn history_seq_at_u64_max() {
    let panics = drive(task_run(TaskPolicy::default(), 4, None, Some(u64::MAX)));
    assert!(panics.is_empty(), "{panics:?}");
}

/// A stored policy whose intervals are near `Duration::MAX`: after a failed attempt,
/// `RetryPolicy::delay_after` (flow-runtime/src/task.rs) calls `Duration::from_secs_f64`
/// on 2^64 s, which panics in the run's driver task (the run then stalls silently).
#[test]
fn huge_retry_intervals_in_a_stored_policy() {
    let policy = TaskPolicy {
        retry: RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::MAX,
            max_interval: Duration::MAX,
            ..RetryPolicy::default()
        },
        timeout: None,
    };
    let panics = drive(task_run(policy, 3, None, None));
    assert!(panics.is_empty(), "{panics:?}");
}

/// A stored policy with a huge jitter: `jittered_delay_after` overflows
/// `Duration::from_secs_f64` when the random spread is positive (half the attempts).
#[test]
fn huge_jitter_in_a_stored_policy() {
    let policy = TaskPolicy {
        retry: RetryPolicy {
            max_attempts: 5,
            jitter: 1e300,
            ..RetryPolicy::default()
        },
        timeout: None,
    };
    let mut panics = Vec::new();
    for _ in 0..8 {
        panics.extend(drive(task_run(policy.clone(), 3, None, None)));
    }
    assert!(panics.is_empty(), "{panics:?}");
}

/// A branch record `Retrying { failed_attempts: u32::MAX }`: the driver's next attempt
/// number `failed + 1` (flow-runtime/src/engine/driver/settle.rs) overflows: a panic in the
/// driver task in debug builds, attempt number 0 in release builds.
#[test]
fn failed_attempts_at_u32_max_in_a_branch_record() {
    let panics = drive(task_run(TaskPolicy::default(), 3, Some(u32::MAX), None));
    assert!(panics.is_empty(), "{panics:?}");
}
