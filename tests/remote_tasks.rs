//! Remote tasks (`#[task(queue = "...")]`) through the engine's own API, in process:
//! poll, heartbeat, complete, fail; leases that expire, tokens refused once their lease
//! ended, reports repeated, outputs of the wrong type, cancellation, timeouts and a
//! restart of the engine under a held lease. The same protocol over HTTP, with worker
//! processes, is tested in flow-server's `tests/workers.rs`.

mod support;

use std::time::{Duration, Instant};

use flow::{task, workflow, Completed, Engine, FlowError, LeasedTask, TaskFailure};
use support::TempJournal;

/// Doubles `n`; workers run it.
#[task(
    queue = "double",
    heartbeat = "1s",
    retry(max_attempts = 3, initial = "10ms")
)]
async fn double(n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

/// A queue nobody serves within its schedule-to-start timeout.
#[task(
    queue = "nobody",
    schedule_to_start = "150ms",
    retry(max_attempts = 2, initial = "10ms")
)]
async fn unserved(n: u64) -> Result<u64, String> {
    Ok(n)
}

/// Awaits the remote task and adds one: the step after it runs in the engine.
#[workflow]
async fn doubled(n: u64) -> Result<u64, String> {
    let d = double(n).await?;
    Ok(d + 1)
}

#[workflow]
async fn starved(n: u64) -> Result<u64, String> {
    unserved(n).await
}

/// A map of remote tasks (parallel branches) and a join of two.
#[workflow]
async fn fanned(n: u64) -> Result<u64, String> {
    let items: Vec<u64> = (1..=n).collect();
    let doubled: Vec<Result<u64, String>> = flow::map(items, 4, double).await;
    let (a, b) = flow::join!(double(100), double(1000)).await;
    let mut sum = a? + b?;
    for d in doubled {
        sum += d?;
    }
    Ok(sum)
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<doubled>()
        .register::<starved>()
        .register::<fanned>()
}

async fn poll_one(engine: &Engine, queue: &str) -> LeasedTask {
    let mut tasks = engine
        .poll_tasks(queue, "test-worker", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "one task expected on `{queue}`");
    tasks.pop().unwrap()
}

fn args_of(task: &LeasedTask) -> String {
    flow::codec::to_json(&task.args).unwrap()
}

