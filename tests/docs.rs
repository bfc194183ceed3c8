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
        assert!(committed.contains(&format!("_{}`", f.name)), "{} missing", f.name);
    }
}
