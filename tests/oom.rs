//! The reaction to an OOM kill, minutes after it happens: `serve`'s pod watch hands the killed
//! pod's status to the reactor, which records the kill, recomputes the container with the
//! OOM rule at once, raises its running pods in place and proposes the change through GitOps.
//! The API server is the stand-in of tests/support/kube_resize.rs (what it implements and
//! from which Kubernetes documentation is written there), the forge the recorded-response
//! server of tests/support/forge.rs; SQLite, git and the analyzer are real.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use rightsizer::analyzer::{PolicyOverride, PolicySet, StrategyName};
use rightsizer::apply::oom::{self, OomReactor};
use rightsizer::apply::{ApplyMode, PlanOptions};
use rightsizer::jobs::{self, AnalysisSettings};
use rightsizer::model::{
    Chunk, Confidence, ContainerKey, ContainerObservation, Recommendation, Resource, Resources,
    UsageHour,
};
use rightsizer::sketch::Sketch;
use rightsizer::store::{RecommendationFilter, Store};
use serde_json::{json, Value};
use support::forge::{FakeForge, Reply};
use support::git::git;
use support::kube_resize::{self, Cluster, Shared};
use support::prometheus::TempDir;

const HOUR: i64 = 3600;
const MI: i64 = 1 << 20;
const POD: &str = "web-5d8f-x1";

fn key() -> ContainerKey {
    ContainerKey {
        cluster: "prod".into(),
        namespace: "shop".into(),
        kind: "Deployment".into(),
        workload: "web".into(),
        container: "app".into(),
    }
}

/// What the pod and kube-state-metrics say: 100m/400m CPU, 128Mi memory (request = limit).
fn current() -> Resources {
    Resources {
        cpu_request_millicores: Some(100),
        cpu_limit_millicores: Some(400),
        memory_request_bytes: Some(128 * MI),
        memory_limit_bytes: Some(128 * MI),
    }
}

/// The running pod of Deployment `web` (through ReplicaSet `web-5d8f`) on node n1.
fn cluster() -> Cluster {
    let mut c = Cluster {
        minor: 35,
        ..Cluster::default()
    };
    c.nodes.insert("n1".into(), (8000, 16384 * MI));
    c.pods.insert(
        ("shop".into(), POD.into()),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": POD, "namespace": "shop", "resourceVersion": "7",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d8f", "uid": "u1", "controller": true}]
            },
            "spec": {"nodeName": "n1", "containers": [{
                "name": "app", "image": "app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "400m", "memory": "128Mi"}}
            }]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "image": "app:1", "imageID": "", "ready": true, "restartCount": 0
            }]}
        }),
    );
    c.objects.insert(
        "/apis/apps/v1/namespaces/shop/replicasets/web-5d8f".into(),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-5d8f", "namespace": "shop",
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                   "name": "web", "uid": "u2", "controller": true}]}}),
    );
    c.objects.insert(
        "/apis/apps/v1/namespaces/shop/deployments/web".into(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop"}}),
    );
    c
}

fn settings() -> AnalysisSettings {
    AnalysisSettings {
        // The guidance's own strategy: the checks are of its OOM rule.
        policies: PolicySet::new(PolicyOverride {
            strategy: Some(StrategyName::Guidance),
            ..Default::default()
        })
        .unwrap(),
        pricing: Default::default(),
        step_secs: 60,
        backtest: Default::default(),
    }
}

struct Env {
    _dir: TempDir,
    store: Arc<dyn Store>,
    server: Shared,
    client: kube::Client,
    now: i64,
}

