//! Where summaries, watermarks and recommendations live: one trait, a SQLite and a Postgres backend.

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{
    Chunk, ContainerKey, ContainerObservation, Recommendation, SignalHour, UsageHour, WorkloadInfo,
};
use crate::model::{RunKind, RunStatus};

mod history;
pub(crate) mod packed;
pub mod postgres;
pub mod retention;
mod rows;
mod shared;
mod sql;
pub mod sqlite;

pub use retention::{PruneOptions, StoreSize, TablePrune};

/// Errors from the store; messages never carry passwords.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL has a scheme we don't speak.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Could not reach or open the database.
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// The URL as [`crate::redact::url`] prints it.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// The disk holding the database is full; the failed write was rolled back.
    #[error("the disk holding the database is full ({0}): free space there, or move the database elsewhere (--database-url); the write that failed was rolled back and nothing of it was kept")]
    DiskFull(sqlx::Error),
    /// The caller asked to store something the schema can't hold.
    #[error("refused to store: {0}")]
    Invalid(String),
    /// A stored row could not be decoded.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // SQLite's SQLITE_FULL (13) and Postgres' disk_full (53100): say what to change
        // rather than repeat the driver's words.
        let full = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "13" || code == "53100");
        if full {
            StoreError::DiskFull(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// Which recommendations to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RecommendationFilter {
    /// Exact cluster.
    pub cluster: Option<String>,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact workload kind.
    pub kind: Option<String>,
    /// Exact workload name.
    pub workload: Option<String>,
}

/// A report to store. The store keeps JSON and does not interpret it (see `crate::report`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReportInput {
    /// Unix seconds the report was generated at.
    pub generated_at: i64,
    /// Its fleet summary, returned by [`Store::list_reports`] without the body.
    pub summary: serde_json::Value,
    /// The whole report.
    pub body: serde_json::Value,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    /// Id, assigned by the store, never reused.
    pub id: i64,
    /// Unix seconds the report was generated at.
    pub generated_at: i64,
    /// Its fleet summary.
    pub summary: serde_json::Value,
    /// The whole report.
    pub body: serde_json::Value,
}

/// A stored report without its body, as lists show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportListing {
    /// Id.
    pub id: i64,
    /// Unix seconds the report was generated at.
    pub generated_at: i64,
    /// Its fleet summary.
    pub summary: serde_json::Value,
}

/// A claim on one cell of collection work (a cluster's `chunk_hours` grid cell), so several
/// processes sharing a database fetch each chunk once. Release it after the chunk is
/// written; a claim dropped unreleased (a task aborted, a process killed) is freed by the
/// database when its connection closes.
pub struct Claim {
    inner: Option<Box<dyn ClaimHold>>,
}

/// What holds a claim in a backend.
#[async_trait]
pub trait ClaimHold: Send {
    /// Gives the claim up.
    async fn release(self: Box<Self>);
}

impl Claim {
    /// A claim nothing else can contend for (a database only this process writes).
    pub fn uncontended() -> Self {
        Claim { inner: None }
    }

    /// A claim held by a backend.
    pub fn held(hold: Box<dyn ClaimHold>) -> Self {
        Claim { inner: Some(hold) }
    }

    /// Gives the claim up.
    pub async fn release(mut self) {
        if let Some(hold) = self.inner.take() {
            hold.release().await;
        }
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Claim(held)"
        } else {
            "Claim(uncontended)"
        })
    }
}

/// An open transaction of parts (see [`Store::begin_parts`]).
#[async_trait]
pub trait PartsWriter: Send {
    /// Writes `parts` (of one cluster) into the transaction.
    async fn write(&mut self, parts: &[Chunk]) -> Result<(), StoreError>;
    /// Commits everything written.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A run to record as started (see [`Store::start_run`]).
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// Collect or analyze.
    pub kind: RunKind,
    /// Who started it: `api` or `schedule`.
    pub trigger: &'a str,
    /// The process running it (see [`crate::runs::holder`]).
    pub holder: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Until when (unix seconds) the run blocks others without a renewal.
    pub lease_until: i64,
}

/// What [`Store::start_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStart {
    /// Recorded with this sequence number.
    Started(i64),
    /// Refused: the run with this sequence number, of the same kind, is running.
    Busy(i64),
}

/// How a run ended (see [`Store::finish_run`]).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Unix seconds.
    pub finished_at: i64,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// Its report, or its error.
    pub result: Result<serde_json::Value, String>,
}

/// A stored run, as every replica reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// Sequence number, assigned by the store, never reused.
    pub seq: i64,
    /// Collect or analyze.
    pub kind: RunKind,
    /// As stored: a running run whose lease expired is still `Running` here.
    pub status: RunStatus,
    /// Who started it.
    pub trigger: String,
    /// The process running it.
    pub holder: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds; a running run past it is abandoned.
    pub lease_until: i64,
    /// Unix seconds, once done.
    pub finished_at: Option<i64>,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// The report, once succeeded.
    pub result: Option<serde_json::Value>,
    /// The error, once failed.
    pub error: Option<String>,
}

