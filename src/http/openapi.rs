//! The OpenAPI document, generated from the handlers' annotations (utoipa) and served at
//! `/api/v1/openapi.json`. `docs/openapi.json` is a checked-in copy that a test keeps equal.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "rightsizer", description = "CPU and memory requests and limits for Kubernetes containers, proven from history. Reads need a bearer token only when the server requires it; actions always do."),
    paths(
        super::recommendations::list,
        super::recommendations::one_workload,
        super::workloads::detail,
        super::workloads::patch,
        super::fleet::clusters,
        super::fleet::namespaces,
        super::fleet::findings,
        super::changes::list,
        super::reports::list,
        super::reports::latest,
        super::reports::by_id,
        super::runs::collect,
        super::runs::analyze,
        super::runs::run,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::prometheus_metrics,
        super::recommendation_metrics::recommendation_metrics,
        openapi_json,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "recommendations", description = "What each container should request"),
        (name = "workloads", description = "One workload: evidence, backtest, impact, findings, patch"),
        (name = "fleet", description = "Clusters, namespaces and findings with totals"),
        (name = "changes", description = "In-place resizes and rollbacks sent, as recorded"),
        (name = "reports", description = "Stored fleet reports as JSON, Markdown, HTML or CSV"),
        (name = "runs", description = "Trigger and follow collection and analysis"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
