#!/usr/bin/env bash
# API conformance (make test): schemathesis against /api/v1/openapi.json of a running
# `rightsizer serve`, with a token, on a store filled the real way: two days of the
# synthetic cluster backfilled into a Prometheus, collected, analyzed and reported on.
# Fails on any 5xx, a response that does not match its schema, or a status code or
# content type the document does not list.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SCHEMATHESIS_VERSION=4.32.5
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/rightsizer/schemathesis-$SCHEMATHESIS_VERSION}
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin=${RIGHTSIZER_BIN:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet --workspace
  bin=${CARGO_TARGET_DIR:-target}/debug/rightsizer
fi
synth=${RIGHTSIZER_SYNTH_BIN:-$(dirname "$bin")/rightsizer-synth}
work=$(mktemp -d /tmp/rs-conformance.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT

"$synth" --seed 7 --days 2 --out "$work/data" >/dev/null
backfill "$work/data/metrics.om" "$work/tsdb"
prom_port=$(free_port 29090)
pids+=("$(start_prometheus "$work/tsdb" "$prom_port" "$work/prometheus.log")")
wait_http "http://127.0.0.1:$prom_port/-/ready" 120

export RIGHTSIZER_DATABASE_URL="sqlite://$work/rs.db" RIGHTSIZER_LOG=warn
export RIGHTSIZER_PROMETHEUS_URL="http://127.0.0.1:$prom_port"
"$bin" collect --since 2d >/dev/null
"$bin" analyze >/dev/null
"$bin" report --format json --out "$work/report.json" >/dev/null

port=$(free_port 28180)
token=conformance-$$-$RANDOM
RIGHTSIZER_API_TOKENS=$token "$bin" serve --listen "127.0.0.1:$port" --collect-interval 0 \
  >"$work/serve.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$port/healthz" 60

# Every operation, actions included: with Prometheus up, a collect or analyze run is real.
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${CONFORMANCE_MAX_EXAMPLES:-25}" --seed 1 --workers 1 \
  --no-color || { tail -n 40 "$work/serve.log" >&2; exit 1; }
