//! End-to-end checks of the fake over real sockets, with a hand-rolled HTTP/1.1 client so
//! the fake's tests depend on no HTTP client the exporter also uses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::*;

/// A parsed HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

/// One GET over a fresh connection (`Connection: close`, so the body ends at EOF).
fn get_with(fake: &FakeFastly, path: &str, extra: &[(&str, &str)]) -> Answer {
    let addr = fake.addr();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Answer { status, headers, body: raw[split + 4..].to_vec() }
}

fn get(fake: &FakeFastly, path: &str) -> Answer {
    get_with(fake, path, &[])
}

fn services(n: usize) -> Vec<FakeService> {
    (0..n).map(|i| FakeService::new(format!("svc{i:04}"), format!("service-{i}"), i as i64 + 1)).collect()
}

fn start(cfg: FakeConfig) -> FakeFastly {
    FakeFastly::start(cfg).expect("fake starts")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn service_list_paginates_with_link_header() {
    let fake = start(FakeConfig { services: services(10), page_size: 4, ..FakeConfig::default() });
    let mut path = "/service?page=1&per_page=1000&filter%5Binclude_versions%5D=false".to_string();
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = get(&fake, &path);
        assert_eq!(a.status, 200);
        assert_eq!(a.header("Content-Type"), Some("application/json"));
        let list = a.json();
        let list = list.as_array().unwrap();
        sizes.push(list.len());
        ids.extend(list.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        assert!(list[0]["versions"].is_array(), "extra keys present");
        match a.header("Link") {
            Some(link) => {
                let url = link.strip_prefix('<').and_then(|l| l.strip_suffix(">; rel=\"next\"")).expect("Link format");
                let rest = url.strip_prefix(&fake.url()).expect("absolute own URL");
                assert!(rest.starts_with("/service?filter%5Binclude_versions%5D=false&page="));
                // Follow it the way the exporter does: percent-decoded.
                path = services::percent_decode(rest);
            }
            None => path.clear(),
        }
    }
    assert_eq!(sizes, vec![4, 4, 2]);
    assert!(path.is_empty(), "no Link on the last page");
    assert_eq!(ids.len(), 10);
    assert_eq!(ids[9], "svc0009");
    let beyond = get(&fake, "/service?page=4&per_page=1000");
    assert_eq!(beyond.status, 400);
    // page missing → 1, per_page missing → configured page size.
    let first = get(&fake, "/service");
    assert_eq!(first.json().as_array().unwrap().len(), 4);
    assert_eq!(fake.state().count("/service"), 5);
}

#[test]
fn set_services_changes_the_list() {
    let fake = start(FakeConfig { services: services(3), ..FakeConfig::default() });
    fake.state().set_services(vec![FakeService::new("svc0001", "renamed", 9)]);
    let list = get(&fake, "/service?page=1&per_page=1000").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "renamed");
    assert_eq!(list[0]["version"], 9);
    assert_eq!(get(&fake, "/v1/channel/svc0000/ts/0").status, 404);
}

#[test]
fn token_is_enforced() {
    let fake = start(FakeConfig { token: Some("secret".to_string()), services: services(1), ..FakeConfig::default() });
    let denied = get(&fake, "/service");
    assert_eq!(denied.status, 401);
    assert!(denied.body.is_empty());
    let wrong = get_with(&fake, "/v1/channel/svc0000/ts/0", &[("Fastly-Key", "nope")]);
    assert_eq!(wrong.status, 401);
    let ok = get_with(&fake, "/service", &[("fastly-key", "secret")]);
    assert_eq!(ok.status, 200);
    let reqs = fake.state().requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].header("Fastly-Key"), Some("secret"));
    assert_eq!(reqs[1].path_and_query, "/v1/channel/svc0000/ts/0");
}

#[test]
fn fixture_then_hold() {
    let body = include_bytes!("../../tests/fixtures/realtime.json").to_vec();
    let hold = Duration::from_millis(300);
    let fake = start(FakeConfig {
        services: services(1),
        realtime: StreamMode::FixtureThenHold { body: body.clone(), hold },
        ..FakeConfig::default()
    });
    let first = get(&fake, "/v1/channel/svc0000/ts/0");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, body);
    let ts = first.json()["Timestamp"].as_u64().unwrap();
    let t0 = Instant::now();
    let second = get(&fake, &format!("/v1/channel/svc0000/ts/{ts}"));
    let waited = t0.elapsed();
    assert!(waited >= hold, "held {waited:?}");
    assert!(waited < hold + Duration::from_secs(2), "held {waited:?}");
    assert_eq!(second.status, 200);
    assert_eq!(second.header("Content-Type"), Some("application/json"));
    let v = second.json();
    assert_eq!(v["Timestamp"].as_u64(), Some(ts));
    assert_eq!(v["Data"].as_array().unwrap().len(), 0);
    assert_eq!(v["Error"], "No data available, please retry");
}

