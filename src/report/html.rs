//! The report as one self-contained HTML file: inline CSS, inline SVG charts, no scripts and
//! no external references, laid out to print (or save as PDF) one section per page.

use std::fmt::Write;

use maud::{html, Markup, PreEscaped};

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

/// Escapes text for the SVG the charts write as strings (`chart.rs`, `timeline.rs`), with
/// maud's escaper: the one the templates apply, so the file has one escaping rule.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = maud::Escaper::new(&mut out).write_str(s);
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
    let generated = timestamp(report.generated_at);
    // The line breaks keep the saved file readable: one line per section.
    html! {
        // Lower case, as the report has always started; maud's DOCTYPE is upper case.
        (PreEscaped("<!doctype html>")) "\n"
        html lang="en" {
            "\n"
            head {
                "\n"
                meta charset="utf-8"; "\n"
                meta name="viewport" content="width=device-width, initial-scale=1"; "\n"
                title { "rightsizer fleet report — " (generated) } "\n"
                // CSS is raw text: quotes in it must reach the browser as they are.
                style { (PreEscaped(STYLE)) } "\n"
            }
            "\n"
            body {
                "\n"
                main {
                    "\n"
                    (html.overview(report))
                    (html.change(report.change.as_ref()))
                    (html.distribution(report))
                    (html.provisioning(report))
                    (html.usage(report))
                    (html.risks(report))
                    (html.guidance(report))
                    footer {
                        "rightsizer · report format v" (report.version) " · generated "
                        (generated) " from the recommendations stored at that time"
                    }
                    "\n"
                }
                "\n"
            }
            "\n"
        }
        "\n"
    }
    .into_string()
}

struct Html<'a> {
    multi_cluster: bool,
    currency: &'a str,
}

fn pill(s: Severity) -> Markup {
    html! { span class={ "pill " (s.as_str()) } { (s.as_str()) } }
}

fn empty(text: &str) -> Markup {
    html! { p class="empty" { (text) } }
}

/// A table: header cells (a leading `#` marks a numeric column) and rows of cells.
fn table(header: &[&str], rows: &[Vec<Markup>]) -> Markup {
    // A lone `#` (the rank column) is a numeric column whose header is the `#` itself.
    let numeric = |i: usize| {
        header
            .get(i)
            .is_some_and(|h| h.starts_with('#'))
            .then_some("num")
    };
    html! {
        table {
            thead {
                tr {
                    @for h in header {
                        @match h.strip_prefix('#') {
                            Some(name) if !name.is_empty() => { th class="num" { (name) } },
                            _ => { th { (h) } },
                        }
                    }
                }
            }
            tbody {
                @for row in rows {
                    tr { @for (i, cell) in row.iter().enumerate() { td class=[numeric(i)] { (cell) } } }
                }
            }
        }
    }
}

/// A plain-text table cell.
fn cell(text: impl maud::Render) -> Markup {
    html! { (text) }
}

/// The section's closing line break, so each section starts a line in the saved file.
fn section(id: &str, content: Markup) -> Markup {
    html! { section id=(id) { (content) } "\n" }
}

