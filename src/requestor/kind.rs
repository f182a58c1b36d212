//! The bulk query kinds a requestor names on its command line (`loadgen --query`, `lqctl
//! --query`): `v6-link:ADDR`, `v6-relay:HEX`, `v6-remote:HEX`, `v6-client:HEX`,
//! `v6-address:ADDR`, `v4-all`, `v4-relay:HEX`, `v4-remote:HEX`, `v4-client:HEX`, `v4-mac:MAC`,
//! `4o6-link:ADDR`, `4o6-relay:HEX`, `4o6-remote:HEX`, `4o6-client:HEX`, `4o6-address:ADDR`.
//!
//! Each kind parses from that text ([`std::str::FromStr`]), says which wire form and default
//! port it uses, and builds its query with [`super::query`] (no second copy of the builders).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use super::query::{self, BulkV4, BulkV6};
use super::reply::Wire;
use crate::proto::codes::{v4opt, v6opt};

/// The DHCPv4 Parameter Request List of a bulk query: everything a binding's record needs
/// (lease time, last transaction time, dhcp-state, softwire source, port parameters).
pub const BULK_PRL: &[u8] = &[
    v4opt::LEASE_TIME,
    v4opt::CLIENT_LAST_TRANSACTION_TIME,
    v4opt::DHCP_STATE,
    v4opt::DHCP4O6_S46_SADDR,
    v4opt::V4_PORTPARAMS,
];

/// The ORO of a plain DHCPv6 bulk query: OPTION_LQ_BASE_TIME (so that remaining lifetimes turn
/// into absolute times), OPTION_RELAY_ID and OPTION_REMOTE_ID of each binding.
pub const V6_BULK_ORO: &[u16] = &[v6opt::LQ_BASE_TIME, v6opt::RELAY_ID, v6opt::REMOTE_ID];

/// One kind of bulk query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// `v6-link:ADDR`: DHCPv6 QUERY_BY_LINK_ADDRESS.
    V6Link(Ipv6Addr),
    /// `v6-relay:HEX`: DHCPv6 QUERY_BY_RELAY_ID (the relay's DUID).
    V6Relay(Vec<u8>),
    /// `v6-remote:HEX`: DHCPv6 QUERY_BY_REMOTE_ID; HEX is the OPTION_REMOTE_ID payload, its
    /// 4-octet enterprise number first (at least 5 octets).
    V6Remote(Vec<u8>),
    /// `v6-client:HEX`: DHCPv6 QUERY_BY_CLIENTID (a DUID).
    V6Client(Vec<u8>),
    /// `v6-address:ADDR`: DHCPv6 QUERY_BY_ADDRESS.
    V6Address(Ipv6Addr),
    /// `v4-all`: DHCPBULKLEASEQUERY with no primary selector (every configured address).
    V4All,
    /// `v4-relay:HEX`: DHCPBULKLEASEQUERY by option 82 relay-id (sub-option 12).
    V4Relay(Vec<u8>),
    /// `v4-remote:HEX`: DHCPBULKLEASEQUERY by option 82 remote-id (sub-option 2).
    V4Remote(Vec<u8>),
    /// `v4-client:HEX`: DHCPBULKLEASEQUERY by client identifier (option 61 payload).
    V4Client(Vec<u8>),
    /// `v4-mac:MAC`: DHCPBULKLEASEQUERY by hardware address (Ethernet, 6 octets).
    V4Mac([u8; 6]),
    /// `4o6-link:ADDR`: DHCP4o6, QUERY_BY_LINK_ADDRESS with a DHCPBULKLEASEQUERY.
    O6Link(Ipv6Addr),
    /// `4o6-relay:HEX`: DHCP4o6, QUERY_BY_RELAY_ID paired with 82/12 of the same DUID.
    O6Relay(Vec<u8>),
    /// `4o6-remote:HEX`: DHCP4o6, QUERY_BY_REMOTE_ID (payload with enterprise number, at least
    /// 5 octets) paired with 82/2 of the same payload.
    O6Remote(Vec<u8>),
    /// `4o6-client:HEX`: DHCP4o6, QUERY_BY_CLIENTID; HEX is the RFC 4361 option 61 (`ff`,
    /// IAID(4), DUID): option 61 goes in the DHCPv4 query, its DUID in OPTION_CLIENTID.
    O6Client(Vec<u8>),
    /// `4o6-address:ADDR`: DHCP4o6, QUERY_BY_ADDRESS of a softwire source (option 109's
    /// address, an lwB4's IPv6 tunnel end).
    O6Address(Ipv6Addr),
}

