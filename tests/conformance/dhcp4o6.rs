//! DHCPv4-over-DHCPv6 bulk leasequery (the draft; docs/DESIGN.md section 4): both layers' validation, the
//! DHCPV4-RESPONSE inside OPTION_CLIENT_DATA, OPTION_S46_V4V6BIND.

use super::fixtures::*;
use crate::common::Conn;
use leasequery::proto::codes::dhcp_state;
use leasequery::proto::codes::query_type;
use leasequery::proto::codes::v4msg;
use leasequery::proto::codes::v4opt;
use leasequery::proto::codes::v4relay;
use leasequery::proto::codes::v4status;
use leasequery::proto::codes::v6msg;
use leasequery::proto::codes::v6opt;
use leasequery::proto::codes::v6status;
use leasequery::proto::v4;
use leasequery::proto::v4::V4Option;
use leasequery::proto::v6::V6Option;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;

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
        v4q(0x4710_0003, &|m| {
            m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID)))
        }),
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
            (
                Ipv4Addr::new(198, 51, 100, 10),
                2,
                un,
                Some(dhcp_state::RELEASED)
            ),
            (
                Ipv4Addr::new(198, 51, 100, 11),
                3,
                un,
                Some(dhcp_state::EXPIRED)
            ),
        ],
        "QUERY_BY_LINK_ADDRESS"
    );
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
