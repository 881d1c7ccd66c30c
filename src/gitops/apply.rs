//! Writing planned changes: in-place edits of manifests and Helm values, or
//! (through `patches.rs`) patch files. Only files whose bytes change are
//! written, so a second run with the same recommendations writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::discovery::{find_container, pod_spec_path, Scan};
use super::edit::{container_map, edit_document, values_parent, Seg};
use super::plan::{container_path, helm_resources, Proposal, Site};
use super::{patches, ContainerChange, GitopsError, OutputMode, SkipReason, Skipped, WorkloadRef};
use crate::model::Resources;

/// Where and how to write.
pub(crate) struct Target<'a> {
    /// The repository root (canonical).
    pub repo: &'a Path,
    /// Directory for patch output (absolute).
    pub out_dir: &'a Path,
    /// Directories discovery leaves out.
    pub skip: &'a [PathBuf],
    /// What to write.
    pub mode: OutputMode,
}

/// What a write pass did.
#[derive(Default)]
pub(crate) struct Applied {
    /// Files whose bytes changed, relative to the repository.
    pub files: BTreeSet<PathBuf>,
    /// The file each workload's change is in.
    pub file_of: BTreeMap<WorkloadRef, PathBuf>,
    /// Workloads whose bytes changed in this pass, with before (as found in
    /// this tree) → after per container.
    pub changes: Vec<(WorkloadRef, Vec<ContainerChange>)>,
    /// Workloads that could not be written, and why.
    pub failed: Vec<Skipped>,
    /// The workloads of `failed`.
    pub failed_workloads: BTreeSet<WorkloadRef>,
}

impl Applied {
    pub(crate) fn fail(&mut self, workload: &WorkloadRef, detail: String) {
        tracing::warn!(workload = %workload, %detail, "not edited");
        self.failed_workloads.insert(workload.clone());
        self.failed.push(Skipped {
            workload: workload.clone(),
            container: None,
            reason: SkipReason::Unsupported,
            detail,
        });
    }
}

/// Overlays the quantities of `write` on `before`.
pub(crate) fn overlay(before: &Resources, write: &Resources) -> Resources {
    Resources {
        cpu_request_millicores: write
            .cpu_request_millicores
            .or(before.cpu_request_millicores),
        cpu_limit_millicores: write.cpu_limit_millicores.or(before.cpu_limit_millicores),
        memory_request_bytes: write.memory_request_bytes.or(before.memory_request_bytes),
        memory_limit_bytes: write.memory_limit_bytes.or(before.memory_limit_bytes),
    }
}

/// Writes `proposals` into the tree `scan` was taken from.
pub(crate) fn apply(
    target: &Target,
    proposals: &[&Proposal],
    scan: &Scan,
) -> Result<Applied, GitopsError> {
    match target.mode {
        OutputMode::InPlace => in_place(target, proposals, scan),
        OutputMode::Kustomize => patches::write_kustomize(target, proposals),
        OutputMode::Patches => patches::write_kubectl(target, proposals),
    }
}

fn in_place(target: &Target, proposals: &[&Proposal], scan: &Scan) -> Result<Applied, GitopsError> {
    let mut applied = Applied::default();
    // Original and current text of each file touched.
    let mut texts: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
    for p in proposals {
        let result = match &p.site {
            Site::Manifest => edit_manifest(p, scan, &mut texts),
            Site::Helm { file, parent, key } => {
                edit_values(target.repo, p, file, parent, key, &mut texts)
            }
            Site::Cluster => Err("no manifest to edit".to_string()),
        };
        match result {
            Ok((file, changes)) => {
                applied.file_of.insert(p.workload.clone(), file);
                if !changes.is_empty() {
                    applied.changes.push((p.workload.clone(), changes));
                }
            }
            Err(why) => applied.fail(&p.workload, why),
        }
    }
    for (file, (original, current)) in texts {
        if original != current {
            let path = target.repo.join(&file);
            super::paths::check_write(target.repo, &path, "manifest")?;
            fs::write(&path, current).map_err(|source| GitopsError::Io { path, source })?;
            applied.files.insert(file);
        }
    }
    Ok(applied)
}

type Edited = (PathBuf, Vec<ContainerChange>);

fn edit_manifest(
    p: &Proposal,
    scan: &Scan,
    texts: &mut BTreeMap<PathBuf, (String, String)>,
) -> Result<Edited, String> {
    let w = &p.workload;
    let found = scan.matches(&w.namespace, &w.kind, &w.name);
    let [c] = found.as_slice() else {
        return Err(format!(
            "found {} manifests for it in this tree",
            found.len()
        ));
    };
    if let Some(why) = &c.ignored {
        return Err(format!("ignored in this tree: {why}"));
    }
    let file = c.location.file.clone();
    let manifest = scan.files.get(&file).ok_or("file vanished")?;
    let value = scan.value(&c.location).ok_or("document vanished")?;
    let pod_spec = pod_spec_path(&c.kind).ok_or("not a workload kind")?;
    let entry = texts
        .entry(file.clone())
        .or_insert_with(|| (manifest.text.clone(), manifest.text.clone()));
    let mut text = entry.1.clone();
    let mut changes = Vec::new();
    for cp in &p.containers {
        let name = cp.rec.key.container.as_str();
        let spot =
            find_container(value, &c.kind, name).ok_or_else(|| format!("no container {name}"))?;
        let path = container_path(&c.kind, spot.list, spot.index);
        let new = edit_document(
            &text,
            c.location.document,
            |t, top| container_map(t, top, pod_spec, spot.list, name),
            "resources",
            &path,
            &cp.write,
        )
        .map_err(|e| format!("{} (container {name}): {e}", c.location))?;
        if new != text {
            changes.push(ContainerChange {
                container: name.to_string(),
                before: spot.resources,
                after: overlay(&spot.resources, &cp.write),
                confidence: cp.rec.confidence,
                reason: cp.rec.reason.clone(),
            });
            text = new;
        }
    }
    // All containers of the workload or none.
    entry.1 = text;
    Ok((file, changes))
}

fn edit_values(
    repo: &Path,
    p: &Proposal,
    file: &Path,
    parent: &[String],
    key: &str,
    texts: &mut BTreeMap<PathBuf, (String, String)>,
) -> Result<Edited, String> {
    let (before, ignored, _) = helm_resources(repo, file, parent, key)?;
    if let Some(why) = ignored {
        return Err(format!("ignored in this tree: {why}"));
    }
    if !texts.contains_key(file) {
        let original =
            fs::read_to_string(repo.join(file)).map_err(|e| format!("{}: {e}", file.display()))?;
        texts.insert(file.to_path_buf(), (original.clone(), original));
    }
    let entry = texts.get_mut(file).ok_or("values file vanished")?;
    let keys: Vec<&str> = parent.iter().map(String::as_str).collect();
    let path: Vec<Seg> = parent.iter().map(|k| Seg::Key(k.clone())).collect();
    let mut text = entry.1.clone();
    let mut changes = Vec::new();
    for cp in &p.containers {
        let new = edit_document(
            &text,
            0,
            |t, top| values_parent(t, top, &keys),
            key,
            &path,
            &cp.write,
        )
        .map_err(|e| format!("{}: {e}", file.display()))?;
        if new != text {
            changes.push(ContainerChange {
                container: cp.rec.key.container.clone(),
                before,
                after: overlay(&before, &cp.write),
                confidence: cp.rec.confidence,
                reason: cp.rec.reason.clone(),
            });
            text = new;
        }
    }
    entry.1 = text;
    Ok((file.to_path_buf(), changes))
}
