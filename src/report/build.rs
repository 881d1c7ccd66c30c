//! [`build`]: recommendations (and the previous report) in, a [`Report`] out. Pure.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use super::{
    line, tidy, Change, ChangeItem, Counts, FindingExample, FindingSummary, GroupTotals,
    HoldoutTotals, Line, Report, Summary, Totals, FINDING_EXAMPLES, REPORT_VERSION,
    THROTTLING_SHARE, TOP_N,
};
use crate::fleet;
use crate::model::{ContainerKey, Recommendation, Severity, Status};

/// The report of `recs` at `generated_at` (unix seconds), with a change section against
/// `previous` when there is one. Deterministic: the order of `recs` does not matter.
pub fn build(recs: &[Recommendation], previous: Option<&Report>, generated_at: i64) -> Report {
    let mut recs: Vec<&Recommendation> = recs.iter().collect();
    recs.sort_by(|a, b| a.key.cmp(&b.key));
    let containers: Vec<Line> = recs.iter().map(|r| line(r)).collect();
    let mut s = Sections::of(&containers);
    let summary = summary(&recs, &containers, &s);
    s.over.truncate(TOP_N);
    s.under.truncate(TOP_N);
    let change = previous.map(|p| change(p, &summary, &containers));
    Report {
        version: REPORT_VERSION,
        generated_at,
        clusters: groups(&recs, |r| (r.key.cluster.clone(), None)),
        namespaces: groups(&recs, |r| {
            (r.key.cluster.clone(), Some(r.key.namespace.clone()))
        }),
        findings: findings(&recs),
        summary,
        over_provisioned: s.over,
        under_provisioned: s.under,
        oom_risks: s.oom,
        throttling_risks: s.throttling,
        insufficient_data: s.insufficient,
        change,
        containers,
        usage: Vec::new(),
    }
}

/// The report's lists of containers, each in its order (before the top lists are cut).
struct Sections {
    over: Vec<Line>,
    under: Vec<Line>,
    oom: Vec<Line>,
    throttling: Vec<Line>,
    insufficient: Vec<Line>,
}

impl Sections {
    fn of(containers: &[Line]) -> Sections {
        let pick = |keep: fn(&Line) -> bool| -> Vec<Line> {
            containers.iter().filter(|l| keep(l)).cloned().collect()
        };
        let mut over = pick(is_over_provisioned);
        over.sort_by(|a, b| {
            descending(a.monthly_savings, b.monthly_savings)
                .then(ascending(a.cpu_cores_delta, b.cpu_cores_delta))
                .then_with(|| a.key.cmp(&b.key))
        });
        let mut under = pick(is_under_provisioned);
        // Critical first (at risk now), then the largest cost increase.
        under.sort_by(|a, b| {
            let critical = |l: &Line| l.severity == Severity::Critical;
            critical(b)
                .cmp(&critical(a))
                .then(ascending(a.monthly_savings, b.monthly_savings))
                .then_with(|| a.key.cmp(&b.key))
        });
        let mut oom = pick(is_oom_risk);
        oom.sort_by_key(|l| {
            (
                Reverse(l.oom_kills),
                Reverse(l.memory_over_limit_hours.unwrap_or(0)),
                l.key.clone(),
            )
        });
        let mut throttling = pick(is_throttling_risk);
        throttling.sort_by(|a, b| {
            descending(throttling_score(a), throttling_score(b)).then_with(|| a.key.cmp(&b.key))
        });
        Sections {
            over,
            under,
            oom,
            throttling,
            insufficient: pick(|l| l.status == Status::InsufficientData),
        }
    }
}

