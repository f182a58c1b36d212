//! The all-configured-addresses phase of a DHCPv4 bulk query (sans-io): which pool addresses a
//! shard lists after its bindings.
//!
//! A DHCPv4 query for all configured addresses (RFC 6926 §6.2 with no primary query) lists,
//! after a shard's bindings, the authority's pool addresses that shard owns that have no
//! binding at all, each as DHCPLEASEUNASSIGNED with dhcp-state AVAILABLE. Addresses with a
//! binding (any PSID, any state) were listed by the first phase, so each address is listed once.
//! Not for a query with a time window: a never-leased address has no time.
//!
//! The shell (`shard::scan`) marks every address its binding scan listed ([`Pools::mark`]), then
//! steps the second phase with a record budget per turn ([`Pools::step`]).

use std::net::Ipv4Addr;

use crate::lease::{shard_of_addr, ScanStep, V4Select};
use crate::proto::record::V4Record;
use crate::session::ScanTarget;

/// The second phase of one shard's scan for a query for all configured addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    /// Pool ranges (first, last), inclusive.
    ranges: Vec<(u32, u32)>,
    /// Per range, a bit per address: listed by the first phase.
    seen: Vec<Vec<u64>>,
    /// Next (range, address) of the second phase.
    next: (usize, u64),
}

impl Pools {
    /// The second phase of a scan for `target` over the pools `ranges` (first, last, inclusive;
    /// the authority's subnets), or `None` when `target` is not a query for all configured
    /// addresses (a v6 query, a primary query, a time window, or DHCP4o6 bindings only).
    pub fn for_target(
        target: &ScanTarget,
        ranges: impl IntoIterator<Item = (Ipv4Addr, Ipv4Addr)>,
    ) -> Option<Pools> {
        let ScanTarget::V4(q) = target else {
            return None;
        };
        let all = q.select == V4Select::All
            && q.changed_since.is_none()
            && q.changed_until.is_none()
            && !q.only_4o6;
        if !all {
            return None;
        }
        let ranges: Vec<(u32, u32)> = ranges
            .into_iter()
            .map(|(first, last)| (u32::from(first), u32::from(last)))
            .collect();
        let seen = ranges
            .iter()
            .map(|&(a, b)| vec![0u64; (u64::from(b.saturating_sub(a)) / 64 + 1) as usize])
            .collect();
        let first = ranges.first().map_or(0, |r| u64::from(r.0));
        Some(Pools {
            ranges,
            seen,
            next: (0, first),
        })
    }

    /// Notes an address the first phase listed (pools never overlap: the authority's config
    /// validation refuses it). An address outside every pool is ignored.
    pub fn mark(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        if let Some(i) = self.ranges.iter().position(|(f, l)| (*f..=*l).contains(&a)) {
            let bit = (a - self.ranges[i].0) as usize;
            self.seen[i][bit / 64] |= 1 << (bit % 64);
        }
    }

    fn listed(&self, range: usize, a: u32) -> bool {
        let bit = (a - self.ranges[range].0) as usize;
        self.seen[range][bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Offers the next unlisted pool addresses that `shard` of `shards` owns to `emit`, examining
    /// at most `budget` addresses; `emit` returning false means no room: that address is
    /// offered again by the next step. [`ScanStep::Done`] once every pool address was examined.
    pub fn step(
        &mut self,
        shard: usize,
        shards: usize,
        budget: usize,
        mut emit: impl FnMut(V4Record<'_>) -> bool,
    ) -> ScanStep {
        let mut examined = 0;
        while let Some(&(first, last)) = self.ranges.get(self.next.0) {
            let (range, mut a) = self.next;
            a = a.max(u64::from(first));
            while a <= u64::from(last) {
                if examined == budget {
                    self.next = (range, a);
                    return ScanStep::More;
                }
                examined += 1;
                let addr = a as u32;
                if shard_of_addr(Ipv4Addr::from(addr), shards) == shard && !self.listed(range, addr)
                {
                    let rec = V4Record::available(Ipv4Addr::from(addr));
                    if !emit(rec) {
                        self.next = (range, a);
                        return ScanStep::More;
                    }
                }
                a += 1;
            }
            self.next = (range + 1, 0);
        }
        ScanStep::Done
    }
}

#[cfg(test)]
mod tests;
