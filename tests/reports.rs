//! Fleet reports end to end on a SQLite file: two reports generated and stored (the second
//! after the fleet changed), their content checked against the recommendations, every format
//! rendered, the HTML printed by headless Chromium to PNG and PDF under
//! `target/test-artifacts/`, and the `/api/v1/reports` endpoints.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use rightsizer::http::{router, AppState};
use rightsizer::model::{
    Backtest, Chunk, Confidence, ContainerKey, Evidence, EvidenceBacktest, Finding, HoldoutFigures,
    Impact, Recommendation, Resource, Resources, Severity, SignalHour, Status, UsageHour,
};
use rightsizer::report::{self, Format, Report};
use rightsizer::sketch::Sketch;
use rightsizer::store::{self, Store};
use serde_json::Value;
use sqlx::Connection;
use support::browser;
use support::prometheus::TempDir;
use tower::ServiceExt;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;
/// Monday 2024-01-08 06:00 UTC: the first report.
const FIRST: i64 = 1_704_693_600;
/// A week later: the second.
const SECOND: i64 = FIRST + 7 * 86_400;
/// Prices the impacts are computed with.
const CORE_MONTH: f64 = 24.0;
const GIB_MONTH: f64 = 3.2;

fn key(
    cluster: &str,
    namespace: &str,
    kind: &str,
    workload: &str,
    container: &str,
) -> ContainerKey {
    ContainerKey {
        cluster: cluster.into(),
        namespace: namespace.into(),
        kind: kind.into(),
        workload: workload.into(),
        container: container.into(),
    }
}

/// A recommendation moving `current` CPU/memory requests to `recommended` ones over
/// `replicas`, with limits by the guidance (CPU ×4, memory = request) and the impact priced.
fn sized(
    key: ContainerKey,
    replicas: f64,
    current: (Option<i64>, Option<i64>),
    recommended: (i64, i64),
    used: (f64, f64),
) -> Recommendation {
    let (cpu_now, mem_now) = current;
    let (cpu_rec, mem_rec) = recommended;
    let cores = (cpu_rec - cpu_now.unwrap_or(0)) as f64 / 1000.0 * replicas;
    let gib = (mem_rec - mem_now.unwrap_or(0)) as f64 / GI as f64 * replicas;
    Recommendation {
        key,
        status: Status::Ok,
        current: Resources {
            cpu_request_millicores: cpu_now,
            cpu_limit_millicores: cpu_now.map(|c| 2 * c),
            memory_request_bytes: mem_now,
            memory_limit_bytes: mem_now,
        },
        recommended: Resources {
            cpu_request_millicores: Some(cpu_rec),
            cpu_limit_millicores: Some(4 * cpu_rec),
            memory_request_bytes: Some(mem_rec),
            memory_limit_bytes: Some(mem_rec),
        },
        confidence: Confidence::High,
        confidence_score: 0.92,
        reason: format!(
            "cpu p95 {:.0}m, memory peak {}Mi",
            used.0 * 1.4,
            mem_rec / MI
        ),
        strategy: "guidance".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(used.0 * 1.4),
            memory_peak_bytes: Some(used.1 * 1.3),
            samples: 20_160,
            memory_samples: 20_160,
            history_hours: 336,
            window_hours: 336,
            margin: 0.15,
            rules: vec!["cpu request = p95 × 1.15".into()],
            cpu_mean_millicores: Some(used.0),
            memory_mean_bytes: Some(used.1),
            average_replicas: replicas,
            ..Evidence::default()
        },
        computed_at: FIRST - 600,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: Some(Backtest::default()),
        impact: Some(Impact {
            replicas,
            replicas_after: replicas,
            cpu_cores_delta: cores,
            memory_gib_delta: gib,
            monthly_cost_delta: cores * CORE_MONTH + gib * GIB_MONTH,
            currency: "USD".into(),
        }),
        hpa: None,
    }
}

fn finding(code: &str, severity: Severity, message: &str) -> Finding {
    Finding {
        code: code.into(),
        severity,
        message: message.into(),
    }
}

fn oom_killed(mut r: Recommendation, kills: u32, hours_over: u32) -> Recommendation {
    r.severity = Severity::Critical;
    r.evidence.oom_kills = kills;
    r.evidence.restarts = kills;
    r.backtest.as_mut().unwrap().current.memory_over_limit_hours = Some(hours_over);
    r.backtest.as_mut().unwrap().memory_censored = true;
    r.findings.push(finding(
        "oom-killed",
        Severity::Critical,
        &format!("OOM-killed {kills} times in the window: memory raised above the censored peak"),
    ));
    r
}

/// Held-out figures: days, memory overrun hours, CPU above limit, above request, CPU slack,
/// memory slack.
fn figures(days: u32, overrun: u32, shares: [f64; 4]) -> HoldoutFigures {
    let [over_limit, over_request, cpu_slack, memory_slack] = shares;
    HoldoutFigures {
        days,
        memory_overrun_hours: overrun,
        memory_peak_ratio: Some(0.9),
        cpu_over_limit_share: Some(over_limit),
        cpu_over_request_share: Some(over_request),
        cpu_slack: Some(cpu_slack),
        memory_slack: Some(memory_slack),
        ..HoldoutFigures::default()
    }
}

