//! Just enough YAML structure to edit manifests byte for byte: documents split
//! on `---` lines with their byte ranges, block mappings and sequences found by
//! indentation, and scalars located with their quoting.
//!
//! yaml_serde reads the values; this module only finds *where* they are. Every
//! edit built on it is checked afterwards by re-parsing (see `edit.rs`), so a
//! structure this module misreads is refused, never written.

use std::ops::Range;

/// What a line holds, for the structure scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// Only whitespace.
    Blank,
    /// A full-line comment.
    Comment,
    /// A node: a key, a sequence item, a scalar.
    Content,
    /// Inside a block scalar (`|`, `>`): text, never structure.
    Scalar,
    /// A document marker: `---` or `...`.
    Separator,
}

/// One line of a file, by byte offsets into the file.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset just past the last byte before the line break (`\r` excluded).
    pub end: usize,
    /// Offset of the next line (equal to the file length at the end).
    pub next: usize,
    /// Leading spaces.
    pub indent: usize,
    /// Column where a mapping key would start: after the indent and any `- ` markers.
    pub key_col: usize,
    /// Whether the line starts a sequence item (`- …`).
    pub dash: bool,
    /// What the line holds.
    pub kind: LineKind,
}

impl Line {
    /// Whether the file ends on this line without a line break.
    fn unterminated(&self) -> bool {
        self.next == self.end
    }
}

/// A scalar or collection written on the same line as its key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Inline {
    /// Nothing after the colon but maybe a comment: the value is a block (or null).
    Empty,
    /// A single-line scalar; `range` covers the quotes, if any.
    Scalar {
        /// Absolute byte range of the scalar token.
        range: Range<usize>,
        /// `'` or `"` when quoted.
        quote: Option<char>,
        /// The scalar's value with quotes and escapes resolved.
        text: String,
    },
    /// A single-line flow collection (`{…}` or `[…]`).
    Flow {
        /// Absolute byte range of the collection.
        range: Range<usize>,
    },
    /// Anything this module does not edit: block scalars, anchors, tags,
    /// aliases, multi-line flow or quoted scalars.
    Other,
}

/// A block mapping: keys at column `col` on lines `first..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapSpan {
    /// Line of the first key (for a sequence item, the `- ` line).
    pub first: usize,
    /// One past the last line that belongs to the mapping.
    pub to: usize,
    /// Column of the keys.
    pub col: usize,
}

/// One key of a block mapping.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Line of the key.
    pub line: usize,
    /// The key, unquoted.
    pub key: String,
    /// What follows the colon on the key's line.
    pub value: Inline,
    /// Lines after the key's line that belong to its value.
    pub body: Range<usize>,
}

/// A file's text with its lines classified.
pub(crate) struct Text<'a> {
    /// The whole file.
    pub src: &'a str,
    /// Every line, in order.
    pub lines: Vec<Line>,
    /// The file's line break (`\n` or `\r\n`), used for inserted lines.
    pub newline: &'static str,
}

impl<'a> Text<'a> {
    /// Splits `src` into classified lines.
    pub fn new(src: &'a str) -> Self {
        let newline = match src.find('\n') {
            Some(i) if i > 0 && src.as_bytes()[i - 1] == b'\r' => "\r\n",
            _ => "\n",
        };
        let mut lines = Vec::new();
        // Parent column of the block scalar being read, if any.
        let mut block_scalar: Option<usize> = None;
        let mut start = 0;
        while start < src.len() {
            let (mut end, next) = match src[start..].find('\n') {
                Some(i) => (start + i, start + i + 1),
                None => (src.len(), src.len()),
            };
            if end > start && src.as_bytes()[end - 1] == b'\r' {
                end -= 1;
            }
            let raw = &src[start..end];
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let rest = &raw[indent..];
            let mut line = Line {
                start,
                end,
                next,
                indent,
                key_col: indent,
                dash: false,
                kind: LineKind::Content,
            };
            if let Some(parent) = block_scalar {
                if rest.trim().is_empty() || indent > parent {
                    line.kind = LineKind::Scalar;
                    lines.push(line);
                    start = next;
                    continue;
                }
                block_scalar = None;
            }
            if rest.trim().is_empty() {
                line.kind = LineKind::Blank;
            } else if indent == 0 && is_marker(raw) {
                line.kind = LineKind::Separator;
            } else if rest.starts_with('#') {
                line.kind = LineKind::Comment;
            } else {
                let (key_col, last_dash) = skip_dashes(raw, indent);
                line.key_col = key_col;
                line.dash = last_dash.is_some();
                block_scalar = block_scalar_parent(&raw[key_col..], key_col, last_dash);
            }
            lines.push(line);
            start = next;
        }
        Text {
            src,
            lines,
            newline,
        }
    }

