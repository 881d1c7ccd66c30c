//! The plain data that flows from the collector through the store to the analyzer and API.

use serde::{Deserialize, Serialize};

use crate::sketch::Sketch;

/// Identity of a workload container: recommendations are per this key, pooled over all pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerKey {
    /// Cluster name, as configured for the Prometheus source.
    pub cluster: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Top-level owner kind: Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, Rollout or Pod.
    pub kind: String,
    /// Top-level owner name.
    pub workload: String,
    /// Container name inside the pod template.
    pub container: String,
}

impl std::fmt::Display for ContainerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.cluster, self.namespace, self.kind, self.workload, self.container
        )
    }
}

/// Requests and limits of one container; `None` where unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU request in millicores.
    pub cpu_request_millicores: Option<i64>,
    /// CPU limit in millicores.
    pub cpu_limit_millicores: Option<i64>,
    /// Memory request in bytes.
    pub memory_request_bytes: Option<i64>,
    /// Memory limit in bytes.
    pub memory_limit_bytes: Option<i64>,
}

/// The resource a usage summary describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU usage in cores (5-minute rate of `container_cpu_usage_seconds_total`).
    Cpu,
    /// Memory working set in bytes (per-step peak of `container_memory_working_set_bytes`).
    Memory,
}

impl Resource {
    /// Stable name used in the database and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// Inverse of [`Resource::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Resource::Cpu),
            "memory" => Some(Resource::Memory),
            _ => None,
        }
    }
}

/// A workload container as last seen by the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerObservation {
    /// Which workload container.
    pub key: ContainerKey,
    /// Requests and limits at `seen_at` (from kube-state-metrics).
    pub resources: Resources,
    /// Unix seconds of the newest sample this observation comes from.
    pub seen_at: i64,
}

/// One hour of one resource's usage for one workload container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageHour {
    /// Which workload container.
    pub key: ContainerKey,
    /// CPU or memory.
    pub resource: Resource,
    /// Unix seconds of the start of the hour.
    pub hour_start: i64,
    /// The mergeable summary of the hour's samples.
    pub sketch: Sketch,
}

/// Everything one collection chunk produced; the store writes it in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    /// Cluster the chunk belongs to.
    pub cluster: String,
    /// Hours (unix seconds, hour-aligned) this chunk covers; recorded as collected.
    pub hours: Vec<i64>,
    /// Workload containers seen in the chunk, with their newest requests/limits.
    pub containers: Vec<ContainerObservation>,
    /// Hourly usage summaries.
    pub usage: Vec<UsageHour>,
}

/// Whether a recommendation proposes numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Enough history: `recommended` holds the proposal.
    Ok,
    /// Too little history: `recommended` repeats nothing and `reason` says what is missing.
    InsufficientData,
}

impl Status {
    /// Stable name used in the database, API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InsufficientData => "insufficient-data",
        }
    }
}

/// How far to trust a recommendation, from hours of history and sample coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Little history or sparse samples.
    Low,
    /// Several days of mostly complete history.
    Medium,
    /// A week or more of nearly complete history.
    High,
}

impl Confidence {
    /// Stable name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// The inputs and rules behind a recommendation, so a reader can check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The CPU percentile the request is derived from (95 means p95).
    pub cpu_percentile: f64,
    /// That percentile of CPU usage, in millicores.
    pub cpu_percentile_millicores: Option<f64>,
    /// Highest memory working set seen in the window, in bytes.
    pub memory_peak_bytes: Option<f64>,
    /// CPU samples (one per pod per step) behind the percentile.
    pub samples: u64,
    /// Memory samples behind the peak.
    pub memory_samples: u64,
    /// Hours in the window that have any usage data.
    pub history_hours: u32,
    /// Length of the analysis window in hours.
    pub window_hours: u32,
    /// Safety margin added on top of the percentile and the peak (0.15 = 15%).
    pub margin: f64,
    /// Each rule that decided a number, in words.
    pub rules: Vec<String>,
}

/// One workload container's proposed requests and limits, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Which workload container.
    #[serde(flatten)]
    pub key: ContainerKey,
    /// `ok` or `insufficient-data`.
    pub status: Status,
    /// Requests and limits in force now.
    pub current: Resources,
    /// Proposed requests and limits (all null when the status is not `ok`).
    pub recommended: Resources,
    /// Trust in the proposal.
    pub confidence: Confidence,
    /// Trust as a number between 0 and 1.
    pub confidence_score: f64,
    /// Short human summary of why.
    pub reason: String,
    /// Name of the strategy that produced it.
    pub strategy: String,
    /// The inputs and rules behind the numbers.
    pub evidence: Evidence,
    /// Unix seconds when the analysis ran.
    pub computed_at: i64,
}
