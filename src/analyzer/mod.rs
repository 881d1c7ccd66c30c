//! Turns hourly usage summaries into recommendations. Pure: no I/O, `now` is passed in.
//!
//! The guidance: CPU request = a high percentile (p95) of usage plus a margin, CPU limit =
//! 4 × request; memory request = memory limit = the peak working set plus a margin, raised
//! after OOM kills; floors, ceilings and rounding; no proposal below a minimum change.
//! Every number carries the rule that decided it, a backtest, its impact and findings.

use serde::{Deserialize, Serialize};

use crate::model::{
    Backtest, ContainerKey, Evidence, EvidenceBacktest, Finding, HoldoutFigures, Recommendation,
    Resources, Severity, SignalHour, Status, StrategyScore, UsageHour, WorkloadInfo,
};
use crate::quantity;

pub mod backtest;
pub mod findings;
pub mod fleet_backtest;
mod history;
mod impact;
pub mod policy;
mod sizing;
pub mod strategy;
pub mod tournament;
mod verdict;
mod walkforward;
mod window;

pub use policy::{MemoryBasis, Policy, PolicyOverride, PolicySet, StrategyName, MIB};
pub use tournament::BacktestSettings;

use history::{History, DAY};
use strategy::Fit;

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
    /// Walk-forward and tournament settings.
    pub backtest: &'a BacktestSettings,
    /// The strategy this container's previous recommendation used, for the switching penalty.
    pub previous_strategy: Option<&'a str>,
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
    let history = History::build(input.usage, input.signals, from, to);
    let w = window::merge(&history);
    let (confidence, confidence_score) = window::confidence(&w);
    let contest = compete(&history, input, policy, ctx);
    let fit = contest.fit.as_ref();
    let cpu_pct_millicores = fit.map(|f| f.cpu.value);
    let memory_base = fit.map(|f| f.memory.value);
    let steps_per_hour = (3600 / ctx.step_secs.max(1)) as f64;
    let average_replicas = if w.history_hours > 0 {
        w.cpu.count() as f64 / (f64::from(w.history_hours) * steps_per_hour)
    } else {
        0.0
    };

    let mut findings = findings::about_resources(&input.current);
    findings.extend(findings::about_workload(input.workload, average_replicas));
    if let Some(problem) = &ctx.policy_problem {
        findings.push(Finding {
            code: "invalid-annotation".into(),
            severity: Severity::Warning,
            message: problem.clone(),
        });
    }
    let a = Analysis {
        input,
        policy,
        ctx,
        w: &w,
        contest: &contest,
        average_replicas,
    };
    let base = Recommendation {
        key: input.key.clone(),
        status: Status::InsufficientData,
        current: input.current,
        recommended: Resources::default(),
        confidence,
        confidence_score,
        reason: String::new(),
        strategy: contest.name.into(),
        evidence: a.evidence(window_hours),
        computed_at: now,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: None,
        impact: None,
        hpa: None,
    };

    let missing = missing_data(&w, policy, cpu_pct_millicores.zip(memory_base).is_none());
    let (Some(fit), Some(cpu_pct), Some(memory_base), true) =
        (fit, cpu_pct_millicores, memory_base, missing.is_empty())
    else {
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            severity: verdict::severity_without_numbers(&findings),
            findings,
            ..base
        };
    };
    a.sized(fit, (cpu_pct, memory_base), findings, base)
}

/// One container's window and the strategy contest over it: what the steps after the fit
/// share.
struct Analysis<'a, 'i> {
    input: &'a Input<'i>,
    policy: &'a Policy,
    ctx: &'a Context<'a>,
    w: &'a window::Window,
    contest: &'a Contest,
    average_replicas: f64,
}

impl Analysis<'_, '_> {
    /// The evidence every recommendation carries, numbers or not.
    fn evidence(&self, window_hours: u32) -> Evidence {
        let (w, policy, fit) = (self.w, self.policy, self.contest.fit.as_ref());
        Evidence {
            cpu_percentile: fit.map_or(policy.cpu_percentile, |f| f.percentile),
            cpu_percentile_millicores: fit.map(|f| f.cpu.value),
            memory_peak_bytes: (w.memory.count() > 0).then_some(w.memory.max),
            samples: w.cpu.count(),
            memory_samples: w.memory.count(),
            history_hours: w.history_hours,
            window_hours,
            margin: policy.margin,
            rules: Vec::new(),
            memory_basis: fit
                .map_or_else(|| policy.memory_basis.label(), |f| f.memory.label.clone()),
            oom_kills: w.oom_kills,
            restarts: w.restarts,
            throttled_ratio: w.throttled_ratio,
            cpu_mean_millicores: w.cpu.mean().map(|c| c * 1000.0),
            memory_mean_bytes: w.memory.mean(),
            average_replicas: (self.average_replicas * 100.0).round() / 100.0,
            policy_sources: self.ctx.policy_sources.clone(),
            strategy_scores: self.contest.scores.clone(),
            strategy_choice: Some(self.contest.why.clone()),
            fitted_from: fit.and_then(|f| f.fitted_from),
            ..Evidence::default()
        }
    }

