//! Secrets never come back out. A password and tokens go in through every entry point
//! (flags, environment variables, the config file, token and password files, URLs with
//! `user:password@` and `?password=` for Prometheus and the database); the real binary
//! runs collect, analyze, recommend, report, migrate, gitops and serve against a real
//! Prometheus, an unreachable one and an erroring one, with debug logs in text and JSON.
//! Everything it printed, `/readyz`, `/metrics`, the API's reports, and the stored rows
//! (the SQLite file's bytes, a dump of the Postgres database) are searched for them.
//! Then the bad inputs around secrets: empty or unreadable token files, and a secret
//! written inline in the config file, each a clear error naming what to change.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::forge::{FakeForge, Reply};
use support::postgres::TestDatabase;
use support::prometheus::{Prometheus, TempDir};

const PROM_PASSWORD_URL: &str = "pw-prom-url-5d2e8a";
const PROM_PASSWORD_ENV: &str = "pw-prom-env-71c0b3";
const PROM_PASSWORD_FILE: &str = "pw-prom-file-9a4f16";
const PROM_TOKEN_FLAG: &str = "tok-prom-flag-3e9b27";
const PROM_TOKEN_ENV: &str = "tok-prom-env-c81d55";
const PROM_TOKEN_FILE: &str = "tok-prom-file-02f6ad";
const HEADER_FLAG: &str = "hdr-flag-6b3c90";
const HEADER_CONFIG: &str = "hdr-config-e47a12";
const DB_PASSWORD_URL: &str = "pw-db-url-8c5e3f";
const DB_PASSWORD_QUERY: &str = "pw-db-query-1f9d64";
const API_TOKEN_FLAG: &str = "tok-api-flag-a0e5c7";
const API_TOKEN_ENV: &str = "tok-api-env-54b8d1";
const API_TOKEN_FILE: &str = "tok-api-file-d93a0e";
const GIT_TOKEN_ENV: &str = "tok-git-env-7e21f4";
const GIT_TOKEN_FILE: &str = "tok-git-file-b6c83a";

const SECRETS: &[&str] = &[
    PROM_PASSWORD_URL,
    PROM_PASSWORD_ENV,
    PROM_PASSWORD_FILE,
    PROM_TOKEN_FLAG,
    PROM_TOKEN_ENV,
    PROM_TOKEN_FILE,
    HEADER_FLAG,
    HEADER_CONFIG,
    DB_PASSWORD_URL,
    DB_PASSWORD_QUERY,
    API_TOKEN_FLAG,
    API_TOKEN_ENV,
    API_TOKEN_FILE,
    GIT_TOKEN_ENV,
    GIT_TOKEN_FILE,
];

/// Hours of synthetic history: enough to collect, analyze and report on, quick to backfill.
const HOURS: i64 = 6;

/// Everything the runs showed, labelled, to search at the end.
#[derive(Default)]
struct Transcript(Vec<(String, String)>);

impl Transcript {
    fn add(&mut self, label: &str, text: impl Into<String>) {
        self.0.push((label.to_string(), text.into()));
    }

    fn text_of(&self, label: &str) -> &str {
        &self.0.iter().find(|(l, _)| l == label).unwrap().1
    }

    fn assert_no_secret(&self) {
        for (label, text) in &self.0 {
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "{label} shows the secret {secret}:\n{text}"
                );
            }
        }
    }
}

