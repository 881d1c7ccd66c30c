//! Parsing Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1G`, `1e3`)
//! into whole millicores and bytes.
//!
//! The grammar is Kubernetes' own (`k8s.io/apimachinery/pkg/api/resource`):
//! a decimal number (`1`, `1.5`, `.5`, `5.`), optionally signed, followed by
//! nothing, a decimal SI suffix (`n u m k M G T P E`), a binary SI suffix
//! (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-2`). Like the API
//! server's `MilliValue()`/`Value()`, fractions of the target unit round up:
//! `100u` of CPU is 1 millicore, `100m` of memory is 1 byte. Arithmetic is
//! exact (integers, never floats), so `0.1` is 100 millicores, not 99.

/// A quantity that is not valid Kubernetes syntax, or does not fit the unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A CPU quantity in whole millicores, rounded up: `250m` → 250, `1.5` → 1500, `1e3` → 1,000,000.
pub fn parse_cpu_millicores(s: &str) -> Result<i64, QuantityError> {
    let q = Parsed::from_str(s)?;
    // Millicores are thousandths: shift the decimal exponent by 3.
    q.scaled_ceil(3)
        .ok_or_else(|| error(s, "too large for millicores"))
}

/// A memory quantity in whole bytes, rounded up: `512Mi` → 536870912, `1G` → 1000000000.
pub fn parse_memory_bytes(s: &str) -> Result<i64, QuantityError> {
    let q = Parsed::from_str(s)?;
    q.scaled_ceil(0)
        .ok_or_else(|| error(s, "too large for bytes"))
}

fn error(input: &str, reason: impl Into<String>) -> QuantityError {
    QuantityError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

const SUFFIXES: &str = "n u m k M G T P E Ki Mi Gi Ti Pi Ei, or an exponent like e3";

/// `mantissa × 10^pow10 × 2^pow2`, never negative.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    mantissa: u128,
    pow10: i64,
    pow2: u32,
}

