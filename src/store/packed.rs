//! Day rows, the layout of hourly summaries in both backends: one row per (container,
//! resource, day) holding that day's hourly sketches, and one per (container, day) holding
//! its signal hours. In Postgres a row per hour costs about 200 bytes (tuple header, index
//! entry, alignment) around a sketch of about 35: packing a day brings a resource-day from
//! about 5 KB to about 1 KB. SQLite keeps the same rows, so both share one write path.
//!
//! The encodings are big-endian so the Postgres migration that packed existing hour rows
//! could build them in SQL (`int4send`, `float8send`); SQLite packs its old hour rows in
//! Rust (`SqliteStore::pack_hour_rows`). Both start with a version byte.

use std::collections::BTreeMap;

/// Seconds per day.
pub const DAY: i64 = 86_400;

const VERSION: u8 = 1;

/// Start of the UTC day holding `t` (saturating: `i64::MIN` stays a lower bound).
pub fn day_of(t: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(DAY))
}

/// The hour `hour_start` as an offset (0–23) into its day.
fn offset(day: i64, hour_start: i64) -> u8 {
    ((hour_start - day) / 3600) as u8
}

/// Usage of one day: per hour, its offset, the sketch's length (u32) and the sketch.
pub fn encode_usage(day: i64, hours: &BTreeMap<i64, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + hours.values().map(|s| 5 + s.len()).sum::<usize>());
    out.push(VERSION);
    for (&hour, sketch) in hours {
        out.push(offset(day, hour));
        out.extend_from_slice(&(sketch.len() as u32).to_be_bytes());
        out.extend_from_slice(sketch);
    }
    out
}

/// The hours of a usage day row, `(hour_start, sketch bytes)` in hour order.
pub fn decode_usage(day: i64, bytes: &[u8]) -> Result<Vec<(i64, &[u8])>, String> {
    let mut rest = version(bytes)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (hour, after) = hour_of(day, rest)?;
        let len = u32::from_be_bytes(take::<4>(after)?) as usize;
        let after = &after[4..];
        if after.len() < len {
            return Err(format!(
                "day row truncated in the sketch of {hour}: {} of {len} bytes",
                after.len()
            ));
        }
        out.push((hour, &after[..len]));
        rest = &after[len..];
    }
    Ok(out)
}

/// One signal hour as stored: restarts, OOM kills, CFS periods, throttled periods.
pub type Signals = (u32, u32, f64, f64);

/// Signals of one day: per hour, its offset and the four values.
pub fn encode_signals(day: i64, hours: &BTreeMap<i64, Signals>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + hours.len() * 25);
    out.push(VERSION);
    for (&hour, &(restarts, ooms, periods, throttled)) in hours {
        out.push(offset(day, hour));
        out.extend_from_slice(&restarts.to_be_bytes());
        out.extend_from_slice(&ooms.to_be_bytes());
        out.extend_from_slice(&periods.to_be_bytes());
        out.extend_from_slice(&throttled.to_be_bytes());
    }
    out
}

/// The hours of a signal day row, in hour order.
pub fn decode_signals(day: i64, bytes: &[u8]) -> Result<Vec<(i64, Signals)>, String> {
    let mut rest = version(bytes)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (hour, after) = hour_of(day, rest)?;
        if after.len() < 24 {
            return Err(format!("day row truncated in the signals of {hour}"));
        }
        let restarts = u32::from_be_bytes(take::<4>(after)?);
        let ooms = u32::from_be_bytes(take::<4>(&after[4..])?);
        let periods = f64::from_be_bytes(take::<8>(&after[8..])?);
        let throttled = f64::from_be_bytes(take::<8>(&after[16..])?);
        out.push((hour, (restarts, ooms, periods, throttled)));
        rest = &after[24..];
    }
    Ok(out)
}

fn version(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => Ok(rest),
        Some((v, _)) => Err(format!("day row of unknown version {v}")),
        None => Err("empty day row".into()),
    }
}

fn hour_of(day: i64, bytes: &[u8]) -> Result<(i64, &[u8]), String> {
    let (&offset, rest) = bytes.split_first().ok_or("day row truncated")?;
    if offset > 23 {
        return Err(format!("day row names hour {offset} of a day"));
    }
    // `day` comes from the row's key; a corrupt one must be an error, not an overflow.
    let hour = day
        .checked_add(i64::from(offset) * 3600)
        .ok_or_else(|| format!("day row of day {day} has no hour {offset}"))?;
    Ok((hour, rest))
}

fn take<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "day row truncated".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_at_the_end_of_time_is_an_error_not_an_overflow() {
        // Found by the packed_day fuzz target.
        let bytes = [VERSION, 1, 0];
        assert!(decode_usage(i64::MAX, &bytes).is_err());
    }

    #[test]
    fn usage_and_signal_days_round_trip() {
        let day = 19_723 * DAY;
        let usage: BTreeMap<i64, Vec<u8>> = [(day, vec![1, 2, 3]), (day + 23 * 3600, vec![])]
            .into_iter()
            .collect();
        let bytes = encode_usage(day, &usage);
        assert_eq!(
            decode_usage(day, &bytes).unwrap(),
            vec![(day, &[1u8, 2, 3][..]), (day + 23 * 3600, &[][..])]
        );
        let signals: BTreeMap<i64, Signals> =
            [(day + 3600, (2, 1, 600.0, 12.5))].into_iter().collect();
        let bytes = encode_signals(day, &signals);
        assert_eq!(bytes.len(), 26);
        assert_eq!(
            decode_signals(day, &bytes).unwrap(),
            vec![(day + 3600, (2, 1, 600.0, 12.5))]
        );
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let day = 0;
        let usage: BTreeMap<i64, Vec<u8>> = [(3600, vec![7; 10])].into_iter().collect();
        let bytes = encode_usage(day, &usage);
        // One byte (the version alone) is a valid, empty row.
        for cut in (0..bytes.len()).filter(|&cut| cut != 1) {
            assert!(decode_usage(day, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_usage(day, &[2]).is_err());
        assert!(decode_usage(day, &[1, 24, 0, 0, 0, 0]).is_err());
        assert!(decode_signals(day, &[1, 0, 1]).is_err());
    }
}
