//! One walk over an answer's body: the envelope, the result type and every sample are
//! read in a single pass, each sample straight into `(seconds, value)`.
//!
//! A range answer for a fleet is tens of megabytes of `[1700000000,"0.25"]` pairs, and the
//! collector decodes one while Prometheus works on the next query on the same two cores:
//! decoding it once, without an intermediate copy of the text, is most of the collector's
//! own CPU.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{parse_sample_value, InstantSample, Labels, RangeSeries};

/// What a query answer's `result` holds: series of one kind, named by `resultType`.
pub(super) trait ResultKind: Sized {
    /// The `resultType` this kind is.
    const RESULT_TYPE: &'static str;
    /// One element of `result`, decoded.
    type Series;
    /// Decodes one element of `result`, adding non-finite samples to `skipped`; `samples`
    /// is how many samples a series is expected to hold at most.
    fn element<'de, D: Deserializer<'de>>(
        d: D,
        skipped: &mut u64,
        samples: usize,
    ) -> Result<Option<Self::Series>, D::Error>;
}

/// `resultType: matrix`.
pub(super) struct Matrix;
/// `resultType: vector`.
pub(super) struct Vector;

/// The envelope of every API answer, `data` decoded as `T`.
pub(super) struct Envelope<T> {
    pub status: String,
    pub data: Option<T>,
    pub error_type: Option<String>,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// Decodes an [`Envelope`] whose `data` the seed `S` decodes.
pub(super) struct EnvelopeSeed<S>(pub S);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum EnvelopeField {
    #[serde(rename = "status")]
    Status,
    #[serde(rename = "data")]
    Data,
    #[serde(rename = "errorType")]
    ErrorType,
    #[serde(rename = "error")]
    Error,
    #[serde(rename = "warnings")]
    Warnings,
    #[serde(other)]
    Other,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for EnvelopeSeed<S> {
    type Value = Envelope<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for EnvelopeSeed<S> {
    type Value = Envelope<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API envelope")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seed = Some(self.0);
        let mut status = None;
        let mut out = Envelope {
            status: String::new(),
            data: None,
            error_type: None,
            error: None,
            warnings: Vec::new(),
        };
        while let Some(key) = map.next_key::<EnvelopeField>()? {
            match key {
                EnvelopeField::Status => status = Some(map.next_value()?),
                EnvelopeField::Data => {
                    let seed = seed
                        .take()
                        .ok_or_else(|| de::Error::duplicate_field("data"))?;
                    out.data = map.next_value_seed(Nullable(seed))?;
                }
                EnvelopeField::ErrorType => out.error_type = map.next_value()?,
                EnvelopeField::Error => out.error = map.next_value()?,
                EnvelopeField::Warnings => {
                    out.warnings = map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
                }
                EnvelopeField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        out.status = status.ok_or_else(|| de::Error::missing_field("status"))?;
        Ok(out)
    }
}

/// `null` or what the seed decodes.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("data or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// `data` of a query answer.
pub(super) struct Data<K: ResultKind> {
    /// The `resultType` Prometheus gave.
    pub result_type: String,
    /// The series, when `resultType` was `K`'s (empty otherwise).
    pub series: Vec<K::Series>,
    /// Samples whose value was NaN or ±Inf, skipped.
    pub skipped: u64,
}

/// Decodes the `data` of a query answer of kind `K`. `samples` is the most samples a
/// series can hold (the range's evaluation points): each series' samples are allocated
/// once at that size, not grown by doubling, which left the freed smaller copies
/// fragmenting the heap.
pub(super) struct DataSeed<K> {
    pub samples: usize,
    pub kind: PhantomData<K>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum DataField {
    #[serde(rename = "resultType")]
    ResultType,
    #[serde(rename = "result")]
    Result,
    #[serde(other)]
    Other,
}

impl<'de, K: ResultKind> DeserializeSeed<'de> for DataSeed<K> {
    type Value = Data<K>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, K: ResultKind> Visitor<'de> for DataSeed<K> {
    type Value = Data<K>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("query data with resultType and result")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut result_type: Option<String> = None;
        let mut series = None;
        let mut skipped = 0;
        while let Some(key) = map.next_key::<DataField>()? {
            match key {
                // A member twice is refused, not the last one taken: a range answer's
                // series are decoded as they arrive (`MatrixStream`), before any later
                // member is seen.
                DataField::ResultType if result_type.is_some() => {
                    return Err(de::Error::duplicate_field("resultType"))
                }
                DataField::Result if series.is_some() => {
                    return Err(de::Error::duplicate_field("result"))
                }
                DataField::ResultType => result_type = Some(map.next_value()?),
                // Prometheus writes resultType first. Another type's result is skipped (and
                // reported by its name); a result before its type is read as `K`'s.
                DataField::Result if result_type.as_deref().is_none_or(|t| t == K::RESULT_TYPE) => {
                    series = Some(map.next_value_seed(ResultSeed::<K> {
                        skipped: &mut skipped,
                        samples: self.samples,
                        kind: PhantomData,
                    })?);
                }
                DataField::Result => {
                    map.next_value::<IgnoredAny>()?;
                    series = Some(Vec::new());
                }
                DataField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Data {
            result_type: result_type.ok_or_else(|| de::Error::missing_field("resultType"))?,
            series: series.ok_or_else(|| de::Error::missing_field("result"))?,
            skipped,
        })
    }
}

struct ResultSeed<'s, K> {
    skipped: &'s mut u64,
    samples: usize,
    kind: PhantomData<K>,
}

impl<'de, K: ResultKind> DeserializeSeed<'de> for ResultSeed<'_, K> {
    type Value = Vec<K::Series>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, K: ResultKind> Visitor<'de> for ResultSeed<'_, K> {
    type Value = Vec<K::Series>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {} series", K::RESULT_TYPE)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(element) = seq.next_element_seed(ElementSeed::<K> {
            skipped: &mut *self.skipped,
            samples: self.samples,
            kind: PhantomData,
        })? {
            out.extend(element);
        }
        Ok(out)
    }
}

struct ElementSeed<'s, K> {
    skipped: &'s mut u64,
    samples: usize,
    kind: PhantomData<K>,
}

