//! Configuration: command-line flags, `FASTLY_EXPORTER_*` environment
//! variables and an optional config file, merged into one validated
//! [`Config`].
//!
//! The flag names, defaults and precedence match the Go `fastly-exporter`, so
//! this binary can replace it without touching deployment manifests. Loading
//! is pure (argv and environment are passed in) and never logs: warnings are
//! returned in [`Config::warnings`] for `main` to log once the logger is up.

mod args;
mod file;
mod usage;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::duration;

use args::{Action, FLAGS, Flag, Kind, Layer, Parsed};

pub use usage::{example_config_file, usage};

/// Everything the exporter needs to run, fully validated so later stages can
/// trust every field without re-checking.
#[derive(Clone)]
pub struct Config {
    /// Fastly API token. Never printed: see the `Debug` impl.
    pub token: String,
    /// `host:port` to serve metrics on; a bare `:port` has already been
    /// rewritten to `0.0.0.0:port`.
    pub listen: String,
    /// Most client connections open at once.
    pub web_max_connections: usize,
    /// First part of every metric name (may be empty).
    pub namespace: String,
    /// Second part of every metric name (may be empty); deprecated.
    pub subsystem: String,
    /// Explicit service IDs to export; empty means "all visible services".
    pub service_ids: Vec<String>,
    /// Services are exported only if their name matches one of these
    /// (when non-empty).
    pub service_allowlist: Vec<regex::Regex>,
    /// Services whose name matches any of these are skipped.
    pub service_blocklist: Vec<regex::Regex>,
    /// `(n, m)` with `1 <= n <= m`: export only shard `n` of `m` (from `-service-shard`, or
    /// from `-service-shard-ordinal`, already turned into the 1-based shard).
    pub service_shard: Option<(u64, u64)>,
    /// Metrics are exported only if their name matches one of these
    /// (when non-empty).
    pub metric_allowlist: Vec<regex::Regex>,
    /// Metrics whose name matches any of these are skipped.
    pub metric_blocklist: Vec<regex::Regex>,
    /// Interval between refreshes of the service list.
    pub service_refresh: Duration,
    /// Timeout for each Fastly API request.
    pub api_timeout: Duration,
    /// Timeout for each real-time long-poll request.
    pub rt_timeout: Duration,
    /// Interval between product-entitlement refreshes.
    pub product_refresh: Duration,
    /// Interval between datacenter-list refreshes.
    pub datacenter_refresh: Duration,
    /// Interval between certificate refreshes; `None` disables them.
    pub certificate_refresh: Option<Duration>,
    /// Interval between dictionary refreshes.
    pub dictionary_refresh: Duration,
    /// Origin/domain rows without data for this long are dropped; `None` keeps them.
    pub entity_expiry: Option<Duration>,
    /// Largest real-time response body accepted, in bytes (never 0).
    pub rt_max_body: u64,
    /// Export only the all-datacenter aggregate.
    pub aggregate_only: bool,
    /// Enable debug logging.
    pub debug: bool,
    /// Fastly API base URL, without trailing slash.
    pub api_endpoint: String,
    /// Real-time API base URL, without trailing slash.
    pub rt_endpoint: String,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// `-state-file`: where stream positions and values are kept across restarts; `None`
    /// (the default) keeps the Go exporter's behaviour, every restart starting from zero.
    pub state_file: Option<PathBuf>,
    /// How often the state file is written.
    pub state_interval: Duration,
    /// `-web-config-file`, loaded and validated (certificates included); `None` means plain
    /// HTTP without authentication. The server builds a `web::WebSecurity` from it.
    pub web_config: Option<crate::web::WebConfig>,
    /// Deprecation and clamping warnings, to be logged by `main` after the
    /// logger is configured (loading itself never logs).
    pub warnings: Vec<String>,
}

