//! Durable sleep, signals, child workflows, joins and cancellation.
//!
//! On a two-worker runtime, where a run that is alone commits on its driver's thread;
//! `basics.rs` and `errors.rs` use current-thread runtimes, where every commit goes
//! through the commit thread.

use std::time::{Duration, Instant};

use flow::{Engine, EventKind, FlowError, RunStatus, SignalTimeout};

use crate::support::{eventually, TempJournal};
use crate::workflows::*;

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<nap>()
        .register::<await_approval>()
        .register::<await_with_timeout>()
        .register::<two_signals>()
        .register::<parent>()
        .register::<pipeline>()
        .register::<fanout>()
        .register::<call_patient>()
        .register::<call_plain_boom>()
        .register::<nap_then_approval>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_resumes_after_the_deadline() {
    let engine = builder().open_in_memory().await.unwrap();
    let started = Instant::now();
    let run = engine.start("nap", nap(80)).await.unwrap();
    assert_eq!(run.status().await.unwrap(), RunStatus::Waiting);
    run.result().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(75));
    let fired = run
        .history()
        .await
        .unwrap()
        .iter()
        .any(|e| matches!(e.kind, EventKind::TimerFired { .. }));
    assert!(fired);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_survives_a_restart() {
    let journal = TempJournal::new("sleep");
    let engine = builder().open(journal.path()).await.unwrap();
    let started = Instant::now();
    engine.start("nap", nap(300)).await.unwrap();
    engine.shutdown().await;

    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.handle::<nap>("nap").unwrap();
    assert_eq!(run.status().await.unwrap(), RunStatus::Waiting);
    run.result().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(295),
        "the stored deadline was honoured"
    );
    engine.shutdown().await;

    // A deadline that passed while no engine ran fires at once on open.
    let engine = builder().open(journal.path()).await.unwrap();
    engine.start("past", nap(50)).await.unwrap();
    engine.shutdown().await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let engine = builder().open(journal.path()).await.unwrap();
    let reopened = Instant::now();
    engine
        .handle::<nap>("past")
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(reopened.elapsed() < Duration::from_millis(1000));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_sent_after_the_wait() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("s", await_approval()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(run.status().await.unwrap(), RunStatus::Waiting);
    // A name the workflow never waits for is refused at send.
    let err = engine
        .signal("s", "other", &"ignored".to_string())
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::UnknownSignal { .. }), "{err}");
    engine
        .signal("s", "approval", &"yes".to_string())
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "yes");
    let history = run.history().await.unwrap();
    let received = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SignalReceived { .. }))
        .count();
    assert_eq!(received, 1, "the refused signal is not in the history");

    let finished = engine
        .signal("s", "approval", &"late".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(finished, FlowError::RunFinished { .. }),
        "{finished}"
    );
    let unknown = engine.signal("nobody", "approval", &1).await.unwrap_err();
    assert!(matches!(unknown, FlowError::UnknownRun { .. }), "{unknown}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_the_wait_are_delivered_in_order_once_each() {
    let engine = builder().open_in_memory().await.unwrap();
    // Sent while the run sleeps: they wait in its inbox.
    let run = engine.start("later", nap_then_approval(60)).await.unwrap();
    engine
        .signal("later", "approval", &"first".to_string())
        .await
        .unwrap();
    engine
        .signal("later", "approval", &"second".to_string())
        .await
        .unwrap();
    assert_eq!(run.status().await.unwrap(), RunStatus::Waiting);
    assert_eq!(run.result().await.unwrap(), "first");

    // Two waits for the same signal in one join take the oldest two, in order.
    let run = engine.start("two", two_signals()).await.unwrap();
    engine.signal("two", "n", &1u32).await.unwrap();
    engine.signal("two", "n", &2u32).await.unwrap();
    // The run may have taken the first two and ended already: then this one is refused.
    match engine.signal("two", "n", &3u32).await {
        Ok(()) | Err(FlowError::RunFinished { .. }) => {}
        Err(other) => panic!("third signal: {other}"),
    }
    assert_eq!(run.result().await.unwrap(), (1, 2));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_in_the_inbox_before_the_run_waits_survives_a_restart() {
    let journal = TempJournal::new("inbox");
    // Commit 1: start (the run waits). Commit 2: the signal. Then halt: not consumed yet.
    let engine = builder()
        .halt_after_commits(2)
        .open(journal.path())
        .await
        .unwrap();
    engine.start("inbox", await_approval()).await.unwrap();
    engine
        .signal("inbox", "approval", &"kept".to_string())
        .await
        .unwrap();
    engine.shutdown().await;

    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.handle::<await_approval>("inbox").unwrap();
    assert_eq!(run.result().await.unwrap(), "kept");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_timeout_outputs_err_and_signal_in_time_outputs_ok() {
    let engine = builder().open_in_memory().await.unwrap();
    let late = engine.start("late", await_with_timeout(40)).await.unwrap();
    assert_eq!(
        late.result().await.unwrap(),
        Err(SignalTimeout {
            signal: "approval".into(),
            after: Duration::from_millis(40)
        })
    );
    let on_time = engine
        .start("on-time", await_with_timeout(5_000))
        .await
        .unwrap();
    engine
        .signal("on-time", "approval", &"ok".to_string())
        .await
        .unwrap();
    assert_eq!(on_time.result().await.unwrap(), Ok("ok".to_string()));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_workflow_output_resumes_the_parent() {
    let journal = TempJournal::new("child");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine
        .start("parent", parent("child".into(), 1))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), 11);
    let child = engine.handle::<pipeline>("parent/0").unwrap();
    assert_eq!(child.result().await.unwrap(), 11);
    match &engine.history("parent/0").await.unwrap()[0].kind {
        EventKind::RunStarted { parent, .. } => assert_eq!(parent.as_deref(), Some("parent")),
        other => panic!("unexpected {other:?}"),
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_workflow_survives_a_restart() {
    let journal = TempJournal::new("child-restart");
    // 1: parent start (creates the child). 2: child's first step. 3: child's step 0 result.
    let engine = builder()
        .halt_after_commits(3)
        .open(journal.path())
        .await
        .unwrap();
    let run = engine
        .start("p", parent("child-restart".into(), 1))
        .await
        .unwrap();
    assert!(matches!(
        run.result().await,
        Err(FlowError::EngineStopped { .. })
    ));
    engine.shutdown().await;
    assert_eq!(runs("child-restart"), 1);

    let engine = builder().open(journal.path()).await.unwrap();
    assert_eq!(
        engine
            .handle::<parent>("p")
            .unwrap()
            .result()
            .await
            .unwrap(),
        11
    );
    assert_eq!(runs("child-restart"), 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_runs_branches_concurrently_and_concatenates_outputs() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine.start("fan", fanout("fanout".into())).await.unwrap();
    assert_eq!(run.result().await.unwrap(), (11, (Ok(2), ())));
    let history = run.history().await.unwrap();
    let branches = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::BranchCompleted { .. }))
        .count();
    assert_eq!(branches, 3);
    // Branches run in parallel: compare the attempts, not the order they started in.
    let mut keys: Vec<String> = contexts("fanout")
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["fan/0.0", "fan/0.1", "fan/0.1"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_join_branches_are_not_rerun_after_a_restart() {
    // Halt after commit k (1 is the start; then branch results, retries and attempts in
    // whatever order the parallel branches finish), restart, and check that no branch
    // committed before the halt runs again.
    let mut committed_any = false;
    for k in 2..=4 {
        let label = format!("join-restart-{k}");
        let journal = TempJournal::new(&label);
        let engine = builder()
            .halt_after_commits(k)
            .open(journal.path())
            .await
            .unwrap();
        let run = engine.start("fan", fanout(label.clone())).await.unwrap();
        match run.result().await {
            Err(FlowError::EngineStopped { .. }) => {}
            // Group commit may put the branches' results in fewer commits than `k`
            // (likelier on a loaded machine): the run ended before the halt, and there is
            // no restart to check at this `k`.
            Ok(output) => {
                assert_eq!(output, (11, (Ok(2), ())));
                engine.shutdown().await;
                continue;
            }
            Err(other) => panic!("halt after {k}: {other}"),
        }
        let committed: Vec<String> = run
            .history()
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::BranchCompleted { step, branch, .. } => {
                    Some(format!("fan/{step}.{branch}"))
                }
                _ => None,
            })
            .collect();
        engine.shutdown().await;
        committed_any |= !committed.is_empty();
        let attempts = |key: &str| {
            contexts(&label)
                .into_iter()
                .filter(|c| c.idempotency_key == key)
                .count()
        };
        let before: Vec<usize> = committed.iter().map(|key| attempts(key)).collect();

        let engine = builder().open(journal.path()).await.unwrap();
        let run = engine.handle::<fanout>("fan").unwrap();
        assert_eq!(run.result().await.unwrap(), (11, (Ok(2), ())));
        let after: Vec<usize> = committed.iter().map(|key| attempts(key)).collect();
        assert_eq!(
            after, before,
            "halt after {k}: branches committed before it ({committed:?}) ran again"
        );
        engine.shutdown().await;
    }
    assert!(committed_any, "some halt came after a branch was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_delivers_cancelled_to_the_pending_task() {
    let engine = builder().open_in_memory().await.unwrap();
    let run = engine
        .start("c", call_patient("cancel".into()))
        .await
        .unwrap();
    eventually("the task to start", || runs("cancel") == 1).await;
    engine.cancel("c").await.unwrap();
    let out = run.result().await.unwrap();
    assert_eq!(
        out,
        Err("run was cancelled while `tests::patient` was pending".to_string())
    );

    // A sleeping run just ends cancelled.
    let nap = engine.start("n", nap(60_000)).await.unwrap();
    engine.cancel("n").await.unwrap();
    assert!(matches!(
        nap.result().await,
        Err(FlowError::RunCancelled { .. })
    ));
    assert_eq!(nap.status().await.unwrap(), RunStatus::Cancelled);
    assert!(matches!(
        engine.cancel("n").await,
        Err(FlowError::RunFinished { .. })
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sleeping_runs_live_in_the_journal_only() {
    let engine = builder().open_in_memory().await.unwrap();
    for i in 0..300 {
        engine.start(format!("z-{i}"), nap(150)).await.unwrap();
    }
    let list = engine.list().await.unwrap();
    assert!(list
        .iter()
        .all(|r| r.status == RunStatus::Waiting || r.status == RunStatus::Completed));
    for i in 0..300 {
        engine
            .handle::<nap>(&format!("z-{i}"))
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    engine.shutdown().await;
}
