//! The report as CSV: one row per workload container with its key figures, raw numbers in
//! the units the column names say (for spreadsheets, not people).

use super::{Line, Report};

/// Column names, in order.
/// New columns go at the end: spreadsheets and scripts address columns by position.
pub const COLUMNS: [&str; 41] = [
    "cluster",
    "namespace",
    "kind",
    "workload",
    "container",
    "status",
    "severity",
    "confidence",
    "replicas",
    "current_cpu_request_millicores",
    "recommended_cpu_request_millicores",
    "current_cpu_limit_millicores",
    "recommended_cpu_limit_millicores",
    "current_memory_request_bytes",
    "recommended_memory_request_bytes",
    "current_memory_limit_bytes",
    "recommended_memory_limit_bytes",
    "cpu_mean_millicores",
    "cpu_percentile",
    "cpu_percentile_millicores",
    "memory_mean_bytes",
    "memory_peak_bytes",
    "history_hours",
    "cpu_cores_delta",
    "memory_gib_delta",
    "monthly_savings",
    "currency",
    "oom_kills",
    "restarts",
    "throttled_ratio",
    "cpu_over_limit_share",
    "memory_over_limit_hours",
    "findings",
    "reason",
    "holdout_days",
    "holdout_memory_overrun_hours",
    "holdout_cpu_over_limit_share",
    "holdout_cpu_over_request_share",
    "holdout_cpu_slack",
    "holdout_memory_slack",
    "strategy",
];

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn decimals(v: Option<f64>, places: usize) -> String {
    v.map(|v| format!("{v:.places$}")).unwrap_or_default()
}

fn row(l: &Line, currency: &str) -> [String; COLUMNS.len()] {
    let (c, n) = (&l.current, &l.recommended);
    let h = l.holdout.as_ref();
    [
        l.key.cluster.clone(),
        l.key.namespace.clone(),
        l.key.kind.clone(),
        l.key.workload.clone(),
        l.key.container.clone(),
        l.status.as_str().into(),
        l.severity.as_str().into(),
        l.confidence.as_str().into(),
        format!("{:.2}", l.replicas),
        opt(c.cpu_request_millicores),
        opt(n.cpu_request_millicores),
        opt(c.cpu_limit_millicores),
        opt(n.cpu_limit_millicores),
        opt(c.memory_request_bytes),
        opt(n.memory_request_bytes),
        opt(c.memory_limit_bytes),
        opt(n.memory_limit_bytes),
        decimals(l.cpu_mean_millicores, 1),
        format!("{}", l.cpu_percentile),
        decimals(l.cpu_percentile_millicores, 1),
        decimals(l.memory_mean_bytes, 0),
        decimals(l.memory_peak_bytes, 0),
        l.history_hours.to_string(),
        format!("{:.3}", l.cpu_cores_delta),
        format!("{:.3}", l.memory_gib_delta),
        format!("{:.2}", l.monthly_savings),
        currency.to_string(),
        l.oom_kills.to_string(),
        l.restarts.to_string(),
        decimals(l.throttled_ratio, 4),
        decimals(l.cpu_over_limit_share, 4),
        opt(l.memory_over_limit_hours),
        l.findings.join(";"),
        l.reason.clone(),
        opt(h.map(|h| h.days)),
        opt(h.map(|h| h.memory_overrun_hours)),
        decimals(h.and_then(|h| h.cpu_over_limit_share), 4),
        decimals(h.and_then(|h| h.cpu_over_request_share), 4),
        decimals(h.and_then(|h| h.cpu_slack), 4),
        decimals(h.and_then(|h| h.memory_slack), 4),
        l.strategy.clone(),
    ]
}

/// Renders the report's containers as CSV with a header row.
pub fn render(report: &Report) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let failed = "writing CSV to memory cannot fail";
    w.write_record(COLUMNS).expect(failed);
    for l in &report.containers {
        w.write_record(row(l, &report.summary.currency))
            .expect(failed);
    }
    let bytes = w.into_inner().expect(failed);
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}
