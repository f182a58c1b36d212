//! TLS for requestor connections (issue 15): the server's material (certificate chain, key,
//! the CA requestor certificates must chain to) as a rustls [`ServerConfig`], which requestor
//! certificates are accepted (`tls_allowed_requestors`), and why a handshake failed (for the
//! counters). No socket here: the shell (`shard/conn.rs`) runs the handshake.
//!
//! Mutual authentication always (RFC 7653 §9.1, RFC 7724 §8.1): a requestor without a
//! certificate, or with one that does not chain to `tls_client_ca`, is expired, or is not in
//! `tls_allowed_requestors`, fails the handshake with an alert. TLS 1.3 and 1.2 with the ring
//! provider's suites only: every one is an AEAD suite with (EC)DHE (RFC 9325); rustls has no
//! renegotiation and no compression.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::Config;

/// One entry of `tls_allowed_requestors`: a requestor certificate is accepted when any entry
/// matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedRequestor {
    /// `dns:NAME`: a subjectAltName dNSName (ASCII case-insensitive).
    Dns(String),
    /// `uri:URI`: a subjectAltName uniformResourceIdentifier (exact).
    Uri(String),
    /// `cn:NAME`: the subject's commonName (exact).
    Cn(String),
    /// `spki-sha256:HEX`: the SHA-256 of the certificate's SubjectPublicKeyInfo (DER).
    SpkiSha256([u8; 32]),
}

impl FromStr for AllowedRequestor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?}: must be dns:NAME, uri:URI, cn:NAME or spki-sha256:HEX (64 hex digits)")
        };
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        if value.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "dns" => AllowedRequestor::Dns(value.to_ascii_lowercase()),
            "uri" => AllowedRequestor::Uri(value.into()),
            "cn" => AllowedRequestor::Cn(value.into()),
            "spki-sha256" => {
                let v = crate::config::hex_decode(value).ok_or_else(bad)?;
                AllowedRequestor::SpkiSha256(v.try_into().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        })
    }
}

impl fmt::Display for AllowedRequestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedRequestor::Dns(n) => write!(f, "dns:{n}"),
            AllowedRequestor::Uri(u) => write!(f, "uri:{u}"),
            AllowedRequestor::Cn(n) => write!(f, "cn:{n}"),
            AllowedRequestor::SpkiSha256(h) => {
                f.write_str("spki-sha256:")?;
                h.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl serde::Serialize for AllowedRequestor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AllowedRequestor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// True when the certificate (DER) matches an entry of `allowed`. A certificate that does not
/// parse matches nothing.
pub fn allowed_by(cert: &[u8], allowed: &[AllowedRequestor]) -> bool {
    let Ok((_, x)) = x509_parser::parse_x509_certificate(cert) else {
        return false;
    };
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    dns.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::URI(u) => uris.push(*u),
                _ => {}
            }
        }
    }
    let cns: Vec<&str> = x
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let spki = ring::digest::digest(&ring::digest::SHA256, x.tbs_certificate.subject_pki.raw);
    allowed.iter().any(|a| match a {
        AllowedRequestor::Dns(n) => dns.iter().any(|d| d == n),
        AllowedRequestor::Uri(u) => uris.iter().any(|x| x == u),
        AllowedRequestor::Cn(n) => cns.iter().any(|c| c == n),
        AllowedRequestor::SpkiSha256(h) => spki.as_ref() == h,
    })
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, in the `spki-sha256:` form's hex.
pub fn spki_sha256_hex(cert: &[u8]) -> Option<String> {
    let (_, x) = x509_parser::parse_x509_certificate(cert).ok()?;
    let h = ring::digest::digest(&ring::digest::SHA256, x.tbs_certificate.subject_pki.raw);
    Some(h.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The requestor verifier: webpki chain validation to `tls_client_ca`, then
/// `tls_allowed_requestors` (a certificate not in it fails with
/// `ApplicationVerificationFailure`, counted as not allowed).
#[derive(Debug)]
struct RequestorVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<AllowedRequestor>,
}

impl ClientCertVerifier for RequestorVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.is_empty() || allowed_by(end_entity, &self.allowed) {
            Ok(ok)
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The crypto provider: rustls' ring provider (no aws-lc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated in rustls 0.23.48 only for lacking post-quantum key exchange, which needs
    // aws-lc; issue 15 asks for ring.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificates of `path` (config key `key`); at least one.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = |e: &dyn fmt::Display| format!("{key} {}: {e}", path.display());
    let data = std::fs::read(path).map_err(|e| named(&e))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(&e))?;
    if certs.is_empty() {
        return Err(named(&"no PEM CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Reads the PEM private key of `path` (config key `key`).
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let named = |e: &dyn fmt::Display| format!("{key} {}: {e}", path.display());
    let data = std::fs::read(path).map_err(|e| named(&e))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| named(&e))
}

/// A root store of the PEM CAs of `path` (config key `key`).
pub fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(key, path)? {
        roots
            .add(c)
            .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The server's TLS material, loaded from the configuration's files.
#[derive(Debug, Clone)]
pub struct Material {
    pub server: Arc<ServerConfig>,
}

impl Material {
    /// Loads `tls_cert`, `tls_key` (it must match the certificate) and `tls_client_ca`; every
    /// error names the key and the file.
    pub fn load(c: &Config) -> Result<Material, String> {
        let need = |key: &str, v: &Option<std::path::PathBuf>| {
            v.clone()
                .ok_or_else(|| format!("{key} is not set (tls = {})", c.tls))
        };
        let (cert_path, key_path, ca_path) = (
            need("tls_cert", &c.tls_cert)?,
            need("tls_key", &c.tls_key)?,
            need("tls_client_ca", &c.tls_client_ca)?,
        );
        let certs = load_certs("tls_cert", &cert_path)?;
        let key = load_key("tls_key", &key_path)?;
        let roots = load_roots("tls_client_ca", &ca_path)?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("tls_client_ca {}: {e}", ca_path.display()))?;
        let verifier = Arc::new(RequestorVerifier {
            inner,
            allowed: c.tls_allowed_requestors.clone(),
        });
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("tls: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "tls_key {} does not go with tls_cert {}: {e}",
                    key_path.display(),
                    cert_path.display()
                )
            })?;
        // No session resumption: every session is a full, mutually authenticated handshake.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Material {
            server: Arc::new(server),
        })
    }
}

