//! The window as day blocks, so that a walk-forward fit is a merge of block prefixes and
//! never a re-read of hours. Blocks are 24-hour spans counted back from the window's end
//! (the first one may be shorter), held as dense bucket arrays.

use crate::model::{Resource, SignalHour, UsageHour};
use crate::sketch::Sketch;

/// Seconds in a block.
pub(crate) const DAY: i64 = 86_400;

/// A dense, weighted histogram over the sketch's buckets. Weights are `f64` so decayed
/// sums (the VPA's and the decaying strategy's) use the same type.
#[derive(Debug, Clone)]
pub(crate) struct Hist {
    offset: i32,
    zero: f64,
    bins: Vec<f64>,
    /// Total weight, kept as bins change: summing the bins on every read was a quarter of
    /// a fleet backtest's time.
    total: f64,
    /// Weighted sum of the values (for means).
    pub sum: f64,
    /// Largest value among the parts with a positive weight.
    pub max: f64,
}

impl Hist {
    /// An empty histogram able to hold buckets `offset .. offset + len`.
    pub fn new(offset: i32, len: usize) -> Self {
        Hist {
            offset,
            zero: 0.0,
            bins: vec![0.0; len],
            total: 0.0,
            sum: 0.0,
            max: 0.0,
        }
    }

    /// One sketch, unweighted.
    #[cfg(test)]
    pub fn of(sketch: &Sketch) -> Self {
        let mut h = match sketch.bin_range() {
            None => Hist::new(0, 0),
            Some((lo, hi)) => Hist::new(lo, (hi - lo + 1) as usize),
        };
        h.add_sketch(sketch, 1.0);
        h
    }

    /// Samples (the total weight, when unweighted).
    pub fn count(&self) -> u64 {
        self.total.round() as u64
    }

    /// Mean of the values, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.sum / self.total)
    }

    /// The same bucket range, empty.
    pub fn empty_like(&self) -> Self {
        Hist::new(self.offset, self.bins.len())
    }

    /// Adds `sketch` with weight `w`; its buckets must lie in the range.
    pub fn add_sketch(&mut self, sketch: &Sketch, w: f64) {
        if w <= 0.0 || sketch.count() == 0 {
            return;
        }
        self.zero += w * sketch.zero_count() as f64;
        for (i, n) in sketch.bins() {
            self.bins[(i - self.offset) as usize] += w * n as f64;
        }
        self.total += w * sketch.count() as f64;
        self.sum += w * sketch.sum();
        self.max = self.max.max(sketch.max());
    }

    /// Adds `sketch` here unweighted and to `decayed` with weight `w`, reading its buckets
    /// once (each hour's buckets are the bulk of a fleet backtest's reads).
    pub fn add_sketch_and(&mut self, decayed: &mut Hist, sketch: &Sketch, w: f64) {
        if sketch.count() == 0 {
            return;
        }
        let (zero, count) = (sketch.zero_count() as f64, sketch.count() as f64);
        self.zero += zero;
        decayed.zero += w * zero;
        for (i, n) in sketch.bins() {
            let n = n as f64;
            self.bins[(i - self.offset) as usize] += n;
            decayed.bins[(i - decayed.offset) as usize] += w * n;
        }
        self.total += count;
        decayed.total += w * count;
        self.sum += sketch.sum();
        decayed.sum += w * sketch.sum();
        self.max = self.max.max(sketch.max());
        decayed.max = decayed.max.max(sketch.max());
    }

    /// Adds `other` (same range) with weight `w`.
    pub fn add(&mut self, other: &Hist, w: f64) {
        if w <= 0.0 || other.total() <= 0.0 {
            return;
        }
        self.zero += w * other.zero;
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += w * b;
        }
        self.total += w * other.total;
        self.sum += w * other.sum;
        self.max = self.max.max(other.max);
    }

    /// Multiplies every weight by `f` (the max is kept: a peak is not decayed).
    pub fn scale(&mut self, f: f64) {
        self.zero *= f;
        self.bins.iter_mut().for_each(|b| *b *= f);
        self.total *= f;
        self.sum *= f;
    }

    /// Total weight (the sample count when unweighted).
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The weighted `q`-quantile, read exactly as [`Sketch::weighted_quantile`] reads it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        if rank <= self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (k, n) in self.bins.iter().enumerate() {
            seen += n;
            if *n > 0.0 && seen >= rank * (1.0 - 1e-12) {
                return Some(Sketch::bucket_value(self.offset + k as i32).min(self.max));
            }
        }
        Some(self.max)
    }

    /// Weight above `threshold`, at bucket resolution as [`Sketch::count_above`] counts.
    pub fn weight_above(&self, threshold: f64) -> f64 {
        if threshold >= self.max {
            return 0.0;
        }
        match Sketch::bucket_of(threshold) {
            None => self.bins.iter().sum(),
            Some(index) => {
                let from = (index + 1 - self.offset).max(0) as usize;
                self.bins.iter().skip(from).sum()
            }
        }
    }
}

