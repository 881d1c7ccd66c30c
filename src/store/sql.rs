//! SQL that both backends run as it is: statement texts and the batched statements of a chunk
//! write, with `$N` placeholders (sqlx binds them by number on SQLite as on Postgres), and
//! [`Conn`], the little a backend does to run them.
//!
//! What differs stays in the backends: Postgres partitions, advisory locks and collations,
//! SQLite's rowid batches and pragmas.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Arguments, Database, Encode, FromRow, Type};

use super::rows::{keep_prepared, ChunkPlan, BATCH_ROWS};
use super::StoreError;

/// A bound value of a built statement.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) enum Value<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Blob(&'a [u8]),
}

/// A statement with its values, ready for either backend.
#[derive(Debug)]
pub(in crate::store) struct Statement<'a> {
    pub text: String,
    pub values: Vec<Value<'a>>,
    /// Whether to keep it prepared on its connection (see [`keep_prepared`]).
    pub persistent: bool,
}

impl<'a> Statement<'a> {
    /// A statement of fixed text, kept prepared.
    pub fn new(text: &str, values: Vec<Value<'a>>) -> Self {
        Statement {
            text: text.into(),
            values,
            persistent: true,
        }
    }
}

/// The arguments of `values` for a backend.
pub(in crate::store) fn arguments<'q, DB: Database>(
    values: &'q [Value<'q>],
) -> Result<DB::Arguments<'q>, StoreError>
where
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    let mut args = DB::Arguments::default();
    for value in values {
        match *value {
            Value::Int(v) => args.add(v),
            Value::OptInt(v) => args.add(v),
            Value::Text(v) => args.add(v),
            Value::OptText(v) => args.add(v),
            Value::Blob(v) => args.add(v),
        }
        .map_err(|e| StoreError::Invalid(format!("cannot bind a value: {e}")))?;
    }
    Ok(args)
}

/// A row type both backends decode.
pub(in crate::store) trait BothRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<R> BothRow for R where
    R: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A connection (or a transaction on one) of either backend.
#[async_trait]
pub(in crate::store) trait Conn: Send {
    /// Runs `stmt`; returns the rows it changed.
    async fn execute(&mut self, stmt: &Statement<'_>) -> Result<u64, StoreError>;
    /// Runs `stmt` and decodes every row it returns.
    async fn fetch_all<R: BothRow>(&mut self, stmt: &Statement<'_>) -> Result<Vec<R>, StoreError>;
    /// Makes other writers of the day rows of `cluster`'s `day` wait until this transaction
    /// ends (Postgres, where replicas write at once); nothing where one process writes.
    async fn lock_day(&mut self, _cluster: &str, _day: i64) -> Result<(), StoreError> {
        Ok(())
    }
    /// SQL joining two byte strings `a` and `b` into one.
    fn concat_bytes(&self, a: &str, b: &str) -> String {
        format!("{a} || {b}")
    }
}

/// Implements [`Conn`] for the connection type of a backend (`$db`, its `sqlx::Database`),
/// followed by any methods it overrides.
/// `$text` renders a statement's text for the backend (see [`anonymous_placeholders`]).
macro_rules! conn_impl {
    ($conn:ty, $db:ty, text = $text:path $(, $($extra:tt)*)?) => {
        #[async_trait::async_trait]
        impl $crate::store::sql::Conn for $conn {
            async fn execute(
                &mut self,
                stmt: &$crate::store::sql::Statement<'_>,
            ) -> Result<u64, $crate::store::StoreError> {
                let args = $crate::store::sql::arguments::<$db>(&stmt.values)?;
                let text = $text(&stmt.text);
                let query = sqlx::query_with(&text, args).persistent(stmt.persistent);
                Ok(query.execute(self).await?.rows_affected())
            }

            async fn fetch_all<R: $crate::store::sql::BothRow>(
                &mut self,
                stmt: &$crate::store::sql::Statement<'_>,
            ) -> Result<Vec<R>, $crate::store::StoreError> {
                let args = $crate::store::sql::arguments::<$db>(&stmt.values)?;
                let text = $text(&stmt.text);
                let query = sqlx::query_as_with(&text, args).persistent(stmt.persistent);
                Ok(query.fetch_all(self).await?)
            }

            $($($extra)*)?
        }
    };
}
pub(in crate::store) use conn_impl;

/// The text as written, `$N` placeholders and all (Postgres).
pub(in crate::store) fn numbered(text: &str) -> std::borrow::Cow<'_, str> {
    std::borrow::Cow::Borrowed(text)
}

/// For SQLite: `$1, $2, …` in order become anonymous `?`, which bind by position. SQLite
/// keeps named and numbered parameters in a list it searches linearly, when preparing and
/// again when sqlx asks each one's name: for a batch of thousands of values that was a tenth
/// of the collector's CPU. Text whose placeholders are not exactly `$1 … $n` in order (one
/// used twice, say) is left as it is.
pub(in crate::store) fn anonymous_placeholders(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut expected = 1u64;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 || rest[at + 1..at + 1 + digits].parse() != Ok(expected) {
            return std::borrow::Cow::Borrowed(text);
        }
        out.push_str(&rest[..at]);
        out.push('?');
        rest = &rest[at + 1 + digits..];
        expected += 1;
    }
    if expected == 1 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Runs `statements` in order.
pub(in crate::store) async fn execute_all(
    conn: &mut impl Conn,
    statements: Vec<Statement<'_>>,
) -> Result<(), StoreError> {
    for statement in &statements {
        conn.execute(statement).await?;
    }
    Ok(())
}

/// `insert …` statements of `rows`, [`BATCH_ROWS`] a statement: `head`, then `values (…)`
/// with the values `row` gives (`columns` of them per row), then `tail`.
pub(in crate::store) fn batched<'a, T>(
    head: &str,
    tail: &str,
    columns: usize,
    rows: &'a [T],
    row: impl Fn(&'a T, &mut Vec<Value<'a>>),
) -> Vec<Statement<'a>> {
    rows.chunks(BATCH_ROWS)
        .map(|batch| {
            let mut text =
                String::with_capacity(head.len() + tail.len() + batch.len() * columns * 6);
            text.push_str(head);
            text.push_str("values ");
            let mut values = Vec::with_capacity(batch.len() * columns);
            for (i, item) in batch.iter().enumerate() {
                text.push_str(if i == 0 { "(" } else { ", (" });
                let first = values.len();
                row(item, &mut values);
                debug_assert_eq!(values.len() - first, columns, "{head}");
                for n in first + 1..=values.len() {
                    if n > first + 1 {
                        text.push_str(", ");
                    }
                    text.push('$');
                    text.push_str(&n.to_string());
                }
                text.push(')');
            }
            text.push_str(tail);
            Statement {
                text,
                values,
                persistent: keep_prepared(batch.len()),
            }
        })
        .collect()
}

