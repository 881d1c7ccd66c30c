//! The knobs of the guidance, with the defaults from the spec.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How recommendations are computed. Every field has a default; a config file's
/// `[policy]` table overrides any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// CPU request comes from this percentile of 5-minute CPU usage (95 = p95).
    pub cpu_percentile: f64,
    /// Safety margin added to the CPU percentile and the memory peak (0.15 = 15%).
    pub margin: f64,
    /// CPU limit = this × CPU request.
    pub cpu_limit_ratio: f64,
    /// Smallest CPU request proposed, in millicores.
    pub min_cpu_millicores: i64,
    /// Smallest memory request/limit proposed, in bytes.
    pub min_memory_bytes: i64,
    /// How much history to analyze.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer hours of history than this: no numbers proposed.
    pub min_history_hours: u32,
    /// Fewer CPU samples than this: no numbers proposed.
    pub min_samples: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cpu_percentile: 95.0,
            margin: 0.15,
            cpu_limit_ratio: 4.0,
            min_cpu_millicores: 10,
            min_memory_bytes: 32 * MIB,
            window: Duration::from_secs(14 * 24 * 3600),
            min_history_hours: 24,
            min_samples: 600,
        }
    }
}

/// Bytes in a mebibyte.
pub const MIB: i64 = 1024 * 1024;

impl Policy {
    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.cpu_percentile > 0.0 && self.cpu_percentile <= 100.0) {
            return Err(format!(
                "policy.cpu_percentile must be in (0, 100], got {}",
                self.cpu_percentile
            ));
        }
        if !(0.0..=10.0).contains(&self.margin) {
            return Err(format!(
                "policy.margin must be between 0 and 10, got {}",
                self.margin
            ));
        }
        if !(self.cpu_limit_ratio >= 1.0 && self.cpu_limit_ratio.is_finite()) {
            return Err(format!(
                "policy.cpu_limit_ratio must be at least 1, got {}",
                self.cpu_limit_ratio
            ));
        }
        if self.min_cpu_millicores < 1 || self.min_memory_bytes < MIB {
            return Err(
                "policy.min_cpu_millicores must be ≥ 1 and policy.min_memory_bytes ≥ 1Mi".into(),
            );
        }
        if self.window.as_secs() < 3600 {
            return Err("policy.window must be at least 1h".into());
        }
        Ok(())
    }

    /// The window in whole hours.
    pub fn window_hours(&self) -> u32 {
        (self.window.as_secs() / 3600) as u32
    }
}
