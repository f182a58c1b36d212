//! The lease shard: every query type, time and link filters, index upkeep on replace/remove,
//! budgeted and refused-emit resumption, and the scan invariant under concurrent changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::lease::{
    shard_of_addr, shard_of_client, shard_of_duid, LeaseError, LeaseTable, RelayBinding, ScanStep,
    V4Binding, V4Query, V4Select, V6Binding, V6ContextBinding, V6Query, V6Select,
};
use leasequery::proto::codes::dhcp_state;
use leasequery::proto::record::{PortParams, RelayRecord, V6Addr, V6Context, V6Prefix};
use proptest::prelude::*;

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn psid(id: u16) -> Option<PortParams> {
    Some(PortParams {
        offset: 0,
        psid_len: 4,
        psid: id,
    })
}

/// A plain v4 binding with only the key and times set.
fn v4(addr: &str, pp: Option<PortParams>) -> V4Binding {
    V4Binding {
        addr: ip4(addr),
        port_params: pp,
        htype: 1,
        chaddr: vec![],
        client_id: None,
        state: dhcp_state::ACTIVE,
        cltt: 1000,
        state_start: 1000,
        expires: 5000,
        circuit_id: None,
        remote_id: None,
        relay_id: None,
        softwire_src: None,
        v6: None,
        data_source: 0,
    }
}

/// Turns a binding into a 4o6 one on `link` with softwire source `sw`.
fn o6(mut b: V4Binding, link: &str, sw: &str) -> V4Binding {
    b.softwire_src = Some(ip6(sw));
    b.v6 = Some(V6ContextBinding {
        client_src: ip6(sw),
        link: ip6(link),
        relay: None,
    });
    b
}

fn q4(select: V4Select) -> V4Query {
    V4Query {
        select,
        changed_since: None,
        changed_until: None,
        only_4o6: false,
        only_active: false,
    }
}

fn q6(select: V6Select) -> V6Query {
    V6Query {
        select,
        link_filter: None,
        changed_since: None,
        changed_until: None,
    }
}

type Key4 = (Ipv4Addr, Option<u16>);

/// Runs a v4 query to the end with a large budget; the keys emitted, checking none twice.
fn run4(t: &LeaseTable, q: &V4Query) -> Vec<Key4> {
    let mut cur = t.start_v4(q);
    let mut out = Vec::new();
    let step = t.scan_v4(q, &mut cur, 1 << 20, |r| {
        out.push((r.addr, r.port_params.map(|p| p.psid)));
        true
    });
    assert_eq!(step, ScanStep::Done);
    let set: BTreeSet<_> = out.iter().copied().collect();
    assert_eq!(set.len(), out.len(), "a binding was emitted twice");
    out.sort();
    out
}

fn keys(list: &[(&str, Option<u16>)]) -> Vec<Key4> {
    let mut v: Vec<Key4> = list.iter().map(|(a, p)| (ip4(a), *p)).collect();
    v.sort();
    v
}

/// Six bindings covering every v4 selector.
fn sample_v4() -> LeaseTable {
    let mut t = LeaseTable::new();
    let mut a = v4("192.0.2.1", None);
    a.chaddr = vec![2, 0, 0, 0, 0, 1];
    a.client_id = Some(vec![1, 2, 0, 0, 0, 0, 1]);
    a.remote_id = Some(b"line-1".to_vec());
    a.relay_id = Some(b"relay-A".to_vec());
    a.circuit_id = Some(b"port-7".to_vec());
    t.upsert_v4(a).unwrap();

    let mut b = o6(v4("192.0.2.2", psid(1)), "2001:db8:1::1", "2001:db8:1::10");
    b.chaddr = vec![2, 0, 0, 0, 0, 2];
    b.client_id = Some(vec![255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 2]);
    b.relay_id = Some(b"relay-A".to_vec());
    t.upsert_v4(b).unwrap();

    let mut c = o6(v4("192.0.2.2", psid(2)), "2001:db8:1::2", "2001:db8:1::11");
    c.chaddr = vec![2, 0, 0, 0, 0, 1]; // same MAC as `a`
    c.htype = 1;
    c.remote_id = Some(b"line-2".to_vec());
    c.relay_id = Some(b"relay-B".to_vec());
    t.upsert_v4(c).unwrap();

    let mut d = o6(v4("192.0.2.3", None), "2001:db8:2::1", "2001:db8:2::10");
    d.chaddr = vec![2, 0, 0, 0, 0, 1];
    d.htype = 6; // same octets, other hardware type
    d.state = dhcp_state::EXPIRED;
    t.upsert_v4(d).unwrap();

    let mut e = v4("198.51.100.1", None);
    e.client_id = Some(vec![1, 2, 0, 0, 0, 0, 1]); // same client-id as `a`
    e.remote_id = Some(b"line-1".to_vec());
    t.upsert_v4(e).unwrap();

    t.upsert_v4(v4("198.51.100.2", None)).unwrap();
    t
}

