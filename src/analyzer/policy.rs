//! The knobs of the guidance, and how overrides combine: global config → namespace →
//! workload → container, then `rightsizer.io/<field>` annotations; most specific wins.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ContainerKey;
use crate::quantity::{parse_cpu_millicores, parse_memory_bytes};

/// Bytes in a mebibyte.
pub const MIB: i64 = 1024 * 1024;

/// Which strategy turns usage into the base numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyName {
    /// The tournament: each container gets the candidate with the least idle cost among
    /// those meeting the safety objective on its walk-forward days.
    Auto,
    /// Every hour of the window counts the same.
    Guidance,
    /// Recent hours weigh more: weight halves every `half_life` (as the VPA recommender).
    Decaying,
    /// Emulation of Robusta KRR's `simple` strategy.
    KrrSimple,
    /// Emulation of the Kubernetes VPA recommender's target.
    Vpa,
    /// Regime changes, a weekly profile, start-ups and recurring peaks under the limit.
    TimeAware,
}

impl StrategyName {
    /// The name in config, annotations and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyName::Auto => "auto",
            StrategyName::Guidance => "guidance",
            StrategyName::Decaying => "decaying",
            StrategyName::KrrSimple => "krr-simple",
            StrategyName::Vpa => "vpa",
            StrategyName::TimeAware => "time-aware",
        }
    }
}

/// What memory is sized from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryBasis {
    /// The highest working set seen in the window (the default: memory is not compressible).
    Max,
    /// A high percentile of the working set, e.g. 99.9.
    Percentile(f64),
}

impl MemoryBasis {
    /// `max` or `p99.9`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "max" | "peak" => Ok(MemoryBasis::Max),
            other => other
                .strip_prefix('p')
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .map(MemoryBasis::Percentile)
                .ok_or_else(|| format!("memory_basis must be \"max\" or a percentile like \"p99.9\", got {other:?}")),
        }
    }

    /// The name used in config, evidence and reports.
    pub fn label(&self) -> String {
        match self {
            MemoryBasis::Max => "peak".into(),
            MemoryBasis::Percentile(p) => format!("p{p}"),
        }
    }
}

impl Serialize for MemoryBasis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MemoryBasis::Max => s.serialize_str("max"),
            MemoryBasis::Percentile(p) => s.serialize_str(&format!("p{p}")),
        }
    }
}

impl<'de> Deserialize<'de> for MemoryBasis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MemoryBasis::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The resolved policy for one workload container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Strategy.
    pub strategy: StrategyName,
    /// Half-life of the decaying strategy.
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// CPU request comes from this percentile of 5-minute CPU usage (95 = p95).
    pub cpu_percentile: f64,
    /// Memory is sized from the peak or a high percentile.
    pub memory_basis: MemoryBasis,
    /// Safety margin added to the CPU percentile and the memory basis (0.15 = 15%).
    pub margin: f64,
    /// CPU limit = this × CPU request; `None` sets no CPU limit (and a finding says so).
    pub cpu_limit_ratio: Option<f64>,
    /// Smallest CPU request proposed, in millicores.
    pub min_cpu_millicores: i64,
    /// Largest CPU request proposed, in millicores.
    pub max_cpu_millicores: Option<i64>,
    /// Smallest memory proposed, in bytes.
    pub min_memory_bytes: i64,
    /// Largest memory proposed, in bytes.
    pub max_memory_bytes: Option<i64>,
    /// How much history to analyze.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// CPU values are rounded up to a multiple of this many millicores.
    pub cpu_round_millicores: i64,
    /// Memory values are rounded up to a multiple of this many bytes.
    pub memory_round_bytes: i64,
    /// A change is proposed only when at least this relative (0.10 = 10%) …
    pub min_change_relative: f64,
    /// … and at least this many millicores of CPU …
    pub min_change_cpu_millicores: i64,
    /// … or this many bytes of memory.
    pub min_change_memory_bytes: i64,
    /// Fewer hours of history than this: no numbers proposed.
    pub min_history_hours: u32,
    /// Fewer CPU samples than this: no numbers proposed.
    pub min_samples: u64,
    /// After an OOMKill, memory ≥ old limit × this …
    pub oom_bump_factor: f64,
    /// … and ≥ old limit + this many bytes.
    pub oom_bump_min_bytes: i64,
    /// Throttled share of CFS periods above which a container counts as CPU-starved.
    pub throttling_ratio: f64,
    /// CPU-starved containers get the CPU request raised by this share on top (0.25 = 25%).
    pub throttling_bump: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strategy: StrategyName::Auto,
            half_life: Duration::from_secs(24 * 3600),
            cpu_percentile: 95.0,
            memory_basis: MemoryBasis::Max,
            margin: 0.15,
            cpu_limit_ratio: Some(4.0),
            min_cpu_millicores: 10,
            max_cpu_millicores: None,
            min_memory_bytes: 32 * MIB,
            max_memory_bytes: None,
            window: Duration::from_secs(14 * 24 * 3600),
            cpu_round_millicores: 1,
            memory_round_bytes: MIB,
            min_change_relative: 0.10,
            min_change_cpu_millicores: 25,
            min_change_memory_bytes: 32 * MIB,
            min_history_hours: 24,
            min_samples: 600,
            oom_bump_factor: 1.2,
            oom_bump_min_bytes: 100 * MIB,
            throttling_ratio: 0.10,
            throttling_bump: 0.25,
        }
    }
}

