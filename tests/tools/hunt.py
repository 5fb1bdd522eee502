#!/usr/bin/env python3
"""Runs many generated workflows (gen_corpus.py) against the compiler, in batches, and
records every program the compiler refuses or gets wrong.

    python3 tests/tools/hunt.py --seed 1 --count 2000 [--batch 150] [--with-known-compiler-gaps]

Each batch is built in a scratch crate under target/hunt/ and run by a harness that
compares, for several inputs, the plain async function, the state machine, the machine
rebuilt from its journal before every step, and rebuilt at each step in turn (the same
check as `tests/corpus/mod.rs`). A program that does not build is rebuilt without
`#[workflow]`: if the plain function builds, the compiler refused valid Rust (a finding);
if not, the generator wrote invalid Rust (a generator bug, reported separately). A run
that hangs or kills the harness is recorded against the program it was running.
Findings go to target/hunt/findings.jsonl, one JSON object a line.
"""
import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import gen_corpus  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The scratch crate; HUNT_DIR names another, so that two hunts can run side by side.
CRATE = os.path.join(ROOT, "target", os.environ.get("HUNT_DIR", "hunt"))
HANG_SECONDS = 60

CARGO_TOML = """[package]
name = "flow-hunt"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
flow = { path = "%s" }
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt", "macros", "time"] }

[profile.dev]
debug = 0
incremental = false

[workspace]
"""

HARNESS = r"""
#[macro_use]
mod generated;

use flow::testing::{Driver, Restore};
use flow::Workflow;
use std::fmt::Debug;
use std::future::IntoFuture;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

const INPUTS: &[i64] = &[-4, 0, 1, 2, 5, 9, 12];

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Compares plain, compiled and resumed runs of `make()`; the first difference, if any.
fn differential<W, F>(rt: &tokio::runtime::Runtime, make: F) -> Result<(), (String, String)>
where
    W: Workflow + IntoFuture<Output = <W as Workflow>::Output>,
    <W as Workflow>::Output: PartialEq + Debug + Clone,
    F: Fn() -> W,
{
    let plain = catch_unwind(AssertUnwindSafe(|| rt.block_on(make().into_future())))
        .map_err(|p| ("plain_panic".to_string(), panic_text(p)))?;
    let mut reference = Driver::new();
    let compiled = match catch_unwind(AssertUnwindSafe(|| rt.block_on(reference.run(make(), Restore::Never)))) {
        Err(p) => return Err(("panic".into(), format!("Never: {}", panic_text(p)))),
        Ok(Err(e)) => return Err(("fault".into(), format!("Never: {e}"))),
        Ok(Ok(out)) => out,
    };
    if compiled != plain {
        return Err(("miscompile".into(), format!("Never: plain {plain:?} compiled {compiled:?}")));
    }
    let mut modes = vec![Restore::EveryStep];
    modes.extend((0..reference.steps.len()).map(Restore::AtStep));
    for mode in modes {
        let mut d = Driver::new();
        let out = match catch_unwind(AssertUnwindSafe(|| rt.block_on(d.run(make(), mode)))) {
            Err(p) => return Err(("panic".into(), format!("{mode:?}: {}", panic_text(p)))),
            Ok(Err(e)) => return Err(("fault".into(), format!("{mode:?}: {e}"))),
            Ok(Ok(out)) => out,
        };
        if out != plain {
            return Err(("miscompile".into(), format!("{mode:?}: plain {plain:?} resumed {out:?}")));
        }
        if d.steps != reference.steps {
            return Err(("miscompile".into(), format!("{mode:?}: steps differ from the uninterrupted run")));
        }
    }
    Ok(())
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let skip: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut index = 0usize;
    let mut out = std::io::stdout();
    macro_rules! run {
        ($name:ident) => {
            if index >= skip {
                writeln!(out, "START {}", stringify!($name)).unwrap();
                out.flush().unwrap();
                for &x in INPUTS {
                    if let Err((class, detail)) = differential(&rt, || generated::$name(x)) {
                        let detail = detail.replace('\n', " ");
                        writeln!(out, "FAIL {} {} {} {}", stringify!($name), x, class, detail).unwrap();
                        break;
                    }
                }
                writeln!(out, "DONE {}", stringify!($name)).unwrap();
                out.flush().unwrap();
            }
            index += 1;
        };
    }
    for_each_generated!(run);
    let _ = index;
}
"""


