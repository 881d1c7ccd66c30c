#!/usr/bin/env bash
# Fault runs: a Postgres of their own crashed mid-collect and mid-serve, SQLite on a full tmpfs
# (tests/faults.rs, ignored by `make test`: they need root and an initdb). Bounded: each
# waits at most a few minutes for what it expects, then fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the fault runs mount a tmpfs and run initdb as postgres: run as root" >&2; exit 1; }
cargo test --locked --release --test faults -- --ignored --test-threads 1
