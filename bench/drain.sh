#!/usr/bin/env bash
# Time to drain a 100,000-sample backlog (a day and a few hours offline at
# one sample a second) into a local Mosquitto: from the agent's start, queue
# recovery scan included, until the broker acknowledged the last backlog
# record. A subscriber checks that every sample arrived.
#
# Usage (from the repository root): bench/drain.sh
#   SAMPLES    backlog size (default 100000)
#   MAX_BYTES  queue.max_bytes for the run (default 256MiB; the default
#              64MiB cap would drop the oldest part of this backlog)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

SAMPLES=${SAMPLES:-100000}
MAX_BYTES=${MAX_BYTES:-256MiB}

need python3 python3
need cc build-essential
log "building the drain benchmark (release)"
cargo build --release -q -p picket-agent --example drain
bench_tmp target
start_mosquitto "$BENCH_TMP"
log "mosquitto on 127.0.0.1:$MQTT_PORT; filling $SAMPLES samples, then draining"

RUST_LOG=warn target/release/examples/drain --port "$MQTT_PORT" --dir "$BENCH_TMP/queue" \
    --samples "$SAMPLES" --max-bytes "$MAX_BYTES" >"$BENCH_TMP/drain.out"

declare -A r
while IFS='=' read -r key value; do
    r[$key]=$value
done <"$BENCH_TMP/drain.out"

[[ ${r[received_distinct]} -eq $SAMPLES ]] ||
    die "the subscriber saw ${r[received_distinct]} of $SAMPLES samples"

printf '\ndrain of a %d-sample backlog into Mosquitto %s\n\n' "$SAMPLES" "$(dpkg-query -W -f '${Version}' mosquitto)"
printf '%-40s %s\n' \
    "stored sample (CBOR)" "${r[sample_cbor_bytes]} bytes" \
    "backlog on disk" "$(awk -v b="${r[queue_disk_bytes]}" 'BEGIN {printf "%.1f MiB", b / 1048576}')" \
    "batch_records / batch_bytes / inflight" "${r[batch_records]} / ${r[batch_bytes]} / ${r[inflight]}" \
    "connected after" "${r[connected_secs]:-?} s" \
    "backlog acknowledged after" "${r[drain_secs]} s" \
    "throughput" "${r[samples_per_sec]} samples/s" \
    "all samples at the subscriber after" "${r[received_secs]} s" \
    "samples received (distinct / dup.)" "${r[received_distinct]} / ${r[received_duplicates]}" \
    "telemetry messages" "${r[received_messages]}"
printf '\n(Target: <= 5 s.)\n'
