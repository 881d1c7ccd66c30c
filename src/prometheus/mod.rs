//! A small client for Prometheus' HTTP API: `query`, `query_range` and `series`.
//!
//! Answers are checked before they are trusted: HTTP status, content type, the
//! `status`/`errorType` envelope, and string sample values (`NaN` and `±Inf`
//! are skipped and counted, never returned as numbers).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod decode;
pub mod engine;
pub mod promql;
pub mod remote_read;
pub mod sigv4;
pub mod xor;

/// Labels of one series.
pub type Labels = BTreeMap<String, String>;

/// Errors talking to Prometheus. Messages name the endpoint (through
/// [`crate::redact::url`]) but never a token or password.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The URL given for Prometheus can't be used.
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A request could not be signed (Amazon Managed Prometheus): no AWS credentials, or
    /// a source of them failed.
    #[error("cannot sign the request to {url} with AWS SigV4: {message}")]
    Signing {
        /// The endpoint that was called.
        url: String,
        /// Why.
        message: String,
    },
    /// Connection refused, DNS, TLS, timeout or a body cut short.
    #[error("Prometheus at {url} unreachable: {message}")]
    Http {
        /// The endpoint that was called.
        url: String,
        /// What went wrong.
        message: String,
        /// Whether it was a timeout.
        timeout: bool,
    },
    /// Prometheus (or a proxy) answered with an error status and no usable envelope.
    #[error("Prometheus at {url} answered HTTP {status}: {snippet}")]
    Status {
        /// The endpoint that was called.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The first bytes of the body.
        snippet: String,
    },
    /// Prometheus refused the query (`"status":"error"`).
    #[error("Prometheus rejected the query ({error_type}): {message}; query: {query}")]
    Api {
        /// `errorType` from the envelope, e.g. `bad_data`.
        error_type: String,
        /// `error` from the envelope.
        message: String,
        /// The PromQL that was sent.
        query: String,
    },
    /// The answer grew past `collector.max_response_bytes`; nothing of it was used.
    #[error("Prometheus at {url} answered more than {cap_bytes} bytes, the limit: raise collector.max_response_bytes, or lower collector.max_series_per_query or collector.chunk_hours so each answer is smaller")]
    TooLarge {
        /// The endpoint that was called.
        url: String,
        /// The cap that was hit.
        cap_bytes: u64,
    },
    /// The answer was not what the Prometheus API documents.
    #[error("unexpected answer from Prometheus at {url}: {message}")]
    Decode {
        /// The endpoint that was called.
        url: String,
        /// What did not fit.
        message: String,
    },
}

impl PromError {
    /// Short name of the failure class, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PromError::InvalidUrl { .. } => "invalid_url",
            PromError::Http { timeout: true, .. } => "timeout",
            PromError::Http { .. } => "http",
            PromError::Status { .. } => "status",
            PromError::Api { .. } => "api",
            PromError::Signing { .. } => "signing",
            PromError::Decode { .. } => "decode",
            PromError::TooLarge { .. } => "too_large",
        }
    }

    /// Whether a later attempt might succeed (network trouble or a 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            PromError::Http { .. } => true,
            PromError::Status { status, .. } => *status >= 500,
            PromError::Api { error_type, .. } => {
                matches!(error_type.as_str(), "timeout" | "canceled" | "unavailable")
            }
            _ => false,
        }
    }
}

/// How to reach Prometheus.
#[derive(Clone)]
pub struct PromConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090` (a path prefix is kept).
    pub url: String,
    /// Bearer token sent as `Authorization: Bearer …`.
    pub bearer_token: Option<SecretString>,
    /// The file `bearer_token` was read from: read again whenever it changes, because
    /// workload identity (Google Managed Prometheus, Azure Monitor) and projected
    /// service-account tokens rotate while the service runs.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Timeout for one whole request, body included.
    pub timeout: Duration,
    /// HTTP basic auth (user, password), e.g. for a proxy in front of Prometheus.
    pub basic_auth: Option<(String, SecretString)>,
    /// Extra headers on every request (e.g. `X-Scope-OrgID` for Mimir); values are secret.
    pub headers: Vec<(String, SecretString)>,
    /// PEM file with extra CA certificates to trust.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any TLS certificate. Only for testing: says so loudly in the log.
    pub insecure_skip_verify: bool,
    /// Attempts after the first for timeouts, connection errors and 5xx (never for 4xx or PromQL errors).
    pub retries: u32,
    /// First backoff; doubles each attempt, with jitter, capped at 30 s.
    pub retry_backoff: Duration,
    /// Largest answer read, in bytes; a longer one is an error, whatever
    /// `max_series_per_query` says.
    pub max_response_bytes: u64,
    /// Ask for gzip-compressed answers (`Accept-Encoding: gzip`): far fewer bytes on the
    /// wire, at the price of Prometheus' CPU to compress them.
    pub gzip: bool,
    /// Which server this is.
    pub backend: Backend,
    /// Sign every request with AWS SigV4 (Amazon Managed Prometheus), credentials from the
    /// AWS chain (see [`sigv4`]).
    pub sigv4: Option<sigv4::SigV4Config>,
}

/// Which Prometheus-compatible server answers, for what each documents differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Prometheus itself (or anything that behaves like it).
    #[default]
    Prometheus,
    /// Thanos Query: every query asks `dedup=true` and `partial_response=false`, so a store
    /// that does not answer is an error, never a silently thinner history (lower peaks,
    /// smaller requests); no remote read.
    Thanos,
    /// Grafana Mimir or Cortex, under its `/prometheus` prefix; the tenant goes in an
    /// `X-Scope-OrgID` header (`prometheus_headers`). Remote read is offered.
    Mimir,
    /// VictoriaMetrics, single (`http://vm:8428`) or cluster
    /// (`http://vmselect:8481/select/<tenant>/prometheus`); no remote read.
    Victoriametrics,
}

