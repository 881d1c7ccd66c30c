//! The plain data that flows from the collector through the store to the analyzer and API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sketch::Sketch;

/// Identity of a workload container: recommendations are per this key, pooled over all pods.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Which workload container: shared by its hours (a backfill holds hundreds of
    /// thousands of them, and five strings per hour were a third of a chunk's memory).
    pub key: std::sync::Arc<ContainerKey>,
    /// CPU or memory.
    pub resource: Resource,
    /// Unix seconds of the start of the hour.
    pub hour_start: i64,
    /// The mergeable summary of the hour's samples.
    pub sketch: Sketch,
}

/// One hour of restart, OOM and CPU-throttling counts for one workload container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignalHour {
    /// Which workload container.
    pub key: ContainerKey,
    /// Unix seconds of the start of the hour.
    pub hour_start: i64,
    /// Container restarts in the hour, all pods together.
    pub restarts: u32,
    /// Of them (or from `container_oom_events_total`), OOM kills.
    pub oom_kills: u32,
    /// CFS periods elapsed (only containers with a CPU limit have them).
    pub cfs_periods: f64,
    /// CFS periods in which the container was throttled.
    pub cfs_throttled_periods: f64,
}

/// OOM kills of one workload container in one hour, seen before (or besides) the hour's
/// collection: by the Kubernetes API's pod status, or by the collection's look at the
/// current, incomplete hour. The analysis counts the larger of these and the collected hour's
/// [`SignalHour::oom_kills`], so an OOM kill raises memory minutes after it happens, not at the
/// next complete hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKillHour {
    /// Which workload container.
    pub key: ContainerKey,
    /// Unix seconds of the start of the hour.
    pub hour_start: i64,
    /// Kills seen in the hour, all pods together.
    pub kills: u32,
}

/// Identity of a workload (the top-level owner of pods).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct WorkloadKey {
    /// Cluster name.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Kind of the top-level owner.
    pub kind: String,
    /// Name of the top-level owner.
    pub name: String,
}

impl ContainerKey {
    /// The workload this container belongs to.
    pub fn workload_key(&self) -> WorkloadKey {
        WorkloadKey {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            kind: self.kind.clone(),
            name: self.workload.clone(),
        }
    }
}

/// A HorizontalPodAutoscaler targeting a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HpaInfo {
    /// HPA name.
    pub name: String,
    /// `spec.minReplicas`.
    pub min_replicas: Option<i64>,
    /// `spec.maxReplicas`.
    pub max_replicas: Option<i64>,
    /// Target average CPU utilization in percent of the request, when it scales on that.
    pub cpu_target_utilization: Option<f64>,
    /// Every metric it scales on, e.g. `cpu utilization 70`, `memory utilization 80`, `queue_depth average 100`.
    pub metrics: Vec<String>,
}

/// A PodDisruptionBudget covering a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PdbInfo {
    /// PDB name.
    pub name: String,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: Option<i64>,
    /// `status.expectedPods`.
    pub expected_pods: Option<i64>,
    /// How the PDB was tied to the workload: `selector` (Kubernetes API) or `name` (kube-state-metrics has no selectors).
    pub matched_by: String,
}

/// Workload-level facts: replicas, autoscaling, disruption budget, annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkloadInfo {
    /// Which workload.
    pub key: WorkloadKey,
    /// `spec.replicas` where the kind has it.
    pub spec_replicas: Option<i64>,
    /// The HPA scaling it, if any.
    pub hpa: Option<HpaInfo>,
    /// The PDB covering it, if any.
    pub pdb: Option<PdbInfo>,
    /// `rightsizer.io/*` annotations (from the Kubernetes API source).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Workload labels, for label selectors (from the Kubernetes API source).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether the Kubernetes API source described it: PDBs were then matched by selector,
    /// so a missing one is known to be missing. kube-state-metrics alone ties a PDB to a
    /// workload by name only.
    #[serde(default)]
    pub from_kubernetes_api: bool,
    /// Unix seconds of the newest sample this comes from.
    pub seen_at: i64,
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
    /// Hourly restart, OOM and throttling counts.
    pub signals: Vec<SignalHour>,
    /// Workload-level facts seen in the chunk.
    pub workloads: Vec<WorkloadInfo>,
}

impl Chunk {
    /// A chunk of `cluster` covering `hours` with nothing seen in them (yet).
    pub fn empty(cluster: &str, hours: Vec<i64>) -> Self {
        Chunk {
            cluster: cluster.to_string(),
            hours,
            ..Chunk::default()
        }
    }
}

