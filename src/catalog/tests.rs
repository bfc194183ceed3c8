use super::*;
use std::collections::HashMap;

/// Series one row exports for a stream: counters and gauges give one per label set,
/// histograms give a bucket per bound, `+Inf`, `_sum` and `_count`.
fn series_per_row(stream: Stream) -> usize {
    catalog()
        .families
        .iter()
        .filter(|f| f.scope == Scope::Stream(stream))
        .map(|f| match f.kind {
            Kind::Histogram => f.series.len() * (f.buckets.len() + 3),
            _ => f.series.len(),
        })
        .sum()
}

#[test]
fn embedded_catalog_parses_with_expected_shape() {
    let c = catalog();
    let count = |scope| c.families.iter().filter(|f| f.scope == scope).count();
    assert_eq!(count(Scope::Stream(Stream::Realtime)), 212);
    assert_eq!(count(Scope::Stream(Stream::Origin)), 6);
    assert_eq!(count(Scope::Stream(Stream::Domain)), 19);
    // 10 datacenters x 287 + service_info + realtime_api_requests_total = 2,872 (issue 3).
    assert_eq!(series_per_row(Stream::Realtime), 287);
    // One origin in one datacenter: the Go exporter's 120 series plus our fix's two
    // resp_header_bytes_total{source="compute"|"waf"} (reference README, decision 2).
    assert_eq!(series_per_row(Stream::Origin), 122);
    // One domain in one datacenter: 63.
    assert_eq!(series_per_row(Stream::Domain), 63);
}

#[test]
fn row_slots_cover_every_series_exactly_once() {
    let c = catalog();
    for stream in Stream::ALL {
        let mut used = vec![false; c.stream(stream).slots];
        for f in c.families.iter().filter(|f| f.scope == Scope::Stream(stream)) {
            for s in &f.series {
                for (slot, u) in used.iter_mut().enumerate().skip(s.slot).take(f.slots_per_series()) {
                    assert!(!*u, "slot {slot} used twice ({})", f.name);
                    *u = true;
                }
            }
        }
        assert!(used.iter().all(|u| *u), "{stream:?} has unused slots");
    }
}

/// The reference catalog of the Go exporter (copied from the shared reference) and ours must
/// agree on every name, type and label set; sources differ only where README documents a fix.
#[test]
fn agrees_with_reference_catalog() {
    let reference = include_str!("../../tests/fixtures/reference-metrics.tsv");
    let mut by_name: HashMap<String, &Family> = HashMap::new();
    for f in &catalog().families {
        let sub = match f.scope {
            Scope::Stream(s) => s.subsystem("rt"),
            _ => "rt",
        };
        by_name.insert(fq_name("fastly", sub, f.name), f);
    }
    let mut seen = 0;
    for line in reference.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, typ, labels, source) = (cols[1], cols[2], cols[3], cols[4]);
        let fam = by_name.get(name).unwrap_or_else(|| panic!("{name} missing from catalog"));
        assert_eq!(fam.kind.as_str(), typ, "{name}");
        seen += 1;
        let Scope::Stream(stream) = fam.scope else {
            if name != "fastly_rt_build_info" {
                assert_eq!(fam.labels.join(","), labels, "{name}");
            }
            continue;
        };
        let mut want: Vec<&str> = vec!["service_id", "service_name", "datacenter"];
        want.extend(stream.entity_label());
        want.extend(fam.labels.iter().copied());
        assert_eq!(want.join(","), labels, "{name}");
        let fixed = name.starts_with("fastly_rt_otfp_")
            || name.starts_with("fastly_origin_resp_")
            || fam.kind == Kind::Histogram;
        if !fixed {
            let ours: Vec<String> = fam.series.iter().map(describe).collect();
            assert_eq!(ours.join(";"), source, "{name}");
        }
    }
    // Every family of the reference, and beyond it only the exporter's own.
    let own = catalog().families.iter().filter(|f| matches!(f.scope, Scope::Exporter(_))).count();
    assert_eq!(seen + own, catalog().families.len());
}

fn describe(s: &Series) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let expr = match &s.source {
        Source::Sum { fields, .. } => fields.join("+"),
        Source::GuardedDiff { plus, minus } => format!("{plus}-{}", minus.join("-")),
        // The weight only matters under -datacenter-group, which the Go exporter does not have.
        Source::Gauge { field, .. } => field.to_string(),
        other => format!("{other:?}"),
    };
    if labels.is_empty() { expr } else { format!("{}:{expr}", labels.join(",")) }
}

#[test]
fn documented_fixes_are_in_place() {
    let c = catalog();
    let otfp = c.family(Scope::Stream(Stream::Realtime), "otfp_total").unwrap();
    assert_eq!(otfp.series[0].source, Source::Sum { fields: vec!["otfp"], scale: 1.0 });
    let hdr = c.family(Scope::Stream(Stream::Origin), "resp_header_bytes_total").unwrap();
    let sources: Vec<&str> = hdr.series.iter().map(|s| s.labels[0].1).collect();
    assert_eq!(sources, ["delivery", "compute", "waf"]);
    let ms = c.family(Scope::Stream(Stream::Realtime), "compute_execution_time_total").unwrap();
    assert_eq!(ms.series[0].source, Source::Sum { fields: vec!["compute_execution_time_ms"], scale: 0.001 });
}

