//! From recommendations to proposals: which workload containers change, where
//! their resources are written, and what is skipped and why. Pure over the
//! scan: no writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

use super::discovery::{self, find_container, has_marker, resources_of, Candidate, Scan};
use super::edit::{values_parent, Seg};
use super::yaml::{LineKind, Text};
use super::{
    Ambiguous, GitopsOptions, Location, OutputMode, ProposalFilter, SkipReason, Skipped,
    WorkloadRef,
};
use crate::model::{Recommendation, Resources, Status};
use crate::quantity;

/// Where a workload's resources are written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Site {
    /// A workload document.
    Manifest,
    /// A Helm values file: the `key` under the mapping at `parent`.
    Helm {
        /// The values file, relative to the repository.
        file: PathBuf,
        /// Keys leading to the mapping that holds `key`.
        parent: Vec<String>,
        /// The resources key (normally `resources`).
        key: String,
    },
    /// Nowhere in the repository: patch output from the recommendation alone.
    Cluster,
}

/// One container's planned change.
#[derive(Debug, Clone)]
pub(crate) struct ContainerPlan<'r> {
    /// The recommendation behind it.
    pub rec: &'r Recommendation,
    /// `containers` or `initContainers`.
    pub list: &'static str,
    /// Requests and limits now (as written, or from the cluster).
    pub before: Resources,
    /// Requests and limits after the change.
    pub after: Resources,
    /// The quantities to write (the changed resources only).
    pub write: Resources,
}

/// One workload's planned change.
#[derive(Debug, Clone)]
pub(crate) struct Proposal<'r> {
    /// Which workload.
    pub workload: WorkloadRef,
    /// Where its resources are written.
    pub site: Site,
    /// The document it was found in.
    pub location: Option<Location>,
    /// `apiVersion` for generated patches.
    pub api_version: String,
    /// Changed containers.
    pub containers: Vec<ContainerPlan<'r>>,
    /// Things a reviewer should know.
    pub notes: Vec<String>,
}

/// The outcome of planning.
#[derive(Default)]
pub(crate) struct Plan<'r> {
    /// Changes to make.
    pub proposals: Vec<Proposal<'r>>,
    /// Recommendations left out.
    pub skipped: Vec<Skipped>,
    /// Workloads found in several places.
    pub ambiguous: Vec<Ambiguous>,
    /// Workloads not found.
    pub missing: Vec<WorkloadRef>,
}

/// Proposals that go on one branch.
pub(crate) struct Group<'r> {
    /// The namespace, when grouping by namespace.
    pub namespace: Option<String>,
    /// The proposals, sorted by workload.
    pub proposals: Vec<Proposal<'r>>,
}

fn workload_of(rec: &Recommendation) -> WorkloadRef {
    WorkloadRef {
        namespace: rec.key.namespace.clone(),
        kind: rec.key.kind.clone(),
        name: rec.key.workload.clone(),
    }
}

fn skip(
    workload: &WorkloadRef,
    container: Option<&str>,
    reason: SkipReason,
    detail: impl Into<String>,
) -> Skipped {
    Skipped {
        workload: workload.clone(),
        container: container.map(str::to_string),
        reason,
        detail: detail.into(),
    }
}

/// Where a workload's resources were found.
pub(crate) enum Found<'s> {
    /// One workload document.
    Manifest(&'s Candidate),
    /// A Helm values file.
    Helm(Site),
    /// Nowhere.
    Missing,
    /// Several documents.
    Ambiguous(Vec<&'s Candidate>),
}

/// Finds where `workload`'s resources live: a Helm mapping first, else the
/// workload documents of the scan.
pub(crate) fn locate<'s>(
    scan: &'s Scan,
    helm: &[super::HelmValuesMapping],
    workload: &WorkloadRef,
    container: &str,
    single_container: bool,
) -> Found<'s> {
    let mapping = helm.iter().find(|m| {
        m.workload_key().is_some_and(|(ns, kind, name)| {
            ns == workload.namespace
                && kind.eq_ignore_ascii_case(&workload.kind)
                && name == workload.name
        }) && match &m.container {
            Some(c) => c == container,
            None => single_container,
        }
    });
    if let Some(m) = mapping {
        let mut parts: Vec<String> = m
            .resources_path
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let key = parts.pop().unwrap_or_else(|| "resources".into());
        let file = m.values_file.clone();
        return Found::Helm(Site::Helm {
            file,
            parent: parts,
            key,
        });
    }
    let matches = scan.matches(&workload.namespace, &workload.kind, &workload.name);
    match matches.len() {
        0 => Found::Missing,
        1 => Found::Manifest(matches[0]),
        _ => Found::Ambiguous(matches),
    }
}

