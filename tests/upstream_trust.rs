//! Trust at the upstream edges, end to end with the real binary: private CAs (trusted only
//! when the operator says so, as Go does), the API token confined to the configured origins,
//! and DNS trouble on one host never delaying another.

use crate::support;

use std::time::{Duration, Instant};

use fake_fastly::{GenSpec, Reply, TlsIdentity};
use support::{Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, fake_with, rt_polls, run_to_exit, temp_path};

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "tok-TRUST-3f9a1c";

fn services() -> Vec<FakeService> {
    vec![FakeService::new("svcA", "alpha", 1), FakeService::new("svcB", "bravo", 1)]
}

/// A fake serving HTTPS with a certificate from a fresh private CA.
fn tls_fake() -> (FakeFastly, TlsIdentity) {
    let id = TlsIdentity::generate("private test CA", &["127.0.0.1", "localhost"]).expect("certificates");
    let fake = FakeFastly::start(FakeConfig {
        token: Some(TOKEN.into()),
        services: services(),
        realtime: StreamMode::Generated(GenSpec::default()),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        tls: Some(id.clone()),
        ..FakeConfig::default()
    })
    .expect("fake starts");
    (fake, id)
}

/// Starts the exporter against `https://127.0.0.1:port` (API) and `https://localhost:port`
/// (real-time), with `env`.
fn start_tls(fake: &FakeFastly, env: &[(&str, &str)]) -> Exporter {
    let api = fake.url();
    let rt = api.replace("127.0.0.1", "localhost");
    Exporter::start_env(&["-token", TOKEN, "-api-endpoint", &api, "-rt-endpoint", &rt], env)
}

fn has_data(exp: &Exporter) -> bool {
    let m = exp.metrics();
    ["svcA", "svcB"].iter().all(|id| m.find("fastly_rt_requests_total", &[("service_id", id)]).iter().any(|v| *v > 0.0))
}

#[test]
fn a_private_ca_is_refused_with_one_line_naming_the_host() {
    let (fake, _id) = tls_fake();
    let exp = start_tls(&fake, &[]);
    let host = fake.url().trim_start_matches("https://").to_string();
    support::wait_until("the refusal", T, || exp.output().contains("is not trusted"), || exp.output());
    // Every other API refresh (products, datacenters, token, certificates) has failed too
    // (instead of sleeping 2 s).
    exp.wait_for("every API source refused", T, |m| {
        ["services", "products", "datacenters", "tokens", "certificates"]
            .iter()
            .all(|e| !m.find("fastly_exporter_api_requests_total", &[("endpoint", e), ("code", "error")]).is_empty())
    });
    let log = exp.output();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("not trusted")).collect();
    assert_eq!(lines.len(), 1, "one line for the untrusted host:\n{log}");
    assert!(lines[0].contains(&host) && lines[0].contains("SSL_CERT_FILE"), "{}", lines[0]);
    assert_eq!(fake.state().total_requests(), 0, "a request reached a server whose certificate is not trusted");
    assert!(!log.contains(TOKEN));
    assert_eq!(exp.readyz(), 503);
}