/// The kinds and their argument, for error messages and `--help`.
pub const KINDS_HELP: &str = "v6-link:ADDR, v6-relay:HEX, v6-remote:HEX, v6-client:HEX, \
     v6-address:ADDR, v4-all, v4-relay:HEX, v4-remote:HEX, v4-client:HEX, v4-mac:MAC, \
     4o6-link:ADDR, 4o6-relay:HEX, 4o6-remote:HEX, 4o6-client:HEX, 4o6-address:ADDR";

/// Hex digits (an even number, at least 2; `:` between octet pairs allowed) to octets.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s: String = if s.contains(':') {
        if s.split(':').any(|p| p.len() != 2) {
            return None;
        }
        s.split(':').collect()
    } else {
        s.to_owned()
    };
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The DUID of an RFC 4361 client identifier (`ff`, IAID(4), DUID of at least one octet).
fn duid_of_client_id(id: &[u8]) -> Option<&[u8]> {
    crate::proto::encoder::duid_of_client_id(id)
}

impl FromStr for QueryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<QueryKind, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let need = || arg.ok_or_else(|| format!("{s}: {kind} needs an argument after ':'"));
        let hex = |min: usize, max: usize| -> Result<Vec<u8>, String> {
            let a = need()?;
            let b = hex_decode(a)
                .ok_or_else(|| format!("{s}: {a:?} is not an even number of hex digits"))?;
            if b.len() < min || b.len() > max {
                return Err(format!(
                    "{s}: {} octets, {kind} takes {min} to {max}",
                    b.len()
                ));
            }
            Ok(b)
        };
        let addr = || -> Result<Ipv6Addr, String> {
            let a = need()?;
            a.parse::<Ipv6Addr>()
                .map_err(|_| format!("{s}: {a:?} is not an IPv6 address"))
        };
        // Option 82 sub-options and option 61 hold at most 255 octets; a DUID at most 130
        // (RFC 8415 §11.1); OPTION_REMOTE_ID's payload is kept under a message's size.
        Ok(match kind {
            "v6-link" => QueryKind::V6Link(addr()?),
            "v6-relay" => QueryKind::V6Relay(hex(2, 130)?),
            "v6-remote" => QueryKind::V6Remote(hex(5, 1024)?),
            "v6-client" => QueryKind::V6Client(hex(2, 130)?),
            "v6-address" => QueryKind::V6Address(addr()?),
            "v4-all" if arg.is_none() => QueryKind::V4All,
            "v4-all" => return Err(format!("{s}: v4-all takes no argument")),
            "v4-relay" => QueryKind::V4Relay(hex(1, 255)?),
            "v4-remote" => QueryKind::V4Remote(hex(1, 255)?),
            "v4-client" => QueryKind::V4Client(hex(1, 255)?),
            "v4-mac" => {
                let a = need()?;
                let b = hex_decode(a)
                    .and_then(|b| <[u8; 6]>::try_from(b).ok())
                    .ok_or_else(|| {
                        format!("{s}: {a:?} is not a MAC address (6 octets, 02:00:00:00:00:01)")
                    })?;
                QueryKind::V4Mac(b)
            }
            "4o6-link" => QueryKind::O6Link(addr()?),
            "4o6-relay" => QueryKind::O6Relay(hex(2, 130)?),
            "4o6-remote" => QueryKind::O6Remote(hex(5, 255)?),
            "4o6-client" => {
                let b = hex(6, 255)?;
                if duid_of_client_id(&b).is_none() {
                    return Err(format!(
                        "{s}: 4o6-client takes an RFC 4361 client identifier (ff, IAID, DUID)"
                    ));
                }
                QueryKind::O6Client(b)
            }
            "4o6-address" => QueryKind::O6Address(addr()?),
            _ => return Err(format!("{s}: unknown query kind ({KINDS_HELP})")),
        })
    }
}

