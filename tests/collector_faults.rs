//! Collection runs that die halfway, against a real Prometheus: the collecting task
//! aborted after some commits (a crash), or Prometheus killed under a run. Either way
//! the store holds whole chunks only, each exactly as an uninterrupted run stores it,
//! and the next run completes the window to what an uninterrupted run stores.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rightsizer::collector::{self, CollectError, CollectOptions, CollectReport, Progress};
use rightsizer::prometheus::{PromClient, PromConfig, PromError};
use rightsizer::store::Store;
use rightsizer_synth::{self as synth, SynthConfig};
use support::dump::{self, StoreDump};
use support::postgres::TestDatabase;
use support::prometheus::{self as prometheus, Prometheus, TempDir};

const CLUSTER: &str = "test";
const DAYS: i64 = 2;
/// Small chunks: a run commits many times, so a fault lands between two commits.
const CHUNK_HOURS: u32 = 2;
/// Prometheus is killed once a run has committed this many hours.
const HOURS_BEFORE_KILL: u64 = 2 * CHUNK_HOURS as u64;
/// Bounds every wait on the collector, so a hang fails the test instead of stalling it.
const PATIENCE: Duration = Duration::from_secs(60);

/// The one place that knows the fields of `CollectOptions`: they are still growing.
fn options(history: &History, progress: Progress) -> CollectOptions {
    CollectOptions {
        step_secs: 60,
        chunk_hours: CHUNK_HOURS,
        // Two chunks in flight: an abort also throws away one fetched ahead.
        concurrency: 2,
        // Spans of two chunks, one transaction each: a run commits often, and an abort
        // also lands inside a span's open transaction.
        span_hours: 2 * CHUNK_HOURS as usize,
        progress,
        ..CollectOptions::new(CLUSTER, history.start, history.end)
    }
}

/// Few, short retries: a dead Prometheus fails the run in well under a second.
fn client(url: &str) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.into(),
        timeout: Duration::from_secs(20),
        retries: 2,
        retry_backoff: Duration::from_millis(20),
        ..PromConfig::default()
    })
    .unwrap()
}

/// Synthetic history backfilled once into a TSDB that is never served itself: each test
/// serves a copy, so one may kill its server without disturbing the others.
struct History {
    dir: TempDir,
    start: i64,
    end: i64,
}

impl History {
    fn generate() -> Self {
        let end = {
            let now = chrono::Utc::now().timestamp();
            now - now.rem_euclid(3600) - 3 * 3600
        };
        let cfg = SynthConfig::new(11, end - DAYS * 86_400, end);
        let dir = TempDir::new("rs-collector-faults").unwrap();
        let input = dir.path().join("metrics.om");
        let file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        synth::generate(&cfg, file).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        prometheus::backfill(
            &input,
            &data,
            prometheus::max_block_duration_for(cfg.end - cfg.start),
        )
        .unwrap();
        std::fs::remove_file(&input).unwrap();
        History {
            dir,
            start: cfg.start,
            end: cfg.end,
        }
    }

    fn hours(&self) -> Vec<i64> {
        (self.start..self.end).step_by(3600).collect()
    }

    fn serve(&self) -> Prometheus {
        Prometheus::from_tsdb_copy(&self.dir.path().join("data")).unwrap()
    }
}

/// The history of the tests running now; the first one backfills it, the last one to
/// finish removes it (a static would leave it on disk).
async fn shared_history() -> Arc<History> {
    static SHARED: Mutex<Weak<History>> = Mutex::new(Weak::new());
    tokio::task::spawn_blocking(|| {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.upgrade().unwrap_or_else(|| {
            let history = Arc::new(History::generate());
            *shared = Arc::downgrade(&history);
            history
        })
    })
    .await
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store, dropped with its database.
struct TestStore {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
    db: Option<TestDatabase>,
}

impl TestStore {
    async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = TempDir::new("rs-collector-faults-sqlite").unwrap();
                let url = format!("sqlite://{}", dir.path().join("rs.db").display());
                TestStore {
                    store: rightsizer::store::connect(&url).await.unwrap(),
                    _dir: Some(dir),
                    db: None,
                }
            }
            Backend::Postgres => {
                let db = TestDatabase::create().await;
                TestStore {
                    store: rightsizer::store::connect(db.url()).await.unwrap(),
                    _dir: None,
                    db: Some(db),
                }
            }
        }
    }

    async fn close(self) {
        drop(self.store);
        if let Some(db) = self.db {
            db.drop_database().await;
        }
    }
}

