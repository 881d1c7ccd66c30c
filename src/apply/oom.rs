//! The reaction to an OOM kill, minutes after it happens rather than at the next report: `serve`
//! watches pod status and, for each container the kubelet restarted after an OOM kill,
//! records the kill, recomputes that container's recommendation at once (the analyzer's OOM
//! rule raises memory above the limit it was killed at), resizes its running pods in place
//! (raises only) when `[apply] mode = "in-place"`, and opens or updates the GitOps pull
//! request when `[gitops.on_oom]` is configured.
//!
//! Every replica records and recomputes (both are idempotent: kills are kept per hour as the
//! larger count); only the replica holding the `oom` lease resizes and pushes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use super::kube::{self as api, Owners, Scope};
use super::plan::{self, Decision, PlanOptions, PlannedResize};
use super::ApplyMode;
use crate::jobs::{self, AnalysisSettings};
use crate::model::{ContainerKey, OomKillHour, Recommendation};
use crate::store::{RecommendationFilter, Store};

/// Kills older than this when first seen (a pod that was OOM-killed days ago and is listed
/// now) are not reacted to: the collected history already holds them.
const RECENT_SECS: i64 = 6 * 3600;

/// One OOM kill the pod status shows: the container's last termination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKill {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// The container's restart count since (tells one kill from the next).
    pub restart_count: i32,
    /// When the killed container finished, unix seconds (`now` when the status omits it).
    pub finished_at: i64,
}

impl PodKill {
    /// What tells one kill from another: the container's restart count moves on with each.
    fn id(&self) -> (String, String, String, i32) {
        (
            self.namespace.clone(),
            self.pod.clone(),
            self.container.clone(),
            self.restart_count,
        )
    }
}

/// The OOM kills `pod`'s status shows: containers whose last termination reason is
/// `OOMKilled`.
pub fn kills_of(pod: &Pod, now: i64) -> Vec<PodKill> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|cs| {
            let t = cs.last_state.as_ref()?.terminated.as_ref()?;
            (t.reason.as_deref() == Some("OOMKilled")).then(|| PodKill {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                container: cs.name.clone(),
                restart_count: cs.restart_count,
                finished_at: t.finished_at.as_ref().map_or(now, |f| f.0.as_second()),
            })
        })
        .collect()
}

/// What the reaction to one container's OOM kill did.
#[derive(Debug, Clone)]
pub struct Reaction {
    /// The workload container.
    pub key: ContainerKey,
    /// Its stored memory limit before, if a recommendation was stored.
    pub memory_before: Option<i64>,
    /// The recomputed recommendation, stored.
    pub recommendation: Recommendation,
    /// The raises sent (or, in `recommend` mode, planned) to its running pods.
    pub resized: Vec<PlannedResize>,
    /// The pull request opened or updated, when GitOps is configured.
    pub pull_request: Option<String>,
}

/// Reacts to OOM kills of one cluster; keeps which kills it has seen.
pub struct OomReactor {
    client: Client,
    store: Arc<dyn Store>,
    cluster: String,
    analysis: AnalysisSettings,
    mode: ApplyMode,
    plan: PlanOptions,
    gitops: Option<crate::gitops::GitopsOptions>,
    actor: String,
    holder: String,
    /// Kills seen by namespace, pod, container and restart count (not the finish time, which
    /// is "now" when the status omits it), with their finish times (forgotten after
    /// [`RECENT_SECS`] × 4).
    seen: BTreeMap<(String, String, String, i32), i64>,
    /// Distinct kills per workload container and hour, as recorded.
    counts: BTreeMap<(ContainerKey, i64), u32>,
    owners: Owners,
}

