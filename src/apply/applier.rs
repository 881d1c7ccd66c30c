//! `serve`'s applier: a step of the plan every `step_interval`, each step starting with a
//! health check of the pods the previous step resized. A pod whose container restarted, was
//! OOM-killed or stopped being ready since its resize is put back to the values it had before
//! (a resize again: raising is always allowed), and its workload's container is held for
//! [`HOLD`] so the next step does not take the same step again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;

use super::kube::{self as api, Scope};
use super::plan::{self, Decision, PlanOptions, PlannedResize};
use crate::model::Resources;
use crate::store::{RecommendationFilter, Store};

/// How long a container is left alone after its resize was rolled back.
pub const HOLD: Duration = Duration::from_secs(24 * 3600);

/// What `serve` does with the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// Nothing.
    #[default]
    Off,
    /// Log the plan each step; send nothing.
    Recommend,
    /// Resize running pods in place.
    InPlace,
}

/// Runs a step every `every` while this replica holds the applier's lease (one replica
/// applies; another takes over when its lease lapses), until `stop`.
pub async fn run(
    mut applier: Applier,
    every: Duration,
    holder: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = chrono::Utc::now().timestamp();
        let ttl = 3 * every.as_secs() as i64;
        match applier
            .store
            .lease_job("applier", 0, &holder, now, ttl)
            .await
        {
            Ok(true) => match applier.step(now).await {
                Ok(r) => log_step(applier.mode, &r),
                Err(e) => tracing::error!(error = %e, "apply: step failed"),
            },
            Ok(false) => tracing::debug!("apply: another replica applies"),
            Err(e) => tracing::error!(error = %e, "apply: cannot lease the applier"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn log_step(mode: ApplyMode, r: &StepReport) {
    let count = |d: Decision| r.plan.iter().filter(|l| l.decision == d).count();
    for l in r.plan.iter().filter(|l| l.decision == Decision::Resize) {
        tracing::info!(
            namespace = %l.namespace, pod = %l.pod, container = %l.container,
            reason = %l.reason, outcome = l.outcome.as_deref().unwrap_or(if mode == ApplyMode::InPlace { "" } else { "not sent (mode recommend)" }),
            "apply: resize"
        );
    }
    tracing::info!(
        resize = count(Decision::Resize),
        skip = count(Decision::Skip),
        refuse = count(Decision::Refuse),
        rollbacks = r.rollbacks.len(),
        "apply: step done"
    );
}

/// A pod resized by the last step: what to compare and what to go back to.
#[derive(Debug, Clone)]
struct Stepped {
    workload: Option<String>,
    /// Per container: values before the step, values after it, and restarts then.
    containers: Vec<(String, Resources, Resources, i32)>,
}

/// The applier's memory between steps.
pub struct Applier {
    client: Client,
    store: Arc<dyn Store>,
    opts: PlanOptions,
    mode: ApplyMode,
    actor: String,
    last_step: BTreeMap<(String, String), Stepped>,
    /// `(namespace, workload, container)` → (unix seconds until, why).
    held: BTreeMap<(String, String, String), (i64, String)>,
}

/// What one step did.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    /// The plan, with outcomes when sent.
    pub plan: Vec<PlannedResize>,
    /// Pods put back, with why: `(namespace, pod, reason, outcome)`.
    pub rollbacks: Vec<(String, String, String, String)>,
}

impl Applier {
    /// An applier for `client`'s cluster under `opts`; `actor` names it in the record of
    /// changes (`serve (<replica>)`).
    pub fn new(
        client: Client,
        store: Arc<dyn Store>,
        opts: PlanOptions,
        mode: ApplyMode,
        actor: String,
    ) -> Self {
        Applier {
            client,
            store,
            opts,
            mode,
            actor,
            last_step: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// One step at `now` (unix seconds): the health check of the last step's pods (and
    /// rollbacks), then the plan, sent when the mode is `in-place`.
    pub async fn step(&mut self, now: i64) -> Result<StepReport, String> {
        let mut report = StepReport::default();
        self.check_last_step(now, &mut report).await;
        let (major, minor) = api::server_version(&self.client)
            .await
            .map_err(|e| e.to_string())?;
        self.opts.memory_limit_decrease_allowed = (major, minor) >= (1, 34);
        self.held.retain(|_, (until, _)| *until > now);
        let recs = self
            .store
            .recommendations(&RecommendationFilter {
                cluster: Some(self.opts.cluster.clone()),
                ..RecommendationFilter::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let state = api::read_state(&self.client, &Scope::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut plan = plan::plan(&state, &recs, &self.opts);
        for line in plan.iter_mut().filter(|l| l.decision == Decision::Resize) {
            let key = (
                line.namespace.clone(),
                line.workload.clone().unwrap_or_default(),
                line.container.clone(),
            );
            if let Some((until, why)) = self.held.get(&key) {
                line.decision = Decision::Skip;
                line.target = line.current;
                let until = chrono::DateTime::from_timestamp(*until, 0).map_or_else(
                    || until.to_string(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                );
                line.reason = format!("held until {until} after a rollback: {why}");
            }
        }
        if self.mode == ApplyMode::InPlace {
            api::execute(&self.client, &state, &mut plan).await;
            self.remember(&state, &plan);
            self.record(&plan, "resize", now).await;
        }
        report.plan = plan;
        Ok(report)
    }

    /// Stores the sent lines of `lines` as changes; a store error is logged, not fatal (the
    /// resize happened either way).
    async fn record(&self, lines: &[PlannedResize], kind: &str, now: i64) {
        let records = super::change_records(lines, &self.opts.cluster, &self.actor, kind, now);
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_changes(&records).await {
            tracing::error!(error = %e, "apply: cannot record {} change(s)", records.len());
        }
    }

    /// Remembers the pods this step resized, with their values and restarts before it.
    fn remember(&mut self, state: &plan::ClusterState, plan: &[PlannedResize]) {
        self.last_step.clear();
        for l in plan.iter().filter(|l| {
            l.decision == Decision::Resize
                && l.outcome
                    .as_deref()
                    .is_some_and(|o| !o.starts_with("failed"))
        }) {
            let Some(pod) = state
                .pods
                .iter()
                .find(|p| p.namespace == l.namespace && p.name == l.pod)
            else {
                continue;
            };
            let restarts = pod.restarts.get(&l.container).copied().unwrap_or(0);
            self.last_step
                .entry((l.namespace.clone(), l.pod.clone()))
                .or_insert_with(|| Stepped {
                    workload: l.workload.clone(),
                    containers: Vec::new(),
                })
                .containers
                .push((l.container.clone(), l.current, l.target, restarts));
        }
    }

    async fn check_last_step(&mut self, now: i64, report: &mut StepReport) {
        for ((ns, name), stepped) in std::mem::take(&mut self.last_step) {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let pod = match pods.get_opt(&name).await {
                Ok(Some(p)) => p,
                Ok(None) => continue, // gone: nothing to put back
                Err(e) => {
                    tracing::warn!(namespace = %ns, pod = %name, error = %e, "apply: cannot read a resized pod back");
                    continue;
                }
            };
            let Some(why) = unhealthy(&pod, &stepped) else {
                continue;
            };
            let view = api::pod_view(&pod);
            let lines: Vec<PlannedResize> = stepped
                .containers
                .iter()
                .map(|(container, before, after, _)| PlannedResize {
                    namespace: ns.clone(),
                    pod: name.clone(),
                    container: container.clone(),
                    workload: stepped.workload.clone(),
                    current: *after,
                    target: *before,
                    recommended: None,
                    decision: Decision::Resize,
                    reason: format!("rollback: {why}"),
                    outcome: None,
                })
                .collect();
            let refs: Vec<&PlannedResize> = lines.iter().collect();
            let outcome =
                api::send_patch(&self.client, &ns, &name, &api::resize_patch(&view, &refs)).await;
            let sent: Vec<PlannedResize> = lines
                .into_iter()
                .map(|l| PlannedResize {
                    outcome: Some(outcome.clone()),
                    ..l
                })
                .collect();
            self.record(&sent, "rollback", now).await;
            tracing::warn!(namespace = %ns, pod = %name, reason = %why, outcome = %outcome, "apply: rolled back a resize");
            for (container, ..) in &stepped.containers {
                self.held.insert(
                    (
                        ns.clone(),
                        stepped.workload.clone().unwrap_or_default(),
                        container.clone(),
                    ),
                    (now + HOLD.as_secs() as i64, why.clone()),
                );
            }
            report
                .rollbacks
                .push((ns.clone(), name.clone(), why, outcome));
        }
    }
}

/// Why a pod resized by the last step is not healthy, if it is not: a restart since (an OOM
/// kill named as such), or readiness lost.
fn unhealthy(pod: &Pod, stepped: &Stepped) -> Option<String> {
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        let Some((_, _, _, before)) = stepped.containers.iter().find(|(c, ..)| *c == cs.name)
        else {
            continue;
        };
        if cs.restart_count > *before {
            let oom = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
            return Some(if oom {
                format!("container {} was OOM-killed after the resize", cs.name)
            } else {
                format!("container {} restarted after the resize", cs.name)
            });
        }
    }
    let not_ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "False");
    not_ready.then(|| "the pod stopped being ready after the resize".to_string())
}
