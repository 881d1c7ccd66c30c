//! Patches that apply a workload's recommendations: a strategic-merge patch for
//! `kubectl patch`, a kustomize patch file, an RFC 6902 JSON patch, or the bare
//! `resources` blocks. Only proposals (`ok`) are included.

use std::fmt::Write;

use serde_json::json;

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

/// Path from the object to its pod spec's containers list.
fn containers_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

fn resources_yaml(out: &mut String, r: &Resources, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}resources:");
    for (name, cpu, mem) in [
        ("requests", r.cpu_request_millicores, r.memory_request_bytes),
        ("limits", r.cpu_limit_millicores, r.memory_limit_bytes),
    ] {
        if cpu.is_none() && mem.is_none() {
            continue;
        }
        let _ = writeln!(out, "{pad}  {name}:");
        if let Some(c) = cpu {
            let _ = writeln!(out, "{pad}    cpu: {}", quantity::cpu(c));
        }
        if let Some(m) = mem {
            let _ = writeln!(out, "{pad}    memory: {}", quantity::memory(m));
        }
    }
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

/// `s` as a YAML scalar: plain when it is a Kubernetes-style name, else
/// double-quoted (a JSON string is a valid YAML one), so a label value can't
/// add keys or break the document.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && s.chars().any(|c| c.is_ascii_alphabetic());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
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
                let _ = writeln!(
                    out,
                    "apiVersion: {}\nkind: {}",
                    api_version(&workload.kind),
                    scalar(&workload.kind)
                );
                let _ = writeln!(
                    out,
                    "metadata:\n  name: {}\n  namespace: {}",
                    scalar(&workload.name),
                    scalar(&workload.namespace)
                );
            }
            let path = containers_path(&workload.kind);
            for (depth, key) in path.iter().enumerate() {
                let _ = writeln!(out, "{}{key}:", "  ".repeat(depth));
            }
            let pad = "  ".repeat(path.len());
            let _ = writeln!(out, "{pad}containers:");
            for r in &proposals {
                let _ = writeln!(out, "{pad}- name: {}", scalar(&r.key.container));
                resources_yaml(&mut out, &r.recommended, pad.len() + 2);
            }
        }
        PatchFormat::Yaml => {
            for r in &proposals {
                let _ = writeln!(
                    out,
                    "# {} container {}",
                    comment(&label(workload)),
                    comment(&r.key.container)
                );
                let _ = writeln!(out, "- name: {}", scalar(&r.key.container));
                resources_yaml(&mut out, &r.recommended, 2);
            }
        }
        PatchFormat::JsonPatch => {
            let order =
                container_order.ok_or_else(|| PatchError::NeedsContainerOrder(label(workload)))?;
            let base: String = containers_path(&workload.kind)
                .iter()
                .map(|k| format!("/{k}"))
                .collect();
            let mut ops = Vec::new();
            for r in &proposals {
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
            out = serde_json::to_string_pretty(&ops).expect("JSON values always serialize");
            out.push('\n');
        }
    }
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
    fn strategic_merge_for_a_deployment() {
        let recs = [
            rec("Deployment", "app", Status::Ok),
            rec("Deployment", "envoy", Status::NoChange),
        ];
        let patch = render(PatchFormat::StrategicMerge, &w("Deployment"), &recs, None).unwrap();
        assert_eq!(
            patch,
            "# kubectl patch deployment api -n shop --type strategic --patch-file patch.yaml\n\
             spec:\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          requests:\n            cpu: 250m\n            memory: 512Mi\n          limits:\n            cpu: 1\n            memory: 512Mi\n"
        );
        let parsed: yaml_serde::Value = yaml_serde::from_str(&patch).unwrap();
        assert_eq!(
            parsed["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            yaml_serde::Value::from(1)
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
