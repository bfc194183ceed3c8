//! Service discovery end to end: pagination, the service filters, sharding, metric filters,
//! removal of stale series on refresh, the scheduled refresh and an API that is down at start.

use crate::support;

use std::time::{Duration, Instant};

use support::expo::Scrape;
use support::{
    Exporter, FakeFastly, FakeService, StreamMode, fake_with, fixture, rt_polls, start_against, temp_path, wait_until,
};

const T: Duration = Duration::from_secs(15);

/// A stream whose polls are all held (no data, minimal traffic): discovery tests only need
/// the service list.
fn quiet() -> StreamMode {
    StreamMode::Script(Vec::new())
}

/// Every poll at ts 0 gets the real-time fixture once, later polls are held.
fn fixture_once() -> StreamMode {
    StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(40) }
}

fn svc(id: &str, name: &str, version: i64) -> FakeService {
    FakeService::new(id, name, version)
}

fn start(fake: &FakeFastly, extra: &[&str]) -> Exporter {
    start_against(fake, "T", extra)
}

/// `fastly_rt_requests_total` of the fixture's LGA row for `id`/`name` (57 after one poll).
fn lga_requests(m: &Scrape, id: &str, name: &str) -> Option<f64> {
    m.get(&format!(r#"fastly_rt_requests_total{{datacenter="LGA",service_id="{id}",service_name="{name}"}}"#))
}

/// True once `id` has ingested the fixture completely: its rows are merged, its
/// `last_successful_response` (set just after the merge) is exported, and the poll is counted
/// in `realtime_api_requests_total{result="success"}` (counted last, after the poll returns: a
/// scrape can fall between the merge and the count, and that series would be missing).
fn settled(m: &Scrape, id: &str) -> bool {
    m.find("fastly_rt_requests_total", &[("service_id", id), ("datacenter", "LGA")]) == [57.0]
        && !m.find("fastly_rt_last_successful_response", &[("service_id", id)]).is_empty()
        && m.find("fastly_rt_realtime_api_requests_total", &[("service_id", id), ("result", "success")])
            .first()
            .is_some_and(|n| *n >= 1.0)
}

/// Every sample carrying `service_id="id"`.
fn series_of(m: &Scrape, id: &str) -> Vec<String> {
    m.samples
        .iter()
        .filter(|(_, l, _)| l.iter().any(|(k, v)| k == "service_id" && v == id))
        .map(|(n, l, _)| support::expo::key(n, l))
        .collect()
}

/// Number of `GET /service…` requests the fake has seen.
fn list_requests(fake: &FakeFastly) -> usize {
    support::list_requests(fake)
}

/// Whether a recorded request is a page of the service list (not `/service/<id>/…`).
fn is_list(r: &support::RecordedRequest) -> bool {
    r.path_and_query == "/service" || r.path_and_query.starts_with("/service?")
}

/// Sends SIGHUP and waits until the exporter has fetched the service list again and finished
/// the reconcile that follows it (proved by a second refresh starting afterwards).
fn hup_and_settle(exp: &Exporter, fake: &FakeFastly) {
    exp.hup_and_settle(fake);
}

#[test]
fn pagination_follows_the_link_header() {
    // Listed out of order, 3 per page: pages of 3, 3 and 2.
    let ids = ["s5", "s1", "s8", "s3", "s2", "s7", "s4", "s6"];
    let services = ids.iter().map(|id| svc(id, &format!("name-{id}"), 1)).collect();
    let fake = FakeFastly::start(support::FakeConfig {
        services,
        page_size: 3,
        realtime: quiet(),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..Default::default()
    })
    .unwrap();
    let exp = start(&fake, &[]);
    exp.wait_sd(&["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"], T);
    let m = exp.metrics();
    assert_eq!(m.label_values("fastly_rt_service_info", "service_id").len(), 8);
    assert_eq!(m.find("fastly_rt_service_info", &[("service_id", "s7"), ("service_name", "name-s7")]), vec![1.0]);
    let pages: Vec<String> = fake.state().requests().into_iter().filter(is_list).map(|r| r.path_and_query).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    let decoded: Vec<String> = pages.iter().map(|p| p.replace("%5B", "[").replace("%5D", "]")).collect();
    assert!(decoded[0].contains("page=1"), "{decoded:?}");
    // The later pages are exactly the targets of the Link headers (the fake re-encodes the
    // query Go-style, keys sorted; the exporter decodes it before following it).
    for (i, page) in decoded.iter().enumerate().skip(1) {
        let want = format!("/service?filter[include_versions]=false&page={}&per_page=1000", i + 1);
        assert_eq!(page, &want, "{pages:?}");
    }
}

#[test]
fn explicit_service_ids_and_ids_missing_from_the_list() {
    let fake = fake_with(vec![svc("A", "name-A", 3), svc("B", "name-B", 7), svc("C", "name-C", 1)], quiet());
    let exp = start(&fake, &["-service", "B", "-service", "Z"]);
    exp.wait_sd(&["B", "Z"], T);
    let m = exp.metrics();
    assert_eq!(
        m.get(r#"fastly_rt_service_info{service_id="B",service_name="name-B",service_version="7"}"#),
        Some(1.0),
        "{:?}",
        m.with_prefix("fastly_rt_service_info")
    );
    assert_eq!(
        m.get(r#"fastly_rt_service_info{service_id="Z",service_name="Z",service_version="unknown"}"#),
        Some(1.0),
        "{:?}",
        m.with_prefix("fastly_rt_service_info")
    );
    assert_eq!(m.label_values("fastly_rt_service_info", "service_id"), ["B", "Z"]);
    // Z is polled although the list does not know it; A and C are never polled.
    wait_until(
        "polls of B and Z",
        T,
        || !rt_polls(&fake, "Z").is_empty() && !rt_polls(&fake, "B").is_empty(),
        || format!("{:#?}", fake.state().requests()),
    );
    assert!(rt_polls(&fake, "A").is_empty());
    assert!(rt_polls(&fake, "C").is_empty());
}

#[test]
fn service_allow_and_blocklists_match_names() {
    let fake = fake_with(
        vec![
            svc("id1", "prod-api", 1),
            svc("id2", "prod-web", 1),
            svc("id3", "www-main", 1),
            svc("id4", "staging-api", 1),
            svc("id5", "dev-web", 1),
            svc("id6", "www-api", 1),
            // Matches on the name, not the ID: this ID looks like a production one.
            svc("prod-id7", "other", 1),
        ],
        quiet(),
    );
    // OR within the allowlist.
    let allow = start(&fake, &["-service-allowlist", "^prod", "-service-allowlist", "^www"]);
    // OR within the blocklist.
    let block = start(&fake, &["-service-blocklist", "api$", "-service-blocklist", "^dev"]);
    // AND across the two flags.
    let both = start(
        &fake,
        &[
            "-service-allowlist",
            "^prod",
            "-service-allowlist",
            "^www",
            "-service-blocklist",
            "api$",
            "-service-blocklist",
            "main",
        ],
    );
    allow.wait_sd(&["id1", "id2", "id3", "id6"], T);
    block.wait_sd(&["id2", "id3", "prod-id7"], T);
    both.wait_sd(&["id2"], T);
    assert_eq!(both.metrics().label_values("fastly_rt_service_info", "service_name"), ["prod-web"]);
}

/// Shard of `id` among `m`, computed independently of the exporter (xxh64, seed 0, 1-based).
fn shard_of(id: &str, m: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(id.as_bytes(), 0) % m + 1
}

#[test]
fn service_shard_matches_the_go_exporter() {
    // The Go exporter's vectors.
    assert_eq!(shard_of("AbcDef123ghiJKlmnOPsq", 3), 1);
    assert_eq!(shard_of("XXXXXXXXXXXXXXXXXXXXXX", 3), 2);
    let mut ids: Vec<String> = vec!["AbcDef123ghiJKlmnOPsq".into(), "XXXXXXXXXXXXXXXXXXXXXX".into()];
    ids.extend((0..9).map(|i| format!("svc{i}ShardTest00000000")));
    let fake = fake_with(ids.iter().map(|id| svc(id, &format!("n-{id}"), 1)).collect(), quiet());
    let exporters: Vec<Exporter> = (1..=3).map(|n| start(&fake, &["-service-shard", &format!("{n}/3")])).collect();
    let mut seen = Vec::new();
    for (i, exp) in exporters.iter().enumerate() {
        let n = i as u64 + 1;
        let mut want: Vec<&str> = ids.iter().filter(|id| shard_of(id, 3) == n).map(String::as_str).collect();
        want.sort();
        exp.wait_sd(&want, T);
        seen.extend(want.iter().map(|s| s.to_string()));
    }
    seen.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(seen, all, "every service is in exactly one shard");
    assert!(exporters[0].sd().contains(&"AbcDef123ghiJKlmnOPsq".to_string()));
    assert!(exporters[1].sd().contains(&"XXXXXXXXXXXXXXXXXXXXXX".to_string()));
}

/// Names of the families in a scrape.
fn families(m: &Scrape) -> Vec<String> {
    m.types.keys().cloned().collect()
}

#[test]
fn metric_allow_and_blocklists_drop_families_by_full_name() {
    let fake = fake_with(vec![svc("A", "name-A", 1)], fixture_once());
    let allow = start(
        &fake,
        &[
            "-metric-allowlist",
            "^fastly_rt_requests_total$",
            "-metric-allowlist",
            "^fastly_rt_status_(code|group)_total$",
        ],
    );
    let block = start(&fake, &["-metric-blocklist", "^fastly_rt_hits", "-metric-blocklist", "duration_seconds$"]);
    let full = start(&fake, &[]);
    for exp in [&allow, &block, &full] {
        exp.wait_for("the fixture", T, |m| lga_requests(m, "A", "name-A").is_some());
    }
    let all = families(&full.metrics());
    assert!(all.iter().any(|f| f == "fastly_rt_hits_total"), "{all:?}");
    assert!(all.iter().any(|f| f == "fastly_rt_miss_duration_seconds"));

    let m = allow.metrics();
    let kept = families(&m);
    // build_info is never filtered; service_info and last_successful_response only by the
    // blocklist (as upstream); the exporter's own metrics are not Fastly data and are never
    // filtered; every other family must match an allowlist entry.
    let always = ["fastly_rt_build_info", "fastly_rt_service_info", "fastly_rt_last_successful_response"];
    let re = regex::Regex::new(r"^fastly_rt_(requests_total|status_(code|group)_total)$").unwrap();
    for f in kept.iter().filter(|f| !support::is_self_metric(f)) {
        assert!(re.is_match(f) || always.contains(&f.as_str()), "{f} should be filtered out");
    }
    assert!(kept.iter().any(|f| f == "fastly_rt_status_group_total"), "{kept:?}");
    assert!(!kept.iter().any(|f| f == "fastly_rt_compute_resp_status_total"));
    assert!(
        m.find("fastly_rt_status_group_total", &[("service_id", "A"), ("status_group", "2xx")])
            .iter()
            .any(|v| *v > 0.0)
    );
    assert_eq!(lga_requests(&m, "A", "name-A"), Some(57.0));
    assert!(m.with_prefix("fastly_rt_hits_total").is_empty());

    let m = block.metrics();
    let kept = families(&m);
    for f in kept.iter().filter(|f| !support::is_self_metric(f)) {
        assert!(!f.starts_with("fastly_rt_hits") && !f.ends_with("duration_seconds"), "{f} should be blocked");
    }
    assert!(!m.series.keys().any(|k| k.starts_with("fastly_rt_hits")));
    assert!(!m.series.keys().any(|k| k.contains("duration_seconds") && !support::is_self_metric(k)));
    assert_eq!(lga_requests(&m, "A", "name-A"), Some(57.0));
    // Nothing else is lost: the blocked families are the only difference.
    let blocked: Vec<&String> = all.iter().filter(|f| !kept.contains(f)).collect();
    assert!(blocked.iter().all(|f| f.starts_with("fastly_rt_hits") || f.ends_with("duration_seconds")), "{blocked:?}");
    assert!(!blocked.is_empty());
}

#[test]
fn a_removed_service_loses_all_its_series() {
    let fake = fake_with(vec![svc("A", "name-A", 1), svc("B", "name-B", 1)], fixture_once());
    let exp = start(&fake, &[]);
    exp.wait_for("data of both services", T, |m| settled(m, "A") && settled(m, "B"));
    let before = exp.metrics();
    assert!(series_of(&before, "B").len() > 1000);
    fake.state().set_services(vec![svc("A", "name-A", 1)]);
    hup_and_settle(&exp, &fake);
    exp.wait_sd(&["A"], T);
    let after = exp.metrics();
    assert_eq!(series_of(&after, "B"), Vec::<String>::new());
    assert!(!after.series.keys().any(|k| k.contains("name-B")));
    // A is untouched.
    assert_eq!(series_of(&after, "A"), series_of(&before, "A"));
    assert_eq!(lga_requests(&after, "A", "name-A"), Some(57.0));
}

#[test]
fn rename_and_version_change_relabel_every_series() {
    let fake = fake_with(vec![svc("A", "old-name", 1)], fixture_once());
    let exp = start(&fake, &[]);
    exp.wait_for("data", T, |m| settled(m, "A"));
    let before = exp.metrics();
    let n_before = series_of(&before, "A").len();
    assert!(
        before.get(r#"fastly_rt_service_info{service_id="A",service_name="old-name",service_version="1"}"#).is_some()
    );

    fake.state().set_services(vec![svc("A", "new-name", 2)]);
    hup_and_settle(&exp, &fake);
    let m = exp.wait_for("the new labels", T, |m| {
        m.get(r#"fastly_rt_service_info{service_id="A",service_name="new-name",service_version="2"}"#).is_some()
    });
    assert!(!m.series.keys().any(|k| k.contains("old-name")), "old label sets remain");
    let names: Vec<String> = m
        .samples
        .iter()
        .filter(|(_, l, _)| l.iter().any(|(k, v)| k == "service_id" && v == "A"))
        .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == "service_name").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(names.len(), n_before);
    assert!(names.iter().all(|n| n == "new-name"));
    assert_eq!(m.label_values("fastly_rt_service_info", "service_version"), ["2"]);
    // Same service, same counters: a rename is not a reset.
    assert_eq!(lga_requests(&m, "A", "new-name"), Some(57.0));

    // A version bump alone.
    fake.state().set_services(vec![svc("A", "new-name", 3)]);
    hup_and_settle(&exp, &fake);
    let m = exp.wait_for("version 3", T, |m| m.label_values("fastly_rt_service_info", "service_version") == ["3"]);
    assert_eq!(m.find("fastly_rt_service_info", &[("service_id", "A")]).len(), 1);
    assert_eq!(lga_requests(&m, "A", "new-name"), Some(57.0));
}

#[test]
fn a_changed_filter_in_the_config_file_applies_on_sighup() {
    let fake = fake_with(vec![svc("A", "keep-a", 1), svc("B", "drop-b", 1), svc("C", "keep-c", 1)], fixture_once());
    let conf = temp_path("filters.conf");
    std::fs::write(&conf, "# nothing filtered yet\nservice-blocklist ^nothing$\n").unwrap();
    let exp = start(&fake, &["-config-file", conf.to_str().unwrap()]);
    exp.wait_for("data of all three", T, |m| ["A", "B", "C"].iter().all(|id| settled(m, id)));
    let before = exp.metrics();

    std::fs::write(&conf, "service-blocklist ^drop\n").unwrap();
    hup_and_settle(&exp, &fake);
    exp.wait_sd(&["A", "C"], T);
    let m = exp.metrics();
    assert!(series_of(&m, "B").is_empty(), "{:?}", series_of(&m, "B"));
    for (id, name) in [("A", "keep-a"), ("C", "keep-c")] {
        assert_eq!(lga_requests(&m, id, name), Some(57.0), "{id} was reset");
        assert_eq!(series_of(&m, id), series_of(&before, id));
    }
    // The still-selected services were not restarted: no new poll from ts 0.
    for id in ["A", "C"] {
        let zero = rt_polls(&fake, id).iter().filter(|r| r.path_and_query.ends_with("/ts/0")).count();
        assert_eq!(zero, 1, "{id} polled from ts 0 again");
    }

    // Allowing it again brings B back.
    std::fs::write(&conf, "# all again\n").unwrap();
    hup_and_settle(&exp, &fake);
    exp.wait_sd(&["A", "B", "C"], T);
    exp.wait_for("B's data again", T, |m| lga_requests(m, "B", "drop-b").is_some());
    let _ = std::fs::remove_file(&conf);
}

#[test]
fn scheduled_refresh_runs_every_service_refresh() {
    let fake = fake_with(vec![svc("A", "name-A", 1)], quiet());
    let exp = start(&fake, &["-service-refresh", "15s"]);
    exp.wait_sd(&["A"], T);
    let first = Instant::now();
    fake.state().set_services(vec![svc("A", "name-A", 1), svc("B", "name-B", 1)]);
    exp.wait_sd(&["A", "B"], Duration::from_secs(30));
    let lists: Vec<Instant> = fake.state().requests().into_iter().filter(is_list).map(|r| r.at).collect();
    let t0 = lists[0];
    assert_eq!(
        lists.len(),
        2,
        "one refresh at start, one scheduled: {:?}\n{}",
        lists.iter().map(|t| *t - t0).collect::<Vec<_>>(),
        exp.output()
    );
    let gap = lists[1] - lists[0];
    assert!(gap >= Duration::from_secs(14), "second refresh only {gap:?} after the first");
    assert!(first.elapsed() < Duration::from_secs(30));
    assert_eq!(exp.metrics().find("fastly_rt_service_info", &[("service_name", "name-B")]), [1.0]);
}

#[test]
fn api_down_at_start_then_recovery_and_later_failures() {
    let fake = fake_with(vec![svc("A", "name-A", 1), svc("B", "name-B", 1)], fixture_once());
    fake.state().set_route("/service", 500, br#"{"msg":"internal error"}"#.to_vec());
    let exp = start(&fake, &[]);
    wait_until("a first (failing) service list request", T, || list_requests(&fake) >= 1, || exp.output());
    let (status, body) = exp.get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("fastly_rt_build_info"), "{body}");
    assert_eq!(exp.readyz(), 503);
    assert_eq!(exp.sd(), Vec::<String>::new());
    assert_eq!(exp.get("/healthz").0, 200);

    fake.state().remove_route("/service");
    exp.signal("HUP");
    exp.wait_sd(&["A", "B"], T);
    wait_until("/readyz 200", T, || exp.readyz() == 200, || exp.output());
    exp.wait_for("data of both", T, |m| settled(m, "A") && settled(m, "B"));
    // A fresh scrape: the one that saw both settled may have rendered its first families
    // before the last answer was merged (a scrape takes no lock across families; rows are
    // only added), so it can lack the first families of a service. One started after it
    // holds every row.
    let before = exp.metrics();

    // A later failed refresh keeps the services and their series.
    fake.state().set_route("/service", 500, br#"{"msg":"internal error"}"#.to_vec());
    hup_and_settle(&exp, &fake);
    assert_eq!(exp.sd(), ["A", "B"]);
    let after = exp.metrics();
    for id in ["A", "B"] {
        assert_eq!(series_of(&after, id), series_of(&before, id), "{id}");
    }
    assert_eq!(lga_requests(&after, "B", "name-B"), Some(57.0));
    assert!(exp.get("/metrics").0 == 200);
}

#[test]
fn sighup_applies_new_service_ids_and_survives_a_broken_config_file() {
    let fake = fake_with(vec![svc("A", "name-A", 1), svc("B", "name-B", 1)], quiet());
    let conf = temp_path("ids.conf");
    std::fs::write(&conf, "service A\n").unwrap();
    let exp = start(&fake, &["-config-file", conf.to_str().unwrap()]);
    exp.wait_sd(&["A"], T);

    std::fs::write(&conf, "service B\nservice Z\n").unwrap();
    hup_and_settle(&exp, &fake);
    exp.wait_sd(&["B", "Z"], T);

    // A broken file is reported and ignored: the previous filters stay in force.
    std::fs::write(&conf, "service A\nservice-allowlist (\n").unwrap();
    hup_and_settle(&exp, &fake);
    assert_eq!(exp.sd(), ["B", "Z"]);
    let log = exp.output();
    assert!(log.lines().any(|l| l.contains("service-allowlist") && l.contains("ERROR")), "{log}");
    assert_eq!(exp.get("/healthz").0, 200);
    let _ = std::fs::remove_file(&conf);
}

#[test]
fn an_answer_arriving_after_removal_does_not_resurrect_the_service() {
    use fake_fastly::Reply;
    // Every service's first poll is answered with data only after 3 s.
    let body = support::rt_data(1_700_000_001, &[("AMS", 9)]);
    let fake = fake_with(
        vec![svc("A", "name-A", 1), svc("B", "name-B", 1)],
        StreamMode::Script(vec![Reply::new(200, body).with_delay(Duration::from_secs(3))]),
    );
    let exp = start(&fake, &[]);
    exp.wait_sd(&["A", "B"], T);
    wait_until(
        "both first polls",
        T,
        || !rt_polls(&fake, "A").is_empty() && !rt_polls(&fake, "B").is_empty(),
        || exp.output(),
    );
    let asked = rt_polls(&fake, "B")[0].at;
    fake.state().set_services(vec![svc("A", "name-A", 1)]);
    hup_and_settle(&exp, &fake);
    exp.wait_sd(&["A"], T);
    assert!(asked.elapsed() < Duration::from_secs(3), "too slow to race");
    // A's delayed data lands; B's (answered at the same time) must not bring B back.
    let m = exp.wait_for("A's delayed data", T, |m| {
        m.find("fastly_rt_requests_total", &[("service_id", "A"), ("datacenter", "AMS")]) == [9.0]
    });
    std::thread::sleep(Duration::from_millis(300));
    let m2 = exp.metrics();
    for m in [&m, &m2] {
        assert!(series_of(m, "B").is_empty(), "{:?}", series_of(m, "B"));
    }
    assert_eq!(exp.sd(), ["A"]);
}
