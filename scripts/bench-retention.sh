#!/usr/bin/env bash
# Retention: BENCH_DAYS (120) days of BENCH_CONTAINERS (300) workload containers written
# into a fresh SQLite file and a fresh Postgres database, pruned to BENCH_RETENTION_DAYS
# (90), then BENCH_MORE_DAYS (30) more days with a prune after each. Prints the store size
# before and after and the prune times (benches/retention.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

server=${RIGHTSIZER_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}
db=rs_bench_retention
dir=target/bench-retention
rm -rf "$dir" && mkdir -p "$dir"
psql "$server" -qc "drop database if exists $db with (force)" -c "create database $db"
trap 'psql "$server" -qc "drop database if exists $db with (force)" || true' EXIT

echo "==> retention on SQLite"
BENCH_DATABASE_URL="sqlite://$dir/rightsizer.db" cargo bench --locked --bench retention
echo "    file on disk: $(du -m "$dir/rightsizer.db" | cut -f1) MB"
echo "==> retention on Postgres"
BENCH_DATABASE_URL="${server%/*}/$db" cargo bench --locked --bench retention
