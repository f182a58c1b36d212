//! One shard's lease table: a slab of compact bindings, indexes for every query type, and
//! resumable scans.
//!
//! # Layout
//!
//! v4/4o6 bindings live in a slab of fixed-size slots (`V4Slot`, 80 octets). Variable-length
//! fields (chaddr, client-id, remote-id, circuit-id) sit in one per-shard arena record; values
//! many bindings share (relay-ids, links) are interned and the slot keeps a `u32` id. Indexes are
//! `hashbrown::HashTable<u32>` of slot numbers, hashing the slab/arena data (no owned keys);
//! relay-id and link (by /64) use the interner's sorted posting lists instead, since one value
//! has thousands of bindings. Plain v6 bindings have their own slab and indexes.
//!
//! # Scans
//!
//! Every binding gets a per-shard sequence number when it is created (an update keeps it, a
//! remove and re-add gets a new one). A [`ScanCursor`] remembers the last sequence number given
//! out when the query started and the next slot number to look at; candidates are visited in
//! ascending slot order and bindings created after the start are skipped. Since a live binding
//! never changes slot, every binding present during the whole query is visited exactly once, and
//! none twice. The cursor holds no borrow, so the shell can keep it across `.await` points.
//!
//! # Files
//!
//! This file holds the table, its v4/4o6 slab and arena and the shared scan driver;
//! `query` the query and cursor types; `v6` the plain DHCPv6 slab, indexes and scan; `tests`
//! the unit tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use thiserror::Error;

use super::binding::{RelayBinding, V4Binding, V6Binding};
use super::intern::Interner;
use super::{stable_hash, StableHasher};
use crate::proto::codes::dhcp_state;
use crate::proto::record::{PortParams, RelayRecord, V4Record, V6Context};

mod query;
mod v6;

pub use query::{ScanCursor, ScanStep, V4Query, V4Select, V6Query, V6Select};
use v6::{v6_key_hash, V6Slot};

/// Why a binding was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// chaddr is longer than 16 octets (RFC 2131 §2).
    #[error("chaddr longer than 16 octets")]
    ChaddrTooLong,
    /// A variable-length field is longer than 65534 octets.
    #[error("a field is longer than 65534 octets")]
    FieldTooLong,
    /// Port parameters out of range (RFC 7597 §5.1: offset <= 15, offset + length <= 16, PSID
    /// below 2^length).
    #[error("invalid port parameters")]
    BadPortParams,
    /// An IA_PD prefix length above 128.
    #[error("prefix length above 128")]
    BadPrefixLen,
    /// The shard cannot address more bindings or data (2^32 slots / arena octets).
    #[error("lease shard full")]
    Full,
}

const HAS_PSID: u8 = 1;
const HAS_SW: u8 = 2;
const HAS_V6: u8 = 4;
const NO_RELAY_REC: u32 = u32::MAX;

/// One v4/4o6 binding, compact. `seq == 0` marks a free slot.
#[derive(Debug, Clone, Default)]
struct V4Slot {
    seq: u64,
    addr: u32,
    var: u32,
    cltt: u32,
    state_start: u32,
    expires: u32,
    relay: u32,
    link: u32,
    relay_rec: u32,
    softwire: [u8; 16],
    client_src: [u8; 16],
    psid: u16,
    psid_off: u8,
    psid_len: u8,
    htype: u8,
    state: u8,
    data_source: u8,
    flags: u8,
}

impl V4Slot {
    fn port_params(&self) -> Option<PortParams> {
        (self.flags & HAS_PSID != 0).then_some(PortParams {
            offset: self.psid_off,
            psid_len: self.psid_len,
            psid: self.psid,
        })
    }
}

// Arena record fields, in order.
const F_CHADDR: usize = 0;
const F_CLIENT_ID: usize = 1;
const F_REMOTE_ID: usize = 2;
const F_CIRCUIT_ID: usize = 3;
const FIELDS: usize = 4;
const NONE_LEN: u16 = u16::MAX;

