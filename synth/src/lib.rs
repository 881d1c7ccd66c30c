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
mod usage;
mod window;
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
    /// Index of the first copy (namespaces suffixed `-{first_copy + 1}` onwards): a large fleet
    /// can be written one copy per file, so promtool never holds the whole fleet in memory.
    pub first_copy: usize,
    /// Adds, to every copy, the walk-forward scenarios in namespace `trends`
    /// (suffixed like the others in further copies): single-replica
    /// Deployments `regime-up`, `regime-down`, `weekly`, `weekly-batch` and
    /// `startup`, each described by [`TruthContainer::scenario`]. They draw
    /// from their own random stream, so the other workloads keep every value.
    pub trends: bool,
    /// A Prometheus outage: `(start unix seconds, hour-aligned; length in
    /// hours)`. No series at all (every kubelet, kube-state-metrics) has a
    /// sample with a timestamp in `[start, start + hours * 3600)`; the truth
    /// is computed from what is stored, so it stays exact across the gap.
    /// Independent of `trends`; combine them for a backtest over a gap. Meant
    /// to lie inside the history: facts taken from the plan (restarts,
    /// requests, events) do not look at it.
    pub outage: Option<(i64, i64)>,
    /// Fills [`TruthContainer::days`]: every pooled CPU value, grouped by
    /// day. Big (8 bytes per value in the truth, more as JSON), so opt-in.
    pub daily_truth: bool,
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
            first_copy: 0,
            trends: false,
            outage: None,
            daily_truth: false,
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
    /// Deployments and StatefulSets: replicas, HPA and PDB, sorted by
    /// (namespace, kind, name).
    #[serde(default)]
    pub workloads: Vec<TruthWorkload>,
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

    /// The truth for one Deployment or StatefulSet, if it exists.
    pub fn workload(&self, namespace: &str, kind: &str, name: &str) -> Option<&TruthWorkload> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.kind == kind && w.name == name)
    }
}

/// A Deployment or StatefulSet as kube-state-metrics reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthWorkload {
    /// Namespace of the workload.
    pub namespace: String,
    /// Deployment or StatefulSet.
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Unix seconds of the first scrape tick at which it exists (the
    /// history's start for workloads older than the history).
    pub created: i64,
    /// `spec.replicas` at the last scrape tick.
    pub replicas: usize,
    /// `spec.replicas` averaged over the scrape ticks at which it exists.
    pub average_replicas: f64,
    /// The HPA scaling it, if any.
    pub hpa: Option<TruthHpa>,
    /// The PodDisruptionBudget covering its pods, if any.
    pub pdb: Option<TruthPdb>,
}

/// A HorizontalPodAutoscaler on CPU utilization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthHpa {
    /// HPA name.
    pub name: String,
    /// `spec.minReplicas`.
    pub min_replicas: usize,
    /// `spec.maxReplicas`.
    pub max_replicas: usize,
    /// Target average CPU utilization, percent of the request.
    pub cpu_target_utilization: f64,
}

/// A PodDisruptionBudget's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthPdb {
    /// PDB name.
    pub name: String,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i64,
    /// `status.expectedPods` at the last scrape tick.
    pub expected_pods: i64,
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
    /// Clock hours (unix hours) holding at least one CPU or memory value.
    #[serde(default)]
    pub history_hours: u32,
    /// Σ throttled CFS periods / Σ CFS periods over the history, all pods
    /// together, from the counter increases written; `None` without a CPU
    /// limit (no CFS series).
    #[serde(default)]
    pub cfs_throttled_ratio: Option<f64>,
    /// Current (latest pod's) CPU request; `None` when unset.
    pub cpu_request_millicores: Option<i64>,
    /// Current CPU limit; `None` when unset.
    pub cpu_limit_millicores: Option<i64>,
    /// Current memory request; `None` when unset.
    pub memory_request_bytes: Option<i64>,
    /// Current memory limit; `None` when unset.
    pub memory_limit_bytes: Option<i64>,
    /// The pattern planted in this container ([`SynthConfig::trends`]);
    /// `None` for the demo workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<TruthScenario>,
    /// With [`SynthConfig::daily_truth`]: the values above, day by day. Days
    /// are the 24-hour blocks `[end - (n + 1) * 86400, end - n * 86400)`
    /// counted back from the history's `end` (as an analyzer counts days back
    /// from its window's end), not UTC midnights; oldest first, one per block
    /// that overlaps the history, empty where the container had no value.
    /// Empty without `daily_truth`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<TruthDay>,
}

