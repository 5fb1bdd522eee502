//! Versioned workflows on a real engine and journal: versions side by side with runs in
//! flight on each (across crashes at every commit), the drain count, a run whose version
//! is gone waiting until it is registered again, and moving a run to a new version
//! (accepted, and refused without a byte changed).

mod support;

use std::path::Path;
use std::time::Duration;

use flow::testing::RecordedStep;
use flow::{
    codec, task, workflow, Engine, EngineBuilder, EventKind, FlowError, RunStatus, StatusKind,
    Upgrade, Workflow,
};
use support::{halting, Commits, ScratchDir, TempJournal};

// ---------------------------------------------------------------------------------------
// Three versions of `place_order`, and one that takes a version already taken.

#[task(name = "versions::reserve")]
async fn reserve(order: u32) -> u32 {
    order * 10
}

#[task(name = "versions::ship")]
async fn ship(order: u32) -> u32 {
    order + 1000
}

#[task(name = "versions::audit")]
async fn audit(order: u32) -> u32 {
    order + 7
}

/// Version 1 (no `version`: 1 is the default).
#[workflow(name = "place_order")]
async fn place_order_v1(order: u32) -> String {
    let reserved = reserve(order).await;
    let approved = flow::signal::<bool>("approve").await;
    format!("v1 order={order} reserved={reserved} approved={approved}")
}

/// Version 2: the same steps up to the approval, then it ships.
#[workflow(name = "place_order", version = 2)]
async fn place_order_v2(order: u32) -> String {
    let reserved = reserve(order).await;
    let approved = flow::signal::<bool>("approve").await;
    let shipped = ship(order).await;
    format!("v2 order={order} reserved={reserved} approved={approved} shipped={shipped}")
}

/// Version 3: audits before it reserves, so a run of version 1 or 2 that reserved has
/// taken a step version 3 does not take first.
#[workflow(name = "place_order", version = 3)]
async fn place_order_v3(order: u32) -> String {
    let audited = audit(order).await;
    let reserved = reserve(order).await;
    let approved = flow::signal::<bool>("approve").await;
    format!("v3 order={order} audited={audited} reserved={reserved} approved={approved}")
}

/// Another body under version 2's name and version.
#[workflow(name = "place_order", version = 2)]
async fn place_order_v2_again(order: u32) -> String {
    format!("{order}")
}

fn both() -> EngineBuilder {
    Engine::builder()
        .register::<place_order_v1>()
        .register::<place_order_v2>()
}

fn v1_output(order: u32) -> String {
    format!("v1 order={order} reserved={} approved=true", order * 10)
}

fn v2_output(order: u32) -> String {
    format!(
        "v2 order={order} reserved={} approved=true shipped={}",
        order * 10,
        order + 1000
    )
}

