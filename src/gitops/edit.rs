//! In-place edits of a `resources` block: the four quantities change (or are
//! added, with the surrounding indentation); every other byte stays. Each
//! edit is verified by parsing the result: the document must equal the
//! original with only those quantities replaced, or the edit is refused.

use std::ops::Range;

use yaml_serde::{Mapping, Value};

use super::units::scalar_text;
use super::yaml::{apply_splices, plain_is_string, Entry, Inline, MapSpan, Splice, Text};
use crate::model::Resources;
use crate::quantity;
use crate::quantity::{parse_cpu_millicores, parse_memory_bytes};

/// One quantity to write: `requests`/`limits`, `cpu`/`memory`, the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    section: &'static str,
    name: &'static str,
    value: i64,
}

impl Field {
    /// `requests` or `limits`.
    pub(crate) fn section(self) -> &'static str {
        self.section
    }

    /// `cpu` or `memory`.
    pub(crate) fn name(self) -> &'static str {
        self.name
    }

    /// The quantity the Kubernetes way (`250m`, `512Mi`).
    pub(crate) fn text(self) -> String {
        match self.name {
            "cpu" => quantity::cpu(self.value),
            _ => quantity::memory(self.value),
        }
    }

    fn parse(self, s: &str) -> Option<i64> {
        match self.name {
            "cpu" => parse_cpu_millicores(s).ok(),
            _ => parse_memory_bytes(s).ok(),
        }
    }

    /// The value in the canonical form verification compares.
    fn canonical(self) -> Value {
        Value::String(format!("{}:{}", self.name, self.value))
    }
}

/// The quantities of `target` that are set, in writing order.
pub(crate) fn fields(target: &Resources) -> Vec<Field> {
    [
        ("requests", "cpu", target.cpu_request_millicores),
        ("requests", "memory", target.memory_request_bytes),
        ("limits", "cpu", target.cpu_limit_millicores),
        ("limits", "memory", target.memory_limit_bytes),
    ]
    .into_iter()
    .filter_map(|(section, name, value)| {
        value.map(|value| Field {
            section,
            name,
            value,
        })
    })
    .collect()
}

fn quoted(text: &str, quote: Option<char>) -> String {
    match quote {
        Some(q) => format!("{q}{text}{q}"),
        None => text.to_string(),
    }
}

/// Builds the splices that set `target` in the `key` entry (normally
/// `resources`) of the block mapping `parent`. `Err` says why the block
/// can't be edited safely.
pub(crate) fn resources_splices(
    text: &Text,
    parent: MapSpan,
    key: &str,
    target: &Resources,
    step: usize,
) -> Result<Vec<Splice>, String> {
    let wanted = fields(target);
    let mut out = Vec::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let Some(entry) = text.entry(parent, key) else {
        let last = text
            .last_node(parent.first..parent.to)
            .ok_or("empty container")?;
        let mut lines = vec![format!("{}{key}:", " ".repeat(parent.col))];
        lines.extend(render_sections(
            &Mapping::new(),
            &wanted,
            parent.col + step,
            step,
            None,
        )?);
        out.push(insert_after(text, last, &lines));
        return Ok(out);
    };
    match text.child_map(&entry) {
        Some(map) => edit_sections(text, &entry, map, &wanted, step, &mut out)?,
        None => {
            let existing = replace_inline(text, &entry, &mut out)?;
            let lines = render_sections(&existing, &wanted, parent.col + step, step, None)?;
            out.push(insert_after(text, entry.line, &lines));
        }
    }
    Ok(out)
}

