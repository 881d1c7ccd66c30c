//! The collector's choice of source against a real Prometheus 2.42 behind a proxy that
//! can refuse or break remote read (`/api/v1/read`) while passing everything else
//! through: `auto` falls back to range queries and stores the same rows, an explicit
//! `remote-read` fails with a clear error and writes nothing.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rightsizer::collector::{self, CollectOptions};
use rightsizer::config::CollectorSource;
use rightsizer::prometheus::{PromClient, PromConfig};
use rightsizer::store::Store;
use rightsizer_synth::{self as synth, GroundTruth, SynthConfig};
use support::prometheus::{Prometheus, TempDir};

/// What the proxy does with remote reads.
#[derive(Clone, Copy, Debug)]
enum ReadMode {
    /// Forward unchanged.
    Pass,
    /// Answer this status, as servers without remote read do (Thanos Query: 404;
    /// a router allowing only GET: 405).
    Refuse(u16),
    /// Forward the headers and the first half of a non-empty answer, then end it cleanly:
    /// an answer cut inside a frame.
    Cut,
    /// Flip a bit of the first frame's checksum.
    BadCrc,
    /// Forward the reads while the proxy has counted at most this many, then cut every
    /// later one as `Cut` does.
    CutAfter(u64),
}

struct Proxy {
    url: String,
    mode: Arc<Mutex<ReadMode>>,
    /// Whether owner queries over every namespace are refused as `--query.max-samples`
    /// refuses them.
    owners_too_big: Arc<Mutex<bool>>,
    reads: Arc<Mutex<u64>>,
    /// Requests by path.
    requests: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

async fn start_proxy(upstream: &str) -> Proxy {
    let mode = Arc::new(Mutex::new(ReadMode::Pass));
    let owners_too_big = Arc::new(Mutex::new(false));
    let reads = Arc::new(Mutex::new(0u64));
    let requests: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Default::default();
    let (upstream, state) = (
        upstream.to_string(),
        (
            mode.clone(),
            reads.clone(),
            requests.clone(),
            owners_too_big.clone(),
        ),
    );
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (upstream, http, (mode, reads, requests, owners_too_big)) =
                (upstream.clone(), http.clone(), state.clone());
            async move {
                let read = uri.path() == "/api/v1/read";
                *requests
                    .lock()
                    .unwrap()
                    .entry(uri.path().to_string())
                    .or_default() += 1;
                let promql = url::form_urlencoded::parse(&body)
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                if *owners_too_big.lock().unwrap()
                    && promql.contains("kube_pod_owner")
                    && !promql.contains("namespace=~")
                {
                    // Prometheus' own words and status for a query over --query.max-samples.
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        [("content-type", "application/json")],
                        r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory in query execution"}"#,
                    )
                        .into_response();
                }
                let mode = if read {
                    let mut reads = reads.lock().unwrap();
                    *reads += 1;
                    match *mode.lock().unwrap() {
                        ReadMode::CutAfter(n) if *reads > n => ReadMode::Cut,
                        ReadMode::CutAfter(_) => ReadMode::Pass,
                        mode => mode,
                    }
                } else {
                    ReadMode::Pass
                };
                if let ReadMode::Refuse(code) = mode {
                    return (
                        StatusCode::from_u16(code).unwrap(),
                        "remote read is not here",
                    )
                        .into_response();
                }
                let mut req = http.request(method, format!("{upstream}{uri}")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        req = req.header(name, value);
                    }
                }
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let content_type = resp.headers().get("content-type").cloned();
                let mut body = resp.bytes().await.unwrap().to_vec();
                match mode {
                    ReadMode::Cut if !body.is_empty() => body.truncate(body.len() / 2),
                    // A uvarint length (one or more bytes), then the 4-byte CRC.
                    ReadMode::BadCrc if !body.is_empty() => {
                        let header = body.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
                        body[header] ^= 0x01;
                    }
                    _ => {}
                }
                let mut out = Response::new(axum::body::Body::from(body));
                *out.status_mut() = status;
                if let Some(ct) = content_type {
                    out.headers_mut().insert("content-type", ct);
                }
                out
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Proxy {
        url,
        mode,
        owners_too_big,
        reads,
        requests,
    }
}

