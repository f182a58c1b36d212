//! Plain DHCPv6 bulk leasequery over loopback TCP (RFC 5460), the core scenarios of
//! codepoints-and-scenarios.md §6, plus RFC 7653 behaviour of a server without active
//! leasequery.

mod common;

use std::time::Duration;

use common::{Conn, ServerBuilder};
use leasequery::proto::codes::{query_type, v6msg, v6opt, v6status};
use leasequery::proto::v6::{Message, V6Option};

const RELAY: &str = "000300010a0000000003";

/// Three clients behind one relay on link 2001:db8:2::, one behind another relay.
fn import() -> String {
    let mut s = String::new();
    for i in 0..3 {
        s.push_str(&format!(
            "{{\"duid\":\"00030001020000000{i}00\",\"link\":\"2001:db8:2::\",\"iana\":[{{\"addr\":\"2001:db8:2::{}\",\"preferred\":3600,\"valid\":7200}}],\"cltt\":1767225600,\"relay_id\":\"{RELAY}\",\"remote_id\":\"00000de9aabb{i:02x}\"}}\n",
            i + 5
        ));
    }
    s.push_str("{\"duid\":\"000300010200000009ff\",\"link\":\"2001:db8:3::\",\"iana\":[{\"addr\":\"2001:db8:3::1\",\"preferred\":3600,\"valid\":7200}],\"cltt\":1767225600,\"relay_id\":\"000300010a00000000ff\"}\n");
    s
}

const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

fn lq(xid: u32, qtype: u8, link: &str, qopts: Vec<V6Option>) -> Vec<u8> {
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            V6Option::LqQuery {
                query_type: qtype,
                link_address: link.parse().unwrap(),
                options: qopts,
            },
        ],
    };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn relay_q(xid: u32) -> Vec<u8> {
    lq(
        xid,
        query_type::BY_RELAY_ID,
        "::",
        vec![V6Option::RelayId(hex::decode(RELAY).unwrap())],
    )
}

fn status(m: &Message) -> Option<u16> {
    m.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } => Some(*code),
        _ => None,
    })
}

fn has(m: &Message, code: u16) -> bool {
    m.options.iter().any(|o| o.code() == code)
}

fn recv(c: &mut Conn) -> Message {
    Message::decode(&c.recv().expect("a reply")).unwrap()
}

/// Reads one whole stream: a lone REPLY, or REPLY, DATA..., DONE.
fn stream(c: &mut Conn) -> Vec<Message> {
    let first = recv(c);
    assert_eq!(first.msg_type, v6msg::LEASEQUERY_REPLY);
    let data = has(&first, v6opt::CLIENT_DATA);
    let mut out = vec![first];
    if data {
        loop {
            let m = recv(c);
            let done = m.msg_type == v6msg::LEASEQUERY_DONE;
            out.push(m);
            if done {
                break;
            }
        }
    }
    out
}

#[test]
fn s11_rfc5460_7_2_relay_id_three_matches_reply_data_done() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    c.send(&relay_q(0x0a0b0c));
    let s = stream(&mut c);
    let types: Vec<u8> = s.iter().map(|m| m.msg_type).collect();
    assert_eq!(types, [15, 17, 17, 16]);
    assert!(s.iter().all(|m| m.xid == 0x0a0b0c));
    let reply = &s[0];
    assert!(
        reply
            .options
            .contains(&V6Option::ClientId(REQUESTOR.to_vec())),
        "REPLY echoes the requestor's Client-ID"
    );
    assert!(has(reply, v6opt::SERVERID));
    assert_eq!(status(reply), None);
    // Scenario 27: DATA and DONE carry no Client-ID, Server-ID or status.
    for m in &s[1..] {
        assert!(!has(m, v6opt::CLIENTID) && !has(m, v6opt::SERVERID) && status(m).is_none());
    }
    // Every client exactly once, each in its own CLIENT_DATA with its DUID, address and CLT_TIME.
    let mut duids: Vec<Vec<u8>> = s[..3]
        .iter()
        .map(|m| {
            let cd = m
                .options
                .iter()
                .find_map(|o| {
                    if let V6Option::ClientData(d) = o {
                        Some(d.clone())
                    } else {
                        None
                    }
                })
                .unwrap();
            assert!(cd.iter().any(|o| matches!(o, V6Option::IaAddr { .. })));
            assert!(cd.iter().any(|o| matches!(o, V6Option::CltTime(_))));
            assert!(!cd.iter().any(|o| o.code() == v6opt::LQ_CLIENT_LINK));
            cd.iter()
                .find_map(|o| {
                    if let V6Option::ClientId(d) = o {
                        Some(d.clone())
                    } else {
                        None
                    }
                })
                .unwrap()
        })
        .collect();
    duids.sort();
    assert_eq!(
        duids,
        (0..3)
            .map(|i| hex::decode(format!("00030001020000000{i}00")).unwrap())
            .collect::<Vec<_>>()
    );
}

