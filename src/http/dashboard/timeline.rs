//! Usage over the window, hour by hour, as inline SVG: each hour's median, p95 and peak as
//! lines, the current and recommended request and limit as horizontal lines, and the hours
//! with OOM kills or restarts marked along the top. The first question an owner asks when a
//! number surprises them is how usage moved against the requests; the histogram beside it
//! cannot say when.

use std::fmt::Write;

use super::chart::{format_value, Mark, MarkKind, Unit};
use super::html::Esc;
use crate::model::{Resource, SignalHour, UsageHour};

/// One hour's usage in display units (millicores or bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourPoint {
    /// Unix seconds, start of the hour.
    pub hour_start: i64,
    /// Median of the hour's samples.
    pub p50: f64,
    /// 95th percentile of the hour's samples.
    pub p95: f64,
    /// Largest sample of the hour.
    pub max: f64,
}

/// The hourly points of `resource` in `rows`, in time order; CPU in millicores.
pub fn points(rows: &[UsageHour], resource: Resource) -> Vec<HourPoint> {
    let scale = match resource {
        Resource::Cpu => 1000.0,
        Resource::Memory => 1.0,
    };
    let mut out: Vec<HourPoint> = rows
        .iter()
        .filter(|r| r.resource == resource && r.sketch.count() > 0)
        .filter_map(|r| {
            Some(HourPoint {
                hour_start: r.hour_start,
                p50: r.sketch.quantile(0.5)? * scale,
                p95: r.sketch.quantile(0.95)? * scale,
                max: r.sketch.max() * scale,
            })
        })
        .collect();
    out.sort_by_key(|p| p.hour_start);
    out
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 22.0;

/// The chart of `points` over `[from, to)` (unix seconds, hour starts), with `marks` (the
/// basis mark is left out: it is a statistic of the whole window) and the hours of `signals`
/// with OOM kills or restarts.
pub fn timeline(
    title: &str,
    unit: Unit,
    points: &[HourPoint],
    marks: &[Mark],
    signals: &[SignalHour],
    (from, to): (i64, i64),
) -> String {
    let lines: Vec<&Mark> = marks.iter().filter(|m| m.kind != MarkKind::Basis).collect();
    let top = points
        .iter()
        .map(|p| p.max)
        .chain(lines.iter().map(|m| m.value))
        .fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.08 } else { 1.0 };
    let span = (to - from).max(3600) as f64;
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |t: i64| LEFT + ((t - from) as f64 + 1800.0) / span * w;
    let y = |v: f64| TOP + h - v / y_max * h;
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<svg class=\"timeline\" data-chart=\"timeline\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title>\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\" fill=\"#f8fafc\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\">{top_label}</text>\
         <text x=\"{lx}\" y=\"{by}\" text-anchor=\"end\" font-size=\"10\">0</text>\
         <text x=\"{LEFT}\" y=\"{xy}\" font-size=\"10\">{start}</text>\
         <text x=\"{xe}\" y=\"{xy}\" text-anchor=\"end\" font-size=\"10\">{end}</text>",
        t = Esc(&format!("{title}: hourly median, p95 and peak")),
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
        by = TOP + h,
        top_label = Esc(&format_value(unit, y_max)),
        xy = HEIGHT - 6.0,
        xe = WIDTH - RIGHT,
        start = Esc(&super::html::timestamp(from)),
        end = Esc(&super::html::timestamp(to)),
    );
    for m in &lines {
        let _ = write!(
            out,
            "<line data-mark=\"{name}\" x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" \
             stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\"><title>{label} {value}</title></line>",
            name = m.kind.name(),
            x2 = LEFT + w,
            yv = y(m.value),
            color = m.kind.color(),
            dash = m.kind.dash(),
            label = Esc(&m.label),
            value = Esc(&format_value(unit, m.value)),
        );
    }
    for (series, color, value) in [
        (
            "max",
            "#94a3b8",
            (|p: &HourPoint| p.max) as fn(&HourPoint) -> f64,
        ),
        ("p95", "#0f766e", |p: &HourPoint| p.p95),
        ("p50", "#14b8a6", |p: &HourPoint| p.p50),
    ] {
        let coords: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.hour_start), y(value(p))))
            .collect();
        let _ = write!(
            out,
            "<polyline data-series=\"{series}\" data-points=\"{n}\" points=\"{coords}\" fill=\"none\" \
             stroke=\"{color}\" stroke-width=\"1.2\"/>",
            n = coords.len(),
            coords = coords.join(" "),
        );
    }
    for s in signals
        .iter()
        .filter(|s| s.hour_start >= from && s.hour_start < to)
    {
        let cx = x(s.hour_start);
        if s.oom_kills > 0 {
            let _ = write!(
                out,
                "<path data-event=\"oom-kill\" data-hour=\"{hour}\" d=\"M{cx:.1},{y0:.1} l-4,-7 h8 z\" fill=\"#dc2626\">\
                 <title>{n} OOM kill(s) at {at}</title></path>",
                hour = s.hour_start,
                y0 = TOP,
                n = s.oom_kills,
                at = Esc(&super::html::timestamp(s.hour_start)),
            );
        }
        let other = s.restarts.saturating_sub(s.oom_kills);
        if other > 0 {
            let _ = write!(
                out,
                "<circle data-event=\"restart\" data-hour=\"{hour}\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"#f59e0b\">\
                 <title>{other} restart(s) at {at}</title></circle>",
                hour = s.hour_start,
                cy = TOP - 4.0,
                at = Esc(&super::html::timestamp(s.hour_start)),
            );
        }
    }
    out.push_str("</svg>");
    out
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