#[tokio::test]
async fn a_worker_completes_a_remote_task_and_the_run_goes_on() {
    let journal = TempJournal::new("remote-complete");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-1", doubled(20)).await.unwrap();
    let task = poll_one(&engine, "double").await;
    assert_eq!(task.task, "double");
    assert_eq!(task.run_id, "r-1");
    assert_eq!(task.attempt, 1);
    assert_eq!(task.idempotency_key, "r-1/0");
    assert_eq!(args_of(&task), r#"{"n":20}"#);
    let beat = engine.heartbeat_task("double", &task.token).unwrap();
    assert!(!beat.cancel_requested);
    let ok = serde_json_like_ok(40);
    assert_eq!(
        engine
            .complete_task("double", &task.token, &ok)
            .await
            .unwrap(),
        Completed::Accepted
    );
    assert_eq!(run.result().await.unwrap(), Ok(41));
    // The same report again: harmless. Another one: refused.
    assert_eq!(
        engine
            .complete_task("double", &task.token, &ok)
            .await
            .unwrap(),
        Completed::Duplicate
    );
    let other = serde_json_like_ok(1);
    assert!(matches!(
        engine.complete_task("double", &task.token, &other).await,
        Err(FlowError::TaskAlreadyReported { .. })
    ));
    assert!(matches!(
        engine.heartbeat_task("double", &task.token),
        Err(FlowError::TaskTokenGone { .. })
    ));
    assert_eq!(run.result().await.unwrap(), Ok(41));
    engine.shutdown().await;
}

/// `Ok(v)` as a worker sends it, without the Rust type: a map `{"Ok": v}`.
fn serde_json_like_ok(v: u64) -> std::collections::BTreeMap<&'static str, u64> {
    [("Ok", v)].into_iter().collect()
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let journal = TempJournal::new("remote-bad");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-bad", doubled(5)).await.unwrap();
    let task = poll_one(&engine, "double").await;
    // Unknown queue.
    assert!(matches!(
        engine.poll_tasks("nope", "w", 1, Duration::ZERO).await,
        Err(FlowError::UnknownQueue { .. })
    ));
    // Another queue's endpoint.
    assert!(matches!(
        engine
            .complete_task("nobody", &task.token, &serde_json_like_ok(10))
            .await,
        Err(FlowError::WrongQueue { .. })
    ));
    // Garbled tokens.
    for token in ["", "zz", "00ff", &task.token[..task.token.len() - 2]] {
        assert!(
            matches!(
                engine
                    .complete_task("double", token, &serde_json_like_ok(10))
                    .await,
                Err(FlowError::InvalidTaskToken { .. })
            ),
            "{token:?}"
        );
    }
    let mut forged = task.token.clone().into_bytes();
    forged[20] = if forged[20] == b'1' { b'2' } else { b'1' };
    assert!(matches!(
        engine
            .complete_task(
                "double",
                std::str::from_utf8(&forged).unwrap(),
                &serde_json_like_ok(1)
            )
            .await,
        Err(FlowError::InvalidTaskToken { .. })
    ));
    // An output of the wrong type.
    assert!(matches!(
        engine.complete_task("double", &task.token, &"forty").await,
        Err(FlowError::TaskOutputMismatch { .. })
    ));
    // After all that, the lease still stands and the right report goes through.
    engine.heartbeat_task("double", &task.token).unwrap();
    engine
        .complete_task("double", &task.token, &serde_json_like_ok(10))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(11));
    let history = engine.history("r-bad").await.unwrap();
    let failed = history
        .iter()
        .filter(|e| matches!(e.kind, flow::EventKind::AttemptFailed { .. }))
        .count();
    assert_eq!(failed, 0, "no refused report counted as an attempt");
    engine.shutdown().await;
}

