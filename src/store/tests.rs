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
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1 }, &b, &mut s);
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
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1 }, &b, &mut s);
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
    t.merge(&MergeContext { def, entity_label: None, names: &Interner::default(), now: 1 }, &b, &mut s);
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
    t.merge(&MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1 }, &b, &mut s);
    assert_eq!(t.rows()[0].values[ratio], 0.75);
    assert_eq!(&*t.rows()[0].labels, "datacenter=\"X\",domain=\"example.com\"");
    b.clear();
    let dc = b.add_name("X");
    let host = b.add_name("example.com");
    b.begin_record(dc, host);
    b.end_record();
    t.merge(&MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1 }, &b, &mut s);
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