#[test]
fn every_v4_query_type_returns_exactly_its_bindings() {
    let t = sample_v4();
    assert_eq!(t.len_v4(), 6);
    let all = keys(&[
        ("192.0.2.1", None),
        ("192.0.2.2", Some(1)),
        ("192.0.2.2", Some(2)),
        ("192.0.2.3", None),
        ("198.51.100.1", None),
        ("198.51.100.2", None),
    ]);
    assert_eq!(run4(&t, &q4(V4Select::All)), all);
    assert_eq!(
        run4(
            &t,
            &q4(V4Select::Chaddr {
                htype: 1,
                chaddr: vec![2, 0, 0, 0, 0, 1]
            })
        ),
        keys(&[("192.0.2.1", None), ("192.0.2.2", Some(2))])
    );
    assert_eq!(
        run4(
            &t,
            &q4(V4Select::Chaddr {
                htype: 6,
                chaddr: vec![2, 0, 0, 0, 0, 1]
            })
        ),
        keys(&[("192.0.2.3", None)])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::ClientId(vec![1, 2, 0, 0, 0, 0, 1]))),
        keys(&[("192.0.2.1", None), ("198.51.100.1", None)])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::RemoteId(b"line-1".to_vec()))),
        keys(&[("192.0.2.1", None), ("198.51.100.1", None)])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::RemoteId(b"line-2".to_vec()))),
        keys(&[("192.0.2.2", Some(2))])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::RelayId(b"relay-A".to_vec()))),
        keys(&[("192.0.2.1", None), ("192.0.2.2", Some(1))])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::RelayId(b"relay-C".to_vec()))),
        vec![]
    );
    assert_eq!(
        run4(&t, &q4(V4Select::SoftwireSrc(ip6("2001:db8:1::11")))),
        keys(&[("192.0.2.2", Some(2))])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::SoftwireSrc(ip6("2001:db8:1::12")))),
        vec![]
    );
    // Link: by the /64 of the binding's link.
    assert_eq!(
        run4(&t, &q4(V4Select::Link(ip6("2001:db8:1::ffff")))),
        keys(&[("192.0.2.2", Some(1)), ("192.0.2.2", Some(2))])
    );
    assert_eq!(
        run4(&t, &q4(V4Select::Link(ip6("2001:db8:2::")))),
        keys(&[("192.0.2.3", None)])
    );
    assert_eq!(run4(&t, &q4(V4Select::Link(ip6("2001:db8:3::")))), vec![]);
    let mut only = q4(V4Select::All);
    only.only_4o6 = true;
    assert_eq!(
        run4(&t, &only),
        keys(&[
            ("192.0.2.2", Some(1)),
            ("192.0.2.2", Some(2)),
            ("192.0.2.3", None)
        ])
    );
    let mut only_a = q4(V4Select::RelayId(b"relay-A".to_vec()));
    only_a.only_4o6 = true;
    assert_eq!(run4(&t, &only_a), keys(&[("192.0.2.2", Some(1))]));
    // only_active leaves out the EXPIRED `d` (issue 13 item 2, RFC 6926 §8.2).
    let active = |s| V4Query {
        only_active: true,
        ..q4(s)
    };
    assert_eq!(
        run4(
            &t,
            &active(V4Select::Chaddr {
                htype: 6,
                chaddr: vec![2, 0, 0, 0, 0, 1]
            })
        ),
        vec![]
    );
    assert_eq!(
        run4(&t, &active(V4Select::Link(ip6("2001:db8:2::")))),
        vec![]
    );
    assert_eq!(
        run4(&t, &active(V4Select::All)),
        keys(&[
            ("192.0.2.1", None),
            ("192.0.2.2", Some(1)),
            ("192.0.2.2", Some(2)),
            ("198.51.100.1", None),
            ("198.51.100.2", None),
        ])
    );
    assert_eq!(
        run4(&t, &active(V4Select::RelayId(b"relay-A".to_vec()))),
        keys(&[("192.0.2.1", None), ("192.0.2.2", Some(1))])
    );
}

