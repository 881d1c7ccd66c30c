//! The fit's input: a window of hourly summaries merged, and how much to trust it.

use crate::model::{Confidence, Resource, SignalHour, UsageHour};
use crate::sketch::Sketch;

/// Merged usage and signals over `[from, to)`.
pub(crate) struct Window<'a> {
    pub cpu: Sketch,
    pub memory: Sketch,
    pub cpu_hours: Vec<(i64, &'a Sketch)>,
    pub memory_hours: Vec<(i64, &'a Sketch)>,
    pub history_hours: u32,
    pub first_hour: Option<i64>,
    pub last_hour: Option<i64>,
    pub oom_kills: u32,
    pub restarts: u32,
    pub throttled_ratio: Option<f64>,
}

/// Merges the hours of `usage` and `signals` that start in `[from, to)`.
pub(crate) fn merge<'a>(
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
pub(crate) fn confidence(w: &Window) -> (Confidence, f64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerKey;

    fn hour(resource: Resource, hour_start: i64, values: &[f64]) -> UsageHour {
        let mut sketch = Sketch::new();
        values.iter().for_each(|v| sketch.insert(*v).unwrap());
        UsageHour {
            key: ContainerKey {
                cluster: "c".into(),
                namespace: "n".into(),
                kind: "Deployment".into(),
                workload: "w".into(),
                container: "c".into(),
            },
            resource,
            hour_start,
            sketch,
        }
    }

    #[test]
    fn merges_only_the_hours_inside_and_counts_gaps_against_confidence() {
        let usage = vec![
            hour(Resource::Cpu, 0, &[1.0]),
            hour(Resource::Cpu, 3600, &[2.0, 3.0]),
            hour(Resource::Memory, 3600, &[5.0]),
            hour(Resource::Cpu, 4 * 3600, &[4.0]),
            hour(Resource::Cpu, 9 * 3600, &[9.0]),
        ];
        let w = merge(&usage, &[], 3600, 9 * 3600);
        assert_eq!(w.cpu.count(), 3);
        assert_eq!(w.cpu.max(), 4.0);
        assert_eq!(w.memory.count(), 1);
        assert_eq!(w.history_hours, 2);
        assert_eq!((w.first_hour, w.last_hour), (Some(3600), Some(4 * 3600)));
        // 2 hours of 4 spanned, 2 of 168 wanted.
        let (level, score) = confidence(&w);
        assert_eq!(level, Confidence::Low);
        assert_eq!(score, 0.01);
        assert_eq!(confidence(&merge(&[], &[], 0, 3600)).1, 0.0);
    }
}