#[test]
fn generated_streams_advance() {
    let spec = GenSpec { datacenters: 7, entities: 3, seed: 42 };
    let fake = start(FakeConfig {
        services: services(2),
        realtime: StreamMode::Generated(spec.clone()),
        origins: StreamMode::Generated(spec.clone()),
        domains: StreamMode::Generated(spec),
        ..FakeConfig::default()
    });
    let first = get(&fake, "/v1/channel/svc0001/ts/0");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    let v = first.json();
    let ts = v["Timestamp"].as_u64().unwrap();
    let now = unix_now();
    assert!(ts + 2 >= now && ts <= now + 1, "ts {ts} vs now {now}");
    let rec = &v["Data"][0];
    assert_eq!(rec["recorded"].as_u64(), Some(ts - 1));
    assert_eq!(rec["datacenter"].as_object().unwrap().len(), 7);
    assert!(rec["aggregated"].as_object().unwrap().len() > 50);

    // The next poll waits for the second `ts` to end, then moves on by one.
    let second = get(&fake, &format!("/v1/channel/svc0001/ts/{ts}"));
    let v2 = second.json();
    assert_eq!(v2["Timestamp"].as_u64(), Some(ts + 1));
    assert_eq!(v2["Data"][0]["recorded"].as_u64(), Some(ts));
    assert!(unix_now() > ts, "answered only after second {ts} passed");

    // A ts older than the history is answered at once from the oldest second kept (120 s),
    // one batch (60 s) at a time.
    let t0 = Instant::now();
    let stale = get(&fake, "/v1/channel/svc0001/ts/1000").json();
    assert!(t0.elapsed() < Duration::from_millis(500));
    let recorded: Vec<u64> =
        stale["Data"].as_array().unwrap().iter().map(|r| r["recorded"].as_u64().unwrap()).collect();
    assert_eq!(recorded.len(), 60);
    let oldest = recorded[0];
    assert!(oldest + 121 >= unix_now() && oldest + 119 <= unix_now(), "oldest {oldest}");
    assert_eq!(recorded, (oldest..oldest + 60).collect::<Vec<_>>());
    assert_eq!(stale["Timestamp"].as_u64(), Some(oldest + 60));

    let origins = get(&fake, "/v1/origins/svc0000/ts/0").json();
    let dcs = origins["Data"][0]["datacenter"].as_object().unwrap();
    assert_eq!(dcs.len(), 7);
    let (_, first_dc) = dcs.iter().next().unwrap();
    assert!(first_dc["origin_2"].is_object());
    assert!(origins["Data"][0]["aggregated"]["origin_0"].is_object());

    let domains = get(&fake, "/v1/domains/svc0000/ts/0").json();
    let agg = &domains["Data"][0]["aggregated"];
    assert_eq!(agg.as_object().unwrap().len(), 3);
    assert!(agg["domain_1.example.com"].is_object());
    assert!(fake.state().generated_payload_bytes() > 0);
}

/// `recorded` of every record of an answer.
fn recorded_of(v: &serde_json::Value) -> Vec<u64> {
    v["Data"].as_array().unwrap().iter().map(|r| r["recorded"].as_u64().unwrap()).collect()
}

/// Waits (at most 5 s) until `done` holds. The fake books and tallies an answer on its
/// responder thread once the last byte is written, which can be just after the client has
/// read it; the caller's assertions then say what was expected.
fn until_booked(done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sleeps until just after the wall clock's next second begins.
fn at_a_fresh_second() {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from(1000 - since) + 10));
}

#[test]
fn generated_history_batches_truth_and_served_seconds() {
    // The fake's history follows the wall clock: a second that turns while the history is read
    // moves the latest second under the test (one more second in the last batch). Each
    // attempt starts at a fresh second on a new fake; one that saw the second turn is done
    // again, and only such attempts are.
    for _ in 0..5 {
        at_a_fresh_second();
        if history_batches_once() {
            return;
        }
    }
    panic!("the wall clock turned a second during each of 5 attempts");
}

