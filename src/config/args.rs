//! The flag table and the command-line / environment front ends.
//!
//! `FLAGS` is the single source of truth: parsing, environment variable names,
//! the `-h` text and the example config file are all derived from it, so a flag
//! can never be accepted by one path and missing from another.

use super::ConfigError;

/// How a flag's value is interpreted; drives both parsing and the help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A single string value; the last occurrence in a layer wins.
    Str,
    /// `true`/`false`; may be given without a value.
    Bool,
    /// A Go duration, optionally clamped to `min..max`.
    Duration,
    /// Repeatable; every occurrence adds one entry.
    List,
    /// Command-line-only switch that replaces running the exporter
    /// (`-help`, `-version`, `-config-file-example`).
    Action,
}

/// Heading under which a flag is listed in the `-h` text and example file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Auth,
    Filters,
    Refresh,
    Http,
    Other,
}

impl Group {
    /// All groups in display order.
    pub(crate) const ALL: [Group; 5] = [Group::Auth, Group::Filters, Group::Refresh, Group::Http, Group::Other];

    /// Heading text, kept upper-case to match the Go exporter's help layout.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Group::Auth => "AUTH",
            Group::Filters => "FILTERS",
            Group::Refresh => "REFRESH",
            Group::Http => "HTTP",
            Group::Other => "OTHER",
        }
    }
}

/// One row of the flag table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    /// Name without dashes, as typed after `-`.
    pub name: &'static str,
    pub kind: Kind,
    /// Default as the user would type it (so the help text shows exactly what
    /// is parsed); empty means "no default".
    pub default: &'static str,
    pub group: Group,
    /// Placeholder for the value in the help text (`<duration>`, `n/m`, ...).
    pub arg: &'static str,
    pub help: &'static str,
    /// Clamp bounds for durations, in Go syntax; empty means unbounded.
    pub min: &'static str,
    pub max: &'static str,
    /// For deprecated aliases, the flag that replaces this one.
    pub alias_of: Option<&'static str>,
    /// Using the flag at all pushes a deprecation warning.
    pub deprecated: bool,
    /// Further environment variables consulted after `FASTLY_EXPORTER_*`,
    /// for compatibility with other Fastly tooling.
    pub extra_env: &'static [&'static str],
    /// Value shown in the example config file for flags without a default.
    pub example: &'static str,
    /// The example config file has this flag active (not commented out)
    /// even though it has no default, because nothing works without it.
    pub required: bool,
}

/// Row template so each table entry only spells out what differs.
const BASE: Flag = Flag {
    name: "",
    kind: Kind::Str,
    default: "",
    group: Group::Other,
    arg: "<string>",
    help: "",
    min: "",
    max: "",
    alias_of: None,
    deprecated: false,
    extra_env: &[],
    example: "",
    required: false,
};

