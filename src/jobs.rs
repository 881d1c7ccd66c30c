//! The runs the CLI and the scheduler share: collect a window, analyze a cluster.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::analyzer::{self, BacktestSettings, PolicySet, Pricing};
use crate::collector::CollectorConfig;
use crate::collector::{self, floor_hour, CollectOptions, CollectReport};
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

/// Collects the hours of `window` for `cluster` (its series selected by `scope`).
pub async fn collect_window(
    prom: &PromClient,
    store: &dyn Store,
    cluster: &str,
    scope: &collector::Scope,
    config: &CollectorConfig,
    window: WindowSpec,
    progress: collector::Progress,
) -> Result<CollectReport, collector::CollectError> {
    let (from, to) = window.hours();
    let opts = CollectOptions {
        scope: scope.clone(),
        step_secs: config.step.as_secs() as i64,
        chunk_hours: config.chunk_hours,
        concurrency: config.concurrency,
        max_series_per_query: config.max_series_per_query,
        progress,
        source: config.source,
        span_hours: config.span_hours as usize,
        ..CollectOptions::new(cluster, from, to)
    };
    let mut report = collector::collect(prom, store, &opts).await?;
    if window.until.is_none() {
        report.recent_oom_kills =
            record_recent_oom_kills(prom, store, cluster, scope, window.now).await;
    }
    Ok(report)
}

/// The clusters a Prometheus holds, told apart by `label`: every value with kube-state-metrics
/// containers in the hour before `now`.
pub async fn discover_clusters(
    prom: &PromClient,
    label: &str,
    now: i64,
) -> Result<Vec<String>, crate::prometheus::PromError> {
    let answer = prom
        .query(
            &format!("count by ({label}) (last_over_time(kube_pod_container_info[1h]))"),
            now,
        )
        .await?;
    let mut clusters: Vec<String> = answer
        .series
        .into_iter()
        .filter_map(|s| s.labels.get(label).cloned())
        .filter(|c| !c.is_empty())
        .collect();
    clusters.sort();
    clusters.dedup();
    Ok(clusters)
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
    /// Walk-forward backtest and strategy tournament settings.
    pub backtest: BacktestSettings,
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
                from_kubernetes_api: true,
                seen_at: now,
            });
        entry.spec_replicas = w.replicas.map(i64::from).or(entry.spec_replicas);
        entry.hpa = hpa;
        entry.pdb = pdb;
        entry.annotations = w.annotations.clone();
        entry.labels = w.labels.clone();
        entry.from_kubernetes_api = true;
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
    let (recs, to, disagreements) =
        compute_recommendations(store, cluster, settings, now, kubernetes).await?;
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

/// The recommendations of every workload container of `cluster`, computed and not stored
/// (`rightsizer backtest` reads them without changing anything), with the window's end and
/// the containers only the Kubernetes API / only Prometheus knows.
pub async fn compute_recommendations(
    store: &dyn Store,
    cluster: &str,
    settings: &AnalysisSettings,
    now: i64,
    kubernetes: Option<&crate::cluster::ClusterSnapshot>,
) -> Result<(Vec<crate::model::Recommendation>, i64, (usize, usize)), StoreError> {
    compute_recommendations_of(store, cluster, settings, now, kubernetes, None).await
}

