//! Patches that apply a workload's recommendations: a strategic-merge patch for
//! `kubectl patch`, a kustomize patch file, an RFC 6902 JSON patch, or the bare
//! `resources` blocks. Only proposals (`ok`) are included.

use std::fmt::Write;

use serde_json::json;
use yaml_serde::{Mapping, Value};

use crate::model::{Recommendation, Resources, Status, WorkloadKey};
use crate::quantity;

/// The formats `/api/v1/workloads/…/patch?format=` and the dashboard offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFormat {
    /// YAML for `kubectl patch --type strategic`.
    StrategicMerge,
    /// RFC 6902 operations for `kubectl patch --type json` (needs container positions).
    JsonPatch,
    /// A kustomize patch file (full object header) and its `patches:` entry.
    Kustomize,
    /// The `resources` block of each container.
    Yaml,
}

impl PatchFormat {
    /// Parses the `format` parameter.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strategic-merge" => Some(PatchFormat::StrategicMerge),
            "json-patch" => Some(PatchFormat::JsonPatch),
            "kustomize" => Some(PatchFormat::Kustomize),
            "yaml" => Some(PatchFormat::Yaml),
            _ => None,
        }
    }

    /// The values [`PatchFormat::parse`] accepts.
    pub const NAMES: &'static str = "strategic-merge, json-patch, kustomize, yaml";

    /// Content type of the rendered patch.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchFormat::JsonPatch => "application/json-patch+json",
            _ => "application/yaml",
        }
    }
}

/// Why no patch could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Nothing to change: every container is within the minimum change or lacks data.
    #[error(
        "no change proposed for {0}: every container is within the minimum change or lacks data"
    )]
    NothingToChange(String),
    /// JSON patches address containers by position, which only the Kubernetes API source knows.
    #[error("a json-patch addresses containers by position, which is unknown for {0}; use strategic-merge")]
    NeedsContainerOrder(String),
}

/// `apiVersion` of a workload kind.
pub fn api_version(kind: &str) -> &'static str {
    match kind {
        "Job" | "CronJob" => "batch/v1",
        "Pod" => "v1",
        "Rollout" => "argoproj.io/v1alpha1",
        _ => "apps/v1",
    }
}

/// Where the pod spec sits in each workload kind rightsizer sizes: the one table the
/// patches, the manifest scanner and the in-place editor all read. `None` for other kinds.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "Rollout" => {
            Some(&["spec", "template", "spec"])
        }
        _ => None,
    }
}

/// The pod spec of a kind outside [`pod_spec_path`]'s table: where custom workloads built
/// like a Deployment keep it.
pub const DEFAULT_POD_SPEC_PATH: &[&str] = &["spec", "template", "spec"];

/// The set fields of `r` as `(section, resource, quantity)`: requests then limits, CPU then
/// memory, quantities the Kubernetes way (`250m`, `512Mi`).
pub fn resource_fields(r: &Resources) -> Vec<(&'static str, &'static str, String)> {
    [
        (
            "requests",
            "cpu",
            r.cpu_request_millicores.map(quantity::cpu),
        ),
        (
            "requests",
            "memory",
            r.memory_request_bytes.map(quantity::memory),
        ),
        ("limits", "cpu", r.cpu_limit_millicores.map(quantity::cpu)),
        (
            "limits",
            "memory",
            r.memory_limit_bytes.map(quantity::memory),
        ),
    ]
    .into_iter()
    .filter_map(|(section, name, text)| Some((section, name, text?)))
    .collect()
}

/// One container of a strategic-merge patch.
pub struct ContainerPatch<'a> {
    /// `containers` or `initContainers`.
    pub list: &'a str,
    /// Container name.
    pub name: &'a str,
    /// What to set; unset fields are left out.
    pub resources: &'a Resources,
}

/// The object a kustomize patch file names: `(apiVersion, kind, name, namespace)`.
pub type PatchTarget<'a> = (&'a str, &'a str, &'a str, &'a str);

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

/// The `resources` block of a container as YAML data.
fn resources_value(r: &Resources) -> Value {
    let mut sections = Mapping::new();
    for (section, name, text) in resource_fields(r) {
        let entry = sections
            .entry(key(section))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if let Value::Mapping(m) = entry {
            m.insert(key(name), Value::String(text));
        }
    }
    Value::Mapping(sections)
}

