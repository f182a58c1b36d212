//! RFC 5007 (DHCPv6 leasequery) as RFC 5460 uses it: malformed queries and their lone replies (§4.2.1,
//! §4.3), requested options inside OPTION_CLIENT_DATA (§4.1.2.1).

use super::fixtures::*;
use crate::common::ServerBuilder;
use leasequery::proto::codes::query_type;
use leasequery::proto::codes::v6msg;
use leasequery::proto::codes::v6opt;
use leasequery::proto::codes::v6status;
use leasequery::proto::v6::Message;
use leasequery::proto::v6::V6Option;

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
fn s21_rfc5007_4_2_1_short_lq_query_is_malformed() {
    let srv = ServerBuilder::new().import(v6_import(1, 1)).start();
    let mut c = srv.connect6();
    let mut m = vec![14, 0, 0, 21];
    m.extend_from_slice(&[0, 1, 0, 10]);
    m.extend_from_slice(&REQUESTOR);
    // OPTION_LQ_QUERY with 5 octets: a query type and 4 octets of a link-address.
    m.extend_from_slice(&[0, 44, 0, 5, 4, 0x20, 0x01, 0x0d, 0xb8]);
    c.send(&m);
    let r = recv(&mut c);
    assert_eq!((r.msg_type, r.xid), (v6msg::LEASEQUERY_REPLY, 21));
    assert_eq!(status(&r), Some(v6status::MALFORMED_QUERY));
    assert!(client_data(&r).is_none());
    assert!(r.options.contains(&V6Option::ClientId(REQUESTOR.to_vec())));
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
