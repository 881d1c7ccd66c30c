//! `make bench`, collector part: the collector against a real, backfilled Prometheus, one
//! fleet size per call, next to the time Prometheus alone needs to answer the same queries
//! (replayed with a plain HTTP client, answers read but not decoded); peak RSS over a full and
//! a half window; `analyze`; store size on SQLite and Postgres; an incremental run of one new
//! hour. Each call appends its figures to BENCH_RESULTS; a last call with BENCH_SUMMARY prints
//! every figure at every size, the growth per container, an extrapolation to 5,000 workload
//! containers and PASS/MISS per target. Run through `scripts/bench.sh`, which generates the
//! fleet, backfills it and starts one Prometheus per size; this binary only measures.
//!
//! Env per size: BENCH_PROMETHEUS_URL, BENCH_PROMETHEUS_PID (optional: Prometheus' CPU time
//! is reported), BENCH_FROM, BENCH_TO (hour-aligned unix seconds), BENCH_BIN (the release
//! `rightsizer`), BENCH_DIR (scratch), BENCH_ROUNDS (default 2), BENCH_COPIES,
//! BENCH_CONTAINERS (workload containers generated), BENCH_POSTGRES_URL (an empty database),
//! BENCH_RESULTS (a JSON line is appended). Summary: BENCH_SUMMARY (that file).

mod head;
mod result;
mod summary;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use result::{days_label, median, SizeResult, SourceResult, RESOURCES};
use rightsizer::collector::{namespace_groups, plan, ChunkQueries, Scope};
use rightsizer::config::CollectorConfig;
use sqlx::Connection;

/// The sources measured; the first is the product's default (`auto` picks it against
/// Prometheus) and feeds analyze, the half window and Postgres.
/// `+gzip`: with `collector.compression = "gzip"` (on loopback `auto` means none).
const SOURCES: [&str; 3] = ["remote-read", "query-range", "query-range+gzip"];

/// /proc/<pid>/stat counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (run make bench)"))
}

fn env_parse<T: std::str::FromStr>(name: &str) -> T {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a valid number"))
}

/// A plain HTTP client: no compression asked for (reqwest asks for gzip by default once
/// its gzip feature is on, and Prometheus then spends CPU compressing).
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .no_gzip()
        .build()
        .unwrap()
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

