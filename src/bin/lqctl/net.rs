//! The socket side of `lqctl`: a server address, the connection to it and a framed blocking
//! reader (RFC 5460 §5.1 / RFC 6926 §6.1: a 2-octet length before each message). Everything a
//! message means is `leasequery::requestor`'s.
//!
//! [`connect`] is the one place a requestor connection is opened, plain or over TLS
//! (`--tls-cert`, `--tls-key`, `--tls-ca`: STARTTLS on TCP 547, DHCPTLS on TCP 67, the server's
//! certificate verified; [`leasequery::tlsclient`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use leasequery::requestor::Wire;
use leasequery::tlsclient;
pub use leasequery::tlsclient::{Tls, TlsArgs};
use rustls::pki_types::ServerName;

/// A `--server` as given: an address or host name with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host part (an address or a name).
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

impl std::str::FromStr for Server {
    type Err = String;
    /// `192.0.2.1`, `192.0.2.1:547`, `2001:db8::1`, `[2001:db8::1]:547`, `lq.example`,
    /// `lq.example:547`.
    fn from_str(s: &str) -> Result<Server, String> {
        let bad = |why: &str| format!("--server {s:?}: {why}");
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Server {
                host: a.ip().to_string(),
                port: Some(a.port()),
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Server {
                host: ip.to_string(),
                port: None,
            });
        }
        if s.starts_with('[') {
            return Err(bad("not [IPv6]:PORT"));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number 0..65535"))?,
                ),
            ),
            None => (s, None),
        };
        let name_ok = !host.is_empty()
            && !host.contains(':')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !name_ok {
            return Err(bad("not an address, [IPv6]:PORT or HOST[:PORT]"));
        }
        Ok(Server {
            host: host.to_owned(),
            port,
        })
    }
}

impl Server {
    /// The socket addresses it names, with `default_port` when none was given.
    pub fn resolve(&self, default_port: u16) -> io::Result<Vec<SocketAddr>> {
        let port = self.port.unwrap_or(default_port);
        match self.host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => Ok((self.host.as_str(), port).to_socket_addrs()?.collect()),
        }
    }

    /// As given (with the port it will use).
    pub fn label(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// The connection under [`Conn`].
enum Stream {
    Plain(TcpStream),
    Tls {
        s: Box<tlsclient::TlsStream>,
        /// Frames a [`Writer`] handed over, sent by the reading thread between reads.
        outbox: Option<Receiver<Vec<u8>>>,
        /// The read timeout the caller asked for (the socket's own is short while an outbox
        /// is open, so that frames leave promptly).
        read_timeout: Option<Duration>,
    },
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Plain",
            Stream::Tls { .. } => "Tls",
        })
    }
}

/// How often the reading thread of a TLS connection with a [`Writer`] looks for frames to send.
const OUTBOX_POLL: Duration = Duration::from_millis(20);

/// The sending side of a connection whose reading runs on another thread (`watch`): plain,
/// the socket itself; over TLS, frames handed to the reading thread (one TLS session cannot be
/// written from two threads).
pub enum Writer {
    Plain(TcpStream),
    Tls(SyncSender<Vec<u8>>, TcpStream),
}

impl Writer {
    /// Sends `frame` (already framed).
    pub fn write_all(&mut self, frame: &[u8]) -> io::Result<()> {
        match self {
            Writer::Plain(s) => s.write_all(frame),
            Writer::Tls(tx, _) => tx
                .send(frame.to_vec())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")),
        }
    }

    /// Closes the connection (the reading thread then ends).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Writer::Plain(s) | Writer::Tls(_, s) => s.shutdown(how),
        }
    }
}

/// A framed requestor connection to a leasequery server.
#[derive(Debug)]
pub struct Conn {
    s: Stream,
    buf: Vec<u8>,
    have: usize,
    pos: usize,
    /// Octets read so far.
    pub bytes: u64,
}

