//! RFC 6926 (DHCPv4 bulk leasequery over TCP 67): query validation (§8.2), what each query returns
//! (§8.3, §6.2), time qualifiers (§6.2.5).

use super::fixtures::*;
use leasequery::proto::codes::dhcp_state;
use leasequery::proto::codes::query_type;
use leasequery::proto::codes::v4msg;
use leasequery::proto::codes::v4opt;
use leasequery::proto::codes::v4relay;
use leasequery::proto::codes::v4status;
use leasequery::proto::codes::v6opt;
use leasequery::proto::v4;
use leasequery::proto::v4::ClientId;
use leasequery::proto::v4::V4Option;
use leasequery::proto::v6::V6Option;
use std::net::Ipv4Addr;

// ---------------------------------------------------------------------------------------------
// Plain v4 bulk over TCP 67 (scenarios 29-38)
// ---------------------------------------------------------------------------------------------

#[test]
fn s29_rfc6926_8_3_client_id_two_active_leases() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x2900_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        m.options.push(V4Option::ParameterRequestList(vec![
            v4opt::BASE_TIME,
            v4opt::LEASE_TIME,
        ]));
    });
    let (msgs, t0, t1) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 3, "2 x DHCPLEASEACTIVE then DONE: {msgs:?}");
    let mut seen = Vec::new();
    for (i, m) in msgs[..2].iter().enumerate() {
        assert_eq!(m.op, BOOTREPLY);
        assert_eq!(m.message_type(), Some(v4msg::LEASEACTIVE));
        assert_eq!(m.xid, xid);
        // RFC 6926 §7.3: 54 in the first message only.
        let sid = server_id_of(m);
        assert_eq!(
            sid,
            (i == 0).then_some(SERVER_ID),
            "option 54 in message {i}"
        );
        assert_eq!(
            m.option(v4opt::CLIENT_ID),
            Some(&V4Option::ClientId(ClientId::decode(&hex(CID_A)).unwrap()))
        );
        let bt = u32_opt(m, v4opt::BASE_TIME).expect("base-time 152");
        assert!(
            (t0..=t1).contains(&bt),
            "base-time {bt} not in [{t0}, {t1}]"
        );
        let lt = u32_opt(m, v4opt::LEASE_TIME).expect("lease time 51");
        assert!(
            (EXPIRES - t1..=EXPIRES - t0).contains(&lt),
            "lease time {lt}"
        );
        assert!(
            m.option(v4opt::ASSOCIATED_IP).is_none(),
            "92 MUST NOT appear"
        );
        assert!(status_v4(m).is_none());
        let Some(V4Option::RelayAgentInfo(r)) = m.option(v4opt::RELAY_AGENT_INFO) else {
            panic!("no option 82 in {m:?}");
        };
        assert_eq!(r.get(v4relay::RELAY_ID), Some(&hex(RELAY_A)[..]));
        seen.push((
            m.ciaddr,
            m.htype,
            m.hw_addr().to_vec(),
            r.get(v4relay::REMOTE_ID).map(<[u8]>::to_vec),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                Ipv4Addr::new(192, 0, 2, 10),
                1,
                hex("020000000200"),
                Some(hex("52530000"))
            ),
            (
                Ipv4Addr::new(192, 0, 2, 11),
                1,
                hex("020000000201"),
                Some(hex("52530001"))
            ),
        ]
    );
    let done = &msgs[2];
    assert_eq!(done.message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(done.xid, xid);
    assert_eq!(server_id_of(done), None, "54 only in the first message");
    assert_eq!(status_v4(done), None, "a successful DONE carries no status");
}

