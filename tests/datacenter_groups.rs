//! Issue 22: `-datacenter-group` and the datacenter filters, end to end. The fake serves many
//! POPs in several groups (its `/datacenters` list and all three streams); every grouped
//! series must be the sum of the per-POP series of the same data (gauges: the weighted mean
//! the catalog declares), also under the fault test's ground truth; filters keep only the
//! allowed POPs while the aggregate stays Fastly's total; a POP missing from the list counts
//! under `unknown` and nothing is counted twice when the list learns it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fake_fastly::{DcTotals, Fault, FaultSpec, GROUPS, GenSpec, Stream as FakeStream, datacenters_json_in};
use support::expo::Scrape;
use support::{
    Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, start_against, start_against_env, wait_until,
};

const TOKEN: &str = "tok-GROUPS-22";
const T: Duration = Duration::from_secs(30);

/// The stream families by exposition prefix, with the row label of their entity.
const STREAMS: [(&str, FakeStream, Option<&str>); 3] = [
    ("fastly_rt_", FakeStream::Realtime, None),
    ("fastly_origin_", FakeStream::Origins, Some("origin")),
    ("fastly_domain_", FakeStream::Domains, Some("domain")),
];

fn entitlement(product: &str) -> Vec<u8> {
    format!(r#"{{"product":{{"id":"{product}","object":"product"}},"has_access":true}}"#).into_bytes()
}

/// A fake with `ids`, the three streams as given, both products entitled and `/datacenters`
/// listing `list`.
fn fake(ids: &[&str], modes: [StreamMode; 3], list: Vec<u8>) -> FakeFastly {
    let [realtime, origins, domains] = modes;
    let fake = FakeFastly::start(FakeConfig {
        token: Some(TOKEN.into()),
        services: ids.iter().map(|id| FakeService::new(*id, format!("name of {id}"), 1)).collect(),
        realtime,
        origins,
        domains,
        ..FakeConfig::default()
    })
    .expect("fake starts");
    for product in ["origin_inspector", "domain_inspector"] {
        fake.state().set_route(&format!("/entitled-products/{product}"), 200, entitlement(product));
    }
    fake.state().set_route("/datacenters", 200, list);
    fake
}

/// POP code → group, read from a `/datacenters` body.
fn groups_of(list: &[u8]) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_slice(list).expect("datacenter list");
    v.as_array()
        .expect("array")
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["group"].as_str().unwrap().to_string()))
        .collect()
}

/// One answer of each stream (60 POPs, 2 origins and 2 domains each), then held polls.
fn held_streams(datacenters: usize) -> [StreamMode; 3] {
    let spec = GenSpec { datacenters, entities: 2, seed: 22 };
    let hold = Duration::from_secs(60);
    [FakeStream::Realtime, FakeStream::Origins, FakeStream::Domains]
        .map(|s| StreamMode::FixtureThenHold { body: fake_fastly::generated_body(s, &spec, 1_700_000_000), hold })
}

/// The stream series of service `id`: `name{labels}` (labels sorted, service labels left out,
/// `le` normalised) → value, with the datacenter label replaced through `dc` (series that
/// `dc` makes equal are summed).
fn stream_series(m: &Scrape, id: &str, dc: &dyn Fn(&str) -> String) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (name, labels, v) in &m.samples {
        if !STREAMS.iter().any(|(p, _, _)| name.starts_with(p))
            || !labels.iter().any(|(k, x)| k == "service_id" && x == id)
        {
            continue;
        }
        if !labels.iter().any(|(k, _)| k == "datacenter") {
            continue;
        }
        *out.entry(row_key(name, labels, dc)).or_default() += *v;
    }
    out
}

fn row_key(name: &str, labels: &[(String, String)], dc: &dyn Fn(&str) -> String) -> String {
    let mut l: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != "service_id" && k != "service_name")
        .map(|(k, v)| match k.as_str() {
            "datacenter" => format!("datacenter={}", dc(v)),
            "le" if v != "+Inf" => format!("le={}", v.parse::<f64>().expect("le")),
            _ => format!("{k}={v}"),
        })
        .collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

/// Counts the sample lines of a scrape body that are stream rows.
fn stream_lines(body: &str) -> usize {
    body.lines().filter(|l| STREAMS.iter().any(|(p, _, _)| l.starts_with(p)) && l.contains("datacenter=\"")).count()
}