/// Whether a recommendation proposes numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Enough history, and the change is worth making: `recommended` holds the proposal.
    Ok,
    /// Enough history, but every value is within the minimum change of the current one.
    NoChange,
    /// Too little history: `recommended` repeats nothing and `reason` says what is missing.
    InsufficientData,
}

impl Status {
    /// Stable name used in the database, API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoChange => "no-change",
            Status::InsufficientData => "insufficient-data",
        }
    }
}

/// How far to trust a recommendation, from hours of history and sample coverage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// What memory was sized from: `peak` or a percentile such as `p99.9`.
    #[serde(default)]
    pub memory_basis: String,
    /// OOM kills in the window.
    #[serde(default)]
    pub oom_kills: u32,
    /// Container restarts in the window.
    #[serde(default)]
    pub restarts: u32,
    /// Throttled share of CFS periods in the window (containers with a CPU limit).
    #[serde(default)]
    pub throttled_ratio: Option<f64>,
    /// Mean CPU usage per pod in the window, in millicores ("used" in fleet totals).
    #[serde(default)]
    pub cpu_mean_millicores: Option<f64>,
    /// Mean memory working set per pod in the window, in bytes.
    #[serde(default)]
    pub memory_mean_bytes: Option<f64>,
    /// Average number of pods running (from samples per step).
    #[serde(default)]
    pub average_replicas: f64,
    /// The policy levels that applied, most general first.
    #[serde(default)]
    pub policy_sources: Vec<String>,
    /// The backtests: on the window the numbers were fitted on, and walk-forward on days
    /// they were not fitted on.
    #[serde(default)]
    pub backtest: Option<EvidenceBacktest>,
    /// Every candidate strategy's walk-forward figures, and which one was chosen.
    #[serde(default)]
    pub strategy_scores: Vec<StrategyScore>,
    /// How the strategy was chosen: pinned by a policy level, or by the tournament and why.
    #[serde(default)]
    pub strategy_choice: Option<String>,
    /// Unix seconds the fit starts from when a lasting level shift (a regime change) was
    /// detected; the history before it was left out.
    #[serde(default)]
    pub fitted_from: Option<i64>,
}

/// The backtests behind a recommendation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvidenceBacktest {
    /// Current vs recommended values replayed on the window they were fitted on (the same
    /// figures as the recommendation's top-level `backtest`).
    pub in_sample: Backtest,
    /// Walk-forward: for each held-out day, the chosen strategy fitted on the history
    /// before it, replayed on that day.
    pub holdout: Option<HoldoutFigures>,
    /// The requests and limits in force, replayed on the same held-out days.
    #[serde(default)]
    pub holdout_current: Option<HoldoutFigures>,
}

/// How requests and limits fared on days they were not fitted on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldoutFigures {
    /// Held-out days scored.
    pub days: u32,
    /// Hours of those days whose memory peak went above the limit fitted before the day
    /// (an OOM kill would have happened).
    pub memory_overrun_hours: u32,
    /// Highest held-out memory peak over the limit fitted before its day (above 1: OOM).
    pub memory_peak_ratio: Option<f64>,
    /// Share of held-out CPU points above the CPU limit (throttling risk).
    pub cpu_over_limit_share: Option<f64>,
    /// Share of held-out CPU points above the CPU request.
    pub cpu_over_request_share: Option<f64>,
    /// 1 − mean CPU use / CPU request over the held-out points.
    pub cpu_slack: Option<f64>,
    /// 1 − mean memory use / memory request over the held-out points.
    pub memory_slack: Option<f64>,
    /// Mean CPU request over the held-out points, in millicores (weights fleet slack).
    #[serde(default)]
    pub cpu_request_mean_millicores: Option<f64>,
    /// Mean memory request over the held-out points, in bytes (weights fleet slack).
    #[serde(default)]
    pub memory_request_mean_bytes: Option<f64>,
}

/// One candidate of the strategy tournament.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StrategyScore {
    /// Strategy name (`guidance`, `decaying`, `krr-simple`, `vpa`, `time-aware`).
    pub strategy: String,
    /// Its walk-forward figures.
    pub holdout: HoldoutFigures,
    /// Whether it met the safety objective on every figure.
    pub met_objective: bool,
    /// Each objective it missed, in words.
    #[serde(default)]
    pub misses: Vec<String>,
    /// Requested but unused resources over the held-out days, priced per pod-month: what
    /// the tournament minimizes among candidates that meet the objective.
    pub idle_monthly_cost: f64,
    /// What it would recommend from the whole window.
    pub recommended: Resources,
    /// Whether this is the strategy the recommendation uses.
    pub chosen: bool,
}

