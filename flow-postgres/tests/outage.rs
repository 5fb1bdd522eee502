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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_rides_out_a_database_restart_and_loses_nothing() {
    let cluster = match TestCluster::start() {
        Ok(cluster) => cluster,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and PostgreSQL could not be started: {why}")
        }
        Err(why) => return eprintln!("skipping a PostgreSQL test: {why}"),
    };
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
    let halt = tokio::task::spawn_blocking(move || {
        cluster.halt();
        std::thread::sleep(Duration::from_secs(1));
        cluster.resume();
        cluster
    });
    let cluster = halt.await.unwrap();
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
