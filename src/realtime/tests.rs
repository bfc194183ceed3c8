use super::parse::{Mode, parse_response};
use crate::catalog::{Scope, Stream, catalog};
use crate::table::{Batch, Scratch, StreamTable};

const REALTIME: &[u8] = include_bytes!("../../tests/fixtures/realtime.json");

fn value(t: &StreamTable, dc: &str, family: &str, series: usize) -> f64 {
    let fam = catalog().family(Scope::Stream(Stream::Realtime), family).unwrap();
    let row = t.rows().iter().find(|r| &*r.dc == dc).unwrap();
    row.values[fam.series[series].slot]
}

fn load(mode: Mode) -> (StreamTable, Batch) {
    let mut b = Batch::default();
    parse_response(REALTIME, Stream::Realtime, mode, &mut b).unwrap();
    let mut t = StreamTable::default();
    t.merge(catalog().stream(Stream::Realtime), None, &b, &mut Scratch::default());
    (t, b)
}

#[test]
fn fixture_per_datacenter() {
    let (t, b) = load(Mode::PerDatacenter);
    assert_eq!(b.timestamp, Some(1603401013));
    assert_eq!(t.rows().len(), 10);
    assert_eq!(value(&t, "LGA", "requests_total", 0), 57.0);
}

#[test]
fn fixture_aggregate_spot_values() {
    let (t, _) = load(Mode::Aggregate);
    assert_eq!(t.rows().len(), 1);
    assert_eq!(value(&t, "aggregate", "requests_total", 0), 91.0);
    assert_eq!(value(&t, "aggregate", "http_total", 0), 10.0);
    assert_eq!(value(&t, "aggregate", "http_total", 1), 48.0);
    assert_eq!(value(&t, "aggregate", "http_total", 2), 33.0);
    assert!((value(&t, "aggregate", "compute_execution_time_total", 0) - 28.6).abs() < 1e-9);
    let fam = catalog().family(Scope::Stream(Stream::Realtime), "miss_duration_seconds").unwrap();
    let v = &t.rows()[0].values;
    let s = fam.series[0].slot;
    let count: f64 = v[s..s + fam.buckets.len() + 1].iter().sum();
    assert_eq!(count, 79.0);
    assert!((v[s + fam.buckets.len() + 1] - 6.814).abs() < 1e-9);
}

#[test]
fn broken_bodies_add_nothing() {
    let mut b = Batch::default();
    let cut = &REALTIME[..REALTIME.len() / 2];
    assert!(parse_response(cut, Stream::Realtime, Mode::PerDatacenter, &mut b).is_err());
    assert!(b.is_empty(), "a failed parse leaves an empty batch");
    for bad in [
        &br#"{"Data":[{"datacenter":{"X":{"requests":-1}}}],"Timestamp":2}"#[..],
        br#"{"Data":[{"datacenter":{"X":{"requests":"7"}}}]}"#,
        br#"{"Data":[{"datacenter":{"X":{"miss_histogram":5}}}]}"#,
        br#"{"Data":[]} trailing"#,
        br#"[1,2]"#,
        b"",
    ] {
        assert!(parse_response(bad, Stream::Realtime, Mode::PerDatacenter, &mut b).is_err(), "{bad:?}");
    }
}

#[test]
fn envelope_variants() {
    let mut b = Batch::default();
    let body = br#"{"Data":null,"Timestamp":77,"error":"No data available, please retry","x":[1]}"#;
    parse_response(body, Stream::Realtime, Mode::PerDatacenter, &mut b).unwrap();
    assert_eq!(b.timestamp, Some(77));
    assert_eq!(b.error.as_deref(), Some("No data available, please retry"));
    assert!(b.is_empty());
    let body = br#"{"Data":[{"datacenter":{"A\"B":{"requests":null,"unknown":{"deep":[1]},"miss_histogram":{"x":1,"12":2}}}}],"Timestamp":5}"#;
    parse_response(body, Stream::Realtime, Mode::PerDatacenter, &mut b).unwrap();
    let recs: Vec<_> = b.records().collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].dc, "A\"B");
    assert_eq!(recs[0].entries.len(), 1, "null skipped, unknown skipped, non-integer key skipped");
    assert_eq!(recs[0].entries[0].key, 12.0);
}

#[test]
fn origin_and_domain_fixtures_parse_into_entity_rows() {
    let mut b = Batch::default();
    let origins = include_bytes!("../../tests/fixtures/origins.json");
    parse_response(origins, Stream::Origin, Mode::PerDatacenter, &mut b).unwrap();
    let recs: Vec<_> = b.records().map(|r| (r.dc.to_string(), r.entity.to_string())).collect();
    assert_eq!(recs, [("TYO".to_string(), "testorigin".to_string())]);
    parse_response(origins, Stream::Origin, Mode::Aggregate, &mut b).unwrap();
    assert_eq!(b.records().next().unwrap().dc, "aggregate");
    let domains = include_bytes!("../../tests/fixtures/domains.json");
    parse_response(domains, Stream::Domain, Mode::Aggregate, &mut b).unwrap();
    assert_eq!(b.records().next().unwrap().entity, "testhost");
}