impl fmt::Display for QueryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            QueryKind::V6Link(a) => write!(f, "v6-link:{a}"),
            QueryKind::V6Relay(b) => write!(f, "v6-relay:{}", hex(b)),
            QueryKind::V6Remote(b) => write!(f, "v6-remote:{}", hex(b)),
            QueryKind::V6Client(b) => write!(f, "v6-client:{}", hex(b)),
            QueryKind::V6Address(a) => write!(f, "v6-address:{a}"),
            QueryKind::V4All => write!(f, "v4-all"),
            QueryKind::V4Relay(b) => write!(f, "v4-relay:{}", hex(b)),
            QueryKind::V4Remote(b) => write!(f, "v4-remote:{}", hex(b)),
            QueryKind::V4Client(b) => write!(f, "v4-client:{}", hex(b)),
            QueryKind::V4Mac(m) => {
                let parts: Vec<String> = m.iter().map(|x| format!("{x:02x}")).collect();
                write!(f, "v4-mac:{}", parts.join(":"))
            }
            QueryKind::O6Link(a) => write!(f, "4o6-link:{a}"),
            QueryKind::O6Relay(b) => write!(f, "4o6-relay:{}", hex(b)),
            QueryKind::O6Remote(b) => write!(f, "4o6-remote:{}", hex(b)),
            QueryKind::O6Client(b) => write!(f, "4o6-client:{}", hex(b)),
            QueryKind::O6Address(a) => write!(f, "4o6-address:{a}"),
        }
    }
}

impl QueryKind {
    /// The wire form of the query and its answers.
    pub fn wire(&self) -> Wire {
        match self {
            QueryKind::V6Link(_)
            | QueryKind::V6Relay(_)
            | QueryKind::V6Remote(_)
            | QueryKind::V6Client(_)
            | QueryKind::V6Address(_) => Wire::V6,
            QueryKind::V4All
            | QueryKind::V4Relay(_)
            | QueryKind::V4Remote(_)
            | QueryKind::V4Client(_)
            | QueryKind::V4Mac(_) => Wire::V4,
            _ => Wire::O6,
        }
    }

    /// The server's TCP port for this kind: 547 for DHCPv6 and DHCP4o6, 67 for DHCPv4.
    pub fn default_port(&self) -> u16 {
        match self.wire() {
            Wire::V4 => 67,
            Wire::V6 | Wire::O6 => 547,
        }
    }

    /// The link the query names (`v6-link`, `4o6-link`): every binding it returns is on it.
    pub fn link(&self) -> Option<Ipv6Addr> {
        match self {
            QueryKind::V6Link(l) | QueryKind::O6Link(l) => Some(*l),
            _ => None,
        }
    }

    /// The DHCPv6 half of a v6 or DHCP4o6 query.
    fn v6(&self) -> Option<BulkV6> {
        Some(match self {
            QueryKind::V6Link(l) | QueryKind::O6Link(l) => BulkV6::Link(*l),
            QueryKind::V6Relay(id) | QueryKind::O6Relay(id) => BulkV6::RelayId(id.clone()),
            QueryKind::V6Remote(p) | QueryKind::O6Remote(p) => BulkV6::RemoteId {
                enterprise: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                remote_id: p[4..].to_vec(),
            },
            QueryKind::V6Client(d) => BulkV6::ClientId(d.clone()),
            QueryKind::O6Client(c) => BulkV6::ClientId(duid_of_client_id(c)?.to_vec()),
            QueryKind::V6Address(a) | QueryKind::O6Address(a) => BulkV6::Address(*a),
            _ => return None,
        })
    }

