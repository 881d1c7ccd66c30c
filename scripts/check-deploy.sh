#!/usr/bin/env bash
# Renders the kustomize manifests (deploy/base, deploy/optional/servicemonitor and
# deploy/optional/monitoring), validates them against the bundled Kubernetes schemas (offline,
# strict: unknown fields fail), checks the rendered objects follow our own guidance, and runs
# `promtool check rules` and `promtool test rules` on the PrometheusRule. Exits non-zero on any
# failure.
# Needs kubectl (for `kubectl kustomize`) and python3; installs kubernetes-validate from PyPI
# when missing. Takes about two seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest and newest Kubernetes versions whose schemas we validate against.
K8S_VERSIONS=${K8S_VERSIONS:-"1.31.0 1.37.0"}

if ! command -v kubectl >/dev/null 2>&1; then
  echo "check-deploy: kubectl not found (needed for kubectl kustomize)" >&2
  exit 1
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  # A venv of our own: Debian's system Python refuses pip installs (PEP 668).
  venv=target/pyvenv
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "check-deploy: installing kubernetes-validate from PyPI into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate >&2
  fi
  PATH="$PWD/$venv/bin:$PATH"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "==> kubectl kustomize deploy/base, deploy/optional/servicemonitor, deploy/optional/monitoring"
kubectl kustomize deploy/base >"$out/base.yaml"
kubectl kustomize deploy/optional/servicemonitor >"$out/servicemonitor.yaml"
kubectl kustomize deploy/optional/monitoring >"$out/monitoring.yaml"
kubectl kustomize deploy/optional/apply >"$out/apply.yaml"
kubectl kustomize deploy/optional/admission >"$out/admission.yaml"

for v in $K8S_VERSIONS; do
  echo "==> kubernetes-validate --strict (Kubernetes $v)"
  # The ServiceMonitor is a CRD without a bundled schema: kubernetes-validate only warns about
  # it (hidden here); the checks below look at it instead.
  kubernetes-validate --strict --quiet --no-warn -k "$v" "$out/base.yaml" "$out/servicemonitor.yaml" \
    "$out/monitoring.yaml" "$out/apply.yaml" "$out/admission.yaml"
done

echo "==> promtool check rules, promtool test rules (deploy/optional/monitoring)"
python3 - "$out/monitoring.yaml" "$out/rules.yaml" <<'PY'
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"check-deploy: want one PrometheusRule in deploy/optional/monitoring, found {len(rules)}")
yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
PY
cp deploy/optional/monitoring/rules-test.yaml "$out/rules-test.yaml"
promtool check rules "$out/rules.yaml"
(cd "$out" && promtool test rules rules-test.yaml)

echo "==> our own guidance in the rendered manifests"
python3 - "$out/base.yaml" "$out/servicemonitor.yaml" "$out/monitoring.yaml" "$out/apply.yaml" \
  "$out/admission.yaml" <<'PY'
import re
import sys
import tomllib

import yaml

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def cpu_millicores(q):
    q = str(q)
    return float(q[:-1]) if q.endswith("m") else float(q) * 1000


BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(q):
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m:
        raise ValueError(f"unparseable memory quantity {q!r}")
    number, unit = float(m.group(1)), m.group(2)
    return number * (BINARY.get(unit) or DECIMAL.get(unit) or 1)


def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]


def one(docs, kind, where):
    found = [d for d in docs if d["kind"] == kind]
    check(len(found) == 1, f"{where}: want exactly one {kind}, found {len(found)}")
    return found[0] if found else {}


base = load(sys.argv[1])
overlay = load(sys.argv[2])
check(not [d for d in base if d["kind"] == "Secret"],
      "base: Secrets must not be rendered (they are created out of band, see docs/deploy.md)")

dep = one(base, "Deployment", "base")
ns = dep["metadata"]["namespace"]
spec = dep["spec"]
pod = spec["template"]["spec"]
pod_labels = spec["template"]["metadata"]["labels"]
check(spec.get("replicas") == 2, f"Deployment replicas must be 2, is {spec.get('replicas')}")
check(spec["selector"]["matchLabels"].items() <= pod_labels.items(),
      "Deployment selector must match its pod labels")

psc = pod.get("securityContext", {})
check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
      "pod securityContext.seccompProfile.type must be RuntimeDefault")
volumes = {v["name"]: v for v in pod.get("volumes", [])}

