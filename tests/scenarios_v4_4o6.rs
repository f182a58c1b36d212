//! Loopback scenarios for plain DHCPv4 bulk leasequery over TCP 67 (scenarios 29-38 of
//! codepoints-and-scenarios.md section 6; RFC 6926) and DHCP4o6 bulk leasequery over TCP 547
//! (scenarios 47-54; DESIGN.md section 4), plus a concurrency test: 8 requestors with 4 parallel
//! queries each on 2 shards.
//!
//! Every test starts its own `leasequeryd` with a small inline import file and checks the exact
//! message sequence of each answer, decoded with the crate's own codecs.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Conn, Server, ServerBuilder};
use leasequery::proto::codes::{
    dhcp_state, query_type, v4msg, v4opt, v4relay, v4status, v6msg, v6opt, v6status,
};
use leasequery::proto::record::PortParams;
use leasequery::proto::v4::{self, ClientId, V4Option};
use leasequery::proto::v6::{self, V6Option};

// ---------------------------------------------------------------------------------------------
// Shared data and helpers
// ---------------------------------------------------------------------------------------------

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// The default DHCPv4 server identifier (option 54) of the server.
const SERVER_ID: Ipv4Addr = Ipv4Addr::LOCALHOST;
const EXPIRES: u32 = 1_864_000_000;

/// Relay-id (82/12) shared by L1, L2 and L3; client-id (61) shared by L1 and L2.
const RELAY_A: &str = "0003000102000000aa02";
const CID_A: &str = "01aabbccddee01";