impl<'de, K: ResultKind> DeserializeSeed<'de> for ElementSeed<'_, K> {
    type Value = Option<K::Series>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        K::element(d, self.skipped, self.samples)
    }
}

/// A `[seconds, "value"]` pair; `None` for NaN and ±Inf.
fn sample<E: de::Error>(t: f64, v: &str) -> Result<Option<(i64, f64)>, E> {
    Ok(parse_sample_value(v)
        .map_err(E::custom)?
        .map(|v| (t.round() as i64, v)))
}

impl ResultKind for Matrix {
    const RESULT_TYPE: &'static str = "matrix";
    type Series = RangeSeries;
    fn element<'de, D: Deserializer<'de>>(
        d: D,
        skipped: &mut u64,
        samples: usize,
    ) -> Result<Option<RangeSeries>, D::Error> {
        struct V<'s>(&'s mut u64, usize);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = RangeSeries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a range series with metric and values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RangeSeries, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier, rename_all = "lowercase")]
                enum Field {
                    Metric,
                    Values,
                    #[serde(other)]
                    Other,
                }
                let mut labels = None;
                let mut samples = Vec::new();
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Metric => labels = Some(map.next_value::<Labels>()?),
                        Field::Values => {
                            samples = map.next_value_seed(Values(&mut *self.0, self.1))?
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RangeSeries {
                    labels: labels.ok_or_else(|| de::Error::missing_field("metric"))?,
                    samples,
                })
            }
        }
        d.deserialize_map(V(skipped, samples)).map(Some)
    }
}

/// The `values` of a range series, finite samples only, allocated for the expected count.
struct Values<'s>(&'s mut u64, usize);

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = Vec<(i64, f64)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = Vec<(i64, f64)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [seconds, \"value\"] pairs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(self.1);
        while let Some((t, v)) = seq.next_element::<(f64, &'de str)>()? {
            match sample(t, v)? {
                Some(s) => out.push(s),
                None => *self.0 += 1,
            }
        }
        // A pod that lived part of the range: give back what it did not fill.
        if out.len() < out.capacity() / 2 {
            out.shrink_to_fit();
        }
        Ok(out)
    }
}

