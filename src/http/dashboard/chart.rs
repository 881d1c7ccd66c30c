//! The usage-distribution chart: an inline SVG histogram of a merged sketch with vertical
//! lines for requests and limits. Pure: data in, markup out.

use std::fmt::Write;

use maud::html;

use super::html::escape_html;
use crate::model::Resource;
use crate::report::timeline::{self, trim};
use crate::sketch::Sketch;

/// Display bins across the x axis.
const BINS: usize = 64;
/// A mark further right than this many times the largest sample is drawn at the edge,
/// so a huge limit doesn't squash the distribution into one bar.
const OFF_SCALE_FACTOR: f64 = 6.0;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// What the x axis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Millicores (sketch values are cores and are scaled by 1000).
    Millicores,
    /// Bytes.
    Bytes,
}

/// Which line a mark is; its `data-mark` name, legend label and look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// The request in force.
    CurrentRequest,
    /// The limit in force.
    CurrentLimit,
    /// The proposed request.
    RecommendedRequest,
    /// The proposed limit.
    RecommendedLimit,
    /// The usage statistic the recommendation was derived from (a percentile or the peak).
    Basis,
}

impl MarkKind {
    /// The `data-mark` attribute value.
    pub fn name(self) -> &'static str {
        match self {
            MarkKind::CurrentRequest => "current-request",
            MarkKind::CurrentLimit => "current-limit",
            MarkKind::RecommendedRequest => "recommended-request",
            MarkKind::RecommendedLimit => "recommended-limit",
            MarkKind::Basis => "basis",
        }
    }

    /// Stroke color.
    pub fn color(self) -> &'static str {
        match self {
            MarkKind::CurrentRequest => "#d97706",
            MarkKind::CurrentLimit => "#dc2626",
            MarkKind::RecommendedRequest => "#2563eb",
            MarkKind::RecommendedLimit => "#7c3aed",
            MarkKind::Basis => "#475569",
        }
    }

    /// SVG `stroke-dasharray`, empty for solid.
    pub fn dash(self) -> &'static str {
        match self {
            MarkKind::CurrentLimit | MarkKind::RecommendedLimit => "7 4",
            MarkKind::Basis => "2 3",
            _ => "",
        }
    }
}

/// A vertical line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Which line.
    pub kind: MarkKind,
    /// Legend text, e.g. `current request` or `p95 usage`.
    pub label: String,
    /// Position in display units (millicores or bytes).
    pub value: f64,
}

/// A value in display units as a short label: `250m`, `1.5` cores, `512Mi`, `1.2Gi`.
pub fn format_value(unit: Unit, value: f64) -> String {
    let resource = match unit {
        Unit::Millicores => Resource::Cpu,
        Unit::Bytes => Resource::Memory,
    };
    timeline::short_value(resource, value)
}

/// Axis tick label: shorter than [`format_value`].
fn tick_label(unit: Unit, value: f64, domain: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    match unit {
        Unit::Millicores if domain >= 2000.0 => trim(value / 1000.0, 2),
        Unit::Millicores => format!("{}m", trim(value, 1)),
        Unit::Bytes if domain >= 2.0 * 1073741824.0 => {
            format!("{}Gi", trim(value / 1073741824.0, 2))
        }
        Unit::Bytes => format!("{}Mi", trim(value / 1048576.0, 0)),
    }
}

/// A 1-2-5 step giving about five ticks over `[0, max]`.
fn tick_step(max: f64, base: f64) -> f64 {
    let raw = max / base / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step * base
}

/// The histogram: `sketch` values (cores for CPU, bytes for memory) re-binned onto a linear
/// axis that also spans the marks. `title` labels the chart for screen readers.
pub fn histogram(title: &str, unit: Unit, sketch: &Sketch, marks: &[Mark]) -> String {
    let scale = match unit {
        Unit::Millicores => 1000.0,
        Unit::Bytes => 1.0,
    };
    let data_max = if sketch.count() > 0 {
        sketch.max() * scale
    } else {
        0.0
    };
    let f = Frame {
        unit,
        data_max,
        domain: 0.0,
        plot_w: WIDTH - LEFT - RIGHT,
        plot_h: HEIGHT - TOP - BOTTOM,
        bottom: HEIGHT - BOTTOM,
    };
    let in_scale_max = marks
        .iter()
        .filter(|m| !f.off_scale(m))
        .map(|m| m.value)
        .fold(data_max, f64::max);
    let f = Frame {
        domain: if in_scale_max > 0.0 {
            in_scale_max * 1.08
        } else {
            scale
        },
        ..f
    };
    let mut bins = [0u64; BINS];
    for (lower, upper, count) in sketch.buckets() {
        let value = (lower + upper) / 2.0 * scale;
        let index = ((value / f.domain) * BINS as f64).floor() as usize;
        bins[index.min(BINS - 1)] += count;
    }

    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{t}\" data-unit=\"{u}\" data-samples=\"{n}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<title>{t}</title>\n",
        t = escape_html(title),
        u = match unit {
            Unit::Millicores => "millicores",
            Unit::Bytes => "bytes",
        },
        n = sketch.count(),
    );
    f.grid(&mut out, &bins, sketch.count());
    f.bars(&mut out, &bins, sketch.count());
    f.x_axis(&mut out);
    f.marks(&mut out, marks);
    out.push_str("</svg>\n");
    out
}

