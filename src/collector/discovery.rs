//! Resolves pods to the workload that owns them, from kube-state-metrics owner series:
//! Pod → ReplicaSet → Deployment (or Argo Rollout), Pod → Job → CronJob,
//! Pod → StatefulSet / DaemonSet. The pod-name heuristic is only a fallback.

use std::collections::HashMap;

use crate::prometheus::InstantSample;

/// A resolved top-level owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Kind of the top-level owner.
    pub kind: String,
    /// Name of the top-level owner.
    pub name: String,
    /// True when no owner series existed and the owner was guessed from the pod name.
    pub inferred: bool,
}

/// Owner edges seen in one chunk.
#[derive(Debug, Default)]
pub struct Owners {
    pods: HashMap<(String, String), (String, String)>,
    replicasets: HashMap<(String, String), (String, String)>,
    jobs: HashMap<(String, String), (String, String)>,
}

impl Owners {
    /// Builds the maps from an answer to [`super::queries::owners`].
    pub fn from_samples(samples: &[InstantSample]) -> Self {
        let mut owners = Owners::default();
        for s in samples {
            let get = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let (namespace, kind, name) = (get("namespace"), get("owner_kind"), get("owner_name"));
            if namespace.is_empty() {
                continue;
            }
            let edge = (kind, name);
            // Range functions drop the metric name, so the edge type comes from the label
            // only its metric has; `pod` goes last since scrape relabeling may add it anywhere.
            if s.labels.contains_key("replicaset") {
                insert_edge(
                    &mut owners.replicasets,
                    (namespace, get("replicaset")),
                    edge,
                );
            } else if s.labels.contains_key("job_name") {
                insert_edge(&mut owners.jobs, (namespace, get("job_name")), edge);
            } else if s.labels.contains_key("pod") {
                insert_edge(&mut owners.pods, (namespace, get("pod")), edge);
            }
        }
        owners
    }

    /// Number of pods with an owner series.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The top-level workload of `pod` in `namespace`.
    pub fn resolve(&self, namespace: &str, pod: &str) -> Workload {
        let Some((kind, name)) = self.pods.get(&(namespace.to_string(), pod.to_string())) else {
            return infer_from_pod_name(pod);
        };
        let found = |kind: &str, name: &str| Workload {
            kind: kind.into(),
            name: name.into(),
            inferred: false,
        };
        match kind.as_str() {
            "<none>" | "" => found("Pod", pod),
            "ReplicaSet" => match self.replicasets.get(&(namespace.to_string(), name.clone())) {
                Some((k, n)) if is_named(k, n) => found(k, n),
                _ => found("ReplicaSet", name),
            },
            "Job" => match self.jobs.get(&(namespace.to_string(), name.clone())) {
                Some((k, n)) if is_named(k, n) => found(k, n),
                _ => found("Job", name),
            },
            _ => found(kind, name),
        }
    }
}

fn is_named(kind: &str, name: &str) -> bool {
    !kind.is_empty() && kind != "<none>" && !name.is_empty() && name != "<none>"
}

// A pod can carry several owner references; the controller one is what we want, and a
// real owner beats "<none>".
fn insert_edge(
    map: &mut HashMap<(String, String), (String, String)>,
    key: (String, String),
    edge: (String, String),
) {
    match map.get(&key) {
        Some((k, _)) if k != "<none>" && edge.0 == "<none>" => {}
        _ => {
            map.insert(key, edge);
        }
    }
}

/// Kubernetes builds generated name suffixes from this alphabet (no vowels, no 0/1/3).
fn is_generated(s: &str, min: usize, max: usize) -> bool {
    const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
    (min..=max).contains(&s.len()) && s.chars().all(|c| ALPHABET.contains(c))
}

