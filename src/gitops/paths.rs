//! Keeping reads and writes where they belong. Paths come from config (Helm
//! values files), options (`--out-dir`) and the repository itself (whose
//! contents may be anyone's commit): `..`, absolute paths and symbolic links
//! must not carry an edit outside the repository or the output directory.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::GitopsError;

fn unsafe_path(what: &str, path: &Path, why: String) -> GitopsError {
    GitopsError::UnsafePath {
        what: what.to_string(),
        path: path.to_path_buf(),
        why,
    }
}

/// `path` with `.` and `..` resolved lexically; `None` when a `..` climbs
/// above its start.
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => return None,
            Component::ParentDir => {
                out.pop();
                depth -= 1;
            }
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                out.push(c.as_os_str());
            }
        }
    }
    Some(out)
}

/// Where `path` (absolute) really leads: its longest existing ancestor with
/// symbolic links resolved, then the rest as written.
pub(crate) fn resolve(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            out.extend(rest.iter().rev());
            return normalize(&out).unwrap_or(out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Checks a path given relative to `root` (canonical) and returns it
/// normalized: absolute paths, `..` above the root and symbolic links that
/// lead outside it are errors naming `what` and the path.
pub(crate) fn inside(root: &Path, rel: &Path, what: &str) -> Result<PathBuf, GitopsError> {
    if rel.has_root() {
        return Err(unsafe_path(
            what,
            rel,
            format!(
                "an absolute path; give it relative to the repository {}",
                root.display()
            ),
        ));
    }
    let clean = normalize(rel).ok_or_else(|| {
        unsafe_path(
            what,
            rel,
            format!(
                "its `..` leads outside the repository {}; give a path inside it",
                root.display()
            ),
        )
    })?;
    let real = resolve(&root.join(&clean));
    if !real.starts_with(root) {
        return Err(unsafe_path(
            what,
            rel,
            format!(
                "it resolves through a symbolic link to {}, outside the repository {}",
                real.display(),
                root.display()
            ),
        ));
    }
    Ok(clean)
}

/// Checks that writing `path` changes a regular file under `root`: the path
/// and its real directory stay under `root`, and the file is not a symbolic
/// link (writing through one would change whatever it points at).
pub(crate) fn check_write(root: &Path, path: &Path, what: &str) -> Result<(), GitopsError> {
    let outside = |real: &Path| {
        unsafe_path(
            what,
            path,
            format!(
                "it leads to {}, outside {}; rightsizer writes only there",
                real.display(),
                root.display()
            ),
        )
    };
    let lexical = normalize(path).unwrap_or_else(|| path.to_path_buf());
    if !lexical.starts_with(root) {
        return Err(outside(&lexical));
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(unsafe_path(
            what,
            path,
            "it is a symbolic link; rightsizer writes only regular files, remove the link".into(),
        ));
    }
    let dir = path.parent().unwrap_or(root);
    let real = resolve(dir);
    if !real.starts_with(resolve(root)) {
        return Err(outside(&real));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically_and_refuses_to_climb() {
        assert_eq!(
            normalize(Path::new("charts/./api/../web/values.yaml")),
            Some(PathBuf::from("charts/web/values.yaml"))
        );
        assert_eq!(normalize(Path::new("../../etc/passwd")), None);
        assert_eq!(normalize(Path::new("a/../../b")), None);
        assert_eq!(
            normalize(Path::new("/r/out/../x")),
            Some(PathBuf::from("/r/x"))
        );
    }
}
