//! Finding workload manifests in a GitOps checkout: every YAML file (but
//! `.git`, rightsizer's own output directory and Helm chart templates), split
//! into documents, with the namespace each workload lands in once kustomize
//! has applied the overlays that include it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use yaml_serde::Value;

use super::units::scalar_text;
use super::yaml::{LineKind, Text};
use super::{GitopsError, Location, Malformed, UnknownKind};
use crate::model::Resources;
use crate::quantity::{parse_cpu_millicores, parse_memory_bytes};

/// Annotation that keeps rightsizer away from a workload.
pub(crate) const IGNORE_ANNOTATION: &str = "rightsizer.io/ignore";
/// Comment marker that keeps rightsizer away from a manifest or values block.
pub(crate) const IGNORE_MARKER: &str = "rightsizer:ignore";

const KUSTOMIZATION_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

pub(crate) use crate::patch::pod_spec_path;

/// A parsed YAML file.
pub(crate) struct ManifestFile {
    /// The file's text as read.
    pub text: String,
    /// Its documents: line ranges into `text` and their values.
    pub docs: Vec<(Range<usize>, Value)>,
}

/// A workload document that a recommendation may match.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Where it is.
    pub location: Location,
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Namespaces the workload is deployed to (several for a kustomize base
    /// shared by overlays that set different namespaces).
    pub namespaces: BTreeSet<String>,
    /// Why rightsizer must leave it alone, if it must.
    pub ignored: Option<String>,
}

/// Everything found in the checkout.
#[derive(Default)]
pub(crate) struct Scan {
    /// Parsed YAML files by path relative to the repository.
    pub files: BTreeMap<PathBuf, ManifestFile>,
    /// Workload documents.
    pub candidates: Vec<Candidate>,
    /// Files that could not be parsed.
    pub malformed: Vec<Malformed>,
    /// Documents with containers of a kind rightsizer doesn't edit.
    pub unknown_kinds: Vec<UnknownKind>,
}

/// Where a container sits in a workload document.
pub(crate) struct ContainerSpot {
    /// `containers` or `initContainers`.
    pub list: &'static str,
    /// Index in that list.
    pub index: usize,
    /// Its requests and limits as written.
    pub resources: Resources,
}

impl Scan {
    /// The workload documents matching a kind, name and namespace.
    pub fn matches(&self, namespace: &str, kind: &str, name: &str) -> Vec<&Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.kind == kind && c.name == name && c.namespaces.contains(namespace))
            .collect()
    }

    /// The value of a candidate's document.
    pub fn value(&self, location: &Location) -> Option<&Value> {
        let file = self.files.get(&location.file)?;
        file.docs.get(location.document).map(|(_, v)| v)
    }
}

/// Finds a container by name in a workload document.
pub(crate) fn find_container(doc: &Value, kind: &str, container: &str) -> Option<ContainerSpot> {
    let mut spec = doc;
    for key in pod_spec_path(kind)? {
        spec = spec.get(key)?;
    }
    for list in ["containers", "initContainers"] {
        let Some(Value::Sequence(items)) = spec.get(list) else {
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            if item.get("name").and_then(Value::as_str) == Some(container) {
                let resources = item.get("resources").map(resources_of).unwrap_or_default();
                return Some(ContainerSpot {
                    list,
                    index,
                    resources,
                });
            }
        }
    }
    None
}

/// Requests and limits from a `resources` value.
pub(crate) fn resources_of(resources: &Value) -> Resources {
    let get = |section: &str, name: &str| {
        resources
            .get(section)
            .and_then(|s| s.get(name))
            .and_then(scalar_text)
    };
    Resources {
        cpu_request_millicores: get("requests", "cpu").and_then(|s| parse_cpu_millicores(&s).ok()),
        cpu_limit_millicores: get("limits", "cpu").and_then(|s| parse_cpu_millicores(&s).ok()),
        memory_request_bytes: get("requests", "memory").and_then(|s| parse_memory_bytes(&s).ok()),
        memory_limit_bytes: get("limits", "memory").and_then(|s| parse_memory_bytes(&s).ok()),
    }
}

/// Parses one file's documents; the error says where parsing failed.
pub(crate) fn parse_file(text: String) -> Result<ManifestFile, String> {
    // Documents are parsed one by one, so a comment outside them (a preamble before the
    // first `---`) is never read by the YAML parser: check what YAML forbids everywhere
    // (C0 and C1 control characters but TAB, LF, CR and NEL), as kubectl's parser would.
    if let Some((line, c)) = text.lines().enumerate().find_map(|(i, l)| {
        l.chars()
            .find(|&c| c.is_control() && !matches!(c, '\t' | '\r' | '\u{85}'))
            .map(|c| (i + 1, c))
    }) {
        return Err(format!(
            "line {line}: control character U+{:04X}, which YAML does not allow",
            c as u32
        ));
    }
    let docs = {
        let lines = Text::new(&text);
        let ranges = lines.documents()?;
        let mut docs = Vec::with_capacity(ranges.len());
        for range in ranges {
            let first_line = range.start;
            let value: Value =
                yaml_serde::from_str(lines.doc_src(&range)).map_err(|e| match e.location() {
                    Some(loc) => format!("line {}: {e}", first_line + loc.line()),
                    None => e.to_string(),
                })?;
            docs.push((range, value));
        }
        docs
    };
    Ok(ManifestFile { text, docs })
}