/// `r` as the tournament left it: `strategy` chosen as `choice` says, with held-out figures
/// for it and for the current values.
fn held_out(
    mut r: Recommendation,
    strategy: &str,
    choice: &str,
    recommended: HoldoutFigures,
    current: HoldoutFigures,
) -> Recommendation {
    r.strategy = strategy.into();
    r.evidence.strategy_choice = Some(choice.into());
    r.evidence.backtest = Some(EvidenceBacktest {
        in_sample: r.backtest.clone().unwrap_or_default(),
        holdout: Some(recommended),
        holdout_current: Some(current),
    });
    r
}

/// The fleet at the first report: two clusters, over- and under-provisioned containers,
/// an OOM-killed database, a CPU-starved service, guidance findings and a new CronJob.
fn fleet() -> Vec<Recommendation> {
    let prod = |ns: &str, kind: &str, w: &str, c: &str| key("prod", ns, kind, w, c);
    let mut recs = vec![
        sized(
            prod("shop", "Deployment", "api", "app"),
            6.0,
            (Some(1000), Some(2 * GI)),
            (300, 768 * MI),
            (180.0, 520.0 * MI as f64),
        ),
        sized(
            prod("shop", "Deployment", "api", "envoy"),
            6.0,
            (Some(200), Some(256 * MI)),
            (100, 128 * MI),
            (40.0, 70.0 * MI as f64),
        ),
        sized(
            prod("shop", "Deployment", "cart", "app"),
            3.0,
            (Some(500), Some(GI)),
            (250, 512 * MI),
            (120.0, 300.0 * MI as f64),
        ),
        oom_killed(
            sized(
                prod("shop", "StatefulSet", "db", "postgres"),
                1.0,
                (Some(2000), Some(4 * GI)),
                (1500, 6 * GI),
                (900.0, 3.8 * GI as f64),
            ),
            2,
            5,
        ),
        sized(
            prod("search", "Deployment", "query", "app"),
            2.0,
            (Some(4000), Some(8 * GI)),
            (1200, 5 * GI),
            (700.0, 3.6 * GI as f64),
        ),
        sized(
            prod("monitoring", "DaemonSet", "node-exporter", "exporter"),
            12.0,
            (Some(100), Some(64 * MI)),
            (100, 64 * MI),
            (30.0, 40.0 * MI as f64),
        ),
        sized(
            prod("shop", "Deployment", "legacy", "app"),
            2.0,
            (None, None),
            (100, 256 * MI),
            (60.0, 180.0 * MI as f64),
        ),
        sized(
            prod("batch", "CronJob", "nightly-report", "report"),
            1.0,
            (Some(1000), Some(GI)),
            (1000, GI),
            (0.0, 0.0),
        ),
    ];
    // A CPU-starved payment service: throttled a third of the time at its limit.
    let mut payments = sized(
        prod("payments", "Deployment", "gateway", "app"),
        4.0,
        (Some(250), Some(512 * MI)),
        (600, 512 * MI),
        (240.0, 300.0 * MI as f64),
    );
    payments.severity = Severity::Critical;
    payments.evidence.throttled_ratio = Some(0.32);
    payments
        .backtest
        .as_mut()
        .unwrap()
        .current
        .cpu_over_limit_share = Some(0.18);
    payments.findings.push(finding(
        "cpu-starved",
        Severity::Critical,
        "throttled in 32.0% of CFS periods with usage at the CPU limit: observed usage understates demand",
    ));
    // Held out: the gateway overran its fitted memory limit for an hour, and its current CPU
    // request is below what it uses (negative slack).
    recs.push(held_out(
        payments,
        "guidance",
        "pinned by namespace payments",
        figures(5, 1, [0.021, 0.12, 0.21, 0.35]),
        figures(5, 3, [0.18, 0.6, -0.05, 0.4]),
    ));
    let query = recs.iter_mut().find(|r| r.key.workload == "query").unwrap();
    *query = held_out(
        query.clone(),
        "decaying",
        "auto: least idle cost among 3 strategies meeting the objective",
        figures(7, 0, [0.0, 0.042, 0.31, 0.18]),
        figures(7, 0, [0.0, 0.0, 0.79, 0.55]),
    );
    // No requests or limits at all.
    let legacy = recs
        .iter_mut()
        .find(|r| r.key.workload == "legacy")
        .unwrap();
    legacy.severity = Severity::Warning;
    legacy.findings.extend([
        finding(
            "best-effort",
            Severity::Warning,
            "no requests: BestEffort pods are evicted first",
        ),
        finding("no-limits", Severity::Warning, "no CPU or memory limit"),
    ]);
    let search = recs.iter_mut().find(|r| r.key.workload == "query").unwrap();
    search.severity = Severity::Warning;
    search.findings.push(finding(
        "no-pdb",
        Severity::Warning,
        "2 replicas and no PodDisruptionBudget: applying new resources restarts them all",
    ));
    let exporter = recs
        .iter_mut()
        .find(|r| r.key.workload == "node-exporter")
        .unwrap();
    exporter.status = Status::NoChange;
    exporter.recommended = Resources::default();
    exporter.impact.as_mut().unwrap().monthly_cost_delta = 0.0;
    exporter
        .findings
        .push(finding("no-limits", Severity::Warning, "no memory limit"));
    let cron = recs
        .iter_mut()
        .find(|r| r.key.workload == "nightly-report")
        .unwrap();
    cron.status = Status::InsufficientData;
    cron.recommended = Resources::default();
    cron.confidence = Confidence::Low;
    cron.impact = None;
    cron.evidence.history_hours = 5;
    cron.reason = "only 5 hours of history (24 needed)".into();

    let staging = |ns: &str, w: &str, c: &str| key("staging", ns, "Deployment", w, c);
    recs.push(sized(
        staging("shop", "api", "app"),
        1.0,
        (Some(1000), Some(2 * GI)),
        (200, 512 * MI),
        (90.0, 300.0 * MI as f64),
    ));
    let mut consumer = sized(
        staging("checkout", "queue-consumer", "worker"),
        2.0,
        (Some(500), Some(GI)),
        (100, 256 * MI),
        (35.0, 150.0 * MI as f64),
    );
    consumer.severity = Severity::Warning;
    consumer.findings.push(finding(
        "no-pdb",
        Severity::Warning,
        "2 replicas and no PodDisruptionBudget",
    ));
    recs.push(consumer);
    for (i, cpu) in [800, 600, 1500, 300].into_iter().enumerate() {
        recs.push(sized(
            staging("tools", &format!("tool-{i}"), "app"),
            1.0,
            (Some(cpu), Some(GI)),
            (cpu / 4, 384 * MI),
            (cpu as f64 / 8.0, 200.0 * MI as f64),
        ));
    }
    recs
}

