//! Reading Kubernetes quantities as manifests write them (`250m`, `0.5`,
//! `1Gi`, `1e9`, `129M`), so an edit compares values, not spellings: a
//! manifest that says `1000m` where rightsizer would write `1` is left alone.

use yaml_serde::Value;

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
    // The manifests' spellings, read by the crate's one exact parser.
    #[test]
    fn reads_kubernetes_quantities() {
        let parse_cpu_millicores = |s| crate::quantity::parse_cpu_millicores(s).ok();
        let parse_memory_bytes = |s| crate::quantity::parse_memory_bytes(s).ok();
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
