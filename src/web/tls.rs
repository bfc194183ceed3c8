//! TLS for the listener: a rustls 0.23 `ServerConfig` built from the web config, reloadable
//! without a restart.
//!
//! rustls (with the ring provider ureq already links) is used directly rather than through
//! tiny_http's `ssl-rustls` feature: that feature pins rustls 0.20 (a second copy in the
//! binary), loads the certificate once and has no client authentication.
//!
//! Reloading: [`TlsReloader`] holds the current `Arc<ServerConfig>`. A connection takes the
//! `Arc` when it is accepted ([`TlsReloader::accept`]) and keeps it for its lifetime, so a
//! reload never disturbs a scrape in flight; only new connections see the new certificate. A
//! failed reload keeps the old config. [`TlsReloader::changed`] compares `stat` results of the
//! files (following symlinks, so cert-manager's `..data` swap and certbot's `live/` links are
//! seen) and is cheap enough to poll every few seconds.
//!
//! Where rustls cannot do what a toolkit setting asks, the nearest safe behaviour is used and
//! [`plan`] returns a warning for start-up: TLS 1.0/1.1 become 1.2 (rustls has nothing older);
//! CBC and RSA-key-exchange suites are dropped (every rustls suite is an AEAD with ECDHE);
//! P-521 is dropped (ring has no P-521 key exchange).

use std::fmt;
use std::io;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms, ring as provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, StreamOwned,
    SupportedCipherSuite, SupportedProtocolVersion,
};

use super::config::{PemRef, PemSource, TlsSettings};

/// A TLS connection on an accepted socket: blocking, like the `TcpStream` it wraps. The
/// handshake runs on the first read or write (or [`handshake`]), within the socket's timeouts.
pub type TlsStream = StreamOwned<ServerConnection, TcpStream>;

/// `client_auth_type`, with Go's `crypto/tls` meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified against a CA (only proof of key possession).
    RequireAnyClientCert,
    /// Verified against the client CAs when given.
    VerifyClientCertIfGiven,
    /// Required and verified against the client CAs.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Parses the toolkit's names; `RequireClientCert` is its legacy alias and an empty value
    /// means `NoClientCert`.
    pub fn from_go_name(s: &str) -> Option<Self> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    pub fn go_name(self) -> &'static str {
        match self {
            ClientAuth::NoClientCert => "NoClientCert",
            ClientAuth::RequestClientCert => "RequestClientCert",
            ClientAuth::RequireAnyClientCert => "RequireAnyClientCert",
            ClientAuth::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
            ClientAuth::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
        }
    }

    /// Client certificates are checked against trust anchors.
    pub fn verifies(self) -> bool {
        matches!(self, ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)
    }
}

/// `min_version` / `max_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn from_go_name(s: &str) -> Option<Self> {
        Some(match s {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            _ => return None,
        })
    }

    pub fn go_name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }
}

/// A TLS 1.2 suite rustls implements, under the same name in Go and in rustls.
macro_rules! rustls_suite {
    ($name:ident) => {
        (stringify!($name), Some(provider::cipher_suite::$name), false)
    };
}

