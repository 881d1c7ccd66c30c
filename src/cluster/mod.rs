//! The Kubernetes API as an optional second source beside Prometheus.
//!
//! Prometheus (cAdvisor + kube-state-metrics) tells us what containers *used*;
//! the API tells us what their workloads *ask for now*: pod-template requests
//! and limits, replica counts, HPA targets, PDB rules and `rightsizer.io/*`
//! annotations. [`snapshot_once`] lists everything once (paginated);
//! [`spawn_reflectors`] keeps watch-fed reflector stores up to date and hands
//! out a [`ClusterSnapshot`] on demand.
//!
//! Access is read-only (`get`, `list`, `watch`). A resource type the service
//! account may not read (HTTP 403) is logged once with its verb and recorded in
//! [`ClusterSnapshot::degraded`]; everything else keeps working.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Resources;

mod convert;
pub mod limit;
mod list;
mod reconcile;
mod watch;

pub use list::snapshot_once;
pub use reconcile::{reconcile, unknown_without_api, Disagreements, WATCHED_WORKLOAD_KINDS};
pub use watch::{spawn_reflectors, ClusterWatch};

/// Annotations with this prefix are kept on [`WorkloadSpec::annotations`]; all others are dropped.
pub const ANNOTATION_PREFIX: &str = "rightsizer.io/";

/// Objects per page of a list request (client-go's default).
pub const PAGE_SIZE: u32 = 500;

/// Where and what to read from the Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSourceConfig {
    /// A kubeconfig file; `None` infers (`$KUBECONFIG`, `~/.kube/config`, then in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// A kubeconfig context; `None` uses the current context.
    pub context: Option<String>,
    /// Only these namespaces (one list/watch per namespace); empty means all.
    pub include_namespaces: Vec<String>,
    /// Never these namespaces (a `metadata.namespace!=` field selector, or dropped from the include list).
    pub exclude_namespaces: Vec<String>,
    /// A label selector (`app=web,tier!=batch`) applied to the workload kinds. HPAs and PDBs are
    /// read for the whole namespace scope: they rarely carry their workload's labels.
    pub label_selector: Option<String>,
    /// Largest answer read, in bytes (each event, for a watch); default 256 MiB.
    pub max_response_bytes: Option<u64>,
}

impl ClusterSourceConfig {
    /// Checks namespace names are DNS labels, so they cannot smuggle anything into a field selector.
    pub fn validate(&self) -> Result<(), ClusterError> {
        for (field, names) in [
            ("include_namespaces", &self.include_namespaces),
            ("exclude_namespaces", &self.exclude_namespaces),
        ] {
            if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
                return Err(ClusterError::Invalid(format!(
                    "{field}: {bad:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
                )));
            }
        }
        if self.max_response_bytes == Some(0) {
            return Err(ClusterError::Invalid(
                "max_response_bytes must be > 0 (leave it unset for 256 MiB)".into(),
            ));
        }
        if matches!(&self.label_selector, Some(s) if s.trim().is_empty()) {
            return Err(ClusterError::Invalid(
                "label_selector must not be empty (leave it unset to select everything)".into(),
            ));
        }
        Ok(())
    }

    /// Whether a namespace is inside the configured scope (for filtering Prometheus keys
    /// before [`reconcile`]).
    pub fn namespace_in_scope(&self, namespace: &str) -> bool {
        (self.include_namespaces.is_empty()
            || self.include_namespaces.iter().any(|n| n == namespace))
            && !self.exclude_namespaces.iter().any(|n| n == namespace)
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Errors of the Kubernetes API source. A 403 or 404 on one resource type is not an error:
/// it degrades the snapshot instead.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or in-cluster environment.
    #[error("cannot load Kubernetes client config: {0}")]
    Config(String),
    /// The client could not be built from the config.
    #[error("cannot build Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// A request failed for a reason other than a missing permission or API.
    #[error("{verb} {resource} failed: {source}")]
    Api {
        /// `list` or `watch`.
        verb: &'static str,
        /// `group/version plural`, with the namespace when scoped.
        resource: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A setting of [`ClusterSourceConfig`] is not valid.
    #[error("invalid Kubernetes source config: {0}")]
    Invalid(String),
}

/// The resource types the source lists and watches, as `group/version plural`
/// (`apps/v1 deployments`); the ClusterRole in `deploy/base/rbac.yaml` grants exactly these.
pub fn watched_resources() -> Vec<String> {
    use k8s_openapi::api::{apps::v1 as apps, autoscaling::v2 as autoscaling};
    use k8s_openapi::api::{batch::v1 as batch, policy::v1 as policy};
    fn name<K: kube::Resource<DynamicType = ()>>() -> String {
        format!("{} {}", K::api_version(&()), K::plural(&()))
    }
    vec![
        name::<apps::Deployment>(),
        name::<apps::StatefulSet>(),
        name::<apps::DaemonSet>(),
        name::<batch::CronJob>(),
        name::<batch::Job>(),
        name::<autoscaling::HorizontalPodAutoscaler>(),
        name::<policy::PodDisruptionBudget>(),
    ]
}

/// Builds a client: from `cfg.kubeconfig` (and `cfg.context`) when given, otherwise inferred
/// (`$KUBECONFIG` or `~/.kube/config`, then the in-cluster service account).
pub async fn client(cfg: &ClusterSourceConfig) -> Result<kube::Client, ClusterError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: cfg.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cfg.kubeconfig, &cfg.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Config(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ClusterError::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Config(format!("context {context:?}: {e}")))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    client_from_config(
        config,
        cfg.max_response_bytes
            .unwrap_or(limit::DEFAULT_MAX_RESPONSE_BYTES),
    )
}

