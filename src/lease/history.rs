//! One shard's recent history of binding changes (RFC 7653 §8.4.1, RFC 7724 §7.4.1): the catch-up
//! store of active leasequery (docs/DESIGN.md section 3, rules 5 and 6).
//!
//! A [`History`] is a time-ordered ring of [`Change`]s, bounded by entry count and by age
//! ([`HistoryLimits`]; config keys `history_entries` and `history_age`). Every entry has a
//! sequence number; the ring also keeps, per binding, the sequence number of its latest change.
//!
//! # Horizon
//!
//! The *horizon* is the earliest start time `T` for which the ring still holds every change made
//! at or after `T`: the time the ring started (the shard's start), pushed forward to one second
//! past the newest change evicted so far. A catch-up from `T` below the horizon cannot be answered
//! in full: the server answers DataMissing at once (RFC 7653 §8.4.1 case 1). Each shard publishes
//! its horizon (an atomic in the shell) so the connection's shard can decide without asking.
//!
//! # Catch-up
//!
//! [`History::catch_up`] starts a [`CatchUp`] cursor at the first change at or after `T` and
//! fixes its end at the ring's current end: changes made later reach the subscriber as live
//! updates. [`History::catch_up_step`] emits, for every binding changed in that window, its
//! current state exactly once: the entry that is the binding's latest change in the ring (the
//! state after a change is the binding's whole state, so the latest entry *is* the current
//! state). A binding changed again after the window's end is skipped: its live update carries
//! its current state. When eviction overtakes the cursor (a change at or after `T` is lost
//! part-way), the step answers [`CatchUpStep::Lost`]: DataMissing as a DATA (case 2).
//!
//! Why not the table's `changed_since` scans: the table filters on the binding's cltt / state
//! start, which is not the time the server learned of the change (an imported or fed binding
//! carries the client's old cltt; a removed binding is no longer in the table). The ring records
//! the change time and removed bindings' last state.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::change::{Change, V4Key, V6Key};

/// How much history one shard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most changes kept (config `history_entries`); the oldest go first. 0 keeps none.
    pub max_entries: usize,
    /// Oldest change kept, seconds before now (config `history_age`).
    pub max_age: u32,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_entries: 100_000,
            max_age: 3600,
        }
    }
}

/// The key of a binding of either family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindingKey {
    /// A v4 / 4o6 binding.
    V4(V4Key),
    /// A plain v6 binding.
    V6(V6Key),
}

impl BindingKey {
    /// The key of the binding a change is about.
    pub fn of(change: &Change) -> BindingKey {
        match change {
            Change::V4 { binding, .. } => BindingKey::V4(binding.key()),
            Change::V6 { binding, .. } => BindingKey::V6(binding.key()),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    /// Change time, clamped so the ring stays time-ordered.
    at: u32,
    key: BindingKey,
    change: Change,
}

/// One shard's history ring (see the module docs).
#[derive(Debug, Clone)]
pub struct History {
    limits: HistoryLimits,
    entries: VecDeque<Entry>,
    /// Sequence number the next change gets.
    next_seq: u64,
    /// Per binding: the sequence number of its latest change still in the ring.
    latest: HashMap<BindingKey, u64>,
    horizon: u32,
    evicted: u64,
}

/// Where a catch-up stands. Holds no borrow of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    since: u32,
    next: u64,
    end: u64,
}

/// What a catch-up step ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpStep {
    /// Every binding of the window has been emitted: send CatchUpComplete.
    Done,
    /// The budget ran out or `emit` refused a change (it will be offered again): call again.
    More,
    /// Changes of the window were evicted before they were sent: send DataMissing.
    Lost,
}

