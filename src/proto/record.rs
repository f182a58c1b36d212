//! Borrowed binding records: what the reply encoder needs to know about one binding.
//!
//! The lease table stores bindings compactly (interned relay ids, an arena of client ids); it
//! lends each one to the encoder as one of these records, which borrow from the table for the
//! length of one `write_*` call. Nothing here allocates.
//!
//! Times are **absolute Unix seconds** (u32, seconds since 1970-01-01 UTC) as the lease table
//! keeps them. The encoder turns them into what each wire form wants: remaining lifetimes, "seconds
//! ago" for CLT_TIME and option 91, DHCPv6 epoch-2000 values for OPTION_LQ_BASE_TIME, and so on
//! (see [`crate::proto::time`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// An RFC 7618 port set: PSID offset, PSID length and the PSID itself (right-aligned value).
///
/// On the wire (DHCPv4 option 159 and DHCPv6 OPTION_S46_PORTPARAMS 93) the PSID field is 16
/// bits, left-aligned: `field = psid << (16 - psid_len)`; [`PortParams::wire_psid`] does that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortParams {
    /// PSID offset `a` (0..=15): the number of high bits of a port excluded from the PSID.
    pub offset: u8,
    /// PSID length `k` (0..=16).
    pub psid_len: u8,
    /// The PSID, right-aligned (`0 .. 2^psid_len`).
    pub psid: u16,
}

impl PortParams {
    /// The 16-bit left-aligned PSID field of option 159 / 93.
    pub fn wire_psid(&self) -> u16 {
        if self.psid_len == 0 || self.psid_len > 16 {
            0
        } else {
            ((self.psid as u32) << (16 - self.psid_len as u32)) as u16
        }
    }

    /// From the 16-bit left-aligned wire field. `None` when the lengths are out of range
    /// (offset > 15, psid_len > 16) or when bits below the PSID are set (RFC 7597 §5.1).
    pub fn from_wire(offset: u8, psid_len: u8, field: u16) -> Option<PortParams> {
        if offset > 15 || psid_len > 16 || (offset as u32 + psid_len as u32) > 16 {
            return None;
        }
        if psid_len == 0 {
            return (field == 0).then_some(PortParams {
                offset,
                psid_len,
                psid: 0,
            });
        }
        let shift = 16 - psid_len as u32;
        let low_mask = if shift == 0 { 0 } else { (1u32 << shift) - 1 };
        if (field as u32) & low_mask != 0 {
            return None;
        }
        Some(PortParams {
            offset,
            psid_len,
            psid: ((field as u32) >> shift) as u16,
        })
    }
}

/// The DHCPv6 relay a 4o6 client's DHCPV4-QUERY came through (the innermost Relay-Forward, the
/// one nearest the client), as recorded by the authority. Encoded in replies as
/// OPTION_LQ_RELAY_DATA (47) when the requestor's ORO asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayRecord<'a> {
    /// The relay's hop-count field.
    pub hop_count: u8,
    /// The relay's link-address field.
    pub link_address: Ipv6Addr,
    /// The relay's peer-address field (the client's address as the relay saw it).
    pub peer_address: Ipv6Addr,
    /// OPTION_INTERFACE_ID (18) payload, if the relay sent one.
    pub interface_id: Option<&'a [u8]>,
    /// OPTION_RELAY_ID (53) payload (the relay's DUID), if the relay sent one.
    pub relay_id: Option<&'a [u8]>,
    /// OPTION_REMOTE_ID (37) payload (enterprise number + remote-id), if the relay sent one.
    pub remote_id: Option<&'a [u8]>,
}

/// What a 4o6 binding knows of the DHCPv6 side (RFC 7341, RFC 8539), needed to build
/// OPTION_CLIENT_DATA for DHCP4o6 leasequery replies (docs/DESIGN.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Context<'a> {
    /// The IPv6 source address of the client's DHCPV4-QUERY (the peer-address of the innermost
    /// relay, or the packet source for direct queries).
    pub client_src: Ipv6Addr,
    /// The link the binding's subnet was selected by (innermost relay link-address, or the
    /// configured link of a direct client).
    pub link: Ipv6Addr,
    /// The relay chain's innermost Relay-Forward, if the query was relayed.
    pub relay: Option<RelayRecord<'a>>,
}

