#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for flow's tests and benchmark: no system service.
#
#   scripts/pg-cluster.sh start DIR [PORT]   initdb in DIR, start on 127.0.0.1:PORT (a free
#                                            port if omitted); prints the server's URL
#   scripts/pg-cluster.sh stop DIR           stops it (immediate) and deletes DIR
#   scripts/pg-cluster.sh halt DIR           stops it as a crash would (pg_ctl stop -m
#                                            immediate), keeping its data
#   scripts/pg-cluster.sh resume DIR         starts a halted cluster again, on its port
#
# DIR's parent must be reachable by the user the cluster runs as (see below): the system's
# temporary directory is.
#
# The binaries (initdb, pg_ctl, postgres) come from $FLOW_PG_BIN, `pg_config --bindir`,
# Debian's /usr/lib/postgresql/<version>/bin (newest first) or PATH. Missing, they are
# installed with apt-get (Debian's `postgresql` package) when running as root with
# apt-get available, unless FLOW_PG_NO_INSTALL=1. PostgreSQL refuses to run as root, so
# as root the cluster runs as the `postgres` user (or `nobody`).
#
# The superuser is `flow` with password `flow`; TCP logins need the password
# (scram-sha-256). fsync and synchronous_commit stay on (the server's defaults).
set -euo pipefail

die() { echo "pg-cluster: $*" >&2; exit 1; }

find_bindir() {
  local d
  for d in "${FLOW_PG_BIN:-}" "$(pg_config --bindir 2>/dev/null || true)" \
      $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
      echo "$d"; return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

bindir() {
  local d
  if d=$(find_bindir); then echo "$d"; return 0; fi
  if [[ "${FLOW_PG_NO_INSTALL:-}" != 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "pg-cluster: PostgreSQL not found; installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; } \
      || die "could not install PostgreSQL with apt-get"
    d=$(find_bindir) || die "PostgreSQL was installed but its binaries were not found"
    echo "$d"; return 0
  fi
  die "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found; install them \
(Debian: apt-get install postgresql) or set FLOW_PG_BIN to their directory"
}

# Runs a command as the cluster's user (not root).
as_user() {
  if [[ $(id -u) == 0 ]]; then
    local user=postgres
    id postgres >/dev/null 2>&1 || user=nobody
    if command -v runuser >/dev/null; then runuser -u "$user" -- "$@"; else su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free loopback port found"
}

start() {
  local dir=$1 port=${2:-}
  local bin; bin=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ -e "$dir/data" ]] && die "$dir/data exists already; stop that cluster first"
  if [[ $(id -u) == 0 ]]; then
    local user=postgres; id postgres >/dev/null 2>&1 || user=nobody
    chown "$user" "$dir"
    as_user test -w "$dir" \
      || die "$dir is not reachable by the user the cluster runs as ($user): put it under a \
directory that user can enter (e.g. TMPDIR=/tmp)"
  fi
  echo flow > "$dir/pw"; chmod 644 "$dir/pw"
  as_user "$bin/initdb" -D "$dir/data" -U flow --pwfile="$dir/pw" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  local tries=0
  while :; do
    [[ -n "$port" ]] || port=$(free_port)
    if as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >/dev/null 2>&1; then
      break
    fi
    tries=$((tries + 1))
    if [[ $tries -ge 3 || -n "${2:-}" ]]; then
      tail -20 "$dir/server.log" >&2 || true
      die "the server did not start"
    fi
    port=""
  done
  echo "$port" > "$dir/port"
  echo "postgres://flow:flow@127.0.0.1:$port/postgres"
}

stop() {
  local dir=$1
  [[ -d "$dir" ]] || return 0
  local bin; bin=$(find_bindir) || die "PostgreSQL's binaries were not found"
  if [[ -d "$dir/data" ]]; then
    as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

halt() {
  local dir=$1 bin; bin=$(find_bindir) || die "PostgreSQL's binaries were not found"
  as_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
}

resume() {
  local dir=$1 bin; bin=$(find_bindir) || die "PostgreSQL's binaries were not found"
  local port; port=$(cat "$dir/port")
  as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >/dev/null \
    || { tail -20 "$dir/server.log" >&2; die "the server did not start again"; }
}

case "${1:-}" in
  start) [[ $# -ge 2 ]] || die "usage: $0 start DIR [PORT]"; start "$2" "${3:-}" ;;
  stop) [[ $# -ge 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  halt) [[ $# -ge 2 ]] || die "usage: $0 halt DIR"; halt "$2" ;;
  resume) [[ $# -ge 2 ]] || die "usage: $0 resume DIR"; resume "$2" ;;
  *) die "usage: $0 start DIR [PORT] | stop DIR | halt DIR | resume DIR" ;;
esac