/// A CPU or memory amount in config: a number (millicores / bytes) or a Kubernetes quantity string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// Plain number: millicores for CPU, bytes for memory.
    Number(i64),
    /// `250m`, `512Mi`, …
    Quantity(String),
}

/// `4`, or `none` for no CPU limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ratio {
    /// A ratio.
    Number(f64),
    /// `none`.
    Word(String),
}

/// Any subset of the policy, as written in config or annotations. Top level of `[policy]`
/// may also hold `namespaces.<ns>` and `workloads."<ns>/<Kind>/<name>[/<container>]"` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyOverride {
    /// See [`Policy::strategy`].
    pub strategy: Option<StrategyName>,
    /// See [`Policy::half_life`].
    #[serde(with = "humantime_serde")]
    pub half_life: Option<Duration>,
    /// See [`Policy::cpu_percentile`].
    pub cpu_percentile: Option<f64>,
    /// See [`Policy::memory_basis`].
    pub memory_basis: Option<MemoryBasis>,
    /// See [`Policy::margin`].
    pub margin: Option<f64>,
    /// See [`Policy::cpu_limit_ratio`]; `"none"` for no CPU limit.
    pub cpu_limit_ratio: Option<Ratio>,
    /// See [`Policy::min_cpu_millicores`].
    pub min_cpu: Option<Amount>,
    /// See [`Policy::max_cpu_millicores`].
    pub max_cpu: Option<Amount>,
    /// See [`Policy::min_memory_bytes`].
    pub min_memory: Option<Amount>,
    /// See [`Policy::max_memory_bytes`].
    pub max_memory: Option<Amount>,
    /// See [`Policy::window`].
    #[serde(with = "humantime_serde")]
    pub window: Option<Duration>,
    /// See [`Policy::cpu_round_millicores`].
    pub cpu_rounding: Option<Amount>,
    /// See [`Policy::memory_round_bytes`].
    pub memory_rounding: Option<Amount>,
    /// See [`Policy::min_change_relative`].
    pub min_change_relative: Option<f64>,
    /// See [`Policy::min_change_cpu_millicores`].
    pub min_change_cpu: Option<Amount>,
    /// See [`Policy::min_change_memory_bytes`].
    pub min_change_memory: Option<Amount>,
    /// See [`Policy::min_history_hours`].
    pub min_history_hours: Option<u32>,
    /// See [`Policy::min_samples`].
    pub min_samples: Option<u64>,
    /// See [`Policy::oom_bump_factor`].
    pub oom_bump_factor: Option<f64>,
    /// See [`Policy::oom_bump_min_bytes`].
    pub oom_bump_min: Option<Amount>,
    /// See [`Policy::throttling_ratio`].
    pub throttling_ratio: Option<f64>,
    /// See [`Policy::throttling_bump`].
    pub throttling_bump: Option<f64>,
    /// Per-namespace overrides (top level only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, PolicyOverride>,
    /// Per-workload (`ns/Kind/name`) or per-container (`ns/Kind/name/container`) overrides (top level only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub workloads: BTreeMap<String, PolicyOverride>,
}

