//! `flow::testing::TestEnv` runs the completion-policy primitives as the engine does:
//! `flow::first_ok`, `flow::all` and maps with a completion policy (`min_successes`,
//! `tolerate_failures`, `tolerate_failure_rate`, `fail_fast`, `batch`), `join!` with
//! `max_in_flight`, and names on operations. Each workflow runs on a real engine (in
//! memory) and in a `TestEnv`, and the two must agree: the same output, the same
//! branches cancelled or never started (child runs included), the same names in the
//! history. The `TestEnv` side also checks what only it makes exact: virtual time (which
//! branch finishes first is decided by virtual sleeps), mocks applied to tasks inside
//! these primitives, and how many branches run at once.

use std::time::Duration;

use flow::testing::{check_resumes_with, TestEnv, TestError};
use flow::{
    task, workflow, Batch, BranchStatus, Completion, Engine, EventKind, HistoryEvent, OpExt,
    RunStatus, SignalTimeout, Workflow,
};

const HOUR: Duration = Duration::from_secs(3600);

fn engine() -> flow::EngineBuilder {
    Engine::builder()
        .register::<slow_mirror>()
        .register::<fastest_good_mirror>()
        .register::<direct_first_ok>()
        .register::<idle_child>()
        .register::<two_of_four>()
        .register::<first_three>()
        .register::<tolerate_one>()
        .register::<failure_rate>()
        .register::<mixed_fail_fast>()
        .register::<paced>()
        .register::<limited_join>()
        .register::<checked_child>()
        .register::<named_steps>()
        .register::<race_of_a_map>()
        .register::<crashing_child>()
        .register::<batch_of_children>()
        .register::<waits_on_a_batch>()
        .register::<two_signals>()
}

/// Runs `call` as run `run` on a fresh in-memory engine; its output, its history and the
/// engine (to look at child runs).
async fn on_engine<W>(call: W) -> (W::Output, Vec<HistoryEvent>, Engine)
where
    W: Workflow,
{
    let engine = engine().open_in_memory().await.unwrap();
    let run = engine.start("run", call).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), run.result())
        .await
        .expect("the engine's run did not finish in 20 s")
        .unwrap();
    let history = engine.history("run").await.unwrap();
    (output, history, engine)
}

/// Runs `call` as run `run` in `env` to its end (virtual time jumping from timer to
/// timer); its output and its history.
async fn in_env<W: Workflow>(env: &TestEnv, call: W) -> (W::Output, Vec<HistoryEvent>) {
    let run = env.start_with_id("run", call).await.unwrap();
    let output = run.result().await.unwrap();
    (output, run.history().await)
}

/// The engine's status of `run_id` once it settles (a cancelled child ends soon after
/// the transition that cancels it).
async fn settled_status(engine: &Engine, run_id: &str) -> RunStatus {
    let mut status = engine.status(run_id).await.unwrap();
    for _ in 0..500 {
        if !matches!(status, RunStatus::Running | RunStatus::Waiting) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = engine.status(run_id).await.unwrap();
    }
    status
}

/// The events of a history that say how parallel work ended, without instants: which
/// branches completed (and with what), who won, how a batch completed, which items
/// finished (and why they failed).
fn outcomes(history: &[HistoryEvent]) -> Vec<EventKind> {
    history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::BranchCompleted { .. }
                    | EventKind::RaceWon { .. }
                    | EventKind::BatchCompleted { .. }
                    | EventKind::BranchNamed { .. }
            )
        })
        .map(|e| e.kind.clone())
        .collect()
}

/// Succeeds with `mirror * 10` or fails, once (no retries).
#[task(retry(max_attempts = 1))]
async fn fetch(mirror: u32, ok: bool) -> Result<u32, String> {
    if ok {
        Ok(mirror * 10)
    } else {
        Err(format!("mirror {mirror} failed"))
    }
}

// ---------------------------------------------------------------------------------------
// first_ok

/// A mirror that answers after `delay_ms`.
#[workflow]
async fn slow_mirror(mirror: u32, delay_ms: u64, ok: bool) -> Result<u32, String> {
    flow::sleep(Duration::from_millis(delay_ms)).await;
    fetch(mirror, ok).await
}

