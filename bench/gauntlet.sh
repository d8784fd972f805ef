#!/usr/bin/env bash
# The gauntlet: real agents, Mosquitto with persistence and the collector
# on SQLite, put through a long random sequence of faults; then everything
# drains and every seq each agent assigned is looked for in the database.
#
# Set up (all on loopback, on ports the kernel hands out):
# - Mosquitto with persistence as docs/collector.md recommends (saved every 2 s,
#   `max_queued_messages 0`, `max_inflight_messages 10000`), its own config
#   and data directory; the agents keep what it acknowledged for their
#   default `uplink.hold_acked` (30 s) and send it again after a lost
#   connection, so a SIGKILL before a save loses nothing;
# - the release collector (`serve`) straight on the broker, its SQLite
#   database in the scratch directory;
# - GAUNTLET_AGENTS release agents (default 5), each with its own device id,
#   1 s sampling, a copy of the Raspberry Pi 4 fixture tree as host root, and
#   its queue directory on a tmpfs of its own (8 MiB, under the queue's
#   64 MiB cap: a full disk comes before any drop-oldest); each connects
#   through bench/fault_proxy.py, and runs under libfaketime (LD_PRELOAD
#   with its own FAKETIME_TIMESTAMP_FILE; monotonic and boot time stay
#   true) so its wall clock can be stepped while it runs.
#
# Faults (bench/gauntlet_plan.py draws them from the seed; the same
# GAUNTLET_SEED gives the same sequence): an agent SIGKILLed and restarted,
# or SIGKILLed and restarted on a "new boot" (its fixture's boot id
# changed, so its queue declares the seqs it cannot vouch for as skipped);
# every agent connection reset, or stalled for 1-8 s (agents' keep-alive
# 5 s); an agent's wall clock stepped back or forward by up to 6 h; an
# agent's queue file system filled for 2-12 s; Mosquitto SIGKILLed and
# restarted, or stopped cleanly and restarted; the collector SIGKILLed and
# restarted. Processes that die on their own are restarted too (like
# systemd's Restart=always) and counted as unexpected exits.
#
# Then: every fault repaired, the agents' queues drain, the collector goes
# quiet, the agents stop cleanly (their queue's meta file then holds the
# exact next seq), the collector stores what is left and stops, and
# bench/gauntlet_check.py reconciles per device. Exit status 1 if any
# sample or event is lost, stored twice or stored without being assigned,
# or if a process could not be brought back.
#
# Usage (from the repository root, as root: it mounts tmpfs):
#   bench/gauntlet.sh
#   GAUNTLET_SEED     the sequence to draw (default: a random one, printed)
#   GAUNTLET_FAULTS   how many faults (default 1000)
#   GAUNTLET_SECONDS  how long the fault phase lasts (default 1.2 s a fault)
#   GAUNTLET_AGENTS   how many agents (default 5)
#   GAUNTLET_EXCLUDE  fault kinds left out, comma-separated (kinds in
#                     bench/gauntlet_plan.py, e.g. broker_kill)
#   GAUNTLET_PROFILE  the cargo profile of the agents and the collector
#                     (default release; CI's short run takes dev)
#   BENCH_KEEP=1      keep the scratch directory (logs, database, schedule)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

