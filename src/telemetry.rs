//! The service's own metrics, in the Prometheus text format at `/metrics`: HTTP requests by
//! route, status and duration; Prometheus query durations and failures; collector lag per
//! cluster and recommendations by severity (both read when scraped).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `s` escaped for a label value of the text format (backslash, double quote, newline).
/// prometheus-client 0.23 writes label values as they are, so a value holding a `"` (a
/// cluster or container name comes from Prometheus labels, which may hold anything) would
/// end the value early and break the whole exposition.
pub fn label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Labels of HTTP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Matched route template, e.g. `/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of Prometheus query metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// `query`, `query_range` or `series`.
    pub endpoint: String,
}

/// Labels of Prometheus query failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `query`, `query_range` or `series`.
    pub endpoint: String,
    /// `http`, `status`, `api` or `decode`.
    pub kind: String,
}

/// Labels per cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// Cluster name.
    pub cluster: String,
}

/// Labels per severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    /// Cluster name.
    pub cluster: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request durations in seconds.
    pub http_duration: Family<HttpLabels, Histogram>,
    /// Prometheus query durations in seconds.
    pub query_duration: Family<QueryLabels, Histogram>,
    /// Prometheus query failures.
    pub query_failures: Family<FailureLabels, Counter>,
    /// Seconds since the end of the newest collected hour, per cluster (set when scraped).
    pub collector_lag: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Recommendations by severity (set when scraped).
    pub recommendations: Family<SeverityLabels, Gauge>,
    /// Collection chunks this process wrote, per cluster.
    pub collector_chunks: Family<ClusterLabels, Counter>,
    /// Scheduled jobs this process ran, and those it left to another replica.
    pub scheduled_jobs: Family<JobLabels, Counter>,
    /// In-place resizes this process sent (rollbacks included), by outcome.
    pub resizes: Family<OutcomeLabels, Counter>,
}

/// Labels of an in-place resize.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `resized`, `in-progress`, `deferred`, `infeasible`, `failed` or `rolled-back`.
    pub outcome: String,
}

/// Labels of a scheduled job outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `collect`, `analyze` or `report`.
    pub job: String,
    /// `ran`, `failed` or `skipped`.
    pub outcome: String,
}

/// How a scheduled job ended on this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// This replica ran it to the end.
    Ran,
    /// This replica ran it and it failed.
    Failed,
    /// Another replica had it.
    Skipped,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Ran => "ran",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
        }
    }
}

fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("rightsizer");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let query_duration =
            Family::<QueryLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let query_failures = Family::<FailureLabels, Counter>::default();
        let collector_lag =
            Family::<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let recommendations = Family::<SeverityLabels, Gauge>::default();
        let collector_chunks = Family::<ClusterLabels, Counter>::default();
        let scheduled_jobs = Family::<JobLabels, Counter>::default();
        let resizes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "resizes",
            "In-place pod resizes this process sent, by outcome",
            resizes.clone(),
        );
        registry.register(
            "collector_chunks",
            "Collection chunks this process wrote",
            collector_chunks.clone(),
        );
        registry.register(
            "scheduled_jobs",
            "Scheduled jobs this replica ran, or skipped because another replica had them",
            scheduled_jobs.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration",
            http_duration.clone(),
        );
        registry.register(
            "prometheus_query_duration_seconds",
            "Prometheus query duration",
            query_duration.clone(),
        );
        registry.register(
            "prometheus_query_failures",
            "Prometheus queries that failed, by kind",
            query_failures.clone(),
        );
        registry.register(
            "collector_lag_seconds",
            "Seconds since the end of the newest collected hour",
            collector_lag.clone(),
        );
        registry.register(
            "recommendations",
            "Stored recommendations by severity",
            recommendations.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            query_duration,
            query_failures,
            collector_lag,
            recommendations,
            collector_chunks,
            scheduled_jobs,
            resizes,
        }
    })
}

impl Metrics {
    /// Records one Prometheus query.
    pub fn observe_query(&self, endpoint: &str, took: Duration, failure: Option<&str>) {
        self.query_duration
            .get_or_create(&QueryLabels {
                endpoint: endpoint.into(),
            })
            .observe(took.as_secs_f64());
        if let Some(kind) = failure {
            self.query_failures
                .get_or_create(&FailureLabels {
                    endpoint: endpoint.into(),
                    kind: kind.into(),
                })
                .inc();
        }
    }

    /// Counts a chunk written for `cluster`.
    pub fn chunk_written(&self, cluster: &str) {
        self.collector_chunks
            .get_or_create(&ClusterLabels {
                cluster: cluster.into(),
            })
            .inc();
    }

    /// Counts a scheduled job that this replica ran (`true`) or left to another.
    /// Counted when the job has ended, so `ran` means its results are stored.
    pub fn scheduled_job(&self, job: &str, outcome: JobOutcome) {
        self.scheduled_jobs
            .get_or_create(&JobLabels {
                job: job.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    /// Counts a resize sent, by the first word of its outcome (`deferred: …` is `deferred`).
    pub fn resize(&self, outcome: &str) {
        let word = outcome.split(':').next().unwrap_or("").trim();
        self.resizes
            .get_or_create(&OutcomeLabels {
                outcome: word.into(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
