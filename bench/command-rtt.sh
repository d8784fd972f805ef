#!/usr/bin/env bash
# Command round trip: from publishing a signed `ping` to receiving its
# `succeeded` reply, through a local Mosquitto and a release agent, one
# command at a time, COUNT times (default 1,000). Every command is checked
# (signature, expiry, journal fdatasync) exactly as in the field.
#
# Usage (from the repository root): bench/command-rtt.sh
#   COUNT         commands (default 1000)
#   AGENT_TARGET  host (default: the glibc build) or a target triple
#   NODELAY       1 (default): Mosquitto with set_tcp_nodelay true; 0: its
#                 default (Nagle's algorithm on)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

COUNT=${COUNT:-1000}
NODELAY=${NODELAY:-1}
# Three statuses follow each other on the broker's socket to the client:
# with Nagle's algorithm the second waits for the client's delayed ACK.
mosquitto_extra=()
if [[ $NODELAY == 1 ]]; then mosquitto_extra=("set_tcp_nodelay true"); fi
export AGENT_TARGET=${AGENT_TARGET:-host}

need python3 python3
build_agent
log "building the round-trip client (release)"
cargo build --release -q -p picket-collector --bin picket-collector --example command_rtt
bench_tmp target
start_mosquitto "$BENCH_TMP" "${mosquitto_extra[@]}"
target/release/picket-collector keygen --out "$BENCH_TMP/keys" >/dev/null

log "agent on mosquitto 127.0.0.1:$MQTT_PORT"
PICKET_DEVICE_ID=bench \
PICKET_BROKER_URL="mqtt://127.0.0.1:$MQTT_PORT" \
PICKET_QUEUE_DIR="$BENCH_TMP/queue" \
PICKET_COMMANDS_STATE_DIR="$BENCH_TMP/commands" \
PICKET_COMMANDS_PUBLIC_KEY_FILE="$BENCH_TMP/keys/command.pub" \
PICKET_COMMANDS_ALLOWED=ping \
RUST_LOG=warn \
    bg "$BENCH_TMP/agent.log" "$AGENT"
# The agent's birth message says it is connected and subscribed.
timeout 30 mosquitto_sub -p "$MQTT_PORT" -t 'picket/v1/bench/state' -C 1 >/dev/null ||
    die "the agent did not connect (see $BENCH_TMP/agent.log)"

target/release/examples/command_rtt --port "$MQTT_PORT" --device bench \
    --key "$BENCH_TMP/keys/command.key" --count "$COUNT" >"$BENCH_TMP/rtt.out"

declare -A r
while IFS='=' read -r key value; do
    r[$key]=$value
done <"$BENCH_TMP/rtt.out"

printf '\nping round trip (publish -> succeeded), %d commands, Mosquitto %s (set_tcp_nodelay %s), agent %s\n\n' \
    "${r[count]}" "$(dpkg-query -W -f '${Version}' mosquitto)" "$([[ $NODELAY == 1 ]] && echo true || echo false)" "$AGENT_TARGET"
printf '%-8s %s ms\n' min "${r[min_ms]}" p50 "${r[p50_ms]}" p90 "${r[p90_ms]}" \
    p99 "${r[p99_ms]}" max "${r[max_ms]}"
printf '\n(Target: p99 <= 20 ms.)\n'
