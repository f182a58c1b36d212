//! A blocking TLS requestor connector (issue 15), for loadgen and the tests: on a connected
//! TCP stream, send STARTTLS (TCP 547, DHCPv6 and DHCP4o6) or DHCPTLS (TCP 67), check the
//! answer, run the rustls client handshake (client certificate, the server's certificate
//! verified against a CA) and hand back a blocking `Read + Write` stream that carries the
//! same 2-octet framing as plain TCP.
//!
//! The messages and the answer's check are the sans-io requestor's
//! ([`crate::requestor::query::starttls`], [`crate::requestor::query::dhcptls`],
//! [`crate::requestor::reply::tls_answer`]).
//!
//! Beside it, what `loadgen` and `lqctl` both read and write a requestor connection with:
//! [`Stream`] (plain TCP or TLS over it), [`send_frame`] and [`FrameReader`] (the 2-octet
//! length before each message, RFC 5460 §5.1 / RFC 6926 §6.1).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::requestor::query;
use crate::requestor::reply::{self, TlsAnswer};
use crate::requestor::Wire;

/// The TLS stream a requestor reads and writes framed messages on.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The requestor's TLS flags, shared by `loadgen` (`bulk`, `churn`, `active`, `mixed`) and
/// `lqctl` (`bulk`, `watch`): all three files, or none (plain TCP). With them every leasequery
/// connection asks for TLS (STARTTLS on TCP 547, DHCPTLS on TCP 67) and authenticates with the
/// requestor certificate; the server's certificate must chain to `--tls-ca` and name the server
/// connected to (or `--tls-server-name`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// The requestor's certificate chain (PEM): leasequery over TLS (STARTTLS on TCP 547,
    /// DHCPTLS on TCP 67), with --tls-key and --tls-ca.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    /// The requestor's private key (PEM).
    #[arg(long = "tls-key", value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// The CA bundle (PEM) that the server's certificate must chain to.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: the server as given).
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub server_name: Option<String>,
}

/// What a TLS connection needs: the client configuration and the server name to verify
/// (`None`: the server as given).
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub name: Option<ServerName<'static>>,
}

