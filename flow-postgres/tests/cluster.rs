//! Several processes of one cluster (here, several `Cluster`s in one test process, each
//! a member of its own): the shards are shared evenly and handed over as members come
//! and go; every call works through any member (starts, results, signals,
//! cancellations, callback completions, histories), and a signal or completion sent
//! through another member than the run's is applied exactly once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flow::{task, workflow, Engine, FlowError, RunStatus, TaskContext, WaitForCallback};
use flow_postgres::testing::TestCluster;
use flow_postgres::{Cluster, Postgres};

static EXECUTIONS: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

#[task]
async fn count(key: String, x: u64) -> u64 {
    *EXECUTIONS.lock().unwrap().entry(key).or_default() += 1;
    x + 1
}

#[workflow]
async fn leaf(key: String, x: u64) -> u64 {
    let y = count(format!("{key}/leaf"), x).await;
    y
}

#[workflow]
async fn mixed(key: String, x: u64) -> u64 {
    let items = flow::map(0..3u64, 3, |i| count(format!("{key}/item{i}"), x + i)).await;
    flow::sleep(Duration::from_millis(30)).await;
    let go: u64 = flow::signal("go").await;
    let child = leaf(key.clone(), go).await;
    items.iter().sum::<u64>() + child
}

fn expected(x: u64, go: u64) -> u64 {
    (x + 1) + (x + 2) + (x + 3) + go + 1
}

/// Callback tokens handed out by `ask`, by run ID.
static TOKENS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

#[task]
async fn ask(key: String) -> u64 {
    let ctx = TaskContext::current().expect("runs in the engine");
    let token = ctx.callback_token().expect("a callback task has a token");
    TOKENS.lock().unwrap().insert(key, token.to_string());
    0
}

#[workflow]
async fn approval(key: String) -> String {
    let answer = ask(key)
        .wait_for_callback::<String>(Duration::from_secs(60))
        .await;
    match answer {
        Ok(text) => text,
        Err(e) => format!("rejected: {e}"),
    }
}

