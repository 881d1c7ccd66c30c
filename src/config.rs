//! Configuration: flags, `RIGHTSIZER_*` environment variables, and an optional TOML file.
//! A flag or environment variable wins over the file; the file wins over defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::analyzer::{PolicyOverride, PolicySet, Pricing};
use crate::prometheus::PromConfig;
use crate::redact::SecretUrl;

pub use crate::collector::settings::{CollectorConfig, CollectorSource, HttpCompression};
pub use crate::output::OutputFormat;

/// Default store: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://rightsizer.db";
/// Default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// rightsizer: CPU and memory requests and limits for Kubernetes containers, proven from history.
#[derive(Debug, Parser)]
#[command(name = "rightsizer", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by all subcommands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "RIGHTSIZER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Store URL: sqlite://PATH (default sqlite://rightsizer.db) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "RIGHTSIZER_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<SecretUrl>,
    /// Prometheus base URL, e.g. http://127.0.0.1:9090.
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_URL", global = true)]
    pub prometheus_url: Option<SecretUrl>,
    /// Bearer token for Prometheus (prefer the file or the environment variable).
    #[arg(
        long,
        env = "RIGHTSIZER_PROMETHEUS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub prometheus_token: Option<SecretString>,
    /// File holding the bearer token for Prometheus.
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_TOKEN_FILE", global = true)]
    pub prometheus_token_file: Option<PathBuf>,
    /// User for HTTP basic auth to Prometheus (password from RIGHTSIZER_PROMETHEUS_PASSWORD or the file).
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_USER", global = true)]
    pub prometheus_user: Option<String>,
    /// File holding the basic-auth password.
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_PASSWORD_FILE", global = true)]
    pub prometheus_password_file: Option<PathBuf>,
    /// Extra header on every Prometheus request, `Name: value` (repeatable; e.g. X-Scope-OrgID).
    #[arg(long = "prometheus-header", global = true)]
    pub prometheus_headers: Vec<SecretString>,
    /// PEM file with CA certificates to trust for Prometheus.
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_CA_FILE", global = true)]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Which server answers: prometheus, thanos, mimir or victoriametrics.
    #[arg(long, value_enum, env = "RIGHTSIZER_PROMETHEUS_BACKEND", global = true)]
    pub prometheus_backend: Option<crate::prometheus::Backend>,
    /// Sign requests with AWS SigV4 for this region (Amazon Managed Prometheus).
    #[arg(long, env = "RIGHTSIZER_PROMETHEUS_SIGV4_REGION", global = true)]
    pub prometheus_sigv4_region: Option<String>,
    /// Don't verify Prometheus' TLS certificate (testing only).
    #[arg(
        long,
        env = "RIGHTSIZER_PROMETHEUS_INSECURE_SKIP_VERIFY",
        global = true
    )]
    pub prometheus_insecure_skip_verify: bool,
    /// Read workloads, HPAs, PDBs and rightsizer.io annotations from the Kubernetes API too
    /// (in-cluster config or kubeconfig; a `[kubernetes]` config table also turns it on).
    #[arg(long, env = "RIGHTSIZER_KUBERNETES", global = true)]
    pub kubernetes: bool,
    /// Cluster name stored with every workload (default "default").
    #[arg(long, env = "RIGHTSIZER_CLUSTER", global = true)]
    pub cluster: Option<String>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, env = "RIGHTSIZER_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Where the collector reads history: auto (remote read where offered, else range
    /// queries), remote-read or query-range. Overrides `collector.source`.
    #[arg(long, env = "RIGHTSIZER_COLLECTOR_SOURCE", global = true, value_enum)]
    pub collector_source: Option<CollectorSource>,
    /// Compression of Prometheus' answers: auto (gzip unless Prometheus is on loopback),
    /// gzip or none. Overrides `collector.compression`.
    #[arg(
        long,
        env = "RIGHTSIZER_COLLECTOR_COMPRESSION",
        global = true,
        value_enum
    )]
    pub collector_compression: Option<HttpCompression>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How `rightsizer backtest` groups its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BacktestGroup {
    /// The whole fleet.
    Fleet,
    /// Per cluster.
    Cluster,
    /// Per cluster and namespace.
    Namespace,
    /// Per workload (cluster/namespace/Kind/name).
    Workload,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API with the collector and analyzer on a schedule.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "RIGHTSIZER_LISTEN")]
        listen: Option<String>,
        /// How often to collect and analyze (e.g. 10m); 0 disables the schedule.
        #[arg(long, env = "RIGHTSIZER_COLLECT_INTERVAL", value_parser = humantime::parse_duration)]
        collect_interval: Option<Duration>,
        /// API tokens, comma-separated (prefer the file). Actions need one; reads too with --api-auth-reads.
        #[arg(
            long,
            env = "RIGHTSIZER_API_TOKENS",
            hide_env_values = true,
            value_delimiter = ','
        )]
        api_tokens: Vec<SecretString>,
        /// File with API tokens, one per line.
        #[arg(long, env = "RIGHTSIZER_API_TOKEN_FILE")]
        api_token_file: Option<PathBuf>,
        /// Require a token for reads as well: the API, the dashboard and /metrics.
        #[arg(long, env = "RIGHTSIZER_API_AUTH_READS")]
        api_auth_reads: bool,
        /// /readyz fails when the newest collected hour is older than this (default: 3 × the interval + 1h).
        #[arg(long, env = "RIGHTSIZER_READY_MAX_COLLECTION_AGE", value_parser = humantime::parse_duration)]
        ready_max_collection_age: Option<Duration>,
        /// Also serve the sizing admission webhook (/admission/v1/mutate-pods) over TLS on this
        /// address, e.g. 0.0.0.0:8443. Needs --webhook-tls-cert and --webhook-tls-key.
        #[arg(long, env = "RIGHTSIZER_WEBHOOK_LISTEN")]
        webhook_listen: Option<String>,
        /// The webhook's certificate chain (PEM), e.g. tls.crt of a mounted Secret; re-read when it changes.
        #[arg(long, env = "RIGHTSIZER_WEBHOOK_TLS_CERT")]
        webhook_tls_cert: Option<PathBuf>,
        /// The webhook's private key (PEM), e.g. tls.key of a mounted Secret.
        #[arg(long, env = "RIGHTSIZER_WEBHOOK_TLS_KEY")]
        webhook_tls_key: Option<PathBuf>,
    },
    /// Ingest a window of history from Prometheus.
    Collect {
        /// How far back to start, e.g. 14d or 36h.
        #[arg(long, default_value = "14d", value_parser = humantime::parse_duration)]
        since: Duration,
        /// End of the window: RFC 3339 or unix seconds (default: now).
        #[arg(long)]
        until: Option<String>,
    },
    /// Compute and store recommendations from the collected history.
    Analyze,
    /// Print the stored recommendations (analyzing first if there are none).
    Recommend {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Walk-forward backtest of every strategy and of the values in force over the collected
    /// history, fleet-wide: slack, memory overrun hours and containers missing the
    /// objective. Reads the store; stores nothing.
    Backtest {
        /// Output format (table, json, yaml or csv).
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Held-out days at the end of the window (default: backtest.days, 7).
        #[arg(long)]
        days: Option<u32>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// One table for the fleet, or one per cluster, namespace or workload.
        #[arg(long, value_enum, default_value_t = BacktestGroup::Fleet)]
        by: BacktestGroup,
    },
    /// Build a fleet report from the stored recommendations, store it and print or write it.
    Report {
        /// md, html (one self-contained file with inline SVG charts), csv or json.
        #[arg(long, value_enum, default_value_t = crate::report::Format::Markdown)]
        format: crate::report::Format,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Resize running pods in place to their recommendations through the `resize`
    /// subresource. A dry run unless `--dry-run=false`: the plan from the pods as they are now,
    /// nothing sent.
    Apply {
        /// Only plan (the default); `--dry-run=false` sends the resizes.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        dry_run: bool,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this workload: `name` or `Kind/name`.
        #[arg(long)]
        workload: Option<String>,
        /// Pods resized at most in this run.
        #[arg(long, default_value_t = 50)]
        max_pods: usize,
        /// table or json (a list of {namespace, pod, container, current, target, decision, reason}).
        #[arg(short = 'o', long, value_enum, default_value_t = ApplyOutput::Table)]
        output: ApplyOutput,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Delete history older than `retention` (default 90d) and print what went.
    Prune {
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hand the recommendations over as a GitOps change: edit manifests in a checkout, or
    /// write kustomize / kubectl patches; optionally branch, commit, push and open a pull request.
    Gitops(GitopsArgs),
}

/// Options of `rightsizer gitops`.
#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// The GitOps checkout to edit.
    #[arg(long)]
    pub repo: PathBuf,
    /// in-place (edit the manifests), kustomize (patch files + kustomization) or patches (kubectl patch bodies).
    #[arg(long, default_value = "in-place")]
    pub output: String,
    /// Where kustomize or patches output goes (default: <repo>/rightsizer-patches).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// At most this many workloads per branch, to keep pull requests reviewable.
    #[arg(long)]
    pub max_workloads: Option<usize>,
    /// One branch (and pull request) per namespace: <branch>-<namespace>.
    #[arg(long)]
    pub group_by_namespace: bool,
    /// Branch to create or update.
    #[arg(long)]
    pub branch: Option<String>,
    /// Commit the change on the branch.
    #[arg(long)]
    pub commit: bool,
    /// Push the branch to this remote.
    #[arg(long)]
    pub push: Option<String>,
    /// Open or update a pull request: github or gitlab.
    #[arg(long)]
    pub pull_request: Option<String>,
    /// owner/name on GitHub, or the project path or id on GitLab.
    #[arg(long)]
    pub forge_repo: Option<String>,
    /// API base URL (GitHub Enterprise, self-hosted GitLab).
    #[arg(long)]
    pub forge_url: Option<String>,
    /// Branch the pull request targets.
    #[arg(long, default_value = "main")]
    pub base_branch: String,
    /// File with the forge token (else RIGHTSIZER_GIT_TOKEN).
    #[arg(long, env = "RIGHTSIZER_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// The `[gitops]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitopsConfig {
    /// Which changes are worth proposing.
    pub filter: crate::gitops::ProposalFilter,
    /// Workloads deployed by Helm: where their `resources:` live in a values file.
    pub helm_values: Vec<crate::gitops::HelmValuesMapping>,
    /// How long one git command (fetch, push, …) may run before it is killed.
    #[serde(with = "humantime_serde")]
    pub git_timeout: Duration,
    /// Largest forge (GitHub/GitLab API) answer read, in bytes; 0 means the default (16 MiB).
    pub forge_max_response_bytes: u64,
    /// Where `serve` proposes the memory an OOM kill raised, at once (`[gitops.on_oom]`).
    pub on_oom: Option<OomPullRequestConfig>,
}

/// The `[gitops.on_oom]` table: a checkout `serve` may commit to, and the branch and pull
/// request that carry the memory raised after OOM kills (one branch, updated at each kill).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OomPullRequestConfig {
    /// The GitOps checkout (a clone `serve` can write, with the remote configured).
    pub repo: PathBuf,
    /// Branch created or updated (default `rightsizer/oom`).
    #[serde(default = "default_oom_branch")]
    pub branch: String,
    /// Remote pushed to (default `origin`).
    #[serde(default = "default_remote")]
    pub push: String,
    /// `github` or `gitlab`.
    pub pull_request: crate::gitops::ForgeKind,
    /// owner/name on GitHub, or the project path or id on GitLab.
    pub forge_repo: String,
    /// API base URL (GitHub Enterprise, self-hosted GitLab).
    pub forge_url: Option<String>,
    /// Branch the pull request targets (default `main`).
    #[serde(default = "default_base_branch")]
    pub base_branch: String,
    /// File with the forge token (else `RIGHTSIZER_GIT_TOKEN`).
    pub token_file: Option<PathBuf>,
}

fn default_oom_branch() -> String {
    "rightsizer/oom".into()
}

fn default_remote() -> String {
    "origin".into()
}

fn default_base_branch() -> String {
    "main".into()
}

impl Default for GitopsConfig {
    fn default() -> Self {
        GitopsConfig {
            filter: Default::default(),
            helm_values: Vec::new(),
            git_timeout: crate::gitops::DEFAULT_GIT_TIMEOUT,
            forge_max_response_bytes: 0,
            on_oom: None,
        }
    }
}

/// How `rightsizer apply` prints its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyOutput {
    /// One line per container.
    Table,
    /// A JSON list of decisions.
    Json,
}