#[tokio::test]
async fn an_expired_lease_is_retried_with_the_same_key_and_its_token_refused() {
    let journal = TempJournal::new("remote-expire");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-exp", doubled(3)).await.unwrap();
    let first = poll_one(&engine, "double").await;
    // No heartbeat: after 1 s the lease expires and attempt 2 is queued.
    let began = Instant::now();
    let second = poll_one(&engine, "double").await;
    assert!(
        began.elapsed() >= Duration::from_millis(800),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(second.attempt, 2);
    assert_eq!(second.idempotency_key, first.idempotency_key);
    assert_ne!(second.token, first.token);
    for refused in [
        engine
            .complete_task("double", &first.token, &serde_json_like_ok(100))
            .await,
        engine
            .fail_task("double", &first.token, "late", false, None)
            .await,
    ] {
        assert!(
            matches!(refused, Err(FlowError::StaleTaskToken { .. })),
            "{refused:?}"
        );
    }
    engine
        .complete_task("double", &second.token, &serde_json_like_ok(6))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(7));
    let history = engine.history("r-exp").await.unwrap();
    let errors: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            flow::EventKind::AttemptFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("sent no heartbeat"), "{errors:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn worker_failures_are_retried_or_final_as_the_worker_says() {
    let journal = TempJournal::new("remote-fail");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-fail", doubled(1)).await.unwrap();
    let first = poll_one(&engine, "double").await;
    engine
        .fail_task(
            "double",
            &first.token,
            "disk full",
            true,
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let began = Instant::now();
    let second = poll_one(&engine, "double").await;
    assert!(began.elapsed() >= Duration::from_millis(40));
    assert_eq!(second.attempt, 2);
    engine
        .fail_task("double", &second.token, "bad image", false, None)
        .await
        .unwrap();
    let output = run.result().await.unwrap();
    let error = output.unwrap_err();
    assert!(error.contains("bad image"), "{error}");
    // No third attempt.
    assert!(engine
        .poll_tasks("double", "w", 1, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn a_queue_nobody_serves_ends_in_the_schedule_to_start_timeout() {
    let journal = TempJournal::new("remote-unserved");
    let engine = builder().open(journal.path()).await.unwrap();
    let began = Instant::now();
    let run = engine.start("r-none", starved(1)).await.unwrap();
    let error = run.result().await.unwrap().unwrap_err();
    let expected = TaskFailure::NotStarted {
        task: "unserved".into(),
        queue: "nobody".into(),
        attempt: 2,
        after: Duration::from_millis(150),
    };
    assert_eq!(error, expected.to_string());
    assert!(began.elapsed() >= Duration::from_millis(300));
    engine.shutdown().await;
}

#[tokio::test]
async fn cancelling_the_run_is_answered_to_the_heartbeat() {
    let journal = TempJournal::new("remote-cancel");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-cancel", doubled(1)).await.unwrap();
    let task = poll_one(&engine, "double").await;
    engine.cancel("r-cancel").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match engine.heartbeat_task("double", &task.token) {
            Ok(beat) if beat.cancel_requested => break,
            Ok(_) => {}
            // The run moved on without the attempt: as good as told.
            Err(FlowError::TaskTokenGone { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "cancellation never reached the worker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = run.result().await.unwrap().unwrap_err();
    assert!(error.contains("cancelled"), "{error}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_lease_survives_an_engine_restart() {
    let journal = TempJournal::new("remote-restart");
    let engine = builder().open(journal.path()).await.unwrap();
    engine.start("r-keep", doubled(8)).await.unwrap();
    engine.start("r-lost", doubled(9)).await.unwrap();
    let mut held = engine
        .poll_tasks("double", "w", 2, Duration::from_secs(5))
        .await
        .unwrap();
    // A single poll may see one task if the second run's step is not yet queued.
    while held.len() < 2 {
        held.push(poll_one(&engine, "double").await);
    }
    held.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let (keep, lost) = (held.remove(0), held.remove(0));
    assert_eq!(
        (keep.run_id.as_str(), lost.run_id.as_str()),
        ("r-keep", "r-lost")
    );
    engine.shutdown().await;
    drop(engine);

    let engine = builder().open(journal.path()).await.unwrap();
    // The holder of `r-keep` heartbeats within the heartbeat timeout: its lease goes on.
    // (Right after opening, the engine may still be putting it back: it says so.)
    loop {
        match engine.heartbeat_task("double", &keep.token) {
            Ok(_) => break,
            Err(FlowError::QueuesRecovering) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => panic!("{e}"),
        }
    }
    // Nobody else gets it meanwhile; `r-lost`'s comes back once its hold expired.
    let again = poll_one(&engine, "double").await;
    assert_eq!(again.run_id, "r-lost");
    assert_eq!(again.idempotency_key, lost.idempotency_key);
    assert!(matches!(
        engine
            .complete_task("double", &lost.token, &serde_json_like_ok(0))
            .await,
        Err(FlowError::StaleTaskToken { .. })
    ));
    engine
        .complete_task("double", &keep.token, &serde_json_like_ok(16))
        .await
        .unwrap();
    engine
        .complete_task("double", &again.token, &serde_json_like_ok(18))
        .await
        .unwrap();
    let keep_run = engine.handle::<doubled>("r-keep").unwrap();
    let lost_run = engine.handle::<doubled>("r-lost").unwrap();
    assert_eq!(keep_run.result().await.unwrap(), Ok(17));
    assert_eq!(lost_run.result().await.unwrap(), Ok(19));
    let queues = engine.queues();
    let double = queues.iter().find(|q| q.name == "double").unwrap();
    assert_eq!((double.pending, double.leased), (0, 0));
    assert_eq!(double.workers, ["test-worker"]);
    engine.shutdown().await;
}

#[tokio::test]
async fn waiting_polls_are_released_for_a_shutdown() {
    let journal = TempJournal::new("remote-release");
    let engine = builder().open(journal.path()).await.unwrap();
    let polling = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let tasks = engine
                .poll_tasks("double", "w", 10, Duration::from_secs(30))
                .await
                .unwrap();
            (tasks.len(), began.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.release_task_polls();
    let (tasks, waited) = tokio::time::timeout(Duration::from_secs(5), polling)
        .await
        .expect("the poll was released")
        .unwrap();
    assert_eq!(tasks, 0);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Later polls answer at once, too.
    let began = Instant::now();
    let tasks = engine
        .poll_tasks("double", "w", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(tasks.is_empty() && began.elapsed() < Duration::from_secs(1));
    engine.shutdown().await;
}

#[tokio::test]
async fn maps_and_joins_of_remote_tasks_run_in_parallel_on_workers() {
    let journal = TempJournal::new("remote-map");
    let engine = builder().open(journal.path()).await.unwrap();
    let run = engine.start("r-map", fanned(10)).await.unwrap();
    // The map keeps 4 items in flight: one poll takes them all, with their own keys.
    let mut keys = std::collections::BTreeSet::new();
    let mut done = 0;
    while done < 12 {
        let tasks = engine
            .poll_tasks("double", "w", 100, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!tasks.is_empty(), "the run stalled after {done} tasks");
        assert!(
            tasks.len() <= 4,
            "more than the map's limit in flight: {}",
            tasks.len()
        );
        for task in tasks {
            assert!(
                keys.insert(task.idempotency_key.clone()),
                "{}",
                task.idempotency_key
            );
            let n: u64 = args_of(&task)
                .trim_start_matches(r#"{"n":"#)
                .trim_end_matches('}')
                .parse()
                .unwrap();
            engine
                .complete_task("double", &task.token, &serde_json_like_ok(n * 2))
                .await
                .unwrap();
            done += 1;
        }
    }
    // 2 * (1 + ... + 10) + 200 + 2000
    assert_eq!(run.result().await.unwrap(), Ok(110 + 2200));
    engine.shutdown().await;
}

/// A report is answered `Accepted` only once the transition holding it is durable: when
/// the journal refuses that commit (a failing disk), the answer is `TaskReportNotDurable`
/// and the worker reports again after the journal is reopened; an accepted report's
/// result is in the reopened journal without any worker reporting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_report_is_durable_when_answered() {
    use std::sync::atomic::Ordering;
    use support::flaky::Flaky;

    let (journal, log) = (Flaky::default(), Flaky::default());
    let open = || {
        builder()
            .backend(journal.clone())
            .log_backend(log.clone())
            .open_in_memory()
    };
    let ok = serde_json_like_ok(40);

    // The report's commit fails: not acknowledged.
    let engine = open().await.unwrap();
    engine.start("r-d", doubled(20)).await.unwrap();
    let task = poll_one(&engine, "double").await;
    log.failing.store(true, Ordering::SeqCst);
    let answer = engine.complete_task("double", &task.token, &ok).await;
    assert!(
        matches!(
            answer,
            Err(FlowError::TaskReportNotDurable { how: "completed" })
        ),
        "{answer:?}"
    );
    log.failing.store(false, Ordering::SeqCst);
    engine.shutdown().await;

    // Reopened, the same token is honoured again (the attempt is held for it for one
    // heartbeat timeout), and this time the report is durable when answered.
    let engine = open().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match engine.complete_task("double", &task.token, &ok).await {
            Err(FlowError::QueuesRecovering) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other,
        }
    };
    assert_eq!(again.unwrap(), Completed::Accepted);
    // Whatever happens to the engine now, the result is in the journal: a reopened one
    // finishes the run with no worker.
    engine.shutdown().await;
    let engine = open().await.unwrap();
    let run = engine.handle::<doubled>("r-d").unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), run.result()).await;
    assert_eq!(done.expect("no worker is needed").unwrap(), Ok(41));
    engine.shutdown().await;
}
