//! [`WebSecurity`] as the server uses it: per-request decisions, headers, reloads.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::tls::tests::{Ca, TempDir};
use super::*;

fn header(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn security(dir: &TempDir, text: &str) -> WebSecurity {
    let path = dir.write("web.yml", text);
    WebSecurity::new(&WebConfig::load(&path).unwrap()).unwrap()
}

#[test]
fn empty_config_allows_everything() {
    let dir = TempDir::new();
    let s = security(&dir, "");
    assert!(s.tls().is_none());
    assert_eq!(s.authorize("/metrics", None), Decision::Allow { user: None });
    assert!(s.headers().is_empty());
}

#[test]
fn basic_auth_except_healthz() {
    let dir = TempDir::new();
    let s = security(
        &dir,
        &format!(
            "basic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            hash("pw")
        ),
    );
    assert_eq!(s.authorize("/healthz", None), Decision::Allow { user: None });
    for path in ["/metrics", "/", "/sd", "/readyz", "/healthz/x"] {
        assert_eq!(s.authorize(path, None), Decision::Unauthorized, "{path}");
        assert_eq!(s.authorize(path, Some(&header("prometheus", "nope"))), Decision::Unauthorized);
        assert_eq!(
            s.authorize(path, Some(&header("prometheus", "pw"))),
            Decision::Allow { user: Some("prometheus".to_string()) }
        );
    }
    assert_eq!(s.headers(), vec![("X-Frame-Options".to_string(), "deny".to_string())]);
    assert_eq!(WWW_AUTHENTICATE, "Basic realm=\"fastly-exporter\"");
}

#[test]
fn rate_limit() {
    let limiter = RateLimiter::new(RateLimit { burst: 2, interval: Duration::from_secs(1) });
    let t0 = Instant::now();
    assert!(limiter.allow_at(t0));
    assert!(limiter.allow_at(t0));
    assert!(!limiter.allow_at(t0));
    assert!(!limiter.allow_at(t0 + Duration::from_millis(500)));
    assert!(limiter.allow_at(t0 + Duration::from_millis(1000)));
    assert!(!limiter.allow_at(t0 + Duration::from_millis(1000)));
    // Refill never exceeds the burst.
    assert!(limiter.allow_at(t0 + Duration::from_secs(60)));
    assert!(limiter.allow_at(t0 + Duration::from_secs(60)));
    assert!(!limiter.allow_at(t0 + Duration::from_secs(60)));

    let dir = TempDir::new();
    let s = security(&dir, "rate_limit:\n  burst: 1\n  interval: 1h\n");
    assert_eq!(s.authorize("/metrics", None), Decision::Allow { user: None });
    assert_eq!(s.authorize("/metrics", None), Decision::TooManyRequests);
    assert_eq!(s.authorize("/healthz", None), Decision::Allow { user: None });
}

#[test]
fn reload_swaps_users_and_keeps_the_cache_when_unchanged() {
    let dir = TempDir::new();
    let alice = format!("basic_auth_users:\n  alice: {}\n", hash("one"));
    let s = security(&dir, &alice);
    assert!(s.authorize("/metrics", Some(&header("alice", "one"))) != Decision::Unauthorized);
    let before = s.policy().auth.clone().unwrap();
    assert!(s.reload_if_changed().is_none());

    // Same users: same verifier, warm cache.
    s.reload().unwrap();
    assert!(Arc::ptr_eq(&before, s.policy().auth.as_ref().unwrap()));
    assert_eq!(before.cache_len(), 1);

    // New password: picked up by the watcher.
    std::thread::sleep(Duration::from_millis(20));
    dir.write("web.yml", &format!("basic_auth_users:\n  alice: {}\n  bob: {}\n", hash("two"), hash("three")));
    assert!(s.reload_if_changed().unwrap().is_ok());
    assert_eq!(s.authorize("/metrics", Some(&header("alice", "one"))), Decision::Unauthorized);
    assert!(matches!(s.authorize("/metrics", Some(&header("alice", "two"))), Decision::Allow { .. }));

    // A broken edit keeps everything as it was, and is reported once.
    dir.write("web.yml", "basic_auth_users:\n  alice: not-a-hash\n");
    let e = s.reload_if_changed().unwrap().unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(!e.to_string().contains("not-a-hash"), "{e}");
    assert!(s.reload_if_changed().is_none());
    assert!(matches!(s.authorize("/metrics", Some(&header("bob", "three"))), Decision::Allow { .. }));

    // Turning TLS on needs a restart.
    let ca = Ca::new("ca");
    let (cert, key) = ca.leaf("s", &["localhost"], false);
    dir.write("c.pem", &cert);
    dir.write("k.pem", &key);
    dir.write("web.yml", "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
    assert!(matches!(s.reload(), Err(WebConfigError::TlsToggled)));
}

#[test]
fn reload_with_tls_rereads_certificates_and_settings() {
    let dir = TempDir::new();
    let ca = Ca::new("ca");
    let (cert, key) = ca.leaf("s", &["localhost"], false);
    dir.write("c.pem", &cert);
    dir.write("k.pem", &key);
    let s = security(&dir, "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
    let before = s.tls().unwrap().current();
    // Certificate rotation alone.
    let (cert, key) = ca.leaf("s2", &["localhost"], false);
    dir.write("k.pem", &key);
    dir.write("c.pem", &cert);
    assert!(s.reload_if_changed().unwrap().is_ok());
    assert!(!Arc::ptr_eq(&before, &s.tls().unwrap().current()));
    // A settings change through the web config file.
    std::thread::sleep(Duration::from_millis(20));
    dir.write("web.yml", "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n");
    assert!(s.reload_if_changed().unwrap().is_ok());
    // A missing key file: refused, old config kept.
    let current = s.tls().unwrap().current();
    dir.write("web.yml", "tls_server_config:\n  cert_file: c.pem\n  key_file: gone.pem\n");
    let e = s.reload().unwrap_err();
    assert!(e.to_string().starts_with("line 3: key_file "), "{e}");
    assert!(Arc::ptr_eq(&current, &s.tls().unwrap().current()));
}

#[test]
fn load_reads_certificates_once() {
    let dir = TempDir::new();
    let path = dir.write("web.yml", "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
    let e = WebConfig::load(&path).unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains("c.pem"), "{e}");
    let e = WebConfig::load(&dir.0.join("absent.yml")).unwrap_err();
    assert!(e.to_string().starts_with("cannot read: "), "{e}");
    let users: BTreeMap<String, config::Secret> = BTreeMap::new();
    assert!(BasicAuth::new(&users).same_users(&users));
}