def setup_crate():
    os.makedirs(os.path.join(CRATE, "src"), exist_ok=True)
    with open(os.path.join(CRATE, "Cargo.toml"), "w") as f:
        f.write(CARGO_TOML % os.path.relpath(ROOT, CRATE))
    with open(os.path.join(CRATE, "src", "main.rs"), "w") as f:
        f.write(HARNESS)
    lock = os.path.join(CRATE, "Cargo.lock")
    if not os.path.exists(lock):
        with open(os.path.join(ROOT, "Cargo.lock")) as src, open(lock, "w") as dst:
            dst.write(src.read())


def program_lines(text):
    """(first line, name) of each generated workflow, in order."""
    starts = []
    for n, line in enumerate(text.split("\n"), start=1):
        m = re.match(r"pub async fn (gen_\w+)", line)
        if m:
            starts.append((n - 1 if n > 1 else n, m.group(1)))  # the attribute line above
        elif line.startswith("/// Runs every generated workflow"):
            starts.append((n, None))  # the list of programs belongs to none of them
    return starts


def owner(starts, line):
    found = None
    for start, name in starts:
        if start <= line:
            found = name
    return found


PLAIN_HARNESS = """#[macro_use]
mod generated;

fn main() {}
"""


def build(text, plain=False):
    """Builds the crate with `text` as its generated module (with a harness that runs
    nothing if `plain`). Returns the programs with errors (name -> first error) and the
    errors outside any program."""
    with open(os.path.join(CRATE, "src", "generated.rs"), "w") as f:
        f.write(text)
    with open(os.path.join(CRATE, "src", "main.rs"), "w") as f:
        f.write(PLAIN_HARNESS if plain else HARNESS)
    proc = subprocess.run(["cargo", "build", "--quiet", "--message-format=json"], cwd=CRATE,
                          capture_output=True, text=True)
    starts = program_lines(text)
    failed, stray = {}, []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-message" or msg["message"]["level"] != "error":
            continue
        m = msg["message"]
        name = None
        for span in sorted(m["spans"], key=lambda s: not s["is_primary"]):
            # An error inside a prelude macro belongs to the program that called it.
            while span is not None and name is None:
                if span["file_name"].endswith("generated.rs"):
                    name = owner(starts, span["line_start"])
                span = (span.get("expansion") or {}).get("span")
            if name:
                break
        if name is None:
            if not m["message"].startswith("aborting"):
                stray.append(m["rendered"] or m["message"])
            continue
        if name not in failed:
            failed[name] = {"code": (m.get("code") or {}).get("code"), "message": m["message"],
                            "rendered": m["rendered"]}
    if proc.returncode != 0 and not failed and not stray:
        stray.append(proc.stderr[-3000:])
    return failed, stray


def run_binary(names):
    """Runs the built harness; yields (name, class, detail) for each failure. A hang or a
    crash is charged to the program that was running, and the run goes on after it."""
    exe = os.path.join(CRATE, "target", "debug", "flow-hunt")
    skip = 0
    while skip < len(names):
        proc = subprocess.Popen([exe, str(skip)], cwd=CRATE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=HANG_SECONDS)
            except queue.Empty:
                proc.kill()
                proc.wait()
                yield current, "hang", f"no progress for {HANG_SECONDS}s"
                break
            if line is None:
                proc.wait()
                if proc.returncode != 0 and current is not None:
                    yield current, "crash", f"exit {proc.returncode}: {proc.stderr.read()[:400]}"
                break
            parts = line.rstrip("\n").split(" ", 4)
            if parts[0] == "START":
                current = parts[1]
            elif parts[0] == "DONE":
                current = None
            elif parts[0] == "FAIL":
                yield parts[1], parts[3], f"input {parts[2]}: {parts[4] if len(parts) > 4 else ''}"
        if current is None:
            break
        skip = names.index(current) + 1


def record(findings, entry):
    findings.write(json.dumps(entry) + "\n")
    findings.flush()
    print(f"  {entry['kind']}: {entry['name']} {entry.get('detail', '')[:300]}", flush=True)


