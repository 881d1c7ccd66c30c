//! The report as Markdown: headings and GitHub-flavoured tables.

use std::fmt::Write;

use super::holdout;
use super::text::{
    cores, cost, cpu_change, gib, memory_change, money, percent_opt, signed, signed_count,
    signed_money, timestamp,
};
use super::{Change, GroupTotals, Line, Report};
use crate::model::ContainerKey;
use crate::quantity::{cpu_measured, memory_measured, memory_opt};

/// Renders `report` as Markdown.
pub fn render(report: &Report) -> String {
    let mut md = Markdown {
        out: String::new(),
        multi_cluster: report.clusters.len() > 1,
        currency: &report.summary.currency,
    };
    md.header(report);
    md.summary(report);
    md.change(report.change.as_ref());
    md.groups("Clusters", &report.clusters, false);
    md.groups("Namespaces", &report.namespaces, true);
    md.over(report);
    md.under(report);
    md.oom(report);
    md.throttling(report);
    md.findings(report);
    md.insufficient(report);
    md.out
}

struct Markdown<'a> {
    out: String,
    multi_cluster: bool,
    currency: &'a str,
}

/// A table cell: no pipes or line breaks that would end it.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

impl Markdown<'_> {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn heading(&mut self, title: &str) {
        let _ = write!(self.out, "\n## {title}\n\n");
    }

    fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.line(&format!("| {} |", header.join(" | ")));
        let rule: Vec<&str> = header.iter().map(|_| "---").collect();
        self.line(&format!("|{}|", rule.join("|")));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
            self.line(&format!("| {} |", cells.join(" | ")));
        }
    }

    /// A section of `items` in a table, one row each (`row` gets its index), or `none`.
    fn listed<T>(
        &mut self,
        title: &str,
        none: &str,
        items: &[T],
        header: &[&str],
        row: impl Fn(&Self, usize, &T) -> Vec<String>,
    ) {
        self.heading(title);
        if items.is_empty() {
            self.line(none);
            return;
        }
        let rows = items
            .iter()
            .enumerate()
            .map(|(i, t)| row(self, i, t))
            .collect();
        self.table(header, rows);
    }

    fn workload(&self, key: &ContainerKey) -> String {
        let w = super::text::workload(key);
        if self.multi_cluster {
            format!("{}/{w}", key.cluster)
        } else {
            w
        }
    }

    fn header(&mut self, report: &Report) {
        let t = &report.summary.totals;
        self.line("# rightsizer fleet report");
        self.line("");
        self.line(&format!(
            "Generated {} · {} clusters · {} namespaces · {} workloads · {} containers · strategy {}",
            timestamp(report.generated_at),
            report.clusters.len(),
            report.namespaces.len(),
            t.workloads,
            t.containers,
            strategies(report)
        ));
    }

    fn summary(&mut self, report: &Report) {
        let (s, t, c) = (
            &report.summary,
            &report.summary.totals,
            &report.summary.counts,
        );
        self.heading("Summary");
        self.line(&format!(
            "**Net savings: {} per month** ({} freed by over-provisioned containers, {} needed by under-provisioned ones).",
            money(t.monthly_savings, self.currency),
            money(s.monthly_savings_gross, self.currency),
            money(s.monthly_cost_increase, self.currency),
        ));
        self.line("");
        self.table(
            &[
                "Resource",
                "Requested",
                "Used (mean)",
                "Recommended",
                "Change",
            ],
            vec![
                vec![
                    "CPU cores".into(),
                    cores(t.requested_cores),
                    cores(t.used_cores),
                    cores(t.recommended_cores),
                    signed(t.recommended_cores - t.requested_cores, 2),
                ],
                vec![
                    "Memory GiB".into(),
                    gib(t.requested_gib),
                    gib(t.used_gib),
                    gib(t.recommended_gib),
                    signed(t.recommended_gib - t.requested_gib, 1),
                ],
            ],
        );
        self.line("");
        self.line(&format!(
            "Containers: {} with a proposed change, {} without, {} with insufficient data. \
             Severity: {} critical, {} warning, {} info. \
             Risks: {} OOM, {} throttling. Findings: {}.",
            c.ok,
            c.no_change,
            c.insufficient_data,
            c.critical,
            c.warning,
            c.info,
            c.oom_risks,
            c.throttling_risks,
            c.findings
        ));
        self.line("");
        self.line(&holdout::fleet(s.holdout.as_ref()));
    }

    fn change(&mut self, change: Option<&Change>) {
        self.heading("Change since the previous report");
        let Some(ch) = change else {
            self.line("This is the first report: nothing to compare with yet.");
            return;
        };
        let d = &ch.counts_delta;
        self.line(&format!(
            "Previous report: {}.",
            timestamp(ch.previous_generated_at)
        ));
        self.line("");
        self.table(
            &["Figure", "Change"],
            vec![
                vec![
                    "Net savings per month".into(),
                    format!(
                        "{} (was {})",
                        signed_money(ch.monthly_savings_delta, self.currency),
                        money(ch.previous_monthly_savings, self.currency)
                    ),
                ],
                vec![
                    "Requested CPU cores".into(),
                    signed(ch.requested_cores_delta, 2),
                ],
                vec![
                    "Recommended CPU cores".into(),
                    signed(ch.recommended_cores_delta, 2),
                ],
                vec![
                    "Requested memory GiB".into(),
                    signed(ch.requested_gib_delta, 1),
                ],
                vec![
                    "Recommended memory GiB".into(),
                    signed(ch.recommended_gib_delta, 1),
                ],
                vec!["Workloads".into(), signed_count(ch.workloads_delta)],
                vec!["Containers".into(), signed_count(ch.containers_delta)],
                vec!["Critical".into(), signed_count(d.critical)],
                vec!["Warning".into(), signed_count(d.warning)],
                vec!["OOM risks".into(), signed_count(d.oom_risks)],
                vec!["Throttling risks".into(), signed_count(d.throttling_risks)],
                vec![
                    "Insufficient data".into(),
                    signed_count(d.insufficient_data),
                ],
            ],
        );
        for (title, items) in [
            ("New critical", &ch.new_critical),
            ("Resolved critical", &ch.resolved_critical),
        ] {
            self.line("");
            if items.is_empty() {
                self.line(&format!("{title}: none."));
                continue;
            }
            self.line(&format!("{title}:"));
            self.line("");
            for item in items {
                let now = match item.severity {
                    Some(s) => format!("now {}", s.as_str()),
                    None => "no longer reported".into(),
                };
                self.line(&format!(
                    "- `{}` container `{}` ({now}): {}",
                    self.workload(&item.key),
                    item.key.container,
                    cell(&item.reason)
                ));
            }
        }
    }

    fn groups(&mut self, title: &str, groups: &[GroupTotals], namespaces: bool) {
        self.heading(title);
        if groups.is_empty() {
            self.line("No recommendations.");
            return;
        }
        let mut header = vec!["Cluster"];
        if namespaces {
            header.push("Namespace");
        }
        header.extend([
            "Workloads",
            "Containers",
            "CPU requested",
            "CPU used",
            "CPU recommended",
            "GiB requested",
            "GiB used",
            "GiB recommended",
            "Savings / month",
            "Critical",
            "Warning",
        ]);
        let rows = groups
            .iter()
            .map(|g| {
                let t = &g.totals;
                let mut row = vec![g.cluster.clone()];
                if namespaces {
                    row.push(g.namespace.clone().unwrap_or_default());
                }
                row.extend([
                    t.workloads.to_string(),
                    t.containers.to_string(),
                    cores(t.requested_cores),
                    cores(t.used_cores),
                    cores(t.recommended_cores),
                    gib(t.requested_gib),
                    gib(t.used_gib),
                    gib(t.recommended_gib),
                    money(t.monthly_savings, self.currency),
                    t.critical.to_string(),
                    t.warning.to_string(),
                ]);
                row
            })
            .collect();
        self.table(&header, rows);
    }

    fn over(&mut self, report: &Report) {
        self.listed(
            "Top over-provisioned",
            "None: no recommendation saves money.",
            &report.over_provisioned,
            &[
                "#",
                "Workload",
                "Container",
                "CPU request",
                "Memory request",
                "Replicas",
                "Cores freed",
                "GiB freed",
                "Savings / month",
                "Confidence",
                "Held out",
                "Strategy",
            ],
            |md, i, l| {
                vec![
                    (i + 1).to_string(),
                    md.workload(&l.key),
                    l.key.container.clone(),
                    cpu_change(
                        l.current.cpu_request_millicores,
                        l.recommended.cpu_request_millicores,
                    ),
                    memory_change(
                        l.current.memory_request_bytes,
                        l.recommended.memory_request_bytes,
                    ),
                    format!("{:.1}", l.replicas),
                    cores(-l.cpu_cores_delta),
                    gib(-l.memory_gib_delta),
                    money(l.monthly_savings, md.currency),
                    l.confidence.as_str().into(),
                    held_out(l),
                    strategy(l),
                ]
            },
        );
    }

    fn under(&mut self, report: &Report) {
        self.listed(
            "Top under-provisioned and critical",
            "None: no container needs more than it has, and none is critical.",
            &report.under_provisioned,
            &[
                "#",
                "Workload",
                "Container",
                "Severity",
                "CPU request",
                "Memory limit",
                "Cost / month",
                "Findings",
                "Held out",
                "Strategy",
            ],
            |md, i, l| {
                vec![
                    (i + 1).to_string(),
                    md.workload(&l.key),
                    l.key.container.clone(),
                    l.severity.as_str().into(),
                    cpu_change(
                        l.current.cpu_request_millicores,
                        l.recommended.cpu_request_millicores,
                    ),
                    memory_change(
                        l.current.memory_limit_bytes,
                        l.recommended.memory_limit_bytes,
                    ),
                    cost(l.monthly_savings, md.currency),
                    l.findings.join(", "),
                    held_out(l),
                    strategy(l),
                ]
            },
        );
    }

    fn oom(&mut self, report: &Report) {
        self.listed(
            "OOM risks",
            "None: no OOM kills, and no memory peak above the current limit.",
            &report.oom_risks,
            &[
                "Workload",
                "Container",
                "OOM kills",
                "Restarts",
                "Hours above limit",
                "Memory peak",
                "Memory limit",
                "Recommended limit",
            ],
            |md, _, l| {
                vec![
                    md.workload(&l.key),
                    l.key.container.clone(),
                    l.oom_kills.to_string(),
                    l.restarts.to_string(),
                    l.memory_over_limit_hours
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "-".into()),
                    l.memory_peak_bytes
                        .map(memory_measured)
                        .unwrap_or_else(|| "-".into()),
                    memory_opt(l.current.memory_limit_bytes),
                    memory_opt(l.recommended.memory_limit_bytes),
                ]
            },
        );
    }

    fn throttling(&mut self, report: &Report) {
        self.listed(
            "Throttling risks",
            "None: no CPU-starved container, and none often above its CPU limit.",
            &report.throttling_risks,
            &[
                "Workload",
                "Container",
                "Throttled periods",
                "Samples above limit",
                "CPU percentile",
                "CPU limit",
            ],
            |md, _, l| {
                vec![
                    md.workload(&l.key),
                    l.key.container.clone(),
                    percent_opt(l.throttled_ratio),
                    percent_opt(l.cpu_over_limit_share),
                    l.cpu_percentile_millicores
                        .map(cpu_measured)
                        .unwrap_or_else(|| "-".into()),
                    cpu_change(
                        l.current.cpu_limit_millicores,
                        l.recommended.cpu_limit_millicores,
                    ),
                ]
            },
        );
    }

    fn findings(&mut self, report: &Report) {
        self.listed(
            "Guidance findings",
            "None: every container follows the guidance.",
            &report.findings,
            &["Code", "Severity", "Containers", "What it says", "Examples"],
            |md, _, f| {
                let examples: Vec<String> = f
                    .examples
                    .iter()
                    .map(|e| format!("{} ({})", md.workload(&e.key), e.key.container))
                    .collect();
                let more = f.count.saturating_sub(f.examples.len());
                let mut examples = examples.join(", ");
                if more > 0 {
                    let _ = write!(examples, " and {more} more");
                }
                vec![
                    format!("`{}`", f.code),
                    f.severity.as_str().into(),
                    f.count.to_string(),
                    f.examples
                        .first()
                        .map(|e| e.message.clone())
                        .unwrap_or_default(),
                    examples,
                ]
            },
        );
    }

    fn insufficient(&mut self, report: &Report) {
        self.listed(
            "Insufficient data",
            "None: every container has enough history.",
            &report.insufficient_data,
            &["Workload", "Container", "History hours", "Reason"],
            |md, _, l| {
                vec![
                    md.workload(&l.key),
                    l.key.container.clone(),
                    l.history_hours.to_string(),
                    l.reason.clone(),
                ]
            },
        );
    }
}

/// A top line's held-out figures: `7 days: 0 memory overrun hours, …`.
fn held_out(l: &Line) -> String {
    l.holdout
        .as_ref()
        .map(holdout::summary)
        .unwrap_or_else(|| holdout::NOT_ENOUGH_HISTORY.into())
}

/// A top line's strategy and how it was chosen.
fn strategy(l: &Line) -> String {
    if l.strategy.is_empty() {
        return "-".into();
    }
    holdout::strategy(&format!("`{}`", l.strategy), l.strategy_choice.as_deref())
}

/// The strategies of the report, for its header.
pub(crate) fn strategies(report: &Report) -> String {
    if report.summary.strategies.is_empty() {
        "n/a".into()
    } else {
        report.summary.strategies.join(", ")
    }
}
