"""The benchmark's row 3 in DBOS, for comparison with flow's `pg_bench` example.

Runs of a workflow of three steps (each step adds a number: no I/O of its own), at 1, 100
and 1,000 runs in flight, on the PostgreSQL database given by `--url` or `$FLOW_PG_URL`
(DBOS keeps its system tables there, in the schema `dbos`). Usually started by
`scripts/dbos-bench.sh`, which makes the database and a virtual environment with DBOS.

    python dbos_bench.py --url postgres://flow:flow@127.0.0.1:PORT/dbos_bench
    python dbos_bench.py --quick                      # 200 runs per level (smoke run)
    python dbos_bench.py --mechanism queue            # a DBOS Queue instead

Mechanisms (how at most N runs are kept in flight):

- `start` (default): `DBOS.start_workflow` runs each workflow on DBOS's own executor
  threads; the driver starts a run whenever fewer than N are in flight and collects each
  result with the handle's `get_result()`.
- `queue`: every run is enqueued at once on a DBOS queue (`DBOS.register_queue`) whose
  `worker_concurrency` is N; DBOS's queue thread dequeues runs as slots free up. The queue polls the database
  (`--queue-poll`, default 0.05 s here; DBOS's default is 1 s, which caps a queue at N
  runs per second).
- `threads`: N plain Python threads, each calling the workflow function directly (a
  workflow called directly runs durably in the calling thread). Each thread holds one of
  DBOS's pooled connections at a time, so at 1,000 threads the default pool of 20 runs
  dry (DBOS logs the waits and retries); `--pool` raises it.

Durability stays at the defaults: DBOS commits each workflow's start, each step's output
and the workflow's result, and the server keeps fsync and `synchronous_commit` on.
Timing runs from the first start (or enqueue) to the last result, as in `pg_bench`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections import deque

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID


@DBOS.step()
def add(x: int, y: int) -> int:
    return x + y


@DBOS.workflow()
def three(x: int) -> int:
    a = add(x, 1)
    b = add(a, 2)
    return add(b, 3)


def run_start(prefix: str, runs: int, in_flight: int) -> float:
    """Keeps `in_flight` runs going with `DBOS.start_workflow`; returns the seconds taken."""
    window: deque = deque()
    started = time.perf_counter()
    for i in range(runs):
        if len(window) >= in_flight:
            # Oldest first: runs of equal work finish nearly in start order.
            collect(window.popleft())
        with SetWorkflowID(f"{prefix}-{i}"):
            window.append((i, DBOS.start_workflow(three, i)))
    while window:
        collect(window.popleft())
    return time.perf_counter() - started


def collect(entry) -> None:
    i, handle = entry
    out = handle.get_result()
    if out != i + 6:
        raise SystemExit(f"run {i} returned {out}, not {i + 6}")


def run_queue(queue: Queue, prefix: str, runs: int) -> float:
    """Enqueues every run at once on `queue`; returns the seconds until the last result."""
    started = time.perf_counter()
    handles = []
    for i in range(runs):
        with SetWorkflowID(f"{prefix}-{i}"):
            handles.append((i, queue.enqueue(three, i)))
    for entry in handles:
        collect(entry)
    return time.perf_counter() - started


def run_threads(prefix: str, runs: int, in_flight: int) -> float:
    """`in_flight` threads each call the workflow directly; returns the seconds taken."""
    next_run = iter(range(runs))
    lock = threading.Lock()
    failures: list = []

    def worker() -> None:
        while True:
            with lock:
                i = next(next_run, None)
            if i is None:
                return
            try:
                with SetWorkflowID(f"{prefix}-{i}"):
                    out = three(i)
                if out != i + 6:
                    failures.append(f"run {i} returned {out}")
            except Exception as why:  # noqa: BLE001 - reported below
                failures.append(f"run {i}: {why!r}")

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} runs failed, first: {failures[0]}")
    return elapsed


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("FLOW_PG_URL"),
                   help="PostgreSQL URL of DBOS's system database (default $FLOW_PG_URL)")
    p.add_argument("--runs", type=int, default=10_000, help="runs per level above 1 in flight")
    p.add_argument("--sequential-runs", type=int, default=1_000,
                   help="runs at 1 in flight (default 1,000, as pg_bench)")
    p.add_argument("--in-flight", default="1,100,1000", help="comma-separated levels")
    p.add_argument("--mechanism", choices=["start", "queue", "threads"], default="start")
    p.add_argument("--queue-poll", type=float, default=0.05,
                   help="the queue's polling interval in seconds (mechanism queue)")
    p.add_argument("--pool", type=int, default=None,
                   help="DBOS's system database pool size (default: DBOS's own, 20)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 runs per level")
    args = p.parse_args()
    if not args.url:
        p.error("give --url or set FLOW_PG_URL")
    if args.quick:
        args.runs = args.sequential_runs = 200
    levels = [int(x) for x in args.in_flight.split(",") if x.strip()]

    # SQLAlchemy wants its driver named; DBOS uses psycopg 3.
    url = args.url
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg://" + url[len(scheme):]
    config: DBOSConfig = {
        "name": "dbos-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    if args.pool:
        config["sys_db_pool_size"] = args.pool
    DBOS(config=config)
    DBOS.launch()
    queues = {}
    if args.mechanism == "queue":
        # DBOS keeps queues in its system database (registered after launch); one per
        # level so that each has its own limit.
        for n in levels:
            queues[n] = DBOS.register_queue(f"bench-{n}", worker_concurrency=n,
                                            polling_interval_sec=args.queue_poll,
                                            on_conflict="always_update")

    import dbos as dbos_module

    version = getattr(dbos_module, "__version__", None)
    if version is None:
        from importlib.metadata import version as pkg_version

        version = pkg_version("dbos")
    tag = uuid.uuid4().hex[:8]
    print(f"DBOS {version} on PostgreSQL: row 3 (runs of 3 steps), mechanism "
          f"`{args.mechanism}`, {'quick' if args.quick else 'full'} mode; "
          f"load average before: {loadavg()}")
    print()
    print("| in flight | runs | seconds | runs/s | steps/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    sys.stdout.flush()
    for n in levels:
        runs = args.sequential_runs if n == 1 else args.runs
        prefix = f"{tag}-f{n}"
        if args.mechanism == "start":
            secs = run_start(prefix, runs, n)
        elif args.mechanism == "queue":
            secs = run_queue(queues[n], prefix, runs)
        else:
            secs = run_threads(prefix, runs, n)
        rate = runs / secs
        print(f"| {n:,} | {runs:,} | {secs:.1f} | {rate:,.0f} | {rate * 3:,.0f} |")
        sys.stdout.flush()
    print()
    print(f"load average after: {loadavg()}")
    DBOS.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
