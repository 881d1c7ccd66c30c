//! Several clusters on real Prometheus servers, through the library and the binary: one
//! Prometheus holding two clusters told apart by a label, two clusters each on its own
//! Prometheus, and one cluster whose chunks are queried per namespace group, planned ahead
//! or after Prometheus refused an answer for its size.
//!
//! promtool is the slow part, so the two synthetic clusters are backfilled once and shared
//! by the tests running at the same time; the last of them to finish stops the servers.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rightsizer::collector::{self, ChunkQueries, CollectOptions, CollectReport, RangeQuery, Scope};
use rightsizer::jobs;
use rightsizer::model::{
    ContainerObservation, Recommendation, SignalHour, UsageHour, WorkloadInfo,
};
use rightsizer::prometheus::{PromClient, PromConfig, PromError};
use rightsizer::store::Store;
use rightsizer_synth::{self as synth, GroundTruth, SynthConfig};
use support::prometheus::{self as prom, Prometheus, TempDir};

const DAYS: i64 = 2;
const STEP_SECS: i64 = 60;
const CHUNK_HOURS: u32 = 6;
const LABEL: &str = "cluster";

/// Two synthetic clusters, each alone on its own Prometheus and both together on a third,
/// where every series carries `cluster="east"` or `cluster="west"`.
struct Fixture {
    /// End of both histories (exclusive, hour-aligned).
    end: i64,
    east: GroundTruth,
    west: GroundTruth,
    shared: Prometheus,
    east_alone: Prometheus,
    west_alone: Prometheus,
}

impl Fixture {
    fn from(&self) -> i64 {
        self.end - DAYS * 86_400
    }

    /// (name, truth, its own Prometheus) for east and west.
    fn clusters(&self) -> [(&'static str, &GroundTruth, &Prometheus); 2] {
        [
            ("east", &self.east, &self.east_alone),
            ("west", &self.west, &self.west_alone),
        ]
    }
}

/// Copies OpenMetrics text from `raw` to `out`, adding `label="value"` to every sample line,
/// as a Prometheus (or Thanos) holding several clusters stores the same history.
fn add_label(raw: &Path, out: &Path, label: &str, value: &str) -> io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(raw)?);
    let mut output = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let pair = format!("{label}=\"{value}\"");
    let mut line = Vec::with_capacity(512);
    while input.read_until(b'\n', &mut line)? > 0 {
        // A metric name holds neither `{` nor a space: the first of them ends it.
        match line.iter().position(|&b| b == b'{' || b == b' ') {
            Some(i) if !line.starts_with(b"#") => {
                let (name, rest) = line.split_at(i);
                output.write_all(name)?;
                if rest[0] == b'{' {
                    output.write_all(b"{")?;
                    output.write_all(pair.as_bytes())?;
                    if rest.get(1) != Some(&b'}') {
                        output.write_all(b",")?;
                    }
                    output.write_all(&rest[1..])?;
                } else {
                    write!(output, "{{{pair}}}")?;
                    output.write_all(rest)?;
                }
            }
            _ => output.write_all(&line)?,
        }
        line.clear();
    }
    output.flush()
}

/// Writes a cluster's history (`<name>.om`) and the same with its cluster label
/// (`<name>-labelled.om`) into `dir`.
fn generate(dir: &Path, name: &str, seed: u64, end: i64) -> (GroundTruth, PathBuf, PathBuf) {
    let raw = dir.join(format!("{name}.om"));
    let labelled = dir.join(format!("{name}-labelled.om"));
    let cfg = SynthConfig::new(seed, end - DAYS * 86_400, end);
    let file = BufWriter::with_capacity(1 << 20, File::create(&raw).unwrap());
    let truth = synth::generate(&cfg, file).unwrap();
    add_label(&raw, &labelled, LABEL, name).unwrap();
    (truth, raw, labelled)
}