#[test]
fn s30_rfc6926_8_2_nonzero_ciaddr_yiaddr_siaddr_malformed() {
    let srv = started(v4_import(), 1);
    let mut c = srv.connect4();
    let a = Ipv4Addr::new(192, 0, 2, 10);
    let queries: [(u32, SetAddr); 3] = [
        (0x3000_0001, |m, a| m.ciaddr = a),
        (0x3000_0002, |m, a| m.yiaddr = a),
        (0x3000_0003, |m, a| m.siaddr = a),
    ];
    for (xid, set) in queries {
        let q = bulk_v4(xid, |m| {
            set(m, a);
            m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        });
        let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
        assert_eq!(msgs.len(), 1, "a lone DONE");
        assert_lone_done(&msgs[0], xid, Some(v4status::MALFORMED_QUERY));
    }
    // The connection stays usable: a valid query is answered afterwards.
    let q = bulk_v4(0x3000_0004, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, 0x3000_0004);
    assert_eq!(msgs.len(), 3);
}

#[test]
fn s31_rfc6926_8_2_client_id_and_relay_id_not_allowed() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3100_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_A))]));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_lone_done(&msgs[0], xid, Some(v4status::NOT_ALLOWED));
}

#[test]
fn s32_rfc6926_8_2_remote_id_and_relay_id_not_allowed() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3200_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(rai(&[
            (v4relay::REMOTE_ID, &hex("52530000")),
            (v4relay::RELAY_ID, &hex(RELAY_A)),
        ]));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_lone_done(&msgs[0], xid, Some(v4status::NOT_ALLOWED));
    // Also a MAC address together with a client-id: two primary queries.
    let xid = 0x3200_0002;
    let q = bulk_v4(xid, |m| {
        m.set_hw_addr(1, &hex("020000000200")).unwrap();
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_lone_done(&msgs[0], xid, Some(v4status::NOT_ALLOWED));
}

#[test]
fn s33_rfc6926_8_3_all_addresses_active_and_unassigned() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3300_0001;
    let q = bulk_v4(xid, |m| {
        m.options
            .push(V4Option::ParameterRequestList(vec![v4opt::DHCP_STATE]));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 5, "4 bindings then DONE: {msgs:?}");
    let mut got: Vec<(Ipv4Addr, u8, Option<V4Option>)> = msgs[..4]
        .iter()
        .map(|m| {
            assert_eq!(m.xid, xid);
            assert_eq!(m.op, BOOTREPLY);
            (
                m.ciaddr,
                m.message_type().unwrap(),
                m.option(v4opt::DHCP_STATE).cloned(),
            )
        })
        .collect();
    assert_eq!(server_id_of(&msgs[0]), Some(SERVER_ID));
    assert!(msgs[1..].iter().all(|m| server_id_of(m).is_none()));
    got.sort_by_key(|g| g.0);
    let active = Some(V4Option::DhcpState(dhcp_state::ACTIVE));
    assert_eq!(
        got,
        vec![
            (
                Ipv4Addr::new(192, 0, 2, 10),
                v4msg::LEASEACTIVE,
                active.clone()
            ),
            (
                Ipv4Addr::new(192, 0, 2, 11),
                v4msg::LEASEACTIVE,
                active.clone()
            ),
            (
                Ipv4Addr::new(192, 0, 2, 12),
                v4msg::LEASEUNASSIGNED,
                Some(V4Option::DhcpState(dhcp_state::RELEASED))
            ),
            (Ipv4Addr::new(192, 0, 2, 13), v4msg::LEASEACTIVE, active),
        ]
    );
    assert_eq!(msgs[4].message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(status_v4(&msgs[4]), None);
}

#[test]
fn s34_rfc6926_8_2_start_after_end_malformed() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3400_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(V4Option::QueryStartTime(1_764_000_200));
        m.options.push(V4Option::QueryEndTime(1_764_000_100));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_lone_done(&msgs[0], xid, Some(v4status::MALFORMED_QUERY));
}

#[test]
fn s35_rfc6926_6_2_5_query_start_time_filters() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    // All addresses changed at or after 1764000100: L2, L3, L4.
    let xid = 0x3500_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(V4Option::QueryStartTime(1_764_000_100))
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    let mut addrs: Vec<Ipv4Addr> = msgs[..msgs.len() - 1].iter().map(|m| m.ciaddr).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        [11, 12, 13].map(|d| Ipv4Addr::new(192, 0, 2, d)).to_vec()
    );
    // Start and end window [1764000050, 1764000250] with the relay-id primary: L2 only. The
    // window narrows the current bindings a primary query returns; released L3 is not one
    // (RFC 6926 §8.2; issue 13 item 2).
    let xid = 0x3500_0002;
    let q = bulk_v4(xid, |m| {
        m.options.push(V4Option::QueryStartTime(1_764_000_050));
        m.options.push(V4Option::QueryEndTime(1_764_000_250));
        m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_A))]));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    let mut addrs: Vec<(Ipv4Addr, u8)> = msgs[..msgs.len() - 1]
        .iter()
        .map(|m| (m.ciaddr, m.message_type().unwrap()))
        .collect();
    addrs.sort();
    assert_eq!(
        addrs,
        vec![(Ipv4Addr::new(192, 0, 2, 11), v4msg::LEASEACTIVE)]
    );
    assert_eq!(status_v4(msgs.last().unwrap()), None);
}

