//! End-to-end tests of [`load`]: argv + environment + config file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

const TOKEN: &str = "Sup3rS3cretT0kenValue";

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k: &str| map.get(k).cloned()
}

fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
    load(&argv(args), &env_of(env))
}

/// Loads with a token on the command line, expecting a runnable config.
fn run(args: &[&str]) -> Config {
    run_env(args, &[])
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Config {
    let mut full = vec!["-token", TOKEN];
    full.extend_from_slice(args);
    match load_with(&full, env) {
        Ok(Command::Run(c)) => *c,
        Ok(other) => panic!("{args:?}: unexpected {other:?}"),
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// Loads with a token, expecting an error; checks it is one line without
/// the token, and returns it.
fn fail(args: &[&str]) -> String {
    fail_env(args, &[])
}

fn fail_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut full = vec!["-token", TOKEN];
    full.extend_from_slice(args);
    let err = match load_with(&full, env) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("{args:?}: expected error, got {c:?}"),
    };
    assert!(!err.contains('\n'), "multi-line error: {err}");
    assert!(!err.contains(TOKEN), "token leaked: {err}");
    err
}

/// A unique temp file holding `text`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fastly-exporter-config-test-{}-{}.conf",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults() {
    let c = run(&[]);
    assert_eq!(c.token, TOKEN);
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.namespace, "fastly");
    assert_eq!(c.subsystem, "rt");
    assert!(c.service_ids.is_empty());
    assert!(c.service_allowlist.is_empty() && c.service_blocklist.is_empty());
    assert!(c.metric_allowlist.is_empty() && c.metric_blocklist.is_empty());
    assert_eq!(c.service_shard, None);
    assert_eq!(c.service_refresh, secs(60));
    assert_eq!(c.api_timeout, secs(15));
    assert_eq!(c.rt_timeout, secs(45));
    assert_eq!(c.product_refresh, secs(600));
    assert_eq!(c.datacenter_refresh, secs(600));
    assert_eq!(c.certificate_refresh, Some(secs(6 * 3600)));
    assert_eq!(c.dictionary_refresh, secs(300));
    assert_eq!(c.rt_max_body, 33_554_432);
    assert!(!c.aggregate_only && !c.debug);
    assert_eq!(c.api_endpoint, "https://api.fastly.com");
    assert_eq!(c.rt_endpoint, "https://rt.fastly.com");
    assert_eq!(c.config_file, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn syntax_variants() {
    for args in
        [&["-listen", "1.2.3.4:99"][..], &["-listen=1.2.3.4:99"], &["--listen", "1.2.3.4:99"], &["--listen=1.2.3.4:99"]]
    {
        assert_eq!(run(args).listen, "1.2.3.4:99", "{args:?}");
    }
    for args in [&["--token=abcd"][..], &["-token=abcd"], &["--token", "abcd"]] {
        match load_with(args, &[]) {
            Ok(Command::Run(c)) => assert_eq!(c.token, "abcd"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bools() {
    assert!(run(&["-debug"]).debug);
    assert!(run(&["-debug=true"]).debug);
    assert!(!run(&["-debug=false"]).debug);
    assert!(run(&["-debug=1"]).debug);
    assert!(run(&["-debug=T"]).debug);
    assert!(!run(&["-debug=F"]).debug);
    assert!(run(&["-debug", "true"]).debug);
    assert!(!run(&["-debug", "false", "-aggregate-only"]).debug);
    assert!(run(&["--aggregate-only"]).aggregate_only);
    assert_eq!(fail(&["-debug=maybe"]), "invalid boolean value \"maybe\" for -debug");
    assert!(fail(&["-debug", "yes"]).starts_with("unexpected argument"));
    assert!(run_env(&[], &[("FASTLY_EXPORTER_AGGREGATE_ONLY", "true")]).aggregate_only);
    assert!(run_env(&[], &[("FASTLY_EXPORTER_DEBUG", "1")]).debug);
    assert_eq!(fail_env(&[], &[("FASTLY_EXPORTER_DEBUG", "nope")]), "invalid boolean value \"nope\" for -debug");
}

#[test]
fn repeatables() {
    let c = run(&[
        "-service",
        "A",
        "--service=B",
        "-service-allowlist",
        "^prod",
        "-service-allowlist",
        "www",
        "-service-blocklist",
        "stag",
        "-metric-allowlist",
        "bytes",
        "-metric-blocklist",
        "^imgopto",
        "-metric-blocklist",
        "waf",
    ]);
    assert_eq!(c.service_ids, vec!["A", "B"]);
    assert_eq!(c.service_allowlist.len(), 2);
    assert!(c.service_allowlist[0].is_match("production"));
    assert_eq!(c.service_blocklist.len(), 1);
    assert_eq!(c.metric_allowlist.len(), 1);
    assert_eq!(c.metric_blocklist.len(), 2);
    assert!(c.metric_blocklist[1].is_match("a_waf_b"));
}

#[test]
fn env_names() {
    let c = run_env(
        &[],
        &[
            ("FASTLY_EXPORTER_SERVICE_SHARD", "1/3"),
            ("FASTLY_EXPORTER_SERVICE", "svc1"),
            ("FASTLY_EXPORTER_SERVICE_ALLOWLIST", "a|b"),
            ("FASTLY_EXPORTER_LISTEN", ":9999"),
            ("FASTLY_EXPORTER_API_TIMEOUT", "20s"),
            ("FASTLY_EXPORTER_RT_MAX_BODY", "1MiB"),
            ("FASTLY_EXPORTER_CERTIFICATE_REFRESH", "0"),
            ("FASTLY_EXPORTER_RT_ENDPOINT", "http://127.0.0.1:1/"),
        ],
    );
    assert_eq!(c.service_shard, Some((1, 3)));
    assert_eq!(c.service_ids, vec!["svc1"]);
    assert_eq!(c.service_allowlist.len(), 1);
    assert_eq!(c.listen, "0.0.0.0:9999");
    assert_eq!(c.api_timeout, secs(20));
    assert_eq!(c.rt_max_body, 1 << 20);
    assert_eq!(c.certificate_refresh, None);
    assert_eq!(c.rt_endpoint, "http://127.0.0.1:1");
}

#[test]
fn token_sources_and_precedence() {
    let token = |args: &[&str], env: &[(&str, &str)]| match load_with(args, env) {
        Ok(Command::Run(c)) => c.token,
        other => panic!("{other:?}"),
    };
    let both = [("FASTLY_EXPORTER_TOKEN", "exporter"), ("FASTLY_API_TOKEN", "api")];
    assert_eq!(token(&["-token", "cli"], &both), "cli");
    assert_eq!(token(&[], &both), "exporter");
    assert_eq!(token(&[], &[("FASTLY_API_TOKEN", "api")]), "api");
    let f = TempFile::new("token fromfile\n");
    assert_eq!(token(&["-config-file", f.path()], &[]), "fromfile");
    assert_eq!(token(&["-config-file", f.path()], &[("FASTLY_API_TOKEN", "api")]), "api");
}

#[test]
fn precedence_scalar() {
    let f = TempFile::new("api-timeout 30s\n");
    let cfg = ["-config-file", f.path()];
    assert_eq!(run(&cfg).api_timeout, secs(30));
    let env = [("FASTLY_EXPORTER_API_TIMEOUT", "40s")];
    assert_eq!(run_env(&cfg, &env).api_timeout, secs(40));
    let mut args = cfg.to_vec();
    args.extend(["-api-timeout", "50s"]);
    assert_eq!(run_env(&args, &env).api_timeout, secs(50));
    assert_eq!(run(&[]).api_timeout, secs(15));
    // Last occurrence wins within the command line.
    assert_eq!(run(&["-api-timeout", "6s", "-api-timeout=7s"]).api_timeout, secs(7));
}

#[test]
fn precedence_repeatable() {
    let f = TempFile::new("service F1\nservice F2\n");
    let cfg = ["-config-file", f.path()];
    assert_eq!(run(&cfg).service_ids, vec!["F1", "F2"]);
    let env = [("FASTLY_EXPORTER_SERVICE", "E1")];
    assert_eq!(run_env(&cfg, &env).service_ids, vec!["E1"]);
    let mut args = cfg.to_vec();
    args.extend(["-service", "C1", "-service", "C2"]);
    assert_eq!(run_env(&args, &env).service_ids, vec!["C1", "C2"]);
}

#[test]
fn config_file_from_env_and_contents() {
    let f = TempFile::new("# comment\n\n--listen :7000\n-debug\nservice-shard 2/4\nmetric-blocklist a b\n");
    let c = run_env(&[], &[("FASTLY_EXPORTER_CONFIG_FILE", f.path())]);
    assert_eq!(c.config_file.as_deref(), Some(f.0.as_path()));
    assert_eq!(c.listen, "0.0.0.0:7000");
    assert!(c.debug);
    assert_eq!(c.service_shard, Some((2, 4)));
    assert!(c.metric_blocklist[0].is_match("xa by"));
}

#[test]
fn config_file_errors() {
    let f = TempFile::new(&format!("token {TOKEN}\n\nbogus 1\n"));
    let e = fail(&["-config-file", f.path()]);
    assert_eq!(e, format!("unknown flag -bogus in config file {} line 3", f.path()));
    let e = fail(&["-config-file", "/nonexistent/fastly.conf"]);
    assert!(e.contains("/nonexistent/fastly.conf"), "{e}");
    let f = TempFile::new(&format!("{TOKEN}\n"));
    let e = fail(&["-config-file", f.path()]);
    assert!(e.contains("line 1"), "{e}");
    // Token only in the file: still never echoed.
    let f = TempFile::new(&format!("token {TOKEN}\nservice-shard 9/3\n"));
    let e = load_with(&["-config-file", f.path()], &[]).unwrap_err().to_string();
    assert!(!e.contains(TOKEN));
    assert_eq!(e, "invalid value \"9/3\" for -service-shard: n must be between 1 and m");
}

#[test]
fn example_config_file_loads() {
    let f = TempFile::new(example_config_file());
    let c = match load_with(&["-config-file", f.path()], &[]) {
        Ok(Command::Run(c)) => *c,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.token, "YOUR-FASTLY-API-TOKEN");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.service_refresh, secs(60));
    assert_eq!(c.certificate_refresh, Some(secs(6 * 3600)));
    assert_eq!(c.rt_max_body, 32 << 20);
    // The real token from the environment overrides the placeholder.
    let c = run_env(&["-config-file", f.path()], &[]);
    assert_eq!(c.token, TOKEN);
    // Uncommenting every optional line also loads, except -service-shard-ordinal, which
    // excludes -service-shard (checked on its own below).
    let uncommented: String = example_config_file()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                let name = rest.split_whitespace().next().unwrap_or("");
                // The ordinal needs a pod name; the web config example names a file that does
                // not exist here.
                // -datacenter-group excludes -aggregate-only (checked on its own).
                let alone = ["service-shard-ordinal", "web-config-file", "datacenter-group"];
                if flags::lookup(name).is_some() && !alone.contains(&name) {
                    return rest.to_string();
                }
                l.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let f = TempFile::new(&uncommented);
    let c = run(&["-config-file", f.path()]);
    assert!(c.debug && c.aggregate_only);
    assert_eq!(c.service_shard, Some((1, 3)));
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    let ordinal = example_config_file()
        .lines()
        .find_map(|l| l.strip_prefix("# service-shard-ordinal "))
        .unwrap_or_default()
        .to_string();
    assert_eq!(run(&["-service-shard-ordinal", &ordinal]).service_shard, Some((1, 3)));
}

#[test]
fn deprecated_aliases() {
    let c = run(&["-api-refresh", "2m"]);
    assert_eq!(c.service_refresh, secs(120));
    assert_eq!(c.warnings, vec!["-api-refresh is deprecated; use -service-refresh instead"]);
    let c = run(&["-api-refresh", "2m", "-service-refresh", "3m"]);
    assert_eq!(c.service_refresh, secs(180));
    let c = run_env(&[], &[("FASTLY_EXPORTER_API_REFRESH", "5m")]);
    assert_eq!(c.service_refresh, secs(300));
    assert_eq!(c.warnings.len(), 1);

    let c = run(&["-endpoint", "http://0.0.0.0:8080/metrics"]);
    assert_eq!(c.listen, "0.0.0.0:8080");
    assert_eq!(c.warnings, vec!["-endpoint is deprecated; use -listen instead"]);
    let c = run(&["-endpoint", "http://0.0.0.0:8080/metrics", "-listen", "127.0.0.1:1"]);
    assert_eq!(c.listen, "127.0.0.1:1");
    assert!(fail(&["-endpoint", "nonsense"]).starts_with("invalid value \"nonsense\" for -endpoint:"));

    let c = run(&["-subsystem", "x"]);
    assert_eq!(c.subsystem, "x");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].starts_with("-subsystem is deprecated"));
    assert_eq!(run(&["-subsystem="]).subsystem, "");
}

#[test]
fn clamping_warns() {
    let c = run(&["-api-timeout", "1s"]);
    assert_eq!(c.api_timeout, secs(5));
    assert_eq!(c.warnings, vec!["-api-timeout 1s is below the minimum 5s; using 5s"]);
    let c = run(&["-api-timeout", "2m"]);
    assert_eq!(c.api_timeout, secs(60));
    assert_eq!(c.warnings, vec!["-api-timeout 2m is above the maximum 1m; using 1m"]);
    let cases: &[(&str, &str, Duration)] = &[
        ("-service-refresh", "1s", secs(15)),
        ("-service-refresh", "1h", secs(600)),
        ("-rt-timeout", "10s", secs(45)),
        ("-rt-timeout", "5m", secs(120)),
        ("-product-refresh", "1m", secs(600)),
        ("-product-refresh", "48h", secs(86_400)),
        ("-datacenter-refresh", "2h", secs(3600)),
        ("-dictionary-refresh", "10s", secs(60)),
        ("-dictionary-refresh", "25h", secs(86_400)),
    ];
    for (flag, value, want) in cases {
        let c = run(&[flag, value]);
        let got = match *flag {
            "-service-refresh" => c.service_refresh,
            "-rt-timeout" => c.rt_timeout,
            "-product-refresh" => c.product_refresh,
            "-datacenter-refresh" => c.datacenter_refresh,
            _ => c.dictionary_refresh,
        };
        assert_eq!(got, *want, "{flag} {value}");
        assert_eq!(c.warnings.len(), 1, "{flag} {value}");
        assert!(c.warnings[0].starts_with(&format!("{flag} {value} is ")));
    }
    assert!(run(&["-rt-timeout", "90s"]).warnings.is_empty());
    let c = run(&["-api-refresh", "1s"]);
    assert_eq!(c.service_refresh, secs(15));
    assert!(c.warnings.contains(&"-api-refresh 1s is below the minimum 15s; using 15s".into()));
}

#[test]
fn certificate_refresh() {
    assert_eq!(run(&["-certificate-refresh", "0"]).certificate_refresh, None);
    assert_eq!(run(&["-certificate-refresh=0s"]).certificate_refresh, None);
    assert_eq!(run(&["-certificate-refresh", "1h"]).certificate_refresh, Some(secs(3600)));
    let c = run(&["-certificate-refresh", "1m"]);
    assert_eq!(c.certificate_refresh, Some(secs(600)));
    assert_eq!(c.warnings.len(), 1);
    let c = run(&["-certificate-refresh", "48h"]);
    assert_eq!(c.certificate_refresh, Some(secs(86_400)));
}

#[test]
fn rt_max_body() {
    assert_eq!(run(&["-rt-max-body", "1048576"]).rt_max_body, 1_048_576);
    assert_eq!(run(&["-rt-max-body", "64MiB"]).rt_max_body, 64 << 20);
    assert_eq!(run(&["-rt-max-body", "64mb"]).rt_max_body, 64_000_000);
    assert_eq!(run(&["-rt-max-body", "2GiB"]).rt_max_body, 2 << 30);
    assert_eq!(run(&["-rt-max-body", "8kib"]).rt_max_body, 8192);
    assert_eq!(run(&["-rt-max-body", "1GB"]).rt_max_body, 1_000_000_000);
    assert_eq!(run(&["-rt-max-body", "5KB"]).rt_max_body, 5000);
    assert!(fail(&["-rt-max-body", "0"]).starts_with("invalid value \"0\" for -rt-max-body:"));
    assert!(fail(&["-rt-max-body", "lots"]).contains("-rt-max-body"));
}

#[test]
fn listen_rewrite() {
    assert_eq!(run(&["-listen", ":8080"]).listen, "0.0.0.0:8080");
    assert_eq!(run(&["-listen", "[::]:8080"]).listen, "[::]:8080");
    assert!(fail(&["-listen", "8080"]).starts_with("invalid value \"8080\" for -listen:"));
}

#[test]
fn endpoints() {
    let c = run(&["-api-endpoint", "http://127.0.0.1:1234/", "-rt-endpoint", "https://rt.example/"]);
    assert_eq!(c.api_endpoint, "http://127.0.0.1:1234");
    assert_eq!(c.rt_endpoint, "https://rt.example");
    assert_eq!(
        fail(&["-api-endpoint", "api.fastly.com"]),
        "invalid value \"api.fastly.com\" for -api-endpoint: must start with http:// or https://"
    );
    assert!(fail(&["-rt-endpoint", "ftp://x"]).contains("-rt-endpoint"));
}

#[test]
fn errors() {
    assert_eq!(fail(&["-foo"]), "unknown flag -foo");
    assert_eq!(fail(&["--foo=bar"]), "unknown flag -foo");
    assert_eq!(fail(&["-listen"]), "missing value for -listen");
    assert!(fail(&["positional"]).starts_with("unexpected argument #3"));
    assert_eq!(fail(&["-service-shard", "4/3"]), "invalid value \"4/3\" for -service-shard: n must be between 1 and m");
    assert_eq!(fail(&["-service-shard", "0/3"]), "invalid value \"0/3\" for -service-shard: n must be between 1 and m");
    assert_eq!(fail(&["-service-shard", "1/0"]), "invalid value \"1/0\" for -service-shard: m must be at least 1");
    assert_eq!(fail(&["-service-shard", "abc"]), "invalid value \"abc\" for -service-shard: want n/m, e.g. 1/3");
    for (flag, value) in [
        ("-api-timeout", "5"),
        ("-rt-timeout", "1x"),
        ("-service-refresh", "-1s"),
        ("-product-refresh", ""),
        ("-certificate-refresh", "soon"),
        ("-api-refresh", "1"),
    ] {
        let e = fail(&[flag, value]);
        assert!(e.starts_with(&format!("invalid value \"{value}\" for {flag}: ")), "{e}");
    }
    for flag in [
        "-service-allowlist",
        "-service-blocklist",
        "-metric-allowlist",
        "-metric-blocklist",
        "-datacenter-allowlist",
        "-datacenter-blocklist",
    ] {
        assert_eq!(fail(&[flag, "("]), format!("invalid value \"(\" for {flag}: unclosed group"));
    }
    assert!(fail(&["-namespace", "my-ns"]).starts_with("invalid value \"my-ns\" for -namespace"));
    assert!(fail(&["-service", ""]).contains("-service"));
}

#[test]
fn datacenter_group_and_filters() {
    let c = run(&[]);
    assert!(!c.datacenter_group && c.datacenter_allowlist.is_empty() && c.datacenter_blocklist.is_empty());
    let c = run(&[
        "-datacenter-group",
        "-datacenter-allowlist",
        "^A",
        "-datacenter-allowlist=^F",
        "-datacenter-blocklist",
        "FRA",
    ]);
    assert!(c.datacenter_group);
    assert_eq!(c.datacenter_allowlist.len(), 2, "repeatable");
    assert!(c.datacenter_blocklist[0].is_match("FRA"));
    let c =
        run_env(&[], &[("FASTLY_EXPORTER_DATACENTER_GROUP", "true"), ("FASTLY_EXPORTER_DATACENTER_BLOCKLIST", "^X")]);
    assert!(c.datacenter_group && c.datacenter_blocklist.len() == 1);
    let f = TempFile::new("datacenter-group\ndatacenter-allowlist ^AMS$\ndatacenter-allowlist ^LHR$\n");
    let c = run(&["-config-file", f.path()]);
    assert!(c.datacenter_group && c.datacenter_allowlist.len() == 2);
    // Without an aggregate there is nothing to group: a usage error, in whichever layers.
    let e = fail(&["-datacenter-group", "-aggregate-only"]);
    assert!(e.starts_with("-datacenter-group and -aggregate-only cannot be used together"), "{e}");
    let e = fail_env(&["-aggregate-only"], &[("FASTLY_EXPORTER_DATACENTER_GROUP", "1")]);
    assert!(e.contains("-datacenter-group"), "{e}");
    assert!(run(&["-aggregate-only", "-datacenter-blocklist", "FRA"]).aggregate_only, "filters go with the aggregate");
    assert!(fail(&["-datacenter-group=maybe"]).starts_with("invalid boolean value"));
}

#[test]
fn shard_from_pod_ordinal() {
    // The forms a StatefulSet pod produces: its name (metadata.name) or its pod-index label.
    assert_eq!(run(&["-service-shard-ordinal", "fastly-exporter-0/3"]).service_shard, Some((1, 3)));
    assert_eq!(run(&["-service-shard-ordinal=rel-fastly-exporter-2/3"]).service_shard, Some((3, 3)));
    assert_eq!(run(&["-service-shard-ordinal", "1/2"]).service_shard, Some((2, 2)));
    // Through the environment, as a chart would set it, and from a config file.
    let c = run_env(&[], &[("FASTLY_EXPORTER_SERVICE_SHARD_ORDINAL", "web-4/5")]);
    assert_eq!(c.service_shard, Some((5, 5)));
    let f = TempFile::new("service-shard-ordinal sts-1/4\n");
    assert_eq!(run(&["-config-file", f.path()]).service_shard, Some((2, 4)));
    // The command line overrides the environment, as for every flag.
    let c = run_env(&["-service-shard-ordinal", "0/2"], &[("FASTLY_EXPORTER_SERVICE_SHARD_ORDINAL", "1/2")]);
    assert_eq!(c.service_shard, Some((1, 2)));
}

#[test]
fn bad_pod_ordinals() {
    let flag = "-service-shard-ordinal";
    assert_eq!(
        fail(&[flag, "fastly-exporter-3/3"]),
        "invalid value \"fastly-exporter-3/3\" for -service-shard-ordinal: ordinal 3 is not below the shard count 3 \
         (more pods than shards?)"
    );
    assert_eq!(
        fail(&[flag, "$(POD_NAME)/3"]),
        "invalid value \"$(POD_NAME)/3\" for -service-shard-ordinal: the ordinal is an unexpanded $(VAR): define \
         that variable in the pod's env"
    );
    assert_eq!(
        fail(&[flag, "/3"]),
        "invalid value \"/3\" for -service-shard-ordinal: the ordinal is empty (is the variable that should hold it \
         set?)"
    );
    // A Deployment's pod name ends in a random suffix, not an ordinal.
    assert_eq!(
        fail(&[flag, "fastly-exporter-7d9c5b6f4-x2x9q/3"]),
        "invalid value \"fastly-exporter-7d9c5b6f4-x2x9q/3\" for -service-shard-ordinal: no ordinal: want a \
         number or a pod name ending in -<number>"
    );
    assert!(
        fail(&[flag, "fastly-exporter-0"])
            .starts_with("invalid value \"fastly-exporter-0\" for -service-shard-ordinal: want <ordinal>/m")
    );
    let e = fail_env(&[], &[("FASTLY_EXPORTER_SERVICE_SHARD_ORDINAL", "x-9/2")]);
    assert!(e.contains("-service-shard-ordinal") && e.contains("ordinal 9"), "{e}");
    // Both ways at once, even from different layers, is refused rather than resolved silently.
    let both = "-service-shard and -service-shard-ordinal cannot be used together: keep one";
    assert_eq!(fail(&["-service-shard", "1/3", flag, "sts-0/3"]), both);
    assert_eq!(fail_env(&[flag, "sts-0/3"], &[("FASTLY_EXPORTER_SERVICE_SHARD", "1/3")]), both);
}

#[test]
fn missing_token() {
    for (args, env) in [(&[][..], &[][..]), (&["-token="], &[]), (&["-debug"], &[("FASTLY_API_TOKEN", "  ")])] {
        assert_eq!(load_with(args, env).unwrap_err().to_string(), "-token or FASTLY_API_TOKEN is required");
    }
    // Value errors are reported before the missing token.
    assert!(load_with(&["-service-shard", "4/3"], &[]).unwrap_err().to_string().contains("-service-shard"));
}

#[test]
fn errors_never_contain_the_token() {
    let cases: &[&[&str]] = &[
        &["-debug", TOKEN],
        &[TOKEN],
        &["-token", TOKEN, TOKEN],
        &["-token", TOKEN, "-Sup3rS3cretT0kenValue"],
        &["-token", TOKEN, "-rt-max-body", TOKEN],
        &["-token", TOKEN, "-service-shard", TOKEN],
        &["-token", TOKEN, "-listen", TOKEN],
    ];
    for args in cases {
        let e = load_with(args, &[]).unwrap_err().to_string();
        assert!(!e.contains(TOKEN), "{args:?}: {e}");
    }
    let env = [("FASTLY_API_TOKEN", TOKEN)];
    let e = load_with(&["-service-shard", TOKEN], &env).unwrap_err().to_string();
    assert!(!e.contains(TOKEN), "{e}");
    let e = load_with(&["-token"], &[]).unwrap_err().to_string();
    assert_eq!(e, "missing value for -token");
}

#[test]
fn actions_short_circuit() {
    let cmd = |args: &[&str]| load_with(args, &[]);
    assert!(matches!(cmd(&["-h"]), Ok(Command::Help)));
    assert!(matches!(cmd(&["-help"]), Ok(Command::Help)));
    assert!(matches!(cmd(&["--help"]), Ok(Command::Help)));
    assert!(matches!(cmd(&["-version"]), Ok(Command::Version)));
    assert!(matches!(cmd(&["--version"]), Ok(Command::Version)));
    assert!(matches!(cmd(&["-config-file-example"]), Ok(Command::ConfigFileExample)));
    // No validation, no config file read, no token needed.
    assert!(matches!(
        cmd(&["-service-shard", "9/1", "-config-file", "/nonexistent", "-version"]),
        Ok(Command::Version)
    ));
}

#[test]
fn debug_redacts_token() {
    let c = run(&[]);
    let shown = format!("{c:?}");
    assert!(shown.contains("token: \"<redacted>\""), "{shown}");
    assert!(!shown.contains(TOKEN));
    let shown = format!("{:?}", Command::Run(Box::new(c)));
    assert!(!shown.contains(TOKEN));
}

#[test]
fn config_error_is_an_error() {
    let e: Box<dyn std::error::Error> = Box::new(ConfigError::new("a\nb"));
    assert_eq!(e.to_string(), "a b");
}

#[test]
fn config_errors_keep_their_cause() {
    use std::error::Error as _;
    let e = fail(&["-config-file", "/nonexistent/fastly.conf"]);
    let err = load_with(&["-token", TOKEN, "-config-file", "/nonexistent/fastly.conf"], &[]).unwrap_err();
    assert_eq!(err.to_string(), e);
    let kind = err.source().and_then(|c| c.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
    assert_eq!(kind, Some(std::io::ErrorKind::NotFound));
    assert_eq!(crate::util::errors::chain(&err), e);
    let err = load_with(&["-token", TOKEN, "-web-config-file", "/nonexistent/web.yml"], &[]).unwrap_err();
    assert!(err.source().is_some_and(|c| c.is::<crate::web::WebConfigError>()), "{err:?}");
    // A message the token had to be scrubbed from loses its cause, which would quote it whole.
    let named = format!("/nonexistent/{TOKEN}/fastly.conf");
    let err = load_with(&["-token", TOKEN, "-config-file", &named], &[]).unwrap_err();
    assert!(err.source().is_none() && !crate::util::errors::chain(&err).contains(TOKEN), "{err}");
}

#[test]
fn web_config_file_from_every_source() {
    let web = TempFile::new(
        "basic_auth_users:\n  prometheus: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
    );
    assert!(run(&[]).web_config.is_none());
    let c = run(&["-web-config-file", web.path()]);
    let w = c.web_config.as_ref().unwrap();
    assert!(w.auth_enabled() && w.tls.is_none());
    // The hash never shows in the config's Debug output.
    assert!(!format!("{c:?}").contains("QOauh"));
    let c = run_env(&[], &[("FASTLY_EXPORTER_WEB_CONFIG_FILE", web.path())]);
    assert!(c.web_config.is_some());
    let conf = TempFile::new(&format!("web-config-file {}\n", web.path()));
    assert!(run(&["-config-file", conf.path()]).web_config.is_some());
    // An empty value means plain HTTP.
    assert!(run(&["-web-config-file", ""]).web_config.is_none());
}

#[test]
fn bad_web_config_file_is_one_line_naming_file_line_and_key() {
    let web = TempFile::new("# web\ntls_server_confg:\n  cert_file: x\n");
    let e = fail(&["-web-config-file", web.path()]);
    assert_eq!(e, format!("-web-config-file {}: line 2: unknown key \"tls_server_confg\"", web.path()));
    let e = fail(&["-web-config-file", "/nonexistent/web.yml"]);
    assert!(e.starts_with("-web-config-file /nonexistent/web.yml: cannot read: "), "{e}");
    let web = TempFile::new("tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: k.pem\n");
    let e = fail(&["-web-config-file", web.path()]);
    assert!(e.contains(": line 2: cert_file /nonexistent/c.pem: "), "{e}");
}

#[test]
fn web_config_warnings_join_start_up_warnings() {
    // TLS settings rustls only approximates are reported once at start; the check needs real
    // certificate files, so it lives in web::tests. Here: rate_limit with burst 0.
    let web = TempFile::new("rate_limit:\n  interval: 1s\n");
    let c = run(&["-web-config-file", web.path()]);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("web config: "));
}

#[test]
fn state_file_flags() {
    let c = run(&[]);
    assert_eq!((c.state_file, c.state_interval), (None, secs(10)), "off by default, like the Go exporter");
    let c = run(&["-state-file", "/var/lib/fx/state", "-state-interval", "30s"]);
    assert_eq!(c.state_file, Some(PathBuf::from("/var/lib/fx/state")));
    assert_eq!(c.state_interval, secs(30));
    let c = run_env(&[], &[("FASTLY_EXPORTER_STATE_FILE", "/env/state"), ("FASTLY_EXPORTER_STATE_INTERVAL", "2s")]);
    assert_eq!((c.state_file, c.state_interval), (Some(PathBuf::from("/env/state")), secs(2)));
    let file = TempFile::new("state-file /file/state\nstate-interval 1m\n");
    let c = run(&["-config-file", file.path()]);
    assert_eq!((c.state_file, c.state_interval), (Some(PathBuf::from("/file/state")), secs(60)));
    assert_eq!(run(&["-state-file", ""]).state_file, None);
    let c = run(&["-state-interval", "100ms"]);
    assert_eq!(c.state_interval, secs(1));
    assert_eq!(c.warnings, vec!["-state-interval 100ms is below the minimum 1s; using 1s"]);
    assert_eq!(run(&["-state-interval", "1h"]).state_interval, secs(300));
    assert!(fail(&["-state-interval", "soon"]).contains("-state-interval"));
}
