//! The dashboard: server-rendered HTML over the stored recommendations. `/` is the fleet
//! (totals and a sortable, filterable, paginated table that works without JavaScript);
//! `/workloads/{cluster}/{namespace}/{kind}/{name}` shows each container's usage histogram
//! against current and recommended requests and limits, the evidence, backtest (in-sample
//! and held out), the strategy tournament, findings and a copyable patch. `/login` lets a browser in when reads need a token. CSS and JS are embedded in the binary: no CDN, works offline.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::store::StoreError;

mod chart;
pub(crate) mod fleet;
mod html;
pub(crate) mod login;
mod timeline;
pub(crate) mod workload;

pub use html::escape_html;

const APP_CSS: &str = include_str!("../../../assets/app.css");
const APP_JS: &str = include_str!("../../../assets/app.js");

/// Assets are versioned by the `?v=` the pages link them with; an hour of caching is enough
/// for a dashboard and keeps a redeploy visible soon.
const ASSET_CACHE: &str = "public, max-age=3600";

pub(crate) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An error answered as an HTML page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A query parameter is invalid; the message names it.
    #[error("invalid parameter `{param}`: {message}")]
    BadRequest {
        /// The parameter's name.
        param: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// Nothing to show at that path.
    #[error("{0}")]
    NotFound(String),
    /// The store failed; details go to the log only.
    #[error("the database is unavailable")]
    Store(#[from] StoreError),
}

impl PageError {
    fn bad(param: &str, message: impl Into<String>) -> Self {
        PageError::BadRequest {
            param: param.into(),
            message: message.into(),
        }
    }

    fn status_code(&self) -> StatusCode {
        match self {
            PageError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::Store(cause) = &self {
            tracing::error!(error = %cause, "store error while rendering a dashboard page");
        }
        let status = self.status_code();
        let title = match &self {
            PageError::BadRequest { .. } => "Bad request",
            PageError::NotFound(_) => "Not found",
            PageError::Store(_) => "Unavailable",
        };
        let param = match &self {
            PageError::BadRequest { param, .. } => Some(param.as_str()),
            _ => None,
        };
        let body = maud::html! {
            section class="error" data-param=[param] {
                h1 { (status.as_u16()) " " (title) }
                p { (self.to_string()) }
                p { a href="/" { "← back to the fleet" } }
            }
            "\n"
        };
        (status, Html(html::page(title, body))).into_response()
    }
}
