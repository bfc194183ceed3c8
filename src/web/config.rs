//! The exporter toolkit's web config file (`-web-config-file`), parsed strictly.
//!
//! The format is the one every Prometheus exporter reads (`web/tls_config.go` in
//! prometheus/exporter-toolkit, checked by `promtool check web-config`), so an operator can
//! reuse the file they already have. The rules follow the toolkit:
//!
//! - unknown and duplicate keys are errors (Go's `yaml.UnmarshalStrict`), each naming the key
//!   and its line;
//! - relative file paths resolve against the config file's directory;
//! - TLS is on when any of `cert`/`cert_file`/`key`/`key_file`/`client_ca`/`client_ca_file`/
//!   `client_auth_type` is set; then both a certificate and a key are required;
//! - `basic_auth_users` values must be bcrypt hashes; `http_server_config.headers` accepts only
//!   the five security headers the toolkit allows (with its value checks);
//! - an empty file or `{}` means plain HTTP without authentication.
//!
//! Keys of newer toolkit releases are accepted too (`cert`, `key`, `client_ca`,
//! `client_allowed_sans`, `rate_limit`), so a file written for a recent exporter works here.
//! Settings that rustls cannot honour exactly (TLS 1.0/1.1, CBC cipher suites, P-521) are
//! accepted with a warning and mapped to the nearest safe behaviour; see `tls.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::WebConfigError;
use super::tls::{self, ClientAuth, TlsVersion};
use super::yaml::{self, Node, Scalar, TreeError};

/// A string that must never be printed: an inline private key or a password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the code that uses it (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where PEM data comes from: a file (re-read on every reload) or inline text in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    /// `cert_file`, `key_file`, `client_ca_file`: already resolved against the config's
    /// directory.
    File(PathBuf),
    /// `cert`, `key`, `client_ca`.
    Inline(Secret),
}

/// A PEM source together with the key and line that configured it, so load and reload errors
/// can point at the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemRef {
    pub source: PemSource,
    /// The YAML key (`cert_file`, `key`, ...).
    pub key: &'static str,
    pub line: usize,
}

impl PemRef {
    /// The file to watch for rotation, if this source is a file.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            PemSource::File(p) => Some(p),
            PemSource::Inline(_) => None,
        }
    }
}

/// `tls_server_config`, validated (both certificate and key are present when this exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PemRef,
    pub key: PemRef,
    pub client_auth: ClientAuth,
    /// Client CAs; `None` with a verifying `client_auth` means the bundled web PKI roots (Go
    /// falls back to the system roots).
    pub client_ca: Option<PemRef>,
    /// `client_allowed_sans`: a verified client certificate must carry one of these SANs.
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// `cipher_suites` by Go name, in the file's order; empty means the defaults.
    pub cipher_suites: Vec<String>,
    /// `curve_preferences` by Go name; empty means the defaults.
    pub curve_preferences: Vec<String>,
    /// Server order wins over the client's (the toolkit's default is `true`).
    pub prefer_server_cipher_suites: bool,
    /// Line of `tls_server_config`, for errors about the section as a whole.
    pub line: usize,
}

/// `rate_limit`: at most `burst` requests at once, refilled one per `interval` (Go's
/// `rate.NewLimiter(rate.Every(interval), burst)`). Absent or a zero interval: no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// The whole web config file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// The file it was read from (reloads read it again).
    pub path: PathBuf,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// `http_server_config.http2`. Parsed for compatibility only: tiny_http speaks HTTP/1.1.
    pub http2: bool,
    /// `http_server_config.headers`, to add to every response, sorted by name.
    pub headers: Vec<(String, String)>,
    pub rate_limit: Option<RateLimit>,
    /// `basic_auth_users`: user → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, Secret>,
    /// Settings accepted but not honoured exactly; log once at start-up.
    pub warnings: Vec<String>,
}

impl WebConfig {
    /// Reads, parses and validates the file, including loading the certificate, key and CA
    /// files once (as `promtool check web-config` does), so a broken setup fails at start-up.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(WebConfigError::Read)?;
        let config = parse(&text, path)?;
        if let Some(t) = &config.tls {
            tls::build_server_config(t).map_err(WebConfigError::Tls)?;
        }
        Ok(config)
    }

    /// `true` when requests must carry basic-auth credentials.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }
}