impl History {
    /// An empty ring whose horizon is `started` (Unix seconds): changes before it are unknown.
    pub fn new(limits: HistoryLimits, started: u32) -> History {
        History {
            limits,
            entries: VecDeque::new(),
            next_seq: 1,
            latest: HashMap::new(),
            horizon: started,
            evicted: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Changes held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no change is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Changes evicted so far (by count or age).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The earliest start time a catch-up can be answered in full from (module docs).
    pub fn horizon(&self) -> u32 {
        self.horizon
    }

    /// True when a catch-up from `since` can be answered in full.
    pub fn covers(&self, since: u32) -> bool {
        since >= self.horizon
    }

    /// Records a change (after the table was changed). Evicts the oldest when over the entry bound.
    pub fn push(&mut self, change: Change) {
        if self.limits.max_entries == 0 {
            self.horizon = self.horizon.max(change.at().saturating_add(1));
            self.evicted += 1;
            return;
        }
        let at = self
            .entries
            .back()
            .map_or(change.at(), |e| e.at.max(change.at()));
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = BindingKey::of(&change);
        self.latest.insert(key.clone(), seq);
        self.entries.push_back(Entry {
            seq,
            at,
            key,
            change,
        });
        while self.entries.len() > self.limits.max_entries {
            self.evict_front();
        }
    }

    /// Evicts the changes older than `max_age` seconds before `now`.
    pub fn trim(&mut self, now: u32) {
        let oldest = now.saturating_sub(self.limits.max_age);
        while self.entries.front().is_some_and(|e| e.at < oldest) {
            self.evict_front();
        }
    }

    fn evict_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.horizon = self.horizon.max(e.at.saturating_add(1));
            self.evicted += 1;
            if self.latest.get(&e.key) == Some(&e.seq) {
                self.latest.remove(&e.key);
            }
        }
    }

    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Starts a catch-up of the changes at or after `since`; `None` when the ring does not reach
    /// back that far (DataMissing at once).
    pub fn catch_up(&self, since: u32) -> Option<CatchUp> {
        if !self.covers(since) {
            return None;
        }
        let i = self.entries.partition_point(|e| e.at < since);
        let next = self.entries.get(i).map_or(self.next_seq, |e| e.seq);
        Some(CatchUp {
            since,
            next,
            end: self.next_seq,
        })
    }

