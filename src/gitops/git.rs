//! Branch, commit and push through the git CLI (no libgit2 to build). Every
//! command runs with `-C <repo>`, no terminal prompt, a fallback identity
//! (`rightsizer <rightsizer@localhost>`) when none is configured, and a time
//! limit (`[gitops] git_timeout`). User-supplied names follow `--` or
//! `--end-of-options`, so none can be read as an option. Errors carry git's
//! stderr with credentials in URLs masked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tracing::debug;

/// Failures of git commands.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository path is not inside a Git work tree.
    #[error("{} is not inside a git work tree", path.display())]
    NotARepo {
        /// The path given as the repository.
        path: PathBuf,
    },
    /// Tracked files have uncommitted changes; switching branches could mix them in.
    #[error("the work tree has uncommitted changes to tracked files ({files}); commit or stash them first")]
    Dirty {
        /// The changed files, as `git status --porcelain` lists them.
        files: String,
    },
    /// A git command exited with an error.
    #[error("`git {args}` failed ({status}): {stderr}")]
    Command {
        /// The arguments (no secrets are ever passed as arguments).
        args: String,
        /// Exit status.
        status: String,
        /// What git printed on stderr, credentials masked.
        stderr: String,
    },
    /// A git command ran past `[gitops] git_timeout` and was killed.
    #[error("`git {args}` did not finish within {timeout} and was killed (with everything it started); check the remote, or raise [gitops] git_timeout")]
    Timeout {
        /// The arguments, credentials masked.
        args: String,
        /// The limit, e.g. `2m`.
        timeout: String,
    },
    /// git could not be started.
    #[error("could not run git: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Masks credentials in URLs (see [`crate::redact::text`]).
pub(crate) fn redact_urls(s: &str) -> String {
    crate::redact::text(s)
}

/// Why `name` can't be a branch or remote name, if it can't: git's ref-name
/// rules (`git help check-ref-format`), plus no leading `-` (it would read as
/// an option) and no whitespace of any kind.
pub(crate) fn ref_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.starts_with('-') {
        return Some("it starts with '-'");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("it contains whitespace or a control character");
    }
    if let Some(c) = name.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Some(match c {
            '~' => "it contains '~'",
            '^' => "it contains '^'",
            ':' => "it contains ':'",
            '?' => "it contains '?'",
            '*' => "it contains '*'",
            '[' => "it contains '['",
            _ => "it contains a backslash",
        });
    }
    if name.contains("..") {
        return Some("it contains '..'");
    }
    if name.contains("@{") || name == "@" {
        return Some("it is '@' or contains '@{'");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("it has an empty '/'-separated part");
    }
    if name.ends_with('.') {
        return Some("it ends with '.'");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Some("a '/'-separated part starts with '.' or ends with '.lock'");
    }
    None
}

/// Where HEAD points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// A branch.
    Branch(String),
    /// A commit (detached HEAD).
    Detached(String),
}

/// A work tree driven through the git CLI.
pub(crate) struct Git {
    dir: PathBuf,
    identity: Vec<String>,
    timeout: Duration,
}

impl Git {
    /// Opens the work tree that contains `dir`; each git command may run for `timeout`.
    pub async fn open(dir: &Path, timeout: Duration) -> Result<Self, GitError> {
        let mut git = Git {
            dir: dir.to_path_buf(),
            identity: Vec::new(),
            timeout,
        };
        match git.try_run(&["rev-parse", "--is-inside-work-tree"]).await? {
            Some(out) if out.trim() == "true" => {}
            _ => {
                return Err(GitError::NotARepo {
                    path: dir.to_path_buf(),
                })
            }
        }
        for (key, fallback) in [
            ("user.name", "rightsizer"),
            ("user.email", "rightsizer@localhost"),
        ] {
            let set = git.try_run(&["config", "--get", key]).await?;
            if set.is_none_or(|v| v.trim().is_empty()) {
                git.identity.push("-c".into());
                git.identity.push(format!("{key}={fallback}"));
            }
        }
        Ok(git)
    }

    async fn output(&self, args: &[&str]) -> Result<std::process::Output, GitError> {
        debug!(args = %redact_urls(&args.join(" ")), "git");
        let child = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(&self.identity)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so a timeout also reaches what git started
            // (ssh, hooks of a local remote, credential helpers), which would
            // otherwise outlive it and hold the pipes open.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(GitError::Spawn)?;
        let group = child.id().and_then(|id| i32::try_from(id).ok());
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(out) => out.map_err(GitError::Spawn),
            Err(_) => {
                if let Some(pid) = group.and_then(rustix::process::Pid::from_raw) {
                    // Already gone is fine: the goal is that nothing is left.
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                Err(GitError::Timeout {
                    args: redact_urls(&args.join(" ")),
                    timeout: humantime::format_duration(self.timeout).to_string(),
                })
            }
        }
    }