/// The `[apply]` table of the config file: which recommendations `rightsizer apply` acts on
/// and how fast it lowers values.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplyConfig {
    /// Lowest confidence resized (default medium).
    pub min_confidence: crate::model::Confidence,
    /// Largest decrease per run as a share of the current value, in (0, 1] (default 0.25).
    pub max_step_down: f64,
    /// What `serve` does with the plan: nothing (`off`, the default), log it each
    /// `step_interval` (`recommend`), or resize running pods in place (`in-place`).
    pub mode: crate::apply::ApplyMode,
    /// Time between two steps of `serve`'s applier; each step first checks the pods the
    /// previous one resized and rolls back those that restarted, were OOM-killed or lost
    /// readiness (default 1h).
    #[serde(with = "humantime_serde")]
    pub step_interval: Duration,
    /// Pods resized at most per step of `serve`'s applier (default 20).
    pub max_pods: usize,
    /// Whether `serve` watches pod status and reacts to OOM kills at once (default true;
    /// it runs when `mode` is not `off` or `[gitops.on_oom]` is set).
    pub react_to_oom: bool,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            min_confidence: crate::model::Confidence::Medium,
            max_step_down: 0.25,
            mode: crate::apply::ApplyMode::Off,
            step_interval: Duration::from_secs(3600),
            max_pods: 20,
            react_to_oom: true,
        }
    }
}

