//! Real git in tests: one command in a directory, with a test identity, asserted to succeed.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir args…` and returns its standard output; panics with git's error.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@localhost"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
