//! Issue 11, the engine's half: runs never reach a dead end for lack of code, names never
//! run the wrong code, and listings, statuses and run IDs say exactly what is stored. Each
//! test runs a real engine on a real journal file and asserts either the exact
//! acknowledged data or a refusal that changes nothing on disk.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use flow::{
    task, workflow, Engine, EventKind, FlowError, ListQuery, RunStatus, StatusKind, TaskFailure,
};
use support::ScratchDir;

/// The journal's files (the redb file and its log) with a hash of each, to prove a
/// refusal left them as they were.
fn fingerprint_files(journal: &Path) -> Vec<(PathBuf, Option<u64>)> {
    use std::hash::{Hash, Hasher};
    let log = PathBuf::from(format!("{}-wal", journal.display()));
    [journal.to_path_buf(), log]
        .into_iter()
        .map(|path| {
            let hash = std::fs::read(&path).ok().map(|bytes| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                hasher.finish()
            });
            (path, hash)
        })
        .collect()
}

/// How long a run may take before a test fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("the run did not get there in time")
}

/// [`within`] as a method, for chains.
trait Within: std::future::Future + Sized {
    fn within(self) -> impl std::future::Future<Output = Self::Output> {
        within(self)
    }
}

impl<F: std::future::Future> Within for F {}

// --- Dead ends: a run that lacks code waits for it ---------------------------------------

#[task]
async fn rel_fetch(x: u64) -> u64 {
    x * 2
}

#[workflow]
async fn rel_uses_fetch(x: u64) -> u64 {
    let doubled = rel_fetch(x).await;
    doubled + 1
}

#[tokio::test]
async fn a_task_missing_from_the_build_blocks_the_run_until_it_is_back() {
    let dir = ScratchDir::new("rel-missing-task");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_uses_fetch>()
        .hide_task_for_test("rel_fetch")
        .open(&journal)
        .await
        .unwrap();
    let run = engine.start("r", rel_uses_fetch(20)).await.unwrap();
    let err = within(run.result()).await.unwrap_err();
    assert!(matches!(err, FlowError::RunBlocked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("task `rel_fetch` is not registered"),
        "{err}"
    );
    // `status`, `list` and `result` say the same thing.
    let status = engine.status("r").await.unwrap();
    let RunStatus::Blocked { reason } = &status else {
        panic!("{status:?}")
    };
    assert!(
        err.to_string().contains(reason.as_str()),
        "{reason} / {err}"
    );
    assert_eq!(engine.list().await.unwrap()[0].status, status);
    let history = engine.history("r").await.unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunFaulted { .. })),
        "{history:?}"
    );
    engine.shutdown().await;

    // The build with the task opens the journal: the run finishes, exactly.
    let engine = Engine::builder()
        .register::<rel_uses_fetch>()
        .open(&journal)
        .await
        .unwrap();
    let run = engine.handle::<rel_uses_fetch>("r").unwrap();
    assert_eq!(within(run.result()).await.unwrap(), 41);
    assert_eq!(engine.status("r").await.unwrap(), RunStatus::Completed);
    engine.shutdown().await;
}

/// Two builds of one workflow: its code reads the same, but `Amount` changed type, so
/// the stored local no longer decodes (same name, same fingerprint).
mod build_a {
    pub type Amount = u64;

    #[flow::workflow(name = "rel_pay")]
    pub async fn pay(amount: Amount) -> Amount {
        flow::sleep(std::time::Duration::from_millis(300)).await;
        amount
    }
}

mod build_b {
    pub type Amount = String;

    #[flow::workflow(name = "rel_pay")]
    pub async fn pay(amount: Amount) -> Amount {
        flow::sleep(std::time::Duration::from_millis(300)).await;
        amount
    }
}