fn amount(value: &Amount, field: &str, cpu: bool) -> Result<i64, String> {
    match value {
        Amount::Number(n) if *n >= 0 => Ok(*n),
        Amount::Number(n) => Err(format!("{field} must not be negative, got {n}")),
        Amount::Quantity(q) if cpu => parse_cpu_millicores(q).map_err(|e| format!("{field}: {e}")),
        Amount::Quantity(q) => parse_memory_bytes(q).map_err(|e| format!("{field}: {e}")),
    }
}

impl Ratio {
    /// The CPU limit ratio it says: a number, or none for `"none"`; `field` names it in the
    /// error.
    fn limit_ratio(&self, field: &str) -> Result<Option<f64>, String> {
        match self {
            Ratio::Number(n) => Ok(Some(*n)),
            Ratio::Word(w) if w == "none" => Ok(None),
            Ratio::Word(w) => Err(format!("{field} must be a number or \"none\", got {w:?}")),
        }
    }
}

impl PolicyOverride {
    /// Applies the fields set here on top of `policy`; `scope` names where they come from in errors.
    pub fn apply(&self, policy: &mut Policy, scope: &str) -> Result<(), String> {
        let f = |name: &str| format!("{scope}.{name}");
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = self.$field.clone() {
                    policy.$field = v;
                }
            };
        }
        set!(strategy);
        set!(half_life);
        set!(cpu_percentile);
        set!(memory_basis);
        set!(margin);
        set!(window);
        set!(min_change_relative);
        set!(min_history_hours);
        set!(min_samples);
        set!(oom_bump_factor);
        set!(throttling_ratio);
        set!(throttling_bump);
        if let Some(r) = &self.cpu_limit_ratio {
            policy.cpu_limit_ratio = r.limit_ratio(&f("cpu_limit_ratio"))?;
        }
        let cpu_fields: [(&Option<Amount>, &str, &mut i64); 3] = [
            (&self.min_cpu, "min_cpu", &mut policy.min_cpu_millicores),
            (
                &self.cpu_rounding,
                "cpu_rounding",
                &mut policy.cpu_round_millicores,
            ),
            (
                &self.min_change_cpu,
                "min_change_cpu",
                &mut policy.min_change_cpu_millicores,
            ),
        ];
        for (value, name, slot) in cpu_fields {
            if let Some(v) = value {
                *slot = amount(v, &f(name), true)?;
            }
        }
        let memory_fields: [(&Option<Amount>, &str, &mut i64); 4] = [
            (&self.min_memory, "min_memory", &mut policy.min_memory_bytes),
            (
                &self.memory_rounding,
                "memory_rounding",
                &mut policy.memory_round_bytes,
            ),
            (
                &self.min_change_memory,
                "min_change_memory",
                &mut policy.min_change_memory_bytes,
            ),
            (
                &self.oom_bump_min,
                "oom_bump_min",
                &mut policy.oom_bump_min_bytes,
            ),
        ];
        for (value, name, slot) in memory_fields {
            if let Some(v) = value {
                *slot = amount(v, &f(name), false)?;
            }
        }
        if let Some(v) = &self.max_cpu {
            policy.max_cpu_millicores = Some(amount(v, &f("max_cpu"), true)?);
        }
        if let Some(v) = &self.max_memory {
            policy.max_memory_bytes = Some(amount(v, &f("max_memory"), false)?);
        }
        policy.validate(scope)
    }

    /// Reads `rightsizer.io/<field>` annotations (dashes or underscores) into an override;
    /// an error names the annotation at fault.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut table = toml::Table::new();
        for (key, value) in annotations {
            let Some(field) = key.strip_prefix("rightsizer.io/") else {
                continue;
            };
            if matches!(field, "ignore" | "values-path" | "namespaces" | "workloads") {
                continue;
            }
            // Annotation values are strings; numbers are tried first so `margin: "0.2"` works.
            let parsed = if let Ok(i) = value.parse::<i64>() {
                toml::Value::Integer(i)
            } else if let Ok(x) = value.parse::<f64>() {
                toml::Value::Float(x)
            } else {
                toml::Value::String(value.clone())
            };
            let field = field.replace('-', "_");
            let single: toml::Table = [(field.clone(), parsed.clone())].into_iter().collect();
            toml::Value::Table(single)
                .try_into::<PolicyOverride>()
                .map_err(|e| {
                    format!(
                        "annotation {key}: {value:?} is not a valid {field}: {}",
                        e.message()
                    )
                })?;
            table.insert(field, parsed);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                format!("invalid rightsizer.io annotations: {}", e.message())
            })
    }
}

