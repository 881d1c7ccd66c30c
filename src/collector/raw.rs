//! The range queries' answers computed here from raw samples read over remote read.
//!
//! Prometheus then only copies compressed chunks (no PromQL evaluation, no JSON), and
//! the collector evaluates exactly what `query_range` would have returned for
//! [`super::queries::cpu_usage`], [`super::queries::memory_peak`] and
//! [`super::queries::container_state`]: the same windows, extrapolation, lookback,
//! staleness and `max by` (see [`crate::prometheus::engine`]). The answers then go
//! through the same summaries as the query path, so either source stores the same rows.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::prometheus::engine::{self, RangeFn};
use crate::prometheus::remote_read::{RawSeries, ReadStats, SeriesSink};
use crate::prometheus::{Answer, InstantSample, Labels, PromClient, PromError, RangeSeries};

use super::queries::{owner_selection, raw_selection, RawMetric};
use super::ChunkQueries;
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
    /// The `by` labels, in name order.
    by: Vec<&'static str>,
    start: i64,
    end: i64,
    step: i64,
    /// Whether groups are kept as runs and their answers [`thinned`] (the state series).
    thin: bool,
    groups: HashMap<FlatKey, Slots>,
}

/// A group's values on the grid.
enum Slots {
    /// One per step: a group of several series, or of cAdvisor's usage, which changes at
    /// every step.
    Dense(Vec<Option<f64>>),
    /// The state series mostly hold one value for hours (a request, a restart count), so
    /// while a group has one series its values are kept as runs of equal values on
    /// consecutive steps: at 16 bytes per step the grids of the state selection were half
    /// of a namespace group's memory.
    Runs(Vec<Run>),
}

/// Steps `first..=last` all hold `value`.
#[derive(Clone, Copy)]
struct Run {
    first: u32,
    last: u32,
    value: f64,
}

impl Slots {
    /// Merges `v` at step `i` (of `n`). Runs take one series' values in step order; a
    /// second series of the group, a step out of order, or runs for half the steps make
    /// the group dense.
    fn merge(&mut self, i: usize, v: f64, n: usize) {
        if let Slots::Runs(runs) = self {
            let at = i as u32;
            match runs.last().copied() {
                Some(run) if at == run.last + 1 && run.value.to_bits() == v.to_bits() => {
                    if let Some(run) = runs.last_mut() {
                        run.last = at;
                    }
                    return;
                }
                // A series that changes at most steps (the CFS counters) is smaller on
                // the grid: a run takes as much room as a step.
                last if last.is_none_or(|run| at > run.last) && runs.len() * 2 < n => {
                    runs.push(Run {
                        first: at,
                        last: at,
                        value: v,
                    });
                    return;
                }
                _ => *self = Slots::Dense(dense(runs, n)),
            }
        }
        if let Slots::Dense(values) = self {
            keep_max(&mut values[i], v);
        }
    }
}

fn dense(runs: &[Run], n: usize) -> Vec<Option<f64>> {
    let mut values = vec![None; n];
    for r in runs {
        for slot in &mut values[r.first as usize..=r.last as usize] {
            *slot = Some(r.value);
        }
    }
    values
}

/// The state series whose every point counts: the collector matches a restart to the
/// termination reason at the restart's own step.
const EVERY_POINT: &str = "kube_pod_container_status_last_terminated_reason";

/// A state series' points as the collector uses them: its first and last, and each whose
/// value differs from the one before. The collector reads only the last value of a spec
/// series (requests, limits, `info`) and the increases between consecutive points of a
/// counter, which a point equal to the one before does not change (an increase of zero,
/// and the next increase is taken from the same value at the same time). The termination
/// reason keeps every point. `points` are finite and in time order.
pub fn thinned(labels: &Labels, points: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    if labels.get("__name__").map(String::as_str) == Some(EVERY_POINT) {
        return points;
    }
    let last = points.len().saturating_sub(1);
    let mut out = Vec::new();
    let mut before: Option<f64> = None;
    for (k, (t, v)) in points.into_iter().enumerate() {
        if k == 0 || k == last || before.map(f64::to_bits) != Some(v.to_bits()) {
            out.push((t, v));
        }
        before = Some(v);
    }
    out
}