/// One attempt; false when the wall-clock second turned before its clock-bound assertions.
fn history_batches_once() -> bool {
    let second = unix_now();
    let fake = start(FakeConfig {
        services: services(1),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        history_secs: 8,
        batch_secs: 3,
        ..FakeConfig::default()
    });
    let latest = get(&fake, "/v1/channel/svc0000/ts/0").json();
    let next = latest["Timestamp"].as_u64().unwrap();
    // A ts 5 s back: the seconds since, 3 per answer, each answer saying where to go on.
    let mut ts = next - 5;
    let mut seen = Vec::new();
    let mut answers = 0;
    while ts < next {
        let a = get(&fake, &format!("/v1/channel/svc0000/ts/{ts}"));
        let v = a.json();
        let r = recorded_of(&v);
        assert!(!r.is_empty() && r.len() <= 3, "{r:?}");
        assert_eq!(r[0], ts, "starts at the ts asked for");
        assert_eq!(v["Timestamp"].as_u64(), Some(r[r.len() - 1] + 1));
        seen.extend(r);
        ts = v["Timestamp"].as_u64().unwrap();
        answers += 1;
    }
    // Older than the history: from the oldest second kept, 8 s back.
    let old = get(&fake, "/v1/channel/svc0000/ts/1000").json();
    let now = unix_now();
    if now != second {
        return false;
    }
    assert_eq!(seen, (next - 5..next).collect::<Vec<_>>());
    assert!(answers >= 2);
    let r = recorded_of(&old);
    assert!(r[0] + 9 >= now && r[0] + 7 <= now, "oldest {} at {now}", r[0]);
    // What was written, and the ground truth of any range, agree with the bodies, once every
    // second of the answers above is booked: the latest, those asked for, the oldest ones.
    let written = (1 + seen.len() + r.len()) as u64;
    until_booked(|| {
        let s = fake.state().served(Stream::Realtime, "svc0000");
        s.seconds() + s.redelivered >= written
    });
    let served = fake.state().served(Stream::Realtime, "svc0000");
    assert_eq!(served.runs, vec![(r[0], next - 1)], "one run from the oldest second asked to the latest");
    let again = (r[0]..=r[r.len() - 1]).filter(|s| (next - 5..next).contains(s)).count() as u64;
    assert_eq!(served.redelivered, 1 + again, "second next-1 twice, and the oldest seconds if already served");
    let dc = "AMS";
    let sum: f64 = old["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec["datacenter"][dc]["requests"].as_f64().unwrap_or(0.0))
        .sum();
    let truth = fake.state().generated_truth(Stream::Realtime, "svc0000", r[0], r[r.len() - 1]);
    assert_eq!(truth.ts, r);
    assert_eq!(truth.datacenters[dc].fields.get("requests").copied().unwrap_or(0.0), sum);
    let bodies = fake.state().generated_bodies(Stream::Realtime, "svc0000", r[0], r[0]);
    let one: serde_json::Value = serde_json::from_slice(&bodies[0].1).unwrap();
    assert_eq!(one["Data"][0]["datacenter"], old["Data"][0]["datacenter"]);
    // A fixed end: nothing past it is served.
    let end = unix_now() - 1;
    fake.state().set_generated_until(Some(end));
    let v = get(&fake, &format!("/v1/channel/svc0000/ts/{}", end - 1)).json();
    assert_eq!(recorded_of(&v), vec![end - 1, end]);
    let t0 = Instant::now();
    let v = get(&fake, &format!("/v1/channel/svc0000/ts/{}", end + 1)).json();
    assert!(v["Data"].as_array().unwrap().is_empty() && v["Error"].is_string(), "{v}");
    assert!(t0.elapsed() >= Duration::from_millis(900), "held before No data");
    true
}

#[test]
fn script_replies_in_order_per_service() {
    let fake = start(FakeConfig {
        services: services(2),
        realtime: StreamMode::Script(vec![
            Reply::new(500, "boom"),
            Reply::new(429, "{}").with_header("Retry-After", "1"),
            Reply::new(200, r#"{"Data":[],"Timestamp":7}"#).with_delay(Duration::from_millis(200)),
        ]),
        origins: StreamMode::NotFound,
        ..FakeConfig::default()
    });
    let a = get(&fake, "/v1/channel/svc0000/ts/0");
    assert_eq!((a.status, a.body.as_slice()), (500, &b"boom"[..]));
    // Another service has its own position.
    assert_eq!(get(&fake, "/v1/channel/svc0001/ts/0").status, 500);
    let b = get(&fake, "/v1/channel/svc0000/ts/0");
    assert_eq!(b.status, 429);
    assert_eq!(b.header("Retry-After"), Some("1"));
    let t0 = Instant::now();
    let c = get(&fake, "/v1/channel/svc0000/ts/0");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(c.json()["Timestamp"], 7);
    assert_eq!(get(&fake, "/v1/origins/svc0000/ts/0").status, 404);

    // Past the end the poll is held (until shutdown): check it does not answer soon.
    let addr = fake.addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    write!(s, "GET /v1/channel/svc0000/ts/7 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert!(s.read(&mut buf).is_err(), "held past the end of the script");

    // Switching mode resets positions.
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::Script(vec![Reply::new(503, "")]));
    assert_eq!(get(&fake, "/v1/channel/svc0000/ts/0").status, 503);
    drop(fake); // must not hang on the held request
}

#[test]
fn canned_routes_and_404s() {
    let fake = start(FakeConfig { services: services(1), ..FakeConfig::default() });
    let state = fake.state();
    state.set_route("/datacenters", 200, include_bytes!("../../tests/fixtures/api/datacenters.json").to_vec());
    state.set_route("/tokens/self", 403, Vec::new());
    let tpl = br#"{"data":[{"id":"c"}],"links":{"next":"{{NEXT}}"}}"#.to_vec();
    state.set_route_pages("/tls/certificates", vec![tpl.clone(), tpl]);

    let dc = get(&fake, "/datacenters");
    assert_eq!(dc.status, 200);
    assert_eq!(dc.json()[1]["code"], "WLG");
    let tok = get(&fake, "/tokens/self");
    assert_eq!((tok.status, tok.body.len()), (403, 0));

    let p1 = get(&fake, "/tls/certificates?page%5Bnumber%5D=1&page%5Bsize%5D=200&sort=created_at");
    let next = p1.json()["links"]["next"].as_str().unwrap().to_string();
    assert_eq!(next, format!("{}/tls/certificates?page%5Bnumber%5D=2&page%5Bsize%5D=200&sort=created_at", fake.url()));
    let p2 = get(&fake, next.strip_prefix(&fake.url()).unwrap());
    assert!(p2.json()["links"]["next"].is_null());

    // Canned routes override built-ins; removing falls back.
    state.set_route("/service", 500, Vec::new());
    assert_eq!(get(&fake, "/service").status, 500);
    state.remove_route("/service");
    assert_eq!(get(&fake, "/service").status, 200);

    assert_eq!(get(&fake, "/nope").status, 404);
    let unknown = get(&fake, "/v1/channel/unknown/ts/0");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["Error"], "Service not found");
    assert_eq!(get(&fake, "/v1/channel/svc0000/ts/abc").status, 400);
    assert_eq!(state.count("/tls/"), 2);
}

#[test]
fn many_held_polls_use_no_extra_threads() {
    let fake = start(FakeConfig {
        services: services(1),
        workers: 2,
        realtime: StreamMode::FixtureThenHold { body: b"{}".to_vec(), hold: Duration::from_millis(400) },
        ..FakeConfig::default()
    });
    let addr = fake.addr();
    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET /v1/channel/svc0000/ts/5 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(raw.starts_with(b"HTTP/1.1 200"));
    }
    // 50 polls held 400 ms each by 2 workers: they overlapped instead of queueing.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn prebuild_cost_is_small() {
    let t0 = Instant::now();
    let fake = start(FakeConfig { services: services(1000), ..FakeConfig::default() });
    let took = t0.elapsed();
    let bytes = fake.state().generated_payload_bytes();
    eprintln!("pre-built payloads for 1000 services: {took:?}, {bytes} bytes");
    assert!(bytes < 64 << 20);
}