/// Hand-written so the token can never leak through `{:?}` into a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token", &"<redacted>")
            .field("listen", &self.listen)
            .field("web_max_connections", &self.web_max_connections)
            .field("namespace", &self.namespace)
            .field("subsystem", &self.subsystem)
            .field("service_ids", &self.service_ids)
            .field("service_allowlist", &self.service_allowlist)
            .field("service_blocklist", &self.service_blocklist)
            .field("service_shard", &self.service_shard)
            .field("metric_allowlist", &self.metric_allowlist)
            .field("metric_blocklist", &self.metric_blocklist)
            .field("service_refresh", &self.service_refresh)
            .field("api_timeout", &self.api_timeout)
            .field("rt_timeout", &self.rt_timeout)
            .field("product_refresh", &self.product_refresh)
            .field("datacenter_refresh", &self.datacenter_refresh)
            .field("certificate_refresh", &self.certificate_refresh)
            .field("dictionary_refresh", &self.dictionary_refresh)
            .field("entity_expiry", &self.entity_expiry)
            .field("rt_max_body", &self.rt_max_body)
            .field("aggregate_only", &self.aggregate_only)
            .field("debug", &self.debug)
            .field("api_endpoint", &self.api_endpoint)
            .field("rt_endpoint", &self.rt_endpoint)
            .field("config_file", &self.config_file)
            .field("state_file", &self.state_file)
            .field("state_interval", &self.state_interval)
            .field("web_config", &self.web_config)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// What `main` should do. Help, version and the example file short-circuit
/// before any validation so they work without a token.
#[derive(Debug)]
pub enum Command {
    /// Run the exporter (boxed: `Config` is large and the other variants
    /// are empty).
    Run(Box<Config>),
    /// Print the version and exit 0.
    Version,
    /// Print [`example_config_file`] and exit 0.
    ConfigFileExample,
    /// Print [`usage`] and exit 0.
    Help,
}

