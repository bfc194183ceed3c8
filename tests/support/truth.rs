//! The ground truth in the exporter's terms: every `rt` family of the catalog read
//! generically, the value each series must have after a given set of seconds, and the
//! comparison of a scrape with it. Shared by the fault-injection and state-file tests.

use std::collections::BTreeMap;

use fake_fastly::Delivered;

use super::expo::Scrape;

/// One `rt` family of `src/catalog/families.tsv`.
pub struct Family {
    pub name: String,
    pub kind: String,
    /// (fixed labels, source expression) per series.
    pub series: Vec<(Vec<(String, String)>, String)>,
    pub buckets: Vec<f64>,
}

pub fn rt_families() -> Vec<Family> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/catalog/families.tsv");
    let text = std::fs::read_to_string(path).expect("families.tsv");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] != "rt" {
            continue;
        }
        let (name, kind, labels, source) = (cols[1], cols[2], cols[3], cols[4]);
        let series = if labels.is_empty() {
            vec![(Vec::new(), source.to_string())]
        } else {
            source
                .split(';')
                .map(|part| {
                    let (ls, expr) = part.split_once(':').expect("labelled series");
                    let ls = ls
                        .split(',')
                        .map(|kv| kv.split_once('=').expect("label=value"))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    (ls, expr.to_string())
                })
                .collect()
        };
        let buckets = cols
            .get(5)
            .filter(|b| !b.is_empty())
            .map_or(Vec::new(), |b| b.split(',').map(|x| x.parse().expect("bucket bound")).collect());
        out.push(Family { name: name.to_string(), kind: kind.to_string(), series, buckets });
    }
    out
}

/// An expected value: exact, or (for values scaled by a fraction, added per record in
/// floating point) within a relative 1e-9.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    Exact(f64),
    Close(f64),
}

impl Want {
    /// A sum of field values: exact for whole numbers (counts, where every addition is exact),
    /// within 1e-9 for fractional ones (`*_time` seconds): adding the same values in another
    /// order (a scraper rebuilding a counter from differences, truths of several ranges)
    /// rounds differently, by far less than one second counted twice would change.
    pub fn of_sum(v: f64) -> Want {
        if v.fract() == 0.0 { Want::Exact(v) } else { Want::Close(v) }
    }

    pub fn matches(self, have: f64) -> bool {
        match self {
            Want::Exact(w) => have == w,
            Want::Close(w) => (have - w).abs() <= 1e-9 * w.abs().max(1.0),
        }
    }
}

/// The ground truth of one service in the exporter's terms: for each datacenter, the expected
/// value of every series (`name{labels}` without service labels). `truth` sums what was
/// delivered; `bodies` are the same seconds one record each (for per-record guards).
pub fn expected_rows(
    truth: &Delivered,
    bodies: &[(u64, Vec<u8>)],
    families: &[Family],
) -> BTreeMap<String, BTreeMap<String, Want>> {
    let records: Vec<serde_json::Value> =
        bodies.iter().map(|(_, body)| serde_json::from_slice(body).expect("delivered bodies are JSON")).collect();
    let mut out = BTreeMap::new();
    for (dc, totals) in &truth.datacenters {
        let sum = |f: &str| totals.fields.get(f).copied().unwrap_or(0.0);
        let mut want = BTreeMap::new();
        for fam in families {
            let full = format!("fastly_rt_{}", fam.name);
            for (labels, expr) in &fam.series {
                let lbl = |extra: Option<(&str, String)>| {
                    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    if let Some((k, v)) = extra {
                        l.push(format!("{k}={v}"));
                    }
                    l.join(",")
                };
                if fam.kind == "histogram" {
                    // (bound, count) observations of this datacenter.
                    let obs: Vec<(f64, f64)> = if let Some(inner) = expr.strip_prefix("map(") {
                        let (field, scale) = inner.trim_end_matches(')').split_once(',').unwrap();
                        assert_eq!(field, "miss_histogram", "only miss_histogram is generated as a map");
                        let scale: f64 = scale.parse().unwrap();
                        totals.miss_histogram.iter().map(|(k, c)| (*k as f64 * scale, *c as f64)).collect()
                    } else if let Some(inner) = expr.strip_prefix("obs(") {
                        inner
                            .trim_end_matches(')')
                            .split(',')
                            .map(|p| p.split_once('@').unwrap())
                            .map(|(f, at)| (at.parse::<f64>().unwrap(), sum(f)))
                            .collect()
                    } else {
                        panic!("unknown histogram source {expr}");
                    };
                    let count: f64 = obs.iter().map(|(_, c)| c).sum();
                    if expr.starts_with("map(") {
                        assert_eq!(count, totals.miss_histogram_count as f64);
                    }
                    want.insert(format!("{full}_count{{{}}}", lbl(None)), Want::Exact(count));
                    let s: f64 = obs.iter().map(|(at, c)| at * c).sum();
                    want.insert(format!("{full}_sum{{{}}}", lbl(None)), Want::Close(s));
                    for b in &fam.buckets {
                        let n: f64 = obs.iter().filter(|(at, _)| at <= b).map(|(_, c)| c).sum();
                        want.insert(format!("{full}_bucket{{{}}}", lbl(Some(("le", b.to_string())))), Want::Exact(n));
                    }
                    want.insert(format!("{full}_bucket{{{}}}", lbl(Some(("le", "+Inf".into())))), Want::Exact(count));
                } else if let Some(field) = expr.strip_suffix("/1000") {
                    want.insert(format!("{full}{{{}}}", lbl(None)), Want::Close(sum(field) / 1000.0));
                } else if expr.contains('+') {
                    let v = expr.split('+').map(sum).sum();
                    want.insert(format!("{full}{{{}}}", lbl(None)), Want::of_sum(v));
                } else if expr.contains('-') {
                    // a-b-c: a minus (b + c) per record, 0 when negative.
                    let parts: Vec<&str> = expr.split('-').collect();
                    let mut v = 0.0;
                    for r in &records {
                        let block = &r["Data"][0]["datacenter"][dc];
                        let get = |f: &str| block[f].as_f64().unwrap_or(0.0);
                        let sub: f64 = parts[1..].iter().map(|f| get(f)).sum();
                        if get(parts[0]) >= sub {
                            v += get(parts[0]) - sub;
                        }
                    }
                    want.insert(format!("{full}{{{}}}", lbl(None)), Want::Exact(v));
                } else {
                    assert!(expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "unknown source {expr}");
                    want.insert(format!("{full}{{{}}}", lbl(None)), Want::of_sum(sum(expr)));
                }
            }
        }
        out.insert(dc.clone(), want);
    }
    out
}

