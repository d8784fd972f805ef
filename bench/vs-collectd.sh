#!/usr/bin/env bash
# Resource use of the agent next to collectd 5.12 doing the same job: read
# cpu, memory, disks, load, network and thermal once a second and publish
# every reading to the same local Mosquitto. Both run at once, so they share
# the machine's conditions.
#
# The agent measured is the one that ships: static musl, `device` profile
# (AGENT_PROFILE=release measures the release profile's build instead).
#
# Usage (from the repository root): bench/vs-collectd.sh
#   DURATION  seconds measured after a 5 s warm-up (default 60)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-60}
WARMUP=5

need python3 python3
need collectd collectd-core
need file file
AGENT_PROFILE=${AGENT_PROFILE:-device} build_agent
bench_tmp
start_mosquitto "$BENCH_TMP"
log "mosquitto on 127.0.0.1:$MQTT_PORT"

# -F '%U %l': arrival time and payload length, one line per message.
bg "$BENCH_TMP/sub-collectd.txt" mosquitto_sub -p "$MQTT_PORT" -q 1 -t 'collectd/#' -F '%U %l'
bg "$BENCH_TMP/sub-agent.txt" mosquitto_sub -p "$MQTT_PORT" -q 1 -t 'picket/v1/+/telemetry' -F '%U %l'
sleep 0.5

# The collectd counterpart of the agent's default sensors. QoS 1 like the
# agent's telemetry; collectd cannot keep readings across a broker outage, so
# its buffer-free publishing is cheaper by design.
cat >"$BENCH_TMP/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
BaseDir "$BENCH_TMP/collectd"
PIDFile "$BENCH_TMP/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel warning
  File STDERR
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
LoadPlugin load
LoadPlugin interface
LoadPlugin thermal
LoadPlugin mqtt
<Plugin interface>
  Interface "lo"
  IgnoreSelected true
</Plugin>
<Plugin mqtt>
  <Publish "bench">
    Host "127.0.0.1"
    Port "$MQTT_PORT"
    ClientId "collectd-bench"
    Prefix "collectd"
    QoS 1
  </Publish>
</Plugin>
CONF
mkdir -p "$BENCH_TMP/collectd"
bg "$BENCH_TMP/collectd.log" collectd -f -C "$BENCH_TMP/collectd.conf"
COLLECTD_PID=$BG_PID

mkdir -p "$BENCH_TMP/queue"
bg "$BENCH_TMP/agent.log" env \
    PICKET_DEVICE_ID=bench \
    PICKET_BROKER_URL="mqtt://127.0.0.1:$MQTT_PORT" \
    PICKET_QUEUE_DIR="$BENCH_TMP/queue" \
    PICKET_SAMPLING_INTERVAL=1s \
    PICKET_PAYLOAD_FORMAT=cbor \
    RUST_LOG=warn \
    "$AGENT"
AGENT_PID=$BG_PID

log "warming up for ${WARMUP}s, then measuring for ${DURATION}s"
sleep "$WARMUP"
for pid in "$AGENT_PID" "$COLLECTD_PID"; do
    kill -0 "$pid" 2>/dev/null || die "process $pid died; see $BENCH_TMP/*.log"
done

CLK_TCK=$(getconf CLK_TCK)
t0=$(date +%s.%N)
agent_cpu0=$(cpu_ticks "$AGENT_PID")
collectd_cpu0=$(cpu_ticks "$COLLECTD_PID")
: >"$BENCH_TMP/rss-agent"
: >"$BENCH_TMP/rss-collectd"
for _ in $(seq 1 "$DURATION"); do
    sleep 1
    rss_kib "$AGENT_PID" >>"$BENCH_TMP/rss-agent"
    rss_kib "$COLLECTD_PID" >>"$BENCH_TMP/rss-collectd"
done
read -r agent_anon agent_file < <(rss_split_kib "$AGENT_PID")
read -r collectd_anon collectd_file < <(rss_split_kib "$COLLECTD_PID")
agent_cpu1=$(cpu_ticks "$AGENT_PID")
collectd_cpu1=$(cpu_ticks "$COLLECTD_PID")
t1=$(date +%s.%N)
# Let messages sent inside the window reach the subscribers.
sleep 1

