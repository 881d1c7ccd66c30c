//! Whether a recommendation is worth acting on, and how much it matters.

use super::Policy;
use crate::model::{BacktestFigures, Finding, Resources, Severity, Status};

/// Whether `recommended` differs enough from `current` to bother: a value missing now, or
/// a change of at least the relative minimum and the absolute minimum.
fn worth_changing(
    current: Option<i64>,
    recommended: Option<i64>,
    min_relative: f64,
    min_absolute: i64,
) -> bool {
    match (current, recommended) {
        (None, Some(_)) | (Some(_), None) => true,
        (Some(c), Some(r)) => {
            let delta = (r - c).abs();
            delta >= min_absolute && (c == 0 || delta as f64 / c as f64 >= min_relative)
        }
        (None, None) => false,
    }
}

/// `ok` when a value moves by the minimum change, or a starved or OOM-killed container
/// needs a change whatever its size; `no-change` otherwise.
pub(crate) fn status(
    c: &Resources,
    r: &Resources,
    policy: &Policy,
    starved: bool,
    oom_kills: u32,
) -> Status {
    let cpu = |cur, rec| {
        worth_changing(
            cur,
            rec,
            policy.min_change_relative,
            policy.min_change_cpu_millicores,
        )
    };
    let memory = |cur, rec| {
        worth_changing(
            cur,
            rec,
            policy.min_change_relative,
            policy.min_change_memory_bytes,
        )
    };
    let worth = cpu(c.cpu_request_millicores, r.cpu_request_millicores)
        || cpu(c.cpu_limit_millicores, r.cpu_limit_millicores)
        || memory(c.memory_request_bytes, r.memory_request_bytes)
        || memory(c.memory_limit_bytes, r.memory_limit_bytes);
    if worth || starved || oom_kills > 0 {
        Status::Ok
    } else {
        Status::NoChange
    }
}

/// The base numbers a severity is judged against.
pub(crate) struct Measured<'a> {
    /// The CPU percentile, in millicores.
    pub cpu_pct_millicores: f64,
    /// The memory basis, in bytes.
    pub memory_base_bytes: f64,
    /// The current values replayed on the window.
    pub current_backtest: &'a BacktestFigures,
}

/// Critical when today's values are too small for what was measured; a warning for a big
/// gap either way; otherwise the findings' worst.
pub(crate) fn severity(
    c: &Resources,
    r: &Resources,
    m: &Measured<'_>,
    findings: &[Finding],
    status: Status,
    policy: &Policy,
) -> Severity {
    let under_provisioned = m.current_backtest.memory_over_limit_hours.unwrap_or(0) > 0
        || c.memory_limit_bytes
            .is_some_and(|l| (l as f64) < m.memory_base_bytes)
        || c.cpu_request_millicores
            .is_some_and(|req| (req as f64) < m.cpu_pct_millicores * 0.5);
    let big_gap = |cur: Option<i64>, rec: Option<i64>, abs: i64| {
        let rec = rec.unwrap_or(0);
        cur.is_some_and(|c| {
            (rec - c).abs() >= abs.max(1) * 4 && ((rec - c).abs() as f64) >= 0.5 * c as f64
        })
    };
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or_default();
    if under_provisioned {
        Severity::Critical
    } else if status == Status::Ok
        && (big_gap(
            c.cpu_request_millicores,
            r.cpu_request_millicores,
            policy.min_change_cpu_millicores,
        ) || big_gap(
            c.memory_request_bytes,
            r.memory_request_bytes,
            policy.min_change_memory_bytes,
        ))
    {
        worst.max(Severity::Warning)
    } else {
        worst
    }
}

/// Without numbers, findings still count, but never above a warning.
pub(crate) fn severity_without_numbers(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or_default()
        .min(Severity::Warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::MIB;

    fn res(cpu: i64, mem: i64) -> Resources {
        Resources {
            cpu_request_millicores: Some(cpu),
            cpu_limit_millicores: Some(cpu * 4),
            memory_request_bytes: Some(mem),
            memory_limit_bytes: Some(mem),
        }
    }

    #[test]
    fn small_changes_are_no_change_unless_a_rule_fired() {
        let p = Policy::default();
        let now = res(100, 256 * MIB);
        assert_eq!(
            status(&now, &res(105, 260 * MIB), &p, false, 0),
            Status::NoChange
        );
        assert_eq!(status(&now, &res(105, 260 * MIB), &p, true, 0), Status::Ok);
        assert_eq!(status(&now, &res(105, 260 * MIB), &p, false, 1), Status::Ok);
        assert_eq!(status(&now, &res(200, 256 * MIB), &p, false, 0), Status::Ok);
        assert_eq!(
            status(&Resources::default(), &now, &p, false, 0),
            Status::Ok
        );
    }

    #[test]
    fn too_small_today_is_critical_and_a_big_gap_a_warning() {
        let p = Policy::default();
        let figures = BacktestFigures::default();
        let m = |cpu: f64, mem: f64| Measured {
            cpu_pct_millicores: cpu,
            memory_base_bytes: mem,
            current_backtest: &figures,
        };
        let now = res(100, 256 * MIB);
        let mem = 100.0 * MIB as f64;
        assert_eq!(
            severity(
                &now,
                &res(500, 256 * MIB),
                &m(300.0, mem),
                &[],
                Status::Ok,
                &p
            ),
            Severity::Critical
        );
        assert_eq!(
            severity(
                &res(400, 256 * MIB),
                &res(100, 256 * MIB),
                &m(80.0, mem),
                &[],
                Status::Ok,
                &p
            ),
            Severity::Warning
        );
        assert_eq!(
            severity(
                &now,
                &res(90, 256 * MIB),
                &m(80.0, mem),
                &[],
                Status::Ok,
                &p
            ),
            Severity::Info
        );
        let over = Finding {
            code: "x".into(),
            severity: Severity::Critical,
            message: String::new(),
        };
        assert_eq!(severity_without_numbers(&[over]), Severity::Warning);
    }
}