def hunt_batch(seed, first, count, shapes, findings, stats):
    names = [gen_corpus.program(seed, i, shapes)[0] for i in range(first, first + count)]
    sources = {n: gen_corpus.program(seed, i, shapes)[1] for n, i in zip(names, range(first, first + count))}
    keep = list(names)

    def text_of(selected, plain=False):
        programs = [(n, gen_corpus.without_workflow(sources[n]) if plain else sources[n]) for n in selected]
        return gen_corpus.assemble(programs, f"hunt.py, seed {seed}")

    # Without the refused programs rustc may get further and refuse others: a few rounds.
    for _ in range(4):
        failed, stray = build(text_of(keep))
        # A refused workflow is kept as the plain `async fn` it was written as, so the
        # harness's calls of it fail too: only errors with no refused program are stray.
        if stray and not failed:
            print("build failed outside the programs:\n" + "\n".join(stray[:3]), flush=True)
            stats["harness_errors"] += 1
            return
        if not failed:
            break
        # Which of them are valid Rust?
        plain_failed, plain_stray = build(text_of(list(failed), plain=True), plain=True)
        for name, err in failed.items():
            index = int(name.rsplit("_", 1)[1])
            if name in plain_failed or plain_stray:
                stats["generator_bugs"] += 1
                record(findings, {"kind": "generator_bug", "seed": seed, "index": index, "name": name,
                                  "detail": (plain_failed.get(name) or {}).get("rendered", "")})
            else:
                stats["refused"] += 1
                record(findings, {"kind": "refused", "seed": seed, "index": index, "name": name,
                                  "code": err["code"], "detail": err["message"], "rendered": err["rendered"],
                                  "source": sources[name]})
        keep = [n for n in keep if n not in failed]
    stats["built"] += len(keep)
    for name, kind, detail in run_binary(keep):
        index = int(name.rsplit("_", 1)[1])
        if kind == "plain_panic":
            stats["generator_bugs"] += 1
            kind = "generator_bug"
        else:
            stats[kind] = stats.get(kind, 0) + 1
        record(findings, {"kind": kind, "seed": seed, "index": index, "name": name, "detail": detail,
                          "source": sources[name]})


def run_repro(path):
    """Builds and checks the workflows in `path` (named `gen_*`, written against the
    prelude), reporting each refusal and failure: for minimizing a finding by hand."""
    with open(path) as f:
        # Each workflow's source starts at its attribute.
        pieces = [p for p in re.split(r"(?=#\[workflow\])", f.read()) if "pub async fn" in p]
    programs = [(re.search(r"pub async fn (gen_\w+)", p).group(1), p) for p in pieces]
    failed, stray = build(gen_corpus.assemble(programs, path))
    for name, err in failed.items():
        print(f"  refused: {name}\n{err['rendered']}")
    if stray:
        print("\n".join(stray))
        return
    programs = [(n, p) for n, p in programs if n not in failed]
    if failed and build(gen_corpus.assemble(programs, path)) != ({}, []):
        print("  the others did not build alone")
        return
    for name, kind, detail in run_binary([n for n, _ in programs]):
        print(f"  {kind}: {name} {detail}")
    print("  done")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repro", help="check the hand-written workflows in this file instead")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--batch", type=int, default=150)
    p.add_argument("--only")
    p.add_argument("--without", default="")
    p.add_argument("--with-known-compiler-gaps", action="store_true")
    args = p.parse_args()
    shapes = gen_corpus.shapes_for(args)
    setup_crate()
    if args.repro:
        return run_repro(args.repro)
    stats = {"generated": 0, "built": 0, "refused": 0, "generator_bugs": 0, "harness_errors": 0}
    with open(os.path.join(CRATE, "findings.jsonl"), "a") as findings:
        for first in range(args.first, args.first + args.count, args.batch):
            n = min(args.batch, args.first + args.count - first)
            t0 = time.time()
            print(f"seed {args.seed}: programs {first}..{first + n}", flush=True)
            hunt_batch(args.seed, first, n, shapes, findings, stats)
            stats["generated"] += n
            print(f"  {time.time() - t0:.0f}s; totals {stats}", flush=True)
    print(json.dumps({"seed": args.seed, "first": args.first, "count": args.count, **stats}))


if __name__ == "__main__":
    main()
