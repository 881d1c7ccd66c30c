//! Reading Kubernetes quantities as manifests write them (`250m`, `0.5`,
//! `1Gi`, `1e9`, `129M`), so an edit compares values, not spellings: a
//! manifest that says `1000m` where rightsizer would write `1` is left alone.

use serde_yaml::Value;

const NANO: i128 = 1_000_000_000;

/// A quantity in billionths of its unit, rounded up like Kubernetes rounds to
/// its precision; `None` when `s` is not a quantity.
fn parse_nanos(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, digits) = match number.as_bytes().first()? {
        b'-' => (true, &number[1..]),
        b'+' => (false, &number[1..]),
        _ => (false, number),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut nanos: i128 = 0;
    for b in int_part.bytes() {
        nanos = nanos.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    nanos = nanos.checked_mul(NANO)?;
    let mut scale = NANO / 10;
    let mut round_up = false;
    for b in frac_part.bytes() {
        if scale == 0 {
            round_up |= b != b'0';
        } else {
            nanos += i128::from(b - b'0') * scale;
            scale /= 10;
        }
    }
    nanos += i128::from(round_up);
    let scaled = apply_suffix(nanos, suffix)?;
    Some(if negative { -scaled } else { scaled })
}

fn apply_suffix(nanos: i128, suffix: &str) -> Option<i128> {
    let binary = |power: u32| nanos.checked_mul(1024i128.checked_pow(power)?);
    let decimal = |exp: i32| -> Option<i128> {
        if exp >= 0 {
            nanos.checked_mul(10i128.checked_pow(exp as u32)?)
        } else {
            let div = 10i128.checked_pow((-exp) as u32)?;
            Some((nanos + div - 1).div_euclid(div))
        }
    };
    match suffix {
        "" => Some(nanos),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            decimal(exp.parse::<i32>().ok().filter(|e| e.abs() <= 30)?)
        }
    }
}

fn ceil_div(nanos: i128, div: i128) -> Option<i64> {
    i64::try_from((nanos + div - 1).div_euclid(div)).ok()
}

/// CPU in millicores: `250m` → 250, `0.5` → 500, `2` → 2000.
pub(crate) fn parse_cpu_millicores(s: &str) -> Option<i64> {
    ceil_div(parse_nanos(s)?, 1_000_000)
}

/// Memory in bytes: `512Mi`, `1G`, `1e9`, `134217728`.
pub(crate) fn parse_memory_bytes(s: &str) -> Option<i64> {
    ceil_div(parse_nanos(s)?, NANO)
}

/// A scalar YAML value as quantity text (`cpu: 1` is a number, `cpu: "1"` a string).
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubernetes_quantities() {
        assert_eq!(parse_cpu_millicores("250m"), Some(250));
        assert_eq!(parse_cpu_millicores("0.5"), Some(500));
        assert_eq!(parse_cpu_millicores("0.1"), Some(100));
        assert_eq!(parse_cpu_millicores("2"), Some(2000));
        assert_eq!(parse_cpu_millicores("1.5m"), Some(2));
        assert_eq!(parse_cpu_millicores("100000u"), Some(100));
        assert_eq!(parse_memory_bytes("512Mi"), Some(512 << 20));
        assert_eq!(parse_memory_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(parse_memory_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_memory_bytes("129M"), Some(129_000_000));
        assert_eq!(parse_memory_bytes("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(parse_memory_bytes("128974848"), Some(128_974_848));
        for bad in ["", "abc", "1Xi", "1.2.3", "m", "--1"] {
            assert_eq!(parse_memory_bytes(bad), None, "{bad}");
        }
    }
}
