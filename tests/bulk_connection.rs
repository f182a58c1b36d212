//! Connection-level bulk leasequery scenarios of codepoints-and-scenarios.md §6 (2, 4, 5, 9, 10,
//! 21-25) over loopback TCP: framing edge cases, a requestor that goes away, large answers,
//! parallel and duplicate queries, the per-connection query limit, and a stream cut short.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::{Conn, ServerBuilder};
use leasequery::proto::codes::{query_type, v4msg, v6msg, v6opt, v6status};
use leasequery::proto::v4;
use leasequery::proto::v6::{Message, V6Option};

const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

/// `n` plain v6 bindings on link 2001:db8:7::, each with `addrs` IA_NA addresses.
fn v6_import(n: usize, addrs: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let mut iana = String::new();
        for a in 0..addrs {
            if a > 0 {
                iana.push(',');
            }
            write!(
                iana,
                r#"{{"addr":"2001:db8:7::{:x}:{:x}","preferred":3600,"valid":7200}}"#,
                i, a
            )
            .unwrap();
        }
        writeln!(
            s,
            r#"{{"duid":"0003000102{i:08x}","link":"2001:db8:7::","iana":[{iana}],"cltt":1767225600,"relay_id":"000300010a0000000007"}}"#
        )
        .unwrap();
    }
    s
}

/// `n` DHCP4o6 bindings (v4 bulk answers are about 300 octets each).
fn v4_import(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let a = std::net::Ipv4Addr::from(0xc633_6400u32 + (i / 16) as u32);
        writeln!(
            s,
            r#"{{"ipv4":"{a}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"020000{:06x}","client_id":"ff{:08x}0003000102{:08x}","state":"active","cltt":1767225600,"expires":1867225600,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}:{:x}"}}"#,
            i % 16,
            i,
            i,
            i,
            i >> 16,
            i & 0xffff
        )
        .unwrap();
    }
    s
}

/// LEASEQUERY by link-address 2001:db8:7::.
fn by_link(xid: u32) -> Vec<u8> {
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            V6Option::LqQuery {
                query_type: query_type::BY_LINK_ADDRESS,
                link_address: "2001:db8:7::".parse().unwrap(),
                options: vec![],
            },
        ],
    };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

fn recv(c: &mut Conn) -> Message {
    Message::decode(&c.recv().expect("a message")).expect("a valid DHCPv6 message")
}

fn status(m: &Message) -> Option<u16> {
    m.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } => Some(*code),
        _ => None,
    })
}

fn client_data(m: &Message) -> Option<&Vec<V6Option>> {
    m.options.iter().find_map(|o| match o {
        V6Option::ClientData(d) => Some(d),
        _ => None,
    })
}

/// Reads messages until every xid in `xids` has ended its stream; returns per xid the message
/// types in order, and the largest number of streams seen open at once.
fn read_streams(c: &mut Conn, xids: &[u32]) -> (HashMap<u32, Vec<u8>>, usize) {
    let mut seen: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut open = 0usize;
    let mut max_open = 0usize;
    let mut ended = 0;
    while ended < xids.len() {
        let m = recv(c);
        assert!(xids.contains(&m.xid), "unexpected xid {}", m.xid);
        let types = seen.entry(m.xid).or_default();
        if types.is_empty() {
            assert_eq!(
                m.msg_type,
                v6msg::LEASEQUERY_REPLY,
                "a stream starts with REPLY"
            );
            open += 1;
            max_open = max_open.max(open);
        }
        types.push(m.msg_type);
        let lone_reply = m.msg_type == v6msg::LEASEQUERY_REPLY && client_data(&m).is_none();
        if m.msg_type == v6msg::LEASEQUERY_DONE || lone_reply {
            open -= 1;
            ended += 1;
        }
    }
    (seen, max_open)
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
        common::log_counter(&srv.log(), "closed_protocol_error"),
        4,
        "{}",
        srv.log()
    );
}

#[test]
fn s9_rfc5460_7_requestor_closing_mid_stream_stops_the_query_and_frees_its_state() {
    // 30,000 v4 bindings (about 9 MB of answers: more than loopback socket buffers hold) and
    // room for one connection only.
    let mut srv = ServerBuilder::new()
        .import(v4_import(30_000))
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
    assert_eq!(common::log_counter(&log, "bulk_terminated"), 1, "{log}");
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
        common::log_counter(&srv.log(), "queries_duplicate_xid"),
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