FAULTS=${GAUNTLET_FAULTS:-1000}
SEED=${GAUNTLET_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SECONDS_TOTAL=${GAUNTLET_SECONDS:-$(awk -v f="$FAULTS" 'BEGIN {print f * 1.2}')}
AGENTS=${GAUNTLET_AGENTS:-5}
(( AGENTS >= 1 && FAULTS >= 1 )) || die "GAUNTLET_AGENTS and GAUNTLET_FAULTS must be at least 1"
[[ $(id -u) -eq 0 ]] || die "run as root: each agent's queue is on a tmpfs of its own"

need mosquitto mosquitto
need curl curl
need faketime faketime
need cc build-essential
FAKETIME_LIB=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketimeMT\.so\.1$' | head -n 1)
[[ -n $FAKETIME_LIB ]] || die "libfaketimeMT.so.1 not found (Debian package libfaketime)"

log "seed $SEED: $FAULTS faults over ${SECONDS_TOTAL}s, $AGENTS agents${GAUNTLET_EXCLUDE:+, without $GAUNTLET_EXCLUDE} (GAUNTLET_SEED=$SEED re-runs this sequence)"
log "building the release agent and collector"
PROFILE=${GAUNTLET_PROFILE:-release}
cargo build --profile "$PROFILE" -q -p picket-agent -p picket-collector
BIN_DIR=$PWD/target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
AGENT_BIN=$BIN_DIR/picket-agent
COLLECTOR_BIN=$BIN_DIR/picket-collector
bench_tmp target
T=$BENCH_TMP

# --- processes ------------------------------------------------------------
# Every process is started by this shell; PIDS[name] holds the live one.
# A pid is only ever signalled while it is still our child (its parent is
# this shell), so a pid the kernel gave to someone else is never touched.
declare -A PIDS=()
MOUNTS=()
UNEXPECTED=()

ours() { # ours PID: a live child of this shell (not yet a zombie)
    local stat state ppid
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    read -r state ppid _ <<<"${stat##*) }"
    [[ $state != Z && $ppid == "$$" ]]
}
started() { # started NAME: PIDS[NAME] from $!
    PIDS[$1]=$!
}
signal_and_wait() { # signal_and_wait NAME SIGNAL [SECONDS]: then SIGKILL
    local name=$1 sig=$2 secs=${3:-20} pid=${PIDS[$1]:-} i
    [[ -n $pid ]] || return 0
    if ours "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do
            ours "$pid" || break
            sleep 0.1
        done
        if ours "$pid"; then
            log "$name did not stop within ${secs}s of SIG$sig: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}
gauntlet_cleanup() {
    local name m
    for name in "${!PIDS[@]}"; do
        [[ -n ${PIDS[$name]} ]] && ours "${PIDS[$name]}" && kill -KILL "${PIDS[$name]}" 2>/dev/null
    done
    for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}" 2>/dev/null || true; done
    for m in "${MOUNTS[@]}"; do
        # A kept run keeps the agents' queues too (their tmpfs goes).
        [[ ${BENCH_KEEP:-} == 1 ]] && cp -a "$m" "$m.kept" 2>/dev/null
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    bench_cleanup
}
trap gauntlet_cleanup EXIT

wait_port() { # wait_port PORT SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Mosquitto: the settings docs/collector.md recommends. Saved by time, not by change count:
# Mosquitto 2.0 does not count a message in flight to a connected
# subscriber as a change, so `autosave_on_changes` can leave the
# collector's unacknowledged messages out of every save; a timed save
# holds everything. A SIGKILL loses what came in since the last save; the
# agents' hold (30 s, over the 3 s between saves) sends that again.
BROKER_PORT=$(free_port)
mkdir -p "$T/broker"
cat >"$T/broker/mosquitto.conf" <<EOF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $T/broker/
autosave_interval 2
max_queued_messages 0
max_inflight_messages 10000
set_tcp_nodelay true
log_dest file $T/broker/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
user root
EOF
broker_start() {
    mosquitto -c "$T/broker/mosquitto.conf" >>"$T/broker/out.log" 2>&1 &
    started broker
    # Its own port was free a moment ago: should anyone take it meanwhile,
    # the broker fails and the run stops here.
    wait_port "$BROKER_PORT" 10 || die "Mosquitto did not come back on $BROKER_PORT (see $T/broker/)"
}

HTTP_PORT=$(free_port)
collector_start() {
    env -i PATH="$PATH" \
        PICKET_BROKER_URL="mqtt://127.0.0.1:$BROKER_PORT" \
        PICKET_HTTP_LISTEN="127.0.0.1:$HTTP_PORT" \
        PICKET_STORAGE_PATH="$T/collector.db" \
        RUST_LOG=info \
        "$COLLECTOR_BIN" serve >>"$T/collector.log" 2>&1 &
    started collector
}
metrics() { curl -sf -m 2 "http://127.0.0.1:$HTTP_PORT/metrics"; }
metric() { # metric NAME: one sample's value ("" when the collector does not answer)
    metrics 2>/dev/null | awk -v n="$1" '$1 == n {printf "%d\n", $2}'
}

# The fault proxy, between the agents and the broker.
python3 bench/fault_proxy.py --upstream "$BROKER_PORT" --port-file "$T/proxy.port" \
    --control "$T/proxy.ctl" --log "$T/proxy.log" >"$T/proxy.out" 2>&1 &
started proxy
for _ in $(seq 100); do [[ -s $T/proxy.port ]] && break; sleep 0.1; done
PROXY_PORT=$(<"$T/proxy.port")
proxy() { # proxy COMMAND...
    echo "$*" >"$T/proxy.ctl.tmp"
    mv "$T/proxy.ctl.tmp" "$T/proxy.ctl"
    kill -USR1 "${PIDS[proxy]}"
}

FIXTURE=$PWD/agent/tests/fixtures/pi4
agent_env() { # agent_env I: the environment of agent I, for env -i
    local a=$T/agent$1
    echo PATH="$PATH" \
        PICKET_DEVICE_ID="gauntlet-$1" \
        PICKET_BROKER_URL="mqtt://127.0.0.1:$PROXY_PORT" \
        PICKET_BROKER_KEEP_ALIVE=5s \
        PICKET_QUEUE_DIR="$a/queue" \
        PICKET_COMMANDS_STATE_DIR="$a/commands" \
        PICKET_SAMPLING_INTERVAL=1s \
        PICKET_UPLINK_BACKOFF_MAX=2s \
        PICKET_LED_BACKEND=none \
        PICKET_STATUS_SOCKET="$a/status.sock" \
        PICKET_HOST_ROOT="$a/root" \
        RUST_LOG=info
}
agent_setup() {
    local a=$T/agent$1
    mkdir -p "$a/queue" "$a/commands"
    cp -a "$FIXTURE" "$a/root"
    mount -t tmpfs -o size=8m,mode=0700 "gauntlet-queue$1" "$a/queue"
    MOUNTS+=("$a/queue")
    echo "+0" >"$a/faketime"
}
agent_start() {
    local a=$T/agent$1
    # shellcheck disable=SC2046 # agent_env's words are NAME=VALUE pairs without spaces
    env -i $(agent_env "$1") \
        LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$a/faketime" \
        FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
        "$AGENT_BIN" >>"$a/agent.log" 2>&1 &
    started "agent$1"
}
agent_status() { # agent_status I: `picket-agent status --json`
    # shellcheck disable=SC2046
    env -i $(agent_env "$1") "$AGENT_BIN" status --json 2>/dev/null
}

# --- the run --------------------------------------------------------------
DUPS_BEFORE=0 # duplicates counted by collector lifetimes already ended
note_dups() { # before the collector goes: add what its /metrics counted
    local d
    d=$(metric picket_ingest_duplicate_records_total || true)
    DUPS_BEFORE=$((DUPS_BEFORE + ${d:-0}))
}

python3 bench/gauntlet_plan.py --seed "$SEED" --faults "$FAULTS" --agents "$AGENTS" \
    --seconds "$SECONDS_TOTAL" --exclude "${GAUNTLET_EXCLUDE:-}" >"$T/plan" 2>"$T/plan.kinds"

broker_start
collector_start
# The collector's session must exist before the first record is published:
# the broker keeps nothing for a subscriber it has never seen.
for ((k = 0; k < 300; k++)); do
    [[ $(metric picket_broker_connected || true) == 1 ]] && break
    sleep 0.1
done
[[ $(metric picket_broker_connected || true) == 1 ]] || die "the collector did not connect (see $T/collector.log)"
sleep 1
for ((i = 0; i < AGENTS; i++)); do
    agent_setup "$i"
    agent_start "$i"
done
log "broker :$BROKER_PORT, proxy :$PROXY_PORT, collector http :$HTTP_PORT, scratch $T"
sleep 5

declare -A UP=([broker]=1 [collector]=1)
for ((i = 0; i < AGENTS; i++)); do UP[agent$i]=1; done
# Restart whatever died without being asked to, at most once a second
# each, as systemd would (an agent that cannot open its queue on a full
# disk exits with status 1).
declare -A RESTARTED=()
supervise() {
    local name pid rc now
    for name in "${!UP[@]}"; do
        [[ ${UP[$name]} == 1 ]] || continue
        pid=${PIDS[$name]:-}
        [[ -n $pid ]] && ours "$pid" && continue
        now=${EPOCHREALTIME%.*}
        (( now > ${RESTARTED[$name]:-0} )) || continue
        RESTARTED[$name]=$now
        rc=0
        [[ -n $pid ]] && { wait "$pid" 2>/dev/null || rc=$?; }
        UNEXPECTED+=("$(printf '%.1f' "$(elapsed)") $name exited with status $rc")
        printf '%s %s exited on its own (status %s): restarted\n' "$(elapsed)" "$name" "$rc" >>"$T/faults.log"
        case $name in
            broker) broker_start ;;
            collector) collector_start ;;
            agent*) agent_start "${name#agent}" ;;
        esac
    done
}

