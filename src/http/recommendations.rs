//! `/api/v1/recommendations`: the fleet list and one workload's containers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;
use crate::model::Recommendation;
use crate::store::RecommendationFilter;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/recommendations", get(list))
        .route(
            "/api/v1/recommendations/{namespace}/{kind}/{name}",
            get(one_workload),
        )
}

/// Filters of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    cluster: Option<String>,
    namespace: Option<String>,
    kind: Option<String>,
}

/// A list answer.
#[derive(Debug, Serialize)]
struct Items {
    count: usize,
    items: Vec<Recommendation>,
}

fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text())))
}

fn non_empty(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() => Err(ApiError::BadRequest(format!(
            "parameter `{name}` must not be empty"
        ))),
        v => Ok(v),
    }
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Items>, ApiError> {
    let p = params(query)?;
    let filter = RecommendationFilter {
        cluster: non_empty("cluster", p.cluster)?,
        namespace: non_empty("namespace", p.namespace)?,
        kind: non_empty("kind", p.kind)?,
        workload: None,
    };
    let items = state.store.recommendations(&filter).await?;
    Ok(Json(Items {
        count: items.len(),
        items,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneParams {
    cluster: Option<String>,
}

async fn one_workload(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
    query: Result<Query<OneParams>, QueryRejection>,
) -> Result<Json<Items>, ApiError> {
    let p = params(query)?;
    let filter = RecommendationFilter {
        cluster: non_empty("cluster", p.cluster)?,
        namespace: Some(namespace.clone()),
        kind: Some(kind.clone()),
        workload: Some(name.clone()),
    };
    let items = state.store.recommendations(&filter).await?;
    if items.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no recommendation for {namespace}/{kind}/{name}"
        )));
    }
    Ok(Json(Items {
        count: items.len(),
        items,
    }))
}
