//! A stateful stand-in for the Kubernetes API server's pod reads and the pods' `resize`
//! subresource, implementing what the documentation says of them:
//! - "Resize CPU and Memory Resources assigned to Containers"
//!   (kubernetes.io/docs/tasks/configure-pod-container/resize-container-resources/, v1.33–1.35)
//!   and KEP-1287: a resize is a patch of the `resize` subresource that may change only the
//!   containers' CPU and memory requests and limits; it may not change the pod's QoS class
//!   (422 Invalid); before 1.34 a memory limit may not be lowered unless the container's
//!   `resizePolicy` for memory is `RestartContainer` (422); the kubelet reports a resize it
//!   cannot do on the node with the `PodResizePending` condition, reason `Infeasible`;
//! - "API Concepts" (kubernetes.io/docs/reference/using-api/api-concepts/): `?dryRun=All`
//!   validates without persisting; a `metadata.resourceVersion` in the patch that is not the
//!   object's current one is a 409 Conflict; a list takes `fieldSelector` and pages with
//!   `limit`/`continue`;
//! - "Pod Quality of Service Classes" (kubernetes.io/docs/concepts/workloads/pods/pod-qos/);
//! - RBAC: a request the role does not allow is a 403 Forbidden `Status`.
//!
//! Every request is recorded so tests can assert what was (and was not) sent.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: String,
}

/// The server's state; tests change it between runs.
#[derive(Default)]
pub struct Cluster {
    /// `minor` of `/version` (major is 1).
    pub minor: u32,
    /// Pods by `(namespace, name)`.
    pub pods: BTreeMap<(String, String), Value>,
    /// Other objects by API path, e.g. `/apis/apps/v1/namespaces/shop/replicasets/web-5d8f`.
    pub objects: BTreeMap<String, Value>,
    /// Lists by API path (LimitRanges, ResourceQuotas, PodDisruptionBudgets), items only.
    pub lists: BTreeMap<String, Vec<Value>>,
    /// Nodes by name: `(allocatable CPU millicores, allocatable memory bytes)`.
    pub nodes: BTreeMap<String, (i64, i64)>,
    /// Pods the kubelet cannot resize (answered with `PodResizePending`/`Infeasible`).
    pub infeasible: BTreeSet<String>,
    /// Pods whose resourceVersion moves on before the next resize (a concurrent change).
    pub changed_underneath: BTreeSet<String>,
    /// The role lacks `patch` on `pods/resize`.
    pub forbid_resize: bool,
    /// Everything asked.
    pub seen: Vec<Seen>,
    /// Where pod changes go to open watches (set by [`start`]).
    pub events: Option<tokio::sync::broadcast::Sender<Value>>,
}

pub type Shared = Arc<Mutex<Cluster>>;

/// Starts the server; returns its URL and its state.
pub async fn start(mut cluster: Cluster) -> (String, Shared) {
    cluster.events = Some(tokio::sync::broadcast::channel(64).0);
    let shared: Shared = Arc::new(Mutex::new(cluster));
    let app = Router::new()
        .route("/version", get(version))
        .route("/api/v1/pods", get(all_pods))
        .route("/api/v1/namespaces/{ns}/pods", get(namespace_pods))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(one_pod))
        .route("/api/v1/nodes/{name}", get(node))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/resize",
            axum::routing::patch(resize),
        )
        .fallback(object)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

async fn record(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    s.lock().unwrap().seen.push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code
        })),
    )
        .into_response()
}

async fn version(State(s): State<Shared>) -> Json<Value> {
    let minor = s.lock().unwrap().minor;
    Json(json!({
        "major": "1", "minor": minor.to_string(), "gitVersion": format!("v1.{minor}.0"),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    }))
}

