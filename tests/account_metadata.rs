//! Issue 4: account metadata families from the api.fastly.com fixtures.

use crate::support;

use std::time::Duration;

use support::{Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, fixture, start_against};

const SERVICE: &str = "qwertMz1ncwA0KC3TBloku";

fn fake() -> FakeFastly {
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new(SERVICE, "test", 575)],
        realtime: StreamMode::NotFound,
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .expect("fake");
    let st = fake.state();
    st.set_route("/datacenters", 200, fixture("api/datacenters.json"));
    st.set_route("/tokens/self", 200, fixture("api/tokens-self-expires.json"));
    st.set_route("/tls/certificates", 200, fixture("api/tls-certificates-two.json"));
    let base = format!("/service/{SERVICE}/version/575/dictionary");
    st.set_route(&base, 200, fixture("api/dictionary-list.json"));
    st.set_route(&format!("{base}/AsDfAOwejFaNQfAaFRxv2J/info"), 200, fixture("api/dictionary-info-dict1.json"));
    st.set_route(&format!("{base}/foobGF34VOKSM0yVzBaQh7/info"), 200, fixture("api/dictionary-info-dict2.json"));
    for p in ["origin_inspector", "domain_inspector"] {
        st.set_route(&format!("/entitled-products/{p}"), 200, br#"{"has_access":false}"#.to_vec());
    }
    fake
}

fn start(fake: &FakeFastly, extra: &[&str]) -> Exporter {
    start_against(fake, "T", extra)
}

