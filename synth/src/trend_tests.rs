//! The walk-forward scenarios of [`SynthConfig::trends`], the outage and the
//! per-day truth.

use super::cluster::Cluster;
use super::*;

/// 2024-03-09 15:00 UTC + 14 days: 2024-03-23 15:00 UTC, a Saturday (the
/// end of `tests/scenarios.rs`' history when it runs 14 days).
const END: i64 = 1_709_996_400 + 14 * DAY;
const DAY: i64 = 86_400;
const HOUR: i64 = 3600;

fn trends(days: i64) -> SynthConfig {
    SynthConfig {
        trends: true,
        daily_truth: true,
        ..SynthConfig::new(42, END - days * DAY, END)
    }
}

fn render(cfg: &SynthConfig, probe_times: &[i64]) -> (String, GroundTruth, Vec<ProbeValue>) {
    let mut buf = Vec::new();
    let (truth, probes) = generate_with_probes(cfg, &mut buf, probe_times).unwrap();
    (String::from_utf8(buf).unwrap(), truth, probes)
}

fn container<'t>(truth: &'t GroundTruth, name: &str) -> &'t TruthContainer {
    truth
        .container("trends", "Deployment", name, name)
        .unwrap_or_else(|| panic!("no trends/{name}"))
}

/// The planted pattern, from the plan alone (nothing generated).
fn planned(cfg: &SynthConfig, name: &str) -> TruthScenario {
    Cluster::build(cfg)
        .workload_containers
        .into_iter()
        .find(|w| w.namespace == "trends" && w.workload == name)
        .and_then(|w| w.scenario)
        .unwrap_or_else(|| panic!("no scenario for {name}"))
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = v.into_iter().fold((0.0, 0), |(s, n), x| (s + x, n + 1));
    assert!(n > 0, "mean of nothing");
    sum / n as f64
}

/// Mean pooled CPU and memory of the day blocks in `blocks`.
fn day_means(c: &TruthContainer, blocks: impl IntoIterator<Item = usize> + Clone) -> (f64, f64) {
    let cpu = mean(
        blocks
            .clone()
            .into_iter()
            .flat_map(|i| c.days[i].cpu_cores.clone()),
    );
    let (sum, n) = blocks.into_iter().fold((0.0, 0), |(s, n), i| {
        (s + c.days[i].memory_sum, n + c.days[i].memory_samples)
    });
    (cpu, sum / n as f64)
}

fn weekend(s: &TruthScenario, t: i64) -> bool {
    let TruthScenario::Weekly { weekends, .. } = s else {
        panic!("{s:?}")
    };
    weekends.iter().any(|&(a, b)| a <= t && t < b)
}

#[test]
fn scenarios_are_placed_against_the_end_of_the_history() {
    for days in [10, 14] {
        let cfg = trends(days);
        for (name, cpu, memory) in [("regime-up", 2.0, 1.6), ("regime-down", 0.4, 0.6)] {
            assert_eq!(
                planned(&cfg, name),
                TruthScenario::RegimeChange {
                    at: END - 5 * DAY,
                    cpu_factor: cpu,
                    memory_factor: memory,
                },
                "{days} days"
            );
        }
        let TruthScenario::WeeklyBatch {
            batches,
            cpu_factor,
            ..
        } = planned(&cfg, "weekly-batch")
        else {
            panic!()
        };
        assert_eq!(cpu_factor, 8.0);
        let last = (END - 45 * HOUR, END - 42 * HOUR);
        assert_eq!(
            batches,
            vec![(last.0 - 7 * DAY, last.1 - 7 * DAY), last],
            "{days} days"
        );
        assert!(last.0 >= END - 3 * DAY && batches[0].0 >= cfg.start);
        let TruthScenario::Startup {
            starts, spike_secs, ..
        } = planned(&cfg, "startup")
        else {
            panic!()
        };
        assert_eq!(spike_secs, 300);
        let want: Vec<i64> = (0..days)
            .rev()
            .map(|n| END - 7 * HOUR - 20 * 60 - n * DAY)
            .collect();
        assert_eq!(starts, want, "daily, last 7h20m before the end");
    }
    // 14 days: the held-out last 3 days hold a weekday, the first 11 both kinds.
    let cfg = trends(14);
    let weekly = planned(&cfg, "weekly");
    let hours = |from: i64, to: i64| (from..to).step_by(HOUR as usize);
    assert!(hours(END - 3 * DAY, END).any(|t| !weekend(&weekly, t)));
    assert!(hours(END - 3 * DAY, END).any(|t| weekend(&weekly, t)));
    let first = || hours(cfg.start, cfg.start + 11 * DAY);
    assert!(first().any(|t| weekend(&weekly, t)) && first().any(|t| !weekend(&weekly, t)));
    for t in hours(cfg.start, END) {
        assert_eq!(weekend(&weekly, t), usage::is_weekend(t), "at {t}");
    }
}

