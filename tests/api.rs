//! The HTTP API through `router(state).oneshot(..)` on both store backends, and once
//! through a real socket with graceful shutdown.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rightsizer::http::{router, serve, AppState};
use rightsizer::model::{
    Confidence, ContainerKey, Evidence, Finding, Impact, Recommendation, Resources, Severity,
    Status,
};
use rightsizer::store::Store;
use serde_json::Value;
use support::postgres::TestDatabase;
use support::prometheus::TempDir;
use tower::ServiceExt;

fn rec(namespace: &str, kind: &str, workload: &str, container: &str) -> Recommendation {
    Recommendation {
        key: ContainerKey {
            cluster: "prod".into(),
            namespace: namespace.into(),
            kind: kind.into(),
            workload: workload.into(),
            container: container.into(),
        },
        status: Status::Ok,
        current: Resources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(256 << 20),
            memory_limit_bytes: None,
        },
        recommended: Resources {
            cpu_request_millicores: Some(120),
            cpu_limit_millicores: Some(480),
            memory_request_bytes: Some(300 << 20),
            memory_limit_bytes: Some(300 << 20),
        },
        confidence: Confidence::High,
        confidence_score: 0.93,
        reason: "no limits set; cpu down (p95 104.0m); memory up (peak 260.0Mi)".into(),
        strategy: "guidance".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(104.0),
            memory_peak_bytes: Some(260.0 * 1048576.0),
            samples: 60_480,
            memory_samples: 60_480,
            history_hours: 336,
            window_hours: 336,
            margin: 0.15,
            rules: vec!["cpu request = p95 104.0m × 1.15 = 120m".into()],
            ..Evidence::default()
        },
        computed_at: 1_700_000_000,
        severity: Severity::Warning,
        findings: vec![Finding {
            code: "no-limits".into(),
            severity: Severity::Warning,
            message: "no CPU or memory limit".into(),
        }],
        backtest: None,
        impact: Some(Impact {
            replicas: 1.0,
            replicas_after: 1.0,
            cpu_cores_delta: -0.38,
            memory_gib_delta: 0.04,
            monthly_cost_delta: -8.65,
            currency: "USD".into(),
        }),
        hpa: None,
    }
}

async fn seeded(store: Arc<dyn Store>) -> AppState {
    let recs = vec![
        rec("shop", "Deployment", "api", "app"),
        rec("shop", "Deployment", "api", "envoy"),
        rec("shop", "StatefulSet", "db", "pg"),
        rec("data", "CronJob", "etl", "etl"),
    ];
    store.replace_recommendations("prod", &recs).await.unwrap();
    AppState::new(store)
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    let resp = router(state.clone())
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}")),
    )
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).to_string())
}

