//! A recorded-response stand-in for the GitHub and GitLab REST APIs.
//!
//! The real forges can't be reached from tests (loopback only, and no test
//! account), so this server on 127.0.0.1:0 answers each (method, path) with
//! a canned response shaped like the real one (bodies under
//! `tests/fixtures/gitops/forge/`, status codes and rate-limit headers as the
//! forges send them) and records every request for assertions.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers (content type is always JSON).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// A JSON answer read from `tests/fixtures/gitops/forge/<name>`.
    pub fn fixture(status: u16, name: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gitops/forge")
            .join(name);
        let body =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path as sent (percent-encoding kept).
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let url = reqwest::Url::parse(&format!("http://forge.invalid/?{}", self.query))
            .expect("query string");
        url.query_pairs().into_owned().collect()
    }
}

type Routes = Arc<Vec<(String, String, Reply)>>;

#[derive(Clone)]
struct Shared {
    routes: Routes,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

/// The running fake forge; stops when dropped.
pub struct FakeForge {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl FakeForge {
    /// Serves `routes`: (method, path, reply). Unknown routes get GitHub's 404.
    pub async fn start(routes: Vec<(&str, &str, Reply)>) -> Self {
        let routes: Routes = Arc::new(
            routes
                .into_iter()
                .map(|(m, p, r)| (m.to_string(), p.to_string(), r))
                .collect(),
        );
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            routes,
            recorded: recorded.clone(),
        };
        let app = Router::new().fallback(answer).with_state(shared);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeForge {
            base_url: format!("http://{addr}"),
            recorded,
            task,
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    shared.recorded.lock().expect("lock").push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let reply = shared
        .routes
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, r)| r.clone())
        .unwrap_or_else(|| {
            Reply::json(
                404,
                serde_json::json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
            )
        });
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (k, v) in reply.headers {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(&v).expect("header value"),
        );
    }
    response
}
