//! A test PKI made with rcgen, for the TLS tests (tests/tls.rs, loadgen_tls.rs, cluster.rs,
//! lqctl_watch.rs) and benches/bulk_stream.rs (which includes this file by `#[path]`): a CA,
//! the server's certificate (the loopback addresses) and requestor certificates it signs,
//! written as PEM files in a directory the caller owns; the server's `tls*` config lines, the
//! requestor's `--tls-*` flags and its rustls client configuration for them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA whose certificate is written to `DIR/NAME-ca.pem`; the leaves it signs go to `DIR`.
pub struct Ca {
    pub cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate's file.
    pub path: PathBuf,
    dir: PathBuf,
}

/// A leaf certificate and its key, PEM, and the files they are written to (`NAME.pem`,
/// `NAME.key`).
pub struct Leaf {
    pub cert: String,
    pub key: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Ca {
    /// A CA named "`name` test CA".
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            path,
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf named `name` (CN and DNS SAN) for the server (with the loopback addresses as IP
    /// SANs, server auth) or a requestor (client auth). The same name again writes over the
    /// files (a renewed certificate).
    pub fn leaf(&self, name: &str, server: bool) -> Leaf {
        self.make(name, server, false)
    }

    /// Like [`Ca::leaf`], valid in the year 2000 only.
    pub fn expired(&self, name: &str, server: bool) -> Leaf {
        self.make(name, server, true)
    }

    fn make(&self, name: &str, server: bool, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            p.subject_alt_names
                .push(SanType::IpAddress("::1".parse().unwrap()));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            cert_path,
            key_path,
        }
    }

    /// A requestor's client configuration that trusts this CA and authenticates with `leaf`
    /// (`None`: no certificate).
    pub fn client(&self, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        leasequery::tlsclient::client_config(
            self.pem().as_bytes(),
            leaf.map(|l| (l.cert.as_bytes(), l.key.as_bytes())),
        )
        .unwrap()
    }
}

impl Leaf {
    /// The requestor TLS flags of loadgen and lqctl with this certificate and the CA file `ca`:
    /// `--tls-cert C --tls-key K --tls-ca CA`.
    pub fn flags(&self, ca: &Path) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path.display().to_string(),
            "--tls-key".into(),
            self.key_path.display().to_string(),
            "--tls-ca".into(),
            ca.display().to_string(),
        ]
    }
}

/// The usual set in one directory: the CA "lq", the server's certificate "lqd.test" and the
/// requestor certificate "requestor1.test" it signs.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub requestor: Leaf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new(dir, "lq");
        Pki {
            server: ca.leaf("lqd.test", true),
            requestor: ca.leaf("requestor1.test", false),
            ca,
        }
    }

    /// The server's config lines: `tls = "MODE"`, `tls_cert`, `tls_key` and `tls_client_ca`.
    pub fn config(&self, mode: &str) -> String {
        format!(
            "tls = \"{mode}\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n",
            self.server.cert_path, self.server.key_path, self.ca.path
        )
    }

    /// The requestor's `--tls-*` flags.
    pub fn flags(&self) -> Vec<String> {
        self.requestor.flags(&self.ca.path)
    }

    /// The requestor's client configuration.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client(Some(&self.requestor))
    }
}
