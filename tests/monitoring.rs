//! deploy/optional/monitoring against the real thing: `serve` on a loopback port, a real
//! Prometheus scraping its `/metrics/recommendations`, and every query of the Grafana dashboard
//! and of the PrometheusRule evaluated there. The rules' logic (when each alert fires) is
//! checked by `promtool test rules` in scripts/check-deploy.sh; this checks that the names and
//! labels they use are the ones the service exports.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rightsizer::http::{serve, AppState};
use rightsizer::model::{Recommendation, Severity, Status};
use serde_json::Value;
use support::prometheus::{Prometheus, TempDir};

fn rec(namespace: &str, workload: &str, severity: Severity, savings: f64) -> Recommendation {
    let mut r = rightsizer::testing::proposal(workload, severity, savings);
    r.key.namespace = namespace.into();
    r
}

fn fleet() -> Vec<Recommendation> {
    let mut recs = vec![
        rec("shop", "api", Severity::Info, 40.0),
        rec("shop", "cart", Severity::Critical, -12.5),
        rec("data", "etl", Severity::Warning, 25.0),
    ];
    let mut same = rec("data", "toolbox", Severity::Info, 1.0);
    same.status = Status::NoChange;
    recs.push(same);
    recs
}

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/optional/monitoring")
        .join(path)
}

/// An instant query's result vector.
async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Vec<Value> {
    let body: Value = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// Every `expr` in a Grafana dashboard, with its variables set to "All".
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$cluster", ".*")
                .replace("$namespace", ".*");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_read_what_serve_exports() {
    let dir = TempDir::new("rs-monitoring").unwrap();
    let store = rightsizer::store::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("rs.db").display()
    ))
    .await
    .unwrap();
    let recs = fleet();
    store.replace_recommendations("prod", &recs).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, AppState::new(store), async {
        let _ = stopped.await;
    }));

    let prom = Prometheus::scraping(
        &format!(
            "  - job_name: rightsizer-recommendations\n    metrics_path: /metrics/recommendations\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
        "1s",
    )
    .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query(&client, prom.url(), "rightsizer_recommendation_proposed").await;
        if got.len() == recs.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {} of {} containers after 60 s; its log:\n{}",
            got.len(),
            recs.len(),
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap())
            .unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 8, "{exprs:?}");
    for (title, expr) in &exprs {
        let got = query(&client, prom.url(), expr).await;
        assert!(!got.is_empty(), "panel {title:?}: {expr} returned nothing");
    }
    let by_title = |title: &str| -> &str { &exprs.iter().find(|(t, _)| t == title).unwrap().1 };
    let savings = query(&client, prom.url(), by_title("Monthly savings")).await;
    assert_eq!(value(&savings[0]), 40.0 - 12.5 + 25.0 + 1.0);
    let critical = query(&client, prom.url(), by_title("Critical containers")).await;
    assert_eq!(value(&critical[0]), 1.0);
    let proposed = query(&client, prom.url(), by_title("Changes proposed")).await;
    assert_eq!(value(&proposed[0]), 3.0);
    let top = query(
        &client,
        prom.url(),
        by_title("Top changes by monthly savings"),
    )
    .await;
    assert_eq!(
        top.len(),
        3,
        "the no-change container is not a change: {top:?}"
    );
    let best = top
        .iter()
        .max_by(|a, b| value(a).total_cmp(&value(b)))
        .unwrap();
    assert_eq!(best["metric"]["workload"], "api");
    let cpu = query(
        &client,
        prom.url(),
        "rightsizer_recommendation_cpu_request_cores{workload=\"cart\"}",
    )
    .await;
    assert_eq!(value(&cpu[0]), 0.25);

    // The variables' label_values() lookups.
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(definition) = variable["definition"].as_str() else {
            continue;
        };
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap();
        let (selector, label) = inner.rsplit_once(", ").unwrap();
        let selector = selector.replace("$cluster", ".*");
        let body: Value = client
            .get(format!("{}/api/v1/label/{label}/values", prom.url()))
            .query(&[("match[]", selector.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            !body["data"].as_array().unwrap().is_empty(),
            "variable {definition}: {body}"
        );
    }

    // Every rule's expression, against the same data.
    let rule: Value =
        yaml_serde::from_str(&std::fs::read_to_string(deploy("prometheusrule.yaml")).unwrap())
            .unwrap();
    let mut checked = 0;
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            let got = query(&client, prom.url(), expr).await;
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            match name {
                "RightsizerContainerAtRisk" | "rightsizer:critical_containers:count" => {
                    assert_eq!(got.len(), 1, "{name}: {got:?}");
                    assert_eq!(got[0]["metric"]["namespace"], "shop", "{name}");
                }
                "rightsizer:monthly_savings:sum" => assert_eq!(got.len(), 2, "{name}: {got:?}"),
                // Scraped here: /metrics/recommendations only, so no collector lag at all.
                "RightsizerCollectionStale" => assert!(got.is_empty(), "{name}: {got:?}"),
                other => panic!("rule {other} has no check here: add one"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