/// The error with its line, built at the point of failure.
fn at(line: usize, kind: ErrorAt) -> WebConfigError {
    WebConfigError::At { line, error: kind }
}

/// What went wrong at a given line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorAt {
    /// YAML the parser refused, with its message.
    Syntax(String),
    /// A key the format does not have; `section` is empty at the top level.
    UnknownKey {
        key: String,
        section: &'static str,
    },
    DuplicateKey {
        key: String,
    },
    /// A mapping key that is not a plain string.
    ComplexKey,
    /// An alias to an undefined anchor, or a bad `<<` merge.
    BadReference,
    /// A value of the wrong shape (`want` is e.g. "a mapping", "a boolean").
    WrongType {
        key: String,
        want: &'static str,
        found: &'static str,
    },
    /// A value outside the allowed set. `value` is never a secret.
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A response header the toolkit does not allow to be configured.
    HeaderNotAllowed {
        name: String,
    },
    /// A user whose value is not a bcrypt hash (the hash itself is not shown).
    BadPasswordHash {
        user: String,
        reason: String,
    },
    /// TLS is on but there is no certificate (`cert_file` or `cert`) or key.
    Missing {
        what: &'static str,
    },
    /// A rule spanning several keys of `tls_server_config`.
    Conflict(&'static str),
}

impl fmt::Display for ErrorAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorAt::Syntax(m) => write!(f, "YAML syntax error: {m}"),
            ErrorAt::UnknownKey { key, section: "" } => write!(f, "unknown key {key:?}"),
            ErrorAt::UnknownKey { key, section } => write!(f, "unknown key {key:?} in {section}"),
            ErrorAt::DuplicateKey { key } => write!(f, "duplicate key {key:?}"),
            ErrorAt::ComplexKey => f.write_str("mapping keys must be plain strings"),
            ErrorAt::BadReference => f.write_str("bad alias or merge key"),
            ErrorAt::WrongType { key, want, found } => write!(f, "{key} must be {want}, not a {found}"),
            ErrorAt::InvalidValue { key, value, reason } => write!(f, "invalid {key} {value:?}: {reason}"),
            ErrorAt::HeaderNotAllowed { name } => write!(
                f,
                "HTTP header {name:?} can not be configured (allowed: {})",
                ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
            ErrorAt::BadPasswordHash { user, reason } => {
                write!(f, "basic_auth_users: the password of {user:?} is not a bcrypt hash ({reason})")
            }
            ErrorAt::Missing { what } => write!(f, "tls_server_config: missing {what}"),
            ErrorAt::Conflict(m) => write!(f, "tls_server_config: {m}"),
        }
    }
}

/// Headers `http_server_config.headers` may set, with the values allowed (empty: any). The
/// toolkit keeps this list short on purpose, for consistency across exporters; names are
/// matched exactly as Go does (a map lookup).
pub(crate) const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// Parses config text; `path` is the file it came from (relative paths resolve against its
/// directory). Does not read any referenced file.
pub fn parse(text: &str, path: &Path) -> Result<WebConfig, WebConfigError> {
    let root = yaml::parse(text).map_err(tree_error)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut config = WebConfig {
        path: path.to_path_buf(),
        tls: None,
        http2: true,
        headers: Vec::new(),
        rate_limit: None,
        users: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let Some(root) = root else { return Ok(config) };
    for (key, value) in entries(&root, "the file")? {
        match key.text.as_str() {
            "tls_server_config" => config.tls = tls_section(key, value, dir, &mut config.warnings)?,
            "http_server_config" => http_section(value, &mut config)?,
            "basic_auth_users" => config.users = users(value)?,
            "rate_limit" => config.rate_limit = rate_limit(value, &mut config.warnings)?,
            other => return Err(unknown(key, other, "")),
        }
    }
    Ok(config)
}

fn tree_error(e: TreeError) -> WebConfigError {
    match e {
        TreeError::Syntax(s) => at(s.line, ErrorAt::Syntax(s.message)),
        TreeError::DuplicateKey { key, line } => at(line, ErrorAt::DuplicateKey { key }),
        TreeError::ComplexKey { line } => at(line, ErrorAt::ComplexKey),
        TreeError::UnknownAlias { line } | TreeError::BadMerge { line } => at(line, ErrorAt::BadReference),
    }
}

fn unknown(key: &Scalar, name: &str, section: &'static str) -> WebConfigError {
    at(key.line, ErrorAt::UnknownKey { key: name.to_string(), section })
}

/// The entries of a mapping; null (an empty section) has none.
fn entries<'n>(node: &'n Node, what: &str) -> Result<Vec<(&'n Scalar, &'n Node)>, WebConfigError> {
    match node {
        Node::Map { entries, .. } => Ok(entries.iter().map(|(k, v)| (k, v)).collect()),
        n if n.is_null() => Ok(Vec::new()),
        n => Err(at(n.line(), ErrorAt::WrongType { key: what.to_string(), want: "a mapping", found: n.kind() })),
    }
}