    /// The recommendation with numbers: sized from `fit` (its CPU percentile and memory
    /// basis in `measured`), replayed, its impact, status, severity, reasons and rules.
    fn sized(
        &self,
        fit: &Fit,
        measured: (f64, f64),
        mut findings: Vec<Finding>,
        base: Recommendation,
    ) -> Recommendation {
        let (input, policy, w, contest) = (self.input, self.policy, self.w, self.contest);
        let (cpu_pct, memory_base) = measured;
        let pressure = sizing::Pressure {
            cpu_p99_cores: w.cpu.quantile(0.99).unwrap_or(0.0),
            throttled_ratio: w.throttled_ratio,
            oom_kills: w.oom_kills,
            memory_peak_bytes: w.memory.max,
        };
        let (recommended, mut sized, starved, memory_censored) =
            size(fit, &input.current, &pressure, policy);
        findings.append(&mut sized.findings);
        findings.extend(contest_findings(contest, cpu_pct, &fit.cpu.label));

        let backtest = Backtest {
            current: backtest::replay(&input.current, &w.cpu, &w.memory_peaks),
            recommended: backtest::replay(&recommended, &w.cpu, &w.memory_peaks),
            memory_censored,
        };
        let hpa = impact::hpa_effect(
            input.workload,
            &input.current,
            recommended.cpu_request_millicores.unwrap_or(0),
            self.average_replicas,
        );
        let impact = impact::impact(
            &input.current,
            &recommended,
            input.workload,
            hpa.as_ref(),
            self.average_replicas,
            self.ctx.pricing,
        );

        let c = &input.current;
        let status = verdict::status(c, &recommended, policy, starved, w.oom_kills);
        let verdict_input = verdict::Measured {
            cpu_pct_millicores: cpu_pct,
            memory_base_bytes: memory_base,
            current_backtest: &backtest.current,
        };
        let severity =
            verdict::severity(c, &recommended, &verdict_input, &findings, status, policy);
        let mut reasons = std::mem::take(&mut sized.reasons);
        reasons.extend(hpa.as_ref().and_then(impact::hpa_reason));
        reasons.extend(summary_reasons(
            c,
            &recommended,
            fit,
            measured,
            status,
            &findings,
        ));

        let mut evidence = base.evidence.clone();
        evidence.rules = fit.notes.clone();
        evidence.rules.append(&mut sized.rules);
        self.add_contest(&mut evidence, &backtest);
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
}

impl Analysis<'_, '_> {
    /// The contest's part of the evidence: the chosen strategy and why, and how the numbers
    /// fared in sample and on the held-out days.
    fn add_contest(&self, evidence: &mut Evidence, in_sample: &Backtest) {
        let contest = self.contest;
        evidence
            .rules
            .push(format!("strategy {}: {}", contest.name, contest.why));
        if let Some(h) = &contest.holdout {
            evidence.rules.push(holdout_rule(h));
        }
        evidence.backtest = Some(EvidenceBacktest {
            in_sample: in_sample.clone(),
            holdout: contest.holdout.clone(),
            holdout_current: contest.holdout_current.clone(),
        });
    }
}

/// What the contest and the fit say beyond the sizing: no strategy met the objective, or
/// the container is idle.
fn contest_findings(contest: &Contest, cpu_pct: f64, pct_label: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    if contest.missed {
        let misses = contest
            .scores
            .iter()
            .find(|s| s.chosen)
            .map(|s| s.misses.join("; "))
            .unwrap_or_default();
        findings.push(Finding {
            code: "objective-missed".into(),
            severity: Severity::Warning,
            message: format!(
                "no strategy met the safety objective on the held-out days; {} was the safest: {misses}",
                contest.name
            ),
        });
    }
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
    findings
}

/// The reasons after the sizing's and the HPA's: nothing to do, no limits, and which way
/// CPU and memory go from what was measured.
fn summary_reasons(
    c: &Resources,
    recommended: &Resources,
    fit: &Fit,
    (cpu_pct, memory_base): (f64, f64),
    status: Status,
    findings: &[Finding],
) -> Vec<String> {
    let mut reasons = Vec::new();
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
        "cpu {} ({} {})",
        direction(
            c.cpu_request_millicores,
            Some(recommended.cpu_request_millicores.unwrap_or(0))
        ),
        fit.cpu.label,
        quantity::cpu_measured(cpu_pct)
    ));
    reasons.push(format!(
        "memory {} ({} {})",
        direction(
            c.memory_limit_bytes,
            Some(recommended.memory_limit_bytes.unwrap_or(0))
        ),
        fit.memory.label,
        quantity::memory_measured(memory_base)
    ));
    reasons
}