/// A histogram's geometry: its unit, the largest sample, the axis' extent (display units)
/// and the plot's size.
#[derive(Clone, Copy)]
struct Frame {
    unit: Unit,
    data_max: f64,
    domain: f64,
    plot_w: f64,
    plot_h: f64,
    bottom: f64,
}

impl Frame {
    /// A mark far beyond the data is drawn at the edge rather than squashing the bars.
    fn off_scale(&self, m: &Mark) -> bool {
        self.data_max > 0.0 && m.value > self.data_max * OFF_SCALE_FACTOR
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + (v / self.domain).clamp(0.0, 1.0) * self.plot_w
    }

    /// Grid and y axis: share of samples per bin.
    fn grid(&self, out: &mut String, bins: &[u64; BINS], samples: u64) {
        let (bottom, plot_h) = (self.bottom, self.plot_h);
        let total = samples.max(1) as f64;
        let tallest = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
        let top_share = tallest / total;
        for i in 0..=4 {
            let y = bottom - plot_h * i as f64 / 4.0;
            let _ = writeln!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
             stroke=\"#e2e8f0\" stroke-width=\"1\"/>",
                WIDTH - RIGHT
            );
            if i > 0 && samples > 0 {
                let _ = writeln!(
                    out,
                    "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                    LEFT - 6.0,
                    y + 4.0,
                    trim(top_share * 100.0 * i as f64 / 4.0, 1) + "%"
                );
            }
        }
    }

    fn bars(&self, out: &mut String, bins: &[u64; BINS], samples: u64) {
        let (bottom, plot_h, plot_w, domain, unit) = (
            self.bottom,
            self.plot_h,
            self.plot_w,
            self.domain,
            self.unit,
        );
        let total = samples.max(1) as f64;
        let tallest = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
        let bin_w = plot_w / BINS as f64;
        for (i, &count) in bins.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let h = (count as f64 / tallest * plot_h).max(1.0);
            let from = domain * i as f64 / BINS as f64;
            let to = domain * (i + 1) as f64 / BINS as f64;
            let _ = writeln!(
            out,
            "<rect class=\"bar\" data-bar=\"{i}\" data-count=\"{count}\" x=\"{:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"{h:.1}\" fill=\"#94a3b8\"><title>{} – {}: {} of samples</title></rect>",
            LEFT + bin_w * i as f64 + 0.5,
            bottom - h,
            (bin_w - 1.0).max(0.5),
            format_value(unit, from),
            format_value(unit, to),
            super::html::percent(count as f64 / total),
        );
        }
        if samples == 0 {
            let _ = writeln!(
            out,
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no usage stored for this window</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
        }
    }

    fn x_axis(&self, out: &mut String) {
        let (bottom, domain, unit) = (self.bottom, self.domain, self.unit);
        let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\" stroke=\"#64748b\"/>",
        WIDTH - RIGHT
    );
        let base = match unit {
            Unit::Millicores => 1.0,
            Unit::Bytes if domain >= 2.0 * 1073741824.0 => 1073741824.0,
            Unit::Bytes => 1048576.0,
        };
        let step = tick_step(domain, base);
        let mut tick = 0.0;
        while tick <= domain * 1.0001 {
            let tx = self.x(tick);
            let _ = writeln!(
            out,
            "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{bottom:.1}\" y2=\"{:.1}\" stroke=\"#64748b\"/>\
             <text class=\"tick\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 4.0,
            bottom + 17.0,
            tick_label(unit, tick, domain)
        );
            tick += step;
        }
        let _ = writeln!(
            out,
            "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            HEIGHT - 2.0,
            match unit {
                Unit::Millicores if domain >= 2000.0 => "CPU (cores)",
                Unit::Millicores => "CPU (millicores)",
                Unit::Bytes => "memory working set",
            }
        );
    }

    /// Marks last, so they sit on top of the bars; limits after requests so an equal pair
    /// shows the dashes of the limit over the solid request.
    fn marks(&self, out: &mut String, marks: &[Mark]) {
        let (bottom, unit) = (self.bottom, self.unit);
        let mut ordered: Vec<&Mark> = marks.iter().collect();
        ordered.sort_by_key(|m| match m.kind {
            MarkKind::Basis => 0,
            MarkKind::CurrentRequest => 1,
            MarkKind::RecommendedRequest => 2,
            MarkKind::CurrentLimit => 3,
            MarkKind::RecommendedLimit => 4,
        });
        for mark in ordered {
            let offscale = self.off_scale(mark);
            let mx = if offscale {
                WIDTH - RIGHT
            } else {
                self.x(mark.value)
            };
            let dash = match mark.kind.dash() {
                "" => String::new(),
                d => format!(" stroke-dasharray=\"{d}\""),
            };
            let _ = writeln!(
                out,
                "<line class=\"mark\" data-mark=\"{name}\" data-value=\"{value}\"{off} \
             x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP:.1}\" y2=\"{bottom:.1}\" stroke=\"{color}\" \
             stroke-width=\"{w}\"{dash}><title>{label}: {text}{note}</title></line>",
                name = mark.kind.name(),
                value = mark.value,
                off = if offscale {
                    " data-offscale=\"true\""
                } else {
                    ""
                },
                color = mark.kind.color(),
                w = if mark.kind == MarkKind::Basis {
                    1.5
                } else {
                    2.5
                },
                label = escape_html(&mark.label),
                text = format_value(unit, mark.value),
                note = if offscale { " (off scale)" } else { "" },
            );
            if offscale {
                let _ = writeln!(
                    out,
                    "<path d=\"M{:.1} {:.1} l-8 -5 v10 z\" fill=\"{}\"/>",
                    mx,
                    TOP + 6.0,
                    mark.kind.color()
                );
            }
        }
    }
}

