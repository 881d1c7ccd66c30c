//! Report summaries posted to Slack, Microsoft Teams and a generic webhook, against a local
//! server that records each request and answers as those services document: Slack's
//! incoming webhooks answer `200 ok`, or `429` with `Retry-After` when rate limited
//! (api.slack.com/messaging/webhooks, docs.slack.dev/apis/web-api/rate-limits); a Teams
//! Workflows webhook answers `202 Accepted` (learn.microsoft.com, "Create incoming webhooks
//! with Workflows for Microsoft Teams"). Here the Slack endpoint fails once with a 500, the
//! Teams one rate-limits once, and a fourth target always fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use rightsizer::model::{Finding, Recommendation, Severity};
use rightsizer::report::notify::{label, send_all, Links, Notifications, Target, TargetKind};
use secrecy::SecretString;
use serde_json::Value;

const MI: i64 = 1 << 20;
const SECRET: &str = "T0000/B0000/XXXXsecretXXXX";

#[derive(Default)]
struct Recorded {
    /// (path, body) of every request, in order.
    requests: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Recorded>>;

async fn hook(
    State(rec): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/json",
        "{path}"
    );
    let mut rec = rec.lock().unwrap();
    let seen = rec.requests.iter().filter(|(p, _)| *p == path).count();
    rec.requests
        .push((path.clone(), serde_json::from_str(&body).unwrap()));
    let mut out = HeaderMap::new();
    let status = match (path.split('/').next().unwrap(), seen) {
        ("slack", 0) => StatusCode::INTERNAL_SERVER_ERROR,
        ("slack", _) => StatusCode::OK,
        ("teams", 0) => {
            out.insert("retry-after", "1".parse().unwrap());
            StatusCode::TOO_MANY_REQUESTS
        }
        ("teams", _) => StatusCode::ACCEPTED,
        ("broken", _) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (status, out, "ok")
}

fn rec(workload: &str, severity: Severity, savings: f64, findings: &[&str]) -> Recommendation {
    let mut r = rightsizer::testing::proposal(workload, severity, savings);
    if savings < 0.0 {
        r.recommended = rightsizer::testing::resources(1500, 1536 * MI);
    }
    r.findings = findings
        .iter()
        .map(|code| Finding {
            code: code.to_string(),
            severity,
            message: code.to_string(),
        })
        .collect();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_reach_slack_teams_and_webhooks_with_retries_and_no_url_in_errors() {
    let recorded: Shared = Arc::default();
    let app = Router::new()
        .route("/{*path}", post(hook))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let before = rightsizer::report::build(
        &[rec("api", Severity::Info, 40.0, &[])],
        None,
        1_700_000_000,
    );
    let now = rightsizer::report::build(
        &[
            rec("api", Severity::Info, 40.0, &[]),
            rec("search", Severity::Warning, 25.0, &[]),
            rec("cart", Severity::Critical, -12.5, &["oom-kills"]),
        ],
        Some(&before),
        1_700_086_400,
    );

    let target = |kind: TargetKind, path: &str, index: usize| Target {
        kind,
        url: SecretString::from(format!("http://{addr}/{path}/{SECRET}")),
        label: label(kind, index),
    };
    let n = Notifications {
        targets: vec![
            target(TargetKind::Slack, "slack", 0),
            target(TargetKind::Teams, "teams", 0),
            target(TargetKind::Webhook, "generic", 0),
            target(TargetKind::Webhook, "broken", 1),
        ],
        links: Links {
            dashboard_url: Some("https://rightsizer.example.com".into()),
            pull_requests_url: Some("https://github.com/acme/deploy/pulls".into()),
        },
        top: 5,
    };
    let results = send_all(&n, &now, Duration::from_millis(50)).await;

    let outcomes: Vec<(&str, bool)> = results
        .iter()
        .map(|(label, r)| (label.as_str(), r.is_ok()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("slack #1", true),
            ("teams #1", true),
            ("webhook #1", true),
            ("webhook #2", false)
        ]
    );
    let error = results[3].1.as_ref().unwrap_err().to_string();
    assert_eq!(error, "webhook #2: answered 503 after 3 attempt(s)");

    let recorded = recorded.lock().unwrap();
    let count = |prefix: &str| {
        recorded
            .requests
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .count()
    };
    assert_eq!(
        (
            count("slack"),
            count("teams"),
            count("generic"),
            count("broken")
        ),
        (2, 2, 1, 3),
        "retries after a 500 and a 429, none after a 200, three attempts in all"
    );
    let body = |prefix: &str| {
        &recorded
            .requests
            .iter()
            .rev()
            .find(|(p, _)| p.starts_with(prefix))
            .unwrap()
            .1
    };

    let slack = body("slack");
    let title = slack["text"].as_str().unwrap();
    assert_eq!(
        title,
        "rightsizer report 2023-11-15 22:13 UTC: 52.50 EUR/month to save"
    );
    let blocks: Vec<&str> = slack["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
            b["text"]["text"].as_str().unwrap()
        })
        .collect();
    assert!(
        blocks[0].contains("3 changes proposed, 1 critical containers."),
        "{blocks:?}"
    );
    assert!(
        blocks[1].starts_with("*Top changes*\n• shop/Deployment/api app: cpu 1 → 250m"),
        "{blocks:?}"
    );
    assert!(
        blocks[2].starts_with("*Newly critical*\n• shop/Deployment/cart app: oom-kills"),
        "{blocks:?}"
    );
    assert!(
        blocks[3].contains("Dashboard: https://rightsizer.example.com"),
        "{blocks:?}"
    );

    let teams = body("teams");
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["text"], title);
    assert_eq!(
        card["content"]["actions"][1]["url"],
        "https://github.com/acme/deploy/pulls"
    );

    let generic = body("generic");
    assert_eq!(generic["event"], "report");
    assert_eq!(generic["summary"]["monthly_savings"], 52.5);
    assert_eq!(generic["summary"]["critical"], 1);
    assert_eq!(
        generic["summary"]["new_critical"][0],
        "shop/Deployment/cart app: oom-kills"
    );
    assert_eq!(
        generic["links"]["dashboard"],
        "https://rightsizer.example.com"
    );

    for (_, result) in &results {
        if let Err(e) = result {
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_target_is_an_error_without_its_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n = Notifications {
        targets: vec![Target {
            kind: TargetKind::Slack,
            url: SecretString::from(format!("http://127.0.0.1:{port}/{SECRET}")),
            label: "slack #1".into(),
        }],
        links: Links::default(),
        top: 5,
    };
    let report = rightsizer::report::build(&[], None, 1_700_000_000);
    let results = send_all(&n, &report, Duration::from_millis(10)).await;
    let error = results[0].1.as_ref().unwrap_err().to_string();
    assert!(error.starts_with("slack #1: "), "{error}");
    assert!(error.ends_with("after 3 attempt(s)"), "{error}");
    assert!(
        !error.contains(SECRET) && !error.contains("127.0.0.1"),
        "{error}"
    );
}
