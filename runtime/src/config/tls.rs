//! `tls`: KrakenD's client TLS object. The certificate and key files it names are read and
//! checked here, when the config loads, so a wrong path stops startup with the key's JSON path
//! instead of failing the first connection.
//!
//! Whatever KrakenD's schema accepts loads, even where rustls cannot do what Go would: TLS
//! 1.0 and 1.1 become TLS 1.2, and cipher suites or curves rustls does not implement are left
//! out. Each such case is a [`ConfigWarning`](super::ConfigWarning) saying what is done
//! instead; only a setting that would make every connection fail is an error.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject, SectionKind};

use super::model::{ClientCert, PemFile, TlsConfig, TlsVersion};
use super::options::Field;
use super::reader::{IntRange, Keys, Node, Problems};
use super::text::shown;
use crate::net::tls::{implemented_cipher_suites, implemented_kx_groups};

const TLS_KEYS: Keys = Keys {
    known: &[
        "allow_insecure_connections",
        "ca_certs",
        "disable_system_ca_pool",
        "client_certs",
        "min_version",
        "max_version",
        "cipher_suites",
        "curve_preferences",
    ],
    misplaced: &[
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
    // Compared as written, so that "TLS11" to "TLS10" is a mistake even though both load as
    // TLS 1.2.
    if let (Field::Set(node, (lo, _)), Some((hi, _))) =
        (&min, max.checked((Written::Tls13, "TLS13")))
        && *lo > hi
    {
        p.add(node.invalid(format!(
            "is newer than max_version ({}); no TLS version would be left to use, so lower \
             min_version or raise max_version",
            hi.spelled()
        )));
    }
    tls.min_version = usable_version(&min, Bound::Min, p).unwrap_or(tls.min_version);
    tls.max_version = usable_version(&max, Bound::Max, p).unwrap_or(tls.max_version);
    if let Some(node) = obj.get("cipher_suites") {
        read_cipher_suites(&node, p, &mut tls);
    }
    if let Some(node) = obj.get("curve_preferences") {
        tls.curve_preferences = read_curves(&node, p);
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

/// A TLS version as the config writes it. rustls speaks only TLS 1.2 and 1.3; the older ones
/// load as TLS 1.2, with a warning.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Written {
    Ssl30,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Written {
    /// The version redplug uses for it, `None` for one rustls cannot speak.
    fn usable(self) -> Option<TlsVersion> {
        match self {
            Written::Tls12 => Some(TlsVersion::Tls12),
            Written::Tls13 => Some(TlsVersion::Tls13),
            Written::Ssl30 | Written::Tls10 | Written::Tls11 => None,
        }
    }

    /// KrakenD's spelling, quoted, for messages.
    fn spelled(self) -> &'static str {
        match self {
            Written::Ssl30 => "\"SSL3.0\"",
            Written::Tls10 => "\"TLS10\"",
            Written::Tls11 => "\"TLS11\"",
            Written::Tls12 => "\"TLS12\"",
            Written::Tls13 => "\"TLS13\"",
        }
    }

    /// The protocol's own name, for messages.
    fn protocol(self) -> &'static str {
        match self {
            Written::Ssl30 => "SSL 3.0",
            Written::Tls10 => "TLS 1.0",
            Written::Tls11 => "TLS 1.1",
            Written::Tls12 => "TLS 1.2",
            Written::Tls13 => "TLS 1.3",
        }
    }
}

/// Reads a version with every spelling KrakenD's docs and schema use, keeping the text as
/// written for messages.
fn read_version<'a>(node: &Node<'a>, p: &mut Problems) -> Option<(Written, &'a str)> {
    let text = node.string(p)?;
    let version = match text {
        "SSL3.0" | "SSL30" => Written::Ssl30,
        "TLS10" | "TLS1.0" => Written::Tls10,
        "TLS11" | "TLS1.1" => Written::Tls11,
        "TLS12" | "TLS1.2" => Written::Tls12,
        "TLS13" | "TLS1.3" => Written::Tls13,
        _ => {
            p.add(node.invalid(
                "is not a TLS version; use \"TLS12\" or \"TLS13\" (\"TLS10\", \"TLS11\" and \
                 \"SSL3.0\" load too, as TLS 1.2)",
            ));
            return None;
        }
    };
    Some((version, text))
}

