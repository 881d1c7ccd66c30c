//! The [`super::Store`] methods whose SQL is the same on SQLite and Postgres, over a
//! [`Conn`]: collection bookkeeping, workloads, recommendations written, reports, job leases
//! and runs. A backend's method takes a connection (or a transaction) and calls one of these.

use super::rows::{
    check_cluster, count_param, filter_columns, limit_param, run_outcome_columns, ContainerRow,
    RecommendationRow, RecommendationValues, ReportListingRow, ReportRow, ReportValues, RunRow,
    WorkloadRow, RUN_COLUMNS,
};
use super::sql::{batched, execute_all, key_values, BothRow, Conn, Statement, Value};
use super::{NewRun, RecommendationFilter, RunOutcome, RunStart, StoreError, StoredRun};
use super::{ReportListing, StoredReport, StoredReportInput};
use crate::model::{ContainerObservation, Recommendation, WorkloadInfo};

/// Implements [`super::Store`] for a backend (`$store`, with a `pool` of its database): the
/// methods below, the same text on both backends, followed by the backend's own (`$own`).
/// `$collate` follows each column a listing is ordered by, for byte order on both.
macro_rules! store_impl {
    ($store:ty, collate = $collate:literal; $($own:tt)*) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            $($own)*

            #[tracing::instrument(skip_all, fields(cluster = ?cluster))]
            async fn containers(
                &self,
                cluster: Option<&str>,
            ) -> Result<Vec<$crate::model::ContainerObservation>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                $crate::store::shared::containers(&mut *conn, cluster, $collate).await
            }

            #[tracing::instrument(skip_all)]
            async fn recommendations(
                &self,
                filter: &$crate::store::RecommendationFilter,
            ) -> Result<Vec<$crate::model::Recommendation>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                $crate::store::shared::recommendations(&mut *conn, filter, $collate).await
            }

            #[tracing::instrument(skip_all)]
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(%cluster))]
            async fn collected_hours(
                &self,
                cluster: &str,
                from: i64,
                to: i64,
            ) -> Result<Vec<i64>, $crate::store::StoreError> {
                $crate::store::shared::collected_hours(&mut *self.pool.acquire().await?, cluster, from, to).await
            }

            #[tracing::instrument(skip_all, fields(%cluster))]
            async fn watermark(&self, cluster: &str) -> Result<Option<i64>, $crate::store::StoreError> {
                $crate::store::shared::history_end(&mut *self.pool.acquire().await?, Some(cluster)).await
            }

            #[tracing::instrument(skip_all, fields(key = %key))]
            async fn usage(
                &self,
                key: &$crate::model::ContainerKey,
                from: i64,
                to: i64,
            ) -> Result<Vec<$crate::model::UsageHour>, $crate::store::StoreError> {
                $crate::store::history::usage(&mut *self.pool.acquire().await?, key, from, to).await
            }

            #[tracing::instrument(skip_all, fields(key = %key))]
            async fn signals(
                &self,
                key: &$crate::model::ContainerKey,
                from: i64,
                to: i64,
            ) -> Result<Vec<$crate::model::SignalHour>, $crate::store::StoreError> {
                $crate::store::history::signals(&mut *self.pool.acquire().await?, key, from, to).await
            }

            #[tracing::instrument(skip_all, fields(cluster = ?cluster))]
            async fn workloads(&self, cluster: Option<&str>) -> Result<Vec<$crate::model::WorkloadInfo>, $crate::store::StoreError> {
                $crate::store::shared::workloads(&mut *self.pool.acquire().await?, cluster).await
            }

            #[tracing::instrument(skip_all)]
            async fn recommendations_version(&self) -> Result<(i64, i64), $crate::store::StoreError> {
                $crate::store::shared::recommendations_version(&mut *self.pool.acquire().await?).await
            }

            #[tracing::instrument(skip_all, fields(%cluster, recommendations = recs.len()))]
            async fn replace_recommendations(
                &self,
                cluster: &str,
                recs: &[$crate::model::Recommendation],
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                $crate::store::shared::replace_recommendations(&mut *tx, cluster, recs).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(generated_at = report.generated_at))]
            async fn save_report(&self, report: &$crate::store::StoredReportInput) -> Result<i64, $crate::store::StoreError> {
                $crate::store::shared::save_report(&mut *self.pool.acquire().await?, report).await
            }

            #[tracing::instrument(skip_all, fields(%id))]
            async fn report(&self, id: i64) -> Result<Option<$crate::store::StoredReport>, $crate::store::StoreError> {
                $crate::store::shared::report(&mut *self.pool.acquire().await?, Some(id)).await
            }

            #[tracing::instrument(skip_all)]
            async fn latest_report(&self) -> Result<Option<$crate::store::StoredReport>, $crate::store::StoreError> {
                $crate::store::shared::report(&mut *self.pool.acquire().await?, None).await
            }

            #[tracing::instrument(skip_all, fields(%limit))]
            async fn list_reports(&self, limit: usize) -> Result<Vec<$crate::store::ReportListing>, $crate::store::StoreError> {
                $crate::store::shared::list_reports(&mut *self.pool.acquire().await?, limit).await
            }

            async fn put_recommendation(&self, rec: &$crate::model::Recommendation) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                $crate::store::shared::put_recommendation(&mut *tx, rec).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_oom_kills(
                &self,
                kills: &[$crate::model::OomKillHour],
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::shared::record_oom_kills(&mut *self.pool.acquire().await?, kills).await
            }

            async fn oom_kills(
                &self,
                cluster: &str,
                from: i64,
            ) -> Result<Vec<$crate::model::OomKillHour>, $crate::store::StoreError> {
                $crate::store::shared::oom_kills(&mut *self.pool.acquire().await?, cluster, from).await
            }

            async fn record_changes(
                &self,
                changes: &[$crate::model::ChangeRecord],
            ) -> Result<(), $crate::store::StoreError> {
                $crate::store::shared::record_changes(&mut *self.pool.acquire().await?, changes).await
            }

            async fn changes(
                &self,
                cluster: Option<&str>,
                limit: usize,
            ) -> Result<Vec<$crate::model::ChangeRecord>, $crate::store::StoreError> {
                $crate::store::shared::changes(&mut *self.pool.acquire().await?, cluster, limit).await
            }

            async fn lease_job(
                &self,
                job: &str,
                period: i64,
                holder: &str,
                now: i64,
                ttl_secs: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::shared::lease_job(
                    &mut *self.pool.acquire().await?,
                    job,
                    period,
                    holder,
                    now,
                    ttl_secs,
                )
                .await
            }

            async fn finish_job(&self, job: &str, period: i64, holder: &str) -> Result<(), $crate::store::StoreError> {
                $crate::store::shared::finish_job(&mut *self.pool.acquire().await?, job, period, holder).await
            }

            #[tracing::instrument(skip_all)]
            async fn history_end(&self) -> Result<Option<i64>, $crate::store::StoreError> {
                $crate::store::shared::history_end(&mut *self.pool.acquire().await?, None).await
            }

            #[tracing::instrument(skip_all, fields(%keep_newest, %older_than))]
            async fn prune_reports(&self, keep_newest: usize, older_than: i64) -> Result<u64, $crate::store::StoreError> {
                $crate::store::shared::prune_reports(&mut *self.pool.acquire().await?, keep_newest, older_than).await
            }

            #[tracing::instrument(skip_all, fields(kind = run.kind.as_str()))]
            async fn start_run(&self, run: &$crate::store::NewRun<'_>) -> Result<$crate::store::RunStart, $crate::store::StoreError> {
                $crate::store::shared::start_run(&mut *self.pool.acquire().await?, run).await
            }

            async fn renew_run(
                &self,
                seq: i64,
                holder: &str,
                done: u64,
                total: u64,
                lease_until: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::shared::renew_run(
                    &mut *self.pool.acquire().await?,
                    seq,
                    holder,
                    (done, total),
                    lease_until,
                )
                .await
            }

            #[tracing::instrument(skip_all, fields(%seq))]
            async fn finish_run(
                &self,
                seq: i64,
                holder: &str,
                outcome: &$crate::store::RunOutcome,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::shared::finish_run(&mut *self.pool.acquire().await?, seq, holder, outcome).await
            }

            async fn run(&self, seq: i64) -> Result<Option<$crate::store::StoredRun>, $crate::store::StoreError> {
                $crate::store::shared::run(&mut *self.pool.acquire().await?, seq).await
            }
        }
    };
}