async fn collect(prom: &PromClient, store: &dyn Store, history: &History) -> CollectReport {
    tokio::time::timeout(
        PATIENCE,
        collector::collect(prom, store, &options(history, Progress::default())),
    )
    .await
    .expect("collection hangs")
    .unwrap()
}

/// What an uninterrupted run stores, into a store of its own.
async fn uninterrupted(prom: &PromClient, backend: Backend, history: &History) -> StoreDump {
    let store = TestStore::new(backend).await;
    let report = collect(prom, store.store.as_ref(), history).await;
    assert_eq!(report.hours_collected, history.hours().len() as u64);
    let reference = StoreDump::read(store.store.as_ref(), CLUSTER).await;
    store.close().await;
    let hours_with_usage: BTreeSet<i64> = reference
        .usage
        .values()
        .flatten()
        .map(|u| u.hour_start)
        .collect();
    assert_eq!(
        hours_with_usage,
        history.hours().into_iter().collect(),
        "the synthetic cluster runs every hour, so a collected hour without usage rows is lost data"
    );
    reference
}

/// Checks the store holds whole chunks only, each row for row as `reference` (an
/// uninterrupted run) holds it, and nothing of the hours not marked collected; returns
/// the hours marked collected.
async fn assert_whole_chunks(
    store: &dyn Store,
    history: &History,
    reference: &StoreDump,
) -> BTreeSet<i64> {
    let stored = StoreDump::read(store, CLUSTER).await;
    let collected: BTreeSet<i64> = stored.collected_hours.iter().copied().collect();
    for chunk in collector::plan(&history.hours(), CHUNK_HOURS) {
        let marked = chunk.iter().filter(|h| collected.contains(h)).count();
        assert!(
            marked == 0 || marked == chunk.len(),
            "chunk {chunk:?} is partly marked collected: {collected:?}"
        );
    }
    let (usage, signals) = reference.hourly_rows_of(&collected);
    let difference = dump::first_difference_by_key(
        "usage",
        &usage,
        &dump::non_empty(&stored.usage),
    )
    .or_else(|| {
        dump::first_difference_by_key("signals", &signals, &dump::non_empty(&stored.signals))
    });
    assert!(
        difference.is_none(),
        "the stored hours differ from the uninterrupted run's (left): {}",
        difference.unwrap_or_default()
    );
    let known: BTreeSet<_> = reference.containers.iter().map(|c| &c.key).collect();
    assert!(
        stored.containers.iter().all(|c| known.contains(&c.key)),
        "containers the uninterrupted run never saw"
    );
    collected
}

fn assert_same(got: &StoreDump, reference: &StoreDump) {
    if let Some(difference) = reference.first_difference(got) {
        panic!("the completed store differs from the uninterrupted run's (left): {difference}");
    }
    // Also covers a field added to the dump but not to `first_difference`.
    assert_eq!(got, reference);
}

/// Starts a run as a task and aborts it, as a crash would stop it, `turns` scheduler
/// turns after it reports its first commit.
async fn crash_a_run(prom: &PromClient, store: &Arc<dyn Store>, history: &History, turns: u32) {
    let committed = Arc::new(tokio::sync::Notify::new());
    let progress = {
        let committed = committed.clone();
        Progress::new(move |_, _| committed.notify_one())
    };
    let opts = options(history, progress);
    let (prom, store) = (prom.clone(), store.clone());
    let mut run =
        tokio::spawn(async move { collector::collect(&prom, store.as_ref(), &opts).await });
    tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            _ = committed.notified() => {}
            ended = &mut run => panic!("the run ended before it was aborted: {ended:?}"),
        }
    })
    .await
    .expect("no progress reported");
    // Counted in scheduler turns, not time: a chunk's write is so quick that aborts a
    // millisecond apart stepped right over it, while a turn lets the run take about one step.
    for _ in 0..turns {
        tokio::task::yield_now().await;
    }
    run.abort();
    let ended = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("abort hangs");
    assert!(
        ended.as_ref().is_err_and(|e| e.is_cancelled()),
        "the run ended before it was aborted: {ended:?}"
    );
}