/// The fleet a week later: the database was given memory and is fine, the cart got
/// OOM-killed, the API's CPU proposal rose, the CronJob has history, a consumer is gone.
fn fleet_a_week_later() -> Vec<Recommendation> {
    let mut recs: Vec<Recommendation> = fleet()
        .into_iter()
        .filter(|r| r.key.workload != "queue-consumer")
        .collect();
    for r in &mut recs {
        r.computed_at = SECOND - 600;
    }
    let db = recs.iter_mut().find(|r| r.key.workload == "db").unwrap();
    *db = sized(
        db.key.clone(),
        1.0,
        (Some(1500), Some(6 * GI)),
        (1500, 6 * GI),
        (900.0, 3.9 * GI as f64),
    );
    db.status = Status::NoChange;
    db.recommended = Resources::default();
    let cart = recs.iter_mut().find(|r| r.key.workload == "cart").unwrap();
    *cart = oom_killed(
        sized(
            cart.key.clone(),
            3.0,
            (Some(500), Some(GI)),
            (250, 1536 * MI),
            (120.0, 0.9 * GI as f64),
        ),
        1,
        2,
    );
    let api = recs
        .iter_mut()
        .find(|r| r.key.cluster == "prod" && r.key.workload == "api" && r.key.container == "app")
        .unwrap();
    *api = sized(
        api.key.clone(),
        6.0,
        (Some(1000), Some(2 * GI)),
        (400, 768 * MI),
        (250.0, 520.0 * MI as f64),
    );
    let cron = recs
        .iter_mut()
        .find(|r| r.key.workload == "nightly-report")
        .unwrap();
    *cron = sized(
        cron.key.clone(),
        1.0,
        (Some(1000), Some(GI)),
        (200, 512 * MI),
        (60.0, 250.0 * MI as f64),
    );
    recs
}

async fn seed(store: &dyn Store, recs: &[Recommendation]) {
    for cluster in ["prod", "staging"] {
        let of_cluster: Vec<Recommendation> = recs
            .iter()
            .filter(|r| r.key.cluster == cluster)
            .cloned()
            .collect();
        store
            .replace_recommendations(cluster, &of_cluster)
            .await
            .unwrap();
    }
}

/// Hours of usage stored for the second report's largest saving, ending the hour before it.
const USAGE_HOURS: i64 = 72;

/// Stores `USAGE_HOURS` of hourly usage for `key` (CPU 100–300m, memory 200–260Mi, in a
/// daily wave) and an OOM kill 10 hours before `end`, the hour after the newest stored one.
async fn seed_usage(store: &dyn Store, key: &ContainerKey, end: i64) {
    let mut usage = Vec::new();
    for h in 1..=USAGE_HOURS {
        let hour_start = end - h * 3600;
        let wave = ((h as f64) * std::f64::consts::PI / 12.0).sin().abs();
        let (mut cpu, mut memory) = (Sketch::new(), Sketch::new());
        for s in 0..60 {
            let jitter = f64::from(s) / 60.0;
            cpu.insert(0.1 + 0.2 * wave * jitter).unwrap();
            memory
                .insert((200.0 + 60.0 * wave * jitter) * MI as f64)
                .unwrap();
        }
        for (resource, sketch) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
            usage.push(UsageHour {
                key: key.clone().into(),
                resource,
                hour_start,
                sketch,
            });
        }
    }
    store
        .write_chunk(&Chunk {
            cluster: key.cluster.clone(),
            hours: (1..=USAGE_HOURS).map(|h| end - h * 3600).collect(),
            usage,
            signals: vec![SignalHour {
                key: key.clone(),
                hour_start: end - 10 * 3600,
                restarts: 1,
                oom_kills: 1,
                cfs_periods: 0.0,
                cfs_throttled_periods: 0.0,
            }],
            ..Chunk::default()
        })
        .await
        .unwrap();
}

async fn sqlite_store(dir: &TempDir) -> Arc<dyn Store> {
    store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
        .await
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * (1.0 + a.abs().max(b.abs()))
}

fn savings(r: &Recommendation) -> f64 {
    r.impact.as_ref().map_or(0.0, |i| -i.monthly_cost_delta)
}

