//! `/api/v1/changes`: the record of in-place resizes (and rollbacks) rightsizer sent, newest
//! first: who, what, when, before, after and what came of it.

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::query::{check_names, limit_param, RawParams};
use super::AppState;
use crate::model::ChangeRecord;

/// Changes listed when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most changes one answer holds.
pub const MAX_LIMIT: usize = 1000;

/// Recorded changes, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeList {
    /// Changes in this answer.
    pub count: usize,
    /// The changes.
    pub items: Vec<ChangeRecord>,
}

/// In-place resizes and rollbacks sent, newest first.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes",
    params(
        ("cluster" = Option<String>, Query, description = "Only this cluster"),
        ("limit" = Option<usize>, Query, description = "At most this many, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "Changes, newest first", body = ChangeList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<ChangeList>, ApiError> {
    let p = check_names(&raw, &["cluster", "limit"])?;
    let limit = limit_param(p.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let items = state
        .store
        .changes(p.get("cluster").map(String::as_str), limit)
        .await?;
    Ok(Json(ChangeList {
        count: items.len(),
        items,
    }))
}