pub(in crate::store) use store_impl;

/// `order by` the columns, each followed by `collate`.
fn order_by(columns: &[&str], collate: &str) -> String {
    let keys: Vec<String> = columns.iter().map(|c| format!("{c}{collate}")).collect();
    format!(" order by {}", keys.join(", "))
}

/// Containers last seen, optionally of one cluster, by cluster and key.
pub(in crate::store) async fn containers(
    conn: &mut impl Conn,
    cluster: Option<&str>,
    collate: &str,
) -> Result<Vec<ContainerObservation>, StoreError> {
    let mut text = String::from(
        "select cluster, namespace, kind, workload, container, cpu_request_millicores, \
         cpu_limit_millicores, memory_request_bytes, memory_limit_bytes, seen_at from containers",
    );
    let mut values = Vec::new();
    if let Some(cluster) = cluster {
        text.push_str(" where cluster = $1");
        values.push(Value::Text(cluster));
    }
    text.push_str(&order_by(
        &["cluster", "namespace", "kind", "workload", "container"],
        collate,
    ));
    let rows: Vec<ContainerRow> = conn.fetch_all(&Statement::new(&text, values)).await?;
    Ok(rows
        .into_iter()
        .map(ContainerRow::into_observation)
        .collect())
}

/// Stored recommendations matching `filter`, by namespace, kind, workload, container, cluster.
pub(in crate::store) async fn recommendations(
    conn: &mut impl Conn,
    filter: &RecommendationFilter,
    collate: &str,
) -> Result<Vec<Recommendation>, StoreError> {
    let mut text = String::from(
        "select cluster, namespace, kind, workload, container, body from recommendations where true",
    );
    let mut values = Vec::new();
    for (column, value) in filter_columns(filter) {
        if let Some(value) = value {
            values.push(Value::Text(value));
            text.push_str(&format!(" and {column} = ${}", values.len()));
        }
    }
    text.push_str(&order_by(
        &["namespace", "kind", "workload", "container", "cluster"],
        collate,
    ));
    let rows: Vec<RecommendationRow> = conn.fetch_all(&Statement::new(&text, values)).await?;
    rows.into_iter().map(RecommendationRow::decode).collect()
}