/// One DHCPv4 (or DHCP4o6) binding: an IPv4 address, or an (IPv4 address, PSID) unit of a
/// shared address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Record<'a> {
    /// The leased address (goes in `ciaddr`).
    pub addr: Ipv4Addr,
    /// The port set, for a shared address (RFC 7618). `None` for a full address.
    pub port_params: Option<PortParams>,
    /// BOOTP htype of the client (0 when unknown).
    pub htype: u8,
    /// The client's hardware address (at most 16 octets; empty when unknown). `hlen` = its length.
    pub chaddr: &'a [u8],
    /// Option 61 payload (type octet + identifier), when the client sent one. For RFC 4361
    /// clients the type is 255 and an IAID (4 octets) and a DUID follow.
    pub client_id: Option<&'a [u8]>,
    /// dhcp-state ([`crate::proto::codes::dhcp_state`]). ACTIVE is sent as DHCPLEASEACTIVE,
    /// every other state as DHCPLEASEUNASSIGNED (RFC 6926 §8.3).
    pub state: u8,
    /// Client last transaction time, absolute Unix seconds (0 = unknown).
    pub cltt: u32,
    /// When the current state began, absolute Unix seconds.
    pub state_start: u32,
    /// When the current state times out (lease expiry for ACTIVE), absolute Unix seconds;
    /// 0 when the state has no timeout; `u32::MAX` never (an infinite lease, RFC 2131 §3.3:
    /// option 51 is then 0xffffffff).
    pub expires: u32,
    /// Option 82 circuit-id (sub-option 1) as last seen.
    pub circuit_id: Option<&'a [u8]>,
    /// Option 82 remote-id (sub-option 2) as last seen, or the DHCPv6 relay's OPTION_REMOTE_ID
    /// payload for 4o6 (docs/DESIGN.md section 4: v6 QUERY_BY_REMOTE_ID <-> 82/2).
    pub remote_id: Option<&'a [u8]>,
    /// Option 82 relay-id (sub-option 12) as last seen, or the DHCPv6 relay's OPTION_RELAY_ID
    /// for 4o6 (v6 QUERY_BY_RELAY_ID <-> 82/12).
    pub relay_id: Option<&'a [u8]>,
    /// The softwire source (RFC 8539 option 109) the client sent, if any.
    pub softwire_src: Option<Ipv6Addr>,
    /// The DHCPv6 side, for a binding made over DHCP4o6.
    pub v6: Option<V6Context<'a>>,
    /// The data-source flags (option 157); bit 0x01 = REMOTE.
    pub data_source: u8,
}

impl V4Record<'_> {
    /// A pool address with no binding: dhcp-state AVAILABLE and nothing else known (RFC 6926
    /// §6.2, a query for all configured addresses lists it as DHCPLEASEUNASSIGNED).
    pub fn available(addr: Ipv4Addr) -> V4Record<'static> {
        V4Record {
            addr,
            port_params: None,
            htype: 0,
            chaddr: &[],
            client_id: None,
            state: crate::proto::codes::dhcp_state::AVAILABLE,
            cltt: 0,
            state_start: 0,
            expires: 0,
            circuit_id: None,
            remote_id: None,
            relay_id: None,
            softwire_src: None,
            v6: None,
            data_source: 0,
        }
    }
}

/// One IPv6 address of a plain DHCPv6 binding (IA_NA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Addr {
    pub addr: Ipv6Addr,
    /// When the preferred lifetime ends, absolute Unix seconds (`u32::MAX` = infinity).
    pub preferred_until: u32,
    /// When the valid lifetime ends, absolute Unix seconds (`u32::MAX` = infinity).
    pub valid_until: u32,
}

/// One delegated prefix of a plain DHCPv6 binding (IA_PD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Prefix {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// When the preferred lifetime ends, absolute Unix seconds (`u32::MAX` = infinity).
    pub preferred_until: u32,
    /// When the valid lifetime ends, absolute Unix seconds (`u32::MAX` = infinity).
    pub valid_until: u32,
}

/// One plain DHCPv6 binding: one client (DUID) on one link, with its addresses and prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Record<'a> {
    /// The client's DUID (goes in OPTION_CLIENTID inside OPTION_CLIENT_DATA).
    pub duid: &'a [u8],
    /// The link the binding is on.
    pub link: Ipv6Addr,
    pub iana: &'a [V6Addr],
    pub iapd: &'a [V6Prefix],
    /// Client last transaction time, absolute Unix seconds.
    pub cltt: u32,
    /// The relay's OPTION_RELAY_ID payload, as last recorded.
    pub relay_id: Option<&'a [u8]>,
    /// The relay's OPTION_REMOTE_ID payload (enterprise number + id), as last recorded.
    pub remote_id: Option<&'a [u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psid_is_left_aligned_on_the_wire() {
        let p = PortParams {
            offset: 0,
            psid_len: 4,
            psid: 3,
        };
        assert_eq!(p.wire_psid(), 0x3000);
        assert_eq!(PortParams::from_wire(0, 4, 0x3000), Some(p));
        // A bit below the PSID is set: not a valid field.
        assert_eq!(PortParams::from_wire(0, 4, 0x3001), None);
        assert_eq!(PortParams::from_wire(16, 4, 0), None);
        assert_eq!(PortParams::from_wire(6, 16, 0), None);
        let full = PortParams {
            offset: 0,
            psid_len: 16,
            psid: 0xbeef,
        };
        assert_eq!(full.wire_psid(), 0xbeef);
        assert_eq!(PortParams::from_wire(0, 16, 0xbeef), Some(full));
        assert_eq!(PortParams::from_wire(0, 0, 0), Some(PortParams::default()));
        assert_eq!(PortParams::from_wire(0, 0, 1), None);
    }
}