/// For a key whose value is written inline (`{}`, a flow mapping, `null`) or
/// missing: removes the inline text (keeping a trailing comment) and returns
/// the mapping it held, to be re-written as a block.
fn replace_inline(text: &Text, entry: &Entry, out: &mut Vec<Splice>) -> Result<Mapping, String> {
    let what = format!("`{}` on line {}", entry.key, entry.line + 1);
    if text.last_node(entry.body.clone()).is_some() {
        return Err(format!("{what} is not a block mapping"));
    }
    let range = match &entry.value {
        Inline::Empty => return Ok(Mapping::new()),
        Inline::Scalar {
            range,
            quote: None,
            text,
        } if matches!(text.as_str(), "null" | "~" | "Null" | "NULL") => range.clone(),
        Inline::Flow { range } => range.clone(),
        _ => return Err(format!("{what} is not a mapping")),
    };
    let mapping = match yaml_serde::from_str::<Value>(&text.src[range.clone()]) {
        Ok(Value::Mapping(m)) => m,
        Ok(Value::Null) => Mapping::new(),
        _ => return Err(format!("{what} is not a mapping")),
    };
    // `key: {} # note` becomes `key: # note`; `key: {}` becomes `key:`.
    let line_end = text.lines[entry.line].end;
    let tail = &text.src[range.end..line_end];
    let splice = if tail.trim().is_empty() {
        let start = text.src[..range.start].trim_end_matches([' ', '\t']).len();
        Splice {
            start,
            end: line_end,
            text: String::new(),
        }
    } else {
        let spaces = tail.len() - tail.trim_start_matches([' ', '\t']).len();
        Splice {
            start: range.start,
            end: range.end + spaces,
            text: String::new(),
        }
    };
    out.push(splice);
    Ok(mapping)
}

fn edit_sections(
    text: &Text,
    resources: &Entry,
    map: MapSpan,
    wanted: &[Field],
    step: usize,
    out: &mut Vec<Splice>,
) -> Result<(), String> {
    let entries = text.entries(map);
    let inner_step = entries
        .iter()
        .find_map(|e| text.child_map(e))
        .map(|m| m.col - map.col)
        .unwrap_or(step);
    let sibling_quote = entries
        .iter()
        .filter_map(|e| text.child_map(e))
        .flat_map(|m| text.entries(m))
        .find_map(|e| match e.value {
            Inline::Scalar { quote, .. } => Some(quote),
            _ => None,
        })
        .flatten();
    for section in ["requests", "limits"] {
        let section_fields: Vec<Field> = wanted
            .iter()
            .copied()
            .filter(|f| f.section == section)
            .collect();
        if section_fields.is_empty() {
            continue;
        }
        let Some(entry) = entries.iter().find(|e| e.key == section) else {
            // A new section: requests go before limits, limits at the end.
            let before = entries
                .iter()
                .find(|e| section == "requests" && e.key == "limits")
                .map(|e| e.line)
                .unwrap_or(map.to);
            let last = text
                .last_node(resources.line..before)
                .ok_or("empty resources block")?;
            let mut lines = vec![format!("{}{section}:", " ".repeat(map.col))];
            let only: Vec<Field> = section_fields.clone();
            lines.extend(render_fields(
                &Mapping::new(),
                &only,
                map.col + inner_step,
                sibling_quote,
            )?);
            out.push(insert_after(text, last, &lines));
            continue;
        };
        match text.child_map(entry) {
            Some(fields_map) => {
                edit_fields(text, entry, fields_map, &section_fields, sibling_quote, out)?
            }
            None => {
                let existing = replace_inline(text, entry, out)?;
                let lines = render_fields(
                    &existing,
                    &section_fields,
                    map.col + inner_step,
                    sibling_quote,
                )?;
                out.push(insert_after(text, entry.line, &lines));
            }
        }
    }
    Ok(())
}