    /// The text of line `i` without its line break.
    pub fn line_str(&self, i: usize) -> &'a str {
        &self.src[self.lines[i].start..self.lines[i].end]
    }

    /// The documents of the file as line ranges (separators excluded), keeping
    /// only those with at least one node. Fails on content written on a `---`
    /// line, which this module can't edit around.
    pub fn documents(&self) -> Result<Vec<Range<usize>>, String> {
        let mut docs = Vec::new();
        let mut from = 0;
        for (i, line) in self.lines.iter().enumerate() {
            if line.kind != LineKind::Separator {
                continue;
            }
            let raw = self.line_str(i);
            let after = raw[3..].trim();
            if !(after.is_empty() || after.starts_with('#')) {
                return Err(format!(
                    "line {}: content on a document marker line is not supported",
                    i + 1
                ));
            }
            docs.push(from..i);
            from = i + 1;
        }
        docs.push(from..self.lines.len());
        docs.retain(|r| {
            self.lines[r.clone()]
                .iter()
                .any(|l| l.kind == LineKind::Content)
        });
        Ok(docs)
    }

    /// The source text of a document (its lines, line breaks included).
    pub fn doc_src(&self, doc: &Range<usize>) -> &'a str {
        if doc.is_empty() {
            return "";
        }
        &self.src[self.lines[doc.start].start..self.lines[doc.end - 1].next]
    }

    /// The document's top-level block mapping.
    pub fn top_map(&self, doc: &Range<usize>) -> Option<MapSpan> {
        let first = self.first_content(doc.clone())?;
        let line = &self.lines[first];
        if line.dash {
            return None;
        }
        Some(MapSpan {
            first,
            to: doc.end,
            col: line.indent,
        })
    }

    fn first_content(&self, range: Range<usize>) -> Option<usize> {
        range
            .into_iter()
            .find(|&i| self.lines[i].kind == LineKind::Content)
    }

    /// The last line in `range` that holds a node (content or block-scalar
    /// text): where lines are appended to a block without landing among the
    /// comments that introduce what follows.
    pub fn last_node(&self, range: Range<usize>) -> Option<usize> {
        range.into_iter().rev().find(|&i| {
            let l = &self.lines[i];
            l.kind == LineKind::Content
                || (l.kind == LineKind::Scalar && !self.line_str(i).trim().is_empty())
        })
    }

    /// The keys of a block mapping, in order.
    pub fn entries(&self, map: MapSpan) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut i = map.first;
        while i < map.to {
            let line = &self.lines[i];
            let is_key_line = line.kind == LineKind::Content
                && line.key_col == map.col
                && (i == map.first || !line.dash);
            if !is_key_line {
                i += 1;
                continue;
            }
            let key_text = &self.src[line.start + line.key_col..line.end];
            let Some((key, used)) = parse_key(key_text) else {
                i += 1;
                continue;
            };
            let after = line.start + line.key_col + used;
            let value = parse_inline(self.src, after, line.end);
            let mut j = i + 1;
            while j < map.to {
                let l = &self.lines[j];
                if l.kind == LineKind::Content
                    && (l.indent < map.col || (l.indent == map.col && !l.dash))
                {
                    break;
                }
                j += 1;
            }
            out.push(Entry {
                line: i,
                key,
                value,
                body: i + 1..j,
            });
            i = j;
        }
        out
    }

    /// The entry with key `key`, if the mapping has one.
    pub fn entry(&self, map: MapSpan, key: &str) -> Option<Entry> {
        self.entries(map).into_iter().find(|e| e.key == key)
    }

    /// The block mapping an entry's value is, if it is one.
    pub fn child_map(&self, entry: &Entry) -> Option<MapSpan> {
        if entry.value != Inline::Empty {
            return None;
        }
        let first = self.first_content(entry.body.clone())?;
        let line = &self.lines[first];
        if line.dash {
            return None;
        }
        Some(MapSpan {
            first,
            to: entry.body.end,
            col: line.indent,
        })
    }

    /// The items of a block sequence value, each as the mapping it holds.
    pub fn items(&self, entry: &Entry) -> Vec<MapSpan> {
        if entry.value != Inline::Empty {
            return Vec::new();
        }
        let Some(first) = self.first_content(entry.body.clone()) else {
            return Vec::new();
        };
        if !self.lines[first].dash {
            return Vec::new();
        }
        let dash_col = self.lines[first].indent;
        let starts: Vec<usize> = entry
            .body
            .clone()
            .filter(|&i| {
                let l = &self.lines[i];
                l.kind == LineKind::Content && l.dash && l.indent == dash_col
            })
            .collect();
        let mut items = Vec::new();
        for (n, &s) in starts.iter().enumerate() {
            let to = starts.get(n + 1).copied().unwrap_or(entry.body.end);
            let line = &self.lines[s];
            let col = if line.key_col < line.end - line.start
                && !self.src[line.start + line.key_col..line.end].starts_with('#')
            {
                line.key_col
            } else {
                match self.first_content(s + 1..to) {
                    Some(c) => self.lines[c].indent,
                    None => continue,
                }
            };
            items.push(MapSpan { first: s, to, col });
        }
        items
    }

    /// Walks a path of keys from a mapping.
    pub fn find_path(&self, map: MapSpan, path: &[&str]) -> Option<Entry> {
        let (last, init) = path.split_last()?;
        let mut map = map;
        for key in init {
            let entry = self.entry(map, key)?;
            map = self.child_map(&entry)?;
        }
        self.entry(map, last)
    }

    /// Where to insert lines so they follow line `i`, and whether the inserted
    /// text must start with a line break (the file ends on `i` without one).
    pub fn after_line(&self, i: usize) -> (usize, bool) {
        let line = &self.lines[i];
        if line.unterminated() {
            (line.end, true)
        } else {
            (line.next, false)
        }
    }

    /// The indentation step the document uses: the most common distance
    /// between a key and its nested block mapping; 2 when there is none.
    pub fn indent_step(&self, range: Range<usize>) -> usize {
        let mut counts = [0usize; 9];
        let content: Vec<usize> = range
            .filter(|&i| self.lines[i].kind == LineKind::Content)
            .collect();
        for pair in content.windows(2) {
            let (a, b) = (&self.lines[pair[0]], &self.lines[pair[1]]);
            let text = &self.src[a.start + a.key_col..a.end];
            let opens_block = matches!(
                parse_key(text).map(|(_, used)| parse_inline(
                    self.src,
                    a.start + a.key_col + used,
                    a.end
                )),
                Some(Inline::Empty)
            );
            if opens_block && !b.dash && b.indent > a.key_col {
                let step = b.indent - a.key_col;
                if step < counts.len() {
                    counts[step] += 1;
                }
            }
        }
        counts
            .iter()
            .enumerate()
            .skip(1)
            .max_by_key(|&(step, n)| (*n, std::cmp::Reverse(step)))
            .filter(|&(_, n)| *n > 0)
            .map(|(step, _)| step)
            .unwrap_or(2)
    }
}

