//! Row shapes and chunk preparation shared by both backends.

use std::collections::{BTreeMap, HashMap};

use crate::model::{
    Chunk, ContainerKey, ContainerObservation, Recommendation, Resource, Resources, SignalHour,
    UsageHour, WorkloadInfo, WorkloadKey,
};
use crate::sketch::Sketch;
use crate::store::{
    RecommendationFilter, ReportListing, StoreError, StoredReport, StoredReportInput,
};

/// Rows per multi-row statement: at most 10 parameters a row keeps a batch far below SQLite's
/// 32766 and Postgres's 65535 bound parameters.
pub(in crate::store) const BATCH_ROWS: usize = 500;

/// Whether a batched statement of `rows` rows is worth keeping prepared on its connection.
/// A batch's SQL text depends on its row count: full batches repeat, but every remainder
/// size is a new text, and caching each of them (sqlx keeps 100 per connection) held
/// megabytes of compiled statements in the collector for no reuse.
pub(in crate::store) fn keep_prepared(rows: usize) -> bool {
    rows == BATCH_ROWS
}

/// The newest observation of one container in a chunk.
pub(in crate::store) struct Observed<'a> {
    pub key: &'a ContainerKey,
    pub resources: Resources,
    pub seen_at: i64,
}

/// A chunk reduced to the rows to write, each key at most once per statement (Postgres refuses
/// an upsert that touches a row twice; SQLite would let the last one win — both now agree).
/// Rows are in key order, so concurrent writers lock shared rows in the same order and never
/// deadlock each other.
pub(in crate::store) struct ChunkPlan<'a> {
    /// The cluster every part belongs to.
    pub cluster: &'a str,
    /// Containers with requests/limits, the newest observation of each key.
    pub observed: Vec<Observed<'a>>,
    /// Keys that only have usage, with the newest hour of it as `seen_at`.
    pub usage_only: Vec<(&'a ContainerKey, i64)>,
    /// Distinct keys of `usage`, whose ids the usage rows need.
    pub usage_keys: Vec<&'a ContainerKey>,
    /// Usage rows, the last one of each (key, resource, hour) in the chunk, in that order.
    /// Their sketches are encoded when their day rows are written, a batch at a time:
    /// encoded here, a big fleet's piece held every sketch twice (5,000 containers:
    /// 126,000 hours, 10 MB of encodings beside the sketches).
    pub usage: Vec<&'a UsageHour>,
    /// Signal rows, the last one of each (key, hour) in the chunk.
    pub signals: Vec<&'a SignalHour>,
    /// Workload facts, the newest of each workload, with their JSON bodies.
    pub workloads: Vec<(&'a WorkloadInfo, String)>,
    /// Distinct collected hours.
    pub hours: Vec<i64>,
}

impl<'a> ChunkPlan<'a> {
    /// The plan of a chunk given as `parts` of one cluster (see [`super::Store::write_parts`]).
    pub fn new(parts: &'a [Chunk]) -> Result<Self, StoreError> {
        let cluster = match parts {
            [] => return Err(StoreError::Invalid("a chunk of no parts".into())),
            [first, rest @ ..] => match rest.iter().find(|p| p.cluster != first.cluster) {
                Some(other) => {
                    return Err(StoreError::Invalid(format!(
                        "parts of one chunk from clusters {:?} and {:?}",
                        first.cluster, other.cluster
                    )))
                }
                None => first.cluster.as_str(),
            },
        };
        let mut observed: BTreeMap<&ContainerKey, &ContainerObservation> = BTreeMap::new();
        for container in parts.iter().flat_map(|c| &c.containers) {
            let newest = observed.entry(&container.key).or_insert(container);
            if container.seen_at >= newest.seen_at {
                *newest = container;
            }
        }

        // Sorted rather than mapped: a tree of 126,000 hours (a piece of 5,000 containers)
        // cost 7 MB beside them. The sort is stable and keeps the last of equal hours.
        let mut usage: Vec<&UsageHour> = parts.iter().flat_map(|c| &c.usage).collect();
        usage.sort_by(|a, b| usage_order(a).cmp(&usage_order(b)));
        usage.dedup_by(|later, kept| {
            let same = usage_order(later) == usage_order(kept);
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        let mut newest_hour: BTreeMap<&ContainerKey, i64> = BTreeMap::new();
        for hour in &usage {
            check_count(hour)?;
            let newest = newest_hour.entry(&hour.key).or_insert(hour.hour_start);
            *newest = (*newest).max(hour.hour_start);
        }

        let mut signals: BTreeMap<(&ContainerKey, i64), &SignalHour> = BTreeMap::new();
        for signal in parts.iter().flat_map(|c| &c.signals) {
            signals.insert((&signal.key, signal.hour_start), signal);
            let newest = newest_hour.entry(&signal.key).or_insert(signal.hour_start);
            *newest = (*newest).max(signal.hour_start);
        }
        let mut workloads: BTreeMap<&WorkloadKey, &WorkloadInfo> = BTreeMap::new();
        for w in parts.iter().flat_map(|c| &c.workloads) {
            let newest = workloads.entry(&w.key).or_insert(w);
            if w.seen_at >= newest.seen_at {
                *newest = w;
            }
        }
        let workloads = workloads
            .into_values()
            .map(|w| {
                serde_json::to_string(w)
                    .map(|body| (w, body))
                    .map_err(|e| StoreError::Invalid(format!("workload {:?}: {e}", w.key)))
            })
            .collect::<Result<_, _>>()?;

        let usage_only = newest_hour
            .iter()
            .filter(|(key, _)| !observed.contains_key(*key))
            .map(|(&key, &seen_at)| (key, seen_at))
            .collect();
        let usage_keys = newest_hour.keys().copied().collect();
        let mut hours: Vec<i64> = parts.iter().flat_map(|c| c.hours.iter().copied()).collect();
        hours.sort_unstable();
        hours.dedup();

        Ok(ChunkPlan {
            cluster,
            observed: observed
                .into_values()
                .map(|o| Observed {
                    key: &o.key,
                    resources: o.resources,
                    seen_at: o.seen_at,
                })
                .collect(),
            usage_only,
            usage_keys,
            usage,
            signals: signals.into_values().collect(),
            workloads,
            hours,
        })
    }

    /// An empty key → id map sized for the usage keys.
    pub fn id_map(&self) -> HashMap<ContainerKey, i64> {
        HashMap::with_capacity(self.usage_keys.len())
    }
}

/// The order of a chunk's usage rows: key, resource, hour.
fn usage_order(hour: &UsageHour) -> (&ContainerKey, Resource, i64) {
    (&hour.key, hour.resource, hour.hour_start)
}

/// Refused as when a column held the sample count, so both backends keep refusing the same
/// chunks.
fn check_count(hour: &UsageHour) -> Result<(), StoreError> {
    i64::try_from(hour.sketch.count()).map_err(|_| {
        StoreError::Invalid(format!(
            "{} {} at {}: sample count {} does not fit a bigint",
            hour.key,
            hour.resource.as_str(),
            hour.hour_start,
            hour.sketch.count()
        ))
    })?;
    Ok(())
}

/// A recommendation with its JSON body.
pub(in crate::store) struct RecommendationValues<'a> {
    pub rec: &'a Recommendation,
    pub body: String,
}

impl<'a> RecommendationValues<'a> {
    /// Serializes `rec`, refusing what would not read back (JSON writes a NaN as `null`).
    pub fn new(rec: &'a Recommendation) -> Result<Self, StoreError> {
        let encode_error =
            |e: serde_json::Error| StoreError::Invalid(format!("recommendation {}: {e}", rec.key));
        let body = serde_json::to_string(rec).map_err(encode_error)?;
        serde_json::from_str::<Recommendation>(&body).map_err(encode_error)?;
        Ok(RecommendationValues { rec, body })
    }
}

/// Refuses recommendations of another cluster: replacing one cluster must not touch the others.
pub(in crate::store) fn check_cluster(
    cluster: &str,
    recs: &[Recommendation],
) -> Result<(), StoreError> {
    match recs.iter().find(|rec| rec.key.cluster != cluster) {
        Some(rec) => Err(StoreError::Invalid(format!(
            "recommendation {} is not of cluster {cluster:?}",
            rec.key
        ))),
        None => Ok(()),
    }
}

/// A filter's key columns and values, for a `where` clause of bound parameters.
pub(in crate::store) fn filter_columns(
    filter: &RecommendationFilter,
) -> [(&'static str, Option<&str>); 4] {
    [
        ("cluster", filter.cluster.as_deref()),
        ("namespace", filter.namespace.as_deref()),
        ("kind", filter.kind.as_deref()),
        ("workload", filter.workload.as_deref()),
    ]
}

/// A container's id and key, to attach usage rows to it.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ContainerIdRow {
    id: i64,
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
    container: String,
}

impl ContainerIdRow {
    pub fn into_entry(self) -> (ContainerKey, i64) {
        let key = ContainerKey {
            cluster: self.cluster,
            namespace: self.namespace,
            kind: self.kind,
            workload: self.workload,
            container: self.container,
        };
        (key, self.id)
    }
}

/// A `containers` row.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ContainerRow {
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
    container: String,
    cpu_request_millicores: Option<i64>,
    cpu_limit_millicores: Option<i64>,
    memory_request_bytes: Option<i64>,
    memory_limit_bytes: Option<i64>,
    seen_at: i64,
}

impl ContainerRow {
    pub fn into_observation(self) -> ContainerObservation {
        ContainerObservation {
            key: ContainerKey {
                cluster: self.cluster,
                namespace: self.namespace,
                kind: self.kind,
                workload: self.workload,
                container: self.container,
            },
            resources: Resources {
                cpu_request_millicores: self.cpu_request_millicores,
                cpu_limit_millicores: self.cpu_limit_millicores,
                memory_request_bytes: self.memory_request_bytes,
                memory_limit_bytes: self.memory_limit_bytes,
            },
            seen_at: self.seen_at,
        }
    }
}

/// One stored usage hour from its parts (a day row's hour).
pub(in crate::store) fn usage_hour(
    key: &std::sync::Arc<ContainerKey>,
    resource: &str,
    hour_start: i64,
    sketch: &[u8],
) -> Result<UsageHour, StoreError> {
    let at = || format!("usage of {key} ({resource}) at {hour_start}");
    let resource = Resource::parse(resource)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown resource", at())))?;
    let sketch =
        Sketch::from_bytes(sketch).map_err(|e| StoreError::Corrupt(format!("{}: {e}", at())))?;
    Ok(UsageHour {
        key: key.clone(),
        resource,
        hour_start,
        sketch,
    })
}

/// A `recommendations` row: the key (to name a corrupt body) and the body.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct RecommendationRow {
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
    container: String,
    body: String,
}

