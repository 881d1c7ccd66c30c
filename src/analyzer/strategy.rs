//! Strategies turn the history before a point into the base numbers: a CPU basis and a
//! memory basis, each with the margin the strategy adds, plus anything the strategy wants
//! the limits to cover. They are asked for fits at several prefix ends at once (the
//! walk-forward's held-out days and the window's end), so each walks the blocks once.
//!
//! `krr-simple` and `vpa` are emulations of Robusta KRR's `simple` strategy and the
//! Kubernetes VPA recommender, written from their public documentation and code; they
//! size requests as those tools do, and the same policy rules (limits, OOM bump,
//! throttling, floors) then apply to every strategy alike.

use std::time::Duration;

#[cfg(test)]
use super::history::{weekday, DAY};
use super::history::{Hist, History, DECAY_HALF_LIFE_SECS};
use super::policy::{MemoryBasis, Policy, StrategyName};
use super::trim_float;

/// A base number with where it came from and the margin to add.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Basis {
    /// Millicores for CPU, bytes for memory.
    pub value: f64,
    /// How it was read, e.g. `p95` or `peak since 2024-03-18 09:00 UTC`.
    pub label: String,
    /// Safety margin to add (0.15 = 15%).
    pub margin: f64,
}

/// What a strategy fitted on blocks `[first_block, end)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fit {
    /// CPU request basis, in millicores.
    pub cpu: Basis,
    /// Memory request (= limit) basis, in bytes.
    pub memory: Basis,
    /// The CPU percentile behind `cpu` (95 for p95).
    pub percentile: f64,
    /// A CPU limit the strategy wants at least (millicores), with why.
    pub cpu_limit_floor: Option<(f64, String)>,
    /// The strategy's own minimum request (millicores, bytes), as the VPA has.
    pub floors: Option<(i64, i64)>,
    /// First block of the fit: later than 0 after a regime change.
    pub first_block: usize,
    /// Unix seconds the fit starts at when history before a regime change was left out.
    pub fitted_from: Option<i64>,
    /// Rules for the evidence beyond the sizing steps.
    pub notes: Vec<String>,
}

impl Fit {
    /// A fit on the whole history with nothing beyond the two bases.
    fn plain(cpu: Basis, memory: Basis, percentile: f64) -> Self {
        Fit {
            cpu,
            memory,
            percentile,
            cpu_limit_floor: None,
            floors: None,
            first_block: 0,
            fitted_from: None,
            notes: Vec::new(),
        }
    }
}

/// A way of reading history into base numbers.
pub(crate) trait Strategy: Send + Sync {
    /// Name reported with every recommendation.
    fn name(&self) -> &'static str;
    /// The fit on blocks before each of `ends` (ascending block counts); `None` where
    /// there is no usage to fit on.
    fn fits(&self, h: &History<'_>, ends: &[usize], policy: &Policy) -> Vec<Option<Fit>>;
}

/// Every candidate of the tournament, in a fixed order.
pub(crate) const CANDIDATES: [StrategyName; 5] = [
    StrategyName::Guidance,
    StrategyName::Decaying,
    StrategyName::KrrSimple,
    StrategyName::Vpa,
    StrategyName::TimeAware,
];

/// The strategy a name stands for (`auto` is not one: the tournament picks among these).
pub(crate) fn by_name(name: StrategyName, policy: &Policy) -> Box<dyn Strategy> {
    match name {
        StrategyName::Guidance | StrategyName::Auto => Box::new(Guidance),
        StrategyName::Decaying => Box::new(Decaying {
            half_life: policy.half_life,
        }),
        StrategyName::KrrSimple => Box::new(KrrSimple),
        StrategyName::Vpa => Box::new(Vpa),
        StrategyName::TimeAware => Box::new(TimeAware),
    }
}

fn peak(h: &Hist) -> Option<f64> {
    (h.total() > 0.0).then_some(h.max)
}

fn memory_basis(policy: &Policy, hist: &Hist, label_suffix: &str) -> Option<Basis> {
    let value = match policy.memory_basis {
        MemoryBasis::Max => peak(hist)?,
        MemoryBasis::Percentile(p) => hist.quantile(p / 100.0)?,
    };
    Some(Basis {
        value,
        label: format!("{}{label_suffix}", policy.memory_basis.label()),
        margin: policy.margin,
    })
}

fn pct_label(p: f64) -> String {
    format!("p{}", trim_float(p))
}

/// Walks the blocks once, handing each prefix end's accumulated state to `fit`.
fn at_ends<S>(
    h: &History<'_>,
    ends: &[usize],
    mut state: S,
    mut step: impl FnMut(&mut S, usize),
    mut fit: impl FnMut(&S, usize) -> Option<Fit>,
) -> Vec<Option<Fit>> {
    let mut next = 0;
    let mut out = Vec::with_capacity(ends.len());
    for &end in ends {
        while next < end.min(h.blocks.len()) {
            step(&mut state, next);
            next += 1;
        }
        out.push(fit(&state, end));
    }
    out
}

/// Every hour counts the same: the default of the guidance.
pub(crate) struct Guidance;

impl Strategy for Guidance {
    fn name(&self) -> &'static str {
        "guidance"
    }