/// Every flag the exporter accepts, in help-text order within each group.
pub(crate) const FLAGS: &[Flag] = &[
    // AUTH
    Flag {
        name: "token",
        group: Group::Auth,
        help: "Fastly API token (read-only access is enough); required. Prefer the environment \
               variable so the token does not show up in process listings.",
        extra_env: &["FASTLY_API_TOKEN"],
        example: "YOUR-FASTLY-API-TOKEN",
        required: true,
        ..BASE
    },
    // FILTERS
    Flag {
        name: "service",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<id>",
        help: "Export only this service ID. Default: every service the token can see.",
        example: "SERVICE_ID",
        ..BASE
    },
    Flag {
        name: "service-allowlist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Export only services whose name matches this regex.",
        example: "^Production",
        ..BASE
    },
    Flag {
        name: "service-blocklist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Skip services whose name matches this regex.",
        example: "staging",
        ..BASE
    },
    Flag {
        name: "service-shard",
        group: Group::Filters,
        arg: "n/m",
        help: "Export only the services whose ID hashes to shard n of m (1 <= n <= m), to split \
               a large account over several exporters.",
        example: "1/3",
        ..BASE
    },
    Flag {
        name: "service-shard-ordinal",
        group: Group::Filters,
        arg: "<ordinal>/m",
        help: "Like -service-shard, with n taken from a 0-based pod ordinal, so every pod of a \
               Kubernetes StatefulSet runs the same arguments: ordinal k exports shard k+1 of m. \
               <ordinal> is a number (the downward-API label apps.kubernetes.io/pod-index) or a \
               pod name ending in -<number> (metadata.name), e.g. -service-shard-ordinal \
               '$(POD_NAME)/3' with POD_NAME from the downward API. An ordinal that is missing, \
               unexpanded or not below m is an error. Not together with -service-shard.",
        example: "fastly-exporter-0/3",
        ..BASE
    },
    Flag {
        name: "metric-allowlist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Export only metrics whose name matches this regex.",
        example: "bytes_total$",
        ..BASE
    },
    Flag {
        name: "metric-blocklist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Skip metrics whose name matches this regex.",
        example: "imgopto",
        ..BASE
    },
    Flag {
        name: "aggregate-only",
        kind: Kind::Bool,
        default: "false",
        group: Group::Filters,
        arg: "",
        help: "Export only the all-datacenter aggregate, not per-datacenter series (far fewer \
               series).",
        ..BASE
    },
    // REFRESH
    Flag {
        name: "service-refresh",
        kind: Kind::Duration,
        default: "1m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh the list of services.",
        min: "15s",
        max: "10m",
        ..BASE
    },
    Flag {
        name: "api-refresh",
        kind: Kind::Duration,
        group: Group::Refresh,
        arg: "<duration>",
        help: "DEPRECATED: use -service-refresh.",
        alias_of: Some("service-refresh"),
        deprecated: true,
        example: "1m",
        ..BASE
    },
    Flag {
        name: "product-refresh",
        kind: Kind::Duration,
        default: "10m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh which products each service has enabled.",
        min: "10m",
        max: "24h",
        ..BASE
    },
    Flag {
        name: "datacenter-refresh",
        kind: Kind::Duration,
        default: "10m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh the list of Fastly datacenters (POPs).",
        min: "10m",
        max: "1h",
        ..BASE
    },
    Flag {
        name: "certificate-refresh",
        kind: Kind::Duration,
        default: "6h",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh TLS certificate metadata; 0 disables certificate metrics.",
        min: "10m",
        max: "24h",
        ..BASE
    },
    Flag {
        name: "dictionary-refresh",
        kind: Kind::Duration,
        default: "5m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh edge dictionary metadata.",
        min: "1m",
        max: "24h",
        ..BASE
    },
    Flag {
        name: "entity-expiry",
        kind: Kind::Duration,
        default: "24h",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Drop the series of an origin or domain (Origin/Domain Inspector) after this long \
               without data, so names that come and go do not accumulate; 0 keeps them forever, \
               as the Go exporter does.",
        ..BASE
    },
    Flag {
        name: "api-timeout",
        kind: Kind::Duration,
        default: "15s",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Timeout for each request to the Fastly API.",
        min: "5s",
        max: "60s",
        ..BASE
    },
    Flag {
        name: "rt-timeout",
        kind: Kind::Duration,
        default: "45s",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Timeout for each long-poll request to the real-time API.",
        min: "45s",
        max: "120s",
        ..BASE
    },
    Flag {
        name: "rt-max-body",
        default: "32MiB",
        group: Group::Refresh,
        arg: "<size>",
        help: "Largest real-time API response accepted, in bytes or with a KiB/MiB/GiB or \
               KB/MB/GB suffix.",
        ..BASE
    },
    // HTTP
    Flag {
        name: "listen",
        default: "127.0.0.1:8080",
        group: Group::Http,
        arg: "<host:port>",
        help: "Address to serve metrics on; \":8080\" means every interface.",
        ..BASE
    },
    Flag {
        name: "web-max-connections",
        default: "512",
        group: Group::Http,
        arg: "<n>",
        help: "Most client connections open at once (each costs a thread). At the cap, the \
               connection idle the longest is closed to make room; when none is idle, new \
               connections are closed at once.",
        ..BASE
    },
    Flag {
        name: "endpoint",
        group: Group::Http,
        arg: "<url>",
        help: "DEPRECATED: use -listen. Its host:port is used as -listen; the path is ignored.",
        alias_of: Some("listen"),
        deprecated: true,
        example: "http://127.0.0.1:8080/metrics",
        ..BASE
    },
    Flag {
        name: "web-config-file",
        group: Group::Http,
        arg: "<path>",
        help: "Prometheus exporter-toolkit web config file (YAML) for TLS, client certificates and \
               basic auth on the listener; /healthz stays open. Empty: plain HTTP.",
        example: "/etc/fastly-exporter/web-config.yml",
        ..BASE
    },
    Flag {
        name: "namespace",
        default: "fastly",
        group: Group::Http,
        help: "Prometheus namespace: the first part of every metric name.",
        ..BASE
    },
    Flag {
        name: "subsystem",
        default: "rt",
        group: Group::Http,
        help: "DEPRECATED: Prometheus subsystem: the second part of every metric name.",
        deprecated: true,
        ..BASE
    },
    Flag {
        name: "api-endpoint",
        default: "https://api.fastly.com",
        group: Group::Http,
        arg: "<url>",
        help: "Base URL of the Fastly API (change only for testing).",
        ..BASE
    },
    Flag {
        name: "rt-endpoint",
        default: "https://rt.fastly.com",
        group: Group::Http,
        arg: "<url>",
        help: "Base URL of the Fastly real-time API (change only for testing).",
        ..BASE
    },
    // OTHER
    Flag {
        name: "config-file",
        group: Group::Other,
        arg: "<path>",
        help: "Read flags from this file, one \"flag value\" per line; command-line flags and \
               environment variables take precedence over it.",
        ..BASE
    },
    Flag {
        name: "config-file-example",
        kind: Kind::Action,
        group: Group::Other,
        arg: "",
        help: "Print an example config file and exit.",
        ..BASE
    },
    Flag {
        name: "state-file",
        group: Group::Other,
        arg: "<path>",
        help: "Keep the position of every stream and the value of every counter in this file \
               (written every -state-interval and on SIGTERM/SIGINT), and resume from it after \
               a restart or crash: no second of data is lost or counted twice if the exporter \
               is back within the real-time API's 120 s history. Empty: off, every restart \
               starts from zero (as the Go exporter does).",
        example: "/var/lib/fastly-exporter/state",
        ..BASE
    },
    Flag {
        name: "state-interval",
        kind: Kind::Duration,
        default: "10s",
        group: Group::Other,
        arg: "<duration>",
        help: "How often to write -state-file. After a crash (SIGKILL, OOM) the file is at most \
               this old; the seconds since are fetched again from the API.",
        min: "1s",
        max: "5m",
        ..BASE
    },
    Flag {
        name: "debug",
        kind: Kind::Bool,
        default: "false",
        group: Group::Other,
        arg: "",
        help: "Log debug information.",
        ..BASE
    },
    Flag {
        name: "version",
        kind: Kind::Action,
        group: Group::Other,
        arg: "",
        help: "Print the version and exit.",
        ..BASE
    },
    Flag {
        name: "help",
        kind: Kind::Action,
        group: Group::Other,
        arg: "",
        help: "Print this help and exit (also -h).",
        ..BASE
    },
];

