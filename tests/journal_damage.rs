//! Damaged journals: every open returns exactly what was acknowledged, or is refused with
//! an error naming the damage, leaving the log as it was.
//!
//! The files are those a killed engine leaves (runs whose latest signals are in the
//! write-ahead log only), damaged systematically: every byte of the log's header,
//! records in the middle, cuts at every record boundary, a deleted, emptied, zeroed or
//! random log, a zeroed journal file, byte flips across the journal file's pages, a
//! journal opened through a symbolic link, a disk that fills up.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;

use flow::{workflow, Engine, FlowError, HistoryEvent};
use redb::backends::InMemoryBackend;
use support::flaky::Flaky;

/// Collects `count` signals called "item", in the order they came.
#[workflow]
async fn gather(count: u32) -> Vec<u32> {
    let mut items = Vec::new();
    for _ in 0..count {
        let item = flow::signal::<u32>("item").await;
        items.push(item);
    }
    items
}

type Contents = Vec<(String, String, Vec<HistoryEvent>)>;

async fn contents(engine: &Engine) -> Result<Contents, FlowError> {
    let mut contents = Vec::new();
    for run in engine.list().await? {
        let history = engine.history(&run.run_id).await?;
        contents.push((run.run_id.clone(), format!("{run:?}"), history));
    }
    Ok(contents)
}