/// The `[reports]` table of the config file: when `serve` builds reports and how many it keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// An interval (`24h`, fired on multiples from the epoch, UTC) or a cron expression
    /// (`cron: 0 6 * * 1`); empty turns scheduled reports off.
    pub schedule: String,
    /// Reports kept at least, newest first.
    pub keep: usize,
    /// Older reports beyond `keep` are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// The `[notifications]` table: a summary after each scheduled report.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The dashboard's external URL, linked from every summary.
    pub dashboard_url: Option<String>,
    /// Where the pull requests of `rightsizer gitops` are listed, linked from every summary.
    pub pull_requests_url: Option<String>,
    /// Top changes listed.
    pub top: usize,
    /// `[[notifications.targets]]`.
    pub targets: Vec<NotificationTargetConfig>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            dashboard_url: None,
            pull_requests_url: None,
            top: 5,
            targets: Vec::new(),
        }
    }
}

/// One `[[notifications.targets]]` entry: its kind and where its secret URL is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationTargetConfig {
    /// `slack`, `teams` or `webhook`.
    pub kind: crate::report::notify::TargetKind,
    /// A file holding the webhook URL (a mounted Secret).
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the webhook URL.
    pub url_env: Option<String>,
}

/// The targets with their URLs read, checked to be http(s) URLs. Errors name the entry and
/// the file or variable, never the URL.
fn notifications(
    c: &NotificationsConfig,
) -> Result<crate::report::notify::Notifications, ConfigError> {
    use crate::report::notify::{label, Links, Notifications, Target};
    let mut targets = Vec::new();
    let mut counts = std::collections::HashMap::new();
    for (i, t) in c.targets.iter().enumerate() {
        let at = format!("notifications.targets[{i}]");
        let url = match (&t.url_file, &t.url_env) {
            (Some(path), None) => read_token(path)?,
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => SecretString::from(v.trim().to_string()),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{at}.url_env: environment variable {var} is not set or empty"
                    )))
                }
            },
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "{at}: set exactly one of url_file and url_env"
                )))
            }
        };
        let ok = url::Url::parse(url.expose_secret())
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            let source = t.url_file.as_ref().map_or_else(
                || format!("variable {}", t.url_env.as_deref().unwrap_or_default()),
                |p| format!("file {}", p.display()),
            );
            return Err(ConfigError::Invalid(format!(
                "{at}: the {source} does not hold an http(s) URL"
            )));
        }
        let n = counts.entry(t.kind).or_insert(0usize);
        targets.push(Target {
            kind: t.kind,
            url,
            label: label(t.kind, *n),
        });
        *n += 1;
    }
    Ok(Notifications {
        targets,
        links: Links {
            dashboard_url: c.dashboard_url.clone(),
            pull_requests_url: c.pull_requests_url.clone(),
        },
        top: c.top,
    })
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            schedule: "24h".into(),
            keep: 30,
            max_age: Duration::from_secs(90 * 86_400),
        }
    }
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Store URL.
    pub database_url: Option<SecretUrl>,
    /// Prometheus base URL.
    pub prometheus_url: Option<SecretUrl>,
    /// File holding the Prometheus bearer token.
    pub prometheus_token_file: Option<PathBuf>,
    /// Basic-auth user for Prometheus.
    pub prometheus_user: Option<String>,
    /// File holding the basic-auth password.
    pub prometheus_password_file: Option<PathBuf>,
    /// Extra headers on every Prometheus request.
    pub prometheus_headers: std::collections::BTreeMap<String, SecretString>,
    /// PEM file with CA certificates to trust.
    pub prometheus_ca_file: Option<PathBuf>,
    /// Don't verify Prometheus' TLS certificate.
    pub prometheus_insecure_skip_verify: bool,
    /// `prometheus`, `thanos`, `mimir` or `victoriametrics`.
    pub prometheus_backend: crate::prometheus::Backend,
    /// AWS region to sign requests for (Amazon Managed Prometheus, service `aps`).
    pub prometheus_sigv4_region: Option<String>,
    /// Cluster name.
    pub cluster: Option<String>,
    /// API address.
    pub listen: Option<String>,
    /// Collector settings.
    pub collector: CollectorConfig,
    /// Recommendation policy: global values, `namespaces.<ns>` and `workloads."<ns>/<Kind>/<name>"` overrides.
    pub policy: PolicyOverride,
    /// Prices for the cost of changes.
    pub pricing: Pricing,
    /// Walk-forward backtest and strategy tournament: `days`, `max_cpu_over_limit`,
    /// `cpu_request_tolerance`, `switch_penalty`.
    pub backtest: crate::analyzer::BacktestSettings,
    /// Whether the file set `backtest.days`: only then is a window too short for it an
    /// error (the default 7 days shrink to what a short window holds).
    #[serde(skip)]
    pub backtest_days_set: bool,
    /// GitOps hand-over settings.
    pub gitops: GitopsConfig,
    /// `[apply]`: in-place resizes.
    pub apply: ApplyConfig,
    /// The Kubernetes API source: kubeconfig, context, namespaces, label selector.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
    /// Scheduled reports.
    pub reports: ReportsConfig,
    /// Where a summary of each scheduled report is posted.
    pub notifications: NotificationsConfig,
    /// How long usage and signal history is kept, counted back from the newest collected
    /// hour (default 90d); at least the longest analysis window.
    #[serde(with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// Several clusters: each a name with its own Prometheus, or a value of
    /// `collector.cluster_label` on the shared one.
    pub clusters: Vec<ClusterEntry>,
}

