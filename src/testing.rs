//! Builders of plain data for tests (unit, integration and benches); not a stable interface.

use crate::model::{
    Confidence, ContainerKey, Evidence, Impact, Recommendation, Resources, Severity, Status,
};

const MI: i64 = 1 << 20;

/// Requests and limits by our guidance: CPU limit 4 × the request, memory limit = request.
pub fn resources(cpu_millicores: i64, memory_bytes: i64) -> Resources {
    Resources {
        cpu_request_millicores: Some(cpu_millicores),
        cpu_limit_millicores: Some(cpu_millicores * 4),
        memory_request_bytes: Some(memory_bytes),
        memory_limit_bytes: Some(memory_bytes),
    }
}

/// A proposal (status ok) for container `app` of `prod/shop/Deployment/<workload>`: 1000m and
/// 1Gi requested now, 250m and 512Mi recommended, 2 replicas now (3 on average over the
/// window), saving `savings` EUR a month (negative: costing).
pub fn proposal(workload: &str, severity: Severity, savings: f64) -> Recommendation {
    Recommendation {
        key: ContainerKey {
            cluster: "prod".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            workload: workload.into(),
            container: "app".into(),
        },
        status: Status::Ok,
        current: resources(1000, 1024 * MI),
        recommended: resources(250, 512 * MI),
        confidence: Confidence::High,
        confidence_score: 0.9,
        reason: "because".into(),
        strategy: "guidance".into(),
        evidence: Evidence {
            average_replicas: 3.0,
            ..Evidence::default()
        },
        computed_at: 1_700_000_000,
        severity,
        findings: Vec::new(),
        backtest: None,
        impact: Some(Impact {
            replicas: 2.0,
            replicas_after: 2.0,
            cpu_cores_delta: -1.5,
            memory_gib_delta: -1.0,
            monthly_cost_delta: -savings,
            currency: "EUR".into(),
        }),
        hpa: None,
    }
}
