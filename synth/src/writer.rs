//! The metric families, one pass over time each, and the truth computed from
//! the values as they are written.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, BufWriter, Write};

use super::cluster::{Cluster, ControllerObject, Instance, Kind, Pod, PodContainer};
use super::usage::{self, MemoryShape};
use super::window::WindowEval;
use super::{
    quantile_exact, GroundTruth, ProbeValue, SynthConfig, TruthContainer, TruthDay, TruthHpa,
    TruthPdb, TruthWorkload, CPU_RATE_RANGE_SECS, MEMORY_RANGE_SECS, TRUTH_STEP_SECS,
};
use rightsizer::prometheus::engine::RangeFn;

const KUBELET: &[(&str, &str)] = &[("job", "kubelet"), ("metrics_path", "/metrics/cadvisor")];
const KSM: &[(&str, &str)] = &[("instance", "ksm:8080"), ("job", "kube-state-metrics")];
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.9";
const MI: f64 = (1 << 20) as f64;

pub(crate) struct Run {
    pub truth: GroundTruth,
    pub probes: Vec<ProbeValue>,
    pub lines: u64,
}

/// Samples at or after a time written to a second file instead of the first: what a live
/// Prometheus still holds in its head block rather than in blocks on disk.
pub(crate) type Head = Option<(i64, Box<dyn Write>)>;

pub(crate) fn run<W: Write>(
    cfg: &SynthConfig,
    out: W,
    head: Head,
    want_truth: bool,
    probe_times: &[i64],
) -> io::Result<Run> {
    if cfg.scrape_interval_secs <= 0 || cfg.end <= cfg.start {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "synth: need scrape_interval_secs > 0 and end > start",
        ));
    }
    let cluster = Cluster::build(cfg);
    let idx = Index::new(&cluster);
    let truth = want_truth.then(|| TruthAcc::new(&cluster, &idx, probe_times, cfg.daily_truth));
    let mut g = Gen {
        cl: &cluster,
        om: Om {
            out: BufWriter::with_capacity(1 << 20, out),
            head: head.map(|(from, w)| (from, BufWriter::with_capacity(1 << 20, w))),
            lines: 0,
        },
        idx,
        truth,
    };
    g.cadvisor_cpu()?;
    g.cadvisor_memory()?;
    g.cadvisor_container_counters()?;
    g.ksm()?;
    g.om.out.write_all(b"# EOF\n")?;
    g.om.lines += 1;
    g.om.out.flush()?;
    if let Some((_, head)) = &mut g.om.head {
        head.flush()?;
    }
    let lines = g.om.lines;
    let (truth, probes) = match g.truth.take() {
        Some(acc) => acc.finish(cfg, &cluster, &g.idx),
        None => (
            GroundTruth {
                seed: cfg.seed,
                start: cfg.start,
                end: cfg.end,
                step_secs: TRUTH_STEP_SECS,
                containers: Vec::new(),
                events: cluster.events.clone(),
                workloads: Vec::new(),
            },
            Vec::new(),
        ),
    };
    Ok(Run {
        truth,
        probes,
        lines,
    })
}

/// OpenMetrics output.
struct Om<W: Write> {
    out: BufWriter<W>,
    head: Option<(i64, BufWriter<Box<dyn Write>>)>,
    lines: u64,
}

impl<W: Write> Om<W> {
    fn family(&mut self, family: &str, kind: &str) -> io::Result<()> {
        self.lines += 1;
        writeln!(self.out, "# TYPE {family} {kind}")
    }

    /// `prefix` is `name{labels} ` as built by [`series`].
    fn sample(&mut self, prefix: &str, v: f64, t: i64) -> io::Result<()> {
        self.lines += 1;
        // `{}` on f64 prints the shortest text that parses back to the same
        // value, so Prometheus stores exactly what the truth used.
        match &mut self.head {
            Some((from, head)) if t >= *from => writeln!(head, "{prefix}{v} {t}"),
            _ => writeln!(self.out, "{prefix}{v} {t}"),
        }
    }
}

/// `name{k="v",...} `; empty values are left out, as Prometheus drops them.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(name);
    s.push('{');
    let mut first = true;
    for (k, v) in labels {
        if v.is_empty() {
            continue;
        }
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push_str("} ");
    s
}

/// Flat numbering of pod containers, instances and cAdvisor container series.
struct Index {
    /// First pod-container number of each pod.
    pc_base: Vec<usize>,
    pc_pod: Vec<usize>,
    pc_wc: Vec<usize>,
    /// First instance number of each pod container.
    inst_base: Vec<usize>,
    /// First container-series number of each pod container: one series per
    /// instance, or one for all of them when id/name labels are dropped.
    series_base: Vec<usize>,
    /// Pod container of each container series.
    series_pc: Vec<usize>,
    instances: usize,
    pods_by_start: Vec<usize>,
}

impl Index {
    fn new(cl: &Cluster) -> Self {
        let mut ix = Index {
            pc_base: Vec::new(),
            pc_pod: Vec::new(),
            pc_wc: Vec::new(),
            inst_base: Vec::new(),
            series_base: Vec::new(),
            series_pc: Vec::new(),
            instances: 0,
            pods_by_start: (0..cl.pods.len()).collect(),
        };
        for (p, pod) in cl.pods.iter().enumerate() {
            ix.pc_base.push(ix.pc_pod.len());
            for c in &pod.containers {
                let pc = ix.pc_pod.len();
                ix.pc_pod.push(p);
                ix.pc_wc.push(c.wc);
                ix.inst_base.push(ix.instances);
                ix.instances += c.instances.len();
                ix.series_base.push(ix.series_pc.len());
                let n = if pod.drop_id_labels {
                    1
                } else {
                    c.instances.len()
                };
                ix.series_pc.extend(std::iter::repeat_n(pc, n));
            }
        }
        ix.pods_by_start.sort_by_key(|&p| cl.pods[p].start);
        ix
    }

