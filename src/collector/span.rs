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
    add_stats, group_series, ingest, namespace_groups, queries::RawMetric, ChunkQueries,
    CollectOptions, Counts, ToWrite, ToWriter,
};

/// Hours of history one span covers at most (`collector.span_hours`): 14 day-long chunks,
/// the default window. Its namespace groups and the span's own budget usually end it
/// sooner.
pub const SPAN_HOURS: usize = 336;

/// Series-hours of one span, which is one transaction (its chunks are marked collected
/// together, and a failed read leaves none of them written): this bounds how long the
/// transaction stays open while the span is read. 300 containers' 14 days (6,920 series)
/// would fit in one.
const SERIES_HOURS_PER_SPAN: u64 = 2_600_000;

/// Series-hours of one namespace group of a span, which bounds our memory: a group's
/// evaluations hold 16 bytes per pod container and step until its summaries are built, and
/// the next group is read meanwhile, so two groups are in memory at once. At 300
/// containers over 14 days, measured: 40,000 series-hours a group took about 110-125 MB
/// peak RSS (after state groups were kept as runs; 139 MB before), 72,000 150-175 MB.
pub const SERIES_HOURS_PER_SPAN_GROUP: u64 = 40_000;

/// Series-hours of one namespace read alone, as a multiple of the group budget. A namespace
/// is never split, and a big one used to shorten the whole span to fit the group budget,
/// although every span costs Prometheus the index entries of all the series again. Such a
/// group is built before the next one is read, so memory still holds at most two groups'
/// budgets. At 300 containers the largest namespace (210 series) then fits 14 days, and
/// one span costs Prometheus about a fifth less CPU than two of a week.
const NAMESPACE_ALONE_GROUPS: u64 = 2;

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

