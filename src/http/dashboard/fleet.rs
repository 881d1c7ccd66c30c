//! `GET /`: fleet totals and the table of workload containers, sorted, filtered and
//! paginated on the server through query parameters so it works without JavaScript.

use std::collections::BTreeSet;
use std::fmt::Write;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Html;

use super::html::{self, encode_component, money, Esc};
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
                    view.sort = SortKey::parse(value).ok_or_else(|| {
                        PageError::bad(
                            "sort",
                            format!("unknown value {value:?}; expected savings, severity or name"),
                        )
                    })?;
                }
                "order" => {
                    order = Some(match value {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => {
                            return Err(PageError::bad(
                                "order",
                                format!("unknown value {value:?}; expected asc or desc"),
                            ))
                        }
                    });
                }
                "cluster" => view.cluster = Some(value.to_string()),
                "namespace" => view.namespace = Some(value.to_string()),
                "q" => view.q = Some(value.to_string()),
                "severity" => {
                    view.severity = Some(parse_severity(value).ok_or_else(|| {
                        PageError::bad(
                            "severity",
                            format!("unknown value {value:?}; expected info, warning or critical"),
                        )
                    })?);
                }
                "status" => {
                    view.status = Some(parse_status(value).ok_or_else(|| {
                        PageError::bad(
                            "status",
                            format!(
                                "unknown value {value:?}; expected ok, no-change or insufficient-data"
                            ),
                        )
                    })?);
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

    let mut body = String::with_capacity(64 * 1024);
    let _ = write!(
        body,
        "<h1>Fleet</h1>\n<p class=\"sub\">{} containers in {} workloads{}</p>\n",
        totals.containers,
        totals.workloads,
        if view.is_filtered() {
            format!(
                " match the filters (of {} stored) · <a href=\"/\">clear filters</a>",
                all.len()
            )
        } else {
            String::new()
        }
    );
    render_totals(&mut body, &view, &totals);
    render_filters(&mut body, &view, &namespaces, &clusters);
    if all.is_empty() {
        body.push_str(
            "<p class=\"empty\">No recommendations yet. Run <code>rightsizer collect</code> and \
             <code>rightsizer analyze</code>, or let <code>rightsizer serve</code> do it on schedule.</p>\n",
        );
    } else if rows.is_empty() {
        body.push_str("<p class=\"empty\">No container matches these filters.</p>\n");
    } else {
        let start = (view.page - 1) * PAGE_ROWS;
        let shown = &rows[start..(start + PAGE_ROWS).min(rows.len())];
        render_table(&mut body, &view, shown, clusters.len() > 1, pages);
        render_pager(&mut body, &view, start, shown.len(), rows.len(), pages);
    }
    let changes = state
        .store
        .changes(view.cluster.as_deref(), RECENT_CHANGES)
        .await?;
    render_changes(&mut body, &changes);
    Ok(Html(html::page("Fleet", &body)))
}

/// In-place changes listed under the fleet table (`/api/v1/changes` has them all).
const RECENT_CHANGES: usize = 10;

