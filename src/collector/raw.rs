//! The range queries' answers computed here from raw samples read over remote read.
//!
//! Prometheus then only copies compressed chunks (no PromQL evaluation, no JSON), and
//! the collector evaluates exactly what `query_range` would have returned for
//! [`super::queries::cpu_usage`], [`super::queries::memory_peak`] and
//! [`super::queries::container_state`]: the same windows, extrapolation, lookback,
//! staleness and `max by` (see [`crate::prometheus::engine`]). The answers then go
//! through the same summaries as the query path, so either source stores the same rows.

use std::collections::HashMap;

use crate::prometheus::engine::{self, RangeFn};
use crate::prometheus::remote_read::{RawSeries, ReadStats, SeriesSink};
use crate::prometheus::{Answer, Labels, PromClient, PromError, RangeSeries};

use super::queries::{raw_selection, RawMetric};
use super::{RangeQuery, Scope};

/// `rate(...[5m])`'s window.
const RATE_RANGE_MS: i64 = 300_000;
/// Prometheus' default lookback for instant selectors (`--query.lookback-delta`).
const LOOKBACK_MS: i64 = 300_000;

/// How one range query is evaluated from its raw series.
#[derive(Debug, Clone, Copy)]
enum Eval {
    /// `rate(x[5m])`.
    Rate,
    /// `max_over_time(x[step])`.
    MaxOverStep,
    /// The selector itself, with the lookback.
    Instant,
}

/// `max by (by…)` over series evaluated on a range query's grid, as Prometheus aggregates
/// them: per group and step the first value, replaced by a larger one or when it is NaN;
/// groups named by the `by` labels present (non-empty) in their series. The collector
/// aggregates itself because Prometheus 2.42 spends four to five times the CPU of the
/// query on a `max by` over a range query.
pub struct MaxBy {
    by: &'static [&'static str],
    start: i64,
    end: i64,
    step: i64,
    groups: HashMap<Labels, Vec<Option<f64>>>,
}

impl MaxBy {
    /// Groups by `by` on the grid of `q`.
    pub fn new(by: &'static [&'static str], q: &RangeQuery) -> Self {
        MaxBy {
            by,
            start: q.start,
            end: q.end,
            step: q.step_secs,
            groups: HashMap::new(),
        }
    }

    /// A merger of values of the series labelled `labels` into its group:
    /// `merge(t_ms, value)` for `t_ms` on the grid.
    fn merger(&mut self, labels: &Labels) -> impl FnMut(i64, f64) + '_ {
        let key: Labels = self
            .by
            .iter()
            .filter_map(|&name| {
                let value = labels.get(name)?;
                (!value.is_empty()).then(|| (name.to_string(), value.clone()))
            })
            .collect();
        let n = ((self.end - self.start) / self.step + 1).max(0) as usize;
        let (start, step) = (self.start, self.step);
        let slots = self.groups.entry(key).or_insert_with(|| vec![None; n]);
        move |t_ms: i64, v: f64| {
            let Some(slot) = usize::try_from((t_ms / 1000 - start) / step)
                .ok()
                .and_then(|i| slots.get_mut(i))
            else {
                return;
            };
            match slot {
                Some(old) if !(*old < v || old.is_nan()) => {}
                _ => *slot = Some(v),
            }
        }
    }

    /// Adds the points of an answer's series (unix seconds on the grid).
    pub fn add(&mut self, series: &RangeSeries) {
        let mut merge = self.merger(&series.labels);
        for &(t, v) in &series.samples {
            merge(t * 1000, v);
        }
    }

    /// The answer `query_range` gives for the `max by`: one series per group, sorted by
    /// labels as Prometheus sorts a matrix, NaN and ±Inf skipped and counted as the
    /// client does.
    pub fn into_answer(self) -> Answer<RangeSeries> {
        let mut non_finite_skipped = 0;
        let (start, step) = (self.start, self.step);
        let mut series: Vec<RangeSeries> = self
            .groups
            .into_iter()
            .map(|(labels, values)| {
                let samples = values
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((start + i as i64 * step, v?)))
                    .filter(|&(_, v)| {
                        let keep = v.is_finite();
                        non_finite_skipped += u64::from(!keep);
                        keep
                    })
                    .collect();
                RangeSeries { labels, samples }
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        series.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
        Answer {
            series,
            non_finite_skipped,
            warnings: Vec::new(),
        }
    }
}

/// The labels each range selection is aggregated by.
pub fn group_labels(metric: RawMetric) -> &'static [&'static str] {
    match metric {
        RawMetric::Cpu | RawMetric::Memory => &["namespace", "pod", "container"],
        RawMetric::State => &["__name__", "namespace", "pod", "container", "resource"],
    }
}

