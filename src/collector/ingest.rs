//! Turns one chunk's Prometheus answers into hourly summaries and container observations.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::{
    Chunk, ContainerKey, ContainerObservation, HpaInfo, PdbInfo, Resource, Resources, SignalHour,
    UsageHour, WorkloadInfo, WorkloadKey,
};
use crate::prometheus::{InstantSample, RangeSeries};
use crate::sketch::{Rejected, Sketch};

use super::discovery::Owners;

/// The answers of one chunk's queries.
#[derive(Debug, Default)]
pub struct Answers {
    /// Owner edges (instant). Shared, like `facts`, when they were asked for the whole run.
    pub owners: std::sync::Arc<[InstantSample]>,
    /// Workload facts: replicas, HPAs, PDBs (instant, raw series). Shared: every namespace
    /// group of a chunk is built with all of them (a clone per group was 3 MB at 5,000
    /// containers).
    pub facts: std::sync::Arc<[InstantSample]>,
    /// Requests, limits, info and counters per pod container (range).
    pub state: Vec<RangeSeries>,
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

    // Per workload container, its hours: the container is looked up once per series (a
    // hash of its key), each hour of the series by two integers, with no key cloned.
    let mut sketches: HashMap<ContainerKey, BTreeMap<(Resource, i64), Sketch>> = HashMap::new();
    for (resource, series) in [
        (Resource::Cpu, &answers.cpu),
        (Resource::Memory, &answers.memory),
    ] {
        for s in series {
            let Some(key) = resolver.key(s) else {
                stats.ignored_series += 1;
                continue;
            };
            let hours = sketches.entry(key).or_default();
            // Samples come in time order: one map entry per hour of a series, not per sample.
            for run in s
                .samples
                .chunk_by(|a, b| a.0.div_euclid(3600) == b.0.div_euclid(3600))
            {
                let hour = run[0].0 - run[0].0.rem_euclid(3600);
                let sketch = hours.entry((resource, hour)).or_default();
                for &(_, v) in run {
                    match sketch.insert(v) {
                        Ok(()) => stats.samples += 1,
                        Err(Rejected::Negative | Rejected::NotFinite) => stats.rejected += 1,
                    }
                }
            }
        }
    }

    let first_hour = hours.iter().copied().min().unwrap_or(0);
    let latest = latest_specs(&answers.state, &mut resolver);
    let signals = signal_hours(&answers.state, &mut resolver, first_hour);
    stats.inferred_pods = resolver.inferred;

    let containers = latest
        .into_iter()
        .map(|(key, l)| ContainerObservation {
            key,
            resources: l.resources,
            seen_at: l.seen_at,
        })
        .collect();
    // Sorted by container, resource and hour, as the rows are written.
    let by_key: BTreeMap<ContainerKey, BTreeMap<(Resource, i64), Sketch>> =
        sketches.into_iter().collect();
    // Sized first: collected from `flat_map`, the vector grew by doubling and kept up to
    // twice the room it needed until written.
    let mut usage: Vec<UsageHour> = Vec::with_capacity(by_key.values().map(BTreeMap::len).sum());
    for (key, hours) in by_key {
        let key = std::sync::Arc::new(key);
        for ((resource, hour_start), mut sketch) in hours {
            sketch.shrink_to_fit();
            usage.push(UsageHour {
                key: key.clone(),
                resource,
                hour_start,
                sketch,
            });
        }
    }
    let seen_at = hours.iter().copied().max().map(|h| h + 3600).unwrap_or(0);
    let workload_keys: BTreeSet<WorkloadKey> = usage.iter().map(|u| u.key.workload_key()).collect();
    let workloads = workload_facts(&answers.facts, &workload_keys, seen_at);
    let chunk = Chunk {
        cluster: cluster.to_string(),
        hours,
        containers,
        usage,
        signals,
        workloads,
    };
    (chunk, stats)
}

fn is_spec(name: &str) -> bool {
    matches!(
        name,
        "kube_pod_container_resource_requests"
            | "kube_pod_container_resource_limits"
            | "kube_pod_container_info"
    )
}

