//! From the base numbers to requests and limits: the margin, the CPU-starvation and OOM
//! rules, rounding, floors and ceilings, and the CPU limit ratio. Each step writes the
//! rule that decided it into the evidence and raises findings where the guidance asks.

use super::strategy::Basis;
use super::{percent, round_up, trim_float, Policy};
use crate::model::{Finding, Resources, Severity};
use crate::quantity;

/// Usage within this share of the CPU limit counts as "at the limit" for the throttling rule.
const AT_LIMIT: f64 = 0.9;

/// What the window says about pressure on the current values.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pressure {
    /// The window's CPU p99, in cores (for "usage at the limit").
    pub cpu_p99_cores: f64,
    /// Throttled share of CFS periods.
    pub throttled_ratio: Option<f64>,
    /// OOM kills in the window.
    pub oom_kills: u32,
    /// The highest memory working set in the window, in bytes.
    pub memory_peak_bytes: f64,
}

/// A sized number with what decided it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sized {
    /// Rules for the evidence, in order.
    pub rules: Vec<String>,
    /// Phrases for the reason line.
    pub reasons: Vec<String>,
    /// Findings raised while sizing.
    pub findings: Vec<Finding>,
}

/// The CPU request and limit from the basis (millicores), and whether the container
/// counted as CPU-starved. `limit_floor` is a limit the strategy wants at least (with
/// why); `min_request` a strategy's own minimum.
pub(crate) fn cpu(
    basis: &Basis,
    limit_floor: Option<&(f64, String)>,
    min_request: Option<i64>,
    current: &Resources,
    pressure: &Pressure,
    policy: &Policy,
    out: &mut Sized,
) -> (i64, Option<i64>, bool) {
    let factor = 1.0 + basis.margin;
    let mut request = basis.value * factor;
    out.rules.push(format!(
        "cpu request = {} {} × {} = {}",
        basis.label,
        quantity::cpu_measured(basis.value),
        trim_float(factor),
        quantity::cpu_measured(request)
    ));
    let starved = starved(current, pressure, policy);
    if starved {
        request = starved_request(request, current, pressure, policy, out);
    }
    let mut request = round_up(request, policy.cpu_round_millicores);
    if let Some(min) = min_request.filter(|m| request < *m) {
        request = min;
        out.rules.push(format!(
            "cpu request raised to the strategy's minimum {}",
            quantity::cpu(min)
        ));
    }
    let request = clamp_cpu(request, policy, out);
    let mut limit = cpu_limit(request, policy, out);
    if let (Some(l), Some((floor, why))) = (limit, limit_floor) {
        let floor = round_up(*floor, policy.cpu_round_millicores);
        if floor > l {
            limit = Some(lift_limit(request, l, floor, why, out));
        }
    }
    (request, limit, starved)
}

/// The guidance calls 4:1 "usually appropriate": a peak above it is covered by lifting the
/// limit (which reserves nothing) rather than raising the request (which does), and the
/// finding says what the other way would have cost.
fn lift_limit(request: i64, ratio_limit: i64, floor: i64, why: &str, out: &mut Sized) -> i64 {
    let ratio = floor as f64 / request.max(1) as f64;
    let request_instead = request as f64 * floor as f64 / ratio_limit.max(1) as f64;
    out.rules.push(format!(
        "cpu limit lifted to {} ({}× the request) to cover {why}",
        quantity::cpu(floor),
        trim_float((ratio * 10.0).round() / 10.0)
    ));
    out.findings.push(Finding {
        code: "cpu-limit-above-ratio".into(),
        severity: Severity::Info,
        message: format!(
            "CPU limit {} is {}× the request, above the usual 4:1, to cover {why}; raising the request to {} instead would reserve {} more per pod",
            quantity::cpu(floor),
            trim_float((ratio * 10.0).round() / 10.0),
            quantity::cpu_measured(request_instead),
            quantity::cpu_measured(request_instead - request as f64)
        ),
    });
    floor
}

