//! Sizing at admission: a mutating webhook (`POST /admission/v1/mutate-pods`, AdmissionReview
//! v1) that gives new pods of opted-in namespaces their recommended requests and limits, so
//! CronJob and Job pods (gone before any pull request lands) and pods a Deployment starts
//! before its template changes run with the right values. The template is never edited; the
//! pull request stays the durable record.
//!
//! It sits in every pod creation's path, so it never blocks one: it always answers
//! `allowed: true` (a malformed review gets a warning and no patch), reads recommendations from
//! memory (refreshed in the background, never per request) and patches only the containers'
//! `resources` (as JSON Patch, RFC 6902), keeping any resource other than CPU and memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::model::{Confidence, Recommendation, Resources, Status};
use crate::store::{RecommendationFilter, Store, StoreError};

/// The path the MutatingWebhookConfiguration calls.
pub const PATH: &str = "/admission/v1/mutate-pods";

/// Annotation recording what the webhook set, for whoever wonders where a value came from.
pub const SIZED_ANNOTATION: &str = "rightsizer.io/sized-at-admission";

/// Recommendations by `(namespace, kind, workload)`: each container's values.
type Index = HashMap<(String, String, String), Vec<(String, Resources)>>;

/// What the webhook answers from.
#[derive(Clone)]
pub struct AdmissionState {
    store: Arc<dyn Store>,
    cluster: String,
    min_confidence: Confidence,
    index: Arc<RwLock<Arc<Index>>>,
}

impl AdmissionState {
    /// Sizing from the recommendations of `cluster` in `store` with at least `min_confidence`;
    /// empty until [`AdmissionState::refresh`] runs.
    pub fn new(store: Arc<dyn Store>, cluster: String, min_confidence: Confidence) -> Self {
        AdmissionState {
            store,
            cluster,
            min_confidence,
            index: Arc::new(RwLock::new(Arc::new(Index::new()))),
        }
    }

