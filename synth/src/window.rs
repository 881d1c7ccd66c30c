//! A streaming `max by (group) (fn(series[range]))` over many series at once, for
//! writing a history and predicting its answers in one pass.

use std::collections::VecDeque;

use rightsizer::prometheus::engine::{extrapolated_rate, RangeFn};

struct SeriesWindow {
    group: u32,
    samples: VecDeque<(i64, f64)>,
    active: bool,
}

/// Streams samples of many series (each in time order) and evaluates
/// `max by (group) (fn(series[range]))` at increasing timestamps, keeping
/// only the samples still inside the range.
pub struct WindowEval {
    range_ms: i64,
    func: RangeFn,
    series: Vec<SeriesWindow>,
    active: Vec<u32>,
    best: Vec<f64>,
    touched: Vec<u32>,
}

impl WindowEval {
    /// `series_groups[s]` is the output group (a pod container) of series `s`.
    pub fn new(func: RangeFn, range_secs: i64, series_groups: &[usize], groups: usize) -> Self {
        WindowEval {
            range_ms: range_secs * 1000,
            func,
            series: series_groups
                .iter()
                .map(|&g| SeriesWindow {
                    group: g as u32,
                    samples: VecDeque::new(),
                    active: false,
                })
                .collect(),
            active: Vec::new(),
            best: vec![f64::NEG_INFINITY; groups],
            touched: Vec::new(),
        }
    }

    pub fn push(&mut self, series: usize, t_secs: i64, v: f64) {
        let s = &mut self.series[series];
        s.samples.push_back((t_secs * 1000, v));
        if !s.active {
            s.active = true;
            self.active.push(series as u32);
        }
    }

    /// Evaluates at `t_secs`; every sample at or before it must have been
    /// pushed. Calls `sink(group, value)` once per group with a value.
    pub fn eval(&mut self, t_secs: i64, mut sink: impl FnMut(usize, f64)) {
        let t_ms = t_secs * 1000;
        let start_ms = t_ms - self.range_ms;
        let mut i = 0;
        while i < self.active.len() {
            let s = &mut self.series[self.active[i] as usize];
            while s.samples.front().is_some_and(|&(ts, _)| ts < start_ms) {
                s.samples.pop_front();
            }
            if s.samples.is_empty() {
                s.active = false;
                self.active.swap_remove(i);
                continue;
            }
            i += 1;
            let window = s.samples.make_contiguous();
            // Samples of the current scrape may already be past `t`.
            let n = window.partition_point(|&(ts, _)| ts <= t_ms);
            let window = &window[..n];
            let value = match self.func {
                RangeFn::Rate => extrapolated_rate(window, t_ms, self.range_ms),
                RangeFn::MaxOverTime => window.iter().map(|&(_, v)| v).reduce(f64::max),
            };
            if let Some(v) = value {
                let g = s.group as usize;
                if self.best[g] == f64::NEG_INFINITY {
                    self.touched.push(g as u32);
                }
                if v > self.best[g] {
                    self.best[g] = v;
                }
            }
        }
        for g in self.touched.drain(..) {
            let g = g as usize;
            sink(g, self.best[g]);
            self.best[g] = f64::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rightsizer::prometheus::engine::{range_eval, steps};

    #[test]
    fn window_eval_takes_the_max_per_group_and_forgets_old_samples() {
        let mut w = WindowEval::new(RangeFn::MaxOverTime, 60, &[0, 0, 1], 2);
        w.push(0, 0, 1.0);
        w.push(1, 30, 5.0);
        w.push(2, 60, 7.0);
        let mut got = Vec::new();
        w.eval(60, |g, v| got.push((g, v)));
        got.sort_by_key(|a| a.0);
        assert_eq!(got, vec![(0, 5.0), (1, 7.0)]);
        got.clear();
        w.eval(121, |g, v| got.push((g, v)));
        assert!(got.is_empty());
    }

    #[test]
    fn range_eval_rate_matches_the_streaming_evaluator() {
        let s: Vec<(i64, f64)> = (0..40)
            .map(|i| (i * 15_000 + 7_000, (i * i) as f64))
            .collect();
        let mut direct = Vec::new();
        range_eval(&s, RangeFn::Rate, 300_000, steps(60, 600, 60), |t, v| {
            direct.push((t, v))
        });
        let mut streamed = Vec::new();
        let mut w = WindowEval::new(RangeFn::Rate, 300, &[0], 1);
        let mut i = 0;
        for t in (60..=600).step_by(60) {
            while i < s.len() && s[i].0 <= t * 1000 {
                w.push(0, s[i].0 / 1000, s[i].1);
                i += 1;
            }
            w.eval(t, |_, v| streamed.push((t * 1000, v)));
        }
        assert!(!direct.is_empty());
        assert_eq!(direct, streamed);
    }
}