/// What the report says agrees with the recommendations it was built from.
fn check_content(report: &Report, recs: &[Recommendation]) {
    let t = &report.summary.totals;
    assert_eq!(t.containers, recs.len());
    let replicas = |r: &Recommendation| {
        r.impact
            .as_ref()
            .map_or(r.evidence.average_replicas, |i| i.replicas)
    };
    let requested: f64 = recs
        .iter()
        .map(|r| r.current.cpu_request_millicores.unwrap_or(0) as f64 / 1000.0 * replicas(r))
        .sum();
    let used_gib: f64 = recs
        .iter()
        .map(|r| r.evidence.memory_mean_bytes.unwrap_or(0.0) / GI as f64 * replicas(r))
        .sum();
    let net: f64 = recs.iter().map(savings).sum();
    assert!(
        close(t.requested_cores, requested),
        "{} vs {requested}",
        t.requested_cores
    );
    assert!(close(t.used_gib, used_gib), "{} vs {used_gib}", t.used_gib);
    assert!(
        close(t.monthly_savings, net),
        "{} vs {net}",
        t.monthly_savings
    );
    assert!(close(
        report.summary.monthly_savings_gross - report.summary.monthly_cost_increase,
        net
    ));
    assert_eq!(report.summary.currency, "USD");

    // Clusters and namespaces partition the fleet.
    for groups in [&report.clusters, &report.namespaces] {
        let sum = |f: fn(&report::Totals) -> f64| groups.iter().map(|g| f(&g.totals)).sum::<f64>();
        assert!(close(sum(|t| t.requested_cores), t.requested_cores));
        assert!(close(sum(|t| t.recommended_gib), t.recommended_gib));
        assert!(close(sum(|t| t.monthly_savings), t.monthly_savings));
        assert_eq!(
            groups.iter().map(|g| g.totals.containers).sum::<usize>(),
            recs.len()
        );
    }
    assert_eq!(report.clusters.len(), 2);

    // Top over-provisioned: the largest savings, in order.
    let mut expected: Vec<f64> = recs
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(savings)
        .filter(|s| *s > 0.0)
        .collect();
    expected.sort_by(|a, b| b.total_cmp(a));
    expected.truncate(report::TOP_N);
    let got: Vec<f64> = report
        .over_provisioned
        .iter()
        .map(|l| l.monthly_savings)
        .collect();
    assert_eq!(
        got.len(),
        report::TOP_N,
        "the fleet has more than ten savers"
    );
    for (g, e) in got.iter().zip(&expected) {
        assert!(close(*g, *e), "{got:?} vs {expected:?}");
    }
    // Under-provisioned: critical first, then by cost.
    let under = &report.under_provisioned;
    let critical = under
        .iter()
        .take_while(|l| l.severity == Severity::Critical)
        .count();
    assert_eq!(critical as i64, report.summary.counts.critical);
    assert!(under[critical..]
        .windows(2)
        .all(|w| w[0].monthly_savings <= w[1].monthly_savings));
    assert!(
        under.iter().any(|l| l.key.workload == "legacy"),
        "best-effort costs money"
    );

    assert!(report
        .throttling_risks
        .iter()
        .any(|l| l.key.workload == "gateway"));
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code.as_str()).collect();
    assert!(
        codes.contains(&"no-pdb") && codes.contains(&"no-limits"),
        "{codes:?}"
    );
    let no_limits = report
        .findings
        .iter()
        .find(|f| f.code == "no-limits")
        .unwrap();
    assert_eq!(no_limits.count, 2);
    assert_eq!(no_limits.examples.len(), 2);
    assert_eq!(report.containers.len(), recs.len());

    // Held-out slack fleet-wide: each side weighted by its own requests across replicas, over
    // the proposals with held-out figures for both.
    let counted: Vec<&Recommendation> = recs
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter(|r| {
            r.evidence
                .backtest
                .as_ref()
                .is_some_and(|b| b.holdout.is_some() && b.holdout_current.is_some())
        })
        .collect();
    let weighted = |slack: fn(&EvidenceBacktest) -> f64, request: fn(&Recommendation) -> f64| {
        let (sum, weight) = counted.iter().fold((0.0, 0.0), |(s, w), r| {
            let weight = request(r) * replicas(r);
            let b = r.evidence.backtest.as_ref().unwrap();
            (s + slack(b) * weight, w + weight)
        });
        sum / weight
    };
    let h = report
        .summary
        .holdout
        .as_ref()
        .expect("fleet held-out totals");
    assert_eq!(h.containers, counted.len());
    for (got, expected) in [
        (
            h.cpu_slack,
            weighted(
                |b| b.holdout.as_ref().unwrap().cpu_slack.unwrap(),
                |r| r.recommended.cpu_request_millicores.unwrap() as f64,
            ),
        ),
        (
            h.cpu_slack_current,
            weighted(
                |b| b.holdout_current.as_ref().unwrap().cpu_slack.unwrap(),
                |r| r.current.cpu_request_millicores.unwrap() as f64,
            ),
        ),
        (
            h.memory_slack,
            weighted(
                |b| b.holdout.as_ref().unwrap().memory_slack.unwrap(),
                |r| r.recommended.memory_request_bytes.unwrap() as f64,
            ),
        ),
        (
            h.memory_slack_current,
            weighted(
                |b| b.holdout_current.as_ref().unwrap().memory_slack.unwrap(),
                |r| r.current.memory_request_bytes.unwrap() as f64,
            ),
        ),
    ] {
        assert!(close(got.unwrap(), expected), "{got:?} vs {expected}");
    }
    assert_eq!(
        (h.memory_overrun_hours, h.memory_overrun_hours_current),
        (1, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reports_are_built_stored_rendered_and_served() {
    let dir = TempDir::new("rs-reports").unwrap();
    let store = sqlite_store(&dir).await;

    // First report: nothing to compare with.
    let week1 = fleet();
    seed(store.as_ref(), &week1).await;
    let (first_id, first) = report::generate_and_store(store.as_ref(), FIRST)
        .await
        .unwrap();
    assert_eq!(first.generated_at, FIRST);
    assert!(first.change.is_none());
    check_content(&first, &week1);
    assert_eq!(
        first
            .oom_risks
            .iter()
            .map(|l| l.key.workload.as_str())
            .collect::<Vec<_>>(),
        ["db"]
    );
    assert_eq!(first.insufficient_data.len(), 1);
    assert_eq!(first.insufficient_data[0].key.workload, "nightly-report");

    // Second report, after the fleet changed.
    let week2 = fleet_a_week_later();
    store.replace_recommendations("staging", &[]).await.unwrap();
    seed(store.as_ref(), &week2).await;
    // Usage stored for the largest saving only: the report draws what is stored, nothing else.
    let top = report::build(&week2, None, SECOND).over_provisioned[0]
        .key
        .clone();
    seed_usage(store.as_ref(), &top, SECOND).await;
    let (second_id, second) = report::generate_and_store(store.as_ref(), SECOND)
        .await
        .unwrap();
    assert!(second_id > first_id);
    check_content(&second, &week2);
    let change = second.change.as_ref().expect("a change section");
    assert_eq!(change.previous_generated_at, FIRST);
    assert!(close(
        change.monthly_savings_delta,
        second.summary.totals.monthly_savings - first.summary.totals.monthly_savings
    ));
    assert!(
        change.monthly_savings_delta < 0.0,
        "the API now saves less and the consumer is gone"
    );
    assert_eq!(change.containers_delta, -1);
    assert_eq!(change.counts_delta.insufficient_data, -1);
    assert_eq!(change.counts_delta.critical, 0, "one resolved, one new");
    let names = |items: &[report::ChangeItem]| {
        items
            .iter()
            .map(|i| format!("{}/{}", i.key.workload, i.key.container))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&change.new_critical), ["cart/app"]);
    assert_eq!(names(&change.resolved_critical), ["db/postgres"]);
    assert_eq!(change.resolved_critical[0].severity, Some(Severity::Info));
    assert!(first.usage.is_empty(), "no usage stored yet: no charts");
    assert_eq!(
        second.usage.len(),
        1,
        "only the container with stored usage"
    );
    let usage = &second.usage[0];
    assert_eq!(usage.key, top);
    assert_eq!(
        (usage.cpu.len(), usage.memory.len()),
        (USAGE_HOURS as usize, USAGE_HOURS as usize)
    );
    assert_eq!(usage.events.len(), 1);
    assert_eq!(usage.events[0].oom_kills, 1);
    assert!(usage.cpu.iter().all(|p| p.p50 <= p.p95 && p.p95 <= p.max));
    assert!(usage.cpu.iter().all(|p| (100.0..=301.0).contains(&p.max)));
    assert!(usage
        .memory
        .iter()
        .all(|p| (200.0 * MI as f64..=261.0 * MI as f64).contains(&p.max)));

    // Stored as built.
    let latest = store.latest_report().await.unwrap().unwrap();
    assert_eq!(latest.id, second_id);
    assert_eq!(report::decode(&latest).unwrap(), second);
    let listed = store.list_reports(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.id).collect::<Vec<_>>(),
        [second_id, first_id]
    );
    assert_eq!(report::decode_summary(&listed[1]).unwrap(), first.summary);
    // A report stored before the held-out fields existed still reads, without them.
    let mut old = serde_json::to_value(&first).unwrap();
    old["summary"].as_object_mut().unwrap().remove("holdout");
    old.as_object_mut().unwrap().remove("usage");
    for line in old["containers"].as_array_mut().unwrap() {
        for field in [
            "strategy",
            "strategy_choice",
            "holdout",
            "holdout_current",
            "fitted_from",
        ] {
            line.as_object_mut().unwrap().remove(field);
        }
    }
    let old: Report = serde_json::from_value(old).unwrap();
    assert!(old.summary.holdout.is_none());
    assert!(old.containers.iter().all(|l| l.holdout.is_none()));
    assert_eq!(
        report::render(&old, Format::Csv).lines().count(),
        first.containers.len() + 1
    );

    check_formats(&second);
    render_in_chromium(&second).await;
    api(AppState::new(store.clone()), first_id, second_id).await;
}

