//! Time travel: `Engine::step_locals` (one step) and `Engine::step_locals_range` (many,
//! in one read) give the locals a run had when each step was scheduled.

mod support;

use flow::{task, workflow, Engine, FlowError};
use support::TempJournal;

#[task]
async fn bump(x: u64) -> u64 {
    x + 10
}

/// A loop of 30 steps; `label` changes once, half-way.
#[workflow]
async fn counter(steps: u64) -> u64 {
    let mut total = 0;
    let mut label = String::from("first half");
    for i in 0..steps {
        if i == steps / 2 {
            label = String::from("second half");
        }
        total = bump(total).await;
    }
    total + label.len() as u64
}

#[tokio::test]
async fn locals_at_each_step_read_alone_or_together_agree() {
    let journal = TempJournal::new("step-locals");
    let engine = Engine::builder()
        .register::<counter>()
        .open(journal.path())
        .await
        .unwrap();
    let run = engine.start("c", counter(30)).await.unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        300 + "second half".len() as u64
    );

    let all = engine.step_locals_range("c", 0..u64::MAX).await.unwrap();
    assert_eq!(all.len(), 30);
    for (step, at) in &all {
        assert_eq!(
            engine.step_locals("c", *step).await.unwrap().as_ref(),
            Some(at),
            "step {step}"
        );
        let values: Vec<String> = at
            .slots
            .iter()
            .map(|(_, bytes)| flow::codec::to_json(bytes).unwrap())
            .collect();
        // When step k was scheduled (`total` moved into it, so not saved), the loop
        // stood past item k and the label said which half.
        let position = format!("{{\"start\":{},\"end\":30}}", step + 1);
        assert!(values.contains(&position), "step {step}: {values:?}");
        let half = if *step < 15 {
            "\"first half\""
        } else {
            "\"second half\""
        };
        assert!(values.iter().any(|v| v == half), "step {step}: {values:?}");
    }
    let middle = engine.step_locals_range("c", 10..20).await.unwrap();
    assert_eq!(middle, all[10..20].to_vec());
    assert!(engine
        .step_locals_range("c", 30..40)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(engine.step_locals("c", 30).await.unwrap(), None);
    assert!(matches!(
        engine.step_locals_range("nobody", 0..3).await,
        Err(FlowError::UnknownRun { .. })
    ));
    engine.shutdown().await;
}
