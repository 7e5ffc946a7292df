//! `tls`: KrakenD's client TLS object. The certificate and key files it names are read and
//! checked here, when the config loads, so a wrong path stops startup with the key's JSON path
//! instead of failing the first connection.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject, SectionKind};

use super::model::{ClientCert, PemFile, TlsConfig, TlsVersion};
use super::options::Field;
use super::reader::{Keys, Node, Problems};
use super::text::shown;

const TLS_KEYS: Keys = Keys {
    known: &[
        "allow_insecure_connections",
        "ca_certs",
        "disable_system_ca_pool",
        "client_certs",
        "min_version",
        "max_version",
    ],
    misplaced: &[
        (
            "cipher_suites",
            "is not supported for Redis connections: the client (rustls) offers only modern \
             cipher suites and picks one itself; remove the key",
        ),
        (
            "curve_preferences",
            "is not supported for Redis connections: the client (rustls) picks the key \
             exchange itself; remove the key",
        ),
        (
            "private_key",
            "belongs inside `client_certs`, as [{\"certificate\": \"client.pem\", \
             \"private_key\": \"client.key\"}]",
        ),
        (
            "public_key",
            "is a server-side setting; a client certificate goes in `client_certs`, as \
             [{\"certificate\": \"client.pem\", \"private_key\": \"client.key\"}]",
        ),
    ],
    open: false,
    comments: true,
};

const CLIENT_CERT_KEYS: Keys = Keys {
    known: &["certificate", "private_key"],
    misplaced: &[],
    open: false,
    comments: false,
};

/// What a PEM file named in the config must contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Certificate,
    PrivateKey,
}

/// Reads the `tls` object of a pool or cluster; `None` after reporting a problem with the
/// object itself.
pub(super) fn read_tls(node: &Node<'_>, p: &mut Problems, base: &Path) -> Option<TlsConfig> {
    let obj = node.object(p, &TLS_KEYS)?;
    let mut tls = TlsConfig::default();
    let insecure = Field::read(&obj, "allow_insecure_connections", p, |n, p| n.boolean(p));
    tls.allow_insecure_connections = insecure.or(false);
    let no_system = Field::read(&obj, "disable_system_ca_pool", p, |n, p| n.boolean(p));
    tls.disable_system_ca_pool = no_system.or(false);

    // `Some(count)` when the list was readable, whatever became of each file in it.
    let mut ca_count = Some(0);
    if let Some(list) = obj.get("ca_certs") {
        let items = list.array(p);
        ca_count = items.as_ref().map(Vec::len);
        for item in items.unwrap_or_default() {
            if let Some(file) = read_pem(&item, p, base, Expect::Certificate) {
                tls.ca_certs.push(file);
            }
        }
    }
    if let Some(list) = obj.get("client_certs") {
        for item in list.array(p).unwrap_or_default() {
            if let Some(cert) = read_client_cert(&item, p, base) {
                tls.client_certs.push(cert);
            }
        }
    }

    let min = Field::read(&obj, "min_version", p, read_version);
    let max = Field::read(&obj, "max_version", p, read_version);
    tls.min_version = min.or(tls.min_version);
    tls.max_version = max.or(tls.max_version);
    if let (Field::Set(node, lo), Some(hi)) = (&min, max.checked(TlsVersion::Tls13))
        && *lo > hi
    {
        p.add(node.invalid(format!(
            "is newer than max_version ({}); no TLS version would be left to use, so lower \
             min_version or raise max_version",
            version_name(hi)
        )));
    }

    if let Field::Set(node, true) = &no_system
        && ca_count == Some(0)
        && insecure.checked(false) == Some(false)
    {
        p.add(node.invalid(
            "leaves nothing to trust: with the system's CAs off and no `ca_certs`, no server \
             certificate can be verified; list the CA that signed the server's certificate in \
             `ca_certs`, or remove this key",
        ));
    }
    Some(tls)
}

fn read_client_cert(node: &Node<'_>, p: &mut Problems, base: &Path) -> Option<ClientCert> {
    let obj = node.object(p, &CLIENT_CERT_KEYS)?;
    let how = "each client certificate is {\"certificate\": \"client.pem\", \"private_key\": \
               \"client.key\"}";
    let certificate = obj
        .required("certificate", p, how)
        .and_then(|n| read_pem(&n, p, base, Expect::Certificate));
    let private_key = obj
        .required("private_key", p, how)
        .and_then(|n| read_pem(&n, p, base, Expect::PrivateKey));
    Some(ClientCert {
        certificate: certificate?,
        private_key: private_key?,
    })
}

