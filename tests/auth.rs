//! Who may call what. Every route the router serves (taken from the one table it is built
//! from) is asked with no credentials, a wrong token, the right token in the header and in the
//! session cookie, with reads open and with reads needing a token; a refusal names nothing
//! from the store. Then the login form, CSRF on cookie-only actions, and the body limit with a
//! valid token, through a real socket with a Content-Length and with a chunked body.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rightsizer::http::access::{routes, Access, RouteSpec, Surface};
use rightsizer::http::auth::AuthConfig;
use rightsizer::http::{router, serve, AppState};
use rightsizer::model::{
    Confidence, ContainerKey, Evidence, Recommendation, Resources, Severity, Status,
};
use rightsizer::runs::{RunKind, RunRegistry};
use support::prometheus::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TOKEN: &str = "right-token-4f9c2a7e1b";
const WRONG: &str = "wrong-token-0000000000";
/// What the store holds; a refusal must show none of it.
const CLUSTER: &str = "clu-hidden";
const NAMESPACE: &str = "ns-hidden";
const KIND: &str = "Deployment";
const WORKLOAD: &str = "wl-hidden";
const CONTAINER: &str = "ct-hidden";
/// The cluster that actions collect and analyze.
const JOBS_CLUSTER: &str = "clu-jobs";

fn rec() -> Recommendation {
    let some = Resources {
        cpu_request_millicores: Some(100),
        cpu_limit_millicores: Some(400),
        memory_request_bytes: Some(64 << 20),
        memory_limit_bytes: Some(64 << 20),
    };
    Recommendation {
        key: ContainerKey {
            cluster: CLUSTER.into(),
            namespace: NAMESPACE.into(),
            kind: KIND.into(),
            workload: WORKLOAD.into(),
            container: CONTAINER.into(),
        },
        status: Status::Ok,
        current: some,
        recommended: some,
        confidence: Confidence::High,
        confidence_score: 0.9,
        reason: "cpu same".into(),
        strategy: "guidance".into(),
        evidence: Evidence::default(),
        computed_at: 1_700_000_000,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: None,
        impact: None,
        hpa: None,
    }
}

/// A store with one recommendation and one report, a finished run, and a collector whose
/// Prometheus never answers (so a collect run stays running, and actions answer 202).
struct Fixture {
    _dir: TempDir,
    state: AppState,
    report_id: i64,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new("rs-auth").unwrap();
    let url = format!("sqlite://{}", dir.path().join("rs.db").display());
    let store = rightsizer::store::connect(&url).await.unwrap();
    store
        .replace_recommendations(CLUSTER, &[rec()])
        .await
        .unwrap();
    let report = rightsizer::report::build(&[rec()], None, 1_700_000_000);
    let report_id = store
        .save_report(&rightsizer::report::to_stored(&report).unwrap())
        .await
        .unwrap();
    let mut state = AppState::new(store);
    state.jobs = Some(Arc::new(jobs().await));
    Fixture {
        _dir: dir,
        state,
        report_id,
    }
}