/// [`compute_recommendations`] of the containers in `only` (all when `None`): the reaction to
/// an OOM kill recomputes the killed container alone.
pub async fn compute_recommendations_of(
    store: &dyn Store,
    cluster: &str,
    settings: &AnalysisSettings,
    now: i64,
    kubernetes: Option<&crate::cluster::ClusterSnapshot>,
    only: Option<&std::collections::BTreeSet<ContainerKey>>,
) -> Result<(Vec<crate::model::Recommendation>, i64, (usize, usize)), StoreError> {
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
        disagreements = reconcile(snapshot, cluster, &containers);
        merge_kubernetes(snapshot, cluster, &mut workloads, &mut containers, now);
    }
    if let Some(only) = only {
        containers.retain(|c| only.contains(&c.key));
    }
    let no_annotations = BTreeMap::new();
    // The strategy each container had last time: the tournament keeps it when it is nearly
    // as good, so recommendations don't flip between runs.
    let previous: HashMap<ContainerKey, String> = store
        .recommendations(&crate::store::RecommendationFilter {
            cluster: Some(cluster.to_string()),
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|r| (r.key, r.strategy))
        .collect();
    let longest = settings.policies.longest_window().0.as_secs() as i64;
    let oom_kills = oom_kills_by_container(store, cluster, to - longest).await?;
    let mut recs = Vec::with_capacity(containers.len());
    for c in &containers {
        let workload = workloads.get(&c.key.workload_key());
        let annotations = workload.map(|w| &w.annotations).unwrap_or(&no_annotations);
        let (policy, policy_sources, policy_problem) =
            settings.policies.resolve(&c.key, annotations);
        let from = to - policy.window.as_secs() as i64;
        let usage = store.usage(&c.key, from, to).await?;
        let mut signals = store.signals(&c.key, from, to).await?;
        if let Some(kills) = oom_kills.get(&c.key) {
            merge_oom_kills(&mut signals, kills, to - 3600);
        }
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
            backtest: &settings.backtest,
            previous_strategy: previous.get(&c.key).map(String::as_str),
        };
        recs.push(analyzer::recommend(&input, &policy, &ctx, window_end, now));
    }
    Ok((recs, to, disagreements))
}

/// Which workload containers only the Kubernetes API, and only Prometheus, knows (logged
/// with examples when they disagree).
fn reconcile(
    snapshot: &crate::cluster::ClusterSnapshot,
    cluster: &str,
    containers: &[ContainerObservation],
) -> (usize, usize) {
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
    (d.only_in_api.len(), d.only_in_prometheus.len())
}

/// The OOM kills recorded for `cluster` from `from` on, by workload container.
async fn oom_kills_by_container(
    store: &dyn Store,
    cluster: &str,
    from: i64,
) -> Result<HashMap<ContainerKey, Vec<crate::model::OomKillHour>>, StoreError> {
    let mut out: HashMap<ContainerKey, Vec<crate::model::OomKillHour>> = HashMap::new();
    for k in store.oom_kills(cluster, from).await? {
        out.entry(k.key.clone()).or_default().push(k);
    }
    Ok(out)
}

/// Adds the OOM kills recorded outside the collection to a container's collected `signals`:
/// per hour the larger count wins (the collection sees the same kills later), and the kills
/// of hours after the window (not collected yet) are added to the window's last hour,
/// `last_hour`, so they raise memory now rather than an hour later.
pub fn merge_oom_kills(
    signals: &mut Vec<crate::model::SignalHour>,
    kills: &[crate::model::OomKillHour],
    last_hour: i64,
) {
    for k in kills {
        let hour = k.hour_start.min(last_hour);
        match signals.iter_mut().find(|s| s.hour_start == hour) {
            Some(s) if k.hour_start > last_hour => {
                s.oom_kills += k.kills;
                s.restarts += k.kills;
            }
            Some(s) => {
                s.oom_kills = s.oom_kills.max(k.kills);
                s.restarts = s.restarts.max(s.oom_kills);
            }
            None => signals.push(crate::model::SignalHour {
                key: k.key.clone(),
                hour_start: hour,
                restarts: k.kills,
                oom_kills: k.kills,
                cfs_periods: 0.0,
                cfs_throttled_periods: 0.0,
            }),
        }
    }
    signals.sort_by_key(|s| s.hour_start);
}

/// Records the OOM kills of `cluster` since its collected history ends (the current hour), so the
/// analysis that follows raises memory now; returns how many container-hours had kills. A
/// failure is logged, not fatal: the hour is collected in full later.
async fn record_recent_oom_kills(
    prom: &PromClient,
    store: &dyn Store,
    cluster: &str,
    scope: &collector::Scope,
    now: i64,
) -> u64 {
    let since = match store.watermark(cluster).await {
        Ok(Some(end)) => end,
        Ok(None) => return 0,
        Err(e) => {
            tracing::warn!(cluster = %cluster, error = %e, "cannot read the collected history's end: no look at the current hour");
            return 0;
        }
    };
    let kills = match collector::recent::oom_kills(prom, cluster, scope, since, now).await {
        Ok(kills) => kills,
        Err(e) => {
            tracing::warn!(cluster = %cluster, error = %e, "cannot look at the current hour for OOM kills");
            return 0;
        }
    };
    if let Err(e) = store.record_oom_kills(&kills).await {
        tracing::warn!(cluster = %cluster, error = %e, "cannot record the current hour's OOM kills");
        return 0;
    }
    if !kills.is_empty() {
        tracing::info!(cluster = %cluster, containers = kills.len(), "OOM kills in the current hour: memory is raised at this analysis");
    }
    kills.len() as u64
}

