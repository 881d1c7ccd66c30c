#!/usr/bin/env bash
# make bench: a synthetic fleet (BENCH_SCALE copies of the demo cluster, BENCH_DAYS days at
# 1-minute resolution) backfilled into a real Prometheus, then benches/collect.rs measures
# the collector against the time Prometheus alone needs for the same queries.
# The backfilled TSDB is kept in target/bench-data and reused while the parameters match.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scale=${BENCH_SCALE:-10}
days=${BENCH_DAYS:-14}
root=$PWD
bin=$root/target/release/rightsizer
data=$root/target/bench-data/scale-$scale-days-$days
# A fixed end keeps the generated history (and the cache) identical between runs.
end=${BENCH_END:-$(( ($(date +%s) / 86400 - 1) * 86400 ))}

if [ ! -f "$data/ready" ] || [ "$(cat "$data/ready")" != "$end" ]; then
  rm -rf "$data" && mkdir -p "$data/tsdb"
  echo "==> generating and backfilling $scale copies of the demo cluster, $days days (two at a time)"
  # One copy per file: promtool holds its whole input in memory (~1 GB per GB of text).
  t0=$(date +%s)
  backfill_copy() {
    local k=$1 dir="$data/copy-$1"
    "$bin" synth --seed $((k + 1)) --days "$days" --scale 1 --first-copy "$k" --end "$end" --out "$dir" >/dev/null
    backfill "$dir/metrics.om" "$data/tsdb"
    rm -f "$dir/metrics.om"
  }
  for ((k = 0; k < scale; k += 2)); do
    backfill_copy "$k" &
    if [ $((k + 1)) -lt "$scale" ]; then backfill_copy $((k + 1)) & fi
    wait
  done
  echo "    generated and backfilled in $(( $(date +%s) - t0 )) s"
  echo "$end" > "$data/ready"
fi
containers=$(cat "$data"/copy-*/truth.json | grep -c '"cpu_p95_cores"' || true)
port=$(free_port 29090)
prom_pid=$(start_prometheus "$data/tsdb" "$port" "$data/prometheus.log")
trap 'kill $prom_pid 2>/dev/null || true' EXIT
wait_http "http://127.0.0.1:$port/-/ready" 300
echo "==> fleet: $containers workload containers, $days days; Prometheus on :$port"
BENCH_PROMETHEUS_URL="http://127.0.0.1:$port" BENCH_FROM=$((end - days * 86400)) BENCH_TO=$end \
BENCH_BIN=$bin BENCH_DIR="$data" cargo bench --locked --bench collect
