#!/usr/bin/env bash
# make bench, strategies part: the strategy tournament on a fleet with the trend scenarios.
# BENCH_BACKTEST_COPIES copies (default 4) of the demo cluster with the trends namespace
# (regime changes, weekly seasonality, a weekly batch, start-up spikes) and a 4-hour
# Prometheus outage, BENCH_DAYS days (14) each, backfilled one copy at a time into its own
# Prometheus and collected into one SQLite store (a cluster per copy). Then
# `rightsizer backtest` with strategy = "auto" prints every strategy's held-out figures
# beside the values in force, and the targets of the out-of-sample issue are checked.
# Finally benches/backtest.rs times the analyzer on 10,000 containers × 30 days.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

root=$PWD
bin=${CARGO_TARGET_DIR:-$root/target}/release/rightsizer
synth=${CARGO_TARGET_DIR:-$root/target}/release/rightsizer-synth
copies=${BENCH_BACKTEST_COPIES:-4}
days=${BENCH_DAYS:-14}
end=${BENCH_END:-$(( ($(date +%s) / 86400 - 1) * 86400 ))}
work=${BENCH_DATA:-$root/target/bench-data}/backtest-days-$days
db=sqlite://$work/rs.db
mkdir -p "$work"
cargo bench --locked --bench backtest --no-run

prom_pid=""
trap 'if [ -n "$prom_pid" ]; then stop_pid "$prom_pid"; fi' EXIT
if [ ! -f "$work/ready" ] || [ "$(cat "$work/ready")" != "$end $copies" ]; then
  rm -f "$work/rs.db" "$work/ready"
  echo "==> $copies copies of the demo cluster with the trend scenarios, $days days, a 4-hour outage"
  for ((k = 0; k < copies; k++)); do
    dir=$work/copy-$k
    rm -rf "$dir" && mkdir -p "$dir"
    t0=$SECONDS
    "$synth" --seed $((k + 1)) --days "$days" --scale 1 --first-copy "$k" --trends \
      --outage-hours 4 --end "$end" --out "$dir" >/dev/null
    backfill "$dir/metrics.om" "$dir/tsdb"
    rm -f "$dir/metrics.om"
    port=$(free_port "${BENCH_PORT_FROM:-29190}")
    prom_pid=$(start_prometheus "$dir/tsdb" "$port" "$dir/prometheus.log")
    wait_http "http://127.0.0.1:$port/-/ready" 300
    RIGHTSIZER_LOG=warn "$bin" --database-url "$db" --cluster "copy-$k" \
      --prometheus-url "http://127.0.0.1:$port" collect --since "${days}d" --until "$end" >/dev/null
    stop_pid "$prom_pid"
    prom_pid=""
    rm -rf "$dir/tsdb"
    echo "    copy $k: generated, backfilled and collected in $((SECONDS - t0)) s"
  done
  echo "$end $copies" > "$work/ready"
fi

printf '[policy]\nstrategy = "auto"\n' > "$work/auto.toml"
run_backtest() {
  RIGHTSIZER_LOG=warn "$bin" --config "$work/auto.toml" --database-url "$db" backtest "$@"
}
echo
echo "==> rightsizer backtest (strategy = \"auto\"), $copies copies"
t0=$(date +%s%N)
run_backtest -o table
echo "    the command took $(( ($(date +%s%N) - t0) / 1000000 )) ms (every container analyzed, nothing stored)"
run_backtest -o csv > "$work/fleet.csv"

# The targets: auto ("chosen") has 0 memory overrun hours, fewer objective misses than the
# KRR and VPA emulations, CPU and memory slack below both and at least 30% below today's.
awk -F, '
  function check(ok, what) { printf "    %-4s %s\n", (ok ? "PASS" : "MISS"), what }
  NR > 1 { cpu[$1] = $3; mem[$1] = $4; over[$1] = $5; miss[$1] = $6 }
  END {
    print "==> targets (auto = the \"chosen\" row)"
    check(over["chosen"] == 0, "auto: 0 memory overrun hours (" over["chosen"] ")")
    check(miss["chosen"] + 0 < miss["krr-simple"] + 0 && miss["chosen"] + 0 < miss["vpa"] + 0,
      "auto misses the objective on fewer containers (" miss["chosen"] ") than krr-simple (" miss["krr-simple"] ") and vpa (" miss["vpa"] ")")
    check(cpu["chosen"] + 0 < cpu["krr-simple"] + 0 && cpu["chosen"] + 0 < cpu["vpa"] + 0,
      sprintf("auto CPU slack %.1f%% below krr-simple %.1f%% and vpa %.1f%%", cpu["chosen"] * 100, cpu["krr-simple"] * 100, cpu["vpa"] * 100))
    check(mem["chosen"] + 0 < mem["krr-simple"] + 0 && mem["chosen"] + 0 < mem["vpa"] + 0,
      sprintf("auto memory slack %.1f%% below krr-simple %.1f%% and vpa %.1f%%", mem["chosen"] * 100, mem["krr-simple"] * 100, mem["vpa"] * 100))
    check(cpu["chosen"] + 0 <= 0.7 * cpu["current"] && mem["chosen"] + 0 <= 0.7 * mem["current"],
      sprintf("auto slack at least 30%% below the current requests: CPU %.1f%% vs %.1f%%, memory %.1f%% vs %.1f%%", cpu["chosen"] * 100, cpu["current"] * 100, mem["chosen"] * 100, mem["current"] * 100))
  }' "$work/fleet.csv"

echo
echo "==> the analyzer alone: 10,000 containers × 30 days of summaries (benches/backtest.rs)"
cargo bench --quiet --locked --bench backtest
