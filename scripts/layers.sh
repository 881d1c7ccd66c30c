#!/usr/bin/env bash
# The dependency rule of ARCHITECTURE.md, checked by a grep of `crate::` paths outside
# comments: a module imports only modules of its own layer or below, and modules of one
# layer never import each other both ways. `make test` runs it; it prints each violation.
set -euo pipefail
cd "$(dirname "$0")/.."

layer_of() {
  case $1 in
    main|cli|config|fuzzing) echo 5 ;;
    http|report|output|gitops|apply|jobs) echo 4 ;;
    analyzer|collector|runs) echo 3 ;;
    store|prometheus|cluster|patch) echo 2 ;;
    fleet|model|sketch|quantity|redact|telemetry|testing) echo 1 ;;
    *) echo "unknown" ;;
  esac
}

edges=$(
  grep -rnoE '^[^/]*crate::[a-z_]+' src --include='*.rs' \
    | sed -E 's#^src/([a-z_]+)(/[^:]*)?(\.rs)?:[0-9]+:.*crate::([a-z_]+)$#\1 \4#' \
    | sed -E 's#^([a-z_]+)\.rs #\1 #' \
    | awk '$1 != $2' | sort -u
)
bad=0
while read -r from to; do
  [ -n "$from" ] || continue
  lf=$(layer_of "$from"); lt=$(layer_of "$to")
  if [ "$lf" = unknown ] || [ "$lt" = unknown ]; then
    echo "layers: module $from or $to has no layer in scripts/layers.sh and ARCHITECTURE.md" >&2
    bad=1
  elif [ "$lt" -gt "$lf" ]; then
    echo "layers: $from (layer $lf) imports $to (layer $lt), a layer above it" >&2
    grep -rnE "^[^/]*crate::$to\b" "src/$from.rs" "src/$from" 2>/dev/null | head -3 >&2 || true
    bad=1
  elif [ "$lt" = "$lf" ] && grep -qx "$to $from" <<<"$edges"; then
    echo "layers: $from and $to import each other" >&2
    bad=1
  fi
done <<<"$edges"
if [ "$bad" = 1 ]; then exit 1; fi
echo "layers: $(wc -l <<<"$edges") imports between modules, none upwards, no cycle"
