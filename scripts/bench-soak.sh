#!/usr/bin/env bash
# Soak: `rightsizer serve` on Postgres for SOAK_MINUTES (default 10) with its schedule at 30 s
# (collect + analyze), a report every minute, and wrk on a list and a detail endpoint the whole
# time. Prints the server's RSS, open file descriptors and Postgres connections each minute,
# start against end, and the 5xx answers it counted (its own /metrics). Loopback only.
# RIGHTSIZER_BIN runs another build of the binary (the release one by default).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v wrk >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }

minutes=${SOAK_MINUTES:-10}
bin=${RIGHTSIZER_BIN:-$PWD/target/release/rightsizer}
synth=$PWD/target/release/rightsizer-synth
work=$PWD/target/bench-soak
rm -rf "$work" && mkdir -p "$work/data" "$work/tsdb"

# Three days of the demo cluster ending at the current hour: each tick has hours to check,
# a window to analyze and recommendations to replace.
"$synth" --seed 42 --days 3 --out "$work/data" >/dev/null
backfill "$work/data/metrics.om" "$work/tsdb"
rm -f "$work/data/metrics.om"
prom_port=$(free_port 29090)
prom_pid=$(start_prometheus "$work/tsdb" "$prom_port" "$work/prometheus.log")

server=${RIGHTSIZER_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}
db=rs_bench_soak
psql "$server" -qc "drop database if exists $db with (force)" -c "create database $db"
url="${server%/*}/$db"
printf '[policy]\nwindow = "3d"\n[reports]\nschedule = "1m"\n' >"$work/rightsizer.toml"

port=$(free_port 28180)
base="http://127.0.0.1:$port"
wait_http "http://127.0.0.1:$prom_port/-/ready" 120
RIGHTSIZER_CONFIG="$work/rightsizer.toml" RIGHTSIZER_LOG=warn RIGHTSIZER_PROMETHEUS_URL="http://127.0.0.1:$prom_port" \
  "$bin" --database-url "$url" serve --listen "127.0.0.1:$port" --collect-interval 30s 2>"$work/serve.log" &
pid=$!
wrk_pids=()
cleanup() {
  for p in "${wrk_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_pid "$pid"
  kill "$prom_pid" 2>/dev/null || true
  psql "$server" -qc "drop database if exists $db with (force)" || true
}
trap cleanup EXIT
wait_http "$base/healthz" 30

# The first tick collects the three days and analyzes them; the load starts on its result.
deadline=$((SECONDS + 600))
until [ "$(curl -fsS "$base/api/v1/recommendations?limit=1" | grep -c '"namespace"')" -gt 0 ]; do
  [ $SECONDS -lt $deadline ] || { echo "no recommendations after 10 minutes" >&2; exit 1; }
  sleep 2
done

sample() { # minute: RSS MB, open fds, Postgres connections to the soak database
  local rss fds conns
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  conns=$(psql "$server" -tAc "select count(*) from pg_stat_activity where datname = '$db'")
  printf '%6s %10s %8s %10s\n' "$1" "$rss" "$fds" "$conns"
  echo "$rss $fds $conns" >"$work/sample-$1"
}

detail=/api/v1/workloads/default/shop/Deployment/cart
echo "==> soak: $minutes min of wrk -c8 on /api/v1/recommendations and $detail, schedule 30 s, reports 1 min"
for path in "/api/v1/recommendations?limit=100" "$detail"; do
  wrk -t1 -c8 -d"${minutes}m" --timeout 10s "$base$path" >"$work/wrk-$(basename "${path%%\?*}").txt" 2>&1 &
  wrk_pids+=($!)
done
printf '%6s %10s %8s %10s\n' minute "RSS MB" "open fds" "PG conns"
sleep 20
sample 0
for ((m = 1; m < minutes; m++)); do sleep 60; sample "$m"; done
sleep 30
sample "$minutes"
wait "${wrk_pids[@]}"
wrk_pids=()

read -r rss0 fds0 conns0 <"$work/sample-0"
read -r rss1 fds1 conns1 <"$work/sample-$minutes"
metrics=$(curl -fsS "$base/metrics")
errors=$(echo "$metrics" | awk '/^rightsizer_http_requests_total\{.*status="5[0-9][0-9]"/ {n += $NF} END {print n + 0}')
served=$(echo "$metrics" | awk '/^rightsizer_http_requests_total\{/ {n += $NF} END {print n + 0}')
jobs=$(echo "$metrics" | grep '^rightsizer_scheduled_jobs_total' || true)
echo "==> requests served: $served, 5xx: $errors"
echo "==> RSS ${rss0} MB -> ${rss1} MB ($(awk -v a="$rss0" -v b="$rss1" 'BEGIN {printf "%+.1f%%", (b - a) * 100 / a}')), peak $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$pid/status")"
echo "==> open fds $fds0 -> $fds1, Postgres connections $conns0 -> $conns1"
echo "==> scheduled jobs:"; echo "$jobs" | sed 's/^/    /'
for f in "$work"/wrk-*.txt; do
  echo "==> $(basename "$f" .txt):"; grep -E "Requests/sec|Latency|Non-2xx|Socket errors" "$f" | sed 's/^/    /'
done
[ "$errors" -eq 0 ] || { echo "5xx answers during the soak: see $work/serve.log" >&2; exit 1; }