/// A configuration error: always a single line naming the offending flag
/// (main prints it and exits 2), and never containing the API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    /// Builds an error, folding any line breaks so the message stays one line.
    pub fn new(msg: impl Into<String>) -> Self {
        let msg: String = msg.into();
        ConfigError(msg.replace(['\r', '\n'], " "))
    }

    /// `invalid value "v" for -flag: reason`, the Go `flag` package's wording.
    fn invalid(flag: &Flag, value: &str, reason: &str) -> Self {
        let shown = value.replace('\n', "\\n").replace('\r', "\\r");
        ConfigError::new(format!("invalid value \"{shown}\" for -{}: {reason}", flag.name))
    }

    /// The message, for callers that want it without `Display`.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of a known token value. Messages are built
    /// not to contain the token anyway; this is the safety net. Very short
    /// candidates are skipped, as they would mangle ordinary words.
    fn redact(mut self, secrets: &[String]) -> Self {
        for secret in secrets {
            let secret = secret.trim();
            if secret.chars().count() >= 4 {
                self.0 = self.0.replace(secret, "<redacted>");
            }
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses argv (without argv\[0\]), the environment (injected so tests never
/// touch the process environment) and the optional config file.
///
/// Precedence per flag: command line > environment > config file > default;
/// a repeatable flag takes all its values from the highest layer that set it.
pub fn load(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, ConfigError> {
    let mut secrets = argv_tokens(args);
    secrets.extend(["FASTLY_EXPORTER_TOKEN", "FASTLY_API_TOKEN"].iter().filter_map(|k| env(k)));
    load_inner(args, env, &mut secrets).map_err(|e| e.redact(&secrets))
}

/// Token values on the command line, found without relying on the full
/// parse succeeding, so even a syntax error is scrubbed of them.
fn argv_tokens(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let body = arg.trim_start_matches('-');
        if body == "token" {
            out.extend(args.get(i + 1).cloned());
        } else if let Some(v) = body.strip_prefix("token=") {
            out.push(v.to_string());
        }
    }
    out
}

fn load_inner(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<Command, ConfigError> {
    let cli = match args::parse_argv(args)? {
        Parsed::Action(Action::Help) => return Ok(Command::Help),
        Parsed::Action(Action::Version) => return Ok(Command::Version),
        Parsed::Action(Action::ConfigFileExample) => return Ok(Command::ConfigFileExample),
        Parsed::Flags(layer) => layer,
    };
    let env = args::env_layer(env);
    let config_file = [&cli, &env]
        .iter()
        .find_map(|l| l.values("config-file").last().map(|s| s.trim().to_string()))
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let file = match &config_file {
        Some(path) => file::read(path)?,
        None => Layer::default(),
    };
    secrets.extend(file.values("token").iter().map(|s| s.to_string()));
    let src = Sources { layers: [cli, env, file] };
    src.build(config_file).map(|c| Command::Run(Box::new(c)))
}

/// The three layers, highest precedence first.
struct Sources {
    layers: [Layer; 3],
}

/// The values a flag ended up with, and which flag (possibly a deprecated
/// alias) supplied them, so errors name what the user actually typed.
struct Picked<'a> {
    flag: &'static Flag,
    values: Vec<&'a str>,
}

impl Sources {
    /// Values for `name` from the highest layer that set it or one of its
    /// deprecated aliases; within a layer the canonical flag wins.
    fn pick(&self, name: &str) -> Option<Picked<'_>> {
        let canonical = args::flag(name);
        let aliases: Vec<&'static Flag> = FLAGS.iter().filter(|f| f.alias_of == Some(name)).collect();
        for layer in &self.layers {
            for flag in std::iter::once(canonical).chain(aliases.iter().copied()) {
                let values = layer.values(flag.name);
                if !values.is_empty() {
                    return Some(Picked { flag, values });
                }
            }
        }
        None
    }

    /// Last value of a single-valued flag, or its default.
    fn scalar(&self, name: &str) -> (String, &'static Flag) {
        match self.pick(name) {
            Some(p) => (p.values.last().copied().unwrap_or("").to_string(), p.flag),
            None => {
                let flag = args::flag(name);
                (flag.default.to_string(), flag)
            }
        }
    }

    /// All values of a repeatable flag from the winning layer.
    fn list(&self, name: &str) -> (Vec<String>, &'static Flag) {
        match self.pick(name) {
            Some(p) => (p.values.iter().map(|s| s.to_string()).collect(), p.flag),
            None => (Vec::new(), args::flag(name)),
        }
    }

    /// A scalar run through a value parser; errors name the flag used.
    fn parsed<T>(&self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        let (raw, flag) = self.scalar(name);
        parse(raw.trim()).map_err(|r| ConfigError::invalid(flag, &raw, &r))
    }

    fn bool(&self, name: &str) -> Result<bool, ConfigError> {
        let (raw, flag) = self.scalar(name);
        args::parse_bool(raw.trim()).ok_or_else(|| {
            ConfigError::new(format!("invalid boolean value \"{}\" for -{}", raw.replace('\n', "\\n"), flag.name))
        })
    }

    fn regexes(&self, name: &str) -> Result<Vec<regex::Regex>, ConfigError> {
        let (raw, flag) = self.list(name);
        raw.iter().map(|r| values::regex(r).map_err(|e| ConfigError::invalid(flag, r, &e))).collect()
    }

    /// A duration clamped to the table's bounds, with a warning when clamped.
    fn duration(&self, name: &str, warnings: &mut Vec<String>) -> Result<Duration, ConfigError> {
        let (raw, used) = self.scalar(name);
        let d = duration::parse(raw.trim()).map_err(|r| ConfigError::invalid(used, &raw, &r))?;
        Ok(clamp(args::flag(name), used, d, warnings))
    }

    /// `-web-config-file`: loaded now so a bad file stops the start with one line naming the
    /// file, line and key; its warnings (settings rustls honours only approximately) join the
    /// start-up warnings.
    fn web_config(&self, warnings: &mut Vec<String>) -> Result<Option<crate::web::WebConfig>, ConfigError> {
        let (raw, flag) = self.scalar("web-config-file");
        let path = raw.trim();
        if path.is_empty() {
            return Ok(None);
        }
        let config = crate::web::WebConfig::load(std::path::Path::new(path))
            .map_err(|e| ConfigError::new(format!("-{} {path}: {e}", flag.name)))?;
        warnings.extend(config.warnings.iter().cloned());
        Ok(Some(config))
    }

    /// Builds and validates the final config. Every value is checked before
    /// the token so a typo is reported even when the token is also missing.
    fn build(&self, config_file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        for flag in FLAGS.iter().filter(|f| f.deprecated) {
            if self.layers.iter().any(|l| !l.values(flag.name).is_empty()) {
                warnings.push(match flag.alias_of {
                    Some(target) => format!("-{} is deprecated; use -{target} instead", flag.name),
                    None => format!("-{} is deprecated and will be removed in a future version", flag.name),
                });
            }
        }

        let (listen_raw, listen_flag) = self.scalar("listen");
        let listen = if listen_flag.name == "listen" {
            values::listen(listen_raw.trim())
        } else {
            values::listen_from_endpoint(listen_raw.trim())
        }
        .map_err(|r| ConfigError::invalid(listen_flag, &listen_raw, &r))?;

        let (ids, ids_flag) = self.list("service");
        let service_ids = ids
            .iter()
            .map(|id| match id.trim() {
                "" => Err(ConfigError::new(format!(
                    "invalid value \"\" for -{}: service ID must not be empty",
                    ids_flag.name
                ))),
                id => Ok(id.to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Two ways to name the same setting: refusing both at once beats a silent precedence
        // rule, since a leftover -service-shard would pin every pod to one shard.
        let service_shard = match (self.pick("service-shard"), self.pick("service-shard-ordinal")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "-service-shard and -service-shard-ordinal cannot be used together: keep one",
                ));
            }
            (Some(_), None) => Some(self.parsed("service-shard", values::shard)?),
            (None, Some(_)) => Some(self.parsed("service-shard-ordinal", values::shard_from_ordinal)?),
            (None, None) => None,
        };

        let (cert_raw, cert_flag) = self.scalar("certificate-refresh");
        let certificate_refresh = match duration::parse(cert_raw.trim()) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(clamp(cert_flag, cert_flag, d, &mut warnings)),
            Err(r) => return Err(ConfigError::invalid(cert_flag, &cert_raw, &r)),
        };

        let web_config = self.web_config(&mut warnings)?;

        let config = Config {
            token: String::new(),
            listen,
            web_max_connections: self.parsed("web-max-connections", values::connections)?,
            namespace: self.parsed("namespace", values::metric_name_part)?,
            subsystem: self.parsed("subsystem", values::metric_name_part)?,
            service_ids,
            service_allowlist: self.regexes("service-allowlist")?,
            service_blocklist: self.regexes("service-blocklist")?,
            service_shard,
            metric_allowlist: self.regexes("metric-allowlist")?,
            metric_blocklist: self.regexes("metric-blocklist")?,
            service_refresh: self.duration("service-refresh", &mut warnings)?,
            api_timeout: self.duration("api-timeout", &mut warnings)?,
            rt_timeout: self.duration("rt-timeout", &mut warnings)?,
            product_refresh: self.duration("product-refresh", &mut warnings)?,
            datacenter_refresh: self.duration("datacenter-refresh", &mut warnings)?,
            certificate_refresh,
            dictionary_refresh: self.duration("dictionary-refresh", &mut warnings)?,
            entity_expiry: Some(self.duration("entity-expiry", &mut warnings)?).filter(|d| !d.is_zero()),
            rt_max_body: self.parsed("rt-max-body", values::size)?,
            aggregate_only: self.bool("aggregate-only")?,
            debug: self.bool("debug")?,
            api_endpoint: self.parsed("api-endpoint", values::base_url)?,
            rt_endpoint: self.parsed("rt-endpoint", values::base_url)?,
            config_file,
            state_file: Some(self.scalar("state-file").0.trim().to_string())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            state_interval: self.duration("state-interval", &mut warnings)?,
            web_config,
            warnings,
        };

        let token = self.scalar("token").0.trim().to_string();
        if token.is_empty() {
            return Err(ConfigError::new("-token or FASTLY_API_TOKEN is required"));
        }
        Ok(Config { token, ..config })
    }
}

/// Clamps `d` to `bounds`' table range, warning in the form
/// `-api-timeout 1s is below the minimum 5s; using 5s`. `used` is the flag the
/// user typed (it differs from `bounds` for deprecated aliases).
fn clamp(bounds: &Flag, used: &Flag, d: Duration, warnings: &mut Vec<String>) -> Duration {
    debug_assert_eq!(bounds.kind, Kind::Duration);
    let bound = |s: &str| (!s.is_empty()).then(|| duration::parse(s).ok()).flatten();
    let (limit, word) = match (bound(bounds.min), bound(bounds.max)) {
        (Some(min), _) if d < min => (min, "below the minimum"),
        (_, Some(max)) if d > max => (max, "above the maximum"),
        _ => return d,
    };
    warnings.push(format!(
        "-{} {} is {word} {m}; using {m}",
        used.name,
        duration::format(d),
        m = duration::format(limit)
    ));
    limit
}