/// Plain v4 bindings: L1, L2 active with the same client-id; L3 released; L4 active without
/// client-id or relay information.
fn v4_import() -> String {
    [
        format!(r#"{{"ipv4":"192.0.2.10","chaddr":"02:00:00:00:02:00","client_id":"{CID_A}","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_A}","remote_id":"52530000"}}"#),
        format!(r#"{{"ipv4":"192.0.2.11","chaddr":"02:00:00:00:02:01","client_id":"{CID_A}","state":"active","cltt":1764000100,"expires":{EXPIRES},"relay_id":"{RELAY_A}","remote_id":"52530001"}}"#),
        format!(r#"{{"ipv4":"192.0.2.12","chaddr":"02:00:00:00:02:02","client_id":"01aabbccddee03","state":"released","cltt":1764000200,"expires":1764000200,"relay_id":"{RELAY_A}","remote_id":"52530002"}}"#),
        format!(r#"{{"ipv4":"192.0.2.13","chaddr":"02:00:00:00:02:03","state":"active","cltt":1764000300,"expires":{EXPIRES}}}"#),
    ]
    .join("\n")
}

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as u32
}

/// A DHCPBULKLEASEQUERY (BOOTREQUEST, option 53 = 14) with `xid`, shaped by `f`.
fn bulk_v4(xid: u32, f: impl FnOnce(&mut v4::Message)) -> Vec<u8> {
    let mut m = v4::Message::new(BOOTREQUEST, v4msg::BULKLEASEQUERY, xid);
    f(&mut m);
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode v4 query");
    out
}

/// Option 82 with the given sub-options, raw.
fn rai(subs: &[(u8, &[u8])]) -> V4Option {
    let mut data = Vec::new();
    for (code, v) in subs {
        data.push(*code);
        data.push(v.len() as u8);
        data.extend_from_slice(v);
    }
    V4Option::Unknown {
        code: v4opt::RELAY_AGENT_INFO,
        data,
    }
}

fn raw_opt(code: u8, data: &[u8]) -> V4Option {
    V4Option::Unknown {
        code,
        data: data.to_vec(),
    }
}

fn recv_v4(c: &mut Conn) -> v4::Message {
    let b = c.recv().expect("server closed the connection");
    v4::Message::decode(&b).expect("reply decodes as DHCPv4")
}

fn status_v4(m: &v4::Message) -> Option<(u8, String)> {
    match m.option(v4opt::STATUS_CODE) {
        Some(V4Option::StatusCode { code, message }) => Some((*code, message.clone())),
        None => None,
        Some(o) => panic!("option 151 decoded as {o:?}"),
    }
}

fn server_id_of(m: &v4::Message) -> Option<Ipv4Addr> {
    match m.option(v4opt::SERVER_ID) {
        Some(V4Option::ServerId(a)) => Some(*a),
        None => None,
        Some(o) => panic!("option 54 decoded as {o:?}"),
    }
}

fn u32_opt(m: &v4::Message, code: u8) -> Option<u32> {
    m.option(code).map(|o| match o {
        V4Option::BaseTime(v) | V4Option::LeaseTime(v) => *v,
        o => panic!("option {code} decoded as {o:?}"),
    })
}

/// Asserts a lone DHCPLEASEQUERYDONE for `xid`: BOOTREPLY, zero ciaddr and chaddr, option 54
/// (it is the first message of the stream), `status` in option 151 (None = no 151).
fn assert_lone_done(m: &v4::Message, xid: u32, status: Option<u8>) {
    assert_eq!(m.op, BOOTREPLY);
    assert_eq!(m.message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(m.xid, xid);
    assert_eq!(m.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!((m.htype, m.hlen), (0, 0));
    assert_eq!(server_id_of(m), Some(SERVER_ID));
    assert_eq!(status_v4(m).map(|s| s.0), status);
    assert!(m.option(v4opt::BASE_TIME).is_some());
}

/// Sends `query` and returns every message up to and including the DONE of `xid`, plus the
/// time window `[t0, t1]` (Unix seconds) around the exchange.
fn exchange_v4(c: &mut Conn, query: &[u8], xid: u32) -> (Vec<v4::Message>, u32, u32) {
    let t0 = unix_now();
    c.send(query);
    let mut out = Vec::new();
    loop {
        let m = recv_v4(c);
        assert_eq!(m.xid, xid, "message for another query");
        let done = m.message_type() == Some(v4msg::LEASEQUERYDONE);
        out.push(m);
        if done {
            return (out, t0, unix_now());
        }
    }
}

/// A server with `import` and no lease authority: these scenarios are about the imported
/// bindings (with the authority's pools, "all configured addresses" also lists every pool
/// address without a binding: `tests/authority_udp.rs`).
fn started(import: String, shards: usize) -> Server {
    ServerBuilder::new()
        .shards(shards)
        .import(import)
        .arg("--no-authority")
        .start()
}

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

/// Sets one of the address fields of a query.
type SetAddr = fn(&mut v4::Message, Ipv4Addr);

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
                m.options.push(raw_opt(v4opt::CLIENT_ID, &hex("01aabbccddee03")))
            }),
        ),
        (
            "remote-id",
            Box::new(|m: &mut v4::Message| {
                m.options.push(rai(&[(v4relay::REMOTE_ID, &hex("52530002"))]))
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
        m.options.push(rai(&[(v4relay::REMOTE_ID, &hex("52530001"))]))
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
        [10, 11].map(|d| (Ipv4Addr::new(192, 0, 2, d), Some(v4msg::LEASEACTIVE))).to_vec()
    );
    // The query for all configured addresses still lists L3, as DHCPLEASEUNASSIGNED.
    let xid = 0x3900_0012;
    let (msgs, _, _) = exchange_v4(&mut c, &bulk_v4(xid, |_| {}), xid);
    assert!(msgs.iter().any(|m| m.ciaddr == Ipv4Addr::new(192, 0, 2, 12)
        && m.message_type() == Some(v4msg::LEASEUNASSIGNED)));
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
fn s37_rfc7724_8_1_1_other_message_types_close() {
    let srv = started(v4_import(), 2);
    // DHCPDISCOVER, DHCPLEASEQUERY (UDP only) and DHCPACTIVELEASEQUERY (active not served).
    for t in [v4msg::DISCOVER, v4msg::LEASEQUERY, v4msg::ACTIVELEASEQUERY] {
        let mut c = srv.connect4();
        let mut m = v4::Message::new(BOOTREQUEST, t, 0x3700_0000 | u32::from(t));
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        let mut b = Vec::new();
        m.encode(&mut b).unwrap();
        c.send(&b);
        assert!(
            c.closed_silently(Duration::from_secs(10)),
            "type {t}: expected a close without reply"
        );
    }
    // The server still answers new connections.
    let mut c = srv.connect4();
    let q = bulk_v4(0x3700_00ff, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)))
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, 0x3700_00ff);
    assert_eq!(msgs.len(), 3);
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

// ---------------------------------------------------------------------------------------------
// DHCP4o6 bulk over TCP 547 (scenarios 47-54)
// ---------------------------------------------------------------------------------------------

const REQUESTOR_DUID: &str = "00030001aabbccddeeff";
const RELAY_4O6: &str = "0003000102000000aa01";
const LINK1: &str = "2001:db8:1::";

/// 4o6 bindings: B1, B2 on relay RELAY_4O6 with softwire sources and port sets; B3 on the same
/// relay, no softwire source; B4 on another link and relay. Plus one plain v6 binding on the
/// same relay (scenario 50).
fn o6_import() -> String {
    [
        format!(r#"{{"ipv4":"198.51.100.10","psid":{{"offset":0,"len":4,"id":1}},"chaddr":"02:00:00:00:01:01","client_id":"ff0000000100030001020000000101","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_4O6}","remote_id":"00000de900000001","link":"{LINK1}","softwire_src":"2001:db8:1:0:1::1"}}"#),
        format!(r#"{{"ipv4":"198.51.100.10","psid":{{"offset":0,"len":4,"id":2}},"chaddr":"02:00:00:00:01:02","client_id":"ff0000000200030001020000000102","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_4O6}","remote_id":"00000de900000002","link":"{LINK1}","softwire_src":"2001:db8:1:0:1::2"}}"#),
        format!(r#"{{"ipv4":"198.51.100.11","chaddr":"02:00:00:00:01:03","client_id":"ff0000000300030001020000000103","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"0003000102000000aa03","link":"2001:db8:3::"}}"#),
        format!(r#"{{"ipv4":"198.51.100.12","chaddr":"02:00:00:00:01:04","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"0003000102000000aa04","link":"2001:db8:4::","softwire_src":"2001:db8:4::4"}}"#),
        format!(r#"{{"duid":"000300010200000006aa","link":"{LINK1}","iana":[{{"addr":"2001:db8:1::100","preferred":3600,"valid":7200}}],"cltt":1764000000,"relay_id":"{RELAY_4O6}"}}"#),
    ]
    .join("\n")
}

/// A LEASEQUERY with the requestor's CLIENTID, OPTION_LQ_QUERY(`qt`, `link`, `qopts`) and, when
/// given, OPTION_DHCPV4_MSG holding `v4msg`.
fn lq6(xid: u32, qt: u8, link: Ipv6Addr, qopts: Vec<V6Option>, v4msg: Option<Vec<u8>>) -> Vec<u8> {
    let mut options = vec![
        V6Option::ClientId(hex(REQUESTOR_DUID)),
        V6Option::LqQuery {
            query_type: qt,
            link_address: link,
            options: qopts,
        },
    ];
    if let Some(b) = v4msg {
        options.push(V6Option::Dhcpv4Msg(b));
    }
    let m = v6::Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options,
    };
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode v6 query");
    out
}

fn recv_v6(c: &mut Conn) -> v6::Message {
    let b = c.recv().expect("server closed the connection");
    v6::Message::decode(&b).expect("reply decodes as DHCPv6")
}

fn opts_of(m: &v6::Message, code: u16) -> Vec<&V6Option> {
    m.options.iter().filter(|o| o.code() == code).collect()
}

/// The DHCPv4 message inside the one OPTION_DHCPV4_MSG of `m`.
fn inner_v4(m: &v6::Message) -> v4::Message {
    let v = opts_of(m, v6opt::DHCPV4_MSG);
    assert_eq!(v.len(), 1, "exactly one OPTION_DHCPV4_MSG in {m:?}");
    let V6Option::Dhcpv4Msg(b) = v[0] else {
        unreachable!()
    };
    v4::Message::decode(b).expect("inner DHCPv4 message decodes")
}

fn status_v6(m: &v6::Message) -> Option<u16> {
    match opts_of(m, v6opt::STATUS_CODE).as_slice() {
        [] => None,
        [V6Option::StatusCode { code, .. }] => Some(*code),
        o => panic!("status options {o:?}"),
    }
}

/// Sends `query`; returns the messages of `xid` up to its end: a LEASEQUERY-DONE, or a
/// LEASEQUERY-REPLY without OPTION_CLIENT_DATA (an error or empty result).
fn exchange_v6(c: &mut Conn, query: &[u8], xid: u32) -> Vec<v6::Message> {
    c.send(query);
    let mut out = Vec::new();
    loop {
        let m = recv_v6(c);
        assert_eq!(m.xid, xid, "message for another query");
        let end = m.msg_type == v6msg::LEASEQUERY_DONE
            || (m.msg_type == v6msg::LEASEQUERY_REPLY
                && opts_of(&m, v6opt::CLIENT_DATA).is_empty());
        out.push(m);
        if end {
            return out;
        }
    }
}

/// Asserts a lone 4o6 error/empty REPLY: requestor CLIENTID, a SERVERID, v6 `status`, and a
/// DHCPLEASEQUERYDONE with option 54, v4 xid `v4xid` and v4 `v4status`.
fn assert_o6_lone_reply(
    m: &v6::Message,
    xid: u32,
    status: Option<u16>,
    v4xid: u32,
    v4st: Option<u8>,
) {
    assert_eq!(m.msg_type, v6msg::LEASEQUERY_REPLY);
    assert_eq!(m.xid, xid);
    assert_eq!(
        opts_of(m, v6opt::CLIENTID),
        vec![&V6Option::ClientId(hex(REQUESTOR_DUID))]
    );
    assert_eq!(opts_of(m, v6opt::SERVERID).len(), 1);
    assert!(opts_of(m, v6opt::CLIENT_DATA).is_empty());
    assert_eq!(status_v6(m), status);
    let d = inner_v4(m);
    assert_lone_done(&d, v4xid, v4st);
}

/// The DHCPBULKLEASEQUERY carried in OPTION_DHCPV4_MSG of a relay-id 4o6 query.
fn o6_relay_v4(xid: u32, relay: &[u8]) -> Vec<u8> {
    bulk_v4(xid, |m| {
        m.options.push(V4Option::ParameterRequestList(vec![
            v4opt::DHCP4O6_S46_SADDR,
            v4opt::V4_PORTPARAMS,
        ]));
        m.options.push(rai(&[(v4relay::RELAY_ID, relay)]));
    })
}

fn pp(id: u16) -> PortParams {
    PortParams {
        offset: 0,
        psid_len: 4,
        psid: id,
    }
}

#[test]
fn s47_dhcp4o6_relay_id_two_bindings_reply_data_done() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let (xid, v4xid) = (0x47_0001, 0x4700_0001);
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(hex(RELAY_4O6)),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND, v6opt::S46_BIND_IPV6_PREFIX]),
        ],
        Some(o6_relay_v4(v4xid, &hex(RELAY_4O6))),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    // B1 and B2 only: B3 has another relay-id, B4 another relay; the plain v6 binding is not 4o6.
    assert_eq!(msgs.len(), 3, "REPLY, DATA, DONE: {msgs:?}");
    assert_eq!(
        msgs.iter().map(|m| m.msg_type).collect::<Vec<_>>(),
        [
            v6msg::LEASEQUERY_REPLY,
            v6msg::LEASEQUERY_DATA,
            v6msg::LEASEQUERY_DONE
        ]
    );
    let reply = &msgs[0];
    assert_eq!(
        opts_of(reply, v6opt::CLIENTID),
        vec![&V6Option::ClientId(hex(REQUESTOR_DUID))]
    );
    assert_eq!(opts_of(reply, v6opt::SERVERID).len(), 1);
    assert!(matches!(status_v6(reply), None | Some(v6status::SUCCESS)));
    let mut bindings = Vec::new();
    for (i, m) in msgs[..2].iter().enumerate() {
        if i > 0 {
            // DATA never repeats CLIENTID, SERVERID or STATUS (RFC 5460 §5.2.1).
            for code in [v6opt::CLIENTID, v6opt::SERVERID, v6opt::STATUS_CODE] {
                assert!(opts_of(m, code).is_empty(), "option {code} in DATA");
            }
        }
        let a = inner_v4(m);
        assert_eq!(a.op, BOOTREPLY);
        assert_eq!(a.message_type(), Some(v4msg::LEASEACTIVE));
        assert_eq!(a.xid, v4xid, "v4 xid echoes the v4 query");
        assert_eq!(server_id_of(&a), (i == 0).then_some(SERVER_ID));
        let V4Option::Dhcp4o6SoftwireSource(src) =
            a.option(v4opt::DHCP4O6_S46_SADDR).expect("109").clone()
        else {
            panic!()
        };
        let V4Option::V4PortParams(p4) = a.option(v4opt::V4_PORTPARAMS).expect("159").clone()
        else {
            panic!()
        };
        let cd = opts_of(m, v6opt::CLIENT_DATA);
        assert_eq!(cd.len(), 1);
        let V6Option::ClientData(inner) = cd[0] else {
            unreachable!()
        };
        // CLIENTID (the DUID of the RFC 4361 client-id), CLT_TIME, S46_V4V6BIND; no 137 (no
        // bind prefix configured: never fabricated).
        let codes: Vec<u16> = inner.iter().map(V6Option::code).collect();
        assert_eq!(
            codes,
            [v6opt::CLIENTID, v6opt::CLT_TIME, v6opt::S46_V4V6BIND]
        );
        let V6Option::ClientId(duid) = &inner[0] else {
            unreachable!()
        };
        bindings.push((
            a.ciaddr,
            a.hw_addr().to_vec(),
            src,
            p4,
            duid.clone(),
            inner[2].clone(),
        ));
    }
    bindings.sort_by(|x, y| x.1.cmp(&y.1));
    let ip = Ipv4Addr::new(198, 51, 100, 10);
    let expect = |n: u8| {
        let src: Ipv6Addr = format!("2001:db8:1:0:1::{n}").parse().unwrap();
        (
            ip,
            hex(&format!("02000000010{n}")),
            src,
            pp(u16::from(n)),
            hex(&format!("0003000102000000010{n}")),
            V6Option::S46V4V6Bind {
                ipv4: ip,
                prefix_len: 128,
                prefix: src,
                options: vec![V6Option::S46PortParams(pp(u16::from(n)))],
            },
        )
    };
    assert_eq!(bindings, vec![expect(1), expect(2)]);
    let done = &msgs[2];
    assert!(opts_of(done, v6opt::CLIENTID).is_empty() && opts_of(done, v6opt::SERVERID).is_empty());
    assert_eq!(status_v6(done), None);
    let d = inner_v4(done);
    assert_eq!(d.message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(d.xid, v4xid);
    assert_eq!(status_v4(&d), None);
    assert_eq!(server_id_of(&d), None);
}

/// Issue 13 item 2 for DHCP4o6: the v6 query types that pair with a v4 primary query
/// (QUERY_BY_RELAY_ID, also with OPTION_S46_V4V6BIND in the ORO; QUERY_BY_REMOTE_ID;
/// QUERY_BY_CLIENTID) return current bindings only, as that v4 query does (RFC 6926 §8.2).
/// One client (one client-id, relay, remote-id, link) with an active binding, a released one
/// and an expired one: those three queries return the active one alone, QUERY_BY_LINK_ADDRESS
/// (the v4 query for all configured addresses on the link) all three. Before the fix the
/// released and expired ones came back as DHCPLEASEUNASSIGNED.
#[test]
fn s47b_dhcp4o6_relay_remote_client_id_return_current_bindings_only() {
    const CID: &str = "ff0000000100030001020000000101";
    const REMOTE: &str = "00000de900000001";
    let line = |addr: &str, psid: u16, state: &str, expires: u32, sw: u8| {
        format!(
            r#"{{"ipv4":"{addr}","psid":{{"offset":0,"len":4,"id":{psid}}},"chaddr":"02:00:00:00:01:01","client_id":"{CID}","state":"{state}","cltt":1764000000,"expires":{expires},"relay_id":"{RELAY_4O6}","remote_id":"{REMOTE}","link":"{LINK1}","softwire_src":"2001:db8:1:0:1::{sw}"}}"#
        )
    };
    let import = [
        line("198.51.100.10", 1, "active", EXPIRES, 1),
        line("198.51.100.10", 2, "released", 1_764_000_000, 2),
        line("198.51.100.11", 3, "expired", 1_764_000_000, 3),
    ]
    .join("\n");
    let srv = started(import, 2);
    let mut c = srv.connect6();
    let oro = || V6Option::Oro(vec![v6opt::S46_V4V6BIND]);
    let v4q = |xid: u32, f: &dyn Fn(&mut v4::Message)| {
        bulk_v4(xid, |m| {
            m.options.push(V4Option::ParameterRequestList(vec![
                v4opt::DHCP_STATE,
                v4opt::V4_PORTPARAMS,
            ]));
            f(m)
        })
    };
    // (ciaddr, PSID, v4 message type, dhcp-state) of every binding message of a query.
    let run = |c: &mut Conn, xid: u32, qt: u8, link: Ipv6Addr, qopts, v4: Vec<u8>| {
        let msgs = exchange_v6(c, &lq6(xid, qt, link, qopts, Some(v4)), xid);
        let mut got: Vec<(Ipv4Addr, u16, Option<u8>, Option<u8>)> = msgs
            .iter()
            .filter(|m| !opts_of(m, v6opt::CLIENT_DATA).is_empty())
            .map(|m| {
                let a = inner_v4(m);
                let psid = match a.option(v4opt::V4_PORTPARAMS) {
                    Some(V4Option::V4PortParams(p)) => p.psid,
                    o => panic!("159: {o:?}"),
                };
                let st = match a.option(v4opt::DHCP_STATE) {
                    Some(V4Option::DhcpState(s)) => Some(*s),
                    _ => None,
                };
                (a.ciaddr, psid, a.message_type(), st)
            })
            .collect();
        got.sort();
        got
    };
    let b1 = (
        Ipv4Addr::new(198, 51, 100, 10),
        1,
        Some(v4msg::LEASEACTIVE),
        Some(dhcp_state::ACTIVE),
    );
    let relay = run(
        &mut c,
        0x47_1001,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![V6Option::RelayId(hex(RELAY_4O6)), oro()],
        v4q(0x4710_0001, &|m| {
            m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_4O6))]))
        }),
    );
    assert_eq!(relay, vec![b1], "QUERY_BY_RELAY_ID");
    let remote = run(
        &mut c,
        0x47_1002,
        query_type::BY_REMOTE_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RemoteId {
                enterprise: 0xde9,
                remote_id: hex("00000001"),
            },
            oro(),
        ],
        v4q(0x4710_0002, &|m| {
            m.options.push(rai(&[(v4relay::REMOTE_ID, &hex(REMOTE))]))
        }),
    );
    assert_eq!(remote, vec![b1], "QUERY_BY_REMOTE_ID");
    let client = run(
        &mut c,
        0x47_1003,
        query_type::BY_CLIENTID,
        Ipv6Addr::UNSPECIFIED,
        vec![V6Option::ClientId(hex(&CID[10..])), oro()],
        v4q(0x4710_0003, &|m| m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID)))),
    );
    assert_eq!(client, vec![b1], "QUERY_BY_CLIENTID");
    let link = run(
        &mut c,
        0x47_1004,
        query_type::BY_LINK_ADDRESS,
        LINK1.parse().unwrap(),
        vec![oro()],
        v4q(0x4710_0004, &|_| {}),
    );
    let un = Some(v4msg::LEASEUNASSIGNED);
    assert_eq!(
        link,
        vec![
            b1,
            (Ipv4Addr::new(198, 51, 100, 10), 2, un, Some(dhcp_state::RELEASED)),
            (Ipv4Addr::new(198, 51, 100, 11), 3, un, Some(dhcp_state::EXPIRED)),
        ],
        "QUERY_BY_LINK_ADDRESS"
    );
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

