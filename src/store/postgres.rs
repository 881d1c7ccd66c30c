//! The production Postgres backend, shared by several replicas.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres};

use super::rows::ChunkPlan;
use super::sql::{self, PruneTarget};
use super::{history, shared, Claim, StoreError};
use super::{PruneOptions, StoreSize, TablePrune};
use crate::model::Chunk;

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

shared::store_impl! {
    // Byte order, like ContainerKey's Ord and SQLite, whatever the database's collation.
    PostgresStore, collate = " collate \"C\"";

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

    #[tracing::instrument(
        skip_all,
        fields(cluster = %parts.first().map_or("", |c| c.cluster.as_str()), parts = parts.len(), usage_rows = parts.iter().map(|c| c.usage.len()).sum::<usize>())
    )]
    async fn write_parts(&self, parts: &[Chunk]) -> Result<(), StoreError> {
        let plan = ChunkPlan::new(parts)?;
        let hours = plan.usage.iter().map(|u| u.hour_start);
        self.create_partitions(hours.chain(plan.signals.iter().map(|s| s.hour_start)))
            .await?;
        let mut tx = self.pool.begin().await?;
        history::write_chunk(&mut *tx, plan.cluster, &plan, &mut history::Written::default()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_parts(&self, hours: &[i64]) -> Result<Box<dyn super::PartsWriter>, StoreError> {
        // Before the transaction: a partition created inside it would hold its catalog
        // lock, which every other writer of the month waits for, until the span commits.
        self.create_partitions(hours.iter().copied()).await?;
        Ok(Box::new(history::OpenParts {
            tx: self.pool.begin().await?,
            written: history::Written::default(),
        }))
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
        Ok(Some(Claim::held(Box::new(AdvisoryLocks {
            conn: Some(conn),
            keys: vec![key],
        }))))
    }

    async fn claim_chunks(
        &self,
        cluster: &str,
        cell_starts: &[i64],
    ) -> Result<(Vec<bool>, Claim), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let (mut granted, mut keys) = (Vec::new(), Vec::new());
        for &cell in cell_starts {
            let key = super::claim_key(cluster, cell);
            let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            granted.push(got);
            if got {
                keys.push(key);
            }
        }
        let claim = if keys.is_empty() {
            Claim::uncontended()
        } else {
            Claim::held(Box::new(AdvisoryLocks {
                conn: Some(conn),
                keys,
            }))
        };
        Ok((granted, claim))
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
}

sql::conn_impl!(
    PgConnection,
    Postgres,
    text = sql::numbered,
    async fn lock_day(&mut self, cluster: &str, day: i64) -> Result<(), StoreError> {
        // Negated: a key apart from the collection cells' claims, which are positive.
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(super::claim_key(cluster, -day - 1))
            .execute(self)
            .await?;
        Ok(())
    }
);

/// A session advisory lock on a connection taken out of the pool. Released, the connection
/// goes back; dropped unreleased, the connection is closed, which frees the lock.
/// Advisory locks of collection cells, held on one connection (one cell's, or a span's).
struct AdvisoryLocks {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
    keys: Vec<i64>,
}

/// Unlocks `keys` on `conn`; a connection that fails to is closed instead of returned to
/// the pool, which frees whatever it still holds.
async fn unlock(mut conn: sqlx::pool::PoolConnection<Postgres>, keys: &[i64]) {
    for &key in keys {
        let unlocked = sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await;
        if !matches!(unlocked, Ok(true)) {
            tracing::warn!(
                key,
                "releasing a collection claim failed; closing its connection"
            );
            conn.close_on_drop();
            return;
        }
    }
}

#[async_trait]
impl super::ClaimHold for AdvisoryLocks {
    async fn release(mut self: Box<Self>) {
        if let Some(conn) = self.conn.take() {
            unlock(conn, &self.keys).await;
        }
    }
}

impl Drop for AdvisoryLocks {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}
