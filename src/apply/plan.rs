//! The resize plan: running pods and the stored recommendations in, one named decision per
//! container out. Pure, so every safety rule is a unit test and `apply --dry-run` shows
//! exactly what a real run would send.
//!
//! The rules, each a reason a container is skipped or refused:
//! - only recommendations with status `ok`, at least `min_confidence`, whose pod and workload
//!   are not opted out (`rightsizer.io/ignore: "true"`, `rightsizer.io/apply: "false"`);
//! - only running pods with no resize already pending or in progress (an Infeasible resize is
//!   reported, never retried in a loop);
//! - raises at once, decreases by at most `max_step_down` of the current value per run, and
//!   never below the recommendation (for memory: the recent peak plus margin);
//! - a memory-limit decrease only where the API server allows it in place (Kubernetes 1.34
//!   and later) or where the container restarts on memory resizes anyway;
//! - the pod keeps its QoS class (the API server rejects a resize that changes it);
//! - a container that restarts on resize (`resizePolicy: RestartContainer`) only while its
//!   workload's PodDisruptionBudget allows a disruption;
//! - the node still fits the pod's requests, and the namespace's LimitRanges and
//!   ResourceQuotas still hold;
//! - at most `max_pods` pods per run.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Confidence, ContainerKey, Recommendation, Resources, Status};

/// What the planner is told about the cluster and the operator's limits.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The cluster the recommendations were computed for.
    pub cluster: String,
    /// Lowest confidence acted on.
    pub min_confidence: Confidence,
    /// Largest decrease per run, as a share of the current value (0.25: at most 25% lower).
    pub max_step_down: f64,
    /// Pods resized at most per run.
    pub max_pods: usize,
    /// The API server allows decreasing a memory limit in place (1.34 and later).
    pub memory_limit_decrease_allowed: bool,
    /// Only raise: a value the recommendation would lower stays as it is (the reaction to
    /// an OOM kill raises memory at once and leaves decreases to the stepped applier).
    pub raises_only: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            cluster: "default".into(),
            min_confidence: Confidence::Medium,
            max_step_down: 0.25,
            max_pods: 50,
            memory_limit_decrease_allowed: true,
            raises_only: false,
        }
    }
}

/// A running pod as the planner needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion`, sent with the resize so a concurrent change is a conflict.
    pub resource_version: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// The workload owning it, `(kind, name)`, resolved through its ReplicaSet or Job.
    pub workload: Option<(String, String)>,
    /// `status.phase`.
    pub phase: String,
    /// `rightsizer.io/*` annotations of the pod (copied from its template).
    pub annotations: BTreeMap<String, String>,
    /// Labels, to match PodDisruptionBudgets.
    pub labels: BTreeMap<String, String>,
    /// A resize already pending or in progress, e.g. `Infeasible: Node didn't have enough
    /// capacity`.
    pub pending_resize: Option<String>,
    /// The regular containers.
    pub containers: Vec<PodContainer>,
    /// Init containers' resources: they count for the QoS class but are never resized.
    pub init_containers: Vec<Resources>,
    /// Restarts of each container so far (`status.containerStatuses[].restartCount`): the
    /// applier's health check compares them after a step.
    pub restarts: BTreeMap<String, i32>,
}

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodContainer {
    /// Name.
    pub name: String,
    /// Requests and limits in the pod's spec.
    pub resources: Resources,
    /// `resizePolicy` says the container restarts when its CPU is resized.
    pub restarts_on_cpu: bool,
    /// `resizePolicy` says the container restarts when its memory is resized.
    pub restarts_on_memory: bool,
}

/// A node's capacity for requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeView {
    /// `status.allocatable` CPU, millicores.
    pub allocatable_cpu_millicores: i64,
    /// `status.allocatable` memory, bytes.
    pub allocatable_memory_bytes: i64,
}

/// A LimitRange's `type: Container` bounds (the tightest of the namespace's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContainerLimits {
    /// `min.cpu`, millicores.
    pub min_cpu: Option<i64>,
    /// `max.cpu`, millicores.
    pub max_cpu: Option<i64>,
    /// `min.memory`, bytes.
    pub min_memory: Option<i64>,
    /// `max.memory`, bytes.
    pub max_memory: Option<i64>,
    /// `maxLimitRequestRatio.cpu`.
    pub max_cpu_ratio: Option<f64>,
    /// `maxLimitRequestRatio.memory`.
    pub max_memory_ratio: Option<f64>,
}

