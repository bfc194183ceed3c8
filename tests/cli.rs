//! The command line end to end: flag / environment / config-file precedence, the token's
//! syntax forms and secrecy, and how bad input is reported.

use crate::support;

use std::time::Duration;

use fake_fastly::Reply;
use support::{
    Exporter, FakeConfig, FakeFastly, FakeService, StreamMode, fake_with, rt_polls, run_to_exit_timeout, start_against,
    start_against_env, temp_path, wait_until,
};

const T: Duration = Duration::from_secs(15);
const SECRET: &str = "tok-SECRET-1234567890";

/// Environment variables given to a run.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// A fake that accepts only `token`, listing service `A`, with held polls.
fn fake_requiring(token: &str) -> FakeFastly {
    FakeFastly::start(FakeConfig {
        token: Some(token.into()),
        services: vec![FakeService::new("A", "name-A", 1)],
        realtime: StreamMode::Script(Vec::new()),
        origins: StreamMode::NotFound,
        domains: StreamMode::NotFound,
        ..FakeConfig::default()
    })
    .unwrap()
}

/// Metric-name prefixes (`<namespace>_<subsystem>_`) of the families in a scrape.
fn build_info_names(exp: &Exporter) -> Vec<String> {
    exp.metrics().types.keys().filter(|k| k.ends_with("build_info")).cloned().collect()
}

#[test]
fn namespace_precedence_flag_env_file_default() {
    let fake = fake_with(vec![FakeService::new("A", "a", 1)], StreamMode::Script(Vec::new()));
    let conf = temp_path("ns.conf");
    std::fs::write(&conf, "namespace filens\n").unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let env = [("FASTLY_EXPORTER_NAMESPACE", "envns")];
    let all = start_against_env(&fake, Some("T"), &["-config-file", &conf, "-namespace", "flagns"], &env);
    let env_file = start_against_env(&fake, Some("T"), &["-config-file", &conf], &env);
    let file = start_against(&fake, "T", &["-config-file", &conf]);
    let none = start_against(&fake, "T", &[]);
    for (exp, ns) in [(&all, "flagns"), (&env_file, "envns"), (&file, "filens"), (&none, "fastly")] {
        assert_eq!(build_info_names(exp), [format!("{ns}_rt_build_info")]);
        exp.wait_sd(&["A"], T);
        let m = exp.metrics();
        assert!(
            m.types.keys().filter(|k| !support::is_self_metric(k)).all(|k| k.starts_with(&format!("{ns}_rt_"))),
            "{ns}: {:?}",
            m.types.keys().collect::<Vec<_>>()
        );
        assert_eq!(m.find(&format!("{ns}_rt_service_info"), &[("service_id", "A")]), [1.0]);
    }
    let _ = std::fs::remove_file(conf);
}

#[test]
fn token_sources_and_syntax_forms() {
    let tok = "tok-form-XYZ";
    let fake = fake_requiring(tok);
    let conf = temp_path("token.conf");
    std::fs::write(&conf, format!("# the token\ntoken {tok}\n")).unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let dash_eq = format!("-token={tok}");
    let ddash_eq = format!("--token={tok}");
    let cases: Vec<(&str, Vec<&str>, Env)> = vec![
        ("-token=T", vec![dash_eq.as_str()], vec![]),
        ("--token T", vec!["--token", tok], vec![]),
        ("--token=T", vec![ddash_eq.as_str()], vec![]),
        ("FASTLY_API_TOKEN", vec![], vec![("FASTLY_API_TOKEN", tok)]),
        ("FASTLY_EXPORTER_TOKEN", vec![], vec![("FASTLY_EXPORTER_TOKEN", tok)]),
        ("config file", vec!["-config-file", conf.as_str()], vec![]),
        ("flag over env", vec!["-token", tok], vec![("FASTLY_API_TOKEN", "wrong-token")]),
        ("env over file", vec!["-config-file", conf.as_str()], vec![("FASTLY_EXPORTER_TOKEN", "wrong-token")]),
    ];
    let exporters: Vec<(&str, Exporter)> =
        cases.iter().map(|(what, args, env)| (*what, start_against_env(&fake, None, args, env))).collect();
    for (what, exp) in &exporters {
        // "env over file" must use the (wrong) environment token: the fake refuses it.
        if *what == "env over file" {
            wait_until(
                "a service list request with the environment's token",
                T,
                || {
                    fake.state().requests().iter().any(|r| {
                        r.path_and_query.starts_with("/service?") && r.header("Fastly-Key") == Some("wrong-token")
                    })
                },
                || exp.output(),
            );
            // The refresh has failed (instead of waiting 0.3 s).
            wait_until(
                "the refused refresh",
                T,
                || exp.output().contains("service list refresh failing"),
                || exp.output(),
            );
            assert!(exp.sd().is_empty(), "{what}: the config file's token won over the environment");
        } else {
            exp.wait_sd(&["A"], T);
        }
    }
    let keys: Vec<String> =
        fake.state().requests().iter().filter_map(|r| r.header("Fastly-Key").map(str::to_string)).collect();
    assert!(keys.iter().all(|k| k == tok || k == "wrong-token"), "{keys:?}");
    let _ = std::fs::remove_file(conf);
}