#[test]
fn trends_leave_the_demo_workloads_alone() {
    let off = SynthConfig::new(7, END - DAY, END);
    let on = SynthConfig {
        trends: true,
        ..off.clone()
    };
    let (_, a, _) = render(&off, &[]);
    let (_, b, _) = render(&on, &[]);
    assert!(a.containers.iter().all(|c| c.namespace != "trends"));
    let demo: Vec<TruthContainer> = b
        .containers
        .iter()
        .filter(|c| c.namespace != "trends")
        .cloned()
        .collect();
    assert_eq!(a.containers, demo);
    let events: Vec<TruthEvent> = b
        .events
        .iter()
        .filter(|e| e.namespace != "trends")
        .cloned()
        .collect();
    assert_eq!(a.events, events);
    assert_eq!(b.containers.len(), a.containers.len() + 5);
    assert!(b.containers.iter().all(|c| c.days.is_empty()));
    let names: Vec<&str> = b
        .workloads
        .iter()
        .filter(|w| w.namespace == "trends")
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "regime-down",
            "regime-up",
            "startup",
            "weekly",
            "weekly-batch"
        ]
    );
}

#[test]
fn regime_changes_show_in_the_daily_truth() {
    let cfg = trends(7);
    let (_, truth, _) = render(&cfg, &[]);
    let at = END - 5 * DAY;
    for (name, cpu, memory) in [("regime-up", 2.0, 1.6), ("regime-down", 0.4, 0.6)] {
        let c = container(&truth, name);
        assert_eq!(c.pods, 2, "{name}: the old pod and the new one");
        assert!(truth
            .events
            .iter()
            .any(|e| e.workload == name && e.kind == TruthEventKind::Rollout && e.time == at));
        // Blocks 0 and 1 end at `at`; block 2 starts with the surge overlap.
        assert_eq!(c.days[2].start, at);
        let before = day_means(c, 0..2);
        let after = day_means(c, 3..7);
        let (rc, rm) = (after.0 / before.0, after.1 / before.1);
        assert!((rc / cpu - 1.0).abs() < 0.15, "{name} cpu {rc}");
        assert!((rm / memory - 1.0).abs() < 0.06, "{name} memory {rm}");
    }
    days_add_up_to_the_window(&cfg, &truth);
}

