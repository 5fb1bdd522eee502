// A field moved into an awaited call while the rest of its struct is used after the step:
// the macro cannot tell a move from a copy, so rustc reports the partial move (README,
// the refusals table: clone the field, or take the fields out first).
use flow::{task, workflow};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Bag {
    name: String,
    id: u32,
}

#[task]
async fn greet(name: String, n: u32) -> String {
    format!("{name}/{n}")
}

#[workflow]
async fn wf(b: Bag) -> String {
    let g = greet(b.name, 1).await;
    format!("{g} {}", b.id)
}

fn main() {}
