//! Pools and PSIDs: the unit of a pool (an address, and on a shared subnet a PSID, RFC 7618),
//! this shard's part of each subnet, the subnet a selector address picks (RFC 7618 §8: 159 or
//! not), and allocation (RFC 7618 §8.1, RFC 2131 §4.3.1).

use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::decode::Req;
use super::Authority;
use crate::lease::{shard_of_addr, LeaseTable, V4Binding};
use crate::proto::codes::dhcp_state;
use crate::proto::record::PortParams;

/// A unit of the pool: an address, and for a shared subnet a PSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Unit {
    pub(super) addr: u32,
    pub(super) psid: Option<u16>,
}

#[derive(Debug, Clone)]
pub(super) struct PoolState {
    /// Next never-looked-at index into this shard's units of the subnet (address-major).
    pub(super) cursor: u64,
    /// Units whose hold ended (validated again when taken).
    pub(super) free: VecDeque<Unit>,
    pub(super) in_free: HashSet<Unit>,
}

pub(super) fn in_prefix(a: Ipv6Addr, (p, len): (Ipv6Addr, u8)) -> bool {
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    u128::from(a) & m == u128::from(p)
}

impl Authority {
    pub(super) fn push_free(&mut self, unit: Unit) {
        if let Some(s) = self.subnet_of(unit.addr) {
            if let Some(p) = self.pools.get_mut(s) {
                if p.in_free.insert(unit) {
                    p.free.push_back(unit);
                }
            }
        }
    }

    pub(super) fn owns(&self, addr: u32) -> bool {
        shard_of_addr(Ipv4Addr::from(addr), self.shards) == self.shard
    }

    pub(super) fn subnet_of(&self, addr: u32) -> Option<usize> {
        self.cfg
            .subnets
            .iter()
            .position(|s| s.contains(Ipv4Addr::from(addr)))
    }

    pub(super) fn pp(&self, subnet: usize, unit: Unit) -> Option<PortParams> {
        let s = self.cfg.subnets.get(subnet)?;
        let (offset, psid_len) = s.psid?;
        Some(PortParams {
            offset,
            psid_len,
            psid: unit.psid?,
        })
    }

    pub(super) fn binding(&self, table: &LeaseTable, unit: Unit) -> Option<V4Binding> {
        let s = self.subnet_of(unit.addr)?;
        let r = table.get_v4(Ipv4Addr::from(unit.addr), self.pp(s, unit))?;
        Some(V4Binding::from_record(&r))
    }

    /// Whether `unit` may be given to `client` now.
    pub(super) fn is_free_for(
        &self,
        table: &LeaseTable,
        unit: Unit,
        client: &[u8],
        now: u32,
    ) -> bool {
        if self.offered.get(&unit).is_some_and(|c| c != client) {
            return false;
        }
        match self.binding(table, unit) {
            None => true,
            Some(b) if b.client_id.as_deref() == Some(client) => b.state != dhcp_state::ABANDONED,
            Some(b) => b.state != dhcp_state::ACTIVE && b.expires <= now,
        }
    }

