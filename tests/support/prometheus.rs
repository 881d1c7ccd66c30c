//! A real Prometheus (Debian's 2.42 at /usr/bin) filled with OpenMetrics
//! history by `promtool tsdb create-blocks-from openmetrics`, for tests.
//!
//! Only std: the readiness probe is a hand-written HTTP/1.0 GET, so the
//! helper works the same from sync and async tests.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, uniquely named directory.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// promtool (2.42) re-reads the whole input once to find its time range,
/// then once per block window. It rounds `--max-block-duration` down to
/// 2h x 3^n (2h, 6h, 18h, 54h, 162h, 486h, 1458h, ..., 39366h at most) and
/// aligns windows on multiples of that since the epoch, so a history that
/// straddles a boundary costs an extra pass. Asking for the largest window
/// (about 4.5 years) makes that nearly impossible; memory does not grow
/// with the window (promtool mmaps the input and the head holds compressed
/// chunks).
pub const MAX_BLOCK_DURATION: &str = "39366h";

/// The `--max-block-duration` to backfill a history spanning `span_secs`
/// in one window (two passes over the file).
pub fn max_block_duration_for(span_secs: i64) -> &'static str {
    assert!(
        span_secs < 39_366 * 3600,
        "history longer than promtool's largest block"
    );
    MAX_BLOCK_DURATION
}

/// Runs `promtool tsdb create-blocks-from openmetrics` into `data_dir`;
/// returns how long it took.
pub fn backfill(
    openmetrics: &Path,
    data_dir: &Path,
    max_block_duration: &str,
) -> io::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(format!("--max-block-duration={max_block_duration}"))
        .arg(openmetrics)
        .arg(data_dir)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "promtool failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(started.elapsed())
}

/// A running Prometheus serving a backfilled TSDB; killed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    url: String,
    dir: TempDir,
    /// How long promtool took, when this instance did the backfill.
    pub backfill_time: Option<Duration>,
    /// Extra server flags, kept for a restart.
    extra_args: Vec<String>,
}

impl Prometheus {
    /// Backfills `openmetrics` (whose samples span `span_secs`) into a
    /// fresh temp dir and serves it.
    pub fn from_openmetrics(openmetrics: &Path, span_secs: i64) -> io::Result<Self> {
        let dir = TempDir::new("rightsizer-prometheus")?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        let took = backfill(openmetrics, &data, max_block_duration_for(span_secs))?;
        let mut prom = Self::serve(dir)?;
        prom.backfill_time = Some(took);
        Ok(prom)
    }

    /// Like [`Prometheus::from_openmetrics`] for text held in memory (small
    /// hand-written fixtures); it must end with `# EOF`.
    pub fn from_openmetrics_text(text: &[u8], span_secs: i64) -> io::Result<Self> {
        Self::from_openmetrics_text_serving(text, span_secs, &[])
    }

    /// Like [`Prometheus::from_openmetrics_text`], with extra server flags.
    pub fn from_openmetrics_text_serving(
        text: &[u8],
        span_secs: i64,
        extra_args: &[String],
    ) -> io::Result<Self> {
        let dir = TempDir::new("rightsizer-prometheus")?;
        let input = dir.path().join("input.om");
        fs::write(&input, text)?;
        let data = dir.path().join("data");
        fs::create_dir_all(&data)?;
        let took = backfill(&input, &data, max_block_duration_for(span_secs))?;
        fs::remove_file(&input)?;
        let mut prom = Self::serve_with(dir, extra_args)?;
        prom.backfill_time = Some(took);
        Ok(prom)
    }

    /// Serves a copy of the TSDB `data` (filled by [`backfill`] and never served), so
    /// several tests, or one that kills its server, share one backfill.
    pub fn from_tsdb_copy(data: &Path) -> io::Result<Self> {
        let dir = TempDir::new("rightsizer-prometheus")?;
        copy_dir(data, &dir.path().join("data"))?;
        Self::serve(dir)
    }

    /// Serves the TSDB in `dir/data` (created by [`backfill`]).
    pub fn serve(dir: TempDir) -> io::Result<Self> {
        Self::serve_with(dir, &[])
    }

    /// Like [`Prometheus::serve`], with extra command-line flags (limits such as
    /// `--query.max-samples=N`).
    pub fn serve_with(dir: TempDir, extra_args: &[String]) -> io::Result<Self> {
        Self::launch(
            dir,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
            extra_args,
        )
    }

