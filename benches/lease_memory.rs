//! Memory per 4o6 binding in one lease shard, including every index.
//!
//! `LEASE_N=10000000 cargo bench --bench lease_memory` (default N = 1_000_000). Inserts N
//! realistic DHCP4o6 bindings and prints the resident-set growth per binding (from
//! /proc/self/statm, 4096-octet pages) and the table's own capacity-based estimate.
//! Bindings: shared addresses with a 4-bit PSID, RFC 4361 client-id (0xff, IAID, DUID-LL:
//! 15 octets), 6-octet chaddr, a relay-id and link shared by 1000 bindings, a unique 8-octet
//! remote-id and a unique softwire source.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use leasequery::lease::{LeaseTable, V4Binding, V6ContextBinding};
use leasequery::proto::record::PortParams;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm");
    pages * 4096
}

fn binding(i: u32) -> V4Binding {
    let mac = [
        2,
        0,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ];
    let mut client_id = vec![0xff, 0, 0, 0, 1, 0, 3, 0, 1];
    client_id.extend_from_slice(&mac);
    let group = i / 1000;
    let relay = [
        0,
        3,
        0,
        1,
        0x0a,
        0,
        (group >> 16) as u8,
        (group >> 8) as u8,
        group as u8,
        1,
    ];
    let softwire = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1);
    let link = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(group) << 80));
    V4Binding {
        addr: Ipv4Addr::from(0x0a00_0000 + i / 16),
        port_params: Some(PortParams {
            offset: 6,
            psid_len: 4,
            psid: (i % 16) as u16,
        }),
        htype: 1,
        chaddr: mac.to_vec(),
        client_id: Some(client_id),
        state: 2,
        cltt: 1_767_225_600 + i % 3600,
        state_start: 1_767_225_600,
        expires: 1_767_229_200 + i % 3600,
        circuit_id: None,
        remote_id: Some(u64::from(i).to_be_bytes().to_vec()),
        relay_id: Some(relay.to_vec()),
        softwire_src: Some(softwire),
        v6: Some(V6ContextBinding {
            client_src: softwire,
            link,
            relay: None,
        }),
        data_source: 0,
    }
}

fn main() {
    let n: u32 = std::env::var("LEASE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_bytes();
    let started = Instant::now();
    let mut shard = LeaseTable::new();
    for i in 0..n {
        shard.upsert_v4(binding(i)).expect("insert");
    }
    let took = started.elapsed();
    let after = rss_bytes();
    assert_eq!(shard.len_v4(), n as usize);
    let per = |bytes: u64| bytes as f64 / f64::from(n.max(1));
    println!("lease_memory: {n} 4o6 bindings inserted in {took:.2?}");
    println!(
        "  RSS delta: {:.1} MiB = {:.1} octets/binding",
        (after.saturating_sub(before)) as f64 / 1048576.0,
        per(after.saturating_sub(before))
    );
    println!(
        "  table heap (capacity): {:.1} octets/binding",
        per(shard.v4_heap_bytes() as u64)
    );
}
