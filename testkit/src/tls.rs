//! Certificates for TLS tests, generated per server with `rcgen` (feature `tls`, on by
//! default).

use std::fs;
use std::path::{Path, PathBuf};

#[cfg(feature = "tls")]
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Whether the server asks TLS clients for a certificate (`tls-auth-clients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate signed by the CA is refused (`yes`, Redis' default).
    #[default]
    Required,
    /// A client may present a certificate; if it does, it must be signed by the CA.
    Optional,
    /// The server does not ask for a certificate (`no`).
    Off,
}

impl ClientAuth {
    pub(crate) fn redis_value(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::Off => "no",
        }
    }
}

/// PEM files of a throw-away PKI, written into a server's temp dir.
///
/// The server certificate is valid for `127.0.0.1` and `localhost`. The `other_*` files come
/// from a second, unrelated CA, for "wrong CA" and "untrusted client certificate" tests.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca_cert: PathBuf,
    /// The server's certificate (SAN `127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate the server accepts.
    pub client_cert: PathBuf,
    /// The key of [`client_cert`](Self::client_cert).
    pub client_key: PathBuf,
    /// A CA unrelated to the server: verifying the server against it must fail.
    pub other_ca_cert: PathBuf,
    /// A client certificate signed by the unrelated CA: the server must refuse it.
    pub other_client_cert: PathBuf,
    /// The key of [`other_client_cert`](Self::other_client_cert).
    pub other_client_key: PathBuf,
}

impl TlsFiles {
    /// Generates a CA, a server certificate and client certificates into `dir`.
    #[cfg(feature = "tls")]
    pub fn generate(dir: &Path) -> TlsFiles {
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            other_client_cert: dir.join("other-client.crt"),
            other_client_key: dir.join("other-client.key"),
        };

        let ca = Ca::new("redplug test CA");
        write(&files.ca_cert, &ca.cert_pem);
        let server = ca.leaf(
            "redplug test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write(&files.server_cert, &server.0);
        write(&files.server_key, &server.1);
        let client = ca.leaf(
            "redplug test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write(&files.client_cert, &client.0);
        write(&files.client_key, &client.1);

        let other = Ca::new("unrelated test CA");
        write(&files.other_ca_cert, &other.cert_pem);
        let stranger = other.leaf("stranger", &[], ExtendedKeyUsagePurpose::ClientAuth);
        write(&files.other_client_cert, &stranger.0);
        write(&files.other_client_key, &stranger.1);
        files
    }

    /// Certificates for `redis::Client::build_with_tls`: trusts the CA, and presents the client
    /// certificate when `with_client_cert` is set.
    pub fn redis_certificates(&self, with_client_cert: bool) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: with_client_cert.then(|| redis::ClientTlsConfig {
                client_cert: read(&self.client_cert),
                client_key: read(&self.client_key),
            }),
            root_cert: Some(read(&self.ca_cert)),
        }
    }
}

/// Reads a file the harness wrote, panicking with its path if that fails.
pub(crate) fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[cfg(feature = "tls")]
fn write(path: &Path, pem: &str) {
    fs::write(path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(feature = "tls")]
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

#[cfg(feature = "tls")]
impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA certificate");
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and key (both PEM) signed by this CA.
    fn leaf(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("valid subject alt names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}
