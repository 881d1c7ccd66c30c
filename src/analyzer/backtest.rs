//! Replays the window under given requests and limits: how often CPU went above the
//! request and the limit, and how many hours memory would have gone above the limit.

use super::history::Hist;
use crate::model::{BacktestFigures, Resources};

/// The figures for `resources` over the window's merged CPU samples and hourly memory peaks.
pub(crate) fn replay(resources: &Resources, cpu: &Hist, memory_peaks: &[f64]) -> BacktestFigures {
    let share = |millicores: Option<i64>| -> Option<f64> {
        let m = millicores?;
        (cpu.total() > 0.0).then(|| cpu.weight_above(m as f64 / 1000.0) / cpu.total())
    };
    BacktestFigures {
        cpu_over_request_share: share(resources.cpu_request_millicores),
        cpu_over_limit_share: share(resources.cpu_limit_millicores),
        memory_over_limit_hours: resources
            .memory_limit_bytes
            .map(|limit| memory_peaks.iter().filter(|p| **p > limit as f64).count() as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::Sketch;

    #[test]
    fn counts_time_above_request_limit_and_memory_hours() {
        let mut cpu = Sketch::new();
        for i in 0..100 {
            cpu.insert(i as f64 / 100.0).unwrap(); // 0 .. 0.99 cores
        }
        let mut h1 = Sketch::new();
        h1.insert(100.0).unwrap();
        let mut h2 = Sketch::new();
        h2.insert(300.0).unwrap();
        let r = Resources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: Some(900),
            memory_request_bytes: Some(200),
            memory_limit_bytes: Some(200),
        };
        let cpu = Hist::of(&cpu);
        let f = replay(&r, &cpu, &[h1.max(), h2.max()]);
        let over_request = f.cpu_over_request_share.unwrap();
        assert!((over_request - 0.49).abs() <= 0.02, "{over_request}");
        let over_limit = f.cpu_over_limit_share.unwrap();
        assert!((over_limit - 0.09).abs() <= 0.02, "{over_limit}");
        assert_eq!(f.memory_over_limit_hours, Some(1));
        let none = replay(&Resources::default(), &cpu, &[h1.max()]);
        assert_eq!(none, BacktestFigures::default());
    }
}
