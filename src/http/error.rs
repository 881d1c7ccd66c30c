//! The one error type of the API: a status code and a JSON body
//! `{"error": {"code", "message"}}`. Server errors are logged with their cause and
//! answered without internals.

use axum::http::StatusCode;
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
    /// Nothing at that path.
    #[error("{0}")]
    NotFound(String),
    /// The store failed; details go to the log only.
    #[error("the database is unavailable")]
    Store(#[from] StoreError),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Store(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(cause) = &self {
            tracing::error!(error = %cause, "store error while serving a request");
        }
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        (self.status_code(), Json(body)).into_response()
    }
}
