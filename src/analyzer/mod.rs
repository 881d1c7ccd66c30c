//! Turns hourly usage summaries into recommendations. Pure: no I/O, `now` is passed in.
//!
//! The guidance: CPU request = a high percentile (p95) of usage plus a margin, CPU limit =
//! 4 × request; memory request = memory limit = the peak working set plus a margin, raised
//! after OOM kills; floors, ceilings and rounding; no proposal below a minimum change.
//! Every number carries the rule that decided it, a backtest, its impact and findings.

use serde::{Deserialize, Serialize};

use crate::model::{
    Backtest, ContainerKey, Evidence, Finding, Recommendation, Resources, Severity, SignalHour,
    Status, UsageHour, WorkloadInfo,
};
use crate::quantity;
use crate::sketch::Sketch;

pub mod backtest;
pub mod findings;
mod impact;
pub mod policy;
mod sizing;
pub mod strategy;
mod verdict;
mod window;

pub use policy::{MemoryBasis, Policy, PolicyOverride, PolicySet, MIB};

/// Prices of requested resources, for the cost of a change. Defaults are typical
/// on-demand cloud prices per vCPU-hour and GiB-hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pricing {
    /// Price of one requested core for one hour.
    pub cpu_core_hour: f64,
    /// Price of one requested GiB of memory for one hour.
    pub memory_gib_hour: f64,
    /// Currency of both prices.
    pub currency: String,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            cpu_core_hour: 0.0316,
            memory_gib_hour: 0.0042,
            currency: "USD".into(),
        }
    }
}

/// CPU p95 below this many millicores counts as idle.
const IDLE_MILLICORES: f64 = 5.0;

/// What the analyzer needs for one workload container.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Which workload container.
    pub key: &'a ContainerKey,
    /// Requests and limits in force now.
    pub current: Resources,
    /// Its hourly usage; hours outside the policy window are ignored.
    pub usage: &'a [UsageHour],
    /// Its hourly restarts, OOM kills and throttling.
    pub signals: &'a [SignalHour],
    /// Its workload's replicas, HPA, PDB and annotations, when known.
    pub workload: Option<&'a WorkloadInfo>,
}

/// The surroundings of an analysis.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Policy levels that applied (see [`PolicySet::resolve`]).
    pub policy_sources: Vec<String>,
    /// A policy annotation that could not be used.
    pub policy_problem: Option<String>,
    /// Prices for the impact.
    pub pricing: &'a Pricing,
    /// Collector resolution: samples per pod per hour = 3600 / step.
    pub step_secs: i64,
}

