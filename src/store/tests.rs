use super::*;
use crate::catalog::{Kind, Scope, Stream, catalog};

fn slot(stream: Stream, name: &str, series: usize) -> usize {
    catalog().family(Scope::Stream(stream), name).unwrap().series[series].slot
}

fn field(stream: Stream, key: &str) -> u16 {
    catalog().stream(stream).field(key).unwrap()
}

fn record(batch: &mut Batch, dc: &str, values: &[(&str, f64)]) {
    let dc = batch.add_name(dc);
    let none = batch.add_name("");
    batch.begin_record(dc, none);
    for (k, v) in values {
        batch.push(field(Stream::Realtime, k), *v);
    }
    batch.end_record();
}

#[test]
fn merge_adds_counters_and_creates_rows_sorted() {
    let def = catalog().stream(Stream::Realtime);
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut s = Scratch::default();
    record(&mut b, "TYO", &[("requests", 3.0), ("compute_execution_time_ms", 1100.0)]);
    record(&mut b, "AMS", &[]);
    record(&mut b, "TYO", &[("requests", 2.0)]);
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None }, &b, &mut s);
    let dcs: Vec<&str> = t.rows().iter().map(|r| &*r.dc).collect();
    assert_eq!(dcs, ["AMS", "TYO"]);
    let tyo = &t.rows()[1];
    assert_eq!(tyo.values[slot(Stream::Realtime, "requests_total", 0)], 5.0);
    assert_eq!(tyo.values[slot(Stream::Realtime, "compute_execution_time_total", 0)], 1.1);
    assert_eq!(&*tyo.labels, "datacenter=\"TYO\"");
    assert!(t.rows()[0].values.iter().all(|v| *v == 0.0), "an empty record makes a zero row");
}

#[test]
fn http_version_one_is_guarded_per_record() {
    let def = catalog().stream(Stream::Realtime);
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut s = Scratch::default();
    record(&mut b, "X", &[("requests", 10.0), ("http2", 3.0), ("http3", 2.0)]);
    record(&mut b, "X", &[("requests", 1.0), ("http2", 5.0)]);
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None }, &b, &mut s);
    let v = &t.rows()[0].values;
    assert_eq!(v[slot(Stream::Realtime, "http_total", 0)], 5.0, "10-3-2, then 0 (underflow guard)");
    assert_eq!(v[slot(Stream::Realtime, "http_total", 1)], 8.0);
    assert_eq!(v[slot(Stream::Realtime, "http_total", 2)], 2.0);
}

#[test]
fn histograms_take_counts_into_buckets() {
    let def = catalog().stream(Stream::Realtime);
    let fam = catalog().family(Scope::Stream(Stream::Realtime), "miss_duration_seconds").unwrap();
    assert_eq!(fam.kind, Kind::Histogram);
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut s = Scratch::default();
    let dc = b.add_name("X");
    let none = b.add_name("");
    b.begin_record(dc, none);
    let mh = field(Stream::Realtime, "miss_histogram");
    b.push_keyed(mh, 5.0, 2.0); // 0.005 s → first bucket (le semantics)
    b.push_keyed(mh, 100.0, 3.0); // 0.1 s → bucket le=0.1
    b.push_keyed(mh, 90000.0, 1.0); // 90 s → +Inf
    b.push(field(Stream::Realtime, "object_size_1k"), 4.0);
    b.end_record();
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None }, &b, &mut s);
    let v = &t.rows()[0].values;
    let first = fam.series[0].slot;
    let nb = fam.buckets.len();
    assert_eq!(v[first], 2.0);
    assert_eq!(v[first + 4], 3.0);
    assert_eq!(v[first + nb], 1.0);
    assert!((v[first + nb + 1] - (0.01 + 0.3 + 90.0)).abs() < 1e-9);
    let obj = catalog().family(Scope::Stream(Stream::Realtime), "object_size_bytes").unwrap();
    assert_eq!(v[obj.series[0].slot], 4.0);
    assert_eq!(v[obj.series[0].slot + obj.buckets.len() + 1], 4096.0);
}

