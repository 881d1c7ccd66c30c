//! The dashboard: handlers through `router(state).oneshot(..)` on SQLite, then the real
//! server in headless Chromium (DOM after scripts, and screenshots saved as artifacts under
//! `target/test-artifacts/`).

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use rightsizer::http::{router, serve, AppState};
use rightsizer::model::{
    Backtest, BacktestFigures, Chunk, Confidence, ContainerKey, Evidence, EvidenceBacktest,
    Finding, HoldoutFigures, Impact, Recommendation, Resource, Resources, Severity, SignalHour,
    Status, StrategyScore, UsageHour,
};
use rightsizer::sketch::Sketch;
use rightsizer::store::Store;
use support::browser;
use support::prometheus::TempDir;
use tower::ServiceExt;

const MI: i64 = 1 << 20;
const COMPUTED_AT: i64 = 1_700_000_000;
/// Start of the newest stored usage hour.
const NEWEST_HOUR: i64 = COMPUTED_AT / 3600 * 3600 - 3600;
/// Hours of usage stored; the recommendations' window is shorter.
const STORED_HOURS: i64 = 72;
const WINDOW_HOURS: u32 = 48;
const SAMPLES_PER_HOUR: usize = 60;
const HOSTILE: &str = r#"<script>alert("pwned")</script>"#;

/// The workloads the fleet is generated from: namespace, kind, name.
const WORKLOADS: &[(&str, &str, &str)] = &[
    ("checkout", "Deployment", "cart"),
    ("checkout", "Deployment", "checkout-api"),
    ("checkout", "CronJob", "abandoned-carts"),
    ("payments", "StatefulSet", "ledger"),
    ("payments", "Deployment", "gateway"),
    ("payments", "Deployment", "fraud-scorer"),
    ("search", "Deployment", "query"),
    ("search", "StatefulSet", "indexer"),
    ("search", "DaemonSet", "log-shipper"),
    ("web", "Deployment", "frontend"),
    ("web", "Deployment", "images"),
    ("web", "Deployment", "auth"),
];

fn key(namespace: &str, kind: &str, workload: &str, container: &str) -> ContainerKey {
    ContainerKey {
        cluster: "prod".into(),
        namespace: namespace.into(),
        kind: kind.into(),
        workload: workload.into(),
        container: container.into(),
    }
}

/// A recommendation proposing `rec_cpu`/`rec_mem` requests (limits: CPU ×4, memory = request).
fn proposal(
    key: ContainerKey,
    current: Resources,
    rec_cpu: i64,
    rec_mem: i64,
    replicas: f64,
    severity: Severity,
) -> Recommendation {
    let recommended = Resources {
        cpu_request_millicores: Some(rec_cpu),
        cpu_limit_millicores: Some(rec_cpu * 4),
        memory_request_bytes: Some(rec_mem),
        memory_limit_bytes: Some(rec_mem),
    };
    let cpu_cores_delta =
        (rec_cpu - current.cpu_request_millicores.unwrap_or(0)) as f64 / 1000.0 * replicas;
    let memory_gib_delta = (rec_mem - current.memory_request_bytes.unwrap_or(0)) as f64
        / (1024.0 * MI as f64)
        * replicas;
    let mut findings = Vec::new();
    if current.cpu_limit_millicores.is_none() {
        findings.push(Finding {
            code: "no-limits".into(),
            severity: Severity::Warning,
            message: "no CPU limit: a busy neighbour can starve this container".into(),
        });
    }
    if severity == Severity::Critical {
        findings.push(Finding {
            code: "cpu-starved".into(),
            severity: Severity::Critical,
            message: "usage is above the CPU request most of the time".into(),
        });
    }
    Recommendation {
        key,
        status: Status::Ok,
        current,
        recommended,
        confidence: Confidence::High,
        confidence_score: 0.92,
        reason: format!(
            "cpu to {}m (p95 × 1.15), memory to {}Mi (peak × 1.15)",
            rec_cpu,
            rec_mem / MI
        ),
        strategy: "guidance".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(rec_cpu as f64 / 1.15),
            memory_peak_bytes: Some(rec_mem as f64 / 1.15),
            samples: WINDOW_HOURS as u64 * SAMPLES_PER_HOUR as u64,
            memory_samples: WINDOW_HOURS as u64 * SAMPLES_PER_HOUR as u64,
            history_hours: WINDOW_HOURS,
            window_hours: WINDOW_HOURS,
            margin: 0.15,
            rules: vec![
                "cpu request = p95 × 1.15".into(),
                "cpu limit = 4 × request".into(),
            ],
            memory_basis: "peak".into(),
            cpu_mean_millicores: Some(rec_cpu as f64 * 0.55),
            memory_mean_bytes: Some(rec_mem as f64 * 0.7),
            average_replicas: replicas,
            policy_sources: vec!["default".into()],
            ..Evidence::default()
        },
        computed_at: COMPUTED_AT,
        severity,
        findings,
        backtest: Some(Backtest {
            current: BacktestFigures {
                cpu_over_request_share: Some(0.02),
                cpu_over_limit_share: current.cpu_limit_millicores.map(|_| 0.0),
                memory_over_limit_hours: current.memory_limit_bytes.map(|_| 0),
            },
            recommended: BacktestFigures {
                cpu_over_request_share: Some(0.05),
                cpu_over_limit_share: Some(0.0),
                memory_over_limit_hours: Some(0),
            },
            memory_censored: false,
        }),
        impact: Some(Impact {
            replicas,
            replicas_after: replicas,
            cpu_cores_delta,
            memory_gib_delta,
            monthly_cost_delta: (cpu_cores_delta * 0.0316 + memory_gib_delta * 0.0042) * 730.0,
            currency: "USD".into(),
        }),
        hpa: None,
    }
}