#[test]
fn get_v4_lends_every_field() {
    let mut t = LeaseTable::new();
    let mut b = o6(v4("192.0.2.9", psid(3)), "2001:db8:1::", "2001:db8:1::10");
    b.chaddr = vec![2, 0, 0, 0, 0, 9];
    b.client_id = Some(vec![255, 1, 2, 3, 4, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
    b.circuit_id = Some(b"c".to_vec());
    b.remote_id = Some(b"r".to_vec());
    b.relay_id = Some(b"R".to_vec());
    b.state_start = 900;
    b.data_source = 1;
    b.v6.as_mut().unwrap().client_src = ip6("fe80::1");
    b.v6.as_mut().unwrap().relay = Some(RelayBinding {
        hop_count: 1,
        link_address: ip6("2001:db8:1::1"),
        peer_address: ip6("fe80::1"),
        interface_id: Some(b"eth0".to_vec()),
        relay_id: Some(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
        remote_id: None,
    });
    t.upsert_v4(b).unwrap();
    let r = t.get_v4(ip4("192.0.2.9"), psid(3)).unwrap();
    assert_eq!(r.addr, ip4("192.0.2.9"));
    assert_eq!(r.port_params, psid(3));
    assert_eq!((r.htype, r.chaddr), (1, &[2u8, 0, 0, 0, 0, 9][..]));
    assert_eq!(
        r.client_id,
        Some(&[255u8, 1, 2, 3, 4, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9][..])
    );
    assert_eq!(
        (r.state, r.cltt, r.state_start, r.expires),
        (dhcp_state::ACTIVE, 1000, 900, 5000)
    );
    assert_eq!(
        (r.circuit_id, r.remote_id, r.relay_id),
        (Some(&b"c"[..]), Some(&b"r"[..]), Some(&b"R"[..]))
    );
    assert_eq!(r.softwire_src, Some(ip6("2001:db8:1::10")));
    assert_eq!(r.data_source, 1);
    assert_eq!(
        r.v6,
        Some(V6Context {
            client_src: ip6("fe80::1"),
            link: ip6("2001:db8:1::"),
            relay: Some(RelayRecord {
                hop_count: 1,
                link_address: ip6("2001:db8:1::1"),
                peer_address: ip6("fe80::1"),
                interface_id: Some(b"eth0"),
                relay_id: Some(&[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
                remote_id: None,
            }),
        })
    );
    assert!(t.get_v4(ip4("192.0.2.9"), psid(4)).is_none());
    assert!(t.get_v4(ip4("192.0.2.9"), None).is_none());
}

#[test]
fn v4_time_window_uses_cltt_or_state_start() {
    let mut t = LeaseTable::new();
    for (addr, cltt, start) in [
        ("192.0.2.1", 100, 100),
        ("192.0.2.2", 200, 50),
        ("192.0.2.3", 50, 300),
        ("192.0.2.4", 400, 400),
    ] {
        let mut b = v4(addr, None);
        b.cltt = cltt;
        b.state_start = start;
        t.upsert_v4(b).unwrap();
    }
    let window = |since, until| {
        let mut q = q4(V4Select::All);
        q.changed_since = since;
        q.changed_until = until;
        run4(&t, &q)
            .into_iter()
            .map(|(a, _)| a.octets()[3])
            .collect::<Vec<_>>()
    };
    assert_eq!(window(Some(200), None), vec![2, 3, 4]);
    assert_eq!(window(None, Some(99)), vec![2, 3]);
    assert_eq!(window(Some(150), Some(350)), vec![2, 3]);
    assert_eq!(window(Some(100), Some(100)), vec![1]);
    assert_eq!(window(Some(401), None), Vec::<u8>::new());
    assert_eq!(window(None, None), vec![1, 2, 3, 4]);
}

#[test]
fn upsert_replacing_a_binding_updates_every_index() {
    let mut t = LeaseTable::new();
    let mut old = o6(v4("192.0.2.5", psid(1)), "2001:db8:1::", "2001:db8:1::10");
    old.chaddr = vec![2, 0, 0, 0, 0, 1];
    old.client_id = Some(b"\x01old".to_vec());
    old.remote_id = Some(b"remote-old".to_vec());
    old.relay_id = Some(b"relay-old".to_vec());
    t.upsert_v4(old.clone()).unwrap();

    let mut new = o6(v4("192.0.2.5", psid(1)), "2001:db8:2::", "2001:db8:2::10");
    new.chaddr = vec![2, 0, 0, 0, 0, 2];
    new.client_id = Some(b"\x01new".to_vec());
    new.remote_id = Some(b"remote-new".to_vec());
    new.relay_id = Some(b"relay-new".to_vec());
    new.cltt = 2000;
    t.upsert_v4(new).unwrap();
    assert_eq!(t.len_v4(), 1);

    let hit = keys(&[("192.0.2.5", Some(1))]);
    let none: Vec<Key4> = vec![];
    let cases = [
        (
            V4Select::Chaddr {
                htype: 1,
                chaddr: vec![2, 0, 0, 0, 0, 1],
            },
            &none,
        ),
        (
            V4Select::Chaddr {
                htype: 1,
                chaddr: vec![2, 0, 0, 0, 0, 2],
            },
            &hit,
        ),
        (V4Select::ClientId(b"\x01old".to_vec()), &none),
        (V4Select::ClientId(b"\x01new".to_vec()), &hit),
        (V4Select::RemoteId(b"remote-old".to_vec()), &none),
        (V4Select::RemoteId(b"remote-new".to_vec()), &hit),
        (V4Select::RelayId(b"relay-old".to_vec()), &none),
        (V4Select::RelayId(b"relay-new".to_vec()), &hit),
        (V4Select::SoftwireSrc(ip6("2001:db8:1::10")), &none),
        (V4Select::SoftwireSrc(ip6("2001:db8:2::10")), &hit),
        (V4Select::Link(ip6("2001:db8:1::")), &none),
        (V4Select::Link(ip6("2001:db8:2::")), &hit),
    ];
    for (sel, want) in cases {
        assert_eq!(&run4(&t, &q4(sel.clone())), want, "{sel:?}");
    }
    assert!(!t.knows_link(ip6("2001:db8:1::")));
    assert!(t.knows_link(ip6("2001:db8:2::1")));
    assert_eq!(t.get_v4(ip4("192.0.2.5"), psid(1)).unwrap().cltt, 2000);

    // Removing takes it out of every index.
    assert!(t.remove_v4(ip4("192.0.2.5"), psid(1)));
    assert!(!t.remove_v4(ip4("192.0.2.5"), psid(1)));
    assert_eq!(t.len_v4(), 0);
    assert_eq!(run4(&t, &q4(V4Select::All)), none);
    assert_eq!(
        run4(&t, &q4(V4Select::RelayId(b"relay-new".to_vec()))),
        none
    );
    assert_eq!(run4(&t, &q4(V4Select::ClientId(b"\x01new".to_vec()))), none);
    assert!(!t.knows_link(ip6("2001:db8:2::")));
    // The old binding can come back.
    t.upsert_v4(old).unwrap();
    assert_eq!(run4(&t, &q4(V4Select::RelayId(b"relay-old".to_vec()))), hit);
}

#[test]
fn invalid_bindings_are_refused() {
    let mut t = LeaseTable::new();
    let mut b = v4("192.0.2.1", None);
    b.chaddr = vec![0; 17];
    assert_eq!(t.upsert_v4(b), Err(LeaseError::ChaddrTooLong));
    let b = v4(
        "192.0.2.1",
        Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 16,
        }),
    );
    assert_eq!(t.upsert_v4(b), Err(LeaseError::BadPortParams));
    let b = v4(
        "192.0.2.1",
        Some(PortParams {
            offset: 14,
            psid_len: 4,
            psid: 1,
        }),
    );
    assert_eq!(t.upsert_v4(b), Err(LeaseError::BadPortParams));
    let mut b = v4("192.0.2.1", None);
    b.remote_id = Some(vec![0; 70_000]);
    assert_eq!(t.upsert_v4(b), Err(LeaseError::FieldTooLong));
    assert_eq!(t.len_v4(), 0);
    let mut b = v6b(b"\x00\x03x", "2001:db8:1::");
    b.iapd = vec![V6Prefix {
        prefix: ip6("2001:db8::"),
        prefix_len: 129,
        preferred_until: 1,
        valid_until: 2,
    }];
    assert_eq!(t.upsert_v6(b), Err(LeaseError::BadPrefixLen));
    assert_eq!(t.len_v6(), 0);
}

fn collect_budgeted(t: &LeaseTable, q: &V4Query, budget: usize) -> (Vec<Key4>, usize) {
    let mut cur = t.start_v4(q);
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        let step = t.scan_v4(q, &mut cur, budget, |r| {
            out.push((r.addr, r.port_params.map(|p| p.psid)));
            true
        });
        if step == ScanStep::Done {
            assert!(cur.is_done());
            return (out, calls);
        }
    }
}

#[test]
fn budget_splits_a_scan_into_calls() {
    let mut t = LeaseTable::new();
    for i in 0..10u8 {
        let mut b = v4(&format!("192.0.2.{i}"), None);
        b.relay_id = Some(if i % 2 == 0 {
            b"even".to_vec()
        } else {
            b"odd".to_vec()
        });
        t.upsert_v4(b).unwrap();
    }
    let (all, calls) = collect_budgeted(&t, &q4(V4Select::All), 3);
    assert_eq!(all.len(), 10);
    assert_eq!(calls, 4); // 3 + 3 + 3 + 1 candidates
    assert_eq!(all, run4(&t, &q4(V4Select::All)));
    let (even, calls) = collect_budgeted(&t, &q4(V4Select::RelayId(b"even".to_vec())), 2);
    assert_eq!(
        even.iter().map(|(a, _)| a.octets()[3]).collect::<Vec<_>>(),
        vec![0, 2, 4, 6, 8]
    );
    assert_eq!(calls, 3);
    // A budget of one candidate per call still finishes.
    assert_eq!(collect_budgeted(&t, &q4(V4Select::All), 1).0.len(), 10);
}

#[test]
fn refused_record_is_offered_again() {
    let mut t = LeaseTable::new();
    for i in 0..6u8 {
        t.upsert_v4(v4(&format!("192.0.2.{i}"), None)).unwrap();
    }
    let q = q4(V4Select::All);
    let mut cur = t.start_v4(&q);
    let mut offered = Vec::new();
    let mut taken = Vec::new();
    // A "buffer" of two records per call.
    loop {
        let mut room = 2;
        let step = t.scan_v4(&q, &mut cur, 100, |r| {
            offered.push(r.addr.octets()[3]);
            if room == 0 {
                return false;
            }
            room -= 1;
            taken.push(r.addr.octets()[3]);
            true
        });
        if step == ScanStep::Done {
            break;
        }
    }
    assert_eq!(taken, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(offered, vec![0, 1, 2, 2, 3, 4, 4, 5]);
    // A finished cursor stays finished.
    assert_eq!(
        t.scan_v4(&q, &mut cur, 100, |_| panic!("emitted after done")),
        ScanStep::Done
    );
}

fn v6b(duid: &[u8], link: &str) -> V6Binding {
    V6Binding {
        duid: duid.to_vec(),
        link: ip6(link),
        iana: vec![],
        iapd: vec![],
        cltt: 1000,
        relay_id: None,
        remote_id: None,
    }
}

fn run6(t: &LeaseTable, q: &V6Query) -> Vec<Vec<u8>> {
    let mut cur = t.start_v6(q);
    let mut out = Vec::new();
    assert_eq!(
        t.scan_v6(q, &mut cur, 1 << 20, |r| {
            let mut k = r.duid.to_vec();
            k.push(r.link.octets()[5]);
            out.push(k);
            true
        }),
        ScanStep::Done
    );
    let n = out.len();
    out.sort();
    out.dedup();
    assert_eq!(out.len(), n, "a binding was emitted twice");
    out
}

/// Keys as `run6` reports them: DUID then octet 5 of the link (the link number below).
fn k6(list: &[(&[u8], u8)]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = list
        .iter()
        .map(|(d, l)| {
            let mut k = d.to_vec();
            k.push(*l);
            k
        })
        .collect();
    v.sort();
    v
}

fn sample_v6() -> LeaseTable {
    let mut t = LeaseTable::new();
    let mut a = v6b(b"duid-a", "2001:db8:1::1");
    a.iana = vec![V6Addr {
        addr: ip6("2001:db8:1::5"),
        preferred_until: 1500,
        valid_until: 2000,
    }];
    a.relay_id = Some(b"relay-1".to_vec());
    a.remote_id = Some(b"\x00\x00\x0d\xe9line-a".to_vec());
    t.upsert_v6(a).unwrap();
    let mut b = v6b(b"duid-a", "2001:db8:2::1"); // same DUID on another link
    b.iapd = vec![V6Prefix {
        prefix: ip6("2001:db8:100::"),
        prefix_len: 56,
        preferred_until: 1500,
        valid_until: 2000,
    }];
    b.relay_id = Some(b"relay-1".to_vec());
    b.cltt = 3000;
    t.upsert_v6(b).unwrap();
    let mut c = v6b(b"duid-c", "2001:db8:1::2");
    c.iana = vec![
        V6Addr {
            addr: ip6("2001:db8:1::6"),
            preferred_until: 1500,
            valid_until: 2000,
        },
        V6Addr {
            addr: ip6("2001:db8:1::7"),
            preferred_until: 1500,
            valid_until: 2000,
        },
    ];
    c.iapd = vec![V6Prefix {
        prefix: ip6("2001:db8:200::"),
        prefix_len: 48,
        preferred_until: 1500,
        valid_until: 2000,
    }];
    c.relay_id = Some(b"relay-2".to_vec());
    c.remote_id = Some(b"\x00\x00\x0d\xe9line-a".to_vec());
    t.upsert_v6(c).unwrap();
    t
}

#[test]
fn every_v6_query_type_returns_exactly_its_bindings() {
    let t = sample_v6();
    assert_eq!(t.len_v6(), 3);
    let a1 = (&b"duid-a"[..], 1u8);
    let a2 = (&b"duid-a"[..], 2u8);
    let c1 = (&b"duid-c"[..], 1u8);
    assert_eq!(run6(&t, &q6(V6Select::All)), k6(&[a1, a2, c1]));
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:1::5")))),
        k6(&[a1])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:1::7")))),
        k6(&[c1])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:1::8")))),
        k6(&[])
    );
    // An address inside a delegated prefix finds the prefix's binding.
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:100:ff::1")))),
        k6(&[a2])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:100:100::1")))),
        k6(&[])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:200:ffff::1")))),
        k6(&[c1])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::ClientId(b"duid-a".to_vec()))),
        k6(&[a1, a2])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::ClientId(b"duid-b".to_vec()))),
        k6(&[])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::RelayId(b"relay-1".to_vec()))),
        k6(&[a1, a2])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::RelayId(b"relay-2".to_vec()))),
        k6(&[c1])
    );
    assert_eq!(
        run6(
            &t,
            &q6(V6Select::RemoteId(b"\x00\x00\x0d\xe9line-a".to_vec()))
        ),
        k6(&[a1, c1])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Link(ip6("2001:db8:1::")))),
        k6(&[a1, c1])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Link(ip6("2001:db8:2::abcd")))),
        k6(&[a2])
    );
    assert_eq!(run6(&t, &q6(V6Select::Link(ip6("2001:db8:3::")))), k6(&[]));
    assert!(t.knows_link(ip6("2001:db8:1::99")));
    assert!(!t.knows_link(ip6("2001:db8:3::")));
}