/// One ResourceQuota bound: `hard` and `used` of one of `requests.cpu`, `limits.cpu`,
/// `requests.memory`, `limits.memory` (millicores or bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaBound {
    /// The quota's name.
    pub quota: String,
    /// Which total: `requests.cpu`, `limits.cpu`, `requests.memory` or `limits.memory`.
    pub resource: String,
    /// The bound.
    pub hard: i64,
    /// What the namespace uses now.
    pub used: i64,
}

/// A PodDisruptionBudget as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbView {
    /// Name.
    pub name: String,
    /// `spec.selector.matchLabels` (a PDB with expressions matches nothing here: refusing is
    /// the safe side).
    pub match_labels: BTreeMap<String, String>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
}

/// Everything read from the API for one plan.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Running pods in scope.
    pub pods: Vec<PodView>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeView>,
    /// Requests of every pod on each node, `(cpu millicores, memory bytes)`.
    pub node_requests: BTreeMap<String, (i64, i64)>,
    /// LimitRange container bounds per namespace.
    pub limit_ranges: BTreeMap<String, ContainerLimits>,
    /// ResourceQuota bounds per namespace.
    pub quotas: BTreeMap<String, Vec<QuotaBound>>,
    /// PodDisruptionBudgets per namespace.
    pub pdbs: BTreeMap<String, Vec<PdbView>>,
    /// `rightsizer.io/*` annotations of each owning workload's metadata, by
    /// `(namespace, kind, name)`.
    pub workload_annotations: BTreeMap<(String, String, String), BTreeMap<String, String>>,
}

/// What happens to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Resized to `target`.
    Resize,
    /// Left alone: nothing to do, or not ours to do (opted out, not confident enough, …).
    Skip,
    /// A change is wanted but a safety rule forbids it.
    Refuse,
}

/// One container's line of the plan (and, after a real run, of the outcome).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlannedResize {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// The owning workload, `Kind/name`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Requests and limits now (units as `recommend -o json`).
    pub current: Resources,
    /// What this run sets: a step towards the recommendation, or `current` when nothing is sent.
    pub target: Resources,
    /// The stored recommendation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<Resources>,
    /// resize, skip or refuse.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// After a real run: what the API server and the kubelet made of it
    /// (`resized`, `in-progress`, `deferred: …`, `infeasible: …`, `failed: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// The plan for `state` from `recs` under `opts`, pods in namespace and name order.
pub fn plan(
    state: &ClusterState,
    recs: &[Recommendation],
    opts: &PlanOptions,
) -> Vec<PlannedResize> {
    let by_key: BTreeMap<&ContainerKey, &Recommendation> =
        recs.iter().map(|r| (&r.key, r)).collect();
    let mut pods: Vec<&PodView> = state.pods.iter().collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out = Vec::new();
    let mut resized_pods = 0;
    for pod in pods {
        let mut lines = pod_plan(pod, state, &by_key, opts);
        if lines.iter().any(|l| l.decision == Decision::Resize) {
            if let Err(reason) = pod_checks(pod, &lines, state) {
                refuse_all(&mut lines, &reason);
            } else if resized_pods >= opts.max_pods {
                for l in lines.iter_mut().filter(|l| l.decision == Decision::Resize) {
                    l.decision = Decision::Skip;
                    l.target = l.current;
                    l.reason = format!("over the limit of {} pods per run", opts.max_pods);
                }
            } else {
                resized_pods += 1;
            }
        }
        out.extend(lines);
    }
    out
}

/// Each container's decision on its own: eligibility and the step.
fn pod_plan(
    pod: &PodView,
    state: &ClusterState,
    recs: &BTreeMap<&ContainerKey, &Recommendation>,
    opts: &PlanOptions,
) -> Vec<PlannedResize> {
    let workload = pod.workload.as_ref().map(|(k, n)| format!("{k}/{n}"));
    pod.containers
        .iter()
        .map(|c| {
            let rec = pod.workload.as_ref().and_then(|(kind, name)| {
                recs.get(&ContainerKey {
                    cluster: opts.cluster.clone(),
                    namespace: pod.namespace.clone(),
                    kind: kind.clone(),
                    workload: name.clone(),
                    container: c.name.clone(),
                })
            });
            let mut line = PlannedResize {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                container: c.name.clone(),
                workload: workload.clone(),
                current: c.resources,
                target: c.resources,
                recommended: rec.map(|r| r.recommended),
                decision: Decision::Skip,
                reason: String::new(),
                outcome: None,
            };
            let workload_annotations = pod.workload.as_ref().and_then(|(kind, name)| {
                state
                    .workload_annotations
                    .get(&(pod.namespace.clone(), kind.clone(), name.clone()))
            });
            match container_step(pod, c, rec.copied(), workload_annotations, opts) {
                Ok((target, reason)) => {
                    line.target = target;
                    line.decision = Decision::Resize;
                    line.reason = reason;
                }
                Err((decision, reason)) => {
                    line.decision = decision;
                    line.reason = reason;
                }
            }
            line
        })
        .collect()
}

