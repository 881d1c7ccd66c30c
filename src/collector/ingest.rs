//! Turns one chunk's Prometheus answers into hourly summaries and container observations.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Chunk, ContainerKey, ContainerObservation, Resource, Resources, UsageHour};
use crate::prometheus::{InstantSample, RangeSeries};
use crate::sketch::{Rejected, Sketch};

use super::discovery::Owners;

/// The answers of one chunk's queries.
#[derive(Debug, Default)]
pub struct Answers {
    /// Owner edges (instant).
    pub owners: Vec<InstantSample>,
    /// Requests, limits and info per pod container (range).
    pub specs: Vec<RangeSeries>,
    /// CPU cores per pod container (range).
    pub cpu: Vec<RangeSeries>,
    /// Memory peak per pod container (range).
    pub memory: Vec<RangeSeries>,
    /// Samples Prometheus sent as NaN/±Inf, already skipped by the client.
    pub non_finite_skipped: u64,
}

/// What happened while building a chunk, for logs and the run report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStats {
    /// Usage samples summarized.
    pub samples: u64,
    /// Samples dropped: NaN/±Inf from Prometheus, or negative.
    pub rejected: u64,
    /// Pods whose owner was guessed from the name because no owner series existed.
    pub inferred_pods: u64,
    /// Series without a usable namespace/pod/container, or of the pod cgroup / pause container.
    pub ignored_series: u64,
}

fn label<'a>(s: &'a RangeSeries, name: &str) -> &'a str {
    s.labels.get(name).map(String::as_str).unwrap_or("")
}

/// Resolves pod containers to workload containers, caching per pod.
struct Resolver<'a> {
    cluster: &'a str,
    owners: &'a Owners,
    cache: HashMap<(String, String), (String, String)>,
    inferred: u64,
}

impl Resolver<'_> {
    fn key(&mut self, s: &RangeSeries) -> Option<ContainerKey> {
        let (namespace, pod, container) = (
            label(s, "namespace"),
            label(s, "pod"),
            label(s, "container"),
        );
        if namespace.is_empty() || pod.is_empty() || container.is_empty() || container == "POD" {
            return None;
        }
        let cache_key = (namespace.to_string(), pod.to_string());
        if !self.cache.contains_key(&cache_key) {
            let w = self.owners.resolve(namespace, pod);
            if w.inferred {
                self.inferred += 1;
                tracing::debug!(namespace, pod, kind = %w.kind, name = %w.name, "no owner series: owner inferred from the pod name");
            }
            self.cache.insert(cache_key.clone(), (w.kind, w.name));
        }
        let (kind, name) = &self.cache[&cache_key];
        Some(ContainerKey {
            cluster: self.cluster.to_string(),
            namespace: namespace.to_string(),
            kind: kind.clone(),
            workload: name.clone(),
            container: container.to_string(),
        })
    }
}

#[derive(Default)]
struct Latest {
    seen_at: i64,
    resources: Resources,
}

