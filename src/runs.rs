//! Collection and analysis runs: an id, progress and outcome for each, and at most one
//! run of each kind at a time (triggered from the API or by the scheduler alike).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Ingest new hours from Prometheus.
    Collect,
    /// Recompute recommendations.
    Analyze,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Going.
    Running,
    /// Done.
    Succeeded,
    /// Stopped with an error.
    Failed,
}

/// One run, as `/api/v1/runs/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunInfo {
    /// Run id.
    pub id: String,
    /// Collect or analyze.
    pub kind: RunKind,
    /// Running, succeeded or failed.
    pub status: RunStatus,
    /// Who started it: `api` or `schedule`.
    pub trigger: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds, once done.
    pub finished_at: Option<i64>,
    /// Units done (hours for collect, containers for analyze).
    pub done: u64,
    /// Units in all, once known.
    pub total: u64,
    /// The run's report, once succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The error, once failed.
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<u64, RunInfo>,
    running: HashMap<RunKind, String>,
    next: u64,
}

/// Runs of this process; the newest 100 are kept.
#[derive(Default, Clone)]
pub struct RunRegistry {
    inner: Arc<Mutex<Inner>>,
}

/// A started run; report progress and the outcome through it.
pub struct RunHandle {
    registry: RunRegistry,
    seq: u64,
    /// The run id.
    pub id: String,
    kind: RunKind,
}

const KEEP: usize = 100;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl RunRegistry {
    /// Starts a run of `kind`, or returns the id of the one already running.
    pub fn try_start(&self, kind: RunKind, trigger: &str) -> Result<RunHandle, String> {
        let mut inner = self.inner.lock().expect("run registry poisoned");
        if let Some(id) = inner.running.get(&kind) {
            return Err(id.clone());
        }
        inner.next += 1;
        let seq = inner.next;
        let id = format!(
            "{}-{seq}",
            match kind {
                RunKind::Collect => "collect",
                RunKind::Analyze => "analyze",
            }
        );
        inner.running.insert(kind, id.clone());
        inner.runs.insert(
            seq,
            RunInfo {
                id: id.clone(),
                kind,
                status: RunStatus::Running,
                trigger: trigger.into(),
                started_at: now(),
                finished_at: None,
                done: 0,
                total: 0,
                result: None,
                error: None,
            },
        );
        while inner.runs.len() > KEEP {
            let oldest = *inner.runs.keys().next().expect("not empty");
            inner.runs.remove(&oldest);
        }
        Ok(RunHandle {
            registry: self.clone(),
            seq,
            id,
            kind,
        })
    }

    /// A run by id.
    pub fn get(&self, id: &str) -> Option<RunInfo> {
        let inner = self.inner.lock().expect("run registry poisoned");
        inner.runs.values().find(|r| r.id == id).cloned()
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut RunInfo)) {
        if let Some(run) = self
            .inner
            .lock()
            .expect("run registry poisoned")
            .runs
            .get_mut(&seq)
        {
            f(run);
        }
    }
}

impl RunHandle {
    /// A progress recorder that outlives borrows (for callbacks).
    pub fn clone_progress(&self) -> impl Fn(u64, u64) + Send + Sync + 'static {
        let (registry, seq) = (self.registry.clone(), self.seq);
        move |done, total| {
            registry.update(seq, |r| {
                r.done = done;
                r.total = total;
            })
        }
    }

    /// Records progress.
    pub fn progress(&self, done: u64, total: u64) {
        self.registry.update(self.seq, |r| {
            r.done = done;
            r.total = total;
        });
    }

    /// Records the outcome and frees the kind for the next run.
    pub fn finish(self, outcome: Result<serde_json::Value, String>) {
        self.registry.update(self.seq, |r| {
            r.finished_at = Some(now());
            match outcome {
                Ok(v) => {
                    r.status = RunStatus::Succeeded;
                    r.result = Some(v);
                }
                Err(e) => {
                    r.status = RunStatus::Failed;
                    r.error = Some(e);
                }
            }
        });
        self.registry
            .inner
            .lock()
            .expect("run registry poisoned")
            .running
            .remove(&self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_of_a_kind_at_a_time() {
        let reg = RunRegistry::default();
        let a = reg.try_start(RunKind::Collect, "api").unwrap();
        assert_eq!(
            reg.try_start(RunKind::Collect, "api").err(),
            Some(a.id.clone())
        );
        let b = reg.try_start(RunKind::Analyze, "api").unwrap();
        a.progress(3, 10);
        assert_eq!(reg.get(&a.id).unwrap().done, 3);
        let id = a.id.clone();
        a.finish(Err("Prometheus unreachable".into()));
        let run = reg.get(&id).unwrap();
        assert_eq!(
            (run.status, run.error.as_deref()),
            (RunStatus::Failed, Some("Prometheus unreachable"))
        );
        assert!(reg.try_start(RunKind::Collect, "api").is_ok());
        b.finish(Ok(serde_json::json!({"containers": 1})));
    }
}