impl Proxy {
    fn set(&self, mode: ReadMode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn reads(&self) -> u64 {
        *self.reads.lock().unwrap()
    }

    /// Requests to each of `/api/v1/series`, `/api/v1/query` and `/api/v1/read`.
    fn requests(&self) -> [u64; 3] {
        let requests = self.requests.lock().unwrap();
        ["series", "query", "read"]
            .map(|p| requests.get(&format!("/api/v1/{p}")).copied().unwrap_or(0))
    }
}

struct Fixture {
    _dir: TempDir,
    prometheus: Prometheus,
    truth: GroundTruth,
}

fn fixture() -> Fixture {
    let end = {
        let now = chrono::Utc::now().timestamp();
        now - now.rem_euclid(3600) - 3 * 3600
    };
    let cfg = SynthConfig::new(11, end - 12 * 3600, end);
    let dir = TempDir::new("rs-sources").unwrap();
    let path = dir.path().join("metrics.om");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let truth = synth::generate(&cfg, file).unwrap();
    let prometheus = Prometheus::from_openmetrics(&path, cfg.end - cfg.start).unwrap();
    Fixture {
        _dir: dir,
        prometheus,
        truth,
    }
}

/// A fresh client per run: `auto`'s probe is remembered per client.
fn client(url: &str) -> PromClient {
    PromClient::new(&PromConfig {
        url: url.into(),
        timeout: Duration::from_secs(30),
        retries: 1,
        retry_backoff: Duration::from_millis(10),
        ..PromConfig::default()
    })
    .unwrap()
}

/// `max_series_per_query` that cuts the fixture's 12-hour span into two namespace groups
/// (a group may hold twice as many series over 12 hours as over a day; the biggest
/// namespace has over 40 series of the span).
const SPAN_GROUP_SERIES: u64 = 30;

fn options(truth: &GroundTruth, source: CollectorSource) -> CollectOptions {
    CollectOptions {
        step_secs: 60,
        chunk_hours: 6,
        source,
        ..CollectOptions::new("test", truth.start, truth.end)
    }
}

async fn sqlite(dir: &TempDir, name: &str) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join(name).display());
    rightsizer::store::connect(&url).await.unwrap()
}

/// The rows a range-query collect with `opts` stores.
async fn reference_rows(url: &str, dir: &TempDir, opts: &CollectOptions) -> Vec<String> {
    let reference = sqlite(dir, "reference.db").await;
    collector::collect(&client(url), reference.as_ref(), opts)
        .await
        .unwrap();
    rows(reference.as_ref()).await
}

/// Reads break after `passing` reads. Under `remote-read` (`explicit`) the run fails
/// having written nothing; under `auto` (whose probe is a read too) the broken reads are
/// asked again with range queries and the run stores `reference`. Returns the `auto` run's
/// report.
async fn broken_reads_keep_nothing_or_fall_back(
    proxy: &Proxy,
    dir: &TempDir,
    passing: u64,
    explicit: &CollectOptions,
    auto: &CollectOptions,
    reference: &[String],
) -> collector::CollectReport {
    let broken = sqlite(dir, "broken.db").await;
    proxy.set(ReadMode::CutAfter(proxy.reads() + passing));
    let err = collector::collect(&client(&proxy.url), broken.as_ref(), explicit)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut short"), "{err}");
    assert!(rows(broken.as_ref()).await.is_empty(), "nothing written");
    assert_eq!(
        broken
            .collected_hours("test", 0, i64::MAX / 2)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );

    let fallen_back = sqlite(dir, "fallen-back.db").await;
    proxy.set(ReadMode::CutAfter(proxy.reads() + 1 + passing));
    let r = collector::collect(&client(&proxy.url), fallen_back.as_ref(), auto)
        .await
        .unwrap();
    assert_eq!(rows(fallen_back.as_ref()).await, reference);
    proxy.set(ReadMode::Pass);
    r
}