/// Whole numbers (counts) must be equal; others (seconds from float fields, scaled values,
/// histogram sums, gauges) were added in another order than the ground truth's, so they are
/// compared within a relative 1e-9. Two different whole floats below 2^52 differ by at
/// least 1, so a count can never pass as "close".
fn same(have: f64, want: f64, exact: bool) -> bool {
    if exact && have.fract() == 0.0 && want.fract() == 0.0 { have == want } else { close(have, want) }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

// ---- The catalog, read generically (as tests/faults.rs does), for all three streams. ----

/// One stream family of `src/catalog/families.tsv`.
struct Family {
    /// Full name, e.g. `fastly_domain_edge_hit_ratio`.
    name: String,
    kind: String,
    /// (fixed labels, source expression) per series.
    series: Vec<(Vec<(String, String)>, String)>,
    buckets: Vec<f64>,
}

fn families(scope: &str) -> Vec<Family> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/catalog/families.tsv")).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] != scope {
            continue;
        }
        let series = if cols[3].is_empty() {
            vec![(Vec::new(), cols[4].to_string())]
        } else {
            cols[4]
                .split(';')
                .map(|part| {
                    let (ls, expr) = part.split_once(':').expect("labelled series");
                    let ls = ls.split(',').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.into(), v.into()));
                    (ls.collect(), expr.to_string())
                })
                .collect()
        };
        let buckets = cols[5].split(',').filter(|b| !b.is_empty()).map(|b| b.parse().unwrap()).collect();
        out.push(Family { name: format!("fastly_{scope}_{}", cols[1]), kind: cols[2].into(), series, buckets });
    }
    out
}

/// The counter family fed by exactly `field` (a gauge's weight is named by its field).
fn counter_of<'a>(fams: &'a [Family], field: &str) -> &'a Family {
    fams.iter().find(|f| f.kind == "counter" && f.series.len() == 1 && f.series[0].1 == field).expect("weight family")
}

// ---- Grouped = per-POP, from two exporters fed the same answers. ----

/// Folds per-POP series into per-group ones: counters and histograms summed, gauges the
/// mean weighted by the per-POP rows' own weight counters (one answer: the counters are that
/// answer's values), as the catalog declares.
fn regroup(
    per_pop: &BTreeMap<String, f64>,
    m: &Scrape,
    id: &str,
    groups: &BTreeMap<String, String>,
) -> BTreeMap<String, f64> {
    let group = |dc: &str| groups.get(dc).cloned().unwrap_or_else(|| "unknown".into());
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let mut gauges: BTreeMap<String, (f64, f64, f64, f64)> = BTreeMap::new();
    let domain = families("domain");
    for (name, labels, v) in &m.samples {
        // Only the series of `per_pop` (one service; after filtering, the allowed POPs).
        let own = labels.iter().any(|(k, x)| k == "service_id" && x == id);
        if !own || !per_pop.contains_key(&row_key(name, labels, &|d| d.to_string())) {
            continue;
        }
        let grouped = row_key(name, labels, &group);
        match m.types.get(name.as_str()).map(String::as_str) {
            Some("gauge") => {
                let fam = domain.iter().find(|f| &f.name == name).expect("stream gauges are Domain Inspector's");
                let (_, weights) = fam.series[0].1.split_once('~').expect("weighted gauge");
                let row_labels: Vec<(String, String)> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                let w: f64 = weights
                    .split('+')
                    .map(|f| {
                        let c = counter_of(&domain, f);
                        per_pop.get(&row_key(&c.name, &row_labels, &|d| d.to_string())).copied().unwrap_or(0.0)
                    })
                    .sum();
                let g = gauges.entry(grouped).or_default();
                *g = (g.0 + v * w, g.1 + w, g.2 + v, g.3 + 1.0);
            }
            _ => *out.entry(grouped).or_default() += v,
        }
    }
    for (k, (vw, w, v, n)) in gauges {
        out.insert(k, if w > 0.0 { vw / w } else { v / n });
    }
    out
}