    /// The DHCPv4 query of a v4 kind, or the one a DHCP4o6 kind carries.
    fn v4(&self) -> Option<BulkV4> {
        Some(match self {
            QueryKind::V4All | QueryKind::O6Link(_) | QueryKind::O6Address(_) => BulkV4::All,
            QueryKind::V4Relay(id) | QueryKind::O6Relay(id) => BulkV4::RelayId(id.clone()),
            QueryKind::V4Remote(id) | QueryKind::O6Remote(id) => BulkV4::RemoteId(id.clone()),
            QueryKind::V4Client(id) | QueryKind::O6Client(id) => BulkV4::ClientId(id.clone()),
            QueryKind::V4Mac(m) => BulkV4::Mac(*m),
            _ => return None,
        })
    }

    /// The query message (unframed) with transaction id `xid` and requestor DUID `duid` (used
    /// by the v6 and DHCP4o6 forms), asking for everything a binding's record needs
    /// ([`Request::full`]).
    pub fn encode(&self, xid: u32, duid: &[u8]) -> Vec<u8> {
        self.encode_with(xid, &Request::full(duid))
    }

    /// The query message (unframed) with transaction id `xid` and the options of `r`.
    pub fn encode_with(&self, xid: u32, r: &Request<'_>) -> Vec<u8> {
        let v4 = self.v4().map(|q| query::v4_bulk(xid, &q, r.prl));
        match (self.wire(), self.v6(), v4) {
            (Wire::V4, _, Some(v4)) => v4,
            (Wire::V6, Some(q), _) => query::v6_bulk(xid, r.duid, &q, r.v6_oro),
            (Wire::O6, Some(q), Some(v4)) => query::o6_bulk(xid, r.duid, &q, r.o6_oro, v4),
            // Every kind has the halves its wire form needs (parsing checks 4o6-client's
            // RFC 4361 form); a hand-built O6Client without one sends an empty message,
            // which the server refuses.
            _ => Vec::new(),
        }
    }
}

/// What a bulk query asks for besides its selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The requestor's DUID (OPTION_CLIENTID of v6 and DHCP4o6 queries).
    pub duid: &'a [u8],
    /// The DHCPv4 Parameter Request List (v4, and the DHCPv4 half of DHCP4o6); empty: none.
    pub prl: &'a [u8],
    /// The ORO inside OPTION_LQ_QUERY of a plain v6 query; empty: none.
    pub v6_oro: &'a [u16],
    /// The ORO inside OPTION_LQ_QUERY of a DHCP4o6 query (the draft requires one).
    pub o6_oro: &'a [u16],
}

/// The DHCP4o6 ORO of [`Request::full`]: OPTION_S46_V4V6BIND and OPTION_LQ_BASE_TIME.
pub const O6_FULL_ORO: &[u16] = &[v6opt::S46_V4V6BIND, v6opt::LQ_BASE_TIME];

