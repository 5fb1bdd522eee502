#!/usr/bin/env bash
# The benchmark's row 3 in DBOS (Python), beside flow's pg_bench, on the same PostgreSQL.
#
#   scripts/dbos-bench.sh [URL] [-- ARGS...]
#
# URL (or $FLOW_PG_URL) is a superuser's URL on a throwaway cluster, e.g. the one
# `scripts/pg-cluster.sh start DIR` prints. The script
#   1. makes a Python virtual environment in $DBOS_VENV (default: target/dbos-venv in the
#      repository, which git ignores) and installs DBOS $DBOS_VERSION into it with pip;
#   2. creates the database dbos_bench on that server if it is missing (psql, or Python);
#   3. runs flow-postgres/examples/dbos_bench.py against it, passing ARGS on
#      (--quick, --runs N, --in-flight 1,100,1000, --mechanism start|queue|threads).
# Exits non-zero with a message when pip cannot install DBOS (e.g. no package registry):
# callers that only want flow's figures may treat that as a skip.
set -euo pipefail

DBOS_VERSION=${DBOS_VERSION:-3.4.0}
die() { echo "dbos-bench: $*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
url=""
if [[ $# -gt 0 && "$1" != "--" && "$1" != -* ]]; then url=$1; shift; fi
[[ "${1:-}" == "--" ]] && shift
url=${url:-${FLOW_PG_URL:-}}
[[ -n "$url" ]] || die "usage: $0 [URL] [-- ARGS...] (or set FLOW_PG_URL)"

python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "$python was not found; DBOS needs Python 3.10 or newer"
venv=${DBOS_VENV:-$repo/target/dbos-venv}
if [[ ! -x "$venv/bin/python" ]]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" \
    || die "could not create a virtual environment in $venv (Debian: apt-get install python3-venv)"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; \
sys.exit(m.version('dbos') != '$DBOS_VERSION')" 2>/dev/null; then
  echo "dbos-bench: installing dbos==$DBOS_VERSION into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "dbos==$DBOS_VERSION" >&2 \
    || die "pip could not install dbos==$DBOS_VERSION (is the Python package registry reachable?); \
DBOS was not benchmarked"
fi

# The same server, database dbos_bench (DBOS would make it itself; made here so that the
# URL handed to DBOS names a database that exists).
base=${url%%\?*}
query=""; [[ "$url" == *\?* ]] && query="?${url#*\?}"
server=${base%/*}
bench_url="$server/dbos_bench$query"
if command -v psql >/dev/null; then
  if [[ -z $(psql "$url" -XtAc "SELECT 1 FROM pg_database WHERE datname = 'dbos_bench'") ]]; then
    psql "$url" -Xqc "CREATE DATABASE dbos_bench" || die "could not create the database dbos_bench"
  fi
else
  "$venv/bin/python" - "$url" <<'EOF' || die "could not create the database dbos_bench"
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dbos_bench'").fetchone() is None:
        conn.execute("CREATE DATABASE dbos_bench")
EOF
fi

exec "$venv/bin/python" "$repo/flow-postgres/examples/dbos_bench.py" --url "$bench_url" "$@"
