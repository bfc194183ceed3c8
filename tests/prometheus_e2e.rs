//! Issue 7: a real Prometheus server discovers the exporter's services through `/sd`
//! (http_sd_configs), scrapes `/metrics?target=<id>` for each, and answers queries with the
//! expected values. Also `promtool check metrics` on a full scrape.
//!
//! Needs the Debian `prometheus` package (`.ci/run` installs it). Without it the test is
//! skipped with a message, unless FASTLY_EXPORTER_REQUIRE_PROMETHEUS=1 (set by CI) makes that
//! a failure.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{FakeConfig, FakeFastly, FakeService, StreamMode, fixture};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn require_tools() -> bool {
    if have("prometheus") && have("promtool") {
        return true;
    }
    assert!(
        std::env::var("FASTLY_EXPORTER_REQUIRE_PROMETHEUS").is_err(),
        "prometheus/promtool not installed (apt-get install prometheus)"
    );
    eprintln!("SKIPPED: prometheus/promtool not installed (apt-get install prometheus)");
    false
}

/// A real Prometheus, killed on drop.
struct Prometheus(Child);

impl Prometheus {
    /// Runs `dir/prometheus.yml` with its TSDB under `dir`; returns it and its API port.
    fn start(dir: &std::path::Path) -> (Prometheus, u16) {
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        (Prometheus(child), port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SERVICES: [&str; 3] = ["svcAAAAAAAAAAAAAAAAAAA", "svcBBBBBBBBBBBBBBBBBBB", "svcCCCCCCCCCCCCCCCCCCC"];

fn query(port: u16, q: &str) -> serde_json::Value {
    let enc: String = q
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let (status, body) = support::get(&format!("http://127.0.0.1:{port}/api/v1/query?query={enc}"), &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn results(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let id = r["metric"]["service_id"]
                        .as_str()
                        .or(r["metric"]["instance"].as_str())
                        .unwrap_or("")
                        .to_string();
                    (id, r["value"][1].as_str().unwrap_or("nan").parse().unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_discovers_and_scrapes_every_service() {
    if !require_tools() {
        return;
    }
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: SERVICES.iter().map(|id| FakeService::new(*id, format!("name-{id}"), 7)).collect(),
        realtime: StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(60) },
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .unwrap();
    let exp = support::start_against(&fake, "T", &[]);
    exp.wait_for("all services", Duration::from_secs(20), |m| {
        m.find("fastly_rt_requests_total", &[("datacenter", "LGA")]).len() == SERVICES.len()
    });

    let dir = std::env::temp_dir().join(format!("fe-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fastly
    http_sd_configs:
      - url: http://{addr}/sd
        refresh_interval: 2s
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {addr}
"#,
        addr = exp.addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let out = Command::new("promtool").arg("check").arg("config").arg(dir.join("prometheus.yml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (_prom, port) = Prometheus::start(&dir);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (ups, values) = loop {
        std::thread::sleep(Duration::from_secs(1));
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if ready {
            let ups = results(&query(port, r#"up{job="fastly"}"#));
            let values = results(&query(port, r#"fastly_rt_requests_total{datacenter="LGA"}"#));
            if ups.len() == SERVICES.len() && values.len() == SERVICES.len() {
                break (ups, values);
            }
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape every service in time");
    };
    let mut instances: Vec<&str> = ups.iter().map(|(i, _)| i.as_str()).collect();
    instances.sort();
    assert_eq!(instances, SERVICES, "one target per service, discovered through /sd");
    assert!(ups.iter().all(|(_, v)| *v == 1.0), "{ups:?}");
    for (id, v) in &values {
        assert!(SERVICES.contains(&id.as_str()));
        assert_eq!(*v, 57.0, "fastly_rt_requests_total{{datacenter=LGA}} of {id}");
    }
    // Each target's scrape carries only its own service.
    let per_target = results(&query(port, r#"count by (instance) (fastly_rt_service_info)"#));
    assert!(per_target.iter().all(|(_, n)| *n == 1.0), "{per_target:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool check metrics` accepts a full scrape, apart from findings that are the Go
/// exporter's own names and help texts (five counters without `_total`, four empty helps, five names promtool reads as
/// abbreviated units),
/// kept so dashboards keep working.
#[test]
fn promtool_check_metrics_passes_on_a_full_scrape() {
    if !require_tools() {
        return;
    }
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new("svcPROMTOOL", "promtool", 1)],
        ..FakeConfig::default()
    })
    .unwrap();
    for p in ["origin_inspector", "domain_inspector"] {
        fake.state().set_route(&format!("/entitled-products/{p}"), 200, br#"{"has_access":true}"#.to_vec());
    }
    let exp = support::start_against(&fake, "T", &[]);
    exp.wait_for("origin and domain data", Duration::from_secs(20), |m| {
        !m.with_prefix("fastly_origin_").is_empty() && !m.with_prefix("fastly_domain_").is_empty()
    });
    let (_, body) = exp.get("/metrics");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let allowed = [
        "fastly_rt_pipe counter metrics should have \"_total\" suffix",
        "fastly_rt_request_denied_get_head_body counter metrics should have \"_total\" suffix",
        "fastly_domain_origin_fetch_resp_body_bytes counter metrics should have \"_total\" suffix",
        "fastly_domain_origin_fetch_resp_header_bytes counter metrics should have \"_total\" suffix",
        "fastly_domain_origin_fetches counter metrics should have \"_total\" suffix",
        // Upstream declares these four with an empty help text; we keep its exact help.
        "fastly_rt_bot_challenges_verification_api_duplicate_total no help text",
        "fastly_rt_bot_challenges_verification_api_expired_total no help text",
        "fastly_rt_bot_challenges_verification_api_failure_total no help text",
        "fastly_rt_bot_challenges_verification_api_success_total no help text",
        // promtool's naming advice on upstream names ("ms", "b" and "_count" read as units).
        "fastly_rt_dictionary_item_count non-histogram and non-summary metrics should not have \"_count\" suffix",
        "fastly_rt_fanout_conn_time_ms_total metric names should not contain abbreviated units",
        "fastly_rt_websocket_conn_time_ms_total metric names should not contain abbreviated units",
        "fastly_rt_kv_store_class_b_operations_total metric names should not contain abbreviated units",
        "fastly_rt_object_storage_class_b_operations_total metric names should not contain abbreviated units",
    ];
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(allowed.iter().any(|a| line.contains(a)), "unexpected promtool finding: {line}\n{report}");
    }
}

/// A real Prometheus scrapes the exporter over TLS with basic auth (`scheme: https`,
/// `tls_config.ca_file`, `basic_auth`): `up` is 1. A job without credentials gets 401: 0.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    if !require_tools() {
        return;
    }
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![FakeService::new(SERVICES[0], "secure", 7)],
        realtime: StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(60) },
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("fe-prom-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = support::pki::Ca::new("scrape CA");
    let (cert, key) = ca.sign(&["127.0.0.1", "localhost"]);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let password = "prom-secret-88";
    let hash = bcrypt::hash(password, 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let out = Command::new("promtool").arg("check").arg("web-config").arg(&web).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let exp = support::start_against(&fake, "T", &["-web-config-file", web.to_str().unwrap()]);
    let config = format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: secure
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: {password}
    static_configs:
      - targets: ['{addr}']
  - job_name: anonymous
    scheme: https
    tls_config:
      ca_file: {ca}
    static_configs:
      - targets: ['{addr}']
"#,
        ca = dir.join("ca.pem").display(),
        addr = exp.addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let (_prom, port) = Prometheus::start(&dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let secure = results(&query(port, r#"up{job="secure"}"#));
            let anonymous = results(&query(port, r#"up{job="anonymous"}"#));
            let lga = results(&query(port, r#"fastly_rt_requests_total{job="secure",datacenter="LGA"}"#));
            if secure.first().map(|r| r.1) == Some(1.0) && anonymous.len() == 1 && lga.len() == 1 {
                assert_eq!(anonymous[0].1, 0.0, "a scrape without credentials got in");
                assert_eq!(lga[0].1, 57.0);
                eprintln!("Prometheus over https + basic auth: up=1; without credentials: up=0");
                break;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape over TLS:\n{}", exp.output());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
