//! Bearer-token auth: required for the action endpoints always (no tokens configured means
//! actions are off), and for reads when configured. Tokens are compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Who may call the API.
#[derive(Clone, Default)]
pub struct AuthConfig {
    tokens: Vec<SecretString>,
    /// Whether reads need a token too.
    pub reads: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &self.tokens.len())
            .field("reads", &self.reads)
            .finish()
    }
}

impl AuthConfig {
    /// Tokens (empty ones dropped) and whether reads need one.
    pub fn new(tokens: impl IntoIterator<Item = String>, reads: bool) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(SecretString::from)
            .collect();
        AuthConfig { tokens, reads }
    }

    /// Whether any token is configured.
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        // Every token is compared, so timing does not tell which (or whether one) matched.
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| {
                acc | t.expose_secret().as_bytes().ct_eq(presented.as_bytes())
            })
            .into()
    }

    fn check(&self, request: &Request) -> Result<(), ApiError> {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(value) = header else {
            return Err(ApiError::Unauthorized(
                "missing bearer token: send Authorization: Bearer <token>".into(),
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        };
        if self.accepts(token.trim()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the bearer token is not accepted".into(),
            ))
        }
    }
}

/// Middleware for the action endpoints.
pub async fn require_for_actions(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.auth.has_tokens() {
        return ApiError::Forbidden(
            "actions are disabled: configure API tokens (RIGHTSIZER_API_TOKENS or --api-token-file)".into(),
        )
        .into_response();
    }
    match state.auth.check(&request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware for reads: a token only when configured.
pub async fn require_for_reads(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.auth.reads {
        return next.run(request).await;
    }
    match state.auth.check(&request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
