//! Fleet arithmetic over recommendations: money saved, totals across replicas, counts by
//! severity and status, and which containers turned critical or stopped being so since a
//! previous run. One definition, so the API, the dashboard, the reports and the pull-request
//! bodies cannot disagree about what "the fleet saves" means. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{ContainerKey, Recommendation, Severity, Status};

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Money the recommendation saves per month (negative when it costs more).
pub fn savings(r: &Recommendation) -> f64 {
    r.impact.as_ref().map_or(0.0, |i| -i.monthly_cost_delta)
}

/// Pods the per-container numbers are multiplied by: the impact's replicas, else the
/// average seen in the window (0 when nothing ran). A workload scaled to zero now still
/// counts with the replicas it ran with, or the fleet would hide what it will cost again.
pub fn replicas(r: &Recommendation) -> f64 {
    r.impact
        .as_ref()
        .map(|i| i.replicas)
        .filter(|n| *n > 0.0)
        .unwrap_or(r.evidence.average_replicas)
}

/// The currency most recommendations are priced in (ties: the first by name); empty when
/// none carries a price.
pub fn currency<'a>(recs: impl IntoIterator<Item = &'a Recommendation>) -> String {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for i in recs.into_iter().filter_map(|r| r.impact.as_ref()) {
        if !i.currency.is_empty() {
            *seen.entry(i.currency.as_str()).or_default() += 1;
        }
    }
    seen.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| c.to_string())
        .unwrap_or_default()
}

/// Totals over a set of recommendations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Workload containers.
    pub containers: usize,
    /// Distinct workloads.
    pub workloads: usize,
    /// Σ current CPU request × replicas, cores.
    pub requested_cores: f64,
    /// Σ mean CPU usage × replicas, cores.
    pub used_cores: f64,
    /// Σ recommended CPU request × replicas, cores; the current request where nothing is
    /// proposed (status other than ok), because that is what the fleet will keep.
    pub recommended_cores: f64,
    /// Σ current memory request × replicas, GiB.
    pub requested_gib: f64,
    /// Σ mean memory working set × replicas, GiB.
    pub used_gib: f64,
    /// Σ recommended memory request × replicas, GiB; the current one where nothing is proposed.
    pub recommended_gib: f64,
    /// −Σ monthly cost delta: positive is money saved per month.
    pub monthly_savings: f64,
    /// See [`currency`].
    pub currency: String,
    /// Containers by severity, indexed by `Severity as usize`: info, warning, critical.
    pub by_severity: [usize; 3],
    /// Containers by status: ok, no-change, insufficient-data.
    pub by_status: [usize; 3],
}

impl Totals {
    /// Adds up `recs`.
    pub fn of<'a>(recs: impl IntoIterator<Item = &'a Recommendation>) -> Self {
        let mut t = Totals::default();
        let mut workloads = BTreeSet::new();
        let mut priced = Vec::new();
        for r in recs {
            t.containers += 1;
            workloads.insert(r.key.workload_key());
            let n = replicas(r);
            let cores = |m: Option<i64>| m.unwrap_or(0) as f64 / 1000.0;
            let gib = |b: Option<i64>| b.unwrap_or(0) as f64 / GIB;
            t.requested_cores += cores(r.current.cpu_request_millicores) * n;
            t.requested_gib += gib(r.current.memory_request_bytes) * n;
            let target = if r.status == Status::Ok {
                &r.recommended
            } else {
                &r.current
            };
            t.recommended_cores += cores(target.cpu_request_millicores) * n;
            t.recommended_gib += gib(target.memory_request_bytes) * n;
            t.used_cores += r.evidence.cpu_mean_millicores.unwrap_or(0.0) / 1000.0 * n;
            t.used_gib += r.evidence.memory_mean_bytes.unwrap_or(0.0) / GIB * n;
            t.monthly_savings += savings(r);
            priced.push(r);
            t.by_severity[r.severity as usize] += 1;
            t.by_status[status_index(r.status)] += 1;
        }
        t.workloads = workloads.len();
        t.currency = currency(priced);
        t
    }

    /// Containers of `severity`.
    pub fn severity(&self, severity: Severity) -> usize {
        self.by_severity[severity as usize]
    }

    /// Containers of `status`.
    pub fn status(&self, status: Status) -> usize {
        self.by_status[status_index(status)]
    }
}

fn status_index(status: Status) -> usize {
    match status {
        Status::Ok => 0,
        Status::NoChange => 1,
        Status::InsufficientData => 2,
    }
}

/// Containers that became critical since a previous run, and those that were critical then
/// and are not now (fixed, or gone), each in key order.
#[derive(Debug, Default, PartialEq)]
pub struct CriticalTurnover<'a> {
    /// Critical now, not before.
    pub new: Vec<&'a ContainerKey>,
    /// Critical before, not now (whether or not the container still exists).
    pub resolved: Vec<&'a ContainerKey>,
}

/// Compares the severities of `now` with those of `before`.
pub fn critical_turnover<'a>(
    now: impl IntoIterator<Item = (&'a ContainerKey, Severity)>,
    before: impl IntoIterator<Item = (&'a ContainerKey, Severity)>,
) -> CriticalTurnover<'a> {
    let critical = |it: &mut dyn Iterator<Item = (&'a ContainerKey, Severity)>| {
        it.filter(|(_, s)| *s == Severity::Critical)
            .map(|(k, _)| k)
            .collect::<BTreeSet<_>>()
    };
    let now = critical(&mut now.into_iter());
    let before = critical(&mut before.into_iter());
    CriticalTurnover {
        new: now.difference(&before).copied().collect(),
        resolved: before.difference(&now).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(workload: &str, status: Status, severity: Severity, replicas: f64) -> Recommendation {
        let mut r = crate::testing::proposal(workload, severity, 10.0);
        r.status = status;
        r.impact.as_mut().unwrap().replicas = replicas;
        r
    }

    #[test]
    fn nothing_proposed_keeps_the_current_request() {
        let ok = rec("a", Status::Ok, Severity::Info, 2.0);
        let same = rec("b", Status::NoChange, Severity::Warning, 2.0);
        let t = Totals::of([&ok, &same]);
        assert_eq!(t.requested_cores, 4.0);
        assert_eq!(t.recommended_cores, 0.5 + 2.0);
        assert_eq!(t.recommended_gib, 1.0 + 2.0);
        assert_eq!(t.monthly_savings, 20.0);
        assert_eq!(t.currency, "EUR");
        assert_eq!((t.workloads, t.containers), (2, 2));
        assert_eq!(t.severity(Severity::Warning), 1);
        assert_eq!(t.status(Status::NoChange), 1);
    }

    #[test]
    fn a_workload_scaled_to_zero_counts_with_the_replicas_it_ran_with() {
        let r = rec("a", Status::Ok, Severity::Info, 0.0);
        assert_eq!(replicas(&r), 3.0);
        assert_eq!(Totals::of([&r]).requested_cores, 3.0);
    }

    #[test]
    fn turnover_names_new_and_resolved_critical_containers() {
        let a = rec("a", Status::Ok, Severity::Critical, 1.0);
        let b = rec("b", Status::Ok, Severity::Critical, 1.0);
        let c = rec("c", Status::Ok, Severity::Info, 1.0);
        let t = critical_turnover(
            [(&a.key, Severity::Critical), (&c.key, Severity::Info)],
            [(&b.key, Severity::Critical), (&a.key, Severity::Warning)],
        );
        assert_eq!(t.new, vec![&a.key]);
        assert_eq!(t.resolved, vec![&b.key]);
    }
}
