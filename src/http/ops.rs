//! Operations: `/healthz` (the process is up), `/readyz` (the store answers and the last
//! collection is recent enough) and `/metrics` (the service's own metrics).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use axum::Json;
use serde::Serialize;

use super::access::MayRead;
use super::error::ErrorBody;
use super::AppState;
use crate::telemetry::{label_value, metrics, ClusterLabels, SeverityLabels};

/// Liveness.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness and what decided it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not-ready`.
    pub status: String,
    /// `ok` or what failed.
    pub store: String,
    /// `ok`, `not-checked` (no collector) or how stale the collection is.
    pub collection: String,
    /// The Kubernetes API source: `not-configured`, `ok`, `syncing: …`, `degraded: …` (a
    /// resource type it may not read) or `unavailable: …`. Informational: analysis goes on
    /// from kube-state-metrics, so it never makes the service unready.
    pub kubernetes: String,
    /// Where the newest collection read history: `remote-read`, `query-range (remote read
    /// unavailable: …)`, `not-collected-yet` or `not-checked` (no collector); with several
    /// clusters, one entry per cluster (named only to callers who may read).
    /// Informational.
    pub collector_source: String,
}

/// Ready when the store answers and, with a collector, the newest collected hour is not
/// older than the configured maximum age.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(
    State(state): State<AppState>,
    may_read: Option<Extension<MayRead>>,
) -> (StatusCode, Json<Readiness>) {
    let store = match state.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store check failed");
            format!("the database is unavailable ({e})")
        }
    };
    let collection = match (&state.jobs, state.readiness_max_collection_age) {
        (Some(jobs), Some(max_age)) if jobs.can_collect() => {
            let clusters = jobs.known.lock().expect("never poisoned").clone();
            let mut problems = Vec::new();
            for cluster in &clusters {
                let check = collection_check(&state, cluster, max_age).await;
                if check != "ok" {
                    // Cluster names only for callers who may read: probes carry no token.
                    problems.push(if clusters.len() == 1 || may_read.is_none() {
                        check
                    } else {
                        format!("{cluster}: {check}")
                    });
                }
            }
            if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            }
        }
        _ => "not-checked".to_string(),
    };
    let kubernetes = state
        .jobs
        .as_ref()
        .map(|j| j.kubernetes_status())
        .unwrap_or_else(|| "not-configured".into());
    let collector_source = match &state.jobs {
        Some(jobs) if jobs.can_collect() => jobs.source_status(may_read.is_some()),
        _ => "not-checked".into(),
    };
    let ready = store == "ok" && (collection == "ok" || collection == "not-checked");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not-ready" }.into(),
            store,
            collection,
            kubernetes,
            collector_source,
        }),
    )
}

async fn collection_check(state: &AppState, cluster: &str, max_age: Duration) -> String {
    let now = chrono::Utc::now().timestamp();
    match state.store.watermark(cluster).await {
        Ok(Some(until)) if now - until <= max_age.as_secs() as i64 => "ok".into(),
        Ok(Some(until)) => format!(
            "stale: newest collected hour ended {}s ago (max {}s)",
            now - until,
            max_age.as_secs()
        ),
        Ok(None) => "nothing collected yet".into(),
        Err(_) => "the database is unavailable".into(),
    }
}

/// The OpenMetrics text exposition of the service's metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text format", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "Token required (with --api-auth-reads: its labels name clusters)", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
    ))]
pub async fn prometheus_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = metrics();
    if let Ok(snapshot) = state.snapshot.get().await {
        let mut clusters = std::collections::BTreeSet::new();
        let mut counts = std::collections::BTreeMap::new();
        for r in &snapshot.recommendations {
            clusters.insert(r.key.cluster.clone());
            *counts
                .entry((r.key.cluster.clone(), r.severity.as_str()))
                .or_insert(0i64) += 1;
        }
        for ((cluster, severity), n) in counts {
            m.recommendations
                .get_or_create(&SeverityLabels {
                    cluster: label_value(&cluster),
                    severity: severity.into(),
                })
                .set(n);
        }
        let now = chrono::Utc::now().timestamp();
        for cluster in clusters {
            if let Ok(Some(until)) = state.store.watermark(&cluster).await {
                m.collector_lag
                    .get_or_create(&ClusterLabels {
                        cluster: label_value(&cluster),
                    })
                    .set((now - until) as f64);
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