/// Variable-length v4 fields: per binding one record of `FIELDS` entries, each a little-endian
/// u16 length (`NONE_LEN` = absent) and the octets. Freed records are garbage until compaction.
#[derive(Debug, Default)]
struct Arena {
    bytes: Vec<u8>,
    garbage: usize,
}

impl Arena {
    fn record_len(fields: &[Option<&[u8]>; FIELDS]) -> usize {
        fields.iter().map(|f| 2 + f.map_or(0, <[u8]>::len)).sum()
    }

    fn push(&mut self, fields: &[Option<&[u8]>; FIELDS]) -> Option<u32> {
        let off = u32::try_from(self.bytes.len()).ok()?;
        u32::try_from(self.bytes.len().checked_add(Self::record_len(fields))?).ok()?;
        for f in fields {
            match f {
                Some(b) => {
                    self.bytes
                        .extend_from_slice(&u16::try_from(b.len()).ok()?.to_le_bytes());
                    self.bytes.extend_from_slice(b);
                }
                None => self.bytes.extend_from_slice(&NONE_LEN.to_le_bytes()),
            }
        }
        Some(off)
    }

    /// Field `which` of the record at `off` and the record's end.
    fn walk(&self, off: u32, which: usize) -> (Option<&[u8]>, usize) {
        let mut at = off as usize;
        let mut found = None;
        for i in 0..FIELDS {
            let (Some(&lo), Some(&hi)) = (self.bytes.get(at), self.bytes.get(at + 1)) else {
                return (None, at);
            };
            let len = u16::from_le_bytes([lo, hi]);
            at += 2;
            if len != NONE_LEN {
                let end = at + len as usize;
                if i == which {
                    found = self.bytes.get(at..end);
                }
                at = end;
            }
        }
        (found, at)
    }

    fn field(&self, off: u32, which: usize) -> Option<&[u8]> {
        self.walk(off, which).0
    }

    /// Every field of the record at `off`, in one walk (what [`Arena::field`] gives for each).
    fn fields(&self, off: u32) -> [Option<&[u8]>; FIELDS] {
        let mut out = [None; FIELDS];
        let mut at = off as usize;
        for f in out.iter_mut() {
            let (Some(&lo), Some(&hi)) = (self.bytes.get(at), self.bytes.get(at + 1)) else {
                break;
            };
            let len = u16::from_le_bytes([lo, hi]);
            at += 2;
            if len != NONE_LEN {
                let end = at + len as usize;
                *f = self.bytes.get(at..end);
                at = end;
            }
        }
        out
    }

    fn free(&mut self, off: u32) {
        let end = self.walk(off, FIELDS).1;
        self.garbage += end.saturating_sub(off as usize);
    }
}

// v4 hash indexes (slot numbers).
const IX_KEY: usize = 0;
const IX_CLIENT_ID: usize = 1;
const IX_CHADDR: usize = 2;
const IX_REMOTE_ID: usize = 3;
const IX_SOFTWIRE: usize = 4;
const V4_INDEXES: usize = 5;

fn v4_key_hash(addr: u32, pp: Option<PortParams>) -> u64 {
    let p = pp.unwrap_or_default();
    StableHasher::new(9)
        .write(&addr.to_be_bytes())
        .write(&[u8::from(pp.is_some()), p.offset, p.psid_len])
        .write(&p.psid.to_be_bytes())
        .finish()
}

fn chaddr_hash(htype: u8, chaddr: &[u8]) -> u64 {
    StableHasher::new(chaddr.len() + 1)
        .write(&[htype])
        .write(chaddr)
        .finish()
}

/// The hash of a slot in index `ix`, `None` when the slot is not in that index.
fn v4_ix_hash(ix: usize, slot: &V4Slot, arena: &Arena) -> Option<u64> {
    match ix {
        IX_KEY => Some(v4_key_hash(slot.addr, slot.port_params())),
        IX_CLIENT_ID => arena.field(slot.var, F_CLIENT_ID).map(stable_hash),
        IX_CHADDR => arena
            .field(slot.var, F_CHADDR)
            .filter(|c| !c.is_empty())
            .map(|c| chaddr_hash(slot.htype, c)),
        IX_REMOTE_ID => arena.field(slot.var, F_REMOTE_ID).map(stable_hash),
        IX_SOFTWIRE => (slot.flags & HAS_SW != 0).then(|| stable_hash(&slot.softwire)),
        _ => None,
    }
}

