//! `flow::testing::TestEnv`: every primitive in memory, on a virtual clock, with mocked
//! tasks. Written only with `flow::testing`: no engine, no file, no real waiting (each
//! test checks that it took well under a second of real time).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow::testing::{assert_resumes, check_resumes_with, ResumeMismatch, TestEnv, TestError};
use flow::{task, workflow, CallbackError, Either, EventKind, MapFailed, RunStatus, TaskFailure};
use flow::{SignalTimeout, WaitForCallback};
use serde::{Deserialize, Serialize};

const DAY: Duration = Duration::from_secs(86_400);

/// Asserts that a test body took little real time, whatever virtual time it covered.
struct RealTime(Instant);

impl RealTime {
    fn start() -> Self {
        RealTime(Instant::now())
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let took = self.0.elapsed();
            assert!(
                took < Duration::from_secs(2),
                "the test took {took:?} of real time"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A 30-day approval flow with escalation.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Decision {
    approved: bool,
    by: String,
}

#[task]
async fn ask_for_approval(approver: String, request: String) -> Result<(), String> {
    unreachable!("mocked in tests: would email {approver} about {request}")
}

#[workflow]
async fn approval_flow(request: String) -> Result<String, String> {
    // A week for the manager, then a week for each escalation, 30 days in all.
    let approvers = vec![
        ("manager".to_string(), 7u64),
        ("director".to_string(), 7),
        ("vp".to_string(), 7),
        ("ceo".to_string(), 9),
    ];
    let mut waited = 0u64;
    for (approver, wait) in approvers {
        ask_for_approval(approver.clone(), request.clone()).await?;
        waited += wait;
        match flow::signal::<Decision>("decision")
            .timeout(Duration::from_secs(wait * 86_400))
            .await
        {
            Ok(d) if d.approved => return Ok(format!("approved by {} after {approver}", d.by)),
            Ok(d) => return Err(format!("rejected by {}", d.by)),
            Err(SignalTimeout { .. }) => {}
        }
    }
    Err(format!("nobody decided within {waited} days"))
}

#[tokio::test]
async fn a_30_day_approval_flow_with_escalation_runs_in_milliseconds() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let asks = env.mock::<ask_for_approval>().returns(Ok(()));
    let run = env.start(approval_flow("laptop".into())).await.unwrap();
    asks.assert_called(1);
    assert_eq!(
        run.waiting_for().await.as_deref(),
        Some("signal `decision`")
    );

    // Six days: still with the manager.
    env.advance(6 * DAY).await.unwrap();
    asks.assert_called(1);
    // Day 7: escalated to the director; day 14: to the VP.
    env.advance(DAY).await.unwrap();
    asks.assert_called(2);
    env.advance(7 * DAY).await.unwrap();
    let approvers: Vec<String> = asks.calls().into_iter().map(|c| c.approver).collect();
    assert_eq!(approvers, ["manager", "director", "vp"]);

    // The VP approves on day 20.
    env.advance(6 * DAY).await.unwrap();
    run.signal(
        "decision",
        &Decision {
            approved: true,
            by: "vp".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Ok("approved by vp after vp".to_string())
    );
    assert_eq!(env.elapsed(), 20 * DAY);
}

#[tokio::test]
async fn an_approval_nobody_gives_times_out_after_30_days() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let asks = env.mock::<ask_for_approval>().returns(Ok(()));
    let run = env.start(approval_flow("car".into())).await.unwrap();
    // No signal: the result lets time jump from timeout to timeout.
    assert_eq!(
        run.result().await.unwrap(),
        Err("nobody decided within 30 days".to_string())
    );
    assert_eq!(env.elapsed(), 30 * DAY);
    asks.assert_called(4);
    let fired = run
        .history()
        .await
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .count();
    assert_eq!(fired, 4);
}

// ---------------------------------------------------------------------------------------
// A mocked payment failure drives the compensation path.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PaymentError {
    Declined(String),
    Unavailable(String),
}

impl From<TaskFailure> for PaymentError {
    fn from(failure: TaskFailure) -> Self {
        PaymentError::Unavailable(failure.to_string())
    }
}

#[task]
async fn reserve(item: String) -> Result<String, String> {
    Ok(format!("res-{item}"))
}

#[task(retry(max_attempts = 1))]
async fn charge(card: String, cents: u64) -> Result<String, PaymentError> {
    unreachable!("mocked in tests: would charge {cents} to {card}")
}

#[task]
async fn release(reservation: String) -> Result<(), String> {
    unreachable!("mocked in tests: would release {reservation}")
}

#[workflow]
async fn place_order(item: String, card: String, cents: u64) -> Result<String, String> {
    let reservation = reserve(item).await?;
    match charge(card, cents).await {
        Ok(payment) => Ok(format!("{reservation} paid by {payment}")),
        Err(PaymentError::Declined(why)) => {
            release(reservation).await?;
            Err(format!("declined: {why}"))
        }
        Err(PaymentError::Unavailable(why)) => Err(format!("try again: {why}")),
    }
}

#[tokio::test]
async fn a_mocked_payment_failure_drives_the_compensation_path() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let charges = env
        .mock::<charge>()
        .returns(Err(PaymentError::Declined("insufficient funds".into())));
    let releases = env.mock::<release>().returns(Ok(()));
    let run = env
        .start(place_order("book".into(), "4242".into(), 1999))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err("declined: insufficient funds".to_string())
    );
    charges.assert_called(1);
    let call = &charges.calls()[0];
    assert_eq!((call.card.as_str(), call.cents), ("4242", 1999));
    // Without access to the argument struct's fields: as JSON, or as a struct of one's own.
    assert_eq!(charges.calls_json(), [r#"{"card":"4242","cents":1999}"#]);
    #[derive(Deserialize, Debug, PartialEq)]
    struct Cents {
        cents: u64,
    }
    assert_eq!(
        charges.calls_as::<Cents>().unwrap(),
        [Cents { cents: 1999 }]
    );
    // The real `reserve` ran; the compensation released what it reserved.
    let released: Vec<String> = releases
        .calls()
        .into_iter()
        .map(|c| c.reservation)
        .collect();
    assert_eq!(released, ["res-book"]);

    // With the payment accepted, nothing is released.
    let env = TestEnv::new();
    env.mock::<charge>()
        .answers(|c| Ok(format!("pay-{}", c.cents)));
    let releases = env.mock::<release>().returns(Ok(()));
    let run = env
        .start(place_order("pen".into(), "4242".into(), 5))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Ok("res-pen paid by pay-5".into())
    );
    releases.assert_called(0);
}