impl Backend {
    /// Query parameters every PromQL request to this backend carries.
    fn query_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Backend::Thanos => &[("dedup", "true"), ("partial_response", "false")],
            _ => &[],
        }
    }

    /// Why the server has no remote read to probe, when its documentation says so.
    pub fn lacks_remote_read(self) -> Option<&'static str> {
        match self {
            Backend::Thanos => Some("Thanos Query offers no remote read"),
            Backend::Victoriametrics => Some("VictoriaMetrics offers no remote read"),
            _ => None,
        }
    }
}

/// Default of [`PromConfig::max_response_bytes`]: 256 MiB, far above a chunk of 300
/// series (a few MB) yet bounded.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 << 20;

impl Default for PromConfig {
    fn default() -> Self {
        PromConfig {
            url: String::new(),
            bearer_token: None,
            bearer_token_file: None,
            timeout: Duration::from_secs(60),
            basic_auth: None,
            headers: Vec::new(),
            ca_file: None,
            insecure_skip_verify: false,
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            gzip: false,
            backend: Backend::Prometheus,
            sigv4: None,
        }
    }
}

impl std::fmt::Debug for PromConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| (user, "***")),
            )
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| (name, "***"))
                    .collect::<Vec<_>>(),
            )
            .field("ca_file", &self.ca_file)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("retries", &self.retries)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// One series of a range answer, with its finite samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Series labels (`__name__` absent after aggregation).
    pub labels: Labels,
    /// `(unix seconds, value)` pairs.
    pub samples: Vec<(i64, f64)>,
}

/// One series of an instant answer.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// Series labels.
    pub labels: Labels,
    /// Unix seconds.
    pub time: i64,
    /// The value (finite).
    pub value: f64,
}

/// A decoded answer plus what had to be skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The series.
    pub series: Vec<T>,
    /// Samples whose value was `NaN`, `+Inf` or `-Inf`, skipped.
    pub non_finite_skipped: u64,
    /// Warnings Prometheus attached to the answer.
    pub warnings: Vec<String>,
}

/// The Prometheus HTTP API client.
#[derive(Clone)]
pub struct PromClient {
    http: reqwest::Client,
    base: String,
    /// `base` as errors and logs print it.
    shown: String,
    max_response_bytes: u64,
    token: Option<BearerToken>,
    basic_auth: Option<(String, SecretString)>,
    retries: u32,
    retry_backoff: Duration,
    backend: Backend,
    sigv4: Option<(sigv4::SigV4Config, std::sync::Arc<sigv4::CredentialChain>)>,
    /// Requests allowed at Prometheus at once (held from sending to the body's last byte,
    /// not while decoding), when limited.
    in_flight: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Whether the server offers remote read, once known (see
    /// [`PromClient::remote_read_offered`]); shared by the client's clones.
    remote_read_probe: std::sync::Arc<tokio::sync::OnceCell<Result<(), String>>>,
}

/// A bearer token, and the file it is read again from when the file's modification time
/// changes (Kubernetes swaps a projected token's file atomically, so a changed time means a
/// whole new token). A read that fails or finds the file empty keeps the last good token and
/// says so in the log: the next request tries again.
#[derive(Clone)]
struct BearerToken {
    file: Option<std::sync::Arc<TokenFile>>,
    fixed: SecretString,
}

struct TokenFile {
    path: std::path::PathBuf,
    /// The modification time of the last read, and its token.
    last: std::sync::Mutex<(Option<std::time::SystemTime>, SecretString)>,
}

impl BearerToken {
    fn new(token: SecretString, path: Option<std::path::PathBuf>) -> Self {
        let file = path.map(|path| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            std::sync::Arc::new(TokenFile {
                path,
                last: std::sync::Mutex::new((modified, token.clone())),
            })
        });
        BearerToken { file, fixed: token }
    }

