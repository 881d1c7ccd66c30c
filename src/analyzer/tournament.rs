//! Picks a strategy per container from its walk-forward figures: the least idle cost
//! among candidates that meet the safety objective, sticking with the previous choice
//! when it is nearly as good, and the safest candidate (flagged) when none meets it.

use serde::{Deserialize, Serialize};

use crate::model::StrategyScore;

/// The `[backtest]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BacktestSettings {
    /// Held-out days at the end of the window, each fitted on the history before it.
    pub days: u32,
    /// Largest share of held-out CPU points above the CPU limit the objective allows.
    pub max_cpu_over_limit: f64,
    /// Points of tolerance on the share of CPU points above the request: p95 promises 5%,
    /// so with 0.01 up to 6% passes.
    pub cpu_request_tolerance: f64,
    /// A container keeps its previous strategy while that one meets the objective and
    /// costs at most this share more than the best (0.1 = 10%), so it does not flip.
    pub switch_penalty: f64,
}

impl Default for BacktestSettings {
    fn default() -> Self {
        BacktestSettings {
            days: 7,
            max_cpu_over_limit: 0.005,
            cpu_request_tolerance: 0.01,
            switch_penalty: 0.10,
        }
    }
}

impl BacktestSettings {
    /// Checks the values against the analysis window (in hours) and the history a fit needs.
    /// More days than the window holds is an error only when `days` was set explicitly:
    /// otherwise the walk-forward scores the days that have history before them.
    pub fn validate(
        &self,
        window_hours: u32,
        min_history_hours: u32,
        explicit_days: bool,
    ) -> Result<(), String> {
        if self.days == 0 {
            return Err("backtest.days must be at least 1, got 0".into());
        }
        let window_days = window_hours / 24;
        let needed_days = min_history_hours.div_ceil(24);
        if explicit_days && self.days + needed_days > window_days {
            return Err(format!(
                "backtest.days = {} leaves too little history to fit on: the {}-day window holds at most {} held-out days after the {} hours a fit needs",
                self.days,
                window_days,
                window_days.saturating_sub(needed_days),
                min_history_hours
            ));
        }
        if !(0.0..=1.0).contains(&self.max_cpu_over_limit) {
            return Err(format!(
                "backtest.max_cpu_over_limit must be between 0 and 1, got {}",
                self.max_cpu_over_limit
            ));
        }
        if !(0.0..=1.0).contains(&self.cpu_request_tolerance) {
            return Err(format!(
                "backtest.cpu_request_tolerance must be between 0 and 1, got {}",
                self.cpu_request_tolerance
            ));
        }
        if !(0.0..=10.0).contains(&self.switch_penalty) {
            return Err(format!(
                "backtest.switch_penalty must be between 0 and 10, got {}",
                self.switch_penalty
            ));
        }
        Ok(())
    }
}

/// Marks `score.met_objective` and `score.misses` for a policy promising the CPU
/// `percentile` (95: 5% of points above the request).
pub(crate) fn judge(score: &mut StrategyScore, percentile: f64, s: &BacktestSettings) {
    let f = &score.holdout;
    let mut misses = Vec::new();
    if f.days == 0 {
        misses.push("no held-out day could be fitted".into());
    }
    if f.memory_overrun_hours > 0 {
        misses.push(format!(
            "{} held-out hours above the memory limit",
            f.memory_overrun_hours
        ));
    }
    if let Some(share) = f.cpu_over_limit_share.filter(|v| *v > s.max_cpu_over_limit) {
        misses.push(format!(
            "CPU above the limit on {:.2}% of points (objective ≤ {:.2}%)",
            share * 100.0,
            s.max_cpu_over_limit * 100.0
        ));
    }
    let promised = 1.0 - percentile / 100.0;
    if let Some(share) = f
        .cpu_over_request_share
        .filter(|v| *v > promised + s.cpu_request_tolerance)
    {
        misses.push(format!(
            "CPU above the request on {:.1}% of points (p{} promises {:.1}%, tolerance {:.1} points)",
            share * 100.0,
            super::trim_float(percentile),
            promised * 100.0,
            s.cpu_request_tolerance * 100.0
        ));
    }
    score.met_objective = misses.is_empty();
    score.misses = misses;
}

/// How safe a candidate was, worst first: overrun hours, then CPU over the limit, then
/// over the request.
fn risk(s: &StrategyScore) -> (u32, f64, f64) {
    (
        s.holdout.memory_overrun_hours,
        s.holdout.cpu_over_limit_share.unwrap_or(0.0),
        s.holdout.cpu_over_request_share.unwrap_or(0.0),
    )
}

/// The outcome of a tournament.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    /// Index into the scores.
    pub index: usize,
    /// How it was chosen, for the evidence.
    pub why: String,
    /// True when no candidate met the objective.
    pub missed: bool,
}