fn pod_list(items: Vec<Value>) -> Json<Value> {
    Json(
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// `fieldSelector` terms this server understands: `status.phase=`, `status.phase!=`,
/// `spec.nodeName=`.
fn selected(pod: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').all(|term| {
        let (field, negate, value) = match term.split_once("!=") {
            Some((f, v)) => (f, true, v),
            None => {
                let (f, v) = term.split_once('=').unwrap();
                (f, false, v)
            }
        };
        let actual = match field {
            "status.phase" => pod["status"]["phase"].as_str().unwrap_or(""),
            "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or(""),
            other => panic!("field selector {other} not implemented"),
        };
        (actual == value) != negate
    })
}

async fn all_pods(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let s = s.lock().unwrap();
    if q.get("watch").map(String::as_str) == Some("true") {
        return watch(&s);
    }
    pod_list(
        s.pods
            .values()
            .filter(|p| selected(p, q.get("fieldSelector")))
            .cloned()
            .collect(),
    )
    .into_response()
}

/// A watch of every pod ("API Concepts", "Efficient detection of changes"): a stream of
/// `{"type", "object"}` lines, one per change made after it opened, kept open.
fn watch(s: &Cluster) -> Response {
    use tokio::sync::broadcast::error::RecvError;
    let events = s.events.as_ref().expect("started").subscribe();
    let lines = futures::stream::unfold(events, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let line = Bytes::from(format!("{v}\n"));
                    return Some((Ok::<_, std::io::Error>(line), rx));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(lines))
        .unwrap()
}

async fn namespace_pods(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let s = s.lock().unwrap();
    pod_list(
        s.pods
            .iter()
            .filter(|((n, _), p)| *n == ns && selected(p, q.get("fieldSelector")))
            .map(|(_, p)| p.clone())
            .collect(),
    )
}

async fn one_pod(State(s): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.lock().unwrap().pods.get(&(ns, name.clone())) {
        Some(p) => Json(p.clone()).into_response(),
        None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
    }
}

impl Cluster {
    /// The kubelet restarts container 0 of `pod` after an OOM kill.
    pub fn oom_kill(&mut self, namespace: &str, pod: &str) {
        let p = self
            .pods
            .get_mut(&(namespace.to_string(), pod.to_string()))
            .unwrap();
        let name = p["spec"]["containers"][0]["name"].clone();
        let image = p["spec"]["containers"][0]["image"].clone();
        let restarts = p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0);
        p["status"]["containerStatuses"] = json!([{
            "name": name, "image": image, "imageID": "", "ready": true, "restartCount": restarts + 1,
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]);
        let version = p["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        p["metadata"]["resourceVersion"] = json!((version + 1).to_string());
        let event = json!({"type": "MODIFIED", "object": p.clone()});
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

async fn node(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let s = s.lock().unwrap();
    let Some((cpu, memory)) = s.nodes.get(&name) else {
        return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
    };
    Json(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"allocatable": {"cpu": format!("{cpu}m"), "memory": memory.to_string()}}
    }))
    .into_response()
}

async fn object(State(s): State<Shared>, method: Method, uri: Uri) -> Response {
    let s = s.lock().unwrap();
    if method != Method::GET {
        return status(405, "MethodNotAllowed", "not implemented here");
    }
    if let Some(o) = s.objects.get(uri.path()) {
        return Json(o.clone()).into_response();
    }
    if let Some(items) = s.lists.get(uri.path()) {
        return Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
            .into_response();
    }
    // An empty list for any other collection the applier reads.
    if ["limitranges", "resourcequotas", "poddisruptionbudgets"]
        .iter()
        .any(|c| uri.path().ends_with(c))
    {
        return Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}))
            .into_response();
    }
    status(404, "NotFound", &format!("{} not found", uri.path()))
}

