//! Recommendations for people and tools: an aligned table, JSON, YAML and CSV (shared by
//! the CLI and the API's CSV export).

use std::io::Write;

use clap::ValueEnum;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::model::Recommendation;
use crate::quantity::{cpu_opt, memory_opt};

/// Output format of `recommend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// A JSON array of recommendations.
    Json,
    /// A YAML list of recommendations.
    Yaml,
    /// CSV with a header row.
    Csv,
}

fn change(current: String, recommended: String) -> String {
    if recommended == "-" {
        current
    } else {
        format!("{current} → {recommended}")
    }
}

/// The table shown by `rightsizer recommend` and `make demo`.
pub fn table(recs: &[Recommendation]) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "NAMESPACE",
            "KIND",
            "WORKLOAD",
            "CONTAINER",
            "CPU REQUEST",
            "CPU LIMIT",
            "MEM REQUEST",
            "MEM LIMIT",
            "CONFIDENCE",
            "REASON",
        ]);
    for r in recs {
        let (c, n) = (&r.current, &r.recommended);
        table.add_row([
            r.key.namespace.clone(),
            r.key.kind.clone(),
            r.key.workload.clone(),
            r.key.container.clone(),
            change(
                cpu_opt(c.cpu_request_millicores),
                cpu_opt(n.cpu_request_millicores),
            ),
            change(
                cpu_opt(c.cpu_limit_millicores),
                cpu_opt(n.cpu_limit_millicores),
            ),
            change(
                memory_opt(c.memory_request_bytes),
                memory_opt(n.memory_request_bytes),
            ),
            change(
                memory_opt(c.memory_limit_bytes),
                memory_opt(n.memory_limit_bytes),
            ),
            r.confidence.as_str().to_string(),
            r.reason.clone(),
        ]);
    }
    table.to_string()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Writes `recs` in `format` to `out`.
pub fn write(
    recs: &[Recommendation],
    format: OutputFormat,
    mut out: impl Write,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => writeln!(out, "{}", table(recs))?,
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, recs)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => yaml_serde::to_writer(&mut out, recs)?,
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "cluster",
                "namespace",
                "kind",
                "workload",
                "container",
                "status",
                "current_cpu_request_millicores",
                "current_cpu_limit_millicores",
                "current_memory_request_bytes",
                "current_memory_limit_bytes",
                "recommended_cpu_request_millicores",
                "recommended_cpu_limit_millicores",
                "recommended_memory_request_bytes",
                "recommended_memory_limit_bytes",
                "confidence",
                "cpu_percentile_millicores",
                "memory_peak_bytes",
                "history_hours",
                "reason",
            ])?;
            for r in recs {
                let (c, n, e) = (&r.current, &r.recommended, &r.evidence);
                w.write_record([
                    r.key.cluster.clone(),
                    r.key.namespace.clone(),
                    r.key.kind.clone(),
                    r.key.workload.clone(),
                    r.key.container.clone(),
                    r.status.as_str().to_string(),
                    opt(c.cpu_request_millicores),
                    opt(c.cpu_limit_millicores),
                    opt(c.memory_request_bytes),
                    opt(c.memory_limit_bytes),
                    opt(n.cpu_request_millicores),
                    opt(n.cpu_limit_millicores),
                    opt(n.memory_request_bytes),
                    opt(n.memory_limit_bytes),
                    r.confidence.as_str().to_string(),
                    opt(e.cpu_percentile_millicores.map(|v| format!("{v:.1}"))),
                    opt(e.memory_peak_bytes.map(|v| format!("{v:.0}"))),
                    e.history_hours.to_string(),
                    r.reason.clone(),
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// `rightsizer backtest --by …`: one table per group, or JSON/YAML `[{group, rows}]`, or
/// CSV with a leading `group` column.
pub fn write_backtest_groups(
    groups: &[(
        String,
        Vec<crate::analyzer::fleet_backtest::FleetBacktestRow>,
    )],
    days: u32,
    format: OutputFormat,
    mut out: impl Write,
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Group<'a> {
        group: &'a str,
        rows: &'a [crate::analyzer::fleet_backtest::FleetBacktestRow],
    }
    let all: Vec<Group> = groups
        .iter()
        .map(|(group, rows)| Group { group, rows })
        .collect();
    match format {
        OutputFormat::Table => {
            for (name, rows) in groups {
                writeln!(out, "{name}:")?;
                write_backtest(rows, days, format, &mut out)?;
            }
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => yaml_serde::to_writer(&mut out, &all)?,
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "group",
                "strategy",
                "containers",
                "cpu_slack",
                "memory_slack",
                "memory_overrun_hours",
                "missed_objective",
                "cpu_over_limit_misses",
                "cpu_over_request_misses",
            ])?;
            let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            for (name, rows) in groups {
                for r in rows {
                    w.write_record([
                        name.clone(),
                        r.strategy.clone(),
                        r.containers.to_string(),
                        opt(r.cpu_slack),
                        opt(r.memory_slack),
                        r.memory_overrun_hours.to_string(),
                        r.missed_objective.to_string(),
                        r.cpu_over_limit_misses.to_string(),
                        r.cpu_over_request_misses.to_string(),
                    ])?;
                }
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// `rightsizer backtest`'s rows: an aligned table, JSON, YAML or CSV.
pub fn write_backtest(
    rows: &[crate::analyzer::fleet_backtest::FleetBacktestRow],
    days: u32,
    format: OutputFormat,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let share =
        |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0));
    match format {
        OutputFormat::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header([
                    "STRATEGY",
                    "CONTAINERS",
                    "CPU SLACK",
                    "MEMORY SLACK",
                    "MEMORY OVERRUN HOURS",
                    "MISSED OBJECTIVE",
                    "CPU OVER LIMIT",
                    "CPU OVER REQUEST",
                ]);
            for r in rows {
                table.add_row([
                    r.strategy.clone(),
                    r.containers.to_string(),
                    share(r.cpu_slack),
                    share(r.memory_slack),
                    r.memory_overrun_hours.to_string(),
                    r.missed_objective.to_string(),
                    r.cpu_over_limit_misses.to_string(),
                    r.cpu_over_request_misses.to_string(),
                ]);
            }
            writeln!(
                out,
                "held out the last {days} days of the window, each fitted on the history before it"
            )?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => yaml_serde::to_writer(&mut out, rows)?,
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in rows {
                w.serialize(r)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}