/// A string value: any scalar's text (yaml.v2 decodes numbers and bools into strings too);
/// null is `None` (the field keeps its default).
fn string(node: &Node, key: &str) -> Result<Option<String>, WebConfigError> {
    match node {
        Node::Scalar(s) if s.is_null() => Ok(None),
        Node::Scalar(s) => Ok(Some(s.text.clone())),
        n => Err(at(n.line(), ErrorAt::WrongType { key: key.to_string(), want: "a string", found: n.kind() })),
    }
}

/// A YAML 1.1 boolean, as yaml.v2 resolves plain scalars; null is `None`.
fn boolean(node: &Node, key: &str) -> Result<Option<bool>, WebConfigError> {
    let wrong =
        |n: &Node| at(n.line(), ErrorAt::WrongType { key: key.to_string(), want: "a boolean", found: n.kind() });
    match node {
        Node::Scalar(s) if s.is_null() => Ok(None),
        Node::Scalar(s) if !s.quoted => match s.text.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Ok(Some(true)),
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Ok(Some(false)),
            _ => Err(at(
                s.line,
                ErrorAt::InvalidValue {
                    key: key.to_string(),
                    value: s.text.clone(),
                    reason: "want true or false".into(),
                },
            )),
        },
        n => Err(wrong(n)),
    }
}

/// A list of strings with their lines; null is empty. A single scalar is refused, as in Go.
fn string_list(node: &Node, key: &str) -> Result<Vec<(String, usize)>, WebConfigError> {
    match node {
        n if n.is_null() => Ok(Vec::new()),
        Node::Seq { items, .. } => items
            .iter()
            .map(|item| match item {
                Node::Scalar(s) if !s.is_null() => Ok((s.text.clone(), s.line)),
                n => Err(at(n.line(), ErrorAt::WrongType { key: key.to_string(), want: "a string", found: n.kind() })),
            })
            .collect(),
        n => Err(at(n.line(), ErrorAt::WrongType { key: key.to_string(), want: "a list", found: n.kind() })),
    }
}

fn invalid(line: usize, key: &str, value: &str, reason: impl Into<String>) -> WebConfigError {
    at(line, ErrorAt::InvalidValue { key: key.to_string(), value: value.to_string(), reason: reason.into() })
}

/// `config_util.JoinDir`: relative paths are taken from the config file's directory.
fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { dir.join(p) }
}

