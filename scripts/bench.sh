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
  echo "==> generating scale $scale, $days days"
  t0=$(date +%s%N)
  "$bin" synth --seed 1 --days "$days" --scale "$scale" --end "$end" --out "$data"
  t1=$(date +%s%N)
  echo "    $(du -h "$data/metrics.om" | cut -f1) of OpenMetrics in $(( (t1 - t0) / 1000000 )) ms"
  echo "==> backfilling with promtool"
  backfill "$data/metrics.om" "$data/tsdb"
  t2=$(date +%s%N)
  echo "    promtool: $(( (t2 - t1) / 1000000 )) ms"
  rm -f "$data/metrics.om"
  echo "$end" > "$data/ready"
fi
containers=$(grep -c '"container":' "$data/truth.json" || true)
port=$(free_port 29090)
prom_pid=$(start_prometheus "$data/tsdb" "$port" "$data/prometheus.log")
trap 'kill $prom_pid 2>/dev/null || true' EXIT
wait_http "http://127.0.0.1:$port/-/ready" 300
echo "==> fleet: $containers workload containers, $days days; Prometheus on :$port"
BENCH_PROMETHEUS_URL="http://127.0.0.1:$port" BENCH_FROM=$((end - days * 86400)) BENCH_TO=$end \
BENCH_BIN=$bin BENCH_DIR="$data" cargo bench --locked --bench collect