#[test]
fn config_file_example_loads_as_a_config_file() {
    let (code, out, err) = run_to_exit_timeout(&["-config-file-example"], &[], Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let conf = temp_path("example.conf");
    std::fs::write(&conf, &out).unwrap();
    // The example's token placeholder is what the fake accepts, proving the file was read;
    // the endpoints and listen address are overridden on the command line.
    let token =
        out.lines().find_map(|l| l.strip_prefix("token ")).expect("the example sets a token").trim().to_string();
    let fake = fake_requiring(&token);
    let exp = start_against_env(&fake, None, &["-config-file", conf.to_str().unwrap()], &[]);
    exp.wait_sd(&["A"], T);
    assert_eq!(build_info_names(&exp), ["fastly_rt_build_info"]);
    let _ = std::fs::remove_file(conf);
}

/// Runs the binary with `args` (endpoints pointed nowhere useful, so nothing leaves the
/// host should it start by mistake); expects exit 2 and a single stderr line naming `flag`.
fn expect_usage_error(args: &[&str], env: &[(&str, &str)], flag: &str) -> String {
    let mut all: Vec<&str> =
        vec!["-api-endpoint", "http://127.0.0.1:9", "-rt-endpoint", "http://127.0.0.1:9", "-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (code, out, err) = run_to_exit_timeout(&all, env, Duration::from_secs(10));
    assert_eq!(code, Some(2), "{args:?}: stdout {out:?} stderr {err:?}");
    assert!(out.is_empty(), "{args:?}: stdout {out:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr {err:?}");
    assert!(lines[0].contains(flag), "{args:?}: {:?} does not name {flag}", lines[0]);
    assert!(!err.contains(SECRET), "{args:?}: token leaked: {err}");
    lines[0].to_string()
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_flag() {
    let t = ["-token", SECRET];
    let with_token = |rest: &[&'static str]| -> Vec<&'static str> {
        let mut v: Vec<&'static str> = t.to_vec();
        v.extend_from_slice(rest);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (with_token(&["-bogus"]), "-bogus"),
        (with_token(&["--no-such-flag=1"]), "-no-such-flag"),
        (with_token(&["-service-refresh", "5"]), "-service-refresh"),
        (with_token(&["-api-timeout", "soon"]), "-api-timeout"),
        (with_token(&["-service-allowlist", "("]), "-service-allowlist"),
        (with_token(&["-service-blocklist", "[z-a]"]), "-service-blocklist"),
        (with_token(&["-metric-allowlist", "(?P<x"]), "-metric-allowlist"),
        (with_token(&["-metric-blocklist", "*"]), "-metric-blocklist"),
        (with_token(&["-datacenter-allowlist", "("]), "-datacenter-allowlist"),
        (with_token(&["-datacenter-allowlist", "^AMS$", "-datacenter-allowlist", "[z-a]"]), "-datacenter-allowlist"),
        (with_token(&["-datacenter-blocklist", "(?P<x"]), "-datacenter-blocklist"),
        (with_token(&["-datacenter-group", "-aggregate-only"]), "-datacenter-group"),
        (with_token(&["-datacenter-group=perhaps"]), "-datacenter-group"),
        (with_token(&["-service-shard", "4/3"]), "-service-shard"),
        (with_token(&["-service-shard", "0/3"]), "-service-shard"),
        (with_token(&["-service-shard", "abc"]), "-service-shard"),
        // A StatefulSet scaled past its shard count, a Deployment's pod name, an unset variable.
        (with_token(&["-service-shard-ordinal", "fastly-exporter-3/3"]), "-service-shard-ordinal"),
        (with_token(&["-service-shard-ordinal", "fastly-exporter-5d8f9c-abcde/3"]), "-service-shard-ordinal"),
        (with_token(&["-service-shard-ordinal", "/3"]), "-service-shard-ordinal"),
        (with_token(&["-service-shard-ordinal", "$(POD_NAME)/3"]), "-service-shard-ordinal"),
        (with_token(&["-service-shard", "1/3", "-service-shard-ordinal", "x-0/3"]), "-service-shard-ordinal"),
        (vec![], "-token"),
        (vec!["-token", ""], "-token"),
    ];
    for (args, flag) in &cases {
        expect_usage_error(args, &[], flag);
    }
    // The same through the environment still names the flag.
    expect_usage_error(&[], &[("FASTLY_API_TOKEN", SECRET), ("FASTLY_EXPORTER_SERVICE_SHARD", "4/3")], "service-shard");
    expect_usage_error(
        &[],
        &[("FASTLY_API_TOKEN", SECRET), ("FASTLY_EXPORTER_SERVICE_REFRESH", "5")],
        "service-refresh",
    );
    expect_usage_error(
        &[],
        &[("FASTLY_API_TOKEN", SECRET), ("FASTLY_EXPORTER_DATACENTER_BLOCKLIST", "(")],
        "-datacenter-blocklist",
    );
    expect_usage_error(
        &["-aggregate-only"],
        &[("FASTLY_API_TOKEN", SECRET), ("FASTLY_EXPORTER_DATACENTER_GROUP", "true")],
        "-datacenter-group",
    );
    let line = expect_usage_error(
        &[],
        &[("FASTLY_API_TOKEN", SECRET), ("FASTLY_EXPORTER_SERVICE_SHARD_ORDINAL", "fastly-exporter-3/3")],
        "service-shard-ordinal",
    );
    assert_eq!(
        line,
        "fastly-exporter: invalid value \"fastly-exporter-3/3\" for -service-shard-ordinal: ordinal 3 is not below \
         the shard count 3 (more pods than shards?)"
    );
}

#[test]
fn a_taken_listen_port_exits_1_with_a_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = run_to_exit_timeout(
        &[
            "-token",
            SECRET,
            "-api-endpoint",
            "http://127.0.0.1:9",
            "-rt-endpoint",
            "http://127.0.0.1:9",
            "-listen",
            &addr,
        ],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "stdout {out:?} stderr {err:?}");
    let all = format!("{out}{err}");
    assert!(
        all.lines().any(|l| l.contains(&addr) && l.to_lowercase().contains("listen")),
        "no line names the address: {all:?}"
    );
    assert!(!all.contains(SECRET));
    drop(taken);
}

/// Everything an exporter serves that a user could look at.
fn served(exp: &Exporter, ids: &[&str]) -> String {
    let mut all = String::new();
    let mut paths = vec![
        "/".to_string(),
        "/status.json".to_string(),
        "/sd".to_string(),
        "/metrics".to_string(),
        "/healthz".to_string(),
        "/readyz".to_string(),
        "/metrics?target=nope".to_string(),
    ];
    paths.extend(ids.iter().map(|id| format!("/metrics?target={id}")));
    for p in &paths {
        all.push_str(&exp.get(p).1);
        all.push_str(&support::get(&exp.url(p), &[("Accept", "application/json")]).1);
    }
    all
}

#[test]
fn the_token_is_never_written_even_when_the_api_rejects_it() {
    // 1. The API refuses the token outright: every request gets 401.
    let refusing = fake_requiring("some-other-token");
    let a = start_against(&refusing, SECRET, &["-debug", "-service", "X"]);
    // 2. The token is accepted but the API fails: 403 on the list, 500/403/401 on polls.
    let failing = fake_with(
        vec![FakeService::new("Y", "y", 1)],
        StreamMode::Script(vec![Reply::new(500, br#"{"msg":"boom"}"#.to_vec()), Reply::new(403, Vec::new())]),
    );
    failing.state().set_route("/service", 403, br#"{"msg":"forbidden"}"#.to_vec());
    let b = start_against_env(&failing, None, &["-debug", "-service", "Y"], &[("FASTLY_API_TOKEN", SECRET)]);
    let conf = temp_path("secret.conf");
    std::fs::write(&conf, format!("token {SECRET}\ndebug\nservice Y\n")).unwrap();
    let c = start_against_env(&failing, None, &["-config-file", conf.to_str().unwrap()], &[]);

    wait_until(
        "rejected requests",
        T,
        || !rt_polls(&refusing, "X").is_empty() && refusing.state().count("/service?") >= 1,
        || a.output(),
    );
    // Two polls per exporter of Y: the 500 and, 5 s later, the 403.
    wait_until("failed polls", T, || rt_polls(&failing, "Y").len() >= 3, || format!("{}\n{}", b.output(), c.output()));
    // A reload each, run to its end (instead of waiting 0.5 s).
    a.hup_and_settle(&refusing);
    b.hup_and_settle(&failing);
    c.hup_and_settle(&failing);
    for (name, exp, ids) in [("401", &a, &["X"]), ("403/500", &b, &["Y"]), ("file", &c, &["Y"])] {
        let log = exp.output();
        assert!(log.contains("DEBUG"), "{name}: -debug had no effect:\n{log}");
        assert!(!log.contains(SECRET), "{name}: token in the log:\n{log}");
        let pages = served(exp, ids);
        assert!(!pages.contains(SECRET), "{name}: token served over HTTP");
    }
    // Exporter c shares the failing fake; the requests did carry the token.
    assert!(failing.state().requests().iter().all(|r| r.header("Fastly-Key") == Some(SECRET)));
    let _ = std::fs::remove_file(conf);
}

#[test]
fn the_token_is_never_written_when_flags_are_bad() {
    let runs: Vec<(Vec<&str>, Env)> = vec![
        (vec!["-token", SECRET, "-bogus"], vec![]),
        (vec!["-token", SECRET, "-service-shard", "4/3"], vec![]),
        (vec!["-token", SECRET, "-namespace", SECRET], vec![]),
        (vec![&format!("--token={SECRET}").leak()[..], "stray"], vec![]),
        // A token pasted without its flag.
        (vec![SECRET], vec![]),
        (vec!["-debug", SECRET], vec![]),
        (vec!["-token"], vec![("FASTLY_API_TOKEN", SECRET)]),
        (vec!["-service-allowlist", "("], vec![("FASTLY_EXPORTER_TOKEN", SECRET)]),
        (vec!["-debug", "-service-refresh", "5"], vec![("FASTLY_API_TOKEN", SECRET)]),
    ];
    for (args, env) in &runs {
        let (code, out, err) = run_to_exit_timeout(args, env, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(!out.contains(SECRET) && !err.contains(SECRET), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A config file whose token line lost its flag name (a real, 32-character Fastly token),
    // or whose values are bad.
    let real = "Zx9aQ3kLm8Pq2Rt7Vw4Yb6Nc1Df5Gh0a";
    let conf = temp_path("bare.conf");
    std::fs::write(&conf, format!("{real}\n")).unwrap();
    let (code, _, err) = run_to_exit_timeout(&["-config-file", conf.to_str().unwrap()], &[], Duration::from_secs(10));
    let _ = std::fs::remove_file(&conf);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains(real), "{err}");
    assert!(err.contains("line 1"), "{err}");
    for text in [format!("token {SECRET}\nservice-shard 9/3\n"), format!("token {SECRET}\nnamespace {SECRET}\n")] {
        let conf = temp_path("bad.conf");
        std::fs::write(&conf, &text).unwrap();
        let (code, out, err) =
            run_to_exit_timeout(&["-config-file", conf.to_str().unwrap()], &[], Duration::from_secs(10));
        let _ = std::fs::remove_file(&conf);
        assert_eq!(code, Some(2), "{text:?}: {err}");
        assert!(!out.contains(SECRET) && !err.contains(SECRET), "{text:?}: {err}");
    }
}

#[test]
fn a_short_bare_token_is_not_echoed_as_an_unknown_flag() {
    // A config-file line holding only the token, and the token typed with a dash.
    let conf = temp_path("bare-short.conf");
    std::fs::write(&conf, format!("{SECRET}\n")).unwrap();
    let dashed = format!("-{SECRET}");
    for args in [vec!["-config-file", conf.to_str().unwrap()], vec![dashed.as_str()]] {
        let (code, out, err) = run_to_exit_timeout(&args, &[], Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(!out.contains(SECRET) && !err.contains(SECRET), "{args:?}: token echoed: {err}");
    }
    let _ = std::fs::remove_file(&conf);
}
