#!/usr/bin/env bash
# The collector's ingest at fleet scale, against one Mosquitto, in one run.
#
# 1. Ceiling. Two persistent QoS 1 sessions on the collector's topic filters
#    are created and left disconnected: the collector's own and a plain
#    subscriber's (`mosquitto_sub -c`, which acknowledges each message as it
#    arrives and does nothing else). The simulator then publishes a backlog
#    (BACKLOG_DEVICES devices every second for BACKLOG_SECONDS), which the
#    broker queues for both sessions. Each subscriber in turn drains its
#    queue alone: the plain subscriber's rate is what this broker can deliver
#    here, the collector's is what it ingests with rules, dedupe and SQLite
#    history (each message acknowledged only once committed, synchronous =
#    full). The plain subscriber's time runs from its first message to its
#    last, the collector's from its connection being acknowledged to its
#    last commit (both times from its /metrics, to the millisecond).
# 2. Live fleet. LIVE_DEVICES simulated devices (one MQTT connection each)
#    publish every LIVE_INTERVAL for LIVE_SECONDS into the same broker while
#    the collector runs; every 10 s the script records what the simulator
#    had acknowledged by the broker, what the collector had received, the
#    difference (the backlog: it must not grow), the collector's
#    picket_ingest_lag_seconds, and RSS of the collector and the broker.
#
# Usage (from the repository root): bench/ingest.sh
#   BACKLOG_DEVICES  (default 1000)   BACKLOG_SECONDS (default 60)
#   LIVE_DEVICES     (default 10000)  LIVE_INTERVAL   (default 10s)
#   LIVE_SECONDS     (default 300; 0 skips part 2)
#   BROKER_INFLIGHT  (default 10000: Mosquitto's max_inflight_messages, the
#                    window of messages waiting for the collector's commit,
#                    as docs/collector.md recommends)
#   THREAD_IDS=1     the collector's CPU per thread rather than per name
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

BACKLOG_DEVICES=${BACKLOG_DEVICES:-1000}
BACKLOG_SECONDS=${BACKLOG_SECONDS:-60}
LIVE_DEVICES=${LIVE_DEVICES:-10000}
LIVE_INTERVAL=${LIVE_INTERVAL:-10s}
LIVE_SECONDS=${LIVE_SECONDS:-300}
BROKER_INFLIGHT=${BROKER_INFLIGHT:-10000}

need cc build-essential
need curl curl
need mosquitto_sub mosquitto-clients
log "building the release collector"
cargo build --release -q -p picket-collector
BIN=$PWD/target/release/picket-collector
bench_tmp target

# Ten thousand devices are ten thousand sockets in the simulator and as many
# in the broker (the limit is per process).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= LIVE_DEVICES + 1000 )) ||
    die "open files limit $(ulimit -n) is too low for $LIVE_DEVICES devices"

# Acknowledgements wait for the SQLite commit, so the broker must let more
# than its default 20 messages be in flight towards the collector; the
# queued backlog of part 1 must not be capped at the default 1,000.
start_mosquitto "$BENCH_TMP" \
    "max_inflight_messages $BROKER_INFLIGHT" \
    "max_queued_messages 0" \
    "max_connections -1"
URL=mqtt://127.0.0.1:$MQTT_PORT
FILTERS=(-t 'picket/v1/+/+' -t 'picket/v1/+/reply/+')

HTTP_PORT=$(free_port)
export PICKET_BROKER_URL=$URL
export PICKET_HTTP_LISTEN=127.0.0.1:$HTTP_PORT
export PICKET_STORAGE_PATH=$BENCH_TMP/collector.db
export RUST_LOG=warn