    /// Reloads the recommendations from the store; returns how many workloads it sizes.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let recs = self
            .store
            .recommendations(&RecommendationFilter {
                cluster: Some(self.cluster.clone()),
                ..RecommendationFilter::default()
            })
            .await?;
        let index = index(&recs, self.min_confidence);
        let n = index.len();
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
        Ok(n)
    }

    /// Refreshes every `every` until `stop` turns true; a failed refresh keeps the last
    /// index (logged), so a database going away does not unsize new pods.
    pub async fn refresh_every(
        self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match self.refresh().await {
                Ok(n) => tracing::debug!(workloads = n, "admission: recommendations reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "admission: cannot reload recommendations; keeping the last ones")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn snapshot(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Only proposals the applier would also act on.
fn index(recs: &[Recommendation], min_confidence: Confidence) -> Index {
    let mut out = Index::new();
    for r in recs
        .iter()
        .filter(|r| r.status == Status::Ok && r.confidence >= min_confidence)
    {
        out.entry((
            r.key.namespace.clone(),
            r.key.kind.clone(),
            r.key.workload.clone(),
        ))
        .or_default()
        .push((r.key.container.clone(), r.recommended));
    }
    out
}

/// The webhook's own router: the mutate endpoint and `/healthz`, served on its TLS listener.
pub fn router(state: AdmissionState) -> Router {
    Router::new()
        .route(PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn mutate(State(state): State<AdmissionState>, body: Bytes) -> Json<Value> {
    Json(review(&state.snapshot(), &body))
}

/// The AdmissionReview answer to `body`: always allowed, with a patch when the pod's workload
/// has recommendations, with a warning when the review could not be read.
pub fn review(index: &Index, body: &[u8]) -> Value {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let uid = parsed
        .as_ref()
        .ok()
        .and_then(|v| v["request"]["uid"].as_str())
        .unwrap_or("")
        .to_string();
    let (patch, warning) = match parsed {
        Err(e) => (
            None,
            Some(format!(
                "rightsizer: the AdmissionReview is not JSON ({e}); pod admitted unchanged"
            )),
        ),
        Ok(v) => match decide(index, &v["request"]) {
            Ok(patch) => (patch, None),
            Err(why) => (
                None,
                Some(format!("rightsizer: {why}; pod admitted unchanged")),
            ),
        },
    };
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(ops) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ops.to_string()));
    }
    if let Some(w) = warning {
        tracing::warn!(uid = %uid, warning = %w, "admission");
        response["warnings"] = json!([w]);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The JSON Patch for one request, `None` when nothing changes, an error when the request
/// cannot be read.
fn decide(index: &Index, request: &Value) -> Result<Option<Value>, String> {
    if !request.is_object() {
        return Err("the AdmissionReview has no request".into());
    }
    if request["kind"]["kind"] != "Pod" || request["operation"] != "CREATE" {
        return Ok(None); // not ours: only pod creations are sized
    }
    let pod: Pod = serde_json::from_value(request["object"].clone())
        .map_err(|e| format!("the pod in the request does not decode ({e})"))?;
    let namespace = request["namespace"]
        .as_str()
        .or(pod.metadata.namespace.as_deref())
        .ok_or("the request names no namespace")?;
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let opted_out = |k: &str, v: &str| {
        annotations
            .get(k)
            .is_some_and(|a| a.eq_ignore_ascii_case(v))
    };
    if opted_out("rightsizer.io/ignore", "true") || opted_out("rightsizer.io/apply", "false") {
        return Ok(None);
    }
    let Some(sizes) = workload(index, namespace, &pod) else {
        return Ok(None);
    };
    let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
    let mut ops = Vec::new();
    let mut sized = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let Some((_, r)) = sizes.iter().find(|(name, _)| *name == c.name) else {
            continue;
        };
        let current = request["object"]["spec"]["containers"][i]["resources"].clone();
        let resources = merged(&current, r);
        if resources == current {
            continue;
        }
        ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/resources"), "value": resources}));
        sized.push(c.name.clone());
    }
    if ops.is_empty() {
        return Ok(None);
    }
    if pod.metadata.annotations.is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    ops.push(json!({
        "op": "add",
        "path": format!("/metadata/annotations/{}", SIZED_ANNOTATION.replace('~', "~0").replace('/', "~1")),
        "value": sized.join(","),
    }));
    Ok(Some(Value::Array(ops)))
}

/// The recommendations of the workload owning `pod`: its controller, the ReplicaSet's
/// Deployment (the ReplicaSet's name is the Deployment's plus `-<pod-template-hash>`) or the
/// Job's CronJob (the Job's name is the CronJob's plus `-<scheduled minute>`). No API call:
/// this runs in every pod creation's path.
fn workload<'a>(
    index: &'a Index,
    namespace: &str,
    pod: &Pod,
) -> Option<&'a Vec<(String, Resources)>> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    let get = |kind: &str, name: &str| {
        index.get(&(namespace.to_string(), kind.to_string(), name.to_string()))
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            let deployment = match hash {
                Some(h) => owner.name.strip_suffix(&format!("-{h}"))?,
                None => owner.name.rsplit_once('-')?.0,
            };
            get("Deployment", deployment)
        }
        "Job" => {
            let cronjob = owner
                .name
                .rsplit_once('-')
                .filter(|(_, minute)| {
                    !minute.is_empty() && minute.bytes().all(|b| b.is_ascii_digit())
                })
                .map(|(name, _)| name);
            cronjob
                .and_then(|c| get("CronJob", c))
                .or_else(|| get("Job", &owner.name))
        }
        kind @ ("StatefulSet" | "DaemonSet") => get(kind, &owner.name),
        _ => None,
    }
}

/// `current` (a container's `resources` as sent) with CPU and memory requests and limits set
/// from `r`; any other resource (ephemeral storage, GPUs) and any other field kept.
fn merged(current: &Value, r: &Resources) -> Value {
    let mut out = if current.is_object() {
        current.clone()
    } else {
        json!({})
    };
    let values = [
        (
            "requests",
            "cpu",
            r.cpu_request_millicores.map(crate::quantity::cpu),
        ),
        (
            "limits",
            "cpu",
            r.cpu_limit_millicores.map(crate::quantity::cpu),
        ),
        (
            "requests",
            "memory",
            r.memory_request_bytes.map(crate::quantity::memory),
        ),
        (
            "limits",
            "memory",
            r.memory_limit_bytes.map(crate::quantity::memory),
        ),
    ];
    for (section, resource, value) in values {
        let Some(value) = value else { continue };
        if !out[section].is_object() {
            out[section] = json!({});
        }
        out[section][resource] = json!(value);
    }
    out
}

