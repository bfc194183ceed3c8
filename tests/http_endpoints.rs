//! The exporter's own HTTP endpoints: `/metrics[?target=]`, `/sd`, `/`, `/healthz`,
//! `/readyz`, unknown paths and methods.

use crate::support;

use std::time::Duration;

use support::expo;
use support::{Exporter, FakeFastly, FakeService, StreamMode, fake_with, fixture, start_against};

const T: Duration = Duration::from_secs(15);

/// Three services (listed out of order, one with a name full of HTML metacharacters), each
/// fed the real-time fixture once.
fn three() -> (FakeFastly, Exporter) {
    let fake = fake_with(
        vec![
            FakeService::new("svcC", "charlie", 3),
            FakeService::new("svcA", "<Prod & \"Co\">", 1),
            FakeService::new("svcB", "bravo", 2),
        ],
        StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(40) },
    );
    let exp = start_against(&fake, "T", &[]);
    exp.wait_for("data of all three", T, |m| {
        ["svcA", "svcB", "svcC"]
            .iter()
            .all(|id| !m.find("fastly_rt_requests_total", &[("service_id", id), ("datacenter", "LGA")]).is_empty())
    });
    (fake, exp)
}

fn service_ids(m: &expo::Scrape) -> Vec<String> {
    let mut v: Vec<String> = m
        .samples
        .iter()
        .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == "service_id"))
        .map(|(_, v)| v.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn metrics_target_selects_one_service() {
    let (_fake, exp) = three();
    let all = exp.metrics();
    assert_eq!(service_ids(&all), ["svcA", "svcB", "svcC"]);
    for id in ["svcA", "svcB", "svcC"] {
        let (status, headers, body) = support::get_raw(&exp.url(&format!("/metrics?target={id}")), &[]);
        assert_eq!(status, 200);
        assert!(headers.get("content-type").is_some_and(|t| t.starts_with("text/plain")), "{headers:?}");
        let m = expo::parse(&String::from_utf8(body).unwrap());
        assert_eq!(service_ids(&m), [id], "target={id}");
        // Every series of that service is there, with the same values.
        let mine: Vec<(&String, &f64)> = all
            .series
            .iter()
            .filter(|(k, _)| k.contains(&format!("service_id=\"{id}\"")))
            .filter(|(k, _)| !k.contains("last_successful_response"))
            .collect();
        assert!(mine.len() > 1000);
        for (k, v) in mine {
            assert_eq!(m.get(k), Some(*v), "target={id}: {k}");
        }
    }
    let (status, headers, body) = support::get_raw(&exp.url("/metrics?target=nope"), &[]);
    assert_eq!(status, 404);
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("nope"), "{body}");
    assert!(body.to_lowercase().contains("unknown"), "{body}");
    assert!(headers.get("content-type").is_some_and(|t| t.starts_with("text/plain")), "{headers:?}");
}

#[test]
fn sd_and_index_list_the_services() {
    let (_fake, exp) = three();
    // /sd: Prometheus HTTP SD JSON, IDs sorted.
    let (status, headers, body) = support::get_raw(&exp.url("/sd"), &[]);
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, serde_json::json!([{"targets": ["svcA", "svcB", "svcC"]}]));

    // / as HTML links /metrics and every service's targeted scrape, names escaped.
    let (status, headers, body) = support::get_raw(&exp.url("/"), &[]);
    assert_eq!(status, 200);
    assert!(headers.get("content-type").is_some_and(|t| t.starts_with("text/html")), "{headers:?}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("href=\"/metrics\""), "{html}");
    for id in ["svcA", "svcB", "svcC"] {
        assert!(html.contains(&format!("href=\"/metrics?target={id}\"")), "{id}: {html}");
    }
    assert!(html.contains("&lt;Prod &amp; &quot;Co&quot;&gt;"), "{html}");
    assert!(!html.contains("<Prod"), "{html}");

    // / as JSON when asked.
    let (status, headers, body) = support::get_raw(&exp.url("/"), &[("Accept", "application/json")]);
    assert_eq!(status, 200);
    assert!(headers.get("content-type").is_some_and(|t| t.starts_with("application/json")), "{headers:?}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["metrics"], "/metrics");
    let services = v["services"].as_array().expect("services list");
    let ids: Vec<&str> = services.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["svcA", "svcB", "svcC"]);
    assert_eq!(services[0]["name"], "<Prod & \"Co\">");
    let text = serde_json::to_string(&v).unwrap();
    assert!(text.contains("/metrics?target=svcB"), "{text}");
}

#[test]
fn health_readiness_unknown_paths_and_methods() {
    let fake = fake_with(vec![FakeService::new("svcA", "a", 1)], StreamMode::Script(Vec::new()));
    fake.state().set_route("/service", 500, br#"{"msg":"down"}"#.to_vec());
    let exp = start_against(&fake, "T", &[]);
    support::wait_until("a first service list request", T, || fake.state().count("/service?") >= 1, || exp.output());
    assert_eq!(exp.get("/healthz").0, 200);
    let (status, body) = exp.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(!body.trim().is_empty());

    fake.state().remove_route("/service");
    exp.signal("HUP");
    support::wait_until("/readyz 200", T, || exp.readyz() == 200, || exp.output());
    exp.wait_sd(&["svcA"], T);
    assert_eq!(exp.get("/healthz").0, 200);

    for path in ["/nope", "/metrics/extra", "/sd/x", "/favicon.ico"] {
        assert_eq!(exp.get(path).0, 404, "{path}");
    }
    for (method, path) in
        [("POST", "/metrics"), ("POST", "/"), ("PUT", "/sd"), ("DELETE", "/metrics"), ("POST", "/nope")]
    {
        let (status, headers, _) = support::request(method, &exp.url(path), &[], b"x=1");
        assert_eq!(status, 405, "{method} {path}");
        assert!(headers.get("allow").is_some_and(|a| a.contains("GET")), "{method} {path}: {headers:?}");
    }
    // The server is still fine afterwards.
    assert_eq!(exp.get("/metrics").0, 200);
}

/// `HEAD /metrics` (load balancers, Kubernetes probes) answers the head of a scrape and no
/// body, on a keep-alive connection that then serves a GET: nothing was rendered or sent.
#[test]
fn head_metrics_answers_the_head_only() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (_fake, exp) = three();
    for (path, gzip) in [("/metrics", false), ("/metrics", true), ("/metrics?target=svcA", false)] {
        let mut sock = std::net::TcpStream::connect(&exp.addr).unwrap();
        sock.set_read_timeout(Some(T)).unwrap();
        let enc = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
        write!(sock, "HEAD {path} HTTP/1.1\r\nHost: x\r\n{enc}\r\n").unwrap();
        let mut r = BufReader::new(sock.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_ascii_lowercase());
        }
        assert_eq!(head[0], "http/1.1 200 ok", "{path}: {head:?}");
        assert!(head.iter().any(|h| h.starts_with("content-type: text/plain; version=0.0.4")), "{head:?}");
        assert_eq!(head.iter().any(|h| h == "content-encoding: gzip"), gzip, "{head:?}");
        // The next bytes on the connection are the answer to the next request.
        write!(sock, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert!(
            rest.starts_with("HTTP/1.1 200"),
            "{path}: bytes after the HEAD answer: {:?}",
            &rest[..rest.len().min(80)]
        );
        assert!(rest.ends_with("ok\n"), "{rest}");
    }
    // HEAD of an unknown target is still a 404.
    let (status, _, _) = support::request("HEAD", &exp.url("/metrics?target=nope"), &[], b"");
    assert_eq!(status, 404);
}