impl TlsArgs {
    /// `None` without TLS flags; an error naming the flags when only some are given or a file
    /// is bad.
    pub fn tls(&self) -> Result<Option<Tls>, String> {
        let (cert, key, ca) = match (&self.cert, &self.key, &self.ca) {
            (None, None, None) => {
                if self.server_name.is_some() {
                    return Err("--tls-server-name needs --tls-cert, --tls-key and --tls-ca".into());
                }
                return Ok(None);
            }
            (Some(c), Some(k), Some(a)) => (c, k, a),
            _ => {
                let missing: Vec<&str> = [
                    ("--tls-cert", self.cert.is_none()),
                    ("--tls-key", self.key.is_none()),
                    ("--tls-ca", self.ca.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(f, _)| *f)
                .collect();
                return Err(format!(
                    "TLS needs --tls-cert, --tls-key and --tls-ca together (missing {})",
                    missing.join(", ")
                ));
            }
        };
        let config = client_config_files(ca, cert, key)
            .map_err(|e| format!("--tls-cert/--tls-key/--tls-ca: {e}"))?;
        let name = match &self.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("--tls-server-name {n:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(Some(Tls { config, name }))
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused TLS: {0:?}")]
    Refused(reply::Status),
    #[error("the answer to STARTTLS/DHCPTLS is not one")]
    BadAnswer,
    #[error("the server closed before answering STARTTLS/DHCPTLS")]
    Closed,
    #[error("the TLS handshake failed: {0}")]
    Handshake(rustls::Error),
}

/// A client configuration: the CA that signs the server's certificate (`ca`, PEM), and the
/// requestor's certificate chain and key (PEM; `None` sends no certificate, which the server
/// refuses, for tests).
pub fn client_config(
    ca: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots
            .add(c.map_err(|e| format!("CA: {e}"))?)
            .map_err(|e| format!("CA: {e}"))?;
    }
    let b = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("key: {e}"))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| format!("certificate and key: {e}"))?
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// [`client_config`] from files: the CA, the requestor's certificate and key.
pub fn client_config_files(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ClientConfig>, String> {
    let read =
        |what: &str, p: &Path| std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    client_config(
        &read("CA", ca)?,
        Some((&read("certificate", cert)?, &read("key", key)?)),
    )
}

/// Asks for TLS on `tcp` (STARTTLS with xid `xid` when `wire` is V6 or O6, DHCPTLS when V4),
/// checks the answer and runs the handshake with `server_name` (the name or address in the
/// server's certificate). The returned stream has finished the handshake on the client side
/// (a server that rejects the client's certificate in TLS 1.3 says so on the first read).
pub fn connect<T: Read + Write>(
    mut tcp: T,
    wire: Wire,
    xid: u32,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<StreamOwned<ClientConnection, T>, ConnectError> {
    let msg = match wire {
        Wire::V6 | Wire::O6 => query::starttls(xid),
        Wire::V4 => query::dhcptls(xid),
    };
    let mut framed = Vec::with_capacity(msg.len() + 2);
    crate::proto::framing::encode_frame(&msg, &mut framed).map_err(|_| ConnectError::BadAnswer)?;
    tcp.write_all(&framed)?;
    // Exactly the answer's frame, nothing after it (the server sends nothing more in plain).
    let mut len = [0u8; 2];
    read_exact_or_closed(&mut tcp, &mut len)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_or_closed(&mut tcp, &mut answer)?;
    match reply::tls_answer(wire, xid, &answer) {
        TlsAnswer::Accepted => {}
        TlsAnswer::Refused(s) => return Err(ConnectError::Refused(s)),
        TlsAnswer::Other => return Err(ConnectError::BadAnswer),
    }
    handshake(tcp, config, server_name)
}

/// The TLS client handshake on `tcp` (after the server accepted STARTTLS / DHCPTLS).
pub fn handshake<T: Read + Write>(
    mut tcp: T,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<StreamOwned<ClientConnection, T>, ConnectError> {
    let mut conn = ClientConnection::new(config, server_name)
        .map_err(|e| ConnectError::Io(std::io::Error::other(e)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(handshake_error)?;
    }
    // Send what the handshake left (the client's Finished).
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A TLS error (an invalid server certificate, an alert) as [`ConnectError::Handshake`], an
/// i/o error as itself.
fn handshake_error(e: std::io::Error) -> ConnectError {
    if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
        let inner = e.into_inner().expect("checked above");
        match inner.downcast::<rustls::Error>() {
            Ok(t) => ConnectError::Handshake(*t),
            Err(other) => ConnectError::Io(std::io::Error::other(other)),
        }
    } else {
        ConnectError::Io(e)
    }
}

fn read_exact_or_closed(tcp: &mut impl Read, buf: &mut [u8]) -> Result<(), ConnectError> {
    tcp.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ConnectError::Closed
        } else {
            ConnectError::Io(e)
        }
    })
}

/// A blocking requestor connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// A TCP connection to `addr` with `timeout` for the connect and for every read and write,
    /// Nagle off (the requestor's messages are small and each one is waited for).
    pub fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// The TCP socket (under TLS, the one TLS runs over).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Writes `msg` with its 2-octet length in one write and flushes (TLS sends its record then);
/// a message over 65535 octets is an `InvalidInput` error and nothing is written.
pub fn send_frame(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    let mut f = Vec::with_capacity(msg.len() + 2);
    crate::proto::framing::encode_frame(msg, &mut f)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535 octets"))?;
    w.write_all(&f)?;
    w.flush()
}

/// The receive side of the framing: reads into one buffer (1 MiB, allocated once) and hands
/// out each complete message as a slice of it, with no copy per message.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    have: usize,
    pos: usize,
    /// Octets of the messages handed out so far, their length octets included.
    pub bytes: u64,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// An empty reader with a buffer of 1 MiB (a message is at most 65537 octets framed).
    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; 1 << 20],
            have: 0,
            pos: 0,
            bytes: 0,
        }
    }

    /// Calls `each` with every message read from `src` until it returns false (the stream
    /// ended: `Ok`), or `src` fails or closes (an error; a close is `UnexpectedEof`). What was
    /// read past the message `each` stopped at stays for the next call and for [`Self::rest`].
    pub fn read_stream(
        &mut self,
        src: &mut impl Read,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<()> {
        loop {
            while self.have - self.pos >= 2 {
                let n = usize::from(u16::from_be_bytes([
                    self.buf[self.pos],
                    self.buf[self.pos + 1],
                ]));
                if self.have - self.pos < 2 + n {
                    break;
                }
                let start = self.pos + 2;
                self.pos = start + n;
                self.bytes += 2 + n as u64;
                if !each(&self.buf[start..start + n]) {
                    return Ok(());
                }
            }
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.have, 0);
                self.have -= self.pos;
                self.pos = 0;
            }
            let r = src.read(&mut self.buf[self.have..])?;
            if r == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection mid-stream",
                ));
            }
            self.have += r;
        }
    }

    /// The octets read past the last message handed out.
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.pos..self.have]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its octets `step` at a time.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in msgs {
            send_frame(&mut v, m).unwrap();
        }
        v
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_the_rest_is_kept() {
        let big = vec![7u8; 65535];
        let wire = framed(&[b"one", b"", &big, b"four", b"after"]);
        for step in [1, 2, 3, 1000, 1 << 21] {
            let mut src = Trickle(wire.clone(), step);
            let mut r = FrameReader::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            r.read_stream(&mut src, |m| {
                got.push(m.to_vec());
                m != b"four"
            })
            .unwrap();
            assert_eq!(
                got,
                [b"one".to_vec(), vec![], big.clone(), b"four".to_vec()]
            );
            assert_eq!(r.bytes, (2 + 3 + 2 + 2 + 65535 + 2 + 4) as u64);
            // The next call starts with what was read past "four".
            let mut rest = r.rest().to_vec();
            rest.extend_from_slice(&src.0);
            assert_eq!(rest, framed(&[b"after"]), "step {step}");
        }
    }

    #[test]
    fn a_close_mid_stream_is_an_error_and_an_oversized_message_is_refused() {
        let mut wire = framed(&[b"whole"]);
        wire.extend_from_slice(&[0, 9, 1, 2]); // 9 announced, 2 sent, then the close
        let mut r = FrameReader::new();
        let mut n = 0;
        let e = r
            .read_stream(&mut Trickle(wire, 3), |_| {
                n += 1;
                true
            })
            .unwrap_err();
        assert_eq!((e.kind(), n), (io::ErrorKind::UnexpectedEof, 1));
        let mut out = Vec::new();
        let e = send_frame(&mut out, &vec![0; 65536]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }
}