/// Throttled often with usage at the limit: observed usage understates demand.
fn starved(current: &Resources, pressure: &Pressure, policy: &Policy) -> bool {
    let at_limit = current
        .cpu_limit_millicores
        .is_some_and(|limit| pressure.cpu_p99_cores * 1000.0 >= AT_LIMIT * limit as f64);
    pressure
        .throttled_ratio
        .is_some_and(|r| r >= policy.throttling_ratio)
        && at_limit
}

fn starved_request(
    mut request: f64,
    current: &Resources,
    pressure: &Pressure,
    policy: &Policy,
    out: &mut Sized,
) -> f64 {
    let ratio = pressure.throttled_ratio.unwrap_or(0.0);
    request *= 1.0 + policy.throttling_bump;
    let mut rule = format!(
        "CPU-starved (throttled {} of periods, usage at the limit): request raised {} above the censored percentile",
        percent(ratio),
        percent(policy.throttling_bump)
    );
    if let (Some(old_limit), Some(ratio_limit)) =
        (current.cpu_limit_millicores, policy.cpu_limit_ratio)
    {
        // Observed usage never exceeded the old limit; the new limit must clear it.
        let needed = old_limit as f64 * (1.0 + policy.throttling_bump) / ratio_limit;
        if request < needed {
            request = needed;
            rule.push_str(&format!(
                " and to {} so the limit clears the old one by {}",
                quantity::cpu_measured(needed),
                percent(policy.throttling_bump)
            ));
        }
    }
    out.rules.push(rule);
    out.reasons.push(format!(
        "CPU-starved: throttled {} of periods",
        percent(ratio)
    ));
    out.findings.push(Finding {
        code: "cpu-starved".into(),
        severity: Severity::Critical,
        message: format!("throttled in {} of CFS periods with usage at the CPU limit: observed usage understates demand", percent(ratio)),
    });
    request
}

fn clamp_cpu(request: i64, policy: &Policy, out: &mut Sized) -> i64 {
    Bounds {
        what: "cpu request",
        min: policy.min_cpu_millicores,
        max: policy.max_cpu_millicores,
        show: quantity::cpu,
        capped_code: "cpu-capped",
        capped_severity: Severity::Warning,
        capped_message: |max| format!("the CPU request wanted more than the policy maximum {max}"),
    }
    .clamp(request, out)
}

fn cpu_limit(request: i64, policy: &Policy, out: &mut Sized) -> Option<i64> {
    match policy.cpu_limit_ratio {
        Some(ratio) => {
            let limit = round_up(request as f64 * ratio, policy.cpu_round_millicores);
            out.rules.push(format!(
                "cpu limit = {} × cpu request = {}",
                trim_float(ratio),
                quantity::cpu(limit)
            ));
            Some(limit)
        }
        None => {
            out.rules
                .push("no cpu limit (policy cpu_limit_ratio = none)".into());
            out.findings.push(Finding {
                code: "no-cpu-limit-by-policy".into(),
                severity: Severity::Info,
                message: "policy sets no CPU limit: the guidance is to always set limits".into(),
            });
            None
        }
    }
}

/// Memory request = limit from the basis (bytes), and whether the history was censored by
/// OOM kills.
pub(crate) fn memory(
    basis: &Basis,
    min_memory: Option<i64>,
    current: &Resources,
    pressure: &Pressure,
    policy: &Policy,
    out: &mut Sized,
) -> (i64, bool) {
    let factor = 1.0 + basis.margin;
    let mut memory = basis.value * factor;
    out.rules.push(format!(
        "memory request = memory limit = {} {} × {} = {}",
        basis.label,
        quantity::memory_measured(basis.value),
        trim_float(factor),
        quantity::memory_measured(memory)
    ));
    let censored = pressure.oom_kills > 0;
    if censored {
        memory = oom_bump(memory, current, pressure, policy, out);
    }
    let mut memory = round_up(memory, policy.memory_round_bytes);
    if let Some(min) = min_memory.filter(|m| memory < *m) {
        memory = min;
        out.rules.push(format!(
            "memory raised to the strategy's minimum {}",
            quantity::memory(min)
        ));
    }
    (clamp_memory(memory, policy, out), censored)
}

