//! Reflectors that keep an in-memory copy of every watched resource type up to date:
//! [`spawn_reflectors`] and [`ClusterWatch`].
//!
//! Each resource type and scope gets a `kube::runtime` watcher (paginated list, then watch with
//! bookmarks; a 410 Gone re-lists) feeding a reflector store, with the default exponential
//! backoff after errors. One task drives them all until shutdown.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use super::convert::{applies_label_selector, scopes, Scope, SnapshotBuilder};
use super::list::log_degradation;
use super::{ClusterError, ClusterSnapshot, ClusterSourceConfig, ANNOTATION_PREFIX, PAGE_SIZE};

/// Where one reflector stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncState {
    /// The first list has not completed.
    Pending,
    /// The store holds a complete list, kept current by the watch.
    Synced,
    /// Cannot be read; the reason as it appears in [`ClusterSnapshot::degraded`].
    Degraded(String),
}

/// Sync state per resource description (`apps/v1 deployments`, …).
type States = BTreeMap<String, SyncState>;

/// Live reflector stores for every watched resource type; cheap to query.
pub struct ClusterWatch {
    stores: Stores,
    states: channel::Receiver<States>,
    task: JoinHandle<()>,
}

/// One store per resource type and scope.
#[derive(Default)]
struct Stores {
    deployments: Vec<Store<Deployment>>,
    stateful_sets: Vec<Store<StatefulSet>>,
    daemon_sets: Vec<Store<DaemonSet>>,
    cron_jobs: Vec<Store<CronJob>>,
    jobs: Vec<Store<Job>>,
    hpas: Vec<Store<HorizontalPodAutoscaler>>,
    pdbs: Vec<Store<PodDisruptionBudget>>,
}

/// Starts watching every resource type in every scope of `cfg`, on the current Tokio runtime,
/// until `shutdown` completes. Returns at once; stores fill in the background
/// ([`ClusterWatch::wait_synced`]). Errors only on an invalid `cfg`.
pub fn spawn_reflectors(
    client: Client,
    cfg: &ClusterSourceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ClusterWatch, ClusterError> {
    cfg.validate()?;
    let (states_tx, states) = channel::channel(States::new());
    let states_tx = Arc::new(states_tx);
    let mut streams: Vec<BoxStream<'static, ()>> = Vec::new();
    let mut stores = Stores::default();
    let labels = cfg.label_selector.as_deref();
    for scope in scopes(cfg) {
        let mut add = |stream| streams.push(stream);
        let r = Reflect {
            client: &client,
            scope: &scope,
            labels,
            states: &states_tx,
        };
        stores.deployments.push(r.start(&mut add));
        stores.stateful_sets.push(r.start(&mut add));
        stores.daemon_sets.push(r.start(&mut add));
        stores.cron_jobs.push(r.start(&mut add));
        stores.jobs.push(r.start(&mut add));
        stores.hpas.push(r.start(&mut add));
        stores.pdbs.push(r.start(&mut add));
    }
    let resources = streams.len();
    let task = tokio::spawn(async move {
        let mut all = futures::stream::select_all(streams);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("Kubernetes API watch stopped: shutdown");
                    break;
                }
                next = all.next() => if next.is_none() {
                    tracing::info!("Kubernetes API watch stopped: no streams left");
                    break;
                }
            }
        }
    });
    tracing::info!(
        resources,
        "watching the Kubernetes API (list, then watch with bookmarks)"
    );
    Ok(ClusterWatch {
        stores,
        states,
        task,
    })
}

/// What every reflector of one scope shares.
struct Reflect<'a> {
    client: &'a Client,
    scope: &'a Scope,
    labels: Option<&'a str>,
    states: &'a Arc<channel::Sender<States>>,
}

impl Reflect<'_> {
    /// A store for `K`, and (through `add`) the stream that fills it and tracks its sync state.
    fn start<K>(&self, add: &mut impl FnMut(BoxStream<'static, ()>)) -> Store<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let mut config = watcher::Config::default().page_size(PAGE_SIZE);
        if let Some(fields) = self.scope.field_selector() {
            config = config.fields(fields);
        }
        if let (Some(labels), true) = (self.labels, applies_label_selector::<K>()) {
            config = config.labels(labels);
        }
        let resource = self.scope.describe::<K>();
        self.states
            .send_modify(|s| drop(s.insert(resource.clone(), SyncState::Pending)));
        let (reader, writer) = reflector::store::<K>();
        let states = Arc::clone(self.states);
        let stream = watcher(self.scope.api::<K>(self.client), config)
            .default_backoff()
            // Only the rightsizer.io/* annotations are read; the rest (kubectl's last-applied
            // copy of the whole object above all) and managed fields would only cost memory.
            .modify(|o: &mut K| {
                o.managed_fields_mut().clear();
                o.annotations_mut()
                    .retain(|k, _| k.starts_with(ANNOTATION_PREFIX));
            })
            .reflect(writer)
            .map(move |event| observe(&states, &resource, event))
            .boxed();
        add(stream);
        reader
    }
}