/// The first row `stmt` returns, if any.
async fn fetch_optional<R: BothRow>(
    conn: &mut impl Conn,
    stmt: &Statement<'_>,
) -> Result<Option<R>, StoreError> {
    Ok(conn.fetch_all(stmt).await?.into_iter().next())
}

/// Hours in `[from, to)` already collected for `cluster`, ascending.
pub(in crate::store) async fn collected_hours(
    conn: &mut impl Conn,
    cluster: &str,
    from: i64,
    to: i64,
) -> Result<Vec<i64>, StoreError> {
    let select = Statement::new(
        "select hour_start from collected_hours \
         where cluster = $1 and hour_start >= $2 and hour_start < $3 \
         order by hour_start",
        vec![Value::Text(cluster), Value::Int(from), Value::Int(to)],
    );
    let rows: Vec<(i64,)> = conn.fetch_all(&select).await?;
    Ok(rows.into_iter().map(|(hour,)| hour).collect())
}

/// End (exclusive) of the newest collected hour of `cluster`, or of any cluster.
pub(in crate::store) async fn history_end(
    conn: &mut impl Conn,
    cluster: Option<&str>,
) -> Result<Option<i64>, StoreError> {
    let select = match cluster {
        Some(cluster) => Statement::new(
            "select max(hour_start) from collected_hours where cluster = $1",
            vec![Value::Text(cluster)],
        ),
        None => Statement::new("select max(hour_start) from collected_hours", Vec::new()),
    };
    let newest: Option<(Option<i64>,)> = fetch_optional(conn, &select).await?;
    Ok(newest.and_then(|(hour,)| hour).map(|hour| hour + 3600))
}