    /// Emits up to `budget` changes of the catch-up window, each binding's current state once.
    /// `emit` returns false when the caller cannot take the change now: it is offered again on
    /// the next call.
    pub fn catch_up_step(
        &self,
        cur: &mut CatchUp,
        budget: usize,
        mut emit: impl FnMut(&Change) -> bool,
    ) -> CatchUpStep {
        if cur.next < self.first_seq() && !self.covers(cur.since) {
            return CatchUpStep::Lost;
        }
        let first = self.first_seq();
        cur.next = cur.next.max(first);
        let mut examined = 0;
        while cur.next < cur.end {
            if examined == budget {
                return CatchUpStep::More;
            }
            examined += 1;
            let Some(e) = usize::try_from(cur.next - first)
                .ok()
                .and_then(|i| self.entries.get(i))
            else {
                break;
            };
            if self.latest.get(&e.key) == Some(&e.seq) && !emit(&e.change) {
                return CatchUpStep::More;
            }
            cur.next += 1;
        }
        CatchUpStep::Done
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::lease::{ChangeKind, V4Binding};
    use crate::proto::codes::dhcp_state;

    fn v4(addr: u8, at: u32, cltt: u32) -> Change {
        Change::V4 {
            at,
            kind: ChangeKind::Renew,
            binding: V4Binding {
                addr: Ipv4Addr::new(192, 0, 2, addr),
                port_params: None,
                htype: 1,
                chaddr: vec![2, 0, 0, 0, 0, addr],
                client_id: None,
                state: dhcp_state::ACTIVE,
                cltt,
                state_start: cltt,
                expires: cltt + 3600,
                circuit_id: None,
                remote_id: None,
                relay_id: None,
                softwire_src: None,
                v6: None,
                data_source: 0,
            },
        }
    }

    fn all(h: &History, cur: &mut CatchUp) -> (Vec<(u8, u32)>, CatchUpStep) {
        let mut out = Vec::new();
        let step = loop {
            let s = h.catch_up_step(cur, 3, |c| {
                if let Change::V4 { binding, .. } = c {
                    out.push((binding.addr.octets()[3], binding.cltt));
                }
                true
            });
            if s != CatchUpStep::More {
                break s;
            }
        };
        out.sort();
        (out, step)
    }

    #[test]
    fn catch_up_sends_each_changed_binding_once_in_its_latest_state() {
        let mut h = History::new(HistoryLimits::default(), 1000);
        h.push(v4(1, 1000, 1));
        h.push(v4(2, 1005, 2));
        h.push(v4(1, 1010, 3));
        h.push(v4(3, 1010, 4));
        h.push(v4(2, 1020, 5));
        let mut cur = h.catch_up(1005).unwrap();
        let (got, step) = all(&h, &mut cur);
        assert_eq!(step, CatchUpStep::Done);
        // Binding 1 changed at 1010 (latest state cltt 3); 2 at 1020 (cltt 5); 3 at 1010.
        assert_eq!(got, vec![(1, 3), (2, 5), (3, 4)]);
        // From after every change: nothing to send, done at once.
        let mut cur = h.catch_up(1021).unwrap();
        assert_eq!(all(&h, &mut cur), (vec![], CatchUpStep::Done));
        // Before the ring's start: DataMissing at once.
        assert!(h.catch_up(999).is_none());
    }

    #[test]
    fn changes_after_the_start_are_left_to_live_updates() {
        let mut h = History::new(HistoryLimits::default(), 0);
        h.push(v4(1, 10, 1));
        h.push(v4(2, 10, 2));
        let mut cur = h.catch_up(0).unwrap();
        // Binding 1 changes after the catch-up began: its live update carries it.
        h.push(v4(1, 11, 9));
        h.push(v4(4, 11, 9));
        let (got, step) = all(&h, &mut cur);
        assert_eq!(step, CatchUpStep::Done);
        assert_eq!(got, vec![(2, 2)]);
    }

    #[test]
    fn bounds_by_entries_and_age_move_the_horizon() {
        let limits = HistoryLimits {
            max_entries: 3,
            max_age: 100,
        };
        let mut h = History::new(limits, 0);
        for i in 0..5u8 {
            h.push(v4(i, 10 + u32::from(i), 0));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.evicted(), 2);
        assert_eq!(
            h.horizon(),
            12,
            "one past the newest evicted change (at 11)"
        );
        assert!(h.catch_up(11).is_none());
        let mut cur = h.catch_up(12).unwrap();
        assert_eq!(all(&h, &mut cur).0, vec![(2, 0), (3, 0), (4, 0)]);
        h.trim(114);
        assert_eq!(h.len(), 1, "changes at 12 and 13 are older than 100 s");
        assert_eq!(h.horizon(), 14);
        h.trim(10_000);
        assert!(h.is_empty());
        assert_eq!(h.horizon(), 15);
    }

    #[test]
    fn eviction_during_catch_up_is_reported_as_lost() {
        let limits = HistoryLimits {
            max_entries: 4,
            max_age: 1000,
        };
        let mut h = History::new(limits, 0);
        for i in 0..4u8 {
            h.push(v4(i, 20 + u32::from(i), 0));
        }
        let mut cur = h.catch_up(20).unwrap();
        let mut n = 0;
        assert_eq!(
            h.catch_up_step(&mut cur, 1, |_| {
                n += 1;
                true
            }),
            CatchUpStep::More
        );
        assert_eq!(n, 1);
        // Two new changes push out the entries at 20 and 21; the cursor stood at 21.
        h.push(v4(9, 30, 0));
        h.push(v4(8, 30, 0));
        assert_eq!(h.catch_up_step(&mut cur, 10, |_| true), CatchUpStep::Lost);
    }

    #[test]
    fn refused_changes_are_offered_again_and_time_stays_ordered() {
        let mut h = History::new(HistoryLimits::default(), 0);
        h.push(v4(1, 50, 0));
        // A clock step backwards is clamped: the ring stays time-ordered.
        h.push(v4(2, 40, 0));
        let mut cur = h.catch_up(50).unwrap();
        let mut refused = false;
        let mut seen = Vec::new();
        loop {
            let s = h.catch_up_step(&mut cur, 10, |c| {
                if !refused {
                    refused = true;
                    return false;
                }
                seen.push(c.at());
                true
            });
            if s == CatchUpStep::Done {
                break;
            }
        }
        assert_eq!(seen, vec![50, 40]);
        let zero = HistoryLimits {
            max_entries: 0,
            max_age: 10,
        };
        let mut h = History::new(zero, 0);
        h.push(v4(1, 7, 0));
        assert!(h.is_empty());
        assert!(!h.covers(7) && h.covers(8));
    }
}