/// Every name Go's `tls.CipherSuites()` returns (what the toolkit accepts), with the rustls
/// suite when rustls has it. TLS 1.3 names are accepted and, as in Go, have no effect: TLS 1.3
/// suites are not configurable.
const GO_CIPHER_SUITES: &[(&str, Option<SupportedCipherSuite>, bool)] = &[
    ("TLS_AES_128_GCM_SHA256", None, true),
    ("TLS_AES_256_GCM_SHA384", None, true),
    ("TLS_CHACHA20_POLY1305_SHA256", None, true),
    rustls_suite!(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    rustls_suite!(TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    rustls_suite!(TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    rustls_suite!(TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    rustls_suite!(TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    rustls_suite!(TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None, false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None, false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None, false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None, false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", None, false),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", None, false),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", None, false),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", None, false),
];

/// The toolkit's curve names, with ring's key-exchange group when it has one.
const GO_CURVES: &[(&str, Option<&dyn SupportedKxGroup>)] = &[
    ("CurveP256", Some(provider::kx_group::SECP256R1)),
    ("CurveP384", Some(provider::kx_group::SECP384R1)),
    ("CurveP521", None),
    ("X25519", Some(provider::kx_group::X25519)),
];

/// `true` for a `cipher_suites` entry the toolkit accepts.
pub fn is_go_cipher_suite(name: &str) -> bool {
    GO_CIPHER_SUITES.iter().any(|(n, _, _)| *n == name)
}

/// `true` for a `curve_preferences` entry the toolkit accepts.
pub fn is_go_curve(name: &str) -> bool {
    GO_CURVES.iter().any(|(n, _)| *n == name)
}

/// What the settings become in rustls terms: the protocol versions and a provider restricted
/// to the chosen suites and groups, plus what could not be honoured exactly.
pub struct Plan {
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub provider: CryptoProvider,
    pub warnings: Vec<String>,
}

/// Maps versions, cipher suites and curves onto rustls. Fails only when no protocol version is
/// left (e.g. `min_version: TLS13` with `max_version: TLS12`).
pub fn plan(s: &TlsSettings) -> Result<Plan, &'static str> {
    let mut warnings = Vec::new();
    let mut provider = provider::default_provider();
    let floor = |v: TlsVersion, key: &str, warnings: &mut Vec<String>| {
        if v < TlsVersion::Tls12 {
            warnings
                .push(format!("{key} {} is not supported by rustls (TLS 1.2 and 1.3 only); using TLS12", v.go_name()));
            TlsVersion::Tls12
        } else {
            v
        }
    };
    let min = floor(s.min_version, "min_version", &mut warnings);
    let max = floor(s.max_version, "max_version", &mut warnings);
    let mut tls12 = min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12;
    let tls13 = max >= TlsVersion::Tls13;

    if !s.cipher_suites.is_empty() {
        let listed: Vec<&(&str, Option<SupportedCipherSuite>, bool)> =
            s.cipher_suites.iter().filter_map(|n| GO_CIPHER_SUITES.iter().find(|(g, _, _)| g == n)).collect();
        let chosen: Vec<SupportedCipherSuite> = listed.iter().filter_map(|(_, suite, _)| *suite).collect();
        let dropped: Vec<&str> =
            listed.iter().filter(|(_, suite, v13)| suite.is_none() && !v13).map(|(n, _, _)| *n).collect();
        let any12 = listed.iter().any(|(_, _, v13)| !v13);
        if !any12 {
            // Go applies cipher_suites to TLS 1.2 only; a list of TLS 1.3 names leaves TLS 1.2
            // with no suite at all.
            if tls12 {
                warnings.push("cipher_suites lists no TLS 1.2 suite: TLS 1.2 is disabled".to_string());
            }
            tls12 = false;
        } else if chosen.is_empty() {
            warnings.push(format!(
                "cipher_suites {} are not supported by rustls; using rustls's TLS 1.2 suites (all AEAD with ECDHE)",
                dropped.join(", ")
            ));
        } else {
            if !dropped.is_empty() {
                warnings
                    .push(format!("cipher_suites {} are not supported by rustls and are ignored", dropped.join(", ")));
            }
            let mut suites: Vec<SupportedCipherSuite> =
                provider.cipher_suites.iter().copied().filter(|c| c.version() == &rustls::version::TLS13).collect();
            let mut seen = Vec::new();
            for c in chosen {
                if !seen.contains(&c.suite()) {
                    seen.push(c.suite());
                    suites.push(c);
                }
            }
            provider.cipher_suites = suites;
        }
    }

    if !s.curve_preferences.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        let mut dropped = Vec::new();
        for name in &s.curve_preferences {
            match GO_CURVES.iter().find(|(n, _)| n == name) {
                Some((_, Some(g))) => {
                    if !groups.iter().any(|x| x.name() == g.name()) {
                        groups.push(*g);
                    }
                }
                _ => dropped.push(name.as_str()),
            }
        }
        if groups.is_empty() {
            warnings.push(format!(
                "curve_preferences {} are not supported by rustls; using X25519, P-256 and P-384",
                dropped.join(", ")
            ));
        } else {
            if !dropped.is_empty() {
                warnings.push(format!(
                    "curve_preferences {} are not supported by rustls and are ignored",
                    dropped.join(", ")
                ));
            }
            provider.kx_groups = groups;
        }
    }

    if let Some(sans) = &s.client_allowed_sans {
        for san in sans.iter().filter(|s| s.contains('@')) {
            warnings
                .push(format!("client_allowed_sans {san:?}: e-mail SANs cannot be checked; this entry never matches"));
        }
    }

    let mut versions = Vec::new();
    if tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if tls13 && min <= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err("no TLS version is left between min_version and max_version (rustls supports TLS12 and TLS13)");
    }
    Ok(Plan { versions, provider, warnings })
}

/// Why a TLS config could not be built. Errors name the YAML key and line that pointed at the
/// data, and for files their path; never any key material.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read { key: &'static str, line: usize, path: PathBuf, error: io::Error },
    /// No `CERTIFICATE` block (in the certificate or the client CA data).
    NoCertificate { key: &'static str, line: usize },
    /// No usable private key block, or one rustls cannot parse. The PEM parser's error is
    /// not kept: its text can quote bytes of the key.
    BadKey { key: &'static str, line: usize, reason: String },
    /// A CA certificate that rustls refuses as a trust anchor.
    BadCa { key: &'static str, line: usize, error: rustls::Error },
    /// The key does not match the certificate, or rustls refused the pair.
    KeyPair { line: usize, error: rustls::Error },
    /// rustls refused the protocol versions for the chosen suites.
    Rustls { line: usize, error: rustls::Error },
    /// Settings left no usable protocol version (normally caught when the file is loaded).
    Settings { line: usize, reason: &'static str },
    /// The client verifier could not be built.
    Verifier { line: usize, error: rustls::server::VerifierBuilderError },
}

impl TlsError {
    /// The config line the error points at.
    pub fn line(&self) -> usize {
        match self {
            TlsError::Read { line, .. }
            | TlsError::NoCertificate { line, .. }
            | TlsError::BadKey { line, .. }
            | TlsError::BadCa { line, .. }
            | TlsError::KeyPair { line, .. }
            | TlsError::Rustls { line, .. }
            | TlsError::Settings { line, .. }
            | TlsError::Verifier { line, .. } => *line,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line())?;
        match self {
            TlsError::Read { key, path, error, .. } => write!(f, "{key} {}: {error}", path.display()),
            TlsError::NoCertificate { key, .. } => write!(f, "{key}: no PEM CERTIFICATE block found"),
            TlsError::BadKey { key, reason, .. } => write!(f, "{key}: no usable private key: {reason}"),
            TlsError::BadCa { key, error, .. } => write!(f, "{key}: bad CA certificate: {error}"),
            TlsError::KeyPair { error, .. } => write!(f, "tls_server_config: certificate and key: {error}"),
            TlsError::Rustls { error, .. } => write!(f, "tls_server_config: {error}"),
            TlsError::Settings { reason, .. } => write!(f, "tls_server_config: {reason}"),
            TlsError::Verifier { error, .. } => write!(f, "tls_server_config: client verifier: {error}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { error, .. } => Some(error),
            TlsError::BadCa { error, .. } | TlsError::KeyPair { error, .. } | TlsError::Rustls { error, .. } => {
                Some(error)
            }
            TlsError::Verifier { error, .. } => Some(error),
            TlsError::NoCertificate { .. } | TlsError::BadKey { .. } | TlsError::Settings { .. } => None,
        }
    }
}

/// Reads PEM bytes from a file or the inline text.
fn pem_bytes(r: &PemRef) -> Result<Vec<u8>, TlsError> {
    match &r.source {
        PemSource::File(path) => {
            std::fs::read(path).map_err(|error| TlsError::Read { key: r.key, line: r.line, path: path.clone(), error })
        }
        PemSource::Inline(text) => Ok(text.expose().as_bytes().to_vec()),
    }
}

fn certificates(r: &PemRef) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = pem_bytes(r)?;
    // Unparseable blocks are skipped, as Go's PEM reader skips them; no certificate at all is
    // the error.
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key: r.key, line: r.line });
    }
    Ok(certs)
}

fn private_key(r: &PemRef) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = zeroize::Zeroizing::new(pem_bytes(r)?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::BadKey {
        key: r.key,
        line: r.line,
        reason: pem_reason(&e),
    })
}

