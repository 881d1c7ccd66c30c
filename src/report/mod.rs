//! Fleet reports: what the stored recommendations add up to (requested vs used vs recommended,
//! money, risks, guidance findings, change since the previous report), built by a pure
//! [`build`], stored as JSON and rendered as Markdown, self-contained HTML with inline SVG
//! charts, CSV or JSON by [`render`]. [`generate_and_store`] is what the CLI and the scheduler
//! call; [`Schedule`] says when the scheduler does.

use serde::{Deserialize, Serialize};

use crate::model::{
    Confidence, ContainerKey, HoldoutFigures, Recommendation, Resource, Resources, Severity, Status,
};
use crate::store::{
    RecommendationFilter, ReportListing, Store, StoreError, StoredReport, StoredReportInput,
};

mod build;
mod chart;
mod csv;
pub mod holdout;
mod html;
mod markdown;
pub mod notify;
mod schedule;
mod text;
pub mod timeline;

pub use build::build;
pub use schedule::{Cron, Schedule, ScheduleError};

/// Version of the [`Report`] JSON shape; bumped when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;
/// Entries in the top over- and under-provisioned lists.
pub const TOP_N: usize = 10;
/// Share of CPU samples above the current CPU limit that makes a throttling risk.
pub const THROTTLING_SHARE: f64 = 0.05;
/// Example containers kept per finding code.
pub const FINDING_EXAMPLES: usize = 3;
/// Containers of each top list drawn hour by hour in the HTML report: a chart is about 10 KB
/// of stored JSON per resource, and a report is read for its first few changes.
pub const USAGE_TOP: usize = 3;

/// A fleet report: everything every format shows, as stored (JSON) in the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// Shape version ([`REPORT_VERSION`]).
    pub version: u32,
    /// Unix seconds the report was generated at.
    pub generated_at: i64,
    /// Fleet totals and counts.
    pub summary: Summary,
    /// Totals per cluster, by name.
    pub clusters: Vec<GroupTotals>,
    /// Totals per namespace, by cluster then name.
    pub namespaces: Vec<GroupTotals>,
    /// Containers whose recommendation saves the most money, largest first (at most [`TOP_N`]).
    pub over_provisioned: Vec<Line>,
    /// Critical containers and those whose recommendation costs the most, worst first (at most [`TOP_N`]).
    pub under_provisioned: Vec<Line>,
    /// OOM-killed containers, or whose memory peak exceeded the current limit in the backtest.
    pub oom_risks: Vec<Line>,
    /// CPU-starved containers, or above the current CPU limit in ≥ [`THROTTLING_SHARE`] of samples.
    pub throttling_risks: Vec<Line>,
    /// Guidance findings by code, most severe and most frequent first.
    pub findings: Vec<FindingSummary>,
    /// Containers with too little history to recommend anything.
    pub insufficient_data: Vec<Line>,
    /// What changed since the previous report; absent for the first one.
    pub change: Option<Change>,
    /// Every workload container, by key (the CSV rows).
    pub containers: Vec<Line>,
    /// Hour-by-hour usage of the top changes (at most [`USAGE_TOP`] of each of
    /// `over_provisioned` and `under_provisioned`), for the HTML report's charts; empty in
    /// reports stored before, and when built without a store.
    #[serde(default)]
    pub usage: Vec<UsageTimeline>,
}

/// One container's usage over its analysis window, hour by hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageTimeline {
    /// Which workload container.
    #[serde(flatten)]
    pub key: ContainerKey,
    /// Unix seconds the window starts at (an hour start).
    pub from: i64,
    /// Unix seconds the window ends at (the cluster's collection watermark).
    pub to: i64,
    /// CPU per hour, in millicores.
    pub cpu: Vec<timeline::HourPoint>,
    /// Memory working set per hour, in bytes.
    pub memory: Vec<timeline::HourPoint>,
    /// Hours with restarts or OOM kills.
    pub events: Vec<timeline::EventHour>,
}