// ---- StreamMode::Faulty ----

/// One raw poll over a fresh connection: the bytes received until the server closed it
/// (`Connection: close`), or an error.
fn raw_poll(fake: &FakeFastly, id: &str, ts: u64) -> std::io::Result<Vec<u8>> {
    let addr = fake.addr();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET /v1/channel/{id}/ts/{ts} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

/// A raw answer as (status, `Content-Length`, body, headers).
struct Raw {
    status: u16,
    len: Option<usize>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

/// Parses a raw answer (the body is whatever arrived, whatever `Content-Length` says).
fn split_answer(raw: &[u8]) -> Raw {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("Content-Length")).and_then(|(_, v)| v.parse().ok());
    Raw { status, len, body: raw[split + 4..].to_vec(), headers }
}

fn faulty(rate: f64, kinds: Vec<Fault>) -> FakeFastly {
    start(FakeConfig {
        services: services(2),
        realtime: StreamMode::Faulty(FaultSpec {
            oversize_bytes: 100_000,
            min_interval: Duration::from_millis(20),
            ..FaultSpec::new(rate, kinds)
        }),
        ..FakeConfig::default()
    })
}

#[test]
fn faulty_clean_answers_are_deterministic_fast_and_tallied_once() {
    let fake = faulty(0.0, vec![Fault::Reset]);
    let t0 = Instant::now();
    let a = split_answer(&raw_poll(&fake, "svc0000", 1_000).unwrap());
    let b = split_answer(&raw_poll(&fake, "svc0000", 1_000).unwrap());
    let c = split_answer(&raw_poll(&fake, "svc0000", 1_001).unwrap());
    let first = split_answer(&raw_poll(&fake, "svc0001", 0).unwrap());
    assert!(t0.elapsed() < Duration::from_secs(3), "clean answers are not paced by the clock");
    assert_eq!((a.status, a.len), (200, Some(a.body.len())));
    assert_eq!(a.body, b.body, "a re-asked ts gets identical data");
    assert_ne!(a.body, c.body);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["Timestamp"], 1_001);
    assert_eq!(v["Data"][0]["recorded"], 1_000);
    let v0: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert!(v0["Timestamp"].as_u64().unwrap() > 1_600_000_000, "ts 0 answers a recent second");

    // Every tally of the polls above.
    until_booked(|| {
        fake.state().delivered(Stream::Realtime, "svc0000").ts.len() == 2
            && fake.state().delivered(Stream::Realtime, "svc0000").redelivered == 1
            && !fake.state().delivered(Stream::Realtime, "svc0001").ts.is_empty()
    });
    let d = fake.state().delivered(Stream::Realtime, "svc0000");
    assert_eq!(d.ts, [1_000, 1_001]);
    assert_eq!(d.redelivered, 1);
    assert_eq!(d.datacenters.len(), 10);
    // The tally is the sum of the two distinct bodies, per datacenter.
    let c_v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    for (dc, totals) in &d.datacenters {
        let want = v["Data"][0]["datacenter"][dc]["requests"].as_f64().unwrap_or(0.0)
            + c_v["Data"][0]["datacenter"][dc]["requests"].as_f64().unwrap_or(0.0);
        assert_eq!(totals.fields.get("requests").copied().unwrap_or(0.0), want, "{dc}");
        let hist: u64 = [&v, &c_v]
            .iter()
            .filter_map(|x| x["Data"][0]["datacenter"][dc]["miss_histogram"].as_object())
            .flat_map(|h| h.values().map(|c| c.as_u64().unwrap()))
            .sum();
        assert_eq!(totals.miss_histogram_count, hist, "{dc}");
    }
    let bodies = fake.state().delivered_bodies(Stream::Realtime, "svc0000");
    assert_eq!(bodies, vec![(1_000, a.body.clone()), (1_001, c.body.clone())]);
    assert_eq!(fake.state().faults_injected(Stream::Realtime).get("clean"), Some(&4));
}