#[test]
fn s13_rfc5460_7_2_no_match_is_a_lone_reply() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    c.send(&lq(
        7,
        query_type::BY_RELAY_ID,
        "::",
        vec![V6Option::RelayId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9])],
    ));
    let s = stream(&mut c);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0]), None);
    assert!(!has(&s[0], v6opt::CLIENT_DATA));
    // No DONE follows: the next query's REPLY is the next message.
    c.send(&relay_q(8));
    assert_eq!(recv(&mut c).xid, 8);
}

#[test]
fn s14_to_s18_rfc5007_4_3_errors_are_lone_replies() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (lq(14, 17, "::", vec![]), v6status::UNKNOWN_QUERY_TYPE),
        (
            lq(15, query_type::BY_RELAY_ID, "::", vec![]),
            v6status::MALFORMED_QUERY,
        ),
        (
            lq(16, query_type::BY_REMOTE_ID, "::", vec![]),
            v6status::MALFORMED_QUERY,
        ),
        (
            lq(17, query_type::BY_LINK_ADDRESS, "::", vec![]),
            v6status::MALFORMED_QUERY,
        ),
        (
            lq(18, query_type::BY_LINK_ADDRESS, "3001::", vec![]),
            v6status::NOT_CONFIGURED,
        ),
    ];
    for (q, want) in cases {
        c.send(&q);
        let m = recv(&mut c);
        assert_eq!(m.msg_type, v6msg::LEASEQUERY_REPLY);
        assert_eq!(status(&m), Some(want), "xid {}", m.xid);
        assert!(!has(&m, v6opt::CLIENT_DATA));
    }
}

#[test]
fn s19_rfc5007_4_2_1_no_client_id_gets_no_reply() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 19,
        options: vec![V6Option::LqQuery {
            query_type: 4,
            link_address: "2001:db8:2::".parse().unwrap(),
            options: vec![],
        }],
    };
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    c.send(&b);
    // Discarded; the connection stays and answers the next valid query first.
    c.send(&relay_q(20));
    let r = recv(&mut c);
    assert_eq!(r.xid, 20);
}

#[test]
fn s1_s3_rfc5460_5_1_framing() {
    let srv = ServerBuilder::new().import(import()).start();
    // Two frames in one write: both answered in order.
    let mut c = srv.connect6();
    let (a, b) = (
        lq(1, 4, "2001:db8:3::", vec![]),
        lq(2, 4, "2001:db8:3::", vec![]),
    );
    let mut both = Vec::new();
    for q in [&a, &b] {
        both.extend_from_slice(&(q.len() as u16).to_be_bytes());
        both.extend_from_slice(q);
    }
    c.send_raw(&both);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = recv(&mut c);
        seen.push((m.xid, m.msg_type));
    }
    seen.sort();
    assert_eq!(seen, [(1, 15), (1, 16), (2, 15), (2, 16)]);
    // A zero-length frame closes the connection without a reply.
    let mut z = srv.connect6();
    z.send_raw(&[0, 0]);
    assert!(z.closed_silently(Duration::from_secs(5)));
}

#[test]
fn s6_rfc5460_4_solicit_closes_the_connection() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    c.send(&[1, 0, 0, 1, 0, 1, 0, 2, 0, 1]);
    assert!(c.closed_silently(Duration::from_secs(5)));
}