/// Requested, used and recommended resources across replicas, and money (as `/api/v1/clusters`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportTotals)]
pub struct Totals {
    /// Workloads.
    pub workloads: usize,
    /// Workload containers.
    pub containers: usize,
    /// CPU cores requested now, across replicas.
    pub requested_cores: f64,
    /// CPU cores in use on average, across replicas.
    pub used_cores: f64,
    /// CPU cores recommended, across replicas (the current request where nothing is recommended).
    pub recommended_cores: f64,
    /// Memory GiB requested now, across replicas.
    pub requested_gib: f64,
    /// Memory GiB in use on average, across replicas.
    pub used_gib: f64,
    /// Memory GiB recommended, across replicas.
    pub recommended_gib: f64,
    /// Money per month the recommendations save, net (negative: they cost).
    pub monthly_savings: f64,
    /// Containers of severity critical.
    pub critical: usize,
    /// Containers of severity warning.
    pub warning: usize,
}

impl From<crate::fleet::Totals> for Totals {
    fn from(t: crate::fleet::Totals) -> Self {
        Totals {
            workloads: t.workloads,
            containers: t.containers,
            requested_cores: tidy(t.requested_cores),
            used_cores: tidy(t.used_cores),
            recommended_cores: tidy(t.recommended_cores),
            requested_gib: tidy(t.requested_gib),
            used_gib: tidy(t.used_gib),
            recommended_gib: tidy(t.recommended_gib),
            monthly_savings: tidy(t.monthly_savings),
            critical: t.severity(Severity::Critical),
            warning: t.severity(Severity::Warning),
        }
    }
}

/// The fleet at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportSummary)]
pub struct Summary {
    /// Currency of the money figures (from the recommendations' prices).
    pub currency: String,
    /// Fleet totals.
    #[serde(flatten)]
    pub totals: Totals,
    /// Money per month the cheaper recommendations free, before the costlier ones are subtracted.
    pub monthly_savings_gross: f64,
    /// Money per month the costlier recommendations need.
    pub monthly_cost_increase: f64,
    /// Containers by status and risk.
    pub counts: Counts,
    /// The strategies that produced the recommendations (usually one, e.g. `guidance`).
    #[serde(default)]
    pub strategies: Vec<String>,
    /// Held-out slack and memory overruns of the proposed changes against the requests in
    /// force; absent when no container with a proposal has held-out figures.
    #[serde(default)]
    pub holdout: Option<HoldoutTotals>,
}

/// The proposed changes against the values in force on the held-out days, fleet-wide.
///
/// Only containers with a proposed change (status `ok`) whose recommendation has held-out
/// figures for both the recommended and the current values count. A slack is weighted by the
/// request it is a share of, times replicas: Σ slack × request × replicas / Σ request ×
/// replicas, which is the share of the requested resource left idle. The recommended side
/// uses the final recommended request as the weight, though walk-forward fitted a request per
/// held-out day: close enough for a fleet figure, and it needs nothing the report lacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportHoldoutTotals)]
pub struct HoldoutTotals {
    /// Containers counted.
    pub containers: usize,
    /// Share of the recommended CPU requests left idle on the held-out days.
    pub cpu_slack: Option<f64>,
    /// Share of the current CPU requests left idle on the same days.
    pub cpu_slack_current: Option<f64>,
    /// Share of the recommended memory requests left unused on the held-out days.
    pub memory_slack: Option<f64>,
    /// Share of the current memory requests left unused on the same days.
    pub memory_slack_current: Option<f64>,
    /// Held-out hours above the memory limit, all counted containers together.
    pub memory_overrun_hours: u64,
    /// The same with the current limits.
    pub memory_overrun_hours_current: u64,
}

/// Containers by status and risk (in a [`Change`]: the difference to the previous report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportCounts)]
pub struct Counts {
    /// Status `ok`: a change is proposed.
    pub ok: i64,
    /// Status `no-change`.
    pub no_change: i64,
    /// Status `insufficient-data`.
    pub insufficient_data: i64,
    /// Severity critical.
    pub critical: i64,
    /// Severity warning.
    pub warning: i64,
    /// Severity info.
    pub info: i64,
    /// Entries of `over_provisioned` before the top cut.
    pub over_provisioned: i64,
    /// Entries of `under_provisioned` before the top cut.
    pub under_provisioned: i64,
    /// Entries of `oom_risks`.
    pub oom_risks: i64,
    /// Entries of `throttling_risks`.
    pub throttling_risks: i64,
    /// Findings, all codes together.
    pub findings: i64,
}

