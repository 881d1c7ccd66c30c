//! `GET /workloads/{cluster}/{namespace}/{kind}/{name}`: per container, the usage
//! histogram against current and recommended requests and limits, the evidence, the
//! backtest (in-sample and held out), impact, the strategy tournament and findings; then the
//! copyable patch of the whole workload.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Html;
use maud::{html, Markup, PreEscaped};

use super::chart::{self, Mark, MarkKind, Unit};
use super::html::{self, encode_component, money, percent};
use super::timeline;
use super::PageError;
use crate::fleet::savings;
use crate::http::AppState;
use crate::model::{
    Backtest, HoldoutFigures, Recommendation, Resource, SignalHour, Status, UsageHour, WorkloadKey,
};
use crate::patch::{self, PatchFormat};
use crate::quantity;
use crate::report::holdout;
use crate::sketch::Sketch;
use crate::store::RecommendationFilter;

/// The usage of one container over its recommendation's window, merged per resource.
#[derive(Debug, Default)]
pub struct WindowUsage {
    /// CPU usage in cores.
    pub cpu: Sketch,
    /// Memory working set in bytes.
    pub memory: Sketch,
    /// Hours with any usage in the window.
    pub hours: usize,
    /// First and last hour start of the window's data (unix seconds).
    pub span: Option<(i64, i64)>,
}

/// Merges the last `window_hours` hours of `rows` (ending at the newest of them), the same
/// span the analyzer read when the collector is up to date.
pub fn merge_window(rows: &[UsageHour], window_hours: u32) -> WindowUsage {
    let Some(newest) = rows.iter().map(|u| u.hour_start).max() else {
        return WindowUsage::default();
    };
    let cutoff = if window_hours > 0 {
        newest - (i64::from(window_hours) - 1) * 3600
    } else {
        i64::MIN
    };
    let mut out = WindowUsage::default();
    let mut hours = std::collections::BTreeSet::new();
    for row in rows.iter().filter(|u| u.hour_start >= cutoff) {
        hours.insert(row.hour_start);
        match row.resource {
            Resource::Cpu => out.cpu.merge(&row.sketch),
            Resource::Memory => out.memory.merge(&row.sketch),
        }
    }
    out.hours = hours.len();
    out.span = hours.first().zip(hours.last()).map(|(a, b)| (*a, *b));
    out
}

/// The workload page.
pub async fn page(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Result<Html<String>, PageError> {
    let Path((cluster, namespace, kind, name)) =
        path.map_err(|e| PageError::bad("path", e.body_text()))?;
    let recs = state
        .store
        .recommendations(&RecommendationFilter {
            cluster: Some(cluster.clone()),
            namespace: Some(namespace.clone()),
            kind: Some(kind.clone()),
            workload: Some(name.clone()),
        })
        .await?;
    if recs.is_empty() {
        return Err(PageError::NotFound(format!(
            "no recommendation for {cluster}/{namespace}/{kind}/{name}"
        )));
    }
    // Only the window the analyzer read, never the whole history.
    let end = state.store.watermark(&cluster).await?.unwrap_or(i64::MIN);
    let window = |r: &Recommendation| {
        let window_secs = i64::from(r.evidence.window_hours.max(1)) * 3600;
        (end.saturating_sub(window_secs), end)
    };
    let usage = futures::future::try_join_all(recs.iter().map(|r| {
        let (from, to) = window(r);
        state.store.usage(&r.key, from, to)
    }))
    .await?;
    let signals = futures::future::try_join_all(recs.iter().map(|r| {
        let (from, to) = window(r);
        state.store.signals(&r.key, from, to)
    }))
    .await?;
    let workload = WorkloadKey {
        cluster,
        namespace,
        kind,
        name,
    };
    let mut containers = Vec::with_capacity(recs.len());
    for ((rec, rows), signals) in recs.iter().zip(&usage).zip(&signals) {
        let merged = merge_window(rows, rec.evidence.window_hours);
        let timelines = render_timelines(rec, rows, signals, window(rec));
        containers.push(render_container(rec, &merged, timelines));
    }
    let body = html! {
        (render_summary(&workload, &recs))
        @for container in containers { (container) }
        (render_patch(&workload, &recs))
    };
    let title = format!("{}/{}/{}", workload.namespace, workload.kind, workload.name);
    Ok(Html(html::page(&title, body)))
}

fn render_summary(w: &WorkloadKey, recs: &[Recommendation]) -> Markup {
    let worst = recs.iter().map(|r| r.severity).max().unwrap_or_default();
    let computed = recs.iter().map(|r| r.computed_at).max().unwrap_or(0);
    let json = format!(
        "/api/v1/recommendations/{}/{}/{}?cluster={}",
        encode_component(&w.namespace),
        encode_component(&w.kind),
        encode_component(&w.name),
        encode_component(&w.cluster)
    );
    // Line breaks between blocks keep the page source readable.
    html! {
        nav class="crumbs" {
            a href="/" { "Fleet" } " › "
            a href={ "/?namespace=" (encode_component(&w.namespace)) } { (w.namespace) }
            " › " (w.kind)
        }
        "\n"
        h1 { (w.name) " " span class={ "badge sev-" (worst.as_str()) } { (worst.as_str()) } }
        "\n"
        p class="sub" {
            (w.kind) " in namespace " b { (w.namespace) } " of cluster " b { (w.cluster) } " · "
            (recs.len()) " container" @if recs.len() != 1 { "s" } " · analyzed "
            (html::timestamp(computed)) " · " a href=(json) { "JSON" } " · " a href="#patch" { "patch" }
        }
        "\n"
        (summary_cards(recs))
        @if recs.len() > 1 {
            nav class="toc" {
                "Containers: "
                @for (i, r) in recs.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href={ "#container-" (encode_component(&r.key.container)) } { (r.key.container) }
                }
            }
            "\n"
        }
    }
}

