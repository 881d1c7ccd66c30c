//! The synthetic cluster's ground truth against a real Prometheus 2.42:
//! backfill the generated OpenMetrics with promtool, ask the collector's two
//! queries, and demand the same numbers.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::BufWriter;
use std::time::Instant;

use rightsizer_synth::{
    self as synth, quantile_exact, GroundTruth, ProbeValue, SynthConfig, TruthEventKind,
    TRUTH_STEP_SECS,
};
use serde_json::Value;
use support::prometheus::{self as prom, Prometheus, TempDir};

/// 2023-11-14 22:00 UTC.
const START: i64 = 1_699_999_200;
const DAYS: i64 = 2;
const CPU_QUERY: &str = r#"max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!="",container!="POD"}[5m]))"#;
const MEMORY_QUERY: &str = r#"max by (namespace, pod, container) (max_over_time(container_memory_working_set_bytes{container!="",container!="POD"}[1m]))"#;
/// Prometheus refuses range answers of more than 11,000 points per series.
const MAX_POINTS: i64 = 11_000;

type PodKey = (String, String, String);

fn assert_close(what: &str, got: f64, want: f64) {
    let scale = got.abs().max(want.abs());
    assert!(
        (got - want).abs() <= 1e-9 * scale || (got - want).abs() < 1e-12,
        "{what}: prometheus {got} vs truth {want}"
    );
}

/// `query_range` in chunks of at most [`MAX_POINTS`] points; values by
/// (namespace, pod, container), then by timestamp.
async fn query_range(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    start: i64,
    end: i64,
) -> BTreeMap<PodKey, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<PodKey, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut from = start;
    while from <= end {
        let to = (from + (MAX_POINTS - 1) * TRUTH_STEP_SECS).min(end);
        let body: Value = client
            .get(format!("{base}/api/v1/query_range"))
            .query(&[
                ("query", query.to_string()),
                ("start", from.to_string()),
                ("end", to.to_string()),
                ("step", TRUTH_STEP_SECS.to_string()),
            ])
            .send()
            .await
            .expect("query_range")
            .json()
            .await
            .expect("query_range JSON");
        assert_eq!(body["status"], "success", "{body}");
        for series in body["data"]["result"].as_array().expect("matrix") {
            let label = |name: &str| series["metric"][name].as_str().unwrap_or("").to_string();
            let key = (label("namespace"), label("pod"), label("container"));
            let points = out.entry(key).or_default();
            for pair in series["values"].as_array().expect("values") {
                let t = pair[0].as_f64().expect("timestamp").round() as i64;
                let v: f64 = pair[1].as_str().expect("value").parse().expect("float");
                points.insert(t, v);
            }
        }
        from = to + TRUTH_STEP_SECS;
    }
    out
}

