//! The Kubernetes API source against recorded API responses.
//!
//! A recorded-response server (tests/support/kube_api.rs) stands in for the Kubernetes API
//! server because no API server can run on this machine: there is no kube-apiserver package
//! and no container engine. It serves hand-written list/watch responses from
//! tests/fixtures/k8s/ in the API server's wire format and checks the query parameters the
//! client sends.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rightsizer::cluster::{
    self, reconcile, snapshot_once, spawn_reflectors, ClusterError, ClusterSnapshot,
    ClusterSourceConfig,
};
use rightsizer::model::{ContainerKey, Resources};
use support::kube_api::{
    namespaced, KubeApi, Mode, Reply, ALL, DEPLOYMENTS, DEPLOYMENTS_CONTINUE, PDBS, STATEFUL_SETS,
};

const MIB: i64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(15);

/// Log lines written while a guard is alive (this thread only; the tests run on a
/// current-thread runtime, so spawned tasks log here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn resources(cpu_req: i64, cpu_lim: Option<i64>, mem_req: i64, mem_lim: Option<i64>) -> Resources {
    Resources {
        cpu_request_millicores: Some(cpu_req),
        cpu_limit_millicores: cpu_lim,
        memory_request_bytes: Some(mem_req),
        memory_limit_bytes: mem_lim,
    }
}

/// Polls `done` until it holds; panics after [`WAIT`].
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(s: &ClusterSnapshot) -> Vec<String> {
    s.workloads
        .iter()
        .map(|w| format!("{}/{}/{}", w.namespace, w.kind, w.name))
        .collect()
}

/// What the recorded cluster holds, checked field by field.
fn assert_recorded_cluster(s: &ClusterSnapshot) {
    assert_eq!(
        names(s),
        [
            "batch/CronJob/nightly-report",
            "data/Job/backfill-2025",
            "data/StatefulSet/postgres",
            "monitoring/DaemonSet/node-exporter",
            "shop/Deployment/cart",
            "shop/Deployment/checkout",
            "shop/Deployment/web",
        ],
        "the CronJob's Job is folded into the CronJob"
    );
    let web = s.workload("shop", "Deployment", "web").unwrap();
    assert_eq!(web.replicas, Some(3));
    assert_eq!(web.pod_labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(
        web.labels
            .get("app.kubernetes.io/part-of")
            .map(String::as_str),
        Some("shop")
    );
    // The plain init container does not run alongside; the native sidecar does.
    let containers: Vec<_> = web.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["app", "log-shipper"]);
    assert_eq!(
        web.containers[0].resources,
        resources(250, Some(1000), 512 * MIB, Some(512 * MIB))
    );
    assert_eq!(
        web.containers[1].resources,
        resources(50, Some(200), 32 * MIB, Some(32 * MIB))
    );
    // Only rightsizer.io/* annotations are kept.
    let cart = s.workload("shop", "Deployment", "cart").unwrap();
    assert_eq!(
        cart.annotations.keys().collect::<Vec<_>>(),
        ["rightsizer.io/cpu-percentile", "rightsizer.io/margin"]
    );
    assert_eq!(
        cart.containers[0].resources.cpu_request_millicores,
        Some(200)
    );
    // No limits at all: unset, not zero.
    let checkout = s.workload("shop", "Deployment", "checkout").unwrap();
    assert_eq!(
        checkout.containers[0].resources,
        resources(500, None, 1024 * MIB, None)
    );
    let pg = s.workload("data", "StatefulSet", "postgres").unwrap();
    assert_eq!(pg.containers.len(), 2);
    assert_eq!(
        pg.containers[0].resources,
        resources(1000, Some(4000), 2048 * MIB, Some(2048 * MIB))
    );
    let ds = s
        .workload("monitoring", "DaemonSet", "node-exporter")
        .unwrap();
    assert_eq!(ds.replicas, Some(5), "desiredNumberScheduled");
    let cron = s.workload("batch", "CronJob", "nightly-report").unwrap();
    assert_eq!(cron.replicas, Some(1));
    assert_eq!(
        cron.containers[0].resources,
        resources(500, Some(2000), 1_000_000_000, Some(1_000_000_000))
    );
    let job = s.workload("data", "Job", "backfill-2025").unwrap();
    assert_eq!(job.replicas, Some(4), "parallelism");
    assert_eq!(
        job.containers[0].resources.memory_limit_bytes,
        Some(1536 * MIB)
    );

    let hpa = s.hpa_for(web).expect("web is scaled by an HPA");
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 12));
    assert_eq!(hpa.cpu_utilization_target, Some(70));
    assert_eq!(hpa.memory_utilization_target, None);
    assert_eq!(
        hpa.other_metrics,
        ["Pods http_requests_per_second: AverageValue 40"]
    );
    assert!(s.hpa_for(cart).is_none());

    let web_pdbs = s.pdbs_for(web);
    assert_eq!(web_pdbs.len(), 1);
    assert_eq!(web_pdbs[0].min_available.as_deref(), Some("2"));
    assert_eq!(web_pdbs[0].disruptions_allowed, Some(1));
    let pg_pdbs = s.pdbs_for(pg);
    assert_eq!(pg_pdbs.len(), 1, "matchExpressions select postgres");
    assert_eq!(pg_pdbs[0].max_unavailable.as_deref(), Some("0%"));
    assert_eq!(pg_pdbs[0].disruptions_allowed, Some(0));
    assert!(s.pdbs_for(cart).is_empty());
}