/// The /64 of an address: the key of the link posting lists.
fn prefix64(a: Ipv6Addr) -> [u8; 8] {
    let o = a.octets();
    [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
}

fn addr_from(bytes: &[u8]) -> Ipv6Addr {
    <[u8; 16]>::try_from(bytes).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

fn mask(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let m = match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    };
    Ipv6Addr::from(u128::from(a) & m)
}

fn prefix_hash(prefix: Ipv6Addr, len: u8) -> u64 {
    StableHasher::new(17)
        .write(&mask(prefix, len).octets())
        .write(&[len])
        .finish()
}

fn in_window(since: Option<u32>, until: Option<u32>, times: &[u32]) -> bool {
    if since.is_none() && until.is_none() {
        return true;
    }
    times
        .iter()
        .any(|&t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u))
}

/// Candidate slot numbers of one scan call, ascending.
enum Candidates<'a> {
    Range(std::ops::Range<u32>),
    Posts(std::slice::Iter<'a, u32>),
    Owned(std::vec::IntoIter<u32>),
}

impl Iterator for Candidates<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match self {
            Candidates::Range(r) => r.next(),
            Candidates::Posts(p) => p.next().copied(),
            Candidates::Owned(o) => o.next(),
        }
    }
}

impl<'a> Candidates<'a> {
    fn interned(i: &'a Interner, key: &[u8], from: u32) -> Self {
        let posts = i.lookup(key).map_or(&[][..], |id| i.posts(id));
        let at = posts.partition_point(|&s| s < from);
        Candidates::Posts(posts.get(at..).unwrap_or(&[]).iter())
    }

    fn owned(mut v: Vec<u32>, from: u32) -> Self {
        v.retain(|&s| s >= from);
        v.sort_unstable();
        v.dedup();
        Candidates::Owned(v.into_iter())
    }
}

/// Visits candidates in order under a budget; see [`LeaseTable::scan_v4`].
fn drive<R>(
    cands: Candidates<'_>,
    cur: &mut ScanCursor,
    budget: usize,
    mut visit: impl FnMut(u32) -> Option<R>,
    mut emit: impl FnMut(R) -> bool,
) -> ScanStep {
    let budget = budget.max(1);
    for (spent, s) in cands.enumerate() {
        if spent >= budget {
            cur.next = s;
            return ScanStep::More;
        }
        if let Some(r) = visit(s) {
            if !emit(r) {
                cur.next = s;
                return ScanStep::More;
            }
        }
        cur.next = s.saturating_add(1);
    }
    cur.done = true;
    ScanStep::Done
}

/// One shard's bindings (v4/4o6 and plain v6), their indexes and scans. Sans-io.
#[derive(Debug, Default)]
pub struct LeaseTable {
    next_seq: u64,
    v4: Vec<V4Slot>,
    v4_free: Vec<u32>,
    v4_len: usize,
    arena: Arena,
    v4_ix: [HashTable<u32>; V4_INDEXES],
    v4_relays: Interner,
    v4_links: Interner,
    v4_link64: Interner,
    relay_recs: Vec<Option<RelayBinding>>,
    relay_free: Vec<u32>,
    v6: Vec<V6Slot>,
    v6_free: Vec<u32>,
    v6_len: usize,
    v6_key: HashTable<u32>,
    v6_duid: HashTable<u32>,
    v6_addr: HashTable<(u32, u32)>,
    v6_prefix: HashTable<(u32, u32)>,
    prefix_lens: Vec<u32>,
    v6_relays: Interner,
    v6_remotes: Interner,
    v6_link64: Interner,
    /// While recording ([`LeaseTable::record_v4_undo`]): what each v4 upsert or remove replaced.
    undo_v4: Option<Vec<V4Undo>>,
}

