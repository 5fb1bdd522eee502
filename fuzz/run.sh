#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 30 s each):
#
#   fuzz/run.sh                      # every target, 30 s each
#   FLOW_FUZZ_SECONDS=300 fuzz/run.sh decode_records
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on the stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo fuzz passes nightly-only flags). New coverage goes to
# fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET). A panic (in any thread), hang
# (-timeout=10) or memory blow-up (-rss_limit_mb, -malloc_limit_mb) is saved under
# fuzz/artifacts/TARGET/, fuzzing goes on until the time is up, and this script then
# names each new finding and exits non-zero. Keep understood findings under
# fuzz/regressions/ (fuzz/tests/regressions.rs replays them; for open_file, store the
# journal an input stands for: `cargo run --example journal_image -- INPUT OUT.redb`).
#
# Knobs: FLOW_FUZZ_SECONDS (per target), FLOW_FUZZ_SANITIZER (default: address for
# decode_records, none for open_file, whose engine start-up dominates), FLOW_FUZZ_JOBS
# (parallel fuzzing processes, default 1).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FLOW_FUZZ_SECONDS:-30}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(decode_records open_file)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz); skipping" >&2
    exit 0
fi
export RUSTC_BOOTSTRAP=1

status=0
for target in "${targets[@]}"; do
    case "$target" in
        decode_records) sanitizer="${FLOW_FUZZ_SANITIZER:-address}"; max_len=16384 ;;
        open_file) sanitizer="${FLOW_FUZZ_SANITIZER:-none}"; max_len=4096 ;;
        *) sanitizer="${FLOW_FUZZ_SANITIZER:-address}"; max_len=4096 ;;
    esac
    mkdir -p "corpus/$target" "seeds/$target" "artifacts/$target"
    before="$(ls "artifacts/$target" | sort)"
    echo "== fuzzing $target for ${seconds}s (sanitizer: $sanitizer)"
    log="artifacts/$target.log"
    # -fork=1 with -ignore_*: keep fuzzing after a crash, so one known defect does not
    # hide the others for the rest of the time budget; each finding is saved.
    cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len="$max_len" -len_control=20 -fork="${FLOW_FUZZ_JOBS:-1}" \
        -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || true
    # Fork mode's last status line: "#RUNS: cov: .. exec/s: .. oom/timeout/crash: a/b/c".
    grep -E '^#[0-9]+: cov:' "$log" | tail -n 1 || true
    grep -E '^INFO: fuzzed for' "$log" | tail -n 1 || true
    new="$(comm -13 <(echo "$before") <(ls "artifacts/$target" | sort) | sed '/^$/d')"
    if [ -n "$new" ]; then
        status=1
        echo "== $target: NEW FINDINGS (replay one: cargo fuzz run -s $sanitizer $target artifacts/$target/NAME)"
        for name in $new; do
            # Replay once to name the panic (or sanitizer report) behind each input.
            what="$(RUST_BACKTRACE=0 "target/x86_64-unknown-linux-gnu/release/$target" \
                "artifacts/$target/$name" 2>&1 \
                | grep -E -A1 "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer" \
                | tr '\n' ' ' | cut -c1-240 || true)"
            echo "   $name: ${what:-did not reproduce on replay (timing-dependent)}"
        done
    elif ! grep -qE '^INFO: fuzzed for|^#[0-9]+: cov:' "$log"; then
        status=1
        tail -n 40 "$log"
        echo "== $target: the fuzzer did not run (see $log)" >&2
    fi
done
exit "$status"