for c in pod["containers"] + pod.get("initContainers", []):
    name = c["name"]
    res = c.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    for r in ("cpu", "memory"):
        check(r in req and r in lim, f"{name}: {r} request and limit must both be set")
    if "memory" in req and "memory" in lim:
        check(memory_bytes(req["memory"]) == memory_bytes(lim["memory"]),
              f"{name}: memory request ({req['memory']}) must equal the limit ({lim['memory']})")
    if "cpu" in req and "cpu" in lim:
        check(abs(cpu_millicores(lim["cpu"]) - 4 * cpu_millicores(req["cpu"])) < 1e-9,
              f"{name}: CPU limit ({lim['cpu']}) must be 4 x the request ({req['cpu']})")
    sc = c.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True,
          f"{name}: runAsNonRoot must be true")
    check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem must be true")
    check(sc.get("allowPrivilegeEscalation") is False,
          f"{name}: allowPrivilegeEscalation must be false")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{name}: must drop ALL capabilities")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    check("emptyDir" in volumes.get(mounts.get("/tmp"), {}), f"{name}: /tmp must be an emptyDir")

app = pod["containers"][0]
ports = {p.get("name"): p["containerPort"] for p in app.get("ports", [])}
check(ports.get("http") == 8080, "container port 8080 must be named http")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = app.get(probe, {}).get("httpGet", {})
    check(get.get("path") == path, f"{probe} must GET {path}, is {get.get('path')}")
    check(get.get("port") in ("http", 8080), f"{probe} must use the http port")

args = app.get("args", [])
check(args[:1] == ["serve"], f"the container must run `serve`, args are {args}")
check("--listen" in args and args[args.index("--listen") + 1] == "0.0.0.0:8080",
      "serve must listen on 0.0.0.0:8080")
check("--config" in args and args[args.index("--config") + 1] == "/etc/rightsizer/config.toml",
      "serve must read --config /etc/rightsizer/config.toml")
env = {e["name"]: e for e in app.get("env", [])}
for var in ("RIGHTSIZER_DATABASE_URL", "RIGHTSIZER_API_TOKENS"):
    check("secretKeyRef" in env.get(var, {}).get("valueFrom", {}),
          f"{var} must come from a Secret (secretKeyRef), never a literal value")

mounts = {m["mountPath"]: m["name"] for m in app.get("volumeMounts", [])}
config_volume = volumes.get(mounts.get("/etc/rightsizer"), {})
cm_name = config_volume.get("configMap", {}).get("name")
cms = [d for d in base if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name]
check(len(cms) == 1, f"/etc/rightsizer must be the rendered ConfigMap, is {config_volume}")
if cms:
    text = cms[0].get("data", {}).get("config.toml")
    check(text is not None, "the ConfigMap must hold config.toml")
    if text is not None:
        try:
            config = tomllib.loads(text)
            check("database_url" not in config,
                  "config.toml must not hold database_url: it is a secret")
        except tomllib.TOMLDecodeError as e:
            check(False, f"config.toml is not valid TOML: {e}")

pdb = one(base, "PodDisruptionBudget", "base")
check(pdb.get("spec", {}).get("minAvailable") == 1, "PDB minAvailable must be 1")
check(pdb.get("spec", {}).get("selector", {}).get("matchLabels", {}).items() <= pod_labels.items(),
      "PDB must select the Deployment's pods")

svc = one(base, "Service", "base")
svc_ports = {p.get("name"): p for p in svc.get("spec", {}).get("ports", [])}
check(svc_ports.get("http", {}).get("port") == 8080, "Service must expose port 8080 named http")
check(svc.get("spec", {}).get("selector", {}).items() <= pod_labels.items(),
      "Service must select the Deployment's pods")

sa = one(base, "ServiceAccount", "base")
check(pod.get("serviceAccountName") == sa.get("metadata", {}).get("name"),
      "the pods must run as the rendered ServiceAccount")
role = one(base, "ClusterRole", "base")
granted = set()
for rule in role.get("rules", []):
    check(sorted(rule.get("verbs", [])) == ["get", "list", "watch"],
          f"ClusterRole verbs must be exactly get/list/watch: {rule}")
    for group in rule.get("apiGroups", []):
        for resource in rule.get("resources", []):
            granted.add((group, resource))
wanted = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
          ("batch", "jobs"), ("batch", "cronjobs"), ("autoscaling", "horizontalpodautoscalers"),
          ("policy", "poddisruptionbudgets")}
check(granted == wanted, f"ClusterRole must grant exactly {sorted(wanted)}, grants {sorted(granted)}")
binding = one(base, "ClusterRoleBinding", "base")
check(binding.get("roleRef", {}).get("name") == role.get("metadata", {}).get("name"),
      "ClusterRoleBinding must bind the ClusterRole")