/// What one v4 upsert or remove replaced: the key and the binding it had before (`None`: there
/// was none). Applied newest first, these undo the changes ([`LeaseTable::undo_v4`]).
pub type V4Undo = (Ipv4Addr, Option<PortParams>, Option<V4Binding>);

fn check_len(f: &Option<Vec<u8>>) -> Result<(), LeaseError> {
    match f {
        Some(b) if b.len() >= usize::from(NONE_LEN) => Err(LeaseError::FieldTooLong),
        _ => Ok(()),
    }
}

fn alloc_slot(free: &mut Vec<u32>, len: usize) -> Result<u32, LeaseError> {
    match free.pop() {
        Some(s) => Ok(s),
        None => u32::try_from(len)
            .ok()
            .filter(|&s| s < u32::MAX)
            .ok_or(LeaseError::Full),
    }
}

impl LeaseTable {
    /// An empty shard.
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    /// Makes room for these bindings before they are inserted in bulk (an import, a journal
    /// replay): the slot vectors and each hash index grow once, to what these bindings will
    /// put in them, instead of doubling on the way, where every doubling rehashes each entry
    /// (a random read of its slot and arena record). Each index is sized by the bindings that
    /// will be in it, so an index the data does not use stays empty. Only capacity changes.
    pub fn reserve_for(&mut self, v4: &[V4Binding], v6: &[V6Binding]) {
        let mut per_ix = [0usize; V4_INDEXES];
        per_ix[IX_KEY] = v4.len();
        for b in v4 {
            per_ix[IX_CLIENT_ID] += usize::from(b.client_id.is_some());
            per_ix[IX_CHADDR] += usize::from(!b.chaddr.is_empty());
            per_ix[IX_REMOTE_ID] += usize::from(b.remote_id.is_some());
            per_ix[IX_SOFTWIRE] += usize::from(b.softwire_src.is_some());
        }
        self.v4.reserve(v4.len().saturating_sub(self.v4_free.len()));
        let (slots, arena) = (&self.v4, &self.arena);
        for (ix, (t, &n)) in self.v4_ix.iter_mut().zip(per_ix.iter()).enumerate() {
            t.reserve(n, |&o| {
                slots
                    .get(o as usize)
                    .and_then(|sl| v4_ix_hash(ix, sl, arena))
                    .unwrap_or(0)
            });
        }
        self.v6.reserve(v6.len().saturating_sub(self.v6_free.len()));
        let slots = &self.v6;
        self.v6_key.reserve(v6.len(), |&o| {
            slots
                .get(o as usize)
                .map_or(0, |sl| v6_key_hash(&sl.duid, Ipv6Addr::from(sl.link)))
        });
        self.v6_duid.reserve(v6.len(), |&o| {
            slots.get(o as usize).map_or(0, |sl| stable_hash(&sl.duid))
        });
        let addrs = v6.iter().map(|b| b.iana.len()).sum();
        self.v6_addr.reserve(addrs, |&(o, j)| {
            slots
                .get(o as usize)
                .and_then(|sl| sl.iana.get(j as usize))
                .map_or(0, |a| stable_hash(&a.addr.octets()))
        });
        let prefixes = v6.iter().map(|b| b.iapd.len()).sum();
        self.v6_prefix.reserve(prefixes, |&(o, j)| {
            slots
                .get(o as usize)
                .and_then(|sl| sl.iapd.get(j as usize))
                .map_or(0, |p| prefix_hash(p.prefix, p.prefix_len))
        });
    }

    /// Starts recording what each v4 upsert and remove replaces, until
    /// [`take_v4_undo`](LeaseTable::take_v4_undo).
    pub fn record_v4_undo(&mut self) {
        self.undo_v4 = Some(Vec::new());
    }

    /// Stops recording and returns what was replaced since
    /// [`record_v4_undo`](LeaseTable::record_v4_undo), oldest first.
    pub fn take_v4_undo(&mut self) -> Vec<V4Undo> {
        self.undo_v4.take().unwrap_or_default()
    }

