//! Query parameters of the list endpoints, parsed by hand so every bad value gets a 400
//! naming the parameter and what it accepts; and filtering, sorting and cursor pagination
//! over a snapshot.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::snapshot::Snapshot;
use crate::fleet::savings;
use crate::model::{Confidence, ContainerKey, Recommendation, Severity, Status, WorkloadInfo};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Raw parameters: a list, so repeated or unknown ones can be refused.
pub type RawParams = Vec<(String, String)>;

/// The `limit` parameter: `default` when absent, else an integer from 1 to `max`.
pub fn limit_param<S: AsRef<str>>(
    value: Option<S>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(v) = value else {
        return Ok(default);
    };
    let v = v.as_ref();
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter `limit` must be an integer from 1 to {max}; got `{v}`"
            ))
        })
}

/// Checks that only `allowed` parameters appear, each at most once.
pub fn check_names(
    raw: &RawParams,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{name}`; this endpoint takes: {}",
                allowed.join(", ")
            )));
        }
        if out.insert(name.clone(), value.clone()).is_some() {
            return Err(ApiError::BadRequest(format!(
                "parameter `{name}` is given more than once"
            )));
        }
    }
    Ok(out)
}

fn one_of<T: Copy>(name: &str, value: &str, choices: &[(&str, T)]) -> Result<T, ApiError> {
    choices
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            ApiError::BadRequest(format!(
                "parameter `{name}` must be one of {}; got `{value}`",
                names.join(", ")
            ))
        })
}

fn non_empty(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "parameter `{name}` must not be empty"
        )));
    }
    Ok(value.to_string())
}

/// A name matcher: exact, or a glob with `*`, `?` and `[...]`.
#[derive(Debug, Clone)]
pub enum NameMatch {
    /// Exactly this name.
    Exact(String),
    /// A shell-style glob.
    Glob(glob::Pattern),
}

impl NameMatch {
    fn parse(name: &str, value: &str) -> Result<Self, ApiError> {
        let value = non_empty(name, value)?;
        if value.contains(['*', '?', '[']) {
            glob::Pattern::new(&value)
                .map(NameMatch::Glob)
                .map_err(|e| {
                    ApiError::BadRequest(format!("parameter `{name}` is not a valid glob: {e}"))
                })
        } else {
            Ok(NameMatch::Exact(value))
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            NameMatch::Exact(e) => e == s,
            NameMatch::Glob(g) => g.matches(s),
        }
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// Parses `app=api,tier!=db,canary,!legacy` (equality-based selectors).
fn parse_selector(value: &str) -> Result<Vec<Requirement>, ApiError> {
    let bad = |part: &str| {
        ApiError::BadRequest(format!(
            "parameter `selector` must be comma-separated key=value, key!=value, key or !key; `{part}` is not"
        ))
    };
    let valid_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    value
        .split(',')
        .map(str::trim)
        .map(|part| {
            let r = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            let key = match &r {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if valid_key(key) {
                Ok(r)
            } else {
                Err(bad(part))
            }
        })
        .collect()
}

fn selector_matches(
    requirements: &[Requirement],
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => labels.get(k) == Some(v),
        Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::NotExists(k) => !labels.contains_key(k),
    })
}

/// Sort order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    /// Monthly savings, largest first by default.
    Savings,
    /// Severity, critical first by default.
    Severity,
    /// cluster/namespace/kind/workload/container, A to Z by default.
    Name,
}

/// Output format of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (default).
    Json,
    /// CSV export of every match (no pagination).
    Csv,
}

/// A parsed, validated list query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    cluster: Option<String>,
    namespace: Option<NameMatch>,
    kind: Option<String>,
    name: Option<NameMatch>,
    selector: Option<Vec<Requirement>>,
    severity: Option<Severity>,
    confidence: Option<Confidence>,
    status: Option<Status>,
    min_savings: Option<f64>,
    sort: SortBy,
    descending: bool,
    /// Page size.
    pub limit: usize,
    cursor: Option<Cursor>,
    /// JSON or CSV.
    pub format: Format,
}

/// Parameters the recommendations list takes.
pub const LIST_PARAMS: &[&str] = &[
    "cluster",
    "namespace",
    "kind",
    "name",
    "selector",
    "severity",
    "confidence",
    "status",
    "min_savings",
    "sort",
    "order",
    "limit",
    "cursor",
    "format",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// Sort the cursor belongs to.
    s: SortBy,
    /// Descending?
    d: bool,
    /// Sort value of the last item.
    v: f64,
    /// Key of the last item.
    k: ContainerKey,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a cursor always serializes"))
    }

    fn decode(value: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::BadRequest(
                "parameter `cursor` is not a cursor returned by this API (next_cursor)".into(),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

/// `min_savings`: a finite amount of money per month.
fn money_param(v: &str) -> Result<f64, ApiError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter `min_savings` must be a number (money per month); got `{v}`"
            ))
        })
}

/// The values of `severity`, `confidence` and `status`, as the API spells them.
const SEVERITIES: &[(&str, Severity)] = &[
    ("info", Severity::Info),
    ("warning", Severity::Warning),
    ("critical", Severity::Critical),
];
const CONFIDENCES: &[(&str, Confidence)] = &[
    ("low", Confidence::Low),
    ("medium", Confidence::Medium),
    ("high", Confidence::High),
];
const STATUSES: &[(&str, Status)] = &[
    ("ok", Status::Ok),
    ("no-change", Status::NoChange),
    ("insufficient-data", Status::InsufficientData),
];

impl ListQuery {
    /// Parses and validates the parameters; `accept_csv` is true when the Accept header asks for CSV.
    pub fn parse(raw: &RawParams, accept_csv: bool) -> Result<Self, ApiError> {
        let p = check_names(raw, LIST_PARAMS)?;
        let get = |n: &str| p.get(n).map(String::as_str);
        let sort = match get("sort") {
            None => SortBy::Savings,
            Some(v) => one_of(
                "sort",
                v,
                &[
                    ("savings", SortBy::Savings),
                    ("severity", SortBy::Severity),
                    ("name", SortBy::Name),
                ],
            )?,
        };
        let descending = match get("order") {
            None => sort != SortBy::Name,
            Some(v) => one_of("order", v, &[("asc", false), ("desc", true)])?,
        };
        let limit = limit_param(get("limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
        let cursor = get("cursor").map(Cursor::decode).transpose()?;
        if let Some(c) = &cursor {
            if c.s != sort || c.d != descending {
                return Err(ApiError::BadRequest(
                    "parameter `cursor` belongs to a different sort or order".into(),
                ));
            }
        }
        let format = match get("format") {
            None if accept_csv => Format::Csv,
            None => Format::Json,
            Some(v) => one_of("format", v, &[("json", Format::Json), ("csv", Format::Csv)])?,
        };
        let min_savings = get("min_savings").map(money_param).transpose()?;
        Ok(ListQuery {
            cluster: get("cluster")
                .map(|v| non_empty("cluster", v))
                .transpose()?,
            namespace: get("namespace")
                .map(|v| NameMatch::parse("namespace", v))
                .transpose()?,
            kind: get("kind").map(|v| non_empty("kind", v)).transpose()?,
            name: get("name")
                .map(|v| NameMatch::parse("name", v))
                .transpose()?,
            selector: get("selector").map(parse_selector).transpose()?,
            severity: get("severity")
                .map(|v| one_of("severity", v, SEVERITIES))
                .transpose()?,
            confidence: get("confidence")
                .map(|v| one_of("confidence", v, CONFIDENCES))
                .transpose()?,
            status: get("status")
                .map(|v| one_of("status", v, STATUSES))
                .transpose()?,
            min_savings,
            sort,
            descending,
            limit,
            cursor,
            format,
        })
    }

    /// `namespaces`: the namespaces a glob matched, worked out once per request (a glob
    /// per item would cost more than the rest of the filter together).
    fn matches(
        &self,
        r: &Recommendation,
        workloads: &BTreeMap<crate::model::WorkloadKey, WorkloadInfo>,
        namespaces: Option<&std::collections::HashSet<&str>>,
    ) -> bool {
        let k = &r.key;
        self.cluster.as_ref().is_none_or(|c| *c == k.cluster)
            && match (namespaces, &self.namespace) {
                (Some(allowed), _) => allowed.contains(k.namespace.as_str()),
                (None, Some(n)) => n.matches(&k.namespace),
                (None, None) => true,
            }
            && self.kind.as_ref().is_none_or(|x| *x == k.kind)
            && self.name.as_ref().is_none_or(|n| n.matches(&k.workload))
            && self.severity.is_none_or(|s| s == r.severity)
            && self.confidence.is_none_or(|c| c == r.confidence)
            && self.status.is_none_or(|s| s == r.status)
            && self.min_savings.is_none_or(|m| savings(r) >= m)
            && self.selector.as_ref().is_none_or(|sel| {
                selector_matches(sel, workloads.get(&k.workload_key()).map(|w| &w.labels))
            })
    }
}

/// The order of a list: by the sort value (descending when asked), ties by key ascending,
/// so pages are stable whatever the order.
pub fn compare(
    sort: SortBy,
    descending: bool,
    a: (f64, &ContainerKey),
    b: (f64, &ContainerKey),
) -> Ordering {
    if sort == SortBy::Name {
        let by_key = a.1.cmp(b.1);
        return if descending { by_key.reverse() } else { by_key };
    }
    let by_value = a.0.total_cmp(&b.0);
    let by_value = if descending {
        by_value.reverse()
    } else {
        by_value
    };
    by_value.then_with(|| a.1.cmp(b.1))
}

/// The sort value of a recommendation.
pub fn sort_value(sort: SortBy, r: &Recommendation) -> f64 {
    match sort {
        SortBy::Savings => savings(r),
        SortBy::Severity => r.severity as u8 as f64,
        SortBy::Name => 0.0,
    }
}

/// A page of results: indexes into the snapshot's recommendations.
pub struct Page {
    /// The items of this page.
    pub items: Vec<usize>,
    /// Matches in total.
    pub total: usize,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// Filters and pages the snapshot along its presorted order (CSV: every match). One pass,
/// no sorting and no allocation per item: a page of the whole fleet costs microseconds.
pub fn page(snapshot: &Snapshot, q: &ListQuery) -> Page {
    let recs = &snapshot.recommendations;
    let mut items = Vec::with_capacity(q.limit.min(recs.len()));
    let mut total = 0;
    let mut more = false;
    let mut past_cursor = q.cursor.is_none();
    let namespaces: Option<std::collections::HashSet<&str>> = match &q.namespace {
        Some(NameMatch::Glob(g)) => Some(
            snapshot
                .namespaces
                .iter()
                .map(String::as_str)
                .filter(|n| g.matches(n))
                .collect(),
        ),
        _ => None,
    };
    for &i in snapshot.order(q.sort, q.descending) {
        let r = &recs[i];
        if !q.matches(r, &snapshot.workloads, namespaces.as_ref()) {
            continue;
        }
        total += 1;
        if !past_cursor {
            let c = q.cursor.as_ref().expect("set when not past it");
            past_cursor = compare(
                q.sort,
                q.descending,
                (sort_value(q.sort, r), &r.key),
                (c.v, &c.k),
            ) == Ordering::Greater;
            if !past_cursor {
                continue;
            }
        }
        if q.format == Format::Csv || items.len() < q.limit {
            items.push(i);
        } else {
            more = true;
        }
    }
    let next_cursor = (more && !items.is_empty()).then(|| {
        let last = &recs[*items.last().expect("not empty")];
        Cursor {
            s: q.sort,
            d: q.descending,
            v: sort_value(q.sort, last),
            k: last.key.clone(),
        }
        .encode()
    });
    Page {
        items,
        total,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawParams {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        ListQuery::parse(&raw(pairs), false)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_bad_parameter_class_is_named() {
        assert_eq!(
            err(&[("severity", "high")]),
            "parameter `severity` must be one of info, warning, critical; got `high`"
        );
        assert_eq!(
            err(&[("limit", "-5")]),
            "parameter `limit` must be an integer from 1 to 1000; got `-5`"
        );
        assert_eq!(
            err(&[("limit", "5000")]),
            "parameter `limit` must be an integer from 1 to 1000; got `5000`"
        );
        assert_eq!(
            err(&[("cursor", "!!!")]),
            "parameter `cursor` is not a cursor returned by this API (next_cursor)"
        );
        assert!(err(&[("bogus", "1")])
            .starts_with("unknown parameter `bogus`; this endpoint takes: cluster, namespace"));
        assert_eq!(
            err(&[("kind", "a"), ("kind", "b")]),
            "parameter `kind` is given more than once"
        );
        assert_eq!(
            err(&[("namespace", "")]),
            "parameter `namespace` must not be empty"
        );
        assert!(err(&[("selector", "a=b,=c")]).starts_with("parameter `selector` must be"));
        assert_eq!(
            err(&[("min_savings", "lots")]),
            "parameter `min_savings` must be a number (money per month); got `lots`"
        );
    }

    #[test]
    fn selectors_and_globs() {
        let sel = parse_selector("app=api,tier!=db,canary,!legacy").unwrap();
        let labels: BTreeMap<String, String> = [("app", "api"), ("tier", "web"), ("canary", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(selector_matches(&sel, Some(&labels)));
        assert!(!selector_matches(&sel, None));
        assert!(NameMatch::parse("namespace", "shop-*")
            .unwrap()
            .matches("shop-eu"));
        assert!(!NameMatch::parse("namespace", "shop")
            .unwrap()
            .matches("shop-eu"));
    }
}
