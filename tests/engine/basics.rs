//! Starting runs, results, recovery after a halt, retries, timeouts, panics, history.

use flow::{Engine, EventKind, FlowError, RunStatus};

use crate::support::TempJournal;
use crate::workflows::*;

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<pipeline>()
        .register::<call_flaky>()
        .register::<call_slow>()
        .register::<call_boom>()
        .register::<call_plain_boom>()
        .register::<panics>()
}

#[tokio::test]
async fn start_runs_to_completion() {
    let journal = TempJournal::new("complete");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine
        .start("p-1", pipeline("complete".into(), 1))
        .await
        .unwrap();
    // a = 2, b = 3, c = 6
    assert_eq!(run.result().await.unwrap(), 11);
    assert_eq!(runs("complete"), 3);
    assert_eq!(run.status().await.unwrap(), RunStatus::Completed);

    // Idempotency keys are "{run}/{step}" and stable per call.
    let keys: Vec<String> = contexts("complete")
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    assert_eq!(keys, ["p-1/0", "p-1/1", "p-1/2"]);
    engine.shutdown().await;
}

#[tokio::test]
async fn result_of_a_run_finished_before_a_restart() {
    let journal = TempJournal::new("finished");
    let engine = builder().open(journal.path()).await.unwrap();
    engine
        .start("p", pipeline("finished".into(), 5))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;

    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.handle::<pipeline>("p").unwrap();
    assert_eq!(run.result().await.unwrap(), 6 + 7 + 14);
    assert_eq!(runs("finished"), 3, "nothing reran");
    assert!(matches!(
        engine.handle::<call_flaky>("p"),
        Err(FlowError::WrongWorkflow { .. })
    ));
    assert!(matches!(
        engine.handle::<pipeline>("nope"),
        Err(FlowError::UnknownRun { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn halted_engine_resumes_on_reopen_without_rerunning_committed_steps() {
    let journal = TempJournal::new("halt");
    // Commit 1: the start (schedules step 0). Commit 2: step 0's result (schedules step 1).
    let engine = builder()
        .halt_after_commits(2)
        .open(journal.path())
        .await
        .unwrap();
    let run = engine.start("h", pipeline("halt".into(), 1)).await.unwrap();
    assert!(matches!(
        run.result().await,
        Err(FlowError::EngineStopped { .. })
    ));
    assert_eq!(runs("halt"), 1, "the halt stops before step 1 starts");
    drop(run);
    engine.shutdown().await;

    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.handle::<pipeline>("h").unwrap();
    assert_eq!(run.result().await.unwrap(), 11);
    assert_eq!(runs("halt"), 3, "step 0 ran once, steps 1 and 2 once each");
    engine.shutdown().await;
}

#[tokio::test]
async fn interrupted_attempt_runs_again_with_the_same_key() {
    let journal = TempJournal::new("interrupt");
    // Only the start commits: the first task attempt runs, its result is never written.
    let engine = builder()
        .halt_after_commits(1)
        .open(journal.path())
        .await
        .unwrap();
    engine
        .start("i", pipeline("interrupt".into(), 1))
        .await
        .unwrap();
    engine.shutdown().await;
    let first = contexts("interrupt");

    let engine = builder().open(journal.path()).await.unwrap();
    assert_eq!(
        engine
            .handle::<pipeline>("i")
            .unwrap()
            .result()
            .await
            .unwrap(),
        11
    );
    let all = contexts("interrupt");
    assert_eq!(all.len(), first.len() + 3);
    assert!(all.iter().filter(|c| c.idempotency_key == "i/0").count() >= 1);
    assert_eq!(all.last().unwrap().idempotency_key, "i/2");
    engine.shutdown().await;
}

#[tokio::test]
async fn start_is_idempotent_by_run_id() {
    let engine = builder().open_in_memory().await.unwrap();
    let a = engine
        .start("same", pipeline("idem".into(), 1))
        .await
        .unwrap();
    let b = engine
        .start("same", pipeline("idem".into(), 1))
        .await
        .unwrap();
    assert_eq!(a.result().await.unwrap(), b.result().await.unwrap());
    assert_eq!(
        runs("idem"),
        3,
        "the second start did not start another run"
    );

    let conflict = engine
        .start("same", pipeline("idem".into(), 2))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, FlowError::RunIdConflict { .. }),
        "{conflict}"
    );
    assert!(
        conflict.to_string().contains("different input"),
        "{conflict}"
    );

    let other = engine
        .start("same", call_flaky("idem-x".into(), 0))
        .await
        .unwrap_err();
    assert!(other.to_string().contains("tests::pipeline"), "{other}");
    engine.shutdown().await;
}

#[tokio::test]
async fn retries_with_back_off_then_succeeds() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("r", call_flaky("retry-ok".into(), 2))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(3));
    let attempts: Vec<u32> = contexts("retry-ok").iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(contexts("retry-ok")
        .iter()
        .all(|c| c.idempotency_key == "r/0"));

    let history = run.history().await.unwrap();
    let failures: Vec<(u32, Option<u64>)> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFailed {
                attempt,
                retry_at_ms,
                ..
            } => Some((*attempt, *retry_at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 2);
    // 20 ms, then 40 ms (no jitter): attempt 2 runs at or after the first retry time.
    let (first, second) = (failures[0].1.unwrap(), failures[1].1.unwrap());
    assert!(first >= history[0].at_ms + 20);
    assert!(second >= first + 40);
    let started = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptStarted { .. }))
        .count();
    assert_eq!(started, 3);
    engine.shutdown().await;
}