/// Workload facts, optionally of one cluster.
pub(in crate::store) async fn workloads(
    conn: &mut impl Conn,
    cluster: Option<&str>,
) -> Result<Vec<WorkloadInfo>, StoreError> {
    let select = match cluster {
        Some(cluster) => Statement::new(
            "select namespace, kind, name, body from workloads where cluster = $1 \
             order by cluster, namespace, kind, name",
            vec![Value::Text(cluster)],
        ),
        None => Statement::new(
            "select namespace, kind, name, body from workloads \
             order by cluster, namespace, kind, name",
            Vec::new(),
        ),
    };
    let rows: Vec<WorkloadRow> = conn.fetch_all(&select).await?;
    rows.into_iter().map(WorkloadRow::into_info).collect()
}

/// (newest `computed_at`, row count) of the stored recommendations.
pub(in crate::store) async fn recommendations_version(
    conn: &mut impl Conn,
) -> Result<(i64, i64), StoreError> {
    let select = Statement::new(
        "select cast(coalesce(max(computed_at), 0) as bigint), cast(count(*) as bigint) \
         from recommendations",
        Vec::new(),
    );
    Ok(fetch_optional(conn, &select).await?.unwrap_or((0, 0)))
}

/// Replaces every recommendation of `cluster` with `recs`, inside the caller's transaction.
pub(in crate::store) async fn replace_recommendations(
    conn: &mut impl Conn,
    cluster: &str,
    recs: &[Recommendation],
) -> Result<(), StoreError> {
    check_cluster(cluster, recs)?;
    conn.execute(&Statement::new(
        "delete from recommendations where cluster = $1",
        vec![Value::Text(cluster)],
    ))
    .await?;
    replace_rows(conn, recs).await
}

/// Inserts `recs` (whose rows the caller deleted).
async fn replace_rows(conn: &mut impl Conn, recs: &[Recommendation]) -> Result<(), StoreError> {
    let values = recs
        .iter()
        .map(RecommendationValues::new)
        .collect::<Result<Vec<_>, _>>()?;
    let inserts = batched(
        "insert into recommendations \
         (cluster, namespace, kind, workload, container, status, confidence, computed_at, body) ",
        "",
        9,
        &values,
        |rec, out| {
            key_values(&rec.rec.key, out);
            out.extend([
                Value::Text(rec.rec.status.as_str()),
                Value::Text(rec.rec.confidence.as_str()),
                Value::Int(rec.rec.computed_at),
                Value::Text(&rec.body),
            ]);
        },
    );
    execute_all(conn, inserts).await
}

/// Replaces the recommendation of `rec.key`, inside the caller's transaction.
pub(in crate::store) async fn put_recommendation(
    conn: &mut impl Conn,
    rec: &Recommendation,
) -> Result<(), StoreError> {
    let mut key = Vec::new();
    key_values(&rec.key, &mut key);
    conn.execute(&Statement::new(
        "delete from recommendations where cluster = $1 and namespace = $2 and kind = $3 \
         and workload = $4 and container = $5",
        key,
    ))
    .await?;
    replace_rows(conn, std::slice::from_ref(rec)).await
}

/// Records OOM kills per container and hour, keeping the larger count of a row seen twice.
pub(in crate::store) async fn record_oom_kills(
    conn: &mut impl Conn,
    kills: &[crate::model::OomKillHour],
) -> Result<(), StoreError> {
    let upserts = batched(
        "insert into oom_kills (cluster, namespace, kind, workload, container, hour_start, kills) ",
        " on conflict (cluster, namespace, kind, workload, container, hour_start) do update set \
         kills = case when excluded.kills > oom_kills.kills then excluded.kills else oom_kills.kills end",
        7,
        kills,
        |k, out| {
            key_values(&k.key, out);
            out.extend([Value::Int(k.hour_start), Value::Int(i64::from(k.kills))]);
        },
    );
    execute_all(conn, upserts).await
}

/// An `oom_kills` row.
#[derive(sqlx::FromRow)]
struct OomKillRow {
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
    container: String,
    hour_start: i64,
    kills: i64,
}