    /// The token to send now. A `stat` per request: microseconds, far below a query.
    fn current(&self) -> SecretString {
        let Some(file) = &self.file else {
            return self.fixed.clone();
        };
        let mut last = file.last.lock().unwrap_or_else(|e| e.into_inner());
        let modified = std::fs::metadata(&file.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified != last.0 {
            match std::fs::read_to_string(&file.path) {
                Ok(text) if !text.trim().is_empty() => {
                    *last = (modified, SecretString::from(text.trim().to_string()));
                    tracing::info!(path = %file.path.display(), "Prometheus bearer token file changed: using the new token");
                }
                Ok(_) => {
                    tracing::warn!(path = %file.path.display(), "Prometheus bearer token file is empty: keeping the previous token")
                }
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "cannot read the Prometheus bearer token file: keeping the previous token")
                }
            }
        }
        last.1.clone()
    }
}

/// Parses a Prometheus sample value; `None` for NaN and ±Inf.
pub fn parse_sample_value(s: &str) -> Result<Option<f64>, String> {
    match s {
        "NaN" | "+Inf" | "-Inf" | "Inf" => Ok(None),
        _ => {
            let v: f64 = s
                .parse()
                .map_err(|_| format!("sample value {s:?} is not a number"))?;
            Ok(v.is_finite().then_some(v))
        }
    }
}