#[tokio::test]
async fn exhausted_retries_reach_the_workflow_as_err() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("x", call_flaky("exhaust".into(), 10))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err("attempt 3 failed".to_string())
    );
    assert_eq!(runs("exhaust"), 3);
    let last_failure = run
        .history()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::AttemptFailed { retry_at_ms, .. } => Some(retry_at_ms),
            _ => None,
        })
        .next_back();
    assert_eq!(
        last_failure,
        Some(None),
        "the last failure schedules no retry"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn retry_back_off_survives_a_restart() {
    let journal = TempJournal::new("retry-restart");
    // Commit 1: start. Commit 2: attempt 1 failed, retry scheduled.
    let engine = builder()
        .halt_after_commits(2)
        .open(journal.path())
        .await
        .unwrap();
    let run = engine
        .start("rr", call_flaky("retry-restart".into(), 1))
        .await
        .unwrap();
    assert!(matches!(
        run.result().await,
        Err(FlowError::EngineStopped { .. })
    ));
    engine.shutdown().await;
    assert_eq!(runs("retry-restart"), 1);

    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.handle::<call_flaky>("rr").unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(2));
    assert_eq!(runs("retry-restart"), 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn timeout_is_a_failed_attempt() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("t", call_slow("timeout".into(), 5_000))
        .await
        .unwrap();
    let err = run.result().await.unwrap().unwrap_err();
    assert!(err.contains("timed out after 50ms"), "{err}");
    assert_eq!(runs("timeout"), 2, "timed out twice (two attempts)");
    engine.shutdown().await;
}

#[tokio::test]
async fn panicking_task_is_a_failed_attempt() {
    let engine = builder().open_in_memory().await.unwrap();
    let recovers = engine
        .start("b1", call_boom("boom-once".into(), 1))
        .await
        .unwrap();
    assert_eq!(recovers.result().await.unwrap(), Ok(2));

    let exhausted = engine
        .start("b2", call_boom("boom-always".into(), 9))
        .await
        .unwrap();
    let err = exhausted.result().await.unwrap().unwrap_err();
    assert!(err.contains("panicked: boom on attempt 2"), "{err}");

    // A task whose output cannot carry the failure fails the run.
    let plain = engine
        .start("b3", call_plain_boom("plain".into()))
        .await
        .unwrap();
    let err = plain.result().await.unwrap_err();
    assert!(matches!(err, FlowError::RunFailed { .. }), "{err}");
    assert!(err.to_string().contains("plain boom"), "{err}");
    assert!(matches!(
        plain.status().await.unwrap(),
        RunStatus::Failed { .. }
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn panicking_workflow_fails_the_run_not_the_engine() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("wp", panics()).await.unwrap();
    let err = run.result().await.unwrap_err();
    assert!(
        err.to_string().contains("the workflow body panicked"),
        "{err}"
    );
    // The engine still works.
    assert_eq!(
        engine
            .start("ok", pipeline("after-panic".into(), 0))
            .await
            .unwrap()
            .result()
            .await
            .unwrap(),
        1 + 2 + 4
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn history_and_list_show_what_happened() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("hist", pipeline("history".into(), 1))
        .await
        .unwrap();
    run.result().await.unwrap();
    let history = engine.history("hist").await.unwrap();
    let kinds: Vec<&str> = history
        .iter()
        .map(|e| match &e.kind {
            EventKind::RunStarted { .. } => "started",
            EventKind::StepScheduled { .. } => "scheduled",
            EventKind::AttemptStarted { .. } => "attempt",
            EventKind::StepCompleted { .. } => "completed",
            EventKind::RunCompleted { .. } => "run-completed",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "scheduled",
            "attempt",
            "completed",
            "scheduled",
            "attempt",
            "completed",
            "scheduled",
            "attempt",
            "completed",
            "run-completed"
        ]
    );
    assert!(history.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    assert!(matches!(
        &history[1].kind,
        EventKind::StepScheduled { step: 0, state: 0, name, request: flow::OpRequest::Task { .. } }
            if name == "count"
    ));
    assert_eq!(
        history[3].kind,
        EventKind::StepCompleted {
            step: 0,
            output: flow::codec::encode(&2u64, String::new).unwrap()
        }
    );

    let list = engine.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].run_id, "hist");
    assert_eq!(list[0].workflow, "tests::pipeline");
    assert_eq!(list[0].status, RunStatus::Completed);
    assert_eq!(list[0].steps, 3);
    assert!(list[0].updated_at_ms >= list[0].created_at_ms);
    assert!(matches!(
        engine.history("nope").await,
        Err(FlowError::UnknownRun { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn on_commit_counts_every_transition() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let seen = Arc::new(AtomicU64::new(0));
    let hook = seen.clone();
    let engine = builder()
        .on_commit(move |total| {
            hook.store(total, Ordering::SeqCst);
        })
        .open_in_memory()
        .await
        .unwrap();
    engine
        .start("c", pipeline("commits".into(), 1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    // start + one transition per step result
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    engine.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_runs_share_commits() {
    let engine = builder().open_in_memory().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..200 {
        handles.push(
            engine
                .start(format!("m-{i}"), pipeline("many".into(), i))
                .await
                .unwrap(),
        );
    }
    for (i, run) in handles.into_iter().enumerate() {
        let i = i as u64;
        let (a, b) = (i + 1, i + 2);
        assert_eq!(run.result().await.unwrap(), a + b + a + b + 1);
    }
    assert_eq!(engine.list().await.unwrap().len(), 200);
    engine.shutdown().await;
}
