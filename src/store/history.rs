//! History in day rows, the layout of both backends: the chunk write (read, merge, rewrite
//! the day rows it touches, or append to them when it only adds later hours) and the reads
//! of usage and signal hours, over a [`Conn`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::packed;
use super::rows::{usage_hour, ChunkPlan, ContainerIdRow, BATCH_ROWS};
use super::sql::{self, Conn, Statement, Value};
use super::StoreError;
use crate::model::{ContainerKey, SignalHour, UsageHour};
use crate::sketch::Sketch;

/// Usage hours by day row: per (container id, resource, day), each hour's sketch.
pub(in crate::store) type UsageDays = BTreeMap<sql::UsageDayKey, BTreeMap<i64, Vec<u8>>>;

/// Signal hours by day row: per (container id, day), each hour's values.
pub(in crate::store) type SignalDays = BTreeMap<(i64, i64), BTreeMap<i64, packed::Signals>>;

/// A transaction parts are written into one after another (see [`super::Store::begin_parts`]).
pub(in crate::store) struct OpenParts<DB: sqlx::Database> {
    pub tx: sqlx::Transaction<'static, DB>,
    pub written: Written,
}

/// What a transaction has written so far, so that each write into it knows which day rows
/// it may append to ([`later_days`]): the hours it marked collected are no longer "before"
/// a later namespace group's hours, whose rows do not hold them.
#[derive(Default)]
pub(in crate::store) struct Written {
    /// Per day written: the latest hour collected before the transaction, if any.
    latest_before: BTreeMap<i64, Option<i64>>,
    /// Usage day rows written, as (container id, day).
    usage: HashSet<(i64, i64)>,
    /// Signal day rows written, as (container id, day).
    signals: HashSet<(i64, i64)>,
}

