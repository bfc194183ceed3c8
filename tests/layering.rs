//! The layering of ARCHITECTURE.md, enforced: each top-level module of `src/` may refer only
//! to the modules of the layers below it (`crate::<module>` paths). A new arrow upwards fails
//! here, naming the file and the path, before it turns into a cycle.

use std::collections::BTreeMap;
use std::path::Path;

/// Each module and what it may use, as ARCHITECTURE.md draws it.
const ALLOWED: &[(&str, &[&str])] = &[
    // Layer 0: leaves.
    ("util", &[]),
    // Layer 1: what the rest is described in.
    ("web", &["util"]),
    ("catalog", &["util"]),
    // Layer 2: configuration, and the state both sides share.
    ("config", &["util", "web"]),
    ("store", &["catalog", "util"]),
    // Layer 3: the two edges, which never use each other.
    ("upstream", &["catalog", "store", "util"]),
    ("serve", &["catalog", "store", "util", "web"]),
    // Layer 4: wiring.
    ("app", &["catalog", "config", "serve", "store", "upstream", "util", "web"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    let mut seen_modules = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let path = entry.path();
        let module = path.file_stem().unwrap().to_string_lossy().to_string();
        if !path.is_dir() {
            continue;
        }
        seen_modules.push(module.clone());
        let Some(deps) = allowed.get(module.as_str()) else {
            violations
                .push(format!("src/{module}/ has no place in the layering (add it to ALLOWED and ARCHITECTURE.md)"));
            continue;
        };
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find("crate::") {
                    let after = &rest[at + "crate::".len()..];
                    let used: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    rest = &after[used.len()..];
                    if used == module || deps.contains(&used.as_str()) {
                        continue;
                    }
                    let shown = file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or(&file);
                    violations.push(format!("{}:{}: {module} uses crate::{used}", shown.display(), i + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
    seen_modules.sort();
    let mut listed: Vec<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    listed.sort();
    assert_eq!(seen_modules, listed, "ALLOWED lists a module src/ does not have");
}

#[test]
fn the_product_library_holds_no_test_double() {
    // The fake Fastly API is its own crate; the product never depends on it.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    assert!(!deps.contains("fake-fastly"), "the product depends on the fake");
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    assert!(!lib.contains("mod fake"), "src/lib.rs declares a fake module");
}