#[test]
fn domain_gauges_are_set_not_added() {
    let def = catalog().stream(Stream::Domain);
    let ratio = slot(Stream::Domain, "edge_hit_ratio", 0);
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut s = Scratch::default();
    let dc = b.add_name("X");
    let host = b.add_name("example.com");
    b.begin_record(dc.clone(), host.clone());
    b.push(field(Stream::Domain, "edge_hit_ratio"), 0.75);
    b.end_record();
    t.merge(
        &MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1, places: None },
        &b,
        &mut s,
    );
    assert_eq!(t.rows()[0].values[ratio], 0.75);
    assert_eq!(&*t.rows()[0].labels, "datacenter=\"X\",domain=\"example.com\"");
    b.clear();
    let dc = b.add_name("X");
    let host = b.add_name("example.com");
    b.begin_record(dc, host);
    b.end_record();
    t.merge(
        &MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1, places: None },
        &b,
        &mut s,
    );
    assert_eq!(t.rows()[0].values[ratio], 0.0, "absent in the last record: set to 0 like upstream");
}

#[test]
fn registry_upsert_rename_and_retain() {
    let r = Registry::new();
    let (a, new) = r.upsert("b-id", "B", "1");
    assert!(new);
    r.upsert("a-id", "A", "1");
    let (again, new) = r.upsert("b-id", "B2", "2");
    assert!(!new && std::sync::Arc::ptr_eq(&a, &again));
    assert_eq!(a.meta().labels, "service_id=\"b-id\",service_name=\"B2\"");
    let ids: Vec<String> = r.snapshot().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["a-id", "b-id"]);
    let gone = r.retain(|id| id == "a-id");
    assert_eq!(gone.len(), 1);
    assert_eq!(r.len(), 1);
}

/// A domain record: (datacenter, domain, fields).
fn domain_record(batch: &mut Batch, dc: &str, domain: &str, values: &[(&str, f64)]) {
    let dc = batch.add_name(dc);
    let host = batch.add_name(domain);
    batch.begin_record(dc, host);
    for (k, v) in values {
        match v.is_nan() {
            true => batch.push_invalid(field(Stream::Domain, k), Invalid::Null),
            false => batch.push(field(Stream::Domain, k), *v),
        }
    }
    batch.end_record();
}

fn grouped() -> Placement {
    let block = vec![regex::Regex::new("^SYD$").unwrap()];
    let p = Placement::new(Grouping::Group, crate::util::filter::Filter::new(Vec::new(), block));
    p.learn([("AMS", "Europe"), ("FRA", "Europe"), ("LHR", "Europe"), ("SYD", "Asia/Pacific"), ("NRT", "Asia")]);
    p
}