    fn series_of(&self, pod: &Pod, pc: usize, inst: usize) -> usize {
        self.series_base[pc] + if pod.drop_id_labels { 0 } else { inst }
    }
}

/// Pods alive at the current tick, kept up to date as time advances.
struct Sweep<'a> {
    order: &'a [usize],
    next: usize,
    active: Vec<usize>,
}

impl<'a> Sweep<'a> {
    fn new(order: &'a [usize]) -> Self {
        Sweep {
            order,
            next: 0,
            active: Vec::new(),
        }
    }

    fn advance(&mut self, k: i64, start: impl Fn(usize) -> i64, end: impl Fn(usize) -> i64) {
        self.active.retain(|&p| end(p) > k);
        while self.next < self.order.len() && start(self.order[self.next]) <= k {
            let p = self.order[self.next];
            if end(p) > k {
                self.active.push(p);
            }
            self.next += 1;
        }
    }
}

/// The instance of `c` running at tick `k`, with its position.
fn running(c: &PodContainer, k: i64) -> Option<(usize, &Instance)> {
    c.instances
        .iter()
        .enumerate()
        .find(|(_, i)| i.start <= k && k < i.end)
}

/// The instance kube-state-metrics reports at tick `k`: the latest started.
fn current(c: &PodContainer, k: i64) -> (usize, &Instance) {
    let i = c.instances.iter().rposition(|i| i.start <= k).unwrap_or(0);
    (i, &c.instances[i])
}

struct TruthAcc {
    cpu: WindowEval,
    memory: WindowEval,
    cpu_values: Vec<Vec<f64>>,
    memory_peak: Vec<f64>,
    memory_samples: Vec<u64>,
    /// Unix hours holding a CPU or memory value, per workload container.
    hours: Vec<BTreeSet<i64>>,
    /// (CFS periods, throttled periods) written, per workload container.
    cfs: Vec<[f64; 2]>,
    pc_seen: Vec<bool>,
    probe_times: HashSet<i64>,
    probes: BTreeMap<(i64, usize), (Option<f64>, Option<f64>)>,
    /// Per workload container and day block (oldest first), when asked for.
    days: Option<Vec<Vec<DayAcc>>>,
}

/// What [`TruthDay`] is built from.
#[derive(Clone, Default)]
struct DayAcc {
    cpu: Vec<f64>,
    memory_hour_peaks: Vec<(i64, f64)>,
    memory_sum: f64,
    memory_samples: u64,
}

/// Day blocks counted back from `end`: how many overlap `[start, end)`.
fn day_blocks(cl: &Cluster) -> usize {
    ((cl.end - cl.start + 86_399) / 86_400) as usize
}

/// Index (oldest first) of the day block holding eval timestamp `t`.
fn day_of(cl: &Cluster, t: i64) -> usize {
    day_blocks(cl) - 1 - (cl.end - 1 - t).div_euclid(86_400) as usize
}

impl TruthAcc {
    fn new(cl: &Cluster, ix: &Index, probe_times: &[i64], daily: bool) -> Self {
        let groups = ix.pc_pod.len();
        let wcs = cl.workload_containers.len();
        TruthAcc {
            cpu: WindowEval::new(RangeFn::Rate, CPU_RATE_RANGE_SECS, &ix.series_pc, groups),
            memory: WindowEval::new(
                RangeFn::MaxOverTime,
                MEMORY_RANGE_SECS,
                &ix.series_pc,
                groups,
            ),
            cpu_values: vec![Vec::new(); wcs],
            memory_peak: vec![f64::NEG_INFINITY; wcs],
            memory_samples: vec![0; wcs],
            hours: vec![BTreeSet::new(); wcs],
            cfs: vec![[0.0; 2]; wcs],
            pc_seen: vec![false; groups],
            probe_times: probe_times.iter().copied().collect(),
            probes: BTreeMap::new(),
            days: daily.then(|| vec![vec![DayAcc::default(); day_blocks(cl)]; wcs]),
        }
    }