/// Picks among judged `scores` (never empty); `previous` is the strategy chosen last time.
pub(crate) fn choose(
    scores: &[StrategyScore],
    previous: Option<&str>,
    s: &BacktestSettings,
) -> Choice {
    let passing: Vec<usize> = (0..scores.len())
        .filter(|i| scores[*i].met_objective)
        .collect();
    let cost = |i: usize| scores[i].idle_monthly_cost;
    let Some(best) = passing
        .iter()
        .copied()
        .min_by(|a, b| cost(*a).total_cmp(&cost(*b)))
    else {
        let safest = (0..scores.len())
            .min_by(|a, b| {
                let (x, y) = (risk(&scores[*a]), risk(&scores[*b]));
                x.0.cmp(&y.0)
                    .then(x.1.total_cmp(&y.1))
                    .then(x.2.total_cmp(&y.2))
                    .then(cost(*a).total_cmp(&cost(*b)))
            })
            .unwrap_or(0);
        return Choice {
            index: safest,
            why: format!(
                "auto: no strategy met the objective on the held-out days; chose the safest, {}",
                scores[safest].strategy
            ),
            missed: true,
        };
    };
    let kept = previous.and_then(|p| {
        passing
            .iter()
            .copied()
            .find(|i| scores[*i].strategy == p)
            .filter(|i| cost(*i) <= cost(best) * (1.0 + s.switch_penalty) + 1e-9)
    });
    match kept {
        Some(i) if i != best => Choice {
            index: i,
            why: format!(
                "auto: kept {} (chosen last time, meets the objective, within {}% of the least idle cost, {})",
                scores[i].strategy,
                super::trim_float(s.switch_penalty * 100.0),
                scores[best].strategy
            ),
            missed: false,
        },
        _ => Choice {
            index: best,
            why: format!(
                "auto: least idle cost among {} of {} strategies meeting the objective on the held-out days",
                passing.len(),
                scores.len()
            ),
            missed: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HoldoutFigures;

    fn score(
        name: &str,
        overrun: u32,
        over_limit: f64,
        over_request: f64,
        cost: f64,
    ) -> StrategyScore {
        let mut s = StrategyScore {
            strategy: name.into(),
            holdout: HoldoutFigures {
                days: 7,
                memory_overrun_hours: overrun,
                cpu_over_limit_share: Some(over_limit),
                cpu_over_request_share: Some(over_request),
                ..HoldoutFigures::default()
            },
            idle_monthly_cost: cost,
            ..StrategyScore::default()
        };
        judge(&mut s, 95.0, &BacktestSettings::default());
        s
    }

    #[test]
    fn the_cheapest_safe_candidate_wins_and_a_near_tie_keeps_the_previous() {
        let scores = [
            score("guidance", 0, 0.0, 0.05, 10.0),
            score("vpa", 0, 0.0, 0.02, 30.0),
            score("krr-simple", 0, 0.0, 0.09, 5.0),
            score("time-aware", 2, 0.0, 0.01, 1.0),
        ];
        assert!(!scores[2].met_objective && !scores[3].met_objective);
        assert_eq!(
            scores[3].misses,
            ["2 held-out hours above the memory limit"]
        );
        let s = BacktestSettings::default();
        let c = choose(&scores, None, &s);
        assert_eq!((c.index, c.missed), (0, false));
        assert!(c.why.contains("2 of 4"), "{}", c.why);
        // vpa costs 3× guidance: no stickiness; guidance within 10% of a cheaper one: kept.
        assert_eq!(choose(&scores, Some("vpa"), &s).index, 0);
        let close = [
            score("guidance", 0, 0.0, 0.05, 10.5),
            score("decaying", 0, 0.0, 0.05, 10.0),
        ];
        let kept = choose(&close, Some("guidance"), &s);
        assert_eq!(kept.index, 0);
        assert!(kept.why.contains("kept guidance"));
        // The same history gives the same choice every time.
        assert_eq!(choose(&close, None, &s), choose(&close, None, &s));
    }

    #[test]
    fn when_none_is_safe_the_safest_is_chosen_and_flagged() {
        let scores = [
            score("guidance", 3, 0.0, 0.05, 1.0),
            score("vpa", 0, 0.02, 0.05, 9.0),
            score("decaying", 0, 0.01, 0.05, 5.0),
        ];
        let c = choose(&scores, None, &BacktestSettings::default());
        assert_eq!((c.index, c.missed), (2, true));
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let s = BacktestSettings::default();
        assert!(s.validate(14 * 24, 24, true).is_ok());
        // The default 7 days in a 7-day window: the walk-forward scores what it can.
        assert!(s.validate(7 * 24, 24, false).is_ok());
        let zero = BacktestSettings {
            days: 0,
            ..s.clone()
        };
        assert_eq!(
            zero.validate(336, 24, false).unwrap_err(),
            "backtest.days must be at least 1, got 0"
        );
        let many = BacktestSettings { days: 14, ..s };
        assert!(many
            .validate(336, 24, true)
            .unwrap_err()
            .contains("at most 13 held-out days"));
    }
}