/// A PEM error's description without echoing any of the data.
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::NoItemsFound => "no PRIVATE KEY block found".to_string(),
        E::MissingSectionEnd { .. } => "a PEM block has no END line".to_string(),
        E::IllegalSectionStart { .. } => "malformed PEM BEGIN line".to_string(),
        E::Base64Decode(_) => "invalid base64 in a PEM block".to_string(),
        E::Io(io) => io.to_string(),
        _ => "unreadable PEM".to_string(),
    }
}

/// Builds the rustls server config from the settings, reading every referenced file now.
pub fn build_server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let plan = plan(s).map_err(|reason| TlsError::Settings { line: s.line, reason })?;
    let certs = certificates(&s.cert)?;
    let key = private_key(&s.key)?;
    let provider = Arc::new(plan.provider);
    let verifier = client_verifier(s, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&plan.versions)
        .map_err(|error| TlsError::Rustls { line: s.line, error })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::KeyPair { line: s.key.line, error })?;
    config.ignore_client_order = s.prefer_server_cipher_suites;
    // No ALPN: tiny_http speaks HTTP/1.1, which is what a client without ALPN agreement uses.
    // Announcing only "http/1.1" would make rustls refuse clients that offer only "h2".
    Ok(Arc::new(config))
}

fn client_verifier(s: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let line = s.client_ca.as_ref().map_or(s.line, |c| c.line);
    let algorithms = provider.signature_verification_algorithms;
    let verifying = if s.client_auth.verifies() {
        let roots = match &s.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots.add(cert).map_err(|error| TlsError::BadCa { key: ca.key, line: ca.line, error })?;
                }
                roots
            }
            // Go verifies against the system roots then; the bundled Mozilla roots are ours.
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if s.client_auth == ClientAuth::VerifyClientCertIfGiven {
            builder = builder.allow_unauthenticated();
        }
        Some(builder.build().map_err(|error| TlsError::Verifier { line, error })?)
    } else {
        None
    };
    Ok(match (s.client_auth, verifying, &s.client_allowed_sans) {
        (ClientAuth::NoClientCert, _, _) => WebPkiClientVerifier::no_client_auth(),
        (_, Some(v), None) => v,
        (auth, inner, sans) => Arc::new(ToolkitVerifier {
            mandatory: auth == ClientAuth::RequireAnyClientCert || auth == ClientAuth::RequireAndVerifyClientCert,
            inner,
            allowed_sans: sans.clone(),
            algorithms,
        }),
    })
}