fn oom_bump(
    memory: f64,
    current: &Resources,
    pressure: &Pressure,
    policy: &Policy,
    out: &mut Sized,
) -> f64 {
    let old = current
        .memory_limit_bytes
        .map(|b| b as f64)
        .unwrap_or(pressure.memory_peak_bytes);
    let bumped = (old * policy.oom_bump_factor).max(old + policy.oom_bump_min_bytes as f64);
    out.rules.push(format!(
        "OOMKilled {} times: the peak is censored at the old limit {}, so memory ≥ max(old × {}, old + {}) = {}",
        pressure.oom_kills,
        quantity::memory_measured(old),
        trim_float(policy.oom_bump_factor),
        quantity::memory(policy.oom_bump_min_bytes),
        quantity::memory_measured(bumped)
    ));
    out.reasons
        .push(format!("OOMKilled {} times", pressure.oom_kills));
    out.findings.push(Finding {
        code: "oom-killed".into(),
        severity: Severity::Critical,
        message: format!(
            "OOMKilled {} times in the window: memory was raised above the old limit",
            pressure.oom_kills
        ),
    });
    memory.max(bumped)
}

fn clamp_memory(memory: i64, policy: &Policy, out: &mut Sized) -> i64 {
    Bounds {
        what: "memory",
        min: policy.min_memory_bytes,
        max: policy.max_memory_bytes,
        show: quantity::memory,
        capped_code: "memory-capped",
        capped_severity: Severity::Critical,
        capped_message: |max| format!("memory wanted more than the policy maximum {max}: OOM risk"),
    }
    .clamp(memory, out)
}

/// A resource's policy floor and ceiling, and how reaching each is told in the evidence.
struct Bounds {
    what: &'static str,
    min: i64,
    max: Option<i64>,
    show: fn(i64) -> String,
    capped_code: &'static str,
    capped_severity: Severity,
    capped_message: fn(String) -> String,
}

