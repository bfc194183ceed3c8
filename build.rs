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
    // Rerun when HEAD moves: the HEAD file (another branch checked out) and the file of the
    // branch it names (a commit), wherever git keeps them (`.git/…` in a clone, elsewhere in a
    // worktree, whose `.git` is a file). Only existing files: cargo reruns the script, and
    // rebuilds the crate, on every build for a missing one; and not the whole refs directory,
    // which every other branch and worktree of the repository writes to.
    let watch = |name: &str| {
        let path = run("git", &["rev-parse", "--git-path", name])?;
        std::path::Path::new(&path).exists().then(|| println!("cargo:rerun-if-changed={path}"))
    };
    watch("HEAD");
    if let Some(branch) = run("git", &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/"))
    {
        // A packed ref has no file of its own; `git pack-refs` rewrites packed-refs instead.
        watch(&branch).or_else(|| watch("packed-refs"));
    }
    println!("cargo:rerun-if-changed=build.rs");
}
