//! Several consecutive chunks read at once over remote read.
//!
//! Prometheus pays for a remote read largely per series it finds in its index: a request
//! decodes the index entry (labels and chunk references) of every matching series in every
//! block it touches, however few of that series' samples fall in the range. A backfill that
//! reads a day at a time pays that once per day for every series of a block, and a block
//! can hold weeks. A span reads each selection of a namespace group once for several chunks
//! and cuts the samples into each chunk's evaluation as they arrive ([`raw::Spread`]), so
//! every chunk gets exactly the samples a read of its own window returns. The chunk stays
//! the unit of claiming and writing: a span only changes how its chunks are read.

use crate::prometheus::{Answer, InstantSample, PromClient, PromError};

use super::raw::{self, RawStats};
use super::{
    append_group, group_series, ingest, namespace_groups, queries::RawMetric, ChunkQueries,
    CollectOptions, Counts, SERIES_HOURS_PER_READ, SERIES_HOURS_PER_WRITE,
};

/// Hours of history one span covers at most: four day-long chunks. Longer spans cost
/// Prometheus less still (a week: 2.5 s of its CPU instead of 3.1 s for 300 containers'
/// 14 days) but hold more summaries (peak RSS 166 MB instead of 133 MB).
pub const SPAN_HOURS: usize = 96;

/// Series per namespace over the window of `whole` (the span's chunks as one): the
/// series [`super::queries::namespace_sizes`] counts, listed by `/api/v1/series`, which
/// Prometheus answers from its index alone, where the instant query reads every sample of
/// the span (at 300 containers, a third of what a backfill in spans cost Prometheus). A
/// series whose only samples in the window are stale markers is counted too: sizes only
/// decide how reads are cut.
pub async fn sizes(
    prom: &PromClient,
    whole: &ChunkQueries,
    scope: &super::Scope,
) -> Result<Vec<(String, u64)>, PromError> {
    let selectors = super::queries::sized_series(scope);
    let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
    let series = prom
        .series(&selectors, whole.time - whole.owners_span, whole.time)
        .await?;
    let mut sizes: std::collections::BTreeMap<String, u64> = Default::default();
    for labels in series {
        if let Some(namespace) = labels.get("namespace") {
            *sizes.entry(namespace.clone()).or_default() += 1;
        }
    }
    Ok(sizes.into_iter().collect())
}

/// Consecutive runs of a span that are read together: as many as keep the summaries of
/// `series` series within [`SERIES_HOURS_PER_WRITE`]; a run alone when even two do not fit.
pub fn sub_spans(runs: &[Vec<i64>], series: u64) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut hours = 0u64;
    for (i, run) in runs.iter().enumerate() {
        let n = run.len() as u64;
        match out.last_mut() {
            Some(r) if (hours + n) * series.max(1) <= SERIES_HOURS_PER_WRITE => {
                r.end = i + 1;
                hours += n;
            }
            _ => {
                out.push(i..i + 1);
                hours = n;
            }
        }
    }
    out
}

/// Namespace groups for reading `hours` hours at once: each group's series over those
/// hours stay within [`SERIES_HOURS_PER_READ`] (what the evaluations of one read
/// hold), and within `max_series_per_query` (0: no limit). `None` when one namespace alone
/// is over it: its chunks are then read one by one, in pieces.
fn span_groups(
    sizes: &[(String, u64)],
    hours: usize,
    max_series_per_query: u64,
) -> Option<Vec<Option<Vec<String>>>> {
    let budget = SERIES_HOURS_PER_READ / hours.max(1) as u64;
    let cap = match group_series(max_series_per_query, hours) {
        0 => budget,
        m => m.min(budget),
    };
    if sizes.iter().any(|(_, n)| *n > cap) {
        return None;
    }
    Some(match namespace_groups(sizes, cap) {
        None => vec![None],
        Some(groups) => groups.into_iter().map(Some).collect(),
    })
}

/// One chunk of a span, fetched: its summaries, what building them found, whether it was
/// read in namespace groups, and the requests it took (the span's all go to its first).
pub struct SpanChunk {
    /// The chunk's summaries: its hours, then every namespace group's (see [`append_group`]).
    pub parts: Vec<crate::model::Chunk>,
    /// What building them found.
    pub stats: ingest::ChunkStats,
    /// Whether the span was read in namespace groups.
    pub split: bool,
    /// The span's requests (on its first chunk only).
    pub counts: Counts,
}