metric() { # metric NAME: the sum of a family's samples in /metrics
    curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d\n", s}'
}
gauge() { # gauge NAME: one sample's value, as printed
    curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
start_collector() {
    bg "$BENCH_TMP/collector.$1.log" "$BIN" serve
    COLLECTOR_PID=$BG_PID
    local i
    for i in $(seq 1 300); do
        [[ $(gauge picket_broker_connected 2>/dev/null) == 1 ]] && return 0
        sleep 0.1
    done
    die "the collector did not connect (see $BENCH_TMP/collector.$1.log)"
}
now_s() { date +%s.%N; }
CLK_TCK=$(getconf CLK_TCK)
seconds() { awk -v c="$1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", c / t}'; }

# --- 1. ceiling ---------------------------------------------------------
log "creating both persistent sessions"
start_collector sessions
stop "$COLLECTOR_PID"
mosquitto_sub -p "$MQTT_PORT" -c -i bench-plain -q 1 "${FILTERS[@]}" -W 1 >/dev/null 2>&1 || true

log "queueing a backlog: $BACKLOG_DEVICES devices every 1s for ${BACKLOG_SECONDS}s"
bg "$BENCH_TMP/sim.backlog.log" "$BIN" simulate --broker "$URL" \
    --devices "$BACKLOG_DEVICES" --interval 1s --id-prefix backlog
SIM_PID=$BG_PID
sleep "$BACKLOG_SECONDS"
stop "$SIM_PID"
sleep 2

log "draining the plain subscriber's queue"
bg "$BENCH_TMP/plain.out" mosquitto_sub -p "$MQTT_PORT" -c -i bench-plain -q 1 "${FILTERS[@]}" -F '%U'
PLAIN_PID=$BG_PID
cpu0=$(cpu_ticks "$MOSQUITTO_PID")
last=-1
while :; do
    sleep 3
    n=$(wc -l <"$BENCH_TMP/plain.out")
    (( n > 0 && n == last )) && break
    last=$n
done
plain_cpu=$(seconds "$(cpu_ticks "$PLAIN_PID")")
broker_cpu_plain=$(seconds $(( $(cpu_ticks "$MOSQUITTO_PID") - cpu0 )))
stop "$PLAIN_PID"
# Drop the plain subscriber's session (a clean connection with its id), or
# the broker would queue part 2's messages for it.
mosquitto_sub -p "$MQTT_PORT" -i bench-plain -t 'picket/none' -W 1 >/dev/null 2>&1 || true
read -r plain_n plain_secs < <(awk 'NR == 1 {f = $1} {l = $1} END {printf "%d %.3f\n", NR, l - f}' "$BENCH_TMP/plain.out")

log "draining the collector's queue"
cpu0=$(cpu_ticks "$MOSQUITTO_PID")
# From the moment its connection is acknowledged to the last commit that
# stored messages, as the collector itself timestamps them; the polls
# (every 0.1 s) only tell when the drain is over.
bg "$BENCH_TMP/collector.drain.log" "$BIN" serve
COLLECTOR_PID=$BG_PID
first_t="" last_t="" last_n=0 last_r=0 last_c=0 rss_max=0 still=0
while (( still < 30 )); do
    m=$(curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" || true)
    sleep 0.1
    [[ -n $m ]] || continue
    if [[ -z $first_t ]]; then
        first_t=$(awk '$1 == "picket_broker_connected_since_timestamp_seconds" {print $2}' <<<"$m")
        [[ -n $first_t ]] || continue
    fi
    read -r n r c ct < <(awk '$1 ~ /^picket_ingest_messages_total/ {n += $2}
        $1 == "picket_ingest_records_total" {r = $2}
        $1 == "picket_store_commits_total" {c = $2}
        $1 == "picket_store_last_commit_timestamp_seconds" {t = $2}
        END {printf "%d %d %d %s\n", n, r, c, t}' <<<"$m")
    rss=$(rss_kib "$COLLECTOR_PID")
    (( rss > rss_max )) && rss_max=$rss
    # The drain ends with the commit of its last messages, which follows
    # them within milliseconds; a commit long after (the engine's state
    # checkpoint, seconds later) stores no message and is not counted.
    if (( n > last_n )); then
        last_n=$n last_r=$r still=0
    else
        still=$((still + 1))
    fi
    if (( c > last_c && still < 5 )); then
        last_t=$ct last_c=$c
    fi
done
collector_cpu=$(seconds "$(cpu_ticks "$COLLECTOR_PID")")
threads=$(thread_cpu "$COLLECTOR_PID" | awk '$2 > 0 {printf "%s%s %s s", sep, $1, $2; sep = ", "}')
broker_cpu_collector=$(seconds $(( $(cpu_ticks "$MOSQUITTO_PID") - cpu0 )))
commits=$last_c
stop "$COLLECTOR_PID"
coll_secs=$(awk -v a="$first_t" -v b="$last_t" 'BEGIN {printf "%.3f", b - a}')

# --- 2. live fleet ------------------------------------------------------
# (LIVE_SECONDS=0 skips it: the ceiling alone.)
if (( LIVE_SECONDS > 0 )); then
    log "live: $LIVE_DEVICES devices every $LIVE_INTERVAL for ${LIVE_SECONDS}s"
    start_collector live
    sleep 3 # the retained births of part 1 arrive on subscribing
    base_n=$(metric picket_ingest_messages_total)
    live_cpu0=$(cpu_ticks "$COLLECTOR_PID")
    bg "$BENCH_TMP/sim.live.log" "$BIN" simulate --broker "$URL" \
        --devices "$LIVE_DEVICES" --interval "$LIVE_INTERVAL" --id-prefix live
    SIM_PID=$BG_PID
    live_rows=()
    prev=0
    for ((elapsed = 10; elapsed <= LIVE_SECONDS; elapsed += 10)); do
        sleep 10
        got=$(( $(metric picket_ingest_messages_total) - base_n ))
        live_rows+=("$(printf '%8d %12d %10d %9s %13d %10d' "$elapsed" "$got" $(((got - prev) / 10)) \
            "$(gauge picket_ingest_lag_seconds)" \
            $(( $(rss_kib "$COLLECTOR_PID") / 1024 )) $(( $(rss_kib "$MOSQUITTO_PID") / 1024 )))")
        prev=$got
    done
    live_cpu=$(( $(cpu_ticks "$COLLECTOR_PID") - live_cpu0 ))
    live_online=$(gauge 'picket_devices{status="online"}' || true)
    stop "$SIM_PID"
    stopped=$(now_s)
    # The simulator's last line holds its final counters: "... acked N ...".
    sim_acked=$(awk '/ acked / {for (i = 1; i < NF; i++) if ($i == "acked") a = $(i + 1)} END {print a + 0}' "$BENCH_TMP/sim.live.log")
    # Whatever the collector had not yet received when the simulator stopped
    # arrives now; how long that takes is the lag at the end of the run.
    caught=$stopped
    last=-1
    while :; do
        got=$(( $(metric picket_ingest_messages_total) - base_n ))
        (( got == last )) && break
        (( got > last )) && caught=$(now_s)
        last=$got
        sleep 1
    done
    catch_up=$(awk -v a="$stopped" -v b="$caught" 'BEGIN {printf "%.1f", b - a}')
    stop "$COLLECTOR_PID"
fi

# --- report -------------------------------------------------------------
rate() { awk -v n="$1" -v s="$2" 'BEGIN {if (s > 0) printf "%.0f", n / s; else print "n/a"}'; }
plain_rate=$(rate $((plain_n - 1)) "$plain_secs")
coll_msgs=$(rate "$last_n" "$coll_secs")
coll_recs=$(rate "$last_r" "$coll_secs")

printf '\ningest, Mosquitto %s, collector %s, SQLite synchronous=full\n\n' \
    "$(mosquitto -h 2>/dev/null | awk 'NR == 1 {print $3}')" "$("$BIN" --version | awk '{print $2}')"
printf '1. backlog of %d devices x %d s, drained by each subscriber alone\n\n' "$BACKLOG_DEVICES" "$BACKLOG_SECONDS"
printf '%-34s %14s %14s\n' "" "plain sub" "collector"
printf '%-34s %14d %14d\n' "messages received" "$plain_n" "$last_n"
printf '%-34s %14s %14s\n' "drain time (s)" "$plain_secs" "$coll_secs"
printf '%-34s %14s %14s\n' "messages/s" "$plain_rate" "$coll_msgs"
printf '%-34s %14s %14s\n' "samples+events stored/s" "-" "$coll_recs"
printf '%-34s %14s %14s\n' "subscriber CPU (s)" "$plain_cpu" "$collector_cpu"
printf '%-34s %14s %14s\n' "broker CPU during the drain (s)" "$broker_cpu_plain" "$broker_cpu_collector"
printf '%-34s %14s %14d\n' "SQLite commits" "-" "$commits"
printf '%-34s %s\n' "collector CPU by thread" "$threads"
printf '%-34s %14s %14d\n' "collector RSS max (MiB)" "-" $((rss_max / 1024))
printf '%-34s %14s\n' "collector / plain subscriber" \
    "$(awk -v a="$coll_msgs" -v b="$plain_rate" 'BEGIN {printf "%.2fx", a / b}')"
if (( LIVE_SECONDS > 0 )); then
    printf '\n2. %d devices every %s, one connection each\n\n' "$LIVE_DEVICES" "$LIVE_INTERVAL"
    printf '%8s %12s %10s %9s %13s %10s\n' "time (s)" "received" "msg/s" "lag (s)" "collector MiB" "broker MiB"
    printf '%s\n' "${live_rows[@]}"
    printf '\nsimulator: %d messages acknowledged by the broker; collector: %d received, the last of them %s s after the simulator stopped\n' \
        "$sim_acked" "$got" "$catch_up"
    printf 'collector CPU over the live run: %.1f s (%.0f%% of one core); devices online at the end: %s\n' \
        "$(awk -v c="$live_cpu" -v t="$CLK_TCK" 'BEGIN {print c / t}')" \
        "$(awk -v c="$live_cpu" -v t="$CLK_TCK" -v s="$LIVE_SECONDS" 'BEGIN {print 100 * c / t / s}')" "${live_online:-?}"
fi
