//! Fault runs (`make bench`, via scripts/bench-faults.sh; ignored by `make test`: they need
//! root for a tmpfs and start a Postgres cluster of their own, which they stop and restart).
//! A Postgres restarted mid-collect and mid-serve: `serve` keeps answering from its snapshot,
//! `/readyz` says why it is not ready, it recovers by itself, and the store ends up equal to
//! one no fault touched. SQLite on a full filesystem: a clear error and an intact database.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rightsizer::collector::{self, CollectOptions};
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store;
use rightsizer_synth::{self as synth, SynthConfig};
use support::dump::StoreDump;
use support::prometheus::{Prometheus, TempDir};

const CLUSTER: &str = "default";
const DAYS: i64 = 2;

fn prometheus(dir: &TempDir) -> Prometheus {
    let now = chrono::Utc::now().timestamp();
    let end = now - now.rem_euclid(3600);
    let cfg = SynthConfig::new(5, end - DAYS * 86_400, end);
    let path = dir.path().join("metrics.om");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    synth::generate(&cfg, file).unwrap();
    let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
    std::fs::remove_file(&path).unwrap();
    prometheus
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// A Postgres cluster of this test's own on a free port (never the shared one), run as the
/// `postgres` user as initdb requires.
struct OwnPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn init() -> Self {
        let initdb = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries (apt-get install postgresql)")
            .filter_map(|e| Some(e.ok()?.path().join("bin/initdb")))
            .filter(|p| p.exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = std::env::temp_dir().join(format!("rs-faults-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(Command::new("chown").arg("postgres").arg(&dir));
        let pg = OwnPostgres {
            bin: initdb.parent().unwrap().to_path_buf(),
            port: free_port(),
            dir,
        };
        run_ok(
            pg.as_postgres("initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(pg.data()),
        );
        pg.start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        cmd.stdout(Stdio::null());
        cmd
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        run_ok(
            self.as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &opts, "-l"])
                .arg(self.dir.join("log"))
                .args(["-w", "start"]),
        );
    }

    /// Stops at once, as a crash would: no checkpoint, client connections cut.
    fn crash(&self) {
        run_ok(self.as_postgres("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(config: &Path, database: &str, prometheus: &str) -> Serve {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--collect-interval", "3s"])
            .env("RIGHTSIZER_CONFIG", config)
            .env("RIGHTSIZER_DATABASE_URL", database)
            .env("RIGHTSIZER_PROMETHEUS_URL", prometheus)
            .env("RIGHTSIZER_LOG", "warn")
            .env_remove("RIGHTSIZER_API_TOKENS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn counter(&self, sample: &str) -> f64 {
        let Ok(resp) = reqwest::get(format!("{}/metrics", self.base)).await else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One-hour chunks one at a time: a collection long enough to be cut in the middle.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("rightsizer.toml");
    std::fs::write(
        &path,
        "[collector]\nchunk_hours = 1\nconcurrency = 1\n[policy]\nwindow = \"2d\"\n",
    )
    .unwrap();
    path
}

/// What one process alone stores for `hours`, with nothing going wrong.
async fn reference(prometheus: &str, hours: &[i64], dir: &Path) -> StoreDump {
    std::fs::create_dir_all(dir).unwrap();
    let url = format!("sqlite://{}", dir.join("reference.db").display());
    let reference = store::connect(&url).await.unwrap();
    let prom = PromClient::new(&PromConfig {
        url: prometheus.into(),
        timeout: Duration::from_secs(60),
        ..PromConfig::default()
    })
    .unwrap();
    let opts = CollectOptions {
        chunk_hours: 1,
        ..CollectOptions::new(CLUSTER, hours[0], hours[hours.len() - 1] + 3600)
    };
    collector::collect(&prom, reference.as_ref(), &opts)
        .await
        .unwrap();
    StoreDump::read(reference.as_ref(), CLUSTER).await
}

const CHUNKS: &str = "rightsizer_collector_chunks_total{cluster=\"default\"}";

fn total(list: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(list).unwrap()["total"].clone()
}

/// While the database is down: the list answers from the snapshot, `/readyz` says why.
async fn check_down(serve: &Serve, list_before: Option<&str>) {
    let (status, body) = serve.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        ready["store"]
            .as_str()
            .unwrap()
            .starts_with("the database is unavailable ("),
        "{ready}"
    );
    assert_eq!(serve.get("/healthz").await.0, 200);
    if let Some(before) = list_before {
        let (status, body) = serve.get("/api/v1/recommendations").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(total(&body), total(before), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault run: make bench (scripts/bench-faults.sh) starts and crashes its own Postgres"]
async fn postgres_restarted_mid_collect_and_mid_serve() {
    let dir = TempDir::new("rs-faults-pg").unwrap();
    let prom = prometheus(&dir);
    let pg = OwnPostgres::init();
    let config = write_config(dir.path());
    let serve = Serve::start(&config, &pg.url(), prom.url());

    // Mid-collect: crash as soon as a first chunk is in.
    wait_until("a first chunk", Duration::from_secs(120), || async {
        serve.counter(CHUNKS).await >= 1.0
    })
    .await;
    pg.crash();
    let written = serve.counter(CHUNKS).await;
    assert!(
        written < (DAYS * 24) as f64,
        "the collection ended before the crash ({written} chunks): nothing was tested"
    );
    check_down(&serve, None).await;
    pg.start();
    wait_until("ready again", Duration::from_secs(300), || async {
        serve.get("/readyz").await.0 == 200
    })
    .await;
    eprintln!("crashed with {written} of {} chunks written", DAYS * 24);

    // Mid-serve: everything collected and analyzed, then crash again.
    let shared = store::connect(&pg.url()).await.unwrap();
    wait_until("a first analysis", Duration::from_secs(300), || async {
        let (status, body) = serve.get("/api/v1/recommendations").await;
        status == 200 && body.contains("\"namespace\"")
    })
    .await;
    let (_, before) = serve.get("/api/v1/recommendations").await;
    assert!(total(&before).as_u64() > Some(0), "{before}");
    pg.crash();
    check_down(&serve, Some(&before)).await;
    pg.start();
    wait_until("ready again", Duration::from_secs(120), || async {
        serve.get("/readyz").await.0 == 200
    })
    .await;

    let stored = StoreDump::read(shared.as_ref(), CLUSTER).await;
    assert!(stored.collected_hours.len() >= (DAYS * 24) as usize);
    let expected = reference(prom.url(), &stored.collected_hours, dir.path()).await;
    assert_eq!(stored.first_difference(&expected), None);
    drop(serve);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&path),
        );
        Tmpfs { path }
    }

    /// Fills it but for `slack` bytes with a file; returns the file.
    fn fill(&self, slack: u64) -> PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 4096];
        let mut written = 0u64;
        while file.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        let _ = file.flush();
        file.set_len(written.saturating_sub(slack)).unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn collect_into(config: &Path, database: &str, prometheus: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rightsizer"))
        .args(["collect", "--since", "2d"])
        .env("RIGHTSIZER_CONFIG", config)
        .env("RIGHTSIZER_DATABASE_URL", database)
        .env("RIGHTSIZER_PROMETHEUS_URL", prometheus)
        .env("RIGHTSIZER_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault run: make bench (scripts/bench-faults.sh) mounts a tmpfs, which needs root"]
async fn sqlite_on_a_full_filesystem() {
    let dir = TempDir::new("rs-faults-full").unwrap();
    let prom = prometheus(&dir);
    let config = write_config(dir.path());
    let tmpfs = Tmpfs::mount(dir.path().join("small"), "4m");
    let url = format!("sqlite://{}", tmpfs.path.join("rs.db").display());
    // A migrated, empty database; then a disk with a few pages left.
    drop(store::connect(&url).await.unwrap());
    let filler = tmpfs.fill(48 * 1024);

    let out = collect_into(&config, &url, prom.url());
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("collect on a full disk: {:?}\n{stderr}", out.status);
    assert!(!out.status.success());
    // The cause, and what to change.
    assert!(
        stderr.contains("disk holding the database is full"),
        "{stderr}"
    );
    assert!(stderr.contains("--database-url"), "{stderr}");

    let check = |url: String| async move {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let verdict: String = sqlx::query_scalar("pragma integrity_check")
            .fetch_one(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
        verdict
    };
    assert_eq!(check(url.clone()).await, "ok");
    // Whatever hours made it in are whole: equal to a clean run of just those hours.
    let store = store::connect(&url).await.unwrap();
    let partial = StoreDump::read(store.as_ref(), CLUSTER).await;
    drop(store);
    if !partial.collected_hours.is_empty() {
        let clean = reference(prom.url(), &partial.collected_hours, dir.path()).await;
        let hours = partial.collected_hours.iter().copied().collect();
        assert_eq!(partial.hourly_rows_of(&hours), clean.hourly_rows_of(&hours));
    }

    // Space again: the next run completes what the failed one left.
    std::fs::remove_file(filler).unwrap();
    let out = collect_into(&config, &url, prom.url());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(check(url.clone()).await, "ok");
    let store = store::connect(&url).await.unwrap();
    let done = StoreDump::read(store.as_ref(), CLUSTER).await;
    drop(store);
    let clean = reference(prom.url(), &done.collected_hours, &dir.path().join("again")).await;
    assert_eq!(done.first_difference(&clean), None);
    drop(tmpfs);
}
