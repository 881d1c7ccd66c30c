//! The applier's side of the Kubernetes API: reading what a plan needs (running pods and their
//! owners, nodes and what is already requested on them, LimitRanges, ResourceQuotas,
//! PodDisruptionBudgets, the server's version) and sending resizes through the pods' `resize`
//! subresource, dry-run first, then reading the kubelet's answer back from the pod's status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Container, LimitRange, Node, Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::plan::{
    ClusterState, ContainerLimits, Decision, NodeView, PdbView, PlannedResize, PodContainer,
    PodView, QuotaBound,
};
use crate::model::Resources;
use crate::quantity::{parse_cpu_millicores, parse_memory_bytes};

/// What went wrong talking to the API server, naming the call.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct ApiError {
    call: String,
    #[source]
    source: kube::Error,
}

fn at(call: impl Into<String>) -> impl FnOnce(kube::Error) -> ApiError {
    let call = call.into();
    move |source| ApiError { call, source }
}

/// Which pods a run looks at.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this workload: `name` or `Kind/name`.
    pub workload: Option<String>,
}

/// The server's version as `(major, minor)`; a minor such as `34+` (managed clusters) counts
/// as 34.
pub async fn server_version(client: &Client) -> Result<(u32, u32), ApiError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(at("GET /version"))?;
    let number = |s: &str| s.trim_end_matches('+').parse::<u32>().unwrap_or(0);
    Ok((number(&info.major), number(&info.minor)))
}

/// Everything a plan for `scope` needs, read now.
pub async fn read_state(client: &Client, scope: &Scope) -> Result<ClusterState, ApiError> {
    let running = ListParams::default().fields("status.phase=Running");
    let pods: Api<Pod> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let listed = list_all(&pods, &running, "list pods").await?;
    let mut state = ClusterState::default();
    let mut owners = Owners::new();
    for pod in &listed {
        let mut view = pod_view(pod);
        view.workload = owner(client, pod, &mut owners).await?;
        if let Some(w) = &scope.workload {
            let matches = view.workload.as_ref().is_some_and(|(kind, name)| {
                w == name || w.eq_ignore_ascii_case(&format!("{kind}/{name}"))
            });
            if !matches {
                continue;
            }
        }
        state.pods.push(view);
    }
    read_nodes(client, &mut state).await?;
    read_namespaces(client, &mut state).await?;
    read_workload_annotations(client, &mut state).await?;
    Ok(state)
}

/// Each node's allocatable and what the scheduler counts against it: every pod bound to it
/// and not finished.
async fn read_nodes(client: &Client, state: &mut ClusterState) -> Result<(), ApiError> {
    let nodes: BTreeSet<String> = state.pods.iter().filter_map(|p| p.node.clone()).collect();
    for node in &nodes {
        let api: Api<Node> = Api::all(client.clone());
        let n = api
            .get(node)
            .await
            .map_err(at(format!("get node {node}")))?;
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        state.nodes.insert(
            node.clone(),
            NodeView {
                allocatable_cpu_millicores: quantity(alloc, "cpu", parse_cpu_millicores)
                    .unwrap_or(0),
                allocatable_memory_bytes: quantity(alloc, "memory", parse_memory_bytes)
                    .unwrap_or(0),
            },
        );
        let on_node = ListParams::default().fields(&format!(
            "spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
        ));
        let all: Api<Pod> = Api::all(client.clone());
        let bound = list_all(&all, &on_node, &format!("list pods on node {node}")).await?;
        let used = bound
            .iter()
            .map(pod_requests)
            .fold((0, 0), |(c, m), (pc, pm)| (c + pc, m + pm));
        state.node_requests.insert(node.clone(), used);
    }
    Ok(())
}

/// The LimitRanges, ResourceQuotas and PodDisruptionBudgets of the pods' namespaces.
async fn read_namespaces(client: &Client, state: &mut ClusterState) -> Result<(), ApiError> {
    let namespaces: BTreeSet<String> = state.pods.iter().map(|p| p.namespace.clone()).collect();
    for ns in &namespaces {
        let lr: Api<LimitRange> = Api::namespaced(client.clone(), ns);
        let ranges = list_all(
            &lr,
            &ListParams::default(),
            &format!("list limitranges in {ns}"),
        )
        .await?;
        if let Some(limits) = container_limits(&ranges) {
            state.limit_ranges.insert(ns.clone(), limits);
        }
        let rq: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        let quotas = list_all(
            &rq,
            &ListParams::default(),
            &format!("list resourcequotas in {ns}"),
        )
        .await?;
        state
            .quotas
            .insert(ns.clone(), quotas.iter().flat_map(quota_bounds).collect());
        let pdb: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
        let pdbs = list_all(
            &pdb,
            &ListParams::default(),
            &format!("list poddisruptionbudgets in {ns}"),
        )
        .await?;
        state
            .pdbs
            .insert(ns.clone(), pdbs.iter().map(pdb_view).collect());
    }
    Ok(())
}

