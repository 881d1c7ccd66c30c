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