    /// Puts back what `undo` (oldest first) says the changes replaced, newest first.
    pub fn undo_v4(&mut self, undo: Vec<V4Undo>) {
        for (addr, port_params, before) in undo.into_iter().rev() {
            match before {
                // It was in the table, so it fits again.
                Some(b) => {
                    let _ = self.upsert_v4(b);
                }
                None => {
                    self.remove_v4(addr, port_params);
                }
            }
        }
    }

    fn note_v4_undo(&mut self, addr: Ipv4Addr, port_params: Option<PortParams>) {
        if self.undo_v4.is_some() {
            let before = self
                .get_v4(addr, port_params)
                .map(|r| V4Binding::from_record(&r));
            if let Some(log) = self.undo_v4.as_mut() {
                log.push((addr, port_params, before));
            }
        }
    }

    /// The number of v4/4o6 bindings.
    pub fn len_v4(&self) -> usize {
        self.v4_len
    }

    /// The number of plain v6 bindings.
    pub fn len_v6(&self) -> usize {
        self.v6_len
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq = self.next_seq.saturating_add(1);
        self.next_seq
    }

    fn v4_find(&self, addr: Ipv4Addr, pp: Option<PortParams>) -> Option<u32> {
        let a = u32::from(addr);
        let slots = &self.v4;
        self.v4_ix[IX_KEY]
            .find(v4_key_hash(a, pp), |&s| {
                slots
                    .get(s as usize)
                    .is_some_and(|sl| sl.seq != 0 && sl.addr == a && sl.port_params() == pp)
            })
            .copied()
    }

    /// Inserts a v4/4o6 binding, or replaces the one with the same `(addr, port_params)` (it
    /// keeps its place and sequence number; every index is updated).
    pub fn upsert_v4(&mut self, b: V4Binding) -> Result<(), LeaseError> {
        if b.chaddr.len() > 16 {
            return Err(LeaseError::ChaddrTooLong);
        }
        for f in [&b.client_id, &b.remote_id, &b.circuit_id, &b.relay_id] {
            check_len(f)?;
        }
        if let Some(r) = b.v6.as_ref().and_then(|c| c.relay.as_ref()) {
            for f in [&r.interface_id, &r.relay_id, &r.remote_id] {
                check_len(f)?;
            }
        }
        if let Some(p) = b.port_params {
            if PortParams::from_wire(p.offset, p.psid_len, p.wire_psid()) != Some(p) {
                return Err(LeaseError::BadPortParams);
            }
        }
        let fields = [
            Some(&b.chaddr[..]),
            b.client_id.as_deref(),
            b.remote_id.as_deref(),
            b.circuit_id.as_deref(),
        ];
        let need = Arena::record_len(&fields);
        if u32::try_from(self.arena.bytes.len().saturating_add(need)).is_err() {
            self.compact();
            if u32::try_from(self.arena.bytes.len().saturating_add(need)).is_err() {
                return Err(LeaseError::Full);
            }
        }
        self.note_v4_undo(b.addr, b.port_params);
        let (s, seq, new) = match self.v4_find(b.addr, b.port_params) {
            Some(s) => {
                self.v4_unlink(s, IX_KEY + 1);
                (s, self.v4.get(s as usize).map_or(0, |sl| sl.seq), false)
            }
            None => {
                let s = alloc_slot(&mut self.v4_free, self.v4.len())?;
                if s as usize == self.v4.len() {
                    self.v4.push(V4Slot::default());
                }
                self.v4_len += 1;
                (s, self.take_seq(), true)
            }
        };
        let var = self.arena.push(&fields).ok_or(LeaseError::Full)?;
        let relay = b
            .relay_id
            .as_deref()
            .map_or(0, |r| self.v4_relays.acquire(r, s).unwrap_or(0));
        let mut slot = V4Slot {
            seq,
            addr: u32::from(b.addr),
            var,
            cltt: b.cltt,
            state_start: b.state_start,
            expires: b.expires,
            relay,
            link: 0,
            relay_rec: NO_RELAY_REC,
            softwire: b.softwire_src.map_or([0; 16], |a| a.octets()),
            client_src: [0; 16],
            psid: 0,
            psid_off: 0,
            psid_len: 0,
            htype: b.htype,
            state: b.state,
            data_source: b.data_source,
            flags: 0,
        };
        if let Some(p) = b.port_params {
            slot.flags |= HAS_PSID;
            (slot.psid, slot.psid_off, slot.psid_len) = (p.psid, p.offset, p.psid_len);
        }
        if b.softwire_src.is_some() {
            slot.flags |= HAS_SW;
        }
        if let Some(ctx) = b.v6 {
            slot.flags |= HAS_V6;
            slot.client_src = ctx.client_src.octets();
            if !ctx.link.is_unspecified() {
                slot.link = self.v4_links.acquire(&ctx.link.octets(), s).unwrap_or(0);
                self.v4_link64.acquire(&prefix64(ctx.link), s);
            }
            if let Some(r) = ctx.relay {
                slot.relay_rec = match self.relay_free.pop() {
                    Some(i) => {
                        if let Some(e) = self.relay_recs.get_mut(i as usize) {
                            *e = Some(r);
                        }
                        i
                    }
                    None => {
                        self.relay_recs.push(Some(r));
                        u32::try_from(self.relay_recs.len() - 1).unwrap_or(NO_RELAY_REC)
                    }
                };
            }
        }
        if let Some(e) = self.v4.get_mut(s as usize) {
            *e = slot;
        }
        self.v4_index(s, if new { IX_KEY } else { IX_KEY + 1 });
        self.maybe_compact();
        Ok(())
    }