/// Reads the chunks of `runs` (consecutive, ascending) at once, namespace group by
/// namespace group, each chunk with the workload facts of its end (`facts`, one per run).
/// `Ok(None)` when a namespace is too big to read the span at once.
pub async fn fetch_span(
    prom: &PromClient,
    runs: &[Vec<i64>],
    opts: &CollectOptions,
    sizes: &[(String, u64)],
    facts: &[Answer<InstantSample>],
) -> Result<Option<Vec<SpanChunk>>, PromError> {
    let hours: usize = runs.iter().map(Vec::len).sum();
    let Some(groups) = span_groups(sizes, hours, opts.max_series_per_query) else {
        return Ok(None);
    };
    let split = groups.len() > 1;
    let mut out: Vec<SpanChunk> = runs
        .iter()
        .zip(facts)
        .map(|(run, facts)| SpanChunk {
            parts: vec![crate::model::Chunk::empty(&opts.cluster, run.clone())],
            stats: ingest::ChunkStats {
                rejected: facts.non_finite_skipped,
                ..Default::default()
            },
            split,
            counts: Counts::default(),
        })
        .collect();
    let facts: Vec<std::sync::Arc<[InstantSample]>> =
        facts.iter().map(|f| f.series.as_slice().into()).collect();
    let mut counts = Counts::default();
    let mut building: Option<Building> = None;
    for group in groups {
        let scope = match group {
            None => opts.scope.clone(),
            Some(names) => opts.scope.with_namespaces(names),
        };
        let chunks: Vec<ChunkQueries> = runs
            .iter()
            .map(|run| ChunkQueries::new(run, opts.step_secs, &scope))
            .collect();
        let (mut a, mut b, mut c, mut d) = Default::default();
        let (owners, state, cpu, memory) = tokio::join!(
            raw::read_owners(prom, &chunks, &scope, &mut a),
            raw::read_spread(prom, RawMetric::State, &chunks, &scope, &mut b),
            raw::read_spread(prom, RawMetric::Cpu, &chunks, &scope, &mut c),
            raw::read_spread(prom, RawMetric::Memory, &chunks, &scope, &mut d),
        );
        counts.queries += 4;
        for s in [a, b, c, d] {
            add(&mut counts.raw, s);
        }
        let (owners, state, cpu, memory) = (owners?, state?, cpu?, memory?);
        let inputs: Vec<(Vec<i64>, ingest::Answers)> = runs
            .iter()
            .zip(&facts)
            .zip(owners.into_iter().zip(state).zip(cpu).zip(memory))
            .map(|((run, facts), (((owners, state), cpu), memory))| {
                let answers = ingest::Answers {
                    facts: facts.clone(),
                    non_finite_skipped: owners.non_finite_skipped
                        + state.non_finite_skipped
                        + cpu.non_finite_skipped
                        + memory.non_finite_skipped,
                    owners: owners.series,
                    state: state.series,
                    cpu: cpu.series,
                    memory: memory.series,
                };
                (run.clone(), answers)
            })
            .collect();
        // Summarized on the blocking pool while the next group is read, so Prometheus is
        // not left waiting for us (one span is read at a time).
        if let Some(previous) = building.take() {
            append_built(&mut out, previous).await;
        }
        let cluster = opts.cluster.clone();
        building = Some(tokio::task::spawn_blocking(move || {
            inputs
                .into_iter()
                .map(|(run, answers)| ingest::build_chunk(&cluster, run, &answers))
                .collect::<Vec<_>>()
        }));
    }
    if let Some(last) = building {
        append_built(&mut out, last).await;
    }
    if let Some(first) = out.first_mut() {
        first.counts = counts;
    }
    Ok(Some(out))
}

/// One namespace group's summaries of each chunk, being built.
type Building = tokio::task::JoinHandle<Vec<(crate::model::Chunk, ingest::ChunkStats)>>;

/// Adds a group's summaries, once built, to the span's chunks.
async fn append_built(out: &mut [SpanChunk], building: Building) {
    let built = building
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    for (into, (built, s)) in out.iter_mut().zip(built) {
        append_group(&mut into.parts, &mut into.stats, built, &s);
    }
}

fn add(into: &mut RawStats, s: RawStats) {
    into.bytes += s.bytes;
    into.samples += s.samples;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // A week of day-long chunks of 2,000 series fits one span's summaries, of 2,500 all but a
    // day; at 5,000 series three days do; at 16,000 each day is alone (and is read in
    // pieces, as without spans).
    fn spans_hold_a_bounded_number_of_series_hours() {
        let days: Vec<Vec<i64>> = (0..7).map(|d| vec![d; 24]).collect();
        assert_eq!(sub_spans(&days, 800), vec![0..7]);
        assert_eq!(sub_spans(&days, 2_000), vec![0..7]);
        assert_eq!(sub_spans(&days, 2_500), vec![0..6, 6..7]);
        assert_eq!(sub_spans(&days, 5_000), vec![0..3, 3..6, 6..7]);
        assert_eq!(sub_spans(&days, 16_000).len(), 7);
    }

    #[test]
    fn span_groups_keep_each_read_within_a_chunks_budget() {
        let sizes: Vec<(String, u64)> = [("a", 50), ("b", 60), ("c", 10)]
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        // 120 series over 120 hours: 14,400 series-hours, one read.
        assert_eq!(span_groups(&sizes, 120, 0), Some(vec![None]));
        // Over 168 hours the budget is 119 series a group.
        assert_eq!(
            span_groups(&sizes, 168, 0),
            Some(vec![
                Some(vec!["a".into(), "b".into()]),
                Some(vec!["c".into()])
            ])
        );
        // The configured limit holds too; a namespace over it reads its days one by one.
        assert_eq!(span_groups(&sizes, 168, 55), None);
        assert_eq!(span_groups(&sizes, 168, 70).map(|g| g.len()), Some(2));
    }
}