impl Html<'_> {
    /// The workload and container of a line, as one table cell: `name / container` over
    /// `namespace · Kind` (cluster first when there are several).
    fn who(&self, key: &ContainerKey) -> Markup {
        html! {
            span class="wl" { (key.workload) } " " span class="ctr" { "/ " (key.container) }
            span class="sub-key" {
                @if self.multi_cluster { (key.cluster) " · " }
                (key.namespace) " · " (key.kind)
            }
        }
    }

    fn money(&self, v: f64) -> String {
        money(v, self.currency)
    }

    fn overview(&self, report: &Report) -> Markup {
        let t = &report.summary.totals;
        let c = &report.summary.counts;
        section(
            "overview",
            html! {
                div class="brand" { "rightsizer" }
                h1 { "Fleet right-sizing report" }
                p class="meta" {
                    "Generated " (timestamp(report.generated_at)) " · " (report.clusters.len())
                    " clusters · " (report.namespaces.len()) " namespaces · " (t.workloads)
                    " workloads · " (t.containers) " containers · strategy "
                    (super::markdown::strategies(report))
                }
                (self.overview_kpis(report))
                p class="lead" id="holdout-totals" { (holdout::fleet(report.summary.holdout.as_ref())) }
                div class="charts" {
                    figure {
                        figcaption { "CPU cores, fleet" }
                        (PreEscaped(chart::columns(
                            "CPU cores: requested, used, recommended",
                            &[(REQUESTED, t.requested_cores), (USED, t.used_cores), (RECOMMENDED, t.recommended_cores)],
                            cores,
                        )))
                    }
                    figure {
                        figcaption { "Memory GiB, fleet" }
                        (PreEscaped(chart::columns(
                            "Memory GiB: requested, used, recommended",
                            &[(REQUESTED, t.requested_gib), (USED, t.used_gib), (RECOMMENDED, t.recommended_gib)],
                            gib,
                        )))
                    }
                    figure {
                        figcaption { "Containers by severity" }
                        (PreEscaped(chart::stacked(
                            "Containers by severity",
                            &[("critical", c.critical, CRITICAL), ("warning", c.warning, WARNING), ("info", c.info, INFO)],
                        )))
                        figcaption style="margin-top:14px" { "Containers by status" }
                        (PreEscaped(chart::stacked(
                            "Containers by status",
                            &[
                                ("change proposed", c.ok, "#6366f1"),
                                ("no change", c.no_change, "#94a3b8"),
                                ("insufficient data", c.insufficient_data, "#cbd5e1"),
                            ],
                        )))
                        p class="legend-note" {
                            "Requested and recommended are summed over average replicas; \
                             used is the mean working set and CPU rate."
                        }
                    }
                }
                (self.highlights(report))
            },
        )
    }

    /// The first page's four figures: savings, CPU, memory and risk.
    fn overview_kpis(&self, report: &Report) -> Markup {
        let (s, t, c) = (
            &report.summary,
            &report.summary.totals,
            &report.summary.counts,
        );
        let savings_class = if t.monthly_savings >= 0.0 {
            "good"
        } else {
            "bad"
        };
        html! {
            div class="kpis" {
                div class="kpi" {
                    div class="label" { "Net savings per month" }
                    div class={ "value " (savings_class) } { (self.money(t.monthly_savings)) }
                    div class="sub" {
                        (self.money(s.monthly_savings_gross)) " freed · "
                        (self.money(s.monthly_cost_increase)) " needed"
                    }
                }
                div class="kpi" {
                    div class="label" { "CPU cores requested" }
                    div class="value" { (cores(t.requested_cores)) " → " (cores(t.recommended_cores)) }
                    div class="sub" {
                        (cores(t.used_cores)) " in use on average · "
                        (signed(t.recommended_cores - t.requested_cores, 2)) " cores"
                    }
                }
                div class="kpi" {
                    div class="label" { "Memory GiB requested" }
                    div class="value" { (gib(t.requested_gib)) " → " (gib(t.recommended_gib)) }
                    div class="sub" {
                        (gib(t.used_gib)) " in use on average · "
                        (signed(t.recommended_gib - t.requested_gib, 1)) " GiB"
                    }
                }
                div class="kpi" {
                    div class="label" { "At risk" }
                    div class={ "value" @if c.critical > 0 { " bad" } } { (c.critical) " critical" }
                    div class="sub" {
                        (c.warning) " warning · " (c.oom_risks) " OOM · " (c.throttling_risks) " throttling"
                    }
                }
            }
        }
    }

    /// The few lines a reader of only the first page should see: biggest savings, risks now.
    fn highlights(&self, report: &Report) -> Markup {
        let savings: Vec<Vec<Markup>> = report
            .over_provisioned
            .iter()
            .take(HIGHLIGHTS)
            .map(|l| vec![self.who(&l.key), cell(self.money(l.monthly_savings))])
            .collect();
        let critical: Vec<&Line> = report
            .containers
            .iter()
            .filter(|l| l.severity == Severity::Critical)
            .collect();
        let mut risks: Vec<Vec<Markup>> = critical
            .iter()
            .take(HIGHLIGHTS)
            .map(|l| vec![self.who(&l.key), codes(&l.findings)])
            .collect();
        if critical.len() > HIGHLIGHTS {
            risks.push(vec![
                cell(format!("and {} more", critical.len() - HIGHLIGHTS)),
                cell(""),
            ]);
        }
        html! {
            div class="cols highlights" {
                div {
                    h3 { "Biggest savings" }
                    @if savings.is_empty() {
                        (empty("No recommendation saves money."))
                    } @else {
                        (table(&["Workload", "#Per month"], &savings))
                    }
                }
                div {
                    h3 { "At risk now" }
                    @if risks.is_empty() {
                        (empty("No critical container."))
                    } @else {
                        (table(&["Workload", "Findings"], &risks))
                    }
                }
            }
        }
    }

    fn change(&self, change: Option<&Change>) -> Markup {
        let Some(ch) = change else {
            return section(
                "change",
                html! {
                    h2 { "Change since the previous report" }
                    p class="lead" { "This is the first report: nothing to compare with yet." }
                },
            );
        };
        let d = &ch.counts_delta;
        let rows: Vec<Vec<Markup>> = [
            (
                "Recommended CPU cores",
                signed(ch.recommended_cores_delta, 2),
            ),
            (
                "Recommended memory GiB",
                signed(ch.recommended_gib_delta, 1),
            ),
            ("Warning containers", signed_count(d.warning)),
            ("OOM risks", signed_count(d.oom_risks)),
            ("Throttling risks", signed_count(d.throttling_risks)),
            ("Insufficient data", signed_count(d.insufficient_data)),
            ("Findings", signed_count(d.findings)),
        ]
        .into_iter()
        .map(|(figure, change)| vec![cell(figure), cell(change)])
        .collect();
        section(
            "change",
            html! {
                h2 { "Change since the previous report" }
                p class="lead" { "Compared with the report of " (timestamp(ch.previous_generated_at)) "." }
                (self.change_kpis(ch))
                (table(&["Figure", "#Change"], &rows))
                div class="cols" {
                    @for (title, items, none) in [
                        ("New critical", &ch.new_critical, "No container became critical."),
                        ("Resolved critical", &ch.resolved_critical, "No critical container was resolved."),
                    ] {
                        div {
                            h3 { (title) " (" (items.len()) ")" }
                            (self.change_items(items, none))
                        }
                    }
                }
            },
        )
    }

    /// The change's four figures: savings, critical containers, requests and counts.
    fn change_kpis(&self, ch: &Change) -> Markup {
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
        html! {
            div class="kpis" {
                div class="kpi" {
                    div class="label" { "Net savings per month" }
                    div class={ "value " (direction(ch.monthly_savings_delta)) } {
                        (signed_money(ch.monthly_savings_delta, self.currency))
                    }
                    div class="sub" { "was " (self.money(ch.previous_monthly_savings)) }
                }
                div class="kpi" {
                    div class="label" { "Critical containers" }
                    div class={ "value " (direction(-(d.critical as f64))) } { (signed_count(d.critical)) }
                    div class="sub" {
                        (ch.new_critical.len()) " new · " (ch.resolved_critical.len()) " resolved"
                    }
                }
                div class="kpi" {
                    div class="label" { "Requested CPU / memory" }
                    div class="value" {
                        (signed(ch.requested_cores_delta, 2)) " / " (signed(ch.requested_gib_delta, 1))
                    }
                    div class="sub" { "cores / GiB" }
                }
                div class="kpi" {
                    div class="label" { "Containers" }
                    div class="value" { (signed_count(ch.containers_delta)) }
                    div class="sub" { (signed_count(ch.workloads_delta)) " workloads" }
                }
            }
        }
    }

    fn change_items(&self, items: &[ChangeItem], none: &str) -> Markup {
        if items.is_empty() {
            return empty(none);
        }
        html! {
            ul class="items" {
                @for item in items {
                    li {
                        (self.who(&item.key)) " — "
                        @match item.severity {
                            Some(s) => { "now " (pill(s)) },
                            None => { "no longer reported" },
                        }
                        span class="sub-key" { (item.reason) }
                    }
                }
            }
        }
    }

    fn distribution(&self, report: &Report) -> Markup {
        let intro = html! {
            h2 { "Where the resources are" }
            p class="lead" { "Requested, used and recommended resources per namespace and cluster." }
        };
        if report.namespaces.is_empty() {
            return section(
                "distribution",
                html! { (intro) (empty("No recommendations yet.")) },
            );
        }
        let caption = if report.namespaces.len() > CHART_NAMESPACES {
            format!(
                "The {CHART_NAMESPACES} namespaces requesting the most CPU (of {})",
                report.namespaces.len()
            )
        } else {
            "Every namespace, most CPU requested first".to_string()
        };
        section(
            "distribution",
            html! {
                (intro)
                figure {
                    figcaption { (caption) }
                    (PreEscaped(chart::panels(
                        "Requested, used and recommended CPU cores and memory GiB per namespace",
                        &["CPU cores", "Memory GiB"],
                        &[REQUESTED, USED, RECOMMENDED],
                        &[cores, gib],
                        &self.namespace_rows(report),
                    )))
                }
                h3 { "Clusters" }
                (self.groups(&report.clusters, false))
                h3 { "Namespaces" }
                (self.groups(&report.namespaces, true))
            },
        )
    }

    /// The namespaces requesting the most CPU, as the per-namespace chart's rows.
    fn namespace_rows(&self, report: &Report) -> Vec<PanelRow> {
        let mut biggest: Vec<&GroupTotals> = report.namespaces.iter().collect();
        biggest.sort_by(|a, b| {
            b.totals
                .requested_cores
                .total_cmp(&a.totals.requested_cores)
                .then_with(|| a.namespace.cmp(&b.namespace))
        });
        biggest
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
            .collect()
    }

    fn groups(&self, groups: &[GroupTotals], namespaces: bool) -> Markup {
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
        let rows: Vec<Vec<Markup>> = groups
            .iter()
            .map(|g| {
                let t = &g.totals;
                let mut row = vec![cell(&g.cluster)];
                if namespaces {
                    row.push(html! { span class="wl" { (g.namespace.as_deref().unwrap_or("")) } });
                }
                row.extend([
                    cell(t.workloads),
                    cell(format!(
                        "{} / {} / {}",
                        cores(t.requested_cores),
                        cores(t.used_cores),
                        cores(t.recommended_cores)
                    )),
                    cell(format!(
                        "{} / {} / {}",
                        gib(t.requested_gib),
                        gib(t.used_gib),
                        gib(t.recommended_gib)
                    )),
                    cell(self.money(t.monthly_savings)),
                    cell(t.critical),
                    cell(t.warning),
                ]);
                row
            })
            .collect();
        table(&header, &rows)
    }

    fn provisioning(&self, report: &Report) -> Markup {
        let c = &report.summary.counts;
        section(
            "provisioning",
            html! {
                h2 { "Over- and under-provisioned" }
                p class="lead" {
                    (c.over_provisioned) " containers would save money with the recommendation, "
                    (c.under_provisioned) " need more or are critical. The top " (super::TOP_N) " of each."
                }
                h3 { "Largest savings" }
                @if report.over_provisioned.is_empty() {
                    (empty("No recommendation saves money."))
                } @else {
                    (self.over_provisioned(&report.over_provisioned))
                }
                h3 { "Needing more, or critical" }
                @if report.under_provisioned.is_empty() {
                    (empty("No container needs more than it has, and none is critical."))
                } @else {
                    (self.under_provisioned(&report.under_provisioned))
                }
            },
        )
    }

    fn over_provisioned(&self, lines: &[Line]) -> Markup {
        let max = lines.iter().map(|l| l.monthly_savings).fold(0.0, f64::max);
        let rows: Vec<Vec<Markup>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                vec![
                    cell(i + 1),
                    self.who(&l.key),
                    cell(cpu_change(
                        l.current.cpu_request_millicores,
                        l.recommended.cpu_request_millicores,
                    )),
                    cell(memory_change(
                        l.current.memory_request_bytes,
                        l.recommended.memory_request_bytes,
                    )),
                    cell(format!("{:.1}", l.replicas)),
                    cell(format!(
                        "{} / {}",
                        cores(-l.cpu_cores_delta),
                        gib(-l.memory_gib_delta)
                    )),
                    html! {
                        (self.money(l.monthly_savings))
                        (PreEscaped(chart::mini_bar(l.monthly_savings, max, "#059669")))
                    },
                    cell(l.confidence.as_str()),
                    held_out(l),
                ]
            })
            .collect();
        table(
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
        )
    }

    fn under_provisioned(&self, lines: &[Line]) -> Markup {
        let rows: Vec<Vec<Markup>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                vec![
                    cell(i + 1),
                    self.who(&l.key),
                    pill(l.severity),
                    cell(cpu_change(
                        l.current.cpu_request_millicores,
                        l.recommended.cpu_request_millicores,
                    )),
                    cell(memory_change(
                        l.current.memory_limit_bytes,
                        l.recommended.memory_limit_bytes,
                    )),
                    cell(cost(l.monthly_savings, self.currency)),
                    codes(&l.findings),
                    held_out(l),
                ]
            })
            .collect();
        table(
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
        )
    }

    /// The top changes hour by hour: what a reader checks before trusting a number.
    fn usage(&self, report: &Report) -> Markup {
        if report.usage.is_empty() {
            return html! {};
        }
        let lines = report
            .over_provisioned
            .iter()
            .chain(&report.under_provisioned);
        section(
            "usage",
            html! {
                h2 { "Usage over time" }
                p class="lead" {
                    "The top changes hour by hour over the window they were computed on: \
                     each hour's median, p95 and peak against the current and recommended requests \
                     (solid) and limits (dashed); ▼ OOM kill, ● restart."
                }
                p class="legend-note" {
                    @for l in timeline::levels(Resource::Cpu, &FULL, &FULL) {
                        span style={ "color:" (l.color) } { "━" } " " (l.label) (PreEscaped(" &nbsp; "))
                    }
                }
                @for t in &report.usage {
                    @if let Some(line) = lines.clone().find(|l| l.key == t.key) {
                        (self.usage_figure(t, line))
                    }
                }
            },
        )
    }

    /// One container's CPU and memory by hour, side by side.
    fn usage_figure(&self, t: &super::UsageTimeline, line: &Line) -> Markup {
        let k = &t.key;
        html! {
            figure class="usage" data-container={ (k.namespace) "/" (k.kind) "/" (k.workload) "/" (k.container) } {
                figcaption { (self.who(k)) }
                div class="cols" {
                    @for (resource, points, title) in [
                        (Resource::Cpu, &t.cpu, "CPU by hour"),
                        (Resource::Memory, &t.memory, "Memory working set by hour"),
                    ] {
                        div data-resource=(resource.as_str()) {
                            (PreEscaped(timeline::render(
                                &format!("{title} of {}", k.container),
                                points,
                                &timeline::levels(resource, &line.current, &line.recommended),
                                &t.events,
                                (t.from, t.to),
                                &|v| timeline::short_value(resource, v),
                            )))
                        }
                    }
                }
            }
        }
    }

    fn risks(&self, report: &Report) -> Markup {
        section(
            "risks",
            html! {
                h2 { "Runtime risks" }
                p class="lead" {
                    "Limits drive runtime: memory above the limit is an OOM kill, CPU at the limit is throttling. \
                     Measured on history with the current values."
                }
                h3 { "OOM risks (" (report.oom_risks.len()) ")" }
                @if report.oom_risks.is_empty() {
                    (empty("No OOM kills, and no memory peak above the current limit."))
                } @else {
                    (self.oom_risks(&report.oom_risks))
                }
                h3 { "Throttling risks (" (report.throttling_risks.len()) ")" }
                @if report.throttling_risks.is_empty() {
                    (empty("No CPU-starved container, and none often above its CPU limit."))
                } @else {
                    (self.throttling_risks(&report.throttling_risks))
                }
            },
        )
    }

    fn oom_risks(&self, lines: &[Line]) -> Markup {
        let rows: Vec<Vec<Markup>> = lines
            .iter()
            .map(|l| {
                vec![
                    self.who(&l.key),
                    cell(l.oom_kills),
                    cell(l.restarts),
                    cell(
                        l.memory_over_limit_hours
                            .map_or_else(|| "-".into(), |h| h.to_string()),
                    ),
                    cell(
                        l.memory_peak_bytes
                            .map_or_else(|| "-".into(), memory_measured),
                    ),
                    cell(memory_change(
                        l.current.memory_limit_bytes,
                        l.recommended.memory_limit_bytes,
                    )),
                ]
            })
            .collect();
        table(
            &[
                "Workload",
                "#OOM kills",
                "#Restarts",
                "#Hours above limit",
                "#Memory peak",
                "#Memory limit",
            ],
            &rows,
        )
    }

    fn throttling_risks(&self, lines: &[Line]) -> Markup {
        let rows: Vec<Vec<Markup>> = lines
            .iter()
            .map(|l| {
                vec![
                    self.who(&l.key),
                    cell(percent_opt(l.throttled_ratio)),
                    cell(percent_opt(l.cpu_over_limit_share)),
                    cell(
                        l.cpu_percentile_millicores
                            .map_or_else(|| "-".into(), cpu_measured),
                    ),
                    cell(cpu_change(
                        l.current.cpu_limit_millicores,
                        l.recommended.cpu_limit_millicores,
                    )),
                    codes(&l.findings),
                ]
            })
            .collect();
        table(
            &[
                "Workload",
                "#Throttled periods",
                "#Samples above limit",
                "#CPU percentile",
                "#CPU limit",
                "Findings",
            ],
            &rows,
        )
    }

    fn guidance(&self, report: &Report) -> Markup {
        let insufficient: Vec<Vec<Markup>> = report
            .insufficient_data
            .iter()
            .map(|l: &Line| vec![self.who(&l.key), cell(l.history_hours), cell(&l.reason)])
            .collect();
        section(
            "guidance",
            html! {
                h2 { "Guidance findings and data gaps" }
                p class="lead" {
                    "Always set limits; memory request = limit; CPU limit = 4 × request; \
                     a disruption budget for every multi-replica workload."
                }
                h3 { "Findings by code (" (report.findings.len()) ")" }
                @if report.findings.is_empty() {
                    (empty("Every container follows the guidance."))
                } @else {
                    (findings(report))
                }
                h3 { "Insufficient data (" (report.insufficient_data.len()) ")" }
                @if insufficient.is_empty() {
                    (empty("Every container has enough history."))
                } @else {
                    (table(&["Workload", "#History hours", "Reason"], &insufficient))
                }
            },
        )
    }
}

