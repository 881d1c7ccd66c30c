//! The held-out backtest and the strategy tournament in words. The dashboard, the Markdown
//! and HTML reports and the pull-request body all read these figures; formatting them in one
//! place keeps a number looking the same on every surface a reviewer compares.

use super::HoldoutTotals;
use crate::model::{Evidence, HoldoutFigures};

/// What every surface says when a recommendation has no held-out figures (rows analyzed
/// before walk-forward existed, or too little history before the held-out days).
pub const NOT_ENOUGH_HISTORY: &str = "not enough history for a held-out backtest";

/// Shown where a figure was not measured (e.g. no CPU limit to be above).
const NOT_MEASURED: &str = "n/a";

/// A share of held-out points (0..1) with one decimal: `4.2%`.
pub fn share(v: Option<f64>) -> String {
    v.map(|s| format!("{:.1}%", s * 100.0))
        .unwrap_or_else(|| NOT_MEASURED.into())
}

/// Slack (0..1) as a whole percentage, `31%`; negative when use was above the request.
pub fn slack(v: Option<f64>) -> String {
    // `+ 0.0` keeps a slack that rounds to zero from printing as `-0%`.
    v.map(|s| format!("{:.0}%", (s * 100.0).round() + 0.0))
        .unwrap_or_else(|| NOT_MEASURED.into())
}

/// The highest held-out memory peak over the limit fitted before its day: `0.82×`.
pub fn peak_ratio(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×"))
        .unwrap_or_else(|| NOT_MEASURED.into())
}

/// `1 day`, `7 days`.
pub fn days(n: u32) -> String {
    format!("{n} day{}", if n == 1 { "" } else { "s" })
}

/// `0 memory overrun hours`, `1 memory overrun hour`.
pub fn overrun_hours(n: u32) -> String {
    format!("{n} memory overrun hour{}", if n == 1 { "" } else { "s" })
}

/// `7 days: 0 memory overrun hours, CPU above limit 0.0%, above request 4.2%, slack CPU 31% /
/// memory 18%`.
pub fn summary(h: &HoldoutFigures) -> String {
    format!("{}: {}", days(h.days), figures(h))
}

/// [`summary`] without the days, for a second set of figures on the same days.
pub fn figures(h: &HoldoutFigures) -> String {
    format!(
        "{}, CPU above limit {}, above request {}, slack CPU {} / memory {}",
        overrun_hours(h.memory_overrun_hours),
        share(h.cpu_over_limit_share),
        share(h.cpu_over_request_share),
        slack(h.cpu_slack),
        slack(h.memory_slack),
    )
}

/// `fitted from 2024-01-08 06:00 UTC, after a regime change`.
pub fn fitted_from(secs: i64) -> String {
    format!(
        "fitted from {}, after a regime change",
        super::text::timestamp(secs)
    )
}

/// `held out 7 days: …`, or [`NOT_ENOUGH_HISTORY`].
pub fn line(h: Option<&HoldoutFigures>) -> String {
    match h {
        Some(h) => format!("held out {}", summary(h)),
        None => NOT_ENOUGH_HISTORY.into(),
    }
}

/// The walk-forward figures of the recommendation, when there are any.
pub fn recommended(e: &Evidence) -> Option<&HoldoutFigures> {
    e.backtest.as_ref().and_then(|b| b.holdout.as_ref())
}

/// The requests and limits in force, replayed on the same held-out days.
pub fn current(e: &Evidence) -> Option<&HoldoutFigures> {
    e.backtest.as_ref().and_then(|b| b.holdout_current.as_ref())
}

/// `krr-simple (auto: least idle cost among 3 strategies meeting the objective)`, or just the
/// name when nothing says how it was chosen.
pub fn strategy(name: &str, choice: Option<&str>) -> String {
    match choice.filter(|c| !c.is_empty()) {
        Some(c) => format!("{name} ({c})"),
        None => name.to_string(),
    }
}

/// The fleet's held-out slack and overruns, proposals against the values in force (a
/// report's summary).
pub fn fleet(t: Option<&HoldoutTotals>) -> String {
    let Some(t) = t else {
        return format!(
            "Held out: {} on any container with a proposed change.",
            NOT_ENOUGH_HISTORY
        );
    };
    format!(
        "Held out (days the numbers were not fitted on, {} container{} with a proposed change): \
         slack CPU {} recommended vs {} now, memory {} vs {}; memory overrun hours {} vs {}.",
        t.containers,
        if t.containers == 1 { "" } else { "s" },
        slack(t.cpu_slack),
        slack(t.cpu_slack_current),
        slack(t.memory_slack),
        slack(t.memory_slack_current),
        t.memory_overrun_hours,
        t.memory_overrun_hours_current,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_as_documented() {
        let h = HoldoutFigures {
            days: 7,
            memory_overrun_hours: 0,
            memory_peak_ratio: Some(0.8234),
            cpu_over_limit_share: Some(0.0),
            cpu_over_request_share: Some(0.042),
            cpu_slack: Some(0.31),
            memory_slack: Some(0.184),
            ..HoldoutFigures::default()
        };
        assert_eq!(
            line(Some(&h)),
            "held out 7 days: 0 memory overrun hours, CPU above limit 0.0%, above request 4.2%, \
             slack CPU 31% / memory 18%"
        );
        assert_eq!(line(None), NOT_ENOUGH_HISTORY);
        let one = HoldoutFigures {
            days: 1,
            memory_overrun_hours: 1,
            cpu_slack: Some(-0.001),
            ..HoldoutFigures::default()
        };
        assert_eq!(
            summary(&one),
            "1 day: 1 memory overrun hour, CPU above limit n/a, above request n/a, \
             slack CPU 0% / memory n/a"
        );
        assert_eq!(peak_ratio(h.memory_peak_ratio), "0.82×");
        assert_eq!(
            fitted_from(1_704_693_600),
            "fitted from 2024-01-08 06:00 UTC, after a regime change"
        );
        assert_eq!(slack(Some(-0.12)), "-12%");
        assert_eq!(
            strategy("vpa", Some("pinned by namespace shop")),
            "vpa (pinned by namespace shop)"
        );
        assert_eq!(strategy("guidance", None), "guidance");
    }
}