/// A client for `config` whose every answer is capped at `max_response_bytes` (each
/// event, for a watch; see [`limit`]).
pub fn client_from_config(
    config: kube::Config,
    max_response_bytes: u64,
) -> Result<kube::Client, ClusterError> {
    let builder = kube::client::ClientBuilder::try_from(config).map_err(ClusterError::Client)?;
    Ok(builder
        .with_layer(&limit::CapLayer::new(max_response_bytes))
        .build())
}

/// Everything the API says about the workloads in scope, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterSnapshot {
    /// Deployments, StatefulSets, DaemonSets, CronJobs and Jobs not owned by a CronJob,
    /// sorted by namespace, kind and name.
    pub workloads: Vec<WorkloadSpec>,
    /// HorizontalPodAutoscalers (autoscaling/v2).
    pub hpas: Vec<HpaSpec>,
    /// PodDisruptionBudgets (policy/v1).
    pub pdbs: Vec<PdbSpec>,
    /// Resource types that could not be read, e.g.
    /// `forbidden: list policy/v1 poddisruptionbudgets`. Empty when all is well.
    pub degraded: Vec<String>,
}

impl ClusterSnapshot {
    /// A workload by namespace, kind and name.
    pub fn workload(&self, namespace: &str, kind: &str, name: &str) -> Option<&WorkloadSpec> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.kind == kind && w.name == name)
    }

    /// Current requests and limits of a workload container, from its pod template.
    /// The cluster part of the key is not compared: a snapshot is of one cluster.
    pub fn resources_of(&self, key: &crate::model::ContainerKey) -> Option<Resources> {
        self.workload(&key.namespace, &key.kind, &key.workload)?
            .containers
            .iter()
            .find(|c| c.name == key.container)
            .map(|c| c.resources)
    }

    /// The HPA scaling a workload, if any.
    pub fn hpa_for(&self, workload: &WorkloadSpec) -> Option<&HpaSpec> {
        self.hpas.iter().find(|h| {
            h.namespace == workload.namespace
                && h.target_kind == workload.kind
                && h.target_name == workload.name
        })
    }

    /// The PDBs whose selector matches a workload's pod-template labels.
    pub fn pdbs_for(&self, workload: &WorkloadSpec) -> Vec<&PdbSpec> {
        self.pdbs
            .iter()
            .filter(|p| p.namespace == workload.namespace && p.selects(&workload.pod_labels))
            .collect()
    }
}

/// A workload's current spec, as the API has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSpec {
    /// Namespace.
    pub namespace: String,
    /// Deployment, StatefulSet, DaemonSet, CronJob or Job (the `ContainerKey::kind` spelling).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Desired pods: `spec.replicas` (Deployment, StatefulSet), `spec.parallelism` (Job, CronJob's
    /// job template), `status.desiredNumberScheduled` (DaemonSet); `None` when not stated.
    pub replicas: Option<i32>,
    /// The workload's own labels.
    pub labels: BTreeMap<String, String>,
    /// Only the `rightsizer.io/*` annotations (policy overrides, ignore).
    pub annotations: BTreeMap<String, String>,
    /// Pod-template labels, which PDB selectors match.
    pub pod_labels: BTreeMap<String, String>,
    /// Containers of the pod template, then native sidecars (init containers with
    /// `restartPolicy: Always`); other init containers are left out as they do not run alongside.
    pub containers: Vec<ContainerSpec>,
}

