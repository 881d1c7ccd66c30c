//! The runs the CLI and the scheduler share: collect a window, analyze a cluster.

use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use crate::analyzer::{self, PolicySet, Pricing};
use crate::collector::{self, floor_hour, CollectOptions, CollectReport};
use crate::config::CollectorConfig;
use crate::model::Status;
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
    let window_end = store.watermark(cluster).await?.unwrap_or(now).min(now) - 1;
    let to = floor_hour(window_end) + 3600;
    let workloads: HashMap<_, _> = store
        .workloads(Some(cluster))
        .await?
        .into_iter()
        .map(|w| (w.key.clone(), w))
        .collect();
    let containers = store.containers(Some(cluster)).await?;
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
        let report = analyze_cluster(store, &self.cluster, &self.analysis, now)
            .await
            .map_err(|e| e.to_string())?;
        run.progress(report.containers as u64, report.containers as u64);
        Ok(serde_json::to_value(report).expect("reports serialize"))
    }
}