/// One `[[clusters]]` entry. Prometheus settings left out are inherited from the top level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterEntry {
    /// Cluster name: part of every workload's identity.
    pub name: String,
    /// This cluster's Prometheus (default: the top-level `prometheus_url`).
    pub prometheus_url: Option<SecretUrl>,
    /// Value of `collector.cluster_label` selecting this cluster (default: `name`).
    pub label_value: Option<String>,
    /// File holding a bearer token for this Prometheus.
    pub prometheus_token_file: Option<PathBuf>,
    /// Basic-auth user for this Prometheus (password from `prometheus_password_file`).
    pub prometheus_user: Option<String>,
    /// File holding the basic-auth password.
    pub prometheus_password_file: Option<PathBuf>,
    /// Extra headers for this Prometheus (replace the top-level ones).
    #[serde(default)]
    pub prometheus_headers: std::collections::BTreeMap<String, SecretString>,
    /// PEM file with CA certificates to trust.
    pub prometheus_ca_file: Option<PathBuf>,
    /// Don't verify this Prometheus' TLS certificate.
    pub prometheus_insecure_skip_verify: Option<bool>,
    /// This cluster's server kind (default: the top-level `prometheus_backend`).
    pub prometheus_backend: Option<crate::prometheus::Backend>,
    /// This cluster's AWS region to sign for (Amazon Managed Prometheus).
    pub prometheus_sigv4_region: Option<String>,
    /// This cluster's Kubernetes API source.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
}

/// One cluster to collect and analyze: where its history is and which series are its.
#[derive(Debug, Clone)]
pub struct Source {
    /// Cluster name.
    pub cluster: String,
    /// Its Prometheus, if configured.
    pub prometheus: Option<PromConfig>,
    /// The label matcher selecting its series, when Prometheus holds several clusters.
    pub scope: crate::collector::Scope,
    /// Its Kubernetes API source, when enabled.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
}

/// Errors in configuration, each naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file can't be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A token or password file can't be used.
    #[error("cannot use token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why: the I/O error, or that it is empty.
        reason: String,
    },
    /// The config file holds a secret inline, where it would be copied and shown freely.
    #[error("config file {path}: `{key}` would keep a secret in the config file, which is copied and shown freely; {instead}")]
    InlineSecret {
        /// The file.
        path: PathBuf,
        /// The offending key, e.g. `clusters[0].prometheus_token`.
        key: String,
        /// Where the secret goes instead, in words.
        instead: String,
    },
    /// A value is out of range or missing.
    #[error("{0}")]
    Invalid(String),
}

/// Everything resolved, ready to use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Store URL (`Debug` and `Display` mask its credentials).
    pub database_url: SecretUrl,
    /// Prometheus, if configured.
    pub prometheus: Option<PromConfig>,
    /// Cluster name.
    pub cluster: String,
    /// Collector settings.
    pub collector: CollectorConfig,
    /// Recommendation policies.
    pub policy: PolicySet,
    /// Prices for the cost of changes.
    pub pricing: Pricing,
    /// Walk-forward backtest and strategy tournament settings.
    pub backtest: crate::analyzer::BacktestSettings,
    /// Whether the config file set `backtest.days` (see [`FileConfig::backtest_days_set`]).
    pub backtest_days_set: bool,
    /// GitOps hand-over settings.
    pub gitops: GitopsConfig,
    /// `[apply]`: in-place resizes.
    pub apply: ApplyConfig,
    /// The Kubernetes API source, when enabled.
    pub kubernetes: Option<crate::cluster::ClusterSourceConfig>,
    /// When reports are built, `None` when off.
    pub report_schedule: Option<crate::report::Schedule>,
    /// Scheduled reports settings.
    pub reports: ReportsConfig,
    /// Where summaries of scheduled reports go, their URLs read.
    pub notifications: crate::report::notify::Notifications,
    /// How long history is kept (see `store::retention`).
    pub retention: Duration,
    /// API address from the file (the `serve` flag wins).
    pub listen: Option<String>,
    /// The clusters to work on: `[[clusters]]` (narrowed by `--cluster`), or the one
    /// cluster of the top-level settings. Empty when `collector.cluster_label` is set without
    /// entries: the clusters are then discovered from Prometheus (see `jobs::sources`).
    pub sources: Vec<Source>,
    /// Whether `--cluster` (or the file's `cluster`) picked one cluster explicitly.
    pub cluster_chosen: bool,
}

impl Settings {
    /// Merges flags/env over the config file over defaults, and checks the result.
    pub fn resolve(global: &GlobalArgs) -> Result<Settings, ConfigError> {
        let file = match &global.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Settings::resolve_with(global, file)
    }