#[test]
fn grouped_rows_sum_counters_and_weigh_gauges() {
    let def = catalog().stream(Stream::Domain);
    let (ratio, offload) = (slot(Stream::Domain, "edge_hit_ratio", 0), slot(Stream::Domain, "origin_offload", 0));
    let requests = slot(Stream::Domain, "requests_total", 0);
    let p = grouped();
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut s = Scratch::default();
    let mut places = Places::default();
    let ex = "example.com";
    domain_record(
        &mut b,
        "AMS",
        ex,
        &[("requests", 10.0), ("edge_hit_ratio", 0.9), ("edge_hit_requests", 9.0), ("edge_miss_requests", 1.0)],
    );
    domain_record(
        &mut b,
        "FRA",
        ex,
        &[
            ("requests", 30.0),
            ("edge_hit_ratio", 0.5),
            ("edge_hit_requests", 15.0),
            ("edge_miss_requests", 15.0),
            ("edge_resp_body_bytes", 100.0),
            ("origin_offload", 0.25),
        ],
    );
    // No hits: the API leaves the ratio out, which is 0 with its weight (the misses).
    domain_record(&mut b, "LHR", ex, &[("requests", 20.0), ("edge_miss_requests", 20.0)]);
    domain_record(&mut b, "SYD", ex, &[("requests", 1000.0), ("edge_hit_ratio", 1.0), ("edge_hit_requests", 5.0)]);
    domain_record(&mut b, "NRT", ex, &[("requests", 7.0), ("edge_hit_ratio", 0.4)]);
    domain_record(&mut b, "NEW", ex, &[("requests", 3.0)]);
    p.place(&b, &mut places);
    let names = Interner::default();
    let ctx = MergeContext { def, entity_label: Some("domain"), names: &names, now: 1, places: Some(&places) };
    t.merge(&ctx, &b, &mut s);
    let rows: Vec<(&str, f64, f64, f64)> =
        t.rows().iter().map(|r| (&*r.dc, r.values[requests], r.values[ratio], r.values[offload])).collect();
    // Europe: (9 + 15 + 0) / (10 + 30 + 20) hits over hits and misses; offload from FRA alone
    // (the only one with bytes). Asia: no weight, plain mean of its one value. SYD: filtered.
    assert_eq!(rows, [("Asia", 7.0, 0.4, 0.0), ("Europe", 60.0, 24.0 / 60.0, 0.25), ("unknown", 3.0, 0.0, 0.0)]);
    assert_eq!(&*t.rows()[1].labels, "datacenter=\"Europe\",domain=\"example.com\"");
    let footprint = t.footprint(Keyed::Group, &|_| 0);
    assert_eq!(footprint, Footprint { datacenter: Some(5), group: Some(3), aggregate: 1 });

    // A later answer with only LHR: Europe's gauges are LHR's, counters keep adding; an
    // invalid value leaves the gauge alone.
    let version = t.version();
    b.clear();
    domain_record(
        &mut b,
        "LHR",
        ex,
        &[("requests", 1.0), ("edge_hit_ratio", 1.0), ("edge_hit_requests", 1.0), ("origin_offload", f64::NAN)],
    );
    p.place(&b, &mut places);
    let ctx = MergeContext { def, entity_label: Some("domain"), names: &names, now: 2, places: Some(&places) };
    t.merge(&ctx, &b, &mut s);
    let europe = &t.rows()[1].values;
    assert_eq!((europe[requests], europe[ratio], europe[offload]), (61.0, 1.0, 0.25));
    assert_eq!(t.version(), version, "no new row, no new POP");
}

#[test]
fn filtered_datacenters_make_no_rows_and_the_census_counts_groups() {
    let def = catalog().stream(Stream::Realtime);
    let p = Placement::new(
        Grouping::Datacenter,
        crate::util::filter::Filter::new(vec![regex::Regex::new("^(AMS|FRA|NRT)$").unwrap()], Vec::new()),
    );
    p.learn([("AMS", "Europe"), ("FRA", "Europe"), ("NRT", "Asia")]);
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut places = Places::default();
    for dc in ["AMS", "FRA", "LHR", "NRT"] {
        record(&mut b, dc, &[("requests", 1.0)]);
    }
    p.place(&b, &mut places);
    let ctx = MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: Some(&places) };
    t.merge(&ctx, &b, &mut Scratch::default());
    let dcs: Vec<&str> = t.rows().iter().map(|r| &*r.dc).collect();
    assert_eq!(dcs, ["AMS", "FRA", "NRT"]);
    assert!(t.rows().iter().all(|r| r.pops.is_empty()), "POP sets only for group rows");
    let routes = p.routes();
    let footprint = t.footprint(Keyed::Datacenter, &|dc| routes.group_of(dc));
    assert_eq!(footprint, Footprint { datacenter: Some(3), group: Some(2), aggregate: 1 });
}

/// A weight that is invalid counts as none; with no weight at all the values are averaged.
#[test]
fn invalid_weights_count_as_none() {
    let def = catalog().stream(Stream::Domain);
    let ratio = slot(Stream::Domain, "edge_hit_ratio", 0);
    let p = grouped();
    let mut t = StreamTable::default();
    let mut b = Batch::default();
    let mut places = Places::default();
    domain_record(&mut b, "AMS", "a", &[("edge_hit_ratio", 0.1)]);
    domain_record(&mut b, "FRA", "a", &[("edge_hit_ratio", 0.9), ("edge_hit_requests", f64::NAN)]);
    p.place(&b, &mut places);
    let ctx =
        MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1, places: Some(&places) };
    t.merge(&ctx, &b, &mut Scratch::default());
    assert!((t.rows()[0].values[ratio] - 0.5).abs() < 1e-12, "{}", t.rows()[0].values[ratio]);
}