/// The spec of a workload container is the one of its newest pods: the last time any of
/// its pods reported, and at that time the largest value (pods mid-rollout differ).
fn latest_specs(
    state: &[RangeSeries],
    resolver: &mut Resolver<'_>,
) -> BTreeMap<ContainerKey, Latest> {
    let mut latest: BTreeMap<ContainerKey, Latest> = BTreeMap::new();
    for s in state.iter().filter(|s| is_spec(label(s, "__name__"))) {
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
    latest
}

/// Increases of a counter between consecutive samples, as `(time of the later sample,
/// increase)`; a drop is a reset (Prometheus' rule: the new value is the increase).
fn increases(samples: &[(i64, f64)]) -> impl Iterator<Item = (i64, f64)> + '_ {
    samples.windows(2).map(|w| {
        let ((_, prev), (t, v)) = (w[0], w[1]);
        (t, if v >= prev { v - prev } else { v })
    })
}

#[derive(Default)]
struct Counts {
    restarts: f64,
    oom_from_reason: f64,
    oom_events: f64,
    periods: f64,
    throttled: f64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.restarts += other.restarts;
        self.oom_from_reason += other.oom_from_reason;
        self.oom_events += other.oom_events;
        self.periods += other.periods;
        self.throttled += other.throttled;
    }
}

type PodContainer = (String, String, String);

fn pod_container(s: &RangeSeries) -> PodContainer {
    (
        label(s, "namespace").into(),
        label(s, "pod").into(),
        label(s, "container").into(),
    )
}

/// Per-hour restarts, OOM kills and throttling from the state counters. A restart counts
/// as an OOM kill when the container's last termination reason is OOMKilled right then;
/// `container_oom_events_total` counts the same kills, so the larger of the two wins.
fn signal_hours(
    state: &[RangeSeries],
    resolver: &mut Resolver<'_>,
    first_hour: i64,
) -> Vec<SignalHour> {
    const REASON: &str = "kube_pod_container_status_last_terminated_reason";
    let mut oom_reason: HashMap<PodContainer, HashSet<i64>> = HashMap::new();
    for s in state.iter().filter(|s| label(s, "__name__") == REASON) {
        let times = s.samples.iter().filter(|(_, v)| *v > 0.0).map(|(t, _)| *t);
        oom_reason
            .entry(pod_container(s))
            .or_default()
            .extend(times);
    }
    let mut counts: BTreeMap<(ContainerKey, i64), Counts> = BTreeMap::new();
    for s in state {
        let name = label(s, "__name__");
        if is_spec(name) || name == REASON {
            continue;
        }
        let Some(key) = resolver.key(s) else { continue };
        let reasons = oom_reason.get(&pod_container(s));
        // Counted per hour locally and added to the map once per hour of the series: the
        // CFS counters rise every sample, and a map entry per sample clones the key each time.
        let mut hour = None;
        let mut c = Counts::default();
        for (t, inc) in increases(&s.samples).filter(|(t, inc)| *t >= first_hour && *inc > 0.0) {
            let h = t - t.rem_euclid(3600);
            if hour != Some(h) {
                if let Some(done) = hour {
                    counts
                        .entry((key.clone(), done))
                        .or_default()
                        .add(&std::mem::take(&mut c));
                }
                hour = Some(h);
            }
            match name {
                "kube_pod_container_status_restarts_total" => {
                    c.restarts += inc;
                    if reasons.is_some_and(|r| r.contains(&t)) {
                        c.oom_from_reason += inc;
                    }
                }
                "container_oom_events_total" => c.oom_events += inc,
                "container_cpu_cfs_periods_total" => c.periods += inc,
                "container_cpu_cfs_throttled_periods_total" => c.throttled += inc,
                _ => {}
            }
        }
        if let Some(done) = hour {
            counts.entry((key, done)).or_default().add(&c);
        }
    }
    counts
        .into_iter()
        .map(|((key, hour_start), c)| SignalHour {
            key,
            hour_start,
            restarts: c.restarts.round() as u32,
            oom_kills: c.oom_from_reason.max(c.oom_events).round() as u32,
            cfs_periods: c.periods,
            cfs_throttled_periods: c.throttled.min(c.periods),
        })
        .collect()
}

fn new_hpa(name: &str) -> HpaInfo {
    HpaInfo {
        name: name.into(),
        min_replicas: None,
        max_replicas: None,
        cpu_target_utilization: None,
        metrics: Vec::new(),
    }
}

