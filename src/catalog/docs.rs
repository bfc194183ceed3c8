//! `docs/metrics.md`, generated from the catalog so the reference can never drift from what
//! the exporter serves (`cargo run --example metrics-doc > docs/metrics.md`; a test compares).

use std::fmt::Write as _;

use super::{Kind, Scope, Series, Source, Stream, catalog, fq_name};

/// A documentation section: title, introduction, and which scopes it lists.
type Section = (&'static str, &'static str, fn(Scope) -> bool);

/// The full Markdown reference of every family, with the default namespace and subsystem.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("# Metrics reference\n\n");
    out.push_str(
        "Generated from `src/catalog/families.tsv` by `cargo run --example metrics-doc > docs/metrics.md`; \
         a test fails when this file is out of date. Names use the default `-namespace fastly` and \
         `-subsystem rt` (origin and domain families always use `origin` / `domain`). Labels are \
         listed in exposition order (sorted by name, as client_golang prints them); `le` is added to \
         histogram buckets.\n",
    );
    let sections: [Section; 6] = [
        ("Real-time stats", "Per service and datacenter, from `rt.fastly.com/v1/channel`.", |s| {
            s == Scope::Stream(Stream::Realtime)
        }),
        (
            "Origin Inspector",
            "Per service, datacenter and origin, from `rt.fastly.com/v1/origins` (needs the product).",
            |s| s == Scope::Stream(Stream::Origin),
        ),
        (
            "Domain Inspector",
            "Per service, datacenter and domain, from `rt.fastly.com/v1/domains` (needs the product).",
            |s| s == Scope::Stream(Stream::Domain),
        ),
        ("Per service", "From the service list and the pollers.", |s| matches!(s, Scope::Service(_))),
        ("Account", "From api.fastly.com account endpoints, and the build.", |s| matches!(s, Scope::Account(_))),
        (
            "The exporter itself",
            "On plain `/metrics` only (never `?target=`), with fixed names: not built from \
             `-namespace`, never filtered.",
            |s| matches!(s, Scope::Exporter(_)),
        ),
    ];
    for (title, intro, pick) in sections {
        let _ = write!(
            out,
            "\n## {title}\n\n{intro}\n\n| metric | type | labels | source | help |\n|---|---|---|---|---|\n"
        );
        for f in catalog().families.iter().filter(|f| pick(f.scope)) {
            let sub = match f.scope {
                Scope::Stream(s) => s.subsystem("rt"),
                _ => "rt",
            };
            let full = match f.scope {
                Scope::Exporter(_) => f.name.to_string(),
                _ => fq_name("fastly", sub, f.name),
            };
            let mut labels: Vec<&str> = match f.scope {
                Scope::Stream(s) => {
                    let mut l = vec!["datacenter", "service_id", "service_name"];
                    l.extend(s.entity_label());
                    l.extend(f.labels.iter().copied());
                    l
                }
                _ => f.labels.clone(),
            };
            labels.sort_unstable();
            let source = match f.scope {
                Scope::Stream(_) => f.series.iter().map(describe).collect::<Vec<_>>().join("<br>"),
                _ => "see help".to_string(),
            };
            let mut kind = f.kind.as_str().to_string();
            if f.kind == Kind::Histogram {
                let b: Vec<String> = f.buckets.iter().map(|b| b.to_string()).collect();
                let _ = write!(kind, " (buckets {})", b.join(", "));
            }
            let help = f.help.replace("{program}", "fastly_rt").replace('|', "\\|");
            let _ = writeln!(
                out,
                "| `{}` | {kind} | {} | {source} | {} |",
                full,
                labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "),
                if help.trim().is_empty() { "(upstream has no help text)".to_string() } else { help }
            );
        }
    }
    out
}

fn describe(s: &Series) -> String {
    let fixed: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let expr = match &s.source {
        Source::Sum { fields, scale } if *scale != 1.0 => format!("`{}` / {}", fields.join("` + `"), 1.0 / scale),
        Source::Sum { fields, .. } => format!("`{}`", fields.join("` + `")),
        Source::GuardedDiff { plus, minus } => format!("`{plus}` − `{}` (≥ 0)", minus.join("` − `")),
        Source::Map { field, scale } => format!("`{field}` (ms keys × {scale})"),
        Source::Observe(obs) => {
            let first = obs.first().map(|(f, _)| *f).unwrap_or("");
            let last = obs.last().map(|(f, _)| *f).unwrap_or("");
            format!("`{first}` … `{last}` ({} fixed observations)", obs.len())
        }
        Source::Gauge { field, weight } if weight.is_empty() => format!("`{field}`"),
        Source::Gauge { field, weight } => {
            format!("`{field}` (per group: mean weighted by `{}`)", weight.join("` + `"))
        }
        Source::External => "see help".to_string(),
    };
    if fixed.is_empty() { expr } else { format!("{}: {expr}", fixed.join(",")) }
}
