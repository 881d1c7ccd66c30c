//! GitOps hand-over end to end: golden in-place edits of a fixture GitOps
//! repository (compared byte for byte, the diff touching only resource
//! lines, a second run changing nothing), kustomize and `kubectl patch`
//! output, branch/commit/push with real git against a local bare
//! repository, and pull/merge requests against a recorded-response fake
//! forge (`tests/support/forge.rs`: the real GitHub/GitLab APIs can't be
//! reached from tests).
//!
//! `RIGHTSIZER_BLESS=1 cargo test --test gitops` rewrites the golden trees
//! under `tests/fixtures/gitops/expected/`; review the diff before committing.

#[path = "support/forge.rs"]
mod forge;
#[path = "support/git.rs"]
mod git_support;
#[path = "support/huge.rs"]
mod huge;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use forge::{FakeForge, Reply};
use git_support::git;
use rightsizer::gitops::{
    run, ForgeConfig, ForgeError, ForgeKind, GitopsError, GitopsOptions, GitopsReport,
    HelmValuesMapping, OutputMode, PullRequestAction, SkipReason, WorkloadRef,
};
use rightsizer::model::Recommendation;
use secrecy::SecretString;
use serde_json::json;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;
const TOKEN: &str = "ghp_test_token_0123456789";
const BRANCH: &str = "rightsizer/update";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "rs-gitops-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gitops")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `root` but `.git`, by relative path.
fn read_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == ".git" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                walk(root, &entry.path(), out);
            } else {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

/// `git diff --no-index` between two trees or files (empty when equal).
fn diff(a: &Path, b: &Path, context: &str) -> String {
    let out = Command::new("git")
        .args(["diff", "--no-index", "--no-color", context])
        .arg(a)
        .arg(b)
        .output()
        .expect("git diff");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compares `actual` with `expected/<name>` byte for byte (or rewrites it when blessing).
fn assert_golden(actual: &Path, name: &str) {
    let expected = fixtures().join("expected").join(name);
    if std::env::var_os("RIGHTSIZER_BLESS").is_some() {
        let _ = fs::remove_dir_all(&expected);
        copy_tree(actual, &expected);
        let _ = fs::remove_dir_all(expected.join(".git"));
        return;
    }
    let got = read_tree(actual);
    let want = read_tree(&expected);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "file sets differ from {}",
        expected.display()
    );
    for (path, bytes) in &got {
        assert!(
            *bytes == want[path],
            "{} differs from the golden file:\n{}",
            path.display(),
            diff(&expected.join(path), &actual.join(path), "-U3")
        );
    }
}

fn res(cpu: i64, cpu_limit: i64, memory: i64, memory_limit: i64) -> [Option<i64>; 4] {
    [Some(cpu), Some(cpu_limit), Some(memory), Some(memory_limit)]
}

const NONE: [Option<i64>; 4] = [None; 4];

fn resources_json(r: [Option<i64>; 4]) -> serde_json::Value {
    json!({
        "cpu_request_millicores": r[0],
        "cpu_limit_millicores": r[1],
        "memory_request_bytes": r[2],
        "memory_limit_bytes": r[3],
    })
}

/// A recommendation built from JSON, the way the API serves it.
fn rec(
    ns: &str,
    kind: &str,
    name: &str,
    container: &str,
    current: [Option<i64>; 4],
    recommended: [Option<i64>; 4],
    confidence: &str,
) -> Recommendation {
    serde_json::from_value(json!({
        "cluster": "prod-eu",
        "namespace": ns,
        "kind": kind,
        "workload": name,
        "container": container,
        "status": "ok",
        "current": resources_json(current),
        "recommended": resources_json(recommended),
        "confidence": confidence,
        "confidence_score": match confidence { "high" => 0.93, "medium" => 0.71, _ => 0.32 },
        "reason": format!("p95 CPU and peak memory over 14 days for {container}"),
        "strategy": "p95-peak",
        "evidence": {
            "cpu_percentile": 95.0,
            "cpu_percentile_millicores": recommended[0].map(|c| c as f64 / 1.15),
            "memory_peak_bytes": recommended[2].map(|m| m as f64 / 1.15),
            "samples": 40320,
            "memory_samples": 40320,
            "history_hours": 336,
            "window_hours": 336,
            "margin": 0.15,
            "rules": ["cpu request = p95 × 1.15", "memory request = limit = peak × 1.15"],
        },
        "computed_at": 1714550400,
    }))
    .expect("recommendation JSON")
}

fn insufficient(ns: &str, kind: &str, name: &str, container: &str) -> Recommendation {
    let mut r = rec(ns, kind, name, container, NONE, NONE, "low");
    r.status = serde_json::from_value(json!("insufficient-data")).unwrap();
    r.reason = "only 3 hours of history".into();
    r
}

fn fixture_recs() -> Vec<Recommendation> {
    vec![
        rec(
            "shop",
            "Deployment",
            "api",
            "api",
            res(500, 2000, 512 * MI, 512 * MI),
            res(250, 1000, 768 * MI, 768 * MI),
            "high",
        ),
        rec(
            "shop",
            "Deployment",
            "api",
            "envoy",
            [Some(100), None, Some(64 * MI), None],
            [Some(110), None, Some(70 * MI), None],
            "high",
        ),
        rec(
            "shop",
            "Deployment",
            "worker",
            "worker",
            NONE,
            res(150, 600, 256 * MI, 256 * MI),
            "medium",
        ),
        rec(
            "shop",
            "Deployment",
            "cart",
            "cart",
            NONE,
            res(50, 200, 128 * MI, 128 * MI),
            "high",
        ),
        rec(
            "shop",
            "Rollout",
            "frontend",
            "frontend",
            res(300, 1000, 256 * MI, 256 * MI),
            res(120, 480, 384 * MI, 384 * MI),
            "high",
        ),
        rec(
            "batch",
            "CronJob",
            "nightly-report",
            "report",
            [None, None, Some(2 * GI), None],
            res(100, 400, 768 * MI, 768 * MI),
            "high",
        ),
        rec(
            "db",
            "StatefulSet",
            "postgres",
            "postgres",
            [Some(1000), None, Some(4 * GI), Some(4 * GI)],
            res(350, 1400, 3 * GI, 3 * GI),
            "high",
        ),
        rec(
            "checkout-prod",
            "Deployment",
            "checkout",
            "checkout",
            res(1000, 4000, GI, GI),
            res(600, 2400, GI, GI),
            "high",
        ),
        rec(
            "checkout-prod",
            "Deployment",
            "queue-consumer",
            "consumer",
            [Some(200), None, Some(256 * MI), None],
            res(80, 320, 192 * MI, 192 * MI),
            "high",
        ),
        rec(
            "checkout-staging",
            "Deployment",
            "queue-consumer",
            "consumer",
            [Some(200), None, Some(256 * MI), None],
            res(40, 160, 128 * MI, 128 * MI),
            "high",
        ),
        rec(
            "payments",
            "Deployment",
            "payments",
            "server",
            res(200, 1000, GI, GI),
            res(300, 1200, 640 * MI, 640 * MI),
            "high",
        ),
        rec(
            "payments",
            "Deployment",
            "payments",
            "worker",
            NONE,
            res(100, 400, 256 * MI, 256 * MI),
            "high",
        ),
        rec(
            "shop",
            "Deployment",
            "billing",
            "billing",
            res(2000, 0, 8 * GI, 0),
            res(500, 2000, 2 * GI, 2 * GI),
            "high",
        ),
        rec(
            "kube-system",
            "DaemonSet",
            "log-agent",
            "agent",
            [None, None, None, Some(200 * MI)],
            res(50, 200, 96 * MI, 96 * MI),
            "high",
        ),
        rec(
            "search",
            "Deployment",
            "search",
            "search",
            NONE,
            res(500, 2000, GI, GI),
            "high",
        ),
        rec(
            "shop",
            "Deployment",
            "legacy",
            "legacy",
            NONE,
            res(100, 400, 128 * MI, 128 * MI),
            "high",
        ),
        rec(
            "shop",
            "Widget",
            "gadget",
            "gadget",
            NONE,
            res(100, 400, 128 * MI, 128 * MI),
            "high",
        ),
        rec(
            "default",
            "Pod",
            "toolbox",
            "toolbox",
            NONE,
            res(50, 200, 64 * MI, 64 * MI),
            "low",
        ),
        insufficient("shop", "Deployment", "ghost", "ghost"),
    ]
}

fn options(repo: &Path) -> GitopsOptions {
    let mut opts = GitopsOptions::new(repo);
    opts.helm_values = vec![
        HelmValuesMapping {
            workload: "payments/Deployment/payments".into(),
            container: Some("server".into()),
            values_file: "charts/payments/values.yaml".into(),
            resources_path: "server.resources".into(),
        },
        HelmValuesMapping {
            workload: "payments/Deployment/payments".into(),
            container: Some("worker".into()),
            values_file: "charts/payments/values.yaml".into(),
            resources_path: "worker.resources".into(),
        },
    ];
    opts
}

fn workload(ns: &str, kind: &str, name: &str) -> WorkloadRef {
    WorkloadRef {
        namespace: ns.into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn names(list: impl IntoIterator<Item = WorkloadRef>) -> Vec<String> {
    let mut v: Vec<String> = list.into_iter().map(|w| w.to_string()).collect();
    v.sort();
    v
}

fn skipped(report: &GitopsReport, reason: SkipReason) -> Vec<String> {
    let mut v: Vec<String> = report
        .skipped
        .iter()
        .filter(|s| s.reason == reason)
        .map(|s| match &s.container {
            Some(c) => format!("{} {c}", s.workload),
            None => s.workload.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// The fixture repository, copied into a temp dir.
fn fixture_copy(name: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(name);
    let repo = tmp.0.join("repo");
    copy_tree(&fixtures().join("repo"), &repo);
    (tmp, repo)
}

fn is_resource_line(line: &str) -> bool {
    let t = line.trim_start();
    ["resources:", "requests:", "limits:", "cpu:", "memory:"]
        .iter()
        .any(|k| t.starts_with(k))
}

#[tokio::test]
async fn in_place_edits_match_the_golden_files_and_touch_only_resources() {
    let (_tmp, repo) = fixture_copy("inplace");
    let recs = fixture_recs();
    let report = run(&options(&repo), &recs).await.expect("run");

    assert_golden(&repo, "in-place");

    // The diff touches resource lines only (plus the blocks added).
    let patch = diff(&fixtures().join("repo"), &repo, "-U0");
    let changed: Vec<&str> = patch
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert!(!changed.is_empty());
    for line in &changed {
        assert!(
            is_resource_line(&line[1..]),
            "non-resource line in the diff: {line}"
        );
    }

    assert_eq!(
        names(report.changed.iter().map(|c| c.workload.clone())),
        [
            "batch/CronJob/nightly-report",
            "checkout-prod/Deployment/checkout",
            "db/StatefulSet/postgres",
            "payments/Deployment/payments",
            "shop/Deployment/api",
            "shop/Deployment/cart",
            "shop/Deployment/worker",
            "shop/Rollout/frontend",
        ]
    );
    assert!(report.changed.iter().all(|c| c.edited));
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    assert_eq!(
        files,
        [
            "apps/batch/report.yaml",
            "apps/db/postgres.yaml",
            "apps/shop/rollout.yaml",
            "apps/shop/workloads.yaml",
            "base/checkout/deployment.yaml",
            "charts/payments/values.yaml",
        ]
    );
    let checkout = report
        .changed
        .iter()
        .find(|c| c.workload == workload("checkout-prod", "Deployment", "checkout"))
        .unwrap();
    assert!(
        checkout.notes[0].contains("checkout-staging"),
        "{:?}",
        checkout.notes
    );
    let api = report
        .changed
        .iter()
        .find(|c| c.workload.name == "api")
        .unwrap();
    assert_eq!(api.containers.len(), 1, "envoy is below the threshold");
    assert_eq!(api.location.as_ref().unwrap().line, 3);

    assert_eq!(
        skipped(&report, SkipReason::BelowThreshold),
        ["shop/Deployment/api envoy"]
    );
    assert_eq!(
        skipped(&report, SkipReason::LowConfidence),
        ["default/Pod/toolbox toolbox"]
    );
    assert_eq!(
        skipped(&report, SkipReason::InsufficientData),
        ["shop/Deployment/ghost ghost"]
    );
    assert_eq!(
        skipped(&report, SkipReason::Ignored),
        [
            "kube-system/DaemonSet/log-agent",
            "payments/Deployment/payments",
            "shop/Deployment/billing",
        ]
    );
    let mut ambiguous: Vec<String> = report
        .ambiguous
        .iter()
        .map(|a| format!("{} x{}", a.workload, a.locations.len()))
        .collect();
    ambiguous.sort();
    assert_eq!(
        ambiguous,
        [
            "checkout-prod/Deployment/queue-consumer x1",
            "checkout-staging/Deployment/queue-consumer x1",
            "search/Deployment/search x2",
        ]
    );
    assert_eq!(
        names(report.missing.clone()),
        ["shop/Deployment/legacy", "shop/Widget/gadget"]
    );
    assert_eq!(report.malformed.len(), 1);
    assert_eq!(
        report.malformed[0].file,
        PathBuf::from("apps/broken/bad.yaml")
    );
    assert_eq!(report.unknown_kinds.len(), 1);
    assert_eq!(report.unknown_kinds[0].kind, "Widget");
    // The report serializes for the CLI's JSON output.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["output"], "in-place");
    assert!(json["skipped"][0]["reason"].is_string());

    // Idempotent: a second run finds nothing left to change.
    let before = read_tree(&repo);
    let again = run(&options(&repo), &recs).await.expect("second run");
    assert!(again.files.is_empty(), "{:?}", again.files);
    assert!(again.changed.is_empty());
    assert_eq!(read_tree(&repo), before);
}

#[tokio::test]
async fn kustomize_output_writes_patches_and_their_entries() {
    let (_tmp, repo) = fixture_copy("kustomize");
    let mut opts = options(&repo);
    opts.output = OutputMode::Kustomize;
    let recs = fixture_recs();
    let report = run(&opts, &recs).await.expect("run");
    assert_golden(&repo, "kustomize");
    assert!(report
        .files
        .contains(&PathBuf::from("rightsizer-patches/kustomization.yaml")));
    // Manifests are untouched; only the patch directory is new.
    let original = read_tree(&fixtures().join("repo"));
    let now = read_tree(&repo);
    for (path, bytes) in &original {
        assert_eq!(&now[path], bytes, "{} changed", path.display());
    }
    assert_eq!(
        skipped(&report, SkipReason::Unsupported),
        ["shop/Rollout/frontend", "shop/Widget/gadget"]
    );

    // A kustomization the user completed keeps their lines; re-running adds nothing.
    let kustomization = repo.join("rightsizer-patches/kustomization.yaml");
    let mut text = fs::read_to_string(&kustomization).unwrap();
    text.push_str("resources:\n- ../overlays/prod\n");
    fs::write(&kustomization, &text).unwrap();
    let again = run(&opts, &recs).await.expect("second run");
    assert!(again.files.is_empty(), "{:?}", again.files);
    assert_eq!(fs::read_to_string(&kustomization).unwrap(), text);

    // A new workload gets its entry merged into the existing list.
    let mut more = recs.clone();
    more.push(rec(
        "search",
        "Deployment",
        "indexer",
        "indexer",
        NONE,
        res(100, 400, 128 * MI, 128 * MI),
        "high",
    ));
    let third = run(&opts, &more).await.expect("third run");
    assert_eq!(third.files.len(), 2, "{:?}", third.files);
    let merged = fs::read_to_string(&kustomization).unwrap();
    assert!(merged.starts_with(&text[..text.find("resources:\n- ../overlays").unwrap()]));
    assert!(
        merged.contains("- path: search-deployment-indexer.yaml\n"),
        "{merged}"
    );
    assert!(merged.contains("resources:\n- ../overlays/prod\n"));
}

#[tokio::test]
async fn patches_output_writes_kubectl_bodies_and_commands() {
    let (_tmp, repo) = fixture_copy("patches");
    let mut opts = options(&repo);
    opts.output = OutputMode::Patches;
    opts.out_dir = Some("out".into());
    let report = run(&opts, &fixture_recs()).await.expect("run");
    assert_golden(&repo, "patches");
    let readme = fs::read_to_string(repo.join("out/README.txt")).unwrap();
    assert!(readme.contains(
        "kubectl patch deployment api -n shop --type strategic --patch-file shop-deployment-api.json\n"
    ));
    assert!(readme.contains(
        "kubectl patch cronjob nightly-report -n batch --type strategic --patch-file batch-cronjob-nightly-report.json\n"
    ));
    let body: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(repo.join("out/batch-cronjob-nightly-report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resources"]
            ["limits"]["memory"],
        "768Mi"
    );
    assert!(!report.files.is_empty());
    let again = run(&opts, &fixture_recs()).await.expect("second run");
    assert!(again.files.is_empty(), "{:?}", again.files);
}

/// A work tree with the fixture committed on `main`, pushed to a bare `origin`.
struct GitFixture {
    _tmp: TempDir,
    work: PathBuf,
    remote: PathBuf,
}

fn git_fixture(name: &str) -> GitFixture {
    let tmp = TempDir::new(name);
    let remote = tmp.0.join("remote.git");
    let work = tmp.0.join("work");
    fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    copy_tree(&fixtures().join("repo"), &work);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial manifests"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    git(&work, &["push", "-q", "origin", "main"]);
    GitFixture {
        _tmp: tmp,
        work,
        remote,
    }
}

fn git_options(work: &Path) -> GitopsOptions {
    let mut opts = options(work);
    opts.branch = Some(BRANCH.into());
    opts.commit = true;
    opts.push = Some("origin".into());
    opts
}

#[tokio::test]
async fn branch_commit_and_push_to_a_bare_repository() {
    let fx = git_fixture("git");
    let recs = fixture_recs();
    let report = run(&git_options(&fx.work), &recs).await.expect("run");

    let branch = &report.branches[0];
    assert_eq!(branch.branch, BRANCH);
    assert!(!branch.reused);
    assert_eq!(branch.pushed_to.as_deref(), Some("origin"));
    let first = branch.commit.clone().expect("a commit");

    // The bare repository has the branch, one commit ahead of main.
    let log = git(
        &fx.remote,
        &["log", "--format=%H%n%B%x00", &format!("main..{BRANCH}")],
    );
    let commits: Vec<&str> = log
        .split('\0')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(commits.len(), 1, "{log}");
    assert!(commits[0].starts_with(&first));
    let message = commits[0];
    assert!(
        message.contains("rightsizer: right-size 8 workloads"),
        "{message}"
    );
    for line in [
        "- shop/Deployment/api api: cpu request 500m → 250m, cpu limit 2 → 1, memory request 512Mi → 768Mi, memory limit 512Mi → 768Mi",
        "- batch/CronJob/nightly-report report: cpu request - → 100m, cpu limit - → 400m, memory request 2Gi → 768Mi, memory limit - → 768Mi",
        "- payments/Deployment/payments server:",
        "- db/StatefulSet/postgres postgres:",
    ] {
        assert!(message.contains(line), "missing {line:?} in\n{message}");
    }
    // Only the edited files are in the commit.
    let files = git(&fx.remote, &["diff", "--name-only", "main", BRANCH]);
    assert_eq!(files.lines().count(), report.files.len(), "{files}");

    // The work tree is back on main, unchanged and clean.
    assert_eq!(
        git(&fx.work, &["symbolic-ref", "--short", "HEAD"]).trim(),
        "main"
    );
    assert!(git(&fx.work, &["status", "--porcelain"]).trim().is_empty());
    assert!(read_tree(&fixtures().join("repo")) == read_tree(&fx.work));

    // The same recommendations again: nothing new to commit.
    let same = run(&git_options(&fx.work), &recs).await.expect("same run");
    assert!(same.branches[0].reused);
    assert_eq!(same.branches[0].commit, None);
    assert_eq!(same.changed.len(), 8, "the branch still proposes them");
    assert!(same.changed.iter().all(|c| !c.edited));

    // A changed recommendation adds a commit on top of the same branch.
    let mut changed = recs.clone();
    changed[0] = rec(
        "shop",
        "Deployment",
        "api",
        "api",
        res(500, 2000, 512 * MI, 512 * MI),
        res(300, 1200, 768 * MI, 768 * MI),
        "high",
    );
    let second = run(&git_options(&fx.work), &changed)
        .await
        .expect("second run");
    assert!(second.branches[0].reused);
    let second_commit = second.branches[0].commit.clone().expect("a second commit");
    let log = git(
        &fx.remote,
        &["log", "--format=%H %s", &format!("main..{BRANCH}")],
    );
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with(&second_commit));
    assert!(
        lines[0].ends_with("rightsizer: right-size 1 workload"),
        "{log}"
    );
    assert!(lines[1].starts_with(&first));
    let body = git(&fx.remote, &["log", "-1", "--format=%B", BRANCH]);
    assert!(
        body.contains("- shop/Deployment/api api: cpu request 250m → 300m, cpu limit 1 → 1200m"),
        "{body}"
    );

    // A fresh clone (no local branch) reuses the pushed branch too.
    let clone = fx._tmp.0.join("clone");
    git(
        &fx._tmp.0,
        &[
            "clone",
            "-q",
            fx.remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let mut third = changed.clone();
    third[0] = rec(
        "shop",
        "Deployment",
        "api",
        "api",
        res(500, 2000, 512 * MI, 512 * MI),
        res(400, 1600, 768 * MI, 768 * MI),
        "high",
    );
    let report = run(&git_options(&clone), &third)
        .await
        .expect("run from a clone");
    assert!(report.branches[0].reused);
    assert!(report.branches[0].commit.is_some());
    let count = git(
        &fx.remote,
        &["rev-list", "--count", &format!("main..{BRANCH}")],
    );
    assert_eq!(count.trim(), "3");
}

#[tokio::test]
async fn grouping_by_namespace_makes_one_branch_each_and_caps_workloads() {
    let fx = git_fixture("group");
    let mut opts = git_options(&fx.work);
    opts.group_by_namespace = true;
    opts.max_workloads = Some(2);
    let report = run(&opts, &fixture_recs()).await.expect("run");
    let branches: Vec<(String, usize)> = report
        .branches
        .iter()
        .map(|b| (b.branch.clone(), b.workloads.len()))
        .collect();
    assert_eq!(
        branches,
        [
            (format!("{BRANCH}-batch"), 1),
            (format!("{BRANCH}-checkout-prod"), 1),
            (format!("{BRANCH}-db"), 1),
            (format!("{BRANCH}-payments"), 1),
            (format!("{BRANCH}-shop"), 2),
        ]
    );
    assert_eq!(
        skipped(&report, SkipReason::OverLimit),
        ["shop/Deployment/worker", "shop/Rollout/frontend"]
    );
    let remote_branches = git(
        &fx.remote,
        &["branch", "--list", "--format=%(refname:short)"],
    );
    assert_eq!(remote_branches.lines().count(), 6, "{remote_branches}");
    let shop_files = git(
        &fx.remote,
        &["diff", "--name-only", "main", &format!("{BRANCH}-shop")],
    );
    assert_eq!(shop_files.trim(), "apps/shop/workloads.yaml");
}

#[tokio::test]
async fn a_dirty_work_tree_is_refused_before_anything_changes() {
    let fx = git_fixture("dirty");
    let path = fx.work.join("apps/db/postgres.yaml");
    fs::write(&path, fs::read_to_string(&path).unwrap() + "# local edit\n").unwrap();
    let err = run(&git_options(&fx.work), &fixture_recs())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("uncommitted changes"), "{err}");
    assert!(git(&fx.work, &["branch", "--list", BRANCH])
        .trim()
        .is_empty());
}

#[tokio::test]
async fn contradictory_options_are_refused() {
    let mut opts = GitopsOptions::new("/nonexistent");
    opts.commit = true;
    let err = run(&opts, &[]).await.unwrap_err();
    assert!(matches!(err, GitopsError::Options(_)), "{err}");
    assert!(err.to_string().contains("--commit needs --branch"));
}

fn github(base_url: &str) -> ForgeConfig {
    let mut cfg = ForgeConfig::new(
        ForgeKind::GitHub,
        "acme/gitops",
        "main",
        SecretString::from(TOKEN.to_string()),
    );
    cfg.base_url = base_url.to_string();
    cfg
}

#[tokio::test]
async fn github_pull_request_is_created_then_updated() {
    let fx = git_fixture("github");
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
    let mut opts = git_options(&fx.work);
    opts.pull_request = Some(github(&forge.base_url));
    let report = run(&opts, &fixture_recs()).await.expect("run");
    let pr = report.branches[0]
        .pull_request
        .clone()
        .expect("a pull request");
    assert_eq!((pr.number, pr.action), (7, PullRequestAction::Created));
    assert_eq!(pr.url, "https://github.com/acme/gitops/pull/7");

    let requests = forge.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let list = &requests[0];
    assert_eq!(
        (list.method.as_str(), list.path.as_str()),
        ("GET", "/repos/acme/gitops/pulls")
    );
    let query = list.query_pairs();
    assert!(
        query.contains(&("head".into(), format!("acme:{BRANCH}"))),
        "{query:?}"
    );
    assert!(query.contains(&("state".into(), "open".into())));
    assert_eq!(
        list.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(list.header("accept"), Some("application/vnd.github+json"));
    assert!(list
        .header("user-agent")
        .unwrap()
        .starts_with("rightsizer/"));
    let create = requests[1].json();
    assert_eq!(create["title"], "rightsizer: right-size 8 workloads");
    assert_eq!(create["head"], BRANCH);
    assert_eq!(create["base"], "main");
    let body = create["body"].as_str().unwrap();
    assert!(body.contains("### Deployment `api` in `shop`"), "{body}");
    assert!(body.contains("| Container | CPU request | CPU limit | Memory request | Memory limit | Evidence | Confidence | Backtest risk | Impact | Findings | Reason |"), "{body}");
    assert!(body.contains("| `api` | `500m` → **`250m`** | `2` → **`1`** | `512Mi` → **`768Mi`** | `512Mi` → **`768Mi`** | p95 CPU 217.4m; peak memory 667.8Mi; 336 h of history in 336 h, margin 15% | high (0.93) | "), "{body}");
    assert!(
        body.contains("also deployed to namespace checkout-staging"),
        "{body}"
    );
    assert!(body.contains("strategy: p95-peak"));
    assert!(body.contains("<details><summary>Rules behind these numbers</summary>\n\n- `api`: cpu request = p95 × 1.15\n"), "{body}");

    // Re-running finds the open pull request and updates it.
    let forge = FakeForge::start(vec![
        (
            "GET",
            "/repos/acme/gitops/pulls",
            Reply::json(
                200,
                json!([serde_json::from_str::<serde_json::Value>(
                    &Reply::fixture(200, "github_pull.json").body
                )
                .unwrap()]),
            ),
        ),
        (
            "PATCH",
            "/repos/acme/gitops/pulls/7",
            Reply::fixture(200, "github_pull.json"),
        ),
    ])
    .await;
    let mut recs = fixture_recs();
    recs[0] = rec(
        "shop",
        "Deployment",
        "api",
        "api",
        res(500, 2000, 512 * MI, 512 * MI),
        res(300, 1200, 768 * MI, 768 * MI),
        "high",
    );
    opts.pull_request = Some(github(&forge.base_url));
    let report = run(&opts, &recs).await.expect("second run");
    let pr = report.branches[0].pull_request.clone().unwrap();
    assert_eq!((pr.number, pr.action), (7, PullRequestAction::Updated));
    let requests = forge.requests();
    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PATCH"]);
    let update = requests[1].json();
    assert!(update["body"]
        .as_str()
        .unwrap()
        .contains("`500m` → **`300m`**"));
    assert!(update.get("head").is_none());
}

#[tokio::test]
async fn gitlab_merge_request_is_created_or_updated() {
    let fx = git_fixture("gitlab");
    let path = "/api/v4/projects/acme%2Fgitops/merge_requests";
    let forge = FakeForge::start(vec![
        ("GET", path, Reply::json(200, json!([]))),
        (
            "POST",
            path,
            Reply::fixture(201, "gitlab_merge_request.json"),
        ),
    ])
    .await;
    let mut cfg = ForgeConfig::new(
        ForgeKind::GitLab,
        "acme/gitops",
        "main",
        SecretString::from(TOKEN.to_string()),
    );
    cfg.base_url = format!("{}/api/v4", forge.base_url);
    let mut opts = git_options(&fx.work);
    opts.pull_request = Some(cfg.clone());
    let report = run(&opts, &fixture_recs()).await.expect("run");
    let mr = report.branches[0].pull_request.clone().unwrap();
    assert_eq!((mr.number, mr.action), (3, PullRequestAction::Created));
    assert_eq!(mr.url, "https://gitlab.com/acme/gitops/-/merge_requests/3");
    let requests = forge.requests();
    assert_eq!(requests[0].header("private-token"), Some(TOKEN));
    let query = requests[0].query_pairs();
    assert!(query.contains(&("source_branch".into(), BRANCH.into())));
    assert!(query.contains(&("state".into(), "opened".into())));
    let create = requests[1].json();
    assert_eq!(create["source_branch"], BRANCH);
    assert_eq!(create["target_branch"], "main");
    assert!(create["description"]
        .as_str()
        .unwrap()
        .contains("| Container |"));

    let forge = FakeForge::start(vec![
        (
            "GET",
            path,
            Reply::json(
                200,
                json!([{"iid": 3, "web_url": "https://gitlab.com/acme/gitops/-/merge_requests/3"}]),
            ),
        ),
        (
            "PUT",
            "/api/v4/projects/acme%2Fgitops/merge_requests/3",
            Reply::fixture(200, "gitlab_merge_request.json"),
        ),
    ])
    .await;
    cfg.base_url = format!("{}/api/v4", forge.base_url);
    opts.pull_request = Some(cfg);
    let report = run(&opts, &fixture_recs()).await.expect("second run");
    assert_eq!(
        report.branches[0].pull_request.as_ref().unwrap().action,
        PullRequestAction::Updated
    );
    let methods: Vec<String> = forge.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["GET", "PUT"]);
}

async fn forge_error(routes: Vec<(&str, &str, Reply)>) -> GitopsError {
    let fx = git_fixture("forge-error");
    let forge = FakeForge::start(routes).await;
    let mut opts = git_options(&fx.work);
    opts.pull_request = Some(github(&forge.base_url));
    let err = run(&opts, &fixture_recs()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
    err
}

#[tokio::test]
async fn forge_authentication_failure_is_a_clear_error() {
    let err = forge_error(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply::fixture(401, "github_bad_credentials.json"),
    )])
    .await;
    assert!(
        matches!(
            err,
            GitopsError::Forge(ForgeError::Auth { status: 401, .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("Bad credentials"), "{text}");
    assert!(text.contains("RIGHTSIZER_GIT_TOKEN"), "{text}");
}

#[tokio::test]
async fn forge_rate_limit_says_when_to_retry() {
    let reset = chrono::Utc::now().timestamp() + 600;
    let err = forge_error(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply::fixture(403, "github_rate_limited.json")
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-used", "5000")
            .header("x-ratelimit-reset", &reset.to_string()),
    )])
    .await;
    let GitopsError::Forge(ForgeError::RateLimited {
        retry_after_secs, ..
    }) = &err
    else {
        panic!("not a rate-limit error: {err:?}");
    };
    assert!(
        matches!(retry_after_secs, Some(s) if (590..=600).contains(s)),
        "{err}"
    );
    let when = chrono::DateTime::from_timestamp(reset, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let text = err.to_string();
    assert!(text.contains("rate limit exceeded"), "{text}");
    assert!(text.contains(&format!("retry after {when}")), "{text}");

    let err = forge_error(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply::json(
            429,
            json!({"message": "You have exceeded a secondary rate limit."}),
        )
        .header("retry-after", "60"),
    )])
    .await;
    assert!(err.to_string().contains("retry after 60 s"), "{err}");
}

#[tokio::test]
async fn forge_validation_error_carries_the_forge_message() {
    let err = forge_error(vec![
        (
            "GET",
            "/repos/acme/gitops/pulls",
            Reply::json(200, json!([])),
        ),
        (
            "POST",
            "/repos/acme/gitops/pulls",
            Reply::fixture(422, "github_validation_failed.json"),
        ),
    ])
    .await;
    assert!(
        matches!(err, GitopsError::Forge(ForgeError::Rejected { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("No commits between main and rightsizer/update"),
        "{err}"
    );
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
fn process_ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn a_hung_push_is_killed_after_git_timeout_and_named() {
    let fx = git_fixture("hung-push");
    // The remote accepts the connection, then never answers: a pre-receive hook that hangs.
    let pid_file = fx.work.parent().unwrap().join("hook.pid");
    let hook = fx.remote.join("hooks/pre-receive");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 600\n",
            pid_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();

    let mut opts = git_options(&fx.work);
    opts.git_timeout = std::time::Duration::from_secs(3);
    let err = run(&opts, &fixture_recs()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            GitopsError::Git(rightsizer::gitops::GitError::Timeout { .. })
        ),
        "{message}"
    );
    assert_eq!(
        message,
        format!(
            "`git push -q -- origin refs/heads/{BRANCH}:refs/heads/{BRANCH}` did not finish within 3s \
             and was killed (with everything it started); check the remote, or raise [gitops] git_timeout"
        )
    );
    // The hook, started by git, went with it.
    let pid: u32 = fs::read_to_string(&pid_file)
        .expect("the hook ran")
        .trim()
        .parse()
        .unwrap();
    let mut ended = process_ended(pid);
    for _ in 0..200 {
        if ended {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        ended = process_ended(pid);
    }
    assert!(ended, "the hung hook (pid {pid}) is still running");
    // Nothing reached the remote; the commit is kept locally and HEAD is back on main.
    assert!(git(&fx.remote, &["branch", "--list", BRANCH])
        .trim()
        .is_empty());
    assert!(!git(&fx.work, &["branch", "--list", BRANCH])
        .trim()
        .is_empty());
    assert_eq!(
        git(&fx.work, &["symbolic-ref", "--short", "HEAD"]).trim(),
        "main"
    );
}

#[tokio::test]
async fn remote_and_branch_names_are_checked_before_git_sees_them() {
    let fx = git_fixture("names");
    let before = git(&fx.work, &["rev-parse", "HEAD"]);
    for (remote, want) in [
        (
            "--upload-pack=touch pwned",
            "--push \"--upload-pack=touch pwned\" is not a valid remote name: it starts with '-'",
        ),
        (
            "origin main",
            "--push \"origin main\" is not a valid remote name: it contains whitespace or a control character",
        ),
        (
            "../remote.git",
            "--push \"../remote.git\" is not a valid remote name: it contains '..'",
        ),
        ("up:stream", "it contains ':'"),
    ] {
        let mut opts = git_options(&fx.work);
        opts.push = Some(remote.into());
        let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
        assert!(err.contains(want), "{remote}: {err}");
        assert!(err.contains("git remote -v"), "{err}");
    }
    let mut opts = git_options(&fx.work);
    opts.push = Some("upstream".into());
    let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
    assert!(
        err.starts_with("invalid gitops options: --push \"upstream\": ")
            && err.ends_with("has no remote of that name; list them with `git remote -v`"),
        "{err}"
    );
    let mut opts = git_options(&fx.work);
    opts.branch = Some("-b".into());
    let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid gitops options: --branch \"-b\" is not a valid branch name: it starts with '-'"
    );
    assert!(!fx.work.parent().unwrap().join("pwned").exists());
    assert!(!fx.work.join("pwned").exists());
    assert_eq!(
        git(&fx.work, &["rev-parse", "HEAD"]),
        before,
        "nothing committed"
    );
    assert!(git(&fx.work, &["branch", "--list", BRANCH])
        .trim()
        .is_empty());
}

fn values_mapping(values_file: &str) -> HelmValuesMapping {
    HelmValuesMapping {
        workload: "payments/Deployment/payments".into(),
        container: Some("server".into()),
        values_file: values_file.into(),
        resources_path: "server.resources".into(),
    }
}

#[tokio::test]
async fn helm_values_paths_outside_the_repository_are_refused() {
    let (tmp, repo) = fixture_copy("helm-escape");
    let victim = tmp.0.join("victim.yaml");
    let victim_text = "server:\n  resources: {}\n";
    fs::write(&victim, victim_text).unwrap();
    std::os::unix::fs::symlink(&victim, repo.join("charts/linked-values.yaml")).unwrap();
    std::os::unix::fs::symlink(&tmp.0, repo.join("charts/outside")).unwrap();
    let values = repo.join("charts/payments/values.yaml");
    let before = fs::read_to_string(&values).unwrap();
    let victim_path = victim.display().to_string();
    for (file, why) in [
        (
            "../victim.yaml".to_string(),
            "its `..` leads outside the repository".to_string(),
        ),
        (
            "../../../../etc/passwd".into(),
            "its `..` leads outside the repository".into(),
        ),
        (
            victim_path.clone(),
            "an absolute path; give it relative to the repository".into(),
        ),
        (
            "charts/linked-values.yaml".into(),
            format!("it resolves through a symbolic link to {victim_path}, outside the repository"),
        ),
        (
            "charts/outside/victim.yaml".into(),
            format!("it resolves through a symbolic link to {victim_path}, outside the repository"),
        ),
    ] {
        let mut opts = options(&repo);
        opts.helm_values = vec![values_mapping(&file)];
        let err = run(&opts, &fixture_recs()).await.unwrap_err();
        assert!(matches!(err, GitopsError::UnsafePath { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.starts_with(&format!(
                "helm values file (workload payments/Deployment/payments) {file}: {why}"
            )),
            "{file}: {err}"
        );
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), victim_text);
    assert_eq!(
        fs::read_to_string(&values).unwrap(),
        before,
        "nothing written"
    );
    // A path inside that merely takes a detour is fine.
    let mut opts = options(&repo);
    opts.helm_values = vec![values_mapping("charts/../charts/payments/values.yaml")];
    run(&opts, &fixture_recs())
        .await
        .expect("a path inside the repository");
}

#[tokio::test]
async fn patch_files_get_safe_names_and_stay_in_the_output_directory() {
    let (tmp, repo) = fixture_copy("patch-names");
    let mut opts = options(&repo);
    opts.output = OutputMode::Kustomize;
    let want = res(100, 400, 128 * MI, 128 * MI);
    let recs = vec![
        rec(
            "../..",
            "Deployment",
            "x/../../escape",
            "app",
            NONE,
            want,
            "high",
        ),
        rec("-rf", "Deployment", ".hidden", "app", NONE, want, "high"),
        rec("ops", "Deployment", "a/b", "app", NONE, want, "high"),
        rec("ops", "Deployment", "a_b", "app", NONE, want, "high"),
        rec("ops", "Deployment", "bad\nname", "app", NONE, want, "high"),
    ];
    let report = run(&opts, &recs).await.expect("run");
    let mut written: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            "rightsizer-patches/_._._-deployment-x_.__.__escape.yaml",
            "rightsizer-patches/_rf-deployment-.hidden.yaml",
            "rightsizer-patches/kustomization.yaml",
            "rightsizer-patches/ops-deployment-a_b.yaml",
        ]
    );
    let mut refused: Vec<(String, &str)> = report
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::Unsupported && s.workload.namespace == "ops")
        .map(|s| (s.workload.name.clone(), s.detail.as_str()))
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, "a_b");
    assert!(
        refused[0].1.contains("already used by ops/Deployment/a/b"),
        "{}",
        refused[0].1
    );
    assert!(
        refused[1].1.contains("control character"),
        "{}",
        refused[1].1
    );
    // Only the repository changed under the temp dir.
    let outside: Vec<_> = fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["repo"]);
    let patch =
        fs::read_to_string(repo.join("rightsizer-patches/_._._-deployment-x_.__.__escape.yaml"))
            .unwrap();
    let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
    assert_eq!(parsed["metadata"]["name"], "x/../../escape");
}

#[tokio::test]
async fn patch_output_is_not_written_through_symbolic_links() {
    let (tmp, repo) = fixture_copy("patch-links");
    let victim = tmp.0.join("victim.txt");
    fs::write(&victim, "keep me\n").unwrap();
    let out = repo.join("rightsizer-patches");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("shop-deployment-api.json")).unwrap();
    let mut opts = options(&repo);
    opts.output = OutputMode::Patches;
    let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
    assert!(
        err.ends_with(
            "rightsizer-patches/shop-deployment-api.json: it is a symbolic link; rightsizer writes only regular files, remove the link"
        ),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");

    // The default output directory may not be a link out of the repository either.
    fs::remove_dir_all(&out).unwrap();
    let elsewhere = tmp.0.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
    let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "the default --out-dir rightsizer-patches: it resolves through a symbolic link to {}, outside the repository",
            elsewhere.display()
        )),
        "{err}"
    );
    opts.out_dir = Some("../elsewhere".into());
    let err = run(&opts, &fixture_recs()).await.unwrap_err().to_string();
    assert!(
        err.starts_with("--out-dir ../elsewhere: its `..` leads outside the repository"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    // An absolute --out-dir is the user's explicit choice.
    opts.out_dir = Some(elsewhere.clone());
    run(&opts, &fixture_recs())
        .await
        .expect("absolute --out-dir");
    assert!(elsewhere.join("README.txt").exists());
}

#[tokio::test]
async fn forge_not_found_names_the_request() {
    // GitHub answers 404 (not 403) for a private repository the token can't see.
    let err = forge_error(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply::json(
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        ),
    )])
    .await;
    assert!(
        matches!(
            err,
            GitopsError::Forge(ForgeError::Status { status: 404, .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "GitHub answered HTTP 404 to GET /repos/acme/gitops/pulls: Not Found"
    );
}

#[tokio::test]
async fn forge_server_error_carries_the_body_and_never_an_echoed_token() {
    // A broken proxy that echoes the request, token included, into its error page.
    let err = forge_error(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply {
            status: 500,
            headers: Vec::new(),
            body: format!(
                "<html>upstream failed; request had Authorization: Bearer {TOKEN}</html>"
            ),
        },
    )])
    .await;
    assert!(
        matches!(
            err,
            GitopsError::Forge(ForgeError::Status { status: 500, .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "GitHub answered HTTP 500 to GET /repos/acme/gitops/pulls: <html>upstream failed"
        ),
        "{text}"
    );
    assert!(text.contains("Bearer ***"), "{text}");
}

#[tokio::test]
async fn a_gigabyte_forge_answer_stops_at_the_cap() {
    let fx = git_fixture("forge-huge");
    let server = huge::HugeServer::start("application/json", "[", huge::GIGABYTE, false).await;
    let mut opts = git_options(&fx.work);
    let mut forge = github(&server.url);
    forge.max_response_bytes = 1 << 20;
    opts.pull_request = Some(forge);
    let err = run(&opts, &fixture_recs()).await.unwrap_err();
    assert!(
        matches!(
            err,
            GitopsError::Forge(ForgeError::TooLarge {
                cap_bytes: 1_048_576,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "GitHub answered GET /repos/acme/gitops/pulls with more than 1048576 bytes, the limit: raise gitops.forge_max_response_bytes if the forge is right"
    );
    // Reading stopped at the cap: the server got out at most that plus what the
    // sockets buffer, nowhere near the gigabyte it offered.
    assert!(server.sent() < 64 << 20, "read {} bytes", server.sent());
    // An announced length over the cap is refused before reading anything.
    let fx = git_fixture("forge-huge-announced");
    let server = huge::HugeServer::start("application/json", "[", huge::GIGABYTE, true).await;
    let mut opts = git_options(&fx.work);
    let mut forge = github(&server.url);
    forge.max_response_bytes = 1 << 20;
    opts.pull_request = Some(forge);
    let err = run(&opts, &fixture_recs()).await.unwrap_err();
    assert!(
        err.to_string().contains("gitops.forge_max_response_bytes"),
        "{err}"
    );
}