fn is_marker(raw: &str) -> bool {
    for marker in ["---", "..."] {
        if let Some(rest) = raw.strip_prefix(marker) {
            if rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t') {
                return true;
            }
        }
    }
    false
}

/// Skips `- ` sequence markers; returns the key column and the column of the
/// last dash, if any.
fn skip_dashes(raw: &str, indent: usize) -> (usize, Option<usize>) {
    let bytes = raw.as_bytes();
    let mut col = indent;
    let mut last_dash = None;
    while col < bytes.len()
        && bytes[col] == b'-'
        && (col + 1 == bytes.len() || bytes[col + 1] == b' ')
    {
        last_dash = Some(col);
        col += 1;
        while col < bytes.len() && bytes[col] == b' ' {
            col += 1;
        }
    }
    (col, last_dash)
}

/// If the line's value opens a block scalar, the column its text must be
/// indented beyond.
fn block_scalar_parent(rest: &str, key_col: usize, last_dash: Option<usize>) -> Option<usize> {
    let (value, parent) = match parse_key(rest) {
        Some((_, used)) => (&rest[used..], key_col),
        None => (rest, last_dash?),
    };
    let value = strip_comment(value).trim();
    let mut chars = value.chars();
    match chars.next() {
        Some('|') | Some('>') => chars
            .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
            .then_some(parent),
        _ => None,
    }
}