/// `"TLS12"` or `"TLS13"`; the older versions KrakenD knows are refused by name.
fn read_version(node: &Node<'_>, p: &mut Problems) -> Option<TlsVersion> {
    let text = node.string(p)?;
    match text {
        "TLS12" | "TLS1.2" => Some(TlsVersion::Tls12),
        "TLS13" | "TLS1.3" => Some(TlsVersion::Tls13),
        "TLS10" | "TLS11" | "TLS1.0" | "TLS1.1" | "SSL3.0" | "SSL30" => {
            p.add(node.invalid(
                "is not supported: the Redis client (rustls) speaks only TLS 1.2 and 1.3; use \
                 \"TLS12\" or \"TLS13\"",
            ));
            None
        }
        _ => {
            p.add(node.invalid("is not a TLS version; use \"TLS12\" or \"TLS13\""));
            None
        }
    }
}

fn version_name(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "\"TLS12\"",
        TlsVersion::Tls13 => "\"TLS13\"",
    }
}

/// The largest certificate or key file read: a chain of a dozen certificates is a few KiB.
pub(super) const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The file's bytes, or `None` when it holds more than [`MAX_PEM_BYTES`] (a device such as
/// `/dev/zero` included).
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut contents = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut contents)?;
    Ok((contents.len() as u64 <= MAX_PEM_BYTES).then_some(contents))
}

/// Reads the PEM file named by `node` and checks it holds what `expect` asks for. Relative
/// paths start at `base`.
fn read_pem(node: &Node<'_>, p: &mut Problems, base: &Path, expect: Expect) -> Option<PemFile> {
    let written = node.string(p)?;
    if written.trim().is_empty() {
        p.add(node.invalid("is empty; write the path of a PEM file, such as \"certs/ca.pem\""));
        return None;
    }
    let resolved = base.join(written);
    let looked_for = if resolved.as_path() == Path::new(written) {
        String::new()
    } else {
        format!(" (looked for `{}`)", shown(&resolved.display().to_string()))
    };
    let contents = match read_bounded(&resolved) {
        Ok(Some(contents)) => contents,
        Ok(None) => {
            p.add(node.invalid(format!(
                "names a file{looked_for} larger than {} KiB, which no certificate or key is; \
                 check the path",
                MAX_PEM_BYTES / 1024
            )));
            return None;
        }
        Err(e) => {
            p.add(node.invalid(format!(
                "cannot be read{looked_for}: {e}; check the path and the file's permissions"
            )));
            return None;
        }
    };
    if let Err(message) = check_pem(&contents, expect) {
        p.add(node.invalid(format!("names a file{looked_for} that {message}")));
        return None;
    }
    Some(PemFile {
        path: PathBuf::from(written),
        contents,
    })
}

/// Checks the file has at least one block of the kind expected. The error continues "names a
/// file that ...". Nothing from inside the file is quoted: it may be a private key.
fn check_pem(contents: &[u8], expect: Expect) -> Result<(), String> {
    let mut kinds = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(contents) {
        match section {
            Ok((kind, _)) => kinds.push(kind),
            Err(e) => return Err(format!("is not valid PEM: {}", pem_problem(&e))),
        }
    }
    let is_key = |k: &SectionKind| {
        matches!(
            k,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
        )
    };
    let has_cert = kinds.contains(&SectionKind::Certificate);
    let has_key = kinds.iter().any(is_key);
    match expect {
        Expect::Certificate if !has_cert && has_key => Err(
            "holds a private key, not a certificate; are `certificate` and `private_key` the \
             wrong way round?"
                .to_owned(),
        ),
        Expect::Certificate if !has_cert => Err(
            "has no \"-----BEGIN CERTIFICATE-----\" block; give a PEM certificate (a DER file \
             converts with `openssl x509 -inform der -in cert.der -out cert.pem`)"
                .to_owned(),
        ),
        Expect::PrivateKey if !has_key && has_cert => Err(
            "holds a certificate, not a private key; are `certificate` and `private_key` the \
             wrong way round?"
                .to_owned(),
        ),
        Expect::PrivateKey if !has_key => Err(
            "has no private key block; give an unencrypted PEM key (\"PRIVATE KEY\", \"RSA \
             PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                .to_owned(),
        ),
        _ => Ok(()),
    }
}

fn pem_problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a block has no \"-----END\" line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a \"-----BEGIN\" line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("a block's base64 is damaged ({e})"),
        other => other.to_string(),
    }
}
