#!/usr/bin/env bash
# Fuzzing: runs every cargo-fuzz target in fuzz/ for FUZZ_RUNS executions
# each, one after the other on one core, and prints a line per target.
# Installs the nightly toolchain and cargo-fuzz when missing.
#
# Usage (from anywhere): bench/fuzz.sh [TARGET...]
#   FUZZ_RUNS=10000000   executions per target
#   FUZZ_SECONDS=0       if set, also stop each target after this long
#   FUZZ_WORK=target/fuzz-work   where the growing corpora, logs and
#                        crash artifacts go (relative to the repository);
#                        the committed corpora in fuzz/corpus/ are read,
#                        never written
#   FUZZ_NICE=10         niceness of the fuzzing processes
#
# Targets are built with debug assertions and overflow checks (`-a`): an
# overflow on input is a bug even where the shipped build would wrap. No
# sanitizer (`-s none`): the decoders are safe Rust, and AddressSanitizer
# would halve the executions for nothing it could find there.
#
# A crash fails the script (after the other targets ran); its input is in
# $FUZZ_WORK/<target>/artifacts/, and
#   cargo +nightly fuzz run -s none -a <target> <that file>
# (in fuzz/) replays it.
set -euo pipefail

RUNS=${FUZZ_RUNS:-10000000}
SECONDS_CAP=${FUZZ_SECONDS:-0}
WORK=${FUZZ_WORK:-target/fuzz-work}
NICE=${FUZZ_NICE:-10}
cd "$(dirname "$0")/.."
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
cd fuzz

log() { printf '==> %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

log "building ${#targets[@]} targets ($(rustc +nightly --version))"
nice -n "$NICE" cargo +nightly fuzz build -s none -a >&2

failed=()
printf '%-18s %12s %9s %8s %7s  %s\n' target executions seconds corpus crashes status
for t in "${targets[@]}"; do
    dir=$WORK/$t
    mkdir -p "$dir/corpus" "$dir/artifacts"
    seeds=()
    [ -d "corpus/$t" ] && seeds=("corpus/$t")
    start=$(date +%s)
    status=ok
    nice -n "$NICE" cargo +nightly fuzz run -s none -a "$t" "$dir/corpus" "${seeds[@]}" -- \
        -runs="$RUNS" -max_total_time="$SECONDS_CAP" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1 || status=FAILED
    end=$(date +%s)
    # libFuzzer's own count ("Done N runs in S second(s)"), else the last
    # status line's.
    runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$dir/log" | tail -n 1)
    [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$dir/log" | tail -n 1 | tr -d '#')
    corpus=$(find "$dir/corpus" -type f | wc -l)
    crashes=$(find "$dir/artifacts" -type f | wc -l)
    [ "$crashes" -eq 0 ] || status=FAILED
    [ "$status" = ok ] || failed+=("$t")
    printf '%-18s %12s %9s %8s %7s  %s\n' "$t" "${runs:-?}" $((end - start)) "$corpus" "$crashes" "$status"
done

if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]} (logs and inputs under $WORK)"
    exit 1
fi