/// One cluster as the jobs see it.
#[derive(Clone)]
pub struct ClusterJob {
    /// Cluster name.
    pub cluster: String,
    /// Its Prometheus, when configured (collect needs it; analyze doesn't).
    pub prometheus: Option<PromClient>,
    /// The label matcher selecting its series on a shared Prometheus.
    pub scope: collector::Scope,
    /// Its Kubernetes API source, when enabled.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
    /// Long-lived reflectors on that source (in `serve`); without them each analysis lists
    /// the API once.
    pub watch: Option<Arc<crate::cluster::ClusterWatch>>,
    /// Why the reflectors could not start (no kubeconfig, a bad config), for readiness.
    pub kubernetes_problem: Option<String>,
}

impl ClusterJob {
    /// A cluster with all of its Prometheus' series (the single-cluster setup).
    pub fn new(cluster: &str, prometheus: Option<PromClient>) -> Self {
        ClusterJob {
            cluster: cluster.into(),
            prometheus,
            scope: Default::default(),
            kubernetes: None,
            watch: None,
            kubernetes_problem: None,
        }
    }

    /// The Kubernetes API's view of the cluster for an analysis: the reflectors' stores
    /// (waiting a little for a first sync), or one listing, or `None` without a source.
    pub async fn kubernetes_view(&self) -> Option<crate::cluster::ClusterSnapshot> {
        match &self.watch {
            Some(watch) => {
                if !watch.wait_settled(KUBERNETES_SYNC_WAIT).await {
                    tracing::warn!(pending = ?watch.pending(), "the Kubernetes API reflectors have not synced: analyzing with what they hold");
                }
                let snapshot = watch.snapshot();
                for d in &snapshot.degraded {
                    tracing::warn!(detail = %d, "Kubernetes API source degraded");
                }
                Some(snapshot)
            }
            None if self.kubernetes_problem.is_some() => None,
            None => kubernetes_snapshot(self.kubernetes.as_ref()).await,
        }
    }

    /// Readiness detail of the Kubernetes source: `not-configured`, `ok`, `syncing: …`,
    /// `degraded: …` or `unavailable: …`.
    pub fn kubernetes_status(&self) -> String {
        if let Some(problem) = &self.kubernetes_problem {
            return format!("unavailable: {problem}");
        }
        match &self.watch {
            None if self.kubernetes.is_some() => "ok: listed at each analysis".into(),
            None => "not-configured".into(),
            Some(watch) => {
                let degraded = watch.degraded();
                let pending = watch.pending();
                if !degraded.is_empty() {
                    format!("degraded: {}", degraded.join("; "))
                } else if !pending.is_empty() {
                    format!("syncing: {}", pending.join(", "))
                } else {
                    "ok".into()
                }
            }
        }
    }
}

/// How long an analysis waits for reflectors that have not finished their first list.
const KUBERNETES_SYNC_WAIT: Duration = Duration::from_secs(30);

/// What API-triggered and scheduled runs need.
#[derive(Clone)]
pub struct JobRunner {
    /// The configured clusters.
    pub clusters: Vec<ClusterJob>,
    /// With no clusters configured: one Prometheus holding several, told apart by a label;
    /// the clusters are discovered at each run.
    pub discover: Option<(PromClient, String)>,
    /// Collector settings.
    pub collector: CollectorConfig,
    /// Analysis settings.
    pub analysis: AnalysisSettings,
    /// The clusters of the newest run (configured or discovered), for readiness.
    pub known: Arc<std::sync::Mutex<Vec<String>>>,
    /// The source each cluster's newest collection read from (`remote-read`, or
    /// `query-range` with why), for readiness.
    pub sources: Arc<std::sync::Mutex<BTreeMap<String, String>>>,
}

