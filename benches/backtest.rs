//! The walk-forward backtest and tournament at fleet size: every strategy, `backtest.days`
//! held-out days, for BENCH_CONTAINERS workload containers (default 10,000) with
//! BENCH_DAYS days (default 30) of hourly summaries each. Prints wall time, CPU time and
//! peak RSS at a quarter, half and all of the fleet, so the growth shows.
//!
//! Generating 10,000 × 720 hours × 2 resources of 60-sample sketches would take longer than
//! analyzing them, so a pool of BENCH_POOL (64) distinct histories is generated once
//! (daily cycles, weekly seasonality, bursts, level shifts, memory creep and spikes, from a
//! seed) and containers cycle through it under their own keys; only `recommend` is timed.
//! That is the analyzer's cost; loading the summaries from a store is not in it.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rightsizer::analyzer::{self, BacktestSettings, Policy, Pricing, StrategyName};
use rightsizer::model::{ContainerKey, Resource, Resources, SignalHour, UsageHour};
use rightsizer::sketch::Sketch;

const END: i64 = 1_764_547_200; // 2025-12-01 00:00 UTC

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: usize) -> ContainerKey {
    ContainerKey {
        cluster: "bench".into(),
        namespace: format!("team-{:03}", i / 100),
        kind: "Deployment".into(),
        workload: format!("svc-{i:05}"),
        container: "app".into(),
    }
}

/// One container's history: `days` days of hours with 60 samples per hour per pod.
fn history(seed: u64, days: i64) -> (Vec<UsageHour>, Vec<SignalHour>, Resources) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let base = rng.gen_range(0.01..2.0);
    let memory = rng.gen_range(50e6..2e9);
    let diurnal = rng.gen_range(0.0..0.6);
    let weekend = if rng.gen_bool(0.3) {
        rng.gen_range(0.2..0.8)
    } else {
        1.0
    };
    let shift_at = rng.gen_bool(0.2).then(|| rng.gen_range(days / 2..days - 2));
    let shift = rng.gen_range(0.4..2.0);
    let pods = rng.gen_range(1..4);
    let from = END - days * 86_400;
    let (mut usage, mut signals) = (Vec::new(), Vec::new());
    for h in 0..days * 24 {
        let t = from + h * 3600;
        let day = h / 24;
        let hour_of_day = (h % 24) as f64;
        let weekday = ((t / 86_400 + 3) % 7) as usize;
        let mut level = base * (1.0 + diurnal * (std::f64::consts::TAU * hour_of_day / 24.0).sin());
        if weekday >= 5 {
            level *= weekend;
        }
        let mut mem_level = memory * (1.0 + 0.002 * (h % 168) as f64);
        if shift_at.is_some_and(|s| day >= s) {
            level *= shift;
            mem_level *= shift.sqrt();
        }
        let (mut cpu, mut mem) = (Sketch::new(), Sketch::new());
        for _ in 0..60 * pods {
            let burst = if rng.gen_bool(0.02) {
                rng.gen_range(1.5..3.0)
            } else {
                1.0
            };
            cpu.insert((level * burst * rng.gen_range(0.7..1.3)).max(0.0))
                .unwrap();
            let spike = if rng.gen_bool(0.005) { 1.3 } else { 1.0 };
            mem.insert(mem_level * spike * rng.gen_range(0.95..1.05))
                .unwrap();
        }
        for (resource, sketch) in [(Resource::Cpu, cpu), (Resource::Memory, mem)] {
            usage.push(UsageHour {
                key: key(0).into(),
                resource,
                hour_start: t,
                sketch,
            });
        }
        let restarts = u32::from(rng.gen_bool(0.003));
        signals.push(SignalHour {
            key: key(0),
            hour_start: t,
            restarts,
            oom_kills: 0,
            cfs_periods: 36_000.0,
            cfs_throttled_periods: 0.0,
        });
    }
    let request = (base * 1500.0) as i64 + 10;
    let current = Resources {
        cpu_request_millicores: Some(request),
        cpu_limit_millicores: Some(request * 2),
        memory_request_bytes: Some((memory * 1.5) as i64),
        memory_limit_bytes: Some((memory * 1.5) as i64),
    };
    (usage, signals, current)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let containers = env("BENCH_CONTAINERS", 10_000);
    let days = env("BENCH_DAYS", 30) as i64;
    let pool_size = env("BENCH_POOL", 64);
    let t0 = Instant::now();
    let pool: Vec<_> = (0..pool_size as u64).map(|s| history(s, days)).collect();
    println!(
        "pool: {pool_size} histories of {days} days generated in {:.1} s, peak RSS {:.0} MB",
        t0.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    let policy = Policy {
        strategy: StrategyName::Auto,
        window: std::time::Duration::from_secs(days as u64 * 86_400),
        ..Policy::default()
    };
    let pricing = Pricing::default();
    let backtest = BacktestSettings::default();
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let mut marks = vec![containers / 4, containers / 2, containers];
    marks.dedup();
    let mut chosen = std::collections::BTreeMap::<String, usize>::new();
    let mut held_out = 0u64;
    println!(
        "backtest of {} held-out days × 5 strategies + tournament, {days} days of summaries each:",
        backtest.days
    );
    println!(
        "{:>11} {:>9} {:>9} {:>13} {:>12}",
        "containers", "wall s", "cpu s", "µs/container", "peak RSS MB"
    );
    for i in 0..containers {
        let (usage, signals, current) = &pool[i % pool_size];
        let k = key(i);
        let ctx = analyzer::Context {
            policy_sources: vec!["defaults".into()],
            policy_problem: None,
            pricing: &pricing,
            step_secs: 60,
            backtest: &backtest,
            previous_strategy: None,
        };
        let input = analyzer::Input {
            key: &k,
            current: *current,
            usage,
            signals,
            workload: None,
        };
        let r = analyzer::recommend(&input, &policy, &ctx, END - 1, END);
        *chosen.entry(r.strategy.clone()).or_default() += 1;
        held_out += r
            .evidence
            .backtest
            .as_ref()
            .and_then(|b| b.holdout.as_ref())
            .map_or(0, |h| u64::from(h.days));
        if marks.contains(&(i + 1)) {
            let wall = wall0.elapsed().as_secs_f64();
            println!(
                "{:>11} {:>9.2} {:>9.2} {:>13.0} {:>12.1}",
                i + 1,
                wall,
                cpu_seconds() - cpu0,
                wall * 1e6 / (i + 1) as f64,
                peak_rss_mb()
            );
        }
    }
    println!("held-out container-days scored: {held_out}; strategies chosen: {chosen:?}");
    let wall = wall0.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "target ≤ 10 s and ≤ 300 MB at {containers} containers: {} ({wall:.2} s), {} ({rss:.0} MB)",
        verdict(wall <= 10.0),
        verdict(rss <= 300.0)
    );
}
