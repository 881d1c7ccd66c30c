//! Scenario and property tests of the analyzer on constructed hourly history.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::{Confidence, HpaInfo, Resource, WorkloadKey};
use crate::sketch::Sketch;

const NOW: i64 = 1_700_000_000 - 1_700_000_000 % 3600 + 1800;

fn key() -> ContainerKey {
    ContainerKey {
        cluster: "c".into(),
        namespace: "shop".into(),
        kind: "Deployment".into(),
        workload: "api".into(),
        container: "app".into(),
    }
}

/// `hours` hours ending at NOW's hour, `pods` pods, CPU cycling through `cpu`, memory through `mem`.
fn usage_pods(hours: i64, pods: usize, cpu: &[f64], mem: &[f64]) -> Vec<UsageHour> {
    let last = NOW - NOW % 3600;
    let mut out = Vec::new();
    for h in 0..hours {
        let hour_start = last - h * 3600;
        let (mut c, mut m) = (Sketch::new(), Sketch::new());
        for i in 0..60 * pods {
            c.insert(cpu[(i + h as usize) % cpu.len()]).unwrap();
            m.insert(mem[(i + h as usize) % mem.len()]).unwrap();
        }
        out.push(UsageHour {
            key: key().into(),
            resource: Resource::Cpu,
            hour_start,
            sketch: c,
        });
        out.push(UsageHour {
            key: key().into(),
            resource: Resource::Memory,
            hour_start,
            sketch: m,
        });
    }
    out
}

fn usage(hours: i64, cpu: &[f64], mem: &[f64]) -> Vec<UsageHour> {
    usage_pods(hours, 1, cpu, mem)
}

fn signals(hours: i64, f: impl Fn(i64) -> (u32, u32, f64, f64)) -> Vec<SignalHour> {
    let last = NOW - NOW % 3600;
    (0..hours)
        .map(|h| {
            let (restarts, oom_kills, cfs_periods, cfs_throttled_periods) = f(h);
            SignalHour {
                key: key(),
                hour_start: last - h * 3600,
                restarts,
                oom_kills,
                cfs_periods,
                cfs_throttled_periods,
            }
        })
        .collect()
}

fn mib(x: f64) -> f64 {
    x * MIB as f64
}

fn run(
    current: Resources,
    usage: &[UsageHour],
    signals: &[SignalHour],
    workload: Option<&WorkloadInfo>,
    policy: &Policy,
) -> Recommendation {
    let k = key();
    let pricing = Pricing::default();
    let backtest = BacktestSettings::default();
    let ctx = Context {
        policy_sources: vec!["defaults".into()],
        policy_problem: None,
        pricing: &pricing,
        step_secs: 60,
        backtest: &backtest,
        previous_strategy: None,
    };
    recommend(
        &Input {
            key: &k,
            current,
            usage,
            signals,
            workload,
        },
        policy,
        &ctx,
        NOW,
        NOW,
    )
}

/// The guidance's rules with its own strategy pinned: these tests check those rules, not
/// the tournament (which `auto`, the default, runs).
fn guidance() -> Policy {
    Policy {
        strategy: StrategyName::Guidance,
        ..Policy::default()
    }
}

fn set(cpu_req: i64, cpu_lim: i64, mem: i64) -> Resources {
    Resources {
        cpu_request_millicores: Some(cpu_req),
        cpu_limit_millicores: Some(cpu_lim),
        memory_request_bytes: Some(mem),
        memory_limit_bytes: Some(mem),
    }
}

fn codes(r: &Recommendation) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn applies_the_guidance() {
    let cpu: Vec<f64> = (1..=100).map(|i| i as f64 / 1000.0).collect(); // 1m..100m
    let usage = usage(14 * 24, &cpu, &[mib(100.0), mib(200.0)]);
    let r = run(set(500, 1000, 512 * MIB), &usage, &[], None, &guidance());
    assert_eq!(r.status, Status::Ok);
    let p95 = r.evidence.cpu_percentile_millicores.unwrap();
    assert!((p95 - 95.0).abs() <= 0.95, "{p95}");
    let req = r.recommended.cpu_request_millicores.unwrap();
    assert_eq!(req, (p95 * 1.15).ceil() as i64);
    assert_eq!(r.recommended.cpu_limit_millicores, Some(4 * req));
    assert_eq!(
        r.recommended.memory_request_bytes,
        r.recommended.memory_limit_bytes
    );
    assert_eq!(r.recommended.memory_limit_bytes, Some(230 * MIB));
    assert_eq!(r.confidence, Confidence::High);
    assert_eq!(
        (r.evidence.history_hours, r.evidence.window_hours),
        (336, 336)
    );
    assert_eq!(
        r.reason,
        format!("cpu down (p95 {p95:.1}m); memory down (peak 200.0Mi)")
    );
    assert_eq!(r.strategy, "guidance");
    assert_eq!(
        r.severity,
        Severity::Warning,
        "500m requested for ~110m is a big gap"
    );
    // Backtest: the recommended request is exceeded ~5% of the time, the limit never; memory never.
    let bt = r.backtest.as_ref().unwrap();
    assert!(bt.recommended.cpu_over_request_share.unwrap() <= 0.06);
    assert_eq!(bt.recommended.cpu_over_limit_share, Some(0.0));
    assert_eq!(bt.recommended.memory_over_limit_hours, Some(0));
    assert_eq!(bt.current.cpu_over_request_share, Some(0.0));
    // Impact: one replica, (110m - 500m) cores and (230 - 512) MiB.
    let impact = r.impact.as_ref().unwrap();
    assert_eq!(impact.replicas, 1.0);
    assert!((impact.cpu_cores_delta - (req as f64 - 500.0) / 1000.0).abs() < 1e-9);
    assert!(impact.monthly_cost_delta < 0.0);
}