    fn fits(&self, h: &History<'_>, ends: &[usize], policy: &Policy) -> Vec<Option<Fit>> {
        let Some(first) = h.blocks.first() else {
            return ends.iter().map(|_| None).collect();
        };
        let q = policy.cpu_percentile / 100.0;
        at_ends(
            h,
            ends,
            (first.cpu.empty_like(), first.memory.empty_like()),
            |(cpu, memory), b| {
                cpu.add(&h.blocks[b].cpu, 1.0);
                memory.add(&h.blocks[b].memory, 1.0);
            },
            |(cpu, memory), _| {
                Some(Fit::plain(
                    Basis {
                        value: cpu.quantile(q)? * 1000.0,
                        label: pct_label(policy.cpu_percentile),
                        margin: policy.margin,
                    },
                    memory_basis(policy, memory, "")?,
                    policy.cpu_percentile,
                ))
            },
        )
    }
}

/// Ages `acc` by block `b`'s length and adds the block's hours decayed to its end: an hour
/// counts `0.5^(age / half_life)` where age runs from the hour's end. The blocks carry that
/// sum for a 24-hour half-life already.
fn add_decayed(acc: &mut Hist, h: &History<'_>, b: usize, half_life: f64) {
    let block = &h.blocks[b];
    acc.scale(0.5f64.powf((block.end - block.start) as f64 / half_life));
    if half_life == DECAY_HALF_LIFE_SECS {
        acc.add(&block.cpu_decayed, 1.0);
        return;
    }
    for (hour, sketch) in &block.cpu_hours {
        let age = (block.end - (hour + 3600)).max(0) as f64;
        acc.add_sketch(sketch, 0.5f64.powf(age / half_life));
    }
}

/// Recent hours weigh more; a weight halves every `half_life`, as in the VPA recommender's
/// decaying histogram, so a workload that changed last week is sized for what it is now.
/// Memory peaks are never decayed: memory is not compressible, an old peak can come back.
pub(crate) struct Decaying {
    /// Age at which an hour counts half.
    pub half_life: Duration,
}

impl Strategy for Decaying {
    fn name(&self) -> &'static str {
        "decaying"
    }

    fn fits(&self, h: &History<'_>, ends: &[usize], policy: &Policy) -> Vec<Option<Fit>> {
        let Some(first) = h.blocks.first() else {
            return ends.iter().map(|_| None).collect();
        };
        let q = policy.cpu_percentile / 100.0;
        let half_life = self.half_life.as_secs_f64().max(1.0);
        // Decayed memory for a percentile basis; blocks are decayed as a whole (the
        // weight of a block's hours differs by less than a day's decay).
        at_ends(
            h,
            ends,
            (first.cpu.empty_like(), first.memory.empty_like()),
            |(cpu, memory), b| {
                add_decayed(cpu, h, b, half_life);
                let block = &h.blocks[b];
                memory.scale(0.5f64.powf((block.end - block.start) as f64 / half_life));
                memory.add(&block.memory, 1.0);
            },
            |(cpu, memory), _| {
                Some(Fit::plain(
                    Basis {
                        value: cpu.quantile(q)? * 1000.0,
                        label: format!("decayed {}", pct_label(policy.cpu_percentile)),
                        margin: policy.margin,
                    },
                    memory_basis(policy, memory, "")?,
                    policy.cpu_percentile,
                ))
            },
        )
    }
}

/// Emulation of KRR's `simple` strategy (robusta-dev/krr, `strategies/simple.py`): CPU
/// request = p95 of CPU usage with no margin, memory = the peak + 15%. KRR takes the
/// largest per-pod p95; the store keeps pods pooled, so this is the pooled p95.
pub(crate) struct KrrSimple;