impl Policy {
    /// Checks the values make sense; the message names the field.
    ///
    /// Longer than 80 lines on purpose: one flat table of independent checks, one per field,
    /// read top to bottom; splitting it would only scatter the list.
    pub fn validate(&self, scope: &str) -> Result<(), String> {
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        // Each check in order: whether it holds, the field, what it must be, what it is.
        let checks = [
            (
                self.cpu_percentile > 0.0 && self.cpu_percentile <= 100.0,
                "cpu_percentile",
                "in (0, 100]",
                self.cpu_percentile.to_string(),
            ),
            (
                (0.0..=10.0).contains(&self.margin),
                "margin",
                "between 0 and 10",
                self.margin.to_string(),
            ),
            (
                self.cpu_limit_ratio
                    .is_none_or(|r| r >= 1.0 && r.is_finite()),
                "cpu_limit_ratio",
                "at least 1 or \"none\"",
                self.cpu_limit_ratio.unwrap_or_default().to_string(),
            ),
            (
                self.min_cpu_millicores >= 1,
                "min_cpu",
                "at least 1m",
                self.min_cpu_millicores.to_string(),
            ),
            (
                self.min_memory_bytes >= MIB,
                "min_memory",
                "at least 1Mi",
                self.min_memory_bytes.to_string(),
            ),
            (
                self.max_cpu_millicores
                    .is_none_or(|m| m >= self.min_cpu_millicores),
                "max_cpu",
                "at least min_cpu",
                format!("{:?}", self.max_cpu_millicores),
            ),
            (
                self.max_memory_bytes
                    .is_none_or(|m| m >= self.min_memory_bytes),
                "max_memory",
                "at least min_memory",
                format!("{:?}", self.max_memory_bytes),
            ),
            (
                self.window.as_secs() >= 3600,
                "window",
                "at least 1h",
                duration(self.window),
            ),
            (
                self.half_life.as_secs() >= 60,
                "half_life",
                "at least 1m",
                duration(self.half_life),
            ),
            (
                self.cpu_round_millicores >= 1 && self.memory_round_bytes >= 1,
                "cpu_rounding/memory_rounding",
                "at least 1",
                format!("{}/{}", self.cpu_round_millicores, self.memory_round_bytes),
            ),
            (
                (0.0..=10.0).contains(&self.min_change_relative),
                "min_change_relative",
                "between 0 and 10",
                self.min_change_relative.to_string(),
            ),
            (
                // As before: only a factor below 1 is refused (NaN passes this check).
                self.oom_bump_factor.is_nan() || self.oom_bump_factor >= 1.0,
                "oom_bump_factor",
                "at least 1",
                self.oom_bump_factor.to_string(),
            ),
            (
                (0.0..=1.0).contains(&self.throttling_ratio),
                "throttling_ratio",
                "between 0 and 1",
                self.throttling_ratio.to_string(),
            ),
            (
                (0.0..=10.0).contains(&self.throttling_bump),
                "throttling_bump",
                "between 0 and 10",
                self.throttling_bump.to_string(),
            ),
        ];
        match checks.into_iter().find(|(holds, ..)| !holds) {
            Some((_, field, want, got)) => {
                Err(format!("{scope}.{field} must be {want}, got {got}"))
            }
            None => Ok(()),
        }
    }

    /// The window in whole hours.
    pub fn window_hours(&self) -> u32 {
        (self.window.as_secs() / 3600) as u32
    }
}

/// The `[policy]` table: global values plus namespace and workload overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    global: PolicyOverride,
}