/// The key columns of a container, as values.
pub(in crate::store) fn key_values<'a>(
    key: &'a crate::model::ContainerKey,
    out: &mut Vec<Value<'a>>,
) {
    out.extend([
        Value::Text(&key.cluster),
        Value::Text(&key.namespace),
        Value::Text(&key.kind),
        Value::Text(&key.workload),
        Value::Text(&key.container),
    ]);
}

/// Upserts of the containers a chunk observed with their requests and limits.
pub(in crate::store) fn upsert_observed<'a>(plan: &'a ChunkPlan<'a>) -> Vec<Statement<'a>> {
    batched(
        "insert into containers (cluster, namespace, kind, workload, container, \
         cpu_request_millicores, cpu_limit_millicores, memory_request_bytes, memory_limit_bytes, seen_at) ",
        // Backfilling an older window must not overwrite the requests/limits in force now.
        " on conflict (cluster, namespace, kind, workload, container) do update set \
         cpu_request_millicores = excluded.cpu_request_millicores, \
         cpu_limit_millicores = excluded.cpu_limit_millicores, \
         memory_request_bytes = excluded.memory_request_bytes, \
         memory_limit_bytes = excluded.memory_limit_bytes, \
         seen_at = excluded.seen_at \
         where excluded.seen_at >= containers.seen_at",
        10,
        &plan.observed,
        |observed, out| {
            key_values(observed.key, out);
            let r = &observed.resources;
            out.extend([
                Value::OptInt(r.cpu_request_millicores),
                Value::OptInt(r.cpu_limit_millicores),
                Value::OptInt(r.memory_request_bytes),
                Value::OptInt(r.memory_limit_bytes),
                Value::Int(observed.seen_at),
            ]);
        },
    )
}

/// Inserts of the containers a chunk has only usage or signals of.
pub(in crate::store) fn insert_usage_only<'a>(plan: &'a ChunkPlan<'a>) -> Vec<Statement<'a>> {
    batched(
        "insert into containers (cluster, namespace, kind, workload, container, seen_at) ",
        // Usage alone says nothing about requests/limits: never touch an existing row.
        " on conflict (cluster, namespace, kind, workload, container) do nothing",
        6,
        &plan.usage_only,
        |(key, seen_at), out| {
            key_values(key, out);
            out.push(Value::Int(*seen_at));
        },
    )
}

/// Look-ups of the ids of the containers a chunk has usage or signals of.
pub(in crate::store) fn select_ids<'a>(plan: &'a ChunkPlan<'a>) -> Vec<Statement<'a>> {
    batched(
        "select id, cluster, namespace, kind, workload, container from containers \
         where (cluster, namespace, kind, workload, container) in (",
        ")",
        5,
        &plan.usage_keys,
        |key, out| key_values(key, out),
    )
}