/// How much a recommendation matters.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    #[default]
    Info,
    /// Worth acting on.
    Warning,
    /// Risk now: OOM kills, CPU starvation, usage above limits.
    Critical,
}

impl Severity {
    /// Stable name used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Something the guidance says about a workload container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// Stable code, e.g. `no-limits`, `guaranteed-cpu`, `oom-killed`.
    pub code: String,
    /// How much it matters.
    pub severity: Severity,
    /// What and why, in words.
    pub message: String,
}

/// What history says would have happened under some requests and limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BacktestFigures {
    /// Share of CPU samples above the CPU request (time spent borrowing idle CPU).
    pub cpu_over_request_share: Option<f64>,
    /// Share of CPU samples above the CPU limit (would have been throttled).
    pub cpu_over_limit_share: Option<f64>,
    /// Hours whose memory peak exceeded the memory limit (would have been OOM-killed).
    pub memory_over_limit_hours: Option<u32>,
}

/// The backtest of the window: current values against recommended ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backtest {
    /// With the requests and limits in force.
    pub current: BacktestFigures,
    /// With the recommended ones.
    pub recommended: BacktestFigures,
    /// True when history was OOM-censored: peaks above the old limit were never observed.
    pub memory_censored: bool,
}

/// What applying the recommendation changes for scheduling and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Impact {
    /// Replicas now (the average for an HPA-scaled workload).
    pub replicas: f64,
    /// Replicas after the change: what an HPA on CPU utilization is expected to run, else the same.
    #[serde(default)]
    pub replicas_after: f64,
    /// Change in requested CPU cores across replicas (negative frees cores).
    pub cpu_cores_delta: f64,
    /// Change in requested memory GiB across replicas.
    pub memory_gib_delta: f64,
    /// Change in monthly cost of the requests, in `currency`.
    pub monthly_cost_delta: f64,
    /// Currency of the prices.
    pub currency: String,
}

/// How a CPU-utilization HPA reacts to a new CPU request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HpaEffect {
    /// HPA name.
    pub hpa: String,
    /// Its CPU utilization target in percent.
    pub cpu_target_utilization: f64,
    /// Average replicas now.
    pub current_replicas: f64,
    /// Replicas expected after the change with the same target (≈ current × old / new request), within min/max.
    pub expected_replicas: f64,
    /// The target that keeps today's scale point with the new request.
    pub target_utilization_for_same_scale: f64,
}

/// One workload container's proposed requests and limits, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// How much it matters.
    #[serde(default)]
    pub severity: Severity,
    /// What the guidance says about this container and its workload.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Current vs recommended values replayed on the window.
    #[serde(default)]
    pub backtest: Option<Backtest>,
    /// Cores, GiB and money the change frees (negative) or needs.
    #[serde(default)]
    pub impact: Option<Impact>,
    /// The replica change an HPA on CPU utilization would make.
    #[serde(default)]
    pub hpa: Option<HpaEffect>,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Ingest new hours from Prometheus.
    Collect,
    /// Recompute recommendations.
    Analyze,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Going.
    Running,
    /// Done.
    Succeeded,
    /// Stopped with an error.
    Failed,
}

impl RunKind {
    /// The name stored and used in run ids.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Collect => "collect",
            RunKind::Analyze => "analyze",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [RunKind::Collect, RunKind::Analyze]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

impl RunStatus {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One in-place resize rightsizer sent to the Kubernetes API, or one rollback, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeRecord {
    /// Store id (0 before it is stored).
    pub id: i64,
    /// Unix seconds it was sent.
    pub at: i64,
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// The owning workload, `Kind/name`.
    pub workload: Option<String>,
    /// Who sent it: `rightsizer apply (user@host)` or `serve (replica)`.
    pub actor: String,
    /// `resize`, or `rollback` after a failed health check.
    pub kind: String,
    /// Requests and limits before.
    pub before: Resources,
    /// Requests and limits asked for.
    pub after: Resources,
    /// What came of it: `resized`, `in-progress: …`, `deferred: …`, `infeasible: …`, `failed: …`.
    pub outcome: String,
    /// Why it was sent.
    pub reason: String,
}