/// The journal and log a killed engine leaves: 6 runs, each sent 3 items, the last ones
/// in the log only.
fn killed_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let path = dir.join("source.redb");
    let rt = runtime();
    rt.block_on(async {
        let engine = Engine::builder()
            .register::<gather>()
            .open(&path)
            .await
            .unwrap();
        for run in 0..6 {
            engine.start(&format!("r{run}"), gather(5)).await.unwrap();
        }
        for item in 0..3u32 {
            for run in 0..6 {
                engine
                    .signal(&format!("r{run}"), "item", &item)
                    .await
                    .unwrap();
            }
        }
        // Every item taken (each run waits for its fourth): nothing left for a reopened
        // engine to do, so what it reads is what was acknowledged.
        while engine.list().await.unwrap().iter().any(|run| run.steps < 4) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let files = (
            std::fs::read(&path).unwrap(),
            std::fs::read(dir.join("source.redb-wal")).unwrap(),
        );
        engine.shutdown().await;
        files
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What opening a journal gave.
enum Outcome {
    Opened(Contents),
    /// The open was refused; both files were left as they were.
    Refused(FlowError),
    /// The journal opened, and reading it failed.
    ReadFailed(FlowError),
}

/// Writes the files (`None`: no log), opens the journal as a user would (every default,
/// the integrity check among them) and reads everything; checks that a refusal left the
/// log as it was.
fn open_files(dir: &Path, journal: &[u8], log: Option<&[u8]>) -> Outcome {
    RUNTIME.with(|rt| open_files_on(rt, dir, journal, log))
}

thread_local! {
    /// One runtime per test thread: building one per open would dominate the suite.
    static RUNTIME: tokio::runtime::Runtime = runtime();
}

fn open_files_on(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    journal: &[u8],
    log: Option<&[u8]>,
) -> Outcome {
    let path = dir.join("damaged.redb");
    let log_path = dir.join("damaged.redb-wal");
    std::fs::write(&path, journal).unwrap();
    let _ = std::fs::remove_file(&log_path);
    if let Some(log) = log {
        std::fs::write(&log_path, log).unwrap();
    }
    let outcome = rt.block_on(async {
        let builder = Engine::builder().register::<gather>();
        match builder.open(&path).await {
            Ok(engine) => {
                let read = contents(&engine).await;
                engine.shutdown().await;
                match read {
                    Ok(contents) => Outcome::Opened(contents),
                    Err(e) => Outcome::ReadFailed(e),
                }
            }
            Err(e) => {
                assert_eq!(
                    std::fs::read(&log_path).ok().as_deref(),
                    log,
                    "a refused log was changed ({e})"
                );
                assert!(
                    std::fs::read(&path).unwrap() == journal,
                    "a refused journal file was changed ({e})"
                );
                Outcome::Refused(e)
            }
        }
    });
    outcome
}

fn reference(dir: &Path, journal: &[u8], log: &[u8]) -> Contents {
    match open_files(dir, journal, Some(log)) {
        Outcome::Opened(contents) => {
            assert_eq!(contents.len(), 6);
            contents
        }
        Outcome::Refused(e) | Outcome::ReadFailed(e) => {
            panic!("the undamaged journal was refused: {e}")
        }
    }
}

/// How a damaged journal fared.
#[derive(Debug, Default)]
struct Tally {
    exact: usize,
    refused: usize,
    read_failed: usize,
}

impl Tally {
    /// Counts `outcome`, asserting exactly the acknowledged contents, or a refusal (or a
    /// failed read) naming the damage and the file.
    fn count(&mut self, outcome: Outcome, expected: &Contents, what: &str) {
        let error = match outcome {
            Outcome::Opened(contents) => {
                if &contents != expected {
                    let differs =
                        contents
                            .iter()
                            .zip(expected)
                            .find(|(a, b)| a != b)
                            .map(|(a, b)| {
                                let events = a.2.iter().zip(&b.2).find(|(x, y)| x != y);
                                (&a.1, &b.1, a.2.len(), b.2.len(), events)
                            });
                    panic!(
                        "{what}: opened with other contents ({} runs, {} expected); first \
                         difference: {differs:#?}",
                        contents.len(),
                        expected.len()
                    );
                }
                self.exact += 1;
                return;
            }
            Outcome::Refused(e) => {
                self.refused += 1;
                e
            }
            Outcome::ReadFailed(e) => {
                self.read_failed += 1;
                assert!(matches!(e, FlowError::Corrupt { .. }), "{what}: {e}");
                e
            }
        };
        assert!(
            matches!(
                error,
                FlowError::LogDamaged { .. }
                    | FlowError::LogMismatch { .. }
                    | FlowError::Corrupt { .. }
                    | FlowError::NotARedbFile { .. }
                    | FlowError::ForeignDatabase { .. }
                    | FlowError::UnsupportedFormat { .. }
            ),
            "{what}: {error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("damaged.redb`"),
            "{what}: the file is not named: {text}"
        );
    }
}

fn assert_log_refused(outcome: Outcome, what: &str) {
    match outcome {
        Outcome::Opened(_) => panic!("{what}: opened"),
        Outcome::Refused(e @ (FlowError::LogDamaged { .. } | FlowError::LogMismatch { .. })) => {
            let text = e.to_string();
            assert!(text.contains("damaged.redb`"), "{what}: {text}");
            assert!(text.contains("damaged.redb-wal`"), "{what}: {text}");
        }
        Outcome::Refused(e) => panic!("{what}: refused for another reason: {e}"),
        Outcome::ReadFailed(e) => panic!("{what}: opened, then failed: {e}"),
    }
}

/// The byte offsets where the log's records start (and where the last one ends).
fn record_bounds(log: &[u8]) -> Vec<usize> {
    let mut bounds = vec![4096];
    loop {
        let at = *bounds.last().unwrap();
        if at + 32 > log.len() || log[at..at + 4] != *b"FWRc" {
            break;
        }
        let len = u64::from_le_bytes(log[at + 24..at + 32].try_into().unwrap()) as usize;
        bounds.push(at + 32 + len);
    }
    bounds
}

#[test]
fn damaged_logs_are_refused_and_left_as_they_were() {
    let dir = support::ScratchDir::new("damage-log");
    let (journal, log) = killed_files(&dir.path);
    let expected = reference(&dir.path, &journal, &log);
    let bounds = record_bounds(&log);
    let records = bounds.len() - 1;
    assert!(records >= 3, "the log holds {records} records");

    // Every byte of both header slots: the slot in force refused, the other harmless.
    let mut tally = Tally::default();
    for at in (0..48).chain(2048..2048 + 48) {
        let mut damaged = log.clone();
        damaged[at] ^= 0xFF;
        let outcome = open_files(&dir.path, &journal, Some(&damaged));
        tally.count(outcome, &expected, &format!("header byte {at}"));
    }
    assert_eq!((tally.refused, tally.exact), (48, 48), "{tally:?}");

    // A byte of each record but the last: whole records follow it.
    for (i, at) in bounds[..records - 1].iter().enumerate() {
        let mut damaged = log.clone();
        damaged[at + 40] ^= 0x01;
        assert_log_refused(
            open_files(&dir.path, &journal, Some(&damaged)),
            &format!("record {i} of {records} damaged"),
        );
    }

    // Cut at every record boundary, and inside the last record.
    for (i, &at) in bounds.iter().enumerate() {
        assert_log_refused(
            open_files(&dir.path, &journal, Some(&log[..at])),
            &format!("cut after record {i}"),
        );
    }
    let inside_last = bounds[records] - 5;
    assert_log_refused(
        open_files(&dir.path, &journal, Some(&log[..inside_last])),
        "cut inside the last record",
    );

    // The last record torn by a crash (its end never written): the records before it.
    let mut torn = log.clone();
    torn[inside_last..bounds[records]].fill(0);
    match open_files(&dir.path, &journal, Some(&torn)) {
        Outcome::Opened(contents) => {
            assert_eq!(contents.len(), 6);
            assert_ne!(contents, expected, "the torn record was replayed");
        }
        Outcome::Refused(e) | Outcome::ReadFailed(e) => {
            panic!("a torn last record was refused: {e}")
        }
    }

    // Deleted, emptied, zeroed, random.
    assert_log_refused(open_files(&dir.path, &journal, None), "deleted log");
    assert_log_refused(open_files(&dir.path, &journal, Some(&[])), "emptied log");
    assert_log_refused(
        open_files(&dir.path, &journal, Some(&vec![0; log.len()])),
        "zeroed log",
    );
    let mut rng = support::rng::XorShift::new(11);
    let random: Vec<u8> = (0..log.len()).map(|_| rng.next_u64() as u8).collect();
    assert_log_refused(open_files(&dir.path, &journal, Some(&random)), "random log");
    println!(
        "{records} records: 96 header bytes ({tally:?}), {} damaged records, {} cuts, a torn \
         last record, 4 lost logs",
        records - 1,
        records + 2
    );
}

#[test]
fn a_zeroed_journal_file_is_refused_untouched() {
    let dir = support::ScratchDir::new("damage-zeroed");
    let (journal, log) = killed_files(&dir.path);
    let zeros = vec![0u8; journal.len()];
    for log in [Some(&log[..]), None] {
        let path = dir.path.join("damaged.redb");
        match open_files(&dir.path, &zeros, log) {
            Outcome::Refused(FlowError::NotARedbFile { .. }) => {}
            Outcome::Refused(e) | Outcome::ReadFailed(e) => {
                panic!("refused for another reason: {e}")
            }
            Outcome::Opened(_) => panic!("a zeroed journal was opened"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            zeros,
            "the file was rewritten"
        );
    }
}

/// Single-bit flips on every 4 KiB page of `journal` (beside `log`, if any): `spots` a
/// page, all but one of them in its first KiB, where a page's entries are.
fn flip_every_page(
    dir: &Path,
    journal: &[u8],
    log: Option<&[u8]>,
    expected: &Contents,
    spots: usize,
) -> Tally {
    let mut rng = support::rng::XorShift::new(journal.len() as u64);
    let mut tally = Tally::default();
    for page in 0..journal.len() / 4096 {
        for spot in 0..spots {
            let within = if spot + 1 < spots { 1024 } else { 4096 };
            let at = page * 4096 + (rng.next_u64() % within) as usize;
            let mut damaged = journal.to_vec();
            damaged[at] ^= 1 << (rng.next_u64() % 8);
            let outcome = open_files(dir, &damaged, log);
            tally.count(outcome, expected, &format!("byte {at} of the journal file"));
        }
    }
    tally
}

#[test]
fn byte_flips_in_the_journal_file_are_found_or_harmless() {
    let dir = support::ScratchDir::new("damage-pages");
    let (killed, log) = killed_files(&dir.path);
    let expected = reference(&dir.path, &killed, &log);
    // The reference's shutdown left the journal file whole on its own.
    let clean = std::fs::read(dir.path.join("damaged.redb")).unwrap();
    // Stored values are checked when read, keys only by redb's integrity check (a flipped
    // key bit can renumber an event or rename a run), which runs on every open by default.
    let after_shutdown = flip_every_page(&dir.path, &clean, None, &expected, 3);
    // After a crash, the check runs anyway.
    let after_kill = flip_every_page(&dir.path, &killed, Some(&log), &expected, 2);
    println!(
        "journal file flips: shut down, checked on open ({} pages) {after_shutdown:?}; \
         killed, with its log ({} pages) {after_kill:?}",
        clean.len() / 4096,
        killed.len() / 4096
    );
}

#[cfg(unix)]
#[test]
fn a_journal_opened_through_a_symlink_finds_its_log() {
    let dir = support::ScratchDir::new("damage-symlink");
    let (journal, log) = killed_files(&dir.path);
    let expected = reference(&dir.path, &journal, &log);
    let real = dir.path.join("real.redb");
    std::fs::write(&real, &journal).unwrap();
    std::fs::write(dir.path.join("real.redb-wal"), &log).unwrap();
    let link = dir.path.join("link.redb");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let rt = runtime();
    for path in [&link, &real] {
        let got = rt.block_on(async {
            let engine = Engine::builder()
                .register::<gather>()
                .open(path)
                .await
                .unwrap();
            let got = contents(&engine).await.unwrap();
            engine.shutdown().await;
            got
        });
        assert_eq!(got, expected, "through {}", path.display());
    }
    assert!(!dir.path.join("link.redb-wal").exists());
}

#[test]
fn a_full_disk_is_named_in_every_later_error() {
    let rt = runtime();
    rt.block_on(async {
        let log = Flaky::filling();
        let engine = Engine::builder()
            .register::<gather>()
            .backend(InMemoryBackend::new())
            .log_backend(log.clone())
            .open_in_memory()
            .await
            .unwrap();
        engine.start("g", gather(2)).await.unwrap();
        log.failing.store(true, Ordering::SeqCst);
        let first = engine.signal("g", "item", &1u32).await.unwrap_err();
        let later = engine.start("h", gather(1)).await.unwrap_err();
        let read = engine.status("g").await.unwrap_err();
        for error in [first, later, read] {
            let text = error.to_string();
            assert!(text.contains("No space left on device"), "{text}");
        }
        engine.shutdown().await;
    });
}

#[test]
fn a_journal_of_the_format_before_checksums_is_refused_untouched() {
    let dir = support::ScratchDir::new("damage-format");
    let path = dir.path.join("old.redb");
    let rt = runtime();
    rt.block_on(async {
        let engine = Engine::builder()
            .register::<gather>()
            .open(&path)
            .await
            .unwrap();
        engine.start("g", gather(1)).await.unwrap();
        engine.shutdown().await;
    });
    // Format 1: the same tables, values without their checksums.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("flow_meta");
            let mut meta = txn.open_table(meta).unwrap();
            meta.insert("format", 1u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = rt
        .block_on(Engine::builder().register::<gather>().open(&path))
        .unwrap_err();
    match &error {
        FlowError::UnsupportedFormat {
            found: 1,
            expected: 4,
            ..
        } => {}
        other => panic!("{other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("format 1") && text.contains("format 4"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// Opens the files with `accept_log_loss`, then again as usual. Returns what the first
/// open read, and the copy of the refused log it kept aside (if the log had bytes). No
/// workflow is registered, so the runs wait and what is read is what was kept.
fn open_accepting_loss(
    dir: &Path,
    journal: &[u8],
    log: Option<&[u8]>,
) -> (Contents, Option<Vec<u8>>) {
    let path = dir.join("damaged.redb");
    let log_path = dir.join("damaged.redb-wal");
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap().path();
        if entry.to_string_lossy().contains(".lost-") {
            std::fs::remove_file(entry).unwrap();
        }
    }
    std::fs::write(&path, journal).unwrap();
    let _ = std::fs::remove_file(&log_path);
    if let Some(log) = log {
        std::fs::write(&log_path, log).unwrap();
    }
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let engine = Engine::builder()
                .accept_log_loss(true)
                .open(&path)
                .await
                .expect("accepting the loss opens the journal");
            let accepted = contents(&engine).await.unwrap();
            engine.shutdown().await;
            let lost: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains("damaged.redb-wal.lost-"))
                .collect();
            assert!(lost.len() <= 1, "{lost:?}");
            let lost = lost.first().map(|p| std::fs::read(p).unwrap());
            // The journal and its new log go together: an ordinary open reads the same.
            let engine = Engine::builder()
                .open(&path)
                .await
                .expect("the accepted journal opens as usual afterwards");
            assert_eq!(contents(&engine).await.unwrap(), accepted, "reopened");
            engine.shutdown().await;
            (accepted, lost)
        })
    })
}

/// Each run of `got` is one of `expected`'s, its history a prefix of the run's there.
fn assert_earlier_state(got: &Contents, expected: &Contents, what: &str) {
    for (run, _, history) in got {
        let (_, _, full) = expected
            .iter()
            .find(|(id, _, _)| id == run)
            .unwrap_or_else(|| panic!("{what}: run {run} was never acknowledged"));
        assert!(
            history.len() <= full.len() && full[..history.len()] == history[..],
            "{what}: the history of {run} is not an earlier state of the acknowledged one"
        );
    }
}

fn event_count(contents: &Contents) -> usize {
    contents.iter().map(|(_, _, h)| h.len()).sum()
}

#[test]
fn a_lost_log_is_accepted_only_when_asked_keeping_its_whole_records_and_a_copy() {
    let dir = support::ScratchDir::new("damage-accepted");
    let (journal, log) = killed_files(&dir.path);
    let expected = reference(&dir.path, &journal, &log);
    let bounds = record_bounds(&log);
    let records = bounds.len() - 1;

    // An intact log: accepting a loss that did not happen changes nothing.
    let (intact, lost) = open_accepting_loss(&dir.path, &journal, Some(&log));
    let histories = |c: &Contents| c.iter().map(|(_, _, h)| h.clone()).collect::<Vec<_>>();
    assert_eq!(histories(&intact), histories(&expected));
    assert!(lost.is_none(), "an intact log was set aside");

    // The journal file alone: what a lost log leaves.
    let (alone, _) = open_accepting_loss(&dir.path, &journal, None);
    assert_earlier_state(&alone, &expected, "deleted log");
    assert!(
        event_count(&alone) < event_count(&expected),
        "the log held events"
    );

    // A damaged record keeps the records before it, exactly as a cut there does; a copy
    // of the damaged log stays beside the journal.
    let mut previous = event_count(&alone);
    for (i, at) in bounds[..records].iter().enumerate() {
        let mut damaged = log.clone();
        damaged[at + 40] ^= 0x01;
        let what = format!("record {i} of {records} damaged");
        if i + 1 < records {
            // (Damage to the last record is a torn append, which opens anyway.)
            assert_log_refused(open_files(&dir.path, &journal, Some(&damaged)), &what);
        }
        let (kept, lost) = open_accepting_loss(&dir.path, &journal, Some(&damaged));
        assert_earlier_state(&kept, &expected, &what);
        let refused = i + 1 < records;
        assert_eq!(
            lost.as_deref(),
            refused.then_some(&damaged[..]),
            "{what}: the copy"
        );
        let (cut, _) = open_accepting_loss(&dir.path, &journal, Some(&log[..*at]));
        assert_eq!(kept, cut, "{what}: not the records before it");
        assert!(event_count(&kept) >= previous, "{what}: fewer records kept");
        previous = event_count(&kept);
    }
    assert!(
        previous > event_count(&alone),
        "no record before the damage was kept"
    );

    // Emptied, zeroed, random, another journal's: the journal file's state.
    let mut rng = support::rng::XorShift::new(12);
    let random: Vec<u8> = (0..log.len()).map(|_| rng.next_u64() as u8).collect();
    let other = support::ScratchDir::new("damage-accepted-other");
    let (_, foreign) = killed_files(&other.path);
    for (what, bad) in [
        ("emptied", Vec::new()),
        ("zeroed", vec![0; log.len()]),
        ("random", random),
        ("another journal's", foreign),
    ] {
        assert_log_refused(open_files(&dir.path, &journal, Some(&bad)), what);
        let (kept, lost) = open_accepting_loss(&dir.path, &journal, Some(&bad));
        assert_eq!(kept, alone, "{what} log");
        assert_eq!(
            lost.as_deref(),
            (!bad.is_empty()).then_some(&bad[..]),
            "{what}"
        );
    }
}