/// Replays every query of the query-range path with the collector's concurrency: per chunk
/// the sizing and facts queries, then owners, state, CPU and memory for each namespace group
/// the sizes call for (one group when the chunk fits in one answer).
async fn prometheus_floor(url: &str, from: i64, to: i64, cfg: &CollectorConfig) -> (Duration, u64) {
    let http = plain_client();
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

/// The selections a recommender cannot do without: CPU seconds and working set per
/// container. Fixed here, whatever the collector asks.
const MINIMAL_CPU: &str =
    r#"rate(container_cpu_usage_seconds_total{container!="",container!="POD"}[5m])"#;
const MINIMAL_MEMORY: &str =
    r#"container_memory_working_set_bytes{container!="",container!="POD"}"#;

/// The minimal fetch: per-container CPU rate and working set at a 1-minute step over the
/// window, one range query per day and selection, with a plain HTTP client (no
/// compression) at the collector's concurrency; answers read, not decoded. Returns the
/// wall time, the answer bytes and the points in them.
async fn minimal_floor(url: &str, from: i64, to: i64, concurrency: usize) -> (Duration, u64, u64) {
    let http = plain_client();
    let days: Vec<(i64, i64)> = (from..to)
        .step_by(86_400)
        .map(|d| (d, (d + 86_400).min(to) - 60))
        .collect();
    let queries: Vec<(&str, i64, i64)> = days
        .iter()
        .flat_map(|&(s, e)| [(MINIMAL_CPU, s, e), (MINIMAL_MEMORY, s, e)])
        .collect();
    let started = Instant::now();
    let (bytes, points) = futures::stream::iter(queries)
        .map(|(promql, start, end)| {
            let http = http.clone();
            async move {
                let form = vec![
                    ("query", promql.to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", "60".to_string()),
                ];
                let body = replay(&http, url, "/api/v1/query_range", &form).await;
                // Every point ends in `"]`: `[1700000000,"0.25"]`.
                let points = body.windows(2).filter(|w| w == b"\"]").count() as u64;
                (body.len() as u64, points)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .fold((0, 0), |(b, p), (nb, np)| async move { (b + nb, p + np) })
        .await;
    (started.elapsed(), bytes, points)
}

/// Bytes Prometheus has sent in HTTP answers since it started, all handlers
/// (`prometheus_http_response_size_bytes_sum`): the same measure for the floor, range
/// queries and remote read.
async fn prometheus_bytes_sent(url: &str) -> f64 {
    let text = plain_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("prometheus_http_response_size_bytes_sum{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User plus system CPU time of a live process.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; utime and stime are the 12th and 13th fields after it.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SEC)
}

/// One run of the release binary.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall_secs: f64,
    /// VmHWM, polled until exit.
    peak_rss_bytes: f64,
    /// The last value polled before exit: short of the true figure by up to one poll.
    cpu_secs: f64,
    /// Usage samples summarized, as `collect` prints them (0 for other commands).
    samples: u64,
}

fn list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    format!("[{}]", items.join(", "))
}

/// Runs the release binary to completion, polling its peak RSS and CPU time.
fn run_measured(bin: &str, args: &[&str], db_url: &str, prom: &str, source: &str) -> Run {
    let (source, compression) = match source.strip_suffix("+gzip") {
        Some(source) => (source, "gzip"),
        None => (source, "none"),
    };
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env("RIGHTSIZER_DATABASE_URL", db_url)
        .env("RIGHTSIZER_PROMETHEUS_URL", prom)
        .env("RIGHTSIZER_COLLECTOR_SOURCE", source)
        .env("RIGHTSIZER_COLLECTOR_COMPRESSION", compression)
        .env("RIGHTSIZER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let (mut peak_kib, mut cpu) = (0u64, 0f64);
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
        cpu = cpu_secs(child.id()).unwrap_or(cpu).max(cpu);
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{bin} {args:?} failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    // "collected … for cluster X via S: N workload containers, M samples, K rejected"
    let samples = out
        .split(", ")
        .filter_map(|part| part.strip_suffix(" samples")?.parse::<u64>().ok())
        .sum();
    if args[0] == "collect" {
        let via = format!(" via {source}:");
        assert!(
            out.contains(&via),
            "collect did not read via {source}: {out}"
        );
    }
    Run {
        wall_secs,
        peak_rss_bytes: peak_kib as f64 * 1024.0,
        cpu_secs: cpu,
        samples,
    }
}

/// The database's size with its write-ahead log folded in, and the workload containers stored.
async fn sqlite_size(db: &Path) -> (u64, i64) {
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    // The collector leaves recent pages in the -wal file; the file alone would miss them.
    sqlx::query("pragma wal_checkpoint(truncate)")
        .execute(&pool)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from containers")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (std::fs::metadata(db).unwrap().len(), n)
}

fn remove_sqlite(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// Runs of one new hour whose medians the bench reports.
const HOUR_ROUNDS: usize = 3;

/// A copy of the store at `url` (a SQLite file, or a Postgres database made from it as a
/// template: nothing may be connected to it), at a URL of its own.
async fn copy_store(url: &str) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let copy = format!("{path}-hour");
            remove_sqlite(Path::new(&copy));
            for suffix in ["", "-wal"] {
                let from = format!("{path}{suffix}");
                if Path::new(&from).exists() {
                    std::fs::copy(&from, format!("{copy}{suffix}")).unwrap();
                }
            }
            format!("sqlite://{copy}")
        }
        None => {
            let (server, db) = url.rsplit_once('/').unwrap();
            on_server(
                server,
                &[
                    format!("drop database if exists {db}_hour with (force)"),
                    format!("create database {db}_hour template {db}"),
                ],
            )
            .await;
            format!("{server}/{db}_hour")
        }
    }
}

/// Removes a copy [`copy_store`] made.
async fn drop_store_copy(url: &str) {
    match url.strip_prefix("sqlite://") {
        Some(path) => remove_sqlite(Path::new(path)),
        None => {
            let (server, db) = url.rsplit_once('/').unwrap();
            on_server(
                server,
                &[format!("drop database if exists {db} with (force)")],
            )
            .await;
        }
    }
}

/// Runs `statements` on the Postgres server at `server` (its `postgres` database).
async fn on_server(server: &str, statements: &[String]) {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&mut admin).await.unwrap();
    }
}

/// What the Postgres store holds after the collector.
struct PgSizes {
    table_bytes: BTreeMap<String, u64>,
    usage_row_bytes: BTreeMap<String, u64>,
    usage_rows: i64,
    sketch_avg_bytes: f64,
    containers: i64,
}

/// The sizes after `VACUUM FULL`: the live rows, which is what the history grows by in a
/// steady state (chunks rewrite their day rows, and autovacuum lets later rows reuse the
/// space of the dead versions). The size before it is printed beside.
async fn postgres_sizes(url: &str) -> PgSizes {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let collector_bytes = || async {
        let tables: Vec<String> = result::COLLECTOR_TABLES
            .iter()
            .map(|t| t.to_string())
            .collect();
        sqlx::query_scalar::<_, i64>(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             left join pg_inherits i on i.inhrelid = c.oid left join pg_class p on p.oid = i.inhparent \
             where n.nspname = current_schema() and c.relkind = 'r' \
             and coalesce(p.relname, c.relname) = any($1)",
        )
        .bind(tables)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = collector_bytes().await;
    sqlx::query("vacuum full").execute(&pool).await.unwrap();
    println!(
        "Postgres collector tables right after collecting: {:.2} MB; after VACUUM FULL (live rows, measured below): {:.2} MB",
        before as f64 / 1e6,
        collector_bytes().await as f64 / 1e6
    );
    let tables: Vec<(String, i64)> = sqlx::query_as(
        // Monthly partitions (usage_days_p202612, …) count as their table.
        "select coalesce(p.relname, c.relname)::text, sum(pg_total_relation_size(c.oid))::bigint \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         left join pg_inherits i on i.inhrelid = c.oid left join pg_class p on p.oid = i.inhparent \
         where n.nspname = current_schema() and c.relkind = 'r' group by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select resource, sum(pg_column_size(u.*))::bigint from usage_days u group by resource",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let (usage_rows, sketch_avg_bytes): (i64, f64) =
        sqlx::query_as("select count(*), coalesce(avg(length(hours)), 0)::float8 from usage_days")
            .fetch_one(&pool)
            .await
            .unwrap();
    let containers: i64 = sqlx::query_scalar("select count(*) from containers")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let map = |v: Vec<(String, i64)>| v.into_iter().map(|(k, b)| (k, b as u64)).collect();
    PgSizes {
        table_bytes: map(tables),
        usage_row_bytes: map(rows),
        usage_rows,
        sketch_avg_bytes,
        containers,
    }
}

/// Prometheus' CPU time and answer bytes around one measured step.
#[derive(Clone, Copy)]
struct PromMeter<'a> {
    url: &'a str,
    pid: Option<u32>,
}

impl PromMeter<'_> {
    async fn mark(&self) -> (Option<f64>, f64) {
        (
            self.pid.and_then(cpu_secs),
            prometheus_bytes_sent(self.url).await,
        )
    }

    /// (CPU seconds, bytes) since `mark`.
    async fn since(&self, mark: (Option<f64>, f64)) -> (Option<f64>, f64) {
        let (cpu, bytes) = self.mark().await;
        (mark.0.zip(cpu).map(|(b, a)| a - b), bytes - mark.1)
    }
}

/// One source's first backfills into SQLite, round by round.
#[derive(Default)]
struct SourceRounds {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
    prom_cpu: Vec<f64>,
    bytes: Vec<f64>,
    samples: u64,
    sqlite: (u64, i64),
}

impl SourceRounds {
    fn result(&self) -> SourceResult {
        SourceResult {
            collect_secs: self.wall.clone(),
            collect_cpu_secs: self.cpu.clone(),
            collect_rss_bytes: self.rss.clone(),
            prometheus_cpu_secs: self.prom_cpu.clone(),
            prometheus_bytes: self.bytes.clone(),
            samples: self.samples,
        }
    }
}

/// Measures one fleet size and appends its figures to BENCH_RESULTS.
async fn measure() {
    let url = env("BENCH_PROMETHEUS_URL");
    let prom_pid: Option<u32> = std::env::var("BENCH_PROMETHEUS_PID")
        .ok()
        .and_then(|v| v.parse().ok());
    let from: i64 = env_parse("BENCH_FROM");
    let to: i64 = env_parse("BENCH_TO");
    let bin = env("BENCH_BIN");
    let dir = PathBuf::from(env("BENCH_DIR"));
    let copies: usize = env_parse("BENCH_COPIES");
    let containers: u64 = env_parse("BENCH_CONTAINERS");
    let pg_url = env("BENCH_POSTGRES_URL");
    let results = PathBuf::from(env("BENCH_RESULTS"));
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let cfg = CollectorConfig::default();
    let window_secs = to - from;
    // Whole hours, so that both windows are what the collector plans.
    let half_window_secs = window_secs / 2 / 3600 * 3600;
    let meter = PromMeter {
        url: &url,
        pid: prom_pid,
    };

    // Warm Prometheus' page cache once so no measurement pays the first disk reads.
    let (warm, answer_bytes) = prometheus_floor(&url, from, to, &cfg).await;
    let (_, floor_bytes, floor_points) = minimal_floor(&url, from, to, cfg.concurrency).await;
    println!(
        "warm-up: replay of the collector's range queries {:.2} s, {:.1} MB of answers; minimal fetch {:.1} MB, {} points",
        warm.as_secs_f64(),
        answer_bytes as f64 / 1e6,
        floor_bytes as f64 / 1e6,
        floor_points
    );

    let (mut floor, mut prom_floor) = (vec![], vec![]);
    let (mut replay_floor, mut prom_replay) = (vec![], vec![]);
    let mut by_source: BTreeMap<&str, SourceRounds> = BTreeMap::new();
    let (mut analyze, mut analyze_rss) = (vec![], vec![]);
    let full = format!("{window_secs}s");
    for round in 0..rounds {
        let mark = meter.mark().await;
        let (t, _, _) = minimal_floor(&url, from, to, cfg.concurrency).await;
        floor.push(t.as_secs_f64());
        prom_floor.extend(meter.since(mark).await.0);

        let mark = meter.mark().await;
        let (t, _) = prometheus_floor(&url, from, to, &cfg).await;
        replay_floor.push(t.as_secs_f64());
        prom_replay.extend(meter.since(mark).await.0);

        for source in SOURCES {
            let db = dir.join(format!("bench-{source}-{round}.db"));
            remove_sqlite(&db);
            let db_url = format!("sqlite://{}", db.display());
            let mark = meter.mark().await;
            let r = run_measured(
                &bin,
                &["collect", "--since", &full, "--until", &to.to_string()],
                &db_url,
                &url,
                source,
            );
            let (prom_cpu, bytes) = meter.since(mark).await;
            let s = by_source.entry(source).or_default();
            s.wall.push(r.wall_secs);
            s.cpu.push(r.cpu_secs);
            s.rss.push(r.peak_rss_bytes);
            s.prom_cpu.extend(prom_cpu);
            s.bytes.push(bytes);
            s.samples = r.samples;
            if source == SOURCES[0] {
                let a = run_measured(&bin, &["analyze"], &db_url, &url, source);
                analyze.push(a.wall_secs);
                analyze_rss.push(a.peak_rss_bytes);
            }
            s.sqlite = sqlite_size(&db).await;
            remove_sqlite(&db);
        }
    }

    // A window ending an hour early, then the same window up to the end: the second run
    // has exactly one new hour to ingest, as a scheduled run an hour after the last.
    let incremental = |store_url: String, since: String, source: &'static str| {
        let (bin, url) = (bin.clone(), url.clone());
        async move {
            let until_early = (to - 3600).to_string();
            let first = run_measured(
                &bin,
                &["collect", "--since", &since, "--until", &until_early],
                &store_url,
                &url,
                source,
            );
            // One run alone is at the mercy of the machine's noise (a tenth of a second
            // either way at 5,000 containers): the hour is collected HOUR_ROUNDS times,
            // each on a copy of the store as the first run left it but the last, which
            // keeps the hour (the Postgres sizes are measured after it), and the medians
            // are reported.
            let (mut wall, mut rss, mut prom) = (vec![], vec![], vec![]);
            for round in 0..HOUR_ROUNDS {
                let last = round + 1 == HOUR_ROUNDS;
                let target = if last {
                    store_url.clone()
                } else {
                    copy_store(&store_url).await
                };
                let mark = meter.mark().await;
                let second = run_measured(
                    &bin,
                    &["collect", "--since", &since, "--until", &to.to_string()],
                    &target,
                    &url,
                    source,
                );
                prom.push(meter.since(mark).await.0.unwrap_or(f64::NAN));
                wall.push(second.wall_secs);
                rss.push(second.peak_rss_bytes);
                if !last {
                    drop_store_copy(&target).await;
                }
            }
            (first, (median(&wall), median(&rss)), median(&prom))
        }
    };
    let mut incremental_runs = BTreeMap::new();
    let mut half = None;
    for source in SOURCES.into_iter().take(2) {
        let half_db = dir.join(format!("bench-half-{source}.db"));
        remove_sqlite(&half_db);
        let (h, second, prom_cpu) = incremental(
            format!("sqlite://{}", half_db.display()),
            format!("{half_window_secs}s"),
            source,
        )
        .await;
        remove_sqlite(&half_db);
        half.get_or_insert(h);
        incremental_runs.insert(format!("SQLite, {source}"), (second.0, second.1, prom_cpu));
    }
    let half = half.expect("two sources");
    let (pg_collect, pg_second, pg_prom_cpu) = incremental(pg_url.clone(), full, SOURCES[0]).await;
    incremental_runs.insert(
        format!("Postgres, {}", SOURCES[0]),
        (pg_second.0, pg_second.1, pg_prom_cpu),
    );
    let pg = postgres_sizes(&pg_url).await;
    let primary = &by_source[SOURCES[0]];
    let (sqlite_bytes, sqlite_stored) = primary.sqlite;

    let result = SizeResult {
        copies,
        containers,
        window_secs,
        half_window_secs,
        answer_bytes,
        floor_secs: floor,
        prometheus_cpu_floor_secs: prom_floor,
        floor_bytes,
        floor_points,
        replay_secs: replay_floor,
        prometheus_cpu_replay_secs: prom_replay,
        sources: by_source
            .iter()
            .map(|(name, s)| (name.to_string(), s.result()))
            .collect(),
        analyze_secs: analyze,
        analyze_rss_bytes: analyze_rss,
        sqlite_bytes,
        sqlite_containers: sqlite_stored,
        half_collect_secs: half.wall_secs,
        half_rss_bytes: half.peak_rss_bytes,
        incremental: incremental_runs,
        pg_collect_secs: pg_collect.wall_secs,
        pg_collect_rss_bytes: pg_collect.peak_rss_bytes,
        pg_containers: pg.containers,
        pg_table_bytes: pg.table_bytes,
        pg_usage_row_bytes: pg.usage_row_bytes,
        pg_usage_rows: pg.usage_rows,
        pg_sketch_avg_bytes: pg.sketch_avg_bytes,
    };
    print_size(&result, cfg.concurrency);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results)
        .unwrap();
    writeln!(out, "{}", serde_json::to_string(&result).unwrap()).unwrap();
}