fn check_formats(report: &Report) {
    let md = report::render(report, Format::Markdown);
    for needle in [
        "# rightsizer fleet report",
        "## Summary",
        "## Change since the previous report",
        "## Top over-provisioned",
        "## Top under-provisioned and critical",
        "## OOM risks",
        "## Throttling risks",
        "## Guidance findings",
        "## Insufficient data",
        "| # | Workload | Container | CPU request |",
        "New critical:",
        "`prod/shop/Deployment/cart` container `app` (now critical)",
        "| `no-pdb` | warning | 1 |",
        "| Savings / month | Confidence | Held out | Strategy |",
        "| Cost / month | Findings | Held out | Strategy |",
        // The top saver, held out, and how its strategy was chosen.
        "| high | 7 days: 0 memory overrun hours, CPU above limit 0.0%, above request 4.2%, \
         slack CPU 31% / memory 18% | `decaying` (auto: least idle cost among 3 strategies \
         meeting the objective) |",
        "| cpu-starved | 5 days: 1 memory overrun hour, CPU above limit 2.1%, above request \
         12.0%, slack CPU 21% / memory 35% | `guidance` (pinned by namespace payments) |",
        // Rows analyzed before walk-forward, or with too little history.
        "| not enough history for a held-out backtest | `guidance` |",
        "Held out (days the numbers were not fitted on, 2 containers with a proposed change): \
         slack CPU 26% recommended vs 70% now, memory 21% vs 53%; memory overrun hours 1 vs 3.",
    ] {
        assert!(md.contains(needle), "Markdown lacks {needle:?}:\n{md}");
    }
    // Every row of a table has as many cells as its header.
    let mut table: Vec<usize> = Vec::new();
    for line in md.lines().chain([""]) {
        if line.starts_with('|') {
            table.push(line.replace("\\|", "").matches('|').count());
        } else if !table.is_empty() {
            assert!(
                table.iter().all(|n| *n == table[0]),
                "ragged table: {table:?}"
            );
            table.clear();
        }
    }

    let artifacts = browser::artifact_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("report.md"), &md).unwrap();

    let csv = report::render(report, Format::Csv);
    std::fs::write(artifacts.join("report.csv"), &csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), report.containers.len());
    let total: f64 = rows
        .iter()
        .map(|r| r[col("monthly_savings")].parse::<f64>().unwrap())
        .sum();
    assert!((total - report.summary.totals.monthly_savings).abs() < 0.01 * rows.len() as f64);
    let db = rows.iter().find(|r| &r[col("workload")] == "db").unwrap();
    assert_eq!(&db[col("status")], "no-change");
    assert_eq!(
        &db[col("current_memory_request_bytes")],
        (6 * GI).to_string()
    );
    let cart = rows.iter().find(|r| &r[col("workload")] == "cart").unwrap();
    assert_eq!(&cart[col("findings")], "oom-killed");
    assert_eq!(&cart[col("oom_kills")], "1");
    // The held-out columns come last, after the columns scripts already address by position.
    assert_eq!(header.len(), 41);
    assert_eq!(&header[33], "reason");
    assert_eq!(
        &header[34..],
        [
            "holdout_days",
            "holdout_memory_overrun_hours",
            "holdout_cpu_over_limit_share",
            "holdout_cpu_over_request_share",
            "holdout_cpu_slack",
            "holdout_memory_slack",
            "strategy",
        ]
    );
    let query = rows
        .iter()
        .find(|r| &r[col("workload")] == "query")
        .unwrap();
    assert_eq!(
        query.iter().skip(34).collect::<Vec<_>>(),
        ["7", "0", "0.0000", "0.0420", "0.3100", "0.1800", "decaying"]
    );
    assert_eq!(
        cart.iter().skip(34).collect::<Vec<_>>(),
        ["", "", "", "", "", "", "guidance"]
    );

    let json = report::render(report, Format::Json);
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, report);
    // The evidence's held-out figures and strategy choice, as the API shows them.
    let value: Value = serde_json::from_str(&json).unwrap();
    let line = value["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["workload"] == "query")
        .unwrap();
    assert_eq!(line["strategy"], "decaying");
    assert_eq!(
        line["strategy_choice"],
        "auto: least idle cost among 3 strategies meeting the objective"
    );
    assert_eq!(
        line["holdout"],
        serde_json::to_value(figures(7, 0, [0.0, 0.042, 0.31, 0.18])).unwrap()
    );
    assert_eq!(line["holdout_current"]["cpu_slack"], 0.79);
    assert_eq!(value["summary"]["holdout"]["containers"], 2);

    let html = report::render(report, Format::Html);
    check_self_contained(&html);
    for id in [
        "overview",
        "change",
        "distribution",
        "provisioning",
        "risks",
        "guidance",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\"")),
            "no section {id}"
        );
    }
    assert!(html.matches("<svg").count() >= 5, "charts present");
    for needle in [
        "<p class=\"lead\" id=\"holdout-totals\">Held out (days the numbers were not fitted on, \
         2 containers with a proposed change): slack CPU 26% recommended vs 70% now",
        "<code>decaying</code> <span class=\"ctr\">(auto: least idle cost among 3 strategies \
         meeting the objective)</span><span class=\"sub-key\">7 days: 0 memory overrun hours, \
         CPU above limit 0.0%, above request 4.2%, slack CPU 31% / memory 18%</span>",
        "<code>guidance</code><span class=\"sub-key\">not enough history for a held-out backtest</span>",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle:?}");
    }
    assert!(html.contains("@media print") && html.contains("break-before: page"));
}

