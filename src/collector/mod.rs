//! Ingests usage history from Prometheus into hourly summaries in the store.
//!
//! A run looks at the hours of `[from, to)` that are not yet collected for the
//! cluster, groups them into chunks of consecutive hours, asks Prometheus five
//! aggregated queries per chunk (owners, workload facts, container state, CPU, memory) and writes
//! each chunk with its hours in one transaction. An interrupted run leaves whole
//! chunks only; the next run picks up the hours still missing.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};

use crate::prometheus::{PromClient, PromError};
use crate::store::{Store, StoreError};

pub mod discovery;
pub mod ingest;
pub mod queries;

/// Extra history before a chunk that owner lookups cover: a rate over 5 minutes still
/// reports a pod for a few minutes after its owner series ended.
const OWNER_LOOKBACK_SECS: i64 = 600;
/// Container state (specs and counters) needs no fine resolution; a coarse step keeps that
/// query small. The state query starts one step early so a counter increase right at the
/// chunk boundary is seen.
pub const STATE_STEP_SECS: i64 = 300;

/// Why a collection run stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Prometheus failed or answered something unusable.
    #[error(transparent)]
    Prometheus(#[from] PromError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The options make no sense.
    #[error("invalid collection window: {0}")]
    Window(String),
}

/// Called after each committed chunk with (hours done, hours to do).
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>>);

impl Progress {
    /// A progress callback.
    pub fn new(f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        Progress(Some(std::sync::Arc::new(f)))
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(f) = &self.0 {
            f(done, total);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(callback)"
        } else {
            "Progress(none)"
        })
    }
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Cluster name stored with every workload.
    pub cluster: String,
    /// First hour (unix seconds, hour-aligned).
    pub from: i64,
    /// End of the last hour (exclusive, hour-aligned).
    pub to: i64,
    /// Query resolution.
    pub step_secs: i64,
    /// Hours per chunk (one transaction, five queries).
    pub chunk_hours: u32,
    /// Chunks fetched at once; each chunk runs its queries one after another.
    pub concurrency: usize,
    /// Told after each committed chunk.
    pub progress: Progress,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollectReport {
    /// Hours ingested by this run.
    pub hours_collected: u64,
    /// Hours of the window that were already collected.
    pub hours_already_collected: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Usage samples summarized.
    pub samples: u64,
    /// Samples dropped (NaN/±Inf/negative).
    pub rejected_samples: u64,
    /// Pod lookups whose owner was guessed from the pod name.
    pub inferred_pods: u64,
    /// Distinct workload containers seen.
    pub containers: u64,
}

/// Rounds down to the hour.
pub fn floor_hour(t: i64) -> i64 {
    t - t.rem_euclid(3600)
}

/// Splits the missing hours into runs of consecutive hours, at most `max` each.
fn plan_chunks(missing: &[i64], max: u32) -> Vec<Vec<i64>> {
    let mut chunks: Vec<Vec<i64>> = Vec::new();
    for &h in missing {
        match chunks.last_mut() {
            Some(c) if c.len() < max as usize && c.last() == Some(&(h - 3600)) => c.push(h),
            _ => chunks.push(vec![h]),
        }
    }
    chunks
}

/// A range query as sent to `/api/v1/query_range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// PromQL.
    pub promql: String,
    /// First evaluation time, unix seconds.
    pub start: i64,
    /// Last evaluation time (inclusive).
    pub end: i64,
    /// Resolution.
    pub step_secs: i64,
}

/// The five queries of one chunk. Public so benchmarks can replay exactly them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkQueries {
    /// Owner edges: an instant query at `owners_time`.
    pub owners: String,
    /// Evaluation time of `owners`.
    pub owners_time: i64,
    /// Workload facts (replicas, HPA, PDB): an instant query at `owners_time`.
    pub facts: String,
    /// Requests, limits, info, restarts, OOM and throttling counters per pod container.
    pub state: RangeQuery,
    /// CPU usage per pod container.
    pub cpu: RangeQuery,
    /// Memory peak per pod container.
    pub memory: RangeQuery,
}

impl ChunkQueries {
    /// The queries of the chunk covering `hours` (consecutive, ascending).
    pub fn new(hours: &[i64], step_secs: i64) -> Self {
        let start = hours[0];
        let end = hours[hours.len() - 1] + 3600 - step_secs;
        let span = end - start + step_secs + OWNER_LOOKBACK_SECS;
        let range = |promql: String, step_secs: i64| RangeQuery {
            promql,
            start,
            end,
            step_secs,
        };
        ChunkQueries {
            owners: queries::owners(span),
            owners_time: end,
            facts: queries::workload_facts(),
            state: RangeQuery {
                promql: queries::container_state(),
                start: start - STATE_STEP_SECS.max(step_secs),
                end,
                step_secs: STATE_STEP_SECS.max(step_secs),
            },
            cpu: range(queries::cpu_usage(), step_secs),
            memory: range(queries::memory_peak(step_secs), step_secs),
        }
    }