/// The OOM kills recorded for `cluster` from `from` on, by container then hour.
pub(in crate::store) async fn oom_kills(
    conn: &mut impl Conn,
    cluster: &str,
    from: i64,
) -> Result<Vec<crate::model::OomKillHour>, StoreError> {
    let select = Statement::new(
        "select cluster, namespace, kind, workload, container, hour_start, cast(kills as bigint) as kills \
         from oom_kills where cluster = $1 and hour_start >= $2 \
         order by namespace, kind, workload, container, hour_start",
        vec![Value::Text(cluster), Value::Int(from)],
    );
    let rows: Vec<OomKillRow> = conn.fetch_all(&select).await?;
    Ok(rows
        .into_iter()
        .map(|r| crate::model::OomKillHour {
            key: crate::model::ContainerKey {
                cluster: r.cluster,
                namespace: r.namespace,
                kind: r.kind,
                workload: r.workload,
                container: r.container,
            },
            hour_start: r.hour_start,
            kills: u32::try_from(r.kills).unwrap_or(u32::MAX),
        })
        .collect())
}

/// Stores a report and returns its id.
pub(in crate::store) async fn save_report(
    conn: &mut impl Conn,
    report: &StoredReportInput,
) -> Result<i64, StoreError> {
    let values = ReportValues::new(report);
    let insert = Statement::new(
        "insert into reports (generated_at, summary, body) values ($1, $2, $3) returning id",
        vec![
            Value::Int(values.generated_at),
            Value::Text(&values.summary),
            Value::Text(&values.body),
        ],
    );
    let id: Option<(i64,)> = fetch_optional(conn, &insert).await?;
    id.map(|(id,)| id)
        .ok_or_else(|| StoreError::Invalid("the database returned no report id".into()))
}

/// The report with this id, or the newest report with `None`.
pub(in crate::store) async fn report(
    conn: &mut impl Conn,
    id: Option<i64>,
) -> Result<Option<StoredReport>, StoreError> {
    let select = match id {
        Some(id) => Statement::new(
            "select id, generated_at, summary, body from reports where id = $1",
            vec![Value::Int(id)],
        ),
        None => Statement::new(
            "select id, generated_at, summary, body from reports \
             order by generated_at desc, id desc limit 1",
            Vec::new(),
        ),
    };
    let row: Option<ReportRow> = fetch_optional(conn, &select).await?;
    row.map(ReportRow::decode).transpose()
}

/// At most `limit` reports without their bodies, newest first.
pub(in crate::store) async fn list_reports(
    conn: &mut impl Conn,
    limit: usize,
) -> Result<Vec<ReportListing>, StoreError> {
    let select = Statement::new(
        "select id, generated_at, summary from reports \
         order by generated_at desc, id desc limit $1",
        vec![Value::Int(limit_param(limit))],
    );
    let rows: Vec<ReportListingRow> = conn.fetch_all(&select).await?;
    rows.into_iter().map(ReportListingRow::decode).collect()
}

/// Deletes the reports generated before `older_than` but the `keep_newest` newest.
pub(in crate::store) async fn prune_reports(
    conn: &mut impl Conn,
    keep_newest: usize,
    older_than: i64,
) -> Result<u64, StoreError> {
    conn.execute(&Statement::new(
        "delete from reports where generated_at < $1 and id not in \
         (select id from reports order by generated_at desc, id desc limit $2)",
        vec![Value::Int(older_than), Value::Int(limit_param(keep_newest))],
    ))
    .await
}

/// Leases the run of `job` for `period` to `holder` (see [`super::Store::lease_job`]).
pub(in crate::store) async fn lease_job(
    conn: &mut impl Conn,
    job: &str,
    period: i64,
    holder: &str,
    now: i64,
    ttl_secs: i64,
) -> Result<bool, StoreError> {
    // Leases of long-past periods are of no use to anyone.
    conn.execute(&Statement::new(
        "delete from job_leases where lease_until < $1",
        vec![Value::Int(now - super::LEASE_KEEP_SECS)],
    ))
    .await?;
    // `false` and `true`: booleans on Postgres, 0 and 1 on SQLite.
    let upsert = Statement::new(
        "insert into job_leases (job, period, holder, lease_until, done) values ($1, $2, $3, $4, false) \
         on conflict (job, period) do update set holder = excluded.holder, lease_until = excluded.lease_until \
         where job_leases.done = false and (job_leases.lease_until < $5 or job_leases.holder = excluded.holder) \
         returning holder",
        vec![
            Value::Text(job),
            Value::Int(period),
            Value::Text(holder),
            Value::Int(now + ttl_secs),
            Value::Int(now),
        ],
    );
    let leased: Option<(String,)> = fetch_optional(conn, &upsert).await?;
    Ok(leased.is_some())
}