/// KRR `simple`'s defaults: `cpu_percentile` 95, `memory_buffer_percentage` 15.
const KRR_CPU_PERCENTILE: f64 = 95.0;
const KRR_MEMORY_BUFFER: f64 = 0.15;

impl Strategy for KrrSimple {
    fn name(&self) -> &'static str {
        "krr-simple"
    }

    fn fits(&self, h: &History<'_>, ends: &[usize], _policy: &Policy) -> Vec<Option<Fit>> {
        let Some(first) = h.blocks.first() else {
            return ends.iter().map(|_| None).collect();
        };
        at_ends(
            h,
            ends,
            (first.cpu.empty_like(), 0.0f64, false),
            |(cpu, peak, seen), b| {
                cpu.add(&h.blocks[b].cpu, 1.0);
                if h.blocks[b].memory.total() > 0.0 {
                    *peak = peak.max(h.blocks[b].memory.max);
                    *seen = true;
                }
            },
            |(cpu, peak, seen), _| {
                Some(Fit::plain(
                    Basis {
                        value: cpu.quantile(KRR_CPU_PERCENTILE / 100.0)? * 1000.0,
                        label: "p95 (KRR simple)".into(),
                        margin: 0.0,
                    },
                    Basis {
                        value: seen.then_some(*peak)?,
                        label: "peak (KRR simple)".into(),
                        margin: KRR_MEMORY_BUFFER,
                    },
                    KRR_CPU_PERCENTILE,
                ))
            },
        )
    }
}

/// Emulation of the VPA recommender's target (kubernetes/autoscaler,
/// `vertical-pod-autoscaler/pkg/recommender`): CPU = p90 of a decaying histogram (24 h
/// half-life, buckets growing 5% from 10m), memory = p90 of daily peaks in a decaying
/// histogram (buckets growing 5% from 10 MB), each + 15%, at least 25m and 250Mi. The VPA
/// weighs CPU samples by the request in force; here every sample weighs the same.
pub(crate) struct Vpa;

const VPA_PERCENTILE: f64 = 90.0;
const VPA_MARGIN: f64 = 0.15;
const VPA_HALF_LIFE_SECS: f64 = 24.0 * 3600.0;
const VPA_MIN_CPU_MILLICORES: i64 = 25;
const VPA_MIN_MEMORY_BYTES: i64 = 250 * 1024 * 1024;

/// The end of the VPA histogram bucket holding `v`: buckets start at
/// `first × (1.05^i − 1) / 0.05`.
fn vpa_bucket_end(v: f64, first: f64) -> f64 {
    let ratio: f64 = 1.05;
    let start = |i: f64| first * (ratio.powf(i) - 1.0) / (ratio - 1.0);
    let i = (1.0 + v * (ratio - 1.0) / first).ln() / ratio.ln();
    start(i.floor() + 1.0)
}

impl Strategy for Vpa {
    fn name(&self) -> &'static str {
        "vpa"
    }

    fn fits(&self, h: &History<'_>, ends: &[usize], _policy: &Policy) -> Vec<Option<Fit>> {
        let Some(first) = h.blocks.first() else {
            return ends.iter().map(|_| None).collect();
        };
        at_ends(
            h,
            ends,
            first.cpu.empty_like(),
            |cpu, b| add_decayed(cpu, h, b, VPA_HALF_LIFE_SECS),
            |cpu, end| {
                let cores = cpu.quantile(VPA_PERCENTILE / 100.0)?;
                // Daily peaks, each weighted by its age in half-lives at the fit's end.
                let fit_end = h.blocks[end - 1].end;
                let mut peaks: Vec<(f64, f64)> = h.blocks[..end]
                    .iter()
                    .filter(|b| b.memory.total() > 0.0)
                    .map(|b| {
                        let age = (fit_end - b.end) as f64;
                        (b.memory.max, 0.5f64.powf(age / VPA_HALF_LIFE_SECS))
                    })
                    .collect();
                peaks.sort_by(|a, b| a.0.total_cmp(&b.0));
                let total: f64 = peaks.iter().map(|p| p.1).sum();
                let rank = VPA_PERCENTILE / 100.0 * total;
                let mut seen = 0.0;
                let memory = peaks.iter().find_map(|(v, w)| {
                    seen += w;
                    (seen >= rank * (1.0 - 1e-12)).then_some(*v)
                })?;
                let cpu = Basis {
                    value: vpa_bucket_end(cores, 0.01) * 1000.0,
                    label: "decayed p90 (VPA)".into(),
                    margin: VPA_MARGIN,
                };
                let memory = Basis {
                    value: vpa_bucket_end(memory, 1e7),
                    label: "decayed p90 of daily peaks (VPA)".into(),
                    margin: VPA_MARGIN,
                };
                Some(Fit {
                    floors: Some((VPA_MIN_CPU_MILLICORES, VPA_MIN_MEMORY_BYTES)),
                    ..Fit::plain(cpu, memory, VPA_PERCENTILE)
                })
            },
        )
    }
}

