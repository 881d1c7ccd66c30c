//! What the guidance says about a container beyond its numbers: limits, Guaranteed CPU,
//! memory overcommit, disruption budgets and autoscaling.

use crate::model::{Finding, Resources, Severity, WorkloadInfo};

fn finding(code: &str, severity: Severity, message: String) -> Finding {
    Finding {
        code: code.into(),
        severity,
        message,
    }
}

/// Findings about the requests and limits in force.
pub fn about_resources(current: &Resources) -> Vec<Finding> {
    let mut out = Vec::new();
    let c = current;
    let none_set = c.cpu_request_millicores.is_none()
        && c.cpu_limit_millicores.is_none()
        && c.memory_request_bytes.is_none()
        && c.memory_limit_bytes.is_none();
    if none_set {
        out.push(finding(
            "best-effort",
            Severity::Warning,
            "BestEffort: no requests and no limits; the scheduler places it blindly and it is evicted first".into(),
        ));
    } else if c.cpu_limit_millicores.is_none() || c.memory_limit_bytes.is_none() {
        let missing: Vec<&str> = [
            (c.cpu_limit_millicores.is_none(), "CPU"),
            (c.memory_limit_bytes.is_none(), "memory"),
        ]
        .iter()
        .filter(|(m, _)| *m)
        .map(|(_, n)| *n)
        .collect();
        out.push(finding(
            "no-limits",
            Severity::Warning,
            format!(
                "no {} limit: a runaway container can starve its neighbours; always set limits",
                missing.join(" or ")
            ),
        ));
    }
    if let (Some(r), Some(l)) = (c.cpu_request_millicores, c.cpu_limit_millicores) {
        if r == l {
            out.push(finding(
                "guaranteed-cpu",
                Severity::Info,
                "CPU request == CPU limit (Guaranteed CPU): no throttling headroom and poor packing; a 4:1 limit:request ratio packs better".into(),
            ));
        }
    }
    if let (Some(r), Some(l)) = (c.memory_request_bytes, c.memory_limit_bytes) {
        if r != l {
            out.push(finding(
                "memory-overcommit",
                Severity::Warning,
                "memory request ≠ memory limit: overcommitted memory ends in OOM kills, not throttling; set them equal".into(),
            ));
        }
    }
    out
}