#[test]
fn s41_rfc7653_9_2_active_query_is_not_supported_then_closed() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    let m = Message {
        msg_type: v6msg::ACTIVELEASEQUERY,
        xid: 41,
        options: vec![V6Option::ClientId(REQUESTOR.to_vec())],
    };
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    c.send(&b);
    let r = recv(&mut c);
    assert_eq!(
        (r.msg_type, r.xid, status(&r)),
        (v6msg::LEASEQUERY_REPLY, 41, Some(v6status::NOT_SUPPORTED))
    );
    assert!(c.recv().is_none(), "closed after NotSupported");
}

#[test]
fn s45_rfc7653_6_2_2_starttls_is_refused() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    c.send(&[v6msg::STARTTLS, 0, 0, 45]);
    let r = recv(&mut c);
    assert_eq!(
        (r.msg_type, r.xid, status(&r)),
        (v6msg::REPLY, 45, Some(v6status::TLS_CONNECTION_REFUSED))
    );
}

#[test]
fn s7_rfc5460_7_1_connection_over_the_limit_is_closed() {
    let srv = ServerBuilder::new()
        .arg("--max-connections")
        .arg("2")
        .start();
    let mut a = srv.connect6();
    let mut b = srv.connect4();
    // Make sure both are accepted before the third arrives.
    assert!(!a.closed_silently(Duration::from_millis(300)));
    assert!(!b.closed_silently(Duration::from_millis(300)));
    let mut c = srv.connect6();
    assert!(
        c.closed_silently(Duration::from_secs(5)),
        "third connection kept"
    );
    drop(a);
    // A slot is free again once the first connection is gone.
    std::thread::sleep(Duration::from_millis(300));
    let mut d = srv.connect6();
    assert!(!d.closed_silently(Duration::from_millis(500)));
}

#[test]
fn s8_rfc5460_7_4_idle_connection_is_closed_after_the_data_timeout() {
    let srv = ServerBuilder::new()
        .arg("--bulk-lq-data-timeout")
        .arg("1")
        .start();
    let mut c = srv.connect6();
    assert!(
        !c.closed_silently(Duration::from_millis(400)),
        "closed too early"
    );
    assert!(
        c.closed_silently(Duration::from_secs(5)),
        "idle connection kept"
    );
}

#[test]
fn s12_rfc5460_7_2_one_match_reply_then_done() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    c.send(&lq(
        12,
        query_type::BY_RELAY_ID,
        "::",
        vec![V6Option::RelayId(
            hex::decode("000300010a00000000ff").unwrap(),
        )],
    ));
    let types: Vec<u8> = stream(&mut c).iter().map(|m| m.msg_type).collect();
    assert_eq!(types, [v6msg::LEASEQUERY_REPLY, v6msg::LEASEQUERY_DONE]);
}

#[test]
fn s20_rfc5007_4_2_1_foreign_server_id_gets_no_reply() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 20,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            V6Option::ServerId(vec![0, 4, 0xde, 0xad, 0xbe, 0xef]),
            V6Option::LqQuery {
                query_type: 4,
                link_address: "2001:db8:2::".parse().unwrap(),
                options: vec![],
            },
        ],
    };
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    c.send(&b);
    c.send(&relay_q(21));
    assert_eq!(
        recv(&mut c).xid,
        21,
        "the foreign-server query was answered"
    );
}

#[test]
fn s28_rfc5007_4_1_2_1_oro_options_go_inside_client_data() {
    let srv = ServerBuilder::new().import(import()).start();
    let mut c = srv.connect6();
    c.send(&lq(
        28,
        query_type::BY_LINK_ADDRESS,
        "2001:db8:2::",
        vec![V6Option::Oro(vec![v6opt::RELAY_ID, v6opt::REMOTE_ID])],
    ));
    let s = stream(&mut c);
    assert_eq!(s.len(), 4);
    for m in &s[..3] {
        assert!(
            !has(m, v6opt::RELAY_ID) && !has(m, v6opt::REMOTE_ID),
            "not at message level"
        );
        let cd = m
            .options
            .iter()
            .find_map(|o| {
                if let V6Option::ClientData(d) = o {
                    Some(d.clone())
                } else {
                    None
                }
            })
            .unwrap();
        assert!(cd.contains(&V6Option::RelayId(hex::decode(RELAY).unwrap())));
        assert!(cd.iter().any(|o| o.code() == v6opt::REMOTE_ID));
    }
}
