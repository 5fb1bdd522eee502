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

for_each_corpus_workflow!(corpus_tests);

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
