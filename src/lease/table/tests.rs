use super::*;

#[test]
fn slot_is_compact() {
    assert_eq!(std::mem::size_of::<V4Slot>(), 80);
}

#[test]
fn arena_round_trips_fields() {
    let mut a = Arena::default();
    let off = a
        .push(&[Some(&[1, 2]), None, Some(&[]), Some(&[9])])
        .unwrap();
    assert_eq!(a.field(off, F_CHADDR), Some(&[1u8, 2][..]));
    assert_eq!(a.field(off, F_CLIENT_ID), None);
    assert_eq!(a.field(off, F_REMOTE_ID), Some(&[][..]));
    assert_eq!(a.field(off, F_CIRCUIT_ID), Some(&[9u8][..]));
    assert_eq!(a.fields(off), [0, 1, 2, 3].map(|i| a.field(off, i)));
    a.free(off);
    assert_eq!(a.garbage, 2 + 2 + 2 + 2 + 2 + 1);
}

fn plain_v4(i: u32, remote: bool) -> V4Binding {
    V4Binding {
        addr: Ipv4Addr::from(0x0a00_0000 + i),
        port_params: None,
        htype: 1,
        chaddr: vec![2, 0, 0, 0, (i >> 8) as u8, i as u8],
        client_id: None,
        state: 2,
        cltt: 1,
        state_start: 1,
        expires: 2,
        circuit_id: None,
        remote_id: remote.then(|| i.to_be_bytes().to_vec()),
        relay_id: None,
        softwire_src: None,
        v6: None,
        data_source: 0,
    }
}

#[test]
fn reserve_for_sizes_each_index_once_and_only_the_used_ones() {
    // 3000 bindings, a third with a remote-id; none with a client-id or softwire source.
    let v4: Vec<V4Binding> = (0..3000).map(|i| plain_v4(i, i % 3 == 0)).collect();
    let mut t = LeaseTable::new();
    t.reserve_for(&v4, &[]);
    let cap = |t: &LeaseTable, ix: usize| t.v4_ix[ix].capacity();
    let before = [IX_KEY, IX_CHADDR, IX_REMOTE_ID].map(|ix| cap(&t, ix));
    assert!(
        before[0] >= 3000 && before[1] >= 3000 && before[2] >= 1000,
        "{before:?}"
    );
    // The remote-id index is sized by the bindings that have one, not by all.
    assert!(before[2] < before[0], "{before:?}");
    assert_eq!(cap(&t, IX_CLIENT_ID), 0);
    assert_eq!(cap(&t, IX_SOFTWIRE), 0);
    assert!(t.v4.capacity() >= 3000);
    for b in v4 {
        t.upsert_v4(b).unwrap();
    }
    // Nothing grew (no rehash on the way), and every binding is found.
    assert_eq!(
        [IX_KEY, IX_CHADDR, IX_REMOTE_ID].map(|ix| cap(&t, ix)),
        before
    );
    assert_eq!(t.len_v4(), 3000);
    for i in [0u32, 1, 2999] {
        let rec = t.v4_record(t.v4_find(Ipv4Addr::from(0x0a00_0000 + i), None).unwrap());
        assert_eq!(rec.unwrap().remote_id.is_some(), i % 3 == 0);
    }
}

#[test]
fn masks_prefixes() {
    let a: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    assert_eq!(mask(a, 0), Ipv6Addr::UNSPECIFIED);
    assert_eq!(mask(a, 48), "2001:db8:1::".parse::<Ipv6Addr>().unwrap());
    assert_eq!(mask(a, 128), a);
    assert_eq!(mask(a, 200), a);
}