async fn scenarios(state: AppState) {
    let (status, body) = get(&state, "/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, body) = get(&state, "/api/v1/recommendations?sort=name").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 4);
    assert_eq!(body["total"], 4);
    assert_eq!(body["items"][0]["namespace"], "data", "sorted by name");
    let first = &body["items"][0];
    for field in [
        "cluster",
        "namespace",
        "kind",
        "workload",
        "container",
        "status",
        "current",
        "recommended",
        "confidence",
        "evidence",
    ] {
        assert!(!first[field].is_null(), "missing {field}: {first}");
    }
    assert_eq!(first["recommended"]["cpu_limit_millicores"], 480);
    assert_eq!(first["current"]["cpu_limit_millicores"], Value::Null);
    for field in [
        "cpu_percentile",
        "cpu_percentile_millicores",
        "memory_peak_bytes",
        "samples",
        "history_hours",
        "window_hours",
        "margin",
        "rules",
    ] {
        assert!(
            !first["evidence"][field].is_null(),
            "missing evidence.{field}"
        );
    }

    let (_, body) = get(&state, "/api/v1/recommendations?namespace=shop").await;
    assert_eq!(body["count"], 3);
    let (_, body) = get(&state, "/api/v1/recommendations?namespace=s*").await;
    assert_eq!(body["count"], 3, "namespace globs");
    let (_, body) = get(
        &state,
        "/api/v1/recommendations?name=a*&severity=warning&confidence=high&status=ok",
    )
    .await;
    assert_eq!(body["count"], 2);
    let (_, body) = get(&state, "/api/v1/recommendations?selector=app%3Dapi").await;
    assert_eq!(
        body["count"], 0,
        "no labels known without the Kubernetes API source"
    );

    // Cursor pagination walks every item exactly once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/recommendations?sort=name&limit=3".to_string();
    loop {
        let (status, body) = get(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for item in body["items"].as_array().unwrap() {
            seen.push(format!(
                "{}/{}/{}",
                item["namespace"], item["workload"], item["container"]
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/recommendations?sort=name&limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    // CSV by parameter and by Accept header.
    let (status, headers, csv) = send(
        &state,
        Request::builder()
            .uri("/api/v1/recommendations?namespace=shop")
            .header("accept", "text/csv")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(csv.lines().count(), 4, "header + 3 rows: {csv}");
    assert!(csv.starts_with("cluster,namespace,kind,workload,container,status,"));
    let (_, _, csv) = send(
        &state,
        Request::builder()
            .uri("/api/v1/recommendations?format=csv")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(csv.lines().count(), 5);

    // Workload detail and its patch.
    let (status, body) = get(&state, "/api/v1/workloads/prod/shop/Deployment/api").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["containers"].as_array().unwrap().len(), 2);
    assert_eq!(body["findings"][0]["code"], "no-limits");
    let (status, headers, patch) = send(
        &state,
        Request::builder()
            .uri("/api/v1/workloads/prod/shop/Deployment/api/patch?format=strategic-merge")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/yaml");
    assert!(
        patch.contains(
            "      - name: app\n        resources:\n          requests:\n            cpu: 120m\n"
        ),
        "{patch}"
    );
    let (status, body) = get(
        &state,
        "/api/v1/workloads/prod/shop/Deployment/api/patch?format=json-patch",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "container_order_unknown");
    let (status, body) = get(
        &state,
        "/api/v1/workloads/prod/shop/Deployment/api/patch?format=helm",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "parameter `format` must be one of strategic-merge, json-patch, kustomize, yaml; got `helm`");
    let (status, _) = get(&state, "/api/v1/workloads/prod/shop/Deployment/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Fleet views.
    let (_, body) = get(&state, "/api/v1/clusters").await;
    assert_eq!(body["items"][0]["cluster"], "prod");
    assert_eq!(body["items"][0]["containers"], 4);
    assert_eq!(body["items"][0]["workloads"], 3);
    let (_, body) = get(&state, "/api/v1/namespaces?cluster=prod").await;
    let namespaces: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["data", "shop"]);
    assert!(
        (body["items"][1]["requested_cores"].as_f64().unwrap() - 1.5).abs() < 1e-9,
        "{body}"
    );
    let (_, body) = get(&state, "/api/v1/findings?severity=warning&code=no-limits").await;
    assert_eq!(body["count"], 4);
    let (_, body) = get(
        &state,
        "/api/v1/recommendations?namespace=shop&kind=StatefulSet",
    )
    .await;
    assert_eq!(body["count"], 1);
    let (_, body) = get(&state, "/api/v1/recommendations?cluster=other").await;
    assert_eq!(body["count"], 0);

    let (status, body) = get(&state, "/api/v1/recommendations/shop/Deployment/api").await;
    assert_eq!(status, StatusCode::OK);
    let containers: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["container"].as_str().unwrap())
        .collect();
    assert_eq!(containers, ["app", "envoy"]);

    let (status, body) = get(&state, "/api/v1/recommendations/shop/Deployment/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        body["error"]["message"],
        "no recommendation for shop/Deployment/nope"
    );

    let (status, body) = get(&state, "/api/v1/recommendations?namespcae=shop").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown parameter `namespcae`"),
        "{body}"
    );
    // Every bad parameter class, with its exact error.
    for (query, message) in [
        (
            "severity=high",
            "parameter `severity` must be one of info, warning, critical; got `high`",
        ),
        (
            "limit=-1",
            "parameter `limit` must be an integer from 1 to 1000; got `-1`",
        ),
        (
            "limit=1001",
            "parameter `limit` must be an integer from 1 to 1000; got `1001`",
        ),
        (
            "cursor=zzz",
            "parameter `cursor` is not a cursor returned by this API (next_cursor)",
        ),
        (
            "sort=cost",
            "parameter `sort` must be one of savings, severity, name; got `cost`",
        ),
    ] {
        let (status, body) = get(&state, &format!("/api/v1/recommendations?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"]["message"], message, "{query}");
    }

    let (status, body) = get(&state, "/api/v1/recommendations?namespace=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "parameter `namespace` must not be empty"
    );

    let (status, body) = get(&state, "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        "no route for /api/v1/nothing-here"
    );
}

#[tokio::test]
async fn handlers_on_sqlite() {
    let dir = TempDir::new("rs-api").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    scenarios(seeded(store).await).await;
}

#[tokio::test]
async fn handlers_on_postgres() {
    let db = TestDatabase::create().await;
    let store = rightsizer::store::connect(db.url()).await.unwrap();
    scenarios(seeded(store).await).await;
    db.drop_database().await;
}

#[tokio::test]
async fn store_failure_is_a_503_without_internals() {
    let dir = TempDir::new("rs-api-broken").unwrap();
    let path = dir.path().join("rs.db");
    let store = rightsizer::store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let state = seeded(store.clone()).await;
    // Break the schema under the running service.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("drop table recommendations")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = get(&state, "/api/v1/recommendations").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        serde_json::json!({"error": {"code": "store_unavailable", "message": "the database is unavailable"}})
    );
}

#[tokio::test]
async fn through_a_real_socket_with_graceful_shutdown() {
    let dir = TempDir::new("rs-api-socket").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let state = seeded(store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let body: Value = reqwest::get(format!(
        "http://{addr}/api/v1/recommendations/shop/StatefulSet/db"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["items"][0]["container"], "pg");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "the server stopped"
    );
}

fn post(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

/// A Prometheus that accepts connections and never answers: a collect run stays running.
async fn hanging_prometheus() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    url
}

#[tokio::test]
async fn actions_need_tokens_and_run_one_at_a_time() {
    let dir = TempDir::new("rs-api-runs").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let mut state = seeded(store).await;

    // No tokens configured: actions are off.
    let (status, _, body) = send(&state, post("/api/v1/collect", None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("actions are disabled"));

    let prom = rightsizer::prometheus::PromClient::new(&rightsizer::prometheus::PromConfig {
        url: hanging_prometheus().await,
        bearer_token: None,
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    state.jobs = Some(Arc::new(rightsizer::jobs::JobRunner::new(
        vec![rightsizer::jobs::ClusterJob::new("prod", Some(prom))],
        Default::default(),
        rightsizer::jobs::AnalysisSettings {
            // The guidance's own strategy: these checks are of its rules, not the tournament's choice.
            policies: rightsizer::analyzer::PolicySet::new(rightsizer::analyzer::PolicyOverride {
                strategy: Some(rightsizer::analyzer::StrategyName::Guidance),
                ..Default::default()
            })
            .unwrap(),
            pricing: Default::default(),
            step_secs: 60,
            backtest: Default::default(),
        },
    )));
    state.auth = Arc::new(rightsizer::http::auth::AuthConfig::new(
        ["s3cret".to_string(), "other".to_string()],
        false,
    ));

    let (status, headers, body) = send(&state, post("/api/v1/collect", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        body,
        r#"{"error":{"code":"unauthorized","message":"missing bearer token: send Authorization: Bearer <token>"}}"#
    );
    let (status, _, body) = send(&state, post("/api/v1/collect", Some("wrong"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        r#"{"error":{"code":"forbidden","message":"the bearer token is not accepted"}}"#
    );

    let (status, _, body) = send(&state, post("/api/v1/collect", Some("s3cret"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "running");
    let (status, _, body) = send(&state, post("/api/v1/collect", Some("other"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let conflict: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(conflict["error"]["running_id"], id.as_str());
    assert_eq!(conflict["error"]["code"], "run_in_progress");

    // An analysis runs beside it and finishes.
    let (status, _, body) = send(&state, post("/api/v1/analyze", Some("s3cret"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let analyze_id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut finished = Value::Null;
    for _ in 0..100 {
        let (_, body) = get(&state, &format!("/api/v1/runs/{analyze_id}")).await;
        if body["status"] != "running" {
            finished = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let (status, body) = get(&state, &format!("/api/v1/runs/{id}")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    let (status, _) = get(&state, "/api/v1/runs/nope-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Reads need a token once configured.
    state.auth = Arc::new(rightsizer::http::auth::AuthConfig::new(
        ["s3cret".to_string()],
        true,
    ));
    let (status, _) = get(&state, "/api/v1/recommendations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &state,
        Request::builder()
            .uri("/api/v1/recommendations")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "health stays open");
}

#[tokio::test]
async fn readiness_and_metrics() {
    let dir = TempDir::new("rs-api-ops").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let state = seeded(store).await;
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "store": "ok", "collection": "not-checked", "kubernetes": "not-configured", "collector_source": "not-checked"})
    );

    let _ = get(&state, "/api/v1/recommendations").await;
    let (status, headers, text) = send(
        &state,
        Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(text.contains(r#"rightsizer_http_requests_total{route="/api/v1/recommendations",method="GET",status="200"}"#), "{text}");
    assert!(
        text.contains(r#"rightsizer_recommendations{cluster="prod",severity="warning"} 4"#),
        "{text}"
    );
    assert!(text.contains("rightsizer_http_request_duration_seconds_bucket"));
    // The body limit is tested with a valid token in tests/auth.rs.
}

/// `docs/openapi.json` is what the code generates (UPDATE_OPENAPI=1 rewrites it), and
/// every path in it is served.
#[tokio::test]
async fn openapi_document_matches_the_handlers() {
    let generated = rightsizer::http::openapi::document_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path)
        .expect("docs/openapi.json exists (UPDATE_OPENAPI=1 cargo test --test api writes it)");
    // Not assert_eq: the documents are long, and the fix is the same whatever differs.
    assert!(
        checked_in.trim_end() == generated,
        "docs/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test --test api"
    );

    let dir = TempDir::new("rs-api-doc").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let state = seeded(store).await;
    let doc: Value = serde_json::from_str(&generated).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 13, "{:?}", paths.keys());
    for (path, ops) in paths {
        let uri = path
            .replace("{cluster}", "prod")
            .replace("{namespace}", "shop")
            .replace("{kind}", "Deployment")
            .replace("{name}", "api")
            .replace("{id}", "x");
        for method in ops.as_object().unwrap().keys() {
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let (_, _, body) = send(&state, req).await;
            assert!(
                !body.contains("no route for"),
                "{method} {path} is documented but not served"
            );
        }
    }
}
