//! Ingests usage history from Prometheus into hourly summaries in the store.
//!
//! A run looks at the hours of `[from, to)` that are not yet collected for the
//! cluster and groups them into chunks: runs of consecutive hours inside one cell of a
//! fixed grid (`chunk_hours` long, aligned to the epoch), so every process plans the same
//! cells and can claim them. For each chunk it sizes the cluster (series per namespace),
//! asks Prometheus a few aggregated queries (owners, workload facts, container state, CPU,
//! memory), split by namespace groups when one answer would be too big, and writes the
//! chunk with its hours in one transaction. Fetching goes on while earlier chunks are
//! written. An interrupted run leaves whole chunks only; the next run picks up the hours
//! still missing.

use std::collections::HashSet;

use futures::StreamExt;

use crate::prometheus::{PromClient, PromError};
use crate::store::{Claim, Store, StoreError};

pub mod discovery;
pub mod ingest;
pub mod queries;
pub mod raw;
pub mod recent;
pub mod settings;
mod span;

pub use queries::Scope;
pub use settings::{CollectorConfig, CollectorSource, HttpCompression};
pub use span::SPAN_HOURS;

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
    /// Which series of the Prometheus belong to this cluster (a label matcher when one
    /// Prometheus holds several clusters).
    pub scope: Scope,
    /// First hour (unix seconds, hour-aligned).
    pub from: i64,
    /// End of the last hour (exclusive, hour-aligned).
    pub to: i64,
    /// Query resolution.
    pub step_secs: i64,
    /// Hours per chunk (one transaction); also the width of the claim grid.
    pub chunk_hours: u32,
    /// Queries at Prometheus at once; one chunk more than this is under way.
    pub concurrency: usize,
    /// A chunk whose namespaces hold more series than this is queried in namespace
    /// groups of at most this many; 0 never splits.
    pub max_series_per_query: u64,
    /// Told after each committed chunk.
    pub progress: Progress,
    /// Where history comes from; `Auto` probes the server once (per client).
    pub source: CollectorSource,
    /// Hours of consecutive chunks a remote read covers at once at most (see [`span`]);
    /// 0 reads chunk by chunk.
    pub span_hours: usize,
    /// Series-hours of one namespace group of a span, which bounds memory: 40,000 (not a
    /// setting; tests lower it to split small fixtures into groups).
    pub span_group_series_hours: u64,
}

