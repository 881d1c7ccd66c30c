//! Turns hourly usage summaries into recommendations. Pure: no I/O, `now` is passed in.
//!
//! The guidance strategy: CPU request = the CPU percentile (p95) plus the margin,
//! CPU limit = 4 × request; memory request = memory limit = the peak working set
//! plus the margin; floors for both; CPU rounded up to a millicore, memory up to a MiB.

use crate::model::{
    Confidence, ContainerKey, Evidence, Recommendation, Resource, Resources, Status, UsageHour,
};
use crate::quantity;
use crate::sketch::Sketch;

pub mod policy;

pub use policy::{Policy, MIB};

/// Name of the default strategy, reported with every recommendation.
pub const STRATEGY: &str = "guidance";

/// What the analyzer needs for one workload container.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Which workload container.
    pub key: &'a ContainerKey,
    /// Requests and limits in force now.
    pub current: Resources,
    /// Its hourly usage; hours outside the policy window are ignored.
    pub usage: &'a [UsageHour],
}

/// Merged usage over the window.
#[derive(Debug, Default)]
struct Window {
    cpu: Sketch,
    memory: Sketch,
    history_hours: u32,
    first_hour: Option<i64>,
    last_hour: Option<i64>,
}

fn merge_window(usage: &[UsageHour], from: i64, to: i64) -> Window {
    let mut w = Window::default();
    let mut hours: Vec<i64> = Vec::new();
    for u in usage
        .iter()
        .filter(|u| u.hour_start >= from && u.hour_start < to)
    {
        match u.resource {
            Resource::Cpu => w.cpu.merge(&u.sketch),
            Resource::Memory => w.memory.merge(&u.sketch),
        }
        if u.sketch.count() > 0 {
            hours.push(u.hour_start);
        }
    }
    hours.sort_unstable();
    hours.dedup();
    w.history_hours = hours.len() as u32;
    w.first_hour = hours.first().copied();
    w.last_hour = hours.last().copied();
    w
}

/// Trust grows with days of history (full at 7 days) and with how few hours are missing
/// between the first and last hour seen.
fn confidence(w: &Window) -> (Confidence, f64) {
    let (Some(first), Some(last)) = (w.first_hour, w.last_hour) else {
        return (Confidence::Low, 0.0);
    };
    let span_hours = ((last - first) / 3600 + 1) as f64;
    let coverage = f64::from(w.history_hours) / span_hours;
    let history = (f64::from(w.history_hours) / 168.0).min(1.0);
    let score = (history * coverage * 100.0).round() / 100.0;
    let level = if score >= 0.7 {
        Confidence::High
    } else if score >= 0.3 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    (level, score)
}

