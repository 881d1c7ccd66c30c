//! `/metrics/recommendations`: every container's recommendation and current values as
//! Prometheus gauges, for Grafana dashboards and alerting rules (`deploy/optional/monitoring`).
//!
//! A separate endpoint from `/metrics`: it holds up to 12 series per workload container
//! (the demo's 15 containers export 166; 10,000 containers up to 120,000), which people
//! scrape every few minutes or not at all, while the service's own metrics stay small and are
//! scraped often. Labels are bounded
//! to the container's identity (cluster, namespace, kind, workload, container); currency,
//! reasons and findings stay in the API.

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::fleet;
use crate::model::{Recommendation, Resources, Status};
use crate::telemetry::label_value;

/// The identity of a workload container.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    cluster: String,
    namespace: String,
    kind: String,
    workload: String,
    container: String,
}

type Gauges = Family<ContainerLabels, Gauge<f64, AtomicU64>>;

/// The four resource gauges of one prefix (`recommendation` or `container`).
struct ResourceGauges {
    cpu_request: Gauges,
    cpu_limit: Gauges,
    memory_request: Gauges,
    memory_limit: Gauges,
}

impl ResourceGauges {
    fn register(registry: &mut Registry, prefix: &str, what: &str) -> Self {
        let g = ResourceGauges {
            cpu_request: Gauges::default(),
            cpu_limit: Gauges::default(),
            memory_request: Gauges::default(),
            memory_limit: Gauges::default(),
        };
        for (name, help, family) in [
            ("cpu_request_cores", "CPU request, cores", &g.cpu_request),
            ("cpu_limit_cores", "CPU limit, cores", &g.cpu_limit),
            (
                "memory_request_bytes",
                "memory request, bytes",
                &g.memory_request,
            ),
            ("memory_limit_bytes", "memory limit, bytes", &g.memory_limit),
        ] {
            registry.register(
                format!("{prefix}_{name}"),
                format!("{what} {help}; absent where unset"),
                family.clone(),
            );
        }
        g
    }

    fn set(&self, labels: &ContainerLabels, r: &Resources) {
        let cores = |m: i64| m as f64 / 1000.0;
        for (family, value) in [
            (&self.cpu_request, r.cpu_request_millicores.map(cores)),
            (&self.cpu_limit, r.cpu_limit_millicores.map(cores)),
            (
                &self.memory_request,
                r.memory_request_bytes.map(|b| b as f64),
            ),
            (&self.memory_limit, r.memory_limit_bytes.map(|b| b as f64)),
        ] {
            if let Some(v) = value {
                family.get_or_create(labels).set(v);
            }
        }
    }
}

/// The OpenMetrics text of `recs`.
pub fn encode<'a>(recs: impl IntoIterator<Item = &'a Recommendation>) -> String {
    let mut registry = Registry::with_prefix("rightsizer");
    let recommended = ResourceGauges::register(&mut registry, "recommendation", "Recommended");
    let current = ResourceGauges::register(&mut registry, "container", "Current");
    let single = |registry: &mut Registry, name: &str, help: &str| {
        let family = Gauges::default();
        registry.register(name, help, family.clone());
        family
    };
    let proposed = single(
        &mut registry,
        "recommendation_proposed",
        "1 when a change is proposed (status ok), 0 for no change or insufficient data",
    );
    let confidence = single(
        &mut registry,
        "recommendation_confidence",
        "Confidence score of the recommendation, 0 to 1",
    );
    let severity = single(
        &mut registry,
        "recommendation_severity",
        "Severity of the container's state: 0 info, 1 warning, 2 critical",
    );
    let savings = single(
        &mut registry,
        "recommendation_monthly_savings",
        "Money per month the recommendation saves across replicas (negative: costs), in the pricing currency",
    );
    for r in recs {
        let labels = ContainerLabels {
            cluster: label_value(&r.key.cluster),
            namespace: label_value(&r.key.namespace),
            kind: label_value(&r.key.kind),
            workload: label_value(&r.key.workload),
            container: label_value(&r.key.container),
        };
        recommended.set(&labels, &r.recommended);
        current.set(&labels, &r.current);
        let flag = if r.status == Status::Ok { 1.0 } else { 0.0 };
        proposed.get_or_create(&labels).set(flag);
        confidence.get_or_create(&labels).set(r.confidence_score);
        severity
            .get_or_create(&labels)
            .set(r.severity as usize as f64);
        savings.get_or_create(&labels).set(fleet::savings(r));
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Every container's recommendation and current values as gauges.
#[utoipa::path(get, path = "/metrics/recommendations", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text format", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "Token required (with --api-auth-reads)", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
pub async fn recommendation_metrics(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = state.snapshot.get().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode(snapshot.recommendations.iter().map(|r| r.as_ref())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    #[test]
    fn every_container_gets_its_gauges_with_escaped_labels() {
        let mut r = crate::testing::proposal("api", Severity::Critical, 42.5);
        r.key.container = "say \"hi\"".into();
        r.current.cpu_limit_millicores = None;
        r.recommended.cpu_limit_millicores = None;
        let text = encode([&r]);
        let labels = r#"{cluster="prod",namespace="shop",kind="Deployment",workload="api",container="say \"hi\""}"#;
        for line in [
            format!("rightsizer_recommendation_cpu_request_cores{labels} 0.25"),
            format!("rightsizer_recommendation_memory_limit_bytes{labels} 536870912.0"),
            format!("rightsizer_container_cpu_request_cores{labels} 1.0"),
            format!("rightsizer_recommendation_proposed{labels} 1.0"),
            format!("rightsizer_recommendation_severity{labels} 2.0"),
            format!("rightsizer_recommendation_monthly_savings{labels} 42.5"),
            format!("rightsizer_recommendation_confidence{labels} 0.9"),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("cpu_limit_cores{"),
            "unset limits are absent:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
