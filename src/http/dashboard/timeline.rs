//! The workload page's hour-by-hour usage chart: the report's renderer
//! ([`crate::report::timeline`]) fed with the page's marks and signals, so the dashboard and
//! the HTML report draw the same chart.

use super::chart::{format_value, Mark, MarkKind, Unit};
use crate::model::SignalHour;
pub use crate::report::timeline::{points, HourPoint};
use crate::report::timeline::{render, EventHour, Level};

/// The chart of `points` over `[from, to)` (unix seconds, hour starts), with `marks` (the
/// basis mark is left out: it is a statistic of the whole window) and the hours of `signals`
/// with OOM kills or restarts.
pub fn timeline(
    title: &str,
    unit: Unit,
    points: &[HourPoint],
    marks: &[Mark],
    signals: &[SignalHour],
    window: (i64, i64),
) -> String {
    let levels: Vec<Level> = marks
        .iter()
        .filter(|m| m.kind != MarkKind::Basis)
        .map(|m| Level {
            name: m.kind.name(),
            color: m.kind.color(),
            dash: m.kind.dash(),
            label: &m.label,
            value: m.value,
        })
        .collect();
    let events: Vec<EventHour> = signals.iter().map(EventHour::from).collect();
    render(title, points, &levels, &events, window, &|v| {
        format_value(unit, v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerKey;

    #[test]
    fn draws_each_series_the_lines_and_the_events() {
        let points: Vec<HourPoint> = (0..3)
            .map(|i| HourPoint {
                hour_start: i * 3600,
                p50: 100.0,
                p95: 200.0,
                max: 300.0 + i as f64,
            })
            .collect();
        let marks = [
            Mark {
                kind: MarkKind::CurrentRequest,
                label: "current request".into(),
                value: 500.0,
            },
            Mark {
                kind: MarkKind::Basis,
                label: "p95 usage".into(),
                value: 200.0,
            },
        ];
        let key = ContainerKey {
            cluster: "c".into(),
            namespace: "n".into(),
            kind: "Deployment".into(),
            workload: "w".into(),
            container: "app".into(),
        };
        let signal = |hour_start, restarts, oom_kills| SignalHour {
            key: key.clone(),
            hour_start,
            restarts,
            oom_kills,
            cfs_periods: 0.0,
            cfs_throttled_periods: 0.0,
        };
        let svg = timeline(
            "CPU <usage>",
            Unit::Millicores,
            &points,
            &marks,
            &[signal(3600, 2, 1), signal(7200, 1, 0), signal(99_999, 1, 1)],
            (0, 10_800),
        );
        for series in ["max", "p95", "p50"] {
            assert!(
                svg.contains(&format!("data-series=\"{series}\" data-points=\"3\"")),
                "{svg}"
            );
        }
        assert!(svg.contains("data-mark=\"current-request\""));
        assert!(!svg.contains("data-mark=\"basis\""));
        assert_eq!(
            svg.matches("data-event=\"oom-kill\"").count(),
            1,
            "outside the window: left out"
        );
        assert_eq!(svg.matches("data-event=\"restart\"").count(), 2);
        assert!(svg.contains("CPU &lt;usage&gt;"));
    }
}
