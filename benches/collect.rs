//! `make bench`: the collector against a real, backfilled Prometheus, next to the time
//! Prometheus alone needs to answer the same queries (replayed with a plain HTTP client,
//! answers read but not decoded). Run through `scripts/bench.sh`, which generates the
//! fleet, backfills it and starts Prometheus; this binary only measures.
//!
//! Env: BENCH_PROMETHEUS_URL, BENCH_FROM, BENCH_TO (hour-aligned unix seconds),
//! BENCH_BIN (the release `rightsizer`), BENCH_DIR (scratch), BENCH_ROUNDS (default 2).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rightsizer::collector::{namespace_groups, plan, ChunkQueries, Scope};
use rightsizer::config::CollectorConfig;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (run make bench)"))
}

/// POSTs one query; returns the body.
async fn replay(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    form: &[(&str, String)],
) -> bytes::Bytes {
    let resp = http
        .post(format!("{url}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.bytes().await.unwrap()
}

/// Replays every query of the collection plan with the collector's concurrency: per chunk
/// the sizing and facts queries, then owners, state, CPU and memory for each namespace group
/// the sizes call for (one group when the chunk fits in one answer).
async fn prometheus_floor(url: &str, from: i64, to: i64, cfg: &CollectorConfig) -> (Duration, u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let step = cfg.step.as_secs() as i64;
    let hours: Vec<i64> = (from..to).step_by(3600).collect();
    let started = Instant::now();
    let bytes: u64 = futures::stream::iter(plan(&hours, cfg.chunk_hours))
        .map(|chunk| {
            let http = http.clone();
            async move {
                let whole = ChunkQueries::new(&chunk, step, &Scope::default());
                let instant = |promql: &str, time: i64| {
                    vec![("query", promql.to_string()), ("time", time.to_string())]
                };
                let sizes = replay(
                    &http,
                    url,
                    "/api/v1/query",
                    &instant(&whole.sizes, whole.time),
                )
                .await;
                let facts = replay(
                    &http,
                    url,
                    "/api/v1/query",
                    &instant(&whole.facts, whole.time),
                )
                .await;
                let mut n = (sizes.len() + facts.len()) as u64;
                let sizes: serde_json::Value = serde_json::from_slice(&sizes).unwrap();
                let sizes: Vec<(String, u64)> = sizes["data"]["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        (
                            s["metric"]["namespace"].as_str().unwrap_or("").to_string(),
                            s["value"][1].as_str().unwrap().parse::<f64>().unwrap() as u64,
                        )
                    })
                    .collect();
                let groups: Vec<ChunkQueries> =
                    match namespace_groups(&sizes, cfg.max_series_per_query) {
                        None => vec![whole],
                        Some(groups) => groups
                            .into_iter()
                            .map(|g| {
                                ChunkQueries::new(
                                    &chunk,
                                    step,
                                    &Scope::default().with_namespaces(g),
                                )
                            })
                            .collect(),
                    };
                for q in groups {
                    n += replay(&http, url, "/api/v1/query", &instant(&q.owners, q.time))
                        .await
                        .len() as u64;
                    for r in q.ranges() {
                        let form = vec![
                            ("query", r.promql.clone()),
                            ("start", r.start.to_string()),
                            ("end", r.end.to_string()),
                            ("step", r.step_secs.to_string()),
                        ];
                        n += replay(&http, url, "/api/v1/query_range", &form).await.len() as u64;
                    }
                }
                n
            }
        })
        .buffered(cfg.concurrency)
        .fold(0, |acc, n| async move { acc + n })
        .await;
    (started.elapsed(), bytes)
}

/// Runs the release binary; returns wall time and peak RSS (VmHWM, polled until exit).
fn run_measured(bin: &str, args: &[&str], db_url: &str, prom: &str) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env("RIGHTSIZER_DATABASE_URL", db_url)
        .env("RIGHTSIZER_PROMETHEUS_URL", prom)
        .env("RIGHTSIZER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                let kib: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{bin} {args:?} failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (started.elapsed(), peak_kib * 1024)
}

/// The upper median (the larger middle value when the count is even).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --all-targets` builds benches; nothing to run there.
    }
    let url = env("BENCH_PROMETHEUS_URL");
    let from: i64 = env("BENCH_FROM").parse().unwrap();
    let to: i64 = env("BENCH_TO").parse().unwrap();
    let bin = env("BENCH_BIN");
    let dir = PathBuf::from(env("BENCH_DIR"));
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let cfg = CollectorConfig::default();
    let until = to.to_string();
    let since = format!("{}s", to - from);

    // Warm Prometheus' page cache once so neither side pays the first disk reads.
    let (warm, bytes) = prometheus_floor(&url, from, to, &cfg).await;
    println!(
        "warm-up replay: {:.2} s, {:.1} MB of answers",
        warm.as_secs_f64(),
        bytes as f64 / 1e6
    );

    let (mut floor, mut collect, mut rss, mut analyze, mut analyze_rss) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut db_bytes = 0;
    for round in 0..rounds {
        let (t, _) = prometheus_floor(&url, from, to, &cfg).await;
        floor.push(t.as_secs_f64());
        let db = dir.join(format!("bench-{round}.db"));
        let _ = std::fs::remove_file(&db);
        let db_url = format!("sqlite://{}", db.display());
        let (t, peak) = run_measured(
            &bin,
            &["collect", "--since", &since, "--until", &until],
            &db_url,
            &url,
        );
        collect.push(t.as_secs_f64());
        rss.push(peak as f64);
        let (t, peak) = run_measured(&bin, &["analyze"], &db_url, &url);
        analyze.push(t.as_secs_f64());
        analyze_rss.push(peak as f64);
        db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    }
    let (f, c) = (median(floor.clone()), median(collect.clone()));
    println!("rounds: {rounds} (upper medians below, every round in brackets)");
    println!(
        "prometheus floor (same queries, plain HTTP, concurrency {}): {f:.2} s  {floor:?}",
        cfg.concurrency
    );
    println!("rightsizer collect: {c:.2} s  {collect:?}");
    println!("collector / floor: {:.2}", c / f);
    println!("collector peak RSS: {:.1} MB", median(rss) / 1e6);
    println!(
        "rightsizer analyze: {:.2} s, peak RSS {:.1} MB",
        median(analyze),
        median(analyze_rss) / 1e6
    );
    println!(
        "SQLite file after collect + analyze: {:.1} MB",
        db_bytes as f64 / 1e6
    );
}
