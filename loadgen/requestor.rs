//! The requestor side of bulk leasequery over TCP, built on [`leasequery::requestor`]: the
//! queries loadgen sends (`--query` kinds), a framed blocking reader, plain or over TLS
//! (`--tls-cert`, `--tls-key`, `--tls-ca`: STARTTLS / DHCPTLS and the handshake by
//! [`leasequery::tlsclient`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use leasequery::requestor::kind::Request;
use leasequery::requestor::reply::{self, Answer, Wire};
use leasequery::tlsclient::{self, FrameReader};
pub use leasequery::tlsclient::{Stream, Tls, TlsArgs};
use rustls::pki_types::ServerName;

/// The requestor's DUID (DUID-LL 02:00:00:00:4c:47, "LG").
const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0x4c, 0x47];

pub use leasequery::requestor::kind::QueryKind;

/// Which port a query goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// TCP 547: DHCPv6 and DHCP4o6 leasequery.
    V6,
    /// TCP 67: DHCPv4 leasequery.
    V4,
}

/// loadgen's use of a [`QueryKind`] (`--query`, parsed by the library): the port it goes to and
/// its query as loadgen has always sent it ([`Request::lean`]: the PRL of lease time, last
/// transaction time, dhcp-state, softwire source and port parameters; ORO [92] for DHCP4o6).
pub trait KindExt {
    /// The port it goes to.
    fn port(&self) -> Port;
    /// The query message (unframed) with transaction id `xid`.
    fn query(&self, xid: u32) -> Vec<u8>;
}

impl KindExt for QueryKind {
    fn port(&self) -> Port {
        match self.wire() {
            Wire::V4 => Port::V4,
            Wire::V6 | Wire::O6 => Port::V6,
        }
    }

    fn query(&self, xid: u32) -> Vec<u8> {
        self.encode_with(xid, &Request::lean(&REQUESTOR))
    }
}

/// What one message of a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A binding (v6 REPLY/DATA with OPTION_CLIENT_DATA, v4 LEASEACTIVE/LEASEUNASSIGNED).
    Binding,
    /// The end of the stream (v6 DONE or a REPLY without bindings, v4 LEASEQUERYDONE).
    End,
    /// Anything else (a v6 DATA without client data, a v4 LEASEQUERYSTATUS).
    Other,
}

/// Classifies one message of a stream on `port` ([`leasequery::requestor::reply::classify`]).
pub fn classify(port: Port, msg: &[u8]) -> Kind {
    let wire = match port {
        Port::V6 => Wire::V6,
        Port::V4 => Wire::V4,
    };
    match reply::classify(wire, msg) {
        Answer::Binding(_) => Kind::Binding,
        Answer::Reply(_) | Answer::Done(_) => Kind::End,
        Answer::Keepalive | Answer::Status(_) | Answer::Other => Kind::Other,
    }
}

/// A framed TCP connection to the server, plain or TLS.
#[derive(Debug)]
pub struct Conn {
    s: Stream,
    frames: FrameReader,
}

impl Conn {
    /// Connects with a timeout for the connect and for every read; with `tls`, asks for TLS
    /// (STARTTLS on a [`Port::V6`] connection, DHCPTLS on [`Port::V4`]) and runs the handshake
    /// (an error of kind `Other` saying "TLS with ADDR: ..." when it fails).
    pub fn connect(
        addr: SocketAddr,
        port: Port,
        timeout: Duration,
        tls: Option<&Tls>,
    ) -> io::Result<Conn> {
        let tcp = Stream::connect_tcp(addr, timeout)?;
        let s = match tls {
            None => Stream::Plain(tcp),
            Some(t) => {
                let wire = match port {
                    Port::V6 => Wire::V6,
                    Port::V4 => Wire::V4,
                };
                let name = t
                    .name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let s = tlsclient::connect(tcp, wire, 0x7154, t.config.clone(), name)
                    .map_err(|e| io::Error::other(format!("TLS with {addr}: {e}")))?;
                Stream::Tls(Box::new(s))
            }
        };
        Ok(Conn {
            s,
            frames: FrameReader::new(),
        })
    }

    /// Octets read so far (the messages handed out, with their length octets).
    pub fn bytes(&self) -> u64 {
        self.frames.bytes
    }