impl<'a> Request<'a> {
    /// Everything a binding's record needs: [`BULK_PRL`], [`V6_BULK_ORO`], [`O6_FULL_ORO`].
    pub const fn full(duid: &'a [u8]) -> Request<'a> {
        Request {
            duid,
            prl: BULK_PRL,
            v6_oro: V6_BULK_ORO,
            o6_oro: O6_FULL_ORO,
        }
    }

    /// What loadgen sends (the benchmarks' queries since the start): [`BULK_PRL`], no plain v6
    /// ORO, and [`query::O6_ORO`] for DHCP4o6.
    pub const fn lean(duid: &'a [u8]) -> Request<'a> {
        Request {
            duid,
            prl: BULK_PRL,
            v6_oro: &[],
            o6_oro: query::O6_ORO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codes::{query_type, v4msg, v4relay, v6msg};
    use crate::proto::v4::Message as V4Message;
    use crate::proto::v6::{Message as V6Message, V6Option};

    fn lq_query(m: &V6Message) -> (u8, Ipv6Addr, Vec<V6Option>) {
        m.options
            .iter()
            .find_map(|o| match o {
                V6Option::LqQuery {
                    query_type,
                    link_address,
                    options,
                } => Some((*query_type, *link_address, options.clone())),
                _ => None,
            })
            .expect("OPTION_LQ_QUERY")
    }

    fn inner_v4(m: &V6Message) -> V4Message {
        let raw = m
            .options
            .iter()
            .find_map(|o| match o {
                V6Option::Dhcpv4Msg(b) => Some(b.clone()),
                _ => None,
            })
            .expect("OPTION_DHCPV4_MSG");
        V4Message::decode(&raw).expect("inner DHCPv4 decodes")
    }

    fn encode6(k: &str) -> V6Message {
        let k: QueryKind = k.parse().unwrap();
        let m = V6Message::decode(&k.encode(0x0a0b0c, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!((m.msg_type, m.xid), (v6msg::LEASEQUERY, 0x0a0b0c));
        m
    }

    fn encode4(k: &str) -> V4Message {
        let k: QueryKind = k.parse().unwrap();
        assert_eq!((k.wire(), k.default_port()), (Wire::V4, 67));
        let m = V4Message::decode(&k.encode(7, &[])).unwrap();
        assert_eq!(m.message_type(), Some(v4msg::BULKLEASEQUERY));
        m
    }

    fn relay_sub(m: &V4Message, code: u8) -> Option<Vec<u8>> {
        m.options.iter().find_map(|o| match o {
            crate::proto::v4::V4Option::RelayAgentInfo(r) => r.get(code).map(<[u8]>::to_vec),
            _ => None,
        })
    }

    #[test]
    fn every_kind_round_trips_through_display() {
        for s in [
            "v6-link:2001:db8:1::",
            "v6-relay:000300010a0000000001",
            "v6-remote:00000de96c696e65",
            "v6-client:00030001020000000300",
            "v6-address:2001:db8:1::5",
            "v4-all",
            "v4-relay:000300010a0000000001",
            "v4-remote:6c696e652d31",
            "v4-client:ff000000010003000102000000000001",
            "v4-mac:02:00:00:00:00:01",
            "4o6-link:2001:db8:1::",
            "4o6-relay:000300010a0000000001",
            "4o6-remote:00000de96c696e65",
            "4o6-client:ff000000010003000102000000000001",
            "4o6-address:2001:db8:1::10",
        ] {
            let k: QueryKind = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(k.to_string(), s);
            assert!(
                !k.encode(1, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]).is_empty(),
                "{s}"
            );
        }
    }

    #[test]
    fn v6_kinds() {
        let m = encode6("v6-link:2001:db8:1::");
        let (qt, link, opts) = lq_query(&m);
        assert_eq!(
            (qt, link),
            (query_type::BY_LINK_ADDRESS, "2001:db8:1::".parse().unwrap())
        );
        assert!(opts.contains(&V6Option::Oro(V6_BULK_ORO.to_vec())));
        let (qt, _, opts) = lq_query(&encode6("v6-relay:000300010a0000000001"));
        assert_eq!(qt, query_type::BY_RELAY_ID);
        assert!(opts.contains(&V6Option::RelayId(vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 1])));
        let (qt, _, opts) = lq_query(&encode6("v6-remote:00000de96c696e65"));
        assert_eq!(qt, query_type::BY_REMOTE_ID);
        assert!(opts.contains(&V6Option::RemoteId {
            enterprise: 3561,
            remote_id: b"line".to_vec()
        }));
        let (qt, _, opts) = lq_query(&encode6("v6-client:00030001020000000300"));
        assert_eq!(qt, query_type::BY_CLIENTID);
        assert!(opts.contains(&V6Option::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 3, 0])));
        let (qt, _, opts) = lq_query(&encode6("v6-address:2001:db8:1::5"));
        assert_eq!(qt, query_type::BY_ADDRESS);
        assert!(opts.iter().any(
            |o| matches!(o, V6Option::IaAddr { addr, .. } if *addr == "2001:db8:1::5".parse::<Ipv6Addr>().unwrap())
        ));
        for k in ["v6-link:::1", "v6-address:::1"] {
            let k: QueryKind = k.parse().unwrap();
            assert_eq!((k.wire(), k.default_port()), (Wire::V6, 547));
        }
    }

    #[test]
    fn v4_kinds() {
        let m = encode4("v4-all");
        assert!(m.hw_addr().is_empty());
        assert_eq!(relay_sub(&m, v4relay::RELAY_ID), None);
        let m = encode4("v4-relay:000300010a0000000001");
        assert_eq!(
            relay_sub(&m, v4relay::RELAY_ID),
            Some(vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 1])
        );
        let m = encode4("v4-remote:6c696e652d31");
        assert_eq!(relay_sub(&m, v4relay::REMOTE_ID), Some(b"line-1".to_vec()));
        let m = encode4("v4-client:ff00000001000300010200000000000a");
        assert!(m
            .options
            .iter()
            .any(|o| o.code() == crate::proto::codes::v4opt::CLIENT_ID));
        let m = encode4("v4-mac:02:00:00:00:00:01");
        assert_eq!((m.htype, m.hw_addr()), (1, &[2, 0, 0, 0, 0, 1][..]));
    }

    #[test]
    fn o6_kinds_pair_both_layers() {
        let m = encode6("4o6-link:2001:db8:1::");
        let (qt, link, opts) = lq_query(&m);
        assert_eq!(
            (qt, link),
            (query_type::BY_LINK_ADDRESS, "2001:db8:1::".parse().unwrap())
        );
        assert!(opts.contains(&V6Option::Oro(vec![
            v6opt::S46_V4V6BIND,
            v6opt::LQ_BASE_TIME
        ])));
        assert_eq!(inner_v4(&m).message_type(), Some(v4msg::BULKLEASEQUERY));
        let m = encode6("4o6-relay:000300010a0000000001");
        assert_eq!(lq_query(&m).0, query_type::BY_RELAY_ID);
        assert_eq!(
            relay_sub(&inner_v4(&m), v4relay::RELAY_ID),
            Some(vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 1])
        );
        let m = encode6("4o6-remote:00000de96c696e65");
        assert_eq!(lq_query(&m).0, query_type::BY_REMOTE_ID);
        assert_eq!(
            relay_sub(&inner_v4(&m), v4relay::REMOTE_ID),
            Some(vec![0, 0, 0x0d, 0xe9, b'l', b'i', b'n', b'e'])
        );
        let m = encode6("4o6-client:ff000000010003000102000000000001");
        let (qt, _, opts) = lq_query(&m);
        assert_eq!(qt, query_type::BY_CLIENTID);
        assert!(opts.contains(&V6Option::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0, 1])));
        let m = encode6("4o6-address:2001:db8:1::10");
        assert_eq!(lq_query(&m).0, query_type::BY_ADDRESS);
        let k: QueryKind = "4o6-address:2001:db8:1::10".parse().unwrap();
        assert_eq!((k.wire(), k.default_port()), (Wire::O6, 547));
    }

    #[test]
    fn bad_kinds_are_refused_with_a_reason() {
        for (s, why) in [
            ("v9-all", "unknown query kind"),
            ("", "unknown query kind"),
            ("v4-all:1", "takes no argument"),
            ("v6-link", "needs an argument"),
            ("v6-link:nope", "not an IPv6 address"),
            ("v6-link:192.0.2.1", "not an IPv6 address"),
            ("v6-relay:abc", "hex digits"),
            ("v6-relay:zz", "hex digits"),
            ("v6-relay:", "hex digits"),
            ("v6-remote:00000de9", "5 to 1024"),
            ("v4-mac:02:00:00:00:01", "not a MAC address"),
            ("v4-mac:0200000000010a", "not a MAC address"),
            ("4o6-client:00030001020000000001", "RFC 4361"),
            ("4o6-address:", "not an IPv6 address"),
            ("v4-relay:1:2", "hex digits"),
        ] {
            let e = s.parse::<QueryKind>().expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
        let long = "00".repeat(256);
        assert!(format!("v4-relay:{long}").parse::<QueryKind>().is_err());
    }

    #[test]
    fn links() {
        let k: QueryKind = "4o6-link:2001:db8:1::".parse().unwrap();
        assert_eq!(k.link(), Some("2001:db8:1::".parse().unwrap()));
        assert_eq!(QueryKind::V4All.link(), None);
    }

    /// Every kind, as the server's own decoder (`session::on_message`) reads it: a bulk scan
    /// with the selector the kind names (not a refusal).
    #[test]
    fn the_server_decodes_every_kind_to_its_selector() {
        use crate::lease::{V4Select, V6Select};
        use crate::session::{on_message, Action, Family, Identity, LinkSet, Policy, ScanTarget};
        let id = Identity {
            server_duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0x53],
            server_id: "192.0.2.254".parse().unwrap(),
        };
        let mut links = LinkSet::default();
        links.insert("2001:db8:1::".parse().unwrap());
        let a6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let relay = vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 1];
        let client = vec![0xff, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 0, 1];
        let v6 = |k: &str| -> V6Select {
            let k: QueryKind = k.parse().unwrap();
            match on_message(
                Family::V6,
                &k.encode(5, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
                &id,
                &Policy::default(),
                &links,
                1_800_000_000,
            ) {
                Action::Scan(p) => match p.target {
                    ScanTarget::V6(q) => q.select,
                    t => panic!("{k}: {t:?}"),
                },
                a => panic!("{k}: {a:?}"),
            }
        };
        let v4 = |k: &str, fam: Family| -> V4Select {
            let k: QueryKind = k.parse().unwrap();
            match on_message(
                fam,
                &k.encode(5, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
                &id,
                &Policy::default(),
                &links,
                1_800_000_000,
            ) {
                Action::Scan(p) => match p.target {
                    ScanTarget::V4(q) => q.select,
                    t => panic!("{k}: {t:?}"),
                },
                a => panic!("{k}: {a:?}"),
            }
        };
        assert_eq!(
            v6("v6-link:2001:db8:1::"),
            V6Select::Link(a6("2001:db8:1::"))
        );
        assert_eq!(
            v6("v6-relay:000300010a0000000001"),
            V6Select::RelayId(relay.clone())
        );
        assert_eq!(
            v6("v6-remote:00000de96c696e65"),
            V6Select::RemoteId(vec![0, 0, 0x0d, 0xe9, b'l', b'i', b'n', b'e'])
        );
        assert_eq!(
            v6("v6-client:00030001020000000300"),
            V6Select::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 3, 0])
        );
        assert_eq!(
            v6("v6-address:2001:db8:1::5"),
            V6Select::Address(a6("2001:db8:1::5"))
        );
        let f4 = Family::V4;
        assert_eq!(v4("v4-all", f4), V4Select::All);
        assert_eq!(
            v4("v4-relay:000300010a0000000001", f4),
            V4Select::RelayId(relay.clone())
        );
        assert_eq!(
            v4("v4-remote:6c696e652d31", f4),
            V4Select::RemoteId(b"line-1".to_vec())
        );
        assert_eq!(
            v4("v4-client:ff000000010003000102000000000001", f4),
            V4Select::ClientId(client.clone())
        );
        assert_eq!(
            v4("v4-mac:02:00:00:00:00:01", f4),
            V4Select::Chaddr {
                htype: 1,
                chaddr: vec![2, 0, 0, 0, 0, 1]
            }
        );
        let f6 = Family::V6;
        assert_eq!(
            v4("4o6-link:2001:db8:1::", f6),
            V4Select::Link(a6("2001:db8:1::"))
        );
        assert_eq!(
            v4("4o6-relay:000300010a0000000001", f6),
            V4Select::RelayId(relay)
        );
        assert_eq!(
            v4("4o6-remote:00000de96c696e65", f6),
            V4Select::RemoteId(vec![0, 0, 0x0d, 0xe9, b'l', b'i', b'n', b'e'])
        );
        assert_eq!(
            v4("4o6-client:ff000000010003000102000000000001", f6),
            V4Select::ClientId(client)
        );
        assert_eq!(
            v4("4o6-address:2001:db8:1::10", f6),
            V4Select::SoftwireSrc(a6("2001:db8:1::10"))
        );
    }
}
