//! Owned bindings: what the import (and later the 4o6 authority) hands to
//! [`LeaseTable`](super::LeaseTable) to insert or replace. The table stores them compactly and
//! lends them back as the borrowed records of [`crate::proto::record`].

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::record::{PortParams, V4Record, V6Addr, V6Prefix, V6Record};

/// One DHCPv4 or DHCP4o6 binding, keyed by `(addr, port_params)` (RFC 6926 §6.1 binding
/// information; RFC 7618 port sets; RFC 8539 softwire source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Binding {
    /// The leased address.
    pub addr: Ipv4Addr,
    /// The port set of a shared address (RFC 7618); `None` for a full address.
    pub port_params: Option<PortParams>,
    /// BOOTP htype (0 when unknown).
    pub htype: u8,
    /// Client hardware address, at most 16 octets (empty when unknown).
    pub chaddr: Vec<u8>,
    /// Option 61 payload (type octet + identifier; RFC 4361 form: 255, IAID, DUID).
    pub client_id: Option<Vec<u8>>,
    /// RFC 6926 dhcp-state ([`crate::proto::codes::dhcp_state`]).
    pub state: u8,
    /// Client last transaction time, absolute Unix seconds (0 = unknown).
    pub cltt: u32,
    /// When the current state began, absolute Unix seconds.
    pub state_start: u32,
    /// When the current state times out, absolute Unix seconds (0 = no timeout; `u32::MAX` =
    /// never: an infinite lease).
    pub expires: u32,
    /// Option 82 circuit-id (sub-option 1) as last seen.
    pub circuit_id: Option<Vec<u8>>,
    /// Option 82 remote-id (sub-option 2), or the DHCPv6 relay's OPTION_REMOTE_ID payload (4o6).
    pub remote_id: Option<Vec<u8>>,
    /// Option 82 relay-id (sub-option 12), or the DHCPv6 relay's OPTION_RELAY_ID payload (4o6).
    pub relay_id: Option<Vec<u8>>,
    /// The softwire source address from DHCPv4 option 109 (RFC 8539).
    pub softwire_src: Option<Ipv6Addr>,
    /// The DHCPv6 side of a binding made over DHCP4o6 (RFC 7341).
    pub v6: Option<V6ContextBinding>,
    /// Data-source flags (option 157, RFC 6926 §6.2.8).
    pub data_source: u8,
}

/// The owned form of [`crate::proto::record::V6Context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6ContextBinding {
    /// IPv6 source of the client's DHCPV4-QUERY.
    pub client_src: Ipv6Addr,
    /// The link the binding's subnet was chosen by (`::` when unknown).
    pub link: Ipv6Addr,
    /// The innermost Relay-Forward of the query, if relayed.
    pub relay: Option<RelayBinding>,
}

/// The owned form of [`crate::proto::record::RelayRecord`] (RFC 5460 §5.2.2 OPTION_LQ_RELAY_DATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayBinding {
    /// The relay's hop-count.
    pub hop_count: u8,
    /// The relay's link-address.
    pub link_address: Ipv6Addr,
    /// The relay's peer-address.
    pub peer_address: Ipv6Addr,
    /// OPTION_INTERFACE_ID payload.
    pub interface_id: Option<Vec<u8>>,
    /// OPTION_RELAY_ID payload.
    pub relay_id: Option<Vec<u8>>,
    /// OPTION_REMOTE_ID payload.
    pub remote_id: Option<Vec<u8>>,
}

/// One plain DHCPv6 binding, keyed by `(duid, link)` (RFC 5460 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Binding {
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// The link the binding is on.
    pub link: Ipv6Addr,
    /// IA_NA addresses with absolute lifetimes.
    pub iana: Vec<V6Addr>,
    /// IA_PD prefixes with absolute lifetimes.
    pub iapd: Vec<V6Prefix>,
    /// Client last transaction time, absolute Unix seconds.
    pub cltt: u32,
    /// The relay's OPTION_RELAY_ID payload, as last recorded.
    pub relay_id: Option<Vec<u8>>,
    /// The relay's OPTION_REMOTE_ID payload (enterprise number + id), as last recorded.
    pub remote_id: Option<Vec<u8>>,
}

impl V4Binding {
    /// The owned binding of a table record (snapshots, the authority, tests).
    pub fn from_record(r: &V4Record<'_>) -> V4Binding {
        V4Binding {
            addr: r.addr,
            port_params: r.port_params,
            htype: r.htype,
            chaddr: r.chaddr.to_vec(),
            client_id: r.client_id.map(<[u8]>::to_vec),
            state: r.state,
            cltt: r.cltt,
            state_start: r.state_start,
            expires: r.expires,
            circuit_id: r.circuit_id.map(<[u8]>::to_vec),
            remote_id: r.remote_id.map(<[u8]>::to_vec),
            relay_id: r.relay_id.map(<[u8]>::to_vec),
            softwire_src: r.softwire_src,
            v6: r.v6.map(|c| V6ContextBinding {
                client_src: c.client_src,
                link: c.link,
                relay: c.relay.map(|x| RelayBinding {
                    hop_count: x.hop_count,
                    link_address: x.link_address,
                    peer_address: x.peer_address,
                    interface_id: x.interface_id.map(<[u8]>::to_vec),
                    relay_id: x.relay_id.map(<[u8]>::to_vec),
                    remote_id: x.remote_id.map(<[u8]>::to_vec),
                }),
            }),
            data_source: r.data_source,
        }
    }
}

impl V6Binding {
    /// The owned binding of a plain v6 table record.
    pub fn from_record(r: &V6Record<'_>) -> V6Binding {
        V6Binding {
            duid: r.duid.to_vec(),
            link: r.link,
            iana: r.iana.to_vec(),
            iapd: r.iapd.to_vec(),
            cltt: r.cltt,
            relay_id: r.relay_id.map(<[u8]>::to_vec),
            remote_id: r.remote_id.map(<[u8]>::to_vec),
        }
    }
}
