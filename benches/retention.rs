//! Retention on a store holding more history than it keeps, for `scripts/bench-retention.sh`.
//! Writes BENCH_DAYS (120) days of hourly summaries of BENCH_CONTAINERS (300) workload
//! containers straight into the store at BENCH_DATABASE_URL (60 one-minute samples per
//! container, resource and hour, signals every hour, a day per chunk), prunes once to
//! BENCH_RETENTION_DAYS (90), then writes BENCH_MORE_DAYS (30) more days pruning after each,
//! as `serve` does daily. Prints the store size and the prune times.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rightsizer::model::{
    Chunk, ContainerKey, ContainerObservation, Resource, Resources, SignalHour, UsageHour,
};
use rightsizer::sketch::Sketch;
use rightsizer::store::{retention, Store};

const DAY: i64 = 86_400;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn keys(n: usize) -> Vec<ContainerKey> {
    (0..n)
        .map(|i| ContainerKey {
            cluster: "bench".into(),
            namespace: format!("team-{:02}", i / 20),
            kind: "Deployment".into(),
            workload: format!("svc-{:03}", i / 2),
            container: if i % 2 == 0 { "app" } else { "sidecar" }.into(),
        })
        .collect()
}

/// One day of every container: the store's unit of retention.
fn day_chunk(keys: &[ContainerKey], day: i64, rng: &mut impl Rng) -> Chunk {
    let hours: Vec<i64> = (0..24).map(|h| day + h * 3600).collect();
    let mut chunk = Chunk {
        cluster: "bench".into(),
        hours: hours.clone(),
        ..Chunk::default()
    };
    for (i, key) in keys.iter().enumerate() {
        let level = 1.0 + (i % 17) as f64;
        chunk.containers.push(ContainerObservation {
            key: key.clone(),
            resources: Resources {
                cpu_request_millicores: Some(100 * level as i64),
                cpu_limit_millicores: None,
                memory_request_bytes: Some((level as i64) << 26),
                memory_limit_bytes: Some((level as i64) << 26),
            },
            seen_at: day + DAY - 3600,
        });
        for &hour in &hours {
            for resource in [Resource::Cpu, Resource::Memory] {
                let scale = match resource {
                    Resource::Cpu => level * 0.05,
                    Resource::Memory => level * 3e7,
                };
                let mut sketch = Sketch::new();
                for _ in 0..60 {
                    let v = scale * (1.0 + rng.gen::<f64>());
                    sketch.insert(v).expect("finite, positive");
                }
                chunk.usage.push(UsageHour {
                    key: key.clone().into(),
                    resource,
                    hour_start: hour,
                    sketch,
                });
            }
            chunk.signals.push(SignalHour {
                key: key.clone(),
                hour_start: hour,
                restarts: 0,
                oom_kills: 0,
                cfs_periods: 36_000.0,
                cfs_throttled_periods: rng.gen_range(0.0..100.0),
            });
        }
    }
    chunk
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn size_line(store: &dyn Store, label: &str) {
    let size = store.size().await.expect("size");
    println!(
        "{label}: {:.1} MB ({:.1} MB of it free pages)",
        mb(size.bytes),
        mb(size.free_bytes)
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let url = std::env::var("BENCH_DATABASE_URL")
        .expect("BENCH_DATABASE_URL (run scripts/bench-retention.sh)");
    let n = env("BENCH_CONTAINERS", 300) as usize;
    let days = env("BENCH_DAYS", 120);
    let keep_days = env("BENCH_RETENTION_DAYS", 90);
    let more_days = env("BENCH_MORE_DAYS", 30);
    let end = env("BENCH_END", 1_767_225_600); // 2026-01-01
    let keep = Duration::from_secs((keep_days * DAY) as u64);
    let store = rightsizer::store::connect(&url).await.expect("store");
    let keys = keys(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let first = end - (days + more_days) * DAY;

    let started = Instant::now();
    for d in 0..days {
        store
            .write_chunk(&day_chunk(&keys, first + d * DAY, &mut rng))
            .await
            .expect("write");
    }
    println!(
        "{} ({}): wrote {days} days of {n} workload containers in {:.1} s",
        store.backend(),
        rightsizer::redact::url(&url),
        started.elapsed().as_secs_f64()
    );
    size_line(
        store.as_ref(),
        &format!("store after {days} days, before pruning"),
    )
    .await;
    let now = first + days * DAY;
    let report = retention::prune(store.as_ref(), keep, now, false)
        .await
        .expect("prune");
    for t in &report.tables {
        println!(
            "  pruned {}: {} rows over {} days, {} batches, partitions dropped {:?}",
            t.table, t.rows, t.days, t.batches, t.partitions
        );
    }
    println!("prune to {keep_days} days: {:.2} s", report.elapsed_secs);
    size_line(store.as_ref(), "store after pruning").await;

    let mut prune_secs = Vec::new();
    for d in days..days + more_days {
        store
            .write_chunk(&day_chunk(&keys, first + d * DAY, &mut rng))
            .await
            .expect("write");
        let report = retention::prune(store.as_ref(), keep, first + (d + 1) * DAY, false)
            .await
            .expect("prune");
        prune_secs.push(report.elapsed_secs);
    }
    if !prune_secs.is_empty() {
        prune_secs.sort_by(f64::total_cmp);
        println!(
            "then {more_days} more days, pruned after each: daily prune median {:.2} s, max {:.2} s",
            prune_secs[prune_secs.len() / 2],
            prune_secs[prune_secs.len() - 1]
        );
        size_line(
            store.as_ref(),
            &format!("store after {} days with daily pruning", days + more_days),
        )
        .await;
    }
}