/// The binary with debug logs on and no `RIGHTSIZER_*` from the caller's environment.
fn rightsizer(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rightsizer"));
    for (key, _) in std::env::vars() {
        if key.starts_with("RIGHTSIZER_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("RIGHTSIZER_LOG", "debug")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

/// Runs to the end; records stdout and stderr; returns whether it succeeded.
fn record(t: &mut Transcript, label: &str, cmd: &mut Command) -> bool {
    let out = cmd.output().unwrap();
    t.add(
        &format!("{label} stdout"),
        String::from_utf8_lossy(&out.stdout),
    );
    t.add(
        &format!("{label} stderr"),
        String::from_utf8_lossy(&out.stderr),
    );
    out.status.success()
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// A Prometheus stand-in answering every request with a proxy's HTML 502.
async fn erroring_prometheus() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>bad gateway</html>")
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

fn with_userinfo(url: &str, user: &str, password: &str) -> String {
    url.replacen("http://", &format!("http://{user}:{password}@"), 1)
}

fn history() -> Prometheus {
    let end = {
        let now = chrono::Utc::now().timestamp();
        now - now.rem_euclid(3600)
    };
    let cfg = rightsizer_synth::SynthConfig::new(3, end - HOURS * 3600, end);
    let mut text = Vec::new();
    rightsizer_synth::generate(&cfg, &mut text).unwrap();
    Prometheus::from_openmetrics_text(&text, HOURS * 3600).unwrap()
}

/// A running `serve`, its output going to files read at the end.
struct Server {
    child: std::process::Child,
    base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    /// `cmd` holds the global options, `serve_args` those of `serve`.
    fn start(dir: &Path, name: &str, mut cmd: Command, serve_args: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = cmd
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(serve_args)
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            stderr,
        }
    }

    /// Waits until it answers `/healthz` (bounded, so a failed start fails the test).
    async fn ready(&mut self) {
        for _ in 0..600 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve never answered /healthz");
    }

    async fn get(&self, t: &mut Transcript, label: &str, path: &str, token: Option<&str>) -> u16 {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        t.add(label, resp.text().await.unwrap());
        status
    }

    /// Stops it the way Kubernetes does (SIGTERM) and records its output.
    fn stop(mut self, t: &mut Transcript, label: &str) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        t.add(
            &format!("{label} stdout"),
            std::fs::read_to_string(&self.stdout).unwrap(),
        );
        t.add(
            &format!("{label} stderr"),
            std::fs::read_to_string(&self.stderr).unwrap(),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret-bearing files and config of a run.
struct Inputs {
    dir: TempDir,
    sqlite: PathBuf,
    config: PathBuf,
}

impl Inputs {
    fn new(prometheus: &str) -> Inputs {
        let dir = TempDir::new("rs-secrets").unwrap();
        let d = dir.path();
        write(&d.join("prom-token"), &format!("{PROM_TOKEN_FILE}\n"));
        write(&d.join("prom-password"), PROM_PASSWORD_FILE);
        write(&d.join("api-tokens"), &format!("{API_TOKEN_FILE}\n"));
        write(&d.join("git-token"), GIT_TOKEN_FILE);
        let sqlite = d.join("rs.db");
        let config = write(
            &d.join("rightsizer.toml"),
            &format!(
                "database_url = \"sqlite://{}\"\nprometheus_url = \"{}\"\nprometheus_token_file = \"{}\"\n\n[prometheus_headers]\nX-Scope-OrgID = \"{HEADER_CONFIG}\"\n\n[reports]\nschedule = \"off\"\n",
                sqlite.display(),
                with_userinfo(prometheus, "prom-user", PROM_PASSWORD_URL),
                d.join("prom-token").display(),
            ),
        );
        Inputs {
            dir,
            sqlite,
            config,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The whole pipeline on SQLite with the config file, flags and files; returns whether
/// each step succeeded.
fn pipeline(t: &mut Transcript, inputs: &Inputs) {
    let d = inputs.dir.path();
    let config = inputs.config.to_str().unwrap();
    let since = format!("{HOURS}h");
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("migrate", vec!["migrate"]),
        (
            "collect",
            vec!["--log-format", "json", "collect", "--since", &since],
        ),
        ("analyze", vec!["analyze"]),
        ("recommend", vec!["recommend", "-o", "json"]),
        ("report md", vec!["report", "--format", "md"]),
        ("report html", vec!["report", "--format", "html"]),
        ("report json", vec!["report", "--format", "json"]),
    ];
    for (label, args) in steps {
        let ok = record(
            t,
            label,
            rightsizer(d)
                .args(["--config", config])
                .args(["--prometheus-header", &format!("X-Extra: {HEADER_FLAG}")])
                .args(args),
        );
        assert!(
            ok,
            "{label} failed: {}",
            t.text_of(&format!("{label} stderr"))
        );
    }
    assert!(
        t.text_of("migrate stdout")
            .contains("migrations applied to sqlite://"),
        "{}",
        t.text_of("migrate stdout")
    );
}

/// Prometheus unreachable, then erroring: the errors print its URL, masked.
async fn failing_prometheus(t: &mut Transcript, inputs: &Inputs) {
    let d = inputs.dir.path();
    // A store with nothing collected yet, so every run has hours to ask Prometheus for.
    let db = format!("sqlite://{}", d.join("failing.db").display());
    let unreachable = with_userinfo("http://127.0.0.1:1", "prom-user", PROM_PASSWORD_URL);
    let ok = record(
        t,
        "unreachable",
        rightsizer(d).args([
            "--log-format",
            "json",
            "--database-url",
            &db,
            "--prometheus-url",
            &unreachable,
            "--prometheus-token",
            PROM_TOKEN_FLAG,
            "collect",
            "--since",
            "1h",
        ]),
    );
    let stderr = t.text_of("unreachable stderr");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("http://***@127.0.0.1:1/api/v1/"),
        "{stderr}"
    );

    let erroring = with_userinfo(&erroring_prometheus().await, "prom-user", PROM_PASSWORD_URL);
    let ok = record(
        t,
        "erroring",
        rightsizer(d)
            .args(["--log-format", "text", "collect", "--since", "1h"])
            .env("RIGHTSIZER_DATABASE_URL", &db)
            .env("RIGHTSIZER_PROMETHEUS_URL", &erroring)
            .env("RIGHTSIZER_PROMETHEUS_TOKEN", PROM_TOKEN_ENV),
    );
    assert!(!ok);
    let stderr = t.text_of("erroring stderr");
    assert!(stderr.contains("answered HTTP 502"), "{stderr}");
    assert!(stderr.contains("http://***@127.0.0.1:"), "{stderr}");

    let ok = record(
        t,
        "basic auth",
        rightsizer(d)
            .args(["--database-url", &db, "--prometheus-url", &erroring])
            .args(["--prometheus-user", "prom-user", "collect", "--since", "1h"])
            .env("RIGHTSIZER_PROMETHEUS_PASSWORD", PROM_PASSWORD_ENV),
    );
    assert!(!ok);
    let ok = record(
        t,
        "basic auth file",
        rightsizer(d)
            .args(["--database-url", &db, "--prometheus-url", &erroring])
            .args(["--prometheus-user", "prom-user"])
            .args(["--prometheus-password-file", &inputs.path("prom-password")])
            .args(["collect", "--since", "1h"]),
    );
    assert!(!ok);
}

/// `serve` with API tokens from the flag and the file, against the real Prometheus, and
/// again with the token from the environment against an unreachable one.
async fn serve(t: &mut Transcript, inputs: &Inputs) {
    let d = inputs.dir.path();
    let mut cmd = rightsizer(d);
    cmd.args(["--config", inputs.config.to_str().unwrap()]);
    let token_file = inputs.path("api-tokens");
    let serve_args = [
        "--api-tokens",
        API_TOKEN_FLAG,
        "--api-token-file",
        &token_file,
        "--collect-interval",
        "0",
    ];
    let mut server = Server::start(d, "serve", cmd, &serve_args);
    server.ready().await;
    for path in [
        "/readyz",
        "/metrics",
        "/api/v1/reports",
        "/api/v1/recommendations",
    ] {
        server.get(t, &format!("serve {path}"), path, None).await;
    }
    let status = server
        .get(
            t,
            "serve file token",
            "/api/v1/recommendations",
            Some(API_TOKEN_FILE),
        )
        .await;
    assert_eq!(status, 200, "the token from the file is accepted");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/collect", server.base))
        .bearer_auth(API_TOKEN_FLAG)
        .send()
        .await
        .unwrap();
    // Accepted, or refused because the start-up collection still runs: either way the
    // token got past auth (401/403 otherwise).
    assert!(
        matches!(resp.status().as_u16(), 202 | 409),
        "{}",
        resp.status()
    );
    t.add("serve collect", resp.text().await.unwrap());
    server.stop(t, "serve");

    let unreachable = with_userinfo("http://127.0.0.1:1", "prom-user", PROM_PASSWORD_URL);
    let mut cmd = rightsizer(d);
    cmd.args(["--log-format", "json"])
        .env(
            "RIGHTSIZER_DATABASE_URL",
            format!("sqlite://{}", inputs.sqlite.display()),
        )
        .env("RIGHTSIZER_PROMETHEUS_URL", &unreachable)
        .env("RIGHTSIZER_API_TOKENS", API_TOKEN_ENV);
    let mut server = Server::start(d, "serve-unreachable", cmd, &["--collect-interval", "1h"]);
    server.ready().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/collect", server.base))
        .bearer_auth(API_TOKEN_ENV)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(resp.status().as_u16(), 202 | 409),
        "{}",
        resp.status()
    );
    let run = resp.text().await.unwrap();
    t.add("serve-unreachable collect", run.clone());
    let id = serde_json::from_str::<serde_json::Value>(&run)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string));
    // The run's outcome carries the Prometheus error: wait for it (bounded).
    if let Some(id) = id {
        for _ in 0..300 {
            let body = reqwest::get(format!("{}/api/v1/runs/{id}", server.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let done = !body.contains("\"running\"");
            t.add("serve-unreachable run", body);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The start-up collection fails and logs why (bounded wait).
    for _ in 0..300 {
        let log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
        if log.contains("http://***@127.0.0.1:1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/readyz", "/metrics"] {
        server
            .get(t, &format!("serve-unreachable {path}"), path, None)
            .await;
    }
    server.stop(t, "serve-unreachable");
    assert!(
        t.text_of("serve-unreachable stderr")
            .contains("http://***@127.0.0.1:1"),
        "the failing collection is logged with the URL masked: {}",
        t.text_of("serve-unreachable stderr")
    );
}

/// `gitops` with the forge token from the environment, then from a file, against a forge
/// that refuses it.
async fn gitops(t: &mut Transcript, inputs: &Inputs) {
    let d = inputs.dir.path();
    let repo = d.join("gitops-repo");
    std::fs::create_dir_all(&repo).unwrap();
    for args in [
        vec!["init", "-q", "-b", "main"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    ] {
        assert!(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .status()
            .unwrap()
            .success());
    }
    let forge = FakeForge::start(vec![(
        "GET",
        "/repos/acme/gitops/pulls",
        Reply::fixture(401, "github_bad_credentials.json"),
    )])
    .await;
    let common = |cmd: &mut Command| {
        cmd.args([
            "--config",
            inputs.config.to_str().unwrap(),
            "gitops",
            "--repo",
        ])
        .arg(&repo)
        .args([
            "--branch",
            "rightsizer/update",
            "--commit",
            "--pull-request",
            "github",
        ])
        .args([
            "--forge-repo",
            "acme/gitops",
            "--forge-url",
            &forge.base_url,
        ]);
    };
    let mut cmd = rightsizer(d);
    common(&mut cmd);
    cmd.env("RIGHTSIZER_GIT_TOKEN", GIT_TOKEN_ENV);
    record(t, "gitops env", &mut cmd);
    let mut cmd = rightsizer(d);
    common(&mut cmd);
    cmd.args(["--git-token-file", &inputs.path("git-token")]);
    record(t, "gitops file", &mut cmd);
    for r in forge.requests() {
        t.add("forge saw (path)", r.path);
    }
}

/// The database URL with a password in userinfo and in `?password=`, on Postgres.
async fn postgres(t: &mut Transcript, inputs: &Inputs, prometheus: &str) {
    let d = inputs.dir.path();
    let db = TestDatabase::create().await;
    let url = db.url().replacen(
        "postgres://root@",
        &format!("postgres://root:{DB_PASSWORD_URL}@"),
        1,
    ) + &format!("?password={DB_PASSWORD_QUERY}");
    assert!(
        url.contains(DB_PASSWORD_URL),
        "the test server URL is not the default one: {url}"
    );
    let ok = record(
        t,
        "postgres migrate",
        rightsizer(d).args(["--database-url", &url, "migrate"]),
    );
    assert!(ok, "{}", t.text_of("postgres migrate stderr"));
    let masked = t.text_of("postgres migrate stdout");
    assert!(masked.contains("postgres://***@127.0.0.1"), "{masked}");
    assert!(masked.contains("password=***"), "{masked}");
    let ok = record(
        t,
        "postgres collect",
        rightsizer(d)
            .args([
                "--database-url",
                &url,
                "--prometheus-url",
                &with_userinfo(prometheus, "u", PROM_PASSWORD_URL),
            ])
            .args(["--log-format", "json", "collect", "--since", "2h"]),
    );
    assert!(ok, "{}", t.text_of("postgres collect stderr"));
    let closed = url.replacen(":5432/", ":1/", 1);
    let ok = record(
        t,
        "postgres closed",
        rightsizer(d).args(["--database-url", &closed, "migrate"]),
    );
    assert!(!ok);
    let store = rightsizer::store::connect(db.url()).await.unwrap();
    let dump = support::dump::StoreDump::read(store.as_ref(), "default").await;
    t.add("postgres rows", format!("{dump:?}"));
    drop(store);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_given_anywhere_comes_back_out() {
    let prometheus = history();
    let inputs = Inputs::new(prometheus.url());
    let mut t = Transcript::default();
    pipeline(&mut t, &inputs);
    failing_prometheus(&mut t, &inputs).await;
    serve(&mut t, &inputs).await;
    gitops(&mut t, &inputs).await;
    postgres(&mut t, &inputs, prometheus.url()).await;
    // The runs did work: recommendations were stored and reported.
    assert!(t.text_of("recommend stdout").contains("\"namespace\""));
    assert!(t.text_of("serve /metrics").contains("rightsizer_"));
    let stored = std::fs::read(&inputs.sqlite).unwrap();
    // The history may still sit in the write-ahead log (read below with the other files).
    let wal = std::fs::metadata(format!("{}-wal", inputs.sqlite.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        stored.len() as u64 + wal > 100_000,
        "the SQLite file and its log hold the history: {} + {wal} bytes",
        stored.len()
    );
    t.add("sqlite bytes", String::from_utf8_lossy(&stored));
    for entry in std::fs::read_dir(inputs.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".db") && path != inputs.sqlite {
            t.add(
                &name,
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()),
            );
        }
    }
    t.assert_no_secret();
}

/// Runs a command expected to fail; returns its stderr.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.env("RIGHTSIZER_LOG", "off").output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn empty_or_unreadable_token_files_are_errors_naming_the_file() {
    let dir = TempDir::new("rs-secrets-files").unwrap();
    let d = dir.path();
    let empty = write(&d.join("empty"), " \n\n");
    let missing = d.join("missing");
    let db = format!("sqlite://{}", d.join("rs.db").display());
    for (flag, extra) in [
        ("--prometheus-token-file", vec![]),
        ("--prometheus-password-file", vec!["--prometheus-user", "u"]),
    ] {
        for (file, why) in [(&empty, "it is empty"), (&missing, "No such file")] {
            let stderr = fails(
                rightsizer(d)
                    .args([
                        "--database-url",
                        &db,
                        "--prometheus-url",
                        "http://127.0.0.1:1",
                    ])
                    .args(extra.clone())
                    .arg(flag)
                    .arg(file)
                    .args(["collect", "--since", "1h"]),
            );
            assert!(
                stderr.starts_with(&format!(
                    "error: cannot use token file {}: ",
                    file.display()
                )) && stderr.contains(why),
                "{flag} {}: {stderr}",
                file.display()
            );
        }
    }
    let stderr = fails(
        rightsizer(d)
            .args(["--database-url", &db, "serve", "--api-token-file"])
            .arg(&empty),
    );
    assert_eq!(
        stderr,
        format!("error: API token file {} holds no token", empty.display())
    );
    let stderr = fails(
        rightsizer(d)
            .args(["--database-url", &db, "serve", "--api-token-file"])
            .arg(&missing),
    );
    assert!(
        stderr.starts_with(&format!(
            "error: cannot read API token file {}",
            missing.display()
        )),
        "{stderr}"
    );
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    assert!(Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["init", "-q"])
        .status()
        .unwrap()
        .success());
    for (file, why) in [(&empty, "is empty"), (&missing, "cannot read token file")] {
        let stderr = fails(
            rightsizer(d)
                .args(["--database-url", &db, "gitops", "--repo"])
                .arg(&repo)
                .args([
                    "--pull-request",
                    "github",
                    "--forge-repo",
                    "o/r",
                    "--git-token-file",
                ])
                .arg(file),
        );
        assert!(
            stderr.contains(why) && stderr.contains(&file.display().to_string()),
            "{stderr}"
        );
    }
    let stderr = fails(
        rightsizer(d)
            .args([
                "--database-url",
                &db,
                "--prometheus-url",
                "http://127.0.0.1:1",
            ])
            .args(["--prometheus-token", " ", "collect"]),
    );
    assert!(
        stderr.contains("--prometheus-token (RIGHTSIZER_PROMETHEUS_TOKEN) is empty"),
        "{stderr}"
    );
}

#[test]
fn a_secret_inline_in_the_config_file_is_refused_without_repeating_it() {
    let dir = TempDir::new("rs-secrets-inline").unwrap();
    let d = dir.path();
    for (text, key, instead) in [
        (
            format!("prometheus_url = \"http://p:9090\"\nprometheus_token = \"{PROM_TOKEN_FLAG}\"\n"),
            "prometheus_token",
            "`prometheus_token_file`, or set RIGHTSIZER_PROMETHEUS_TOKEN",
        ),
        (
            format!("[[clusters]]\nname = \"a\"\nprometheus_url = \"http://p:9090\"\nprometheus_password = \"{PROM_PASSWORD_FILE}\"\n"),
            "clusters[0].prometheus_password",
            "`prometheus_password_file`",
        ),
        (
            format!("[gitops]\ngit_token = \"{GIT_TOKEN_FILE}\"\n"),
            "gitops.git_token",
            "--git-token-file, or set RIGHTSIZER_GIT_TOKEN",
        ),
        (
            format!("api_tokens = [\"{API_TOKEN_FILE}\"]\n"),
            "api_tokens",
            "--api-token-file, or set RIGHTSIZER_API_TOKENS",
        ),
    ] {
        let config = write(&d.join("inline.toml"), &text);
        let stderr = fails(rightsizer(d).arg("--config").arg(&config).arg("analyze"));
        assert!(
            stderr.starts_with(&format!(
                "error: config file {}: `{key}` would keep a secret in the config file",
                config.display()
            )) && stderr.contains(instead),
            "{stderr}"
        );
        for secret in SECRETS {
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }
}

// Multi-threaded: the fake keeps serving while this thread waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_prometheus_answer_fails_collect_and_stores_nothing() {
    let server = support::huge::HugeServer::prometheus().await;
    let dir = TempDir::new("rs-secrets-huge").unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("rs.db").display());
    // max_series_per_query = 0 turns off splitting by series; the byte cap stays.
    let config = write(
        &d.join("huge.toml"),
        "[collector]\nmax_series_per_query = 0\nmax_response_bytes = 1048576\nretries = 0\n",
    );
    let stderr = fails(
        rightsizer(d)
            .arg("--config")
            .arg(&config)
            .args(["--database-url", &db, "--prometheus-url", &server.url])
            .args(["collect", "--since", "2h"]),
    );
    assert!(
        stderr.contains(&format!(
            "Prometheus at {}/api/v1/query answered more than 1048576 bytes, the limit: raise collector.max_response_bytes",
            server.url
        )),
        "{stderr}"
    );
    assert!(server.sent() < 64 << 20, "read {} bytes", server.sent());
    let store = rightsizer::store::connect(&db).await.unwrap();
    assert!(store
        .collected_hours("default", 0, i64::MAX / 2)
        .await
        .unwrap()
        .is_empty());
    assert!(store.containers(None).await.unwrap().is_empty());
}