/// Time-aware: fits on the history since a lasting level shift (a rollout that changed
/// the appetite), sizes the CPU request for the level the three busiest days of the week
/// reach (so busy weekdays are not averaged away by quiet weekends), leaves the hours of container start-ups
/// out of the request, and asks the CPU limit to cover the highest peak seen (start-up
/// spikes, a weekly batch) instead of raising the request for it.
pub(crate) struct TimeAware;

/// A regime change must have held this many days to be fitted on alone.
pub(crate) const REGIME_MIN_DAYS: usize = 2;
/// … after at least this many days of the old regime (a week, so a weekend is not taken
/// for a new regime).
const REGIME_MIN_BEFORE_DAYS: usize = 7;
/// … and move the daily mean by at least this factor.
const REGIME_MIN_SHIFT: f64 = 1.4;
/// A day of the week needs this many hours in the fit to count for the weekly profile.
const WEEKDAY_MIN_HOURS: usize = 12;
/// The weekly profile sizes for the level the busiest this many days of the week reach.
const WEEKLY_PROFILE_DAYS: usize = 3;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The first block of a lasting level shift in `means` (one per block, `None` when the
/// block has no data), if there is one.
pub(crate) fn regime_start(means: &[Option<f64>]) -> Option<usize> {
    let days: Vec<(usize, f64)> = means
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.map(|m| (i, m)))
        .collect();
    let n = days.len();
    if n < REGIME_MIN_BEFORE_DAYS + REGIME_MIN_DAYS {
        return None;
    }
    // CUSUM: the split that best separates two levels.
    let mean = days.iter().map(|d| d.1).sum::<f64>() / n as f64;
    let (mut acc, mut best, mut split) = (0.0, 0.0, 0);
    for (k, (_, v)) in days.iter().enumerate().take(n - 1) {
        acc += v - mean;
        if acc.abs() > best {
            best = acc.abs();
            split = k + 1;
        }
    }
    if split < REGIME_MIN_BEFORE_DAYS || n - split < REGIME_MIN_DAYS {
        return None;
    }
    let avg = |s: &[(usize, f64)]| s.iter().map(|d| d.1).sum::<f64>() / s.len() as f64;
    let (before, after) = days.split_at(split);
    let (b, a) = (avg(before), avg(after));
    if b <= 0.0 || a <= 0.0 || (a / b).max(b / a) < REGIME_MIN_SHIFT {
        return None;
    }
    let mid = (a + b) / 2.0;
    let after_side = |v: f64| (v > mid) == (a > b);
    // Every day since holds the new level; the old regime never visited it (the day
    // before the split may be half and half).
    let settled = &before[..split - 1];
    let before_stray = settled.iter().filter(|d| after_side(d.1)).count();
    if after.iter().all(|d| after_side(d.1)) && before_stray * 10 <= settled.len() {
        Some(after[0].0)
    } else {
        None
    }
}

fn block_means(h: &History<'_>, end: usize) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let mean = |x: &Hist| {
        let t = x.total();
        (t > 0.0).then(|| x.sum / t)
    };
    h.blocks[..end]
        .iter()
        .map(|b| (mean(&b.cpu), mean(&b.memory)))
        .unzip()
}

impl Strategy for TimeAware {
    fn name(&self) -> &'static str {
        "time-aware"
    }

    fn fits(&self, h: &History<'_>, ends: &[usize], policy: &Policy) -> Vec<Option<Fit>> {
        ends.iter().map(|&end| self.fit(h, end, policy)).collect()
    }
}