async fn jobs() -> rightsizer::jobs::JobRunner {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let prom = rightsizer::prometheus::PromClient::new(&rightsizer::prometheus::PromConfig {
        url,
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    rightsizer::jobs::JobRunner::new(
        // Not the seeded cluster: an analysis run would replace its recommendations.
        vec![rightsizer::jobs::ClusterJob::new(JOBS_CLUSTER, Some(prom))],
        Default::default(),
        rightsizer::jobs::AnalysisSettings {
            policies: rightsizer::analyzer::PolicySet::new(Default::default()).unwrap(),
            pricing: Default::default(),
            step_secs: 60,
            backtest: Default::default(),
        },
    )
}

impl Fixture {
    /// The route's pattern with real values from the store; a placeholder this test does not
    /// know fails it, so a new route cannot go untested.
    fn uri(&self, route: &RouteSpec, run_id: &str) -> String {
        let path = route
            .path
            .replace("{cluster}", CLUSTER)
            .replace("{namespace}", NAMESPACE)
            .replace("{kind}", KIND)
            .replace("{name}", WORKLOAD);
        let path = if route.path.starts_with("/api/v1/reports/") {
            path.replace("{id}", &self.report_id.to_string())
        } else if route.path.starts_with("/api/v1/runs/") {
            path.replace("{id}", run_id)
        } else {
            path
        };
        assert!(
            !path.contains('{'),
            "{} {}: teach this test a real value for its path parameter",
            route.method,
            route.path
        );
        path
    }

    /// With these tokens and mode, and one more finished run in the store (its id
    /// returned): each action starts rather than meeting a running one's 409.
    async fn state(&self, reads: bool) -> (AppState, String) {
        let mut state = self.state.clone();
        state.auth = Arc::new(AuthConfig::new([TOKEN.to_string()], reads));
        state.runs = RunRegistry::new(state.store.clone(), "test");
        // The store is shared by every case: end the runs an earlier case started (they
        // hang on the stub Prometheus by design), so each action starts rather than
        // meeting their 409.
        let mut run_id = String::new();
        for kind in [RunKind::Collect, RunKind::Analyze] {
            let run = loop {
                match state.runs.try_start(kind, "test").await.unwrap() {
                    Ok(run) => break run,
                    Err(running) => end_run(&state, &running).await,
                }
            };
            run_id = run.id.clone();
            run.finish(Ok(serde_json::json!({}))).await;
        }
        (state, run_id)
    }
}

#[derive(Clone, Copy, Debug)]
enum Cred {
    None,
    WrongHeader,
    WrongCookie,
    Header,
    Cookie,
}

const CREDS: [Cred; 5] = [
    Cred::None,
    Cred::WrongHeader,
    Cred::WrongCookie,
    Cred::Header,
    Cred::Cookie,
];

fn session(token: &str) -> String {
    let auth = AuthConfig::new([token.to_string()], true);
    auth.open_session(token, chrono::Utc::now().timestamp())
        .unwrap()
}

fn request(method: &Method, uri: &str, cred: Cred) -> Request<Body> {
    let b = Request::builder().method(method.clone()).uri(uri);
    let b = match cred {
        Cred::None => b,
        Cred::WrongHeader => b.header("authorization", format!("Bearer {WRONG}")),
        Cred::Header => b.header("authorization", format!("Bearer {TOKEN}")),
        Cred::WrongCookie => b.header("cookie", format!("rightsizer_session={}", session(WRONG))),
        Cred::Cookie => b.header("cookie", format!("rightsizer_session={}", session(TOKEN))),
    };
    b.body(Body::empty()).unwrap()
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The status a route answers once let in.
fn served(route: &RouteSpec) -> StatusCode {
    match (&route.method, route.path) {
        (&Method::POST, "/api/v1/collect" | "/api/v1/analyze") => StatusCode::ACCEPTED,
        // An empty form: the handler asks for a token (and sets nothing).
        (&Method::POST, "/login") => StatusCode::BAD_REQUEST,
        (&Method::POST, "/logout") => StatusCode::SEE_OTHER,
        _ => StatusCode::OK,
    }
}

/// What a route must answer with `cred` when reads need a token (`reads`) or not.
fn expected(route: &RouteSpec, reads: bool, cred: Cred) -> StatusCode {
    let open = match route.access {
        Access::Public => true,
        Access::Read => !reads,
        Access::Action => false,
    };
    match cred {
        _ if open => served(route),
        Cred::Header | Cred::Cookie => served(route),
        Cred::None => StatusCode::UNAUTHORIZED,
        Cred::WrongHeader | Cred::WrongCookie => StatusCode::FORBIDDEN,
    }
}

#[tokio::test]
async fn every_route_answers_by_its_access_class_in_both_modes() {
    let fx = fixture().await;
    for reads in [false, true] {
        for route in &routes() {
            for cred in CREDS {
                let (state, run_id) = fx.state(reads).await;
                let uri = fx.uri(route, &run_id);
                let (status, body) = send(&state, request(&route.method, &uri, cred)).await;
                assert!(
                    !body.contains("no route for"),
                    "{} {} is in the table but not served",
                    route.method,
                    route.path
                );
                assert_eq!(
                    status,
                    expected(route, reads, cred),
                    "{} {uri} with {cred:?}, reads need a token: {reads}: {body}",
                    route.method
                );
                // What decides the class: a route open to anyone must name nothing.
                let refused = status.is_client_error() && status != StatusCode::BAD_REQUEST;
                if refused || route.access == Access::Public {
                    assert_names_nothing(route, &uri, &body);
                }
                if refused {
                    assert_refusal_shape(route, &uri, &body);
                }
            }
        }
    }
}

/// The answer names no cluster, namespace, workload or container from the store, except
/// what the caller itself put in the URL.
fn assert_names_nothing(route: &RouteSpec, uri: &str, body: &str) {
    for name in [CLUSTER, NAMESPACE, WORKLOAD, CONTAINER] {
        if !uri.contains(name) {
            assert!(
                !body.contains(name),
                "{} {uri} reveals {name}: {body}",
                route.method
            );
        }
    }
}

/// A page refusal is the login form, an API one a JSON error.
fn assert_refusal_shape(route: &RouteSpec, uri: &str, body: &str) {
    match route.surface {
        Surface::Page => assert!(body.contains("action=\"/login\""), "{uri}: {body}"),
        Surface::Api => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["message"].is_string(), "{uri}: {body}");
        }
    }
}

/// Every documented API path is in the table, and the table holds the dashboard too.
#[tokio::test]
async fn the_table_covers_the_documented_api_and_the_dashboard() {
    let table = routes();
    let doc: serde_json::Value =
        serde_json::from_str(&rightsizer::http::openapi::document_json()).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            assert!(
                table
                    .iter()
                    .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not in the access table"
            );
        }
    }
    for path in [
        "/",
        "/workloads/{cluster}/{namespace}/{kind}/{name}",
        "/login",
    ] {
        assert!(table.iter().any(|r| r.path == path), "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_fall_to_the_strict_side() {
    let fx = fixture().await;
    let (open, _) = fx.state(false).await;
    let (closed, _) = fx.state(true).await;
    let (status, _) = send(&open, request(&Method::GET, "/nope", Cred::None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&closed, request(&Method::GET, "/nope", Cred::None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a 404 is a read");
    // A method the table does not list for a known path is treated as an action.
    let (status, _) = send(&open, request(&Method::DELETE, "/", Cred::None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&open, request(&Method::DELETE, "/", Cred::Header)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // HEAD is GET's class.
    let (status, _) = send(&closed, request(&Method::HEAD, "/", Cred::None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&open, request(&Method::HEAD, "/", Cred::None)).await;
    assert_eq!(status, StatusCode::OK);
}

fn form_post(uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded")
}

async fn send_full(
    state: &AppState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn a_browser_logs_in_with_the_form_and_out_again() {
    let fx = fixture().await;
    let (state, _) = fx.state(true).await;
    let page = format!("/workloads/{CLUSTER}/{NAMESPACE}/{KIND}/{WORKLOAD}");

    // Refused: the login form, leading back to the page.
    let (status, headers, body) = send_full(&state, request(&Method::GET, &page, Cred::None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(
        body.contains(&format!("name=\"next\" value=\"{page}\"")),
        "{body}"
    );
    assert!(!body.contains(CONTAINER));

    let (status, _, body) = send_full(&state, request(&Method::GET, "/login", Cred::None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("type=\"password\" name=\"token\""), "{body}");

    let login = |form: String| form_post("/login").body(Body::from(form.clone())).unwrap();
    let (status, headers, body) =
        send_full(&state, login(format!("token={WRONG}&next={page}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(headers.get("set-cookie").is_none());
    assert!(body.contains("That token is not accepted."));
    assert!(!body.contains(WRONG), "the token is not echoed");

    let (status, headers, _) = send_full(&state, login(format!("token={TOKEN}&next={page}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], page.as_str());
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds a derived value: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let mut req = request(&Method::GET, &page, Cred::None);
    req.headers_mut().insert("cookie", session.parse().unwrap());
    let (status, _, body) = send_full(&state, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(CONTAINER), "the page itself: {body}");

    // Behind TLS the cookie is Secure; `next` never leads off this server.
    let (_, headers, _) = send_full(
        &state,
        form_post("/login")
            .header("x-forwarded-proto", "https")
            .body(Body::from(format!("token={TOKEN}&next=//evil.example/x")))
            .unwrap(),
    )
    .await;
    assert_eq!(headers["location"], "/");
    assert!(headers["set-cookie"].to_str().unwrap().contains("Secure"));

    // A login posted from another site is refused (login CSRF).
    let (status, headers, _) = send_full(
        &state,
        form_post("/login")
            .header("origin", "http://evil.example")
            .header("host", "rightsizer.local")
            .body(Body::from(format!("token={TOKEN}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("set-cookie").is_none());

    // A server without tokens says so rather than refusing every token alike.
    let mut tokenless = state.clone();
    tokenless.auth = Arc::new(AuthConfig::default());
    let (status, _, body) = send_full(&tokenless, login(format!("token={TOKEN}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("No API tokens are configured"), "{body}");

    let (status, headers, _) =
        send_full(&state, request(&Method::POST, "/logout", Cred::Cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cleared = headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("rightsizer_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

/// An action authenticated by the cookie alone must come from this server's own pages; a
/// bearer token is not sent by a browser on its own, so it needs no such check.
#[tokio::test]
async fn cookie_only_actions_from_another_site_are_refused() {
    let fx = fixture().await;
    let cases = [
        (
            Cred::Cookie,
            Some(("origin", "http://evil.example")),
            StatusCode::FORBIDDEN,
        ),
        (
            Cred::Cookie,
            Some(("sec-fetch-site", "cross-site")),
            StatusCode::FORBIDDEN,
        ),
        (
            Cred::Cookie,
            Some(("sec-fetch-site", "same-site")),
            StatusCode::FORBIDDEN,
        ),
        (
            Cred::Cookie,
            Some(("origin", "null")),
            StatusCode::FORBIDDEN,
        ),
        (
            Cred::Cookie,
            Some(("origin", "http://rightsizer.local")),
            StatusCode::ACCEPTED,
        ),
        (
            Cred::Cookie,
            Some(("sec-fetch-site", "same-origin")),
            StatusCode::ACCEPTED,
        ),
        (
            Cred::Header,
            Some(("origin", "http://evil.example")),
            StatusCode::ACCEPTED,
        ),
    ];
    for (cred, header, want) in cases {
        let (state, _) = fx.state(false).await;
        let mut req = request(&Method::POST, "/api/v1/analyze", cred);
        req.headers_mut()
            .insert("host", "rightsizer.local".parse().unwrap());
        if let Some((name, value)) = header {
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        let (status, body) = send(&state, req).await;
        assert_eq!(status, want, "{cred:?} {header:?}: {body}");
    }
}

/// `/readyz` stays open for probes, which carry no token, so it names clusters only to
/// callers who may read.
#[tokio::test]
async fn readiness_names_clusters_only_to_readers() {
    let fx = fixture().await;
    let (mut state, _) = fx.state(true).await;
    // Two clusters, so the answer would say which one is not ready.
    let jobs = state.jobs.as_ref().unwrap();
    jobs.known.lock().unwrap().push("clu-other".into());
    jobs.sources
        .lock()
        .unwrap()
        .insert(JOBS_CLUSTER.into(), "remote-read".into());
    jobs.sources.lock().unwrap().insert(
        "clu-other".into(),
        "query-range (remote read unavailable)".into(),
    );
    state.readiness_max_collection_age = Some(std::time::Duration::from_secs(3600));
    let (status, body) = send(&state, request(&Method::GET, "/readyz", Cred::None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        !body.contains(JOBS_CLUSTER) && !body.contains("clu-other"),
        "{body}"
    );
    // The sources in use, unnamed.
    assert!(
        body.contains(r#""collector_source":"query-range (remote read unavailable); remote-read""#),
        "{body}"
    );
    let (_, body) = send(&state, request(&Method::GET, "/readyz", Cred::Header)).await;
    assert!(
        body.contains(JOBS_CLUSTER) && body.contains("clu-other"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#""collector_source":"{JOBS_CLUSTER}: remote-read; clu-other: query-range (remote read unavailable)""#
        )),
        "{body}"
    );
}

/// The body limit with a token that is accepted, so only the limit can refuse: a declared
/// Content-Length over it and a chunked body that grows over it both get exactly 413, through
/// a real socket; a small body goes through.
#[tokio::test]
async fn bodies_over_the_limit_get_413_with_a_valid_token() {
    let fx = fixture().await;
    let (state, _) = fx.state(false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/analyze"))
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{body}"
    );

    let answer = chunked_post(addr, "/api/v1/analyze", 80_000).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    let answer = chunked_post(addr, "/api/v1/analyze", 1_000).await;
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Posts `len` bytes as a chunked body (no Content-Length) with the valid token and returns
/// what the server answered. The server may answer and close before reading it all, so a
/// failed write is not an error here: the answer is.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, len: usize) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut message = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in vec![b'x'; len].chunks(4096) {
        message.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        message.extend_from_slice(chunk);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"0\r\n\r\n");
    let _ = sock.write_all(&message).await;
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Records run `id` as failed, in the name of whichever registry started it.
async fn end_run(state: &AppState, id: &str) {
    let seq: i64 = id.rsplit('-').next().unwrap().parse().unwrap();
    let run = state
        .store
        .run(seq)
        .await
        .unwrap()
        .expect("the running run is stored");
    let outcome = rightsizer::store::RunOutcome {
        finished_at: chrono::Utc::now().timestamp(),
        done: 0,
        total: 0,
        result: Err("ended by the test".into()),
    };
    // False only when it ended meanwhile, which is as good.
    state
        .store
        .finish_run(seq, &run.holder, &outcome)
        .await
        .unwrap();
}
