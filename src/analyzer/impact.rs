//! What a recommendation changes for scheduling and cost, and how a CPU-utilization HPA
//! answers a new CPU request.

use super::{trim_float, Pricing};
use crate::model::{HpaEffect, Impact, Resources, WorkloadInfo};

/// Hours in an average month, for monthly cost.
const HOURS_PER_MONTH: f64 = 730.0;

/// The replica count an HPA on CPU utilization would run with `new_request` millicores.
pub(crate) fn hpa_effect(
    workload: Option<&WorkloadInfo>,
    current: &Resources,
    new_request: i64,
    average_replicas: f64,
) -> Option<HpaEffect> {
    let h = workload?.hpa.as_ref()?;
    let target = h.cpu_target_utilization?;
    let old = current.cpu_request_millicores? as f64;
    let new = new_request as f64;
    let mut expected = average_replicas * old / new;
    if let Some(min) = h.min_replicas {
        expected = expected.max(min as f64);
    }
    if let Some(max) = h.max_replicas {
        expected = expected.min(max as f64);
    }
    Some(HpaEffect {
        hpa: h.name.clone(),
        cpu_target_utilization: target,
        current_replicas: (average_replicas * 100.0).round() / 100.0,
        expected_replicas: (expected * 100.0).round() / 100.0,
        target_utilization_for_same_scale: (target * old / new).round(),
    })
}

/// The reason phrase for an HPA whose replica count moves by half a replica or more.
pub(crate) fn hpa_reason(effect: &HpaEffect) -> Option<String> {
    ((effect.expected_replicas - effect.current_replicas).abs() >= 0.5).then(|| {
        format!(
            "HPA {}: ~{} → ~{} replicas at {}% target (or set the target to {}%)",
            effect.hpa,
            trim_float(effect.current_replicas),
            trim_float(effect.expected_replicas),
            effect.cpu_target_utilization,
            effect.target_utilization_for_same_scale
        )
    })
}

/// Cores, GiB and money requested after the change minus before, across replicas.
pub(crate) fn impact(
    current: &Resources,
    recommended: &Resources,
    workload: Option<&WorkloadInfo>,
    hpa: Option<&HpaEffect>,
    average_replicas: f64,
    pricing: &Pricing,
) -> Impact {
    // An HPA on CPU utilization answers a new CPU request with a new replica count: the
    // impact compares today's average replicas with the expected ones, not a fixed count.
    let replicas = match hpa {
        Some(effect) => effect.current_replicas,
        None => workload
            .and_then(|i| i.spec_replicas)
            .map(|r| r as f64)
            .filter(|r| *r > 0.0)
            .unwrap_or(average_replicas),
    };
    let replicas_after = hpa.map_or(replicas, |e| e.expected_replicas);
    let cores = |m: Option<i64>| m.unwrap_or(0) as f64 / 1000.0;
    let gib = |b: Option<i64>| b.unwrap_or(0) as f64 / (1024.0 * 1024.0 * 1024.0);
    let cpu_cores_delta = cores(recommended.cpu_request_millicores) * replicas_after
        - cores(current.cpu_request_millicores) * replicas;
    let memory_gib_delta = gib(recommended.memory_request_bytes) * replicas_after
        - gib(current.memory_request_bytes) * replicas;
    Impact {
        replicas: (replicas * 100.0).round() / 100.0,
        replicas_after: (replicas_after * 100.0).round() / 100.0,
        cpu_cores_delta,
        memory_gib_delta,
        monthly_cost_delta: (cpu_cores_delta * pricing.cpu_core_hour
            + memory_gib_delta * pricing.memory_gib_hour)
            * HOURS_PER_MONTH,
        currency: pricing.currency.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HpaInfo, WorkloadKey};

    fn info() -> WorkloadInfo {
        WorkloadInfo {
            key: WorkloadKey {
                cluster: "c".into(),
                namespace: "n".into(),
                kind: "Deployment".into(),
                name: "web".into(),
            },
            spec_replicas: None,
            hpa: None,
            pdb: None,
            annotations: Default::default(),
            labels: Default::default(),
            from_kubernetes_api: false,
            seen_at: 0,
        }
    }

    fn res(cpu: i64, gib: i64) -> Resources {
        Resources {
            cpu_request_millicores: Some(cpu),
            memory_request_bytes: Some(gib << 30),
            ..Resources::default()
        }
    }

    #[test]
    fn impact_multiplies_by_replicas_and_prices() {
        let pricing = Pricing {
            cpu_core_hour: 1.0,
            memory_gib_hour: 0.5,
            currency: "EUR".into(),
        };
        let info = WorkloadInfo {
            spec_replicas: Some(3),
            ..info()
        };
        let i = impact(
            &res(1000, 2),
            &res(500, 1),
            Some(&info),
            None,
            1.0,
            &pricing,
        );
        assert_eq!((i.replicas, i.replicas_after), (3.0, 3.0));
        assert_eq!((i.cpu_cores_delta, i.memory_gib_delta), (-1.5, -3.0));
        assert_eq!(i.monthly_cost_delta, (-1.5 - 1.5) * 730.0);
        assert_eq!(i.currency, "EUR");
    }

    #[test]
    fn an_hpa_scales_inversely_with_the_request_within_its_bounds() {
        let info = WorkloadInfo {
            hpa: Some(HpaInfo {
                name: "web".into(),
                min_replicas: Some(2),
                max_replicas: Some(5),
                cpu_target_utilization: Some(70.0),
                metrics: vec!["cpu utilization 70".into()],
            }),
            ..info()
        };
        let e = hpa_effect(Some(&info), &res(500, 1), 250, 2.0).unwrap();
        assert_eq!((e.current_replicas, e.expected_replicas), (2.0, 4.0));
        assert_eq!(e.target_utilization_for_same_scale, 140.0);
        assert!(hpa_reason(&e).unwrap().contains("~2 → ~4 replicas"));
        let capped = hpa_effect(Some(&info), &res(500, 1), 100, 2.0).unwrap();
        assert_eq!(capped.expected_replicas, 5.0);
        assert!(hpa_effect(None, &res(500, 1), 250, 2.0).is_none());
    }
}