/// The fleet's totals and counts: savings both ways, statuses, severities and the sections'
/// sizes (all of them, not the top lists).
fn summary(recs: &[&Recommendation], containers: &[Line], s: &Sections) -> Summary {
    let fleet = fleet::Totals::of(recs.iter().copied());
    let strategies: std::collections::BTreeSet<String> =
        recs.iter().map(|r| r.strategy.clone()).collect();
    let mut summary = Summary {
        strategies: strategies.into_iter().collect(),
        currency: fleet.currency.clone(),
        totals: fleet.clone().into(),
        monthly_savings_gross: tidy(containers.iter().map(|l| l.monthly_savings.max(0.0)).sum()),
        monthly_cost_increase: tidy(
            containers
                .iter()
                .map(|l| (-l.monthly_savings).max(0.0))
                .sum(),
        ),
        counts: Counts {
            over_provisioned: s.over.len() as i64,
            under_provisioned: s.under.len() as i64,
            oom_risks: s.oom.len() as i64,
            throttling_risks: s.throttling.len() as i64,
            findings: recs.iter().map(|r| r.findings.len() as i64).sum(),
            ..Counts::default()
        },
        holdout: holdout_totals(containers),
    };
    let c = &mut summary.counts;
    c.ok = fleet.status(Status::Ok) as i64;
    c.no_change = fleet.status(Status::NoChange) as i64;
    c.insufficient_data = fleet.status(Status::InsufficientData) as i64;
    c.critical = fleet.severity(Severity::Critical) as i64;
    c.warning = fleet.severity(Severity::Warning) as i64;
    c.info = fleet.severity(Severity::Info) as i64;
    summary
}

/// The held-out figures of the proposed changes against the current values, fleet-wide (how,
/// on [`HoldoutTotals`]); `None` when no container with a proposal has both.
fn holdout_totals(containers: &[Line]) -> Option<HoldoutTotals> {
    /// Σ slack × weight and Σ weight, for the recommended and the current side.
    #[derive(Default)]
    struct Weighted {
        recommended: (f64, f64),
        current: (f64, f64),
    }
    impl Weighted {
        /// Counts a container only when both sides are measured, so the two shares are
        /// over the same containers.
        fn add(
            &mut self,
            rec: (Option<f64>, Option<i64>),
            cur: (Option<f64>, Option<i64>),
            n: f64,
        ) {
            if let ((Some(rs), Some(rr)), (Some(cs), Some(cr))) = (rec, cur) {
                let (rw, cw) = (rr as f64 * n, cr as f64 * n);
                if rw > 0.0 && cw > 0.0 {
                    self.recommended.0 += rs * rw;
                    self.recommended.1 += rw;
                    self.current.0 += cs * cw;
                    self.current.1 += cw;
                }
            }
        }
        fn shares(&self) -> (Option<f64>, Option<f64>) {
            let share = |(sum, weight): (f64, f64)| (weight > 0.0).then(|| tidy(sum / weight));
            (share(self.recommended), share(self.current))
        }
    }
    let mut out = HoldoutTotals::default();
    let (mut cpu, mut memory) = (Weighted::default(), Weighted::default());
    for l in containers.iter().filter(|l| l.status == Status::Ok) {
        let (Some(rec), Some(cur)) = (&l.holdout, &l.holdout_current) else {
            continue;
        };
        out.containers += 1;
        out.memory_overrun_hours += u64::from(rec.memory_overrun_hours);
        out.memory_overrun_hours_current += u64::from(cur.memory_overrun_hours);
        let n = l.replicas.max(0.0);
        cpu.add(
            (rec.cpu_slack, l.recommended.cpu_request_millicores),
            (cur.cpu_slack, l.current.cpu_request_millicores),
            n,
        );
        memory.add(
            (rec.memory_slack, l.recommended.memory_request_bytes),
            (cur.memory_slack, l.current.memory_request_bytes),
            n,
        );
    }
    (out.containers > 0).then(|| {
        (out.cpu_slack, out.cpu_slack_current) = cpu.shares();
        (out.memory_slack, out.memory_slack_current) = memory.shares();
        out
    })
}

/// Saves money: the recommendation lowers what the container costs.
fn is_over_provisioned(l: &Line) -> bool {
    l.status == Status::Ok && l.monthly_savings > 0.0
}

/// Needs more: the recommendation costs money, or the container is at risk now.
fn is_under_provisioned(l: &Line) -> bool {
    l.status != Status::InsufficientData
        && (l.monthly_savings < 0.0 || l.severity == Severity::Critical)
}

fn is_oom_risk(l: &Line) -> bool {
    l.oom_kills > 0
        || l.memory_over_limit_hours.unwrap_or(0) > 0
        || l.findings.iter().any(|c| c == "oom-killed")
}

fn is_throttling_risk(l: &Line) -> bool {
    l.findings.iter().any(|c| c == "cpu-starved")
        || l.cpu_over_limit_share.unwrap_or(0.0) >= THROTTLING_SHARE
}