#[tokio::test]
async fn a_stored_value_that_no_longer_decodes_blocks_the_run_until_the_type_is_back() {
    assert_eq!(
        <build_a::pay as flow::Workflow>::FINGERPRINT,
        <build_b::pay as flow::Workflow>::FINGERPRINT,
        "the two builds must read alike for this test to mean anything"
    );
    let dir = ScratchDir::new("rel-changed-type");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<build_a::pay>()
        .open(&journal)
        .await
        .unwrap();
    engine.start("p", build_a::pay(1234)).await.unwrap();
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<build_b::pay>()
        .open(&journal)
        .await
        .unwrap();
    // The sleep ends while build B runs; resuming needs the stored `amount`.
    let err = engine
        .handle::<build_b::pay>("p")
        .unwrap()
        .result()
        .within()
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::RunBlocked { .. }), "{err}");
    assert!(err.to_string().contains("local `amount`"), "{err}");
    assert!(matches!(
        engine.status("p").await.unwrap(),
        RunStatus::Blocked { .. }
    ));
    engine.shutdown().await;

    let engine = Engine::builder()
        .register::<build_a::pay>()
        .open(&journal)
        .await
        .unwrap();
    let output = engine
        .handle::<build_a::pay>("p")
        .unwrap()
        .result()
        .within()
        .await
        .unwrap();
    assert_eq!(output, 1234);
    engine.shutdown().await;
}

// --- Names that run the wrong code -------------------------------------------------------

mod orders {
    #[flow::workflow(name = "rel_same_name")]
    pub async fn place(x: u64) -> u64 {
        x
    }
}

mod refunds {
    #[flow::workflow(name = "rel_same_name")]
    pub async fn place(x: u64) -> u64 {
        x + 1
    }
}

#[tokio::test]
async fn two_workflows_under_one_name_are_refused_before_the_journal_is_touched() {
    let dir = ScratchDir::new("rel-dup-workflow");
    let journal = dir.file("j.redb");
    let err = Engine::builder()
        .register::<orders::place>()
        .register::<refunds::place>()
        .open(&journal)
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::DuplicateName { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("`rel_same_name`"), "{message}");
    assert!(message.contains("orders::place"), "{message}");
    assert!(message.contains("refunds::place"), "{message}");
    assert!(!journal.exists(), "nothing was created");
    // Registering the same workflow twice is harmless.
    let engine = Engine::builder()
        .register::<orders::place>()
        .register::<orders::place>()
        .open(&journal)
        .await
        .unwrap();
    engine.shutdown().await;
}

#[task]
async fn rel_bare() -> u32 {
    1
}

#[test]
fn tasks_register_under_their_function_name_with_documented_defaults() {
    assert_eq!(<rel_bare as flow::__private::Task>::NAME, "rel_bare");
    assert_eq!(<orders::place as flow::Workflow>::NAME, "rel_same_name");
    assert_eq!(<rel_uses_fetch as flow::Workflow>::NAME, "rel_uses_fetch");
    let policy = <rel_bare as flow::__private::Task>::policy();
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!(policy.effective_timeout(), flow::DEFAULT_TASK_TIMEOUT);
    assert_eq!(flow::DEFAULT_TASK_TIMEOUT, Duration::from_secs(300));
}

// --- Listings and statuses ---------------------------------------------------------------

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Refused(String);

impl From<TaskFailure> for Refused {
    fn from(failure: TaskFailure) -> Self {
        Refused(failure.to_string())
    }
}

#[workflow]
async fn rel_judge(x: u64) -> Result<u64, Refused> {
    if x.is_multiple_of(3) {
        Err(Refused(format!("{x} is a multiple of 3")))
    } else {
        Ok(x)
    }
}

