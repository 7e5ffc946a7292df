//! Turning KrakenD's client `tls` object into a rustls client configuration.
//!
//! redplug dials TLS itself instead of going through redis-rs' TLS support, because redis-rs
//! offers no way to set protocol versions, cipher suites or curves, to drop the system trust
//! store, or to choose among several client certificates.

use std::fmt;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use tokio_rustls::TlsConnector;

use crate::config::{ClientCert, TlsConfig, TlsVersion};

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

/// The crypto provider redplug uses for every TLS connection it makes, with its defaults.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The cipher suites [`provider`] implements, as IANA numbers, each with its TLS version.
pub(crate) fn implemented_cipher_suites() -> Vec<(u16, TlsVersion)> {
    provider()
        .cipher_suites
        .iter()
        .map(|suite| {
            let version = if suite.tls13().is_some() {
                TlsVersion::Tls13
            } else {
                TlsVersion::Tls12
            };
            (u16::from(suite.suite()), version)
        })
        .collect()
}

/// The key exchange groups [`provider`] implements, as IANA numbers, in its order of
/// preference.
pub(crate) fn implemented_kx_groups() -> Vec<u16> {
    provider()
        .kx_groups
        .iter()
        .map(|group| u16::from(group.name()))
        .collect()
}

/// The provider for one `tls` object: `cipher_suites` narrows the TLS 1.2 suites (TLS 1.3
/// keeps all of them, as in Go) and `curve_preferences` orders the key exchange groups.
fn tailored_provider(tls: &TlsConfig) -> CryptoProvider {
    let mut provider = provider();
    if let Some(allowed) = &tls.cipher_suites {
        // Offered in the provider's order of preference, whatever the list's order: Go has
        // ignored the order of `CipherSuites` since 1.17.
        provider
            .cipher_suites
            .retain(|suite| suite.tls13().is_some() || allowed.contains(&u16::from(suite.suite())));
    }
    if let Some(order) = &tls.curve_preferences {
        let groups = std::mem::take(&mut provider.kx_groups);
        provider.kx_groups = order
            .iter()
            .filter_map(|&id| {
                groups
                    .iter()
                    .find(|group| u16::from(group.name()) == id)
                    .copied()
            })
            .collect();
    }
    provider
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
    let provider = Arc::new(tailored_provider(tls));
    // A version with no cipher suite left is not offered at all, rather than offered in vain.
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(version, _)| (tls.min_version..=tls.max_version).contains(version))
    .map(|(_, supported)| supported)
    .filter(|supported| {
        provider
            .cipher_suites
            .iter()
            .any(|suite| suite.version() == *supported)
    })
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

    let config = if tls.client_certs.is_empty() {
        builder.with_no_client_auth()
    } else {
        let identities = tls
            .client_certs
            .iter()
            .enumerate()
            .map(|(index, cert)| ClientIdentity::load(index, cert, &provider))
            .collect::<Result<Vec<_>, _>>()?;
        builder.with_client_cert_resolver(Arc::new(ClientCerts { identities }))
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

/// `client_certs`: every entry, chosen for each server request the way Go's crypto/tls
/// chooses among `Config.Certificates`: the first entry the server can accept, or none.
struct ClientCerts {
    identities: Vec<ClientIdentity>,
}

/// One `client_certs` entry, loaded once at setup.
struct ClientIdentity {
    key: Arc<CertifiedKey>,
    /// The DER `Name` (outer SEQUENCE included, as the TLS CertificateRequest carries it) of
    /// the issuer of each certificate in the chain that could be parsed.
    issuers: Vec<DistinguishedName>,
}

impl ClientIdentity {
    /// Loads entry `index`: its chain, and its key checked against the chain's first
    /// certificate.
    fn load(
        index: usize,
        cert: &ClientCert,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsSetupError> {
        let cert_key = format!("tls.client_certs[{index}].certificate");
        let key_key = format!("tls.client_certs[{index}].private_key");
        let chain = certificates(&cert.certificate.contents).map_err(|reason| {
            pem_error(&cert_key, &cert.certificate.path, "certificate", reason)
        })?;
        let key_error =
            |reason: String| pem_error(&key_key, &cert.private_key.path, "private key", reason);
        let key_der = PrivateKeyDer::from_pem_slice(&cert.private_key.contents)
            .map_err(|e| key_error(e.to_string()))?;
        let signing_key = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| key_error(e.to_string()))?;
        let issuers = chain.iter().filter_map(issuer_name).collect();
        let key = CertifiedKey::new(chain, signing_key);
        match key.keys_match() {
            // A key type whose public half rustls cannot compare is let through, as rustls'
            // own `with_client_auth_cert` does.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(key_error(format!(
                    "it does not belong to the first certificate in `{}`; give the key that \
                     was issued with that certificate",
                    cert.certificate.path.display()
                )));
            }
        }
        Ok(Self {
            key: Arc::new(key),
            issuers,
        })
    }

    /// Whether the server can accept this entry: its key signs with a scheme the server
    /// offers, and, when the server names the CAs it accepts, some certificate in the chain
    /// was issued by one of them (Go's `CertificateRequestInfo.SupportsCertificate`).
    fn fits(&self, root_hint_subjects: &[&[u8]], schemes: &[SignatureScheme]) -> bool {
        if self.key.key.choose_scheme(schemes).is_none() {
            return false;
        }
        root_hint_subjects.is_empty()
            || self
                .issuers
                .iter()
                .any(|issuer| root_hint_subjects.contains(&issuer.as_ref()))
    }
}

