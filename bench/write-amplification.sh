#!/usr/bin/env bash
# Disk bytes written per payload byte, at one sample a second, in the two
# regimes an SD card lives through: broker connected (records are acked within
# milliseconds) and broker down (everything accumulates in the queue). Both
# agents run one after the other, each with its own queue directory.
#
# Disk bytes come from the kernel's per-process I/O accounting
# (/proc/PID/io: write_bytes - cancelled_write_bytes), which charges a page
# when it turns dirty and refunds it when it is truncated or unlinked before
# writeback. Filesystem journal and metadata writes are done by kernel
# threads and are not included.
#
# Usage (from the repository root): bench/write-amplification.sh
#   DURATION       seconds measured after a 5 s warm-up (default 120)
#   SYNC_INTERVAL  queue.sync_interval for both agents (default: the agent's)
#   HOT_DIR        tmpfs directory for both agents' queue.hot_dir (one
#                  subdirectory each); default: a fresh directory under
#                  /dev/shm when that is tmpfs; "off" runs without a hot spool
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-120}
SYNC_INTERVAL=${SYNC_INTERVAL:-}
WARMUP=5

need python3 python3
build_agent
log "building the queue reader"
cargo build --release -q -p picket-agent --example queue_bytes
QUEUE_BYTES=$PWD/target/release/examples/queue_bytes
# Under target/: the queue must sit on a real disk, not on a tmpfs /tmp.
bench_tmp target
fs=$(findmnt -n -o FSTYPE -T "$BENCH_TMP")
[[ $fs != tmpfs ]] || die "$BENCH_TMP is on tmpfs: no disk writes to measure"
HOT_DIR=${HOT_DIR-auto}
HOT_TMP=""
case $HOT_DIR in
    off | "") HOT_DIR="" ;;
    auto)
        # stat, not findmnt: a mount point with mounts stacked on it makes
        # findmnt -T print one line per mount.
        if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
            HOT_TMP=$(mktemp -d /dev/shm/picket-hot.XXXXXX)
            HOT_DIR=$HOT_TMP
        else
            HOT_DIR=""
        fi
        ;;
    *)
        mkdir -p "$HOT_DIR"
        [[ $(stat -f -c %T "$HOT_DIR") == tmpfs ]] || die "HOT_DIR=$HOT_DIR is not on tmpfs"
        ;;
esac
# The hot spool lives outside the scratch directory that lib.sh removes.
trap 'bench_cleanup; [[ -z $HOT_TMP ]] || rm -rf "$HOT_TMP"' EXIT
start_mosquitto "$BENCH_TMP"
DOWN_PORT=$(free_port)

effective_sync=${SYNC_INTERVAL:-$("$AGENT" print-default-config | awk -F'"' '/^sync_interval/ {print $2}')}

bg "$BENCH_TMP/sub.txt" mosquitto_sub -p "$MQTT_PORT" -q 1 -t 'picket/v1/wa-connected/telemetry' -F '%U %l'
sleep 0.5

# run_agent NAME PORT: an agent named NAME publishing to 127.0.0.1:PORT.
run_agent() {
    mkdir -p "$BENCH_TMP/$1"
    local env=(
        PICKET_DEVICE_ID="$1"
        PICKET_BROKER_URL="mqtt://127.0.0.1:$2"
        PICKET_QUEUE_DIR="$BENCH_TMP/$1"
        PICKET_SAMPLING_INTERVAL=1s
        PICKET_PAYLOAD_FORMAT=cbor
        RUST_LOG=warn
    )
    [[ -z $SYNC_INTERVAL ]] || env+=(PICKET_QUEUE_SYNC_INTERVAL="$SYNC_INTERVAL")
    [[ -z $HOT_DIR ]] || env+=(PICKET_QUEUE_HOT_DIR="$HOT_DIR/$1")
    bg "$BENCH_TMP/$1.log" env "${env[@]}" "$AGENT"
}
# measure NAME PORT: run one agent, let it warm up, and record its disk
# writes over the window in W0/W1 and the window's bounds in T0/T1 (seconds)
# and T0_MS/T1_MS. One regime at a time: an agent that fsyncs forces the
# filesystem journal to commit, which would write the other one's short-lived
# pages too and blur both figures.
measure() {
    run_agent "$1" "$2"
    local pid=$BG_PID
    sleep "$WARMUP"
    kill -0 "$pid" 2>/dev/null || die "agent $1 died; see $BENCH_TMP/$1.log"
    T0=$(date +%s.%N)
    T0_MS=$(now_ms)
    W0=$(disk_write_bytes "$pid")
    sleep "$DURATION"
    W1=$(disk_write_bytes "$pid")
    T1=$(date +%s.%N)
    T1_MS=$(now_ms)
    sleep 1
    stop "$pid"
}

log "sync interval $effective_sync; hot spool ${HOT_DIR:-off}; per regime: ${WARMUP}s warm-up, ${DURATION}s measured"
log "regime 1: broker connected"
measure wa-connected "$MQTT_PORT"
t0=$T0 t1=$T1 connected_w0=$W0 connected_w1=$W1
# Nothing listens on DOWN_PORT: the agent keeps retrying, as with a dead link.
log "regime 2: broker down"
measure wa-down "$DOWN_PORT"
t0_ms=$T0_MS t1_ms=$T1_MS down_w0=$W0 down_w1=$W1

# Connected: the telemetry the broker delivered inside the window (each
# message is a one-sample batch: the CBOR sample plus a few bytes of
# envelope).
read -r connected_msgs connected_payload < <(awk -v t0="$t0" -v t1="$t1" \
    '$1 >= t0 && $1 < t1 {n++; b += $2} END {printf "%d %d\n", n, b}' "$BENCH_TMP/sub.txt")
# Down: the records the agent queued inside the window, samples and events.
read -r down_records down_payload < <("$QUEUE_BYTES" "$BENCH_TMP/wa-down" \
    --since-ms "$t0_ms" --until-ms "$t1_ms" | sed 's/[a-z_]*=//g')
[[ $connected_msgs -gt 0 ]] || die "the connected agent published nothing"
[[ $down_records -gt 0 ]] || die "the disconnected agent queued nothing"

printf '\nwrite amplification, 1 Hz, %d s window, queue.sync_interval %s, %s on %s, hot spool %s\n\n' \
    "$DURATION" "$effective_sync" "$fs" "$(findmnt -n -o SOURCE -T "$BENCH_TMP")" \
    "$([[ -n $HOT_DIR ]] && echo "on tmpfs" || echo off)"
printf '%-18s %10s %14s %16s %10s\n' regime records "payload bytes" "disk bytes" "disk/payload"
awk -v n="$connected_msgs" -v p="$connected_payload" -v w="$((connected_w1 - connected_w0))" \
    'BEGIN {printf "%-18s %10d %14d %16d %10.3f\n", "broker connected", n, p, w, w / p}'
awk -v n="$down_records" -v p="$down_payload" -v w="$((down_w1 - down_w0))" \
    'BEGIN {printf "%-18s %10d %14d %16d %10.3f\n", "broker down", n, p, w, w / p}'
printf '\n(Targets: broker down <= 3x, connected close to 0.)\n'
