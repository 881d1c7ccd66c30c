//! rightsizer: right-size Kubernetes container requests and limits from Prometheus history.

/// Recommendation logic: policy, percentiles, margins and floors (pure, no I/O).
pub mod analyzer;
/// In-place resizes of running pods: the plan and its safety rules, and the API calls.
pub mod apply;
/// Command-line interface: subcommands and their output.
pub mod cli;
/// The Kubernetes API as an optional source: workloads, HPAs and PDBs (kube reflectors).
pub mod cluster;
/// Ingestion from Prometheus into hourly summaries: discovery, queries, watermarks.
pub mod collector;
/// Configuration from flags, `RIGHTSIZER_*` environment variables and a config file.
pub mod config;
/// Fleet arithmetic: savings, totals, severity counts, change since a previous run (pure).
pub mod fleet;
/// Entry points for the fuzz targets in `fuzz/`; not a stable interface.
#[doc(hidden)]
pub mod fuzzing;
/// GitOps hand-over: in-place manifest edits, kustomize/kubectl patches, branch, commit, push and pull request.
pub mod gitops;
/// The HTTP API.
pub mod http;
/// Runs shared by the CLI and the scheduler: collect a window, analyze a cluster.
pub mod jobs;
/// Plain data shared by the collector, store, analyzer and API.
pub mod model;
/// Output formats of recommendations: table, JSON, YAML, CSV.
pub mod output;
/// Patches (strategic-merge, JSON, kustomize, YAML) that apply a workload's recommendations.
pub mod patch;
/// Prometheus HTTP API client and PromQL builders.
pub mod prometheus;
/// Kubernetes-style quantity formatting (`250m`, `512Mi`).
pub mod quantity;
/// The one redaction of URLs (userinfo, secret query parameters) before they are printed.
pub mod redact;
/// Fleet reports: built from the recommendations, stored, rendered as Markdown, HTML+SVG, CSV, JSON.
pub mod report;
/// Collection and analysis runs: ids, progress, outcome, one of a kind at a time.
pub mod runs;
/// The mergeable usage summary (count, sum, max, log-bucketed histogram).
pub mod sketch;
/// Storage: the `Store` trait with SQLite and Postgres backends.
pub mod store;
/// The service's own metrics (served at `/metrics`).
pub mod telemetry;
/// Builders of plain data for tests; not a stable interface.
#[doc(hidden)]
pub mod testing;
