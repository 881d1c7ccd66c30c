//! Seeds a store with a synthetic fleet of recommendations for `scripts/bench-api.sh`
//! (the API load test). Env: BENCH_DATABASE_URL, BENCH_CONTAINERS (default 10000).

use rightsizer::model::{
    Backtest, BacktestFigures, Confidence, ContainerKey, Evidence, Finding, Impact, Recommendation,
    Resources, Severity, Status,
};

fn rec(i: usize) -> Recommendation {
    let ns = format!("team-{:03}", i / 100);
    let workload = format!("svc-{:04}", i / 2);
    let container = if i.is_multiple_of(2) {
        "app"
    } else {
        "sidecar"
    };
    let cpu = 50 + (i * 37 % 900) as i64;
    let mem = (64 + (i * 53 % 1900) as i64) << 20;
    let severity = [Severity::Info, Severity::Warning, Severity::Critical][i % 3];
    Recommendation {
        key: ContainerKey {
            cluster: format!("cluster-{}", i % 3),
            namespace: ns,
            kind: "Deployment".into(),
            workload,
            container: container.into(),
        },
        status: Status::Ok,
        current: Resources {
            cpu_request_millicores: Some(cpu * 2),
            cpu_limit_millicores: Some(cpu * 4),
            memory_request_bytes: Some(mem * 2),
            memory_limit_bytes: Some(mem * 2),
        },
        recommended: Resources {
            cpu_request_millicores: Some(cpu),
            cpu_limit_millicores: Some(cpu * 4),
            memory_request_bytes: Some(mem),
            memory_limit_bytes: Some(mem),
        },
        confidence: Confidence::High,
        confidence_score: 0.95,
        reason: format!(
            "cpu down (p95 {:.1}m); memory down (peak {}Mi)",
            cpu as f64 / 1.15,
            (mem >> 20) * 100 / 115
        ),
        strategy: "guidance".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(cpu as f64 / 1.15),
            memory_peak_bytes: Some(mem as f64 / 1.15),
            samples: 60_480,
            memory_samples: 60_480,
            history_hours: 336,
            window_hours: 336,
            margin: 0.15,
            rules: vec![
                format!(
                    "cpu request = p95 {:.1}m × 1.15 = {cpu}m",
                    cpu as f64 / 1.15
                ),
                format!("cpu limit = 4 × cpu request = {}m", cpu * 4),
                "memory request = memory limit = peak × 1.15".into(),
            ],
            memory_basis: "peak".into(),
            cpu_mean_millicores: Some(cpu as f64 / 2.0),
            memory_mean_bytes: Some(mem as f64 / 1.5),
            average_replicas: 3.0,
            policy_sources: vec!["defaults".into()],
            ..Evidence::default()
        },
        computed_at: 1_800_000_000,
        severity,
        findings: vec![Finding {
            code: "no-pdb".into(),
            severity: Severity::Warning,
            message: "3 replicas and no PodDisruptionBudget".into(),
        }],
        backtest: Some(Backtest {
            current: BacktestFigures {
                cpu_over_request_share: Some(0.0),
                cpu_over_limit_share: Some(0.0),
                memory_over_limit_hours: Some(0),
            },
            recommended: BacktestFigures {
                cpu_over_request_share: Some(0.05),
                cpu_over_limit_share: Some(0.0),
                memory_over_limit_hours: Some(0),
            },
            memory_censored: false,
        }),
        impact: Some(Impact {
            replicas: 3.0,
            replicas_after: 3.0,
            cpu_cores_delta: -(cpu as f64) * 3.0 / 1000.0,
            memory_gib_delta: -(mem as f64) * 3.0 / (1u64 << 30) as f64,
            monthly_cost_delta: -(cpu as f64) * 0.069 - (mem >> 20) as f64 * 0.009,
            currency: "USD".into(),
        }),
        hpa: None,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let url =
        std::env::var("BENCH_DATABASE_URL").expect("BENCH_DATABASE_URL (run scripts/bench-api.sh)");
    let n: usize = std::env::var("BENCH_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let store = rightsizer::store::connect(&url).await.expect("store");
    let recs: Vec<Recommendation> = (0..n).map(rec).collect();
    for cluster in ["cluster-0", "cluster-1", "cluster-2"] {
        let mine: Vec<Recommendation> = recs
            .iter()
            .filter(|r| r.key.cluster == cluster)
            .cloned()
            .collect();
        store
            .replace_recommendations(cluster, &mine)
            .await
            .expect("seed");
    }
    println!(
        "seeded {n} workload containers into {}",
        rightsizer::redact::url(&url)
    );
}
