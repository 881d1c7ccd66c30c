//! Remote read against a real Prometheus 2.42 (streamed XOR chunks are on by default):
//! the raw samples that come back are exactly the ones backfilled, series split over
//! several frames come back whole, and the failures a server can produce (no remote
//! read, a cut answer, a bad checksum) are errors, never a short answer.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rightsizer::prometheus::remote_read::{MatchKind, Matcher, RawSeries};
use rightsizer::prometheus::{PromClient, PromConfig, PromError};
use support::prometheus::Prometheus;
use support::remote_write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START: i64 = 1_700_000_000;

/// Three hours of a counter with a reset, a gauge with awkward values, and a series the
/// matchers must exclude, every 15 s.
fn fixture() -> (String, BTreeMap<String, Vec<(i64, f64)>>) {
    let mut expected: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut counter = String::from("# TYPE cpu counter\n");
    let mut gauge = String::from("# TYPE mem gauge\n");
    let mut total = 0.0;
    let mut pod = String::new();
    for i in 0..720 {
        let t = START + i * 15;
        total = if i == 400 {
            0.25
        } else {
            total + 0.015 * (i % 7) as f64
        };
        counter.push_str(&format!(
            "cpu_total{{container=\"app\",pod=\"p\"}} {total} {t}\n"
        ));
        pod.push_str(&format!("cpu_total{{container=\"POD\",pod=\"p\"}} 1 {t}\n"));
        let mem = 1.0e8 + (i as f64).sin() * 3.3e6 + 0.1;
        gauge.push_str(&format!("mem{{container=\"app\",pod=\"p\"}} {mem} {t}\n"));
        expected
            .entry("cpu_total".into())
            .or_default()
            .push((t * 1000, total));
        expected
            .entry("mem".into())
            .or_default()
            .push((t * 1000, mem));
    }
    (format!("{counter}{pod}{gauge}# EOF\n"), expected)
}

fn client(url: &str) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.to_string(),
        timeout: Duration::from_secs(20),
        retries: 0,
        ..PromConfig::default()
    })
    .unwrap()
}

async fn read_all(client: &PromClient, matchers: &[Matcher]) -> Result<Vec<RawSeries>, PromError> {
    let (out, _) = client
        .remote_read(START * 1000, (START + 3 * 3600) * 1000, matchers, Vec::new)
        .await?;
    Ok(out)
}

