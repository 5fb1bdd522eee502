//! Shared by the differential tests: deterministic tasks and the workflow corpus.
#![allow(dead_code)]

pub mod engine;
pub mod store;
pub mod tasks;
pub mod workflows;

use flow::testing::{Driver, Restore, StepRecord};
use flow::{OpRequest, Workflow};
use std::fmt::Debug;
use std::future::{Future, IntoFuture};
use std::task::Poll;

use engine::Crash;
use store::Journals;

/// Calls `$check!` once with every corpus workflow that takes one `i64` (all but
/// `no_args` and `many_args`).
#[macro_export]
macro_rules! for_each_corpus_workflow {
    ($check:ident) => {
        $check!(
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
    };
}

/// Where [`differential_in`] keeps a run's journal, and so how a run is rebuilt from it.
#[derive(Clone, Copy)]
pub enum JournalIn<'a> {
    /// The in-process driver's memory (`flow::testing::Driver`): the machine is rebuilt
    /// from the slots it saved, at a step boundary.
    Driver,
    /// An engine's journal made by `journals`: the engine stops right after a commit,
    /// as if its process died, and a new one reopens the journal and finishes.
    Engine {
        /// Where the journals are.
        journals: &'a Journals,
        /// Whether the run is also rebuilt once after each commit in turn (an engine
        /// opening twice per commit), besides at every step boundary in one run.
        each_commit: bool,
    },
}

/// Where a run is rebuilt from its journal.
#[derive(Debug, Clone, Copy)]
enum Rebuild {
    Never,
    /// At every boundary: every step (driver), every step boundary (engine, see
    /// [`Crash::AtEveryStep`]).
    Everywhere,
    /// Once, at boundary `k` (0-based).
    At(usize),
}

/// What one run did.
struct Ran<O> {
    output: O,
    steps: Vec<StepRecord>,
    /// The boundaries it can be rebuilt at: its steps (driver), its commits but the
    /// last, which ends the run (engine).
    boundaries: usize,
}

impl JournalIn<'_> {
    async fn run<W, F>(self, make: F, rebuild: Rebuild) -> Ran<<W as Workflow>::Output>
    where
        W: Workflow,
        F: Fn() -> W,
    {
        match self {
            JournalIn::Driver => {
                let restore = match rebuild {
                    Rebuild::Never => Restore::Never,
                    Rebuild::Everywhere => Restore::EveryStep,
                    Rebuild::At(k) => Restore::AtStep(k),
                };
                let mut driver = Driver::new();
                let output = driver
                    .run(make(), restore)
                    .await
                    .unwrap_or_else(|e| panic!("{restore:?}: {e}"));
                let boundaries = driver.steps.len();
                Ran {
                    output,
                    steps: driver.steps,
                    boundaries,
                }
            }
            JournalIn::Engine { journals, .. } => {
                let crash = match rebuild {
                    Rebuild::Never => Crash::Never,
                    Rebuild::Everywhere => Crash::AtEveryStep,
                    Rebuild::At(k) => Crash::AfterCommit(k as u64 + 1),
                };
                // Boxed: the engine's future is large, and the driver's runs (whose
                // futures hold this one) are awaited in deep stacks.
                let mut run = Box::pin(engine::run(journals, make, crash)).await;
                engine::assert_steps_committed_once(&run.history, &format!("{crash:?}"));
                // A map's output says which failure ended first, an order the engine's
                // concurrent items do not fix: the workflow's output shows what it used.
                for step in &mut run.steps {
                    if is_map(&step.request) {
                        step.output.clear();
                    }
                }
                Ran {
                    output: run.output,
                    steps: run.steps,
                    boundaries: run.commits.saturating_sub(1) as usize,
                }
            }
        }
    }
}

/// Runs `make()` as plain async code, as an uninterrupted state machine, rebuilt from
/// its journal before every step, and rebuilt once at each step boundary in turn, with
/// the journal in the driver's memory; see [`differential_in`].
pub async fn differential<W, F>(make: F) -> (<W as Workflow>::Output, usize)
where
    W: Workflow + IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + Debug + Clone,
    F: Fn() -> W,
{
    differential_in(JournalIn::Driver, make).await
}

/// Runs `make()` as plain async code, as an uninterrupted state machine, rebuilt from
/// its journal (kept in `journal`) at every step boundary in one run, and rebuilt once
/// at each boundary in turn (for an engine, as `journal` says); all must give the same
/// output and the rebuilt runs must perform exactly the same steps. Returns the output
/// and the number of steps.
pub async fn differential_in<W, F>(
    journal: JournalIn<'_>,
    make: F,
) -> (<W as Workflow>::Output, usize)
where
    W: Workflow + IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + Debug + Clone,
    F: Fn() -> W,
{
    let plain = make().await;
    let reference = journal.run(&make, Rebuild::Never).await;
    assert_eq!(
        reference.output, plain,
        "state machine differs from the plain async function"
    );
    let mut modes = vec![Rebuild::Everywhere];
    if !matches!(
        journal,
        JournalIn::Engine {
            each_commit: false,
            ..
        }
    ) {
        modes.extend((0..reference.boundaries).map(Rebuild::At));
    }
    let runs: Vec<_> = modes.iter().map(|&mode| journal.run(&make, mode)).collect();
    let runs = match journal {
        JournalIn::Driver => {
            let mut done = Vec::new();
            for run in runs {
                done.push(run.await);
            }
            done
        }
        // Engines spend most of their time waiting for the database: run them together.
        JournalIn::Engine { .. } => join_all(runs).await,
    };
    for (mode, run) in modes.into_iter().zip(runs) {
        assert_eq!(run.output, plain, "output differs when resumed ({mode:?})");
        assert_eq!(
            run.steps, reference.steps,
            "steps differ when resumed ({mode:?})"
        );
    }
    (plain, reference.steps.len())
}

/// Whether `request` awaits a map (or a batch) of items.
fn is_map(request: &OpRequest) -> bool {
    match request {
        OpRequest::Map { .. } | OpRequest::Batch { .. } => true,
        OpRequest::Named { op, .. } => is_map(op),
        OpRequest::All(ops) | OpRequest::Race(ops) | OpRequest::FirstOk(ops) => {
            ops.iter().any(is_map)
        }
        _ => false,
    }
}

/// Polls `futures` together; their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(done) = future.as_mut().poll(cx) {
                    *output = Some(done);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
