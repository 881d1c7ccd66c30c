//! One scenario suite, run against both store backends: a fresh SQLite file and a fresh Postgres database.
//!
//! Postgres comes from `RIGHTSIZER_TEST_POSTGRES_URL` (default `postgres://root@127.0.0.1:5432/postgres`);
//! each test creates its own throwaway database there and drops it afterwards, so tests run in parallel.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rightsizer::model::{
    Chunk, Confidence, ContainerKey, ContainerObservation, Evidence, PdbInfo, Recommendation,
    Resource, Resources, Severity, SignalHour, Status, UsageHour, WorkloadInfo,
};
use rightsizer::runs::{RunKind, RunStatus};
use rightsizer::sketch::Sketch;
use rightsizer::store::{
    self, NewRun, RecommendationFilter, ReportListing, RunOutcome, RunStart, Store, StoreError,
    StoredReport, StoredReportInput,
};
use serde_json::json;
use sqlx::Connection;

const HOUR: i64 = 3600;
/// 2024-01-01T00:00:00Z, hour-aligned.
const T0: i64 = 1_704_067_200;

// ---------------------------------------------------------------------------------------------
// Backends

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    format!(
        "rs_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn postgres_admin_url() -> String {
    std::env::var("RIGHTSIZER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{database}{query}")
}

/// A throwaway database that is removed when the scenario ends, passed or not.
enum Scratch {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Scratch {
    async fn sqlite() -> (Self, String) {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name()));
        let url = format!("sqlite://{}", path.display());
        (Scratch::Sqlite(path), url)
    }

    async fn postgres() -> (Self, String) {
        let admin_url = postgres_admin_url();
        let name = unique_name();
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("Postgres for the store tests is not reachable at {admin_url} (set RIGHTSIZER_TEST_POSTGRES_URL): {e}")
        });
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        (Scratch::Postgres { admin_url, name }, url)
    }

    /// Best effort: a leftover scratch database or file is harmless.
    async fn remove(self) {
        match self {
            Scratch::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Scratch::Postgres { admin_url, name } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            }
        }
    }
}

/// Direct access to a store's database, for planting what the `Store` trait can't write.
#[derive(Clone)]
enum Backdoor {
    Sqlite(String),
    Postgres(String),
}

impl Backdoor {
    /// Runs the statement written for this backend.
    async fn execute(&self, sqlite: &str, postgres: &str) {
        match self {
            Backdoor::Sqlite(url) => {
                let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query(sqlite).execute(&mut db).await.unwrap();
                db.close().await.unwrap();
            }
            Backdoor::Postgres(url) => {
                let mut db = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(postgres).execute(&mut db).await.unwrap();
                db.close().await.unwrap();
            }
        }
    }
}

/// Runs `scenario` on a fresh, migrated store of `backend`, then removes the database.
async fn run_with_backdoor<F, Fut>(backend: &str, scenario: F)
where
    F: FnOnce(Arc<dyn Store>, Backdoor) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (scratch, url) = match backend {
        "sqlite" => Scratch::sqlite().await,
        "postgres" => Scratch::postgres().await,
        other => unreachable!("no backend {other}"),
    };
    let backdoor = match backend {
        "sqlite" => Backdoor::Sqlite(url.clone()),
        _ => Backdoor::Postgres(url.clone()),
    };
    let outcome = match store::connect(&url).await {
        Ok(store) => {
            assert_eq!(store.backend(), backend);
            // On its own task so a failed assertion still lets us drop the database below.
            tokio::spawn(scenario(store, backdoor)).await
        }
        Err(e) => {
            scratch.remove().await;
            panic!("cannot open the {backend} test store: {e}");
        }
    };
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Runs a scenario that only needs the store.
async fn run<F, Fut>(backend: &str, scenario: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_with_backdoor(backend, |store, _| scenario(store)).await;
}

/// Defines `<scenario>::sqlite` and `<scenario>::postgres` for each scenario function, run by `$runner`.
macro_rules! contract {
    ($runner:ident: $($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$runner("sqlite", super::$scenario).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$runner("postgres", super::$scenario).await;
                }
            }
        )*
    };
}

contract!(
    run: migrating_twice_is_harmless,
    a_chunk_reads_back_as_written,
    rewriting_a_chunk_replaces_instead_of_adding,
    only_a_newer_observation_replaces_resources,
    usage_without_an_observation_creates_a_container,
    duplicates_inside_one_chunk_keep_the_last,
    a_failing_chunk_writes_nothing,
    big_chunks_are_written_in_batches,
    recommendations_are_replaced_per_cluster_and_filtered,
    reports_are_saved_listed_and_pruned,
    scheduled_jobs_run_once_per_period,
    old_finished_runs_are_pruned,
    changes_are_recorded_listed_newest_first_and_filtered,
    one_recommendation_is_replaced_alone,
    oom_kills_keep_the_larger_count_per_hour,
    hours_written_one_at_a_time_read_back_as_written_at_once,
    groups_of_one_transaction_read_back_as_written_at_once,
);
contract!(
    run_with_backdoor: corrupt_rows_are_reported,
    corrupt_reports_are_reported,
    collection_claims_are_exclusive_between_processes,
    span_claims_hold_their_cells_together,
    runs_are_shared_and_one_of_a_kind_runs_between_processes,
    abandoned_runs_stop_blocking_when_their_lease_expires,
    concurrent_starts_let_exactly_one_run,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn key(
    cluster: &str,
    namespace: &str,
    kind: &str,
    workload: &str,
    container: &str,
) -> ContainerKey {
    ContainerKey {
        cluster: cluster.into(),
        namespace: namespace.into(),
        kind: kind.into(),
        workload: workload.into(),
        container: container.into(),
    }
}

fn sketch_of(values: &[f64]) -> Sketch {
    let mut sketch = Sketch::new();
    for &value in values {
        sketch.insert(value).expect("valid sample");
    }
    sketch
}

fn usage(key: &ContainerKey, resource: Resource, hour_start: i64, values: &[f64]) -> UsageHour {
    UsageHour {
        key: key.clone().into(),
        resource,
        hour_start,
        sketch: sketch_of(values),
    }
}

fn observation(
    key: &ContainerKey,
    cpu_request_millicores: i64,
    memory_request_bytes: i64,
    seen_at: i64,
) -> ContainerObservation {
    ContainerObservation {
        key: key.clone(),
        resources: Resources {
            cpu_request_millicores: Some(cpu_request_millicores),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(memory_request_bytes),
            memory_limit_bytes: Some(2 * memory_request_bytes),
        },
        seen_at,
    }
}

fn api() -> ContainerKey {
    key("prod", "shop", "Deployment", "api", "app")
}

fn sidecar() -> ContainerKey {
    key("prod", "shop", "Deployment", "api", "envoy")
}

/// Two hours of one cluster: two containers, CPU and memory, and a third hour with no usage at all.
fn two_hours() -> Chunk {
    let (api, sidecar) = (api(), sidecar());
    Chunk {
        signals: vec![SignalHour {
            key: api.clone(),
            hour_start: T0 + HOUR,
            restarts: 2,
            oom_kills: 1,
            cfs_periods: 6000.0,
            cfs_throttled_periods: 1500.0,
        }],
        workloads: vec![WorkloadInfo {
            key: api.workload_key(),
            spec_replicas: Some(3),
            hpa: None,
            pdb: Some(PdbInfo {
                name: "api".into(),
                disruptions_allowed: Some(0),
                expected_pods: Some(3),
                matched_by: "name".into(),
            }),
            annotations: [("rightsizer.io/margin".to_string(), "0.2".to_string())].into(),
            labels: [("app".to_string(), "api".to_string())].into(),
            from_kubernetes_api: false,
            seen_at: T0 + 2 * HOUR,
        }],
        cluster: "prod".into(),
        hours: vec![T0, T0 + HOUR, T0 + 2 * HOUR],
        containers: vec![
            observation(&api, 250, 256 << 20, T0 + HOUR),
            observation(&sidecar, 50, 64 << 20, T0 + HOUR),
        ],
        usage: vec![
            usage(&api, Resource::Cpu, T0, &[0.1, 0.2, 0.25, 0.0]),
            usage(&api, Resource::Cpu, T0 + HOUR, &[0.3, 0.5]),
            usage(&api, Resource::Memory, T0, &[1.5e8, 1.6e8]),
            usage(&api, Resource::Memory, T0 + HOUR, &[1.7e8]),
            usage(&sidecar, Resource::Cpu, T0, &[0.01]),
        ],
    }
}

/// The rows of `chunk` for `key`, in the order [`Store::usage`] promises.
fn expected_usage(chunk: &Chunk, key: &ContainerKey) -> Vec<UsageHour> {
    let mut rows: Vec<UsageHour> = chunk
        .usage
        .iter()
        .filter(|u| &*u.key == key)
        .cloned()
        .collect();
    rows.sort_by_key(|u| (u.resource, u.hour_start));
    rows
}

fn recommendation(
    key: &ContainerKey,
    cpu_request_millicores: i64,
    computed_at: i64,
) -> Recommendation {
    Recommendation {
        key: key.clone(),
        status: Status::Ok,
        current: Resources {
            cpu_request_millicores: Some(1000),
            ..Resources::default()
        },
        recommended: Resources {
            cpu_request_millicores: Some(cpu_request_millicores),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(300 << 20),
            memory_limit_bytes: Some(300 << 20),
        },
        confidence: Confidence::High,
        confidence_score: 0.9,
        reason: "p95 CPU plus 15%".into(),
        strategy: "percentile".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(212.5),
            memory_peak_bytes: Some(2.5e8),
            samples: 2016,
            memory_samples: 2016,
            history_hours: 168,
            window_hours: 168,
            margin: 0.15,
            rules: vec!["request = p95 × 1.15".into()],
            ..Evidence::default()
        },
        computed_at,
        severity: Severity::Info,
        findings: Vec::new(),
        backtest: None,
        impact: None,
        hpa: None,
    }
}

fn insufficient(key: &ContainerKey, computed_at: i64) -> Recommendation {
    Recommendation {
        status: Status::InsufficientData,
        recommended: Resources::default(),
        confidence: Confidence::Low,
        confidence_score: 0.1,
        reason: "only 3 hours of history".into(),
        ..recommendation(key, 0, computed_at)
    }
}

