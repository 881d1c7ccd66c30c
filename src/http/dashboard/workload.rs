//! `GET /workloads/{cluster}/{namespace}/{kind}/{name}`: per container, the usage
//! histogram against current and recommended requests and limits, the evidence, the
//! backtest (in-sample and held out), impact, the strategy tournament and findings; then the
//! copyable patch of the whole workload.

use std::fmt::Write;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Html;

use super::chart::{self, Mark, MarkKind, Unit};
use super::html::{self, encode_component, money, percent, Esc};
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
    let mut body = String::with_capacity(64 * 1024);
    render_summary(&mut body, &workload, &recs);
    for ((rec, rows), signals) in recs.iter().zip(&usage).zip(&signals) {
        let merged = merge_window(rows, rec.evidence.window_hours);
        let mut timelines = String::new();
        render_timelines(&mut timelines, rec, rows, signals, window(rec));
        render_container(&mut body, rec, &merged, &timelines);
    }
    render_patch(&mut body, &workload, &recs);
    let title = format!("{}/{}/{}", workload.namespace, workload.kind, workload.name);
    Ok(Html(html::page(&title, &body)))
}

fn render_summary(out: &mut String, w: &WorkloadKey, recs: &[Recommendation]) {
    let worst = recs.iter().map(|r| r.severity).max().unwrap_or_default();
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
    let computed = recs.iter().map(|r| r.computed_at).max().unwrap_or(0);
    let _ = write!(
        out,
        "<nav class=\"crumbs\"><a href=\"/\">Fleet</a> › <a href=\"/?namespace={ns_q}\">{ns}</a> › {kind}</nav>\n\
         <h1>{name} <span class=\"badge sev-{sev}\">{sev}</span></h1>\n\
         <p class=\"sub\">{kind} in namespace <b>{ns}</b> of cluster <b>{cluster}</b> · \
         {n} container{s} · analyzed {when} · \
         <a href=\"/api/v1/recommendations/{ns_p}/{kind_p}/{name_p}?cluster={cluster_q}\">JSON</a> · \
         <a href=\"#patch\">patch</a></p>\n",
        ns_q = encode_component(&w.namespace),
        ns = Esc(&w.namespace),
        kind = Esc(&w.kind),
        name = Esc(&w.name),
        cluster = Esc(&w.cluster),
        sev = worst.as_str(),
        n = recs.len(),
        s = if recs.len() == 1 { "" } else { "s" },
        when = html::timestamp(computed),
        ns_p = encode_component(&w.namespace),
        kind_p = encode_component(&w.kind),
        name_p = encode_component(&w.name),
        cluster_q = encode_component(&w.cluster),
    );
    let _ = writeln!(
        out,
        "<section class=\"cards\">\
         <div class=\"card\"><h2>Money</h2><p class=\"big {cls}\">{amount}</p><p class=\"muted\">{note}</p></div>\
         <div class=\"card\"><h2>CPU requests</h2><p class=\"big\">{cores} cores</p><p class=\"muted\">across replicas</p></div>\
         <div class=\"card\"><h2>Memory requests</h2><p class=\"big\">{gib} GiB</p><p class=\"muted\">across replicas</p></div>\
         </section>",
        cls = if total_savings >= 0.0 { "good" } else { "bad" },
        amount = money(total_savings.abs(), currency),
        note = if total_savings >= 0.0 {
            "saved per month"
        } else {
            "more per month"
        },
        cores = signed(cores, 2),
        gib = signed(gib, 2),
    );
    if recs.len() > 1 {
        out.push_str("<nav class=\"toc\">Containers: ");
        for (i, r) in recs.iter().enumerate() {
            let _ = write!(
                out,
                "{}<a href=\"#container-{}\">{}</a>",
                if i > 0 { " · " } else { "" },
                encode_component(&r.key.container),
                Esc(&r.key.container)
            );
        }
        out.push_str("</nav>\n");
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

fn render_container(out: &mut String, rec: &Recommendation, window: &WindowUsage, timelines: &str) {
    let c = &rec.key.container;
    let _ = write!(
        out,
        "<section class=\"container\" id=\"container-{c_attr}\" data-container=\"{c_attr}\">\n\
         <h2>Container <code>{c_attr}</code> <span class=\"status st-{st}\">{st}</span> \
         <span class=\"badge sev-{sev}\">{sev}</span> \
         <span class=\"confidence\">confidence {conf} ({score:.0}%)</span></h2>\n\
         <p class=\"reason\">{reason}</p>\n",
        c_attr = Esc(c),
        st = rec.status.as_str(),
        sev = rec.severity.as_str(),
        conf = rec.confidence.as_str(),
        score = rec.confidence_score * 100.0,
        reason = Esc(&rec.reason),
    );
    render_resources(out, rec);

    out.push_str("<div class=\"charts\">\n");
    for (resource, unit, sketch, title) in [
        (Resource::Cpu, Unit::Millicores, &window.cpu, "CPU usage"),
        (
            Resource::Memory,
            Unit::Bytes,
            &window.memory,
            "Memory working set",
        ),
    ] {
        let marks = marks(rec, resource);
        let scale = if unit == Unit::Millicores {
            1000.0
        } else {
            1.0
        };
        let data_max = (sketch.count() > 0).then(|| sketch.max() * scale);
        let span = match window.span {
            Some((first, last)) if sketch.count() > 0 => format!(
                " · <span title=\"{} – {}\">{} h to {}</span> · {} samples",
                html::timestamp(first),
                html::timestamp(last + 3600),
                window.hours,
                html::timestamp(last + 3600),
                html::group_thousands(sketch.count() as f64, 0)
            ),
            _ => " · no stored usage".into(),
        };
        let _ = write!(
            out,
            "<figure class=\"chart-box\" data-resource=\"{}\"><figcaption><b>{title}</b>{span}</figcaption>\n{}{}</figure>\n",
            resource.as_str(),
            chart::histogram(&format!("{title} of {c}"), unit, sketch, &marks),
            chart::legend(unit, &marks, data_max),
        );
    }
    out.push_str("</div>\n");
    out.push_str(timelines);
    out.push_str("<div class=\"facts\">\n");
    render_evidence(out, rec);
    render_backtest(out, rec);
    render_impact(out, rec);
    out.push_str("</div>\n");
    render_tournament(out, rec);
    render_findings(out, rec);
    out.push_str("</section>\n");
}

/// Hour-by-hour usage of both resources over the window, against the requests and limits.
fn render_timelines(
    out: &mut String,
    rec: &Recommendation,
    rows: &[UsageHour],
    signals: &[SignalHour],
    (from, to): (i64, i64),
) {
    // Nothing stored (no watermark: `to` is i64::MIN), nothing to draw over time; the
    // histogram beside it already says "no stored usage".
    if rows.is_empty() {
        return;
    }
    // Hours stored before the window began are not what the analyzer read.
    let first = to.saturating_sub(i64::from(rec.evidence.window_hours.max(1)) * 3600);
    let from = from.max(first);
    let _ = writeln!(
        out,
        "<div class=\"charts timelines\" data-container=\"{}\">",
        Esc(&rec.key.container)
    );
    for (resource, unit, title) in [
        (Resource::Cpu, Unit::Millicores, "CPU usage by hour"),
        (Resource::Memory, Unit::Bytes, "Memory working set by hour"),
    ] {
        let points = timeline::points(rows, resource);
        let _ = write!(
            out,
            "<figure class=\"chart-box\" data-resource=\"{}\"><figcaption><b>{title}</b> · median, p95 and peak of each hour; ▼ OOM kill, ● restart</figcaption>\n{}</figure>\n",
            resource.as_str(),
            timeline::timeline(
                &format!("{title} of {}", rec.key.container),
                unit,
                &points,
                &marks(rec, resource),
                signals,
                (from, to),
            ),
        );
    }
    out.push_str("</div>\n");
}

fn render_resources(out: &mut String, rec: &Recommendation) {
    let proposed = rec.status == Status::Ok;
    out.push_str(
        "<table class=\"resources\"><thead><tr><th></th><th>current</th><th>recommended</th>\
         <th>change</th></tr></thead><tbody>\n",
    );
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
    for (label, current, recommended, fmt) in rows {
        let change = match (current, recommended) {
            _ if !proposed => "<span class=\"muted\">—</span>".to_string(),
            (Some(c), Some(r)) if c == r => "<span class=\"muted\">same</span>".into(),
            (Some(c), Some(r)) if c > 0 => format!(
                "<span class=\"{}\">{:+.0}%</span>",
                if r < c { "down" } else { "up" },
                (r - c) as f64 / c as f64 * 100.0
            ),
            (None, Some(_)) => "<span class=\"up\">set (was unset)</span>".into(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td class=\"num\">{}</td><td class=\"num\"><b>{}</b></td><td class=\"num\">{change}</td></tr>",
            fmt(current),
            if proposed { fmt(recommended) } else { "—".into() },
        );
    }
    out.push_str("</tbody></table>\n");
}

fn dl_row(out: &mut String, term: &str, value: &str) {
    let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", Esc(term));
}

fn render_evidence(out: &mut String, rec: &Recommendation) {
    let e = &rec.evidence;
    out.push_str("<div class=\"fact\" data-fact=\"evidence\"><h3>Evidence</h3><dl>");
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map(f).unwrap_or_else(|| "—".into());
    dl_row(
        out,
        &format!("CPU p{}", trim_number(e.cpu_percentile)),
        &opt(e.cpu_percentile_millicores, quantity::cpu_measured),
    );
    dl_row(
        out,
        "CPU mean",
        &opt(e.cpu_mean_millicores, quantity::cpu_measured),
    );
    let basis = if e.memory_basis.is_empty() {
        "peak"
    } else {
        e.memory_basis.as_str()
    };
    dl_row(
        out,
        &format!("Memory {basis}"),
        &opt(e.memory_peak_bytes, quantity::memory_measured),
    );
    dl_row(
        out,
        "Memory mean",
        &opt(e.memory_mean_bytes, quantity::memory_measured),
    );
    dl_row(
        out,
        "Samples",
        &format!(
            "{} CPU · {} memory",
            html::group_thousands(e.samples as f64, 0),
            html::group_thousands(e.memory_samples as f64, 0)
        ),
    );
    dl_row(
        out,
        "History",
        &format!("{} h of a {} h window", e.history_hours, e.window_hours),
    );
    dl_row(out, "Margin", &percent(e.margin));
    dl_row(out, "Average replicas", &trim_number(e.average_replicas));
    dl_row(
        out,
        "OOM kills / restarts",
        &format!("{} / {}", e.oom_kills, e.restarts),
    );
    dl_row(
        out,
        "Throttled periods",
        &e.throttled_ratio.map(percent).unwrap_or_else(|| "—".into()),
    );
    let strategy = match e.strategy_choice.as_deref().filter(|c| !c.is_empty()) {
        Some(choice) => format!(
            "{}<br><span class=\"muted\" data-strategy-choice>{}</span>",
            Esc(&rec.strategy),
            Esc(choice)
        ),
        None => Esc(&rec.strategy).to_string(),
    };
    dl_row(out, "Strategy", &strategy);
    if let Some(from) = e.fitted_from {
        dl_row(
            out,
            "Fitted from",
            &format!(
                "<span data-fitted-from=\"{from}\">{}</span><br><span class=\"muted\">a lasting \
                 level shift then; earlier history left out</span>",
                html::timestamp(from)
            ),
        );
    }
    if !e.policy_sources.is_empty() {
        dl_row(
            out,
            "Policy",
            &Esc(&e.policy_sources.join(" → ")).to_string(),
        );
    }
    out.push_str("</dl>");
    if !e.rules.is_empty() {
        out.push_str("<details><summary>Rules applied</summary><ul class=\"rules\">");
        for rule in &e.rules {
            let _ = write!(out, "<li>{}</li>", Esc(rule));
        }
        out.push_str("</ul></details>");
    }
    out.push_str("</div>\n");
}

fn render_backtest(out: &mut String, rec: &Recommendation) {
    out.push_str("<div class=\"fact\" data-fact=\"backtest\"><h3>Backtest</h3>");
    if let Some(b) = &rec.backtest {
        render_in_sample(out, b);
    } else {
        out.push_str("<p class=\"muted\">No backtest: too little history.</p>");
    }
    render_holdout(out, rec);
    out.push_str("</div>\n");
}

fn render_in_sample(out: &mut String, b: &Backtest) {
    let share = |v: Option<f64>| v.map(percent).unwrap_or_else(|| "—".into());
    let hours = |v: Option<u32>| v.map(|h| format!("{h} h")).unwrap_or_else(|| "—".into());
    let _ = write!(
        out,
        "<table class=\"backtest\"><thead><tr><th>on the window's history</th><th>current</th>\
         <th>recommended</th></tr></thead><tbody>\
         <tr><th>CPU samples above request</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         <tr><th>CPU samples above limit (throttled)</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         <tr><th>Hours above memory limit (OOM)</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\
         </tbody></table>",
        share(b.current.cpu_over_request_share),
        share(b.recommended.cpu_over_request_share),
        share(b.current.cpu_over_limit_share),
        share(b.recommended.cpu_over_limit_share),
        hours(b.current.memory_over_limit_hours),
        hours(b.recommended.memory_over_limit_hours),
    );
    if b.memory_censored {
        out.push_str(
            "<p class=\"note\">Memory history is censored: OOM kills cut peaks above the old \
             limit, so the real peak may be higher than seen.</p>",
        );
    }
}

/// Current and recommended values on days they were not fitted on, side by side: part of
/// the backtest card, so in-sample and held-out figures read together.
fn render_holdout(out: &mut String, rec: &Recommendation) {
    let e = &rec.evidence;
    out.push_str("<div data-fact=\"holdout\">");
    let Some(h) = holdout::recommended(e) else {
        let _ = write!(
            out,
            "<p class=\"muted\" data-no-holdout>No held-out figures: {}.</p></div>",
            holdout::NOT_ENOUGH_HISTORY
        );
        return;
    };
    let _ = write!(
        out,
        "<p class=\"note\"><b>Held-out backtest</b>: each of the last {} scored with the \
         values fitted on the history before it; the current values replayed on the same \
         days.</p><table class=\"backtest\"><thead><tr><th>on {} held out</th>\
         <th>current</th><th>recommended</th></tr></thead><tbody>",
        holdout::days(h.days),
        holdout::days(h.days)
    );
    type Cell = fn(&HoldoutFigures) -> String;
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
            holdout::share(h.cpu_over_limit_share)
        }),
        ("CPU samples above request", |h| {
            holdout::share(h.cpu_over_request_share)
        }),
        ("CPU slack", |h| holdout::slack(h.cpu_slack)),
        ("Memory slack", |h| holdout::slack(h.memory_slack)),
    ];
    let current = holdout::current(e);
    for (label, cell) in rows {
        let _ = write!(
            out,
            "<tr><th>{label}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            current.map(cell).unwrap_or_else(|| "—".into()),
            cell(h),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// `text`, marked bad when `bad`.
fn flag(bad: bool, text: &str) -> String {
    if bad {
        format!("<span class=\"bad\">{text}</span>")
    } else {
        text.to_string()
    }
}

/// Every candidate strategy's walk-forward figures, cost and proposal, the chosen one marked.
fn render_tournament(out: &mut String, rec: &Recommendation) {
    let scores = &rec.evidence.strategy_scores;
    if scores.is_empty() {
        return;
    }
    let currency = rec.impact.as_ref().map_or("", |i| i.currency.as_str());
    let chosen = scores
        .iter()
        .find(|s| s.chosen)
        .map(|s| format!(", <b>{}</b> chosen", Esc(&s.strategy)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<details class=\"tournament\" data-fact=\"tournament\" open><summary>Strategy \
         tournament: {} candidate{}{chosen}</summary>\n<div class=\"table-wrap\"><table>\
         <thead><tr><th>Strategy</th><th class=\"num\">Days</th>\
         <th class=\"num\">Memory<br>overrun h</th><th class=\"num\">Peak /<br>limit</th>\
         <th class=\"num\">CPU &gt;<br>limit</th><th class=\"num\">CPU &gt;<br>request</th>\
         <th class=\"num\">CPU<br>slack</th><th class=\"num\">Memory<br>slack</th>\
         <th>Met<br>objective</th><th class=\"num\">Idle /<br>month</th>\
         <th class=\"num\">CPU request<br>/ limit</th><th class=\"num\">Memory request<br>/ limit</th>\
         </tr></thead><tbody>\n",
        scores.len(),
        if scores.len() == 1 { "" } else { "s" },
    );
    for s in scores {
        let h = &s.holdout;
        let r = &s.recommended;
        let _ = writeln!(
            out,
            "<tr data-strategy=\"{name}\"{chosen_attr}><td>{name_cell}</td>\
             <td class=\"num\">{days}</td><td class=\"num\">{overrun}</td>\
             <td class=\"num\">{peak}</td><td class=\"num\">{over_limit}</td>\
             <td class=\"num\">{over_request}</td><td class=\"num\">{cpu_slack}</td>\
             <td class=\"num\">{memory_slack}</td><td>{objective}</td>\
             <td class=\"num\">{idle}</td><td class=\"num\">{cpu_req} / {cpu_lim}</td>\
             <td class=\"num\">{mem_req} / {mem_lim}</td></tr>",
            name = Esc(&s.strategy),
            chosen_attr = if s.chosen { " data-chosen" } else { "" },
            name_cell = if s.chosen {
                format!(
                    "<b>{}</b> <span class=\"badge sev-info\">chosen</span>",
                    Esc(&s.strategy)
                )
            } else {
                Esc(&s.strategy).to_string()
            },
            days = h.days,
            overrun = flag(
                h.memory_overrun_hours > 0,
                &h.memory_overrun_hours.to_string()
            ),
            peak = flag(
                h.memory_peak_ratio.is_some_and(|r| r > 1.0),
                &holdout::peak_ratio(h.memory_peak_ratio)
            ),
            over_limit = holdout::share(h.cpu_over_limit_share),
            over_request = holdout::share(h.cpu_over_request_share),
            cpu_slack = holdout::slack(h.cpu_slack),
            memory_slack = holdout::slack(h.memory_slack),
            objective = if s.met_objective {
                "<span class=\"good\">yes</span>"
            } else {
                "<span class=\"bad\">no</span>"
            },
            idle = money(s.idle_monthly_cost, currency),
            cpu_req = quantity::cpu_opt(r.cpu_request_millicores),
            cpu_lim = quantity::cpu_opt(r.cpu_limit_millicores),
            mem_req = quantity::memory_opt(r.memory_request_bytes),
            mem_lim = quantity::memory_opt(r.memory_limit_bytes),
        );
    }
    out.push_str("</tbody></table></div>\n");
    // The misses are sentences: listed under the table they keep its columns narrow enough
    // to show the cost and the proposal without scrolling.
    let missed: Vec<_> = scores
        .iter()
        .filter(|s| !s.met_objective && !s.misses.is_empty())
        .collect();
    if !missed.is_empty() {
        out.push_str("<ul class=\"rules\" data-misses>");
        for s in missed {
            let misses: Vec<String> = s.misses.iter().map(|m| Esc(m).to_string()).collect();
            let _ = write!(
                out,
                "<li><b>{}</b> missed the objective: {}</li>",
                Esc(&s.strategy),
                misses.join("; ")
            );
        }
        out.push_str("</ul>");
    }
    out.push_str(
        "<p class=\"note\">Every candidate is fitted and scored walk-forward on the same \
         held-out days. Idle cost: requested but unused resources, priced per pod-month.</p>\
         </details>\n",
    );
}

fn render_impact(out: &mut String, rec: &Recommendation) {
    out.push_str("<div class=\"fact\" data-fact=\"impact\"><h3>Impact</h3>");
    match &rec.impact {
        Some(i) => {
            out.push_str("<dl>");
            dl_row(out, "Replicas", &trim_number(i.replicas));
            dl_row(
                out,
                "CPU requested",
                &format!("{} cores", signed(i.cpu_cores_delta, 2)),
            );
            dl_row(
                out,
                "Memory requested",
                &format!("{} GiB", signed(i.memory_gib_delta, 2)),
            );
            let s = -i.monthly_cost_delta;
            dl_row(
                out,
                if s >= 0.0 {
                    "Saves per month"
                } else {
                    "Costs more per month"
                },
                &format!(
                    "<span class=\"{}\">{}</span>",
                    if s >= 0.0 { "good" } else { "bad" },
                    money(s.abs(), &i.currency)
                ),
            );
            out.push_str("</dl>");
        }
        None => out.push_str("<p class=\"muted\">No impact computed.</p>"),
    }
    if let Some(h) = &rec.hpa {
        let _ = write!(
            out,
            "<p class=\"note\">HPA <b>{}</b> scales on CPU at {}%: about {} → {} replicas after \
             the change, or set its target to {}% to keep today's scale point.</p>",
            Esc(&h.hpa),
            trim_number(h.cpu_target_utilization),
            trim_number(h.current_replicas),
            trim_number(h.expected_replicas),
            trim_number(h.target_utilization_for_same_scale),
        );
    }
    out.push_str("</div>\n");
}

fn render_findings(out: &mut String, rec: &Recommendation) {
    if rec.findings.is_empty() {
        return;
    }
    out.push_str("<div class=\"findings\"><h3>Findings</h3><ul>");
    for f in &rec.findings {
        let _ = write!(
            out,
            "<li data-finding=\"{code}\"><span class=\"badge sev-{s}\">{s}</span> \
             <code>{code}</code> {}</li>",
            Esc(&f.message),
            code = Esc(&f.code),
            s = f.severity.as_str(),
        );
    }
    out.push_str("</ul></div>\n");
}

fn render_patch(out: &mut String, w: &WorkloadKey, recs: &[Recommendation]) {
    out.push_str("<section class=\"patch\" id=\"patch\"><h2>Patch</h2>\n");
    match patch::render(PatchFormat::StrategicMerge, w, recs, None) {
        Ok(text) => {
            let _ = write!(
                out,
                "<p class=\"muted\">Strategic-merge patch for <code>kubectl patch</code>; \
                 it changes only the containers with a proposal.</p>\n\
                 <div class=\"copy-wrap\"><button type=\"button\" class=\"copy\" \
                 data-copy-target=\"patch-text\" hidden>Copy</button>\
                 <pre id=\"patch-text\">{}</pre></div>\n",
                Esc(&text)
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "<p class=\"muted\" data-no-patch>{}</p>",
                Esc(&e.to_string())
            );
        }
    }
    out.push_str("</section>\n");
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
            },
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
