//! `GET /`: fleet totals and the table of workload containers, sorted, filtered and
//! paginated on the server through query parameters so it works without JavaScript.

use std::collections::BTreeSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Html;
use maud::{html, Markup};

use super::html::{self, encode_component, money};
use super::PageError;
use crate::fleet::{savings, Totals};
use crate::http::AppState;
use crate::model::{Confidence, Recommendation, Severity, Status};
use crate::quantity;

/// Rows per page.
pub const PAGE_ROWS: usize = 200;

/// Column the table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Monthly savings (the negated cost delta).
    Savings,
    /// Critical, warning, info.
    Severity,
    /// Namespace, kind, workload, container.
    Name,
}

impl SortKey {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "savings" => Some(SortKey::Savings),
            "severity" => Some(SortKey::Severity),
            "name" => Some(SortKey::Name),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SortKey::Savings => "savings",
            SortKey::Severity => "severity",
            SortKey::Name => "name",
        }
    }

    /// The order a first click on the column asks for: biggest or worst first, names A–Z.
    fn default_order(self) -> Order {
        match self {
            SortKey::Name => Order::Asc,
            _ => Order::Desc,
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    fn flip(self) -> Self {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

/// What the fleet page shows: parsed and validated query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    sort: SortKey,
    order: Order,
    cluster: Option<String>,
    namespace: Option<String>,
    q: Option<String>,
    severity: Option<Severity>,
    status: Option<Status>,
    page: usize,
}

const PARAMS: &str = "sort, order, cluster, namespace, q, severity, status, page";

fn parse_severity(s: &str) -> Option<Severity> {
    match s {
        "info" => Some(Severity::Info),
        "warning" => Some(Severity::Warning),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

fn parse_order(s: &str) -> Option<Order> {
    match s {
        "asc" => Some(Order::Asc),
        "desc" => Some(Order::Desc),
        _ => None,
    }
}

/// `parse(value)`, or the error naming the parameter and the values it takes.
fn known<T>(
    name: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<T, PageError> {
    parse(value).ok_or_else(|| {
        PageError::bad(
            name,
            format!("unknown value {value:?}; expected {expected}"),
        )
    })
}

fn parse_status(s: &str) -> Option<Status> {
    [Status::Ok, Status::NoChange, Status::InsufficientData]
        .into_iter()
        .find(|st| st.as_str() == s)
}

impl View {
    /// Validates the query pairs; an empty value means "not set" (what a blank form field sends).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, PageError> {
        let mut view = View {
            sort: SortKey::Savings,
            order: Order::Desc,
            cluster: None,
            namespace: None,
            q: None,
            severity: None,
            status: None,
            page: 1,
        };
        let mut order = None;
        let mut seen = BTreeSet::new();
        for (name, value) in pairs {
            if !seen.insert(name.as_str()) {
                return Err(PageError::bad(name, "given more than once"));
            }
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match name.as_str() {
                "sort" => {
                    view.sort = known("sort", value, SortKey::parse, "savings, severity or name")?
                }
                "order" => order = Some(known("order", value, parse_order, "asc or desc")?),
                "cluster" => view.cluster = Some(value.to_string()),
                "namespace" => view.namespace = Some(value.to_string()),
                "q" => view.q = Some(value.to_string()),
                "severity" => {
                    let expected = "info, warning or critical";
                    view.severity = Some(known("severity", value, parse_severity, expected)?);
                }
                "status" => {
                    let expected = "ok, no-change or insufficient-data";
                    view.status = Some(known("status", value, parse_status, expected)?);
                }
                "page" => {
                    view.page =
                        value
                            .parse::<usize>()
                            .ok()
                            .filter(|p| *p >= 1)
                            .ok_or_else(|| {
                                PageError::bad(
                                    "page",
                                    format!("{value:?} is not a page number (1, 2, …)"),
                                )
                            })?;
                }
                other => {
                    return Err(PageError::bad(
                        other,
                        format!("unknown parameter; expected one of {PARAMS}"),
                    ))
                }
            }
        }
        view.order = order.unwrap_or(view.sort.default_order());
        Ok(view)
    }

    fn matches(&self, r: &Recommendation) -> bool {
        let key = &r.key;
        self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.severity.is_none_or(|s| s == r.severity)
            && self.status.is_none_or(|s| s == r.status)
            && self.q.as_ref().is_none_or(|q| {
                let q = q.to_lowercase();
                [&key.namespace, &key.kind, &key.workload, &key.container]
                    .iter()
                    .any(|field| field.to_lowercase().contains(&q))
            })
    }

    /// Sorts rows; ties fall back to the name, ascending, so pages are stable.
    pub fn sort(&self, rows: &mut [&Recommendation]) {
        let name = |r: &Recommendation| {
            (
                r.key.namespace.clone(),
                r.key.kind.clone(),
                r.key.workload.clone(),
                r.key.container.clone(),
                r.key.cluster.clone(),
            )
        };
        rows.sort_by_cached_key(|r| name(r));
        let directed = |o: std::cmp::Ordering| match self.order {
            Order::Asc => o,
            Order::Desc => o.reverse(),
        };
        match self.sort {
            SortKey::Name => {
                if self.order == Order::Desc {
                    rows.reverse();
                }
            }
            SortKey::Savings => rows.sort_by(|a, b| directed(savings(a).total_cmp(&savings(b)))),
            SortKey::Severity => rows.sort_by(|a, b| {
                directed(
                    a.severity
                        .cmp(&b.severity)
                        .then(savings(a).total_cmp(&savings(b))),
                )
            }),
        }
    }

    /// Link to this view with another sort and page.
    fn href(&self, sort: SortKey, order: Order, page: usize) -> String {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if sort != SortKey::Savings || order != Order::Desc {
            params.push(("sort", sort.as_str()));
            params.push(("order", order.as_str()));
        }
        for (name, value) in [
            ("cluster", self.cluster.as_deref()),
            ("namespace", self.namespace.as_deref()),
            ("q", self.q.as_deref()),
            ("severity", self.severity.map(Severity::as_str)),
            ("status", self.status.map(Status::as_str)),
        ] {
            if let Some(v) = value {
                params.push((name, v));
            }
        }
        let page = page.to_string();
        if page != "1" {
            params.push(("page", &page));
        }
        let mut href = String::from("/");
        for (i, (name, value)) in params.iter().enumerate() {
            href.push(if i == 0 { '?' } else { '&' });
            href.push_str(name);
            href.push('=');
            href.push_str(&encode_component(value));
        }
        href
    }

    fn is_filtered(&self) -> bool {
        self.namespace.is_some()
            || self.q.is_some()
            || self.severity.is_some()
            || self.status.is_some()
            || self.cluster.is_some()
    }
}

/// The fleet page.
pub async fn page(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Html<String>, PageError> {
    let Query(pairs) = query.map_err(|e| PageError::bad("query", e.body_text()))?;
    let view = View::parse(&pairs)?;
    // The API's in-memory snapshot: a 10,000-container fleet renders without 10,000 JSON decodes.
    let snapshot = state.snapshot.get().await?;
    let all: Vec<&Recommendation> = snapshot
        .recommendations
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| view.cluster.as_ref().is_none_or(|c| *c == r.key.cluster))
        .collect();
    let mut rows: Vec<&Recommendation> = all.iter().copied().filter(|r| view.matches(r)).collect();
    view.sort(&mut rows);
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    if view.page > pages {
        return Err(PageError::bad(
            "page",
            format!("page {} is past the last page, {pages}", view.page),
        ));
    }
    let namespaces: BTreeSet<&str> = all.iter().map(|r| r.key.namespace.as_str()).collect();
    let clusters: BTreeSet<&str> = all.iter().map(|r| r.key.cluster.as_str()).collect();
    let totals = Totals::of(rows.iter().copied());

    let changes = state
        .store
        .changes(view.cluster.as_deref(), RECENT_CHANGES)
        .await?;
    let shown = (!rows.is_empty()).then(|| {
        let start = (view.page - 1) * PAGE_ROWS;
        (start, &rows[start..(start + PAGE_ROWS).min(rows.len())])
    });
    // Line breaks between blocks keep the page source readable.
    let body = html! {
        h1 { "Fleet" } "\n"
        p class="sub" {
            (totals.containers) " containers in " (totals.workloads) " workloads"
            @if view.is_filtered() {
                " match the filters (of " (all.len()) " stored) · " a href="/" { "clear filters" }
            }
        }
        "\n"
        (render_totals(&view, &totals))
        (render_filters(&view, &namespaces, &clusters))
        @if all.is_empty() {
            p class="empty" {
                "No recommendations yet. Run " code { "rightsizer collect" } " and "
                code { "rightsizer analyze" } ", or let " code { "rightsizer serve" }
                " do it on schedule."
            }
            "\n"
        } @else if let Some((start, shown)) = shown {
            (render_table(&view, shown, clusters.len() > 1, pages))
            (render_pager(&view, start, shown.len(), rows.len(), pages))
        } @else {
            p class="empty" { "No container matches these filters." } "\n"
        }
        (render_changes(&changes))
    };
    Ok(Html(html::page("Fleet", body)))
}

/// In-place changes listed under the fleet table (`/api/v1/changes` has them all).
const RECENT_CHANGES: usize = 10;

/// The latest in-place resizes and rollbacks, when there are any.
fn render_changes(changes: &[crate::model::ChangeRecord]) -> Markup {
    use crate::quantity::{cpu_opt, memory_opt};
    if changes.is_empty() {
        return html! {};
    }
    let cpu = |r: &crate::model::Resources| {
        format!(
            "{}/{}",
            cpu_opt(r.cpu_request_millicores),
            cpu_opt(r.cpu_limit_millicores)
        )
    };
    let memory = |r: &crate::model::Resources| {
        format!(
            "{}/{}",
            memory_opt(r.memory_request_bytes),
            memory_opt(r.memory_limit_bytes)
        )
    };
    html! {
        section class="changes" {
            h2 { "Recent in-place changes" }
            table class="fleet" {
                thead {
                    tr {
                        th { "when" } th { "pod / container" } th { "what" }
                        th { "CPU req/lim" } th { "memory req/lim" } th { "outcome" } th { "by" }
                    }
                }
                tbody {
                    "\n"
                    @for c in changes {
                        tr data-change=(c.id) data-kind=(c.kind) {
                            td { (html::timestamp(c.at)) }
                            td { (c.namespace) "/" (c.pod) " · " (c.container) }
                            td { (c.kind) }
                            td { (cpu(&c.before)) " → " (cpu(&c.after)) }
                            td { (memory(&c.before)) " → " (memory(&c.after)) }
                            td { (c.outcome) }
                            td { (c.actor) }
                        }
                        "\n"
                    }
                }
            }
        }
        "\n"
    }
}

fn bar_row(label: &str, class: &str, value: f64, max: f64, unit: &str) -> Markup {
    let width = if max > 0.0 { value / max * 100.0 } else { 0.0 };
    html! {
        div class="meter" {
            span class="meter-label" { (label) }
            span class="meter-track" {
                span class={ "meter-fill " (class) } style={ "width:" (format!("{width:.1}")) "%" } {}
            }
            span class="meter-value" data-total=(class) { (html::group_thousands(value, 1)) " " (unit) }
        }
    }
}

fn render_totals(view: &View, t: &Totals) -> Markup {
    let resources = [
        (
            "CPU",
            "cores",
            [t.requested_cores, t.used_cores, t.recommended_cores],
            "cpu",
        ),
        (
            "Memory",
            "GiB",
            [t.requested_gib, t.used_gib, t.recommended_gib],
            "memory",
        ),
    ];
    let labels = ["requested", "used (mean)", "recommended"];
    let suffixes = ["requested", "used", "recommended"];
    html! {
        section class="cards" {
            "\n"
            @for (title, unit, values, key) in resources {
                @let max = values.iter().copied().fold(f64::MIN, f64::max);
                div class="card" data-card=(key) {
                    h2 { (title) }
                    @for i in 0..3 {
                        (bar_row(labels[i], &format!("{key}-{}", suffixes[i]), values[i], max, unit))
                    }
                }
                "\n"
            }
            (money_card(t)) "\n"
            div class="card" data-card="severity" {
                h2 { "Severity" }
                ul class="counts" {
                    @for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
                        @let filtered = View { severity: Some(severity), ..view.clone() };
                        @let s = severity.as_str();
                        li {
                            a href=(filtered.href(view.sort, view.order, 1)) {
                                span class={ "badge sev-" (s) } { (s) } " "
                                b data-count=(s) { (t.by_severity[severity as usize]) }
                            }
                        }
                    }
                }
                p class="muted" {
                    (t.by_status[0]) " proposals · " (t.by_status[1]) " no change · "
                    (t.by_status[2]) " insufficient data"
                }
            }
            "\n"
        }
        "\n"
    }
}

/// What applying the proposals saves per month, or costs when they add capacity.
fn money_card(t: &Totals) -> Markup {
    let saves = t.monthly_savings >= 0.0;
    let (headline, note) = if saves {
        (
            money(t.monthly_savings, &t.currency),
            "saved per month by applying the proposals",
        )
    } else {
        (
            money(-t.monthly_savings, &t.currency),
            "more per month: the proposals add capacity where it is short",
        )
    };
    html! {
        div class="card" data-card="money" {
            h2 { "Money" }
            p class={ "big " (if saves { "good" } else { "bad" }) } data-total="savings" { (headline) }
            p class="muted" { (note) }
        }
    }
}

fn options<'a>(
    any: &str,
    values: impl IntoIterator<Item = &'a str>,
    selected: Option<&str>,
) -> Markup {
    html! {
        option value="" selected[selected.is_none()] { (any) }
        @for v in values {
            option value=(v) selected[selected == Some(v)] { (v) }
        }
    }
}

fn render_filters(view: &View, namespaces: &BTreeSet<&str>, clusters: &BTreeSet<&str>) -> Markup {
    let severities = [Severity::Critical, Severity::Warning, Severity::Info].map(Severity::as_str);
    let statuses = [Status::Ok, Status::NoChange, Status::InsufficientData].map(Status::as_str);
    html! {
        form class="filters" method="get" action="/" {
            "\n"
            @if clusters.len() > 1 || view.cluster.is_some() {
                label {
                    "Cluster "
                    select name="cluster" { (options("all", clusters.iter().copied(), view.cluster.as_deref())) }
                }
                "\n"
            }
            label {
                "Namespace "
                select name="namespace" { (options("all", namespaces.iter().copied(), view.namespace.as_deref())) }
            }
            "\n"
            label {
                "Severity "
                select name="severity" { (options("any", severities, view.severity.map(Severity::as_str))) }
            }
            "\n"
            label {
                "Status "
                select name="status" { (options("any", statuses, view.status.map(Status::as_str))) }
            }
            "\n"
            label {
                "Search "
                input type="search" name="q" value=(view.q.as_deref().unwrap_or("")) placeholder="name contains…";
            }
            "\n"
            input type="hidden" name="sort" value=(view.sort.as_str());
            input type="hidden" name="order" value=(view.order.as_str());
            "\n"
            button type="submit" { "Apply" } " " a class="reset" href="/" { "Reset" }
            "\n"
        }
        "\n"
    }
}

/// A header cell: a sort link for server-sortable columns, plain text (sortable by the
/// script on a single page) for the others.
fn header(view: &View, label: &str, sort: Option<SortKey>, kind: &str) -> Markup {
    let Some(key) = sort else {
        return html! { th data-type=(kind) { (label) } };
    };
    let active = view.sort == key;
    let order = if active {
        view.order.flip()
    } else {
        key.default_order()
    };
    let (aria, arrow) = match (active, view.order) {
        (false, _) => (None, ""),
        (true, Order::Asc) => (Some("ascending"), " ▲"),
        (true, Order::Desc) => (Some("descending"), " ▼"),
    };
    html! {
        th data-type=(kind) data-sort=(key.as_str()) aria-sort=[aria] {
            a href=(view.href(key, order, 1)) { (label) (arrow) }
        }
    }
}

fn change_cell(
    current: Option<i64>,
    recommended: Option<i64>,
    proposed: bool,
    fmt: fn(Option<i64>) -> String,
) -> Markup {
    let direction = match (current, recommended) {
        _ if !proposed || recommended == current => None,
        (Some(c), Some(r)) if r < c => Some("down"),
        (Some(_), Some(_)) => Some("up"),
        _ => Some("set"),
    };
    html! {
        td class="num" data-v=(current.unwrap_or(0)) {
            (fmt(current))
            @if let Some(direction) = direction {
                " " span class={ "arrow " (direction) } { "→" } " " b { (fmt(recommended)) }
            }
        }
    }
}

/// Link to a workload page, optionally to one container's section.
pub fn workload_href(r: &Recommendation) -> String {
    format!(
        "/workloads/{}/{}/{}/{}",
        encode_component(&r.key.cluster),
        encode_component(&r.key.namespace),
        encode_component(&r.key.kind),
        encode_component(&r.key.workload)
    )
}

fn render_table(view: &View, rows: &[&Recommendation], with_cluster: bool, pages: usize) -> Markup {
    html! {
        div class="table-wrap" {
            table class="fleet sortable" data-pages=(pages) {
                "\n"
                thead {
                    tr {
                        @if with_cluster { (header(view, "Cluster", None, "text")) }
                        (header(view, "Namespace", None, "text"))
                        (header(view, "Kind", None, "text"))
                        (header(view, "Workload", Some(SortKey::Name), "text"))
                        (header(view, "Container", None, "text"))
                        (header(view, "CPU request", None, "num"))
                        (header(view, "Memory request", None, "num"))
                        (header(view, "Confidence", None, "num"))
                        (header(view, "Severity", Some(SortKey::Severity), "num"))
                        (header(view, "Savings / month", Some(SortKey::Savings), "num"))
                        (header(view, "Status", None, "text"))
                    }
                }
                "\n"
                tbody {
                    "\n"
                    @for r in rows { (table_row(r, with_cluster)) "\n" }
                }
            }
        }
        "\n"
    }
}

/// One container of the fleet table; `data-v` holds what the script sorts by.
fn table_row(r: &Recommendation, with_cluster: bool) -> Markup {
    let k = &r.key;
    let proposed = r.status == Status::Ok;
    let href = workload_href(r);
    let confidence_rank = match r.confidence {
        Confidence::Low => 0,
        Confidence::Medium => 1,
        Confidence::High => 2,
    };
    let s = r.severity.as_str();
    let st = r.status.as_str();
    html! {
        tr data-key={ (k.namespace) "/" (k.kind) "/" (k.workload) "/" (k.container) } {
            @if with_cluster { td { (k.cluster) } }
            td { (k.namespace) }
            td { (k.kind) }
            td data-v={ (k.namespace) "/" (k.kind) "/" (k.workload) "/" (k.container) } {
                a href=(href) { (k.workload) }
            }
            td { a href={ (href) "#container-" (encode_component(&k.container)) } { (k.container) } }
            (change_cell(r.current.cpu_request_millicores, r.recommended.cpu_request_millicores, proposed, quantity::cpu_opt))
            (change_cell(r.current.memory_request_bytes, r.recommended.memory_request_bytes, proposed, quantity::memory_opt))
            td data-v=(confidence_rank) { (r.confidence.as_str()) }
            td data-v=(r.severity as usize) { span class={ "badge sev-" (s) } { (s) } }
            td class="num" data-v=(format!("{:.4}", savings(r))) {
                @match &r.impact {
                    Some(i) if i.monthly_cost_delta != 0.0 => {
                        @let saved = -i.monthly_cost_delta;
                        span class=(if saved >= 0.0 { "good" } else { "bad" }) { (money(saved, &i.currency)) }
                    }
                    _ => { span class="muted" { "—" } }
                }
            }
            td { span class={ "status st-" (st) } { (st) } }
        }
    }
}

fn render_pager(view: &View, start: usize, shown: usize, total: usize, pages: usize) -> Markup {
    html! {
        nav class="pager" aria-label="pages" {
            span { "rows " (start + 1) "–" (start + shown) " of " (total) " · page " (view.page) " of " (pages) }
            @if view.page > 1 {
                " " a rel="prev" href=(view.href(view.sort, view.order, view.page - 1)) { "← previous" }
            }
            @if view.page < pages {
                " " a rel="next" href=(view.href(view.sort, view.order, view.page + 1)) { "next →" }
            }
        }
        "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_defaults_and_blank_form_fields() {
        let view = View::parse(&pairs(&[("namespace", ""), ("q", " ")])).unwrap();
        assert_eq!(view.sort, SortKey::Savings);
        assert_eq!(view.order, Order::Desc);
        assert_eq!(view.namespace, None);
        assert_eq!(
            view.href(SortKey::Name, Order::Asc, 1),
            "/?sort=name&order=asc"
        );
        let view = View::parse(&pairs(&[("sort", "name"), ("q", "a b&c"), ("page", "2")])).unwrap();
        assert_eq!(view.order, Order::Asc);
        assert_eq!(
            view.href(SortKey::Name, Order::Desc, 3),
            "/?sort=name&order=desc&q=a%20b%26c&page=3"
        );
    }

    #[test]
    fn names_the_bad_parameter() {
        for (q, param) in [
            (pairs(&[("sort", "cost")]), "sort"),
            (pairs(&[("order", "up")]), "order"),
            (pairs(&[("severity", "high")]), "severity"),
            (pairs(&[("status", "fine")]), "status"),
            (pairs(&[("page", "0")]), "page"),
            (pairs(&[("page", "-1")]), "page"),
            (pairs(&[("limit", "5")]), "limit"),
            (pairs(&[("q", "a"), ("q", "b")]), "q"),
        ] {
            match View::parse(&q) {
                Err(PageError::BadRequest { param: p, .. }) => assert_eq!(p, param),
                other => panic!("{q:?}: {other:?}"),
            }
        }
    }
}