impl PolicySet {
    /// Checks every level once, so a typo fails at start-up, not at analysis.
    pub fn new(global: PolicyOverride) -> Result<Self, String> {
        let mut base = Policy::default();
        global.apply(&mut base, "policy")?;
        for (ns, o) in &global.namespaces {
            let mut p = base.clone();
            o.apply(&mut p, &format!("policy.namespaces.{ns}"))?;
            if !o.namespaces.is_empty() || !o.workloads.is_empty() {
                return Err(format!(
                    "policy.namespaces.{ns} can't nest namespaces or workloads"
                ));
            }
        }
        for (w, o) in &global.workloads {
            if w.split('/').count() < 3 || w.split('/').count() > 4 {
                return Err(format!("policy.workloads key {w:?} must be namespace/Kind/name or namespace/Kind/name/container"));
            }
            let mut p = base.clone();
            o.apply(&mut p, &format!("policy.workloads.\"{w}\""))?;
            if !o.namespaces.is_empty() || !o.workloads.is_empty() {
                return Err(format!(
                    "policy.workloads.\"{w}\" can't nest namespaces or workloads"
                ));
            }
        }
        Ok(PolicySet { global })
    }

    /// The global policy (no overrides).
    pub fn global(&self) -> Policy {
        let mut p = Policy::default();
        self.global
            .apply(&mut p, "policy")
            .expect("validated in PolicySet::new");
        p
    }

    /// The longest analysis window of any level, and the setting that asks for it: history
    /// must be kept at least that long.
    pub fn longest_window(&self) -> (Duration, String) {
        let global = self.global();
        let mut longest = (global.window, "policy.window".to_string());
        let levels = self
            .global
            .namespaces
            .iter()
            .map(|(ns, o)| (format!("policy.namespaces.{ns}.window"), o));
        let workloads = self
            .global
            .workloads
            .iter()
            .map(|(w, o)| (format!("policy.workloads.\"{w}\".window"), o));
        for (name, o) in levels.chain(workloads) {
            let mut p = global.clone();
            let _ = o.apply(&mut p, "");
            if p.window > longest.0 {
                longest = (p.window, name);
            }
        }
        longest
    }

