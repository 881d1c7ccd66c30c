//! Inline SVG charts for the HTML report: plain shapes and text, no scripts, no external
//! fonts or images, so they print and convert to PDF as they show.

use std::fmt::Write;

use super::html::esc;

/// One series of a chart: a name for the legend and a fill colour.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// Legend name.
    pub name: &'static str,
    /// Fill colour.
    pub color: &'static str,
}

/// What is requested now.
pub const REQUESTED: Series = Series {
    name: "Requested",
    color: "#94a3b8",
};
/// What is used on average.
pub const USED: Series = Series {
    name: "Used (mean)",
    color: "#14b8a6",
};
/// What is recommended.
pub const RECOMMENDED: Series = Series {
    name: "Recommended",
    color: "#6366f1",
};

const FONT: &str =
    "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif\"";
const INK: &str = "#0f172a";
const MUTED: &str = "#64748b";
const GRID: &str = "#e2e8f0";

/// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k at or above `v` (an axis
/// maximum that reads well and leaves little empty space).
pub fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if step * magnitude >= v * (1.0 - 1e-9) {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// `s` cut to `max` characters with an ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn open_svg(out: &mut String, width: f64, height: f64, label: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" aria-label=\"{}\" {FONT}>",
        esc(label)
    );
    let _ = write!(out, "<title>{}</title>", esc(label));
}

fn legend(out: &mut String, series: &[Series], x: f64, y: f64) {
    let mut x = x;
    for s in series {
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{MUTED}\">{}</text>",
            y - 9.0,
            s.color,
            x + 14.0,
            y,
            esc(s.name)
        );
        x += 24.0 + s.name.chars().count() as f64 * 6.2;
    }
}

/// Vertical columns, one per series (e.g. requested, used and recommended CPU cores).
pub fn columns(label: &str, values: &[(Series, f64)], format: fn(f64) -> String) -> String {
    let (width, height) = (300.0, 210.0);
    let (top, bottom, left) = (28.0, 26.0, 12.0);
    let plot_h = height - top - bottom;
    let max = nice_ceiling(values.iter().map(|(_, v)| *v).fold(0.0, f64::max));
    let slot = (width - 2.0 * left) / values.len().max(1) as f64;
    let bar_w = (slot * 0.56).min(64.0);
    let mut out = String::new();
    open_svg(&mut out, width, height, label);
    for i in 0..=4 {
        let y = top + plot_h * i as f64 / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{GRID}\" stroke-width=\"1\"/>",
            width - left
        );
    }
    for (i, (series, v)) in values.iter().enumerate() {
        let h = (v.max(0.0) / max * plot_h).max(if *v > 0.0 { 1.0 } else { 0.0 });
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = top + plot_h - h;
        let cx = x + bar_w / 2.0;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" rx=\"3\" fill=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"600\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            series.color,
            esc(series.name),
            esc(&format(*v)),
            y - 6.0,
            esc(&format(*v)),
            height - 8.0,
            esc(series.name),
        );
    }
    out.push_str("</svg>");
    out
}

/// One row of [`panels`]: a label and, per panel, one value per series.
pub struct PanelRow {
    /// Row label (e.g. a namespace).
    pub label: String,
    /// Per panel, the values of the series in order.
    pub values: Vec<Vec<f64>>,
}