    /// Sends one framed message.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        tlsclient::send_frame(&mut self.s, msg)
    }

    /// The connection and the octets read past the last message handed out.
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        let rest = self.frames.rest().to_vec();
        (self.s, rest)
    }

    /// Calls `each` with every message until it returns false (the stream ended) or the server
    /// closes the connection (an error).
    pub fn read_stream(&mut self, each: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        self.frames.read_stream(&mut self.s, each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasequery::proto::codes::{v4msg, v6msg, v6opt};
    use leasequery::proto::v4;
    use leasequery::proto::v6::Message;
    use std::net::Ipv6Addr;

    #[test]
    fn query_kinds_parse_and_encode() {
        let k: QueryKind = "4o6-link:2001:db8:1::".parse().unwrap();
        assert_eq!(k, QueryKind::O6Link("2001:db8:1::".parse().unwrap()));
        assert_eq!(k.port(), Port::V6);
        let m = Message::decode(&k.query(0x123456)).unwrap();
        assert_eq!((m.msg_type, m.xid), (v6msg::LEASEQUERY, 0x123456));
        assert!(m.options.iter().any(|o| o.code() == v6opt::DHCPV4_MSG));
        let v4: QueryKind = "v4-relay:000300010a0000000001".parse().unwrap();
        assert_eq!(v4.port(), Port::V4);
        let q = v4::Message::decode(&v4.query(9)).unwrap();
        assert_eq!(q.message_type(), Some(v4msg::BULKLEASEQUERY));
        assert!("v6-relay:abc".parse::<QueryKind>().is_err());
        assert!("v9-all".parse::<QueryKind>().is_err());
        assert!("v6-link:nope".parse::<QueryKind>().is_err());
    }

    #[test]
    fn stream_ends_are_recognised() {
        assert_eq!(classify(Port::V6, &[16, 0, 0, 1]), Kind::End);
        assert_eq!(classify(Port::V6, &[15, 0, 0, 1]), Kind::End);
        assert_eq!(classify(Port::V6, &[17, 0, 0, 1]), Kind::Other);
        assert_eq!(
            classify(Port::V6, &[17, 0, 0, 1, 0, 45, 0, 0]),
            Kind::Binding
        );
        assert_eq!(classify(Port::V4, &[1, 2, 3]), Kind::Other);
    }

    /// The queries are the ones loadgen built itself before `leasequery::requestor` (the same
    /// options in the same order): a DHCP4o6 query by relay-id, and its DHCPv4 half.
    #[test]
    fn queries_keep_their_options_and_order() {
        use leasequery::proto::codes::{query_type, v4opt};
        use leasequery::proto::v6::V6Option;
        let id = vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 1];
        let mut v4q = v4::Message::new(1, v4msg::BULKLEASEQUERY, 0x0102_0304);
        v4q.options.push(v4::V4Option::ParameterRequestList(vec![
            v4opt::LEASE_TIME,
            v4opt::CLIENT_LAST_TRANSACTION_TIME,
            v4opt::DHCP_STATE,
            v4opt::DHCP4O6_S46_SADDR,
            v4opt::V4_PORTPARAMS,
        ]));
        let mut sub = vec![12, id.len() as u8];
        sub.extend_from_slice(&id);
        v4q.options.push(v4::V4Option::Unknown {
            code: v4opt::RELAY_AGENT_INFO,
            data: sub,
        });
        let mut v4b = Vec::new();
        v4q.encode(&mut v4b).unwrap();
        let want = Message {
            msg_type: v6msg::LEASEQUERY,
            xid: 0x02_0304,
            options: vec![
                V6Option::ClientId(REQUESTOR.to_vec()),
                V6Option::LqQuery {
                    query_type: query_type::BY_RELAY_ID,
                    link_address: Ipv6Addr::UNSPECIFIED,
                    options: vec![
                        V6Option::RelayId(id.clone()),
                        V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
                    ],
                },
                V6Option::Dhcpv4Msg(v4b.clone()),
            ],
        };
        let mut want_bytes = Vec::new();
        want.encode(&mut want_bytes).unwrap();
        assert_eq!(
            QueryKind::O6Relay(id.clone()).query(0x0102_0304),
            want_bytes
        );
        assert_eq!(QueryKind::V4Relay(id).query(0x0102_0304), v4b);
    }
}