#[tokio::test]
async fn snapshot_once_lists_every_kind_across_pages() {
    let api = KubeApi::recorded().await;
    for path in ALL {
        api.expect_param(path, "limit", Some("500"));
        api.expect_param(path, "labelSelector", None);
        api.expect_param(path, "fieldSelector", None);
    }
    let s = snapshot_once(api.client(), &ClusterSourceConfig::default())
        .await
        .unwrap();
    assert_recorded_cluster(&s);
    assert!(s.degraded.is_empty(), "{:?}", s.degraded);

    // Deployments came in two pages: the second request carried the first page's token.
    let pages = api.seen_at(DEPLOYMENTS);
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].param("continue"), None);
    assert_eq!(pages[1].param("continue"), Some(DEPLOYMENTS_CONTINUE));
    assert!(pages.iter().all(|p| !p.is_watch()));
    for path in ALL {
        assert!(!api.seen_at(path).is_empty(), "{path} was listed");
    }
    api.assert_clean();

    // Reconciling against Prometheus' view of the same cluster.
    let key = |kind: &str, ns: &str, w: &str, c: &str| ContainerKey {
        cluster: "prod".into(),
        namespace: ns.into(),
        kind: kind.into(),
        workload: w.into(),
        container: c.into(),
    };
    let prometheus = vec![
        key("Deployment", "shop", "web", "app"),
        key("Deployment", "shop", "web", "log-shipper"),
        key("Deployment", "shop", "cart", "cart"),
        key("Deployment", "shop", "legacy", "app"),
        key("StatefulSet", "data", "postgres", "postgres"),
        key("StatefulSet", "data", "postgres", "exporter"),
        key("DaemonSet", "monitoring", "node-exporter", "node-exporter"),
        key("CronJob", "batch", "nightly-report", "report"),
        key("Job", "data", "backfill-2025", "backfill"),
    ];
    let d = reconcile(&s, "prod", &prometheus);
    assert_eq!(
        d.only_in_api,
        [key("Deployment", "shop", "checkout", "checkout")]
    );
    assert_eq!(
        d.only_in_prometheus,
        [key("Deployment", "shop", "legacy", "app")]
    );
    assert_eq!(
        s.resources_of(&key("Deployment", "shop", "web", "app")),
        Some(resources(250, Some(1000), 512 * MIB, Some(512 * MIB)))
    );
}

