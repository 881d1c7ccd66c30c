//! Bad input through the real binary: each case is one line on stderr naming what
//! failed, a non-zero exit, and nothing half-written in the store.

use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn temp_db(name: &str) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("rs-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rs.db");
    (format!("sqlite://{}", path.display()), path)
}

/// Runs the binary; returns (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
        .args(args)
        .env_remove("RIGHTSIZER_PROMETHEUS_URL")
        .env_remove("RIGHTSIZER_DATABASE_URL")
        .env("RIGHTSIZER_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn run_async(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

async fn collected_hours(db_url: &str) -> usize {
    let store = rightsizer::store::connect(db_url).await.unwrap();
    store
        .collected_hours("default", 0, i64::MAX / 2)
        .await
        .unwrap()
        .len()
}

/// A server that answers every request with `response`.
async fn fake(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

fn assert_one_line(stderr: &str, starts_with: &str) {
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(
        stderr.starts_with(starts_with),
        "expected {starts_with:?}, got {stderr:?}"
    );
}

#[tokio::test]
async fn unreachable_prometheus() {
    let (db, _) = temp_db("unreachable");
    let (code, stderr) = run_async(
        [
            "--database-url",
            &db,
            "--prometheus-url",
            "http://127.0.0.1:1",
            "collect",
            "--since",
            "3h",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: Prometheus at http://127.0.0.1:1/api/v1/query unreachable: connection failed",
    );
    assert_eq!(collected_hours(&db).await, 0);
}

#[tokio::test]
async fn prometheus_error_envelope() {
    let url = fake(
        "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
         {\"status\":\"error\",\"errorType\":\"execution\",\"error\":\"query processing would load too many samples into memory\"}",
    )
    .await;
    let (db, _) = temp_db("envelope");
    let (code, stderr) = run_async(
        [
            "--database-url",
            &db,
            "--prometheus-url",
            &url,
            "collect",
            "--since",
            "3h",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: Prometheus rejected the query (execution): query processing would load too many samples into memory; query: count by (namespace) (max_over_time(",
    );
    assert_eq!(collected_hours(&db).await, 0);
}

#[tokio::test]
async fn prometheus_non_json_answer() {
    let url = fake(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>login</html>",
    )
    .await;
    let (db, _) = temp_db("nonjson");
    let (code, stderr) = run_async(
        [
            "--database-url",
            &db,
            "--prometheus-url",
            &url,
            "collect",
            "--since",
            "3h",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        &format!("error: unexpected answer from Prometheus at {url}/api/v1/query: expected JSON, got content type \"text/html\": <html>login</html>"),
    );
    assert_eq!(collected_hours(&db).await, 0);
}

#[test]
fn unknown_database_scheme() {
    let (code, stderr) = run(&["--database-url", "mysql://root@localhost/x", "migrate"]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: unsupported database URL \"mysql://***@localhost/x\": expected sqlite://PATH or postgres://…",
    );
}

#[test]
fn missing_prometheus_url() {
    let (db, path) = temp_db("nourl");
    let (code, stderr) = run(&["--database-url", &db, "collect"]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: no Prometheus URL: set --prometheus-url or RIGHTSIZER_PROMETHEUS_URL",
    );
    assert!(
        !path.exists(),
        "the store must not be created before the Prometheus URL is checked"
    );
}

#[test]
fn invalid_until() {
    let (db, _) = temp_db("until");
    let (code, stderr) = run(&[
        "--database-url",
        &db,
        "--prometheus-url",
        "http://127.0.0.1:1",
        "collect",
        "--until",
        "last tuesday",
    ]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: invalid time \"last tuesday\" (want RFC 3339 or unix seconds)",
    );
}

#[test]
fn backtest_days_out_of_range() {
    let (db, path) = temp_db("backtest-days");
    let (code, stderr) = run(&["--database-url", &db, "backtest", "--days", "0"]);
    assert_eq!(code, 1);
    assert_one_line(&stderr, "error: --days must be at least 1, got 0");
    let (code, stderr) = run(&["--database-url", &db, "backtest", "--days", "14"]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: --days = 14 leaves too little history to fit on: the 14-day window holds at most 13 held-out days",
    );
    assert!(!path.exists(), "a bad --days must not touch the store");
    // An empty store: nothing to backtest, said as such.
    let (code, stderr) = run(&["--database-url", &db, "backtest"]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        "error: no collected history: run `rightsizer collect` first",
    );
}

#[test]
fn unknown_strategy_or_backtest_setting_in_config() {
    let (db, path) = temp_db("strategy");
    let dir = path.parent().unwrap();
    let cases = [
        ("[policy]\nstrategy = \"magic\"\n", "error: "),
        ("[backtest]\ndays = 0\n", "error: "),
        ("[backtest]\ndays = 30\n", "error: "),
    ];
    let wants = [
        "unknown variant `magic`, expected one of `auto`, `guidance`, `decaying`, `krr-simple`, `vpa`, `time-aware`",
        "backtest.days must be at least 1, got 0",
        "backtest.days = 30 leaves too little history to fit on",
    ];
    for ((text, prefix), want) in cases.iter().zip(wants) {
        let file = dir.join("config.toml");
        std::fs::write(&file, text).unwrap();
        let (code, stderr) = run(&[
            "--config",
            file.to_str().unwrap(),
            "--database-url",
            &db,
            "analyze",
        ]);
        assert_eq!(code, 1, "{text}: {stderr}");
        assert!(stderr.starts_with(prefix), "{stderr}");
        assert!(stderr.contains(want), "{text}: {stderr}");
        assert!(
            !path.exists(),
            "{text}: a bad config must not touch the store"
        );
    }
}

#[test]
fn retention_shorter_than_the_window_or_not_a_duration() {
    let (db, path) = temp_db("retention");
    let dir = path.parent().unwrap();
    let cases = [
        (
            "retention = \"7d\"\n",
            "error: retention = \"7d\" would delete history the analysis reads: policy.window is 14d. Set retention to at least 14d or shorten the window",
        ),
        (
            "retention = \"30d\"\n[policy.namespaces.batch]\nwindow = \"45d\"\n",
            "error: retention = \"30d\" would delete history the analysis reads: policy.namespaces.batch.window is 45d.",
        ),
        ("retention = \"soon\"\n", "error: invalid config file "),
    ];
    for (text, want) in cases {
        let file = dir.join("config.toml");
        std::fs::write(&file, text).unwrap();
        let (code, stderr) = run(&[
            "--config",
            file.to_str().unwrap(),
            "--database-url",
            &db,
            "prune",
        ]);
        assert_eq!(code, 1, "{text}: {stderr}");
        assert_one_line(&stderr, want);
        assert!(stderr.contains("retention"), "{stderr}");
        assert!(
            !path.exists(),
            "{text}: a bad retention must not touch the store"
        );
    }
}

#[test]
fn apply_settings_out_of_range_are_refused_before_anything_runs() {
    let (db, path) = temp_db("apply");
    let file = path.parent().unwrap().join("apply.toml");
    for (text, want) in [
        (
            "[apply]\nmax_step_down = 1.5\n",
            "error: apply.max_step_down must be above 0 and at most 1 (0.25: at most 25% lower per run); got 1.5",
        ),
        ("[apply]\nmax_step_down = 0\n", "error: apply.max_step_down must be above 0"),
        ("[apply]\nmin_confidence = \"sure\"\n", "error: invalid config file "),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, stderr) = run(&[
            "--config",
            file.to_str().unwrap(),
            "--database-url",
            &db,
            "apply",
        ]);
        assert_eq!(code, 1, "{text}: {stderr}");
        assert_one_line(&stderr, want);
        assert!(!path.exists(), "{text}: nothing touched");
    }
}

/// `rightsizer prune` on a store holding 100 days: `--dry-run` counts the 9 whole days past
/// the default 90-day retention and deletes nothing, `prune` deletes them, a second prune finds
/// nothing.
#[tokio::test]
async fn prune_deletes_history_past_retention_and_says_what() {
    use rightsizer::model::{Chunk, ContainerKey, Resource, UsageHour};
    let (db, _) = temp_db("prune");
    let key = ContainerKey {
        cluster: "default".into(),
        namespace: "shop".into(),
        kind: "Deployment".into(),
        workload: "api".into(),
        container: "app".into(),
    };
    let first_day = 1_704_067_200; // 2024-01-01
    let hours: Vec<i64> = (0..100)
        .map(|d| first_day + d * 86_400 + 12 * 3600)
        .collect();
    let mut sketch = rightsizer::sketch::Sketch::new();
    sketch.insert(0.25).unwrap();
    let store = rightsizer::store::connect(&db).await.unwrap();
    store
        .write_chunk(&Chunk {
            cluster: "default".into(),
            hours: hours.clone(),
            usage: hours
                .iter()
                .map(|&h| UsageHour {
                    key: key.clone().into(),
                    resource: Resource::Cpu,
                    hour_start: h,
                    sketch: sketch.clone(),
                })
                .collect(),
            ..Chunk::default()
        })
        .await
        .unwrap();
    let stored = |store: std::sync::Arc<dyn rightsizer::store::Store>| {
        let key = key.clone();
        async move { store.usage(&key, 0, i64::MAX / 2).await.unwrap().len() }
    };

    let prune = |dry_run: bool| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--database-url", &db, "prune"];
            if dry_run {
                args.push("--dry-run");
            }
            let out = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
                .args(&args)
                .env("RIGHTSIZER_LOG", "off")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let counted = prune(true).await.unwrap();
    // The newest hour is 2024-04-09T12:00Z: 90 days before it, floored to a day.
    assert!(
        counted.starts_with("would delete history before 2024-01-10 (retention 90d"),
        "{counted}"
    );
    assert!(
        counted.contains("  usage_days: 9 rows over 9 days\n"),
        "{counted}"
    );
    assert!(
        counted.contains("  collected_hours: 9 rows over 9 days\n"),
        "{counted}"
    );
    assert_eq!(stored(store.clone()).await, 100);

    let deleted = prune(false).await.unwrap();
    assert!(
        deleted.starts_with("deleted history before 2024-01-10"),
        "{deleted}"
    );
    assert!(
        deleted.contains("  usage_days: 9 rows over 9 days in 1 batch\n"),
        "{deleted}"
    );
    assert!(deleted.contains("\nin "), "the time taken: {deleted}");
    assert_eq!(stored(store.clone()).await, 91);

    let again = prune(false).await.unwrap();
    assert!(again.contains("  usage_days: 0 rows\n"), "{again}");
    assert_eq!(stored(store).await, 91);
}
