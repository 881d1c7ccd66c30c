//! Usage over the window, hour by hour, as inline SVG: each hour's median, p95 and peak as
//! lines, requests and limits as horizontal lines, and the hours with OOM kills or restarts
//! marked along the top. The first question an owner asks when a number surprises them is
//! how usage moved against the requests; a histogram cannot say when. The dashboard's
//! workload page and the HTML report draw it the same way: plain shapes, no scripts.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::html::esc;
use super::text::timestamp;
use crate::model::{Resource, Resources, SignalHour, UsageHour};

/// One hour's usage in display units (millicores or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// An hour with OOM kills or restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventHour {
    /// Unix seconds, start of the hour.
    pub hour_start: i64,
    /// Container restarts in the hour, all pods together (OOM kills included).
    pub restarts: u32,
    /// Of them, OOM kills.
    pub oom_kills: u32,
}

impl From<&SignalHour> for EventHour {
    fn from(s: &SignalHour) -> Self {
        EventHour {
            hour_start: s.hour_start,
            restarts: s.restarts,
            oom_kills: s.oom_kills,
        }
    }
}

/// A horizontal line across the chart: a request or a limit.
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    /// The `data-mark` attribute, e.g. `current-request`.
    pub name: &'a str,
    /// Stroke colour.
    pub color: &'a str,
    /// SVG `stroke-dasharray`, empty for solid.
    pub dash: &'a str,
    /// Legend text, e.g. `current request`.
    pub label: &'a str,
    /// Position in display units.
    pub value: f64,
}

/// A value in display units (millicores for CPU, bytes for memory) as a short label: `250m`,
/// `1.5 cores`, `512Mi`, `1.2Gi`.
pub fn short_value(resource: Resource, value: f64) -> String {
    match resource {
        Resource::Cpu if value >= 1000.0 => {
            let cores = trim(value / 1000.0, 2);
            let unit = if cores == "1" { "core" } else { "cores" };
            format!("{cores} {unit}")
        }
        Resource::Cpu => format!("{}m", trim(value, if value < 10.0 { 1 } else { 0 })),
        Resource::Memory if value >= 1024.0 * 1024.0 * 1024.0 => {
            format!("{}Gi", trim(value / 1073741824.0, 2))
        }
        Resource::Memory => format!("{}Mi", trim(value / 1048576.0, 1)),
    }
}

/// `value` with at most `decimals` decimals, trailing zeros (and a trailing point) cut.
pub fn trim(value: f64, decimals: usize) -> String {
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The request and limit lines of `resource`, in force and recommended, in display units and
/// drawn as the dashboard draws them (requests solid, limits dashed); unset values are left out.
pub fn levels(
    resource: Resource,
    current: &Resources,
    recommended: &Resources,
) -> Vec<Level<'static>> {
    let pick = |r: &Resources| match resource {
        Resource::Cpu => (r.cpu_request_millicores, r.cpu_limit_millicores),
        Resource::Memory => (r.memory_request_bytes, r.memory_limit_bytes),
    };
    let (cur_req, cur_lim) = pick(current);
    let (rec_req, rec_lim) = pick(recommended);
    [
        ("current-request", "#d97706", "", "current request", cur_req),
        ("current-limit", "#dc2626", "7 4", "current limit", cur_lim),
        (
            "recommended-request",
            "#2563eb",
            "",
            "recommended request",
            rec_req,
        ),
        (
            "recommended-limit",
            "#7c3aed",
            "7 4",
            "recommended limit",
            rec_lim,
        ),
    ]
    .into_iter()
    .filter_map(|(name, color, dash, label, value)| {
        value.map(|v| Level {
            name,
            color,
            dash,
            label,
            value: v as f64,
        })
    })
    .collect()
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 22.0;

/// The chart of `points` over `[from, to)` (unix seconds, hour starts) with `levels` and the
/// hours of `events` inside the window; `format` writes a value in display units as a label.
pub fn render(
    title: &str,
    points: &[HourPoint],
    levels: &[Level],
    events: &[EventHour],
    (from, to): (i64, i64),
    format: &dyn Fn(f64) -> String,
) -> String {
    let top = points
        .iter()
        .map(|p| p.max)
        .chain(levels.iter().map(|l| l.value))
        .fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.08 } else { 1.0 };
    let span = (to - from).max(3600) as f64;
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let axes = Axes {
        from,
        span,
        y_max,
        w,
        h,
    };
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
        t = esc(&format!("{title}: hourly median, p95 and peak")),
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
        by = TOP + h,
        top_label = esc(&format(y_max)),
        xy = HEIGHT - 6.0,
        xe = WIDTH - RIGHT,
        start = esc(&timestamp(from)),
        end = esc(&timestamp(to)),
    );
    axes.levels(&mut out, levels, format);
    axes.series(&mut out, points);
    axes.events(&mut out, events, (from, to));
    out.push_str("</svg>");
    out
}