/// Which end of the version range a key sets.
#[derive(Clone, Copy)]
enum Bound {
    Min,
    Max,
}

/// The version to use for `min_version` or `max_version`: TLS 1.2 for an older one, with a
/// warning that says so; `None` when the key is absent or invalid.
fn usable_version(
    field: &Field<'_, (Written, &str)>,
    bound: Bound,
    p: &mut Problems,
) -> Option<TlsVersion> {
    let Field::Set(node, (version, text)) = field else {
        return None;
    };
    if let Some(usable) = version.usable() {
        return Some(usable);
    }
    let asked = version.protocol();
    let written = super::reader::quoted(text);
    let (end, consequence) = match bound {
        Bound::Min => (
            "lowest",
            format!(
                "TLS 1.2 is the minimum used instead, so a server that speaks nothing newer \
                 than {asked} cannot be reached"
            ),
        ),
        Bound::Max => (
            "highest",
            "TLS 1.2 is the maximum used instead, so the server must speak TLS 1.2".to_owned(),
        ),
    };
    p.warn(node.warning(format!(
        "{written} asks for {asked} as the {end} version, which rustls (the TLS library \
         redplug uses) cannot speak: it speaks only TLS 1.2 and 1.3; {consequence}"
    )));
    Some(TlsVersion::Tls12)
}

/// A cipher suite or curve number: Go's `uint16`.
const TLS_ID: IntRange = IntRange {
    min: 0,
    max: u16::MAX as i64,
    below: "is negative; TLS identifiers are numbers from 0 to 65535",
    above: ", the largest TLS identifier (Go's uint16)",
};

/// `cipher_suites`: narrows the TLS 1.2 suites to those listed, as Go does. TLS 1.3 suites
/// cannot be chosen in Go either, so all of them stay offered.
fn read_cipher_suites(node: &Node<'_>, p: &mut Problems, tls: &mut TlsConfig) {
    let Some(items) = node.array(p) else {
        return;
    };
    // An empty list means the defaults, as in KrakenD's other TLS objects.
    if items.is_empty() {
        return;
    }
    let implemented = implemented_cipher_suites();
    let mut tls12 = Vec::new();
    let mut all_read = true;
    for item in &items {
        let Some(id) = read_id(item, p, &CIPHER_SUITES) else {
            all_read = false;
            continue;
        };
        let described = CIPHER_SUITES.describe(id);
        match implemented.iter().find(|(number, _)| *number == id) {
            Some((_, TlsVersion::Tls12)) => {
                if !tls12.contains(&id) {
                    tls12.push(id);
                }
            }
            Some((_, TlsVersion::Tls13)) => p.warn(item.warning(format!(
                "{described} is a TLS 1.3 suite: as in Go, this list narrows only the TLS 1.2 \
                 suites, and every TLS 1.3 suite stays offered, so this entry changes nothing"
            ))),
            None => p.warn(item.warning(format!(
                "{described} is not implemented by rustls (the TLS library redplug uses), so \
                 it is not offered"
            ))),
        }
    }
    // A list with a mistake in it says nothing reliable about what is left.
    if !all_read {
        return;
    }
    if tls12.is_empty() && tls.min_version == TlsVersion::Tls12 {
        if tls.max_version == TlsVersion::Tls12 {
            p.add(node.problem(format!(
                "leaves no TLS 1.2 cipher suite that rustls implements, and max_version rules \
                 out TLS 1.3, so no connection could be made; add a TLS 1.2 suite from {}, or \
                 raise max_version to \"TLS13\"",
                suite_list(&implemented, TlsVersion::Tls12)
            )));
            return;
        }
        p.warn(node.warning(format!(
            "leaves no TLS 1.2 cipher suite that rustls implements, so TLS 1.2 cannot be \
             negotiated and only TLS 1.3 is offered; to allow TLS 1.2, add a suite from {}",
            suite_list(&implemented, TlsVersion::Tls12)
        )));
        tls.min_version = TlsVersion::Tls13;
    }
    tls.cipher_suites = Some(tls12);
}