/// Builds the chunk for `hours` of `cluster` from the answers.
pub fn build_chunk(cluster: &str, hours: Vec<i64>, answers: &Answers) -> (Chunk, ChunkStats) {
    let owners = Owners::from_samples(&answers.owners);
    let mut resolver = Resolver {
        cluster,
        owners: &owners,
        cache: HashMap::new(),
        inferred: 0,
    };
    let mut stats = ChunkStats {
        rejected: answers.non_finite_skipped,
        ..ChunkStats::default()
    };

    let mut sketches: BTreeMap<(ContainerKey, Resource, i64), Sketch> = BTreeMap::new();
    for (resource, series) in [
        (Resource::Cpu, &answers.cpu),
        (Resource::Memory, &answers.memory),
    ] {
        for s in series {
            let Some(key) = resolver.key(s) else {
                stats.ignored_series += 1;
                continue;
            };
            for &(t, v) in &s.samples {
                let hour = t - t.rem_euclid(3600);
                let sketch = sketches.entry((key.clone(), resource, hour)).or_default();
                match sketch.insert(v) {
                    Ok(()) => stats.samples += 1,
                    Err(Rejected::Negative | Rejected::NotFinite) => stats.rejected += 1,
                }
            }
        }
    }

    // The spec of a workload container is the one of its newest pods: the last time any
    // of its pods reported, and at that time the largest value (pods mid-rollout differ).
    let mut latest: BTreeMap<ContainerKey, Latest> = BTreeMap::new();
    for s in &answers.specs {
        let Some(key) = resolver.key(s) else { continue };
        let Some(&(t, v)) = s.samples.last() else {
            continue;
        };
        let entry = latest.entry(key).or_default();
        if t > entry.seen_at {
            *entry = Latest {
                seen_at: t,
                resources: Resources::default(),
            };
        }
        if t == entry.seen_at {
            let r = &mut entry.resources;
            let slot = match (label(s, "__name__"), label(s, "resource")) {
                ("kube_pod_container_resource_requests", "cpu") => {
                    Some((&mut r.cpu_request_millicores, 1000.0))
                }
                ("kube_pod_container_resource_limits", "cpu") => {
                    Some((&mut r.cpu_limit_millicores, 1000.0))
                }
                ("kube_pod_container_resource_requests", "memory") => {
                    Some((&mut r.memory_request_bytes, 1.0))
                }
                ("kube_pod_container_resource_limits", "memory") => {
                    Some((&mut r.memory_limit_bytes, 1.0))
                }
                _ => None,
            };
            if let Some((slot, scale)) = slot {
                let value = (v * scale).round() as i64;
                *slot = Some(slot.map_or(value, |old| old.max(value)));
            }
        }
    }
    stats.inferred_pods = resolver.inferred;

    let containers = latest
        .into_iter()
        .map(|(key, l)| ContainerObservation {
            key,
            resources: l.resources,
            seen_at: l.seen_at,
        })
        .collect();
    let usage = sketches
        .into_iter()
        .map(|((key, resource, hour_start), sketch)| UsageHour {
            key,
            resource,
            hour_start,
            sketch,
        })
        .collect();
    (
        Chunk {
            cluster: cluster.to_string(),
            hours,
            containers,
            usage,
        },
        stats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::Labels;

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> RangeSeries {
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RangeSeries {
            labels,
            samples: samples.to_vec(),
        }
    }

    fn owner(pod: &str) -> InstantSample {
        let labels: Labels = [
            ("__name__", "kube_pod_owner"),
            ("namespace", "shop"),
            ("pod", pod),
            ("owner_kind", "StatefulSet"),
            ("owner_name", "db"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        InstantSample {
            labels,
            time: 0,
            value: 1.0,
        }
    }

    #[test]
    fn pools_pods_and_splits_hours() {
        let answers = Answers {
            owners: vec![owner("db-0"), owner("db-1")],
            cpu: vec![
                series(
                    &[("namespace", "shop"), ("pod", "db-0"), ("container", "pg")],
                    &[(3600, 0.1), (7140, 0.2), (7200, 0.3)],
                ),
                series(
                    &[("namespace", "shop"), ("pod", "db-1"), ("container", "pg")],
                    &[(3660, -1.0), (3720, 0.4)],
                ),
                series(
                    &[("namespace", "shop"), ("pod", "db-1"), ("container", "POD")],
                    &[(3660, 9.0)],
                ),
            ],
            specs: vec![
                series(
                    &[
                        ("__name__", "kube_pod_container_resource_requests"),
                        ("namespace", "shop"),
                        ("pod", "db-0"),
                        ("container", "pg"),
                        ("resource", "cpu"),
                    ],
                    &[(3600, 0.5), (7200, 0.25)],
                ),
                series(
                    &[
                        ("__name__", "kube_pod_container_resource_requests"),
                        ("namespace", "shop"),
                        ("pod", "db-1"),
                        ("container", "pg"),
                        ("resource", "cpu"),
                    ],
                    &[(3600, 0.5)],
                ),
                series(
                    &[
                        ("__name__", "kube_pod_container_resource_limits"),
                        ("namespace", "shop"),
                        ("pod", "db-0"),
                        ("container", "pg"),
                        ("resource", "memory"),
                    ],
                    &[(7200, 1048576.0)],
                ),
            ],
            ..Answers::default()
        };
        let (chunk, stats) = build_chunk("c", vec![3600, 7200], &answers);
        assert_eq!(
            stats,
            ChunkStats {
                samples: 4,
                rejected: 1,
                inferred_pods: 0,
                ignored_series: 1
            }
        );
        let hours: Vec<(i64, u64)> = chunk
            .usage
            .iter()
            .map(|u| (u.hour_start, u.sketch.count()))
            .collect();
        assert_eq!(hours, vec![(3600, 3), (7200, 1)]);
        assert_eq!(chunk.usage[0].key.workload, "db");
        assert_eq!(chunk.containers.len(), 1);
        let c = &chunk.containers[0];
        assert_eq!(c.seen_at, 7200);
        assert_eq!(c.resources.cpu_request_millicores, Some(250));
        assert_eq!(c.resources.memory_limit_bytes, Some(1048576));
        assert_eq!(c.resources.cpu_limit_millicores, None);
    }
}
