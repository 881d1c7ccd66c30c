//! The PromQL the collector sends. Few, aggregated queries per chunk of hours,
//! grouped `by (namespace, pod, container)`: never one query per pod, never a pod regex.

use crate::prometheus::promql::{duration, matcher, Op};
use crate::prometheus::remote_read::{MatchKind, Matcher};

/// The counter of CPU seconds per container (cAdvisor).
pub const CPU_METRIC: &str = "container_cpu_usage_seconds_total";
/// The memory working set per container (cAdvisor).
pub const MEMORY_METRIC: &str = "container_memory_working_set_bytes";
/// The container state series: requests, limits, `info` (to know a container exists even
/// when it sets neither: BestEffort), restarts with the last termination reason, OOM events
/// and CFS throttling counters.
pub const STATE_METRICS: &str = "kube_pod_container_resource_requests|kube_pod_container_resource_limits|kube_pod_container_info|\
kube_pod_container_status_restarts_total|kube_pod_container_status_last_terminated_reason|\
container_oom_events_total|container_cpu_cfs_periods_total|container_cpu_cfs_throttled_periods_total";
/// Of the state series, only these resources and termination reasons.
const STATE_RESOURCES: &str = "cpu|memory|";
const STATE_REASONS: &str = "OOMKilled|";

/// Which series a query covers: one cluster of a Prometheus that holds several (told apart
/// by a label, as with Thanos or Mimir), and, when a cluster's answers would be too big,
/// one group of its namespaces. The default covers everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `(label, value)` selecting the cluster.
    pub cluster: Option<(String, String)>,
    /// Only these namespaces; `None` for all.
    pub namespaces: Option<Vec<String>>,
}

impl Scope {
    /// The scope's matchers, each preceded by a comma, ready to append inside `{…}`.
    fn matchers(&self) -> String {
        let mut out = String::new();
        if let Some((label, value)) = &self.cluster {
            out.push(',');
            out.push_str(&matcher(label, Op::Eq, value));
        }
        if let Some(namespaces) = &self.namespaces {
            let alternatives: Vec<String> = namespaces.iter().map(|n| regex_escape(n)).collect();
            out.push(',');
            out.push_str(&matcher("namespace", Op::Re, &alternatives.join("|")));
        }
        out
    }

    /// The scope as remote-read matchers (the same selection as [`Scope::matchers`]).
    fn remote_matchers(&self) -> Vec<Matcher> {
        let mut out = Vec::new();
        if let Some((label, value)) = &self.cluster {
            out.push(Matcher::new(MatchKind::Eq, label, value));
        }
        if let Some(namespaces) = &self.namespaces {
            let alternatives: Vec<String> = namespaces.iter().map(|n| regex_escape(n)).collect();
            out.push(Matcher::new(
                MatchKind::Re,
                "namespace",
                &alternatives.join("|"),
            ));
        }
        out
    }

    /// The same scope narrowed to `namespaces`.
    pub fn with_namespaces(&self, namespaces: Vec<String>) -> Scope {
        Scope {
            cluster: self.cluster.clone(),
            namespaces: Some(namespaces),
        }
    }
}

/// Escapes RE2 metacharacters so a namespace matches only itself.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// cAdvisor series of real containers: the pod cgroup (no `container` label) and the
/// pause container (`POD`) are excluded.
fn cadvisor(metric: &str, scope: &Scope) -> String {
    format!(
        "{metric}{{{},{}{}}}",
        matcher("container", Op::Ne, ""),
        matcher("container", Op::Ne, "POD"),
        scope.matchers()
    )
}

/// CPU cores used per cAdvisor series: the 5-minute rate, as dashboards show it. The
/// collector takes the `max` per pod container (rather than the `sum`, so the brief overlap
/// of old and new series around a restart, and duplicate scrapes, are not counted twice)
/// itself: see [`super::raw::MaxBy`].
pub fn cpu_usage(scope: &Scope) -> String {
    format!("rate({}[5m])", cadvisor(CPU_METRIC, scope))
}

/// Memory working set per cAdvisor series: the peak within each step, so a spike between
/// two evaluation points is not missed (the collector takes the max per pod container).
pub fn memory_peak(step_secs: i64, scope: &Scope) -> String {
    format!(
        "max_over_time({}[{}])",
        cadvisor(MEMORY_METRIC, scope),
        duration(step_secs)
    )
}

/// The series that tell owners: pods', ReplicaSets' and Jobs'.
const OWNER_METRICS: &str = "kube_pod_owner|kube_replicaset_owner|kube_job_owner";
/// The labels an owner edge is told by (the `max by` of [`owners`]).
pub const OWNER_LABELS: [&str; 6] = [
    "namespace",
    "pod",
    "replicaset",
    "job_name",
    "owner_kind",
    "owner_name",
];

/// Owner edges alive at any time in the last `span_secs`.
pub fn owners(span_secs: i64, scope: &Scope) -> String {
    format!(
        "max by ({}) (max_over_time({{__name__=~\"{OWNER_METRICS}\"{}}}[{}]))",
        OWNER_LABELS.join(", "),
        scope.matchers(),
        duration(span_secs)
    )
}

