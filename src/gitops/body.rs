//! The words of a change: commit messages and pull-request bodies.
//!
//! The PR body is a Markdown table per workload, one row per container. Its
//! columns are the [`COLUMNS`] list: a header and a function from a row to a
//! cell, so a new column (backtest risk, impact, findings) is one more entry.

use std::collections::BTreeSet;

use super::plan::{ContainerPlan, Proposal};
use super::{ContainerChange, OutputMode, WorkloadRef};
use crate::model::{Recommendation, Resources};
use crate::quantity;
use crate::report::holdout;

/// `rightsizer: right-size N workloads[ in NAMESPACE]`.
pub(crate) fn title(workloads: usize, namespace: Option<&str>) -> String {
    let noun = if workloads == 1 {
        "workload"
    } else {
        "workloads"
    };
    match namespace {
        Some(ns) => format!("rightsizer: right-size {workloads} {noun} in {ns}"),
        None => format!("rightsizer: right-size {workloads} {noun}"),
    }
}

/// A short before → after of the quantities that differ.
pub(crate) fn summary(before: &Resources, after: &Resources) -> String {
    let pairs = [
        (
            "cpu request",
            before.cpu_request_millicores,
            after.cpu_request_millicores,
            true,
        ),
        (
            "cpu limit",
            before.cpu_limit_millicores,
            after.cpu_limit_millicores,
            true,
        ),
        (
            "memory request",
            before.memory_request_bytes,
            after.memory_request_bytes,
            false,
        ),
        (
            "memory limit",
            before.memory_limit_bytes,
            after.memory_limit_bytes,
            false,
        ),
    ];
    let mut parts = Vec::new();
    for (label, b, a, is_cpu) in pairs {
        if b == a {
            continue;
        }
        let fmt = |v: Option<i64>| {
            if is_cpu {
                quantity::cpu_opt(v)
            } else {
                quantity::memory_opt(v)
            }
        };
        parts.push(format!("{label} {} → {}", fmt(b), fmt(a)));
    }
    parts.join(", ")
}

/// The commit message: the title, then one line per changed container.
pub(crate) fn commit_message(
    changes: &[(WorkloadRef, Vec<ContainerChange>)],
    namespace: Option<&str>,
) -> String {
    let mut message = title(changes.len(), namespace);
    message.push_str("\n\n");
    for (workload, containers) in changes {
        for c in containers {
            message.push_str(&format!(
                "- {workload} {}: {}\n",
                c.container,
                summary(&c.before, &c.after)
            ));
        }
    }
    message
}

/// What a cell is computed from.
pub(crate) struct Row<'a> {
    /// Container name.
    pub container: &'a str,
    /// Requests and limits before.
    pub before: &'a Resources,
    /// Requests and limits after.
    pub after: &'a Resources,
    /// The recommendation (evidence, confidence, reason, and whatever is added later).
    pub rec: &'a Recommendation,
}

/// One column of the per-workload table.
pub(crate) struct Column {
    /// Header text.
    pub header: &'static str,
    /// The cell of a row (Markdown; `|` is escaped afterwards).
    pub cell: fn(&Row) -> String,
}

/// The table's columns, in order.
pub(crate) const COLUMNS: &[Column] = &[
    Column {
        header: "Container",
        cell: container_cell,
    },
    Column {
        header: "CPU request",
        cell: cpu_request_cell,
    },
    Column {
        header: "CPU limit",
        cell: cpu_limit_cell,
    },
    Column {
        header: "Memory request",
        cell: memory_request_cell,
    },
    Column {
        header: "Memory limit",
        cell: memory_limit_cell,
    },
    Column {
        header: "Evidence",
        cell: evidence_cell,
    },
    Column {
        header: "Confidence",
        cell: confidence_cell,
    },
    Column {
        header: "Backtest risk",
        cell: backtest_cell,
    },
    Column {
        header: "Impact",
        cell: impact_cell,
    },
    Column {
        header: "Findings",
        cell: findings_cell,
    },
    Column {
        header: "Reason",
        cell: reason_cell,
    },
];

