//! Just enough of Prometheus 2.42's PromQL engine to compute, bit for bit,
//! what `rate(...[5m])` and `max_over_time(...[1m])` return from raw samples,
//! then `max by (namespace, pod, container)` over them. The remote-read source
//! evaluates raw series with it, and the synthetic generator (`synth/`) predicts
//! its ground truth with it, so the two cannot drift apart.

/// `rate()` of one counter series over the samples of one range, exactly as
/// `extrapolatedRate` in Prometheus v2.42 `promql/functions.go` computes it
/// (counter, per second). Timestamps are milliseconds; the range is
/// `[range_end_ms - range_ms, range_end_ms]`, both ends inclusive in 2.x.
/// `None` when fewer than two samples fall in the range (Prometheus drops
/// the element).
pub fn extrapolated_rate(samples: &[(i64, f64)], range_end_ms: i64, range_ms: i64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let range_start_ms = range_end_ms - range_ms;
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    let mut prev = first_v;
    for &(_, v) in &samples[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let mut duration_to_start = (first_t - range_start_ms) as f64 / 1000.0;
    let duration_to_end = (range_end_ms - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_between = sampled_interval / (samples.len() - 1) as f64;
    // 2.42 clamps to the counter's zero point *before* the threshold test
    // (later versions swapped the order).
    if result > 0.0 && first_v >= 0.0 {
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    if duration_to_start < threshold {
        extrapolate_to += duration_to_start;
    } else {
        extrapolate_to += average_between / 2.0;
    }
    if duration_to_end < threshold {
        extrapolate_to += duration_to_end;
    } else {
        extrapolate_to += average_between / 2.0;
    }
    let mut factor = extrapolate_to / sampled_interval;
    factor /= range_ms as f64 / 1000.0;
    Some(result * factor)
}

/// Whether `v` is the marker Prometheus writes when a series goes stale. Range
/// functions skip it; an instant selector whose newest sample is one sees nothing.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == super::xor::STALE_NAN_BITS
}

/// Evaluation times of a range query, in milliseconds: `start, start + step, …, ≤ end`.
pub fn steps(start_secs: i64, end_secs: i64, step_secs: i64) -> impl Iterator<Item = i64> {
    (start_secs..=end_secs)
        .step_by(step_secs.max(1) as usize)
        .map(|t| t * 1000)
}

/// `func(series[range])` of one series at each of `times` (ascending, ms), as
/// Prometheus 2.42 evaluates it in a range query: the window is `[t - range, t]`,
/// both ends inclusive, stale markers dropped; `sink(t, value)` is called for the
/// times with a value (`rate` needs two samples, `max_over_time` one). `samples` are
/// in time order and may reach past both ends.
pub fn range_eval(
    samples: &[(i64, f64)],
    func: RangeFn,
    range_ms: i64,
    times: impl Iterator<Item = i64>,
    mut sink: impl FnMut(i64, f64),
) {
    // Most series hold no stale marker: they are read in place, not copied.
    let live: std::borrow::Cow<[(i64, f64)]> = if samples.iter().any(|&(_, v)| is_stale(v)) {
        samples
            .iter()
            .copied()
            .filter(|&(_, v)| !is_stale(v))
            .collect()
    } else {
        samples.into()
    };
    let (mut lo, mut hi) = (0, 0);
    for t in times {
        while hi < live.len() && live[hi].0 <= t {
            hi += 1;
        }
        while lo < hi && live[lo].0 < t - range_ms {
            lo += 1;
        }
        let window = &live[lo..hi];
        let value =
            match func {
                RangeFn::Rate => extrapolated_rate(window, t, range_ms),
                // `aggrOverTime`: the first value, replaced by a larger one or when it is NaN.
                RangeFn::MaxOverTime => window.iter().map(|&(_, v)| v).reduce(|max, v| {
                    if v > max || max.is_nan() {
                        v
                    } else {
                        max
                    }
                }),
            };
        if let Some(v) = value {
            sink(t, v);
        }
    }
}

/// An instant vector selector of one series at each of `times` (ascending, ms), as
/// Prometheus 2.42 evaluates it: the newest sample at or before `t` and no older than
/// `lookback_ms` (inclusive), nothing when that sample is a stale marker.
pub fn instant_eval(
    samples: &[(i64, f64)],
    lookback_ms: i64,
    times: impl Iterator<Item = i64>,
    mut sink: impl FnMut(i64, f64),
) {
    let mut next = 0;
    for t in times {
        while next < samples.len() && samples[next].0 <= t {
            next += 1;
        }
        let Some(&(ts, v)) = next.checked_sub(1).map(|i| &samples[i]) else {
            continue;
        };
        if ts >= t - lookback_ms && !is_stale(v) {
            sink(t, v);
        }
    }
}

/// Which range function to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    Rate,
    MaxOverTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_of_a_steady_counter_is_its_slope() {
        // 1 unit/s, scraped every 60 s, aligned with the range: 5 intervals
        // seen, extrapolated to the full 300 s window.
        let s: Vec<(i64, f64)> = (0..=5)
            .map(|i| (i * 60_000, 60.0 * i as f64 + 1000.0))
            .collect();
        let r = extrapolated_rate(&s, 300_000, 300_000).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }

    #[test]
    fn rate_handles_a_reset_inside_the_series() {
        let s = [
            (0, 100.0),
            (60_000, 160.0),
            (120_000, 30.0),
            (180_000, 90.0),
        ];
        // Increase: 60 + 30 + 60 = 150 over 180 s; extrapolated by the
        // aligned start (0 s, clamp irrelevant) and the 120 s gap at the end
        // (> 1.1 x 60 s, so half an interval).
        let r = extrapolated_rate(&s, 300_000, 300_000).unwrap();
        let expected = 150.0 * ((180.0 + 0.0 + 30.0) / 180.0) / 300.0;
        assert!((r - expected).abs() < 1e-12, "{r} vs {expected}");
    }

    #[test]
    fn rate_clamps_extrapolation_at_the_counter_zero_point() {
        // A new counter: starts at 6 after 6 s of a 1/s rate.
        let s = [(240_000, 6.0), (300_000, 66.0)];
        // duration_to_start = 240 s >= threshold 66 s, but the zero point
        // (6 s back) is applied first and is below the threshold.
        let r = extrapolated_rate(&s, 300_000, 300_000).unwrap();
        let expected = 60.0 * ((60.0 + 6.0 + 0.0) / 60.0) / 300.0;
        assert!((r - expected).abs() < 1e-12, "{r} vs {expected}");
    }

    #[test]
    fn range_eval_drops_stale_markers_and_keeps_both_ends() {
        let stale = f64::from_bits(crate::prometheus::xor::STALE_NAN_BITS);
        let s = [(0, 1.0), (60_000, 5.0), (90_000, stale), (120_000, 2.0)];
        let mut got = Vec::new();
        range_eval(
            &s,
            RangeFn::MaxOverTime,
            60_000,
            steps(60, 180, 60),
            |t, v| got.push((t, v)),
        );
        // 60 s sees 0 and 60 s; 120 s sees 60 s and 120 s; 180 s sees 120 s only.
        assert_eq!(got, vec![(60_000, 5.0), (120_000, 5.0), (180_000, 2.0)]);
    }

    #[test]
    fn instant_eval_looks_back_and_stops_at_a_stale_marker() {
        let stale = f64::from_bits(crate::prometheus::xor::STALE_NAN_BITS);
        let s = [(0, 1.0), (300_000, 2.0), (400_000, stale), (1_000_000, 3.0)];
        let mut got = Vec::new();
        instant_eval(&s, 300_000, steps(0, 1_200, 300), |t, v| got.push((t, v)));
        // 0: itself; 300: itself; 600: newest is the stale marker; 900: 1,000 s is
        // later and 300 s (the marker at 400 s is newer) gives nothing; 1,200: 1,000 s.
        assert_eq!(got, vec![(0, 1.0), (300_000, 2.0), (1_200_000, 3.0)]);
    }
}