/// The error of a run whose holder stopped renewing its lease, written by the store when the
/// next run of its kind starts and shown by [`crate::runs`] before that.
pub fn abandoned_error(holder: &str) -> String {
    format!("{ABANDONED_PREFIX}{holder}{ABANDONED_SUFFIX}")
}

const ABANDONED_PREFIX: &str = "abandoned: the process running it (";
const ABANDONED_SUFFIX: &str = ") stopped renewing its lease, so it was stopped or cut off";

/// Finished runs older than the newest this many runs are deleted when a run starts.
const RUNS_KEPT: i64 = 1000;

/// The storage interface shared by both backends (see the contract tests in `tests/store_contract.rs`).
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Hours (hour-aligned unix seconds) in `[from, to)` already collected for `cluster`, ascending.
    async fn collected_hours(
        &self,
        cluster: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>, StoreError>;
    /// End (exclusive, unix seconds) of the newest collected hour of `cluster`.
    async fn watermark(&self, cluster: &str) -> Result<Option<i64>, StoreError>;
    /// Writes a chunk in one transaction: containers upserted (requests/limits only replaced by a
    /// newer `seen_at`), usage rows replaced (never added to), hours marked collected.
    async fn write_chunk(&self, chunk: &Chunk) -> Result<(), StoreError> {
        self.write_parts(std::slice::from_ref(chunk)).await
    }
    /// Writes one chunk given as parts of one cluster (the collector's namespace groups), as
    /// [`Store::write_chunk`] writes them joined: a big fleet's piece is never copied into one
    /// chunk, whose vectors would grow by doubling (28 MB of a 120 MB peak heap at 5,000
    /// containers).
    async fn write_parts(&self, parts: &[Chunk]) -> Result<(), StoreError>;
    /// Opens one transaction for the chunks of `hours` written part by part (a span's
    /// namespace groups, each as soon as it is built), so their summaries are never all in
    /// memory at once and none of them is kept unless all are: dropped without
    /// [`PartsWriter::commit`], it rolls back. Each [`PartsWriter::write`] writes as
    /// [`Store::write_parts`] does, so the hours of every part are marked collected.
    async fn begin_parts(&self, hours: &[i64]) -> Result<Box<dyn PartsWriter>, StoreError>;
    /// Known workload containers, optionally of one cluster, ordered by key.
    async fn containers(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<ContainerObservation>, StoreError>;
    /// Hourly usage of one workload container in `[from, to)`, ordered by resource then hour.
    async fn usage(
        &self,
        key: &ContainerKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageHour>, StoreError>;
    /// Hourly restarts, OOM kills and throttling of one workload container in `[from, to)`, by hour.
    async fn signals(
        &self,
        key: &ContainerKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<SignalHour>, StoreError>;
    /// Claims the collection cell starting at `cell_start` (unix seconds) of `cluster` for
    /// this process; `None` while another process holds it. On SQLite (one process per
    /// file) every claim is granted.
    async fn claim_chunk(
        &self,
        cluster: &str,
        cell_start: i64,
    ) -> Result<Option<Claim>, StoreError>;
    /// Claims several cells of `cluster` at once (a span of chunks read together): which
    /// of `cell_starts` were granted, and one claim holding them all, given up together.
    /// A backend that holds a claim on a connection holds these on one, so a span does not
    /// take a connection per cell.
    async fn claim_chunks(
        &self,
        cluster: &str,
        cell_starts: &[i64],
    ) -> Result<(Vec<bool>, Claim), StoreError> {
        let mut granted = Vec::with_capacity(cell_starts.len());
        for &cell in cell_starts {
            let claim = self.claim_chunk(cluster, cell).await?;
            // Only a backend without contention (every claim uncontended) keeps this
            // default; one whose claims hold something overrides it.
            granted.push(claim.is_some());
        }
        Ok((granted, Claim::uncontended()))
    }
    /// Leases the run of `job` for `period` to `holder` until `now + ttl_secs`: true when
    /// nobody ran it yet and no other holder's lease is still valid. Scheduled jobs of
    /// several replicas run once per period this way; an expired lease (its holder died)
    /// can be taken over.
    async fn lease_job(
        &self,
        job: &str,
        period: i64,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<bool, StoreError>;
    /// Marks the leased run of `job` for `period` done, so nobody runs it again.
    async fn finish_job(&self, job: &str, period: i64, holder: &str) -> Result<(), StoreError>;
    /// Workload facts (replicas, HPA, PDB, annotations), optionally of one cluster.
    async fn workloads(&self, cluster: Option<&str>) -> Result<Vec<WorkloadInfo>, StoreError>;
    /// Replaces every stored recommendation of `cluster` with `recs`, in one transaction.
    async fn replace_recommendations(
        &self,
        cluster: &str,
        recs: &[Recommendation],
    ) -> Result<(), StoreError>;
    /// Replaces the stored recommendation of one workload container (`rec.key`), leaving the
    /// others of its cluster as they are: the reaction to an OOM kill recomputes one container.
    async fn put_recommendation(&self, rec: &Recommendation) -> Result<(), StoreError>;
    /// Records OOM kills seen before their hour was collected; per container and hour the
    /// larger count is kept, so the same kill reported twice (two replicas watching, a
    /// re-list after a restart) counts once.
    async fn record_oom_kills(&self, kills: &[crate::model::OomKillHour])
        -> Result<(), StoreError>;
    /// The OOM kills recorded for `cluster` in hours starting at or after `from`.
    async fn oom_kills(
        &self,
        cluster: &str,
        from: i64,
    ) -> Result<Vec<crate::model::OomKillHour>, StoreError>;
    /// Changes whenever the stored recommendations change: (newest `computed_at`, row count).
    async fn recommendations_version(&self) -> Result<(i64, i64), StoreError>;
    /// Stored recommendations matching `filter`, ordered by namespace, kind, workload, container.
    async fn recommendations(
        &self,
        filter: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, StoreError>;
    /// Stores a report and returns its id.
    async fn save_report(&self, report: &StoredReportInput) -> Result<i64, StoreError>;
    /// The report with this id, if stored.
    async fn report(&self, id: i64) -> Result<Option<StoredReport>, StoreError>;
    /// The newest report (greatest `generated_at`, then greatest id), if any.
    async fn latest_report(&self) -> Result<Option<StoredReport>, StoreError>;
    /// At most `limit` reports without their bodies, newest first.
    async fn list_reports(&self, limit: usize) -> Result<Vec<ReportListing>, StoreError>;
    /// Records in-place resizes (and rollbacks) as sent.
    async fn record_changes(
        &self,
        changes: &[crate::model::ChangeRecord],
    ) -> Result<(), StoreError>;
    /// At most `limit` recorded changes, newest first, optionally of one cluster.
    async fn changes(
        &self,
        cluster: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::model::ChangeRecord>, StoreError>;
    /// Retention: deletes every report generated before `older_than` (unix seconds) that is not
    /// among the `keep_newest` newest; returns how many were deleted.
    async fn prune_reports(&self, keep_newest: usize, older_than: i64) -> Result<u64, StoreError>;

    // Runs: any replica reads any run; at most one of a kind runs fleet-wide.

    /// Records a running run of `run.kind`, unless one is running whose lease is still valid
    /// at `run.now`; one whose lease expired is marked failed ([`abandoned_error`]) first.
    /// Atomic across processes sharing the database.
    async fn start_run(&self, run: &NewRun<'_>) -> Result<RunStart, StoreError>;
    /// Records progress and extends the lease of a running run of `holder`; false when the
    /// run is no longer running under `holder` (finished, or taken as abandoned).
    async fn renew_run(
        &self,
        seq: i64,
        holder: &str,
        done: u64,
        total: u64,
        lease_until: i64,
    ) -> Result<bool, StoreError>;
    /// Records how a running run of `holder` ended; false when it was no longer running
    /// under `holder` (then nothing changes).
    async fn finish_run(
        &self,
        seq: i64,
        holder: &str,
        outcome: &RunOutcome,
    ) -> Result<bool, StoreError>;
    /// The run with this sequence number, if stored.
    async fn run(&self, seq: i64) -> Result<Option<StoredRun>, StoreError>;

    // Retention of history (see `retention.rs`).

    /// End (exclusive, unix seconds) of the newest collected hour of any cluster: retention
    /// counts back from it, as Prometheus counts back from its newest block.
    async fn history_end(&self) -> Result<Option<i64>, StoreError>;
    /// Deletes (or with `dry_run` only counts) usage, signals and collected hours before
    /// `cutoff`, then containers and workloads last seen before it with no history left.
    /// Every statement deletes at most `batch_rows` rows in its own transaction, so writers
    /// wait for one batch at most; Postgres drops the partitions of whole months instead.
    async fn prune_history(&self, options: &PruneOptions) -> Result<Vec<TablePrune>, StoreError>;
    /// Creates ahead of time what writes of history in `[from, until)` need (Postgres:
    /// monthly partitions); nothing on SQLite.
    async fn prepare_history(&self, from: i64, until: i64) -> Result<(), StoreError>;
    /// What the store takes on disk.
    async fn size(&self) -> Result<StoreSize, StoreError>;
}

/// Leases older than this are deleted.
const LEASE_KEEP_SECS: i64 = 7 * 86_400;

/// The advisory-lock key of a collection cell: FNV-1a of the cluster and the cell, stable
/// across processes and versions. A collision only makes two cells wait for each other.
fn claim_key(cluster: &str, cell_start: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"rightsizer/collect/"
        .iter()
        .chain(cluster.as_bytes())
        .chain(b"/")
        .chain(&cell_start.to_le_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Opens the store named by `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`) and migrates it.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(sqlite::SqliteStore::connect(url).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(postgres::PostgresStore::connect(url).await?)
    } else {
        return Err(StoreError::UnsupportedUrl(crate::redact::url(url)));
    };
    store.migrate().await?;
    Ok(store)
}
