//! What the benchmark reads about itself and the machine: `/proc` counters (CPU time,
//! RSS, bytes written, context switches), machine facts, percentiles, and the commit
//! counter built on `EngineBuilder::on_commit`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, fixed at 100 by Linux's ABI).
const USER_HZ: f64 = 100.0;

/// System (kernel) CPU seconds of this process, all threads, dead ones included. In
/// whole clock ticks (10 ms), so only meaningful over long phases.
fn system_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3; stime is
    // field 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let stime = rest
        .split_whitespace()
        .nth(12)
        .and_then(|v| v.parse::<f64>().ok());
    stime.unwrap_or(0.0) / USER_HZ
}

/// On-CPU nanoseconds of each live thread of this process, with its name (from
/// `/proc/self/task/*/schedstat`, exact to the nanosecond, unlike `stat`'s 10 ms ticks).
fn thread_times() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(ns) = ns {
            out.insert(tid, (comm.trim_end().to_string(), ns));
        }
    }
    out
}

/// `/proc/self/task/TID` of each live thread named `name`.
fn threads_named(name: &str) -> impl Iterator<Item = PathBuf> + '_ {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| t.path())
        .filter(move |t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes them.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resident set size of this process, bytes.
pub fn rss_bytes() -> u64 {
    status_kb("/proc/self/status", "VmRSS:") * 1024
}

fn status_kb(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes this process handed to `write`/`pwrite` so far (`wchar` of `/proc/self/io`).
///
/// redb's file backend writes with `pwrite` and never maps the file, so over a phase in
/// which the benchmark prints nothing this is exactly what the journal wrote.
pub fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether `/proc/self/io` can be read here (some sandboxes hide it; byte counts are then 0).
pub fn io_counters_readable() -> bool {
    std::fs::read_to_string("/proc/self/io").is_ok_and(|t| t.contains("wchar:"))
}

/// Involuntary context switches (preemptions) of this process's threads named `name`.
pub fn preemptions(name: &str) -> u64 {
    threads_named(name)
        .map(|task| {
            let text = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Size of a file, 0 if it is missing.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The `p`-quantile (0..=1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Counts durable transitions and durable commits through `on_commit`.
///
/// The hook runs once per committed *transition* (a start, a step result, a signal...),
/// all the transitions of one batch back to back right after the batch became durable
/// (its write-ahead log append synced, or, for a journal without a log, its redb commit
/// returned). So it counts transitions exactly, and durable commits by the gaps between
/// calls: calls within one batch are nanoseconds apart, while two batches are separated
/// by at least one `fdatasync`. A gap can also be
/// a preemption of the commit thread inside one batch's loop, so the commit count is an
/// upper bound, off by at most the thread's preemptions (reported beside it).
pub struct CommitCounter {
    base: Instant,
    transitions: AtomicU64,
    batches: AtomicU64,
    last_ns: AtomicU64,
}

/// A gap longer than this between two hook calls starts a new batch. A sync takes far
/// longer than this on any disk (see row 1).
const BATCH_GAP: Duration = Duration::from_micros(20);

impl CommitCounter {
    pub fn new() -> Arc<Self> {
        Arc::new(CommitCounter {
            base: Instant::now(),
            transitions: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        })
    }

    /// The hook to hand to `EngineBuilder::on_commit`.
    pub fn hook(self: &Arc<Self>) -> impl Fn(u64) + Send + Sync + 'static {
        let me = self.clone();
        move |_total| {
            let now = me.base.elapsed().as_nanos() as u64 + 1;
            let last = me.last_ns.swap(now, Ordering::Relaxed);
            if last == 0 || now - last > BATCH_GAP.as_nanos() as u64 {
                me.batches.fetch_add(1, Ordering::Relaxed);
            }
            me.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Transitions committed so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Durable commits (syncs) so far (see the type's docs).
    pub fn commits(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// The name of the engine's commit thread (see flow-runtime's `engine/commit.rs`).
const COMMIT_THREAD: &str = "flow-commit";

/// Counters sampled before a measured phase, to report what the phase cost.
pub struct Phase {
    started: Instant,
    threads: HashMap<u32, (String, u64)>,
    system: f64,
    written: u64,
    preempted: u64,
}

/// What a measured phase cost.
pub struct PhaseCost {
    pub wall: Duration,
    /// CPU time of the process's threads during the phase (threads that ended during the
    /// phase are missed; the engine's threads all live through it).
    pub cpu_seconds: f64,
    /// System (kernel) CPU time of the process, in whole 10 ms ticks.
    pub system_seconds: f64,
    /// CPU time of the engine's commit thread.
    pub commit_cpu_seconds: f64,
    pub bytes_written: u64,
    /// Preemptions of the commit thread during the phase.
    pub commit_thread_preemptions: u64,
}

impl Phase {
    pub fn start() -> Self {
        Phase {
            threads: thread_times(),
            system: system_seconds(),
            written: bytes_written(),
            preempted: preemptions(COMMIT_THREAD),
            started: Instant::now(),
        }
    }

    /// Call before the engine shuts down (its commit thread must still exist).
    pub fn finish(self) -> PhaseCost {
        let wall = self.started.elapsed();
        let (mut total, mut commit) = (0u64, 0u64);
        for (tid, (comm, ns)) in thread_times() {
            let before = self.threads.get(&tid).map_or(0, |(_, ns)| *ns);
            let spent = ns.saturating_sub(before);
            total += spent;
            if comm == COMMIT_THREAD {
                commit += spent;
            }
        }
        PhaseCost {
            wall,
            cpu_seconds: total as f64 / 1e9,
            system_seconds: system_seconds() - self.system,
            commit_cpu_seconds: commit as f64 / 1e9,
            bytes_written: bytes_written().saturating_sub(self.written),
            commit_thread_preemptions: preemptions(COMMIT_THREAD).saturating_sub(self.preempted),
        }
    }
}

/// Facts about the machine, printed beside the table.
pub struct Machine {
    pub cores: usize,
    pub memory: String,
    pub cpu: String,
    pub kernel: String,
    pub filesystem: String,
    pub rustc: String,
    pub date: String,
    pub profile: &'static str,
}

impl Machine {
    pub fn probe(dir: &Path) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let rustc = std::process::Command::new("rustc")
            .arg("-V")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown (no rustc on PATH)".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory: format!("{:.1} GiB", mem_kb as f64 / (1024.0 * 1024.0)),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            filesystem: filesystem_of(dir),
            rustc,
            date: utc_now(),
            profile: if cfg!(debug_assertions) {
                "DEBUG (numbers are meaningless: use --release)"
            } else {
                "release"
            },
        }
    }
}

/// "ext4 on /dev/vda mounted at / (rw,relatime)" for the mount holding `dir`, from
/// `/proc/mounts` (the longest mount point that is a prefix of the canonical path).
fn filesystem_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(PathBuf, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let point = PathBuf::from(unescape_mount(f[1]));
        if dir.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|(p, _)| point.as_os_str().len() > p.as_os_str().len())
        {
            let text = format!(
                "{} on {} mounted at {} ({})",
                f[2],
                f[0],
                point.display(),
                f[3]
            );
            best = Some((point, text));
        }
    }
    best.map(|(_, t)| t).unwrap_or_else(|| "unknown".into())
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current UTC time as "YYYY-MM-DD HH:MM UTC".
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}
