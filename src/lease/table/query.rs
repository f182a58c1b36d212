//! The queries the table answers ([`V4Query`], [`V6Query`]) and the resumable scan's cursor.

use std::net::Ipv6Addr;

/// The primary selector of a v4 / 4o6 bulk query (RFC 6926 §6.2; the draft's 4o6 pairs,
/// docs/DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V4Select {
    /// Every binding in the table, ACTIVE or not (a query with no primary selector).
    All,
    /// By hardware address: htype and chaddr both match (RFC 6926 §7.1.1).
    Chaddr { htype: u8, chaddr: Vec<u8> },
    /// By option 61 payload, compared whole (RFC 6926 §7.1.2).
    ClientId(Vec<u8>),
    /// By option 82 remote-id / the 4o6 relay's OPTION_REMOTE_ID payload (RFC 6926 §7.1.3).
    RemoteId(Vec<u8>),
    /// By option 82 relay-id / the 4o6 relay's OPTION_RELAY_ID payload (RFC 6926 §7.1.4).
    RelayId(Vec<u8>),
    /// 4o6 only: the binding whose softwire source (option 109) is this address.
    SoftwireSrc(Ipv6Addr),
    /// 4o6 only: bindings whose link has the same /64 as this address.
    Link(Ipv6Addr),
}

/// A v4 / 4o6 bulk query as the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Query {
    /// The primary selector.
    pub select: V4Select,
    /// query-start-time (RFC 6926 §6.2.6): the binding's cltt or state start is at or after it.
    pub changed_since: Option<u32>,
    /// query-end-time (RFC 6926 §6.2.7): together with `changed_since`, the same one of cltt or
    /// state start must fall inside `[since, until]` (RFC 6926 §8.2).
    pub changed_until: Option<u32>,
    /// Only bindings made over DHCP4o6 (with a DHCPv6 context).
    pub only_4o6: bool,
    /// Only ACTIVE bindings: the current bindings a query by hardware address, client-id,
    /// remote-id or relay-id returns (RFC 6926 §8.2); the time window narrows them further.
    pub only_active: bool,
}

impl V4Query {
    /// Every v4 / 4o6 binding, in every state, with no time window.
    pub fn all() -> V4Query {
        V4Query {
            select: V4Select::All,
            changed_since: None,
            changed_until: None,
            only_4o6: false,
            only_active: false,
        }
    }
}

/// The query type of a plain DHCPv6 bulk query (RFC 5460 §5.2 / RFC 5007 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V6Select {
    /// Every plain v6 binding (not a query type of RFC 5460: snapshots and catch-up use it).
    All,
    /// QUERY_BY_ADDRESS: the binding holding the address in an IA_NA or a delegated prefix
    /// containing it.
    Address(Ipv6Addr),
    /// QUERY_BY_CLIENTID: by DUID.
    ClientId(Vec<u8>),
    /// QUERY_BY_RELAY_ID: by the recorded OPTION_RELAY_ID payload.
    RelayId(Vec<u8>),
    /// QUERY_BY_LINK_ADDRESS: bindings whose link has the same /64 as this address.
    Link(Ipv6Addr),
    /// QUERY_BY_REMOTE_ID: by the recorded OPTION_REMOTE_ID payload.
    RemoteId(Vec<u8>),
}

/// A plain DHCPv6 bulk query as the table sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Query {
    /// The query type.
    pub select: V6Select,
    /// For RelayId / RemoteId with a non-zero link-address (RFC 5460 §5.2.2): only bindings
    /// whose link has the same /64 as this address.
    pub link_filter: Option<Ipv6Addr>,
    /// Only bindings whose cltt is at or after this time.
    pub changed_since: Option<u32>,
    /// Only bindings whose cltt is at or before this time.
    pub changed_until: Option<u32>,
}

impl V6Query {
    /// Every plain v6 binding, with no time window.
    pub fn all() -> V6Query {
        V6Query {
            select: V6Select::All,
            link_filter: None,
            changed_since: None,
            changed_until: None,
        }
    }
}

/// Where a scan stands. Holds no borrow of the table; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCursor {
    pub(super) start_seq: u64,
    pub(super) next: u32,
    pub(super) done: bool,
}

impl ScanCursor {
    /// True once a scan call returned [`ScanStep::Done`].
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// What a scan call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStep {
    /// Every matching binding has been emitted.
    Done,
    /// The budget ran out, or `emit` refused a record (it will be offered again): call again.
    More,
}