#[test]
fn s36_rfc6926_8_2_vpn_id_not_allowed() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3600_0001;
    let q = bulk_v4(xid, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        m.options.push(V4Option::Vss {
            kind: 0,
            id: b"vpn1".to_vec(),
        });
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_lone_done(&msgs[0], xid, Some(v4status::NOT_ALLOWED));
}

#[test]
fn s38_rfc6926_8_2_relay_id_no_match_lone_done() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    let xid = 0x3800_0001;
    let q = bulk_v4(xid, |m| {
        m.options
            .push(rai(&[(v4relay::RELAY_ID, &hex("0003000102000000ff99"))]));
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    // Success: a successful DONE SHOULD NOT carry a status (RFC 6926 §7.3); 54 as first message.
    assert_lone_done(&msgs[0], xid, None);
}

/// Issue 13 item 2, RFC 6926 §8.2: a query by hardware address, client-id, remote-id or
/// relay-id returns the addresses with a *current* binding to the client it names, each as
/// DHCPLEASEACTIVE; a released or expired binding is not listed (only the query for all
/// configured addresses adds DHCPLEASEUNASSIGNED). L3 is released: queries naming it get a lone
/// DONE; relay-id RELAY_A (L1, L2, L3) gets L1 and L2. Before the fix L3 came back as
/// DHCPLEASEUNASSIGNED to all of these.
#[test]
fn s39_rfc6926_8_2_primary_queries_return_current_bindings_only() {
    let srv = started(v4_import(), 2);
    let mut c = srv.connect4();
    type Shape = Box<dyn Fn(&mut v4::Message)>;
    let l3_queries: Vec<(&str, Shape)> = vec![
        (
            "chaddr",
            Box::new(|m: &mut v4::Message| {
                m.set_hw_addr(1, &hex("020000000202")).unwrap();
            }),
        ),
        (
            "client-id",
            Box::new(|m: &mut v4::Message| {
                m.options
                    .push(raw_opt(v4opt::CLIENT_ID, &hex("01aabbccddee03")))
            }),
        ),
        (
            "remote-id",
            Box::new(|m: &mut v4::Message| {
                m.options
                    .push(rai(&[(v4relay::REMOTE_ID, &hex("52530002"))]))
            }),
        ),
    ];
    for (i, (what, f)) in l3_queries.into_iter().enumerate() {
        let xid = 0x3900_0001 + i as u32;
        let (msgs, _, _) = exchange_v4(&mut c, &bulk_v4(xid, f), xid);
        assert_eq!(msgs.len(), 1, "by {what}: only DONE, got {msgs:?}");
        assert_lone_done(&msgs[0], xid, None);
    }
    // The same queries for an active lease still find it.
    let xid = 0x3900_0010;
    let q = bulk_v4(xid, |m| {
        m.options
            .push(rai(&[(v4relay::REMOTE_ID, &hex("52530001"))]))
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].message_type(), Some(v4msg::LEASEACTIVE));
    assert_eq!(msgs[0].ciaddr, Ipv4Addr::new(192, 0, 2, 11));
    let xid = 0x3900_0011;
    let q = bulk_v4(xid, |m| {
        m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_A))]))
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, xid);
    let mut got: Vec<(Ipv4Addr, Option<u8>)> = msgs[..msgs.len() - 1]
        .iter()
        .map(|m| (m.ciaddr, m.message_type()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [10, 11]
            .map(|d| (Ipv4Addr::new(192, 0, 2, d), Some(v4msg::LEASEACTIVE)))
            .to_vec()
    );
    // The query for all configured addresses still lists L3, as DHCPLEASEUNASSIGNED.
    let xid = 0x3900_0012;
    let (msgs, _, _) = exchange_v4(&mut c, &bulk_v4(xid, |_| {}), xid);
    assert!(msgs.iter().any(|m| m.ciaddr == Ipv4Addr::new(192, 0, 2, 12)
        && m.message_type() == Some(v4msg::LEASEUNASSIGNED)));
}

