//! `rightsizer apply` through the real binary against a stand-in API server that implements
//! the documented `pods/resize` behaviour (tests/support/kube_resize.rs says what and where
//! from): the plan is a dry run by default, a real run dry-runs each resize on the server
//! first, steps down by at most 25% a run, refuses a QoS change before sending anything,
//! reports an Infeasible resize and does not retry it, and names a conflict or a missing
//! permission.

mod support;

use std::process::{Command, Output};

use rightsizer::model::{Recommendation, Severity};
use rightsizer::testing::{proposal, resources};
use serde_json::{json, Value};
use support::kube_resize::{self, Cluster, Shared};
use support::prometheus::TempDir;

const MI: i64 = 1 << 20;

/// A running pod of Deployment `workload` (through ReplicaSet `<workload>-5d8f`) on node n1.
fn pod(workload: &str, cpu: (&str, &str), memory: (&str, &str)) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{workload}-5d8f-x1"), "namespace": "shop", "resourceVersion": "7",
            "labels": {"app": workload, "pod-template-hash": "5d8f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{workload}-5d8f"), "uid": "u1", "controller": true}]
        },
        "spec": {"nodeName": "n1", "containers": [{
            "name": "app", "image": "app:1",
            "resources": {"requests": {"cpu": cpu.0, "memory": memory.0},
                          "limits": {"cpu": cpu.1, "memory": memory.1}}
        }]},
        "status": {"phase": "Running"}
    })
}

fn cluster() -> Cluster {
    let mut c = Cluster {
        minor: 35,
        ..Cluster::default()
    };
    c.nodes.insert("n1".into(), (8000, 16384 * MI));
    for (workload, cpu, memory) in [
        ("web", ("1", "4"), ("1Gi", "1Gi")),
        ("cache", ("1", "1"), ("1Gi", "1Gi")), // Guaranteed
        ("api", ("100m", "400m"), ("256Mi", "256Mi")),
        ("batch", ("1", "4"), ("1Gi", "1Gi")),
    ] {
        let p = pod(workload, cpu, memory);
        c.pods.insert(
            (
                "shop".into(),
                p["metadata"]["name"].as_str().unwrap().into(),
            ),
            p,
        );
        c.objects.insert(
            format!("/apis/apps/v1/namespaces/shop/replicasets/{workload}-5d8f"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": format!("{workload}-5d8f"), "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                       "name": workload, "uid": "u2", "controller": true}]}}),
        );
        let annotations = if workload == "batch" {
            json!({"rightsizer.io/apply": "false"})
        } else {
            json!({})
        };
        c.objects.insert(
            format!("/apis/apps/v1/namespaces/shop/deployments/{workload}"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": workload, "namespace": "shop", "annotations": annotations}}),
        );
    }
    c.infeasible.insert("api-5d8f-x1".into());
    c
}

fn recommendations() -> Vec<Recommendation> {
    ["web", "cache", "api", "batch"]
        .iter()
        .map(|w| {
            let mut r = proposal(w, Severity::Info, 1.0);
            r.recommended = resources(250, 512 * MI);
            r
        })
        .collect()
}

struct Env {
    dir: TempDir,
    server: Shared,
}

impl Env {
    async fn new() -> Env {
        let dir = TempDir::new("rs-apply").unwrap();
        let (url, server) = kube_resize::start(cluster()).await;
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: applier\n\
                 users:\n- name: applier\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let db = format!("sqlite://{}", dir.path().join("rs.db").display());
        let store = rightsizer::store::connect(&db).await.unwrap();
        store
            .replace_recommendations("prod", &recommendations())
            .await
            .unwrap();
        Env { dir, server }
    }

