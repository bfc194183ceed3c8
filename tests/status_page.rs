//! Issue 20: the status page at `/` and `/status.json`, end to end. The release binary runs
//! against the fake with three services: one healthy, one whose real-time stream the fake
//! answers with HTTP 500, and one renamed (SIGHUP) to a hostile name. Origin Inspector is
//! entitled for the account but every origins poll gets 404 (`not entitled`); Domain
//! Inspector is not entitled, so that stream is not polled (absent).
//!
//! `/status.json` is checked field by field; then headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`) loads `/`, its DOM is dumped and checked (states, the error's
//! status, the hostile name as text with no element added, the counts), and a screenshot is
//! saved as an artifact (`target/artifacts/status-page.png`). Without Chromium the browser
//! part is skipped with a message, unless FASTLY_EXPORTER_REQUIRE_CHROMIUM=1 (set by CI) makes
//! that a failure.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_fastly::{GenSpec, Reply, Stream};
use support::{Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, fixture, wait_until};

const T: Duration = Duration::from_secs(60);
const HEALTHY: &str = "svcHEALTHYxxxxxxxxxxxx";
const FAILING: &str = "svcFAILINGxxxxxxxxxxxx";
const RENAMED: &str = "svcRENAMEDxxxxxxxxxxxx";
/// Markup, both quotes, a newline, and characters from several scripts, an emoji included.
const HOSTILE: &str = "<img src=x onerror=alert(1)> \"double\" 'single'\nline two: ünïcødé ✓ 日本語 🚀 &amp;";