type Refusal = (Decision, String);

fn skip(reason: impl Into<String>) -> Refusal {
    (Decision::Skip, reason.into())
}

/// The target of one container, or why it has none.
fn container_step(
    pod: &PodView,
    c: &PodContainer,
    rec: Option<&Recommendation>,
    workload_annotations: Option<&BTreeMap<String, String>>,
    opts: &PlanOptions,
) -> Result<(Resources, String), Refusal> {
    if pod.workload.is_none() {
        return Err(skip("not owned by a workload rightsizer recommends for"));
    }
    let Some(rec) = rec else {
        return Err(skip("no stored recommendation for this container"));
    };
    if let Some(why) =
        opted_out(&pod.annotations).or_else(|| workload_annotations.and_then(opted_out))
    {
        return Err(skip(why));
    }
    if rec.status != Status::Ok {
        return Err(skip(format!(
            "recommendation status is {}",
            rec.status.as_str()
        )));
    }
    if rec.confidence < opts.min_confidence {
        return Err(skip(format!(
            "confidence {} is below apply.min_confidence {}",
            rec.confidence.as_str(),
            opts.min_confidence.as_str()
        )));
    }
    if pod.phase != "Running" {
        return Err(skip(format!("pod is {}, not Running", pod.phase)));
    }
    if let Some(pending) = &pod.pending_resize {
        return Err(skip(format!("a resize is already pending: {pending}")));
    }
    stepped_target(c, &rec.recommended, opts)
}

/// `c`'s values one step towards `want` under `opts`, and why; a skip when nothing moves.
fn stepped_target(
    c: &PodContainer,
    want: &Resources,
    opts: &PlanOptions,
) -> Result<(Resources, String), Refusal> {
    let cur = c.resources;
    let mut stepped = Vec::new();
    let mut step = |current, wanted, what| step(current, wanted, opts, &mut stepped, what);
    let mut target = Resources {
        cpu_request_millicores: step(
            cur.cpu_request_millicores,
            want.cpu_request_millicores,
            "CPU request",
        ),
        cpu_limit_millicores: step(
            cur.cpu_limit_millicores,
            want.cpu_limit_millicores,
            "CPU limit",
        ),
        memory_request_bytes: step(
            cur.memory_request_bytes,
            want.memory_request_bytes,
            "memory request",
        ),
        memory_limit_bytes: step(
            cur.memory_limit_bytes,
            want.memory_limit_bytes,
            "memory limit",
        ),
    };
    let mut notes = Vec::new();
    if !stepped.is_empty() {
        notes.push(format!(
            "lowered by at most {:.0}% this run; runs still to go: {}",
            opts.max_step_down * 100.0,
            stepped.join(", ")
        ));
    }
    let lowers_memory_limit = matches!(
        (cur.memory_limit_bytes, target.memory_limit_bytes),
        (Some(c), Some(t)) if t < c
    );
    if lowers_memory_limit && !opts.memory_limit_decrease_allowed && !c.restarts_on_memory {
        // Before 1.34 the API server refuses it; the request goes down with the limit or
        // not at all (request == limit is our guidance), so memory waits for the template.
        target.memory_request_bytes = cur.memory_request_bytes;
        target.memory_limit_bytes = cur.memory_limit_bytes;
        notes.push("memory kept: this API server does not lower a memory limit in place (before Kubernetes 1.34)".into());
    }
    if let (Some(req), Some(lim)) = (target.memory_request_bytes, target.memory_limit_bytes) {
        if req > lim {
            target.memory_request_bytes = Some(lim);
        }
    }
    if let (Some(req), Some(lim)) = (target.cpu_request_millicores, target.cpu_limit_millicores) {
        if req > lim {
            target.cpu_limit_millicores = Some(req);
        }
    }
    if target == cur {
        let why = if opts.raises_only && notes.is_empty() {
            "nothing to raise (decreases are left to the applier's steps)".to_string()
        } else if notes.is_empty() {
            "already at the recommendation".to_string()
        } else {
            notes.join("; ")
        };
        return Err(skip(why));
    }
    if notes.is_empty() {
        notes.push("to the recommendation".into());
    }
    Ok((target, notes.join("; ")))
}