// ---------------------------------------------------------------------------------------
// Virtual time: sleeps fire in deadline order; retries back off on the virtual clock.

#[task]
async fn note(what: String) {
    unreachable!("mocked in tests: {what}")
}

#[workflow]
async fn sleeper(name: String, secs: u64) {
    flow::sleep(Duration::from_secs(secs)).await;
    note(name).await;
}

#[tokio::test]
async fn timers_fire_in_deadline_order() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    env.mock::<note>()
        .answers(move |n| seen.lock().unwrap().push(n.what));
    // Started in another order than their deadlines.
    let late = env.start(sleeper("late".into(), 300)).await.unwrap();
    env.start(sleeper("early".into(), 100)).await.unwrap();
    env.start(sleeper("middle".into(), 200)).await.unwrap();

    env.advance(Duration::from_secs(99)).await.unwrap();
    assert!(order.lock().unwrap().is_empty(), "nothing is due yet");
    assert_eq!(
        env.advance_to_next_timer().await.unwrap(),
        Some(env.now()),
        "the clock stops at the next deadline"
    );
    assert_eq!(env.elapsed(), Duration::from_secs(100));
    assert_eq!(*order.lock().unwrap(), ["early"]);
    env.advance(Duration::from_secs(1000)).await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["early", "middle", "late"]);
    assert_eq!(late.status().await, RunStatus::Completed);
    assert_eq!(env.advance_to_next_timer().await.unwrap(), None);
}

