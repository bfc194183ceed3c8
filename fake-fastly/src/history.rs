//! What the `Generated` mode holds and what it served: rt.fastly.com keeps the last 120 s of
//! each stream and answers a past `ts` with the seconds since then; this fake does the same
//! (history length and batch size configurable), records which seconds it wrote in full to
//! whom, and can say exactly what any range of seconds adds up to (the ground truth a test
//! compares an exporter with).
//!
//! Generated data is a pure function of (service, second): the envelope variant is picked by
//! `hash(service) + second`. So the fake keeps no per-second data at all; "history" is only
//! which seconds it agrees to serve.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::payload::{GenPool, tail};
use super::{DcTotals, Delivered, Stream, lock};

/// The numbers of one datacenter (or `datacenter/entity`) block of one envelope.
struct Row {
    name: String,
    nums: Vec<(String, f64)>,
    hist: Vec<(u64, u64)>,
}

/// What one pre-rendered envelope adds to the ground truth.
pub(super) struct VariantRows(Vec<Row>);

impl VariantRows {
    /// Reads the rows of a complete envelope (`Data[0].datacenter`).
    pub(super) fn parse(body: &[u8]) -> VariantRows {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let mut rows = Vec::new();
        if let Some(dcs) = v["Data"][0]["datacenter"].as_object() {
            for (dc, block) in dcs {
                walk(dc, block, &mut rows);
            }
        }
        VariantRows(rows)
    }

    /// Adds this envelope's numbers to `totals`.
    pub(super) fn add_to(&self, totals: &mut BTreeMap<String, DcTotals>) {
        for row in &self.0 {
            let t = totals.entry(row.name.clone()).or_default();
            for (k, n) in &row.nums {
                *t.fields.entry(k.clone()).or_insert(0.0) += n;
            }
            for (b, c) in &row.hist {
                *t.miss_histogram.entry(*b).or_insert(0) += c;
                t.miss_histogram_count += c;
            }
        }
    }
}

/// Numbers of `block` become one row named `name`; nested non-histogram objects (origins,
/// domains) become rows named `name/key`.
fn walk(name: &str, block: &serde_json::Value, rows: &mut Vec<Row>) {
    let Some(obj) = block.as_object() else { return };
    let mut row = Row { name: name.to_string(), nums: Vec::new(), hist: Vec::new() };
    for (k, v) in obj {
        if let Some(n) = v.as_f64() {
            row.nums.push((k.clone(), n));
        } else if let Some(h) = v.as_object() {
            if k.contains("histogram") {
                for (bucket, c) in h {
                    if let (Ok(b), Some(c)) = (bucket.parse::<u64>(), c.as_u64()) {
                        row.hist.push((b, c));
                    }
                }
            } else {
                walk(&format!("{name}/{k}"), v, rows);
            }
        }
    }
    if !row.nums.is_empty() || !row.hist.is_empty() {
        rows.push(row);
    }
}

/// The seconds of one (stream, service) the fake wrote in full, as runs of consecutive
/// seconds, and how many seconds it wrote again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Inclusive `(first, last)` runs, ascending and separated by at least one second.
    pub runs: Vec<(u64, u64)>,
    /// Seconds written again after they had been written once (a restarted exporter asking
    /// again for what its predecessor fetched but did not save).
    pub redelivered: u64,
}

impl Served {
    /// Records the seconds `first..=last` as written.
    fn add(&mut self, first: u64, last: u64) {
        for &(a, b) in &self.runs {
            let (lo, hi) = (a.max(first), b.min(last));
            if lo <= hi {
                self.redelivered += hi - lo + 1;
            }
        }
        self.runs.push((first, last));
        self.runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.runs.len());
        for &(a, b) in &self.runs {
            match merged.last_mut() {
                Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.runs = merged;
    }

    /// Every second written, whether the runs leave gaps or not.
    pub fn seconds(&self) -> u64 {
        self.runs.iter().map(|(a, b)| b - a + 1).sum()
    }
}

/// The served seconds of every (stream, service).
pub(super) type ServedBook = Arc<Mutex<HashMap<(Stream, String), Served>>>;

/// Records `first..=last` for `(stream, id)` in `book`.
pub(super) fn note_served(book: &ServedBook, stream: Stream, id: &str, first: u64, last: u64) {
    lock(book).entry((stream, id.to_string())).or_default().add(first, last);
}

/// `{"AggregateDelay":0,"Data":[`: how every generated envelope starts.
const ENVELOPE_HEAD: &[u8] = br#"{"AggregateDelay":0,"Data":["#;

/// One answer carrying the seconds `first..=last` of service `hash`, with `Timestamp`
/// `last + 1`, as rt.fastly.com answers a `ts` in the past.
pub(super) fn batch_body(pool: &GenPool, hash: u64, first: u64, last: u64) -> Vec<u8> {
    let mut body = ENVELOPE_HEAD.to_vec();
    for s in first..=last {
        if s > first {
            body.push(b',');
        }
        let prefix = pool.prefix(pool.variant(hash, s));
        let record = prefix.strip_prefix(ENVELOPE_HEAD).unwrap_or(&prefix[..]);
        body.extend_from_slice(record);
        body.extend_from_slice(format!("{s}}}").as_bytes());
    }
    body.extend_from_slice(format!("],\"Timestamp\":{}}}", last + 1).as_bytes());
    body
}

/// The ground truth of seconds `first..=last` of service `hash`: what a correct exporter holds
/// after merging exactly those seconds.
pub(super) fn truth(pool: &GenPool, hash: u64, first: u64, last: u64) -> Delivered {
    let mut out = Delivered { ts: (first..=last).collect(), redelivered: 0, datacenters: BTreeMap::new() };
    for s in first..=last {
        pool.variant_rows(pool.variant(hash, s)).add_to(&mut out.datacenters);
    }
    out
}

/// Every second `first..=last` of service `hash` as a one-record envelope, for checks that
/// need per-record values.
pub(super) fn bodies(pool: &GenPool, hash: u64, first: u64, last: u64) -> Vec<(u64, Vec<u8>)> {
    (first..=last)
        .map(|s| {
            let mut body = pool.prefix(pool.variant(hash, s)).to_vec();
            body.extend_from_slice(&tail(s, ""));
            (s, body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_runs_merge_and_count_repeats() {
        let mut s = Served::default();
        s.add(10, 12);
        s.add(14, 14);
        assert_eq!(s.runs, vec![(10, 12), (14, 14)]);
        s.add(13, 13);
        assert_eq!(s.runs, vec![(10, 14)]);
        assert_eq!(s.redelivered, 0);
        s.add(12, 16);
        assert_eq!((s.runs.clone(), s.redelivered, s.seconds()), (vec![(10, 16)], 3, 7));
    }
}
