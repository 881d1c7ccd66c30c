//! The mergeable usage summary: count, sum, max and a log-bucketed histogram.
//!
//! Buckets grow geometrically by `GAMMA = (1 + α) / (1 − α)` with α = 1%, so any
//! quantile read back is within 1% of the true order statistic (the DDSketch
//! bound), whatever the scale of the values. Two summaries merge by adding
//! bucket counts, which is why hourly rows can be combined into any window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy of quantiles.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Values at or below this are counted as zero: CPU below a nano-core is idle.
const MIN_POSITIVE: f64 = 1e-9;

fn gamma_ln() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// A mergeable summary of non-negative samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    count: u64,
    sum: f64,
    max: f64,
    zero_count: u64,
    /// Non-empty buckets, by index. A sorted vector rather than a map: an hour's samples
    /// fall in a few dozen buckets, where a binary search and a short shift beat a tree,
    /// and every sample of a backfill goes through [`Sketch::insert`].
    #[serde(with = "bins_as_map")]
    bins: Vec<(i32, u64)>,
}

/// The buckets keep the form they had as a map.
mod bins_as_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bins: &[(i32, u64)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(bins.iter().map(|(i, n)| (i, n)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(i32, u64)>, D::Error> {
        let map = BTreeMap::<i32, u64>::deserialize(d)?;
        Ok(map.into_iter().filter(|&(_, n)| n > 0).collect())
    }
}

/// Why a sample was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// NaN or ±Inf.
    NotFinite,
    /// Usage can't be negative; a negative sample means a broken series.
    Negative,
}

/// Error decoding a stored sketch.
#[derive(Debug, thiserror::Error)]
#[error("corrupt usage sketch: {0}")]
pub struct DecodeError(String);

#[derive(Serialize, Deserialize)]
struct Wire {
    count: u64,
    sum: f64,
    max: f64,
    zero_count: u64,
    first_index: i32,
    // Runs of bucket counts from `first_index`; zeros inside the run mark empty buckets.
    // Usage in one hour is clustered, so a dense run is smaller than (index, count) pairs.
    counts: Vec<u64>,
}

impl Sketch {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; NaN, ±Inf and negative values are refused and leave the sketch unchanged.
    pub fn insert(&mut self, value: f64) -> Result<(), Rejected> {
        if !value.is_finite() {
            return Err(Rejected::NotFinite);
        }
        if value < 0.0 {
            return Err(Rejected::Negative);
        }
        self.count += 1;
        self.sum += value;
        if value > self.max {
            self.max = value;
        }
        if value <= MIN_POSITIVE {
            self.zero_count += 1;
        } else {
            self.add_to_bin(bucket_index(value), 1);
        }
        Ok(())
    }

    /// Adds every sample of `other` to this summary.
    pub fn merge(&mut self, other: &Sketch) {
        self.count += other.count;
        self.sum += other.sum;
        if other.max > self.max {
            self.max = other.max;
        }
        self.zero_count += other.zero_count;
        if other.bins.len() <= 4 {
            for &(index, n) in &other.bins {
                self.add_to_bin(index, n);
            }
            return;
        }
        // Both sorted: one pass.
        let mut merged = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (self.bins.iter().peekable(), other.bins.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(i, n)), Some(&&(j, m))) if i == j => {
                    a.next();
                    b.next();
                    (i, n + m)
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (_, Some(&&y)) => {
                    b.next();
                    y
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.bins = merged;
    }

    fn add_to_bin(&mut self, index: i32, n: u64) {
        match self.bins.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.bins[at].1 += n,
            Err(at) => self.bins.insert(at, (index, n)),
        }
    }

    /// Gives back the room the buckets grew into but do not use: a finished hour is kept
    /// until written, and its buckets grew by doubling.
    pub fn shrink_to_fit(&mut self) {
        self.bins.shrink_to_fit();
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of samples.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Largest sample (exact), 0 when empty.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Mean of samples, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) by nearest rank, within 1% of the exact order statistic.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // Nearest rank: the ceil(q·n)-th smallest sample (1-based).
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank <= self.zero_count {
            return Some(0.0);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = self.zero_count;
        for &(index, n) in &self.bins {
            seen += n;
            if seen >= rank {
                // The exact max is better than a bucket midpoint at the top.
                return Some(bucket_value(index).min(self.max));
            }
        }
        Some(self.max)
    }

    /// Samples above `threshold` (bucket resolution: within 1% of `threshold`), for backtests.
    pub fn count_above(&self, threshold: f64) -> u64 {
        if self.count == 0 || threshold >= self.max {
            return 0;
        }
        if threshold < MIN_POSITIVE {
            return self.count - self.zero_count;
        }
        let from = bucket_index(threshold);
        // The threshold's own bucket straddles it; count it as below (favours the threshold).
        let above = self.bins.partition_point(|&(i, _)| i <= from);
        self.bins[above..].iter().map(|(_, n)| n).sum()
    }

    /// The `q`-quantile of several summaries, each weighted (e.g. by the age of its hour).
    /// Weights must be finite and non-negative; `None` when the total weight is zero.
    pub fn weighted_quantile(parts: &[(f64, &Sketch)], q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let mut zero = 0.0;
        let mut max = 0.0f64;
        let mut bins: BTreeMap<i32, f64> = BTreeMap::new();
        for (w, s) in parts.iter().filter(|(w, s)| *w > 0.0 && s.count > 0) {
            zero += w * s.zero_count as f64;
            max = max.max(s.max);
            for &(i, n) in &s.bins {
                *bins.entry(i).or_insert(0.0) += w * n as f64;
            }
        }
        let total = zero + bins.values().sum::<f64>();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        if rank <= zero {
            return Some(0.0);
        }
        let mut seen = zero;
        for (&index, &n) in &bins {
            seen += n;
            if seen >= rank * (1.0 - 1e-12) {
                return Some(bucket_value(index).min(max));
            }
        }
        Some(max)
    }

    /// Samples counted as zero (at or below a nano-unit).
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Non-empty buckets as (index, count), lowest first; see [`Sketch::bucket_value`].
    pub fn bins(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.bins.iter().copied()
    }

    /// The lowest and highest non-empty bucket, if any.
    pub fn bin_range(&self) -> Option<(i32, i32)> {
        Some((self.bins.first()?.0, self.bins.last()?.0))
    }

    /// The bucket a positive value falls in.
    pub fn bucket_of(value: f64) -> Option<i32> {
        (value > MIN_POSITIVE && value.is_finite()).then(|| bucket_index(value))
    }

    /// The value a quantile landing in bucket `index` reports (within α of every sample in it).
    pub fn bucket_value(index: i32) -> f64 {
        bucket_value(index)
    }

    /// Buckets as (lower bound, upper bound, count), zero bucket first; for charts.
    pub fn buckets(&self) -> Vec<(f64, f64, u64)> {
        let g = gamma_ln().exp();
        let mut out = Vec::with_capacity(self.bins.len() + 1);
        if self.zero_count > 0 {
            out.push((0.0, 0.0, self.zero_count));
        }
        for &(index, n) in &self.bins {
            let upper = g.powi(index);
            out.push((upper / g, upper, n));
        }
        out
    }

    /// Compact binary form for the database.
    pub fn to_bytes(&self) -> Vec<u8> {
        let first_index = self.bins.first().map_or(0, |b| b.0);
        let last_index = self.bins.last().map_or(-1, |b| b.0);
        let width = (i64::from(last_index) - i64::from(first_index) + 1).max(0) as usize;
        let mut counts = vec![0u64; width];
        for &(index, n) in &self.bins {
            counts[(index - first_index) as usize] = n;
        }
        let wire = Wire {
            count: self.count,
            sum: self.sum,
            max: self.max,
            zero_count: self.zero_count,
            first_index,
            counts,
        };
        postcard::to_allocvec(&wire).expect("serializing to a Vec cannot fail")
    }

    /// Inverse of [`Sketch::to_bytes`]; checks the counts add up.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire = postcard::from_bytes(bytes).map_err(|e| DecodeError(e.to_string()))?;
        let mut bins = Vec::new();
        let mut total = wire.zero_count;
        for (offset, &n) in wire.counts.iter().enumerate() {
            if n > 0 {
                let index = i32::try_from(i64::from(wire.first_index) + offset as i64)
                    .map_err(|_| DecodeError("bucket index out of range".into()))?;
                bins.push((index, n));
                total = total
                    .checked_add(n)
                    .ok_or_else(|| DecodeError("bucket counts overflow".into()))?;
            }
        }
        if total != wire.count || !wire.sum.is_finite() || !wire.max.is_finite() {
            return Err(DecodeError(format!(
                "bucket counts add up to {total}, header says {}",
                wire.count
            )));
        }
        Ok(Sketch {
            count: wire.count,
            sum: wire.sum,
            max: wire.max,
            zero_count: wire.zero_count,
            bins,
        })
    }
}

