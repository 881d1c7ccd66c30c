# shellcheck shell=bash
# Shared shell helpers for the demo, test and bench scripts.

# free_port START: the first port from START up that nothing listens on (loopback).
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# wait_http URL SECONDS: wait until URL answers 200.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $url" >&2; return 1; fi
    sleep 0.2
  done
}

# backfill OPENMETRICS_FILE TSDB_DIR: promtool into a TSDB directory. promtool reads the whole
# file once per block window, and rounds --max-block-duration down to 2h x 3^n with windows
# aligned to multiples of it since the epoch; the largest (39366h) keeps any history in one
# or two windows, so two or three passes instead of one per 2 hours. A third argument sets
# another block length (make bench: the blocks a Prometheus of a given retention keeps).
backfill() {
  local file=$1 dir=$2 block=${3:-39366h}
  promtool tsdb create-blocks-from openmetrics --quiet --max-block-duration="$block" "$file" "$dir" >/dev/null
}

# start_prometheus TSDB_DIR PORT LOG [FLAG...]: a Prometheus with no scrape targets serving the
# TSDB, with any further flags.
start_prometheus() {
  local dir=$1 port=$2 log=$3
  shift 3
  printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' > "$dir/../prometheus.yml"
  prometheus --config.file="$dir/../prometheus.yml" --storage.tsdb.path="$dir" \
    --storage.tsdb.retention.time=400d --web.listen-address="127.0.0.1:$port" \
    --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h \
    --query.max-samples=100000000 "$@" >"$log" 2>&1 &
  echo $!
}

# stop_pid PID: SIGTERM, then wait until the process is gone (SIGKILL after 60 s). It need not
# be a child of this shell, so `wait` can't be used; a zombie counts as gone.
stop_pid() {
  local pid=$1 deadline=$((SECONDS + 60))
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    if [ $SECONDS -ge $deadline ]; then kill -9 "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
}