fn edit_fields(
    text: &Text,
    section: &Entry,
    map: MapSpan,
    wanted: &[Field],
    sibling_quote: Option<char>,
    out: &mut Vec<Splice>,
) -> Result<(), String> {
    let entries = text.entries(map);
    let quote = entries
        .iter()
        .find_map(|e| match e.value {
            Inline::Scalar { quote, .. } => Some(quote),
            _ => None,
        })
        .unwrap_or(sibling_quote);
    for field in wanted {
        match entries.iter().find(|e| e.key == field.name) {
            Some(entry) => match &entry.value {
                Inline::Scalar {
                    range,
                    quote,
                    text: old,
                } if text.last_node(entry.body.clone()).is_none() => {
                    if field.parse(old) != Some(field.value) {
                        out.push(Splice {
                            start: range.start,
                            end: range.end,
                            text: quoted(&field.text(), *quote),
                        });
                    }
                }
                _ => {
                    return Err(format!(
                        "`{}` on line {} is not a single-line scalar",
                        field.name,
                        entry.line + 1
                    ))
                }
            },
            None => {
                // cpu goes before memory when memory is there; otherwise last.
                let before = entries
                    .iter()
                    .find(|e| field.name == "cpu" && e.key == "memory")
                    .map(|e| e.line)
                    .unwrap_or(map.to);
                let last = text
                    .last_node(section.line..before)
                    .ok_or("empty section")?;
                let line = format!(
                    "{}{}: {}",
                    " ".repeat(map.col),
                    field.name,
                    quoted(&field.text(), quote)
                );
                out.push(insert_after(text, last, &[line]));
            }
        }
    }
    Ok(())
}

/// `requests:`/`limits:` blocks for `wanted`, keeping what `existing` (a
/// flow mapping being rewritten) held.
fn render_sections(
    existing: &Mapping,
    wanted: &[Field],
    col: usize,
    step: usize,
    quote: Option<char>,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut keys: Vec<String> = vec!["requests".into(), "limits".into()];
    for k in existing.keys() {
        let k = k.as_str().ok_or("non-string key in resources")?;
        if !keys.iter().any(|x| x == k) {
            keys.push(k.to_string());
        }
    }
    for key in keys {
        let section_fields: Vec<Field> = wanted
            .iter()
            .copied()
            .filter(|f| f.section == key)
            .collect();
        let held = match existing.get(key.as_str()) {
            Some(Value::Mapping(m)) => m.clone(),
            Some(Value::Null) | None => Mapping::new(),
            Some(_) => return Err(format!("resources.{key} is not a mapping")),
        };
        if section_fields.is_empty() && held.is_empty() {
            continue;
        }
        lines.push(format!("{}{key}:", " ".repeat(col)));
        lines.extend(render_fields(&held, &section_fields, col + step, quote)?);
    }
    Ok(lines)
}

/// `cpu:`/`memory:` lines (and whatever else `existing` held) at `col`.
fn render_fields(
    existing: &Mapping,
    wanted: &[Field],
    col: usize,
    quote: Option<char>,
) -> Result<Vec<String>, String> {
    let pad = " ".repeat(col);
    let mut lines = Vec::new();
    let mut done = Vec::new();
    for name in ["cpu", "memory"] {
        if let Some(field) = wanted.iter().find(|f| f.name == name) {
            lines.push(format!("{pad}{name}: {}", quoted(&field.text(), quote)));
            done.push(name);
        }
    }
    for (k, v) in existing {
        let k = k.as_str().ok_or("non-string key in resources")?;
        if done.contains(&k) {
            continue;
        }
        lines.push(format!("{pad}{k}: {}", scalar_yaml(v)?));
    }
    Ok(lines)
}

/// A scalar as YAML that reads back to the same value.
fn scalar_yaml(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if plain_is_string(s) => Ok(s.clone()),
        Value::String(s) => serde_json::to_string(s).map_err(|e| e.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err("nested value in a flow-style resources block".into()),
    }
}

fn insert_after(text: &Text, line: usize, lines: &[String]) -> Splice {
    let (pos, lead) = text.after_line(line);
    let nl = text.newline;
    let mut s = String::new();
    for l in lines {
        if lead {
            s.push_str(nl);
        }
        s.push_str(l);
        if !lead {
            s.push_str(nl);
        }
    }
    Splice {
        start: pos,
        end: pos,
        text: s,
    }
}

/// One step on the way to a value: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

fn node_mut<'v>(mut v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get_mut(k.as_str())?,
            Seg::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