/// A key that comes twice in one record counts once, with its last value (as serde reads a
/// JSON object's duplicate key), even after the record's other values were already added by
/// the one-pass path: the row is restored and the record applied again the general way.
#[test]
fn a_key_twice_in_a_record_counts_its_last_value_only() {
    let def = catalog().stream(Stream::Realtime);
    let mh = field(Stream::Realtime, "miss_histogram");
    let http3 = field(Stream::Realtime, "http3");
    let apply = |with_duplicates: bool| {
        let mut t = StreamTable::default();
        let mut s = Scratch::default();
        let ctx = MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None };
        let mut b = Batch::default();
        record(&mut b, "X", &[("requests", 1.0), ("http2", 1.0)]);
        let dc = b.add_name("X");
        let none = b.add_name("");
        b.begin_record(dc, none);
        if with_duplicates {
            b.push(field(Stream::Realtime, "requests"), 3.0);
            b.push(field(Stream::Realtime, "http2"), 1.0);
            b.push_invalid(http3, crate::store::Invalid::Negative);
            b.push_keyed(mh, 5.0, 2.0);
            b.push(field(Stream::Realtime, "requests"), 10.0);
            b.push(field(Stream::Realtime, "object_size_1k"), 4.0);
            b.push(http3, 2.0);
        } else {
            b.push(field(Stream::Realtime, "requests"), 10.0);
            b.push(field(Stream::Realtime, "http2"), 1.0);
            b.push(http3, 2.0);
            b.push_keyed(mh, 5.0, 2.0);
            b.push(field(Stream::Realtime, "object_size_1k"), 4.0);
        }
        b.end_record();
        t.merge(&ctx, &b, &mut s);
        // The scratch is left clean: a record without http2 and http3 reads them as absent.
        let mut b = Batch::default();
        record(&mut b, "X", &[("requests", 5.0)]);
        t.merge(&ctx, &b, &mut s);
        t.rows()[0].values.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()
    };
    let got = apply(true);
    assert_eq!(got, apply(false));
    let v = |name: &str, series: usize| f64::from_bits(got[slot(Stream::Realtime, name, series)]);
    assert_eq!(v("requests_total", 0), 16.0);
    // HTTP/1 = requests - http2 - http3 per record: 0, then 10 - 1 - 2, then 5.
    assert_eq!(v("http_total", 0), 12.0);
    assert_eq!(v("http_total", 2), 2.0);
}

#[test]
fn direct_slots_add_what_the_targets_add() {
    // Every number field of each stream, in two records merged twice: the merge with the catalog's direct
    // slots and the one going through every field's targets leave the same bits.
    for stream in [Stream::Realtime, Stream::Origin, Stream::Domain] {
        let def = catalog().stream(stream);
        let mut through_targets = def.clone();
        through_targets.direct.clear();
        let direct = def.direct.iter().filter(|s| **s != crate::catalog::NOT_DIRECT).count();
        assert!(direct > 0 && direct < def.fields.len(), "{stream:?}: both paths are taken ({direct} direct)");
        let mut b = Batch::default();
        for dc in ["AMS", "FRA"] {
            let dc = b.add_name(dc);
            let entity = b.add_name(if stream == Stream::Realtime { "" } else { "e" });
            b.begin_record(dc, entity);
            for (f, kind) in def.field_kinds.iter().enumerate() {
                if *kind == crate::catalog::FieldKind::Number {
                    b.push(f as u16, 1.5 * (f + 1) as f64);
                }
            }
            b.end_record();
        }
        let rows = |def: &crate::catalog::StreamDef| {
            let mut t = StreamTable::default();
            let ctx = MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None };
            // Twice: the second answer adds to what the first left.
            let mut s = Scratch::default();
            t.merge(&ctx, &b, &mut s);
            t.merge(&ctx, &b, &mut s);
            t.rows().iter().flat_map(|r| r.values.iter().map(|v| v.to_bits())).collect::<Vec<u64>>()
        };
        let (fast, slow) = (rows(def), rows(&through_targets));
        assert!(fast.iter().any(|v| *v != 0));
        assert_eq!(fast, slow, "{stream:?}");
    }
}