impl ResultKind for Vector {
    const RESULT_TYPE: &'static str = "vector";
    type Series = InstantSample;
    fn element<'de, D: Deserializer<'de>>(
        d: D,
        skipped: &mut u64,
        _samples: usize,
    ) -> Result<Option<InstantSample>, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            metric: Labels,
            #[serde(borrow)]
            value: (f64, &'a str),
        }
        let raw = Raw::deserialize(d)?;
        match sample(raw.value.0, raw.value.1)? {
            Some((time, value)) => Ok(Some(InstantSample {
                labels: raw.metric,
                time,
                value,
            })),
            None => {
                *skipped += 1;
                Ok(None)
            }
        }
    }
}

/// How a range answer begins when Prometheus wrote it: every byte up to the first series.
pub(super) const MATRIX_HEAD: &[u8] =
    br#"{"status":"success","data":{"resultType":"matrix","result":["#;

/// Where one series of a range answer ends and the next begins, as Prometheus writes it.
/// It cannot occur inside a JSON string (its `"` follows `{`, where a string's quote is
/// always escaped), and inside a series only an array of objects could hold it, which a
/// series has not: a piece cut at it that is not a whole series fails to decode, and is
/// never taken for one.
const SERIES_BOUNDARY: &[u8] = br#"},{"metric":"#;

/// A range answer decoded series by series while its body arrives, so that the body is
/// never held whole: at thousands of containers one answer is tens of megabytes, and
/// buffers that size, grown by doubling and freed on another thread, were what kept the
/// collector's RSS far above its live heap. The series list is split where Prometheus
/// writes it (after [`MATRIX_HEAD`]); an answer that begins any other way (an error
/// envelope, another server's member order, whitespace) is kept whole and decoded at the
/// end by the one-pass decoder, as before.
pub(super) struct MatrixStream {
    /// Bytes received and not yet decoded: the head, or the series being received.
    pending: Vec<u8>,
    /// Where in `pending` the series being received begins.
    start: usize,
    /// How far into `pending` has been read.
    scanned: usize,
    phase: Phase,
    samples: usize,
    series: Vec<RangeSeries>,
    skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not yet known whether the answer begins with [`MATRIX_HEAD`].
    Head,
    /// Between series; `after_comma` when one must follow.
    Between { after_comma: bool },
    /// Inside a series, which began at `pending[start]`.
    Series,
    /// Past a series, before `,` or `]`.
    After,
    /// Past the list's `]`: what remains (`}}`, warnings) is kept for the end.
    Tail,
    /// Not split: kept whole.
    Whole,
}

/// What a finished [`MatrixStream`] holds.
pub(super) enum Streamed {
    /// Every series, and the rest of the answer after the list, to be checked as an answer
    /// whose list is empty.
    Split {
        series: Vec<RangeSeries>,
        skipped: u64,
        rest: Vec<u8>,
    },
    /// The whole body, for the one-pass decoder.
    Whole(Vec<u8>),
}

/// Why a split answer could not be decoded: the message the one-pass decoder gives.
pub(super) enum StreamError {
    /// Valid JSON that is not what a range answer holds.
    Data(String),
    /// Not JSON, with the bytes where it broke.
    Syntax(String, Vec<u8>),
}

impl MatrixStream {
    /// `samples` as for [`DataSeed`].
    pub fn new(samples: usize) -> Self {
        MatrixStream {
            pending: Vec::new(),
            start: 0,
            scanned: 0,
            phase: Phase::Head,
            samples,
            series: Vec::new(),
            skipped: 0,
        }
    }

    /// The series decoded so far, taken out of the stream (a caller that folds them as
    /// they come does not hold them).
    pub fn take_series(&mut self) -> Vec<RangeSeries> {
        std::mem::take(&mut self.series)
    }

