//! One scenario per analyzer rule, on the demo cluster's generated history:
//! synth → promtool → a real Prometheus → collector → SQLite → analyzer. Each
//! scenario checks the direction and size of the change and the reason text
//! against the generator's ground truth, not against numbers copied from a run.

mod support;

use std::time::Duration;

use rightsizer::collector::{self, CollectOptions, CollectReport};
use rightsizer::jobs;
use rightsizer::model::{Confidence, Recommendation, Resources, Severity, Status};
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store::RecommendationFilter;
use rightsizer_synth::{self as synth, GroundTruth, SynthConfig, TruthContainer};
use support::prometheus::{Prometheus, TempDir};

/// The demo's seed.
const SEED: u64 = 42;
/// 2024-03-09 15:00 UTC. A fixed past history gives the same numbers on every run;
/// Prometheus' retention counts from the newest sample, not from the wall clock.
const START: i64 = 1_709_996_400;
/// Enough for every long-running workload (24 h minimum), while `shop/new-feature`
/// exists only for the last 20 hours.
const DAYS: i64 = 3;
const MIB: i64 = 1 << 20;

/// The defaults of the guidance (`Policy::default()`), restated so a changed default
/// shows up here as a deliberate edit.
const MARGIN: f64 = 0.15;
const THROTTLING_BUMP: f64 = 0.25;
const CPU_LIMIT_RATIO: i64 = 4;
const MIN_CPU_MILLICORES: i64 = 10;
const MIN_MEMORY_BYTES: i64 = 32 * MIB;
const MIN_HISTORY_HOURS: u32 = 24;
const MIN_SAMPLES: u64 = 600;

struct Scenarios {
    truth: GroundTruth,
    collected: CollectReport,
    recs: Vec<Recommendation>,
}

impl Scenarios {
    fn rec(&self, namespace: &str, kind: &str, workload: &str, container: &str) -> &Recommendation {
        self.recs
            .iter()
            .find(|r| {
                r.key.namespace == namespace
                    && r.key.kind == kind
                    && r.key.workload == workload
                    && r.key.container == container
            })
            .unwrap_or_else(|| {
                panic!(
                    "no recommendation for {namespace}/{kind}/{workload}/{container}; have {:?}",
                    self.recs
                        .iter()
                        .map(|r| r.key.to_string())
                        .collect::<Vec<_>>()
                )
            })
    }

    fn truth(
        &self,
        namespace: &str,
        kind: &str,
        workload: &str,
        container: &str,
    ) -> &TruthContainer {
        self.truth
            .container(namespace, kind, workload, container)
            .unwrap_or_else(|| panic!("no truth for {namespace}/{kind}/{workload}/{container}"))
    }
}

fn has_finding(r: &Recommendation, code: &str) -> bool {
    r.findings.iter().any(|f| f.code == code)
}

fn codes(r: &Recommendation) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

/// `value` rounded up to a whole multiple of `unit`, as the analyzer rounds.
fn round_up(value: f64, unit: i64) -> i64 {
    (value / unit as f64 - 1e-9).ceil() as i64 * unit
}

fn relative_error(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(f64::MIN_POSITIVE)
}

