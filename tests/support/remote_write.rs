//! Samples sent to a running Prometheus over remote write (protocol 1.0,
//! <https://prometheus.io/docs/specs/remote_write_spec/>; the server needs
//! `--web.enable-remote-write-receiver`), which keeps them in its head block as it keeps
//! scraped ones: tests and `make bench` read the newest hours from there, as a scheduled run
//! reads them from a live Prometheus, where promtool can only write blocks.
//!
//! Prometheus refuses a sample older than half its chunk range (an hour with 2-hour blocks)
//! before the newest sample it holds, whatever the series: send history in time order, an
//! hour at most per round across all series.

// Each test binary uses part of the support code.
#![allow(dead_code)]

use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// One series to send: its labels (`__name__` among them, any order) and its samples
/// (milliseconds, in time order).
#[derive(Debug, Default)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

/// Sends `series` in one request to `url`'s `/api/v1/write`.
pub async fn write(http: &reqwest::Client, url: &str, series: Vec<Series>) -> Result<(), String> {
    let request = WriteRequest {
        timeseries: series
            .into_iter()
            .map(|s| {
                let mut labels: Vec<Label> = s
                    .labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect();
                // The protocol asks for labels sorted by name.
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                TimeSeries {
                    labels,
                    samples: s
                        .samples
                        .into_iter()
                        .map(|(timestamp, value)| Sample { value, timestamp })
                        .collect(),
                }
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .map_err(|e| format!("snappy: {e}"))?;
    let endpoint = format!("{url}/api/v1/write");
    let response = http
        .post(&endpoint)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("remote write to {endpoint}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        Err(format!("remote write to {endpoint}: {status}: {text}"))
    }
}