    /// Runs `rightsizer --cluster prod apply -o json <args>` off the async runtime (the
    /// server answers on it).
    async fn apply(&self, args: &[&str]) -> (Output, Vec<Value>) {
        let out = self.run(&[&["-o", "json"], args].concat()).await;
        let plan = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: stdout {} stderr {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, plan)
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rightsizer"));
        cmd.env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env(
                "RIGHTSIZER_DATABASE_URL",
                format!("sqlite://{}", self.dir.path().join("rs.db").display()),
            )
            .env_remove("RIGHTSIZER_PROMETHEUS_URL")
            .args(["--cluster", "prod", "apply"])
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// The resize requests seen since the last call, as `(pod, dry run)`.
    fn resizes(&self) -> Vec<(String, bool)> {
        let mut s = self.server.lock().unwrap();
        let seen = std::mem::take(&mut s.seen);
        seen.iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| {
                assert_eq!(r.content_type, "application/strategic-merge-patch+json");
                let pod = r.path.split('/').nth(6).unwrap().to_string();
                (pod, r.query.contains("dryRun=All"))
            })
            .collect()
    }

    fn cpu_request(&self, pod: &str) -> String {
        let s = self.server.lock().unwrap();
        s.pods[&("shop".to_string(), pod.to_string())]["spec"]["containers"][0]["resources"]
            ["requests"]["cpu"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn line<'a>(plan: &'a [Value], pod: &str) -> &'a Value {
    plan.iter()
        .find(|l| l["pod"] == pod)
        .unwrap_or_else(|| panic!("{pod} not in {plan:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_dry_runs_steps_down_and_reports_what_the_kubelet_said() {
    let env = Env::new().await;

    // The default is a dry run: a plan, nothing sent.
    let (out, plan) = env.apply(&[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.resizes(), [], "a dry run sends no resize");
    let web = line(&plan, "web-5d8f-x1");
    assert_eq!(web["decision"], "resize");
    assert_eq!(web["workload"], "Deployment/web");
    assert_eq!(web["current"]["cpu_request_millicores"], 1000);
    assert_eq!(
        web["target"]["cpu_request_millicores"], 750,
        "25% down at most"
    );
    assert_eq!(web["target"]["memory_limit_bytes"], 768 * MI);
    let cache = line(&plan, "cache-5d8f-x1");
    assert_eq!(cache["decision"], "refuse");
    assert!(cache["reason"]
        .as_str()
        .unwrap()
        .contains("QoS class from Guaranteed to Burstable"));
    assert_eq!(
        line(&plan, "api-5d8f-x1")["target"]["cpu_request_millicores"],
        250,
        "raised at once"
    );
    let batch = line(&plan, "batch-5d8f-x1");
    assert_eq!(batch["decision"], "skip");
    assert_eq!(batch["reason"], "opted out: rightsizer.io/apply: \"false\"");
    assert!(plan.iter().all(|l| l.get("outcome").is_none()));
    let table = String::from_utf8(env.run(&[]).await.stdout).unwrap();
    eprintln!("{table}");
    assert!(table.contains("shop/web-5d8f-x1"), "{table}");
    assert!(table.contains("1/4 → 750m/3"), "{table}");
    assert!(
        table.contains("2 to resize, 1 skipped, 1 refused"),
        "{table}"
    );
    assert!(
        table.contains("dry run: nothing sent (server 1.35)"),
        "{table}"
    );

    // A real run: each pod's resize is dry-run on the server first, then sent.
    let (out, plan) = env.apply(&["--dry-run=false"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.resizes(),
        [
            ("api-5d8f-x1".to_string(), true),
            ("api-5d8f-x1".to_string(), false),
            ("web-5d8f-x1".to_string(), true),
            ("web-5d8f-x1".to_string(), false),
        ],
        "nothing for the refused or skipped pods"
    );
    assert_eq!(line(&plan, "web-5d8f-x1")["outcome"], "resized");
    assert_eq!(env.cpu_request("web-5d8f-x1"), "750m");
    let api = line(&plan, "api-5d8f-x1")["outcome"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        api.starts_with("infeasible: Infeasible: Node didn't have enough capacity"),
        "{api}"
    );

    // Both are on record, with who sent them.
    let store = rightsizer::store::connect(&format!(
        "sqlite://{}",
        env.dir.path().join("rs.db").display()
    ))
    .await
    .unwrap();
    let changes = store.changes(Some("prod"), 10).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes
        .iter()
        .all(|c| c.kind == "resize" && c.actor.starts_with("rightsizer apply (")));
    let web = changes.iter().find(|c| c.pod == "web-5d8f-x1").unwrap();
    assert_eq!(
        (
            web.before.cpu_request_millicores,
            web.after.cpu_request_millicores,
            web.outcome.as_str()
        ),
        (Some(1000), Some(750), "resized")
    );

    // The next run takes the next step and leaves the Infeasible resize alone.
    let (out, plan) = env.apply(&["--dry-run=false"]).await;
    assert!(out.status.success());
    assert_eq!(env.cpu_request("web-5d8f-x1"), "563m");
    let api = line(&plan, "api-5d8f-x1");
    assert_eq!(api["decision"], "skip");
    assert!(api["reason"]
        .as_str()
        .unwrap()
        .contains("already pending: Infeasible"));
    assert!(
        env.resizes().iter().all(|(pod, _)| pod == "web-5d8f-x1"),
        "not retried"
    );

    // A pod changed since it was read: 409, named, and the command fails.
    env.server
        .lock()
        .unwrap()
        .changed_underneath
        .insert("web-5d8f-x1".into());
    let (out, plan) = env.apply(&["--dry-run=false"]).await;
    assert!(!out.status.success());
    let outcome = line(&plan, "web-5d8f-x1")["outcome"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(outcome.contains("409 Conflict"), "{outcome}");
    assert_eq!(env.cpu_request("web-5d8f-x1"), "563m", "nothing changed");

    // No permission on pods/resize: 403, with what to grant.
    env.server.lock().unwrap().forbid_resize = true;
    let (out, plan) = env.apply(&["--dry-run=false"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resize(s) failed"));
    let outcome = line(&plan, "web-5d8f-x1")["outcome"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        outcome.contains("forbidden (403)") && outcome.contains("pods/resize"),
        "{outcome}"
    );
    env.server.lock().unwrap().forbid_resize = false;
    env.resizes();

    // Kubernetes 1.33: the server refuses a lower memory limit in place, so the plan keeps
    // memory and still lowers CPU (the server would answer 422 otherwise).
    env.server.lock().unwrap().minor = 33;
    let (out, plan) = env
        .apply(&["--dry-run=false", "--workload", "Deployment/web"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(plan.len(), 1, "--workload narrows the plan");
    let web = &plan[0];
    assert_eq!(web["outcome"], "resized");
    assert_eq!(
        web["target"]["memory_limit_bytes"],
        web["current"]["memory_limit_bytes"]
    );
    assert!(web["reason"]
        .as_str()
        .unwrap()
        .contains("before Kubernetes 1.34"));
    assert_eq!(env.cpu_request("web-5d8f-x1"), "423m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_or_an_empty_store_is_a_clear_error() {
    let env = Env::new().await;
    std::fs::write(
        env.dir.path().join("kubeconfig"),
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n\
         clusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\n\
         users:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    let out = env.run(&[]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GET /version"), "{stderr}");

    let empty = TempDir::new("rs-apply-empty").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
        .env("KUBECONFIG", env.dir.path().join("kubeconfig"))
        .env(
            "RIGHTSIZER_DATABASE_URL",
            format!("sqlite://{}", empty.path().join("rs.db").display()),
        )
        .args(["--cluster", "prod", "apply"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("no recommendations stored for cluster prod: run `rightsizer analyze` first"),
        "{stderr}"
    );
}

/// `serve`'s applier: a step, an OOM kill of the resized pod before the next step, and the
/// next step puts the pod back and holds its container instead of stepping again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applier_rolls_back_a_step_that_ends_in_an_oom_kill() {
    use rightsizer::apply::{Applier, ApplyMode, PlanOptions};
    let env = Env::new().await;
    let url = {
        let kubeconfig = std::fs::read_to_string(env.dir.path().join("kubeconfig")).unwrap();
        kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .to_string()
    };
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let db = format!("sqlite://{}", env.dir.path().join("rs.db").display());
    let store = rightsizer::store::connect(&db).await.unwrap();
    let opts = PlanOptions {
        cluster: "prod".into(),
        ..PlanOptions::default()
    };
    let mut applier = Applier::new(
        client,
        store.clone(),
        opts,
        ApplyMode::InPlace,
        "serve (test)".into(),
    );
    let t0 = 1_800_000_000;

    let first = applier.step(t0).await.unwrap();
    assert!(first.rollbacks.is_empty());
    assert_eq!(
        line(&json_of(&first.plan), "web-5d8f-x1")["outcome"],
        "resized"
    );
    assert_eq!(env.cpu_request("web-5d8f-x1"), "750m");
    env.resizes();

    env.server.lock().unwrap().oom_kill("shop", "web-5d8f-x1");
    let second = applier.step(t0 + 3600).await.unwrap();
    assert_eq!(second.rollbacks.len(), 1, "{:?}", second.rollbacks);
    let (ns, pod, why, outcome) = &second.rollbacks[0];
    assert_eq!((ns.as_str(), pod.as_str()), ("shop", "web-5d8f-x1"));
    assert_eq!(why, "container app was OOM-killed after the resize");
    assert_eq!(outcome, "resized");
    assert_eq!(
        env.cpu_request("web-5d8f-x1"),
        "1",
        "back to the values before the step"
    );
    let web = line(&json_of(&second.plan), "web-5d8f-x1").clone();
    assert_eq!(web["decision"], "skip");
    assert!(
        web["reason"].as_str().unwrap().starts_with("held until"),
        "{web}"
    );
    let sent: Vec<String> = env.resizes().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        sent,
        ["web-5d8f-x1", "web-5d8f-x1"],
        "the rollback only: dry run, then sent"
    );

    // Both are on record, newest first, and counted.
    let changes = store.changes(Some("prod"), 10).await.unwrap();
    let web: Vec<_> = changes.iter().filter(|c| c.pod == "web-5d8f-x1").collect();
    assert_eq!(web.len(), 2, "{changes:?}");
    assert_eq!((web[0].kind.as_str(), web[0].at), ("rollback", t0 + 3600));
    assert_eq!(web[0].before.cpu_request_millicores, Some(750));
    assert_eq!(web[0].after.cpu_request_millicores, Some(1000));
    assert_eq!(
        web[0].reason,
        "rollback: container app was OOM-killed after the resize"
    );
    assert_eq!(
        (web[1].kind.as_str(), web[1].outcome.as_str()),
        ("resize", "resized")
    );
    assert_eq!(web[1].actor, "serve (test)");
    assert_eq!(web[1].workload.as_deref(), Some("Deployment/web"));
    let metrics = rightsizer::telemetry::metrics().encode();
    assert!(
        metrics.contains("rightsizer_resizes_total{outcome=\"rolled-back\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rightsizer_resizes_total{outcome=\"infeasible\"} 1"),
        "{metrics}"
    );

    // Still held a step later; the hold lapses after a day.
    let third = applier.step(t0 + 7200).await.unwrap();
    assert_eq!(
        line(&json_of(&third.plan), "web-5d8f-x1")["decision"],
        "skip"
    );
    let later = applier.step(t0 + 3600 + 86_400 + 1).await.unwrap();
    assert_eq!(
        line(&json_of(&later.plan), "web-5d8f-x1")["decision"],
        "resize"
    );
}

fn json_of(plan: &[rightsizer::apply::PlannedResize]) -> Vec<Value> {
    serde_json::from_value(serde_json::to_value(plan).unwrap()).unwrap()
}
