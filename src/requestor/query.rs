//! Leasequery query messages (unframed), as a requestor sends them.

use std::net::Ipv6Addr;

use crate::proto::codes::{query_type, v4msg, v4opt, v4relay, v6msg, v6opt};
use crate::proto::v4::{Message as V4Message, V4Option};
use crate::proto::v6::{Message as V6Message, V6Option};

/// What a DHCPv6 bulk leasequery asks for (RFC 5460 §5.3, RFC 5007 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkV6 {
    /// QUERY_BY_ADDRESS: the binding of one address (in an OPTION_IAADDR).
    Address(Ipv6Addr),
    /// QUERY_BY_CLIENTID: the bindings of one client DUID.
    ClientId(Vec<u8>),
    /// QUERY_BY_RELAY_ID: the bindings learnt through one relay (OPTION_RELAY_ID, its DUID).
    RelayId(Vec<u8>),
    /// QUERY_BY_LINK_ADDRESS: the bindings on one link.
    Link(Ipv6Addr),
    /// QUERY_BY_REMOTE_ID: the bindings with one OPTION_REMOTE_ID.
    RemoteId {
        /// Its enterprise number.
        enterprise: u32,
        /// Its value.
        remote_id: Vec<u8>,
    },
}

impl BulkV6 {
    /// The query-type, link-address and options of its OPTION_LQ_QUERY.
    fn parts(&self) -> (u8, Ipv6Addr, Vec<V6Option>) {
        let none = Ipv6Addr::UNSPECIFIED;
        match self {
            BulkV6::Address(a) => (
                query_type::BY_ADDRESS,
                none,
                vec![V6Option::IaAddr {
                    addr: *a,
                    preferred: 0,
                    valid: 0,
                    options: Vec::new(),
                }],
            ),
            BulkV6::ClientId(d) => (
                query_type::BY_CLIENTID,
                none,
                vec![V6Option::ClientId(d.clone())],
            ),
            BulkV6::RelayId(d) => (
                query_type::BY_RELAY_ID,
                none,
                vec![V6Option::RelayId(d.clone())],
            ),
            BulkV6::Link(l) => (query_type::BY_LINK_ADDRESS, *l, Vec::new()),
            BulkV6::RemoteId {
                enterprise,
                remote_id,
            } => (
                query_type::BY_REMOTE_ID,
                none,
                vec![V6Option::RemoteId {
                    enterprise: *enterprise,
                    remote_id: remote_id.clone(),
                }],
            ),
        }
    }
}

/// What a DHCPv4 bulk leasequery asks for (RFC 6926 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkV4 {
    /// No primary selector: every configured address.
    All,
    /// Relay-id, option 82 sub-option 12 (RFC 6925).
    RelayId(Vec<u8>),
    /// Remote-id, option 82 sub-option 2 (RFC 3046).
    RemoteId(Vec<u8>),
    /// Client identifier, option 61.
    ClientId(Vec<u8>),
    /// Hardware address: `chaddr` with htype 1 (Ethernet).
    Mac([u8; 6]),
}

fn sub_option(code: u8, value: &[u8]) -> V4Option {
    let mut data = Vec::with_capacity(2 + value.len());
    data.push(code);
    data.push(value.len() as u8);
    data.extend_from_slice(value);
    V4Option::Unknown {
        code: v4opt::RELAY_AGENT_INFO,
        data,
    }
}

fn encode4(m: &V4Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).expect("a small query encodes");
    out
}

fn encode6(m: &V6Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).expect("a small query encodes");
    out
}

/// A DHCPBULKLEASEQUERY (op BOOTREQUEST) with the Parameter Request List `prl` (none when
/// empty), as a message the caller may still change before encoding.
pub fn v4_bulk_message(xid: u32, q: &BulkV4, prl: &[u8]) -> V4Message {
    let mut m = V4Message::new(1, v4msg::BULKLEASEQUERY, xid);
    if !prl.is_empty() {
        m.options.push(V4Option::ParameterRequestList(prl.to_vec()));
    }
    match q {
        BulkV4::All => {}
        BulkV4::RelayId(id) => m.options.push(sub_option(v4relay::RELAY_ID, id)),
        BulkV4::RemoteId(id) => m.options.push(sub_option(v4relay::REMOTE_ID, id)),
        BulkV4::ClientId(id) => m.options.push(V4Option::Unknown {
            code: v4opt::CLIENT_ID,
            data: id.clone(),
        }),
        BulkV4::Mac(mac) => m.set_hw_addr(1, mac).expect("6 octets fit chaddr"),
    }
    m
}

/// A DHCPBULKLEASEQUERY, encoded (see [`v4_bulk_message`]).
pub fn v4_bulk(xid: u32, q: &BulkV4, prl: &[u8]) -> Vec<u8> {
    encode4(&v4_bulk_message(xid, q, prl))
}

/// A DHCPv6 LEASEQUERY for a bulk answer: OPTION_CLIENTID `duid` (the requestor's), then
/// OPTION_LQ_QUERY with the query and an ORO of `oro` inside it when not empty. The xid keeps
/// its low 24 bits.
pub fn v6_bulk(xid: u32, duid: &[u8], q: &BulkV6, oro: &[u16]) -> Vec<u8> {
    encode6(&v6_bulk_message(xid, duid, q, oro, None))
}