/// The webhook's TLS server configuration from PEM files (the certificate chain, then the
/// private key), as mounted from a Secret (cert-manager or by hand).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| format!("webhook certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "webhook certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("webhook key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("webhook certificate and key do not make a TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the webhook over TLS on `listener` until `stop` turns true. The certificate files
/// are re-read when they change (checked every `reload_every`): mounted Secrets are updated in
/// place when cert-manager renews them.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AdmissionState,
    (cert, key): (std::path::PathBuf, std::path::PathBuf),
    reload_every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    use axum_server::tls_rustls::RustlsConfig;
    let rustls = RustlsConfig::from_config(Arc::new(tls_config(&cert, &key)?));
    let handle = axum_server::Handle::new();
    let reloader = {
        let (rustls, handle) = (rustls.clone(), handle.clone());
        let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen = (mtime(&cert), mtime(&key));
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(reload_every) => {}
                    _ = stop.changed() => {
                        handle.graceful_shutdown(Some(Duration::from_secs(10)));
                        return;
                    }
                }
                let now = (mtime(&cert), mtime(&key));
                if now == seen {
                    continue;
                }
                match tls_config(&cert, &key) {
                    Ok(c) => {
                        rustls.reload_from_config(Arc::new(c));
                        seen = now;
                        tracing::info!(cert = %cert.display(), "webhook certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook certificate changed but does not load; keeping the old one")
                    }
                }
            }
        }
    };
    tokio::spawn(reloader);
    axum_server::from_tcp_rustls(listener, rustls)
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
        .map_err(|e| format!("webhook listener: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::testing::{proposal, resources};

    const MI: i64 = 1 << 20;

    fn idx() -> Index {
        let mut web = proposal("web", Severity::Info, 1.0);
        web.recommended = resources(250, 512 * MI);
        let mut nightly = proposal("nightly", Severity::Info, 1.0);
        nightly.key.kind = "CronJob".into();
        nightly.recommended = resources(100, 128 * MI);
        let mut low = proposal("shaky", Severity::Info, 1.0);
        low.confidence = Confidence::Low;
        index(&[web, nightly, low], Confidence::Medium)
    }

    fn request(owner_kind: &str, owner: &str, resources: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE", "namespace": "shop",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "generateName": "x-", "labels": {"pod-template-hash": "5d8f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": "o", "controller": true}]},
              "spec": {"containers": [{"name": "app", "image": "app:1", "resources": resources}]}}}})
    }

    fn patch_of(answer: &Value) -> Option<Value> {
        let r = &answer["response"];
        assert_eq!(r["allowed"], true);
        let b64 = r["patch"].as_str()?;
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn sizes_deployment_and_cronjob_pods_and_keeps_other_resources() {
        let body = request(
            "ReplicaSet",
            "web-5d8f",
            json!({"limits": {"nvidia.com/gpu": "1"}}),
        );
        let answer = review(&idx(), body.to_string().as_bytes());
        assert_eq!(answer["response"]["uid"], "u-1");
        let patch = patch_of(&answer).expect("a patch");
        assert_eq!(patch[0]["path"], "/spec/containers/0/resources");
        assert_eq!(
            patch[0]["value"],
            json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"nvidia.com/gpu": "1", "cpu": "1", "memory": "512Mi"}})
        );
        let cron = request("Job", "nightly-29001440", json!({}));
        let patch = patch_of(&review(&idx(), cron.to_string().as_bytes())).expect("a patch");
        assert_eq!(patch[0]["value"]["requests"]["cpu"], "100m");
    }

    #[test]
    fn leaves_alone_what_is_not_ours_and_warns_on_what_it_cannot_read() {
        for body in [
            request("ReplicaSet", "shaky-5d8f", json!({})), // low confidence
            request("ReplicaSet", "other-5d8f", json!({})), // no recommendation
            request("StatefulSet", "web", json!({})),       // another kind
        ] {
            let answer = review(&idx(), body.to_string().as_bytes());
            assert!(patch_of(&answer).is_none(), "{answer}");
            assert!(answer["response"].get("warnings").is_none());
        }
        let mut opted = request("ReplicaSet", "web-5d8f", json!({}));
        opted["request"]["object"]["metadata"]["annotations"] =
            json!({"rightsizer.io/ignore": "true"});
        assert!(patch_of(&review(&idx(), opted.to_string().as_bytes())).is_none());
        for (body, warning) in [
            (b"{not json".to_vec(), "is not JSON"),
            (br#"{"kind":"AdmissionReview"}"#.to_vec(), "has no request"),
            (
                br#"{"request":{"uid":"u-9","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":"nope"}}}}"#.to_vec(),
                "does not decode",
            ),
        ] {
            let answer = review(&idx(), &body);
            assert_eq!(answer["response"]["allowed"], true, "never blocks a pod");
            let w = answer["response"]["warnings"][0].as_str().unwrap();
            assert!(w.contains(warning), "{w}");
        }
    }
}