/// Looks a flag up by the name typed after the dashes (`h` is `help`).
pub(crate) fn lookup(name: &str) -> Option<&'static Flag> {
    let name = if name == "h" { "help" } else { name };
    FLAGS.iter().find(|f| f.name == name)
}

/// Looks up a flag that is known to be in the table; used by the resolver,
/// whose names are compile-time constants covered by tests.
pub(crate) fn flag(name: &str) -> &'static Flag {
    match lookup(name) {
        Some(f) => f,
        None => panic!("flag {name:?} missing from FLAGS"),
    }
}

/// `FASTLY_EXPORTER_<NAME>`; `None` for actions, which must not be triggered
/// by a stray variable in a container's environment.
pub(crate) fn env_name(flag: &Flag) -> Option<String> {
    (flag.kind != Kind::Action).then(|| format!("FASTLY_EXPORTER_{}", flag.name.to_ascii_uppercase().replace('-', "_")))
}

/// Go `strconv.ParseBool`, so boolean values accepted by the Go exporter
/// behave identically.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Renders a flag name for an error message, withholding names that do not
/// look like a flag: a stray line or argument may well be a bare API token,
/// and the token must never reach a log. Flag-shaped names (lowercase words
/// and dashes, short, hardly any digits; Fastly tokens are 32 mixed-case
/// characters) are shown, with a suggestion when one is close.
pub(crate) fn shown_name(name: &str) -> String {
    let shaped = name.len() <= 24
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().filter(u8::is_ascii_digit).count() <= 2;
    if !shaped {
        return "(name not shown: it does not look like a flag)".to_string();
    }
    match FLAGS.iter().map(|f| (edit_distance(name, f.name), f.name)).min() {
        Some((d, flag)) if d <= 2 && d < name.len() => format!("-{name} (did you mean -{flag}?)"),
        _ => format!("-{name}"),
    }
}

/// Levenshtein distance, for flag-name suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<u8> = b.bytes().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One `flag value` occurrence from some source.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub flag: &'static Flag,
    pub value: String,
}