impl WorkloadSpec {
    /// The workload's containers as keys of `cluster`.
    pub fn container_keys(&self, cluster: &str) -> Vec<crate::model::ContainerKey> {
        self.containers
            .iter()
            .map(|c| crate::model::ContainerKey {
                cluster: cluster.to_string(),
                namespace: self.namespace.clone(),
                kind: self.kind.clone(),
                workload: self.name.clone(),
                container: c.name.clone(),
            })
            .collect()
    }
}

/// One container of a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Requests and limits from the template; `None` where unset or unparseable (logged).
    pub resources: Resources,
}

/// A HorizontalPodAutoscaler (autoscaling/v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HpaSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `scaleTargetRef.kind`.
    pub target_kind: String,
    /// `scaleTargetRef.name`.
    pub target_name: String,
    /// `minReplicas` (the API defaults it to 1).
    pub min_replicas: Option<i32>,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// Target average CPU utilization in percent of the request (a `Resource` metric).
    pub cpu_utilization_target: Option<i32>,
    /// Target average memory utilization in percent of the request (a `Resource` metric).
    pub memory_utilization_target: Option<i32>,
    /// Every other metric, described: `ContainerResource cpu of app: Utilization 60%`,
    /// `Pods http_requests_per_second: AverageValue 10`, `External queue_depth: Value 30`.
    pub other_metrics: Vec<String>,
}

/// A PodDisruptionBudget (policy/v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdbSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pod selector. `None` (no selector) selects no pod; an empty selector selects every pod
    /// of the namespace.
    pub selector: Option<LabelSelector>,
    /// `minAvailable` as written: `1` or `50%`.
    pub min_available: Option<String>,
    /// `maxUnavailable` as written: `1` or `25%`.
    pub max_unavailable: Option<String>,
    /// `status.disruptionsAllowed`: 0 means no pod may be evicted now.
    pub disruptions_allowed: Option<i32>,
}

impl PdbSpec {
    /// Whether the PDB's selector matches these pod labels (same namespace assumed).
    pub fn selects(&self, pod_labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| s.matches(pod_labels))
    }
}

/// A label selector: `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`.
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether the labels satisfy every term. An unknown operator matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let mut s = LabelSelector::default();
        assert!(s.matches(&pod), "an empty selector selects everything");
        s.match_labels = labels(&[("app", "web")]);
        assert!(s.matches(&pod));
        s.match_expressions.push(SelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: vec!["front".into(), "edge".into()],
        });
        assert!(s.matches(&pod));
        s.match_expressions.push(SelectorRequirement {
            key: "canary".into(),
            operator: "DoesNotExist".into(),
            values: vec![],
        });
        assert!(s.matches(&pod));
        s.match_expressions[0].operator = "NotIn".into();
        assert!(!s.matches(&pod));
        let pdb = PdbSpec {
            namespace: "shop".into(),
            name: "web".into(),
            selector: None,
            min_available: Some("1".into()),
            max_unavailable: None,
            disruptions_allowed: Some(1),
        };
        assert!(!pdb.selects(&pod), "no selector selects no pod");
    }

    #[test]
    fn config_rejects_namespace_names_that_are_not_dns_labels() {
        let mut cfg = ClusterSourceConfig {
            exclude_namespaces: vec!["kube-system".into()],
            ..Default::default()
        };
        assert!(cfg.validate().is_ok());
        cfg.exclude_namespaces.push("a,metadata.name=x".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("exclude_namespaces: \"a,metadata.name=x\""),
            "{err}"
        );
        cfg.exclude_namespaces.pop();
        cfg.label_selector = Some(" ".into());
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn namespace_scope() {
        let cfg = ClusterSourceConfig {
            include_namespaces: vec!["shop".into(), "data".into()],
            exclude_namespaces: vec!["data".into()],
            ..Default::default()
        };
        assert!(cfg.namespace_in_scope("shop"));
        assert!(!cfg.namespace_in_scope("data"));
        assert!(!cfg.namespace_in_scope("other"));
        assert!(ClusterSourceConfig::default().namespace_in_scope("anything"));
    }
}