/// The `max by` of a range query's answer of raw series, computed here.
pub fn aggregate(
    metric: RawMetric,
    q: &RangeQuery,
    answer: Answer<RangeSeries>,
) -> Answer<RangeSeries> {
    let mut max_by = MaxBy::new(group_labels(metric), q);
    for s in &answer.series {
        max_by.add(s);
    }
    let mut out = max_by.into_answer();
    out.non_finite_skipped += answer.non_finite_skipped;
    out.warnings = answer.warnings;
    out
}

/// Evaluates one range query series by series as they arrive, keeping per output group
/// only its value at each step: memory grows with the answer, not with the raw samples.
struct Emulation {
    eval: Eval,
    max_by: MaxBy,
}

impl Emulation {
    fn new(metric: RawMetric, q: &RangeQuery) -> Self {
        let eval = match metric {
            RawMetric::Cpu => Eval::Rate,
            RawMetric::Memory => Eval::MaxOverStep,
            RawMetric::State => Eval::Instant,
        };
        Emulation {
            eval,
            max_by: MaxBy::new(group_labels(metric), q),
        }
    }

    /// The samples' time range the evaluation needs, in ms: each step looks back.
    fn read_range(metric: RawMetric, q: &RangeQuery) -> (i64, i64) {
        let back = match metric {
            RawMetric::Cpu => RATE_RANGE_MS,
            RawMetric::Memory => q.step_secs * 1000,
            RawMetric::State => LOOKBACK_MS,
        };
        (q.start * 1000 - back, q.end * 1000)
    }
}

impl SeriesSink for Emulation {
    fn series(&mut self, raw: RawSeries) {
        let (eval, step) = (self.eval, self.max_by.step);
        let times = engine::steps(self.max_by.start, self.max_by.end, step);
        let merge = self.max_by.merger(&raw.labels);
        match eval {
            Eval::Rate => {
                engine::range_eval(&raw.samples, RangeFn::Rate, RATE_RANGE_MS, times, merge)
            }
            Eval::MaxOverStep => engine::range_eval(
                &raw.samples,
                RangeFn::MaxOverTime,
                step * 1000,
                times,
                merge,
            ),
            Eval::Instant => engine::instant_eval(&raw.samples, LOOKBACK_MS, times, merge),
        }
    }
}

/// What the remote reads of one namespace group moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RawStats {
    /// Bytes of the answers.
    pub bytes: u64,
    /// Raw samples decoded.
    pub samples: u64,
}

impl RawStats {
    fn add(&mut self, s: &ReadStats) {
        self.bytes += s.bytes;
        self.samples += s.samples;
    }
}

/// The answers to `q` (one of a chunk's range queries, for `metric`) computed from a
/// remote read of its series within `scope`.
pub async fn read_range(
    prom: &PromClient,
    metric: RawMetric,
    q: &RangeQuery,
    scope: &Scope,
    stats: &mut RawStats,
) -> Result<Answer<RangeSeries>, PromError> {
    let (from_ms, to_ms) = Emulation::read_range(metric, q);
    let (emulation, read) = prom
        .remote_read(from_ms, to_ms, &raw_selection(metric, scope), || {
            Emulation::new(metric, q)
        })
        .await?;
    stats.add(&read);
    // Sorting and filtering a few hundred series is quick; the evaluation itself ran as
    // frames arrived.
    Ok(emulation.max_by.into_answer())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> RawSeries {
        RawSeries {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn groups_take_the_max_and_drop_other_labels() {
        let q = RangeQuery {
            promql: String::new(),
            start: 600,
            end: 720,
            step_secs: 60,
        };
        let mut e = Emulation::new(RawMetric::Memory, &q);
        let pod = [("namespace", "a"), ("pod", "p"), ("container", "c")];
        let mut first = pod.to_vec();
        first.push(("id", "/1"));
        let mut second = pod.to_vec();
        second.push(("id", "/2"));
        e.series(raw(&first, &[(599_000, 5.0), (660_000, 1.0)]));
        e.series(raw(&second, &[(650_000, 3.0), (700_000, f64::INFINITY)]));
        let answer = e.max_by.into_answer();
        assert_eq!(answer.series.len(), 1);
        assert_eq!(answer.series[0].labels.len(), 3);
        // 600 sees [540 s, 600 s]: 5; 660: max(1, 3); 720: +Inf, skipped and counted.
        assert_eq!(answer.series[0].samples, vec![(600, 5.0), (660, 3.0)]);
        assert_eq!(answer.non_finite_skipped, 1);
    }
}