    /// An empty Prometheus scraping what `scrape_configs` (YAML, the list under the key of that
    /// name) says, every `interval` (e.g. `1s`).
    pub fn scraping(scrape_configs: &str, interval: &str) -> io::Result<Self> {
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n{scrape_configs}"
        );
        Self::launch(TempDir::new("rs-prom-scrape")?, &config, &[])
    }

    /// Writes `config` as the server's prometheus.yml and starts it on `dir`.
    fn launch(dir: TempDir, config: &str, extra_args: &[String]) -> io::Result<Self> {
        fs::write(dir.path().join("prometheus.yml"), config)?;
        let (child, port) = start(&dir, None, extra_args)?;
        Ok(Prometheus {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            backfill_time: None,
            extra_args: extra_args.to_vec(),
        })
    }

    /// Kills the server the way a crash or an OOM kill would (SIGKILL), and reaps it.
    pub fn stop(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    /// Starts a stopped server again on the same TSDB, on the same port unless another
    /// process took it meanwhile: read [`Prometheus::url`] again afterwards.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_none() {
            return Err(io::Error::other("prometheus is still running"));
        }
        let (child, port) = start(&self.dir, Some(self.port), &self.extra_args)?;
        self.child = child;
        self.port = port;
        self.url = format!("http://127.0.0.1:{port}");
        Ok(())
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }
}

/// Copies the blocks of the TSDB in `from` (not its WAL or lock) into `to`, so a second
/// server can serve the same history without a second backfill. Blocks are immutable
/// once written, so copying them from a running server is safe.
pub fn copy_blocks(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let block = entry?.path();
        if !block.join("meta.json").is_file() {
            continue;
        }
        let target = to.join(block.file_name().expect("a block has a name"));
        fs::create_dir_all(target.join("chunks"))?;
        for file in ["meta.json", "index", "tombstones"] {
            if block.join(file).exists() {
                fs::copy(block.join(file), target.join(file))?;
            }
        }
        for chunk in fs::read_dir(block.join("chunks"))? {
            let chunk = chunk?.path();
            fs::copy(
                &chunk,
                target.join("chunks").join(chunk.file_name().unwrap()),
            )?;
        }
    }
    Ok(())
}

enum Startup {
    /// The process died (most likely the port was taken): worth a retry.
    Exited(io::Error),
    Failed(io::Error),
}

/// Starts Prometheus on `dir` and waits until it is ready; on `port` first when given.
fn start(dir: &TempDir, port: Option<u16>, extra_args: &[String]) -> io::Result<(Child, u16)> {
    let config = dir.path().join("prometheus.yml");
    let mut last_err = None;
    // Another process may take the port between probe and bind: retry then.
    for attempt in 0..5 {
        let port = match port {
            Some(port) if attempt == 0 => port,
            _ => free_port()?,
        };
        let mut child = spawn(dir, &config, port, extra_args)?;
        match wait_ready(&mut child, dir, port, Duration::from_secs(60)) {
            Ok(()) => return Ok((child, port)),
            Err(Startup::Exited(e)) => last_err = Some(e),
            Err(Startup::Failed(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("prometheus did not start")))
}

fn read_log(dir: &TempDir) -> String {
    fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
}

fn spawn(dir: &TempDir, config: &Path, port: u16, extra_args: &[String]) -> io::Result<Child> {
    // Appended to: a restarted server keeps the log of the run before.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("prometheus.log"))?;
    Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--storage.tsdb.retention.time=400d")
        // Keep the backfilled blocks as they are: no background compaction.
        .arg("--storage.tsdb.min-block-duration=2h")
        .arg("--storage.tsdb.max-block-duration=2h")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

fn wait_ready(
    child: &mut Child,
    dir: &TempDir,
    port: u16,
    timeout: Duration,
) -> Result<(), Startup> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(Startup::Exited(io::Error::other(format!(
                    "prometheus exited ({status}): {}",
                    read_log(dir)
                ))))
            }
            Ok(None) => {}
            Err(e) => return Err(Startup::Failed(e)),
        }
        if http_status(port, "/-/ready").ok() == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Startup::Failed(io::Error::other(format!(
                "prometheus not ready in {timeout:?}: {}",
                read_log(dir)
            ))));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the tree `from` into `to` (created); files only, no links.
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status code of a GET on 127.0.0.1:`port``path`.
fn http_status(port: u16, path: &str) -> io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP answer: {line:?}")))
}

/// Prometheus' own metrics (the text of `base`/metrics).
pub async fn self_metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
