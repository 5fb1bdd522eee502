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

#[task]
async fn price_of(item: String) -> u64 {
    item.len() as u64 * 100
}

#[task]
async fn take_payment(total: u64) -> String {
    format!("paid {total}")
}

#[task]
async fn ship_parcel(x: u64) -> u64 {
    x + 1
}

/// Several locals across steps, one name (`x`) bound twice.
#[workflow]
async fn checkout(order: String) -> String {
    let total: u64 = price_of(order.clone()).await;
    let payment = take_payment(total).await;
    let x = ship_parcel(total).await;
    let y = ship_parcel(1).await;
    let x = ship_parcel(x + y).await;
    let done = ship_parcel(0).await;
    format!("{order} {payment} {x} {done}")
}

/// Each step's saved locals as `name = json` (`?` for an unnamed slot), sorted.
fn named(at: &flow::StepLocals) -> Vec<String> {
    let mut out: Vec<String> = at
        .slots
        .iter()
        .zip(&at.names)
        .map(|((_, bytes), info)| {
            let name = info.map_or("?", |info| info.name);
            format!("{name} = {}", flow::codec::to_json(bytes).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn saved_locals_carry_their_source_names() {
    let journal = TempJournal::new("step-locals-names");
    let engine = Engine::builder()
        .register::<checkout>()
        .open(journal.path())
        .await
        .unwrap();
    let run = engine.start("o", checkout("book".into())).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "book paid 400 404 1");

    let all = engine.step_locals_range("o", 0..u64::MAX).await.unwrap();
    let by_step: Vec<Vec<String>> = all.iter().map(|(_, at)| named(at)).collect();
    // A step state holds every slot saved so far, a local past its last use too: at
    // step 5 both `x`s are there, told apart.
    let expected: Vec<Vec<&str>> = vec![
        vec!["order = \"book\""],
        vec!["order = \"book\"", "total = 400"],
        vec!["order = \"book\"", "payment = \"paid 400\"", "total = 400"],
        vec![
            "order = \"book\"",
            "payment = \"paid 400\"",
            "total = 400",
            "x = 401",
        ],
        vec![
            "order = \"book\"",
            "payment = \"paid 400\"",
            "total = 400",
            "x = 401",
        ],
        vec![
            "order = \"book\"",
            "payment = \"paid 400\"",
            "total = 400",
            "x = 401",
            "x#2 = 404",
        ],
    ];
    assert_eq!(by_step, expected);
    // The type is recorded where the source spells it.
    let (_, at_charge) = &all[1];
    let total = at_charge
        .names
        .iter()
        .flatten()
        .find(|info| info.name == "total")
        .unwrap();
    assert_eq!(total.ty, Some("u64"));
    let order = at_charge.names.iter().flatten().find(|i| i.name == "order");
    assert_eq!(order.unwrap().ty, Some("String"));
    assert_eq!(at_charge.name_of(total.slot), Some("total"));
    // One step alone names its slots as the range does.
    assert_eq!(
        engine.step_locals("o", 5).await.unwrap().as_ref(),
        Some(&all[5].1)
    );
    // Every slot named `x` is a different slot.
    let mut slots: Vec<u32> = checkout_slots("x");
    slots.dedup();
    assert_eq!(slots.len(), 2, "x and x#2 are two slots");
    engine.shutdown().await;

    // An engine that does not register the workflow cannot name the slots: the values
    // stay, the names are unknown (never guessed).
    let bare = Engine::builder().open(journal.path()).await.unwrap();
    let at = bare.step_locals("o", 5).await.unwrap().unwrap();
    assert_eq!(at.slots, all[5].1.slots);
    assert!(at.names.iter().all(Option::is_none), "{:?}", at.names);
    bare.shutdown().await;
}

/// The slots `checkout` records under names starting with `name` (`x`, `x#2`).
fn checkout_slots(name: &str) -> Vec<u32> {
    use flow::Workflow;
    checkout::slots()
        .iter()
        .filter(|info| info.name == name || info.name.starts_with(&format!("{name}#")))
        .map(|info| info.slot)
        .collect()
}

/// Version 1 of `gate`: keeps `kept` across the wait for `go`.
#[workflow(name = "gate", version = 1)]
async fn gate_v1(n: u64) -> u64 {
    let kept = ship_parcel(n).await;
    let go = flow::signal::<u64>("go").await;
    kept + go
}

/// Version 2 of `gate`: the same steps up to the wait, other locals (so other slots),
/// then one more step.
#[workflow(name = "gate", version = 2)]
async fn gate_v2(n: u64) -> u64 {
    let offset = n * 2;
    let first = ship_parcel(n).await;
    let go = flow::signal::<u64>("go").await;
    let last = ship_parcel(go).await;
    let extra = ship_parcel(last).await;
    first + last + offset + extra
}

#[tokio::test]
async fn steps_recorded_before_an_upgrade_are_not_named_by_the_new_code() {
    let journal = TempJournal::new("step-locals-upgrade");
    let engine = Engine::builder()
        .register::<gate_v1>()
        .register::<gate_v2>()
        .open(journal.path())
        .await
        .unwrap();
    let run = engine.start_version("g", gate_v1(5)).await.unwrap();
    for _ in 0..500 {
        if engine.status("g").await.unwrap() == flow::RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    engine
        .upgrade::<gate_v2>("g", flow::Upgrade::new())
        .await
        .unwrap();
    engine.signal("g", "go", &100u64).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 6 + 101 + 10 + 102);

    let all = engine.step_locals_range("g", 0..u64::MAX).await.unwrap();
    assert_eq!(all.len(), 4);
    // Steps 0 and 1 hold version 1's slots: version 2's names would mislead.
    assert!(
        !all[1].1.slots.is_empty(),
        "version 1 kept `kept` across the wait"
    );
    for (step, at) in &all[..2] {
        assert!(at.names.iter().all(Option::is_none), "step {step}: {at:?}");
    }
    // Steps 2 and 3 were scheduled by version 2. A step state holds every slot written
    // so far: version 1's `kept` (slot 2) is still there, and stays unnamed; `last`,
    // written by version 2, is named.
    let slot_of = |name: &str| {
        <gate_v2 as flow::Workflow>::slots()
            .iter()
            .find(|info| info.name == name)
            .unwrap()
            .slot
    };
    let kept = <gate_v1 as flow::Workflow>::slots()[0];
    assert_eq!(kept.name, "kept");
    let (_, at) = &all[3];
    assert_eq!(at.name_of(slot_of("last")), Some("last"));
    assert_eq!(at.name_of(kept.slot), None);
    assert_eq!(named(at), ["? = 6", "last = 101"]);
    // Given the history read already, the same.
    let history = engine.history("g").await.unwrap();
    let given = engine
        .step_locals_range_with_history("g", 0..u64::MAX, Some(&history))
        .await
        .unwrap();
    assert_eq!(given, all);
    engine.shutdown().await;
}