/// All occurrences from one source (command line, environment or config
/// file), in order. Precedence is applied between layers, never inside one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    pub(crate) fn push(&mut self, flag: &'static Flag, value: impl Into<String>) {
        self.entries.push(Entry { flag, value: value.into() });
    }

    /// Every value given for `name` in this layer, in order.
    pub(crate) fn values(&self, name: &str) -> Vec<&str> {
        self.entries.iter().filter(|e| e.flag.name == name).map(|e| e.value.as_str()).collect()
    }
}

/// A command-line action that short-circuits loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Help,
    Version,
    ConfigFileExample,
}

/// Result of reading argv: either an action to perform, or the flags given.
#[derive(Debug)]
pub(crate) enum Parsed {
    Action(Action),
    Flags(Layer),
}

/// Reads argv (without argv\[0\]) Go-style but leniently: `-x v`, `-x=v`,
/// `--x v` and `--x=v` are all accepted, as is `-debug true`.
///
/// `-h`/`-help` returns as soon as it is seen, like Go's flag package; the
/// other actions are returned only if the whole command line is valid.
pub(crate) fn parse_argv(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut layer = Layer::default();
    let mut action = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "--" {
            // Go stops flag parsing here; everything after is positional.
            if i < args.len() {
                return Err(positional(i + 1));
            }
            break;
        }
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => return Err(positional(i)),
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::new(format!(
                "bad flag syntax: {}",
                shown_name(body.trim_start_matches(['-', '=']))
            )));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag = lookup(name).ok_or_else(|| ConfigError::new(format!("unknown flag {}", shown_name(name))))?;
        match flag.kind {
            Kind::Bool | Kind::Action => {
                let value = match inline {
                    Some(v) => v,
                    None => match args.get(i).map(String::as_str) {
                        Some(v @ ("true" | "True" | "TRUE" | "false" | "False" | "FALSE")) => {
                            i += 1;
                            v
                        }
                        _ => "true",
                    },
                };
                if flag.kind == Kind::Bool {
                    layer.push(flag, value);
                    continue;
                }
                let on = parse_bool(value)
                    .ok_or_else(|| ConfigError::new(format!("invalid boolean value {value:?} for -{}", flag.name)))?;
                let this = match flag.name {
                    "help" => Action::Help,
                    "version" => Action::Version,
                    _ => Action::ConfigFileExample,
                };
                if on && this == Action::Help {
                    return Ok(Parsed::Action(Action::Help));
                }
                if on && action.is_none() {
                    action = Some(this);
                }
            }
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v =
                            args.get(i).ok_or_else(|| ConfigError::new(format!("missing value for -{}", flag.name)))?;
                        i += 1;
                        v.as_str()
                    }
                };
                layer.push(flag, value);
            }
        }
    }
    Ok(match action {
        Some(a) => Parsed::Action(a),
        None => Parsed::Flags(layer),
    })
}

/// Error for a non-flag argument. The argument itself is not echoed: a
/// misplaced token is the most likely stray argument.
fn positional(position: usize) -> ConfigError {
    ConfigError::new(format!("unexpected argument #{position}: flags take the form -name value"))
}