/// Reads a Helm values file and the resources at `parent`/`key`; `Err` says
/// why it can't be used.
pub(crate) fn helm_resources(
    repo: &Path,
    file: &Path,
    parent: &[String],
    key: &str,
) -> Result<(Resources, Option<String>, Location), String> {
    let text = fs::read_to_string(repo.join(file))
        .map_err(|e| format!("values file {}: {e}", file.display()))?;
    let parsed = discovery::parse_file(text)
        .map_err(|e| format!("values file {} is malformed: {e}", file.display()))?;
    let (range, value) = parsed
        .docs
        .first()
        .ok_or_else(|| format!("values file {} is empty", file.display()))?;
    let lines = Text::new(&parsed.text);
    let top = lines
        .top_map(range)
        .ok_or_else(|| format!("values file {} is not a mapping", file.display()))?;
    let keys: Vec<&str> = parent.iter().map(String::as_str).collect();
    let parent_map =
        values_parent(&lines, top, &keys).map_err(|e| format!("{} in {}", e, file.display()))?;
    let mut node = value;
    for k in parent {
        node = node.get(k.as_str()).unwrap_or(&Value::Null);
    }
    let resources = node.get(key).map(resources_of).unwrap_or_default();
    // The marker counts on the key's line, the comments right above it, or
    // the parent key's line.
    let mut ignored = None;
    let entry_line = lines.entry(parent_map, key).map(|e| e.line);
    let mut check: Vec<usize> = Vec::new();
    if let Some(l) = entry_line {
        check.push(l);
        let mut i = l;
        while i > 0 && lines.lines[i - 1].kind == LineKind::Comment {
            i -= 1;
            check.push(i);
        }
    }
    if parent_map.first > 0 {
        check.push(parent_map.first - 1);
    }
    if let Some(l) = check.into_iter().find(|&l| has_marker(lines.line_str(l))) {
        ignored = Some(format!(
            "comment marker `# rightsizer:ignore` on line {}",
            l + 1
        ));
    }
    let location = Location {
        file: file.to_path_buf(),
        document: 0,
        line: entry_line.map_or(parent_map.first, |l| l) + 1,
    };
    Ok((resources, ignored, location))
}

/// Path segments from a document's root to a container.
pub(crate) fn container_path(kind: &str, list: &str, index: usize) -> Vec<Seg> {
    let mut path: Vec<Seg> = discovery::pod_spec_path(kind)
        .unwrap_or(&[])
        .iter()
        .map(|k| Seg::Key((*k).to_string()))
        .collect();
    path.push(Seg::Key(list.to_string()));
    path.push(Seg::Index(index));
    path
}

fn counts(old: Option<i64>, new: Option<i64>, min_abs: i64, min_rel: f64) -> bool {
    match (old, new) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(o), Some(n)) => {
            let delta = (n - o).abs();
            delta >= min_abs && (o == 0 || delta as f64 / o.abs() as f64 >= min_rel - 1e-9)
        }
    }
}

/// The quantities worth writing: a resource (CPU or memory) changes when its
/// request or limit moves by at least the relative threshold and the
/// absolute one; both of its quantities are then written.
pub(crate) fn decide(
    before: &Resources,
    rec: &Recommendation,
    f: &ProposalFilter,
) -> Option<(Resources, Resources)> {
    let r = &rec.recommended;
    let cpu = counts(
        before.cpu_request_millicores,
        r.cpu_request_millicores,
        f.min_cpu_millicores,
        f.min_relative_change,
    ) || counts(
        before.cpu_limit_millicores,
        r.cpu_limit_millicores,
        f.min_cpu_millicores,
        f.min_relative_change,
    );
    let memory = counts(
        before.memory_request_bytes,
        r.memory_request_bytes,
        f.min_memory_bytes,
        f.min_relative_change,
    ) || counts(
        before.memory_limit_bytes,
        r.memory_limit_bytes,
        f.min_memory_bytes,
        f.min_relative_change,
    );
    if !cpu && !memory {
        return None;
    }
    let pick = |on: bool, v: Option<i64>| if on { v } else { None };
    let write = Resources {
        cpu_request_millicores: pick(cpu, r.cpu_request_millicores),
        cpu_limit_millicores: pick(cpu, r.cpu_limit_millicores),
        memory_request_bytes: pick(memory, r.memory_request_bytes),
        memory_limit_bytes: pick(memory, r.memory_limit_bytes),
    };
    Some((super::apply::overlay(before, &write), write))
}