impl CollectOptions {
    /// Options for `cluster` over `[from, to)` with the default collector settings.
    pub fn new(cluster: &str, from: i64, to: i64) -> Self {
        let defaults = CollectorConfig::default();
        CollectOptions {
            cluster: cluster.to_string(),
            scope: Scope::default(),
            from,
            to,
            step_secs: defaults.step.as_secs() as i64,
            chunk_hours: defaults.chunk_hours,
            concurrency: defaults.concurrency,
            max_series_per_query: defaults.max_series_per_query,
            progress: Progress::default(),
            source: defaults.source,
            span_hours: defaults.span_hours as usize,
            span_group_series_hours: span::SERIES_HOURS_PER_SPAN_GROUP,
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollectReport {
    /// Hours ingested by this run.
    pub hours_collected: u64,
    /// Hours of the window that were already collected.
    pub hours_already_collected: u64,
    /// Hours another process was collecting (its claim was held) or had just collected.
    pub hours_collected_elsewhere: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Chunks whose queries were split into namespace groups.
    pub split_chunks: u64,
    /// Queries sent to Prometheus.
    pub queries: u64,
    /// Usage samples summarized.
    pub samples: u64,
    /// Samples dropped (NaN/±Inf/negative).
    pub rejected_samples: u64,
    /// Pod lookups whose owner was guessed from the pod name.
    pub inferred_pods: u64,
    /// Distinct workload containers seen.
    pub containers: u64,
    /// Where the history came from: `remote-read` or `query-range`.
    pub source: String,
    /// Why `auto` chose `query-range`, when it did.
    pub source_note: Option<String>,
    /// Namespace groups whose remote read failed and that `auto` asked again with range
    /// queries.
    pub remote_read_fallbacks: u64,
    /// Bytes of remote-read answers.
    pub remote_read_bytes: u64,
    /// Raw samples decoded from remote-read answers.
    pub remote_read_samples: u64,
    /// Workload containers with OOM kills in the hour not collected yet (the current one),
    /// recorded so the next analysis raises their memory now.
    pub recent_oom_kills: u64,
}

/// Rounds down to the hour.
pub fn floor_hour(t: i64) -> i64 {
    t - t.rem_euclid(3600)
}

/// Splits the missing hours (ascending) into runs of consecutive hours inside one cell of
/// the `max`-hour grid.
fn plan_chunks(missing: &[i64], max: u32) -> Vec<Vec<i64>> {
    let cell = i64::from(max.max(1)) * 3600;
    let mut chunks: Vec<Vec<i64>> = Vec::new();
    for &h in missing {
        match chunks.last_mut() {
            Some(c)
                if c[0].div_euclid(cell) == h.div_euclid(cell) && c.last() == Some(&(h - 3600)) =>
            {
                c.push(h)
            }
            _ => chunks.push(vec![h]),
        }
    }
    chunks
}

/// First hour of the grid cell holding `hour`: the key of a chunk's claim.
pub fn cell_of(hour: i64, chunk_hours: u32) -> i64 {
    let cell = i64::from(chunk_hours.max(1)) * 3600;
    hour - hour.rem_euclid(cell)
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

/// The queries of one chunk for one scope. Public so benchmarks can replay exactly them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkQueries {
    /// Evaluation time of the instant queries.
    pub time: i64,
    /// Series per namespace (instant): decides whether the chunk is split.
    pub sizes: String,
    /// Owner edges (instant).
    pub owners: String,
    /// How far back from `time` the owners query looks, in seconds.
    pub owners_span: i64,
    /// Workload facts: replicas, HPA, PDB (instant; never split, it is small).
    pub facts: String,
    /// Requests, limits, info, restarts, OOM and throttling counters per pod container.
    pub state: RangeQuery,
    /// CPU usage per pod container.
    pub cpu: RangeQuery,
    /// Memory peak per pod container.
    pub memory: RangeQuery,
    /// The series these queries cover (remote read selects them with it).
    pub scope: Scope,
}

impl ChunkQueries {
    /// The queries of the chunk covering `hours` (consecutive, ascending) within `scope`.
    pub fn new(hours: &[i64], step_secs: i64, scope: &Scope) -> Self {
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
            time: end,
            sizes: queries::namespace_sizes(span, scope),
            owners: queries::owners(span, scope),
            owners_span: span,
            facts: queries::workload_facts(scope),
            state: RangeQuery {
                promql: queries::container_state(scope),
                start: start - STATE_STEP_SECS.max(step_secs),
                end,
                step_secs: STATE_STEP_SECS.max(step_secs),
            },
            cpu: range(queries::cpu_usage(scope), step_secs),
            memory: range(queries::memory_peak(step_secs, scope), step_secs),
            scope: scope.clone(),
        }
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

/// Namespace groups of at most `max_series` series each (a bigger namespace alone), in
/// name order; `None` when everything fits in one answer or `max_series` is 0.
pub fn namespace_groups(sizes: &[(String, u64)], max_series: u64) -> Option<Vec<Vec<String>>> {
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    if max_series == 0 || total <= max_series {
        return None;
    }
    let mut sorted: Vec<&(String, u64)> = sizes.iter().collect();
    sorted.sort();
    let mut groups: Vec<(Vec<String>, u64)> = Vec::new();
    for (namespace, n) in sorted {
        match groups.last_mut() {
            Some((names, sum)) if *sum + n <= max_series => {
                names.push(namespace.clone());
                *sum += n;
            }
            _ => groups.push((vec![namespace.clone()], *n)),
        }
    }
    Some(groups.into_iter().map(|(names, _)| names).collect())
}

/// Series per namespace from an answer to [`queries::namespace_sizes`].
pub fn parse_sizes(samples: &[crate::prometheus::InstantSample]) -> Vec<(String, u64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.labels.get("namespace")?.clone(), s.value.max(0.0) as u64)))
        .collect()
}

/// Whether Prometheus (or Thanos/Mimir in front of it) refused a query for its size, which
/// a narrower namespace group can fix.
fn is_too_big(e: &PromError) -> bool {
    const SIGNS: [&str; 12] = [
        // Prometheus: --query.max-samples.
        "too many samples",
        // Thanos Store: "exceeded series limit", "exceeded chunks limit".
        "series limit",
        "chunks limit",
        // Mimir: err-mimir-max-series-per-query, -max-chunks-per-query,
        // -max-fetched-chunk-bytes-per-query.
        "maximum number of series",
        "max series",
        "maximum number of chunks",
        "max number of chunks",
        "chunks size limit",
        "response size",
        // VictoriaMetrics: -search.maxUniqueTimeseries, in its current and its older words.
        "matching timeseries exceeds",
        "time series found on the time range",
        // Remote read answered as samples rather than streamed chunks.
        "exceeded sample limit",
    ];
    let message = match e {
        PromError::Api { message, .. } => message,
        // Remote read refuses with a plain-text error page.
        PromError::Status {
            status: 400..=599,
            snippet,
            ..
        } => snippet,
        _ => return false,
    };
    let message = message.to_lowercase();
    SIGNS.iter().any(|s| message.contains(s))
}

/// What the fetcher hands the writer.
enum ToWrite {
    /// A piece, written in a transaction of its own.
    Piece(Fetched),
    /// One namespace group's summaries of every chunk of a span (or of a run's only chunk),
    /// written into the span's transaction (the first group opens it): a span's summaries
    /// are never all in memory.
    Group(Vec<crate::model::Chunk>),
    /// The end of a span read whole (or of a run's only chunk): each chunk's parts (its
    /// hours) written, the span's transaction committed, then each chunk counted.
    SpanEnd(Vec<Fetched>),
    /// A span (or a run's only chunk) whose read failed after some of its groups were
    /// written: its transaction is rolled back, and its chunks are fetched again (run by
    /// run) or the run fails.
    SpanAbort,
    /// Hours another process collected.
    Elsewhere(u64),
}

/// A chunk fetched and waiting to be written, with the claim to release after writing.
struct Fetched {
    /// The piece's summaries: its hours, then every namespace group's (see [`append_group`]).
    parts: Vec<crate::model::Chunk>,
    stats: ingest::ChunkStats,
    split: bool,
    counts: Counts,
    claim: Option<Claim>,
}

/// Requests a chunk took.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Requests Prometheus answered (queries and remote reads).
    queries: u64,
    /// Namespace groups asked again with range queries after their remote read failed.
    fallbacks: u64,
    /// What the remote reads moved.
    raw: raw::RawStats,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.queries += other.queries;
        self.fallbacks += other.fallbacks;
        self.raw.bytes += other.raw.bytes;
        self.raw.samples += other.raw.samples;
    }
}

/// How a run reads the range selections: remote read (`fall_back`: under `auto`, a
/// group whose read fails is asked again with range queries) or range queries, and how
/// many namespace groups a chunk asks for at once when it is all the run fetches
/// (`alone`).
#[derive(Debug, Clone, Copy)]
struct Via {
    remote_read: bool,
    fall_back: bool,
    alone: bool,
    alone_groups: usize,
}

/// The state, CPU and memory answers of one group, from range queries.
async fn ranges_by_query(
    prom: &PromClient,
    q: &ChunkQueries,
) -> Result<[crate::prometheus::Answer<crate::prometheus::RangeSeries>; 3], PromError> {
    use queries::RawMetric;
    let [state, cpu, memory] = q.ranges();
    // The `max by` Prometheus would spend most of its CPU on, done here (cheap for us), on
    // each series as it is decoded: a namespace group's raw answers are never held.
    let ask = |metric: RawMetric, r: &RangeQuery| {
        let r = r.clone();
        async move {
            let max_by = std::sync::Mutex::new(raw::MaxBy::of(metric, &r));
            let fold = |series: Vec<crate::prometheus::RangeSeries>| {
                let mut max_by = max_by
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for s in &series {
                    max_by.add(s);
                }
            };
            let answer = prom
                .query_range_folded(&r.promql, r.start, r.end, r.step_secs, &fold)
                .await?;
            let max_by = max_by
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Ok::<_, PromError>(raw::with_answer_notes(max_by.into_answer(), answer))
        }
    };
    let (state, cpu, memory) = tokio::join!(
        ask(RawMetric::State, state),
        ask(RawMetric::Cpu, cpu),
        ask(RawMetric::Memory, memory)
    );
    Ok([state?, cpu?, memory?])
}

