//! The production Postgres backend, shared by several replicas.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder};

use super::rows::{
    check_cluster, filter_columns, keep_prepared, ChunkPlan, ContainerRow, RecommendationRow,
    RecommendationValues, WorkloadRow, BATCH_ROWS,
};
use super::rows::{count_param, run_outcome_columns, RunRow, RUN_COLUMNS};
use super::rows::{limit_param, ReportListingRow, ReportRow, ReportValues};
use super::sql::{self, PruneTarget, Statement};
use super::{history, Claim, RecommendationFilter, Store, StoreError};
use super::{NewRun, RunOutcome, RunStart, StoredRun};
use super::{PruneOptions, StoreSize, TablePrune};
use super::{ReportListing, StoredReport, StoredReportInput};
use crate::model::{
    Chunk, ContainerKey, ContainerObservation, Recommendation, SignalHour, UsageHour, WorkloadInfo,
};

/// How long opening a connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per replica: batched writes, small reads, and one per collection claim in flight.
const MAX_CONNECTIONS: u32 = 8;

/// A store in a Postgres database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Months (their first second) known to have their partitions, so a write checks the
    /// catalog once per month and process.
    partitioned_months: Arc<Mutex<BTreeSet<i64>>>,
}

impl PostgresStore {
    /// Connects to the database named by a `postgres://` URL.
    ///
    /// Does not migrate; [`crate::store::connect`] does both.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let connect_error = |source| StoreError::Connect {
            url: crate::redact::url(url),
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        // One direct connection first: a pool retries a refused connection until its timeout and then
        // reports only "timed out", while this reports what actually went wrong, at once.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                connect_error(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                )))
            })?
            .map_err(connect_error)?;
        // Closing politely is a courtesy; the pool opens its own connections either way.
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PostgresStore {
            pool,
            partitioned_months: Default::default(),
        })
    }
}

/// The tables of day rows, partitioned by month (migration 0007).
const DAY_TABLES: [&str; 2] = ["usage_days", "signal_days"];

/// Advisory-lock key serializing partition changes between replicas.
const PARTITION_LOCK: i64 = 0x7273_7061_7274; // "rspart"

/// The partition of `table` for the month starting at `month_start`: `<table>_pYYYYMM`.
fn partition_name(table: &str, month_start: i64) -> String {
    let month = chrono::DateTime::from_timestamp(month_start, 0).unwrap_or_default();
    format!("{table}_p{}", month.format("%Y%m"))
}

/// The month `[start, end)` of a partition named by [`partition_name`].
fn partition_month(table: &str, name: &str) -> Option<(i64, i64)> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 6 {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u32 = digits[4..].parse().ok()?;
    let first = chrono::NaiveDate::from_ymd_opt(year, month, 1)?;
    Some(super::retention::month_of(
        first.and_hms_opt(0, 0, 0)?.and_utc().timestamp(),
    ))
}

impl PostgresStore {
    /// Makes sure the months holding `hours` have their partitions.
    async fn create_partitions(&self, hours: impl Iterator<Item = i64>) -> Result<(), StoreError> {
        let months: BTreeSet<i64> = hours.map(|h| super::retention::month_of(h).0).collect();
        for month in months {
            self.create_month(month).await?;
        }
        Ok(())
    }