fn below_detail(before: &Resources, rec: &Recommendation, f: &ProposalFilter) -> String {
    let r = &rec.recommended;
    format!(
        "cpu {}/{} → {}/{}, memory {}/{} → {}/{}: under {:.0}% and {} / {}",
        quantity::cpu_opt(before.cpu_request_millicores),
        quantity::cpu_opt(before.cpu_limit_millicores),
        quantity::cpu_opt(r.cpu_request_millicores),
        quantity::cpu_opt(r.cpu_limit_millicores),
        quantity::memory_opt(before.memory_request_bytes),
        quantity::memory_opt(before.memory_limit_bytes),
        quantity::memory_opt(r.memory_request_bytes),
        quantity::memory_opt(r.memory_limit_bytes),
        f.min_relative_change * 100.0,
        quantity::cpu(f.min_cpu_millicores),
        quantity::memory(f.min_memory_bytes),
    )
}

/// Plans the changes for `recs` against the scanned checkout.
pub(crate) fn plan<'r>(
    opts: &GitopsOptions,
    recs: &'r [Recommendation],
    scan: &Scan,
    repo: &Path,
) -> Plan<'r> {
    // One recommendation per workload container; clusters that disagree are skipped.
    let mut by_workload: BTreeMap<WorkloadRef, BTreeMap<&str, Vec<&Recommendation>>> =
        BTreeMap::new();
    for rec in recs {
        by_workload
            .entry(workload_of(rec))
            .or_default()
            .entry(rec.key.container.as_str())
            .or_default()
            .push(rec);
    }
    let mut planner = Planner {
        opts,
        scan,
        repo,
        patch_mode: opts.output != OutputMode::InPlace,
        recommended: recs
            .iter()
            .filter(|r| r.status == Status::Ok)
            .map(workload_of)
            .collect(),
        out: Plan::default(),
    };
    for (workload, containers) in &by_workload {
        planner.workload(workload, containers);
    }
    planner.out
}

/// What planning one workload after another needs, and the plan so far.
struct Planner<'a, 'r> {
    opts: &'a GitopsOptions,
    scan: &'a Scan,
    repo: &'a Path,
    /// Kustomize or patch output (not an in-place edit).
    patch_mode: bool,
    /// Workloads with an `ok` recommendation in any namespace.
    recommended: BTreeSet<WorkloadRef>,
    out: Plan<'r>,
}

/// The containers of one workload to write at one site.
type SiteRecs<'r> = Vec<(Site, Vec<&'r Recommendation>)>;

impl<'a, 'r> Planner<'a, 'r> {
    /// Plans `workload`: its eligible containers, where each is written, then the changes.
    fn workload(
        &mut self,
        workload: &WorkloadRef,
        containers: &BTreeMap<&str, Vec<&'r Recommendation>>,
    ) {
        let eligible: Vec<&'r Recommendation> = containers
            .iter()
            .filter_map(|(container, list)| self.eligible(workload, container, list))
            .collect();
        if eligible.is_empty() {
            return;
        }
        let (mut by_site, candidate_doc) = self.sites(workload, &eligible, containers.len() == 1);
        let mut notes = Vec::new();
        let mut location = None;
        let mut api_version = crate::patch::api_version(&workload.kind).to_string();
        if let Some(c) = candidate_doc {
            location = Some(c.location.clone());
            if !c.api_version.is_empty() {
                api_version = c.api_version.clone();
            }
            if let Some(why) = &c.ignored {
                self.out
                    .skipped
                    .push(skip(workload, None, SkipReason::Ignored, why.clone()));
                by_site.retain(|(s, _)| *s != Site::Manifest);
            }
            self.shared_base(c, workload, &mut by_site, &mut notes);
        }
        if self.patch_mode
            && (workload.kind == "Rollout" || discovery::pod_spec_path(&workload.kind).is_none())
        {
            self.out.skipped.push(skip(
                workload,
                None,
                SkipReason::Unsupported,
                format!(
                    "strategic-merge patches replace the whole container list of a custom resource ({}); use the in-place output",
                    workload.kind
                ),
            ));
            return;
        }
        for (site, site_recs) in by_site {
            let Some((planned, helm_location)) =
                self.site_changes(workload, &site, &site_recs, candidate_doc)
            else {
                continue;
            };
            self.out.proposals.push(Proposal {
                workload: workload.clone(),
                location: if site == Site::Manifest {
                    location.clone()
                } else {
                    helm_location
                },
                site,
                api_version: api_version.clone(),
                containers: planned,
                notes: notes.clone(),
            });
        }
    }