#[test]
fn floors_apply_to_idle_best_effort_containers() {
    let usage = usage(48, &[0.0, 0.0001], &[mib(1.0)]);
    let r = run(Resources::default(), &usage, &[], None, &guidance());
    assert_eq!(r.recommended.cpu_request_millicores, Some(10));
    assert_eq!(r.recommended.cpu_limit_millicores, Some(40));
    assert_eq!(r.recommended.memory_limit_bytes, Some(32 * MIB));
    assert_eq!(codes(&r), ["best-effort", "idle"]);
    assert!(
        r.reason.starts_with("no limits set; cpu set"),
        "{}",
        r.reason
    );
    assert!(r.evidence.rules.iter().any(|x| x.contains("floor")));
}

#[test]
fn under_a_day_is_insufficient() {
    let usage = usage(20, &[0.2], &[mib(300.0)]);
    let r = run(Resources::default(), &usage, &[], None, &guidance());
    assert_eq!(r.status, Status::InsufficientData);
    assert_eq!(r.recommended, Resources::default());
    assert_eq!(r.reason, "insufficient data: 20 hours of history, need 24");
    assert_eq!(r.confidence, Confidence::Low);
    assert_eq!(codes(&r), ["best-effort"], "findings still travel with it");
    assert!(r.backtest.is_none());
}

#[test]
fn hours_outside_the_window_are_ignored() {
    let usage = usage(30 * 24, &[0.1], &[mib(100.0)]);
    let r = run(Resources::default(), &usage, &[], None, &guidance());
    assert_eq!(r.evidence.history_hours, 336);
    assert_eq!(r.evidence.samples, 336 * 60);
}

#[test]
fn small_changes_are_not_proposed() {
    let usage = usage(48, &[0.100], &[mib(200.0)]);
    // p95 100m × 1.15 = 115m; memory 230Mi. Current within 10% and below 25m / 32Mi.
    let r = run(set(110, 440, 224 * MIB), &usage, &[], None, &guidance());
    assert_eq!(r.status, Status::NoChange, "{}", r.reason);
    assert!(r.reason.starts_with("within the minimum change"));
    let r = run(set(300, 1200, 224 * MIB), &usage, &[], None, &guidance());
    assert_eq!(r.status, Status::Ok);
}

#[test]
fn oom_kills_raise_memory_above_the_old_limit() {
    let usage = usage(72, &[0.1], &[mib(250.0), mib(255.0)]);
    let sig = signals(72, |h| {
        if h == 5 || h == 30 {
            (1, 1, 0.0, 0.0)
        } else {
            (0, 0, 0.0, 0.0)
        }
    });
    let r = run(set(100, 400, 256 * MIB), &usage, &sig, None, &guidance());
    assert_eq!(r.status, Status::Ok);
    // max(256Mi × 1.2, 256Mi + 100Mi) = 356Mi > peak 255Mi × 1.15 = 293.25Mi.
    assert_eq!(r.recommended.memory_limit_bytes, Some(356 * MIB));
    assert!(r.reason.contains("OOMKilled 2 times"), "{}", r.reason);
    assert!(codes(&r).contains(&"oom-killed"));
    assert_eq!(r.severity, Severity::Critical);
    assert!(r.backtest.as_ref().unwrap().memory_censored);
    assert_eq!(r.evidence.oom_kills, 2);
}

#[test]
fn throttled_containers_get_more_cpu_than_observed() {
    // Usage pinned at the 200m limit, throttled 40% of periods.
    let usage = usage(72, &[0.195, 0.199, 0.2], &[mib(100.0)]);
    let sig = signals(72, |_| (0, 0, 6000.0, 2400.0));
    let r = run(set(200, 200, 128 * MIB), &usage, &sig, None, &guidance());
    let req = r.recommended.cpu_request_millicores.unwrap();
    let lim = r.recommended.cpu_limit_millicores.unwrap();
    let observed = r.evidence.cpu_percentile_millicores.unwrap();
    assert!(
        req as f64 >= observed * 1.15 * 1.25 - 1.0,
        "request {req} must be bumped above {observed}"
    );
    assert!(lim >= 250, "the limit {lim} clears the old 200m by 25%");
    assert!(
        r.reason
            .starts_with("CPU-starved: throttled 40% of periods"),
        "{}",
        r.reason
    );
    assert!(codes(&r).contains(&"cpu-starved"));
    assert!(codes(&r).contains(&"guaranteed-cpu"));
    assert_eq!(r.severity, Severity::Critical);
    // Without the throttling signal the same usage gives the plain number.
    let plain = run(set(200, 200, 128 * MIB), &usage, &[], None, &guidance());
    assert!(plain.recommended.cpu_request_millicores.unwrap() < req);
}

