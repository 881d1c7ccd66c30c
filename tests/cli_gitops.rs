//! `rightsizer gitops` through the real binary: stored recommendations edit a manifest
//! in a real git checkout and land as a commit on a branch.

mod support;

use std::process::Command;

use rightsizer::model::{
    Confidence, ContainerKey, Evidence, Recommendation, Resources, Severity, Status,
};
use support::prometheus::TempDir;

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

const MANIFEST: &str = "\
# The storefront API.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: app
          image: shop/api:1.2  # pinned
          resources:
            requests:
              cpu: \"1\"
              memory: 1Gi
";

#[tokio::test]
async fn edits_the_manifest_and_commits_on_a_branch() {
    let dir = TempDir::new("rs-cli-gitops").unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("apps")).unwrap();
    std::fs::write(repo.join("apps/api.yaml"), MANIFEST).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(
        &repo,
        &["-c", "user.name=t", "-c", "user.email=t@t", "add", "."],
    );
    git(
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "init",
        ],
    );

    let db = format!("sqlite://{}", dir.path().join("rs.db").display());
    let store = rightsizer::store::connect(&db).await.unwrap();
    let rec = Recommendation {
        key: ContainerKey {
            cluster: "default".into(),
            namespace: "shop".into(),
            kind: "Deployment".into(),
            workload: "api".into(),
            container: "app".into(),
        },
        status: Status::Ok,
        current: Resources {
            cpu_request_millicores: Some(1000),
            memory_request_bytes: Some(1 << 30),
            ..Resources::default()
        },
        recommended: Resources {
            cpu_request_millicores: Some(250),
            cpu_limit_millicores: Some(1000),
            memory_request_bytes: Some(512 << 20),
            memory_limit_bytes: Some(512 << 20),
        },
        confidence: Confidence::High,
        confidence_score: 1.0,
        reason: "cpu down (p95 212.0m); memory down (peak 440.0Mi)".into(),
        strategy: "guidance".into(),
        evidence: Evidence {
            cpu_percentile: 95.0,
            cpu_percentile_millicores: Some(212.0),
            history_hours: 336,
            ..Evidence::default()
        },
        computed_at: 1_700_000_000,
        severity: Severity::Warning,
        findings: vec![],
        backtest: None,
        impact: None,
        hpa: None,
    };
    store
        .replace_recommendations("default", &[rec])
        .await
        .unwrap();
    drop(store);

    let out = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
        .args([
            "--database-url",
            &db,
            "gitops",
            "--repo",
            repo.to_str().unwrap(),
            "--branch",
            "rightsizer/update",
            "--commit",
        ])
        .env("RIGHTSIZER_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("1 workloads changed in 1 files"),
        "{stdout}"
    );

    let edited = git(&repo, &["show", "rightsizer/update:apps/api.yaml"]);
    assert!(
        edited.contains("          image: shop/api:1.2  # pinned\n"),
        "{edited}"
    );
    assert!(
        edited.contains("              cpu: \"250m\"\n              memory: 512Mi\n"),
        "{edited}"
    );
    assert!(
        edited.contains("limits:\n              cpu: \"1\"\n              memory: \"512Mi\"\n"),
        "{edited}"
    );
    assert!(edited.starts_with("# The storefront API.\n"));
    let log = git(&repo, &["log", "-1", "--format=%s", "rightsizer/update"]);
    assert!(
        log.starts_with("rightsizer: right-size 1 workload"),
        "{log}"
    );
}