#[test]
fn v6_link_filter_and_time_window() {
    let t = sample_v6();
    let mut q = q6(V6Select::RelayId(b"relay-1".to_vec()));
    q.link_filter = Some(ip6("2001:db8:2::99"));
    assert_eq!(run6(&t, &q), k6(&[(b"duid-a", 2)]));
    q.link_filter = Some(ip6("2001:db8:1::"));
    assert_eq!(run6(&t, &q), k6(&[(b"duid-a", 1)]));
    q.link_filter = Some(ip6("2001:db8:9::"));
    assert_eq!(run6(&t, &q), k6(&[]));
    let mut q = q6(V6Select::ClientId(b"duid-a".to_vec()));
    q.changed_since = Some(2000);
    assert_eq!(run6(&t, &q), k6(&[(b"duid-a", 2)]));
    q.changed_since = None;
    q.changed_until = Some(2000);
    assert_eq!(run6(&t, &q), k6(&[(b"duid-a", 1)]));
}

#[test]
fn v6_replace_and_remove_update_indexes() {
    let mut t = sample_v6();
    let mut a = v6b(b"duid-a", "2001:db8:1::1");
    a.iana = vec![V6Addr {
        addr: ip6("2001:db8:1::99"),
        preferred_until: 1,
        valid_until: 2,
    }];
    a.relay_id = Some(b"relay-3".to_vec());
    t.upsert_v6(a).unwrap();
    assert_eq!(t.len_v6(), 3);
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:1::5")))),
        k6(&[])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:1::99")))),
        k6(&[(b"duid-a", 1)])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::RelayId(b"relay-1".to_vec()))),
        k6(&[(b"duid-a", 2)])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::RelayId(b"relay-3".to_vec()))),
        k6(&[(b"duid-a", 1)])
    );
    assert_eq!(
        run6(
            &t,
            &q6(V6Select::RemoteId(b"\x00\x00\x0d\xe9line-a".to_vec()))
        ),
        k6(&[(b"duid-c", 1)])
    );
    let got = t.get_v6(b"duid-a", ip6("2001:db8:1::1")).unwrap();
    assert_eq!((got.relay_id, got.remote_id), (Some(&b"relay-3"[..]), None));
    assert!(t.remove_v6(b"duid-a", ip6("2001:db8:2::1")));
    assert!(!t.remove_v6(b"duid-a", ip6("2001:db8:2::1")));
    assert_eq!(
        run6(&t, &q6(V6Select::Address(ip6("2001:db8:100::1")))),
        k6(&[])
    );
    assert_eq!(
        run6(&t, &q6(V6Select::ClientId(b"duid-a".to_vec()))),
        k6(&[(b"duid-a", 1)])
    );
    assert!(!t.knows_link(ip6("2001:db8:2::")));
    assert!(t.get_v6(b"duid-a", ip6("2001:db8:2::1")).is_none());
}

