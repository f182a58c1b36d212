//! The bindings a requestor has learnt from bulk answers and active updates.

use std::net::{Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use super::reply::Binding;
use crate::proto::record::PortParams;

/// What a binding is keyed by: a v4 / DHCP4o6 binding by its address and port set (RFC 7618:
/// one IPv4 address shared by PSID), a v6 one by its client and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// (IPv4, PSID).
    V4 {
        /// ciaddr.
        addr: Ipv4Addr,
        /// Option 159, when the address is shared.
        psid: Option<PortParams>,
    },
    /// (DUID, address or prefix).
    V6 {
        /// The client's DUID.
        duid: Vec<u8>,
        /// Its first address or prefix.
        addr: Ipv6Addr,
    },
}

/// What the table knows of a binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value {
    /// Option 61 (v4 / DHCP4o6).
    pub client_id: Option<Vec<u8>>,
    /// Option 109 (DHCP4o6).
    pub softwire: Option<Ipv6Addr>,
    /// Bound (DHCPLEASEACTIVE, a non-zero valid lifetime), else unassigned or expired.
    pub active: bool,
}

/// The bindings learnt so far; the latest answer about a key wins.
#[derive(Debug, Clone, Default)]
pub struct Table {
    map: HashMap<Key, Value>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Applies a binding from a bulk answer or an active update; returns its key and what the
    /// table held before, or `None` when the binding does not decode.
    pub fn apply(&mut self, b: &Binding<'_>) -> Option<(Key, Option<Value>)> {
        let (key, value) = if let Some(v4) = b.v4_binding() {
            (
                Key::V4 {
                    addr: v4.addr,
                    psid: v4.port_params,
                },
                Value {
                    client_id: v4.client_id.map(<[u8]>::to_vec),
                    softwire: v4.softwire,
                    active: v4.active,
                },
            )
        } else {
            let v6 = b.v6_binding()?;
            (
                Key::V6 {
                    duid: v6.duid.to_vec(),
                    addr: v6.addr,
                },
                Value {
                    client_id: None,
                    softwire: None,
                    active: v6.active,
                },
            )
        };
        let old = self.map.insert(key.clone(), value);
        Some((key, old))
    }

    /// What the table holds for `key`.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.map.get(key)
    }

    /// Every binding (in no order).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.map.iter()
    }

    /// The bound ones.
    pub fn active(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.map.iter().filter(|(_, v)| v.active)
    }

    /// Bindings held (bound or not).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was learnt.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Forgets everything (before a reload after DataMissing).
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