fn strip_comment(s: &str) -> &str {
    let bytes = s.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &s[..i];
        }
    }
    s
}

/// Reads a mapping key at the start of `s`: returns it unquoted and the bytes
/// used up to and including the colon.
pub(crate) fn parse_key(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    let first = *bytes.first()?;
    let (key, after) = match first {
        b'"' | b'\'' => {
            let end = closing_quote(s, 0)?;
            (unquote(&s[..=end])?, end + 1)
        }
        b'{' | b'[' | b'?' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' => return None,
        _ => {
            let mut found = None;
            for i in 0..bytes.len() {
                if bytes[i] == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
                    return None;
                }
                if bytes[i] == b':'
                    && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t')
                {
                    found = Some(i);
                    break;
                }
            }
            let i = found?;
            (s[..i].trim_end().to_string(), i)
        }
    };
    let rest = &s[after..];
    let spaces = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let rest = &rest[spaces..];
    if !rest.starts_with(':') {
        return None;
    }
    if rest.len() > 1 && !rest[1..].starts_with([' ', '\t']) {
        return None;
    }
    Some((key, after + spaces + 1))
}

/// The index of the quote closing the one at `open`, on the same line.
fn closing_quote(s: &str, open: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let q = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if q == b'"' => i += 2,
            b'\'' if q == b'\'' => {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Some(i);
                }
            }
            c if c == q => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Resolves a quoted scalar (quotes included) through the YAML parser itself.
