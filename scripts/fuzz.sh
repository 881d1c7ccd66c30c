#!/usr/bin/env bash
# make fuzz: every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for FUZZ_SECONDS each
# (default 120), starting from the checked-in seeds in fuzz/corpus/<target>/. With --smoke
# (make test): an unoptimized build and FUZZ_SMOKE_SECONDS (default 10) per target.
# New inputs go to target/fuzz-corpus/<target>/, never into the checked-in seeds; a crash
# stops the run and leaves its input in fuzz/artifacts/<target>/ (how to replay it is printed).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-120}
build=(--release)
if [ "${1:-}" = "--smoke" ]; then
  seconds=${FUZZ_SMOKE_SECONDS:-10}
  # An optimized build of the whole crate with coverage costs minutes; a smoke needs none.
  build=(--dev)
fi

if ! cargo fuzz --version 2>/dev/null | grep -qF " $CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# `-s none`: stable Rust has no -Zsanitizer, and with unsafe code forbidden in this crate
# AddressSanitizer would only watch our dependencies. Coverage guidance (sancov) and
# debug assertions (overflow checks) need no nightly.
cargo fuzz build -s none "${build[@]}"
for target in $(cargo fuzz list); do
  work=${CARGO_TARGET_DIR:-target}/fuzz-corpus/$target
  mkdir -p "$work"
  echo "==> fuzz $target for ${seconds}s"
  # -seed=1 in a smoke: the same inputs every run, so a red test names a real regression.
  seed=()
  [ "${1:-}" = "--smoke" ] && seed=(-seed=1)
  log=$work.log
  if ! cargo fuzz run -s none "${build[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 "${seed[@]}" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $target failed (full log: $log)" >&2
    exit 1
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -n 1 || true
done