fn chromium() -> Option<String> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new(name).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if found.is_ok_and(|s| s.success()) {
            return Some(name.to_string());
        }
    }
    assert!(
        std::env::var("FASTLY_EXPORTER_REQUIRE_CHROMIUM").is_err(),
        "chromium not installed (apt-get install chromium)"
    );
    eprintln!("SKIPPED: the browser checks of the status page: chromium not installed (apt-get install chromium)");
    None
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`) in a fresh
/// profile, killing it after 90 s; returns its standard output.
fn run_chromium(browser: &str, url: &str, args: &[&str]) -> String {
    let profile = support::temp_path("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let out_path = support::temp_path("chromium-out");
    let err_path = support::temp_path("chromium-err");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} took over 90 s; stderr:\n{}", std::fs::read_to_string(&err_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    assert!(status.success(), "chromium {args:?}: {status}; stderr:\n{err}");
    out
}

fn status_json(exp: &Exporter) -> serde_json::Value {
    let (status, body) = exp.get("/status.json");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status.json is not JSON ({e}): {body}"))
}

fn service<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["services"].as_array().and_then(|a| a.iter().find(|s| s["id"] == id)).unwrap_or(&serde_json::Value::Null)
}

/// The state of `id`'s `stream` in a `/status.json` document.
fn state<'a>(v: &'a serde_json::Value, id: &str, stream: &str) -> &'a str {
    service(v, id)["streams"][stream]["state"].as_str().unwrap_or("")
}

fn start() -> (FakeFastly, Exporter) {
    let fake = FakeFastly::start(FakeConfig {
        token: Some("T".into()),
        services: vec![
            FakeService::new(HEALTHY, "healthy service", 3),
            FakeService::new(FAILING, "failing service", 4),
            FakeService::new(RENAMED, "plain name", 5),
        ],
        realtime: StreamMode::Generated(GenSpec { datacenters: 3, entities: 1, seed: 1 }),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .expect("fake starts");
    let st = fake.state();
    let entitlement = |has: bool| format!(r#"{{"product":{{"id":"p","object":"product"}},"has_access":{has}}}"#);
    st.set_route("/entitled-products/origin_inspector", 200, entitlement(true).into_bytes());
    st.set_route("/entitled-products/domain_inspector", 200, entitlement(false).into_bytes());
    st.set_route("/tokens/self", 200, fixture("api/tokens-self-expires.json"));
    st.set_route("/datacenters", 200, fake_fastly::datacenters_json(3));
    let boom = Reply::new(500, br#"{"Error":"internal server error"}"#.to_vec());
    st.set_service_reply(Stream::Realtime, FAILING, Some(boom));
    let url = fake.url();
    let exp = Exporter::start_bin(
        &support::release_bin(),
        &["-token", "T", "-api-endpoint", &url, "-rt-endpoint", &url],
        &[],
        None,
    );
    (fake, exp)
}

#[test]
fn status_page_and_json_show_each_streams_state() {
    let (fake, exp) = start();
    // Everything settled: healthy answers, the failing stream failed with its 500, every
    // origins stream got its 404.
    let settled = |v: &serde_json::Value| {
        let failed = &service(v, FAILING)["streams"]["realtime"];
        state(v, HEALTHY, "realtime") == "ok"
            && state(v, RENAMED, "realtime") == "ok"
            && failed["last_error"]["status"] == 500
            && [HEALTHY, FAILING, RENAMED].iter().all(|id| state(v, id, "origins") == "not entitled")
            && service(v, HEALTHY)["streams"]["realtime"]["series"].as_u64().is_some_and(|n| n > 0)
    };
    wait_until("every state on /status.json", T, || settled(&status_json(&exp)), || exp.output());

    // The rename to a hostile name, picked up by the refresh SIGHUP triggers.
    let mut services = fake.state().services();
    services.iter_mut().filter(|s| s.id == RENAMED).for_each(|s| s.name = HOSTILE.to_string());
    fake.state().set_services(services);
    exp.signal("HUP");
    wait_until("the new name", T, || service(&status_json(&exp), RENAMED)["name"] == HOSTILE, || exp.output());
    wait_until("still settled", T, || settled(&status_json(&exp)), || exp.output());

    let v = status_json(&exp);
    check_json(&v);
    // The series count is what a full scrape renders, the exporter's own families aside (both
    // read at once, so wait until no answer lands in between).
    wait_until(
        "/status.json's series to match /metrics",
        T,
        || {
            let series = status_json(&exp)["series"].as_u64();
            let scrape = exp.get("/metrics").1;
            let lines = scrape
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter(|l| !support::is_self_metric(l))
                .count() as u64;
            series == Some(lines)
        },
        || format!("{}\n{}", status_json(&exp)["series"], exp.output()),
    );
    // The JSON index at / keeps its fields.
    let (status, index) = support::get(&exp.url("/"), &[("Accept", "application/json")]);
    assert_eq!(status, 200);
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    for key in ["metrics", "sd", "healthz", "readyz"] {
        assert_eq!(index[key], format!("/{key}"), "{index}");
    }
    let listed = index["services"].as_array().unwrap();
    let renamed = listed.iter().find(|s| s["id"] == RENAMED).unwrap();
    assert_eq!(renamed["name"], HOSTILE);
    assert_eq!(renamed["version"], "5");
    assert_eq!(renamed["metrics"], format!("/metrics?target={RENAMED}"));

    let Some(browser) = chromium() else { return };
    let url = exp.url("/");
    let dom = run_chromium(&browser, &url, &["--dump-dom"]);
    check_dom(&dom);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("artifacts/status-page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    run_chromium(&browser, &url, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,800"]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} is not a screenshot", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
}

fn check_json(v: &serde_json::Value) {
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["ready_reason"], "");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].as_f64().is_some_and(|u| u > 0.0), "{v}");
    assert_eq!(v["counts"], serde_json::json!({"ok": 2, "failing": 1, "starting": 0}), "{v}");
    assert_eq!(v["datacenters"], 3);
    assert!(v["token"]["expires_at"].is_string(), "{v}");
    assert!(v["service_list"]["last_success_seconds_ago"].as_f64().is_some_and(|s| s < 60.0), "{v}");
    let ids: Vec<&str> = v["services"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids[0], FAILING, "failing first: {ids:?}");
    assert_eq!(ids.len(), 3);

    let healthy = service(v, HEALTHY);
    assert_eq!((&healthy["name"], &healthy["version"]), (&"healthy service".into(), &3.into()));
    let rt = &healthy["streams"]["realtime"];
    assert_eq!(rt["state"], "ok");
    assert!(rt["last_success_seconds_ago"].as_f64().is_some_and(|s| (0.0..30.0).contains(&s)), "{rt}");
    assert_eq!(rt["last_error"], serde_json::Value::Null, "{rt}");
    let origins = &healthy["streams"]["origins"];
    assert_eq!(origins["last_error"]["status"], 404, "{origins}");
    assert_eq!(origins["series"], 0);
    assert!(healthy["streams"].get("domains").is_none(), "domain_inspector is not entitled: absent: {healthy}");

    let failing = &service(v, FAILING)["streams"]["realtime"];
    assert!(["failing", "backing off"].contains(&failing["state"].as_str().unwrap()), "{failing}");
    assert_eq!(failing["last_error"]["status"], 500);
    let message = failing["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("500") && message.contains("internal server error"), "{message}");
    assert_eq!(failing["last_success_seconds_ago"], serde_json::Value::Null);
    assert_eq!(failing["series"], 0);
    assert!(!v.to_string().contains("\"T\""), "no token in the document");
}

/// The checks on Chromium's DOM. Chromium serialises text with `<`, `>` and `&` as entities,
/// so outside the one script every `<` in the dump opens or closes a real element.
fn check_dom(dom: &str) {
    let (before, rest) = dom.split_once("<script>").expect("the page's script");
    let markup = format!("{before}{}", rest.split_once("</script>").expect("script end").1);
    assert!(!markup.contains("<img"), "an <img> element exists:\n{dom}");
    assert_eq!(markup.matches("<script").count(), 0, "one script only");

    let count = |id: &str| -> String {
        let at = markup.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}:\n{dom}"));
        let text = &markup[at..];
        text[text.find('>').unwrap() + 1..text.find('<').unwrap()].to_string()
    };
    assert_eq!(count("n-ok"), "2", "{dom}");
    assert_eq!(count("n-failing"), "1", "{dom}");

    let rows: Vec<&str> = markup.split("<tr class=\"v-").skip(1).map(|r| r.split("</tr>").next().unwrap()).collect();
    assert_eq!(rows.len(), 3, "{dom}");
    let row = |id: &str| *rows.iter().find(|r| r.contains(&format!(">{id}</a>"))).unwrap_or_else(|| panic!("{id}"));
    let healthy = row(HEALTHY);
    assert!(healthy.starts_with("ok\""), "{healthy}");
    assert!(healthy.contains("<td class=\"st-ok\"><b>ok</b>"), "{healthy}");
    assert!(healthy.contains("<td class=\"st-not-entitled\"><b>not entitled</b>"), "{healthy}");
    assert!(healthy.contains("<td class=\"m\">not polled</td>"), "{healthy}");
    assert!(healthy.contains("href=\"/metrics?target=svcHEALTHYxxxxxxxxxxxx\""), "{healthy}");

    let failing = row(FAILING);
    assert!(rows[0] == failing, "failing first");
    assert!(failing.contains("<b>failing</b>") || failing.contains("<b>backing off</b>"), "{failing}");
    let error = failing.split("<div class=\"e\">").nth(1).expect("an error line").split("</div>").next().unwrap();
    assert!(error.contains("HTTP 500") && error.contains("internal server error"), "{error}");

    let renamed = row(RENAMED);
    let name = renamed.split("<td class=\"n\">").nth(1).unwrap().split("</td>").next().unwrap();
    assert!(!name.contains('<'), "the name cell holds text only: {name:?}");
    assert_eq!(unescape(name), HOSTILE);
    let elements = |r: &str| r.match_indices('<').filter(|(i, _)| r[i + 1..].starts_with(char::is_alphabetic)).count();
    assert_eq!(elements(renamed), elements(healthy), "the hostile row has the healthy row's elements:\n{renamed}");
}

/// The text of serialised HTML text content.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}