fn throttling_score(l: &Line) -> f64 {
    l.throttled_ratio
        .unwrap_or(0.0)
        .max(l.cpu_over_limit_share.unwrap_or(0.0))
}

fn ascending(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

fn descending(a: f64, b: f64) -> Ordering {
    b.total_cmp(&a)
}

/// Totals per group, in group order.
fn groups(
    recs: &[&Recommendation],
    group_of: impl Fn(&Recommendation) -> (String, Option<String>),
) -> Vec<GroupTotals> {
    let mut groups: BTreeMap<(String, Option<String>), Vec<&Recommendation>> = BTreeMap::new();
    for r in recs {
        groups.entry(group_of(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((cluster, namespace), members)| GroupTotals {
            cluster,
            namespace,
            totals: Totals::from(fleet::Totals::of(members)),
        })
        .collect()
}

/// Findings by code: the highest severity, how many containers, a few examples.
fn findings(recs: &[&Recommendation]) -> Vec<FindingSummary> {
    let mut by_code: BTreeMap<&str, FindingSummary> = BTreeMap::new();
    for r in recs {
        for f in &r.findings {
            let s = by_code
                .entry(f.code.as_str())
                .or_insert_with(|| FindingSummary {
                    code: f.code.clone(),
                    severity: f.severity,
                    count: 0,
                    examples: Vec::new(),
                });
            s.severity = s.severity.max(f.severity);
            s.count += 1;
            if s.examples.len() < FINDING_EXAMPLES {
                s.examples.push(FindingExample {
                    key: r.key.clone(),
                    message: f.message.clone(),
                });
            }
        }
    }
    let mut out: Vec<FindingSummary> = by_code.into_values().collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.count.cmp(&a.count))
            .then_with(|| a.code.cmp(&b.code))
    });
    out
}

/// Now against the previous report.
fn change(previous: &Report, now: &Summary, containers: &[Line]) -> Change {
    let (t, p) = (&now.totals, &previous.summary.totals);
    let (c, pc) = (&now.counts, &previous.summary.counts);
    let turnover = fleet::critical_turnover(
        containers.iter().map(|l| (&l.key, l.severity)),
        previous.containers.iter().map(|l| (&l.key, l.severity)),
    );
    let now_by_key: BTreeMap<&ContainerKey, &Line> =
        containers.iter().map(|l| (&l.key, l)).collect();
    let before_by_key: BTreeMap<&ContainerKey, &Line> =
        previous.containers.iter().map(|l| (&l.key, l)).collect();
    let new_critical = turnover
        .new
        .iter()
        .map(|key| change_item(now_by_key[key], Some(Severity::Critical)))
        .collect();
    let resolved_critical = turnover
        .resolved
        .iter()
        .map(|key| match now_by_key.get(key) {
            Some(now) => change_item(now, Some(now.severity)),
            None => change_item(before_by_key[key], None),
        })
        .collect();
    Change {
        previous_generated_at: previous.generated_at,
        previous_monthly_savings: p.monthly_savings,
        monthly_savings_delta: tidy(t.monthly_savings - p.monthly_savings),
        requested_cores_delta: tidy(t.requested_cores - p.requested_cores),
        recommended_cores_delta: tidy(t.recommended_cores - p.recommended_cores),
        requested_gib_delta: tidy(t.requested_gib - p.requested_gib),
        recommended_gib_delta: tidy(t.recommended_gib - p.recommended_gib),
        workloads_delta: t.workloads as i64 - p.workloads as i64,
        containers_delta: t.containers as i64 - p.containers as i64,
        counts_delta: Counts {
            ok: c.ok - pc.ok,
            no_change: c.no_change - pc.no_change,
            insufficient_data: c.insufficient_data - pc.insufficient_data,
            critical: c.critical - pc.critical,
            warning: c.warning - pc.warning,
            info: c.info - pc.info,
            over_provisioned: c.over_provisioned - pc.over_provisioned,
            under_provisioned: c.under_provisioned - pc.under_provisioned,
            oom_risks: c.oom_risks - pc.oom_risks,
            throttling_risks: c.throttling_risks - pc.throttling_risks,
            findings: c.findings - pc.findings,
        },
        new_critical,
        resolved_critical,
    }
}

