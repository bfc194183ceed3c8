use super::parse::{Mode, parse_response, parse_tolerant};
use crate::catalog::{Scope, Stream, catalog};
use crate::store::{Batch, Interner, Invalid, MergeContext, Scratch, Skipped, StreamTable};

const REALTIME: &[u8] = include_bytes!("../../../tests/fixtures/realtime.json");

fn value(t: &StreamTable, dc: &str, family: &str, series: usize) -> f64 {
    let fam = catalog().family(Scope::Stream(Stream::Realtime), family).unwrap();
    let row = t.rows().iter().find(|r| &*r.dc == dc).unwrap();
    row.values[fam.series[series].slot]
}

/// Merges a real-time batch into `t` at time 1, as a poller would.
fn merge_realtime(t: &mut StreamTable, b: &Batch) {
    let def = catalog().stream(Stream::Realtime);
    t.merge(
        &MergeContext { def, entity_label: None, names: &Interner::default(), now: 1, places: None },
        b,
        &mut Scratch::default(),
    );
}

fn load(mode: Mode) -> (StreamTable, Batch) {
    let mut b = Batch::default();
    parse_response(REALTIME, Stream::Realtime, mode, &mut b).unwrap();
    let mut t = StreamTable::default();
    merge_realtime(&mut t, &b);
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
        &br#"{"Data":[]} trailing"#[..],
        br#"[1,2]"#,
        br#"{"Data":[{"datacenter":{"X":{"requests":1}"#,
        br#"{"Data":{"datacenter":5}}"#,
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
    assert_eq!(recs[0].entries.len(), 2, "unknown skipped, non-integer key skipped, null marked invalid");
    assert!(recs[0].entries[0].value.is_nan(), "null requests: present but invalid");
    assert_eq!(recs[0].entries[1].key, 12.0);
    assert_eq!(b.skipped, [Skipped { field: Some(field("requests")), problem: Invalid::Null }]);
}

#[test]
fn origin_and_domain_fixtures_parse_into_entity_rows() {
    let mut b = Batch::default();
    let origins = include_bytes!("../../../tests/fixtures/origins.json");
    parse_response(origins, Stream::Origin, Mode::PerDatacenter, &mut b).unwrap();
    let recs: Vec<_> = b.records().map(|r| (r.dc.to_string(), r.entity.to_string())).collect();
    assert_eq!(recs, [("TYO".to_string(), "testorigin".to_string())]);
    parse_response(origins, Stream::Origin, Mode::Aggregate, &mut b).unwrap();
    assert_eq!(b.records().next().unwrap().dc, "aggregate");
    let domains = include_bytes!("../../../tests/fixtures/domains.json");
    parse_response(domains, Stream::Domain, Mode::Aggregate, &mut b).unwrap();
    assert_eq!(b.records().next().unwrap().entity, "testhost");
}

fn field(key: &str) -> u16 {
    catalog().stream(Stream::Realtime).field(key).unwrap()
}

