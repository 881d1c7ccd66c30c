//! The report as one self-contained HTML file: inline CSS, inline SVG charts, no scripts and
//! no external references, laid out to print (or save as PDF) one section per page.

use std::fmt::Write;

use super::chart::{self, PanelRow, RECOMMENDED, REQUESTED, USED};
use super::holdout;
use super::text::{
    cores, cost, cpu_change, gib, memory_change, money, percent_opt, signed, signed_count,
    signed_money, timestamp,
};
use super::timeline;
use super::{Change, ChangeItem, GroupTotals, Line, Report};
use crate::model::{ContainerKey, Resource, Severity};
use crate::quantity::{cpu_measured, memory_measured};

/// Every value set: what the usage section's legend lists every line of.
const FULL: crate::model::Resources = crate::model::Resources {
    cpu_request_millicores: Some(1),
    cpu_limit_millicores: Some(1),
    memory_request_bytes: Some(1),
    memory_limit_bytes: Some(1),
};

/// Namespaces shown in the per-namespace chart (the table lists them all).
const CHART_NAMESPACES: usize = 12;
/// Lines in each list of the first page's highlights.
const HIGHLIGHTS: usize = 5;

const CRITICAL: &str = "#dc2626";
const WARNING: &str = "#f59e0b";
const INFO: &str = "#3b82f6";

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f1f5f9; --card:#fff;
  --accent:#4f46e5; --good:#047857; --bad:#b91c1c; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 40px; }
