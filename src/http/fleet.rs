//! Fleet views: `/api/v1/clusters`, `/api/v1/namespaces` (with totals) and `/api/v1/findings`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::query::{check_names, RawParams};
use super::AppState;
use crate::model::{Recommendation, Severity};

/// Requested and recommended resources across replicas, and money.
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct Totals {
    /// Workloads.
    pub workloads: usize,
    /// Workload containers.
    pub containers: usize,
    /// CPU cores requested now, across replicas.
    pub requested_cores: f64,
    /// CPU cores recommended, across replicas (the current request where nothing is proposed).
    pub recommended_cores: f64,
    /// Cores in use on average, across replicas.
    pub used_cores: f64,
    /// Memory GiB requested now, across replicas.
    pub requested_gib: f64,
    /// Memory GiB recommended, across replicas (the current request where nothing is proposed).
    pub recommended_gib: f64,
    /// Memory GiB in use on average, across replicas.
    pub used_gib: f64,
    /// Money per month the recommendations save (negative: cost).
    pub monthly_savings: f64,
    /// Containers by severity.
    pub critical: usize,
    /// See `critical`.
    pub warning: usize,
}

impl From<crate::fleet::Totals> for Totals {
    fn from(t: crate::fleet::Totals) -> Self {
        Totals {
            workloads: t.workloads,
            containers: t.containers,
            requested_cores: t.requested_cores,
            recommended_cores: t.recommended_cores,
            used_cores: t.used_cores,
            requested_gib: t.requested_gib,
            recommended_gib: t.recommended_gib,
            used_gib: t.used_gib,
            monthly_savings: t.monthly_savings,
            critical: t.severity(Severity::Critical),
            warning: t.severity(Severity::Warning),
        }
    }
}

/// Totals of a group of recommendations.
pub fn totals<'a>(recs: impl Iterator<Item = &'a Recommendation>) -> Totals {
    crate::fleet::Totals::of(recs).into()
}

/// One cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterSummary {
    /// Cluster name.
    pub cluster: String,
    /// End (unix seconds) of the newest collected hour.
    pub collected_until: Option<i64>,
    /// Totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Clusters with totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterList {
    /// The clusters.
    pub items: Vec<ClusterSummary>,
}

/// Every cluster with recommendations.
#[utoipa::path(get, path = "/api/v1/clusters", tag = "fleet",
    responses((status = 200, body = ClusterList), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn clusters(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<ClusterList>, ApiError> {
    check_names(&raw, &[])?;
    let snapshot = state.snapshot.get().await?;
    let mut groups: BTreeMap<&str, Vec<&Recommendation>> = BTreeMap::new();
    for r in &snapshot.recommendations {
        groups.entry(&r.key.cluster).or_default().push(r);
    }
    let mut items = Vec::new();
    for (cluster, recs) in groups {
        items.push(ClusterSummary {
            cluster: cluster.to_string(),
            collected_until: state.store.watermark(cluster).await?,
            totals: totals(recs.into_iter()),
        });
    }
    Ok(Json(ClusterList { items }))
}

/// One namespace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NamespaceSummary {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Namespaces with totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NamespaceList {
    /// The namespaces.
    pub items: Vec<NamespaceSummary>,
}

/// Namespaces with totals, optionally of one cluster.
#[utoipa::path(get, path = "/api/v1/namespaces", tag = "fleet",
    params(("cluster" = Option<String>, Query, description = "Exact cluster")),
    responses((status = 200, body = NamespaceList), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn namespaces(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<NamespaceList>, ApiError> {
    let p = check_names(&raw, &["cluster"])?;
    let snapshot = state.snapshot.get().await?;
    let mut groups: BTreeMap<(&str, &str), Vec<&Recommendation>> = BTreeMap::new();
    for r in snapshot
        .recommendations
        .iter()
        .filter(|r| p.get("cluster").is_none_or(|c| *c == r.key.cluster))
    {
        groups
            .entry((&r.key.cluster, &r.key.namespace))
            .or_default()
            .push(r);
    }
    let items = groups
        .into_iter()
        .map(|((cluster, namespace), recs)| NamespaceSummary {
            cluster: cluster.into(),
            namespace: namespace.into(),
            totals: totals(recs.into_iter()),
        })
        .collect();
    Ok(Json(NamespaceList { items }))
}

/// A finding with the container it is about.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingItem {
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub workload: String,
    /// Container.
    pub container: String,
    /// Code.
    pub code: String,
    /// Severity.
    pub severity: Severity,
    /// Message.
    pub message: String,
}

/// Findings, most severe first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingList {
    /// Findings matching.
    pub count: usize,
    /// The findings.
    pub items: Vec<FindingItem>,
}

/// Findings across the fleet.
#[utoipa::path(get, path = "/api/v1/findings", tag = "fleet",
    params(
        ("cluster" = Option<String>, Query, description = "Exact cluster"),
        ("namespace" = Option<String>, Query, description = "Exact namespace"),
        ("severity" = Option<String>, Query, description = "info, warning or critical"),
        ("code" = Option<String>, Query, description = "Finding code, e.g. no-limits"),
    ),
    responses((status = 200, body = FindingList), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn findings(
    State(state): State<AppState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<FindingList>, ApiError> {
    let p = check_names(&raw, &["cluster", "namespace", "severity", "code"])?;
    let severity = match p.get("severity").map(String::as_str) {
        None => None,
        Some("info") => Some(Severity::Info),
        Some("warning") => Some(Severity::Warning),
        Some("critical") => Some(Severity::Critical),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "parameter `severity` must be one of info, warning, critical; got `{other}`"
            )))
        }
    };
    let snapshot = state.snapshot.get().await?;
    let mut items: Vec<FindingItem> = snapshot
        .recommendations
        .iter()
        .filter(|r| p.get("cluster").is_none_or(|c| *c == r.key.cluster))
        .filter(|r| p.get("namespace").is_none_or(|n| *n == r.key.namespace))
        .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
        .filter(|(_, f)| {
            severity.is_none_or(|s| s == f.severity) && p.get("code").is_none_or(|c| *c == f.code)
        })
        .map(|(r, f)| FindingItem {
            cluster: r.key.cluster.clone(),
            namespace: r.key.namespace.clone(),
            kind: r.key.kind.clone(),
            workload: r.key.workload.clone(),
            container: r.key.container.clone(),
            code: f.code.clone(),
            severity: f.severity,
            message: f.message.clone(),
        })
        .collect();
    items.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(Json(FindingList {
        count: items.len(),
        items,
    }))
}
