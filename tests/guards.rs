//! Issue 18: every slot is a guard value. A panic injected inside each guarded section (debug
//! builds: `FASTLY_EXPORTER_DEBUG_PANIC_IN`) gives the slot back: more panics than there are
//! slots, and afterwards every poller still connects and polls. Before, a slot was entered and
//! left by thread ID, and a panic in between leaked it for good; once all had leaked, every
//! new connection waited forever.
//!
//! The fourth guard, the HTTP in-flight scrape count, is shown by `tests/http_hostile.rs`
//! (`panics_before_the_head_answer_500_and_no_worker_is_lost`: shutdown does not wait for
//! requests that panicked).

use crate::support;

use std::time::Duration;

use fake_fastly::{FakeConfig, FakeFastly, GenSpec, TlsIdentity};
use support::{Exporter, FakeService, StreamMode, temp_path};

fn services(n: usize) -> Vec<FakeService> {
    (0..n).map(|i| FakeService::new(format!("g{i}"), format!("guarded-{i}"), 1)).collect()
}

fn fake(n: usize, tls: Option<TlsIdentity>) -> FakeFastly {
    FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: services(n),
        realtime: StreamMode::Generated(GenSpec { datacenters: 2, ..GenSpec::default() }),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        tls,
        ..FakeConfig::default()
    })
    .expect("fake starts")
}

/// Waits until every one of `n` services has data, then checks the panics were caught and
/// counted (`panics` poller restarts) and logged once.
fn every_service_polls_after(exp: &Exporter, n: usize, panics: f64, site: &str) {
    let m = exp.wait_for(
        &format!("data from all {n} services after {panics} panics in {site}"),
        Duration::from_secs(60),
        |m| m.label_values("fastly_rt_requests_total", "service_id").len() == n,
    );
    assert_eq!(
        m.find("fastly_exporter_poller_restarts_total", &[]),
        vec![panics],
        "every injected panic was caught and the poller restarted:\n{}",
        exp.output()
    );
    assert_eq!(exp.get("/healthz").0, 200);
    let log = exp.output();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
    assert_eq!(lines.len(), 1, "one line per panic location:\n{log}");
    assert!(lines[0].contains(&format!("injected test panic in {site}")), "{}", lines[0]);
    assert!(!log.contains("thread '"), "a panic escaped the poller's handler:\n{log}");
}

/// 20 real-time connections panic inside their TLS handshake slot (there are 16): the slots
/// come back, and all 20 connect when their pollers restart.
#[test]
fn a_panic_inside_a_tls_handshake_slot_gives_the_slot_back() {
    let id = TlsIdentity::generate("guards CA", &["127.0.0.1", "localhost"]).expect("certificates");
    let fake = fake(20, Some(id.clone()));
    let ca = temp_path("guards-ca.pem");
    std::fs::write(&ca, &id.ca_pem).unwrap();
    let url = fake.url();
    let exp = Exporter::start_env(
        &["-token", "T", "-api-endpoint", &url, "-rt-endpoint", &url],
        &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("FASTLY_EXPORTER_DEBUG_PANIC_IN", "handshake:20")],
    );
    every_service_polls_after(&exp, 20, 20.0, "handshake");
    let _ = std::fs::remove_file(&ca);
}

/// 40 pollers panic while they hold a turn to read an answer (there are 32): the turns come
/// back, and all 40 poll when they restart.
#[test]
fn a_panic_while_holding_a_read_turn_gives_the_turn_back() {
    let fake = fake(40, None);
    let url = fake.url();
    let exp = Exporter::start_env(
        &["-token", "T", "-api-endpoint", &url, "-rt-endpoint", &url],
        &[("FASTLY_EXPORTER_DEBUG_PANIC_IN", "read_turn:40")],
    );
    every_service_polls_after(&exp, 40, 40.0, "read_turn");
}

/// The first DNS lookup of the real-time host panics while it is marked as in flight: the
/// mark is cleared, the pollers waiting for that lookup do their own, and all of them poll.
#[test]
fn a_panic_during_a_dns_lookup_clears_its_in_flight_mark() {
    let fake = fake(5, None);
    let api = fake.url();
    // Another host name than the API's, so the real-time host is resolved by the pollers.
    let rt = api.replace("127.0.0.1", "localhost");
    let exp = Exporter::start_env(
        &["-token", "T", "-api-endpoint", &api, "-rt-endpoint", &rt],
        &[("FASTLY_EXPORTER_DEBUG_PANIC_IN", "resolve:1")],
    );
    every_service_polls_after(&exp, 5, 1.0, "resolve");
}