/// What the workload's proposals save, and how its CPU and memory requests move.
fn summary_cards(recs: &[Recommendation]) -> Markup {
    let total_savings: f64 = recs.iter().map(savings).sum();
    let currency = recs
        .iter()
        .find_map(|r| r.impact.as_ref().map(|i| i.currency.as_str()))
        .unwrap_or("");
    let cores: f64 = recs
        .iter()
        .filter_map(|r| r.impact.as_ref())
        .map(|i| i.cpu_cores_delta)
        .sum();
    let gib: f64 = recs
        .iter()
        .filter_map(|r| r.impact.as_ref())
        .map(|i| i.memory_gib_delta)
        .sum();
    let saves = total_savings >= 0.0;
    html! {
        section class="cards" {
            div class="card" {
                h2 { "Money" }
                p class={ "big " (if saves { "good" } else { "bad" }) } { (money(total_savings.abs(), currency)) }
                p class="muted" { (if saves { "saved per month" } else { "more per month" }) }
            }
            div class="card" {
                h2 { "CPU requests" }
                p class="big" { (signed(cores, 2)) " cores" }
                p class="muted" { "across replicas" }
            }
            div class="card" {
                h2 { "Memory requests" }
                p class="big" { (signed(gib, 2)) " GiB" }
                p class="muted" { "across replicas" }
            }
        }
        "\n"
    }
}

/// `+1.25`, `−0.5`, `0`.
fn signed(value: f64, decimals: usize) -> String {
    let text = html::group_thousands(value, decimals);
    if value > 0.0 && text.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        format!("+{text}")
    } else {
        text
    }
}

