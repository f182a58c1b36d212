//! Which binding changes an active query follows (RFC 7653 §6.2.1 query types as filters,
//! RFC 7724: every v4 binding, the draft: 4o6 bindings only).

use std::net::Ipv6Addr;

use crate::lease::{Change, V4Binding, V6Binding};
use crate::proto::encoder::duid_of_client_id;

/// Which binding changes an active query follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveFilter {
    /// Plain DHCPv6 bindings: all (`None`) or one query type of RFC 5007 / RFC 5460.
    V6(Option<V6Filter>),
    /// DHCPv4 active leasequery: every v4 and 4o6 binding (RFC 7724 has no query types).
    V4All,
    /// DHCP4o6: 4o6 bindings only, all (`None`) or filtered by the v6 query type.
    Dhcp4o6(Option<V6Filter>),
}

/// A v6 query type used as a filter (RFC 7653 §6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V6Filter {
    /// QUERY_BY_ADDRESS: v6, the binding holds the address (IA_NA) or a prefix containing it;
    /// 4o6, the softwire source is the address.
    Address(Ipv6Addr),
    /// QUERY_BY_CLIENTID: v6, the DUID; 4o6, the DUID inside the RFC 4361 client-id.
    ClientId(Vec<u8>),
    /// QUERY_BY_RELAY_ID, with an optional link restriction (/64).
    RelayId(Vec<u8>, Option<Ipv6Addr>),
    /// QUERY_BY_LINK_ADDRESS (/64).
    Link(Ipv6Addr),
    /// QUERY_BY_REMOTE_ID, with an optional link restriction (/64).
    RemoteId(Vec<u8>, Option<Ipv6Addr>),
}

fn same64(a: Ipv6Addr, b: Ipv6Addr) -> bool {
    (u128::from(a) >> 64) == (u128::from(b) >> 64)
}

fn in_prefix(a: Ipv6Addr, p: Ipv6Addr, len: u8) -> bool {
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(a) & mask == u128::from(p) & mask
}

impl V6Filter {
    fn matches_v6(&self, b: &V6Binding) -> bool {
        match self {
            V6Filter::Address(a) => {
                b.iana.iter().any(|x| x.addr == *a)
                    || b.iapd.iter().any(|p| in_prefix(*a, p.prefix, p.prefix_len))
            }
            V6Filter::ClientId(d) => b.duid == *d,
            V6Filter::RelayId(r, l) => {
                b.relay_id.as_deref() == Some(&r[..]) && l.is_none_or(|l| same64(l, b.link))
            }
            V6Filter::Link(l) => same64(*l, b.link),
            V6Filter::RemoteId(r, l) => {
                b.remote_id.as_deref() == Some(&r[..]) && l.is_none_or(|l| same64(l, b.link))
            }
        }
    }

    fn matches_4o6(&self, b: &V4Binding) -> bool {
        let link = b.v6.as_ref().map(|c| c.link);
        let on = |l: &Option<Ipv6Addr>| match (l, link) {
            (None, _) => true,
            (Some(l), Some(k)) => same64(*l, k),
            (Some(_), None) => false,
        };
        match self {
            V6Filter::Address(a) => b.softwire_src == Some(*a),
            V6Filter::ClientId(d) => b
                .client_id
                .as_deref()
                .and_then(duid_of_client_id)
                .is_some_and(|x| x == &d[..]),
            V6Filter::RelayId(r, l) => b.relay_id.as_deref() == Some(&r[..]) && on(l),
            V6Filter::Link(l) => link.is_some_and(|k| same64(*l, k)),
            V6Filter::RemoteId(r, l) => b.remote_id.as_deref() == Some(&r[..]) && on(l),
        }
    }
}

impl ActiveFilter {
    /// True when the query follows the binding this change is about.
    pub fn matches(&self, change: &Change) -> bool {
        match (self, change) {
            (ActiveFilter::V6(f), Change::V6 { binding, .. }) => {
                f.as_ref().is_none_or(|f| f.matches_v6(binding))
            }
            (ActiveFilter::V4All, Change::V4 { .. }) => true,
            (ActiveFilter::Dhcp4o6(f), Change::V4 { binding, .. }) => {
                binding.v6.is_some() && f.as_ref().is_none_or(|f| f.matches_4o6(binding))
            }
            _ => false,
        }
    }

    /// True when the query can only follow plain DHCPv6 bindings.
    pub fn is_v6(&self) -> bool {
        matches!(self, ActiveFilter::V6(_))
    }
}
