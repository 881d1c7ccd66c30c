#!/usr/bin/env bash
# make bench, collector part: a synthetic fleet measured at several sizes against a real
# Prometheus. The fleet is generated once, one copy of the demo cluster (15 workload
# containers) at a time, BENCH_DAYS days at 1-minute resolution, each copy backfilled into its
# own TSDB; a size of n copies is a TSDB of hard links to the blocks of copies 0..n-1.
# benches/collect.rs measures each size against its own Prometheus, then prints every figure
# at every size, the growth, a 5,000-container extrapolation and PASS/MISS per target.
#
# Env: BENCH_SIZES (copies per size, default "5 10 20"), BENCH_DAYS (14), BENCH_END (unix
# seconds, default the start of yesterday UTC), BENCH_ROUNDS (2), BENCH_DATA (cache root,
# default target/bench-data), BENCH_PORT_FROM (first port tried, 29090),
# RIGHTSIZER_TEST_POSTGRES_URL (a server where databases rs_bench_<copies> may be created),
# BENCH_HEAD_HOURS (2: the last hours sent to Prometheus' head block over remote write, as a
# live Prometheus holds them; 0 puts the whole history in blocks).
# The copies' and sizes' TSDBs are kept under BENCH_DATA/days-<days> and reused while the
# end stays the same.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

days=${BENCH_DAYS:-14}
root=$PWD
bin=${CARGO_TARGET_DIR:-$root/target}/release/rightsizer
synth=${CARGO_TARGET_DIR:-$root/target}/release/rightsizer-synth
data_root=${BENCH_DATA:-$root/target/bench-data}
# Block length of the TSDB: by default one block for the whole history (what promtool
# writes fastest); BENCH_BLOCK=18h gives the 18-hour blocks a Prometheus with the default
# 15-day retention compacts to (promtool then reads the file once per block: ~7x slower).
block=${BENCH_BLOCK:-}
head_hours=${BENCH_HEAD_HOURS:-2}
[[ $head_hours =~ ^[0-9]+$ ]] || { echo "BENCH_HEAD_HOURS must be a whole number of hours, got '$head_hours'" >&2; exit 2; }
cache=$data_root/days-$days${block:+-blocks-$block}
if [ "$head_hours" != 2 ]; then cache=$cache-head-$head_hours; fi
pg_server=${RIGHTSIZER_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}
# A fixed end keeps the generated history (and the cache) identical between runs.
end=${BENCH_END:-$(( ($(date +%s) / 86400 - 1) * 86400 ))}

read -r -a requested <<< "${BENCH_SIZES:-5 10 20}"
for n in "${requested[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_SIZES must be positive copy counts, got '$n'" >&2; exit 2; }
done
mapfile -t sizes < <(printf '%s\n' "${requested[@]}" | sort -n -u)
copies=${sizes[-1]}

# Compiled before any Prometheus runs, so that building never overlaps a measurement.
cargo bench --locked --bench collect --no-run

# The single-size layout of earlier versions: nothing reads it any more.
rm -rf "$data_root"/scale-*-days-*

stamp="$end head ${head_hours}h"
head_args=()
if [ "$head_hours" != 0 ]; then head_args=(--head-hours "$head_hours"); fi
is_current() { [ -f "$1/ready" ] && [ "$(cat "$1/ready")" = "$stamp" ]; }