/// One block of the window.
#[derive(Debug)]
pub(crate) struct Block<'a> {
    /// First second of the block.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
    /// CPU samples of the block, unweighted (cores).
    pub cpu: Hist,
    /// Memory samples of the block, unweighted (bytes).
    pub memory: Hist,
    /// The block's hours, for strategies that weigh hours.
    pub cpu_hours: Vec<(i64, &'a Sketch)>,
    /// Each hour's memory peak.
    pub memory_hour_peaks: Vec<(i64, f64)>,
    /// Hours with any usage.
    pub hours: u32,
    /// OOM kills, restarts and CFS periods of the block.
    pub oom_kills: u32,
    pub restarts: u32,
    pub cfs_periods: f64,
    pub cfs_throttled: f64,
    /// Hours in which a container restarted (its start-up follows).
    pub restart_hours: Vec<i64>,
    /// CPU of the hours without a restart, per day of the week (Monday = 0) the block
    /// touches, with how many such hours: a block spans at most two days of the week.
    pub cpu_steady: Vec<(usize, Hist, usize)>,
    /// The block's highest CPU and the hour it was seen in.
    pub cpu_peak: Option<(f64, i64)>,
    /// CPU of the hours with a restart.
    cpu_restarting: Hist,
    /// CPU hours weighted `0.5^(age / 24 h)`, age from the hour's end to the block's end:
    /// the VPA's half-life and the decaying strategy's default.
    pub cpu_decayed: Hist,
}

/// The half-life `Block::cpu_decayed` is computed for.
pub(crate) const DECAY_HALF_LIFE_SECS: f64 = DAY as f64;

/// Day of the week of a unix time, Monday = 0 (1970-01-01 was a Thursday).
pub(crate) fn weekday(t: i64) -> usize {
    ((t.div_euclid(DAY) + 3).rem_euclid(7)) as usize
}

impl<'a> Block<'a> {
    /// Files one CPU hour: under its day of the week (or with the restarting hours), into
    /// the decayed sum and the peak, reading its buckets once.
    fn add_cpu_hour(&mut self, hour: i64, sketch: &'a Sketch) {
        self.cpu_hours.push((hour, sketch));
        if sketch.count() == 0 {
            return;
        }
        if self.cpu_peak.is_none_or(|(p, _)| sketch.max() > p) {
            self.cpu_peak = Some((sketch.max(), hour));
        }
        let age = (self.end - (hour + 3600)).max(0) as f64;
        let w = 0.5f64.powf(age / DECAY_HALF_LIFE_SECS);
        if self.restart_hours.contains(&hour) {
            self.cpu_restarting
                .add_sketch_and(&mut self.cpu_decayed, sketch, w);
            return;
        }
        let day = weekday(hour);
        let i = match self.cpu_steady.iter().position(|(d, ..)| *d == day) {
            Some(i) => i,
            None => {
                self.cpu_steady.push((day, self.cpu.empty_like(), 0));
                self.cpu_steady.len() - 1
            }
        };
        let part = &mut self.cpu_steady[i];
        part.1.add_sketch_and(&mut self.cpu_decayed, sketch, w);
        part.2 += 1;
    }

    /// The block's CPU is the sum of its parts.
    fn sum_cpu(&mut self) {
        self.cpu.add(&self.cpu_restarting, 1.0);
        for (_, part, _) in &self.cpu_steady {
            self.cpu.add(part, 1.0);
        }
    }
}

/// The window `[from, to)` as blocks, oldest first.
#[derive(Debug)]
pub(crate) struct History<'a> {
    /// First and last hour with any usage.
    pub first_hour: Option<i64>,
    pub last_hour: Option<i64>,
    pub blocks: Vec<Block<'a>>,
}