/// Totals of one cluster or one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportGroupTotals)]
pub struct GroupTotals {
    /// Cluster.
    pub cluster: String,
    /// Namespace; absent for a cluster's totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// One workload container's key figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportLine)]
pub struct Line {
    /// Which workload container.
    #[serde(flatten)]
    pub key: ContainerKey,
    /// `ok`, `no-change` or `insufficient-data`.
    pub status: Status,
    /// How much it matters.
    pub severity: Severity,
    /// Trust in the recommendation.
    pub confidence: Confidence,
    /// Requests and limits in force.
    pub current: Resources,
    /// Recommended requests and limits (all null unless the status is `ok`).
    pub recommended: Resources,
    /// Average replicas the figures are multiplied by.
    pub replicas: f64,
    /// Mean CPU usage per pod, millicores.
    pub cpu_mean_millicores: Option<f64>,
    /// The CPU percentile used (95 means p95).
    pub cpu_percentile: f64,
    /// That percentile of CPU usage, millicores.
    pub cpu_percentile_millicores: Option<f64>,
    /// Mean memory working set per pod, bytes.
    pub memory_mean_bytes: Option<f64>,
    /// Peak memory working set, bytes.
    pub memory_peak_bytes: Option<f64>,
    /// Hours of history behind the figures.
    pub history_hours: u32,
    /// Change in requested cores across replicas (negative frees cores).
    pub cpu_cores_delta: f64,
    /// Change in requested memory GiB across replicas.
    pub memory_gib_delta: f64,
    /// Money per month the recommendation saves (negative: costs).
    pub monthly_savings: f64,
    /// OOM kills in the window.
    pub oom_kills: u32,
    /// Restarts in the window.
    pub restarts: u32,
    /// Throttled share of CFS periods.
    pub throttled_ratio: Option<f64>,
    /// Backtest of the current values: share of CPU samples above the CPU limit.
    pub cpu_over_limit_share: Option<f64>,
    /// Backtest of the current values: hours whose memory peak exceeded the memory limit.
    pub memory_over_limit_hours: Option<u32>,
    /// Finding codes.
    pub findings: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// The strategy that produced the recommendation (empty in reports stored before).
    #[serde(default)]
    pub strategy: String,
    /// How the strategy was chosen (the recommendation's `evidence.strategy_choice`).
    #[serde(default)]
    pub strategy_choice: Option<String>,
    /// Walk-forward figures of the recommendation on days it was not fitted on, as in its
    /// evidence; absent without enough history.
    #[serde(default)]
    pub holdout: Option<HoldoutFigures>,
    /// The requests and limits in force replayed on the same held-out days.
    #[serde(default)]
    pub holdout_current: Option<HoldoutFigures>,
    /// Unix seconds the fit starts from when a regime change was detected.
    #[serde(default)]
    pub fitted_from: Option<i64>,
}

/// One finding code across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportFinding)]
pub struct FindingSummary {
    /// Finding code, e.g. `no-limits`.
    pub code: String,
    /// The highest severity it has anywhere.
    pub severity: Severity,
    /// Containers with it.
    pub count: usize,
    /// The first few containers with it (at most [`FINDING_EXAMPLES`]).
    pub examples: Vec<FindingExample>,
}

/// A container with a finding, and what the finding says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportFindingExample)]
pub struct FindingExample {
    /// Which workload container.
    #[serde(flatten)]
    pub key: ContainerKey,
    /// The finding's message.
    pub message: String,
}

/// What changed since the previous report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportChange)]
pub struct Change {
    /// Unix seconds the previous report was generated at.
    pub previous_generated_at: i64,
    /// Net monthly savings of the previous report.
    pub previous_monthly_savings: f64,
    /// Net monthly savings now minus then.
    pub monthly_savings_delta: f64,
    /// Requested cores now minus then.
    pub requested_cores_delta: f64,
    /// Recommended cores now minus then.
    pub recommended_cores_delta: f64,
    /// Requested GiB now minus then.
    pub requested_gib_delta: f64,
    /// Recommended GiB now minus then.
    pub recommended_gib_delta: f64,
    /// Workloads now minus then.
    pub workloads_delta: i64,
    /// Containers now minus then.
    pub containers_delta: i64,
    /// Each count now minus then.
    pub counts_delta: Counts,
    /// Containers critical now that were not critical (or not there) before.
    pub new_critical: Vec<ChangeItem>,
    /// Containers critical before that are not critical (or not there) now.
    pub resolved_critical: Vec<ChangeItem>,
}

/// A container whose criticality changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReportChangeItem)]
pub struct ChangeItem {
    /// Which workload container.
    #[serde(flatten)]
    pub key: ContainerKey,
    /// Its severity now; absent when it is no longer in the report.
    pub severity: Option<Severity>,
    /// Finding codes (now, or before when it is gone).
    pub findings: Vec<String>,
    /// Why, in words (now, or before when it is gone).
    pub reason: String,
}

/// The formats a report renders to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Markdown with tables.
    #[value(name = "md", alias = "markdown")]
    #[serde(rename = "md", alias = "markdown")]
    Markdown,
    /// One self-contained HTML file with inline CSS and SVG charts, printable to PDF.
    Html,
    /// One row per workload container.
    Csv,
    /// The report as stored.
    Json,
}