/// `current` moved towards `wanted`: at once upwards, by at most `max_step_down` downwards.
/// An unset value is set at once (it can only be a raise of a guarantee).
fn step(
    current: Option<i64>,
    wanted: Option<i64>,
    opts: &PlanOptions,
    notes: &mut Vec<String>,
    what: &str,
) -> Option<i64> {
    match (current, wanted) {
        (_, None) => current,
        (None, Some(w)) => Some(w),
        (Some(c), Some(w)) if w >= c => Some(w),
        (Some(c), Some(_)) if opts.raises_only => Some(c),
        (Some(c), Some(w)) => {
            let floor = (c as f64 * (1.0 - opts.max_step_down.clamp(0.0, 1.0))).ceil() as i64;
            if w < floor {
                notes.push(format!(
                    "{what} {}",
                    steps_left(floor, w, opts.max_step_down)
                ));
                Some(floor)
            } else {
                Some(w)
            }
        }
    }
}

fn steps_left(mut from: i64, to: i64, share: f64) -> u32 {
    let mut n = 0;
    while from > to && n < 100 && share > 0.0 {
        from = (from as f64 * (1.0 - share)).ceil() as i64;
        n += 1;
    }
    n
}

/// Why annotations opt a pod or workload out, if they do.
fn opted_out(annotations: &BTreeMap<String, String>) -> Option<String> {
    let is = |k: &str, v: &str| {
        annotations
            .get(k)
            .is_some_and(|a| a.eq_ignore_ascii_case(v))
    };
    if is("rightsizer.io/ignore", "true") {
        Some("opted out: rightsizer.io/ignore".into())
    } else if is("rightsizer.io/apply", "false") {
        Some("opted out: rightsizer.io/apply: \"false\"".into())
    } else {
        None
    }
}

/// The checks on the pod as a whole once its containers' targets are known.
fn pod_checks(pod: &PodView, lines: &[PlannedResize], state: &ClusterState) -> Result<(), String> {
    let after: Vec<Resources> = pod
        .containers
        .iter()
        .map(|c| {
            lines
                .iter()
                .find(|l| l.container == c.name && l.decision == Decision::Resize)
                .map_or(c.resources, |l| l.target)
        })
        .collect();
    let before: Vec<Resources> = pod.containers.iter().map(|c| c.resources).collect();
    let (q_before, q_after) = (
        qos_class(&before, &pod.init_containers),
        qos_class(&after, &pod.init_containers),
    );
    if q_before != q_after {
        return Err(format!(
            "would change the pod's QoS class from {q_before} to {q_after}, which a resize may not; change the workload's template (gitops) instead"
        ));
    }
    disruption_check(pod, &after, state)?;
    let delta = Totals::of(&after).minus(&Totals::of(&before));
    node_check(pod, &delta, state)?;
    if let Some(lr) = state.limit_ranges.get(&pod.namespace) {
        for (c, a) in pod.containers.iter().zip(&after) {
            limit_range_check(lr, a).map_err(|e| format!("container {}: {e}", c.name))?;
        }
    }
    quota_check(pod, &delta, state)
}

/// Sums of a pod's requests and limits, millicores and bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    cpu_requests: i64,
    memory_requests: i64,
    cpu_limits: i64,
    memory_limits: i64,
}

impl Totals {
    fn of(rs: &[Resources]) -> Totals {
        rs.iter().fold(Totals::default(), |t, r| Totals {
            cpu_requests: t.cpu_requests + r.cpu_request_millicores.unwrap_or(0),
            memory_requests: t.memory_requests + r.memory_request_bytes.unwrap_or(0),
            cpu_limits: t.cpu_limits + r.cpu_limit_millicores.unwrap_or(0),
            memory_limits: t.memory_limits + r.memory_limit_bytes.unwrap_or(0),
        })
    }

