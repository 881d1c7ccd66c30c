//! The HTTP API (axum): `router()` builds it, `serve()` runs it until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::jobs::JobRunner;
use crate::runs::RunRegistry;
use crate::store::Store;
use crate::telemetry::{metrics, HttpLabels};

pub mod access;
pub mod admission;
pub mod auth;
pub mod changes;
pub mod dashboard;
pub mod error;
pub mod fleet;
pub mod openapi;
pub mod ops;
pub mod query;
pub mod recommendation_metrics;
pub mod recommendations;
pub mod reports;
pub mod runs;
pub mod snapshot;
pub mod workloads;

use error::ApiError;

/// Largest request body accepted (the API takes parameters, not uploads).
const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Recommendations in memory, reloaded when the store changes.
    pub snapshot: Arc<snapshot::SnapshotCache>,
    /// Collection and analysis runs.
    pub runs: RunRegistry,
    /// What runs need; `None` when the server only serves stored data.
    pub jobs: Option<Arc<JobRunner>>,
    /// Who may call.
    pub auth: Arc<auth::AuthConfig>,
    /// `/readyz` fails when the newest collected hour is older than this.
    pub readiness_max_collection_age: Option<Duration>,
}

impl AppState {
    /// State serving `store` with no runs, no auth and a 1-second snapshot check.
    pub fn new(store: Arc<dyn Store>) -> Self {
        AppState {
            snapshot: Arc::new(snapshot::SnapshotCache::new(
                store.clone(),
                Duration::from_secs(1),
            )),
            runs: RunRegistry::new(store.clone(), crate::runs::holder()),
            store,
            jobs: None,
            auth: Arc::new(auth::AuthConfig::default()),
            readiness_max_collection_age: None,
        }
    }
}

/// The whole API. Routes come from the one table in `access.rs`, and its middleware decides
/// every request before the body is read.
pub fn router(state: AppState) -> Router {
    let (routes, gate) = access::register(state.auth.clone());
    routes
        .fallback(not_found)
        .layer(middleware::from_fn(read_body))
        .layer(middleware::from_fn_with_state(gate, access::authorize))
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Reads the whole body, up to the limit, before the handler runs: a handler that ignores
/// its body would otherwise never meet the limit, and a chunked body has no length to check.
async fn read_body(request: Request, next: Next) -> Result<Response, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the request body is over the limit of {BODY_LIMIT_BYTES} bytes: the API takes parameters, not uploads"
        ))
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, BODY_LIMIT_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "the request body could not be read: {e}"
            )))
        }
    };
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// Counts requests and their durations by matched route (not raw path: bounded labels).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    let m = metrics();
    m.http_requests.get_or_create(&labels).inc();
    m.http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Serves the API on `listener` until `shutdown` completes, finishing in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY the last segment of a response can wait for the client's delayed
    // ACK: tens of milliseconds added to a request that took one.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
