//! Comparing the API's view of workloads with Prometheus', and what is unknown without the API.

use std::collections::BTreeSet;

use serde::Serialize;

use super::ClusterSnapshot;
use crate::model::ContainerKey;

/// The kinds the API source lists; only these are compared by [`reconcile`]. Prometheus also
/// names bare ReplicaSets, Pods and Argo Rollouts as owners, which the API source does not watch.
pub const WATCHED_WORKLOAD_KINDS: &[&str] =
    &["Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job"];

/// Workload containers one source knows and the other does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Disagreements {
    /// In a pod template but never seen in Prometheus: not yet scraped, scaled to zero,
    /// a CronJob that has not run in the window, or a kube-state-metrics gap.
    pub only_in_api: Vec<ContainerKey>,
    /// Seen in Prometheus but in no pod template: deleted since, renamed, or outside the API
    /// source's namespaces or label selector.
    pub only_in_prometheus: Vec<ContainerKey>,
}

impl Disagreements {
    /// True when the two sources agree.
    pub fn is_empty(&self) -> bool {
        self.only_in_api.is_empty() && self.only_in_prometheus.is_empty()
    }
}

/// Lists the workload containers of `cluster` that only one source knows. Prometheus keys of
/// other clusters, or of kinds the API source does not watch ([`WATCHED_WORKLOAD_KINDS`]), are
/// not compared; callers restrict `prometheus_keys` to the API source's scope first
/// ([`super::ClusterSourceConfig::namespace_in_scope`]). Both lists are sorted.
pub fn reconcile(
    snapshot: &ClusterSnapshot,
    cluster: &str,
    prometheus_keys: &[ContainerKey],
) -> Disagreements {
    let api: BTreeSet<ContainerKey> = snapshot
        .workloads
        .iter()
        .flat_map(|w| w.container_keys(cluster))
        .collect();
    let prometheus: BTreeSet<ContainerKey> = prometheus_keys
        .iter()
        .filter(|k| k.cluster == cluster && WATCHED_WORKLOAD_KINDS.contains(&k.kind.as_str()))
        .cloned()
        .collect();
    Disagreements {
        only_in_api: api.difference(&prometheus).cloned().collect(),
        only_in_prometheus: prometheus.difference(&api).cloned().collect(),
    }
}

/// What the service cannot know from kube-state-metrics alone, so it can say so when it runs
/// without API access. (kube-state-metrics does export HPA targets when its HPA collector is on,
/// but not which container a `ContainerResource` target names, nor PDB selectors.)
pub fn unknown_without_api() -> &'static [&'static str] {
    &[
        "workload annotations: rightsizer.io/* policy overrides and ignore flags",
        "workload and pod-template labels (which PDB covers which workload)",
        "pod-template requests/limits of workloads with no running pod (scaled to zero, CronJobs between runs) and of changes not yet rolled out",
        "HPA targets: min/max replicas and CPU/memory utilization targets per workload",
        "PDB rules: selectors, minAvailable/maxUnavailable and disruptions allowed",
        "Job and CronJob parallelism",
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ContainerSpec, WorkloadSpec};
    use crate::model::Resources;

    fn key(cluster: &str, kind: &str, workload: &str, container: &str) -> ContainerKey {
        ContainerKey {
            cluster: cluster.into(),
            namespace: "shop".into(),
            kind: kind.into(),
            workload: workload.into(),
            container: container.into(),
        }
    }

    fn workload(kind: &str, name: &str, containers: &[&str]) -> WorkloadSpec {
        WorkloadSpec {
            namespace: "shop".into(),
            kind: kind.into(),
            name: name.into(),
            replicas: Some(1),
            labels: Default::default(),
            annotations: Default::default(),
            pod_labels: Default::default(),
            containers: containers
                .iter()
                .map(|c| ContainerSpec {
                    name: c.to_string(),
                    resources: Resources::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn lists_what_only_one_side_knows() {
        let snapshot = ClusterSnapshot {
            workloads: vec![
                workload("Deployment", "web", &["app", "proxy"]),
                workload("CronJob", "report", &["job"]),
            ],
            ..Default::default()
        };
        let prometheus = vec![
            key("prod", "Deployment", "web", "app"),
            key("prod", "Deployment", "old", "app"),
            // Not compared: another cluster, and a kind the API source does not watch.
            key("staging", "Deployment", "web", "proxy"),
            key("prod", "ReplicaSet", "bare-7f9c", "app"),
        ];
        let d = reconcile(&snapshot, "prod", &prometheus);
        assert_eq!(
            d.only_in_api,
            vec![
                key("prod", "CronJob", "report", "job"),
                key("prod", "Deployment", "web", "proxy"),
            ]
        );
        assert_eq!(
            d.only_in_prometheus,
            vec![key("prod", "Deployment", "old", "app")]
        );
        assert!(!d.is_empty());
        assert!(reconcile(&ClusterSnapshot::default(), "prod", &[]).is_empty());
    }

    #[test]
    fn names_the_fields_only_the_api_gives() {
        let fields = unknown_without_api().join("\n");
        for word in ["annotations", "HPA", "PDB", "requests/limits"] {
            assert!(fields.contains(word), "{word}");
        }
    }
}