impl RecommendationRow {
    pub fn decode(self) -> Result<Recommendation, StoreError> {
        serde_json::from_str(&self.body).map_err(|e| {
            let key = ContainerKey {
                cluster: self.cluster,
                namespace: self.namespace,
                kind: self.kind,
                workload: self.workload,
                container: self.container,
            };
            StoreError::Corrupt(format!("recommendation {key}: {e}"))
        })
    }
}

/// A stored workload: its facts as JSON.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct WorkloadRow {
    namespace: String,
    kind: String,
    name: String,
    body: String,
}

impl WorkloadRow {
    pub fn into_info(self) -> Result<WorkloadInfo, StoreError> {
        serde_json::from_str(&self.body).map_err(|e| {
            StoreError::Corrupt(format!(
                "workload {}/{}/{}: {e}",
                self.namespace, self.kind, self.name
            ))
        })
    }
}

/// A report's summary and body, encoded for the database.
pub(in crate::store) struct ReportValues {
    pub generated_at: i64,
    pub summary: String,
    pub body: String,
}

impl ReportValues {
    pub fn new(input: &StoredReportInput) -> Self {
        ReportValues {
            generated_at: input.generated_at,
            summary: input.summary.to_string(),
            body: input.body.to_string(),
        }
    }
}

/// Converts a caller's row limit to a bound parameter.
pub(in crate::store) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn report_json(id: i64, what: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("report {id}: {what} is not JSON: {e}")))
}

