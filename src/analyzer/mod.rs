//! Turns hourly usage summaries into recommendations. Pure: no I/O, `now` is passed in.
//!
//! The guidance: CPU request = a high percentile (p95) of usage plus a margin, CPU limit =
//! 4 × request; memory request = memory limit = the peak working set plus a margin, raised
//! after OOM kills; floors, ceilings and rounding; no proposal below a minimum change.
//! Every number carries the rule that decided it, a backtest, its impact and findings.

use serde::{Deserialize, Serialize};

use crate::model::{
    Backtest, Confidence, ContainerKey, Evidence, Finding, HpaEffect, Impact, Recommendation,
    Resource, Resources, Severity, SignalHour, Status, UsageHour, WorkloadInfo,
};
use crate::quantity;
use crate::sketch::Sketch;

pub mod backtest;
pub mod findings;
pub mod policy;
pub mod strategy;

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

/// Hours in an average month, for monthly cost.
const HOURS_PER_MONTH: f64 = 730.0;
/// Usage within this share of the CPU limit counts as "at the limit" for the throttling rule.
const AT_LIMIT: f64 = 0.9;
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

/// Merged usage over the window.
struct Window<'a> {
    cpu: Sketch,
    memory: Sketch,
    cpu_hours: Vec<(i64, &'a Sketch)>,
    memory_hours: Vec<(i64, &'a Sketch)>,
    history_hours: u32,
    first_hour: Option<i64>,
    last_hour: Option<i64>,
    oom_kills: u32,
    restarts: u32,
    throttled_ratio: Option<f64>,
}

fn merge_window<'a>(
    usage: &'a [UsageHour],
    signals: &[SignalHour],
    from: i64,
    to: i64,
) -> Window<'a> {
    let mut w = Window {
        cpu: Sketch::new(),
        memory: Sketch::new(),
        cpu_hours: Vec::new(),
        memory_hours: Vec::new(),
        history_hours: 0,
        first_hour: None,
        last_hour: None,
        oom_kills: 0,
        restarts: 0,
        throttled_ratio: None,
    };
    let mut hours: Vec<i64> = Vec::new();
    for u in usage
        .iter()
        .filter(|u| u.hour_start >= from && u.hour_start < to)
    {
        match u.resource {
            Resource::Cpu => {
                w.cpu.merge(&u.sketch);
                w.cpu_hours.push((u.hour_start, &u.sketch));
            }
            Resource::Memory => {
                w.memory.merge(&u.sketch);
                w.memory_hours.push((u.hour_start, &u.sketch));
            }
        }
        if u.sketch.count() > 0 {
            hours.push(u.hour_start);
        }
    }
    hours.sort_unstable();
    hours.dedup();
    w.history_hours = hours.len() as u32;
    w.first_hour = hours.first().copied();
    w.last_hour = hours.last().copied();
    let (mut periods, mut throttled) = (0.0, 0.0);
    for s in signals
        .iter()
        .filter(|s| s.hour_start >= from && s.hour_start < to)
    {
        w.oom_kills += s.oom_kills;
        w.restarts += s.restarts;
        periods += s.cfs_periods;
        throttled += s.cfs_throttled_periods;
    }
    w.throttled_ratio = (periods > 0.0).then(|| (throttled / periods).clamp(0.0, 1.0));
    w
}