/// The key of a usage day row: container id, resource, day.
pub(in crate::store) type UsageDayKey = (i64, &'static str, i64);

/// Look-ups of the stored usage day rows of `keys`.
pub(in crate::store) fn select_usage_days(keys: &[UsageDayKey]) -> Vec<Statement<'_>> {
    batched(
        "select container_id, resource, day, hours from usage_days \
         where (container_id, resource, day) in (",
        ")",
        3,
        keys,
        |&(id, resource, day), out| {
            out.extend([Value::Int(id), Value::Text(resource), Value::Int(day)])
        },
    )
}

/// Upserts of whole usage day rows.
pub(in crate::store) fn upsert_usage_days(rows: &[(UsageDayKey, Vec<u8>)]) -> Vec<Statement<'_>> {
    usage_days(rows, "excluded.hours")
}

/// Inserts of usage day rows, each appended after the stored row of its key when there is
/// one (its hours all come after the stored row's: see `history::later_days`): the encoded
/// row without its version byte, joined by `concat` ([`Conn::concat_bytes`]).
pub(in crate::store) fn append_usage_days<'a>(
    rows: &'a [(UsageDayKey, Vec<u8>)],
    concat: &str,
) -> Vec<Statement<'a>> {
    usage_days(rows, concat)
}

/// Inserts of usage day rows whose conflicting stored row becomes `hours`.
fn usage_days<'a>(rows: &'a [(UsageDayKey, Vec<u8>)], hours: &str) -> Vec<Statement<'a>> {
    batched(
        "insert into usage_days (container_id, resource, day, hours) ",
        &format!(" on conflict (container_id, resource, day) do update set hours = {hours}"),
        4,
        rows,
        |((id, resource, day), bytes), out| {
            out.extend([
                Value::Int(*id),
                Value::Text(resource),
                Value::Int(*day),
                Value::Blob(bytes),
            ])
        },
    )
}

/// Look-ups of the stored signal day rows of `(container id, day)` keys.
pub(in crate::store) fn select_signal_days(keys: &[(i64, i64)]) -> Vec<Statement<'_>> {
    batched(
        "select container_id, day, hours from signal_days where (container_id, day) in (",
        ")",
        2,
        keys,
        |&(id, day), out| out.extend([Value::Int(id), Value::Int(day)]),
    )
}

/// Upserts of whole signal day rows.
pub(in crate::store) fn upsert_signal_days(rows: &[((i64, i64), Vec<u8>)]) -> Vec<Statement<'_>> {
    signal_days(rows, "excluded.hours")
}

/// Inserts of signal day rows, appended like [`append_usage_days`].
pub(in crate::store) fn append_signal_days<'a>(
    rows: &'a [((i64, i64), Vec<u8>)],
    concat: &str,
) -> Vec<Statement<'a>> {
    signal_days(rows, concat)
}

/// Inserts of signal day rows whose conflicting stored row becomes `hours`.
fn signal_days<'a>(rows: &'a [((i64, i64), Vec<u8>)], hours: &str) -> Vec<Statement<'a>> {
    batched(
        "insert into signal_days (container_id, day, hours) ",
        &format!(" on conflict (container_id, day) do update set hours = {hours}"),
        3,
        rows,
        |((id, day), bytes), out| {
            out.extend([Value::Int(*id), Value::Int(*day), Value::Blob(bytes)])
        },
    )
}

/// Upserts of a chunk's workload facts.
pub(in crate::store) fn upsert_workloads<'a>(plan: &'a ChunkPlan<'a>) -> Vec<Statement<'a>> {
    batched(
        "insert into workloads (cluster, namespace, kind, name, seen_at, body) ",
        // As for container specs: an older window must not overwrite newer facts.
        " on conflict (cluster, namespace, kind, name) do update set \
         seen_at = excluded.seen_at, body = excluded.body where excluded.seen_at >= workloads.seen_at",
        6,
        &plan.workloads,
        |(w, body), out| {
            out.extend([
                Value::Text(&w.key.cluster),
                Value::Text(&w.key.namespace),
                Value::Text(&w.key.kind),
                Value::Text(&w.key.name),
                Value::Int(w.seen_at),
                Value::Text(body),
            ])
        },
    )
}

/// Inserts of the hours a chunk collected for `cluster`.
pub(in crate::store) fn insert_collected_hours<'a>(
    cluster: &'a str,
    plan: &'a ChunkPlan<'a>,
) -> Vec<Statement<'a>> {
    batched(
        "insert into collected_hours (cluster, hour_start) ",
        " on conflict (cluster, hour_start) do nothing",
        2,
        &plan.hours,
        |hour_start, out| out.extend([Value::Text(cluster), Value::Int(*hour_start)]),
    )
}

