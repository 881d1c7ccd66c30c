//! Retention: history older than `retention` (90 days by default) is deleted, so the store
//! stops growing once it holds that much. `rightsizer prune` and `serve`'s daily job both
//! call [`prune`].

use std::time::{Duration, Instant};

use super::{packed, Store, StoreError};

/// Rows deleted per statement: small enough that a writer waits for one batch at most.
pub const BATCH_ROWS: u64 = 5_000;

/// Months of partitions created ahead of the newest write, so no write needs one.
const MONTHS_AHEAD: i64 = 2;

/// What [`Store::prune_history`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// History before this (unix seconds, the start of a UTC day) goes.
    pub cutoff: i64,
    /// Rows deleted per statement at most.
    pub batch_rows: u64,
    /// Count only.
    pub dry_run: bool,
}

/// What a prune removed (or would remove) from one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TablePrune {
    /// The table.
    pub table: String,
    /// Rows removed (whole partitions included).
    pub rows: u64,
    /// Distinct UTC days those rows covered (0 for tables not keyed by time).
    pub days: u64,
    /// Delete statements run.
    pub batches: u64,
    /// Partitions detached and dropped (Postgres), oldest first.
    pub partitions: Vec<String>,
}

/// What the store takes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreSize {
    /// Bytes on disk: the SQLite file with its WAL, or the Postgres tables with their indexes.
    pub bytes: u64,
    /// Of them, free pages SQLite fills before the file grows again (0 on Postgres).
    pub free_bytes: u64,
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PruneReport {
    /// History before this went; `None` when nothing was ever collected.
    pub cutoff: Option<i64>,
    /// Per table.
    pub tables: Vec<TablePrune>,
    /// Wall time of the prune.
    pub elapsed_secs: f64,
    /// Only counted, nothing deleted.
    pub dry_run: bool,
}

/// The first instant kept: `retention` before the newest collected hour (or `now`, if the
/// store claims a later one), floored to a UTC day so both backends cut at the same place.
pub fn cutoff(history_end: i64, now: i64, retention: Duration) -> i64 {
    let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    packed::day_of(history_end.min(now).saturating_sub(keep))
}

/// Start of the month (UTC) holding `t`, and of the next one.
pub fn month_of(t: i64) -> (i64, i64) {
    use chrono::{Datelike, TimeZone, Utc};
    let at = Utc
        .timestamp_opt(t, 0)
        .single()
        .unwrap_or_else(Utc::now)
        .date_naive();
    let first = at.with_day(1).expect("day 1 exists");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("in range");
    let secs = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp()
    };
    (secs(first), secs(next))
}

/// Prunes the history of `store` older than `retention` and prepares the months ahead.
pub async fn prune(
    store: &dyn Store,
    retention: Duration,
    now: i64,
    dry_run: bool,
) -> Result<PruneReport, StoreError> {
    let started = Instant::now();
    if !dry_run {
        let mut until = now;
        for _ in 0..MONTHS_AHEAD {
            until = month_of(until).1;
        }
        store.prepare_history(now, until).await?;
    }
    let Some(end) = store.history_end().await? else {
        return Ok(PruneReport {
            cutoff: None,
            tables: Vec::new(),
            elapsed_secs: started.elapsed().as_secs_f64(),
            dry_run,
        });
    };
    let cutoff = cutoff(end, now, retention);
    let tables = store
        .prune_history(&PruneOptions {
            cutoff,
            batch_rows: BATCH_ROWS,
            dry_run,
        })
        .await?;
    Ok(PruneReport {
        cutoff: Some(cutoff),
        tables,
        elapsed_secs: started.elapsed().as_secs_f64(),
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_counts_back_from_the_newest_hour_to_a_day_start() {
        // 2024-03-10T05:00Z, 90 days → 2023-12-11T05:00Z → 2023-12-11T00:00Z.
        let end = 1_710_046_800;
        let day = Duration::from_secs(86_400);
        assert_eq!(cutoff(end, i64::MAX, day * 90), 1_702_252_800);
        // A clock behind the newest hour wins.
        assert_eq!(cutoff(end, end - 86_400, day), 1_709_856_000);
        assert!(cutoff(end, end, Duration::MAX) < 0);
    }

    #[test]
    fn months_have_their_calendar_length() {
        // 2024-02-15 → February 2024 (29 days).
        let (first, next) = month_of(1_707_955_200);
        assert_eq!(first, 1_706_745_600);
        assert_eq!(next - first, 29 * 86_400);
        // 2023-12-31T23:59:59Z → December; the next month starts in 2024.
        assert_eq!(month_of(1_704_067_199), (1_701_388_800, 1_704_067_200));
    }
}
