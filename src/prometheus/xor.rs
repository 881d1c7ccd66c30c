//! Decoder for Prometheus' XOR chunk encoding (`tsdb/chunkenc/xor.go`, the Gorilla
//! scheme): what remote read's `STREAMED_XOR_CHUNKS` answers carry.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream. The first sample is a
//! signed varint timestamp and the raw 64 value bits; the second a uvarint timestamp
//! delta and an XOR-coded value; every later one a delta-of-delta timestamp in one of
//! five bucket widths and an XOR-coded value.

/// The value Prometheus writes when a series goes stale (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Why a chunk could not be decoded. Every variant means "the chunk is corrupt":
/// a well-formed chunk never ends before its declared sample count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XorError {
    /// Fewer than the 2 header bytes.
    #[error("XOR chunk of {0} bytes has no sample-count header")]
    NoHeader(usize),
    /// The bit stream ended before the declared number of samples.
    #[error("XOR chunk ends after {read} of {declared} samples")]
    Truncated {
        /// Samples decoded before the end.
        read: usize,
        /// Samples the header declares.
        declared: usize,
    },
    /// A varint longer than 64 bits.
    #[error("XOR chunk has an overlong varint at sample {0}")]
    Varint(usize),
}

struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize, // in bits
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!(n <= 64);
        if self.pos + n as usize > self.bytes.len() * 8 {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        // This runs for every sample of a remote-read answer: away from the end of the
        // chunk, nine bytes hold any 64 bits at any bit offset, read as one number.
        let (byte, offset) = (self.pos / 8, (self.pos % 8) as u32);
        if let Some(window) = self.bytes.get(byte..byte + 9) {
            let head = u64::from_be_bytes(window[..8].try_into().expect("eight bytes"));
            let x = (u128::from(head) << 8) | u128::from(window[8]);
            // The wanted bits to the top of 128, then down to the bottom.
            self.pos += n as usize;
            return Some(((x << (56 + offset)) >> (128 - n)) as u64);
        }
        let mut v = 0u64;
        let mut need = n;
        while need > 0 {
            let byte = u64::from(self.bytes[self.pos / 8]);
            let avail = 8 - (self.pos % 8) as u32;
            let take = avail.min(need);
            let part = (byte >> (avail - take)) & ((1 << take) - 1);
            v = (v << take) | part;
            self.pos += take as usize;
            need -= take;
        }
        Some(v)
    }

    /// Zero bits from here on, counted within the next eight bytes (0 near the end, where
    /// the caller decodes bit by bit).
    fn zeros_ahead(&self) -> u32 {
        let (byte, offset) = (self.pos / 8, (self.pos % 8) as u32);
        match self.bytes.get(byte..byte + 8) {
            Some(window) => {
                let word = u64::from_be_bytes(window.try_into().expect("eight bytes"));
                (word << offset).leading_zeros().min(64 - offset)
            }
            None => 0,
        }
    }

    fn uvarint(&mut self) -> Option<Result<u64, ()>> {
        let mut x = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.bits(8)?;
            if shift == 63 && b > 1 {
                return Some(Err(()));
            }
            x |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(Ok(x));
            }
        }
        Some(Err(()))
    }

    fn varint(&mut self) -> Option<Result<i64, ()>> {
        // Go's binary.Varint: zig-zag over the uvarint.
        self.uvarint()
            .map(|r| r.map(|u| ((u >> 1) as i64) ^ -((u & 1) as i64)))
    }
}

/// Decodes every `(timestamp_ms, value)` of one chunk, stale markers included (callers
/// that emulate PromQL drop them, as range selection does), appending them to `out`: a
/// series' samples, chunk after chunk, without a buffer per chunk. On an error `out` may
/// hold part of the chunk.
pub fn decode_into(chunk: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), XorError> {
    if chunk.len() < 2 {
        return Err(XorError::NoHeader(chunk.len()));
    }
    let declared = u16::from_be_bytes([chunk[0], chunk[1]]) as usize;
    out.reserve(declared);
    let before = out.len();
    let mut r = Bits {
        bytes: &chunk[2..],
        pos: 0,
    };
    let truncated = |read| XorError::Truncated { read, declared };
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    let mut i = 0;
    while i < declared {
        // A sample on the series' pace with the value unchanged is two zero bits: most of a
        // kube-state-metrics spec series or an idle counter, and the state selection holds
        // about five times the usage series' samples. Such runs are copied out up to 32 at a
        // time instead of decoded bit by bit.
        if i >= 2 {
            let run = ((r.zeros_ahead() / 2) as usize).min(declared - i);
            if run > 0 {
                let value = f64::from_bits(v);
                out.extend((1..=run as i64).map(|k| (t + k * delta, value)));
                t += run as i64 * delta;
                r.pos += 2 * run;
                i += run;
                continue;
            }
        }
        match i {
            0 => {
                t = r
                    .varint()
                    .ok_or(truncated(i))?
                    .map_err(|_| XorError::Varint(i))?;
                v = r.bits(64).ok_or(truncated(i))?;
            }
            1 => {
                let d = r
                    .uvarint()
                    .ok_or(truncated(i))?
                    .map_err(|_| XorError::Varint(i))?;
                delta = d as i64;
                t += delta;
                v = next_value(&mut r, v, &mut leading, &mut trailing).ok_or(truncated(i))?;
            }
            _ => {
                delta += delta_of_delta(&mut r).ok_or(truncated(i))?;
                t += delta;
                v = next_value(&mut r, v, &mut leading, &mut trailing).ok_or(truncated(i))?;
            }
        }
        out.push((t, f64::from_bits(v)));
        i += 1;
    }
    debug_assert_eq!(out.len() - before, declared);
    Ok(())
}