    fn minus(&self, o: &Totals) -> Totals {
        Totals {
            cpu_requests: self.cpu_requests - o.cpu_requests,
            memory_requests: self.memory_requests - o.memory_requests,
            cpu_limits: self.cpu_limits - o.cpu_limits,
            memory_limits: self.memory_limits - o.memory_limits,
        }
    }
}

/// A resize that restarts a container (`resizePolicy: RestartContainer`) waits until the
/// pod's PodDisruptionBudget allows a disruption.
fn disruption_check(
    pod: &PodView,
    after: &[Resources],
    state: &ClusterState,
) -> Result<(), String> {
    let disruptive = pod.containers.iter().zip(after).any(|(c, a)| {
        let cpu = c.resources.cpu_request_millicores != a.cpu_request_millicores
            || c.resources.cpu_limit_millicores != a.cpu_limit_millicores;
        let memory = c.resources.memory_request_bytes != a.memory_request_bytes
            || c.resources.memory_limit_bytes != a.memory_limit_bytes;
        (cpu && c.restarts_on_cpu) || (memory && c.restarts_on_memory)
    });
    if !disruptive {
        return Ok(());
    }
    let pdbs = state
        .pdbs
        .get(&pod.namespace)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let covering = pdbs.iter().find(|p| {
        !p.match_labels.is_empty()
            && p.match_labels
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    });
    match covering {
        Some(p) if p.disruptions_allowed < 1 => Err(format!(
            "the resize restarts a container (resizePolicy RestartContainer) and PodDisruptionBudget {} allows no disruption now",
            p.name
        )),
        _ => Ok(()),
    }
}

/// What the pod adds to its node's requests still fits the node's allocatable.
fn node_check(pod: &PodView, delta: &Totals, state: &ClusterState) -> Result<(), String> {
    let Some(node) = &pod.node else {
        return Ok(());
    };
    let (Some(n), Some(&(used_cpu, used_mem))) =
        (state.nodes.get(node), state.node_requests.get(node))
    else {
        return Ok(());
    };
    if delta.cpu_requests > 0 && used_cpu + delta.cpu_requests > n.allocatable_cpu_millicores {
        return Err(format!(
            "node {node} cannot fit it: CPU requests would be {}m of {}m allocatable",
            used_cpu + delta.cpu_requests,
            n.allocatable_cpu_millicores
        ));
    }
    if delta.memory_requests > 0 && used_mem + delta.memory_requests > n.allocatable_memory_bytes {
        return Err(format!(
            "node {node} cannot fit it: memory requests would be {} of {} bytes allocatable",
            used_mem + delta.memory_requests,
            n.allocatable_memory_bytes
        ));
    }
    Ok(())
}

/// What the pod adds to its namespace's totals stays within every ResourceQuota.
fn quota_check(pod: &PodView, delta: &Totals, state: &ClusterState) -> Result<(), String> {
    for q in state
        .quotas
        .get(&pod.namespace)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let added = match q.resource.as_str() {
            "requests.cpu" | "cpu" => delta.cpu_requests,
            "requests.memory" | "memory" => delta.memory_requests,
            "limits.cpu" => delta.cpu_limits,
            "limits.memory" => delta.memory_limits,
            _ => 0,
        };
        if added > 0 && q.used + added > q.hard {
            return Err(format!(
                "ResourceQuota {} would be exceeded: {} used {} + {} > hard {}",
                q.quota, q.resource, q.used, added, q.hard
            ));
        }
    }
    Ok(())
}

fn limit_range_check(lr: &ContainerLimits, r: &Resources) -> Result<(), String> {
    let values = [
        (
            "CPU request",
            r.cpu_request_millicores,
            lr.min_cpu,
            lr.max_cpu,
        ),
        ("CPU limit", r.cpu_limit_millicores, lr.min_cpu, lr.max_cpu),
        (
            "memory request",
            r.memory_request_bytes,
            lr.min_memory,
            lr.max_memory,
        ),
        (
            "memory limit",
            r.memory_limit_bytes,
            lr.min_memory,
            lr.max_memory,
        ),
    ];
    for (what, value, min, max) in values {
        let Some(v) = value else { continue };
        if min.is_some_and(|m| v < m) {
            return Err(format!(
                "{what} {v} is below the LimitRange minimum {}",
                min.unwrap_or(0)
            ));
        }
        if max.is_some_and(|m| v > m) {
            return Err(format!(
                "{what} {v} is above the LimitRange maximum {}",
                max.unwrap_or(0)
            ));
        }
    }
    let ratios = [
        (
            "CPU",
            r.cpu_limit_millicores,
            r.cpu_request_millicores,
            lr.max_cpu_ratio,
        ),
        (
            "memory",
            r.memory_limit_bytes,
            r.memory_request_bytes,
            lr.max_memory_ratio,
        ),
    ];
    for (what, limit, request, max) in ratios {
        if let (Some(l), Some(q), Some(max)) = (limit, request, max) {
            if q > 0 && l as f64 / q as f64 > max {
                return Err(format!(
                    "{what} limit/request ratio {:.2} is above the LimitRange maxLimitRequestRatio {max}",
                    l as f64 / q as f64
                ));
            }
        }
    }
    Ok(())
}