/// Doubles `n`; workers run it.
#[task(queue = "double", heartbeat = "10s")]
async fn double(n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

#[workflow]
async fn doubled(n: u64) -> Result<u64, String> {
    let d = double(n).await?;
    Ok(d + 1)
}

fn builder() -> flow::EngineBuilder {
    Engine::builder()
        .register::<mixed>()
        .register::<leaf>()
        .register::<approval>()
        .register::<doubled>()
}

/// A member of a cluster of 12 shards (shared evenly by 1, 2, 3 or 4 members).
async fn member(url: &str) -> Cluster {
    Postgres::new(url)
        .lease(Duration::from_secs(2))
        .shards(12)
        .cluster(builder)
        .await
        .unwrap()
}

/// Waits until every member holds `each` shards.
async fn balanced(members: &[&Cluster], each: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: Vec<usize> = members.iter().map(|m| m.held_shards().len()).collect();
        if held.iter().all(|h| *h == each) {
            return;
        }
        assert!(Instant::now() < deadline, "not balanced: {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A run ID of a shard `member` does not hold.
fn remote_id(member: &Cluster, prefix: &str) -> String {
    let held = member.held_shards();
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| !held.contains(&member.shard_of(id)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_the_shards_and_serve_each_others_runs() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("cluster_share");
    let a = member(&url).await;
    assert_eq!(a.shards(), 12);
    assert_eq!(
        a.held_shards().len(),
        12,
        "a lone member drives every shard"
    );
    let b = member(&url).await;
    balanced(&[&a, &b], 6).await;

    // Runs started through one member and driven by the other, and the reverse; the
    // signal goes through the member that does not drive the run.
    let mut runs = Vec::new();
    for i in 0..8u64 {
        let (through, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let id = remote_id(through, &format!("share{i}"));
        through.start(&id, mixed(id.clone(), i)).await.unwrap();
        runs.push((id, i, other));
    }
    for (id, i, other) in &runs {
        other.signal(id, "go", &(i * 10)).await.unwrap();
    }
    for (id, i, _) in &runs {
        assert_eq!(a.result::<mixed>(id).await.unwrap(), expected(*i, i * 10));
        assert_eq!(b.result::<mixed>(id).await.unwrap(), expected(*i, i * 10));
    }
    // Each task ran once: nothing was applied twice.
    let executions = EXECUTIONS.lock().unwrap().clone();
    for (id, _, _) in &runs {
        for key in ["item0", "item1", "item2", "leaf"] {
            assert_eq!(
                executions.get(&format!("{id}/{key}")),
                Some(&1),
                "{id}/{key}"
            );
        }
    }
    // A history read through either member is the same.
    let (id, _, _) = &runs[0];
    assert_eq!(a.history(id).await.unwrap(), b.history(id).await.unwrap());

    // Refusals travel as the same errors.
    let missing = remote_id(&a, "missing");
    assert!(matches!(
        a.signal(&missing, "go", &1u64).await,
        Err(FlowError::UnknownRun { .. })
    ));
    let (done, _, _) = &runs[1];
    assert!(matches!(
        a.cancel(done).await,
        Err(FlowError::RunFinished { .. })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_and_cancellations_through_another_member() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("cluster_callbacks");
    let a = member(&url).await;
    let b = member(&url).await;
    balanced(&[&a, &b], 6).await;

    let id = remote_id(&a, "cb");
    a.start(&id, approval(id.clone())).await.unwrap();
    let token = loop {
        if let Some(token) = TOKENS.lock().unwrap().get(&id) {
            break token.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Completed through the member that does not drive it: once; again is refused.
    a.complete(&token, Ok::<_, String>("yes".to_string()))
        .await
        .unwrap();
    assert!(matches!(
        a.complete(&token, Ok::<_, String>("again".to_string()))
            .await,
        Err(FlowError::InvalidCallbackToken { .. })
    ));
    assert_eq!(b.result::<approval>(&id).await.unwrap(), "yes");

    let waiting = remote_id(&b, "cancel");
    b.start(&waiting, mixed(waiting.clone(), 1)).await.unwrap();
    b.cancel(&waiting).await.unwrap();
    assert!(matches!(
        a.result::<mixed>(&waiting).await,
        Err(FlowError::RunCancelled { .. })
    ));
    assert_eq!(
        a.describe(&waiting).await.unwrap().summary.status,
        RunStatus::Cancelled
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_hands_its_shards_over_and_runs_go_on() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("cluster_leave");
    let a = member(&url).await;
    let b = member(&url).await;
    let c = member(&url).await;
    balanced(&[&a, &b, &c], 4).await;
    let mut runs = Vec::new();
    for i in 0..12u64 {
        let id = remote_id(&a, &format!("leave{i}"));
        a.start(&id, mixed(id.clone(), i)).await.unwrap();
        runs.push((id, i));
    }
    // C leaves while the runs wait for their signals: A and B take its shards.
    c.shutdown().await;
    balanced(&[&a, &b], 6).await;
    for (id, i) in &runs {
        a.signal(id, "go", i).await.unwrap();
    }
    for (id, i) in &runs {
        assert_eq!(b.result::<mixed>(id).await.unwrap(), expected(*i, *i));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_polls_and_reports_through_any_member() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database("cluster_queues");
    let a = member(&url).await;
    let b = member(&url).await;
    balanced(&[&a, &b], 6).await;
    // Runs driven by A; the worker only talks to B.
    let mut runs = BTreeMap::new();
    for n in 0..6u64 {
        let id = remote_id(&b, &format!("queued{n}"));
        a.start(&id, doubled(n)).await.unwrap();
        runs.insert(id, n);
    }
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while done < runs.len() {
        assert!(
            Instant::now() < deadline,
            "{done} of {} tasks served",
            runs.len()
        );
        let tasks = b
            .poll_tasks("double", "worker-b", 4, Duration::from_secs(2))
            .await
            .unwrap();
        for task in tasks {
            let n = runs[&task.run_id];
            assert!(
                !b.heartbeat_task("double", &task.token)
                    .await
                    .unwrap()
                    .cancel_requested
            );
            let ok: BTreeMap<&str, u64> = [("Ok", n * 2)].into_iter().collect();
            assert_eq!(
                b.complete_task("double", &task.token, &ok).await.unwrap(),
                flow::Completed::Accepted
            );
            // The same report again is a duplicate, through either member.
            assert_eq!(
                a.complete_task("double", &task.token, &ok).await.unwrap(),
                flow::Completed::Duplicate
            );
            done += 1;
        }
    }
    for (id, n) in &runs {
        assert_eq!(b.result::<doubled>(id).await.unwrap(), Ok(n * 2 + 1));
    }
    // Nothing is left to hand out.
    let none = b
        .poll_tasks("double", "worker-b", 4, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty());
    a.shutdown().await;
    b.shutdown().await;
}