#[test]
fn s48_dhcp4o6_no_oro_malformed_both_layers() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let (xid, v4xid) = (0x48_0001, 0x4800_0001);
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![V6Option::RelayId(hex(RELAY_4O6))],
        Some(o6_relay_v4(v4xid, &hex(RELAY_4O6))),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        v4xid,
        Some(v4status::MALFORMED_QUERY),
    );
}

#[test]
fn s49_dhcp4o6_query_type_mismatch_malformed() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let (xid, v4xid) = (0x49_0001, 0x4900_0001);
    let v4q = bulk_v4(v4xid, |m| {
        m.options
            .push(rai(&[(v4relay::REMOTE_ID, &hex("00000de900000001"))]));
    });
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(hex(RELAY_4O6)),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
        ],
        Some(v4q),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        v4xid,
        Some(v4status::MALFORMED_QUERY),
    );
}

#[test]
fn s50_rfc5460_7_2_no_dhcpv4_msg_is_plain_bulk() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let xid = 0x50_0001;
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![V6Option::RelayId(hex(RELAY_4O6))],
        None,
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    // Only the plain v6 binding: REPLY{CLIENTID, SERVERID, CLIENT_DATA} then DONE, no v4 layer.
    assert_eq!(
        msgs.iter().map(|m| m.msg_type).collect::<Vec<_>>(),
        [v6msg::LEASEQUERY_REPLY, v6msg::LEASEQUERY_DONE]
    );
    assert!(msgs
        .iter()
        .all(|m| opts_of(m, v6opt::DHCPV4_MSG).is_empty()));
    let cd = opts_of(&msgs[0], v6opt::CLIENT_DATA);
    assert_eq!(cd.len(), 1);
    let V6Option::ClientData(inner) = cd[0] else {
        unreachable!()
    };
    assert!(inner.contains(&V6Option::ClientId(hex("000300010200000006aa"))));
    let addr: Ipv6Addr = "2001:db8:1::100".parse().unwrap();
    assert!(
        inner
            .iter()
            .any(|o| matches!(o, V6Option::IaAddr { addr: a, .. } if *a == addr)),
        "IAADDR 2001:db8:1::100 in {inner:?}"
    );
    assert_eq!(status_v6(&msgs[1]), None);
}