/// One 24-hour block of one container's pooled values (see [`TruthContainer::days`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthDay {
    /// Unix seconds of the block's start; it ends 86,400 s later. The oldest
    /// block may start before the history does.
    pub start: i64,
    /// Every pooled CPU value at the block's eval timestamps, ascending.
    pub cpu_cores: Vec<f64>,
    /// `(unix hour start, largest pooled memory value)` of each clock hour
    /// holding a memory value at an eval timestamp of this block, in time
    /// order. When `end` is not hour-aligned an hour can straddle two blocks
    /// and then appears in both, each with its own part's peak.
    pub memory_hour_peaks: Vec<(i64, f64)>,
    /// Sum of the block's pooled memory values (in eval-timestamp order).
    pub memory_sum: f64,
    /// Number of pooled memory values in the block.
    pub memory_samples: u64,
}

/// A pattern planted by [`SynthConfig::trends`], exactly as generated.
/// Times are scrape-tick times (unix seconds, before each node's offset):
/// demand changes for the samples of the ticks inside, so `rate(...[5m])`
/// follows a minute to five minutes later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TruthScenario {
    /// A rollout to a new ReplicaSet whose pods use `cpu_factor` times the
    /// CPU and `memory_factor` times the working set of the old ones.
    RegimeChange {
        /// First tick of the new pod; the old pod's last tick is the next one
        /// (surge: they overlap for one scrape).
        at: i64,
        /// New CPU demand / old.
        cpu_factor: f64,
        /// New working set / old.
        memory_factor: f64,
    },
    /// Busy Monday to Friday (UTC) with a daily cycle, quiet on weekends.
    Weekly {
        /// Always 1: weekdays are the reference level.
        weekday_cpu_factor: f64,
        /// Weekend CPU demand / weekday demand at the same time of day.
        weekend_cpu_factor: f64,
        /// Always 1.
        weekday_memory_factor: f64,
        /// Weekend working set / weekday working set.
        weekend_memory_factor: f64,
        /// `[Saturday 00:00, Monday 00:00)` UTC of every weekend overlapping
        /// the history, not clipped to it.
        weekends: Vec<(i64, i64)>,
    },
    /// A run once a week; flat-ish the rest of the time.
    WeeklyBatch {
        /// 7 days.
        period_secs: i64,
        /// CPU demand during a run / outside.
        cpu_factor: f64,
        /// Working set during a run / outside.
        memory_factor: f64,
        /// `[start, end)` of every run overlapping the history, not clipped
        /// to it; the last one starts 45 hours before the hour-aligned end.
        batches: Vec<(i64, i64)>,
    },
    /// Daily restarts (`Error`), each start followed by a CPU spike.
    Startup {
        /// Tick times at which a container started inside the history (the
        /// first ticks of the new instances), ascending.
        starts: Vec<i64>,
        /// CPU is raised for the ticks in `[start, start + spike_secs)`.
        spike_secs: i64,
        /// CPU demand during the spike / usual.
        cpu_factor: f64,
    },
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
    let run = writer::run(cfg, out, None, true, probe_times)?;
    Ok((run.truth, run.probes))
}

