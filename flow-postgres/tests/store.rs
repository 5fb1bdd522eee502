//! The PostgreSQL store in one process, on a throwaway cluster (`scripts/pg-cluster.sh`):
//! runs complete and survive a restart; a crash after every commit resumes without
//! rerunning a committed step; primitives (signals, sleeps, children, maps); bad input
//! refused with clear errors, changing nothing; the lease refuses a second driver, and
//! the database refuses the commits of a process whose lease was taken over.
//!
//! Without PostgreSQL each test prints why and passes, except under `CI=true`, where it
//! fails (see `flow_postgres::testing`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::{task, workflow, Engine, EventKind, FlowError, RunStatus};
use flow_postgres::testing::TestCluster;
use flow_postgres::{OpenPostgres, Postgres};

static EXECUTIONS: Mutex<BTreeMap<(String, u64), u32>> = Mutex::new(BTreeMap::new());

fn executions(test: &str) -> BTreeMap<u64, u32> {
    EXECUTIONS
        .lock()
        .unwrap()
        .iter()
        .filter(|((t, _), _)| t == test)
        .map(|((_, i), n)| (*i, *n))
        .collect()
}

#[task]
async fn bump(test: String, step: u64, x: u64) -> u64 {
    *EXECUTIONS.lock().unwrap().entry((test, step)).or_default() += 1;
    x * 2 + step
}

#[workflow]
async fn three_steps(test: String, x: u64) -> u64 {
    let a = bump(test.clone(), 0, x).await;
    let b = bump(test.clone(), 1, a).await;
    let c = bump(test.clone(), 2, b).await;
    c
}

#[task]
async fn square(x: u64) -> u64 {
    x * x
}

#[workflow]
async fn child_square(x: u64) -> u64 {
    let y = square(x).await;
    y
}

#[workflow]
async fn primitives(n: u64) -> u64 {
    let squares = flow::map(0..n, 3, square).await;
    flow::sleep(Duration::from_millis(50)).await;
    let approval: u64 = flow::signal("approve").await;
    let child = child_square(approval).await;
    squares.iter().sum::<u64>() + child
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<three_steps>()
        .register::<primitives>()
        .register::<child_square>()
}

fn cluster() -> Option<&'static TestCluster> {
    TestCluster::shared()
}