check({"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}
      in binding.get("subjects", []),
      "ClusterRoleBinding must bind the ServiceAccount in the Deployment's namespace")

sm = one(overlay, "ServiceMonitor", "servicemonitor overlay")
if sm:
    check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
          "ServiceMonitor must select the Service")
    endpoint = sm["spec"]["endpoints"][0]
    check(endpoint.get("port") == "http" and endpoint.get("path") == "/metrics",
          "ServiceMonitor must scrape port http, path /metrics")
    paths = [e.get("path") for e in sm["spec"]["endpoints"]]
    check("/metrics/recommendations" in paths,
          "ServiceMonitor must also scrape /metrics/recommendations (the monitoring component's data)")
check(len(overlay) == len(base) + 1, "the servicemonitor overlay must be the base plus one object")

# The apply component: the base plus one role whose only write is `patch` on pods/resize.
applied = load(sys.argv[4])
check(len(applied) == len(base) + 2, "the apply component must be the base plus a ClusterRole and its binding")
apply_role = [d for d in applied if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "rightsizer-apply"]
check(len(apply_role) == 1, "the apply component must hold the ClusterRole rightsizer-apply")
writes = set()
for rule in (apply_role[0]["rules"] if apply_role else []):
    for verb in rule.get("verbs", []):
        if verb not in ("get", "list", "watch"):
            writes.update((g, r, verb) for g in rule["apiGroups"] for r in rule["resources"])
check(writes == {("", "pods/resize", "patch")},
      f"rightsizer-apply may only patch pods/resize, grants writes {sorted(writes)}")

# The admission component: a webhook that can never block a pod creation, served over TLS
# from the mounted Secret on the port the Service targets.
adm = load(sys.argv[5])
hooks = [d for d in adm if d["kind"] == "MutatingWebhookConfiguration"]
check(len(hooks) == 1, "the admission component must hold one MutatingWebhookConfiguration")
for hook in (hooks[0]["webhooks"] if hooks else []):
    check(hook.get("failurePolicy") == "Ignore", "the webhook must use failurePolicy: Ignore")
    check(hook.get("sideEffects") == "None", "the webhook must declare sideEffects: None")
    check(hook.get("admissionReviewVersions") == ["v1"], "the webhook must speak AdmissionReview v1")
    check(hook.get("timeoutSeconds", 10) <= 5, "the webhook must time out within 5 s")
    check(hook.get("namespaceSelector", {}).get("matchLabels"), "the webhook must be opt-in by namespace")
    svc_ref = hook["clientConfig"]["service"]
    check(svc_ref.get("path") == "/admission/v1/mutate-pods", f"webhook path: {svc_ref.get('path')}")
    webhook_svc = [d for d in adm if d["kind"] == "Service" and d["metadata"]["name"] == svc_ref["name"]]
    check(len(webhook_svc) == 1, f"the webhook's Service {svc_ref['name']} must be rendered")
    adm_dep = one(adm, "Deployment", "admission component")
    container = adm_dep["spec"]["template"]["spec"]["containers"][0]
    check("webhook" in [p.get("name") for p in container.get("ports", [])],
          "the Deployment must expose the port named webhook")
    args = " ".join(container.get("args", []))
    check("--webhook-tls-cert=" in args and "--webhook-tls-key=" in args and "--webhook-listen=" in args,
          "the Deployment must serve the webhook with its certificate")

monitoring = load(sys.argv[3])
check(len(monitoring) == len(overlay) + 2,
      "the monitoring component must be the servicemonitor overlay plus a PrometheusRule and a ConfigMap")
dashboards = [d for d in monitoring if d["kind"] == "ConfigMap"
              and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
check(len(dashboards) == 1, "the monitoring component must hold one ConfigMap labelled grafana_dashboard")
if dashboards:
    import json
    data = dashboards[0].get("data", {})
    try:
        dash = json.loads(data.get("rightsizer.json", ""))
        check(dash.get("panels"), "the Grafana dashboard must have panels")
    except json.JSONDecodeError as e:
        check(False, f"the Grafana dashboard is not valid JSON: {e}")

if failures:
    for f in failures:
        print(f"check-deploy: FAIL {f}", file=sys.stderr)
    sys.exit(1)
print(f"check-deploy: ok ({len(base)} objects in deploy/base, ServiceMonitor overlay, monitoring component)")
PY