/// A `reports` row.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ReportRow {
    id: i64,
    generated_at: i64,
    summary: String,
    body: String,
}

impl ReportRow {
    pub fn decode(self) -> Result<StoredReport, StoreError> {
        Ok(StoredReport {
            summary: report_json(self.id, "summary", &self.summary)?,
            body: report_json(self.id, "body", &self.body)?,
            id: self.id,
            generated_at: self.generated_at,
        })
    }
}

/// A `reports` row without its body.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ReportListingRow {
    id: i64,
    generated_at: i64,
    summary: String,
}

impl ReportListingRow {
    pub fn decode(self) -> Result<ReportListing, StoreError> {
        Ok(ReportListing {
            summary: report_json(self.id, "summary", &self.summary)?,
            id: self.id,
            generated_at: self.generated_at,
        })
    }
}

/// The columns of a `runs` row, in [`RunRow`]'s order.
pub(in crate::store) const RUN_COLUMNS: &str = "seq, kind, status, trigger, holder, started_at, \
     lease_until, finished_at, done, total, result, error";

/// A `runs` row.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct RunRow {
    seq: i64,
    kind: String,
    status: String,
    trigger: String,
    holder: String,
    started_at: i64,
    lease_until: i64,
    finished_at: Option<i64>,
    done: i64,
    total: i64,
    result: Option<String>,
    error: Option<String>,
}

impl RunRow {
    pub fn decode(self) -> Result<crate::store::StoredRun, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("run {}: {what}", self.seq));
        let kind = crate::model::RunKind::parse(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?;
        let status = crate::model::RunStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?}", self.status)))?;
        let result = match &self.result {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("result is not JSON: {e}")))?,
            ),
            None => None,
        };
        Ok(crate::store::StoredRun {
            seq: self.seq,
            kind,
            status,
            trigger: self.trigger,
            holder: self.holder,
            started_at: self.started_at,
            lease_until: self.lease_until,
            finished_at: self.finished_at,
            done: self.done.max(0) as u64,
            total: self.total.max(0) as u64,
            result,
            error: self.error,
        })
    }
}

/// The columns `finish_run` writes: status, result (JSON text) and error.
pub(in crate::store) fn run_outcome_columns(
    outcome: &crate::store::RunOutcome,
) -> (&'static str, Option<String>, Option<String>) {
    match &outcome.result {
        Ok(value) => ("succeeded", Some(value.to_string()), None),
        Err(e) => ("failed", None, Some(e.clone())),
    }
}

/// A progress count as a column value (counts beyond `i64::MAX` don't happen).
pub(in crate::store) fn count_param(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