/// A DHCP4o6 bulk leasequery (draft-cui-dhc-dhcp4o6-bulk-active-leasequery): [`v6_bulk`] with
/// ORO `oro` inside OPTION_LQ_QUERY and the DHCPv4 query `v4` (e.g. a [`v4_bulk`]) in
/// OPTION_DHCPV4_MSG.
pub fn o6_bulk(xid: u32, duid: &[u8], q: &BulkV6, oro: &[u16], v4: Vec<u8>) -> Vec<u8> {
    encode6(&v6_bulk_message(xid, duid, q, oro, Some(v4)))
}

/// The message of [`v6_bulk`] / [`o6_bulk`], for a caller that changes it before encoding.
pub fn v6_bulk_message(
    xid: u32,
    duid: &[u8],
    q: &BulkV6,
    oro: &[u16],
    v4: Option<Vec<u8>>,
) -> V6Message {
    let (qt, link, mut opts) = q.parts();
    if !oro.is_empty() {
        opts.push(V6Option::Oro(oro.to_vec()));
    }
    let mut options = vec![
        V6Option::ClientId(duid.to_vec()),
        V6Option::LqQuery {
            query_type: qt,
            link_address: link,
            options: opts,
        },
    ];
    if let Some(v4) = v4 {
        options.push(V6Option::Dhcpv4Msg(v4));
    }
    V6Message {
        msg_type: v6msg::LEASEQUERY,
        xid: xid & 0xff_ffff,
        options,
    }
}

/// An active leasequery (RFC 7653 §6.1, RFC 7724 §6.1, and the DHCP4o6 form carrying both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveQuery<'a> {
    /// The v6 transaction id (low 24 bits), or the v4 one for a DHCPv4 query.
    pub xid: u32,
    /// The requestor's DUID (v6 and DHCP4o6; unused in DHCPv4).
    pub duid: &'a [u8],
    /// The catch-up: changes since this time, in Unix seconds (sent as OPTION_LQ_START_TIME,
    /// seconds since 2000, RFC 7653 §6.3; or query-start-time, RFC 7724 §6.3); `None` asks
    /// for no catch-up.
    pub start: Option<u32>,
    /// The v6 ORO at message level (v6 and DHCP4o6); empty sends none.
    pub oro: &'a [u16],
    /// The DHCPv4 Parameter Request List (DHCPv4 and the query inside DHCP4o6); empty sends
    /// none.
    pub prl: &'a [u8],
}

impl ActiveQuery<'_> {
    /// The DHCPv4 DHCPACTIVELEASEQUERY, as a message.
    pub fn v4_message(&self) -> V4Message {
        let mut m = V4Message::new(1, v4msg::ACTIVELEASEQUERY, self.xid);
        if !self.prl.is_empty() {
            m.options
                .push(V4Option::ParameterRequestList(self.prl.to_vec()));
        }
        if let Some(s) = self.start {
            m.options.push(V4Option::QueryStartTime(s));
        }
        m
    }

    /// The DHCPv4 DHCPACTIVELEASEQUERY (TCP 67), encoded.
    pub fn v4(&self) -> Vec<u8> {
        encode4(&self.v4_message())
    }

    /// The DHCPv6 ACTIVELEASEQUERY (TCP 547): OPTION_CLIENTID, ORO, OPTION_LQ_START_TIME.
    pub fn v6(&self) -> Vec<u8> {
        self.v6_with(None)
    }

    /// The DHCP4o6 ACTIVELEASEQUERY: [`ActiveQuery::v6`] carrying a DHCPACTIVELEASEQUERY with
    /// transaction id `xid4` (and this query's PRL and start time) in OPTION_DHCPV4_MSG.
    pub fn o6(&self, xid4: u32) -> Vec<u8> {
        let inner = ActiveQuery {
            xid: xid4,
            ..self.clone()
        }
        .v4();
        self.v6_with(Some(inner))
    }

    fn v6_with(&self, v4: Option<Vec<u8>>) -> Vec<u8> {
        let mut options = vec![V6Option::ClientId(self.duid.to_vec())];
        if !self.oro.is_empty() {
            options.push(V6Option::Oro(self.oro.to_vec()));
        }
        if let Some(s) = self.start {
            options.push(V6Option::LqStartTime(crate::proto::time::unix_to_v6(
                u64::from(s),
            )));
        }
        if let Some(v4) = v4 {
            options.push(V6Option::Dhcpv4Msg(v4));
        }
        encode6(&V6Message {
            msg_type: v6msg::ACTIVELEASEQUERY,
            xid: self.xid & 0xff_ffff,
            options,
        })
    }
}

/// The ORO a DHCP4o6 requestor sends: OPTION_S46_V4V6BIND (92), whose answers carry the
/// softwire.
pub const O6_ORO: &[u16] = &[v6opt::S46_V4V6BIND];

/// STARTTLS (RFC 7653 §6.2.2): the first message on TCP 547 to ask for TLS, without options.
/// The xid keeps its low 24 bits.
pub fn starttls(xid: u32) -> Vec<u8> {
    encode6(&V6Message {
        msg_type: v6msg::STARTTLS,
        xid: xid & 0xff_ffff,
        options: Vec::new(),
    })
}

/// DHCPTLS (RFC 7724 §6.2): the first message on TCP 67 to ask for TLS, without options
/// other than its message type.
pub fn dhcptls(xid: u32) -> Vec<u8> {
    encode4(&V4Message::new(1, v4msg::TLS, xid))
}