START=$EPOCHREALTIME
elapsed() { awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}'; }
log "fault phase: $(wc -l <"$T/plan") actions"
done_actions=0
while read -r when action arg1 arg2 <&3; do
    wait_s=$(awk -v w="$when" -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN {d = w - (b - a); print (d > 0 ? d : 0)}')
    sleep "$wait_s"
    supervise
    printf '%s %s %s %s\n' "$(elapsed)" "$action" "${arg1:-}" "${arg2:-}" >>"$T/faults.log"
    case $action in
        agent_kill) UP[agent$arg1]=0; signal_and_wait "agent$arg1" KILL ;;
        agent_new_boot) cat /proc/sys/kernel/random/uuid >"$T/agent$arg1/root/proc/sys/kernel/random/boot_id" ;;
        agent_start) agent_start "$arg1"; UP[agent$arg1]=1 ;;
        proxy_cut) proxy cut ;;
        proxy_stall) proxy stall "$arg1" ;;
        clock)
            echo "$arg2" >"$T/agent$arg1/faketime.tmp"
            mv "$T/agent$arg1/faketime.tmp" "$T/agent$arg1/faketime"
            ;;
        disk_fill) dd if=/dev/zero of="$T/agent$arg1/queue/filler" bs=1M 2>/dev/null || true ;;
        disk_free) rm -f "$T/agent$arg1/queue/filler" ;;
        broker_kill) UP[broker]=0; signal_and_wait broker KILL ;;
        broker_term) UP[broker]=0; signal_and_wait broker TERM 30 ;;
        broker_start) broker_start; UP[broker]=1 ;;
        collector_kill) UP[collector]=0; note_dups; signal_and_wait collector KILL ;;
        collector_start) collector_start; UP[collector]=1 ;;
        *) die "unknown action $action in the plan" ;;
    esac
    done_actions=$((done_actions + 1))
    if (( done_actions % 200 == 0 )); then
        log "$(elapsed)s: $done_actions actions, ${#UNEXPECTED[@]} unexpected exits"
    fi