fn range(usage: &[UsageHour], resource: Resource) -> (i32, usize) {
    let (mut lo, mut hi) = (i32::MAX, i32::MIN);
    for u in usage.iter().filter(|u| u.resource == resource) {
        if let Some((a, b)) = u.sketch.bin_range() {
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    if lo > hi {
        (0, 0)
    } else {
        (lo, (hi - lo + 1) as usize)
    }
}

impl<'a> History<'a> {
    /// Splits the hours of `usage` and `signals` in `[from, to)` into blocks.
    pub fn build(usage: &'a [UsageHour], signals: &[SignalHour], from: i64, to: i64) -> Self {
        let inside: Vec<&UsageHour> = usage
            .iter()
            .filter(|u| u.hour_start >= from && u.hour_start < to)
            .collect();
        let (cpu_off, cpu_len) = range(usage, Resource::Cpu);
        let (mem_off, mem_len) = range(usage, Resource::Memory);
        let n = ((to - from + DAY - 1) / DAY).max(0) as usize;
        let mut blocks: Vec<Block<'a>> = (0..n)
            .map(|i| {
                let end = to - (n - 1 - i) as i64 * DAY;
                Block {
                    start: (end - DAY).max(from),
                    end,
                    cpu: Hist::new(cpu_off, cpu_len),
                    memory: Hist::new(mem_off, mem_len),
                    cpu_hours: Vec::new(),
                    memory_hour_peaks: Vec::new(),
                    hours: 0,
                    oom_kills: 0,
                    restarts: 0,
                    cfs_periods: 0.0,
                    cfs_throttled: 0.0,
                    restart_hours: Vec::new(),
                    cpu_steady: Vec::new(),
                    cpu_peak: None,
                    cpu_restarting: Hist::new(cpu_off, cpu_len),
                    cpu_decayed: Hist::new(cpu_off, cpu_len),
                }
            })
            .collect();
        let index = |t: i64| n - 1 - ((to - 1 - t) / DAY) as usize;
        // Restarts first: a CPU hour is filed by whether a container started in it.
        for s in signals
            .iter()
            .filter(|s| s.hour_start >= from && s.hour_start < to)
        {
            let b = &mut blocks[index(s.hour_start)];
            b.oom_kills += s.oom_kills;
            b.restarts += s.restarts;
            b.cfs_periods += s.cfs_periods;
            b.cfs_throttled += s.cfs_throttled_periods;
            if s.restarts > 0 {
                b.restart_hours.push(s.hour_start);
            }
        }
        let mut with_data: Vec<i64> = Vec::new();
        for u in inside {
            let b = &mut blocks[index(u.hour_start)];
            match u.resource {
                Resource::Cpu => b.add_cpu_hour(u.hour_start, &u.sketch),
                Resource::Memory => {
                    b.memory.add_sketch(&u.sketch, 1.0);
                    if u.sketch.count() > 0 {
                        b.memory_hour_peaks.push((u.hour_start, u.sketch.max()));
                    }
                }
            }
            if u.sketch.count() > 0 {
                with_data.push(u.hour_start);
            }
        }
        with_data.sort_unstable();
        with_data.dedup();
        let (first_hour, last_hour) = (with_data.first().copied(), with_data.last().copied());
        for h in with_data {
            blocks[index(h)].hours += 1;
        }
        for b in &mut blocks {
            b.sum_cpu();
        }
        History {
            first_hour,
            last_hour,
            blocks,
        }
    }

    /// Hours with data and CPU samples in blocks `[lo, hi)`.
    pub fn amount(&self, lo: usize, hi: usize) -> (u32, f64) {
        self.blocks[lo..hi]
            .iter()
            .fold((0, 0.0), |(h, c), b| (h + b.hours, c + b.cpu.total()))
    }
}

/// An hour of usage with these samples, for the analyzer's unit tests.
#[cfg(test)]
pub(crate) fn test_hour(resource: Resource, hour_start: i64, values: &[f64]) -> UsageHour {
    let mut sketch = Sketch::new();
    values.iter().for_each(|v| sketch.insert(*v).unwrap());
    UsageHour {
        key: crate::model::ContainerKey {
            cluster: "c".into(),
            namespace: "n".into(),
            kind: "Deployment".into(),
            workload: "w".into(),
            container: "c".into(),
        }
        .into(),
        resource,
        hour_start,
        sketch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_hour as hour;

    #[test]
    fn blocks_count_back_from_the_end_and_quantiles_match_the_sketch() {
        // 30 hours ending at hour 30: a 6-hour first block, then a full day.
        let usage: Vec<UsageHour> = (0..30)
            .flat_map(|h| {
                [
                    hour(Resource::Cpu, h * 3600, &[0.0, 0.1 * (h + 1) as f64]),
                    hour(Resource::Memory, h * 3600, &[1e6 * (h + 1) as f64]),
                ]
            })
            .collect();
        let h = History::build(&usage, &[], 0, 30 * 3600);
        assert_eq!(h.blocks.len(), 2);
        assert_eq!((h.blocks[0].start, h.blocks[0].end), (0, 6 * 3600));
        assert_eq!((h.blocks[1].start, h.blocks[1].end), (6 * 3600, 30 * 3600));
        assert_eq!(h.amount(0, 2), (30, 60.0));
        let mut all = h.blocks[0].cpu.clone();
        all.add(&h.blocks[1].cpu, 1.0);
        let sketches: Vec<&Sketch> = usage
            .iter()
            .filter(|u| u.resource == Resource::Cpu)
            .map(|u| &u.sketch)
            .collect();
        let mut merged = Sketch::new();
        sketches.iter().for_each(|s| merged.merge(s));
        for q in [0.0, 0.3, 0.5, 0.9, 0.95, 1.0] {
            let parts: Vec<(f64, &Sketch)> = sketches.iter().map(|s| (1.0, *s)).collect();
            assert_eq!(
                all.quantile(q),
                Sketch::weighted_quantile(&parts, q),
                "q={q}"
            );
        }
        for t in [0.0, 0.05, 0.5, 1.55, 3.0, 9.0] {
            assert_eq!(all.weight_above(t), merged.count_above(t) as f64, "t={t}");
        }
        assert_eq!(h.blocks[1].memory_hour_peaks.len(), 24);
        assert_eq!(h.blocks[1].memory.max, 30e6);
    }
}
