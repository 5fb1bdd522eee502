// The engine-at-every-commit suite, run on each store: included by
// `tests/engine_resume.rs` (journal files) and `tests/engine_resume_postgres.rs`
// (PostgreSQL), each of which defines `journals(name)`, where a test's journals are
// (`None`: the test skips).

use corpus::engine::crash_at_every_commit;

macro_rules! engine_crash_tests {
    ($($name:ident($input:expr)),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(journals) = journals(stringify!($name)) else {
                    return;
                };
                crash_at_every_commit(&journals, || corpus::workflows::$name($input)).await;
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