/// Every container's usage and signal rows.
async fn rows(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    for c in store.containers(Some("test")).await.unwrap() {
        let usage = store.usage(&c.key, 0, i64::MAX / 2).await.unwrap();
        let signals = store.signals(&c.key, 0, i64::MAX / 2).await.unwrap();
        out.push(format!("{c:?} {usage:?} {signals:?}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_and_an_explicit_remote_read_fails_cleanly() {
    use CollectorSource::{Auto, QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let proxy = start_proxy(fx.prometheus.url()).await;
    let dir = TempDir::new("rs-sources-stores").unwrap();

    let reference = sqlite(&dir, "reference.db").await;
    let r = collector::collect(
        &client(&proxy.url),
        reference.as_ref(),
        &options(&fx.truth, QueryRange),
    )
    .await
    .unwrap();
    assert_eq!((r.source.as_str(), r.hours_collected), ("query-range", 12));
    assert_eq!(proxy.reads(), 0, "query-range never reads raw");
    let reference = rows(reference.as_ref()).await;
    assert!(!reference.is_empty());

    // Compressed answers (Prometheus gzips when asked) store the same rows.
    let gzipped = sqlite(&dir, "gzip.db").await;
    let gzip_client = PromClient::new(&PromConfig {
        url: fx.prometheus.url().into(),
        gzip: true,
        ..PromConfig::default()
    })
    .unwrap();
    collector::collect(
        &gzip_client,
        gzipped.as_ref(),
        &options(&fx.truth, QueryRange),
    )
    .await
    .unwrap();
    assert_eq!(rows(gzipped.as_ref()).await, reference);

    // Refused (as by Thanos Query or a GET-only router): auto falls back for the run. Broken
    // answers: the probe's empty answer passes, so remote read is chosen, every read of the
    // chunks breaks, and each group is asked again with range queries. Under an explicit
    // remote-read, each is a clear error and nothing is written.
    for (mode, auto_source, says) in [
        (ReadMode::Refuse(404), "query-range", "404"),
        (ReadMode::Refuse(405), "query-range", "405"),
        (ReadMode::Cut, "remote-read", "cut short"),
        (ReadMode::BadCrc, "remote-read", "CRC"),
    ] {
        proxy.set(mode);
        let store = sqlite(&dir, &format!("{mode:?}.db")).await;
        let r = collector::collect(
            &client(&proxy.url),
            store.as_ref(),
            &options(&fx.truth, Auto),
        )
        .await
        .unwrap();
        assert_eq!(r.source, auto_source, "{mode:?}");
        if auto_source == "query-range" {
            let note = r.source_note.clone().unwrap_or_default();
            assert!(
                note.contains("remote read unavailable") && note.contains(says),
                "{mode:?}: {note}"
            );
        } else {
            assert!(r.remote_read_fallbacks >= 2, "{mode:?}: {r:?}");
        }
        assert_eq!(rows(store.as_ref()).await, reference, "{mode:?}");

        let empty = sqlite(&dir, &format!("{mode:?}-explicit.db")).await;
        let err = collector::collect(
            &client(&proxy.url),
            empty.as_ref(),
            &options(&fx.truth, RemoteRead),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/api/v1/read") && err.contains(says),
            "{mode:?}: {err}"
        );
        assert!(
            rows(empty.as_ref()).await.is_empty(),
            "{mode:?}: nothing written"
        );
    }

    proxy.set(ReadMode::Pass);
    let store = sqlite(&dir, "remote.db").await;
    let r = collector::collect(
        &client(&proxy.url),
        store.as_ref(),
        &options(&fx.truth, Auto),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.source.as_str(), r.remote_read_fallbacks),
        ("remote-read", 0)
    );
    assert_eq!(rows(store.as_ref()).await, reference);
}

/// A namespace over a span's group budget (and within twice it) is read alone, and built
/// before the next group is read, instead of shortening the span: the run is still one
/// span, read in several groups, and stores what range queries store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_the_group_budget_is_read_alone_within_the_span() {
    use CollectorSource::{QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let proxy = start_proxy(fx.prometheus.url()).await;
    let dir = TempDir::new("rs-sources-alone").unwrap();
    // The collector sizes namespaces by these series over the span (and its lookback).
    let selectors = collector::queries::sized_series(&collector::Scope::default());
    let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
    let mut sizes: std::collections::BTreeMap<String, u64> = Default::default();
    for labels in client(fx.prometheus.url())
        .series(&selectors, fx.truth.start - 3600, fx.truth.end)
        .await
        .unwrap()
    {
        *sizes.entry(labels["namespace"].clone()).or_default() += 1;
    }
    let largest = *sizes.values().max().unwrap();
    let per_group = largest * 2 / 3;
    assert!(
        sizes.len() >= 3 && per_group < largest && per_group * 2 >= largest + 2,
        "the largest namespace is over a group and within two: {sizes:?}"
    );
    let hours = ((fx.truth.end - fx.truth.start) / 3600) as u64;
    let options = |source| CollectOptions {
        span_group_series_hours: per_group * hours,
        ..options(&fx.truth, source)
    };

    let reference = reference_rows(&proxy.url, &dir, &options(QueryRange)).await;

    let store = sqlite(&dir, "remote.db").await;
    let before = proxy.requests();
    let r = collector::collect(&client(&proxy.url), store.as_ref(), &options(RemoteRead))
        .await
        .unwrap();
    let [series, queries, reads] = [0, 1, 2].map(|i| proxy.requests()[i] - before[i]);
    // One span (sized once, each chunk's facts an instant query, four reads per group).
    assert!(
        (series, queries, reads % 4) == (1, r.chunks, 0) && reads / 4 >= 2,
        "one span in at least two groups: {series} series requests, {queries} queries, \
         {reads} reads, {r:?}"
    );
    assert_eq!(rows(store.as_ref()).await, reference);
}

/// The last hour of `truth` alone, as a scheduled run collects it, in namespace groups of
/// at most 24 series (1 a day).
fn last_hour(truth: &GroundTruth, source: CollectorSource) -> CollectOptions {
    CollectOptions {
        max_series_per_query: 1,
        chunk_hours: 1,
        source,
        ..CollectOptions::new("test", truth.end - 3600, truth.end)
    }
}

/// A scheduled run's one new hour asks for the hour's owners once, beside its sizing,
/// rather than once per namespace group; when Prometheus refuses that query for its size,
/// each group asks for its own, and the rows are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_hour_asks_for_its_owners_once_or_per_group_when_refused() {
    use CollectorSource::{QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let proxy = start_proxy(fx.prometheus.url()).await;
    let dir = TempDir::new("rs-sources-hour-owners").unwrap();
    let hour = |source| last_hour(&fx.truth, source);
    let reference = reference_rows(&proxy.url, &dir, &hour(QueryRange)).await;
    for refused in [false, true] {
        *proxy.owners_too_big.lock().unwrap() = refused;
        let store = sqlite(&dir, &format!("hour-{refused}.db")).await;
        let before = proxy.requests();
        let r = collector::collect(&client(&proxy.url), store.as_ref(), &hour(RemoteRead))
            .await
            .unwrap();
        let [_, queries, reads] = [0, 1, 2].map(|i| proxy.requests()[i] - before[i]);
        let groups = reads / 3;
        assert!(groups >= 2 && reads % 3 == 0, "{reads} reads, {r:?}");
        // Sizing, facts and the hour's owners; when those are refused, each group's.
        let owner_queries = if refused { 1 + groups } else { 1 };
        assert_eq!(queries, 2 + owner_queries, "refused: {refused}, {r:?}");
        assert_eq!(rows(store.as_ref()).await, reference, "refused: {refused}");
    }
}

/// A scheduled run's one new hour writes its namespace groups into one transaction as they
/// are built: groups written before a later group's read broke are rolled back with it.
/// Under `remote-read` the run fails having written nothing; under `auto` the broken group
/// is asked again with range queries and the rows are those range queries store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_hour_broken_after_groups_were_written_keeps_none_of_them() {
    use CollectorSource::{Auto, QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let proxy = start_proxy(fx.prometheus.url()).await;
    let dir = TempDir::new("rs-sources-hour-broken").unwrap();
    // One group at a time: a group is handed to the writer before the next is read.
    let hour = |source| CollectOptions {
        concurrency: 1,
        ..last_hour(&fx.truth, source)
    };
    let reference = reference_rows(&proxy.url, &dir, &hour(QueryRange)).await;

    let whole = sqlite(&dir, "whole.db").await;
    let before = proxy.reads();
    collector::collect(&client(&proxy.url), whole.as_ref(), &hour(RemoteRead))
        .await
        .unwrap();
    // Three reads per group (a source given is not probed).
    let reads = proxy.reads() - before;
    assert!(
        reads >= 2 * 3 && reads % 3 == 0,
        "two groups or more: {reads} reads"
    );
    assert_eq!(rows(whole.as_ref()).await, reference);

    // Every read passes but the last group's last: the groups before it were written into
    // the hour's transaction by then.
    let (explicit, auto) = (hour(RemoteRead), hour(Auto));
    let r = broken_reads_keep_nothing_or_fall_back(
        &proxy,
        &dir,
        reads - 1,
        &explicit,
        &auto,
        &reference,
    )
    .await;
    assert!(
        r.source == "remote-read" && r.remote_read_fallbacks == 1 && r.hours_collected == 1,
        "{r:?}"
    );
}

/// A span read in several namespace groups is one transaction: groups written into it
/// before a later group's read broke are rolled back with it. Under `remote-read` the run
/// fails having written nothing; under `auto` the span's chunks are read again one by one
/// and store what range queries store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_broken_after_groups_were_written_keeps_none_of_them() {
    use CollectorSource::{Auto, QueryRange, RemoteRead};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let proxy = start_proxy(fx.prometheus.url()).await;
    let dir = TempDir::new("rs-sources-span").unwrap();
    // Six-hour chunks (two or three: cells follow the clock) read as one span, in
    // namespace groups of a few series.
    let options = |source| CollectOptions {
        max_series_per_query: SPAN_GROUP_SERIES,
        ..options(&fx.truth, source)
    };

    let reference = reference_rows(&proxy.url, &dir, &options(QueryRange)).await;

    let whole = sqlite(&dir, "whole.db").await;
    let before = proxy.requests();
    let r = collector::collect(&client(&proxy.url), whole.as_ref(), &options(RemoteRead))
        .await
        .unwrap();
    let [series, queries, reads] = [0, 1, 2].map(|i| proxy.requests()[i] - before[i]);
    // Read as a span: sized through /api/v1/series, each chunk's facts an instant query,
    // then four reads per group (chunks read one by one size themselves and ask for each
    // group's owners with instant queries).
    assert!(
        (series, queries, reads % 4) == (1, r.chunks, 0)
            && reads / 4 >= 2
            && r.split_chunks == r.chunks,
        "the span is read in at least two groups: {series} series requests, {queries} \
         queries, {reads} reads, {r:?}"
    );
    assert_eq!(rows(whole.as_ref()).await, reference);

    // The first group's reads pass and the second's break: the first group was handed to
    // the writer while the second was read.
    let (explicit, auto) = (options(RemoteRead), options(Auto));
    let r =
        broken_reads_keep_nothing_or_fall_back(&proxy, &dir, 4, &explicit, &auto, &reference).await;
    assert!(
        r.source == "remote-read" && r.remote_read_fallbacks >= 1 && r.hours_collected == 12,
        "{r:?}"
    );
}

/// The `max by` the collector computes from raw series equals the one Prometheus computes,
/// point for point and bit for bit, for each of the three range selections of a chunk (the
/// state selection's thinned as the collector thins it: first, last and changed points).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_max_by_equals_prometheus_own() {
    use rightsizer::collector::queries::RawMetric;
    use rightsizer::collector::{raw, ChunkQueries, Scope};
    let fx = tokio::task::spawn_blocking(fixture).await.unwrap();
    let prom = client(fx.prometheus.url());
    let hours: Vec<i64> = (0..6).map(|i| fx.truth.start + i * 3600).collect();
    let q = ChunkQueries::new(&hours, 60, &Scope::default());
    for (metric, r) in [
        (RawMetric::State, &q.state),
        (RawMetric::Cpu, &q.cpu),
        (RawMetric::Memory, &q.memory),
    ] {
        let ours = raw::aggregate(
            metric,
            r,
            prom.query_range(&r.promql, r.start, r.end, r.step_secs)
                .await
                .unwrap(),
        );
        let by = raw::group_labels(metric).join(", ");
        let theirs = prom
            .query_range(
                &format!("max by ({by}) ({})", r.promql),
                r.start,
                r.end,
                r.step_secs,
            )
            .await
            .unwrap();
        assert!(!ours.series.is_empty(), "{metric:?}");
        assert_eq!(ours.series.len(), theirs.series.len(), "{metric:?}");
        let points = |a: &rightsizer::prometheus::Answer<rightsizer::prometheus::RangeSeries>| {
            a.series.iter().map(|s| s.samples.len()).sum::<usize>()
        };
        let (all, kept) = (points(&theirs), points(&ours));
        let theirs = match metric {
            RawMetric::State => rightsizer::prometheus::Answer {
                series: theirs
                    .series
                    .into_iter()
                    .map(|s| rightsizer::prometheus::RangeSeries {
                        samples: raw::thinned(&s.labels, s.samples),
                        labels: s.labels,
                    })
                    .collect(),
                ..theirs
            },
            _ => theirs,
        };
        // Thinning is what the state selection is for; cAdvisor's usage keeps every point.
        match metric {
            RawMetric::State => assert!(kept * 2 < all, "{kept} of {all}"),
            _ => assert_eq!(kept, all),
        }
        for (a, b) in ours.series.iter().zip(&theirs.series) {
            assert_eq!(a.labels, b.labels, "{metric:?}");
            let bits =
                |s: &[(i64, f64)]| s.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
            assert_eq!(
                bits(&a.samples),
                bits(&b.samples),
                "{metric:?} {:?}",
                a.labels
            );
        }
    }
}
