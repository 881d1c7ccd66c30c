//! A stand-in Kubernetes API server serving recorded list and watch responses.
//!
//! No Kubernetes API server can run on this machine (no kube-apiserver package, no
//! container engine), so the Kubernetes source is tested against this: an axum server on
//! 127.0.0.1:0 that answers `GET /apis/...` with the JSON files under
//! `tests/fixtures/k8s/`, written in the shape the API server sends (`kind: ...List`,
//! `metadata.resourceVersion`, `continue` tokens, `Status` bodies for errors, and watch
//! streams of one `{"type": ..., "object": ...}` event per line).
//!
//! Each route is a path plus a mode (a list page, by `continue` token, or a watch) and
//! answers from a queue of replies; the last reply repeats. Every request is logged, and the
//! server checks query parameters against expectations: a mismatch is answered with 400 and
//! recorded, and [`KubeApi::assert_clean`] fails the test.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use tokio::task::JoinHandle;

/// Path of a fixture under `tests/fixtures/k8s/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name)
}

/// The API paths of the resource types the cluster source reads, cluster-wide.
pub const DEPLOYMENTS: &str = "/apis/apps/v1/deployments";
/// StatefulSets.
pub const STATEFUL_SETS: &str = "/apis/apps/v1/statefulsets";
/// DaemonSets.
pub const DAEMON_SETS: &str = "/apis/apps/v1/daemonsets";
/// CronJobs.
pub const CRON_JOBS: &str = "/apis/batch/v1/cronjobs";
/// Jobs.
pub const JOBS: &str = "/apis/batch/v1/jobs";
/// HorizontalPodAutoscalers.
pub const HPAS: &str = "/apis/autoscaling/v2/horizontalpodautoscalers";
/// PodDisruptionBudgets.
pub const PDBS: &str = "/apis/policy/v1/poddisruptionbudgets";
/// All seven, with the fixture that lists each (deployments come in two pages, see
/// [`KubeApi::recorded`]).
pub const ALL: [&str; 7] = [
    DEPLOYMENTS,
    STATEFUL_SETS,
    DAEMON_SETS,
    CRON_JOBS,
    JOBS,
    HPAS,
    PDBS,
];

/// The `continue` token of the first deployments page.
pub const DEPLOYMENTS_CONTINUE: &str =
    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDgyMTMsInN0YXJ0Ijoic2hvcC9jYXJ0XHUwMDAwIn0";

/// The same path in one namespace: `/apis/apps/v1/namespaces/shop/deployments`.
pub fn namespaced(path: &str, namespace: &str) -> String {
    let (prefix, plural) = path.rsplit_once('/').expect("an API path");
    format!("{prefix}/namespaces/{namespace}/{plural}")
}

/// Which request a route answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A list request with this `continue` token (`None`: the first page).
    List(Option<String>),
    /// A `watch=true` request.
    Watch,
}

/// One recorded answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body from a fixture, with an HTTP status.
    Json { status: u16, fixture: String },
    /// A watch stream: the fixture's JSON array, one event per line; then the stream either
    /// ends (the client re-watches) or stays open like a quiet watch.
    Watch {
        fixture: Option<String>,
        hold_open: bool,
    },
}

impl Reply {
    /// 200 with a fixture.
    pub fn ok(fixture: &str) -> Reply {
        Reply::Json {
            status: 200,
            fixture: fixture.into(),
        }
    }

    /// An error status with a fixture holding a `Status` object.
    pub fn status(status: u16, fixture: &str) -> Reply {
        Reply::Json {
            status,
            fixture: fixture.into(),
        }
    }

    /// A watch that sends the fixture's events and ends.
    pub fn events(fixture: &str) -> Reply {
        Reply::Watch {
            fixture: Some(fixture.into()),
            hold_open: false,
        }
    }

    /// A watch that sends the fixture's events and stays open.
    pub fn events_then_quiet(fixture: &str) -> Reply {
        Reply::Watch {
            fixture: Some(fixture.into()),
            hold_open: true,
        }
    }

    /// A watch with no events that stays open.
    pub fn quiet() -> Reply {
        Reply::Watch {
            fixture: None,
            hold_open: true,
        }
    }
}

/// A query-parameter expectation for every request whose path starts with a prefix.
#[derive(Debug, Clone)]
struct Expect {
    path_prefix: String,
    param: String,
    value: Option<String>,
}

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
}

impl Seen {
    /// Whether it was a watch.
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }

    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    routes: HashMap<(String, Mode), VecDeque<Reply>>,
    expects: Vec<Expect>,
    seen: Vec<Seen>,
    violations: Vec<String>,
}

