//! The tasks and workflows the benchmark runs. Tasks are trivial on purpose: every row
//! measures the engine (state machine, encoding, journal, scheduling), not task bodies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flow::{task, workflow};

/// When each `tick` body started (row 2 derives per-step latency from it).
static TICKS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

/// How many `hang` bodies have started in this process (row 5's "resumed" signal).
pub static HANG_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Takes the start times recorded by `tick` so far, oldest first.
pub fn take_ticks() -> Vec<Instant> {
    std::mem::take(&mut *TICKS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The trivial step of rows 3 and 4.
#[task]
pub async fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// A trivial step that records when its body started.
#[task]
pub async fn tick(acc: u64) -> u64 {
    TICKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Instant::now());
    acc.wrapping_add(1)
}

/// The trivial step of row 6's loops.
#[task]
pub async fn add(acc: u64, item: u64) -> u64 {
    acc.wrapping_add(item)
}

/// A task that never finishes: it counts its start, then waits forever (until the
/// engine aborts it at shutdown).
#[task]
pub async fn hang(x: u64) -> u64 {
    HANG_STARTED.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    x
}

/// Row 2: `steps` sequential steps in a `for` loop.
#[workflow]
pub async fn sequential(steps: u64) -> u64 {
    let mut acc = 0;
    for _ in 0..steps {
        acc = tick(acc).await;
    }
    acc
}

/// Row 4: row 2's loop with row 3's task, so the cost of many steps is not mixed with
/// that of starting and finishing a run.
#[workflow]
pub async fn hundred_steps(x: u64) -> u64 {
    let mut acc = x;
    for _ in 0..100 {
        acc = inc(acc).await;
    }
    acc
}

/// Rows 3 and 4: three steps in a row.
#[workflow]
pub async fn three_steps(x: u64) -> u64 {
    let a = inc(x).await;
    let b = inc(a).await;
    inc(b).await
}

/// Row 5: one durable sleep of `secs` seconds.
#[workflow]
pub async fn nap(secs: u64) {
    flow::sleep(Duration::from_secs(secs)).await;
}

/// Row 5: a run whose only step is a task that never finishes.
#[workflow]
pub async fn stuck(x: u64) -> u64 {
    hang(x).await
}

/// Row 6: a `for` loop over an owned `Vec` of `n` items, one step per item.
#[workflow]
pub async fn item_loop(n: u64) -> u64 {
    let items: Vec<u64> = (0..n).collect();
    let mut acc = 0;
    for item in items {
        acc = add(acc, item).await;
    }
    acc
}

/// Row 8: one map of `n` trivial task calls, 100 in flight.
#[workflow]
pub async fn fan_out(n: u64) -> u64 {
    let outputs = flow::map(0..n, 100, inc).await;
    outputs.iter().sum()
}

/// Row 9: a run that completes in its first step (no durable operation), so a journal
/// of a million runs is quick to fill.
#[workflow]
pub async fn at_once(x: u64) -> u64 {
    x.wrapping_add(1)
}