/// `name` and `resources` of one container.
fn container_value(name: &str, r: &Resources) -> Value {
    let mut m = Mapping::new();
    m.insert(key("name"), key(name));
    m.insert(key("resources"), resources_value(r));
    Value::Mapping(m)
}

/// A strategic-merge patch of `containers` of a `kind`, as YAML written by serde, so every
/// name and quantity is quoted exactly where YAML needs it (a container named `null`, `on`
/// or `1e3` stays a string). With `target`, the object header of a kustomize patch file.
pub fn strategic_merge_yaml(
    kind: &str,
    target: Option<PatchTarget<'_>>,
    containers: &[ContainerPatch<'_>],
) -> String {
    let mut lists = Mapping::new();
    for list in ["containers", "initContainers"] {
        let items: Vec<Value> = containers
            .iter()
            .filter(|c| c.list == list)
            .map(|c| container_value(c.name, c.resources))
            .collect();
        if !items.is_empty() {
            lists.insert(key(list), Value::Sequence(items));
        }
    }
    let mut body = Value::Mapping(lists);
    let path = pod_spec_path(kind).unwrap_or(DEFAULT_POD_SPEC_PATH);
    for k in path.iter().rev() {
        let mut m = Mapping::new();
        m.insert(key(k), body);
        body = Value::Mapping(m);
    }
    if let Some((api_version, kind, name, namespace)) = target {
        let mut object = Mapping::new();
        object.insert(key("apiVersion"), key(api_version));
        object.insert(key("kind"), key(kind));
        let mut metadata = Mapping::new();
        metadata.insert(key("name"), key(name));
        metadata.insert(key("namespace"), key(namespace));
        object.insert(key("metadata"), Value::Mapping(metadata));
        if let Value::Mapping(spec) = body {
            object.extend(spec);
        }
        body = Value::Mapping(object);
    }
    yaml_serde::to_string(&body).expect("YAML values of strings always serialize")
}

/// Longest file stem [`file_stem`] makes: room for an extension within the
/// 255 bytes most file systems allow (a Kubernetes name alone may take 253).
const MAX_STEM_BYTES: usize = 200;

/// A file name stem from `parts` (namespace, kind, name) joined by `-`: ASCII
/// letters, digits, `-`, `_` and `.` kept, anything else (`/`, control
/// characters, spaces) as `_`, no `..`, no leading `-` or `.`, at most 200
/// bytes. Real Kubernetes names come through unchanged.
pub fn file_stem(parts: &[&str]) -> String {
    let mut out = String::new();
    for c in parts.join("-").chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let c = match c {
            '.' if out.ends_with('.') => '_',
            '-' | '.' if out.is_empty() => '_',
            c if keep => c,
            _ => '_',
        };
        if out.len() == MAX_STEM_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// `s` for a `#` comment line: control characters (a newline would end the
/// comment) as `?`.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn label(w: &WorkloadKey) -> String {
    format!("{}/{}/{}", w.namespace, w.kind, w.name)
}

/// Renders the patch of `workload` from its containers' recommendations. `container_order`
/// (names in pod-spec order) is needed for JSON patches only.
pub fn render(
    format: PatchFormat,
    workload: &WorkloadKey,
    recs: &[Recommendation],
    container_order: Option<&[String]>,
) -> Result<String, PatchError> {
    let proposals: Vec<&Recommendation> = recs.iter().filter(|r| r.status == Status::Ok).collect();
    if proposals.is_empty() {
        return Err(PatchError::NothingToChange(label(workload)));
    }
    let kind_lower = workload.kind.to_lowercase();
    let mut out = String::new();
    match format {
        PatchFormat::StrategicMerge | PatchFormat::Kustomize => {
            if format == PatchFormat::StrategicMerge {
                let _ = writeln!(
                    out,
                    "# kubectl patch {} {} -n {} --type strategic --patch-file patch.yaml",
                    comment(&kind_lower),
                    comment(&workload.name),
                    comment(&workload.namespace)
                );
            } else {
                let _ = writeln!(
                    out,
                    "# kustomization.yaml:\n#   patches:\n#     - path: {}-resources.yaml",
                    file_stem(&[&kind_lower, &workload.name])
                );
            }
            let containers: Vec<ContainerPatch<'_>> = proposals
                .iter()
                .map(|r| ContainerPatch {
                    list: "containers",
                    name: &r.key.container,
                    resources: &r.recommended,
                })
                .collect();
            let target = (format == PatchFormat::Kustomize).then_some((
                api_version(&workload.kind),
                workload.kind.as_str(),
                workload.name.as_str(),
                workload.namespace.as_str(),
            ));
            out.push_str(&strategic_merge_yaml(&workload.kind, target, &containers));
        }
        PatchFormat::Yaml => {
            for r in &proposals {
                let _ = writeln!(
                    out,
                    "# {} container {}",
                    comment(&label(workload)),
                    comment(&r.key.container)
                );
                let item = Value::Sequence(vec![container_value(&r.key.container, &r.recommended)]);
                out.push_str(&yaml_serde::to_string(&item).expect("YAML values always serialize"));
            }
        }
        PatchFormat::JsonPatch => out = json_patch(workload, &proposals, container_order)?,
    }
    Ok(out)
}

/// A JSON Patch (RFC 6902) adding each container's resources by its index in
/// `container_order` (the order of the workload's containers, which JSON Patch paths need).
fn json_patch(
    workload: &WorkloadKey,
    proposals: &[&Recommendation],
    container_order: Option<&[String]>,
) -> Result<String, PatchError> {
    let order = container_order.ok_or_else(|| PatchError::NeedsContainerOrder(label(workload)))?;
    let base: String = pod_spec_path(&workload.kind)
        .unwrap_or(DEFAULT_POD_SPEC_PATH)
        .iter()
        .map(|k| format!("/{k}"))
        .collect();
    let mut ops = Vec::new();
    for r in proposals {
        let index = order
            .iter()
            .position(|c| *c == r.key.container)
            .ok_or_else(|| PatchError::NeedsContainerOrder(label(workload)))?;
        let n = &r.recommended;
        let mut value = json!({});
        for (name, cpu, mem) in [
            ("requests", n.cpu_request_millicores, n.memory_request_bytes),
            ("limits", n.cpu_limit_millicores, n.memory_limit_bytes),
        ] {
            let mut section = serde_json::Map::new();
            if let Some(c) = cpu {
                section.insert("cpu".into(), json!(quantity::cpu(c)));
            }
            if let Some(m) = mem {
                section.insert("memory".into(), json!(quantity::memory(m)));
            }
            if !section.is_empty() {
                value[name] = serde_json::Value::Object(section);
            }
        }
        ops.push(json!({"op": "add", "path": format!("{base}/containers/{index}/resources"), "value": value}));
    }
    let mut out = serde_json::to_string_pretty(&ops).expect("JSON values always serialize");
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Confidence, ContainerKey, Evidence, Severity};

    fn rec(kind: &str, container: &str, status: Status) -> Recommendation {
        Recommendation {
            key: ContainerKey {
                cluster: "c".into(),
                namespace: "shop".into(),
                kind: kind.into(),
                workload: "api".into(),
                container: container.into(),
            },
            status,
            current: Resources::default(),
            recommended: Resources {
                cpu_request_millicores: Some(250),
                cpu_limit_millicores: Some(1000),
                memory_request_bytes: Some(512 << 20),
                memory_limit_bytes: Some(512 << 20),
            },
            confidence: Confidence::High,
            confidence_score: 1.0,
            reason: String::new(),
            strategy: "guidance".into(),
            evidence: Evidence::default(),
            computed_at: 0,
            severity: Severity::Info,
            findings: vec![],
            backtest: None,
            impact: None,
            hpa: None,
        }
    }

    fn w(kind: &str) -> WorkloadKey {
        WorkloadKey {
            cluster: "c".into(),
            namespace: "shop".into(),
            kind: kind.into(),
            name: "api".into(),
        }
    }

    #[test]
    fn names_yaml_would_read_as_other_types_stay_strings() {
        for name in ["null", "on", "true", "1e3", "0x1F", "~"] {
            let recs = [rec("Deployment", name, Status::Ok)];
            for format in [PatchFormat::StrategicMerge, PatchFormat::Kustomize] {
                let patch = render(format, &w("Deployment"), &recs, None).unwrap();
                let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
                assert_eq!(
                    parsed["spec"]["template"]["spec"]["containers"][0]["name"],
                    yaml_serde::Value::from(name),
                    "{patch}"
                );
            }
        }
    }

    #[test]
    fn strategic_merge_for_a_deployment() {
        let recs = [
            rec("Deployment", "app", Status::Ok),
            rec("Deployment", "envoy", Status::NoChange),
        ];
        let patch = render(PatchFormat::StrategicMerge, &w("Deployment"), &recs, None).unwrap();
        assert_eq!(
            patch,
            "# kubectl patch deployment api -n shop --type strategic --patch-file patch.yaml\n\
             spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          requests:\n            cpu: 250m\n            memory: 512Mi\n          limits:\n            cpu: '1'\n            memory: 512Mi\n"
        );
        let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
        assert_eq!(
            parsed["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            yaml_serde::Value::from("1")
        );
    }

    #[test]
    fn kustomize_for_a_cronjob_and_json_patch() {
        let recs = [rec("CronJob", "job", Status::Ok)];
        let patch = render(PatchFormat::Kustomize, &w("CronJob"), &recs, None).unwrap();
        let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
        assert_eq!(parsed["apiVersion"], yaml_serde::Value::from("batch/v1"));
        assert_eq!(
            parsed["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"],
            yaml_serde::Value::from("job")
        );
        assert_eq!(
            render(PatchFormat::JsonPatch, &w("CronJob"), &recs, None).unwrap_err().to_string(),
            "a json-patch addresses containers by position, which is unknown for shop/CronJob/api; use strategic-merge"
        );
        let order = vec!["sidecar".to_string(), "job".to_string()];
        let json: serde_json::Value = serde_json::from_str(
            &render(PatchFormat::JsonPatch, &w("CronJob"), &recs, Some(&order)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            json[0]["path"],
            "/spec/jobTemplate/spec/template/spec/containers/1/resources"
        );
        assert_eq!(json[0]["value"]["requests"]["memory"], "512Mi");
    }

    #[test]
    fn file_stems_are_plain_file_names() {
        assert_eq!(
            file_stem(&["shop", "deployment", "api"]),
            "shop-deployment-api"
        );
        assert_eq!(
            file_stem(&["kube-system", "daemonset", "node-exporter.v2"]),
            "kube-system-daemonset-node-exporter.v2"
        );
        for (parts, want) in [
            (["../..", "x", "etc/passwd"], "_._._-x-etc_passwd"),
            (["-rf", "a", "b"], "_rf-a-b"),
            ([".hidden", "a", "b"], "_hidden-a-b"),
            (["a\nb", "c\u{7}", "d e"], "a_b-c_-d_e"),
            (["naïve", "k", "n"], "na_ve-k-n"),
        ] {
            let stem = file_stem(&parts);
            assert_eq!(stem, want, "{parts:?}");
            assert!(!stem.contains("..") && !stem.contains('/'));
        }
        let long = "a".repeat(253);
        assert_eq!(
            file_stem(&["ns", "deployment", &long]).len(),
            MAX_STEM_BYTES
        );
        assert_eq!(file_stem(&[]), "_");
    }

    #[test]
    fn hostile_names_stay_inside_their_yaml_scalars() {
        let mut r = rec("Deployment", "app\n  evil: true", Status::Ok);
        r.key.workload = "api\nkind: Secret".into();
        let mut key = w("Deployment");
        key.name = r.key.workload.clone();
        for format in [
            PatchFormat::Kustomize,
            PatchFormat::StrategicMerge,
            PatchFormat::Yaml,
        ] {
            let patch = render(format, &key, std::slice::from_ref(&r), None).unwrap();
            let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
            assert!(!patch.contains("\nkind: Secret"), "{patch}");
            if format == PatchFormat::Kustomize {
                assert_eq!(
                    parsed["metadata"]["name"],
                    yaml_serde::Value::from("api\nkind: Secret")
                );
                assert_eq!(parsed["kind"], yaml_serde::Value::from("Deployment"));
            }
        }
    }

    #[test]
    fn nothing_to_change() {
        let recs = [rec("Deployment", "app", Status::NoChange)];
        assert!(matches!(
            render(PatchFormat::Yaml, &w("Deployment"), &recs, None),
            Err(PatchError::NothingToChange(_))
        ));
    }
}
