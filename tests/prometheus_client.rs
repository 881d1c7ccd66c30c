//! The Prometheus client against protocol faults a real Prometheus won't produce on
//! demand: a proxy's HTML 502, a 503 error envelope, a hang, a truncated body, a
//! non-JSON 200, bearer-token auth, and how many requests a limited client keeps at once.
//! A tiny local server plays each part.

#[path = "support/huge.rs"]
mod huge;

use std::time::Duration;

use rightsizer::prometheus::{PromClient, PromConfig, PromError};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `response` (raw HTTP) to every connection; returns the base URL and the
/// requests it saw.
async fn fake(
    response: &'static str,
    delay: Duration,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
                tokio::time::sleep(delay).await;
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, rx)
}

fn client(url: &str, timeout: Duration, token: Option<&str>) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.to_string(),
        bearer_token: token.map(|t| SecretString::from(t.to_string())),
        timeout,
        // These tests look at one answer each; retries have their own test below.
        retries: 0,
        ..PromConfig::default()
    })
    .unwrap()
}

const OK_MATRIX: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"pod\":\"a\"},\"values\":[[10,\"1\"],[70,\"NaN\"],[130,\"+Inf\"]]}]}}";

#[tokio::test]
async fn decodes_and_sends_the_bearer_token() {
    let (url, mut seen) = fake(OK_MATRIX, Duration::ZERO).await;
    let answer = client(&url, Duration::from_secs(5), Some("s3cret"))
        .query_range("up{job=\"x\"}", 10, 130, 60)
        .await
        .unwrap();
    assert_eq!(answer.series[0].samples, vec![(10, 1.0)]);
    assert_eq!(answer.non_finite_skipped, 2);
    let request = seen.recv().await.unwrap();
    assert!(
        request.starts_with("POST /api/v1/query_range "),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{request}"
    );
    assert!(request.contains("query=up%7Bjob%3D%22x%22%7D"), "{request}");
}

