//! PostgreSQL stopped as a crash would (`pg_ctl stop -m immediate`) and started again
//! mid-load: the engine reports the outage, reconnects and goes on; every run finishes,
//! and nothing acknowledged is lost (a new engine on the database finds every result).
//! On a cluster of its own, since it stops the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flow::{task, workflow, Engine, RunStatus};
use flow_postgres::testing::TestCluster;
use flow_postgres::{OpenPostgres, Postgres};

static DONE_STEPS: AtomicU64 = AtomicU64::new(0);

#[task]
async fn step(x: u64) -> u64 {
    // Long enough that the load outlasts stopping the server, however slow that is.
    tokio::time::sleep(Duration::from_millis(500)).await;
    DONE_STEPS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[workflow]
async fn three(x: u64) -> u64 {
    let a = step(x).await;
    let b = step(a).await;
    let c = step(b).await;
    c
}

/// A cluster of this test's own (it stops the server); `None` (after saying why) without
/// PostgreSQL, except under `CI=true`.
fn own_cluster() -> Option<TestCluster> {
    match TestCluster::start() {
        Ok(cluster) => Some(cluster),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and PostgreSQL could not be started: {why}")
        }
        Err(why) => {
            eprintln!("skipping a PostgreSQL test: {why}");
            None
        }
    }
}

/// The server goes away for a second, as after a crash, and comes back.
async fn outage(cluster: TestCluster) -> TestCluster {
    tokio::task::spawn_blocking(move || {
        cluster.halt();
        std::thread::sleep(Duration::from_secs(1));
        cluster.resume();
        cluster
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_rides_out_a_database_restart_and_loses_nothing() {
    let Some(cluster) = own_cluster() else { return };
    let url = cluster.create_database("outage");
    let engine = Postgres::new(url.clone())
        .lease(Duration::from_secs(20))
        .open(Engine::builder().register::<three>())
        .await
        .unwrap();
    let runs = 60u64;
    let mut handles = Vec::new();
    for i in 0..runs {
        handles.push(engine.start(&format!("r{i}"), three(i)).await.unwrap());
    }
    // Mid-load: the server goes away for a second, as after a crash, and comes back.
    while DONE_STEPS.load(Ordering::SeqCst) < 30 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cluster = outage(cluster).await;
    assert!(
        DONE_STEPS.load(Ordering::SeqCst) < 3 * runs,
        "the outage came mid-load"
    );
    for (i, handle) in handles.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(30), handle.result())
            .await
            .expect("the run finished after the outage")
            .unwrap();
        assert_eq!(out, i as u64 + 3);
    }
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<three>()
        .open_postgres(&url)
        .await
        .unwrap();
    for i in 0..runs {
        let run = engine.handle::<three>(&format!("r{i}")).unwrap();
        assert_eq!(run.status().await.unwrap(), RunStatus::Completed);
        assert_eq!(run.result().await.unwrap(), i + 3);
    }
    engine.shutdown().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rides_out_a_database_restart_and_loses_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let Some(cluster) = own_cluster() else { return };
    let url = cluster.create_database("cluster_outage");
    let member = || {
        Postgres::new(url.clone())
            .lease(Duration::from_secs(20))
            .shards(12)
            .cluster(|| Engine::builder().register::<three>())
    };
    let (a, b) = (member().await.unwrap(), member().await.unwrap());
    while a.held_shards().len() != 6 || b.held_shards().len() != 6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Runs started through both members, in shards of both.
    let runs = 40u64;
    let before = DONE_STEPS.load(Ordering::SeqCst);
    for i in 0..runs {
        let through = if i % 2 == 0 { &a } else { &b };
        through.start(&format!("c{i}"), three(i)).await.unwrap();
    }
    while DONE_STEPS.load(Ordering::SeqCst) < before + 20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cluster = outage(cluster).await;
    assert!(
        DONE_STEPS.load(Ordering::SeqCst) < before + 3 * runs,
        "the outage came mid-load"
    );
    // Results read through the other member than the one that started each run.
    for i in 0..runs {
        let through = if i % 2 == 0 { &b } else { &a };
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            through.result::<three>(&format!("c{i}")),
        )
        .await
        .expect("the run finished after the outage")
        .unwrap();
        assert_eq!(out, i + 3);
    }
    eprintln!(
        "results read; server answers: {:?}",
        cluster.query("postgres", "SELECT 1")
    );
    a.shutdown().await;
    b.shutdown().await;

    // A new member finds every result.
    let c = member().await.unwrap();
    for i in 0..runs {
        assert_eq!(c.result::<three>(&format!("c{i}")).await.unwrap(), i + 3);
    }
    c.shutdown().await;
    drop(cluster);
}