fn check_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "<script",
        "<link",
        "url(",
        "@import",
    ] {
        assert!(!lower.contains(bad), "the HTML report references {bad:?}");
    }
    assert!(lower.contains("<svg"));
}

/// Prints the HTML report with headless Chromium to PNG and PDF artifacts.
async fn render_in_chromium(report: &Report) {
    let artifacts = browser::artifact_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let html_path = artifacts.join("report.html");
    std::fs::write(&html_path, report::render(report, Format::Html)).unwrap();
    let url = format!("file://{}", html_path.display());
    let (png, full, pdf) = (
        artifacts.join("report.png"),
        artifacts.join("report-full.png"),
        artifacts.join("report.pdf"),
    );
    let (u, p, f) = (url.clone(), png.clone(), full.clone());
    tokio::task::spawn_blocking(move || {
        browser::screenshot(&u, &p, 1280, 1000);
        browser::screenshot(&u, &f, 1280, 5200);
    })
    .await
    .unwrap();
    let (target, dom_url) = (pdf.clone(), url.clone());
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(&target);
        browser::run(
            &[
                format!("--print-to-pdf={}", target.display()),
                "--no-pdf-header-footer".into(),
                "--print-to-pdf-no-header".into(),
            ],
            &url,
        )
    })
    .await
    .unwrap();
    for path in [&png, &full, &pdf] {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes", path.display());
        eprintln!("artifact: {} ({size} bytes)", path.display());
    }
    let dom = tokio::task::spawn_blocking(move || browser::dump_dom(&dom_url))
        .await
        .unwrap();
    check_usage_charts(&dom, report);
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    let pages = pdf_pages(&bytes);
    assert!(pages >= 6, "one section per printed page: {pages} pages");
}