# Messages that arrived inside the measuring window.
count_in_window() {
    awk -v t0="$t0" -v t1="$t1" '$1 >= t0 && $1 < t1 {n++; b += $2} END {printf "%d %d\n", n, b}' "$1"
}
read -r agent_msgs agent_bytes < <(count_in_window "$BENCH_TMP/sub-agent.txt")
read -r collectd_msgs collectd_bytes < <(count_in_window "$BENCH_TMP/sub-collectd.txt")
[[ $agent_msgs -gt 0 ]] || die "the agent published nothing; see $BENCH_TMP/agent.log"
[[ $collectd_msgs -gt 0 ]] || die "collectd published nothing; see $BENCH_TMP/collectd.log"

agent_rss_med=$(median <"$BENCH_TMP/rss-agent")
agent_rss_max=$(max <"$BENCH_TMP/rss-agent")
collectd_rss_med=$(median <"$BENCH_TMP/rss-collectd")
collectd_rss_max=$(max <"$BENCH_TMP/rss-collectd")

# A "sample" is one collection round of every metric: one per second for
# both, so the agent's telemetry messages (one sample each in steady state)
# and collectd's intervals give the same denominator.
samples=$DURATION

collectd_version=$(dpkg-query -W -f '${Version}' collectd-core)
mosquitto_version=$(dpkg-query -W -f '${Version}' mosquitto)

awk -v dur="$DURATION" -v tck="$CLK_TCK" -v n="$samples" \
    -v acpu0="$agent_cpu0" -v acpu1="$agent_cpu1" -v ccpu0="$collectd_cpu0" -v ccpu1="$collectd_cpu1" \
    -v armed="$agent_rss_med" -v armax="$agent_rss_max" -v crmed="$collectd_rss_med" -v crmax="$collectd_rss_max" \
    -v amsg="$agent_msgs" -v abytes="$agent_bytes" -v cmsg="$collectd_msgs" -v cbytes="$collectd_bytes" \
    -v aanon="$agent_anon" -v afile="$agent_file" -v canon="$collectd_anon" -v cfile="$collectd_file" \
    -v cver="$collectd_version" -v mver="$mosquitto_version" '
BEGIN {
    acpu = (acpu1 - acpu0) / tck; ccpu = (ccpu1 - ccpu0) / tck
    printf "\nagent vs collectd %s, both at 1 Hz into Mosquitto %s, %d s window\n\n", cver, mver, dur
    printf "%-26s %14s %14s %12s\n", "", "picket-agent", "collectd", "agent/collectd"
    printf "%-26s %14.1f %14.1f %12.2f\n", "RSS median (MiB)", armed / 1024, crmed / 1024, armed / crmed
    printf "%-26s %14.1f %14.1f %12.2f\n", "RSS max (MiB)", armax / 1024, crmax / 1024, armax / crmax
    printf "%-26s %14.1f %14.1f %12.2f\n", "RSS anonymous, end (MiB)", aanon / 1024, canon / 1024, aanon / canon
    printf "%-26s %14.1f %14.1f %12.2f\n", "RSS file-backed, end (MiB)", afile / 1024, cfile / 1024, afile / cfile
    printf "%-26s %14.2f %14.2f %12s\n", "CPU user+sys (s)", acpu, ccpu, (ccpu > 0 ? sprintf("%.2f", acpu / ccpu) : "n/a")
    printf "%-26s %14.2f %14.2f %12s\n", "CPU per sample (ms)", 1000 * acpu / n, 1000 * ccpu / n, (ccpu > 0 ? sprintf("%.2f", acpu / ccpu) : "n/a")
    printf "%-26s %14d %14d\n", "MQTT messages received", amsg, cmsg
    printf "%-26s %14d %14d\n", "MQTT payload bytes", abytes, cbytes
    printf "\n(CPU resolution: 1/%d s. Targets: RSS <= 0.8x, CPU per sample <= 1x.)\n", tck
}'
