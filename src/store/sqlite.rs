//! The embedded SQLite backend: one file (or memory), no setup.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::rows::{
    check_cluster, filter_columns, keep_prepared, ChunkPlan, ContainerIdRow, ContainerRow,
    RecommendationRow, RecommendationValues, SignalRow, UsageRow, WorkloadRow, BATCH_ROWS,
};
use super::rows::{count_param, run_outcome_columns, RunRow, RUN_COLUMNS};
use super::rows::{limit_param, ReportListingRow, ReportRow, ReportValues};
use super::{Claim, RecommendationFilter, Store, StoreError};
use super::{NewRun, RunOutcome, RunStart, StoredRun};
use super::{PruneOptions, StoreSize, TablePrune};
use super::{ReportListing, StoredReport, StoredReportInput};
use crate::model::{
    Chunk, ContainerKey, ContainerObservation, Recommendation, SignalHour, UsageHour, WorkloadInfo,
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

/// A container with no history left after the cutoff (`?1`), last seen before it.
const STALE_CONTAINER: &str = "seen_at < ?1 \
     and not exists (select 1 from usage_hours u where u.container_id = containers.id and u.hour_start >= ?1) \
     and not exists (select 1 from signal_hours s where s.container_id = containers.id and s.hour_start >= ?1)";

impl SqliteStore {
    /// Counts, then deletes in batches of rowids, the rows of `table` matching `predicate`
    /// (the cutoff bound as `?1`); `day` is the expression of a row's day, if it has one.
    async fn prune_rows(
        &self,
        table: &str,
        predicate: &str,
        day: Option<&str>,
        options: &PruneOptions,
    ) -> Result<TablePrune, StoreError> {
        let (rows, days): (i64, i64) = sqlx::query_as(&format!(
            "select count(*), count(distinct {}) from {table} where {predicate}",
            day.unwrap_or("null")
        ))
        .bind(options.cutoff)
        .fetch_one(&self.pool)
        .await?;
        let mut out = TablePrune {
            table: table.into(),
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
            "delete from {table} where rowid in (select rowid from {table} where {predicate} limit ?2)"
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
        Ok(())
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

        for batch in plan.observed.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into containers (cluster, namespace, kind, workload, container, \
                 cpu_request_millicores, cpu_limit_millicores, memory_request_bytes, memory_limit_bytes, seen_at) ",
            );
            insert.push_values(batch, |mut row, observed| {
                let key = observed.key;
                row.push_bind(&key.cluster)
                    .push_bind(&key.namespace)
                    .push_bind(&key.kind)
                    .push_bind(&key.workload)
                    .push_bind(&key.container)
                    .push_bind(observed.resources.cpu_request_millicores)
                    .push_bind(observed.resources.cpu_limit_millicores)
                    .push_bind(observed.resources.memory_request_bytes)
                    .push_bind(observed.resources.memory_limit_bytes)
                    .push_bind(observed.seen_at);
            });
            // Backfilling an older window must not overwrite the requests/limits in force now.
            insert.push(
                " on conflict (cluster, namespace, kind, workload, container) do update set \
                 cpu_request_millicores = excluded.cpu_request_millicores, \
                 cpu_limit_millicores = excluded.cpu_limit_millicores, \
                 memory_request_bytes = excluded.memory_request_bytes, \
                 memory_limit_bytes = excluded.memory_limit_bytes, \
                 seen_at = excluded.seen_at \
                 where excluded.seen_at >= containers.seen_at",
            );
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

        for batch in plan.usage_only.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into containers (cluster, namespace, kind, workload, container, seen_at) ",
            );
            insert.push_values(batch, |mut row, (key, seen_at)| {
                row.push_bind(&key.cluster)
                    .push_bind(&key.namespace)
                    .push_bind(&key.kind)
                    .push_bind(&key.workload)
                    .push_bind(&key.container)
                    .push_bind(*seen_at);
            });
            // Usage alone says nothing about requests/limits: never touch an existing row.
            insert.push(" on conflict (cluster, namespace, kind, workload, container) do nothing");
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

        let mut ids = plan.id_map();
        for batch in plan.usage_keys.chunks(BATCH_ROWS) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "select id, cluster, namespace, kind, workload, container from containers \
                 where (cluster, namespace, kind, workload, container) in (",
            );
            select.push_values(batch, |mut row, key| {
                row.push_bind(&key.cluster)
                    .push_bind(&key.namespace)
                    .push_bind(&key.kind)
                    .push_bind(&key.workload)
                    .push_bind(&key.container);
            });
            select.push(")");
            let rows: Vec<ContainerIdRow> = select
                .build_query_as()
                .persistent(keep_prepared(batch.len()))
                .fetch_all(&mut *tx)
                .await?;
            ids.extend(rows.into_iter().map(ContainerIdRow::into_entry));
        }

        for batch in plan.usage.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into usage_hours (container_id, resource, hour_start, sample_count, sum, max, sketch) ",
            );
            insert.push_values(batch, |mut row, usage| {
                // Every usage key got a row above, in this transaction; a miss binds null and fails.
                row.push_bind(ids.get(usage.key).copied())
                    .push_bind(usage.resource.as_str())
                    .push_bind(usage.hour_start)
                    .push_bind(usage.sample_count)
                    .push_bind(usage.sum)
                    .push_bind(usage.max)
                    .push_bind(&usage.sketch);
            });
            // Replace, never add: re-ingesting a window must not double-count.
            insert.push(
                " on conflict (container_id, resource, hour_start) do update set \
                 sample_count = excluded.sample_count, sum = excluded.sum, max = excluded.max, \
                 sketch = excluded.sketch",
            );
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

        for batch in plan.signals.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into signal_hours (container_id, hour_start, restarts, oom_kills, cfs_periods, cfs_throttled_periods) ",
            );
            insert.push_values(batch, |mut row, signal| {
                row.push_bind(ids.get(&signal.key).copied())
                    .push_bind(signal.hour_start)
                    .push_bind(i64::from(signal.restarts))
                    .push_bind(i64::from(signal.oom_kills))
                    .push_bind(signal.cfs_periods)
                    .push_bind(signal.cfs_throttled_periods);
            });
            // Replace, never add, as for usage.
            insert.push(
                " on conflict (container_id, hour_start) do update set \
                 restarts = excluded.restarts, oom_kills = excluded.oom_kills, \
                 cfs_periods = excluded.cfs_periods, cfs_throttled_periods = excluded.cfs_throttled_periods",
            );
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

        for batch in plan.workloads.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "insert into workloads (cluster, namespace, kind, name, seen_at, body) ",
            );
            insert.push_values(batch, |mut row, (w, body)| {
                row.push_bind(&w.key.cluster)
                    .push_bind(&w.key.namespace)
                    .push_bind(&w.key.kind)
                    .push_bind(&w.key.name)
                    .push_bind(w.seen_at)
                    .push_bind(body);
            });
            // As for container specs: an older window must not overwrite newer facts.
            insert.push(
                " on conflict (cluster, namespace, kind, name) do update set \
                 seen_at = excluded.seen_at, body = excluded.body where excluded.seen_at >= workloads.seen_at",
            );
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

        for batch in plan.hours.chunks(BATCH_ROWS) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("insert into collected_hours (cluster, hour_start) ");
            insert.push_values(batch, |mut row, hour_start| {
                row.push_bind(&chunk.cluster).push_bind(*hour_start);
            });
            insert.push(" on conflict (cluster, hour_start) do nothing");
            insert
                .build()
                .persistent(keep_prepared(batch.len()))
                .execute(&mut *tx)
                .await?;
        }

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
        let rows: Vec<UsageRow> = sqlx::query_as(
            "select u.resource, u.hour_start, u.sample_count, u.sketch \
             from usage_hours u join containers c on c.id = u.container_id \
             where c.cluster = ? and c.namespace = ? and c.kind = ? and c.workload = ? and c.container = ? \
             and u.hour_start >= ? and u.hour_start < ? \
             order by u.resource, u.hour_start",
        )
        .bind(&key.cluster)
        .bind(&key.namespace)
        .bind(&key.kind)
        .bind(&key.workload)
        .bind(&key.container)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| row.into_usage_hour(key))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(key = %key))]
    async fn signals(
        &self,
        key: &ContainerKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<SignalHour>, StoreError> {
        let rows: Vec<SignalRow> = sqlx::query_as(
            "select s.hour_start, s.restarts, s.oom_kills, s.cfs_periods, s.cfs_throttled_periods \
             from signal_hours s join containers c on c.id = s.container_id \
             where c.cluster = ? and c.namespace = ? and c.kind = ? and c.workload = ? \
             and c.container = ? and s.hour_start >= ? and s.hour_start < ? \
             order by s.hour_start",
        )
        .bind(&key.cluster)
        .bind(&key.namespace)
        .bind(&key.kind)
        .bind(&key.workload)
        .bind(&key.container)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| row.into_signal_hour(key))
            .collect()
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
        let day = Some("hour_start / 86400");
        let workloads = format!(
            "seen_at < ?1 and not exists (select 1 from containers \
             where containers.cluster = workloads.cluster and containers.namespace = workloads.namespace \
             and containers.kind = workloads.kind and containers.workload = workloads.name \
             and not ({STALE_CONTAINER}))"
        );
        Ok(vec![
            self.prune_rows("usage_hours", "hour_start < ?1", day, options)
                .await?,
            self.prune_rows("signal_hours", "hour_start < ?1", day, options)
                .await?,
            self.prune_rows("collected_hours", "hour_start < ?1", day, options)
                .await?,
            self.prune_rows("containers", STALE_CONTAINER, None, options)
                .await?,
            self.prune_rows("workloads", &workloads, None, options)
                .await?,
        ])
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