impl Bounds {
    fn clamp(&self, mut value: i64, out: &mut Sized) -> i64 {
        if value < self.min {
            value = self.min;
            out.rules.push(format!(
                "{} raised to the floor {}",
                self.what,
                (self.show)(value)
            ));
        }
        if let Some(max) = self.max.filter(|m| value > *m) {
            value = max;
            out.rules.push(format!(
                "{} capped at the ceiling {}",
                self.what,
                (self.show)(max)
            ));
            out.findings.push(Finding {
                code: self.capped_code.into(),
                severity: self.capped_severity,
                message: (self.capped_message)((self.show)(max)),
            });
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::MIB;

    fn basis(value: f64, label: &str) -> Basis {
        Basis {
            value,
            label: label.into(),
            margin: 0.15,
        }
    }

    fn codes(s: &Sized) -> Vec<&str> {
        s.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn cpu_takes_the_margin_rounds_and_sets_a_four_to_one_limit() {
        let mut out = Sized::default();
        let policy = Policy {
            cpu_round_millicores: 5,
            ..Policy::default()
        };
        let (request, limit, starved) = cpu(
            &basis(100.0, "p95"),
            None,
            None,
            &Resources::default(),
            &Pressure::default(),
            &policy,
            &mut out,
        );
        assert_eq!((request, limit, starved), (115, Some(460), false));
        assert_eq!(out.rules.len(), 2, "{:?}", out.rules);
        assert!(out.rules[0].contains("× 1.15"), "{}", out.rules[0]);
    }

    #[test]
    fn starved_cpu_clears_the_old_limit_and_is_critical() {
        let mut out = Sized::default();
        let current = Resources {
            cpu_limit_millicores: Some(400),
            ..Resources::default()
        };
        let pressure = Pressure {
            cpu_p99_cores: 0.39,
            throttled_ratio: Some(0.3),
            ..Pressure::default()
        };
        let b = basis(100.0, "p95");
        let (request, limit, starved) = cpu(
            &b,
            None,
            None,
            &current,
            &pressure,
            &Policy::default(),
            &mut out,
        );
        assert!(starved);
        // 400m × 1.25 / 4 = 125m beats 100m × 1.15 × 1.25.
        assert_eq!((request, limit), (144, Some(576)));
        assert_eq!(codes(&out), ["cpu-starved"]);
        // Throttled but far from the limit: not starved.
        let calm = Pressure {
            cpu_p99_cores: 0.1,
            ..pressure
        };
        assert!(
            !cpu(
                &b,
                None,
                None,
                &current,
                &calm,
                &Policy::default(),
                &mut Sized::default()
            )
            .2
        );
    }

    #[test]
    fn floors_and_ceilings_bound_both_resources() {
        let policy = Policy {
            max_cpu_millicores: Some(50),
            max_memory_bytes: Some(64 * MIB),
            cpu_limit_ratio: None,
            ..Policy::default()
        };
        let mut out = Sized::default();
        let (request, limit, _) = cpu(
            &basis(1000.0, "p95"),
            None,
            None,
            &Resources::default(),
            &Pressure::default(),
            &policy,
            &mut out,
        );
        assert_eq!((request, limit), (50, None));
        let (memory, censored) = memory(
            &basis(1000.0 * MIB as f64, "peak"),
            None,
            &Resources::default(),
            &Pressure::default(),
            &policy,
            &mut out,
        );
        assert_eq!((memory, censored), (64 * MIB, false));
        assert_eq!(
            codes(&out),
            ["cpu-capped", "no-cpu-limit-by-policy", "memory-capped"]
        );
        let mut floor = Sized::default();
        let (small, _) = super::memory(
            &basis(1.0, "peak"),
            None,
            &Resources::default(),
            &Pressure::default(),
            &Policy::default(),
            &mut floor,
        );
        assert_eq!(small, 32 * MIB);
        assert!(floor.rules.last().unwrap().contains("floor"));
    }

    #[test]
    fn oom_kills_lift_memory_above_the_old_limit() {
        let current = Resources {
            memory_limit_bytes: Some(256 * MIB),
            ..Resources::default()
        };
        let pressure = Pressure {
            oom_kills: 2,
            memory_peak_bytes: 250.0 * MIB as f64,
            ..Pressure::default()
        };
        let mut out = Sized::default();
        let (memory, censored) = memory(
            &basis(250.0 * MIB as f64, "peak"),
            None,
            &current,
            &pressure,
            &Policy::default(),
            &mut out,
        );
        // max(256 × 1.2, 256 + 100) = 356Mi beats 250 × 1.15.
        assert_eq!((memory, censored), (356 * MIB, true));
        assert_eq!(out.reasons, ["OOMKilled 2 times"]);
    }

    #[test]
    fn a_peak_above_four_times_the_request_lifts_the_limit_and_says_why() {
        let mut out = Sized::default();
        let floor = (1000.0, "a weekly batch".to_string());
        let (request, limit, _) = cpu(
            &basis(100.0, "p95"),
            Some(&floor),
            Some(25),
            &Resources::default(),
            &Pressure::default(),
            &Policy::default(),
            &mut out,
        );
        assert_eq!((request, limit), (115, Some(1000)));
        assert_eq!(codes(&out), ["cpu-limit-above-ratio"]);
        assert!(out.findings[0].message.contains("a weekly batch"));
        // A floor under 4 × the request changes nothing; a strategy minimum lifts the request.
        let mut calm = Sized::default();
        let low = (80.0, "start-ups".to_string());
        let (request, limit, _) = cpu(
            &basis(10.0, "p90"),
            Some(&low),
            Some(25),
            &Resources::default(),
            &Pressure::default(),
            &Policy::default(),
            &mut calm,
        );
        assert_eq!((request, limit), (25, Some(100)));
        assert!(calm.findings.is_empty());
    }
}