impl OomReactor {
    /// A reactor for `client`'s cluster, named `plan.cluster`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        store: Arc<dyn Store>,
        analysis: AnalysisSettings,
        mode: ApplyMode,
        plan: PlanOptions,
        gitops: Option<crate::gitops::GitopsOptions>,
        actor: String,
        holder: String,
    ) -> Self {
        OomReactor {
            client,
            store,
            cluster: plan.cluster.clone(),
            analysis,
            mode,
            plan: PlanOptions {
                raises_only: true,
                ..plan
            },
            gitops,
            actor,
            holder,
            seen: BTreeMap::new(),
            counts: BTreeMap::new(),
            owners: Owners::new(),
        }
    }

    /// Reacts to the OOM kills `pod` shows that were not seen before; returns what was done
    /// for each container (nothing for a pod without new kills).
    pub async fn on_pod(&mut self, pod: &Pod, now: i64) -> Vec<Reaction> {
        self.seen.retain(|_, at| *at > now - 4 * RECENT_SECS);
        self.counts
            .retain(|(_, hour), _| *hour > now - 4 * RECENT_SECS);
        let fresh: Vec<PodKill> = kills_of(pod, now)
            .into_iter()
            .filter(|k| !self.seen.contains_key(&k.id()) && k.finished_at > now - RECENT_SECS)
            .collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        let workload = match api::owner(&self.client, pod, &mut self.owners).await {
            Ok(Some(w)) => w,
            Ok(None) => {
                tracing::info!(namespace = %fresh[0].namespace, pod = %fresh[0].pod, "OOM kill of a pod no workload owns: nothing to recompute");
                return Vec::new();
            }
            Err(e) => {
                // Not marked seen: the next event of the pod tries again.
                tracing::warn!(error = %e, "OOM kill: cannot resolve the pod's workload");
                return Vec::new();
            }
        };
        let mut keys = BTreeSet::new();
        let mut kills = Vec::new();
        for k in fresh {
            let key = ContainerKey {
                cluster: self.cluster.clone(),
                namespace: k.namespace.clone(),
                kind: workload.0.clone(),
                workload: workload.1.clone(),
                container: k.container.clone(),
            };
            let hour = crate::collector::floor_hour(k.finished_at);
            let count = self.counts.entry((key.clone(), hour)).or_default();
            *count += 1;
            tracing::warn!(namespace = %k.namespace, pod = %k.pod, container = %k.container, workload = %format!("{}/{}", workload.0, workload.1), "container OOM-killed: raising its memory now");
            kills.push(OomKillHour {
                key: key.clone(),
                hour_start: hour,
                kills: *count,
            });
            keys.insert(key);
            self.seen.insert(k.id(), k.finished_at);
        }
        if let Err(e) = self.store.record_oom_kills(&kills).await {
            tracing::error!(error = %e, "OOM kill: cannot record it (the next collection sees it)");
        }
        self.react(&keys, now).await
    }

    /// Recomputes and stores `keys`' recommendations, then resizes and proposes them.
    async fn react(&mut self, keys: &BTreeSet<ContainerKey>, now: i64) -> Vec<Reaction> {
        let (recs, _, _) = match jobs::compute_recommendations_of(
            self.store.as_ref(),
            &self.cluster,
            &self.analysis,
            now,
            None,
            Some(keys),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "OOM kill: cannot recompute the recommendation");
                return Vec::new();
            }
        };
        if recs.is_empty() {
            tracing::warn!(containers = ?keys.iter().map(ToString::to_string).collect::<Vec<_>>(), "OOM kill of a container with no collected history: nothing to recompute yet");
        }
        let mut out = Vec::new();
        for rec in recs {
            let before = self.stored_memory(&rec.key).await;
            if let Err(e) = self.store.put_recommendation(&rec).await {
                tracing::error!(error = %e, "OOM kill: cannot store the new recommendation");
                continue;
            }
            tracing::info!(container = %rec.key, before = ?before, after = ?rec.recommended.memory_limit_bytes, "OOM kill: recommendation recomputed");
            out.push(Reaction {
                key: rec.key.clone(),
                memory_before: before,
                recommendation: rec,
                resized: Vec::new(),
                pull_request: None,
            });
        }
        if out.is_empty() || !self.leads(now).await {
            return out;
        }
        for r in &mut out {
            r.resized = self.resize(&r.recommendation, now).await;
        }
        if let Some(pr) = self.propose(&out).await {
            for r in &mut out {
                r.pull_request = Some(pr.clone());
            }
        }
        out
    }

    async fn stored_memory(&self, key: &ContainerKey) -> Option<i64> {
        let filter = RecommendationFilter {
            cluster: Some(key.cluster.clone()),
            namespace: Some(key.namespace.clone()),
            workload: Some(key.workload.clone()),
            ..RecommendationFilter::default()
        };
        let stored = self.store.recommendations(&filter).await.ok()?;
        stored
            .into_iter()
            .find(|r| r.key == *key)
            .and_then(|r| r.recommended.memory_limit_bytes)
    }

    /// Whether this replica resizes and proposes (holds the `oom` lease).
    async fn leads(&self, now: i64) -> bool {
        match self.store.lease_job("oom", 0, &self.holder, now, 600).await {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(error = %e, "OOM kill: cannot lease the reaction: not resizing");
                false
            }
        }
    }

    /// Raises the running pods of `rec`'s workload towards it (in `in-place` mode; planned and
    /// logged in `recommend` mode; nothing when the applier is off).
    async fn resize(&self, rec: &Recommendation, now: i64) -> Vec<PlannedResize> {
        if self.mode == ApplyMode::Off {
            return Vec::new();
        }
        let scope = Scope {
            namespace: Some(rec.key.namespace.clone()),
            workload: Some(format!("{}/{}", rec.key.kind, rec.key.workload)),
        };
        let state = match api::read_state(&self.client, &scope).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "OOM kill: cannot read the workload's pods");
                return Vec::new();
            }
        };
        let mut lines: Vec<PlannedResize> =
            plan::plan(&state, std::slice::from_ref(rec), &self.plan)
                .into_iter()
                .filter(|l| l.container == rec.key.container)
                .collect();
        for l in lines.iter_mut().filter(|l| l.decision == Decision::Resize) {
            l.reason = format!("after an OOM kill: {}", l.reason);
        }
        if self.mode == ApplyMode::InPlace {
            api::execute(&self.client, &state, &mut lines).await;
            let records = super::change_records(&lines, &self.cluster, &self.actor, "resize", now);
            if let Err(e) = self.store.record_changes(&records).await {
                tracing::error!(error = %e, "OOM kill: cannot record the resizes");
            }
        }
        for l in lines.iter().filter(|l| l.decision != Decision::Resize) {
            tracing::info!(pod = %l.pod, decision = ?l.decision, reason = %l.reason, "OOM kill: pod not resized");
        }
        lines
    }

    /// Opens or updates the pull request with the recomputed recommendations.
    async fn propose(&self, reactions: &[Reaction]) -> Option<String> {
        let opts = self.gitops.as_ref()?;
        let recs: Vec<Recommendation> =
            reactions.iter().map(|r| r.recommendation.clone()).collect();
        match crate::gitops::run(opts, &recs).await {
            Ok(report) => {
                let pr = report
                    .branches
                    .iter()
                    .find_map(|b| b.pull_request.as_ref())
                    .map(|p| p.url.clone());
                tracing::info!(changed = report.changed.len(), pull_request = ?pr, "OOM kill: GitOps change proposed");
                pr
            }
            Err(e) => {
                tracing::error!(error = %e, "OOM kill: cannot propose the change through GitOps");
                None
            }
        }
    }
}