/// The running server.
pub struct KubeApi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl KubeApi {
    /// A server with no routes (every request gets 404).
    pub async fn start() -> KubeApi {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        KubeApi { addr, inner, task }
    }

    /// A server holding the recorded cluster: every kind listed cluster-wide (deployments in two
    /// pages joined by [`DEPLOYMENTS_CONTINUE`]), and quiet watches.
    pub async fn recorded() -> KubeApi {
        let api = KubeApi::start().await;
        api.route_all_kinds(|p| p.to_string());
        api
    }

    /// Registers the recorded lists and quiet watches under `path_of(cluster-wide path)`.
    pub fn route_all_kinds(&self, path_of: impl Fn(&str) -> String) {
        let fixtures = [
            (DEPLOYMENTS, "deployments-page1.json"),
            (STATEFUL_SETS, "statefulsets.json"),
            (DAEMON_SETS, "daemonsets.json"),
            (CRON_JOBS, "cronjobs.json"),
            (JOBS, "jobs.json"),
            (HPAS, "horizontalpodautoscalers.json"),
            (PDBS, "poddisruptionbudgets.json"),
        ];
        for (path, file) in fixtures {
            let path = path_of(path);
            self.route(&path, Mode::List(None), [Reply::ok(file)]);
            self.route(&path, Mode::Watch, [Reply::quiet()]);
        }
        self.route(
            &path_of(DEPLOYMENTS),
            Mode::List(Some(DEPLOYMENTS_CONTINUE.into())),
            [Reply::ok("deployments-page2.json")],
        );
    }

    /// Sets (replaces) the replies of a route, answered in order; the last one repeats.
    pub fn route(&self, path: &str, mode: Mode, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a route needs a reply");
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert((path.to_string(), mode), replies);
    }

    /// Every request to a path starting with `path_prefix` must carry `param=value`
    /// (`value: None`: must not carry `param`).
    pub fn expect_param(&self, path_prefix: &str, param: &str, value: Option<&str>) {
        self.inner.lock().unwrap().expects.push(Expect {
            path_prefix: path_prefix.into(),
            param: param.into(),
            value: value.map(Into::into),
        });
    }

    /// A client configuration pointing at this server: plain HTTP, no authentication.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        config.read_timeout = Some(std::time::Duration::from_secs(10));
        config
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).unwrap()
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Requests so far to exactly this path.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// Panics if any request broke an expectation or hit no route.
    pub fn assert_clean(&self) {
        let inner = self.inner.lock().unwrap();
        assert!(
            inner.violations.is_empty(),
            "the stand-in API server saw unexpected requests:\n{}",
            inner.violations.join("\n")
        );
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let path = uri.path().to_string();
    let seen = Seen {
        path: path.clone(),
        query,
    };
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.seen.push(seen.clone());
        let broken: Vec<String> = inner
            .expects
            .iter()
            .filter(|e| path.starts_with(&e.path_prefix))
            .filter(|e| seen.query.get(&e.param) != e.value.as_ref())
            .map(|e| {
                format!(
                    "{} {:?}: {} should be {:?}, is {:?}",
                    path,
                    seen.query,
                    e.param,
                    e.value,
                    seen.query.get(&e.param)
                )
            })
            .collect();
        if !broken.is_empty() {
            inner.violations.extend(broken.iter().cloned());
            return status_response(400, "BadRequest", &broken.join("; "));
        }
        let mode = if seen.is_watch() {
            Mode::Watch
        } else {
            Mode::List(seen.query.get("continue").cloned())
        };
        match inner.routes.get_mut(&(path.clone(), mode.clone())) {
            Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
            Some(queue) => queue.front().unwrap().clone(),
            None => {
                inner
                    .violations
                    .push(format!("no route for {path} ({mode:?}) {:?}", seen.query));
                return status_response(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                );
            }
        }
    };
    match reply {
        Reply::Json { status, fixture: f } => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(read(&f)))
            .unwrap(),
        Reply::Watch {
            fixture: f,
            hold_open,
        } => {
            let events: Vec<serde_json::Value> = match f {
                Some(f) => {
                    serde_json::from_slice(&read(&f)).expect("a watch fixture is a JSON array")
                }
                None => Vec::new(),
            };
            let lines = events.into_iter().map(|e| {
                let mut line = serde_json::to_vec(&e).unwrap();
                line.push(b'\n');
                Ok::<_, std::io::Error>(bytes::Bytes::from(line))
            });
            let events = futures::stream::iter(lines);
            let body = if hold_open {
                Body::from_stream(events.chain(futures::stream::pending()))
            } else {
                Body::from_stream(events)
            };
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        }
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn status_response(code: u16, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}