done 3<"$T/plan" 2> >(grep --line-buffered -v ' Killed  ' >&2) # bash's notes on the processes we SIGKILLed
FAULT_SECS=$(elapsed)
supervise
log "faults over after ${FAULT_SECS}s; draining"

# --- drain ----------------------------------------------------------------
# Every fault is repaired by now (the plan ends each one); only the clocks
# keep their last offsets. Wait for every agent's queue to be empty and
# connected (the collector has what the broker holds for it after the
# agents stop).
DRAIN_START=$EPOCHREALTIME
# (An agent samples every second: a record or two younger than 3 s is the
# steady state, not a backlog.)
drained() {
    local i s
    for ((i = 0; i < AGENTS; i++)); do
        s=$(agent_status "$i") || { DRAIN_WAITS_FOR="agent$i: no status"; return 1; }
        DRAIN_WAITS_FOR="agent$i: $(python3 -c 'import json, sys
s = json.loads(sys.argv[1])
print(s["link"], s["queue_records"], "records, oldest", s["oldest_unsent_ms"], "ms old")
sys.exit(0 if s["link"] == "connected" and (s["oldest_unsent_ms"] or 0) < 3000 else 1)' "$s")" || return 1
    done
}
for ((k = 1; k <= 600; k++)); do
    supervise
    drained && break
    (( k % 20 == 0 )) && log "draining: waiting for $DRAIN_WAITS_FOR"
    sleep 0.5
