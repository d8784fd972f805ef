#!/usr/bin/env bash
# The collector's history at fleet scale: a 24 h query of one metric of one
# device must stay under 50 ms at 1,000 devices sampling every 10 s. Builds
# a database with collector/examples/history_bench.rs at 100 and at 1,000
# devices (the queried devices complete: 20 metrics for 24 h; the others
# with fewer metrics, see the example) and prints ingest throughput, query
# latency (warm and cold page cache), commit cost by durability, pruning and
# size on disk.
#
# Usage (from the repository root): bench/history-query.sh
#   FLEETS         fleet sizes to compare (default "100 1000")
#   OTHER_METRICS  metrics per sample of the devices not queried (default 1;
#                  4 gives a database closer to a real fleet's but takes
#                  about 20 minutes on a 2-vCPU machine)
#   QUERIES        queries per kind (default 100)
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh

FLEETS=${FLEETS:-100 1000}
OTHER_METRICS=${OTHER_METRICS:-1}
QUERIES=${QUERIES:-100}

need cc build-essential
log "building the history benchmark (release)"
cargo build --release -q -p picket-collector --example history_bench
bench_tmp target

declare -A r
for fleet in $FLEETS; do
    log "fleet of $fleet devices: filling 24 h, then measuring"
    mkdir -p "$BENCH_TMP/$fleet"
    target/release/examples/history_bench --dir "$BENCH_TMP/$fleet" --devices "$fleet" \
        --other-metrics "$OTHER_METRICS" --queries "$QUERIES" >"$BENCH_TMP/$fleet.out"
    while IFS='=' read -r key value; do
        r[$fleet.$key]=$value
    done <"$BENCH_TMP/$fleet.out"
    rm -rf "${BENCH_TMP:?}/$fleet"
done

row() {
    local label=$1 key=$2 fleet
    printf '%-44s' "$label"
    for fleet in $FLEETS; do
        printf ' %14s' "${r[$fleet.$key]}"
    done
    printf '\n'
}

first=${FLEETS%% *}
printf '\nhistory (SQLite %s, WAL), 24 h every 10 s, %s metrics per other device\n\n' \
    "${r[$first.sqlite]}" "$OTHER_METRICS"
printf '%-44s' "devices"
for fleet in $FLEETS; do printf ' %14s' "$fleet"; done
printf '\n'
row "samples stored" samples
row "points stored" points
row "database size (bytes)" db_bytes
row "bytes per point" bytes_per_point
row "open (integrity check), cold cache, ms" open_cold_ms
row "open (integrity check), warm cache, ms" open_warm_ms
row "fill, points/s" fill_points_per_sec
row "ingest (20 points/sample), samples/s" ingest_samples_per_sec
row "ingest, points/s" ingest_points_per_sec
row "commit of 500 samples, p50 ms" ingest_commit_ms_p50
row "commit of 500 samples, p99 ms" ingest_commit_ms_p99
row "24 h raw query, points returned" query_raw_points
row "24 h raw, warm, p50 ms" query_raw_warm_ms_p50
row "24 h raw, warm, p99 ms" query_raw_warm_ms_p99
row "24 h raw, cold, p50 ms" query_raw_cold_ms_p50
row "24 h raw, cold, p99 ms" query_raw_cold_ms_p99
row "24 h step=5m, buckets returned" query_step5m_points
row "24 h step=5m, warm, p50 ms" query_step5m_warm_ms_p50
row "24 h step=5m, warm, p99 ms" query_step5m_warm_ms_p99
row "24 h step=5m, cold, p50 ms" query_step5m_cold_ms_p50
row "24 h step=5m, cold, p99 ms" query_step5m_cold_ms_p99
row "metrics_of (one device), ms" metrics_of_ms
row "prune 1 h, rows" prune_rows
row "prune, rows/s" prune_rows_per_sec
row "prune, longest call (5,000 rows), ms" prune_call_ms_max
row "commit 100x20 points, FULL, p50 ms" commit_full_ms_p50
row "commit 100x20 points, FULL, p99 ms" commit_full_ms_p99
row "commit 100x20 points, NORMAL, p50 ms" commit_normal_ms_p50
row "commit 100x20 points, NORMAL, p99 ms" commit_normal_ms_p99
printf '\n(Target: 24 h query of one metric of one device < 50 ms at 1,000 devices.)\n'