/// Checks an edited document: equal to `old` once the quantities of
/// `target` at the `resources` value found at `path` are set, comparing
/// quantities by value.
pub(crate) fn verify(
    old: &Value,
    new: &Value,
    path: &[Seg],
    target: &Resources,
) -> Result<(), String> {
    let mut expected = old.clone();
    let mut actual = new.clone();
    let wanted = fields(target);
    {
        let (Some(Seg::Key(key)), parent_path) =
            (path.last(), &path[..path.len().saturating_sub(1)])
        else {
            return Err("resources path must end with a key".into());
        };
        let slot = node_mut(&mut expected, parent_path)
            .and_then(Value::as_mapping_mut)
            .ok_or("resources path vanished")?
            .entry(Value::String(key.clone()))
            .or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Mapping(Mapping::new());
        }
        for f in &wanted {
            let map = slot.as_mapping_mut().ok_or("resources is not a mapping")?;
            let section = map
                .entry(Value::String(f.section.into()))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if section.is_null() {
                *section = Value::Mapping(Mapping::new());
            }
            let section = section.as_mapping_mut().ok_or("section is not a mapping")?;
            section.insert(Value::String(f.name.into()), f.canonical());
        }
    }
    {
        let slot = node_mut(&mut actual, path).ok_or("resources missing after the edit")?;
        for f in &wanted {
            let leaf = slot
                .get_mut(f.section)
                .and_then(|s| s.get_mut(f.name))
                .ok_or_else(|| format!("{}.{} missing after the edit", f.section, f.name))?;
            let value = scalar_text(leaf).and_then(|s| f.parse(&s));
            if value != Some(f.value) {
                return Err(format!("{}.{} reads back as {leaf:?}", f.section, f.name));
            }
            *leaf = f.canonical();
        }
    }
    if expected == actual {
        Ok(())
    } else {
        Err("the edit changed more than the resources block".into())
    }
}

/// Edits one document of `src` (the `doc`-th) and verifies the result.
/// `locate` finds the parent mapping of the `key` entry; `path` leads to that
/// entry's value in the parsed document. Returns the new file text, or the
/// unchanged text when the values were already there.
pub(crate) fn edit_document(
    src: &str,
    doc: usize,
    locate: impl Fn(&Text, MapSpan) -> Result<MapSpan, String>,
    key: &str,
    path: &[Seg],
    target: &Resources,
) -> Result<String, String> {
    let text = Text::new(src);
    let docs = text.documents()?;
    let range: Range<usize> = docs.get(doc).cloned().ok_or("document vanished")?;
    let top = text.top_map(&range).ok_or("document is not a mapping")?;
    let parent = locate(&text, top)?;
    let step = {
        let local = text.indent_step(parent.first..parent.to);
        let has_nested = text
            .entries(parent)
            .iter()
            .any(|e| text.child_map(e).is_some());
        if has_nested {
            local
        } else {
            text.indent_step(range.clone())
        }
    };
    let splices = resources_splices(&text, parent, key, target, step)?;
    if splices.is_empty() {
        return Ok(src.to_string());
    }
    let new_src = apply_splices(src, &splices);
    let old_value: Value = yaml_serde::from_str(text.doc_src(&range)).map_err(|e| e.to_string())?;
    let new_text = Text::new(&new_src);
    let new_docs = new_text.documents()?;
    if new_docs.len() != docs.len() {
        return Err("the edit changed the document structure".into());
    }
    let new_value: Value = yaml_serde::from_str(new_text.doc_src(&new_docs[doc]))
        .map_err(|e| format!("the edit broke the YAML: {e}"))?;
    let mut full_path = path.to_vec();
    full_path.push(Seg::Key(key.to_string()));
    verify(&old_value, &new_value, &full_path, target)?;
    Ok(new_src)
}

/// Finds the mapping of container `name` in the list at `pod_spec` + `list`.
pub(crate) fn container_map(
    text: &Text,
    top: MapSpan,
    pod_spec: &[&str],
    list: &str,
    name: &str,
) -> Result<MapSpan, String> {
    let mut path: Vec<&str> = pod_spec.to_vec();
    path.push(list);
    let entry = text
        .find_path(top, &path)
        .ok_or_else(|| format!("{} not found as a block", path.join(".")))?;
    if matches!(entry.value, Inline::Flow { .. }) {
        return Err(format!("{list} is written in flow style"));
    }
    text.items(&entry)
        .into_iter()
        .find(|item| {
            matches!(text.entry(*item, "name").map(|e| e.value),
                Some(Inline::Scalar { text, .. }) if text == name)
        })
        .ok_or_else(|| format!("container {name} not found as a block mapping"))
}