/// Why a TLS handshake failed (a counter each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The requestor sent no certificate.
    NoCertificate,
    /// Its certificate does not chain to `tls_client_ca`.
    UnknownCa,
    /// Its certificate chains but is not acceptable otherwise (expired, not yet valid, wrong
    /// key usage, bad signature...).
    BadCertificate,
    /// Its certificate is not in `tls_allowed_requestors`.
    NotAllowed,
    /// Not done within `tls_handshake_timeout`.
    Timeout,
    /// Anything else: not TLS, no common version or suite, the peer closed or sent an alert.
    Protocol,
}

impl Failure {
    /// The reason of a failed handshake's I/O error (futures-rustls carries the rustls error
    /// inside it).
    pub fn of(e: &std::io::Error) -> Failure {
        match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            Some(e) => Failure::of_rustls(e),
            None => Failure::Protocol,
        }
    }

    /// The reason of a rustls error.
    pub fn of_rustls(e: &Error) -> Failure {
        match e {
            Error::NoCertificatesPresented => Failure::NoCertificate,
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => Failure::UnknownCa,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
                Failure::NotAllowed
            }
            Error::InvalidCertificate(_) => Failure::BadCertificate,
            _ => Failure::Protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_requestor_entries_parse_and_print_back() {
        for s in [
            "dns:lq1.example.net",
            "uri:spiffe://example.net/lq",
            "cn:requestor 1",
            "spki-sha256:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ] {
            let a: AllowedRequestor = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert_eq!(
            "dns:LQ.Example".parse::<AllowedRequestor>().unwrap(),
            AllowedRequestor::Dns("lq.example".into())
        );
        for bad in [
            "",
            "dns:",
            "ip:127.0.0.1",
            "lq.example",
            "spki-sha256:00",
            "spki-sha256:zz",
        ] {
            let e = bad.parse::<AllowedRequestor>().unwrap_err();
            assert!(e.contains("dns:NAME"), "{e}");
        }
    }

    #[test]
    fn a_certificate_matches_by_san_cn_or_key_and_garbage_matches_nothing() {
        let mut p = rcgen::CertificateParams::new(vec!["lq1.example.net".into()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.net/lq".try_into().unwrap(),
        ));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "requestor one");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        let spki = spki_sha256_hex(&der).unwrap();
        // The hash is of the DER SubjectPublicKeyInfo (what `openssl pkey -pubin -outform der
        // | sha256sum` hashes): rcgen gives that DER for the key.
        let expect = ring::digest::digest(&ring::digest::SHA256, &key.public_key_der());
        let expect: String = expect.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(spki, expect);
        let yes = |s: &str| allowed_by(&der, &[s.parse().unwrap()]);
        assert!(yes("dns:LQ1.example.net"));
        assert!(yes("uri:spiffe://example.net/lq"));
        assert!(yes("cn:requestor one"));
        assert!(yes(&format!("spki-sha256:{spki}")));
        assert!(!yes("dns:lq2.example.net"));
        assert!(!yes("cn:requestor"));
        assert!(!yes("uri:spiffe://example.net/other"));
        let other = rcgen::KeyPair::generate().unwrap();
        let other_cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&other)
            .unwrap();
        assert!(!yes(&format!(
            "spki-sha256:{}",
            spki_sha256_hex(other_cert.der()).unwrap()
        )));
        assert!(!allowed_by(b"garbage", &["cn:x".parse().unwrap()]));
        assert!(!allowed_by(
            &der[..der.len() / 2],
            &["cn:requestor one".parse().unwrap()]
        ));
    }

    #[test]
    fn failures_are_classified_by_the_rustls_error() {
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            Failure::of(&io(Error::NoCertificatesPresented)),
            Failure::NoCertificate
        );
        assert_eq!(
            Failure::of(&io(Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            Failure::UnknownCa
        );
        assert_eq!(
            Failure::of(&io(Error::InvalidCertificate(CertificateError::Expired))),
            Failure::BadCertificate
        );
        assert_eq!(
            Failure::of(&io(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))),
            Failure::NotAllowed
        );
        assert_eq!(
            Failure::of(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            Failure::Protocol
        );
    }
}