/// What a remote read asks for in place of [`owners`]: the owner series, raw.
pub fn owner_selection(scope: &Scope) -> Vec<Matcher> {
    let mut out = vec![Matcher::new(MatchKind::Re, "__name__", OWNER_METRICS)];
    out.extend(scope.remote_matchers());
    out
}

/// Series per namespace alive in the last `span_secs`: the pod containers' memory and info
/// series, the two that grow with the cluster. The collector splits a chunk's queries by
/// namespace when the total is too big for one answer.
pub fn namespace_sizes(span_secs: i64, scope: &Scope) -> String {
    format!(
        "count by (namespace) (max_over_time({{__name__=~\"container_memory_working_set_bytes|kube_pod_container_info\",\
         container!=\"\",container!=\"POD\"{}}}[{}]))",
        scope.matchers(),
        duration(span_secs)
    )
}

/// The series [`namespace_sizes`] counts, as selectors for `/api/v1/series`: Prometheus
/// finds them in its index without reading a sample.
pub fn sized_series(scope: &Scope) -> [String; 2] {
    [
        cadvisor(MEMORY_METRIC, scope),
        cadvisor("kube_pod_container_info", scope),
    ]
}

/// Container state over time ([`STATE_METRICS`]), raw series (the collector takes the max
/// per metric, pod container and resource). Counters are turned into per-hour increases by
/// the collector, so a coarse step is enough.
pub fn container_state(scope: &Scope) -> String {
    format!(
        "{{__name__=~\"{STATE_METRICS}\",resource=~\"{STATE_RESOURCES}\",reason=~\"{STATE_REASONS}\"{}}}",
        scope.matchers()
    )
}

/// Of the state series, only those that tell OOM kills: restarts with the last termination
/// reason, and cAdvisor's OOM events. The look at the current hour asks for these alone.
pub fn oom_state(scope: &Scope) -> String {
    format!(
        "{{__name__=~\"kube_pod_container_status_restarts_total|kube_pod_container_status_last_terminated_reason|container_oom_events_total\",reason=~\"{STATE_REASONS}\"{}}}",
        scope.matchers()
    )
}

/// What a remote read asks for in place of [`cpu_usage`], [`memory_peak`] or
/// [`container_state`]: the same series, raw.
pub fn raw_selection(metric: RawMetric, scope: &Scope) -> Vec<Matcher> {
    let mut out = match metric {
        RawMetric::Cpu | RawMetric::Memory => vec![
            Matcher::new(
                MatchKind::Eq,
                "__name__",
                if metric == RawMetric::Cpu {
                    CPU_METRIC
                } else {
                    MEMORY_METRIC
                },
            ),
            Matcher::new(MatchKind::Neq, "container", ""),
            Matcher::new(MatchKind::Neq, "container", "POD"),
        ],
        RawMetric::State => vec![
            Matcher::new(MatchKind::Re, "__name__", STATE_METRICS),
            Matcher::new(MatchKind::Re, "resource", STATE_RESOURCES),
            Matcher::new(MatchKind::Re, "reason", STATE_REASONS),
        ],
    };
    out.extend(scope.remote_matchers());
    out
}

/// The three range selections, read raw over remote read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMetric {
    /// [`CPU_METRIC`].
    Cpu,
    /// [`MEMORY_METRIC`].
    Memory,
    /// [`STATE_METRICS`].
    State,
}

/// Workload facts at an instant: replicas, HPAs (targets and metrics) and PDB status.
/// Raw selectors keep `__name__`, which tells the series apart.
pub fn workload_facts(scope: &Scope) -> String {
    format!(
        "{{__name__=~\"kube_horizontalpodautoscaler_info|kube_horizontalpodautoscaler_spec_target_metric|\
         kube_horizontalpodautoscaler_spec_min_replicas|kube_horizontalpodautoscaler_spec_max_replicas|\
         kube_poddisruptionbudget_status_pod_disruptions_allowed|kube_poddisruptionbudget_status_expected_pods|\
         kube_deployment_spec_replicas|kube_statefulset_replicas\"{}}}",
        scope.matchers()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_add_escaped_matchers_to_every_selector() {
        let scope = Scope {
            cluster: Some(("cluster".into(), "eu\"1".into())),
            namespaces: Some(vec!["shop".into(), "a.b".into()]),
        };
        let q = cpu_usage(&scope);
        assert!(
            q.contains(r#"container!="POD",cluster="eu\"1",namespace=~"shop|a\\.b"}"#),
            "{q}"
        );
        assert!(workload_facts(&scope)
            .ends_with(r#"kube_statefulset_replicas",cluster="eu\"1",namespace=~"shop|a\\.b"}"#));
        assert_eq!(
            cpu_usage(&Scope::default()),
            "rate(container_cpu_usage_seconds_total{container!=\"\",container!=\"POD\"}[5m])"
        );
    }
}
