//! Pull requests (GitHub) and merge requests (GitLab) through their REST
//! APIs: find the open one for the branch and update it, or open one. The
//! token goes in a header only; it is never logged and never part of an
//! error (and is masked should a server echo it back).

use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tracing::{debug, instrument};

use super::{GitopsError, PullRequestAction, PullRequestReport};

/// Environment variable holding the forge token.
pub const TOKEN_ENV: &str = "RIGHTSIZER_GIT_TOKEN";

/// Which forge API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise (`/repos/{owner}/{repo}/pulls`).
    GitHub,
    /// GitLab, hosted or self-managed (`/projects/{id}/merge_requests`).
    GitLab,
}

impl ForgeKind {
    /// The public API root: `https://api.github.com` or `https://gitlab.com/api/v4`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "https://api.github.com",
            ForgeKind::GitLab => "https://gitlab.com/api/v4",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::GitLab => "GitLab",
        }
    }
}

/// Where to open the pull request, and with which token. `Debug` shows the
/// token as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// GitHub or GitLab.
    pub kind: ForgeKind,
    /// API root, e.g. `https://github.example.com/api/v3` for GitHub Enterprise.
    pub base_url: String,
    /// `owner/name` on GitHub; project id or `group/project` path on GitLab.
    pub repo: String,
    /// The branch the pull request targets.
    pub base_branch: String,
    /// API token (GitHub: `repo` scope or pull-requests write; GitLab: `api` scope).
    pub token: SecretString,
    /// Largest answer read, in bytes (`gitops.forge_max_response_bytes`).
    pub max_response_bytes: u64,
}

/// Default of [`ForgeConfig::max_response_bytes`]: 16 MiB; a page of pull requests is a
/// few hundred KB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;

