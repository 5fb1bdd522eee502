use flow::{task, workflow};

#[task]
async fn inc(x: i64) -> i64 {
    x + 1
}

#[workflow]
async fn wf(x: i64) -> Vec<i64> {
    let mut trace = Vec::new();
    let n = inc(x).await;
    for i in 0..2 {
        #[cfg(any())]
        let n = inc(i).await;
        trace.push(i);
    }
    trace.push(n);
    trace
}

fn main() {}