/// Opens a requestor connection to `server` (the first of its addresses that answers), with
/// `timeout` for the connect and for every read; with `tls`, asks for TLS (DHCPTLS when
/// `wire` is V4, STARTTLS otherwise) and runs the handshake, the server's certificate checked
/// against the CA and the server's name (`--tls-server-name`, else the host as given).
pub fn connect(
    server: &Server,
    default_port: u16,
    timeout: Duration,
    tls: Option<&Tls>,
    wire: Wire,
) -> io::Result<Conn> {
    let mut last = None;
    for addr in server.resolve(default_port)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                let s = match tls {
                    None => Stream::Plain(s),
                    Some(t) => {
                        let name = match &t.name {
                            Some(n) => n.clone(),
                            None => ServerName::try_from(server.host.clone())
                                .map_err(|e| io::Error::other(format!("TLS server name: {e}")))?,
                        };
                        let s = tlsclient::connect(s, wire, 0x1c71, t.config.clone(), name)
                            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                        Stream::Tls {
                            s: Box::new(s),
                            outbox: None,
                            read_timeout: Some(timeout),
                        }
                    }
                };
                return Ok(Conn {
                    s,
                    buf: vec![0; 1 << 20],
                    have: 0,
                    pos: 0,
                    bytes: 0,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

impl Conn {
    /// A writer beside the thread that reads (`watch`), after setting the read timeout of a
    /// long-lived stream (`None`: none).
    pub fn writer(&mut self, read_timeout: Option<Duration>) -> io::Result<Writer> {
        match &mut self.s {
            Stream::Plain(s) => {
                s.set_read_timeout(read_timeout)?;
                Ok(Writer::Plain(s.try_clone()?))
            }
            Stream::Tls {
                s,
                outbox,
                read_timeout: rt,
            } => {
                s.sock.set_read_timeout(Some(OUTBOX_POLL))?;
                *rt = read_timeout;
                let (tx, rx) = mpsc::sync_channel(64);
                *outbox = Some(rx);
                Ok(Writer::Tls(tx, s.sock.try_clone()?))
            }
        }
    }

    /// Sends one framed message (at most 65535 octets).
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let len = u16::try_from(msg.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535"))?;
        let mut f = Vec::with_capacity(msg.len() + 2);
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(msg);
        match &mut self.s {
            Stream::Plain(s) => s.write_all(&f),
            Stream::Tls { s, .. } => {
                s.write_all(&f)?;
                s.flush()
            }
        }
    }

    /// One read: plain, or TLS (sending what a [`Writer`] handed over first, and waiting in
    /// [`OUTBOX_POLL`] steps up to the read timeout).
    fn read_some(&mut self, at: usize) -> io::Result<usize> {
        match &mut self.s {
            Stream::Plain(s) => s.read(&mut self.buf[at..]),
            Stream::Tls {
                s,
                outbox,
                read_timeout,
            } => {
                let Some(rx) = outbox else {
                    return s.read(&mut self.buf[at..]);
                };
                let t0 = Instant::now();
                loop {
                    while let Ok(frame) = rx.try_recv() {
                        s.write_all(&frame)?;
                        s.flush()?;
                    }
                    match s.read(&mut self.buf[at..]) {
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            if read_timeout.is_some_and(|t| t0.elapsed() >= t) {
                                return Err(e);
                            }
                        }
                        r => return r,
                    }
                }
            }
        }
    }

    /// Calls `each` with every message until it returns false (the stream ended) or the server
    /// closes the connection (an error).
    pub fn read_stream(&mut self, mut each: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
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
            let r = self.read_some(self.have)?;
            if r == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection mid-stream",
                ));
            }
            self.have += r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let s = |x: &str| x.parse::<Server>();
        assert_eq!(
            s("127.0.0.1").unwrap(),
            Server {
                host: "127.0.0.1".into(),
                port: None
            }
        );
        assert_eq!(s("127.0.0.1:10547").unwrap().port, Some(10547));
        assert_eq!(s("::1").unwrap().port, None);
        assert_eq!(
            s("[::1]:547").unwrap(),
            Server {
                host: "::1".into(),
                port: Some(547)
            }
        );
        assert_eq!(s("lq.example:67").unwrap().host, "lq.example");
        assert_eq!(s("[::1]:547").unwrap().label(67), "[::1]:547");
        assert_eq!(s("127.0.0.1").unwrap().label(67), "127.0.0.1:67");
        for bad in ["", "127.0.0.1:x", "[::1]", "a b", "host:99999", ":547"] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }
}
