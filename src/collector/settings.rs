//! The collector's settings (the `[collector]` table of the config file and its flags):
//! where history comes from, how it is fetched, and how big each request may be.

use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;

/// How the collector reads history from Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CollectorSource {
    /// Remote read where the server offers it (probed once per cluster), else
    /// `query-range`.
    #[default]
    Auto,
    /// Raw samples over `/api/v1/read` (streamed XOR chunks); the PromQL the
    /// query path sends is evaluated by the collector.
    RemoteRead,
    /// PromQL range queries over `/api/v1/query_range` (Thanos Query,
    /// VictoriaMetrics and other servers without remote read).
    QueryRange,
}

impl CollectorSource {
    /// The name used in the config file, on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorSource::Auto => "auto",
            CollectorSource::RemoteRead => "remote-read",
            CollectorSource::QueryRange => "query-range",
        }
    }
}

/// Whether the collector asks Prometheus for compressed answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HttpCompression {
    /// gzip unless Prometheus is on a loopback address, where bandwidth is free and
    /// compressing only costs Prometheus CPU.
    #[default]
    Auto,
    /// Always ask for gzip.
    Gzip,
    /// Never.
    None,
}

impl HttpCompression {
    /// Whether to ask `url` for gzip.
    pub fn gzip_for(self, url: &str) -> bool {
        match self {
            HttpCompression::Gzip => true,
            HttpCompression::None => false,
            HttpCompression::Auto => !reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host().map(|h| h.to_owned()))
                .is_some_and(|host| match host {
                    url::Host::Domain(d) => d == "localhost",
                    url::Host::Ipv4(ip) => ip.is_loopback(),
                    url::Host::Ipv6(ip) => ip.is_loopback(),
                }),
        }
    }
}

/// The `[collector]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Where history comes from: `auto`, `remote-read` or `query-range`.
    pub source: CollectorSource,
    /// HTTP compression of Prometheus' answers: `auto`, `gzip` or `none`.
    pub compression: HttpCompression,
    /// Query resolution.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// Hours per chunk (the claim grid); a fleet whose series would make a chunk too big is
    /// fetched in shorter pieces.
    pub chunk_hours: u32,
    /// Hours of consecutive chunks read together over remote read and committed in one
    /// transaction, at most; 0 reads and commits chunk by chunk.
    pub span_hours: u32,
    /// Queries at Prometheus at once.
    pub concurrency: usize,
    /// Schedule of `serve`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of one Prometheus request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of a Prometheus request after a timeout, connection error or 5xx.
    pub retries: u32,
    /// A day's chunk whose namespaces hold more series than this is queried in namespace
    /// groups of at most this many (a shorter chunk: proportionally more), keeping every
    /// answer (and our memory) bounded; 0 never splits.
    pub max_series_per_query: u64,
    /// Largest Prometheus answer read, in bytes; stays in force when
    /// `max_series_per_query` is 0.
    pub max_response_bytes: u64,
    /// The label telling clusters apart when one Prometheus (Thanos, Mimir) holds several.
    /// Without `[[clusters]]` entries, every value of it is a cluster.
    pub cluster_label: Option<String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            source: CollectorSource::Auto,
            compression: HttpCompression::Auto,
            step: Duration::from_secs(60),
            chunk_hours: 24,
            span_hours: super::SPAN_HOURS as u32,
            concurrency: 2,
            interval: Duration::from_secs(600),
            timeout: Duration::from_secs(60),
            retries: 3,
            max_series_per_query: 300,
            max_response_bytes: crate::prometheus::DEFAULT_MAX_RESPONSE_BYTES,
            cluster_label: None,
        }
    }
}