/// The same answers computed from remote reads of the raw series.
async fn ranges_by_read(
    prom: &PromClient,
    q: &ChunkQueries,
    raw_stats: &mut raw::RawStats,
) -> Result<[crate::prometheus::Answer<crate::prometheus::RangeSeries>; 3], PromError> {
    use queries::RawMetric;
    let (mut a, mut b, mut c) = Default::default();
    let (state, cpu, memory) = tokio::join!(
        raw::read_range(prom, RawMetric::State, &q.state, &q.scope, &mut a),
        raw::read_range(prom, RawMetric::Cpu, &q.cpu, &q.scope, &mut b),
        raw::read_range(prom, RawMetric::Memory, &q.memory, &q.scope, &mut c),
    );
    for s in [a, b, c] {
        raw_stats.bytes += s.bytes;
        raw_stats.samples += s.samples;
    }
    Ok([state?, cpu?, memory?])
}

/// The owners, state, CPU and memory answers of one namespace group (or of all), asked
/// together: the client's limit keeps them to `concurrency` at Prometheus, and a chunk alone
/// (an incremental run's one hour) is not left with one query at a time. Each is answered
/// before an error is returned, so `queries` counts exactly what Prometheus answered, the
/// refused one included. Without `ask_owners` the owners are not asked for: `answers`
/// holds the whole run's, asked with its sizing ([`size_run`]).
async fn fetch_group(
    prom: &PromClient,
    q: &ChunkQueries,
    via: Via,
    ask_owners: bool,
    answers: &mut ingest::Answers,
    counts: &mut Counts,
) -> Result<(), PromError> {
    let owners = async {
        match ask_owners {
            true => prom.query(&q.owners, q.time).await.map(Some),
            false => Ok(None),
        }
    };
    let asked = 3 + u64::from(ask_owners);
    let (owners, ranges) = if via.remote_read {
        let (owners, ranges) = tokio::join!(owners, ranges_by_read(prom, q, &mut counts.raw));
        counts.queries += asked;
        match ranges {
            Err(e) if via.fall_back && !is_too_big(&e) => {
                tracing::warn!(error = %e, "remote read failed: asking this namespace group with range queries");
                counts.fallbacks += 1;
                counts.queries += 3;
                (owners, ranges_by_query(prom, q).await)
            }
            ranges => (owners, ranges),
        }
    } else {
        let (owners, ranges) = tokio::join!(owners, ranges_by_query(prom, q));
        counts.queries += asked;
        (owners, ranges)
    };
    let (owners, [state, cpu, memory]) = (owners?, ranges?);
    answers.non_finite_skipped +=
        state.non_finite_skipped + cpu.non_finite_skipped + memory.non_finite_skipped;
    if let Some(owners) = owners {
        answers.non_finite_skipped += owners.non_finite_skipped;
        answers.owners = owners.series.into();
    }
    answers.state.extend(state.series);
    answers.cpu.extend(cpu.series);
    answers.memory.extend(memory.series);
    Ok(())
}

/// Series-hours one namespace group's read may hold (its answers, or the evaluations of a
/// remote read): the largest namespace, which is never split, bounds how long a piece of a
/// run may be, and a span's groups take fewer series the more hours they cover.
const SERIES_HOURS_PER_READ: u64 = 20_000;

/// Series-hours of summaries held before they are written: a piece of a run (every
/// namespace group's summaries of its hours) or the chunks of a span. Summaries grow with
/// workload containers, and series (which count every pod that came and went) are never
/// fewer, so this bounds them for any fleet: 300 containers' four days fit in a span, and a
/// fleet of thousands gets pieces shorter than a day. This bound, not the group's, decides a
/// big fleet's piece: at 5,000 containers (28,700 series over a day) pieces bounded by a
/// group's budget were one hour long, and every hour cost Prometheus a read of every series
/// (23 hours took 38 s, 37 s of Prometheus CPU; in three pieces of 8 hours, 9.5 s and 7.4 s).
/// A remote read costs Prometheus about the same per series for an hour as for a day, so
/// every piece pays it again: 360,000 makes that fleet's day two 12-hour pieces (peak RSS
/// 125–130 MB, measured) instead of three 8-hour ones; one piece, measured before usage
/// hours shared their container's key, peaked at 224–232 MB.
pub(super) const SERIES_HOURS_PER_WRITE: u64 = 18 * SERIES_HOURS_PER_READ;

/// What sizing a run found: series per namespace (which decides the namespace groups and
/// the length of its pieces) and the workload facts at its end.
struct Sized {
    sizes: Vec<(String, u64)>,
    facts: std::sync::Arc<[crate::prometheus::InstantSample]>,
    /// The whole run's owner edges, when they were asked with the sizing ([`size_run`]).
    owners: Option<std::sync::Arc<[crate::prometheus::InstantSample]>>,
    /// Non-finite samples of the facts (and of the run's owners), skipped.
    facts_skipped: u64,
    /// Requests the sizing took.
    queries: u64,
}

/// Hours of a run whose namespace groups are asked for at once ([`Via::alone_groups`])
/// up to which the run's owners are asked for with its sizing: a run this short is one
/// piece, and an incremental run's new hour at 5,000 containers spent a quarter of its
/// wall time on the sizing alone, with Prometheus evaluating one query on one core.
const OWNERS_WITH_SIZING_HOURS: usize = 6;

/// Sizes a run and asks for its workload facts; with `owners_too`, for its owner edges as
/// well (one query beside the sizing rather than one per namespace group after it). Owners
/// refused for their size are left to the groups.
async fn size_run(
    prom: &PromClient,
    hours: &[i64],
    opts: &CollectOptions,
    owners_too: bool,
) -> Result<Sized, PromError> {
    let whole = ChunkQueries::new(hours, opts.step_secs, &opts.scope);
    let owners = async {
        if owners_too {
            Some(prom.query(&whole.owners, whole.time).await)
        } else {
            None
        }
    };
    let (sizes, facts, owners) = tokio::join!(
        prom.query(&whole.sizes, whole.time),
        prom.query(&whole.facts, whole.time),
        owners
    );
    // The sizing query's error first: it is the one that says the chunk is too big.
    let sizes = parse_sizes(&sizes?.series);
    let facts = facts?;
    let mut skipped = facts.non_finite_skipped;
    let owners = match owners {
        None => None,
        Some(Err(e)) if is_too_big(&e) => None,
        Some(owners) => {
            let owners = owners?;
            skipped += owners.non_finite_skipped;
            Some(owners.series.into())
        }
    };
    Ok(Sized {
        sizes,
        facts: facts.series.into(),
        owners,
        facts_skipped: skipped,
        queries: 2 + u64::from(owners_too),
    })
}

