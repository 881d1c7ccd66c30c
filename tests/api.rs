//! The HTTP API through `router(state).oneshot(..)` on both store backends, and once
//! through a real socket with graceful shutdown.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rightsizer::http::{router, serve, AppState};
use rightsizer::model::{
    Confidence, ContainerKey, Evidence, Finding, Recommendation, Resources, Severity, Status,
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
        impact: None,
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
    AppState { store }
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

async fn scenarios(state: AppState) {
    let (status, body) = get(&state, "/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, body) = get(&state, "/api/v1/recommendations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 4);
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
            .contains("unknown field `namespcae`"),
        "{body}"
    );

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