/// Unix seconds the charted container's fit starts from (a regime change).
const FITTED_FROM: i64 = NEWEST_HOUR - 30 * 3600;

/// The charted container as the tournament left it: `krr-simple` chosen over `guidance`,
/// `vpa` missing the objective, with held-out figures for it and for the current values.
fn with_tournament(mut r: Recommendation) -> Recommendation {
    let figures = |overrun, peak, over_request, cpu_slack, memory_slack| HoldoutFigures {
        days: 7,
        memory_overrun_hours: overrun,
        memory_peak_ratio: Some(peak),
        cpu_over_limit_share: Some(0.0),
        cpu_over_request_share: Some(over_request),
        cpu_slack: Some(cpu_slack),
        memory_slack: Some(memory_slack),
        ..HoldoutFigures::default()
    };
    let score = |strategy: &str, holdout, idle, cpu: i64, memory: i64| StrategyScore {
        strategy: strategy.into(),
        holdout,
        met_objective: true,
        misses: Vec::new(),
        idle_monthly_cost: idle,
        recommended: Resources {
            cpu_request_millicores: Some(cpu),
            cpu_limit_millicores: Some(cpu * 4),
            memory_request_bytes: Some(memory),
            memory_limit_bytes: Some(memory),
        },
        chosen: false,
    };
    let recommended = figures(0, 0.86, 0.042, 0.47, 0.28);
    let mut vpa = score(
        "vpa",
        figures(5, 1.07, 0.12, 0.21, 0.08),
        6.1,
        140,
        330 * MI,
    );
    vpa.met_objective = false;
    vpa.misses = vec![
        "memory above the limit 5 h (objective: 0)".into(),
        format!("named {HOSTILE}"),
    ];
    let mut chosen = score("krr-simple", recommended.clone(), 9.4, 170, 384 * MI);
    chosen.chosen = true;
    r.strategy = "krr-simple".into();
    r.evidence.backtest = Some(EvidenceBacktest {
        in_sample: r.backtest.clone().unwrap(),
        holdout: Some(recommended),
        holdout_current: Some(figures(0, 0.32, 0.0, 0.82, 0.46)),
    });
    r.evidence.strategy_scores = vec![
        score(
            "guidance",
            figures(0, 0.8, 0.03, 0.52, 0.3),
            11.85,
            190,
            400 * MI,
        ),
        chosen,
        vpa,
    ];
    r.evidence.strategy_choice =
        Some("auto: least idle cost among 2 strategies meeting the objective".into());
    r.evidence.fitted_from = Some(FITTED_FROM);
    r
}

/// The generated fleet: one `app` container per workload, an `envoy` sidecar on every
/// third, a no-change, an insufficient-data and a hostile container name.
fn fleet() -> Vec<Recommendation> {
    let mut recs = Vec::new();
    for (i, (ns, kind, name)) in WORKLOADS.iter().enumerate() {
        let i = i as i64;
        let current = Resources {
            cpu_request_millicores: Some(250 + 250 * (i % 4)),
            cpu_limit_millicores: (i % 3 != 0).then_some(1000 + 500 * (i % 4)),
            memory_request_bytes: Some((512 + 128 * (i % 3)) * MI),
            memory_limit_bytes: Some(1024 * MI),
        };
        let severity = [Severity::Info, Severity::Warning, Severity::Critical][(i % 3) as usize];
        let rec_cpu = if severity == Severity::Critical {
            current.cpu_request_millicores.unwrap() * 3 / 2
        } else {
            (current.cpu_request_millicores.unwrap() * (30 + 5 * i) / 100 / 10) * 10
        };
        recs.push(proposal(
            key(ns, kind, name, "app"),
            current,
            rec_cpu,
            (300 + 16 * i) * MI,
            (1 + i % 4) as f64,
            severity,
        ));
        if i % 3 == 0 {
            recs.push(proposal(
                key(ns, kind, name, "envoy"),
                Resources {
                    cpu_request_millicores: Some(100),
                    cpu_limit_millicores: None,
                    memory_request_bytes: Some(128 * MI),
                    memory_limit_bytes: None,
                },
                30,
                72 * MI,
                (1 + i % 4) as f64,
                Severity::Warning,
            ));
        }
    }
    // The charted workload: numbers that match the usage written by `usage_rows`.
    recs[0] = with_tournament(proposal(
        key("checkout", "Deployment", "cart", "app"),
        Resources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: Some(1000),
            memory_request_bytes: Some(512 * MI),
            memory_limit_bytes: Some(1024 * MI),
        },
        170,
        384 * MI,
        3.0,
        Severity::Warning,
    ));
    let no_change = recs
        .iter_mut()
        .find(|r| r.key.workload == "gateway")
        .unwrap();
    no_change.status = Status::NoChange;
    no_change.recommended = Resources::default();
    no_change.impact = None;
    no_change.reason = "every value is within the minimum change".into();
    let thin = recs
        .iter_mut()
        .find(|r| r.key.workload == "images")
        .unwrap();
    thin.status = Status::InsufficientData;
    thin.recommended = Resources::default();
    thin.impact = None;
    thin.backtest = None;
    thin.evidence.history_hours = 5;
    thin.reason = "only 5 h of history; 24 h needed".into();
    let mut hostile = proposal(
        key("web", "Deployment", "frontend", HOSTILE),
        Resources {
            cpu_request_millicores: Some(200),
            cpu_limit_millicores: Some(400),
            memory_request_bytes: Some(256 * MI),
            memory_limit_bytes: Some(256 * MI),
        },
        100,
        200 * MI,
        2.0,
        Severity::Info,
    );
    hostile.findings.push(Finding {
        code: "odd-name".into(),
        severity: Severity::Info,
        message: format!("container {HOSTILE} & friends"),
    });
    recs.push(hostile);
    recs
}

