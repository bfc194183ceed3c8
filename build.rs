//! Records the git revision, branch and tags and the rustc version for `-version` and
//! `build_info`, so a binary found on a VM says exactly what it is. Missing git (a source
//! tarball) degrades to "unknown" rather than failing the build.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().replace('\n', ",");
    Some(s)
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let revision = run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let branch = run("git", &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let tags = run("git", &["tag", "--points-at", "HEAD"]).unwrap_or_default();
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FE_GIT_REVISION={revision}");
    println!("cargo:rustc-env=FE_GIT_BRANCH={branch}");
    println!("cargo:rustc-env=FE_GIT_TAGS={tags}");
    println!("cargo:rustc-env=FE_RUSTC_VERSION={rustc_version}");
    // Where git keeps HEAD and the refs: `.git/…` in a clone, elsewhere in a worktree (whose
    // `.git` is a file). A path that does not exist would make cargo rerun this script, and
    // rebuild the crate, on every build; without git there is nothing to watch.
    for file in ["HEAD", "refs"] {
        if let Some(path) = run("git", &["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
