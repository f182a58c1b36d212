//! Untrusted bytes never panic the session (the fuzz targets in fuzz/ do the same at scale):
//! random messages, and every truncation and single-octet corruption of valid queries.

use leasequery::config::Config;
use leasequery::session::{on_message, Action, Family, Identity, LinkSet};
use proptest::prelude::*;

fn id() -> Identity {
    Identity {
        server_duid: vec![0, 4, 1, 2, 3, 4],
        server_id: std::net::Ipv4Addr::LOCALHOST,
    }
}

/// The DHCP4o6 bulk query of codepoints-and-scenarios.md §4.4 (relay-id query).
fn worked_4o6() -> Vec<u8> {
    let mut m = hex::decode("0eabcdef0001000a00030001aabbccddeeff002c002503").unwrap();
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&hex::decode("0035000a0003000102000000000100060002005c").unwrap());
    let mut v4 = vec![0u8; 236];
    v4[0] = 1;
    v4[4..8].copy_from_slice(&0x11223344u32.to_be_bytes());
    v4.extend_from_slice(&[99, 130, 83, 99, 53, 1, 14, 55, 2, 91, 159, 82, 12, 12, 10]);
    v4.extend_from_slice(&hex::decode("00030001020000000001").unwrap());
    v4.push(255);
    m.extend_from_slice(&[0, 87]);
    m.extend_from_slice(&(v4.len() as u16).to_be_bytes());
    m.extend_from_slice(&v4);
    m
}

fn links() -> LinkSet {
    let mut l = LinkSet::default();
    l.insert("2001:db8:1::".parse().unwrap());
    l
}

#[test]
fn the_worked_4o6_query_is_accepted_as_a_scan() {
    let a = on_message(
        Family::V6,
        &worked_4o6(),
        &id(),
        &Config::default().session_policy(),
        &links(),
        1_767_225_600,
    );
    assert!(matches!(a, Action::Scan(_)), "{a:?}");
}

#[test]
fn every_truncation_and_corruption_of_a_valid_query_is_handled() {
    let q = worked_4o6();
    let (cfg, l) = (Config::default().session_policy(), links());
    for cut in 0..q.len() {
        let _ = on_message(Family::V6, &q[..cut], &id(), &cfg, &l, 1_767_225_600);
    }
    for i in 0..q.len() {
        for b in [0u8, 1, 0x7f, 0xff] {
            let mut m = q.clone();
            m[i] = b;
            let _ = on_message(Family::V6, &m, &id(), &cfg, &l, 1_767_225_600);
            let _ = on_message(
                Family::V4,
                &m[q.len() - 266.min(q.len())..],
                &id(),
                &cfg,
                &l,
                1_767_225_600,
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (cfg, l) = (Config::default().session_policy(), links());
        let _ = on_message(Family::V6, &data, &id(), &cfg, &l, 1_767_225_600);
        let _ = on_message(Family::V4, &data, &id(), &cfg, &l, 1_767_225_600);
    }
}