#[async_trait::async_trait]
impl<DB> super::PartsWriter for OpenParts<DB>
where
    DB: sqlx::Database,
    DB::Connection: Conn,
{
    async fn write(&mut self, parts: &[crate::model::Chunk]) -> Result<(), StoreError> {
        let plan = ChunkPlan::new(parts)?;
        write_chunk(&mut *self.tx, plan.cluster, &plan, &mut self.written).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// Writes a planned chunk of `cluster` inside the caller's transaction, which `written`
/// follows (a fresh one for a transaction of one write).
pub(in crate::store) async fn write_chunk(
    conn: &mut impl Conn,
    cluster: &str,
    plan: &ChunkPlan<'_>,
    written: &mut Written,
) -> Result<(), StoreError> {
    sql::execute_all(conn, sql::upsert_observed(plan)).await?;
    sql::execute_all(conn, sql::insert_usage_only(plan)).await?;

    let mut ids = plan.id_map();
    for select in sql::select_ids(plan) {
        let rows: Vec<ContainerIdRow> = conn.fetch_all(&select).await?;
        ids.extend(rows.into_iter().map(ContainerIdRow::into_entry));
    }

    // Day rows are read, merged and rewritten: writers of the same cluster-day (replicas
    // collecting different cells of it) take turns, in day order so none deadlock.
    let mut days: Vec<i64> = plan.hours.iter().map(|&h| packed::day_of(h)).collect();
    days.extend(plan.usage.iter().map(|u| packed::day_of(u.hour_start)));
    days.extend(plan.signals.iter().map(|s| packed::day_of(s.hour_start)));
    days.sort_unstable();
    days.dedup();
    for &day in &days {
        conn.lock_day(cluster, day).await?;
    }

    let id_of = |key: &ContainerKey| {
        ids.get(key)
            .copied()
            .ok_or_else(|| StoreError::Invalid(format!("no container row for {key} in this chunk")))
    };
    let later = later_days(conn, cluster, plan, written).await?;
    write_usage(conn, plan, &id_of, &later, &mut written.usage).await?;

    let (signals, appended) = signal_days(conn, plan, &id_of, &later, &mut written.signals).await?;
    write_signal_days(conn, &signals).await?;
    let rows = encoded_signal_days(&appended);
    let concat = conn.concat_bytes("signal_days.hours", "substr(excluded.hours, 2)");
    sql::execute_all(conn, sql::append_signal_days(&rows, &concat)).await?;

    sql::execute_all(conn, sql::upsert_workloads(plan)).await?;
    sql::execute_all(conn, sql::insert_collected_hours(cluster, plan)).await?;
    Ok(())
}

/// Days of the chunk that only add hours after every hour collected in them before the
/// transaction: the cluster had collected hours there, all before the chunk's first hour
/// of that day. A day row holds only hours that were collected (written in the transaction
/// that marks them), in hour order, so the chunk's hours of such a day are appended to its
/// rows in SQL rather than read, merged and rewritten: one new hour at 5,000 containers
/// read, decoded and rewrote every container's day rows (15 MB), 0.1 s of its 2 s. The
/// hours a transaction marked itself do not count: a later namespace group's rows do not
/// hold them, and a row the transaction wrote already is never appended to
/// ([`Written`]).
async fn later_days(
    conn: &mut impl Conn,
    cluster: &str,
    plan: &ChunkPlan<'_>,
    written: &mut Written,
) -> Result<BTreeSet<i64>, StoreError> {
    let mut first: BTreeMap<i64, i64> = BTreeMap::new();
    let hours = plan.hours.iter().copied();
    let hours = hours.chain(plan.usage.iter().map(|u| u.hour_start));
    for hour in hours.chain(plan.signals.iter().map(|s| s.hour_start)) {
        let earliest = first.entry(packed::day_of(hour)).or_insert(hour);
        *earliest = (*earliest).min(hour);
    }
    // Days this transaction has not written yet: what they held before it is still what
    // they hold now (each day is locked from its first write until the commit).
    let new: Vec<i64> = first
        .keys()
        .copied()
        .filter(|day| !written.latest_before.contains_key(day))
        .collect();
    if let (Some(&from), Some(&to)) = (new.first(), new.last()) {
        // One look-up per chunk, not per day: a span's every namespace group asks.
        let select = Statement::new(
            "select hour_start - hour_start % 86400, max(hour_start) from collected_hours \
             where cluster = $1 and hour_start >= $2 and hour_start < $3 group by 1",
            vec![
                Value::Text(cluster),
                Value::Int(from),
                Value::Int(to + packed::DAY),
            ],
        );
        let latest: BTreeMap<i64, i64> = conn
            .fetch_all::<(i64, i64)>(&select)
            .await?
            .into_iter()
            .collect();
        for day in new {
            written.latest_before.insert(day, latest.get(&day).copied());
        }
    }
    let later = first
        .into_iter()
        .filter(|(day, first)| {
            written
                .latest_before
                .get(day)
                .copied()
                .flatten()
                .is_some_and(|l| l < *first)
        })
        .map(|(day, _)| day)
        .collect();
    Ok(later)
}

/// The chunk's usage as whole day rows over the stored rows of the same days (replace,
/// never add), read, merged and rewritten [`BATCH_ROWS`] rows at a time in key order:
/// all of a big fleet's piece at once held its day rows three times over (the chunk's
/// sketches, the stored ones, the encoded rows). Rows of the `later` days are appended to
/// instead (see [`later_days`]).
async fn write_usage(
    conn: &mut impl Conn,
    plan: &ChunkPlan<'_>,
    id_of: &impl Fn(&ContainerKey) -> Result<i64, StoreError>,
    later: &BTreeSet<i64>,
    written: &mut HashSet<(i64, i64)>,
) -> Result<(), StoreError> {
    let mut hours: Vec<(sql::UsageDayKey, i64, &Sketch)> = plan
        .usage
        .iter()
        .map(|u| {
            let day = packed::day_of(aligned(u.hour_start)?);
            let key = (id_of(&u.key)?, u.resource.as_str(), day);
            Ok((key, u.hour_start, &u.sketch))
        })
        .collect::<Result<_, StoreError>>()?;
    hours.sort_unstable_by_key(|&(key, hour, _)| (key, hour));
    let rows: Vec<_> = hours.chunk_by(|a, b| a.0 == b.0).collect();
    let concat = conn.concat_bytes("usage_days.hours", "substr(excluded.hours, 2)");
    for batch in rows.chunks(BATCH_ROWS) {
        let (appended, mut usage): (UsageDays, UsageDays) = batch
            .iter()
            .map(|row| {
                let hours = row
                    .iter()
                    .map(|&(_, hour, sketch)| (hour, sketch.to_bytes()));
                (row[0].0, hours.collect())
            })
            .partition(|(key, _)| later.contains(&key.2) && !written.contains(&(key.0, key.2)));
        written.extend(appended.keys().chain(usage.keys()).map(|k| (k.0, k.2)));
        merge_stored_usage(conn, &mut usage).await?;
        write_usage_days(conn, &usage).await?;
        let rows = encoded_usage_days(&appended);
        sql::execute_all(conn, sql::append_usage_days(&rows, &concat)).await?;
    }
    Ok(())
}

/// Adds the stored hours of `usage`'s day rows that it does not have.
async fn merge_stored_usage(conn: &mut impl Conn, usage: &mut UsageDays) -> Result<(), StoreError> {
    let keys: Vec<sql::UsageDayKey> = usage.keys().copied().collect();
    for select in sql::select_usage_days(&keys) {
        let rows: Vec<(i64, String, i64, Vec<u8>)> = conn.fetch_all(&select).await?;
        for (id, resource, day, bytes) in rows {
            let resource = if resource == "cpu" { "cpu" } else { "memory" };
            let stored = packed::decode_usage(day, &bytes).map_err(|e| {
                StoreError::Corrupt(format!(
                    "usage day row of container {id} ({resource}) at {day}: {e}"
                ))
            })?;
            let merged = usage.entry((id, resource, day)).or_default();
            for (hour, sketch) in stored {
                // Replace, never add: the chunk's hours win over the stored ones.
                merged.entry(hour).or_insert_with(|| sketch.to_vec());
            }
        }
    }
    Ok(())
}

/// The chunk's signals as whole day rows, over the stored rows of the same days, and
/// apart from them those of the `later` days, to be appended (see [`later_days`]).
async fn signal_days(
    conn: &mut impl Conn,
    plan: &ChunkPlan<'_>,
    id_of: &impl Fn(&ContainerKey) -> Result<i64, StoreError>,
    later: &BTreeSet<i64>,
    written: &mut HashSet<(i64, i64)>,
) -> Result<(SignalDays, SignalDays), StoreError> {
    let mut signals = SignalDays::new();
    for s in &plan.signals {
        aligned(s.hour_start)?;
        signals
            .entry((id_of(&s.key)?, packed::day_of(s.hour_start)))
            .or_default()
            .insert(
                s.hour_start,
                (
                    s.restarts,
                    s.oom_kills,
                    s.cfs_periods,
                    s.cfs_throttled_periods,
                ),
            );
    }
    let (appended, mut signals): (SignalDays, SignalDays) = signals
        .into_iter()
        .partition(|(key, _)| later.contains(&key.1) && !written.contains(key));
    written.extend(appended.keys().chain(signals.keys()).copied());
    let keys: Vec<(i64, i64)> = signals.keys().copied().collect();
    for select in sql::select_signal_days(&keys) {
        let rows: Vec<(i64, i64, Vec<u8>)> = conn.fetch_all(&select).await?;
        for (id, day, bytes) in rows {
            let stored = packed::decode_signals(day, &bytes).map_err(|e| {
                StoreError::Corrupt(format!("signal day row of container {id} at {day}: {e}"))
            })?;
            let merged = signals.entry((id, day)).or_default();
            for (hour, values) in stored {
                merged.entry(hour).or_insert(values);
            }
        }
    }
    Ok((signals, appended))
}

/// Usage day rows, encoded.
fn encoded_usage_days(usage: &UsageDays) -> Vec<(sql::UsageDayKey, Vec<u8>)> {
    usage
        .iter()
        .map(|(&k, hours)| (k, packed::encode_usage(k.2, hours)))
        .collect()
}

/// Signal day rows, encoded.
fn encoded_signal_days(signals: &SignalDays) -> Vec<((i64, i64), Vec<u8>)> {
    signals
        .iter()
        .map(|(&k, hours)| (k, packed::encode_signals(k.1, hours)))
        .collect()
}

/// Writes whole usage day rows, replacing stored ones.
pub(in crate::store) async fn write_usage_days(
    conn: &mut impl Conn,
    usage: &UsageDays,
) -> Result<(), StoreError> {
    let rows = encoded_usage_days(usage);
    sql::execute_all(conn, sql::upsert_usage_days(&rows)).await
}

/// Writes whole signal day rows, replacing stored ones.
pub(in crate::store) async fn write_signal_days(
    conn: &mut impl Conn,
    signals: &SignalDays,
) -> Result<(), StoreError> {
    let rows = encoded_signal_days(signals);
    sql::execute_all(conn, sql::upsert_signal_days(&rows)).await
}

/// Refuses an hour that does not start on the hour.
pub(in crate::store) fn aligned(hour: i64) -> Result<i64, StoreError> {
    if hour.rem_euclid(3600) == 0 {
        Ok(hour)
    } else {
        Err(StoreError::Invalid(format!(
            "hour {hour} is not hour-aligned"
        )))
    }
}

/// The values binding a container's key and the days holding `[from, to)` (see
/// [`sql::USAGE_DAYS`]).
fn key_and_days(key: &ContainerKey, from: i64, to: i64) -> Vec<Value<'_>> {
    let mut values = Vec::with_capacity(7);
    sql::key_values(key, &mut values);
    values.extend([Value::Int(packed::day_of(from)), Value::Int(to)]);
    values
}

/// Hourly usage of one container in `[from, to)`, by resource then hour.
pub(in crate::store) async fn usage(
    conn: &mut impl Conn,
    key: &ContainerKey,
    from: i64,
    to: i64,
) -> Result<Vec<UsageHour>, StoreError> {
    let select = Statement::new(sql::USAGE_DAYS, key_and_days(key, from, to));
    let rows: Vec<(String, i64, Vec<u8>)> = conn.fetch_all(&select).await?;
    let mut out = Vec::new();
    let shared = std::sync::Arc::new(key.clone());
    for (resource, day, bytes) in rows {
        let hours = packed::decode_usage(day, &bytes).map_err(|e| {
            StoreError::Corrupt(format!("usage of {key} ({resource}) on day {day}: {e}"))
        })?;
        for (hour_start, sketch) in hours {
            if hour_start >= from && hour_start < to {
                out.push(usage_hour(&shared, &resource, hour_start, sketch)?);
            }
        }
    }
    Ok(out)
}

/// Hourly signals of one container in `[from, to)`, by hour.
pub(in crate::store) async fn signals(
    conn: &mut impl Conn,
    key: &ContainerKey,
    from: i64,
    to: i64,
) -> Result<Vec<SignalHour>, StoreError> {
    let select = Statement::new(sql::SIGNAL_DAYS, key_and_days(key, from, to));
    let rows: Vec<(i64, Vec<u8>)> = conn.fetch_all(&select).await?;
    let mut out = Vec::new();
    for (day, bytes) in rows {
        let hours = packed::decode_signals(day, &bytes)
            .map_err(|e| StoreError::Corrupt(format!("signals of {key} on day {day}: {e}")))?;
        for (hour_start, (restarts, oom_kills, cfs_periods, cfs_throttled_periods)) in hours {
            if hour_start >= from && hour_start < to {
                out.push(SignalHour {
                    key: key.clone(),
                    hour_start,
                    restarts,
                    oom_kills,
                    cfs_periods,
                    cfs_throttled_periods,
                });
            }
        }
    }
    Ok(out)
}