#[test]
fn fixtures_become_the_go_exporter_series() {
    let fake = fake();
    let exp = start(&fake, &[]);
    let m = exp.wait_for("metadata", Duration::from_secs(15), |m| {
        !m.find("fastly_rt_dictionary_item_count", &[]).is_empty()
            && !m.find("fastly_rt_datacenter_info", &[]).is_empty()
    });
    let dc = |code: &str, name: &str, group: &str, lat: &str, long: &str| {
        format!(
            r#"fastly_rt_datacenter_info{{datacenter="{code}",group="{group}",latitude="{lat}",longitude="{long}",name="{name}"}}"#
        )
    };
    assert_eq!(m.get(&dc("AMS", "Amsterdam", "Europe", "52.308613", "4.763889")), Some(1.0));
    assert_eq!(m.get(&dc("WLG", "Wellington", "Asia/Pacific", "-41.327221", "174.805278")), Some(1.0));
    assert_eq!(m.get(r#"fastly_rt_token_expiration{token_id="id1234",user_id="user456"}"#), Some(1.7764704e9));
    let certs = m.find("fastly_rt_cert_expiry_timestamp_seconds", &[]);
    assert_eq!(certs.len(), 2);
    let first = r#"fastly_rt_cert_expiry_timestamp_seconds{cn="first.example1.com",id="ZfkhTtm4LdaOprVcdsffx4",issuer="First CA",name="first.example1.com",sn="2738F1765B2273CD3ACCA69D7554690E"}"#;
    assert_eq!(m.get(first), Some(1_687_655_363.0), "not_after 2023-06-25T01:09:23.000Z");
    let second = m.find("fastly_rt_cert_expiry_timestamp_seconds", &[("name", "My Testing Cert")]);
    assert_eq!(second, [1_724_929_653.0]);
    let dict = |id: &str, name: &str, fam: &str| {
        format!(
            r#"fastly_rt_{fam}{{dictionary_id="{id}",dictionary_name="{name}",service_id="{SERVICE}",service_name="test",version="575"}}"#
        )
    };
    assert_eq!(m.get(&dict("AsDfAOwejFaNQfAaFRxv2J", "dict1", "dictionary_item_count")), Some(9.0));
    assert_eq!(m.get(&dict("foobGF34VOKSM0yVzBaQh7", "dict2", "dictionary_item_count")), Some(11.0));
    let last = "dictionary_last_updated_timestamp_seconds";
    assert_eq!(m.get(&dict("AsDfAOwejFaNQfAaFRxv2J", "dict1", last)), Some(1_724_975_476.0));
    assert_eq!(m.get(&dict("foobGF34VOKSM0yVzBaQh7", "dict2", last)), Some(1_765_231_819.0));
    let build = m.find("fastly_rt_build_info", &[("version", env!("CARGO_PKG_VERSION"))]);
    assert_eq!(build, [1.0]);
    assert_eq!(m.types.get("fastly_rt_token_expiration").map(String::as_str), Some("gauge"));
    // Per-target scrapes carry that service's dictionaries and build_info, not account-wide data.
    let (_, body) = exp.get(&format!("/metrics?target={SERVICE}"));
    let t = support::expo::parse(&body);
    assert_eq!(t.find("fastly_rt_dictionary_item_count", &[]).len(), 2);
    assert_eq!(t.find("fastly_rt_build_info", &[]).len(), 1);
    assert!(t.find("fastly_rt_datacenter_info", &[]).is_empty());
}

#[test]
fn token_without_expiry_and_empty_lists_export_no_series() {
    let fake = fake();
    let st = fake.state();
    st.set_route("/tokens/self", 200, fixture("api/tokens-self-no-expiry.json"));
    st.set_route("/tls/certificates", 200, fixture("api/tls-certificates-empty.json"));
    st.set_route(&format!("/service/{SERVICE}/version/575/dictionary"), 200, fixture("api/dictionary-list-empty.json"));
    let exp = start(&fake, &[]);
    exp.wait_for("datacenters", Duration::from_secs(15), |m| !m.find("fastly_rt_datacenter_info", &[]).is_empty());
    // Every source has been fetched and the snapshot published (instead of sleeping 0.5 s).
    exp.hup_and_settle(&fake);
    let (_, body) = exp.get("/metrics");
    assert!(fake.state().count("/tokens/self") >= 1);
    assert!(fake.state().count("/tls/certificates") >= 1);
    for fam in
        ["fastly_rt_token_expiration", "fastly_rt_cert_expiry_timestamp_seconds", "fastly_rt_dictionary_item_count"]
    {
        assert!(!body.contains(&format!("\n{fam}")), "{fam} should have no series");
    }
}

#[test]
fn blocked_families_are_never_fetched_and_403_disables_certificates() {
    let fake = fake();
    fake.state().set_route("/tls/certificates", 403, Vec::new());
    let exp =
        start(&fake, &["-metric-blocklist", "datacenter_info|dictionary_", "-metric-blocklist", "token_expiration"]);
    exp.wait_for("the service", Duration::from_secs(15), |m| !m.find("fastly_rt_service_info", &[]).is_empty());
    exp.hup_and_settle(&fake);
    let st = fake.state();
    assert_eq!(st.count("/datacenters"), 0);
    assert_eq!(st.count("/tokens/self"), 0);
    assert_eq!(st.count(&format!("/service/{SERVICE}/version")), 0);
    assert_eq!(st.count("/tls/certificates"), 1, "a 403 disables certificate refreshes, even on SIGHUP");
    let log = exp.output();
    assert_eq!(log.matches("TLS scope").count(), 1, "{log}");
}

#[test]
fn failures_keep_the_previous_values() {
    let fake = fake();
    let exp = start(&fake, &[]);
    exp.wait_for("metadata", Duration::from_secs(15), |m| {
        !m.find("fastly_rt_dictionary_item_count", &[]).is_empty()
            && !m.find("fastly_rt_datacenter_info", &[]).is_empty()
    });
    let st = fake.state();
    st.set_route("/datacenters", 500, Vec::new());
    st.set_route("/tokens/self", 401, Vec::new());
    st.set_route(&format!("/service/{SERVICE}/version/575/dictionary"), 503, Vec::new());
    // Two refreshes of everything, each run to its end (instead of two 2 s sleeps).
    exp.hup_and_settle(&fake);
    exp.hup_and_settle(&fake);
    let m = exp.metrics();
    assert_eq!(m.find("fastly_rt_datacenter_info", &[]).len(), 2);
    assert_eq!(m.find("fastly_rt_token_expiration", &[]).len(), 1);
    assert_eq!(m.find("fastly_rt_dictionary_item_count", &[]).len(), 2);
    let log = exp.output();
    assert_eq!(log.matches("datacenter refresh failing:").count(), 1, "logged once per state change:\n{log}");
}