impl PromClient {
    /// Builds a client; checks the URL and sets the timeout.
    pub fn new(config: &PromConfig) -> Result<Self, PromError> {
        let url = config.url.trim_end_matches('/').to_string();
        let invalid = |reason: String| PromError::InvalidUrl {
            url: crate::redact::url(&config.url),
            reason,
        };
        let parsed = reqwest::Url::parse(&url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("scheme must be http or https".into()));
        }
        if config.max_response_bytes == 0 {
            return Err(invalid(
                "collector.max_response_bytes must be > 0 (it bounds every answer read)".into(),
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value.expose_secret())
                .map_err(|_| invalid(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("rightsizer/", env!("CARGO_PKG_VERSION")))
            .gzip(config.gzip)
            .default_headers(headers);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("CA file {} is not PEM: {e}", path.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.insecure_skip_verify {
            tracing::warn!(url = %crate::redact::url(&url), "TLS certificate verification is OFF for Prometheus (insecure_skip_verify)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(PromClient {
            http,
            shown: crate::redact::url(&url),
            base: url,
            max_response_bytes: config.max_response_bytes,
            token: config
                .bearer_token
                .clone()
                .map(|t| BearerToken::new(t, config.bearer_token_file.clone())),
            basic_auth: config.basic_auth.clone(),
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            backend: config.backend,
            sigv4: config
                .sigv4
                .clone()
                .map(|c| (c, std::sync::Arc::new(sigv4::CredentialChain::default()))),
            in_flight: None,
            remote_read_probe: Default::default(),
        })
    }

    /// A client (sharing this one's connections) that keeps at most `n` requests at
    /// Prometheus at once. The limit covers the HTTP exchange only: answers are decoded
    /// off the async threads after their permit is returned, so a caller with more work
    /// queued than `n` keeps Prometheus at exactly `n` queries while it decodes.
    pub fn limited(&self, n: usize) -> PromClient {
        PromClient {
            in_flight: Some(std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            ..self.clone()
        }
    }

    /// Base URL, credentials masked (see [`crate::redact::url`]).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Runs `attempt`, again after a backoff when it fails transiently, at most
    /// `retries` more times. Each attempt is timed and counted in the metrics.
    async fn with_retries<T, F, Fut>(&self, endpoint: &str, attempt: F) -> Result<T, PromError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PromError>>,
    {
        let mut tries = 0;
        loop {
            match observed(endpoint, attempt()).await {
                Err(e) if e.is_transient() && tries < self.retries => {
                    tries += 1;
                    let backoff = backoff(self.retry_backoff, tries);
                    tracing::warn!(error = %e, attempt = tries, retry_in = ?backoff, "Prometheus request failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                result => return result,
            }
        }
    }

    /// Instant query at `time` (unix seconds).
    pub async fn query(&self, promql: &str, time: i64) -> Result<Answer<InstantSample>, PromError> {
        self.with_retries("query", || async {
            let params = [("query", promql.to_string()), ("time", time.to_string())];
            let (url, body) = self.post("/api/v1/query", &params).await?;
            decode_off_thread::<decode::Vector>(url, body, promql, 1).await
        })
        .await
    }

    /// Range query over `[start, end]` (unix seconds, both inclusive) at `step_secs`.
    pub async fn query_range(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step_secs: i64,
    ) -> Result<Answer<RangeSeries>, PromError> {
        self.range_answer(promql, start, end, step_secs, None).await
    }

    /// [`Self::query_range`], each series handed to `fold` as soon as it is decoded rather
    /// than kept: the answer returned holds no series, only the count of skipped values.
    /// A request that is retried hands its series to `fold` again, so
    /// folding must give the same result for a series seen twice (a maximum does).
    pub async fn query_range_folded(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step_secs: i64,
        fold: &(dyn Fn(Vec<RangeSeries>) + Sync),
    ) -> Result<Answer<RangeSeries>, PromError> {
        self.range_answer(promql, start, end, step_secs, Some(fold))
            .await
    }

    async fn range_answer(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step_secs: i64,
        fold: Option<&(dyn Fn(Vec<RangeSeries>) + Sync)>,
    ) -> Result<Answer<RangeSeries>, PromError> {
        self.with_retries("query_range", || async {
            let params = [
                ("query", promql.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step_secs.to_string()),
            ];
            let sent = self.send("/api/v1/query_range", &params).await?;
            // At most 11,000 points per series (Prometheus' own limit).
            let points = ((end - start) / step_secs.max(1) + 1).clamp(1, 11_000) as usize;
            let mut answer = self.read_matrix(sent, promql, points, fold).await?;
            if let Some(fold) = fold {
                fold(std::mem::take(&mut answer.series));
            }
            Ok(answer)
        })
        .await
    }

    /// Series matching any of `matchers` between `start` and `end`.
    pub async fn series(
        &self,
        matchers: &[&str],
        start: i64,
        end: i64,
    ) -> Result<Vec<Labels>, PromError> {
        let mut params: Vec<(&str, String)> = matchers
            .iter()
            .map(|m| ("match[]", m.to_string()))
            .collect();
        params.push(("start", start.to_string()));
        params.push(("end", end.to_string()));
        self.with_retries("series", || async {
            let (url, body) = self.post("/api/v1/series", &params).await?;
            decode_envelope(
                &url,
                &body,
                &matchers.join(" or "),
                std::marker::PhantomData::<Vec<Labels>>,
            )
        })
        .await
    }

    /// A POST of `body` to `path`, signed with AWS SigV4 when configured.
    pub(crate) async fn signed(
        &self,
        path: &str,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Result<reqwest::RequestBuilder, PromError> {
        let target = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .post(&target)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some((config, chain)) = &self.sigv4 {
            let failed = |message: String| PromError::Signing {
                url: format!("{}{}", self.shown, path),
                message,
            };
            let host = reqwest::Url::parse(&target)
                .ok()
                .and_then(|u| {
                    u.host_str()
                        .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
                })
                .unwrap_or_default();
            let credentials = chain
                .credentials()
                .await
                .map_err(|e| failed(e.to_string()))?;
            let headers = sigv4::signature_headers(
                config,
                &credentials,
                "POST",
                &target,
                &[("host", &host), ("content-type", content_type)],
                &body,
                std::time::SystemTime::now(),
            )
            .map_err(|e| failed(e.to_string()))?;
            for (name, value) in headers {
                req = req.header(name, value);
            }
        }
        Ok(req.body(body))
    }

    /// `req` with this client's credentials, if any.
    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = &self.token {
            req.bearer_auth(token.current().expose_secret())
        } else if let Some((user, password)) = &self.basic_auth {
            req.basic_auth(user, Some(password.expose_secret()))
        } else {
            req
        }
    }

    // POST with a form body: long PromQL never hits "414 Request-URI Too Large".
    async fn post(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(String, RawBody), PromError> {
        let sent = self.send(path, params).await?;
        self.finish_post(sent).await
    }

    /// Sends a POST of `params` to `path`: the answer's head, its body still to read.
    async fn send(&self, path: &str, params: &[(&str, String)]) -> Result<Sent, PromError> {
        let permit = match &self.in_flight {
            Some(limit) => Some(
                limit
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the limit is never closed"),
            ),
            None => None,
        };
        let mut form: Vec<(&str, String)> = params.to_vec();
        form.extend(
            self.backend
                .query_params()
                .iter()
                .map(|(k, v)| (*k, v.to_string())),
        );
        let url = format!("{}{}", self.shown, path);
        let mut req = if self.sigv4.is_some() {
            // Signed over the exact bytes sent, so the form is encoded here, not by reqwest.
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            self.signed(path, "application/x-www-form-urlencoded", body.into())
                .await?
        } else {
            self.http.post(format!("{}{}", self.base, path)).form(&form)
        };
        req = self.with_auth(req);
        let resp = req.send().await.map_err(|e| http_error(&url, &e))?;
        Ok(Sent {
            status: resp.status().as_u16(),
            content_type: content_type(&resp),
            resp,
            url,
            _permit: permit,
        })
    }

    /// Reads a range answer, decoding its series as they arrive
    /// ([`decode::MatrixStream`]); an answer that is not split (an error, another
    /// server's layout) is decoded whole on the blocking pool, as [`Self::post`]'s are.
    async fn read_matrix(
        &self,
        mut sent: Sent,
        query: &str,
        points: usize,
        fold: Option<&(dyn Fn(Vec<RangeSeries>) + Sync)>,
    ) -> Result<Answer<RangeSeries>, PromError> {
        let cap = self.max_response_bytes;
        let too_large = |url: &str| PromError::TooLarge {
            url: url.to_string(),
            cap_bytes: cap,
        };
        let streams = sent.is_json() && (200..300).contains(&sent.status);
        if !streams || sent.resp.content_length().is_some_and(|n| n > cap) {
            let (url, body) = self.finish_post(sent).await?;
            return decode_off_thread::<decode::Matrix>(url, body, query, points).await;
        }
        let mut stream = decode::MatrixStream::new(points);
        let mut read = 0u64;
        while let Some(chunk) = sent
            .resp
            .chunk()
            .await
            .map_err(|e| http_error(&sent.url, &e))?
        {
            read += chunk.len() as u64;
            if read > cap {
                return Err(too_large(&sent.url));
            }
            stream
                .push(&chunk)
                .map_err(|e| stream_error(&sent.url, e))?;
            if let Some(fold) = fold {
                fold(stream.take_series());
            }
        }
        let streamed = stream.finish().map_err(|e| stream_error(&sent.url, e))?;
        match split_answer(&sent.url, sent.status, query, points, streamed)? {
            Ok(answer) => Ok(answer),
            Err(body) => decode_off_thread::<decode::Matrix>(sent.url, body, query, points).await,
        }
    }

    /// Reads an answer whole (at most `max_response_bytes`) and checks that it is JSON.
    async fn finish_post(&self, mut sent: Sent) -> Result<(String, RawBody), PromError> {
        let bytes = read_capped(&mut sent.resp, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                Some(e) => http_error(&sent.url, &e),
                None => PromError::TooLarge {
                    url: sent.url.clone(),
                    cap_bytes: self.max_response_bytes,
                },
            })?;
        // Prometheus puts its error envelope on 400/422/503 as JSON; anything else failing is a proxy or a crash.
        if !sent.is_json() {
            let snippet = snippet(&bytes);
            return Err(if (200..300).contains(&sent.status) {
                PromError::Decode {
                    url: sent.url,
                    message: format!(
                        "expected JSON, got content type {:?}: {snippet}",
                        sent.content_type
                    ),
                }
            } else {
                PromError::Status {
                    url: sent.url,
                    status: sent.status,
                    snippet,
                }
            });
        }
        Ok((
            sent.url,
            RawBody {
                bytes,
                status: sent.status,
            },
        ))
    }
}

/// An answer whose head has arrived, and the permit its request holds until the body is read.
struct Sent {
    url: String,
    resp: reqwest::Response,
    status: u16,
    content_type: String,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Sent {
    fn is_json(&self) -> bool {
        self.content_type.starts_with("application/json")
    }
}

fn http_error(url: &str, e: &reqwest::Error) -> PromError {
    PromError::Http {
        url: url.to_string(),
        timeout: e.is_timeout(),
        message: describe_reqwest_error(e),
    }
}

/// A finished [`decode::MatrixStream`]'s answer, or the whole body when it was not split.
fn split_answer(
    url: &str,
    status: u16,
    query: &str,
    points: usize,
    streamed: decode::Streamed,
) -> Result<Result<Answer<RangeSeries>, RawBody>, PromError> {
    match streamed {
        decode::Streamed::Whole(bytes) => Ok(Err(RawBody {
            bytes: bytes.into(),
            status,
        })),
        decode::Streamed::Split {
            series,
            skipped,
            rest,
        } => {
            // What followed the list (the envelope's end, warnings) is checked as an
            // answer whose list is empty.
            let body = RawBody {
                bytes: [decode::MATRIX_HEAD, b"]", &rest].concat().into(),
                status,
            };
            let mut answer = decode_query::<decode::Matrix>(url, &body, query, points)?;
            answer.series = series;
            answer.non_finite_skipped += skipped;
            Ok(Ok(answer))
        }
    }
}

/// A split answer's error, worded as the one-pass decoder words it.
fn stream_error(url: &str, e: decode::StreamError) -> PromError {
    let message = match e {
        decode::StreamError::Data(e) => format!("answer: {e}"),
        decode::StreamError::Syntax(e, near) => format!("invalid JSON ({e}): {}", snippet(&near)),
    };
    PromError::Decode {
        url: url.to_string(),
        message,
    }
}

/// Reads a body as it arrives, stopping at the first byte past `cap`; `Err(None)` when the
/// answer was (or announced it would be) longer than that.
async fn read_capped(
    resp: &mut reqwest::Response,
    cap: u64,
) -> Result<bytes::Bytes, Option<reqwest::Error>> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(None);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(Some)? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Exponential backoff with full jitter: a random wait in [base·2^(n-1)/2, base·2^(n-1)], at most 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let ceiling = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(30));
    ceiling.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

async fn observed<T>(
    endpoint: &str,
    request: impl std::future::Future<Output = Result<T, PromError>>,
) -> Result<T, PromError> {
    let started = std::time::Instant::now();
    let result = request.await;
    crate::telemetry::metrics().observe_query(
        endpoint,
        started.elapsed(),
        result.as_ref().err().map(PromError::kind),
    );
    result
}

/// A JSON body and the status it came with.
struct RawBody {
    bytes: bytes::Bytes,
    status: u16,
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    crate::redact::text(&msg)
}

/// The answer's content type, empty when missing or not text.
fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes an answer in one pass: its `data` as the seed decodes it, or the error its
/// envelope carries.
fn decode_envelope<'de, S: serde::de::DeserializeSeed<'de>>(
    url: &str,
    body: &'de RawBody,
    query: &str,
    seed: S,
) -> Result<S::Value, PromError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(&body.bytes);
    let envelope = decode::EnvelopeSeed(seed)
        .deserialize(&mut de)
        .and_then(|envelope| de.end().map(|()| envelope))
        .map_err(|e| {
            if body.status >= 300 {
                PromError::Status {
                    url: url.to_string(),
                    status: body.status,
                    snippet: snippet(&body.bytes),
                }
            } else if e.is_data() {
                PromError::Decode {
                    url: url.to_string(),
                    message: format!("answer: {e}"),
                }
            } else {
                PromError::Decode {
                    url: url.to_string(),
                    message: format!("invalid JSON ({e}): {}", snippet(&body.bytes)),
                }
            }
        })?;
    match envelope.status.as_str() {
        "success" if body.status < 300 => {
            if !envelope.warnings.is_empty() {
                tracing::warn!(warnings = ?envelope.warnings, "Prometheus attached warnings");
            }
            envelope.data.ok_or_else(|| PromError::Decode {
                url: url.to_string(),
                message: "success without data".into(),
            })
        }
        "error" => Err(PromError::Api {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            message: envelope.error.unwrap_or_default(),
            query: query.to_string(),
        }),
        other => Err(PromError::Decode {
            url: url.to_string(),
            message: format!("HTTP {} with status {other:?}", body.status),
        }),
    }
}

/// Decodes on the blocking pool: a range answer takes milliseconds of CPU, which on an
/// async thread would stall every other transfer this runtime drives meanwhile.
async fn decode_off_thread<K: decode::ResultKind>(
    url: String,
    body: RawBody,
    query: &str,
    samples: usize,
) -> Result<Answer<K::Series>, PromError>
where
    K::Series: Send + 'static,
{
    let query = query.to_string();
    match tokio::task::spawn_blocking(move || decode_query::<K>(&url, &body, &query, samples)).await
    {
        Ok(decoded) => decoded,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(PromError::Decode {
            url: "(runtime shutting down)".into(),
            message: "decoding was cancelled".into(),
        }),
    }
}

/// One raw answer decoded as a matrix, a vector and a series list.
pub(crate) type DecodedAsEach = (
    Result<Answer<RangeSeries>, PromError>,
    Result<Answer<InstantSample>, PromError>,
    Result<Vec<Labels>, PromError>,
);

/// What the client makes of one raw answer as a matrix, a vector and a series list:
/// the fuzz targets' way in (`crate::fuzzing`), without opening the decoders up.
pub(crate) fn decode_raw(bytes: &[u8], status: u16, samples: usize) -> DecodedAsEach {
    let body = RawBody {
        bytes: bytes::Bytes::copy_from_slice(bytes),
        status,
    };
    let series = std::marker::PhantomData::<Vec<Labels>>;
    (
        decode_query::<decode::Matrix>("u", &body, "q", samples),
        decode_query::<decode::Vector>("u", &body, "q", samples),
        decode_envelope("u", &body, "q", series),
    )
}

/// A range answer as [`PromClient::query_range`] reads it when it arrives in pieces of
/// `piece` bytes with `status`: the fuzz targets' way to hold it to the one-pass decoder.
pub(crate) fn decode_matrix_in_pieces(
    bytes: &[u8],
    status: u16,
    samples: usize,
    piece: usize,
) -> Result<Answer<RangeSeries>, PromError> {
    let body = |bytes: &[u8]| RawBody {
        bytes: bytes::Bytes::copy_from_slice(bytes),
        status,
    };
    if !(200..300).contains(&status) {
        return decode_query::<decode::Matrix>("u", &body(bytes), "q", samples);
    }
    // Series are taken out as they come, as a folded query takes them.
    let mut stream = decode::MatrixStream::new(samples);
    let mut taken = Vec::new();
    for p in bytes.chunks(piece.max(1)) {
        stream.push(p).map_err(|e| stream_error("u", e))?;
        taken.extend(stream.take_series());
    }
    let streamed = stream.finish().map_err(|e| stream_error("u", e))?;
    let mut answer = match split_answer("u", status, "q", samples, streamed)? {
        Ok(answer) => answer,
        Err(whole) => decode_query::<decode::Matrix>("u", &whole, "q", samples)?,
    };
    taken.append(&mut answer.series);
    answer.series = taken;
    Ok(answer)
}

/// Decodes a query answer whose result must be of kind `K`.
fn decode_query<K: decode::ResultKind>(
    url: &str,
    body: &RawBody,
    query: &str,
    samples: usize,
) -> Result<Answer<K::Series>, PromError> {
    let seed = decode::DataSeed::<K> {
        samples,
        kind: std::marker::PhantomData,
    };
    let data = decode_envelope(url, body, query, seed)?;
    if data.result_type != K::RESULT_TYPE {
        return Err(PromError::Decode {
            url: url.to_string(),
            message: format!(
                "expected resultType {}, got {}",
                K::RESULT_TYPE,
                data.result_type
            ),
        });
    }
    Ok(Answer {
        series: data.series,
        non_finite_skipped: data.skipped,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(status: u16, json: &str) -> RawBody {
        RawBody {
            bytes: bytes::Bytes::from(json.to_string()),
            status,
        }
    }

    #[test]
    fn decodes_a_matrix_skipping_non_finite_values() {
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"namespace":"shop","pod":"api-1"},"values":[[1700000000,"0.5"],[1700000060,"NaN"],[1700000120,"+Inf"],[1700000180,"-Inf"],[1700000240,"1e-3"]]}]}}"#,
        );
        let answer = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap();
        assert_eq!(answer.non_finite_skipped, 3);
        assert_eq!(
            answer.series[0].samples,
            vec![(1700000000, 0.5), (1700000240, 0.001)]
        );
        assert_eq!(answer.series[0].labels["pod"], "api-1");
    }

    /// Range answers as Prometheus writes them, and as others might.
    const SPLIT_CASES: &[&str] = &[
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,"1"],[2,"NaN"]]}]}}"#,
        // A label value holding the boundary, brackets, escaped quotes and a backslash.
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a},{\"metric\":[{\\\\"},"values":[[1,"1"]]},{"metric":{},"values":[]},{"metric":{"pod":"c"},"values":[[3,"+Inf"],[4,"2.5"]]}]},"warnings":["a ]}, warning"]}"#,
        // Spaces between series; members after the list; then another layout altogether.
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,"1"]]} , {"metric":{"pod":"b"},"values":[[1,"2"]]}],"stats":{"x":[{}]}}}"#,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"1"]],"metric":{"pod":"a"}},{"values":[],"metric":{}}]}}"#,
        r#"{ "status": "success", "data": {"result": [{"metric":{},"values":[[1,"1"]]}], "resultType": "matrix"}}"#,
        r#"{"status":"error","errorType":"bad_data","error":"no"}"#,
    ];

    #[test]
    fn a_range_answer_read_in_pieces_is_the_whole_answer() {
        for case in SPLIT_CASES {
            let whole = decode_query::<decode::Matrix>("u", &body(200, case), "q", 4);
            assert_eq!(
                whole.is_ok(),
                !case.contains("bad_data"),
                "{case}: {whole:?}"
            );
            for piece in [1, 2, 3, 7, 13, 64, case.len()] {
                let split = decode_matrix_in_pieces(case.as_bytes(), 200, 4, piece);
                match (&whole, &split) {
                    (Ok(w), Ok(s)) => assert_eq!(w, s, "{case} in pieces of {piece}"),
                    (Err(w), Err(s)) => assert_eq!(w.kind(), s.kind(), "{case}: {w} / {s}"),
                    _ => panic!("{case} in pieces of {piece}: {whole:?} / {split:?}"),
                }
            }
        }
        let three = decode_matrix_in_pieces(SPLIT_CASES[2].as_bytes(), 200, 4, 5).unwrap();
        assert_eq!(three.series.len(), 3);
        assert_eq!(three.series[0].labels["pod"], r#"a},{"metric":[{\\"#);
        assert_eq!(three.non_finite_skipped, 1);
    }

    #[test]
    fn a_range_answer_broken_in_its_list_is_an_error() {
        let head = r#"{"status":"success","data":{"resultType":"matrix","result":["#;
        let series = r#"{"metric":{"pod":"a"},"values":[[1,"1"]]}"#;
        for (broken, says) in [
            // Cut inside a series, between series, after the list.
            (format!("{head}{series},{{\"metric\":{{"), "ends inside"),
            (format!("{head}{series},"), "ends inside"),
            (format!("{head}{series}]}}"), "EOF"),
            // A trailing comma, a value that is no series, garbage after one.
            (format!("{head}{series},]}}}}"), "expected a series"),
            (format!("{head}{series},1]}}}}"), "expected a series"),
            (format!("{head}{series}x]}}}}"), "expected ','"),
            // A series that is not one, and a second list after the first.
            (
                format!(r#"{head}{{"metric":{{"pod":1}},"values":[]}}]}}}}"#),
                "answer:",
            ),
            (
                format!(r#"{head}{series}],"result":[]}}}}"#),
                "duplicate field",
            ),
        ] {
            for piece in [1, 4, broken.len()] {
                let err = decode_matrix_in_pieces(broken.as_bytes(), 200, 4, piece).unwrap_err();
                assert_eq!(err.kind(), "decode", "{broken}: {err}");
                assert!(err.to_string().contains(says), "{broken}: {err}");
            }
            assert!(decode_query::<decode::Matrix>("u", &body(200, &broken), "q", 4).is_err());
        }
    }

    #[test]
    fn decodes_fields_in_any_order_with_escapes_warnings_and_unknown_members() {
        let b = body(
            200,
            r#"{"warnings":["slow"],"data":{"result":[{"values":[[1700000000.4,"2"]],"extra":1,
              "metric":{"pod":"a\"b\u00e9"}}],"resultType":"matrix","stats":{}},"status":"success","infos":[]}"#,
        );
        let answer = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap();
        assert_eq!(answer.series[0].samples, vec![(1700000000, 2.0)]);
        assert_eq!(answer.series[0].labels["pod"], "a\"bé");
        let b = body(200, r#"{"status":"success","data":[{"job":"k"}]}"#);
        let series =
            decode_envelope("u", &b, "q", std::marker::PhantomData::<Vec<Labels>>).unwrap();
        assert_eq!(series[0]["job"], "k");
        let b = body(200, r#"{"status":"success","data":null}"#);
        let err = decode_query::<decode::Vector>("u", &b, "q", 1).unwrap_err();
        assert!(err.to_string().contains("success without data"), "{err}");
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"matrix"}}"#,
        );
        let err = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap_err();
        assert!(err.to_string().contains("missing field `result`"), "{err}");
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2]]}]}}"#,
        );
        let err = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap_err();
        assert!(
            err.to_string().contains("answer: invalid length 1"),
            "{err}"
        );
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]"#,
        );
        let err = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap_err();
        assert!(err.to_string().contains("invalid JSON (EOF"), "{err}");
    }

    #[test]
    fn error_envelope_names_type_message_and_query() {
        let b = body(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
        );
        let err = decode_query::<decode::Matrix>("u", &b, "rate(x[5m]", 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prometheus rejected the query (bad_data): parse error at char 5; query: rate(x[5m]"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn wrong_result_type_and_garbage_values_are_decode_errors() {
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        );
        let err = decode_query::<decode::Matrix>("u", &b, "q", 4).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected resultType matrix, got vector"),
            "{err}"
        );
        let b = body(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
        );
        let err = decode_query::<decode::Vector>("u", &b, "q", 1).unwrap_err();
        assert!(err.to_string().contains("\"abc\" is not a number"), "{err}");
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let cfg = PromConfig {
            url: "http://p".into(),
            bearer_token: Some(SecretString::from("hunter2")),
            basic_auth: Some(("me".into(), SecretString::from("hunter3"))),
            headers: vec![("X-Scope-OrgID".into(), SecretString::from("hunter4"))],
            ..PromConfig::default()
        };
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(debug.contains("X-Scope-OrgID"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=20 {
            let b = backoff(base, attempt);
            let ceiling = (base * (1 << (attempt - 1).min(16))).min(Duration::from_secs(30));
            assert!(b <= ceiling && b >= ceiling / 2, "attempt {attempt}: {b:?}");
        }
    }
}