#[test]
fn ssl_cert_file_trusts_a_private_ca() {
    let (fake, id) = tls_fake();
    let ca = temp_path("ca.pem");
    std::fs::write(&ca, &id.ca_pem).unwrap();
    let exp = start_tls(&fake, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    support::wait_until("data over TLS", T, || has_data(&exp), || exp.output());
    let log = exp.output();
    assert!(log.contains("TLS: trusting") && log.contains(ca.to_str().unwrap()), "{log}");
    assert!(!log.contains("not trusted"), "{log}");
    assert!(rt_polls(&fake, "svcA").iter().all(|r| r.header("Fastly-Key") == Some(TOKEN)));
    let _ = std::fs::remove_file(&ca);
}

#[test]
fn ssl_cert_dir_trusts_a_private_ca() {
    let (fake, id) = tls_fake();
    let dir = temp_path("certs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("private-ca.pem"), &id.ca_pem).unwrap();
    let other = temp_path("more-certs");
    let both = format!("{}:{}", other.display(), dir.display());
    let exp = start_tls(&fake, &[("SSL_CERT_DIR", both.as_str())]);
    support::wait_until("data over TLS", T, || has_data(&exp), || exp.output());
    assert!(exp.output().contains(dir.to_str().unwrap()), "{}", exp.output());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ssl_cert_file_pointing_nowhere_exits_2_with_one_line() {
    let (code, out, err) = run_to_exit(&["-token", TOKEN], &[("SSL_CERT_FILE", "/nonexistent/private-ca.pem")]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("fastly-exporter: SSL_CERT_FILE=/nonexistent/private-ca.pem: cannot read"), "{err}");
}

/// A second fake standing for a foreign origin: it must never see a request.
fn foreign() -> FakeFastly {
    fake_with(Vec::new(), StreamMode::NotFound)
}

#[test]
fn a_pagination_link_to_another_origin_is_not_followed_and_the_list_is_kept() {
    let fake = fake_with(services(), StreamMode::Generated(GenSpec::default()));
    let other = foreign();
    let exp = support::start_against(&fake, TOKEN, &[]);
    exp.wait_sd(&["svcA", "svcB"], T);
    let page = br#"[{"id":"svcA","name":"alpha","version":1}]"#.to_vec();
    for link in [
        format!("<{}/service?page=2&per_page=100>; rel=\"next\"", other.url()),
        // Same host, other scheme: also another origin.
        format!("<{}/service?page=2>; rel=\"next\"", fake.url().replace("http://", "https://")),
    ] {
        fake.state().set_route_reply("/service", Reply::new(200, page.clone()).with_header("Link", &link));
        let before = exp.output().lines().filter(|l| l.contains("not following a link")).count();
        exp.signal("HUP");
        support::wait_until(
            "the refused link",
            T,
            || exp.output().lines().filter(|l| l.contains("not following a link")).count() > before,
            || exp.output(),
        );
        // The refresh failed: the previous list of two services is kept, not the one-service page
        // (once that refresh has run to its end, instead of after 0.5 s).
        exp.hup_and_settle(&fake);
        assert_eq!(exp.sd(), ["svcA", "svcB"]);
    }
    let log = exp.output();
    assert!(log.contains(&format!("not following a link to {}", other.url())), "{log}");
    assert!(log.contains("the API token is only sent to http://127.0.0.1:"), "{log}");
    assert_eq!(other.state().total_requests(), 0, "the foreign origin got a request");
}

#[test]
fn redirects_are_never_followed() {
    let fake = fake_with(services(), StreamMode::Generated(GenSpec::default()));
    let other = foreign();
    let exp = support::start_against(&fake, TOKEN, &[]);
    exp.wait_sd(&["svcA", "svcB"], T);
    let to = format!("{}/service", other.url());
    fake.state().set_route_reply("/service", Reply::new(302, Vec::new()).with_header("Location", &to));
    fake.state().set_route_reply("/datacenters", Reply::new(301, Vec::new()).with_header("Location", &to));
    exp.signal("HUP");
    support::wait_until("the refused redirect", T, || exp.output().contains("redirect to"), || exp.output());
    exp.hup_and_settle(&fake);
    assert_eq!(exp.sd(), ["svcA", "svcB"], "the previous list is kept");
    let log = exp.output();
    let line = log.lines().find(|l| l.contains("redirect to")).unwrap_or_default();
    assert!(line.contains("HTTP 302") && line.contains(&other.url().replace("http://", "")), "{line}");
    assert_eq!(other.state().total_requests(), 0, "the redirect was followed");
}

#[test]
fn certificate_pages_linking_elsewhere_are_not_followed() {
    let fake = fake_with(services(), StreamMode::NotFound);
    let other = foreign();
    let page = |next: &str| {
        format!(
            r#"{{"data":[{{"id":"c1","type":"tls_certificate","attributes":{{"issued_to":"a.example","name":"a","issuer":"CA","serial_number":"10","not_after":"2030-01-01T00:00:00.000Z"}}}}],"links":{{"next":"{next}"}}}}"#
        )
        .into_bytes()
    };
    fake.state().set_route(
        "/tls/certificates",
        200,
        page(&format!("{}/tls/certificates?page%5Bnumber%5D=2", other.url())),
    );
    let exp = support::start_against(&fake, TOKEN, &[]);
    support::wait_until("the refused link", T, || exp.output().contains("not following a link"), || exp.output());
    assert!(exp.metrics().find("fastly_rt_cert_expiry_timestamp_seconds", &[]).is_empty());
    assert_eq!(other.state().total_requests(), 0);
}

/// DNS for the API host hangs 4 s and then fails, every time; the service list is retried
/// every 15 s and DNS entries expire every second, so the real-time pollers resolve
/// `localhost` again and again, also while an API lookup hangs. With one lock around all
/// lookups (as before) they queued behind the API host for seconds.
#[test]
fn a_hanging_api_host_lookup_does_not_delay_realtime_polls() {
    let fake = fake_with(services(), StreamMode::Generated(GenSpec::default()));
    let port = fake.addr().port();
    let api = format!("http://api.unresolvable.invalid:{port}");
    let rt = format!("http://localhost:{port}");
    let exp = Exporter::start_env(
        &[
            "-token",
            TOKEN,
            "-api-endpoint",
            &api,
            "-rt-endpoint",
            &rt,
            "-service",
            "svcA",
            "-service",
            "svcB",
            "-service-refresh",
            "15s",
        ],
        &[
            ("FASTLY_EXPORTER_DEBUG_DNS_DELAY", "api.unresolvable.invalid:4000"),
            ("FASTLY_EXPORTER_DEBUG_DNS_TTL_MS", "1000"),
        ],
    );
    support::wait_until(
        "first polls",
        T,
        || ["svcA", "svcB"].iter().all(|id| !rt_polls(&fake, id).is_empty()),
        || exp.output(),
    );
    // Three service-list refreshes, each started by SIGHUP and each hanging 4 s in its lookup,
    // so the window holds 12 s of hanging lookups; the pollers must go on throughout (instead
    // of watching a fixed 25 s). Between refreshes, two more polls of svcA show that the 1 s
    // failure cache has expired, so the next lookup hangs again rather than failing at once.
    let failed = |m: &support::expo::Scrape| -> f64 {
        m.find("fastly_exporter_api_requests_total", &[("endpoint", "services"), ("code", "error")]).iter().sum()
    };
    let started = Instant::now();
    for _ in 0..3 {
        let before = failed(&exp.metrics());
        let polled = rt_polls(&fake, "svcA").len();
        support::wait_until("two more polls", T, || rt_polls(&fake, "svcA").len() >= polled + 2, || exp.output());
        exp.signal("HUP");
        exp.wait_for("the refresh's lookup to fail", T, |m| failed(m) > before);
    }
    let window = started.elapsed();
    assert!(window >= Duration::from_secs(12), "three 4 s lookups took only {window:?}:\n{}", exp.output());
    for id in ["svcA", "svcB"] {
        let at: Vec<Instant> = rt_polls(&fake, id).iter().map(|r| r.at).filter(|t| *t >= started).collect();
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let worst = gaps.iter().max().copied().unwrap_or_default();
        eprintln!("{id}: {} polls in {window:?} while API lookups hang, longest gap {worst:?}", at.len());
        // At least 4 polls every 5 s, as before (20 in 25 s).
        let want = (window.as_secs_f64() * 0.8) as usize;
        assert!(at.len() >= want, "{id}: only {} polls in {window:?}:\n{}", at.len(), exp.output());
        assert!(worst < Duration::from_millis(2500), "{id}: a poll waited {worst:?}:\n{}", exp.output());
    }
    let log = exp.output();
    assert!(log.contains("service list refresh failing") && log.contains("DNS"), "{log}");
}

/// A minimal HTTP CONNECT proxy: records each CONNECT line and every byte it relays.
struct ConnectProxy {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<(Vec<String>, Vec<u8>)>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<(Vec<String>, Vec<u8>)>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut client = client;
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let line = head.lines().next().unwrap_or("").to_string();
                    log.lock().unwrap().0.push(line.clone());
                    let target = line.split(' ').nth(1).unwrap_or("").to_string();
                    let Ok(upstream) = TcpStream::connect(&target) else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let relay = |mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<(Vec<String>, Vec<u8>)>>| {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            log.lock().unwrap().1.extend_from_slice(&buf[..n]);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    };
                    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let l2 = log.clone();
                    std::thread::spawn(move || relay(u2, c2, l2));
                    relay(client, upstream, log);
                });
            }
        });
        ConnectProxy { url, seen }
    }
}

