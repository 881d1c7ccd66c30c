//! The `rightsizer` subcommands: wiring of config, store, Prometheus and the jobs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::config::{parse_time, Cli, Command, Settings, DEFAULT_LISTEN};
use crate::http::{self, AppState};
use crate::jobs;
use crate::runs::{holder, RunKind};
use crate::store::{self, RecommendationFilter, Store};
use crate::telemetry::JobOutcome;

/// A progress bar with an ETA on a terminal; nothing otherwise (logs say enough).
fn progress_bar() -> crate::collector::Progress {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return Default::default();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} collecting [{bar:40}] {pos}/{len} hours, {per_sec}, ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    crate::collector::Progress::new(move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
        }
    })
}

fn analysis_settings(settings: &Settings) -> jobs::AnalysisSettings {
    jobs::AnalysisSettings {
        policies: settings.policy.clone(),
        pricing: settings.pricing.clone(),
        step_secs: settings.collector.step.as_secs() as i64,
        backtest: settings.backtest.clone(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The API tokens from the flag or environment and from the token file (one per line).
/// A file that can't be read or holds no token is an error naming it: starting without the
/// tokens it was meant to hold would disable every action without saying why.
fn api_tokens_of(
    given: Vec<secrecy::SecretString>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<String>> {
    use secrecy::ExposeSecret;
    let mut tokens: Vec<String> = given
        .iter()
        .map(|t| t.expose_secret().to_string())
        .collect();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read API token file {}", path.display()))?;
        let before = tokens.len();
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
        if tokens.len() == before {
            anyhow::bail!("API token file {} holds no token", path.display());
        }
    }
    Ok(tokens)
}

/// The clusters to collect or analyze: configured, or discovered by the cluster label.
async fn clusters(settings: &Settings) -> anyhow::Result<Vec<jobs::ClusterJob>> {
    let runner = job_runner(settings, analysis_settings(settings))?;
    let clusters = runner.clusters().await?;
    if clusters.is_empty() {
        anyhow::bail!(
            "Prometheus has no series with the cluster label {:?} in the last hour: nothing to work on",
            settings.collector.cluster_label.as_deref().unwrap_or("")
        );
    }
    Ok(clusters)
}

/// Only the chosen cluster when `--cluster` says so; every cluster otherwise.
fn cluster_filter(settings: &Settings) -> Option<String> {
    let single = settings.sources.len() == 1 && settings.collector.cluster_label.is_none();
    (settings.cluster_chosen || single).then(|| settings.cluster.clone())
}

/// `chosen`, or every cluster the store holds.
async fn cluster_names(store: &dyn Store, chosen: Option<String>) -> anyhow::Result<Vec<String>> {
    Ok(match chosen {
        Some(c) => vec![c],
        None => store_clusters(store)
            .await?
            .into_iter()
            .map(|c| c.cluster)
            .collect(),
    })
}

/// The clusters the store has collected, for analysis without Prometheus at hand.
async fn store_clusters(store: &dyn Store) -> anyhow::Result<Vec<jobs::ClusterJob>> {
    let mut names: Vec<String> = store
        .containers(None)
        .await?
        .into_iter()
        .map(|c| c.key.cluster)
        .collect();
    names.dedup();
    Ok(names
        .iter()
        .map(|n| jobs::ClusterJob::new(n, None))
        .collect())
}

/// `rightsizer backtest`: computes every container's recommendation without storing it
/// and prints the fleet's held-out figures per strategy.
async fn backtest(
    settings: &Settings,
    format: crate::config::OutputFormat,
    days: Option<u32>,
    namespace: Option<String>,
    by: crate::config::BacktestGroup,
) -> anyhow::Result<()> {
    let mut analysis = analysis_settings(settings);
    if let Some(days) = days {
        analysis.backtest.days = days;
    }
    let policy = settings.policy.global();
    analysis
        .backtest
        .validate(
            policy.window_hours(),
            policy.min_history_hours,
            days.is_some() || settings.backtest_days_set,
        )
        .map_err(|e| anyhow!(e.replace("backtest.days", "--days")))?;
    let store = open_store(settings).await?;
    // Every cluster the store holds unless one was named: a backtest reads history only.
    let names = cluster_names(
        store.as_ref(),
        settings.cluster_chosen.then(|| settings.cluster.clone()),
    )
    .await?;
    let mut recs = Vec::new();
    for name in &names {
        let (computed, ..) =
            jobs::compute_recommendations(store.as_ref(), name, &analysis, now(), None).await?;
        recs.extend(
            computed
                .into_iter()
                .filter(|r| namespace.as_ref().is_none_or(|ns| r.key.namespace == *ns)),
        );
    }
    if recs.is_empty() {
        anyhow::bail!(
            "no collected history{}: run `rightsizer collect` first",
            namespace
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default()
        );
    }
    use crate::config::BacktestGroup;
    let mut groups: std::collections::BTreeMap<String, Vec<crate::model::Recommendation>> =
        Default::default();
    for r in recs {
        let k = &r.key;
        let name = match by {
            BacktestGroup::Fleet => String::new(),
            BacktestGroup::Cluster => k.cluster.clone(),
            BacktestGroup::Namespace => format!("{}/{}", k.cluster, k.namespace),
            BacktestGroup::Workload => {
                format!("{}/{}/{}/{}", k.cluster, k.namespace, k.kind, k.workload)
            }
        };
        groups.entry(name).or_default().push(r);
    }
    let tables: Vec<(String, Vec<_>)> = groups
        .into_iter()
        .map(|(name, recs)| {
            let rows = crate::analyzer::fleet_backtest::fleet_rows(&recs, &analysis.backtest);
            (name, rows)
        })
        .collect();
    let stdout = std::io::stdout();
    let days = analysis.backtest.days;
    if by == BacktestGroup::Fleet {
        crate::output::write_backtest(&tables[0].1, days, format, stdout.lock())?;
    } else {
        crate::output::write_backtest_groups(&tables, days, format, stdout.lock())?;
    }
    Ok(())
}

/// `rightsizer prune`: deletes (or counts) history older than `retention`, per table.
async fn prune(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let before = store.size().await?;
    let report =
        store::retention::prune(store.as_ref(), settings.retention, now(), dry_run).await?;
    let after = store.size().await?;
    let retention = crate::config::days_text(settings.retention);
    let Some(cutoff) = report.cutoff else {
        println!("nothing collected yet: nothing to prune (retention {retention})");
        return Ok(());
    };
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} history before {} (retention {retention}, counted back from the newest collected hour)",
        chrono::DateTime::from_timestamp(cutoff, 0).unwrap_or_default().format("%Y-%m-%d")
    );
    for t in &report.tables {
        let mut line = format!("  {}: {} rows", t.table, t.rows);
        if t.days > 0 {
            line += &format!(" over {} days", t.days);
        }
        if !t.partitions.is_empty() {
            line += &format!(" (dropped partitions {})", t.partitions.join(", "));
        } else if t.batches > 0 {
            let s = if t.batches == 1 { "" } else { "es" };
            line += &format!(" in {} batch{s}", t.batches);
        }
        println!("{line}");
    }
    let mb = |b: u64| b as f64 / 1e6;
    let free = if after.free_bytes > 0 {
        format!(
            " ({:.1} MB of it free pages, filled before the file grows)",
            mb(after.free_bytes)
        )
    } else {
        String::new()
    };
    println!(
        "in {:.2} s; store {:.1} MB before, {:.1} MB after{free}",
        report.elapsed_secs,
        mb(before.bytes),
        mb(after.bytes),
    );
    Ok(())
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(store::connect(settings.database_url.expose()).await?)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Gitops(args) => gitops(&settings, args).await?,
        Command::Apply {
            dry_run,
            namespace,
            workload,
            max_pods,
            output,
        } => {
            let scope = crate::apply::kube::Scope {
                namespace,
                workload,
            };
            apply(&settings, scope, max_pods, dry_run, output).await?
        }
        Command::Report { format, out } => report(&settings, format, out).await?,
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied to {}", settings.database_url);
        }
        Command::Prune { dry_run } => prune(&settings, dry_run).await?,
        Command::Collect { since, until } => collect(&settings, since, until).await?,
        Command::Analyze => analyze(&settings).await?,
        Command::Recommend {
            output: format,
            namespace,
        } => recommend(&settings, format, namespace).await?,
        Command::Backtest {
            output,
            days,
            namespace,
            by,
        } => backtest(&settings, output, days, namespace, by).await?,
        Command::Serve {
            listen,
            collect_interval,
            api_tokens,
            api_token_file,
            api_auth_reads,
            ready_max_collection_age,
            webhook_listen,
            webhook_tls_cert,
            webhook_tls_key,
        } => {
            let webhook = webhook_options(webhook_listen, webhook_tls_cert, webhook_tls_key)?;
            let auth = http::auth::AuthConfig::new(
                api_tokens_of(api_tokens, api_token_file.as_deref())?,
                api_auth_reads,
            );
            if api_auth_reads && !auth.has_tokens() {
                anyhow::bail!(
                    "--api-auth-reads needs API tokens (RIGHTSIZER_API_TOKENS or --api-token-file)"
                );
            }
            let listen = listen
                .or(settings.listen.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN.into());
            let interval = collect_interval.unwrap_or(settings.collector.interval);
            let ready_max_collection_age = ready_max_collection_age.or_else(|| {
                (!interval.is_zero()).then(|| interval * 3 + Duration::from_secs(3600))
            });
            serve(
                &settings,
                ServeOptions {
                    listen,
                    interval,
                    auth,
                    ready_max_collection_age,
                    webhook,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// The admission webhook's address, certificate and key: all three or none.
fn webhook_options(
    listen: Option<String>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<(String, std::path::PathBuf, std::path::PathBuf)>> {
    Ok(match (listen, cert, key) {
        (None, None, None) => None,
        (Some(listen), Some(cert), Some(key)) => Some((listen, cert, key)),
        (Some(_), _, _) => anyhow::bail!(
            "--webhook-listen needs --webhook-tls-cert and --webhook-tls-key: the API server calls webhooks over HTTPS only"
        ),
        _ => anyhow::bail!("--webhook-tls-cert and --webhook-tls-key need --webhook-listen"),
    })
}

/// `rightsizer report`: builds and stores a report, then writes it to `out` or stdout.
async fn report(
    settings: &Settings,
    format: crate::report::Format,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let (id, report) = crate::report::generate_and_store(store.as_ref(), now()).await?;
    let text = crate::report::render(&report, format);
    match out {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("report {id} written to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `rightsizer collect`: the window of every cluster; one cluster's error is the command's,
/// with several the others go on and the failures are named at the end.
async fn collect(
    settings: &Settings,
    since: Duration,
    until: Option<String>,
) -> anyhow::Result<()> {
    let until = until.as_deref().map(parse_time).transpose()?;
    if settings.prometheus.is_none() && settings.sources.iter().all(|s| s.prometheus.is_none()) {
        anyhow::bail!("no Prometheus URL: set --prometheus-url or RIGHTSIZER_PROMETHEUS_URL");
    }
    let clusters = clusters(settings).await?;
    let store = open_store(settings).await?;
    let window = jobs::WindowSpec {
        since,
        until,
        now: now(),
    };
    let mut failed = Vec::new();
    for c in &clusters {
        let Some(prom) = &c.prometheus else {
            eprintln!("cluster {}: no Prometheus URL configured", c.cluster);
            failed.push(c.cluster.clone());
            continue;
        };
        let result = jobs::collect_window(
            prom,
            store.as_ref(),
            &c.cluster,
            &c.scope,
            &settings.collector,
            window,
            progress_bar(),
        )
        .await;
        match result {
            Ok(r) => {
                println!(
                    "collected {} hours ({} already collected) for cluster {} via {}: {} workload containers, {} samples, {} rejected",
                    r.hours_collected, r.hours_already_collected, c.cluster, r.source, r.containers, r.samples, r.rejected_samples
                );
                if let Some(note) = &r.source_note {
                    eprintln!("cluster {}: {note}", c.cluster);
                }
                if r.remote_read_fallbacks > 0 {
                    eprintln!(
                        "cluster {}: {} remote reads failed and were asked again with range queries (see the log)",
                        c.cluster, r.remote_read_fallbacks
                    );
                }
            }
            // One cluster: its error is the command's. Several: say which failed, go on.
            Err(e) if clusters.len() == 1 => return Err(e.into()),
            Err(e) => {
                eprintln!("cluster {}: {e}", c.cluster);
                failed.push(c.cluster.clone());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "collection failed for {} of {} clusters: {}",
            failed.len(),
            clusters.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `rightsizer analyze`: every cluster, or the one chosen, from the store alone.
async fn analyze(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let clusters = match cluster_filter(settings) {
        // Analysis reads only the store: a named cluster needs no Prometheus.
        Some(name) => vec![settings
            .sources
            .iter()
            .find(|s| s.cluster == name)
            .map(|s| jobs::ClusterJob {
                scope: s.scope.clone(),
                kubernetes: s.kubernetes.clone(),
                ..jobs::ClusterJob::new(&s.cluster, None)
            })
            .unwrap_or_else(|| jobs::ClusterJob::new(&name, None))],
        None if !settings.sources.is_empty() => clusters(settings).await?,
        None => store_clusters(store.as_ref()).await?,
    };
    for c in &clusters {
        let kubernetes = c.kubernetes_view().await;
        let r = jobs::analyze_cluster_with(
            store.as_ref(),
            &c.cluster,
            &analysis_settings(settings),
            now(),
            kubernetes.as_ref(),
        )
        .await?;
        println!(
            "analyzed {} workload containers of cluster {}: {} to change, {} already right-sized, {} with insufficient data",
            r.containers, c.cluster, r.ok, r.no_change, r.insufficient_data
        );
        if kubernetes.is_some() && (r.only_in_kubernetes > 0 || r.only_in_prometheus > 0) {
            println!(
                "the Kubernetes API lists {} workload containers without usage in Prometheus; Prometheus has {} the API doesn't list",
                r.only_in_kubernetes, r.only_in_prometheus
            );
        }
    }
    Ok(())
}

/// `rightsizer recommend`: the stored recommendations, analyzing first when none are stored.
async fn recommend(
    settings: &Settings,
    format: crate::config::OutputFormat,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let cluster = cluster_filter(settings);
    let filter = RecommendationFilter {
        cluster: cluster.clone(),
        namespace,
        ..Default::default()
    };
    let mut recs = store.recommendations(&filter).await?;
    if recs.is_empty() {
        let all = RecommendationFilter {
            cluster: cluster.clone(),
            ..Default::default()
        };
        if store.recommendations(&all).await?.is_empty() {
            // Nothing analyzed yet: analyze what was collected, then list.
            let names = cluster_names(store.as_ref(), cluster).await?;
            for name in names {
                jobs::analyze_cluster(store.as_ref(), &name, &analysis_settings(settings), now())
                    .await?;
            }
            recs = store.recommendations(&filter).await?;
        }
    }
    let stdout = std::io::stdout();
    crate::output::write(&recs, format, stdout.lock())?;
    Ok(())
}

/// The job runner of the resolved settings: their clusters, or discovery by
/// `collector.cluster_label` when none are listed.
fn job_runner(
    settings: &Settings,
    analysis: jobs::AnalysisSettings,
) -> Result<jobs::JobRunner, crate::prometheus::PromError> {
    let clusters = settings
        .sources
        .iter()
        .map(|s| {
            Ok(jobs::ClusterJob {
                scope: s.scope.clone(),
                kubernetes: s.kubernetes.clone(),
                ..jobs::ClusterJob::new(
                    &s.cluster,
                    s.prometheus
                        .as_ref()
                        .map(crate::prometheus::PromClient::new)
                        .transpose()?,
                )
            })
        })
        .collect::<Result<Vec<_>, crate::prometheus::PromError>>()?;
    let mut runner = jobs::JobRunner::new(clusters, settings.collector.clone(), analysis);
    if runner.clusters.is_empty() {
        if let (Some(prom), Some(label)) = (&settings.prometheus, &settings.collector.cluster_label)
        {
            runner.discover = Some((crate::prometheus::PromClient::new(prom)?, label.clone()));
        }
    }
    Ok(runner)
}

/// GitOps options for `repo` with the `[gitops]` table's settings (an in-place edit, no git).
fn gitops_options(settings: &Settings, repo: &std::path::Path) -> crate::gitops::GitopsOptions {
    let mut opts = crate::gitops::GitopsOptions::new(repo);
    opts.helm_values = settings.gitops.helm_values.clone();
    opts.filter = settings.gitops.filter.clone();
    opts.git_timeout = settings.gitops.git_timeout;
    opts
}

/// The forge a pull request goes to, with its token read now (a missing token fails at start).
fn forge_config(
    settings: &Settings,
    kind: crate::gitops::ForgeKind,
    repo: String,
    url: Option<&str>,
    base_branch: &str,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<crate::gitops::ForgeConfig> {
    let token = crate::gitops::read_token(token_file)?;
    let mut forge = crate::gitops::ForgeConfig::new(kind, repo, base_branch, token);
    if let Some(url) = url {
        forge.base_url = url.to_string();
    }
    if settings.gitops.forge_max_response_bytes > 0 {
        forge.max_response_bytes = settings.gitops.forge_max_response_bytes;
    }
    Ok(forge)
}

/// `[gitops.on_oom]` as options: commit on its branch, push, open or update the pull request.
fn oom_gitops_options(settings: &Settings) -> anyhow::Result<Option<crate::gitops::GitopsOptions>> {
    let Some(c) = &settings.gitops.on_oom else {
        return Ok(None);
    };
    let mut opts = gitops_options(settings, &c.repo);
    opts.branch = Some(c.branch.clone());
    opts.commit = true;
    opts.push = Some(c.push.clone());
    opts.pull_request = Some(
        forge_config(
            settings,
            c.pull_request,
            c.forge_repo.clone(),
            c.forge_url.as_deref(),
            &c.base_branch,
            c.token_file.as_deref(),
        )
        .context("[gitops.on_oom]")?,
    );
    Ok(Some(opts))
}

async fn gitops(settings: &Settings, args: crate::config::GitopsArgs) -> anyhow::Result<()> {
    use crate::gitops::{self, ForgeKind, OutputMode};
    let output = match args.output.as_str() {
        "in-place" => OutputMode::InPlace,
        "kustomize" => OutputMode::Kustomize,
        "patches" => OutputMode::Patches,
        other => anyhow::bail!("--output must be in-place, kustomize or patches, got {other:?}"),
    };
    let pull_request = match args.pull_request.as_deref() {
        None => None,
        Some(kind) => {
            let kind = match kind {
                "github" => ForgeKind::GitHub,
                "gitlab" => ForgeKind::GitLab,
                other => anyhow::bail!("--pull-request must be github or gitlab, got {other:?}"),
            };
            let repo = args
                .forge_repo
                .clone()
                .ok_or_else(|| anyhow!("--pull-request needs --forge-repo"))?;
            Some(forge_config(
                settings,
                kind,
                repo,
                args.forge_url.as_deref(),
                &args.base_branch,
                args.git_token_file.as_deref(),
            )?)
        }
    };
    let mut opts = gitops_options(settings, &args.repo);
    opts.output = output;
    opts.out_dir = args.out_dir;
    opts.max_workloads = args.max_workloads;
    opts.group_by_namespace = args.group_by_namespace;
    opts.branch = args.branch;
    opts.commit = args.commit;
    opts.push = args.push;
    opts.pull_request = pull_request;
    if cluster_filter(settings).is_none() {
        anyhow::bail!(
            "several clusters are configured: choose the one this repository deploys with --cluster"
        );
    }
    let store = open_store(settings).await?;
    let filter = RecommendationFilter {
        cluster: Some(settings.cluster.clone()),
        ..Default::default()
    };
    let recs = store.recommendations(&filter).await?;
    if recs.is_empty() {
        anyhow::bail!(
            "no recommendations stored for cluster {}: run `rightsizer analyze` first",
            settings.cluster
        );
    }
    let report = gitops::run(&opts, &recs).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} workloads changed in {} files; {} skipped, {} ambiguous, {} without a manifest, {} malformed files, {} unknown kinds",
        report.changed.len(),
        report.files.len(),
        report.skipped.len(),
        report.ambiguous.len(),
        report.missing.len(),
        report.malformed.len(),
        report.unknown_kinds.len()
    );
    for f in &report.files {
        println!("  edited {}", f.display());
    }
    for b in &report.branches {
        println!("  branch {}", serde_json::to_string(b)?);
    }
    Ok(())
}

/// `rightsizer apply`: the plan for the pods in `scope` from the stored recommendations of the
/// chosen cluster, printed, and sent unless `dry_run`.
async fn apply(
    settings: &Settings,
    scope: crate::apply::kube::Scope,
    max_pods: usize,
    dry_run: bool,
    output: crate::config::ApplyOutput,
) -> anyhow::Result<()> {
    use crate::apply::{self, kube as api, PlanOptions};
    if cluster_filter(settings).is_none() {
        anyhow::bail!(
            "several clusters are configured: choose the one whose API server to resize pods on with --cluster"
        );
    }
    let store = open_store(settings).await?;
    let recs = store
        .recommendations(&RecommendationFilter {
            cluster: Some(settings.cluster.clone()),
            namespace: scope.namespace.clone(),
            ..Default::default()
        })
        .await?;
    if recs.is_empty() {
        anyhow::bail!(
            "no recommendations stored for cluster {}: run `rightsizer analyze` first",
            settings.cluster
        );
    }
    let cfg = settings.kubernetes.clone().unwrap_or_default();
    let client = crate::cluster::client(&cfg)
        .await
        .context("cannot reach the Kubernetes API")?;
    let (major, minor) = api::server_version(&client).await?;
    let opts = PlanOptions {
        cluster: settings.cluster.clone(),
        min_confidence: settings.apply.min_confidence,
        max_step_down: settings.apply.max_step_down,
        max_pods,
        // Kubernetes 1.34 lets a memory limit go down in place (the kubelet checks usage first).
        memory_limit_decrease_allowed: (major, minor) >= (1, 34),
        raises_only: false,
    };
    let state = api::read_state(&client, &scope).await?;
    let mut plan = apply::plan::plan(&state, &recs, &opts);
    if !dry_run {
        api::execute(&client, &state, &mut plan).await;
        let actor = format!(
            "rightsizer apply ({})",
            std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
        );
        let records = apply::change_records(&plan, &settings.cluster, &actor, "resize", now());
        if let Err(e) = store.record_changes(&records).await {
            // The resizes happened; say so loudly rather than fail after the fact.
            tracing::error!(error = %e, "cannot record {} change(s) in the store", records.len());
        }
    }
    match output {
        crate::config::ApplyOutput::Table => {
            println!("{}", apply::table(&plan));
            if dry_run {
                println!("dry run: nothing sent (server {major}.{minor}); --dry-run=false resizes");
            }
        }
        crate::config::ApplyOutput::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    let failed = plan
        .iter()
        .filter(|l| {
            l.outcome
                .as_deref()
                .is_some_and(|o| o.starts_with("failed"))
        })
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} container resize(s) failed (see the outcome column)");
    }
    Ok(())
}

/// The admission webhook on its own TLS listener, when `webhook` (address, certificate,
/// key) is set; the certificate is checked now, not at the first pod creation.
fn start_webhook(
    settings: &Settings,
    state: &AppState,
    webhook: Option<&(String, std::path::PathBuf, std::path::PathBuf)>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some((listen, cert, key)) = webhook else {
        return Ok(None);
    };
    http::admission::tls_config(cert, key).map_err(anyhow::Error::msg)?;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (webhook)"))?;
    listener.set_nonblocking(true)?;
    tracing::info!(address = %listener.local_addr()?, "admission webhook listening (TLS)");
    let admission = http::admission::AdmissionState::new(
        state.store.clone(),
        settings.cluster.clone(),
        settings.apply.min_confidence,
    );
    tokio::spawn(
        admission
            .clone()
            .refresh_every(Duration::from_secs(30), stop_rx.clone()),
    );
    let files = (cert.clone(), key.clone());
    let stop = stop_rx.clone();
    Ok(Some(tokio::spawn(async move {
        if let Err(e) =
            http::admission::serve_tls(listener, admission, files, Duration::from_secs(60), stop)
                .await
        {
            tracing::error!(error = %e, "admission webhook stopped");
        }
    })))
}

/// `serve`'s applier (a step each `[apply] step_interval`, when `mode` is not off) and its
/// reaction to OOM kills (when `mode` is not off or `[gitops.on_oom]` is set).
async fn start_applier(
    settings: &Settings,
    state: &AppState,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(
    Option<tokio::task::JoinHandle<()>>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    use crate::apply::{ApplyMode, PlanOptions};
    let gitops = oom_gitops_options(settings)?;
    let mode = settings.apply.mode;
    let reacts = settings.apply.react_to_oom && (mode != ApplyMode::Off || gitops.is_some());
    if mode == ApplyMode::Off && !reacts {
        return Ok((None, None));
    }
    let cfg = settings.kubernetes.clone().unwrap_or_default();
    let client = crate::cluster::client(&cfg)
        .await
        .context("[apply] mode and [gitops.on_oom] need the Kubernetes API")?;
    let opts = PlanOptions {
        cluster: settings.cluster.clone(),
        min_confidence: settings.apply.min_confidence,
        max_step_down: settings.apply.max_step_down,
        max_pods: settings.apply.max_pods,
        memory_limit_decrease_allowed: false, // read from the server at each step
        raises_only: false,
    };
    let actor = format!("serve ({})", holder());
    let oom = reacts.then(|| {
        tracing::info!(mode = ?mode, pull_request = gitops.is_some(), "reacting to OOM kills");
        let reactor = crate::apply::oom::OomReactor::new(
            client.clone(),
            state.store.clone(),
            analysis_settings(settings),
            mode,
            opts.clone(),
            gitops,
            actor.clone(),
            holder().to_string(),
        );
        tokio::spawn(crate::apply::oom::run(reactor, stop.clone()))
    });
    if mode == ApplyMode::Off {
        return Ok((None, oom));
    }
    tracing::info!(mode = ?mode, every = ?settings.apply.step_interval, "applier on");
    let applier = crate::apply::Applier::new(client, state.store.clone(), opts, mode, actor);
    let applier = tokio::spawn(crate::apply::applier::run(
        applier,
        settings.apply.step_interval,
        holder().to_string(),
        stop.clone(),
    ));
    Ok((Some(applier), oom))
}

/// Options of `serve` beyond the shared settings.
struct ServeOptions {
    listen: String,
    interval: Duration,
    auth: http::auth::AuthConfig,
    ready_max_collection_age: Option<Duration>,
    /// The admission webhook's address, certificate and key.
    webhook: Option<(String, std::path::PathBuf, std::path::PathBuf)>,
}

async fn serve(settings: &Settings, opts: ServeOptions) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    tracing::info!(address = %listener.local_addr()?, "API listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut runner = job_runner(settings, analysis_settings(settings))?;
    runner.watch_kubernetes(stop_rx.clone()).await;
    let runner = Arc::new(runner);
    if !opts.auth.has_tokens() {
        tracing::info!("no API tokens configured: POST /api/v1/collect and /analyze are disabled");
    }
    let mut state = AppState::new(store);
    state.jobs = Some(runner.clone());
    state.auth = Arc::new(opts.auth);
    state.readiness_max_collection_age = opts.ready_max_collection_age;
    let scheduler = if runner.can_collect() && !opts.interval.is_zero() {
        Some(tokio::spawn(schedule(
            state.clone(),
            runner,
            opts.interval,
            stop_rx.clone(),
        )))
    } else {
        tracing::info!("no Prometheus URL or a zero interval: serving stored recommendations only");
        None
    };
    let reporter = settings.report_schedule.clone().map(|schedule| {
        tokio::spawn(schedule_reports(
            state.store.clone(),
            schedule,
            settings.reports.clone(),
            settings.notifications.clone(),
            stop_rx.clone(),
        ))
    });
    let webhook = start_webhook(settings, &state, opts.webhook.as_ref(), &stop_rx)?;
    let (applier, oom) = start_applier(settings, &state, &stop_rx).await?;
    let pruner = tokio::spawn(schedule_prune(
        state.store.clone(),
        settings.retention,
        stop_rx.clone(),
    ));
    let runs = state.runs.clone();
    let mut api_stop = stop_rx.clone();
    let api = http::serve(listener, state, async move {
        let _ = api_stop.wait_for(|stop| *stop).await;
    });
    tokio::pin!(api);
    tokio::select! {
        res = &mut api => res?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop_tx.send(true);
            api.await?;
        }
    }
    let _ = stop_tx.send(true);
    for task in scheduler
        .into_iter()
        .chain(reporter)
        .chain(webhook)
        .chain(applier)
        .chain(oom)
        .chain([pruner])
    {
        let _ = task.await;
    }
    runs.end_in_flight("interrupted: the process running it shut down")
        .await;
    tracing::info!("stopped");
    Ok(())
}

/// Builds, stores and prunes a report at each time of `schedule` until told to stop.
async fn schedule_reports(
    store: Arc<dyn Store>,
    schedule: crate::report::Schedule,
    config: crate::config::ReportsConfig,
    notifications: crate::report::notify::Notifications,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = schedule.next_after(now());
        let wait = Duration::from_secs((next - now()).max(0) as u64);
        tracing::info!(next, "next scheduled report");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {
                tracing::info!("report scheduler stopped");
                return;
            }
        }
        // Every replica wakes for the same scheduled time; the lease lets one build it.
        match store
            .lease_job("report", next, holder(), now(), REPORT_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(at = next, "another replica builds this scheduled report");
                crate::telemetry::metrics().scheduled_job("report", JobOutcome::Skipped);
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot lease the scheduled report; skipping it");
                continue;
            }
        }
        match crate::report::generate_and_store(store.as_ref(), now()).await {
            Ok((id, report)) => {
                tracing::info!(id, "scheduled report stored");
                crate::telemetry::metrics().scheduled_job("report", JobOutcome::Ran);
                if let Err(e) = store.finish_job("report", next, holder()).await {
                    tracing::warn!(error = %e, "cannot mark the scheduled report done");
                }
                notify(&notifications, &report).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled report failed");
                crate::telemetry::metrics().scheduled_job("report", JobOutcome::Failed);
            }
        }
        let oldest = now() - config.max_age.as_secs() as i64;
        match store.prune_reports(config.keep, oldest).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "old reports pruned"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "pruning reports failed"),
        }
    }
}

/// Posts the summary of a scheduled report to every configured target; failures are logged
/// (naming the target, never its URL) and do not affect the report.
async fn notify(
    notifications: &crate::report::notify::Notifications,
    report: &crate::report::Report,
) {
    if notifications.targets.is_empty() {
        return;
    }
    let results =
        crate::report::notify::send_all(notifications, report, Duration::from_secs(2)).await;
    for (target, result) in results {
        match result {
            Ok(()) => {
                tracing::info!(%target, "report summary posted");
                crate::telemetry::metrics().scheduled_job("notify", JobOutcome::Ran);
            }
            Err(e) => {
                tracing::error!(error = %e, "report summary not posted");
                crate::telemetry::metrics().scheduled_job("notify", JobOutcome::Failed);
            }
        }
    }
}

/// Prunes history past `retention` once a UTC day, by whichever replica leases the day
/// first; the first try comes a minute after start-up, then one every hour.
async fn schedule_prune(
    store: Arc<dyn Store>,
    retention: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => {
                tracing::info!("retention job stopped");
                return;
            }
        }
        wait = Duration::from_secs(3600);
        let day = now().div_euclid(86_400);
        match store
            .lease_job("prune", day, holder(), now(), PRUNE_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot lease today's prune; trying again in an hour");
                continue;
            }
        }
        match store::retention::prune(store.as_ref(), retention, now(), false).await {
            Ok(report) => {
                let rows: u64 = report.tables.iter().map(|t| t.rows).sum();
                tracing::info!(cutoff = ?report.cutoff, rows, elapsed_secs = report.elapsed_secs, tables = ?report.tables, "history pruned");
                crate::telemetry::metrics().scheduled_job("prune", JobOutcome::Ran);
                if let Err(e) = store.finish_job("prune", day, holder()).await {
                    tracing::warn!(error = %e, "cannot mark today's prune done");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "pruning history failed; trying again in an hour");
                crate::telemetry::metrics().scheduled_job("prune", JobOutcome::Failed);
            }
        }
    }
}

/// How long a replica may take to prune before another may take over.
const PRUNE_LEASE_SECS: i64 = 3600;

/// How long a replica may take to build a scheduled report before another may take over.
const REPORT_LEASE_SECS: i64 = 600;

/// Collects and analyzes every `interval` (with up to 10% jitter, so replicas and clusters
/// don't query Prometheus in lockstep) until told to stop. One run of a kind goes at a time
/// fleet-wide (the store's guard): a tick that finds one going (another replica's, or one
/// started from the API) skips its own after waiting for it to end. One analysis per
/// interval-long period runs fleet-wide, by whichever replica leases the period first.
async fn schedule(
    state: AppState,
    runner: Arc<jobs::JobRunner>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use rand::Rng;
    loop {
        let period = now().div_euclid(interval.as_secs().max(1) as i64);
        for kind in [RunKind::Collect, RunKind::Analyze] {
            if kind == RunKind::Analyze {
                let ttl = interval.as_secs() as i64;
                match state
                    .store
                    .lease_job("analyze", period, holder(), now(), ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(period, "another replica analyzes this period");
                        crate::telemetry::metrics().scheduled_job("analyze", JobOutcome::Skipped);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot lease this period's analysis; skipping it");
                        continue;
                    }
                }
            }
            let run = match state.runs.try_start(kind, "schedule").await {
                Ok(Ok(run)) => run,
                Ok(Err(running)) => {
                    // Another replica (or the API) runs it; what follows (analysis after
                    // collection) waits for it rather than working on half a collection.
                    tracing::info!(?kind, %running, "a run of this kind is already going fleet-wide; skipping it this tick");
                    state.runs.wait_finished(&running, &mut stop).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(?kind, error = %e, "cannot record the run; skipping it this tick");
                    continue;
                }
            };
            let outcome = match kind {
                RunKind::Collect => runner.collect(state.store.as_ref(), &run).await,
                RunKind::Analyze => runner.analyze(state.store.as_ref(), &run).await,
            };
            match &outcome {
                Ok(report) => tracing::info!(?kind, %report, "scheduled run done"),
                Err(e) => {
                    tracing::error!(?kind, error = %e, "scheduled run failed; the next one resumes from the last committed hour")
                }
            }
            if kind == RunKind::Analyze {
                if outcome.is_ok() {
                    if let Err(e) = state.store.finish_job("analyze", period, holder()).await {
                        tracing::warn!(error = %e, "cannot mark this period's analysis done");
                    }
                }
                let ended = if outcome.is_ok() {
                    JobOutcome::Ran
                } else {
                    JobOutcome::Failed
                };
                crate::telemetry::metrics().scheduled_job("analyze", ended);
            }
            state.snapshot.invalidate().await;
            run.finish(outcome).await;
        }
        let jitter = interval.mul_f64(rand::thread_rng().gen_range(0.0..0.1));
        tokio::select! {
            _ = tokio::time::sleep(interval + jitter) => {}
            _ = stop.wait_for(|s| *s) => {
                tracing::info!("scheduler stopped");
                return;
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