#[task(retry(max_attempts = 3, initial = "1h", backoff = 2.0, max_interval = "24h"))]
async fn flaky(n: u32) -> Result<u32, String> {
    unreachable!("mocked in tests: {n}")
}

#[workflow]
async fn with_retries(n: u32) -> Result<u32, String> {
    flaky(n).await
}

#[tokio::test]
async fn retry_back_offs_run_on_the_virtual_clock() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let mock = env.mock::<flaky>().returns_in_order([
        Err("down".to_string()),
        Err("still down".to_string()),
        Ok(7),
    ]);
    let run = env.start(with_retries(1)).await.unwrap();
    mock.assert_called(1);
    env.advance(Duration::from_secs(3599)).await.unwrap();
    mock.assert_called(1);
    env.advance(Duration::from_secs(1)).await.unwrap();
    mock.assert_called(2);
    // The second back-off is twice the first.
    env.advance(Duration::from_secs(7199)).await.unwrap();
    mock.assert_called(2);
    assert_eq!(run.result().await.unwrap(), Ok(7));
    assert_eq!(env.elapsed(), Duration::from_secs(3 * 3600));
    let failed = run
        .history()
        .await
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptFailed { .. }))
        .count();
    assert_eq!(failed, 2);

    // Exhausted: the last `Err` reaches the workflow; a call past the given outputs is
    // the test's error, naming the task.
    let env = TestEnv::new();
    env.mock::<flaky>().returns(Err("gone".to_string()));
    let run = env.start(with_retries(2)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Err("gone".to_string()));
    let env = TestEnv::new();
    env.mock::<flaky>()
        .returns_in_order([Err("once".to_string())]);
    let run = env.start(with_retries(3)).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(
        matches!(&error, TestError::Mock { task, .. } if task == "flaky"),
        "{error}"
    );
}

#[task(retry(max_attempts = 2, initial = "10s"), timeout = "1m")]
async fn slow_lookup(key: String) -> Result<String, TaskFailure> {
    unreachable!("mocked in tests: {key}")
}

#[workflow]
async fn lookup(key: String) -> Result<String, String> {
    slow_lookup(key).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_hung_task_times_out_in_virtual_time() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let mock = env.mock::<slow_lookup>().hangs();
    let run = env.start(lookup("k".into())).await.unwrap();
    // Two attempts of a minute each, ten seconds apart.
    let error = run.result().await.unwrap().unwrap_err();
    assert!(error.contains("timed out after 60s"), "{error}");
    mock.assert_called(2);
    assert_eq!(env.elapsed(), Duration::from_secs(130));
}

// ---------------------------------------------------------------------------------------
// Signals.

#[workflow]
async fn two_signals() -> (u32, String) {
    let n = flow::signal::<u32>("number").await;
    let s = flow::signal::<String>("text").await;
    (n, s)
}

#[tokio::test]
async fn signals_are_delivered_in_order_even_before_the_wait() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let run = env.start(two_signals()).await.unwrap();
    // The text arrives first and waits in the inbox.
    run.signal("text", "hello").await.unwrap();
    assert_eq!(run.waiting_for().await.as_deref(), Some("signal `number`"));
    run.signal("number", &5u32).await.unwrap();
    assert_eq!(run.result().await.unwrap(), (5, "hello".to_string()));

    // Refused like the engine refuses them: a name never awaited, a value of a wrong
    // type, a finished run.
    let run = env.start(two_signals()).await.unwrap();
    let unknown = run.signal("nmber", &5u32).await.unwrap_err();
    assert!(unknown.to_string().contains("nmber"), "{unknown}");
    let wrong = run.signal("number", "five").await.unwrap_err();
    assert!(matches!(wrong, TestError::Refused(_)), "{wrong}");
    // A run that waits for a signal nobody sends cannot finish.
    let stuck = run.result().await.unwrap_err();
    assert!(
        matches!(&stuck, TestError::Stuck { waiting_for, .. } if waiting_for == "signal `number`"),
        "{stuck}"
    );
    run.signal("number", &1u32).await.unwrap();
    run.signal("text", "x").await.unwrap();
    run.result().await.unwrap();
    let late = run.signal("text", "y").await.unwrap_err();
    assert!(matches!(late, TestError::RunFinished { .. }), "{late}");
}