/// Consecutive runs of a span that are read together: as many as keep `series` series
/// within [`SERIES_HOURS_PER_SPAN`] and the `largest` namespace (never split) within
/// [`NAMESPACE_ALONE_GROUPS`] group budgets (`group_budget` series-hours, see
/// [`SERIES_HOURS_PER_SPAN_GROUP`]); a run alone when even two do not fit.
pub fn sub_spans(
    runs: &[Vec<i64>],
    series: u64,
    largest: u64,
    group_budget: u64,
) -> Vec<std::ops::Range<usize>> {
    let fits = |hours: u64| {
        hours * series.max(1) <= SERIES_HOURS_PER_SPAN
            && hours * largest <= NAMESPACE_ALONE_GROUPS * group_budget
    };
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut hours = 0u64;
    for (i, run) in runs.iter().enumerate() {
        let n = run.len() as u64;
        match out.last_mut() {
            Some(r) if fits(hours + n) => {
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
/// hours stay within `group_budget` series-hours (a namespace over it alone, within
/// [`NAMESPACE_ALONE_GROUPS`] budgets), and within `max_series_per_query` (0: no limit),
/// each with whether it is over the group budget. `None` when one namespace alone is over
/// it: its chunks are then read one by one, in pieces.
fn span_groups(
    sizes: &[(String, u64)],
    hours: usize,
    max_series_per_query: u64,
    group_budget: u64,
) -> Option<Vec<(Option<Vec<String>>, bool)>> {
    let limit = |budget: u64| {
        let budget = budget / hours.max(1) as u64;
        match group_series(max_series_per_query, hours) {
            0 => budget,
            m => m.min(budget),
        }
    };
    let (cap, alone) = (
        limit(group_budget),
        limit(NAMESPACE_ALONE_GROUPS * group_budget),
    );
    if sizes.iter().any(|(_, n)| *n > alone) {
        return None;
    }
    Some(match namespace_groups(sizes, cap) {
        None => vec![(None, false)],
        Some(groups) => {
            let mut groups: Vec<(Option<Vec<String>>, bool)> = groups
                .into_iter()
                .map(|names| {
                    let series: u64 = sizes
                        .iter()
                        .filter(|(n, _)| names.contains(n))
                        .map(|(_, s)| s)
                        .sum();
                    (Some(names), series > cap)
                })
                .collect();
            // Namespaces read alone go first: the run's memory peak then comes at its
            // start, before the other groups were read.
            groups.sort_by_key(|(_, alone)| !alone);
            groups
        }
    })
}

/// One chunk of a span, fetched (its summaries are with the writer): what building them
/// found, whether it was read in namespace groups, and the requests it took (the span's
/// all go to its first).
pub struct SpanChunk {
    /// The chunk's hours.
    pub hours: Vec<i64>,
    /// What building them found.
    pub stats: ingest::ChunkStats,
    /// Whether the span was read in namespace groups.
    pub split: bool,
    /// The span's requests (on its first chunk only).
    pub counts: Counts,
}

/// Reads the chunks of `runs` (consecutive, ascending) at once, namespace group by
/// namespace group, each chunk with the workload facts of its end (`facts`, one per run),
/// and hands each group's summaries to the writer as soon as they are built
/// ([`ToWrite::Group`]). `Ok(None)` when a namespace is too big to read the span at once
/// (nothing was read). After an error, groups may have gone to the writer: the caller
/// aborts the span. A writer that stopped ends the reading early.
pub async fn fetch_span(
    prom: &PromClient,
    runs: &[Vec<i64>],
    opts: &CollectOptions,
    sizes: &[(String, u64)],
    facts: &[Answer<InstantSample>],
    to_writer: &ToWriter,
) -> Result<Option<Vec<SpanChunk>>, PromError> {
    let hours: usize = runs.iter().map(Vec::len).sum();
    let Some(groups) = span_groups(
        sizes,
        hours,
        opts.max_series_per_query,
        opts.span_group_series_hours,
    ) else {
        return Ok(None);
    };
    let split = groups.len() > 1;
    let mut out: Vec<SpanChunk> = runs
        .iter()
        .zip(facts)
        .map(|(run, facts)| SpanChunk {
            hours: run.clone(),
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
    let mut building: Option<(Building, bool)> = None;
    for (group, alone) in groups {
        let scope = match group {
            None => opts.scope.clone(),
            Some(names) => opts.scope.with_namespaces(names),
        };
        let chunks: Vec<ChunkQueries> = runs
            .iter()
            .map(|run| ChunkQueries::new(run, opts.step_secs, &scope))
            .collect();
        let (mut a, mut b, mut c, mut d) = Default::default();
        // The group before, summarized on the blocking pool while this one is read, goes
        // to the writer as soon as it is built (one span is read at a time, so Prometheus
        // is not left waiting for us).
        let previous = match building.take() {
            // A group over the budget is built before the next is read: memory holds it
            // alone.
            Some((big, true)) => {
                if !hand_over(&mut out, big, to_writer).await {
                    return Ok(Some(out));
                }
                None
            }
            other => other.map(|(group, _)| group),
        };
        let handed = async {
            match previous {
                Some(previous) => hand_over(&mut out, previous, to_writer).await,
                None => true,
            }
        };
        let ((owners, state, cpu, memory), handed) = tokio::join!(
            async {
                tokio::join!(
                    raw::read_owners(prom, &chunks, &scope, &mut a),
                    raw::read_spread(prom, RawMetric::State, &chunks, &scope, &mut b),
                    raw::read_spread(prom, RawMetric::Cpu, &chunks, &scope, &mut c),
                    raw::read_spread(prom, RawMetric::Memory, &chunks, &scope, &mut d),
                )
            },
            handed
        );
        counts.queries += 4;
        for s in [a, b, c, d] {
            add(&mut counts.raw, s);
        }
        if !handed {
            return Ok(Some(out));
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
                    owners: owners.series.into(),
                    state: state.series,
                    cpu: cpu.series,
                    memory: memory.series,
                };
                (run.clone(), answers)
            })
            .collect();
        let cluster = opts.cluster.clone();
        building = Some((
            tokio::task::spawn_blocking(move || {
                inputs
                    .into_iter()
                    .map(|(run, answers)| ingest::build_chunk(&cluster, run, &answers))
                    .collect::<Vec<_>>()
            }),
            alone,
        ));
    }
    if let Some((last, _)) = building {
        hand_over(&mut out, last, to_writer).await;
    }
    if let Some(first) = out.first_mut() {
        first.counts = counts;
    }
    Ok(Some(out))
}

/// One namespace group's summaries of each chunk, being built.
type Building = tokio::task::JoinHandle<Vec<(crate::model::Chunk, ingest::ChunkStats)>>;

/// Hands a group's summaries, once built, to the writer and adds their counts to the
/// span's chunks; `false` when the writer stopped.
async fn hand_over(out: &mut [SpanChunk], building: Building, to_writer: &ToWriter) -> bool {
    let built = building
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let mut parts = Vec::with_capacity(built.len());
    for (into, (built, s)) in out.iter_mut().zip(built) {
        add_stats(&mut into.stats, &s);
        parts.push(built);
    }
    to_writer.send(ToWrite::Group(parts)).await.is_ok()
}

fn add(into: &mut RawStats, s: RawStats) {
    into.bytes += s.bytes;
    into.samples += s.samples;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // A week of day-long chunks of 15,000 series fits one span, of 16,000 all but a day; at
    // 40,000 series two days do; at 120,000 each day is alone (and is read in pieces, as
    // without spans). A namespace of 400 series fits alone over eight days, of 500 over
    // six, of 2,000 over none.
    fn spans_hold_a_bounded_number_of_series_hours() {
        let days: Vec<Vec<i64>> = (0..7).map(|d| vec![d; 24]).collect();
        let spans =
            |series, largest| sub_spans(&days, series, largest, SERIES_HOURS_PER_SPAN_GROUP);
        assert_eq!(spans(800, 100), vec![0..7]);
        assert_eq!(spans(15_000, 100), vec![0..7]);
        assert_eq!(spans(16_000, 100), vec![0..6, 6..7]);
        assert_eq!(spans(40_000, 100), vec![0..2, 2..4, 4..6, 6..7]);
        assert_eq!(spans(120_000, 100).len(), 7);
        assert_eq!(spans(800, 400), vec![0..7]);
        assert_eq!(spans(800, 500), vec![0..6, 6..7]);
        assert_eq!(spans(6_920, 210), vec![0..7]);
        assert_eq!(spans(2_000, 2_000).len(), 7);
    }

    #[test]
    fn span_groups_keep_each_read_within_a_chunks_budget() {
        let sizes: Vec<(String, u64)> = [("a", 50), ("b", 60), ("c", 10)]
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        let names = |n: &[&str]| Some(n.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        // 120 series over 168 hours: 20,160 series-hours, one read.
        assert_eq!(
            span_groups(&sizes, 168, 0, SERIES_HOURS_PER_SPAN_GROUP),
            Some(vec![(None, false)])
        );
        // Over 336 hours the budget is 119 series a group.
        assert_eq!(
            span_groups(&sizes, 336, 0, SERIES_HOURS_PER_SPAN_GROUP),
            Some(vec![(names(&["a", "b"]), false), (names(&["c"]), false)])
        );
        // Over 720 hours it is 55: a namespace over it is read alone (first, and built
        // before the next group is read), up to 111 series.
        assert_eq!(
            span_groups(&sizes, 720, 0, SERIES_HOURS_PER_SPAN_GROUP),
            Some(vec![
                (names(&["b"]), true),
                (names(&["a"]), false),
                (names(&["c"]), false)
            ])
        );
        assert_eq!(
            span_groups(&sizes, 1500, 0, SERIES_HOURS_PER_SPAN_GROUP),
            None
        );
        // The configured limit holds too; a namespace over it reads its days one by one.
        assert_eq!(
            span_groups(&sizes, 336, 55, SERIES_HOURS_PER_SPAN_GROUP),
            None
        );
        assert_eq!(
            span_groups(&sizes, 336, 70, SERIES_HOURS_PER_SPAN_GROUP).map(|g| g.len()),
            Some(2)
        );
    }
}
