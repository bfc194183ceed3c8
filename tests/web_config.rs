//! Issue 14: the `-web-config-file` format agrees with `promtool check web-config`.
//!
//! `examples/web-config.yml` must pass promtool, and every file in the table below must get
//! the same verdict from promtool and from us (we accept a superset: keys of newer toolkit
//! releases that the installed promtool may not know are tested in the unit tests). The
//! files reference certificates, which promtool loads, so each check runs in a scratch
//! directory with generated ones.
//!
//! Needs promtool from the Debian `prometheus` package (`.ci/run` installs it). Without it the
//! promtool comparisons are skipped with a message, unless FASTLY_EXPORTER_REQUIRE_PROMETHEUS=1
//! (set by CI) makes that a failure. Our own side runs either way.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fastly_exporter::config::{self, Config};

/// Loads a web config file the way the binary does: as the value of `-web-config-file`.
fn load(path: &std::path::Path) -> Result<Box<Config>, String> {
    let args = ["-token".to_string(), "T".to_string(), "-web-config-file".to_string(), path.display().to_string()];
    match config::load(&args, &|_| None) {
        Ok(config::Command::Run(cfg)) => Ok(cfg),
        Ok(_) => Err("the flags did not run the exporter".to_string()),
        Err(e) => Err(e.to_string()),
    }
}
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

fn promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        assert!(
            std::env::var("FASTLY_EXPORTER_REQUIRE_PROMETHEUS").is_err(),
            "promtool not installed (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: promtool not installed (apt-get install prometheus): only our side is checked");
    }
    ok
}

/// `(passed, output)` of `promtool check web-config path`.
fn promtool_check(path: &Path) -> (bool, String) {
    let out = Command::new("promtool").args(["check", "web-config"]).arg(path).output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A scratch directory with `tls/server.crt`, `tls/server.key`, `tls/client-ca.pem`.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = support::temp_path(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("tls/server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls/server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls/client-ca.pem"), ca_cert.pem()).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn example_passes_promtool_and_loads() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/web-config.yml")).unwrap();
    let s = Scratch::new("web-config-example");
    let path = s.write("web-config.yml", &example);
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let c = cfg.web_config.as_ref().expect("a web config");
    assert!(c.tls.is_some() && c.auth_enabled() && c.headers.len() == 3);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    if promtool() {
        let (ok, out) = promtool_check(&path);
        eprintln!("promtool check web-config examples/web-config.yml:\n{out}");
        assert!(ok, "{out}");
    }
    // The example with mutual TLS switched on passes too.
    let mtls = example.replace("# client_auth_type", "client_auth_type").replace("# client_ca_file", "client_ca_file");
    let path = s.write("web-config-mtls.yml", &mtls);
    load(&path).unwrap_or_else(|e| panic!("{e}"));
    if promtool() {
        let (ok, out) = promtool_check(&path);
        assert!(ok, "{out}");
    }
}

/// Files in the format of the installed promtool's toolkit (0.8 and later), with whether
/// they are valid. Each is checked with both promtool and our loader.
const CASES: &[(&str, bool)] = &[
    ("", true),
    ("{}\n", true),
    ("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n", true),
    ("tls_server_config:\n  cert_filse: tls/server.crt\n", false),
    ("tls_server_confg:\n  cert_file: tls/server.crt\n", false),
    ("tls_server_config:\n  cert_file: tls/server.crt\n", false),
    ("tls_server_config:\n  key_file: tls/server.key\n", false),
    ("tls_server_config:\n  cert_file: tls/missing.crt\n  key_file: tls/server.key\n", false),
    ("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.crt\n", false),
    (
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: tls/client-ca.pem\n",
        true,
    ),
    (
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_ca_file: tls/client-ca.pem\n",
        false,
    ),
    (
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_auth_type: Sometimes\n",
        false,
    ),
    (
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_auth_type: RequireAnyClientCert\n",
        true,
    ),
    (
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: tls/client-ca.pem\n  \
         min_version: TLS10\n  max_version: TLS13\n  prefer_server_cipher_suites: false\n  \
         cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n  - TLS_RSA_WITH_AES_128_CBC_SHA\n  \
         curve_preferences: [CurveP256, CurveP521, X25519]\n",
        true,
    ),
    ("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  min_version: TLS14\n", false),
    ("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  cipher_suites: [FOO]\n", false),
    ("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  curve_preferences: [P1]\n", false),
    ("http_server_config:\n  http2: false\n", true),
    (
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=1\n    \
         X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n    Content-Security-Policy: \"default-src 'self'\"\n",
        true,
    ),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", false),
    ("http_server_config:\n  headers:\n    Server: x\n", false),
    ("http_server_config:\n  http3: true\n", false),
    (
        "basic_auth_users:\n  alice: $2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby\n  \
         carol: $2y$10$qRTBuFoULoYNA7AQ/F3ck.trZBPyjV64.oA4ZsSBCIWvXuvQlQTuu\n",
        true,
    ),
    ("basic_auth_users:\n  alice: plaintext\n", false),
    ("basic_auth_users:\n  alice: $2y$10$short\n", false),
    ("basic_auth_users:\n  alice: x\n  alice: y\n", false),
    ("junk: [\n", false),
];

#[test]
fn verdicts_match_promtool() {
    let s = Scratch::new("web-config-cases");
    let with_promtool = promtool();
    let mut disagreements = Vec::new();
    for (i, (text, valid)) in CASES.iter().enumerate() {
        let path = s.write(&format!("case{i}.yml"), text);
        let ours = load(&path).map(|_| ());
        if ours.is_ok() != *valid {
            disagreements.push(format!("case {i} ours: {ours:?}\n{text}"));
        }
        if let Err(e) = &ours {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
        }
        if with_promtool {
            let (ok, out) = promtool_check(&path);
            if ok != *valid {
                disagreements.push(format!("case {i} promtool: {out}\n{text}"));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n---\n"));
}

#[test]
fn bad_web_config_exits_2_with_one_line() {
    let s = Scratch::new("web-config-cli");
    let path = s.write("web.yml", "tls_server_config:\n  cert_file: tls/server.crt\n  key_fle: tls/server.key\n");
    let p = path.to_str().unwrap();
    let (code, _, err) =
        support::run_to_exit_timeout(&["-token", "T", "-web-config-file", p], &[], Duration::from_secs(10));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("fastly-exporter: -web-config-file {p}: line 3: unknown key \"key_fle\" in tls_server_config")
    );
    // The same through the environment.
    let (code, _, err) = support::run_to_exit_timeout(
        &["-token", "T"],
        &[("FASTLY_EXPORTER_WEB_CONFIG_FILE", p)],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