impl TimeAware {
    fn fit(&self, h: &History<'_>, end: usize, policy: &Policy) -> Option<Fit> {
        h.blocks.first()?;
        let (cpu_means, memory_means) = block_means(h, end);
        let start = regime_start(&cpu_means)
            .into_iter()
            .chain(regime_start(&memory_means))
            .max();
        let lo = start.unwrap_or(0);
        let q = policy.cpu_percentile / 100.0;
        let mut notes = Vec::new();
        let fitted_from = start.map(|s| h.blocks[s].start);
        let since = match fitted_from {
            Some(t) => {
                notes.push(format!(
                    "regime change: usage moved to a new level from {}; fitted on the {} days since",
                    iso_hour(t),
                    end - lo
                ));
                format!(" since {}", iso_hour(t))
            }
            None => String::new(),
        };
        let (by_day, all, memory, cpu_peak) = steady_usage(h, lo, end);
        let overall = all.quantile(q)?;
        let cpu = cpu_basis(&by_day, overall, policy, &since);
        let cpu_limit_floor = cpu_peak.map(|(p, at)| {
            (
                p * 1000.0 * (1.0 + policy.margin),
                format!(
                    "the highest CPU seen{since}, {} in the hour of {} (a start-up or a recurring peak)",
                    crate::quantity::cpu_measured(p * 1000.0),
                    iso_hour(at)
                ),
            )
        });
        Some(Fit {
            cpu,
            memory: memory_basis(policy, &memory, &since)?,
            percentile: policy.cpu_percentile,
            cpu_limit_floor,
            floors: None,
            first_block: lo,
            fitted_from,
            notes,
        })
    }
}

/// What [`steady_usage`] gathers: per day of the week, the steady CPU and its hours; all
/// steady CPU; memory; the highest CPU seen and its hour.
type SteadyUsage = (Vec<(Hist, usize)>, Hist, Hist, Option<(f64, i64)>);

/// Per day of the week, the CPU of steady hours (start-up hours left out of the request)
/// and how many hours each day has; all of them together (everything when there are only
/// start-up hours); memory; and the highest CPU seen with its hour, over blocks `[lo, end)`.
fn steady_usage(h: &History<'_>, lo: usize, end: usize) -> SteadyUsage {
    let first = &h.blocks[0];
    let mut by_day: Vec<(Hist, usize)> = (0..7).map(|_| (first.cpu.empty_like(), 0)).collect();
    let mut all = first.cpu.empty_like();
    let mut memory = first.memory.empty_like();
    let mut cpu_peak: Option<(f64, i64)> = None;
    for b in &h.blocks[lo..end] {
        memory.add(&b.memory, 1.0);
        if let Some((p, at)) = b.cpu_peak {
            if cpu_peak.is_none_or(|(q, _)| p > q) {
                cpu_peak = Some((p, at));
            }
        }
        for (day, hist, hours) in &b.cpu_steady {
            by_day[*day].0.add(hist, 1.0);
            by_day[*day].1 += hours;
            all.add(hist, 1.0);
        }
    }
    if all.total() <= 0.0 {
        // Only start-up hours: fall back to everything.
        for b in &h.blocks[lo..end] {
            all.add(&b.cpu, 1.0);
        }
    }
    (by_day, all, memory, cpu_peak)
}

/// The CPU basis: the percentile of the busiest days of the week when that level is above
/// the overall percentile, else the overall one.
fn cpu_basis(by_day: &[(Hist, usize)], overall: f64, policy: &Policy, since: &str) -> Basis {
    let q = policy.cpu_percentile / 100.0;
    // A weekly profile is a level held by several days of the week (busy weekdays); a
    // peak on one day (a weekly batch) is a recurring peak, left to the limit.
    let mut days: Vec<(f64, usize)> = by_day
        .iter()
        .enumerate()
        .filter(|(_, (_, hours))| *hours >= WEEKDAY_MIN_HOURS)
        .filter_map(|(d, (hist, _))| hist.quantile(q).map(|v| (v, d)))
        .collect();
    days.sort_by(|a, b| b.0.total_cmp(&a.0));
    let busiest = days.get(WEEKLY_PROFILE_DAYS - 1).copied();
    let pct = pct_label(policy.cpu_percentile);
    match busiest {
        Some((v, d)) if v > overall => Basis {
            value: v * 1000.0,
            label: format!(
                "{pct} of the {} busiest days of the week (down to {}){since}",
                WEEKLY_PROFILE_DAYS, WEEKDAYS[d]
            ),
            margin: policy.margin,
        },
        _ => Basis {
            value: overall * 1000.0,
            label: format!("{pct}{since}"),
            margin: policy.margin,
        },
    }
}

/// `2024-03-18 09:00 UTC`.
pub(crate) fn iso_hour(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests;
