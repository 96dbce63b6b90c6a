//! The server's TLS settings (feature `tls`): certificates and keys from PEM, SNI choosing among several
//! certificates, optional client certificates, session resumption, ALPN `http/1.1`.
//!
//! Owns: building one `rustls::ServerConfig`, shared by every reactor. Never touches: sockets, the
//! reactor (the TLS session of one connection is `server::tls_session`'s).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Why TLS settings could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// PEM input held no certificate where one was expected.
    NoCertificate,
    /// PEM input held no private key.
    NoPrivateKey,
    /// PEM input was malformed.
    Pem(String),
    /// No certificate for clients that send no (or an unknown) server name.
    NoDefaultCertificate,
    /// rustls refused a key, a certificate or a setting.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::NoCertificate => f.write_str("no certificate in the PEM input"),
            Self::NoPrivateKey => f.write_str("no private key in the PEM input"),
            Self::Pem(e) => write!(f, "malformed PEM: {e}"),
            Self::NoDefaultCertificate => f.write_str("no default certificate (only SNI ones were given)"),
            Self::Rustls(e) => write!(f, "TLS settings refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Rustls(e)
    }
}

/// Reads a file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Every certificate in `pem`, in order (at least one).
pub(crate) fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        other => TlsError::Pem(other.to_string()),
    })
}

/// The crypto provider every TLS session of wsloop uses: ring (see docs/tls.md for why).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain with its key, checked to belong together.
fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates_from_pem(chain_pem)?;
    let key = key_from_pem(key_pem)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// Picks the certificate for the server name a client asked for (SNI), else the default one.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

/// The server's TLS settings: one `rustls::ServerConfig`, shared by every reactor (cheap to clone).
///
/// With `Config::tls` set, every connection accepted by the server's listeners speaks TLS (wss://,
/// https:// for `/metrics` and `/healthz`).
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("alpn", &self.inner.alpn_protocols).finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// One certificate chain and its private key, from PEM files (the chain's first certificate is the
    /// server's). Session resumption and ALPN `http/1.1` are on; no client certificates are asked for.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::builder().certificate_pem(&read_file(cert.as_ref())?, &read_file(key.as_ref())?)?.build()
    }

    /// A builder for several certificates (SNI), client certificates and resumption settings.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            default: None,
            by_name: HashMap::new(),
            client_roots: None,
            client_required: false,
            session_cache: 4096,
            tickets: true,
        }
    }

    /// Settings made with rustls directly (its ALPN list is used as it is).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        Self { inner: config }
    }

    /// The rustls settings.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.inner
    }
}

/// Builds a [`TlsConfig`]: see [`TlsConfig::builder`].
#[derive(Debug)]
pub struct TlsConfigBuilder {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
    client_roots: Option<RootCertStore>,
    client_required: bool,
    session_cache: usize,
    tickets: bool,
}

impl TlsConfigBuilder {
    /// The default certificate chain and key (PEM): used when a client sends no server name, or one
    /// without a certificate of its own.
    pub fn certificate_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        self.default = Some(certified_key(chain_pem, key_pem)?);
        Ok(self)
    }

    /// A certificate chain and key (PEM) for clients asking for `server_name` (SNI; matched without
    /// regard to case).
    pub fn sni_certificate_pem(
        mut self,
        server_name: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        self.by_name.insert(server_name.to_ascii_lowercase(), certified_key(chain_pem, key_pem)?);
        Ok(self)
    }

    /// Asks clients for a certificate issued by one of the CAs in `ca_pem`. With `required`, a client
    /// without one is refused; without, it may connect anonymously (a certificate it does send must
    /// still verify).
    pub fn client_ca_pem(mut self, ca_pem: &[u8], required: bool) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates_from_pem(ca_pem)? {
            roots.add(cert)?;
        }
        self.client_roots = Some(roots);
        self.client_required = required;
        Ok(self)
    }

    /// How many sessions the server remembers for resumption by session ID (default 4,096; 0 turns
    /// the cache off).
    pub fn session_cache(mut self, entries: usize) -> Self {
        self.session_cache = entries;
        self
    }

    /// Whether the server issues session tickets (stateless resumption; default on).
    pub fn tickets(mut self, on: bool) -> Self {
        self.tickets = on;
        self
    }

    /// The settings.
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        if self.default.is_none() && self.by_name.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        if self.default.is_none() {
            return Err(TlsError::NoDefaultCertificate);
        }
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match self.client_roots {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_required { verifier } else { verifier.allow_unauthenticated() };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Pem(e.to_string()))?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(SniResolver { default: self.default, by_name: self.by_name }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = if self.session_cache == 0 {
            Arc::new(rustls::server::NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(self.session_cache)
        };
        if self.tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        }
        Ok(TlsConfig { inner: Arc::new(config) })
    }
}