/// Where an hour and a value land in the plot.
struct Axes {
    from: i64,
    span: f64,
    y_max: f64,
    w: f64,
    h: f64,
}

impl Axes {
    /// The middle of the hour starting at `t`.
    fn x(&self, t: i64) -> f64 {
        LEFT + ((t - self.from) as f64 + 1800.0) / self.span * self.w
    }

    fn y(&self, v: f64) -> f64 {
        TOP + self.h - v / self.y_max * self.h
    }

    /// Requests and limits as horizontal lines.
    fn levels(&self, out: &mut String, levels: &[Level], format: &dyn Fn(f64) -> String) {
        let w = self.w;
        for l in levels {
            let _ = write!(
                out,
                "<line data-mark=\"{name}\" x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" \
                 stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\"><title>{label} {value}</title></line>",
                name = esc(l.name),
                x2 = LEFT + w,
                yv = self.y(l.value),
                color = esc(l.color),
                dash = esc(l.dash),
                label = esc(l.label),
                value = esc(&format(l.value)),
            );
        }
    }

    /// The hourly peak, p95 and median as polylines.
    fn series(&self, out: &mut String, points: &[HourPoint]) {
        type Pick = fn(&HourPoint) -> f64;
        let series: [(&str, &str, Pick); 3] = [
            ("max", "#94a3b8", |p| p.max),
            ("p95", "#0f766e", |p| p.p95),
            ("p50", "#14b8a6", |p| p.p50),
        ];
        for (name, color, value) in series {
            let coords: Vec<String> = points
                .iter()
                .map(|p| format!("{:.1},{:.1}", self.x(p.hour_start), self.y(value(p))))
                .collect();
            let _ = write!(
                out,
                "<polyline data-series=\"{name}\" data-points=\"{n}\" points=\"{coords}\" fill=\"none\" \
                 stroke=\"{color}\" stroke-width=\"1.2\"/>",
                n = coords.len(),
                coords = coords.join(" "),
            );
        }
    }

    /// OOM kills (a red marker) and other restarts (an amber dot) above their hours.
    fn events(&self, out: &mut String, events: &[EventHour], (from, to): (i64, i64)) {
        for e in events
            .iter()
            .filter(|e| e.hour_start >= from && e.hour_start < to)
        {
            let cx = self.x(e.hour_start);
            let at = esc(&timestamp(e.hour_start));
            if e.oom_kills > 0 {
                let _ = write!(
                    out,
                    "<path data-event=\"oom-kill\" data-hour=\"{hour}\" d=\"M{cx:.1},{TOP:.1} l-4,-7 h8 z\" fill=\"#dc2626\">\
                     <title>{n} OOM kill(s) at {at}</title></path>",
                    hour = e.hour_start,
                    n = e.oom_kills,
                );
            }
            let other = e.restarts.saturating_sub(e.oom_kills);
            if other > 0 {
                let _ = write!(
                    out,
                    "<circle data-event=\"restart\" data-hour=\"{hour}\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"#f59e0b\">\
                     <title>{other} restart(s) at {at}</title></circle>",
                    hour = e.hour_start,
                    cy = TOP - 4.0,
                );
            }
        }
    }
}
