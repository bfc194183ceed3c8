//! The flag registry: every flag, each defined once with what it does.
//!
//! A flag is a `static` [`Flag`]: its name, kind, default, help, bounds, and `apply`, the
//! function that turns the flag's resolved value into its [`Config`] field. Everything else is
//! derived from [`FLAGS`]: the command line and config-file parsers, the `FASTLY_EXPORTER_*`
//! variable names, the `-h` text and the example config file. Code never names a flag by a
//! string: it refers to the static (`&LISTEN`), so a misspelt flag fails to compile, and a
//! definition cannot be left out of the list because [`registry!`] writes both.
//!
//! Adding a flag: add a field to [`Config`], then one entry below (in help order within its
//! group) whose `apply` parses the value into that field. See ARCHITECTURE.md, "Adding a flag".

use std::path::{Path, PathBuf};

use super::resolve::Value;
use super::{Config, ConfigError, Token, values};

/// How a flag's value is read on the command line; drives parsing and the help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A single string value; the last occurrence in a layer wins.
    Str,
    /// `true`/`false`; may be given without a value.
    Bool,
    /// A Go duration, clamped to `min..max` when those are set.
    Duration,
    /// Repeatable; every occurrence adds one entry.
    List,
    /// Command-line-only switch that replaces running the exporter.
    Action(Action),
}

/// A command-line action that short-circuits loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Help,
    Version,
    ConfigFileExample,
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

/// Sets a flag's [`Config`] field from its resolved value (which knows the flag, so errors
/// name what the user typed). Warnings go to `Config::warnings`.
pub(crate) type Apply = fn(&Value<'_>, &mut Config) -> Result<(), ConfigError>;

/// One flag.
#[derive(Debug)]
pub(crate) struct Flag {
    /// Name without dashes, as typed after `-`.
    pub name: &'static str,
    /// `--name`: the key pico-args matches on the command line (see `args.rs`). Written by
    /// [`registry!`] from `name`, never by hand.
    pub key: &'static str,
    pub kind: Kind,
    /// Default as the user would type it (so the help text shows exactly what is parsed);
    /// empty means "no default".
    pub default: &'static str,
    pub group: Group,
    /// Placeholder for the value in the help text (`<duration>`, `n/m`, ...).
    pub arg: &'static str,
    pub help: &'static str,
    /// Clamp bounds for durations, in Go syntax; empty means unbounded.
    pub min: &'static str,
    pub max: &'static str,
    /// For deprecated aliases, the flag whose `apply` receives this one's values.
    pub alias_of: Option<&'static Flag>,
    /// Using the flag at all pushes a deprecation warning.
    pub deprecated: bool,
    /// Further environment variables consulted after `FASTLY_EXPORTER_*`, for compatibility
    /// with other Fastly tooling.
    pub extra_env: &'static [&'static str],
    /// Value shown in the example config file for flags without a default.
    pub example: &'static str,
    /// The example config file has this flag active (not commented out) even though it has
    /// no default, because nothing works without it.
    pub required: bool,
    /// Where the value goes. `None` exactly for aliases (their target applies) and actions.
    pub apply: Option<Apply>,
}

impl Flag {
    /// Whether `self` and `other` are the same flag (names are unique; a test checks).
    pub(crate) fn is(&self, other: &Flag) -> bool {
        self.name == other.name
    }

    pub(crate) fn is_action(&self) -> bool {
        matches!(self.kind, Kind::Action(_))
    }

    /// Whether a config file may set it: not the actions, and not `-config-file` itself.
    pub(crate) fn in_file(&self) -> bool {
        !self.is_action() && !self.is(&CONFIG_FILE)
    }
}

/// Row template so each entry only spells out what differs.
const BASE: Flag = Flag {
    name: "",
    key: "",
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
    apply: None,
};

