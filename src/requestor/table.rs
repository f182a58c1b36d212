//! The bindings a requestor has learnt from bulk answers and active updates.
//!
//! Compact, since `lqctl watch` holds a whole server's bindings (goal: under 200 octets per
//! binding held at 1M, README "lqctl watch"): a v4 / DHCP4o6 key is packed into 8 octets,
//! its value is a client-id held inline up to 16 octets and the softwire's 16 octets, so an
//! entry of the v4 map is 56 octets plus hashbrown's control byte and spare capacity. The
//! public [`Key`] and [`Value`] are built on the way out.

use std::net::{Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use smallvec::SmallVec;

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

/// A v4 key in 8 octets: the address in the high half, then 1 (shared) | offset (7 bits) |
/// PSID length (8 bits) | PSID (16 bits), or 0 for a full address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct K4(u64);

impl K4 {
    fn new(addr: Ipv4Addr, psid: Option<PortParams>) -> K4 {
        let low = psid.map_or(0, |p| {
            1 << 31
                | u64::from(p.offset & 0x7f) << 24
                | u64::from(p.psid_len) << 16
                | u64::from(p.psid)
        });
        K4(u64::from(u32::from(addr)) << 32 | low)
    }

    fn key(self) -> Key {
        let low = self.0 as u32;
        Key::V4 {
            addr: Ipv4Addr::from((self.0 >> 32) as u32),
            psid: (low >> 31 == 1).then_some(PortParams {
                offset: (low >> 24) as u8 & 0x7f,
                psid_len: (low >> 16) as u8,
                psid: low as u16,
            }),
        }
    }
}

const HAS_CLIENT_ID: u8 = 1;
const HAS_SOFTWIRE: u8 = 2;
const ACTIVE: u8 = 4;
/// Set by every insert, cleared by [`Table::unmark`]: what a reload has seen.
const SEEN: u8 = 8;

/// A v4 value: the client-id inline up to 16 octets, the softwire, flags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct V4Val {
    client_id: SmallVec<[u8; 16]>,
    softwire: [u8; 16],
    flags: u8,
}

impl V4Val {
    fn new(v: &Value) -> V4Val {
        let mut flags = 0;
        if v.client_id.is_some() {
            flags |= HAS_CLIENT_ID;
        }
        if v.softwire.is_some() {
            flags |= HAS_SOFTWIRE;
        }
        if v.active {
            flags |= ACTIVE;
        }
        flags |= SEEN;
        V4Val {
            client_id: v
                .client_id
                .as_deref()
                .map(SmallVec::from_slice)
                .unwrap_or_default(),
            softwire: v.softwire.map_or([0; 16], |s| s.octets()),
            flags,
        }
    }

    fn value(&self) -> Value {
        Value {
            client_id: (self.flags & HAS_CLIENT_ID != 0).then(|| self.client_id.to_vec()),
            softwire: (self.flags & HAS_SOFTWIRE != 0).then(|| Ipv6Addr::from(self.softwire)),
            active: self.flags & ACTIVE != 0,
        }
    }
}

/// A v6 key: the DUID (boxed, no spare capacity) and the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct K6 {
    duid: Box<[u8]>,
    addr: [u8; 16],
}

/// The bindings learnt so far; the latest answer about a key wins.
#[derive(Debug, Clone, Default)]
pub struct Table {
    v4: HashMap<K4, V4Val>,
    /// A v6 binding's value is only whether it is bound ([`ACTIVE`]) and [`SEEN`].
    v6: HashMap<K6, u8>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// The key and value a binding from a bulk answer or an active update reports, or `None`
    /// when it does not decode.
    pub fn decode(b: &Binding<'_>) -> Option<(Key, Value)> {
        if let Some(v4) = b.v4_binding() {
            return Some((
                Key::V4 {
                    addr: v4.addr,
                    psid: v4.port_params,
                },
                Value {
                    client_id: v4.client_id.map(<[u8]>::to_vec),
                    softwire: v4.softwire,
                    active: v4.active,
                },
            ));
        }
        let v6 = b.v6_binding()?;
        Some((
            Key::V6 {
                duid: v6.duid.to_vec(),
                addr: v6.addr,
            },
            Value {
                client_id: None,
                softwire: None,
                active: v6.active,
            },
        ))
    }

