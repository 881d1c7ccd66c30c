#!/usr/bin/env bash
# Installs what the demo and the tests need: Prometheus (with promtool) from Debian,
# and the Rust components for fmt and clippy (--test: what the tests need too; --image: buildah
# and podman for make image). Idempotent; quiet when all is there.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v pg_ctlcluster >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v git >/dev/null 2>&1 || need+=(git)
# Headless browser tests of the dashboard and the HTML report (make test only).
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
  python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
  # libFuzzer (cargo fuzz) is C++, built by the libfuzzer-sys crate.
  command -v c++ >/dev/null 2>&1 || need+=(g++)
fi
# Container image tools (make image only).
if [ "${1:-}" = "--image" ]; then
  command -v buildah >/dev/null 2>&1 || need+=(buildah)
  command -v podman >/dev/null 2>&1 || need+=(podman)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts a Prometheus service on :9090 scraping itself; we run our own instances.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt >&2
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy >&2
fi
