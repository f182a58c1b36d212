//! Records the git commit the binaries are built from (`leasequeryd --version`), with `+dirty`
//! when the tree has changes; `unknown` outside a git checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let dirty = if dirty { "+dirty" } else { "" };
    println!("cargo:rustc-env=LQD_GIT_COMMIT={commit}{dirty}");
    // Again when HEAD moves or the index changes (a commit, a checkout, an add), and when a
    // source changes (the tree may have become dirty).
    for p in [".git/HEAD", ".git/index", "src", "loadgen", "Cargo.toml"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let r = format!(".git/{head}");
        if std::path::Path::new(&r).exists() {
            println!("cargo:rerun-if-changed={r}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
