//! Numbers and names for people, shared by the Markdown and HTML renderers.

use chrono::{DateTime, Utc};

use crate::model::ContainerKey;
use crate::quantity::{cpu_opt, memory_opt};

/// `v` with `decimals` decimals and thousands separators: `12,345.6`.
pub fn thousands(v: f64, decimals: usize) -> String {
    let formatted = format!("{:.*}", decimals, v.abs());
    let (int, frac) = formatted.split_once('.').unwrap_or((&formatted, ""));
    let mut grouped = String::new();
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if v < 0.0 && formatted.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Money with its currency: `1,234.50 USD`.
pub fn money(v: f64, currency: &str) -> String {
    with_currency(thousands(v, 2), currency)
}

/// What a recommendation costs per month given its savings: `33.60 USD`, or `saves 13.20 USD`.
pub fn cost(savings: f64, currency: &str) -> String {
    if savings > 0.0 {
        format!("saves {}", money(savings, currency))
    } else {
        money(-savings, currency)
    }
}

/// A change in money: `+12.00 USD`, `-3.10 USD`.
pub fn signed_money(v: f64, currency: &str) -> String {
    with_currency(signed(v, 2), currency)
}

fn with_currency(amount: String, currency: &str) -> String {
    if currency.is_empty() {
        amount
    } else {
        format!("{amount} {currency}")
    }
}

/// A change with a sign: `+1.50`, `-0.25`, `0.00`.
pub fn signed(v: f64, decimals: usize) -> String {
    let s = thousands(v, decimals);
    if s.starts_with('-') || s.chars().all(|c| !c.is_ascii_digit() || c == '0') {
        s
    } else {
        format!("+{s}")
    }
}

/// A count change with a sign: `+3`, `-2`, `0`.
pub fn signed_count(v: i64) -> String {
    if v > 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

/// Cores with two decimals.
pub fn cores(v: f64) -> String {
    thousands(v, 2)
}

/// GiB with one decimal.
pub fn gib(v: f64) -> String {
    thousands(v, 1)
}

/// A share as a percentage: `12.5%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// An optional share, or `-`.
pub fn percent_opt(share: Option<f64>) -> String {
    share.map(percent).unwrap_or_else(|| "-".into())
}

/// Unix seconds as `2024-01-08 06:00 UTC`.
pub fn timestamp(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `current → recommended` (`unset → …` when nothing is set now), or just `current` when
/// nothing is recommended or nothing changes.
pub fn arrow(current: String, recommended: String) -> String {
    if recommended == "-" || recommended == current {
        current
    } else if current == "-" {
        format!("unset → {recommended}")
    } else {
        format!("{current} → {recommended}")
    }
}

/// A CPU request or limit change: `1 → 250m`.
pub fn cpu_change(current: Option<i64>, recommended: Option<i64>) -> String {
    arrow(cpu_opt(current), cpu_opt(recommended))
}

/// A memory request or limit change: `1Gi → 384Mi`.
pub fn memory_change(current: Option<i64>, recommended: Option<i64>) -> String {
    arrow(memory_opt(current), memory_opt(recommended))
}

/// `namespace/Kind/name`.
pub fn workload(key: &ContainerKey) -> String {
    format!("{}/{}/{}", key.namespace, key.kind, key.workload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567.891, 2), "1,234,567.89");
        assert_eq!(thousands(-1234.5, 1), "-1,234.5");
        assert_eq!(thousands(999.0, 0), "999");
        assert_eq!(thousands(-0.001, 2), "0.00");
        assert_eq!(money(1500.0, "USD"), "1,500.00 USD");
        assert_eq!(money(3.0, ""), "3.00");
        assert_eq!(signed_money(12.0, "EUR"), "+12.00 EUR");
        assert_eq!(signed_money(-3.1, "EUR"), "-3.10 EUR");
        assert_eq!(cost(-33.6, "USD"), "33.60 USD");
        assert_eq!(cost(13.2, "USD"), "saves 13.20 USD");
        assert_eq!(signed(0.0, 2), "0.00");
        assert_eq!(signed(-0.0001, 2), "0.00");
        assert_eq!(signed_count(3), "+3");
        assert_eq!(signed_count(-2), "-2");
        assert_eq!(signed_count(0), "0");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(timestamp(1_704_067_200), "2024-01-01 00:00 UTC");
    }

    #[test]
    fn changes_show_an_arrow_only_when_something_changes() {
        assert_eq!(cpu_change(Some(1000), Some(250)), "1 → 250m");
        assert_eq!(cpu_change(Some(250), Some(250)), "250m");
        assert_eq!(cpu_change(None, None), "-");
        assert_eq!(memory_change(Some(1 << 30), Some(384 << 20)), "1Gi → 384Mi");
        assert_eq!(memory_change(Some(1 << 30), None), "1Gi");
        assert_eq!(cpu_change(None, Some(100)), "unset → 100m");
    }
}