/// The client-certificate policies rustls's webpki verifier does not cover: a certificate
/// requested (or required) but not verified against a CA (`RequestClientCert`,
/// `RequireAnyClientCert`), and the `client_allowed_sans` check on top of either kind. The
/// handshake signature is always verified, so the client must hold the certificate's key.
#[derive(Debug)]
struct ToolkitVerifier {
    /// The webpki verifier for the verifying policies.
    inner: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    allowed_sans: Option<Vec<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ToolkitVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.as_ref().map_or(&[], |i| i.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            inner.verify_client_cert(end_entity, intermediates, now)?;
        }
        if let Some(sans) = &self.allowed_sans
            && !has_allowed_san(end_entity, sans)
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The toolkit's SAN check: some DNS, URI or IP SAN of the client certificate equals an
/// allowed entry exactly (no wildcard expansion). E-mail SANs cannot be read with webpki, so
/// such entries never match: the check fails closed.
fn has_allowed_san(end_entity: &CertificateDer<'_>, allowed: &[String]) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
        return false;
    };
    let mut names = cert.valid_dns_names().chain(cert.valid_uri_names());
    if names.any(|n| allowed.iter().any(|a| a == n)) {
        return true;
    }
    allowed
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .any(|ip| cert.verify_is_valid_for_subject_name(&ServerName::IpAddress(ip.into())).is_ok())
}