fn build_fixture() -> Fixture {
    // The binary discovers clusters from the hour before the real clock, so the history
    // reaches it: it ends at the nearest hour, at most 30 minutes from now either way.
    let now = chrono::Utc::now().timestamp();
    let end = collector::floor_hour(now + 1800);
    let input = TempDir::new("rs-multicluster-input").unwrap();
    let ((east, east_raw, east_labelled), (west, west_raw, west_labelled)) =
        std::thread::scope(|s| {
            let east = s.spawn(|| generate(input.path(), "east", 11, end));
            let west = s.spawn(|| generate(input.path(), "west", 12, end));
            (east.join().unwrap(), west.join().unwrap())
        });
    let dirs: Vec<TempDir> = ["shared", "east", "west"]
        .iter()
        .map(|name| {
            let dir = TempDir::new(&format!("rs-multicluster-{name}")).unwrap();
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            dir
        })
        .collect();
    let blocks = prom::max_block_duration_for(DAYS * 86_400);
    let data = |i: usize| dirs[i].path().join("data");
    // Two promtool runs at a time, each mostly one busy core. Both labelled clusters go
    // into one TSDB, one run after the other.
    std::thread::scope(|s| {
        let shared = s.spawn(|| {
            prom::backfill(&east_labelled, &data(0), blocks)?;
            prom::backfill(&west_labelled, &data(0), blocks)
        });
        let alone = s.spawn(|| {
            prom::backfill(&east_raw, &data(1), blocks)?;
            prom::backfill(&west_raw, &data(2), blocks)
        });
        shared.join().unwrap().unwrap();
        alone.join().unwrap().unwrap();
    });
    drop(input);
    let mut servers = dirs.into_iter().map(|dir| Prometheus::serve(dir).unwrap());
    Fixture {
        end,
        east,
        west,
        shared: servers.next().unwrap(),
        east_alone: servers.next().unwrap(),
        west_alone: servers.next().unwrap(),
    }
}

/// The fixture of the tests running now, or a new one. Sharing only saves time: run one
/// test at a time and each builds its own.
async fn fixture() -> Arc<Fixture> {
    static SHARED: Mutex<Weak<Fixture>> = Mutex::new(Weak::new());
    tokio::task::spawn_blocking(|| {
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(fx) = shared.upgrade() {
            return fx;
        }
        let fx = Arc::new(build_fixture());
        *shared = Arc::downgrade(&fx);
        fx
    })
    .await
    .unwrap()
}

fn client(url: &str) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.into(),
        timeout: Duration::from_secs(60),
        ..PromConfig::default()
    })
    .unwrap()
}

fn options(cluster: &str, from: i64, to: i64) -> CollectOptions {
    CollectOptions {
        step_secs: STEP_SECS,
        chunk_hours: CHUNK_HOURS,
        concurrency: 2,
        ..CollectOptions::new(cluster, from, to)
    }
}

fn by_label(cluster: &str) -> Scope {
    Scope {
        cluster: Some((LABEL.into(), cluster.into())),
        namespaces: None,
    }
}

async fn sqlite(dir: &TempDir, name: &str) -> Arc<dyn Store> {
    let url = format!(
        "sqlite://{}",
        dir.path().join(format!("{name}.db")).display()
    );
    rightsizer::store::connect(&url).await.unwrap()
}

/// Everything a cluster's collection stored.
struct Dump {
    containers: Vec<ContainerObservation>,
    workloads: Vec<WorkloadInfo>,
    usage: BTreeMap<String, Vec<UsageHour>>,
    signals: BTreeMap<String, Vec<SignalHour>>,
}

async fn dump(store: &dyn Store, cluster: &str) -> Dump {
    let containers = store.containers(Some(cluster)).await.unwrap();
    let (mut usage, mut signals) = (BTreeMap::new(), BTreeMap::new());
    for c in &containers {
        let key = c.key.to_string();
        usage.insert(
            key.clone(),
            store.usage(&c.key, 0, i64::MAX / 2).await.unwrap(),
        );
        signals.insert(key, store.signals(&c.key, 0, i64::MAX / 2).await.unwrap());
    }
    Dump {
        containers,
        workloads: store.workloads(Some(cluster)).await.unwrap(),
        usage,
        signals,
    }
}

/// Like `assert_eq!` on two dumps (the usage and signals are keyed by the containers), naming
/// the first container that differs instead of printing megabytes of summaries.
fn assert_same(got: &Dump, want: &Dump, what: &str) {
    assert!(!want.containers.is_empty(), "{what}: nothing collected");
    assert_eq!(got.containers, want.containers, "{what}: containers");
    assert_eq!(got.workloads, want.workloads, "{what}: workloads");
    for (key, rows) in &want.usage {
        assert!(!rows.is_empty(), "{what}: {key} has no usage");
        assert!(got.usage.get(key) == Some(rows), "{what}: usage of {key}");
        assert!(
            got.signals.get(key) == want.signals.get(key),
            "{what}: signals of {key}"
        );
    }
}

