//! The whole pipeline on real components: synthetic history → promtool → a real
//! Prometheus → collector → SQLite and Postgres → analyzer → recommendations,
//! checked against the generator's exact ground truth.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rightsizer::collector::{self, CollectOptions};
use rightsizer::config::CollectorSource;
use rightsizer::jobs;
use rightsizer::model::{ContainerObservation, Recommendation, SignalHour, Status, UsageHour};
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store::{RecommendationFilter, Store};
use rightsizer_synth::{self as synth, GroundTruth, SynthConfig};
use support::postgres::TestDatabase;
use support::prometheus::{Prometheus, TempDir};

const DAYS: i64 = 2;

struct Fixture {
    _dir: TempDir,
    prometheus: Prometheus,
    truth: GroundTruth,
}

fn fixture() -> Fixture {
    let end = {
        let now = chrono::Utc::now().timestamp();
        now - now.rem_euclid(3600) - 3 * 3600
    };
    let cfg = SynthConfig::new(7, end - DAYS * 86_400, end);
    let dir = TempDir::new("rs-pipeline").unwrap();
    let path = dir.path().join("metrics.om");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let truth = synth::generate(&cfg, file).unwrap();
    let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
    Fixture {
        _dir: dir,
        prometheus,
        truth,
    }
}

fn client(url: &str) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.into(),
        bearer_token: None,
        timeout: Duration::from_secs(60),
        ..PromConfig::default()
    })
    .unwrap()
}

fn options(truth: &GroundTruth, to: i64, source: CollectorSource) -> CollectOptions {
    CollectOptions {
        step_secs: 60,
        chunk_hours: 6,
        concurrency: 2,
        source,
        ..CollectOptions::new("test", truth.start, to)
    }
}

/// Every row of every container (its last spec, hourly usage, hourly signals), for
/// comparing stores and sources.
type Dump = BTreeMap<String, (ContainerObservation, Vec<UsageHour>, Vec<SignalHour>)>;

async fn dump(store: &dyn Store) -> Dump {
    let mut out = BTreeMap::new();
    for c in store.containers(Some("test")).await.unwrap() {
        let usage = store.usage(&c.key, 0, i64::MAX / 2).await.unwrap();
        let signals = store.signals(&c.key, 0, i64::MAX / 2).await.unwrap();
        out.insert(c.key.to_string(), (c, usage, signals));
    }
    out
}

fn relative_error(got: f64, want: f64) -> f64 {
    if want == 0.0 {
        got.abs()
    } else {
        (got - want).abs() / want
    }
}

fn check_against_truth(recs: &[Recommendation], truth: &GroundTruth) {
    for r in recs {
        assert!(
            !r.key.container.is_empty() && r.key.container != "POD",
            "pseudo-container became a workload container: {}",
            r.key
        );
    }
    for t in &truth.containers {
        let r = recs
            .iter()
            .find(|r| {
                r.key.namespace == t.namespace
                    && r.key.kind == t.kind
                    && r.key.workload == t.workload
                    && r.key.container == t.container
            })
            .unwrap_or_else(|| {
                panic!(
                    "no recommendation for {}/{}/{}/{}; have {:?}",
                    t.namespace,
                    t.kind,
                    t.workload,
                    t.container,
                    recs.iter().map(|r| r.key.to_string()).collect::<Vec<_>>()
                )
            });
        let e = &r.evidence;
        assert_eq!(e.samples, t.cpu_samples, "{}: CPU samples", r.key);
        assert_eq!(
            e.memory_samples, t.memory_samples,
            "{}: memory samples",
            r.key
        );
        let p95 = e.cpu_percentile_millicores.unwrap() / 1000.0;
        assert!(
            relative_error(p95, t.cpu_p95_cores) <= 0.02,
            "{}: p95 {p95} vs exact {}",
            r.key,
            t.cpu_p95_cores
        );
        let peak = e.memory_peak_bytes.unwrap();
        assert!(
            relative_error(peak, t.memory_peak_bytes) <= 0.01,
            "{}: peak {peak} vs exact {}",
            r.key,
            t.memory_peak_bytes
        );
        assert_eq!(
            r.current.cpu_request_millicores, t.cpu_request_millicores,
            "{}: current cpu request",
            r.key
        );
        assert_eq!(
            r.current.memory_limit_bytes, t.memory_limit_bytes,
            "{}: current memory limit",
            r.key
        );
        if r.status != Status::InsufficientData {
            let n = &r.recommended;
            assert_eq!(n.memory_request_bytes, n.memory_limit_bytes, "{}", r.key);
            assert_eq!(
                n.cpu_limit_millicores,
                n.cpu_request_millicores.map(|c| 4 * c),
                "{}",
                r.key
            );
            assert!(n.memory_limit_bytes.unwrap() as f64 >= peak, "{}", r.key);
        }
    }
    assert_eq!(
        recs.len(),
        truth.containers.len(),
        "one recommendation per workload container"
    );
}