/// Computes the recommendation for one workload container from the window of
/// `policy.window` that ends with the hour holding `window_end`; `now` is when it runs.
pub fn recommend(input: &Input<'_>, policy: &Policy, window_end: i64, now: i64) -> Recommendation {
    let window_hours = policy.window_hours();
    let to = window_end - window_end.rem_euclid(3600) + 3600;
    let from = to - i64::from(window_hours) * 3600;
    let w = merge_window(input.usage, from, to);
    let (confidence, confidence_score) = confidence(&w);
    let q = policy.cpu_percentile / 100.0;
    let cpu_pct_millicores = w.cpu.quantile(q).map(|cores| cores * 1000.0);
    let memory_peak = (w.memory.count() > 0).then(|| w.memory.max());
    let mut evidence = Evidence {
        cpu_percentile: policy.cpu_percentile,
        cpu_percentile_millicores: cpu_pct_millicores,
        memory_peak_bytes: memory_peak,
        samples: w.cpu.count(),
        memory_samples: w.memory.count(),
        history_hours: w.history_hours,
        window_hours,
        margin: policy.margin,
        rules: Vec::new(),
    };
    let base = Recommendation {
        key: input.key.clone(),
        status: Status::InsufficientData,
        current: input.current,
        recommended: Resources::default(),
        confidence,
        confidence_score,
        reason: String::new(),
        strategy: STRATEGY.into(),
        evidence: evidence.clone(),
        computed_at: now,
    };

    let mut missing = Vec::new();
    if w.history_hours < policy.min_history_hours {
        missing.push(format!(
            "{} hours of history, need {}",
            w.history_hours, policy.min_history_hours
        ));
    }
    if w.cpu.count() < policy.min_samples {
        missing.push(format!(
            "{} CPU samples, need {}",
            w.cpu.count(),
            policy.min_samples
        ));
    }
    let (Some(cpu_pct), Some(peak)) = (cpu_pct_millicores, memory_peak) else {
        missing.push("no memory or CPU usage in the window".into());
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            ..base
        };
    };
    if !missing.is_empty() {
        return Recommendation {
            reason: format!("insufficient data: {}", missing.join("; ")),
            ..base
        };
    }

    let factor = 1.0 + policy.margin;
    let pct_label = format!("p{}", trim_float(policy.cpu_percentile));
    let mut cpu_request = (cpu_pct * factor).ceil() as i64;
    evidence.rules.push(format!(
        "cpu request = {pct_label} {} × {} = {}",
        quantity::cpu_measured(cpu_pct),
        trim_float(factor),
        quantity::cpu(cpu_request)
    ));
    if cpu_request < policy.min_cpu_millicores {
        cpu_request = policy.min_cpu_millicores;
        evidence.rules.push(format!(
            "cpu request raised to the floor {}",
            quantity::cpu(cpu_request)
        ));
    }
    let cpu_limit = (cpu_request as f64 * policy.cpu_limit_ratio).ceil() as i64;
    evidence.rules.push(format!(
        "cpu limit = {} × cpu request = {}",
        trim_float(policy.cpu_limit_ratio),
        quantity::cpu(cpu_limit)
    ));
    let mut memory = round_up_to_mib(peak * factor);
    evidence.rules.push(format!(
        "memory request = memory limit = peak {} × {} = {}",
        quantity::memory_measured(peak),
        trim_float(factor),
        quantity::memory(memory)
    ));
    if memory < policy.min_memory_bytes {
        memory = policy.min_memory_bytes;
        evidence.rules.push(format!(
            "memory raised to the floor {}",
            quantity::memory(memory)
        ));
    }
    let recommended = Resources {
        cpu_request_millicores: Some(cpu_request),
        cpu_limit_millicores: Some(cpu_limit),
        memory_request_bytes: Some(memory),
        memory_limit_bytes: Some(memory),
    };
    let reason = summarize(&input.current, &recommended, &pct_label, cpu_pct, peak);
    Recommendation {
        status: Status::Ok,
        recommended,
        reason,
        evidence,
        ..base
    }
}

fn round_up_to_mib(bytes: f64) -> i64 {
    ((bytes / MIB as f64).ceil() as i64).max(1) * MIB
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn direction(current: Option<i64>, recommended: Option<i64>) -> &'static str {
    match (current, recommended) {
        (None, Some(_)) => "set",
        (Some(c), Some(r)) if r > c => "up",
        (Some(c), Some(r)) if r < c => "down",
        _ => "same",
    }
}