/// Deterministic hourly usage for `cart`: CPU skewed between 40m and 160m, memory between
/// 250Mi and 330Mi, over `STORED_HOURS` hours.
fn usage_rows() -> Vec<UsageHour> {
    let mut rows = Vec::new();
    for (container, cpu_scale) in [("app", 1.0), ("envoy", 0.15)] {
        let k = key("checkout", "Deployment", "cart", container);
        for h in 0..STORED_HOURS {
            let hour_start = NEWEST_HOUR - h * 3600;
            let mut cpu = Sketch::new();
            let mut memory = Sketch::new();
            for s in 0..SAMPLES_PER_HOUR {
                let u = ((h as usize * 61 + s * 17) % 100) as f64 / 100.0;
                cpu.insert((0.04 + 0.12 * u * u * u) * cpu_scale).unwrap();
                memory
                    .insert((250.0 + 80.0 * u * u) * cpu_scale.max(0.2) * MI as f64)
                    .unwrap();
            }
            for (resource, sketch) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
                rows.push(UsageHour {
                    key: k.clone().into(),
                    resource,
                    hour_start,
                    sketch,
                });
            }
        }
    }
    rows
}

/// `cart`'s app container: an OOM kill 5 hours before the newest hour, a plain restart
/// 30 hours before it, and an OOM kill older than the recommendations' window.
fn signal_rows() -> Vec<SignalHour> {
    [(5, 1, 1), (30, 1, 0), (60, 1, 1)]
        .into_iter()
        .map(|(hours_back, restarts, oom_kills)| SignalHour {
            key: key("checkout", "Deployment", "cart", "app"),
            hour_start: NEWEST_HOUR - hours_back * 3600,
            restarts,
            oom_kills,
            cfs_periods: 0.0,
            cfs_throttled_periods: 0.0,
        })
        .collect()
}

async fn seeded_store(dir: &TempDir) -> (Arc<dyn Store>, Vec<Recommendation>) {
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let recs = fleet();
    store.replace_recommendations("prod", &recs).await.unwrap();
    store
        .write_chunk(&Chunk {
            cluster: "prod".into(),
            hours: (0..STORED_HOURS).map(|h| NEWEST_HOUR - h * 3600).collect(),
            usage: usage_rows(),
            signals: signal_rows(),
            ..Chunk::default()
        })
        .await
        .unwrap();
    (store, recs)
}

struct Page {
    status: StatusCode,
    content_type: String,
    cache_control: String,
    body: String,
}

