//! Unit tests of the all-configured-addresses phase (no table, no shell).

use std::net::Ipv4Addr;

use super::Pools;
use crate::lease::{shard_of_addr, ScanStep, V4Query, V4Select, V6Query};
use crate::proto::codes::dhcp_state;
use crate::session::ScanTarget;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn all() -> ScanTarget {
    ScanTarget::V4(V4Query::all())
}

/// One pool, 192.0.2.10 ..= 192.0.2.19.
fn pool() -> Vec<(Ipv4Addr, Ipv4Addr)> {
    vec![(ip("192.0.2.10"), ip("192.0.2.19"))]
}

/// Runs the phase to its end with a budget per step; every offered address is taken.
fn drain(p: &mut Pools, shard: usize, shards: usize, budget: usize) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let step = p.step(shard, shards, budget, |r| {
            assert_eq!(r.state, dhcp_state::AVAILABLE);
            assert_eq!(r.cltt, 0);
            assert!(r.client_id.is_none() && r.chaddr.is_empty());
            out.push(r.addr);
            true
        });
        if step == ScanStep::Done {
            return out;
        }
    }
    panic!("the phase never ended");
}

#[test]
fn only_a_query_for_all_configured_addresses_has_the_phase() {
    assert!(Pools::for_target(&all(), pool()).is_some());
    let mut q = V4Query::all();
    q.changed_since = Some(5);
    assert!(Pools::for_target(&ScanTarget::V4(q), pool()).is_none());
    let mut q = V4Query::all();
    q.changed_until = Some(5);
    assert!(Pools::for_target(&ScanTarget::V4(q), pool()).is_none());
    let mut q = V4Query::all();
    q.only_4o6 = true;
    assert!(Pools::for_target(&ScanTarget::V4(q), pool()).is_none());
    let mut q = V4Query::all();
    q.select = V4Select::ClientId(vec![1, 2, 3]);
    assert!(Pools::for_target(&ScanTarget::V4(q), pool()).is_none());
    let v6 = ScanTarget::V6(V6Query::all());
    assert!(Pools::for_target(&v6, pool()).is_none());
}

#[test]
fn lists_every_unmarked_pool_address_once_in_order() {
    let mut p = Pools::for_target(&all(), pool()).unwrap();
    p.mark(ip("192.0.2.12"));
    p.mark(ip("192.0.2.19"));
    // Outside every pool: ignored.
    p.mark(ip("198.51.100.1"));
    let got = drain(&mut p, 0, 1, 512);
    let want: Vec<Ipv4Addr> = (10..=18)
        .filter(|&a| a != 12)
        .map(|a| Ipv4Addr::new(192, 0, 2, a))
        .collect();
    assert_eq!(got, want);
    // Done stays done.
    assert_eq!(
        p.step(0, 1, 512, |_| panic!("offered after Done")),
        ScanStep::Done
    );
}

#[test]
fn no_pools_is_done_at_once() {
    let mut p = Pools::for_target(&all(), Vec::new()).unwrap();
    assert_eq!(p.step(0, 1, 1, |_| panic!("no address")), ScanStep::Done);
}

#[test]
fn the_budget_counts_examined_addresses_and_the_next_step_resumes() {
    let ranges = vec![
        (ip("10.0.0.0"), ip("10.0.0.199")),
        (ip("10.1.0.0"), ip("10.1.0.9")),
    ];
    let mut p = Pools::for_target(&all(), ranges).unwrap();
    // Every address is marked but one: each step examines at most 64 of them.
    for a in 0..200u32 {
        if a != 150 {
            p.mark(Ipv4Addr::from(u32::from(ip("10.0.0.0")) + a));
        }
    }
    let mut steps = 0;
    let mut got = Vec::new();
    loop {
        steps += 1;
        if p.step(0, 1, 64, |r| {
            got.push(r.addr);
            true
        }) == ScanStep::Done
        {
            break;
        }
    }
    // 210 addresses, 64 per step: 4 steps.
    assert_eq!(steps, 4);
    let mut want = vec![ip("10.0.0.150")];
    want.extend((0..10).map(|a| Ipv4Addr::new(10, 1, 0, a)));
    assert_eq!(got, want);
}

#[test]
fn an_address_refused_for_lack_of_room_is_offered_again() {
    let mut p = Pools::for_target(&all(), pool()).unwrap();
    let mut offered = Vec::new();
    let step = p.step(0, 1, 512, |r| {
        offered.push(r.addr);
        offered.len() < 3
    });
    assert_eq!(step, ScanStep::More);
    assert_eq!(offered.last(), Some(&ip("192.0.2.12")));
    let rest = drain(&mut p, 0, 1, 512);
    assert_eq!(rest.first(), Some(&ip("192.0.2.12")));
    assert_eq!(rest.len(), 8);
}

#[test]
fn each_shard_lists_only_the_addresses_it_owns_and_together_every_one() {
    let shards = 3;
    let ranges = vec![(ip("192.0.2.0"), ip("192.0.2.255"))];
    let mut all_listed = Vec::new();
    for shard in 0..shards {
        let mut p = Pools::for_target(&all(), ranges.clone()).unwrap();
        p.mark(ip("192.0.2.7"));
        for a in drain(&mut p, shard, shards, 50) {
            assert_eq!(shard_of_addr(a, shards), shard);
            all_listed.push(a);
        }
    }
    all_listed.sort();
    let want: Vec<Ipv4Addr> = (0..=255u8)
        .filter(|&a| a != 7)
        .map(|a| Ipv4Addr::new(192, 0, 2, a))
        .collect();
    assert_eq!(all_listed, want);
}
