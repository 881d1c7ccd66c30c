//! Everything collection stores for a cluster, read back through the `Store` trait, so
//! two stores can be compared: two backends, or an interrupted run and one that was not.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use rightsizer::model::{ContainerObservation, SignalHour, UsageHour, WorkloadInfo};
use rightsizer::store::Store;

/// Far enough to cover any synthetic history, small enough not to overflow `hour + 3600`.
const END_OF_TIME: i64 = i64::MAX / 2;

/// Every usage row of every container of `cluster`, keyed by container.
pub async fn usage(store: &dyn Store, cluster: &str) -> BTreeMap<String, Vec<UsageHour>> {
    let mut out = BTreeMap::new();
    for c in store.containers(Some(cluster)).await.unwrap() {
        out.insert(
            c.key.to_string(),
            store.usage(&c.key, 0, END_OF_TIME).await.unwrap(),
        );
    }
    out
}

/// What collection stored for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDump {
    /// Hours marked collected.
    pub collected_hours: Vec<i64>,
    /// Containers with their latest requests/limits, by key.
    pub containers: Vec<ContainerObservation>,
    /// Usage rows per container (key as text).
    pub usage: BTreeMap<String, Vec<UsageHour>>,
    /// Restart/OOM/throttling rows per container (key as text).
    pub signals: BTreeMap<String, Vec<SignalHour>>,
    /// Workload facts.
    pub workloads: Vec<WorkloadInfo>,
}

impl StoreDump {
    /// Reads everything stored for `cluster`.
    pub async fn read(store: &dyn Store, cluster: &str) -> Self {
        let containers = store.containers(Some(cluster)).await.unwrap();
        let mut signals = BTreeMap::new();
        for c in &containers {
            signals.insert(
                c.key.to_string(),
                store.signals(&c.key, 0, END_OF_TIME).await.unwrap(),
            );
        }
        StoreDump {
            collected_hours: store
                .collected_hours(cluster, 0, END_OF_TIME)
                .await
                .unwrap(),
            usage: usage(store, cluster).await,
            signals,
            workloads: store.workloads(Some(cluster)).await.unwrap(),
            containers,
        }
    }

    /// The usage and signal rows of `hours` only, containers without any left out: what
    /// a store holding just those hours of this one must hold, row for row.
    pub fn hourly_rows_of(
        &self,
        hours: &BTreeSet<i64>,
    ) -> (
        BTreeMap<String, Vec<UsageHour>>,
        BTreeMap<String, Vec<SignalHour>>,
    ) {
        (
            rows_of(&self.usage, hours, |u| u.hour_start),
            rows_of(&self.signals, hours, |s| s.hour_start),
        )
    }

    /// The first difference from `other`, readable (a whole dump is megabytes of sketches).
    pub fn first_difference(&self, other: &StoreDump) -> Option<String> {
        if self.collected_hours != other.collected_hours {
            return Some(format!(
                "collected hours: {:?} vs {:?}",
                self.collected_hours, other.collected_hours
            ));
        }
        first_difference_in("containers", &self.containers, &other.containers)
            .or_else(|| first_difference_by_key("usage", &self.usage, &other.usage))
            .or_else(|| first_difference_by_key("signals", &self.signals, &other.signals))
            .or_else(|| first_difference_in("workloads", &self.workloads, &other.workloads))
    }
}

fn rows_of<T: Clone>(
    rows: &BTreeMap<String, Vec<T>>,
    hours: &BTreeSet<i64>,
    hour_of: impl Fn(&T) -> i64,
) -> BTreeMap<String, Vec<T>> {
    rows.iter()
        .map(|(key, rows)| {
            let kept: Vec<T> = rows
                .iter()
                .filter(|r| hours.contains(&hour_of(r)))
                .cloned()
                .collect();
            (key.clone(), kept)
        })
        .filter(|(_, rows)| !rows.is_empty())
        .collect()
}

/// Rows per key with empty lists left out: a container may be known without rows of some kind.
pub fn non_empty<T: Clone>(rows: &BTreeMap<String, Vec<T>>) -> BTreeMap<String, Vec<T>> {
    rows.iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(key, rows)| (key.clone(), rows.clone()))
        .collect()
}

/// The first differing row of two lists, as text.
pub fn first_difference_in<T: PartialEq + Debug>(what: &str, a: &[T], b: &[T]) -> Option<String> {
    (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| format!("{what}, row {i}: {:?}\n  vs {:?}", a.get(i), b.get(i)))
}

/// The first differing row of two keyed lists, as text.
pub fn first_difference_by_key<T: PartialEq + Debug>(
    what: &str,
    a: &BTreeMap<String, Vec<T>>,
    b: &BTreeMap<String, Vec<T>>,
) -> Option<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .find_map(|key| match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => first_difference_in(&format!("{what} of {key}"), x, y),
            (x, y) => Some(format!(
                "{what} of {key}: {} vs {} rows",
                x.map_or("no".into(), |r| r.len().to_string()),
                y.map_or("no".into(), |r| r.len().to_string())
            )),
        })
}
