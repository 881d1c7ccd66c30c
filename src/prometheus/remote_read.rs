//! Prometheus remote read (`POST /api/v1/read`) with the streamed XOR-chunk answer.
//!
//! The request is a snappy-compressed `prometheus.ReadRequest` asking only for
//! `STREAMED_XOR_CHUNKS`; the answer is a stream of frames, each a uvarint length, a
//! big-endian CRC-32C of the message and a `prometheus.ChunkedReadResponse`. Frames
//! are decoded as they arrive, so memory is bounded by one frame plus the series
//! being assembled, never by the answer.
//!
//! Messages are declared by hand with prost's derive (the subset of `prompb/remote.proto`
//! and `types.proto` we use): it keeps `protoc` out of the build.

use bytes::{Buf, BytesMut};
use prost::Message;

use super::{content_type, http_error, read_capped, snippet, xor};
use super::{Labels, PromClient, PromError};

/// A frame larger than this is refused. Prometheus cuts frames at
/// `--storage.remote.read-max-bytes-in-frame` (1 MiB by default); a single series'
/// chunks may exceed that, so we allow headroom while still bounding memory.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// How a label is matched, as in `prompb.LabelMatcher.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `=`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `=~`
    Re = 2,
    /// `!~`
    Nre = 3,
}

/// One label matcher of a remote-read query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// How to match.
    pub kind: MatchKind,
    /// Label name (`__name__` for the metric).
    pub name: String,
    /// Value or regular expression (fully anchored, as in PromQL).
    pub value: String,
}

impl Matcher {
    /// Shorthand constructor.
    pub fn new(kind: MatchKind, name: &str, value: &str) -> Self {
        Matcher {
            kind,
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One series of a remote-read answer: its labels and raw samples in time order
/// (stale markers included: see [`xor::STALE_NAN_BITS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    /// All labels, `__name__` included.
    pub labels: Labels,
    /// `(timestamp_ms, value)`.
    pub samples: Vec<(i64, f64)>,
}

/// What one remote read cost on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Bytes of the answer body.
    pub bytes: u64,
    /// Frames decoded.
    pub frames: u64,
    /// Series delivered.
    pub series: u64,
    /// Samples delivered.
    pub samples: u64,
}

mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReadRequest {
        #[prost(message, repeated, tag = "1")]
        pub queries: Vec<Query>,
        #[prost(int32, repeated, tag = "2")]
        pub accepted_response_types: Vec<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Query {
        #[prost(int64, tag = "1")]
        pub start_timestamp_ms: i64,
        #[prost(int64, tag = "2")]
        pub end_timestamp_ms: i64,
        #[prost(message, repeated, tag = "3")]
        pub matchers: Vec<LabelMatcher>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelMatcher {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChunkedReadResponse {
        #[prost(message, repeated, tag = "1")]
        pub chunked_series: Vec<ChunkedSeries>,
        #[prost(int64, tag = "2")]
        pub query_index: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChunkedSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub chunks: Vec<Chunk>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Chunk {
        #[prost(int64, tag = "1")]
        pub min_time_ms: i64,
        #[prost(int64, tag = "2")]
        pub max_time_ms: i64,
        #[prost(int32, tag = "3")]
        pub r#type: i32,
        // A slice of the frame it came in (decoded from `Bytes`), not a copy of it.
        #[prost(bytes = "bytes", tag = "4")]
        pub data: bytes::Bytes,
    }

    /// `ReadRequest.ResponseType.STREAMED_XOR_CHUNKS`.
    pub const STREAMED_XOR_CHUNKS: i32 = 1;
    /// `Chunk.Encoding.XOR`.
    pub const XOR: i32 = 1;
}

/// The request body for one query over `[start_ms, end_ms]`, snappy-compressed.
fn request_body(start_ms: i64, end_ms: i64, matchers: &[Matcher]) -> Vec<u8> {
    let request = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers
                .iter()
                .map(|m| pb::LabelMatcher {
                    r#type: m.kind as i32,
                    name: m.name.clone(),
                    value: m.value.clone(),
                })
                .collect(),
        }],
        accepted_response_types: vec![pb::STREAMED_XOR_CHUNKS],
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any in-memory buffer")
}

/// Splits frames off the front of a growing buffer.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
}

/// The frames' checksum, CRC-32C. Slice-by-16 tables, built once: every byte of an answer
/// goes through it (the bytewise default was 5 % of a remote-read backfill's CPU).
static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// What a frame could not be.
#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    TooLong(u64),
    Crc { expected: u32, got: u32 },
    Varint,
}

