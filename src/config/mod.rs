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
mod flags;
mod resolve;
mod usage;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use args::Parsed;
use flags::{AGGREGATE_ONLY, Action, CONFIG_FILE, DATACENTER_GROUP, FLAGS, TOKEN};
use resolve::Sources;

pub use usage::{example_config_file, usage};

/// Everything the exporter needs to run, fully validated so later stages can
/// trust every field without re-checking. Each field is set by one flag's `apply` in the
/// registry (`flags.rs`); `Default` is only the blank the flags are applied to.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Fastly API token. Never printed: its `Debug` is redacted.
    pub token: Token,
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
    /// Key stream rows by datacenter group instead of POP (`-datacenter-group`); never
    /// together with `aggregate_only`.
    pub datacenter_group: bool,
    /// Datacenters are exported only if their POP code matches one of these (when non-empty).
    pub datacenter_allowlist: Vec<regex::Regex>,
    /// Datacenters whose POP code matches any of these are skipped.
    pub datacenter_blocklist: Vec<regex::Regex>,
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

/// The API token. A type of its own so no `{:?}` of a config can print it; it reads as the
/// `&str` it holds wherever one is expected.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl std::ops::Deref for Token {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Token {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
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
#[derive(Debug, Clone)]
pub struct ConfigError {
    message: String,
    /// What failed underneath (reading a file, a web config error), when something did. The
    /// message already quotes it; it is kept for [`std::error::Error::source`].
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ConfigError {
    /// Builds an error, folding any line breaks so the message stays one line.
    pub fn new(msg: impl Into<String>) -> Self {
        let msg: String = msg.into();
        ConfigError { message: msg.replace(['\r', '\n'], " "), cause: None }
    }

    /// An error whose message quotes `cause`.
    pub(crate) fn caused(msg: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConfigError { cause: Some(Arc::new(cause)), ..ConfigError::new(msg) }
    }

    /// The message, for callers that want it without `Display`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Replaces every occurrence of a known token value. Messages are built
    /// not to contain the token anyway; this is the safety net. Very short
    /// candidates are skipped, as they would mangle ordinary words. A cause
    /// whose quote had to be redacted is dropped, so nothing prints it whole.
    fn redact(mut self, secrets: &[String]) -> Self {
        for secret in secrets {
            let secret = secret.trim();
            if secret.chars().count() >= 4 && self.message.contains(secret) {
                self.message = self.message.replace(secret, "<redacted>");
                self.cause = None;
            }
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

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
    let mut sources = Sources { layers: vec![cli, args::env_layer(env)] };
    // The config file is named on the command line or in the environment, never in itself.
    let config_file = Some(sources.resolve(&CONFIG_FILE).text()).filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(path) = &config_file {
        let file = file::read(path)?;
        secrets.extend(file.values(&TOKEN).iter().map(|s| s.to_string()));
        sources.layers.push(file);
    }
    build(&sources).map(|c| Command::Run(Box::new(c)))
}

/// Applies every flag to a blank [`Config`], in registry order. Every value is checked before
/// the token so a typo is reported even when the token is also missing.
fn build(sources: &Sources) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for flag in FLAGS.iter().filter(|f| f.deprecated && sources.mentions(f)) {
        config.warnings.push(match flag.alias_of {
            Some(target) => format!("-{} is deprecated; use -{} instead", flag.name, target.name),
            None => format!("-{} is deprecated and will be removed in a future version", flag.name),
        });
    }
    for &flag in FLAGS {
        if let Some(apply) = flag.apply {
            apply(&sources.resolve(flag), &mut config)?;
        }
    }
    // The aggregate has no datacenters to group; a silent choice would surprise either way.
    if config.datacenter_group && config.aggregate_only {
        return Err(ConfigError::new(format!(
            "-{} and -{} cannot be used together: the aggregate has no datacenters to group; keep one",
            DATACENTER_GROUP.name, AGGREGATE_ONLY.name
        )));
    }
    if config.token.is_empty() {
        return Err(ConfigError::new(format!("-{} or {} is required", TOKEN.name, TOKEN.extra_env.join(", "))));
    }
    Ok(config)
}