#[test]
fn s51_dhcp4o6_short_or_wrong_type_v4_message_malformed() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let qopts = || {
        vec![
            V6Option::RelayId(hex(RELAY_4O6)),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
        ]
    };
    // Shorter than 240 octets: no v4 xid to echo, the DONE carries xid 0.
    let xid = 0x51_0001;
    let mut short = o6_relay_v4(0x5100_0001, &hex(RELAY_4O6));
    short.truncate(200);
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        qopts(),
        Some(short),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        0,
        Some(v4status::MALFORMED_QUERY),
    );
    // A DHCPDISCOVER instead of a DHCPBULKLEASEQUERY.
    let (xid, v4xid) = (0x51_0002, 0x5100_0002);
    let mut m = v4::Message::new(BOOTREQUEST, v4msg::DISCOVER, v4xid);
    m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_4O6))]));
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        qopts(),
        Some(b),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        v4xid,
        Some(v4status::MALFORMED_QUERY),
    );
    // A BOOTREPLY-op DHCPBULKLEASEQUERY.
    let (xid, v4xid) = (0x51_0003, 0x5100_0003);
    let mut b = o6_relay_v4(v4xid, &hex(RELAY_4O6));
    b[0] = BOOTREPLY;
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        qopts(),
        Some(b),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        v4xid,
        Some(v4status::MALFORMED_QUERY),
    );
}