/// A split collection (`report`, into `split`) reported and stored what one unsplit
/// collection (`one`, into `whole`) did, its requests and the split aside (what the remote
/// reads moved depends on how they were cut: a span of chunks read at once reads the
/// owners raw, chunks read one by one ask for them).
async fn assert_split_matches_one(
    (report, split): (CollectReport, &dyn Store),
    (one, whole): (CollectReport, &dyn Store),
    cluster: &str,
    what: &str,
) {
    assert_eq!(one.split_chunks, 0, "{one:?}");
    let requests_aside = |r: CollectReport| CollectReport {
        queries: 0,
        split_chunks: 0,
        remote_read_bytes: 0,
        remote_read_samples: 0,
        ..r
    };
    assert_eq!(requests_aside(report), requests_aside(one));
    assert_same(
        &dump(split, cluster).await,
        &dump(whole, cluster).await,
        what,
    );
}

/// (namespace, kind, workload, container) of every workload container the truth knows.
fn truth_keys(truth: &GroundTruth) -> BTreeSet<[String; 4]> {
    truth
        .containers
        .iter()
        .map(|t| {
            [
                t.namespace.clone(),
                t.kind.clone(),
                t.workload.clone(),
                t.container.clone(),
            ]
        })
        .collect()
}

/// The recommendations of `cluster` are one per workload container of `truth`, each from
/// exactly that cluster's samples.
fn check_recommendations(recs: &[Recommendation], cluster: &str, truth: &GroundTruth) {
    let mine: Vec<&Recommendation> = recs.iter().filter(|r| r.key.cluster == cluster).collect();
    let keys: BTreeSet<[String; 4]> = mine
        .iter()
        .map(|r| {
            [
                r.key.namespace.clone(),
                r.key.kind.clone(),
                r.key.workload.clone(),
                r.key.container.clone(),
            ]
        })
        .collect();
    assert_eq!(keys, truth_keys(truth), "workload containers of {cluster}");
    assert_eq!(mine.len(), truth.containers.len(), "{cluster}: one each");
    for r in mine {
        let t = truth
            .container(
                &r.key.namespace,
                &r.key.kind,
                &r.key.workload,
                &r.key.container,
            )
            .unwrap();
        assert_eq!(
            (r.evidence.samples, r.evidence.memory_samples),
            (t.cpu_samples, t.memory_samples),
            "{}: CPU and memory samples",
            r.key
        );
    }
}