/// Hours per piece of a run of `hours` whose namespaces hold `sizes` series: the pieces'
/// summaries stay within [`SERIES_HOURS_PER_WRITE`] and the biggest read within
/// [`SERIES_HOURS_PER_READ`] (the largest namespace, or everything when queries are never
/// split); a run is cut into as few pieces as fit, all as long as the first but the last.
fn piece_hours(sizes: &[(String, u64)], hours: usize, max_series_per_query: u64) -> usize {
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    let largest = match max_series_per_query {
        0 => total,
        _ => sizes.iter().map(|(_, n)| *n).max().unwrap_or(0),
    };
    let fit = (SERIES_HOURS_PER_WRITE / total.max(1)).min(SERIES_HOURS_PER_READ / largest.max(1));
    let hours = hours.max(1);
    let pieces = hours.div_ceil((fit as usize).clamp(1, hours));
    hours.div_ceil(pieces)
}

/// Series per namespace group for a chunk of `hours`: `max_series_per_query` holds for a
/// day, and a shorter chunk takes proportionally more series per query, so that an answer
/// stays the same size (and an hour of a big fleet is a few queries, not hundreds); 0
/// never splits.
fn group_series(max_series_per_query: u64, hours: usize) -> u64 {
    max_series_per_query * (24 / hours.clamp(1, 24)) as u64
}