/// The `rightsizer.io/*` annotations of each pod's workload, which can opt it out.
async fn read_workload_annotations(
    client: &Client,
    state: &mut ClusterState,
) -> Result<(), ApiError> {
    let workloads: BTreeSet<(String, String, String)> = state
        .pods
        .iter()
        .filter_map(|p| {
            p.workload
                .as_ref()
                .map(|(k, n)| (p.namespace.clone(), k.clone(), n.clone()))
        })
        .collect();
    for (ns, kind, name) in workloads {
        let meta = workload_meta(client, &ns, &kind, &name).await?;
        let annotations = meta
            .annotations
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(crate::cluster::ANNOTATION_PREFIX))
            .collect();
        state
            .workload_annotations
            .insert((ns, kind, name), annotations);
    }
    Ok(())
}

async fn list_all<K>(api: &Api<K>, params: &ListParams, call: &str) -> Result<Vec<K>, ApiError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = params.clone().limit(crate::cluster::PAGE_SIZE);
    loop {
        let page = api.list(&params).await.map_err(at(call))?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

fn quantity(
    map: Option<&BTreeMap<String, Quantity>>,
    name: &str,
    parse: fn(&str) -> Result<i64, crate::quantity::QuantityError>,
) -> Option<i64> {
    parse(&map?.get(name)?.0).ok()
}

/// A container's requests and limits (an unparseable quantity is left unset: the API server
/// validated it, so it cannot happen in practice).
fn resources(c: &Container) -> Resources {
    let r = c.resources.as_ref();
    let req = r.and_then(|r| r.requests.as_ref());
    let lim = r.and_then(|r| r.limits.as_ref());
    Resources {
        cpu_request_millicores: quantity(req, "cpu", parse_cpu_millicores),
        cpu_limit_millicores: quantity(lim, "cpu", parse_cpu_millicores),
        memory_request_bytes: quantity(req, "memory", parse_memory_bytes),
        memory_limit_bytes: quantity(lim, "memory", parse_memory_bytes),
    }
}

/// The planner's view of `pod` (its workload not yet resolved).
pub fn pod_view(pod: &Pod) -> PodView {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let restarts_on = |c: &Container, resource: &str| {
        c.resize_policy
            .iter()
            .flatten()
            .any(|p| p.resource_name == resource && p.restart_policy == "RestartContainer")
    };
    PodView {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        node: spec.node_name.clone(),
        workload: None,
        phase: status.phase.clone().unwrap_or_default(),
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(crate::cluster::ANNOTATION_PREFIX))
            .collect(),
        labels: meta.labels.clone().unwrap_or_default(),
        pending_resize: pending_resize(&status),
        containers: spec
            .containers
            .iter()
            .map(|c| PodContainer {
                name: c.name.clone(),
                resources: resources(c),
                restarts_on_cpu: restarts_on(c, "cpu"),
                restarts_on_memory: restarts_on(c, "memory"),
            })
            .collect(),
        init_containers: spec
            .init_containers
            .iter()
            .flatten()
            .map(resources)
            .collect(),
        restarts: status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.restart_count))
            .collect(),
    }
}

/// A resize the kubelet has not finished, from the `PodResizePending` and
/// `PodResizeInProgress` conditions (Kubernetes 1.33 and later) or the older `status.resize`.
fn pending_resize(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        let detail = || {
            let reason = c.reason.clone().unwrap_or_default();
            match &c.message {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason,
            }
        };
        match c.type_.as_str() {
            "PodResizePending" => return Some(detail()),
            "PodResizeInProgress" => {
                return Some(format!("InProgress {}", detail()).trim().to_string())
            }
            _ => {}
        }
    }
    status
        .resize
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(|r| r.to_string())
}

/// Sum of a pod's container requests, `(millicores, bytes)`.
fn pod_requests(pod: &Pod) -> (i64, i64) {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(resources)
        .fold((0, 0), |(c, m), r| {
            (
                c + r.cpu_request_millicores.unwrap_or(0),
                m + r.memory_request_bytes.unwrap_or(0),
            )
        })
}

