//! A synthetic Kubernetes cluster's metric history, as OpenMetrics text for
//! `promtool tsdb create-blocks-from openmetrics`, with the exact answers
//! Prometheus 2.42 will give for the collector's queries.
//!
//! The history is deterministic from a seed. Each metric family is written
//! in one pass over time (OpenMetrics wants a family's samples together;
//! within it, series are interleaved tick by tick), so memory depends on
//! the number of series, not on the number of days. The ground truth is
//! computed while writing, from the very values written.

mod cluster;
mod promql;
mod usage;
mod writer;

use std::io;

use serde::{Deserialize, Serialize};

/// What to generate. Samples fall at `start + k * scrape_interval_secs`
/// (plus a per-node offset) for every `k` with a timestamp below `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// Everything (names, ids, usage) follows from this seed.
    pub seed: u64,
    /// Unix seconds, hour-aligned: the first scrape.
    pub start: i64,
    /// Unix seconds, hour-aligned, exclusive.
    pub end: i64,
    /// 60 in the demo; node offsets are taken modulo this.
    pub scrape_interval_secs: i64,
    /// 1 is the demo cluster; N adds copies of the workload set in
    /// namespaces suffixed `-2`, `-3`, ..., each on its own 3 nodes.
    pub scale: usize,
}

impl SynthConfig {
    /// The demo cluster (scale 1, 60 s scrapes) over `[start, end)`.
    pub fn new(seed: u64, start: i64, end: i64) -> Self {
        SynthConfig {
            seed,
            start,
            end,
            scrape_interval_secs: 60,
            scale: 1,
        }
    }
}

/// The step of the collector's range queries that the truth is computed for.
pub const TRUTH_STEP_SECS: i64 = 60;
/// The range of the CPU query: `rate(container_cpu_usage_seconds_total[5m])`.
pub const CPU_RATE_RANGE_SECS: i64 = 300;
/// The range of the memory query: `max_over_time(container_memory_working_set_bytes[1m])`.
pub const MEMORY_RANGE_SECS: i64 = 60;

/// Exact answers for the collector, as Prometheus 2.42 computes them at the
/// eval timestamps `start, start + step_secs, ..., end - step_secs` for
/// `max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!="",container!="POD"}[5m]))`
/// and `max by (namespace, pod, container) (max_over_time(container_memory_working_set_bytes{container!="",container!="POD"}[1m]))`,
/// pooled over all pods of each workload container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The seed the history was generated from.
    pub seed: u64,
    /// First eval timestamp (unix seconds).
    pub start: i64,
    /// Exclusive end of the eval timestamps (unix seconds).
    pub end: i64,
    /// Spacing of the eval timestamps.
    pub step_secs: i64,
    /// One entry per workload container, sorted by (namespace, kind, workload, container).
    pub containers: Vec<TruthContainer>,
    /// Rollouts and restarts, in time order, for tests that look around them.
    #[serde(default)]
    pub events: Vec<TruthEvent>,
}

impl GroundTruth {
    /// The truth for one workload container, if it exists.
    pub fn container(
        &self,
        namespace: &str,
        kind: &str,
        workload: &str,
        container: &str,
    ) -> Option<&TruthContainer> {
        self.containers.iter().find(|c| {
            c.namespace == namespace
                && c.kind == kind
                && c.workload == workload
                && c.container == container
        })
    }
}

/// The pooled usage distribution of one container of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthContainer {
    /// Namespace of the workload.
    pub namespace: String,
    /// Deployment, StatefulSet, DaemonSet, CronJob, or Pod for a bare pod.
    pub kind: String,
    /// Name of the top-level owner (the pod's own name for a bare pod).
    pub workload: String,
    /// Container name.
    pub container: String,
    /// Number of (eval timestamp, pod) CPU values pooled.
    pub cpu_samples: u64,
    /// Nearest-rank percentiles of the pooled CPU values (0 when there are none).
    pub cpu_p50_cores: f64,
    /// See `cpu_p50_cores`.
    pub cpu_p90_cores: f64,
    /// See `cpu_p50_cores`.
    pub cpu_p95_cores: f64,
    /// See `cpu_p50_cores`.
    pub cpu_p99_cores: f64,
    /// Largest pooled CPU value.
    pub cpu_max_cores: f64,
    /// Largest pooled memory value: max over eval timestamps, which can be
    /// below the largest raw sample (samples after the last eval are unseen).
    pub memory_peak_bytes: f64,
    /// Number of (eval timestamp, pod) memory values pooled.
    pub memory_samples: u64,
    /// Distinct pods that contributed a CPU or memory value.
    pub pods: usize,
    /// Container restarts over the history, all pods together.
    pub restarts: u32,
    /// How many of those restarts were OOM kills.
    #[serde(default)]
    pub oom_kills: u32,
    /// Current (latest pod's) CPU request; `None` when unset.
    pub cpu_request_millicores: Option<i64>,
    /// Current CPU limit; `None` when unset.
    pub cpu_limit_millicores: Option<i64>,
    /// Current memory request; `None` when unset.
    pub memory_request_bytes: Option<i64>,
    /// Current memory limit; `None` when unset.
    pub memory_limit_bytes: Option<i64>,
}