/// The issuer `Name` of `cert`, or `None` when webpki cannot parse the certificate (it takes
/// only X.509 v3): such a certificate is still sent, but never matches a server's CA list.
fn issuer_name(cert: &CertificateDer<'_>) -> Option<DistinguishedName> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(DistinguishedName::in_sequence(parsed.issuer()))
}

impl ResolvesClientCert for ClientCerts {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // No entry fits: send no certificate and let the server decide, as Go does.
        self.identities
            .iter()
            .find(|identity| identity.fits(root_hint_subjects, sigschemes))
            .map(|identity| identity.key.clone())
    }

    fn has_certs(&self) -> bool {
        !self.identities.is_empty()
    }
}

/// Only the count: the keys themselves never reach `Debug`.
impl fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCerts")
            .field("entries", &self.identities.len())
            .finish()
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

#[cfg(test)]
mod tests {
    //! `client_certs` against an in-process rustls server, which (unlike Redis) names the CAs
    //! it accepts in its certificate request.

    use std::path::Path;

    use redplug_testkit::TlsFiles;
    use rustls::server::WebPkiClientVerifier;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::config::PemFile;

    fn pem(path: &Path) -> PemFile {
        PemFile {
            path: path.to_path_buf(),
            contents: std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    /// The certificate the server trusts (from the CA that signed the server's certificate).
    fn trusted(files: &TlsFiles) -> ClientCert {
        ClientCert {
            certificate: pem(&files.client_cert),
            private_key: pem(&files.client_key),
        }
    }

    /// A certificate from an unrelated CA.
    fn stranger(files: &TlsFiles) -> ClientCert {
        ClientCert {
            certificate: pem(&files.other_client_cert),
            private_key: pem(&files.other_client_key),
        }
    }

    fn tls_with(files: &TlsFiles, client_certs: Vec<ClientCert>) -> TlsConfig {
        TlsConfig {
            ca_certs: vec![pem(&files.ca_cert)],
            disable_system_ca_pool: true,
            client_certs,
            ..TlsConfig::default()
        }
    }

    fn first_cert(path: &Path) -> CertificateDer<'static> {
        certificates(&pem(path).contents).unwrap().remove(0)
    }

    /// What the server makes of one connection: the client certificate it accepted, or why
    /// it refused the handshake.
    struct Outcome {
        server: Result<Option<CertificateDer<'static>>, String>,
        client: Result<(), String>,
    }

    /// One handshake against a server that requires a client certificate from the CA in
    /// `files.ca_cert`, naming that CA in its request unless `hints` is false.
    async fn handshake(files: &TlsFiles, client: &TlsConfig, hints: bool) -> Outcome {
        let provider = Arc::new(provider());
        let mut roots = RootCertStore::empty();
        roots.add(first_cert(&files.ca_cert)).unwrap();
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone());
        if !hints {
            verifier = verifier.clear_root_hint_subjects();
        }
        let server_key = PrivateKeyDer::from_pem_slice(&pem(&files.server_key).contents).unwrap();
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier.build().unwrap())
            .with_single_cert(vec![first_cert(&files.server_cert)], server_key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let seen = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.clone().into_owned());
            stream
                .write_all(b"+OK\r\n")
                .await
                .map_err(|e| e.to_string())?;
            stream.shutdown().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(seen)
        });

        let connector = connector(Some(client)).unwrap().unwrap();
        let tcp = TcpStream::connect(address).await.unwrap();
        let name = server_name("localhost").unwrap();
        let client = async {
            // With TLS 1.3 the client finishes its side before the server has judged the
            // certificate, so a refusal shows on the first read.
            let mut stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let mut reply = [0u8; 5];
            stream
                .read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        Outcome {
            server: server.await.unwrap(),
            client,
        }
    }

    #[tokio::test]
    async fn the_certificate_from_a_ca_the_server_names_is_sent_whatever_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path());
        let client = tls_with(&files, vec![stranger(&files), trusted(&files)]);
        let outcome = handshake(&files, &client, true).await;
        assert_eq!(outcome.client, Ok(()));
        assert_eq!(
            outcome.server,
            Ok(Some(first_cert(&files.client_cert))),
            "the server saw the second entry, the one its CA issued"
        );
    }

    #[tokio::test]
    async fn no_certificate_is_sent_when_none_comes_from_a_ca_the_server_names() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path());
        let client = tls_with(&files, vec![stranger(&files)]);
        let outcome = handshake(&files, &client, true).await;
        let refusal = outcome.server.unwrap_err();
        println!("server: {refusal}; client: {:?}", outcome.client);
        assert!(refusal.contains("no certificates"), "{refusal}");
        assert!(outcome.client.is_err());
    }

    #[tokio::test]
    async fn the_first_entry_is_sent_to_a_server_that_names_no_ca() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path());
        let both = tls_with(&files, vec![trusted(&files), stranger(&files)]);
        let outcome = handshake(&files, &both, false).await;
        assert_eq!(outcome.server, Ok(Some(first_cert(&files.client_cert))));
        // As in Go: with nothing to go on, the first entry is sent, even one the server will
        // refuse.
        let reversed = tls_with(&files, vec![stranger(&files), trusted(&files)]);
        let outcome = handshake(&files, &reversed, false).await;
        assert!(outcome.server.is_err(), "{:?}", outcome.server);
        assert!(outcome.client.is_err());
    }

    fn resolver(certs: &[ClientCert]) -> ClientCerts {
        let provider = provider();
        let identities = certs
            .iter()
            .enumerate()
            .map(|(index, cert)| ClientIdentity::load(index, cert, &provider).unwrap())
            .collect();
        ClientCerts { identities }
    }

    #[test]
    fn an_entry_whose_key_cannot_sign_with_an_offered_scheme_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path());
        let certs = resolver(&[trusted(&files)]);
        assert!(certs.has_certs());
        // The test keys are ECDSA P-256.
        let ecdsa = [SignatureScheme::ECDSA_NISTP256_SHA256];
        let rsa_only = [SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ED25519];
        assert!(certs.resolve(&[], &ecdsa).is_some());
        assert!(certs.resolve(&[], &rsa_only).is_none());
        let unrelated = DistinguishedName::in_sequence(b"\x31\x00");
        assert!(certs.resolve(&[unrelated.as_ref()], &ecdsa).is_none());
        assert_eq!(format!("{certs:?}"), "ClientCerts { entries: 1 }");
    }

    #[test]
    fn each_entry_names_its_own_index_when_it_cannot_be_used() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(dir.path());
        let mismatched = ClientCert {
            certificate: pem(&files.client_cert),
            private_key: pem(&files.other_client_key),
        };
        let mut tls = tls_with(&files, vec![trusted(&files), mismatched]);
        let error = client_config(&tls).unwrap_err().to_string();
        assert!(
            error.contains("(tls.client_certs[1].private_key)"),
            "{error}"
        );
        assert!(
            error.contains("does not belong to the first certificate in"),
            "{error}"
        );

        let mut not_a_key = trusted(&files);
        not_a_key.private_key.contents =
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec();
        tls.client_certs = vec![trusted(&files), trusted(&files), not_a_key];
        let error = client_config(&tls).unwrap_err().to_string();
        assert!(
            error.contains("(tls.client_certs[2].private_key)"),
            "{error}"
        );
        let mut damaged = trusted(&files);
        damaged.certificate.contents = b"no pem here".to_vec();
        tls.client_certs = vec![trusted(&files), damaged];
        let error = client_config(&tls).unwrap_err().to_string();
        assert!(
            error.contains("(tls.client_certs[1].certificate)"),
            "{error}"
        );
    }
}