#[tokio::test]
async fn listings_page_with_a_cursor_filter_and_tell_failed_from_succeeded() {
    let dir = ScratchDir::new("rel-list");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_judge>()
        .register::<rel_uses_fetch>()
        .open(&journal)
        .await
        .unwrap();
    for i in 0..25u64 {
        let run = engine
            .start(format!("j{i:02}"), rel_judge(i))
            .await
            .unwrap();
        let result = within(run.result()).await.unwrap();
        assert_eq!(result.is_err(), i.is_multiple_of(3));
    }
    for i in 0..4u64 {
        let run = engine
            .start(format!("f{i}"), rel_uses_fetch(i))
            .await
            .unwrap();
        assert_eq!(within(run.result()).await.unwrap(), i * 2 + 1);
    }
    // Pages of 10 cover every run once, in order, and end with no cursor.
    let mut query = ListQuery {
        limit: Some(10),
        ..ListQuery::default()
    };
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = engine.list_page(&query).await.unwrap();
        sizes.push(page.runs.len());
        paged.extend(page.runs);
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(paged, engine.list().await.unwrap());
    assert_eq!(paged.len(), 29);
    assert_eq!(sizes.iter().sum::<usize>(), 29);
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    // Succeeded and failed runs are told apart.
    for run in &paged {
        let expected = match run.run_id.strip_prefix('j') {
            Some(n) if n.parse::<u64>().unwrap().is_multiple_of(3) => RunStatus::ReturnedErr,
            _ => RunStatus::Completed,
        };
        assert_eq!(run.status, expected, "{}", run.run_id);
    }
    assert_eq!(engine.status("j03").await.unwrap(), RunStatus::ReturnedErr);
    assert_eq!(engine.status("j04").await.unwrap(), RunStatus::Completed);
    // Filters: by status, by workflow, both.
    let failed = engine
        .list_page(&ListQuery {
            status: Some(StatusKind::ReturnedErr),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = failed.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        ids,
        ["j00", "j03", "j06", "j09", "j12", "j15", "j18", "j21", "j24"]
    );
    assert_eq!(failed.next, None);
    let fetches = engine
        .list_page(&ListQuery {
            workflow: Some("rel_uses_fetch".into()),
            limit: Some(3),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = fetches.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["f0", "f1", "f2"]);
    let rest = engine
        .list_page(&ListQuery {
            workflow: Some("rel_uses_fetch".into()),
            after: fetches.next,
            limit: Some(3),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = rest.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["f3"]);
    assert_eq!(rest.next, None);
    engine.shutdown().await;
}

// --- Run IDs -----------------------------------------------------------------------------

#[tokio::test]
async fn run_ids_with_control_or_bidi_characters_are_refused_and_change_nothing() {
    let dir = ScratchDir::new("rel-run-ids");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_judge>()
        .open(&journal)
        .await
        .unwrap();
    let run = engine
        .start("plain-id ünïcode", rel_judge(1))
        .await
        .unwrap();
    assert_eq!(within(run.result()).await.unwrap(), Ok(1));
    let before = fingerprint_files(&journal);
    let refused = [
        "line\nbreak",
        "carriage\rreturn",
        "nul\0byte",
        "tab\there",
        "escape\u{1b}[31m",
        "del\u{7f}",
        "c1\u{85}next-line",
        "bidi\u{202E}txt.exe",
        "isolate\u{2066}x\u{2069}",
        "mark\u{200F}",
    ];
    for id in refused {
        let err = engine.start(id, rel_judge(2)).await.unwrap_err();
        assert!(
            matches!(err, FlowError::InvalidRunId { .. }),
            "{id:?}: {err}"
        );
        assert!(err.to_string().contains("character"), "{err}");
    }
    assert_eq!(
        fingerprint_files(&journal),
        before,
        "a refusal wrote nothing"
    );
    let runs = engine.list().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, "plain-id ünïcode");
    engine.shutdown().await;
}

// --- A task output over the payload limit ------------------------------------------------

#[task(retry(max_attempts = 2, initial = "1ms"))]
async fn rel_huge(bytes: u64) -> Result<Vec<u8>, Refused> {
    Ok(vec![7; bytes as usize])
}

#[workflow]
async fn rel_handles_huge(bytes: u64) -> String {
    let fetched = rel_huge(bytes).await;
    match fetched {
        Ok(data) => format!("got {} bytes", data.len()),
        Err(Refused(why)) => format!("handled: {why}"),
    }
}

#[tokio::test]
async fn a_task_output_over_the_payload_limit_reaches_the_workflow_as_an_err() {
    let dir = ScratchDir::new("rel-huge-output");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_handles_huge>()
        .open(&journal)
        .await
        .unwrap();
    let over = flow::MAX_PAYLOAD_BYTES as u64 + 1;
    let run = engine.start("h", rel_handles_huge(over)).await.unwrap();
    let output = within(run.result()).await.unwrap();
    assert!(
        output.starts_with("handled: task `rel_huge` returned an output that cannot be stored"),
        "{output}"
    );
    assert!(output.contains("payload limit"), "{output}");
    assert_eq!(engine.status("h").await.unwrap(), RunStatus::Completed);
    let failed_attempts = engine
        .history("h")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::AttemptFailed { .. }))
        .count();
    assert_eq!(failed_attempts, 2, "retried as the policy says");
    // Under the limit, the same task's output arrives whole.
    let run = engine.start("small", rel_handles_huge(1000)).await.unwrap();
    assert_eq!(within(run.result()).await.unwrap(), "got 1000 bytes");
    engine.shutdown().await;
}