/// Buckets `0`, `10`+14 bits, `110`+17, `1110`+20, `1111`+64. The sign is folded as
/// Prometheus folds it: a value strictly above half the range is negative.
fn delta_of_delta(r: &mut Bits) -> Option<i64> {
    let mut prefix = 0;
    while prefix < 4 && r.bit()? {
        prefix += 1;
    }
    let width = match prefix {
        0 => return Some(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => return Some(r.bits(64)? as i64),
    };
    let raw = r.bits(width)? as i64;
    Some(if raw > (1 << (width - 1)) {
        raw - (1 << width)
    } else {
        raw
    })
}

fn next_value(r: &mut Bits, prev: u64, leading: &mut u32, trailing: &mut u32) -> Option<u64> {
    if !r.bit()? {
        return Some(prev);
    }
    if r.bit()? {
        *leading = r.bits(5)? as u32;
        let mut significant = r.bits(6)? as u32;
        // 64 significant bits do not fit in 6 bits; the encoder writes 0 for them.
        if significant == 0 {
            significant = 64;
        }
        *trailing = 64u32.saturating_sub(*leading + significant);
    }
    let significant = 64 - *leading - *trailing;
    let bits = r.bits(significant)?;
    Some(prev ^ (bits << *trailing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunk: &[u8]) -> Result<Vec<(i64, f64)>, XorError> {
        let mut out = Vec::new();
        decode_into(chunk, &mut out)?;
        Ok(out)
    }

    /// A minimal encoder mirroring xor.go, so the decoder can be checked on series
    /// with every bucket width and value shape (the real-Prometheus test covers what
    /// Prometheus itself writes).
    struct Writer {
        bytes: Vec<u8>,
        bit: usize,
    }

    impl Writer {
        fn push(&mut self, value: u64, n: u32) {
            for i in (0..n).rev() {
                if self.bit.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if (value >> i) & 1 == 1 {
                    let last = self.bytes.len() - 1;
                    self.bytes[last] |= 0x80 >> (self.bit % 8);
                }
                self.bit += 1;
            }
        }
        fn uvarint(&mut self, mut x: u64) {
            while x >= 0x80 {
                self.push((x & 0x7f) | 0x80, 8);
                x >>= 7;
            }
            self.push(x, 8);
        }
    }

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut w = Writer {
            bytes: vec![],
            bit: 0,
        };
        let (mut t_prev, mut delta_prev, mut v_prev) = (0i64, 0i64, 0u64);
        let (mut lead, mut trail) = (0xffu32, 0u32);
        for (i, &(t, v)) in samples.iter().enumerate() {
            let v = v.to_bits();
            match i {
                0 => {
                    w.uvarint(((t << 1) ^ (t >> 63)) as u64);
                    w.push(v, 64);
                }
                _ => {
                    let delta = t - t_prev;
                    if i == 1 {
                        w.uvarint(delta as u64);
                    } else {
                        let dod = delta - delta_prev;
                        let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1 << (n - 1);
                        match dod {
                            0 => w.push(0, 1),
                            _ if fits(14) => {
                                w.push(0b10, 2);
                                w.push(dod as u64, 14)
                            }
                            _ if fits(17) => {
                                w.push(0b110, 3);
                                w.push(dod as u64, 17)
                            }
                            _ if fits(20) => {
                                w.push(0b1110, 4);
                                w.push(dod as u64, 20)
                            }
                            _ => {
                                w.push(0b1111, 4);
                                w.push(dod as u64, 64)
                            }
                        }
                    }
                    delta_prev = delta;
                    let x = v ^ v_prev;
                    if x == 0 {
                        w.push(0, 1);
                    } else {
                        w.push(1, 1);
                        let (l, t) = (x.leading_zeros().min(31), x.trailing_zeros());
                        if lead != 0xff && l >= lead && t >= trail {
                            w.push(0, 1);
                            w.push(x >> trail, 64 - lead - trail);
                        } else {
                            lead = l;
                            trail = t;
                            let sig = 64 - l - t;
                            w.push(1, 1);
                            w.push(l as u64, 5);
                            w.push((sig % 64) as u64, 6);
                            w.push(x >> t, sig);
                        }
                    }
                }
            }
            t_prev = t;
            v_prev = v;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend(w.bytes);
        out
    }

    #[test]
    fn round_trips_every_bucket_width_and_value_shape() {
        let times = [
            1_700_000_000_000i64,
            1_700_000_015_000,
            1_700_000_030_000,
            1_700_000_045_001, // dod 1: 14-bit bucket
            1_700_000_060_001, // dod -1
            1_700_000_135_001, // dod 60 s: 17-bit bucket
            1_700_000_210_001, // dod 0
            1_700_000_900_000, // 20-bit bucket
            1_700_100_000_000, // 64-bit bucket
            1_700_100_000_001, // large negative dod
        ];
        let values = [
            0.0,
            1.5,
            1.5,
            -3.25e9,
            f64::from_bits(STALE_NAN_BITS),
            1e-300,
            123456.789,
            123456.790,
            f64::MAX,
            42.0,
        ];
        let samples: Vec<_> = times.iter().copied().zip(values).collect();
        let got = decode(&encode(&samples)).unwrap();
        assert_eq!(got.len(), samples.len());
        for ((t, v), (gt, gv)) in samples.iter().zip(&got) {
            assert_eq!(t, gt);
            assert_eq!(v.to_bits(), gv.to_bits(), "at {t}");
        }
    }

    #[test]
    fn a_cut_chunk_is_an_error_not_a_short_answer() {
        let samples: Vec<_> = (0..50).map(|i| (i * 15_000, i as f64 * 0.7)).collect();
        let full = encode(&samples);
        for cut in [0, 1, 2, 5, full.len() / 2, full.len() - 1] {
            let err = decode(&full[..cut]).unwrap_err();
            assert!(
                matches!(err, XorError::NoHeader(_) | XorError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        assert_eq!(decode(&full).unwrap().len(), 50);
    }

    #[test]
    fn round_trips_random_series() {
        // A small xorshift, so the case is the same on every run.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let n = (next() % 240) as usize + 1;
            let mut t = 1_700_000_000_000i64;
            let mut v = 0.0f64;
            let samples: Vec<(i64, f64)> = (0..n)
                .map(|_| {
                    t += 15_000 + (next() % 5) as i64 * ((next() % 3) as i64 - 1) * 1000;
                    v = match next() % 4 {
                        0 => v,
                        1 => v + (next() % 1000) as f64 / 7.0,
                        2 => f64::from_bits(next()),
                        _ => (next() % 100) as f64,
                    };
                    (t, v)
                })
                .collect();
            let got = decode(&encode(&samples)).unwrap();
            assert_eq!(got.len(), n);
            for ((t, v), (gt, gv)) in samples.iter().zip(&got) {
                assert_eq!((t, v.to_bits()), (gt, gv.to_bits()));
            }
        }
    }

    #[test]
    fn runs_of_unchanged_samples_round_trip_at_every_length_and_offset() {
        // Runs of two-zero-bit samples (same pace, same value) of every length up to past a
        // 64-bit window, after heads that leave the stream at every bit offset, and ending
        // the chunk or followed by a change of value or of pace.
        for head in 0..9usize {
            for run in 0..70usize {
                for tail in 0..3 {
                    let mut samples: Vec<(i64, f64)> = (0..head + 2)
                        .map(|i| (i as i64 * 60_000 + (i as i64 % 3) * 7, (i % 4) as f64 * 0.5))
                        .collect();
                    let (mut t, v) = *samples.last().unwrap();
                    let pace = t - samples[samples.len() - 2].0;
                    for _ in 0..run {
                        t += pace;
                        samples.push((t, v));
                    }
                    match tail {
                        1 => samples.push((t + pace, v + 1.0)),
                        2 => samples.push((t + pace + 1, v)),
                        _ => {}
                    }
                    let got = decode(&encode(&samples)).unwrap();
                    assert_eq!(
                        got.len(),
                        samples.len(),
                        "head {head} run {run} tail {tail}"
                    );
                    for ((t, v), (gt, gv)) in samples.iter().zip(&got) {
                        assert_eq!(
                            (t, v.to_bits()),
                            (gt, gv.to_bits()),
                            "head {head} run {run}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_cut_run_is_an_error_not_a_short_answer() {
        let samples: Vec<_> = (0..120).map(|i| (i * 60_000, 1.0)).collect();
        let full = encode(&samples);
        for cut in 3..full.len() {
            assert!(
                matches!(decode(&full[..cut]), Err(XorError::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_empty_chunk_has_no_samples() {
        assert_eq!(decode(&[0, 0]).unwrap(), vec![]);
    }
}