/// `curve_preferences`: the key exchange groups to offer, in the order given. `None` leaves
/// rustls' defaults.
fn read_curves(node: &Node<'_>, p: &mut Problems) -> Option<Vec<u16>> {
    let items = node.array(p)?;
    // An empty list means the defaults, as in KrakenD's other TLS objects.
    if items.is_empty() {
        return None;
    }
    let implemented = implemented_kx_groups();
    let mut chosen = Vec::new();
    let mut all_read = true;
    for item in &items {
        let Some(id) = read_id(item, p, &CURVES) else {
            all_read = false;
            continue;
        };
        if implemented.contains(&id) {
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        } else {
            p.warn(item.warning(format!(
                "{} is not implemented by rustls (the TLS library redplug uses), so it is left \
                 out of the key exchange",
                CURVES.describe(id)
            )));
        }
    }
    if chosen.is_empty() && all_read {
        let names: Vec<String> = implemented.iter().map(|&id| CURVES.describe(id)).collect();
        p.add(node.problem(format!(
            "leaves no curve that rustls implements, so no key exchange is possible; list at \
             least one of {}, or remove the key to offer all of them",
            names.join(", ")
        )));
    }
    (!chosen.is_empty()).then_some(chosen)
}

/// One entry of `cipher_suites` or `curve_preferences`: a number from 0 to 65535. A name
/// where the number belongs is answered with the number.
fn read_id(node: &Node<'_>, p: &mut Problems, names: &Names) -> Option<u16> {
    if node.is_string() {
        let text = node.string(p)?;
        if let Some(&(id, _)) = names.table.iter().find(|(_, name)| *name == text) {
            p.add(node.invalid(format!(
                "is the name of a {}; this list takes Go's numbers: write {id}",
                names.what
            )));
            return None;
        }
    }
    let id = node.integer(p, TLS_ID)?;
    u16::try_from(id).ok()
}

/// Go's names for the TLS numbers of one kind.
struct Names {
    /// "cipher suite" or "curve".
    what: &'static str,
    table: &'static [(u16, &'static str)],
}

impl Names {
    /// `49199 (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)`, or the number in hex as well when Go
    /// has no name for it.
    fn describe(&self, id: u16) -> String {
        match self.table.iter().find(|(number, _)| *number == id) {
            Some((_, name)) => format!("{id} ({name})"),
            None => format!("{id} ({id:#06x}, a {} Go has no name for)", self.what),
        }
    }
}

/// Go's `tls.TLS_*` cipher suite constants.
const CIPHER_SUITES: Names = Names {
    what: "cipher suite",
    table: &[
        (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
        (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
        (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
        (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
        (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
        (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
        (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
        (0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
        (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
        (0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
        (0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
        (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
        (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
        (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
        (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
        (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
        (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        (0x1301, "TLS_AES_128_GCM_SHA256"),
        (0x1302, "TLS_AES_256_GCM_SHA384"),
        (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
        (0x5600, "TLS_FALLBACK_SCSV"),
    ],
};

/// Go's `tls.CurveID` constants, by the curves' usual names (Go's `CurveP256` is `P-256`).
const CURVES: Names = Names {
    what: "curve",
    table: &[
        (23, "P-256"),
        (24, "P-384"),
        (25, "P-521"),
        (29, "X25519"),
        (4587, "SecP256r1MLKEM768"),
        (4588, "X25519MLKEM768"),
        (4589, "SecP384r1MLKEM1024"),
        (25497, "X25519Kyber768Draft00"),
    ],
};

/// "49195 (TLS_...), 49199 (TLS_...)": the suites of `version` rustls implements.
fn suite_list(implemented: &[(u16, TlsVersion)], version: TlsVersion) -> String {
    let listed: Vec<String> = implemented
        .iter()
        .filter(|(_, v)| *v == version)
        .map(|&(id, _)| CIPHER_SUITES.describe(id))
        .collect();
    listed.join(", ")
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