#[test]
fn grouped_series_are_the_per_pop_series_summed_in_all_three_streams() {
    let list = datacenters_json_in(60, &GROUPS[..5]);
    let groups = groups_of(&list);
    let fake = fake(&["svc"], held_streams(60), list);
    let per_pop = start_against(&fake, TOKEN, &[]);
    let grouped = start_against(&fake, TOKEN, &["-datacenter-group"]);
    // The census runs once a second: every stream's count must have caught up with its rows
    // (each stream's answer brings all of its rows at once), not only the last stream's.
    let loaded = |m: &Scrape| {
        STREAMS.iter().all(|(p, _, _)| m.samples.iter().any(|(n, _, _)| n.starts_with(p)))
            && ["realtime", "origins", "domains"]
                .iter()
                .all(|s| m.get(&format!("fastly_exporter_series{{stream=\"{s}\"}}")).is_some_and(|v| v > 0.0))
    };
    let pm = per_pop.wait_settled("per-POP data in all streams", T, |m| {
        loaded(m) && m.label_values("fastly_rt_requests_total", "datacenter").len() == 60
    });
    let gm = grouped.wait_settled("grouped data in all streams", T, loaded);

    // Every grouped series is the sum (gauges: the weighted mean) of its POPs' series.
    let have = stream_series(&gm, "svc", &|d| d.to_string());
    let per_pop_series = stream_series(&pm, "svc", &|d| d.to_string());
    let want = regroup(&per_pop_series, &pm, "svc", &groups);
    assert_eq!(have.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same series");
    let bad: Vec<String> =
        want.iter().filter(|(k, w)| !close(have[*k], **w)).map(|(k, w)| format!("{k}: {} vs {w}", have[k])).collect();
    assert!(bad.is_empty(), "{} differ:\n{}", bad.len(), bad[..bad.len().min(30)].join("\n"));
    let labels: BTreeSet<String> = gm.label_values("fastly_rt_requests_total", "datacenter").into_iter().collect();
    assert_eq!(labels, GROUPS[..5].iter().map(|g| g.to_string()).collect(), "the datacenter label holds the group");
    for (prefix, _, _) in STREAMS {
        assert!(have.keys().any(|k| k.starts_with(prefix)), "{prefix} is grouped");
    }
    let ratio = have.keys().filter(|k| k.starts_with("fastly_domain_edge_hit_ratio")).count();
    assert_eq!(ratio, 10, "5 groups x 2 domains");

    // datacenter_info keeps listing POPs, with the group the grouped series carry.
    let info = gm.label_values("fastly_rt_datacenter_info", "datacenter");
    assert_eq!(info.len(), 60);
    assert_eq!(gm.find("fastly_rt_datacenter_info", &[("datacenter", "LHR"), ("group", &groups["LHR"])]), [1.0]);

    // At 60 POPs in 5 groups, a service's scrape is at most a tenth of the per-POP one.
    let (_, pop_body) = per_pop.get("/metrics?target=svc");
    let (_, group_body) = grouped.get("/metrics?target=svc");
    let count = |body: &str| body.lines().filter(|l| !l.starts_with('#')).count();
    let (n_pop, n_group) = (count(&pop_body), count(&group_body));
    eprintln!(
        "one service, 60 POPs in 5 groups, 2 origins and 2 domains: {n_pop} series ({} bytes) per POP, \
         {n_group} ({} bytes) grouped",
        pop_body.len(),
        group_body.len()
    );
    assert!(n_group * 10 <= n_pop, "{n_group} grouped vs {n_pop} per POP");

    // The census says what each mode costs, for the same data, from either side.
    for (m, body) in [(&pm, &pop_body), (&gm, &group_body)] {
        let served: f64 = ["realtime", "origins", "domains"]
            .iter()
            .filter_map(|s| m.get(&format!("fastly_exporter_series{{stream=\"{s}\"}}")))
            .sum();
        assert_eq!(served as usize, stream_lines(body), "fastly_exporter_series counts what is served");
    }
    let by_mode = |m: &Scrape, mode: &str| -> usize {
        ["realtime", "origins", "domains"]
            .iter()
            .map(|s| {
                m.get(&format!("fastly_exporter_series_by_mode{{mode=\"{mode}\",stream=\"{s}\"}}")).unwrap() as usize
            })
            .sum()
    };
    for m in [&pm, &gm] {
        assert_eq!(by_mode(m, "datacenter"), stream_lines(&pop_body));
        assert_eq!(by_mode(m, "group"), stream_lines(&group_body));
        assert_eq!(by_mode(m, "aggregate"), stream_lines(&group_body) / 5);
    }
    assert_eq!(gm.get(r#"fastly_exporter_datacenters{state="listed"}"#), Some(60.0));
    assert_eq!(gm.get(r#"fastly_exporter_datacenters{state="unlisted"}"#), Some(0.0));
    assert!(pm.get(r#"fastly_exporter_datacenters{state="listed"}"#).is_none(), "no placement step by default");
}

// ---- Filters. ----

#[test]
fn filters_keep_only_allowed_datacenters_and_the_aggregate_keeps_every_one() {
    let list = fake_fastly::datacenters_json(20);
    let groups = groups_of(&list);
    let fake = fake(&["svc"], held_streams(20), list);
    // OR within a flag, AND across flags: AMS, FRA, LHR or NRT, but not FRA.
    let filters =
        ["-datacenter-allowlist", "^(AMS|FRA|LHR)$", "-datacenter-allowlist", "^NRT$", "-datacenter-blocklist", "FRA"];
    let allowed = ["AMS", "LHR", "NRT"];
    let all = start_against(&fake, TOKEN, &[]);
    let only = start_against(&fake, TOKEN, &filters);
    let mut grouped_args = filters.to_vec();
    grouped_args.push("-datacenter-group");
    let grouped = start_against(&fake, TOKEN, &grouped_args);
    let aggregate = start_against(&fake, TOKEN, &["-aggregate-only"]);
    let mut aggregate_args = filters.to_vec();
    aggregate_args.push("-aggregate-only");
    let aggregate_filtered = start_against(&fake, TOKEN, &aggregate_args);
    let loaded = |m: &Scrape| {
        STREAMS.iter().all(|(p, _, _)| m.samples.iter().any(|(n, _, _)| n.starts_with(p)))
            && m.get(r#"fastly_exporter_series{stream="domains"}"#).is_some_and(|v| v > 0.0)
            && !m.label_values("fastly_rt_datacenter_info", "datacenter").is_empty()
    };
    let am = all.wait_settled("all POPs", T, |m| {
        loaded(m) && m.label_values("fastly_rt_requests_total", "datacenter").len() == 20
    });
    let om = only.wait_settled("the allowed POPs", T, loaded);
    let gm = grouped.wait_settled("the allowed POPs, grouped", T, loaded);
    let agg = |e: &Exporter| {
        e.wait_settled("the aggregate", T, |m| {
            STREAMS.iter().all(|(p, _, _)| m.samples.iter().any(|(n, _, _)| n.starts_with(p)))
        })
    };
    let (ag, agf) = (agg(&aggregate), agg(&aggregate_filtered));

    // Only the allowed POPs, in every stream and in datacenter_info, with the unfiltered values.
    let have = stream_series(&om, "svc", &|d| d.to_string());
    let everything = stream_series(&am, "svc", &|d| d.to_string());
    let want: BTreeMap<String, f64> = everything
        .iter()
        .filter(|(k, _)| {
            allowed
                .iter()
                .any(|dc| k.contains(&format!("datacenter={dc},")) || k.ends_with(&format!("datacenter={dc}}}")))
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(have, want);
    for (prefix, _, _) in STREAMS {
        assert!(have.keys().any(|k| k.starts_with(prefix)), "{prefix}");
    }
    assert_eq!(om.label_values("fastly_rt_requests_total", "datacenter"), allowed);
    assert_eq!(om.label_values("fastly_origin_responses_total", "datacenter"), allowed);
    assert_eq!(om.label_values("fastly_rt_datacenter_info", "datacenter"), allowed);
    assert_eq!(om.get(r#"fastly_exporter_datacenters{state="filtered"}"#), Some(17.0));
    assert_eq!(om.get(r#"fastly_exporter_datacenters{state="listed"}"#), Some(3.0));

    // Filter first, then group: the groups sum the allowed POPs only.
    let want = regroup(&want, &am, "svc", &groups);
    let have = stream_series(&gm, "svc", &|d| d.to_string());
    assert_eq!(have.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    assert!(want.iter().all(|(k, w)| close(have[k], *w)), "grouped after filtering");

    // The aggregate is Fastly's own total: the same with or without filters, and the sum of
    // every POP.
    let rt = |m: &Scrape| stream_series(m, "svc", &|d| d.to_string());
    assert_eq!(rt(&ag), rt(&agf), "the filters do not touch the aggregate");
    let sum: f64 = am.find("fastly_rt_requests_total", &[("service_id", "svc")]).iter().sum();
    assert_eq!(agf.find("fastly_rt_requests_total", &[("datacenter", "aggregate")]), [sum]);
}

// ---- Ground truth under faults. ----

/// Expected series per (group, entity) from the fake's ground truth: counters and histograms
/// from the delivered sums, `a-b-c` per record, gauges from the last answer (weighted mean).
fn expected_grouped(
    fake: &FakeFastly,
    id: &str,
    stream: FakeStream,
    scope: &str,
    entity_label: Option<&str>,
    group: &dyn Fn(&str) -> String,
) -> BTreeMap<String, (f64, bool)> {
    let fams = families(scope);
    let truth = fake.state().delivered(stream, id);
    let bodies: Vec<serde_json::Value> =
        fake.state().delivered_bodies(stream, id).iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    // Sums per (group, entity).
    let mut rows: BTreeMap<(String, String), DcTotals> = BTreeMap::new();
    for (key, t) in &truth.datacenters {
        let (dc, entity) = key.split_once('/').unwrap_or((key, ""));
        let row = rows.entry((group(dc), entity.to_string())).or_default();
        for (f, v) in &t.fields {
            *row.fields.entry(f.clone()).or_default() += v;
        }
        for (k, c) in &t.miss_histogram {
            *row.miss_histogram.entry(*k).or_default() += c;
        }
        row.miss_histogram_count += t.miss_histogram_count;
    }
    // Every (POP, entity) block of every delivered record, for per-record expressions.
    let blocks = |body: &serde_json::Value| -> Vec<(String, String, serde_json::Value)> {
        let mut out = Vec::new();
        for (dc, v) in body["Data"][0]["datacenter"].as_object().into_iter().flatten() {
            match entity_label {
                None => out.push((dc.clone(), String::new(), v.clone())),
                Some(_) => {
                    for (e, b) in v.as_object().into_iter().flatten() {
                        out.push((dc.clone(), e.clone(), b.clone()));
                    }
                }
            }
        }
        out
    };
    let mut want = BTreeMap::new();
    for ((g, entity), totals) in &rows {
        let sum = |f: &str| totals.fields.get(f).copied().unwrap_or(0.0);
        let mut labels = vec![format!("datacenter={g}")];
        if let Some(l) = entity_label {
            labels.push(format!("{l}={entity}"));
        }
        for fam in &fams {
            for (fixed, expr) in &fam.series {
                let key = |suffix: &str, extra: &[String]| {
                    let mut l: Vec<String> = labels.clone();
                    l.extend(fixed.iter().map(|(k, v)| format!("{k}={v}")));
                    l.extend_from_slice(extra);
                    l.sort();
                    format!("{}{suffix}{{{}}}", fam.name, l.join(","))
                };
                if fam.kind == "histogram" {
                    let obs: Vec<(f64, f64)> = if let Some(inner) = expr.strip_prefix("map(") {
                        let (_, scale) = inner.trim_end_matches(')').split_once(',').unwrap();
                        let scale: f64 = scale.parse().unwrap();
                        totals.miss_histogram.iter().map(|(k, c)| (*k as f64 * scale, *c as f64)).collect()
                    } else {
                        let inner = expr.strip_prefix("obs(").expect("histogram source").trim_end_matches(')');
                        inner
                            .split(',')
                            .map(|p| p.split_once('@').unwrap())
                            .map(|(f, at)| (at.parse().unwrap(), sum(f)))
                            .collect()
                    };
                    let count: f64 = obs.iter().map(|(_, c)| c).sum();
                    want.insert(key("_count", &[]), (count, true));
                    want.insert(key("_sum", &[]), (obs.iter().map(|(at, c)| at * c).sum(), false));
                    for b in &fam.buckets {
                        let n = obs.iter().filter(|(at, _)| at <= b).map(|(_, c)| c).sum();
                        want.insert(key("_bucket", &[format!("le={b}")]), (n, true));
                    }
                    want.insert(key("_bucket", &["le=+Inf".to_string()]), (count, true));
                } else if fam.kind == "gauge" {
                    let (field, weights) = expr.split_once('~').unwrap_or((expr, ""));
                    let last = bodies.last().expect("a delivered answer");
                    let (mut vw, mut w, mut v, mut n) = (0.0, 0.0, 0.0, 0.0);
                    for (dc, e, b) in blocks(last) {
                        if group(&dc) != *g || e != *entity {
                            continue;
                        }
                        let x = b[field].as_f64().unwrap_or(0.0);
                        let weight: f64 =
                            weights.split('+').filter(|f| !f.is_empty()).map(|f| b[f].as_f64().unwrap_or(0.0)).sum();
                        (vw, w, v, n) = (vw + x * weight, w + weight, v + x, n + 1.0);
                    }
                    if n > 0.0 {
                        want.insert(key("", &[]), (if w > 0.0 { vw / w } else { v / n }, false));
                    }
                } else if let Some(field) = expr.strip_suffix("/1000") {
                    want.insert(key("", &[]), (sum(field) / 1000.0, false));
                } else if expr.contains('-') {
                    let parts: Vec<&str> = expr.split('-').collect();
                    let mut total = 0.0;
                    for body in &bodies {
                        for (dc, e, b) in blocks(body) {
                            if group(&dc) == *g && e == *entity {
                                let get = |f: &str| b[f].as_f64().unwrap_or(0.0);
                                let minus: f64 = parts[1..].iter().map(|f| get(f)).sum();
                                if get(parts[0]) >= minus {
                                    total += get(parts[0]) - minus;
                                }
                            }
                        }
                    }
                    want.insert(key("", &[]), (total, true));
                } else {
                    want.insert(key("", &[]), (expr.split('+').map(sum).sum(), true));
                }
            }
        }
    }
    want
}

/// Compares a scrape with the expected grouped series of one stream; returns mismatches.
fn compare(m: &Scrape, id: &str, prefix: &str, want: &BTreeMap<String, (f64, bool)>) -> Vec<String> {
    let have: BTreeMap<String, f64> =
        stream_series(m, id, &|d| d.to_string()).into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    let mut bad = Vec::new();
    for (k, (w, exact)) in want {
        match have.get(k) {
            Some(h) if same(*h, *w, *exact) => {}
            None if *w == 0.0 => {}
            h => bad.push(format!("{id} {k}: exporter {h:?}, ground truth {w}")),
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)) {
        bad.push(format!("{id} {k}: exported, not in the ground truth"));
    }
    bad
}

/// Counter-like series (counters, histogram parts) of the stream families.
fn monotonic(m: &Scrape) -> BTreeMap<String, f64> {
    m.series
        .iter()
        .filter(|(k, _)| STREAMS.iter().any(|(p, _, _)| k.starts_with(p)))
        .filter(|(k, _)| {
            let name = k.split('{').next().unwrap_or("");
            let fam = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            m.types.get(name).is_some_and(|t| t == "counter") || m.types.get(fam).is_some_and(|t| t == "histogram")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn check_monotonic(prev: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>, errs: &mut Vec<String>) {
    for (k, v) in now {
        if prev.get(k).is_some_and(|p| v < p) {
            errs.push(format!("{k} went down from {} to {v}", prev[k]));
        }
    }
}

/// Delivered answers of every stream of every service (the fake's ground truth).
fn delivered(fake: &FakeFastly, ids: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    for id in ids {
        for (_, s, _) in STREAMS {
            out.push(fake.state().delivered(s, id).ts.len());
        }
    }
    out
}

/// Stops every stream and waits until the ground truth stops growing and two scrapes a second
/// apart agree on every stream series.
fn stop_and_settle(fake: &FakeFastly, exp: &Exporter, ids: &[&str]) -> Scrape {
    for (_, s, _) in STREAMS {
        fake.state().set_stream_mode(s, StreamMode::Script(Vec::new()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let series = |m: &Scrape| -> BTreeMap<String, f64> {
        m.series
            .iter()
            .filter(|(k, _)| STREAMS.iter().any(|(p, _, _)| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let mut last = (delivered(fake, ids), exp.metrics());
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = (delivered(fake, ids), exp.metrics());
        if now.0 == last.0 && series(&now.1) == series(&last.1) {
            return now.1;
        }
        assert!(Instant::now() < deadline, "the exporter never settled; log:\n{}", exp.output());
        last = now;
    }
}

/// Faulty streams (truncated, malformed, refused, reset, stalled, rate-limited answers) for all
/// three streams of two services, 20 POPs in 5 groups, and merges that panic halfway: every
/// grouped series equals the ground truth of the delivered data summed per group.
#[test]
fn grouped_series_equal_the_ground_truth_under_faults() {
    let ids = ["faultG1", "faultG2"];
    let list = datacenters_json_in(20, &GROUPS[..5]);
    let groups = groups_of(&list);
    let mut kinds = vec![
        Fault::Truncated,
        Fault::Malformed,
        Fault::Reset,
        Fault::Stall(Duration::from_secs(1)),
        Fault::RateLimited(1),
    ];
    let spec = |seed, kinds: &Vec<Fault>| FaultSpec {
        data: GenSpec { datacenters: 20, entities: 2, seed },
        seed,
        ..FaultSpec::new(0.2, kinds.clone())
    };
    // After an error status an origin poller waits 30 s (the Go exporter's rule): statuses
    // are left to the real-time and domain streams.
    let origins = StreamMode::Faulty(spec(2, &kinds));
    kinds.push(Fault::Status(503));
    let fake = fake(&ids, [StreamMode::Faulty(spec(1, &kinds)), origins, StreamMode::Faulty(spec(3, &kinds))], list);
    let exp =
        start_against_env(&fake, Some(TOKEN), &["-datacenter-group"], &[("FASTLY_EXPORTER_DEBUG_MERGE_PANICS", "3")]);
    let mut errs = Vec::new();
    let mut prev = monotonic(&exp.metrics());
    wait_until(
        "25 answers of every stream of every service",
        Duration::from_secs(120),
        || {
            let now = monotonic(&exp.metrics());
            check_monotonic(&prev, &now, &mut errs);
            prev = now;
            delivered(&fake, &ids).iter().all(|n| *n >= 25)
        },
        || format!("delivered {:?}; log:\n{}", delivered(&fake, &ids), exp.output()),
    );
    let m = stop_and_settle(&fake, &exp, &ids);
    check_monotonic(&prev, &monotonic(&m), &mut errs);
    assert!(errs.is_empty(), "counters went down:\n{}", errs.join("\n"));
    let group = |dc: &str| groups.get(dc).cloned().unwrap_or_else(|| "unknown".into());
    let mut checked = 0;
    for id in ids {
        for ((prefix, stream, entity), scope) in STREAMS.into_iter().zip(["rt", "origin", "domain"]) {
            let want = expected_grouped(&fake, id, stream, scope, entity, &group);
            checked += want.len();
            let bad = compare(&m, id, prefix, &want);
            assert!(bad.is_empty(), "{} mismatches, first ones:\n{}", bad.len(), bad[..bad.len().min(30)].join("\n"));
        }
    }
    // Each merge that panicked was undone whole and its ts asked again, once.
    let redelivered: u64 =
        ids.iter().flat_map(|id| STREAMS.map(|(_, s, _)| fake.state().delivered(s, id).redelivered)).sum();
    assert_eq!(redelivered, 3, "the three panicked answers are asked again, and only those");
    assert_eq!(m.get("fastly_exporter_poller_restarts_total"), Some(3.0));
    eprintln!("{checked} grouped series equal the ground truth");
}

// ---- Unknown POPs. ----

/// Two POPs are missing from the list: their data counts under `unknown`. Once the list has
/// them, their new data goes to their group; `unknown` keeps what it counted (it never goes
/// down) and unknown + group is exactly the ground truth of the group's POPs.
#[test]
fn unlisted_pops_count_under_unknown_until_listed_and_nothing_twice() {
    let full = datacenters_json_in(12, &GROUPS[..3]);
    let groups = groups_of(&full);
    // POPs 0 and 3 are both in GROUPS[0].
    let codes = fake_fastly::datacenter_codes(12);
    let late = [codes[0].clone(), codes[3].clone()];
    assert!(late.iter().all(|c| groups[c] == GROUPS[0]), "{late:?}");
    let partial: Vec<serde_json::Value> = serde_json::from_slice::<Vec<serde_json::Value>>(&full)
        .unwrap()
        .into_iter()
        .filter(|d| !late.iter().any(|c| d["code"] == c.as_str()))
        .collect();
    let spec = FaultSpec { data: GenSpec { datacenters: 12, entities: 1, seed: 5 }, ..FaultSpec::new(0.0, Vec::new()) };
    let fake = fake(
        &["late"],
        [StreamMode::Faulty(spec), StreamMode::NotFound, StreamMode::NotFound],
        serde_json::to_vec(&partial).unwrap(),
    );
    let exp = start_against(&fake, TOKEN, &["-datacenter-group"]);
    let unknown = |m: &Scrape| m.find("fastly_rt_requests_total", &[("datacenter", "unknown")]).first().copied();
    let mut errs = Vec::new();
    let states = |m: &Scrape| {
        let get = |s: &str| m.get(&format!("fastly_exporter_datacenters{{state=\"{s}\"}}"));
        (get("listed"), get("unlisted"))
    };
    // The census follows within a second.
    let mut prev = exp.wait_for("data under unknown, and the census", T, |m| {
        unknown(m).is_some_and(|v| v > 0.0) && states(m) == (Some(10.0), Some(2.0))
    });
    let mut watch = |m: Scrape| {
        check_monotonic(&monotonic(&prev), &monotonic(&m), &mut errs);
        prev = m.clone();
        m
    };

    // The list learns them (SIGHUP refreshes it at once).
    fake.state().set_route("/datacenters", 200, full.clone());
    exp.signal("HUP");
    let m = exp.wait_for("the full list", T, |m| m.label_values("fastly_rt_datacenter_info", "datacenter").len() == 12);
    let successes = |m: &Scrape| {
        m.find("fastly_rt_realtime_api_requests_total", &[("result", "success")]).first().copied().unwrap_or(0.0)
    };
    let s1 = successes(&watch(m));
    // A poll placed just before the list changed may still merge under unknown; two answers
    // later none can.
    let m2 = watch(exp.wait_for("two more answers", T, |m| successes(m) >= s1 + 2.0));
    let m3 = watch(exp.wait_for("three more answers", T, |m| successes(m) >= successes(&m2) + 3.0));
    let unknown_series = |m: &Scrape| -> BTreeMap<String, f64> {
        stream_series(m, "late", &|d| d.to_string())
            .into_iter()
            .filter(|(k, _)| k.contains("datacenter=unknown"))
            .collect()
    };
    assert!(!unknown_series(&m2).is_empty());
    assert_eq!(unknown_series(&m2), unknown_series(&m3), "unknown stopped growing");
    watch(exp.wait_for("the census", T, |m| states(m) == (Some(12.0), Some(0.0))));

    let m = watch(stop_and_settle(&fake, &exp, &["late"]));
    assert!(errs.is_empty(), "counters went down:\n{}", errs.join("\n"));
    // The ground truth per group, with the late POPs in their group; the exporter's unknown
    // and that group together must equal it exactly: nothing lost, nothing counted twice.
    let want = expected_grouped(&fake, "late", FakeStream::Realtime, "rt", None, &|dc: &str| groups[dc].clone());
    let have = stream_series(&m, "late", &|d| if d == "unknown" { GROUPS[0].to_string() } else { d.to_string() });
    let bad = compare_sums(&have, &want);
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad[..bad.len().min(30)].join("\n"));
    assert!(m.find("fastly_rt_requests_total", &[("datacenter", GROUPS[0])])[0] > 0.0);
}

fn compare_sums(have: &BTreeMap<String, f64>, want: &BTreeMap<String, (f64, bool)>) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, (w, exact)) in want {
        let h = have.get(k).copied().unwrap_or(0.0);
        if !same(h, *w, *exact) {
            bad.push(format!("{k}: exporter {h}, ground truth {w}"));
        }
    }
    bad.extend(have.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("{k}: not in the ground truth")));
    bad
}
