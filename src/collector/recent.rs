//! The collection's look at the hours it does not collect yet (the current, incomplete one):
//! OOM kills only, so that with Prometheus alone an OOM kill raises memory at the next
//! collection, minutes after it happened, rather than after its hour is complete. The kills
//! are told the same way as a collected hour's ([`super::ingest::build_chunk`]: a restart
//! while the last termination reason is OOMKilled, or cAdvisor's OOM events); the store
//! keeps them beside the collected signals until their hour is collected.

use super::ingest::{self, Answers};
use super::queries::{self, RawMetric, Scope};
use super::{floor_hour, raw, ChunkQueries, OWNER_LOOKBACK_SECS, STATE_STEP_SECS};
use crate::model::OomKillHour;
use crate::prometheus::{PromClient, PromError};

/// OOM kills of `cluster` from `since` (the end of the collected history) to `now`, per
/// workload container and hour.
pub async fn oom_kills(
    prom: &PromClient,
    cluster: &str,
    scope: &Scope,
    since: i64,
    now: i64,
) -> Result<Vec<OomKillHour>, PromError> {
    let first = floor_hour(since);
    if now <= first {
        return Ok(Vec::new());
    }
    let hours: Vec<i64> = (first..now).step_by(3600).collect();
    let mut q = ChunkQueries::new(&hours, STATE_STEP_SECS, scope).state;
    q.promql = queries::oom_state(scope);
    q.end = now;
    let owners = queries::owners(now - q.start + OWNER_LOOKBACK_SECS, scope);
    let (owners, state) = tokio::join!(
        prom.query(&owners, now),
        prom.query_range(&q.promql, q.start, q.end, q.step_secs)
    );
    let answers = Answers {
        owners: owners?.series.into(),
        state: raw::aggregate(RawMetric::State, &q, state?).series,
        ..Answers::default()
    };
    let (chunk, _) = ingest::build_chunk(cluster, hours, &answers);
    Ok(chunk
        .signals
        .into_iter()
        .filter(|s| s.oom_kills > 0)
        .map(|s| OomKillHour {
            key: s.key,
            hour_start: s.hour_start,
            kills: s.oom_kills,
        })
        .collect())
}
