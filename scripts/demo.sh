#!/usr/bin/env bash
# make demo: a synthetic cluster's 14 days of history in a real Prometheus, rightsizer on
# its embedded SQLite default, the recommendations printed, and the API left up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

root=$PWD
bin=$root/target/release/rightsizer
synth=$root/target/release/rightsizer-synth
work=${RIGHTSIZER_DEMO_DIR:-$root/target/demo}
days=${DEMO_DAYS:-14}
listen=${RIGHTSIZER_LISTEN:-127.0.0.1:8080}

rm -rf "$work" && mkdir -p "$work/data" "$work/tsdb"
echo "==> generating $days days of a synthetic cluster's history"
"$synth" --seed 42 --days "$days" --out "$work/data"
echo "==> backfilling it into Prometheus with promtool ($(du -h "$work/data/metrics.om" | cut -f1) of OpenMetrics)"
t0=$SECONDS
backfill "$work/data/metrics.om" "$work/tsdb"
# 2+ GB of text, no longer needed once in the TSDB.
rm -f "$work/data/metrics.om"
echo "    done in $((SECONDS - t0)) s"
port=$(free_port 19090)
prom_pid=$(start_prometheus "$work/tsdb" "$port" "$work/prometheus.log")
trap 'kill $prom_pid 2>/dev/null || true' EXIT
wait_http "http://127.0.0.1:$port/-/ready" 120
echo "==> Prometheus is up on http://127.0.0.1:$port"

# No configuration: the default store is ./rightsizer.db (SQLite), created on first use.
cd "$work"
export RIGHTSIZER_PROMETHEUS_URL="http://127.0.0.1:$port" RIGHTSIZER_LOG=warn
echo "==> rightsizer collect --since ${days}d"
"$bin" collect --since "${days}d"
echo "==> rightsizer analyze"
"$bin" analyze
echo "==> rightsizer recommend"
"$bin" recommend
echo
echo "==> API on http://$listen (Ctrl-C to stop). Try:"
echo "    curl -s http://$listen/api/v1/recommendations | head -c 600"
echo "    curl -s http://$listen/api/v1/recommendations/shop/Deployment/api"
RIGHTSIZER_LOG=info "$bin" serve --listen "$listen" --log-format text