/// One line a person can read in a table: which way each resource moves and from what evidence.
fn summarize(
    current: &Resources,
    rec: &Resources,
    pct_label: &str,
    cpu_pct: f64,
    peak: f64,
) -> String {
    let mut parts = Vec::new();
    if current.cpu_limit_millicores.is_none() || current.memory_limit_bytes.is_none() {
        parts.push("no limits set".to_string());
    }
    parts.push(format!(
        "cpu {} ({pct_label} {})",
        direction(current.cpu_request_millicores, rec.cpu_request_millicores),
        quantity::cpu_measured(cpu_pct)
    ));
    parts.push(format!(
        "memory {} (peak {})",
        direction(current.memory_limit_bytes, rec.memory_limit_bytes),
        quantity::memory_measured(peak)
    ));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000 - 1_700_000_000 % 3600 + 1800;

    fn key() -> ContainerKey {
        ContainerKey {
            cluster: "c".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            workload: "api".into(),
            container: "app".into(),
        }
    }

    /// `hours` hours ending at NOW's hour, CPU cycling through `cpu`, memory through `mem`.
    fn usage(hours: i64, cpu: &[f64], mem: &[f64]) -> Vec<UsageHour> {
        let last = NOW - NOW % 3600;
        let mut out = Vec::new();
        for h in 0..hours {
            let hour_start = last - h * 3600;
            let (mut c, mut m) = (Sketch::new(), Sketch::new());
            for i in 0..60 {
                c.insert(cpu[(i + h as usize) % cpu.len()]).unwrap();
                m.insert(mem[(i + h as usize) % mem.len()]).unwrap();
            }
            out.push(UsageHour {
                key: key(),
                resource: Resource::Cpu,
                hour_start,
                sketch: c,
            });
            out.push(UsageHour {
                key: key(),
                resource: Resource::Memory,
                hour_start,
                sketch: m,
            });
        }
        out
    }

    #[test]
    fn applies_the_guidance() {
        let k = key();
        let cpu: Vec<f64> = (1..=100).map(|i| i as f64 / 1000.0).collect(); // 1m..100m
        let usage = usage(14 * 24, &cpu, &[100.0 * MIB as f64, 200.0 * MIB as f64]);
        let current = Resources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: Some(1000),
            memory_request_bytes: Some(512 * MIB),
            memory_limit_bytes: Some(512 * MIB),
        };
        let r = recommend(
            &Input {
                key: &k,
                current,
                usage: &usage,
            },
            &Policy::default(),
            NOW,
            NOW,
        );
        assert_eq!(r.status, Status::Ok);
        let p95 = r.evidence.cpu_percentile_millicores.unwrap();
        assert!((p95 - 95.0).abs() <= 0.95, "{p95}");
        let req = r.recommended.cpu_request_millicores.unwrap();
        assert_eq!(req, (p95 * 1.15).ceil() as i64);
        assert_eq!(r.recommended.cpu_limit_millicores, Some(4 * req));
        assert_eq!(
            r.recommended.memory_request_bytes,
            r.recommended.memory_limit_bytes
        );
        assert_eq!(r.recommended.memory_limit_bytes, Some(230 * MIB));
        assert_eq!(r.confidence, Confidence::High);
        assert_eq!(r.evidence.history_hours, 336);
        assert_eq!(r.evidence.window_hours, 336);
        assert_eq!(
            r.reason,
            format!("cpu down (p95 {p95:.1}m); memory down (peak 200.0Mi)")
        );
        assert_eq!(r.evidence.rules.len(), 3, "{:?}", r.evidence.rules);
    }

    #[test]
    fn floors_apply_to_idle_containers() {
        let k = key();
        let usage = usage(48, &[0.0, 0.0001], &[MIB as f64]);
        let r = recommend(
            &Input {
                key: &k,
                current: Resources::default(),
                usage: &usage,
            },
            &Policy::default(),
            NOW,
            NOW,
        );
        assert_eq!(r.recommended.cpu_request_millicores, Some(10));
        assert_eq!(r.recommended.cpu_limit_millicores, Some(40));
        assert_eq!(r.recommended.memory_limit_bytes, Some(32 * MIB));
        assert!(
            r.reason.starts_with("no limits set; cpu set"),
            "{}",
            r.reason
        );
        assert!(r.evidence.rules.iter().any(|x| x.contains("floor")));
    }

    #[test]
    fn under_a_day_is_insufficient() {
        let k = key();
        let usage = usage(20, &[0.2], &[MIB as f64 * 300.0]);
        let r = recommend(
            &Input {
                key: &k,
                current: Resources::default(),
                usage: &usage,
            },
            &Policy::default(),
            NOW,
            NOW,
        );
        assert_eq!(r.status, Status::InsufficientData);
        assert_eq!(r.recommended, Resources::default());
        assert_eq!(r.reason, "insufficient data: 20 hours of history, need 24");
        assert_eq!(r.confidence, Confidence::Low);
    }

    #[test]
    fn hours_outside_the_window_are_ignored() {
        let k = key();
        let usage = usage(30 * 24, &[0.1], &[MIB as f64 * 100.0]);
        let r = recommend(
            &Input {
                key: &k,
                current: Resources::default(),
                usage: &usage,
            },
            &Policy::default(),
            NOW,
            NOW,
        );
        assert_eq!(r.evidence.history_hours, 336);
        assert_eq!(r.evidence.samples, 336 * 60);
    }

    #[test]
    fn memory_never_below_the_peak() {
        let k = key();
        for peak_mib in [33.3, 100.0, 511.9, 4096.5] {
            let usage = usage(48, &[0.1], &[peak_mib * MIB as f64]);
            let r = recommend(
                &Input {
                    key: &k,
                    current: Resources::default(),
                    usage: &usage,
                },
                &Policy::default(),
                NOW,
                NOW,
            );
            assert!(
                r.recommended.memory_limit_bytes.unwrap() as f64 >= peak_mib * MIB as f64 * 1.15
            );
        }
    }
}