#[tokio::test]
async fn forbidden_pdbs_degrade_the_snapshot_and_keep_the_rest() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let api = KubeApi::recorded().await;
    api.route(
        PDBS,
        Mode::List(None),
        [Reply::status(403, "poddisruptionbudgets-forbidden.json")],
    );
    let s = snapshot_once(api.client(), &ClusterSourceConfig::default())
        .await
        .expect("a 403 on one resource is not an error");
    assert_eq!(
        s.degraded,
        ["forbidden: list policy/v1 poddisruptionbudgets"]
    );
    assert!(s.pdbs.is_empty());
    assert_eq!(s.workloads.len(), 7);
    assert_eq!(s.hpas.len(), 1);
    let log = logs.text();
    let line = log
        .lines()
        .find(|l| {
            l.contains("WARN") && l.contains("forbidden: list policy/v1 poddisruptionbudgets")
        })
        .unwrap_or_else(|| panic!("no warning naming the resource and verb in:\n{log}"));
    assert!(
        line.contains("verb=\"list\"") || line.contains("verb=list"),
        "{line}"
    );
    assert!(line.contains("grant get/list/watch"), "{line}");
    api.assert_clean();
}

#[tokio::test]
async fn other_api_errors_fail_the_one_shot_snapshot() {
    let api = KubeApi::recorded().await;
    api.route(
        STATEFUL_SETS,
        Mode::List(None),
        [Reply::status(500, "statefulsets-error.json")],
    );
    let err = snapshot_once(api.client(), &ClusterSourceConfig::default())
        .await
        .unwrap_err();
    match &err {
        ClusterError::Api { verb, resource, .. } => {
            assert_eq!((*verb, resource.as_str()), ("list", "apps/v1 statefulsets"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string().contains("etcdserver: request timed out"),
        "{err}"
    );
}

#[tokio::test]
async fn included_namespaces_and_the_label_selector_reach_the_server() {
    let api = KubeApi::start().await;
    // One list per included namespace that is not also excluded.
    api.route_all_kinds(|p| namespaced(p, "shop"));
    let selector = "app.kubernetes.io/part-of=shop,tier!=canary";
    for path in ALL {
        let path = namespaced(path, "shop");
        // HPAs and PDBs are read for the whole namespace: they rarely carry workload labels.
        let wanted = if path.ends_with("/horizontalpodautoscalers")
            || path.ends_with("/poddisruptionbudgets")
        {
            None
        } else {
            Some(selector)
        };
        api.expect_param(&path, "labelSelector", wanted);
        api.expect_param(&path, "fieldSelector", None);
    }
    let cfg = ClusterSourceConfig {
        include_namespaces: vec!["shop".into(), "data".into()],
        exclude_namespaces: vec!["data".into()],
        label_selector: Some(selector.into()),
        ..Default::default()
    };
    snapshot_once(api.client(), &cfg).await.unwrap();
    let seen = api.seen();
    assert_eq!(
        seen.len(),
        8,
        "seven kinds, deployments in two pages: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.path.contains("/namespaces/shop/")),
        "{seen:?}"
    );

    // The reflectors send the same selectors on their lists and watches.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = spawn_reflectors(api.client(), &cfg, async {
        let _ = stopped.await;
    })
    .unwrap();
    assert!(
        watch.wait_settled(WAIT).await,
        "pending: {:?}",
        watch.pending()
    );
    let deployments = namespaced(DEPLOYMENTS, "shop");
    wait_until(|| api.seen_at(&deployments).iter().any(|s| s.is_watch())).await;
    let w = api
        .seen_at(&deployments)
        .into_iter()
        .find(|s| s.is_watch())
        .unwrap();
    assert_eq!(w.param("labelSelector"), Some(selector));
    assert_eq!(w.param("allowWatchBookmarks"), Some("true"));
    assert_eq!(w.param("resourceVersion"), Some("48213"));
    stop.send(()).unwrap();
    watch.join().await;
    api.assert_clean();
}

#[tokio::test]
async fn excluded_namespaces_become_a_field_selector() {
    let api = KubeApi::recorded().await;
    let fields = "metadata.namespace!=kube-system,metadata.namespace!=monitoring";
    for path in ALL {
        api.expect_param(path, "fieldSelector", Some(fields));
    }
    let cfg = ClusterSourceConfig {
        exclude_namespaces: vec!["kube-system".into(), "monitoring".into()],
        ..Default::default()
    };
    snapshot_once(api.client(), &cfg).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = spawn_reflectors(api.client(), &cfg, async {
        let _ = stopped.await;
    })
    .unwrap();
    assert!(watch.wait_settled(WAIT).await);
    stop.send(()).unwrap();
    watch.join().await;
    assert!(api.seen().len() >= 16);
    api.assert_clean();
}

#[tokio::test]
async fn invalid_namespace_names_are_refused_before_any_request() {
    let api = KubeApi::recorded().await;
    let cfg = ClusterSourceConfig {
        exclude_namespaces: vec!["kube-system,metadata.name=x".into()],
        ..Default::default()
    };
    let err = snapshot_once(api.client(), &cfg).await.unwrap_err();
    assert!(matches!(err, ClusterError::Invalid(_)), "{err}");
    assert!(spawn_reflectors(api.client(), &cfg, async {}).is_err());
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn reflectors_sync_the_recorded_cluster_and_stop_on_shutdown() {
    let api = KubeApi::recorded().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = spawn_reflectors(api.client(), &ClusterSourceConfig::default(), async {
        let _ = stopped.await;
    })
    .unwrap();
    assert!(
        watch.wait_settled(WAIT).await,
        "pending: {:?}",
        watch.pending()
    );
    let s = watch.snapshot();
    assert_recorded_cluster(&s);
    assert!(s.degraded.is_empty());
    // The same cluster gives the same snapshot either way.
    let once = snapshot_once(api.client(), &ClusterSourceConfig::default())
        .await
        .unwrap();
    assert_eq!(s, once);
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, watch.join())
        .await
        .expect("the watch task ends on shutdown");
    api.assert_clean();
}

#[tokio::test]
async fn watch_events_and_bookmarks_update_the_store() {
    let api = KubeApi::recorded().await;
    // First watch: web scaled to 5, then a bookmark at 48300, then the stream ends. The
    // client must resume from the bookmark, where the second watch adds search and deletes
    // checkout, then stays open.
    api.route(
        DEPLOYMENTS,
        Mode::Watch,
        [
            Reply::events("deployments-watch-1.json"),
            Reply::events_then_quiet("deployments-watch-2.json"),
        ],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = spawn_reflectors(api.client(), &ClusterSourceConfig::default(), async {
        let _ = stopped.await;
    })
    .unwrap();
    let s = watch
        .wait_for(WAIT, |s| {
            s.workload("shop", "Deployment", "search").is_some()
                && s.workload("shop", "Deployment", "checkout").is_none()
        })
        .await
        .unwrap_or_else(|| panic!("watch events never applied: {:?}", names(&watch.snapshot())));
    assert_eq!(
        s.workload("shop", "Deployment", "web").unwrap().replicas,
        Some(5)
    );
    assert_eq!(
        s.workload("shop", "Deployment", "search")
            .unwrap()
            .containers[0]
            .resources,
        resources(1000, Some(4000), 3072 * MIB, Some(3072 * MIB))
    );
    let watches: Vec<_> = api
        .seen_at(DEPLOYMENTS)
        .into_iter()
        .filter(|s| s.is_watch())
        .collect();
    assert!(watches.len() >= 2, "{watches:?}");
    assert_eq!(
        watches[0].param("resourceVersion"),
        Some("48213"),
        "from the list"
    );
    assert_eq!(watches[0].param("allowWatchBookmarks"), Some("true"));
    assert_eq!(
        watches[1].param("resourceVersion"),
        Some("48300"),
        "from the bookmark"
    );
    let lists = api
        .seen_at(DEPLOYMENTS)
        .iter()
        .filter(|s| !s.is_watch())
        .count();
    assert_eq!(
        lists, 2,
        "two pages, and no re-list: a bookmark is not an error"
    );
    stop.send(()).unwrap();
    watch.join().await;
    api.assert_clean();
}

#[tokio::test]
async fn a_gone_watch_relists() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let api = KubeApi::recorded().await;
    api.route(
        DEPLOYMENTS,
        Mode::Watch,
        [Reply::events("deployments-watch-gone.json"), Reply::quiet()],
    );
    // The first list is the two recorded pages; the re-list after 410 sees the newer state.
    api.route(
        DEPLOYMENTS,
        Mode::List(None),
        [
            Reply::ok("deployments-page1.json"),
            Reply::ok("deployments-relist.json"),
        ],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = spawn_reflectors(api.client(), &ClusterSourceConfig::default(), async {
        let _ = stopped.await;
    })
    .unwrap();
    let s = watch
        .wait_for(WAIT, |s| {
            s.workload("shop", "Deployment", "search").is_some()
        })
        .await
        .unwrap_or_else(|| panic!("no re-list after 410: {:?}", api.seen_at(DEPLOYMENTS)));
    // The re-list replaced the store: cart and checkout are gone, web has its new resources.
    let deployments: Vec<_> = s
        .workloads
        .iter()
        .filter(|w| w.kind == "Deployment")
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(deployments, ["search", "web"]);
    let web = s.workload("shop", "Deployment", "web").unwrap();
    assert_eq!(web.replicas, Some(4));
    assert_eq!(
        web.containers[0].resources,
        resources(300, Some(1200), 768 * MIB, Some(768 * MIB))
    );
    assert!(s.degraded.is_empty(), "a 410 is routine: {:?}", s.degraded);

    // The watch from the re-list's resourceVersion follows the re-list: wait for it.
    wait_until(|| api.seen_at(DEPLOYMENTS).len() >= 5).await;
    let requests: Vec<String> = api
        .seen_at(DEPLOYMENTS)
        .iter()
        .map(|s| {
            if s.is_watch() {
                format!("watch@{}", s.param("resourceVersion").unwrap_or("-"))
            } else {
                format!(
                    "list{}",
                    s.param("continue").map(|_| "+continue").unwrap_or("")
                )
            }
        })
        .collect();
    assert_eq!(
        requests[..5],
        [
            "list",
            "list+continue",
            "watch@48213",
            "list",
            "watch@49000"
        ],
        "{requests:?}"
    );
    assert!(logs.text().contains("410 Gone"), "{}", logs.text());
    stop.send(()).unwrap();
    watch.join().await;
    api.assert_clean();
}

/// The API state of `serve` with one cluster whose Kubernetes source is `watch`.
async fn serving(watch: Arc<cluster::ClusterWatch>) -> rightsizer::http::AppState {
    let store = rightsizer::store::connect("sqlite::memory:").await.unwrap();
    let mut state = rightsizer::http::AppState::new(store);
    let job = rightsizer::jobs::ClusterJob {
        kubernetes: Some(ClusterSourceConfig::default()),
        watch: Some(watch),
        ..rightsizer::jobs::ClusterJob::new("prod", None)
    };
    state.jobs = Some(Arc::new(rightsizer::jobs::JobRunner::new(
        vec![job],
        Default::default(),
        rightsizer::jobs::AnalysisSettings {
            // The guidance's own strategy: these checks are of its rules, not the tournament's choice.
            policies: rightsizer::analyzer::PolicySet::new(rightsizer::analyzer::PolicyOverride {
                strategy: Some(rightsizer::analyzer::StrategyName::Guidance),
                ..Default::default()
            })
            .unwrap(),
            pricing: Default::default(),
            step_secs: 60,
            backtest: Default::default(),
        },
    )));
    state
}

/// `/readyz`'s status and its `kubernetes` detail.
async fn readiness(state: &rightsizer::http::AppState) -> (u16, String) {
    use tower::ServiceExt;
    let resp = rightsizer::http::router(state.clone())
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    (status, body["kubernetes"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn reflectors_report_forbidden_pdbs_as_degraded_and_keep_the_rest() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let api = KubeApi::recorded().await;
    api.route(
        PDBS,
        Mode::List(None),
        [Reply::status(403, "poddisruptionbudgets-forbidden.json")],
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = Arc::new(
        spawn_reflectors(api.client(), &ClusterSourceConfig::default(), async {
            let _ = stopped.await;
        })
        .unwrap(),
    );
    assert!(
        watch.wait_settled(WAIT).await,
        "pending: {:?}",
        watch.pending()
    );
    assert_eq!(
        watch.degraded(),
        ["forbidden: list policy/v1 poddisruptionbudgets"]
    );
    // serve keeps these reflectors; its readiness says what they cannot read, and stays ready.
    let state = serving(watch.clone()).await;
    assert_eq!(
        readiness(&state).await,
        (
            200,
            "degraded: forbidden: list policy/v1 poddisruptionbudgets".to_string()
        )
    );
    let s = watch.snapshot();
    assert_eq!(s.degraded, watch.degraded());
    assert!(s.pdbs.is_empty());
    assert_eq!(s.workloads.len(), 7);
    assert_eq!(s.hpas.len(), 1);

    // Permission granted later: the backoff retry lists PDBs and the degradation clears.
    api.route(
        PDBS,
        Mode::List(None),
        [Reply::ok("poddisruptionbudgets.json")],
    );
    let s = watch
        .wait_for(Duration::from_secs(20), |s| s.degraded.is_empty())
        .await
        .expect("the degradation clears once the list succeeds");
    assert_eq!(s.pdbs.len(), 2);
    assert_eq!(readiness(&state).await, (200, "ok".to_string()));
    let log = logs.text();
    let warnings = log
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains("forbidden: list policy/v1 poddisruptionbudgets")
        })
        .count();
    assert_eq!(
        warnings, 1,
        "one warning per transition, not per retry:\n{log}"
    );
    assert!(log.contains("Kubernetes API access recovered"), "{log}");
    stop.send(()).unwrap();
    drop(state);
    Arc::into_inner(watch)
        .expect("the state held the only other reference")
        .join()
        .await;
    api.assert_clean();
}

#[tokio::test]
async fn a_kubeconfig_file_and_context_select_the_server() {
    let api = KubeApi::recorded().await;
    let dir = std::env::temp_dir().join(format!("rs-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: elsewhere\n\
             clusters:\n- name: recorded\n  cluster:\n    server: {url}\n\
             - name: nowhere\n  cluster:\n    server: http://127.0.0.1:1\n\
             contexts:\n- name: recorded\n  context:\n    cluster: recorded\n    user: reader\n\
             - name: elsewhere\n  context:\n    cluster: nowhere\n    user: reader\n\
             users:\n- name: reader\n  user: {{}}\n",
            url = api.url()
        ),
    )
    .unwrap();
    let cfg = ClusterSourceConfig {
        kubeconfig: Some(path.clone()),
        context: Some("recorded".into()),
        ..Default::default()
    };
    let client = cluster::client(&cfg).await.unwrap();
    let s = snapshot_once(client, &cfg).await.unwrap();
    assert_eq!(s.workloads.len(), 7);

    let missing = ClusterSourceConfig {
        kubeconfig: Some(dir.join("absent")),
        ..Default::default()
    };
    let Err(err) = cluster::client(&missing).await else {
        panic!("a missing kubeconfig must be an error");
    };
    let err = err.to_string();
    assert!(
        err.starts_with("cannot load Kubernetes client config: kubeconfig "),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An API server (or something posing as one) answering a list with a gigabyte: the
/// client stops at `kubernetes.max_response_bytes` and says so.
#[tokio::test]
async fn a_gigabyte_list_answer_stops_at_the_cap() {
    let server = support::huge::HugeServer::start(
        "application/json",
        "{\"kind\":\"DeploymentList\",\"apiVersion\":\"apps/v1\",\"metadata\":{},\"items\":[",
        support::huge::GIGABYTE,
        false,
    )
    .await;
    let config = kube::Config::new(server.url.parse().unwrap());
    let client = rightsizer::cluster::client_from_config(config, 1 << 20).unwrap();
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::all(client);
    let err = api.list(&Default::default()).await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(
        text.contains("the Kubernetes API answered more than 1048576 bytes, the limit: raise kubernetes.max_response_bytes"),
        "{text}"
    );
    assert!(server.sent() < 64 << 20, "read {} bytes", server.sent());
}