fn expected(x: u64) -> u64 {
    let a = x * 2;
    let b = a * 2 + 1;
    b * 2 + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_complete_and_survive_a_restart() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("restart");
    let test = "restart".to_string();
    let engine = builder().open_postgres(&url).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..20 {
        handles.push(
            engine
                .start(&format!("r{i}"), three_steps(test.clone(), i))
                .await
                .unwrap(),
        );
    }
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.result().await.unwrap(), expected(i as u64));
    }
    engine.shutdown().await;
    let ran = executions(&test);
    assert_eq!(ran, BTreeMap::from([(0, 20), (1, 20), (2, 20)]));

    // The journal lives in the database: a new engine sees every run, reruns nothing.
    let blocks = cluster.query(db_name(&url), "SELECT count(*) FROM flow_blocks");
    assert_ne!(blocks[0][0].as_deref(), Some("0"));
    let engine = builder().open_postgres(&url).await.unwrap();
    for i in 0..20u64 {
        let run = engine.handle::<three_steps>(&format!("r{i}")).unwrap();
        assert_eq!(run.status().await.unwrap(), RunStatus::Completed);
        assert_eq!(run.result().await.unwrap(), expected(i));
    }
    assert_eq!(engine.list().await.unwrap().len(), 20);
    engine.shutdown().await;
    assert_eq!(executions(&test), ran, "nothing reran");
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_every_commit_resumes_without_rerunning_committed_steps() {
    let Some(cluster) = cluster() else { return };
    // A run takes 4 commits (start, three results); crash after each of 1..=4.
    for k in 1..=4u64 {
        let url = cluster.create_database("crash");
        let test = format!("crash-{k}");
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let engine = builder()
            .halt_after_commits(k)
            .on_commit(move |t| counter.store(t, Ordering::SeqCst))
            .open_postgres(&url)
            .await
            .unwrap();
        let _ = engine.start("run", three_steps(test.clone(), 5)).await;
        for _ in 0..2000 {
            if reached.load(Ordering::SeqCst) >= k {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(reached.load(Ordering::SeqCst), k, "crash at {k}");
        engine.shutdown().await;
        // Steps whose result was committed at the crash.
        let reader = Engine::builder().open_postgres(&url).await.unwrap();
        let committed: Vec<u64> = reader
            .history("run")
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::StepCompleted { step, .. } => Some(step),
                _ => None,
            })
            .collect();
        reader.shutdown().await;
        assert_eq!(committed.len() as u64, k - 1, "crash at {k}: {committed:?}");
        let before = executions(&test);

        let engine = builder().open_postgres(&url).await.unwrap();
        let run = engine.handle::<three_steps>("run").unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), run.result())
            .await
            .unwrap_or_else(|_| panic!("crash at {k}: did not finish"))
            .unwrap();
        assert_eq!(out, expected(5), "crash at {k}");
        engine.shutdown().await;
        let after = executions(&test);
        for step in 0..3u64 {
            if step < k - 1 {
                assert_eq!(
                    after.get(&step),
                    before.get(&step),
                    "crash at {k}: step {step} reran"
                );
                assert_eq!(after.get(&step), Some(&1), "crash at {k}: step {step}");
            } else {
                assert!(
                    after.get(&step).is_some_and(|n| *n >= 1),
                    "crash at {k}: {after:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_sleeps_signals_and_children_across_a_restart() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("primitives");
    let engine = builder().open_postgres(&url).await.unwrap();
    let run = engine.start("p", primitives(6)).await.unwrap();
    // Wait for the signal wait, then restart before sending it.
    for _ in 0..500 {
        if run.status().await.unwrap() == RunStatus::Waiting {
            let waits_for_signal = engine
                .history("p")
                .await
                .unwrap()
                .iter()
                .any(|e| format!("{:?}", e.kind).contains("signal:approve"));
            if waits_for_signal {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    let engine = builder().open_postgres(&url).await.unwrap();
    engine.signal("p", "approve", &7u64).await.unwrap();
    let run = engine.handle::<primitives>("p").unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), run.result())
        .await
        .expect("the run finished")
        .unwrap();
    // 0 + 1 + 4 + 9 + 16 + 25 = 55, and the child's 7 * 7.
    assert_eq!(out, 55 + 49);
    engine.shutdown().await;
}

fn refusal(result: Result<Engine, FlowError>) -> String {
    match result {
        Ok(_) => panic!("the open should have been refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let Some(cluster) = cluster() else { return };
    let error = refusal(builder().open_postgres("postgres://flow@[bad").await);
    assert!(
        error.contains("not a PostgreSQL connection string"),
        "{error}"
    );

    let wrong_password = format!("postgres://flow:nope@127.0.0.1:{}/postgres", cluster.port());
    let error = refusal(builder().open_postgres(&wrong_password).await);
    assert!(error.contains("refused the password"), "{error}");
    assert!(
        !error.contains("nope"),
        "the password is not printed: {error}"
    );

    let error = refusal(builder().open_postgres(&cluster.url("no_such_db")).await);
    assert!(error.contains("does not exist"), "{error}");

    // A closed port: find one by binding and releasing it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = refusal(
        builder()
            .open_postgres(&format!("postgres://flow:flow@127.0.0.1:{port}/postgres"))
            .await,
    );
    assert!(error.contains("could not connect"), "{error}");

    // Another application's database.
    let url = cluster.create_database("other_app");
    let db = db_name(&url);
    cluster.execute(
        db,
        "CREATE TABLE orders (id INT PRIMARY KEY); INSERT INTO orders VALUES (1)",
    );
    let error = refusal(builder().open_postgres(&url).await);
    assert!(
        error.contains("another application") && error.contains("orders"),
        "{error}"
    );
    let tables = cluster.query(
        db,
        "SELECT string_agg(table_name::TEXT, ',') FROM information_schema.tables \
         WHERE table_schema = 'public'",
    );
    assert_eq!(
        tables[0][0].as_deref(),
        Some("orders"),
        "nothing was created"
    );

    // A schema newer than the code's.
    let url = cluster.create_database("newer");
    let db = db_name(&url);
    let engine = builder().open_postgres(&url).await.unwrap();
    engine
        .start("r", three_steps("newer".into(), 1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;
    cluster.execute(db, "UPDATE flow_meta SET schema_version = 99");
    let before = cluster.query(
        db,
        "SELECT md5(string_agg(data::TEXT, ',' ORDER BY file, idx)) FROM flow_blocks",
    );
    let error = refusal(builder().open_postgres(&url).await);
    assert!(
        error.contains("schema version 99, newer than this code's"),
        "{error}"
    );
    let after = cluster.query(
        db,
        "SELECT md5(string_agg(data::TEXT, ',' ORDER BY file, idx)) FROM flow_blocks",
    );
    assert_eq!(before, after, "nothing was changed");
    let version = cluster.query(db, "SELECT schema_version FROM flow_meta");
    assert_eq!(version[0][0].as_deref(), Some("99"));
    let lease = cluster.query(db, "SELECT owner IS NULL FROM flow_shards");
    assert_eq!(lease[0][0].as_deref(), Some("t"), "no lease was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_driver_at_a_time_and_a_standby_takes_over() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("lease");
    let first = builder().open_postgres(&url).await.unwrap();
    let error = refusal(builder().open_postgres(&url).await);
    assert!(
        error.contains("driven by another engine process"),
        "{error}"
    );

    // A standby waits; the holder's shutdown releases the lease and it takes over.
    let standby = tokio::spawn(
        Postgres::new(url.clone())
            .wait_for_lease(Duration::from_secs(20))
            .open(builder()),
    );
    let run = first
        .start("r", three_steps("lease".into(), 3))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), expected(3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !standby.is_finished(),
        "the standby waits while the lease is held"
    );
    first.shutdown().await;
    let second = tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .expect("the standby took over")
        .unwrap()
        .unwrap();
    let run = second.handle::<three_steps>("r").unwrap();
    assert_eq!(run.result().await.unwrap(), expected(3));
    second.shutdown().await;
    let fence = cluster.query(db_name(&url), "SELECT fence FROM flow_shards");
    assert_eq!(
        fence[0][0].as_deref(),
        Some("2"),
        "two holdings, two fences"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_commits_after_a_takeover() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("fence");
    let db = db_name(&url);
    let old = Postgres::new(url.clone())
        .lease(Duration::from_secs(30))
        .open(builder())
        .await
        .unwrap();
    old.start("before", three_steps("fence".into(), 1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    // As if the old process were paused past its lease: the lease expires, and a new
    // process takes it over (fence 2). The old one still believes it holds it.
    cluster.execute(
        db,
        "UPDATE flow_shards SET expires_at = clock_timestamp() - INTERVAL '1 second'",
    );
    let new = builder().open_postgres(&url).await.unwrap();
    let late = old.start("late", three_steps("fence".into(), 2)).await;
    let error = match late {
        Ok(_) => panic!("the late commit was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("no longer holds the journal's lease"),
        "{error}"
    );
    // The new holder never sees the refused run, and drives the old ones.
    assert!(matches!(
        new.status("late").await,
        Err(FlowError::UnknownRun { .. })
    ));
    assert_eq!(new.status("before").await.unwrap(), RunStatus::Completed);
    let run = new
        .start("after", three_steps("fence".into(), 4))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), expected(4));
    old.shutdown().await;
    new.shutdown().await;
    let lease = cluster.query(db, "SELECT fence, owner IS NULL FROM flow_shards");
    assert_eq!(lease[0][0].as_deref(), Some("2"));
    assert_eq!(
        lease[0][1].as_deref(),
        Some("t"),
        "the new holder released its lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_opening_a_new_database_at_once_create_its_schema_once() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("race");
    let opens: Vec<_> = (0..4)
        .map(|_| tokio::spawn(builder().open_postgres(&url)))
        .collect();
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for open in opens {
        match open.await.unwrap() {
            Ok(engine) => opened.push(engine),
            Err(e) => refused.push(e.to_string()),
        }
    }
    // One drives; the others are refused for the lease, none for the schema.
    assert_eq!(opened.len(), 1, "{refused:?}");
    for error in &refused {
        assert!(
            error.contains("driven by another engine process"),
            "{error}"
        );
    }
    let run = opened[0]
        .start("r", three_steps("race".into(), 2))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), expected(2));
    for engine in opened {
        engine.shutdown().await;
    }
    let meta = cluster.query(
        db_name(&url),
        "SELECT count(*), max(schema_version) FROM flow_meta",
    );
    assert_eq!(meta[0][0].as_deref(), Some("1"));
    assert_eq!(
        meta[0][1].as_deref(),
        Some(flow_postgres::SCHEMA_VERSION.to_string().as_str())
    );
}

/// The schema as flow-postgres wrote it before shards (version 1), made from a current
/// database of one shard: the lease in `flow_lease`, no shard tables.
fn downgrade_to_version_1(cluster: &TestCluster, db: &str) {
    cluster.execute(
        db,
        "CREATE TABLE flow_lease (id INT PRIMARY KEY CHECK (id = 1), owner TEXT, \
             fence BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL); \
         INSERT INTO flow_lease SELECT 1, owner, fence, expires_at FROM flow_shards \
             WHERE shard = 0; \
         DROP TABLE flow_shards; DROP TABLE flow_members; DROP TABLE flow_requests; \
         ALTER TABLE flow_meta DROP COLUMN shards; \
         UPDATE flow_meta SET schema_version = 1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_version_1_becomes_a_cluster_of_one_shard_with_its_runs() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("v1");
    let db = db_name(&url);
    let engine = builder().open_postgres(&url).await.unwrap();
    for i in 0..3 {
        let run = engine
            .start(format!("old-{i}"), three_steps("v1".into(), i))
            .await
            .unwrap();
        assert_eq!(run.result().await.unwrap(), expected(i));
    }
    engine.shutdown().await;
    downgrade_to_version_1(cluster, db);

    // Migrated on open: one shard, holding every run; the cluster serves them.
    let members = Postgres::new(url.clone()).cluster(builder).await.unwrap();
    assert_eq!(members.shards(), 1);
    assert_eq!(members.held_shards(), vec![0]);
    for i in 0..3 {
        assert_eq!(
            members
                .result::<three_steps>(&format!("old-{i}"))
                .await
                .unwrap(),
            expected(i)
        );
    }
    members.shutdown().await;
    let meta = cluster.query(db, "SELECT schema_version, shards FROM flow_meta");
    assert_eq!(
        meta[0][0].as_deref(),
        Some(&*flow_postgres::SCHEMA_VERSION.to_string())
    );
    assert_eq!(meta[0][1].as_deref(), Some("1"));
    // And one engine opens it as before.
    let engine = builder().open_postgres(&url).await.unwrap();
    assert_eq!(engine.status("old-2").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_refuses_a_database_of_several_shards_and_changes_nothing() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.create_database("sharded");
    let db = db_name(&url);
    let members = Postgres::new(url.clone())
        .shards(4)
        .cluster(builder)
        .await
        .unwrap();
    assert_eq!(members.shards(), 4);
    let id = "sharded-run";
    members
        .start(id, three_steps("sharded".into(), 5))
        .await
        .unwrap();
    assert_eq!(
        members.result::<three_steps>(id).await.unwrap(),
        expected(5)
    );
    members.shutdown().await;
    let state = "SELECT md5(string_agg(data::TEXT, ',' ORDER BY file, idx)) FROM flow_blocks";
    let before = cluster.query(db, state);
    let leases = cluster.query(db, "SELECT count(*) FROM flow_shards WHERE owner IS NULL");
    let error = refusal(builder().open_postgres(&url).await);
    assert!(error.contains("cluster of 4 shards"), "{error}");
    assert_eq!(cluster.query(db, state), before, "nothing was changed");
    assert_eq!(
        cluster.query(db, "SELECT count(*) FROM flow_shards WHERE owner IS NULL"),
        leases,
        "no lease was taken"
    );
}
