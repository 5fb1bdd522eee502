//! `flow`: the command line of flow's durable workflows. It lists and inspects runs,
//! follows their histories, starts, signals, cancels and redrives them, completes
//! callback tokens and exports recordings, either through a running flow-server
//! (`--url`) or straight from a journal file no engine has open (`--journal`, reading
//! only). `flow --help` lists the commands; each has its own `--help` with an example.

mod backend;
mod error;
mod output;
mod time;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::Value;

use backend::{Backend, Http, Journal, RunsQuery};
use error::{CliError, EXIT_OK};

const AFTER_HELP: &str = "\
Examples:
  flow --url http://127.0.0.1:8080 runs --status waiting
  flow --url http://127.0.0.1:8080 signal approval-7 approval --payload '{\"approved\": true}'
  FLOW_JOURNAL=orders.redb flow show order-42

Exit codes:
  0  done
  1  refused or failed: the server's (or engine's) message is on stderr; also when the
     server or journal cannot be reached, or an engine holds the journal
  2  usage error: a wrong option or argument, an --input or --payload that is not JSON,
     a write command with --journal, no journal at the --journal path
  3  not found: no such run (or workflow)
  130  interrupted (Ctrl-C)

Backends:
  --url URL       a running flow-server (FLOW_URL; with --token or FLOW_TOKEN)
  --journal PATH  a journal file, read directly while no engine has it open
                  (FLOW_JOURNAL); read commands only: runs, show, history, locals, export

Values are JSON; stored values are shown as JSON without the workflows' Rust types.
Colour only on a terminal (and never with NO_COLOR set).";

/// Durable workflow runs from the command line: list, show, follow, start, signal,
/// cancel, redrive, complete callbacks and export recordings.
#[derive(Parser, Debug)]
#[command(name = "flow", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

/// Where the commands go.
#[derive(Args, Debug)]
struct Target {
    /// The flow-server to talk to, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "FLOW_URL", global = true)]
    url: Option<String>,
    /// The server's API token (sent as `Authorization: Bearer TOKEN`).
    #[arg(long, env = "FLOW_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// A journal file to read directly (no engine may have it open); read commands only.
    #[arg(long, env = "FLOW_JOURNAL", global = true)]
    journal: Option<PathBuf>,
    /// How long one request to the server may take, in seconds.
    #[arg(long, default_value_t = 30, global = true, value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List runs, a page at a time, in run ID order.
    #[command(after_help = "\
Examples:
  flow --url http://127.0.0.1:8080 runs --status waiting --workflow approve_order
  flow --journal orders.redb runs --since 2h --json
  flow runs --limit 50 --page-token order-0049    # the page after order-0049

--since and --until take a time as milliseconds since the Unix epoch, a UTC date
(2026-12-01 or 2026-12-01T10:30:00Z), or an age (90s, 15m, 2h, 7d: that long ago).
A full page ends with the command to get the next one, on stderr.")]
    Runs(RunsArgs),
    /// Show one run: status, workflow, version, input, output, and the step it waits on
    /// with its attempt and last error.
    #[command(after_help = "\
Examples:
  flow --url http://127.0.0.1:8080 show approval-7
  flow --journal orders.redb show order-42 --json")]
    Show {
        /// The run's ID.
        run: String,
        /// Print the run as JSON (as GET /v1/runs/{id} answers).
        #[arg(long)]
        json: bool,
    },
    /// Show a run's history, oldest event first; --follow waits for new events.
    #[command(after_help = "\
Examples:
  flow --journal orders.redb history order-42
  flow --url http://127.0.0.1:8080 history approval-7 --follow
  flow history order-42 --json | jq '.[] | select(.type == \"AttemptFailed\")'

The table cuts long details at 120 characters; --json shows every field. With --json the
events are a JSON array; with --json --follow, one JSON object a line.
--follow polls the server until the run completes, fails, is cancelled or faults.")]
    History {
        /// The run's ID.
        run: String,
        /// Print the events as JSON.
        #[arg(long)]
        json: bool,
        /// Keep polling for new events until the run ends (--url only).
        #[arg(long)]
        follow: bool,
        /// How often --follow polls, in milliseconds.
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        interval: u64,
    },
    /// Show a run's saved locals as they were when each step was scheduled (time
    /// travel), beside what the step asked for and what it returned.
    #[command(after_help = "\
Examples:
  flow --journal orders.redb locals order-42
  flow --url http://127.0.0.1:8080 locals approval-7 --step 1
  flow locals order-42 --json | jq '.[] | {step, locals}'

Each local is shown by its name in the workflow's source (a second local named `x` as
`x#2`), its type when the source spells it, and its slot, with its value as JSON. Names
come from the workflow's code: over --url, the server's; with --journal, which reads the
file without any code, locals are shown by slot alone. A step scheduled by a flow
version that did not keep step states shows no locals.")]
    Locals {
        /// The run's ID.
        run: String,
        /// Only this step (numbered from 0, as the history's StepScheduled events number
        /// them).
        #[arg(long, value_name = "K")]
        step: Option<u64>,
        /// Print the steps as JSON: an array (as GET /v1/runs/{id}/locals shows each).
        #[arg(long)]
        json: bool,
    },
    /// Start a run of a registered workflow (idempotent for the same run ID and input).
    #[command(after_help = "\
