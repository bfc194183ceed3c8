//! A small, independent parser of the text exposition for assertions: samples keyed the way
//! client_golang prints a series (labels sorted by name, `le` last), plus HELP/TYPE lines.

use std::collections::BTreeMap;

/// One sample line: metric name, labels in written order, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A parsed scrape.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// Series key → value, e.g. `fastly_rt_requests_total{datacenter="AMS",service_id="x",…}`.
    pub series: BTreeMap<String, f64>,
    /// Family → type.
    pub types: BTreeMap<String, String>,
    /// Family → help text.
    pub help: BTreeMap<String, String>,
    /// Sample lines in order (name, labels).
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Value of a series key, if present.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.series.get(key).copied()
    }

    /// Series whose key starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, f64> {
        self.series.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Samples of metric `name` whose labels include every pair in `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
            .map(|(_, _, v)| *v)
            .collect()
    }

    /// Distinct values of label `label` on metric `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == label).map(|(_, v)| v.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Parses a text exposition; panics on malformed lines (tests want to know).
pub fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            s.help.insert(name.to_string(), help.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').expect("TYPE line");
            s.types.insert(name.to_string(), t.to_string());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        s.series.insert(key(&name, &labels), value);
        s.samples.push((name, labels, value));
    }
    s
}

fn parse_sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let Some((name, rest)) = head.split_once('{') else {
        return (head.to_string(), Vec::new(), value);
    };
    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let lname: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => panic!("bad escape in {line:?}"),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.push((lname, v));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    (name.to_string(), labels, value)
}

/// The client_golang-style series key: labels sorted by name, `le` last.
pub fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = labels.iter().filter(|(k, _)| k != "le").collect();
    sorted.sort();
    let le = labels.iter().find(|(k, _)| k == "le");
    let mut parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((_, v)) = le {
        parts.push(format!("le=\"{}\"", go_le(v)));
    }
    if parts.is_empty() { name.to_string() } else { format!("{name}{{{}}}", parts.join(",")) }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Bucket bounds as Go prints them (the oracle files use Go's %g: `1.024e+06`).
fn go_le(v: &str) -> String {
    v.to_string()
}

/// Rounds like the upstream test (`FormatFloat(v, 'f', 3, 64)` then parse).
pub fn round3(v: f64) -> f64 {
    format!("{v:.3}").parse().unwrap_or(v)
}

/// Compares two series maps the way upstream's `assertMetricOutput` does (values rounded to
/// 3 decimals); returns a report of missing, extra and wrong series (empty when equal).
pub fn diff(expected: &BTreeMap<String, f64>, have: &BTreeMap<String, f64>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in expected {
        match have.get(k) {
            None => out.push(format!("missing {k} (expected {v})")),
            Some(h) if round3(*h) != round3(*v) => out.push(format!("wrong {k}: have {h}, expected {v}")),
            _ => {}
        }
    }
    for k in have.keys() {
        if !expected.contains_key(k) {
            out.push(format!("extra {k}"));
        }
    }
    out
}

/// Loads an oracle JSON file (series → number) from `tests/fixtures/oracle/`.
pub fn oracle(name: &str) -> BTreeMap<String, f64> {
    let bytes = super::fixture(&format!("oracle/{name}"));
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("oracle JSON");
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).expect("number")))
        .collect()
}

/// Applies an oracle patch file (`{"set": {key: value}, "delete": [keys]}`) to a map.
pub fn patched(mut base: BTreeMap<String, f64>, patch_name: &str) -> BTreeMap<String, f64> {
    let bytes = super::fixture(&format!("oracle/{patch_name}"));
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("patch JSON");
    for k in v.get("delete").and_then(|d| d.as_array()).into_iter().flatten() {
        base.remove(k.as_str().expect("key"));
    }
    for (k, val) in v.get("set").and_then(|s| s.as_object()).into_iter().flatten() {
        base.insert(k.clone(), val.as_f64().expect("number"));
    }
    base
}