// ---------------------------------------------------------------------------------------
// Callbacks.

#[task]
async fn send_link(to: String) -> Result<(), String> {
    // Runs for real: it can read its token as in an engine.
    let token = flow::TaskContext::current().and_then(|c| c.callback_token().map(String::from));
    assert!(token.is_some(), "a callback task gets its token for {to}");
    Ok(())
}

#[workflow]
async fn callback_flow(to: String) -> Result<String, CallbackError> {
    send_link(to)
        .wait_for_callback::<String>(Duration::from_secs(3600))
        .heartbeat(Duration::from_secs(600))
        .await
}

#[tokio::test]
async fn callback_tokens_are_completed_rejected_or_time_out() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let run = env.start(callback_flow("ann".into())).await.unwrap();
    let token = run.callback_token().await.unwrap();
    env.advance(Duration::from_secs(500)).await.unwrap();
    env.heartbeat(&token).await.unwrap();
    env.advance(Duration::from_secs(500)).await.unwrap();
    env.complete_callback(&token, Ok::<_, String>("signed".to_string()))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("signed".to_string()));
    // Single use.
    let again = env
        .complete_callback(&token, Ok::<_, String>("twice".to_string()))
        .await
        .unwrap_err();
    assert!(
        matches!(again, TestError::InvalidCallbackToken { .. }),
        "{again}"
    );

    let run = env.start(callback_flow("bob".into())).await.unwrap();
    let token = run.callback_token().await.unwrap();
    env.complete_callback::<String>(&token, Err("no".into()))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::Rejected("no".into()))
    );

    // Without heartbeats the callback ends after one interval.
    let run = env.start(callback_flow("cy".into())).await.unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::HeartbeatTimedOut {
            after: Duration::from_secs(600)
        })
    );
    // With heartbeats, at the overall timeout.
    let run = env.start(callback_flow("di".into())).await.unwrap();
    let token = run.callback_token().await.unwrap();
    for _ in 0..7 {
        env.advance(Duration::from_secs(590)).await.unwrap();
        let _ = env.heartbeat(&token).await;
    }
    assert_eq!(
        run.result().await.unwrap(),
        Err(CallbackError::TimedOut {
            after: Duration::from_secs(3600)
        })
    );
}

// ---------------------------------------------------------------------------------------
// Races, joins, maps, child workflows.

#[workflow]
async fn first_of(wait_secs: u64) -> String {
    match flow::select!(
        flow::signal::<String>("go"),
        flow::sleep(Duration::from_secs(wait_secs))
    )
    .await
    {
        Either::Left(word) => word,
        Either::Right(()) => "timer".to_string(),
    }
}

#[tokio::test]
async fn a_race_is_won_by_whichever_comes_first() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let run = env.start(first_of(60)).await.unwrap();
    env.advance(Duration::from_secs(30)).await.unwrap();
    run.signal("go", "now").await.unwrap();
    assert_eq!(run.result().await.unwrap(), "now");

    let run = env.start(first_of(60)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "timer");
    // The losing signal wait consumed nothing: a later signal is refused only because
    // the run has ended.
    assert!(run.signal("go", "late").await.is_err());
}

#[task]
async fn square(n: u64) -> Result<u64, String> {
    if n == 13 {
        return Err("unlucky".into());
    }
    Ok(n * n)
}

