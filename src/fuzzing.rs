//! The fuzz targets' way in (`fuzz/`, run by `make fuzz`): one function per parser of
//! outside input, taking the raw bytes a fuzzer makes and asserting what the parser
//! promises beyond "no panic". Here rather than in `fuzz/` so that clippy and
//! `cargo test` (which replays the checked-in corpus) see them, and so that no private
//! parser has to become public API. Not a stable interface.

use std::path::Path;

use serde::Deserialize;
use yaml_serde::Value;

use crate::config::{FileConfig, GlobalArgs, LogFormat, Settings};
use crate::gitops::Seg;
use crate::http::query::{ListQuery, RawParams};
use crate::model::Resources;
use crate::quantity;
use crate::sketch::Sketch;
use crate::store::packed;

/// One fuzz target: takes the fuzzer's bytes, panics on a broken property.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: each is `fuzz/fuzz_targets/<name>.rs` and has a seed corpus
/// in `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("prometheus_answer", prometheus_answer),
    ("quantity", quantity),
    ("list_query", list_query),
    ("yaml_edit", yaml_edit),
    ("packed_day", packed_day),
    ("config", config),
];

/// A Prometheus answer body, decoded as the client decodes a matrix, a vector and a series
/// list: only finite samples come out, and an HTTP error status is never a success.
pub fn prometheus_answer(data: &[u8]) {
    // The expected sample count only sizes allocations; vary it without a huge one.
    let samples = data.len() % 64;
    for status in [200, 503] {
        let (matrix, vector, series) = crate::prometheus::decode_raw(data, status, samples);
        if status >= 300 {
            assert!(matrix.is_err() && vector.is_err() && series.is_err());
        }
        // A range answer read as it arrives (in pieces of any size) is the one-pass
        // decoder's answer, or an error: never another answer.
        for piece in [1, 7, 4096] {
            let split = crate::prometheus::decode_matrix_in_pieces(data, status, samples, piece);
            if let Ok(split) = split {
                assert_eq!(Some(&split), matrix.as_ref().ok(), "pieces of {piece}");
            }
        }
        if let Ok(m) = matrix {
            assert!(m
                .series
                .iter()
                .all(|s| s.samples.iter().all(|(_, v)| v.is_finite())));
        }
        if let Ok(v) = vector {
            assert!(v.series.iter().all(|s| s.value.is_finite()));
        }
    }
}

/// A Kubernetes quantity read as CPU and as memory: never negative, the two agree
/// (bytes are millicores / 1000 rounded up), and what we write reads back the same.
pub fn quantity(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let cpu = quantity::parse_cpu_millicores(s);
    let memory = quantity::parse_memory_bytes(s);
    if let Ok(m) = cpu {
        assert!(m >= 0, "{s:?} → {m}m");
        assert_eq!(quantity::parse_cpu_millicores(&quantity::cpu(m)), Ok(m));
        let bytes = m / 1000 + i64::from(m % 1000 != 0);
        assert_eq!(memory, Ok(bytes), "{s:?} as memory");
    }
    if let Ok(b) = memory {
        assert!(b >= 0, "{s:?} → {b} bytes");
        assert_eq!(quantity::parse_memory_bytes(&quantity::memory(b)), Ok(b));
    }
}

/// The list endpoints' query (`selector=app=api,!legacy&namespace=shop-*&cursor=…`):
/// anything bad is a 400, and a query that parses pages without trouble.
pub fn list_query(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let raw: RawParams = s
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    match ListQuery::parse(&raw, data.len().is_multiple_of(2)) {
        Ok(q) => {
            let page = crate::http::query::page(&crate::http::snapshot::Snapshot::default(), &q);
            assert!(page.items.len() <= q.limit);
        }
        Err(e) => assert_eq!(e.status_code(), axum::http::StatusCode::BAD_REQUEST, "{e}"),
    }
}

/// An in-place edit of a manifest's first container: when it succeeds, the file still
/// parses, every byte outside the container's `resources` entry is unchanged, the
/// documents equal the old ones but for that entry, it holds the values asked for, and
/// editing again changes nothing.
pub fn yaml_edit(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let target = edit_target(src.len());
    let Some(edit) = crate::gitops::edit_first_container(src, &target) else {
        return;
    };
    let Ok(new) = edit.result else {
        return;
    };
    let span = edit.span.expect("an edit found its container in the text");
    let (before, after) = (&src[..span.start], &src[span.end..]);
    assert!(
        new.len() >= before.len() + after.len() && new.starts_with(before) && new.ends_with(after),
        "bytes outside {span:?} changed:\n{src}\n---- became ----\n{new}"
    );
    let (old_docs, new_docs) = (documents(src), documents(&new));
    assert_eq!(
        old_docs.len(),
        new_docs.len(),
        "the edit changed the documents"
    );
    for (i, (mut old, mut new)) in old_docs.into_iter().zip(new_docs).enumerate() {
        if i == edit.doc {
            let written = take_resources(&mut new, &edit.path).expect("resources written");
            assert_written(&written, &target);
            take_resources(&mut old, &edit.path);
        }
        assert_eq!(old, new, "document {i} changed outside the resources");
    }
    let again = crate::gitops::edit_first_container(&new, &target).map(|e| e.result);
    assert_eq!(again, Some(Ok(new.clone())), "a second edit changed it");
}

