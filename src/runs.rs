//! Collection and analysis runs: an id, progress and outcome for each, and at most one
//! run of each kind at a time fleet-wide (triggered from the API or by the scheduler alike).
//! Runs live in the store, so every replica sharing it answers for every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use crate::model::{RunKind, RunStatus};
use crate::store::{NewRun, RunOutcome, RunStart, Store, StoreError, StoredRun};

/// One run, as `/api/v1/runs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// A run's id as the API shows it: its kind and the store's sequence number (`collect-17`).
fn run_id(kind: RunKind, seq: i64) -> String {
    format!("{}-{seq}", kind.as_str())
}

/// The kind and sequence number of a run id, if it is one.
fn parse_run_id(id: &str) -> Option<(RunKind, i64)> {
    let (kind, seq) = id.split_once('-')?;
    Some((RunKind::parse(kind)?, seq.parse().ok()?))
}

impl RunInfo {
    /// What the API shows of a stored run at `now`: a running run whose lease expired is
    /// shown as the failure the next start will record.
    pub fn from_stored(run: StoredRun, now: i64) -> Self {
        let abandoned = run.status == RunStatus::Running && run.lease_until < now;
        RunInfo {
            id: run_id(run.kind, run.seq),
            kind: run.kind,
            status: if abandoned {
                RunStatus::Failed
            } else {
                run.status
            },
            trigger: run.trigger,
            started_at: run.started_at,
            finished_at: if abandoned {
                Some(run.lease_until)
            } else {
                run.finished_at
            },
            done: run.done,
            total: run.total,
            result: run.result,
            error: if abandoned {
                Some(crate::store::abandoned_error(&run.holder))
            } else {
                run.error
            },
        }
    }
}

/// How long a run blocks others without a renewal: several missed heartbeats, so a busy
/// process keeps its run, and a dead one frees the kind within a minute.
pub const LEASE_SECS: i64 = 30;
/// How often a running run records its progress and renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Attempts at recording a run's end (the database may be restarting).
const FINISH_ATTEMPTS: u32 = 5;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// This process, as named in run and job leases: the pod name (HOSTNAME), the process id
/// and a random part (process ids repeat across containers).
pub fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        use rand::Rng;
        format!(
            "{}/{}/{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "rightsizer".into()),
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        )
    })
}

/// The runs of every process sharing the store.
#[derive(Clone)]
pub struct RunRegistry {
    store: Arc<dyn Store>,
    holder: String,
    /// Runs this process started and has not finished: ended at shutdown, so the next
    /// process does not wait out their leases.
    in_flight: Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
}

/// A started run; report progress and the outcome through it. Dropped without
/// [`RunHandle::finish`], it stops renewing its lease, so the run ends as abandoned.
pub struct RunHandle {
    /// The run id.
    pub id: String,
    /// The run as it started.
    pub started: RunInfo,
    seq: i64,
    store: Arc<dyn Store>,
    holder: String,
    progress: Arc<Progress>,
    heartbeat: tokio::task::JoinHandle<()>,
    in_flight: Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
}