done
drained || die "the agents' queues did not drain within 5 minutes (see $T)"
quiet() { # until the collector has stored nothing new for 5 s
    local last=-1 n still=0 k
    for ((k = 0; k < 1200 && still < 10; k++)); do
        supervise
        n=$(metric picket_ingest_records_total || true)
        if [[ -n $n && $n == "$last" && $(metric picket_broker_connected || true) == 1 ]]; then
            still=$((still + 1))
        else
            still=0
        fi
        last=${n:--1}
        sleep 0.5
    done
    (( still >= 10 )) || die "the collector did not settle (see $T/collector.log)"
}
DRAIN_SECS=$(awk -v a="$DRAIN_START" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')

# Clean stops: each agent sends its agent_stopping event and closes its
# queue (exact next seq in its meta file); then the collector stores
# whatever the broker still holds and goes quiet.
for ((i = 0; i < AGENTS; i++)); do UP[agent$i]=0; done
for ((i = 0; i < AGENTS; i++)); do signal_and_wait "agent$i" TERM 10; done
quiet
for ((i = 0; i < AGENTS; i++)); do
    printf '"gauntlet-%d": ' "$i"
    { curl -sf -m 5 "http://127.0.0.1:$HTTP_PORT/api/devices/gauntlet-$i" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin).get("seq")))'; } || echo null
done | { echo "{"; paste -sd, -; echo "}"; } >"$T/collector-view.json"
DUPS_LAST=$(metric picket_ingest_duplicate_records_total || true)
DUPS_METRICS=$((DUPS_BEFORE + ${DUPS_LAST:-0}))
UP[collector]=0
signal_and_wait collector TERM 30
UP[broker]=0
signal_and_wait broker TERM 30
signal_and_wait proxy TERM 5

# --- report ---------------------------------------------------------------
specs=()
for ((i = 0; i < AGENTS; i++)); do
    specs+=("gauntlet-$i:$T/agent$i/queue:$T/agent$i/agent.log")
done
printf '\ngauntlet, seed %s: %s faults over %ss (drain %ss), %d agents at 1 s, Mosquitto %s, collector %s\n\n' \
    "$SEED" "$FAULTS" "$FAULT_SECS" "$DRAIN_SECS" "$AGENTS" \
    "$(mosquitto -h 2>/dev/null | awk 'NR == 1 {print $3}')" "$("$COLLECTOR_BIN" --version | awk '{print $2}')"
printf 'faults by kind:'
awk '{printf " %s %s,", $1, $2}' "$T/plan.kinds" | sed 's/,$//'
printf '\nproxy: %s cuts, %s stalls handled; unexpected exits: %d\n' \
    "$(grep -c ' cut ' "$T/proxy.log" || true)" "$(grep -c ' stall ' "$T/proxy.log" || true)" "${#UNEXPECTED[@]}"
# Grouped ("agent2 exited with status 1: 17 times"); each one is in faults.log.
for u in "${UNEXPECTED[@]}"; do echo "${u#* }"; done | sort | uniq -c |
    awk '{n = $1; $1 = ""; printf "  %s: %d times\n", substr($0, 2), n}'
printf 'duplicates counted by the collector (/metrics, summed over its %d lifetimes): %d\n\n' \
    "$(( $(grep -c ' collector_start' "$T/faults.log" || true) + 1 ))" "$DUPS_METRICS"
rc=0
python3 bench/gauntlet_check.py --db "$T/collector.db" --collector-view "$T/collector-view.json" "${specs[@]}" || rc=$?
if (( rc != 0 )); then
    BENCH_KEEP=1
    log "FAILED: logs, schedule and database kept in $T"
fi
exit "$rc"
