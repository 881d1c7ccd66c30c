//! The browser's way in: `GET /login` shows a token form, `POST /login` checks the token and
//! sets the session cookie (HttpOnly, SameSite=Strict, Path=/), `POST /logout` clears it.
//! A page refused for want of credentials answers this form, naming nothing it protects.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;

use super::html;
use crate::http::access::same_origin;
use crate::http::auth::{SESSION_COOKIE, SESSION_TTL_SECS};
use crate::http::error::ApiError;
use crate::http::AppState;

/// What the form posts.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after logging in.
#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

/// `GET /login`.
pub async fn form_page(Query(param): Query<NextParam>) -> Response {
    let next = local_path(param.next.as_deref());
    form(
        StatusCode::OK,
        "Enter an API token to see the dashboard.",
        next,
    )
}

/// `POST /login`: a valid token sets the session cookie and goes back to the page asked for.
pub async fn log_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    login: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return form(
            StatusCode::FORBIDDEN,
            "Log in from this server's own login page.",
            "/",
        );
    }
    let Ok(Form(login)) = login else {
        return form(
            StatusCode::BAD_REQUEST,
            "Send the form as application/x-www-form-urlencoded with a `token` field.",
            "/",
        );
    };
    let next = local_path(login.next.as_deref());
    if login.token.trim().is_empty() {
        return form(StatusCode::BAD_REQUEST, "Enter a token.", next);
    }
    if !state.auth.has_tokens() {
        return form(
            StatusCode::FORBIDDEN,
            "No API tokens are configured on this server (RIGHTSIZER_API_TOKENS or --api-token-file), so there is nothing to log in with.",
            next,
        );
    }
    let now = chrono::Utc::now().timestamp();
    let Some(session) = state.auth.open_session(&login.token, now) else {
        return form(StatusCode::FORBIDDEN, "That token is not accepted.", next);
    };
    let cookie = session_cookie(session, SESSION_TTL_SECS, &headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
}

/// `POST /logout`: clears the session cookie. The session value itself stays valid until it
/// expires (nothing is kept server-side); removing the token ends every session at once.
pub async fn log_out(headers: HeaderMap) -> Response {
    let cookie = session_cookie(String::new(), 0, &headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

/// The answer to a page request refused by the access middleware: the login form with the
/// refusal's status, leading back to `wanted` (the path the browser asked for).
pub fn refusal_page(refusal: &ApiError, wanted: &str) -> Response {
    let status = refusal.status_code();
    let message = match status {
        StatusCode::UNAUTHORIZED => "Enter an API token to see this page.".to_string(),
        _ => refusal.to_string(),
    };
    let mut response = form(status, &message, local_path(Some(wanted)));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn session_cookie(value: String, max_age_secs: i64, headers: &HeaderMap) -> String {
    // Secure only behind TLS: a plain-HTTP deployment (or `make demo`) would never get the
    // cookie back otherwise. The proxy's header can only make the cookie stricter.
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(https)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// `next` if it is a path on this server, else `/`: the form must not redirect elsewhere.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

fn form(status: StatusCode, message: &str, next: &str) -> Response {
    let body = html! {
        section class="login" {
            h1 { "Log in" }
            p class="message" { (message) }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label {
                    "API token "
                    input type="password" name="token" autocomplete="current-password" required autofocus;
                }
                " "
                button type="submit" { "Log in" }
            }
            p { "API clients send " code { "Authorization: Bearer <token>" } " instead." }
        }
        "\n"
    };
    let mut response = (status, Html(html::page("Log in", body))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