/// Finds the mapping that holds the last key of a dotted values path.
pub(crate) fn values_parent(text: &Text, top: MapSpan, path: &[&str]) -> Result<MapSpan, String> {
    let mut map = top;
    for key in path {
        let entry = text
            .entry(map, key)
            .ok_or_else(|| format!("key {key} not found"))?;
        map = text
            .child_map(&entry)
            .ok_or_else(|| format!("{key} is not a block mapping"))?;
    }
    Ok(map)
}

/// An edit of the first container of the first workload document in a file, made the
/// way `gitops` edits manifests in place; for the fuzz targets (`crate::fuzzing`).
pub(crate) struct FirstContainerEdit {
    /// The new text, or why the edit was refused.
    pub result: Result<String, String>,
    /// The document edited.
    pub doc: usize,
    /// The path to the container in the parsed document.
    pub path: Vec<Seg>,
    /// The bytes of the old text the edit may touch (the `resources` entry, or the spot
    /// where one goes), when the text scan finds the container.
    pub span: Option<Range<usize>>,
}

/// Edits the first container of `src`; `None` when `src` holds no container to edit.
pub(crate) fn edit_first_container(src: &str, target: &Resources) -> Option<FirstContainerEdit> {
    let file = super::discovery::parse_file(src.to_string()).ok()?;
    let (doc, kind, name, spot) = file.docs.iter().enumerate().find_map(|(i, (_, v))| {
        let kind = v.get("kind")?.as_str()?;
        let name = super::discovery::pod_spec_path(kind)?
            .iter()
            .try_fold(v, |node, key| node.get(key))?
            .get("containers")?
            .get(0)?
            .get("name")?
            .as_str()?;
        let spot = super::discovery::find_container(v, kind, name)?;
        Some((i, kind.to_string(), name.to_string(), spot))
    })?;
    let pod_spec = super::discovery::pod_spec_path(&kind)?;
    let locate = |t: &Text, top| container_map(t, top, pod_spec, spot.list, &name);
    let path = super::plan::container_path(&kind, spot.list, spot.index);
    let result = edit_document(src, doc, locate, "resources", &path, target);
    let span = resources_span(&Text::new(src), doc, locate);
    Some(FirstContainerEdit {
        result,
        doc,
        path,
        span,
    })
}