#[test]
fn routing_is_stable_and_keeps_psids_together() {
    // Pinned: the journal and other processes rely on these never changing.
    let pinned: Vec<usize> = (0..8u8)
        .map(|i| shard_of_addr(Ipv4Addr::new(192, 0, 2, i), 4))
        .collect();
    assert_eq!(pinned, PINNED_ADDR_SHARDS);
    assert_eq!(
        shard_of_client(b"\x01\x02\x00\x00\x00\x00\x01", 7),
        PINNED_CLIENT_SHARD
    );
    assert_eq!(
        shard_of_duid(b"\x00\x03\x00\x01\x02\x00\x00\x00\x00\x01", 7),
        PINNED_DUID_SHARD
    );
    assert_eq!(shard_of_addr(ip4("192.0.2.1"), 0), 0);
    assert_eq!(shard_of_addr(ip4("192.0.2.1"), 1), 0);
    // Spread: 4096 addresses over 4 shards, each gets a fair part.
    let mut counts = [0usize; 4];
    for i in 0..4096u32 {
        counts[shard_of_addr(Ipv4Addr::from(0xC000_0200 + i), 4)] += 1;
    }
    assert!(
        counts.iter().all(|&c| (900..1150).contains(&c)),
        "{counts:?}"
    );
}

// From an independent implementation of the hash documented in `leasequery::lease`.
const PINNED_ADDR_SHARDS: [usize; 8] = [3, 0, 3, 0, 3, 0, 0, 0];
const PINNED_CLIENT_SHARD: usize = 6;
const PINNED_DUID_SHARD: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Scan { budget: usize, room: usize },
    Upsert { key: u8, relay: u8 },
    Remove { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..5, 0usize..4).prop_map(|(budget, room)| Op::Scan { budget, room }),
        (0u8..24, 0u8..3).prop_map(|(key, relay)| Op::Upsert { key, relay }),
        (0u8..24).prop_map(|key| Op::Remove { key }),
    ]
}

