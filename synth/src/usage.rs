//! Usage profiles and the stateless noise behind them.
//!
//! Every value is a pure function of (key, tick): each metric family is
//! written in its own pass over time, and the pod cgroup, node and CFS series
//! must agree with the container series they are derived from without
//! keeping every sample in memory.

use std::f64::consts::PI;

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in [0, 1) for `(key, tick, lane)`; lanes keep the
/// different draws made for one tick independent.
pub(crate) fn unit(key: u64, tick: i64, lane: u64) -> f64 {
    let h = mix(key ^ mix((tick as u64) ^ lane.wrapping_mul(0xD6E8_FEB8_6659_FD93)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Triangular noise in (-1, 1), centred on 0.
fn centred(key: u64, tick: i64, lane: u64) -> f64 {
    unit(key, tick, lane) + unit(key, tick, lane + 1) - 1.0
}

/// How one container behaves over time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub cpu_cores: f64,
    /// Relative amplitude of the daily cycle (peak mid-afternoon UTC).
    pub cpu_diurnal: f64,
    pub cpu_noise: f64,
    pub cpu_burst_prob: f64,
    pub cpu_burst_factor: f64,
    pub mem_bytes: f64,
    pub mem_noise_bytes: f64,
    /// Leak rate: memory grows with the age of the container (reset on restart).
    pub mem_creep_bytes_per_hour: f64,
    pub mem_spike_prob: f64,
    pub mem_spike_bytes: f64,
    /// Growth spread linearly over the container's whole life (batch jobs).
    pub mem_ramp_bytes: f64,
}

impl Profile {
    pub(crate) const fn steady(cpu_cores: f64, mem_bytes: f64) -> Self {
        Profile {
            cpu_cores,
            cpu_diurnal: 0.3,
            cpu_noise: 0.25,
            cpu_burst_prob: 0.01,
            cpu_burst_factor: 2.0,
            mem_bytes,
            mem_noise_bytes: mem_bytes * 0.03,
            mem_creep_bytes_per_hour: 0.0,
            mem_spike_prob: 0.0,
            mem_spike_bytes: 0.0,
            mem_ramp_bytes: 0.0,
        }
    }
}

/// CPU the container would use at `tick` if nothing capped it, in cores.
pub(crate) fn cpu_demand_cores(
    p: &Profile,
    key: u64,
    tick: i64,
    unix_secs: i64,
    factor: f64,
) -> f64 {
    let hour = (unix_secs.rem_euclid(86_400)) as f64 / 3600.0;
    let diurnal = 1.0 + p.cpu_diurnal * (2.0 * PI * (hour - 8.0) / 24.0).sin();
    let noise = 1.0 + p.cpu_noise * centred(key, tick, 0);
    let burst = if unit(key, tick, 2) < p.cpu_burst_prob {
        p.cpu_burst_factor * (0.75 + 0.5 * unit(key, tick, 3))
    } else {
        1.0
    };
    // A floor keeps idle containers at a realistic few percent of their base.
    (p.cpu_cores * factor * diurnal * noise * burst).max(p.cpu_cores * factor * 0.05)
}

/// The replica count an HPA settles on at `unix_secs`: a business-hours
/// load curve (quiet at night, peaking mid-afternoon UTC like the CPU cycle)
/// between `min` and `max`. Decided per 5-minute slot, so pods live for a
/// while, and scale changes never fall on the last minute of an hour.
pub(crate) fn hpa_replicas(min: usize, max: usize, unix_secs: i64) -> usize {
    let slot = unix_secs - unix_secs.rem_euclid(300);
    let hour = slot.rem_euclid(86_400) as f64 / 3600.0;
    let day = (2.0 * PI * (hour - 8.0) / 24.0).sin().max(0.0);
    let load = min as f64 + (max - min) as f64 * 1.08 * day * day;
    (load.round() as usize).clamp(min, max)
}

/// What the container actually gets: the CFS quota caps usage at the limit.
pub(crate) fn cpu_usage_cores(demand: f64, limit_cores: Option<f64>) -> f64 {
    match limit_cores {
        Some(l) => demand.min(l),
        None => demand,
    }
}

/// The memory timeline of one container instance.
pub(crate) struct MemoryShape {
    /// Ticks since the instance started (0 on its first tick).
    pub age_ticks: i64,
    /// Length of the instance in ticks.
    pub life_ticks: i64,
    pub interval_secs: i64,
    pub limit_bytes: Option<f64>,
    /// The instance ends in an OOM kill: memory climbs to the limit.
    pub oom_ramp: bool,
}

/// Working set in bytes, rounded to whole pages like the kernel reports it.
/// `factor` scales the whole appetite (a new release, a quiet weekend, a
/// batch run); the limit still caps it.
pub(crate) fn memory_bytes(p: &Profile, key: u64, tick: i64, s: &MemoryShape, factor: f64) -> f64 {
    let hours = (s.age_ticks * s.interval_secs) as f64 / 3600.0;
    let life_frac = (s.age_ticks + 1) as f64 / s.life_ticks.max(1) as f64;
    let mut v = p.mem_bytes
        + p.mem_noise_bytes * centred(key, tick, 10)
        + p.mem_creep_bytes_per_hour * hours
        + p.mem_ramp_bytes * life_frac;
    // Spikes last a few scrapes: draw once per 4-tick bucket.
    let bucket = tick.div_euclid(4);
    if unit(key, bucket, 12) < p.mem_spike_prob {
        v += p.mem_spike_bytes * (0.5 + unit(key, bucket, 13));
    }
    // Multiplying by exactly 1.0 changes no bit: histories without a
    // factor stay as they were.
    let mut v = v * factor;
    let base = p.mem_bytes * factor;
    let mut cap = f64::INFINITY;
    if let Some(limit) = s.limit_bytes {
        if s.oom_ramp {
            // Flat for most of the life, then a steep climb into the limit.
            let target = 0.985 * limit;
            v = v.max(base + (target - base) * life_frac.powi(3));
            cap = target;
        } else {
            // Without an OOM the kernel reclaims before the limit is hit.
            cap = 0.95 * limit;
        }
    }
    let v = v.min(cap).max(base * 0.2);
    (v / 4096.0).round() * 4096.0
}

/// Monday 0 .. Sunday 6 of the UTC day holding `unix_secs` (1970-01-01 was a Thursday).
pub(crate) fn utc_weekday(unix_secs: i64) -> i64 {
    (unix_secs.div_euclid(86_400) + 3).rem_euclid(7)
}

/// Saturday or Sunday, UTC.
pub(crate) fn is_weekend(unix_secs: i64) -> bool {
    utc_weekday(unix_secs) >= 5
}

/// CFS periods and throttled periods accrued during one scrape interval.
pub(crate) fn cfs_periods(demand: f64, limit_cores: f64, interval_secs: i64) -> (f64, f64) {
    let periods_max = (interval_secs * 10) as f64; // 100 ms CFS period
    let activity = (0.2 + 2.0 * demand / limit_cores).min(1.0);
    let periods = (periods_max * activity).round();
    let pressure = ((demand / limit_cores - 0.7) / 0.6).clamp(0.0, 1.0);
    let throttled = (periods * pressure).round();
    (periods, throttled)
}
