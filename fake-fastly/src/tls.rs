//! TLS for the fake: a throwaway private CA and a server certificate signed by it, and the
//! rustls server configuration that serves it through tiny_http's stream hook.
//!
//! Tests use it to prove the exporter trusts what operators tell it to trust (a private or
//! TLS-inspecting proxy CA via `SSL_CERT_FILE`/`SSL_CERT_DIR`) and nothing else; the benchmark
//! uses it to measure the real transport.

use std::io;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A CA and a server identity it signed, all PEM.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// The CA certificate: what a client must trust.
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

impl TlsIdentity {
    /// A new CA (common name `ca_name`) and a server certificate for `names` (DNS names or IP
    /// addresses, e.g. `127.0.0.1` and `localhost`).
    pub fn generate(ca_name: &str, names: &[&str]) -> Result<TlsIdentity, rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("fake-fastly"));
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &ca)?;
        Ok(TlsIdentity { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The rustls server configuration presenting this identity.
    pub fn server_config(&self) -> io::Result<Arc<rustls::ServerConfig>> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(io::Error::other)?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(io::Error::other)?;
        Ok(Arc::new(config))
    }
}

/// The tiny_http stream hook serving `config` on every accepted socket.
pub(crate) fn wrapper(config: Arc<rustls::ServerConfig>) -> Arc<tiny_http::WrapFn> {
    Arc::new(move |tcp: std::net::TcpStream| {
        let conn = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(Box::new(rustls::StreamOwned::new(conn, tcp)) as Box<dyn tiny_http::ReadWrite + Send>)
    })
}