    /// The subnet for a selector address and PRL (see [`AuthorityConfig`]); `Err(true)` when the
    /// client needs 159, `Err(false)` when nothing matches.
    pub(super) fn select(&self, selector: Ipv6Addr, wants_159: bool) -> Result<usize, bool> {
        let mut best: Option<u8> = None;
        for s in &self.cfg.subnets {
            for &l in &s.links {
                if in_prefix(selector, l) && best.is_none_or(|b| l.1 > b) {
                    best = Some(l.1);
                }
            }
        }
        let best = best.ok_or(false)?;
        let cands: Vec<usize> = self
            .cfg
            .subnets
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.links
                    .iter()
                    .any(|&l| l.1 == best && in_prefix(selector, l))
            })
            .map(|(i, _)| i)
            .collect();
        let shared = |i: &&usize| self.cfg.subnets.get(**i).is_some_and(|s| s.psid.is_some());
        if wants_159 {
            if let Some(&i) = cands.iter().find(shared) {
                return Ok(i);
            }
            return cands.first().copied().ok_or(false);
        }
        let shared_only = cands
            .iter()
            .filter(shared)
            .any(|&i| self.cfg.subnets.get(i).is_some_and(|s| s.shared_only));
        match cands.iter().find(|i| !shared(i)) {
            Some(&i) if !shared_only => Ok(i),
            _ => Err(true),
        }
    }

    /// A unit from `subnet` for `client`, following RFC 7618 §8.1 / RFC 2131 §4.3.1: its current
    /// or previous unit, the requested one, a unit whose hold ended, a never-used unit.
    pub(super) fn allocate(
        &mut self,
        table: &LeaseTable,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
    ) -> Option<Unit> {
        let s = self.cfg.subnets.get(subnet)?.clone();
        if let Some(e) = self.dir.get(&r.client) {
            if s.contains(Ipv4Addr::from(e.unit.addr))
                && e.unit.psid.is_some() == s.psid.is_some()
                && self.is_free_for(table, e.unit, &r.client, now)
            {
                return Some(e.unit);
            }
        }
        if let Some(a) = r
            .requested
            .filter(|&a| s.contains(a) && self.owns(a.into()))
        {
            let psid = match s.psid {
                None => Some(None),
                Some((off, k)) => r
                    .req_pp
                    .filter(|p| p.offset == off && p.psid_len == k && p.psid >= s.first_psid)
                    .map(|p| Some(p.psid)),
            };
            if let Some(psid) = psid {
                let u = Unit {
                    addr: a.into(),
                    psid,
                };
                if self.is_free_for(table, u, &r.client, now) {
                    return Some(u);
                }
            }
        }
        while let Some(u) = self.pools.get_mut(subnet)?.free.pop_front() {
            if let Some(p) = self.pools.get_mut(subnet) {
                p.in_free.remove(&u);
            }
            if self.is_free_for(table, u, &r.client, now) {
                return Some(u);
            }
        }
        // Never-used units, address-major: index i -> address first + i / per, PSID
        // first_psid + i % per.
        let per = u64::from(s.psids() - u32::from(s.first_psid));
        let total = (u64::from(u32::from(s.last)) - u64::from(u32::from(s.first)) + 1) * per;
        loop {
            let i = self.pools.get(subnet)?.cursor;
            if i >= total {
                return None;
            }
            let addr = u32::from(s.first) + (i / per) as u32;
            if !self.owns(addr) {
                // Skip the whole address.
                if let Some(p) = self.pools.get_mut(subnet) {
                    p.cursor = (i / per + 1) * per;
                }
                continue;
            }
            if let Some(p) = self.pools.get_mut(subnet) {
                p.cursor = i + 1;
            }
            let u = Unit {
                addr,
                psid: s.psid.map(|_| s.first_psid + (i % per) as u16),
            };
            if self.is_free_for(table, u, &r.client, now) {
                return Some(u);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::testutil::{authority, cfg, query, src, v4};
    use super::*;
    use crate::proto::codes::v4msg;
    use crate::proto::v4::V4Option;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    #[test]
    fn prefixes_match_by_their_length() {
        assert!(in_prefix(v6("2001:db8::5"), (v6("2001:db8::"), 32)));
        assert!(!in_prefix(v6("2001:db9::5"), (v6("2001:db8::"), 32)));
        assert!(in_prefix(v6("::1"), (v6("::1"), 128)));
        assert!(in_prefix(v6("2001:db9::5"), (v6("::"), 0)));
    }

    #[test]
    fn the_subnet_follows_the_link_and_option_159() {
        let a = authority(&cfg());
        // RFC 7618 §8: a client listing 159 gets the shared subnet, others the full one.
        assert_eq!(a.select(src(), false), Ok(0));
        assert_eq!(a.select(src(), true), Ok(1));
        // No link matches: nothing.
        assert_eq!(a.select(v6("2001:db9::1"), false), Err(false));
        // Only a shared subnet on the link: a client without 159 gets none (Err(true)).
        let mut c = cfg();
        c.subnets.remove(0);
        let a = authority(&c);
        assert_eq!(a.select(src(), false), Err(true));
        assert_eq!(a.select(src(), true), Ok(0));
    }

    #[test]
    fn allocation_walks_the_pool_address_major_and_takes_freed_units_first() {
        let mut a = authority(&cfg());
        let table = LeaseTable::new();
        let bytes = v4(v4msg::DISCOVER, 1, Ipv4Addr::UNSPECIFIED, Vec::new());
        let q = query(&bytes, Vec::new(), false);
        let (_, _, r) = a.decode(&q, src(), true).expect("decoded");
        let s = a.cfg.subnets[1].clone();
        let first = a.allocate(&table, 1, &r, 0).expect("a unit");
        let second = a.allocate(&table, 1, &r, 0).expect("a unit");
        // Shared subnet: one address's PSIDs one after another, from the first free PSID.
        assert_eq!(first.addr, u32::from(s.first));
        assert_eq!(first.psid, Some(s.first_psid));
        assert_eq!(second.addr, first.addr);
        assert_eq!(second.psid, Some(s.first_psid + 1));
        assert_eq!(
            a.pp(1, second),
            Some(PortParams {
                offset: 0,
                psid_len: 4,
                psid: s.first_psid + 1
            })
        );
        assert_eq!(a.pp(0, first), None);
        // A unit whose hold ended comes back before never-used ones.
        a.push_free(first);
        a.push_free(first);
        assert_eq!(a.allocate(&table, 1, &r, 0), Some(first));
        let third = a.allocate(&table, 1, &r, 0).expect("a unit");
        assert_eq!(third.psid, Some(s.first_psid + 2));
    }

    #[test]
    fn a_requested_unit_is_given_when_free() {
        let mut a = authority(&cfg());
        let table = LeaseTable::new();
        let want = Ipv4Addr::new(192, 0, 2, 77);
        let bytes = v4(
            v4msg::DISCOVER,
            1,
            Ipv4Addr::UNSPECIFIED,
            vec![V4Option::RequestedIp(want)],
        );
        let q = query(&bytes, Vec::new(), false);
        let (_, _, r) = a.decode(&q, src(), true).expect("decoded");
        let u = a.allocate(&table, 0, &r, 0).expect("a unit");
        assert_eq!(
            u,
            Unit {
                addr: want.into(),
                psid: None
            }
        );
        // Offered to another client, it is not free for this one.
        a.offered.insert(u, b"other".to_vec());
        assert!(!a.is_free_for(&table, u, &r.client, 0));
        assert!(a.is_free_for(&table, u, b"other", 0));
    }
}
