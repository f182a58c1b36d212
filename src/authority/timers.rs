//! Timers: lease ends, hold ends and offer holds, on `now` handed in (no clock); and the
//! restore that rebuilds the directory, the claims and the timers from a replayed table.

use std::cmp::Reverse;
use std::net::Ipv6Addr;

use super::pools::Unit;
use super::{Authority, DirEntry};
use crate::lease::{Change, ChangeKind, LeaseTable, ScanStep, V4Query};
use crate::proto::codes::dhcp_state;
use crate::proto::record::V4Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// An ACTIVE lease ends.
    Lease(Unit),
    /// An EXPIRED / RELEASED / ABANDONED hold ends.
    Hold(Unit),
    /// An offer's hold ends (offer id).
    Offer(u64),
}

/// A binding found by [`Authority::restore`]: unit, client-id, state, expires, cltt, softwire.
pub(super) type Seen = (Unit, Vec<u8>, u8, u32, u32, Option<Ipv6Addr>);

/// The lease time (option 51) and `expires` of an infinite lease (RFC 2131 §3.3).
pub(super) const INFINITE: u32 = u32::MAX;

/// When a lease of `lease_time` seconds granted at `now` ends: never (`u32::MAX`) for the
/// infinite 0xffffffff; otherwise at most `u32::MAX - 1` (2106), so that a finite lease is never
/// taken for an infinite one.
pub(super) fn lease_end(lease_time: u32, now: u32) -> u32 {
    if lease_time == INFINITE {
        INFINITE
    } else {
        now.saturating_add(lease_time).min(INFINITE - 1)
    }
}

