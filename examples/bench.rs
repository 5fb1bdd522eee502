//! The performance benchmark of flow: durable steps per second, latency, commits and
//! bytes per step, engine overhead, recovery time, memory, loop state, retention, maps,
//! remote tasks.
//!
//! ```text
//! cargo run --release --example bench             # full run, a few minutes on 2 cores
//! cargo run --release --example bench -- --quick  # smoke run for CI, seconds
//! ```
//! Options: `--dir PATH` (where the journals go; default a new directory in the system
//! temp dir, removed afterwards), `--rows 1,3,5` (only these rows; row 1 always runs, as
//! the others are divided by it).
//!
//! Every number is printed beside a reference measured in the same process and run (the
//! disk's raw `fdatasync` rate, the plain async function, an empty journal...) and the
//! ratio between them, so results from different machines compare. docs/PERFORMANCE.md
//! explains each row and holds a reference run.

mod bench {
    pub mod console;
    pub mod floor;
    pub mod harness;
    pub mod loops;
    pub mod maps;
    pub mod overhead;
    pub mod probe;
    pub mod recovery;
    pub mod remote;
    pub mod report;
    pub mod retention;
    pub mod throughput;
    pub mod workloads;
}

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bench::{
    console, floor, harness, loops, maps, overhead, probe, recovery, remote, report, retention,
    throughput, workloads,
};

/// Errors end the benchmark with a message.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Sizes of one benchmark run (`--quick` or full).
pub struct Config {
    pub quick: bool,
    /// Where the journals go.
    pub dir: PathBuf,
    pub cores: usize,
    /// How long row 1 loops each of its measures.
    pub floor_time: Duration,
    /// How long the sync references taken around rows 2 and 3 loop.
    pub ref_time: Duration,
    /// Row 2: runs, one after another, of `seq_steps` steps.
    pub seq_runs: usize,
    pub seq_steps: u64,
    /// Row 3: runs per level of concurrency.
    pub conc_runs: usize,
    pub concurrency: Vec<usize>,
    /// Row 4: how long (a) and (b) loop; runs and runs in flight for (c).
    pub overhead_time: Duration,
    pub overhead_runs: usize,
    pub overhead_in_flight: usize,
    /// Row 5: runs in the reopened journals; runs waiting for the RSS measure.
    pub recovery_runs: usize,
    pub rss_runs: usize,
    /// Row 6: the short and the long loop.
    pub loop_items: (u64, u64),
    /// Row 7: short runs through an engine that deletes them as they finish.
    pub soak_runs: usize,
    /// Row 10: runs in the console's journal, and events in its long run's history.
    pub console_runs: usize,
    pub console_events: usize,
    /// Row 8: items of the measured map.
    pub map_items: u64,
}

impl Config {
    fn new(quick: bool, dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        fn pick<T>(quick: bool, q: T, full: T) -> T {
            if quick {
                q
            } else {
                full
            }
        }
        Config {
            quick,
            dir,
            cores,
            floor_time: Duration::from_millis(pick(quick, 500, 2000)),
            ref_time: Duration::from_millis(pick(quick, 200, 500)),
            seq_runs: pick(quick, 1, 10),
            seq_steps: 100,
            conc_runs: pick(quick, 1_000, 10_000),
            concurrency: vec![1, 100, 1000],
            overhead_time: Duration::from_millis(pick(quick, 300, 1000)),
            overhead_runs: pick(quick, 3_000, 30_000),
            overhead_in_flight: 1000,
            recovery_runs: pick(quick, 10_000, 100_000),
            rss_runs: pick(quick, 100_000, 1_000_000),
            loop_items: (100, pick(quick, 1_000, 10_000)),
            soak_runs: pick(quick, 10_000, 1_000_000),
            console_runs: pick(quick, 20_000, 1_000_000),
            console_events: pick(quick, 10_000, 100_000),
            map_items: 10_000,
        }
    }
}

