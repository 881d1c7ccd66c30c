//! Headless Chromium (Debian package `chromium`, installed by `make test`) for the dashboard
//! tests: `--dump-dom` to read the DOM after scripts ran, `--screenshot` for artifacts. Each
//! run gets a fresh profile and is killed, with its whole process group, after a timeout.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::prometheus::TempDir;

/// Longest a single Chromium run may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Names the Chromium binary goes by on Debian and elsewhere.
const CANDIDATES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// The Chromium binary: `RIGHTSIZER_CHROMIUM`, else the first candidate on `PATH`.
/// Panics (the test fails, it does not skip) when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("RIGHTSIZER_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in CANDIDATES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is required by the dashboard tests but none of {CANDIDATES:?} is on \
         PATH: `make test` installs it (Debian package `chromium`); or run \
         `apt-get install -y chromium`, or set RIGHTSIZER_CHROMIUM to its path"
    );
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    /// Standard output (the DOM for `--dump-dom`).
    pub stdout: String,
    /// Standard error (Chromium's own log lines).
    pub stderr: String,
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Kills the process group Chromium leads (renderer and GPU helpers included).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs headless Chromium with `args` then `url`; panics on a timeout or a failed exit.
pub fn run(args: &[String], url: &str) -> Output {
    let profile = TempDir::new("rs-chromium").expect("temp profile dir");
    let binary = chromium();
    let mut command = Command::new(&binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TIMEOUT => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                kill_group(&mut child);
                let err = stderr.join().unwrap_or_default();
                panic!(
                    "chromium did not finish {url} within {TIMEOUT:?}; killed. stderr:\n{}",
                    tail(&err)
                );
            }
            Err(e) => {
                kill_group(&mut child);
                panic!("waiting for chromium: {e}");
            }
        }
    };
    // Helpers left behind by the browser process would hold the pipes open.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let output = Output {
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.success(),
        "chromium exited with {status} on {url}; stderr:\n{}",
        tail(&output.stderr)
    );
    output
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// The DOM of `url` after its scripts ran, serialized as HTML.
pub fn dump_dom(url: &str) -> String {
    let out = run(&["--dump-dom".to_string()], url);
    assert!(
        out.stdout.contains("<html"),
        "chromium printed no DOM for {url}; stderr:\n{}",
        tail(&out.stderr)
    );
    out.stdout
}

/// Saves a PNG of `url` rendered in a `width`×`height` window to `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the artifact directory");
    }
    let _ = std::fs::remove_file(path);
    let out = run(
        &[
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
        ],
        url,
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}; stderr:\n{}",
            path.display(),
            tail(&out.stderr)
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}

/// Where test artifacts go: `target/test-artifacts/` of the build's target directory.
pub fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"))
}