    fn finish(self, cfg: &SynthConfig, cl: &Cluster, ix: &Index) -> (GroundTruth, Vec<ProbeValue>) {
        let mut pods = vec![0usize; cl.workload_containers.len()];
        let mut restarts = vec![0u32; cl.workload_containers.len()];
        let mut ooms = vec![0u32; cl.workload_containers.len()];
        // The current spec is the one of the most recently started pod.
        let mut latest: Vec<Option<(i64, usize)>> = vec![None; cl.workload_containers.len()];
        for (pc, &p) in ix.pc_pod.iter().enumerate() {
            let wc = ix.pc_wc[pc];
            let pod = &cl.pods[p];
            let c = &pod.containers[pc - ix.pc_base[p]];
            pods[wc] += usize::from(self.pc_seen[pc]);
            let ended: Vec<&Instance> = c.instances.iter().filter(|i| i.end < pod.end).collect();
            restarts[wc] += ended.len() as u32;
            ooms[wc] += ended.iter().filter(|i| i.oom_killed()).count() as u32;
            if latest[wc].is_none_or(|(start, _)| pod.start >= start) {
                latest[wc] = Some((pod.start, pc));
            }
        }
        let mut containers = Vec::new();
        let mut days = self.days;
        for (wc, mut values) in self.cpu_values.into_iter().enumerate() {
            let w = &cl.workload_containers[wc];
            values.sort_by(f64::total_cmp);
            let q = |q: f64| {
                if values.is_empty() {
                    0.0
                } else {
                    quantile_exact(&values, q)
                }
            };
            let res = latest[wc]
                .map(|(_, pc)| {
                    let p = ix.pc_pod[pc];
                    cl.pods[p].containers[pc - ix.pc_base[p]].res
                })
                .unwrap_or_default();
            containers.push(TruthContainer {
                namespace: w.namespace.clone(),
                kind: w.kind.as_str().to_string(),
                workload: w.workload.clone(),
                container: w.container.clone(),
                cpu_samples: values.len() as u64,
                cpu_p50_cores: q(0.5),
                cpu_p90_cores: q(0.9),
                cpu_p95_cores: q(0.95),
                cpu_p99_cores: q(0.99),
                cpu_max_cores: values.last().copied().unwrap_or(0.0),
                memory_peak_bytes: if self.memory_samples[wc] > 0 {
                    self.memory_peak[wc]
                } else {
                    0.0
                },
                memory_samples: self.memory_samples[wc],
                pods: pods[wc],
                restarts: restarts[wc],
                oom_kills: ooms[wc],
                history_hours: self.hours[wc].len() as u32,
                cfs_throttled_ratio: (self.cfs[wc][0] > 0.0)
                    .then(|| self.cfs[wc][1] / self.cfs[wc][0]),
                cpu_request_millicores: res.cpu_request_millicores,
                cpu_limit_millicores: res.cpu_limit_millicores,
                memory_request_bytes: res.memory_request_bytes,
                memory_limit_bytes: res.memory_limit_bytes,
                scenario: w.scenario.clone(),
                days: days
                    .as_mut()
                    .map(|d| {
                        let blocks = day_blocks(cl) as i64;
                        std::mem::take(&mut d[wc])
                            .into_iter()
                            .enumerate()
                            .map(|(i, mut day)| {
                                day.cpu.sort_by(f64::total_cmp);
                                TruthDay {
                                    start: cl.end - (blocks - i as i64) * 86_400,
                                    cpu_cores: day.cpu,
                                    memory_hour_peaks: day.memory_hour_peaks,
                                    memory_sum: day.memory_sum,
                                    memory_samples: day.memory_samples,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        containers.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.workload, &a.container).cmp(&(
                &b.namespace,
                &b.kind,
                &b.workload,
                &b.container,
            ))
        });
        let probes = self
            .probes
            .into_iter()
            .map(|((t, pc), (cpu, mem))| {
                let p = ix.pc_pod[pc];
                let pod = &cl.pods[p];
                ProbeValue {
                    t,
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: pod.containers[pc - ix.pc_base[p]].name.to_string(),
                    cpu_cores: cpu,
                    memory_bytes: mem,
                }
            })
            .collect();
        let truth = GroundTruth {
            seed: cfg.seed,
            start: cfg.start,
            end: cfg.end,
            step_secs: TRUTH_STEP_SECS,
            containers,
            events: cl.events.clone(),
            workloads: truth_workloads(cl),
        };
        (truth, probes)
    }
}

/// Replicas, HPAs and PDBs from the plan (kube-state-metrics writes them as planned).
fn truth_workloads(cl: &Cluster) -> Vec<TruthWorkload> {
    let mut out: Vec<TruthWorkload> = cl
        .controllers
        .iter()
        .map(|c| {
            // What kube-state-metrics' stored samples say: an outage hides ticks.
            let shown = |k: &i64| !cl.in_outage(cl.tick_time(*k) + cl.ksm_offset_secs);
            let replicas: Vec<usize> = (c.start..c.end)
                .filter(shown)
                .filter_map(|k| cl.replicas_at(c, k))
                .collect();
            let last = replicas.last().copied().unwrap_or(0);
            let created = (c.start..c.end).find(shown).unwrap_or(c.start);
            TruthWorkload {
                namespace: c.namespace.clone(),
                kind: c.kind.as_str().to_string(),
                name: c.name.clone(),
                created: cl.tick_time(created),
                replicas: last,
                average_replicas: replicas.iter().sum::<usize>() as f64
                    / replicas.len().max(1) as f64,
                hpa: c.hpa.map(|h| TruthHpa {
                    name: h.name.to_string(),
                    min_replicas: h.min_replicas,
                    max_replicas: h.max_replicas,
                    cpu_target_utilization: h.cpu_target_utilization,
                }),
                pdb: c.pdb.map(|p| TruthPdb {
                    name: p.name.to_string(),
                    disruptions_allowed: p.disruptions_allowed,
                    expected_pods: last as i64,
                }),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    out
}

/// Walks the eval timestamps as the passes advance through time.
struct EvalClock {
    next: i64,
    last: i64,
}

impl EvalClock {
    fn new(cl: &Cluster) -> Self {
        EvalClock {
            next: cl.start,
            last: cl.end - TRUTH_STEP_SECS,
        }
    }

    /// Eval timestamps all of whose samples are written once tick `k` is.
    fn due(&mut self, cl: &Cluster, k: i64) -> impl Iterator<Item = i64> {
        let horizon = (cl.tick_time(k) + cl.interval_secs - 1).min(self.last);
        let from = self.next;
        let n = if horizon >= from {
            (horizon - from) / TRUTH_STEP_SECS + 1
        } else {
            0
        };
        self.next = from + n * TRUTH_STEP_SECS;
        (0..n).map(move |i| from + i * TRUTH_STEP_SECS)
    }
}

struct Gen<'a, W: Write> {
    cl: &'a Cluster,
    om: Om<W>,
    idx: Index,
    truth: Option<TruthAcc>,
}

/// Labels of a cAdvisor series for one container instance (or the pause
/// container), keyed like kubelet's /metrics/cadvisor.
fn cadvisor_labels<'l>(
    cl: &'l Cluster,
    pod: &'l Pod,
    container: &'l str,
    image: &'l str,
    cgroup: &'l str,
    id: &'l str,
) -> Vec<(&'l str, &'l str)> {
    let node = &cl.nodes[pod.node];
    let (cgroup, id) = if pod.drop_id_labels {
        ("", "")
    } else {
        (cgroup, id)
    };
    let mut v = vec![
        ("container", container),
        ("id", cgroup),
        ("image", image),
        ("instance", node.instance.as_str()),
    ];
    v.extend_from_slice(KUBELET);
    v.extend_from_slice(&[
        ("name", id),
        ("namespace", pod.namespace.as_str()),
        ("node", node.name.as_str()),
        ("pod", pod.name.as_str()),
    ]);
    v
}

/// Prefixes of a pod's non-container series: the pod cgroup and the pause container.
fn pod_level_prefixes(cl: &Cluster, name: &str, pod: &Pod) -> (String, String) {
    let pause_cgroup = format!("{}/{}", pod.cgroup, pod.pause_id);
    (
        series(name, &cadvisor_labels(cl, pod, "", "", &pod.cgroup, "")),
        series(
            name,
            &cadvisor_labels(cl, pod, "POD", PAUSE_IMAGE, &pause_cgroup, &pod.pause_id),
        ),
    )
}

/// Prefixes of every container series of `name`, by series number.
fn container_prefixes(cl: &Cluster, ix: &Index, name: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(ix.series_pc.len());
    for (p, pod) in cl.pods.iter().enumerate() {
        for (j, c) in pod.containers.iter().enumerate() {
            let n = if pod.drop_id_labels {
                1
            } else {
                c.instances.len()
            };
            for inst in &c.instances[..n] {
                let cgroup = format!("{}/{}", pod.cgroup, inst.container_id);
                out.push(series(
                    name,
                    &cadvisor_labels(cl, pod, c.name, c.image, &cgroup, &inst.container_id),
                ));
            }
            debug_assert_eq!(out.len(), ix.series_base[ix.pc_base[p] + j] + n);
        }
    }
    out
}

/// Node-level cgroups (`/` and `/kubepods`): no pod, no container.
fn node_prefixes(cl: &Cluster, name: &str) -> Vec<(String, String)> {
    cl.nodes
        .iter()
        .map(|n| {
            let labels = |id: &'static str| {
                let mut v = vec![("id", id), ("instance", n.instance.as_str())];
                v.extend_from_slice(KUBELET);
                v.push(("node", n.name.as_str()));
                series(name, &v)
            };
            (labels("/"), labels("/kubepods"))
        })
        .collect()
}

impl<W: Write> Gen<'_, W> {
    fn cadvisor_cpu(&mut self) -> io::Result<()> {
        let cl = self.cl;
        let name = "container_cpu_usage_seconds_total";
        self.om.family("container_cpu_usage_seconds", "counter")?;
        let prefixes = container_prefixes(cl, &self.idx, name);
        let pod_prefixes: Vec<(String, String)> = cl
            .pods
            .iter()
            .map(|p| pod_level_prefixes(cl, name, p))
            .collect();
        let node_prefixes = node_prefixes(cl, name);
        let iv = cl.interval_secs as f64;
        let mut counters: Vec<f64> = Vec::with_capacity(self.idx.instances);
        for pod in &cl.pods {
            for c in &pod.containers {
                counters.extend(c.instances.iter().map(|i| i.prior_cpu_secs));
            }
        }
        let mut pod_counters: Vec<f64> = cl
            .pods
            .iter()
            .map(|p| {
                p.containers
                    .iter()
                    .map(|c| c.instances[0].prior_cpu_secs)
                    .sum()
            })
            .collect();
        let mut pause_counters = vec![0.0; cl.pods.len()];
        let mut node_counters: Vec<(f64, f64)> = (0..cl.nodes.len())
            .map(|n| {
                let uptime = usage::unit(cl.missed_scrape_key, n as i64, 500) * 1e6;
                (uptime + 2e5, uptime)
            })
            .collect();
        let mut node_inc = vec![0.0; cl.nodes.len()];
        let mut clock = EvalClock::new(cl);
        let mut sweep = Sweep::new(&self.idx.pods_by_start);
        for k in 0..cl.ticks {
            let base = cl.tick_time(k);
            sweep.advance(k, |p| cl.pods[p].start, |p| cl.pods[p].end);
            node_inc.iter_mut().for_each(|v| *v = 0.0);
            for &p in &sweep.active {
                let pod = &cl.pods[p];
                let ts = base + cl.nodes[pod.node].offset_secs;
                let scraped = cl.scraped(pod.node, k, ts);
                let pause_frac = if k == pod.start { 0.5 } else { 1.0 };
                let mut pod_inc = 0.0;
                for (j, c) in pod.containers.iter().enumerate() {
                    let Some((i, inst)) = running(c, k) else {
                        continue;
                    };
                    let pc = self.idx.pc_base[p] + j;
                    let demand = c.cpu_demand(inst, k, base);
                    let cores = usage::cpu_usage_cores(demand, c.res.cpu_limit_cores());
                    let frac = if k == inst.start && inst.prior_cpu_secs == 0.0 {
                        inst.first_frac
                    } else {
                        1.0
                    };
                    let inc = cores * iv * frac;
                    let ctr = &mut counters[self.idx.inst_base[pc] + i];
                    *ctr += inc;
                    pod_inc += inc;
                    if scraped {
                        let s = self.idx.series_of(pod, pc, i);
                        self.om.sample(&prefixes[s], *ctr, ts)?;
                        if let Some(t) = &mut self.truth {
                            t.cpu.push(s, ts, *ctr);
                        }
                    }
                }
                let pause_inc = 0.0001 * (0.5 + usage::unit(pod.key, k, 20)) * iv * pause_frac;
                pause_counters[p] += pause_inc;
                pod_counters[p] += pod_inc + pause_inc;
                node_inc[pod.node] += pod_inc + pause_inc;
                if scraped {
                    self.om.sample(&pod_prefixes[p].0, pod_counters[p], ts)?;
                    self.om.sample(&pod_prefixes[p].1, pause_counters[p], ts)?;
                }
            }
            for (n, node) in cl.nodes.iter().enumerate() {
                let ts = base + node.offset_secs;
                let system =
                    0.15 * (1.0 + 0.3 * usage::unit(cl.missed_scrape_key, k, 600 + n as u64)) * iv;
                node_counters[n].0 += node_inc[n] + system;
                node_counters[n].1 += node_inc[n];
                if cl.scraped(n, k, ts) {
                    self.om
                        .sample(&node_prefixes[n].0, node_counters[n].0, ts)?;
                    self.om
                        .sample(&node_prefixes[n].1, node_counters[n].1, ts)?;
                }
            }
            if let Some(truth) = &mut self.truth {
                for t in clock.due(cl, k) {
                    let probe = truth.probe_times.contains(&t);
                    let TruthAcc {
                        cpu,
                        cpu_values,
                        hours,
                        pc_seen,
                        probes,
                        days,
                        ..
                    } = truth;
                    let idx = &self.idx;
                    let hour = t - t.rem_euclid(3600);
                    let day = day_of(cl, t);
                    cpu.eval(t, |pc, v| {
                        cpu_values[idx.pc_wc[pc]].push(v);
                        if let Some(days) = days {
                            days[idx.pc_wc[pc]][day].cpu.push(v);
                        }
                        hours[idx.pc_wc[pc]].insert(hour);
                        pc_seen[pc] = true;
                        if probe {
                            probes.entry((t, pc)).or_default().0 = Some(v);
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn cadvisor_memory(&mut self) -> io::Result<()> {
        let cl = self.cl;
        let name = "container_memory_working_set_bytes";
        self.om.family(name, "gauge")?;
        let prefixes = container_prefixes(cl, &self.idx, name);
        let pod_prefixes: Vec<(String, String)> = cl
            .pods
            .iter()
            .map(|p| pod_level_prefixes(cl, name, p))
            .collect();
        let node_prefixes = node_prefixes(cl, name);
        let mut node_sum = vec![0.0; cl.nodes.len()];
        let mut clock = EvalClock::new(cl);
        let mut sweep = Sweep::new(&self.idx.pods_by_start);
        for k in 0..cl.ticks {
            let base = cl.tick_time(k);
            sweep.advance(k, |p| cl.pods[p].start, |p| cl.pods[p].end);
            node_sum.iter_mut().for_each(|v| *v = 0.0);
            for &p in &sweep.active {
                let pod = &cl.pods[p];
                let ts = base + cl.nodes[pod.node].offset_secs;
                let scraped = cl.scraped(pod.node, k, ts);
                let mut pod_sum = 0.0;
                for (j, c) in pod.containers.iter().enumerate() {
                    let Some((i, inst)) = running(c, k) else {
                        continue;
                    };
                    let pc = self.idx.pc_base[p] + j;
                    let shape = MemoryShape {
                        age_ticks: k - inst.start,
                        life_ticks: inst.end - inst.start,
                        interval_secs: cl.interval_secs,
                        limit_bytes: c.res.memory_limit_bytes.map(|b| b as f64),
                        oom_ramp: inst.oom_killed(),
                    };
                    let v = c.memory(inst, k, base, &shape);
                    pod_sum += v;
                    if scraped {
                        let s = self.idx.series_of(pod, pc, i);
                        self.om.sample(&prefixes[s], v, ts)?;
                        if let Some(t) = &mut self.truth {
                            t.memory.push(s, ts, v);
                        }
                    }
                }
                let pause =
                    4096.0 * (100.0 + (8.0 * usage::unit(pod.key, k.div_euclid(30), 21)).floor());
                // The pod cgroup also holds page cache and kernel memory.
                let pod_total = pod_sum + pause + 1.5 * MI;
                node_sum[pod.node] += pod_total;
                if scraped {
                    self.om.sample(&pod_prefixes[p].0, pod_total, ts)?;
                    self.om.sample(&pod_prefixes[p].1, pause, ts)?;
                }
            }
            for (n, node) in cl.nodes.iter().enumerate() {
                let ts = base + node.offset_secs;
                if cl.scraped(n, k, ts) {
                    let system = 4096.0
                        * (230_000.0
                            + (5000.0 * usage::unit(cl.missed_scrape_key, k, 700 + n as u64))
                                .floor());
                    self.om
                        .sample(&node_prefixes[n].0, node_sum[n] + system, ts)?;
                    self.om.sample(&node_prefixes[n].1, node_sum[n], ts)?;
                }
            }
            if let Some(truth) = &mut self.truth {
                for t in clock.due(cl, k) {
                    let probe = truth.probe_times.contains(&t);
                    let TruthAcc {
                        memory,
                        memory_peak,
                        memory_samples,
                        hours,
                        pc_seen,
                        probes,
                        days,
                        ..
                    } = truth;
                    let idx = &self.idx;
                    let hour = t - t.rem_euclid(3600);
                    let day = day_of(cl, t);
                    memory.eval(t, |pc, v| {
                        let wc = idx.pc_wc[pc];
                        hours[wc].insert(hour);
                        memory_peak[wc] = memory_peak[wc].max(v);
                        memory_samples[wc] += 1;
                        if let Some(days) = days {
                            let d = &mut days[wc][day];
                            d.memory_sum += v;
                            d.memory_samples += 1;
                            match d.memory_hour_peaks.last_mut() {
                                Some((h, peak)) if *h == hour => *peak = peak.max(v),
                                _ => d.memory_hour_peaks.push((hour, v)),
                            }
                        }
                        pc_seen[pc] = true;
                        if probe {
                            probes.entry((t, pc)).or_default().1 = Some(v);
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// Container-only counters: CFS periods (only with a CPU limit) and OOM events.
    fn cadvisor_container_counters(&mut self) -> io::Result<()> {
        let iv = self.cl.interval_secs;
        self.container_counter("container_cpu_cfs_periods", Some(0), |c, inst, k, base| {
            let limit = c.res.cpu_limit_cores()?;
            let demand = c.cpu_demand(inst, k, base);
            Some(usage::cfs_periods(demand, limit, iv).0)
        })?;
        self.container_counter(
            "container_cpu_cfs_throttled_periods",
            Some(1),
            |c, inst, k, base| {
                let limit = c.res.cpu_limit_cores()?;
                let demand = c.cpu_demand(inst, k, base);
                Some(usage::cfs_periods(demand, limit, iv).1)
            },
        )?;
        // The kill is counted on the scrape just before the container goes.
        self.container_counter("container_oom_events", None, |_, inst, k, _| {
            Some(if inst.oom_killed() && k == inst.end - 1 {
                1.0
            } else {
                0.0
            })
        })
    }

    /// One counter family over container instances; `inc` gives the increase
    /// during tick `k`, or `None` when the container has no such series.
    /// Increases that reach the file are summed into CFS truth slot `cfs`.
    fn container_counter(
        &mut self,
        family: &str,
        cfs: Option<usize>,
        inc: impl Fn(&PodContainer, &Instance, i64, i64) -> Option<f64>,
    ) -> io::Result<()> {
        let cl = self.cl;
        let name = format!("{family}_total");
        self.om.family(family, "counter")?;
        let prefixes = container_prefixes(cl, &self.idx, &name);
        let mut counters = vec![0.0; self.idx.instances];
        let mut sweep = Sweep::new(&self.idx.pods_by_start);
        for k in 0..cl.ticks {
            let base = cl.tick_time(k);
            sweep.advance(k, |p| cl.pods[p].start, |p| cl.pods[p].end);
            for &p in &sweep.active {
                let pod = &cl.pods[p];
                let ts = base + cl.nodes[pod.node].offset_secs;
                let scraped = cl.scraped(pod.node, k, ts);
                for (j, c) in pod.containers.iter().enumerate() {
                    let Some((i, inst)) = running(c, k) else {
                        continue;
                    };
                    let Some(d) = inc(c, inst, k, base) else {
                        continue;
                    };
                    let pc = self.idx.pc_base[p] + j;
                    let ctr = &mut counters[self.idx.inst_base[pc] + i];
                    *ctr += d;
                    if let (Some(slot), Some(truth), true) = (cfs, &mut self.truth, ts < cl.end) {
                        truth.cfs[self.idx.pc_wc[pc]][slot] += d;
                    }
                    if scraped {
                        self.om
                            .sample(&prefixes[self.idx.series_of(pod, pc, i)], *ctr, ts)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn ksm(&mut self) -> io::Result<()> {
        let cl = self.cl;
        self.ksm_pod_family("kube_pod_owner", "gauge", |pod| {
            let controller = if pod.owner_kind == "<none>" {
                "<none>"
            } else {
                "true"
            };
            vec![(
                ksm_series(
                    "kube_pod_owner",
                    &[
                        ("namespace", &pod.namespace),
                        ("owner_is_controller", controller),
                        ("owner_kind", pod.owner_kind),
                        ("owner_name", &pod.owner_name),
                        ("pod", &pod.name),
                        ("uid", &pod.uid),
                    ],
                ),
                KsmValue::Const(1.0),
            )]
        })?;
        for (family, limits) in [
            ("kube_pod_container_resource_requests", false),
            ("kube_pod_container_resource_limits", true),
        ] {
            self.ksm_pod_family(family, "gauge", |pod| {
                let mut v = Vec::new();
                for c in &pod.containers {
                    let (cpu, mem) = if limits {
                        (c.res.cpu_limit_millicores, c.res.memory_limit_bytes)
                    } else {
                        (c.res.cpu_request_millicores, c.res.memory_request_bytes)
                    };
                    let quantities = [
                        ("cpu", "core", cpu.map(|m| m as f64 / 1000.0)),
                        ("memory", "byte", mem.map(|b| b as f64)),
                    ];
                    for (resource, unit, q) in quantities {
                        let Some(q) = q else { continue };
                        let labels = [
                            ("container", c.name),
                            ("namespace", &pod.namespace),
                            ("node", &cl.nodes[pod.node].name),
                            ("pod", &pod.name),
                            ("resource", resource),
                            ("uid", &pod.uid),
                            ("unit", unit),
                        ];
                        v.push((ksm_series(family, &labels), KsmValue::Const(q)));
                    }
                }
                v
            })?;
        }
        self.ksm_pod_family("kube_pod_container_info", "gauge", |pod| {
            let mut v = Vec::new();
            for (j, c) in pod.containers.iter().enumerate() {
                for (i, inst) in c.instances.iter().enumerate() {
                    let container_id = format!("containerd://{}", inst.container_id);
                    let labels = [
                        ("container", c.name),
                        ("container_id", container_id.as_str()),
                        ("image", c.image),
                        ("namespace", &pod.namespace),
                        ("pod", &pod.name),
                        ("uid", &pod.uid),
                    ];
                    v.push((
                        ksm_series("kube_pod_container_info", &labels),
                        KsmValue::WhileCurrent(j, i),
                    ));
                }
            }
            v
        })?;
        self.ksm_pod_family("kube_pod_container_status_restarts", "counter", |pod| {
            pod.containers
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let labels = [
                        ("container", c.name),
                        ("namespace", pod.namespace.as_str()),
                        ("pod", pod.name.as_str()),
                        ("uid", pod.uid.as_str()),
                    ];
                    (
                        ksm_series("kube_pod_container_status_restarts_total", &labels),
                        KsmValue::Restarts(j),
                    )
                })
                .collect()
        })?;
        self.ksm_pod_family(
            "kube_pod_container_status_last_terminated_reason",
            "gauge",
            |pod| {
                let mut v = Vec::new();
                for (j, c) in pod.containers.iter().enumerate() {
                    let Some(reason) = c.instances[0].end_reason.filter(|_| c.instances.len() > 1)
                    else {
                        continue;
                    };
                    let labels = [
                        ("container", c.name),
                        ("namespace", pod.namespace.as_str()),
                        ("pod", pod.name.as_str()),
                        ("reason", reason),
                        ("uid", pod.uid.as_str()),
                    ];
                    v.push((
                        ksm_series("kube_pod_container_status_last_terminated_reason", &labels),
                        KsmValue::AfterRestart(j),
                    ));
                }
                v
            },
        )?;
        let rs: Vec<(String, i64, i64)> = cl
            .replicasets
            .iter()
            .map(|o| {
                let labels = [
                    ("namespace", o.namespace.as_str()),
                    ("owner_is_controller", "true"),
                    ("owner_kind", "Deployment"),
                    ("owner_name", o.owner_name.as_str()),
                    ("replicaset", o.name.as_str()),
                ];
                (ksm_series("kube_replicaset_owner", &labels), o.start, o.end)
            })
            .collect();
        self.ksm_object_family("kube_replicaset_owner", &rs)?;
        let jobs: Vec<(String, i64, i64)> = cl
            .jobs
            .iter()
            .map(|o| {
                let labels = [
                    ("job_name", o.name.as_str()),
                    ("namespace", o.namespace.as_str()),
                    ("owner_is_controller", "true"),
                    ("owner_kind", "CronJob"),
                    ("owner_name", o.owner_name.as_str()),
                ];
                (ksm_series("kube_job_owner", &labels), o.start, o.end)
            })
            .collect();
        self.ksm_object_family("kube_job_owner", &jobs)?;
        self.controller_families()
    }

    /// Replicas of Deployments and StatefulSets, their HPAs and PDBs: one
    /// series per object, scraped while the object exists.
    fn controller_families(&mut self) -> io::Result<()> {
        let cl = self.cl;
        let replicas = |c: &ControllerObject, k: i64| cl.replicas_at(c, k).map(|n| n as f64);
        let exists = |c: &ControllerObject, k: i64| cl.replicas_at(c, k).map(|_| 1.0);
        let of_kind = |kind: Kind, label: &'static str, family: &'static str| {
            move |c: &ControllerObject| {
                (c.kind == kind).then(|| {
                    ksm_series(
                        family,
                        &[
                            (label, c.name.as_str()),
                            ("namespace", c.namespace.as_str()),
                        ],
                    )
                })
            }
        };
        self.controller_family(
            "kube_deployment_spec_replicas",
            of_kind(
                Kind::Deployment,
                "deployment",
                "kube_deployment_spec_replicas",
            ),
            replicas,
        )?;
        self.controller_family(
            "kube_statefulset_replicas",
            of_kind(
                Kind::StatefulSet,
                "statefulset",
                "kube_statefulset_replicas",
            ),
            replicas,
        )?;
        self.controller_family(
            "kube_horizontalpodautoscaler_info",
            |c| {
                let h = c.hpa?;
                let kind = c.kind.as_str();
                Some(ksm_series(
                    "kube_horizontalpodautoscaler_info",
                    &[
                        ("horizontalpodautoscaler", h.name),
                        ("namespace", c.namespace.as_str()),
                        ("scaletargetref_api_version", "apps/v1"),
                        ("scaletargetref_kind", kind),
                        ("scaletargetref_name", c.name.as_str()),
                    ],
                ))
            },
            exists,
        )?;
        self.controller_family(
            "kube_horizontalpodautoscaler_spec_target_metric",
            |c| {
                let h = c.hpa?;
                Some(ksm_series(
                    "kube_horizontalpodautoscaler_spec_target_metric",
                    &[
                        ("horizontalpodautoscaler", h.name),
                        ("metric_name", "cpu"),
                        ("metric_target_type", "utilization"),
                        ("namespace", c.namespace.as_str()),
                    ],
                ))
            },
            |c, k| {
                exists(c, k)?;
                Some(c.hpa?.cpu_target_utilization)
            },
        )?;
        for (family, max) in [
            ("kube_horizontalpodautoscaler_spec_min_replicas", false),
            ("kube_horizontalpodautoscaler_spec_max_replicas", true),
        ] {
            self.controller_family(
                family,
                |c| {
                    let h = c.hpa?;
                    Some(ksm_series(
                        family,
                        &[
                            ("horizontalpodautoscaler", h.name),
                            ("namespace", c.namespace.as_str()),
                        ],
                    ))
                },
                |c, k| {
                    let h = c.hpa?;
                    exists(c, k)?;
                    Some(if max { h.max_replicas } else { h.min_replicas } as f64)
                },
            )?;
        }
        let pdb_series = |family: &'static str| {
            move |c: &ControllerObject| {
                let p = c.pdb?;
                Some(ksm_series(
                    family,
                    &[
                        ("namespace", c.namespace.as_str()),
                        ("poddisruptionbudget", p.name),
                    ],
                ))
            }
        };
        self.controller_family(
            "kube_poddisruptionbudget_status_pod_disruptions_allowed",
            pdb_series("kube_poddisruptionbudget_status_pod_disruptions_allowed"),
            |c, k| {
                exists(c, k)?;
                Some(c.pdb?.disruptions_allowed as f64)
            },
        )?;
        self.controller_family(
            "kube_poddisruptionbudget_status_expected_pods",
            pdb_series("kube_poddisruptionbudget_status_expected_pods"),
            |c, k| {
                c.pdb?;
                replicas(c, k)
            },
        )
    }

    /// One gauge family with a series per controller object for which
    /// `series_of` gives one; `value` is `None` at ticks without a sample.
    fn controller_family(
        &mut self,
        family: &str,
        series_of: impl Fn(&ControllerObject) -> Option<String>,
        value: impl Fn(&ControllerObject, i64) -> Option<f64>,
    ) -> io::Result<()> {
        let cl = self.cl;
        let series: Vec<(&ControllerObject, String)> = cl
            .controllers
            .iter()
            .filter_map(|c| series_of(c).map(|s| (c, s)))
            .collect();
        self.om.family(family, "gauge")?;
        for k in 0..cl.ticks {
            let ts = cl.tick_time(k) + cl.ksm_offset_secs;
            if !cl.stored(ts) {
                continue;
            }
            for (c, prefix) in &series {
                if let Some(v) = value(c, k) {
                    self.om.sample(prefix, v, ts)?;
                }
            }
        }
        Ok(())
    }

    /// One kube-state-metrics family over pods, scraped while the pod object
    /// exists (for a finished Job's pod, until the Job is deleted).
    fn ksm_pod_family(
        &mut self,
        family: &str,
        kind: &str,
        series_of: impl Fn(&Pod) -> Vec<(String, KsmValue)>,
    ) -> io::Result<()> {
        let cl = self.cl;
        self.om.family(family, kind)?;
        let per_pod: Vec<Vec<(String, KsmValue)>> = cl.pods.iter().map(&series_of).collect();
        let mut sweep = Sweep::new(&self.idx.pods_by_start);
        for k in 0..cl.ticks {
            let ts = cl.tick_time(k) + cl.ksm_offset_secs;
            sweep.advance(k, |p| cl.pods[p].start, |p| cl.pods[p].ksm_end);
            if !cl.stored(ts) {
                continue;
            }
            for &p in &sweep.active {
                let pod = &cl.pods[p];
                for (prefix, value) in &per_pod[p] {
                    let v = match *value {
                        KsmValue::Const(v) => Some(v),
                        KsmValue::WhileCurrent(j, i) => {
                            (current(&pod.containers[j], k).0 == i).then_some(1.0)
                        }
                        KsmValue::Restarts(j) => Some(current(&pod.containers[j], k).0 as f64),
                        KsmValue::AfterRestart(j) => {
                            (current(&pod.containers[j], k).0 > 0).then_some(1.0)
                        }
                    };
                    if let Some(v) = v {
                        self.om.sample(prefix, v, ts)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn ksm_object_family(
        &mut self,
        family: &str,
        objects: &[(String, i64, i64)],
    ) -> io::Result<()> {
        let cl = self.cl;
        self.om.family(family, "gauge")?;
        for k in 0..cl.ticks {
            let ts = cl.tick_time(k) + cl.ksm_offset_secs;
            if !cl.stored(ts) {
                continue;
            }
            for (prefix, start, end) in objects {
                if *start <= k && k < *end {
                    self.om.sample(prefix, 1.0, ts)?;
                }
            }
        }
        Ok(())
    }
}

/// How a kube-state-metrics pod series' value follows the pod's life.
#[derive(Clone, Copy)]
enum KsmValue {
    Const(f64),
    /// Present while instance `.1` is the latest of container `.0`.
    WhileCurrent(usize, usize),
    /// Restart count of container `.0`.
    Restarts(usize),
    /// Present once container `.0` has restarted.
    AfterRestart(usize),
}

fn ksm_series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut v: Vec<(&str, &str)> = labels.to_vec();
    v.extend_from_slice(KSM);
    v.sort_by(|a, b| a.0.cmp(b.0));
    series(name, &v)
}