    /// The instant queries (PromQL, time), in the order they are sent.
    pub fn instants(&self) -> [(&str, i64); 2] {
        [
            (&self.owners, self.owners_time),
            (&self.facts, self.owners_time),
        ]
    }

    /// The range queries, in the order they are sent.
    pub fn ranges(&self) -> [&RangeQuery; 3] {
        [&self.state, &self.cpu, &self.memory]
    }
}

/// The chunks a collection of `missing` hours (ascending) fetches.
pub fn plan(missing: &[i64], chunk_hours: u32) -> Vec<Vec<i64>> {
    plan_chunks(missing, chunk_hours.max(1))
}

async fn fetch_chunk(
    prom: &PromClient,
    hours: &[i64],
    step_secs: i64,
) -> Result<ingest::Answers, PromError> {
    let q = ChunkQueries::new(hours, step_secs);
    let owners = prom.query(&q.owners, q.owners_time).await?;
    let facts = prom.query(&q.facts, q.owners_time).await?;
    let mut ranges = Vec::with_capacity(3);
    for r in q.ranges() {
        ranges.push(
            prom.query_range(&r.promql, r.start, r.end, r.step_secs)
                .await?,
        );
    }
    let skipped = owners.non_finite_skipped
        + facts.non_finite_skipped
        + ranges.iter().map(|a| a.non_finite_skipped).sum::<u64>();
    let mut ranges = ranges.into_iter().map(|a| a.series);
    Ok(ingest::Answers {
        non_finite_skipped: skipped,
        owners: owners.series,
        facts: facts.series,
        state: ranges.next().unwrap_or_default(),
        cpu: ranges.next().unwrap_or_default(),
        memory: ranges.next().unwrap_or_default(),
    })
}

/// Collects the missing hours of `[from, to)`; returns what it did. Chunks written
/// before an error stay written.
#[tracing::instrument(skip_all, fields(cluster = %opts.cluster, from = opts.from, to = opts.to))]
pub async fn collect(
    prom: &PromClient,
    store: &dyn Store,
    opts: &CollectOptions,
) -> Result<CollectReport, CollectError> {
    if opts.from % 3600 != 0 || opts.to % 3600 != 0 || opts.from > opts.to {
        return Err(CollectError::Window(format!(
            "[{}, {}) is not a range of whole hours",
            opts.from, opts.to
        )));
    }
    if opts.step_secs <= 0 || 3600 % opts.step_secs != 0 {
        return Err(CollectError::Window(format!(
            "step {}s must divide an hour",
            opts.step_secs
        )));
    }
    let done: HashSet<i64> = store
        .collected_hours(&opts.cluster, opts.from, opts.to)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<i64> = (opts.from..opts.to)
        .step_by(3600)
        .filter(|h| !done.contains(h))
        .collect();
    let mut report = CollectReport {
        hours_already_collected: done.len() as u64,
        ..CollectReport::default()
    };
    let chunks = plan(&missing, opts.chunk_hours);
    tracing::info!(
        missing_hours = missing.len(),
        chunks = chunks.len(),
        "collecting"
    );

    let mut seen = HashSet::new();
    let mut answers = futures::stream::iter(chunks)
        .map(|hours| async move {
            let answers = fetch_chunk(prom, &hours, opts.step_secs).await?;
            Ok::<_, PromError>((hours, answers))
        })
        .buffered(opts.concurrency.max(1));
    while let Some((hours, answers)) = answers.try_next().await? {
        let n_hours = hours.len() as u64;
        let (chunk, stats) = ingest::build_chunk(&opts.cluster, hours, &answers);
        store.write_chunk(&chunk).await?;
        seen.extend(chunk.usage.iter().map(|u| u.key.clone()));
        seen.extend(chunk.containers.iter().map(|c| c.key.clone()));
        report.hours_collected += n_hours;
        opts.progress
            .report(report.hours_collected, missing.len() as u64);
        report.chunks += 1;
        report.samples += stats.samples;
        report.rejected_samples += stats.rejected;
        report.inferred_pods += stats.inferred_pods;
        tracing::debug!(
            first_hour = chunk.hours[0],
            hours = n_hours,
            samples = stats.samples,
            "chunk written"
        );
    }
    report.containers = seen.len() as u64;
    if report.inferred_pods > 0 {
        tracing::warn!(
            pods = report.inferred_pods,
            "some pods had no kube_pod_owner series: their workload was inferred from the pod name"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::plan_chunks;

    #[test]
    fn chunks_are_runs_of_consecutive_missing_hours() {
        let h = |i: i64| i * 3600;
        let missing = vec![h(0), h(1), h(2), h(3), h(5), h(6), h(9)];
        assert_eq!(
            plan_chunks(&missing, 3),
            vec![
                vec![h(0), h(1), h(2)],
                vec![h(3)],
                vec![h(5), h(6)],
                vec![h(9)]
            ]
        );
    }
}