.brand { font-size: 12px; font-weight: 700; letter-spacing: .12em; text-transform: uppercase; color: var(--accent); }
h1 { font-size: 28px; line-height: 1.2; margin: 4px 0 6px; }
h2 { font-size: 19px; margin: 0 0 2px; }
h3 { font-size: 14px; margin: 18px 0 8px; }
.meta, .lead { color: var(--muted); margin: 0 0 14px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 22px 24px; margin: 0 0 18px; }
.kpis { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 18px 0 20px; }
.kpi { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; background: #fbfcfe; }
.kpi .label { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.kpi .value { font-size: 22px; font-weight: 700; margin-top: 2px; white-space: nowrap; }
.kpi .sub { font-size: 12px; color: var(--muted); }
.good { color: var(--good); } .bad { color: var(--bad); }
.charts { display: grid; grid-template-columns: 1fr 1fr 1.15fr; gap: 18px; align-items: start; }
figure { margin: 0; }
figcaption { font-size: 12px; font-weight: 600; color: var(--muted); margin-bottom: 6px; }
svg.chart { display: block; height: auto; }
.legend-note { font-size: 11px; color: var(--muted); margin-top: 4px; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; margin-top: 6px; }
th { text-align: left; font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase;
  letter-spacing: .03em; border-bottom: 2px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
tbody tr:nth-child(even) td { background: #f8fafc; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.nowrap { white-space: nowrap; }
.wl { font-weight: 600; word-break: break-word; }
.ctr { color: var(--muted); font-weight: 400; }
.sub-key { display: block; color: var(--muted); font-size: 11.5px; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11px; font-weight: 600; white-space: nowrap; }
.pill.critical { background: #fee2e2; color: #991b1b; }
.pill.warning { background: #fef3c7; color: #92400e; }
.pill.info { background: #dbeafe; color: #1e40af; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f5f9;
  padding: 1px 5px; border-radius: 4px; white-space: nowrap; }
.empty { color: var(--muted); font-style: italic; margin: 6px 0 0; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
ul.items { margin: 6px 0 0; padding-left: 18px; }
ul.items li { margin: 3px 0; }
.highlights { margin-top: 10px; }
svg.mini { vertical-align: middle; margin-left: 6px; }
svg.timeline { display: block; width: 100%; height: auto; }
figure.usage { margin: 14px 0 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 8px; }
@media screen and (max-width: 820px) { .kpis { grid-template-columns: 1fr 1fr; } .charts, .cols { grid-template-columns: 1fr; } }
@page { size: A4; margin: 12mm 11mm; }
@media print {
  body { background: #fff; font-size: 11.5px; }
  table { font-size: 11px; }
  h1 { font-size: 24px; }
  .kpi { padding: 10px 12px; }
  .kpi .value { font-size: 17px; }
  main { max-width: none; padding: 0; }
  section { border: none; border-radius: 0; padding: 0; margin: 0; break-before: page; }
  section:first-of-type { break-before: auto; }
  h2, h3 { break-after: avoid; }
  tr, .kpi, figure { break-inside: avoid; }
  thead { display: table-header-group; }
  tbody tr:nth-child(even) td { background: #f8fafc; }
  footer { margin-top: 18px; }
}
"#;

/// Renders `report` as one self-contained HTML document.
pub fn render(report: &Report) -> String {
    let html = Html {
        multi_cluster: report.clusters.len() > 1,
        currency: &report.summary.currency,
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>rightsizer fleet report — {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&timestamp(report.generated_at))
    );
    html.overview(&mut out, report);
    html.change(&mut out, report.change.as_ref());
    html.distribution(&mut out, report);
    html.provisioning(&mut out, report);
    html.usage(&mut out, report);
    html.risks(&mut out, report);
    html.guidance(&mut out, report);
    let _ = write!(
        out,
        "<footer>rightsizer · report format v{} · generated {} from the recommendations stored at that time</footer>\n\
         </main>\n</body>\n</html>\n",
        report.version,
        esc(&timestamp(report.generated_at))
    );
    out
}

struct Html<'a> {
    multi_cluster: bool,
    currency: &'a str,
}

fn pill(s: Severity) -> String {
    format!("<span class=\"pill {0}\">{0}</span>", s.as_str())
}

fn empty(out: &mut String, text: &str) {
    let _ = write!(out, "<p class=\"empty\">{}</p>", esc(text));
}

/// A table: header cells (a leading `#` marks a numeric column) and rows of ready HTML cells.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    let numeric: Vec<bool> = header.iter().map(|h| h.starts_with('#')).collect();
    for h in header {
        let (class, name) = match h.strip_prefix('#') {
            Some(name) if !name.is_empty() => (" class=\"num\"", name),
            _ => ("", *h),
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(name));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if numeric.get(i).copied().unwrap_or(false) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

impl Html<'_> {
    /// The workload and container of a line, as one table cell: `name / container` over
    /// `namespace · Kind` (cluster first when there are several).
    fn who(&self, key: &ContainerKey) -> String {
        let cluster = if self.multi_cluster {
            format!("{} · ", esc(&key.cluster))
        } else {
            String::new()
        };
        format!(
            "<span class=\"wl\">{}</span> <span class=\"ctr\">/ {}</span>\
             <span class=\"sub-key\">{cluster}{} · {}</span>",
            esc(&key.workload),
            esc(&key.container),
            esc(&key.namespace),
            esc(&key.kind)
        )
    }

    fn money(&self, v: f64) -> String {
        esc(&money(v, self.currency))
    }

    fn overview(&self, out: &mut String, report: &Report) {
        let (s, t, c) = (
            &report.summary,
            &report.summary.totals,
            &report.summary.counts,
        );
        let _ = write!(
            out,
            "<section id=\"overview\"><div class=\"brand\">rightsizer</div>\
             <h1>Fleet right-sizing report</h1>\
             <p class=\"meta\">Generated {} · {} clusters · {} namespaces · {} workloads · {} containers · strategy {}</p>",
            esc(&timestamp(report.generated_at)),
            report.clusters.len(),
            report.namespaces.len(),
            t.workloads,
            t.containers,
            esc(&super::markdown::strategies(report))
        );
        let savings_class = if t.monthly_savings >= 0.0 {
            "good"
        } else {
            "bad"
        };
        let _ = write!(
            out,
            "<div class=\"kpis\">\
             <div class=\"kpi\"><div class=\"label\">Net savings per month</div><div class=\"value {savings_class}\">{}</div>\
             <div class=\"sub\">{} freed · {} needed</div></div>\
             <div class=\"kpi\"><div class=\"label\">CPU cores requested</div><div class=\"value\">{} → {}</div>\
             <div class=\"sub\">{} in use on average · {} cores</div></div>\
             <div class=\"kpi\"><div class=\"label\">Memory GiB requested</div><div class=\"value\">{} → {}</div>\
             <div class=\"sub\">{} in use on average · {} GiB</div></div>\
             <div class=\"kpi\"><div class=\"label\">At risk</div><div class=\"value{}\">{} critical</div>\
             <div class=\"sub\">{} warning · {} OOM · {} throttling</div></div></div>",
            self.money(t.monthly_savings),
            self.money(s.monthly_savings_gross),
            self.money(s.monthly_cost_increase),
            cores(t.requested_cores),
            cores(t.recommended_cores),
            cores(t.used_cores),
            signed(t.recommended_cores - t.requested_cores, 2),
            gib(t.requested_gib),
            gib(t.recommended_gib),
            gib(t.used_gib),
            signed(t.recommended_gib - t.requested_gib, 1),
            if c.critical > 0 { " bad" } else { "" },
            c.critical,
            c.warning,
            c.oom_risks,
            c.throttling_risks,
        );
        let _ = write!(
            out,
            "<p class=\"lead\" id=\"holdout-totals\">{}</p>",
            esc(&holdout::fleet(s.holdout.as_ref()))
        );
        out.push_str("<div class=\"charts\">");
        let _ = write!(
            out,
            "<figure><figcaption>CPU cores, fleet</figcaption>{}</figure>",
            chart::columns(
                "CPU cores: requested, used, recommended",
                &[
                    (REQUESTED, t.requested_cores),
                    (USED, t.used_cores),
                    (RECOMMENDED, t.recommended_cores)
                ],
                cores
            )
        );
        let _ = write!(
            out,
            "<figure><figcaption>Memory GiB, fleet</figcaption>{}</figure>",
            chart::columns(
                "Memory GiB: requested, used, recommended",
                &[
                    (REQUESTED, t.requested_gib),
                    (USED, t.used_gib),
                    (RECOMMENDED, t.recommended_gib)
                ],
                gib
            )
        );
        let _ = write!(
            out,
            "<figure><figcaption>Containers by severity</figcaption>{}\
             <figcaption style=\"margin-top:14px\">Containers by status</figcaption>{}\
             <p class=\"legend-note\">Requested and recommended are summed over average replicas; \
             used is the mean working set and CPU rate.</p></figure>",
            chart::stacked(
                "Containers by severity",
                &[
                    ("critical", c.critical, CRITICAL),
                    ("warning", c.warning, WARNING),
                    ("info", c.info, INFO)
                ]
            ),
            chart::stacked(
                "Containers by status",
                &[
                    ("change proposed", c.ok, "#6366f1"),
                    ("no change", c.no_change, "#94a3b8"),
                    ("insufficient data", c.insufficient_data, "#cbd5e1")
                ]
            ),
        );
        out.push_str("</div>");
        self.highlights(out, report);
        out.push_str("</section>\n");
    }

    /// The few lines a reader of only the first page should see: biggest savings, risks now.
    fn highlights(&self, out: &mut String, report: &Report) {
        out.push_str("<div class=\"cols highlights\"><div><h3>Biggest savings</h3>");
        if report.over_provisioned.is_empty() {
            empty(out, "No recommendation saves money.");
        } else {
            let rows: Vec<Vec<String>> = report
                .over_provisioned
                .iter()
                .take(HIGHLIGHTS)
                .map(|l| vec![self.who(&l.key), self.money(l.monthly_savings)])
                .collect();
            table(out, &["Workload", "#Per month"], &rows);
        }
        out.push_str("</div><div><h3>At risk now</h3>");
        let critical: Vec<&Line> = report
            .containers
            .iter()
            .filter(|l| l.severity == Severity::Critical)
            .collect();
        if critical.is_empty() {
            empty(out, "No critical container.");
        } else {
            let mut rows: Vec<Vec<String>> = critical
                .iter()
                .take(HIGHLIGHTS)
                .map(|l| vec![self.who(&l.key), codes(&l.findings)])
                .collect();
            if critical.len() > HIGHLIGHTS {
                rows.push(vec![
                    format!("and {} more", critical.len() - HIGHLIGHTS),
                    String::new(),
                ]);
            }
            table(out, &["Workload", "Findings"], &rows);
        }
        out.push_str("</div></div>");
    }

    fn change(&self, out: &mut String, change: Option<&Change>) {
        out.push_str("<section id=\"change\"><h2>Change since the previous report</h2>");
        let Some(ch) = change else {
            out.push_str("<p class=\"lead\">This is the first report: nothing to compare with yet.</p></section>\n");
            return;
        };
        let _ = write!(
            out,
            "<p class=\"lead\">Compared with the report of {}.</p>",
            esc(&timestamp(ch.previous_generated_at))
        );
        let d = &ch.counts_delta;
        let direction = |v: f64| {
            if v > 0.0 {
                "good"
            } else if v < 0.0 {
                "bad"
            } else {
                ""
            }
        };
        let _ = write!(
            out,
            "<div class=\"kpis\">\
             <div class=\"kpi\"><div class=\"label\">Net savings per month</div><div class=\"value {}\">{}</div><div class=\"sub\">was {}</div></div>\
             <div class=\"kpi\"><div class=\"label\">Critical containers</div><div class=\"value {}\">{}</div><div class=\"sub\">{} new · {} resolved</div></div>\
             <div class=\"kpi\"><div class=\"label\">Requested CPU / memory</div><div class=\"value\">{} / {}</div><div class=\"sub\">cores / GiB</div></div>\
             <div class=\"kpi\"><div class=\"label\">Containers</div><div class=\"value\">{}</div><div class=\"sub\">{} workloads</div></div></div>",
            direction(ch.monthly_savings_delta),
            esc(&signed_money(ch.monthly_savings_delta, self.currency)),
            self.money(ch.previous_monthly_savings),
            direction(-(d.critical as f64)),
            signed_count(d.critical),
            ch.new_critical.len(),
            ch.resolved_critical.len(),
            signed(ch.requested_cores_delta, 2),
            signed(ch.requested_gib_delta, 1),
            signed_count(ch.containers_delta),
            signed_count(ch.workloads_delta),
        );
        table(
            out,
            &["Figure", "#Change"],
            &[
                vec![
                    "Recommended CPU cores".into(),
                    signed(ch.recommended_cores_delta, 2),
                ],
                vec![
                    "Recommended memory GiB".into(),
                    signed(ch.recommended_gib_delta, 1),
                ],
                vec!["Warning containers".into(), signed_count(d.warning)],
                vec!["OOM risks".into(), signed_count(d.oom_risks)],
                vec!["Throttling risks".into(), signed_count(d.throttling_risks)],
                vec![
                    "Insufficient data".into(),
                    signed_count(d.insufficient_data),
                ],
                vec!["Findings".into(), signed_count(d.findings)],
            ],
        );
        out.push_str("<div class=\"cols\">");
        for (title, items, none) in [
            (
                "New critical",
                &ch.new_critical,
                "No container became critical.",
            ),
            (
                "Resolved critical",
                &ch.resolved_critical,
                "No critical container was resolved.",
            ),
        ] {
            let _ = write!(out, "<div><h3>{title} ({})</h3>", items.len());
            self.change_items(out, items, none);
            out.push_str("</div>");
        }
        out.push_str("</div></section>\n");
    }

    fn change_items(&self, out: &mut String, items: &[ChangeItem], none: &str) {
        if items.is_empty() {
            empty(out, none);
            return;
        }
        out.push_str("<ul class=\"items\">");
        for item in items {
            let now = match item.severity {
                Some(s) => format!("now {}", pill(s)),
                None => "no longer reported".into(),
            };
            let _ = write!(
                out,
                "<li>{} — {now}<span class=\"sub-key\">{}</span></li>",
                self.who(&item.key),
                esc(&item.reason)
            );
        }
        out.push_str("</ul>");
    }

    fn distribution(&self, out: &mut String, report: &Report) {
        out.push_str(
            "<section id=\"distribution\"><h2>Where the resources are</h2>\
             <p class=\"lead\">Requested, used and recommended resources per namespace and cluster.</p>",
        );
        if report.namespaces.is_empty() {
            empty(out, "No recommendations yet.");
            out.push_str("</section>\n");
            return;
        }
        let mut biggest: Vec<&GroupTotals> = report.namespaces.iter().collect();
        biggest.sort_by(|a, b| {
            b.totals
                .requested_cores
                .total_cmp(&a.totals.requested_cores)
                .then_with(|| a.namespace.cmp(&b.namespace))
        });
        let rows: Vec<PanelRow> = biggest
            .iter()
            .take(CHART_NAMESPACES)
            .map(|g| {
                let t = &g.totals;
                let ns = g.namespace.clone().unwrap_or_default();
                PanelRow {
                    label: if self.multi_cluster {
                        format!("{}/{ns}", g.cluster)
                    } else {
                        ns
                    },
                    values: vec![
                        vec![t.requested_cores, t.used_cores, t.recommended_cores],
                        vec![t.requested_gib, t.used_gib, t.recommended_gib],
                    ],
                }
            })
            .collect();
        let caption = if report.namespaces.len() > CHART_NAMESPACES {
            format!(
                "The {CHART_NAMESPACES} namespaces requesting the most CPU (of {})",
                report.namespaces.len()
            )
        } else {
            "Every namespace, most CPU requested first".to_string()
        };
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            esc(&caption),
            chart::panels(
                "Requested, used and recommended CPU cores and memory GiB per namespace",
                &["CPU cores", "Memory GiB"],
                &[REQUESTED, USED, RECOMMENDED],
                &[cores, gib],
                &rows,
            )
        );
        out.push_str("<h3>Clusters</h3>");
        self.groups(out, &report.clusters, false);
        out.push_str("<h3>Namespaces</h3>");
        self.groups(out, &report.namespaces, true);
        out.push_str("</section>\n");
    }

    fn groups(&self, out: &mut String, groups: &[GroupTotals], namespaces: bool) {
        let mut header = vec!["Cluster"];
        if namespaces {
            header.push("Namespace");
        }
        header.extend([
            "#Workloads",
            "#CPU req / used / rec",
            "#GiB req / used / rec",
            "#Savings / month",
            "#Critical",
            "#Warning",
        ]);
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let t = &g.totals;
                let mut row = vec![esc(&g.cluster)];
                if namespaces {
                    row.push(format!(
                        "<span class=\"wl\">{}</span>",
                        esc(g.namespace.as_deref().unwrap_or(""))
                    ));
                }
                row.extend([
                    t.workloads.to_string(),
                    format!(
                        "{} / {} / {}",
                        cores(t.requested_cores),
                        cores(t.used_cores),
                        cores(t.recommended_cores)
                    ),
                    format!(
                        "{} / {} / {}",
                        gib(t.requested_gib),
                        gib(t.used_gib),
                        gib(t.recommended_gib)
                    ),
                    self.money(t.monthly_savings),
                    t.critical.to_string(),
                    t.warning.to_string(),
                ]);
                row
            })
            .collect();
        table(out, &header, &rows);
    }

    fn provisioning(&self, out: &mut String, report: &Report) {
        let c = &report.summary.counts;
        out.push_str("<section id=\"provisioning\"><h2>Over- and under-provisioned</h2>");
        let _ = write!(
            out,
            "<p class=\"lead\">{} containers would save money with the recommendation, {} need more or are critical. The top {} of each.</p>",
            c.over_provisioned,
            c.under_provisioned,
            super::TOP_N
        );
        out.push_str("<h3>Largest savings</h3>");
        if report.over_provisioned.is_empty() {
            empty(out, "No recommendation saves money.");
        } else {
            let max = report
                .over_provisioned
                .iter()
                .map(|l| l.monthly_savings)
                .fold(0.0, f64::max);
            let rows: Vec<Vec<String>> = report
                .over_provisioned
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    vec![
                        (i + 1).to_string(),
                        self.who(&l.key),
                        esc(&cpu_change(
                            l.current.cpu_request_millicores,
                            l.recommended.cpu_request_millicores,
                        )),
                        esc(&memory_change(
                            l.current.memory_request_bytes,
                            l.recommended.memory_request_bytes,
                        )),
                        format!("{:.1}", l.replicas),
                        format!(
                            "{} / {}",
                            cores(-l.cpu_cores_delta),
                            gib(-l.memory_gib_delta)
                        ),
                        format!(
                            "{}{}",
                            self.money(l.monthly_savings),
                            chart::mini_bar(l.monthly_savings, max, "#059669")
                        ),
                        l.confidence.as_str().into(),
                        held_out(l),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "#",
                    "Workload",
                    "CPU request",
                    "Memory request",
                    "#Replicas",
                    "#Cores / GiB freed",
                    "#Savings / month",
                    "Confidence",
                    "Held out",
                ],
                &rows,
            );
        }
        out.push_str("<h3>Needing more, or critical</h3>");
        if report.under_provisioned.is_empty() {
            empty(
                out,
                "No container needs more than it has, and none is critical.",
            );
        } else {
            let rows: Vec<Vec<String>> = report
                .under_provisioned
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    vec![
                        (i + 1).to_string(),
                        self.who(&l.key),
                        pill(l.severity),
                        esc(&cpu_change(
                            l.current.cpu_request_millicores,
                            l.recommended.cpu_request_millicores,
                        )),
                        esc(&memory_change(
                            l.current.memory_limit_bytes,
                            l.recommended.memory_limit_bytes,
                        )),
                        esc(&cost(l.monthly_savings, self.currency)),
                        codes(&l.findings),
                        held_out(l),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "#",
                    "Workload",
                    "Severity",
                    "CPU request",
                    "Memory limit",
                    "#Cost / month",
                    "Findings",
                    "Held out",
                ],
                &rows,
            );
        }
        out.push_str("</section>\n");
    }

    /// The top changes hour by hour: what a reader checks before trusting a number.
    fn usage(&self, out: &mut String, report: &Report) {
        if report.usage.is_empty() {
            return;
        }
        out.push_str(
            "<section id=\"usage\"><h2>Usage over time</h2>\
             <p class=\"lead\">The top changes hour by hour over the window they were computed on: \
             each hour's median, p95 and peak against the current and recommended requests \
             (solid) and limits (dashed); ▼ OOM kill, ● restart.</p>",
        );
        out.push_str("<p class=\"legend-note\">");
        for l in timeline::levels(Resource::Cpu, &FULL, &FULL) {
            let _ = write!(
                out,
                "<span style=\"color:{}\">━</span> {} &nbsp; ",
                l.color, l.label
            );
        }
        out.push_str("</p>");
        let lines = report
            .over_provisioned
            .iter()
            .chain(&report.under_provisioned);
        for t in &report.usage {
            let Some(line) = lines.clone().find(|l| l.key == t.key) else {
                continue;
            };
            let _ = write!(
                out,
                "<figure class=\"usage\" data-container=\"{}\"><figcaption>{}</figcaption><div class=\"cols\">",
                esc(&format!("{}/{}/{}/{}", t.key.namespace, t.key.kind, t.key.workload, t.key.container)),
                self.who(&t.key)
            );
            for (resource, points, title) in [
                (Resource::Cpu, &t.cpu, "CPU by hour"),
                (Resource::Memory, &t.memory, "Memory working set by hour"),
            ] {
                let _ = write!(
                    out,
                    "<div data-resource=\"{}\">{}</div>",
                    resource.as_str(),
                    timeline::render(
                        &format!("{title} of {}", t.key.container),
                        points,
                        &timeline::levels(resource, &line.current, &line.recommended),
                        &t.events,
                        (t.from, t.to),
                        &|v| timeline::short_value(resource, v),
                    )
                );
            }
            out.push_str("</div></figure>");
        }
        out.push_str("</section>\n");
    }

    fn risks(&self, out: &mut String, report: &Report) {
        out.push_str(
            "<section id=\"risks\"><h2>Runtime risks</h2>\
             <p class=\"lead\">Limits drive runtime: memory above the limit is an OOM kill, CPU at the limit is throttling. \
             Measured on history with the current values.</p>",
        );
        let _ = write!(out, "<h3>OOM risks ({})</h3>", report.oom_risks.len());
        if report.oom_risks.is_empty() {
            empty(
                out,
                "No OOM kills, and no memory peak above the current limit.",
            );
        } else {
            let rows: Vec<Vec<String>> = report
                .oom_risks
                .iter()
                .map(|l| {
                    vec![
                        self.who(&l.key),
                        l.oom_kills.to_string(),
                        l.restarts.to_string(),
                        l.memory_over_limit_hours
                            .map_or_else(|| "-".into(), |h| h.to_string()),
                        esc(&l
                            .memory_peak_bytes
                            .map_or_else(|| "-".into(), memory_measured)),
                        esc(&memory_change(
                            l.current.memory_limit_bytes,
                            l.recommended.memory_limit_bytes,
                        )),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "Workload",
                    "#OOM kills",
                    "#Restarts",
                    "#Hours above limit",
                    "#Memory peak",
                    "#Memory limit",
                ],
                &rows,
            );
        }
        let _ = write!(
            out,
            "<h3>Throttling risks ({})</h3>",
            report.throttling_risks.len()
        );
        if report.throttling_risks.is_empty() {
            empty(
                out,
                "No CPU-starved container, and none often above its CPU limit.",
            );
        } else {
            let rows: Vec<Vec<String>> = report
                .throttling_risks
                .iter()
                .map(|l| {
                    vec![
                        self.who(&l.key),
                        percent_opt(l.throttled_ratio),
                        percent_opt(l.cpu_over_limit_share),
                        esc(&l
                            .cpu_percentile_millicores
                            .map_or_else(|| "-".into(), cpu_measured)),
                        esc(&cpu_change(
                            l.current.cpu_limit_millicores,
                            l.recommended.cpu_limit_millicores,
                        )),
                        codes(&l.findings),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "Workload",
                    "#Throttled periods",
                    "#Samples above limit",
                    "#CPU percentile",
                    "#CPU limit",
                    "Findings",
                ],
                &rows,
            );
        }
        out.push_str("</section>\n");
    }

    fn guidance(&self, out: &mut String, report: &Report) {
        out.push_str(
            "<section id=\"guidance\"><h2>Guidance findings and data gaps</h2>\
             <p class=\"lead\">Always set limits; memory request = limit; CPU limit = 4 × request; \
             a disruption budget for every multi-replica workload.</p>",
        );
        let _ = write!(out, "<h3>Findings by code ({})</h3>", report.findings.len());
        if report.findings.is_empty() {
            empty(out, "Every container follows the guidance.");
        } else {
            let rows: Vec<Vec<String>> = report
                .findings
                .iter()
                .map(|f| {
                    let mut examples: Vec<String> = f
                        .examples
                        .iter()
                        .map(|e| {
                            format!(
                                "{}/{} <span class=\"sub-key\" style=\"display:inline\">({})</span>",
                                esc(&e.key.namespace),
                                esc(&e.key.workload),
                                esc(&e.key.container)
                            )
                        })
                        .collect();
                    let more = f.count.saturating_sub(f.examples.len());
                    if more > 0 {
                        examples.push(format!("and {more} more"));
                    }
                    vec![
                        format!("<code>{}</code>", esc(&f.code)),
                        pill(f.severity),
                        f.count.to_string(),
                        esc(&f
                            .examples
                            .first()
                            .map(|e| e.message.clone())
                            .unwrap_or_default()),
                        examples.join("<br>"),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "Code",
                    "Severity",
                    "#Containers",
                    "What it says",
                    "Examples",
                ],
                &rows,
            );
        }
        let _ = write!(
            out,
            "<h3>Insufficient data ({})</h3>",
            report.insufficient_data.len()
        );
        if report.insufficient_data.is_empty() {
            empty(out, "Every container has enough history.");
        } else {
            let rows: Vec<Vec<String>> = report
                .insufficient_data
                .iter()
                .map(|l: &Line| {
                    vec![
                        self.who(&l.key),
                        l.history_hours.to_string(),
                        esc(&l.reason),
                    ]
                })
                .collect();
            table(out, &["Workload", "#History hours", "Reason"], &rows);
        }
        out.push_str("</section>\n");
    }
}

/// A top line's strategy, how it was chosen, and its held-out figures, as one cell.
fn held_out(l: &Line) -> String {
    let figures = l
        .holdout
        .as_ref()
        .map(holdout::summary)
        .unwrap_or_else(|| holdout::NOT_ENOUGH_HISTORY.into());
    if l.strategy.is_empty() {
        return esc(&figures);
    }
    let choice = l
        .strategy_choice
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| format!(" <span class=\"ctr\">({})</span>", esc(c)))
        .unwrap_or_default();
    format!(
        "<code>{}</code>{choice}<span class=\"sub-key\">{}</span>",
        esc(&l.strategy),
        esc(&figures)
    )
}

fn codes(findings: &[String]) -> String {
    findings
        .iter()
        .map(|c| format!("<code>{}</code>", esc(c)))
        .collect::<Vec<_>>()
        .join(" ")
}