/// Label sets of every series matching `selector` in `[start, end]`.
async fn series(
    client: &reqwest::Client,
    base: &str,
    selector: &str,
    start: i64,
    end: i64,
) -> Vec<HashMap<String, String>> {
    let body: Value = client
        .get(format!("{base}/api/v1/series"))
        .query(&[
            ("match[]", selector.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
        ])
        .send()
        .await
        .expect("series")
        .json()
        .await
        .expect("series JSON");
    assert_eq!(body["status"], "success", "{body}");
    serde_json::from_value(body["data"].clone()).expect("label sets")
}

/// (namespace, pod) -> (kind, workload), through kube-state-metrics' owner
/// series exactly as the collector resolves them.
async fn owners(
    client: &reqwest::Client,
    base: &str,
    start: i64,
    end: i64,
) -> HashMap<(String, String), (String, String)> {
    let mut rs = HashMap::new();
    for s in series(client, base, "kube_replicaset_owner", start, end).await {
        rs.insert(
            (s["namespace"].clone(), s["replicaset"].clone()),
            s["owner_name"].clone(),
        );
    }
    let mut jobs = HashMap::new();
    for s in series(client, base, "kube_job_owner", start, end).await {
        jobs.insert(
            (s["namespace"].clone(), s["job_name"].clone()),
            s["owner_name"].clone(),
        );
    }
    let mut out = HashMap::new();
    for s in series(client, base, "kube_pod_owner", start, end).await {
        let (ns, pod) = (s["namespace"].clone(), s["pod"].clone());
        let owner = s["owner_name"].clone();
        let resolved = match s["owner_kind"].as_str() {
            "ReplicaSet" => ("Deployment".to_string(), rs[&(ns.clone(), owner)].clone()),
            "Job" => ("CronJob".to_string(), jobs[&(ns.clone(), owner)].clone()),
            "<none>" => ("Pod".to_string(), pod.clone()),
            kind => (kind.to_string(), owner),
        };
        out.insert((ns, pod), resolved);
    }
    out
}

/// Eval timestamps around every rollout and restart, the first CronJob run
/// and both ends of the history.
fn probe_windows(cfg: &SynthConfig) -> Vec<(i64, i64)> {
    let last = cfg.end - TRUTH_STEP_SECS;
    let mut windows = vec![(cfg.start, cfg.start + 600), (last - 600, last)];
    let events = synth::plan_events(cfg);
    assert!(events.iter().any(|e| e.kind == TruthEventKind::Rollout));
    assert!(events.iter().any(|e| e.reason == "OOMKilled"));
    assert!(events.iter().any(|e| e.workload == "etl-worker"));
    for e in &events {
        windows.push((e.time - 180, e.time + 720));
    }
    let first_cron = (cfg.start / 21_600 + 1) * 21_600;
    windows.push((first_cron - 60, first_cron + 900));
    // Both edges of an outage: the rate running out of samples, then coming back.
    if let Some((from, hours)) = cfg.outage {
        let to = from + hours * 3600;
        windows.push((from - 600, from + 600));
        windows.push((to - 120, to + 900));
    }
    // Snap to the eval grid: only those timestamps have a truth.
    let snap = |t: i64| cfg.start + (t - cfg.start).div_euclid(TRUTH_STEP_SECS) * TRUTH_STEP_SECS;
    windows
        .into_iter()
        .map(|(a, b)| (snap(a).max(cfg.start), snap(b).min(last)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_matches_a_real_prometheus() {
    verify(SynthConfig::new(42, START, START + DAYS * 86_400)).await;
}

/// The CLI may pass times that are not hour-aligned; scrapes may be faster
/// than the 60 s eval step (more samples per rate window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_matches_with_30s_scrapes_and_unaligned_times() {
    let start = START + 1234;
    verify(SynthConfig {
        scrape_interval_secs: 30,
        ..SynthConfig::new(5, start, start + 6 * 3600 + 17)
    })
    .await;
}

/// The walk-forward scenarios (a rollout, the weekly batch, daily restarts
/// resetting one series, start-up spikes) across a 2-hour Prometheus outage,
/// with the per-day truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_matches_with_trends_and_an_outage() {
    let end = START + 3 * 86_400;
    verify(SynthConfig {
        trends: true,
        daily_truth: true,
        outage: Some((end - 30 * 3600, 2)),
        ..SynthConfig::new(11, START, end)
    })
    .await;
}

async fn verify(cfg: SynthConfig) {
    let windows = probe_windows(&cfg);
    let probe_times: Vec<i64> = windows
        .iter()
        .flat_map(|&(a, b)| (a..=b).step_by(TRUTH_STEP_SECS as usize))
        .collect();

    let dir = TempDir::new("rightsizer-synth-truth").unwrap();
    let path = dir.path().join("history.om");
    let started = Instant::now();
    let file = BufWriter::new(fs::File::create(&path).unwrap());
    let (truth, probes) = synth::generate_with_probes(&cfg, file, &probe_times).unwrap();
    let generated = started.elapsed();
    let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
    eprintln!(
        "{cfg:?}: generated {} bytes in {generated:?}; promtool took {:?}",
        fs::metadata(&path).unwrap().len(),
        prometheus.backfill_time.unwrap()
    );
    let base = prometheus.url().to_string();
    let client = reqwest::Client::new();

    check_probes(&client, &base, &windows, &probes).await;
    check_distributions(&client, &base, &cfg, &truth).await;
    check_restarts_and_excluded_series(&client, &base, &cfg, &truth).await;
    if cfg.trends {
        check_trends(&client, &base, &cfg, &truth).await;
    }
}

/// The planted patterns are in the truth, and an outage is a gap in every series.
async fn check_trends(
    client: &reqwest::Client,
    base: &str,
    cfg: &SynthConfig,
    truth: &GroundTruth,
) {
    let trends: Vec<_> = truth
        .containers
        .iter()
        .filter(|c| c.namespace == "trends")
        .collect();
    assert_eq!(trends.len(), 5);
    assert!(trends
        .iter()
        .all(|c| c.scenario.is_some() && c.cpu_samples > 0));
    let startup = truth
        .container("trends", "Deployment", "startup", "startup")
        .unwrap();
    assert_eq!(startup.restarts, 3);
    let Some((from, hours)) = cfg.outage else {
        return;
    };
    let to = from + hours * 3600;
    // A range selector in an instant query returns the raw samples, names kept.
    let count = |t: i64, range: i64| {
        let client = client.clone();
        let base = base.to_string();
        async move {
            let body: Value = client
                .get(format!("{base}/api/v1/query"))
                .query(&[
                    ("query", format!("{{__name__=~\".+\"}}[{range}s]")),
                    ("time", t.to_string()),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["status"], "success", "{body}");
            body["data"]["result"].as_array().unwrap().len()
        }
    };
    // 2.42 ranges include both ends: [from, to - 1] is the whole outage.
    assert_eq!(
        count(to - 1, to - 1 - from).await,
        0,
        "samples inside the outage"
    );
    // Not equal: HPA pods come and go with the time of day.
    let (before, after) = (count(from - 1, 59).await, count(to + 59, 59).await);
    assert!(
        before > 100 && after > 100,
        "series around the outage: {before} / {after}"
    );
}

/// Per-pod values at single eval timestamps, including where old and new
/// series overlap (rollout, restart with a new container id, counter reset
/// inside one series, a CronJob pod's short life).
async fn check_probes(
    client: &reqwest::Client,
    base: &str,
    windows: &[(i64, i64)],
    probes: &[ProbeValue],
) {
    let mut want_cpu: BTreeMap<(i64, PodKey), f64> = BTreeMap::new();
    let mut want_memory: BTreeMap<(i64, PodKey), f64> = BTreeMap::new();
    for p in probes {
        let key = (
            p.t,
            (p.namespace.clone(), p.pod.clone(), p.container.clone()),
        );
        if let Some(v) = p.cpu_cores {
            want_cpu.insert(key.clone(), v);
        }
        if let Some(v) = p.memory_bytes {
            want_memory.insert(key, v);
        }
    }
    for (query, want, what) in [
        (CPU_QUERY, &want_cpu, "cpu"),
        (MEMORY_QUERY, &want_memory, "memory"),
    ] {
        let mut got: BTreeMap<(i64, PodKey), f64> = BTreeMap::new();
        for &(a, b) in windows {
            for (key, points) in query_range(client, base, query, a, b).await {
                for (t, v) in points {
                    got.insert((t, key.clone()), v);
                }
            }
        }
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: missing in prometheus {missing:?}, not in truth {extra:?}"
        );
        let mut identical = 0;
        for (k, g) in &got {
            assert_close(&format!("{what} at {k:?}"), *g, want[k]);
            identical += usize::from(g.to_bits() == want[k].to_bits());
        }
        assert!(got.len() > 500, "{what}: only {} probe values", got.len());
        eprintln!(
            "{what}: {} probe values match, {identical} bit for bit",
            got.len()
        );
    }
}

/// Every workload container's pooled distribution, recomputed from
/// Prometheus' full range answers.
async fn check_distributions(
    client: &reqwest::Client,
    base: &str,
    cfg: &SynthConfig,
    truth: &GroundTruth,
) {
    let last = cfg.end - TRUTH_STEP_SECS;
    let owners = owners(client, base, cfg.start, cfg.end).await;
    type Wc = (String, String, String, String);
    let workload = |(ns, pod, container): &PodKey| -> Wc {
        let (kind, name) = owners
            .get(&(ns.clone(), pod.clone()))
            .unwrap_or_else(|| panic!("no owner for {ns}/{pod}"));
        (ns.clone(), kind.clone(), name.clone(), container.clone())
    };
    let mut cpu: BTreeMap<Wc, Vec<f64>> = BTreeMap::new();
    let mut pods: BTreeMap<Wc, BTreeSet<String>> = BTreeMap::new();
    // Per workload container, day block start: CPU values; memory values by hour.
    type Days = BTreeMap<(Wc, i64), (Vec<f64>, BTreeMap<i64, f64>, u64)>;
    let mut days: Days = BTreeMap::new();
    let day_of = |t: i64| cfg.end - ((cfg.end - 1 - t).div_euclid(86_400) + 1) * 86_400;
    for (key, points) in query_range(client, base, CPU_QUERY, cfg.start, last).await {
        let wc = workload(&key);
        pods.entry(wc.clone()).or_default().insert(key.1.clone());
        for (&t, &v) in &points {
            days.entry((wc.clone(), day_of(t))).or_default().0.push(v);
        }
        cpu.entry(wc).or_default().extend(points.values());
    }
    let mut memory: BTreeMap<Wc, (f64, u64)> = BTreeMap::new();
    for (key, points) in query_range(client, base, MEMORY_QUERY, cfg.start, last).await {
        let wc = workload(&key);
        pods.entry(wc.clone()).or_default().insert(key.1.clone());
        for (&t, &v) in &points {
            let day = days.entry((wc.clone(), day_of(t))).or_default();
            let peak = day
                .1
                .entry(t - t.rem_euclid(3600))
                .or_insert(f64::NEG_INFINITY);
            *peak = peak.max(v);
            day.2 += 1;
        }
        let e = memory.entry(wc).or_insert((f64::NEG_INFINITY, 0));
        for v in points.values() {
            e.0 = e.0.max(*v);
            e.1 += 1;
        }
    }
    let truth_keys: BTreeSet<Wc> = truth
        .containers
        .iter()
        .map(|c| {
            (
                c.namespace.clone(),
                c.kind.clone(),
                c.workload.clone(),
                c.container.clone(),
            )
        })
        .collect();
    assert_eq!(cpu.keys().cloned().collect::<BTreeSet<_>>(), truth_keys);
    for c in &truth.containers {
        let wc = (
            c.namespace.clone(),
            c.kind.clone(),
            c.workload.clone(),
            c.container.clone(),
        );
        let name = format!("{}/{}/{}/{}", c.namespace, c.kind, c.workload, c.container);
        let values = cpu.get_mut(&wc).unwrap();
        values.sort_by(f64::total_cmp);
        assert_eq!(values.len() as u64, c.cpu_samples, "{name} cpu samples");
        assert_close(
            &format!("{name} p50"),
            quantile_exact(values, 0.5),
            c.cpu_p50_cores,
        );
        assert_close(
            &format!("{name} p90"),
            quantile_exact(values, 0.9),
            c.cpu_p90_cores,
        );
        assert_close(
            &format!("{name} p95"),
            quantile_exact(values, 0.95),
            c.cpu_p95_cores,
        );
        assert_close(
            &format!("{name} p99"),
            quantile_exact(values, 0.99),
            c.cpu_p99_cores,
        );
        assert_close(
            &format!("{name} max"),
            *values.last().unwrap(),
            c.cpu_max_cores,
        );
        let (peak, n) = memory[&wc];
        assert_eq!(n, c.memory_samples, "{name} memory samples");
        assert_close(&format!("{name} memory peak"), peak, c.memory_peak_bytes);
        assert_eq!(pods[&wc].len(), c.pods, "{name} pods");
        assert_eq!(c.days.is_empty(), !cfg.daily_truth, "{name} days");
        for d in &c.days {
            let (mut cpu, hours, n) = days.remove(&(wc.clone(), d.start)).unwrap_or_default();
            cpu.sort_by(f64::total_cmp);
            assert_eq!(
                cpu.len(),
                d.cpu_cores.len(),
                "{name} cpu values of day {}",
                d.start
            );
            for (g, w) in cpu.iter().zip(&d.cpu_cores) {
                assert_close(&format!("{name} day {} cpu", d.start), *g, *w);
            }
            assert_eq!(
                n, d.memory_samples,
                "{name} memory values of day {}",
                d.start
            );
            let hours: Vec<(i64, f64)> = hours.into_iter().collect();
            assert_eq!(
                hours.len(),
                d.memory_hour_peaks.len(),
                "{name} hours of day {}",
                d.start
            );
            for (g, w) in hours.iter().zip(&d.memory_hour_peaks) {
                assert_eq!(g.0, w.0);
                assert_close(&format!("{name} hour {} peak", g.0), g.1, w.1);
            }
        }
    }
    let api = truth.container("shop", "Deployment", "api", "api").unwrap();
    assert_eq!(
        api.pods, 6,
        "the rolled Deployment is one workload with old and new pods"
    );
}

/// kube-state-metrics' restart counters and OOM reasons agree with the
/// truth, and the series collectors must exclude are really stored.
async fn check_restarts_and_excluded_series(
    client: &reqwest::Client,
    base: &str,
    cfg: &SynthConfig,
    truth: &GroundTruth,
) {
    let instant = |query: String| {
        let client = client.clone();
        let base = base.to_string();
        let t = cfg.end - 1;
        async move {
            let body: Value = client
                .get(format!("{base}/api/v1/query"))
                .query(&[("query", query), ("time", t.to_string())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["status"], "success", "{body}");
            body["data"]["result"].as_array().unwrap().clone()
        }
    };
    let span = format!("{}s", cfg.end - cfg.start);
    let restarts = instant(format!(
        "sum by (namespace, container) (max_over_time(kube_pod_container_status_restarts_total[{span}]))"
    ))
    .await;
    for c in &truth.containers {
        let got = restarts
            .iter()
            .filter(|r| {
                r["metric"]["namespace"] == c.namespace.as_str()
                    && r["metric"]["container"] == c.container.as_str()
            })
            .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .sum::<f64>();
        assert_eq!(
            got as u32, c.restarts,
            "{}/{} restarts",
            c.workload, c.container
        );
    }
    let cart = truth
        .container("shop", "Deployment", "cart", "cart")
        .unwrap();
    assert!(cart.restarts > 0 && cart.oom_kills == cart.restarts);
    let oom = instant(format!(
        "count(max_over_time(kube_pod_container_status_last_terminated_reason{{reason=\"OOMKilled\",container=\"cart\"}}[{span}]))"
    ))
    .await;
    assert_eq!(oom[0]["value"][1], "2", "both cart pods were OOMKilled");
    for selector in [
        r#"container_cpu_usage_seconds_total{container="",pod!=""}"#,
        r#"container_cpu_usage_seconds_total{container="POD"}"#,
        r#"container_memory_working_set_bytes{container=""}"#,
    ] {
        let n = instant(format!("count(count_over_time({selector}[{span}]))")).await;
        assert!(!n.is_empty(), "no series for {selector}");
    }
    let limits = series(
        client,
        base,
        r#"kube_pod_container_resource_limits{namespace="data",container="etl-worker"}"#,
        cfg.start,
        cfg.end,
    )
    .await;
    assert!(limits.is_empty(), "etl-worker has no limits");
    let throttled = series(
        client,
        base,
        r#"container_cpu_cfs_throttled_periods_total{container="etl-worker"}"#,
        cfg.start,
        cfg.end,
    )
    .await;
    assert!(throttled.is_empty(), "no CFS series without a CPU limit");
}

/// Sizes the 14-day demo for `make demo`: run with
/// `cargo test --release --test synth_truth -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_fourteen_days() {
    // 2024-03-09 15:00 UTC. (START + 7 days is 472392 h after the epoch,
    // a multiple of every promtool block size: histories across it always
    // take an extra pass.)
    let start = 1_709_996_400;
    let end = start + 14 * 86_400;
    let cfg = SynthConfig::new(1, start, end);
    let dir = TempDir::new("rightsizer-synth-measure").unwrap();
    let path = dir.path().join("history.om");
    let started = Instant::now();
    let truth = synth::generate(&cfg, fs::File::create(&path).unwrap()).unwrap();
    let generated = started.elapsed();
    let bytes = fs::metadata(&path).unwrap().len();
    let lines = fs::read(&path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let block = prom::max_block_duration_for(end - start);
    let took = prom::backfill(&path, &data, block).unwrap();
    eprintln!(
        "14 days, scale 1: {bytes} bytes, {lines} lines, {} workload containers; generated in {generated:?}; \
         promtool --max-block-duration={block} took {took:?}",
        truth.containers.len()
    );
}