impl Env {
    /// Eight days of history up to the last complete hour (memory steady at 100Mi, no OOM
    /// kill), analyzed and stored.
    async fn new() -> Env {
        let dir = TempDir::new("rs-oom").unwrap();
        let store =
            rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
                .await
                .unwrap();
        let now = chrono::Utc::now().timestamp();
        let end = now - now.rem_euclid(HOUR);
        let hours: Vec<i64> = (1..=192).map(|h| end - h * HOUR).rev().collect();
        let mut usage = Vec::new();
        for &hour_start in &hours {
            let (mut cpu, mut memory) = (Sketch::new(), Sketch::new());
            for i in 0..60 {
                cpu.insert(0.02 + 0.06 * (i as f64 / 59.0)).unwrap();
                memory.insert(100.0 * MI as f64).unwrap();
            }
            for (resource, sketch) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
                usage.push(UsageHour {
                    key: key().into(),
                    resource,
                    hour_start,
                    sketch,
                });
            }
        }
        store
            .write_chunk(&Chunk {
                cluster: "prod".into(),
                containers: vec![ContainerObservation {
                    key: key(),
                    resources: current(),
                    seen_at: end - HOUR,
                }],
                hours,
                usage,
                ..Chunk::default()
            })
            .await
            .unwrap();
        jobs::analyze_cluster(store.as_ref(), "prod", &settings(), now)
            .await
            .unwrap();
        let (url, server) = kube_resize::start(cluster()).await;
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        Env {
            _dir: dir,
            store,
            server,
            client,
            now,
        }
    }

    fn reactor(
        &self,
        mode: ApplyMode,
        gitops: Option<rightsizer::gitops::GitopsOptions>,
    ) -> OomReactor {
        OomReactor::new(
            self.client.clone(),
            self.store.clone(),
            settings(),
            mode,
            PlanOptions {
                cluster: "prod".into(),
                min_confidence: Confidence::Low,
                ..PlanOptions::default()
            },
            gitops,
            "serve (test)".into(),
            "test".into(),
        )
    }

    async fn stored(&self) -> Recommendation {
        let recs = self
            .store
            .recommendations(&RecommendationFilter {
                cluster: Some("prod".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recs.len(), 1, "{recs:?}");
        recs.into_iter().next().unwrap()
    }

    /// The kubelet restarts the container after an OOM kill; the pod as the watch sends it.
    fn kill(&self) -> Pod {
        let mut server = self.server.lock().unwrap();
        server.oom_kill("shop", POD);
        serde_json::from_value(server.pods[&("shop".to_string(), POD.to_string())].clone()).unwrap()
    }

    fn pod_memory_limit(&self) -> Value {
        self.server.lock().unwrap().pods[&("shop".to_string(), POD.to_string())]["spec"]
            ["containers"][0]["resources"]["limits"]["memory"]
            .clone()
    }
}

#[tokio::test]
async fn an_oom_killed_status_event_raises_memory_in_one_turn_and_resizes_the_pod() {
    let env = Env::new().await;
    let before = env.stored().await;
    assert_eq!(before.evidence.oom_kills, 0);
    let old = before.recommended.memory_limit_bytes;
    assert!(
        old.is_some_and(|m| m <= 128 * MI),
        "steady at 100Mi: {old:?}"
    );

    let mut reactor = env.reactor(ApplyMode::InPlace, None);
    let pod = env.kill();
    // One turn of the event loop: the reaction to this one event.
    let reactions = reactor.on_pod(&pod, env.now).await;

    assert_eq!(reactions.len(), 1, "{reactions:?}");
    let after = env.stored().await;
    let raised = after.recommended.memory_limit_bytes.unwrap();
    assert!(
        raised > 128 * MI,
        "above the limit it was killed at: {raised}"
    );
    assert_eq!(after.recommended.memory_request_bytes, Some(raised));
    assert_eq!(after.evidence.oom_kills, 1);
    assert!(
        after
            .evidence
            .rules
            .iter()
            .any(|r| r.contains("OOMKilled 1 times")),
        "{:?}",
        after.evidence.rules
    );
    assert_eq!(reactions[0].memory_before, old);
    assert_eq!(
        reactions[0].recommendation.recommended.memory_limit_bytes,
        Some(raised)
    );

    // The running pod was raised in place (a dry run first), CPU left as it was.
    let resized = &reactions[0].resized;
    assert_eq!(resized.len(), 1, "{resized:?}");
    assert_eq!(
        resized[0].outcome.as_deref(),
        Some("resized"),
        "{resized:?}"
    );
    assert!(resized[0].reason.starts_with("after an OOM kill"));
    assert_eq!(resized[0].target.memory_limit_bytes, Some(raised));
    assert_eq!(resized[0].target.cpu_request_millicores, Some(100));
    assert_eq!(resized[0].target.cpu_limit_millicores, Some(400));
    let patches: Vec<String> = env
        .server
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.query.clone())
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(patches[0].contains("dryRun=All"), "{patches:?}");
    assert_eq!(
        env.pod_memory_limit(),
        json!(format!("{}Mi", raised / MI)),
        "the fake's pod holds the raised limit"
    );
    let changes = env.store.changes(Some("prod"), 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].after.memory_limit_bytes, Some(raised));

    // The same status again (a re-list, another replica's event): nothing more.
    assert!(reactor.on_pod(&pod, env.now).await.is_empty());
    // Nor a minute later: the status has no finish time, so it must not read as a new kill.
    assert!(reactor.on_pod(&pod, env.now + 60).await.is_empty());
    // The recorded kill holds until its hour is collected: a full analysis keeps the raise.
    jobs::analyze_cluster(env.store.as_ref(), "prod", &settings(), env.now + 60)
        .await
        .unwrap();
    assert_eq!(
        env.stored().await.recommended.memory_limit_bytes,
        Some(raised)
    );
}