/// Requests and limits to write, varied by the input's length so no seed needs a header.
fn edit_target(len: usize) -> Resources {
    let full = Resources {
        cpu_request_millicores: Some(250),
        cpu_limit_millicores: Some(1000),
        memory_request_bytes: Some(256 << 20),
        memory_limit_bytes: Some(256 << 20),
    };
    match len % 3 {
        0 => full,
        1 => Resources {
            cpu_limit_millicores: None,
            memory_request_bytes: None,
            ..full
        },
        _ => Resources {
            cpu_request_millicores: Some(1500),
            memory_limit_bytes: Some(1_000_000_000),
            ..full
        },
    }
}

/// The values of `target` that are set read back from the written `resources`; the
/// others are the document's own.
fn assert_written(written: &Value, target: &Resources) {
    let read = crate::gitops::resources_of(written);
    for (want, got) in [
        (target.cpu_request_millicores, read.cpu_request_millicores),
        (target.cpu_limit_millicores, read.cpu_limit_millicores),
        (target.memory_request_bytes, read.memory_request_bytes),
        (target.memory_limit_bytes, read.memory_limit_bytes),
    ] {
        if want.is_some() {
            assert_eq!(got, want, "written: {written:?}");
        }
    }
}

/// Every document of a file that parsed as YAML before the edit.
fn documents(src: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(src)
        .map(|doc| Value::deserialize(doc).expect("the file parses as YAML"))
        .collect()
}

/// Removes the `resources` entry of the container at `path`, returning it.
fn take_resources(doc: &mut Value, path: &[Seg]) -> Option<Value> {
    let mut node = doc;
    for seg in path {
        node = match seg {
            Seg::Key(k) => node.get_mut(k.as_str())?,
            Seg::Index(i) => node.get_mut(*i)?,
        };
    }
    node.as_mapping_mut()?.remove("resources")
}

/// A packed day row (the first 8 bytes are the day): a damaged row is an error, never a
/// panic; a row that decodes re-encodes to the same bytes, and its sketches decode or not
/// without trouble either.
pub fn packed_day(data: &[u8]) {
    let (day, row) = match data.split_first_chunk::<8>() {
        Some((day, row)) => (i64::from_be_bytes(*day), row),
        None => (0, data),
    };
    if let Ok(hours) = packed::decode_usage(day, row) {
        for (_, bytes) in &hours {
            if let Ok(sketch) = Sketch::from_bytes(bytes) {
                let _ = (sketch.quantile(0.95), sketch.max(), sketch.mean());
                let _ = Sketch::from_bytes(&sketch.to_bytes()).expect("a sketch round-trips");
            }
        }
        if hours.windows(2).all(|w| w[0].0 < w[1].0) {
            let map = hours.iter().map(|&(h, b)| (h, b.to_vec())).collect();
            assert_eq!(packed::encode_usage(day, &map), row);
        }
    }
    if let Ok(hours) = packed::decode_signals(day, row) {
        if hours.windows(2).all(|w| w[0].0 < w[1].0) {
            let map = hours.into_iter().collect();
            assert_eq!(packed::encode_signals(day, &map), row);
        }
    }
}

/// A config file: an error names what is wrong, never a panic. Files it names are not
/// read: a fuzzer would otherwise read this machine's files (`/dev/zero` forever).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = crate::config::parse_file(text, Path::new("fuzz.toml")) else {
        return;
    };
    forget_files(&mut file);
    let _ = Settings::resolve_with(&no_flags(), file);
}

fn forget_files(file: &mut FileConfig) {
    file.prometheus_token_file = None;
    file.prometheus_password_file = None;
    for c in &mut file.clusters {
        c.prometheus_token_file = None;
        c.prometheus_password_file = None;
    }
}

fn no_flags() -> GlobalArgs {
    GlobalArgs {
        config: None,
        database_url: None,
        prometheus_url: None,
        prometheus_token: None,
        prometheus_token_file: None,
        prometheus_user: None,
        prometheus_password_file: None,
        prometheus_headers: Vec::new(),
        prometheus_ca_file: None,
        prometheus_backend: None,
        prometheus_sigv4_region: None,
        prometheus_insecure_skip_verify: false,
        kubernetes: false,
        cluster: None,
        log_format: LogFormat::Auto,
        collector_source: None,
        collector_compression: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Every checked-in seed and every input that once crashed (`fuzz/corpus/<target>/`)
    /// holds, so `cargo test` catches a regression without a fuzzer.
    #[test]
    fn the_corpus_holds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("a corpus entry").path())
                .collect();
            assert!(!inputs.is_empty(), "{name} has no seeds");
            for path in inputs {
                let data = std::fs::read(&path).expect("a corpus file");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{} fails", path.display());
            }
        }
    }
}