/// One answer, three datacenters; `X` carries every kind of bad value next to good ones.
#[test]
fn bad_values_are_skipped_one_by_one_and_the_rest_is_kept() {
    let mut body = br#"{"Data":[{"datacenter":{
        "X":{"requests":-5,"hits":3,"miss":2.5,"pass":"7","errors":null,"synth":[1],"restarts":1e400,
             "hits_time":0.25,"uncacheable":123456789012345678901234567890,"logging":{"a":1},"ipv6":true,
             "miss_histogram":{"10":2,"20":-1,"30":1.5}},
        "Y":7,
        "Z":{"requests":4}}}],"Timestamp":9}"#
        .to_vec();
    let mut b = Batch::default();
    let repaired = parse_tolerant(&mut body, Stream::Realtime, Mode::PerDatacenter, &mut b).unwrap();
    assert_eq!(repaired, 1, "1e400 neutralised");
    assert_eq!(b.timestamp, Some(9), "the answer parsed: ts advances");
    let recs: Vec<_> = b.records().collect();
    assert_eq!(recs.iter().map(|r| r.dc).collect::<Vec<_>>(), ["X", "Z"], "Y is not an object: skipped whole");
    let good: Vec<(u16, f64)> =
        recs[0].entries.iter().filter(|e| !e.value.is_nan()).map(|e| (e.field, e.value)).collect();
    let mh = field("miss_histogram");
    assert_eq!(good, [(field("hits"), 3.0), (field("hits_time"), 0.25), (mh, 2.0)]);
    let problems: Vec<(Option<u16>, Invalid)> = b.skipped.iter().map(|s| (s.field, s.problem)).collect();
    assert_eq!(
        problems,
        [
            (Some(field("requests")), Invalid::Negative),
            (Some(field("miss")), Invalid::Fractional),
            (Some(field("pass")), Invalid::NotANumber),
            (Some(field("errors")), Invalid::Null),
            (Some(field("synth")), Invalid::NotANumber),
            (Some(field("restarts")), Invalid::OutOfRange),
            (Some(field("uncacheable")), Invalid::OutOfRange),
            (Some(field("logging")), Invalid::NotANumber),
            (Some(field("ipv6")), Invalid::NotANumber),
            (Some(mh), Invalid::Negative),
            (Some(mh), Invalid::Fractional),
            (None, Invalid::NotAnObject),
        ]
    );
    // Merged: the good values count, the bad ones add nothing.
    let mut t = StreamTable::default();
    merge_realtime(&mut t, &b);
    assert_eq!(value(&t, "X", "hits_total", 0), 3.0);
    assert_eq!(value(&t, "X", "requests_total", 0), 0.0);
    assert_eq!(value(&t, "Z", "requests_total", 0), 4.0);
    assert!(t.rows().iter().all(|r| r.values.iter().all(|v| v.is_finite())), "no NaN reaches a row");
}

#[test]
fn an_invalid_gauge_keeps_its_previous_value() {
    let def = catalog().stream(Stream::Domain);
    let fam = catalog().family(Scope::Stream(Stream::Domain), "edge_hit_ratio").unwrap();
    let mut t = StreamTable::default();
    let mut s = Scratch::default();
    let mut b = Batch::default();
    for (body, want) in [
        (&br#"{"Data":[{"datacenter":{"X":{"d":{"edge_hit_ratio":0.75}}}}],"Timestamp":2}"#[..], 0.75),
        (br#"{"Data":[{"datacenter":{"X":{"d":{"edge_hit_ratio":-0.5}}}}],"Timestamp":3}"#, 0.75),
        (br#"{"Data":[{"datacenter":{"X":{"d":{"edge_hit_ratio":"x"}}}}],"Timestamp":4}"#, 0.75),
        (br#"{"Data":[{"datacenter":{"X":{"d":{}}}}],"Timestamp":5}"#, 0.0),
    ] {
        parse_tolerant(&mut body.to_vec(), Stream::Domain, Mode::PerDatacenter, &mut b).unwrap();
        t.merge(
            &MergeContext { def, entity_label: Some("domain"), names: &Interner::default(), now: 1, places: None },
            &b,
            &mut s,
        );
        assert_eq!(t.rows()[0].values[fam.series[0].slot], want, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn only_out_of_range_numbers_are_repaired() {
    let mut b = Batch::default();
    // A syntax error next to a number is not "repaired" into something that parses.
    let mut broken = br#"{"Data":[{"datacenter":{"X":{"requests":12 13}}}]}"#.to_vec();
    assert!(parse_tolerant(&mut broken, Stream::Realtime, Mode::PerDatacenter, &mut b).is_err());
    let mut ok = b"{\"Data\":[{\"datacenter\":\n{\"X\":{\"requests\":-1e999,\n\"hits\":2}}}]}".to_vec();
    assert_eq!(parse_tolerant(&mut ok, Stream::Realtime, Mode::PerDatacenter, &mut b).unwrap(), 1);
    assert_eq!(b.skipped, [Skipped { field: Some(field("requests")), problem: Invalid::OutOfRange }]);
}