    /// Adds slot `s` to the hash indexes `from..`.
    fn v4_index(&mut self, s: u32, from: usize) {
        let Some(slot) = self.v4.get(s as usize) else {
            return;
        };
        for ix in from..V4_INDEXES {
            if let Some(h) = v4_ix_hash(ix, slot, &self.arena) {
                let (slots, arena) = (&self.v4, &self.arena);
                if let Some(t) = self.v4_ix.get_mut(ix) {
                    t.insert_unique(h, s, |&o| {
                        slots
                            .get(o as usize)
                            .and_then(|sl| v4_ix_hash(ix, sl, arena))
                            .unwrap_or(0)
                    });
                }
            }
        }
    }

    /// Takes slot `s` out of the hash indexes `from..`, the interners, the relay records and
    /// the arena (the slot itself keeps its data until overwritten).
    fn v4_unlink(&mut self, s: u32, from: usize) {
        let Some(slot) = self.v4.get(s as usize) else {
            return;
        };
        for ix in from..V4_INDEXES {
            if let (Some(h), Some(t)) = (v4_ix_hash(ix, slot, &self.arena), self.v4_ix.get_mut(ix))
            {
                if let Ok(e) = t.find_entry(h, |&o| o == s) {
                    e.remove();
                }
            }
        }
        if slot.relay != 0 {
            self.v4_relays.release(slot.relay, s);
        }
        if slot.link != 0 {
            let link = addr_from(self.v4_links.bytes(slot.link));
            if let Some(id) = self.v4_link64.lookup(&prefix64(link)) {
                self.v4_link64.release(id, s);
            }
            self.v4_links.release(slot.link, s);
        }
        if let Some(e) = self.relay_recs.get_mut(slot.relay_rec as usize) {
            *e = None;
            self.relay_free.push(slot.relay_rec);
        }
        self.arena.free(slot.var);
    }