/// The exporter's rows of service `id` in the same shape as [`expected_rows`] (only
/// `fastly_rt_*` samples with a `datacenter` label; `le` normalised through f64).
pub fn exported_rows(m: &Scrape, id: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, labels, v) in &m.samples {
        if !name.starts_with("fastly_rt_") || !labels.iter().any(|(k, val)| k == "service_id" && val == id) {
            continue;
        }
        let Some(dc) = labels.iter().find(|(k, _)| k == "datacenter").map(|(_, v)| v.clone()) else { continue };
        let mut rest: Vec<String> = labels
            .iter()
            .filter(|(k, _)| !["service_id", "service_name", "datacenter", "le"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rest.sort();
        if let Some((_, le)) = labels.iter().find(|(k, _)| k == "le") {
            let le = if le == "+Inf" { "+Inf".to_string() } else { le.parse::<f64>().expect("le").to_string() };
            rest.push(format!("le={le}"));
        }
        out.entry(dc).or_default().insert(format!("{name}{{{}}}", rest.join(",")), *v);
    }
    out
}

/// Compares the exporter's scrape `m` with the ground truth for `id` (see
/// [`expected_rows`]); returns (series checked, mismatches).
pub fn compare(
    m: &Scrape,
    id: &str,
    truth: &Delivered,
    bodies: &[(u64, Vec<u8>)],
    families: &[Family],
) -> (usize, Vec<String>) {
    let want = expected_rows(truth, bodies, families);
    let have = exported_rows(m, id);
    let mut bad = Vec::new();
    let mut checked = 0;
    let dcs_want: Vec<&String> = want.keys().collect();
    let dcs_have: Vec<&String> = have.keys().filter(|dc| *dc != "aggregate").collect();
    if dcs_want != dcs_have {
        bad.push(format!("{id}: datacenters {dcs_have:?}, ground truth {dcs_want:?}"));
    }
    for (dc, series) in &want {
        let empty = BTreeMap::new();
        let row = have.get(dc).unwrap_or(&empty);
        for (key, w) in series {
            checked += 1;
            match row.get(key) {
                Some(h) if w.matches(*h) => {}
                // A series the exporter omits must be one whose truth is 0.
                None if w.matches(0.0) => {}
                h => bad.push(format!("{id} {dc} {key}: exporter {h:?}, ground truth {w:?}")),
            }
        }
        for key in row.keys().filter(|k| !series.contains_key(*k)) {
            if key.starts_with("fastly_rt_") && !key.contains("realtime_api_requests") {
                bad.push(format!("{id} {dc} {key}: exported but not in the catalog mapping"));
            }
        }
    }
    (checked, bad)
}

/// Counter-like series (counters, histogram parts) of a scrape.
pub fn monotonic_series(m: &Scrape) -> BTreeMap<String, f64> {
    let is_counter = |name: &str| {
        let fam = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        matches!(m.types.get(name).map(String::as_str), Some("counter"))
            || matches!(m.types.get(fam).map(String::as_str), Some("histogram"))
    };
    m.samples
        .iter()
        .filter(|(n, _, _)| is_counter(n) && n.starts_with("fastly_"))
        .map(|(n, l, v)| (super::expo::key(n, l), *v))
        .collect()
}

/// Appends to `errs` every counter of `prev` that went down in `now`.
pub fn check_monotonic(prev: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>, errs: &mut Vec<String>) {
    for (k, v) in now {
        if let Some(p) = prev.get(k)
            && v < p
        {
            errs.push(format!("{k} decreased from {p} to {v}"));
        }
    }
}