/// Every YAML file under `repo` (but `skip`), parsed; a file that is not UTF-8 or not YAML is
/// listed as malformed, not an error.
fn read_files(repo: &Path, skip: &[PathBuf]) -> Result<Scan, GitopsError> {
    let mut paths = Vec::new();
    walk(repo, repo, skip, &mut paths)?;
    let mut found = Scan::default();
    for rel in paths {
        let abs = repo.join(&rel);
        let bytes = fs::read(&abs).map_err(|source| GitopsError::Io {
            path: abs.clone(),
            source,
        })?;
        let Ok(text) = String::from_utf8(bytes) else {
            found.malformed.push(Malformed {
                file: rel,
                message: "not UTF-8 text".into(),
            });
            continue;
        };
        match parse_file(text) {
            Ok(file) => {
                found.files.insert(rel, file);
            }
            Err(message) => found.malformed.push(Malformed { file: rel, message }),
        }
    }
    Ok(found)
}

/// Walks `repo` and reads every manifest and kustomization.
pub(crate) fn scan(repo: &Path, skip: &[PathBuf]) -> Result<Scan, GitopsError> {
    let mut found = read_files(repo, skip)?;
    let kustomize = Kustomize::read(&found.files);
    let deployed = kustomize.namespaces();
    for (rel, file) in &found.files {
        if kustomize.patches.contains(rel) || is_kustomization(rel) {
            continue;
        }
        let text = Text::new(&file.text);
        for (index, (range, value)) in file.docs.iter().enumerate() {
            let (Some(kind), Some(name)) = (
                value.get("kind").and_then(Value::as_str),
                value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str),
            ) else {
                continue;
            };
            let location = Location {
                file: rel.clone(),
                document: index,
                line: range.start + 1 + leading_non_content(&text, range.clone()),
            };
            let api_version = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let has_pod_spec = pod_spec_path(kind)
                .and_then(|path| path.iter().try_fold(value, |v, k| v.get(k)))
                .is_some_and(|spec| spec.get("containers").is_some());
            if !has_pod_spec {
                if pod_spec_path(kind).is_none() && has_containers(value) {
                    found.unknown_kinds.push(UnknownKind {
                        location,
                        api_version,
                        kind: kind.to_string(),
                        name: name.to_string(),
                    });
                }
                continue;
            }
            let own_namespace = value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            let namespaces = match deployed.get(rel) {
                Some(set) => set
                    .iter()
                    .map(|ns| ns.as_deref().unwrap_or(own_namespace).to_string())
                    .collect(),
                None => BTreeSet::from([own_namespace.to_string()]),
            };
            let ignored = ignore_reason(value, &text, range.clone());
            found.candidates.push(Candidate {
                location,
                api_version,
                kind: kind.to_string(),
                name: name.to_string(),
                namespaces,
                ignored,
            });
        }
    }
    Ok(found)
}

fn leading_non_content(text: &Text, range: Range<usize>) -> usize {
    range
        .take_while(|&i| text.lines[i].kind != LineKind::Content)
        .count()
}

fn is_kustomization(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| KUSTOMIZATION_NAMES.contains(&n))
}