fn tls_section(
    section: &Scalar,
    node: &Node,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<TlsSettings>, WebConfigError> {
    const S: &str = "tls_server_config";
    let (mut cert, mut key, mut client_ca) = (None, None, None);
    let (mut cert_file, mut key_file, mut client_ca_file) = (None, None, None);
    let mut client_auth: Option<(String, usize)> = None;
    let mut sans: Option<Vec<(String, usize)>> = None;
    let mut min_version = (TlsVersion::Tls12, 0);
    let mut max_version = (TlsVersion::Tls13, 0);
    let mut ciphers = Vec::new();
    let mut curves = Vec::new();
    let mut prefer_server = true;
    for (k, v) in entries(node, S)? {
        let name = k.text.as_str();
        let line = k.line;
        // Non-empty string values with the line of their key.
        let text = |v: &Node| string(v, name).map(|s| s.filter(|s| !s.is_empty()).map(|s| (s, line)));
        match name {
            "cert" => cert = text(v)?,
            "key" => key = text(v)?,
            "client_ca" => client_ca = text(v)?,
            "cert_file" => cert_file = text(v)?,
            "key_file" => key_file = text(v)?,
            "client_ca_file" => client_ca_file = text(v)?,
            "client_auth_type" => client_auth = text(v)?,
            "client_allowed_sans" => sans = Some(string_list(v, name)?),
            "min_version" | "max_version" => {
                if let Some(s) = string(v, name)? {
                    let version =
                        TlsVersion::from_go_name(&s).ok_or_else(|| invalid(line, name, &s, "unknown TLS version"))?;
                    if name == "min_version" {
                        min_version = (version, line);
                    } else {
                        max_version = (version, line);
                    }
                }
            }
            "cipher_suites" => {
                for (c, l) in string_list(v, name)? {
                    if !tls::is_go_cipher_suite(&c) {
                        return Err(invalid(l, name, &c, "unknown cipher"));
                    }
                    ciphers.push(c);
                }
            }
            "curve_preferences" => {
                for (c, l) in string_list(v, name)? {
                    if !tls::is_go_curve(&c) {
                        return Err(invalid(l, name, &c, "unknown curve"));
                    }
                    curves.push(c);
                }
            }
            "prefer_server_cipher_suites" => prefer_server = boolean(v, name)?.unwrap_or(false),
            other => return Err(unknown(k, other, S)),
        }
    }

    let enabled =
        [&cert, &key, &client_ca, &cert_file, &key_file, &client_ca_file, &client_auth].iter().any(|o| o.is_some());
    if !enabled {
        // The toolkit serves plain HTTP then and ignores the other TLS keys.
        if !entries(node, S)?.is_empty() {
            warnings.push(format!(
                "web config: line {}: tls_server_config has no certificate, key or client_auth_type: serving plain HTTP",
                section.line
            ));
        }
        return Ok(None);
    }
    let pem =
        |file: Option<(String, usize)>, file_key, inline: Option<(String, usize)>, inline_key| match (file, inline) {
            (Some((p, line)), _) => Some(PemRef { source: PemSource::File(resolve(dir, &p)), key: file_key, line }),
            (None, Some((text, line))) => {
                Some(PemRef { source: PemSource::Inline(Secret(text)), key: inline_key, line })
            }
            (None, None) => None,
        };
    let cert = pem(cert_file, "cert_file", cert, "cert")
        .ok_or_else(|| at(section.line, ErrorAt::Missing { what: "one of cert or cert_file" }))?;
    let key = pem(key_file, "key_file", key, "key")
        .ok_or_else(|| at(section.line, ErrorAt::Missing { what: "one of key or key_file" }))?;
    let client_ca = pem(client_ca_file, "client_ca_file", client_ca, "client_ca");

    let (auth, auth_line) = match client_auth {
        None => (ClientAuth::NoClientCert, section.line),
        Some((s, line)) => (
            ClientAuth::from_go_name(&s).ok_or_else(|| invalid(line, "client_auth_type", &s, "invalid ClientAuth"))?,
            line,
        ),
    };
    if let Some(ca) = &client_ca
        && auth == ClientAuth::NoClientCert
    {
        return Err(at(ca.line, ErrorAt::Conflict("client CAs have been configured without a client_auth_type")));
    }
    if let Some(list) = &sans
        && !matches!(auth, ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert)
    {
        let line = list.first().map_or(auth_line, |(_, l)| *l);
        return Err(at(
            line,
            ErrorAt::Conflict(
                "client_allowed_sans requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert",
            ),
        ));
    }
    if client_ca.is_none() && auth.verifies() {
        warnings.push(format!(
            "web config: client_auth_type {} without client_ca_file: client certificates are verified against \
             the public web PKI roots",
            auth.go_name()
        ));
    }
    let settings = TlsSettings {
        cert,
        key,
        client_auth: auth,
        client_ca,
        client_allowed_sans: sans.map(|l| l.into_iter().map(|(s, _)| s).collect()),
        min_version: min_version.0,
        max_version: max_version.0,
        cipher_suites: ciphers,
        curve_preferences: curves,
        prefer_server_cipher_suites: prefer_server,
        line: section.line,
    };
    // Version, cipher and curve choices rustls cannot honour exactly: warn now, fail now
    // when nothing usable is left.
    let plan = tls::plan(&settings)
        .map_err(|m| at(min_version.1.max(max_version.1).max(section.line), ErrorAt::Conflict(m)))?;
    warnings.extend(plan.warnings.iter().map(|w| format!("web config: {w}")));
    Ok(Some(settings))
}

fn http_section(node: &Node, config: &mut WebConfig) -> Result<(), WebConfigError> {
    const S: &str = "http_server_config";
    for (k, v) in entries(node, S)? {
        match k.text.as_str() {
            "http2" => config.http2 = boolean(v, "http2")?.unwrap_or(false),
            "headers" => {
                let mut headers = Vec::new();
                for (name, value) in entries(v, "headers")? {
                    let value = string(value, &name.text)?.unwrap_or_default();
                    let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name.text) else {
                        return Err(at(name.line, ErrorAt::HeaderNotAllowed { name: name.text.clone() }));
                    };
                    if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                        return Err(invalid(
                            name.line,
                            &name.text,
                            &value,
                            format!("expected one of {}", allowed.join(", ")),
                        ));
                    }
                    if value.contains(['\r', '\n']) {
                        return Err(invalid(name.line, &name.text, &value, "line breaks are not allowed"));
                    }
                    headers.push((name.text.clone(), value));
                }
                headers.sort();
                config.headers = headers;
            }
            other => return Err(unknown(k, other, S)),
        }
    }
    Ok(())
}