/// Identity of a file's current content as `stat` sees it through symlinks. A rotation by
/// rename (new inode), by in-place write (size, mtime) or by a symlink swap changes it. A
/// missing file is a state of its own, so its reappearance is noticed too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    Present { dev: u64, ino: u64, len: u64, mtime: (i64, i64), ctime: (i64, i64) },
    Missing(io::ErrorKind),
}

pub(crate) fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Stamp::Present {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        },
        Err(e) => Stamp::Missing(e.kind()),
    }
}

/// The files a TLS config depends on (inline PEM needs no watching).
fn watched_files(s: &TlsSettings) -> Vec<PathBuf> {
    [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|r| r.path().map(Path::to_path_buf))
        .collect()
}

struct Current {
    settings: TlsSettings,
    config: Arc<ServerConfig>,
}

/// The listener's TLS configuration, replaceable while connections are being served.
pub struct TlsReloader {
    current: RwLock<Current>,
    /// File stamps taken just before the last load attempt (successful or not), so a broken
    /// file is reported once per change rather than once per poll.
    seen: Mutex<Vec<(PathBuf, Stamp)>>,
}

impl fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReloader").field("files", &self.watched_files()).finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Builds the first config; fails like [`build_server_config`].
    pub fn new(settings: TlsSettings) -> Result<TlsReloader, TlsError> {
        let seen = stamps(&settings);
        let config = build_server_config(&settings)?;
        Ok(TlsReloader { current: RwLock::new(Current { settings, config }), seen: Mutex::new(seen) })
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).config.clone()
    }

    /// Re-reads the certificate, key and CA files. On failure the previous config stays in
    /// use and the error (one line) is returned for the caller to log.
    pub fn reload(&self) -> Result<(), TlsError> {
        let settings = self.current.read().unwrap_or_else(|p| p.into_inner()).settings.clone();
        self.replace(settings)
    }

    /// Switches to new settings (from a re-read web config file), reading their files; on
    /// failure nothing changes.
    pub fn replace(&self, settings: TlsSettings) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&settings);
        let config = build_server_config(&settings)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current { settings, config };
        Ok(())
    }

    /// Whether any watched file changed since the last load attempt: a few `stat` calls, for
    /// a watcher polling every few seconds.
    pub fn changed(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().any(|(path, old)| stamp(path) != *old)
    }

    /// The watcher's tick: reloads when a file changed. `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        self.changed().then(|| self.reload())
    }

    /// The certificate, key and CA files being watched.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        watched_files(&self.current.read().unwrap_or_else(|p| p.into_inner()).settings)
    }

    /// Wraps an accepted socket in a TLS server connection using the current config. The
    /// connection keeps that config for its whole life, whatever reloads happen meanwhile.
    pub fn accept(&self, socket: TcpStream) -> Result<TlsStream, rustls::Error> {
        let conn = ServerConnection::new(self.current())?;
        Ok(StreamOwned::new(conn, socket))
    }
}

fn stamps(s: &TlsSettings) -> Vec<(PathBuf, Stamp)> {
    watched_files(s)
        .into_iter()
        .map(|p| {
            let st = stamp(&p);
            (p, st)
        })
        .collect()
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
