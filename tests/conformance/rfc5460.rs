//! RFC 5460 (DHCPv6 bulk leasequery): framing (§5.1), connections and their limits (§7.1, §7.4), the
//! stream of REPLY, DATA and DONE (§7.2), parallel and duplicate queries (§7.3).

use super::fixtures::*;
use crate::common::Conn;
use crate::common::ServerBuilder;
use leasequery::proto::codes::query_type;
use leasequery::proto::codes::v4msg;
use leasequery::proto::codes::v6msg;
use leasequery::proto::codes::v6opt;
use leasequery::proto::codes::v6status;
use leasequery::proto::v4;
use leasequery::proto::v6::Message;
use leasequery::proto::v6::V6Option;
use std::io::Write as _;
use std::net::Ipv6Addr;
use std::net::Shutdown;
use std::time::Duration;
use std::time::Instant;

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
fn s2_rfc5460_5_1_partial_frame_then_fin_is_discarded_and_closed() {
    let srv = ServerBuilder::new().import(v6_import(2, 1)).start();
    let mut c = srv.connect6();
    // The prefix announces 100 octets; 5 arrive, then the requestor half-closes.
    c.send_raw(&[0, 100, 14, 0, 0, 1, 0]);
    c.s.shutdown(Shutdown::Write).unwrap();
    assert!(c.closed_silently(Duration::from_secs(5)));
    // The server is unharmed.
    let mut d = srv.connect6();
    d.send(&by_link(9));
    let m = recv(&mut d);
    assert_eq!((m.msg_type, m.xid), (v6msg::LEASEQUERY_REPLY, 9));
}

#[test]
fn s4_rfc5460_5_1_message_split_across_segments_is_reassembled() {
    let srv = ServerBuilder::new().import(v6_import(2, 1)).start();
    let mut c = srv.connect6();
    let f = framed(&by_link(0x4242));
    // One octet of the prefix, then the other, then the message in three pieces.
    let cuts = [1, 2, 7, f.len() - 3, f.len()];
    let mut at = 0;
    for &cut in &cuts {
        c.s.write_all(&f[at..cut]).unwrap();
        c.s.flush().unwrap();
        at = cut;
        std::thread::sleep(Duration::from_millis(30));
    }
    let (streams, _) = read_streams(&mut c, &[0x4242]);
    assert_eq!(
        streams[&0x4242],
        [
            v6msg::LEASEQUERY_REPLY,
            v6msg::LEASEQUERY_DATA,
            v6msg::LEASEQUERY_DONE
        ]
    );
}

#[test]
fn s5_rfc5460_5_1_garbage_closes_the_connection_and_the_server_survives() {
    let srv = ServerBuilder::new().import(v6_import(1, 1)).start();
    let garbage: [&[u8]; 4] = [
        &[0xde, 0xad],
        // A LEASEQUERY whose option header runs past the end.
        &[14, 0, 0, 1, 0, 1, 0, 50, 1, 2],
        // Random octets.
        &[0x37, 0x99, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00],
        // A header only.
        &[14],
    ];
    for g in garbage {
        let mut c = srv.connect6();
        c.send(g);
        assert!(c.closed_silently(Duration::from_secs(5)), "{g:?}");
    }
    let mut d = srv.connect6();
    d.send(&by_link(5));
    assert_eq!(recv(&mut d).xid, 5);
    drop(d);
    let mut srv = srv;
    assert!(srv.terminate().expect("exits").success());
    assert_eq!(
        crate::common::log_counter(&srv.log(), "closed_protocol_error"),
        4,
        "{}",
        srv.log()
    );
}

#[test]
fn s6_rfc5460_4_solicit_closes_the_connection() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    c.send(&[1, 0, 0, 1, 0, 1, 0, 2, 0, 1]);
    assert!(c.closed_silently(Duration::from_secs(5)));
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
fn s9_rfc5460_7_requestor_closing_mid_stream_stops_the_query_and_frees_its_state() {
    // 30,000 v4 bindings (about 9 MB of answers: more than loopback socket buffers hold) and
    // room for one connection only.
    let mut srv = ServerBuilder::new()
        .import(v4_bulk_import(30_000))
        .arg("--max-connections")
        .arg("1")
        .start();
    let mut c = srv.connect4();
    let mut q = v4::Message::new(1, v4msg::BULKLEASEQUERY, 77);
    q.options.push(v4::V4Option::ParameterRequestList(vec![51]));
    let mut bytes = Vec::new();
    q.encode(&mut bytes).unwrap();
    c.send(&bytes);
    let first = c.recv().unwrap();
    let first = v4::MessageView::parse(&first).unwrap();
    assert_eq!(first.message_type(), Some(v4msg::LEASEACTIVE));
    // Close with unread data (the kernel answers the server's next write with a reset).
    drop(c);
    // The single connection slot comes back: a new requestor is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut d = srv.connect6();
        d.send(&by_link(8));
        d.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut tmp = [0u8; 2];
        if std::io::Read::read(&mut d.s, &mut tmp).unwrap_or(0) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connection slot was never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(srv.terminate().expect("exits").success());
    let log = srv.log();
    assert_eq!(
        crate::common::log_counter(&log, "bulk_terminated"),
        1,
        "{log}"
    );
}

