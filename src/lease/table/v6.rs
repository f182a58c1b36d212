//! The plain DHCPv6 half of [`LeaseTable`]: its slab slot, indexes and scan.

use std::net::Ipv6Addr;

use super::{
    alloc_slot, drive, in_window, mask, prefix64, prefix_hash, Candidates, LeaseError, LeaseTable,
    ScanCursor, ScanStep, V6Query, V6Select,
};
use crate::lease::binding::V6Binding;
use crate::lease::{stable_hash, StableHasher};
use crate::proto::record::{V6Addr, V6Prefix, V6Record};

/// One plain v6 binding. `seq == 0` marks a free slot.
#[derive(Debug, Clone, Default)]
pub(super) struct V6Slot {
    pub(super) seq: u64,
    pub(super) duid: Box<[u8]>,
    pub(super) link: [u8; 16],
    pub(super) iana: Box<[V6Addr]>,
    pub(super) iapd: Box<[V6Prefix]>,
    pub(super) cltt: u32,
    pub(super) relay: u32,
    pub(super) remote: u32,
}

pub(super) fn v6_key_hash(duid: &[u8], link: Ipv6Addr) -> u64 {
    StableHasher::new(duid.len() + 16)
        .write(&link.octets())
        .write(duid)
        .finish()
}

impl LeaseTable {
    fn v6_find(&self, duid: &[u8], link: Ipv6Addr) -> Option<u32> {
        let slots = &self.v6;
        let l = link.octets();
        self.v6_key
            .find(v6_key_hash(duid, link), |&s| {
                slots
                    .get(s as usize)
                    .is_some_and(|sl| sl.seq != 0 && sl.link == l && &*sl.duid == duid)
            })
            .copied()
    }

    /// Inserts a plain v6 binding, or replaces the one with the same `(duid, link)` (it keeps
    /// its place and sequence number; every index is updated).
    pub fn upsert_v6(&mut self, b: V6Binding) -> Result<(), LeaseError> {
        if b.iapd.iter().any(|p| p.prefix_len > 128) {
            return Err(LeaseError::BadPrefixLen);
        }
        if u32::try_from(b.iana.len().max(b.iapd.len())).is_err() {
            return Err(LeaseError::FieldTooLong);
        }
        let (s, seq) = match self.v6_find(&b.duid, b.link) {
            Some(s) => {
                let seq = self.v6.get(s as usize).map_or(0, |sl| sl.seq);
                self.v6_unlink(s);
                (s, seq)
            }
            None => {
                let s = alloc_slot(&mut self.v6_free, self.v6.len())?;
                if s as usize == self.v6.len() {
                    self.v6.push(V6Slot::default());
                }
                self.v6_len += 1;
                let seq = self.take_seq();
                let h = v6_key_hash(&b.duid, b.link);
                let slots = &self.v6;
                self.v6_key.insert_unique(h, s, |&o| {
                    slots
                        .get(o as usize)
                        .map_or(0, |sl| v6_key_hash(&sl.duid, Ipv6Addr::from(sl.link)))
                });
                (s, seq)
            }
        };
        let relay = b
            .relay_id
            .as_deref()
            .map_or(0, |r| self.v6_relays.acquire(r, s).unwrap_or(0));
        let remote = b
            .remote_id
            .as_deref()
            .map_or(0, |r| self.v6_remotes.acquire(r, s).unwrap_or(0));
        self.v6_link64.acquire(&prefix64(b.link), s);
        let slot = V6Slot {
            seq,
            duid: b.duid.into(),
            link: b.link.octets(),
            iana: b.iana.into(),
            iapd: b.iapd.into(),
            cltt: b.cltt,
            relay,
            remote,
        };
        if let Some(e) = self.v6.get_mut(s as usize) {
            *e = slot;
        }
        self.v6_index(s);
        Ok(())
    }

    /// Adds slot `s` to the DUID, address and prefix indexes.
    fn v6_index(&mut self, s: u32) {
        let Some(slot) = self.v6.get(s as usize) else {
            return;
        };
        let slots = &self.v6;
        self.v6_duid
            .insert_unique(stable_hash(&slot.duid), s, |&o| {
                slots.get(o as usize).map_or(0, |sl| stable_hash(&sl.duid))
            });
        for (i, a) in (0u32..).zip(slot.iana.iter()) {
            self.v6_addr
                .insert_unique(stable_hash(&a.addr.octets()), (s, i), |&(o, j)| {
                    slots
                        .get(o as usize)
                        .and_then(|sl| sl.iana.get(j as usize))
                        .map_or(0, |a| stable_hash(&a.addr.octets()))
                });
        }
        for (i, p) in (0u32..).zip(slot.iapd.iter()) {
            self.v6_prefix
                .insert_unique(prefix_hash(p.prefix, p.prefix_len), (s, i), |&(o, j)| {
                    slots
                        .get(o as usize)
                        .and_then(|sl| sl.iapd.get(j as usize))
                        .map_or(0, |p| prefix_hash(p.prefix, p.prefix_len))
                });
            if self.prefix_lens.is_empty() {
                self.prefix_lens = vec![0; 129];
            }
            if let Some(n) = self.prefix_lens.get_mut(usize::from(p.prefix_len)) {
                *n += 1;
            }
        }
    }