/// Under `-datacenter-group` a gauge's row is shared by several datacenters: every stream gauge
/// names the counts its ratio is made of, so it combines as the ratio of their sums.
#[test]
fn every_stream_gauge_is_weighted_by_fields_of_its_stream() {
    let c = catalog();
    let mut n = 0;
    for f in c.families.iter().filter(|f| matches!(f.scope, Scope::Stream(_)) && f.kind == Kind::Gauge) {
        let Scope::Stream(stream) = f.scope else { continue };
        for s in &f.series {
            let Source::Gauge { weight, .. } = &s.source else { panic!("{}: {:?}", f.name, s.source) };
            assert!(!weight.is_empty(), "{} has no weight", f.name);
            assert!(weight.iter().all(|w| c.stream(stream).field(w).is_some()), "{}", f.name);
            n += 1;
        }
    }
    assert_eq!(n, 2, "edge_hit_ratio and origin_offload");
    let ratio = c.family(Scope::Stream(Stream::Domain), "edge_hit_ratio").unwrap();
    assert_eq!(
        ratio.series[0].source,
        Source::Gauge { field: "edge_hit_ratio", weight: vec!["edge_hit_requests", "edge_miss_requests"] }
    );
    assert!(parse_catalog("domain\tg\tgauge\t\ta~\t\thelp\n").is_err());
    assert!(parse_catalog("domain\tg_total\tcounter\t\ta~b\t\thelp\n").is_err(), "weights are for gauges");
}

#[test]
fn bucket_index_follows_le_semantics() {
    let b = [0.005, 0.01, 0.025];
    assert_eq!(spec::bucket_index(&b, 0.004), 0);
    assert_eq!(spec::bucket_index(&b, 0.005), 0);
    assert_eq!(spec::bucket_index(&b, 0.006), 1);
    assert_eq!(spec::bucket_index(&b, 0.025), 2);
    assert_eq!(spec::bucket_index(&b, 1.0), 3);
}

#[test]
fn malformed_lines_are_rejected_with_line_numbers() {
    let bad = "rt\tx_total\tcounter\t\tfoo bar\t\thelp\n";
    let err = parse_catalog(bad).unwrap_err().to_string();
    assert!(err.starts_with("line 1:"), "{err}");
    assert!(parse_catalog("rt\tx\tcounter\n").is_err());
    assert!(parse_catalog("rt\th\thistogram\t\tfoo\t\thelp\n").is_err());
    assert!(parse_catalog("rt\tg\tgauge\t\ta+b\t\thelp\n").is_err());
}

#[test]
fn fq_name_skips_empty_parts() {
    assert_eq!(fq_name("fastly", "rt", "x"), "fastly_rt_x");
    assert_eq!(fq_name("", "rt", "x"), "rt_x");
    assert_eq!(fq_name("fastly", "", "x"), "fastly_x");
}

#[test]
fn field_index_finds_every_field_and_nothing_else() {
    for stream in Stream::ALL {
        let def = catalog().stream(stream);
        for (i, f) in def.fields.iter().enumerate() {
            assert_eq!(def.field(f), Some(i as u16), "{f}");
        }
        for unknown in ["", "x", "tls", "object_size_other", "requestsX", "requests_", "compute_resp_status_2xy"] {
            assert_eq!(def.field(unknown), None, "{unknown}");
        }
    }
}

#[test]
fn every_typed_family_has_exactly_one_line_and_every_line_an_identifier() {
    // Drop one line: its identifier has no family, which fails the parse.
    let without: String =
        FAMILIES_TSV.lines().filter(|l| !l.starts_with("service\tservice_info\t")).map(|l| format!("{l}\n")).collect();
    let e = parse_catalog(Box::leak(without.into_boxed_str())).unwrap_err().to_string();
    assert!(e.contains("no line declares service_info"), "{e}");
    // Rename a line: the new name has no identifier.
    let renamed = FAMILIES_TSV.replace("account\ttoken_expiration\t", "account\ttoken_expiry\t");
    let e = parse_catalog(Box::leak(renamed.into_boxed_str())).unwrap_err().to_string();
    assert!(e.contains("token_expiry has no identifier"), "{e}");
    // Declare one twice.
    let twice = format!("{FAMILIES_TSV}account\tbuild_info\tgauge\t\t-\t\tagain\n");
    let e = parse_catalog(Box::leak(twice.into_boxed_str())).unwrap_err().to_string();
    assert!(e.contains("build_info is declared twice"), "{e}");
    // And the embedded catalog resolves every identifier.
    for id in ServiceFamily::ALL {
        assert_eq!(catalog().get(Scope::Service(*id)).name, id.name());
    }
    for id in AccountFamily::ALL {
        assert_eq!(catalog().get(Scope::Account(*id)).name, id.name());
    }
    for id in ExporterFamily::ALL {
        assert_eq!(catalog().get(Scope::Exporter(*id)).name, id.name());
    }
}