/// Something that happened to a workload, so tests can look right at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthEvent {
    /// Unix seconds of the scrape tick at which it shows (before node offsets).
    pub time: i64,
    /// What happened.
    pub kind: TruthEventKind,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload name.
    pub workload: String,
    /// The new pod of a rollout, or the restarted pod.
    pub pod: String,
    /// The restarted container; empty for a rollout.
    pub container: String,
    /// Termination reason for a restart (`OOMKilled`, `Error`); the new
    /// ReplicaSet for a rollout.
    pub reason: String,
}

/// Kinds of [`TruthEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthEventKind {
    /// A Deployment started pods of a new ReplicaSet.
    Rollout,
    /// A container was replaced by a new one (new container id).
    Restart,
}

/// The per-pod values Prometheus returns at one eval timestamp, for tests
/// that compare single points rather than whole distributions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeValue {
    /// Eval timestamp (unix seconds).
    pub t: i64,
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The CPU query's value for this pod container, if it has one at `t`.
    pub cpu_cores: Option<f64>,
    /// The memory query's value for this pod container, if it has one at `t`.
    pub memory_bytes: Option<f64>,
}

/// Writes the history as OpenMetrics to `out` and returns the ground truth.
pub fn generate<W: io::Write>(cfg: &SynthConfig, out: W) -> io::Result<GroundTruth> {
    let (truth, _) = generate_with_probes(cfg, out, &[])?;
    Ok(truth)
}

/// Like [`generate`], and also returns every per-pod value at the eval
/// timestamps in `probe_times` (others are ignored).
pub fn generate_with_probes<W: io::Write>(
    cfg: &SynthConfig,
    out: W,
    probe_times: &[i64],
) -> io::Result<(GroundTruth, Vec<ProbeValue>)> {
    let run = writer::run(cfg, out, true, probe_times)?;
    Ok((run.truth, run.probes))
}

/// Writes the history only: no truth, so memory stays flat however long the
/// history and large the scale (the pooled CPU values for exact percentiles
/// take 8 bytes per pod and eval timestamp). Returns the number of lines.
pub fn write_openmetrics<W: io::Write>(cfg: &SynthConfig, out: W) -> io::Result<u64> {
    Ok(writer::run(cfg, out, false, &[])?.lines)
}

/// The rollouts and restarts [`generate`] will produce for `cfg`, without
/// generating anything: tests use it to pick probe timestamps.
pub fn plan_events(cfg: &SynthConfig) -> Vec<TruthEvent> {
    cluster::Cluster::build(
        cfg.seed,
        cfg.start,
        cfg.end,
        cfg.scrape_interval_secs.max(1),
        cfg.scale,
    )
    .events
}