    /// Applies a binding from a bulk answer or an active update; returns its key and what the
    /// table held before, or `None` when the binding does not decode.
    pub fn apply(&mut self, b: &Binding<'_>) -> Option<(Key, Option<Value>)> {
        let (key, value) = Table::decode(b)?;
        let old = self.insert(&key, &value);
        Some((key, old))
    }

    /// Sets what the table holds for `key`; returns what it held before.
    pub fn insert(&mut self, key: &Key, value: &Value) -> Option<Value> {
        match key {
            Key::V4 { addr, psid } => self
                .v4
                .insert(K4::new(*addr, *psid), V4Val::new(value))
                .map(|v| v.value()),
            Key::V6 { duid, addr } => self
                .v6
                .insert(
                    K6 {
                        duid: duid.as_slice().into(),
                        addr: addr.octets(),
                    },
                    v6_flags(value.active),
                )
                .map(v6_value),
        }
    }

    /// Forgets `key`; returns what the table held.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        match key {
            Key::V4 { addr, psid } => self.v4.remove(&K4::new(*addr, *psid)).map(|v| v.value()),
            Key::V6 { duid, addr } => self
                .v6
                .remove(&K6 {
                    duid: duid.as_slice().into(),
                    addr: addr.octets(),
                })
                .map(v6_value),
        }
    }

    /// What the table holds for `key`.
    pub fn get(&self, key: &Key) -> Option<Value> {
        match key {
            Key::V4 { addr, psid } => self.v4.get(&K4::new(*addr, *psid)).map(V4Val::value),
            Key::V6 { duid, addr } => self
                .v6
                .get(&K6 {
                    duid: duid.as_slice().into(),
                    addr: addr.octets(),
                })
                .copied()
                .map(v6_value),
        }
    }

    /// Every binding (in no order).
    pub fn iter(&self) -> impl Iterator<Item = (Key, Value)> + '_ {
        let v4 = self.v4.iter().map(|(k, v)| (k.key(), v.value()));
        let v6 = self.v6.iter().map(|(k, a)| {
            (
                Key::V6 {
                    duid: k.duid.to_vec(),
                    addr: Ipv6Addr::from(k.addr),
                },
                v6_value(*a),
            )
        });
        v4.chain(v6)
    }

    /// The bound ones.
    pub fn active(&self) -> impl Iterator<Item = (Key, Value)> + '_ {
        self.iter().filter(|(_, v)| v.active)
    }

    /// Bindings held (bound or not).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when nothing was learnt.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (before a reload after DataMissing).
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    /// Clears every binding's seen mark (a reload starts; see [`Table::sweep`]).
    pub fn unmark(&mut self) {
        self.v4.values_mut().for_each(|v| v.flags &= !SEEN);
        self.v6.values_mut().for_each(|f| *f &= !SEEN);
    }

    /// Removes and returns the bindings not inserted since [`Table::unmark`] (a reload ends:
    /// what it did not report is gone).
    pub fn sweep(&mut self) -> Vec<(Key, Value)> {
        let mut gone = Vec::new();
        self.v4.retain(|k, v| {
            let keep = v.flags & SEEN != 0;
            if !keep {
                gone.push((k.key(), v.value()));
            }
            keep
        });
        self.v6.retain(|k, f| {
            let keep = *f & SEEN != 0;
            if !keep {
                gone.push((
                    Key::V6 {
                        duid: k.duid.to_vec(),
                        addr: Ipv6Addr::from(k.addr),
                    },
                    v6_value(*f),
                ));
            }
            keep
        });
        gone
    }

    /// Reserves room for `n` more v4 bindings (a caller that knows the size to come).
    pub fn reserve(&mut self, n: usize) {
        self.v4.reserve(n);
    }
}

fn v6_flags(active: bool) -> u8 {
    SEEN | if active { ACTIVE } else { 0 }
}

fn v6_value(flags: u8) -> Value {
    Value {
        client_id: None,
        softwire: None,
        active: flags & ACTIVE != 0,
    }
}

/// The octets of one v4 entry of the table's map (before hashbrown's control byte).
pub fn v4_entry_size() -> usize {
    std::mem::size_of::<(K4, V4Val)>()
}