impl Parsed {
    fn from_str(input: &str) -> Result<Parsed, QuantityError> {
        if input.is_empty() {
            return Err(error(input, "empty"));
        }
        let bytes = input.as_bytes();
        let mut i = 0;
        match bytes[0] {
            b'-' => return Err(error(input, "a resource quantity must not be negative")),
            b'+' => i = 1,
            _ => {}
        }
        let mut mantissa: u128 = 0;
        let mut digits = 0usize;
        let mut fraction_digits = 0i64;
        let mut seen_point = false;
        while i < bytes.len() {
            match bytes[i] {
                b @ b'0'..=b'9' => {
                    mantissa = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(u128::from(b - b'0')))
                        .ok_or_else(|| error(input, "too many significant digits"))?;
                    digits += 1;
                    if seen_point {
                        fraction_digits += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'.' => return Err(error(input, "more than one decimal point")),
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return Err(error(input, "no digits before the unit"));
        }
        let (pow10, pow2) = suffix(input, &input[i..])?;
        Ok(Parsed {
            mantissa,
            pow10: pow10 - fraction_digits,
            pow2,
        })
    }

    /// `ceil(value × 10^shift)` as an i64, or `None` when it does not fit.
    fn scaled_ceil(&self, shift: i64) -> Option<i64> {
        if self.mantissa == 0 {
            return Some(0);
        }
        let pow10 = self.pow10 + shift;
        let numerator = self.mantissa.checked_mul(1u128.checked_shl(self.pow2)?)?;
        let value = if pow10 >= 0 {
            numerator.checked_mul(10u128.checked_pow(u32::try_from(pow10).ok()?)?)?
        } else {
            match u32::try_from(-pow10)
                .ok()
                .and_then(|p| 10u128.checked_pow(p))
            {
                Some(denominator) => numerator.div_ceil(denominator),
                // A denominator beyond u128 exceeds any numerator: a positive sliver, rounded up.
                None => 1,
            }
        };
        i64::try_from(value).ok()
    }
}

/// The suffix as (power of ten, power of two).
fn suffix(input: &str, s: &str) -> Result<(i64, u32), QuantityError> {
    let unit = match s {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => return exponent(input, s),
    };
    Ok(unit)
}

/// A decimal exponent: `e` or `E`, an optional sign, digits.
fn exponent(input: &str, s: &str) -> Result<(i64, u32), QuantityError> {
    let rest = s.strip_prefix(['e', 'E']).ok_or_else(|| {
        error(
            input,
            format!("unknown unit {s:?} (want one of {SUFFIXES})"),
        )
    })?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(
            input,
            format!("bad exponent {s:?} (want e or E followed by an integer, like e3 or E-2)"),
        ));
    }
    // Exponents past a few hundred are rejected: no resource quantity is that large or small.
    let exp: i64 = rest
        .parse()
        .ok()
        .filter(|e: &i64| e.abs() <= 400)
        .ok_or_else(|| error(input, format!("exponent {rest} out of range")))?;
    Ok((exp, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpu(s: &str) -> i64 {
        parse_cpu_millicores(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mem(s: &str) -> i64 {
        parse_memory_bytes(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu("250m"), 250);
        assert_eq!(cpu("1"), 1000);
        assert_eq!(cpu("1.5"), 1500);
        assert_eq!(cpu("0.1"), 100);
        assert_eq!(cpu(".5"), 500);
        assert_eq!(cpu("5."), 5000);
        assert_eq!(cpu("+2"), 2000);
        assert_eq!(cpu("0"), 0);
        assert_eq!(cpu("0m"), 0);
        assert_eq!(cpu("1e3"), 1_000_000);
        assert_eq!(cpu("1E3"), 1_000_000);
        assert_eq!(cpu("25e-2"), 250);
        assert_eq!(cpu("1e+1"), 10_000);
        assert_eq!(cpu("2k"), 2_000_000);
        assert_eq!(cpu("1M"), 1_000_000_000);
        // Fractions of a millicore round up, like the API server's MilliValue().
        assert_eq!(cpu("100u"), 1);
        assert_eq!(cpu("1500u"), 2);
        assert_eq!(cpu("1n"), 1);
        assert_eq!(cpu("0.0001"), 1);
        assert_eq!(cpu("1e-400"), 1);
        assert_eq!(cpu("2500000n"), 3);
        assert_eq!(cpu("1Ki"), 1_024_000);
    }

    #[test]
    fn memory_quantities_binary_suffixes() {
        assert_eq!(mem("1Ki"), 1 << 10);
        assert_eq!(mem("512Mi"), 512 << 20);
        assert_eq!(mem("1Gi"), 1 << 30);
        assert_eq!(mem("1.5Gi"), 3 << 29);
        assert_eq!(mem("2Ti"), 2 << 40);
        assert_eq!(mem("1Pi"), 1 << 50);
        assert_eq!(mem("7Ei"), 7 << 60);
        assert_eq!(mem("0.5Ki"), 512);
        // 0.1 KiB is 102.4 bytes: rounded up.
        assert_eq!(mem("0.1Ki"), 103);
    }

    #[test]
    fn memory_quantities_decimal_suffixes_and_exponents() {
        assert_eq!(mem("128974848"), 128_974_848);
        assert_eq!(mem("1k"), 1_000);
        assert_eq!(mem("129M"), 129_000_000);
        assert_eq!(mem("1G"), 1_000_000_000);
        assert_eq!(mem("1.5G"), 1_500_000_000);
        assert_eq!(mem("1T"), 1_000_000_000_000);
        assert_eq!(mem("1P"), 1_000_000_000_000_000);
        assert_eq!(mem("1E"), 1_000_000_000_000_000_000);
        assert_eq!(mem("1e3"), 1_000);
        assert_eq!(mem("123e6"), 123_000_000);
        assert_eq!(mem("1.5e3"), 1_500);
        assert_eq!(mem("100m"), 1);
        assert_eq!(mem("1500m"), 2);
        assert_eq!(mem("1u"), 1);
        assert_eq!(mem("1n"), 1);
    }

    #[test]
    fn garbage_gets_a_clear_error() {
        let cases = [
            ("", "empty"),
            ("abc", "no digits before the unit"),
            ("Mi", "no digits before the unit"),
            (".", "no digits before the unit"),
            ("1.2.3", "more than one decimal point"),
            ("12Xi", "unknown unit \"Xi\""),
            ("1 Gi", "unknown unit \" Gi\""),
            ("1KiB", "unknown unit \"KiB\""),
            ("1K", "unknown unit \"K\""),
            ("0x10", "unknown unit \"x10\""),
            ("-1", "must not be negative"),
            ("-250m", "must not be negative"),
            ("1e", "bad exponent \"e\""),
            ("1e1.5", "bad exponent \"e1.5\""),
            ("1ee3", "bad exponent \"ee3\""),
            ("1e-", "bad exponent \"e-\""),
            ("1e999", "exponent 999 out of range"),
        ];
        for (input, want) in cases {
            let cpu_err = parse_cpu_millicores(input).unwrap_err();
            let mem_err = parse_memory_bytes(input).unwrap_err();
            for err in [cpu_err, mem_err] {
                assert_eq!(err.input, input);
                let text = err.to_string();
                assert!(
                    text.starts_with(&format!("invalid quantity {input:?}: ")),
                    "{text}"
                );
                assert!(text.contains(want), "{input:?}: {text} lacks {want:?}");
            }
        }
        let unknown = parse_memory_bytes("12Xi").unwrap_err().to_string();
        assert!(unknown.contains("Ki Mi Gi"), "{unknown}");
    }

    #[test]
    fn values_past_i64_are_errors_not_wraps() {
        assert_eq!(
            parse_memory_bytes("8Ei").unwrap_err().reason,
            "too large for bytes"
        );
        assert_eq!(
            parse_cpu_millicores("10P").unwrap_err().reason,
            "too large for millicores"
        );
        assert_eq!(
            parse_memory_bytes("1e300").unwrap_err().reason,
            "too large for bytes"
        );
        assert_eq!(
            parse_memory_bytes("1234567890123456789012345678901234567890")
                .unwrap_err()
                .reason,
            "too many significant digits"
        );
        assert_eq!(mem("9223372036854775807"), i64::MAX);
    }

    proptest! {
        #[test]
        fn formatted_quantities_parse_back(millicores in 0i64..10_000_000, mib in 0i64..1_000_000, bytes in 0i64..i64::MAX / 2) {
            prop_assert_eq!(parse_cpu_millicores(&crate::quantity::cpu(millicores)).unwrap(), millicores);
            prop_assert_eq!(parse_memory_bytes(&crate::quantity::memory(mib << 20)).unwrap(), mib << 20);
            prop_assert_eq!(parse_memory_bytes(&crate::quantity::memory(bytes)).unwrap(), bytes);
        }

        #[test]
        fn decimal_and_exponent_forms_agree(whole in 0i64..1_000_000, frac in 0i64..1000) {
            let text = format!("{whole}.{frac:03}");
            let expected = whole * 1000 + frac;
            prop_assert_eq!(parse_cpu_millicores(&text).unwrap(), expected);
            prop_assert_eq!(parse_cpu_millicores(&format!("{expected}m")).unwrap(), expected);
            prop_assert_eq!(parse_cpu_millicores(&format!("{expected}e-3")).unwrap(), expected);
        }
    }
}