#[test]
fn s52_dhcp4o6_nonzero_ciaddr_malformed() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let (xid, v4xid) = (0x52_0001, 0x5200_0001);
    let v4q = bulk_v4(v4xid, |m| {
        m.ciaddr = Ipv4Addr::new(198, 51, 100, 10);
        m.options.push(rai(&[(v4relay::RELAY_ID, &hex(RELAY_4O6))]));
    });
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(hex(RELAY_4O6)),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
        ],
        Some(v4q),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(
        &msgs[0],
        xid,
        Some(v6status::MALFORMED_QUERY),
        v4xid,
        Some(v4status::MALFORMED_QUERY),
    );
}

#[test]
fn s53_dhcp4o6_zero_matches_lone_reply() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let relay = hex("0003000102000000ff99");
    let (xid, v4xid) = (0x53_0001, 0x5300_0001);
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(relay.clone()),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
        ],
        Some(o6_relay_v4(v4xid, &relay)),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(msgs.len(), 1);
    assert_o6_lone_reply(&msgs[0], xid, None, v4xid, None);
    // No v6 DONE follows: the next message on the connection answers the next query.
    let (xid2, v4xid2) = (0x53_0002, 0x5300_0002);
    let q = lq6(
        xid2,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(hex(RELAY_4O6)),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND]),
        ],
        Some(o6_relay_v4(v4xid2, &hex(RELAY_4O6))),
    );
    let msgs = exchange_v6(&mut c, &q, xid2);
    assert_eq!(msgs.len(), 3);
}