/// Updates the sync state from one watcher event, logging transitions (not every retry).
fn observe<K>(
    states: &channel::Sender<States>,
    resource: &str,
    event: Result<watcher::Event<K>, watcher::Error>,
) {
    let next = match event {
        Ok(watcher::Event::InitDone) => SyncState::Synced,
        Ok(_) => return,
        Err(e) => match classify(&e, resource) {
            Classified::Degraded {
                reason,
                verb,
                message,
            } => {
                let already =
                    states.borrow().get(resource) == Some(&SyncState::Degraded(reason.clone()));
                if !already {
                    log_degradation(&reason, verb, resource, &message);
                }
                SyncState::Degraded(reason)
            }
            Classified::Relist => {
                tracing::info!(
                    resource,
                    "watch resourceVersion expired (410 Gone); re-listing"
                );
                return;
            }
            Classified::Transient { verb, error } => {
                let state = states.borrow().get(resource).cloned();
                tracing::warn!(
                    resource,
                    verb,
                    error,
                    "Kubernetes API request failed; retrying with backoff"
                );
                match state {
                    // Never listed: say why in the readiness detail.
                    Some(SyncState::Pending) => {
                        SyncState::Degraded(format!("unavailable: {verb} {resource}: {error}"))
                    }
                    // A store that was complete stays usable while the watch recovers.
                    _ => return,
                }
            }
        },
    };
    states.send_if_modified(|s| {
        let slot = s.entry(resource.to_string()).or_insert(SyncState::Pending);
        if *slot == next {
            return false;
        }
        if matches!(slot, SyncState::Degraded(_)) && next == SyncState::Synced {
            tracing::info!(resource, "Kubernetes API access recovered");
        }
        *slot = next;
        true
    });
}

enum Classified {
    Degraded {
        reason: String,
        verb: &'static str,
        message: String,
    },
    Relist,
    Transient {
        verb: &'static str,
        error: String,
    },
}

fn classify(e: &watcher::Error, resource: &str) -> Classified {
    // The API server reports an expired resourceVersion as an ERROR event (code 410) inside a
    // watch stream; only that makes the watcher re-list.
    if let watcher::Error::WatchError(s) = e {
        if s.code == 410 {
            return Classified::Relist;
        }
    }
    let (verb, status) = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => {
            ("list", Some((s.code, &s.message)))
        }
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => ("watch", Some((s.code, &s.message))),
        watcher::Error::WatchError(s) => ("watch", Some((s.code, &s.message))),
        watcher::Error::InitialListFailed(_) | watcher::Error::NoResourceVersion => ("list", None),
        watcher::Error::WatchStartFailed(_) | watcher::Error::WatchFailed(_) => ("watch", None),
    };
    match status {
        Some((code @ (403 | 404), message)) => Classified::Degraded {
            reason: if code == 403 {
                format!("forbidden: {verb} {resource}")
            } else {
                format!("not served: {verb} {resource}")
            },
            verb,
            message: message.clone(),
        },
        _ => Classified::Transient {
            verb,
            error: e.to_string(),
        },
    }
}

impl ClusterWatch {
    /// The stores' current contents as a snapshot, with the resource types that cannot be read.
    /// A resource type still syncing contributes what it has so far (nothing, usually).
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut b = SnapshotBuilder::default();
        self.stores
            .deployments
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.deployment(&o));
        self.stores
            .stateful_sets
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.stateful_set(&o));
        self.stores
            .daemon_sets
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.daemon_set(&o));
        self.stores
            .cron_jobs
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.cron_job(&o));
        self.stores
            .jobs
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.job(&o));
        self.stores
            .hpas
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.hpa(&o));
        self.stores
            .pdbs
            .iter()
            .flat_map(Store::state)
            .for_each(|o| b.pdb(&o));
        b.finish(self.degraded())
    }

    /// Resource types that cannot be read now (`forbidden: list policy/v1 poddisruptionbudgets`),
    /// for the readiness detail. Empty when all is well.
    pub fn degraded(&self) -> Vec<String> {
        self.states
            .borrow()
            .values()
            .filter_map(|s| match s {
                SyncState::Degraded(reason) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// Resource types whose first list has not finished (nor failed).
    pub fn pending(&self) -> Vec<String> {
        self.states
            .borrow()
            .iter()
            .filter(|(_, s)| **s == SyncState::Pending)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// True once every resource type has either listed completely or been found unreadable.
    pub fn is_settled(&self) -> bool {
        self.states
            .borrow()
            .values()
            .all(|s| *s != SyncState::Pending)
    }

    /// Waits until [`Self::is_settled`], up to `timeout`; returns whether it settled.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let mut rx = self.states.clone();
        let settled = async move {
            rx.wait_for(|s| s.values().all(|s| *s != SyncState::Pending))
                .await
                .is_ok()
        };
        tokio::time::timeout(timeout, settled)
            .await
            .unwrap_or(false)
    }

    /// Waits until `predicate` holds for a fresh snapshot, checking after every sync-state change
    /// and every 50 ms, up to `timeout`; returns the snapshot that satisfied it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&ClusterSnapshot) -> bool,
    ) -> Option<ClusterSnapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snapshot = self.snapshot();
            if predicate(&snapshot) {
                return Some(snapshot);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the watch task to end (after the shutdown future completed).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "Kubernetes API watch task failed");
        }
    }
}