/// Resolved owners by `(namespace, controller kind, controller name)`.
pub(super) type Owners = BTreeMap<(String, String, String), Option<(String, String)>>;

/// The workload owning `pod`: its controller, through the ReplicaSet to the Deployment and
/// through the Job to the CronJob. Answers are cached per owner.
pub(super) async fn owner(
    client: &Client,
    pod: &Pod,
    cache: &mut Owners,
) -> Result<Option<(String, String)>, ApiError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(controller) = controller_of(&pod.metadata) else {
        return Ok(None);
    };
    let key = (ns.clone(), controller.0.clone(), controller.1.clone());
    if let Some(hit) = cache.get(&key) {
        return Ok(hit.clone());
    }
    let resolved = match controller.0.as_str() {
        "ReplicaSet" => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
            let rs = api
                .get(&controller.1)
                .await
                .map_err(at(format!("get replicaset {ns}/{}", controller.1)))?;
            controller_of(&rs.metadata).filter(|(k, _)| k == "Deployment")
        }
        "Job" => {
            let api: Api<Job> = Api::namespaced(client.clone(), &ns);
            let job = api
                .get(&controller.1)
                .await
                .map_err(at(format!("get job {ns}/{}", controller.1)))?;
            Some(
                controller_of(&job.metadata)
                    .filter(|(k, _)| k == "CronJob")
                    .unwrap_or(controller.clone()),
            )
        }
        "StatefulSet" | "DaemonSet" => Some(controller.clone()),
        _ => None,
    };
    cache.insert(key, resolved.clone());
    Ok(resolved)
}

fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

async fn workload_meta(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<ObjectMeta, ApiError> {
    let call = || at(format!("get {} {ns}/{name}", kind.to_lowercase()));
    let c = client.clone();
    Ok(match kind {
        "Deployment" => {
            Api::<Deployment>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(call())?
                .metadata
        }
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(call())?
                .metadata
        }
        "DaemonSet" => {
            Api::<DaemonSet>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(call())?
                .metadata
        }
        "CronJob" => {
            Api::<CronJob>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(call())?
                .metadata
        }
        _ => {
            Api::<Job>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(call())?
                .metadata
        }
    })
}

/// The tightest `type: Container` bounds of a namespace's LimitRanges.
fn container_limits(ranges: &[LimitRange]) -> Option<ContainerLimits> {
    let mut out = ContainerLimits::default();
    let mut any = false;
    let tighter = |a: Option<i64>, b: Option<i64>, max: bool| match (a, b) {
        (Some(a), Some(b)) => Some(if max { a.min(b) } else { a.max(b) }),
        (a, b) => a.or(b),
    };
    for item in ranges
        .iter()
        .filter_map(|r| r.spec.as_ref())
        .flat_map(|s| &s.limits)
    {
        if item.type_ != "Container" {
            continue;
        }
        any = true;
        let (min, max) = (item.min.as_ref(), item.max.as_ref());
        out.min_cpu = tighter(
            out.min_cpu,
            quantity(min, "cpu", parse_cpu_millicores),
            false,
        );
        out.max_cpu = tighter(
            out.max_cpu,
            quantity(max, "cpu", parse_cpu_millicores),
            true,
        );
        out.min_memory = tighter(
            out.min_memory,
            quantity(min, "memory", parse_memory_bytes),
            false,
        );
        out.max_memory = tighter(
            out.max_memory,
            quantity(max, "memory", parse_memory_bytes),
            true,
        );
        let ratio = |name: &str| {
            item.max_limit_request_ratio
                .as_ref()
                .and_then(|m| m.get(name))
                .and_then(|q| q.0.parse::<f64>().ok())
        };
        out.max_cpu_ratio = ratio("cpu").or(out.max_cpu_ratio);
        out.max_memory_ratio = ratio("memory").or(out.max_memory_ratio);
    }
    any.then_some(out)
}

