#!/usr/bin/env bash
# The sizing admission webhook under load: it sits in every pod creation's path, so its
# latency is what matters. BENCH_CONTAINERS (default 10,000) recommendations in SQLite,
# `rightsizer serve` with the webhook on loopback TLS (a throwaway self-signed certificate),
# and wrk POSTing an AdmissionReview of a Deployment's pod (sized: the answer carries a
# patch) with 16 connections for 20 s. Prints requests/s and latency percentiles (the
# target: p99 ≤ 5 ms) and the server's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v wrk >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }

n=${BENCH_CONTAINERS:-10000}
work=$(mktemp -d /tmp/rs-bench-webhook.XXXXXX)
url="sqlite://$work/rs.db"
BENCH_DATABASE_URL=$url BENCH_CONTAINERS=$n cargo bench --locked --bench api_seed

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

port=$(free_port 28090)
hook=$(free_port 28443)
RIGHTSIZER_LOG=warn target/release/rightsizer --database-url "$url" --cluster cluster-0 serve \
  --listen "127.0.0.1:$port" --collect-interval 0 --webhook-listen "127.0.0.1:$hook" \
  --webhook-tls-cert "$work/tls.crt" --webhook-tls-key "$work/tls.key" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
wait_http "http://127.0.0.1:$port/healthz" 30

# team-000/svc-0000 is the seed's container 0, in cluster-0: its pod gets a patch.
cat >"$work/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"bench","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-000","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"svc-0000-5d8f-","labels":{"pod-template-hash":"5d8f"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"svc-0000-5d8f","uid":"u","controller":true}]},"spec":{"containers":[{"name":"app","image":"app:1","resources":{"requests":{"cpu":"1","memory":"1Gi"},"limits":{"cpu":"4","memory":"1Gi"}}}]}}}}
JSON
# The index is loaded in the background after start: wait until the answer carries a patch.
for _ in $(seq 100); do
  curl -fsSk -H 'content-type: application/json' --data-binary @"$work/review.json" \
    "https://127.0.0.1:$hook/admission/v1/mutate-pods" | grep -q '"patch"' && break
  sleep 0.2
done
curl -fsSk -H 'content-type: application/json' --data-binary @"$work/review.json" \
  "https://127.0.0.1:$hook/admission/v1/mutate-pods" | grep -q '"patch"' \
  || { echo "bench-webhook: the webhook never answered with a patch" >&2; exit 1; }

cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/review.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
echo "==> wrk -t2 -c16 -d20s --latency -s post.lua https://127.0.0.1:$hook/admission/v1/mutate-pods ($n recommendations)"
wrk -t2 -c16 -d20s --latency -s "$work/post.lua" "https://127.0.0.1:$hook/admission/v1/mutate-pods" \
  | grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors"
echo "==> server peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
