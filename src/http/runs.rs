//! `POST /api/v1/collect`, `POST /api/v1/analyze` and `GET /api/v1/runs/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::runs::{RunInfo, RunKind};

async fn start(state: &AppState, kind: RunKind) -> Result<(StatusCode, Json<RunInfo>), ApiError> {
    let Some(jobs) = state.jobs.clone() else {
        return Err(ApiError::Unavailable(
            "runs need the collector configured (a Prometheus URL)".into(),
        ));
    };
    let handle = state
        .runs
        .try_start(kind, "api")
        .await?
        .map_err(|running_id| ApiError::Conflict {
            message: format!("a {} run is already running", kind.as_str()),
            running_id,
        })?;
    let info = handle.started.clone();
    let snapshot = state.snapshot.clone();
    let store = state.store.clone();
    tokio::spawn(async move {
        let outcome = match kind {
            RunKind::Collect => jobs.collect(store.as_ref(), &handle).await,
            RunKind::Analyze => jobs.analyze(store.as_ref(), &handle).await,
        };
        snapshot.invalidate().await;
        // Logged like a scheduled run's failure: an operator reads logs, not run ids.
        if let Err(e) = &outcome {
            tracing::error!(run = %handle.id, error = %e, "run started through the API failed");
        }
        handle.finish(outcome).await;
    });
    Ok((StatusCode::ACCEPTED, Json(info)))
}

/// Starts a collection of the new hours.
#[utoipa::path(post, path = "/api/v1/collect", tag = "runs", security(("bearer" = [])),
    responses(
        (status = 202, description = "Started", body = RunInfo),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 403, description = "Token not accepted, or actions disabled", body = ErrorBody),
        (status = 409, description = "A collect run is already running (running_id)", body = ErrorBody),
        (status = 503, description = "No Prometheus configured", body = ErrorBody),
    ))]
pub async fn collect(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RunInfo>), ApiError> {
    start(&state, RunKind::Collect).await
}

/// Starts an analysis.
#[utoipa::path(post, path = "/api/v1/analyze", tag = "runs", security(("bearer" = [])),
    responses(
        (status = 202, description = "Started", body = RunInfo),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 403, description = "Token not accepted, or actions disabled", body = ErrorBody),
        (status = 409, description = "An analyze run is already running (running_id)", body = ErrorBody),
        (status = 503, description = "Not configured", body = ErrorBody),
    ))]
pub async fn analyze(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<RunInfo>), ApiError> {
    start(&state, RunKind::Analyze).await
}

/// A run's progress and outcome.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id from POST /collect or /analyze")),
    responses(
        (status = 200, body = RunInfo),
        (status = 404, body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunInfo>, ApiError> {
    state
        .runs
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))
}