fn bucket_index(value: f64) -> i32 {
    (value.ln() / gamma_ln()).ceil() as i32
}

/// The value reported for a bucket: the point whose relative distance to both
/// bounds is equal, which is what bounds the error by α.
fn bucket_value(index: i32) -> f64 {
    let g = gamma_ln().exp();
    2.0 * g.powi(index) / (g + 1.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_that_overflow_are_a_decode_error() {
        // Found by the packed_day fuzz target: two buckets of u64::MAX / 2 + 1.
        let wire = Wire {
            count: 0,
            sum: 1.0,
            max: 1.0,
            zero_count: 0,
            first_index: 0,
            counts: vec![u64::MAX / 2 + 1, u64::MAX / 2 + 1],
        };
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let err = Sketch::from_bytes(&bytes).unwrap_err();
        assert!(err.0.contains("overflow"), "{}", err.0);
    }

    use super::*;
    use proptest::prelude::*;

    /// The exact order statistic at the nearest rank, from statrs.
    fn exact_nearest_rank(values: &[f64], q: f64) -> f64 {
        use statrs::statistics::{Data, OrderStatistics};
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        Data::new(values.to_vec()).order_statistic(rank)
    }

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        for &v in values {
            s.insert(v).unwrap();
        }
        s
    }

    #[test]
    fn serde_keeps_buckets_as_a_map_and_round_trips() {
        let s = sketch_of(&[0.0, 1.0, 1.0, 3.0]);
        let json = serde_json::to_value(&s).unwrap();
        let (one, three) = (bucket_index(1.0).to_string(), bucket_index(3.0).to_string());
        assert_eq!(json["bins"][&one], 2, "{json}");
        assert_eq!(json["bins"][&three], 1, "{json}");
        assert_eq!(serde_json::from_value::<Sketch>(json).unwrap(), s);
    }

    #[test]
    fn refuses_nan_inf_and_negative() {
        let mut s = Sketch::new();
        assert_eq!(s.insert(f64::NAN), Err(Rejected::NotFinite));
        assert_eq!(s.insert(f64::INFINITY), Err(Rejected::NotFinite));
        assert_eq!(s.insert(f64::NEG_INFINITY), Err(Rejected::NotFinite));
        assert_eq!(s.insert(-0.5), Err(Rejected::Negative));
        assert_eq!(s, Sketch::new());
        assert_eq!(s.quantile(0.5), None);
    }

    #[test]
    fn zeros_and_max_are_exact() {
        let s = sketch_of(&[0.0, 0.0, 0.0, 0.25, 3.0]);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(3.0));
        assert_eq!(s.max(), 3.0);
        assert_eq!(s.count(), 5);
    }

    #[test]
    fn counts_above_a_threshold() {
        let s = sketch_of(&[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
        assert_eq!(s.count_above(0.25), 3);
        assert_eq!(s.count_above(0.0), 5);
        assert_eq!(s.count_above(0.5), 0);
        assert_eq!(Sketch::new().count_above(1.0), 0);
    }

    #[test]
    fn weighted_quantile_with_equal_weights_is_the_merged_quantile() {
        let a = sketch_of(&[0.1, 0.2, 0.3]);
        let b = sketch_of(&[1.0, 2.0, 3.0, 4.0]);
        let mut merged = a.clone();
        merged.merge(&b);
        for q in [0.1, 0.5, 0.9, 0.95] {
            assert_eq!(
                Sketch::weighted_quantile(&[(1.0, &a), (1.0, &b)], q),
                merged.quantile(q),
                "q={q}"
            );
        }
        // Weighting the second hour down pulls the median to the first one.
        let m = Sketch::weighted_quantile(&[(1.0, &a), (0.01, &b)], 0.5).unwrap();
        assert!((m - 0.2).abs() < 0.01, "{m}");
        assert_eq!(Sketch::weighted_quantile(&[(0.0, &a)], 0.5), None);
    }

    #[test]
    fn round_trips_through_bytes() {
        let s = sketch_of(&[0.0, 0.001, 0.002, 0.5, 1.7, 1.71, 2e9]);
        let back = Sketch::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert!(Sketch::from_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn an_hour_of_cpu_is_small() {
        // 3 pods × 60 steps of CPU between 0.2 and 0.4 cores.
        let values: Vec<f64> = (0..180).map(|i| 0.2 + 0.2 * (i as f64 / 180.0)).collect();
        let bytes = sketch_of(&values).to_bytes().len();
        assert!(bytes < 120, "{bytes} bytes");
    }

    proptest! {
        #[test]
        fn quantiles_within_one_percent(
            values in prop::collection::vec(0.0f64..1e10, 1..2000),
            q in 0.0f64..=1.0,
        ) {
            let exact = exact_nearest_rank(&values, q);
            let got = sketch_of(&values).quantile(q).unwrap();
            if exact <= MIN_POSITIVE {
                prop_assert_eq!(got, 0.0);
            } else {
                prop_assert!((got - exact).abs() <= RELATIVE_ACCURACY * exact * (1.0 + 1e-9),
                    "q={} exact={} got={}", q, exact, got);
            }
        }

        #[test]
        fn merging_is_associative_and_equals_the_union(
            a in prop::collection::vec(0.0f64..100.0, 0..300),
            b in prop::collection::vec(0.0f64..100.0, 0..300),
            c in prop::collection::vec(0.0f64..100.0, 0..300),
        ) {
            let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
            let mut left = sa.clone();
            left.merge(&sb);
            left.merge(&sc);
            let mut bc = sb.clone();
            bc.merge(&sc);
            let mut right = sa.clone();
            right.merge(&bc);
            let union: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
            let whole = sketch_of(&union);
            prop_assert_eq!(left.count(), whole.count());
            prop_assert_eq!(&left.bins, &whole.bins);
            prop_assert_eq!(&right.bins, &whole.bins);
            prop_assert_eq!(left.max(), whole.max());
            prop_assert!((left.sum() - whole.sum()).abs() <= 1e-9 * whole.sum().max(1.0));
            for q in [0.5, 0.9, 0.95, 0.99] {
                prop_assert_eq!(left.quantile(q), whole.quantile(q));
                prop_assert_eq!(right.quantile(q), whole.quantile(q));
            }
        }

        #[test]
        fn bad_samples_never_reach_the_sketch(
            good in prop::collection::vec(0.0f64..10.0, 0..100),
            bad in prop::collection::vec(prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), -1e6f64..-1e-12], 0..50),
        ) {
            let mut s = Sketch::new();
            for v in good.iter().chain(&bad) {
                let _ = s.insert(*v);
            }
            prop_assert_eq!(s, sketch_of(&good));
        }
    }
}
