//! Analysis with the Kubernetes API source beside Prometheus: the API's view wins for
//! current specs, replicas and `rightsizer.io/*` annotations (policy overrides), usage stays
//! Prometheus', and workloads only one side knows are counted. The API server is the
//! recorded-response server of tests/support/kube_api.rs (no API server can run here).

mod support;

use rightsizer::cluster::{snapshot_once, ClusterSourceConfig};
use rightsizer::jobs::{analyze_cluster_with, AnalysisSettings};
use rightsizer::model::{
    Chunk, ContainerKey, ContainerObservation, Resource, Resources, UsageHour,
};
use rightsizer::sketch::Sketch;
use rightsizer::store::RecommendationFilter;
use support::kube_api::KubeApi;
use support::prometheus::TempDir;

const HOUR: i64 = 3600;
const T0: i64 = 1_700_000_000 - 1_700_000_000 % HOUR;

fn key(workload: &str, container: &str) -> ContainerKey {
    ContainerKey {
        cluster: "prod".into(),
        namespace: "shop".into(),
        kind: "Deployment".into(),
        workload: workload.into(),
        container: container.into(),
    }
}

/// 48 hours of usage for `key`, CPU cycling 10m..200m, memory 100Mi.
fn history(key: &ContainerKey) -> Vec<UsageHour> {
    let mut out = Vec::new();
    for h in 0..48 {
        let (mut cpu, mut mem) = (Sketch::new(), Sketch::new());
        for i in 0..60 {
            cpu.insert(0.010 + 0.190 * (i as f64 / 59.0)).unwrap();
            mem.insert(100.0 * 1048576.0).unwrap();
        }
        out.push(UsageHour {
            key: key.clone().into(),
            resource: Resource::Cpu,
            hour_start: T0 + h * HOUR,
            sketch: cpu,
        });
        out.push(UsageHour {
            key: key.clone().into(),
            resource: Resource::Memory,
            hour_start: T0 + h * HOUR,
            sketch: mem,
        });
    }
    out
}

#[tokio::test]
async fn annotations_and_api_specs_win_and_disagreements_are_counted() {
    let api = KubeApi::recorded().await;
    let snapshot = snapshot_once(api.client(), &ClusterSourceConfig::default())
        .await
        .unwrap();

    let dir = TempDir::new("rs-cluster-analysis").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let (cart, ghost) = (key("cart", "cart"), key("ghost", "app"));
    let mut usage = history(&cart);
    usage.extend(history(&ghost));
    // kube-state-metrics says 100m; the API says 0.2 cores (its view wins).
    let ksm = Resources {
        cpu_request_millicores: Some(100),
        ..Resources::default()
    };
    store
        .write_chunk(&Chunk {
            cluster: "prod".into(),
            hours: (0..48).map(|h| T0 + h * HOUR).collect(),
            containers: vec![ContainerObservation {
                key: cart.clone(),
                resources: ksm,
                seen_at: T0 + 47 * HOUR,
            }],
            usage,
            ..Chunk::default()
        })
        .await
        .unwrap();

    let settings = AnalysisSettings {
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
    let report = analyze_cluster_with(
        store.as_ref(),
        "prod",
        &settings,
        T0 + 48 * HOUR,
        Some(&snapshot),
    )
    .await
    .unwrap();
    assert!(
        report.only_in_kubernetes > 0,
        "the recorded cluster has workloads without usage: {report:?}"
    );
    assert_eq!(
        report.only_in_prometheus, 1,
        "shop/ghost has usage but no Deployment"
    );

    let recs = store
        .recommendations(&RecommendationFilter {
            workload: Some("cart".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = &recs[0];
    assert_eq!(
        r.evidence.cpu_percentile, 99.0,
        "rightsizer.io/cpu-percentile: \"99\""
    );
    assert_eq!(r.evidence.margin, 0.25, "rightsizer.io/margin: \"0.25\"");
    assert_eq!(
        r.evidence.policy_sources.last().map(String::as_str),
        Some("annotations")
    );
    assert_eq!(
        r.current.cpu_request_millicores,
        Some(200),
        "the API's pod template wins over kube-state-metrics"
    );
    assert_eq!(r.current.cpu_limit_millicores, Some(800));
    // The API matches PDBs by selector: none selects cart's 2 replicas, and that is a fact.
    let codes: Vec<&str> = r.findings.iter().map(|f| f.code.as_str()).collect();
    assert!(
        codes.contains(&"no-pdb") && !codes.contains(&"pdb-unknown"),
        "{codes:?}"
    );
    let p99 = r.evidence.cpu_percentile_millicores.unwrap();
    assert_eq!(
        r.recommended.cpu_request_millicores,
        Some((p99 * 1.25).ceil() as i64)
    );

    // Without the API, the same store gives the defaults and kube-state-metrics' spec.
    analyze_cluster_with(store.as_ref(), "prod", &settings, T0 + 48 * HOUR, None)
        .await
        .unwrap();
    let recs = store
        .recommendations(&RecommendationFilter {
            workload: Some("cart".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            recs[0].evidence.cpu_percentile,
            recs[0].current.cpu_request_millicores
        ),
        (95.0, Some(100))
    );
    assert!(
        !recs[0].findings.iter().any(|f| f.code == "no-pdb"),
        "without the API no PDB is known missing: {:?}",
        recs[0].findings
    );
}