impl Framer {
    /// The next whole frame's message, if the buffer holds one.
    fn next(&mut self) -> Result<Option<bytes::Bytes>, FrameError> {
        let mut len = 0u64;
        let mut header = 0;
        loop {
            let Some(&b) = self.buf.get(header) else {
                return Ok(None);
            };
            if header == 10 {
                return Err(FrameError::Varint);
            }
            len |= u64::from(b & 0x7f) << (7 * header);
            header += 1;
            if b < 0x80 {
                break;
            }
        }
        if len > MAX_FRAME_BYTES as u64 {
            return Err(FrameError::TooLong(len));
        }
        let total = header + 4 + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(header);
        let expected = self.buf.get_u32();
        let message = self.buf.split_to(len as usize).freeze();
        let got = CRC32C.checksum(&message);
        if got != expected {
            return Err(FrameError::Crc { expected, got });
        }
        Ok(Some(message))
    }
}

/// Merges consecutive pieces of one series (Prometheus splits a series' chunks over
/// frames when they exceed the frame size) and hands whole series on.
struct Assembler<S> {
    current: Option<RawSeries>,
    sink: S,
    stats: ReadStats,
    /// The end of the range read, in milliseconds: how far a series' samples may reach.
    end_ms: i64,
}

/// Where a remote read hands each whole series.
pub trait SeriesSink {
    /// One series, complete.
    fn series(&mut self, series: RawSeries);
}

impl SeriesSink for Vec<RawSeries> {
    fn series(&mut self, series: RawSeries) {
        self.push(series);
    }
}

impl<S: SeriesSink> Assembler<S> {
    fn frame(&mut self, message: bytes::Bytes) -> Result<(), String> {
        let frame = pb::ChunkedReadResponse::decode(message).map_err(|e| {
            format!(
                "frame {} is not a ChunkedReadResponse: {e}",
                self.stats.frames
            )
        })?;
        self.stats.frames += 1;
        for series in frame.chunked_series {
            let labels: Labels = series
                .labels
                .into_iter()
                .map(|l| (l.name, l.value))
                .collect();
            // A series cut over frames goes on in the same buffer.
            if self.current.as_ref().is_none_or(|cur| cur.labels != labels) {
                self.flush();
                self.current = Some(RawSeries {
                    labels,
                    samples: Vec::new(),
                });
            }
            let cur = self.current.as_mut().expect("set above");
            if cur.samples.is_empty() {
                if let Some(first) = series.chunks.first() {
                    cur.samples.reserve(expected_samples(first, self.end_ms));
                }
            }
            for chunk in &series.chunks {
                if chunk.r#type != pb::XOR {
                    return Err(format!(
                        "chunk of encoding {} for {:?}: only XOR (1) is understood",
                        chunk.r#type, cur.labels
                    ));
                }
                xor::decode_into(&chunk.data, &mut cur.samples)
                    .map_err(|e| format!("{e} for {:?}", cur.labels))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(series) = self.current.take() {
            self.stats.series += 1;
            self.stats.samples += series.samples.len() as u64;
            self.sink.series(series);
        }
    }
}

impl PromClient {
    /// Reads raw samples of every series matching `matchers` in `[start_ms, end_ms]`
    /// into a sink made by `new_sink`, which gets each series whole, in the order
    /// Prometheus sends them (sorted by labels). A transient failure (connection, 5xx,
    /// an answer cut short by the connection) is retried like queries are, each attempt
    /// into a fresh sink, so a retry never hands a series on twice. A bad frame or an
    /// unknown chunk encoding is an error, never a short answer.
    ///
    /// A server without remote read answers 404 or 405: that is a [`PromError::Status`]
    /// the caller can fall back on.
    pub async fn remote_read<S: SeriesSink>(
        &self,
        start_ms: i64,
        end_ms: i64,
        matchers: &[Matcher],
        new_sink: impl Fn() -> S,
    ) -> Result<(S, ReadStats), PromError> {
        let body = bytes::Bytes::from(request_body(start_ms, end_ms, matchers));
        self.with_retries("read", || self.read_once(body.clone(), end_ms, new_sink()))
            .await
    }

