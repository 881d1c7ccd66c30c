//! From Kubernetes objects to the plain specs of a [`ClusterSnapshot`], and the request scopes
//! (which namespaces, which selectors) shared by the one-shot lister and the reflectors.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricTarget};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Resource as _;
use kube::api::Api;
use kube::{Client, Resource};

use super::{
    ClusterSnapshot, ClusterSourceConfig, ContainerSpec, HpaSpec, LabelSelector, PdbSpec,
    SelectorRequirement, WorkloadSpec, ANNOTATION_PREFIX,
};
use crate::model::Resources;

/// Where one set of list/watch requests goes: every namespace (minus exclusions) or one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `/apis/…/<plural>` with `fieldSelector=metadata.namespace!=a,metadata.namespace!=b`.
    All { field_selector: Option<String> },
    /// `/apis/…/namespaces/<ns>/<plural>`.
    Namespace(String),
}

/// The scopes a config asks for: one per included namespace, or one cluster-wide.
pub(crate) fn scopes(cfg: &ClusterSourceConfig) -> Vec<Scope> {
    if cfg.include_namespaces.is_empty() {
        let field_selector = (!cfg.exclude_namespaces.is_empty()).then(|| {
            cfg.exclude_namespaces
                .iter()
                .map(|ns| format!("metadata.namespace!={ns}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        return vec![Scope::All { field_selector }];
    }
    let mut namespaces: Vec<&String> = cfg
        .include_namespaces
        .iter()
        .filter(|ns| !cfg.exclude_namespaces.contains(ns))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
        .into_iter()
        .map(|ns| Scope::Namespace(ns.clone()))
        .collect()
}

impl Scope {
    /// The typed API for this scope.
    pub(crate) fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::All { .. } => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }

    /// The field selector excluding namespaces, if any.
    pub(crate) fn field_selector(&self) -> Option<&str> {
        match self {
            Scope::All { field_selector } => field_selector.as_deref(),
            Scope::Namespace(_) => None,
        }
    }

    /// How a resource type in this scope is named in logs and `degraded`:
    /// `policy/v1 poddisruptionbudgets`, `apps/v1 deployments in namespace shop`.
    pub(crate) fn describe<K: Resource<DynamicType = ()>>(&self) -> String {
        let resource = format!("{} {}", K::api_version(&()), K::plural(&()));
        match self {
            Scope::All { .. } => resource,
            Scope::Namespace(ns) => format!("{resource} in namespace {ns}"),
        }
    }
}

/// The label selector applies to workload kinds only (see [`ClusterSourceConfig::label_selector`]).
pub(crate) fn applies_label_selector<K: Resource<DynamicType = ()>>() -> bool {
    let kind = K::kind(&());
    kind != HorizontalPodAutoscaler::KIND && kind != PodDisruptionBudget::KIND
}

/// Collects objects into a snapshot; `finish` sorts it so equal clusters give equal snapshots.
#[derive(Default)]
pub(crate) struct SnapshotBuilder {
    snapshot: ClusterSnapshot,
}

impl SnapshotBuilder {
    pub(crate) fn deployment(&mut self, d: &Deployment) {
        self.workload(
            "Deployment",
            &d.metadata,
            d.spec.replicas,
            Some(&d.spec.template),
        );
    }

    pub(crate) fn stateful_set(&mut self, s: &StatefulSet) {
        self.workload(
            "StatefulSet",
            &s.metadata,
            s.spec.replicas,
            Some(&s.spec.template),
        );
    }

    pub(crate) fn daemon_set(&mut self, d: &DaemonSet) {
        self.workload(
            "DaemonSet",
            &d.metadata,
            d.status.as_ref().map(|s| s.desired_number_scheduled),
            Some(&d.spec.template),
        );
    }

    pub(crate) fn cron_job(&mut self, c: &CronJob) {
        let job = c.spec.job_template.spec.as_ref();
        self.workload(
            "CronJob",
            &c.metadata,
            job.and_then(|j| j.parallelism),
            job.map(|j| &j.template),
        );
    }

    /// Jobs a CronJob created are left out: their usage belongs to the CronJob (Pod → Job →
    /// CronJob), which is listed with its job template.
    pub(crate) fn job(&mut self, j: &Job) {
        let owned_by_cron_job = j
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == CronJob::KIND && o.controller == Some(true));
        if owned_by_cron_job {
            return;
        }
        let spec = j.spec.as_ref();
        self.workload(
            "Job",
            &j.metadata,
            spec.and_then(|s| s.parallelism),
            spec.map(|s| &s.template),
        );
    }

    pub(crate) fn hpa(&mut self, h: &HorizontalPodAutoscaler) {
        let spec = &h.spec;
        let mut hpa = HpaSpec {
            namespace: h.metadata.namespace.clone().unwrap_or_default(),
            name: h.metadata.name.clone().unwrap_or_default(),
            target_kind: spec.scale_target_ref.kind.clone(),
            target_name: spec.scale_target_ref.name.clone(),
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            cpu_utilization_target: None,
            memory_utilization_target: None,
            other_metrics: Vec::new(),
        };
        for m in spec.metrics.iter().flatten() {
            match (m.type_.as_str(), &m.resource) {
                ("Resource", Some(r))
                    if r.target.type_ == "Utilization"
                        && r.target.average_utilization.is_some() =>
                {
                    match r.name.as_str() {
                        "cpu" => hpa.cpu_utilization_target = r.target.average_utilization,
                        "memory" => hpa.memory_utilization_target = r.target.average_utilization,
                        _ => hpa.other_metrics.push(format!(
                            "Resource {}: {}",
                            r.name,
                            target(&r.target)
                        )),
                    }
                }
                _ => hpa.other_metrics.push(describe_metric(m)),
            }
        }
        self.snapshot.hpas.push(hpa);
    }

    pub(crate) fn pdb(&mut self, p: &PodDisruptionBudget) {
        let spec = p.spec.as_ref();
        self.snapshot.pdbs.push(PdbSpec {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            selector: spec.and_then(|s| s.selector.as_ref()).map(selector),
            min_available: spec
                .and_then(|s| s.min_available.as_ref())
                .map(int_or_string),
            max_unavailable: spec
                .and_then(|s| s.max_unavailable.as_ref())
                .map(int_or_string),
            disruptions_allowed: p.status.as_ref().and_then(|s| s.disruptions_allowed),
        });
    }

    pub(crate) fn finish(mut self, mut degraded: Vec<String>) -> ClusterSnapshot {
        let s = &mut self.snapshot;
        s.workloads.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
        s.workloads
            .dedup_by(|a, b| (&a.namespace, &a.kind, &a.name) == (&b.namespace, &b.kind, &b.name));
        s.hpas
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        s.hpas
            .dedup_by(|a, b| (&a.namespace, &a.name) == (&b.namespace, &b.name));
        s.pdbs
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        s.pdbs
            .dedup_by(|a, b| (&a.namespace, &a.name) == (&b.namespace, &b.name));
        degraded.sort();
        degraded.dedup();
        s.degraded = degraded;
        self.snapshot
    }

    fn workload(
        &mut self,
        kind: &str,
        meta: &ObjectMeta,
        replicas: Option<i32>,
        template: Option<&PodTemplateSpec>,
    ) {
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let pod_spec = template.and_then(|t| t.spec.as_ref());
        let sidecars = pod_spec
            .and_then(|p| p.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let containers = pod_spec
            .map(|p| p.containers.iter())
            .into_iter()
            .flatten()
            .chain(sidecars)
            .map(|c| ContainerSpec {
                name: c.name.clone(),
                resources: resources(c, &namespace, kind, &name),
            })
            .collect();
        self.snapshot.workloads.push(WorkloadSpec {
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pod_labels: template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            namespace,
            kind: kind.to_string(),
            name,
            replicas,
            containers,
        });
    }
}

/// A container's requests and limits. The API server has validated them, so a value we cannot
/// parse is a bug on our side: logged and left unset rather than failing the snapshot.
fn resources(c: &Container, namespace: &str, kind: &str, workload: &str) -> Resources {
    let Some(r) = c.resources.as_ref() else {
        return Resources::default();
    };
    let get = |map: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               resource: &str,
               parse: fn(&str) -> Result<i64, crate::quantity::QuantityError>| {
        let text = &map.as_ref()?.get(resource)?.0;
        parse(text)
            .map_err(|e| {
                tracing::warn!(
                    namespace,
                    kind,
                    workload,
                    container = %c.name,
                    resource,
                    error = %e,
                    "unparseable quantity in the pod template; treated as unset"
                )
            })
            .ok()
    };
    Resources {
        cpu_request_millicores: get(&r.requests, "cpu", crate::quantity::parse_cpu_millicores),
        cpu_limit_millicores: get(&r.limits, "cpu", crate::quantity::parse_cpu_millicores),
        memory_request_bytes: get(&r.requests, "memory", crate::quantity::parse_memory_bytes),
        memory_limit_bytes: get(&r.limits, "memory", crate::quantity::parse_memory_bytes),
    }
}

fn selector(s: &meta::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| SelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn target(t: &MetricTarget) -> String {
    let value = match (t.average_utilization, &t.average_value, &t.value) {
        (Some(u), _, _) => format!("{u}%"),
        (None, Some(q), _) | (None, None, Some(q)) => q.0.clone(),
        (None, None, None) => "?".into(),
    };
    format!("{} {value}", t.type_)
}

fn describe_metric(m: &k8s_openapi::api::autoscaling::v2::MetricSpec) -> String {
    if let Some(r) = &m.resource {
        return format!("Resource {}: {}", r.name, target(&r.target));
    }
    if let Some(c) = &m.container_resource {
        return format!(
            "ContainerResource {} of {}: {}",
            c.name,
            c.container,
            target(&c.target)
        );
    }
    if let Some(p) = &m.pods {
        return format!("Pods {}: {}", p.metric.name, target(&p.target));
    }
    if let Some(o) = &m.object {
        return format!(
            "Object {} of {}/{}: {}",
            o.metric.name,
            o.described_object.kind,
            o.described_object.name,
            target(&o.target)
        );
    }
    if let Some(e) = &m.external {
        return format!("External {}: {}", e.metric.name, target(&e.target));
    }
    m.type_.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_config() {
        let all = scopes(&ClusterSourceConfig::default());
        assert_eq!(
            all,
            vec![Scope::All {
                field_selector: None
            }]
        );
        let cfg = ClusterSourceConfig {
            exclude_namespaces: vec!["kube-system".into(), "monitoring".into()],
            ..Default::default()
        };
        assert_eq!(
            scopes(&cfg)[0].field_selector(),
            Some("metadata.namespace!=kube-system,metadata.namespace!=monitoring")
        );
        let cfg = ClusterSourceConfig {
            include_namespaces: vec!["shop".into(), "data".into(), "shop".into()],
            exclude_namespaces: vec!["data".into()],
            ..Default::default()
        };
        assert_eq!(scopes(&cfg), vec![Scope::Namespace("shop".into())]);
        assert_eq!(
            scopes(&cfg)[0].describe::<PodDisruptionBudget>(),
            "policy/v1 poddisruptionbudgets in namespace shop"
        );
        assert!(applies_label_selector::<Deployment>());
        assert!(!applies_label_selector::<HorizontalPodAutoscaler>());
    }

    #[test]
    fn hpa_metrics_are_split_into_targets_and_descriptions() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": "30"}}}
                ]
            }
        }))
        .unwrap();
        let mut b = SnapshotBuilder::default();
        b.hpa(&hpa);
        let s = b.finish(vec![]);
        let h = &s.hpas[0];
        assert_eq!(h.cpu_utilization_target, Some(70));
        assert_eq!(h.memory_utilization_target, None);
        assert_eq!(
            h.other_metrics,
            vec![
                "Resource memory: AverageValue 500Mi",
                "ContainerResource cpu of app: Utilization 60%",
                "Pods http_requests_per_second: AverageValue 10",
                "External queue_depth: Value 30",
            ]
        );
    }
}
