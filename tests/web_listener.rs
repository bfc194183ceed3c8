//! The listener secured by a Prometheus web config file (`-web-config-file`), end to end with
//! the real binary: TLS, basic auth (every path but `/healthz`), client certificates, extra
//! headers, and certificates rotated in place or broken without a restart.

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_fastly::GenSpec;
use support::pki::Ca;
use support::{Exporter, FakeFastly, FakeService, StreamMode, fake_with, start_against, temp_path};

const PASSWORD: &str = "scrape-pw-41f7";

/// A directory holding a web config and its files.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let dir = temp_path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        Site { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        // Write then rename, as cert-manager and certbot do, so a reader never sees half a file.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }

    fn install_server_cert(&self, ca: &Ca) {
        let (cert, key) = ca.sign(&["127.0.0.1", "localhost"]);
        self.write("server.key", &key);
        self.write("server.crt", &cert);
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fake() -> FakeFastly {
    fake_with(vec![FakeService::new("svcA", "alpha", 1)], StreamMode::Generated(GenSpec::default()))
}

fn start(fake: &FakeFastly, web_config: &Path) -> Exporter {
    start_against(fake, "T", &["-web-config-file", web_config.to_str().unwrap()])
}

/// An HTTPS client trusting `ca_pem`, optionally presenting a client certificate.
fn client(ca_pem: &str, identity: Option<&(String, String)>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let root = Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[root]));
    if let Some((cert, key)) = identity {
        let cert = Certificate::from_pem(cert.as_bytes()).unwrap();
        let key = PrivateKey::from_pem(key.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Status, headers (lower-case names) and body of an HTTPS answer.
type Answer = (u16, Vec<(String, String)>, String);

/// GET over HTTPS; `Err` when TLS fails.
fn get(agent: &ureq::Agent, url: &str, auth: Option<(&str, &str)>) -> Result<Answer, String> {
    use base64::Engine as _;
    let mut req = agent.get(url);
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        req = req.header("Authorization", &format!("Basic {token}"));
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), headers, body))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn tls_and_basic_auth_guard_every_path_but_healthz() {
    let fake = fake();
    let ca = Ca::new("listener CA");
    let site = Site::new("web-auth");
    site.install_server_cert(&ca);
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let config = site.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {hash}\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    );
    let exp = start(&fake, &config);
    assert!(exp.output().contains("listening on https://"), "{}", exp.output());
    let base = format!("https://{}", exp.addr);
    let agent = client(&ca.pem(), None);

    let (status, headers, _) = get(&agent, &format!("{base}/metrics"), None).unwrap();
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Basic realm=\"fastly-exporter\""));
    assert_eq!(header(&headers, "x-frame-options"), Some("deny"), "extra headers on a 401 too");
    assert_eq!(get(&agent, &format!("{base}/metrics"), Some(("prometheus", "wrong"))).unwrap().0, 401);
    assert_eq!(get(&agent, &format!("{base}/metrics"), Some(("nobody", PASSWORD))).unwrap().0, 401);
    for path in ["/readyz", "/sd", "/", "/status.json", "/metrics?target=svcA"] {
        assert_eq!(get(&agent, &format!("{base}{path}"), None).unwrap().0, 401, "{path}");
    }
    // /healthz stays open, so liveness probes need no credentials.
    let (status, headers, body) = get(&agent, &format!("{base}/healthz"), None).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(header(&headers, "x-frame-options"), Some("deny"));
    // The right password: metrics, with the extra header on the streamed answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, headers, body) = get(&agent, &format!("{base}/metrics"), Some(("prometheus", PASSWORD))).unwrap();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-frame-options"), Some("deny"));
        if body.contains("fastly_rt_requests_total{") {
            break;
        }
        assert!(Instant::now() < deadline, "no data over TLS:\n{}", exp.output());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The status page and its JSON, with the same credentials and headers.
    for path in ["/", "/status.json"] {
        let (status, headers, body) = get(&agent, &format!("{base}{path}"), Some(("prometheus", PASSWORD))).unwrap();
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "x-frame-options"), Some("deny"), "{path}");
        assert!(body.contains("svcA"), "{path}: {body}");
    }
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(&exp.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&got));
    let log = exp.output();
    assert!(!log.contains(PASSWORD) && !log.contains(&hash), "a password or hash was logged:\n{log}");
}

#[test]
fn client_certificates_are_required_when_configured() {
    let fake = fake();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let site = Site::new("web-mtls");
    site.install_server_cert(&server_ca);
    site.write("client-ca.pem", &client_ca.pem());
    let config = site.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n  min_version: TLS12\n",
    );
    let exp = start(&fake, &config);
    let url = format!("https://{}/healthz", exp.addr);
    let mine = client_ca.sign(&["prometheus"]);
    let theirs = stranger_ca.sign(&["prometheus"]);
    assert!(get(&client(&server_ca.pem(), None), &url, None).is_err(), "no client certificate was accepted");
    assert!(
        get(&client(&server_ca.pem(), Some(&theirs)), &url, None).is_err(),
        "a stranger's certificate was accepted"
    );
    let (status, _, body) = get(&client(&server_ca.pem(), Some(&mine)), &url, None).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// Waits until `ok()` holds, or fails with the exporter's log.
fn eventually(exp: &Exporter, what: &str, within: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} never happened:\n{}", exp.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rotated_certificates_are_picked_up_and_a_broken_one_keeps_the_old() {
    let fake = fake();
    let (ca1, ca2, ca3) = (Ca::new("CA one"), Ca::new("CA two"), Ca::new("CA three"));
    let site = Site::new("web-rotate");
    site.install_server_cert(&ca1);
    let config = site.write("web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let exp = start(&fake, &config);
    let url = format!("https://{}/healthz", exp.addr);
    let trusts = |ca: &Ca| get(&client(&ca.pem(), None), &url, None).is_ok_and(|(s, _, _)| s == 200);
    assert!(trusts(&ca1) && !trusts(&ca2));
    // A keep-alive connection opened before the rotation (ureq pools it).
    let established = client(&ca1.pem(), None);
    assert_eq!(get(&established, &url, None).map(|r| r.0), Ok(200));

    // Rotated in place (as cert-manager does): seen by the file watcher, no signal needed.
    site.install_server_cert(&ca2);
    eventually(&exp, "the rotated certificate", Duration::from_secs(20), || trusts(&ca2));
    assert!(!trusts(&ca1), "the old certificate is still served");
    // The connection made before the rotation goes on: its requests still succeed, though a
    // new handshake trusting only the first CA would now fail.
    assert_eq!(get(&established, &url, None).map(|r| r.0), Ok(200), "an established connection was dropped");

    // A broken file: one line, and the last good certificate stays in force.
    site.write("server.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    eventually(&exp, "the failed reload line", Duration::from_secs(20), || {
        exp.output().contains("keeping the previous settings")
    });
    assert!(trusts(&ca2), "a failed reload dropped the certificate");
    std::thread::sleep(Duration::from_secs(6));
    let failures = exp.output().lines().filter(|l| l.contains("keeping the previous settings")).count();
    assert_eq!(failures, 1, "the same broken file is logged once:\n{}", exp.output());

    // SIGHUP reloads at once.
    site.install_server_cert(&ca3);
    exp.signal("HUP");
    eventually(&exp, "the SIGHUP reload", Duration::from_secs(5), || trusts(&ca3));
}
