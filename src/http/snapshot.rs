//! The API serves lists from an in-memory snapshot of the stored recommendations, so a
//! fleet-wide filter, sort and page costs microseconds instead of a query and 10,000 JSON
//! decodes. The store stays the truth: the snapshot is reloaded when the stored version
//! (newest `computed_at`, row count) changes, checked at most once per `max_age`. While the
//! store is unavailable the last snapshot goes on being served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Mutex;

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

/// The cached snapshot and when it was last checked. Readers take no async lock: the fast
/// path is an atomic load and a short read lock; only a reload serializes.
pub struct SnapshotCache {
    store: Arc<dyn Store>,
    current: std::sync::RwLock<Arc<Snapshot>>,
    /// Milliseconds since `epoch` of the last version check; 0 = never (or invalidated).
    checked_ms: AtomicU64,
    /// Whether a snapshot was ever loaded from the store (the default one is empty).
    loaded: AtomicBool,
    epoch: Instant,
    reload: Mutex<()>,
    max_age: Duration,
}

impl SnapshotCache {
    /// A cache over `store`, rechecking the stored version at most every `max_age`.
    pub fn new(store: Arc<dyn Store>, max_age: Duration) -> Self {
        SnapshotCache {
            store,
            current: std::sync::RwLock::new(Arc::new(Snapshot::default())),
            checked_ms: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            epoch: Instant::now(),
            reload: Mutex::new(()),
            max_age,
        }
    }

    fn fresh(&self) -> bool {
        let checked = self.checked_ms.load(Ordering::Acquire);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        checked != 0 && now.saturating_sub(checked) < self.max_age.as_millis() as u64
    }

    fn current(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock poisoned").clone()
    }

    /// The current snapshot, reloaded first if the store has a newer version. Once one was
    /// loaded, a store that fails (or a reload under way) serves the last one instead.
    pub async fn get(&self) -> Result<Arc<Snapshot>, StoreError> {
        if self.fresh() {
            return Ok(self.current());
        }
        let loaded = self.loaded.load(Ordering::Acquire);
        // One request reloads; with a snapshot in hand the others don't queue behind it (a
        // store that is down takes its whole connect timeout to say so).
        let _reloading = match self.reload.try_lock() {
            Ok(guard) => guard,
            Err(_) if loaded => return Ok(self.current()),
            Err(_) => self.reload.lock().await,
        };
        if self.fresh() {
            return Ok(self.current());
        }
        match self.reload_if_changed().await {
            Ok(()) => self.loaded.store(true, Ordering::Release),
            Err(e) if loaded => {
                tracing::warn!(error = %e, "serving the last snapshot: the store is unavailable")
            }
            Err(e) => return Err(e),
        }
        self.checked_ms.store(
            self.epoch.elapsed().as_millis() as u64 + 1,
            Ordering::Release,
        );
        Ok(self.current())
    }

    async fn reload_if_changed(&self) -> Result<(), StoreError> {
        let version = self.store.recommendations_version().await?;
        let never = self.checked_ms.load(Ordering::Acquire) == 0;
        if never || self.current().version != version {
            let recommendations = self
                .store
                .recommendations(&RecommendationFilter::default())
                .await?;
            let workloads = self.store.workloads(None).await?;
            let snapshot = Arc::new(Snapshot::new(version, recommendations, workloads));
            *self.current.write().expect("snapshot lock poisoned") = snapshot;
        }
        Ok(())
    }

    /// Forgets the last check, so the next read looks at the store (after an analysis).
    pub async fn invalidate(&self) {
        self.checked_ms.store(0, Ordering::Release);
    }
}
