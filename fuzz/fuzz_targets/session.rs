//! Fuzz the server's per-message decisions (`cargo +nightly fuzz run session`): any bytes on
//! either leasequery listener must give an action, never a panic.
#![no_main]

use leasequery::config::Config;
use leasequery::session::{on_message, Family, Identity, LinkSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = Identity { server_duid: vec![0, 4, 1, 2, 3, 4], server_id: std::net::Ipv4Addr::LOCALHOST };
    let mut links = LinkSet::default();
    links.insert("2001:db8:1::".parse().unwrap());
    let config = Config::default().session_policy();
    let _ = on_message(Family::V6, data, &id, &config, &links, 1_767_225_600);
    let _ = on_message(Family::V4, data, &id, &config, &links, 1_767_225_600);
});