fn change_item(l: &Line, severity: Option<Severity>) -> ChangeItem {
    ChangeItem {
        key: l.key.clone(),
        severity,
        findings: l.findings.clone(),
        reason: l.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Backtest, BacktestFigures, Confidence, Evidence, Finding, Impact, Resources,
    };

    fn rec(namespace: &str, workload: &str, savings: f64, severity: Severity) -> Recommendation {
        Recommendation {
            key: ContainerKey {
                cluster: "prod".into(),
                namespace: namespace.into(),
                kind: "Deployment".into(),
                workload: workload.into(),
                container: "app".into(),
            },
            status: Status::Ok,
            current: Resources {
                cpu_request_millicores: Some(1000),
                cpu_limit_millicores: Some(2000),
                memory_request_bytes: Some(1 << 30),
                memory_limit_bytes: Some(1 << 30),
            },
            recommended: Resources {
                cpu_request_millicores: Some(500),
                cpu_limit_millicores: Some(2000),
                memory_request_bytes: Some(512 << 20),
                memory_limit_bytes: Some(512 << 20),
            },
            confidence: Confidence::High,
            confidence_score: 0.9,
            reason: "because".into(),
            strategy: "guidance".into(),
            evidence: Evidence {
                cpu_percentile: 95.0,
                cpu_mean_millicores: Some(250.0),
                memory_mean_bytes: Some((256 << 20) as f64),
                average_replicas: 2.0,
                history_hours: 168,
                ..Evidence::default()
            },
            computed_at: 0,
            severity,
            findings: Vec::new(),
            backtest: None,
            impact: Some(Impact {
                replicas: 2.0,
                replicas_after: 2.0,
                cpu_cores_delta: -1.0,
                memory_gib_delta: -1.0,
                monthly_cost_delta: -savings,
                currency: "EUR".into(),
            }),
            hpa: None,
        }
    }

    fn names(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.key.workload.as_str()).collect()
    }

    #[test]
    fn top_lists_are_ordered_and_cut() {
        let mut recs: Vec<Recommendation> = (0..14)
            .map(|i| rec("shop", &format!("w{i:02}"), i as f64 * 10.0, Severity::Info))
            .collect();
        recs.push(rec("shop", "costly", -40.0, Severity::Warning));
        recs.push(rec("shop", "pricier", -90.0, Severity::Info));
        recs.push(rec("shop", "starved", 5.0, Severity::Critical));
        let report = build(&recs, None, 100);
        assert_eq!(report.over_provisioned.len(), TOP_N);
        assert_eq!(&names(&report.over_provisioned)[..3], ["w13", "w12", "w11"]);
        // Critical first even when it saves, then the largest cost increase.
        assert_eq!(
            names(&report.under_provisioned),
            ["starved", "pricier", "costly"]
        );
        // 13 of w01..w13 plus `starved` save money; w00 saves nothing.
        assert_eq!(report.summary.counts.over_provisioned, 14);
        assert_eq!(report.summary.currency, "EUR");
        assert_eq!(report.summary.monthly_cost_increase, 130.0);
        let gross: f64 = (1..14).map(|i| i as f64 * 10.0).sum::<f64>() + 5.0;
        assert_eq!(report.summary.monthly_savings_gross, gross);
        assert_eq!(report.summary.totals.monthly_savings, gross - 130.0);
    }

    #[test]
    fn totals_add_up_over_groups() {
        let recs = vec![
            rec("shop", "api", 10.0, Severity::Info),
            rec("shop", "cart", 20.0, Severity::Warning),
            rec("batch", "etl", 5.0, Severity::Critical),
        ];
        let report = build(&recs, None, 100);
        let t = &report.summary.totals;
        assert_eq!((t.workloads, t.containers), (3, 3));
        assert_eq!(t.requested_cores, 6.0);
        assert_eq!(t.recommended_cores, 3.0);
        assert_eq!(t.used_cores, 1.5);
        assert_eq!(t.requested_gib, 6.0);
        let ns: f64 = report
            .namespaces
            .iter()
            .map(|g| g.totals.requested_cores)
            .sum();
        assert_eq!(ns, t.requested_cores);
        assert_eq!(
            report
                .namespaces
                .iter()
                .map(|g| g.namespace.as_deref().unwrap())
                .collect::<Vec<_>>(),
            ["batch", "shop"]
        );
        assert_eq!(report.clusters.len(), 1);
        assert_eq!(report.clusters[0].totals, *t);
        let c = &report.summary.counts;
        assert_eq!((c.critical, c.warning, c.info, c.ok), (1, 1, 1, 3));
    }

    #[test]
    fn risks_findings_and_gaps() {
        let mut oom = rec("shop", "oom", 0.0, Severity::Critical);
        oom.evidence.oom_kills = 3;
        let mut above = rec("shop", "above", 0.0, Severity::Warning);
        above.backtest = Some(Backtest {
            current: BacktestFigures {
                memory_over_limit_hours: Some(2),
                cpu_over_limit_share: Some(0.2),
                ..BacktestFigures::default()
            },
            ..Backtest::default()
        });
        let mut starved = rec("shop", "starved", 0.0, Severity::Critical);
        starved.evidence.throttled_ratio = Some(0.4);
        for (r, code, severity) in [
            (&mut starved, "cpu-starved", Severity::Critical),
            (&mut oom, "oom-killed", Severity::Critical),
            (&mut above, "no-pdb", Severity::Warning),
        ] {
            r.findings.push(Finding {
                code: code.into(),
                severity,
                message: format!("{code} here"),
            });
        }
        let mut gap = rec("shop", "new", 0.0, Severity::Info);
        gap.status = Status::InsufficientData;
        gap.evidence.history_hours = 3;
        let report = build(&[gap, starved, above, oom], None, 100);
        assert_eq!(names(&report.oom_risks), ["oom", "above"]);
        assert_eq!(names(&report.throttling_risks), ["starved", "above"]);
        assert_eq!(names(&report.insufficient_data), ["new"]);
        let codes: Vec<(&str, usize)> = report
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.count))
            .collect();
        assert_eq!(
            codes,
            [("cpu-starved", 1), ("oom-killed", 1), ("no-pdb", 1)]
        );
        assert_eq!(report.findings[0].examples[0].message, "cpu-starved here");
    }

    #[test]
    fn change_against_the_previous_report() {
        let before = build(
            &[
                rec("shop", "api", 10.0, Severity::Critical),
                rec("shop", "gone", 1.0, Severity::Critical),
                rec("shop", "cart", 20.0, Severity::Info),
            ],
            None,
            100,
        );
        let now = build(
            &[
                rec("shop", "api", 12.0, Severity::Info),
                rec("shop", "cart", 20.0, Severity::Critical),
            ],
            Some(&before),
            200,
        );
        let ch = now.change.as_ref().unwrap();
        assert_eq!(ch.previous_generated_at, 100);
        assert_eq!(ch.previous_monthly_savings, 31.0);
        assert_eq!(ch.monthly_savings_delta, 1.0);
        assert_eq!(ch.containers_delta, -1);
        assert_eq!(ch.counts_delta.critical, -1);
        assert_eq!(names_of(&ch.new_critical), ["cart"]);
        assert_eq!(names_of(&ch.resolved_critical), ["api", "gone"]);
        assert_eq!(ch.resolved_critical[0].severity, Some(Severity::Info));
        assert_eq!(ch.resolved_critical[1].severity, None);
    }

    #[test]
    fn zero_savings_are_not_negative_zero() {
        let report = build(&[rec("shop", "even", 0.0, Severity::Info)], None, 1);
        assert!(report.containers[0].monthly_savings.is_sign_positive());
        assert!(!crate::report::render(&report, crate::report::Format::Csv).contains("-0.00"));
    }

    fn names_of(items: &[ChangeItem]) -> Vec<&str> {
        items.iter().map(|i| i.key.workload.as_str()).collect()
    }

    #[test]
    fn input_order_does_not_matter_and_nan_does_not_leak() {
        let mut odd = rec("shop", "odd", 1.0, Severity::Info);
        odd.evidence.cpu_mean_millicores = Some(f64::NAN);
        odd.impact.as_mut().unwrap().cpu_cores_delta = f64::INFINITY;
        let recs = vec![
            rec("shop", "b", 3.0, Severity::Info),
            odd,
            rec("shop", "a", 3.0, Severity::Info),
        ];
        let mut reversed = recs.clone();
        reversed.reverse();
        let report = build(&recs, None, 1);
        assert_eq!(report, build(&reversed, None, 1));
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
