//! GitOps hand-over: recommendations become edits of the manifests in a Git
//! checkout (in place, comments and formatting kept), kustomize patches or
//! `kubectl patch` bodies, optionally committed on a branch, pushed, and
//! proposed as a GitHub pull request or GitLab merge request.
//!
//! [`run`] is the whole flow. What it did, skipped and could not do comes
//! back as a [`GitopsReport`]; only failures that stop the run (I/O, git,
//! the forge API) are errors.

mod apply;
mod body;
mod discovery;
mod edit;
mod forge;
mod git;
mod patches;
mod paths;
mod plan;
mod units;
mod yaml;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

pub use forge::{read_token, ForgeConfig, ForgeError, ForgeKind, TOKEN_ENV};
pub use git::GitError;

pub(crate) use discovery::resources_of;
pub(crate) use edit::{edit_first_container, Seg};

use crate::model::{Confidence, Recommendation, Resources};

/// What rightsizer writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// Edit the `resources` blocks of the manifests (or Helm values) in place.
    #[default]
    InPlace,
    /// Write strategic-merge patch files and their `patches:` entries in a
    /// `kustomization.yaml`.
    Kustomize,
    /// Write `kubectl patch` bodies (strategic merge JSON) and a README with the commands.
    Patches,
}

/// Where a workload's resources live in a Helm values file (from config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmValuesMapping {
    /// The workload as `namespace/Kind/name`, e.g. `shop/Deployment/payments`.
    pub workload: String,
    /// The container the values block sizes; `None` when the workload has
    /// one recommended container.
    #[serde(default)]
    pub container: Option<String>,
    /// The values file, relative to the repository.
    pub values_file: PathBuf,
    /// Dotted path of the `resources` mapping in the values file, e.g.
    /// `server.resources` or `resources`.
    pub resources_path: String,
}

impl HelmValuesMapping {
    /// `(namespace, kind, name)` of [`HelmValuesMapping::workload`], if well formed.
    pub fn workload_key(&self) -> Option<(&str, &str, &str)> {
        let mut parts = self.workload.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(ns), Some(kind), Some(name))
                if !ns.is_empty() && !kind.is_empty() && !name.is_empty() =>
            {
                Some((ns, kind, name))
            }
            _ => None,
        }
    }
}

/// Which recommendations are worth a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProposalFilter {
    /// A value counts as changed when it moves by at least this fraction of the current value.
    pub min_relative_change: f64,
    /// …and, for CPU, by at least this many millicores.
    pub min_cpu_millicores: i64,
    /// …and, for memory, by at least this many bytes.
    pub min_memory_bytes: i64,
    /// Recommendations below this confidence are skipped.
    pub min_confidence: Confidence,
}

impl Default for ProposalFilter {
    fn default() -> Self {
        ProposalFilter {
            min_relative_change: 0.10,
            min_cpu_millicores: 25,
            min_memory_bytes: 32 * 1024 * 1024,
            min_confidence: Confidence::Medium,
        }
    }
}

/// Everything [`run`] needs besides the recommendations.
#[derive(Debug, Clone)]
pub struct GitopsOptions {
    /// The GitOps checkout (a directory inside a Git work tree when committing).
    pub repo: PathBuf,
    /// What to write.
    pub output: OutputMode,
    /// Directory for kustomize patches or `kubectl patch` bodies; relative
    /// paths are relative to `repo`. Default `<repo>/rightsizer-patches`.
    pub out_dir: Option<PathBuf>,
    /// At most this many workloads per pull request (per namespace when grouping).
    pub max_workloads: Option<usize>,
    /// One branch and pull request per namespace (`<branch>-<namespace>`).
    pub group_by_namespace: bool,
    /// Workloads sized through Helm values files rather than manifests.
    pub helm_values: Vec<HelmValuesMapping>,
    /// Which recommendations become changes.
    pub filter: ProposalFilter,
    /// Branch to create or reuse (from the current HEAD).
    pub branch: Option<String>,
    /// Commit the changed files on `branch`.
    pub commit: bool,
    /// Push the branch to this remote.
    pub push: Option<String>,
    /// Open or update a pull/merge request for the pushed branch.
    pub pull_request: Option<ForgeConfig>,
    /// How long one git command may run before it is killed (`[gitops] git_timeout`).
    pub git_timeout: Duration,
}