#[tokio::test]
async fn the_pod_watch_reacts_to_a_kill_as_it_streams_in() {
    let env = Env::new().await;
    let old = env.stored().await.recommended.memory_limit_bytes;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(oom::run(env.reactor(ApplyMode::Recommend, None), stop));
    // The kill is sent once the watch is open (before, it would be in the list anyway).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .server
        .lock()
        .unwrap()
        .seen
        .iter()
        .any(|s| s.path == "/api/v1/pods" && s.query.contains("watch=true"))
    {
        assert!(Instant::now() < deadline, "the reactor never watched pods");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.kill();
    let raised = loop {
        let now = env.stored().await.recommended.memory_limit_bytes;
        if now != old {
            break now.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no reaction to the streamed kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(raised > 128 * MI);
    // Mode recommend: planned, not sent.
    assert!(!env
        .server
        .lock()
        .unwrap()
        .seen
        .iter()
        .any(|s| s.method == "PATCH"));
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watch stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn a_kill_opens_the_pull_request_with_the_raised_memory() {
    let env = Env::new().await;
    let tmp = TempDir::new("rs-oom-git").unwrap();
    let (remote, work) = (tmp.path().join("remote.git"), tmp.path().join("work"));
    std::fs::create_dir_all(&remote).unwrap();
    std::fs::create_dir_all(work.join("apps")).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    std::fs::write(
        work.join("apps/web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n\
         spec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: app:1\n\
         \x20         resources:\n            requests:\n              cpu: 100m\n              memory: 128Mi\n\
         \x20           limits:\n              cpu: 400m\n              memory: 128Mi\n",
    )
    .unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial manifests"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    git(&work, &["push", "-q", "origin", "main"]);
    let forge = FakeForge::start(vec![
        (
            "GET",
            "/repos/acme/gitops/pulls",
            Reply::json(200, json!([])),
        ),
        (
            "POST",
            "/repos/acme/gitops/pulls",
            Reply::fixture(201, "github_pull.json"),
        ),
    ])
    .await;
    let mut opts = rightsizer::gitops::GitopsOptions::new(&work);
    opts.branch = Some("rightsizer/oom".into());
    opts.commit = true;
    opts.push = Some("origin".into());
    let mut forge_cfg = rightsizer::gitops::ForgeConfig::new(
        rightsizer::gitops::ForgeKind::GitHub,
        "acme/gitops",
        "main",
        secrecy::SecretString::from("t0ken".to_string()),
    );
    forge_cfg.base_url = forge.base_url.clone();
    opts.pull_request = Some(forge_cfg);

    // The applier is off: the pull request alone carries the change.
    let mut reactor = env.reactor(ApplyMode::Off, Some(opts));
    let reactions = reactor.on_pod(&env.kill(), env.now).await;
    assert_eq!(reactions.len(), 1, "{reactions:?}");
    assert!(reactions[0].resized.is_empty());
    assert_eq!(
        reactions[0].pull_request.as_deref(),
        Some("https://github.com/acme/gitops/pull/7")
    );
    let raised = reactions[0]
        .recommendation
        .recommended
        .memory_limit_bytes
        .unwrap();
    let pushed = git(&remote, &["show", "rightsizer/oom:apps/web.yaml"]);
    assert!(
        pushed.contains(&format!("memory: {}Mi", raised / MI)),
        "{pushed}"
    );
    let posts: Vec<_> = forge
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].json()["head"], "rightsizer/oom");
    assert!(env
        .server
        .lock()
        .unwrap()
        .seen
        .iter()
        .all(|s| s.method == "GET"));
}

/// OpenMetrics for `shop/web-5d8f-x1` (Deployment `web`) every minute in `[start, end)`:
/// CPU and a steady 120Mi working set under a 128Mi limit, and an OOM kill at `kill` (the
/// restart counter goes up and the last termination reason is OOMKilled from then on).
fn prometheus_history(start: i64, end: i64, kill: i64) -> String {
    type Value = Box<dyn Fn(i64) -> Option<f64>>;
    type Family = (&'static str, &'static str, Vec<(String, Value)>);
    let c = r#"namespace="shop",pod="web-5d8f-x1",container="app",job="kube-state-metrics""#;
    let cadvisor = r#"namespace="shop",pod="web-5d8f-x1",container="app",job="kubelet""#;
    let constant = |v: f64| -> Value { Box::new(move |_| Some(v)) };
    let families: Vec<Family> = vec![
        ("container_cpu_usage_seconds", "counter", vec![(
            format!("container_cpu_usage_seconds_total{{{cadvisor}}}"),
            Box::new(move |t| Some((t - start) as f64 * 0.05)),
        )]),
        ("container_memory_working_set_bytes", "gauge", vec![(
            format!("container_memory_working_set_bytes{{{cadvisor}}}"),
            constant(120.0 * MI as f64),
        )]),
        ("kube_pod_owner", "gauge", vec![(
            r#"kube_pod_owner{namespace="shop",pod="web-5d8f-x1",owner_kind="ReplicaSet",owner_name="web-5d8f",owner_is_controller="true"}"#.to_string(),
            constant(1.0),
        )]),
        ("kube_replicaset_owner", "gauge", vec![(
            r#"kube_replicaset_owner{namespace="shop",replicaset="web-5d8f",owner_kind="Deployment",owner_name="web",owner_is_controller="true"}"#.to_string(),
            constant(1.0),
        )]),
        ("kube_pod_container_info", "gauge", vec![(
            format!("kube_pod_container_info{{{c}}}"),
            constant(1.0),
        )]),
        ("kube_pod_container_resource_requests", "gauge", vec![
            (format!(r#"kube_pod_container_resource_requests{{{c},resource="cpu",unit="core"}}"#), constant(0.1)),
            (format!(r#"kube_pod_container_resource_requests{{{c},resource="memory",unit="byte"}}"#), constant(128.0 * MI as f64)),
        ]),
        ("kube_pod_container_resource_limits", "gauge", vec![
            (format!(r#"kube_pod_container_resource_limits{{{c},resource="cpu",unit="core"}}"#), constant(0.4)),
            (format!(r#"kube_pod_container_resource_limits{{{c},resource="memory",unit="byte"}}"#), constant(128.0 * MI as f64)),
        ]),
        ("kube_pod_container_status_restarts", "counter", vec![(
            format!("kube_pod_container_status_restarts_total{{{c}}}"),
            Box::new(move |t| Some(if t >= kill { 1.0 } else { 0.0 })),
        )]),
        ("kube_pod_container_status_last_terminated_reason", "gauge", vec![(
            format!(r#"kube_pod_container_status_last_terminated_reason{{{c},reason="OOMKilled"}}"#),
            Box::new(move |t| (t >= kill).then_some(1.0)),
        )]),
    ];
    let mut out = String::new();
    for (family, kind, series) in families {
        out.push_str(&format!("# TYPE {family} {kind}\n"));
        for (sample, value) in series {
            for t in (start..end).step_by(60) {
                if let Some(v) = value(t) {
                    out.push_str(&format!("{sample} {v} {t}\n"));
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test]
async fn with_prometheus_alone_the_next_collection_sees_a_kill_in_the_current_hour() {
    use rightsizer::jobs::{collect_window, WindowSpec};
    use support::prometheus::Prometheus;
    let wall = chrono::Utc::now().timestamp();
    // A fixed timeline in the recent past: 26 complete hours, then 40 minutes of the hour
    // being collected, with the kill 20 minutes into it.
    let hour = wall - wall.rem_euclid(HOUR) - 2 * HOUR;
    let (start, now, kill) = (hour - 26 * HOUR, hour + 40 * 60, hour + 20 * 60);
    let prom = Prometheus::from_openmetrics_text(
        prometheus_history(start, now + 60, kill).as_bytes(),
        27 * HOUR,
    )
    .unwrap();
    let client = rightsizer::prometheus::PromClient::new(&rightsizer::prometheus::PromConfig {
        url: prom.url().to_string(),
        ..Default::default()
    })
    .unwrap();
    let dir = TempDir::new("rs-oom-prom").unwrap();
    let store =
        rightsizer::store::connect(&format!("sqlite://{}", dir.path().join("rs.db").display()))
            .await
            .unwrap();
    let report = collect_window(
        &client,
        store.as_ref(),
        "prod",
        &Default::default(),
        &Default::default(),
        WindowSpec {
            since: Duration::from_secs(26 * HOUR as u64),
            until: None,
            now,
        },
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.hours_collected, 26, "{report:?}");
    assert_eq!(report.recent_oom_kills, 1, "{report:?}");
    let collected = store.signals(&key(), start, hour).await.unwrap();
    assert!(
        collected.iter().all(|s| s.oom_kills == 0),
        "the kill is after the collected hours: {collected:?}"
    );
    let recorded = store.oom_kills("prod", start).await.unwrap();
    assert_eq!(
        recorded,
        [rightsizer::model::OomKillHour {
            key: key(),
            hour_start: hour,
            kills: 1
        }]
    );

    jobs::analyze_cluster(store.as_ref(), "prod", &settings(), now)
        .await
        .unwrap();
    let recs = store.recommendations(&Default::default()).await.unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].evidence.oom_kills, 1);
    let memory = recs[0].recommended.memory_limit_bytes.unwrap();
    assert!(
        memory > 128 * MI,
        "raised above the limit it was killed at: {memory}"
    );

    // Once its hour is collected the kill is counted once, not twice.
    let later = hour + HOUR + 300;
    let report = collect_window(
        &client,
        store.as_ref(),
        "prod",
        &Default::default(),
        &Default::default(),
        WindowSpec {
            since: Duration::from_secs(26 * HOUR as u64),
            until: None,
            now: later,
        },
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!((report.hours_collected, report.recent_oom_kills), (1, 0));
    let collected = store.signals(&key(), hour, hour + HOUR).await.unwrap();
    assert_eq!(collected.iter().map(|s| s.oom_kills).sum::<u32>(), 1);
    jobs::analyze_cluster(store.as_ref(), "prod", &settings(), later)
        .await
        .unwrap();
    let recs = store.recommendations(&Default::default()).await.unwrap();
    assert_eq!(recs[0].evidence.oom_kills, 1, "counted once");
    assert_eq!(recs[0].recommended.memory_limit_bytes, Some(memory));
}