#[workflow]
async fn square_child(n: u64) -> Result<u64, String> {
    flow::sleep(Duration::from_secs(n)).await;
    square(n).await
}

#[workflow]
async fn fan_out(ns: Vec<u64>) -> Result<(Vec<u64>, u64), String> {
    let (a, b) = flow::join!(square(1), square_child(2)).await;
    let children = flow::map(ns, 2, square_child).await;
    let mut out = Vec::new();
    for c in children {
        out.push(c?);
    }
    Ok((out, a? + b?))
}

#[workflow]
async fn tolerant_squares(ns: Vec<u64>) -> Result<Vec<Result<u64, String>>, MapFailed> {
    flow::map(ns, 4, square).tolerate_failures(1).await
}

#[tokio::test]
async fn joins_maps_and_child_workflows_run_in_memory() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    env.register::<square_child>();
    let run = env
        .start_with_id("fan", fan_out(vec![3, 10, 4]))
        .await
        .unwrap();
    // Children sleep their own number of seconds. The join's child ends at 2s; then
    // the map starts two children (until 5s and 12s) and the third when one ends.
    env.advance(Duration::from_secs(3)).await.unwrap();
    assert_eq!(env.status("fan/0.1").await.unwrap(), RunStatus::Completed);
    assert_eq!(env.status("fan/1.0").await.unwrap(), RunStatus::Waiting);
    assert!(matches!(
        env.status("fan/1.2").await,
        Err(TestError::UnknownRun { .. })
    ));
    env.advance(Duration::from_secs(2)).await.unwrap();
    assert_eq!(env.status("fan/1.0").await.unwrap(), RunStatus::Completed);
    assert_eq!(env.status("fan/1.2").await.unwrap(), RunStatus::Waiting);
    assert_eq!(run.result().await.unwrap(), Ok((vec![9, 100, 16], 5)));
    assert_eq!(env.elapsed(), Duration::from_secs(12));
    // Unlike the engine's, this history shows the map with its items.
    let history = run.history().await;
    let map = history.iter().find_map(|e| match &e.kind {
        EventKind::StepScheduled {
            request: flow::OpRequest::Map { items, .. },
            ..
        } => Some(items.len()),
        _ => None,
    });
    assert_eq!(map, Some(3));

    // A tolerant map counts failed items; one too many fails it.
    let run = env.start(tolerant_squares(vec![2, 13])).await.unwrap();
    assert_eq!(
        run.result().await.unwrap().unwrap(),
        vec![Ok(4), Err("unlucky".to_string())]
    );
    let run = env.start(tolerant_squares(vec![13, 13])).await.unwrap();
    let failed = run.result().await.unwrap().unwrap_err();
    assert_eq!((failed.failed, failed.tolerated), (2, 1));
}

#[tokio::test]
async fn a_child_workflow_must_be_registered() {
    let env = TestEnv::new();
    let error = env.start(fan_out(vec![1])).await.unwrap_err();
    assert!(
        matches!(&error, TestError::UnknownWorkflow { name } if name == "square_child"),
        "{error}"
    );
    assert!(error.to_string().contains("env.register::<square_child>()"));
}

// ---------------------------------------------------------------------------------------
// Continue-as-new, cancellation, run timeouts.

#[workflow]
async fn countdown(n: u32, total: u32) -> u32 {
    flow::sleep(Duration::from_secs(60)).await;
    if n == 0 {
        return total;
    }
    flow::continue_as_new((n - 1, total + n)).await
}

#[tokio::test]
async fn continue_as_new_restarts_the_run_with_a_fresh_history() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let run = env.start(countdown(3, 0)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 6);
    assert_eq!(env.elapsed(), Duration::from_secs(4 * 60));
    let history = run.history().await;
    assert!(
        matches!(
            history[0].kind,
            EventKind::ContinuedAsNew {
                steps_before: 3,
                ..
            }
        ),
        "{history:?}"
    );
}

