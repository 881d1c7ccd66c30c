//! The PromQL the collector sends. Few, aggregated queries per chunk of hours,
//! grouped `by (namespace, pod, container)`: never one query per pod, never a pod regex.

use crate::prometheus::promql::{duration, selector, Op};

/// cAdvisor series of real containers: the pod cgroup (no `container` label) and the
/// pause container (`POD`) are excluded.
fn cadvisor(metric: &str) -> String {
    selector(
        metric,
        &[("container", Op::Ne, ""), ("container", Op::Ne, "POD")],
    )
}

/// CPU cores used per pod container: the 5-minute rate, as dashboards show it. `max`
/// rather than `sum` so the brief overlap of old and new series around a restart (and
/// duplicate scrapes) is not counted twice.
pub fn cpu_usage() -> String {
    format!(
        "max by (namespace, pod, container) (rate({}[5m]))",
        cadvisor("container_cpu_usage_seconds_total")
    )
}

/// Memory working set per pod container: the peak within each step, so a spike between
/// two evaluation points is not missed.
pub fn memory_peak(step_secs: i64) -> String {
    format!(
        "max by (namespace, pod, container) (max_over_time({}[{}]))",
        cadvisor("container_memory_working_set_bytes"),
        duration(step_secs)
    )
}

/// Owner edges alive at any time in the last `span_secs`.
pub fn owners(span_secs: i64) -> String {
    format!(
        "max by (namespace, pod, replicaset, job_name, owner_kind, owner_name) \
         (max_over_time({{__name__=~\"kube_pod_owner|kube_replicaset_owner|kube_job_owner\"}}[{}]))",
        duration(span_secs)
    )
}

/// Container state over time: requests, limits, `info` (to know a container exists even
/// when it sets neither: BestEffort), restarts with the last termination reason, OOM events
/// and CFS throttling counters. Counters are turned into per-hour increases by the
/// collector, so a coarse step is enough.
pub fn container_state() -> String {
    "max by (__name__, namespace, pod, container, resource) \
     ({__name__=~\"kube_pod_container_resource_requests|kube_pod_container_resource_limits|kube_pod_container_info|\
     kube_pod_container_status_restarts_total|kube_pod_container_status_last_terminated_reason|\
     container_oom_events_total|container_cpu_cfs_periods_total|container_cpu_cfs_throttled_periods_total\",\
     resource=~\"cpu|memory|\",reason=~\"OOMKilled|\"})"
        .to_string()
}

/// Workload facts at an instant: replicas, HPAs (targets and metrics) and PDB status.
/// Raw selectors keep `__name__`, which tells the series apart.
pub fn workload_facts() -> String {
    "{__name__=~\"kube_horizontalpodautoscaler_info|kube_horizontalpodautoscaler_spec_target_metric|\
     kube_horizontalpodautoscaler_spec_min_replicas|kube_horizontalpodautoscaler_spec_max_replicas|\
     kube_poddisruptionbudget_status_pod_disruptions_allowed|kube_poddisruptionbudget_status_expected_pods|\
     kube_deployment_spec_replicas|kube_statefulset_replicas\"}"
        .to_string()
}