    /// The recommendation of one workload container when it may be proposed: the clusters
    /// agree, its status is `ok` and it is confident enough; otherwise skipped, with why.
    fn eligible(
        &mut self,
        workload: &WorkloadRef,
        container: &str,
        list: &[&'r Recommendation],
    ) -> Option<&'r Recommendation> {
        let rec = list[0];
        let skipped = |reason, detail| Some(skip(workload, Some(container), reason, detail));
        let why = if list
            .iter()
            .any(|r| r.recommended != rec.recommended || r.status != rec.status)
        {
            let clusters: Vec<&str> = list.iter().map(|r| r.key.cluster.as_str()).collect();
            skipped(
                SkipReason::ConflictingRecommendations,
                format!(
                    "clusters {} recommend different values",
                    clusters.join(", ")
                ),
            )
        } else {
            match rec.status {
                Status::Ok if rec.confidence < self.opts.filter.min_confidence => skipped(
                    SkipReason::LowConfidence,
                    format!(
                        "confidence {} ({:.2}) is below {}",
                        rec.confidence.as_str(),
                        rec.confidence_score,
                        self.opts.filter.min_confidence.as_str()
                    ),
                ),
                Status::Ok => None,
                Status::InsufficientData => {
                    skipped(SkipReason::InsufficientData, rec.reason.clone())
                }
                // The analyzer found nothing worth changing (`no-change`).
                other => skipped(
                    SkipReason::BelowThreshold,
                    format!("status {}: {}", other.as_str(), rec.reason),
                ),
            }
        };
        match why {
            Some(s) => {
                self.out.skipped.push(s);
                None
            }
            None => Some(rec),
        }
    }

