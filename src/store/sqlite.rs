//! The embedded SQLite backend: one file (or memory), no setup.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use super::rows::ChunkPlan;
use super::sql::{self, PruneTarget};
use super::{history, packed, shared, Claim, StoreError};
use super::{PruneOptions, StoreSize, TablePrune};
use crate::model::{Chunk, Resource};

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

shared::store_impl! {
    SqliteStore, collate = "";

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

    #[tracing::instrument(
        skip_all,
        fields(cluster = %parts.first().map_or("", |c| c.cluster.as_str()), parts = parts.len(), usage_rows = parts.iter().map(|c| c.usage.len()).sum::<usize>())
    )]
    async fn write_parts(&self, parts: &[Chunk]) -> Result<(), StoreError> {
        let plan = ChunkPlan::new(parts)?;
        let mut tx = self.pool.begin().await?;
        history::write_chunk(&mut *tx, plan.cluster, &plan, &mut history::Written::default()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_parts(&self, _hours: &[i64]) -> Result<Box<dyn super::PartsWriter>, StoreError> {
        Ok(Box::new(history::OpenParts {
            tx: self.pool.begin().await?,
            written: history::Written::default(),
        }))
    }

    async fn claim_chunk(
        &self,
        _cluster: &str,
        _cell_start: i64,
    ) -> Result<Option<Claim>, StoreError> {
        // One process per SQLite file: nobody to contend with.
        Ok(Some(Claim::uncontended()))
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
}

sql::conn_impl!(
    SqliteConnection,
    Sqlite,
    text = sql::anonymous_placeholders,
    // SQLite's `||` makes text of its operands: the join is cast back to a blob.
    fn concat_bytes(&self, a: &str, b: &str) -> String {
        format!("cast({a} || {b} as blob)")
    }
);

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
            usage_rows += pack_usage(&mut tx, id).await?;
            signal_rows += pack_signals(&mut tx, id).await?;
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

/// Packs the usage hour rows of container `id` into day rows; returns how many it read.
async fn pack_usage(conn: &mut sqlx::SqliteConnection, id: i64) -> Result<usize, StoreError> {
    let hours: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "select resource, hour_start, sketch from usage_hours where container_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let rows = hours.len();
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
    history::write_usage_days(&mut *conn, &usage).await?;
    Ok(rows)
}

/// Packs the signal hour rows of container `id` into day rows; returns how many it read.
async fn pack_signals(conn: &mut sqlx::SqliteConnection, id: i64) -> Result<usize, StoreError> {
    let hours: Vec<(i64, i64, i64, f64, f64)> = sqlx::query_as(
        "select hour_start, restarts, oom_kills, cfs_periods, cfs_throttled_periods \
         from signal_hours where container_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let rows = hours.len();
    let mut signals = history::SignalDays::new();
    for (hour, restarts, oom_kills, periods, throttled) in hours {
        let count = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| {
                StoreError::Corrupt(format!("signals of container {id} at {hour}: {what} = {v}"))
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
    history::write_signal_days(&mut *conn, &signals).await?;
    Ok(rows)
}
