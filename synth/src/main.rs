//! `rightsizer-synth`: writes a synthetic cluster's history (OpenMetrics, for
//! `promtool tsdb create-blocks-from openmetrics`) and its ground truth (JSON).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rightsizer_synth::{generate, generate_split, SynthConfig};

/// Write a synthetic cluster's history (OpenMetrics) and its ground truth (JSON).
#[derive(Debug, Parser)]
#[command(name = "rightsizer-synth", version)]
struct Args {
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of history.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Copies of the demo workload set (for benchmarks).
    #[arg(long, default_value_t = 1)]
    scale: usize,
    /// Index of the first copy (for writing a large fleet one copy per file).
    #[arg(long, default_value_t = 0)]
    first_copy: usize,
    /// End of the history: RFC 3339 or unix seconds (default: the start of the current hour).
    #[arg(long, value_parser = parse_time)]
    end: Option<i64>,
    /// Output directory (gets metrics.om and truth.json).
    #[arg(long)]
    out: PathBuf,
    /// Add the walk-forward scenarios in namespace `trends`: regime changes 5 days
    /// before the end, weekly seasonality, a weekly batch run, start-up CPU spikes.
    #[arg(long)]
    trends: bool,
    /// A Prometheus outage of this many hours (no samples at all), starting 8 days
    /// before the end.
    #[arg(long)]
    outage_hours: Option<u32>,
    /// Per-day truth (every CPU value, hourly memory peaks) in truth.json; big.
    #[arg(long)]
    daily_truth: bool,
    /// Write the last this many hours to head.txt (`name{labels} value timestamp` lines)
    /// instead of metrics.om, for sending to a running Prometheus (`make bench`).
    #[arg(long)]
    head_hours: Option<u32>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|e| format!("invalid time {s:?} (want RFC 3339 or unix seconds): {e}"))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let end = a.end.unwrap_or_else(|| chrono::Utc::now().timestamp());
    let end = end - end.rem_euclid(3600);
    let cfg = SynthConfig {
        seed: a.seed,
        start: end - i64::from(a.days) * 86_400,
        end,
        scrape_interval_secs: 60,
        scale: a.scale,
        first_copy: a.first_copy,
        trends: a.trends,
        outage: a.outage_hours.map(|h| (end - 8 * 86_400, i64::from(h))),
        daily_truth: a.daily_truth,
    };
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let metrics = out.join("metrics.om");
    let file = std::fs::File::create(&metrics)
        .with_context(|| format!("creating {}", metrics.display()))?;
    let out_file = std::io::BufWriter::with_capacity(1 << 20, file);
    let truth = match a.head_hours {
        None => generate(&cfg, out_file)?,
        Some(hours) => {
            let path = out.join("head.txt");
            let head = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            generate_split(
                &cfg,
                out_file,
                end - i64::from(hours) * 3600,
                Box::new(head),
            )?
        }
    };
    let truth_path = out.join("truth.json");
    let mut f = std::fs::File::create(&truth_path)
        .with_context(|| format!("creating {}", truth_path.display()))?;
    serde_json::to_writer_pretty(&mut f, &truth)?;
    f.flush()?;
    println!(
        "wrote {} and {} ({} workload containers, {} days, seed {})",
        metrics.display(),
        truth_path.display(),
        truth.containers.len(),
        a.days,
        a.seed
    );
    Ok(())
}