#[test]
fn https_proxy_tunnels_every_request_and_sees_no_token() {
    let (fake, id) = tls_fake();
    let proxy = ConnectProxy::start();
    let ca = temp_path("ca-proxy.pem");
    std::fs::write(&ca, &id.ca_pem).unwrap();
    let exp = start_tls(&fake, &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("HTTPS_PROXY", &proxy.url)]);
    support::wait_until("data through the proxy", T, || has_data(&exp), || exp.output());
    let (lines, relayed) = proxy.seen.lock().unwrap().clone();
    let port = fake.url().rsplit(':').next().unwrap().to_string();
    assert!(lines.iter().any(|l| l == &format!("CONNECT 127.0.0.1:{port} HTTP/1.1")), "{lines:?}");
    assert!(lines.iter().any(|l| l == &format!("CONNECT localhost:{port} HTTP/1.1")), "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("CONNECT ")), "only tunnels: {lines:?}");
    assert!(relayed.len() > 10_000, "the answers went through the tunnel ({} bytes)", relayed.len());
    let token = TOKEN.as_bytes();
    assert!(!relayed.windows(token.len()).any(|w| w == token), "the token crossed the proxy in clear text");
    assert!(rt_polls(&fake, "svcA").iter().all(|r| r.header("Fastly-Key") == Some(TOKEN)));
    let _ = std::fs::remove_file(&ca);
}
