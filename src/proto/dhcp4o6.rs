//! DHCPv4-over-DHCPv6 (RFC 7341) envelope helpers and the rules of leasequery over 4o6
//! (draft-cui-dhc-dhcp4o6-bulk-active-leasequery §5, as read in docs/DESIGN.md section 4).
//!
//! - DHCPV4-QUERY / DHCPV4-RESPONSE: the 24 bits after msg-type are flags, not a transaction id
//!   (RFC 7341 §6.1); the only defined flag is U (unicast), the top bit of a query's flags
//!   (§6.2, §8). A response's flags are all zero (§6.3).
//! - Leasequery over 4o6: the v6 query type and the DHCPv4 query inside OPTION_DHCPV4_MSG must
//!   select the same thing ("identical query-type"); [`select`] resolves the pair into one
//!   [`Dhcp4o6Select`] or rejects it as [`MalformedQuery`] (v6 status 8, v4 status 3).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::codes::{query_type, v4msg, v4status, v6msg, v6opt, v6status, BOOTREQUEST};
use super::error::EncodeError;

/// The 24-bit flags field of DHCPV4-QUERY / DHCPV4-RESPONSE (RFC 7341 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u32);

impl Flags {
    /// The Unicast flag: the most significant of the 24 bits (RFC 7341 §6.2).
    pub const UNICAST: u32 = 0x80_0000;

    /// From the three octets after msg-type.
    pub fn from_bytes(b: [u8; 3]) -> Flags {
        Flags(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// The three octets on the wire.
    pub fn to_bytes(self) -> [u8; 3] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }

    /// U: the client would have unicast the DHCPv4 message (RFC 7341 §8), which tells a
    /// RENEWING from a REBINDING DHCPREQUEST (RFC 2131 §4.3.2). The other 23 bits are MBZ and
    /// ignored on receipt.
    pub fn unicast(self) -> bool {
        self.0 & Self::UNICAST != 0
    }

    /// The flags a query with `unicast` would carry (the MBZ bits zero).
    pub fn query(unicast: bool) -> Flags {
        Flags(if unicast { Self::UNICAST } else { 0 })
    }
}

/// Length of a DHCPV4-RESPONSE (RFC 7341 §6.3) carrying `v4_len` octets of DHCPv4 message,
/// `brs` OPTION_S46_BR (90) options and an optional OPTION_S46_BIND_IPV6_PREFIX (137)
/// (RFC 8539 §5): the size to reserve before [`write_dhcpv4_response`].
pub fn dhcpv4_response_len(
    v4_len: usize,
    brs: usize,
    bind_prefix: Option<(u8, Ipv6Addr)>,
) -> usize {
    let prefix = bind_prefix.map_or(0, |(len, _)| 4 + 1 + usize::from(len.min(128)).div_ceil(8));
    4 + 4 + v4_len + brs * 20 + prefix
}

/// Appends a DHCPV4-RESPONSE: msg-type 21, flags all zero whatever the query's were (RFC 7341
/// §6.3: the server's use of U is in how it handles the DHCPv4 message, not in the response
/// flags), the S46 options the client's ORO asked for, then OPTION_DHCPV4_MSG.
///
/// `TooLong` when the DHCPv4 message does not fit an option, `Invalid` for a prefix length over
/// 128; `out` is unchanged on error.
pub fn write_dhcpv4_response(
    out: &mut Vec<u8>,
    v4_msg: &[u8],
    brs: &[Ipv6Addr],
    bind_prefix: Option<(u8, Ipv6Addr)>,
) -> Result<(), EncodeError> {
    let v4_len = u16::try_from(v4_msg.len()).map_err(|_| EncodeError::TooLong {
        len: v4_msg.len(),
        max: u16::MAX as usize,
    })?;
    if bind_prefix.is_some_and(|(len, _)| len > 128) {
        return Err(EncodeError::Invalid("bind prefix length over 128"));
    }
    out.reserve(dhcpv4_response_len(v4_msg.len(), brs.len(), bind_prefix));
    out.push(v6msg::DHCPV4_RESPONSE);
    out.extend_from_slice(&Flags::default().to_bytes());
    for br in brs {
        put_opt(out, v6opt::S46_BR, &br.octets());
    }
    if let Some((len, prefix)) = bind_prefix {
        let n = usize::from(len).div_ceil(8);
        out.extend_from_slice(&v6opt::S46_BIND_IPV6_PREFIX.to_be_bytes());
        out.extend_from_slice(&(1 + n as u16).to_be_bytes());
        out.push(len);
        out.extend_from_slice(prefix.octets().get(..n).unwrap_or_default());
    }
    out.extend_from_slice(&v6opt::DHCPV4_MSG.to_be_bytes());
    out.extend_from_slice(&v4_len.to_be_bytes());
    out.extend_from_slice(v4_msg);
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, code: u16, payload: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The v6 layer of a 4o6 leasequery, as the session decoded it: the message type and, when
/// present, OPTION_LQ_QUERY with the query options the pairing looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Side<'a> {
    /// LEASEQUERY (bulk) or ACTIVELEASEQUERY (active).
    pub msg_type: u8,
    /// OPTION_LQ_QUERY, if the message has one (an active query that wants everything has none).
    pub query: Option<LqQuery<'a>>,
}

/// OPTION_LQ_QUERY (RFC 5007 §4.1.2.1) as far as the pairing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LqQuery<'a> {
    /// query-type ([`query_type`]).
    pub query_type: u8,
    /// link-address (`::` = all links).
    pub link_address: Ipv6Addr,
    /// OPTION_CLIENTID (1) payload in the query options (a DUID).
    pub client_id: Option<&'a [u8]>,
    /// OPTION_RELAY_ID (53) payload (a DUID).
    pub relay_id: Option<&'a [u8]>,
    /// OPTION_REMOTE_ID (37) payload: enterprise-number(4) + remote-id.
    pub remote_id: Option<&'a [u8]>,
    /// The address of OPTION_IAADDR (5).
    pub iaaddr: Option<Ipv6Addr>,
    /// Whether the query options hold an OPTION_ORO (the draft: MUST).
    pub has_oro: bool,
}

