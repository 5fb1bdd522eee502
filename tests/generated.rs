//! Differential tests over randomly generated workflows (`tests/corpus/generated.rs`,
//! made by `tests/tools/gen_corpus.py`, which lists the shapes they are built from):
//! plain, compiled, and resumed at every step boundary must agree, for several inputs.

mod corpus;
mod support;
// Included here alone, not through `corpus`, so the other corpus tests do not compile it.
#[path = "corpus/generated.rs"]
mod generated;

use corpus::differential;

const INPUTS: &[i64] = &[-4, 0, 1, 2, 5, 9];

macro_rules! check {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            for &x in INPUTS {
                let _ = differential(|| generated::$name(x)).await;
            }
        }
    };
}

for_each_generated!(check);