struct Args {
    quick: bool,
    dir: Option<PathBuf>,
    rows: Option<Vec<u32>>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        quick: false,
        dir: None,
        rows: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => parsed.quick = true,
            "--dir" => parsed.dir = Some(it.next().ok_or("--dir needs a path")?.into()),
            "--rows" => {
                let list = it.next().ok_or("--rows needs a list like 1,3")?;
                let rows = list
                    .split(',')
                    .map(|r| {
                        r.trim()
                            .parse()
                            .map_err(|_| format!("--rows: `{r}` is not a row"))
                    })
                    .collect::<Result<_, _>>()?;
                parsed.rows = Some(rows);
            }
            "-h" | "--help" => {
                return Err("usage: bench [--quick] [--dir PATH] [--rows 1,2,...]".into())
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(parsed)
}

/// Removes the benchmark's own temp directory when dropped.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--child") {
        // A measuring child of row 5: `--child WHAT PATH N`.
        let (what, path, n) = match &argv[1..] {
            [what, path, n] => (what, PathBuf::from(path), n.parse().unwrap_or(0)),
            _ => {
                eprintln!("usage: bench --child WHAT PATH N");
                std::process::exit(2);
            }
        };
        if let Err(e) = recovery::child_main(what, &path, n).await {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let (dir, cleanup) = match args.dir {
        Some(dir) => (dir, TempDir(None)),
        None => {
            let dir = std::env::temp_dir().join(format!("flow-bench-{}", std::process::id()));
            (dir.clone(), TempDir(Some(dir)))
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let cfg = Config::new(args.quick, dir);
    let result = run(&cfg, args.rows.as_deref()).await;
    drop(cleanup); // `exit` below would skip it
    if let Err(e) = result {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// Runs the selected rows and prints the machine, the table and its notes.
async fn run(cfg: &Config, rows: Option<&[u32]>) -> Res<()> {
    let machine = probe::Machine::probe(&cfg.dir);
    let load_before = probe::loadavg();
    let wanted = |row: u32| rows.is_none_or(|r| r.contains(&row));
    let mut report = report::Report::default();
    let started = Instant::now();
    let mode = if cfg.quick { "quick" } else { "full" };
    eprintln!("flow bench ({mode}) in {}", cfg.dir.display());

    eprintln!("row 1: disk floor");
    let floor = floor::row(cfg, &mut report).await?;
    if wanted(2) {
        eprintln!("row 2: one sequential run");
        throughput::sequential_row(cfg, &floor, &mut report).await?;
    }
    if wanted(3) {
        eprintln!("row 3: concurrent runs");
        throughput::concurrent_row(cfg, &mut report).await?;
    }
    if wanted(4) {
        eprintln!("row 4: overhead per step");
        overhead::row(cfg, &mut report).await?;
    }
    if wanted(5) {
        eprintln!("row 5: recovery and memory");
        recovery::row(cfg, &mut report).await?;
    }
    if wanted(6) {
        eprintln!("row 6: loop state");
        loops::row(cfg, &mut report).await?;
    }
    if wanted(7) {
        eprintln!("row 7: retention soak");
        retention::row(cfg, &mut report).await?;
    }
    if wanted(8) {
        eprintln!("row 8: maps");
        maps::row(cfg, &mut report).await?;
    }
    if wanted(9) {
        eprintln!("row 9: remote tasks");
        remote::row(cfg, &mut report).await?;
    }
    if wanted(10) {
        eprintln!("row 10: the web console at scale");
        console::row(cfg, &mut report).await?;
    }
    floor::recheck(cfg, &floor, &mut report)?;
    if !probe::io_counters_readable() {
        report.note("/proc/self/io is not readable here: every \"bytes written\" above is 0.");
    }
    let load_after = probe::loadavg();

    println!(
        "flow benchmark ({mode} mode), took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "machine:    {} cores ({}), {} RAM",
        machine.cores, machine.cpu, machine.memory
    );
    println!(
        "journals:   {} on {}",
        cfg.dir.display(),
        machine.filesystem
    );
    println!("kernel:     Linux {}", machine.kernel);
    println!("toolchain:  {}, {} build", machine.rustc, machine.profile);
    println!("date:       {}", machine.date);
    println!("load avg:   {load_before} before, {load_after} after (1/5/15 min; other work skews every row)");
    println!();
    print!("{}", report.table());
    if !report.notes.is_empty() {
        println!();
        for note in &report.notes {
            println!("- {note}");
        }
    }
    Ok(())
}