fn quota_bounds(q: &ResourceQuota) -> Vec<QuotaBound> {
    let name = q.metadata.name.clone().unwrap_or_default();
    let hard = q
        .status
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .or(q.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let used = q.status.as_ref().and_then(|s| s.used.as_ref());
    [
        "requests.cpu",
        "cpu",
        "limits.cpu",
        "requests.memory",
        "memory",
        "limits.memory",
    ]
    .into_iter()
    .filter_map(|resource| {
        let parse = if resource.ends_with("cpu") {
            parse_cpu_millicores
        } else {
            parse_memory_bytes
        };
        Some(QuotaBound {
            quota: name.clone(),
            resource: resource.into(),
            hard: quantity(hard, resource, parse)?,
            used: quantity(used, resource, parse).unwrap_or(0),
        })
    })
    .collect()
}

fn pdb_view(p: &PodDisruptionBudget) -> PdbView {
    PdbView {
        name: p.metadata.name.clone().unwrap_or_default(),
        match_labels: p
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| s.match_expressions.as_ref().is_none_or(Vec::is_empty))
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default(),
        disruptions_allowed: p
            .status
            .as_ref()
            .and_then(|s| s.disruptions_allowed)
            .unwrap_or(0),
    }
}

/// The strategic-merge patch of one pod's `resize` subresource: each resized container's
/// requests and limits, and the resourceVersion the plan was made from (a pod changed since
/// is a 409 Conflict, never a resize computed from stale values).
pub fn resize_patch(pod: &PodView, lines: &[&PlannedResize]) -> serde_json::Value {
    let containers: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            let t = &l.target;
            let mut requests = serde_json::Map::new();
            let mut limits = serde_json::Map::new();
            if let Some(v) = t.cpu_request_millicores {
                requests.insert("cpu".into(), crate::quantity::cpu(v).into());
            }
            if let Some(v) = t.memory_request_bytes {
                requests.insert("memory".into(), crate::quantity::memory(v).into());
            }
            if let Some(v) = t.cpu_limit_millicores {
                limits.insert("cpu".into(), crate::quantity::cpu(v).into());
            }
            if let Some(v) = t.memory_limit_bytes {
                limits.insert("memory".into(), crate::quantity::memory(v).into());
            }
            json!({"name": l.container, "resources": {"requests": requests, "limits": limits}})
        })
        .collect();
    json!({
        "metadata": {"resourceVersion": pod.resource_version},
        "spec": {"containers": containers}
    })
}

/// Sends every pod's resizes of `plan`: a server-side dry run (`dryRun=All`), then the
/// resize, then the kubelet's answer read back from the pod. Fills each line's `outcome`; a
/// pod that fails does not stop the others.
pub async fn execute(client: &Client, state: &ClusterState, plan: &mut [PlannedResize]) {
    let mut by_pod: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, l) in plan.iter().enumerate() {
        if l.decision == Decision::Resize {
            by_pod
                .entry((l.namespace.clone(), l.pod.clone()))
                .or_default()
                .push(i);
        }
    }
    for ((ns, name), idx) in by_pod {
        let Some(pod) = state
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
        else {
            continue;
        };
        let lines: Vec<&PlannedResize> = idx.iter().map(|&i| &plan[i]).collect();
        let patch = resize_patch(pod, &lines);
        let outcome = send_patch(client, &ns, &name, &patch).await;
        tracing::info!(namespace = %ns, pod = %name, outcome = %outcome, "in-place resize");
        for i in idx {
            plan[i].outcome = Some(outcome.clone());
        }
    }
}

/// Sends one resize patch: the server's dry run first, then the resize; the outcome in words.
pub async fn send_patch(
    client: &Client,
    ns: &str,
    name: &str,
    patch: &serde_json::Value,
) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    if let Err(e) = api
        .patch_subresource("resize", name, &dry, &Patch::Strategic(patch))
        .await
    {
        return failure("the API server's dry run refused it", &e);
    }
    match api
        .patch_subresource(
            "resize",
            name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(pod) => match pod.status.as_ref().and_then(pending_resize) {
            Some(p) if p.starts_with("Infeasible") => format!("infeasible: {p}"),
            Some(p) if p.starts_with("Deferred") => format!("deferred: {p}"),
            Some(p) => format!("in-progress: {p}"),
            None => "resized".into(),
        },
        Err(e) => failure("the resize failed", &e),
    }
}

/// A failed call in words, naming the status that says what to do about it.
fn failure(what: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 409 => {
            format!("failed: {what}: the pod changed since it was read (409 Conflict); run again")
        }
        kube::Error::Api(s) if s.code == 403 => format!(
            "failed: {what}: forbidden (403): the service account needs `patch` on `pods/resize` (deploy/optional/apply): {}",
            s.message
        ),
        kube::Error::Api(s) if s.code == 422 => format!("failed: {what}: invalid (422): {}", s.message),
        kube::Error::Api(s) => format!("failed: {what}: {} ({}): {}", s.reason, s.code, s.message),
        other => format!("failed: {what}: {other}"),
    }
}