impl Authority {
    /// Rebuilds the client directory, the softwire claims and the timers from a table loaded by
    /// journal replay (and import). Call once, on a fresh authority, before the first
    /// [`Authority::handle`]. Bindings outside every subnet or owned by another shard are left
    /// alone (not indexed). The active leases' softwire sources owned by this shard are claimed
    /// at once; the others wait in [`Authority::take_registrations`] for the shell to claim at
    /// their owners (see the module docs).
    pub fn restore(&mut self, table: &LeaseTable) {
        let q = V4Query::all();
        let mut cur = table.start_v4(&q);
        let mut seen: Vec<Seen> = Vec::new();
        loop {
            let step = table.scan_v4(&q, &mut cur, 4096, |r: V4Record<'_>| {
                if let Some(cid) = r.client_id {
                    seen.push((
                        Unit {
                            addr: u32::from(r.addr),
                            psid: r.port_params.map(|p| p.psid),
                        },
                        cid.to_vec(),
                        r.state,
                        r.expires,
                        r.cltt,
                        r.softwire_src,
                    ));
                }
                true
            });
            if step == ScanStep::Done {
                break;
            }
        }
        // Latest transaction first wins the directory entry, ACTIVE before anything else.
        seen.sort_by_key(|s| (s.2 == dhcp_state::ACTIVE, s.4));
        for (unit, cid, state, expires, _cltt, sw) in seen {
            if self.subnet_of(unit.addr).is_none() || !self.owns(unit.addr) {
                continue;
            }
            self.dir
                .insert(cid.clone(), DirEntry { unit, sw_set_at: 0 });
            match state {
                dhcp_state::ACTIVE => {
                    if let Some(sw) = sw {
                        let claim = self.new_claim(sw, &cid);
                        if claim.owner(self.shards) == self.shard {
                            let granted = self.claim_softwire(&claim);
                            self.settle_registration(claim, granted);
                        } else {
                            self.registrations.push(claim);
                        }
                    }
                    if expires != INFINITE {
                        self.timers.push(Reverse((expires, Timer::Lease(unit))));
                    }
                }
                dhcp_state::EXPIRED | dhcp_state::RELEASED | dhcp_state::ABANDONED => {
                    self.timers.push(Reverse((expires, Timer::Hold(unit))));
                }
                _ => {}
            }
        }
    }

    /// The earliest time [`Authority::expire`] has work, if any.
    pub fn next_deadline(&self) -> Option<u32> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs every timer due at `now`: ACTIVE leases past their expiry become EXPIRED (a
    /// [`ChangeKind::Expire`] change each), ended holds make units reusable, unanswered offers
    /// are withdrawn.
    pub fn expire(&mut self, table: &mut LeaseTable, now: u32) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(&Reverse((t, timer))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Lease(unit) => {
                    let Some(mut b) = self.binding(table, unit) else {
                        continue;
                    };
                    if b.state != dhcp_state::ACTIVE || b.expires != t {
                        continue;
                    }
                    if let Some(sw) = b.softwire_src {
                        self.drop_softwire(sw, b.client_id.as_deref());
                    }
                    b.state = dhcp_state::EXPIRED;
                    b.state_start = now;
                    b.expires = now.saturating_add(self.cfg.expired_hold);
                    if table.upsert_v4(b.clone()).is_err() {
                        self.counters.table_errors += 1;
                        continue;
                    }
                    self.timers.push(Reverse((b.expires, Timer::Hold(unit))));
                    self.counters.expirations += 1;
                    changes.push(Change::V4 {
                        at: now,
                        kind: ChangeKind::Expire,
                        binding: b,
                    });
                }
                Timer::Hold(unit) => {
                    let Some(b) = self.binding(table, unit) else {
                        continue;
                    };
                    if b.state != dhcp_state::ACTIVE && b.expires == t {
                        self.push_free(unit);
                    }
                }
                Timer::Offer(id) => {
                    let Some(cid) = self.offer_ids.get(&id).cloned() else {
                        continue;
                    };
                    if let Some(o) = self.withdraw_offer(&cid) {
                        self.counters.offers_expired += 1;
                        self.push_free(o.unit);
                    }
                }
            }
        }
        changes
    }

    /// Renewals leave stale timers behind; when they outnumber the live ones, keep only the
    /// live ones (so the heap stays within twice the bindings and offers, plus a constant).
    pub(super) fn maybe_compact_timers(&mut self, table: &LeaseTable) {
        if self.timers.len() <= 2 * (table.len_v4() + self.offers.len()) + 1024 {
            return;
        }
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter(|Reverse((t, timer))| match timer {
                Timer::Lease(u) => self
                    .binding(table, *u)
                    .is_some_and(|b| b.state == dhcp_state::ACTIVE && b.expires == *t),
                Timer::Hold(u) => self
                    .binding(table, *u)
                    .is_some_and(|b| b.state != dhcp_state::ACTIVE && b.expires == *t),
                Timer::Offer(id) => self.offer_ids.contains_key(id),
            })
            .collect();
    }

    /// The number of pending timers (live and stale), for tests and metrics.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::testutil::{authority, cfg, cid};
    use super::*;
    use crate::lease::{V4Binding, V6ContextBinding};

    fn active(addr: Ipv4Addr, client: u32, expires: u32) -> V4Binding {
        V4Binding {
            addr,
            port_params: None,
            htype: 1,
            chaddr: vec![2, 0, 0, 0, 0, client as u8],
            client_id: Some(cid(client)),
            state: dhcp_state::ACTIVE,
            cltt: 100,
            state_start: 100,
            expires,
            circuit_id: None,
            remote_id: None,
            relay_id: None,
            softwire_src: None,
            v6: Some(V6ContextBinding {
                client_src: Ipv6Addr::LOCALHOST,
                link: Ipv6Addr::LOCALHOST,
                relay: None,
            }),
            data_source: 0,
        }
    }

    #[test]
    fn lease_ends_clamp_below_infinite() {
        assert_eq!(lease_end(INFINITE, 5), INFINITE);
        assert_eq!(lease_end(3600, 100), 3700);
        // A finite lease never ends at the infinite value.
        assert_eq!(lease_end(10, u32::MAX - 3), INFINITE - 1);
    }

    #[test]
    fn a_restored_lease_expires_then_its_hold_frees_the_unit() {
        let c = cfg();
        let hold = c.expired_hold;
        let mut a = authority(&c);
        let mut table = LeaseTable::new();
        let addr = Ipv4Addr::new(192, 0, 2, 9);
        table.upsert_v4(active(addr, 1, 500)).expect("upsert");
        // Outside every subnet: not indexed, no timer.
        table
            .upsert_v4(active(Ipv4Addr::new(203, 0, 113, 1), 2, 400))
            .expect("upsert");
        a.restore(&table);
        assert_eq!(a.next_deadline(), Some(500));
        assert!(a.expire(&mut table, 499).is_empty());
        let changes = a.expire(&mut table, 500);
        assert_eq!(changes.len(), 1);
        let Change::V4 { kind, binding, at } = &changes[0] else {
            panic!("a v4 change");
        };
        assert_eq!((*kind, *at), (ChangeKind::Expire, 500));
        assert_eq!(binding.state, dhcp_state::EXPIRED);
        assert_eq!(binding.expires, 500 + hold);
        assert_eq!(
            table.get_v4(addr, None).map(|r| r.state),
            Some(dhcp_state::EXPIRED)
        );
        assert_eq!(a.counters.expirations, 1);
        // The hold's end makes the unit free again (no change for it).
        assert_eq!(a.next_deadline(), Some(500 + hold));
        assert!(a.expire(&mut table, 500 + hold).is_empty());
        let unit = Unit {
            addr: addr.into(),
            psid: None,
        };
        assert!(a.pools[0].in_free.contains(&unit));
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_renewed_lease_leaves_its_old_timer_stale() {
        let mut a = authority(&cfg());
        let mut table = LeaseTable::new();
        let addr = Ipv4Addr::new(192, 0, 2, 9);
        table.upsert_v4(active(addr, 1, 500)).expect("upsert");
        a.restore(&table);
        // Renewed behind the timer's back: the old timer finds another expiry and does nothing.
        table.upsert_v4(active(addr, 1, 900)).expect("upsert");
        assert!(a.expire(&mut table, 600).is_empty());
        assert_eq!(a.counters.expirations, 0);
        assert_eq!(
            table.get_v4(addr, None).map(|r| r.state),
            Some(dhcp_state::ACTIVE)
        );
        assert_eq!(a.timers_pending(), 0);
    }
}