fn users(node: &Node) -> Result<BTreeMap<String, Secret>, WebConfigError> {
    let mut users = BTreeMap::new();
    for (name, value) in entries(node, "basic_auth_users")? {
        let hash = match value {
            Node::Scalar(s) if !s.is_null() => s.text.clone(),
            Node::Scalar(_) => String::new(),
            n => {
                return Err(at(
                    n.line(),
                    ErrorAt::WrongType {
                        key: format!("basic_auth_users.{}", name.text),
                        want: "a string",
                        found: n.kind(),
                    },
                ));
            }
        };
        if let Err(reason) = super::auth::validate_hash(&hash) {
            return Err(at(name.line, ErrorAt::BadPasswordHash { user: name.text.clone(), reason }));
        }
        users.insert(name.text.clone(), Secret(hash));
    }
    Ok(users)
}

fn rate_limit(node: &Node, warnings: &mut Vec<String>) -> Result<Option<RateLimit>, WebConfigError> {
    let mut limit = RateLimit { burst: 0, interval: Duration::ZERO };
    for (k, v) in entries(node, "rate_limit")? {
        let line = k.line;
        match k.text.as_str() {
            "burst" => {
                if let Some(s) = string(v, "burst")? {
                    limit.burst =
                        parse_int(&s).ok_or_else(|| invalid(line, "burst", &s, "want a whole number >= 0"))?;
                }
            }
            "interval" => {
                if let Some(s) = string(v, "interval")? {
                    // yaml.v2 reads a time.Duration from Go duration syntax, or from an integer
                    // (nanoseconds).
                    limit.interval = match parse_int(&s) {
                        Some(ns) => Duration::from_nanos(u64::from(ns)),
                        None => crate::util::duration::parse(&s).map_err(|r| invalid(line, "interval", &s, r))?,
                    };
                }
            }
            other => return Err(unknown(k, other, "rate_limit")),
        }
    }
    if limit.interval.is_zero() {
        return Ok(None);
    }
    if limit.burst == 0 {
        warnings.push("web config: rate_limit.burst is 0: every request is refused with 429".to_string());
    }
    Ok(Some(limit))
}