    /// Rewrites the arena without garbage.
    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(
            self.arena.bytes.len() - self.arena.garbage.min(self.arena.bytes.len()),
        );
        for slot in self.v4.iter_mut().filter(|s| s.seq != 0) {
            let start = slot.var as usize;
            let end = self.arena.walk(slot.var, FIELDS).1;
            slot.var = u32::try_from(bytes.len()).unwrap_or(0);
            bytes.extend_from_slice(self.arena.bytes.get(start..end).unwrap_or(&[]));
        }
        self.arena = Arena { bytes, garbage: 0 };
    }

    fn maybe_compact(&mut self) {
        if self.arena.garbage > 1 << 16 && self.arena.garbage * 2 > self.arena.bytes.len() {
            self.compact();
        }
    }

    /// Removes the v4/4o6 binding with this key; false when there was none.
    pub fn remove_v4(&mut self, addr: Ipv4Addr, port_params: Option<PortParams>) -> bool {
        let Some(s) = self.v4_find(addr, port_params) else {
            return false;
        };
        self.note_v4_undo(addr, port_params);
        self.v4_unlink(s, IX_KEY);
        if let Some(e) = self.v4.get_mut(s as usize) {
            *e = V4Slot::default();
        }
        self.v4_free.push(s);
        self.v4_len -= 1;
        self.maybe_compact();
        true
    }

    /// The v4/4o6 binding with this key.
    pub fn get_v4(&self, addr: Ipv4Addr, port_params: Option<PortParams>) -> Option<V4Record<'_>> {
        self.v4_record(self.v4_find(addr, port_params)?)
    }

    fn v4_record(&self, s: u32) -> Option<V4Record<'_>> {
        let slot = self.v4.get(s as usize).filter(|sl| sl.seq != 0)?;
        Some(self.v4_view(slot))
    }

    /// The record view of a live slot. The arena record is walked once for all its fields.
    fn v4_view<'t>(&'t self, slot: &'t V4Slot) -> V4Record<'t> {
        let f = self.arena.fields(slot.var);
        let v6 = (slot.flags & HAS_V6 != 0).then(|| V6Context {
            client_src: Ipv6Addr::from(slot.client_src),
            link: addr_from(self.v4_links.bytes(slot.link)),
            relay: self
                .relay_recs
                .get(slot.relay_rec as usize)
                .and_then(Option::as_ref)
                .map(|r| RelayRecord {
                    hop_count: r.hop_count,
                    link_address: r.link_address,
                    peer_address: r.peer_address,
                    interface_id: r.interface_id.as_deref(),
                    relay_id: r.relay_id.as_deref(),
                    remote_id: r.remote_id.as_deref(),
                }),
        });
        V4Record {
            addr: Ipv4Addr::from(slot.addr),
            port_params: slot.port_params(),
            htype: slot.htype,
            chaddr: f[F_CHADDR].unwrap_or(&[]),
            client_id: f[F_CLIENT_ID],
            state: slot.state,
            cltt: slot.cltt,
            state_start: slot.state_start,
            expires: slot.expires,
            circuit_id: f[F_CIRCUIT_ID],
            remote_id: f[F_REMOTE_ID],
            relay_id: (slot.relay != 0).then(|| self.v4_relays.bytes(slot.relay)),
            softwire_src: (slot.flags & HAS_SW != 0).then(|| Ipv6Addr::from(slot.softwire)),
            v6,
            data_source: slot.data_source,
        }
    }

    fn v4_matches(&self, q: &V4Query, slot: &V4Slot) -> bool {
        let a = &self.arena;
        let selected = match &q.select {
            V4Select::All => true,
            V4Select::Chaddr { htype, chaddr } => {
                slot.htype == *htype
                    && !chaddr.is_empty()
                    && a.field(slot.var, F_CHADDR) == Some(&chaddr[..])
            }
            V4Select::ClientId(c) => a.field(slot.var, F_CLIENT_ID) == Some(&c[..]),
            V4Select::RemoteId(r) => a.field(slot.var, F_REMOTE_ID) == Some(&r[..]),
            V4Select::RelayId(r) => slot.relay != 0 && self.v4_relays.bytes(slot.relay) == &r[..],
            V4Select::SoftwireSrc(sw) => slot.flags & HAS_SW != 0 && slot.softwire == sw.octets(),
            V4Select::Link(l) => {
                slot.flags & HAS_V6 != 0
                    && slot.link != 0
                    && self.v4_links.bytes(slot.link).get(..8) == Some(&prefix64(*l)[..])
            }
        };
        selected
            && (!q.only_4o6 || slot.flags & HAS_V6 != 0)
            && (!q.only_active || slot.state == dhcp_state::ACTIVE)
            && in_window(
                q.changed_since,
                q.changed_until,
                &[slot.cltt, slot.state_start],
            )
    }

    fn v4_hash_candidates(&self, ix: usize, h: u64, from: u32) -> Candidates<'_> {
        let found = self
            .v4_ix
            .get(ix)
            .map_or(Vec::new(), |t| t.iter_hash(h).copied().collect());
        Candidates::owned(found, from)
    }

    /// A cursor for a new v4 query: the query sees the bindings that exist now (and, for those
    /// still present when reached, their state at that moment).
    pub fn start_v4(&self, _query: &V4Query) -> ScanCursor {
        ScanCursor {
            start_seq: self.next_seq,
            next: 0,
            done: false,
        }
    }

    /// Emits up to `budget` candidate bindings' worth of matches of `q`, resuming at `cur`.
    /// `emit` returns false when the caller's buffer is full: that record is not consumed and is
    /// offered again on the next call. Every binding present during the whole query is emitted
    /// exactly once; none is emitted twice (module docs).
    pub fn scan_v4(
        &self,
        q: &V4Query,
        cur: &mut ScanCursor,
        budget: usize,
        emit: impl FnMut(V4Record<'_>) -> bool,
    ) -> ScanStep {
        if cur.done {
            return ScanStep::Done;
        }
        let from = cur.next;
        let cands = match &q.select {
            V4Select::All => {
                Candidates::Range(from..u32::try_from(self.v4.len()).unwrap_or(u32::MAX))
            }
            V4Select::Chaddr { htype, chaddr } => {
                self.v4_hash_candidates(IX_CHADDR, chaddr_hash(*htype, chaddr), from)
            }
            V4Select::ClientId(c) => self.v4_hash_candidates(IX_CLIENT_ID, stable_hash(c), from),
            V4Select::RemoteId(r) => self.v4_hash_candidates(IX_REMOTE_ID, stable_hash(r), from),
            V4Select::SoftwireSrc(a) => {
                self.v4_hash_candidates(IX_SOFTWIRE, stable_hash(&a.octets()), from)
            }
            V4Select::RelayId(r) => Candidates::interned(&self.v4_relays, r, from),
            V4Select::Link(l) => Candidates::interned(&self.v4_link64, &prefix64(*l), from),
        };
        let start = cur.start_seq;
        let visit = |s: u32| {
            let slot = self.v4.get(s as usize)?;
            if slot.seq == 0 || slot.seq > start || !self.v4_matches(q, slot) {
                return None;
            }
            Some(self.v4_view(slot))
        };
        drive(cands, cur, budget, visit, emit)
    }

    /// True when some binding (v4/4o6 or v6) is on a link with the same /64 as `link`: the
    /// "could contain that address" test of RFC 5460 §5.2.2 for NotConfigured.
    pub fn knows_link(&self, link: Ipv6Addr) -> bool {
        let p = prefix64(link);
        self.v4_link64.lookup(&p).is_some() || self.v6_link64.lookup(&p).is_some()
    }

    /// Heap octets held by the v4/4o6 side (capacity-based estimate, for the memory bench).
    pub fn v4_heap_bytes(&self) -> usize {
        self.v4.capacity() * std::mem::size_of::<V4Slot>()
            + self.v4_free.capacity() * 4
            + self.arena.bytes.capacity()
            + self
                .v4_ix
                .iter()
                .map(HashTable::allocation_size)
                .sum::<usize>()
            + self.v4_relays.heap_bytes()
            + self.v4_links.heap_bytes()
            + self.v4_link64.heap_bytes()
            + self.relay_recs.capacity() * std::mem::size_of::<Option<RelayBinding>>()
    }
}

#[cfg(test)]
mod tests;