/// Collects the fixture into `store`, the first hours through `first` and the last five
/// through `rest`, analyzes, and checks the recommendations against the ground truth.
async fn end_to_end(
    store: Arc<dyn Store>,
    fx: &Fixture,
    first: CollectorSource,
    rest: CollectorSource,
) -> Dump {
    let prom = client(fx.prometheus.url());
    let truth = &fx.truth;

    // First a window that stops 5 hours short, then the whole: only new hours are fetched.
    let partial = collector::collect(
        &prom,
        store.as_ref(),
        &options(truth, truth.end - 5 * 3600, first),
    )
    .await
    .unwrap();
    assert_eq!(partial.source, first.as_str());
    assert_eq!(partial.hours_collected as i64, DAYS * 24 - 5);
    assert_eq!(
        partial.inferred_pods, 0,
        "every pod has kube_pod_owner: no name heuristics"
    );
    let rest = collector::collect(&prom, store.as_ref(), &options(truth, truth.end, rest))
        .await
        .unwrap();
    assert_eq!(
        (rest.hours_collected, rest.hours_already_collected),
        (5, DAYS as u64 * 24 - 5)
    );
    assert_eq!(store.watermark("test").await.unwrap(), Some(truth.end));

    // Collecting the same window again changes nothing.
    let before = dump(store.as_ref()).await;
    let again = collector::collect(&prom, store.as_ref(), &options(truth, truth.end, first))
        .await
        .unwrap();
    assert_eq!(again.hours_collected, 0);
    assert_eq!(dump(store.as_ref()).await, before);

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
    let now = chrono::Utc::now().timestamp();
    let report = jobs::analyze_cluster(store.as_ref(), "test", &settings, now)
        .await
        .unwrap();
    assert_eq!(report.window_end, truth.end);
    let recs = store
        .recommendations(&RecommendationFilter {
            cluster: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    check_against_truth(&recs, truth);

    // The Deployment that rolled to a new ReplicaSet is one workload.
    let api: Vec<_> = recs
        .iter()
        .filter(|r| r.key.namespace == "shop" && r.key.workload == "api")
        .collect();
    assert!(!api.is_empty());
    assert!(api.iter().all(|r| r.key.kind == "Deployment"), "{api:?}");
    let api_truth = truth
        .containers
        .iter()
        .filter(|t| t.namespace == "shop" && t.workload == "api")
        .count();
    assert_eq!(api.len(), api_truth);
    assert!(
        truth
            .container("shop", "Deployment", "api", &api[0].key.container)
            .unwrap()
            .pods
            > 3,
        "the rollout brought new pods"
    );
    before
}

/// Each store gets half of its history through each source, in opposite orders, and a
/// third run reads everything through remote read alone: every store holds the same
/// summaries, exactly (the collector evaluates the PromQL of the query path bit for bit
/// from the raw samples), and each analysis matches the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_agree_with_the_ground_truth_through_either_source() {
    use CollectorSource::{Auto, QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();

    let dir = TempDir::new("rs-pipeline-sqlite").unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("rs.db").display());
    let sqlite = rightsizer::store::connect(&sqlite_url).await.unwrap();
    let from_sqlite = end_to_end(sqlite, &fx, QueryRange, RemoteRead).await;

    let db = TestDatabase::create().await;
    let postgres = rightsizer::store::connect(db.url()).await.unwrap();
    let from_postgres = end_to_end(postgres, &fx, RemoteRead, QueryRange).await;

    assert_eq!(
        from_sqlite, from_postgres,
        "both backends store the same summaries, whichever source fed which hours"
    );
    db.drop_database().await;

    let dir = TempDir::new("rs-pipeline-remote").unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("rs.db").display());
    let remote_only = rightsizer::store::connect(&sqlite_url).await.unwrap();
    let report = collector::collect(
        &client(fx.prometheus.url()),
        remote_only.as_ref(),
        &options(&fx.truth, fx.truth.end, Auto),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.source.as_str(), report.source_note.as_deref()),
        ("remote-read", None),
        "Prometheus 2.42 offers remote read: auto takes it"
    );
    assert_eq!(report.remote_read_fallbacks, 0);
    assert!(report.remote_read_samples > 0 && report.remote_read_bytes > 0);
    assert_eq!(dump(remote_only.as_ref()).await, from_sqlite);
}