/// Fetches one chunk: sizes it, then asks for everything at once or, when too big, per
/// namespace group, halving a group that Prometheus still refuses for its size.
/// Each namespace group's answers are summarized as soon as they arrive, so memory holds
/// `groups_at_once` groups' raw answers at a time (each bounded by `max_series_per_query`),
/// not the cluster's; the groups' summaries are disjoint (a namespace is in one group) and
/// are concatenated into the chunk, or with `stream` handed to the writer one group at a
/// time (the chunk's parts are then only its hours).
async fn fetch_chunk(
    prom: &PromClient,
    hours: &[i64],
    opts: &CollectOptions,
    via: Via,
    sized: &Sized,
    groups_at_once: usize,
    stream: Option<&ToWriter>,
) -> Result<(Vec<crate::model::Chunk>, ingest::ChunkStats, bool, Counts), PromError> {
    let whole = ChunkQueries::new(hours, opts.step_secs, &opts.scope);
    let sizes = &sized.sizes;
    let mut parts = vec![crate::model::Chunk::empty(&opts.cluster, hours.to_vec())];
    let mut stats = ingest::ChunkStats {
        rejected: sized.facts_skipped,
        ..Default::default()
    };
    let mut counts = Counts::default();
    let mut pending: Vec<Option<Vec<String>>> =
        match namespace_groups(sizes, group_series(opts.max_series_per_query, hours.len())) {
            None => vec![None],
            Some(groups) => groups.into_iter().rev().map(Some).collect(),
        };
    let mut split = pending.len() > 1;
    let whole = &whole;
    let fetch_one = |group: Option<Vec<String>>| async move {
        let q = match &group {
            None => whole.clone(),
            Some(names) => ChunkQueries::new(
                hours,
                opts.step_secs,
                &opts.scope.with_namespaces(names.clone()),
            ),
        };
        let mut part = ingest::Answers {
            facts: sized.facts.clone(),
            owners: sized.owners.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut counts = Counts::default();
        let ask_owners = sized.owners.is_none();
        let result = fetch_group(prom, &q, via, ask_owners, &mut part, &mut counts).await;
        (group, result.map(|()| part), counts)
    };
    // With two groups or more at once, Prometheus evaluates one group's queries while another's
    // answers are encoded and decoded. Results are taken in the order asked.
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < groups_at_once.max(1) {
            let Some(group) = pending.pop() else { break };
            in_flight.push_back(fetch_one(group));
        }
        let Some((group, result, c)) = in_flight.next().await else {
            break;
        };
        counts.add(&c);
        match result {
            Ok(part) => {
                let (cluster, run) = (opts.cluster.clone(), hours.to_vec());
                let (built, s) =
                    tokio::task::spawn_blocking(move || ingest::build_chunk(&cluster, run, &part))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                match stream {
                    Some(to_writer) => {
                        add_stats(&mut stats, &s);
                        // A writer that stopped has failed: the run ends with its error.
                        if to_writer.send(ToWrite::Group(vec![built])).await.is_err() {
                            break;
                        }
                    }
                    None => append_group(&mut parts, &mut stats, built, &s),
                }
            }
            Err(e) if is_too_big(&e) => {
                let names: Vec<String> = match group {
                    None => sizes.iter().map(|(n, _)| n.clone()).collect(),
                    Some(names) => names,
                };
                if names.len() < 2 {
                    return Err(e);
                }
                tracing::info!(namespaces = names.len(), error = %e, "answer too big for Prometheus: splitting the namespace group");
                split = true;
                let mut names = names;
                names.sort();
                let second = names.split_off(names.len() / 2);
                pending.push(Some(second));
                pending.push(Some(names));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((parts, stats, split, counts))
}

/// Adds one namespace group's summaries to its chunk's parts (groups are disjoint: a
/// namespace is in one group), and its counts to the chunk's. Kept as parts, written in one
/// transaction ([`Store::write_parts`]): joined, a piece's vectors grew by doubling and
/// were copied at each step.
fn append_group(
    parts: &mut Vec<crate::model::Chunk>,
    stats: &mut ingest::ChunkStats,
    built: crate::model::Chunk,
    s: &ingest::ChunkStats,
) {
    parts.push(built);
    add_stats(stats, s);
}

/// Adds one namespace group's counts to its chunk's.
fn add_stats(stats: &mut ingest::ChunkStats, s: &ingest::ChunkStats) {
    stats.samples += s.samples;
    stats.rejected += s.rejected;
    stats.inferred_pods += s.inferred_pods;
    stats.ignored_series += s.ignored_series;
}

/// How long a run waits, at its end, for a chunk another process holds: past it, the
/// chunk is left to that process (or the next run).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(900);

/// What became of one planned chunk.
enum Outcome {
    /// Fetched and handed to the writer piece by piece (the claim with the last piece).
    Sent,
    /// Another process holds its cell: retried, waiting, after the other chunks.
    Held(Vec<i64>),
    /// These many hours were collected by another process meanwhile.
    Elsewhere(u64),
}

/// Where fetched pieces go: the writer, or a count of hours collected elsewhere.
type ToWriter = tokio::sync::mpsc::Sender<ToWrite>;

/// A claimed cell: the runs of its hours still missing, and its claim (released with the
/// cell's last piece).
struct Claimed {
    runs: Vec<Vec<i64>>,
    claim: Claim,
}

/// Claims the cell of `hours` and drops the hours that were collected meanwhile (by
/// another process); `Err` with what became of the cell when there is nothing to fetch.
/// With `wait`, polls a held cell until its holder is done (or died: its claim is freed
/// with its connection), at most [`CLAIM_WAIT`].
async fn claim_cell(
    store: &dyn Store,
    hours: Vec<i64>,
    opts: &CollectOptions,
    wait: bool,
) -> Result<Result<Claimed, Outcome>, CollectError> {
    let n = hours.len() as u64;
    let cell = cell_of(hours[0], opts.chunk_hours);
    let deadline = std::time::Instant::now() + CLAIM_WAIT;
    let claim = loop {
        match store.claim_chunk(&opts.cluster, cell).await? {
            Some(claim) => break claim,
            None if !wait => return Ok(Err(Outcome::Held(hours))),
            None if std::time::Instant::now() >= deadline => {
                tracing::warn!(
                    cell,
                    "another process held this chunk too long; leaving it to them"
                );
                return Ok(Err(Outcome::Elsewhere(n)));
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    let runs = missing_runs(store, hours, opts).await?;
    if runs.is_empty() {
        claim.release().await;
        return Ok(Err(Outcome::Elsewhere(n)));
    }
    Ok(Ok(Claimed { runs, claim }))
}

/// The runs of a claimed cell's `hours` that nobody collected meanwhile.
async fn missing_runs(
    store: &dyn Store,
    hours: Vec<i64>,
    opts: &CollectOptions,
) -> Result<Vec<Vec<i64>>, CollectError> {
    let last = hours[hours.len() - 1] + 3600;
    let done: HashSet<i64> = store
        .collected_hours(&opts.cluster, hours[0], last)
        .await?
        .into_iter()
        .collect();
    Ok(plan_chunks(
        &hours
            .into_iter()
            .filter(|h| !done.contains(h))
            .collect::<Vec<_>>(),
        opts.chunk_hours,
    ))
}

/// Claims the cells of a span together (one claim for all, released with the span's last
/// piece); a cell another process holds is left for later, one it collected meanwhile
/// counted.
async fn claim_span(
    store: &dyn Store,
    cells: Vec<Vec<i64>>,
    opts: &CollectOptions,
    outcomes: &mut Vec<Outcome>,
) -> Result<Vec<(Vec<i64>, Option<Claim>)>, CollectError> {
    let starts: Vec<i64> = cells
        .iter()
        .map(|hours| cell_of(hours[0], opts.chunk_hours))
        .collect();
    let (granted, claim) = store.claim_chunks(&opts.cluster, &starts).await?;
    let mut work: Vec<(Vec<i64>, Option<Claim>)> = Vec::new();
    for (hours, granted) in cells.into_iter().zip(granted) {
        if !granted {
            outcomes.push(Outcome::Held(hours));
            continue;
        }
        let n = hours.len() as u64;
        let runs = missing_runs(store, hours, opts).await?;
        if runs.is_empty() {
            outcomes.push(Outcome::Elsewhere(n));
        }
        work.extend(runs.into_iter().map(|run| (run, None)));
    }
    match work.last_mut() {
        Some(last) => last.1 = Some(claim),
        None => claim.release().await,
    }
    Ok(work)
}

/// Claims the cells (one, or a span of consecutive ones under remote read) and fetches the
/// runs that remain; what became of each cell another process holds or collected is in
/// the outcomes. Each run is sized first and cut into pieces when its series would make
/// one chunk too big ([`piece_hours`]); every piece goes to the writer as soon
/// as it is fetched, so memory holds a piece, not a cell. Several runs read over remote
/// read are read together where their series allow ([`span`]).
async fn claim_and_fetch(
    prom: &PromClient,
    store: &dyn Store,
    cells: Vec<Vec<i64>>,
    opts: &CollectOptions,
    via: Via,
    to_writer: &ToWriter,
    wait: bool,
) -> Result<Vec<Outcome>, CollectError> {
    let mut outcomes = Vec::new();
    let mut work: Vec<(Vec<i64>, Option<Claim>)> = Vec::new();
    if cells.len() > 1 {
        work = claim_span(store, cells, opts, &mut outcomes).await?;
    } else if let Some(hours) = cells.into_iter().next() {
        match claim_cell(store, hours, opts, wait).await? {
            Ok(Claimed { runs, claim }) => {
                let n = runs.len();
                let mut claim = Some(claim);
                for (i, run) in runs.into_iter().enumerate() {
                    work.push((run, if i + 1 == n { claim.take() } else { None }));
                }
            }
            Err(outcome) => outcomes.push(outcome),
        }
    }
    if work.is_empty() {
        return Ok(outcomes);
    }
    outcomes.push(Outcome::Sent);
    if via.remote_read && work.len() > 1 {
        fetch_spans(prom, work, opts, via, to_writer).await?;
    } else {
        for (run, claim) in work {
            if !fetch_run(prom, &run, claim, opts, via, to_writer).await? {
                break;
            }
        }
    }
    Ok(outcomes)
}

/// Fetches one run, sized on its own and cut into pieces, each handed to the writer (the
/// claim with the last); `false` when the writer stopped (it failed: the run ends with its
/// error).
async fn fetch_run(
    prom: &PromClient,
    run: &[i64],
    mut claim: Option<Claim>,
    opts: &CollectOptions,
    via: Via,
    to_writer: &ToWriter,
) -> Result<bool, CollectError> {
    let owners_too = via.alone_groups > 1 && run.len() <= OWNERS_WITH_SIZING_HOURS;
    let mut sized = size_run(prom, run, opts, owners_too).await?;
    let piece = piece_hours(&sized.sizes, run.len(), opts.max_series_per_query);
    let pieces: Vec<&[i64]> = run.chunks(piece).collect();
    let n_pieces = pieces.len();
    if n_pieces > 1 {
        // Each piece asks for the owners of its own hours.
        sized.owners = None;
    }
    for (p, piece) in pieces.into_iter().enumerate() {
        // Only a piece that is the whole run: pieces after it would wait on the writer
        // holding this one's summaries, with more answers in memory meanwhile.
        let groups = if n_pieces == 1 { via.alone_groups } else { 1 };
        // The run's only piece, alone in the collection (an incremental run's new hour):
        // its groups are written into one transaction as they are built, while the later
        // groups are still read, instead of all of them after the last.
        let stream = n_pieces == 1 && via.alone;
        let fetched = fetch_chunk(
            prom,
            piece,
            opts,
            via,
            &sized,
            groups,
            stream.then_some(to_writer),
        );
        let (parts, stats, split, mut counts) = match fetched.await {
            Ok(fetched) => fetched,
            Err(e) => {
                if stream {
                    // Rolls back the groups written so far.
                    let _ = to_writer.send(ToWrite::SpanAbort).await;
                }
                return Err(e.into());
            }
        };
        if p == 0 {
            counts.queries += sized.queries;
        }
        let fetched = Fetched {
            parts,
            stats,
            split,
            counts,
            claim: if p + 1 == n_pieces {
                claim.take()
            } else {
                None
            },
        };
        let end = if stream {
            // Its hours marked collected and the transaction committed.
            ToWrite::SpanEnd(vec![fetched])
        } else {
            ToWrite::Piece(fetched)
        };
        if to_writer.send(end).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Fetches consecutive runs over remote read, as few reads as their series allow: sized
/// once together, then read in spans ([`span::sub_spans`]); a span that cannot be read at
/// once (a namespace too big for it, or, under `auto` or for its size, a read that failed)
/// is fetched run by run.
async fn fetch_spans(
    prom: &PromClient,
    work: Vec<(Vec<i64>, Option<Claim>)>,
    opts: &CollectOptions,
    via: Via,
    to_writer: &ToWriter,
) -> Result<(), CollectError> {
    let (runs, mut claims): (Vec<Vec<i64>>, Vec<Option<Claim>>) = work.into_iter().unzip();
    let whole = ChunkQueries::new(&runs.concat(), opts.step_secs, &opts.scope);
    let sizes = span::sizes(prom, &whole, &opts.scope).await?;
    let mut sizing_queries = 1;
    let series = sizes.iter().map(|(_, n)| n).sum();
    let largest = sizes.iter().map(|(_, n)| *n).max().unwrap_or(0);
    for range in span::sub_spans(&runs, series, largest, opts.span_group_series_hours) {
        let sub = &runs[range.clone()];
        if sub.len() > 1 {
            let facts = futures::future::try_join_all(sub.iter().map(|run| async move {
                let q = ChunkQueries::new(run, opts.step_secs, &opts.scope);
                prom.query(&q.facts, q.time).await
            }))
            .await?;
            let read = span::fetch_span(prom, sub, opts, &sizes, &facts, to_writer).await;
            if read.is_err() && to_writer.send(ToWrite::SpanAbort).await.is_err() {
                return Ok(());
            }
            match read {
                Ok(Some(chunks)) => {
                    let chunks = range.zip(chunks).map(|(i, mut c)| {
                        c.counts.queries += std::mem::take(&mut sizing_queries);
                        c.counts.queries += 1; // its facts
                        Fetched {
                            parts: vec![crate::model::Chunk::empty(&opts.cluster, c.hours)],
                            stats: c.stats,
                            split: c.split,
                            counts: c.counts,
                            claim: claims[i].take(),
                        }
                    });
                    let end = ToWrite::SpanEnd(chunks.collect());
                    if to_writer.send(end).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) if via.fall_back || is_too_big(&e) => {
                    tracing::warn!(error = %e, hours = sub.iter().map(Vec::len).sum::<usize>(), "reading several chunks at once failed: reading them one by one");
                }
                Err(e) => return Err(e.into()),
            }
        }
        for i in range {
            if !fetch_run(prom, &runs[i], claims[i].take(), opts, via, to_writer).await? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The source a run reads from, and why `auto` chose range queries when it did.
async fn resolve_source(prom: &PromClient, source: CollectorSource) -> (Via, Option<String>) {
    match source {
        CollectorSource::RemoteRead => (
            Via {
                remote_read: true,
                fall_back: false,
                alone: false,
                alone_groups: 1,
            },
            None,
        ),
        CollectorSource::QueryRange => (
            Via {
                remote_read: false,
                fall_back: false,
                alone: false,
                alone_groups: 1,
            },
            None,
        ),
        CollectorSource::Auto => {
            // A probe that fails for a transient reason (the server unreachable) is not
            // remembered: this run uses range queries, whose errors say what is wrong, and
            // the next run probes again.
            let why = match prom.remote_read_offered().await {
                Ok(Ok(())) => {
                    return (
                        Via {
                            remote_read: true,
                            fall_back: true,
                            alone: false,
                            alone_groups: 1,
                        },
                        None,
                    )
                }
                Ok(Err(why)) => format!("remote read unavailable: {why}"),
                Err(e) => format!("remote read probe failed: {e}"),
            };
            tracing::info!(reason = %why, "collecting with range queries");
            (
                Via {
                    remote_read: false,
                    fall_back: false,
                    alone: false,
                    alone_groups: 1,
                },
                Some(why),
            )
        }
    }
}

/// The whole window and the step are in whole hours: anything else would mark hours
/// collected that were not.
fn check_window(opts: &CollectOptions) -> Result<(), CollectError> {
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
    Ok(())
}

/// Consecutive chunks (adjacent cells) grouped into spans of at most `max_hours` hours;
/// each chunk alone when `max_hours` is 0.
fn spans(chunks: Vec<Vec<i64>>, max_hours: usize) -> Vec<Vec<Vec<i64>>> {
    let mut out: Vec<Vec<Vec<i64>>> = Vec::new();
    for chunk in chunks {
        match out.last_mut() {
            Some(span)
                if span.iter().map(Vec::len).sum::<usize>() + chunk.len() <= max_hours
                    && span.last().and_then(|c| c.last()).map(|h| h + 3600)
                        == chunk.first().copied() =>
            {
                span.push(chunk)
            }
            _ => out.push(vec![chunk]),
        }
    }
    out
}

/// Chunks another process holds are skipped at first and waited for at the end, so the
/// run ends with every hour collected by someone: an analysis right after it sees them
/// all, and a holder that died is replaced.
async fn fetch_all(
    prom: &PromClient,
    store: &dyn Store,
    chunks: Vec<Vec<i64>>,
    opts: &CollectOptions,
    via: Via,
    tx: ToWriter,
) -> Result<(), CollectError> {
    let mut held = Vec::new();
    let tx = &tx;
    // A run of one chunk (an incremental run's new hour) would leave Prometheus with one
    // namespace group's queries at a time, idle while their answers travel: it asks for
    // `concurrency` groups at once instead, as many answers as chunks in flight hold.
    let via = Via {
        alone: chunks.len() == 1,
        alone_groups: if chunks.len() == 1 {
            opts.concurrency.max(1)
        } else {
            1
        },
        ..via
    };
    // `concurrency` chunks and one more under way; under remote read one span at a time
    // (its groups' reads keep Prometheus busy, and a span holds its chunks' summaries).
    let (span_hours, ahead) = if via.remote_read && opts.span_hours > 0 {
        (opts.span_hours, 1)
    } else {
        (0, opts.concurrency.max(1) + 1)
    };
    let mut fetches = futures::stream::iter(spans(chunks, span_hours))
        .map(|cells| claim_and_fetch(prom, store, cells, opts, via, tx, false))
        .buffered(ahead);
    while let Some(outcomes) = fetches.next().await {
        for outcome in outcomes? {
            match outcome {
                Outcome::Held(hours) => held.push(hours),
                Outcome::Sent => {}
                Outcome::Elsewhere(n) => {
                    if tx.send(ToWrite::Elsewhere(n)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    drop(fetches);
    for hours in held {
        for outcome in claim_and_fetch(prom, store, vec![hours], opts, via, tx, true).await? {
            match outcome {
                Outcome::Sent => {}
                Outcome::Elsewhere(n) => {
                    if tx.send(ToWrite::Elsewhere(n)).await.is_err() {
                        return Ok(());
                    }
                }
                Outcome::Held(_) => unreachable!("a waiting claim is never left held"),
            }
        }
    }
    Ok(())
}

/// Writes each fetched piece, and each span's groups, as they come (`total` hours in all,
/// for the progress), counting into `report`; returns the workload containers seen. A
/// writer that fails drops `rx`, which stops the fetcher at its next send; a span's
/// transaction still open then is rolled back.
async fn write_all(
    store: &dyn Store,
    mut rx: tokio::sync::mpsc::Receiver<ToWrite>,
    opts: &CollectOptions,
    report: &mut CollectReport,
    total: u64,
) -> Result<HashSet<crate::model::ContainerKey>, CollectError> {
    let mut seen = HashSet::new();
    let mut progressed = 0;
    let mut span: Option<Box<dyn crate::store::PartsWriter>> = None;
    while let Some(item) = rx.recv().await {
        match item {
            ToWrite::Elsewhere(hours) => {
                report.hours_collected_elsewhere += hours;
                progressed += hours;
                opts.progress.report(progressed, total);
            }
            ToWrite::Piece(fetched) => {
                store.write_parts(&fetched.parts).await?;
                note_containers(&mut seen, &fetched.parts);
                written(fetched, opts, report, &mut progressed, total).await;
            }
            ToWrite::Group(parts) => {
                let open = match &mut span {
                    Some(open) => open,
                    None => {
                        let hours: Vec<i64> = parts.iter().flat_map(|p| p.hours.clone()).collect();
                        span.insert(store.begin_parts(&hours).await?)
                    }
                };
                open.write(&parts).await?;
                note_containers(&mut seen, &parts);
            }
            ToWrite::SpanAbort => span = None,
            ToWrite::SpanEnd(chunks) => {
                let mut open = match span.take() {
                    Some(open) => open,
                    None => {
                        let hours: Vec<i64> = chunks
                            .iter()
                            .flat_map(|c| c.parts[0].hours.clone())
                            .collect();
                        store.begin_parts(&hours).await?
                    }
                };
                // Each chunk's hours, marked collected (every group's parts marked them
                // too: this keeps the commit from depending on that).
                let hours: Vec<crate::model::Chunk> =
                    chunks.iter().flat_map(|c| c.parts.clone()).collect();
                open.write(&hours).await?;
                open.commit().await?;
                for chunk in chunks {
                    written(chunk, opts, report, &mut progressed, total).await;
                }
            }
        }
    }
    Ok(seen)
}

/// Adds the workload containers of `parts` to `seen`.
fn note_containers(seen: &mut HashSet<crate::model::ContainerKey>, parts: &[crate::model::Chunk]) {
    // Not `extend`: it reserves room for every usage hour (31 MB for 13 hours of 5,000
    // containers) and clones each hour's key.
    for key in parts
        .iter()
        .flat_map(|c| (c.usage.iter().map(|u| &*u.key)).chain(c.containers.iter().map(|c| &c.key)))
    {
        if !seen.contains(key) {
            seen.insert(key.clone());
        }
    }
}

/// Releases a committed chunk's claim and counts it.
async fn written(
    f: Fetched,
    opts: &CollectOptions,
    report: &mut CollectReport,
    progressed: &mut u64,
    total: u64,
) {
    if let Some(claim) = f.claim {
        claim.release().await;
    }
    let hours = &f.parts[0].hours;
    let n_hours = hours.len() as u64;
    crate::telemetry::metrics().chunk_written(&opts.cluster);
    report.hours_collected += n_hours;
    *progressed += n_hours;
    opts.progress.report(*progressed, total);
    report.add_chunk(f.split, &f.counts, &f.stats);
    tracing::debug!(
        first_hour = hours[0],
        hours = n_hours,
        samples = f.stats.samples,
        "chunk written"
    );
}

impl CollectReport {
    /// Counts a chunk the writer committed.
    fn add_chunk(&mut self, split: bool, counts: &Counts, stats: &ingest::ChunkStats) {
        self.chunks += 1;
        self.split_chunks += u64::from(split);
        self.queries += counts.queries;
        self.remote_read_fallbacks += counts.fallbacks;
        self.remote_read_bytes += counts.raw.bytes;
        self.remote_read_samples += counts.raw.samples;
        self.samples += stats.samples;
        self.rejected_samples += stats.rejected;
        self.inferred_pods += stats.inferred_pods;
    }
}

/// Collects the missing hours of `[from, to)`; returns what it did. Chunks written
/// before an error stay written.
#[tracing::instrument(skip_all, fields(cluster = %opts.cluster, from = opts.from, to = opts.to))]
pub async fn collect(
    prom: &PromClient,
    store: &dyn Store,
    opts: &CollectOptions,
) -> Result<CollectReport, CollectError> {
    check_window(opts)?;
    let done: HashSet<i64> = store
        .collected_hours(&opts.cluster, opts.from, opts.to)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<i64> = (opts.from..opts.to)
        .step_by(3600)
        .filter(|h| !done.contains(h))
        .collect();
    let (via, source_note) = resolve_source(prom, opts.source).await;
    let mut report = CollectReport {
        hours_already_collected: done.len() as u64,
        source: if via.remote_read {
            CollectorSource::RemoteRead
        } else {
            CollectorSource::QueryRange
        }
        .as_str()
        .into(),
        source_note,
        ..CollectReport::default()
    };
    let chunks = plan(&missing, opts.chunk_hours);
    tracing::info!(
        missing_hours = missing.len(),
        chunks = chunks.len(),
        "collecting"
    );

    // The fetcher runs ahead of the writer (bounded by the channel), so Prometheus keeps
    // answering while a chunk is summarized and committed. Both run in this task: dropping
    // the run stops both, and a claim dropped unreleased closes its connection.
    let (tx, rx) = tokio::sync::mpsc::channel::<ToWrite>(1);
    // `concurrency` queries at Prometheus at once, and one chunk more under way: while a
    // chunk's answers are decoded and summarized, the extra chunk's queries keep Prometheus
    // at full concurrency (a chunk sizes itself before it asks for its groups, and asks for
    // its groups one after another).
    let limited = prom.limited(opts.concurrency);
    let prom = &limited;
    let fetcher = fetch_all(prom, store, chunks, opts, via, tx);
    let writer = write_all(store, rx, opts, &mut report, missing.len() as u64);
    let (fetched, written) = tokio::join!(fetcher, writer);
    let seen = written?;
    fetched?;
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
    use super::{group_series, is_too_big, namespace_groups, piece_hours, plan_chunks};
    use crate::prometheus::PromError;

    /// Each backend's refusal of a query for its size, in its documented words, splits the
    /// namespace group; other errors do not.
    #[test]
    fn size_refusals_of_every_backend_split_the_group() {
        let api = |message: &str| PromError::Api {
            error_type: "execution".into(),
            message: message.into(),
            query: "q".into(),
        };
        for refusal in [
            // Prometheus 2.42, --query.max-samples
            "query processing would load too many samples into memory in query execution",
            // Thanos Store gateway, --store.grpc.series-sample-limit / series limit
            "rpc error: code = Aborted desc = exceeded series limit: limit 10000 violated (got 10001)",
            "exceeded chunks limit: limit 20000 violated (got 20001)",
            // Mimir (docs: "Grafana Mimir runbooks", err-mimir-max-*-per-query)
            "the query exceeded the maximum number of series (limit: 100000 series) (err-mimir-max-series-per-query)",
            "the query exceeded the maximum number of chunks (limit: 2000000 chunks) (err-mimir-max-chunks-per-query)",
            "the query exceeded the aggregated chunks size limit (limit: 1000000000 bytes) (err-mimir-max-chunks-bytes-per-query)",
            // VictoriaMetrics, -search.maxUniqueTimeseries (current and older wording)
            "error when searching for metricIDs in the current indexdb: the number of matching timeseries exceeds 300000; either narrow down the search or increase -search.max* command-line flag values",
            "more than 300001 time series found on the time range [2020-07-01 09:20:10 - 2020-07-01 09:25:40]; either increase -search.maxUniqueTimeseries or shrink the time range",
        ] {
            assert!(is_too_big(&api(refusal)), "{refusal}");
        }
        for other in [
            "parse error at char 5: unexpected identifier",
            "the query time range exceeds the limit (query length: 745h, limit: 721h) (err-mimir-max-query-length)",
        ] {
            assert!(!is_too_big(&api(other)), "{other}");
        }
    }

    #[test]
    // A small fleet keeps whole-day chunks; a big one gets pieces short enough to bound a
    // chunk's summaries, and its groups take more series per query for a short piece.
    fn big_fleets_get_shorter_pieces_with_bigger_groups() {
        let fleet = |namespaces: u64, each: u64| -> Vec<(String, u64)> {
            (0..namespaces).map(|i| (format!("ns-{i}"), each)).collect()
        };
        assert_eq!(piece_hours(&fleet(80, 10), 24, 300), 24);
        // 5,000 containers (28,700 series over a day): two pieces, not 24.
        assert_eq!(piece_hours(&fleet(1_336, 22), 24, 300), 12);
        assert_eq!(piece_hours(&fleet(4, 4_000), 24, 300), 5);
        // One namespace bounds the piece by its own reads.
        assert_eq!(piece_hours(&fleet(1, 5_000), 24, 300), 4);
        // Queries never split: everything is one read.
        assert_eq!(piece_hours(&fleet(80, 10), 24, 0), 24);
        assert_eq!(piece_hours(&fleet(1_336, 13), 24, 0), 1);
        assert_eq!(piece_hours(&[], 3, 300), 3);
        assert_eq!(group_series(300, 24), 300);
        assert_eq!(group_series(300, 4), 1_800);
        assert_eq!(group_series(300, 1), 7_200);
        assert_eq!(group_series(0, 1), 0);
    }

    #[test]
    fn namespaces_are_grouped_up_to_the_budget() {
        let sizes: Vec<(String, u64)> = [("b", 30), ("a", 50), ("c", 200), ("d", 10)]
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        assert_eq!(namespace_groups(&sizes, 290), None);
        assert_eq!(namespace_groups(&sizes, 0), None);
        assert_eq!(
            namespace_groups(&sizes, 100),
            Some(vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()],
                vec!["d".to_string()]
            ])
        );
    }

    #[test]
    // Cells of 3 hours: [0,3) [3,6) [6,9) [9,12); a run never crosses a cell boundary, so
    // every process plans the same cells and can claim them.
    fn chunks_are_runs_of_consecutive_missing_hours_within_a_cell() {
        let h = |i: i64| i * 3600;
        let missing = vec![h(0), h(1), h(2), h(3), h(5), h(6), h(9)];
        assert_eq!(
            plan_chunks(&missing, 3),
            vec![
                vec![h(0), h(1), h(2)],
                vec![h(3)],
                vec![h(5)],
                vec![h(6)],
                vec![h(9)]
            ]
        );
    }
}