/// Key `k`: 8 addresses with 3 PSIDs each (addresses share slots' neighbourhoods).
fn key_of(k: u8) -> (Ipv4Addr, Option<PortParams>) {
    (Ipv4Addr::new(192, 0, 2, k / 3), psid(u16::from(k % 3)))
}

fn bound(k: u8, relay: u8) -> V4Binding {
    let (a, p) = key_of(k);
    let mut b = o6(
        v4(&a.to_string(), p),
        "2001:db8:1::",
        &format!("2001:db8:1::{k}"),
    );
    b.relay_id = Some(vec![b'r', relay]);
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Interleaving scans with upserts and removes: every binding present (and matching) during
    /// the whole query is emitted exactly once; no binding is emitted twice; everything emitted
    /// matched when it was emitted.
    #[test]
    fn scans_survive_concurrent_changes(
        initial in proptest::collection::btree_map(0u8..24, 0u8..3, 0..24),
        ops in proptest::collection::vec(op(), 0..60),
        by_relay in any::<bool>(),
    ) {
        let mut t = LeaseTable::new();
        // Model: key -> relay.
        let mut model: BTreeMap<u8, u8> = BTreeMap::new();
        for (&k, &r) in &initial {
            t.upsert_v4(bound(k, r)).unwrap();
            model.insert(k, r);
        }
        let want_relay = 0u8;
        let select = if by_relay { V4Select::RelayId(vec![b'r', want_relay]) } else { V4Select::All };
        let matches = |r: u8| !by_relay || r == want_relay;
        let q = q4(select);
        let mut cur = t.start_v4(&q);
        // Keys that matched at start and have matched without interruption since.
        let mut steady: BTreeSet<u8> =
            model.iter().filter(|(_, &r)| matches(r)).map(|(&k, _)| k).collect();
        let mut emitted: BTreeSet<u8> = BTreeSet::new();
        let scan = |t: &LeaseTable, cur: &mut _, budget: usize, room: usize,
                        emitted: &mut BTreeSet<u8>| {
            let mut room = room;
            t.scan_v4(&q, cur, budget, |r| {
                if room == 0 {
                    return false;
                }
                room -= 1;
                let k = r.addr.octets()[3] * 3 + r.port_params.unwrap().psid as u8;
                assert!(emitted.insert(k), "key {k} emitted twice");
                assert!(matches(r.relay_id.unwrap()[1]), "emitted a non-matching binding");
                true
            })
        };
        for op in ops {
            match op {
                Op::Scan { budget, room } => {
                    scan(&t, &mut cur, budget, room, &mut emitted);
                }
                Op::Upsert { key, relay } => {
                    t.upsert_v4(bound(key, relay)).unwrap();
                    model.insert(key, relay);
                    if !matches(relay) {
                        steady.remove(&key);
                    }
                }
                Op::Remove { key } => {
                    prop_assert_eq!(t.remove_v4(key_of(key).0, key_of(key).1), model.remove(&key).is_some());
                    steady.remove(&key);
                }
            }
            prop_assert_eq!(t.len_v4(), model.len());
        }
        let mut guard = 0;
        while scan(&t, &mut cur, 3, 2, &mut emitted) == ScanStep::More {
            guard += 1;
            prop_assert!(guard < 1000, "scan does not finish");
        }
        prop_assert!(steady.is_subset(&emitted), "missed {:?}", steady.difference(&emitted).collect::<Vec<_>>());
        // A fresh query now sees exactly the model.
        let now: Vec<u8> = run4(&t, &q).iter().map(|(a, p)| a.octets()[3] * 3 + p.unwrap() as u8).collect();
        let mut want: Vec<u8> = model.iter().filter(|(_, &r)| matches(r)).map(|(&k, _)| k).collect();
        want.sort();
        let mut now = now;
        now.sort();
        prop_assert_eq!(now, want);
    }
}