fn share(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

/// Replayed on the window: throttling (CPU above the limit) and OOM hours (memory above the
/// limit), now → after.
fn backtest_cell(r: &Row) -> String {
    let Some(b) = &r.rec.backtest else {
        return "n/a".into();
    };
    let hours = |h: Option<u32>| h.map(|h| h.to_string()).unwrap_or_else(|| "n/a".into());
    let mut cell = format!(
        "CPU over limit {} → {}; memory over limit {} → {} h",
        share(b.current.cpu_over_limit_share),
        share(b.recommended.cpu_over_limit_share),
        hours(b.current.memory_over_limit_hours),
        hours(b.recommended.memory_over_limit_hours)
    );
    if b.memory_censored {
        cell.push_str(" (OOM-censored history)");
    }
    cell
}

/// Requested cores and GiB across replicas, and money per month.
fn impact_cell(r: &Row) -> String {
    let Some(i) = &r.rec.impact else {
        return "n/a".into();
    };
    format!(
        "{:+.2} cores, {:+.2} GiB, {:+.2} {}/month",
        i.cpu_cores_delta, i.memory_gib_delta, i.monthly_cost_delta, i.currency
    )
}

fn findings_cell(r: &Row) -> String {
    if r.rec.findings.is_empty() {
        return "none".into();
    }
    r.rec
        .findings
        .iter()
        .map(|f| format!("{} ({})", f.code, f.severity.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn change(before: Option<i64>, after: Option<i64>, fmt: fn(Option<i64>) -> String) -> String {
    if before == after {
        format!("`{}`", fmt(after))
    } else {
        format!("`{}` → **`{}`**", fmt(before), fmt(after))
    }
}

fn container_cell(r: &Row) -> String {
    format!("`{}`", r.container)
}

fn cpu_request_cell(r: &Row) -> String {
    change(
        r.before.cpu_request_millicores,
        r.after.cpu_request_millicores,
        quantity::cpu_opt,
    )
}

fn cpu_limit_cell(r: &Row) -> String {
    change(
        r.before.cpu_limit_millicores,
        r.after.cpu_limit_millicores,
        quantity::cpu_opt,
    )
}

fn memory_request_cell(r: &Row) -> String {
    change(
        r.before.memory_request_bytes,
        r.after.memory_request_bytes,
        quantity::memory_opt,
    )
}

fn memory_limit_cell(r: &Row) -> String {
    change(
        r.before.memory_limit_bytes,
        r.after.memory_limit_bytes,
        quantity::memory_opt,
    )
}

fn evidence_cell(r: &Row) -> String {
    let e = &r.rec.evidence;
    let percentile = format!("{}", e.cpu_percentile);
    let cpu = e
        .cpu_percentile_millicores
        .map(|m| format!("p{percentile} CPU {}", quantity::cpu_measured(m)))
        .unwrap_or_else(|| format!("p{percentile} CPU n/a"));
    let memory = e
        .memory_peak_bytes
        .map(|b| format!("peak memory {}", quantity::memory_measured(b)))
        .unwrap_or_else(|| "peak memory n/a".into());
    format!(
        "{cpu}; {memory}; {} h of history in {} h, margin {:.0}%",
        e.history_hours,
        e.window_hours,
        e.margin * 100.0
    )
}

fn confidence_cell(r: &Row) -> String {
    format!(
        "{} ({:.2})",
        r.rec.confidence.as_str(),
        r.rec.confidence_score
    )
}

fn reason_cell(r: &Row) -> String {
    r.rec.reason.clone()
}

fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The Markdown table of one workload.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let headers: Vec<&str> = COLUMNS.iter().map(|c| c.header).collect();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
    for row in rows {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|c| escape_cell(&(c.cell)(row)))
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Per changed container: how its numbers fared on days they were not fitted on, next to the
/// values in force on the same days, and which strategy made them and why. A list rather
/// than table columns: these are sentences, and the table is already wide.
fn held_out(containers: &[ContainerPlan]) -> String {
    let mut out =
        String::from("\n**Held-out backtest** (days the numbers were not fitted on):\n\n");
    for c in containers {
        let e = &c.rec.evidence;
        let recommended = holdout::recommended(e);
        let mut line = format!(
            "- `{}`: {}",
            c.rec.key.container,
            holdout::line(recommended)
        );
        if let (Some(_), Some(current)) = (recommended, holdout::current(e)) {
            line.push_str(&format!(" (current values: {})", holdout::figures(current)));
        }
        line.push_str(&format!(
            "; strategy {}",
            holdout::strategy(
                &format!("`{}`", c.rec.strategy),
                e.strategy_choice.as_deref()
            )
        ));
        if let Some(from) = e.fitted_from {
            line.push_str(&format!("; {}", holdout::fitted_from(from)));
        }
        out.push_str(&line.replace(['\n', '\r'], " "));
        out.push('\n');
    }
    out
}

/// The pull-request body: an introduction, a table per workload, a footer.
pub(crate) fn pull_request_body(proposals: &[&Proposal], mode: OutputMode) -> String {
    let workloads = proposals.len();
    let mut out = format!(
        "rightsizer proposes new CPU and memory requests and limits for {workloads} {}, from measured usage.\n",
        if workloads == 1 { "workload" } else { "workloads" }
    );
    out.push_str(match mode {
        OutputMode::InPlace => "Only the `resources` blocks of the manifests below change.\n",
        OutputMode::Kustomize => "Each workload gets a kustomize strategic-merge patch.\n",
        OutputMode::Patches => {
            "Each workload gets a `kubectl patch` body; the commands are in README.txt.\n"
        }
    });
    let mut strategies = BTreeSet::new();
    for p in proposals {
        let w = &p.workload;
        out.push_str(&format!(
            "\n### {} `{}` in `{}`\n\n",
            w.kind, w.name, w.namespace
        ));
        if let Some(loc) = &p.location {
            out.push_str(&format!("`{}` (line {})\n\n", loc.file.display(), loc.line));
        }
        let rows: Vec<Row> = p
            .containers
            .iter()
            .map(|c| Row {
                container: &c.rec.key.container,
                before: &c.before,
                after: &c.after,
                rec: c.rec,
            })
            .collect();
        out.push_str(&table(&rows));
        out.push_str(&held_out(&p.containers));
        let rules: Vec<String> = p
            .containers
            .iter()
            .flat_map(|c| {
                c.rec.evidence.rules.iter().map(move |r| {
                    format!("- `{}`: {}\n", c.rec.key.container, r.replace('\n', " "))
                })
            })
            .collect();
        if !rules.is_empty() {
            out.push_str("\n<details><summary>Rules behind these numbers</summary>\n\n");
            out.push_str(&rules.concat());
            out.push_str("\n</details>\n");
        }
        for note in &p.notes {
            out.push_str(&format!("\n> **Note:** {note}\n"));
        }
        strategies.extend(p.containers.iter().map(|c| c.rec.strategy.as_str()));
    }
    let strategies: Vec<&str> = strategies.into_iter().collect();
    out.push_str(&format!(
        "\n---\n<sub>Generated by rightsizer (strategy: {}) from the usage history in the Evidence column. Re-running rightsizer updates this branch and this pull request rather than opening another.</sub>\n",
        strategies.join(", ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_one_cell_per_column() {
        let before = Resources {
            cpu_request_millicores: Some(100),
            ..Resources::default()
        };
        let after = Resources {
            cpu_request_millicores: Some(250),
            ..Resources::default()
        };
        assert_eq!(summary(&before, &after), "cpu request 100m → 250m");
        assert_eq!(change(Some(100), Some(100), quantity::cpu_opt), "`100m`");
        assert_eq!(escape_cell("a|b\nc"), "a\\|b c");
        assert_eq!(
            title(1, Some("shop")),
            "rightsizer: right-size 1 workload in shop"
        );
    }

    #[test]
    fn backtest_impact_and_findings_cells() {
        use crate::model::{Backtest, BacktestFigures, Finding, Impact, Severity};
        let rec: Recommendation = serde_json::from_value(serde_json::json!({
            "cluster": "c", "namespace": "shop", "kind": "Deployment", "workload": "cart", "container": "cart",
            "status": "ok", "current": {}, "recommended": {}, "confidence": "high", "confidence_score": 1.0,
            "reason": "", "strategy": "guidance", "computed_at": 0,
            "evidence": {"cpu_percentile": 95.0, "cpu_percentile_millicores": null, "memory_peak_bytes": null,
                "samples": 0, "memory_samples": 0, "history_hours": 0, "window_hours": 0, "margin": 0.15, "rules": []}
        }))
        .unwrap();
        let rec = Recommendation {
            backtest: Some(Backtest {
                current: BacktestFigures {
                    cpu_over_request_share: Some(0.5),
                    cpu_over_limit_share: Some(0.12),
                    memory_over_limit_hours: Some(4),
                },
                recommended: BacktestFigures {
                    cpu_over_request_share: Some(0.05),
                    cpu_over_limit_share: Some(0.0),
                    memory_over_limit_hours: Some(0),
                },
                memory_censored: true,
            }),
            impact: Some(Impact {
                replicas: 2.0,
                replicas_after: 2.0,
                cpu_cores_delta: 0.5,
                memory_gib_delta: 0.2,
                monthly_cost_delta: 12.16,
                currency: "USD".into(),
            }),
            findings: vec![Finding {
                code: "oom-killed".into(),
                severity: Severity::Critical,
                message: String::new(),
            }],
            ..rec
        };
        let r = Row {
            container: "cart",
            before: &rec.current,
            after: &rec.recommended,
            rec: &rec,
        };
        assert_eq!(
            backtest_cell(&r),
            "CPU over limit 12.0% → 0.0%; memory over limit 4 → 0 h (OOM-censored history)"
        );
        assert_eq!(impact_cell(&r), "+0.50 cores, +0.20 GiB, +12.16 USD/month");
        assert_eq!(findings_cell(&r), "oom-killed (critical)");
    }

    #[test]
    fn the_body_says_how_each_container_fared_held_out() {
        use super::super::plan::Site;
        use crate::model::{EvidenceBacktest, HoldoutFigures};
        let base: Recommendation = serde_json::from_value(serde_json::json!({
            "cluster": "c", "namespace": "shop", "kind": "Deployment", "workload": "cart", "container": "cart",
            "status": "ok", "current": {}, "recommended": {}, "confidence": "high", "confidence_score": 1.0,
            "reason": "", "strategy": "guidance", "computed_at": 0,
            "evidence": {"cpu_percentile": 95.0, "cpu_percentile_millicores": null, "memory_peak_bytes": null,
                "samples": 0, "memory_samples": 0, "history_hours": 0, "window_hours": 0, "margin": 0.15, "rules": []}
        }))
        .unwrap();
        let mut cart = base.clone();
        cart.strategy = "krr-simple".into();
        cart.evidence.strategy_choice =
            Some("auto: least idle cost among 3 strategies meeting the objective".into());
        cart.evidence.fitted_from = Some(1_704_693_600);
        cart.evidence.backtest = Some(EvidenceBacktest {
            holdout: Some(HoldoutFigures {
                days: 7,
                memory_overrun_hours: 0,
                memory_peak_ratio: Some(0.9),
                cpu_over_limit_share: Some(0.0),
                cpu_over_request_share: Some(0.042),
                cpu_slack: Some(0.31),
                memory_slack: Some(0.18),
                ..HoldoutFigures::default()
            }),
            holdout_current: Some(HoldoutFigures {
                days: 7,
                memory_overrun_hours: 3,
                memory_peak_ratio: Some(1.2),
                cpu_over_limit_share: Some(0.013),
                cpu_over_request_share: Some(0.4),
                cpu_slack: Some(-0.1),
                memory_slack: Some(0.05),
                ..HoldoutFigures::default()
            }),
            ..EvidenceBacktest::default()
        });
        // A sidecar analyzed before walk-forward existed (or with too little history).
        let mut sidecar = base;
        sidecar.key.container = "envoy".into();
        let plan = |rec| ContainerPlan {
            rec,
            list: "containers",
            before: Resources::default(),
            after: Resources::default(),
            write: Resources::default(),
        };
        let proposal = Proposal {
            workload: WorkloadRef {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "cart".into(),
            },
            site: Site::Manifest,
            location: None,
            api_version: "apps/v1".into(),
            containers: vec![plan(&cart), plan(&sidecar)],
            notes: Vec::new(),
        };
        let body = pull_request_body(&[&proposal], OutputMode::InPlace);
        assert!(
            body.contains(
                "\n**Held-out backtest** (days the numbers were not fitted on):\n\n\
                 - `cart`: held out 7 days: 0 memory overrun hours, CPU above limit 0.0%, above \
                 request 4.2%, slack CPU 31% / memory 18% (current values: 3 memory overrun hours, \
                 CPU above limit 1.3%, above request 40.0%, slack CPU -10% / memory 5%); strategy \
                 `krr-simple` (auto: least idle cost among 3 strategies meeting the objective); \
                 fitted from 2024-01-08 06:00 UTC, after a regime change\n\
                 - `envoy`: not enough history for a held-out backtest; strategy `guidance`\n"
            ),
            "{body}"
        );
        assert!(body.contains("(strategy: guidance, krr-simple)"), "{body}");
    }
}
