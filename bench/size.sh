#!/usr/bin/env bash
# Size of the agent as shipped to a Raspberry Pi: a stripped, static
# aarch64-unknown-linux-musl build with the `device` profile (the release
# profile at opt-level "z"; target settings in .cargo/config.toml), with
# default features and with Docker support (`--features docker`).
#
# Usage (from the repository root): bench/size.sh
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

TARGET=aarch64-unknown-linux-musl
# 2.75 MiB: what the agent must fit in (docs/benchmarks.md).
LIMIT=$((11 * 1024 * 1024 / 4))

need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need file file
if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "adding the $TARGET Rust target"
    rustup target add "$TARGET"
fi
# The shipped agent (default features), then the same with Docker support.
measure() {
    local label=$1
    shift
    log "building the agent for $TARGET (profile device) $*"
    cargo build --profile device -q -p picket-agent --target "$TARGET" "$@"
    local bin=target/$TARGET/device/picket-agent
    local bytes kind
    bytes=$(stat -c %s "$bin")
    kind=$(file -b "$bin")
    [[ $kind == *"statically linked"* ]] || die "not a static binary: $kind"
    [[ $kind == *"stripped"* && $kind != *"not stripped"* ]] || die "not stripped: $kind"
    printf '%-22s %s\n' "$label" "$bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.2f", b / 1048576}') MiB)"
    SIZE=$bytes
}

printf '\npicket-agent for %s (%s)\n\n' "$TARGET" "$(rustc --version)"
measure "default features"
plain=$SIZE
measure "--features docker" --features docker
docker=$SIZE
printf '%-22s %s\n' "docker adds" "$((docker - plain)) bytes"
printf '%-22s %s\n' "target" "<= 2.75 MiB (default features): $([[ $plain -le $LIMIT ]] && echo met || echo MISSED)"