/// Defines each flag as a `static` and lists them all, in order, in [`FLAGS`], so a flag
/// cannot be defined without being registered. Each entry starts with its `name`, from which
/// the macro also writes its command-line `key` (`--name`).
macro_rules! registry {
    ($($(#[$doc:meta])* $id:ident = Flag { name: $name:literal, $($rest:tt)* };)*) => {
        $($(#[$doc])* pub(crate) static $id: Flag = Flag { name: $name, key: concat!("--", $name), $($rest)* };)*

        /// Every flag, in help-text order within each group.
        pub(crate) static FLAGS: &[&Flag] = &[$(&$id),*];
    };
}

registry! {
    // AUTH
    TOKEN = Flag {
        name: "token",
        group: Group::Auth,
        help: "Fastly API token (read-only access is enough); required. Prefer the environment \
               variable so the token does not show up in process listings.",
        extra_env: &["FASTLY_API_TOKEN"],
        example: "YOUR-FASTLY-API-TOKEN",
        required: true,
        // Required, but checked after every other flag (`config::build`), so a typo elsewhere is
        // reported even when the token is missing too.
        apply: Some(|v, c| {
            c.token = Token(v.text());
            Ok(())
        }),
        ..BASE
    };
    // FILTERS
    SERVICE = Flag {
        name: "service",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<id>",
        help: "Export only this service ID. Default: every service the token can see.",
        example: "SERVICE_ID",
        apply: Some(|v, c| {
            c.service_ids = v
                .list()
                .iter()
                .map(|id| match id.trim() {
                    "" => Err(v.invalid("", "service ID must not be empty")),
                    id => Ok(id.to_string()),
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        }),
        ..BASE
    };
    SERVICE_ALLOWLIST = Flag {
        name: "service-allowlist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Export only services whose name matches this regex.",
        example: "^Production",
        apply: Some(|v, c| {
            c.service_allowlist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    SERVICE_BLOCKLIST = Flag {
        name: "service-blocklist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Skip services whose name matches this regex.",
        example: "staging",
        apply: Some(|v, c| {
            c.service_blocklist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    SERVICE_SHARD = Flag {
        name: "service-shard",
        group: Group::Filters,
        arg: "n/m",
        help: "Export only the services whose ID hashes to shard n of m (1 <= n <= m), to split \
               a large account over several exporters.",
        example: "1/3",
        apply: Some(|v, c| {
            // Two ways to name the same setting: refusing both at once beats a silent
            // precedence rule, since a leftover -service-shard would pin every pod to one
            // shard. Checked before either value is parsed.
            if v.is_set() && v.other(&SERVICE_SHARD_ORDINAL).is_set() {
                let (a, b) = (SERVICE_SHARD.name, SERVICE_SHARD_ORDINAL.name);
                return Err(ConfigError::new(format!("-{a} and -{b} cannot be used together: keep one")));
            }
            if v.is_set() {
                c.service_shard = Some(v.parse(values::shard)?);
            }
            Ok(())
        }),
        ..BASE
    };
    SERVICE_SHARD_ORDINAL = Flag {
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
        apply: Some(|v, c| {
            if v.is_set() {
                c.service_shard = Some(v.parse(values::shard_from_ordinal)?);
            }
            Ok(())
        }),
        ..BASE
    };
    METRIC_ALLOWLIST = Flag {
        name: "metric-allowlist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Export only metrics whose name matches this regex.",
        example: "bytes_total$",
        apply: Some(|v, c| {
            c.metric_allowlist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    METRIC_BLOCKLIST = Flag {
        name: "metric-blocklist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Skip metrics whose name matches this regex.",
        example: "imgopto",
        apply: Some(|v, c| {
            c.metric_blocklist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    AGGREGATE_ONLY = Flag {
        name: "aggregate-only",
        kind: Kind::Bool,
        default: "false",
        group: Group::Filters,
        arg: "",
        help: "Export only the all-datacenter aggregate, not per-datacenter series (far fewer \
               series).",
        apply: Some(|v, c| {
            c.aggregate_only = v.bool()?;
            Ok(())
        }),
        ..BASE
    };
    DATACENTER_GROUP = Flag {
        name: "datacenter-group",
        kind: Kind::Bool,
        default: "false",
        group: Group::Filters,
        arg: "",
        help: "Export per Fastly datacenter group (Europe, North America, ...) instead of per \
               datacenter, in the same datacenter label: a tenth of the series or less. POPs not \
               in the datacenter list yet count under datacenter=\"unknown\". Not with \
               -aggregate-only.",
        apply: Some(|v, c| {
            c.datacenter_group = v.bool()?;
            Ok(())
        }),
        ..BASE
    };
    DATACENTER_ALLOWLIST = Flag {
        name: "datacenter-allowlist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Export only datacenters whose POP code (AMS, LHR, ...) matches this regex; \
               -aggregate-only still counts every datacenter.",
        example: "^(AMS|FRA|LHR)$",
        apply: Some(|v, c| {
            c.datacenter_allowlist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    DATACENTER_BLOCKLIST = Flag {
        name: "datacenter-blocklist",
        kind: Kind::List,
        group: Group::Filters,
        arg: "<regex>",
        help: "Skip datacenters whose POP code matches this regex.",
        example: "^(BOG|LIM)$",
        apply: Some(|v, c| {
            c.datacenter_blocklist = v.each(values::regex)?;
            Ok(())
        }),
        ..BASE
    };
    // REFRESH
    SERVICE_REFRESH = Flag {
        name: "service-refresh",
        kind: Kind::Duration,
        default: "1m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh the list of services.",
        min: "15s",
        max: "10m",
        apply: Some(|v, c| {
            c.service_refresh = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    API_REFRESH = Flag {
        name: "api-refresh",
        kind: Kind::Duration,
        group: Group::Refresh,
        arg: "<duration>",
        help: "DEPRECATED: use -service-refresh.",
        alias_of: Some(&SERVICE_REFRESH),
        deprecated: true,
        example: "1m",
        ..BASE
    };
    PRODUCT_REFRESH = Flag {
        name: "product-refresh",
        kind: Kind::Duration,
        default: "10m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh which products each service has enabled.",
        min: "10m",
        max: "24h",
        apply: Some(|v, c| {
            c.product_refresh = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    DATACENTER_REFRESH = Flag {
        name: "datacenter-refresh",
        kind: Kind::Duration,
        default: "10m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh the list of Fastly datacenters (POPs).",
        min: "10m",
        max: "1h",
        apply: Some(|v, c| {
            c.datacenter_refresh = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    CERTIFICATE_REFRESH = Flag {
        name: "certificate-refresh",
        kind: Kind::Duration,
        default: "6h",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh TLS certificate metadata; 0 disables certificate metrics.",
        min: "10m",
        max: "24h",
        apply: Some(|v, c| {
            c.certificate_refresh = v.duration_or_off(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    DICTIONARY_REFRESH = Flag {
        name: "dictionary-refresh",
        kind: Kind::Duration,
        default: "5m",
        group: Group::Refresh,
        arg: "<duration>",
        help: "How often to refresh edge dictionary metadata.",
        min: "1m",
        max: "24h",
        apply: Some(|v, c| {
            c.dictionary_refresh = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    ENTITY_EXPIRY = Flag {
        name: "entity-expiry",
        kind: Kind::Duration,
        default: "24h",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Drop the series of an origin or domain (Origin/Domain Inspector) after this long \
               without data, so names that come and go do not accumulate; 0 keeps them forever, \
               as the Go exporter does.",
        apply: Some(|v, c| {
            c.entity_expiry = v.duration_or_off(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    API_TIMEOUT = Flag {
        name: "api-timeout",
        kind: Kind::Duration,
        default: "15s",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Timeout for each request to the Fastly API.",
        min: "5s",
        max: "60s",
        apply: Some(|v, c| {
            c.api_timeout = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    RT_TIMEOUT = Flag {
        name: "rt-timeout",
        kind: Kind::Duration,
        default: "45s",
        group: Group::Refresh,
        arg: "<duration>",
        help: "Timeout for each long-poll request to the real-time API.",
        min: "45s",
        max: "120s",
        apply: Some(|v, c| {
            c.rt_timeout = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    RT_MAX_BODY = Flag {
        name: "rt-max-body",
        default: "32MiB",
        group: Group::Refresh,
        arg: "<size>",
        help: "Largest real-time API response accepted, in bytes or with a KiB/MiB/GiB or \
               KB/MB/GB suffix.",
        apply: Some(|v, c| {
            c.rt_max_body = v.parse(values::size)?;
            Ok(())
        }),
        ..BASE
    };
    // HTTP
    LISTEN = Flag {
        name: "listen",
        default: "127.0.0.1:8080",
        group: Group::Http,
        arg: "<host:port>",
        help: "Address to serve metrics on; \":8080\" means every interface.",
        apply: Some(|v, c| {
            // The deprecated -endpoint is a URL whose host:port is used.
            let parse = if v.used().is(&ENDPOINT) { values::listen_from_endpoint } else { values::listen };
            c.listen = v.parse(parse)?;
            Ok(())
        }),
        ..BASE
    };
    WEB_MAX_CONNECTIONS = Flag {
        name: "web-max-connections",
        default: "512",
        group: Group::Http,
        arg: "<n>",
        help: "Most client connections open at once (each costs a thread). At the cap, the \
               connection idle the longest is closed to make room; when none is idle, new \
               connections are closed at once.",
        apply: Some(|v, c| {
            c.web_max_connections = v.parse(values::connections)?;
            Ok(())
        }),
        ..BASE
    };
    ENDPOINT = Flag {
        name: "endpoint",
        group: Group::Http,
        arg: "<url>",
        help: "DEPRECATED: use -listen. Its host:port is used as -listen; the path is ignored.",
        alias_of: Some(&LISTEN),
        deprecated: true,
        example: "http://127.0.0.1:8080/metrics",
        ..BASE
    };
    WEB_CONFIG_FILE = Flag {
        name: "web-config-file",
        group: Group::Http,
        arg: "<path>",
        help: "Prometheus exporter-toolkit web config file (YAML) for TLS, client certificates and \
               basic auth on the listener; /healthz stays open. Empty: plain HTTP.",
        example: "/etc/fastly-exporter/web-config.yml",
        apply: Some(|v, c| {
            // Loaded now so a bad file stops the start with one line naming the file, line
            // and key; its warnings (settings rustls honours only approximately) join the
            // start-up warnings.
            let path = v.text();
            if path.is_empty() {
                return Ok(());
            }
            let web = crate::web::WebConfig::load(Path::new(&path))
                .map_err(|e| ConfigError::caused(format!("-{} {path}: {e}", v.used().name), e))?;
            c.warnings.extend(web.warnings.iter().cloned());
            c.web_config = Some(web);
            Ok(())
        }),
        ..BASE
    };
    NAMESPACE = Flag {
        name: "namespace",
        default: "fastly",
        group: Group::Http,
        help: "Prometheus namespace: the first part of every metric name.",
        apply: Some(|v, c| {
            c.namespace = v.parse(values::metric_name_part)?;
            Ok(())
        }),
        ..BASE
    };
    SUBSYSTEM = Flag {
        name: "subsystem",
        default: "rt",
        group: Group::Http,
        help: "DEPRECATED: Prometheus subsystem: the second part of every metric name.",
        deprecated: true,
        apply: Some(|v, c| {
            c.subsystem = v.parse(values::metric_name_part)?;
            Ok(())
        }),
        ..BASE
    };
    API_ENDPOINT = Flag {
        name: "api-endpoint",
        default: "https://api.fastly.com",
        group: Group::Http,
        arg: "<url>",
        help: "Base URL of the Fastly API (change only for testing).",
        apply: Some(|v, c| {
            c.api_endpoint = v.parse(values::base_url)?;
            Ok(())
        }),
        ..BASE
    };
    RT_ENDPOINT = Flag {
        name: "rt-endpoint",
        default: "https://rt.fastly.com",
        group: Group::Http,
        arg: "<url>",
        help: "Base URL of the Fastly real-time API (change only for testing).",
        apply: Some(|v, c| {
            c.rt_endpoint = v.parse(values::base_url)?;
            Ok(())
        }),
        ..BASE
    };
    // OTHER
    CONFIG_FILE = Flag {
        name: "config-file",
        group: Group::Other,
        arg: "<path>",
        help: "Read flags from this file, one \"flag value\" per line; command-line flags and \
               environment variables take precedence over it.",
        // The file itself is read before the flags are applied (`load`); this records which.
        apply: Some(|v, c| {
            c.config_file = Some(v.text()).filter(|p| !p.is_empty()).map(PathBuf::from);
            Ok(())
        }),
        ..BASE
    };
    CONFIG_FILE_EXAMPLE = Flag {
        name: "config-file-example",
        kind: Kind::Action(Action::ConfigFileExample),
        group: Group::Other,
        arg: "",
        help: "Print an example config file and exit.",
        ..BASE
    };
    STATE_FILE = Flag {
        name: "state-file",
        group: Group::Other,
        arg: "<path>",
        help: "Keep the position of every stream and the value of every counter in this file \
               (written every -state-interval and on SIGTERM/SIGINT), and resume from it after \
               a restart or crash: no second of data is lost or counted twice if the exporter \
               is back within the real-time API's 120 s history. Empty: off, every restart \
               starts from zero (as the Go exporter does).",
        example: "/var/lib/fastly-exporter/state",
        apply: Some(|v, c| {
            c.state_file = Some(v.text().trim().to_string()).filter(|p| !p.is_empty()).map(PathBuf::from);
            Ok(())
        }),
        ..BASE
    };
    STATE_INTERVAL = Flag {
        name: "state-interval",
        kind: Kind::Duration,
        default: "10s",
        group: Group::Other,
        arg: "<duration>",
        help: "How often to write -state-file. After a crash (SIGKILL, OOM) the file is at most \
               this old; the seconds since are fetched again from the API.",
        min: "1s",
        max: "5m",
        apply: Some(|v, c| {
            c.state_interval = v.duration(&mut c.warnings)?;
            Ok(())
        }),
        ..BASE
    };
    DEBUG = Flag {
        name: "debug",
        kind: Kind::Bool,
        default: "false",
        group: Group::Other,
        arg: "",
        help: "Log debug information.",
        apply: Some(|v, c| {
            c.debug = v.bool()?;
            Ok(())
        }),
        ..BASE
    };
    VERSION = Flag {
        name: "version",
        kind: Kind::Action(Action::Version),
        group: Group::Other,
        arg: "",
        help: "Print the version and exit.",
        ..BASE
    };
    HELP = Flag {
        name: "help",
        kind: Kind::Action(Action::Help),
        group: Group::Other,
        arg: "",
        help: "Print this help and exit (also -h).",
        ..BASE
    };
}

/// Looks a flag up by the name typed after the dashes (`h` is `help`). The only place a flag
/// is found by a string: the user's.
pub(crate) fn lookup(name: &str) -> Option<&'static Flag> {
    if name == "h" {
        return Some(&HELP);
    }
    FLAGS.iter().copied().find(|f| f.name == name)
}

/// `FASTLY_EXPORTER_<NAME>`; `None` for actions, which must not be triggered by a stray
/// variable in a container's environment.
pub(crate) fn env_name(flag: &Flag) -> Option<String> {
    (!flag.is_action()).then(|| format!("FASTLY_EXPORTER_{}", flag.name.to_ascii_uppercase().replace('-', "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(!f.help.is_empty(), "{} has no help", f.name);
            assert!(FLAGS[..i].iter().all(|g| !g.is(f)), "{} duplicated", f.name);
            assert!(lookup(f.name).is_some_and(|g| std::ptr::eq(g, *f)), "{}", f.name);
            assert_eq!(f.key, format!("--{}", f.name));
            // Exactly the flags that hold a value of their own apply it.
            assert_eq!(f.apply.is_some(), f.alias_of.is_none() && !f.is_action(), "{}", f.name);
            if let Some(target) = f.alias_of {
                assert!(f.deprecated && target.alias_of.is_none(), "{}", f.name);
                assert_eq!(f.kind, target.kind, "{}", f.name);
                assert!(FLAGS.iter().any(|g| std::ptr::eq(*g, target)), "{}", f.name);
            }
            if f.kind == Kind::Duration {
                for d in [f.default, f.min, f.max, f.example] {
                    assert!(d.is_empty() || crate::util::duration::parse(d).is_ok(), "{}: {d}", f.name);
                }
                assert_eq!(f.min.is_empty(), f.max.is_empty(), "{}", f.name);
            } else {
                assert!(f.min.is_empty() && f.max.is_empty(), "{}", f.name);
            }
            if f.kind == Kind::Bool {
                assert_eq!(super::super::args::parse_bool(f.default), Some(false));
            }
        }
        assert!(std::ptr::eq(lookup("h").unwrap(), &HELP));
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name(&SERVICE_SHARD).as_deref(), Some("FASTLY_EXPORTER_SERVICE_SHARD"));
        assert_eq!(env_name(&VERSION), None);
    }
}