/// The pod's QoS class by the rules of the Kubernetes documentation ("Pod Quality of Service
/// Classes"): Guaranteed when every container has CPU and memory limits with requests equal to
/// them (a request left unset defaults to its limit), BestEffort when no container has any
/// CPU or memory request or limit, Burstable otherwise.
pub fn qos_class(containers: &[Resources], init_containers: &[Resources]) -> &'static str {
    let all: Vec<&Resources> = containers.iter().chain(init_containers).collect();
    let any_set = all.iter().any(|r| {
        r.cpu_request_millicores.is_some()
            || r.cpu_limit_millicores.is_some()
            || r.memory_request_bytes.is_some()
            || r.memory_limit_bytes.is_some()
    });
    if !any_set {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|r| {
        let equal = |req: Option<i64>, lim: Option<i64>| {
            lim.is_some() && req.is_none_or(|q| Some(q) == lim)
        };
        equal(r.cpu_request_millicores, r.cpu_limit_millicores)
            && equal(r.memory_request_bytes, r.memory_limit_bytes)
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn refuse_all(lines: &mut [PlannedResize], reason: &str) {
    for l in lines.iter_mut().filter(|l| l.decision == Decision::Resize) {
        l.decision = Decision::Refuse;
        l.target = l.current;
        l.reason = reason.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::testing::{proposal, resources};

    const MI: i64 = 1 << 20;

    fn opts() -> PlanOptions {
        PlanOptions {
            cluster: "prod".into(),
            ..PlanOptions::default()
        }
    }

    /// A running pod of `shop/Deployment/<workload>` on node `n1` with container `app` at
    /// `current`.
    fn pod(workload: &str, current: Resources) -> PodView {
        PodView {
            namespace: "shop".into(),
            name: format!("{workload}-abc12"),
            resource_version: "7".into(),
            node: Some("n1".into()),
            workload: Some(("Deployment".into(), workload.into())),
            phase: "Running".into(),
            labels: [("app".to_string(), workload.to_string())].into(),
            containers: vec![PodContainer {
                name: "app".into(),
                resources: current,
                ..PodContainer::default()
            }],
            ..PodView::default()
        }
    }

    fn state(pods: Vec<PodView>) -> ClusterState {
        ClusterState {
            pods,
            nodes: [(
                "n1".to_string(),
                NodeView {
                    allocatable_cpu_millicores: 4000,
                    allocatable_memory_bytes: 8192 * MI,
                },
            )]
            .into(),
            node_requests: [("n1".to_string(), (2000, 4096 * MI))].into(),
            ..ClusterState::default()
        }
    }

    fn one(state: &ClusterState, recs: &[Recommendation], opts: &PlanOptions) -> PlannedResize {
        let mut lines = plan(state, recs, opts);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.remove(0)
    }

    #[test]
    fn decreases_step_by_at_most_the_share_and_never_below_the_recommendation() {
        // 1000m/1Gi now, 250m/512Mi recommended: 25% a run is 750m, then 563m, 423m, 318m, 250m.
        let s = state(vec![pod("web", resources(1000, 1024 * MI))]);
        let rec = proposal("web", Severity::Info, 10.0);
        let l = one(&s, std::slice::from_ref(&rec), &opts());
        assert_eq!(l.decision, Decision::Resize);
        assert_eq!(l.target.cpu_request_millicores, Some(750));
        assert_eq!(
            l.target.cpu_limit_millicores,
            Some(3000),
            "4000m limit lowered 25%"
        );
        assert_eq!(l.target.memory_request_bytes, Some(768 * MI));
        assert_eq!(l.target.memory_limit_bytes, Some(768 * MI));
        assert_eq!(
            l.reason,
            "lowered by at most 25% this run; runs still to go: CPU request 4, CPU limit 4, \
             memory request 2, memory limit 2"
        );
        // The last step lands on the recommendation, not below it.
        let s = state(vec![pod("web", resources(300, 600 * MI))]);
        let l = one(&s, std::slice::from_ref(&rec), &opts());
        assert_eq!(l.target, rec.recommended);
        assert_eq!(l.reason, "to the recommendation");
    }

    #[test]
    fn raises_at_once() {
        let s = state(vec![pod("web", resources(100, 256 * MI))]);
        let l = one(&s, &[proposal("web", Severity::Critical, -5.0)], &opts());
        assert_eq!(l.decision, Decision::Resize);
        assert_eq!(l.target, resources(250, 512 * MI));
    }

    #[test]
    fn raises_only_leaves_what_would_go_down() {
        // 1000m/256Mi now, 250m/512Mi recommended: memory up at once, CPU as it is.
        let s = state(vec![pod("web", resources(1000, 256 * MI))]);
        let raises = PlanOptions {
            raises_only: true,
            ..opts()
        };
        let rec = proposal("web", Severity::Critical, -5.0);
        let l = one(&s, std::slice::from_ref(&rec), &raises);
        assert_eq!(l.decision, Decision::Resize);
        assert_eq!(
            l.target,
            Resources {
                memory_request_bytes: Some(512 * MI),
                memory_limit_bytes: Some(512 * MI),
                ..resources(1000, 256 * MI)
            }
        );
        assert_eq!(l.reason, "to the recommendation");
        // Nothing to raise: skipped.
        let s = state(vec![pod("web", resources(1000, 1024 * MI))]);
        let l = one(&s, &[rec], &raises);
        assert_eq!(l.decision, Decision::Skip);
        assert_eq!(
            l.reason,
            "nothing to raise (decreases are left to the applier's steps)"
        );
    }

    #[test]
    fn a_qos_change_is_refused_before_anything_is_sent() {
        // Guaranteed now (CPU request == limit); our CPU limit of 4 × the request would make
        // the pod Burstable, which the API server does not allow a resize to do.
        let guaranteed = Resources {
            cpu_request_millicores: Some(1000),
            cpu_limit_millicores: Some(1000),
            memory_request_bytes: Some(1024 * MI),
            memory_limit_bytes: Some(1024 * MI),
        };
        let s = state(vec![pod("web", guaranteed)]);
        let l = one(&s, &[proposal("web", Severity::Info, 10.0)], &opts());
        assert_eq!(l.decision, Decision::Refuse);
        assert_eq!(l.target, guaranteed, "nothing to send");
        assert!(
            l.reason.contains("QoS class from Guaranteed to Burstable"),
            "{}",
            l.reason
        );
        assert_eq!(qos_class(&[Resources::default()], &[]), "BestEffort");
        assert_eq!(
            qos_class(&[guaranteed], &[resources(100, MI)]),
            "Burstable",
            "init containers count"
        );
    }

    #[test]
    fn memory_limits_stay_before_kubernetes_1_34_unless_the_container_restarts_anyway() {
        let s = state(vec![pod("web", resources(1000, 1024 * MI))]);
        let old = PlanOptions {
            memory_limit_decrease_allowed: false,
            ..opts()
        };
        let rec = proposal("web", Severity::Info, 10.0);
        let l = one(&s, std::slice::from_ref(&rec), &old);
        assert_eq!(l.decision, Decision::Resize, "CPU still goes down");
        assert_eq!(l.target.memory_limit_bytes, Some(1024 * MI));
        assert_eq!(l.target.memory_request_bytes, Some(1024 * MI));
        assert!(l.reason.contains("before Kubernetes 1.34"), "{}", l.reason);
        let mut restarting = pod("web", resources(1000, 1024 * MI));
        restarting.containers[0].restarts_on_memory = true;
        let l = one(&state(vec![restarting]), &[rec], &old);
        assert_eq!(l.target.memory_limit_bytes, Some(768 * MI));
    }

    #[test]
    fn a_restarting_resize_waits_for_the_disruption_budget() {
        let mut p = pod("web", resources(1000, 1024 * MI));
        p.containers[0].restarts_on_memory = true;
        let mut s = state(vec![p]);
        s.pdbs.insert(
            "shop".into(),
            vec![PdbView {
                name: "web".into(),
                match_labels: [("app".to_string(), "web".to_string())].into(),
                disruptions_allowed: 0,
            }],
        );
        let rec = proposal("web", Severity::Info, 10.0);
        let l = one(&s, std::slice::from_ref(&rec), &opts());
        assert_eq!(l.decision, Decision::Refuse);
        assert!(
            l.reason
                .contains("PodDisruptionBudget web allows no disruption"),
            "{}",
            l.reason
        );
        s.pdbs.get_mut("shop").unwrap()[0].disruptions_allowed = 1;
        assert_eq!(one(&s, &[rec], &opts()).decision, Decision::Resize);
    }

    #[test]
    fn node_headroom_limit_ranges_and_quotas_are_checked() {
        let rec = proposal("web", Severity::Critical, -5.0); // 100m → 250m, 256Mi → 512Mi
        let small = resources(100, 256 * MI);
        let mut s = state(vec![pod("web", small)]);
        s.node_requests.insert("n1".into(), (3900, 1024 * MI));
        let l = one(&s, std::slice::from_ref(&rec), &opts());
        assert_eq!(l.decision, Decision::Refuse);
        assert!(
            l.reason
                .contains("node n1 cannot fit it: CPU requests would be 4050m of 4000m"),
            "{}",
            l.reason
        );

        let mut s = state(vec![pod("web", small)]);
        s.limit_ranges.insert(
            "shop".into(),
            ContainerLimits {
                max_memory: Some(500 * MI),
                ..ContainerLimits::default()
            },
        );
        let l = one(&s, std::slice::from_ref(&rec), &opts());
        assert_eq!(l.decision, Decision::Refuse);
        assert!(
            l.reason.contains("above the LimitRange maximum"),
            "{}",
            l.reason
        );

        let mut s = state(vec![pod("web", small)]);
        s.quotas.insert(
            "shop".into(),
            vec![QuotaBound {
                quota: "team".into(),
                resource: "limits.cpu".into(),
                hard: 10_000,
                used: 9_500,
            }],
        );
        let l = one(&s, &[rec], &opts());
        assert_eq!(l.decision, Decision::Refuse);
        assert!(
            l.reason
                .contains("ResourceQuota team would be exceeded: limits.cpu"),
            "{}",
            l.reason
        );
    }

    #[test]
    fn opted_out_unconfident_pending_and_excess_pods_are_skipped_with_a_reason() {
        let rec = proposal("web", Severity::Info, 10.0);
        let cur = resources(1000, 1024 * MI);
        let reason = |p: PodView, recs: &[Recommendation], o: &PlanOptions| {
            let l = one(&state(vec![p]), recs, o);
            assert_eq!(l.decision, Decision::Skip);
            assert_eq!(l.target, l.current);
            l.reason
        };
        let mut p = pod("web", cur);
        p.annotations
            .insert("rightsizer.io/apply".into(), "false".into());
        assert!(reason(p, std::slice::from_ref(&rec), &opts()).contains("rightsizer.io/apply"));
        let mut s = state(vec![pod("web", cur)]);
        s.workload_annotations.insert(
            ("shop".into(), "Deployment".into(), "web".into()),
            [("rightsizer.io/ignore".to_string(), "true".to_string())].into(),
        );
        assert!(one(&s, std::slice::from_ref(&rec), &opts())
            .reason
            .contains("rightsizer.io/ignore"));
        let mut low = rec.clone();
        low.confidence = Confidence::Low;
        assert!(
            reason(pod("web", cur), &[low], &opts()).contains("below apply.min_confidence medium")
        );
        let mut p = pod("web", cur);
        p.pending_resize = Some("Infeasible: Node didn't have enough capacity".into());
        assert!(
            reason(p, std::slice::from_ref(&rec), &opts()).contains("already pending: Infeasible")
        );
        let mut p = pod("web", cur);
        p.workload = None;
        assert!(reason(p, std::slice::from_ref(&rec), &opts()).contains("not owned by a workload"));

        let mut second = pod("web", cur);
        second.name = "web-zzz99".into();
        let one_pod = PlanOptions {
            max_pods: 1,
            ..opts()
        };
        let lines = plan(&state(vec![second, pod("web", cur)]), &[rec], &one_pod);
        assert_eq!(lines[0].decision, Decision::Resize);
        assert_eq!(lines[1].decision, Decision::Skip);
        assert_eq!(lines[1].reason, "over the limit of 1 pods per run");
    }
}