/// The default of [`GitopsOptions::git_timeout`]: long enough for a push of a big
/// repository over a slow link, short enough that a hung remote is noticed.
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(120);

impl GitopsOptions {
    /// Options for an in-place edit of `repo` with default thresholds and no Git.
    pub fn new(repo: impl Into<PathBuf>) -> Self {
        GitopsOptions {
            repo: repo.into(),
            output: OutputMode::InPlace,
            out_dir: None,
            max_workloads: None,
            group_by_namespace: false,
            helm_values: Vec::new(),
            filter: ProposalFilter::default(),
            branch: None,
            commit: false,
            push: None,
            pull_request: None,
            git_timeout: DEFAULT_GIT_TIMEOUT,
        }
    }
}

/// A workload, as recommendations and manifests name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Kind (`Deployment`, `CronJob`, …).
    pub kind: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// A document in the checkout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// File, relative to the repository.
    pub file: PathBuf,
    /// Index of the document in the file (0-based, empty documents not counted).
    pub document: usize,
    /// Line of the document's first node (1-based).
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One container's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerChange {
    /// Container name.
    pub container: String,
    /// Requests and limits before (as written in the repository; from the
    /// cluster when no manifest was found).
    pub before: Resources,
    /// Requests and limits after the change.
    pub after: Resources,
    /// Trust in the recommendation.
    pub confidence: Confidence,
    /// The recommendation's reason.
    pub reason: String,
}

/// A workload whose resources rightsizer proposes to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedWorkload {
    /// Which workload.
    pub workload: WorkloadRef,
    /// The manifest or values document it was found in, if any.
    pub location: Option<Location>,
    /// The file the change is written to (manifest, values file or patch).
    pub file: Option<PathBuf>,
    /// Whether this run changed bytes for it (false when a reused branch
    /// already carried the change).
    pub edited: bool,
    /// Changed containers.
    pub containers: Vec<ContainerChange>,
    /// Things a reviewer should know (e.g. a shared kustomize base).
    pub notes: Vec<String>,
}

/// Why a recommendation was not turned into a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The recommendation's status is not `ok`.
    InsufficientData,
    /// Confidence below [`ProposalFilter::min_confidence`].
    LowConfidence,
    /// The change is under the minimum-change threshold.
    BelowThreshold,
    /// `rightsizer.io/ignore: "true"` or a `# rightsizer:ignore` comment.
    Ignored,
    /// Over `max_workloads`.
    OverLimit,
    /// The manifest has no container of that name.
    ContainerNotFound,
    /// Several clusters recommend different values for the same workload container.
    ConflictingRecommendations,
    /// The manifest is written in a way rightsizer won't edit safely.
    Unsupported,
}

/// A recommendation (or a whole workload, `container: None`) left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Which workload.
    pub workload: WorkloadRef,
    /// Which container, when the reason is per container.
    pub container: Option<String>,
    /// Why.
    pub reason: SkipReason,
    /// Details for a person.
    pub detail: String,
}

/// A workload found in several places, or in a shared place that can't be
/// edited for one namespace alone: listed, never guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ambiguous {
    /// Which workload.
    pub workload: WorkloadRef,
    /// Where it was found.
    pub locations: Vec<Location>,
    /// Why this is ambiguous.
    pub detail: String,
}

/// A file that is not valid YAML (reported, never rewritten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Malformed {
    /// File, relative to the repository.
    pub file: PathBuf,
    /// The parser's message.
    pub message: String,
}

/// A document with containers whose kind rightsizer doesn't edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownKind {
    /// Where it is.
    pub location: Location,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

/// Whether a pull request was opened or an open one updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullRequestAction {
    /// A new pull/merge request.
    Created,
    /// The open one for the branch, with a new title and body.
    Updated,
}

/// A pull request (GitHub) or merge request (GitLab).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestReport {
    /// Number (GitHub) or IID (GitLab).
    pub number: u64,
    /// Web address.
    pub url: String,
    /// Created or updated.
    pub action: PullRequestAction,
}

/// What happened on one branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchReport {
    /// The namespace of this branch's workloads when grouping by namespace.
    pub namespace: Option<String>,
    /// Branch name.
    pub branch: String,
    /// Whether the branch existed before this run.
    pub reused: bool,
    /// The commit made by this run (none when nothing changed).
    pub commit: Option<String>,
    /// The remote the branch was pushed to.
    pub pushed_to: Option<String>,
    /// The pull/merge request opened or updated.
    pub pull_request: Option<PullRequestReport>,
    /// Workloads proposed on this branch.
    pub workloads: Vec<WorkloadRef>,
}

