//! The newest hours of the fleet sent to Prometheus' head block over remote write.
//!
//! promtool only writes blocks, but a live Prometheus keeps its last one to three hours in
//! memory (the head), and a scheduled run's new hour is read from there, where finding a
//! series costs an in-memory index lookup instead of decoding a block's index entry. The
//! generator writes those hours to `head.txt` (`name{labels} value timestamp` lines, a
//! family at a time, time order within each); this sends them to Prometheus' remote-write
//! receiver (`--web.enable-remote-write-receiver`, protocol 1.0:
//! <https://prometheus.io/docs/specs/remote_write_spec/>), an hour of every file at a time:
//! Prometheus refuses a sample more than half its 2-hour chunk range older than the newest
//! one it holds, so the hours go in time order across all copies.

use std::collections::HashMap;
use std::path::Path;

#[path = "../../tests/support/remote_write.rs"]
mod remote_write;

use remote_write::Series;

/// Samples per request: about 1 MB of protobuf before compression.
const SAMPLES_PER_REQUEST: usize = 60_000;

/// Sends every sample of `files` from `from` (unix seconds) on, an hour at a time; returns
/// the samples sent.
pub async fn push(url: &str, files: &[&Path], from: i64, to: i64) -> u64 {
    let http = reqwest::Client::new();
    let mut sent = 0u64;
    // The nodes' own series are the same in every copy (vertical compaction merges them in
    // the blocks); the head takes each from the first copy that has it.
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut hour = from;
    while hour < to {
        for (index, file) in files.iter().enumerate() {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let mut series: HashMap<&str, Vec<(i64, f64)>> = HashMap::new();
            for (n, line) in text.lines().enumerate() {
                let (prefix, value, t) = split_line(line).unwrap_or_else(|| {
                    panic!(
                        "{}:{}: not `name{{labels}} value timestamp`",
                        file.display(),
                        n + 1
                    )
                });
                let mine = match owner.get(prefix) {
                    Some(&first) => first == index,
                    None => {
                        owner.insert(prefix.to_string(), index);
                        true
                    }
                };
                if mine && (hour..hour + 3600).contains(&t) {
                    series.entry(prefix).or_default().push((t * 1000, value));
                }
            }
            let mut batch = Vec::new();
            let mut samples = 0;
            let mut series = series.into_iter().peekable();
            while let Some((prefix, points)) = series.next() {
                samples += points.len();
                batch.push(Series {
                    labels: labels(prefix)
                        .unwrap_or_else(|| panic!("{}: bad labels in {prefix:?}", file.display())),
                    samples: points,
                });
                if samples >= SAMPLES_PER_REQUEST || series.peek().is_none() {
                    remote_write::write(&http, url, std::mem::take(&mut batch))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    sent += samples as u64;
                    samples = 0;
                }
            }
        }
        hour += 3600;
    }
    sent
}

/// `name{labels} value timestamp` → (`name{labels}`, value, timestamp).
fn split_line(line: &str) -> Option<(&str, f64, i64)> {
    let (rest, t) = line.rsplit_once(' ')?;
    let (prefix, value) = rest.rsplit_once(' ')?;
    Some((prefix, value.parse().ok()?, t.parse().ok()?))
}

/// The labels of `name{a="b",…}`, the name as `__name__`.
fn labels(prefix: &str) -> Option<Vec<(String, String)>> {
    let (name, rest) = match prefix.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (prefix, ""),
    };
    let mut out = vec![("__name__".to_string(), name.to_string())];
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key, value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(out)
}
