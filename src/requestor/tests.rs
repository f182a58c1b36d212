use std::net::{Ipv4Addr, Ipv6Addr};

use super::query::{self, ActiveQuery, BulkV4, BulkV6};
use super::reply::{classify, inner, Answer, Ending, Status, Stream, Wire};
use super::table::{Key, Table};
use crate::proto::codes::{query_type, v4msg, v4opt, v4status, v6msg, v6opt, v6status};
use crate::proto::record::PortParams;
use crate::proto::v4::{self, V4Option};
use crate::proto::v6::{Message, MessageView, V6Option};

const DUID: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0x4c, 0x47];

fn enc6(msg_type: u8, options: Vec<V6Option>) -> Vec<u8> {
    let mut out = Vec::new();
    Message {
        msg_type,
        xid: 7,
        options,
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn enc4(m: &v4::Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn lease4(t: u8, addr: [u8; 4], psid: Option<u16>) -> Vec<u8> {
    let mut m = v4::Message::new(2, t, 9);
    m.ciaddr = Ipv4Addr::from(addr);
    m.options.push(V4Option::Unknown {
        code: v4opt::CLIENT_ID,
        data: vec![255, 1, 2],
    });
    if let Some(p) = psid {
        let [x, y] = PortParams {
            offset: 0,
            psid_len: 4,
            psid: p,
        }
        .wire_psid()
        .to_be_bytes();
        m.options.push(V4Option::Unknown {
            code: v4opt::V4_PORTPARAMS,
            data: vec![0, 4, x, y],
        });
    }
    m.options.push(V4Option::Dhcp4o6SoftwireSource(
        "2001:db8::1".parse().unwrap(),
    ));
    enc4(&m)
}

fn status4(t: u8, code: Option<u8>) -> Vec<u8> {
    let mut m = v4::Message::new(2, t, 9);
    if let Some(code) = code {
        m.options.push(V4Option::StatusCode {
            code,
            message: String::new(),
        });
    }
    enc4(&m)
}

fn st6(code: u16) -> V6Option {
    V6Option::StatusCode {
        code,
        message: String::new(),
    }
}

fn cd6(valid: u32) -> V6Option {
    V6Option::ClientData(vec![
        V6Option::ClientId(vec![0, 3, 0, 1, 9, 9]),
        V6Option::IaAddr {
            addr: "2001:db8::9".parse().unwrap(),
            preferred: 0,
            valid,
            options: vec![],
        },
    ])
}

#[test]
fn v6_bulk_queries_carry_client_id_and_each_query_type() {
    let link: Ipv6Addr = "2001:db8:1::".parse().unwrap();
    let cases = [
        (
            BulkV6::Address("2001:db8::5".parse().unwrap()),
            query_type::BY_ADDRESS,
            v6opt::IAADDR,
        ),
        (
            BulkV6::ClientId(vec![1, 2]),
            query_type::BY_CLIENTID,
            v6opt::CLIENTID,
        ),
        (
            BulkV6::RelayId(vec![3, 4]),
            query_type::BY_RELAY_ID,
            v6opt::RELAY_ID,
        ),
        (BulkV6::Link(link), query_type::BY_LINK_ADDRESS, v6opt::ORO),
        (
            BulkV6::RemoteId {
                enterprise: 9,
                remote_id: vec![5],
            },
            query_type::BY_REMOTE_ID,
            v6opt::REMOTE_ID,
        ),
    ];
    for (q, qt, first) in cases {
        let b = query::v6_bulk(0x0112_3456, DUID, &q, &[v6opt::S46_V4V6BIND]);
        let v = MessageView::parse(&b).unwrap();
        assert_eq!((v.msg_type, v.xid), (v6msg::LEASEQUERY, 0x12_3456));
        assert_eq!(v.options().get(v6opt::CLIENTID).unwrap().data, DUID);
        let lq = v.options().get(v6opt::LQ_QUERY).unwrap().data;
        assert_eq!(lq[0], qt, "{q:?}");
        let link_field = Ipv6Addr::from(<[u8; 16]>::try_from(&lq[1..17]).unwrap());
        assert_eq!(link_field == link, matches!(q, BulkV6::Link(_)));
        let inner = crate::proto::v6::OptionsView::new(&lq[17..]).unwrap();
        assert_eq!(inner.iter().next().unwrap().code, first, "{q:?}");
        assert_eq!(inner.get(v6opt::ORO).unwrap().data, &[0, 92]);
    }
}

#[test]
fn v4_bulk_queries_select_by_each_primary_key() {
    let prl = [v4opt::DHCP_STATE];
    let all = v4::Message::decode(&query::v4_bulk(5, &BulkV4::All, &prl)).unwrap();
    assert_eq!(
        (all.message_type(), all.xid, all.op),
        (Some(v4msg::BULKLEASEQUERY), 5, 1)
    );
    assert_eq!(
        all.option(v4opt::PARAMETER_REQUEST_LIST),
        Some(&V4Option::ParameterRequestList(prl.to_vec()))
    );
    assert!(
        all.option(v4opt::RELAY_AGENT_INFO).is_none() && all.option(v4opt::CLIENT_ID).is_none()
    );
    let view = |q: &BulkV4| query::v4_bulk(5, q, &[]);
    let relay = view(&BulkV4::RelayId(vec![1, 2]));
    assert_eq!(
        v4::MessageView::parse(&relay)
            .unwrap()
            .option(v4opt::RELAY_AGENT_INFO)
            .unwrap()
            .as_ref(),
        &[12, 2, 1, 2]
    );
    let remote = view(&BulkV4::RemoteId(vec![7]));
    assert_eq!(
        v4::MessageView::parse(&remote)
            .unwrap()
            .option(v4opt::RELAY_AGENT_INFO)
            .unwrap()
            .as_ref(),
        &[2, 1, 7]
    );
    let cid = view(&BulkV4::ClientId(vec![255, 1]));
    assert_eq!(
        v4::MessageView::parse(&cid)
            .unwrap()
            .option(v4opt::CLIENT_ID)
            .unwrap()
            .as_ref(),
        &[255, 1]
    );
    let mac = v4::Message::decode(&view(&BulkV4::Mac([2, 0, 0, 0, 0, 1]))).unwrap();
    assert_eq!((mac.htype, mac.hw_addr()), (1, &[2, 0, 0, 0, 0, 1][..]));
}

#[test]
fn dhcp4o6_bulk_carries_the_v4_query_in_option_87() {
    let v4q = query::v4_bulk(0x11223344, &BulkV4::All, &[]);
    let b = query::o6_bulk(
        3,
        DUID,
        &BulkV6::Link("2001:db8:1::".parse().unwrap()),
        query::O6_ORO,
        v4q.clone(),
    );
    assert_eq!(inner(&b), Some(&v4q[..]));
}

#[test]
fn active_queries_send_the_catch_up_start_in_each_layer() {
    let q = ActiveQuery {
        xid: 0x0100_0005,
        duid: DUID,
        start: Some(946_684_800 + 60),
        oro: &[v6opt::LQ_BASE_TIME],
        prl: &[v4opt::DHCP_STATE],
    };
    let v4m = v4::Message::decode(&q.v4()).unwrap();
    assert_eq!(v4m.message_type(), Some(v4msg::ACTIVELEASEQUERY));
    assert_eq!(
        v4m.option(v4opt::QUERY_START_TIME),
        Some(&V4Option::QueryStartTime(946_684_860))
    );
    let v6m = Message::decode(&q.v6()).unwrap();
    assert_eq!((v6m.msg_type, v6m.xid), (v6msg::ACTIVELEASEQUERY, 5));
    // OPTION_LQ_START_TIME counts from 2000-01-01 (RFC 7653 §6.3).
    assert!(v6m.options.contains(&V6Option::LqStartTime(60)));
    assert!(!v6m.options.iter().any(|o| o.code() == v6opt::DHCPV4_MSG));
    let o6 = q.o6(0x4c51);
    let v4in = v4::Message::decode(inner(&o6).unwrap()).unwrap();
    assert_eq!(
        (v4in.xid, v4in.message_type()),
        (0x4c51, Some(v4msg::ACTIVELEASEQUERY))
    );
    let none = ActiveQuery {
        start: None,
        oro: &[],
        prl: &[],
        ..q
    };
    assert!(v4::Message::decode(&none.v4())
        .unwrap()
        .option(v4opt::QUERY_START_TIME)
        .is_none());
    assert_eq!(Message::decode(&none.v6()).unwrap().options.len(), 1);
}

#[test]
fn v6_messages_classify_by_type_binding_and_status() {
    let b = enc6(v6msg::LEASEQUERY_REPLY, vec![cd6(100)]);
    let Answer::Binding(bd) = classify(Wire::V6, &b) else {
        panic!()
    };
    let v6 = bd.v6_binding().unwrap();
    assert_eq!((v6.duid, v6.active), (&[0, 3, 0, 1, 9, 9][..], true));
    assert_eq!(
        classify(Wire::V6, &enc6(v6msg::LEASEQUERY_REPLY, vec![st6(9)])),
        Answer::Reply(Some(9))
    );
    assert_eq!(
        classify(Wire::V6, &enc6(v6msg::LEASEQUERY_REPLY, vec![])),
        Answer::Reply(None)
    );
    assert_eq!(
        classify(Wire::V6, &enc6(v6msg::LEASEQUERY_DATA, vec![])),
        Answer::Keepalive
    );
    assert_eq!(
        classify(Wire::V6, &enc6(v6msg::LEASEQUERY_DATA, vec![st6(13)])),
        Answer::Status(Status::V6(13))
    );
    assert_eq!(
        classify(Wire::V6, &enc6(v6msg::LEASEQUERY_DONE, vec![])),
        Answer::Done(None)
    );
    assert_eq!(classify(Wire::V6, &[7, 0, 0, 1]), Answer::Other);
    assert_eq!(classify(Wire::V6, &[]), Answer::Other);
}

#[test]
fn v4_messages_classify_and_map_their_status_to_v6() {
    let a = lease4(v4msg::LEASEACTIVE, [10, 0, 0, 1], Some(3));
    let Answer::Binding(bd) = classify(Wire::V4, &a) else {
        panic!()
    };
    let v4b = bd.v4_binding().unwrap();
    assert_eq!((v4b.addr, v4b.active), (Ipv4Addr::new(10, 0, 0, 1), true));
    assert_eq!(
        v4b.port_params,
        Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 3
        })
    );
    assert!(bd.v6_binding().is_none());
    let ka = status4(v4msg::LEASEQUERYSTATUS, Some(v4status::CONNECTION_ACTIVE));
    assert_eq!(classify(Wire::V4, &ka), Answer::Keepalive);
    let cu = status4(v4msg::LEASEQUERYSTATUS, Some(v4status::CATCH_UP_COMPLETE));
    assert_eq!(classify(Wire::V4, &cu), Answer::Status(Status::V4(7)));
    assert_eq!(
        Status::V4(v4status::CATCH_UP_COMPLETE).v6(),
        v6status::CATCH_UP_COMPLETE
    );
    assert_eq!(
        classify(Wire::V4, &status4(v4msg::LEASEQUERYDONE, None)),
        Answer::Done(Some(Status::V4(0)))
    );
    assert_eq!(classify(Wire::V4, &[1, 2, 3]), Answer::Other);
}

#[test]
fn dhcp4o6_bindings_carry_both_layers() {
    let v4 = lease4(v4msg::LEASEUNASSIGNED, [10, 0, 0, 2], None);
    let m = enc6(
        v6msg::LEASEQUERY_DATA,
        vec![
            V6Option::ClientData(vec![]),
            V6Option::Dhcpv4Msg(v4.clone()),
        ],
    );
    let Answer::Binding(bd) = classify(Wire::O6, &m) else {
        panic!()
    };
    assert_eq!(bd.v4, Some(&v4[..]));
    assert!(!bd.v4_binding().unwrap().active);
    assert!(
        bd.v6_binding().is_none(),
        "a DHCP4o6 binding is not a v6 one"
    );
}

#[test]
fn a_bulk_stream_ends_at_done_or_a_reply_without_bindings() {
    let mut s = Stream::bulk(Wire::O6);
    let b = enc6(v6msg::LEASEQUERY_REPLY, vec![cd6(1)]);
    s.handle(&b);
    s.handle(&enc6(v6msg::LEASEQUERY_DATA, vec![cd6(1)]));
    assert_eq!(s.end(), None);
    s.handle(&enc6(v6msg::LEASEQUERY_DONE, vec![]));
    assert_eq!((s.bindings(), s.end()), (2, Some(Ending::Complete(None))));
    let mut e = Stream::bulk(Wire::V6);
    e.handle(&enc6(v6msg::LEASEQUERY_REPLY, vec![st6(9)]));
    assert_eq!(e.end(), Some(Ending::Complete(Some(Status::V6(9)))));
    let mut v = Stream::bulk(Wire::V4);
    v.handle(&lease4(v4msg::LEASEACTIVE, [10, 0, 0, 1], None));
    v.handle(&status4(v4msg::LEASEQUERYDONE, None));
    assert_eq!(
        (v.bindings(), v.end()),
        (1, Some(Ending::Complete(Some(Status::V4(0)))))
    );
}

#[test]
fn an_active_stream_catches_up_follows_and_ends_data_missing_refused_or_done() {
    let mut s = Stream::active(Wire::V6);
    s.handle(&enc6(v6msg::LEASEQUERY_REPLY, vec![]));
    s.handle(&enc6(v6msg::LEASEQUERY_DATA, vec![]));
    s.handle(&enc6(v6msg::LEASEQUERY_DATA, vec![cd6(1)]));
    assert!(!s.caught_up());
    s.handle(&enc6(
        v6msg::LEASEQUERY_DATA,
        vec![st6(v6status::CATCH_UP_COMPLETE)],
    ));
    assert!(s.caught_up());
    // Updates follow the catch-up, until the server ends the query.
    s.handle(&enc6(v6msg::LEASEQUERY_DATA, vec![cd6(0)]));
    assert_eq!((s.bindings(), s.end()), (2, None));
    s.handle(&enc6(
        v6msg::LEASEQUERY_DONE,
        vec![st6(v6status::QUERY_TERMINATED)],
    ));
    let ended = Some(Ending::Complete(Some(Status::V6(
        v6status::QUERY_TERMINATED,
    ))));
    assert_eq!(s.end(), ended);
    s.handle(&enc6(v6msg::LEASEQUERY_DATA, vec![cd6(0)]));
    assert_eq!(
        (s.bindings(), s.end()),
        (2, ended),
        "nothing counts after the end"
    );
    let mut m = Stream::active(Wire::V6);
    m.handle(&enc6(
        v6msg::LEASEQUERY_REPLY,
        vec![st6(v6status::DATA_MISSING)],
    ));
    assert_eq!(m.end(), Some(Ending::DataMissing));
    let mut m4 = Stream::active(Wire::V4);
    m4.handle(&status4(
        v4msg::LEASEQUERYDONE,
        Some(v4status::DATA_MISSING),
    ));
    assert_eq!(m4.end(), Some(Ending::DataMissing));
    let mut k4 = Stream::active(Wire::V4);
    k4.handle(&status4(
        v4msg::LEASEQUERYSTATUS,
        Some(v4status::CONNECTION_ACTIVE),
    ));
    k4.handle(&status4(
        v4msg::LEASEQUERYSTATUS,
        Some(v4status::CATCH_UP_COMPLETE),
    ));
    assert_eq!((k4.caught_up(), k4.end()), (true, None));
    let mut r = Stream::active(Wire::V6);
    r.handle(&enc6(
        v6msg::LEASEQUERY_REPLY,
        vec![st6(v6status::NOT_ALLOWED)],
    ));
    assert_eq!(
        r.end(),
        Some(Ending::Refused(Status::V6(v6status::NOT_ALLOWED)))
    );
    let mut u = Stream::active(Wire::V6);
    u.handle(&[1, 2, 3]);
    assert_eq!(u.end(), Some(Ending::Unexpected));
}

#[test]
fn the_table_keys_v4_by_address_and_psid_and_the_latest_answer_wins() {
    let mut t = Table::new();
    for m in [
        lease4(v4msg::LEASEACTIVE, [10, 0, 0, 1], Some(1)),
        lease4(v4msg::LEASEACTIVE, [10, 0, 0, 1], Some(2)),
    ] {
        let Answer::Binding(b) = classify(Wire::V4, &m) else {
            panic!()
        };
        assert_eq!(t.apply(&b).unwrap().1, None);
    }
    assert_eq!((t.len(), t.active().count()), (2, 2));
    let gone = lease4(v4msg::LEASEUNASSIGNED, [10, 0, 0, 1], Some(2));
    let Answer::Binding(b) = classify(Wire::V4, &gone) else {
        panic!()
    };
    let (key, old) = t.apply(&b).unwrap();
    assert!(old.unwrap().active);
    assert_eq!(
        key,
        Key::V4 {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            psid: Some(PortParams {
                offset: 0,
                psid_len: 4,
                psid: 2
            })
        }
    );
    assert!(!t.get(&key).unwrap().active);
    assert_eq!((t.len(), t.active().count()), (2, 1));
    let v6 = enc6(v6msg::LEASEQUERY_DATA, vec![cd6(0)]);
    let Answer::Binding(b) = classify(Wire::V6, &v6) else {
        panic!()
    };
    let (k6, _) = t.apply(&b).unwrap();
    assert_eq!(
        k6,
        Key::V6 {
            duid: vec![0, 3, 0, 1, 9, 9],
            addr: "2001:db8::9".parse().unwrap()
        }
    );
    assert!(!t.get(&k6).unwrap().active);
    t.clear();
    assert!(t.is_empty());
}

#[test]
fn tls_answers_are_classified_and_garbage_is_other() {
    use super::reply::{tls_answer, Status, TlsAnswer};
    use crate::session::{tls_accept, Family, Identity};
    let id = Identity {
        server_duid: vec![0, 4, 1, 2, 3, 4],
        server_id: std::net::Ipv4Addr::new(192, 0, 2, 1),
    };
    // The server's accepting answers to the requestor's messages.
    let v6 = tls_accept(Family::V6, &query::starttls(0x0102_0304), &id, 1).unwrap();
    assert_eq!(
        tls_answer(Wire::V6, 0x0102_0304, &v6[2..]),
        TlsAnswer::Accepted
    );
    assert_eq!(
        tls_answer(Wire::O6, 0x0002_0304, &v6[2..]),
        TlsAnswer::Accepted
    );
    assert_eq!(
        tls_answer(Wire::V6, 0x99, &v6[2..]),
        TlsAnswer::Other,
        "xid"
    );
    let v4 = tls_accept(Family::V4, &query::dhcptls(7), &id, 1).unwrap();
    assert_eq!(tls_answer(Wire::V4, 7, &v4[2..]), TlsAnswer::Accepted);
    assert_eq!(tls_answer(Wire::V4, 8, &v4[2..]), TlsAnswer::Other, "xid");
    assert_eq!(tls_answer(Wire::V6, 7, &v4[2..]), TlsAnswer::Other, "wire");
    // Refusals (tls = "off").
    let refused6 = crate::session::refuse::starttls_refused(
        &crate::proto::v6::MessageView::parse(&query::starttls(5)).unwrap(),
        &id,
    );
    assert_eq!(
        tls_answer(Wire::V6, 5, &refused6[2..]),
        TlsAnswer::Refused(Status::V6(
            crate::proto::codes::v6status::TLS_CONNECTION_REFUSED
        ))
    );
    let refused4 = crate::session::refuse::dhcptls_reply(
        &crate::proto::v4::MessageView::parse(&query::dhcptls(6)).unwrap(),
        &id,
        true,
        1,
    );
    assert_eq!(
        tls_answer(Wire::V4, 6, &refused4[2..]),
        TlsAnswer::Refused(Status::V4(
            crate::proto::codes::v4status::TLS_CONNECTION_REFUSED
        ))
    );
    // Truncations never panic; one shorter than the fixed header is never an answer (a cut
    // at an option boundary may still be a whole message).
    for (wire, xid, msg, header) in [
        (Wire::V6, 0x0002_0304, &v6[2..], 4),
        (Wire::V4, 7, &v4[2..], 240),
    ] {
        for n in 0..msg.len() {
            let a = tls_answer(wire, xid, &msg[..n]);
            if n < header {
                assert_eq!(a, TlsAnswer::Other, "{wire:?} truncated to {n}");
            }
        }
    }
    for garbage in [&b""[..], b"\x07", b"\x07\x00\x00\x07\xff", &[0xff; 300]] {
        assert_eq!(tls_answer(Wire::V4, 7, garbage), TlsAnswer::Other);
    }
}
