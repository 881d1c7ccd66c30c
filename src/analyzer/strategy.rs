//! Strategies turn a window of hourly summaries into the base numbers: a CPU percentile
//! and a memory basis. They differ only in how much each hour counts.

use std::time::Duration;

use super::policy::{MemoryBasis, Policy, StrategyName};
use crate::sketch::Sketch;

/// How hours are weighed. `window_end` is the exclusive end of the window (unix seconds).
pub trait Strategy: Send + Sync {
    /// Name reported with every recommendation.
    fn name(&self) -> &'static str;
    /// Weight of the hour starting at `hour_start`.
    fn weight(&self, hour_start: i64, window_end: i64) -> f64;
}

/// Every hour counts the same: the default, and what the guidance is written for.
pub struct Guidance;

impl Strategy for Guidance {
    fn name(&self) -> &'static str {
        "guidance"
    }

    fn weight(&self, _hour_start: i64, _window_end: i64) -> f64 {
        1.0
    }
}

/// Recent hours weigh more; a weight halves every `half_life`, as in the VPA recommender's
/// decaying histogram, so a workload that changed last week is sized for what it is now.
pub struct Decaying {
    /// Age at which an hour counts half.
    pub half_life: Duration,
}

impl Strategy for Decaying {
    fn name(&self) -> &'static str {
        "decaying"
    }

    fn weight(&self, hour_start: i64, window_end: i64) -> f64 {
        let age = (window_end - (hour_start + 3600)).max(0) as f64;
        0.5f64.powf(age / self.half_life.as_secs_f64())
    }
}

/// The strategy a policy names.
pub fn for_policy(policy: &Policy) -> Box<dyn Strategy> {
    match policy.strategy {
        StrategyName::Guidance => Box::new(Guidance),
        StrategyName::Decaying => Box::new(Decaying {
            half_life: policy.half_life,
        }),
    }
}

/// The `q`-quantile of the hours under a strategy's weights.
pub fn quantile(
    strategy: &dyn Strategy,
    hours: &[(i64, &Sketch)],
    q: f64,
    window_end: i64,
) -> Option<f64> {
    let weighted: Vec<(f64, &Sketch)> = hours
        .iter()
        .map(|(h, s)| (strategy.weight(*h, window_end), *s))
        .collect();
    Sketch::weighted_quantile(&weighted, q)
}

/// The memory basis: the peak (never decayed: memory is not compressible, an old peak
/// can come back) or a weighted percentile.
pub fn memory_basis(
    strategy: &dyn Strategy,
    hours: &[(i64, &Sketch)],
    basis: MemoryBasis,
    window_end: i64,
) -> Option<f64> {
    match basis {
        MemoryBasis::Max => hours
            .iter()
            .filter(|(_, s)| s.count() > 0)
            .map(|(_, s)| s.max())
            .reduce(f64::max),
        MemoryBasis::Percentile(p) => quantile(strategy, hours, p / 100.0, window_end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        values.iter().for_each(|v| s.insert(*v).unwrap());
        s
    }

    #[test]
    fn decaying_follows_recent_hours() {
        // 13 days at 1 core, then one day at 0.2 cores.
        let old = sketch(&[1.0; 60]);
        let new = sketch(&[0.2; 60]);
        let end = 14 * 24 * 3600;
        let hours: Vec<(i64, &Sketch)> = (0..14 * 24)
            .map(|h| (h * 3600, if h >= 13 * 24 { &new } else { &old }))
            .collect();
        let flat = quantile(&Guidance, &hours, 0.5, end).unwrap();
        let decaying = quantile(
            &Decaying {
                half_life: Duration::from_secs(6 * 3600),
            },
            &hours,
            0.5,
            end,
        )
        .unwrap();
        assert!((flat - 1.0).abs() < 0.01, "{flat}");
        assert!((decaying - 0.2).abs() < 0.01, "{decaying}");
        let d = Decaying {
            half_life: Duration::from_secs(24 * 3600),
        };
        assert_eq!(d.weight(end - 3600, end), 1.0);
        assert!((d.weight(end - 25 * 3600, end) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn peak_is_never_decayed() {
        let spike = sketch(&[900.0]);
        let calm = sketch(&[100.0]);
        let hours = [(0, &spike), (3600 * 300, &calm)];
        let d = Decaying {
            half_life: Duration::from_secs(3600),
        };
        assert_eq!(
            memory_basis(&d, &hours, MemoryBasis::Max, 3600 * 301),
            Some(900.0)
        );
    }
}
