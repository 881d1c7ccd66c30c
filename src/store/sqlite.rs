//! The embedded SQLite backend: one file (or memory), no setup.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::rows::{
    check_cluster, filter_columns, keep_prepared, ChunkPlan, ContainerRow, RecommendationRow,
    RecommendationValues, WorkloadRow, BATCH_ROWS,
};
use super::rows::{count_param, run_outcome_columns, RunRow, RUN_COLUMNS};
use super::rows::{limit_param, ReportListingRow, ReportRow, ReportValues};
use super::sql::{self, PruneTarget, Statement};
use super::{history, packed, Claim, RecommendationFilter, Store, StoreError};
use super::{NewRun, RunOutcome, RunStart, StoredRun};
use super::{PruneOptions, StoreSize, TablePrune};
use super::{ReportListing, StoredReport, StoredReportInput};
use crate::model::{
    Chunk, ContainerKey, ContainerObservation, Recommendation, Resource, SignalHour, UsageHour,
    WorkloadInfo,
};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for a file database; WAL lets readers run beside the one writer.
const MAX_CONNECTIONS: u32 = 4;

/// A store in a SQLite database file, or in memory for `sqlite::memory:`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by a `sqlite://PATH` or `sqlite::memory:` URL.
    ///
    /// Does not migrate; [`crate::store::connect`] does both.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let connect_error = |source| StoreError::Connect {
            url: crate::redact::url(url),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect_error)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = if is_in_memory(url) {
            // An in-memory database lives as long as its last connection: keep exactly one, forever,
            // so every query sees the same data.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .connect_with(
                    options
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal),
                )
                .await
        }
        .map_err(connect_error)?;
        Ok(SqliteStore { pool })
    }
}

/// Whether a SQLite URL names a memory database (`sqlite::memory:` or `?mode=memory`).
fn is_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|param| param == "mode=memory")
}

