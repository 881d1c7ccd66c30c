//! The fleet's held-out figures per strategy, from stored or freshly computed
//! recommendations: what `rightsizer backtest` prints so a user can compare strategies,
//! and today's requests, on their own cluster before trusting any of them.

use serde::Serialize;

use super::tournament::{judge, BacktestSettings};
use crate::model::{HoldoutFigures, Recommendation, StrategyScore};

/// One strategy's held-out figures over the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetBacktestRow {
    /// `current` (the values in force), a strategy name, or `chosen` (each container's
    /// strategy: pinned or picked by the tournament).
    pub strategy: String,
    /// Containers with at least one held-out day.
    pub containers: usize,
    /// Fleet CPU slack: 1 − Σ used / Σ requested, each container weighted by its average
    /// replicas and its mean held-out request.
    pub cpu_slack: Option<f64>,
    /// Fleet memory slack, weighted the same way.
    pub memory_slack: Option<f64>,
    /// Held-out hours above the memory limit, summed over containers.
    pub memory_overrun_hours: u32,
    /// Containers that missed the objective on anything.
    pub missed_objective: usize,
    /// Containers with CPU above the limit on more than the objective's share of points.
    pub cpu_over_limit_misses: usize,
    /// Containers with CPU above the request more often than the policy promises.
    pub cpu_over_request_misses: usize,
}

#[derive(Default)]
struct Acc {
    containers: usize,
    cpu: (f64, f64),
    memory: (f64, f64),
    overrun: u32,
    missed: usize,
    over_limit: usize,
    over_request: usize,
}

impl Acc {
    fn add(&mut self, h: &HoldoutFigures, weight: f64, percentile: f64, s: &BacktestSettings) {
        if h.days == 0 {
            return;
        }
        self.containers += 1;
        let w = weight.max(1e-9);
        if let (Some(slack), Some(req)) = (h.cpu_slack, h.cpu_request_mean_millicores) {
            self.cpu.0 += w * req * (1.0 - slack);
            self.cpu.1 += w * req;
        }
        if let (Some(slack), Some(req)) = (h.memory_slack, h.memory_request_mean_bytes) {
            self.memory.0 += w * req * (1.0 - slack);
            self.memory.1 += w * req;
        }
        self.overrun += h.memory_overrun_hours;
        let mut score = StrategyScore {
            holdout: h.clone(),
            ..StrategyScore::default()
        };
        judge(&mut score, percentile, s);
        self.missed += usize::from(!score.met_objective);
        let over_limit = h
            .cpu_over_limit_share
            .is_some_and(|v| v > s.max_cpu_over_limit);
        let promised = 1.0 - percentile / 100.0 + s.cpu_request_tolerance;
        let over_request = h.cpu_over_request_share.is_some_and(|v| v > promised);
        self.over_limit += usize::from(over_limit);
        self.over_request += usize::from(over_request);
    }

    fn row(self, strategy: &str) -> FleetBacktestRow {
        let slack =
            |(used, requested): (f64, f64)| (requested > 0.0).then(|| 1.0 - used / requested);
        FleetBacktestRow {
            strategy: strategy.into(),
            containers: self.containers,
            cpu_slack: slack(self.cpu),
            memory_slack: slack(self.memory),
            memory_overrun_hours: self.overrun,
            missed_objective: self.missed,
            cpu_over_limit_misses: self.over_limit,
            cpu_over_request_misses: self.over_request,
        }
    }
}