/// Waits until run `run_id` waits (for its signal).
async fn wait_until_waiting(engine: &Engine, run_id: &str) {
    for _ in 0..500 {
        if engine.status(run_id).await.unwrap() == RunStatus::Waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never waited");
}

/// The bytes of the journal and its log (whichever exist).
fn files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let log = format!("{}-wal", path.display());
    [path.display().to_string(), log]
        .into_iter()
        .filter_map(|file| std::fs::read(&file).ok().map(|bytes| (file, bytes)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Side by side

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_runs_start_on_the_newest_unless_the_caller_picks_a_version() {
    let journal = TempJournal::new("versions-start");
    let engine = both().open(journal.path()).await.unwrap();
    assert_eq!(engine.versions("place_order"), vec![1, 2]);

    let err = engine.start("old", place_order_v1(1)).await.unwrap_err();
    match &err {
        FlowError::NotNewestVersion {
            workflow,
            version,
            newest,
        } => assert_eq!(
            (workflow.as_str(), *version, *newest),
            ("place_order", 1, 2)
        ),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("start_version"), "{err}");
    assert!(
        engine.list().await.unwrap().is_empty(),
        "a refused start writes nothing"
    );

    engine
        .start_version("old", place_order_v1(1))
        .await
        .unwrap();
    engine.start("new", place_order_v2(2)).await.unwrap();
    let listed: Vec<(String, u32)> = engine
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|run| (run.run_id, run.version))
        .collect();
    assert_eq!(listed, vec![("new".into(), 2), ("old".into(), 1)]);

    // The history names the version (a run without `RunVersion` is on version 1).
    let version_events = |history: Vec<flow::HistoryEvent>| -> Vec<u32> {
        history
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::RunVersion { version } => Some(version),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        version_events(engine.history("new").await.unwrap()),
        vec![2]
    );
    assert_eq!(
        version_events(engine.history("old").await.unwrap()),
        Vec::<u32>::new()
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_and_version_twice_is_refused_at_open() {
    let journal = TempJournal::new("versions-duplicate");
    let err = both()
        .register::<place_order_v2_again>()
        .open(journal.path())
        .await
        .unwrap_err();
    let FlowError::DuplicateName { kind, name, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*kind, name.as_str()), ("workflow", "place_order"));
    let message = err.to_string();
    assert!(
        message.contains("version 2 registered by `versions::place_order_v2`")
            && message.contains("version 2 registered by `versions::place_order_v2_again`"),
        "{message}"
    );
    // Three versions of one name are no duplicates.
    let engine = both()
        .register::<place_order_v3>()
        .open(journal.path())
        .await
        .unwrap();
    assert_eq!(engine.versions("place_order"), vec![1, 2, 3]);
    engine.shutdown().await;
}

/// Runs on version 1 and on version 2 at once; the engine dies after its k-th commit,
/// for every k; reopened, each run ends with its own version's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_stays_on_its_version_across_a_crash_at_every_commit() {
    async fn drive(engine: &Engine) -> Result<(), FlowError> {
        engine.start_version("on-v1", place_order_v1(1)).await?;
        engine.start("on-v2", place_order_v2(2)).await?;
        for run in ["on-v1", "on-v2"] {
            wait_until_waiting(engine, run).await;
            engine.signal(run, "approve", &true).await?;
        }
        Ok(())
    }
    let dir = ScratchDir::new("versions-crash");
    let path = dir.journal("reference");
    let (counting, commits) = Commits::counting(both());
    let engine = counting.open(&path).await.unwrap();
    drive(&engine).await.unwrap();
    let v1 = engine.handle::<place_order_v1>("on-v1").unwrap();
    assert_eq!(v1.result().await.unwrap(), v1_output(1));
    let v2 = engine.handle::<place_order_v2>("on-v2").unwrap();
    assert_eq!(v2.result().await.unwrap(), v2_output(2));
    engine.shutdown().await;
    let total = commits.get();

    for k in 1..total {
        let path = dir.journal(&format!("crash-{k}"));
        let (halting, commits) = halting(both(), k);
        let engine = halting.open(&path).await.unwrap();
        let driving = tokio::spawn({
            let engine = engine.clone();
            async move { drive(&engine).await }
        });
        assert_eq!(
            commits.wait_for(k, Duration::from_secs(5)).await,
            k,
            "crash at {k}"
        );
        driving.abort();
        engine.shutdown().await;

        let engine = both().open(&path).await.unwrap();
        for (run, version) in [("on-v1", 1u32), ("on-v2", 2)] {
            let start = match run {
                "on-v1" => engine
                    .start_version(run, place_order_v1(1))
                    .await
                    .map(|_| ()),
                _ => engine.start(run, place_order_v2(2)).await.map(|_| ()),
            };
            start.unwrap_or_else(|e| panic!("crash at {k}: restarting {run}: {e}"));
            let summary = engine
                .list()
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.run_id == run)
                .unwrap();
            assert_eq!(summary.version, version, "crash at {k}: {run}");
            let signalled = engine
                .history(run)
                .await
                .unwrap()
                .iter()
                .any(|e| matches!(e.kind, EventKind::SignalReceived { .. }));
            if !signalled {
                wait_until_waiting(&engine, run).await;
                engine.signal(run, "approve", &true).await.unwrap();
            }
        }
        let v1 = engine.handle::<place_order_v1>("on-v1").unwrap();
        let v2 = engine.handle::<place_order_v2>("on-v2").unwrap();
        let limit = Duration::from_secs(20);
        assert_eq!(
            tokio::time::timeout(limit, v1.result())
                .await
                .unwrap()
                .unwrap(),
            v1_output(1),
            "crash at {k}"
        );
        assert_eq!(
            tokio::time::timeout(limit, v2.result())
                .await
                .unwrap()
                .unwrap(),
            v2_output(2),
            "crash at {k}"
        );
        engine.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Draining a version

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_count_says_how_many_runs_are_still_on_a_version() {
    let journal = TempJournal::new("versions-drain");
    let engine = both().open(journal.path()).await.unwrap();
    for order in 0..3 {
        engine
            .start_version(format!("v1-{order}"), place_order_v1(order))
            .await
            .unwrap();
    }
    engine.start("v2-0", place_order_v2(9)).await.unwrap();
    for order in 0..3 {
        wait_until_waiting(&engine, &format!("v1-{order}")).await;
    }
    let v1 = engine.count_runs("place_order", 1).await.unwrap();
    assert_eq!((v1.unfinished, v1.finished), (3, 0));
    assert_eq!(v1.by_status.get(&StatusKind::Waiting), Some(&3));
    assert_eq!(
        engine
            .count_runs("place_order", 2)
            .await
            .unwrap()
            .unfinished,
        1
    );
    assert_eq!(
        engine.count_runs("place_order", 3).await.unwrap(),
        Default::default()
    );

    engine.signal("v1-0", "approve", &true).await.unwrap();
    let first = engine.handle::<place_order_v1>("v1-0").unwrap();
    assert_eq!(first.result().await.unwrap(), v1_output(0));
    let v1 = engine.count_runs("place_order", 1).await.unwrap();
    assert_eq!((v1.unfinished, v1.finished), (2, 1));
    assert_eq!(v1.by_status.get(&StatusKind::Completed), Some(&1));

    for order in 1..3 {
        engine
            .signal(&format!("v1-{order}"), "approve", &true)
            .await
            .unwrap();
        let run = engine
            .handle::<place_order_v1>(&format!("v1-{order}"))
            .unwrap();
        run.result().await.unwrap();
    }
    let v1 = engine.count_runs("place_order", 1).await.unwrap();
    assert_eq!((v1.unfinished, v1.finished), (0, 3), "version 1 is drained");
    assert_eq!(
        engine
            .count_runs("place_order", 2)
            .await
            .unwrap()
            .unfinished,
        1
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_version_is_gone_waits_and_resumes_when_it_is_registered_again() {
    let journal = TempJournal::new("versions-blocked");
    let engine = both().open(journal.path()).await.unwrap();
    engine
        .start_version("old", place_order_v1(4))
        .await
        .unwrap();
    wait_until_waiting(&engine, "old").await;
    engine.shutdown().await;

    // Version 1's code is removed: the run waits, and says for which version.
    let engine = Engine::builder()
        .register::<place_order_v2>()
        .open(journal.path())
        .await
        .unwrap();
    let status = engine.status("old").await.unwrap();
    let RunStatus::Blocked { reason } = &status else {
        panic!("{status:?}")
    };
    assert!(
        reason.contains("`place_order` version 1 is not registered")
            && reason.contains("registers version 2"),
        "{reason}"
    );
    let blocked = engine.count_runs("place_order", 1).await.unwrap();
    assert_eq!(blocked.by_status.get(&StatusKind::Blocked), Some(&1));
    // A signal is kept for it meanwhile.
    engine.signal("old", "approve", &true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        engine.status("old").await.unwrap(),
        RunStatus::Blocked { .. }
    ));
    engine.shutdown().await;

    // Registered again: the run goes on with version 1's code.
    let engine = both().open(journal.path()).await.unwrap();
    let run = engine.handle::<place_order_v1>("old").unwrap();
    assert_eq!(run.result().await.unwrap(), v1_output(4));
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Upgrades

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_moves_to_the_new_version_and_finishes_there() {
    let journal = TempJournal::new("versions-upgrade");
    let engine = both().open(journal.path()).await.unwrap();
    engine
        .start_version("order", place_order_v1(5))
        .await
        .unwrap();
    wait_until_waiting(&engine, "order").await;

    let plan = engine
        .check_upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap();
    assert_eq!((plan.from, plan.to), (1, 2));
    assert_eq!(plan.awaits.as_deref(), Some("signal:approve"));
    assert_eq!((plan.step, plan.replayed_steps), (Some(1), 1));
    // The dry run wrote nothing.
    assert_eq!(
        engine
            .count_runs("place_order", 1)
            .await
            .unwrap()
            .unfinished,
        1
    );

    let done = engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap();
    assert_eq!(done, plan);
    assert_eq!(
        engine
            .count_runs("place_order", 1)
            .await
            .unwrap()
            .unfinished,
        0
    );
    let history = engine.history("order").await.unwrap();
    assert!(
        history.iter().any(|e| e.kind
            == EventKind::RunUpgraded {
                from: 1,
                to: 2,
                step: 1
            }),
        "{history:?}"
    );
    // A second move to the same version is refused.
    let again = engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("on version 2 already"),
        "{again}"
    );
    engine.shutdown().await;

    // The move is durable; version 1's code is gone, and the run goes on with version 2's.
    let engine = Engine::builder()
        .register::<place_order_v2>()
        .open(journal.path())
        .await
        .unwrap();
    assert_eq!(engine.status("order").await.unwrap(), RunStatus::Waiting);
    engine.signal("order", "approve", &true).await.unwrap();
    let run = engine.handle::<place_order_v2>("order").unwrap();
    assert_eq!(run.result().await.unwrap(), v2_output(5));
    let reserves = engine
        .history("order")
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::StepScheduled { name, .. } if name == "reserve"))
        .count();
    assert_eq!(reserves, 1, "the move ran no completed step again");

    // A fork of the upgraded run, before or after the move, is refused and writes nothing:
    // its state across the move is not in the journal.
    for step in [0, 1, 2] {
        let refused = engine.fork("order", step, "order-fork").await.unwrap_err();
        assert!(
            matches!(&refused, flow::FlowError::ForkRefused { .. })
                && refused.to_string().contains("from version 1 to version 2"),
            "step {step}: {refused}"
        );
        assert!(matches!(
            engine.status("order-fork").await,
            Err(flow::FlowError::UnknownRun { .. })
        ));
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_run_is_moved_off_a_removed_version() {
    let journal = TempJournal::new("versions-upgrade-blocked");
    let engine = both().open(journal.path()).await.unwrap();
    engine
        .start_version("order", place_order_v1(6))
        .await
        .unwrap();
    wait_until_waiting(&engine, "order").await;
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<place_order_v2>()
        .open(journal.path())
        .await
        .unwrap();
    assert!(matches!(
        engine.status("order").await.unwrap(),
        RunStatus::Blocked { .. }
    ));
    engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap();
    // Woken by the move, its driver finds it waiting for its signal.
    wait_until_waiting(&engine, "order").await;
    engine.signal("order", "approve", &true).await.unwrap();
    let run = engine.handle::<place_order_v2>("order").unwrap();
    assert_eq!(run.result().await.unwrap(), v2_output(6));
    engine.shutdown().await;
}

/// The engine dies right after the move is durable (before redb holds it): reopened, the
/// journal replays the move from its log, and the run goes on with version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_survives_a_crash_right_after_it() {
    let journal = TempJournal::new("versions-upgrade-crash");
    let engine = both().open(journal.path()).await.unwrap();
    engine
        .start_version("order", place_order_v1(7))
        .await
        .unwrap();
    wait_until_waiting(&engine, "order").await;
    engine.shutdown().await;

    // The move is this engine's first commit; it halts right after it.
    let (halting, commits) = halting(Engine::builder().register::<place_order_v2>(), 1);
    let engine = halting.open(journal.path()).await.unwrap();
    engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap();
    assert_eq!(commits.get(), 1);
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<place_order_v2>()
        .open(journal.path())
        .await
        .unwrap();
    let summary = engine.list().await.unwrap().remove(0);
    assert_eq!((summary.run_id.as_str(), summary.version), ("order", 2));
    assert_eq!(
        engine
            .count_runs("place_order", 1)
            .await
            .unwrap()
            .unfinished,
        0
    );
    engine.signal("order", "approve", &true).await.unwrap();
    let run = engine.handle::<place_order_v2>("order").unwrap();
    assert_eq!(run.result().await.unwrap(), v2_output(7));
    let upgraded = engine
        .history("order")
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RunUpgraded { .. }))
        .count();
    assert_eq!(upgraded, 1, "the move is applied once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_that_does_not_fit_is_refused_and_changes_nothing() {
    let journal = TempJournal::new("versions-upgrade-refused");
    let all = || both().register::<place_order_v3>();
    let engine = all().open(journal.path()).await.unwrap();
    engine
        .start_version("order", place_order_v1(8))
        .await
        .unwrap();
    wait_until_waiting(&engine, "order").await;
    let before = files(journal.path());
    let history_before = engine.history("order").await.unwrap();

    // Version 3 audits first: the run's step 0 (`reserve`) is not what it awaits there.
    let err = engine
        .upgrade::<place_order_v3>("order", Upgrade::new())
        .await
        .unwrap_err();
    let FlowError::UpgradeRefused {
        from, to, reason, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*from, *to), (1, 3));
    assert!(
        reason.contains("step 0") && reason.contains("`reserve`") && reason.contains("`audit`"),
        "{reason}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");

    // A mapping that cannot be applied is refused too.
    let err = engine
        .upgrade::<place_order_v3>(
            "order",
            Upgrade::new().map_recording(|_| Err("no audit record for this order".into())),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no audit record for this order"),
        "{err}"
    );
    // So is a mapping whose result still does not fit (a wrong type for the audit).
    let err = engine
        .upgrade::<place_order_v3>(
            "order",
            Upgrade::new().map_recording(|mut run| {
                let output = codec::encode(&"not a number", || "audit".into()).unwrap();
                run.steps.insert(
                    0,
                    RecordedStep {
                        name: "audit".into(),
                        request: None,
                        output,
                    },
                );
                Ok(run)
            }),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot take the recorded values"),
        "{err}"
    );
    assert_eq!(
        files(journal.path()),
        before,
        "a refused upgrade wrote to the journal"
    );
    assert_eq!(engine.history("order").await.unwrap(), history_before);
    assert_eq!(engine.status("order").await.unwrap(), RunStatus::Waiting);

    // With the audit step the old version never took, mapped in, version 3 fits.
    let plan = engine
        .upgrade::<place_order_v3>(
            "order",
            Upgrade::new().map_recording(|mut run| {
                let output = codec::encode(&15u32, || "audit".into()).map_err(|e| e.to_string())?;
                run.steps.insert(
                    0,
                    RecordedStep {
                        name: "audit".into(),
                        request: None,
                        output,
                    },
                );
                Ok(run)
            }),
        )
        .await
        .unwrap();
    assert_eq!((plan.from, plan.to, plan.replayed_steps), (1, 3, 2));
    engine.signal("order", "approve", &true).await.unwrap();
    let run = engine.handle::<place_order_v3>("order").unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        "v3 order=8 audited=15 reserved=80 approved=true"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_to_unregistered_versions_or_of_finished_runs_are_refused() {
    let journal = TempJournal::new("versions-upgrade-misc");
    let engine = Engine::builder()
        .register::<place_order_v1>()
        .open(journal.path())
        .await
        .unwrap();
    engine.start("order", place_order_v1(3)).await.unwrap();
    wait_until_waiting(&engine, "order").await;
    let err = engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("version 2 is not registered"),
        "{err}"
    );
    engine.signal("order", "approve", &true).await.unwrap();
    engine
        .handle::<place_order_v1>("order")
        .unwrap()
        .result()
        .await
        .unwrap();
    engine.shutdown().await;

    let engine = both().open(journal.path()).await.unwrap();
    let err = engine
        .upgrade::<place_order_v2>("order", Upgrade::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only a run that is still going"),
        "{err}"
    );
    let err = engine
        .upgrade::<place_order_v2>("nobody", Upgrade::new())
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::UnknownRun { .. }), "{err}");
    engine.shutdown().await;
}

/// `Workflow::VERSION` is what the attribute says, 1 without it.
#[test]
fn versions_come_from_the_attribute() {
    assert_eq!(
        (
            <place_order_v1 as Workflow>::VERSION,
            <place_order_v2 as Workflow>::VERSION,
            <place_order_v3 as Workflow>::VERSION
        ),
        (1, 2, 3)
    );
    assert_eq!(
        <place_order_v1 as Workflow>::NAME,
        <place_order_v2 as Workflow>::NAME
    );
}