impl SqliteStore {
    /// Counts, then deletes in batches of rowids, the rows of `target` before the cutoff.
    async fn prune_rows(
        &self,
        target: &PruneTarget,
        options: &PruneOptions,
    ) -> Result<TablePrune, StoreError> {
        let PruneTarget {
            table,
            predicate,
            day,
            ..
        } = target;
        let (rows, days): (i64, i64) = sqlx::query_as(&format!(
            "select count(*), count(distinct {}) from {table} where {predicate}",
            day.unwrap_or("null")
        ))
        .bind(options.cutoff)
        .fetch_one(&self.pool)
        .await?;
        let mut out = TablePrune {
            table: table.to_string(),
            days: days as u64,
            ..Default::default()
        };
        if options.dry_run {
            out.rows = rows as u64;
            return Ok(out);
        }
        // Rows are stored roughly in time order, so the oldest rowids come first and each
        // batch finds its rows early in the scan.
        let delete = format!(
            "delete from {table} where rowid in (select rowid from {table} where {predicate} limit $2)"
        );
        loop {
            let deleted = sqlx::query(&delete)
                .bind(options.cutoff)
                .bind(i64::try_from(options.batch_rows).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await?
                .rows_affected();
            out.rows += deleted;
            out.batches += u64::from(deleted > 0);
            if deleted < options.batch_rows {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        self.pack_hour_rows().await
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(%cluster))]
    async fn collected_hours(
        &self,
        cluster: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let hours = sqlx::query_scalar(
            "select hour_start from collected_hours \
             where cluster = ? and hour_start >= ? and hour_start < ? \
             order by hour_start",
        )
        .bind(cluster)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(hours)
    }

    #[tracing::instrument(skip_all, fields(%cluster))]
    async fn watermark(&self, cluster: &str) -> Result<Option<i64>, StoreError> {
        let newest: Option<i64> =
            sqlx::query_scalar("select max(hour_start) from collected_hours where cluster = ?")
                .bind(cluster)
                .fetch_one(&self.pool)
                .await?;
        Ok(newest.map(|hour_start| hour_start + 3600))
    }

    #[tracing::instrument(
        skip_all,
        fields(cluster = %chunk.cluster, containers = chunk.containers.len(), usage_rows = chunk.usage.len())
    )]
    async fn write_chunk(&self, chunk: &Chunk) -> Result<(), StoreError> {
        let plan = ChunkPlan::new(chunk)?;
        let mut tx = self.pool.begin().await?;
        history::write_chunk(&mut *tx, &chunk.cluster, &plan).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(cluster = ?cluster))]
    async fn containers(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<ContainerObservation>, StoreError> {
        let mut select = QueryBuilder::<Sqlite>::new(
            "select cluster, namespace, kind, workload, container, cpu_request_millicores, \
             cpu_limit_millicores, memory_request_bytes, memory_limit_bytes, seen_at from containers",
        );
        if let Some(cluster) = cluster {
            select.push(" where cluster = ").push_bind(cluster);
        }
        select.push(" order by cluster, namespace, kind, workload, container");
        let rows: Vec<ContainerRow> = select.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(ContainerRow::into_observation)
            .collect())
    }

    #[tracing::instrument(skip_all, fields(key = %key))]
    async fn usage(
        &self,
        key: &ContainerKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageHour>, StoreError> {
        history::usage(&mut *self.pool.acquire().await?, key, from, to).await
    }

    #[tracing::instrument(skip_all, fields(key = %key))]
    async fn signals(
        &self,
        key: &ContainerKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<SignalHour>, StoreError> {
        history::signals(&mut *self.pool.acquire().await?, key, from, to).await
    }

    #[tracing::instrument(skip_all, fields(cluster = ?cluster))]
    async fn workloads(&self, cluster: Option<&str>) -> Result<Vec<WorkloadInfo>, StoreError> {
        let mut select =
            QueryBuilder::<Sqlite>::new("select namespace, kind, name, body from workloads");
        if let Some(cluster) = cluster {
            select.push(" where cluster = ").push_bind(cluster);
        }
        select.push(" order by cluster, namespace, kind, name");
        let rows: Vec<WorkloadRow> = select.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(WorkloadRow::into_info).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn recommendations_version(&self) -> Result<(i64, i64), StoreError> {
        let row: (i64, i64) =
            sqlx::query_as("select coalesce(max(computed_at), 0), count(*) from recommendations")
                .fetch_one(&self.pool)
                .await?;
        Ok(row)
    }

    #[tracing::instrument(skip_all, fields(%cluster, recommendations = recs.len()))]
    async fn replace_recommendations(
        &self,
        cluster: &str,
        recs: &[Recommendation],
    ) -> Result<(), StoreError> {
        check_cluster(cluster, recs)?;
        let values = recs
            .iter()
            .map(RecommendationValues::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from recommendations where cluster = ?")
            .bind(cluster)
            .execute(&mut *tx)
            .await?;
        for batch in values.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into recommendations \
                 (cluster, namespace, kind, workload, container, status, confidence, computed_at, body) ",
            );
            insert.push_values(batch, |mut row, rec| {
                let key = &rec.rec.key;
                row.push_bind(&key.cluster)
                    .push_bind(&key.namespace)
                    .push_bind(&key.kind)
                    .push_bind(&key.workload)
                    .push_bind(&key.container)
                    .push_bind(rec.rec.status.as_str())
                    .push_bind(rec.rec.confidence.as_str())
                    .push_bind(rec.rec.computed_at)
                    .push_bind(&rec.body);
            });
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn recommendations(
        &self,
        filter: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut select = QueryBuilder::<Sqlite>::new(
            "select cluster, namespace, kind, workload, container, body from recommendations where true",
        );
        for (column, value) in filter_columns(filter) {
            if let Some(value) = value {
                select
                    .push(format_args!(" and {column} = "))
                    .push_bind(value);
            }
        }
        select.push(" order by namespace, kind, workload, container, cluster");
        let rows: Vec<RecommendationRow> = select.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(RecommendationRow::decode).collect()
    }

    #[tracing::instrument(skip_all, fields(generated_at = report.generated_at))]
    async fn save_report(&self, report: &StoredReportInput) -> Result<i64, StoreError> {
        let values = ReportValues::new(report);
        let id = sqlx::query_scalar(
            "insert into reports (generated_at, summary, body) values (?, ?, ?) returning id",
        )
        .bind(values.generated_at)
        .bind(&values.summary)
        .bind(&values.body)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    #[tracing::instrument(skip_all, fields(%id))]
    async fn report(&self, id: i64) -> Result<Option<StoredReport>, StoreError> {
        let row: Option<ReportRow> =
            sqlx::query_as("select id, generated_at, summary, body from reports where id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(ReportRow::decode).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn latest_report(&self) -> Result<Option<StoredReport>, StoreError> {
        let row: Option<ReportRow> = sqlx::query_as(
            "select id, generated_at, summary, body from reports \
             order by generated_at desc, id desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(ReportRow::decode).transpose()
    }

    #[tracing::instrument(skip_all, fields(%limit))]
    async fn list_reports(&self, limit: usize) -> Result<Vec<ReportListing>, StoreError> {
        let rows: Vec<ReportListingRow> = sqlx::query_as(
            "select id, generated_at, summary from reports \
             order by generated_at desc, id desc limit ?",
        )
        .bind(limit_param(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ReportListingRow::decode).collect()
    }

    async fn claim_chunk(
        &self,
        _cluster: &str,
        _cell_start: i64,
    ) -> Result<Option<Claim>, StoreError> {
        // One process per SQLite file: nobody to contend with.
        Ok(Some(Claim::uncontended()))
    }

    async fn lease_job(
        &self,
        job: &str,
        period: i64,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<bool, StoreError> {
        // Leases of long-past periods are of no use to anyone.
        sqlx::query("delete from job_leases where lease_until < ?")
            .bind(now - super::LEASE_KEEP_SECS)
            .execute(&self.pool)
            .await?;
        let leased: Option<String> = sqlx::query_scalar(
            "insert into job_leases (job, period, holder, lease_until, done) values (?, ?, ?, ?, 0) \
             on conflict (job, period) do update set holder = excluded.holder, lease_until = excluded.lease_until \
             where job_leases.done = 0 and (job_leases.lease_until < ? or job_leases.holder = excluded.holder) \
             returning holder",
        )
        .bind(job)
        .bind(period)
        .bind(holder)
        .bind(now + ttl_secs)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(leased.is_some())
    }

    async fn finish_job(&self, job: &str, period: i64, holder: &str) -> Result<(), StoreError> {
        sqlx::query("update job_leases set done = 1 where job = ? and period = ? and holder = ?")
            .bind(job)
            .bind(period)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn history_end(&self) -> Result<Option<i64>, StoreError> {
        let newest: Option<i64> = sqlx::query_scalar("select max(hour_start) from collected_hours")
            .fetch_one(&self.pool)
            .await?;
        Ok(newest.map(|hour_start| hour_start + 3600))
    }

    #[tracing::instrument(skip_all, fields(cutoff = options.cutoff, dry_run = options.dry_run))]
    async fn prune_history(&self, options: &PruneOptions) -> Result<Vec<TablePrune>, StoreError> {
        let mut out = Vec::new();
        for target in sql::prune_targets() {
            out.push(self.prune_rows(&target, options).await?);
        }
        Ok(out)
    }

    async fn prepare_history(&self, _from: i64, _until: i64) -> Result<(), StoreError> {
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn size(&self) -> Result<StoreSize, StoreError> {
        let (pages, free, page_size): (i64, i64, i64) = sqlx::query_as(
            "select p.page_count, f.freelist_count, s.page_size \
             from pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StoreSize {
            bytes: (pages * page_size) as u64,
            free_bytes: (free * page_size) as u64,
        })
    }

    #[tracing::instrument(skip_all, fields(%keep_newest, %older_than))]
    async fn prune_reports(&self, keep_newest: usize, older_than: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "delete from reports where generated_at < ? and id not in \
             (select id from reports order by generated_at desc, id desc limit ?)",
        )
        .bind(older_than)
        .bind(limit_param(keep_newest))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, fields(kind = run.kind.as_str()))]
    async fn start_run(&self, run: &NewRun<'_>) -> Result<RunStart, StoreError> {
        // A run that finishes between a refused insert and the look-up leaves nothing to
        // report as busy: try again.
        for _ in 0..3 {
            sqlx::query(
                "update runs set status = 'failed', finished_at = lease_until, \
                 error = ? || holder || ? \
                 where kind = ? and status = 'running' and lease_until < ?",
            )
            .bind(super::ABANDONED_PREFIX)
            .bind(super::ABANDONED_SUFFIX)
            .bind(run.kind.as_str())
            .bind(run.now)
            .execute(&self.pool)
            .await?;
            let started: Option<i64> = sqlx::query_scalar(
                "insert into runs (kind, status, trigger, holder, started_at, lease_until) \
                 values (?, 'running', ?, ?, ?, ?) \
                 on conflict (kind) where status = 'running' do nothing returning seq",
            )
            .bind(run.kind.as_str())
            .bind(run.trigger)
            .bind(run.holder)
            .bind(run.now)
            .bind(run.lease_until)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(seq) = started {
                sqlx::query(
                    "delete from runs where status <> 'running' and seq <= \
                     (select seq from runs order by seq desc limit 1 offset ?)",
                )
                .bind(super::RUNS_KEPT)
                .execute(&self.pool)
                .await?;
                return Ok(RunStart::Started(seq));
            }
            let running: Option<i64> =
                sqlx::query_scalar("select seq from runs where kind = ? and status = 'running'")
                    .bind(run.kind.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(seq) = running {
                return Ok(RunStart::Busy(seq));
            }
        }
        Err(StoreError::Invalid(format!(
            "could not start a {} run: runs of that kind kept starting and finishing",
            run.kind.as_str()
        )))
    }

    async fn renew_run(
        &self,
        seq: i64,
        holder: &str,
        done: u64,
        total: u64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "update runs set done = ?, total = ?, lease_until = ? \
             where seq = ? and holder = ? and status = 'running'",
        )
        .bind(count_param(done))
        .bind(count_param(total))
        .bind(lease_until)
        .bind(seq)
        .bind(holder)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    #[tracing::instrument(skip_all, fields(%seq))]
    async fn finish_run(
        &self,
        seq: i64,
        holder: &str,
        outcome: &RunOutcome,
    ) -> Result<bool, StoreError> {
        let (status, result, error) = run_outcome_columns(outcome);
        let updated = sqlx::query(
            "update runs set status = ?, result = ?, error = ?, finished_at = ?, \
             done = ?, total = ? where seq = ? and holder = ? and status = 'running'",
        )
        .bind(status)
        .bind(result)
        .bind(error)
        .bind(outcome.finished_at)
        .bind(count_param(outcome.done))
        .bind(count_param(outcome.total))
        .bind(seq)
        .bind(holder)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn run(&self, seq: i64) -> Result<Option<StoredRun>, StoreError> {
        let row: Option<RunRow> =
            sqlx::query_as(&format!("select {RUN_COLUMNS} from runs where seq = ?"))
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
        row.map(RunRow::decode).transpose()
    }
}

#[async_trait]
impl sql::Conn for SqliteConnection {
    async fn execute(&mut self, stmt: &Statement<'_>) -> Result<u64, StoreError> {
        let args = sql::arguments::<Sqlite>(&stmt.values)?;
        let query = sqlx::query_with(&stmt.text, args).persistent(stmt.persistent);
        Ok(query.execute(self).await?.rows_affected())
    }

    async fn fetch_all<R>(&mut self, stmt: &Statement<'_>) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin
            + 'static,
    {
        let args = sql::arguments::<Sqlite>(&stmt.values)?;
        let query = sqlx::query_as_with(&stmt.text, args).persistent(stmt.persistent);
        Ok(query.fetch_all(self).await?)
    }
}

impl SqliteStore {
    /// Packs the hour rows of a database older than migration 0006 into day rows, then drops
    /// the hour tables, in one transaction: a database is either all hours or all days.
    /// SQL cannot build the packed bytes on SQLite (see the migration), so this runs once,
    /// after it; a database without hour tables is left alone. One container at a time, so
    /// memory holds one container's history, not the whole file's.
    #[tracing::instrument(skip_all)]
    async fn pack_hour_rows(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let old: i64 = sqlx::query_scalar(
            "select count(*) from sqlite_master where type = 'table' \
             and name in ('usage_hours', 'signal_hours')",
        )
        .fetch_one(&mut *tx)
        .await?;
        if old == 0 {
            return Ok(());
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "select container_id from usage_hours union select container_id from signal_hours",
        )
        .fetch_all(&mut *tx)
        .await?;
        let (mut usage_rows, mut signal_rows) = (0usize, 0usize);
        for id in ids {
            let hours: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
                "select resource, hour_start, sketch from usage_hours where container_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            usage_rows += hours.len();
            let mut usage = history::UsageDays::new();
            for (resource, hour, sketch) in hours {
                let resource = Resource::parse(&resource).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "usage hour of container {id} at {hour}: unknown resource {resource:?}"
                    ))
                })?;
                usage
                    .entry((id, resource.as_str(), packed::day_of(hour)))
                    .or_default()
                    .insert(history::aligned(hour)?, sketch);
            }
            history::write_usage_days(&mut *tx, &usage).await?;

            let hours: Vec<(i64, i64, i64, f64, f64)> = sqlx::query_as(
                "select hour_start, restarts, oom_kills, cfs_periods, cfs_throttled_periods \
                 from signal_hours where container_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            signal_rows += hours.len();
            let mut signals = history::SignalDays::new();
            for (hour, restarts, oom_kills, periods, throttled) in hours {
                let count = |v: i64, what: &str| {
                    u32::try_from(v).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "signals of container {id} at {hour}: {what} = {v}"
                        ))
                    })
                };
                signals
                    .entry((id, packed::day_of(hour)))
                    .or_default()
                    .insert(
                        history::aligned(hour)?,
                        (
                            count(restarts, "restarts")?,
                            count(oom_kills, "oom_kills")?,
                            periods,
                            throttled,
                        ),
                    );
            }
            history::write_signal_days(&mut *tx, &signals).await?;
        }
        sqlx::query("drop table if exists usage_hours")
            .execute(&mut *tx)
            .await?;
        sqlx::query("drop table if exists signal_hours")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(usage_rows, signal_rows, "packed hour rows into day rows");
        Ok(())
    }
}