fn print_size(r: &SizeResult, concurrency: usize) {
    let f = r.floor();
    println!(
        "rounds: {} (upper medians below, every round in brackets)",
        r.floor_secs.len()
    );
    println!(
        "minimal fetch (CPU rate + working set per container, 1-minute step, one query per day, plain HTTP, concurrency {concurrency}): {f:.2} s {}, Prometheus CPU {}, {:.1} MB, {:.1} B per point",
        list(&r.floor_secs),
        list(&r.prometheus_cpu_floor_secs),
        r.floor_bytes as f64 / 1e6,
        r.floor_bytes_per_point()
    );
    println!(
        "replay of the collector's range queries (plain HTTP): {:.2} s {}, Prometheus CPU {}",
        median(&r.replay_secs),
        list(&r.replay_secs),
        list(&r.prometheus_cpu_replay_secs)
    );
    for (name, s) in &r.sources {
        println!(
            "collect via {name}, {} window, SQLite: {:.2} s {} = {:.2} × the floor; Prometheus CPU {:.2} s {} = {:.2} × the floor's; \
             {:.1} MB from Prometheus = {:.2} B per usage sample; collector CPU {:.2} s, peak RSS {:.1} MB",
            days_label(r.window_secs),
            median(&s.collect_secs),
            list(&s.collect_secs),
            median(&s.collect_secs) / f,
            median(&s.prometheus_cpu_secs),
            list(&s.prometheus_cpu_secs),
            median(&s.prometheus_cpu_secs) / median(&r.prometheus_cpu_floor_secs),
            median(&s.prometheus_bytes) / 1e6,
            s.bytes_per_sample(),
            median(&s.collect_cpu_secs),
            median(&s.collect_rss_bytes) / 1e6,
        );
    }
    println!(
        "collector peak RSS over {}: {:.1} MB (one run, {:.2} s)",
        days_label(r.half_window_secs),
        r.half_rss_bytes / 1e6,
        r.half_collect_secs
    );
    println!(
        "rightsizer analyze: {:.2} s, peak RSS {:.1} MB",
        median(&r.analyze_secs),
        median(&r.analyze_rss_bytes) / 1e6
    );
    for (name, (wall, rss, prom_cpu)) in &r.incremental {
        println!(
            "incremental run, one new hour, {name}: {wall:.2} s, peak RSS {:.1} MB, Prometheus CPU {prom_cpu:.2} s",
            rss / 1e6
        );
    }
    println!(
        "collect into Postgres, {} window ending an hour early: {:.2} s, peak RSS {:.1} MB",
        days_label(r.window_secs),
        r.pg_collect_secs,
        r.pg_collect_rss_bytes / 1e6
    );
    let tables: Vec<String> = r
        .pg_table_bytes
        .iter()
        .filter(|(name, _)| !name.starts_with("_sqlx"))
        .map(|(name, bytes)| format!("{name} {:.2} MB", *bytes as f64 / 1e6))
        .collect();
    println!("Postgres tables: {}", tables.join(", "));
    let usage = r.pg_table_bytes.get("usage_days").copied().unwrap_or(0) as f64;
    println!(
        "usage_days: {} rows (one per workload container, resource and day), {:.0} B per row \
         on disk with its index, {:.0} B of packed hours on average",
        r.pg_usage_rows,
        usage / r.pg_usage_rows.max(1) as f64,
        r.pg_sketch_avg_bytes
    );
    let per_resource: Vec<String> = RESOURCES
        .iter()
        .map(|res| {
            format!(
                "{res} {:.0} B",
                r.per_container_day(r.pg_resource_bytes(res))
            )
        })
        .collect();
    println!(
        "Postgres collector tables: {:.2} MB = per workload container per day {}",
        r.pg_collector_bytes() / 1e6,
        per_resource.join(", ")
    );
    println!(
        "SQLite file after collect + analyze: {:.2} MB = {:.0} B per workload container per day per resource",
        r.sqlite_bytes as f64 / 1e6,
        r.per_container_day(r.sqlite_bytes as f64) / RESOURCES.len() as f64
    );
    println!(
        "workload containers stored: SQLite {}, Postgres {} (generated {})",
        r.sqlite_containers, r.pg_containers, r.containers
    );
    if r.sqlite_containers != r.containers as i64 || r.pg_containers != r.containers as i64 {
        println!("WARNING: the stores do not hold every generated workload container");
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --all-targets` builds benches; nothing to run there.
    }
    if let Ok(files) = std::env::var("BENCH_HEAD_FILES") {
        let files: Vec<&Path> = files.split_whitespace().map(Path::new).collect();
        let url = env("BENCH_PROMETHEUS_URL");
        let (from, to) = (env_parse("BENCH_HEAD_FROM"), env_parse("BENCH_TO"));
        let started = Instant::now();
        let samples = head::push(&url, &files, from, to).await;
        println!(
            "    sent the last {} h of {} copies to Prometheus' head: {samples} samples in {:.0} s",
            (to - from) / 3600,
            files.len(),
            started.elapsed().as_secs_f64()
        );
        return;
    }
    match std::env::var("BENCH_SUMMARY") {
        Ok(path) => summary::summary(Path::new(&path)),
        Err(_) => measure().await,
    }
}