/// The first mirror to answer with `Ok` (each a child run with its own delay), or every
/// mirror's error.
#[workflow]
async fn fastest_good_mirror(mirrors: Vec<(u64, bool)>) -> Result<(usize, u32), Vec<String>> {
    let calls: Vec<_> = mirrors
        .into_iter()
        .enumerate()
        .map(|(i, (delay_ms, ok))| slow_mirror(i as u32, delay_ms, ok))
        .collect();
    flow::first_ok(calls).await
}

/// `first_ok` over task calls.
#[workflow]
async fn direct_first_ok(pattern: Vec<bool>) -> Result<(usize, u32), Vec<String>> {
    let calls: Vec<_> = pattern
        .into_iter()
        .enumerate()
        .map(|(i, ok)| fetch(i as u32, ok))
        .collect();
    flow::first_ok(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_ok_is_won_by_the_first_success_in_virtual_time() {
    // Mirror 0 fails first (10 ms), mirror 2 succeeds next (100 ms), mirror 1 would
    // succeed last (1000 ms): mirror 2 wins and mirror 1's child run is cancelled.
    let mirrors = vec![(10, false), (1000, true), (100, true)];
    let (expected, engine_history, engine) = on_engine(fastest_good_mirror(mirrors.clone())).await;
    assert_eq!(expected, Ok((2, 20)));
    assert_eq!(
        settled_status(&engine, "run/0.1").await,
        RunStatus::Cancelled
    );
    assert_eq!(
        settled_status(&engine, "run/0.0").await,
        RunStatus::ReturnedErr
    );
    engine.shutdown().await;

    let env = TestEnv::new();
    env.register::<slow_mirror>();
    let (output, history) = in_env(&env, fastest_good_mirror(mirrors.clone())).await;
    assert_eq!(output, expected);
    assert_eq!(env.elapsed(), Duration::from_millis(100), "won at 100 ms");
    assert_eq!(env.status("run/0.1").await.unwrap(), RunStatus::Cancelled);
    assert_eq!(env.status("run/0.0").await.unwrap(), RunStatus::ReturnedErr);
    assert_eq!(env.status("run/0.2").await.unwrap(), RunStatus::Completed);
    // The win, as the engine's history has it (child runs deliver their outputs without
    // a `BranchCompleted` event in the parent's history).
    assert_eq!(outcomes(&history), outcomes(&engine_history));
    assert_eq!(
        outcomes(&history),
        [EventKind::RaceWon { step: 0, winner: 2 }]
    );

    // Mocks apply to the tasks of the child runs: now mirror 2 fails and mirror 1 wins,
    // at 1000 ms.
    let env = TestEnv::new();
    env.register::<slow_mirror>();
    let fetches = env.mock::<fetch>().answers(|call| {
        if call.mirror == 1 {
            Ok(7)
        } else {
            Err(format!("mocked mirror {} down", call.mirror))
        }
    });
    let (output, _) = in_env(&env, fastest_good_mirror(mirrors)).await;
    assert_eq!(output, Ok((1, 7)));
    assert_eq!(env.elapsed(), Duration::from_millis(1000));
    fetches.assert_called(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_ok_reports_every_error_in_branch_order_when_all_fail() {
    // Mirror 1 fails first; the errors still come in branch order.
    let mirrors = vec![(30, false), (10, false)];
    let (expected, engine_history, engine) = on_engine(fastest_good_mirror(mirrors.clone())).await;
    engine.shutdown().await;
    let all_failed = Err(vec![
        "mirror 0 failed".to_string(),
        "mirror 1 failed".to_string(),
    ]);
    assert_eq!(expected, all_failed);
    let env = TestEnv::new();
    env.register::<slow_mirror>();
    let (output, history) = in_env(&env, fastest_good_mirror(mirrors)).await;
    assert_eq!(output, expected);
    assert_eq!(env.elapsed(), Duration::from_millis(30));
    assert_eq!(outcomes(&history), outcomes(&engine_history));
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, EventKind::RaceWon { .. })),
        "nobody won: {history:#?}"
    );
    // Task branches report their outputs as they complete; every one of these failed.
    let failed = |i: u32| EventKind::BranchCompleted {
        step: 0,
        branch: i,
        output: flow::codec::encode(
            &Err::<u32, String>(format!("mirror {i} failed")),
            String::new,
        )
        .unwrap(),
    };
    let (_, history) = in_env(&TestEnv::new(), direct_first_ok(vec![false, false])).await;
    assert_eq!(outcomes(&history), [failed(0), failed(1)]);

    // Over task calls the engine starts every task at once, and whichever `Ok` it learns
    // first wins. The environment answers them all at the same virtual instant and, as
    // the engine does for results it learns together, takes the first `Ok` in branch
    // order; every task is attempted.
    let (on_engine_out, _, engine) = on_engine(direct_first_ok(vec![false, true, true])).await;
    engine.shutdown().await;
    assert!(
        matches!(on_engine_out, Ok((1, 10)) | Ok((2, 20))),
        "{on_engine_out:?}"
    );
    let expected = Ok((1, 10));
    let env = TestEnv::new();
    let fetches = env.mock::<fetch>().answers(|call| {
        if call.ok {
            Ok(call.mirror * 10)
        } else {
            Err(format!("mirror {} failed", call.mirror))
        }
    });
    let (output, _) = in_env(&env, direct_first_ok(vec![false, true, true])).await;
    assert_eq!(output, expected);
    fetches.assert_called(3);
    let (output, _) = in_env(&TestEnv::new(), direct_first_ok(vec![false, false, false])).await;
    let (expected, _, engine) = on_engine(direct_first_ok(vec![false, false, false])).await;
    engine.shutdown().await;
    assert_eq!(output, expected);
    assert_eq!(
        output,
        Err((0..3).map(|i| format!("mirror {i} failed")).collect())
    );
}

// ---------------------------------------------------------------------------------------
// Batches: flow::all and maps with a completion policy

/// Waits for a signal nobody sends: runs until it is cancelled.
#[workflow]
async fn idle_child(x: u64) -> u64 {
    let more: u64 = flow::signal::<u64>("never").await;
    x + more
}

type Mixed = Batch<(
    BranchStatus<Result<u32, String>>,
    BranchStatus<u64>,
    BranchStatus<()>,
    BranchStatus<Result<u32, String>>,
)>;

/// Branches of four types, three at a time, complete once two succeeded: the child run
/// and the hour's sleep, still running then, are cancelled.
#[workflow]
async fn two_of_four() -> Mixed {
    flow::all((
        fetch(0, true),
        idle_child(7),
        flow::sleep(HOUR),
        fetch(3, true),
    ))
    .max_in_flight(3)
    .min_successes(2)
    .await
}

type Statuses = Vec<BranchStatus<Result<u32, String>>>;

/// A map, one item at a time, that completes once three items succeeded.
#[workflow]
async fn first_three(pattern: Vec<bool>) -> Batch<Statuses> {
    let items: Vec<(u32, bool)> = (0..).zip(pattern).collect();
    flow::map(items, 1, |(i, ok)| fetch(i, ok))
        .min_successes(3)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_completes_at_its_minimum_and_cancels_or_never_starts_the_rest() {
    let (expected, engine_history, engine) = on_engine(two_of_four()).await;
    assert_eq!(
        expected,
        Batch {
            completion: Completion::MinSuccessesReached,
            branches: (
                BranchStatus::Succeeded(Ok(0)),
                BranchStatus::Cancelled,
                BranchStatus::Cancelled,
                BranchStatus::Succeeded(Ok(30)),
            ),
        }
    );
    assert_eq!(
        settled_status(&engine, "run/0.1").await,
        RunStatus::Cancelled
    );
    engine.shutdown().await;

    let env = TestEnv::new();
    env.register::<idle_child>();
    let (output, history) = in_env(&env, two_of_four()).await;
    assert_eq!(output, expected);
    assert_eq!(env.status("run/0.1").await.unwrap(), RunStatus::Cancelled);
    assert_eq!(
        env.elapsed(),
        Duration::ZERO,
        "the hour's sleep was cancelled"
    );
    assert_eq!(outcomes(&history), outcomes(&engine_history));
    assert!(
        outcomes(&history).contains(&EventKind::BatchCompleted {
            step: 0,
            completion: Completion::MinSuccessesReached,
            succeeded: 2,
            failed: 0,
        }),
        "{history:#?}"
    );

    // A map one item at a time: the items after the third success never start (their
    // mock is never called).
    let pattern = vec![true, false, true, false, true, true, true];
    let (expected, _, engine) = on_engine(first_three(pattern.clone())).await;
    engine.shutdown().await;
    let env = TestEnv::new();
    let fetches = env.mock::<fetch>().answers(|call| {
        if call.ok {
            Ok(call.mirror * 10)
        } else {
            Err(format!("mirror {} failed", call.mirror))
        }
    });
    let (output, _) = in_env(&env, first_three(pattern)).await;
    assert_eq!(output, expected);
    assert_eq!(output.completion, Completion::MinSuccessesReached);
    assert_eq!(
        output.branches[5..],
        [BranchStatus::NotStarted, BranchStatus::NotStarted]
    );
    assert!(output.branches[1].is_failed(), "{output:?}");
    fetches.assert_called(5);
    let mirrors: Vec<u32> = fetches.calls().into_iter().map(|c| c.mirror).collect();
    assert_eq!(mirrors, [0, 1, 2, 3, 4]);

    // Too few can succeed: the map runs to its end.
    let (expected, _, engine) = on_engine(first_three(vec![true, false, true])).await;
    engine.shutdown().await;
    let (output, _) = in_env(&TestEnv::new(), first_three(vec![true, false, true])).await;
    assert_eq!(output, expected);
    assert_eq!(output.completion, Completion::AllDone);
}

/// One item at a time, at most one failure tolerated.
#[workflow]
async fn tolerate_one(pattern: Vec<bool>) -> Batch<Statuses> {
    let items: Vec<(u32, bool)> = (0..).zip(pattern).collect();
    flow::map(items, 1, |(i, ok)| fetch(i, ok))
        .batch()
        .tolerate_failures(1)
        .await
}

/// `n` items, ten at a time, the first `failing` of them failing, under a failure rate.
#[workflow]
async fn failure_rate(n: u32, failing: u32, rate: f64) -> (Completion, usize) {
    let batch = flow::map(0..n, 10, |i| fetch(i, i >= failing))
        .batch()
        .tolerate_failure_rate(rate)
        .await;
    (batch.completion, batch.failures())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stops_once_more_fail_than_tolerated() {
    let pattern = vec![false, true, false, true, true];
    let (expected, engine_history, engine) = on_engine(tolerate_one(pattern.clone())).await;
    engine.shutdown().await;
    let (output, history) = in_env(&TestEnv::new(), tolerate_one(pattern)).await;
    assert_eq!(output, expected);
    assert_eq!(output.completion, Completion::FailureToleranceExceeded);
    assert_eq!(
        output.branches,
        [
            BranchStatus::Failed {
                error: output.branches[0].failure_text(),
                output: Some(Err("mirror 0 failed".into())),
            },
            BranchStatus::Succeeded(Ok(10)),
            BranchStatus::Failed {
                error: output.branches[2].failure_text(),
                output: Some(Err("mirror 2 failed".into())),
            },
            BranchStatus::NotStarted,
            BranchStatus::NotStarted,
        ]
    );
    assert_eq!(outcomes(&history), outcomes(&engine_history));

    // 0.29 of 100 tolerates 29 failures exactly; the 30th stops the batch. The engine's
    // count may run past 30 (attempts finish concurrently); the environment's, ten items
    // at a time in order, is exactly 30.
    let (expected, _, engine) = on_engine(failure_rate(100, 29, 0.29)).await;
    assert_eq!(expected, (Completion::AllDone, 29));
    let (stopped, _, engine2) = on_engine(failure_rate(100, 30, 0.29)).await;
    engine.shutdown().await;
    engine2.shutdown().await;
    assert_eq!(stopped.0, Completion::FailureToleranceExceeded);
    assert!(stopped.1 >= 30, "{stopped:?}");
    let env = TestEnv::new();
    let (output, _) = in_env(&env, failure_rate(100, 29, 0.29)).await;
    assert_eq!(output, expected);
    let env = TestEnv::new();
    let (output, _) = in_env(&env, failure_rate(100, 30, 0.29)).await;
    assert_eq!(output, (Completion::FailureToleranceExceeded, 30));
}

/// A status's error text, to compare the rest of a status exactly.
trait FailureText {
    fn failure_text(&self) -> String;
}

impl<T> FailureText for BranchStatus<T> {
    fn failure_text(&self) -> String {
        match self {
            BranchStatus::Failed { error, .. } => error.clone(),
            _ => String::new(),
        }
    }
}

type MixedFailFast = Batch<(
    BranchStatus<Result<u32, String>>,
    BranchStatus<()>,
    BranchStatus<u64>,
)>;

/// Two at a time, fail fast: the failing task stops the batch; the sleep is cancelled
/// and the child run never starts.
#[workflow]
async fn mixed_fail_fast() -> MixedFailFast {
    flow::all((fetch(0, false), flow::sleep(HOUR), idle_child(1)))
        .max_in_flight(2)
        .fail_fast()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_fast_batch_stops_at_the_first_failure() {
    let (expected, engine_history, engine) = on_engine(mixed_fail_fast()).await;
    assert!(engine.status("run/0.2").await.is_err(), "the child started");
    engine.shutdown().await;
    assert_eq!(expected.completion, Completion::FailureToleranceExceeded);

    let env = TestEnv::new();
    env.register::<idle_child>();
    let fetches = env
        .mock::<fetch>()
        .returns(Err("mocked mirror 0 down".into()));
    let (output, history) = in_env(&env, mixed_fail_fast()).await;
    fetches.assert_called(1);
    assert_eq!(output.completion, Completion::FailureToleranceExceeded);
    assert_eq!(
        output.branches.0,
        BranchStatus::Failed {
            error: output.branches.0.failure_text(),
            output: Some(Err("mocked mirror 0 down".into())),
        }
    );
    assert_eq!(output.branches.1, BranchStatus::Cancelled);
    assert_eq!(output.branches.2, BranchStatus::NotStarted);
    assert!(
        matches!(
            env.status("run/0.2").await,
            Err(TestError::UnknownRun { .. })
        ),
        "the child run never started"
    );
    assert_eq!(env.elapsed(), Duration::ZERO);
    assert_eq!(outcomes(&history), outcomes(&engine_history));

    // Unmocked, the whole batch is the engine's, error texts included.
    let (output, _) = in_env(&TestEnv::new(), mixed_fail_fast()).await;
    assert_eq!(output, expected);
}

// ---------------------------------------------------------------------------------------
// join! with max_in_flight

/// Takes 100 ms, then returns `n`.
#[workflow]
async fn paced(n: u32) -> u32 {
    flow::sleep(Duration::from_millis(100)).await;
    n
}

/// Five child runs, at most two at a time.
#[workflow]
async fn limited_join() -> (u32, u32, u32, u32, u32) {
    flow::join!(paced(1), paced(2), paced(3), paced(4), paced(5))
        .max_in_flight(2)
        .await
}

/// When each child run of step 0 of run `run` started and ended, by the instants of its
/// history.
async fn spans<F, Fut>(history_of: F, children: u32) -> Vec<(u64, u64)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<HistoryEvent>>,
{
    let mut spans = Vec::new();
    for i in 0..children {
        let history = history_of(format!("run/0.{i}")).await;
        let start = history.first().expect("a child run's history").at_ms;
        let end = history
            .iter()
            .find(|e| matches!(e.kind, EventKind::RunCompleted { .. }))
            .expect("the child run completed")
            .at_ms;
        spans.push((start, end));
    }
    spans
}

/// The most spans running at one instant (a span ending when another starts does not
/// overlap it).
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    spans
        .iter()
        .map(|(at, _)| {
            spans
                .iter()
                .filter(|(start, end)| start <= at && at < end)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_max_in_flight_runs_at_most_that_many_at_once() {
    let (expected, _, engine) = on_engine(limited_join()).await;
    assert_eq!(expected, (1, 2, 3, 4, 5));
    let engine_spans = spans(
        |id| {
            let engine = &engine;
            async move { engine.history(&id).await.unwrap() }
        },
        5,
    )
    .await;
    assert_eq!(most_at_once(&engine_spans), 2, "{engine_spans:?}");
    engine.shutdown().await;

    let env = TestEnv::new();
    env.register::<paced>();
    let (output, _) = in_env(&env, limited_join()).await;
    assert_eq!(output, expected);
    // Two, two, then one, 100 virtual ms each.
    assert_eq!(env.elapsed(), Duration::from_millis(300));
    let env_spans = spans(
        |id| {
            let env = &env;
            async move { env.history(&id).await.unwrap() }
        },
        5,
    )
    .await;
    let t0 = env_spans[0].0;
    let relative: Vec<(u64, u64)> = env_spans.iter().map(|(s, e)| (s - t0, e - t0)).collect();
    assert_eq!(
        relative,
        [(0, 100), (0, 100), (100, 200), (100, 200), (200, 300)]
    );
    assert_eq!(most_at_once(&env_spans), 2);
}

// ---------------------------------------------------------------------------------------
// Names

/// Returns `Err` for odd numbers.
#[workflow]
async fn checked_child(x: u32) -> Result<u32, String> {
    if x % 2 == 1 {
        return Err(format!("{x} is odd"));
    }
    fetch(x, true).await
}

/// Named operations: a sleep, a join branch, map items, a batch branch, a `first_ok`
/// branch and a child run.
#[workflow]
async fn named_steps() -> Result<u32, String> {
    flow::sleep(Duration::from_millis(5))
        .named("cool-down")
        .await;
    let (first, ()) = flow::join!(
        fetch(1, true).named("first"),
        flow::sleep(Duration::from_millis(1))
    )
    .await;
    let items = flow::map(vec![2u32, 3], 2, |i| {
        fetch(i, true).named(format!("item-{i}"))
    })
    .await;
    let batch = flow::all(vec![
        fetch(4, true).named("fourth"),
        fetch(5, true).named("fifth"),
    ])
    .fail_fast()
    .await;
    let (_, sixth) = flow::first_ok(vec![
        fetch(6, false).named("broken"),
        fetch(6, true).named("working"),
    ])
    .named("mirrors")
    .await
    .map_err(|errors| errors.join(", "))?;
    let child = checked_child(8).named("sub-run").await?;
    Ok(first?
        + items.into_iter().map(|i| i.unwrap_or(0)).sum::<u32>()
        + batch
            .successes()
            .map(|(_, v)| v.clone().unwrap_or(0))
            .sum::<u32>()
        + sixth
        + child)
}

/// The step names and branch names of a history.
#[allow(clippy::type_complexity)]
fn names(history: &[HistoryEvent]) -> (Vec<(u64, String)>, Vec<(u64, u32, String)>) {
    let steps = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepScheduled { step, name, .. } => Some((*step, name.clone())),
            _ => None,
        })
        .collect();
    let branches = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BranchNamed { step, branch, name } => Some((*step, *branch, name.clone())),
            _ => None,
        })
        .collect();
    (steps, branches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_show_in_the_history_as_on_the_engine() {
    let (expected, engine_history, engine) = on_engine(named_steps()).await;
    assert_eq!(engine.status("run/5").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
    assert_eq!(expected, Ok(10 + 20 + 30 + 40 + 50 + 60 + 80));

    let env = TestEnv::new();
    env.register::<checked_child>();
    let fetches = env.mock::<fetch>().answers(|call| {
        if call.ok {
            Ok(call.mirror * 10)
        } else {
            Err(format!("mirror {} failed", call.mirror))
        }
    });
    let (output, history) = in_env(&env, named_steps()).await;
    assert_eq!(output, expected);
    // Every task call, named or not, went to the mock (the child's too).
    fetches.assert_called(8);
    let (steps, branches) = names(&history);
    let own = |v: &[(u64, &str)]| {
        v.iter()
            .map(|(s, n)| (*s, n.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        steps,
        own(&[
            (0, "cool-down"),
            (1, "join(2)"),
            (2, "map(2)"),
            (3, "batch(2)"),
            (4, "mirrors"),
            (5, "sub-run"),
        ])
    );
    let named: Vec<(u64, u32, String)> = [
        (1, 0, "first"),
        (2, 0, "item-2"),
        (2, 1, "item-3"),
        (3, 0, "fourth"),
        (3, 1, "fifth"),
        (4, 0, "broken"),
        (4, 1, "working"),
    ]
    .iter()
    .map(|(s, b, n)| (*s, *b, n.to_string()))
    .collect();
    assert_eq!(branches, named);
    assert_eq!(names(&engine_history), (steps, branches));
    // A named child run keeps its run ID.
    assert_eq!(env.status("run/5").await.unwrap(), RunStatus::Completed);
    // The named sleep took its 5 virtual ms (then the join's 1 ms).
    assert_eq!(env.elapsed(), Duration::from_millis(6));
}

// ---------------------------------------------------------------------------------------
// What the engine refuses to schedule

/// A race whose branch is a map: the engine faults the run.
#[workflow]
async fn race_of_a_map() -> (usize, Vec<Result<u32, String>>) {
    flow::race(vec![flow::map(vec![1u32], 1, |i| fetch(i, true))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_engine_cannot_schedule_faults_the_same_way() {
    let engine = engine().open_in_memory().await.unwrap();
    let run = engine.start("run", race_of_a_map()).await.unwrap();
    let engine_status = settled_status(&engine, "run").await;
    let engine_history = engine.history("run").await.unwrap();
    engine.shutdown().await;
    assert!(
        !engine_history
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepScheduled { .. })),
        "{engine_history:#?}"
    );
    let RunStatus::Faulted { error } = &engine_status else {
        panic!("{engine_status:?}");
    };
    assert!(error.contains("cannot be a branch of `race(1)`"), "{error}");
    drop(run);

    let env = TestEnv::new();
    let run = env.start_with_id("run", race_of_a_map()).await.unwrap();
    assert_eq!(run.status().await, engine_status);
    // Nothing was scheduled: the engine does not journal the refused step either.
    assert!(
        !run.history()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepScheduled { .. })),
        "a refused step is not scheduled"
    );
}

// ---------------------------------------------------------------------------------------
// Child runs that fail, cancellation, resumption

/// Panics for any `x` but 0.
#[workflow]
async fn crashing_child(x: u32) -> u32 {
    if x > 0 {
        panic!("child {x} gave up");
    }
    x
}

type Children = Batch<(
    BranchStatus<u32>,
    BranchStatus<Result<u32, String>>,
    BranchStatus<u32>,
)>;

/// A child run that fails, one that returns `Err` and one that succeeds.
#[workflow]
async fn batch_of_children() -> Children {
    flow::all((crashing_child(1), checked_child(3), crashing_child(0))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_child_runs_are_failed_branches_of_a_batch() {
    let (expected, engine_history, engine) = on_engine(batch_of_children()).await;
    engine.shutdown().await;
    let env = TestEnv::new();
    env.register::<crashing_child>();
    env.register::<checked_child>();
    let (output, history) = in_env(&env, batch_of_children()).await;
    assert_eq!(output, expected);
    assert_eq!(output.completion, Completion::AllDone);
    let (failed, erred, succeeded) = &output.branches;
    match failed {
        BranchStatus::Failed {
            error,
            output: None,
        } => assert!(
            error.starts_with("child run `run/0.0` failed: ") && error.contains("child 1 gave up"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        erred,
        &BranchStatus::Failed {
            error: "child run `run/0.1` returned Err".into(),
            output: Some(Err("3 is odd".into())),
        }
    );
    assert_eq!(succeeded, &BranchStatus::Succeeded(0));
    assert_eq!(outcomes(&history), outcomes(&engine_history));
}

/// Waits for a child run that never ends and an hour's sleep.
#[workflow]
async fn waits_on_a_batch() -> Batch<(BranchStatus<u64>, BranchStatus<()>)> {
    flow::all((idle_child(1), flow::sleep(HOUR))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_cancels_the_child_runs_of_its_batch_or_first_ok() {
    let engine = engine().open_in_memory().await.unwrap();
    let run = engine.start("run", waits_on_a_batch()).await.unwrap();
    // The child exists once the batch's first transition is committed.
    let mut child = engine.status("run/0.0").await;
    for _ in 0..500 {
        if child.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        child = engine.status("run/0.0").await;
    }
    run.cancel().await.unwrap();
    assert_eq!(settled_status(&engine, "run").await, RunStatus::Cancelled);
    assert_eq!(
        settled_status(&engine, "run/0.0").await,
        RunStatus::Cancelled
    );
    engine.shutdown().await;

    let env = TestEnv::new();
    env.register::<idle_child>();
    let run = env.start_with_id("run", waits_on_a_batch()).await.unwrap();
    run.cancel().await.unwrap();
    assert_eq!(run.status().await, RunStatus::Cancelled);
    assert_eq!(env.status("run/0.0").await.unwrap(), RunStatus::Cancelled);
    assert!(matches!(
        run.result().await,
        Err(TestError::Cancelled { .. })
    ));

    // A first_ok's child runs too.
    let env = TestEnv::new();
    env.register::<slow_mirror>();
    let run = env
        .start_with_id("run", fastest_good_mirror(vec![(50, false), (90, true)]))
        .await
        .unwrap();
    env.advance(Duration::from_millis(60)).await.unwrap();
    run.cancel().await.unwrap();
    assert_eq!(run.status().await, RunStatus::Cancelled);
    assert_eq!(env.status("run/0.0").await.unwrap(), RunStatus::ReturnedErr);
    assert_eq!(env.status("run/0.1").await.unwrap(), RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_workflows_resume_at_every_step_as_they_ran() {
    let pattern = vec![true, false, true, false, true, true, true];
    let steps = check_resumes_with(|| first_three(pattern.clone()), |_| {})
        .await
        .unwrap();
    assert_eq!(steps, 1);
    let steps = check_resumes_with(named_steps, |env| {
        env.register::<checked_child>();
    })
    .await
    .unwrap();
    assert_eq!(steps, 6);
    let steps = check_resumes_with(
        || fastest_good_mirror(vec![(10, false), (1000, true), (100, true)]),
        |env| {
            env.register::<slow_mirror>();
        },
    )
    .await
    .unwrap();
    assert_eq!(steps, 1);
    check_resumes_with(two_of_four, |env| {
        env.register::<idle_child>();
    })
    .await
    .unwrap();
}

type FirstSignal = Result<(usize, u32), Vec<SignalTimeout>>;

/// Takes the first of signals `a` and `b` to arrive, then waits for `b`.
#[workflow]
async fn two_signals() -> (FirstSignal, u32) {
    flow::sleep(Duration::from_millis(50)).await;
    let first = flow::first_ok(vec![
        flow::signal::<u32>("a").timeout(HOUR),
        flow::signal::<u32>("b").timeout(HOUR),
    ])
    .await;
    let b = flow::signal::<u32>("b").await;
    (first, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_ok_takes_only_its_winners_signal() {
    // Both signals wait in the inbox when the first_ok starts: branch 0 wins with `a`, and
    // `b` stays for the wait after it.
    let engine = engine().open_in_memory().await.unwrap();
    let run = engine.start("run", two_signals()).await.unwrap();
    engine.signal("run", "a", &1u32).await.unwrap();
    engine.signal("run", "b", &2u32).await.unwrap();
    let expected = tokio::time::timeout(Duration::from_secs(20), run.result())
        .await
        .expect("the engine's run did not finish")
        .unwrap();
    engine.shutdown().await;
    assert_eq!(expected, (Ok((0, 1)), 2));

    let env = TestEnv::new();
    let run = env.start_with_id("run", two_signals()).await.unwrap();
    run.signal("a", &1u32).await.unwrap();
    run.signal("b", &2u32).await.unwrap();
    assert_eq!(run.result().await.unwrap(), expected);
}