/// Watches every pod's status (list, then watch; backoff after errors) and reacts to each
/// new OOM kill, until `stop`.
pub async fn run(mut reactor: OomReactor, mut stop: tokio::sync::watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(reactor.client.clone());
    let stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    tokio::pin!(stream);
    tracing::info!("watching pod status for OOM kills");
    loop {
        tokio::select! {
            // `changed`, not `wait_for`: its guard would be held across the reaction's awaits.
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            next = stream.next() => match next {
                Some(Ok(pod)) => {
                    reactor.on_pod(&pod, chrono::Utc::now().timestamp()).await;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch: retrying"),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containers_last_terminated_by_the_oom_killer_count() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "status": {"containerStatuses": [
                {"name": "app", "image": "", "imageID": "", "ready": true, "restartCount": 3,
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                              "finishedAt": "2026-12-05T10:20:00Z"}}},
                {"name": "sidecar", "image": "", "imageID": "", "ready": true, "restartCount": 1,
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                {"name": "log", "image": "", "imageID": "", "ready": true, "restartCount": 0}
            ]}
        }))
        .unwrap();
        assert_eq!(
            kills_of(&pod, 7),
            [PodKill {
                namespace: "shop".into(),
                pod: "web-1".into(),
                container: "app".into(),
                restart_count: 3,
                finished_at: 1_796_466_000,
            }]
        );
        assert!(kills_of(&Pod::default(), 7).is_empty());
    }
}
