//! The API serves lists from an in-memory snapshot of the stored recommendations, so a
//! fleet-wide filter, sort and page costs microseconds instead of a query and 10,000 JSON
//! decodes. The store stays the truth: the snapshot is reloaded when the stored version
//! (newest `computed_at`, row count) changes, checked at most once per `max_age`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, RwLock};

use super::query::{compare, sort_value, SortBy};
use crate::model::{Recommendation, WorkloadInfo, WorkloadKey};
use crate::store::{RecommendationFilter, Store, StoreError};

/// One consistent view of every recommendation and workload.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The stored version this was loaded at.
    pub version: (i64, i64),
    /// All recommendations, ordered by cluster, namespace, kind, workload, container.
    pub recommendations: Vec<Arc<Recommendation>>,
    /// Each recommendation as JSON, serialized once per load rather than once per request.
    pub json: Vec<Box<serde_json::value::RawValue>>,
    /// Workload facts (labels, HPA, PDB) by workload.
    pub workloads: BTreeMap<WorkloadKey, WorkloadInfo>,
    /// Distinct namespaces, sorted.
    pub namespaces: Vec<String>,
    /// Indexes into `recommendations` in each list order: [sort][descending].
    orders: [[Vec<usize>; 2]; 3],
}

impl Snapshot {
    /// A snapshot of `recommendations` (any order) and `workloads`.
    pub fn new(
        version: (i64, i64),
        mut recommendations: Vec<Recommendation>,
        workloads: Vec<WorkloadInfo>,
    ) -> Self {
        recommendations.sort_by(|a, b| a.key.cmp(&b.key));
        let json = recommendations
            .iter()
            .map(|r| serde_json::value::to_raw_value(r).expect("recommendations serialize"))
            .collect();
        let recommendations: Vec<Arc<Recommendation>> =
            recommendations.into_iter().map(Arc::new).collect();
        let orders = [SortBy::Savings, SortBy::Severity, SortBy::Name].map(|sort| {
            [false, true].map(|descending| {
                let mut order: Vec<usize> = (0..recommendations.len()).collect();
                order.sort_by(|&a, &b| {
                    let (ra, rb) = (&recommendations[a], &recommendations[b]);
                    compare(
                        sort,
                        descending,
                        (sort_value(sort, ra), &ra.key),
                        (sort_value(sort, rb), &rb.key),
                    )
                });
                order
            })
        });
        let mut namespaces: Vec<String> = recommendations
            .iter()
            .map(|r| r.key.namespace.clone())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        Snapshot {
            version,
            namespaces,
            recommendations,
            json,
            workloads: workloads.into_iter().map(|w| (w.key.clone(), w)).collect(),
            orders,
        }
    }

    /// Indexes of every recommendation in the order of `sort`.
    pub fn order(&self, sort: SortBy, descending: bool) -> &[usize] {
        let s = match sort {
            SortBy::Savings => 0,
            SortBy::Severity => 1,
            SortBy::Name => 2,
        };
        &self.orders[s][usize::from(descending)]
    }

    /// The containers of one workload, in container order.
    pub fn workload(&self, key: &WorkloadKey) -> Vec<Arc<Recommendation>> {
        self.recommendations[self.workload_range(key)].to_vec()
    }

    /// Where one workload's containers sit: recommendations are sorted by key, so a
    /// workload's containers are contiguous and found by binary search.
    pub fn workload_range(&self, key: &WorkloadKey) -> std::ops::Range<usize> {
        fn id(r: &Recommendation) -> (&str, &str, &str, &str) {
            (
                &r.key.cluster,
                &r.key.namespace,
                &r.key.kind,
                &r.key.workload,
            )
        }
        let want = (
            key.cluster.as_str(),
            key.namespace.as_str(),
            key.kind.as_str(),
            key.name.as_str(),
        );
        let start = self.recommendations.partition_point(|r| id(r) < want);
        let len = self.recommendations[start..]
            .iter()
            .take_while(|r| id(r) == want)
            .count();
        start..start + len
    }
}

/// The cached snapshot and when it was last checked.
pub struct SnapshotCache {
    store: Arc<dyn Store>,
    current: RwLock<Arc<Snapshot>>,
    checked: Mutex<Option<Instant>>,
    max_age: Duration,
}

impl SnapshotCache {
    /// A cache over `store`, rechecking the stored version at most every `max_age`.
    pub fn new(store: Arc<dyn Store>, max_age: Duration) -> Self {
        SnapshotCache {
            store,
            current: RwLock::new(Arc::new(Snapshot::default())),
            checked: Mutex::new(None),
            max_age,
        }
    }

    /// The current snapshot, reloaded first if the store has a newer version.
    pub async fn get(&self) -> Result<Arc<Snapshot>, StoreError> {
        {
            let checked = self.checked.lock().await;
            if checked.is_some_and(|t| t.elapsed() < self.max_age) {
                return Ok(self.current.read().await.clone());
            }
        }
        // One request reloads; the others wait on the lock and then see the fresh check.
        let mut checked = self.checked.lock().await;
        if checked.is_some_and(|t| t.elapsed() < self.max_age) {
            return Ok(self.current.read().await.clone());
        }
        let version = self.store.recommendations_version().await?;
        let stale = self.current.read().await.version != version || checked.is_none();
        if stale {
            let recommendations = self
                .store
                .recommendations(&RecommendationFilter::default())
                .await?;
            let workloads = self.store.workloads(None).await?;
            *self.current.write().await =
                Arc::new(Snapshot::new(version, recommendations, workloads));
        }
        *checked = Some(Instant::now());
        Ok(self.current.read().await.clone())
    }

    /// Forgets the last check, so the next read looks at the store (after an analysis).
    pub async fn invalidate(&self) {
        *self.checked.lock().await = None;
    }
}
