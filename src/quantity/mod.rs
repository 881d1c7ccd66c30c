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

mod parse;

/// Parsing of Kubernetes quantities: exact decimal arithmetic, rounding up.
pub use parse::{parse_cpu_millicores, parse_memory_bytes, QuantityError};

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
        assert!(parse_memory_bytes("12 apples")
            .unwrap_err()
            .to_string()
            .starts_with("invalid quantity \"12 apples\""));
        assert!(parse_cpu_millicores("-1").is_err());
        assert!(parse_cpu_millicores("m").is_err());
    }
}