fn unquote(token: &str) -> Option<String> {
    match yaml_serde::from_str::<yaml_serde::Value>(token).ok()? {
        yaml_serde::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Classifies what follows a key's colon on `src[from..to]`.
pub(crate) fn parse_inline(src: &str, from: usize, to: usize) -> Inline {
    let s = &src[from..to];
    let lead = s.len() - s.trim_start_matches([' ', '\t']).len();
    let v = &s[lead..];
    let start = from + lead;
    let Some(first) = v.chars().next() else {
        return Inline::Empty;
    };
    match first {
        '#' => Inline::Empty,
        '"' | '\'' => match closing_quote(v, 0) {
            Some(end) if only_comment(&v[end + 1..]) => match unquote(&v[..=end]) {
                Some(text) => Inline::Scalar {
                    range: start..start + end + 1,
                    quote: Some(first),
                    text,
                },
                None => Inline::Other,
            },
            _ => Inline::Other,
        },
        '{' | '[' => match closing_bracket(v) {
            Some(end) if only_comment(&v[end + 1..]) => Inline::Flow {
                range: start..start + end + 1,
            },
            _ => Inline::Other,
        },
        '|' | '>' | '&' | '*' | '!' | '%' | '@' | '`' => Inline::Other,
        _ => {
            let token = strip_comment(v).trim_end();
            Inline::Scalar {
                range: start..start + token.len(),
                quote: None,
                text: token.to_string(),
            }
        }
    }
}

fn only_comment(s: &str) -> bool {
    let t = s.trim_start_matches([' ', '\t']);
    t.is_empty() || (t.starts_with('#') && t.len() < s.len())
}

/// The index of the bracket closing the flow collection that starts `s`.
fn closing_bracket(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'"' | b'\'' => i = closing_quote(s, i)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether a plain scalar would read back as the string `s`.
pub(crate) fn plain_is_string(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(['#', ':', '\n', '"', '\''])
        && matches!(
            yaml_serde::from_str::<yaml_serde::Value>(s),
            Ok(yaml_serde::Value::String(ref v)) if v == s
        )
}

/// One replacement in a file: bytes `start..end` become `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    /// First byte replaced.
    pub start: usize,
    /// One past the last byte replaced (equal to `start` for an insertion).
    pub end: usize,
    /// The new bytes.
    pub text: String,
}

/// Applies non-overlapping splices; insertions at the same offset keep their
/// order in `splices` and come before a replacement starting there.
pub(crate) fn apply_splices(src: &str, splices: &[Splice]) -> String {
    let mut order: Vec<usize> = (0..splices.len()).collect();
    order.sort_by_key(|&i| (splices[i].start, splices[i].end, i));
    let mut out = String::with_capacity(src.len() + 256);
    let mut pos = 0;
    for i in order {
        let s = &splices[i];
        out.push_str(&src[pos..s.start]);
        out.push_str(&s.text);
        pos = s.end;
    }
    out.push_str(&src[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# leading comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api # the api
spec:
  template:
    spec:
      containers:
      - name: app
        command:
        - sh
        - |
          echo hi
          # not a comment
        resources:
          limits: {cpu: \"1\"}
      - name: \"side\"
        image: 'x:1'
---
kind: Service
";

    #[test]
    fn splits_documents_and_finds_nested_keys() {
        let text = Text::new(DOC);
        let docs = text.documents().unwrap();
        assert_eq!(docs.len(), 2);
        let top = text.top_map(&docs[0]).unwrap();
        let keys: Vec<String> = text.entries(top).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
        let containers = text
            .find_path(top, &["spec", "template", "spec", "containers"])
            .unwrap();
        let items = text.items(&containers);
        assert_eq!(items.len(), 2);
        let names: Vec<String> = items
            .iter()
            .map(|m| match text.entry(*m, "name").unwrap().value {
                Inline::Scalar { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["app", "side"]);
        let resources = text.entry(items[0], "resources").unwrap();
        let limits = text
            .entry(text.child_map(&resources).unwrap(), "limits")
            .unwrap();
        assert!(matches!(limits.value, Inline::Flow { .. }));
        // The block scalar's `# not a comment` is text, so the item ends after it.
        assert_eq!(text.last_node(items[0].first..items[0].to), Some(16));
        assert_eq!(text.indent_step(docs[0].clone()), 2);
    }

    #[test]
    fn scalars_keep_their_quotes() {
        let src = "cpu: \"250m\" # note\nmemory: '1Gi'\nplain: 2 # two\n";
        let text = Text::new(src);
        let top = text.top_map(&(0..3)).unwrap();
        let entries = text.entries(top);
        let Inline::Scalar {
            range,
            quote,
            text: v,
        } = &entries[0].value
        else {
            panic!()
        };
        assert_eq!(
            (&src[range.clone()], *quote, v.as_str()),
            ("\"250m\"", Some('"'), "250m")
        );
        let Inline::Scalar { range, quote, .. } = &entries[2].value else {
            panic!()
        };
        assert_eq!((&src[range.clone()], *quote), ("2", None));
        assert!(matches!(
            entries[1].value,
            Inline::Scalar {
                quote: Some('\''),
                ..
            }
        ));
    }

    #[test]
    fn keys_and_markers() {
        assert_eq!(parse_key("a: b"), Some(("a".into(), 2)));
        assert_eq!(parse_key("\"a b\" : c"), Some(("a b".into(), 7)));
        assert_eq!(parse_key("http://x"), None);
        assert_eq!(parse_key("a # b: c"), None);
        let text = Text::new("a: 1\n--- # two\nb: 2\n...\n");
        assert_eq!(text.documents().unwrap(), vec![0..1, 2..3]);
        assert!(Text::new("a: 1\n--- b: 2\n").documents().is_err());
        assert!(plain_is_string("250m"));
        assert!(!plain_is_string("1"));
    }

    #[test]
    fn splices_apply_in_order() {
        let s = apply_splices(
            "abc",
            &[
                Splice {
                    start: 1,
                    end: 1,
                    text: "X".into(),
                },
                Splice {
                    start: 1,
                    end: 2,
                    text: "Y".into(),
                },
                Splice {
                    start: 3,
                    end: 3,
                    text: "Z".into(),
                },
            ],
        );
        assert_eq!(s, "aXYcZ");
    }
}
