//! Small HTML helpers: escaping, URL encoding, number formatting and the page shell.

use std::fmt::Write;

use maud::{html, Markup, PreEscaped};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Escapes `s` for HTML text and quoted attribute values, for the SVG the charts write as
/// strings and for callers predicting what a page contains: maud's escaper, the one the
/// templates apply, plus `'`, so that the result is safe in single-quoted attributes too.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = maud::Escaper::new(&mut out).write_str(s);
    out.replace('\'', "&#39;")
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`), so one encoding
/// is safe in a path segment, a query value and a fragment alike.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for a path segment, query value or fragment: everything but
/// RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A number with thousands separators and `decimals` digits: `12,345.6`.
pub fn group_thousands(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let negative = value < 0.0 && text.bytes().any(|b| matches!(b, b'1'..=b'9'));
    let sign = if negative { "−" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Money per month: `$1,234` for USD/EUR/GBP, `1,234 CHF` otherwise.
pub fn money(amount: f64, currency: &str) -> String {
    let decimals = if amount.abs() < 100.0 { 2 } else { 0 };
    let number = group_thousands(amount, decimals);
    let (sign, digits) = match number.strip_prefix('−') {
        Some(d) => ("−", d),
        None => ("", number.as_str()),
    };
    match currency {
        "USD" | "" => format!("{sign}${digits}"),
        "EUR" => format!("{sign}€{digits}"),
        "GBP" => format!("{sign}£{digits}"),
        other => format!("{sign}{digits} {other}"),
    }
}

/// A share (0..1) as a percentage: `12.5%`, `<0.1%` for tiny non-zero shares.
pub fn percent(share: f64) -> String {
    if share > 0.0 && share < 0.001 {
        "<0.1%".into()
    } else {
        format!("{:.1}%", share * 100.0)
    }
}

/// Unix seconds as `2024-05-01 12:00 UTC`.
pub fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// The page shell: head with the stylesheet and script, a header bar and `body` in `<main>`.
pub fn page(title: &str, body: Markup) -> String {
    let version = env!("CARGO_PKG_VERSION");
    // Line breaks between blocks keep the page source readable.
    html! {
        // Lower case, as pages have always started (a test pins it); maud's DOCTYPE is upper.
        (PreEscaped("<!doctype html>")) "\n"
        html lang="en" {
            "\n"
            head {
                "\n"
                meta charset="utf-8"; "\n"
                meta name="viewport" content="width=device-width, initial-scale=1"; "\n"
                title { (title) " · rightsizer" } "\n"
                link rel="stylesheet" href={ "/assets/app.css?v=" (version) }; "\n"
                script src={ "/assets/app.js?v=" (version) } defer {} "\n"
            }
            "\n"
            body {
                "\n"
                header class="top" {
                    a class="brand" href="/" { "rightsizer" }
                    span class="tagline" { "requests & limits from history" }
                }
                "\n"
                main { "\n" (body) }
                "\n"
            }
            "\n"
        }
        "\n"
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("plain-name"), "plain-name");
        assert_eq!(escape_html("ünï"), "ünï");
    }

    #[test]
    fn encodes_components() {
        assert_eq!(encode_component("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(encode_component("api-v1.2_x~"), "api-v1.2_x~");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(group_thousands(1234567.891, 1), "1,234,567.9");
        assert_eq!(group_thousands(-999.0, 0), "−999");
        assert_eq!(group_thousands(-0.001, 1), "0.0");
        assert_eq!(money(1234.4, "USD"), "$1,234");
        assert_eq!(money(-12.5, "EUR"), "−€12.50");
        assert_eq!(money(300.0, "CHF"), "300 CHF");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(percent(0.00001), "<0.1%");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