/// The value of attribute `name` in the first tag of `html` at or after `from`.
fn attr<'a>(html: &'a str, from: usize, name: &str) -> &'a str {
    let needle = format!(" {name}=\"");
    let at = from + html[from..].find(&needle).unwrap() + needle.len();
    &html[at..at + html[at..].find('"').unwrap()]
}

/// The usage charts as Chromium parsed them: in their section, one per resource of each
/// stored timeline, every hour a point inside the plot, the OOM kill marked at its hour's x.
fn check_usage_charts(dom: &str, report: &Report) {
    let section = &dom[dom.find("<section id=\"usage\"").expect("a usage section")..];
    let section = &section[..section.find("</section>").unwrap()];
    assert_eq!(
        section.matches("data-chart=\"timeline\"").count(),
        2 * report.usage.len()
    );
    for t in &report.usage {
        let figure = section
            .find(&format!(
                "data-container=\"{}/{}/{}/{}\"",
                t.key.namespace, t.key.kind, t.key.workload, t.key.container
            ))
            .expect("a figure per timeline");
        let figure = &section[figure..];
        for (resource, points) in [("cpu", &t.cpu), ("memory", &t.memory)] {
            let chart = &figure[figure
                .find(&format!("data-resource=\"{resource}\""))
                .unwrap()..];
            let chart = &chart[..chart.find("</svg>").unwrap()];
            for mark in [
                "current-request",
                "recommended-request",
                "recommended-limit",
            ] {
                let at = chart.find(&format!("data-mark=\"{mark}\"")).unwrap();
                let y: f64 = attr(chart, at, "y1").parse().unwrap();
                assert!((16.0..=168.0).contains(&y), "{resource} {mark} at y {y}");
            }
            let at = chart.find("data-series=\"max\"").unwrap();
            assert_eq!(attr(chart, at, "data-points"), points.len().to_string());
            let xy: Vec<(f64, f64)> = attr(chart, at, "points")
                .split(' ')
                .map(|c| {
                    let (x, y) = c.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert_eq!(xy.len(), points.len());
            assert!(
                xy.iter()
                    .all(|&(x, y)| (58.0..=630.0).contains(&x) && (16.0..=168.0).contains(&y)),
                "{resource}: every hour inside the plot: {xy:?}"
            );
            assert!(
                xy.windows(2).all(|w| w[0].0 < w[1].0),
                "hours left to right"
            );
            for e in &t.events {
                let at = chart
                    .find(&format!(
                        "data-event=\"oom-kill\" data-hour=\"{}\"",
                        e.hour_start
                    ))
                    .expect("the OOM kill is marked");
                let d = attr(chart, at, "d");
                let x: f64 = d[1..d.find(',').unwrap()].parse().unwrap();
                let hour = points
                    .iter()
                    .position(|p| p.hour_start == e.hour_start)
                    .unwrap();
                assert!(
                    (x - xy[hour].0).abs() < 0.11,
                    "marked at its hour: {x} vs {}",
                    xy[hour].0
                );
            }
        }
    }
}

/// Page objects in a PDF (`/Type /Page`, not `/Pages`).
fn pdf_pages(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("/Type /Page")
        .filter(|(i, _)| !text[i + 11..].starts_with('s'))
        .count()
}

async fn send(state: &AppState, uri: &str) -> (StatusCode, String, String) {
    let resp = router(state.clone())
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn json(state: &AppState, uri: &str) -> (StatusCode, Value) {
    let (status, content_type, body) = send(state, uri).await;
    assert!(
        content_type.starts_with("application/json"),
        "{uri}: {content_type}"
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}")),
    )
}

async fn api(state: AppState, first_id: i64, second_id: i64) {
    let (status, list) = json(&state, "/api/v1/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["count"], 2);
    assert_eq!(list["items"][0]["id"], second_id);
    assert_eq!(list["items"][1]["id"], first_id);
    assert_eq!(list["items"][0]["generated_at"], SECOND);
    assert!(list["items"][0]["summary"]["monthly_savings"].is_number());
    assert_eq!(list["items"][0]["summary"]["currency"], "USD");
    let (_, one) = json(&state, "/api/v1/reports?limit=1").await;
    assert_eq!(one["count"], 1);

    let (status, latest) = json(&state, "/api/v1/reports/latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["generated_at"], SECOND);
    assert_eq!(latest["change"]["previous_generated_at"], FIRST);
    let (_, by_id) = json(&state, &format!("/api/v1/reports/{first_id}?format=json")).await;
    assert_eq!(by_id["generated_at"], FIRST);
    assert!(by_id["change"].is_null());

    for (format, content_type, needle) in [
        ("md", "text/markdown", "# rightsizer fleet report"),
        ("html", "text/html", "<svg"),
        (
            "csv",
            "text/csv",
            "cluster,namespace,kind,workload,container",
        ),
    ] {
        for uri in [
            format!("/api/v1/reports/latest?format={format}"),
            format!("/api/v1/reports/{first_id}?format={format}"),
        ] {
            let (status, ct, body) = send(&state, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert!(ct.starts_with(content_type), "{uri}: {ct}");
            assert!(body.contains(needle), "{uri}");
        }
    }

    for (uri, status, needles) in [
        (
            "/api/v1/reports/latest?format=pdf",
            StatusCode::BAD_REQUEST,
            &["`format`", "json, md, html, csv", "`pdf`"][..],
        ),
        (
            "/api/v1/reports/1?format=xml",
            StatusCode::BAD_REQUEST,
            &["`format`"][..],
        ),
        (
            "/api/v1/reports/latest?fmt=md",
            StatusCode::BAD_REQUEST,
            &["unknown parameter `fmt`"][..],
        ),
        (
            "/api/v1/reports/abc",
            StatusCode::BAD_REQUEST,
            &["`id`", "`abc`"][..],
        ),
        (
            "/api/v1/reports/99999",
            StatusCode::NOT_FOUND,
            &["no report with id 99999"][..],
        ),
        (
            "/api/v1/reports?limit=0",
            StatusCode::BAD_REQUEST,
            &["`limit`", "1 to 1000"][..],
        ),
        (
            "/api/v1/reports?limit=x",
            StatusCode::BAD_REQUEST,
            &["`limit`"][..],
        ),
    ] {
        let (got, body) = json(&state, uri).await;
        assert_eq!(got, status, "{uri}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        for needle in needles {
            assert!(message.contains(needle), "{uri}: {message}");
        }
    }
}

#[tokio::test]
async fn no_report_yet_is_a_404_and_an_empty_list() {
    let dir = TempDir::new("rs-reports-empty").unwrap();
    let state = AppState::new(sqlite_store(&dir).await);
    let (status, body) = json(&state, "/api/v1/reports/latest?format=html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = json(&state, "/api/v1/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 0);
}

#[tokio::test]
async fn an_empty_fleet_still_renders_every_format() {
    let empty = report::build(&[], None, FIRST);
    for format in [Format::Markdown, Format::Html, Format::Csv, Format::Json] {
        let out = report::render(&empty, format);
        assert!(!out.is_empty(), "{format}");
    }
    check_self_contained(&report::render(&empty, Format::Html));
    assert_eq!(report::render(&empty, Format::Csv).lines().count(), 1);
}

/// A previous report that no longer decodes does not stop the next one.
#[tokio::test]
async fn a_corrupt_previous_report_is_skipped() {
    let dir = TempDir::new("rs-reports-corrupt").unwrap();
    let store = sqlite_store(&dir).await;
    seed(store.as_ref(), &fleet()).await;
    let (id, _) = report::generate_and_store(store.as_ref(), FIRST)
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("rs.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("update reports set body = '{\"version\": 1}' where id = ?")
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let (next, report) = report::generate_and_store(store.as_ref(), SECOND)
        .await
        .unwrap();
    assert!(next > id);
    assert!(report.change.is_none());
    assert!(matches!(
        report::decode(&store.report(id).await.unwrap().unwrap()),
        Err(store::StoreError::Corrupt(m)) if m.contains(&format!("report {id}"))
    ));
}

/// `rightsizer report` through the real binary: stored, then written as one HTML file.
#[tokio::test]
async fn the_report_command_stores_and_writes_a_report() {
    let dir = TempDir::new("rs-report-cli").unwrap();
    let db = format!("sqlite://{}", dir.path().join("rs.db").display());
    {
        let store = rightsizer::store::connect(&db).await.unwrap();
        seed(store.as_ref(), &fleet()).await;
    }
    let out_path = dir.path().join("weekly.html");
    let db_arg = db.clone();
    let out_arg = out_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rightsizer"))
            .args([
                "--database-url",
                &db_arg,
                "report",
                "--format",
                "html",
                "--out",
                out_arg.to_str().unwrap(),
            ])
            .env("RIGHTSIZER_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&out_path).unwrap();
    check_self_contained(&html);
    let strategies: std::collections::BTreeSet<String> =
        fleet().into_iter().map(|r| r.strategy).collect();
    let strategies = strategies.into_iter().collect::<Vec<_>>().join(", ");
    assert!(
        html.contains(&format!("· strategy {strategies}</p>")),
        "the report names the strategies"
    );
    let store = rightsizer::store::connect(&db).await.unwrap();
    assert_eq!(
        store.list_reports(10).await.unwrap().len(),
        1,
        "the report was stored"
    );
}
