//! What one fleet size measured, as one JSON line per size, and the figures derived from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The resources usage_days keeps a row for, per workload container and day.
pub const RESOURCES: [&str; 2] = ["cpu", "memory"];
/// The tables the collector writes: the history and what is needed to read it back.
/// `recommendations` and `reports` are analyze output, sized by the fleet, not by the history.
pub const COLLECTOR_TABLES: [&str; 5] = [
    "usage_days",
    "signal_days",
    "containers",
    "workloads",
    "collected_hours",
];

/// The upper median (the larger middle value when the count is even).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Relative spread of repeated measurements, (max − min) / upper median; 0 for one.
pub fn spread(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (max - min) / median(v)
}

/// One source's first backfills, round by round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceResult {
    pub collect_secs: Vec<f64>,
    pub collect_cpu_secs: Vec<f64>,
    pub collect_rss_bytes: Vec<f64>,
    /// Prometheus' CPU time during each collect (empty without its pid).
    pub prometheus_cpu_secs: Vec<f64>,
    /// Bytes Prometheus sent during each collect (its response-size metric).
    pub prometheus_bytes: Vec<f64>,
    /// Usage samples summarized (the same for every source).
    pub samples: u64,
}

impl SourceResult {
    pub fn bytes_per_sample(&self) -> f64 {
        median(&self.prometheus_bytes) / self.samples.max(1) as f64
    }
}

/// Everything measured at one fleet size, as appended to BENCH_RESULTS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeResult {
    pub copies: usize,
    /// Workload containers generated (the ground truth of the copies).
    pub containers: u64,
    pub window_secs: i64,
    pub half_window_secs: i64,
    /// Bytes of the answers to a replay of the collector's range queries.
    pub answer_bytes: u64,
    /// The minimal fetch, round by round, with Prometheus' CPU time.
    pub floor_secs: Vec<f64>,
    pub prometheus_cpu_floor_secs: Vec<f64>,
    pub floor_bytes: u64,
    pub floor_points: u64,
    /// A replay of the collector's own range queries (a floor that moves with our choices).
    pub replay_secs: Vec<f64>,
    pub prometheus_cpu_replay_secs: Vec<f64>,
    /// First backfill into SQLite per source (`remote-read`, `query-range`).
    pub sources: BTreeMap<String, SourceResult>,
    pub analyze_secs: Vec<f64>,
    pub analyze_rss_bytes: Vec<f64>,
    pub sqlite_bytes: u64,
    pub sqlite_containers: i64,
    pub half_collect_secs: f64,
    pub half_rss_bytes: f64,
    /// One new hour: (wall s, peak RSS bytes, Prometheus CPU s) per store and source.
    pub incremental: BTreeMap<String, (f64, f64, f64)>,
    pub pg_collect_secs: f64,
    pub pg_collect_rss_bytes: f64,
    pub pg_containers: i64,
    /// pg_total_relation_size (heap, indexes, TOAST) of every table.
    pub pg_table_bytes: BTreeMap<String, u64>,
    /// Bytes of usage_days rows per resource (pg_column_size), to split that table.
    pub pg_usage_row_bytes: BTreeMap<String, u64>,
    pub pg_usage_rows: i64,
    pub pg_sketch_avg_bytes: f64,
}

impl SizeResult {
    pub fn days(&self) -> f64 {
        self.window_secs as f64 / 86_400.0
    }

    pub fn floor(&self) -> f64 {
        median(&self.floor_secs)
    }

    pub fn floor_bytes_per_point(&self) -> f64 {
        self.floor_bytes as f64 / self.floor_points.max(1) as f64
    }

    pub fn pg_collector_bytes(&self) -> f64 {
        COLLECTOR_TABLES
            .iter()
            .map(|t| self.pg_table_bytes.get(*t).copied().unwrap_or(0) as f64)
            .sum()
    }

    /// The collector tables' bytes attributed to one resource: usage_days in proportion to
    /// that resource's row bytes, the other tables (one row per container-hour, container,
    /// workload or hour, whatever the resource) half each.
    pub fn pg_resource_bytes(&self, resource: &str) -> f64 {
        let usage = self.pg_table_bytes.get("usage_days").copied().unwrap_or(0) as f64;
        let rows: u64 = self.pg_usage_row_bytes.values().sum();
        let share = match rows {
            0 => 1.0 / RESOURCES.len() as f64,
            _ => self.pg_usage_row_bytes.get(resource).copied().unwrap_or(0) as f64 / rows as f64,
        };
        usage * share + (self.pg_collector_bytes() - usage) / RESOURCES.len() as f64
    }

    pub fn per_container_day(&self, bytes: f64) -> f64 {
        bytes / self.containers as f64 / self.days()
    }
}

/// A window length for people: whole days, else hours.
pub fn days_label(secs: i64) -> String {
    let days = secs as f64 / 86_400.0;
    if days.fract() == 0.0 {
        format!("{days:.0} d")
    } else {
        format!("{:.0} h", secs as f64 / 3600.0)
    }
}
