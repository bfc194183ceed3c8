//! TLS for the Fastly API clients: which certificate authorities are trusted, and one rustls
//! configuration shared by every connection.
//!
//! Trust follows Go's `crypto/x509` on Linux, because operators of the Go exporter rely on it
//! (TLS-inspecting corporate proxies, private mirrors): `SSL_CERT_FILE` replaces the list of
//! bundle files, `SSL_CERT_DIR` (colon-separated) the list of directories, and otherwise the
//! usual distribution locations are read. Only a machine with no CA certificates at all (a
//! `FROM scratch` image) falls back to the Mozilla roots compiled into the binary.
//!
//! ureq builds a rustls configuration, and parses every root into a trust anchor, per agent;
//! with one agent per poller that is a thousand copies of the root store. Our connector
//! (`connect.rs`) holds one `Arc<ClientConfig>` for the whole process instead.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};

/// Where the machine's CA certificates are looked for when `SSL_CERT_FILE` / `SSL_CERT_DIR`
/// are unset. A value so tests can point it at a machine of their making.
#[derive(Clone, Copy, Debug)]
pub struct CaLocations<'a> {
    /// Bundle files, in order; the first one that exists is used.
    pub files: &'a [&'a str],
    /// Directories; every file in them is read.
    pub dirs: &'a [&'a str],
}

/// The locations Go reads on Linux.
pub const SYSTEM_CA: CaLocations<'static> = CaLocations {
    files: &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ],
    dirs: &["/etc/ssl/certs", "/etc/pki/tls/certs"],
};

/// Where trusted roots came from, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSource {
    /// Certificates from these files and directories.
    System(Vec<PathBuf>),
    /// No CA certificate on the machine: the Mozilla roots built into the binary.
    Bundled,
}

/// The trusted roots and the shared client configuration built from them.
#[derive(Clone)]
pub struct Trust {
    /// Shared by every connection of every client.
    pub config: Arc<ClientConfig>,
    /// How many roots are trusted.
    pub roots: usize,
    /// Where they came from.
    pub source: RootSource,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust").field("roots", &self.roots).field("source", &self.source).finish()
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            RootSource::Bundled => {
                write!(f, "{} bundled Mozilla roots (no CA certificates on this machine)", self.roots)
            }
            RootSource::System(paths) => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{} CA certificates from {}", self.roots, list.join(", "))
            }
        }
    }
}

/// Why the trusted roots could not be loaded: an operator setting that points nowhere.
#[derive(Debug)]
pub enum TrustError {
    /// `SSL_CERT_FILE` names a file that cannot be read.
    Unreadable { var: &'static str, path: PathBuf, error: io::Error },
    /// `SSL_CERT_FILE` names a file without a single certificate.
    NoCertificates { var: &'static str, path: PathBuf },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Unreadable { var, path, error } => write!(f, "{var}={}: cannot read: {error}", path.display()),
            TrustError::NoCertificates { var, path } => {
                write!(f, "{var}={}: no usable PEM certificate in the file", path.display())
            }
        }
    }
}

impl std::error::Error for TrustError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrustError::Unreadable { error, .. } => Some(error),
            TrustError::NoCertificates { .. } => None,
        }
    }
}

/// Loads the trusted roots as Go does on Linux. `env` reads environment variables.
pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Trust, TrustError> {
    load_from(env, SYSTEM_CA)
}

/// [`load`], with the machine's CA locations given.
pub fn load_from(env: &dyn Fn(&str) -> Option<String>, system: CaLocations<'_>) -> Result<Trust, TrustError> {
    let mut roots = RootCertStore::empty();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut used = Vec::new();
    let mut add = |pem: &[u8], roots: &mut RootCertStore| -> usize {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).filter(|c| seen.insert(c.to_vec())).collect();
        let (added, _unparsable) = roots.add_parsable_certificates(certs);
        added
    };
    match env("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        Some(file) => {
            let path = PathBuf::from(file);
            let pem = std::fs::read(&path).map_err(|error| TrustError::Unreadable {
                var: "SSL_CERT_FILE",
                path: path.clone(),
                error,
            })?;
            if add(&pem, &mut roots) == 0 {
                return Err(TrustError::NoCertificates { var: "SSL_CERT_FILE", path });
            }
            used.push(path);
        }
        None => {
            for &file in system.files {
                if let Ok(pem) = std::fs::read(file) {
                    add(&pem, &mut roots);
                    used.push(PathBuf::from(file));
                    break;
                }
            }
        }
    }
    let dirs: Vec<PathBuf> = match env("SSL_CERT_DIR").filter(|v| !v.is_empty()) {
        Some(list) => list.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect(),
        None => system.dirs.iter().map(PathBuf::from).collect(),
    };
    for dir in dirs {
        let mut any = false;
        for file in unique_entries(&dir) {
            if let Ok(pem) = std::fs::read(&file) {
                any |= add(&pem, &mut roots) > 0;
            }
        }
        if any {
            used.push(dir);
        }
    }
    let (source, roots) = if roots.is_empty() {
        (RootSource::Bundled, RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
    } else {
        (RootSource::System(used), roots)
    };
    let count = roots.len();
    Ok(Trust { config: client_config(roots), roots: count, source })
}

