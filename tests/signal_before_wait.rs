//! A signal that reaches a run before the run waits for it is taken after the
//! transition that starts the wait, by the driver's next turn. An engine that stops in
//! between (a crash; a PostgreSQL shard handed to another process) must find the run
//! again when the journal is opened: it does, by the signal in its inbox.

mod support;

use std::time::Duration;

use flow::{task, workflow, Engine, EventKind};
use support::{halting, ScratchDir};

#[task]
async fn slow_inc(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    x + 1
}

#[workflow]
async fn early_signal(x: u64) -> u64 {
    let a = slow_inc(x).await;
    let go: u64 = flow::signal("go").await;
    a + go
}

fn builder() -> flow::EngineBuilder {
    Engine::builder().register::<early_signal>()
}

#[tokio::test]
async fn a_signal_sent_before_the_wait_survives_a_crash_at_every_commit() {
    let dir = ScratchDir::new("signal-before-wait");
    // The start, the signal, the task's result with the wait: a crash after each.
    for k in 1..=4 {
        let path = dir.journal(&format!("crash-{k}"));
        let (halting, commits) = halting(builder(), k);
        let engine = halting.open(&path).await.unwrap();
        let _ = engine.start("run", early_signal(1)).await;
        // Sent while the task runs: in the inbox before the run waits for it (unless
        // the engine froze first).
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            engine.signal("run", "go", &10u64),
        )
        .await;
        commits.wait_for(k, Duration::from_secs(2)).await;
        engine.shutdown().await;

        let engine = builder().open(&path).await.unwrap();
        let received = engine
            .history("run")
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e.kind, EventKind::SignalReceived { .. }));
        if !received {
            engine.signal("run", "go", &10u64).await.unwrap();
        }
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            engine.handle::<early_signal>("run").unwrap().result(),
        )
        .await
        .unwrap_or_else(|_| panic!("the run never took its signal after a crash at commit {k}"))
        .unwrap();
        assert_eq!(out, 12, "crash at commit {k}");
        engine.shutdown().await;
    }
}