#[task(timeout = "1h")]
async fn ship(order: String) -> Result<String, TaskFailure> {
    unreachable!("mocked in tests: {order}")
}

#[task]
async fn refund(order: String) -> Result<(), String> {
    unreachable!("mocked in tests: {order}")
}

#[workflow]
async fn shipping(order: String) -> Result<String, String> {
    match ship(order.clone()).await {
        Ok(tracking) => Ok(tracking),
        Err(TaskFailure::Cancelled { .. }) => {
            refund(order).await?;
            Err("cancelled and refunded".into())
        }
        Err(other) => Err(other.to_string()),
    }
}

#[tokio::test]
async fn cancelling_a_task_lets_the_workflow_compensate() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    env.mock::<ship>().hangs();
    let refunds = env.mock::<refund>().returns(Ok(()));
    let run = env.start(shipping("o-1".into())).await.unwrap();
    env.advance(Duration::from_secs(600)).await.unwrap();
    run.cancel().await.unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err("cancelled and refunded".to_string())
    );
    refunds.assert_called(1);
    assert!(run
        .history()
        .await
        .iter()
        .any(|e| e.kind == EventKind::CancelRequested));
}

#[tokio::test]
async fn run_timeouts_cancel_in_virtual_time() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    // A sleep cannot take `Err(Cancelled)`: the run ends cancelled at its deadline.
    let run = env
        .start_with_timeout(countdown(5, 0), Duration::from_secs(90))
        .await
        .unwrap();
    let error = run.result().await.unwrap_err();
    assert!(matches!(error, TestError::Cancelled { .. }), "{error}");
    assert_eq!(run.status().await, RunStatus::Cancelled);
    assert_eq!(env.elapsed(), Duration::from_secs(90));

    // A pending task can: the workflow compensates.
    env.mock::<ship>().hangs();
    let refunds = env.mock::<refund>().returns(Ok(()));
    let run = env
        .start_with_timeout(shipping("o-2".into()), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        run.result().await.unwrap(),
        Err("cancelled and refunded".to_string())
    );
    refunds.assert_called(1);
    let history = run.history().await;
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunTimedOut { .. })));
}