impl ForgeConfig {
    /// A configuration for the forge's public API root.
    pub fn new(
        kind: ForgeKind,
        repo: impl Into<String>,
        base_branch: impl Into<String>,
        token: SecretString,
    ) -> Self {
        ForgeConfig {
            kind,
            base_url: kind.default_base_url().to_string(),
            repo: repo.into(),
            base_branch: base_branch.into(),
            token,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Reads the forge token from `RIGHTSIZER_GIT_TOKEN`, else from `file`.
pub fn read_token(file: Option<&Path>) -> Result<SecretString, GitopsError> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        if !token.trim().is_empty() {
            return Ok(SecretString::from(token.trim().to_string()));
        }
    }
    let Some(file) = file else {
        return Err(GitopsError::Options(format!(
            "a pull request needs a token: set {TOKEN_ENV} or give a token file"
        )));
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        GitopsError::Options(format!("cannot read token file {}: {e}", file.display()))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(GitopsError::Options(format!(
            "token file {} is empty",
            file.display()
        )));
    }
    Ok(SecretString::from(token.to_string()))
}

/// Failures talking to the forge. None of them contains the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// 401, or 403 without rate-limit signs: the token is missing, wrong or lacks scope.
    #[error("{forge} authentication failed (HTTP {status}): {message} (check {TOKEN_ENV} and its scopes)")]
    Auth {
        /// GitHub or GitLab.
        forge: &'static str,
        /// HTTP status.
        status: u16,
        /// The forge's message.
        message: String,
    },
    /// 429, or 403 with `x-ratelimit-remaining: 0` or `retry-after`.
    #[error("{forge} rate limit exceeded (HTTP {status}): retry {retry}")]
    RateLimited {
        /// GitHub or GitLab.
        forge: &'static str,
        /// HTTP status.
        status: u16,
        /// When to retry, in words ("after 60 s", "after 2024-05-01T12:00:00Z (in 1800 s)").
        retry: String,
        /// Seconds to wait, when the forge said.
        retry_after_secs: Option<u64>,
    },
    /// 422: the forge refused the request (e.g. no commits between the branches).
    #[error("{forge} rejected the pull request: {message}")]
    Rejected {
        /// GitHub or GitLab.
        forge: &'static str,
        /// The forge's message.
        message: String,
    },
    /// Any other error status.
    #[error("{forge} answered HTTP {status} to {method} {path}: {message}")]
    Status {
        /// GitHub or GitLab.
        forge: &'static str,
        /// HTTP status.
        status: u16,
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The forge's message.
        message: String,
    },
    /// Connection, TLS or timeout.
    #[error("{forge} unreachable at {url}: {message}")]
    Transport {
        /// GitHub or GitLab.
        forge: &'static str,
        /// The API root.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer grew past the cap; nothing of it was used.
    #[error("{forge} answered {method} {path} with more than {cap_bytes} bytes, the limit: raise gitops.forge_max_response_bytes if the forge is right")]
    TooLarge {
        /// GitHub or GitLab.
        forge: &'static str,
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The cap that was hit.
        cap_bytes: u64,
    },
    /// The forge answered 2xx with something that isn't the expected JSON.
    #[error("{forge} answer to {path} could not be read: {message}")]
    Decode {
        /// GitHub or GitLab.
        forge: &'static str,
        /// Request path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The configuration can't be used (bad base URL or repository).
    #[error("invalid {forge} configuration: {message}")]
    Config {
        /// GitHub or GitLab.
        forge: &'static str,
        /// What was wrong.
        message: String,
    },
}

struct Client<'a> {
    cfg: &'a ForgeConfig,
    http: reqwest::Client,
    forge: &'static str,
}

impl<'a> Client<'a> {
    fn new(cfg: &'a ForgeConfig) -> Result<Self, ForgeError> {
        let forge = cfg.kind.name();
        let http = reqwest::Client::builder()
            .user_agent(concat!("rightsizer/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ForgeError::Config {
                forge,
                message: e.to_string(),
            })?;
        Ok(Client { cfg, http, forge })
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ForgeError> {
        let mut url = Url::parse(&self.cfg.base_url).map_err(|e| ForgeError::Config {
            forge: self.forge,
            message: format!("base URL {:?}: {e}", crate::redact::url(&self.cfg.base_url)),
        })?;
        url.path_segments_mut()
            .map_err(|_| ForgeError::Config {
                forge: self.forge,
                message: format!(
                    "base URL {:?} can't have a path",
                    crate::redact::url(&self.cfg.base_url)
                ),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn redact(&self, s: &str) -> String {
        let token = self.cfg.token.expose_secret();
        if token.len() >= 4 {
            s.replace(token, "***")
        } else {
            s.to_string()
        }
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, ForgeError> {
        let path = url.path().to_string();
        let mut req = self.http.request(method.clone(), url).query(query);
        req = match self.cfg.kind {
            ForgeKind::GitHub => req
                .bearer_auth(self.cfg.token.expose_secret())
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28"),
            ForgeKind::GitLab => req.header("private-token", self.cfg.token.expose_secret()),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        debug!(forge = self.forge, %method, %path, "forge request");
        let transport = |e: reqwest::Error| ForgeError::Transport {
            forge: self.forge,
            url: crate::redact::url(&self.cfg.base_url),
            message: self.redact(&without_url(&e)),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = self.read_capped(&mut resp).await.map_err(|e| match e {
            Some(e) => transport(e),
            None => ForgeError::TooLarge {
                forge: self.forge,
                method: method.to_string(),
                path: path.clone(),
                cap_bytes: self.cfg.max_response_bytes,
            },
        })?;
        if !status.is_success() {
            return Err(self.classify(status, &headers, &text, &method, &path));
        }
        serde_json::from_str(&text).map_err(|e| ForgeError::Decode {
            forge: self.forge,
            path,
            message: format!("{e}: {}", self.redact(&snippet(&text))),
        })
    }

    /// The body as text, read as it arrives and abandoned at the first byte past the cap
    /// (`Err(None)`).
    async fn read_capped(
        &self,
        resp: &mut reqwest::Response,
    ) -> Result<String, Option<reqwest::Error>> {
        let cap = self.cfg.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(None);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(Some)? {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(None);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        method: &Method,
        path: &str,
    ) -> ForgeError {
        let header = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.get(*n))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let message = self.redact(&forge_message(body));
        let remaining_zero =
            header(&["x-ratelimit-remaining", "ratelimit-remaining"]).as_deref() == Some("0");
        let retry_after = header(&["retry-after"]).and_then(|v| v.parse::<u64>().ok());
        let reset =
            header(&["x-ratelimit-reset", "ratelimit-reset"]).and_then(|v| v.parse::<i64>().ok());
        let code = status.as_u16();
        let limited = code == 429 || (code == 403 && (remaining_zero || retry_after.is_some()));
        if limited {
            let now = chrono::Utc::now().timestamp();
            let (retry, secs) = match (retry_after, reset) {
                (Some(secs), _) => (format!("after {secs} s"), Some(secs)),
                (None, Some(at)) => {
                    let when = chrono::DateTime::from_timestamp(at, 0)
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| at.to_string());
                    let wait = (at - now).max(0) as u64;
                    (format!("after {when} (in {wait} s)"), Some(wait))
                }
                (None, None) => ("later (the forge gave no reset time)".to_string(), None),
            };
            return ForgeError::RateLimited {
                forge: self.forge,
                status: code,
                retry,
                retry_after_secs: secs,
            };
        }
        match code {
            401 | 403 => ForgeError::Auth {
                forge: self.forge,
                status: code,
                message,
            },
            422 => ForgeError::Rejected {
                forge: self.forge,
                message,
            },
            _ => ForgeError::Status {
                forge: self.forge,
                status: code,
                method: method.to_string(),
                path: path.to_string(),
                message,
            },
        }
    }
}

/// The error with its causes; any URL in it (reqwest prints the request's) is redacted.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    crate::redact::text(&msg)
}

fn snippet(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The human part of a forge error body: GitHub's `message` and `errors`,
/// GitLab's `message` (string, list or object) or `error`.
fn forge_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return if body.trim().is_empty() {
            "(empty body)".into()
        } else {
            snippet(body)
        };
    };
    let flat = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    if let Some(m) = v.get("message").or_else(|| v.get("error")) {
        parts.push(flat(m));
    }
    if let Some(Value::Array(errors)) = v.get("errors") {
        for e in errors {
            let text = e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    let field = e.get("field").and_then(Value::as_str).unwrap_or("");
                    let code = e.get("code").and_then(Value::as_str)?;
                    Some(format!("{field} {code}").trim().to_string())
                })
                .unwrap_or_else(|| e.to_string());
            parts.push(text);
        }
    }
    if parts.is_empty() {
        snippet(body)
    } else {
        snippet(&parts.join(": "))
    }
}

fn number(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn url_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Opens a pull/merge request from `branch`, or updates the open one.
#[instrument(skip_all, fields(forge = ?cfg.kind, repo = %cfg.repo, branch))]
pub(crate) async fn upsert_pull_request(
    cfg: &ForgeConfig,
    branch: &str,
    title: &str,
    body: &str,
) -> Result<PullRequestReport, ForgeError> {
    let client = Client::new(cfg)?;
    match cfg.kind {
        ForgeKind::GitHub => github(&client, branch, title, body).await,
        ForgeKind::GitLab => gitlab(&client, branch, title, body).await,
    }
}

async fn github(
    c: &Client<'_>,
    branch: &str,
    title: &str,
    body: &str,
) -> Result<PullRequestReport, ForgeError> {
    let cfg = c.cfg;
    let (owner, name) = cfg.repo.split_once('/').ok_or_else(|| ForgeError::Config {
        forge: c.forge,
        message: format!("repository {:?} must be owner/name", cfg.repo),
    })?;
    upsert(
        c,
        Dialect {
            collection: vec!["repos", owner, name, "pulls"],
            find: vec![("head", format!("{owner}:{branch}")), ("state", "open".into())],
            noun: "pull requests",
            id_key: "number",
            id_missing: "no pull request number",
            update: Method::PATCH,
            update_body: json!({ "title": title, "body": body }),
            create_body: json!({ "title": title, "head": branch, "base": cfg.base_branch, "body": body }),
            url_key: "html_url",
        },
    )
    .await
}

async fn gitlab(
    c: &Client<'_>,
    branch: &str,
    title: &str,
    body: &str,
) -> Result<PullRequestReport, ForgeError> {
    let cfg = c.cfg;
    upsert(
        c,
        Dialect {
            collection: vec!["projects", &cfg.repo, "merge_requests"],
            find: vec![("source_branch", branch.into()), ("state", "opened".into())],
            noun: "merge requests",
            id_key: "iid",
            id_missing: "no merge request iid",
            update: Method::PUT,
            update_body: json!({ "title": title, "description": body }),
            create_body: json!({
                "source_branch": branch,
                "target_branch": cfg.base_branch,
                "title": title,
                "description": body,
            }),
            url_key: "web_url",
        },
    )
    .await
}

/// Where a forge keeps its pull (merge) requests and what it calls their parts: GitHub's
/// pulls API and GitLab's merge requests API differ only in these.
struct Dialect<'a> {
    /// Path segments of the list of requests, also where a new one is created.
    collection: Vec<&'a str>,
    /// Query that lists the open request from our branch.
    find: Vec<(&'static str, String)>,
    noun: &'static str,
    /// The field that numbers a request in its URL.
    id_key: &'static str,
    id_missing: &'static str,
    update: Method,
    update_body: Value,
    create_body: Value,
    /// The field holding the request's page for people.
    url_key: &'static str,
}

/// Updates the open request from the branch in `d.find`, or creates one.
async fn upsert(c: &Client<'_>, d: Dialect<'_>) -> Result<PullRequestReport, ForgeError> {
    let list_url = c.url(&d.collection)?;
    let query: Vec<(&str, &str)> = d.find.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let open = c.call(Method::GET, list_url.clone(), &query, None).await?;
    let list = open.as_array().ok_or_else(|| ForgeError::Decode {
        forge: c.forge,
        path: list_url.path().to_string(),
        message: format!("expected a list of {}", d.noun),
    })?;
    let decode = |v: &Value, path: &str| {
        number(v, d.id_key).ok_or_else(|| ForgeError::Decode {
            forge: c.forge,
            path: path.to_string(),
            message: d.id_missing.into(),
        })
    };
    if let Some(existing) = list.first() {
        let id = decode(existing, list_url.path())?.to_string();
        let mut segments = d.collection.clone();
        segments.push(&id);
        let url = c.url(&segments)?;
        let path = url.path().to_string();
        let updated = c.call(d.update, url, &[], Some(d.update_body)).await?;
        return Ok(PullRequestReport {
            number: decode(&updated, &path)?,
            url: url_of(&updated, d.url_key),
            action: PullRequestAction::Updated,
        });
    }
    let created = c
        .call(Method::POST, list_url.clone(), &[], Some(d.create_body))
        .await?;
    Ok(PullRequestReport {
        number: decode(&created, list_url.path())?,
        url: url_of(&created, d.url_key),
        action: PullRequestAction::Created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forge_messages() {
        assert_eq!(
            forge_message(
                r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"No commits between main and x"}]}"#
            ),
            "Validation Failed: No commits between main and x"
        );
        assert_eq!(
            forge_message(
                r#"{"message":["Another open merge request already exists for this source branch: !7"]}"#
            ),
            "Another open merge request already exists for this source branch: !7"
        );
        assert_eq!(
            forge_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let cfg = ForgeConfig::new(
            ForgeKind::GitHub,
            "o/r",
            "main",
            SecretString::from("ghp_secret".to_string()),
        );
        assert!(!format!("{cfg:?}").contains("ghp_secret"));
    }

    #[test]
    fn gitlab_project_paths_are_one_segment() {
        let cfg = ForgeConfig::new(
            ForgeKind::GitLab,
            "group/sub/project",
            "main",
            SecretString::from("t".to_string()),
        );
        let c = Client::new(&cfg).unwrap();
        let url = c.url(&["projects", &cfg.repo, "merge_requests"]).unwrap();
        assert_eq!(
            url.path(),
            "/api/v4/projects/group%2Fsub%2Fproject/merge_requests"
        );
    }
}
