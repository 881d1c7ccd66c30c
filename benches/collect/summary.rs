//! The figures of every size side by side: growth per workload container, a least-squares
//! line through the sizes, an extrapolation to 5,000 workload containers, PASS/MISS per target.

use std::path::Path;

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::Table;

use crate::result::{days_label, median, spread, SizeResult, RESOURCES};

/// The fleet size the figures are extrapolated to.
const TARGET_CONTAINERS: f64 = 5000.0;
/// The sources measured, as the measuring side names them.
const SOURCES: [&str; 3] = ["remote-read", "query-range", "query-range+gzip"];
/// Per source: the most its first backfill may take of the minimal fetch's wall time and
/// of the minimal fetch's Prometheus CPU.
const SOURCE_LIMITS: [(f64, f64); 3] = [(0.4, 0.25), (1.5, 1.5), (1.5, 1.5)];
/// Collector peak RSS, MB, whatever the window.
const MAX_RSS_MB: f64 = 150.0;
/// Postgres bytes per workload container, resource and day.
const MAX_PG_BYTES_PER_RESOURCE_DAY: f64 = 2000.0;
/// Wall time of a run that ingests one new hour.
const MAX_INCREMENTAL_SECS: f64 = 2.0;
/// Rounds differ by a few percent on a busy machine; a per-container cost that rises by less
/// than this from one size to the next is not counted as superlinear growth.
const NOISE: f64 = 0.05;

/// Least-squares line through (x, y): (slope, intercept). One point: a line through the origin.
fn fit(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    if xs.len() < 2 {
        return (ys[0] / xs[0], 0.0);
    }
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

fn at(line: (f64, f64), x: f64) -> f64 {
    line.0 * x + line.1
}

/// Three significant digits, fewer decimals for large values.
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.*}", 2 - a.log10().floor() as usize)
    } else {
        format!("{v:.*}", (2 - a.log10().floor() as i64) as usize)
    }
}

fn copies_label(copies: usize) -> String {
    match copies {
        1 => "1 copy".into(),
        n => format!("{n} copies"),
    }
}

/// One figure across the sizes.
struct Row {
    name: String,
    /// Per size, in the unit of the name.
    values: Vec<f64>,
    /// Per size, the relative spread of its rounds (0 when measured once).
    spread: Vec<f64>,
    /// Grows with the fleet (seconds, bytes): per-container cost and a fitted line apply.
    /// Otherwise a ratio or a per-container figure, which must itself not rise.
    extensive: bool,
    /// Extrapolated to TARGET_CONTAINERS (from fitted lines).
    at_target: f64,
    /// The target: the value must be at most this.
    limit: Option<f64>,
}

impl Row {
    /// What must not rise from one size to the next: the cost per container, or the figure.
    fn unit_costs(&self, ns: &[f64]) -> Vec<f64> {
        match self.extensive {
            true => self.values.iter().zip(ns).map(|(v, n)| v / n).collect(),
            false => self.values.clone(),
        }
    }

    /// The rise tolerated between sizes i and i + 1: the noise floor, or the rounds' spread.
    fn allowance(&self, i: usize) -> f64 {
        NOISE.max(self.spread[i]).max(self.spread[i + 1])
    }

    fn linear_or_better(&self, ns: &[f64]) -> bool {
        let costs = self.unit_costs(ns);
        (0..costs.len().saturating_sub(1))
            .all(|i| costs[i + 1] <= costs[i] * (1.0 + self.allowance(i)))
    }

    fn verdict(&self, ns: &[f64]) -> String {
        if ns.len() < 2 {
            return "unknown: one size".into();
        }
        let most = (0..ns.len() - 1)
            .map(|i| self.allowance(i))
            .fold(0.0, f64::max);
        let what = match (self.linear_or_better(ns), self.extensive) {
            (true, _) => "linear or better",
            (false, true) => "MISS: cost per container rises",
            (false, false) => "MISS: rises with size",
        };
        format!("{what} (±{:.0}%)", most * 100.0)
    }
}

fn markdown_table(header: Vec<String>) -> Table {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN);
    table.set_header(header);
    table
}