/// The day rows of usage of one container (`$1`–`$5` its key) from day `$6` until `$7`.
/// `resource` is `cpu` or `memory`, which every collation orders alike.
pub(in crate::store) const USAGE_DAYS: &str = "select u.resource, u.day, u.hours \
     from usage_days u join containers c on c.id = u.container_id \
     where c.cluster = $1 and c.namespace = $2 and c.kind = $3 and c.workload = $4 \
     and c.container = $5 and u.day >= $6 and u.day < $7 \
     order by u.resource, u.day";

/// The day rows of signals of one container, bound as for [`USAGE_DAYS`].
pub(in crate::store) const SIGNAL_DAYS: &str = "select s.day, s.hours \
     from signal_days s join containers c on c.id = s.container_id \
     where c.cluster = $1 and c.namespace = $2 and c.kind = $3 and c.workload = $4 \
     and c.container = $5 and s.day >= $6 and s.day < $7 \
     order by s.day";

/// A container with no history left after the cutoff (`$1`), last seen before it.
pub(in crate::store) const STALE_CONTAINER: &str = "seen_at < $1 \
     and not exists (select 1 from usage_days u where u.container_id = containers.id and u.day >= $1) \
     and not exists (select 1 from signal_days s where s.container_id = containers.id and s.day >= $1)";

/// What retention deletes from one table: rows matching `predicate` (the cutoff bound as
/// `$1`); `key` names the columns a batch is picked by on Postgres (SQLite picks rowids);
/// `day` is the expression of a row's day, if it has one.
#[derive(Debug, Clone)]
pub(in crate::store) struct PruneTarget {
    pub table: &'static str,
    pub key: &'static str,
    pub predicate: String,
    pub day: Option<&'static str>,
}

/// The tables retention prunes, in the order it prunes them: history first, then the
/// containers and workloads left without any.
pub(in crate::store) fn prune_targets() -> [PruneTarget; 7] {
    [
        PruneTarget {
            table: "usage_days",
            key: "container_id, resource, day",
            predicate: "day < $1".into(),
            day: Some("day"),
        },
        PruneTarget {
            table: "signal_days",
            key: "container_id, day",
            predicate: "day < $1".into(),
            day: Some("day"),
        },
        PruneTarget {
            table: "collected_hours",
            key: "cluster, hour_start",
            predicate: "hour_start < $1".into(),
            day: Some("hour_start / 86400"),
        },
        PruneTarget {
            table: "containers",
            key: "id",
            predicate: STALE_CONTAINER.into(),
            day: None,
        },
        PruneTarget {
            table: "workloads",
            key: "cluster, namespace, kind, name",
            predicate: format!(
                "seen_at < $1 and not exists (select 1 from containers \
                 where containers.cluster = workloads.cluster and containers.namespace = workloads.namespace \
                 and containers.kind = workloads.kind and containers.workload = workloads.name \
                 and not ({STALE_CONTAINER}))"
            ),
            day: None,
        },
        PruneTarget {
            table: "oom_kills",
            key: "cluster, namespace, kind, workload, container, hour_start",
            predicate: "hour_start < $1".into(),
            day: Some("hour_start / 86400"),
        },
        // The record of in-place resizes is kept as long as the history they were made from.
        PruneTarget {
            table: "changes",
            key: "id",
            predicate: "at < $1".into(),
            day: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_placeholders_only_when_in_order() {
        assert_eq!(
            anonymous_placeholders(
                "insert into t values ($1, $2), ($3, $4) on conflict do nothing"
            ),
            "insert into t values (?, ?), (?, ?) on conflict do nothing"
        );
        for kept in [
            "select 1",
            "select a from t where a = $1 or b = $1",
            "select a from t where a = $2 and b = $1",
            "select '$' from t",
        ] {
            assert_eq!(anonymous_placeholders(kept), kept);
        }
    }

    #[test]
    fn batches_number_their_placeholders_from_one() {
        let rows: Vec<i64> = (0..BATCH_ROWS as i64 + 2).collect();
        let statements = batched(
            "insert into t (a, b) ",
            " on conflict do nothing",
            2,
            &rows,
            |&r, out| out.extend([Value::Int(r), Value::Int(-r)]),
        );
        assert_eq!(statements.len(), 2);
        assert!(statements[0].persistent);
        assert!(!statements[1].persistent);
        assert_eq!(
            statements[1].text,
            "insert into t (a, b) values ($1, $2), ($3, $4) on conflict do nothing"
        );
        assert_eq!(statements[0].values.len(), 2 * BATCH_ROWS);
        assert!(statements[0].text.ends_with(&format!(
            ", (${}, ${}) on conflict do nothing",
            2 * BATCH_ROWS - 1,
            2 * BATCH_ROWS
        )));
    }
}
