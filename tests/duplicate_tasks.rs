//! Two `#[task]` functions linked under one name: every engine of the program refuses to
//! open, naming both functions, before the journal is touched. (Its own test binary: the
//! collision is program-wide, so it would refuse every other test's engine too.)

mod support;

use flow::testing::{Driver, Restore, TestEnv};
use flow::{task, workflow, Engine, FlowError};
use support::ScratchDir;

mod billing {
    #[flow::task(name = "dup_charge")]
    pub async fn charge(cents: u64) -> u64 {
        cents
    }
}

mod refunds {
    #[flow::task(name = "dup_charge")]
    pub async fn refund(cents: u64) -> u64 {
        cents + 1
    }
}

#[task]
async fn dup_unrelated(x: u64) -> u64 {
    x
}

#[workflow]
async fn dup_uses_unrelated(x: u64) -> u64 {
    dup_unrelated(x).await
}

#[tokio::test]
async fn two_tasks_under_one_name_are_refused_naming_both_functions() {
    let dir = ScratchDir::new("dup-task");
    let journal = dir.file("j.redb");
    let err = Engine::builder()
        .register::<dup_uses_unrelated>()
        .open(&journal)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlowError::DuplicateName { kind: "task", .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("`dup_charge`"), "{message}");
    assert!(message.contains("billing::charge"), "{message}");
    assert!(message.contains("refunds::refund"), "{message}");
    assert!(message.contains("duplicate_tasks.rs:"), "{message}");
    assert!(!journal.exists(), "nothing was created");
    assert!(!dir.file("j.redb-wal").exists(), "no log was created");
}

#[workflow]
async fn dup_uses_charge(x: u64) -> u64 {
    billing::charge(x).await
}

/// The test drivers find tasks by name too: they refuse the name instead of running
/// whichever body the linker put first.
#[tokio::test]
async fn the_test_drivers_refuse_a_task_name_two_functions_claim() {
    let driven = Driver::new()
        .run(dup_uses_charge(5), Restore::Never)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        driven.contains("`dup_charge` is registered twice"),
        "{driven}"
    );
    assert!(driven.contains("refunds::refund"), "{driven}");

    let env = TestEnv::new();
    let err = env.start(dup_uses_charge(5)).await.unwrap_err().to_string();
    assert!(err.contains("`dup_charge` is registered twice"), "{err}");
    assert!(err.contains("billing::charge"), "{err}");

    // A name only one function claims still runs in both.
    let plain = Driver::new()
        .run(dup_uses_unrelated(5), Restore::EveryStep)
        .await
        .unwrap();
    assert_eq!(plain, 5);
}
