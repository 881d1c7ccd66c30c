//! After each scheduled report, a summary where people read it: Slack and Microsoft Teams
//! incoming webhooks and a generic JSON webhook. The summary is the fleet's net monthly
//! savings, the top changes, the containers newly critical, and links to the dashboard and
//! the pull requests.
//!
//! A webhook URL is a credential (whoever holds it can post to the channel): it comes from a
//! file or an environment variable, and never appears in a log line or an error, which name
//! the target by kind and position instead (`slack #1`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::text::{cpu_change, memory_change, money, timestamp, workload};
use super::{Line, Report};
use crate::model::{ContainerKey, Severity};

/// Where a summary goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A Slack incoming webhook (`https://hooks.slack.com/services/…`): `text` plus
    /// `blocks` of mrkdwn sections.
    Slack,
    /// A Microsoft Teams incoming webhook (a Workflows "when a webhook request is received"
    /// URL, or a legacy connector): a message with one Adaptive Card attachment.
    Teams,
    /// Any URL taking the summary as rightsizer's own JSON (see [`webhook_payload`]).
    Webhook,
}

impl TargetKind {
    fn as_str(self) -> &'static str {
        match self {
            TargetKind::Slack => "slack",
            TargetKind::Teams => "teams",
            TargetKind::Webhook => "webhook",
        }
    }
}

/// A resolved target: its kind and its secret URL.
#[derive(Clone)]
pub struct Target {
    /// The kind of payload it takes.
    pub kind: TargetKind,
    /// The webhook URL, a secret.
    pub url: SecretString,
    /// `slack #1`: how logs and errors name it.
    pub label: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("url", &"***")
            .finish()
    }
}

/// Links a summary carries, when configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Links {
    /// The dashboard's base URL, e.g. `https://rightsizer.example.com`.
    pub dashboard_url: Option<String>,
    /// Where the pull requests `rightsizer gitops` opens are listed.
    pub pull_requests_url: Option<String>,
}

/// What to send and where.
#[derive(Debug, Clone, Default)]
pub struct Notifications {
    /// The targets, in config order.
    pub targets: Vec<Target>,
    /// Links in every summary.
    pub links: Links,
    /// Top changes listed.
    pub top: usize,
}

