//! One Domain Inspector service with 1,500 customer domains in 15 datacenters (the shape of a
//! SaaS platform): 1,417,500 domain series, about 235 MB of text in one (family, service)
//! unit. Every scrape, plain or gzip, of `/metrics` and of `?target=`, must be complete, no
//! worker may panic, and memory must not grow with the size of one unit.

use crate::support;

use std::time::{Duration, Instant};

use fake_fastly::{GenSpec, Stream, generated_body};
use support::{FakeConfig, FakeFastly, FakeService, RssSampler, StreamMode, rss_bytes, start_against, stream_scrape};

const DOMAINS: usize = 1_500;
const DATACENTERS: usize = 15;
/// Domain Inspector series per (datacenter, domain) row: every family of the stream, each
/// with its fixed label values (`tests/inspectors.rs` checks the same 63 against the Go
/// exporter's output for the fixture).
const SERIES_PER_ROW: usize = 63;
const EXPECTED: usize = DOMAINS * DATACENTERS * SERIES_PER_ROW;
const MIB: f64 = 1024.0 * 1024.0;

fn entitlement(product: &str, has: bool) -> Vec<u8> {
    format!(r#"{{"product":{{"id":"{product}","object":"product"}},"has_access":{has}}}"#).into_bytes()
}

fn big_fake() -> FakeFastly {
    let spec = GenSpec { datacenters: DATACENTERS, entities: DOMAINS, seed: 5 };
    let body = generated_body(Stream::Domains, &spec, 1_700_000_000);
    eprintln!("domain answer: {:.1} MB", body.len() as f64 / 1e6);
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("big", "saas-platform", 1)],
        realtime: StreamMode::NotFound,
        origins: StreamMode::NotFound,
        domains: StreamMode::FixtureThenHold { body, hold: Duration::from_secs(600) },
        ..FakeConfig::default()
    })
    .expect("fake starts");
    fake.state().set_route("/entitled-products/domain_inspector", 200, entitlement("domain_inspector", true));
    fake.state().set_route("/entitled-products/origin_inspector", 200, entitlement("origin_inspector", false));
    fake
}

#[test]
fn every_scrape_of_a_235_mb_unit_is_complete_in_bounded_memory() {
    let fake = big_fake();
    let exp = start_against(&fake, "T", &[]);
    let pid = exp.pid();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = stream_scrape(&exp.addr, "/metrics?target=big", true, "fastly_domain_").expect("scrape");
        if s.matching == EXPECTED {
            break;
        }
        assert!(Instant::now() < deadline, "{} of {EXPECTED} domain series after 180 s:\n{}", s.matching, exp.output());
        std::thread::sleep(Duration::from_millis(500));
    }
    let steady = rss_bytes(pid).expect("rss");
    eprintln!("steady state with {EXPECTED} domain series: RSS {:.1} MiB", steady as f64 / MIB);

    for (path, gzip) in
        [("/metrics", false), ("/metrics", true), ("/metrics?target=big", false), ("/metrics?target=big", true)]
    {
        let sampler = RssSampler::start(pid);
        let started = Instant::now();
        let mut bytes = 0;
        for i in 0..10 {
            let s = stream_scrape(&exp.addr, path, gzip, "fastly_domain_")
                .unwrap_or_else(|e| panic!("{path} gzip={gzip} scrape {i}: {e}\n{}", exp.output()));
            assert_eq!((s.status, s.gzip), (200, gzip), "{path} scrape {i}");
            assert!(s.complete, "{path} gzip={gzip} scrape {i} ended without a final newline");
            assert_eq!(s.matching, EXPECTED, "{path} gzip={gzip} scrape {i}: domain series");
            bytes = s.bytes;
        }
        let per_scrape = started.elapsed() / 10;
        let peak = sampler.max();
        let growth = peak.saturating_sub(steady) as f64 / MIB;
        eprintln!(
            "{path} gzip={gzip}: 10 complete scrapes of {:.0} MB text, {per_scrape:.2?} each; \
             peak RSS {:.1} MiB (+{growth:.1} MiB over steady state)",
            bytes as f64 / 1e6,
            peak as f64 / MIB
        );
        // Not a speed check: a regression guard against formatting a whole unit in memory
        // (which took +230 MB here). The goal, reported above, is +32 MiB.
        assert!(growth < 96.0, "{path} gzip={gzip}: RSS grew by {growth:.1} MiB during scrapes");
    }
    let log = exp.output();
    assert!(!log.contains("panicked"), "a worker panicked:\n{log}");
    assert_eq!(exp.get("/healthz").0, 200);
}
