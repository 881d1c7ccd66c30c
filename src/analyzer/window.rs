//! The fit's input: a window of hourly summaries merged, and how much to trust it.

use super::history::{Hist, History};
use crate::model::Confidence;

/// Merged usage and signals over the window.
pub(crate) struct Window {
    pub cpu: Hist,
    pub memory: Hist,
    /// Each hour's memory peak.
    pub memory_peaks: Vec<f64>,
    pub history_hours: u32,
    pub first_hour: Option<i64>,
    pub last_hour: Option<i64>,
    pub oom_kills: u32,
    pub restarts: u32,
    pub throttled_ratio: Option<f64>,
}

/// Merges the window's day blocks (dense bucket arrays: far cheaper than merging the
/// hours' sketches again).
pub(crate) fn merge(h: &History<'_>) -> Window {
    let empty = || Hist::new(0, 0);
    let mut w = Window {
        cpu: h.blocks.first().map_or_else(empty, |b| b.cpu.empty_like()),
        memory: h
            .blocks
            .first()
            .map_or_else(empty, |b| b.memory.empty_like()),
        memory_peaks: Vec::new(),
        history_hours: 0,
        first_hour: h.first_hour,
        last_hour: h.last_hour,
        oom_kills: 0,
        restarts: 0,
        throttled_ratio: None,
    };
    let (mut periods, mut throttled) = (0.0, 0.0);
    for b in &h.blocks {
        w.cpu.add(&b.cpu, 1.0);
        w.memory.add(&b.memory, 1.0);
        w.memory_peaks
            .extend(b.memory_hour_peaks.iter().map(|(_, p)| *p));
        w.history_hours += b.hours;
        w.oom_kills += b.oom_kills;
        w.restarts += b.restarts;
        periods += b.cfs_periods;
        throttled += b.cfs_throttled;
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
    use crate::analyzer::history::test_hour as hour;
    use crate::model::Resource;

    #[test]
    fn merges_only_the_hours_inside_and_counts_gaps_against_confidence() {
        let usage = vec![
            hour(Resource::Cpu, 0, &[1.0]),
            hour(Resource::Cpu, 3600, &[2.0, 3.0]),
            hour(Resource::Memory, 3600, &[5.0]),
            hour(Resource::Cpu, 4 * 3600, &[4.0]),
            hour(Resource::Cpu, 9 * 3600, &[9.0]),
        ];
        let h = History::build(&usage, &[], 3600, 9 * 3600);
        let w = merge(&h);
        assert_eq!(w.cpu.count(), 3);
        assert_eq!(w.cpu.max, 4.0);
        assert_eq!(w.memory.count(), 1);
        assert_eq!(w.history_hours, 2);
        assert_eq!((w.first_hour, w.last_hour), (Some(3600), Some(4 * 3600)));
        // 2 hours of 4 spanned, 2 of 168 wanted.
        let (level, score) = confidence(&w);
        assert_eq!(level, Confidence::Low);
        assert_eq!(score, 0.01);
        assert_eq!(
            confidence(&merge(&History::build(&[], &[], 0, 3600))).1,
            0.0
        );
    }
}
