//! Several `serve` replicas sharing one Postgres and a real Prometheus: every collection
//! chunk is ingested by exactly one of them, the stored summaries equal a single process's,
//! one analysis runs per period fleet-wide, a replica killed mid-run loses nothing, and any
//! replica answers for any run while one collect runs fleet-wide.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rightsizer::collector::{self, CollectOptions};
use rightsizer::model::{ContainerObservation, UsageHour};
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store::{self, Store};
use rightsizer_synth::{self as synth, SynthConfig};
use support::postgres::TestDatabase;
use support::prometheus::{Prometheus, TempDir};

const DAYS: i64 = 2;
const CLUSTER: &str = "default";

/// Two days of a synthetic cluster ending at the current hour, in a real Prometheus.
fn prometheus(dir: &TempDir) -> Prometheus {
    let now = chrono::Utc::now().timestamp();
    let end = now - now.rem_euclid(3600);
    let cfg = SynthConfig::new(11, end - DAYS * 86_400, end);
    let path = dir.path().join("metrics.om");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    synth::generate(&cfg, file).unwrap();
    let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
    std::fs::remove_file(&path).unwrap();
    prometheus
}

/// One-hour chunks make many cells for the replicas to contend for, and two-hour spans many
/// commits.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rightsizer.toml");
    std::fs::write(
        &path,
        "[collector]\nchunk_hours = 1\nspan_hours = 2\nconcurrency = 2\n[policy]\nwindow = \"2d\"\n",
    )
    .unwrap();
    path
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(config: &Path, database: &str, prometheus: &str, interval: &str) -> Replica {
        Replica::start_with(config, database, prometheus, interval, &[])
    }

    fn start_with(
        config: &Path,
        database: &str,
        prometheus: &str,
        interval: &str,
        env: &[(&str, &str)],
    ) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--collect-interval",
                interval,
            ])
            .env("RIGHTSIZER_CONFIG", config)
            .env("RIGHTSIZER_DATABASE_URL", database)
            .env("RIGHTSIZER_PROMETHEUS_URL", prometheus)
            .env("RIGHTSIZER_LOG", "warn")
            .env_remove("RIGHTSIZER_API_TOKENS")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, port }
    }

    /// The value of a counter sample (`name{labels}`) in `/metrics`, 0 when absent.
    async fn counter(&self, sample: &str) -> f64 {
        let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the API answers.
    async fn listening(&self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        wait_until("the replica listens", Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(url).await.is_ok() }
        })
        .await;
    }

    /// Status and JSON body of a request to the API, with the action token.
    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
        (status, body)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

const CHUNKS: &str = "rightsizer_collector_chunks_total{cluster=\"default\"}";
const ANALYZED: &str = "rightsizer_scheduled_jobs_total{job=\"analyze\",outcome=\"ran\"}";
const LEFT: &str = "rightsizer_scheduled_jobs_total{job=\"analyze\",outcome=\"skipped\"}";

/// Everything the collector stores: hours, containers, usage.
async fn dump(
    store: &dyn Store,
) -> (
    Vec<i64>,
    Vec<ContainerObservation>,
    BTreeMap<String, Vec<UsageHour>>,
) {
    let hours = store
        .collected_hours(CLUSTER, 0, i64::MAX / 2)
        .await
        .unwrap();
    let containers = store.containers(Some(CLUSTER)).await.unwrap();
    let mut usage = BTreeMap::new();
    for c in &containers {
        usage.insert(
            c.key.to_string(),
            store.usage(&c.key, 0, i64::MAX / 2).await.unwrap(),
        );
    }
    (hours, containers, usage)
}