    /// Runs git; a non-zero exit is an error.
    async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let out = self.output(args).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(GitError::Command {
                args: redact_urls(&args.join(" ")),
                status: out.status.to_string(),
                stderr: redact_urls(String::from_utf8_lossy(&out.stderr).trim()),
            })
        }
    }

    /// Runs git; a non-zero exit is `None`.
    async fn try_run(&self, args: &[&str]) -> Result<Option<String>, GitError> {
        let out = self.output(args).await?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Fails when tracked files have uncommitted changes.
    pub async fn ensure_clean(&self) -> Result<(), GitError> {
        let status = self
            .run(&["status", "--porcelain", "--untracked-files=no"])
            .await?;
        if status.trim().is_empty() {
            Ok(())
        } else {
            let files: Vec<&str> = status
                .lines()
                .take(5)
                .map(|l| l.get(3..).unwrap_or(l))
                .collect();
            Err(GitError::Dirty {
                files: files.join(", "),
            })
        }
    }

    /// The current branch, or commit when detached.
    pub async fn head(&self) -> Result<Head, GitError> {
        match self
            .try_run(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .await?
        {
            Some(name) => Ok(Head::Branch(name.trim().to_string())),
            None => Ok(Head::Detached(
                self.run(&["rev-parse", "HEAD"]).await?.trim().to_string(),
            )),
        }
    }

    /// Checks out a branch or commit.
    pub async fn checkout(&self, head: &Head) -> Result<(), GitError> {
        match head {
            Head::Branch(b) => self.run(&["checkout", "-q", "--end-of-options", b]).await?,
            Head::Detached(c) => {
                self.run(&["checkout", "-q", "--detach", "--end-of-options", c])
                    .await?
            }
        };
        Ok(())
    }

    async fn exists(&self, reference: &str) -> Result<bool, GitError> {
        Ok(self
            .try_run(&[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                reference,
            ])
            .await?
            .is_some())
    }

    /// Switches to `branch`: reused when it exists (locally, or on `remote`
    /// after a fetch), else created from the current HEAD. Returns whether
    /// it existed.
    pub async fn switch_to(&self, branch: &str, remote: Option<&str>) -> Result<bool, GitError> {
        let local_ref = format!("refs/heads/{branch}");
        let local = self.exists(&local_ref).await?;
        if let Some(remote) = remote {
            let heads = self
                .run(&["ls-remote", "--heads", "--", remote, &local_ref])
                .await?;
            if !heads.trim().is_empty() {
                let tracking = format!("refs/remotes/{remote}/{branch}");
                self.run(&[
                    "fetch",
                    "-q",
                    "--",
                    remote,
                    &format!("+{local_ref}:{tracking}"),
                ])
                .await?;
                if !local {
                    self.run(&["checkout", "-q", "-b", branch, &tracking])
                        .await?;
                    return Ok(true);
                }
                self.run(&["checkout", "-q", "--end-of-options", branch])
                    .await?;
                // Catch up with commits pushed from elsewhere (e.g. a previous CI run).
                let behind = self
                    .try_run(&["merge-base", "--is-ancestor", &local_ref, &tracking])
                    .await?
                    .is_some();
                if behind {
                    self.run(&["merge", "-q", "--ff-only", "--end-of-options", &tracking])
                        .await?;
                }
                return Ok(true);
            }
        }
        if local {
            self.run(&["checkout", "-q", "--end-of-options", branch])
                .await?;
        } else {
            self.run(&["checkout", "-q", "-b", branch]).await?;
        }
        Ok(local)
    }

    /// Commits exactly `files` (relative to the repository) and returns the commit id.
    pub async fn commit(&self, files: &[PathBuf], message: &str) -> Result<String, GitError> {
        let paths: Vec<String> = files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        self.run(&add).await?;
        let mut commit = vec!["commit", "-q", "-m", message, "--"];
        commit.extend(paths.iter().map(String::as_str));
        self.run(&commit).await?;
        Ok(self.run(&["rev-parse", "HEAD"]).await?.trim().to_string())
    }

    /// Whether `remote` is a remote of this repository.
    pub async fn has_remote(&self, remote: &str) -> Result<bool, GitError> {
        Ok(self
            .try_run(&["remote", "get-url", "--", remote])
            .await?
            .is_some())
    }

    /// Pushes `branch` to the same name on `remote`.
    pub async fn push(&self, remote: &str, branch: &str) -> Result<(), GitError> {
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        self.run(&["push", "-q", "--", remote, &refspec]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_credentials_in_urls() {
        assert_eq!(
            redact_urls(
                "fatal: unable to access 'https://x-access-token:ghp_abc@github.com/o/r.git/'"
            ),
            "fatal: unable to access 'https://***@github.com/o/r.git/'"
        );
        assert_eq!(
            redact_urls("https://github.com/o/r"),
            "https://github.com/o/r"
        );
    }

    #[test]
    fn ref_names_follow_git_rules() {
        for ok in ["origin", "rightsizer/week-48", "my.remote", "a-b_c", "v1.2"] {
            assert_eq!(ref_name_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("--upload-pack=touch x", "it starts with '-'"),
            ("-f", "it starts with '-'"),
            ("a b", "it contains whitespace or a control character"),
            ("a\tb", "it contains whitespace or a control character"),
            ("a\nb", "it contains whitespace or a control character"),
            ("a\u{a0}b", "it contains whitespace or a control character"),
            ("../etc", "it contains '..'"),
            ("a..b", "it contains '..'"),
            ("a:b", "it contains ':'"),
            ("a~1", "it contains '~'"),
            ("a^", "it contains '^'"),
            ("a*", "it contains '*'"),
            ("a?", "it contains '?'"),
            ("a[", "it contains '['"),
            ("a\\b", "it contains a backslash"),
            ("@", "it is '@' or contains '@{'"),
            ("a@{1}", "it is '@' or contains '@{'"),
            ("/a", "it has an empty '/'-separated part"),
            ("a/", "it has an empty '/'-separated part"),
            ("a//b", "it has an empty '/'-separated part"),
            ("a.", "it ends with '.'"),
            (
                ".hidden",
                "a '/'-separated part starts with '.' or ends with '.lock'",
            ),
            (
                "a/.b",
                "a '/'-separated part starts with '.' or ends with '.lock'",
            ),
            (
                "main.lock",
                "a '/'-separated part starts with '.' or ends with '.lock'",
            ),
        ] {
            assert_eq!(ref_name_problem(bad), Some(why), "{bad:?}");
        }
    }
}
