//! Replays requests and limits on a held-out day, and adds days up into the figures a
//! user reads: overrun hours, shares of CPU points above the request and the limit, slack.

use super::history::Block;
use super::Pricing;
use crate::model::{HoldoutFigures, Resources};

/// Hours in an average month, for the idle cost.
const HOURS_PER_MONTH: f64 = 730.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Sums over held-out days.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    pub days: u32,
    cpu_points: f64,
    cpu_over_request: f64,
    cpu_over_limit: f64,
    cpu_used: f64,
    cpu_requested: f64,
    has_cpu_request: bool,
    has_cpu_limit: bool,
    memory_points: f64,
    memory_used: f64,
    memory_requested: f64,
    has_memory_request: bool,
    has_memory_limit: bool,
    overrun_hours: u32,
    peak_ratio: Option<f64>,
}

impl Tally {
    /// Adds held-out `day` replayed against `r` (values fitted before the day).
    pub fn add_day(&mut self, day: &Block<'_>, r: &Resources) {
        let points = day.cpu.total();
        if points <= 0.0 {
            return;
        }
        self.days += 1;
        self.cpu_points += points;
        self.cpu_used += day.cpu.sum;
        if let Some(req) = r.cpu_request_millicores {
            self.has_cpu_request = true;
            self.cpu_over_request += day.cpu.weight_above(req as f64 / 1000.0);
            self.cpu_requested += points * req as f64 / 1000.0;
        }
        if let Some(lim) = r.cpu_limit_millicores {
            self.has_cpu_limit = true;
            self.cpu_over_limit += day.cpu.weight_above(lim as f64 / 1000.0);
        }
        let memory_points = day.memory.total();
        self.memory_points += memory_points;
        self.memory_used += day.memory.sum;
        if let Some(req) = r.memory_request_bytes {
            self.has_memory_request = true;
            self.memory_requested += memory_points * req as f64;
        }
        if let Some(lim) = r.memory_limit_bytes.filter(|l| *l > 0) {
            self.has_memory_limit = true;
            let lim = lim as f64;
            self.overrun_hours += day
                .memory_hour_peaks
                .iter()
                .filter(|(_, p)| *p > lim)
                .count() as u32;
            if day.memory.total() > 0.0 {
                let ratio = day.memory.max / lim;
                self.peak_ratio = Some(self.peak_ratio.map_or(ratio, |r| r.max(ratio)));
            }
        }
    }

    /// The figures of the days added.
    pub fn figures(&self) -> HoldoutFigures {
        let share = |n: f64, has: bool| (has && self.cpu_points > 0.0).then(|| n / self.cpu_points);
        let slack = |used: f64, requested: f64, has: bool| {
            (has && requested > 0.0).then(|| 1.0 - used / requested)
        };
        HoldoutFigures {
            days: self.days,
            memory_overrun_hours: self.overrun_hours,
            memory_peak_ratio: self.peak_ratio,
            cpu_over_limit_share: share(self.cpu_over_limit, self.has_cpu_limit),
            cpu_over_request_share: share(self.cpu_over_request, self.has_cpu_request),
            cpu_slack: slack(self.cpu_used, self.cpu_requested, self.has_cpu_request),
            memory_slack: slack(
                self.memory_used,
                self.memory_requested,
                self.has_memory_request,
            ),
            cpu_request_mean_millicores: (self.has_cpu_request && self.cpu_points > 0.0)
                .then(|| self.cpu_requested / self.cpu_points * 1000.0),
            memory_request_mean_bytes: (self.has_memory_request && self.memory_points > 0.0)
                .then(|| self.memory_requested / self.memory_points),
        }
    }

    /// Requested but unused cores and GiB per pod over the held-out points, priced for a
    /// month. Negative idle (use above the request) counts as zero: it is borrowed CPU, not
    /// savings.
    pub fn idle_monthly_cost(&self, pricing: &Pricing) -> f64 {
        let per_point = |requested: f64, used: f64, points: f64| {
            if points > 0.0 {
                ((requested - used) / points).max(0.0)
            } else {
                0.0
            }
        };
        let cores = per_point(self.cpu_requested, self.cpu_used, self.cpu_points);
        let gib = per_point(self.memory_requested, self.memory_used, self.memory_points) / GIB;
        (cores * pricing.cpu_core_hour + gib * pricing.memory_gib_hour) * HOURS_PER_MONTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::history::test_hour as hour;
    use crate::analyzer::history::History;
    use crate::model::{Resource, UsageHour};

    #[test]
    fn a_day_replayed_counts_points_hours_and_slack_exactly() {
        // One day: CPU 0.1 .. 1.0 cores ten points an hour, memory 100 MB except 300 MB at hour 5.
        let cpu: Vec<f64> = (1..=10).map(|i| i as f64 / 10.0).collect();
        let usage: Vec<UsageHour> = (0..24)
            .flat_map(|h| {
                let mem = if h == 5 { 300e6 } else { 100e6 };
                [
                    hour(Resource::Cpu, h * 3600, &cpu),
                    hour(Resource::Memory, h * 3600, &[mem]),
                ]
            })
            .collect();
        let h = History::build(&usage, &[], 0, 86_400);
        let r = Resources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: Some(900),
            memory_request_bytes: Some(200_000_000),
            memory_limit_bytes: Some(200_000_000),
        };
        let mut t = Tally::default();
        t.add_day(&h.blocks[0], &r);
        let f = t.figures();
        assert_eq!(f.days, 1);
        assert_eq!(f.memory_overrun_hours, 1);
        assert_eq!(f.memory_peak_ratio, Some(1.5));
        assert_eq!(f.cpu_request_mean_millicores, Some(500.0));
        assert_eq!(f.memory_request_mean_bytes, Some(200e6));
        // 0.6 .. 1.0 above 500m (the bucket holding 0.5 counts as below), 1.0 above 900m.
        assert_eq!(f.cpu_over_request_share, Some(0.5));
        assert_eq!(f.cpu_over_limit_share, Some(0.1));
        let cpu_slack = f.cpu_slack.unwrap();
        assert!((cpu_slack - (1.0 - 0.55 / 0.5)).abs() < 1e-9, "{cpu_slack}");
        let mem_used = (23.0 * 100e6 + 300e6) / 24.0;
        assert!((f.memory_slack.unwrap() - (1.0 - mem_used / 200e6)).abs() < 1e-9);
        let pricing = Pricing::default();
        let idle = t.idle_monthly_cost(&pricing);
        let want = (200e6 - mem_used) / GIB * pricing.memory_gib_hour * HOURS_PER_MONTH;
        assert!((idle - want).abs() < 1e-9, "{idle} vs {want}");
        // No limits: no limit figures, no overrun.
        let mut none = Tally::default();
        none.add_day(&h.blocks[0], &Resources::default());
        assert_eq!(none.figures().cpu_over_limit_share, None);
        assert_eq!(none.figures().memory_overrun_hours, 0);
    }
}