/// Prints the tables for the sizes in BENCH_SUMMARY (one JSON line per size).
pub fn summary(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut sizes: Vec<SizeResult> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!sizes.is_empty(), "{} holds no results", path.display());
    sizes.sort_by_key(|s| s.containers);
    let ns: Vec<f64> = sizes.iter().map(|s| s.containers as f64).collect();
    let days = sizes[0].days();
    let window = days_label(sizes[0].window_secs);
    let half = days_label(sizes[0].half_window_secs);
    let col = |f: &dyn Fn(&SizeResult) -> f64| sizes.iter().map(f).collect::<Vec<f64>>();
    let once = vec![0.0; sizes.len()];
    let estimate = |values: &[f64]| at(fit(&ns, values), TARGET_CONTAINERS);
    let extensive = |name: String, values: Vec<f64>, spread: Vec<f64>, limit: Option<f64>| Row {
        at_target: estimate(&values),
        name,
        values,
        spread,
        extensive: true,
        limit,
    };
    let ratio =
        |name: String, over: &[f64], under: &[f64], spread: Vec<f64>, limit: Option<f64>| Row {
            name,
            values: over.iter().zip(under).map(|(o, u)| o / u).collect(),
            spread,
            extensive: false,
            at_target: estimate(over) / estimate(under),
            limit,
        };
    let per_day = |name: String, bytes: Vec<f64>, divisor: f64, limit: Option<f64>| Row {
        values: sizes
            .iter()
            .zip(&bytes)
            .map(|(s, b)| s.per_container_day(*b) / divisor)
            .collect(),
        spread: once.clone(),
        at_target: estimate(&bytes) / TARGET_CONTAINERS / days / divisor,
        name,
        extensive: false,
        limit,
    };

    let floor = col(&|s| s.floor());
    let floor_cpu = col(&|s| median(&s.prometheus_cpu_floor_secs));
    let primary = |s: &SizeResult| s.sources[SOURCES[0]].clone();
    let rss = col(&|s| median(&primary(s).collect_rss_bytes) / 1e6);
    let half_rss = col(&|s| s.half_rss_bytes / 1e6);
    let mut rows = vec![
        extensive(
            "minimal fetch (s)".into(),
            floor.clone(),
            col(&|s| spread(&s.floor_secs)),
            None,
        ),
        extensive(
            "minimal fetch, Prometheus CPU (s)".into(),
            floor_cpu.clone(),
            col(&|s| spread(&s.prometheus_cpu_floor_secs)),
            None,
        ),
        Row {
            name: "minimal fetch, B per point".into(),
            values: col(&|s| s.floor_bytes_per_point()),
            spread: once.clone(),
            extensive: false,
            at_target: f64::NAN,
            limit: None,
        },
        ratio(
            "replay of our range queries / minimal fetch".into(),
            &col(&|s| median(&s.replay_secs)),
            &floor,
            col(&|s| spread(&s.floor_secs) + spread(&s.replay_secs)),
            None,
        ),
    ];
    for (source, (wall_limit, cpu_limit)) in SOURCES.iter().zip(SOURCE_LIMITS) {
        let of = |s: &SizeResult| s.sources[*source].clone();
        let wall = col(&|s| median(&of(s).collect_secs));
        let cpu = col(&|s| median(&of(s).prometheus_cpu_secs));
        rows.push(extensive(
            format!("{source}: collect wall (s)"),
            wall.clone(),
            col(&|s| spread(&of(s).collect_secs)),
            None,
        ));
        rows.push(ratio(
            format!("{source}: wall / minimal fetch"),
            &wall,
            &floor,
            col(&|s| spread(&s.floor_secs) + spread(&of(s).collect_secs)),
            Some(wall_limit),
        ));
        rows.push(ratio(
            format!("{source}: Prometheus CPU / minimal fetch's"),
            &cpu,
            &floor_cpu,
            col(&|s| spread(&s.prometheus_cpu_floor_secs) + spread(&of(s).prometheus_cpu_secs)),
            Some(cpu_limit),
        ));
        rows.push(Row {
            name: format!("{source}: B from Prometheus per usage sample"),
            values: col(&|s| of(s).bytes_per_sample()),
            spread: once.clone(),
            extensive: false,
            at_target: f64::NAN,
            limit: None,
        });
        rows.push(extensive(
            format!("{source}: collector CPU (s)"),
            col(&|s| median(&of(s).collect_cpu_secs)),
            col(&|s| spread(&of(s).collect_cpu_secs)),
            None,
        ));
    }
    rows.extend([
        extensive(
            format!("collector peak RSS, {window} (MB)"),
            rss.clone(),
            col(&|s| spread(&primary(s).collect_rss_bytes)),
            Some(MAX_RSS_MB),
        ),
        extensive(
            format!("collector peak RSS, {half} (MB)"),
            half_rss.clone(),
            once.clone(),
            Some(MAX_RSS_MB),
        ),
        ratio(
            format!("peak RSS {window} / {half}"),
            &rss,
            &half_rss,
            once.clone(),
            None,
        ),
        extensive(
            "analyze wall (s)".into(),
            col(&|s| median(&s.analyze_secs)),
            col(&|s| spread(&s.analyze_secs)),
            None,
        ),
        extensive(
            "analyze peak RSS (MB)".into(),
            col(&|s| median(&s.analyze_rss_bytes) / 1e6),
            col(&|s| spread(&s.analyze_rss_bytes)),
            None,
        ),
        extensive(
            "Postgres collector tables (MB)".into(),
            col(&|s| s.pg_collector_bytes() / 1e6),
            once.clone(),
            None,
        ),
    ]);
    for res in RESOURCES {
        rows.push(per_day(
            format!("Postgres B / container / day, {res}"),
            col(&|s| s.pg_resource_bytes(res)),
            1.0,
            Some(MAX_PG_BYTES_PER_RESOURCE_DAY),
        ));
    }
    rows.push(extensive(
        "SQLite file (MB)".into(),
        col(&|s| s.sqlite_bytes as f64 / 1e6),
        once.clone(),
        None,
    ));
    rows.push(per_day(
        "SQLite B / container / day / resource".into(),
        col(&|s| s.sqlite_bytes as f64),
        RESOURCES.len() as f64,
        None,
    ));
    let incremental_names: Vec<String> = sizes[0].incremental.keys().cloned().collect();
    for name in incremental_names {
        let get = |s: &SizeResult| {
            s.incremental
                .get(&name)
                .copied()
                .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
        };
        rows.push(extensive(
            format!("incremental 1 h, {name} (s)"),
            col(&|s| get(s).0),
            once.clone(),
            Some(MAX_INCREMENTAL_SECS),
        ));
        rows.push(extensive(
            format!("incremental 1 h, {name}, Prometheus CPU (s)"),
            col(&|s| get(s).2),
            once.clone(),
            None,
        ));
    }

    let size_headers: Vec<String> = sizes
        .iter()
        .map(|s| format!("{} ctr ({})", s.containers, copies_label(s.copies)))
        .collect();
    let target_header = format!("{TARGET_CONTAINERS:.0} ctr (est.)");
    // A line through a curve that grows faster than linear is only a lower bound.
    let shown_estimate = |row: &Row| {
        let prefix = if row.linear_or_better(&ns) {
            ""
        } else {
            "≥ "
        };
        format!("{prefix}{}", num(row.at_target))
    };
    let with_sizes = |first: &str, last: Vec<String>| {
        let mut header = vec![first.to_string()];
        header.extend(size_headers.iter().cloned());
        header.extend(last);
        header
    };

    println!(
        "==> every figure at every size ({window} window at 1-minute resolution; upper medians of the rounds)"
    );
    let mut table = markdown_table(with_sizes("figure", vec![target_header.clone()]));
    for row in &rows {
        let mut cells = vec![row.name.clone()];
        cells.extend(row.values.iter().map(|v| num(*v)));
        cells.push(shown_estimate(row));
        table.add_row(cells);
    }
    println!("{table}\n");

    println!(
        "==> growth: cost per workload container at each size; least-squares line through the sizes"
    );
    let mut header = vec!["figure".to_string()];
    header.extend(sizes.iter().map(|s| format!("per ctr at {}", s.containers)));
    header.extend(["slope per ctr".into(), "intercept".into(), "growth".into()]);
    let mut table = markdown_table(header);
    for row in &rows {
        let mut cells = vec![row.name.clone()];
        if row.extensive {
            let (slope, intercept) = fit(&ns, &row.values);
            cells.extend(row.unit_costs(&ns).iter().map(|v| num(*v)));
            cells.extend([num(slope), num(intercept)]);
        } else {
            // Already per container, or a ratio: the figure itself must not rise.
            cells.extend(row.values.iter().map(|v| num(*v)));
            cells.extend(["-".to_string(), "-".to_string()]);
        }
        cells.push(row.verdict(&ns));
        table.add_row(cells);
    }
    println!("{table}");
    println!(
        "(linear or better: the cost per container, or a per-container figure itself, rises by\n\
         at most ±N% from one size to the next, N the larger of {:.0}% and the spread of the\n\
         rounds. An estimate marked ≥ is a line through a curve that rises faster.)\n",
        NOISE * 100.0
    );

    println!("==> targets");
    let mut table = markdown_table(with_sizes("target", vec![target_header]));
    let mut all_pass = true;
    for row in &rows {
        let Some(limit) = row.limit else { continue };
        let mark = |v: f64| if v <= limit { "PASS" } else { "MISS" };
        let mut cells = vec![format!("{} ≤ {}", row.name, num(limit))];
        for v in &row.values {
            all_pass &= *v <= limit;
            cells.push(format!("{} {}", mark(*v), num(*v)));
        }
        all_pass &= row.at_target <= limit;
        cells.push(format!("{} {}", mark(row.at_target), shown_estimate(row)));
        table.add_row(cells);
    }
    println!("{table}");
    let linear = rows.iter().all(|r| r.linear_or_better(&ns));
    println!(
        "every target met at every size and at the estimate: {}; growth linear or better for every figure: {}",
        if all_pass { "yes" } else { "no" },
        match (sizes.len(), linear) {
            (1, _) => "unknown (one size)",
            (_, true) => "yes",
            (_, false) => "no",
        }
    );
    let largest = &sizes[sizes.len() - 1];
    let analysis: f64 = ["recommendations", "reports"]
        .iter()
        .map(|t| largest.pg_table_bytes.get(*t).copied().unwrap_or(0) as f64)
        .sum();
    println!(
        "Postgres B / container / day per resource = (usage_days × that resource's share of its\n\
         row bytes + (signal_days + containers + workloads + collected_hours) / {}) / workload\n\
         containers / days, with pg_total_relation_size (indexes and TOAST included, no vacuum).\n\
         recommendations and reports (analyze output, {:.2} MB at the largest size) are not counted.",
        RESOURCES.len(),
        analysis / 1e6
    );
}