/// Marks the leased run of `job` for `period` done.
pub(in crate::store) async fn finish_job(
    conn: &mut impl Conn,
    job: &str,
    period: i64,
    holder: &str,
) -> Result<(), StoreError> {
    conn.execute(&Statement::new(
        "update job_leases set done = true where job = $1 and period = $2 and holder = $3",
        vec![Value::Text(job), Value::Int(period), Value::Text(holder)],
    ))
    .await?;
    Ok(())
}

/// Records a running run (see [`super::Store::start_run`]).
pub(in crate::store) async fn start_run(
    conn: &mut impl Conn,
    run: &NewRun<'_>,
) -> Result<RunStart, StoreError> {
    let kind = run.kind.as_str();
    // A run that finishes between a refused insert and the look-up leaves nothing to
    // report as busy: try again.
    for _ in 0..3 {
        conn.execute(&Statement::new(
            "update runs set status = 'failed', finished_at = lease_until, \
             error = cast($1 as text) || holder || cast($2 as text) \
             where kind = $3 and status = 'running' and lease_until < $4",
            vec![
                Value::Text(super::ABANDONED_PREFIX),
                Value::Text(super::ABANDONED_SUFFIX),
                Value::Text(kind),
                Value::Int(run.now),
            ],
        ))
        .await?;
        let insert = Statement::new(
            "insert into runs (kind, status, trigger, holder, started_at, lease_until) \
             values ($1, 'running', $2, $3, $4, $5) \
             on conflict (kind) where status = 'running' do nothing returning seq",
            vec![
                Value::Text(kind),
                Value::Text(run.trigger),
                Value::Text(run.holder),
                Value::Int(run.now),
                Value::Int(run.lease_until),
            ],
        );
        if let Some((seq,)) = fetch_optional::<(i64,)>(conn, &insert).await? {
            conn.execute(&Statement::new(
                "delete from runs where status <> 'running' and seq <= \
                 (select seq from runs order by seq desc limit 1 offset $1)",
                vec![Value::Int(super::RUNS_KEPT)],
            ))
            .await?;
            return Ok(RunStart::Started(seq));
        }
        let running = Statement::new(
            "select seq from runs where kind = $1 and status = 'running'",
            vec![Value::Text(kind)],
        );
        if let Some((seq,)) = fetch_optional::<(i64,)>(conn, &running).await? {
            return Ok(RunStart::Busy(seq));
        }
    }
    Err(StoreError::Invalid(format!(
        "could not start a {kind} run: runs of that kind kept starting and finishing"
    )))
}

/// Records progress of a running run of `holder`; false when it no longer runs under it.
pub(in crate::store) async fn renew_run(
    conn: &mut impl Conn,
    seq: i64,
    holder: &str,
    (done, total): (u64, u64),
    lease_until: i64,
) -> Result<bool, StoreError> {
    let updated = conn
        .execute(&Statement::new(
            "update runs set done = $1, total = $2, lease_until = $3 \
             where seq = $4 and holder = $5 and status = 'running'",
            vec![
                Value::Int(count_param(done)),
                Value::Int(count_param(total)),
                Value::Int(lease_until),
                Value::Int(seq),
                Value::Text(holder),
            ],
        ))
        .await?;
    Ok(updated == 1)
}