fn marks(rec: &Recommendation, resource: Resource) -> Vec<Mark> {
    let (cur_req, cur_lim, rec_req, rec_lim) = match resource {
        Resource::Cpu => (
            rec.current.cpu_request_millicores,
            rec.current.cpu_limit_millicores,
            rec.recommended.cpu_request_millicores,
            rec.recommended.cpu_limit_millicores,
        ),
        Resource::Memory => (
            rec.current.memory_request_bytes,
            rec.current.memory_limit_bytes,
            rec.recommended.memory_request_bytes,
            rec.recommended.memory_limit_bytes,
        ),
    };
    let basis = match resource {
        Resource::Cpu => rec.evidence.cpu_percentile_millicores.map(|v| {
            (
                v,
                format!("p{} usage", trim_number(rec.evidence.cpu_percentile)),
            )
        }),
        Resource::Memory => rec.evidence.memory_peak_bytes.map(|v| {
            let basis = if rec.evidence.memory_basis.is_empty() {
                "peak"
            } else {
                rec.evidence.memory_basis.as_str()
            };
            (v, format!("{basis} usage"))
        }),
    };
    let mut out = Vec::new();
    for (kind, label, value) in [
        (MarkKind::CurrentRequest, "current request", cur_req),
        (MarkKind::CurrentLimit, "current limit", cur_lim),
        (MarkKind::RecommendedRequest, "recommended request", rec_req),
        (MarkKind::RecommendedLimit, "recommended limit", rec_lim),
    ] {
        if let Some(v) = value {
            out.push(Mark {
                kind,
                label: label.into(),
                value: v as f64,
            });
        }
    }
    if let Some((value, label)) = basis {
        out.push(Mark {
            kind: MarkKind::Basis,
            label,
            value,
        });
    }
    out
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn render_container(rec: &Recommendation, window: &WindowUsage, timelines: Markup) -> Markup {
    let c = &rec.key.container;
    html! {
        section class="container" id={ "container-" (c) } data-container=(c) {
            "\n"
            h2 {
                "Container " code { (c) } " "
                span class={ "status st-" (rec.status.as_str()) } { (rec.status.as_str()) } " "
                span class={ "badge sev-" (rec.severity.as_str()) } { (rec.severity.as_str()) } " "
                span class="confidence" {
                    "confidence " (rec.confidence.as_str()) " ("
                    (format!("{:.0}", rec.confidence_score * 100.0)) "%)"
                }
            }
            "\n"
            p class="reason" { (rec.reason) } "\n"
            (render_resources(rec))
            div class="charts" {
                "\n"
                (histogram_figure(rec, window, Resource::Cpu))
                (histogram_figure(rec, window, Resource::Memory))
            }
            "\n"
            (timelines)
            div class="facts" {
                "\n"
                (render_evidence(rec))
                (render_backtest(rec))
                (render_impact(rec))
            }
            "\n"
            (render_tournament(rec))
            (render_findings(rec))
        }
        "\n"
    }
}

/// One resource's usage histogram over the window, with the requests and limits marked.
fn histogram_figure(rec: &Recommendation, window: &WindowUsage, resource: Resource) -> Markup {
    let (unit, sketch, title, scale) = match resource {
        Resource::Cpu => (Unit::Millicores, &window.cpu, "CPU usage", 1000.0),
        Resource::Memory => (Unit::Bytes, &window.memory, "Memory working set", 1.0),
    };
    let marks = marks(rec, resource);
    let data_max = (sketch.count() > 0).then(|| sketch.max() * scale);
    let span = window.span.filter(|_| sketch.count() > 0);
    html! {
        figure class="chart-box" data-resource=(resource.as_str()) {
            figcaption {
                b { (title) }
                @if let Some((first, last)) = span {
                    " · "
                    span title={ (html::timestamp(first)) " – " (html::timestamp(last + 3600)) } {
                        (window.hours) " h to " (html::timestamp(last + 3600))
                    }
                    " · " (html::group_thousands(sketch.count() as f64, 0)) " samples"
                } @else {
                    " · no stored usage"
                }
            }
            "\n"
            (PreEscaped(chart::histogram(&format!("{title} of {}", rec.key.container), unit, sketch, &marks)))
            (PreEscaped(chart::legend(unit, &marks, data_max)))
        }
        "\n"
    }
}

/// Hour-by-hour usage of both resources over the window, against the requests and limits.
fn render_timelines(
    rec: &Recommendation,
    rows: &[UsageHour],
    signals: &[SignalHour],
    (from, to): (i64, i64),
) -> Markup {
    // Nothing stored (no watermark: `to` is i64::MIN), nothing to draw over time; the
    // histogram beside it already says "no stored usage".
    if rows.is_empty() {
        return html! {};
    }
    // Hours stored before the window began are not what the analyzer read.
    let first = to.saturating_sub(i64::from(rec.evidence.window_hours.max(1)) * 3600);
    let from = from.max(first);
    html! {
        div class="charts timelines" data-container=(rec.key.container) {
            "\n"
            @for (resource, unit, title) in [
                (Resource::Cpu, Unit::Millicores, "CPU usage by hour"),
                (Resource::Memory, Unit::Bytes, "Memory working set by hour"),
            ] {
                figure class="chart-box" data-resource=(resource.as_str()) {
                    figcaption { b { (title) } " · median, p95 and peak of each hour; ▼ OOM kill, ● restart" }
                    "\n"
                    (PreEscaped(timeline::timeline(
                        &format!("{title} of {}", rec.key.container),
                        unit,
                        &timeline::points(rows, resource),
                        &marks(rec, resource),
                        signals,
                        (from, to),
                    )))
                }
                "\n"
            }
        }
        "\n"
    }
}

fn render_resources(rec: &Recommendation) -> Markup {
    let proposed = rec.status == Status::Ok;
    type Fmt = fn(Option<i64>) -> String;
    let rows: [(&str, Option<i64>, Option<i64>, Fmt); 4] = [
        (
            "CPU request",
            rec.current.cpu_request_millicores,
            rec.recommended.cpu_request_millicores,
            quantity::cpu_opt,
        ),
        (
            "CPU limit",
            rec.current.cpu_limit_millicores,
            rec.recommended.cpu_limit_millicores,
            quantity::cpu_opt,
        ),
        (
            "Memory request",
            rec.current.memory_request_bytes,
            rec.recommended.memory_request_bytes,
            quantity::memory_opt,
        ),
        (
            "Memory limit",
            rec.current.memory_limit_bytes,
            rec.recommended.memory_limit_bytes,
            quantity::memory_opt,
        ),
    ];
    html! {
        table class="resources" {
            thead { tr { th {} th { "current" } th { "recommended" } th { "change" } } }
            tbody {
                "\n"
                @for (label, current, recommended, fmt) in rows {
                    tr {
                        th { (label) }
                        td class="num" { (fmt(current)) }
                        td class="num" { b { @if proposed { (fmt(recommended)) } @else { "—" } } }
                        td class="num" { (resource_change(proposed, current, recommended)) }
                    }
                    "\n"
                }
            }
        }
        "\n"
    }
}

/// How a proposal moves one value: `−25%`, `same`, `set (was unset)`.
fn resource_change(proposed: bool, current: Option<i64>, recommended: Option<i64>) -> Markup {
    match (current, recommended) {
        _ if !proposed => html! { span class="muted" { "—" } },
        (Some(c), Some(r)) if c == r => html! { span class="muted" { "same" } },
        (Some(c), Some(r)) if c > 0 => html! {
            span class=(if r < c { "down" } else { "up" }) {
                (format!("{:+.0}", (r - c) as f64 / c as f64 * 100.0)) "%"
            }
        },
        (None, Some(_)) => html! { span class="up" { "set (was unset)" } },
        _ => html! {},
    }
}

fn dl_row(term: &str, value: impl maud::Render) -> Markup {
    html! { dt { (term) } dd { (value) } }
}

fn render_evidence(rec: &Recommendation) -> Markup {
    let e = &rec.evidence;
    html! {
        div class="fact" data-fact="evidence" {
            h3 { "Evidence" }
            dl { (evidence_rows(rec)) }
            @if !e.rules.is_empty() {
                details {
                    summary { "Rules applied" }
                    ul class="rules" { @for rule in &e.rules { li { (rule) } } }
                }
            }
        }
        "\n"
    }
}

/// The evidence card's terms: what was measured, over how long, and what was applied.
fn evidence_rows(rec: &Recommendation) -> Markup {
    let e = &rec.evidence;
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map(f).unwrap_or_else(|| "—".into());
    let basis = if e.memory_basis.is_empty() {
        "peak"
    } else {
        e.memory_basis.as_str()
    };
    let choice = e.strategy_choice.as_deref().filter(|c| !c.is_empty());
    html! {
        (dl_row(&format!("CPU p{}", trim_number(e.cpu_percentile)), opt(e.cpu_percentile_millicores, quantity::cpu_measured)))
        (dl_row("CPU mean", opt(e.cpu_mean_millicores, quantity::cpu_measured)))
        (dl_row(&format!("Memory {basis}"), opt(e.memory_peak_bytes, quantity::memory_measured)))
        (dl_row("Memory mean", opt(e.memory_mean_bytes, quantity::memory_measured)))
        (dl_row("Samples", format!(
            "{} CPU · {} memory",
            html::group_thousands(e.samples as f64, 0),
            html::group_thousands(e.memory_samples as f64, 0)
        )))
        (dl_row("History", format!("{} h of a {} h window", e.history_hours, e.window_hours)))
        (dl_row("Margin", percent(e.margin)))
        (dl_row("Average replicas", trim_number(e.average_replicas)))
        (dl_row("OOM kills / restarts", format!("{} / {}", e.oom_kills, e.restarts)))
        (dl_row("Throttled periods", e.throttled_ratio.map(percent).unwrap_or_else(|| "—".into())))
        (dl_row("Strategy", html! {
            (rec.strategy)
            @if let Some(choice) = choice { br; span class="muted" data-strategy-choice { (choice) } }
        }))
        @if let Some(from) = e.fitted_from {
            (dl_row("Fitted from", html! {
                span data-fitted-from=(from) { (html::timestamp(from)) } br;
                span class="muted" { "a lasting level shift then; earlier history left out" }
            }))
        }
        @if !e.policy_sources.is_empty() {
            (dl_row("Policy", e.policy_sources.join(" → ")))
        }
    }
}

fn render_backtest(rec: &Recommendation) -> Markup {
    html! {
        div class="fact" data-fact="backtest" {
            h3 { "Backtest" }
            @if let Some(b) = &rec.backtest {
                (render_in_sample(b))
            } @else {
                p class="muted" { "No backtest: too little history." }
            }
            (render_holdout(rec))
        }
        "\n"
    }
}

fn render_in_sample(b: &Backtest) -> Markup {
    let share = |v: Option<f64>| v.map(percent).unwrap_or_else(|| "—".into());
    let hours = |v: Option<u32>| v.map(|h| format!("{h} h")).unwrap_or_else(|| "—".into());
    let rows = [
        (
            "CPU samples above request",
            share(b.current.cpu_over_request_share),
            share(b.recommended.cpu_over_request_share),
        ),
        (
            "CPU samples above limit (throttled)",
            share(b.current.cpu_over_limit_share),
            share(b.recommended.cpu_over_limit_share),
        ),
        (
            "Hours above memory limit (OOM)",
            hours(b.current.memory_over_limit_hours),
            hours(b.recommended.memory_over_limit_hours),
        ),
    ];
    html! {
        table class="backtest" {
            thead { tr { th { "on the window's history" } th { "current" } th { "recommended" } } }
            tbody {
                @for (label, current, recommended) in rows {
                    tr { th { (label) } td class="num" { (current) } td class="num" { (recommended) } }
                }
            }
        }
        @if b.memory_censored {
            p class="note" {
                "Memory history is censored: OOM kills cut peaks above the old \
                 limit, so the real peak may be higher than seen."
            }
        }
    }
}

/// Current and recommended values on days they were not fitted on, side by side: part of
/// the backtest card, so in-sample and held-out figures read together.
fn render_holdout(rec: &Recommendation) -> Markup {
    let e = &rec.evidence;
    let Some(h) = holdout::recommended(e) else {
        return html! {
            div data-fact="holdout" {
                p class="muted" data-no-holdout { "No held-out figures: " (holdout::NOT_ENOUGH_HISTORY) "." }
            }
        };
    };
    type Cell = fn(&HoldoutFigures) -> Markup;
    let rows: [(&str, Cell); 6] = [
        ("Hours above memory limit (OOM)", |h| {
            flag(
                h.memory_overrun_hours > 0,
                &format!("{} h", h.memory_overrun_hours),
            )
        }),
        ("Memory peak / limit", |h| {
            let over = h.memory_peak_ratio.is_some_and(|r| r > 1.0);
            flag(over, &holdout::peak_ratio(h.memory_peak_ratio))
        }),
        ("CPU samples above limit", |h| {
            html! { (holdout::share(h.cpu_over_limit_share)) }
        }),
        ("CPU samples above request", |h| {
            html! { (holdout::share(h.cpu_over_request_share)) }
        }),
        ("CPU slack", |h| html! { (holdout::slack(h.cpu_slack)) }),
        (
            "Memory slack",
            |h| html! { (holdout::slack(h.memory_slack)) },
        ),
    ];
    let current = holdout::current(e);
    html! {
        div data-fact="holdout" {
            p class="note" {
                b { "Held-out backtest" } ": each of the last " (holdout::days(h.days))
                " scored with the values fitted on the history before it; the current values \
                 replayed on the same days."
            }
            table class="backtest" {
                thead { tr { th { "on " (holdout::days(h.days)) " held out" } th { "current" } th { "recommended" } } }
                tbody {
                    @for (label, cell) in rows {
                        tr {
                            th { (label) }
                            td class="num" { @if let Some(c) = current { (cell(c)) } @else { "—" } }
                            td class="num" { (cell(h)) }
                        }
                    }
                }
            }
        }
    }
}

/// `text`, marked bad when `bad`.
fn flag(bad: bool, text: &str) -> Markup {
    html! {
        @if bad { span class="bad" { (text) } } @else { (text) }
    }
}

/// Every candidate strategy's walk-forward figures, cost and proposal, the chosen one marked.
fn render_tournament(rec: &Recommendation) -> Markup {
    let scores = &rec.evidence.strategy_scores;
    if scores.is_empty() {
        return html! {};
    }
    let currency = rec.impact.as_ref().map_or("", |i| i.currency.as_str());
    let chosen = scores.iter().find(|s| s.chosen);
    // The misses are sentences: listed under the table they keep its columns narrow enough
    // to show the cost and the proposal without scrolling.
    let missed: Vec<_> = scores
        .iter()
        .filter(|s| !s.met_objective && !s.misses.is_empty())
        .collect();
    html! {
        details class="tournament" data-fact="tournament" open {
            summary {
                "Strategy tournament: " (scores.len()) " candidate" @if scores.len() != 1 { "s" }
                @if let Some(s) = chosen { ", " b { (s.strategy) } " chosen" }
            }
            "\n"
            div class="table-wrap" {
                table {
                    (tournament_header())
                    tbody {
                        "\n"
                        @for s in scores { (tournament_row(s, currency)) "\n" }
                    }
                }
            }
            "\n"
            @if !missed.is_empty() {
                ul class="rules" data-misses {
                    @for s in missed {
                        li {
                            b { (s.strategy) } " missed the objective: "
                            @for (i, m) in s.misses.iter().enumerate() { @if i > 0 { "; " } (m) }
                        }
                    }
                }
            }
            p class="note" {
                "Every candidate is fitted and scored walk-forward on the same \
                 held-out days. Idle cost: requested but unused resources, priced per pod-month."
            }
        }
        "\n"
    }
}

/// The tournament table's head: short names broken over two lines keep the columns narrow.
fn tournament_header() -> Markup {
    let numeric = [
        ("Memory", "overrun h"),
        ("Peak /", "limit"),
        ("CPU >", "limit"),
        ("CPU >", "request"),
        ("CPU", "slack"),
        ("Memory", "slack"),
    ];
    html! {
        thead {
            tr {
                th { "Strategy" }
                th class="num" { "Days" }
                @for (top, bottom) in numeric { th class="num" { (top) br; (bottom) } }
                th { "Met" br; "objective" }
                th class="num" { "Idle /" br; "month" }
                th class="num" { "CPU request" br; "/ limit" }
                th class="num" { "Memory request" br; "/ limit" }
            }
        }
    }
}

/// One candidate's held-out figures, idle cost and proposal.
fn tournament_row(s: &crate::model::StrategyScore, currency: &str) -> Markup {
    let h = &s.holdout;
    let r = &s.recommended;
    html! {
        tr data-strategy=(s.strategy) data-chosen[s.chosen] {
            td {
                @if s.chosen { b { (s.strategy) } " " span class="badge sev-info" { "chosen" } }
                @else { (s.strategy) }
            }
            td class="num" { (h.days) }
            td class="num" { (flag(h.memory_overrun_hours > 0, &h.memory_overrun_hours.to_string())) }
            td class="num" {
                (flag(h.memory_peak_ratio.is_some_and(|r| r > 1.0), &holdout::peak_ratio(h.memory_peak_ratio)))
            }
            td class="num" { (holdout::share(h.cpu_over_limit_share)) }
            td class="num" { (holdout::share(h.cpu_over_request_share)) }
            td class="num" { (holdout::slack(h.cpu_slack)) }
            td class="num" { (holdout::slack(h.memory_slack)) }
            td {
                @if s.met_objective { span class="good" { "yes" } }
                @else { span class="bad" { "no" } }
            }
            td class="num" { (money(s.idle_monthly_cost, currency)) }
            td class="num" { (quantity::cpu_opt(r.cpu_request_millicores)) " / " (quantity::cpu_opt(r.cpu_limit_millicores)) }
            td class="num" {
                (quantity::memory_opt(r.memory_request_bytes)) " / " (quantity::memory_opt(r.memory_limit_bytes))
            }
        }
    }
}

fn render_impact(rec: &Recommendation) -> Markup {
    html! {
        div class="fact" data-fact="impact" {
            h3 { "Impact" }
            @if let Some(i) = &rec.impact {
                @let s = -i.monthly_cost_delta;
                dl {
                    (dl_row("Replicas", trim_number(i.replicas)))
                    (dl_row("CPU requested", format!("{} cores", signed(i.cpu_cores_delta, 2))))
                    (dl_row("Memory requested", format!("{} GiB", signed(i.memory_gib_delta, 2))))
                    (dl_row(
                        if s >= 0.0 { "Saves per month" } else { "Costs more per month" },
                        html! { span class=(if s >= 0.0 { "good" } else { "bad" }) { (money(s.abs(), &i.currency)) } },
                    ))
                }
            } @else {
                p class="muted" { "No impact computed." }
            }
            @if let Some(h) = &rec.hpa {
                p class="note" {
                    "HPA " b { (h.hpa) } " scales on CPU at " (trim_number(h.cpu_target_utilization))
                    "%: about " (trim_number(h.current_replicas)) " → " (trim_number(h.expected_replicas))
                    " replicas after the change, or set its target to "
                    (trim_number(h.target_utilization_for_same_scale)) "% to keep today's scale point."
                }
            }
        }
        "\n"
    }
}

fn render_findings(rec: &Recommendation) -> Markup {
    if rec.findings.is_empty() {
        return html! {};
    }
    html! {
        div class="findings" {
            h3 { "Findings" }
            ul {
                @for f in &rec.findings {
                    li data-finding=(f.code) {
                        span class={ "badge sev-" (f.severity.as_str()) } { (f.severity.as_str()) } " "
                        code { (f.code) } " " (f.message)
                    }
                }
            }
        }
        "\n"
    }
}

fn render_patch(w: &WorkloadKey, recs: &[Recommendation]) -> Markup {
    html! {
        section class="patch" id="patch" {
            h2 { "Patch" } "\n"
            @match patch::render(PatchFormat::StrategicMerge, w, recs, None) {
                Ok(text) => {
                    p class="muted" {
                        "Strategic-merge patch for " code { "kubectl patch" }
                        "; it changes only the containers with a proposal."
                    }
                    "\n"
                    div class="copy-wrap" {
                        button type="button" class="copy" data-copy-target="patch-text" hidden { "Copy" }
                        pre id="patch-text" { (text) }
                    }
                    "\n"
                }
                Err(e) => {
                    p class="muted" data-no-patch { (e.to_string()) }
                    "\n"
                }
            }
        }
        "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerKey;

    fn hour(resource: Resource, hour_start: i64, values: &[f64]) -> UsageHour {
        let mut sketch = Sketch::new();
        for v in values {
            sketch.insert(*v).unwrap();
        }
        UsageHour {
            key: ContainerKey {
                cluster: "c".into(),
                namespace: "n".into(),
                kind: "Deployment".into(),
                workload: "w".into(),
                container: "app".into(),
            }
            .into(),
            resource,
            hour_start,
            sketch,
        }
    }

    #[test]
    fn merges_only_the_last_window_hours() {
        let rows = vec![
            hour(Resource::Cpu, 0, &[9.0]),
            hour(Resource::Cpu, 3600, &[0.1, 0.2]),
            hour(Resource::Cpu, 7200, &[0.3]),
            hour(Resource::Memory, 7200, &[100.0]),
        ];
        let w = merge_window(&rows, 2);
        assert_eq!((w.cpu.count(), w.memory.count(), w.hours), (3, 1, 2));
        assert_eq!(w.span, Some((3600, 7200)));
        assert_eq!(merge_window(&rows, 0).cpu.count(), 4);
        assert_eq!(merge_window(&[], 5).hours, 0);
    }
}