/// The files of a certificate directory, skipping symlinks to files in the same directory
/// (the OpenSSL hash links next to each certificate), as Go does.
fn unique_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(target) = std::fs::read_link(&path)
            && !target.to_string_lossy().contains('/')
        {
            continue;
        }
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting `roots`.
pub fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A server presented a certificate we do not trust (or that does not match its name).
#[derive(Debug)]
pub struct Untrusted {
    /// `host:port` as configured.
    pub server: String,
    /// rustls' reason, e.g. "invalid peer certificate: UnknownIssuer".
    pub reason: String,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS: the certificate of {} is not trusted ({}); nothing was sent. If it is signed by a \
             private or proxy CA, add that CA with SSL_CERT_FILE or SSL_CERT_DIR",
            self.server, self.reason
        )
    }
}

impl std::error::Error for Untrusted {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_missing_or_empty_ssl_cert_file_is_an_error() {
        let missing = load(&env(&[("SSL_CERT_FILE", "/nonexistent/ca.pem")])).unwrap_err();
        assert!(missing.to_string().starts_with("SSL_CERT_FILE=/nonexistent/ca.pem: cannot read"), "{missing}");
        let dir = std::env::temp_dir().join(format!("fe-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load(&env(&[("SSL_CERT_FILE", empty.to_str().unwrap())])).unwrap_err();
        assert!(e.to_string().ends_with("no usable PEM certificate in the file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A directory of its own under the temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("fe-tls-{what}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed CA certificate in PEM.
    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn no_certificates_anywhere_falls_back_to_the_bundled_roots() {
        // A machine without a CA file or directory at any of the usual places (a `FROM
        // scratch` image): the locations exist in name only.
        let dir = TempDir::new("scratch");
        let (files, dirs) = ([dir.path("ca-certificates.crt"), dir.path("cert.pem")], [dir.path("certs")]);
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let scratch = CaLocations { files: &files, dirs: &dirs };
        let t = load_from(&env(&[]), scratch).unwrap();
        assert_eq!(t.source, RootSource::Bundled);
        assert_eq!(t.roots, webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(t.roots > 100, "{}", t.roots);
        assert!(t.to_string().contains("bundled Mozilla roots"), "{t}");

        // An empty certificate directory, or a bundle without a certificate, is no better.
        std::fs::create_dir_all(dir.path("certs")).unwrap();
        std::fs::write(dir.path("cert.pem"), "not a certificate\n").unwrap();
        assert_eq!(load_from(&env(&[]), scratch).unwrap().source, RootSource::Bundled);
        // Neither is an empty SSL_CERT_DIR in place of the directories.
        let t = load_from(&env(&[("SSL_CERT_DIR", &dir.path("certs"))]), scratch).unwrap();
        assert_eq!(t.source, RootSource::Bundled);

        // One CA certificate anywhere and the bundled roots are not used.
        std::fs::write(dir.path("certs/private-ca.pem"), ca_pem("Private CA")).unwrap();
        let t = load_from(&env(&[]), scratch).unwrap();
        assert_eq!(t.source, RootSource::System(vec![PathBuf::from(dir.path("cert.pem")), dir.path("certs").into()]));
        assert_eq!(t.roots, 1);
        std::fs::write(dir.path("ca-certificates.crt"), ca_pem("Bundle CA")).unwrap();
        let t = load_from(&env(&[]), scratch).unwrap();
        let first = PathBuf::from(dir.path("ca-certificates.crt"));
        assert_eq!(t.source, RootSource::System(vec![first, dir.path("certs").into()]));
        assert_eq!(t.roots, 2);
    }
}
