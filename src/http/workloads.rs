//! `/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}`: one workload with its
//! containers, evidence, backtest, impact and findings; and its patch.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::query::{check_names, RawParams};
use super::AppState;
use crate::fleet::savings;
use crate::model::{Finding, Recommendation, WorkloadInfo, WorkloadKey};
use crate::patch::{self, PatchError, PatchFormat};

/// A workload and everything known about it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkloadDetail {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Replicas, HPA, PDB, labels and annotations, when collected.
    pub workload: Option<WorkloadInfo>,
    /// Money per month the workload's recommendations save (negative: cost).
    pub monthly_savings: f64,
    /// Findings of every container, each once.
    pub findings: Vec<Finding>,
    /// One recommendation per container, with evidence, backtest and impact.
    #[schema(value_type = Vec<Recommendation>)]
    pub containers: Vec<Box<serde_json::value::RawValue>>,
}

async fn containers(
    state: &AppState,
    key: &WorkloadKey,
) -> Result<(Vec<Arc<Recommendation>>, Option<WorkloadInfo>), ApiError> {
    let snapshot = state.snapshot.get().await?;
    let recs = snapshot.workload(key);
    if recs.is_empty() {
        return Err(not_found(key));
    }
    Ok((recs, snapshot.workloads.get(key).cloned()))
}

fn not_found(key: &WorkloadKey) -> ApiError {
    ApiError::NotFound(format!(
        "no recommendation for {}/{}/{}/{}",
        key.cluster, key.namespace, key.kind, key.name
    ))
}

/// One workload.
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}",
    tag = "workloads",
    params(
        ("cluster" = String, Path, description = "Cluster"),
        ("namespace" = String, Path, description = "Namespace"),
        ("kind" = String, Path, description = "Workload kind"),
        ("name" = String, Path, description = "Workload name"),
    ),
    responses(
        (status = 200, description = "The workload", body = WorkloadDetail),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    Path((cluster, namespace, kind, name)): Path<(String, String, String, String)>,
    Query(raw): Query<RawParams>,
) -> Result<Json<WorkloadDetail>, ApiError> {
    check_names(&raw, &[])?;
    let key = WorkloadKey {
        cluster,
        namespace,
        kind,
        name,
    };
    let snapshot = state.snapshot.get().await?;
    let range = snapshot.workload_range(&key);
    if range.is_empty() {
        return Err(not_found(&key));
    }
    let recs = &snapshot.recommendations[range.clone()];
    let workload = snapshot.workloads.get(&key).cloned();
    let mut findings: Vec<Finding> = Vec::new();
    for f in recs.iter().flat_map(|r| r.findings.iter()) {
        if !findings.contains(f) {
            findings.push(f.clone());
        }
    }
    Ok(Json(WorkloadDetail {
        monthly_savings: recs.iter().map(|r| savings(r)).sum(),
        cluster: key.cluster,
        namespace: key.namespace,
        kind: key.kind,
        name: key.name,
        workload,
        findings,
        // Serialized once when the snapshot was loaded.
        containers: snapshot.json[range].to_vec(),
    }))
}

/// The patch that applies the workload's recommendations.
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}/patch",
    tag = "workloads",
    params(
        ("cluster" = String, Path, description = "Cluster"),
        ("namespace" = String, Path, description = "Namespace"),
        ("kind" = String, Path, description = "Workload kind"),
        ("name" = String, Path, description = "Workload name"),
        ("format" = Option<String>, Query, description = "strategic-merge (default), json-patch, kustomize or yaml"),
    ),
    responses(
        (status = 200, description = "The patch (YAML, or JSON for json-patch)", body = String, content_type = "application/yaml"),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody),
        (status = 422, description = "Nothing to change, or container positions unknown for json-patch", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    Path((cluster, namespace, kind, name)): Path<(String, String, String, String)>,
    Query(raw): Query<RawParams>,
) -> Result<Response, ApiError> {
    let p = check_names(&raw, &["format"])?;
    let format = match p.get("format") {
        None => PatchFormat::StrategicMerge,
        Some(f) => PatchFormat::parse(f).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter `format` must be one of {}; got `{f}`",
                PatchFormat::NAMES
            ))
        })?,
    };
    let key = WorkloadKey {
        cluster,
        namespace,
        kind,
        name,
    };
    let (recs, _) = containers(&state, &key).await?;
    let recs: Vec<Recommendation> = recs.iter().map(|r| (**r).clone()).collect();
    match patch::render(format, &key, &recs, None) {
        Ok(body) => Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response()),
        Err(e @ PatchError::NothingToChange(_)) => Err(ApiError::Unprocessable {
            code: "nothing_to_change",
            message: e.to_string(),
        }),
        Err(e @ PatchError::NeedsContainerOrder(_)) => Err(ApiError::Unprocessable {
            code: "container_order_unknown",
            message: e.to_string(),
        }),
    }
}