/// Horizontal grouped bars in side-by-side panels sharing the row labels (e.g. CPU cores and
/// memory GiB per namespace), each panel on its own scale.
pub fn panels(
    label: &str,
    titles: &[&str],
    series: &[Series],
    formats: &[fn(f64) -> String],
    rows: &[PanelRow],
) -> String {
    let width = 760.0;
    let label_w = 150.0;
    let panel_gap = 18.0;
    let value_w = 46.0;
    let panel_w = (width - label_w - panel_gap * titles.len() as f64) / titles.len() as f64;
    let bar_area = panel_w - value_w;
    let (bar_h, bar_gap, group_gap) = (8.0, 2.0, 12.0);
    let group_h = series.len() as f64 * (bar_h + bar_gap) - bar_gap;
    let top = 48.0;
    let height = top + rows.len() as f64 * (group_h + group_gap) + 6.0;
    let maxima = panel_maxima(rows, titles.len());

    let mut out = String::new();
    open_svg(&mut out, width, height, label);
    legend(&mut out, series, label_w, 14.0);
    for (p, title) in titles.iter().enumerate() {
        let x0 = label_w + panel_gap + p as f64 * (panel_w + panel_gap);
        let _ = write!(
            out,
            "<text x=\"{x0}\" y=\"38\" font-size=\"12\" font-weight=\"600\" fill=\"{INK}\">{}</text>\
             <text x=\"{:.1}\" y=\"38\" font-size=\"10\" text-anchor=\"end\" fill=\"{MUTED}\">scale 0–{}</text>",
            esc(title),
            x0 + bar_area,
            esc(&formats[p](maxima[p]))
        );
        for i in 0..=4 {
            let x = x0 + bar_area * i as f64 / 4.0;
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>",
                top - 4.0,
                height - 4.0
            );
        }
    }
    for (r, row) in rows.iter().enumerate() {
        let y0 = top + r as f64 * (group_h + group_gap);
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"{INK}\"><title>{}</title>{}</text>",
            label_w - 6.0,
            y0 + group_h / 2.0 + 4.0,
            esc(&row.label),
            esc(&truncate(&row.label, 22))
        );
        for (p, values) in row.values.iter().enumerate().take(titles.len()) {
            let x0 = label_w + panel_gap + p as f64 * (panel_w + panel_gap);
            for (s, (series, v)) in series.iter().zip(values).enumerate() {
                let w = (v.max(0.0) / maxima[p] * bar_area).max(if *v > 0.0 { 0.8 } else { 0.0 });
                let y = y0 + s as f64 * (bar_h + bar_gap);
                let _ = write!(
                    out,
                    "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar_h}\" rx=\"1.5\" fill=\"{}\"><title>{} {}: {}</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"{MUTED}\">{}</text>",
                    series.color,
                    esc(&row.label),
                    esc(series.name),
                    esc(&formats[p](*v)),
                    x0 + w + 3.0,
                    y + bar_h - 0.5,
                    esc(&formats[p](*v))
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// Each of the `panels` panels' scale: a round number above its largest value.
fn panel_maxima(rows: &[PanelRow], panels: usize) -> Vec<f64> {
    (0..panels)
        .map(|p| {
            nice_ceiling(
                rows.iter()
                    .flat_map(|r| r.values.get(p).into_iter().flatten())
                    .copied()
                    .fold(0.0, f64::max),
            )
        })
        .collect()
}

/// A stacked horizontal bar of counts with a legend (e.g. containers by severity).
pub fn stacked(label: &str, parts: &[(&str, i64, &str)]) -> String {
    let width = 340.0;
    // Legend entries flow left to right and wrap to a new row when one would not fit.
    let mut entries = Vec::new();
    let (mut lx, mut ly) = (0.0, 49.0);
    for (name, n, color) in parts {
        let text = format!("{name} {n}");
        let w = 22.0 + text.chars().count() as f64 * 6.6;
        if lx > 0.0 && lx + w > width {
            (lx, ly) = (0.0, ly + 17.0);
        }
        entries.push((lx, ly, text, *color));
        lx += w + 10.0;
    }
    let height = ly + 7.0;
    let total: i64 = parts.iter().map(|(_, n, _)| (*n).max(0)).sum();
    let mut out = String::new();
    open_svg(&mut out, width, height, label);
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"6\" width=\"{width}\" height=\"18\" rx=\"4\" fill=\"{GRID}\"/>"
    );
    let mut x = 0.0;
    for (name, n, color) in parts {
        if total == 0 || *n <= 0 {
            continue;
        }
        let w = *n as f64 / total as f64 * width;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"6\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\"><title>{}: {n}</title></rect>",
            esc(name)
        );
        x += w;
    }
    for (lx, ly, text, color) in entries {
        let _ = write!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" rx=\"2\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"11\" fill=\"{INK}\">{}</text>",
            ly - 9.0,
            lx + 14.0,
            esc(&text)
        );
    }
    out.push_str("</svg>");
    out
}

/// A small inline bar for a table cell: `value` of `max`.
pub fn mini_bar(value: f64, max: f64, color: &str) -> String {
    let width = 72.0;
    let w = if max > 0.0 {
        (value.max(0.0) / max * width).clamp(0.0, width)
    } else {
        0.0
    };
    format!(
        "<svg class=\"mini\" viewBox=\"0 0 {width} 8\" width=\"{width}\" height=\"8\" aria-hidden=\"true\">\
         <rect width=\"{width}\" height=\"8\" rx=\"2\" fill=\"{GRID}\"/>\
         <rect width=\"{w:.1}\" height=\"8\" rx=\"2\" fill=\"{color}\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 8.0);
        assert_eq!(nice_ceiling(10.2), 12.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(130.0), 150.0);
        assert_eq!(nice_ceiling(0.42), 0.5);
        assert_eq!(nice_ceiling(25.6), 30.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn labels_are_escaped_and_cut() {
        let svg = panels(
            "t",
            &["CPU"],
            &[REQUESTED],
            &[|v| format!("{v}")],
            &[PanelRow {
                label: "<script>a-very-long-namespace-name-indeed".into(),
                values: vec![vec![1.0]],
            }],
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;a-very-long-n…"), "{svg}");
    }
}