    /// [`Settings::resolve`] over a config file already read (see [`parse_file`]).
    pub fn resolve_with(global: &GlobalArgs, file: FileConfig) -> Result<Settings, ConfigError> {
        let prometheus = prometheus_config(global, &file)?;
        validate_collector(&file.collector)?;
        let policy = PolicySet::new(file.policy.clone()).map_err(ConfigError::Invalid)?;
        let retention = retention(&file, &policy)?;
        file.backtest
            .validate(
                policy.global().window_hours(),
                policy.global().min_history_hours,
                file.backtest_days_set,
            )
            .map_err(ConfigError::Invalid)?;
        if !(file.pricing.cpu_core_hour >= 0.0 && file.pricing.memory_gib_hour >= 0.0) {
            return Err(ConfigError::Invalid(
                "pricing.cpu_core_hour and pricing.memory_gib_hour must be ≥ 0".into(),
            ));
        }
        let kubernetes = kubernetes_source(&file, global.kubernetes)?;
        let chosen = global.cluster.clone().or(file.cluster.clone());
        if chosen.as_deref() == Some("") {
            return Err(ConfigError::Invalid(
                "cluster name must not be empty".into(),
            ));
        }
        let compression = global
            .collector_compression
            .unwrap_or(file.collector.compression);
        let sources = sources(
            &file,
            compression,
            prometheus.as_ref(),
            kubernetes.as_ref(),
            chosen.as_deref(),
        )?;
        let cluster = chosen
            .clone()
            .or_else(|| sources.first().map(|s| s.cluster.clone()))
            .unwrap_or_else(|| "default".into());
        let apply = validate_apply(file.apply.clone())?;
        let report_schedule = match file.reports.schedule.trim() {
            "" | "off" => None,
            text => Some(
                crate::report::Schedule::parse(text)
                    .map_err(|e| ConfigError::Invalid(format!("reports.schedule: {e}")))?,
            ),
        };
        Ok(Settings {
            database_url: global
                .database_url
                .clone()
                .or(file.database_url.clone())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            prometheus,
            cluster,
            collector: CollectorConfig {
                source: global.collector_source.unwrap_or(file.collector.source),
                compression,
                ..file.collector.clone()
            },
            policy,
            pricing: file.pricing.clone(),
            backtest: file.backtest.clone(),
            backtest_days_set: file.backtest_days_set,
            gitops: file.gitops.clone(),
            apply,
            report_schedule,
            reports: file.reports.clone(),
            notifications: notifications(&file.notifications)?,
            retention,
            kubernetes,
            listen: file.listen.clone(),
            cluster_chosen: chosen.is_some(),
            sources,
        })
    }
}

/// The Prometheus of the flags and the file, when a URL is given: flags win, a token
/// (flag, else file) or a user and password, extra headers (the file's, then the flags').
fn prometheus_config(
    global: &GlobalArgs,
    file: &FileConfig,
) -> Result<Option<PromConfig>, ConfigError> {
    let token_path = global
        .prometheus_token_file
        .clone()
        .or(file.prometheus_token_file.clone());
    let token = match (&global.prometheus_token, token_path.clone()) {
        (Some(t), _) if t.expose_secret().trim().is_empty() => {
            return Err(ConfigError::Invalid(
                "--prometheus-token (RIGHTSIZER_PROMETHEUS_TOKEN) is empty: give the token, or unset it".into(),
            ))
        }
        (Some(t), _) => Some(SecretString::from(t.expose_secret().trim().to_string())),
        (None, Some(path)) => Some(read_token(&path)?),
        (None, None) => None,
    };
    let Some(url) = global
        .prometheus_url
        .clone()
        .or(file.prometheus_url.clone())
    else {
        return Ok(None);
    };
    let url = url.expose().to_string();
    let basic_auth = prometheus_basic_auth(global, file)?;
    let mut headers: Vec<(String, SecretString)> = file
        .prometheus_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for h in &global.prometheus_headers {
        let h = h.expose_secret();
        let (name, value) = h.split_once(':').ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--prometheus-header must be `Name: value`, got {:?}",
                h.split(':').next().unwrap_or("")
            ))
        })?;
        headers.push((
            name.trim().to_string(),
            SecretString::from(value.trim().to_string()),
        ));
    }
    Ok(Some(PromConfig {
        gzip: global
            .collector_compression
            .unwrap_or(file.collector.compression)
            .gzip_for(&url),
        url,
        bearer_token: token,
        bearer_token_file: if global.prometheus_token.is_some() {
            None
        } else {
            token_path
        },
        timeout: file.collector.timeout,
        retries: file.collector.retries,
        max_response_bytes: file.collector.max_response_bytes,
        basic_auth,
        headers,
        ca_file: global
            .prometheus_ca_file
            .clone()
            .or(file.prometheus_ca_file.clone()),
        backend: global.prometheus_backend.unwrap_or(file.prometheus_backend),
        sigv4: global
            .prometheus_sigv4_region
            .clone()
            .or(file.prometheus_sigv4_region.clone())
            .map(aps),
        insecure_skip_verify: global.prometheus_insecure_skip_verify
            || file.prometheus_insecure_skip_verify,
        ..PromConfig::default()
    }))
}

/// The Prometheus user (flag, else file) and its password (environment, else file).
fn prometheus_basic_auth(
    global: &GlobalArgs,
    file: &FileConfig,
) -> Result<Option<(String, SecretString)>, ConfigError> {
    let Some(user) = global
        .prometheus_user
        .clone()
        .or(file.prometheus_user.clone())
    else {
        return Ok(None);
    };
    let password_file = global
        .prometheus_password_file
        .clone()
        .or(file.prometheus_password_file.clone());
    let password = match (
        std::env::var("RIGHTSIZER_PROMETHEUS_PASSWORD").ok(),
        password_file,
    ) {
        (Some(p), _) => SecretString::from(p),
        (None, Some(path)) => read_token(&path)?,
        (None, None) => return Err(ConfigError::Invalid(
            "a Prometheus user needs RIGHTSIZER_PROMETHEUS_PASSWORD or --prometheus-password-file"
                .into(),
        )),
    };
    Ok(Some((user, password)))
}

/// The Kubernetes API source: the file's `[kubernetes]` table, validated, or the defaults
/// when `--kubernetes` asks for it.
fn kubernetes_source(
    file: &FileConfig,
    flag: bool,
) -> Result<Option<crate::cluster::ClusterSourceConfig>, ConfigError> {
    Ok(match (&file.kubernetes, flag) {
        (Some(k), _) => {
            k.validate()
                .map_err(|e| ConfigError::Invalid(format!("kubernetes: {e}")))?;
            Some(k.clone())
        }
        (None, true) => Some(crate::cluster::ClusterSourceConfig::default()),
        (None, false) => None,
    })
}