/// The DHCPv4 bulk/active leasequery inside OPTION_DHCPV4_MSG, as far as the pairing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Side<'a> {
    /// Length of the whole DHCPv4 message.
    pub len: usize,
    /// BOOTP `op`.
    pub op: u8,
    /// Option 53, if present.
    pub msg_type: Option<u8>,
    /// `ciaddr` (must be zero in a bulk/active query).
    pub ciaddr: Ipv4Addr,
    /// `yiaddr` (must be zero).
    pub yiaddr: Ipv4Addr,
    /// `siaddr` (must be zero).
    pub siaddr: Ipv4Addr,
    /// `hlen`: non-zero means a query by MAC address (RFC 6926 §4).
    pub hlen: u8,
    /// Option 61 payload.
    pub client_id: Option<&'a [u8]>,
    /// Option 82 sub-option 2 (remote-id).
    pub remote_id: Option<&'a [u8]>,
    /// Option 82 sub-option 12 (relay-id, a DUID: RFC 6925).
    pub relay_id: Option<&'a [u8]>,
}

/// What a 4o6 leasequery selects, once both layers agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dhcp4o6Select<'a> {
    /// Bindings whose option 61 equals these bytes (type octet included).
    ClientId(&'a [u8]),
    /// Bindings whose relay-id (82/12, or the 4o6 relay's OPTION_RELAY_ID) is this DUID.
    RelayId(&'a [u8]),
    /// Bindings whose recorded remote-id equals these bytes: the v6 OPTION_REMOTE_ID payload,
    /// enterprise number included, which is how a 4o6 binding records it.
    RemoteId(&'a [u8]),
    /// Bindings on this link.
    Link(Ipv6Addr),
    /// The binding whose softwire source (option 109) is this address.
    SoftwireSrc(Ipv6Addr),
    /// Every binding (active query without OPTION_LQ_QUERY).
    All,
}

/// The two layers of a 4o6 leasequery disagree, or one is not a valid query: answered with
/// MalformedQuery in both layers (v6 8, v4 3). `reason` is for the status text and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedQuery {
    /// Which rule the query broke.
    pub reason: &'static str,
}

impl MalformedQuery {
    /// The DHCPv6 status of the answer.
    pub const V6_STATUS: u16 = v6status::MALFORMED_QUERY;
    /// The DHCPv4 status of the answer.
    pub const V4_STATUS: u8 = v4status::MALFORMED_QUERY;
}

fn bad<T>(reason: &'static str) -> Result<T, MalformedQuery> {
    Err(MalformedQuery { reason })
}

/// The DUID of an RFC 4361 client identifier (type 255, IAID(4), DUID).
fn duid_of(client_id: &[u8]) -> Option<&[u8]> {
    super::encoder::duid_of_client_id(client_id)
}

/// Resolves the query-type pair of a 4o6 leasequery (docs/DESIGN.md section 4), or rejects it.
///
/// Common checks: the v4 message is a BOOTREQUEST of at least 240 octets with zero ciaddr,
/// yiaddr and siaddr (RFC 6926 §8.2), of type DHCPBULKLEASEQUERY inside LEASEQUERY and
/// DHCPACTIVELEASEQUERY inside ACTIVELEASEQUERY (scenarios 51, 52, 56); an OPTION_LQ_QUERY
/// holds an OPTION_ORO (the draft, §5.1 and §5.2).
///
/// Bulk pairs (the v4 query must have exactly the one primary selector named, nothing else):
/// - QUERY_BY_CLIENTID (2): v6 OPTION_CLIENTID is required; v4 option 61 must be an RFC 4361
///   client-id whose DUID equals it byte for byte -> `ClientId(option 61)`.
/// - QUERY_BY_RELAY_ID (3): v4 82/12 must equal the v6 OPTION_RELAY_ID DUID byte for byte ->
///   `RelayId`.
/// - QUERY_BY_REMOTE_ID (5): the v6 OPTION_REMOTE_ID must hold more than its 4-octet enterprise
///   number; v4 82/2 must equal either the whole v6 payload or the remote-id after the
///   enterprise number (82/2 has no enterprise field) -> `RemoteId(v6 payload)`.
/// - QUERY_BY_LINK_ADDRESS (4): a non-zero link-address, no v4 selector -> `Link`.
/// - QUERY_BY_ADDRESS (1): v6 OPTION_IAADDR, no v4 selector -> `SoftwireSrc`.
///
/// Any other pair (a v4 query by MAC, two v4 selectors, an unknown type) is malformed.
///
/// Active (the v4 DHCPACTIVELEASEQUERY has no selector and must carry no chaddr, client-id or
/// relay sub-options, RFC 7724 §7.3): no OPTION_LQ_QUERY -> `All`; QUERY_BY_RELAY_ID,
/// QUERY_BY_LINK_ADDRESS and QUERY_BY_REMOTE_ID (RFC 7653 §6.2.1) filter as in bulk.
pub fn select<'a>(v6: &V6Side<'a>, v4: &V4Side<'a>) -> Result<Dhcp4o6Select<'a>, MalformedQuery> {
    if v4.len < 240 {
        return bad("DHCPv4 message shorter than 240 octets");
    }
    if v4.op != BOOTREQUEST {
        return bad("DHCPv4 message is not a BOOTREQUEST");
    }
    if !(v4.ciaddr.is_unspecified() && v4.yiaddr.is_unspecified() && v4.siaddr.is_unspecified()) {
        return bad("non-zero ciaddr, yiaddr or siaddr");
    }
    let active = match (v6.msg_type, v4.msg_type) {
        (v6msg::LEASEQUERY, Some(v4msg::BULKLEASEQUERY)) => false,
        (v6msg::ACTIVELEASEQUERY, Some(v4msg::ACTIVELEASEQUERY)) => true,
        _ => return bad("DHCPv4 message type does not match the DHCPv6 query"),
    };
    let selectors = usize::from(v4.hlen != 0)
        + usize::from(v4.client_id.is_some())
        + usize::from(v4.remote_id.is_some())
        + usize::from(v4.relay_id.is_some());
    let Some(q) = v6.query else {
        return if active && selectors == 0 {
            Ok(Dhcp4o6Select::All)
        } else {
            bad("no OPTION_LQ_QUERY")
        };
    };
    if !q.has_oro {
        return bad("no OPTION_ORO in OPTION_LQ_QUERY");
    }
    if active {
        if selectors != 0 {
            return bad("DHCPACTIVELEASEQUERY with a chaddr, client-id or relay sub-option");
        }
        return match q.query_type {
            query_type::BY_RELAY_ID => relay_id(&q, None),
            query_type::BY_LINK_ADDRESS => link(&q),
            query_type::BY_REMOTE_ID => remote_id(&q, None),
            _ => bad("query type not allowed in an active query"),
        };
    }
    let only = |present: bool| selectors == usize::from(present);
    match q.query_type {
        query_type::BY_CLIENTID if only(v4.client_id.is_some()) => {
            let (Some(duid), Some(cid)) = (q.client_id, v4.client_id) else {
                return bad("QUERY_BY_CLIENTID without OPTION_CLIENTID or option 61");
            };
            if duid_of(cid) == Some(duid) {
                Ok(Dhcp4o6Select::ClientId(cid))
            } else {
                bad("option 61 does not hold the DUID of OPTION_CLIENTID")
            }
        }
        query_type::BY_RELAY_ID if only(v4.relay_id.is_some()) => relay_id(&q, v4.relay_id),
        query_type::BY_REMOTE_ID if only(v4.remote_id.is_some()) => remote_id(&q, v4.remote_id),
        query_type::BY_LINK_ADDRESS if selectors == 0 => link(&q),
        query_type::BY_ADDRESS if selectors == 0 => match q.iaaddr {
            Some(a) => Ok(Dhcp4o6Select::SoftwireSrc(a)),
            None => bad("QUERY_BY_ADDRESS without OPTION_IAADDR"),
        },
        _ => bad("DHCPv6 query type and DHCPv4 selector do not pair"),
    }
}

/// QUERY_BY_RELAY_ID; `v4` is 82/12 for bulk (must be present and equal), None for active.
fn relay_id<'a>(q: &LqQuery<'a>, v4: Option<&[u8]>) -> Result<Dhcp4o6Select<'a>, MalformedQuery> {
    match q.relay_id {
        Some(duid) if duid.len() >= 2 && v4.is_none_or(|r| r == duid) => {
            Ok(Dhcp4o6Select::RelayId(duid))
        }
        Some(_) if v4.is_some() => bad("82/12 relay-id differs from OPTION_RELAY_ID"),
        _ => bad("QUERY_BY_RELAY_ID without a valid OPTION_RELAY_ID"),
    }
}

/// QUERY_BY_REMOTE_ID; `v4` is 82/2 for bulk (must be present and agree), None for active.
fn remote_id<'a>(q: &LqQuery<'a>, v4: Option<&[u8]>) -> Result<Dhcp4o6Select<'a>, MalformedQuery> {
    let Some(payload) = q.remote_id.filter(|p| p.len() > 4) else {
        return bad("QUERY_BY_REMOTE_ID without a valid OPTION_REMOTE_ID");
    };
    let id = payload.get(4..).unwrap_or_default();
    if v4.is_none_or(|r| r == payload || r == id) {
        Ok(Dhcp4o6Select::RemoteId(payload))
    } else {
        bad("82/2 remote-id differs from OPTION_REMOTE_ID")
    }
}

fn link<'a>(q: &LqQuery<'a>) -> Result<Dhcp4o6Select<'a>, MalformedQuery> {
    if q.link_address.is_unspecified() {
        bad("QUERY_BY_LINK_ADDRESS with link-address ::")
    } else {
        Ok(Dhcp4o6Select::Link(q.link_address))
    }
}