/// Rows for `current`, each candidate strategy (in the order the recommendations list
/// them) and `chosen`. The CPU promise is each recommendation's percentile for its own
/// strategy's figures, and the policy's (95 unless configured) for the others.
pub fn fleet_rows(recs: &[Recommendation], s: &BacktestSettings) -> Vec<FleetBacktestRow> {
    let mut names: Vec<String> = Vec::new();
    for r in recs {
        for score in &r.evidence.strategy_scores {
            if !names.contains(&score.strategy) {
                names.push(score.strategy.clone());
            }
        }
    }
    let mut current = Acc::default();
    let mut chosen = Acc::default();
    let mut per: Vec<Acc> = names.iter().map(|_| Acc::default()).collect();
    for r in recs {
        let Some(b) = &r.evidence.backtest else {
            continue;
        };
        let weight = r.evidence.average_replicas;
        let percentile = r.evidence.cpu_percentile;
        if let Some(h) = &b.holdout_current {
            current.add(h, weight, percentile, s);
        }
        if let Some(h) = &b.holdout {
            chosen.add(h, weight, percentile, s);
        }
        for score in &r.evidence.strategy_scores {
            let i = names.iter().position(|n| *n == score.strategy).unwrap_or(0);
            // The VPA emulation promises its own p90.
            let p = if score.strategy == "vpa" {
                90.0
            } else {
                percentile
            };
            per[i].add(&score.holdout, weight, p, s);
        }
    }
    let mut rows = vec![current.row("current")];
    rows.extend(per.into_iter().zip(&names).map(|(a, n)| a.row(n)));
    rows.push(chosen.row("chosen"));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, EvidenceBacktest};

    fn figures(slack: f64, req: f64, overrun: u32, over_request: f64) -> HoldoutFigures {
        HoldoutFigures {
            days: 3,
            memory_overrun_hours: overrun,
            cpu_over_limit_share: Some(0.0),
            cpu_over_request_share: Some(over_request),
            cpu_slack: Some(slack),
            memory_slack: Some(slack),
            cpu_request_mean_millicores: Some(req),
            memory_request_mean_bytes: Some(req * 1e6),
            ..HoldoutFigures::default()
        }
    }

    fn rec(replicas: f64, current: HoldoutFigures, guidance: HoldoutFigures) -> Recommendation {
        let score = StrategyScore {
            strategy: "guidance".into(),
            holdout: guidance.clone(),
            chosen: true,
            ..StrategyScore::default()
        };
        Recommendation {
            evidence: Evidence {
                cpu_percentile: 95.0,
                average_replicas: replicas,
                backtest: Some(EvidenceBacktest {
                    holdout: Some(guidance),
                    holdout_current: Some(current),
                    ..EvidenceBacktest::default()
                }),
                strategy_scores: vec![score],
                ..Evidence::default()
            },
            ..serde_json::from_value(serde_json::json!({
                "cluster": "c", "namespace": "n", "kind": "Deployment", "workload": "w",
                "container": "c", "status": "ok", "current": {}, "recommended": {},
                "confidence": "high", "confidence_score": 1.0, "reason": "", "strategy": "guidance",
                "evidence": {"cpu_percentile": 95.0, "cpu_percentile_millicores": null,
                  "memory_peak_bytes": null, "samples": 0, "memory_samples": 0,
                  "history_hours": 0, "window_hours": 0, "margin": 0.15, "rules": []},
                "computed_at": 0
            }))
            .unwrap()
        }
    }

    #[test]
    fn fleet_slack_weighs_containers_by_replicas_and_requests() {
        // Container A: 2 replicas × 1000m at 50% slack; B: 1 replica × 100m at 90% slack.
        let recs = [
            rec(
                2.0,
                figures(0.8, 2000.0, 0, 0.0),
                figures(0.5, 1000.0, 0, 0.04),
            ),
            rec(
                1.0,
                figures(0.9, 200.0, 1, 0.2),
                figures(0.9, 100.0, 0, 0.09),
            ),
        ];
        let rows = fleet_rows(&recs, &BacktestSettings::default());
        let names: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
        assert_eq!(names, ["current", "guidance", "chosen"]);
        let g = &rows[1];
        // used = 2 × 1000 × 0.5 + 1 × 100 × 0.1 = 1010 of 2100 requested.
        assert!((g.cpu_slack.unwrap() - (1.0 - 1010.0 / 2100.0)).abs() < 1e-12);
        assert_eq!(
            (g.containers, g.missed_objective, g.cpu_over_request_misses),
            (2, 1, 1)
        );
        assert_eq!(
            rows[2],
            FleetBacktestRow {
                strategy: "chosen".into(),
                ..g.clone()
            }
        );
        let c = &rows[0];
        assert_eq!((c.memory_overrun_hours, c.missed_objective), (1, 1));
    }
}