    /// Takes the next bytes of the body, decoding every series they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.pending.extend_from_slice(bytes);
        if self.phase == Phase::Head {
            let n = self.pending.len().min(MATRIX_HEAD.len());
            if self.pending[..n] != MATRIX_HEAD[..n] {
                self.phase = Phase::Whole;
            } else if n == MATRIX_HEAD.len() {
                self.pending.drain(..n);
                self.phase = Phase::Between { after_comma: false };
            }
        }
        if matches!(self.phase, Phase::Head | Phase::Whole | Phase::Tail) {
            return Ok(());
        }
        self.advance(false)
    }

    /// Decodes the series `pending` completes from `scanned` on. While the body arrives
    /// a series ends where [`SERIES_BOUNDARY`] begins (found by `memmem`, not byte by
    /// byte: a 5,000-container backfill reads 1.4 GB of range answers); at the end of the
    /// body the rest (the last series, or every series of a layout without the boundary)
    /// is scanned bracket by bracket.
    fn advance(&mut self, at_end: bool) -> Result<(), StreamError> {
        // Positions are into `pending`, which is cut once, at the end: a range answer of
        // hourly state holds thousands of series of a few hundred bytes in each piece.
        let mut at = self.scanned;
        while at < self.pending.len() {
            match self.phase {
                Phase::Between { after_comma } => match self.pending[at] {
                    b' ' | b'\t' | b'\n' | b'\r' => at += 1,
                    b'{' => {
                        self.start = at;
                        self.phase = Phase::Series;
                    }
                    b']' if !after_comma => {
                        self.phase = Phase::Tail;
                        at += 1;
                        break;
                    }
                    _ => return Err(self.syntax(at, "expected a series or the end of the list")),
                },
                Phase::Series => {
                    let end = if at_end {
                        self.scan(at)
                    } else {
                        memchr::memmem::find(&self.pending[at..], SERIES_BOUNDARY)
                            .map(|i| at + i + 1)
                    };
                    match end {
                        Some(end) => {
                            self.decode_series(self.start, end)?;
                            at = end;
                            self.phase = Phase::After;
                        }
                        // The boundary may begin in these bytes and end in the next.
                        None if at_end => at = self.pending.len(),
                        None => {
                            at = (self.pending.len() + 1)
                                .saturating_sub(SERIES_BOUNDARY.len())
                                .max(at);
                            break;
                        }
                    }
                }
                Phase::After => match self.pending[at] {
                    b' ' | b'\t' | b'\n' | b'\r' => at += 1,
                    b',' => {
                        at += 1;
                        self.phase = Phase::Between { after_comma: true };
                    }
                    b']' => {
                        at += 1;
                        self.phase = Phase::Tail;
                        break;
                    }
                    _ => return Err(self.syntax(at, "expected ',' or ']' after a series")),
                },
                Phase::Head | Phase::Tail | Phase::Whole => unreachable!("not called then"),
            }
        }
        // Keep the series being received (from its `{`) or nothing before `at`.
        let keep = if self.phase == Phase::Series {
            self.start
        } else {
            at
        };
        self.pending.drain(..keep);
        self.start -= keep.min(self.start);
        self.scanned = at - keep;
        Ok(())
    }

    /// The end of the series whose `{` is at `pending[from]`, found bracket by bracket.
    fn scan(&self, from: usize) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        for (i, &b) in self.pending.iter().enumerate().skip(from) {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn decode_series(&mut self, start: usize, end: usize) -> Result<(), StreamError> {
        let json = &self.pending[start..end];
        let mut de = serde_json::Deserializer::from_slice(json);
        let series = Matrix::element(&mut de, &mut self.skipped, self.samples)
            .and_then(|s| de.end().map(|()| s))
            .map_err(|e| {
                if e.is_data() {
                    StreamError::Data(e.to_string())
                } else {
                    StreamError::Syntax(e.to_string(), json[..json.len().min(200)].to_vec())
                }
            })?;
        self.series.extend(series);
        Ok(())
    }

    fn syntax(&self, at: usize, what: &str) -> StreamError {
        let near = &self.pending[at..self.pending.len().min(at + 200)];
        StreamError::Syntax(what.to_string(), near.to_vec())
    }

    /// The answer once the body has ended.
    pub fn finish(mut self) -> Result<Streamed, StreamError> {
        if !matches!(self.phase, Phase::Head | Phase::Whole | Phase::Tail) {
            if self.phase == Phase::Series {
                self.scanned = self.start;
            }
            self.advance(true)?;
        }
        match self.phase {
            Phase::Tail => Ok(Streamed::Split {
                series: self.series,
                skipped: self.skipped,
                rest: self.pending,
            }),
            Phase::Head | Phase::Whole => Ok(Streamed::Whole(self.pending)),
            Phase::Between { .. } | Phase::Series | Phase::After => Err(StreamError::Syntax(
                "the answer ends inside its list of series".into(),
                self.pending[..self.pending.len().min(200)].to_vec(),
            )),
        }
    }
}