fn walk(
    root: &Path,
    dir: &Path,
    skip: &[PathBuf],
    out: &mut Vec<PathBuf>,
) -> Result<(), GitopsError> {
    let io = |source| GitopsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    let is_chart = dir.join("Chart.yaml").is_file();
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if file_type.is_dir() {
            let templates = is_chart && (name == "templates" || name == "charts");
            if name == ".git" || templates || skip.contains(&path) {
                continue;
            }
            walk(root, &path, skip, out)?;
        } else if file_type.is_file()
            && (name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization")
        {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn has_containers(value: &Value) -> bool {
    match value {
        Value::Mapping(m) => m.iter().any(|(k, v)| {
            (k.as_str() == Some("containers") && v.is_sequence()) || has_containers(v)
        }),
        Value::Sequence(s) => s.iter().any(has_containers),
        Value::Tagged(t) => has_containers(&t.value),
        _ => false,
    }
}

fn ignore_reason(value: &Value, text: &Text, range: Range<usize>) -> Option<String> {
    let annotated = |meta: Option<&Value>| {
        meta.and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(IGNORE_ANNOTATION))
            .is_some_and(|v| v.as_str() == Some("true") || v.as_bool() == Some(true))
    };
    if annotated(value.get("metadata")) {
        return Some(format!("annotation {IGNORE_ANNOTATION}: \"true\""));
    }
    let template_meta = value
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"));
    if annotated(template_meta) {
        return Some(format!(
            "pod template annotation {IGNORE_ANNOTATION}: \"true\""
        ));
    }
    range
        .into_iter()
        .find(|&i| has_marker(text.line_str(i)))
        .map(|i| format!("comment marker `# {IGNORE_MARKER}` on line {}", i + 1))
}

/// Whether a line carries the `# rightsizer:ignore` comment marker.
pub(crate) fn has_marker(line: &str) -> bool {
    line.find('#')
        .is_some_and(|i| line[i + 1..].trim_start().starts_with(IGNORE_MARKER))
}

/// Lexically resolves `rel` against `dir` (both relative to the repository);
/// `None` when it leaves the repository or is a remote reference.
fn resolve(dir: &Path, rel: &str) -> Option<PathBuf> {
    if rel.contains("://") || rel.starts_with("github.com/") || rel.starts_with("git@") {
        return None;
    }
    let mut out = PathBuf::new();
    for component in dir.join(rel).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The kustomizations of the checkout.
struct Kustomize {
    /// By directory (relative to the repository).
    by_dir: BTreeMap<PathBuf, Kustomization>,
    /// Files used as patches: edited by overlays, not workloads themselves.
    patches: BTreeSet<PathBuf>,
}

struct Kustomization {
    namespace: Option<String>,
    /// Files and directories listed in `resources`, `bases` and `components`.
    resources: Vec<PathBuf>,
}

impl Kustomize {
    fn read(files: &BTreeMap<PathBuf, ManifestFile>) -> Self {
        let mut by_dir = BTreeMap::new();
        let mut patches = BTreeSet::new();
        for (rel, file) in files {
            if !is_kustomization(rel) {
                continue;
            }
            let Some((_, value)) = file.docs.first() else {
                continue;
            };
            let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let strings = |key: &str| -> Vec<String> {
                match value.get(key) {
                    Some(Value::Sequence(items)) => items
                        .iter()
                        .filter_map(|item| {
                            item.as_str()
                                .or_else(|| item.get("path").and_then(Value::as_str))
                                .map(str::to_string)
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            };
            let resources = ["resources", "bases", "components"]
                .iter()
                .flat_map(|k| strings(k))
                .filter_map(|r| resolve(&dir, &r))
                .collect();
            for key in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
                patches.extend(strings(key).iter().filter_map(|p| resolve(&dir, p)));
            }
            let namespace = value
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            by_dir.insert(
                dir,
                Kustomization {
                    namespace,
                    resources,
                },
            );
        }
        Kustomize { by_dir, patches }
    }

    /// For each file a kustomization includes, the namespaces kustomize gives
    /// it (`None`: kustomize leaves the file's own namespace). The outermost
    /// kustomization that sets `namespace:` wins, as in `kustomize build`.
    fn namespaces(&self) -> BTreeMap<PathBuf, BTreeSet<Option<String>>> {
        let included: BTreeSet<&PathBuf> = self
            .by_dir
            .values()
            .flat_map(|k| k.resources.iter())
            .filter(|p| self.by_dir.contains_key(*p))
            .collect();
        let mut out = BTreeMap::new();
        for dir in self.by_dir.keys().filter(|d| !included.contains(d)) {
            self.visit(dir, None, &mut Vec::new(), &mut out);
        }
        out
    }

    fn visit(
        &self,
        dir: &PathBuf,
        inherited: Option<&String>,
        stack: &mut Vec<PathBuf>,
        out: &mut BTreeMap<PathBuf, BTreeSet<Option<String>>>,
    ) {
        if stack.contains(dir) {
            return;
        }
        let Some(k) = self.by_dir.get(dir) else {
            return;
        };
        let namespace = inherited.or(k.namespace.as_ref());
        stack.push(dir.clone());
        for resource in &k.resources {
            if self.by_dir.contains_key(resource) {
                self.visit(resource, namespace, stack, out);
            } else {
                out.entry(resource.clone())
                    .or_default()
                    .insert(namespace.cloned());
            }
        }
        stack.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_inside_the_repo() {
        assert_eq!(
            resolve(Path::new("overlays/prod"), "../../base"),
            Some(PathBuf::from("base"))
        );
        assert_eq!(resolve(Path::new("a"), "../../x"), None);
        assert_eq!(resolve(Path::new(""), "https://github.com/x/y"), None);
    }

    #[test]
    fn control_characters_anywhere_make_a_file_malformed() {
        // Found by the yaml_edit fuzz target: a DEL and a NUL in a comment before the first
        // `---`, outside every document the parser reads.
        let src = "# edited by hand\u{7f}\u{0}\n---\napiVersion: v1\nkind: ConfigMap\n";
        let err = parse_file(src.into()).err().expect("refused");
        assert_eq!(
            err,
            "line 1: control character U+007F, which YAML does not allow"
        );
        assert!(parse_file("a: \"tab\there\"\r\nb: 1\n".into()).is_ok());
    }

    #[test]
    fn finds_markers_only_in_comments() {
        assert!(has_marker("  # rightsizer:ignore"));
        assert!(has_marker("kind: Deployment  #rightsizer:ignore because"));
        assert!(!has_marker("name: rightsizer:ignore"));
    }
}