impl MaxBy {
    /// Groups by `by` on the grid of `q`.
    pub fn new(by: &'static [&'static str], q: &RangeQuery) -> Self {
        MaxBy {
            by: in_name_order(by),
            start: q.start,
            end: q.end,
            step: q.step_secs,
            thin: false,
            groups: HashMap::new(),
        }
    }

    /// Groups of `metric`'s range selection on the grid of `q`: by [`group_labels`], and
    /// for the state selection kept as runs and answered [`thinned`].
    pub fn of(metric: RawMetric, q: &RangeQuery) -> Self {
        MaxBy {
            thin: metric == RawMetric::State,
            ..MaxBy::new(group_labels(metric), q)
        }
    }

    /// A merger of values of the series labelled `labels` into its group:
    /// `merge(t_ms, value)` for `t_ms` on the grid.
    fn merger(&mut self, labels: &Labels) -> impl FnMut(i64, f64) + '_ {
        let key = flat_key(&self.by, labels);
        let n = ((self.end - self.start) / self.step + 1).max(0) as usize;
        let (start, step) = (self.start, self.step);
        let slots = match self.groups.entry(key) {
            Entry::Occupied(group) => {
                let slots = group.into_mut();
                if let Slots::Runs(runs) = slots {
                    *slots = Slots::Dense(dense(runs, n));
                }
                slots
            }
            Entry::Vacant(group) => group.insert(if self.thin {
                Slots::Runs(Vec::new())
            } else {
                Slots::Dense(vec![None; n])
            }),
        };
        move |t_ms: i64, v: f64| {
            if let Some(i) = usize::try_from((t_ms / 1000 - start) / step)
                .ok()
                .filter(|&i| i < n)
            {
                slots.merge(i, v, n);
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
    /// client does; [`thinned`] for the state selection.
    pub fn into_answer(self) -> Answer<RangeSeries> {
        let mut non_finite_skipped = 0;
        let (start, step, thin) = (self.start, self.step, self.thin);
        let mut groups: Vec<(FlatKey, Slots)> = self.groups.into_iter().collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let series: Vec<RangeSeries> = groups
            .into_iter()
            .map(|(key, slots)| {
                let labels = labels_of(&key);
                let finite =
                    |&(_, v): &(i64, f64)| is_finite_or_counted(v, &mut non_finite_skipped);
                let samples = match slots {
                    // Collected in place: the answer reuses the grid's allocation.
                    Slots::Dense(values) => values
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, v)| Some((start + i as i64 * step, v?)))
                        .filter(finite)
                        .collect(),
                    Slots::Runs(runs) => runs
                        .into_iter()
                        .flat_map(|r| {
                            (r.first..=r.last).map(move |i| (start + i64::from(i) * step, r.value))
                        })
                        .filter(finite)
                        .collect(),
                };
                let samples = if thin {
                    thinned(&labels, samples)
                } else {
                    samples
                };
                RangeSeries { labels, samples }
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        Answer {
            series,
            non_finite_skipped,
            warnings: Vec::new(),
        }
    }
}

/// A group's labels (those of its series named in `by` that have a value: what a `by`
/// clause groups on) as one byte string: each name and value in name order, ended by a 0
/// byte, a 0 byte within escaped as 0, 0xFF (no UTF-8 byte is 0xFF). Groups are hashed
/// and compared as one slice rather than a tree of strings (at 5,000 containers, hashing
/// and sorting the trees were a sixth of an incremental run's CPU), and the bytes sort as
/// Prometheus sorts the labels.
type FlatKey = Box<[u8]>;

/// `by`, in name order, as a [`FlatKey`] lists them.
fn in_name_order(by: &[&'static str]) -> Vec<&'static str> {
    let mut names = by.to_vec();
    names.sort_unstable();
    names.dedup();
    names
}

/// The [`FlatKey`] of `labels` grouped by `names` (in name order).
fn flat_key(names: &[&str], labels: &Labels) -> FlatKey {
    let mut key = Vec::with_capacity(96);
    for &name in names {
        let Some(value) = labels.get(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        for part in [name, value.as_str()] {
            for &b in part.as_bytes() {
                key.push(b);
                if b == 0 {
                    key.push(0xFF);
                }
            }
            key.push(0);
        }
    }
    key.into_boxed_slice()
}

/// The labels a [`FlatKey`] holds.
fn labels_of(key: &[u8]) -> Labels {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = key.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            0 if bytes.peek() == Some(&0xFF) => {
                bytes.next();
                part.push(0);
            }
            0 => parts.push(
                String::from_utf8(std::mem::take(&mut part))
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            b => part.push(b),
        }
    }
    let mut parts = parts.into_iter();
    let mut labels = Labels::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        labels.insert(name, value);
    }
    labels
}

/// Merges `v` into a running maximum as Prometheus' `max` does: the first value, replaced
/// by a larger one, or by anything when it is NaN.
fn keep_max(slot: &mut Option<f64>, v: f64) {
    match slot {
        Some(old) if !(*old < v || old.is_nan()) => {}
        _ => *slot = Some(v),
    }
}

/// Whether `v` is finite; counts it in `skipped` when not (the client skips those).
fn is_finite_or_counted(v: f64, skipped: &mut u64) -> bool {
    let keep = v.is_finite();
    *skipped += u64::from(!keep);
    keep
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
    let mut max_by = MaxBy::of(metric, q);
    for s in &answer.series {
        max_by.add(s);
    }
    with_answer_notes(max_by.into_answer(), answer)
}

/// `aggregated` with what `raw` (the answer it was computed from) noted: the count of values
/// it skipped, and its warnings.
pub fn with_answer_notes(
    mut aggregated: Answer<RangeSeries>,
    raw: Answer<RangeSeries>,
) -> Answer<RangeSeries> {
    aggregated.non_finite_skipped += raw.non_finite_skipped;
    aggregated.warnings = raw.warnings;
    aggregated
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
            max_by: MaxBy::of(metric, q),
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

/// Evaluates one series' samples (in time order) that fall in its window.
pub trait Window {
    /// The samples of the series labelled `labels` within the window.
    fn eval(&mut self, labels: &Labels, samples: &[(i64, f64)]);
}

impl Window for Emulation {
    fn eval(&mut self, labels: &Labels, samples: &[(i64, f64)]) {
        let (eval, step) = (self.eval, self.max_by.step);
        let times = engine::steps(self.max_by.start, self.max_by.end, step);
        let merge = self.max_by.merger(labels);
        match eval {
            Eval::Rate => engine::range_eval(samples, RangeFn::Rate, RATE_RANGE_MS, times, merge),
            Eval::MaxOverStep => {
                engine::range_eval(samples, RangeFn::MaxOverTime, step * 1000, times, merge)
            }
            Eval::Instant => engine::instant_eval(samples, LOOKBACK_MS, times, merge),
        }
    }
}

impl SeriesSink for Emulation {
    fn series(&mut self, raw: RawSeries) {
        self.eval(&raw.labels, &raw.samples);
    }
}

/// One read serving several chunks: each part gets the samples of its own window
/// (`[from_ms, to_ms]`, both ends inclusive), exactly those a read of that window alone
/// returns, since Prometheus trims a read to its range.
pub struct Spread<W> {
    parts: Vec<(i64, i64, W)>,
}

impl<W> Spread<W> {
    /// The window the read must cover.
    fn range(&self) -> (i64, i64) {
        let from = self.parts.iter().map(|p| p.0).min().unwrap_or(0);
        let to = self.parts.iter().map(|p| p.1).max().unwrap_or(0);
        (from, to)
    }

    fn into_parts(self) -> impl Iterator<Item = W> {
        self.parts.into_iter().map(|(_, _, w)| w)
    }
}

impl<W: Window> SeriesSink for Spread<W> {
    fn series(&mut self, raw: RawSeries) {
        for (from, to, window) in &mut self.parts {
            let lo = raw.samples.partition_point(|s| s.0 < *from);
            let hi = raw.samples.partition_point(|s| s.0 <= *to);
            if lo < hi {
                window.eval(&raw.labels, &raw.samples[lo..hi]);
            }
        }
    }
}

/// What [`super::queries::owners`] answers at `time` over its span, from the raw owner
/// series: per `max by` group the largest value of its series within the window (stale
/// markers are not samples to `max_over_time`), NaN replaced as Prometheus replaces it.
pub struct OwnerEdges {
    time: i64,
    /// [`super::queries::OWNER_LABELS`], in name order.
    by: Vec<&'static str>,
    edges: HashMap<FlatKey, Option<f64>>,
}

impl Window for OwnerEdges {
    fn eval(&mut self, labels: &Labels, samples: &[(i64, f64)]) {
        let mut max = None;
        for &(_, v) in samples.iter().filter(|s| !engine::is_stale(s.1)) {
            keep_max(&mut max, v);
        }
        let Some(v) = max else { return };
        let key = flat_key(&self.by, labels);
        keep_max(self.edges.entry(key).or_insert(None), v);
    }
}

impl OwnerEdges {
    /// The answer as the instant query gives it (non-finite values skipped and counted).
    fn into_answer(self) -> Answer<InstantSample> {
        let mut non_finite_skipped = 0;
        let mut edges: Vec<(FlatKey, f64)> = self
            .edges
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .filter(|&(_, v)| is_finite_or_counted(v, &mut non_finite_skipped))
            .collect();
        edges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let series = edges
            .into_iter()
            .map(|(key, value)| InstantSample {
                labels: labels_of(&key),
                time: self.time,
                value,
            })
            .collect();
        Answer {
            series,
            non_finite_skipped,
            warnings: Vec::new(),
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

/// The answers to the range query of `metric` in each of `chunks` (all within `scope`),
/// from one remote read covering them all.
pub async fn read_spread(
    prom: &PromClient,
    metric: RawMetric,
    chunks: &[ChunkQueries],
    scope: &Scope,
    stats: &mut RawStats,
) -> Result<Vec<Answer<RangeSeries>>, PromError> {
    let of = |q: &ChunkQueries| match metric {
        RawMetric::State => q.state.clone(),
        RawMetric::Cpu => q.cpu.clone(),
        RawMetric::Memory => q.memory.clone(),
    };
    let spread = || Spread {
        parts: chunks
            .iter()
            .map(|c| {
                let q = of(c);
                let (from, to) = Emulation::read_range(metric, &q);
                (from, to, Emulation::new(metric, &q))
            })
            .collect(),
    };
    let (from_ms, to_ms) = spread().range();
    let (spread, read) = prom
        .remote_read(from_ms, to_ms, &raw_selection(metric, scope), spread)
        .await?;
    stats.add(&read);
    Ok(spread
        .into_parts()
        .map(|e| e.max_by.into_answer())
        .collect())
}

/// The answers to each chunk's owners query (within `scope`), from one remote read of the
/// raw owner series covering them all.
pub async fn read_owners(
    prom: &PromClient,
    chunks: &[ChunkQueries],
    scope: &Scope,
    stats: &mut RawStats,
) -> Result<Vec<Answer<InstantSample>>, PromError> {
    let spread = || Spread {
        parts: chunks
            .iter()
            .map(|c| {
                // `max_over_time(…[span])` at `time`: both ends inclusive in 2.x.
                let window = OwnerEdges {
                    time: c.time,
                    by: in_name_order(&super::queries::OWNER_LABELS),
                    edges: HashMap::new(),
                };
                ((c.time - c.owners_span) * 1000, c.time * 1000, window)
            })
            .collect(),
    };
    let (from_ms, to_ms) = spread().range();
    let (spread, read) = prom
        .remote_read(from_ms, to_ms, &owner_selection(scope), spread)
        .await?;
    stats.add(&read);
    Ok(spread.into_parts().map(OwnerEdges::into_answer).collect())
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

    /// Flat keys order groups as their labels order (prefixes, NUL bytes, missing and empty
    /// labels, other labels, non-ASCII) and give the labels back.
    #[test]
    fn flat_keys_sort_as_the_labels_and_give_them_back() {
        let by = in_name_order(&["pod", "namespace", "container", "pod"]);
        assert_eq!(by, ["container", "namespace", "pod"]);
        let values = ["", "a", "ab", "a\0", "a\0b", "a\u{1}", "\0", "é", "b"];
        let mut sets = Vec::new();
        for ns in values {
            for pod in values {
                let mut labels = Labels::new();
                for (k, v) in [
                    ("namespace", ns),
                    ("pod", pod),
                    ("job", "x"),
                    ("container", ""),
                ] {
                    labels.insert(k.to_string(), v.to_string());
                }
                sets.push(labels);
            }
        }
        sets.push(Labels::new());
        let grouped = |l: &Labels| -> Labels {
            l.iter()
                .filter(|(k, v)| by.contains(&k.as_str()) && !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for a in &sets {
            assert_eq!(labels_of(&flat_key(&by, a)), grouped(a), "{a:?}");
            for b in &sets {
                assert_eq!(
                    flat_key(&by, a).cmp(&flat_key(&by, b)),
                    grouped(a).iter().cmp(grouped(b).iter()),
                    "{a:?} {b:?}"
                );
            }
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

    fn state_series(name: &str, pod: &str, uid: &str, samples: &[(i64, f64)]) -> RangeSeries {
        RangeSeries {
            labels: [
                ("__name__", name),
                ("namespace", "a"),
                ("pod", pod),
                ("container", "c"),
                ("uid", uid),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    // Kept as runs or on the grid, a state group answers what the grid's answer thinned
    // gives: first, last and changed points (NaN skipped and counted, and not a change),
    // every point of the termination reason; a second series of a group (a pod recreated
    // under its name) and a step out of order fall back to the grid.
    fn state_groups_answer_their_grid_thinned() {
        let q = RangeQuery {
            promql: String::new(),
            start: 0,
            end: 600,
            step_secs: 60,
        };
        let nan = f64::NAN;
        let restarts = "kube_pod_container_status_restarts_total";
        let reason = "kube_pod_container_status_last_terminated_reason";
        let input = [
            state_series(
                restarts,
                "p",
                "1",
                &[
                    (0, 1.0),
                    (60, 1.0),
                    (120, 1.0),
                    (240, 1.0),
                    (300, nan),
                    (360, 2.0),
                    (420, 2.0),
                    (480, 0.0),
                    (540, 0.0),
                ],
            ),
            state_series(reason, "p", "1", &[(120, 1.0), (180, 1.0), (240, 1.0)]),
            state_series(restarts, "q", "1", &[(0, 3.0), (60, 3.0)]),
            state_series(restarts, "q", "2", &[(60, 4.0), (120, 4.0), (180, 4.0)]),
            state_series(
                restarts,
                "r",
                "1",
                &[(0, 5.0), (120, 6.0), (60, 7.0), (180, 6.0)],
            ),
        ];
        let mut runs = MaxBy::of(RawMetric::State, &q);
        let mut grid = MaxBy::new(group_labels(RawMetric::State), &q);
        for s in &input {
            runs.add(s);
            grid.add(s);
        }
        let (runs, grid) = (runs.into_answer(), grid.into_answer());
        assert_eq!(runs.non_finite_skipped, 1);
        assert_eq!(grid.non_finite_skipped, 1);
        let thinned_grid: Vec<Vec<(i64, f64)>> = grid
            .series
            .iter()
            .map(|s| thinned(&s.labels, s.samples.clone()))
            .collect();
        let answered: Vec<Vec<(i64, f64)>> =
            runs.series.iter().map(|s| s.samples.clone()).collect();
        assert_eq!(answered, thinned_grid);
        let by_pod = |name: &str, pod: &str| {
            runs.series
                .iter()
                .find(|s| s.labels["__name__"] == name && s.labels["pod"] == pod)
                .map(|s| s.samples.clone())
                .unwrap()
        };
        assert_eq!(
            by_pod(restarts, "p"),
            vec![(0, 1.0), (360, 2.0), (480, 0.0), (540, 0.0)]
        );
        assert_eq!(
            by_pod(reason, "p"),
            vec![(120, 1.0), (180, 1.0), (240, 1.0)]
        );
        assert_eq!(by_pod(restarts, "q"), vec![(0, 3.0), (60, 4.0), (180, 4.0)]);
        assert_eq!(
            by_pod(restarts, "r"),
            vec![(0, 5.0), (60, 7.0), (120, 6.0), (180, 6.0)]
        );
    }

    #[test]
    fn a_group_merges_its_series_step_by_step_in_the_order_they_came() {
        let q = RangeQuery {
            promql: String::new(),
            start: 0,
            end: 300,
            step_secs: 60,
        };
        let mut max_by = MaxBy::new(&["pod"], &q);
        let series = |id: &str, samples: &[(i64, f64)]| RangeSeries {
            labels: [("pod", "p"), ("id", id)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: samples.to_vec(),
        };
        let nan = f64::NAN;
        // The later series first; a NaN is replaced by whatever follows it at its step, and
        // replaces nothing; a step only NaN stays NaN, skipped and counted.
        max_by.add(&series("a", &[(120, 4.0), (180, nan), (240, 1.0)]));
        max_by.add(&series("b", &[(0, nan), (60, nan), (120, nan), (180, 7.0)]));
        max_by.add(&series("c", &[(60, 2.0), (300, 5.0)]));
        let answer = max_by.into_answer();
        assert_eq!(answer.series.len(), 1);
        assert_eq!(
            answer.series[0].samples,
            vec![(60, 2.0), (120, 4.0), (180, 7.0), (240, 1.0), (300, 5.0)]
        );
        assert_eq!(answer.non_finite_skipped, 1);
    }
}
