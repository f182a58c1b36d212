//! Shutdown (issue: "SIGTERM or SIGINT stops accepting, ends running queries with
//! QueryTerminated (v6 DONE or REPLY, v4 DONE), closes, and exits 0 within a deadline").

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::ServerBuilder;
use leasequery::proto::codes::{v4msg, v4opt, v4status, v6msg, v6opt, v6status};
use leasequery::proto::v4;
use leasequery::proto::v6::MessageView;

/// `n` DHCP4o6 bindings on one link, 16 PSIDs per address.
fn import(n: usize) -> String {
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

fn bulk_v4_all(xid: u32) -> Vec<u8> {
    let mut m = v4::Message::new(1, v4msg::BULKLEASEQUERY, xid);
    m.options
        .push(v4::V4Option::ParameterRequestList(vec![51, 91, 109, 159]));
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn query_4o6_link(xid: u32) -> Vec<u8> {
    let mut m = vec![14, (xid >> 16) as u8, (xid >> 8) as u8, xid as u8];
    m.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    m.extend_from_slice(&[0, 44, 0, 23, 4]);
    m.extend_from_slice(
        &"2001:db8:1::"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    m.extend_from_slice(&[0, 6, 0, 2, 0, 92]);
    let v4 = bulk_v4_all(0x11223344);
    m.extend_from_slice(&v6opt::DHCPV4_MSG.to_be_bytes());
    m.extend_from_slice(&(v4.len() as u16).to_be_bytes());
    m.extend_from_slice(&v4);
    m
}

/// A requestor that does not read stalls the stream (socket buffers full); SIGTERM then makes
/// the server end both streams with QueryTerminated as their last message and exit 0.
#[test]
fn sigterm_ends_running_queries_with_query_terminated_and_exits_zero() {
    let n = 60_000;
    let mut srv = ServerBuilder::new()
        .shards(2)
        .import(import(n))
        .arg("--shutdown-deadline")
        .arg("20")
        .start();
    let mut c6 = srv.connect6();
    let mut c4 = srv.connect4();
    c6.send(&query_4o6_link(0xabcdef));
    c4.send(&bulk_v4_all(0x0102_0304));
    // Let the streams start and fill the socket buffers.
    std::thread::sleep(Duration::from_millis(700));
    srv.signal("TERM");

    let mut got6 = 0usize;
    let last6 = loop {
        let m = c6.recv().expect("stream ended without a DONE");
        let v = MessageView::parse(&m).unwrap();
        assert_eq!(v.xid, 0xabcdef);
        match v.msg_type {
            v6msg::LEASEQUERY_REPLY | v6msg::LEASEQUERY_DATA => got6 += 1,
            v6msg::LEASEQUERY_DONE => break m,
            t => panic!("unexpected type {t}"),
        }
    };
    assert!(
        got6 >= 1 && got6 < n,
        "the stream was cut short ({got6} of {n})"
    );
    let done = MessageView::parse(&last6).unwrap();
    let st = done
        .options()
        .get(v6opt::STATUS_CODE)
        .expect("DONE carries a status");
    assert_eq!(
        u16::from_be_bytes([st.data[0], st.data[1]]),
        v6status::QUERY_TERMINATED
    );
    // The 4o6 DONE carries a DHCPLEASEQUERYDONE with the same meaning (v4 QueryTerminated 2).
    let inner = done
        .options()
        .get(v6opt::DHCPV4_MSG)
        .expect("DHCPV4_MSG in DONE");
    let iv = v4::MessageView::parse(inner.data).unwrap();
    assert_eq!(iv.message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(
        iv.option(v4opt::STATUS_CODE).unwrap()[0],
        v4status::QUERY_TERMINATED
    );
    assert!(
        c6.recv().is_none(),
        "DONE is the last message, then the server closes"
    );

    let mut got4 = 0usize;
    loop {
        let m = c4.recv().expect("v4 stream ended without a DONE");
        let v = v4::MessageView::parse(&m).unwrap();
        assert_eq!(v.xid, 0x0102_0304);
        match v.message_type() {
            Some(v4msg::LEASEACTIVE) => got4 += 1,
            // A query for all addresses lists, after a shard's bindings, the demo authority's
            // pool addresses without one (RFC 6926 §6.2): a shard can get there before the
            // SIGTERM when the socket buffers are large.
            Some(v4msg::LEASEUNASSIGNED) => got4 += 1,
            Some(v4msg::LEASEQUERYDONE) => {
                assert_eq!(
                    v.option(v4opt::STATUS_CODE).unwrap()[0],
                    v4status::QUERY_TERMINATED
                );
                break;
            }
            t => panic!("unexpected v4 type {t:?}"),
        }
    }
    assert!(got4 < n, "the v4 stream was cut short ({got4} of {n})");
    let status = srv
        .wait_exit(Duration::from_secs(25))
        .expect("server exited");
    assert!(status.success(), "exit status {status:?}");
}

/// SIGINT with no connection: exit 0 promptly.
#[test]
fn sigint_when_idle_exits_zero() {
    let mut srv = ServerBuilder::new().shards(1).start();
    srv.signal("INT");
    let status = srv
        .wait_exit(Duration::from_secs(10))
        .expect("server exited");
    assert!(status.success(), "exit status {status:?}");
}

/// A restart right after a shutdown that closed requestor connections (left in TIME-WAIT on the
/// server's port) binds the same addresses; a second server on a TCP port in use is refused.
#[test]
fn restart_on_the_same_ports_after_closing_connections_and_no_second_server() {
    let addrs = (
        format!("[::1]:{}", common::free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap(),
        format!("[::1]:{}", common::free_port()).parse().unwrap(),
    );
    let mut srv = ServerBuilder::new()
        .listen(addrs.0, addrs.1, addrs.2)
        .start();
    // A second server on the same addresses is refused, naming the address.
    let second = ServerBuilder::new()
        .listen(addrs.0, addrs.1, addrs.2)
        .try_start();
    let log = second.err().expect("the second server must not start");
    assert!(log.contains("another server is already listening"), "{log}");
    // Requestor connections the server closes itself at shutdown.
    let conns: Vec<_> = (0..20).map(|_| srv.connect6()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.terminate().expect("exits").success());
    drop(conns);
    let again = ServerBuilder::new()
        .listen(addrs.0, addrs.1, addrs.2)
        .try_start();
    assert!(
        again.is_ok(),
        "restart refused: {}",
        again.err().unwrap_or_default()
    );
}