/// The latest in-place resizes and rollbacks, when there are any.
fn render_changes(out: &mut String, changes: &[crate::model::ChangeRecord]) {
    use crate::quantity::{cpu_opt, memory_opt};
    if changes.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"changes\"><h2>Recent in-place changes</h2>\
         <table class=\"fleet\"><thead><tr><th>when</th><th>pod / container</th><th>what</th>\
         <th>CPU req/lim</th><th>memory req/lim</th><th>outcome</th><th>by</th></tr></thead><tbody>\n",
    );
    for c in changes {
        let pair = |r: &crate::model::Resources, cpu: bool| {
            if cpu {
                format!(
                    "{}/{}",
                    cpu_opt(r.cpu_request_millicores),
                    cpu_opt(r.cpu_limit_millicores)
                )
            } else {
                format!(
                    "{}/{}",
                    memory_opt(r.memory_request_bytes),
                    memory_opt(r.memory_limit_bytes)
                )
            }
        };
        let _ = writeln!(
            out,
            "<tr data-change=\"{id}\" data-kind=\"{kind}\"><td>{at}</td><td>{ns}/{pod} · {container}</td><td>{kind}</td>\
             <td>{cb} → {ca}</td><td>{mb} → {ma}</td><td>{outcome}</td><td>{actor}</td></tr>",
            id = c.id,
            kind = Esc(&c.kind),
            at = Esc(&html::timestamp(c.at)),
            ns = Esc(&c.namespace),
            pod = Esc(&c.pod),
            container = Esc(&c.container),
            cb = Esc(&pair(&c.before, true)),
            ca = Esc(&pair(&c.after, true)),
            mb = Esc(&pair(&c.before, false)),
            ma = Esc(&pair(&c.after, false)),
            outcome = Esc(&c.outcome),
            actor = Esc(&c.actor),
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn bar_row(out: &mut String, label: &str, class: &str, value: f64, max: f64, unit: &str) {
    let width = if max > 0.0 { value / max * 100.0 } else { 0.0 };
    let _ = write!(
        out,
        "<div class=\"meter\"><span class=\"meter-label\">{label}</span>\
         <span class=\"meter-track\"><span class=\"meter-fill {class}\" style=\"width:{width:.1}%\"></span></span>\
         <span class=\"meter-value\" data-total=\"{class}\">{} {unit}</span></div>",
        html::group_thousands(value, 1)
    );
}

fn render_totals(out: &mut String, view: &View, t: &Totals) {
    out.push_str("<section class=\"cards\">\n");
    for (title, unit, requested, used, recommended, key) in [
        (
            "CPU",
            "cores",
            t.requested_cores,
            t.used_cores,
            t.recommended_cores,
            "cpu",
        ),
        (
            "Memory",
            "GiB",
            t.requested_gib,
            t.used_gib,
            t.recommended_gib,
            "memory",
        ),
    ] {
        let max = requested.max(used).max(recommended);
        let _ = write!(
            out,
            "<div class=\"card\" data-card=\"{key}\"><h2>{title}</h2>"
        );
        bar_row(
            out,
            "requested",
            &format!("{key}-requested"),
            requested,
            max,
            unit,
        );
        bar_row(out, "used (mean)", &format!("{key}-used"), used, max, unit);
        bar_row(
            out,
            "recommended",
            &format!("{key}-recommended"),
            recommended,
            max,
            unit,
        );
        out.push_str("</div>\n");
    }
    let (headline, note) = if t.monthly_savings >= 0.0 {
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
    let _ = writeln!(
        out,
        "<div class=\"card\" data-card=\"money\"><h2>Money</h2>\
         <p class=\"big {}\" data-total=\"savings\">{}</p><p class=\"muted\">{}</p></div>",
        if t.monthly_savings >= 0.0 {
            "good"
        } else {
            "bad"
        },
        headline,
        note
    );
    out.push_str(
        "<div class=\"card\" data-card=\"severity\"><h2>Severity</h2><ul class=\"counts\">",
    );
    for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
        let mut filtered = view.clone();
        filtered.severity = Some(severity);
        let _ = write!(
            out,
            "<li><a href=\"{}\"><span class=\"badge sev-{s}\">{s}</span> \
             <b data-count=\"{s}\">{}</b></a></li>",
            Esc(&filtered.href(view.sort, view.order, 1)),
            t.by_severity[severity as usize],
            s = severity.as_str(),
        );
    }
    let _ = writeln!(
        out,
        "</ul><p class=\"muted\">{} proposals · {} no change · {} insufficient data</p></div>",
        t.by_status[0], t.by_status[1], t.by_status[2]
    );
    out.push_str("</section>\n");
}

fn option(out: &mut String, value: &str, label: &str, selected: bool) {
    let _ = write!(
        out,
        "<option value=\"{}\"{}>{}</option>",
        Esc(value),
        if selected { " selected" } else { "" },
        Esc(label)
    );
}

fn render_filters(
    out: &mut String,
    view: &View,
    namespaces: &BTreeSet<&str>,
    clusters: &BTreeSet<&str>,
) {
    out.push_str("<form class=\"filters\" method=\"get\" action=\"/\">\n");
    if clusters.len() > 1 || view.cluster.is_some() {
        out.push_str("<label>Cluster <select name=\"cluster\">");
        option(out, "", "all", view.cluster.is_none());
        for c in clusters {
            option(out, c, c, view.cluster.as_deref() == Some(c));
        }
        out.push_str("</select></label>\n");
    }
    out.push_str("<label>Namespace <select name=\"namespace\">");
    option(out, "", "all", view.namespace.is_none());
    for ns in namespaces {
        option(out, ns, ns, view.namespace.as_deref() == Some(ns));
    }
    out.push_str("</select></label>\n<label>Severity <select name=\"severity\">");
    option(out, "", "any", view.severity.is_none());
    for s in [Severity::Critical, Severity::Warning, Severity::Info] {
        option(out, s.as_str(), s.as_str(), view.severity == Some(s));
    }
    out.push_str("</select></label>\n<label>Status <select name=\"status\">");
    option(out, "", "any", view.status.is_none());
    for s in [Status::Ok, Status::NoChange, Status::InsufficientData] {
        option(out, s.as_str(), s.as_str(), view.status == Some(s));
    }
    let _ = write!(
        out,
        "</select></label>\n<label>Search <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"name contains…\"></label>\n\
         <input type=\"hidden\" name=\"sort\" value=\"{}\"><input type=\"hidden\" name=\"order\" value=\"{}\">\n\
         <button type=\"submit\">Apply</button> <a class=\"reset\" href=\"/\">Reset</a>\n</form>\n",
        Esc(view.q.as_deref().unwrap_or("")),
        view.sort.as_str(),
        view.order.as_str()
    );
}

/// A header cell: a sort link for server-sortable columns, plain text (sortable by the
/// script on a single page) for the others.
fn header(out: &mut String, view: &View, label: &str, sort: Option<SortKey>, kind: &str) {
    match sort {
        Some(key) => {
            let active = view.sort == key;
            let order = if active {
                view.order.flip()
            } else {
                key.default_order()
            };
            let aria = match (active, view.order) {
                (false, _) => "",
                (true, Order::Asc) => " aria-sort=\"ascending\"",
                (true, Order::Desc) => " aria-sort=\"descending\"",
            };
            let arrow = match (active, view.order) {
                (false, _) => "",
                (true, Order::Asc) => " ▲",
                (true, Order::Desc) => " ▼",
            };
            let _ = write!(
                out,
                "<th data-type=\"{kind}\" data-sort=\"{}\"{aria}><a href=\"{}\">{label}{arrow}</a></th>",
                key.as_str(),
                Esc(&view.href(key, order, 1)),
            );
        }
        None => {
            let _ = write!(out, "<th data-type=\"{kind}\">{label}</th>");
        }
    }
}

fn change_cell(
    out: &mut String,
    current: Option<i64>,
    recommended: Option<i64>,
    proposed: bool,
    fmt: fn(Option<i64>) -> String,
) {
    let now = fmt(current);
    let sort_value = current.unwrap_or(0);
    if proposed && recommended != current {
        let direction = match (current, recommended) {
            (Some(c), Some(r)) if r < c => "down",
            (Some(_), Some(_)) => "up",
            _ => "set",
        };
        let _ = write!(
            out,
            "<td class=\"num\" data-v=\"{sort_value}\">{now} <span class=\"arrow {direction}\">→</span> <b>{}</b></td>",
            fmt(recommended)
        );
    } else {
        let _ = write!(out, "<td class=\"num\" data-v=\"{sort_value}\">{now}</td>");
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

fn render_table(
    out: &mut String,
    view: &View,
    rows: &[&Recommendation],
    with_cluster: bool,
    pages: usize,
) {
    let _ = write!(
        out,
        "<div class=\"table-wrap\"><table class=\"fleet sortable\" data-pages=\"{pages}\">\n<thead><tr>"
    );
    if with_cluster {
        header(out, view, "Cluster", None, "text");
    }
    header(out, view, "Namespace", None, "text");
    header(out, view, "Kind", None, "text");
    header(out, view, "Workload", Some(SortKey::Name), "text");
    header(out, view, "Container", None, "text");
    header(out, view, "CPU request", None, "num");
    header(out, view, "Memory request", None, "num");
    header(out, view, "Confidence", None, "num");
    header(out, view, "Severity", Some(SortKey::Severity), "num");
    header(out, view, "Savings / month", Some(SortKey::Savings), "num");
    header(out, view, "Status", None, "text");
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        let k = &r.key;
        let proposed = r.status == Status::Ok;
        let _ = write!(
            out,
            "<tr data-key=\"{}/{}/{}/{}\">",
            Esc(&k.namespace),
            Esc(&k.kind),
            Esc(&k.workload),
            Esc(&k.container)
        );
        if with_cluster {
            let _ = write!(out, "<td>{}</td>", Esc(&k.cluster));
        }
        let href = workload_href(r);
        let _ = write!(
            out,
            "<td>{ns}</td><td>{kind}</td><td data-v=\"{ns}/{kind}/{w}/{c}\"><a href=\"{href}\">{w}</a></td>\
             <td><a href=\"{href}#container-{anchor}\">{c}</a></td>",
            ns = Esc(&k.namespace),
            kind = Esc(&k.kind),
            w = Esc(&k.workload),
            c = Esc(&k.container),
            anchor = encode_component(&k.container),
        );
        change_cell(
            out,
            r.current.cpu_request_millicores,
            r.recommended.cpu_request_millicores,
            proposed,
            quantity::cpu_opt,
        );
        change_cell(
            out,
            r.current.memory_request_bytes,
            r.recommended.memory_request_bytes,
            proposed,
            quantity::memory_opt,
        );
        let confidence_rank = match r.confidence {
            Confidence::Low => 0,
            Confidence::Medium => 1,
            Confidence::High => 2,
        };
        let savings_cell = match &r.impact {
            Some(i) if i.monthly_cost_delta != 0.0 => {
                let s = -i.monthly_cost_delta;
                format!(
                    "<span class=\"{}\">{}</span>",
                    if s >= 0.0 { "good" } else { "bad" },
                    money(s, &i.currency)
                )
            }
            _ => "<span class=\"muted\">—</span>".into(),
        };
        let _ = writeln!(
            out,
            "<td data-v=\"{confidence_rank}\">{}</td>\
             <td data-v=\"{sev}\"><span class=\"badge sev-{s}\">{s}</span></td>\
             <td class=\"num\" data-v=\"{savings:.4}\">{savings_cell}</td>\
             <td><span class=\"status st-{st}\">{st}</span></td></tr>",
            r.confidence.as_str(),
            sev = r.severity as usize,
            s = r.severity.as_str(),
            savings = savings(r),
            st = r.status.as_str(),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

fn render_pager(
    out: &mut String,
    view: &View,
    start: usize,
    shown: usize,
    total: usize,
    pages: usize,
) {
    let _ = write!(
        out,
        "<nav class=\"pager\" aria-label=\"pages\"><span>rows {}–{} of {total} · page {} of {pages}</span>",
        start + 1,
        start + shown,
        view.page
    );
    if view.page > 1 {
        let _ = write!(
            out,
            " <a rel=\"prev\" href=\"{}\">← previous</a>",
            Esc(&view.href(view.sort, view.order, view.page - 1))
        );
    }
    if view.page < pages {
        let _ = write!(
            out,
            " <a rel=\"next\" href=\"{}\">next →</a>",
            Esc(&view.href(view.sort, view.order, view.page + 1))
        );
    }
    out.push_str("</nav>\n");
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