fn round_up(value: f64, multiple: i64) -> i64 {
    let m = multiple.max(1) as f64;
    ((value / m - 1e-9).ceil().max(1.0) * m) as i64
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A share as a percentage with at most one decimal: `24.8%`, `25%`.
fn percent(v: f64) -> String {
    let p = format!("{:.1}", v * 100.0);
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
}

/// Computes the recommendation for one workload container from the window of
/// `policy.window` that ends with the hour holding `window_end`; `now` is when it runs.
///
/// The steps, each in its own module: merge the window (`window`), fit the base numbers
/// (`strategy`), size requests and limits (`sizing`), replay them (`backtest`), work out
/// the impact (`impact`), and judge status and severity (`verdict`).
pub fn recommend(
    input: &Input<'_>,
    policy: &Policy,
    ctx: &Context<'_>,
    window_end: i64,
    now: i64,
) -> Recommendation {
    let window_hours = policy.window_hours();
    let to = window_end - window_end.rem_euclid(3600) + 3600;
    let from = to - i64::from(window_hours) * 3600;
    let w = window::merge(input.usage, input.signals, from, to);
    let strategy = strategy::for_policy(policy);
    let (confidence, confidence_score) = window::confidence(&w);
    let q = policy.cpu_percentile / 100.0;
    let cpu_pct_millicores =
        strategy::quantile(strategy.as_ref(), &w.cpu_hours, q, to).map(|c| c * 1000.0);
    let memory_base =
        strategy::memory_basis(strategy.as_ref(), &w.memory_hours, policy.memory_basis, to);
    let steps_per_hour = (3600 / ctx.step_secs.max(1)) as f64;
    let average_replicas = if w.history_hours > 0 {
        w.cpu.count() as f64 / (f64::from(w.history_hours) * steps_per_hour)
    } else {
        0.0
    };
    let pct_label = format!("p{}", trim_float(policy.cpu_percentile));

    let mut findings = findings::about_resources(&input.current);
    findings.extend(findings::about_workload(input.workload, average_replicas));
    if let Some(problem) = &ctx.policy_problem {
        findings.push(Finding {
            code: "invalid-annotation".into(),
            severity: Severity::Warning,
            message: problem.clone(),
        });
    }
    let evidence = Evidence {
        cpu_percentile: policy.cpu_percentile,
        cpu_percentile_millicores: cpu_pct_millicores,
        memory_peak_bytes: (w.memory.count() > 0).then(|| w.memory.max()),
        samples: w.cpu.count(),
        memory_samples: w.memory.count(),
        history_hours: w.history_hours,
        window_hours,
        margin: policy.margin,
        rules: Vec::new(),
        memory_basis: policy.memory_basis.label(),
        oom_kills: w.oom_kills,
        restarts: w.restarts,
        throttled_ratio: w.throttled_ratio,
        cpu_mean_millicores: w.cpu.mean().map(|c| c * 1000.0),
        memory_mean_bytes: w.memory.mean(),
        average_replicas: (average_replicas * 100.0).round() / 100.0,
        policy_sources: ctx.policy_sources.clone(),
        ..Evidence::default()
    };
    let base = Recommendation {
        key: input.key.clone(),
        status: Status::InsufficientData,
        current: input.current,
        recommended: Resources::default(),
        confidence,
        confidence_score,
        reason: String::new(),
        strategy: strategy.name().into(),
        evidence,
        computed_at: now,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: None,
        impact: None,
        hpa: None,
    };

    let missing = missing_data(&w, policy, cpu_pct_millicores.zip(memory_base).is_none());
    let (Some(cpu_pct), Some(memory_base), true) =
        (cpu_pct_millicores, memory_base, missing.is_empty())
    else {
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            severity: verdict::severity_without_numbers(&findings),
            findings,
            ..base
        };
    };

    let pressure = sizing::Pressure {
        cpu_p99_cores: w.cpu.quantile(0.99).unwrap_or(0.0),
        throttled_ratio: w.throttled_ratio,
        oom_kills: w.oom_kills,
        memory_peak_bytes: w.memory.max(),
    };
    let mut sized = sizing::Sized::default();
    let (cpu_request, cpu_limit, starved) = sizing::cpu(
        cpu_pct,
        &pct_label,
        &input.current,
        &pressure,
        policy,
        &mut sized,
    );
    let basis_label = policy.memory_basis.label();
    let (memory, memory_censored) = sizing::memory(
        memory_base,
        &basis_label,
        &input.current,
        &pressure,
        policy,
        &mut sized,
    );
    let recommended = Resources {
        cpu_request_millicores: Some(cpu_request),
        cpu_limit_millicores: cpu_limit,
        memory_request_bytes: Some(memory),
        memory_limit_bytes: Some(memory),
    };
    findings.append(&mut sized.findings);
    if cpu_pct < IDLE_MILLICORES {
        findings.push(Finding {
            code: "idle".into(),
            severity: Severity::Info,
            message: format!(
                "idle: CPU {pct_label} is {}; the floors apply — is it still needed?",
                quantity::cpu_measured(cpu_pct)
            ),
        });
    }

    let memory_hours: Vec<&Sketch> = w.memory_hours.iter().map(|(_, s)| *s).collect();
    let backtest = Backtest {
        current: backtest::replay(&input.current, &w.cpu, &memory_hours),
        recommended: backtest::replay(&recommended, &w.cpu, &memory_hours),
        memory_censored,
    };
    let hpa = impact::hpa_effect(
        input.workload,
        &input.current,
        cpu_request,
        average_replicas,
    );
    let impact = impact::impact(
        &input.current,
        &recommended,
        input.workload,
        hpa.as_ref(),
        average_replicas,
        ctx.pricing,
    );

    let c = &input.current;
    let status = verdict::status(c, &recommended, policy, starved, w.oom_kills);
    let measured = verdict::Measured {
        cpu_pct_millicores: cpu_pct,
        memory_base_bytes: memory_base,
        current_backtest: &backtest.current,
    };
    let severity = verdict::severity(c, &recommended, &measured, &findings, status, policy);
    let mut reasons = sized.reasons;
    reasons.extend(hpa.as_ref().and_then(impact::hpa_reason));
    if status == Status::NoChange {
        reasons.push("within the minimum change: nothing to do".into());
    }
    if findings
        .iter()
        .any(|f| f.code == "no-limits" || f.code == "best-effort")
    {
        reasons.push("no limits set".into());
    }
    reasons.push(format!(
        "cpu {} ({pct_label} {})",
        direction(c.cpu_request_millicores, Some(cpu_request)),
        quantity::cpu_measured(cpu_pct)
    ));
    reasons.push(format!(
        "memory {} ({basis_label} {})",
        direction(c.memory_limit_bytes, Some(memory)),
        quantity::memory_measured(memory_base)
    ));

    let mut evidence = base.evidence.clone();
    evidence.rules = sized.rules;
    Recommendation {
        status,
        recommended,
        reason: reasons.join("; "),
        evidence,
        severity,
        findings,
        backtest: Some(backtest),
        impact: Some(impact),
        hpa,
        ..base
    }
}

/// What keeps the window from supporting numbers, in words; empty when it does.
fn missing_data(w: &window::Window<'_>, policy: &Policy, no_usage: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if w.history_hours < policy.min_history_hours {
        missing.push(format!(
            "{} hours of history, need {}",
            w.history_hours, policy.min_history_hours
        ));
    }
    if w.cpu.count() < policy.min_samples {
        missing.push(format!(
            "{} CPU samples, need {}",
            w.cpu.count(),
            policy.min_samples
        ));
    }
    if no_usage {
        missing.push("no memory or CPU usage in the window".into());
    }
    missing
}

fn direction(current: Option<i64>, recommended: Option<i64>) -> &'static str {
    match (current, recommended) {
        (None, Some(_)) => "set",
        (Some(c), Some(r)) if r > c => "up",
        (Some(c), Some(r)) if r < c => "down",
        _ => "same",
    }
}

#[cfg(test)]
mod tests;
