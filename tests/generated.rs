//! Differential tests over randomly generated workflows (`tests/corpus/generated.rs`,
//! made by `tests/tools/gen_corpus.py`, which lists the shapes they are built from):
//! plain, compiled, and resumed at every step boundary must agree, for several inputs.

mod corpus;

use corpus::differential;

const INPUTS: &[i64] = &[-4, 0, 1, 2, 5, 9];

macro_rules! check {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            for &x in INPUTS {
                let _ = differential(|| corpus::generated::$name(x)).await;
            }
        }
    };
}

for_each_generated!(check);
