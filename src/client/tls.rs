//! The client's TLS settings (wss://) and the typed classification of TLS failures.
//!
//! Owns: [`ClientTls`] (which CAs are trusted, an optional client certificate, one shared
//! `rustls::ClientConfig` so that sessions resume across connections) and [`TlsFailure`]. Never
//! touches: sockets (the session over a socket is `client::blocking::stream`'s).

use std::fmt;

/// Why a TLS handshake or session failed, in buckets a caller can match (inside [`Error::Tls`]).
///
/// [`Error::Tls`]: super::Error::Tls
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate was not issued by a trusted CA (a self-signed or private-CA
    /// certificate: trust its CA with [`ClientTls::with_ca_pem`]).
    UnknownIssuer,
    /// The server's certificate is not valid for the host name in the URL.
    WrongHostName,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotYetValid,
    /// The server's certificate was refused for another reason (revoked, bad signature, wrong usage).
    BadCertificate,
    /// The server refused our client certificate, or wanted one and got none (its alert).
    CertificateRefused,
    /// Anything else: malformed records, no common protocol version or cipher suite, an alert.
    Protocol,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => {
                "the server's certificate is not from a trusted CA (trust its CA: ClientTls::with_ca_pem, \
                 or wsloop client --ca)"
            }
            Self::WrongHostName => "the server's certificate is not valid for this host name",
            Self::Expired => "the server's certificate has expired",
            Self::NotYetValid => "the server's certificate is not valid yet (is the clock right?)",
            Self::BadCertificate => "the server's certificate was refused",
            Self::CertificateRefused => "the server refused our client certificate (or wanted one)",
            Self::Protocol => "the TLS handshake or session failed",
        })
    }
}

#[cfg(feature = "tls")]
pub use with_tls::ClientTls;

#[cfg(feature = "tls")]
pub(crate) use with_tls::classify;

#[cfg(feature = "tls")]
mod with_tls {
    use std::fmt;
    use std::path::Path;
    use std::sync::{Arc, OnceLock};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConfig, RootCertStore};

    use super::TlsFailure;
    use crate::server::TlsError;

    /// The client's TLS settings: the CAs it trusts and, optionally, its own certificate. Cheap to
    /// clone; connections made with clones of one `ClientTls` share its session cache, so the second
    /// connection to a server resumes the first one's session. Host names are always verified.
    #[derive(Clone)]
    pub struct ClientTls {
        inner: Arc<ClientConfig>,
    }

    impl fmt::Debug for ClientTls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ClientTls").field("alpn", &self.inner.alpn_protocols).finish_non_exhaustive()
        }
    }

    impl Default for ClientTls {
        /// The Mozilla root CAs (webpki-roots); one process-wide session cache.
        fn default() -> Self {
            static DEFAULT: OnceLock<ClientTls> = OnceLock::new();
            DEFAULT
                .get_or_init(|| {
                    let mut roots = RootCertStore::empty();
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    Self::build(roots, None).expect("the default TLS client settings are valid")
                })
                .clone()
        }
    }

    impl ClientTls {
        /// Trusts only the CA certificates in `ca_pem` (e.g. a private CA's).
        pub fn with_ca_pem(ca_pem: &[u8]) -> Result<Self, TlsError> {
            Self::build(roots_from_pem(ca_pem)?, None)
        }

        /// Trusts only the CA certificates in the PEM file at `path`.
        pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
            Self::with_ca_pem(&crate::server::tls_read_file(path.as_ref())?)
        }

        /// Trusts the CAs in `ca_pem` and presents the client certificate chain `chain_pem` with its
        /// key `key_pem` to servers that ask for one.
        pub fn with_client_certificate(ca_pem: &[u8], chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
            let chain = crate::server::tls_certificates_from_pem(chain_pem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoPrivateKey)?;
            Self::build(roots_from_pem(ca_pem)?, Some((chain, key)))
        }

        /// The same trust, with session resumption off: every connection makes a full handshake (to
        /// measure one, or for servers that mishandle resumption).
        #[must_use]
        pub fn without_resumption(&self) -> Self {
            let mut config = (*self.inner).clone();
            config.resumption = rustls::client::Resumption::disabled();
            Self { inner: Arc::new(config) }
        }

        /// Settings made with rustls directly.
        pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
            Self { inner: config }
        }

        /// The rustls settings.
        pub fn rustls(&self) -> &Arc<ClientConfig> {
            &self.inner
        }

        fn build(
            roots: RootCertStore,
            identity: Option<(Vec<rustls::pki_types::CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        ) -> Result<Self, TlsError> {
            let builder = ClientConfig::builder_with_provider(crate::server::tls_provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
            let mut config = match identity {
                Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Self { inner: Arc::new(config) })
        }
    }

    fn roots_from_pem(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in crate::server::tls_certificates_from_pem(ca_pem)? {
            roots.add(cert)?;
        }
        Ok(roots)
    }

    /// The bucket a rustls error falls in.
    pub(crate) fn classify(error: &rustls::Error) -> TlsFailure {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        match error {
            E::InvalidCertificate(C::UnknownIssuer) => TlsFailure::UnknownIssuer,
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => TlsFailure::WrongHostName,
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => TlsFailure::Expired,
            E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => TlsFailure::NotYetValid,
            E::InvalidCertificate(_) => TlsFailure::BadCertificate,
            E::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied,
            ) => TlsFailure::CertificateRefused,
            _ => TlsFailure::Protocol,
        }
    }
}