/// The legend of `marks`, as an HTML list (values in display units).
pub fn legend(unit: Unit, marks: &[Mark], data_max: Option<f64>) -> String {
    html! {
        ul class="legend" {
            @for mark in marks {
                @let style = if mark.kind.dash().is_empty() {
                    "solid"
                } else if mark.kind == MarkKind::Basis {
                    "dotted"
                } else {
                    "dashed"
                };
                @let off = matches!(data_max, Some(max) if max > 0.0 && mark.value > max * OFF_SCALE_FACTOR);
                li data-legend=(mark.kind.name()) {
                    span class="swatch" style={ "border-top:3px " (style) " " (mark.kind.color()) } {}
                    (mark.label) " " b { (format_value(unit, mark.value)) }
                    @if off { " " em { "(off scale →)" } }
                }
            }
            li class="bars" { span class="swatch bar" {} "share of samples" }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        for v in values {
            s.insert(*v).unwrap();
        }
        s
    }

    fn mark(kind: MarkKind, value: f64) -> Mark {
        Mark {
            kind,
            label: kind.name().into(),
            value,
        }
    }

    #[test]
    fn draws_bars_and_every_mark() {
        let s = sketch(&[0.1, 0.1, 0.12, 0.2, 0.0]);
        let marks = [
            mark(MarkKind::CurrentRequest, 500.0),
            mark(MarkKind::CurrentLimit, 1000.0),
            mark(MarkKind::RecommendedRequest, 150.0),
            mark(MarkKind::RecommendedLimit, 600.0),
        ];
        let svg = histogram("cpu <x>", Unit::Millicores, &s, &marks);
        for m in &marks {
            assert!(
                svg.contains(&format!("data-mark=\"{}\"", m.kind.name())),
                "{svg}"
            );
        }
        assert!(svg.contains("data-bar="));
        assert!(svg.contains("cpu &lt;x&gt;"));
        assert!(!svg.contains("data-offscale"));
        let counted: u64 = svg
            .match_indices("data-count=\"")
            .map(|(at, m)| {
                let rest = &svg[at + m.len()..];
                rest[..rest.find('"').unwrap()].parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(counted, 5, "every sample lands in a bar");
    }

    #[test]
    fn a_huge_limit_is_drawn_off_scale() {
        let s = sketch(&[0.01, 0.02, 0.03]);
        let marks = [
            mark(MarkKind::CurrentRequest, 40.0),
            mark(MarkKind::CurrentLimit, 8000.0),
        ];
        let svg = histogram("cpu", Unit::Millicores, &s, &marks);
        assert!(
            svg.contains("data-mark=\"current-limit\" data-value=\"8000\" data-offscale=\"true\"")
        );
        assert!(svg.contains("data-mark=\"current-request\" data-value=\"40\" x1"));
        assert!(legend(Unit::Millicores, &marks, Some(30.0)).contains("off scale"));
    }

    #[test]
    fn empty_history_still_shows_the_marks() {
        let svg = histogram(
            "memory",
            Unit::Bytes,
            &Sketch::new(),
            &[mark(MarkKind::RecommendedRequest, 256.0 * 1048576.0)],
        );
        assert!(svg.contains("no usage stored"));
        assert!(svg.contains("data-mark=\"recommended-request\""));
        assert!(!svg.contains("data-bar="));
    }

    #[test]
    fn labels_values() {
        assert_eq!(format_value(Unit::Millicores, 250.0), "250m");
        assert_eq!(format_value(Unit::Millicores, 1500.0), "1.5 cores");
        assert_eq!(format_value(Unit::Millicores, 1000.0), "1 core");
        assert_eq!(format_value(Unit::Bytes, 512.0 * 1048576.0), "512Mi");
        assert_eq!(format_value(Unit::Bytes, 1.25 * 1073741824.0), "1.25Gi");
        assert_eq!(tick_step(1080.0, 1.0), 250.0);
        assert_eq!(tick_step(330.0 * 1048576.0, 1048576.0), 100.0 * 1048576.0);
    }
}