/// Guesses the owner from Kubernetes' pod naming: `deploy-<hash>-<5>` is a Deployment,
/// `name-<ordinal>` a StatefulSet, `name-<5>` a DaemonSet; anything else a bare pod.
fn infer_from_pod_name(pod: &str) -> Workload {
    let guess = |kind: &str, name: &str| Workload {
        kind: kind.into(),
        name: name.into(),
        inferred: true,
    };
    let Some((head, last)) = pod.rsplit_once('-') else {
        return guess("Pod", pod);
    };
    if head.is_empty() {
        return guess("Pod", pod);
    }
    if is_generated(last, 5, 5) {
        if let Some((name, hash)) = head.rsplit_once('-') {
            if !name.is_empty() && is_generated(hash, 6, 10) {
                return guess("Deployment", name);
            }
        }
        return guess("DaemonSet", head);
    }
    if last.chars().all(|c| c.is_ascii_digit()) && !last.is_empty() {
        return guess("StatefulSet", head);
    }
    guess("Pod", pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::Labels;

    fn sample(pairs: &[(&str, &str)]) -> InstantSample {
        let labels: Labels = pairs
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
    fn follows_owner_chains() {
        let owners = Owners::from_samples(&[
            sample(&[
                ("namespace", "shop"),
                ("pod", "api-7d9f-abcde"),
                ("owner_kind", "ReplicaSet"),
                ("owner_name", "api-7d9f"),
            ]),
            sample(&[
                ("namespace", "shop"),
                ("replicaset", "api-7d9f"),
                ("owner_kind", "Deployment"),
                ("owner_name", "api"),
            ]),
            sample(&[
                ("namespace", "batch"),
                ("pod", "etl-28000-xyz12"),
                ("owner_kind", "Job"),
                ("owner_name", "etl-28000"),
            ]),
            sample(&[
                ("namespace", "batch"),
                ("job_name", "etl-28000"),
                ("owner_kind", "CronJob"),
                ("owner_name", "etl"),
            ]),
            sample(&[
                ("namespace", "data"),
                ("pod", "pg-0"),
                ("owner_kind", "StatefulSet"),
                ("owner_name", "pg"),
            ]),
            sample(&[
                ("namespace", "data"),
                ("pod", "debug"),
                ("owner_kind", "<none>"),
                ("owner_name", "<none>"),
            ]),
            sample(&[
                ("namespace", "data"),
                ("pod", "orphan-rs-1"),
                ("owner_kind", "ReplicaSet"),
                ("owner_name", "orphan-rs"),
            ]),
        ]);
        let w = |ns, pod| {
            let w = owners.resolve(ns, pod);
            (w.kind, w.name, w.inferred)
        };
        assert_eq!(
            w("shop", "api-7d9f-abcde"),
            ("Deployment".into(), "api".into(), false)
        );
        assert_eq!(
            w("batch", "etl-28000-xyz12"),
            ("CronJob".into(), "etl".into(), false)
        );
        assert_eq!(
            w("data", "pg-0"),
            ("StatefulSet".into(), "pg".into(), false)
        );
        assert_eq!(w("data", "debug"), ("Pod".into(), "debug".into(), false));
        assert_eq!(
            w("data", "orphan-rs-1"),
            ("ReplicaSet".into(), "orphan-rs".into(), false)
        );
    }

    #[test]
    fn pod_name_heuristic_is_a_marked_fallback() {
        let owners = Owners::default();
        let w = |pod| {
            let w = owners.resolve("ns", pod);
            (w.kind, w.name, w.inferred)
        };
        assert_eq!(
            w("web-5f7c9d8b6-x2k9p"),
            ("Deployment".into(), "web".into(), true)
        );
        assert_eq!(w("redis-2"), ("StatefulSet".into(), "redis".into(), true));
        assert_eq!(
            w("node-exporter-q8z2m"),
            ("DaemonSet".into(), "node-exporter".into(), true)
        );
        assert_eq!(w("standalone"), ("Pod".into(), "standalone".into(), true));
    }
}
