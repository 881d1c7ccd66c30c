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
/// The spec series among them: a pod container's requests, limits and existence.
pub const SPEC_METRICS: &str =
    "kube_pod_container_resource_requests|kube_pod_container_resource_limits|kube_pod_container_info";
/// The counters among them, each summed per hour under a `signal` label, and the series
/// telling an OOM kill from another restart.
pub const SIGNAL_COUNTERS: [(&str, &str); 4] = [
    ("restarts", "kube_pod_container_status_restarts_total"),
    ("oom_events", "container_oom_events_total"),
    ("cfs_periods", "container_cpu_cfs_periods_total"),
    ("cfs_throttled", "container_cpu_cfs_throttled_periods_total"),
];
/// The `signal` of restarts whose container's last termination was OOMKilled right then.
pub const OOM_RESTARTS: &str = "oom_restarts";
/// kube-state-metrics' last termination reason.
pub const REASON_METRIC: &str = "kube_pod_container_status_last_terminated_reason";

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

/// CPU cores used per pod container: the 5-minute rate, as dashboards show it. `max`
/// rather than `sum` so the brief overlap of old and new series around a restart (and
/// duplicate scrapes) is not counted twice.
pub fn cpu_usage(scope: &Scope) -> String {
    format!(
        "max by (namespace, pod, container) (rate({}[5m]))",
        cadvisor(CPU_METRIC, scope)
    )
}

/// Memory working set per pod container: the peak within each step, so a spike between
/// two evaluation points is not missed.
pub fn memory_peak(step_secs: i64, scope: &Scope) -> String {
    format!(
        "max by (namespace, pod, container) (max_over_time({}[{}]))",
        cadvisor(MEMORY_METRIC, scope),
        duration(step_secs)
    )
}

/// Owner edges alive at any time in the last `span_secs`.
pub fn owners(span_secs: i64, scope: &Scope) -> String {
    format!(
        "max by (namespace, pod, replicaset, job_name, owner_kind, owner_name) \
         (max_over_time({{__name__=~\"kube_pod_owner|kube_replicaset_owner|kube_job_owner\"{}}}[{}]))",
        scope.matchers(),
        duration(span_secs)
    )
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

/// Container state over time ([`STATE_METRICS`]). Counters are turned into per-hour
/// increases by the collector, so a coarse step is enough.
pub fn container_state(scope: &Scope) -> String {
    format!(
        "max by (__name__, namespace, pod, container, resource) \
         ({{__name__=~\"{STATE_METRICS}\",resource=~\"{STATE_RESOURCES}\",reason=~\"{STATE_REASONS}\"{}}})",
        scope.matchers()
    )
}

/// A state selector (the same matchers as [`container_state`]) for `names` (a regex).
fn state_selector(names: &str, scope: &Scope) -> String {
    format!(
        "{{__name__=~\"{names}\",resource=~\"{STATE_RESOURCES}\",reason=~\"{STATE_REASONS}\"{}}}",
        scope.matchers()
    )
}

/// The spec series as [`container_state`] gives them at each 5-minute step, with their
/// metric name copied to a `metric` label (functions drop `__name__`).
fn specs_by_step(scope: &Scope) -> String {
    format!(
        "label_replace(max by (__name__, namespace, pod, container, resource) ({}), \"metric\", \"$1\", \"__name__\", \"(.+)\")",
        state_selector(SPEC_METRICS, scope)
    )
}

/// Per spec series, the last step of the state grid (`step_secs`) within `span_secs`
/// before the evaluation time at which it was present (evaluated at a step of that grid).
/// With [`spec_last_values`], this is all the chunk needs of the specs: the newest pod's
/// values and when it last reported, in two small instant answers instead of every step.
pub fn spec_last_times(span_secs: i64, step_secs: i64, scope: &Scope) -> String {
    format!(
        "max_over_time(timestamp({})[{}:{}])",
        specs_by_step(scope),
        duration(span_secs),
        duration(step_secs)
    )
}

/// Per spec series, its value at that last step.
pub fn spec_last_values(span_secs: i64, step_secs: i64, scope: &Scope) -> String {
    format!(
        "last_over_time({}[{}:{}])",
        specs_by_step(scope),
        duration(span_secs),
        duration(step_secs)
    )
}

/// The increases of one counter between consecutive steps of the state grid at which it
/// is present (after `max by` pod container), a drop counting as a reset to the new value.
fn increases_by_step(metric: &str, step_secs: i64, scope: &Scope) -> String {
    let now = format!(
        "max by (namespace, pod, container) ({})",
        state_selector(metric, scope)
    );
    let before = format!(
        "max by (namespace, pod, container) ({} offset {})",
        state_selector(metric, scope),
        duration(step_secs)
    );
    format!("(({now} - {before}) >= 0 or ({now} < {before}))")
}

/// Per pod container and hour, the sums of the counters' increases (restarts, OOM events,
/// CFS periods and throttled periods, and restarts while the last termination reason was
/// OOMKilled), each under a `signal` label. Evaluated at the hour's last step of the state
/// grid, over the hour's steps (the 59-minute range holds exactly them); hours with nothing
/// are left out. Hourly, and only where something happened: not every step of every counter.
pub fn signal_sums(step_secs: i64, scope: &Scope) -> String {
    let hourly = |signal: &str, increases: String| {
        format!(
            "label_replace(sum_over_time({increases}[59m:{}]) > 0, \"signal\", \"{signal}\", \"\", \"\")",
            duration(step_secs)
        )
    };
    let mut parts: Vec<String> = SIGNAL_COUNTERS
        .iter()
        .map(|(signal, metric)| hourly(signal, increases_by_step(metric, step_secs, scope)))
        .collect();
    let oom_reason = format!(
        "(max by (namespace, pod, container) ({}) > 0)",
        state_selector(REASON_METRIC, scope)
    );
    parts.push(hourly(
        OOM_RESTARTS,
        format!(
            "({} and on (namespace, pod, container) {oom_reason})",
            increases_by_step(SIGNAL_COUNTERS[0].1, step_secs, scope)
        ),
    ));
    parts.join(" or ")
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
        assert_eq!(cpu_usage(&Scope::default()), "max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=\"\",container!=\"POD\"}[5m]))");
    }
}