async fn get(state: &AppState, uri: &str) -> Page {
    let resp = router(state.clone())
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let header_str = |name| {
        resp.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let status = resp.status();
    let content_type = header_str(header::CONTENT_TYPE);
    let cache_control = header_str(header::CACHE_CONTROL);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        content_type,
        cache_control,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// The `data-key` of every fleet table row, in order (as serialized).
fn row_keys(html: &str) -> Vec<String> {
    html.match_indices("<tr data-key=\"")
        .map(|(at, m)| {
            let rest = &html[at + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

fn escaped_key(r: &Recommendation) -> String {
    rightsizer::http::dashboard::escape_html(&format!(
        "{}/{}/{}/{}",
        r.key.namespace, r.key.kind, r.key.workload, r.key.container
    ))
}

fn savings(r: &Recommendation) -> f64 {
    r.impact.as_ref().map_or(0.0, |i| -i.monthly_cost_delta)
}

async fn state() -> (TempDir, AppState, Vec<Recommendation>) {
    let dir = TempDir::new("rs-dashboard").unwrap();
    let (store, recs) = seeded_store(&dir).await;
    (dir, AppState::new(store), recs)
}

#[tokio::test]
async fn fleet_page_lists_every_container_with_totals() {
    let (_dir, state, recs) = state().await;
    let page = get(&state, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    let body = &page.body;
    assert!(body.starts_with("<!doctype html>"));
    assert!(body.contains("href=\"/assets/app.css?v="));
    let keys = row_keys(body);
    assert_eq!(keys.len(), recs.len());
    for r in &recs {
        assert!(keys.contains(&escaped_key(r)), "missing {}", r.key);
    }
    for (_, _, name) in WORKLOADS {
        assert!(body.contains(&format!(">{name}</a>")), "no link to {name}");
    }
    assert!(body.contains("href=\"/workloads/prod/checkout/Deployment/cart\""));
    assert!(body.contains("href=\"/workloads/prod/checkout/Deployment/cart#container-envoy\""));

    // Totals, computed here the documented way.
    let replicas = |r: &Recommendation| {
        r.impact
            .as_ref()
            .map(|i| i.replicas)
            .filter(|n| *n > 0.0)
            .unwrap_or(r.evidence.average_replicas)
    };
    let sum = |f: &dyn Fn(&Recommendation) -> f64| -> f64 {
        recs.iter().map(|r| f(r) * replicas(r)).sum()
    };
    let target = |r: &Recommendation| {
        if r.status == Status::Ok {
            r.recommended
        } else {
            r.current
        }
    };
    let gib = 1024.0 * MI as f64;
    let expected = [
        (
            "cpu-requested",
            sum(&|r| r.current.cpu_request_millicores.unwrap_or(0) as f64 / 1000.0),
            "cores",
        ),
        (
            "cpu-used",
            sum(&|r| r.evidence.cpu_mean_millicores.unwrap_or(0.0) / 1000.0),
            "cores",
        ),
        (
            "cpu-recommended",
            sum(&|r| target(r).cpu_request_millicores.unwrap_or(0) as f64 / 1000.0),
            "cores",
        ),
        (
            "memory-requested",
            sum(&|r| r.current.memory_request_bytes.unwrap_or(0) as f64 / gib),
            "GiB",
        ),
        (
            "memory-used",
            sum(&|r| r.evidence.memory_mean_bytes.unwrap_or(0.0) / gib),
            "GiB",
        ),
        (
            "memory-recommended",
            sum(&|r| target(r).memory_request_bytes.unwrap_or(0) as f64 / gib),
            "GiB",
        ),
    ];
    for (name, value, unit) in expected {
        let cell = format!("data-total=\"{name}\">{value:.1} {unit}</span>");
        assert!(body.contains(&cell), "expected {cell}");
    }
    let saved: f64 = recs.iter().map(savings).sum();
    assert!(saved > 100.0, "the fleet saves money: {saved}");
    let money = format!("${}", saved.round() as i64);
    let money = if saved >= 1000.0 {
        format!(
            "{},{}",
            &money[..money.len() - 3],
            &money[money.len() - 3..]
        )
    } else {
        money
    };
    assert!(
        body.contains(&format!("data-total=\"savings\">{money}</p>")),
        "expected savings {money}"
    );
    for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
        let n = recs.iter().filter(|r| r.severity == severity).count();
        let s = severity.as_str();
        assert!(
            body.contains(&format!("<b data-count=\"{s}\">{n}</b>")),
            "{s} count {n}"
        );
    }
}

#[tokio::test]
async fn fleet_sorts_and_filters_through_links_without_javascript() {
    let (_dir, state, recs) = state().await;
    let default = get(&state, "/").await.body;
    // Header links: the first click on a column asks for its natural order.
    assert!(default.contains("<a href=\"/?sort=name&amp;order=asc\">Workload</a>"));
    assert!(default.contains("<a href=\"/?sort=severity&amp;order=desc\">Severity</a>"));
    assert!(default.contains("aria-sort=\"descending\"><a href=\"/?sort=savings&amp;order=asc\">"));

    // Default: biggest savings first.
    let mut by_savings: Vec<&Recommendation> = recs.iter().collect();
    by_savings.sort_by(|a, b| {
        savings(b)
            .total_cmp(&savings(a))
            .then_with(|| escaped_key(a).cmp(&escaped_key(b)))
    });
    let keys = row_keys(&default);
    assert_eq!(keys[0], escaped_key(by_savings[0]));
    assert_eq!(
        keys.last().unwrap(),
        &escaped_key(by_savings.last().unwrap())
    );

    let asc = row_keys(&get(&state, "/?sort=name&order=asc").await.body);
    let mut sorted = asc.clone();
    sorted.sort();
    assert_eq!(asc, sorted, "name ascending");
    let mut desc = row_keys(&get(&state, "/?sort=name&order=desc").await.body);
    desc.reverse();
    assert_eq!(asc, desc, "name descending is the reverse");
    let page = get(&state, "/?sort=name&order=asc").await.body;
    assert!(page.contains("aria-sort=\"ascending\"><a href=\"/?sort=name&amp;order=desc\">"));

    let severe = row_keys(&get(&state, "/?sort=severity").await.body);
    let critical = recs
        .iter()
        .filter(|r| r.severity == Severity::Critical)
        .count();
    assert!(critical > 0);
    for (i, k) in severe.iter().enumerate() {
        let r = recs.iter().find(|r| escaped_key(r) == *k).unwrap();
        assert_eq!(
            r.severity == Severity::Critical,
            i < critical,
            "critical first: {k}"
        );
    }

    // Filters; blank form fields mean "any", as a submitted form sends them.
    let payments = row_keys(
        &get(
            &state,
            "/?namespace=payments&q=&severity=&status=&sort=name&order=asc",
        )
        .await
        .body,
    );
    let mut expected: Vec<String> = recs
        .iter()
        .filter(|r| r.key.namespace == "payments")
        .map(escaped_key)
        .collect();
    expected.sort();
    assert_eq!(payments, expected);
    let found = get(&state, "/?q=LEDGER").await.body;
    assert_eq!(
        row_keys(&found),
        [
            "payments/StatefulSet/ledger/app",
            "payments/StatefulSet/ledger/envoy"
        ]
    );
    assert!(found.contains("<option value=\"payments\">payments</option>"));
    assert!(found.contains("value=\"LEDGER\""));
    let critical_rows = row_keys(&get(&state, "/?severity=critical").await.body);
    assert_eq!(critical_rows.len(), critical);
    let thin = row_keys(&get(&state, "/?status=insufficient-data").await.body);
    assert_eq!(thin, ["web/Deployment/images/app"]);
    let none = get(&state, "/?q=nothing-like-this").await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.contains("No container matches these filters."));
    // A filtered view keeps its filters in the sort links.
    let filtered = get(&state, "/?namespace=web&q=front%20").await.body;
    assert!(filtered.contains("href=\"/?sort=name&amp;order=asc&amp;namespace=web&amp;q=front\""));
}

#[tokio::test]
async fn bad_parameters_are_400_pages_naming_the_parameter() {
    let (_dir, state, _) = state().await;
    for (uri, param, message) in [
        (
            "/?sort=cost",
            "sort",
            "invalid parameter `sort`: unknown value &quot;cost&quot;; expected savings, severity or name",
        ),
        (
            "/?order=sideways",
            "order",
            "invalid parameter `order`: unknown value &quot;sideways&quot;; expected asc or desc",
        ),
        (
            "/?severity=high",
            "severity",
            "invalid parameter `severity`: unknown value &quot;high&quot;; expected info, warning or critical",
        ),
        (
            "/?page=0",
            "page",
            "invalid parameter `page`: &quot;0&quot; is not a page number (1, 2, …)",
        ),
        (
            "/?page=2",
            "page",
            "invalid parameter `page`: page 2 is past the last page, 1",
        ),
        (
            "/?limit=10",
            "limit",
            "invalid parameter `limit`: unknown parameter; expected one of sort, order, cluster, namespace, q, severity, status, page",
        ),
        (
            "/?sort=name&sort=savings",
            "sort",
            "invalid parameter `sort`: given more than once",
        ),
    ] {
        let page = get(&state, uri).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(page.content_type, "text/html; charset=utf-8", "{uri}");
        assert!(
            page.body.contains(&format!("data-param=\"{param}\"")),
            "{uri}: {}",
            page.body
        );
        assert!(page.body.contains(message), "{uri}: {}", page.body);
    }
}

#[tokio::test]
async fn unknown_workload_is_a_404_page() {
    let (_dir, state, _) = state().await;
    let page = get(&state, "/workloads/prod/checkout/Deployment/nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(page
        .body
        .contains("no recommendation for prod/checkout/Deployment/nope"));
    let other_cluster = get(&state, "/workloads/staging/checkout/Deployment/cart").await;
    assert_eq!(other_cluster.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_names_are_escaped_everywhere() {
    let (_dir, state, _) = state().await;
    let escaped = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;";
    let fleet = get(&state, "/?namespace=web").await.body;
    let workload = get(&state, "/workloads/prod/web/Deployment/frontend")
        .await
        .body;
    for body in [&fleet, &workload] {
        assert!(body.contains(escaped), "{body}");
        assert!(!body.contains("<script>alert"), "raw markup: {body}");
    }
    assert!(fleet
        .contains("#container-%3Cscript%3Ealert%28%22pwned%22%29%3C%2Fscript%3E\">&lt;script&gt;"));
    assert!(workload.contains(&format!("id=\"container-{escaped}\"")));
    assert!(workload.contains(&format!("container {escaped} &amp; friends")));
    // The search box echoes what was typed, escaped.
    let echoed = get(&state, "/?q=%22%3E%3Cimg%20src%3Dx%3E").await.body;
    assert!(echoed.contains("value=\"&quot;&gt;&lt;img src=x&gt;\""));
    assert!(!echoed.contains("<img src=x>"));
    // A 404 page echoes the path, escaped.
    let missing = get(&state, "/workloads/prod/web/Deployment/%3Cb%3Ex").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("web/Deployment/&lt;b&gt;x"));
    assert!(!missing.body.contains("<b>x"));
}

#[tokio::test]
async fn workload_page_draws_each_container_with_evidence_and_patch() {
    let (_dir, state, recs) = state().await;
    let page = get(&state, "/workloads/prod/checkout/Deployment/cart").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("<h1>cart <span class=\"badge sev-warning\">warning</span></h1>"));
    for container in ["app", "envoy"] {
        assert!(body.contains(&format!("id=\"container-{container}\"")));
    }
    // Two charts per container, each with bars and the four request/limit lines.
    assert_eq!(body.matches("<svg class=\"chart\"").count(), 4);
    for mark in [
        "current-request",
        "current-limit",
        "recommended-request",
        "recommended-limit",
    ] {
        assert!(
            body.matches(&format!("data-mark=\"{mark}\"")).count() >= 2,
            "{mark}"
        );
    }
    assert!(body.contains("data-mark=\"current-request\" data-value=\"500\""));
    assert!(body.contains("data-mark=\"recommended-request\" data-value=\"170\""));
    assert!(body.contains(&format!(
        "data-mark=\"recommended-limit\" data-value=\"{}\"",
        384 * MI
    )));
    assert!(body.matches("<rect class=\"bar\" data-bar=").count() > 10);
    // Only the window's hours are merged: 48 of the 72 stored.
    let window_samples = WINDOW_HOURS as usize * SAMPLES_PER_HOUR;
    assert_eq!(
        body.matches(&format!("data-samples=\"{window_samples}\""))
            .count(),
        4,
        "every chart merges exactly the window"
    );
    assert!(body.contains(
        "<span title=\"2023-11-12 22:00 UTC – 2023-11-14 22:00 UTC\">48 h to 2023-11-14 22:00 UTC</span>"
    ));
    // Evidence, backtest, impact, findings.
    assert!(body.contains("<dt>CPU p95</dt><dd>147.8m</dd>"));
    assert!(body.contains("<dt>History</dt><dd>48 h of a 48 h window</dd>"));
    assert!(body.contains(
        "<th>CPU samples above request</th><td class=\"num\">2.0%</td><td class=\"num\">5.0%</td>"
    ));
    let app = recs
        .iter()
        .find(|r| r.key.workload == "cart" && r.key.container == "app")
        .unwrap();
    let saved = -app.impact.as_ref().unwrap().monthly_cost_delta;
    assert!(body.contains(&format!(
        "<dt>Saves per month</dt><dd><span class=\"good\">${saved:.2}</span>"
    )));
    assert!(body.contains("<dt>CPU requested</dt><dd>−0.99 cores</dd>"));
    assert!(body.contains("data-finding=\"no-limits\""));
    assert!(
        body.contains("<span class=\"badge sev-warning\">warning</span> <code>no-limits</code>")
    );
    // Held out: current and recommended side by side, then the tournament.
    let app_section = &body[..body.find("id=\"container-envoy\"").unwrap()];
    for row in [
        "<th>on 7 days held out</th><th>current</th><th>recommended</th>",
        "<tr><th>Hours above memory limit (OOM)</th><td class=\"num\">0 h</td><td class=\"num\">0 h</td></tr>",
        "<tr><th>Memory peak / limit</th><td class=\"num\">0.32×</td><td class=\"num\">0.86×</td></tr>",
        "<tr><th>CPU samples above limit</th><td class=\"num\">0.0%</td><td class=\"num\">0.0%</td></tr>",
        "<tr><th>CPU samples above request</th><td class=\"num\">0.0%</td><td class=\"num\">4.2%</td></tr>",
        "<tr><th>CPU slack</th><td class=\"num\">82%</td><td class=\"num\">47%</td></tr>",
        "<tr><th>Memory slack</th><td class=\"num\">46%</td><td class=\"num\">28%</td></tr>",
        "<dt>Strategy</dt><dd>krr-simple<br><span class=\"muted\" data-strategy-choice>auto: least idle cost among 2 strategies meeting the objective</span></dd>",
        "<dt>Fitted from</dt><dd><span data-fitted-from=\"1699887600\">2023-11-13 15:00 UTC</span>",
        "Strategy tournament: 3 candidates, <b>krr-simple</b> chosen</summary>",
        "<tr data-strategy=\"krr-simple\" data-chosen><td><b>krr-simple</b> <span class=\"badge sev-info\">chosen</span></td>",
        "<td class=\"num\">$9.40</td><td class=\"num\">170m / 680m</td><td class=\"num\">384Mi / 384Mi</td></tr>",
        "<tr data-strategy=\"guidance\"><td>guidance</td><td class=\"num\">7</td><td class=\"num\">0</td>",
        "<tr data-strategy=\"vpa\"><td>vpa</td><td class=\"num\">7</td><td class=\"num\"><span class=\"bad\">5</span></td><td class=\"num\"><span class=\"bad\">1.07×</span></td>",
        "<td><span class=\"bad\">no</span></td>",
        "<li><b>vpa</b> missed the objective: memory above the limit 5 h (objective: 0); named &lt;script&gt;",
    ] {
        assert!(app_section.contains(row), "the app section lacks {row:?}");
    }
    assert_eq!(app_section.matches("data-chosen").count(), 1);
    // The sidecar has a backtest but no held-out days: it says so, and has no tournament.
    let envoy_section = &body[body.find("id=\"container-envoy\"").unwrap()..];
    assert!(envoy_section.contains(
        "<p class=\"muted\" data-no-holdout>No held-out figures: not enough history for a held-out backtest.</p>"
    ));
    assert!(!envoy_section.contains("data-fact=\"tournament\""));
    // The patch, copyable.
    assert!(body.contains("<button type=\"button\" class=\"copy\" data-copy-target=\"patch-text\" hidden>Copy</button>"));
    let pre = &body[body.find("<pre id=\"patch-text\">").unwrap()..];
    let pre = &pre[..pre.find("</pre>").unwrap()];
    assert!(pre.contains("# kubectl patch deployment cart -n checkout --type strategic"));
    assert!(pre.contains("- name: app"));
    assert!(pre.contains("cpu: 170m"));
    assert!(pre.contains("memory: 384Mi"));

    // Nothing to change: the patch section says why instead.
    let thin = get(&state, "/workloads/prod/web/Deployment/images").await;
    assert_eq!(thin.status, StatusCode::OK);
    assert!(thin
        .body
        .contains("data-no-patch>no change proposed for web/Deployment/images"));
    assert!(thin.body.contains("No backtest: too little history."));
    assert!(thin
        .body
        .contains("No held-out figures: not enough history for a held-out backtest."));
    assert!(thin.body.contains("no stored usage"));
    assert!(!thin.body.contains("data-mark=\"recommended-request\""));
}

#[tokio::test]
async fn assets_are_served_with_types_and_cache_headers() {
    let (_dir, state, _) = state().await;
    for (uri, content_type, needle) in [
        ("/assets/app.css", "text/css; charset=utf-8", ".chart-box"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "enhanceTables",
        ),
    ] {
        let page = get(&state, uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert_eq!(page.content_type, content_type, "{uri}");
        assert_eq!(page.cache_control, "public, max-age=3600", "{uri}");
        assert!(page.body.contains(needle), "{uri}");
        assert!(
            !page.body.contains("http://") && !page.body.contains("https://"),
            "{uri} must not load anything from elsewhere"
        );
    }
}

#[tokio::test]
async fn fleet_paginates_two_hundred_rows_per_page() {
    let dir = TempDir::new("rs-dashboard-pages").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let template = fleet().remove(1);
    let recs: Vec<Recommendation> = (0..450)
        .map(|i| {
            let mut r = template.clone();
            r.key.workload = format!("svc-{i:03}");
            r.key.container = "app".into();
            r
        })
        .collect();
    store.replace_recommendations("prod", &recs).await.unwrap();
    let state = AppState::new(store);
    let first = get(&state, "/?sort=name").await.body;
    let keys = row_keys(&first);
    assert_eq!(keys.len(), 200);
    assert_eq!(keys[0], "checkout/Deployment/svc-000/app");
    assert!(first.contains("rows 1–200 of 450 · page 1 of 3"));
    assert!(first.contains("<a rel=\"next\" href=\"/?sort=name&amp;order=asc&amp;page=2\">"));
    assert!(first.contains("data-pages=\"3\""));
    assert!(
        first.contains("data-count=\"warning\">450</b>"),
        "totals cover every page"
    );
    let last = get(&state, "/?sort=name&order=asc&page=3").await.body;
    let keys = row_keys(&last);
    assert_eq!(keys.len(), 50);
    assert_eq!(keys[49], "checkout/Deployment/svc-449/app");
    assert!(last.contains("<a rel=\"prev\" href=\"/?sort=name&amp;order=asc&amp;page=2\">"));
    assert!(!last.contains("rel=\"next\""));
    assert_eq!(
        get(&state, "/?page=4").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn fleet_of_ten_thousand_containers_renders_one_page_of_rows() {
    let dir = TempDir::new("rs-dashboard-10k").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let template = fleet().remove(0);
    let recs: Vec<Recommendation> = (0..10_000)
        .map(|i| {
            let mut r = template.clone();
            r.key.namespace = format!("team-{:02}", i % 40);
            r.key.workload = format!("svc-{i:05}");
            r
        })
        .collect();
    store.replace_recommendations("prod", &recs).await.unwrap();
    let state = AppState::new(store);
    let started = std::time::Instant::now();
    let page = get(&state, "/?sort=severity&page=50").await;
    let elapsed = started.elapsed();
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(row_keys(&page.body).len(), 200);
    assert!(page
        .body
        .contains("rows 9801–10000 of 10000 · page 50 of 50"));
    assert!(page.body.contains("<b data-count=\"warning\">10000</b>"));
    assert!(page.body.len() < 400_000, "{} bytes", page.body.len());
    eprintln!(
        "fleet page of 10,000 containers: {elapsed:?}, {} bytes",
        page.body.len()
    );
}

/// The real server on a loopback port, in headless Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_fleet_sorts_it_and_draws_the_chart() {
    let chromium = browser::chromium(); // fails (not skips) with how to install it
    let (_dir, state, recs) = state().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let dom = |path: &str| {
        let url = format!("{base}{path}");
        tokio::task::spawn_blocking(move || browser::dump_dom(&url))
    };

    let fleet = dom("/?sort=name&order=asc").await.unwrap();
    let asc = row_keys(&fleet);
    assert_eq!(
        asc.len(),
        recs.len(),
        "{}: every container listed",
        chromium.display()
    );
    for (ns, kind, name) in WORKLOADS {
        assert!(
            asc.iter()
                .any(|k| k.starts_with(&format!("{ns}/{kind}/{name}/"))),
            "{ns}/{kind}/{name} listed"
        );
    }
    // The script ran: a one-page table sorts in place, and the Copy button shows.
    assert!(fleet.contains("class=\"js-sortable\""), "app.js ran");
    let mut desc = row_keys(&dom("/?sort=name&order=desc").await.unwrap());
    desc.reverse();
    assert_eq!(asc, desc, "?sort=name&order=desc reverses the order");

    let workload = dom("/workloads/prod/checkout/Deployment/cart")
        .await
        .unwrap();
    assert_eq!(workload.matches("<svg class=\"chart\"").count(), 4);
    // Usage by hour: both resources of both containers, every stored hour of the window,
    // and cart's OOM kill and restart inside the window (not the older one).
    assert_eq!(workload.matches("data-chart=\"timeline\"").count(), 4);
    assert_eq!(
        workload
            .matches(&format!(
                "data-series=\"p95\" data-points=\"{WINDOW_HOURS}\""
            ))
            .count(),
        4
    );
    assert_eq!(workload.matches("data-event=\"oom-kill\"").count(), 2);
    assert_eq!(workload.matches("data-event=\"restart\"").count(), 2);
    for mark in [
        "current-request",
        "current-limit",
        "recommended-request",
        "recommended-limit",
        "basis",
    ] {
        assert!(
            workload.contains(&format!("data-mark=\"{mark}\"")),
            "chart mark {mark}"
        );
    }
    assert!(
        workload.matches("class=\"bar\" data-bar=").count() > 10,
        "histogram bars"
    );
    assert!(
        workload.contains("data-fact=\"holdout\"")
            && workload.contains("<tr data-strategy=\"krr-simple\" data-chosen"),
        "held-out backtest and tournament"
    );
    assert!(
        workload.contains(
            "<button type=\"button\" class=\"copy\" data-copy-target=\"patch-text\">Copy</button>"
        ),
        "the Copy button is shown once the script runs"
    );

    let artifacts = browser::artifact_dir();
    for (path, file, height) in [
        ("/", "dashboard-fleet.png", 1000),
        (
            "/workloads/prod/checkout/Deployment/cart",
            "dashboard-workload.png",
            1000,
        ),
        (
            "/workloads/prod/checkout/Deployment/cart",
            "dashboard-workload-full.png",
            2600,
        ),
    ] {
        let url = format!("{base}{path}");
        let out = artifacts.join(file);
        let target = out.clone();
        tokio::task::spawn_blocking(move || browser::screenshot(&url, &target, 1400, height))
            .await
            .unwrap();
        let size = std::fs::metadata(&out).unwrap().len();
        assert!(
            size > 20_000,
            "{} looks empty ({size} bytes)",
            out.display()
        );
        eprintln!("screenshot: {}", out.display());
    }

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn fleet_page_lists_recent_in_place_changes_escaped() {
    let (_dir, state, _recs) = state().await;
    let page = get(&state, "/").await;
    assert!(
        !page.body.contains("Recent in-place changes"),
        "none yet: no section"
    );
    let change = rightsizer::model::ChangeRecord {
        id: 0,
        at: NEWEST_HOUR,
        cluster: "prod".into(),
        namespace: "checkout".into(),
        pod: "cart-5d8f-x1".into(),
        container: HOSTILE.into(),
        workload: Some("Deployment/cart".into()),
        actor: "serve (replica-a)".into(),
        kind: "rollback".into(),
        before: Resources {
            cpu_request_millicores: Some(150),
            ..Resources::default()
        },
        after: Resources {
            cpu_request_millicores: Some(200),
            ..Resources::default()
        },
        outcome: "resized".into(),
        reason: "rollback: container app was OOM-killed after the resize".into(),
    };
    state.store.record_changes(&[change]).await.unwrap();
    let page = get(&state, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h2>Recent in-place changes</h2>"));
    assert!(page.body.contains("data-kind=\"rollback\""));
    assert!(page.body.contains("150m/- → 200m/-"), "{}", page.body);
    assert!(!page.body.contains(HOSTILE), "container names are escaped");
}