#[test]
fn s10_rfc5460_5_1_large_answers_are_split_into_one_message_per_binding() {
    // 10 bindings of 600 addresses: about 17 KB each, 170 KB in all, far over one frame.
    let srv = ServerBuilder::new().import(v6_import(10, 600)).start();
    let mut c = srv.connect6();
    c.send(&by_link(10));
    let mut msgs = vec![recv(&mut c)];
    while msgs.last().unwrap().msg_type != v6msg::LEASEQUERY_DONE {
        msgs.push(recv(&mut c));
    }
    assert_eq!(msgs.len(), 11, "REPLY + 9 DATA + DONE");
    let mut total = 0;
    let mut duids = Vec::new();
    for m in &msgs[..10] {
        let cd = client_data(m).expect("one binding per message");
        let addrs = cd
            .iter()
            .filter(|o| matches!(o, V6Option::IaAddr { .. }))
            .count();
        assert_eq!(addrs, 600);
        duids.extend(cd.iter().filter_map(|o| match o {
            V6Option::ClientId(d) => Some(d.clone()),
            _ => None,
        }));
        let mut enc = Vec::new();
        m.encode(&mut enc).unwrap();
        total += enc.len();
    }
    assert!(total > 65535);
    duids.sort();
    duids.dedup();
    assert_eq!(duids.len(), 10);
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
fn s22_rfc5460_7_3_two_queries_back_to_back_each_end_with_their_own_done() {
    let srv = ServerBuilder::new().import(v6_import(3000, 1)).start();
    let mut c = srv.connect6();
    let mut both = framed(&by_link(0xa));
    both.extend(framed(&by_link(0xb)));
    c.send_raw(&both);
    let (streams, max_open) = read_streams(&mut c, &[0xa, 0xb]);
    for xid in [0xa, 0xb] {
        let t = &streams[&xid];
        assert_eq!(t.len(), 3001, "REPLY + 2999 DATA + DONE for xid {xid}");
        assert_eq!(t[0], v6msg::LEASEQUERY_REPLY);
        assert_eq!(*t.last().unwrap(), v6msg::LEASEQUERY_DONE);
        assert!(t[1..3000].iter().all(|&m| m == v6msg::LEASEQUERY_DATA));
    }
    assert_eq!(max_open, 2, "both queries ran in parallel");
}

#[test]
fn s23_duplicate_xid_while_running_is_dropped_silently() {
    let mut srv = ServerBuilder::new().import(v6_import(3000, 1)).start();
    let mut c = srv.connect6();
    let mut twice = framed(&by_link(0x23));
    twice.extend(framed(&by_link(0x23)));
    c.send_raw(&twice);
    let (streams, _) = read_streams(&mut c, &[0x23]);
    assert_eq!(streams[&0x23].len(), 3001, "one stream, every binding once");
    // Nothing else arrives for the dropped duplicate.
    c.s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut tmp = [0u8; 1];
    assert!(std::io::Read::read(&mut c.s, &mut tmp).is_err());
    // The xid is free again once its stream ended.
    c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.send(&by_link(0x23));
    let (again, _) = read_streams(&mut c, &[0x23]);
    assert_eq!(again[&0x23].len(), 3001);
    drop(c);
    assert!(srv.terminate().expect("exits").success());
    assert_eq!(
        crate::common::log_counter(&srv.log(), "queries_duplicate_xid"),
        1,
        "{}",
        srv.log()
    );
}

#[test]
fn s24_rfc5460_7_3_queries_over_the_parallel_limit_wait_and_are_answered() {
    let srv = ServerBuilder::new()
        .import(v6_import(2000, 1))
        .arg("--max-queries-per-connection")
        .arg("2")
        .start();
    let mut c = srv.connect6();
    let xids: Vec<u32> = (1..=6).collect();
    let mut all = Vec::new();
    for &x in &xids {
        all.extend(framed(&by_link(x)));
    }
    c.send_raw(&all);
    let (streams, max_open) = read_streams(&mut c, &xids);
    for x in &xids {
        assert_eq!(streams[x].len(), 2001, "xid {x} answered in full");
    }
    assert!(max_open <= 2, "at most 2 streams at once, saw {max_open}");
}

#[test]
fn s25_rfc5460_7_2_stream_cut_short_after_reply_ends_with_done_query_terminated() {
    // 12000 bindings of 100 addresses (about 34 MB, far more than socket buffers and chunks
    // in flight hold): the requestor does not read, the stream stalls after the REPLY, and
    // shutdown cuts it short.
    let mut srv = ServerBuilder::new().import(v6_import(12_000, 100)).start();
    let mut c = srv.connect6();
    c.send(&by_link(0x25));
    let first = recv(&mut c);
    assert_eq!(first.msg_type, v6msg::LEASEQUERY_REPLY);
    std::thread::sleep(Duration::from_millis(300));
    srv.signal("TERM");
    let mut last = first;
    let mut n = 1;
    while let Some(b) = c.recv() {
        last = Message::decode(&b).unwrap();
        n += 1;
    }
    assert!(n < 12_001, "the stream was not cut short ({n} messages)");
    assert_eq!(last.msg_type, v6msg::LEASEQUERY_DONE);
    assert_eq!(last.xid, 0x25);
    assert_eq!(status(&last), Some(v6status::QUERY_TERMINATED));
    assert!(!last.options.iter().any(|o| o.code() == v6opt::CLIENT_DATA));
    assert!(srv
        .wait_exit(Duration::from_secs(15))
        .expect("exits")
        .success());
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
