//! The one error type of the API: a status code and a JSON body
//! `{"error": {"code", "message"}}` (plus `running_id` on a 409). Server errors are logged
//! with their cause and answered without internals: no SQL, no stack traces.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::StoreError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is invalid; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// No or malformed credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials not accepted, or actions disabled.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at that path.
    #[error("{0}")]
    NotFound(String),
    /// The request body is over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A run of that kind is already going.
    #[error("{message}")]
    Conflict {
        /// What is running.
        message: String,
        /// Its id, to follow at `/api/v1/runs/{id}`.
        running_id: String,
    },
    /// The request is valid but can't be answered for this workload (`code` says why).
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable reason.
        code: &'static str,
        /// What and why.
        message: String,
    },
    /// A dependency is not configured or not available.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; details go to the log only.
    #[error("the database is unavailable")]
    Store(#[from] StoreError),
}

/// The JSON error body, as documented in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code: bad_request, unauthorized, forbidden, not_found, run_in_progress, …
    pub code: String,
    /// Human-readable message naming the parameter or resource at fault.
    pub message: String,
    /// On `run_in_progress`: the id of the running run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_id: Option<String>,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Conflict { .. } => "run_in_progress",
            ApiError::Unprocessable { code, .. } => code,
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Store(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(cause) = &self {
            tracing::error!(error = %cause, "store error while serving a request");
        }
        let running_id = match &self {
            ApiError::Conflict { running_id, .. } => Some(running_id.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
                running_id,
            },
        };
        let mut response = (self.status_code(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