/// Crashes run after run, each checked, then a run to the end.
async fn crashes_then_complete(backend: Backend) {
    let history = shared_history().await;
    let prometheus = {
        let history = history.clone();
        tokio::task::spawn_blocking(move || history.serve())
            .await
            .unwrap()
    };
    let prom = client(prometheus.url());
    let reference = uninterrupted(&prom, backend, &history).await;
    let total = history.hours().len();

    let store = TestStore::new(backend).await;
    let mut collected = BTreeSet::new();
    let mut crashes = 0;
    // Aborts ever more turns after a commit land in different places: a fetch, the
    // building of a chunk, inside its transaction. Each run commits at least one chunk;
    // a few are left for the last run.
    while total - collected.len() > 4 * CHUNK_HOURS as usize {
        crash_a_run(&prom, &store.store, &history, crashes % 10).await;
        crashes += 1;
        let now = assert_whole_chunks(store.store.as_ref(), &history, &reference).await;
        assert!(
            now.is_superset(&collected) && now.len() > collected.len(),
            "a crashed run keeps what it reported, and what runs before it wrote: \
             {collected:?} then {now:?}"
        );
        collected = now;
    }
    assert!(
        crashes >= 5,
        "only {crashes} crashes: chunks too big for the window"
    );

    let report = collect(&prom, store.store.as_ref(), &history).await;
    assert_eq!(
        (report.hours_already_collected, report.hours_collected),
        (collected.len() as u64, (total - collected.len()) as u64),
        "the last run fetches exactly the missing hours"
    );
    assert_same(
        &StoreDump::read(store.store.as_ref(), CLUSTER).await,
        &reference,
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_crashes_leave_whole_chunks_and_a_rerun_completes_them() {
    crashes_then_complete(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashes_leave_whole_chunks_and_a_rerun_completes_them() {
    crashes_then_complete(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_mid_run_fails_it_and_a_rerun_after_restart_completes_it() {
    let history = shared_history().await;
    let prometheus = {
        let history = history.clone();
        let served = tokio::task::spawn_blocking(move || history.serve());
        Arc::new(Mutex::new(served.await.unwrap()))
    };
    let url = prometheus.lock().unwrap().url().to_string();
    let reference = uninterrupted(&client(&url), Backend::Sqlite, &history).await;
    let total = history.hours().len();

    let store = TestStore::new(Backend::Sqlite).await;
    // Killed from the callback, right after a commit: the queries still to come find it
    // gone, and one in flight is cut off.
    let killed = Arc::new(AtomicBool::new(false));
    let progress = {
        let (prometheus, killed) = (prometheus.clone(), killed.clone());
        Progress::new(move |done, _| {
            if done >= HOURS_BEFORE_KILL && !killed.swap(true, Ordering::SeqCst) {
                prometheus.lock().unwrap().stop().unwrap();
            }
        })
    };
    // Spans of four chunks: remote read fetches a span before its first chunk is
    // committed, and the window must still have spans to read when Prometheus dies.
    let failed = tokio::time::timeout(
        PATIENCE,
        collector::collect(
            &client(&url),
            store.store.as_ref(),
            &CollectOptions {
                span_hours: 4 * CHUNK_HOURS as usize,
                ..options(&history, progress)
            },
        ),
    )
    .await
    .expect("a run against a dead Prometheus hangs");
    assert!(killed.load(Ordering::SeqCst), "Prometheus was never killed");
    match failed {
        Err(CollectError::Prometheus(PromError::Http { timeout: false, .. })) => {}
        other => panic!("expected a connection error after the retries, got {other:?}"),
    }
    let collected = assert_whole_chunks(store.store.as_ref(), &history, &reference).await;
    assert!(
        collected.len() >= HOURS_BEFORE_KILL as usize && collected.len() < total,
        "the run committed some hours before Prometheus went away, not the whole window: \
         {collected:?}"
    );

    let url = tokio::task::block_in_place(|| {
        let mut prometheus = prometheus.lock().unwrap();
        prometheus.restart().unwrap();
        prometheus.url().to_string()
    });
    let report = collect(&client(&url), store.store.as_ref(), &history).await;
    assert_eq!(
        (report.hours_already_collected, report.hours_collected),
        (collected.len() as u64, (total - collected.len()) as u64),
        "the rerun fetches exactly the missing hours"
    );
    assert_same(
        &StoreDump::read(store.store.as_ref(), CLUSTER).await,
        &reference,
    );
    store.close().await;
}