impl Format {
    /// Names accepted by [`Format::parse`], as shown in errors.
    pub const NAMES: [&'static str; 4] = ["json", "md", "html", "csv"];

    /// `json`, `md` (or `markdown`), `html` or `csv`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Format::Json),
            "md" | "markdown" => Some(Format::Markdown),
            "html" => Some(Format::Html),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The name [`Format::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
        Format::Csv => csv::render(report),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(report)
                .expect("a report has only string keys and finite numbers");
            json.push('\n');
            json
        }
    }
}

/// The store's form of `report`.
pub fn to_stored(report: &Report) -> Result<StoredReportInput, StoreError> {
    let encode_error = |e: serde_json::Error| StoreError::Invalid(format!("report: {e}"));
    Ok(StoredReportInput {
        generated_at: report.generated_at,
        summary: serde_json::to_value(&report.summary).map_err(encode_error)?,
        body: serde_json::to_value(report).map_err(encode_error)?,
    })
}

/// The report a stored one holds.
pub fn decode(stored: &StoredReport) -> Result<Report, StoreError> {
    Report::deserialize(&stored.body)
        .map_err(|e| StoreError::Corrupt(format!("report {}: {e}", stored.id)))
}

/// The summary a listed report holds.
pub fn decode_summary(listing: &ReportListing) -> Result<Summary, StoreError> {
    Summary::deserialize(&listing.summary)
        .map_err(|e| StoreError::Corrupt(format!("report {}: summary: {e}", listing.id)))
}

/// Builds a report of every stored recommendation at `now` (unix seconds), compared with the
/// latest stored report, and stores it. Returns its id and the report.
///
/// A latest report that no longer decodes is skipped (logged), not fatal: the new report then
/// has no change section.
#[tracing::instrument(skip_all, fields(%now))]
pub async fn generate_and_store(store: &dyn Store, now: i64) -> Result<(i64, Report), StoreError> {
    let recs = store
        .recommendations(&RecommendationFilter::default())
        .await?;
    let previous = match store.latest_report().await? {
        Some(stored) => match decode(&stored) {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::warn!(error = %e, "the previous report does not decode; reporting without a change section");
                None
            }
        },
        None => None,
    };
    let mut report = build(&recs, previous.as_ref(), now);
    report.usage = usage_of_top_changes(store, &report, &recs).await?;
    let id = store.save_report(&to_stored(&report)?).await?;
    tracing::info!(
        id,
        containers = report.summary.totals.containers,
        monthly_savings = report.summary.totals.monthly_savings,
        "report stored"
    );
    Ok((id, report))
}

/// The stored hourly usage of the first [`USAGE_TOP`] containers of each top list, over the
/// window their recommendation was computed on (ending at their cluster's watermark).
async fn usage_of_top_changes(
    store: &dyn Store,
    report: &Report,
    recs: &[Recommendation],
) -> Result<Vec<UsageTimeline>, StoreError> {
    let top = report
        .over_provisioned
        .iter()
        .take(USAGE_TOP)
        .chain(report.under_provisioned.iter().take(USAGE_TOP));
    let mut out = Vec::new();
    for line in top {
        let Some(rec) = recs.iter().find(|r| r.key == line.key) else {
            continue;
        };
        let Some(to) = store.watermark(&rec.key.cluster).await? else {
            continue;
        };
        let from = to.saturating_sub(i64::from(rec.evidence.window_hours.max(1)) * 3600);
        let rows = store.usage(&rec.key, from, to).await?;
        let signals = store.signals(&rec.key, from, to).await?;
        let tidy_points = |resource, round: fn(f64) -> f64| -> Vec<timeline::HourPoint> {
            timeline::points(&rows, resource)
                .into_iter()
                .map(|p| timeline::HourPoint {
                    hour_start: p.hour_start,
                    p50: round(p.p50),
                    p95: round(p.p95),
                    max: round(p.max),
                })
                .collect()
        };
        let (cpu, memory) = (
            // Hundredths of a millicore: far below what the chart shows, and short in the JSON.
            tidy_points(Resource::Cpu, |v| finite((v * 100.0).round() / 100.0) + 0.0),
            tidy_points(Resource::Memory, whole),
        );
        if cpu.is_empty() && memory.is_empty() {
            continue; // nothing stored in the window: nothing to draw
        }
        out.push(UsageTimeline {
            key: rec.key.clone(),
            from,
            to,
            cpu,
            memory,
            events: signals
                .iter()
                .filter(|s| s.restarts > 0 || s.oom_kills > 0)
                .map(timeline::EventHour::from)
                .collect(),
        });
    }
    Ok(out)
}

/// `v`, or 0 when it is NaN or infinite (JSON has no such numbers; a report must read back).
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// `v` rounded to millionths (and made finite): far below what any figure shows, and a
/// number that short reads back from JSON exactly, so a stored report equals the built one.
fn tidy(v: f64) -> f64 {
    // `+ 0.0` turns -0 into 0, which would otherwise print as `-0.00`.
    finite((v * 1e6).round() / 1e6) + 0.0
}

/// `v` rounded to a whole number (bytes), made finite.
fn whole(v: f64) -> f64 {
    finite(v.round())
}

/// The line of one recommendation.
fn line(r: &Recommendation) -> Line {
    let e = &r.evidence;
    let impact = r.impact.as_ref();
    let current_backtest = r.backtest.as_ref().map(|b| &b.current);
    Line {
        key: r.key.clone(),
        status: r.status,
        severity: r.severity,
        confidence: r.confidence,
        current: r.current,
        recommended: r.recommended,
        replicas: tidy(crate::fleet::replicas(r)),
        cpu_mean_millicores: e.cpu_mean_millicores.map(tidy),
        cpu_percentile: tidy(e.cpu_percentile),
        cpu_percentile_millicores: e.cpu_percentile_millicores.map(tidy),
        memory_mean_bytes: e.memory_mean_bytes.map(whole),
        memory_peak_bytes: e.memory_peak_bytes.map(whole),
        history_hours: e.history_hours,
        cpu_cores_delta: tidy(impact.map_or(0.0, |i| i.cpu_cores_delta)),
        memory_gib_delta: tidy(impact.map_or(0.0, |i| i.memory_gib_delta)),
        monthly_savings: tidy(crate::fleet::savings(r)),
        oom_kills: e.oom_kills,
        restarts: e.restarts,
        throttled_ratio: e.throttled_ratio.map(tidy),
        cpu_over_limit_share: current_backtest.and_then(|b| b.cpu_over_limit_share.map(tidy)),
        memory_over_limit_hours: current_backtest.and_then(|b| b.memory_over_limit_hours),
        findings: r.findings.iter().map(|f| f.code.clone()).collect(),
        reason: r.reason.clone(),
        strategy: r.strategy.clone(),
        strategy_choice: e.strategy_choice.clone(),
        holdout: holdout::recommended(e).map(tidy_holdout),
        holdout_current: holdout::current(e).map(tidy_holdout),
        fitted_from: e.fitted_from,
    }
}

/// `h` with every share and ratio tidied, so a stored report reads back equal.
fn tidy_holdout(h: &HoldoutFigures) -> HoldoutFigures {
    let t = |v: Option<f64>| v.filter(|v| v.is_finite()).map(tidy);
    HoldoutFigures {
        days: h.days,
        memory_overrun_hours: h.memory_overrun_hours,
        memory_peak_ratio: t(h.memory_peak_ratio),
        cpu_over_limit_share: t(h.cpu_over_limit_share),
        cpu_over_request_share: t(h.cpu_over_request_share),
        cpu_slack: t(h.cpu_slack),
        memory_slack: t(h.memory_slack),
        cpu_request_mean_millicores: t(h.cpu_request_mean_millicores),
        memory_request_mean_bytes: t(h.memory_request_mean_bytes),
    }
}