#[tokio::test]
async fn raw_samples_come_back_exactly_as_written() {
    let (text, expected) = fixture();
    let prom = Prometheus::from_openmetrics_text(text.as_bytes(), 3 * 3600).unwrap();
    let client = client(prom.url());
    for name in ["cpu_total", "mem"] {
        let series = read_all(
            &client,
            &[
                Matcher::new(MatchKind::Eq, "__name__", name),
                Matcher::new(MatchKind::Neq, "container", "POD"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(series.len(), 1, "{name}: {series:?}");
        assert_eq!(series[0].labels["container"], "app");
        let want = &expected[name];
        assert_eq!(series[0].samples.len(), want.len(), "{name}");
        for (got, want) in series[0].samples.iter().zip(want) {
            assert_eq!(got.0, want.0, "{name}");
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "{name} at {}", want.0);
        }
    }
}

/// A live Prometheus holds its newest hours in its head block, in memory, where a scheduled
/// run reads its new hour: the fixture's first half backfilled into a block, the second
/// sent over remote write into the head (in half-hour rounds across both series: the head
/// refuses a sample over an hour older than its newest), read back across both at once.
#[tokio::test]
async fn samples_from_a_block_and_the_head_come_back_exactly_as_written() {
    let (text, expected) = fixture();
    let half = START + 3 * 3600 / 2;
    let in_block = |line: &&str| {
        line.starts_with('#')
            || line
                .rsplit_once(' ')
                .is_some_and(|(_, t)| t.parse::<i64>().unwrap() < half)
    };
    let block: String = text
        .lines()
        .filter(in_block)
        .map(|l| format!("{l}\n"))
        .collect();
    let prom = Prometheus::from_openmetrics_text_serving(
        block.as_bytes(),
        3 * 3600,
        &["--web.enable-remote-write-receiver".into()],
    )
    .unwrap();
    let http = reqwest::Client::new();
    for round in (half..START + 3 * 3600).step_by(1800) {
        let series = expected
            .iter()
            .map(|(name, samples)| remote_write::Series {
                labels: [
                    ("__name__", name.as_str()),
                    ("container", "app"),
                    ("pod", "p"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
                samples: samples
                    .iter()
                    .filter(|(t, _)| (round * 1000..(round + 1800) * 1000).contains(t))
                    .copied()
                    .collect(),
            })
            .collect();
        remote_write::write(&http, prom.url(), series)
            .await
            .unwrap();
    }
    let client = client(prom.url());
    for name in ["cpu_total", "mem"] {
        let series = read_all(&client, &[Matcher::new(MatchKind::Eq, "__name__", name)])
            .await
            .unwrap();
        let app: Vec<_> = series
            .iter()
            .filter(|s| s.labels["container"] == "app")
            .collect();
        assert_eq!(app.len(), 1, "{name}: {series:?}");
        let want = &expected[name];
        assert_eq!(app[0].samples.len(), want.len(), "{name}");
        for (got, want) in app[0].samples.iter().zip(want) {
            assert_eq!(got.0, want.0, "{name}");
            assert_eq!(got.1.to_bits(), want.1.to_bits(), "{name} at {}", want.0);
        }
    }
    // The head really held the second half: Prometheus counts what it took in.
    let appended: f64 = support::prometheus::self_metrics(&http, prom.url())
        .await
        .lines()
        .filter(|l| l.starts_with("prometheus_tsdb_head_samples_appended_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(appended, 720.0, "two series' second halves in the head");
}

#[tokio::test]
async fn a_series_split_over_small_frames_comes_back_whole() {
    let (text, expected) = fixture();
    let dir = support::prometheus::TempDir::new("rightsizer-rr").unwrap();
    let input = dir.path().join("in.om");
    std::fs::write(&input, text).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    support::prometheus::backfill(&input, &data, "24h").unwrap();
    // 200-byte frames: each of the 3-hour series' chunks lands in a frame of its own.
    let prom = Prometheus::serve_with(
        dir,
        &["--storage.remote.read-max-bytes-in-frame=200".into()],
    )
    .unwrap();
    let mut frames = 0;
    let (got, stats) = client(prom.url())
        .remote_read(
            START * 1000,
            (START + 3 * 3600) * 1000,
            &[Matcher::new(MatchKind::Re, "__name__", "cpu_total|mem")],
            Vec::new,
        )
        .await
        .unwrap();
    frames += stats.frames;
    assert!(
        frames > 3,
        "expected the answer split over many frames, got {frames}"
    );
    // POD's counter, app's counter, app's gauge: each delivered once, whole.
    assert_eq!(got.len(), 3);
    let app_cpu = got
        .iter()
        .find(|s| s.labels["__name__"] == "cpu_total" && s.labels["container"] == "app")
        .unwrap();
    assert_eq!(app_cpu.samples.len(), expected["cpu_total"].len());
    assert_eq!(stats.samples, 3 * 720);
}

/// Serves `head` then `body` to every connection.
async fn fake(head: &'static str, body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn no_remote_read_is_a_status_error_to_fall_back_on() {
    for status in ["404 Not Found", "405 Method Not Allowed"] {
        let head: &'static str = Box::leak(
            format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                .into_boxed_str(),
        );
        let url = fake(head, b"no such endpoint".to_vec()).await;
        let err = read_all(&client(&url), &[]).await.unwrap_err();
        let code: u16 = status[..3].parse().unwrap();
        assert!(
            matches!(err, PromError::Status { status, .. } if status == code),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_cut_or_corrupt_answer_is_an_error() {
    // A frame declaring 100 bytes, with only 10 sent.
    let mut cut = vec![100u8];
    cut.extend([0, 0, 0, 0]);
    cut.extend([0u8; 10]);
    let err = read_all(&client(&fake(STREAM_HEAD, cut).await), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");

    // A whole frame whose checksum does not match.
    let mut bad = vec![3u8, 0xde, 0xad, 0xbe, 0xef];
    bad.extend([0x10, 0x01, 0x00]);
    let err = read_all(&client(&fake(STREAM_HEAD, bad).await), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    // A JSON answer where streamed chunks were asked for.
    let json = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    let err = read_all(&client(&fake(json, b"{}".to_vec()).await), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("x-streamed-protobuf"), "{err}");
}