/// The collector's and the analyzer's view of the demo cluster's history.
async fn scenarios() -> Scenarios {
    let dir = TempDir::new("rs-scenarios").unwrap();
    let path = dir.path().join("metrics.om");
    let cfg = SynthConfig::new(SEED, START, START + DAYS * 86_400);
    let (truth, prometheus) = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let truth = synth::generate(&cfg, file).unwrap();
            let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
            (truth, prometheus)
        })
        .await
        .unwrap()
    };
    let prom = PromClient::new(&PromConfig {
        url: prometheus.url().into(),
        bearer_token: None,
        timeout: Duration::from_secs(60),
        ..PromConfig::default()
    })
    .unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let collected = collector::collect(
        &prom,
        store.as_ref(),
        &CollectOptions {
            step_secs: 60,
            chunk_hours: 6,
            concurrency: 2,
            ..CollectOptions::new("test", truth.start, truth.end)
        },
    )
    .await
    .unwrap();
    // Everything from here on reads the store only.
    drop(prometheus);
    let settings = jobs::AnalysisSettings {
        // The guidance's own strategy: these checks are of its rules, not the tournament's choice.
        policies: rightsizer::analyzer::PolicySet::new(rightsizer::analyzer::PolicyOverride {
            strategy: Some(rightsizer::analyzer::StrategyName::Guidance),
            ..Default::default()
        })
        .unwrap(),
        pricing: Default::default(),
        step_secs: 60,
        backtest: Default::default(),
    };
    jobs::analyze_cluster(store.as_ref(), "test", &settings, truth.end + 600)
        .await
        .unwrap();
    let recs = store
        .recommendations(&RecommendationFilter {
            cluster: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    Scenarios {
        truth,
        collected,
        recs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzer_rules_on_generated_history() {
    let s = scenarios().await;
    for r in &s.recs {
        eprintln!(
            "{} [{}] {:?} → {:?}: {} {:?} {:?}",
            r.key,
            r.status.as_str(),
            r.current,
            r.recommended,
            r.reason,
            codes(r),
            r.hpa
        );
    }
    assert_eq!(
        s.recs.len(),
        s.truth.containers.len(),
        "one recommendation per workload container"
    );
    oom_killed(&s);
    throttled(&s);
    hpa_scaled(&s);
    new_workload_with_20_hours(&s);
    idle(&s);
    best_effort(&s);
    sidecar(&s);
    cronjob(&s);
    pdb_findings(&s);
    memory_never_below_the_peak(&s);
}

/// `shop/cart` is OOMKilled at its 256Mi limit: its observed peak is censored there.
fn oom_killed(s: &Scenarios) {
    let t = s.truth("shop", "Deployment", "cart", "cart");
    let r = s.rec("shop", "Deployment", "cart", "cart");
    let n = t.oom_kills;
    assert!(n > 0, "the scenario needs OOM kills: {t:?}");
    assert_eq!(r.status, Status::Ok, "cart: {}", r.reason);
    assert_eq!(r.evidence.oom_kills, n, "cart: OOM kills in the evidence");
    assert!(
        r.reason.contains(&format!("OOMKilled {n} times")),
        "cart: reason should say \"OOMKilled {n} times\": {}",
        r.reason
    );
    assert!(has_finding(r, "oom-killed"), "cart: {:?}", codes(r));
    assert_eq!(r.severity, Severity::Critical, "cart: severity");
    let old = t.memory_limit_bytes.expect("cart has a memory limit") as f64;
    let floor = (old * 1.2).max(old + (100 * MIB) as f64);
    let memory = r.recommended.memory_limit_bytes.unwrap();
    assert!(
        memory as f64 >= floor,
        "cart: memory {memory} below max(old × 1.2, old + 100Mi) = {floor}"
    );
    assert_eq!(
        r.recommended.memory_request_bytes,
        Some(memory),
        "cart: memory request == limit"
    );
    assert!(
        memory as f64 >= t.memory_peak_bytes,
        "cart: memory {memory} below the observed peak {}",
        t.memory_peak_bytes
    );
    assert!(
        r.backtest.as_ref().is_some_and(|b| b.memory_censored),
        "cart: the backtest should know the history is OOM-censored"
    );
}

/// `shop/cart` also runs at its 250m CPU limit and is throttled: observed usage
/// understates demand, so the request goes above the percentile.
fn throttled(s: &Scenarios) {
    let t = s.truth("shop", "Deployment", "cart", "cart");
    let r = s.rec("shop", "Deployment", "cart", "cart");
    let ratio = t.cfs_throttled_ratio.expect("cart has CFS series");
    assert!(ratio >= 0.10, "the scenario needs throttling: {ratio}");
    let prefix = "CPU-starved: throttled ";
    let reported = r
        .reason
        .split("; ")
        .find_map(|part| part.strip_prefix(prefix)?.strip_suffix("% of periods"))
        .unwrap_or_else(|| {
            panic!(
                "cart: reason should say \"{prefix}X% of periods\": {}",
                r.reason
            )
        });
    let reported: f64 = reported.parse().unwrap();
    assert!(
        (reported - ratio * 100.0).abs() <= 1.0,
        "cart: throttled {reported}% reported, truth {:.2}%",
        ratio * 100.0
    );
    assert!(has_finding(r, "cpu-starved"), "cart: {:?}", codes(r));
    let p95 = r.evidence.cpu_percentile_millicores.unwrap();
    assert!(
        relative_error(p95, t.cpu_p95_cores * 1000.0) <= 0.02,
        "cart: p95 {p95}m vs exact {}m",
        t.cpu_p95_cores * 1000.0
    );
    let want = round_up(p95 * (1.0 + MARGIN) * (1.0 + THROTTLING_BUMP), 1);
    let request = r.recommended.cpu_request_millicores.unwrap();
    assert!(
        request >= want,
        "cart: CPU request {request}m below p95 {p95:.1}m × 1.15 × 1.25 = {want}m"
    );
    let old_limit = t.cpu_limit_millicores.unwrap();
    let limit = r.recommended.cpu_limit_millicores.unwrap();
    assert!(
        limit > old_limit,
        "cart: CPU limit {limit}m not above the old {old_limit}m"
    );
    assert_eq!(
        limit,
        CPU_LIMIT_RATIO * request,
        "cart: limit = 4 × request"
    );
    assert!(
        request > t.cpu_request_millicores.unwrap(),
        "cart: a starved container's request goes up"
    );
}

/// `shop/frontend` is scaled by an HPA on CPU utilization: a smaller request means
/// more replicas at the same target.
fn hpa_scaled(s: &Scenarios) {
    let t = s.truth("shop", "Deployment", "frontend", "frontend");
    let w = s.truth.workload("shop", "Deployment", "frontend").unwrap();
    let hpa_truth = w.hpa.as_ref().expect("frontend has an HPA");
    let r = s.rec("shop", "Deployment", "frontend", "frontend");
    assert_eq!(r.status, Status::Ok, "frontend: {}", r.reason);
    let h = r
        .hpa
        .as_ref()
        .unwrap_or_else(|| panic!("frontend: no HPA effect; reason {}", r.reason));
    assert_eq!(h.hpa, hpa_truth.name);
    assert_eq!(h.cpu_target_utilization, hpa_truth.cpu_target_utilization);
    assert!(
        relative_error(h.current_replicas, w.average_replicas) <= 0.05,
        "frontend: current replicas {} vs truth average {}",
        h.current_replicas,
        w.average_replicas
    );
    let old = t.cpu_request_millicores.unwrap() as f64;
    let new = r.recommended.cpu_request_millicores.unwrap() as f64;
    assert!(
        new < old,
        "frontend: the request should come down ({old}m → {new}m)"
    );
    let expected = (h.current_replicas * old / new)
        .clamp(hpa_truth.min_replicas as f64, hpa_truth.max_replicas as f64);
    assert!(
        (h.expected_replicas - expected).abs() <= 0.02,
        "frontend: expected replicas {} vs current × old / new = {expected}",
        h.expected_replicas
    );
    assert!(
        h.expected_replicas > h.current_replicas,
        "frontend: a smaller request scales out"
    );
    assert_eq!(
        h.target_utilization_for_same_scale,
        (hpa_truth.cpu_target_utilization * old / new).round(),
        "frontend: the target that keeps today's scale"
    );
    assert!(
        r.reason.contains(&format!("HPA {}:", hpa_truth.name)),
        "frontend: reason should mention the HPA: {}",
        r.reason
    );
    assert!(has_finding(r, "hpa-cpu-only"), "frontend: {:?}", codes(r));
    assert!(
        !has_finding(r, "no-pdb") && !has_finding(r, "pdb-blocks-disruption"),
        "frontend-pdb allows a disruption: {:?}",
        codes(r)
    );
    // Memory is still rightsized from the peak, request == limit.
    let peak = r.evidence.memory_peak_bytes.unwrap();
    let memory = r.recommended.memory_limit_bytes.unwrap();
    assert_eq!(r.recommended.memory_request_bytes, Some(memory));
    assert_eq!(
        memory,
        round_up(peak * (1.0 + MARGIN), MIB).max(MIN_MEMORY_BYTES),
        "frontend: memory = peak × 1.15"
    );
    assert!(
        memory < t.memory_limit_bytes.unwrap(),
        "frontend: memory comes down from {} (peak {})",
        t.memory_limit_bytes.unwrap(),
        t.memory_peak_bytes
    );
}

/// `shop/new-feature` was deployed 20 hours before the end: no numbers yet.
fn new_workload_with_20_hours(s: &Scenarios) {
    let t = s.truth("shop", "Deployment", "new-feature", "new-feature");
    let r = s.rec("shop", "Deployment", "new-feature", "new-feature");
    assert!(t.history_hours < MIN_HISTORY_HOURS, "{t:?}");
    assert!(
        t.cpu_samples >= MIN_SAMPLES,
        "only the hours are missing: {t:?}"
    );
    assert_eq!(
        r.status,
        Status::InsufficientData,
        "new-feature: {}",
        r.reason
    );
    assert_eq!(r.evidence.history_hours, t.history_hours);
    assert_eq!(
        r.reason,
        format!(
            "insufficient data: {} hours of history, need {MIN_HISTORY_HOURS}",
            t.history_hours
        )
    );
    assert_eq!(
        r.recommended,
        Resources::default(),
        "new-feature: nothing proposed"
    );
    assert_eq!(r.confidence, Confidence::Low);
    assert!(r.backtest.is_none() && r.impact.is_none() && r.hpa.is_none());
}

/// `monitoring/idle-exporter` uses a millicore and ~10Mi: the floors apply.
fn idle(s: &Scenarios) {
    let t = s.truth("monitoring", "Deployment", "idle-exporter", "idle-exporter");
    let r = s.rec("monitoring", "Deployment", "idle-exporter", "idle-exporter");
    assert!(
        t.cpu_p95_cores < 0.005,
        "the scenario needs an idle container: {t:?}"
    );
    assert_eq!(r.status, Status::Ok, "idle-exporter: {}", r.reason);
    assert!(has_finding(r, "idle"), "idle-exporter: {:?}", codes(r));
    let n = &r.recommended;
    assert_eq!(
        n.cpu_request_millicores,
        Some(MIN_CPU_MILLICORES),
        "idle-exporter: CPU floor"
    );
    assert_eq!(
        n.cpu_limit_millicores,
        Some(CPU_LIMIT_RATIO * MIN_CPU_MILLICORES)
    );
    let peak = r.evidence.memory_peak_bytes.unwrap();
    let memory = round_up(peak * (1.0 + MARGIN), MIB).max(MIN_MEMORY_BYTES);
    assert_eq!(
        n.memory_request_bytes,
        Some(memory),
        "idle-exporter: memory floor"
    );
    assert_eq!(n.memory_limit_bytes, Some(memory));
    assert!(
        r.reason.contains("cpu down") && r.reason.contains("memory down"),
        "{}",
        r.reason
    );
}

/// `monitoring/blackbox-exporter` sets neither requests nor limits.
fn best_effort(s: &Scenarios) {
    let t = s.truth(
        "monitoring",
        "Deployment",
        "blackbox-exporter",
        "blackbox-exporter",
    );
    let r = s.rec(
        "monitoring",
        "Deployment",
        "blackbox-exporter",
        "blackbox-exporter",
    );
    assert_eq!(
        r.current,
        Resources::default(),
        "blackbox-exporter is BestEffort"
    );
    assert_eq!(t.memory_limit_bytes, None);
    assert_eq!(r.status, Status::Ok, "blackbox-exporter: {}", r.reason);
    assert!(
        has_finding(r, "best-effort"),
        "blackbox-exporter: {:?}",
        codes(r)
    );
    assert!(
        r.reason.starts_with("no limits set"),
        "blackbox-exporter: reason {}",
        r.reason
    );
    let n = &r.recommended;
    let request = n.cpu_request_millicores.unwrap();
    assert_eq!(n.cpu_limit_millicores, Some(CPU_LIMIT_RATIO * request));
    let memory = n.memory_limit_bytes.expect("a memory limit is recommended");
    assert_eq!(n.memory_request_bytes, Some(memory));
    assert!(memory as f64 >= t.memory_peak_bytes);
}

/// `shop/web`'s `istio-proxy` sidecar is sized on its own usage, not the pod's.
fn sidecar(s: &Scenarios) {
    for container in ["web", "istio-proxy"] {
        let t = s.truth("shop", "Deployment", "web", container);
        let r = s.rec("shop", "Deployment", "web", container);
        let p95 = r.evidence.cpu_percentile_millicores.unwrap() / 1000.0;
        assert!(
            relative_error(p95, t.cpu_p95_cores) <= 0.02,
            "web/{container}: p95 {p95} vs exact {}",
            t.cpu_p95_cores
        );
        assert_eq!(
            r.evidence.samples, t.cpu_samples,
            "web/{container}: samples"
        );
        assert_eq!(r.current.cpu_request_millicores, t.cpu_request_millicores);
    }
    let web = s.rec("shop", "Deployment", "web", "web");
    let proxy = s.rec("shop", "Deployment", "web", "istio-proxy");
    assert_ne!(
        web.recommended.cpu_request_millicores, proxy.recommended.cpu_request_millicores,
        "the sidecar gets its own numbers"
    );
}

/// `batch/report-builder` runs a Job every 6 hours: its pods pool into the CronJob.
fn cronjob(s: &Scenarios) {
    let t = s.truth("batch", "CronJob", "report-builder", "report-builder");
    let r = s.rec("batch", "CronJob", "report-builder", "report-builder");
    assert_eq!(
        s.collected.inferred_pods, 0,
        "owners come from kube-state-metrics"
    );
    assert!(
        s.recs
            .iter()
            .all(|r| r.key.kind != "Job" && r.key.kind != "ReplicaSet"),
        "a Job or ReplicaSet became a workload"
    );
    assert!(t.pods > 1, "several runs pooled: {t:?}");
    assert_eq!(r.evidence.samples, t.cpu_samples, "report-builder: samples");
    let short = t.cpu_samples < MIN_SAMPLES || t.history_hours < MIN_HISTORY_HOURS;
    assert_eq!(
        r.status == Status::InsufficientData,
        short,
        "report-builder: {} samples over {} hours: {}",
        t.cpu_samples,
        t.history_hours,
        r.reason
    );
    if t.cpu_samples < MIN_SAMPLES {
        assert!(
            r.reason.contains(&format!(
                "{} CPU samples, need {MIN_SAMPLES}",
                t.cpu_samples
            )),
            "report-builder: {}",
            r.reason
        );
    }
}

/// A PDB allowing no disruption blocks the rollout; several replicas without one
/// can all go at once.
fn pdb_findings(s: &Scenarios) {
    let api = s.rec("shop", "Deployment", "api", "api");
    let api_pdb = s
        .truth
        .workload("shop", "Deployment", "api")
        .unwrap()
        .pdb
        .as_ref()
        .unwrap();
    assert_eq!(api_pdb.disruptions_allowed, 0);
    let f = api
        .findings
        .iter()
        .find(|f| f.code == "pdb-blocks-disruption")
        .unwrap_or_else(|| panic!("api: {:?}", codes(api)));
    assert!(f.message.contains(&api_pdb.name), "{}", f.message);
    let web = s.truth.workload("shop", "Deployment", "web").unwrap();
    assert!(web.replicas >= 2 && web.pdb.is_none());
    // Prometheus only: kube-state-metrics ties PDBs by name, so a missing one is unknown, not absent.
    for container in ["web", "istio-proxy"] {
        let r = s.rec("shop", "Deployment", "web", container);
        let f = r.findings.iter().find(|f| f.code == "pdb-unknown");
        let f = f.unwrap_or_else(|| panic!("web/{container}: {:?}", codes(r)));
        assert_eq!(f.severity, Severity::Info);
        assert!(f
            .message
            .starts_with("PDB unknown (no Kubernetes API source)"));
    }
    // The rule over every Deployment and StatefulSet of the truth.
    for w in &s.truth.workloads {
        let multi = w.replicas >= 2 || w.hpa.as_ref().is_some_and(|h| h.max_replicas > 1);
        let want = match &w.pdb {
            None if multi => Some("pdb-unknown"),
            Some(p) if p.disruptions_allowed == 0 => Some("pdb-blocks-disruption"),
            _ => None,
        };
        for r in s.recs.iter().filter(|r| {
            r.key.namespace == w.namespace && r.key.kind == w.kind && r.key.workload == w.name
        }) {
            for code in ["no-pdb", "pdb-unknown", "pdb-blocks-disruption"] {
                assert_eq!(
                    has_finding(r, code),
                    want == Some(code),
                    "{}: {code} (pdb {:?}, {} replicas)",
                    r.key,
                    w.pdb,
                    w.replicas
                );
            }
        }
    }
}

/// Memory is sized from the peak: never below it, and never below the old limit after
/// an OOM kill.
fn memory_never_below_the_peak(s: &Scenarios) {
    for r in s
        .recs
        .iter()
        .filter(|r| r.status != Status::InsufficientData)
    {
        let t = s.truth(
            &r.key.namespace,
            &r.key.kind,
            &r.key.workload,
            &r.key.container,
        );
        let memory = r.recommended.memory_limit_bytes.unwrap();
        assert!(
            memory as f64 >= t.memory_peak_bytes,
            "{}: memory {memory} below the peak {}",
            r.key,
            t.memory_peak_bytes
        );
        if t.oom_kills > 0 {
            if let Some(old) = t.memory_limit_bytes {
                assert!(
                    memory > old,
                    "{}: memory {memory} not above the old limit {old}",
                    r.key
                );
            }
        }
    }
}