/// Workload facts of the workloads seen in the chunk. kube-state-metrics has no PDB
/// selectors, so a PDB is tied to a workload by name (`<name>` or `<name>-pdb`); the
/// Kubernetes API source ties them by selector.
fn workload_facts(
    facts: &[InstantSample],
    workloads: &BTreeSet<WorkloadKey>,
    seen_at: i64,
) -> Vec<WorkloadInfo> {
    let mut f = Facts::default();
    for s in facts {
        f.add(s);
    }
    workloads.iter().map(|w| f.info(w, seen_at)).collect()
}

/// Replicas, HPAs (and what each scales) and PDBs, by namespace and name.
#[derive(Default)]
struct Facts {
    replicas: HashMap<(String, String, String), i64>,
    hpas: BTreeMap<(String, String), HpaInfo>,
    hpa_targets: HashMap<(String, String, String), (String, String)>,
    pdbs: BTreeMap<(String, String), PdbInfo>,
}

impl Facts {
    fn add(&mut self, s: &InstantSample) {
        let get = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let ns = get("namespace");
        let hpa_key = (ns.clone(), get("horizontalpodautoscaler"));
        let pdb_key = (ns.clone(), get("poddisruptionbudget"));
        let value = s.value.round() as i64;
        match s.labels.get("__name__").map(String::as_str).unwrap_or("") {
            "kube_deployment_spec_replicas" => {
                self.replicas
                    .insert((ns, "Deployment".into(), get("deployment")), value);
            }
            "kube_statefulset_replicas" => {
                self.replicas
                    .insert((ns, "StatefulSet".into(), get("statefulset")), value);
            }
            "kube_horizontalpodautoscaler_info" => {
                self.hpa_targets.insert(
                    (ns, get("scaletargetref_kind"), get("scaletargetref_name")),
                    hpa_key,
                );
            }
            "kube_horizontalpodautoscaler_spec_target_metric" => {
                let hpa = self
                    .hpas
                    .entry(hpa_key.clone())
                    .or_insert_with(|| new_hpa(&hpa_key.1));
                let (metric, target_type) = (get("metric_name"), get("metric_target_type"));
                if metric == "cpu" && target_type == "utilization" {
                    hpa.cpu_target_utilization = Some(s.value);
                }
                hpa.metrics
                    .push(format!("{metric} {target_type} {}", s.value));
                hpa.metrics.sort();
            }
            "kube_horizontalpodautoscaler_spec_min_replicas" => {
                self.hpas
                    .entry(hpa_key.clone())
                    .or_insert_with(|| new_hpa(&hpa_key.1))
                    .min_replicas = Some(value);
            }
            "kube_horizontalpodautoscaler_spec_max_replicas" => {
                self.hpas
                    .entry(hpa_key.clone())
                    .or_insert_with(|| new_hpa(&hpa_key.1))
                    .max_replicas = Some(value);
            }
            name @ ("kube_poddisruptionbudget_status_pod_disruptions_allowed"
            | "kube_poddisruptionbudget_status_expected_pods") => {
                let pdb = self.pdbs.entry(pdb_key.clone()).or_insert_with(|| PdbInfo {
                    name: pdb_key.1.clone(),
                    disruptions_allowed: None,
                    expected_pods: None,
                    matched_by: "name".into(),
                });
                if name.ends_with("disruptions_allowed") {
                    pdb.disruptions_allowed = Some(value);
                } else {
                    pdb.expected_pods = Some(value);
                }
            }
            _ => {}
        }
    }

    /// What is known of workload `w`; a PDB is matched by the workload's name (or
    /// `<name>-pdb`), the usual convention, since kube-state-metrics has no selectors.
    fn info(&self, w: &WorkloadKey, seen_at: i64) -> WorkloadInfo {
        let id = (w.namespace.clone(), w.kind.clone(), w.name.clone());
        let hpa = self
            .hpa_targets
            .get(&id)
            .map(|k| self.hpas.get(k).cloned().unwrap_or_else(|| new_hpa(&k.1)));
        let pdb = [w.name.clone(), format!("{}-pdb", w.name)]
            .into_iter()
            .find_map(|name| self.pdbs.get(&(w.namespace.clone(), name)).cloned());
        WorkloadInfo {
            key: w.clone(),
            spec_replicas: self.replicas.get(&id).copied(),
            hpa,
            pdb,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            from_kubernetes_api: false,
            seen_at,
        }
    }
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
            owners: vec![owner("db-0"), owner("db-1")].into(),
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
            state: vec![
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
