//! The shipped examples only use metric names the exporter serves.

use std::collections::BTreeSet;

fn exported_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in &fastly_exporter::catalog::catalog().families {
        let sub = match f.scope {
            fastly_exporter::catalog::Scope::Stream(s) => s.subsystem("rt"),
            _ => "rt",
        };
        let base = fastly_exporter::catalog::fq_name("fastly", sub, f.name);
        for suffix in ["", "_bucket", "_sum", "_count"] {
            names.insert(format!("{base}{suffix}"));
        }
    }
    for n in
        ["fastly_exporter_api_requests_total", "fastly_exporter_api_rate_limit_remaining", "fastly_exporter_pollers"]
    {
        names.insert(n.to_string());
    }
    names
}

/// Every `fastly_…` identifier in `text`.
fn used_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("fastly_") {
        let start = i + pos;
        let prev_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start + text[start..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        if prev_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn dashboard_and_alerts_use_exported_names() {
    let known = exported_names();
    for file in ["examples/grafana-dashboard.json", "examples/alerts.yml"] {
        let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let used = used_names(&text);
        assert!(used.len() >= 4, "{file} uses {used:?}");
        for name in &used {
            assert!(known.contains(name), "{file} uses {name}, which the exporter does not serve");
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/examples/grafana-dashboard.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .expect("dashboard is valid JSON");
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() >= 5));
}

/// Helm reads files only from inside the chart, so it ships copies of the examples; they must
/// not drift from the originals.
#[test]
fn chart_copies_of_the_examples_are_identical() {
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let read = |dir: &str| std::fs::read(format!("{}/{dir}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            read("examples") == read("deploy/helm/fastly-exporter/files"),
            "deploy/helm/fastly-exporter/files/{file} differs from examples/{file}: copy it"
        );
    }
}