/// The collector's step divides an hour, a chunk stays under Prometheus' 11,000 points per
/// series, and something runs at a time.
fn validate_collector(c: &CollectorConfig) -> Result<(), ConfigError> {
    if c.step.as_secs() == 0 || 3600 % c.step.as_secs() != 0 {
        return Err(ConfigError::Invalid(format!(
            "collector.step must divide an hour evenly, got {}",
            humantime::format_duration(c.step)
        )));
    }
    if c.chunk_hours == 0 || c.chunk_hours as u64 * 3600 / c.step.as_secs() > 11_000 {
        return Err(ConfigError::Invalid(
            "collector.chunk_hours must be ≥ 1 and keep a chunk under Prometheus' 11,000 points per series".into(),
        ));
    }
    if c.concurrency == 0 {
        return Err(ConfigError::Invalid(
            "collector.concurrency must be ≥ 1".into(),
        ));
    }
    Ok(())
}

/// `[apply]` within its ranges.
fn validate_apply(a: ApplyConfig) -> Result<ApplyConfig, ConfigError> {
    if a.step_interval < Duration::from_secs(60) {
        return Err(ConfigError::Invalid(format!(
            "apply.step_interval must be at least 1m (the health check needs the pods to run a while); got {}",
            humantime::format_duration(a.step_interval)
        )));
    }
    if !(a.max_step_down > 0.0 && a.max_step_down <= 1.0) {
        return Err(ConfigError::Invalid(format!(
            "apply.max_step_down must be above 0 and at most 1 (0.25: at most 25% lower per run); got {}",
            a.max_step_down
        )));
    }
    Ok(a)
}

/// Default of `retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// `retention`, checked to keep every analysis window whole.
fn retention(file: &FileConfig, policy: &PolicySet) -> Result<Duration, ConfigError> {
    let retention = file.retention.unwrap_or(DEFAULT_RETENTION);
    let (window, setting) = policy.longest_window();
    // The cutoff is floored to a day start: retention keeps at least this much, never less.
    if retention < window {
        return Err(ConfigError::Invalid(format!(
            "retention = \"{}\" would delete history the analysis reads: {setting} is {}. \
             Set retention to at least {} or shorten the window",
            days_text(retention),
            days_text(window),
            days_text(window),
        )));
    }
    Ok(retention)
}