/// Why a summary did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The target answered with an error status on the last attempt.
    #[error("{target}: answered {status} after {attempts} attempt(s)")]
    Status {
        /// `slack #1`.
        target: String,
        /// HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer (connection refused, timeout) on the last attempt.
    #[error("{target}: {message} after {attempts} attempt(s)")]
    Transport {
        /// `slack #1`.
        target: String,
        /// The error, without the URL.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// The summary, the same for every target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// One line: the date and what the fleet saves.
    pub title: String,
    /// Net money per month the recommendations save (negative: they cost).
    pub monthly_savings: f64,
    /// Pricing currency.
    pub currency: String,
    /// Changes proposed.
    pub changes: i64,
    /// Critical containers now.
    pub critical: i64,
    /// The top changes by savings, one line each.
    pub top_changes: Vec<String>,
    /// Containers critical now that were not in the previous report (every critical one
    /// when there is no previous report), one line each.
    pub new_critical: Vec<String>,
    /// The report's generation time, unix seconds.
    pub generated_at: i64,
}

fn change_line(l: &Line, currency: &str) -> String {
    format!(
        "{} {}: cpu {}, memory {}, saves {}/month",
        workload(&l.key),
        l.key.container,
        cpu_change(
            l.current.cpu_request_millicores,
            l.recommended.cpu_request_millicores
        ),
        memory_change(
            l.current.memory_request_bytes,
            l.recommended.memory_request_bytes
        ),
        money(l.monthly_savings, currency)
    )
}

fn critical_line(key: &ContainerKey, findings: &[String], reason: &str) -> String {
    let why = if findings.is_empty() {
        reason.to_string()
    } else {
        findings.join(", ")
    };
    format!("{} {}: {why}", workload(key), key.container)
}

/// The summary of `report`, with at most `top` changes.
pub fn summary(report: &Report, top: usize) -> Summary {
    let s = &report.summary;
    let currency = s.currency.clone();
    let new_critical = match &report.change {
        Some(change) => change
            .new_critical
            .iter()
            .map(|c| critical_line(&c.key, &c.findings, &c.reason))
            .collect(),
        None => report
            .containers
            .iter()
            .filter(|l| l.severity == Severity::Critical)
            .map(|l| critical_line(&l.key, &l.findings, &l.reason))
            .collect(),
    };
    Summary {
        title: format!(
            "rightsizer report {}: {}/month to save",
            timestamp(report.generated_at),
            money(s.totals.monthly_savings, &currency)
        ),
        monthly_savings: s.totals.monthly_savings,
        currency: currency.clone(),
        changes: s.counts.ok,
        critical: s.counts.critical,
        top_changes: report
            .over_provisioned
            .iter()
            .take(top)
            .map(|l| change_line(l, &currency))
            .collect(),
        new_critical,
        generated_at: report.generated_at,
    }
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("• {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sections of a summary as (heading, text); empty sections left out.
fn sections(s: &Summary, links: &Links) -> Vec<(String, String)> {
    let mut out = vec![(
        s.title.clone(),
        format!(
            "{} changes proposed, {} critical containers.",
            s.changes, s.critical
        ),
    )];
    if !s.top_changes.is_empty() {
        out.push(("Top changes".into(), bullets(&s.top_changes)));
    }
    if !s.new_critical.is_empty() {
        out.push(("Newly critical".into(), bullets(&s.new_critical)));
    }
    let link_lines: Vec<String> = [
        ("Dashboard", &links.dashboard_url),
        ("Pull requests", &links.pull_requests_url),
    ]
    .into_iter()
    .filter_map(|(name, url)| url.as_ref().map(|u| format!("{name}: {u}")))
    .collect();
    if !link_lines.is_empty() {
        out.push(("Links".into(), link_lines.join("\n")));
    }
    out
}

/// Slack's incoming-webhook body: `text` (the notification and fallback) and mrkdwn
/// `section` blocks (api.slack.com/messaging/webhooks, Block Kit).
pub fn slack_payload(s: &Summary, links: &Links) -> Value {
    let blocks: Vec<Value> = sections(s, links)
        .into_iter()
        .map(|(heading, text)| {
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", slack_escape(&heading), slack_escape(&text))}})
        })
        .collect();
    json!({"text": s.title, "blocks": blocks})
}

/// Slack's three control characters in mrkdwn (names come from Prometheus labels).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Teams message with one Adaptive Card 1.4 attachment, the body Teams' Workflows webhook
/// and the legacy incoming-webhook connector both accept (learn.microsoft.com, "Create
/// incoming webhooks with Workflows for Microsoft Teams").
pub fn teams_payload(s: &Summary, links: &Links) -> Value {
    let mut body = Vec::new();
    for (i, (heading, text)) in sections(s, links).into_iter().enumerate() {
        body.push(json!({"type": "TextBlock", "text": heading, "weight": "Bolder", "size": if i == 0 { "Medium" } else { "Default" }, "wrap": true}));
        body.push(json!({"type": "TextBlock", "text": text, "wrap": true}));
    }
    let actions: Vec<Value> = [
        ("Dashboard", &links.dashboard_url),
        ("Pull requests", &links.pull_requests_url),
    ]
    .into_iter()
    .filter_map(|(title, url)| {
        url.as_ref()
            .map(|u| json!({"type": "Action.OpenUrl", "title": title, "url": u}))
    })
    .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}

/// rightsizer's own JSON: `{"event": "report", "summary": {…}, "links": {…}}`.
pub fn webhook_payload(s: &Summary, links: &Links) -> Value {
    json!({
        "event": "report",
        "summary": s,
        "links": {"dashboard": links.dashboard_url, "pull_requests": links.pull_requests_url},
    })
}

/// Attempts per target: the first and two retries.
const ATTEMPTS: u32 = 3;

/// Posts `body` to `target`, retrying connection errors, 429 and 5xx with exponential
/// backoff from `backoff` (a 429's `Retry-After`, when shorter than a minute, instead).
pub async fn post(
    client: &reqwest::Client,
    target: &Target,
    body: &Value,
    backoff: Duration,
) -> Result<(), NotifyError> {
    let mut wait = backoff;
    for attempt in 1..=ATTEMPTS {
        let last = attempt == ATTEMPTS;
        match client
            .post(target.url.expose_secret())
            .json(body)
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if last || !retryable {
                    return Err(NotifyError::Status {
                        target: target.label.clone(),
                        status: status.as_u16(),
                        attempts: attempt,
                    });
                }
                if let Some(after) = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|s| *s <= 60)
                {
                    wait = Duration::from_secs(after);
                }
            }
            Err(e) if last => {
                return Err(NotifyError::Transport {
                    target: target.label.clone(),
                    // reqwest puts the URL in its errors: the URL is the secret.
                    message: e.without_url().to_string(),
                    attempts: attempt,
                });
            }
            Err(_) => {}
        }
        tracing::info!(target = %target.label, attempt, "notification not delivered; retrying");
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    unreachable!("the last attempt returns")
}

/// Sends the summary of `report` to every target; one target failing does not stop the
/// others. Returns each target's label and outcome, in config order.
pub async fn send_all(
    n: &Notifications,
    report: &Report,
    backoff: Duration,
) -> Vec<(String, Result<(), NotifyError>)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client with a timeout always builds");
    let s = summary(report, n.top);
    let mut out = Vec::new();
    for target in &n.targets {
        let body = match target.kind {
            TargetKind::Slack => slack_payload(&s, &n.links),
            TargetKind::Teams => teams_payload(&s, &n.links),
            TargetKind::Webhook => webhook_payload(&s, &n.links),
        };
        let result = post(&client, target, &body, backoff).await;
        out.push((target.label.clone(), result));
    }
    out
}

/// `slack #1`: the label of the `index`-th (from 0) target of `kind`.
pub fn label(kind: TargetKind, index: usize) -> String {
    format!("{} #{}", kind.as_str(), index + 1)
}
