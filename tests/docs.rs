//! Generated documentation stays in sync with the catalog.

#[test]
fn metrics_reference_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let committed = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    let generated = fastly_exporter::catalog::docs::markdown();
    assert!(
        committed == generated,
        "docs/metrics.md is out of date: run `cargo run --example metrics-doc > docs/metrics.md`"
    );
    // Every family of the catalog is documented.
    for f in &fastly_exporter::catalog::catalog().families {
        let own = matches!(f.scope, fastly_exporter::catalog::Scope::Exporter(_));
        let shown = if own { format!("`{}`", f.name) } else { format!("_{}`", f.name) };
        assert!(committed.contains(&shown), "{} missing", f.name);
    }
}

/// The README's flag table lists every flag `-h` prints.
#[test]
fn readme_lists_every_flag() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let usage = fastly_exporter::config::usage();
    let mut n = 0;
    for line in usage.lines() {
        let Some(rest) = line.strip_prefix("  -") else { continue };
        let name = rest.split([' ', ',']).next().unwrap_or("");
        if name.is_empty() {
            continue;
        }
        n += 1;
        assert!(readme.contains(&format!("`-{name}`")), "README does not document -{name}");
    }
    assert!(n >= 25, "only {n} flags found in -h output");
}