/// Findings about the workload: disruption budget and autoscaling.
pub fn about_workload(info: Option<&WorkloadInfo>, average_replicas: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let replicas = info
        .and_then(|i| i.spec_replicas)
        .map(|r| r as f64)
        .unwrap_or(average_replicas);
    let pdb = info.and_then(|i| i.pdb.as_ref());
    // DaemonSets and batch pods are not governed by PodDisruptionBudgets the same way: node
    // drains skip DaemonSet pods and Jobs run to completion.
    let kind_has_pdb = info.is_some_and(|i| {
        matches!(
            i.key.kind.as_str(),
            "Deployment" | "StatefulSet" | "Rollout" | "ReplicaSet"
        )
    });
    let multi = kind_has_pdb && replicas >= 1.5
        || info
            .and_then(|i| i.hpa.as_ref())
            .is_some_and(|h| h.max_replicas.unwrap_or(1) > 1);
    // kube-state-metrics has no PDB selectors: a PDB named otherwise than the workload is
    // invisible, so its absence is only a fact when the Kubernetes API source matched by selector.
    let pdbs_known = info.is_some_and(|i| i.from_kubernetes_api);
    match pdb {
        None if multi && pdbs_known => out.push(finding(
            "no-pdb",
            Severity::Warning,
            format!("{replicas:.0} replicas and no PodDisruptionBudget: applying new resources (or a node drain) can take them all down at once"),
        )),
        None if multi => {
            let name = info.map(|i| i.key.name.as_str()).unwrap_or_default();
            out.push(finding(
                "pdb-unknown",
                Severity::Info,
                format!("PDB unknown (no Kubernetes API source): {replicas:.0} replicas and no PodDisruptionBudget named {name} or {name}-pdb; kube-state-metrics has no selectors, so a PDB named otherwise is not seen. Enable the Kubernetes API source to check by selector"),
            ));
        }
        Some(p) if p.disruptions_allowed == Some(0) && p.expected_pods.unwrap_or(1) > 0 => out.push(finding(
            "pdb-blocks-disruption",
            Severity::Warning,
            format!("PodDisruptionBudget {} allows no voluntary disruption: rolling out new resources and node drains will stall", p.name),
        )),
        _ => {}
    }
    if let Some(h) = info.and_then(|i| i.hpa.as_ref()) {
        if h.cpu_target_utilization.is_some() && h.metrics.iter().all(|m| m.starts_with("cpu ")) {
            out.push(finding(
                "hpa-cpu-only",
                Severity::Info,
                format!("HPA {} scales on CPU utilization only: a lagging signal; consider a leading metric such as queue depth or request rate", h.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HpaInfo, PdbInfo, WorkloadKey};

    fn codes(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn resource_findings() {
        assert_eq!(
            codes(&about_resources(&Resources::default())),
            ["best-effort"]
        );
        let r = Resources {
            cpu_request_millicores: Some(100),
            cpu_limit_millicores: Some(100),
            memory_request_bytes: Some(1),
            memory_limit_bytes: Some(2),
        };
        assert_eq!(
            codes(&about_resources(&r)),
            ["guaranteed-cpu", "memory-overcommit"]
        );
        let r = Resources {
            cpu_request_millicores: Some(100),
            memory_request_bytes: Some(1),
            ..Resources::default()
        };
        let f = about_resources(&r);
        assert_eq!(codes(&f), ["no-limits"]);
        assert!(f[0].message.starts_with("no CPU or memory limit"));
    }

    #[test]
    fn workload_findings() {
        let mut info = WorkloadInfo {
            key: WorkloadKey {
                cluster: "c".into(),
                namespace: "n".into(),
                kind: "Deployment".into(),
                name: "api".into(),
            },
            spec_replicas: Some(3),
            hpa: None,
            pdb: None,
            annotations: Default::default(),
            labels: Default::default(),
            from_kubernetes_api: true,
            seen_at: 0,
        };
        assert_eq!(codes(&about_workload(Some(&info), 3.0)), ["no-pdb"]);
        let by_name_only = WorkloadInfo {
            from_kubernetes_api: false,
            ..info.clone()
        };
        let f = about_workload(Some(&by_name_only), 3.0);
        assert_eq!(codes(&f), ["pdb-unknown"]);
        assert_eq!(f[0].severity, Severity::Info);
        assert!(
            f[0].message
                .contains("PDB unknown (no Kubernetes API source)"),
            "{}",
            f[0].message
        );
        assert!(about_workload(None, 1.0).is_empty());
        let daemonset = WorkloadInfo {
            key: WorkloadKey {
                kind: "DaemonSet".into(),
                ..info.key.clone()
            },
            ..info.clone()
        };
        assert!(
            about_workload(Some(&daemonset), 3.0).is_empty(),
            "node drains skip DaemonSet pods"
        );
        info.pdb = Some(PdbInfo {
            name: "api".into(),
            disruptions_allowed: Some(0),
            expected_pods: Some(3),
            matched_by: "name".into(),
        });
        info.hpa = Some(HpaInfo {
            name: "api".into(),
            min_replicas: Some(2),
            max_replicas: Some(10),
            cpu_target_utilization: Some(70.0),
            metrics: vec!["cpu utilization 70".into()],
        });
        assert_eq!(
            codes(&about_workload(Some(&info), 3.0)),
            ["pdb-blocks-disruption", "hpa-cpu-only"]
        );
        // A PDB found by name is a fact in either mode.
        info.from_kubernetes_api = false;
        assert_eq!(
            codes(&about_workload(Some(&info), 3.0)),
            ["pdb-blocks-disruption", "hpa-cpu-only"]
        );
        info.pdb.as_mut().unwrap().disruptions_allowed = Some(1);
        assert_eq!(codes(&about_workload(Some(&info), 3.0)), ["hpa-cpu-only"]);
    }
}
