//! Binding change events: what the 4o6 authority (and any other lease feed) emits for every change
//! it makes to a [`LeaseTable`](super::LeaseTable), and what the journal, the history ring and
//! active leasequery consume (docs/DESIGN.md section 3, rules 5-7).
//!
//! A change carries the binding's whole state *after* the change (the latest state wins:
//! RFC 7653 section 7, RFC 7724 section 6.2), so replaying changes in order with
//! [`LeaseTable::upsert_v4`](super::LeaseTable::upsert_v4) rebuilds the table, and a subscriber's
//! backlog may coalesce changes of one binding into its last one.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::binding::{V4Binding, V6Binding};
use crate::proto::record::PortParams;

/// Why a binding changed (for counters, logs and the journal; the wire form follows the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeKind {
    /// A new lease (DHCPACK in SELECTING or INIT-REBOOT for an address the client did not hold).
    New = 1,
    /// A renewal or rebinding (same address, new expiry).
    Renew = 2,
    /// DHCPRELEASE.
    Release = 3,
    /// The lease timed out.
    Expire = 4,
    /// DHCPDECLINE: the address is held as abandoned.
    Decline = 5,
    /// The softwire source (option 109) changed on a renewal.
    SoftwireChange = 6,
    /// An offered address was reserved (state OFFERED is not a lease; not published to requestors).
    Offer = 7,
    /// The binding was removed from the table (for example reused after expiry under another key).
    Remove = 8,
    /// Loaded from an import file or another feed.
    Feed = 9,
}

impl ChangeKind {
    /// The kind for its number, as written in the journal.
    pub fn from_u8(v: u8) -> Option<ChangeKind> {
        Some(match v {
            1 => ChangeKind::New,
            2 => ChangeKind::Renew,
            3 => ChangeKind::Release,
            4 => ChangeKind::Expire,
            5 => ChangeKind::Decline,
            6 => ChangeKind::SoftwireChange,
            7 => ChangeKind::Offer,
            8 => ChangeKind::Remove,
            9 => ChangeKind::Feed,
            _ => return None,
        })
    }
}

/// The key of a v4/4o6 binding: its address and, for a shared address, its port set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V4Key {
    /// The leased address.
    pub addr: Ipv4Addr,
    /// The port set (RFC 7618), `None` for a full address.
    pub port_params: Option<PortParams>,
}

/// The key of a plain v6 binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V6Key {
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// The link.
    pub link: Ipv6Addr,
}

/// One change to one binding, with the binding's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A v4 or 4o6 binding changed; `binding` is its new state (for [`ChangeKind::Remove`], its
    /// last state).
    V4 {
        /// When, absolute Unix seconds.
        at: u32,
        /// Why.
        kind: ChangeKind,
        /// The binding after the change.
        binding: V4Binding,
    },
    /// A plain v6 binding changed.
    V6 {
        /// When, absolute Unix seconds.
        at: u32,
        /// Why.
        kind: ChangeKind,
        /// The binding after the change.
        binding: V6Binding,
    },
}

impl Change {
    /// When the change happened.
    pub fn at(&self) -> u32 {
        match self {
            Change::V4 { at, .. } | Change::V6 { at, .. } => *at,
        }
    }

    /// Why it happened.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::V4 { kind, .. } | Change::V6 { kind, .. } => *kind,
        }
    }
}

impl V4Binding {
    /// This binding's key.
    pub fn key(&self) -> V4Key {
        V4Key {
            addr: self.addr,
            port_params: self.port_params,
        }
    }
}

impl V6Binding {
    /// This binding's key.
    pub fn key(&self) -> V6Key {
        V6Key {
            duid: self.duid.clone(),
            link: self.link,
        }
    }
}
