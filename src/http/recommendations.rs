//! `/api/v1/recommendations`: the fleet list (filters, sorting, cursor pages, CSV) and one
//! workload's containers.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::query::{self, check_names, Format, ListQuery, RawParams};
use super::AppState;
use crate::model::Recommendation;

/// A page of recommendations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecommendationPage {
    /// Items on this page.
    pub count: usize,
    /// Matches in total.
    pub total: usize,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The recommendations.
    #[schema(value_type = Vec<Recommendation>)]
    pub items: Vec<std::sync::Arc<Recommendation>>,
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// The fleet list.
#[utoipa::path(
    get,
    path = "/api/v1/recommendations",
    tag = "recommendations",
    params(
        ("cluster" = Option<String>, Query, description = "Exact cluster"),
        ("namespace" = Option<String>, Query, description = "Namespace, exact or a glob (`shop-*`)"),
        ("kind" = Option<String>, Query, description = "Workload kind, e.g. Deployment"),
        ("name" = Option<String>, Query, description = "Workload name, exact or a glob"),
        ("selector" = Option<String>, Query, description = "Label selector (`app=api,tier!=db`); labels come from the Kubernetes API source"),
        ("severity" = Option<String>, Query, description = "info, warning or critical"),
        ("confidence" = Option<String>, Query, description = "low, medium or high"),
        ("status" = Option<String>, Query, description = "ok, no-change or insufficient-data"),
        ("min_savings" = Option<f64>, Query, description = "Only recommendations saving at least this much per month"),
        ("sort" = Option<String>, Query, description = "savings (default), severity or name"),
        ("order" = Option<String>, Query, description = "asc or desc (default: desc, asc for name)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("format" = Option<String>, Query, description = "json (default) or csv (every match, no pages); also Accept: text/csv"),
    ),
    responses(
        (status = 200, description = "A page of recommendations (or CSV)", body = RecommendationPage),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Token required", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(raw): Query<RawParams>,
) -> Result<Response, ApiError> {
    let q = ListQuery::parse(&raw, wants_csv(&headers))?;
    let snapshot = state.snapshot.get().await?;
    let page = query::page(&snapshot, &q);
    if q.format == Format::Csv {
        let recs: Vec<Recommendation> = page
            .items
            .iter()
            .map(|&i| (*snapshot.recommendations[i]).clone())
            .collect();
        let mut body = Vec::new();
        crate::output::write(&recs, crate::output::OutputFormat::Csv, &mut body)
            .map_err(|e| ApiError::BadRequest(format!("CSV export failed: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    // The items are copied from JSON serialized when the snapshot was loaded (the shape of
    // RecommendationPage): at thousands of requests per second, serializing is the cost.
    let items_len: usize = page
        .items
        .iter()
        .map(|&i| snapshot.json[i].get().len() + 1)
        .sum();
    let mut body = String::with_capacity(items_len + 128);
    body.push_str(&format!(
        "{{\"count\":{},\"total\":{}",
        page.items.len(),
        page.total
    ));
    if let Some(cursor) = &page.next_cursor {
        body.push_str(&format!(
            ",\"next_cursor\":{}",
            serde_json::Value::from(cursor.as_str())
        ));
    }
    body.push_str(",\"items\":[");
    for (n, &i) in page.items.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(snapshot.json[i].get());
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One workload's containers (the cluster is optional when the name is unique).
#[utoipa::path(
    get,
    path = "/api/v1/recommendations/{namespace}/{kind}/{name}",
    tag = "recommendations",
    params(
        ("namespace" = String, Path, description = "Namespace"),
        ("kind" = String, Path, description = "Workload kind"),
        ("name" = String, Path, description = "Workload name"),
        ("cluster" = Option<String>, Query, description = "Cluster, when several have this workload"),
    ),
    responses(
        (status = 200, description = "The workload's containers", body = RecommendationPage),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody),
    )
)]
pub async fn one_workload(
    State(state): State<AppState>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
    Query(raw): Query<RawParams>,
) -> Result<Json<RecommendationPage>, ApiError> {
    let p = check_names(&raw, &["cluster"])?;
    let snapshot = state.snapshot.get().await?;
    let items: Vec<_> = snapshot
        .recommendations
        .iter()
        .filter(|r| {
            r.key.namespace == namespace
                && r.key.kind == kind
                && r.key.workload == name
                && p.get("cluster").is_none_or(|c| *c == r.key.cluster)
        })
        .cloned()
        .collect();
    if items.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no recommendation for {namespace}/{kind}/{name}"
        )));
    }
    Ok(Json(RecommendationPage {
        count: items.len(),
        total: items.len(),
        next_cursor: None,
        items,
    }))
}