#[derive(Default)]
struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    fn set(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

impl RunRegistry {
    /// Runs kept in `store`, started by this process as `holder`.
    pub fn new(store: Arc<dyn Store>, holder: &str) -> Self {
        RunRegistry {
            store,
            holder: holder.into(),
            in_flight: Default::default(),
        }
    }

    /// Records every run this process started and has not finished as failed with
    /// `reason`: called at shutdown, when runs spawned for the API are about to be dropped.
    pub async fn end_in_flight(&self, reason: &str) {
        let seqs: Vec<i64> = std::mem::take(&mut *self.in_flight.lock().expect("never poisoned"))
            .into_iter()
            .collect();
        for seq in seqs {
            let outcome = RunOutcome {
                finished_at: now(),
                done: 0,
                total: 0,
                result: Err(reason.into()),
            };
            if let Err(e) = self.store.finish_run(seq, &self.holder, &outcome).await {
                tracing::warn!(seq, error = %e, "cannot record the interrupted run; it ends once its lease expires");
            }
        }
    }

    /// Starts a run of `kind`, or returns the id of the one already running fleet-wide.
    pub async fn try_start(
        &self,
        kind: RunKind,
        trigger: &str,
    ) -> Result<Result<RunHandle, String>, StoreError> {
        let started_at = now();
        let seq = match self
            .store
            .start_run(&NewRun {
                kind,
                trigger,
                holder: &self.holder,
                now: started_at,
                lease_until: started_at + LEASE_SECS,
            })
            .await?
        {
            RunStart::Busy(seq) => return Ok(Err(run_id(kind, seq))),
            RunStart::Started(seq) => seq,
        };
        let id = run_id(kind, seq);
        self.in_flight.lock().expect("never poisoned").insert(seq);
        let progress = Arc::new(Progress::default());
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            seq,
            self.holder.clone(),
            progress.clone(),
        ));
        let started = RunInfo {
            id: id.clone(),
            kind,
            status: RunStatus::Running,
            trigger: trigger.into(),
            started_at,
            finished_at: None,
            done: 0,
            total: 0,
            result: None,
            error: None,
        };
        Ok(Ok(RunHandle {
            id,
            started,
            seq,
            store: self.store.clone(),
            holder: self.holder.clone(),
            progress,
            heartbeat,
            in_flight: self.in_flight.clone(),
        }))
    }

    /// A run by id, from whichever process ran it.
    pub async fn get(&self, id: &str) -> Result<Option<RunInfo>, StoreError> {
        let Some((kind, seq)) = parse_run_id(id) else {
            return Ok(None);
        };
        Ok(self
            .store
            .run(seq)
            .await?
            .filter(|r| r.kind == kind)
            .map(|r| RunInfo::from_stored(r, now())))
    }

    /// Waits until the run `id` is no longer running (finished, abandoned or unreadable
    /// for good) or `stop` turns true.
    pub async fn wait_finished(&self, id: &str, stop: &mut tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.get(id).await {
                Ok(Some(run)) if run.status == RunStatus::Running => {}
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, run = id, "cannot read the run waited for"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Records progress and renews the lease every [`HEARTBEAT`] until aborted, or until the
/// run is no longer this process's.
async fn heartbeat(store: Arc<dyn Store>, seq: i64, holder: String, progress: Arc<Progress>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let (done, total) = progress.get();
        match store
            .renew_run(seq, &holder, done, total, now() + LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(seq, "the run's lease was lost (taken as abandoned)");
                return;
            }
            // The database may be restarting: the next beat tries again, and the lease
            // outlasts several missed ones.
            Err(e) => tracing::warn!(seq, error = %e, "cannot renew the run's lease"),
        }
    }
}

impl RunHandle {
    /// A progress recorder that outlives borrows (for callbacks).
    pub fn clone_progress(&self) -> impl Fn(u64, u64) + Send + Sync + 'static {
        let progress = self.progress.clone();
        move |done, total| progress.set(done, total)
    }

    /// Records progress (stored with the next heartbeat).
    pub fn progress(&self, done: u64, total: u64) {
        self.progress.set(done, total);
    }

    /// Records the outcome and frees the kind for the next run, retrying for a while when
    /// the database is unavailable (the lease then frees the kind).
    pub async fn finish(self, outcome: Result<serde_json::Value, String>) {
        self.heartbeat.abort();
        self.in_flight
            .lock()
            .expect("never poisoned")
            .remove(&self.seq);
        let (done, total) = self.progress.get();
        let outcome = RunOutcome {
            finished_at: now(),
            done,
            total,
            result: outcome,
        };
        for attempt in 1..=FINISH_ATTEMPTS {
            match self
                .store
                .finish_run(self.seq, &self.holder, &outcome)
                .await
            {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(run = %self.id, "the run was taken as abandoned before it finished; its outcome is not recorded");
                    return;
                }
                Err(e) if attempt < FINISH_ATTEMPTS => {
                    tracing::warn!(run = %self.id, error = %e, attempt, "cannot record the run's end; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(run = %self.id, error = %e, "cannot record the run's end; it shows as abandoned once its lease expires")
                }
            }
        }
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry() -> RunRegistry {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        RunRegistry::new(store, "test")
    }

    #[tokio::test]
    async fn one_run_of_a_kind_at_a_time() {
        let reg = registry().await;
        let a = reg
            .try_start(RunKind::Collect, "api")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            reg.try_start(RunKind::Collect, "api").await.unwrap().err(),
            Some(a.id.clone())
        );
        let b = reg
            .try_start(RunKind::Analyze, "api")
            .await
            .unwrap()
            .unwrap();
        a.progress(3, 10);
        let id = a.id.clone();
        a.finish(Err("Prometheus unreachable".into())).await;
        let run = reg.get(&id).await.unwrap().unwrap();
        assert_eq!(
            (run.status, run.error.as_deref(), run.done, run.total),
            (RunStatus::Failed, Some("Prometheus unreachable"), 3, 10)
        );
        assert!(reg
            .try_start(RunKind::Collect, "api")
            .await
            .unwrap()
            .is_ok());
        b.finish(Ok(serde_json::json!({"containers": 1}))).await;
    }

    #[tokio::test]
    async fn ids_name_a_kind_and_a_number() {
        let reg = registry().await;
        let a = reg
            .try_start(RunKind::Analyze, "api")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(parse_run_id(&a.id), Some((RunKind::Analyze, a.seq)));
        let other_kind = a.id.replace("analyze", "collect");
        for id in [other_kind.as_str(), "analyze", "analyze-x", "nope-1", ""] {
            assert_eq!(reg.get(id).await.unwrap(), None, "{id}");
        }
    }
}