# One copy per file and per TSDB: promtool holds its whole input in memory (~1 GB per GB of
# text), and a copy's blocks are then shared by every size.
backfill_copy() {
  local k=$1 dir=$cache/copy-$1
  rm -rf "$dir" && mkdir -p "$dir"
  "$synth" --seed $((k + 1)) --days "$days" --scale 1 --first-copy "$k" --end "$end" --out "$dir" \
    "${head_args[@]}" >/dev/null
  backfill "$dir/metrics.om" "$dir/tsdb" ${block:+"$block"}
  rm -f "$dir/metrics.om"
  echo "$stamp" > "$dir/ready"
}
missing=()
for ((k = 0; k < copies; k++)); do is_current "$cache/copy-$k" || missing+=("$k"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> generating and backfilling ${#missing[@]} of $copies copies of the demo cluster, $days days (two at a time)"
  t0=$(date +%s)
  for ((i = 0; i < ${#missing[@]}; i += 2)); do
    backfill_copy "${missing[i]}" &
    first=$!
    second=""
    if [ $((i + 1)) -lt ${#missing[@]} ]; then
      backfill_copy "${missing[i + 1]}" &
      second=$!
    fi
    wait "$first"
    if [ -n "$second" ]; then wait "$second"; fi
  done
  echo "    generated and backfilled in $(( $(date +%s) - t0 )) s"
fi
if [ -n "${BENCH_PREPARE_ONLY:-}" ]; then exit 0; fi

prom_pid=""
pg_db=""
pg() { PGOPTIONS="-c client_min_messages=warning" psql "$pg_server" -q "$@"; }
cleanup() {
  if [ -n "$prom_pid" ]; then stop_pid "$prom_pid"; fi
  if [ -n "$pg_db" ]; then pg -c "drop database if exists ${pg_db}_hour with (force)" -c "drop database if exists $pg_db with (force)" || true; fi
}
trap cleanup EXIT

# metric NAME URL: the value of an unlabelled metric on URL/metrics.
metric() { curl -fsS "$2/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

results=$cache/results.jsonl
: > "$results"
for n in "${sizes[@]}"; do
  dir=$cache/size-$n
  truths=()
  for ((k = 0; k < n; k++)); do truths+=("$cache/copy-$k/truth.json"); done
  containers=$(cat "${truths[@]}" | grep -c '"cpu_p95_cores"' || true)
  namespaces=$(cat "${truths[@]}" | grep -o '"namespace": *"[^"]*"' | sort -u | wc -l)
  assembled=""
  if ! is_current "$dir"; then
    rm -rf "$dir" && mkdir -p "$dir/tsdb"
    for ((k = 0; k < n; k++)); do
      for block in "$cache/copy-$k/tsdb"/*/; do
        if [ -f "$block/meta.json" ]; then cp -al "${block%/}" "$dir/tsdb/"; fi
      done
    done
    assembled=1
  fi
  port=$(free_port "${BENCH_PORT_FROM:-29090}")
  prom_pid=$(start_prometheus "$dir/tsdb" "$port" "$dir/prometheus.log" --web.enable-remote-write-receiver)
  url=http://127.0.0.1:$port
  wait_http "$url/-/ready" 300
  echo
  label="$n copies"; [ "$n" != 1 ] || label="1 copy"
  echo "==> size $n: $containers workload containers ($label), $days days; Prometheus on :$port"

  # The copies' blocks overlap in time. Prometheus must answer for all of them at once: every
  # generated namespace has usage series. It also merges overlapping blocks on disk (vertical
  # compaction) about a minute after start, which would run during the measurements: wait
  # for that once; the merged TSDB is what later runs reuse.
  served=$(curl -fsS -G "$url/api/v1/label/namespace/values" --data-urlencode "start=$((end - days * 86400))" \
    --data-urlencode "end=$end" --data-urlencode 'match[]=container_memory_working_set_bytes{container!="",container!="POD"}' \
    | sed -n 's/.*"data":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c . || true)
  echo "    namespaces with container usage in Prometheus: $served (generated: $namespaces)"
  if [ "$served" != "$namespaces" ]; then echo "Prometheus does not serve every copy of $dir/tsdb" >&2; exit 1; fi
  if [ -n "$assembled" ]; then
    ranges=$(cat "$dir"/tsdb/*/meta.json | grep -o '"minTime": *[0-9]*' | sort -u | wc -l)
    blocks=$(metric prometheus_tsdb_blocks_loaded "$url")
    t0=$(date +%s)
    until [ "$(metric prometheus_tsdb_blocks_loaded "$url")" = "$ranges" ]; do
      if [ $(( $(date +%s) - t0 )) -gt 3600 ]; then echo "Prometheus did not compact $dir/tsdb within an hour" >&2; exit 1; fi
      sleep 2
    done
    if [ "$blocks" != "$ranges" ]; then
      echo "    Prometheus merged $blocks blocks into $ranges in $(( $(date +%s) - t0 )) s (once per size and end)"
    fi
    # The newest hours into the head, once: its write-ahead log keeps them for later runs.
    if [ "$head_hours" != 0 ]; then
      heads=()
      for ((k = 0; k < n; k++)); do heads+=("$cache/copy-$k/head.txt"); done
      BENCH_HEAD_FILES="${heads[*]}" BENCH_PROMETHEUS_URL=$url BENCH_HEAD_FROM=$((end - head_hours * 3600)) \
      BENCH_TO=$end cargo bench --quiet --locked --bench collect
    fi
    echo "$stamp" > "$dir/ready"
  fi

  pg_db=rs_bench_$n
  pg -c "drop database if exists $pg_db with (force)" -c "create database $pg_db"
  BENCH_PROMETHEUS_URL=$url BENCH_PROMETHEUS_PID=$prom_pid BENCH_FROM=$((end - days * 86400)) BENCH_TO=$end \
  BENCH_BIN=$bin BENCH_DIR=$dir BENCH_COPIES=$n BENCH_CONTAINERS=$containers \
  BENCH_POSTGRES_URL=${pg_server%/*}/$pg_db BENCH_RESULTS=$results \
    cargo bench --quiet --locked --bench collect
  pg -c "drop database if exists $pg_db with (force)"
  pg_db=""
  stop_pid "$prom_pid"
  prom_pid=""
done

echo
BENCH_SUMMARY=$results cargo bench --quiet --locked --bench collect