/// Per-day detail is the window-wide truth, cut into blocks.
fn days_add_up_to_the_window(cfg: &SynthConfig, truth: &GroundTruth) {
    let blocks = ((cfg.end - cfg.start + DAY - 1) / DAY) as usize;
    for c in &truth.containers {
        let name = format!("{}/{}/{}", c.namespace, c.workload, c.container);
        assert_eq!(c.days.len(), blocks, "{name}");
        for (i, d) in c.days.iter().enumerate() {
            assert_eq!(d.start, cfg.end - (blocks - i) as i64 * DAY, "{name}");
            assert!(d.cpu_cores.windows(2).all(|w| w[0] <= w[1]), "{name}");
            assert!(d
                .memory_hour_peaks
                .iter()
                .all(|&(h, _)| h % HOUR == 0 && h + HOUR > d.start && h < d.start + DAY));
            assert!(d.memory_hour_peaks.windows(2).all(|w| w[0].0 < w[1].0));
        }
        let cpu: u64 = c.days.iter().map(|d| d.cpu_cores.len() as u64).sum();
        assert_eq!(cpu, c.cpu_samples, "{name}");
        let mem: u64 = c.days.iter().map(|d| d.memory_samples).sum();
        assert_eq!(mem, c.memory_samples, "{name}");
        let hours: usize = c.days.iter().map(|d| d.memory_hour_peaks.len()).sum();
        assert!(hours as u32 <= c.history_hours, "{name}");
        let peak = c
            .days
            .iter()
            .flat_map(|d| d.memory_hour_peaks.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        assert_eq!(peak, c.memory_peak_bytes, "{name}");
        let mut all: Vec<f64> = c.days.iter().flat_map(|d| d.cpu_cores.clone()).collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(quantile_exact(&all, 0.95), c.cpu_p95_cores, "{name}");
        assert_eq!(
            all.last().copied().unwrap_or(0.0),
            c.cpu_max_cores,
            "{name}"
        );
    }
}

#[test]
fn weekends_are_quiet() {
    // Friday 2024-03-15 00:00 UTC to Tuesday 00:00: blocks are whole UTC days.
    let friday = 1_710_460_800;
    assert_eq!(usage::utc_weekday(friday), 4);
    let cfg = SynthConfig {
        trends: true,
        daily_truth: true,
        ..SynthConfig::new(3, friday, friday + 4 * DAY)
    };
    let (_, truth, _) = render(&cfg, &[]);
    let c = container(&truth, "weekly");
    let TruthScenario::Weekly {
        weekend_cpu_factor,
        weekend_memory_factor,
        ref weekends,
        ..
    } = *c.scenario.as_ref().unwrap()
    else {
        panic!()
    };
    assert_eq!(weekends, &vec![(friday + DAY, friday + 3 * DAY)]);
    let weekday = day_means(c, [0, 3]);
    let weekend = day_means(c, [1, 2]);
    let (rc, rm) = (weekend.0 / weekday.0, weekend.1 / weekday.1);
    assert!((rc / weekend_cpu_factor - 1.0).abs() < 0.12, "cpu {rc}");
    assert!(
        (rm / weekend_memory_factor - 1.0).abs() < 0.03,
        "memory {rm}"
    );
    // A daily cycle on working days: the afternoon is busier than the night.
    let friday_cpu = &c.days[0].cpu_cores;
    assert!(quantile_exact(friday_cpu, 0.9) > 2.0 * quantile_exact(friday_cpu, 0.1));
    days_add_up_to_the_window(&cfg, &truth);
}

/// Mean CPU and memory of the `container`'s pod at the eval timestamps in `[from, to)`.
fn probe_means(probes: &[ProbeValue], container: &str, from: i64, to: i64) -> (f64, f64) {
    let inside = || {
        probes
            .iter()
            .filter(move |p| p.container == container && from <= p.t && p.t < to)
    };
    (
        mean(inside().filter_map(|p| p.cpu_cores)),
        mean(inside().filter_map(|p| p.memory_bytes)),
    )
}

#[test]
fn weekly_batch_runs_at_its_intervals() {
    let cfg = trends(3);
    let (from, to) = (END - 45 * HOUR, END - 42 * HOUR);
    // The run, skipping the rate's first minutes, and the same hours a day earlier.
    let times: Vec<i64> = (from + 600..to)
        .chain(from + 600 - DAY..to - DAY)
        .step_by(60)
        .collect();
    let (_, truth, probes) = render(&cfg, &times);
    let c = container(&truth, "weekly-batch");
    let Some(TruthScenario::WeeklyBatch {
        batches,
        cpu_factor,
        memory_factor,
        ..
    }) = &c.scenario
    else {
        panic!("{c:?}")
    };
    assert_eq!(batches, &vec![(from, to)]);
    let run = probe_means(&probes, "weekly-batch", from + 600, to);
    let usual = probe_means(&probes, "weekly-batch", from + 600 - DAY, to - DAY);
    let (rc, rm) = (run.0 / usual.0, run.1 / usual.1);
    assert!((rc / cpu_factor - 1.0).abs() < 0.15, "cpu {rc}");
    assert!((rm / memory_factor - 1.0).abs() < 0.05, "memory {rm}");
    // 3 hours in 3 days: the run is the peak, far above the p95.
    let (p95, max) = (c.cpu_p95_cores, c.cpu_max_cores);
    assert!(p95 < 0.2 * max, "p95 {p95}, max {max}");
}

#[test]
fn startup_restarts_reset_one_series_and_spike() {
    let cfg = trends(3);
    let starts = [2, 1, 0].map(|n| END - 7 * HOUR - 20 * 60 - n * DAY);
    let times: Vec<i64> = starts
        .iter()
        .flat_map(|&s| (s..s + 600).chain(s + 1800..s + 3600))
        .step_by(60)
        .collect();
    let (text, truth, probes) = render(&cfg, &times);
    let c = container(&truth, "startup");
    assert_eq!(
        c.scenario,
        Some(TruthScenario::Startup {
            starts: starts.to_vec(),
            spike_secs: 300,
            cpu_factor: 6.0,
        })
    );
    assert_eq!((c.restarts, c.oom_kills, c.pods), (3, 0, 1));
    let restarts: Vec<i64> = truth
        .events
        .iter()
        .filter(|e| e.workload == "startup")
        .map(|e| {
            assert_eq!(
                (e.kind, e.reason.as_str()),
                (TruthEventKind::Restart, "Error")
            );
            e.time
        })
        .collect();
    assert_eq!(restarts, starts);
    // One series without id/name; its counter drops exactly at the restarts.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("container_cpu_usage_seconds_total{container=\"startup\""))
        .collect();
    let series: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l.rsplitn(3, ' ').nth(2).unwrap())
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(!lines[0].contains("id=") && !lines[0].contains("name="));
    let samples: Vec<(i64, f64)> = lines
        .iter()
        .map(|l| {
            let mut f = l.rsplit(' ');
            let t = f.next().unwrap().parse().unwrap();
            (t, f.next().unwrap().parse().unwrap())
        })
        .collect();
    let resets: Vec<i64> = samples
        .windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| w[1].0 - w[1].0.rem_euclid(60))
        .collect();
    assert_eq!(resets, starts);
    for s in starts {
        let spike = probes
            .iter()
            .filter(|p| p.container == "startup" && s <= p.t && p.t < s + 600)
            .filter_map(|p| p.cpu_cores)
            .fold(0.0, f64::max);
        let settled = probe_means(&probes, "startup", s + 1800, s + 3600).0;
        assert!(spike > 4.0 * settled, "{spike} vs {settled} after {s}");
    }
}

