#!/usr/bin/env bash
# make test: format check, clippy -D warnings, and every test against real Prometheus,
# Postgres and SQLite. Starts Postgres when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_postgres() {
  local url=${RIGHTSIZER_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then export RIGHTSIZER_TEST_POSTGRES_URL=$url; return; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    local v; v=$(ls /etc/postgresql | sort -n | tail -1)
    echo "starting Postgres $v" >&2
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then export RIGHTSIZER_TEST_POSTGRES_URL=$url; return; fi
  # Last resort: a throwaway cluster of our own on a free port.
  . scripts/lib.sh
  local bindir port dir
  bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort | tail -1)")
  port=$(free_port 25432)
  dir=$(mktemp -d /tmp/rs-pg.XXXXXX)
  chown postgres "$dir" 2>/dev/null || true
  echo "starting a throwaway Postgres on 127.0.0.1:$port ($dir)" >&2
  runuser -u postgres -- "$bindir/initdb" -D "$dir" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$bindir/pg_ctl" -D "$dir" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
  export RIGHTSIZER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

ensure_postgres
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> layers (scripts/layers.sh: no import from a lower layer to a higher one)"
scripts/layers.sh
echo "==> deploy manifests (kubectl kustomize, kubernetes-validate, our guidance)"
scripts/check-deploy.sh
echo "==> cargo test --workspace"
cargo test --workspace --locked
echo "==> fuzz smoke (scripts/fuzz.sh --smoke)"
scripts/fuzz.sh --smoke
echo "==> API conformance (schemathesis)"
scripts/conformance.sh