impl JobRunner {
    /// A runner for `clusters`.
    pub fn new(
        clusters: Vec<ClusterJob>,
        collector: CollectorConfig,
        analysis: AnalysisSettings,
    ) -> Self {
        let known = clusters.iter().map(|c| c.cluster.clone()).collect();
        JobRunner {
            clusters,
            discover: None,
            collector,
            analysis,
            known: Arc::new(std::sync::Mutex::new(known)),
            sources: Default::default(),
        }
    }

    /// Starts long-lived reflectors for every cluster with a Kubernetes API source; they stop
    /// when `stop` turns true. A source that cannot start is logged and reported by
    /// readiness; analysis then goes on from kube-state-metrics alone.
    pub async fn watch_kubernetes(&mut self, stop: tokio::sync::watch::Receiver<bool>) {
        for c in &mut self.clusters {
            let Some(cfg) = c.kubernetes.clone() else {
                continue;
            };
            let started = match crate::cluster::client(&cfg).await {
                Ok(client) => {
                    let mut stop = stop.clone();
                    crate::cluster::spawn_reflectors(client, &cfg, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                }
                Err(e) => Err(e),
            };
            match started {
                Ok(watch) => c.watch = Some(Arc::new(watch)),
                Err(e) => {
                    tracing::warn!(
                        cluster = %c.cluster,
                        error = %e,
                        unknown = ?crate::cluster::unknown_without_api(),
                        "Kubernetes API unavailable: analyzing from kube-state-metrics alone"
                    );
                    c.kubernetes_problem = Some(e.to_string());
                }
            }
        }
    }

    /// Readiness detail of every cluster's Kubernetes source (`not-configured` when none has one).
    pub fn kubernetes_status(&self) -> String {
        let details: Vec<(String, String)> = self
            .clusters
            .iter()
            .filter(|c| c.kubernetes.is_some())
            .map(|c| (c.cluster.clone(), c.kubernetes_status()))
            .collect();
        match details.as_slice() {
            [] => "not-configured".into(),
            [(_, only)] => only.clone(),
            many => many
                .iter()
                .map(|(cluster, status)| format!("{cluster}: {status}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Readiness detail of the collector's source: what each cluster's newest collection
    /// read from; `names` prefixes each with its cluster when there are several.
    pub fn source_status(&self, names: bool) -> String {
        let sources = self.sources.lock().expect("never poisoned");
        match sources.len() {
            0 => "not-collected-yet".into(),
            1 => sources.values().next().cloned().unwrap_or_default(),
            _ if !names => {
                let distinct: std::collections::BTreeSet<&String> = sources.values().collect();
                distinct.into_iter().cloned().collect::<Vec<_>>().join("; ")
            }
            _ => sources
                .iter()
                .map(|(cluster, source)| format!("{cluster}: {source}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Whether any cluster has a Prometheus to collect from.
    pub fn can_collect(&self) -> bool {
        self.discover.is_some() || self.clusters.iter().any(|c| c.prometheus.is_some())
    }

    /// The clusters to work on now: the configured ones, or those Prometheus holds.
    pub async fn clusters(&self) -> Result<Vec<ClusterJob>, crate::prometheus::PromError> {
        let clusters = match &self.discover {
            None => self.clusters.clone(),
            Some((prom, label)) => {
                let now = chrono::Utc::now().timestamp();
                discover_clusters(prom, label, now)
                    .await?
                    .into_iter()
                    .map(|name| ClusterJob {
                        scope: collector::Scope {
                            cluster: Some((label.clone(), name.clone())),
                            namespaces: None,
                        },
                        ..ClusterJob::new(&name, Some(prom.clone()))
                    })
                    .collect()
            }
        };
        *self.known.lock().expect("never poisoned") =
            clusters.iter().map(|c| c.cluster.clone()).collect();
        Ok(clusters)
    }
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
    /// Collects the policy window up to the last complete hour for every cluster, reporting
    /// progress. A cluster that fails does not stop the others; the run fails naming it.
    pub async fn collect(
        &self,
        store: &dyn Store,
        run: &crate::runs::RunHandle,
    ) -> Result<serde_json::Value, String> {
        if !self.can_collect() {
            return Err("no Prometheus URL configured".into());
        }
        let clusters = self.clusters().await.map_err(|e| e.to_string())?;
        let window = WindowSpec {
            since: self.analysis.policies.global().window,
            until: None,
            now: chrono::Utc::now().timestamp(),
        };
        let mut reports = serde_json::Map::new();
        let mut failures = Vec::new();
        for c in &clusters {
            let Some(prom) = &c.prometheus else {
                failures.push(format!(
                    "cluster {}: no Prometheus URL configured",
                    c.cluster
                ));
                continue;
            };
            let progress = collector::Progress::new(run.clone_progress());
            match collect_window(
                prom,
                store,
                &c.cluster,
                &c.scope,
                &self.collector,
                window,
                progress,
            )
            .await
            {
                Ok(report) => {
                    let source = match &report.source_note {
                        Some(note) => format!("{} ({note})", report.source),
                        None => report.source.clone(),
                    };
                    self.sources
                        .lock()
                        .expect("never poisoned")
                        .insert(c.cluster.clone(), source);
                    reports.insert(
                        c.cluster.clone(),
                        serde_json::to_value(report).expect("reports serialize"),
                    );
                }
                Err(e) => failures.push(format!("cluster {}: {e}", c.cluster)),
            }
        }
        if failures.is_empty() {
            Ok(serde_json::json!({ "clusters": reports }))
        } else {
            Err(failures.join("; "))
        }
    }

    /// Analyzes every cluster.
    pub async fn analyze(
        &self,
        store: &dyn Store,
        run: &crate::runs::RunHandle,
    ) -> Result<serde_json::Value, String> {
        let clusters = match self.clusters().await {
            Ok(c) => c,
            // Analysis needs only the store: without discovery, analyze what was collected.
            Err(e) if self.discover.is_some() => {
                tracing::warn!(error = %e, "cluster discovery failed: analyzing the clusters of the previous run");
                let known = self.known.lock().expect("never poisoned").clone();
                known.iter().map(|c| ClusterJob::new(c, None)).collect()
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut reports = serde_json::Map::new();
        let mut total = 0;
        for c in &clusters {
            let now = chrono::Utc::now().timestamp();
            let kubernetes = c.kubernetes_view().await;
            let report =
                analyze_cluster_with(store, &c.cluster, &self.analysis, now, kubernetes.as_ref())
                    .await
                    .map_err(|e| format!("cluster {}: {e}", c.cluster))?;
            total += report.containers as u64;
            run.progress(total, total);
            reports.insert(
                c.cluster.clone(),
                serde_json::to_value(report).expect("reports serialize"),
            );
        }
        Ok(serde_json::json!({ "clusters": reports }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OomKillHour, SignalHour};

    fn key() -> ContainerKey {
        ContainerKey {
            cluster: "prod".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            workload: "web".into(),
            container: "app".into(),
        }
    }

    fn signal(hour_start: i64, restarts: u32, oom_kills: u32) -> SignalHour {
        SignalHour {
            key: key(),
            hour_start,
            restarts,
            oom_kills,
            cfs_periods: 10.0,
            cfs_throttled_periods: 1.0,
        }
    }

    fn kill(hour_start: i64, kills: u32) -> OomKillHour {
        OomKillHour {
            key: key(),
            hour_start,
            kills,
        }
    }

    #[test]
    fn recorded_kills_count_once_per_hour_and_later_ones_in_the_last_hour() {
        let h = 3600;
        let mut signals = vec![signal(0, 1, 1), signal(h, 0, 0)];
        merge_oom_kills(
            &mut signals,
            &[kill(0, 1), kill(2 * h, 2), kill(3 * h, 1), kill(5 * h, 1)],
            h,
        );
        // Hour 0: the collection saw the same kill (the larger count, not the sum). Hours
        // after the window's last hour (h) are added to it. Throttling is left as it was.
        let want = vec![
            signal(0, 1, 1),
            SignalHour {
                restarts: 4,
                oom_kills: 4,
                ..signal(h, 0, 0)
            },
        ];
        assert_eq!(signals, want);

        let mut none = Vec::new();
        merge_oom_kills(&mut none, &[kill(2 * h, 1)], h);
        assert_eq!(
            none,
            [SignalHour {
                cfs_periods: 0.0,
                cfs_throttled_periods: 0.0,
                ..signal(h, 1, 1)
            }]
        );
    }
}