/// Everything [`run`] did and did not do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GitopsReport {
    /// What was written.
    pub output: OutputMode,
    /// Workloads with proposed changes.
    pub changed: Vec<ChangedWorkload>,
    /// Files this run created or modified, relative to the repository.
    pub files: Vec<PathBuf>,
    /// Recommendations not proposed, with the reason.
    pub skipped: Vec<Skipped>,
    /// Workloads found in more than one place.
    pub ambiguous: Vec<Ambiguous>,
    /// Workloads with no manifest in the repository.
    pub missing: Vec<WorkloadRef>,
    /// Files that are not valid YAML.
    pub malformed: Vec<Malformed>,
    /// Documents with containers of kinds rightsizer doesn't edit.
    pub unknown_kinds: Vec<UnknownKind>,
    /// Branches created or updated.
    pub branches: Vec<BranchReport>,
}

/// Failures that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    /// The options contradict each other.
    #[error("invalid gitops options: {0}")]
    Options(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An existing `kustomization.yaml` in the output directory can't be merged into.
    #[error("{}: {message}", path.display())]
    Kustomization {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A path would carry a read or write outside the repository or the output directory.
    #[error("{what} {}: {why}", path.display())]
    UnsafePath {
        /// What the path is for, e.g. `helm values file (workload shop/Deployment/api)`.
        what: String,
        /// The path as given.
        path: PathBuf,
        /// Why it is refused, and what to change.
        why: String,
    },
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The forge API refused or failed.
    #[error(transparent)]
    Forge(#[from] ForgeError),
}

fn validate(opts: &GitopsOptions) -> Result<(), GitopsError> {
    let fail = |m: &str| Err(GitopsError::Options(m.to_string()));
    if opts.commit && opts.branch.is_none() {
        return fail("--commit needs --branch");
    }
    if opts.push.is_some() && !opts.commit {
        return fail("--push needs --branch and --commit");
    }
    if opts.pull_request.is_some() && opts.push.is_none() {
        return fail("--pull-request needs --push (the forge must see the branch)");
    }
    if opts.max_workloads == Some(0) {
        return fail("--max-workloads must be at least 1");
    }
    if let Some(branch) = &opts.branch {
        if let Some(why) = git::ref_name_problem(branch) {
            return Err(GitopsError::Options(format!(
                "--branch {branch:?} is not a valid branch name: {why}"
            )));
        }
    }
    if let Some(remote) = &opts.push {
        if let Some(why) = git::ref_name_problem(remote) {
            return Err(GitopsError::Options(format!(
                "--push {remote:?} is not a valid remote name: {why}; give the name of one of the repository's remotes (`git remote -v`)"
            )));
        }
    }
    if opts.git_timeout.is_zero() {
        return fail("[gitops] git_timeout must be longer than 0s");
    }
    for m in &opts.helm_values {
        if m.workload_key().is_none() {
            return Err(GitopsError::Options(format!(
                "helm values mapping {:?}: workload must be namespace/Kind/name",
                m.workload
            )));
        }
    }
    Ok(())
}

/// Finds the manifests of `recs` in `opts.repo`, writes the proposed changes
/// as `opts.output` says, and, when asked, commits them on a branch, pushes
/// it and opens or updates a pull request.
///
/// With `commit`, each branch is checked out in turn (created from the
/// current HEAD, or reused with new commits on top) and the original HEAD is
/// checked out again at the end; the work tree must have no uncommitted
/// changes to tracked files.
#[instrument(skip_all, fields(repo = %opts.repo.display(), output = ?opts.output))]
pub async fn run(
    opts: &GitopsOptions,
    recs: &[Recommendation],
) -> Result<GitopsReport, GitopsError> {
    let (repo, out_dir, git) = prepare(opts).await?;
    let skip = [out_dir.clone()];
    let scan = discovery::scan(&repo, &skip)?;
    let mut planned = plan::plan(opts, recs, &scan, &repo);
    let by_namespace = opts.group_by_namespace && opts.commit;
    let groups = plan::group(
        std::mem::take(&mut planned.proposals),
        by_namespace,
        opts.max_workloads,
        &mut planned.skipped,
    );
    let mut report = GitopsReport {
        output: opts.output,
        skipped: planned.skipped,
        ambiguous: planned.ambiguous,
        missing: planned.missing,
        malformed: scan.malformed.clone(),
        unknown_kinds: scan.unknown_kinds.clone(),
        ..GitopsReport::default()
    };
    let mut files = BTreeSet::new();
    let target = apply::Target {
        repo: &repo,
        out_dir: &out_dir,
        skip: &skip,
        mode: opts.output,
    };

    match (&git, &opts.branch) {
        (Some(git), Some(branch)) if opts.commit => {
            commit_groups(opts, git, &target, &groups, branch, &mut report, &mut files).await?;
        }
        (Some(git), Some(branch)) => {
            let reused = git.switch_to(branch, None).await?;
            let scan = discovery::scan(&repo, &skip)?;
            let all: Vec<&plan::Proposal> =
                groups.iter().flat_map(|g| g.proposals.iter()).collect();
            let applied = apply::apply(&target, &all, &scan)?;
            files.extend(applied.files.iter().cloned());
            report.branches.push(BranchReport {
                namespace: None,
                branch: branch.clone(),
                reused,
                commit: None,
                pushed_to: None,
                pull_request: None,
                workloads: all.iter().map(|p| p.workload.clone()).collect(),
            });
            record(&mut report, &all, applied);
        }
        _ => {
            let all: Vec<&plan::Proposal> =
                groups.iter().flat_map(|g| g.proposals.iter()).collect();
            let applied = apply::apply(&target, &all, &scan)?;
            files.extend(applied.files.iter().cloned());
            record(&mut report, &all, applied);
        }
    }
    report.files = files.into_iter().collect();
    info!(
        changed = report.changed.len(),
        files = report.files.len(),
        skipped = report.skipped.len(),
        ambiguous = report.ambiguous.len(),
        missing = report.missing.len(),
        "gitops run finished"
    );
    Ok(report)
}

/// The output directory of patch modes, resolved. An absolute `--out-dir` may
/// be anywhere; a relative one (and the default) stays inside the repository.
fn out_dir(opts: &GitopsOptions, repo: &Path) -> Result<PathBuf, GitopsError> {
    let (dir, what) = match &opts.out_dir {
        Some(dir) if dir.is_absolute() => return Ok(paths::resolve(dir)),
        Some(dir) => (dir.as_path(), "--out-dir"),
        None => (Path::new("rightsizer-patches"), "the default --out-dir"),
    };
    if opts.output == OutputMode::InPlace {
        // Nothing is written there; discovery only leaves it out.
        return Ok(repo.join(dir));
    }
    Ok(repo.join(paths::inside(repo, dir, what)?))
}

/// Checks the options against the checkout before anything is read: the repository and
/// the output directory resolved, Helm values files inside it, the remote to push to, and a
/// clean work tree when committing. Opens git when a branch is asked for.
async fn prepare(
    opts: &GitopsOptions,
) -> Result<(PathBuf, PathBuf, Option<git::Git>), GitopsError> {
    validate(opts)?;
    let repo = opts.repo.canonicalize().map_err(|source| GitopsError::Io {
        path: opts.repo.clone(),
        source,
    })?;
    let out_dir = out_dir(opts, &repo)?;
    for m in &opts.helm_values {
        let what = format!("helm values file (workload {})", m.workload);
        paths::inside(&repo, &m.values_file, &what)?;
    }
    if opts.commit && opts.output != OutputMode::InPlace && !out_dir.starts_with(&repo) {
        return Err(GitopsError::Options(format!(
            "--out-dir {} must be inside the repository to be committed",
            out_dir.display()
        )));
    }
    let git = match &opts.branch {
        Some(_) => Some(git::Git::open(&repo, opts.git_timeout).await?),
        None => None,
    };
    if let (Some(git), Some(remote)) = (&git, &opts.push) {
        if !git.has_remote(remote).await? {
            return Err(GitopsError::Options(format!(
                "--push {remote:?}: {} has no remote of that name; list them with `git remote -v`",
                repo.display()
            )));
        }
    }
    if let (Some(git), true) = (&git, opts.commit) {
        git.ensure_clean().await?;
    }
    Ok((repo, out_dir, git))
}

/// Commits each group on its own branch (`<branch>-<namespace>` when grouped by
/// namespace), each started from the original HEAD, which is checked out again at the end
/// even after an error.
async fn commit_groups(
    opts: &GitopsOptions,
    git: &git::Git,
    target: &apply::Target<'_>,
    groups: &[plan::Group<'_>],
    branch: &str,
    report: &mut GitopsReport,
    files: &mut BTreeSet<PathBuf>,
) -> Result<(), GitopsError> {
    let original = git.head().await?;
    let mut outcome = Ok(());
    for group in groups {
        // Every branch starts from the original HEAD, not from the previous group's branch.
        if let Err(e) = git.checkout(&original).await {
            outcome = Err(e.into());
            break;
        }
        let name = match &group.namespace {
            Some(ns) => format!("{branch}-{ns}"),
            None => branch.to_string(),
        };
        match commit_group(opts, git, target, group, &name, report, files).await {
            Ok(branch_report) => report.branches.push(branch_report),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if let Err(e) = git.checkout(&original).await {
        warn!(error = %e, "could not check out the original HEAD again");
        if outcome.is_ok() {
            outcome = Err(e.into());
        }
    }
    outcome
}

/// Checks out the group's branch, applies its proposals, commits, pushes and
/// opens or updates the pull request.
async fn commit_group(
    opts: &GitopsOptions,
    git: &git::Git,
    target: &apply::Target<'_>,
    group: &plan::Group<'_>,
    branch: &str,
    report: &mut GitopsReport,
    files: &mut BTreeSet<PathBuf>,
) -> Result<BranchReport, GitopsError> {
    let reused = git.switch_to(branch, opts.push.as_deref()).await?;
    let scan = discovery::scan(target.repo, target.skip)?;
    let proposals: Vec<&plan::Proposal> = group.proposals.iter().collect();
    let applied = apply::apply(target, &proposals, &scan)?;
    let changed_files: Vec<PathBuf> = applied.files.iter().cloned().collect();
    let commit = if changed_files.is_empty() {
        info!(branch, "nothing new to commit");
        None
    } else {
        let message = body::commit_message(&applied.changes, group.namespace.as_deref());
        let sha = git.commit(&changed_files, &message).await?;
        info!(branch, commit = %sha, files = changed_files.len(), "committed");
        Some(sha)
    };
    files.extend(changed_files);
    let mut pushed_to = None;
    if let Some(remote) = &opts.push {
        git.push(remote, branch).await?;
        info!(branch, remote = %remote, "pushed");
        pushed_to = Some(remote.clone());
    }
    let mut pull_request = None;
    let described: Vec<&plan::Proposal> = proposals
        .iter()
        .copied()
        .filter(|p| !applied.failed_workloads.contains(&p.workload))
        .collect();
    if let (Some(forge), false) = (&opts.pull_request, described.is_empty()) {
        let title = body::title(described.len(), group.namespace.as_deref());
        let text = body::pull_request_body(&described, target.mode);
        let pr = forge::upsert_pull_request(forge, branch, &title, &text).await?;
        info!(branch, number = pr.number, action = ?pr.action, "pull request");
        pull_request = Some(pr);
    }
    let workloads = described.iter().map(|p| p.workload.clone()).collect();
    record(report, &proposals, applied);
    Ok(BranchReport {
        namespace: group.namespace.clone(),
        branch: branch.to_string(),
        reused,
        commit,
        pushed_to,
        pull_request,
        workloads,
    })
}

/// Adds applied proposals to the report.
fn record(report: &mut GitopsReport, proposals: &[&plan::Proposal], applied: apply::Applied) {
    report.skipped.extend(applied.failed);
    for p in proposals {
        if applied.failed_workloads.contains(&p.workload) {
            continue;
        }
        report.changed.push(ChangedWorkload {
            workload: p.workload.clone(),
            location: p.location.clone(),
            file: applied.file_of.get(&p.workload).cloned(),
            edited: applied.changes.iter().any(|(w, _)| *w == p.workload),
            containers: p
                .containers
                .iter()
                .map(|c| ContainerChange {
                    container: c.rec.key.container.clone(),
                    before: c.before,
                    after: c.after,
                    confidence: c.rec.confidence,
                    reason: c.rec.reason.clone(),
                })
                .collect(),
            notes: p.notes.clone(),
        });
    }
}

/// `path` relative to `root`, or unchanged when outside it.
fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}
