//! The runs the CLI and the scheduler share: collect a window, analyze a cluster.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use crate::analyzer::{self, PolicySet, Pricing};
use crate::collector::{self, floor_hour, CollectOptions, CollectReport};
use crate::config::CollectorConfig;
use crate::model::{
    ContainerKey, ContainerObservation, HpaInfo, PdbInfo, Status, WorkloadInfo, WorkloadKey,
};
use crate::prometheus::PromClient;
use crate::store::{Store, StoreError};

/// Hours end this long before they count as complete: the last scrape of an hour
/// may still be on its way.
pub const SETTLE_SECS: i64 = 120;

/// Which hours to collect: `[until − since, until)` in whole hours; without `until`, up to
/// the last complete hour before `now`.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    /// How far back from the end.
    pub since: Duration,
    /// End of the window (unix seconds), or `None` for now.
    pub until: Option<i64>,
    /// The current time (unix seconds).
    pub now: i64,
}

impl WindowSpec {
    /// `[from, to)` as hour-aligned unix seconds.
    pub fn hours(&self) -> (i64, i64) {
        let to = match self.until {
            Some(t) => floor_hour(t),
            None => floor_hour(self.now - SETTLE_SECS),
        };
        (floor_hour(to - self.since.as_secs() as i64), to)
    }
}

/// Collects the hours of `window` for `cluster`.
pub async fn collect_window(
    prom: &PromClient,
    store: &dyn Store,
    cluster: &str,
    config: &CollectorConfig,
    window: WindowSpec,
    progress: collector::Progress,
) -> Result<CollectReport, collector::CollectError> {
    let (from, to) = window.hours();
    let opts = CollectOptions {
        cluster: cluster.to_string(),
        from,
        to,
        step_secs: config.step.as_secs() as i64,
        chunk_hours: config.chunk_hours,
        concurrency: config.concurrency,
        progress,
    };
    collector::collect(prom, store, &opts).await
}

/// What an analysis did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AnalyzeReport {
    /// Workload containers analyzed.
    pub containers: usize,
    /// Of them, with a proposal.
    pub ok: usize,
    /// Of them, already within the minimum change.
    pub no_change: usize,
    /// Of them, without enough history.
    pub insufficient_data: usize,
    /// End (exclusive) of the analyzed window, unix seconds.
    pub window_end: i64,
    /// Workload containers the Kubernetes API knows but Prometheus has no usage for.
    pub only_in_kubernetes: usize,
    /// Workload containers with usage in Prometheus that the Kubernetes API doesn't list.
    pub only_in_prometheus: usize,
}

/// What an analysis needs besides the store.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Policies with their overrides.
    pub policies: PolicySet,
    /// Prices for the impact.
    pub pricing: Pricing,
    /// Collector resolution (samples per pod per hour = 3600 / step).
    pub step_secs: i64,
}

/// Folds what the Kubernetes API says into the workload facts and container specs: its view
/// of current requests/limits, replicas, HPAs, PDBs (matched by selector), labels and
/// `rightsizer.io/*` annotations wins over kube-state-metrics; usage stays Prometheus'.
pub fn merge_kubernetes(
    snapshot: &crate::cluster::ClusterSnapshot,
    cluster: &str,
    workloads: &mut HashMap<WorkloadKey, WorkloadInfo>,
    containers: &mut [ContainerObservation],
    now: i64,
) {
    for c in containers.iter_mut() {
        if let Some(resources) = snapshot.resources_of(&c.key) {
            c.resources = resources;
        }
    }
    for w in &snapshot.workloads {
        let key = WorkloadKey {
            cluster: cluster.into(),
            namespace: w.namespace.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
        };
        let hpa = snapshot.hpa_for(w).map(|h| {
            let mut metrics: Vec<String> = Vec::new();
            if let Some(t) = h.cpu_utilization_target {
                metrics.push(format!("cpu utilization {t}"));
            }
            if let Some(t) = h.memory_utilization_target {
                metrics.push(format!("memory utilization {t}"));
            }
            metrics.extend(h.other_metrics.iter().cloned());
            HpaInfo {
                name: h.name.clone(),
                min_replicas: h.min_replicas.map(i64::from),
                max_replicas: Some(i64::from(h.max_replicas)),
                cpu_target_utilization: h.cpu_utilization_target.map(f64::from),
                metrics,
            }
        });
        let pdb = snapshot.pdbs_for(w).first().map(|p| PdbInfo {
            name: p.name.clone(),
            disruptions_allowed: p.disruptions_allowed.map(i64::from),
            expected_pods: None,
            matched_by: "selector".into(),
        });
        let entry = workloads
            .entry(key.clone())
            .or_insert_with(|| WorkloadInfo {
                key,
                spec_replicas: None,
                hpa: None,
                pdb: None,
                annotations: BTreeMap::new(),
                labels: BTreeMap::new(),
                seen_at: now,
            });
        entry.spec_replicas = w.replicas.map(i64::from).or(entry.spec_replicas);
        entry.hpa = hpa;
        entry.pdb = pdb;
        entry.annotations = w.annotations.clone();
        entry.labels = w.labels.clone();
    }
}

/// Analyzes every workload container of `cluster` and replaces its stored recommendations.
/// The window ends at the newest collected hour, so a collector that lags behind does not
/// shrink it.
#[tracing::instrument(skip_all, fields(cluster))]
pub async fn analyze_cluster(
    store: &dyn Store,
    cluster: &str,
    settings: &AnalysisSettings,
    now: i64,
) -> Result<AnalyzeReport, StoreError> {
    analyze_cluster_with(store, cluster, settings, now, None).await
}