/// Runs the binary with nothing from the environment but `config`.
async fn rightsizer(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rightsizer"));
    for (name, _) in std::env::vars() {
        if name.starts_with("RIGHTSIZER_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RIGHTSIZER_LOG", "off")
        .arg("--config")
        .arg(config)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rightsizer failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn recommendations_of(out: &Output) -> Vec<Recommendation> {
    serde_json::from_str(&stdout_of(out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prometheus_holds_two_clusters_told_apart_by_a_label() {
    let fx = fixture().await;
    assert_ne!(
        fx.east.containers, fx.west.containers,
        "the seeds give different usage, so a mix-up would show"
    );
    let shared = client(fx.shared.url());
    assert_eq!(
        jobs::discover_clusters(&shared, LABEL, fx.end)
            .await
            .unwrap(),
        ["east", "west"]
    );

    let dir = TempDir::new("rs-multicluster-label").unwrap();
    let store = sqlite(&dir, "shared").await;
    for (name, truth, alone) in fx.clusters() {
        let scoped = CollectOptions {
            scope: by_label(name),
            ..options(name, fx.from(), fx.end)
        };
        let report = collector::collect(&shared, store.as_ref(), &scoped)
            .await
            .unwrap();
        assert_eq!(report.hours_collected, DAYS as u64 * 24, "{name}");
        assert_eq!(report.containers, truth.containers.len() as u64, "{name}");

        // The same cluster, unlabelled on a Prometheus of its own, stores the same.
        let reference = sqlite(&dir, name).await;
        collector::collect(
            &client(alone.url()),
            reference.as_ref(),
            &options(name, fx.from(), fx.end),
        )
        .await
        .unwrap();
        assert_same(
            &dump(store.as_ref(), name).await,
            &dump(reference.as_ref(), name).await,
            name,
        );
    }

    let all = store.containers(None).await.unwrap();
    for (name, truth, _) in fx.clusters() {
        let keys: BTreeSet<[String; 4]> = all
            .iter()
            .filter(|c| c.key.cluster == name)
            .map(|c| {
                [
                    c.key.namespace.clone(),
                    c.key.kind.clone(),
                    c.key.workload.clone(),
                    c.key.container.clone(),
                ]
            })
            .collect();
        assert_eq!(keys, truth_keys(truth), "workload containers of {name}");
    }
    assert_eq!(
        all.len(),
        fx.east.containers.len() + fx.west.containers.len(),
        "every container belongs to east or west: {:?}",
        all.iter().map(|c| c.key.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_works_on_every_cluster_it_discovers_by_label() {
    let fx = fixture().await;
    let dir = TempDir::new("rs-multicluster-label-cli").unwrap();
    let config = dir.path().join("rightsizer.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\nprometheus_url = \"{}\"\n\n[collector]\ncluster_label = \"{LABEL}\"\n",
            dir.path().join("rs.db").display(),
            fx.shared.url()
        ),
    )
    .unwrap();

    let until = fx.end.to_string();
    let out = rightsizer(&config, &["collect", "--since", "48h", "--until", &until]).await;
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per cluster: {stdout}");
    for ((name, truth, _), line) in fx.clusters().into_iter().zip(&lines) {
        let want = format!(
            "collected {} hours (0 already collected) for cluster {name} via remote-read: {} workload containers,",
            DAYS * 24,
            truth.containers.len()
        );
        assert!(
            line.starts_with(&want),
            "{line:?} does not start with {want:?}"
        );
    }

    let recs = recommendations_of(&rightsizer(&config, &["recommend", "--output", "json"]).await);
    for (name, truth, _) in fx.clusters() {
        check_recommendations(&recs, name, truth);
    }
    assert_eq!(
        recs.len(),
        fx.east.containers.len() + fx.west.containers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_each_on_its_own_prometheus() {
    let fx = fixture().await;
    let dir = TempDir::new("rs-multicluster-two").unwrap();
    let config = dir.path().join("rightsizer.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\n\n[[clusters]]\nname = \"a\"\nprometheus_url = \"{}\"\n\n[[clusters]]\nname = \"b\"\nprometheus_url = \"{}\"\n",
            dir.path().join("rs.db").display(),
            fx.east_alone.url(),
            fx.west_alone.url()
        ),
    )
    .unwrap();
    let (a, b) = (&fx.east, &fx.west);

    let until = fx.end.to_string();
    let collected =
        stdout_of(&rightsizer(&config, &["collect", "--since", "48h", "--until", &until]).await);
    let lines: Vec<&str> = collected.lines().collect();
    assert_eq!(lines.len(), 2, "{collected}");
    assert!(
        lines[0].contains(" for cluster a via remote-read: "),
        "{collected}"
    );
    assert!(
        lines[1].contains(" for cluster b via remote-read: "),
        "{collected}"
    );

    let analyzed = stdout_of(&rightsizer(&config, &["analyze"]).await);
    let lines: Vec<&str> = analyzed.lines().collect();
    assert_eq!(lines.len(), 2, "{analyzed}");
    for (line, (name, truth)) in lines.iter().zip([("a", a), ("b", b)]) {
        let want = format!(
            "analyzed {} workload containers of cluster {name}:",
            truth.containers.len()
        );
        assert!(
            line.starts_with(&want),
            "{line:?} does not start with {want:?}"
        );
    }

    let recs = recommendations_of(&rightsizer(&config, &["recommend", "--output", "json"]).await);
    check_recommendations(&recs, "a", a);
    check_recommendations(&recs, "b", b);
    assert_eq!(recs.len(), a.containers.len() + b.containers.len());

    let only_a = recommendations_of(
        &rightsizer(
            &config,
            &["--cluster", "a", "recommend", "--output", "json"],
        )
        .await,
    );
    check_recommendations(&only_a, "a", a);
    assert_eq!(only_a.len(), a.containers.len(), "only cluster a");

    let unknown = rightsizer(&config, &["--cluster", "zzz", "recommend"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: cluster \"zzz\" is not among the configured [[clusters]]: a, b\n"
    );

    let checkout = TempDir::new("rs-multicluster-gitops").unwrap();
    let repo = checkout.path().to_str().unwrap();
    let gitops = rightsizer(&config, &["gitops", "--repo", repo]).await;
    assert_eq!(gitops.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&gitops.stderr),
        "error: several clusters are configured: choose the one this repository deploys with --cluster\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_groups_planned_ahead_store_what_one_query_would() {
    let fx = fixture().await;
    let prom = client(fx.east_alone.url());
    let dir = TempDir::new("rs-multicluster-groups").unwrap();
    let (split, whole) = (sqlite(&dir, "split").await, sqlite(&dir, "whole").await);

    // Every namespace of the demo cluster has more than 5 series in a day's chunk: such a
    // chunk is asked for namespace by namespace. A chunk shorter than a day (at the edges
    // of the window, which moves with the clock) takes proportionally more series per
    // group and may be asked whole.
    let grouped = CollectOptions {
        max_series_per_query: 5,
        ..options("east", fx.from(), fx.end)
    };
    let report = collector::collect(&prom, split.as_ref(), &grouped)
        .await
        .unwrap();
    assert!(report.chunks > 1, "{report:?}");
    assert!(report.split_chunks >= report.chunks - 2, "{report:?}");

    let unsplit = CollectOptions {
        max_series_per_query: 0,
        ..options("east", fx.from(), fx.end)
    };
    let one = collector::collect(&prom, whole.as_ref(), &unsplit)
        .await
        .unwrap();
    assert!(report.queries > one.queries, "{report:?} vs {one:?}");

    // A limit each namespace fits but the cluster does not: the window's chunks are read
    // at once over remote read (a span), namespace group by namespace group.
    let hours: Vec<i64> = (fx.from()..fx.end).step_by(3600).collect();
    let q = ChunkQueries::new(&hours, STEP_SECS, &Scope::default());
    let sizes = collector::parse_sizes(&prom.query(&q.sizes, q.time).await.unwrap().series);
    let biggest = sizes.iter().map(|(_, n)| *n).max().unwrap();
    assert!(biggest < sizes.iter().map(|(_, n)| n).sum(), "{sizes:?}");
    let span_dir = sqlite(&dir, "span").await;
    let spanned = collector::collect(
        &prom,
        span_dir.as_ref(),
        &CollectOptions {
            max_series_per_query: biggest,
            ..options("east", fx.from(), fx.end)
        },
    )
    .await
    .unwrap();
    assert_eq!(spanned.source, "remote-read");
    assert_eq!(spanned.split_chunks, spanned.chunks, "{spanned:?}");
    assert!(
        spanned.queries < report.queries,
        "{spanned:?} vs {report:?}"
    );

    assert_split_matches_one(
        (report, split.as_ref()),
        (one.clone(), whole.as_ref()),
        "east",
        "split by namespace",
    )
    .await;
    assert_split_matches_one(
        (spanned, span_dir.as_ref()),
        (one, whole.as_ref()),
        "east",
        "a span read by namespace group",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_hour_in_namespace_groups_stores_what_one_query_would() {
    use rightsizer::config::CollectorSource;
    let fx = fixture().await;
    let prom = client(fx.east_alone.url());
    let dir = TempDir::new("rs-multicluster-hour-groups").unwrap();
    // The scheduled run's case: the window's last hour alone is missing, one chunk in one
    // piece, so its namespace groups go `concurrency` at a time (a limit of one series a
    // day is 24 series a group for an hour).
    for (source, name) in [
        (CollectorSource::QueryRange, "query-range"),
        (CollectorSource::RemoteRead, "remote-read"),
    ] {
        let (split, whole) = (
            sqlite(&dir, &format!("{name}-split")).await,
            sqlite(&dir, &format!("{name}-whole")).await,
        );
        let hour = |max_series_per_query| CollectOptions {
            max_series_per_query,
            source,
            ..options("east", fx.end - 3600, fx.end)
        };
        let report = collector::collect(&prom, split.as_ref(), &hour(1))
            .await
            .unwrap();
        assert_eq!((report.chunks, report.split_chunks), (1, 1), "{report:?}");
        let one = collector::collect(&prom, whole.as_ref(), &hour(0))
            .await
            .unwrap();
        assert_eq!(report.source, name);
        // Sizing, facts and the hour's owners once (a run this short asks for its owners
        // with its sizing), then state, CPU and memory per group.
        assert_eq!(one.queries, 3 + 3, "{one:?}");
        assert!(
            report.queries >= 3 + 3 * 3 && report.queries % 3 == 0,
            "at least three groups of three requests: {report:?} vs {one:?}"
        );
        assert_eq!(one.split_chunks, 0, "{one:?}");
        let requests_aside = |r: &CollectReport| CollectReport {
            queries: 0,
            split_chunks: 0,
            remote_read_bytes: 0,
            remote_read_samples: 0,
            ..r.clone()
        };
        assert_eq!(requests_aside(&report), requests_aside(&one));
        // Not `assert_same`: a CronJob that did not run in the hour is known, without usage.
        let (got, want) = (
            dump(split.as_ref(), "east").await,
            dump(whole.as_ref(), "east").await,
        );
        let with_usage = want.usage.values().filter(|u| !u.is_empty()).count();
        assert!(
            with_usage > 10,
            "{name}: {with_usage} containers with usage"
        );
        assert_eq!(got.containers, want.containers, "{name}: containers");
        assert_eq!(got.workloads, want.workloads, "{name}: workloads");
        for (key, rows) in &want.usage {
            assert!(got.usage.get(key) == Some(rows), "{name}: usage of {key}");
        }
        assert!(got.signals == want.signals, "{name}: signals");
    }
}

/// `peakSamples` of a query (`stats=all`): the count `--query.max-samples` is held against.
async fn peak_samples(http: &reqwest::Client, base: &str, query: Query<'_>) -> u64 {
    let (path, params) = match query {
        Query::Instant(promql, time) => (
            "query",
            vec![("query", promql.to_string()), ("time", time.to_string())],
        ),
        Query::Range(r) => (
            "query_range",
            vec![
                ("query", r.promql.clone()),
                ("start", r.start.to_string()),
                ("end", r.end.to_string()),
                ("step", r.step_secs.to_string()),
            ],
        ),
    };
    let answer: serde_json::Value = http
        .post(format!("{base}/api/v1/{path}"))
        .form(&[params, vec![("stats", "all".into())]].concat())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["data"]["stats"]["samples"]["peakSamples"]
        .as_u64()
        .unwrap_or_else(|| panic!("no peakSamples in {answer}"))
}

/// Query requests a Prometheus has answered, refusals included (its own
/// `prometheus_http_requests_total`).
async fn queries_answered(http: &reqwest::Client, base: &str) -> u64 {
    support::prometheus::self_metrics(http, base)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && (l.contains("handler=\"/api/v1/query\"")
                    || l.contains("handler=\"/api/v1/query_range\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

enum Query<'a> {
    Instant(&'a str, i64),
    Range(&'a RangeQuery),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_prometheus_refuses_for_its_size_is_fetched_by_namespace_group() {
    // Namespaces of similar size, so one namespace's answers are well below the cluster's.
    // In the demo cluster alone, `shop` holds over half the containers, and its state
    // answer (about ten series per container at a 5-minute step) outgrows the whole
    // cluster's CPU answer: no limit would refuse the one and pass the other. Two copies
    // of the demo set put each namespace under a quarter of the whole. Whole grid cells
    // only: a short chunk's unsplit answers would fit under the limit.
    let end = collector::cell_of(chrono::Utc::now().timestamp(), CHUNK_HOURS);
    let start = end - 86_400;
    let dir = TempDir::new("rs-multicluster-refused").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let input = dir.path().join("metrics.om");
    tokio::task::spawn_blocking({
        let (input, data) = (input.clone(), data.clone());
        move || {
            let cfg = SynthConfig {
                scale: 2,
                ..SynthConfig::new(21, start, end)
            };
            let file = BufWriter::with_capacity(1 << 20, File::create(&input).unwrap());
            synth::generate(&cfg, file).unwrap();
            prom::backfill(&input, &data, prom::max_block_duration_for(end - start)).unwrap();
            std::fs::remove_file(&input).unwrap();
        }
    })
    .await
    .unwrap();
    let limited_dir = TempDir::new("rs-multicluster-limited").unwrap();
    prom::copy_blocks(&data, &limited_dir.path().join("data")).unwrap();
    let normal = tokio::task::spawn_blocking(move || Prometheus::serve(dir).unwrap())
        .await
        .unwrap();
    let prom = client(normal.url());

    // The limit sits halfway between the biggest answer of one namespace (any query of any
    // chunk, plus the sizing and facts queries, which are never split) and the smallest
    // unsplit CPU or memory answer, both measured on this very history: Prometheus reports
    // the samples a query held at once, the count it holds against --query.max-samples.
    // For seed 21 that is about 23,000 (shop's state answer) against about 35,000, so the
    // limit is near 29,000. Halving then has to go two levels deep for shop and shop-2; the
    // unsplit state answer (over 60,000) is the one refused first.
    let http = reqwest::Client::new();
    let hours: Vec<i64> = (start..end).step_by(3600).collect();
    let chunks = collector::plan(&hours, CHUNK_HOURS);
    let (mut one_namespace, mut unsplit) = (0, u64::MAX);
    let mut all_queries = Vec::new();
    for hours in &chunks {
        let q = ChunkQueries::new(hours, STEP_SECS, &Scope::default());
        let sizes = collector::parse_sizes(&prom.query(&q.sizes, q.time).await.unwrap().series);
        assert!(sizes.len() >= 8, "two copies of four namespaces: {sizes:?}");
        for query in [
            Query::Instant(&q.sizes, q.time),
            Query::Instant(&q.facts, q.time),
        ] {
            one_namespace = one_namespace.max(peak_samples(&http, normal.url(), query).await);
        }
        for r in [&q.cpu, &q.memory] {
            unsplit = unsplit.min(peak_samples(&http, normal.url(), Query::Range(r)).await);
        }
        for (namespace, _) in &sizes {
            let scope = Scope::default().with_namespaces(vec![namespace.clone()]);
            let n = ChunkQueries::new(hours, STEP_SECS, &scope);
            let owners = peak_samples(&http, normal.url(), Query::Instant(&n.owners, n.time));
            one_namespace = one_namespace.max(owners.await);
            for r in n.ranges() {
                one_namespace =
                    one_namespace.max(peak_samples(&http, normal.url(), Query::Range(r)).await);
            }
        }
        all_queries.push(q);
    }
    assert!(
        one_namespace < unsplit,
        "one namespace needs {one_namespace} samples, the unsplit CPU or memory answer only {unsplit}: no limit tells them apart"
    );
    let max_samples = (one_namespace + unsplit) / 2;
    let limited = tokio::task::spawn_blocking(move || {
        Prometheus::serve_with(limited_dir, &[format!("--query.max-samples={max_samples}")])
            .unwrap()
    })
    .await
    .unwrap();
    let refusing = client(limited.url());
    for q in &all_queries {
        for r in [&q.cpu, &q.memory] {
            match refusing
                .query_range(&r.promql, r.start, r.end, r.step_secs)
                .await
            {
                Err(PromError::Api {
                    error_type,
                    message,
                    ..
                }) => {
                    assert_eq!(error_type, "execution");
                    assert!(
                        message.contains("would load too many samples into memory"),
                        "{message}"
                    );
                }
                other => panic!(
                    "with --query.max-samples={max_samples}, {} at {} was not refused for its size: {:?}",
                    r.promql,
                    r.start,
                    other.map(|a| a.series.len())
                ),
            }
        }
    }

    // Splitting only when refused; the answers are those of one query on a server
    // without the limit.
    // Range queries: Prometheus' sample limit applies to PromQL, not to streamed remote read.
    let opts = CollectOptions {
        max_series_per_query: 0,
        source: rightsizer::config::CollectorSource::QueryRange,
        ..options("refused", start, end)
    };
    let store_dir = TempDir::new("rs-multicluster-refused-store").unwrap();
    let (split, whole) = (
        sqlite(&store_dir, "split").await,
        sqlite(&store_dir, "whole").await,
    );
    let answered_before = queries_answered(&http, limited.url()).await;
    let report = collector::collect(&refusing, split.as_ref(), &opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "collection with --query.max-samples={max_samples} failed: {e}\n{}",
                limited.log()
            )
        });
    assert_eq!(report.chunks, chunks.len() as u64, "{report:?}");
    assert_eq!(report.split_chunks, report.chunks, "{report:?}");
    assert_eq!(
        report.queries,
        queries_answered(&http, limited.url()).await - answered_before,
        "the report counts the refused queries too"
    );
    let one = collector::collect(&prom, whole.as_ref(), &opts)
        .await
        .unwrap();
    assert_split_matches_one(
        (report, split.as_ref()),
        (one, whole.as_ref()),
        "refused",
        "split after a refusal",
    )
    .await;
}