fn parse_memory(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    for (suffix, factor) in [("Ki", 1i64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = s.strip_suffix(suffix) {
            return Some(n.parse::<i64>().ok()? * factor);
        }
    }
    s.parse().ok()
}

/// The QoS class of a pod spec by the documented rules.
fn qos(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect();
    let any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c["resources"][*k]
                .as_object()
                .is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][*r];
            let request = &c["resources"]["requests"][*r];
            !limit.is_null() && (request.is_null() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

async fn resize(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = s.lock().unwrap();
    if s.forbid_resize {
        return status(
            403,
            "Forbidden",
            &format!("pods \"{name}\" is forbidden: User \"system:serviceaccount:rightsizer:rightsizer\" cannot patch resource \"pods/resize\" in API group \"\" in the namespace \"{ns}\""),
        );
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/strategic-merge-patch+json" {
        return status(
            415,
            "UnsupportedMediaType",
            &format!("unsupported patch type {ct}"),
        );
    }
    let minor = s.minor;
    let key = (ns.clone(), name.clone());
    if s.changed_underneath.remove(&name) {
        if let Some(p) = s.pods.get_mut(&key) {
            let rv: u64 = p["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            p["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
        }
    }
    let Some(pod) = s.pods.get(&key).cloned() else {
        return status(404, "NotFound", &format!("pods \"{name}\" not found"));
    };
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
        if rv != pod["metadata"]["resourceVersion"] {
            return status(409, "Conflict", &format!("Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
        }
    }
    let mut after = pod.clone();
    for c in patch["spec"]["containers"].as_array().into_iter().flatten() {
        let obj = c.as_object().unwrap();
        if obj.keys().any(|k| k != "name" && k != "resources") {
            return status(422, "Invalid", &format!("Pod \"{name}\" is invalid: spec: Forbidden: only cpu and memory resources are mutable"));
        }
        for k in ["requests", "limits"] {
            if c["resources"][k]
                .as_object()
                .is_some_and(|m| m.keys().any(|r| r != "cpu" && r != "memory"))
            {
                return status(422, "Invalid", &format!("Pod \"{name}\" is invalid: spec.containers[*].resources: Forbidden: only cpu and memory resources are mutable"));
            }
        }
        let target = after["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["name"] == c["name"]);
        let Some(target) = target else {
            return status(
                422,
                "Invalid",
                "spec.containers: a container that is not in the pod",
            );
        };
        for k in ["requests", "limits"] {
            if let Some(m) = c["resources"][k].as_object() {
                for (r, v) in m {
                    target["resources"][k][r] = v.clone();
                }
            }
        }
    }
    if qos(&pod["spec"]) != qos(&after["spec"]) {
        return status(422, "Invalid", &format!("Pod \"{name}\" is invalid: metadata: Invalid value: \"{}\": Pod QOS Class may not change as a result of resizing", qos(&after["spec"])));
    }
    if minor < 34 {
        for (before, now) in pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(after["spec"]["containers"].as_array().unwrap())
        {
            let lowered = match (
                parse_memory(&before["resources"]["limits"]["memory"]),
                parse_memory(&now["resources"]["limits"]["memory"]),
            ) {
                (Some(b), Some(n)) => n < b,
                _ => false,
            };
            let restarts = before["resizePolicy"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["resourceName"] == "memory" && p["restartPolicy"] == "RestartContainer");
            if lowered && !restarts {
                return status(422, "Invalid", &format!("Pod \"{name}\" is invalid: spec.containers[0].resources.limits[memory]: Forbidden: memory limits cannot be decreased unless resizePolicy is RestartContainer"));
            }
        }
    }
    if q.get("dryRun").map(String::as_str) == Some("All") {
        return Json(after).into_response();
    }
    let rv: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    after["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    if s.infeasible.contains(&name) {
        after["status"]["conditions"] = json!([{
            "type": "PodResizePending", "status": "True", "reason": "Infeasible",
            "message": "Node didn't have enough capacity: cpu, requested: 9000, capacity: 4000"
        }]);
    } else {
        let resources: Vec<Value> = after["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                       "restartCount": 0, "resources": c["resources"]})
            })
            .collect();
        after["status"]["containerStatuses"] = json!(resources);
    }
    s.pods.insert(key, after.clone());
    Json(after).into_response()
}
