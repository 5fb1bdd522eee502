//! Differential tests of the state-machine compiler: every corpus workflow, run as the
//! plain async function it reads as, as a state machine, and as a state machine rebuilt
//! from its journal at every step boundary, must agree (see `corpus::differential`).

mod corpus;
mod support;

use corpus::differential;
use corpus::workflows::*;
use proptest::prelude::*;

const INPUTS: &[i64] = &[-9, -1, 0, 1, 2, 3, 5, 6, 7, 12, 13, 27, 64, 99];

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let mut total_steps = 0;
                for &x in INPUTS {
                    total_steps += differential(|| corpus::workflows::$name(x)).await.1;
                }
                assert!(total_steps > 0 || stringify!($name) == "no_awaits");
            }
        )*

        /// Every corpus workflow against generated inputs.
        #[test]
        fn generated_inputs() {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            proptest!(ProptestConfig::with_cases(24), |(x in -1000i64..1000)| {
                rt.block_on(async {
                    $( let _ = differential(|| corpus::workflows::$name(x)).await; )*
                });
            });
        }

        /// The size of the corpus, checked so it does not shrink unnoticed.
        const CORPUS: &[&str] = &[$(stringify!($name)),*];
    };
}

corpus_tests!(
    straight_line,
    pattern_binding_hides_a_moved_local,
    moved_local_rebound_in_while_let_and_tuples,
    nested_awaits,
    shadowing,
    if_else,
    if_value,
    if_let_await,
    match_scrutinee,
    match_value,
    loop_counter,
    loop_break_value,
    while_cond_await,
    while_plain,
    while_let_await,
    for_owned,
    for_from_task,
    for_range_tuple,
    continue_in_loop,
    labelled_nested,
    try_in_loop,
    early_return,
    return_in_loop,
    match_errors,
    question_conversion,
    option_workflow,
    block_expression,
    in_condition,
    format_args,
    evaluation_order,
    moves_between_steps,
    reassign_across,
    loop_in_match_in_loop,
    tuple_destructure,
    closures_untouched,
    inner_plain_loop,
    unit_workflow,
    no_awaits,
    compound_assign,
    struct_and_index,
    labelled_block,
    let_else,
    child_plain_call,
    while_with_break_value_and_return,
    parallel_join,
    shadowed_by_patterns,
    places_across_steps,
    labelled_break_value,
    shadow_in_loop_body,
    fan_out,
    fan_out_tolerant,
    fan_out_over_tolerance,
    order_place_then_step,
    order_call_args_and_arrays,
    order_struct_binary_receiver,
    scoped_fn,
    scoped_consts_same_name,
    scoped_fn_in_loop,
    cell_across_steps,
    refcell_across_steps,
    atomic_and_mutex_across_steps,
    cfg_on_steps,
    cfg_locals_and_lints,
    cfg_in_loops_and_arms,
    hash_map_lookups,
    hash_set_sorted,
    btree_map_order,
    move_into_step_and_reassign,
    field_named_like_moved_local,
    format_spec_captures,
    let_else_with_steps,
    huge_range_early_return,
    range_bounds_from_steps,
    diverging_tail,
    vec_repeat_step,
    for_over_borrows,
    vec_list_step,
    borrowed_scrutinees,
    partial_move_then_rest,
    generator_findings_8_to_10,
    while_let_on_a_borrow,
    generator_findings_11_12,
    generator_findings_13_14,
    cfg_let_shadows_loop_item,
    cfg_in_let_read_only_by_cfg_out_step,
    lookup_key_with_step,
    range_adapters_lazily,
    borrows_around_a_step_in_one_expression,
    block_scoped_types_used_in_their_block,
    bindings_named_like_a_moved_local,
);

#[tokio::test]
async fn workflows_with_other_signatures() {
    differential(no_args).await;
    differential(|| many_args(4, "b".into(), vec![1, 2, 3])).await;
}

#[test]
fn corpus_has_at_least_forty_workflows() {
    assert!(CORPUS.len() + 2 >= 40, "corpus has {}", CORPUS.len() + 2);
}

#[tokio::test]
async fn evaluation_order_is_rusts() {
    let (log, _) = differential(|| corpus::workflows::evaluation_order(5)).await;
    assert_eq!(log, ["start 5", "first operand", "sum 11"]);
}

/// The state graph and the run's history show only the steps `#[cfg]` compiles in, each
/// under its index in the graph.
#[tokio::test]
async fn cfg_out_steps_are_not_in_the_graph_or_history() {
    use corpus::workflows::cfg_on_steps as on_steps;
    use flow::{Engine, EventKind, StateGraph, Workflow};
    let graph = <on_steps as Workflow>::graph();
    let names: Vec<&str> = graph.states.iter().map(|s| s.name).collect();
    assert_eq!(names, ["inc", "double"]);
    let (start, end) = (StateGraph::START, StateGraph::END);
    assert_eq!(graph.transitions, [(0, 1), (1, end), (start, 0)]);

    let dir = support::ScratchDir::new("differential-cfg-graph");
    let engine = Engine::builder()
        .register::<on_steps>()
        .open(dir.journal("graph"))
        .await
        .unwrap();
    let run = engine.start("run", on_steps(3)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), on_steps(3).await);
    let states: Vec<(u32, String)> = run
        .history()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepScheduled { state, name, .. } => Some((state, name)),
            _ => None,
        })
        .collect();
    assert_eq!(states, [(0, "inc".to_string()), (1, "double".to_string())]);
    engine.shutdown().await;
}