/// Issue 13 item 6: an imported lease with `expires` 4294967295 is infinite: the v4 bulk reply
/// and the DHCP4o6 one carry option 51 = 0xffffffff (RFC 2132 §9.2, RFC 4388 §6.4.2), not
/// the seconds left to 2106; a finite lease keeps its remaining time.
#[test]
fn infinite_imported_leases_are_reported_with_lease_time_all_ones() {
    let import = [
        r#"{"ipv4":"192.0.2.20","chaddr":"02:00:00:00:03:01","state":"active","cltt":1764000000,"expires":4294967295}"#.to_string(),
        format!(r#"{{"ipv4":"198.51.100.20","chaddr":"02:00:00:00:03:02","state":"active","cltt":1764000000,"expires":4294967295,"link":"{LINK1}","softwire_src":"2001:db8:1::20"}}"#),
        format!(r#"{{"ipv4":"192.0.2.21","chaddr":"02:00:00:00:03:03","state":"active","cltt":1764000000,"expires":{EXPIRES}}}"#),
    ]
    .join("\n");
    let srv = started(import, 2);
    let mut c = srv.connect4();
    let xid = 0x6e00_0001;
    let (msgs, t0, t1) = exchange_v4(&mut c, &bulk_v4(xid, |_| {}), xid);
    let mut got: Vec<(Ipv4Addr, Option<u32>)> = msgs[..msgs.len() - 1]
        .iter()
        .map(|m| (m.ciaddr, u32_opt(m, v4opt::LEASE_TIME)))
        .collect();
    got.sort();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], (Ipv4Addr::new(192, 0, 2, 20), Some(u32::MAX)));
    assert_eq!(got[2], (Ipv4Addr::new(198, 51, 100, 20), Some(u32::MAX)));
    let finite = got[1].1.expect("51");
    assert!((EXPIRES - t1..=EXPIRES - t0).contains(&finite), "{finite}");
    // The DHCP4o6 form (by link) too.
    let mut c6 = srv.connect6();
    let (xid, v4xid) = (0x6e_0002, 0x6e00_0002);
    let q = lq6(
        xid,
        query_type::BY_LINK_ADDRESS,
        LINK1.parse().unwrap(),
        vec![V6Option::Oro(vec![v6opt::S46_V4V6BIND])],
        Some(bulk_v4(v4xid, |_| {})),
    );
    let msgs = exchange_v6(&mut c6, &q, xid);
    assert_eq!(msgs.len(), 2, "REPLY, DONE: {msgs:?}");
    let a = inner_v4(&msgs[0]);
    assert_eq!(a.ciaddr, Ipv4Addr::new(198, 51, 100, 20));
    assert_eq!(u32_opt(&a, v4opt::LEASE_TIME), Some(u32::MAX));
}
