//! Fuzz the 4o6 lease authority (`cargo +nightly fuzz run authority`): any datagram on UDP 547
//! must give an outcome, never a panic; a few datagrams in a row exercise the state.
#![no_main]

use leasequery::authority::{client_shard, Authority, AuthorityConfig};
use leasequery::lease::LeaseTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = AuthorityConfig::demo().validate().expect("demo config");
    let mut a = Authority::new(&cfg, 0, 1);
    let mut t = LeaseTable::new();
    let src = std::net::Ipv6Addr::LOCALHOST;
    let now = 1_767_225_600;
    let _ = client_shard(data, 2);
    // The input, then its halves, so a datagram can meet state a previous one left.
    let _ = a.handle(&mut t, data, src, now);
    let (x, y) = data.split_at(data.len() / 2);
    let _ = a.handle(&mut t, x, src, now + 1);
    let _ = a.handle(&mut t, y, src, now + 2);
    let _ = a.expire(&mut t, now + 100_000);
});