/// A YAML 1.1 integer as yaml.v2 reads it (decimal with `_` separators, `0x`, `0o`, `0b`).
fn parse_int(s: &str) -> Option<u32> {
    let s = s.replace('_', "");
    let s = s.strip_prefix('+').unwrap_or(&s);
    let (digits, radix) = match s.get(..2) {
        Some("0x") => (&s[2..], 16),
        Some("0o") => (&s[2..], 8),
        Some("0b") => (&s[2..], 2),
        _ => (s, 10),
    };
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn ok(text: &str) -> WebConfig {
        parse(text, Path::new("/etc/fastly/web.yml")).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse(text, Path::new("/etc/fastly/web.yml")) {
            Ok(c) => panic!("{text:?}: expected an error, got {c:?}"),
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "{s}");
                s
            }
        }
    }

    #[test]
    fn empty_means_plain_http() {
        for text in ["", "{}", "---\n", "# nothing\n", "tls_server_config:\nhttp_server_config: {}\n"] {
            let c = ok(text);
            assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty() && c.rate_limit.is_none(), "{text}");
            assert!(c.warnings.is_empty());
        }
    }

    #[test]
    fn full_file() {
        let c = ok(&format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n  \
             max_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: no\n  \
             client_allowed_sans: [scraper.example.net]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n  other: {HASH}\n\
             rate_limit:\n  burst: 10\n  interval: 1s\n"
        ));
        let t = c.tls.as_ref().unwrap();
        assert_eq!(t.cert.source, PemSource::File(PathBuf::from("/etc/fastly/tls/server.crt")));
        assert_eq!(t.cert.line, 2);
        assert_eq!(t.key.source, PemSource::File(PathBuf::from("/abs/server.key")));
        assert_eq!(t.client_ca.as_ref().unwrap().path(), Some(Path::new("/etc/fastly/ca.pem")));
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!((t.min_version, t.max_version), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(t.curve_preferences, vec!["X25519", "CurveP256"]);
        assert!(!t.prefer_server_cipher_suites);
        assert_eq!(t.client_allowed_sans.as_deref(), Some(&["scraper.example.net".to_string()][..]));
        assert!(!c.http2);
        assert_eq!(
            c.headers,
            vec![
                ("Strict-Transport-Security".to_string(), "max-age=31536000".to_string()),
                ("X-Frame-Options".to_string(), "deny".to_string())
            ]
        );
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users["prometheus"].expose(), HASH);
        assert_eq!(c.rate_limit, Some(RateLimit { burst: 10, interval: Duration::from_secs(1) }));
        // Hashes never show in Debug output.
        assert!(!format!("{c:?}").contains("QOauh"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = parse("tls_server_config:\n  cert_file: a.crt\n  key_file: ../k/a.key\n", Path::new("conf/web.yml"))
            .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert.path(), Some(Path::new("conf/a.crt")));
        assert_eq!(t.key.path(), Some(Path::new("conf/../k/a.key")));
        let c = parse("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", Path::new("web.yml")).unwrap();
        assert_eq!(c.tls.unwrap().cert.path(), Some(Path::new("a.crt")));
    }

    #[test]
    fn inline_pem_is_secret() {
        let c = ok("tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n  key: SECRETKEY\n");
        let t = c.tls.unwrap();
        assert!(matches!(t.key.source, PemSource::Inline(_)));
        assert_eq!(t.key.key, "key");
        assert!(!format!("{t:?}").contains("SECRETKEY"));
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        assert_eq!(err("tls_server_confg:\n  cert_file: x\n"), "line 1: unknown key \"tls_server_confg\"");
        assert_eq!(
            err("# web\ntls_server_config:\n  cert_filse: \"server.crt\"\n"),
            "line 3: unknown key \"cert_filse\" in tls_server_config"
        );
        assert_eq!(
            err("http_server_config:\n  http2: true\n  header: {}\n"),
            "line 3: unknown key \"header\" in http_server_config"
        );
        assert_eq!(err("rate_limit:\n  bursts: 1\n"), "line 2: unknown key \"bursts\" in rate_limit");
        assert_eq!(err("a: 1\n"), "line 1: unknown key \"a\"");
    }

    #[test]
    fn shape_and_value_errors() {
        assert_eq!(err("basic_auth_users:\n  a: 1\n  a: 2\n"), "line 3: duplicate key \"a\"");
        assert!(err("- a\n- b\n").starts_with("line 1: the file must be a mapping"));
        assert!(err("junk\n").contains("must be a mapping"));
        assert_eq!(err("tls_server_config:\n  cert_file: [a]\n"), "line 2: cert_file must be a string, not a list");
        assert_eq!(
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n"),
            "line 4: invalid min_version \"TLS14\": unknown TLS version"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n"),
            "line 4: invalid client_auth_type \"Sometimes\": invalid ClientAuth"
        );
        assert_eq!(
            err("tls_server_config:\n  cipher_suites:\n  - TLS_RSA_WITH_RC4_128_SHA\n"),
            "line 3: invalid cipher_suites \"TLS_RSA_WITH_RC4_128_SHA\": unknown cipher"
        );
        assert_eq!(
            err("tls_server_config:\n  curve_preferences: [CurveP999]\n"),
            "line 2: invalid curve_preferences \"CurveP999\": unknown curve"
        );
        assert_eq!(err("http_server_config:\n  http2: maybe\n"), "line 2: invalid http2 \"maybe\": want true or false");
        assert_eq!(err("http_server_config:\n  http2: 'true'\n"), "line 2: http2 must be a boolean, not a scalar");
        assert!(err("a: [\n").starts_with("line "));
        assert!(err("rate_limit:\n  interval: soon\n").starts_with("line 2: invalid interval \"soon\""));
    }

    #[test]
    fn tls_rules() {
        assert_eq!(
            err("tls_server_config:\n  key_file: k\n"),
            "line 1: tls_server_config: missing one of cert or cert_file"
        );
        assert_eq!(
            err("\ntls_server_config:\n  cert_file: c\n"),
            "line 2: tls_server_config: missing one of key or key_file"
        );
        assert!(
            err("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n")
                .starts_with("line 4: tls_server_config: client CAs have been configured without")
        );
        assert!(
            err("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: VerifyClientCertIfGiven\n  \
                 client_ca_file: ca\n  client_allowed_sans: [a]\n")
            .contains("client_allowed_sans requires")
        );
        // Other TLS keys alone do not turn TLS on (the toolkit ignores them then); we warn.
        let c = ok("tls_server_config:\n  min_version: TLS13\n");
        assert!(c.tls.is_none());
        assert_eq!(c.warnings.len(), 1);
        // The legacy alias and empty client_auth_type.
        let c = ok("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireClientCert\n");
        assert_eq!(c.tls.unwrap().client_auth, ClientAuth::RequireAnyClientCert);
        let c = ok("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: ''\n");
        assert_eq!(c.tls.unwrap().client_auth, ClientAuth::NoClientCert);
        // Verifying without a CA works (web PKI roots) with a warning.
        let c =
            ok("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        // min above max leaves nothing.
        assert!(
            err("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n")
                .contains("no TLS version")
        );
    }

    #[test]
    fn weaker_settings_are_accepted_with_warnings() {
        let c = ok("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n  \
                    cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  \
                    curve_preferences: [CurveP521, X25519]\n");
        let w = c.warnings.join(" | ");
        assert!(w.contains("TLS10") && w.contains("TLS_RSA_WITH_AES_128_CBC_SHA") && w.contains("CurveP521"), "{w}");
    }

    #[test]
    fn headers_follow_the_toolkit() {
        let c =
            ok("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n    \
                    Content-Security-Policy: \"default-src 'self'\"\n");
        assert_eq!(c.headers.len(), 3);
        assert_eq!(c.headers[2], ("X-XSS-Protection".to_string(), "1".to_string()));
        assert!(
            err("http_server_config:\n  headers:\n    Server: x\n")
                .starts_with("line 3: HTTP header \"Server\" can not be")
        );
        assert!(err("http_server_config:\n  headers:\n    x-frame-options: deny\n").contains("can not be configured"));
        assert_eq!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"),
            "line 3: invalid X-Frame-Options \"allow\": expected one of deny, sameorigin"
        );
    }

    #[test]
    fn users_need_bcrypt_hashes_and_never_show_them() {
        let e = err("basic_auth_users:\n  alice: $2y$10$tooShort\n");
        assert!(e.starts_with("line 2: basic_auth_users: the password of \"alice\" is not a bcrypt hash"), "{e}");
        assert!(!e.contains("tooShort"), "{e}");
        assert!(err("basic_auth_users:\n  bob:\n").contains("\"bob\""));
        assert!(err("basic_auth_users:\n  carol: plaintext-password\n").contains("carol"));
        let c = ok(&format!("basic_auth_users:\n  123: {HASH}\n"));
        assert!(c.users.contains_key("123"));
    }

    #[test]
    fn rate_limit_values() {
        assert_eq!(ok("rate_limit:\n  burst: 5\n").rate_limit, None);
        assert_eq!(
            ok("rate_limit:\n  burst: 0x10\n  interval: 1500000000\n").rate_limit,
            Some(RateLimit { burst: 16, interval: Duration::from_millis(1500) })
        );
        assert_eq!(ok("rate_limit:\n  interval: 1m\n").warnings.len(), 1);
        assert!(err("rate_limit:\n  burst: -1\n").starts_with("line 2: invalid burst"));
    }
}