    /// Where each eligible container is written (containers mapped to different Helm values
    /// blocks are separate sites), and the workload document when there is one. Missing and
    /// ambiguous workloads are recorded.
    fn sites(
        &mut self,
        workload: &WorkloadRef,
        eligible: &[&'r Recommendation],
        single: bool,
    ) -> (SiteRecs<'r>, Option<&'a Candidate>) {
        let mut by_site: SiteRecs<'r> = Vec::new();
        let mut candidate_doc: Option<&'a Candidate> = None;
        for rec in eligible {
            let found = locate(
                self.scan,
                &self.opts.helm_values,
                workload,
                &rec.key.container,
                single,
            );
            let site = match found {
                Found::Helm(site) => site,
                Found::Manifest(c) => {
                    candidate_doc = Some(c);
                    Site::Manifest
                }
                Found::Missing if self.patch_mode => Site::Cluster,
                Found::Ambiguous(list) if self.patch_mode => {
                    if let Some(c) = list.iter().find(|c| c.ignored.is_some()) {
                        candidate_doc = Some(c);
                        Site::Manifest
                    } else {
                        Site::Cluster
                    }
                }
                Found::Missing => {
                    if !self.out.missing.contains(workload) {
                        self.out.missing.push(workload.clone());
                    }
                    continue;
                }
                Found::Ambiguous(list) => {
                    if !self.out.ambiguous.iter().any(|a| a.workload == *workload) {
                        self.out.ambiguous.push(Ambiguous {
                            workload: workload.clone(),
                            locations: list.iter().map(|c| c.location.clone()).collect(),
                            detail: format!("found in {} places", list.len()),
                        });
                    }
                    continue;
                }
            };
            match by_site.iter_mut().find(|(s, _)| *s == site) {
                Some((_, v)) => v.push(rec),
                None => by_site.push((site, vec![rec])),
            }
        }
        (by_site, candidate_doc)
    }

    /// A kustomize base shared by overlays with different namespaces: editing it changes
    /// every namespace. Noted when the others have no recommendation; ambiguous (and not
    /// edited in place) when they do.
    fn shared_base(
        &mut self,
        c: &Candidate,
        workload: &WorkloadRef,
        by_site: &mut SiteRecs<'r>,
        notes: &mut Vec<String>,
    ) {
        let others: Vec<&String> = c
            .namespaces
            .iter()
            .filter(|ns| **ns != workload.namespace)
            .collect();
        if others.is_empty()
            || self.patch_mode
            || !by_site.iter().any(|(s, _)| *s == Site::Manifest)
        {
            return;
        }
        let competing = others.iter().any(|ns| {
            self.recommended.contains(&WorkloadRef {
                namespace: (*ns).clone(),
                kind: workload.kind.clone(),
                name: workload.name.clone(),
            })
        });
        if !competing {
            notes.push(format!(
                "{} is a kustomize base also deployed to namespace {}: this edit changes it there too",
                c.location.file.display(),
                others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
            return;
        }
        self.out.ambiguous.push(Ambiguous {
            workload: workload.clone(),
            locations: vec![c.location.clone()],
            detail: format!(
                "a kustomize base shared by namespaces {} that all have recommendations; edit the overlays or use --output kustomize",
                c.namespaces.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        });
        by_site.retain(|(s, _)| *s != Site::Manifest);
    }

    /// The changes of `site_recs` at `site` (with the Helm values block's location), or
    /// `None` when nothing there changes.
    fn site_changes(
        &mut self,
        workload: &WorkloadRef,
        site: &Site,
        site_recs: &[&'r Recommendation],
        candidate_doc: Option<&Candidate>,
    ) -> Option<(Vec<ContainerPlan<'r>>, Option<Location>)> {
        let mut helm_location = None;
        let helm_before = match site {
            Site::Helm { file, parent, key } => {
                match helm_resources(self.repo, file, parent, key) {
                    Ok((resources, ignored, loc)) => {
                        if let Some(why) = ignored {
                            self.out
                                .skipped
                                .push(skip(workload, None, SkipReason::Ignored, why));
                            return None;
                        }
                        helm_location = Some(loc);
                        Some(resources)
                    }
                    Err(why) => {
                        self.out
                            .skipped
                            .push(skip(workload, None, SkipReason::Unsupported, why));
                        return None;
                    }
                }
            }
            _ => None,
        };
        let mut planned = Vec::new();
        for &rec in site_recs {
            let container = rec.key.container.as_str();
            let (before, list) = match (site, candidate_doc) {
                (Site::Helm { .. }, _) => (helm_before.unwrap_or_default(), "containers"),
                (Site::Manifest, Some(c)) => {
                    let spot = self
                        .scan
                        .value(&c.location)
                        .and_then(|v| find_container(v, &c.kind, container));
                    match spot {
                        Some(spot) => (spot.resources, spot.list),
                        None => {
                            self.out.skipped.push(skip(
                                workload,
                                Some(container),
                                SkipReason::ContainerNotFound,
                                format!("no container {container} in {}", c.location),
                            ));
                            continue;
                        }
                    }
                }
                _ => (rec.current, "containers"),
            };
            match decide(&before, rec, &self.opts.filter) {
                Some((after, write)) => planned.push(ContainerPlan {
                    rec,
                    list,
                    before,
                    after,
                    write,
                }),
                None => self.out.skipped.push(skip(
                    workload,
                    Some(container),
                    SkipReason::BelowThreshold,
                    below_detail(&before, rec, &self.opts.filter),
                )),
            }
        }
        (!planned.is_empty()).then_some((planned, helm_location))
    }
}

/// Sorts proposals into branches (one, or one per namespace) of at most `max` workloads each.
pub(crate) fn group<'r>(
    mut proposals: Vec<Proposal<'r>>,
    by_namespace: bool,
    max: Option<usize>,
    skipped: &mut Vec<Skipped>,
) -> Vec<Group<'r>> {
    proposals.sort_by(|a, b| a.workload.cmp(&b.workload));
    let mut groups: Vec<Group> = Vec::new();
    for p in proposals {
        let namespace = by_namespace.then(|| p.workload.namespace.clone());
        match groups.iter_mut().find(|g| g.namespace == namespace) {
            Some(g) => g.proposals.push(p),
            None => groups.push(Group {
                namespace,
                proposals: vec![p],
            }),
        }
    }
    if let Some(max) = max {
        for g in &mut groups {
            let mut seen: Vec<WorkloadRef> = Vec::new();
            let mut keep = Vec::new();
            for p in std::mem::take(&mut g.proposals) {
                if !seen.contains(&p.workload) {
                    seen.push(p.workload.clone());
                }
                if seen.len() <= max {
                    keep.push(p);
                } else {
                    skipped.push(skip(
                        &p.workload,
                        None,
                        SkipReason::OverLimit,
                        format!("over --max-workloads {max}"),
                    ));
                }
            }
            g.proposals = keep;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: i64 = 1 << 20;

    fn rec(recommended: [Option<i64>; 4]) -> Recommendation {
        // Built from JSON so the test doesn't depend on every field of the model.
        serde_json::from_value(serde_json::json!({
            "cluster": "c", "namespace": "ns", "kind": "Deployment", "workload": "w", "container": "app",
            "status": "ok",
            "current": {},
            "recommended": {
                "cpu_request_millicores": recommended[0], "cpu_limit_millicores": recommended[1],
                "memory_request_bytes": recommended[2], "memory_limit_bytes": recommended[3],
            },
            "confidence": "high", "confidence_score": 0.9, "reason": "r", "strategy": "s",
            "evidence": {"cpu_percentile": 95.0, "cpu_percentile_millicores": null, "memory_peak_bytes": null,
                "samples": 1, "memory_samples": 1, "history_hours": 1, "window_hours": 1, "margin": 0.1, "rules": []},
            "computed_at": 0,
        }))
        .unwrap()
    }

    fn before(v: [Option<i64>; 4]) -> Resources {
        Resources {
            cpu_request_millicores: v[0],
            cpu_limit_millicores: v[1],
            memory_request_bytes: v[2],
            memory_limit_bytes: v[3],
        }
    }

    #[test]
    fn a_change_needs_ten_percent_and_an_absolute_step() {
        let f = ProposalFilter::default();
        let now = before([Some(1000), Some(4000), Some(512 * MI), Some(512 * MI)]);
        // 9% of CPU: not enough, and memory is unchanged.
        assert!(decide(
            &now,
            &rec([Some(1090), Some(4000), Some(512 * MI), Some(512 * MI)]),
            &f
        )
        .is_none());
        // 20% but only 20m.
        let small = before([Some(100), Some(400), Some(512 * MI), Some(512 * MI)]);
        assert!(decide(
            &small,
            &rec([Some(120), Some(400), Some(512 * MI), Some(512 * MI)]),
            &f
        )
        .is_none());
        // 30m and 30%: CPU changes, memory (unchanged) is not written.
        let (after, write) = decide(
            &small,
            &rec([Some(130), Some(520), Some(520 * MI), Some(520 * MI)]),
            &f,
        )
        .unwrap();
        assert_eq!(write, before([Some(130), Some(520), None, None]));
        assert_eq!(
            after,
            before([Some(130), Some(520), Some(512 * MI), Some(512 * MI)])
        );
        // 48Mi but under 10% of 1Gi is not enough; 128Mi is.
        let big = before([Some(100), Some(400), Some(1024 * MI), Some(1024 * MI)]);
        assert!(decide(
            &big,
            &rec([Some(100), Some(400), Some(976 * MI), Some(976 * MI)]),
            &f
        )
        .is_none());
        assert!(decide(
            &big,
            &rec([Some(100), Some(400), Some(896 * MI), Some(896 * MI)]),
            &f
        )
        .is_some());
        // A missing limit is always worth adding.
        let no_limit = before([Some(100), None, Some(64 * MI), Some(64 * MI)]);
        let (_, write) = decide(
            &no_limit,
            &rec([Some(100), Some(400), Some(64 * MI), Some(64 * MI)]),
            &f,
        )
        .unwrap();
        assert_eq!(write, before([Some(100), Some(400), None, None]));
    }
}