/// The findings by code, with a few examples of each.
fn findings(report: &Report) -> Markup {
    let rows: Vec<Vec<Markup>> = report
        .findings
        .iter()
        .map(|f| {
            let more = f.count.saturating_sub(f.examples.len());
            let examples = html! {
                @for (i, e) in f.examples.iter().enumerate() {
                    @if i > 0 { br; }
                    (e.key.namespace) "/" (e.key.workload) " "
                    span class="sub-key" style="display:inline" { "(" (e.key.container) ")" }
                }
                @if more > 0 {
                    @if !f.examples.is_empty() { br; }
                    "and " (more) " more"
                }
            };
            vec![
                html! { code { (f.code) } },
                pill(f.severity),
                cell(f.count),
                cell(
                    f.examples
                        .first()
                        .map(|e| e.message.as_str())
                        .unwrap_or_default(),
                ),
                examples,
            ]
        })
        .collect();
    table(
        &[
            "Code",
            "Severity",
            "#Containers",
            "What it says",
            "Examples",
        ],
        &rows,
    )
}

/// A top line's strategy, how it was chosen, and its held-out figures, as one cell.
fn held_out(l: &Line) -> Markup {
    let figures = l
        .holdout
        .as_ref()
        .map(holdout::summary)
        .unwrap_or_else(|| holdout::NOT_ENOUGH_HISTORY.into());
    if l.strategy.is_empty() {
        return cell(figures);
    }
    let choice = l.strategy_choice.as_deref().filter(|c| !c.is_empty());
    html! {
        code { (l.strategy) }
        @if let Some(c) = choice { " " span class="ctr" { "(" (c) ")" } }
        span class="sub-key" { (figures) }
    }
}

fn codes(findings: &[String]) -> Markup {
    html! {
        @for (i, c) in findings.iter().enumerate() {
            @if i > 0 { " " }
            code { (c) }
        }
    }
}
