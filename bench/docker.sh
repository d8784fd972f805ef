#!/usr/bin/env bash
# What watching Docker costs the agent: RSS and CPU of agents running side by
# side against one Mosquitto and one Docker engine with 20 idle containers:
#
#   plain      built without the docker feature
#   off        built with it, docker.enabled = false
#   none       watching, no container in its scope
#   20         watching the 20 containers
#   20-stats   the same, with CPU and memory of each every 10 s
#
# The engine is a private dockerd (own socket and directories, no bridge, no
# iptables, containers with --network none) started and stopped here; the
# containers run a FROM scratch image holding busybox. Needs root.
#
# Usage (from the repository root): bench/docker.sh
#   DURATION  seconds measured after a warm-up (default 180)
#   INTERVAL  the agents' sampling.interval (default 10s, the default)
#   CONTAINERS  containers watched (default 20)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-180}
INTERVAL=${INTERVAL:-10s}
CONTAINERS=${CONTAINERS:-20}
WARMUP=15

[[ $(id -u) -eq 0 ]] || die "dockerd needs root"
need dockerd docker.io
need busybox busybox-static
need python3 python3

build_agent
cp "$AGENT" target/picket-agent-plain
PLAIN=$PWD/target/picket-agent-plain
AGENT_FEATURES=docker build_agent
DOCKER_AGENT=$AGENT
plain_bytes=$(stat -c %s "$PLAIN")
docker_bytes=$(stat -c %s "$DOCKER_AGENT")

# /tmp, not target/: the engine's exec root holds unix sockets, whose paths
# must stay short.
bench_tmp /tmp
start_mosquitto "$BENCH_TMP"
log "mosquitto on 127.0.0.1:$MQTT_PORT"

log "starting a private dockerd"
bg "$BENCH_TMP/dockerd.log" dockerd --bridge=none --iptables=false --shutdown-timeout=2 \
    --data-root="$BENCH_TMP/data" --exec-root="$BENCH_TMP/exec" \
    --pidfile="$BENCH_TMP/docker.pid" --host="unix://$BENCH_TMP/docker.sock"
DOCKERD_PID=$BG_PID
export DOCKER_HOST="unix://$BENCH_TMP/docker.sock"
for _ in $(seq 300); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd died; see $BENCH_TMP/dockerd.log"
    sleep 0.2
done
docker version >/dev/null 2>&1 || die "dockerd does not answer"
mkdir "$BENCH_TMP/image"
cp "$(command -v busybox)" "$BENCH_TMP/image/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n' \
    >"$BENCH_TMP/image/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --network none -t picket-bench-busybox "$BENCH_TMP/image" >/dev/null
log "starting $CONTAINERS containers"
for i in $(seq 1 "$CONTAINERS"); do
    docker run -d --network none --name "watched-$i" --label picket.manage=true \
        picket-bench-busybox sh -c 'trap "exit 0" TERM; while :; do sleep 5; done' >/dev/null
done

# run_agent NAME BINARY VAR=VALUE...: one agent, its own queue and device id.
declare -A PIDS
run_agent() {
    local name=$1 bin=$2
    shift 2
    mkdir -p "$BENCH_TMP/$name/queue"
    bg "$BENCH_TMP/$name/agent.log" env \
        PICKET_DEVICE_ID="bench-$name" \
        PICKET_BROKER_URL="mqtt://127.0.0.1:$MQTT_PORT" \
        PICKET_QUEUE_DIR="$BENCH_TMP/$name/queue" \
        PICKET_COMMANDS_STATE_DIR="$BENCH_TMP/$name/commands" \
        PICKET_STATUS_SOCKET="$BENCH_TMP/$name/agent.sock" \
        PICKET_LED_BACKEND=none \
        PICKET_SAMPLING_INTERVAL="$INTERVAL" \
        PICKET_DOCKER_SOCKET="$BENCH_TMP/docker.sock" \
        RUST_LOG=warn \
        "$@" "$bin"
    PIDS[$name]=$BG_PID
}
NAMES=(plain off none 20 20-stats)
run_agent plain "$PLAIN"
run_agent off "$DOCKER_AGENT"
run_agent none "$DOCKER_AGENT" PICKET_DOCKER_ENABLED=true PICKET_DOCKER_LABEL=picket.bench=nothing
run_agent 20 "$DOCKER_AGENT" PICKET_DOCKER_ENABLED=true
run_agent 20-stats "$DOCKER_AGENT" PICKET_DOCKER_ENABLED=true PICKET_DOCKER_STATS_INTERVAL=10s

log "warming up for ${WARMUP}s, then measuring for ${DURATION}s"
sleep "$WARMUP"
for name in "${NAMES[@]}"; do
    kill -0 "${PIDS[$name]}" 2>/dev/null || die "agent $name died; see $BENCH_TMP/$name/agent.log"
done
# The watching agents must really see the containers.
bg "$BENCH_TMP/sub.txt" mosquitto_sub -p "$MQTT_PORT" -q 1 -C 1 -W 60 \
    -t 'picket/v1/bench-20/telemetry' -F '%p'
SUB_PID=$BG_PID

CLK_TCK=$(getconf CLK_TCK)
declare -A CPU0 CPU1 ANON FILE
for name in "${NAMES[@]}"; do
    CPU0[$name]=$(cpu_ticks "${PIDS[$name]}")
    : >"$BENCH_TMP/$name/rss"
done
for _ in $(seq 1 "$DURATION"); do
    sleep 1
    for name in "${NAMES[@]}"; do
        rss_kib "${PIDS[$name]}" >>"$BENCH_TMP/$name/rss"
    done
done
for name in "${NAMES[@]}"; do
    CPU1[$name]=$(cpu_ticks "${PIDS[$name]}")
    read -r ANON[$name] FILE[$name] < <(rss_split_kib "${PIDS[$name]}")
done
wait "$SUB_PID" || true
# CBOR: the container names appear as text in the payload.
seen=$(grep -a -o 'watched-[0-9]*' "$BENCH_TMP/sub.txt" | sort -u | wc -l)
[[ $seen -eq $CONTAINERS ]] || die "the watching agent reported $seen containers, not $CONTAINERS"

engine=$(docker version --format '{{.Server.Version}}')
printf '\nagents side by side, %s containers on Docker %s, sampling every %s, %d s window\n' \
    "$CONTAINERS" "$engine" "$INTERVAL" "$DURATION"
printf 'binaries (x86_64 musl, release): plain %d bytes, docker feature %d bytes\n\n' \
    "$plain_bytes" "$docker_bytes"
printf '%-10s %16s %16s %18s %16s\n' agent "RSS median (MiB)" "RSS max (MiB)" "anon/file, end (MiB)" "CPU (% of a core)"
for name in "${NAMES[@]}"; do
    awk -v n="$name" -v med="$(median <"$BENCH_TMP/$name/rss")" -v mx="$(max <"$BENCH_TMP/$name/rss")" \
        -v anon="${ANON[$name]}" -v file="${FILE[$name]}" \
        -v c0="${CPU0[$name]}" -v c1="${CPU1[$name]}" -v tck="$CLK_TCK" -v dur="$DURATION" '
    BEGIN {
        printf "%-10s %16.2f %16.2f %11.2f/%-6.2f %16.3f\n", n, med / 1024, mx / 1024,
            anon / 1024, file / 1024, 100 * (c1 - c0) / tck / dur
    }'
done
printf '\n(CPU resolution: 1/%d s over %d s.)\n' "$CLK_TCK" "$DURATION"