// --- Retrying a faulted run --------------------------------------------------------------

#[workflow]
async fn rel_hoards(bytes: u64) -> u64 {
    // A local over the payload limit cannot be stored at the next suspension: a fault.
    let hoard = vec![1u8; bytes as usize];
    flow::sleep(Duration::from_millis(1)).await;
    hoard.len() as u64
}

#[tokio::test]
async fn a_faulted_run_can_be_retried_and_a_run_that_is_not_faulted_is_refused() {
    let dir = ScratchDir::new("rel-retry-faulted");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_hoards>()
        .open(&journal)
        .await
        .unwrap();
    let over = flow::MAX_PAYLOAD_BYTES as u64 + 1;
    let run = engine.start("big", rel_hoards(over)).await.unwrap();
    let err = within(run.result()).await.unwrap_err();
    assert!(matches!(err, FlowError::RunFaulted { .. }), "{err}");
    let faults = |history: &[flow::HistoryEvent]| {
        history
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunFaulted { .. }))
            .count()
    };
    assert_eq!(faults(&engine.history("big").await.unwrap()), 1);

    // Retried, it runs its first step again; the cause is still there, so it faults again.
    engine.retry_faulted("big").await.unwrap();
    let err = within(run.result()).await.unwrap_err();
    assert!(matches!(err, FlowError::RunFaulted { .. }), "{err}");
    let history = engine.history("big").await.unwrap();
    assert_eq!(faults(&history), 2);
    assert!(history.iter().any(
        |e| matches!(&e.kind, EventKind::FaultRetried { error } if error.contains("payload limit"))
    ));

    // A run that is not faulted is refused, and nothing is written.
    let small = engine.start("small", rel_hoards(10)).await.unwrap();
    assert_eq!(within(small.result()).await.unwrap(), 10);
    let before = fingerprint_files(&journal);
    for id in ["small", "nope"] {
        let err = engine.retry_faulted(id).await.unwrap_err();
        assert!(
            matches!(
                err,
                FlowError::NotFaulted { .. } | FlowError::UnknownRun { .. }
            ),
            "{err}"
        );
    }
    assert_eq!(fingerprint_files(&journal), before);
    engine.shutdown().await;
}

// --- A large input is journaled once -----------------------------------------------------

#[workflow]
async fn rel_big_input(data: String) -> u64 {
    let mut total = data.len() as u64;
    for _ in 0..3 {
        total = rel_fetch(total).await;
    }
    total
}

