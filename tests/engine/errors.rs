//! Bad input gets a clear error and loses nothing.

use std::time::Duration;

use flow::{CodecError, Engine, EventKind, FlowError, RunStatus, Workflow};

use crate::support::TempJournal;
use crate::workflows::*;

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_untouched() {
    let journal = TempJournal::new("not-redb");
    let content = "name,qty\nwidget,3\n".repeat(500);
    std::fs::write(journal.path(), &content).unwrap();
    let err = Engine::builder().open(journal.path()).await.unwrap_err();
    assert!(matches!(err, FlowError::NotARedbFile { .. }), "{err}");
    assert!(err.to_string().contains("is not a flow journal"), "{err}");
    assert_eq!(std::fs::read_to_string(journal.path()).unwrap(), content);
}

#[tokio::test]
async fn another_programs_redb_file_is_refused_untouched() {
    let journal = TempJournal::new("foreign");
    {
        let db = redb::Database::create(journal.path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("inventory");
            let mut t = txn.open_table(table).unwrap();
            t.insert("widgets", 3).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(journal.path()).unwrap();
    let err = Engine::builder().open(journal.path()).await.unwrap_err();
    assert!(matches!(err, FlowError::ForeignDatabase { .. }), "{err}");
    assert!(err.to_string().contains("inventory"), "{err}");
    assert!(
        std::fs::read(journal.path()).unwrap() == before,
        "the file changed"
    );
}

#[tokio::test]
async fn a_second_engine_on_the_same_file_gets_a_clear_error() {
    let journal = TempJournal::new("twice");
    let first = Engine::builder().open(journal.path()).await.unwrap();
    let err = Engine::builder().open(journal.path()).await.unwrap_err();
    assert!(
        matches!(err, FlowError::DatabaseAlreadyOpen { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another engine has"), "{err}");
    first.shutdown().await;
    // Released on shutdown, and on drop.
    let second = Engine::builder().open(journal.path()).await.unwrap();
    drop(second);
    Engine::builder()
        .open(journal.path())
        .await
        .unwrap()
        .shutdown()
        .await;
}

#[tokio::test]
async fn unregistered_workflow_waits_in_the_journal_and_resumes_later() {
    let journal = TempJournal::new("unregistered");
    let engine = Engine::builder()
        .register::<pipeline>()
        .register::<nap>()
        .halt_after_commits(2)
        .open(journal.path())
        .await
        .unwrap();
    // 1: the nap starts. 2: the pipeline starts; the halt comes before its task could.
    engine.start("nap", nap(20)).await.unwrap();
    engine
        .start("task", pipeline("unregistered".into(), 1))
        .await
        .unwrap();
    engine.shutdown().await;
    assert_eq!(runs("unregistered"), 0);

    let engine = Engine::builder().open(journal.path()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for run in engine.list().await.unwrap() {
        match run.status {
            RunStatus::Blocked { reason } => {
                assert!(
                    reason.contains("is not registered in this engine"),
                    "{reason}"
                )
            }
            other => panic!("{} is {other:?}", run.run_id),
        }
    }
    assert_eq!(runs("unregistered"), 0);
    let err = engine
        .start("new", pipeline("unregistered".into(), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::UnknownWorkflow { .. }), "{err}");
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<pipeline>()
        .register::<nap>()
        .open(journal.path())
        .await
        .unwrap();
    assert_eq!(
        engine
            .handle::<pipeline>("task")
            .unwrap()
            .result()
            .await
            .unwrap(),
        11
    );
    engine.handle::<nap>("nap").unwrap().result().await.unwrap();
    engine.shutdown().await;
}

#[tokio::test]
async fn changed_workflow_code_leaves_the_run_waiting_with_both_fingerprints() {
    let journal = TempJournal::new("fingerprint");
    let engine = Engine::builder()
        .register::<pipeline>()
        .halt_after_commits(1)
        .open(journal.path())
        .await
        .unwrap();
    engine
        .start("f", pipeline("fingerprint".into(), 1))
        .await
        .unwrap();
    engine.shutdown().await;
    assert!(runs("fingerprint") <= 1);

    let engine = Engine::builder()
        .register::<pipeline_v2>()
        .open(journal.path())
        .await
        .unwrap();
    let status = engine.status("f").await.unwrap();
    let RunStatus::Blocked { reason } = status else {
        panic!("{status:?}")
    };
    assert!(reason.contains("tests::pipeline"), "{reason}");
    let (stored, now) = (
        format!("{:016x}", <pipeline as Workflow>::FINGERPRINT),
        format!("{:016x}", <pipeline_v2 as Workflow>::FINGERPRINT),
    );
    assert_ne!(stored, now, "the two bodies have different fingerprints");
    assert!(
        reason.contains(&stored) && reason.contains(&now),
        "{reason}"
    );
    let err = engine
        .handle::<pipeline_v2>("f")
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("changed since this run was stored"),
        "{err}"
    );
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<pipeline>()
        .open(journal.path())
        .await
        .unwrap();
    assert_eq!(
        engine
            .handle::<pipeline>("f")
            .unwrap()
            .result()
            .await
            .unwrap(),
        11
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn state_that_no_longer_decodes_blocks_the_run_until_the_type_is_back() {
    let journal = TempJournal::new("fault");
    // 1: start. 2: step 0 done, slot `a` written.
    let engine = Engine::builder()
        .register::<pipeline>()
        .halt_after_commits(2)
        .open(journal.path())
        .await
        .unwrap();
    let run = engine
        .start("bad", pipeline("fault".into(), 1))
        .await
        .unwrap();
    assert!(matches!(
        run.result().await,
        Err(FlowError::EngineStopped { .. })
    ));
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<PipelineBadSlots>()
        .open(journal.path())
        .await
        .unwrap();
    let err = engine
        .handle::<PipelineBadSlots>("bad")
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::RunBlocked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("local `label` of workflow `tests::pipeline`"),
        "{err}"
    );
    // `status` and `result` agree.
    let status = engine.status("bad").await.unwrap();
    match &status {
        RunStatus::Blocked { reason } => assert!(reason.contains("local `label`"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let history = engine.history("bad").await.unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunFaulted { .. })),
        "a run blocked for lack of code is not faulted: {history:?}"
    );
    engine.shutdown().await;

    // The original code is back: the run goes on from where it was and finishes.
    let engine = Engine::builder()
        .register::<pipeline>()
        .open(journal.path())
        .await
        .unwrap();
    let output = engine
        .handle::<pipeline>("bad")
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(output, 11);
    assert_eq!(engine.status("bad").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test]
async fn output_that_no_longer_decodes_is_a_clear_error() {
    let engine = Engine::builder()
        .register::<pipeline>()
        .open_in_memory()
        .await
        .unwrap();
    engine
        .start("o", pipeline("output-decode".into(), 1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let err = engine
        .handle::<PipelineStringOutput>("o")
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlowError::Codec(CodecError::Decode { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("output of run `o`"), "{err}");
    engine.shutdown().await;
}

#[tokio::test]
async fn oversized_payloads_and_bad_run_ids_are_refused() {
    let engine = Engine::builder()
        .register::<pipeline>()
        .register::<await_approval>()
        .open_in_memory()
        .await
        .unwrap();
    engine.start("w", await_approval()).await.unwrap();
    let huge = vec![7u8; flow::MAX_PAYLOAD_BYTES + 1];
    let err = engine.signal("w", "approval", &huge).await.unwrap_err();
    assert!(
        matches!(err, FlowError::Codec(CodecError::TooLarge { .. })),
        "{err}"
    );
    let big_label = "x".repeat(flow::MAX_PAYLOAD_BYTES + 1);
    let err = engine
        .start("big", pipeline(big_label.clone(), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlowError::Codec(CodecError::TooLarge { .. })),
        "{err}"
    );
    assert!(matches!(
        engine.start("", pipeline("x".into(), 1)).await,
        Err(FlowError::InvalidRunId { .. })
    ));
    assert_eq!(engine.list().await.unwrap().len(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn unknown_task_blocks_the_run_with_a_clear_error() {
    let engine = Engine::builder()
        .register::<call_ghost>()
        .open_in_memory()
        .await
        .unwrap();
    let err = engine
        .start("g", call_ghost())
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::RunBlocked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("task `tests::ghost` is not registered"),
        "{err}"
    );
    assert!(matches!(
        engine.status("g").await.unwrap(),
        RunStatus::Blocked { .. }
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_taken_child_run_id_faults_the_parent() {
    let engine = Engine::builder()
        .register::<pipeline>()
        .register::<spawns_child>()
        .open_in_memory()
        .await
        .unwrap();
    // The child of run "s" would be "s/0": take that ID first.
    engine
        .start("s/0", pipeline("taken".into(), 1))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let err = engine
        .start("s", spawns_child("taken".into(), 2))
        .await
        .unwrap_err();
    // The start itself is refused: it would create the child over the existing run.
    assert!(matches!(err, FlowError::RunIdConflict { .. }), "{err}");
    assert!(matches!(
        engine.status("s").await,
        Err(FlowError::UnknownRun { .. })
    ));
    engine.shutdown().await;
}

/// A journal with a few finished runs, then damaged: 4 KiB XORed at fraction `at` of the
/// file (past redb's magic number, so it is still recognisably a redb file).
async fn damaged_journal(name: &str, at: f64) -> (TempJournal, Vec<u8>) {
    let journal = TempJournal::new(name);
    let engine = Engine::builder()
        .register::<pipeline>()
        .open(journal.path())
        .await
        .unwrap();
    for i in 0..20 {
        engine
            .start(format!("r{i}"), pipeline(name.into(), i))
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    engine.shutdown().await;
    let mut bytes = std::fs::read(journal.path()).unwrap();
    let start = ((bytes.len() as f64 * at) as usize).max(16);
    // Damage a wide region so it cannot fall entirely into free pages.
    let end = (start + 4096.max(bytes.len() / 3)).min(bytes.len());
    bytes[start..end].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(journal.path(), &bytes).unwrap();
    (journal, bytes)
}

#[tokio::test]
async fn a_damaged_journal_is_refused_untouched() {
    let (journal, bytes) = damaged_journal("damaged-header", 0.0).await;
    let err = Engine::builder().open(journal.path()).await.unwrap_err();
    assert!(matches!(err, FlowError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("is corrupt"), "{err}");
    assert!(
        std::fs::read(journal.path()).unwrap() == bytes,
        "the file changed"
    );

    let (journal, bytes) = damaged_journal("damaged-body", 0.3).await;
    let err = Engine::builder().open(journal.path()).await.unwrap_err();
    assert!(matches!(err, FlowError::Corrupt { .. }), "{err}");
    assert!(
        std::fs::read(journal.path()).unwrap() == bytes,
        "the file changed"
    );
}