/// Collects `FASTLY_EXPORTER_*` (and, for the token, the extra variables).
/// Empty variables count as unset, so `docker run -e X=` does not override
/// a config file with an empty value.
pub(crate) fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Layer {
    let mut layer = Layer::default();
    for flag in FLAGS {
        let Some(primary) = env_name(flag) else {
            continue;
        };
        let names = std::iter::once(primary.as_str()).chain(flag.extra_env.iter().copied());
        if let Some(value) = names.filter_map(env).find(|v| !v.trim().is_empty()) {
            layer.push(flag, value);
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn flags(s: &[&str]) -> Layer {
        match parse_argv(&argv(s)) {
            Ok(Parsed::Flags(l)) => l,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn table_is_consistent() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(!f.help.is_empty(), "{} has no help", f.name);
            assert!(FLAGS[..i].iter().all(|g| g.name != f.name), "{} duplicated", f.name);
            if let Some(target) = f.alias_of {
                let t = flag(target);
                assert!(f.deprecated && t.alias_of.is_none());
            }
            if f.kind == Kind::Duration {
                for d in [f.default, f.min, f.max, f.example] {
                    assert!(d.is_empty() || crate::util::duration::parse(d).is_ok());
                }
            }
            if f.kind == Kind::Bool {
                assert_eq!(parse_bool(f.default), Some(false));
            }
        }
    }

    #[test]
    fn syntax_variants() {
        for args in [&["-token", "T"][..], &["-token=T"], &["--token", "T"], &["--token=T"]] {
            assert_eq!(flags(args).values("token"), vec!["T"], "{args:?}");
        }
        assert_eq!(flags(&["-listen=a=b"]).values("listen"), vec!["a=b"]);
        assert_eq!(flags(&["-token="]).values("token"), vec![""]);
        // Go takes the next argument as the value even if it looks like a flag.
        assert_eq!(flags(&["-namespace", "-x"]).values("namespace"), vec!["-x"]);
    }

    #[test]
    fn bools() {
        assert_eq!(flags(&["-debug"]).values("debug"), vec!["true"]);
        assert_eq!(flags(&["--debug=false"]).values("debug"), vec!["false"]);
        assert_eq!(flags(&["-debug", "false"]).values("debug"), vec!["false"]);
        assert_eq!(flags(&["-debug", "true", "-aggregate-only"]).values("debug"), vec!["true"]);
        assert!(parse_argv(&argv(&["-debug", "yes"])).is_err());
        assert!(parse_argv(&argv(&["-debug", "1"])).is_err());
    }

    #[test]
    fn actions() {
        let act = |s: &[&str]| match parse_argv(&argv(s)) {
            Ok(Parsed::Action(a)) => Some(a),
            _ => None,
        };
        assert_eq!(act(&["-h"]), Some(Action::Help));
        assert_eq!(act(&["-help"]), Some(Action::Help));
        assert_eq!(act(&["--help"]), Some(Action::Help));
        assert_eq!(act(&["-foo", "-h"]), None);
        assert_eq!(act(&["-h", "-foo"]), Some(Action::Help));
        assert_eq!(act(&["-version"]), Some(Action::Version));
        assert_eq!(act(&["--version=true"]), Some(Action::Version));
        assert_eq!(act(&["-version=false"]), None);
        assert_eq!(act(&["-config-file-example"]), Some(Action::ConfigFileExample));
        assert_eq!(act(&["-version", "-foo"]), None);
    }

    #[test]
    fn errors() {
        let err = |s: &[&str]| parse_argv(&argv(s)).unwrap_err().to_string();
        assert_eq!(err(&["-foo"]), "unknown flag -foo");
        assert_eq!(err(&["--foo=1"]), "unknown flag -foo");
        assert_eq!(err(&["-token"]), "missing value for -token");
        assert_eq!(err(&["--service-shard"]), "missing value for -service-shard");
        assert!(err(&["stray"]).starts_with("unexpected argument #1"));
        assert!(err(&["-debug", "SECRET"]).starts_with("unexpected argument #2"));
        assert!(!err(&["-debug", "SECRET"]).contains("SECRET"));
        assert!(err(&["-", "x"]).starts_with("unexpected argument #1"));
        assert!(err(&["--", "x"]).starts_with("unexpected argument #2"));
        assert!(err(&["---token"]).starts_with("bad flag syntax"));
        assert!(err(&["-=x"]).starts_with("bad flag syntax"));
        let long = "-abcdefghijklmnopqrstuvwxyz0123456789";
        assert!(!err(&[long]).contains("abcdef"));
        assert!(parse_argv(&argv(&["--"])).is_ok());
    }

    #[test]
    fn env_names_and_layer() {
        assert_eq!(env_name(flag("service-shard")).as_deref(), Some("FASTLY_EXPORTER_SERVICE_SHARD"));
        assert_eq!(env_name(flag("version")), None);
        let env = |k: &str| match k {
            "FASTLY_API_TOKEN" => Some("api".to_string()),
            "FASTLY_EXPORTER_AGGREGATE_ONLY" => Some("true".to_string()),
            "FASTLY_EXPORTER_SERVICE" => Some("a,b".to_string()),
            "FASTLY_EXPORTER_DEBUG" => Some(String::new()),
            _ => None,
        };
        let l = env_layer(&env);
        assert_eq!(l.values("token"), vec!["api"]);
        assert_eq!(l.values("aggregate-only"), vec!["true"]);
        assert_eq!(l.values("service"), vec!["a,b"]);
        assert!(l.values("debug").is_empty());
        let both = |k: &str| match k {
            "FASTLY_API_TOKEN" => Some("api".to_string()),
            "FASTLY_EXPORTER_TOKEN" => Some("exp".to_string()),
            _ => None,
        };
        assert_eq!(env_layer(&both).values("token"), vec!["exp"]);
    }
}