#[test]
fn outage_leaves_no_samples_and_the_truth_follows() {
    let (from, hours) = (END - 10 * HOUR, 2);
    let plain = SynthConfig {
        trends: true,
        ..SynthConfig::new(9, END - DAY, END)
    };
    let cfg = SynthConfig {
        outage: Some((from, hours)),
        ..plain.clone()
    };
    let to = from + hours * HOUR;
    let (text, truth, _) = render(&cfg, &[]);
    let (_, whole, _) = render(&plain, &[]);
    let mut before = std::collections::BTreeSet::new();
    let mut after = std::collections::BTreeSet::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let t: i64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(!(from <= t && t < to), "sample in the outage: {l}");
        let family = l.split(['{', ' ']).next().unwrap();
        if (from - 120..from).contains(&t) {
            before.insert(family);
        }
        if (to..to + 120).contains(&t) {
            after.insert(family);
        }
    }
    assert_eq!(before, after);
    for family in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_requests",
        "kube_pod_owner",
        "kube_deployment_spec_replicas",
    ] {
        assert!(before.contains(family), "{family} around the outage");
    }
    for (c, w) in truth.containers.iter().zip(&whole.containers) {
        assert_eq!((&c.namespace, &c.workload), (&w.namespace, &w.workload));
        if c.namespace == "batch" {
            continue; // Its pods run a few minutes every 6 hours: not across the gap.
        }
        let pods = w.pods as u64;
        let lost_cpu = w.cpu_samples - c.cpu_samples;
        let lost_memory = w.memory_samples - c.memory_samples;
        // The 5m rate still extrapolates a few minutes into the gap; max_over_time[1m] does not.
        assert!(
            lost_cpu >= 110 && lost_cpu <= 120 * pods,
            "{}: {lost_cpu}",
            c.workload
        );
        assert!(
            lost_memory >= 115 && lost_memory <= 120 * pods,
            "{}: {lost_memory}",
            c.workload
        );
        // The rate reaches a few minutes into the first hour of the gap, nothing into the second.
        assert_eq!(c.history_hours + 1, w.history_hours, "{}", c.workload);
    }
    // Fixed replica counts read the same; an HPA's average is over the ticks stored.
    for (a, b) in truth.workloads.iter().zip(&whole.workloads) {
        if a.hpa.is_none() {
            assert_eq!(a, b);
        } else {
            assert_ne!(a.average_replicas, b.average_replicas, "{}", a.name);
        }
    }
}

#[test]
fn truth_files_without_the_new_fields_still_load() {
    let (_, truth, _) = render(&SynthConfig::new(7, END - 3 * HOUR, END), &[]);
    let mut json = serde_json::to_value(&truth).unwrap();
    for c in json["containers"].as_array_mut().unwrap() {
        let c = c.as_object_mut().unwrap();
        assert!(!c.contains_key("scenario") && !c.contains_key("days"));
    }
    let back: GroundTruth = serde_json::from_value(json).unwrap();
    assert_eq!(back, truth);
    let s = TruthScenario::RegimeChange {
        at: END,
        cpu_factor: 2.0,
        memory_factor: 1.6,
    };
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["kind"], "regime-change");
    assert_eq!(serde_json::from_value::<TruthScenario>(v).unwrap(), s);
}

#[test]
fn same_seed_gives_the_same_trends() {
    let cfg = SynthConfig {
        outage: Some((END - 2 * HOUR, 1)),
        ..trends(0)
    };
    let cfg = SynthConfig {
        start: END - 4 * HOUR,
        ..cfg
    };
    let (a, ta, _) = render(&cfg, &[]);
    let (b, tb, _) = render(&cfg, &[]);
    assert!(a == b, "outputs differ");
    assert_eq!(ta, tb);
}
