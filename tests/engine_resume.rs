//! The corpus on the real engine and a real redb file: for every k, the engine stops
//! (as if the process died) right after its k-th durable commit, is dropped, and the file
//! is reopened by a new engine that finishes the run. The output must equal the plain
//! async function's, and every step must be committed exactly once in the history.

mod corpus;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use corpus::workflows::*;
use flow::{Engine, EventKind, Workflow};
use support::{halting, Commits, ScratchDir};

/// Asserts that each step number appears in exactly one `StepCompleted`, contiguously.
fn assert_steps_committed_once(history: &[flow::HistoryEvent], what: &str) {
    let mut completed: BTreeMap<u64, usize> = BTreeMap::new();
    for e in history {
        if let EventKind::StepCompleted { step, .. } = e.kind {
            *completed.entry(step).or_default() += 1;
        }
    }
    for (step, n) in &completed {
        assert_eq!(*n, 1, "{what}: step {step} completed {n} times");
    }
    let steps: Vec<u64> = completed.keys().copied().collect();
    assert_eq!(
        steps,
        (0..steps.len() as u64).collect::<Vec<_>>(),
        "{what}: steps not contiguous"
    );
}

/// Runs `make()` uninterrupted to count its commits, then crashes it after every commit.
async fn crash_at_every_commit<W, F>(name: &str, make: F)
where
    W: Workflow + std::future::IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + std::fmt::Debug,
    F: Fn() -> W,
{
    let expected = make().await;
    let dir = ScratchDir::new(&format!("engine-resume-{name}"));
    let path = dir.journal("reference");
    let (builder_counting, commits) = Commits::counting(builder());
    let engine = builder_counting.open(&path).await.unwrap();
    let out = engine
        .start("run", make())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(out, expected, "{name}: uninterrupted engine run");
    engine.shutdown().await;
    let total = commits.get();
    assert!(
        total >= 2,
        "{name}: a run commits at least its start and its end"
    );

    for k in 1..total {
        let path = dir.journal(&format!("crash-{k}"));
        let (halting, commits) = halting(builder(), k);
        let engine = halting.open(&path).await.unwrap();
        let _ = engine.start("run", make()).await;
        // The engine freezes after its k-th commit; wait for it to get there.
        assert_eq!(
            commits.wait_for(k, Duration::from_secs(2)).await,
            k,
            "{name}: halted engine committed more than {k}"
        );
        engine.shutdown().await;

        let engine = builder().open(&path).await.unwrap();
        let handle = engine.handle::<W>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), handle.result())
            .await
            .unwrap_or_else(|_| panic!("{name}: run did not finish after a crash at commit {k}"))
            .unwrap();
        assert_eq!(out, expected, "{name}: output after a crash at commit {k}");
        let history = engine.history("run").await.unwrap();
        assert_steps_committed_once(&history, &format!("{name} crashed at commit {k}"));
        engine.shutdown().await;
        Engine::remove_journal(&path).unwrap();
    }
}

macro_rules! engine_crash_tests {
    ($($name:ident($input:expr)),* $(,)?) => {
        /// An engine with every corpus workflow registered.
        fn builder() -> flow::EngineBuilder {
            Engine::builder()$(.register::<$name>())*
        }

        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crash_at_every_commit(stringify!($name), || corpus::workflows::$name($input)).await;
            }
        )*
    };
}

engine_crash_tests!(
    straight_line(4),
    nested_awaits(3),
    shadowing(5),
    if_else(6),
    if_value(-3),
    if_let_await(8),
    match_scrutinee(6),
    match_value(2),
    loop_counter(1),
    loop_break_value(4),
    while_cond_await(5),
    while_plain(1),
    while_let_await(12),
    for_owned(2),
    for_from_task(5),
    for_range_tuple(3),
    continue_in_loop(1),
    labelled_nested(2),
    try_in_loop(1),
    early_return(3),
    return_in_loop(4),
    match_errors(14),
    question_conversion(2),
    option_workflow(8),
    block_expression(2),
    in_condition(6),
    format_args(3),
    evaluation_order(5),
    moves_between_steps(9),
    reassign_across(2),
    loop_in_match_in_loop(1),
    tuple_destructure(17),
    closures_untouched(2),
    inner_plain_loop(7),
    unit_workflow(3),
    compound_assign(4),
    struct_and_index(2),
    labelled_block(4),
    let_else(10),
    child_plain_call(2),
    while_with_break_value_and_return(2),
    parallel_join(8),
    shadowed_by_patterns(6),
    places_across_steps(3),
    labelled_break_value(2),
    shadow_in_loop_body(1),
    fan_out(4),
    fan_out_tolerant(5),
    fan_out_over_tolerance(2),
);
