//! `/api/v1/reports`: stored fleet reports — the list, the latest and one by id, each as
//! JSON, Markdown, HTML or CSV (`?format=`).

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::query::{check_names, limit_param, RawParams};
use super::AppState;
use crate::report::{self, Format, Report, Summary};
use crate::store::StoredReport;

/// Reports listed when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most reports one list returns.
pub const MAX_LIMIT: usize = 1000;

/// A stored report without its body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportItem {
    /// Report id, for `/api/v1/reports/{id}`.
    pub id: i64,
    /// Unix seconds it was generated at.
    pub generated_at: i64,
    /// Its fleet summary.
    pub summary: Summary,
}

/// Stored reports, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportList {
    /// Reports in this answer.
    pub count: usize,
    /// The reports.
    pub items: Vec<ReportItem>,
}

/// Stored reports, newest first.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports",
    params(("limit" = Option<usize>, Query, description = "At most this many, 1 to 1000 (default 50)")),
    responses(
        (status = 200, description = "Reports, newest first", body = ReportList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<ReportList>, ApiError> {
    let p = check_names(&raw, &["limit"])?;
    let limit = limit_param(p.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let items = state
        .store
        .list_reports(limit)
        .await?
        .iter()
        .map(|listing| {
            Ok(ReportItem {
                id: listing.id,
                generated_at: listing.generated_at,
                summary: report::decode_summary(listing)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(ReportList {
        count: items.len(),
        items,
    }))
}

/// The newest report.
#[utoipa::path(get, path = "/api/v1/reports/latest", tag = "reports",
    params(("format" = Option<String>, Query, description = "json (default), md, html or csv")),
    responses(
        (status = 200, description = "The report in the format asked for", content(
            (Report = "application/json"),
            (String = "text/markdown"),
            (String = "text/html"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 404, description = "No report generated yet", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub async fn latest(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Response, ApiError> {
    let format = format_param(&raw)?;
    let stored = state.store.latest_report().await?.ok_or_else(|| {
        ApiError::NotFound(
            "no report has been generated yet (`rightsizer report`, or wait for the schedule)"
                .into(),
        )
    })?;
    rendered(&stored, format)
}

/// One report by id.
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports",
    params(
        ("id" = i64, Path, description = "Report id"),
        ("format" = Option<String>, Query, description = "json (default), md, html or csv"),
    ),
    responses(
        (status = 200, description = "The report in the format asked for", content(
            (Report = "application/json"),
            (String = "text/markdown"),
            (String = "text/html"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 404, description = "No such report", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    ))]
pub async fn by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(raw): Query<RawParams>,
) -> Result<Response, ApiError> {
    let format = format_param(&raw)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "path parameter `id` must be an integer report id; got `{id}`"
        ))
    })?;
    let stored = state
        .store
        .report(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no report with id {id}")))?;
    rendered(&stored, format)
}

/// The `format` parameter, the only one these endpoints take.
fn format_param(raw: &RawParams) -> Result<Format, ApiError> {
    let p = check_names(raw, &["format"])?;
    match p.get("format") {
        None => Ok(Format::Json),
        Some(v) => Format::parse(v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter `format` must be one of {}; got `{v}`",
                Format::NAMES.join(", ")
            ))
        }),
    }
}

/// A stored report rendered, with its content type and a file name carrying its id.
fn rendered(stored: &StoredReport, format: Format) -> Result<Response, ApiError> {
    let report: Report = report::decode(stored)?;
    let disposition = format!(
        "inline; filename=\"rightsizer-report-{}.{}\"",
        stored.id,
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        report::render(&report, format),
    )
        .into_response())
}