/// Records how a running run of `holder` ended; false when it no longer ran under it.
pub(in crate::store) async fn finish_run(
    conn: &mut impl Conn,
    seq: i64,
    holder: &str,
    outcome: &RunOutcome,
) -> Result<bool, StoreError> {
    let (status, result, error) = run_outcome_columns(outcome);
    let updated = conn
        .execute(&Statement::new(
            "update runs set status = $1, result = $2, error = $3, finished_at = $4, \
             done = $5, total = $6 where seq = $7 and holder = $8 and status = 'running'",
            vec![
                Value::Text(status),
                Value::OptText(result.as_deref()),
                Value::OptText(error.as_deref()),
                Value::Int(outcome.finished_at),
                Value::Int(count_param(outcome.done)),
                Value::Int(count_param(outcome.total)),
                Value::Int(seq),
                Value::Text(holder),
            ],
        ))
        .await?;
    Ok(updated == 1)
}

/// The run with this sequence number, if stored.
pub(in crate::store) async fn run(
    conn: &mut impl Conn,
    seq: i64,
) -> Result<Option<StoredRun>, StoreError> {
    let select = Statement::new(
        &format!("select {RUN_COLUMNS} from runs where seq = $1"),
        vec![Value::Int(seq)],
    );
    let row: Option<RunRow> = fetch_optional(conn, &select).await?;
    row.map(RunRow::decode).transpose()
}

/// The columns of a `changes` row, in [`ChangeRow`]'s order.
const CHANGE_COLUMNS: &str =
    "id, at, cluster, namespace, pod, container, workload, actor, kind, before, after, outcome, reason";

/// A `changes` row; the requests and limits are JSON.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    id: i64,
    at: i64,
    cluster: String,
    namespace: String,
    pod: String,
    container: String,
    workload: Option<String>,
    actor: String,
    kind: String,
    before: String,
    after: String,
    outcome: String,
    reason: String,
}

/// Records `changes`, one insert each.
pub(in crate::store) async fn record_changes(
    conn: &mut impl Conn,
    changes: &[crate::model::ChangeRecord],
) -> Result<(), StoreError> {
    let json: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            Ok((
                serde_json::to_string(&c.before)?,
                serde_json::to_string(&c.after)?,
            ))
        })
        .collect::<Result<_, serde_json::Error>>()
        .map_err(|e| StoreError::Invalid(format!("a change does not encode: {e}")))?;
    let inserts = changes
        .iter()
        .zip(&json)
        .map(|(c, (before, after))| {
            Statement::new(
                "insert into changes (at, cluster, namespace, pod, container, workload, actor, kind, \
                 before, after, outcome, reason) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                vec![
                    Value::Int(c.at),
                    Value::Text(&c.cluster),
                    Value::Text(&c.namespace),
                    Value::Text(&c.pod),
                    Value::Text(&c.container),
                    Value::OptText(c.workload.as_deref()),
                    Value::Text(&c.actor),
                    Value::Text(&c.kind),
                    Value::Text(before),
                    Value::Text(after),
                    Value::Text(&c.outcome),
                    Value::Text(&c.reason),
                ],
            )
        })
        .collect();
    execute_all(conn, inserts).await
}

/// At most `limit` recorded changes, newest first, optionally of one cluster.
pub(in crate::store) async fn changes(
    conn: &mut impl Conn,
    cluster: Option<&str>,
    limit: usize,
) -> Result<Vec<crate::model::ChangeRecord>, StoreError> {
    let select = match cluster {
        Some(cluster) => Statement::new(
            &format!(
                "select {CHANGE_COLUMNS} from changes where cluster = $1 order by at desc, id desc limit $2"
            ),
            vec![Value::Text(cluster), Value::Int(limit_param(limit))],
        ),
        None => Statement::new(
            &format!("select {CHANGE_COLUMNS} from changes order by at desc, id desc limit $1"),
            vec![Value::Int(limit_param(limit))],
        ),
    };
    let rows: Vec<ChangeRow> = conn.fetch_all(&select).await?;
    rows.into_iter()
        .map(|r| {
            let resources = |what: &str, text: &str| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Corrupt(format!("change {}: {what}: {e}", r.id)))
            };
            Ok(crate::model::ChangeRecord {
                before: resources("before", &r.before)?,
                after: resources("after", &r.after)?,
                id: r.id,
                at: r.at,
                cluster: r.cluster,
                namespace: r.namespace,
                pod: r.pod,
                container: r.container,
                workload: r.workload,
                actor: r.actor,
                kind: r.kind,
                outcome: r.outcome,
                reason: r.reason,
            })
        })
        .collect()
}