    /// The policy for one container, and the levels that contributed, most general first.
    /// Annotation problems don't fail the analysis: they come back as the error string so
    /// the recommendation can carry them as a finding.
    pub fn resolve(
        &self,
        key: &ContainerKey,
        annotations: &BTreeMap<String, String>,
    ) -> (Policy, Vec<String>, Option<String>) {
        let mut p = self.global();
        let mut sources = vec!["defaults".to_string()];
        if self.global != PolicyOverride::default() {
            sources.push("config".into());
        }
        if let Some(o) = self.global.namespaces.get(&key.namespace) {
            let _ = o.apply(&mut p, "");
            sources.push(format!("namespace {}", key.namespace));
        }
        let workload = format!("{}/{}/{}", key.namespace, key.kind, key.workload);
        if let Some(o) = self.global.workloads.get(&workload) {
            let _ = o.apply(&mut p, "");
            sources.push(format!("workload {workload}"));
        }
        let container = format!("{workload}/{}", key.container);
        if let Some(o) = self.global.workloads.get(&container) {
            let _ = o.apply(&mut p, "");
            sources.push(format!("container {container}"));
        }
        let mut problem = None;
        if annotations.keys().any(|k| k.starts_with("rightsizer.io/")) {
            let mut with_annotations = p.clone();
            match PolicyOverride::from_annotations(annotations)
                .and_then(|o| o.apply(&mut with_annotations, "annotation rightsizer.io"))
            {
                Ok(()) if with_annotations != p => {
                    p = with_annotations;
                    sources.push("annotations".into());
                }
                Ok(()) => {}
                Err(e) => problem = Some(e),
            }
        }
        (p, sources, problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, kind: &str, name: &str, c: &str) -> ContainerKey {
        ContainerKey {
            cluster: "c".into(),
            namespace: ns.into(),
            kind: kind.into(),
            workload: name.into(),
            container: c.into(),
        }
    }

    fn set(toml_text: &str) -> Result<PolicySet, String> {
        let o: PolicyOverride = toml::from_str(toml_text).map_err(|e| e.message().to_string())?;
        PolicySet::new(o)
    }

    #[test]
    fn most_specific_wins() {
        let s = set(r#"
            margin = 0.2
            [namespaces.shop]
            cpu_percentile = 90
            min_memory = "64Mi"
            [workloads."shop/Deployment/api"]
            cpu_percentile = 99
            cpu_limit_ratio = "none"
            [workloads."shop/Deployment/api/sidecar"]
            memory_basis = "p99.9"
        "#)
        .unwrap();
        let none = BTreeMap::new();
        let (p, sources, _) = s.resolve(&key("shop", "Deployment", "api", "sidecar"), &none);
        assert_eq!(p.margin, 0.2);
        assert_eq!(p.cpu_percentile, 99.0);
        assert_eq!(p.cpu_limit_ratio, None);
        assert_eq!(p.min_memory_bytes, 64 * MIB);
        assert_eq!(p.memory_basis, MemoryBasis::Percentile(99.9));
        assert_eq!(
            sources,
            [
                "defaults",
                "config",
                "namespace shop",
                "workload shop/Deployment/api",
                "container shop/Deployment/api/sidecar"
            ]
        );
        let (p, _, _) = s.resolve(&key("shop", "Deployment", "web", "web"), &none);
        assert_eq!((p.cpu_percentile, p.cpu_limit_ratio), (90.0, Some(4.0)));
        let (p, sources, _) = s.resolve(&key("data", "StatefulSet", "pg", "pg"), &none);
        assert_eq!(p.cpu_percentile, 95.0);
        assert_eq!(sources, ["defaults", "config"]);
    }

    #[test]
    fn annotations_override_config_and_report_problems() {
        let s = PolicySet::default();
        let k = key("shop", "Deployment", "api", "app");
        let ann: BTreeMap<String, String> = [
            ("rightsizer.io/cpu-percentile".to_string(), "99".to_string()),
            ("rightsizer.io/margin".to_string(), "0.3".to_string()),
            ("rightsizer.io/max-memory".to_string(), "2Gi".to_string()),
            ("rightsizer.io/ignore".to_string(), "false".to_string()),
            ("app.kubernetes.io/name".to_string(), "api".to_string()),
        ]
        .into();
        let (p, sources, problem) = s.resolve(&k, &ann);
        assert_eq!(
            (p.cpu_percentile, p.margin, p.max_memory_bytes),
            (99.0, 0.3, Some(2048 * MIB))
        );
        assert_eq!(sources.last().unwrap(), "annotations");
        assert_eq!(problem, None);
        let bad: BTreeMap<String, String> = [(
            "rightsizer.io/cpu-percentile".to_string(),
            "lots".to_string(),
        )]
        .into();
        let (p, _, problem) = s.resolve(&k, &bad);
        assert_eq!(p.cpu_percentile, 95.0);
        assert_eq!(
            problem.unwrap(),
            "annotation rightsizer.io/cpu-percentile: \"lots\" is not a valid cpu_percentile: invalid type: string \"lots\", expected f64"
        );
    }

    #[test]
    fn a_strategy_annotation_pins_and_an_unknown_one_is_a_problem() {
        let s = PolicySet::default();
        let k = key("shop", "Deployment", "api", "app");
        let ann = |v: &str| -> BTreeMap<String, String> {
            [("rightsizer.io/strategy".to_string(), v.to_string())].into()
        };
        let (p, _, problem) = s.resolve(&k, &ann("time-aware"));
        assert_eq!((p.strategy, problem), (StrategyName::TimeAware, None));
        let (p, _, problem) = s.resolve(&k, &ann("magic"));
        assert_eq!(p.strategy, Policy::default().strategy);
        let problem = problem.unwrap();
        assert!(
            problem.starts_with("annotation rightsizer.io/strategy: \"magic\" is not a valid strategy: unknown variant `magic`"),
            "{problem}"
        );
    }

    #[test]
    fn bad_values_name_their_scope() {
        assert_eq!(
            set("[namespaces.shop]\ncpu_percentile = 150").unwrap_err(),
            "policy.namespaces.shop.cpu_percentile must be in (0, 100], got 150"
        );
        assert_eq!(
            set("cpu_limit_ratio = \"lots\"").unwrap_err(),
            "policy.cpu_limit_ratio must be a number or \"none\", got \"lots\""
        );
        assert!(set("[workloads.api]\nmargin = 0.1")
            .unwrap_err()
            .contains("must be namespace/Kind/name"));
        assert!(set("memory_basis = \"p200\"")
            .unwrap_err()
            .contains("memory_basis must be"));
        assert!(set("min_memory = \"12 apples\"")
            .unwrap_err()
            .contains("min_memory: invalid quantity"));
        assert!(set("margn = 1")
            .unwrap_err()
            .contains("unknown field `margn`"));
    }
}