/// [`analyze_cluster`] with the Kubernetes API's view of the cluster, when there is one.
pub async fn analyze_cluster_with(
    store: &dyn Store,
    cluster: &str,
    settings: &AnalysisSettings,
    now: i64,
    kubernetes: Option<&crate::cluster::ClusterSnapshot>,
) -> Result<AnalyzeReport, StoreError> {
    let window_end = store.watermark(cluster).await?.unwrap_or(now).min(now) - 1;
    let to = floor_hour(window_end) + 3600;
    let mut workloads: HashMap<_, _> = store
        .workloads(Some(cluster))
        .await?
        .into_iter()
        .map(|w| (w.key.clone(), w))
        .collect();
    let mut containers = store.containers(Some(cluster)).await?;
    let mut disagreements = (0, 0);
    if let Some(snapshot) = kubernetes {
        let keys: Vec<ContainerKey> = containers.iter().map(|c| c.key.clone()).collect();
        let d = crate::cluster::reconcile(snapshot, cluster, &keys);
        if !d.is_empty() {
            tracing::warn!(
                only_in_api = d.only_in_api.len(),
                only_in_prometheus = d.only_in_prometheus.len(),
                examples = ?d.only_in_api.iter().chain(&d.only_in_prometheus).take(5).map(|k| k.to_string()).collect::<Vec<_>>(),
                "the Kubernetes API and Prometheus disagree on which workload containers exist"
            );
        }
        disagreements = (d.only_in_api.len(), d.only_in_prometheus.len());
        merge_kubernetes(snapshot, cluster, &mut workloads, &mut containers, now);
    }
    let no_annotations = BTreeMap::new();
    let mut recs = Vec::with_capacity(containers.len());
    for c in &containers {
        let workload = workloads.get(&c.key.workload_key());
        let annotations = workload.map(|w| &w.annotations).unwrap_or(&no_annotations);
        let (policy, policy_sources, policy_problem) =
            settings.policies.resolve(&c.key, annotations);
        let from = to - policy.window.as_secs() as i64;
        let usage = store.usage(&c.key, from, to).await?;
        let signals = store.signals(&c.key, from, to).await?;
        let input = analyzer::Input {
            key: &c.key,
            current: c.resources,
            usage: &usage,
            signals: &signals,
            workload,
        };
        let ctx = analyzer::Context {
            policy_sources,
            policy_problem,
            pricing: &settings.pricing,
            step_secs: settings.step_secs,
        };
        recs.push(analyzer::recommend(&input, &policy, &ctx, window_end, now));
    }
    store.replace_recommendations(cluster, &recs).await?;
    let ok = recs.iter().filter(|r| r.status == Status::Ok).count();
    let insufficient_data = recs
        .iter()
        .filter(|r| r.status == Status::InsufficientData)
        .count();
    Ok(AnalyzeReport {
        containers: recs.len(),
        ok,
        no_change: recs.len() - ok - insufficient_data,
        insufficient_data,
        window_end: to,
        only_in_kubernetes: disagreements.0,
        only_in_prometheus: disagreements.1,
    })
}

/// What API-triggered and scheduled runs need.
#[derive(Clone)]
pub struct JobRunner {
    /// Prometheus, when configured (collect needs it; analyze doesn't).
    pub prometheus: Option<PromClient>,
    /// Cluster name.
    pub cluster: String,
    /// Collector settings.
    pub collector: CollectorConfig,
    /// Analysis settings.
    pub analysis: AnalysisSettings,
    /// The Kubernetes API source, when enabled.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
}

/// The Kubernetes API's view of the cluster, or `None` (with a log line saying what is then
/// unknown) when it isn't configured or can't be read: analysis goes on from
/// kube-state-metrics alone.
pub async fn kubernetes_snapshot(
    config: Option<&crate::cluster::ClusterSourceConfig>,
) -> Option<crate::cluster::ClusterSnapshot> {
    let config = config?;
    let result = match crate::cluster::client(config).await {
        Ok(client) => crate::cluster::snapshot_once(client, config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(snapshot) => {
            for d in &snapshot.degraded {
                tracing::warn!(detail = %d, "Kubernetes API source degraded");
            }
            Some(snapshot)
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                unknown = ?crate::cluster::unknown_without_api(),
                "Kubernetes API unavailable: analyzing from kube-state-metrics alone"
            );
            None
        }
    }
}

impl JobRunner {
    /// Collects the policy window up to the last complete hour, reporting progress.
    pub async fn collect(
        &self,
        store: &dyn Store,
        run: &crate::runs::RunHandle,
    ) -> Result<serde_json::Value, String> {
        let prom = self
            .prometheus
            .as_ref()
            .ok_or("no Prometheus URL configured")?;
        let progress = collector::Progress::new(run.clone_progress());
        let window = self.analysis.policies.global().window;
        let now = chrono::Utc::now().timestamp();
        let window = WindowSpec {
            since: window,
            until: None,
            now,
        };
        let report = collect_window(
            prom,
            store,
            &self.cluster,
            &self.collector,
            window,
            progress,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(report).expect("reports serialize"))
    }

    /// Analyzes the cluster.
    pub async fn analyze(
        &self,
        store: &dyn Store,
        run: &crate::runs::RunHandle,
    ) -> Result<serde_json::Value, String> {
        let now = chrono::Utc::now().timestamp();
        let kubernetes = kubernetes_snapshot(self.kubernetes.as_ref()).await;
        let report = analyze_cluster_with(
            store,
            &self.cluster,
            &self.analysis,
            now,
            kubernetes.as_ref(),
        )
        .await
        .map_err(|e| e.to_string())?;
        run.progress(report.containers as u64, report.containers as u64);
        Ok(serde_json::to_value(report).expect("reports serialize"))
    }
}