/// Workload identity (GKE, AKS) and projected service-account tokens rewrite the token
/// file every hour or so: the client sends the new token without a restart, and keeps the
/// last good one while the file is empty mid-rotation.
#[tokio::test]
async fn a_rotated_token_file_is_read_again() {
    let (url, mut seen) = fake(OK_MATRIX, Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("rs-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let write = |text: &str, age_secs: u64| {
        std::fs::write(&path, text).unwrap();
        let at = std::time::SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    write("first\n", 300);
    let c = PromClient::new(&PromConfig {
        url: url.clone(),
        bearer_token: Some(SecretString::from("first".to_string())),
        bearer_token_file: Some(path.clone()),
        retries: 0,
        ..PromConfig::default()
    })
    .unwrap();
    let mut sent = Vec::new();
    for (content, age) in [
        (None, 0),
        (Some("second"), 200),
        (Some(""), 100),
        (Some("third"), 0),
    ] {
        if let Some(text) = content {
            write(text, age);
        }
        c.query_range("up", 10, 130, 60).await.unwrap();
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        let token = request
            .lines()
            .find_map(|l| l.strip_prefix("authorization: bearer "))
            .unwrap()
            .trim()
            .to_string();
        sent.push(token);
    }
    assert_eq!(sent, ["first", "second", "second", "third"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Thanos Query (docs: thanos.io, "Query", HTTP API: `dedup`, `partial_response`) gets both
/// parameters on every query, so a store that does not answer fails the query instead of
/// thinning the history; neither Thanos nor VictoriaMetrics is probed for remote read, which
/// their documentation says they lack.
#[tokio::test]
async fn thanos_queries_ask_for_dedup_and_no_partial_responses() {
    use rightsizer::prometheus::Backend;
    for (backend, wanted) in [
        (Backend::Thanos, true),
        (Backend::Prometheus, false),
        (Backend::Victoriametrics, false),
    ] {
        let (url, mut seen) = fake(OK_MATRIX, Duration::ZERO).await;
        let c = PromClient::new(&PromConfig {
            url,
            backend,
            retries: 0,
            ..PromConfig::default()
        })
        .unwrap();
        c.query_range("up", 10, 130, 60).await.unwrap();
        let request = seen.recv().await.unwrap();
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body.contains("dedup=true") && body.contains("partial_response=false"),
            wanted,
            "{backend:?}: {body}"
        );
        assert!(
            body.starts_with("query=up&start=10&end=130&step=60"),
            "{body}"
        );
        let probe = c.remote_read_offered().await.unwrap();
        match backend.lacks_remote_read() {
            Some(why) => {
                assert!(probe.unwrap_err().starts_with(why));
                assert!(seen.try_recv().is_err(), "{backend:?} was probed");
            }
            None => {
                // The fake answers JSON, not streamed chunks: probed, and refused.
                assert!(probe.is_err(), "{backend:?}");
                assert!(seen.recv().await.unwrap().starts_with("POST /api/v1/read "));
            }
        }
    }
}

#[tokio::test]
async fn error_envelope_on_503_is_an_api_error() {
    let (url, _) = fake(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
         {\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":\"too many concurrent queries\"}",
        Duration::ZERO,
    )
    .await;
    let err = client(&url, Duration::from_secs(5), None)
        .query("up", 100)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Prometheus rejected the query (unavailable): too many concurrent queries; query: up"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn proxy_html_is_a_status_error_with_a_snippet() {
    let (url, _) = fake(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html><body>Bad gateway</body></html>",
        Duration::ZERO,
    )
    .await;
    let err = client(&url, Duration::from_secs(5), None)
        .query("up", 100)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PromError::Status { status: 502, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("answered HTTP 502: <html><body>Bad gateway"),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn non_json_success_is_a_decode_error() {
    let (url, _) = fake(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello",
        Duration::ZERO,
    )
    .await;
    let err = client(&url, Duration::from_secs(5), None)
        .query("up", 100)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected JSON, got content type \"text/plain\": hello"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn truncated_body_is_an_error_not_partial_data() {
    let (url, _) = fake(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n\
         {\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},\"values\":[[1,\"1\"]",
        Duration::ZERO,
    )
    .await;
    let err = client(&url, Duration::from_secs(5), None)
        .query_range("up", 1, 61, 60)
        .await
        .unwrap_err();
    assert!(matches!(err, PromError::Http { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_hang_times_out() {
    let (url, _) = fake(OK_MATRIX, Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    let err = client(&url, Duration::from_millis(300), None)
        .query("up", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PromError::Http { timeout: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("request timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn unreachable_and_invalid_urls() {
    let err = client("http://127.0.0.1:1", Duration::from_secs(2), None)
        .query("up", 1)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "Prometheus at http://127.0.0.1:1/api/v1/query unreachable: connection failed"
        ),
        "{err}"
    );
    let err = PromClient::new(&PromConfig {
        url: "ftp://x".into(),
        bearer_token: None,
        timeout: Duration::from_secs(1),
        ..PromConfig::default()
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid Prometheus URL \"ftp://x\": scheme must be http or https"
    );
}

/// Answers each connection with the next of `responses` (the last one repeats) and counts
/// the requests.
async fn scripted(
    responses: Vec<&'static str>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = responses[n.min(responses.len() - 1)];
            let mut buf = vec![0u8; 65536];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, count)
}

const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>busy</html>";
const BAD_DATA: &str =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse error\"}";

fn retrying(url: &str, retries: u32) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.into(),
        timeout: Duration::from_secs(5),
        retries,
        retry_backoff: Duration::from_millis(20),
        ..PromConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let (url, count) = scripted(vec![UNAVAILABLE, UNAVAILABLE, OK_MATRIX]).await;
    let answer = retrying(&url, 3)
        .query_range("up", 10, 130, 60)
        .await
        .unwrap();
    assert_eq!(answer.series[0].samples, vec![(10, 1.0)]);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);

    let (url, count) = scripted(vec![UNAVAILABLE]).await;
    let err = retrying(&url, 2).query("up", 1).await.unwrap_err();
    assert!(
        matches!(err, PromError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the first try and 2 retries, then the error"
    );
}

#[tokio::test]
async fn client_errors_and_promql_errors_are_not_retried() {
    let (url, count) = scripted(vec![BAD_DATA, OK_MATRIX]).await;
    let err = retrying(&url, 3).query("rate(x[5m]", 1).await.unwrap_err();
    assert!(matches!(err, PromError::Api { .. }), "{err:?}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn basic_auth_and_extra_headers_are_sent() {
    let (url, mut seen) = fake(OK_MATRIX, Duration::ZERO).await;
    let client = PromClient::new(&PromConfig {
        url,
        basic_auth: Some(("reader".into(), SecretString::from("pw".to_string()))),
        headers: vec![(
            "X-Scope-OrgID".into(),
            SecretString::from("tenant-a".to_string()),
        )],
        ..PromConfig::default()
    })
    .unwrap();
    client.query_range("up", 10, 130, 60).await.unwrap();
    let request = seen.recv().await.unwrap().to_ascii_lowercase();
    assert!(
        request.contains("authorization: basic cmvhzgvyonb3"),
        "{request}"
    );
    assert!(request.contains("x-scope-orgid: tenant-a"), "{request}");
}

#[tokio::test]
async fn a_missing_ca_file_is_a_clear_error() {
    let err = PromClient::new(&PromConfig {
        url: "https://prometheus:9090".into(),
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..PromConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().starts_with("invalid Prometheus URL \"https://prometheus:9090\": cannot read CA file /nonexistent/ca.pem"), "{err}");
}

/// Serves OK_MATRIX after `delay` to every connection and records the most requests it
/// was answering at once.
async fn counting(delay: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = most.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (now, most) = (now.clone(), most.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = sock.write_all(OK_MATRIX.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_limited_client_keeps_at_most_n_requests_at_prometheus() {
    use std::sync::atomic::Ordering;
    let delay = Duration::from_millis(300);
    let ask_six = |prom: PromClient| async move {
        let asks = (0..6).map(|_| prom.query_range("up", 10, 130, 60));
        for answer in futures::future::join_all(asks).await {
            assert_eq!(answer.unwrap().series[0].samples, vec![(10, 1.0)]);
        }
    };
    let (url, most) = counting(delay).await;
    ask_six(client(&url, Duration::from_secs(5), None).limited(2)).await;
    assert_eq!(most.load(Ordering::SeqCst), 2, "the limit is 2");
    // The same six without a limit reach the server together: the count above is the
    // limit's doing, not the server's.
    let (url, most) = counting(delay).await;
    ask_six(client(&url, Duration::from_secs(5), None)).await;
    assert!(most.load(Ordering::SeqCst) > 2, "{most:?}");
}

fn capped(url: &str, max_response_bytes: u64) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.to_string(),
        timeout: Duration::from_secs(60),
        retries: 2,
        retry_backoff: Duration::from_millis(10),
        max_response_bytes,
        ..PromConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_gigabyte_answer_stops_at_the_cap_with_an_error_naming_the_setting() {
    let server = huge::HugeServer::prometheus().await;
    let err = capped(&server.url, 1 << 20)
        .query_range("up", 0, 3600, 60)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PromError::TooLarge {
                cap_bytes: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("Prometheus at {}/api/v1/query_range answered more than 1048576 bytes, the limit: raise collector.max_response_bytes, or lower collector.max_series_per_query or collector.chunk_hours so each answer is smaller", server.url)
    );
    assert_eq!(err.kind(), "too_large");
    // Asking again would get the same answer: not retried.
    assert!(!err.is_transient());
    assert_eq!(server.requests(), 1);
    // Reading stopped at the cap: the server got out at most that plus what the sockets
    // buffer, nowhere near the gigabyte it offered.
    assert!(server.sent() < 64 << 20, "read {} bytes", server.sent());
}

#[tokio::test]
async fn an_announced_length_over_the_cap_is_refused_unread() {
    let server = huge::HugeServer::start(
        "application/json",
        "{\"status\":\"success\",\"data\":[",
        huge::GIGABYTE,
        true,
    )
    .await;
    let err = capped(&server.url, 1 << 20)
        .series(&["up"], 0, 60)
        .await
        .unwrap_err();
    assert!(matches!(err, PromError::TooLarge { .. }), "{err:?}");
    assert!(server.sent() < 64 << 20, "read {} bytes", server.sent());
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_but_never_printed() {
    let (url, mut seen) = fake(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>bad gateway</html>",
        Duration::ZERO,
    )
    .await;
    let with_userinfo = url.replace("http://", "http://prom-user:hunter2@");
    let err = client(&with_userinfo, Duration::from_secs(5), None)
        .query("up", 1)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter"), "{text}");
    assert!(text.contains("http://***@127.0.0.1"), "{text}");
    // reqwest turns the userinfo into basic auth: the credentials still reach Prometheus.
    let request = seen.recv().await.unwrap().to_lowercase();
    assert!(request.contains("authorization: basic "), "{request}");
    let err = PromClient::new(&PromConfig {
        url: "ftp://u:hunter2@x".into(),
        ..PromConfig::default()
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid Prometheus URL \"ftp://***@x\": scheme must be http or https"
    );
}

const THREE_SERIES: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"pod\":\"a\"},\"values\":[[10,\"1\"],[70,\"NaN\"]]},\
{\"metric\":{\"pod\":\"b\"},\"values\":[[10,\"2\"]]},{\"metric\":{\"pod\":\"c\"},\"values\":[[70,\"3\"]]}]},\"warnings\":[\"w\"]}";

/// The same answer in an order Prometheus does not write (`result` before `resultType`):
/// read whole, then folded.
const THREE_SERIES_OTHER_ORDER: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
{\"status\":\"success\",\"warnings\":[\"w\"],\"data\":{\"result\":[{\"metric\":{\"pod\":\"a\"},\"values\":[[10,\"1\"],[70,\"NaN\"]]},\
{\"metric\":{\"pod\":\"b\"},\"values\":[[10,\"2\"]]},{\"metric\":{\"pod\":\"c\"},\"values\":[[70,\"3\"]]}],\"resultType\":\"matrix\"}}";

/// A folded range query hands every series to the fold, in the answer's order, and keeps
/// none; the count of skipped values it returns is the plain query's.
#[tokio::test]
async fn a_folded_range_query_hands_over_every_series_and_keeps_none() {
    for response in [THREE_SERIES, THREE_SERIES_OTHER_ORDER] {
        let (url, _seen) = fake(response, Duration::ZERO).await;
        let c = client(&url, Duration::from_secs(5), None);
        let plain = c.query_range("up", 10, 70, 60).await.unwrap();
        let folded_series = std::sync::Mutex::new(Vec::new());
        let fold = |series: Vec<rightsizer::prometheus::RangeSeries>| {
            folded_series.lock().unwrap().extend(series)
        };
        let folded = c.query_range_folded("up", 10, 70, 60, &fold).await.unwrap();
        let pods: Vec<&str> = plain
            .series
            .iter()
            .map(|s| s.labels["pod"].as_str())
            .collect();
        assert_eq!(pods, ["a", "b", "c"]);
        assert_eq!(folded_series.into_inner().unwrap(), plain.series);
        assert!(folded.series.is_empty());
        assert_eq!(folded.non_finite_skipped, 1);
        assert_eq!(folded.non_finite_skipped, plain.non_finite_skipped);
    }
}