/// What one process alone stores for the same hours, with the same settings.
async fn single_process(prometheus: &str, hours: &[i64], dir: &Path) -> impl Store {
    let reference = store::sqlite::SqliteStore::connect(&format!(
        "sqlite://{}",
        dir.join("reference.db").display()
    ))
    .await
    .unwrap();
    reference.migrate().await.unwrap();
    let prom = PromClient::new(&PromConfig {
        url: prometheus.into(),
        timeout: Duration::from_secs(60),
        ..PromConfig::default()
    })
    .unwrap();
    let opts = CollectOptions {
        chunk_hours: 1,
        ..CollectOptions::new(CLUSTER, hours[0], hours[hours.len() - 1] + 3600)
    };
    collector::collect(&prom, &reference, &opts).await.unwrap();
    reference
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The serve window: the policy's two days up to the last complete hour.
fn expected_hours() -> usize {
    (DAYS * 24) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_collect_each_chunk_once_and_analyze_once_per_period() {
    let dir = TempDir::new("rs-replicas").unwrap();
    let prom = prometheus(&dir);
    let db = TestDatabase::create().await;
    let config = write_config(dir.path());
    // An hour-long period: both replicas tick at once on start and share that period.
    let replicas = [
        Replica::start(&config, db.url(), prom.url(), "1h"),
        Replica::start(&config, db.url(), prom.url(), "1h"),
    ];
    let shared = store::connect(db.url()).await.unwrap();
    // Each replica's first tick ends by leasing the period's analysis, or leaving it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut ticks = 0.0;
        for r in &replicas {
            ticks += r.counter(ANALYZED).await + r.counter(LEFT).await;
        }
        if ticks >= 2.0 {
            assert_eq!(ticks, 2.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas' first ticks did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (hours, containers, usage) = dump(shared.as_ref()).await;
    assert!(
        hours.len() >= expected_hours(),
        "{} hours collected",
        hours.len()
    );
    let mut chunks = Vec::new();
    let mut analyses = 0.0;
    for r in &replicas {
        chunks.push(r.counter(CHUNKS).await);
        analyses += r.counter(ANALYZED).await;
    }
    // One-hour cells: exactly one chunk per collected hour across both replicas.
    assert_eq!(
        chunks.iter().sum::<f64>(),
        hours.len() as f64,
        "chunks written per replica: {chunks:?}"
    );
    assert_eq!(analyses, 1.0, "one analysis for the period, fleet-wide");
    let recs = shared.recommendations(&Default::default()).await.unwrap();
    assert_eq!(
        recs.len(),
        containers.len(),
        "the analysis covered every container"
    );

    let reference = single_process(prom.url(), &hours, dir.path()).await;
    let (ref_hours, ref_containers, ref_usage) = dump(&reference).await;
    assert_eq!(hours, ref_hours);
    assert_eq!(containers, ref_containers);
    assert_eq!(usage, ref_usage);
    drop(replicas);
    drop(shared);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_loses_nothing() {
    let dir = TempDir::new("rs-replicas-kill").unwrap();
    let prom = prometheus(&dir);
    let db = TestDatabase::create().await;
    let config = write_config(dir.path());
    let mut doomed = Replica::start(&config, db.url(), prom.url(), "2s");
    let survivor = Replica::start(&config, db.url(), prom.url(), "2s");
    let shared = store::connect(db.url()).await.unwrap();
    let collected = || {
        let shared = shared.clone();
        async move {
            shared
                .collected_hours(CLUSTER, 0, i64::MAX / 2)
                .await
                .unwrap()
                .len()
        }
    };
    wait_until(
        "the replicas wrote a first chunk",
        Duration::from_secs(60),
        || {
            let n = collected();
            async move { n.await >= 1 }
        },
    )
    .await;
    // SIGKILL while both are collecting: no release, no goodbye; the doomed replica's
    // claims on the chunks it was fetching go with its connections.
    doomed.kill();
    let killed_with = collected().await;
    assert!(
        killed_with < expected_hours(),
        "the replica was killed after the run ended ({killed_with} hours): nothing was tested"
    );
    wait_until(
        "the survivor collected every hour",
        Duration::from_secs(120),
        || {
            let n = collected();
            async move { n.await >= expected_hours() }
        },
    )
    .await;
    eprintln!(
        "killed with {killed_with} of {} hours collected; the survivor wrote {} chunks",
        expected_hours(),
        survivor.counter(CHUNKS).await
    );
    drop(survivor);
    let (hours, containers, usage) = dump(shared.as_ref()).await;
    let reference = single_process(prom.url(), &hours, dir.path()).await;
    let (ref_hours, ref_containers, ref_usage) = dump(&reference).await;
    assert_eq!(hours, ref_hours);
    assert_eq!(containers, ref_containers);
    assert_eq!(usage, ref_usage);
    drop(shared);
    db.drop_database().await;
}

const TOKEN: &str = "replica-test-token";

/// A TCP gate in front of Prometheus: connections wait until it opens, so a run started
/// while it is closed keeps running for as long as the test needs it to.
async fn gate(upstream: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let (open, opened) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (mut opened, upstream) = (opened.clone(), upstream.clone());
            tokio::spawn(async move {
                let _ = opened.wait_for(|open| *open).await;
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (url, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_replica_answers_for_any_run_and_one_collect_runs_fleet_wide() {
    let dir = TempDir::new("rs-replicas-runs").unwrap();
    let prom = prometheus(&dir);
    let (gated, open) = gate(prom.url()).await;
    let db = TestDatabase::create().await;
    let config = write_config(dir.path());
    let env = [("RIGHTSIZER_API_TOKENS", TOKEN)];
    // No schedule: the only runs are the ones this test starts.
    let a = Replica::start_with(&config, db.url(), &gated, "0", &env);
    let b = Replica::start_with(&config, db.url(), &gated, "0", &env);
    a.listening().await;
    b.listening().await;

    let (status, started) = a.call(reqwest::Method::POST, "/api/v1/collect").await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/runs/{id}");
    // Prometheus is held back: the run is still going on A.
    let (status, seen) = b.call(reqwest::Method::GET, &path).await;
    assert_eq!(
        (status, &seen["status"]),
        (200, &serde_json::json!("running")),
        "{seen}"
    );
    assert_eq!(seen["started_at"], started["started_at"]);
    let (status, refused) = b.call(reqwest::Method::POST, "/api/v1/collect").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["running_id"], id.as_str());

    open.send(true).unwrap();
    wait_until("the run finished", Duration::from_secs(180), || {
        let path = path.clone();
        let b = &b;
        async move { b.call(reqwest::Method::GET, &path).await.1["status"] != "running" }
    })
    .await;
    let (_, on_a) = a.call(reqwest::Method::GET, &path).await;
    let (_, on_b) = b.call(reqwest::Method::GET, &path).await;
    assert_eq!(on_a, on_b);
    assert_eq!(on_a["status"], "succeeded", "{on_a}");
    assert!(
        on_a["result"]["clusters"][CLUSTER]["hours_collected"].as_u64() > Some(0),
        "{on_a}"
    );
    // The kind is free again, for either replica.
    let (status, next) = b.call(reqwest::Method::POST, "/api/v1/collect").await;
    assert_eq!(status, 202, "{next}");
    assert_ne!(next["id"], on_a["id"]);
    drop((a, b));
    db.drop_database().await;
}