    /// Takes slot `s` out of every index but the key index, and out of the interners.
    fn v6_unlink(&mut self, s: u32) {
        let Some(slot) = self.v6.get(s as usize) else {
            return;
        };
        if let Ok(e) = self
            .v6_duid
            .find_entry(stable_hash(&slot.duid), |&o| o == s)
        {
            e.remove();
        }
        for (i, a) in (0u32..).zip(slot.iana.iter()) {
            if let Ok(e) = self
                .v6_addr
                .find_entry(stable_hash(&a.addr.octets()), |&x| x == (s, i))
            {
                e.remove();
            }
        }
        for (i, p) in (0u32..).zip(slot.iapd.iter()) {
            let h = prefix_hash(p.prefix, p.prefix_len);
            if let Ok(e) = self.v6_prefix.find_entry(h, |&x| x == (s, i)) {
                e.remove();
            }
            if let Some(n) = self.prefix_lens.get_mut(usize::from(p.prefix_len)) {
                *n = n.saturating_sub(1);
            }
        }
        if slot.relay != 0 {
            self.v6_relays.release(slot.relay, s);
        }
        if slot.remote != 0 {
            self.v6_remotes.release(slot.remote, s);
        }
        if let Some(id) = self.v6_link64.lookup(&prefix64(Ipv6Addr::from(slot.link))) {
            self.v6_link64.release(id, s);
        }
    }

    /// Removes the plain v6 binding of `duid` on `link`; false when there was none.
    pub fn remove_v6(&mut self, duid: &[u8], link: Ipv6Addr) -> bool {
        let Some(s) = self.v6_find(duid, link) else {
            return false;
        };
        self.v6_unlink(s);
        if let Ok(e) = self.v6_key.find_entry(v6_key_hash(duid, link), |&o| o == s) {
            e.remove();
        }
        if let Some(e) = self.v6.get_mut(s as usize) {
            *e = V6Slot::default();
        }
        self.v6_free.push(s);
        self.v6_len -= 1;
        true
    }

    /// The plain v6 binding of `duid` on `link`.
    pub fn get_v6(&self, duid: &[u8], link: Ipv6Addr) -> Option<V6Record<'_>> {
        self.v6_record(self.v6_find(duid, link)?)
    }

    fn v6_record(&self, s: u32) -> Option<V6Record<'_>> {
        let slot = self.v6.get(s as usize).filter(|sl| sl.seq != 0)?;
        Some(V6Record {
            duid: &slot.duid,
            link: Ipv6Addr::from(slot.link),
            iana: &slot.iana,
            iapd: &slot.iapd,
            cltt: slot.cltt,
            relay_id: (slot.relay != 0).then(|| self.v6_relays.bytes(slot.relay)),
            remote_id: (slot.remote != 0).then(|| self.v6_remotes.bytes(slot.remote)),
        })
    }

    fn v6_matches(&self, q: &V6Query, slot: &V6Slot) -> bool {
        let selected = match &q.select {
            V6Select::All => true,
            V6Select::Address(a) => {
                slot.iana.iter().any(|x| x.addr == *a)
                    || slot
                        .iapd
                        .iter()
                        .any(|p| mask(*a, p.prefix_len) == mask(p.prefix, p.prefix_len))
            }
            V6Select::ClientId(d) => *slot.duid == d[..],
            V6Select::RelayId(r) => slot.relay != 0 && self.v6_relays.bytes(slot.relay) == &r[..],
            V6Select::RemoteId(r) => {
                slot.remote != 0 && self.v6_remotes.bytes(slot.remote) == &r[..]
            }
            V6Select::Link(l) => slot.link.get(..8) == Some(&prefix64(*l)[..]),
        };
        selected
            && q.link_filter
                .is_none_or(|l| slot.link.get(..8) == Some(&prefix64(l)[..]))
            && in_window(q.changed_since, q.changed_until, &[slot.cltt])
    }

    fn v6_address_candidates(&self, a: Ipv6Addr) -> Vec<u32> {
        let mut found: Vec<u32> = self
            .v6_addr
            .iter_hash(stable_hash(&a.octets()))
            .map(|&(s, _)| s)
            .collect();
        for (len, _) in (0u8..).zip(self.prefix_lens.iter()).filter(|(_, &n)| n > 0) {
            found.extend(
                self.v6_prefix
                    .iter_hash(prefix_hash(a, len))
                    .map(|&(s, _)| s),
            );
        }
        found
    }

    /// A cursor for a new v6 query (see [`LeaseTable::start_v4`]).
    pub fn start_v6(&self, _query: &V6Query) -> ScanCursor {
        ScanCursor {
            start_seq: self.next_seq,
            next: 0,
            done: false,
        }
    }

    /// The v6 twin of [`LeaseTable::scan_v4`], with the same contract.
    pub fn scan_v6(
        &self,
        q: &V6Query,
        cur: &mut ScanCursor,
        budget: usize,
        emit: impl FnMut(V6Record<'_>) -> bool,
    ) -> ScanStep {
        if cur.done {
            return ScanStep::Done;
        }
        let from = cur.next;
        let cands = match &q.select {
            V6Select::All => {
                Candidates::Range(from..u32::try_from(self.v6.len()).unwrap_or(u32::MAX))
            }
            V6Select::Address(a) => Candidates::owned(self.v6_address_candidates(*a), from),
            V6Select::ClientId(d) => Candidates::owned(
                self.v6_duid.iter_hash(stable_hash(d)).copied().collect(),
                from,
            ),
            V6Select::RelayId(r) => Candidates::interned(&self.v6_relays, r, from),
            V6Select::RemoteId(r) => Candidates::interned(&self.v6_remotes, r, from),
            V6Select::Link(l) => Candidates::interned(&self.v6_link64, &prefix64(*l), from),
        };
        let start = cur.start_seq;
        let visit = |s: u32| {
            let slot = self.v6.get(s as usize)?;
            if slot.seq == 0 || slot.seq > start || !self.v6_matches(q, slot) {
                return None;
            }
            self.v6_record(s)
        };
        drive(cands, cur, budget, visit, emit)
    }
}
