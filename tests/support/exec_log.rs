//! The execution log: every task attempt that runs under an engine appends one record,
//! so a test can count how often each call really executed (the journal only shows the
//! attempts that were committed).
//!
//! In the crash test the log is a file shared by the successive child processes (opened
//! `O_APPEND`, one `write` per record, `sync_data` before the task returns: a record is
//! never torn and never lost by a kill). In the power-loss test it is kept in memory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use flow::TaskContext;

/// One executed task attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// Generation (child process number, or engine instance in the power-loss test) the
    /// attempt started in.
    pub gen: u32,
    /// Run ID the workflow passed in the task's arguments.
    pub run: String,
    /// Run ID the engine reported in the task context (must be the same).
    pub ctx_run: String,
    /// The call's index in its run, passed by the workflow: equal to the step number,
    /// because every await of the workload's workflows is one task call.
    pub call: u32,
    pub task: String,
    pub key: String,
    pub attempt: u32,
    /// The call's other arguments, `Debug`-formatted.
    pub args: String,
}

/// A run whose `Engine::start` returned `Ok` (so the start is durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub gen: u32,
    pub run: String,
}

enum Sink {
    File { file: Mutex<File>, gen: u32 },
    Memory,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static MEMORY: Mutex<Vec<ExecRecord>> = Mutex::new(Vec::new());
/// The current epoch of each run-ID prefix (tests running side by side use their own).
static EPOCHS: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open execution log {}: {e}", path.display()))
}

/// Child processes: records go to `path`, tagged with generation `gen`.
pub fn log_to_file(path: &Path, gen: u32) {
    let sink = Sink::File {
        file: Mutex::new(open_append(path)),
        gen,
    };
    assert!(SINK.set(sink).is_ok(), "execution log configured twice");
}

/// In-process tests: records are kept in memory, tagged with the current epoch.
pub fn log_to_memory() {
    let _ = SINK.set(Sink::Memory);
}

/// Starts epoch `epoch` (one per engine instance) for in-memory records of runs whose ID
/// starts with `prefix`.
pub fn set_epoch(prefix: &str, epoch: u32) {
    let mut epochs = EPOCHS.lock().unwrap();
    epochs.retain(|(p, _)| p != prefix);
    epochs.push((prefix.to_string(), epoch));
}

fn epoch_of(run: &str) -> u32 {
    EPOCHS
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| run.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, e)| *e)
        .unwrap_or(0)
}

/// The in-memory records whose run ID starts with `prefix`.
pub fn memory_records(prefix: &str) -> Vec<ExecRecord> {
    MEMORY
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.run.starts_with(prefix))
        .cloned()
        .collect()
}

/// Appends a line to the file log (acks); one `write`, then `sync_data`.
fn append_line(line: &str) {
    match SINK.get() {
        Some(Sink::File { file, .. }) => {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(line.as_bytes())
                .expect("append to execution log");
            file.sync_data().expect("sync execution log");
        }
        _ => panic!("no file execution log configured"),
    }
}

/// Records that `Engine::start` of `run` returned `Ok` in this process.
pub fn ack_started(run: &str) {
    let gen = match SINK.get() {
        Some(Sink::File { gen, .. }) => *gen,
        _ => panic!("acks go to the file log"),
    };
    append_line(&format!("A\t{gen}\t{run}\n"));
}

/// Called by every task body. Outside an engine (the plain reference run) it does
/// nothing and returns `None`. Under an engine it waits a little (so that kills and
/// power cuts find attempts in flight), appends the attempt's record and returns its
/// attempt number.
pub async fn executed(task: &str, run: &str, call: u32, args: String) -> Option<u32> {
    let ctx = TaskContext::current()?;
    // The generation is taken when the attempt starts: an attempt of an engine that lost
    // its storage may still finish after a newer engine took over.
    let gen = match SINK.get() {
        Some(Sink::File { gen, .. }) => *gen,
        Some(Sink::Memory) => epoch_of(run),
        None => panic!("task `{task}` ran under an engine in a process with no execution log"),
    };
    tokio::time::sleep(Duration::from_millis(1 + u64::from(call % 3))).await;
    let record = ExecRecord {
        gen,
        run: run.to_string(),
        ctx_run: ctx.run_id.clone(),
        call,
        task: task.to_string(),
        key: ctx.idempotency_key.clone(),
        attempt: ctx.attempt,
        args,
    };
    match SINK.get() {
        Some(Sink::File { .. }) => {
            // write + fsync block: keep them off the async workers the engine runs on.
            let line = format_record(&record);
            tokio::task::spawn_blocking(move || append_line(&line))
                .await
                .expect("append to execution log");
        }
        _ => MEMORY.lock().unwrap().push(record),
    }
    Some(ctx.attempt)
}

fn format_record(r: &ExecRecord) -> String {
    for field in [&r.run, &r.ctx_run, &r.task, &r.key, &r.args] {
        assert!(
            !field.contains(['\t', '\n']),
            "log field {field:?} has a tab or newline"
        );
    }
    format!(
        "E\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        r.gen, r.run, r.ctx_run, r.call, r.task, r.key, r.attempt, r.args
    )
}

/// Reads a file log from byte `from` on; returns the records and acks found and where
/// the next read starts. Every line must be complete and well formed: records are
/// written with one `write` on an `O_APPEND` file, which a kill cannot tear.
pub fn read_file_log(path: &Path, from: u64) -> (Vec<ExecRecord>, Vec<Ack>, u64) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read execution log {}: {e}", path.display()),
    };
    let text = std::str::from_utf8(&bytes[from as usize..]).expect("execution log is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "execution log ends with a torn line"
    );
    let mut records = Vec::new();
    let mut acks = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || -> ! { panic!("execution log line is malformed: {line:?}") };
        let num = |s: &str| s.parse::<u32>().unwrap_or_else(|_| bad());
        match f.as_slice() {
            ["A", gen, run] => acks.push(Ack {
                gen: num(gen),
                run: run.to_string(),
            }),
            ["E", gen, run, ctx_run, call, task, key, attempt, args] => records.push(ExecRecord {
                gen: num(gen),
                run: run.to_string(),
                ctx_run: ctx_run.to_string(),
                call: num(call),
                task: task.to_string(),
                key: key.to_string(),
                attempt: num(attempt),
                args: args.to_string(),
            }),
            _ => bad(),
        }
    }
    (records, acks, bytes.len() as u64)
}
