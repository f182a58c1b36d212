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
use leasequery::tlsclient::{self, FrameReader, Stream};
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

/// The connection under [`Conn`]: the stream, and over TLS the frames a [`Writer`] hands over.
struct Link {
    s: Stream,
    /// Frames a [`Writer`] handed over, sent by the reading thread between reads (TLS only).
    outbox: Option<Receiver<Vec<u8>>>,
    /// The read timeout the caller asked for (the socket's own is short while an outbox is
    /// open, so that frames leave promptly).
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.s {
            Stream::Plain(_) => "Plain",
            Stream::Tls(_) => "Tls",
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
    link: Link,
    frames: FrameReader,
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
        match Stream::connect_tcp(addr, timeout) {
            Ok(s) => {
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
                        Stream::Tls(Box::new(s))
                    }
                };
                return Ok(Conn {
                    link: Link {
                        s,
                        outbox: None,
                        read_timeout: Some(timeout),
                    },
                    frames: FrameReader::new(),
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
        let l = &mut self.link;
        match &l.s {
            Stream::Plain(s) => {
                s.set_read_timeout(read_timeout)?;
                Ok(Writer::Plain(s.try_clone()?))
            }
            Stream::Tls(s) => {
                s.sock.set_read_timeout(Some(OUTBOX_POLL))?;
                l.read_timeout = read_timeout;
                let (tx, rx) = mpsc::sync_channel(64);
                l.outbox = Some(rx);
                Ok(Writer::Tls(tx, s.sock.try_clone()?))
            }
        }
    }

    /// Sends one framed message (at most 65535 octets).
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        tlsclient::send_frame(&mut self.link.s, msg)
    }

    /// Calls `each` with every message until it returns false (the stream ended) or the server
    /// closes the connection (an error).
    pub fn read_stream(&mut self, each: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        self.frames.read_stream(&mut self.link, each)
    }
}

impl Read for Link {
    /// One read: plain, or TLS (sending what a [`Writer`] handed over first, and waiting in
    /// [`OUTBOX_POLL`] steps up to the read timeout).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (Stream::Tls(s), Some(rx)) = (&mut self.s, &self.outbox) else {
            return self.s.read(buf);
        };
        let t0 = Instant::now();
        loop {
            while let Ok(frame) = rx.try_recv() {
                s.write_all(&frame)?;
                s.flush()?;
            }
            match s.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.read_timeout.is_some_and(|t| t0.elapsed() >= t) {
                        return Err(e);
                    }
                }
                r => return r,
            }
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