#[test]
fn hpa_replica_change_is_spelled_out() {
    let usage = usage_pods(72, 4, &[0.1], &[mib(100.0)]);
    let info = WorkloadInfo {
        key: WorkloadKey {
            cluster: "c".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "api".into(),
        },
        spec_replicas: None,
        hpa: Some(HpaInfo {
            name: "api".into(),
            min_replicas: Some(2),
            max_replicas: Some(20),
            cpu_target_utilization: Some(70.0),
            metrics: vec!["cpu utilization 70".into()],
        }),
        pdb: None,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        from_kubernetes_api: true,
        seen_at: 0,
    };
    let r = run(
        set(500, 2000, 128 * MIB),
        &usage,
        &[],
        Some(&info),
        &guidance(),
    );
    let effect = r.hpa.as_ref().unwrap();
    assert_eq!(effect.current_replicas, 4.0);
    let new = r.recommended.cpu_request_millicores.unwrap() as f64;
    assert!(
        (effect.expected_replicas - (4.0 * 500.0 / new).min(20.0)).abs() < 0.01,
        "{effect:?}"
    );
    assert_eq!(
        effect.target_utilization_for_same_scale,
        (70.0 * 500.0 / new).round()
    );
    assert!(r.reason.contains("HPA api: ~4 → ~"), "{}", r.reason);
    assert_eq!(codes(&r), ["no-pdb", "hpa-cpu-only"]);
    let impact = r.impact.as_ref().unwrap();
    assert_eq!(impact.replicas, 4.0);
    assert_eq!(impact.replicas_after, effect.expected_replicas);
    // Requested CPU across replicas stays about the same: the HPA adds pods as the request shrinks.
    let expected_delta = new / 1000.0 * effect.expected_replicas - 0.5 * 4.0;
    assert!(
        (impact.cpu_cores_delta - expected_delta).abs() < 1e-9,
        "{impact:?}"
    );
}

#[test]
fn decaying_strategy_follows_the_recent_level() {
    let mut usage = usage(24, &[0.05], &[mib(100.0)]);
    for u in usage_pods(14 * 24, 1, &[0.4], &[mib(100.0)])
        .into_iter()
        .filter(|u| u.hour_start < NOW - NOW % 3600 - 23 * 3600)
    {
        usage.push(u);
    }
    let policy = Policy {
        strategy: policy::StrategyName::Decaying,
        half_life: std::time::Duration::from_secs(3 * 3600),
        ..guidance()
    };
    let decaying = run(Resources::default(), &usage, &[], None, &policy);
    let flat = run(Resources::default(), &usage, &[], None, &guidance());
    assert_eq!(decaying.strategy, "decaying");
    assert!(
        decaying.recommended.cpu_request_millicores.unwrap() < 100,
        "{:?}",
        decaying.recommended
    );
    assert!(flat.recommended.cpu_request_millicores.unwrap() > 400);
}

#[test]
fn no_cpu_limit_policy_is_a_finding() {
    let usage = usage(48, &[0.1], &[mib(100.0)]);
    let policy = Policy {
        cpu_limit_ratio: None,
        ..guidance()
    };
    let r = run(Resources::default(), &usage, &[], None, &policy);
    assert_eq!(r.recommended.cpu_limit_millicores, None);
    assert!(codes(&r).contains(&"no-cpu-limit-by-policy"));
}

proptest! {
    #[test]
    fn memory_never_below_the_peak_nor_the_old_limit_after_oom(
        peak_mib in 1.0f64..8192.0,
        old_limit_mib in 16i64..8192,
        ooms in 0u32..3,
        margin in 0.0f64..1.0,
    ) {
        let usage = usage(48, &[0.1], &[mib(peak_mib), mib(peak_mib / 2.0)]);
        let sig = signals(48, |h| if h == 3 { (ooms, ooms, 0.0, 0.0) } else { (0, 0, 0.0, 0.0) });
        let policy = Policy { margin, ..guidance() };
        let r = run(set(100, 400, old_limit_mib * MIB), &usage, &sig, None, &policy);
        let mem = r.recommended.memory_limit_bytes.unwrap() as f64;
        prop_assert!(mem >= mib(peak_mib));
        prop_assert_eq!(r.recommended.memory_request_bytes, r.recommended.memory_limit_bytes);
        if ooms > 0 {
            prop_assert!(mem >= (old_limit_mib * MIB) as f64 * 1.2);
            prop_assert!(mem >= ((old_limit_mib + 100) * MIB) as f64);
        }
    }
}