/// The nearest-rank quantile of ascending `sorted` values: the value at index
/// `ceil(q * n) - 1`, clamped to the slice. NaN for an empty slice.
pub fn quantile_exact(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as i64 - 1;
    sorted[rank.clamp(0, sorted.len() as i64 - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        // 2023-11-14 22:00 UTC, 7 hours: crosses a CronJob run at 00:00.
        SynthConfig::new(7, 1_699_999_200, 1_699_999_200 + 7 * 3600)
    }

    fn render(cfg: &SynthConfig) -> (Vec<u8>, GroundTruth) {
        let mut buf = Vec::new();
        let truth = generate(cfg, &mut buf).unwrap();
        (buf, truth)
    }

    #[test]
    fn same_seed_gives_the_same_bytes_and_truth() {
        let (a, ta) = render(&small());
        let (b, tb) = render(&small());
        assert!(a == b, "outputs differ");
        assert_eq!(ta, tb);
        let (c, _) = render(&SynthConfig { seed: 8, ..small() });
        assert!(a != c, "another seed should give another history");
    }

    #[test]
    fn output_has_the_series_collectors_must_exclude() {
        let (buf, _) = render(&small());
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with("# EOF\n"));
        let cpu: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("container_cpu_usage_seconds_total{"))
            .collect();
        // The pod cgroup: no container label at all, id = the pod's cgroup.
        assert!(cpu.iter().any(|l| !l.contains("container=")
            && l.contains("pod=\"")
            && l.contains("id=\"/kubepods/burstable/pod")));
        assert!(cpu.iter().any(|l| l.contains("container=\"POD\"")));
        assert!(text
            .lines()
            .any(|l| l.starts_with("container_memory_working_set_bytes{")
                && l.contains("container=\"POD\"")));
    }

    #[test]
    fn families_are_contiguous_and_typed_once() {
        let (buf, _) = render(&small());
        let text = String::from_utf8(buf).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let family = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(family.clone()), "{family} typed twice");
                current = family;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    name == current || name == format!("{current}_total"),
                    "{name} outside {current}"
                );
            }
        }
        assert!(seen.contains("container_cpu_usage_seconds"));
        assert!(seen.contains("kube_pod_owner"));
    }

    #[test]
    fn truth_covers_every_workload_container() {
        let (_, truth) = render(&small());
        let names: Vec<String> = truth
            .containers
            .iter()
            .map(|c| format!("{}/{}/{}/{}", c.namespace, c.kind, c.workload, c.container))
            .collect();
        for want in [
            "shop/Deployment/api/api",
            "shop/Deployment/web/istio-proxy",
            "data/StatefulSet/postgres/metrics-exporter",
            "monitoring/DaemonSet/node-exporter/node-exporter",
            "batch/CronJob/report-builder/report-builder",
            "data/Pod/toolbox/toolbox",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing {want} in {names:?}"
            );
        }
        let api = truth.container("shop", "Deployment", "api", "api").unwrap();
        // 3 replicas rolled to 3 new pods.
        assert_eq!(api.pods, 6);
        assert_eq!(api.memory_request_bytes, Some(768 << 20));
        let blackbox = truth
            .container(
                "monitoring",
                "Deployment",
                "blackbox-exporter",
                "blackbox-exporter",
            )
            .unwrap();
        assert_eq!(
            (blackbox.cpu_request_millicores, blackbox.memory_limit_bytes),
            (None, None)
        );
        let cart = truth
            .container("shop", "Deployment", "cart", "cart")
            .unwrap();
        assert_eq!((cart.restarts, cart.oom_kills), (4, 4));
        for c in &truth.containers {
            assert!(
                c.cpu_p50_cores <= c.cpu_p95_cores && c.cpu_p95_cores <= c.cpu_max_cores,
                "{c:?}"
            );
            assert!(c.cpu_samples > 0 && c.memory_samples > 0, "{c:?}");
        }
    }

    #[test]
    fn scale_adds_suffixed_namespaces() {
        let cfg = SynthConfig {
            scale: 3,
            end: small().start + 3600,
            ..small()
        };
        let (_, truth) = render(&cfg);
        assert!(truth.containers.iter().any(|c| c.namespace == "shop-3"));
        let per_copy = truth
            .containers
            .iter()
            .filter(|c| c.namespace.starts_with("shop"))
            .count();
        assert_eq!(per_copy % 3, 0);
    }

    #[test]
    fn write_openmetrics_matches_generate() {
        let mut a = Vec::new();
        let lines = write_openmetrics(&small(), &mut a).unwrap();
        let (b, _) = render(&small());
        assert!(a == b);
        assert_eq!(lines as usize, a.iter().filter(|&&c| c == b'\n').count());
    }

    #[test]
    fn quantile_uses_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile_exact(&v, 0.5), 5.0);
        assert_eq!(quantile_exact(&v, 0.95), 10.0);
        assert_eq!(quantile_exact(&v, 0.91), 10.0);
        assert_eq!(quantile_exact(&v, 0.9), 9.0);
        assert_eq!(quantile_exact(&v, 0.0), 1.0);
        assert_eq!(quantile_exact(&v, 1.0), 10.0);
        assert!(quantile_exact(&[], 0.5).is_nan());
    }
}