/// `90d` for whole days (humantime would say `2months 29days 2h 52m 48s`), humantime else.
pub fn days_text(d: Duration) -> String {
    match d.as_secs() {
        secs if secs > 0 && secs % 86_400 == 0 => format!("{}d", secs / 86_400),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// The clusters of the config: `[[clusters]]` entries (narrowed to `chosen`), one cluster
/// selected by `collector.cluster_label`, none (to be discovered by that label), or the
/// single cluster of the top-level settings.
fn sources(
    file: &FileConfig,
    compression: HttpCompression,
    prometheus: Option<&PromConfig>,
    kubernetes: Option<&crate::cluster::ClusterSourceConfig>,
    chosen: Option<&str>,
) -> Result<Vec<Source>, ConfigError> {
    let label = file.collector.cluster_label.clone();
    if let Some(l) = &label {
        if !crate::prometheus::promql::is_label_name(l) {
            return Err(ConfigError::Invalid(format!(
                "collector.cluster_label {l:?} is not a valid Prometheus label name"
            )));
        }
    }
    let scope = |value: &str| crate::collector::Scope {
        cluster: label.clone().map(|l| (l, value.to_string())),
        namespaces: None,
    };
    if file.clusters.is_empty() {
        return Ok(match (chosen, &label) {
            (None, Some(_)) => Vec::new(),
            (chosen, _) => {
                let name = chosen.unwrap_or("default");
                vec![Source {
                    cluster: name.to_string(),
                    prometheus: prometheus.cloned(),
                    scope: scope(name),
                    kubernetes: kubernetes.cloned(),
                }]
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::with_capacity(file.clusters.len());
    for (i, entry) in file.clusters.iter().enumerate() {
        let at = format!("clusters[{i}]");
        check_entry(entry, &at, &mut seen, label.is_some())?;
        let url = entry
            .prometheus_url
            .as_ref()
            .map(|u| u.expose().to_string())
            .or_else(|| prometheus.map(|p| p.url.clone()));
        let prometheus = match url {
            None => None,
            Some(url) => Some(cluster_prometheus(
                entry,
                &at,
                url,
                prometheus,
                &file.collector,
                compression,
            )?),
        };
        all.push(Source {
            cluster: entry.name.clone(),
            prometheus,
            scope: scope(entry.label_value.as_deref().unwrap_or(&entry.name)),
            kubernetes: entry.kubernetes.clone(),
        });
    }
    match chosen {
        None => Ok(all),
        Some(name) => match all.into_iter().find(|s| s.cluster == name) {
            Some(source) => Ok(vec![source]),
            None => Err(ConfigError::Invalid(format!(
                "cluster {name:?} is not among the configured [[clusters]]: {}",
                file.clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// One `[[clusters]]` entry (`at` names it) stands on its own: a name not seen before, a
/// label value only with a cluster label, a valid Kubernetes source.
fn check_entry(
    entry: &ClusterEntry,
    at: &str,
    seen: &mut std::collections::HashSet<String>,
    has_label: bool,
) -> Result<(), ConfigError> {
    if entry.name.is_empty() {
        return Err(ConfigError::Invalid(format!("{at}.name must not be empty")));
    }
    if !seen.insert(entry.name.clone()) {
        return Err(ConfigError::Invalid(format!(
            "{at}: cluster {:?} is listed twice",
            entry.name
        )));
    }
    if entry.label_value.is_some() && !has_label {
        return Err(ConfigError::Invalid(format!(
            "{at}.label_value needs collector.cluster_label"
        )));
    }
    if let Some(k) = &entry.kubernetes {
        k.validate()
            .map_err(|e| ConfigError::Invalid(format!("{at}.kubernetes: {e}")))?;
    }
    Ok(())
}

/// The Prometheus of one `[[clusters]]` entry at `url`: the top-level one's settings (or
/// the collector's defaults), with what the entry sets in their place.
fn cluster_prometheus(
    entry: &ClusterEntry,
    at: &str,
    url: String,
    base: Option<&PromConfig>,
    collector: &CollectorConfig,
    compression: HttpCompression,
) -> Result<PromConfig, ConfigError> {
    let mut p = base.cloned().unwrap_or_else(|| PromConfig {
        timeout: collector.timeout,
        retries: collector.retries,
        max_response_bytes: collector.max_response_bytes,
        ..PromConfig::default()
    });
    p.gzip = compression.gzip_for(&url);
    p.url = url;
    if let Some(path) = &entry.prometheus_token_file {
        p.bearer_token = Some(read_token(path)?);
        p.bearer_token_file = Some(path.clone());
        p.basic_auth = None;
    }
    if let Some(user) = &entry.prometheus_user {
        let path = entry.prometheus_password_file.as_ref().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{at}.prometheus_user needs {at}.prometheus_password_file"
            ))
        })?;
        p.basic_auth = Some((user.clone(), read_token(path)?));
        p.bearer_token = None;
        p.bearer_token_file = None;
    }
    if !entry.prometheus_headers.is_empty() {
        p.headers = entry
            .prometheus_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    if let Some(ca) = &entry.prometheus_ca_file {
        p.ca_file = Some(ca.clone());
    }
    if let Some(insecure) = entry.prometheus_insecure_skip_verify {
        p.insecure_skip_verify = insecure;
    }
    if let Some(backend) = entry.prometheus_backend {
        p.backend = backend;
    }
    if let Some(region) = &entry.prometheus_sigv4_region {
        p.sigv4 = Some(aps(region.clone()));
    }
    Ok(p)
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse_file(&text, path)
}

/// Parses the text of the config file read from `path` (named in errors).
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let parse_error = |e: toml::de::Error| ConfigError::Parse {
        path: path.into(),
        message: e.to_string().trim().replace('\n', " "),
    };
    let raw: toml::Table = toml::from_str(text).map_err(parse_error)?;
    refuse_inline_secrets(path, &raw)?;
    let mut file: FileConfig = toml::from_str(text).map_err(parse_error)?;
    file.backtest_days_set = raw.get("backtest").and_then(|b| b.get("days")).is_some();
    Ok(file)
}

/// Keys someone may reach for to put a credential in the file, and where it goes instead.
const INLINE_SECRETS: &[(&str, &str)] = &[
    ("prometheus_token", "put it in a file and set `prometheus_token_file`, or set RIGHTSIZER_PROMETHEUS_TOKEN"),
    ("prometheus_password", "put it in a file and set `prometheus_password_file`, or set RIGHTSIZER_PROMETHEUS_PASSWORD"),
    ("api_token", "put it in a file and pass --api-token-file, or set RIGHTSIZER_API_TOKENS"),
    ("api_tokens", "put them in a file and pass --api-token-file, or set RIGHTSIZER_API_TOKENS"),
    ("git_token", "put it in a file and pass --git-token-file, or set RIGHTSIZER_GIT_TOKEN"),
    ("token", "put it in a file and set the matching `*_token_file`, or its environment variable"),
    ("password", "put it in a file and set `prometheus_password_file`, or set RIGHTSIZER_PROMETHEUS_PASSWORD"),
];

/// Refuses a credential written inline in the config file (the file is often committed,
/// mounted as a ConfigMap and printed when debugging), with where it belongs instead.
fn refuse_inline_secrets(path: &Path, raw: &toml::Table) -> Result<(), ConfigError> {
    let mut tables: Vec<(String, &toml::Table)> = vec![(String::new(), raw)];
    for name in ["gitops", "kubernetes"] {
        if let Some(t) = raw.get(name).and_then(toml::Value::as_table) {
            tables.push((format!("{name}."), t));
        }
    }
    if let Some(entries) = raw.get("clusters").and_then(toml::Value::as_array) {
        for (i, entry) in entries.iter().enumerate() {
            if let Some(t) = entry.as_table() {
                tables.push((format!("clusters[{i}]."), t));
            }
        }
    }
    let targets = raw
        .get("notifications")
        .and_then(|n| n.get("targets"))
        .and_then(toml::Value::as_array);
    for (i, entry) in targets.into_iter().flatten().enumerate() {
        if entry.get("url").is_some() {
            return Err(ConfigError::InlineSecret {
                path: path.into(),
                key: format!("notifications.targets[{i}].url"),
                instead: "a webhook URL lets anyone post to the channel: put it in a file and set `url_file`, or name an environment variable in `url_env`".into(),
            });
        }
    }
    for (prefix, table) in tables {
        if let Some((key, instead)) = INLINE_SECRETS.iter().find(|(k, _)| table.contains_key(*k)) {
            return Err(ConfigError::InlineSecret {
                path: path.into(),
                key: format!("{prefix}{key}"),
                instead: instead.to_string(),
            });
        }
    }
    Ok(())
}

/// Signing for Amazon Managed Prometheus in `region`.
fn aps(region: String) -> crate::prometheus::sigv4::SigV4Config {
    crate::prometheus::sigv4::SigV4Config {
        region,
        service: "aps".into(),
    }
}

/// Reads a token or password file: its content without surrounding whitespace, which
/// must not be empty.
pub fn read_token(path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenFile {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::TokenFile {
            path: path.into(),
            reason: "it is empty".into(),
        });
    }
    Ok(SecretString::from(token.to_string()))
}

/// Parses a time given as RFC 3339 or unix seconds.
pub fn parse_time(s: &str) -> Result<i64, ConfigError> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|e| {
            ConfigError::Invalid(format!(
                "invalid time {s:?} (want RFC 3339 or unix seconds): {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn compression_auto_means_gzip_off_loopback() {
        let auto = super::HttpCompression::Auto;
        assert!(!auto.gzip_for("http://127.0.0.1:9090"));
        assert!(!auto.gzip_for("http://localhost:9090/prometheus"));
        assert!(!auto.gzip_for("http://[::1]:9090"));
        assert!(auto.gzip_for("https://prometheus.monitoring.svc:9090"));
        assert!(auto.gzip_for("http://10.0.0.7:9090"));
        assert!(super::HttpCompression::Gzip.gzip_for("http://127.0.0.1:9090"));
        assert!(!super::HttpCompression::None.gzip_for("https://example.com"));
    }

    use super::*;

    fn args(extra: &[&str]) -> Cli {
        let mut argv = vec!["rightsizer"];
        argv.extend_from_slice(extra);
        argv.push("analyze");
        Cli::try_parse_from(argv).unwrap()
    }

    fn write(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("rs-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = Settings::resolve(&args(&[]).global).unwrap();
        assert_eq!(s.database_url.expose(), "sqlite://rightsizer.db");
        assert_eq!(s.cluster, "default");
        assert!(s.prometheus.is_none());
        assert_eq!(s.policy.global(), crate::analyzer::Policy::default());
    }

    #[test]
    fn flags_win_over_the_file() {
        let path = write(
            "flags",
            "cluster = \"from-file\"\nprometheus_url = \"http://file:9090\"\n[policy]\nmargin = 0.2\nwindow = \"7d\"\n",
        );
        let cli = args(&["--config", path.to_str().unwrap(), "--cluster", "from-flag"]);
        let s = Settings::resolve(&cli.global).unwrap();
        assert_eq!(s.cluster, "from-flag");
        assert_eq!(s.prometheus.unwrap().url, "http://file:9090");
        assert_eq!(s.policy.global().margin, 0.2);
        assert_eq!(s.policy.global().window_hours(), 168);
    }

    #[test]
    fn the_oom_pull_request_table_has_defaults_and_names_what_is_missing() {
        let path = write(
            "on-oom",
            "[gitops.on_oom]\nrepo = \"/srv/deploy\"\npull_request = \"gitlab\"\nforge_repo = \"acme/deploy\"\n\n[apply]\nreact_to_oom = false\n",
        );
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap();
        let on_oom = s.gitops.on_oom.unwrap();
        assert_eq!(
            (
                on_oom.branch.as_str(),
                on_oom.push.as_str(),
                on_oom.base_branch.as_str()
            ),
            ("rightsizer/oom", "origin", "main")
        );
        assert_eq!(on_oom.pull_request, crate::gitops::ForgeKind::GitLab);
        assert!(!s.apply.react_to_oom);
        assert!(ApplyConfig::default().react_to_oom);
        let path = write("on-oom-bad", "[gitops.on_oom]\nrepo = \"/srv/deploy\"\n");
        let err =
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap_err();
        assert!(
            err.to_string().contains("missing field `pull_request`"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let path = write("typo", "[policy]\nmargn = 0.2\n");
        let err =
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap_err();
        assert!(err.to_string().contains("unknown field `margn`"), "{err}");
        let path = write("range", "[policy]\ncpu_percentile = 150\n");
        let err =
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy.cpu_percentile must be in (0, 100], got 150"
        );
        let err =
            Settings::resolve(&args(&["--config", "/nonexistent/rs.toml"]).global).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read config file /nonexistent/rs.toml"),
            "{err}"
        );
    }

    #[test]
    fn notification_urls_come_from_files_or_the_environment_never_the_config_file() {
        let resolve = |name: &str, text: &str| {
            let path = write(name, text);
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global)
        };
        let err = resolve(
            "notify-inline",
            "[[notifications.targets]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/secret\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`notifications.targets[0].url` would keep a secret"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret\""), "{err}");

        let url_file = write("notify-url", "https://hooks.slack.com/services/T/B/xyz\n");
        let s = resolve(
            "notify-ok",
            &format!(
                "[notifications]\ndashboard_url = \"https://rs.example.com\"\n[[notifications.targets]]\nkind = \"slack\"\nurl_file = \"{}\"\n[[notifications.targets]]\nkind = \"webhook\"\nurl_file = \"{}\"\n",
                url_file.display(),
                url_file.display()
            ),
        )
        .unwrap();
        let n = &s.notifications;
        assert_eq!(n.targets.len(), 2);
        assert_eq!(n.targets[0].label, "slack #1");
        assert_eq!(n.targets[1].label, "webhook #1");
        assert_eq!(
            n.targets[0].url.expose_secret(),
            "https://hooks.slack.com/services/T/B/xyz"
        );
        assert_eq!(
            n.links.dashboard_url.as_deref(),
            Some("https://rs.example.com")
        );
        assert_eq!(n.top, 5);
        assert!(!format!("{n:?}").contains("xyz"));

        let not_a_url = write("notify-bad", "hooks.slack.com/services/T/B/xyz\n");
        let err = resolve(
            "notify-bad-cfg",
            &format!(
                "[[notifications.targets]]\nkind = \"teams\"\nurl_file = \"{}\"\n",
                not_a_url.display()
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not hold an http(s) URL"), "{err}");
        assert!(!err.contains("xyz"), "{err}");
        let err = resolve(
            "notify-neither",
            "[[notifications.targets]]\nkind = \"webhook\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("set exactly one of url_file and url_env"),
            "{err}"
        );
        let err = resolve(
            "notify-env",
            "[[notifications.targets]]\nkind = \"webhook\"\nurl_env = \"RIGHTSIZER_TEST_UNSET_WEBHOOK\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("RIGHTSIZER_TEST_UNSET_WEBHOOK is not set"),
            "{err}"
        );
        let err = resolve(
            "notify-kind",
            "[[notifications.targets]]\nkind = \"email\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant `email`"), "{err}");
    }

    #[test]
    fn report_schedules_are_checked() {
        let path = write("reports", "[reports]\nschedule = \"cron: 61 * * * *\"\n");
        let err =
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap_err();
        assert!(err.to_string().starts_with("reports.schedule: "), "{err}");
        let path = write(
            "reports-ok",
            "[reports]\nschedule = \"cron: 0 6 * * 1\"\nkeep = 4\n",
        );
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]).global).unwrap();
        assert!(s.report_schedule.is_some());
        assert_eq!(s.reports.keep, 4);
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert!(parse_time("yesterday").is_err());
    }
}