/// What keeps the window from supporting numbers, in words; empty when it does.
fn missing_data(w: &window::Window, policy: &Policy, no_usage: bool) -> Vec<String> {
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

/// The tournament's outcome for one container.
struct Contest {
    /// The chosen strategy's fit on the whole window.
    fit: Option<Fit>,
    /// The chosen strategy's name.
    name: &'static str,
    /// How it was chosen.
    why: String,
    /// Every candidate's figures.
    scores: Vec<StrategyScore>,
    /// The chosen strategy's walk-forward figures.
    holdout: Option<HoldoutFigures>,
    /// The current values replayed on the same days.
    holdout_current: Option<HoldoutFigures>,
    /// No candidate met the objective.
    missed: bool,
}

/// Requests and limits from a fit under the policy's rules.
fn size(
    fit: &Fit,
    current: &Resources,
    pressure: &sizing::Pressure,
    policy: &Policy,
) -> (Resources, sizing::Sized, bool, bool) {
    let mut sized = sizing::Sized::default();
    let (min_cpu, min_memory) = fit.floors.unzip();
    let (cpu_request, cpu_limit, starved) = sizing::cpu(
        &fit.cpu,
        fit.cpu_limit_floor.as_ref(),
        min_cpu,
        current,
        pressure,
        policy,
        &mut sized,
    );
    let (memory, censored) = sizing::memory(
        &fit.memory,
        min_memory,
        current,
        pressure,
        policy,
        &mut sized,
    );
    let r = Resources {
        cpu_request_millicores: Some(cpu_request),
        cpu_limit_millicores: cpu_limit,
        memory_request_bytes: Some(memory),
        memory_limit_bytes: Some(memory),
    };
    (r, sized, starved, censored)
}

/// The pressure of blocks `[lo, hi)`: the CPU p99 is only read when throttling could make
/// it matter.
fn block_pressure(h: &History<'_>, lo: usize, hi: usize, policy: &Policy) -> sizing::Pressure {
    let blocks = &h.blocks[lo..hi];
    let (periods, throttled) = blocks.iter().fold((0.0, 0.0), |(p, t), b| {
        (p + b.cfs_periods, t + b.cfs_throttled)
    });
    let throttled_ratio = (periods > 0.0).then(|| (throttled / periods).clamp(0.0, 1.0));
    let cpu_p99_cores = match (throttled_ratio, blocks.first()) {
        (Some(r), Some(first)) if r >= policy.throttling_ratio => {
            let mut all = first.cpu.empty_like();
            blocks.iter().for_each(|b| all.add(&b.cpu, 1.0));
            all.quantile(0.99).unwrap_or(0.0)
        }
        _ => 0.0,
    };
    sizing::Pressure {
        cpu_p99_cores,
        throttled_ratio,
        oom_kills: blocks.iter().map(|b| b.oom_kills).sum(),
        memory_peak_bytes: blocks.iter().map(|b| b.memory.max).fold(0.0, f64::max),
    }
}

/// Walk-forward for every candidate, then the tournament (or the pinned strategy).
fn compete(h: &History<'_>, input: &Input<'_>, policy: &Policy, ctx: &Context<'_>) -> Contest {
    let n = h.blocks.len();
    let held: Vec<usize> = (n.saturating_sub(ctx.backtest.days as usize)..n).collect();
    let mut ends = held.clone();
    ends.push(n);
    let fits: Vec<(StrategyName, &'static str, Vec<Option<Fit>>)> = strategy::CANDIDATES
        .iter()
        .map(|name| {
            let s = strategy::by_name(*name, policy);
            (*name, s.name(), s.fits(h, &ends, policy))
        })
        .collect();
    // After a lasting level shift, the days right after it could not have been foreseen
    // by any fit: score the days a change-aware fit could know about.
    let change = fits
        .iter()
        .find(|(name, ..)| *name == StrategyName::TimeAware)
        .and_then(|(.., f)| f.last().cloned().flatten())
        .and_then(|f| f.fitted_from);
    let scored = |b: usize| {
        change.is_none_or(|c| h.blocks[b].start >= c + strategy::REGIME_MIN_DAYS as i64 * DAY)
    };
    let score_all = !held.iter().any(|b| scored(*b));
    let mut current = walkforward::Tally::default();
    let mut scores = Vec::with_capacity(fits.len());
    for (name, label, fits) in &fits {
        let mut tally = walkforward::Tally::default();
        for (i, &b) in held.iter().enumerate() {
            let Some(fit) = &fits[i] else { continue };
            let (hours, points) = h.amount(fit.first_block, b);
            if hours < policy.min_history_hours
                || points < policy.min_samples as f64
                || !(score_all || scored(b))
            {
                continue;
            }
            let pressure = block_pressure(h, fit.first_block, b, policy);
            let (r, ..) = size(fit, &input.current, &pressure, policy);
            tally.add_day(&h.blocks[b], &r);
            if *name == StrategyName::Guidance {
                current.add_day(&h.blocks[b], &input.current);
            }
        }
        let recommended = fits[held.len()]
            .as_ref()
            .map_or_else(Resources::default, |fit| {
                let pressure = block_pressure(h, fit.first_block, n, policy);
                size(fit, &input.current, &pressure, policy).0
            });
        let mut score = StrategyScore {
            strategy: (*label).into(),
            holdout: tally.figures(),
            idle_monthly_cost: tally.idle_monthly_cost(ctx.pricing),
            recommended,
            ..StrategyScore::default()
        };
        tournament::judge(&mut score, fits_percentile(fits, policy), ctx.backtest);
        scores.push(score);
    }
    let (index, why, missed) = choose(&scores, policy, ctx);
    scores[index].chosen = true;
    let name = strategy::CANDIDATES[index];
    let holdout = (scores[index].holdout.days > 0).then(|| scores[index].holdout.clone());
    let holdout_current = (current.days > 0).then(|| current.figures());
    Contest {
        fit: fits[index].2[held.len()].clone(),
        name: name.as_str(),
        why,
        scores,
        holdout,
        holdout_current,
        missed,
    }
}

/// The strategy chosen, why, and whether it missed the objective: the pinned one, guidance
/// when nothing could be backtested, else the tournament's pick.
fn choose(scores: &[StrategyScore], policy: &Policy, ctx: &Context<'_>) -> (usize, String, bool) {
    let evaluated = scores.iter().any(|s| s.holdout.days > 0);
    if policy.strategy != StrategyName::Auto {
        let i = strategy::CANDIDATES
            .iter()
            .position(|n| *n == policy.strategy)
            .unwrap_or(0);
        let source = ctx
            .policy_sources
            .last()
            .cloned()
            .unwrap_or_else(|| "defaults".into());
        (i, format!("pinned by policy ({source})"), false)
    } else if !evaluated {
        (
            0,
            format!(
                "auto: too little history for a walk-forward backtest (a held-out day needs {} hours before it), so guidance",
                policy.min_history_hours
            ),
            false,
        )
    } else {
        let c = tournament::choose(scores, ctx.previous_strategy, ctx.backtest);
        (c.index, c.why, c.missed)
    }
}

/// The CPU percentile a strategy promises (its fits say; the policy's when it fitted none).
fn fits_percentile(fits: &[Option<Fit>], policy: &Policy) -> f64 {
    fits.iter()
        .flatten()
        .next()
        .map_or(policy.cpu_percentile, |f| f.percentile)
}

/// The held-out figures in one sentence.
fn holdout_rule(h: &HoldoutFigures) -> String {
    let share = |v: Option<f64>| v.map_or_else(|| "-".into(), percent);
    format!(
        "held out {} days (each fitted on the history before it): {} memory overrun hours, CPU above the limit on {} and above the request on {} of points, slack CPU {} / memory {}",
        h.days,
        h.memory_overrun_hours,
        share(h.cpu_over_limit_share),
        share(h.cpu_over_request_share),
        share(h.cpu_slack),
        share(h.memory_slack)
    )
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
