//! Kubernetes-style quantities for people: `250m`, `2`, `512Mi`, `1Gi`.

const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// Millicores as Kubernetes writes them: `250m`, or whole cores as `2`.
pub fn cpu(millicores: i64) -> String {
    if millicores != 0 && millicores % 1000 == 0 {
        format!("{}", millicores / 1000)
    } else {
        format!("{millicores}m")
    }
}

/// Bytes as Kubernetes writes them: `1Gi`, `512Mi`, or plain bytes when not whole MiB.
pub fn memory(bytes: i64) -> String {
    if bytes != 0 && bytes % GIB == 0 {
        format!("{}Gi", bytes / GIB)
    } else if bytes % MIB == 0 {
        format!("{}Mi", bytes / MIB)
    } else {
        format!("{bytes}")
    }
}

/// A measured CPU value with one decimal: `212.4m`.
pub fn cpu_measured(millicores: f64) -> String {
    format!("{millicores:.1}m")
}

/// A measured memory value in MiB with one decimal: `301.2Mi`.
pub fn memory_measured(bytes: f64) -> String {
    format!("{:.1}Mi", bytes / MIB as f64)
}

/// `cpu(v)` or `-` when unset.
pub fn cpu_opt(millicores: Option<i64>) -> String {
    millicores.map(cpu).unwrap_or_else(|| "-".into())
}

/// `memory(v)` or `-` when unset.
pub fn memory_opt(bytes: Option<i64>) -> String {
    bytes.map(memory).unwrap_or_else(|| "-".into())
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} quantity {input:?}: {reason}")]
pub struct QuantityError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

/// Splits `1.5Gi` into (1.5, multiplier); SI and binary suffixes and `e` exponents.
fn split_quantity(s: &str, what: &'static str) -> Result<f64, QuantityError> {
    let err = |reason| QuantityError {
        what,
        input: s.to_string(),
        reason,
    };
    let s = s.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0f64.powi(4)),
        ("Pi", 1024.0f64.powi(5)),
        ("Ei", 1024.0f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, multiplier) = suffixes
        .iter()
        .find(|(suffix, _)| s.ends_with(suffix))
        .map(|(suffix, m)| (&s[..s.len() - suffix.len()], *m))
        .or_else(|| s.strip_suffix('P').map(|n| (n, 1e15)))
        .or_else(|| {
            s.strip_suffix('E')
                .filter(|n| !n.is_empty())
                .map(|n| (n, 1e18))
        })
        .unwrap_or((s, 1.0));
    if number.is_empty() {
        return Err(err("no number"));
    }
    if !number
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return Err(err(
            "not a number with a Kubernetes suffix (m, k, M, G, Ki, Mi, Gi, …)",
        ));
    }
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    let v = value * multiplier;
    if !v.is_finite() || v < 0.0 {
        return Err(err("must be a finite, non-negative amount"));
    }
    Ok(v)
}

/// Parses a CPU quantity (`250m`, `0.5`, `2`, `1e3m`) into millicores, rounding up.
pub fn parse_cpu_millicores(s: &str) -> Result<i64, QuantityError> {
    let cores = split_quantity(s, "CPU")?;
    Ok((cores * 1000.0 - 1e-9).ceil().max(0.0) as i64)
}

/// Parses a memory quantity (`512Mi`, `1G`, `1.5Gi`, `134217728`) into bytes, rounding up.
pub fn parse_memory_bytes(s: &str) -> Result<i64, QuantityError> {
    let bytes = split_quantity(s, "memory")?;
    Ok((bytes - 1e-6).ceil().max(0.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kubernetes() {
        assert_eq!(cpu(250), "250m");
        assert_eq!(cpu(2000), "2");
        assert_eq!(cpu(0), "0m");
        assert_eq!(memory(512 * MIB), "512Mi");
        assert_eq!(memory(2 * GIB), "2Gi");
        assert_eq!(memory(1000), "1000");
        assert_eq!(cpu_opt(None), "-");
        assert_eq!(memory_measured(1.5 * MIB as f64), "1.5Mi");
    }

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(parse_cpu_millicores("250m"), Ok(250));
        assert_eq!(parse_cpu_millicores("0.5"), Ok(500));
        assert_eq!(parse_cpu_millicores("2"), Ok(2000));
        assert_eq!(parse_cpu_millicores("1e-1"), Ok(100));
        assert_eq!(parse_cpu_millicores("100000u"), Ok(100));
        assert_eq!(parse_memory_bytes("512Mi"), Ok(512 * MIB));
        assert_eq!(parse_memory_bytes("1.5Gi"), Ok(3 * GIB / 2));
        assert_eq!(parse_memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory_bytes("128974848"), Ok(128_974_848));
        assert_eq!(parse_memory_bytes("129e6"), Ok(129_000_000));
        assert_eq!(parse_memory_bytes("1Ki"), Ok(1024));
        assert_eq!(
            parse_memory_bytes("12 apples").unwrap_err().to_string(),
            "invalid memory quantity \"12 apples\": not a number with a Kubernetes suffix (m, k, M, G, Ki, Mi, Gi, …)"
        );
        assert!(parse_cpu_millicores("-1").is_err());
        assert!(parse_cpu_millicores("m").is_err());
    }
}