#[workflow]
async fn parent(secs: u64) -> Result<u64, String> {
    square_child(secs).await
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_child() {
    let env = TestEnv::new();
    env.register::<square_child>();
    let run = env.start_with_id("p", parent(100)).await.unwrap();
    assert_eq!(env.status("p/0").await.unwrap(), RunStatus::Waiting);
    run.cancel().await.unwrap();
    assert_eq!(run.status().await, RunStatus::Cancelled);
    assert_eq!(env.status("p/0").await.unwrap(), RunStatus::Cancelled);
}

// ---------------------------------------------------------------------------------------
// Mocks by name; resume checks.

#[tokio::test]
async fn a_task_can_be_mocked_by_its_registered_name() {
    let env = TestEnv::new();
    let reserve = env
        .mock_named("reserve")
        .returns(&Ok::<_, String>("held".to_string()));
    env.mock::<charge>().returns(Ok("paid".into()));
    let run = env
        .start(place_order("lamp".into(), "1".into(), 3))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Ok("held paid by paid".into()));
    reserve.assert_called(1);
    assert_eq!(reserve.calls_json(), [r#"{"item":"lamp"}"#]);
}

#[tokio::test]
async fn resuming_at_every_step_boundary_ends_like_an_uninterrupted_run() {
    let _real = RealTime::start();
    let checked = check_resumes_with(
        || fan_out(vec![5, 6, 7]),
        |env| {
            env.register::<square_child>();
        },
    )
    .await
    .unwrap();
    assert_eq!(checked, 2);
    let checked = check_resumes_with(
        || approval_flow("desk".into()),
        |env| {
            env.mock::<ask_for_approval>().returns(Ok(()));
        },
    )
    .await
    .unwrap();
    assert_eq!(checked, 8, "four asks and four timeouts");
    assert_resumes(|| countdown(3, 0)).await;
    // A run that cannot complete is reported, not compared.
    let error = check_resumes_with(two_signals, |_| {}).await.unwrap_err();
    assert!(
        matches!(error, ResumeMismatch::Reference(TestError::Stuck { .. })),
        "{error}"
    );
}

#[workflow]
async fn forever(every_secs: u64) -> u64 {
    let mut ticks = 0u64;
    loop {
        flow::sleep(Duration::from_secs(every_secs)).await;
        ticks += 1;
        if ticks == u64::MAX {
            return ticks;
        }
    }
}

#[tokio::test]
async fn a_run_that_never_ends_is_reported_instead_of_hanging_the_test() {
    let env = TestEnv::new();
    let run = env.start(forever(1)).await.unwrap();
    env.advance(Duration::from_secs(10)).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(matches!(error, TestError::Endless { .. }), "{error}");
    assert_eq!(run.status().await, RunStatus::Waiting);
}

// ---------------------------------------------------------------------------------------
// Orders the environment picks, nested joins, failures.

#[workflow]
async fn nested(n: u64) -> (u64, (u64, u64)) {
    let (a, (b, c)) = flow::join!(square(n), flow::join!(square(n + 1), square(n + 2))).await;
    (a.unwrap_or(0), (b.unwrap_or(0), c.unwrap_or(0)))
}

#[workflow]
async fn task_or_timer(n: u64) -> Result<u64, String> {
    match flow::select!(square(n), flow::sleep(Duration::from_secs(1))).await {
        Either::Left(squared) => squared,
        Either::Right(()) => Err("timer".into()),
    }
}

#[tokio::test]
async fn nested_joins_and_races_of_tasks() {
    let env = TestEnv::new();
    let run = env.start(nested(2)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), (4, (9, 16)));
    // A task that answers at once wins against a timer, which never fires.
    let run = env.start(task_or_timer(3)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Ok(9));
    assert_eq!(env.elapsed(), Duration::ZERO);
    // A task that hangs loses to it.
    env.mock::<square>().hangs();
    let run = env.start(task_or_timer(3)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), Err("timer".into()));
    assert_eq!(env.elapsed(), Duration::from_secs(1));
}

#[workflow]
async fn child_waits(secs: u64) -> u32 {
    flow::sleep(Duration::from_secs(secs)).await;
    flow::signal::<u32>("poke").await
}

#[workflow]
async fn parent_of_waiting(secs: u64) -> u32 {
    child_waits(secs).await
}

#[workflow]
async fn panics_after_sleep() -> u32 {
    flow::sleep(Duration::from_secs(5)).await;
    panic!("the workflow gave up")
}

#[tokio::test]
async fn child_runs_take_signals_and_failures_reach_the_test() {
    let env = TestEnv::new();
    env.register::<child_waits>();
    let run = env.start_with_id("p", parent_of_waiting(10)).await.unwrap();
    assert_eq!(run.waiting_for().await.as_deref(), Some("child run `p/0`"));
    env.signal("p/0", "poke", &7u32).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 7);

    let run = env.start(panics_after_sleep()).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(
        matches!(&error, TestError::Failed { error, .. } if error.contains("the workflow gave up")),
        "{error}"
    );
    assert!(matches!(run.status().await, RunStatus::Failed { .. }));
}

#[workflow]
async fn squares_of(ns: Vec<u64>) -> u64 {
    let squares = flow::map(ns, 8, square).await;
    squares.into_iter().map(|s| s.unwrap_or(0)).sum()
}

#[tokio::test]
async fn a_map_of_ten_thousand_items_takes_little_real_time() {
    let _real = RealTime::start();
    let env = TestEnv::new();
    let run = env.start(squares_of((0..10_000).collect())).await.unwrap();
    let expected: u64 = (0..10_000u64).filter(|n| *n != 13).map(|n| n * n).sum();
    assert_eq!(run.result().await.unwrap(), expected);
}
