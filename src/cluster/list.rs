//! One-shot, paginated listing of every resource type: [`snapshot_once`].

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::convert::{applies_label_selector, scopes, Scope, SnapshotBuilder};
use super::{ClusterError, ClusterSnapshot, ClusterSourceConfig, PAGE_SIZE};

/// Lists every watched resource type once, page by page (`limit` and `continue`), in every scope
/// of `cfg`. A type the service account may not list (403), or the server does not serve (404),
/// is left out and named in [`ClusterSnapshot::degraded`]; any other failure is an error.
#[tracing::instrument(skip_all)]
pub async fn snapshot_once(
    client: kube::Client,
    cfg: &ClusterSourceConfig,
) -> Result<ClusterSnapshot, ClusterError> {
    cfg.validate()?;
    let mut builder = SnapshotBuilder::default();
    let mut degraded = Vec::new();
    let selector = cfg.label_selector.as_deref();
    for scope in scopes(cfg) {
        let (deployments, stateful_sets, daemon_sets, cron_jobs, jobs, hpas, pdbs) = tokio::try_join!(
            list_all::<Deployment>(&client, &scope, selector),
            list_all::<StatefulSet>(&client, &scope, selector),
            list_all::<DaemonSet>(&client, &scope, selector),
            list_all::<CronJob>(&client, &scope, selector),
            list_all::<Job>(&client, &scope, selector),
            list_all::<HorizontalPodAutoscaler>(&client, &scope, selector),
            list_all::<PodDisruptionBudget>(&client, &scope, selector),
        )?;
        let d = &mut degraded;
        let b = &mut builder;
        deployments.take(d).iter().for_each(|o| b.deployment(o));
        stateful_sets.take(d).iter().for_each(|o| b.stateful_set(o));
        daemon_sets.take(d).iter().for_each(|o| b.daemon_set(o));
        cron_jobs.take(d).iter().for_each(|o| b.cron_job(o));
        jobs.take(d).iter().for_each(|o| b.job(o));
        hpas.take(d).iter().for_each(|o| b.hpa(o));
        pdbs.take(d).iter().for_each(|o| b.pdb(o));
    }
    let snapshot = builder.finish(degraded);
    tracing::info!(
        workloads = snapshot.workloads.len(),
        hpas = snapshot.hpas.len(),
        pdbs = snapshot.pdbs.len(),
        degraded = snapshot.degraded.len(),
        "listed the Kubernetes API"
    );
    Ok(snapshot)
}

/// Objects of one type, or why there are none.
enum Listed<K> {
    Items(Vec<K>),
    Degraded(String),
}

impl<K> Listed<K> {
    /// The objects; a degradation goes to `degraded` and gives none.
    fn take(self, degraded: &mut Vec<String>) -> Vec<K> {
        match self {
            Listed::Items(items) => items,
            Listed::Degraded(reason) => {
                degraded.push(reason);
                Vec::new()
            }
        }
    }
}

async fn list_all<K>(
    client: &Client,
    scope: &Scope,
    label_selector: Option<&str>,
) -> Result<Listed<K>, ClusterError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api = scope.api::<K>(client);
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(fields) = scope.field_selector() {
        params = params.fields(fields);
    }
    if let (Some(labels), true) = (label_selector, applies_label_selector::<K>()) {
        params = params.labels(labels);
    }
    let mut items = Vec::new();
    loop {
        match api.list(&params).await {
            Ok(page) => {
                items.extend(page.items);
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params.continue_token = Some(token),
                    None => return Ok(Listed::Items(items)),
                }
            }
            Err(e) => {
                return match degradation(&e, "list", &scope.describe::<K>()) {
                    Some(reason) => Ok(Listed::Degraded(reason)),
                    None => Err(ClusterError::Api {
                        verb: "list",
                        resource: scope.describe::<K>(),
                        source: e,
                    }),
                }
            }
        }
    }
}

/// A 403 or 404 from the API server as a `degraded` entry, after a warning that names the
/// resource and verb; `None` for any other error.
pub(crate) fn degradation(e: &kube::Error, verb: &str, resource: &str) -> Option<String> {
    let kube::Error::Api(status) = e else {
        return None;
    };
    let reason = match status.code {
        403 => format!("forbidden: {verb} {resource}"),
        404 => format!("not served: {verb} {resource}"),
        _ => return None,
    };
    log_degradation(&reason, verb, resource, &status.message);
    Some(reason)
}

pub(crate) fn log_degradation(reason: &str, verb: &str, resource: &str, message: &str) {
    if reason.starts_with("forbidden") {
        tracing::warn!(
            verb,
            resource,
            message,
            "Kubernetes API: {reason}; grant get/list/watch on it to the service account \
             (deploy/base/rbac.yaml). Continuing without it"
        );
    } else {
        tracing::warn!(
            verb,
            resource,
            message,
            "Kubernetes API: {reason} (older cluster?). Continuing without it"
        );
    }
}