#[test]
fn s54_dhcp4o6_no_softwire_source_no_v4v6bind() {
    let srv = started(o6_import(), 2);
    let mut c = srv.connect6();
    let relay = hex("0003000102000000aa03");
    let (xid, v4xid) = (0x54_0001, 0x5400_0001);
    let q = lq6(
        xid,
        query_type::BY_RELAY_ID,
        Ipv6Addr::UNSPECIFIED,
        vec![
            V6Option::RelayId(relay.clone()),
            V6Option::Oro(vec![v6opt::S46_V4V6BIND, v6opt::S46_CONT_LW]),
        ],
        Some(o6_relay_v4(v4xid, &relay)),
    );
    let msgs = exchange_v6(&mut c, &q, xid);
    assert_eq!(
        msgs.iter().map(|m| m.msg_type).collect::<Vec<_>>(),
        [v6msg::LEASEQUERY_REPLY, v6msg::LEASEQUERY_DONE]
    );
    let a = inner_v4(&msgs[0]);
    assert_eq!(a.message_type(), Some(v4msg::LEASEACTIVE));
    assert_eq!(a.ciaddr, Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(a.xid, v4xid);
    assert!(
        a.option(v4opt::DHCP4O6_S46_SADDR).is_none(),
        "no 109 without a softwire source"
    );
    let cd = opts_of(&msgs[0], v6opt::CLIENT_DATA);
    let V6Option::ClientData(inner) = cd[0] else {
        unreachable!()
    };
    let codes: Vec<u16> = inner.iter().map(V6Option::code).collect();
    assert_eq!(
        codes,
        [v6opt::CLIENTID, v6opt::CLT_TIME],
        "no 92 or 96 fabricated"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency: 8 requestors x 4 parallel queries, 2 shards
// ---------------------------------------------------------------------------------------------

/// Bindings in the concurrency test. 100k also in debug builds: the whole test (import, 8
/// requestors, 20 streams, 2M messages) runs in about 9 s on the dev profile.
const BULK_N: u32 = 100_000;

const LINKS: u32 = 4;

fn bulk_link(l: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + l as u16, 0, 0, 0, 0, 0)
}

/// Binding `i`: 10.0.0.0 + i, on link i % 4, with a softwire source.
fn bulk_import(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 260);
    for i in 0..n {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        let b = i.to_be_bytes();
        let link = bulk_link(i % LINKS);
        let src = Ipv6Addr::from(u128::from(link) | 0x1_0000_0000 | u128::from(i));
        s.push_str(&format!(
            r#"{{"ipv4":"{ip}","chaddr":"02:00:{:02x}:{:02x}:{:02x}:{:02x}","state":"active","cltt":1764000000,"expires":{EXPIRES},"link":"{link}","softwire_src":"{src}"}}"#,
            b[0], b[1], b[2], b[3]
        ));
        s.push('\n');
    }
    s
}

/// One stream's bookkeeping: which binding indexes were seen, how many messages, whether the
/// first message carried the stream head (option 54 / LEASEQUERY-REPLY), and its end.
struct Stream {
    seen: Vec<bool>,
    count: u32,
    done: bool,
}

impl Stream {
    fn new(n: u32) -> Stream {
        Stream {
            seen: vec![false; n as usize],
            count: 0,
            done: false,
        }
    }
    fn binding(&mut self, ciaddr: Ipv4Addr, n: u32) {
        assert!(!self.done, "binding after the end of the stream");
        let i = u32::from(ciaddr).wrapping_sub(0x0a00_0000);
        assert!(i < n, "unknown address {ciaddr}");
        assert!(!self.seen[i as usize], "{ciaddr} twice in one stream");
        self.seen[i as usize] = true;
        self.count += 1;
    }
}

/// TCP 67: four parallel all-addresses queries; every stream holds every binding exactly once.
fn v4_requestor(c: &mut Conn, r: u32, n: u32) {
    let xids: Vec<u32> = (0..4).map(|k| 0x7700_0000 | (r << 8) | k).collect();
    for &x in &xids {
        c.send(&bulk_v4(x, |_| {}));
    }
    let mut streams: HashMap<u32, Stream> = xids.iter().map(|&x| (x, Stream::new(n))).collect();
    while streams.values().any(|s| !s.done) {
        let b = c.recv().expect("server closed mid-stream");
        let m = v4::MessageView::parse(&b).expect("v4 reply");
        let s = streams.get_mut(&m.xid).expect("reply for a query we sent");
        let first = s.count == 0 && !s.done;
        assert_eq!(
            m.has_option(v4opt::SERVER_ID),
            first,
            "option 54 only first"
        );
        match m.message_type() {
            Some(v4msg::LEASEACTIVE) => s.binding(m.ciaddr, n),
            Some(v4msg::LEASEQUERYDONE) => {
                assert!(!s.done, "two DONEs");
                assert!(!m.has_option(v4opt::STATUS_CODE), "DONE with a status");
                s.done = true;
            }
            t => panic!("unexpected message type {t:?}"),
        }
    }
    for (x, s) in streams {
        assert_eq!(s.count, n, "stream {x:#x}");
        assert!(s.seen.iter().all(|&b| b), "stream {x:#x} misses bindings");
    }
}

/// TCP 547: four parallel 4o6 link-address queries, one per link.
fn o6_requestor(c: &mut Conn, r: u32, n: u32) {
    let mut streams: HashMap<u32, (u32, Stream)> = HashMap::new();
    for l in 0..LINKS {
        let xid = 0x66_0000 | (r << 8) | l;
        let v4q = bulk_v4(xid << 4, |_| {});
        let q = lq6(
            xid,
            query_type::BY_LINK_ADDRESS,
            bulk_link(l),
            vec![V6Option::Oro(vec![v6opt::S46_V4V6BIND])],
            Some(v4q),
        );
        c.send(&q);
        streams.insert(xid, (l, Stream::new(n)));
    }
    while streams.values().any(|(_, s)| !s.done) {
        let b = c.recv().expect("server closed mid-stream");
        let m = v6::MessageView::parse(&b).expect("v6 reply");
        let (l, s) = streams.get_mut(&m.xid).expect("reply for a query we sent");
        let first = s.count == 0 && !s.done;
        let expect_type = match m.msg_type {
            v6msg::LEASEQUERY_DONE => None,
            t => Some(t),
        };
        let inner = m.options().get(v6opt::DHCPV4_MSG).expect("DHCPV4_MSG");
        let v = v4::MessageView::parse(inner.data).expect("inner v4");
        assert_eq!(v.xid, m.xid << 4, "v4 xid echo");
        match expect_type {
            Some(t) => {
                assert_eq!(
                    t,
                    if first {
                        v6msg::LEASEQUERY_REPLY
                    } else {
                        v6msg::LEASEQUERY_DATA
                    }
                );
                assert_eq!(v.message_type(), Some(v4msg::LEASEACTIVE));
                let i = u32::from(v.ciaddr).wrapping_sub(0x0a00_0000);
                assert_eq!(i % LINKS, *l, "binding from another link");
                let cd = m.options().get(v6opt::CLIENT_DATA).expect("CLIENT_DATA");
                let cd = cd.nested().expect("CLIENT_DATA options");
                assert!(cd.get(v6opt::S46_V4V6BIND).is_some(), "no S46_V4V6BIND");
                s.binding(v.ciaddr, n);
            }
            None => {
                assert!(!s.done, "two DONEs");
                assert!(m.options().get(v6opt::STATUS_CODE).is_none());
                assert_eq!(v.message_type(), Some(v4msg::LEASEQUERYDONE));
                s.done = true;
            }
        }
    }
    for (x, (l, s)) in streams {
        assert_eq!(s.count, n / LINKS, "stream {x:#x}");
        let missing = (0..n)
            .filter(|i| i % LINKS == l && !s.seen[*i as usize])
            .count();
        assert_eq!(missing, 0, "stream {x:#x} misses bindings");
    }
}

#[test]
fn concurrency_rfc5460_7_3_rfc6926_8_4_eight_requestors_four_queries_each() {
    let n = BULK_N;
    let srv = ServerBuilder::new()
        .shards(2)
        .import(bulk_import(n))
        .arg("--max-queries-per-connection")
        .arg("4")
        .arg("--no-authority")
        .start();
    let (a4, a6) = (srv.lq4, srv.lq6);
    let handles: Vec<_> = (0..8u32)
        .map(|r| {
            std::thread::spawn(move || {
                if r % 2 == 0 {
                    v4_requestor(&mut Conn::connect(a4), r, n)
                } else {
                    o6_requestor(&mut Conn::connect(a6), r, n)
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("requestor thread");
    }
    drop(srv);
}
