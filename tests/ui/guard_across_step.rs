// A `MutexGuard` (not `Send`) held across a step: the workflow's plain run must be `Send`,
// so rustc refuses it and points at the guard and the `.await`.
use flow::{task, workflow};
use std::sync::Mutex;

#[task]
async fn num(x: i64) -> i64 {
    x
}

#[workflow]
async fn wf(x: i64) -> i64 {
    let m = Mutex::new(vec![x]);
    let n = m.lock().unwrap().len() as i64 + num(x).await;
    n
}

fn main() {}