/// Trust grows with days of history (full at 7 days) and with how few hours are missing
/// between the first and last hour seen.
fn confidence(w: &Window) -> (Confidence, f64) {
    let (Some(first), Some(last)) = (w.first_hour, w.last_hour) else {
        return (Confidence::Low, 0.0);
    };
    let span_hours = ((last - first) / 3600 + 1) as f64;
    let coverage = f64::from(w.history_hours) / span_hours;
    let history = (f64::from(w.history_hours) / 168.0).min(1.0);
    let score = (history * coverage * 100.0).round() / 100.0;
    let level = if score >= 0.7 {
        Confidence::High
    } else if score >= 0.3 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    (level, score)
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

/// Computes the recommendation for one workload container from the window of
/// `policy.window` that ends with the hour holding `window_end`; `now` is when it runs.
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
    let w = merge_window(input.usage, input.signals, from, to);
    let strategy = strategy::for_policy(policy);
    let (confidence, confidence_score) = confidence(&w);
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
    let mut evidence = Evidence {
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
        evidence: evidence.clone(),
        computed_at: now,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: None,
        impact: None,
        hpa: None,
    };

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
    let (Some(cpu_pct), Some(memory_base)) = (cpu_pct_millicores, memory_base) else {
        missing.push("no memory or CPU usage in the window".into());
        let severity = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or_default()
            .min(Severity::Warning);
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            findings,
            severity,
            ..base
        };
    };
    if !missing.is_empty() {
        let severity = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or_default()
            .min(Severity::Warning);
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            findings,
            severity,
            ..base
        };
    }

    let mut reasons: Vec<String> = Vec::new();
    let factor = 1.0 + policy.margin;

    // CPU request.
    let mut cpu_request = cpu_pct * factor;
    evidence.rules.push(format!(
        "cpu request = {pct_label} {} × {} = {}",
        quantity::cpu_measured(cpu_pct),
        trim_float(factor),
        quantity::cpu_measured(cpu_request)
    ));
    let at_limit = input.current.cpu_limit_millicores.is_some_and(|limit| {
        w.cpu.quantile(0.99).unwrap_or(0.0) * 1000.0 >= AT_LIMIT * limit as f64
    });
    let starved = w
        .throttled_ratio
        .is_some_and(|r| r >= policy.throttling_ratio)
        && at_limit;
    if starved {
        let ratio = w.throttled_ratio.unwrap_or(0.0);
        cpu_request *= 1.0 + policy.throttling_bump;
        let mut rule = format!(
            "CPU-starved (throttled {} of periods, usage at the limit): request raised {} above the censored percentile",
            percent(ratio),
            percent(policy.throttling_bump)
        );
        if let (Some(old_limit), Some(ratio_limit)) =
            (input.current.cpu_limit_millicores, policy.cpu_limit_ratio)
        {
            // Observed usage never exceeded the old limit; the new limit must clear it.
            let needed = old_limit as f64 * (1.0 + policy.throttling_bump) / ratio_limit;
            if cpu_request < needed {
                cpu_request = needed;
                rule.push_str(&format!(
                    " and to {} so the limit clears the old one by {}",
                    quantity::cpu_measured(needed),
                    percent(policy.throttling_bump)
                ));
            }
        }
        evidence.rules.push(rule);
        reasons.push(format!(
            "CPU-starved: throttled {} of periods",
            percent(ratio)
        ));
        findings.push(Finding {
            code: "cpu-starved".into(),
            severity: Severity::Critical,
            message: format!("throttled in {} of CFS periods with usage at the CPU limit: observed usage understates demand", percent(ratio)),
        });
    }
    let mut cpu_request = round_up(cpu_request, policy.cpu_round_millicores);
    if cpu_request < policy.min_cpu_millicores {
        cpu_request = policy.min_cpu_millicores;
        evidence.rules.push(format!(
            "cpu request raised to the floor {}",
            quantity::cpu(cpu_request)
        ));
    }
    if let Some(max) = policy.max_cpu_millicores.filter(|m| cpu_request > *m) {
        cpu_request = max;
        evidence.rules.push(format!(
            "cpu request capped at the ceiling {}",
            quantity::cpu(max)
        ));
        findings.push(Finding {
            code: "cpu-capped".into(),
            severity: Severity::Warning,
            message: format!(
                "the CPU request wanted more than the policy maximum {}",
                quantity::cpu(max)
            ),
        });
    }
    let cpu_limit = match policy.cpu_limit_ratio {
        Some(ratio) => {
            let limit = round_up(cpu_request as f64 * ratio, policy.cpu_round_millicores);
            evidence.rules.push(format!(
                "cpu limit = {} × cpu request = {}",
                trim_float(ratio),
                quantity::cpu(limit)
            ));
            Some(limit)
        }
        None => {
            evidence
                .rules
                .push("no cpu limit (policy cpu_limit_ratio = none)".into());
            findings.push(Finding {
                code: "no-cpu-limit-by-policy".into(),
                severity: Severity::Info,
                message: "policy sets no CPU limit: the guidance is to always set limits".into(),
            });
            None
        }
    };

    // Memory request = limit.
    let basis_label = policy.memory_basis.label();
    let mut memory = memory_base * factor;
    evidence.rules.push(format!(
        "memory request = memory limit = {basis_label} {} × {} = {}",
        quantity::memory_measured(memory_base),
        trim_float(factor),
        quantity::memory_measured(memory)
    ));
    let mut memory_censored = false;
    if w.oom_kills > 0 {
        memory_censored = true;
        let old = input
            .current
            .memory_limit_bytes
            .map(|b| b as f64)
            .unwrap_or(w.memory.max());
        let bumped = (old * policy.oom_bump_factor).max(old + policy.oom_bump_min_bytes as f64);
        if memory < bumped {
            memory = bumped;
        }
        evidence.rules.push(format!(
            "OOMKilled {} times: the peak is censored at the old limit {}, so memory ≥ max(old × {}, old + {}) = {}",
            w.oom_kills,
            quantity::memory_measured(old),
            trim_float(policy.oom_bump_factor),
            quantity::memory(policy.oom_bump_min_bytes),
            quantity::memory_measured(bumped)
        ));
        reasons.push(format!("OOMKilled {} times", w.oom_kills));
        findings.push(Finding {
            code: "oom-killed".into(),
            severity: Severity::Critical,
            message: format!(
                "OOMKilled {} times in the window: memory was raised above the old limit",
                w.oom_kills
            ),
        });
    }
    let mut memory = round_up(memory, policy.memory_round_bytes);
    if memory < policy.min_memory_bytes {
        memory = policy.min_memory_bytes;
        evidence.rules.push(format!(
            "memory raised to the floor {}",
            quantity::memory(memory)
        ));
    }
    if let Some(max) = policy.max_memory_bytes.filter(|m| memory > *m) {
        memory = max;
        evidence.rules.push(format!(
            "memory capped at the ceiling {}",
            quantity::memory(max)
        ));
        findings.push(Finding {
            code: "memory-capped".into(),
            severity: Severity::Critical,
            message: format!(
                "memory wanted more than the policy maximum {}: OOM risk",
                quantity::memory(max)
            ),
        });
    }

    let recommended = Resources {
        cpu_request_millicores: Some(cpu_request),
        cpu_limit_millicores: cpu_limit,
        memory_request_bytes: Some(memory),
        memory_limit_bytes: Some(memory),
    };

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

    // Backtest, impact, HPA.
    let memory_hours: Vec<&Sketch> = w.memory_hours.iter().map(|(_, s)| *s).collect();
    let backtest = Backtest {
        current: backtest::replay(&input.current, &w.cpu, &memory_hours),
        recommended: backtest::replay(&recommended, &w.cpu, &memory_hours),
        memory_censored,
    };
    let hpa = input.workload.and_then(|i| i.hpa.as_ref()).and_then(|h| {
        let target = h.cpu_target_utilization?;
        let old = input.current.cpu_request_millicores? as f64;
        let new = cpu_request as f64;
        let mut expected = average_replicas * old / new;
        if let Some(min) = h.min_replicas {
            expected = expected.max(min as f64);
        }
        if let Some(max) = h.max_replicas {
            expected = expected.min(max as f64);
        }
        Some(HpaEffect {
            hpa: h.name.clone(),
            cpu_target_utilization: target,
            current_replicas: (average_replicas * 100.0).round() / 100.0,
            expected_replicas: (expected * 100.0).round() / 100.0,
            target_utilization_for_same_scale: (target * old / new).round(),
        })
    });
    // An HPA on CPU utilization answers a new CPU request with a new replica count: the
    // impact compares today's average replicas with the expected ones, not a fixed count.
    let replicas = match &hpa {
        Some(effect) => effect.current_replicas,
        None => input
            .workload
            .and_then(|i| i.spec_replicas)
            .map(|r| r as f64)
            .filter(|r| *r > 0.0)
            .unwrap_or(average_replicas),
    };
    let replicas_after = hpa.as_ref().map_or(replicas, |e| e.expected_replicas);
    let cores = |m: Option<i64>| m.unwrap_or(0) as f64 / 1000.0;
    let gib = |b: Option<i64>| b.unwrap_or(0) as f64 / (1024.0 * 1024.0 * 1024.0);
    let cpu_cores_delta = cores(recommended.cpu_request_millicores) * replicas_after
        - cores(input.current.cpu_request_millicores) * replicas;
    let memory_gib_delta = gib(recommended.memory_request_bytes) * replicas_after
        - gib(input.current.memory_request_bytes) * replicas;
    let impact = Impact {
        replicas: (replicas * 100.0).round() / 100.0,
        replicas_after: (replicas_after * 100.0).round() / 100.0,
        cpu_cores_delta,
        memory_gib_delta,
        monthly_cost_delta: (cpu_cores_delta * ctx.pricing.cpu_core_hour
            + memory_gib_delta * ctx.pricing.memory_gib_hour)
            * HOURS_PER_MONTH,
        currency: ctx.pricing.currency.clone(),
    };
    if let Some(effect) = &hpa {
        if (effect.expected_replicas - effect.current_replicas).abs() >= 0.5 {
            reasons.push(format!(
                "HPA {}: ~{} → ~{} replicas at {}% target (or set the target to {}%)",
                effect.hpa,
                trim_float(effect.current_replicas),
                trim_float(effect.expected_replicas),
                effect.cpu_target_utilization,
                effect.target_utilization_for_same_scale
            ));
        }
    }

    // Status, severity, reason.
    let c = &input.current;
    let cpu_worth = worth_changing(
        c.cpu_request_millicores,
        recommended.cpu_request_millicores,
        policy.min_change_relative,
        policy.min_change_cpu_millicores,
    ) || worth_changing(
        c.cpu_limit_millicores,
        recommended.cpu_limit_millicores,
        policy.min_change_relative,
        policy.min_change_cpu_millicores,
    );
    let memory_worth = worth_changing(
        c.memory_request_bytes,
        recommended.memory_request_bytes,
        policy.min_change_relative,
        policy.min_change_memory_bytes,
    ) || worth_changing(
        c.memory_limit_bytes,
        recommended.memory_limit_bytes,
        policy.min_change_relative,
        policy.min_change_memory_bytes,
    );
    let status = if cpu_worth || memory_worth || starved || w.oom_kills > 0 {
        Status::Ok
    } else {
        Status::NoChange
    };
    let under_provisioned = backtest.current.memory_over_limit_hours.unwrap_or(0) > 0
        || c.memory_limit_bytes
            .is_some_and(|l| (l as f64) < memory_base)
        || c.cpu_request_millicores
            .is_some_and(|r| (r as f64) < cpu_pct * 0.5);
    let big_gap = |cur: Option<i64>, rec: i64, abs: i64| {
        cur.is_some_and(|c| {
            (rec - c).abs() >= abs.max(1) * 4 && ((rec - c).abs() as f64) >= 0.5 * c as f64
        })
    };
    let mut severity = findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or_default();
    if under_provisioned {
        severity = Severity::Critical;
    } else if status == Status::Ok
        && (big_gap(
            c.cpu_request_millicores,
            cpu_request,
            policy.min_change_cpu_millicores,
        ) || big_gap(
            c.memory_request_bytes,
            memory,
            policy.min_change_memory_bytes,
        ))
    {
        severity = severity.max(Severity::Warning);
    }
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