Examples:
  flow --url http://127.0.0.1:8080 start approve_order approval-7 \\
      --input '{\"id\": \"order-7\", \"cents\": 12000}'
  flow start place_order order-9 --input @order-9.json

The input is JSON of the workflow's input type: an object for a struct, an array for
several arguments; @FILE reads it from a file, - from stdin.")]
    Start {
        /// The workflow's registered name.
        workflow: String,
        /// The new run's ID.
        run_id: String,
        /// The input, as JSON (@FILE: from a file; -: from stdin). Default: null.
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Print the started run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a signal to a run; the payload must fit the type the workflow waits for.
    #[command(after_help = "\
Example:
  flow --url http://127.0.0.1:8080 signal approval-7 approval \\
      --payload '{\"approved\": true, \"by\": \"alice\"}'")]
    Signal {
        /// The run's ID.
        run: String,
        /// The signal's name.
        name: String,
        /// The payload, as JSON (@FILE: from a file; -: from stdin). Default: null.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
    /// Request a run's cancellation.
    #[command(after_help = "Example:\n  flow --url http://127.0.0.1:8080 cancel approval-7")]
    Cancel {
        /// The run's ID.
        run: String,
    },
    /// Set a failed, cancelled or faulted run going again at the step it ended in.
    #[command(after_help = "\
Example:
  flow --url http://127.0.0.1:8080 redrive order-42

A completed run is not redriven (exit code 1): its workflow decided how it ended.")]
    Redrive {
        /// The run's ID.
        run: String,
    },
    /// Complete a callback token a run handed out: the waiting step gets the payload
    /// (or, with --error, the error).
    #[command(after_help = "\
Examples:
  flow --url http://127.0.0.1:8080 complete 9f0c…e1 --payload '{\"approved\": true, \"by\": \"bob\"}'
  flow --url http://127.0.0.1:8080 complete 9f0c…e1 --error 'the customer withdrew'

An unknown, used or expired token is refused (exit code 1), and so is a payload that
does not fit the type the step waits for (the token stays open).")]
    Complete {
        /// The callback token.
        token: String,
        /// The value, as JSON (@FILE: from a file; -: from stdin). Default: null.
        #[arg(long, value_name = "JSON", conflicts_with = "error")]
        payload: Option<String>,
        /// Fail the callback instead: the step gets `Err(CallbackError::Rejected(TEXT))`.
        #[arg(long, value_name = "TEXT")]
        error: Option<String>,
    },
    /// Write a run's recording to a file, for `RecordedRun::from_file(..).replay::<W>()`
    /// in a test.
    #[command(after_help = "\
Examples:
  flow --journal orders.redb export order-42 --out tests/recordings/order-42.flowrun
  flow --url http://127.0.0.1:8080 export order-42 --out order-42.flowrun

In a test: flow::testing::RecordedRun::from_file(\"order-42.flowrun\")?.replay::<place_order>()
checks that the current code of the workflow takes the same steps.")]
    Export {
        /// The run's ID.
        run: String,
        /// The file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// List the workflows the server can start, with their input and signal types
    /// (--url only: a journal does not hold the workflows' code).
    #[command(after_help = "\
Example:
  flow --url http://127.0.0.1:8080 workflows")]
    Workflows {
        /// Print the list as JSON (as GET /v1/workflows answers).
        #[arg(long)]
        json: bool,
    },
    /// List the task queues of the server's remote tasks (`#[task(queue = ...)]`): tasks
    /// waiting for a worker, tasks leased, and the workers seen lately (--url only).
    #[command(after_help = "\
Example:
  flow --url http://127.0.0.1:8080 queues")]
    Queues {
        /// Print the list as JSON (as GET /v1/queues answers).
        #[arg(long)]
        json: bool,
    },
    /// Draw a workflow's state graph (one state per await site), or a run's path through
    /// it: its visited states and the one it waits at (--url only).
    #[command(after_help = "\
Examples:
  flow --url http://127.0.0.1:8080 graph place_order > place_order.mmd
  flow --url http://127.0.0.1:8080 graph --run order-42 --format dot | dot -Tsvg > order-42.svg
  flow --url http://127.0.0.1:8080 graph place_order --version 2 --format json")]
    Graph {
        /// The workflow's registered name (or --run).
        #[arg(required_unless_present = "run", conflicts_with = "run")]
        workflow: Option<String>,
        /// The workflow's version (default: the newest the server registers).
        #[arg(long, requires = "workflow")]
        version: Option<u32>,
        /// Draw this run's graph: the version it is on, its path marked.
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
        /// Mermaid (`stateDiagram-v2`), Graphviz DOT, or the JSON the server answers.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  flow completions bash > ~/.local/share/bash-completion/completions/flow
  flow completions zsh > ~/.zfunc/_flow")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How `flow graph` prints a graph.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum GraphFormat {
    /// A Mermaid state diagram.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// The server's JSON (states, transitions and both drawings).
    Json,
}

/// A run status, as the API names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "snake_case")]
enum Status {
    /// Being driven.
    Running,
    /// Waiting for a deadline, a signal, a callback or a child run.
    Waiting,
    /// Completed.
    Completed,
    /// Completed with the workflow's `Err` (shown as completed with --journal).
    ReturnedErr,
    /// Failed (the workflow panicked, or a failure its output cannot carry).
    Failed,
    /// Cancelled.
    Cancelled,
    /// Stopped by a fault; can be redriven.
    Faulted,
    /// Waiting for code this engine lacks.
    Blocked,
}

impl Status {
    fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[derive(Args, Debug)]
struct RunsArgs {
    /// Only runs with this status.
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only runs on this version of their workflow.
    #[arg(long)]
    version: Option<u32>,
    /// Only runs created at or after this time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only runs created before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Most runs to show (1 to 10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
    /// Go on after this run ID (the previous page's next-page token).
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
    /// Print the page as JSON: {"runs": [...], "next": token or null}.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (mut cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    if let Err(e) = pick_backend(&mut cli.target, &matches) {
        return fail(e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(CliError::failed(format!("could not start: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(EXIT_OK as u8),
        Err(e) => fail(e),
    }
}

fn fail(error: CliError) -> ExitCode {
    if error.message.is_empty() {
        return ExitCode::from(error.code as u8);
    }
    let label = output::paint("error:", "31;1", output::colour_stderr());
    eprintln!("{label} {}", error.message);
    ExitCode::from(error.code as u8)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "flow", &mut std::io::stdout());
        return Ok(());
    }
    check_usage(&cli)?;
    let backend = connect(&cli.target).await?;
    // Ctrl-C (ending `history --follow`, say) still closes a journal properly.
    let result = tokio::select! {
        result = execute(&backend, cli.command) => result,
        _ = tokio::signal::ctrl_c() => Err(CliError::interrupted()),
    };
    backend.close().await;
    result
}

/// With both a URL and a journal, the one given on the command line wins over the one
/// from the environment (`FLOW_URL`, `FLOW_JOURNAL`); both on the command line, or both
/// from the environment, is a usage error.
fn pick_backend(target: &mut Target, matches: &clap::ArgMatches) -> Result<(), CliError> {
    use clap::parser::ValueSource;
    if target.url.is_none() || target.journal.is_none() {
        return Ok(());
    }
    let source = |id: &str| {
        let mut found = matches.value_source(id);
        let mut level = matches;
        // Global options given after the command are recorded with the command.
        while let Some((_, sub)) = level.subcommand() {
            if sub.value_source(id) == Some(ValueSource::CommandLine) {
                found = Some(ValueSource::CommandLine);
            }
            level = sub;
        }
        found
    };
    match (source("url"), source("journal")) {
        (Some(ValueSource::CommandLine), Some(ValueSource::EnvVariable)) => target.journal = None,
        (Some(ValueSource::EnvVariable), Some(ValueSource::CommandLine)) => target.url = None,
        _ => {
            return Err(CliError::usage(
                "both --url and --journal are given (on the command line, or as FLOW_URL and \
                 FLOW_JOURNAL); give one: a server, or a journal no engine has open",
            ))
        }
    }
    Ok(())
}

/// Usage errors found before anything is opened.
fn check_usage(cli: &Cli) -> Result<(), CliError> {
    let journal = cli.target.journal.is_some() && cli.target.url.is_none();
    let write = match &cli.command {
        Command::Start { .. } => Some("start"),
        Command::Signal { .. } => Some("signal"),
        Command::Cancel { .. } => Some("cancel"),
        Command::Redrive { .. } => Some("redrive"),
        Command::Complete { .. } => Some("complete"),
        _ => None,
    };
    match write {
        Some(command) if journal => return Err(backend::read_only_refusal(command)),
        _ => {}
    }
    if journal && matches!(cli.command, Command::Workflows { .. }) {
        return Err(backend::workflows_need_url());
    }
    if journal && matches!(cli.command, Command::Queues { .. }) {
        return Err(backend::queues_need_url());
    }
    if journal && matches!(cli.command, Command::Graph { .. }) {
        return Err(backend::graph_needs_url());
    }
    if let Command::History { follow: true, .. } = cli.command {
        if journal {
            return Err(CliError::usage(
                "`flow history --follow` needs --url: with --journal no engine has the \
                 journal open, so no new events can come",
            ));
        }
    }
    Ok(())
}

async fn connect(target: &Target) -> Result<Backend, CliError> {
    match (&target.url, &target.journal) {
        (Some(url), _) => Ok(Backend::Http(Http::new(
            url,
            target.token.clone(),
            Duration::from_secs(target.timeout.max(1)),
        )?)),
        (None, Some(path)) => Ok(Backend::Journal(Journal::open(path).await?)),
        (None, None) => Err(CliError::usage(
            "say where the runs are: --url URL of a flow server (or FLOW_URL), or --journal \
             PATH of a journal file (or FLOW_JOURNAL)",
        )),
    }
}

async fn execute(backend: &Backend, command: Command) -> Result<(), CliError> {
    let colour = output::colour_stdout();
    match command {
        Command::Runs(args) => {
            let now = time::now_ms();
            let query = RunsQuery {
                status: args.status.map(Status::name),
                workflow: args.workflow,
                version: args.version,
                since_ms: args
                    .since
                    .as_deref()
                    .map(|t| time::parse(t, now, "--since"))
                    .transpose()?,
                until_ms: args
                    .until
                    .as_deref()
                    .map(|t| time::parse(t, now, "--until"))
                    .transpose()?,
                after: args.page_token,
                limit: args.limit as usize,
            };
            let page = backend.runs(&query).await?;
            if args.json {
                print(&output::pretty(&page))?;
            } else {
                print(output::runs_table(&page, colour).trim_end())?;
                if let Some(next) = page["next"].as_str() {
                    eprintln!("more runs: add --page-token {}", shell_word(next));
                }
            }
        }
        Command::Show { run, json } => {
            let run = backend.run(&run).await?;
            match json {
                true => print(&output::pretty(&run))?,
                false => print(output::run_details(&run, colour).trim_end())?,
            }
        }
        Command::History {
            run,
            json,
            follow,
            interval,
        } => history(backend, &run, json, follow, interval).await?,
        Command::Locals { run, step, json } => {
            let steps = backend.locals(&run, step).await?;
            match json {
                true => print(&output::pretty(&Value::Array(steps)))?,
                false => print(output::locals_text(&steps).trim_end())?,
            }
        }
        Command::Start {
            workflow,
            run_id,
            input,
            json,
        } => {
            let input = json_argument(input.as_deref(), "--input")?;
            let run = backend.start(&workflow, &run_id, input).await?;
            match json {
                true => print(&output::pretty(&run))?,
                false => print(output::run_details(&run, colour).trim_end())?,
            }
        }
        Command::Signal { run, name, payload } => {
            let payload = json_argument(payload.as_deref(), "--payload")?;
            backend.signal(&run, &name, &payload).await?;
            print(&format!("signal `{name}` sent to run {run}"))?;
        }
        Command::Cancel { run } => {
            backend.cancel(&run).await?;
            print(&format!("cancellation of run {run} requested"))?;
        }
        Command::Redrive { run } => {
            backend.redrive(&run).await?;
            print(&format!("run {run} redriven"))?;
        }
        Command::Complete {
            token,
            payload,
            error: Some(error),
        } => {
            debug_assert!(payload.is_none(), "clap keeps --payload and --error apart");
            backend.fail_callback(&token, &error).await?;
            print("callback failed with the error given")?;
        }
        Command::Complete {
            token,
            payload,
            error: None,
        } => {
            let payload = json_argument(payload.as_deref(), "--payload")?;
            backend.complete(&token, &payload).await?;
            print("callback completed")?;
        }
        Command::Export { run, out } => {
            let steps = backend.export(&run, &out).await?;
            print(&format!(
                "wrote the recording of run {run} ({steps} steps) to {}",
                out.display()
            ))?;
        }
        Command::Workflows { json } => {
            let list = backend.workflows().await?;
            match json {
                true => print(&output::pretty(&list))?,
                false => print(output::workflows_table(&list).trim_end())?,
            }
        }
        Command::Queues { json } => {
            let list = backend.queues().await?;
            match json {
                true => print(&output::pretty(&list))?,
                false => print(output::queues_table(&list).trim_end())?,
            }
        }
        Command::Graph {
            workflow,
            version,
            run,
            format,
        } => {
            let target = match (run, workflow) {
                (Some(run), _) => backend::GraphTarget::Run(run),
                (None, Some(name)) => backend::GraphTarget::Workflow { name, version },
                (None, None) => unreachable!("clap requires a workflow or --run"),
            };
            let graph = backend.graph(&target).await?;
            let drawing = |key: &str| graph[key].as_str().unwrap_or_default().to_string();
            match format {
                GraphFormat::Mermaid => print(drawing("mermaid").trim_end())?,
                GraphFormat::Dot => print(drawing("dot").trim_end())?,
                GraphFormat::Json => print(&output::pretty(&graph))?,
            }
        }
        Command::Completions { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}

async fn history(
    backend: &Backend,
    run_id: &str,
    json: bool,
    follow: bool,
    interval: u64,
) -> Result<(), CliError> {
    let events = backend.history(run_id, None).await?;
    if !follow {
        match json {
            true => print(&output::pretty(&Value::Array(events)))?,
            false => print(output::history_table(&events, true).trim_end())?,
        }
        return Ok(());
    }
    let mut last = None;
    let mut first = true;
    let mut batch = events;
    loop {
        if !batch.is_empty() {
            if json {
                for event in &batch {
                    print(&event.to_string())?;
                }
            } else {
                print(output::history_table(&batch, first).trim_end())?;
                first = false;
            }
            last = batch.last().and_then(|e| e["seq"].as_u64()).or(last);
        }
        // Ended: nothing more will come once the events so far are printed.
        let run = backend.run(run_id).await?;
        let status = run["status"].as_str().unwrap_or("");
        if matches!(
            status,
            "completed" | "returned_err" | "failed" | "cancelled" | "faulted"
        ) {
            let rest = backend.history(run_id, last).await?;
            if rest.is_empty() {
                if !json {
                    eprintln!("run {run_id} is {status}");
                }
                return Ok(());
            }
            batch = rest;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(interval.max(10))).await;
        batch = backend.history(run_id, last).await?;
    }
}

/// The JSON of an `--input` or `--payload`: inline, `@FILE` or `-` (stdin); null when
/// not given.
fn json_argument(argument: Option<&str>, option: &str) -> Result<Value, CliError> {
    let Some(argument) = argument else {
        return Ok(Value::Null);
    };
    let text = if argument == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CliError::usage(format!("could not read {option} from stdin: {e}")))?;
        text
    } else if let Some(path) = argument.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("could not read {option} file `{path}`: {e}")))?
    } else {
        argument.to_string()
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{option} is not JSON ({e}); quote it for the shell, e.g. {option} '{{\"id\": 7}}' \
             (a string is '\"text\"'), or read it from a file with {option} @FILE"
        ))
    })
}

/// `word` as the shell would need it typed.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+=".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Prints `text` and a newline. A closed stdout (`flow runs | head`) ends the command
/// quietly, with exit code 0, through the usual path (a journal is still closed).
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|_| CliError::quiet())
}