/// The bytes an edit of the `resources` entry in the mapping `locate` finds may touch.
fn resources_span(
    text: &Text,
    doc: usize,
    locate: impl Fn(&Text, MapSpan) -> Result<MapSpan, String>,
) -> Option<Range<usize>> {
    let range = text.documents().ok()?.get(doc)?.clone();
    let map = locate(text, text.top_map(&range)?).ok()?;
    let Some(entry) = text.entry(map, "resources") else {
        let at = text.lines[text.last_node(map.first..map.to)?].next;
        return Some(at..at);
    };
    let line = &text.lines[entry.line];
    let last = entry.body.end.max(entry.line + 1) - 1;
    Some(line.start + line.key_col..text.lines[last].next)
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub(super) fn target() -> Resources {
        Resources {
            cpu_request_millicores: Some(250),
            cpu_limit_millicores: Some(1000),
            memory_request_bytes: Some(256 << 20),
            memory_limit_bytes: Some(256 << 20),
        }
    }

    pub(super) fn edit(src: &str, t: &Resources) -> Result<String, String> {
        let path = [
            Seg::Key("spec".into()),
            Seg::Key("containers".into()),
            Seg::Index(0),
        ];
        edit_document(
            src,
            0,
            |text, top| container_map(text, top, &["spec"], "containers", "app"),
            "resources",
            &path,
            t,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::edit;
    use super::*;

    const MI: i64 = 1 << 20;

    fn target(cpu: i64, cpu_limit: i64, mem: i64) -> Resources {
        Resources {
            cpu_request_millicores: Some(cpu),
            cpu_limit_millicores: Some(cpu_limit),
            memory_request_bytes: Some(mem),
            memory_limit_bytes: Some(mem),
        }
    }

    #[test]
    fn replaces_values_keeping_quotes_and_comments() {
        let src = "spec:\n  containers:\n    - name: app # main\n      resources:\n        requests:\n          cpu: \"100m\" # was\n          memory: '128Mi'\n        limits:\n          cpu: 1\n          memory: 128Mi\n";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert_eq!(
            out,
            "spec:\n  containers:\n    - name: app # main\n      resources:\n        requests:\n          cpu: \"250m\" # was\n          memory: '256Mi'\n        limits:\n          cpu: 1\n          memory: 256Mi\n"
        );
        assert_eq!(edit(&out, &target(250, 1000, 256 * MI)).unwrap(), out);
    }

    #[test]
    fn adds_a_block_where_none_is() {
        let src = "spec:\n  containers:\n  - name: app\n    image: x\n  # trailing comment\n";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert_eq!(
            out,
            "spec:\n  containers:\n  - name: app\n    image: x\n    resources:\n      requests:\n        cpu: 250m\n        memory: 256Mi\n      limits:\n        cpu: 1\n        memory: 256Mi\n  # trailing comment\n"
        );
    }

    #[test]
    fn rewrites_flow_style_and_missing_keys() {
        let src = "spec:\n  containers:\n  - name: app\n    resources: {} # todo\n";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert!(out.starts_with("spec:\n  containers:\n  - name: app\n    resources: # todo\n      requests:\n        cpu: 250m\n"), "{out}");
        let src = "spec:\n  containers:\n  - name: app\n    resources:\n      limits: {ephemeral-storage: 1Gi}\n      requests:\n        memory: \"64Mi\"\n";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert_eq!(
            out,
            "spec:\n  containers:\n  - name: app\n    resources:\n      limits:\n        cpu: \"1\"\n        memory: \"256Mi\"\n        ephemeral-storage: 1Gi\n      requests:\n        cpu: \"250m\"\n        memory: \"256Mi\"\n"
        );
        // No trailing newline at the end of the file.
        let src = "spec:\n  containers:\n  - name: app";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert!(out.ends_with("\n        memory: 256Mi"), "{out}");
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let src = "spec:\r\n  containers:\r\n  - name: app\r\n    image: x\r\n";
        let out = edit(src, &target(250, 1000, 256 * MI)).unwrap();
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn refuses_what_it_cannot_edit() {
        let src = "spec:\n  containers: [{name: app}]\n";
        assert!(edit(src, &target(250, 1000, 256 * MI)).is_err());
        let src = "spec:\n  containers:\n  - name: app\n    resources: &r\n      limits: {}\n";
        assert!(edit(src, &target(250, 1000, 256 * MI)).is_err());
    }
}

#[cfg(test)]
mod edge_cases {
    use super::tests_support::*;

    #[test]
    fn odd_but_valid_layouts() {
        let cases = [
            "spec:\n  containers:\n  - name: app\n    resources:\n      requests:\n        cpu: 100m\n      # limits to come\n  - name: side\n",
            "spec:\n  containers:\n  - name: app\n    resources: # none yet\n  - name: side\n",
            "spec:\n  containers:\n  - name: app\n    resources: null\n",
            "spec:\n  containers:\n  - name: app\n    resources: {requests: {cpu: 100m}, limits: {memory: 1Gi, nvidia.com/gpu: 1}}\n",
            "spec:\n  containers:\n  -\n    name: app\n    image: x\n",
            "spec:\n  containers:\n  - image: x\n    \"name\": \"app\"\n    resources:\n      requests: {}\n",
        ];
        for src in cases {
            let out = edit(src, &target()).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(
                edit(&out, &target()).unwrap(),
                out,
                "not idempotent:\n{out}"
            );
        }
    }
}