/// Bytes of the journal's files together.
fn journal_bytes(journal: &Path) -> u64 {
    fingerprint_files(journal)
        .iter()
        .filter_map(|(path, _)| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn a_large_input_costs_the_journal_a_small_multiple_of_its_size() {
    let dir = ScratchDir::new("rel-big-input");
    let journal = dir.file("j.redb");
    let engine = Engine::builder()
        .register::<rel_big_input>()
        .register::<rel_judge>()
        .open(&journal)
        .await
        .unwrap();
    let payload = flow::MAX_PAYLOAD_BYTES - 64 * 1024;
    // ASCII text: one stored byte per character in the self-describing encoding (a
    // `Vec<u8>` is an array of integers there, up to two bytes each).
    let data: String = (0..payload)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let run = engine
        .start("big", rel_big_input(data.clone()))
        .await
        .unwrap();
    assert_eq!(within(run.result()).await.unwrap(), payload as u64 * 8);
    // Runs started after it share its tables' pages.
    for i in 0..5u64 {
        let run = engine
            .start(format!("z{i}"), rel_judge(3 * i + 1))
            .await
            .unwrap();
        assert_eq!(within(run.result()).await.unwrap(), Ok(3 * i + 1));
    }
    let live = journal_bytes(&journal);
    engine.shutdown().await;
    let closed = journal_bytes(&journal);
    eprintln!("payload {payload} B; journal while open {live} B, after shutdown {closed} B");
    // Measured for a 16 MiB input: 3.0x while open (the log's copy, the input record,
    // and the input record's page as it was before the next runs were added to its table,
    // which redb frees only at the next checkpoint), 2.0x after a clean shutdown; while
    // the start event carried a second copy of the input, 6.0x and 4.0x.
    let limit_open = 7 * payload as u64 / 2;
    let limit_closed = 5 * payload as u64 / 2;
    assert!(
        live <= limit_open,
        "while open: {live} bytes for a {payload}-byte input"
    );
    assert!(
        closed <= limit_closed,
        "after shutdown: {closed} bytes for a {payload}-byte input"
    );
    // The input the history shows is the input given, byte for byte.
    let engine = Engine::builder()
        .register::<rel_big_input>()
        .open(&journal)
        .await
        .unwrap();
    let history = engine.history("big").await.unwrap();
    let EventKind::RunStarted { input, .. } = &history[0].kind else {
        panic!("{:?}", history[0].kind)
    };
    assert_eq!(*input, flow::codec::encode(&data, String::new).unwrap());
    engine.shutdown().await;
}

// --- Removing a journal ----------------------------------------------------------------

#[workflow]
async fn rel_remove_me(x: u64) -> u64 {
    x
}

#[cfg(unix)]
#[tokio::test]
async fn removing_a_journal_through_a_link_deletes_its_real_files_and_an_open_one_is_refused() {
    let dir = ScratchDir::new("rel-remove");
    let real = dir.file("real.redb");
    let link = dir.file("link.redb");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let engine = Engine::builder()
        .register::<rel_remove_me>()
        .open(&link)
        .await
        .unwrap();
    let run = engine.start("r", rel_remove_me(7)).await.unwrap();
    assert_eq!(run.result().within().await.unwrap(), 7);

    // Open: refused, both files as they were.
    let before = fingerprint_files(&real);
    let err = Engine::remove_journal(&link).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
    assert!(err.to_string().contains("shut that engine down"), "{err}");
    assert_eq!(fingerprint_files(&real), before);
    engine.shutdown().await;

    // Closed: the real journal and its log go; the link stays and opens a new journal.
    assert!(PathBuf::from(format!("{}-wal", real.display())).exists());
    Engine::remove_journal(&link).unwrap();
    assert!(!real.exists(), "the real journal is deleted");
    assert!(
        !PathBuf::from(format!("{}-wal", real.display())).exists(),
        "the real log is deleted"
    );
    assert!(link.symlink_metadata().is_ok(), "the link itself stays");
    let engine = Engine::builder()
        .register::<rel_remove_me>()
        .open(&link)
        .await
        .unwrap();
    assert!(engine.list().await.unwrap().is_empty(), "a fresh journal");
    engine.shutdown().await;
    // Removing what is not there is not an error.
    Engine::remove_journal(dir.file("never.redb")).unwrap();
}
