//! The API tokens and the credentials that prove one: `Authorization: Bearer <token>`, or
//! the session cookie a browser gets from `POST /login`. Tokens and sessions are compared in
//! constant time. Which routes need them is decided in `access.rs`.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cookie::Cookie;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::ApiError;

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

    /// How the request proves itself: the `Authorization` header when it has one, else the
    /// session cookie. Missing or malformed credentials are a 401, refused ones a 403.
    pub fn credential(&self, headers: &HeaderMap) -> Result<Presented, ApiError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            return self.check_bearer(value.to_str().unwrap_or_default());
        }
        let Some(session) = session_cookie(headers) else {
            return Err(ApiError::Unauthorized(
                "missing bearer token: send Authorization: Bearer <token>".into(),
            ));
        };
        if self.session_valid(&session, chrono::Utc::now().timestamp()) {
            Ok(Presented::Cookie)
        } else {
            Err(ApiError::Forbidden(
                "the session has expired or its token was revoked: log in again at /login".into(),
            ))
        }
    }

    fn check_bearer(&self, value: &str) -> Result<Presented, ApiError> {
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        };
        if self.accepts(token.trim()) {
            Ok(Presented::Bearer)
        } else {
            Err(ApiError::Forbidden(
                "the bearer token is not accepted".into(),
            ))
        }
    }

    /// A session cookie value for `token`, valid for [`SESSION_TTL_SECS`] from `now`, if the
    /// token is accepted.
    pub fn open_session(&self, token: &str, now: i64) -> Option<String> {
        if !self.accepts(token.trim()) {
            return None;
        }
        let expires = now + SESSION_TTL_SECS;
        let mac = session_mac(token.trim().as_bytes(), expires);
        Some(format!("v1.{expires}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    fn session_valid(&self, value: &str, now: i64) -> bool {
        let parsed = value.strip_prefix("v1.").and_then(|rest| {
            let (expires, mac) = rest.split_once('.')?;
            Some((
                expires.parse::<i64>().ok()?,
                URL_SAFE_NO_PAD.decode(mac).ok()?,
            ))
        });
        let Some((expires, mac)) = parsed else {
            return false;
        };
        if expires <= now || expires > now + SESSION_TTL_SECS {
            return false;
        }
        // As for bearer tokens: every token is tried, so timing tells nothing.
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| {
                acc | session_mac(t.expose_secret().as_bytes(), expires)
                    .as_slice()
                    .ct_eq(&mac)
            })
            .into()
    }
}

/// Which credential a request was let in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The session cookie set by `POST /login`.
    Cookie,
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rightsizer_session";
/// How long a browser session lasts.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

/// The session's proof: an HMAC keyed by the token, so the cookie never holds the token,
/// any replica can check it without shared state, and removing a token ends its sessions.
fn session_mac(token: &[u8], expires: i64) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    mac.update(b"rightsizer session v1\0");
    mac.update(expires.to_string().as_bytes());
    mac.finalize().into_bytes().into()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={value}");
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        headers
    }

    #[test]
    fn sessions_hold_no_token_and_last_their_lifetime_only() {
        let auth = AuthConfig::new(["alpha-token".to_string(), "beta-token".to_string()], true);
        assert_eq!(auth.open_session("gamma-token", NOW), None);
        let session = auth.open_session("beta-token", NOW).unwrap();
        assert!(!session.contains("beta"), "{session}");
        assert!(auth.session_valid(&session, NOW));
        assert!(auth.session_valid(&session, NOW + SESSION_TTL_SECS - 1));
        assert!(!auth.session_valid(&session, NOW + SESSION_TTL_SECS));
        // Removing the token ends its sessions.
        let rotated = AuthConfig::new(["alpha-token".to_string()], true);
        assert!(!rotated.session_valid(&session, NOW));
    }

    #[test]
    fn forged_sessions_are_refused() {
        let auth = AuthConfig::new(["alpha-token".to_string()], true);
        let session = auth.open_session("alpha-token", NOW).unwrap();
        let (_, mac) = session.rsplit_once('.').unwrap();
        // A later expiry with the same proof, and a far-future one minted with the token.
        let extended = format!("v1.{}.{mac}", NOW + SESSION_TTL_SECS + 10);
        assert!(!auth.session_valid(&extended, NOW));
        let far = NOW + 10 * SESSION_TTL_SECS;
        let minted = format!(
            "v1.{far}.{}",
            URL_SAFE_NO_PAD.encode(session_mac(b"alpha-token", far))
        );
        assert!(
            !auth.session_valid(&minted, NOW),
            "no session outlives its lifetime"
        );
        for junk in [
            "",
            "v1.",
            "v1.x.y",
            "v2.1.AAAA",
            &session[..session.len() - 2],
        ] {
            assert!(!auth.session_valid(junk, NOW), "{junk}");
        }
    }

    #[test]
    fn the_header_wins_over_the_cookie_and_names_the_fix() {
        let auth = AuthConfig::new(["alpha-token".to_string()], true);
        let now = chrono::Utc::now().timestamp();
        let session = auth.open_session("alpha-token", now).unwrap();
        let mut headers = with_cookie(&session);
        assert_eq!(auth.credential(&headers).unwrap(), Presented::Cookie);
        headers.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        let refused = auth.credential(&headers).unwrap_err();
        assert_eq!(refused.to_string(), "the bearer token is not accepted");
        let refused = auth.credential(&with_cookie("v1.1.AAAA")).unwrap_err();
        assert!(refused.to_string().contains("log in again at /login"));
        let refused = auth.credential(&HeaderMap::new()).unwrap_err();
        assert!(refused
            .to_string()
            .contains("Authorization: Bearer <token>"));
    }
}