    /// Creates the partitions of the month starting at `month_start`, moving any rows of it
    /// that landed in a DEFAULT partition meanwhile (creating the partition beside them
    /// would fail).
    async fn create_month(&self, month_start: i64) -> Result<(), StoreError> {
        if self.known_month(month_start) {
            return Ok(());
        }
        let (start, end) = super::retention::month_of(month_start);
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        for table in DAY_TABLES {
            let name = partition_name(table, start);
            let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
            if exists {
                continue;
            }
            sqlx::query(&format!("create table {name} (like {table} including all)"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "with moved as (delete from {table}_default where day >= $1 and day < $2 returning *) \
                 insert into {name} select * from moved"
            ))
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "alter table {table} attach partition {name} for values from ({start}) to ({end})"
            ))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.partitioned_months
            .lock()
            .expect("never poisoned")
            .insert(start);
        Ok(())
    }

    fn known_month(&self, month_start: i64) -> bool {
        self.partitioned_months
            .lock()
            .expect("never poisoned")
            .contains(&month_start)
    }

    /// The monthly partitions of `table` wholly before `cutoff`, oldest first.
    async fn partitions_before(
        &self,
        table: &str,
        cutoff: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
             where i.inhparent = to_regclass($1)",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        let mut old: Vec<(String, i64)> = names
            .into_iter()
            .filter_map(|n| partition_month(table, &n).map(|(start, end)| (n, start, end)))
            .filter(|(_, _, end)| *end <= cutoff)
            .map(|(n, start, _)| (n, start))
            .collect();
        old.sort_by_key(|(_, start)| *start);
        Ok(old)
    }

    /// Drops the partitions of `table` wholly before the cutoff, counting what they held;
    /// returns their months.
    async fn drop_partitions(
        &self,
        table: &str,
        options: &PruneOptions,
        out: &mut TablePrune,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut months = Vec::new();
        for (name, start) in self.partitions_before(table, options.cutoff).await? {
            months.push(super::retention::month_of(start));
            let (rows, days): (i64, i64) =
                sqlx::query_as(&format!("select count(*), count(distinct day) from {name}"))
                    .fetch_one(&self.pool)
                    .await?;
            out.rows += rows as u64;
            out.days += days as u64;
            out.partitions.push(name.clone());
            if options.dry_run {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            sqlx::query("select pg_advisory_xact_lock($1)")
                .bind(PARTITION_LOCK)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("alter table {table} detach partition {name}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("drop table {name}"))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.partitioned_months
                .lock()
                .expect("never poisoned")
                .remove(&start);
        }
        Ok(months)
    }

    /// Counts, then deletes in batches, the rows of `target` before the cutoff.
    async fn prune_rows(
        &self,
        target: &PruneTarget,
        options: &PruneOptions,
        out: &mut TablePrune,
    ) -> Result<(), StoreError> {
        let PruneTarget {
            table,
            key,
            predicate,
            day,
        } = target;
        let (rows, days): (i64, i64) = sqlx::query_as(&format!(
            "select count(*), count(distinct {}) from {table} where {predicate}",
            day.unwrap_or("null::bigint")
        ))
        .bind(options.cutoff)
        .fetch_one(&self.pool)
        .await?;
        out.days += days as u64;
        if options.dry_run {
            out.rows += rows as u64;
            return Ok(());
        }
        let delete = format!(
            "delete from {table} where ({key}) in \
             (select {key} from {table} where {predicate} limit $2)"
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
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx takes an advisory lock, so replicas starting together migrate one at a time.
        sqlx::migrate!("./migrations/postgres")
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
             where cluster = $1 and hour_start >= $2 and hour_start < $3 \
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
            sqlx::query_scalar("select max(hour_start) from collected_hours where cluster = $1")
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
        let hours = plan.usage.iter().map(|u| u.hour_start);
        self.create_partitions(hours.chain(plan.signals.iter().map(|s| s.hour_start)))
            .await?;
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
        let mut select = QueryBuilder::<Postgres>::new(
            "select cluster, namespace, kind, workload, container, cpu_request_millicores, \
             cpu_limit_millicores, memory_request_bytes, memory_limit_bytes, seen_at from containers",
        );
        if let Some(cluster) = cluster {
            select.push(" where cluster = ").push_bind(cluster);
        }
        // Byte order, like ContainerKey's Ord and SQLite, whatever the database's collation.
        select.push(
            " order by cluster collate \"C\", namespace collate \"C\", kind collate \"C\", \
             workload collate \"C\", container collate \"C\"",
        );
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
            QueryBuilder::<Postgres>::new("select namespace, kind, name, body from workloads");
        if let Some(cluster) = cluster {
            select.push(" where cluster = ").push_bind(cluster);
        }
        select.push(" order by cluster, namespace, kind, name");
        let rows: Vec<WorkloadRow> = select.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(WorkloadRow::into_info).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn recommendations_version(&self) -> Result<(i64, i64), StoreError> {
        let row: (i64, i64) = sqlx::query_as(
            "select coalesce(max(computed_at), 0)::bigint, count(*)::bigint from recommendations",
        )
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
        sqlx::query("delete from recommendations where cluster = $1")
            .bind(cluster)
            .execute(&mut *tx)
            .await?;
        for batch in values.chunks(BATCH_ROWS) {
            let mut insert = QueryBuilder::<Postgres>::new(
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
        let mut select = QueryBuilder::<Postgres>::new(
            "select cluster, namespace, kind, workload, container, body from recommendations where true",
        );
        for (column, value) in filter_columns(filter) {
            if let Some(value) = value {
                select
                    .push(format_args!(" and {column} = "))
                    .push_bind(value);
            }
        }
        select.push(
            " order by namespace collate \"C\", kind collate \"C\", workload collate \"C\", \
             container collate \"C\", cluster collate \"C\"",
        );
        let rows: Vec<RecommendationRow> = select.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(RecommendationRow::decode).collect()
    }

    #[tracing::instrument(skip_all, fields(generated_at = report.generated_at))]
    async fn save_report(&self, report: &StoredReportInput) -> Result<i64, StoreError> {
        let values = ReportValues::new(report);
        let id = sqlx::query_scalar(
            "insert into reports (generated_at, summary, body) values ($1, $2, $3) returning id",
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
            sqlx::query_as("select id, generated_at, summary, body from reports where id = $1")
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
             order by generated_at desc, id desc limit $1",
        )
        .bind(limit_param(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ReportListingRow::decode).collect()
    }

    async fn claim_chunk(
        &self,
        cluster: &str,
        cell_start: i64,
    ) -> Result<Option<Claim>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let key = super::claim_key(cluster, cell_start);
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if !got {
            return Ok(None);
        }
        Ok(Some(Claim::held(Box::new(AdvisoryLock {
            conn: Some(conn),
            key,
        }))))
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
        sqlx::query("delete from job_leases where lease_until < $1")
            .bind(now - super::LEASE_KEEP_SECS)
            .execute(&self.pool)
            .await?;
        let leased: Option<String> = sqlx::query_scalar(
            "insert into job_leases (job, period, holder, lease_until, done) values ($1, $2, $3, $4, false) \
             on conflict (job, period) do update set holder = excluded.holder, lease_until = excluded.lease_until \
             where job_leases.done = false and (job_leases.lease_until < $5 or job_leases.holder = excluded.holder) \
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
        sqlx::query(
            "update job_leases set done = true where job = $1 and period = $2 and holder = $3",
        )
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
        let targets = sql::prune_targets();
        let mut out = Vec::new();
        for target in &targets {
            let mut pruned = TablePrune {
                table: target.table.into(),
                ..Default::default()
            };
            let mut target = target.clone();
            if DAY_TABLES.contains(&target.table) {
                let dropped = self
                    .drop_partitions(target.table, options, &mut pruned)
                    .await?;
                // A dry run still has the partitions it counted: don't count them twice.
                if options.dry_run {
                    for (start, end) in dropped {
                        target.predicate += &format!(" and not (day >= {start} and day < {end})");
                    }
                }
            }
            self.prune_rows(&target, options, &mut pruned).await?;
            out.push(pruned);
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(%from, %until))]
    async fn prepare_history(&self, from: i64, until: i64) -> Result<(), StoreError> {
        let mut month = super::retention::month_of(from).0;
        while month < until {
            self.create_month(month).await?;
            month = super::retention::month_of(month).1;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn size(&self) -> Result<StoreSize, StoreError> {
        let bytes: i64 = sqlx::query_scalar(
            "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c \
             where c.relnamespace = current_schema()::regnamespace and c.relkind = 'r'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StoreSize {
            bytes: bytes as u64,
            free_bytes: 0,
        })
    }

    #[tracing::instrument(skip_all, fields(%keep_newest, %older_than))]
    async fn prune_reports(&self, keep_newest: usize, older_than: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "delete from reports where generated_at < $1 and id not in \
             (select id from reports order by generated_at desc, id desc limit $2)",
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
                 error = $1::text || holder || $2::text \
                 where kind = $3 and status = 'running' and lease_until < $4",
            )
            .bind(super::ABANDONED_PREFIX)
            .bind(super::ABANDONED_SUFFIX)
            .bind(run.kind.as_str())
            .bind(run.now)
            .execute(&self.pool)
            .await?;
            let started: Option<i64> = sqlx::query_scalar(
                "insert into runs (kind, status, trigger, holder, started_at, lease_until) \
                 values ($1, 'running', $2, $3, $4, $5) \
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
                     (select seq from runs order by seq desc offset $1 limit 1)",
                )
                .bind(super::RUNS_KEPT)
                .execute(&self.pool)
                .await?;
                return Ok(RunStart::Started(seq));
            }
            let running: Option<i64> =
                sqlx::query_scalar("select seq from runs where kind = $1 and status = 'running'")
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
            "update runs set done = $1, total = $2, lease_until = $3 \
             where seq = $4 and holder = $5 and status = 'running'",
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
            "update runs set status = $1, result = $2, error = $3, finished_at = $4, \
             done = $5, total = $6 where seq = $7 and holder = $8 and status = 'running'",
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
            sqlx::query_as(&format!("select {RUN_COLUMNS} from runs where seq = $1"))
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
        row.map(RunRow::decode).transpose()
    }
}

#[async_trait]
impl sql::Conn for PgConnection {
    async fn execute(&mut self, stmt: &Statement<'_>) -> Result<u64, StoreError> {
        let args = sql::arguments::<Postgres>(&stmt.values)?;
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
        let args = sql::arguments::<Postgres>(&stmt.values)?;
        let query = sqlx::query_as_with(&stmt.text, args).persistent(stmt.persistent);
        Ok(query.fetch_all(self).await?)
    }

    async fn lock_day(&mut self, cluster: &str, day: i64) -> Result<(), StoreError> {
        // Negated: a key apart from the collection cells' claims, which are positive.
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(super::claim_key(cluster, -day - 1))
            .execute(self)
            .await?;
        Ok(())
    }
}

/// A session advisory lock on a connection taken out of the pool. Released, the connection
/// goes back; dropped unreleased, the connection is closed, which frees the lock.
struct AdvisoryLock {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
    key: i64,
}

#[async_trait]
impl super::ClaimHold for AdvisoryLock {
    async fn release(mut self: Box<Self>) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await;
            if !matches!(unlocked, Ok(true)) {
                tracing::warn!(
                    key = self.key,
                    "releasing a collection claim failed; closing its connection"
                );
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}