#[test]
fn faulty_clean_answers_are_paced_per_service() {
    let fake = start(FakeConfig {
        services: services(1),
        realtime: StreamMode::Faulty(FaultSpec {
            min_interval: Duration::from_millis(200),
            ..FaultSpec::new(0.0, Vec::new())
        }),
        ..FakeConfig::default()
    });
    let t0 = Instant::now();
    for ts in 1..=4 {
        raw_poll(&fake, "svc0000", ts).unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(590), "{:?}", t0.elapsed());
}

#[test]
fn faulty_injects_each_kind_as_specified() {
    let check = |kind: Fault, assert_fn: &dyn Fn(std::io::Result<Vec<u8>>)| {
        let fake = faulty(1.0, vec![kind.clone()]);
        let t0 = Instant::now();
        assert_fn(raw_poll(&fake, "svc0000", 5));
        let injected = fake.state().faults_injected(Stream::Realtime);
        assert_eq!(injected.get(&kind.label()), Some(&1), "{kind:?}: {injected:?}");
        assert!(fake.state().delivered(Stream::Realtime, "svc0000").ts.is_empty(), "{kind:?}");
        t0.elapsed()
    };
    check(Fault::Truncated, &|raw| {
        let a = split_answer(&raw.unwrap());
        assert_eq!(a.status, 200);
        assert!(a.body.len() < a.len.unwrap(), "{} of {:?} bytes", a.body.len(), a.len);
    });
    check(Fault::Malformed, &|raw| {
        let a = split_answer(&raw.unwrap());
        assert_eq!((a.status, a.len), (200, Some(a.body.len())));
        assert!(serde_json::from_slice::<serde_json::Value>(&a.body).is_err());
    });
    check(Fault::Oversize, &|raw| {
        let a = split_answer(&raw.unwrap());
        assert_eq!((a.status, a.len), (200, Some(a.body.len())));
        assert!(a.body.len() > 100_000);
        let v: serde_json::Value = serde_json::from_slice(&a.body).expect("valid JSON");
        assert_eq!(v["Timestamp"], 6);
    });
    for code in [500, 401] {
        check(Fault::Status(code), &|raw| assert_eq!(split_answer(&raw.unwrap()).status, code));
    }
    check(Fault::RateLimited(7), &|raw| {
        let a = split_answer(&raw.unwrap());
        assert_eq!(a.status, 429);
        assert!(a.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Retry-After") && v == "7"), "{:?}", a.headers);
    });
    let no_answer = |raw: std::io::Result<Vec<u8>>| assert!(raw.map_or(true, |r| r.is_empty()), "an answer came");
    check(Fault::Reset, &no_answer);
    let took = check(Fault::Stall(Duration::from_millis(600)), &no_answer);
    assert!(took >= Duration::from_millis(550), "{took:?}");
}

#[test]
fn faulty_rate_changes_at_runtime_and_tally_survives_mode_switches() {
    let fake = faulty(1.0, vec![Fault::Status(503)]);
    assert_eq!(split_answer(&raw_poll(&fake, "svc0000", 9).unwrap()).status, 503);
    fake.state().set_fault_rate(Stream::Realtime, 0.0);
    assert_eq!(split_answer(&raw_poll(&fake, "svc0000", 9).unwrap()).status, 200);
    fake.state().set_stream_mode(Stream::Realtime, StreamMode::NotFound);
    until_booked(|| !fake.state().delivered(Stream::Realtime, "svc0000").ts.is_empty());
    assert_eq!(fake.state().delivered(Stream::Realtime, "svc0000").ts, [9]);
}

#[test]
fn canned_route_reply_carries_headers() {
    let fake = start(FakeConfig { services: services(1), ..FakeConfig::default() });
    fake.state().set_route_reply("/service", Reply::new(429, Vec::new()).with_header("Retry-After", "4"));
    let a = get(&fake, "/service?page=1");
    assert_eq!((a.status, a.header("Retry-After")), (429, Some("4")));
}

#[test]
fn one_service_can_answer_its_own_reply() {
    let fake = start(FakeConfig {
        services: services(2),
        realtime: StreamMode::Script(vec![Reply::new(200, br#"{"Data":[],"Timestamp":5}"#.to_vec())]),
        ..FakeConfig::default()
    });
    let reply = Reply::new(500, br#"{"Error":"boom"}"#.to_vec()).with_header("X-Why", "test");
    fake.state().set_service_reply(Stream::Realtime, "svc0001", Some(reply));
    for _ in 0..2 {
        let a = get(&fake, "/v1/channel/svc0001/ts/0");
        assert_eq!((a.status, a.json()["Error"].as_str()), (500, Some("boom")));
        assert_eq!(a.header("X-Why"), Some("test"));
    }
    assert_eq!(get(&fake, "/v1/channel/svc0000/ts/0").status, 200, "other services keep the mode");
    assert_eq!(get(&fake, "/v1/origins/svc0001/ts/0").status, 200, "other streams too");
    fake.state().set_service_reply(Stream::Realtime, "svc0001", None);
    assert_eq!(get(&fake, "/v1/channel/svc0001/ts/0").status, 200, "back to the mode");
}
