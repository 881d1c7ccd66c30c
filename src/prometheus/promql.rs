//! PromQL text builders. Every label value that reaches a selector goes through
//! [`escape_label_value`], so a namespace or pod name can never change the query.

/// Escapes a label value for use inside double quotes in a PromQL selector.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// A label matcher operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

/// One matcher, `label op "value"`, with the value escaped; the label name must be a valid
/// identifier.
pub fn matcher(label: &str, op: Op, value: &str) -> String {
    debug_assert!(is_label_name(label), "invalid label name {label:?}");
    format!("{label}{}\"{}\"", op.as_str(), escape_label_value(value))
}

/// Builds `metric{label op "value", …}` with escaped values; label names must be valid identifiers.
pub fn selector(metric: &str, matchers: &[(&str, Op, &str)]) -> String {
    let inner: Vec<String> = matchers
        .iter()
        .map(|&(label, op, value)| matcher(label, op, value))
        .collect();
    format!("{metric}{{{}}}", inner.join(","))
}

/// A Prometheus duration literal for a number of seconds (`3600s`).
pub fn duration(secs: i64) -> String {
    format!("{secs}s")
}

/// Whether `name` is a valid Prometheus label name.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_break_out_of_quotes() {
        let evil = r#"shop"} or vector(1) or up{a=""#;
        let s = selector("kube_pod_owner", &[("namespace", Op::Eq, evil)]);
        assert_eq!(
            s,
            r#"kube_pod_owner{namespace="shop\"} or vector(1) or up{a=\""}"#
        );
        assert_eq!(escape_label_value("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn builds_container_selectors() {
        let s = selector(
            "container_memory_working_set_bytes",
            &[("container", Op::Ne, ""), ("container", Op::Ne, "POD")],
        );
        assert_eq!(
            s,
            r#"container_memory_working_set_bytes{container!="",container!="POD"}"#
        );
        assert!(is_label_name("owner_kind"));
        assert!(!is_label_name("9x"));
        assert!(!is_label_name("a-b"));
    }
}