    /// Whether the server offers streamed remote read: `Err` says why not (404/405
    /// from Thanos Query or VictoriaMetrics, a server answering something other than
    /// streamed chunks, a refusal). Asked once per client with an empty selection; a
    /// definite answer is kept for the client's lifetime, a transient failure (the
    /// server unreachable) is not, so the next call asks again.
    pub async fn remote_read_offered(&self) -> Result<Result<(), String>, PromError> {
        self.remote_read_probe
            .get_or_try_init(|| async {
                if let Some(why) = self.backend.lacks_remote_read() {
                    return Ok(Err(format!("{why} (prometheus_backend)")));
                }
                // A metric name no server has: the answer is empty, whatever the TSDB holds.
                let nothing = [Matcher::new(
                    MatchKind::Eq,
                    "__name__",
                    "rightsizer_remote_read_probe",
                )];
                match self.remote_read(0, 1, &nothing, Vec::new).await {
                    Ok(_) => Ok(Ok(())),
                    Err(e) if e.is_transient() => Err(e),
                    Err(e) => Ok(Err(e.to_string())),
                }
            })
            .await
            .cloned()
    }

    async fn read_once<S: SeriesSink>(
        &self,
        body: bytes::Bytes,
        end_ms: i64,
        sink: S,
    ) -> Result<(S, ReadStats), PromError> {
        let _permit = match &self.in_flight {
            Some(limit) => Some(limit.acquire().await.expect("the limit is never closed")),
            None => None,
        };
        let url = format!("{}/api/v1/read", self.shown);
        let http_err = |e: reqwest::Error| http_error(&url, &e);
        let decode_err = |message: String| PromError::Decode {
            url: url.clone(),
            message,
        };
        let mut req = self
            .signed("/api/v1/read", "application/x-protobuf", body)
            .await?
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0");
        req = self.with_auth(req);
        let mut resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let content_type = content_type(&resp);
        if !(200..300).contains(&status) {
            // Only the start of an error page is shown; never read a huge one whole.
            let body = read_capped(&mut resp, 64 << 10).await.unwrap_or_default();
            return Err(PromError::Status {
                url,
                status,
                snippet: snippet(&body),
            });
        }
        if !content_type.starts_with("application/x-streamed-protobuf") {
            return Err(decode_err(format!(
                "expected application/x-streamed-protobuf (streamed XOR chunks), got {content_type:?}"
            )));
        }
        let mut framer = Framer::default();
        let mut assembler = Assembler {
            current: None,
            sink,
            stats: ReadStats::default(),
            end_ms,
        };
        while let Some(piece) = resp.chunk().await.map_err(http_err)? {
            assembler.stats.bytes += piece.len() as u64;
            framer.buf.extend_from_slice(&piece);
            while let Some(message) = framer.next().map_err(|e| decode_err(frame_error(e)))? {
                assembler.frame(message).map_err(decode_err)?;
            }
        }
        if !framer.buf.is_empty() {
            return Err(decode_err(format!(
                "answer ends inside a frame ({} bytes left over): cut short",
                framer.buf.len()
            )));
        }
        assembler.flush();
        Ok((assembler.sink, assembler.stats))
    }
}

/// How many samples a series whose first chunk is `chunk` will have up to `end_ms`, at that
/// chunk's pace: its samples are then decoded into one allocation instead of one doubled
/// 6 times over a 4-day span (each doubling a copy of all of them). At most 2^18 samples
/// (4 MiB), whatever a chunk says; a single-sample chunk says nothing more than itself.
fn expected_samples(chunk: &pb::Chunk, end_ms: i64) -> usize {
    let declared = match chunk.data.get(..2) {
        Some(h) => usize::from(u16::from_be_bytes([h[0], h[1]])),
        None => return 0,
    };
    let spanned = chunk.max_time_ms.saturating_sub(chunk.min_time_ms);
    if declared < 2 || spanned <= 0 {
        return declared;
    }
    let interval = (spanned / (declared as i64 - 1)).max(1);
    let ahead = (end_ms.saturating_sub(chunk.min_time_ms).max(0) / interval).saturating_add(1);
    (ahead as usize).clamp(declared, 1 << 18)
}

fn frame_error(e: FrameError) -> String {
    match e {
        FrameError::TooLong(n) => {
            format!("a frame declares {n} bytes, over the {MAX_FRAME_BYTES}-byte limit per frame")
        }
        FrameError::Crc { expected, got } => {
            format!("frame checksum mismatch (CRC-32C {got:#010x}, frame says {expected:#010x})")
        }
        FrameError::Varint => "frame length is not a valid varint".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = message.len() as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(message);
        out.extend(crc.to_be_bytes());
        out.extend(message);
        out
    }

    #[test]
    fn frames_come_out_whole_whatever_the_pieces() {
        let a = vec![7u8; 300];
        let b = vec![9u8; 5];
        let stream = [frame(&a), frame(&b)].concat();
        for piece in [1, 3, 64, stream.len()] {
            let mut f = Framer::default();
            let mut got = vec![];
            for p in stream.chunks(piece) {
                f.buf.extend_from_slice(p);
                while let Some(m) = f.next().unwrap() {
                    got.push(m.to_vec());
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "pieces of {piece}");
            assert!(f.buf.is_empty());
        }
    }

    #[test]
    fn a_bad_checksum_or_length_is_refused() {
        let mut bad = frame(b"hello");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut f = Framer::default();
        f.buf.extend_from_slice(&bad);
        assert!(matches!(f.next(), Err(FrameError::Crc { .. })));

        let mut f = Framer::default();
        f.buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(f.next(), Err(FrameError::TooLong(0x7_ffff_ffff)));
    }

    #[test]
    fn pieces_of_one_series_are_merged() {
        let chunk = |t: i64| pb::Chunk {
            min_time_ms: t,
            max_time_ms: t,
            r#type: pb::XOR,
            // One sample at t = 0 with value 0: count 1, varint 0, 64 zero bits.
            data: [vec![0, 1, 0], vec![0; 8]].concat().into(),
        };
        let frame_of = |name: &str| pb::ChunkedReadResponse {
            chunked_series: vec![pb::ChunkedSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                chunks: vec![chunk(0)],
            }],
            query_index: 0,
        };
        let mut asm = Assembler {
            current: None,
            sink: Vec::new(),
            stats: ReadStats::default(),
            end_ms: 0,
        };
        for name in ["m", "m", "n"] {
            asm.frame(frame_of(name).encode_to_vec().into()).unwrap();
        }
        asm.flush();
        assert_eq!(asm.stats.series, 2);
        let seen: Vec<(String, usize)> = asm
            .sink
            .iter()
            .map(|s| (s.labels["__name__"].clone(), s.samples.len()))
            .collect();
        assert_eq!(seen, vec![("m".into(), 2), ("n".into(), 1)]);
    }

    #[test]
    fn a_series_is_sized_by_its_first_chunks_pace() {
        let chunk = |count: u16, min: i64, max: i64| pb::Chunk {
            min_time_ms: min,
            max_time_ms: max,
            r#type: pb::XOR,
            data: count.to_be_bytes().to_vec().into(),
        };
        let minute = 60_000;
        // 120 samples a minute apart, then four days to the end: one per minute.
        assert_eq!(
            expected_samples(&chunk(120, 0, 119 * minute), 96 * 60 * minute),
            5761
        );
        // A range that ends inside the chunk, a lone sample, no header: the chunk alone.
        assert_eq!(expected_samples(&chunk(120, 0, 119 * minute), minute), 120);
        assert_eq!(expected_samples(&chunk(1, 5, 5), 96 * 60 * minute), 1);
        assert_eq!(
            expected_samples(
                &pb::Chunk {
                    data: bytes::Bytes::new(),
                    ..chunk(0, 0, 0)
                },
                1
            ),
            0
        );
        // Samples a millisecond apart over years are capped.
        assert_eq!(expected_samples(&chunk(2, 0, 1), i64::MAX), 1 << 18);
    }

    #[test]
    fn an_unknown_chunk_encoding_is_named() {
        let frame = pb::ChunkedReadResponse {
            chunked_series: vec![pb::ChunkedSeries {
                labels: vec![],
                chunks: vec![pb::Chunk {
                    min_time_ms: 0,
                    max_time_ms: 0,
                    r#type: 2,
                    data: bytes::Bytes::new(),
                }],
            }],
            query_index: 0,
        };
        let mut asm = Assembler {
            current: None,
            sink: Vec::new(),
            stats: ReadStats::default(),
            end_ms: 0,
        };
        let err = asm.frame(frame.encode_to_vec().into()).unwrap_err();
        assert!(err.contains("encoding 2"), "{err}");
    }
}
