#!/usr/bin/env bash
# The API under load: BENCH_CONTAINERS (default 10,000) workload containers in Postgres,
# `rightsizer serve` on loopback, wrk with 64 connections for 20 s per endpoint (bounded,
# loopback only). Prints requests/s, latency percentiles and the server's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v wrk >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }

n=${BENCH_CONTAINERS:-10000}
server=${RIGHTSIZER_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}
db=rs_bench_api
psql "$server" -qc "drop database if exists $db with (force)" -c "create database $db"
url="${server%/*}/$db"
BENCH_DATABASE_URL=$url BENCH_CONTAINERS=$n cargo bench --locked --bench api_seed

port=$(free_port 28080)
RIGHTSIZER_LOG=warn target/release/rightsizer --database-url "$url" serve --listen "127.0.0.1:$port" --collect-interval 0 &
pid=$!
trap 'kill $pid 2>/dev/null || true; psql "$server" -qc "drop database if exists $db with (force)" || true' EXIT
wait_http "http://127.0.0.1:$port/healthz" 30
curl -fsS -o /dev/null "http://127.0.0.1:$port/api/v1/recommendations?limit=100"

for path in "/api/v1/recommendations?limit=100" "/api/v1/workloads/cluster-1/team-042/Deployment/svc-2100" "/api/v1/recommendations?namespace=team-0*&sort=name&limit=100"; do
  echo "==> wrk -t2 -c64 -d20s --latency http://127.0.0.1:$port$path"
  wrk -t2 -c64 -d20s --latency "http://127.0.0.1:$port$path" | grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors"
done
echo "==> server peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