/// Like [`generate`], with the samples from `head_from` on (unix seconds) written to
/// `head` as plain `name{labels} value timestamp` lines, not to `out`: blocks for promtool
/// from `out`, and the newest hours to send to a running Prometheus, whose head block holds
/// them as a live one holds the last hours.
pub fn generate_split<W: io::Write>(
    cfg: &SynthConfig,
    out: W,
    head_from: i64,
    head: Box<dyn io::Write>,
) -> io::Result<GroundTruth> {
    Ok(writer::run(cfg, out, Some((head_from, head)), true, &[])?.truth)
}

/// Writes the history only: no truth, so memory stays flat however long the
/// history and large the scale (the pooled CPU values for exact percentiles
/// take 8 bytes per pod and eval timestamp). Returns the number of lines.
pub fn write_openmetrics<W: io::Write>(cfg: &SynthConfig, out: W) -> io::Result<u64> {
    Ok(writer::run(cfg, out, None, false, &[])?.lines)
}

/// The rollouts and restarts [`generate`] will produce for `cfg`, without
/// generating anything: tests use it to pick probe timestamps.
pub fn plan_events(cfg: &SynthConfig) -> Vec<TruthEvent> {
    cluster::Cluster::build(cfg).events
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

    /// 2023-11-15 00:00 UTC, one day: the daily load cycle, whole.
    fn one_day() -> SynthConfig {
        SynthConfig::new(7, 1_700_006_400, 1_700_006_400 + 86_400)
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

    /// `(timestamp, value)` of every sample of series whose line starts
    /// with `name{` and contains every one of `labels`.
    fn samples(text: &str, name: &str, labels: &[&str]) -> Vec<(i64, f64)> {
        let prefix = format!("{name}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && labels.iter().all(|x| l.contains(x)))
            .map(|l| {
                let mut tail = l.rsplit(' ');
                let t = tail.next().unwrap().parse().unwrap();
                let v = tail.next().unwrap().parse().unwrap();
                (t, v)
            })
            .collect()
    }

    #[test]
    fn hpa_deployment_follows_its_replica_count() {
        let (buf, truth) = render(&one_day());
        let text = String::from_utf8(buf).unwrap();
        let w = truth.workload("shop", "Deployment", "frontend").unwrap();
        let hpa = w.hpa.as_ref().unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (2, 8));
        assert!(
            w.average_replicas > 3.0 && w.average_replicas < 4.5,
            "{w:?}"
        );
        let spec = samples(
            &text,
            "kube_deployment_spec_replicas",
            &["deployment=\"frontend\""],
        );
        assert_eq!(spec.len(), 1440);
        let mean = spec.iter().map(|s| s.1).sum::<f64>() / spec.len() as f64;
        assert!((mean - w.average_replicas).abs() < 1e-9);
        let seen: std::collections::BTreeSet<i64> = spec.iter().map(|s| s.1 as i64).collect();
        assert_eq!(seen, (2..=8).collect());
        // kube-state-metrics sees exactly spec.replicas frontend pods at each scrape.
        let mut pods: std::collections::BTreeMap<i64, f64> = Default::default();
        for (t, _) in samples(&text, "kube_pod_owner", &["pod=\"frontend-"]) {
            *pods.entry(t).or_default() += 1.0;
        }
        for (t, n) in &spec {
            assert_eq!(pods.get(t), Some(n), "pods at {t}");
        }
        let c = truth
            .container("shop", "Deployment", "frontend", "frontend")
            .unwrap();
        // Two pods all day, and one per replica slot above the minimum.
        assert_eq!(c.pods, 2 + 6, "pods come and go");
        for (family, want) in [
            ("kube_horizontalpodautoscaler_info", 1.0),
            ("kube_horizontalpodautoscaler_spec_target_metric", 70.0),
            ("kube_horizontalpodautoscaler_spec_min_replicas", 2.0),
            ("kube_horizontalpodautoscaler_spec_max_replicas", 8.0),
        ] {
            let s = samples(
                &text,
                family,
                &[
                    "horizontalpodautoscaler=\"frontend\"",
                    "job=\"kube-state-metrics\"",
                ],
            );
            assert_eq!(s.len(), 1440, "{family}");
            assert!(s.iter().all(|x| x.1 == want), "{family}");
        }
        assert_eq!(
            samples(
                &text,
                "kube_horizontalpodautoscaler_info",
                &["scaletargetref_kind=\"Deployment\",scaletargetref_name=\"frontend\""]
            )
            .len(),
            1440
        );
    }

    #[test]
    fn late_workload_exists_only_for_its_last_hours() {
        let cfg = SynthConfig::new(7, 1_700_006_400, 1_700_006_400 + 2 * 86_400);
        let (buf, truth) = render(&cfg);
        let text = String::from_utf8(buf).unwrap();
        let w = truth.workload("shop", "Deployment", "new-feature").unwrap();
        assert_eq!(w.created, cfg.end - 20 * 3600);
        let c = truth
            .container("shop", "Deployment", "new-feature", "new-feature")
            .unwrap();
        assert_eq!(c.history_hours, 20);
        let api = truth.container("shop", "Deployment", "api", "api").unwrap();
        assert_eq!(api.history_hours, 48);
        for name in ["kube_deployment_spec_replicas", "kube_replicaset_owner"] {
            let s = samples(&text, name, &["new-feature"]);
            assert_eq!(s.len(), 20 * 60, "{name}");
            assert!(s.iter().all(|(t, _)| *t >= w.created), "{name}");
        }
        assert!(
            samples(&text, "container_cpu_usage_seconds_total", &["new-feature"])
                .iter()
                .all(|(t, _)| *t >= w.created)
        );
    }

    #[test]
    fn truth_has_throttling_pdbs_and_replicas() {
        let (buf, truth) = render(&one_day());
        let text = String::from_utf8(buf).unwrap();
        let cart = truth
            .container("shop", "Deployment", "cart", "cart")
            .unwrap();
        let ratio = cart.cfs_throttled_ratio.unwrap();
        assert!(ratio > 0.1 && ratio < 0.5, "cart throttled {ratio}");
        let etl = truth
            .container("data", "Deployment", "etl-worker", "etl-worker")
            .unwrap();
        assert_eq!(etl.cfs_throttled_ratio, None, "no CPU limit, no CFS series");
        let idle = truth
            .container("monitoring", "Deployment", "idle-exporter", "idle-exporter")
            .unwrap();
        assert!(idle.cpu_p95_cores < 0.002 && idle.memory_peak_bytes < 12.0 * 1048576.0);
        let api = truth.workload("shop", "Deployment", "api").unwrap();
        let pdb = api.pdb.as_ref().unwrap();
        assert_eq!(
            (
                pdb.name.as_str(),
                pdb.disruptions_allowed,
                pdb.expected_pods
            ),
            ("api", 0, 3)
        );
        assert!(truth
            .workload("shop", "Deployment", "web")
            .unwrap()
            .pdb
            .is_none());
        let frontend = truth.workload("shop", "Deployment", "frontend").unwrap();
        assert_eq!(frontend.pdb.as_ref().unwrap().disruptions_allowed, 1);
        let allowed = samples(
            &text,
            "kube_poddisruptionbudget_status_pod_disruptions_allowed",
            &["poddisruptionbudget=\"api\""],
        );
        assert_eq!(allowed.len(), 1440);
        assert!(allowed.iter().all(|s| s.1 == 0.0));
        let expected = samples(
            &text,
            "kube_poddisruptionbudget_status_expected_pods",
            &["poddisruptionbudget=\"frontend-pdb\""],
        );
        assert_eq!(expected.len(), 1440);
        let sts = samples(
            &text,
            "kube_statefulset_replicas",
            &["statefulset=\"postgres\""],
        );
        assert_eq!(sts.len(), 1440);
        assert!(sts.iter().all(|s| s.1 == 2.0));
        let kinds: Vec<&str> = truth.workloads.iter().map(|w| w.kind.as_str()).collect();
        assert!(kinds
            .iter()
            .all(|k| *k == "Deployment" || *k == "StatefulSet"));
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

#[cfg(test)]
mod trend_tests;
