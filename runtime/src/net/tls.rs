//! Turning KrakenD's client `tls` object into a rustls client configuration.
//!
//! redplug dials TLS itself instead of going through redis-rs' TLS support, because redis-rs
//! offers no way to set protocol versions or to drop the system trust store.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use tokio_rustls::TlsConnector;

use crate::config::{TlsConfig, TlsVersion};

/// Why a `tls` object could not be turned into a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file did not hold what its key promised.
    #[error("`{path}` ({key}) holds no usable {what}: {reason}")]
    Pem {
        /// The key that named the file (`tls.ca_certs[0]`).
        key: String,
        /// The file.
        path: String,
        /// `certificate` or `private key`.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the combination of settings.
    #[error("the tls settings were refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider redplug uses for every TLS connection it makes.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider when nothing else has been installed, so
/// TLS inside redis-rs (cluster connections) works without the host doing anything.
pub(crate) fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing the race to another installer is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The TLS connector for a pool or cluster with `tls` settings, or `None` for plain TCP.
pub(crate) fn connector(tls: Option<&TlsConfig>) -> Result<Option<TlsConnector>, TlsSetupError> {
    tls.map(|settings| client_config(settings).map(TlsConnector::from))
        .transpose()
}

/// Builds the rustls configuration for one pool or cluster.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(version, _)| (tls.min_version..=tls.max_version).contains(version))
    .map(|(_, supported)| supported)
    .collect();

    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let builder = if tls.allow_insecure_connections {
        let verifier = AcceptAnyServer {
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        builder.with_root_certificates(root_store(tls)?)
    };

    let config = match tls.client_certs.first() {
        Some(client) => {
            let key_name = "tls.client_certs[0].certificate";
            let chain = certificates(&client.certificate.contents).map_err(|reason| {
                pem_error(key_name, &client.certificate.path, "certificate", reason)
            })?;
            let key = PrivateKeyDer::from_pem_slice(&client.private_key.contents).map_err(|e| {
                pem_error(
                    "tls.client_certs[0].private_key",
                    &client.private_key.path,
                    "private key",
                    e.to_string(),
                )
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The server name to verify for `host`: an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("`{host}` is neither an IP address nor a valid DNS name for TLS"))
}

fn root_store(tls: &TlsConfig) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    if !tls.disable_system_ca_pool {
        // Unreadable system certificates are skipped, as Go's x509.SystemCertPool does.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    for (index, ca) in tls.ca_certs.iter().enumerate() {
        let key = format!("tls.ca_certs[{index}]");
        let certs = certificates(&ca.contents)
            .map_err(|reason| pem_error(&key, &ca.path, "certificate", reason))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| pem_error(&key, &ca.path, "certificate", e.to_string()))?;
        }
    }
    Ok(roots)
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no `BEGIN CERTIFICATE` block found".to_owned());
    }
    Ok(certs)
}

fn pem_error(
    key: &str,
    path: &std::path::Path,
    what: &'static str,
    reason: String,
) -> TlsSetupError {
    TlsSetupError::Pem {
        key: key.to_owned(),
        path: path.display().to_string(),
        what,
        reason,
    }
}

/// `allow_insecure_connections`: accepts any certificate for any name, but still checks that
/// the handshake is signed by the key in the certificate presented.
struct AcceptAnyServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for AcceptAnyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcceptAnyServer")
    }
}

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
