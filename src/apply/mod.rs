//! Applying recommendations in place: the `resize` subresource of running pods (stable in
//! Kubernetes 1.35, beta and on by default since 1.33), so a change lands in minutes without
//! editing the workload's template. The pull request stays the durable record; this makes
//! the running pods match it sooner. [`plan`] decides (pure), [`kube`] reads and sends.

pub mod applier;
pub mod kube;
pub mod oom;
pub mod plan;

use std::fmt::Write;

pub use applier::{Applier, ApplyMode};
pub use plan::{Decision, PlanOptions, PlannedResize};

/// The records of the lines of `plan` that were sent (those with an outcome), for the store,
/// counted in `rightsizer_resizes_total` as they go.
pub fn change_records(
    plan: &[PlannedResize],
    cluster: &str,
    actor: &str,
    kind: &str,
    at: i64,
) -> Vec<crate::model::ChangeRecord> {
    plan.iter()
        .filter_map(|l| {
            let outcome = l.outcome.clone()?;
            crate::telemetry::metrics().resize(if kind == "rollback" && outcome == "resized" {
                "rolled-back"
            } else {
                &outcome
            });
            Some(crate::model::ChangeRecord {
                id: 0,
                at,
                cluster: cluster.into(),
                namespace: l.namespace.clone(),
                pod: l.pod.clone(),
                container: l.container.clone(),
                workload: l.workload.clone(),
                actor: actor.into(),
                kind: kind.into(),
                before: l.current,
                after: l.target,
                outcome,
                reason: l.reason.clone(),
            })
        })
        .collect()
}

/// The plan as a table: one line per container, its values now and after, the decision and
/// why (and, after a real run, the outcome).
pub fn table(lines: &[PlannedResize]) -> String {
    use crate::quantity::{cpu_opt, memory_opt};
    let mut rows: Vec<[String; 7]> = vec![[
        "POD".into(),
        "CONTAINER".into(),
        "CPU REQ/LIM".into(),
        "MEMORY REQ/LIM".into(),
        "DECISION".into(),
        "REASON".into(),
        "OUTCOME".into(),
    ]];
    for l in lines {
        let (c, t) = (&l.current, &l.target);
        let arrow = |a: String, b: String| if a == b { a } else { format!("{a} → {b}") };
        rows.push([
            format!("{}/{}", l.namespace, l.pod),
            l.container.clone(),
            arrow(
                format!(
                    "{}/{}",
                    cpu_opt(c.cpu_request_millicores),
                    cpu_opt(c.cpu_limit_millicores)
                ),
                format!(
                    "{}/{}",
                    cpu_opt(t.cpu_request_millicores),
                    cpu_opt(t.cpu_limit_millicores)
                ),
            ),
            arrow(
                format!(
                    "{}/{}",
                    memory_opt(c.memory_request_bytes),
                    memory_opt(c.memory_limit_bytes)
                ),
                format!(
                    "{}/{}",
                    memory_opt(t.memory_request_bytes),
                    memory_opt(t.memory_limit_bytes)
                ),
            ),
            format!("{:?}", l.decision).to_lowercase(),
            l.reason.clone(),
            l.outcome.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let count = |d: Decision| lines.iter().filter(|l| l.decision == d).count();
    let _ = write!(
        out,
        "{} to resize, {} skipped, {} refused",
        count(Decision::Resize),
        count(Decision::Skip),
        count(Decision::Refuse)
    );
    out
}