/// Everything a store holds about `cluster`, to compare before and after.
async fn snapshot(
    store: &dyn Store,
    cluster: &str,
) -> (
    Vec<ContainerObservation>,
    Vec<Vec<UsageHour>>,
    Vec<i64>,
    Option<i64>,
) {
    let containers = store.containers(Some(cluster)).await.unwrap();
    let mut usage = Vec::new();
    for container in &containers {
        usage.push(
            store
                .usage(&container.key, i64::MIN, i64::MAX)
                .await
                .unwrap(),
        );
    }
    let hours = store
        .collected_hours(cluster, i64::MIN, i64::MAX)
        .await
        .unwrap();
    let watermark = store.watermark(cluster).await.unwrap();
    (containers, usage, hours, watermark)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn migrating_twice_is_harmless(store: Arc<dyn Store>) {
    // `connect` migrated once already; start-up and `rightsizer migrate` may both run it again.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    store.write_chunk(&two_hours()).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.containers(None).await.unwrap().len(), 2);
}

async fn a_chunk_reads_back_as_written(store: Arc<dyn Store>) {
    assert_eq!(store.watermark("prod").await.unwrap(), None);
    assert!(store.containers(None).await.unwrap().is_empty());

    let chunk = two_hours();
    store.write_chunk(&chunk).await.unwrap();

    let mut expected = chunk.containers.clone();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(store.containers(Some("prod")).await.unwrap(), expected);
    assert_eq!(store.containers(None).await.unwrap(), expected);
    assert!(store.containers(Some("staging")).await.unwrap().is_empty());

    // Sketches come back equal, so every percentile computed from them does too.
    let api_usage = store.usage(&api(), T0, T0 + 2 * HOUR).await.unwrap();
    assert_eq!(api_usage, expected_usage(&chunk, &api()));
    assert_eq!(api_usage[0].sketch.count(), 4);
    assert_eq!(api_usage[0].sketch.max(), 0.25);
    assert_eq!(
        store.usage(&sidecar(), T0, T0 + 2 * HOUR).await.unwrap(),
        expected_usage(&chunk, &sidecar())
    );

    // Signals and workload facts come back as written; an older observation doesn't replace them.
    assert_eq!(
        store.signals(&api(), T0, T0 + 3 * HOUR).await.unwrap(),
        chunk.signals
    );
    assert!(store
        .signals(&api(), T0, T0 + HOUR)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.workloads(Some("prod")).await.unwrap(),
        chunk.workloads
    );
    let mut older = chunk.workloads[0].clone();
    older.seen_at -= HOUR;
    older.spec_replicas = Some(1);
    store
        .write_chunk(&Chunk {
            cluster: "prod".into(),
            workloads: vec![older],
            ..Chunk::default()
        })
        .await
        .unwrap();
    assert_eq!(store.workloads(None).await.unwrap(), chunk.workloads);

    // `[from, to)`: the end is exclusive.
    let first_hour = store.usage(&api(), T0, T0 + HOUR).await.unwrap();
    assert_eq!(
        first_hour
            .iter()
            .map(|u| (u.resource, u.hour_start))
            .collect::<Vec<_>>(),
        [(Resource::Cpu, T0), (Resource::Memory, T0)]
    );
    assert!(store
        .usage(
            &key("prod", "shop", "Deployment", "api", "nope"),
            T0,
            T0 + HOUR
        )
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        store
            .collected_hours("prod", T0, T0 + 3 * HOUR)
            .await
            .unwrap(),
        [T0, T0 + HOUR, T0 + 2 * HOUR]
    );
    assert_eq!(
        store
            .collected_hours("prod", T0 + HOUR, T0 + 2 * HOUR)
            .await
            .unwrap(),
        [T0 + HOUR]
    );
    assert!(store
        .collected_hours("staging", T0, T0 + 3 * HOUR)
        .await
        .unwrap()
        .is_empty());
    // The hour without usage still counts as collected.
    assert_eq!(store.watermark("prod").await.unwrap(), Some(T0 + 3 * HOUR));
    assert_eq!(store.watermark("staging").await.unwrap(), None);
}

/// The hour `hour` of `chunk` alone, as an incremental run writes it.
fn hour_of(chunk: &Chunk, hour: i64) -> Chunk {
    Chunk {
        hours: vec![hour],
        usage: chunk
            .usage
            .iter()
            .filter(|u| u.hour_start == hour)
            .cloned()
            .collect(),
        signals: chunk
            .signals
            .iter()
            .filter(|s| s.hour_start == hour)
            .cloned()
            .collect(),
        ..chunk.clone()
    }
}

/// [`two_hours`] with signals in its first hour too.
fn two_hours_signalled() -> Chunk {
    let mut chunk = two_hours();
    chunk.signals.push(SignalHour {
        key: api(),
        hour_start: T0,
        restarts: 1,
        oom_kills: 0,
        cfs_periods: 3000.0,
        cfs_throttled_periods: 10.0,
    });
    chunk
}

/// The store reads back `chunk`'s usage of both containers and signals of `api`.
async fn assert_reads_back(store: &dyn Store, chunk: &Chunk) {
    for key in [api(), sidecar()] {
        let stored = store.usage(&key, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(stored, expected_usage(chunk, &key), "{key}");
    }
    let mut expected = chunk.signals.clone();
    expected.sort_by_key(|s| s.hour_start);
    let stored = store.signals(&api(), i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(stored, expected);
}

/// Each new hour is appended to its day rows in SQL (every hour stored in them is earlier),
/// an hour written again or out of order merges with them: either way the rows read back as
/// the whole chunk written at once.
async fn hours_written_one_at_a_time_read_back_as_written_at_once(store: Arc<dyn Store>) {
    let mut chunk = two_hours_signalled();
    for &hour in &chunk.hours {
        store.write_chunk(&hour_of(&chunk, hour)).await.unwrap();
    }
    assert_reads_back(&*store, &chunk).await;

    // The first hour again, with other numbers: merged, in its place.
    chunk.usage[0] = usage(&api(), Resource::Cpu, T0, &[0.9]);
    store.write_chunk(&hour_of(&chunk, T0)).await.unwrap();
    assert_reads_back(&*store, &chunk).await;

    // A later hour after those, appended again.
    chunk.hours.push(T0 + 3 * HOUR);
    chunk
        .usage
        .push(usage(&api(), Resource::Cpu, T0 + 3 * HOUR, &[0.4]));
    chunk
        .usage
        .push(usage(&sidecar(), Resource::Memory, T0 + 3 * HOUR, &[6e7]));
    chunk.signals.push(SignalHour {
        key: api(),
        hour_start: T0 + 3 * HOUR,
        restarts: 0,
        oom_kills: 0,
        cfs_periods: 100.0,
        cfs_throttled_periods: 0.0,
    });
    store
        .write_chunk(&hour_of(&chunk, T0 + 3 * HOUR))
        .await
        .unwrap();
    assert_reads_back(&*store, &chunk).await;
}

/// The namespace groups of a new hour written one after another into one transaction
/// ([`Store::begin_parts`], as a scheduled run writes its hour) are each appended to their
/// day rows, though the first group marked the hour collected; a row the transaction wrote
/// already merges the hour again instead (a second append would hold it twice).
async fn groups_of_one_transaction_read_back_as_written_at_once(store: Arc<dyn Store>) {
    let mut chunk = two_hours_signalled();
    // The second group's container: an hour appended to its CPU row, a memory row new.
    chunk
        .usage
        .push(usage(&sidecar(), Resource::Cpu, T0 + HOUR, &[0.02]));
    chunk
        .usage
        .push(usage(&sidecar(), Resource::Memory, T0 + HOUR, &[6e7]));
    let of = |chunk: &Chunk, key: &ContainerKey| Chunk {
        usage: chunk
            .usage
            .iter()
            .filter(|u| &*u.key == key)
            .cloned()
            .collect(),
        signals: chunk
            .signals
            .iter()
            .filter(|s| &s.key == key)
            .cloned()
            .collect(),
        ..chunk.clone()
    };
    store.write_chunk(&hour_of(&chunk, T0)).await.unwrap();

    let new = T0 + HOUR;
    let mut open = store.begin_parts(&[new]).await.unwrap();
    open.write(&[of(&hour_of(&chunk, new), &api())])
        .await
        .unwrap();
    open.write(&[of(&hour_of(&chunk, new), &sidecar())])
        .await
        .unwrap();
    // The first group's hour again, with other numbers, in the same transaction.
    let again = chunk
        .usage
        .iter()
        .position(|u| *u.key == api() && u.hour_start == new)
        .expect("api has usage in the new hour");
    chunk.usage[again].sketch = sketch_of(&[0.7]);
    open.write(&[of(&hour_of(&chunk, new), &api())])
        .await
        .unwrap();
    open.commit().await.unwrap();

    let mut expected = hour_of(&chunk, T0);
    let later = hour_of(&chunk, new);
    expected.usage.extend(later.usage);
    expected.signals.extend(later.signals);
    assert_reads_back(&*store, &expected).await;
    assert_eq!(
        store
            .collected_hours("prod", T0, T0 + 3 * HOUR)
            .await
            .unwrap(),
        vec![T0, new]
    );
}

async fn rewriting_a_chunk_replaces_instead_of_adding(store: Arc<dyn Store>) {
    let chunk = two_hours();
    store.write_chunk(&chunk).await.unwrap();
    let first = snapshot(&*store, "prod").await;
    store.write_chunk(&chunk).await.unwrap();
    assert_eq!(snapshot(&*store, "prod").await, first);

    // Re-collecting the window with different numbers replaces the summary; counts are not added.
    let mut recollected = chunk.clone();
    recollected.usage[0] = usage(&api(), Resource::Cpu, T0, &[0.9]);
    store.write_chunk(&recollected).await.unwrap();
    let cpu = store.usage(&api(), T0, T0 + HOUR).await.unwrap();
    assert_eq!(cpu[0].resource, Resource::Cpu);
    assert_eq!(cpu[0].sketch, sketch_of(&[0.9]));
    assert_eq!(cpu[0].sketch.count(), 1);
    assert_eq!(
        store
            .collected_hours("prod", T0, T0 + 3 * HOUR)
            .await
            .unwrap()
            .len(),
        3
    );
}

async fn only_a_newer_observation_replaces_resources(store: Arc<dyn Store>) {
    let api = api();
    let at = |seen_at: i64, cpu_request_millicores: i64| Chunk {
        signals: Vec::new(),
        workloads: Vec::new(),
        cluster: "prod".into(),
        hours: vec![seen_at - seen_at.rem_euclid(HOUR)],
        containers: vec![observation(
            &api,
            cpu_request_millicores,
            256 << 20,
            seen_at,
        )],
        usage: vec![],
    };

    store.write_chunk(&at(T0 + 10 * HOUR, 500)).await.unwrap();
    // A backfill of an older window must not roll the spec back.
    store.write_chunk(&at(T0 + 2 * HOUR, 100)).await.unwrap();
    let now = store.containers(Some("prod")).await.unwrap();
    assert_eq!(now, [observation(&api, 500, 256 << 20, T0 + 10 * HOUR)]);

    // The same instant again, and then a newer one, do replace it.
    store.write_chunk(&at(T0 + 10 * HOUR, 600)).await.unwrap();
    assert_eq!(
        store.containers(None).await.unwrap()[0]
            .resources
            .cpu_request_millicores,
        Some(600)
    );
    let mut unset = at(T0 + 11 * HOUR, 0);
    unset.containers[0].resources = Resources::default();
    store.write_chunk(&unset).await.unwrap();
    assert_eq!(store.containers(None).await.unwrap(), unset.containers);
}

async fn usage_without_an_observation_creates_a_container(store: Arc<dyn Store>) {
    let orphan = key("prod", "batch", "CronJob", "report", "main");
    let chunk = Chunk {
        signals: Vec::new(),
        workloads: Vec::new(),
        cluster: "prod".into(),
        hours: vec![T0, T0 + HOUR, T0 + 2 * HOUR],
        containers: vec![],
        usage: vec![
            usage(&orphan, Resource::Cpu, T0 + 2 * HOUR, &[1.0]),
            usage(&orphan, Resource::Cpu, T0, &[2.0]),
            usage(&orphan, Resource::Memory, T0 + HOUR, &[3.0e9]),
        ],
    };
    store.write_chunk(&chunk).await.unwrap();
    assert_eq!(
        store.containers(Some("prod")).await.unwrap(),
        [ContainerObservation {
            key: orphan.clone(),
            resources: Resources::default(),
            seen_at: T0 + 2 * HOUR,
        }]
    );
    assert_eq!(
        store.usage(&orphan, T0, T0 + 3 * HOUR).await.unwrap(),
        expected_usage(&chunk, &orphan)
    );

    // Known requests are not erased by later usage that comes without an observation.
    let observed = observation(&orphan, 1000, 4 << 30, T0 + 3 * HOUR);
    store
        .write_chunk(&Chunk {
            signals: Vec::new(),
            workloads: Vec::new(),
            cluster: "prod".into(),
            hours: vec![T0 + 3 * HOUR],
            containers: vec![observed.clone()],
            usage: vec![],
        })
        .await
        .unwrap();
    store
        .write_chunk(&Chunk {
            signals: Vec::new(),
            workloads: Vec::new(),
            cluster: "prod".into(),
            hours: vec![T0 + 5 * HOUR],
            containers: vec![],
            usage: vec![usage(&orphan, Resource::Cpu, T0 + 5 * HOUR, &[1.0])],
        })
        .await
        .unwrap();
    assert_eq!(store.containers(Some("prod")).await.unwrap(), [observed]);
    assert_eq!(
        store.usage(&orphan, T0, T0 + 6 * HOUR).await.unwrap().len(),
        4
    );
}

async fn duplicates_inside_one_chunk_keep_the_last(store: Arc<dyn Store>) {
    // Postgres refuses an upsert touching one row twice and SQLite doesn't; the store makes both agree.
    let api = api();
    let chunk = Chunk {
        signals: Vec::new(),
        workloads: Vec::new(),
        cluster: "prod".into(),
        hours: vec![T0, T0],
        containers: vec![
            observation(&api, 300, 1 << 30, T0 + 1800),
            observation(&api, 200, 1 << 30, T0 + 600),
        ],
        usage: vec![
            usage(&api, Resource::Cpu, T0, &[1.0, 2.0]),
            usage(&api, Resource::Cpu, T0, &[3.0]),
        ],
    };
    store.write_chunk(&chunk).await.unwrap();
    assert_eq!(
        store.containers(None).await.unwrap(),
        [observation(&api, 300, 1 << 30, T0 + 1800)]
    );
    assert_eq!(
        store.usage(&api, T0, T0 + HOUR).await.unwrap(),
        [usage(&api, Resource::Cpu, T0, &[3.0])]
    );
    assert_eq!(
        store.collected_hours("prod", T0, T0 + HOUR).await.unwrap(),
        [T0]
    );
}

async fn a_failing_chunk_writes_nothing(store: Arc<dyn Store>) {
    let good = two_hours();
    store.write_chunk(&good).await.unwrap();
    let before = snapshot(&*store, "prod").await;

    // Usage hours must be hour-aligned (a check while packing the day rows). The misaligned
    // row comes last, after
    // more than one batch of valid rows, a new container and a changed observation were written,
    // so only a rollback can hide them.
    let newcomer = key("prod", "shop", "StatefulSet", "db", "postgres");
    let mut bad = Chunk {
        signals: Vec::new(),
        workloads: Vec::new(),
        cluster: "prod".into(),
        hours: vec![T0 + 3 * HOUR],
        containers: vec![
            observation(&api(), 999, 1 << 30, T0 + 5 * HOUR),
            observation(&newcomer, 100, 1 << 30, T0),
        ],
        usage: (0..700)
            .map(|h| usage(&newcomer, Resource::Cpu, T0 + h * HOUR, &[0.5]))
            .collect(),
    };
    bad.usage
        .push(usage(&newcomer, Resource::Memory, T0 + 90, &[1.0]));
    let err = store
        .write_chunk(&bad)
        .await
        .expect_err("a misaligned hour must be refused");
    match &err {
        StoreError::Invalid(message) => assert!(
            message.contains(&format!("hour {} is not hour-aligned", T0 + 90)),
            "{message}"
        ),
        other => panic!("expected the misaligned hour to be refused, got {other:?}"),
    }

    assert_eq!(snapshot(&*store, "prod").await, before);
    assert!(store
        .usage(&newcomer, i64::MIN, i64::MAX)
        .await
        .unwrap()
        .is_empty());

    // The store is still usable afterwards.
    bad.usage.pop();
    store.write_chunk(&bad).await.unwrap();
    assert_eq!(
        store
            .usage(&newcomer, i64::MIN, i64::MAX)
            .await
            .unwrap()
            .len(),
        700
    );
}

async fn big_chunks_are_written_in_batches(store: Arc<dyn Store>) {
    // More rows than fit one statement's bound parameters on either engine.
    let keys: Vec<ContainerKey> = (0..1200)
        .map(|i| {
            key(
                "big",
                &format!("ns{:02}", i % 40),
                "Deployment",
                &format!("w{i:04}"),
                "app",
            )
        })
        .collect();
    let hours: Vec<i64> = (0..24).map(|h| T0 + h * HOUR).collect();
    let chunk = Chunk {
        signals: Vec::new(),
        workloads: Vec::new(),
        cluster: "big".into(),
        hours: hours.clone(),
        containers: keys
            .iter()
            .enumerate()
            .map(|(i, k)| observation(k, i as i64, 1 << 20, T0))
            .collect(),
        usage: keys
            .iter()
            .take(300)
            .flat_map(|k| {
                hours
                    .iter()
                    .map(move |&h| usage(k, Resource::Cpu, h, &[0.1, 0.2]))
            })
            .collect(),
    };
    let started = Instant::now();
    store.write_chunk(&chunk).await.unwrap();
    store.write_chunk(&chunk).await.unwrap();
    let containers = store.containers(Some("big")).await.unwrap();
    assert_eq!(containers.len(), 1200);
    assert!(
        containers.windows(2).all(|w| w[0].key < w[1].key),
        "ordered by key"
    );
    let w0042 = containers
        .iter()
        .find(|c| c.key.workload == "w0042")
        .unwrap();
    assert_eq!(w0042.resources.cpu_request_millicores, Some(42));
    assert_eq!(
        store.usage(&keys[7], T0, T0 + 24 * HOUR).await.unwrap(),
        expected_usage(&chunk, &keys[7])
    );
    assert!(store
        .usage(&keys[700], T0, T0 + 24 * HOUR)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.watermark("big").await.unwrap(), Some(T0 + 24 * HOUR));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "slow batch writes: {:?}",
        started.elapsed()
    );
}

async fn recommendations_are_replaced_per_cluster_and_filtered(store: Arc<dyn Store>) {
    let filter = |cluster: Option<&str>,
                  namespace: Option<&str>,
                  kind: Option<&str>,
                  workload: Option<&str>| {
        RecommendationFilter {
            cluster: cluster.map(Into::into),
            namespace: namespace.map(Into::into),
            kind: kind.map(Into::into),
            workload: workload.map(Into::into),
        }
    };
    let all = RecommendationFilter::default();
    assert!(store.recommendations(&all).await.unwrap().is_empty());

    let prod = vec![
        recommendation(&key("prod", "shop", "Deployment", "api", "app"), 200, T0),
        insufficient(&key("prod", "shop", "Deployment", "api", "envoy"), T0),
        recommendation(&key("prod", "shop", "StatefulSet", "api", "app"), 300, T0),
        recommendation(
            &key("prod", "billing", "Deployment", "invoices", "app"),
            400,
            T0,
        ),
    ];
    let staging = vec![recommendation(
        &key("staging", "shop", "Deployment", "api", "app"),
        100,
        T0,
    )];
    store.replace_recommendations("prod", &prod).await.unwrap();
    store
        .replace_recommendations("staging", &staging)
        .await
        .unwrap();

    // Whole bodies round-trip, ordered by namespace, kind, workload, container.
    let listed = store
        .recommendations(&filter(Some("prod"), None, None, None))
        .await
        .unwrap();
    assert_eq!(
        listed,
        [
            prod[3].clone(),
            prod[0].clone(),
            prod[1].clone(),
            prod[2].clone()
        ]
    );
    assert_eq!(store.recommendations(&all).await.unwrap().len(), 5);

    let shop = store
        .recommendations(&filter(None, Some("shop"), None, None))
        .await
        .unwrap();
    assert_eq!(shop.len(), 4);
    assert!(shop.iter().all(|r| r.key.namespace == "shop"));

    let api_deployment = store
        .recommendations(&filter(None, None, Some("Deployment"), Some("api")))
        .await
        .unwrap();
    let keys: Vec<_> = api_deployment
        .iter()
        .map(|r| (r.key.cluster.as_str(), r.key.container.as_str()))
        .collect();
    // Clusters come last in the order: a workload's containers across clusters sit side by side.
    assert_eq!(
        keys,
        [("prod", "app"), ("staging", "app"), ("prod", "envoy")]
    );

    let staging_listed = store
        .recommendations(&filter(
            Some("staging"),
            Some("shop"),
            Some("Deployment"),
            Some("api"),
        ))
        .await
        .unwrap();
    assert_eq!(staging_listed, staging);
    assert!(store
        .recommendations(&filter(Some("prod"), Some("nope"), None, None))
        .await
        .unwrap()
        .is_empty());
    // Values are bound, not pasted into SQL.
    assert!(store
        .recommendations(&filter(Some("prod' or '1'='1"), None, None, None))
        .await
        .unwrap()
        .is_empty());

    // A new analysis replaces the cluster's set: gone containers disappear, other clusters stay.
    let rerun = vec![recommendation(
        &key("prod", "shop", "Deployment", "api", "app"),
        250,
        T0 + HOUR,
    )];
    store.replace_recommendations("prod", &rerun).await.unwrap();
    assert_eq!(
        store
            .recommendations(&filter(Some("prod"), None, None, None))
            .await
            .unwrap(),
        rerun
    );
    assert_eq!(
        store
            .recommendations(&filter(Some("staging"), None, None, None))
            .await
            .unwrap(),
        staging
    );

    // A failed replacement leaves the previous set: one that would not read back, a duplicate key,
    // a recommendation of another cluster.
    let mut unreadable = rerun[0].clone();
    unreadable.confidence_score = f64::NAN;
    assert!(store
        .replace_recommendations("prod", &[unreadable])
        .await
        .is_err());
    let duplicate = vec![rerun[0].clone(), rerun[0].clone()];
    assert!(store
        .replace_recommendations("prod", &duplicate)
        .await
        .is_err());
    assert!(store
        .replace_recommendations("prod", &staging)
        .await
        .is_err());
    assert_eq!(
        store
            .recommendations(&filter(Some("prod"), None, None, None))
            .await
            .unwrap(),
        rerun
    );

    store.replace_recommendations("prod", &[]).await.unwrap();
    assert!(store
        .recommendations(&filter(Some("prod"), None, None, None))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.recommendations(&all).await.unwrap(), staging);
}

async fn corrupt_rows_are_reported(store: Arc<dyn Store>, backdoor: Backdoor) {
    store.write_chunk(&two_hours()).await.unwrap();
    let recs = vec![
        recommendation(&api(), 200, T0),
        recommendation(&sidecar(), 20, T0),
    ];
    store.replace_recommendations("prod", &recs).await.unwrap();

    // A sketch that no longer decodes. Both backends pack a day per row (version byte, then
    // per hour an offset byte and a 4-byte length): T0's sketch starts at byte 7 (1-based).
    backdoor
        .execute(
            "update usage_days set hours = unhex(substr(hex(hours), 1, 12) || 'FF' || substr(hex(hours), 15)) \
             where resource = 'memory'",
            "update usage_days set hours = overlay(hours placing '\\xff'::bytea from 7 for 1) where resource = 'memory'",
        )
        .await;
    match store.usage(&api(), T0, T0 + 2 * HOUR).await {
        Err(StoreError::Corrupt(message)) => assert!(
            message.contains("prod/shop/Deployment/api/app"),
            "{message}"
        ),
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    // Other rows of the same container stay readable.
    assert_eq!(
        store
            .usage(&api(), T0 + HOUR, T0 + 2 * HOUR)
            .await
            .unwrap()
            .len(),
        2
    );

    // A day row cut short.
    backdoor
        .execute(
            "update usage_days set hours = substr(hours, 1, length(hours) - 3) where resource = 'memory'",
            "update usage_days set hours = substring(hours from 1 for length(hours) - 3) where resource = 'memory'",
        )
        .await;
    assert!(matches!(
        store.usage(&api(), T0 + HOUR, T0 + 2 * HOUR).await,
        Err(StoreError::Corrupt(_))
    ));

    // A recommendation body that is not a recommendation.
    let garble = "update recommendations set body = '{\"not\": \"a recommendation\"}' where container = 'envoy'";
    backdoor.execute(garble, garble).await;
    match store
        .recommendations(&RecommendationFilter::default())
        .await
    {
        Err(StoreError::Corrupt(message)) => assert!(
            message.contains("prod/shop/Deployment/api/envoy"),
            "{message}"
        ),
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    let api_workload = RecommendationFilter {
        workload: Some("api".into()),
        ..RecommendationFilter::default()
    };
    assert!(store.recommendations(&api_workload).await.is_err());
    assert_eq!(store.containers(None).await.unwrap().len(), 2);
}

/// A report as the store sees it: JSON it keeps and does not interpret.
fn report_input(generated_at: i64, savings: f64) -> StoredReportInput {
    let summary = json!({ "currency": "EUR", "monthly_savings": savings, "containers": 3 });
    StoredReportInput {
        generated_at,
        body: json!({
            "version": 1,
            "generated_at": generated_at,
            "summary": summary.clone(),
            "note": "naïve ✓ 'single' \"double\" \\ back",
            "ratios": [0.1, 1e-7, -2.5, 123456789.125],
            "lines": (0..2000).map(|i| json!({ "workload": format!("w{i}"), "savings": i })).collect::<Vec<_>>(),
        }),
        summary,
    }
}

fn stored(id: i64, input: &StoredReportInput) -> StoredReport {
    StoredReport {
        id,
        generated_at: input.generated_at,
        summary: input.summary.clone(),
        body: input.body.clone(),
    }
}

fn listing_ids(listings: &[ReportListing]) -> Vec<i64> {
    listings.iter().map(|l| l.id).collect()
}

async fn reports_are_saved_listed_and_pruned(store: Arc<dyn Store>) {
    const DAY: i64 = 86_400;
    assert_eq!(store.latest_report().await.unwrap(), None);
    assert!(store.list_reports(10).await.unwrap().is_empty());
    assert_eq!(store.report(1).await.unwrap(), None);

    let inputs = [
        report_input(T0, 10.5),
        report_input(T0 + DAY, 20.25),
        // Generated at the same second as the previous one: the later id is the newer.
        report_input(T0 + DAY, 30.0),
    ];
    let mut ids = Vec::new();
    for input in &inputs {
        ids.push(store.save_report(input).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for (id, input) in ids.iter().zip(&inputs) {
        assert_eq!(store.report(*id).await.unwrap(), Some(stored(*id, input)));
    }
    assert_eq!(
        store.latest_report().await.unwrap(),
        Some(stored(ids[2], &inputs[2]))
    );
    let listed = store.list_reports(10).await.unwrap();
    assert_eq!(listing_ids(&listed), [ids[2], ids[1], ids[0]]);
    assert_eq!(listed[1].generated_at, T0 + DAY);
    assert_eq!(listed[1].summary, inputs[1].summary);
    assert_eq!(
        listing_ids(&store.list_reports(2).await.unwrap()),
        [ids[2], ids[1]]
    );
    assert!(store.list_reports(0).await.unwrap().is_empty());
    assert_eq!(store.report(ids[2] + 100).await.unwrap(), None);

    // Retention: only reports both older than the cut-off and beyond the newest N go.
    assert_eq!(store.prune_reports(1, T0 + DAY).await.unwrap(), 1);
    assert_eq!(
        listing_ids(&store.list_reports(10).await.unwrap()),
        [ids[2], ids[1]]
    );
    assert_eq!(store.prune_reports(0, T0 + DAY).await.unwrap(), 0);
    assert_eq!(store.prune_reports(5, i64::MAX).await.unwrap(), 0);
    assert_eq!(store.prune_reports(1, i64::MAX).await.unwrap(), 1);
    assert_eq!(
        listing_ids(&store.list_reports(10).await.unwrap()),
        [ids[2]]
    );
    assert_eq!(store.prune_reports(0, i64::MAX).await.unwrap(), 1);
    assert_eq!(store.latest_report().await.unwrap(), None);

    // Ids are never reused, even after the newest report was pruned.
    let next = store.save_report(&inputs[0]).await.unwrap();
    assert!(next > ids[2], "{next} reuses an id up to {}", ids[2]);
    assert_eq!(
        store.latest_report().await.unwrap(),
        Some(stored(next, &inputs[0]))
    );
}

async fn scheduled_jobs_run_once_per_period(store: Arc<dyn Store>) {
    let lease = |holder: &'static str, period: i64, now: i64| {
        let store = store.clone();
        async move {
            store
                .lease_job("analyze", period, holder, now, 60)
                .await
                .unwrap()
        }
    };
    assert!(lease("a", 7, T0).await, "the first replica gets the period");
    assert!(
        !lease("b", 7, T0 + 10).await,
        "a held lease keeps others out"
    );
    assert!(lease("a", 7, T0 + 20).await, "the holder may renew");
    assert!(lease("b", 8, T0 + 20).await, "another period is free");
    assert!(
        lease("b", 7, T0 + 20 + 61).await,
        "an expired lease (its holder died) is taken over"
    );
    store.finish_job("analyze", 7, "a").await.unwrap();
    assert!(
        !lease("a", 7, T0 + 100).await,
        "only the holder's finish counts: b holds it now"
    );
    store.finish_job("analyze", 7, "b").await.unwrap();
    assert!(
        !lease("c", 7, T0 + 10_000).await,
        "a finished period never runs again, however late"
    );
    assert!(store
        .lease_job("report", 7, "c", T0 + 10_000, 60)
        .await
        .unwrap());
}

/// Two processes sharing a database: a claimed cell is refused to the other until released,
/// and a claim dropped without release (a killed task) is freed with its connection.
async fn collection_claims_are_exclusive_between_processes(
    store: Arc<dyn Store>,
    backdoor: Backdoor,
) {
    let url = match &backdoor {
        Backdoor::Sqlite(url) | Backdoor::Postgres(url) => url.clone(),
    };
    let other = store::connect(&url).await.unwrap();
    let claim = store
        .claim_chunk("prod", T0)
        .await
        .unwrap()
        .expect("a free cell");
    let contended = other.claim_chunk("prod", T0).await.unwrap();
    if let Backdoor::Sqlite(_) = backdoor {
        // One process per SQLite file: claims never contend.
        assert!(contended.is_some());
        return;
    }
    assert!(
        contended.is_none(),
        "a held cell is refused to another process"
    );
    let next = other.claim_chunk("prod", T0 + 6 * HOUR).await.unwrap();
    assert!(next.is_some(), "another cell is free");
    assert!(
        other.claim_chunk("staging", T0).await.unwrap().is_some(),
        "the same cell of another cluster is free"
    );
    claim.release().await;
    let taken = other
        .claim_chunk("prod", T0)
        .await
        .unwrap()
        .expect("released");
    assert!(store.claim_chunk("prod", T0).await.unwrap().is_none());
    drop(taken);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if store.claim_chunk("prod", T0).await.unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a claim dropped unreleased was not freed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next.unwrap().release().await;
}

/// A span's cells claimed together: those another process holds are refused, the others
/// are held as one claim (on one connection) until it is released.
async fn span_claims_hold_their_cells_together(store: Arc<dyn Store>, backdoor: Backdoor) {
    let url = match &backdoor {
        Backdoor::Sqlite(url) | Backdoor::Postgres(url) => url.clone(),
    };
    let other = store::connect(&url).await.unwrap();
    let cells = [T0, T0 + 6 * HOUR, T0 + 12 * HOUR];
    let held = other.claim_chunk("span", cells[1]).await.unwrap().unwrap();
    let (granted, claim) = store.claim_chunks("span", &cells).await.unwrap();
    if let Backdoor::Sqlite(_) = backdoor {
        assert_eq!(granted, vec![true; 3], "one process per SQLite file");
        return;
    }
    assert_eq!(granted, vec![true, false, true]);
    for cell in [cells[0], cells[2]] {
        assert!(other.claim_chunk("span", cell).await.unwrap().is_none());
    }
    claim.release().await;
    held.release().await;
    let (granted, claim) = other.claim_chunks("span", &cells).await.unwrap();
    assert_eq!(granted, vec![true; 3], "all released");
    claim.release().await;
}

/// A second process on the same database.
async fn other_process(backdoor: &Backdoor) -> Arc<dyn Store> {
    match backdoor {
        Backdoor::Sqlite(url) | Backdoor::Postgres(url) => store::connect(url).await.unwrap(),
    }
}

fn new_run(kind: RunKind, holder: &str, now: i64) -> NewRun<'_> {
    NewRun {
        kind,
        trigger: "api",
        holder,
        now,
        lease_until: now + 30,
    }
}

fn started(start: RunStart) -> i64 {
    match start {
        RunStart::Started(seq) => seq,
        RunStart::Busy(seq) => panic!("refused: run {seq} is running"),
    }
}

fn outcome(at: i64, result: Result<serde_json::Value, String>) -> RunOutcome {
    RunOutcome {
        finished_at: at,
        done: 10,
        total: 10,
        result,
    }
}

/// Any process reads any run; a second run of a kind is refused to every process while the
/// first runs, with the running one's number; only the holder renews or finishes it.
async fn runs_are_shared_and_one_of_a_kind_runs_between_processes(
    a: Arc<dyn Store>,
    backdoor: Backdoor,
) {
    let b = other_process(&backdoor).await;
    let collect = started(
        a.start_run(&new_run(RunKind::Collect, "a", T0))
            .await
            .unwrap(),
    );
    assert_eq!(
        b.start_run(&new_run(RunKind::Collect, "b", T0 + 1))
            .await
            .unwrap(),
        RunStart::Busy(collect)
    );
    let analyze = started(
        b.start_run(&new_run(RunKind::Analyze, "b", T0 + 1))
            .await
            .unwrap(),
    );
    assert_ne!(analyze, collect);

    let seen = b.run(collect).await.unwrap().expect("stored");
    assert_eq!(
        (
            seen.kind,
            seen.status,
            seen.holder.as_str(),
            seen.started_at
        ),
        (RunKind::Collect, RunStatus::Running, "a", T0)
    );
    assert!(
        !b.renew_run(collect, "b", 1, 2, T0 + 60).await.unwrap(),
        "not b's run"
    );
    assert!(a.renew_run(collect, "a", 3, 10, T0 + 60).await.unwrap());
    let seen = b.run(collect).await.unwrap().unwrap();
    assert_eq!((seen.done, seen.total, seen.lease_until), (3, 10, T0 + 60));

    let report = json!({"clusters": {"prod": {"hours": 48}}});
    assert!(!b
        .finish_run(collect, "b", &outcome(T0 + 50, Ok(json!(1))))
        .await
        .unwrap());
    assert!(a
        .finish_run(collect, "a", &outcome(T0 + 50, Ok(report.clone())))
        .await
        .unwrap());
    let done = b.run(collect).await.unwrap().unwrap();
    assert_eq!(
        (
            done.status,
            done.finished_at,
            done.result,
            done.error,
            done.done
        ),
        (RunStatus::Succeeded, Some(T0 + 50), Some(report), None, 10)
    );
    assert!(
        !a.finish_run(collect, "a", &outcome(T0 + 51, Err("late".into())))
            .await
            .unwrap(),
        "a finished run stays as it ended"
    );
    let next = started(
        b.start_run(&new_run(RunKind::Collect, "b", T0 + 52))
            .await
            .unwrap(),
    );
    assert!(next > collect, "numbers are not reused");
    assert!(b
        .finish_run(
            next,
            "b",
            &outcome(T0 + 53, Err("Prometheus unreachable".into()))
        )
        .await
        .unwrap());
    let failed = a.run(next).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.result),
        (RunStatus::Failed, Some("Prometheus unreachable"), None)
    );
    assert_eq!(a.run(next + 1000).await.unwrap(), None);
}

/// A run whose holder died blocks its kind only until its lease expires; then the next start
/// records it as abandoned, and its holder can no longer renew or finish it.
async fn abandoned_runs_stop_blocking_when_their_lease_expires(
    a: Arc<dyn Store>,
    backdoor: Backdoor,
) {
    let b = other_process(&backdoor).await;
    let dead = started(
        a.start_run(&new_run(RunKind::Analyze, "a", T0))
            .await
            .unwrap(),
    );
    assert!(a.renew_run(dead, "a", 1, 5, T0 + 40).await.unwrap());
    assert_eq!(
        b.start_run(&new_run(RunKind::Analyze, "b", T0 + 40))
            .await
            .unwrap(),
        RunStart::Busy(dead),
        "a renewed lease still holds at its last second"
    );
    let taken = started(
        b.start_run(&new_run(RunKind::Analyze, "b", T0 + 41))
            .await
            .unwrap(),
    );
    let old = b.run(dead).await.unwrap().unwrap();
    assert_eq!(
        (old.status, old.finished_at, old.error, old.done),
        (
            RunStatus::Failed,
            Some(T0 + 40),
            Some(store::abandoned_error("a")),
            1
        )
    );
    assert!(!a.renew_run(dead, "a", 2, 5, T0 + 99).await.unwrap());
    assert!(!a
        .finish_run(dead, "a", &outcome(T0 + 99, Ok(json!(1))))
        .await
        .unwrap());
    assert_eq!(
        b.run(dead).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(
        b.run(taken).await.unwrap().unwrap().status,
        RunStatus::Running
    );
}

/// Starts racing from two processes: exactly one wins, the others name it.
async fn concurrent_starts_let_exactly_one_run(a: Arc<dyn Store>, backdoor: Backdoor) {
    let b = other_process(&backdoor).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let holder = format!("p{i}");
            store
                .start_run(&new_run(RunKind::Collect, &holder, T0))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let winners: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            RunStart::Started(seq) => Some(*seq),
            RunStart::Busy(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, RunStart::Busy(s) | RunStart::Started(s) if *s == winners[0])));
}

/// Runs beyond the newest thousand go when a run starts: the table stays bounded.
async fn old_finished_runs_are_pruned(store: Arc<dyn Store>) {
    let mut seqs = Vec::new();
    for i in 0..1002 {
        let seq = started(
            store
                .start_run(&new_run(RunKind::Collect, "a", T0 + i))
                .await
                .unwrap(),
        );
        assert!(store
            .finish_run(seq, "a", &outcome(T0 + i, Ok(json!(i))))
            .await
            .unwrap());
        seqs.push(seq);
    }
    let running = started(
        store
            .start_run(&new_run(RunKind::Collect, "a", T0 + 2000))
            .await
            .unwrap(),
    );
    // 1003 runs in all: the three oldest go.
    assert_eq!(store.run(seqs[2]).await.unwrap(), None, "pruned");
    assert!(
        store.run(seqs[3]).await.unwrap().is_some(),
        "among the newest 1000"
    );
    assert!(store.run(running).await.unwrap().is_some());
}

async fn corrupt_reports_are_reported(store: Arc<dyn Store>, backdoor: Backdoor) {
    let first = store.save_report(&report_input(T0, 1.0)).await.unwrap();
    let second = store
        .save_report(&report_input(T0 + HOUR, 2.0))
        .await
        .unwrap();
    let garble = format!("update reports set body = '{{not json' where id = {second}");
    backdoor.execute(&garble, &garble).await;
    for result in [store.report(second).await, store.latest_report().await] {
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(&format!("report {second}")), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
    }
    // The other report and the list (summaries only) still read.
    assert!(store.report(first).await.unwrap().is_some());
    assert_eq!(store.list_reports(10).await.unwrap().len(), 2);
    let garble = format!("update reports set summary = '' where id = {first}");
    backdoor.execute(&garble, &garble).await;
    assert!(matches!(
        store.list_reports(10).await,
        Err(StoreError::Corrupt(message)) if message.contains(&format!("report {first}"))
    ));
}

// ---------------------------------------------------------------------------------------------
// Connection errors (no database needed)

#[tokio::test]
async fn an_unsupported_url_is_refused() {
    let err = store::connect("mysql://root@127.0.0.1/x")
        .await
        .err()
        .expect("mysql is not supported");
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_postgres_fails_fast() {
    let started = Instant::now();
    let err = store::connect("postgres://root:hunter2@127.0.0.1:1/x")
        .await
        .err()
        .expect("nothing listens on port 1");
    match &err {
        // The driver's own cause (connection refused), not a pool's generic time-out.
        StoreError::Connect {
            url,
            source: sqlx::Error::Io(_),
        } => assert_eq!(url, "postgres://***@127.0.0.1:1/x"),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unopenable_sqlite_file_is_a_connect_error() {
    let path = std::env::temp_dir()
        .join(unique_name())
        .join("missing-dir")
        .join("db.sqlite");
    let err = store::connect(&format!("sqlite://{}", path.display()))
        .await
        .err()
        .expect("the directory does not exist");
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_memory_sqlite_store_keeps_its_data() {
    let store = store::connect("sqlite::memory:").await.unwrap();
    store.write_chunk(&two_hours()).await.unwrap();
    // Across awaits and idle time, every query sees the one memory database.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.containers(None).await.unwrap().len(), 2);
    assert_eq!(store.watermark("prod").await.unwrap(), Some(T0 + 3 * HOUR));
}

/// A database of the hour-row layout (before migration 0005) holding usage and signals:
/// migrating packs them into day rows that read back hour for hour.
#[tokio::test]
async fn postgres_hour_rows_are_packed_into_day_rows_by_the_migration() {
    let (scratch, url) = Scratch::postgres().await;
    let outcome = tokio::spawn(async move {
        let mut old = sqlx::migrate!("migrations/postgres");
        old.migrations = std::borrow::Cow::Owned(
            old.migrations
                .iter()
                .filter(|m| m.version < 5)
                .cloned()
                .collect(),
        );
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        old.run(&db).await.unwrap();
        sqlx::query(
            "insert into containers (id, cluster, namespace, kind, workload, container, seen_at) \
             values (1, 'prod', 'shop', 'Deployment', 'api', 'app', 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        // Three hours over two days, the last hour of the first day included.
        let hours = [T0, T0 + 23 * HOUR, T0 + 24 * HOUR];
        let mut expected = Vec::new();
        for (i, &hour) in hours.iter().enumerate() {
            for resource in [Resource::Cpu, Resource::Memory] {
                let u = usage(&api(), resource, hour, &[0.1 * (i + 1) as f64, 0.25, 3.0]);
                sqlx::query(
                    "insert into usage_hours (container_id, resource, hour_start, sample_count, sum, max, sketch) \
                     values (1, $1, $2, $3, 0, 0, $4)",
                )
                .bind(resource.as_str())
                .bind(hour)
                .bind(u.sketch.count() as i64)
                .bind(u.sketch.to_bytes())
                .execute(&db)
                .await
                .unwrap();
                expected.push(u);
            }
            sqlx::query(
                "insert into signal_hours (container_id, hour_start, restarts, oom_kills, cfs_periods, cfs_throttled_periods) \
                 values (1, $1, $2, 1, 600.5, 12.25)",
            )
            .bind(hour)
            .bind(i as i64 + 2)
            .execute(&db)
            .await
            .unwrap();
        }
        db.close().await;
        expected.sort_by_key(|u| (u.resource.as_str(), u.hour_start));

        let store = store::connect(&url).await.unwrap();
        assert_eq!(
            store.usage(&api(), i64::MIN, i64::MAX).await.unwrap(),
            expected
        );
        let signals = store.signals(&api(), T0, T0 + 2 * 24 * HOUR).await.unwrap();
        assert_eq!(
            signals
                .iter()
                .map(|s| (s.hour_start, s.restarts, s.oom_kills, s.cfs_periods, s.cfs_throttled_periods))
                .collect::<Vec<_>>(),
            hours
                .iter()
                .enumerate()
                .map(|(i, &h)| (h, i as u32 + 2, 1, 600.5, 12.25))
                .collect::<Vec<_>>()
        );
        // And the store keeps writing into the packed rows: a new hour joins its day.
        let mut chunk = two_hours();
        chunk.hours = vec![T0 + 25 * HOUR];
        chunk.usage.retain(|u| *u.key == api() && u.hour_start == T0);
        for u in &mut chunk.usage {
            u.hour_start = T0 + 25 * HOUR;
        }
        chunk.signals.clear();
        store.write_chunk(&chunk).await.unwrap();
        assert_eq!(
            store.usage(&api(), T0 + 24 * HOUR, T0 + 48 * HOUR).await.unwrap().len(),
            4
        );
    })
    .await;
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A SQLite database of the hour-row layout (migrations 0001–0005) holding usage and signals
/// of two containers: opening it packs them into day rows (migration 0006 and the packing
/// after it) that read back hour for hour, and the store goes on writing and pruning them.
#[tokio::test]
async fn sqlite_hour_rows_are_packed_into_day_rows_on_open() {
    let (scratch, url) = Scratch::sqlite().await;
    let outcome = tokio::spawn(async move {
        let mut old = sqlx::migrate!("migrations/sqlite");
        old.migrations = std::borrow::Cow::Owned(
            old.migrations
                .iter()
                .filter(|m| m.version < 6)
                .cloned()
                .collect(),
        );
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(url.trim_start_matches("sqlite://"))
            .create_if_missing(true);
        let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
        old.run(&db).await.unwrap();
        for (id, key) in [(1, api()), (2, sidecar())] {
            sqlx::query(
                "insert into containers (id, cluster, namespace, kind, workload, container, seen_at) \
                 values (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(&key.cluster)
            .bind(&key.namespace)
            .bind(&key.kind)
            .bind(&key.workload)
            .bind(&key.container)
            .bind(T0 - 2 * DAY)
            .execute(&db)
            .await
            .unwrap();
        }
        // Two days before the cutoff-to-be (T0) and two after, first and last hours of a day
        // included; the sidecar has memory only and no signals on its first day.
        let hours = [
            T0 - 2 * DAY,
            T0 - 2 * DAY + 23 * HOUR,
            T0 - DAY + 7 * HOUR,
            T0,
            T0 + HOUR,
            T0 + 23 * HOUR,
            T0 + DAY + 5 * HOUR,
        ];
        let mut expected: Vec<Vec<UsageHour>> = vec![Vec::new(), Vec::new()];
        let mut expected_signals: Vec<Vec<SignalHour>> = vec![Vec::new(), Vec::new()];
        for (i, &hour) in hours.iter().enumerate() {
            for (c, key) in [api(), sidecar()].iter().enumerate() {
                for resource in [Resource::Cpu, Resource::Memory] {
                    if c == 1 && resource == Resource::Cpu {
                        continue;
                    }
                    let values: Vec<f64> = (0..=i + c).map(|v| 0.1 * v as f64 + hour as f64 / 1e9).collect();
                    let u = usage(key, resource, hour, &values);
                    sqlx::query(
                        "insert into usage_hours (container_id, resource, hour_start, sample_count, sum, max, sketch) \
                         values (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(c as i64 + 1)
                    .bind(resource.as_str())
                    .bind(hour)
                    .bind(u.sketch.count() as i64)
                    .bind(u.sketch.sum())
                    .bind(u.sketch.max())
                    .bind(u.sketch.to_bytes())
                    .execute(&db)
                    .await
                    .unwrap();
                    expected[c].push(u);
                }
                if c == 1 && hour < T0 - DAY {
                    continue;
                }
                let signal = SignalHour {
                    key: key.clone(),
                    hour_start: hour,
                    restarts: (i * 3 + c) as u32,
                    oom_kills: u32::from(i % 2 == 0),
                    cfs_periods: 600.5 + i as f64,
                    cfs_throttled_periods: 0.1 * i as f64,
                };
                sqlx::query(
                    "insert into signal_hours (container_id, hour_start, restarts, oom_kills, cfs_periods, cfs_throttled_periods) \
                     values (?, ?, ?, ?, ?, ?)",
                )
                .bind(c as i64 + 1)
                .bind(hour)
                .bind(i64::from(signal.restarts))
                .bind(i64::from(signal.oom_kills))
                .bind(signal.cfs_periods)
                .bind(signal.cfs_throttled_periods)
                .execute(&db)
                .await
                .unwrap();
                expected_signals[c].push(signal);
            }
            sqlx::query("insert into collected_hours (cluster, hour_start) values ('prod', ?)")
                .bind(hour)
                .execute(&db)
                .await
                .unwrap();
        }
        db.close().await;
        for hours in &mut expected {
            hours.sort_by_key(|u| (u.resource.as_str(), u.hour_start));
        }

        let check = |store: Arc<dyn Store>, expected: Vec<Vec<UsageHour>>, signals: Vec<Vec<SignalHour>>| async move {
            for (c, key) in [api(), sidecar()].iter().enumerate() {
                assert_eq!(store.usage(key, i64::MIN, i64::MAX).await.unwrap(), expected[c], "{key}");
                assert_eq!(store.signals(key, i64::MIN, i64::MAX).await.unwrap(), signals[c], "{key}");
            }
        };
        let store = store::connect(&url).await.unwrap();
        check(store.clone(), expected.clone(), expected_signals.clone()).await;
        // A range inside a day reads just its hours.
        assert_eq!(
            store.usage(&api(), T0 + HOUR, T0 + 2 * HOUR).await.unwrap(),
            expected[0]
                .iter()
                .filter(|u| u.hour_start == T0 + HOUR)
                .cloned()
                .collect::<Vec<_>>()
        );

        // The hour tables are gone, two rows a day are left, and opening again changes nothing.
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "select name from sqlite_master where type = 'table' and name like '%\\_hours' escape '\\' order by name",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(tables, ["collected_hours"]);
        let days: (i64, i64) = sqlx::query_as(
            "select (select count(*) from usage_days), (select count(*) from signal_days)",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        // Usage: api 4 days × 2 resources + sidecar 4 days × memory; signals: 4 + 3 days.
        assert_eq!(days, (12, 7));
        db.close().await;
        drop(store);
        let store = store::connect(&url).await.unwrap();
        check(store.clone(), expected.clone(), expected_signals.clone()).await;

        // A re-collected hour replaces that hour of its day row, and only that hour.
        let again = usage(&api(), Resource::Cpu, T0 + HOUR, &[9.0]);
        let signal = SignalHour {
            hour_start: T0 + HOUR,
            restarts: 77,
            ..expected_signals[0][4].clone()
        };
        store
            .write_chunk(&Chunk {
                cluster: "prod".into(),
                hours: vec![T0 + HOUR],
                containers: Vec::new(),
                usage: vec![again.clone()],
                signals: vec![signal.clone()],
                workloads: Vec::new(),
            })
            .await
            .unwrap();
        for u in &mut expected[0] {
            if u.resource == Resource::Cpu && u.hour_start == T0 + HOUR {
                *u = again.clone();
            }
        }
        assert_eq!(expected_signals[0][4].hour_start, T0 + HOUR);
        expected_signals[0][4] = signal;
        check(store.clone(), expected.clone(), expected_signals.clone()).await;

        // Retention deletes the packed days before the cutoff, and nothing after it.
        let pruned = store
            .prune_history(&store::PruneOptions {
                cutoff: T0,
                batch_rows: 2,
                dry_run: false,
            })
            .await
            .unwrap();
        let usage_pruned = table(&pruned, "usage_days");
        assert_eq!((usage_pruned.rows, usage_pruned.days, usage_pruned.batches), (6, 2, 3));
        let signals_pruned = table(&pruned, "signal_days");
        assert_eq!((signals_pruned.rows, signals_pruned.days), (3, 2));
        assert_eq!(table(&pruned, "collected_hours").rows, 3);
        assert_eq!(table(&pruned, "containers").rows, 0);
        for hours in &mut expected {
            hours.retain(|u| u.hour_start >= T0);
        }
        for hours in &mut expected_signals {
            hours.retain(|s| s.hour_start >= T0);
        }
        check(store.clone(), expected, expected_signals).await;
        assert_eq!(
            store.collected_hours("prod", i64::MIN, i64::MAX).await.unwrap(),
            [T0, T0 + HOUR, T0 + 23 * HOUR, T0 + DAY + 5 * HOUR]
        );
    })
    .await;
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------
// Retention

contract!(
    run: history_before_the_cutoff_is_pruned_in_batches,
    containers_and_workloads_without_history_are_pruned,
    pruning_keeps_the_analysis_window
);

const DAY: i64 = 86_400;

/// Every 6 hours of 2023-12-30 to 2024-01-03 (two months, five days): usage of both
/// containers, signals of one, every hour collected.
fn five_days() -> Chunk {
    let hours: Vec<i64> = (0..20).map(|i| T0 - 2 * DAY + i * 6 * HOUR).collect();
    let mut chunk = two_hours();
    chunk.hours = hours.clone();
    chunk.usage = hours
        .iter()
        .flat_map(|&h| {
            [
                usage(&api(), Resource::Cpu, h, &[0.1, (h % 7) as f64]),
                usage(&api(), Resource::Memory, h, &[1e8]),
                usage(&sidecar(), Resource::Cpu, h, &[0.01]),
            ]
        })
        .collect();
    chunk.signals = hours
        .iter()
        .map(|&h| SignalHour {
            hour_start: h,
            ..chunk.signals[0].clone()
        })
        .collect();
    chunk
}

fn table<'a>(report: &'a [store::TablePrune], name: &str) -> &'a store::TablePrune {
    report
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("no table {name} in {report:?}"))
}

async fn history_before_the_cutoff_is_pruned_in_batches(store: Arc<dyn Store>) {
    let chunk = five_days();
    store.write_chunk(&chunk).await.unwrap();
    let cutoff = T0 + DAY; // 2024-01-02: December and the first day of January go.
    let options = |dry_run| store::PruneOptions {
        cutoff,
        batch_rows: 3,
        dry_run,
    };
    let whole = snapshot(&*store, "prod").await;

    let counted = store.prune_history(&options(true)).await.unwrap();
    assert_eq!(
        snapshot(&*store, "prod").await,
        whole,
        "a dry run deletes nothing"
    );
    let pruned = store.prune_history(&options(false)).await.unwrap();
    let without_batches = |r: &[store::TablePrune]| {
        r.iter()
            .map(|t| (t.table.clone(), t.rows, t.days, t.partitions.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(without_batches(&counted), without_batches(&pruned));

    // Exactly the rows before the cutoff are gone, on every key and table.
    for key in [api(), sidecar()] {
        let mut kept = expected_usage(&chunk, &key);
        kept.retain(|u| u.hour_start >= cutoff);
        assert_eq!(store.usage(&key, i64::MIN, i64::MAX).await.unwrap(), kept);
    }
    let signals: Vec<i64> = store
        .signals(&api(), i64::MIN, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hour_start)
        .collect();
    let kept: Vec<i64> = chunk
        .hours
        .iter()
        .copied()
        .filter(|&h| h >= cutoff)
        .collect();
    assert_eq!(signals, kept);
    assert_eq!(
        store
            .collected_hours("prod", i64::MIN, i64::MAX)
            .await
            .unwrap(),
        kept
    );
    assert_eq!(store.containers(None).await.unwrap().len(), 2);

    // Three days went from each history table, in batches of at most 3 rows (Postgres drops
    // December's partition whole and deletes 2024-01-01's day rows).
    let (usage_table, signal_table) = ("usage_days", "signal_days");
    for name in [usage_table, signal_table, "collected_hours"] {
        assert_eq!(table(&pruned, name).days, 3, "{name}: {pruned:?}");
    }
    assert_eq!(table(&pruned, "collected_hours").rows, 12);
    assert_eq!(table(&pruned, "collected_hours").batches, 4);
    let usage = table(&pruned, usage_table);
    if store.backend() == "sqlite" {
        assert_eq!((usage.rows, usage.batches), (9, 3));
        assert!(usage.partitions.is_empty());
    } else {
        assert_eq!((usage.rows, usage.batches), (9, 1));
        assert_eq!(usage.partitions, ["usage_days_p202312"]);
        assert_eq!(
            table(&pruned, "signal_days").partitions,
            ["signal_days_p202312"]
        );
    }

    // Pruning again finds nothing; writing into the dropped month again still works.
    let again = store.prune_history(&options(false)).await.unwrap();
    assert!(
        again.iter().all(|t| t.rows == 0 && t.partitions.is_empty()),
        "{again:?}"
    );
    store.write_chunk(&chunk).await.unwrap();
    assert_eq!(snapshot(&*store, "prod").await, whole);
    store.prune_history(&options(false)).await.unwrap();
    assert_eq!(
        store.usage(&api(), i64::MIN, cutoff).await.unwrap(),
        Vec::new()
    );
}

async fn containers_and_workloads_without_history_are_pruned(store: Arc<dyn Store>) {
    // `gone` was seen and used only long before the cutoff; `api` was last seen as long ago
    // but still has usage after it (usage without kube-state-metrics), so it stays.
    let gone = key("prod", "shop", "Deployment", "gone", "app");
    let long_ago = T0 - 30 * DAY;
    let mut chunk = two_hours();
    chunk.hours = vec![long_ago, T0 + 2 * DAY];
    chunk.containers = vec![
        observation(&gone, 100, 1 << 20, long_ago),
        observation(&api(), 100, 1 << 20, long_ago),
    ];
    chunk.usage = vec![
        usage(&gone, Resource::Cpu, long_ago, &[0.1]),
        usage(&api(), Resource::Cpu, T0 + 2 * DAY, &[0.1]),
    ];
    chunk.signals.clear();
    let mut gone_workload = chunk.workloads[0].clone();
    gone_workload.key = gone.workload_key();
    gone_workload.seen_at = long_ago;
    chunk.workloads[0].seen_at = long_ago;
    chunk.workloads.push(gone_workload);
    store.write_chunk(&chunk).await.unwrap();

    let options = |dry_run| store::PruneOptions {
        cutoff: T0,
        batch_rows: 100,
        dry_run,
    };
    let counted = store.prune_history(&options(true)).await.unwrap();
    assert_eq!(table(&counted, "containers").rows, 1);
    assert_eq!(table(&counted, "workloads").rows, 1);
    assert_eq!(store.containers(None).await.unwrap().len(), 2);
    let pruned = store.prune_history(&options(false)).await.unwrap();
    assert_eq!(table(&pruned, "containers").rows, 1);
    assert_eq!(table(&pruned, "workloads").rows, 1);
    let keys: Vec<ContainerKey> = store
        .containers(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(keys, [api()]);
    let workloads = store.workloads(None).await.unwrap();
    assert_eq!(workloads.len(), 1);
    assert_eq!(workloads[0].key, api().workload_key());
}

/// Three weeks of hourly history, a 14-day window and a 15-day retention: the prune deletes
/// the week before the window and the recommendations come out the same.
async fn pruning_keeps_the_analysis_window(store: Arc<dyn Store>) {
    use rightsizer::analyzer::{BacktestSettings, PolicySet, Pricing};
    use rightsizer::jobs::{compute_recommendations, AnalysisSettings};
    let start = T0;
    let end = T0 + 21 * DAY;
    let hours: Vec<i64> = (start..end).step_by(HOUR as usize).collect();
    let mut chunk = two_hours();
    chunk.hours = hours.clone();
    chunk.signals.clear();
    chunk.usage = hours
        .iter()
        .flat_map(|&h| {
            let busy = ((h / HOUR) % 24) as f64 / 24.0;
            [
                usage(&api(), Resource::Cpu, h, &[0.1 + busy, 0.2, 0.15 * busy]),
                usage(&api(), Resource::Memory, h, &[1e8 + busy * 5e7, 1.2e8]),
            ]
        })
        .collect();
    chunk.containers.retain(|c| c.key == api());
    for batch in chunk.usage.chunks(500) {
        store
            .write_chunk(&Chunk {
                usage: batch.to_vec(),
                ..chunk.clone()
            })
            .await
            .unwrap();
    }
    let settings = AnalysisSettings {
        policies: PolicySet::new(Default::default()).unwrap(),
        pricing: Pricing::default(),
        step_secs: 60,
        backtest: BacktestSettings::default(),
    };
    let (before, ..) = compute_recommendations(&*store, "prod", &settings, end, None)
        .await
        .unwrap();
    assert_ne!(before[0].status, Status::InsufficientData, "{before:?}");
    let report = store::retention::prune(&*store, Duration::from_secs(15 * DAY as u64), end, false)
        .await
        .unwrap();
    assert_eq!(report.cutoff, Some(T0 + 6 * DAY));
    assert_eq!(
        store.usage(&api(), i64::MIN, i64::MAX).await.unwrap().len(),
        15 * 24 * 2
    );
    let (after, ..) = compute_recommendations(&*store, "prod", &settings, end, None)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&before).unwrap(),
        serde_json::to_value(&after).unwrap()
    );
}

/// The partitions of a Postgres table, by name.
async fn partitions(db: &sqlx::PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
         where i.inhparent = to_regclass($1) order by 1",
    )
    .bind(table)
    .fetch_all(db)
    .await
    .unwrap()
}

/// A database of the layout before partitioning (migrations up to 0005) holding three months
/// of day rows: migrating keeps every row, in one partition per month, writes into a new
/// month get theirs, and pruning drops the old months' partitions.
#[tokio::test]
async fn postgres_day_tables_are_partitioned_by_the_migration() {
    let (scratch, url) = Scratch::postgres().await;
    let outcome = tokio::spawn(async move {
        let mut old = sqlx::migrate!("migrations/postgres");
        old.migrations = std::borrow::Cow::Owned(
            old.migrations
                .iter()
                .filter(|m| m.version <= 5)
                .cloned()
                .collect(),
        );
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        old.run(&db).await.unwrap();
        sqlx::query(
            "insert into containers (id, cluster, namespace, kind, workload, container, seen_at) \
             values (1, 'prod', 'shop', 'Deployment', 'api', 'app', 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        // Hour rows through 0005's packing would do as well; day rows written like the store
        // writes them are what an old database holds: a version byte, then per hour its offset,
        // the sketch's length and the sketch.
        let days: Vec<i64> = (0..70).map(|d| T0 - 20 * DAY + d * DAY).collect();
        let mut expected = Vec::new();
        for &day in &days {
            let u = usage(&api(), Resource::Cpu, day + 5 * HOUR, &[(day % 11) as f64, 0.5]);
            let sketch = u.sketch.to_bytes();
            let mut packed = vec![1u8, 5];
            packed.extend_from_slice(&(sketch.len() as u32).to_be_bytes());
            packed.extend_from_slice(&sketch);
            sqlx::query("insert into usage_days (container_id, resource, day, hours) values (1, 'cpu', $1, $2)")
                .bind(day)
                .bind(packed)
                .execute(&db)
                .await
                .unwrap();
            sqlx::query("insert into collected_hours (cluster, hour_start) values ('prod', $1)")
                .bind(day + 5 * HOUR)
                .execute(&db)
                .await
                .unwrap();
            expected.push(u);
        }

        let store = store::connect(&url).await.unwrap();
        assert_eq!(store.usage(&api(), i64::MIN, i64::MAX).await.unwrap(), expected);
        assert_eq!(
            partitions(&db, "usage_days").await,
            ["usage_days_default", "usage_days_p202312", "usage_days_p202401", "usage_days_p202402"]
        );
        let moved: i64 = sqlx::query_scalar("select count(*) from usage_days_p202401")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(moved, 31);

        // A write into a month without a partition gets one; nothing lands in DEFAULT.
        let mut chunk = two_hours();
        let april = T0 + 100 * DAY;
        chunk.hours = vec![april];
        chunk.usage = vec![usage(&api(), Resource::Cpu, april, &[0.3])];
        chunk.signals = vec![SignalHour {
            hour_start: april,
            ..chunk.signals[0].clone()
        }];
        store.write_chunk(&chunk).await.unwrap();
        assert!(partitions(&db, "usage_days").await.contains(&"usage_days_p202404".to_string()));
        assert!(partitions(&db, "signal_days").await.contains(&"signal_days_p202404".to_string()));
        let in_default: i64 = sqlx::query_scalar(
            "select (select count(*) from usage_days_default) + (select count(*) from signal_days_default)",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(in_default, 0);

        // 2024-02-10 as cutoff: December and January are dropped whole, February partly.
        let cutoff = T0 + 40 * DAY;
        let pruned = store
            .prune_history(&store::PruneOptions {
                cutoff,
                batch_rows: 4,
                dry_run: false,
            })
            .await
            .unwrap();
        let usage_pruned = table(&pruned, "usage_days");
        assert_eq!(usage_pruned.partitions, ["usage_days_p202312", "usage_days_p202401"]);
        assert_eq!((usage_pruned.rows, usage_pruned.days), (60, 60));
        assert_eq!(usage_pruned.batches, 3); // the 9 days of February before the cutoff
        assert_eq!(
            partitions(&db, "usage_days").await,
            ["usage_days_default", "usage_days_p202402", "usage_days_p202404"]
        );
        expected.retain(|u| u.hour_start >= cutoff);
        expected.push(chunk.usage[0].clone());
        assert_eq!(store.usage(&api(), i64::MIN, i64::MAX).await.unwrap(), expected);
        db.close().await;
    })
    .await;
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------
// The record of in-place resizes

async fn changes_are_recorded_listed_newest_first_and_filtered(store: Arc<dyn Store>) {
    use rightsizer::model::ChangeRecord;
    let change = |at: i64, cluster: &str, pod: &str, kind: &str| ChangeRecord {
        id: 0,
        at,
        cluster: cluster.into(),
        namespace: "shop".into(),
        pod: pod.into(),
        container: "app".into(),
        workload: (kind == "resize").then(|| "Deployment/web".to_string()),
        actor: "serve (a)".into(),
        kind: kind.into(),
        before: Resources {
            cpu_request_millicores: Some(1000),
            cpu_limit_millicores: Some(4000),
            memory_request_bytes: Some(1 << 30),
            memory_limit_bytes: Some(1 << 30),
        },
        after: Resources {
            cpu_request_millicores: Some(750),
            ..Resources::default()
        },
        outcome: "resized".into(),
        reason: "lowered by at most 25% this run".into(),
    };
    assert!(store.changes(None, 10).await.unwrap().is_empty());
    store.record_changes(&[]).await.unwrap();
    store
        .record_changes(&[
            change(T0, "prod", "web-1", "resize"),
            change(T0 + 60, "prod", "web-2", "resize"),
            change(T0 + 30, "staging", "web-3", "rollback"),
        ])
        .await
        .unwrap();
    let all = store.changes(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.pod.as_str()).collect::<Vec<_>>(),
        ["web-2", "web-3", "web-1"],
        "newest first"
    );
    assert!(all.iter().all(|c| c.id > 0));
    let mut read = all[2].clone();
    read.id = 0;
    assert_eq!(
        read,
        change(T0, "prod", "web-1", "resize"),
        "reads back as written"
    );
    assert_eq!(all[1].workload, None);
    let prod = store.changes(Some("prod"), 1).await.unwrap();
    assert_eq!(prod.len(), 1);
    assert_eq!(prod[0].pod, "web-2");
}

// ---------------------------------------------------------------------------------------------
// The reaction to OOM kills

async fn one_recommendation_is_replaced_alone(store: Arc<dyn Store>) {
    let api = key("prod", "shop", "Deployment", "api", "app");
    let envoy = key("prod", "shop", "Deployment", "api", "envoy");
    store
        .replace_recommendations(
            "prod",
            &[
                recommendation(&api, 200, T0),
                recommendation(&envoy, 300, T0),
            ],
        )
        .await
        .unwrap();
    let raised = recommendation(&api, 900, T0 + 60);
    store.put_recommendation(&raised).await.unwrap();
    let all = store
        .recommendations(&RecommendationFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], raised, "replaced");
    assert_eq!(all[1], recommendation(&envoy, 300, T0), "left alone");
    // A container without a stored recommendation gets one.
    let other = recommendation(&key("prod", "shop", "Deployment", "web", "app"), 100, T0);
    store.put_recommendation(&other).await.unwrap();
    assert_eq!(
        store
            .recommendations(&RecommendationFilter::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

async fn oom_kills_keep_the_larger_count_per_hour(store: Arc<dyn Store>) {
    use rightsizer::model::OomKillHour;
    let api = key("prod", "shop", "Deployment", "api", "app");
    let kill = |key: &ContainerKey, hour_start: i64, kills: u32| OomKillHour {
        key: key.clone(),
        hour_start,
        kills,
    };
    store.record_oom_kills(&[]).await.unwrap();
    store
        .record_oom_kills(&[
            kill(&api, T0, 2),
            kill(&api, T0 + 3600, 1),
            kill(&key("staging", "shop", "Deployment", "api", "app"), T0, 5),
        ])
        .await
        .unwrap();
    // The same kills reported again (another replica), and a smaller count: no change.
    store
        .record_oom_kills(&[kill(&api, T0, 1), kill(&api, T0 + 3600, 1)])
        .await
        .unwrap();
    assert_eq!(
        store.oom_kills("prod", 0).await.unwrap(),
        [kill(&api, T0, 2), kill(&api, T0 + 3600, 1)]
    );
    store
        .record_oom_kills(&[kill(&api, T0 + 3600, 3)])
        .await
        .unwrap();
    assert_eq!(
        store.oom_kills("prod", T0 + 1).await.unwrap(),
        [kill(&api, T0 + 3600, 3)],
        "a larger count wins; hours before `from` are left out"
    );
    let pruned = store
        .prune_history(&store::PruneOptions {
            cutoff: T0 + 3600,
            batch_rows: 1000,
            dry_run: false,
        })
        .await
        .unwrap();
    let oom = pruned.iter().find(|t| t.table == "oom_kills").unwrap();
    assert_eq!(oom.rows, 2, "{pruned:?}");
    assert_eq!(
        store.oom_kills("prod", 0).await.unwrap(),
        [kill(&api, T0 + 3600, 3)]
    );
}
