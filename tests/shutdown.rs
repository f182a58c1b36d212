//! Shutdown (issue: "SIGTERM or SIGINT stops accepting, ends running queries with
//! QueryTerminated (v6 DONE or REPLY, v4 DONE), closes, and exits 0 within a deadline").

mod common;

use std::time::Duration;

use common::ServerBuilder;
use leasequery::proto::codes::{v4msg, v4opt, v4status, v6msg, v6opt, v6status};
use leasequery::proto::v4;
use leasequery::proto::v6::MessageView;

use common::{bulk_v4_all, import_4o6 as import, query_4o6_link};

/// The most octets the server and the kernel can hold of one stream that its requestor does not
/// read: the server's send buffer (at most `tcp_wmem`'s maximum, read from /proc), the
/// requestor's locked receive buffer (the kernel doubles what is asked, then adds overhead: 4x
/// is generous), and the server's own queue (every shard's credits plus the chunk each shard
/// sends last, of `chunk_size` octets each; the defaults 2 and 256 KiB).
fn stream_capacity(shards: usize, rcvbuf: usize) -> usize {
    let credits = 2;
    let chunk = 256 * 1024;
    common::kernel_capacity(rcvbuf) + shards * (credits + 1) * chunk
}

/// A requestor that does not read stalls the stream; SIGTERM then makes the server end both
/// streams with QueryTerminated as their last message and exit 0.
///
/// The stream's state at SIGTERM is certain, whatever the machine's buffers: each requestor
/// reads the first message (so the stream has begun), its receive window is small and locked,
/// and each stream is more than twice what the server, its send buffer and the requestor's
/// receive buffer can hold together, so no stream can have ended before the SIGTERM.
#[test]
fn sigterm_ends_running_queries_with_query_terminated_and_exits_zero() {
    const RCVBUF: usize = 16 * 1024;
    // The smallest record of either stream (a DHCPv4 LEASEACTIVE of these bindings is about 300
    // octets, a DHCP4o6 LEASEQUERY-DATA about 380).
    const MIN_RECORD: usize = 200;
    let shards = 2;
    let n = (2 * stream_capacity(shards, RCVBUF) / MIN_RECORD + 1).max(60_000);
    let mut srv = ServerBuilder::new()
        .shards(shards)
        .import(import(n))
        .arg("--shutdown-deadline")
        .arg("20")
        .start();
    let mut c6 = common::Conn::connect_small_window(srv.lq6, RCVBUF);
    let mut c4 = common::Conn::connect_small_window(srv.lq4, RCVBUF);
    c6.send(&query_4o6_link(0xabcdef));
    c4.send(&bulk_v4_all(0x0102_0304));
    // Both streams have begun: their first messages are here.
    let first6 = c6.recv().expect("the 4o6 stream's first message");
    let first4 = c4.recv().expect("the v4 stream's first message");
    // Let the server fill the buffers (not needed for the outcome: no stream fits in them).
    std::thread::sleep(Duration::from_millis(300));
    srv.signal("TERM");

    let mut pending6 = Some(first6);
    let mut pending4 = Some(first4);
    let mut got6 = 0usize;
    let last6 = loop {
        let m = pending6
            .take()
            .or_else(|| c6.recv())
            .expect("stream ended without a DONE");
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
    let mut messages4 = 0usize;
    loop {
        let m = pending4
            .take()
            .or_else(|| c4.recv())
            .expect("v4 stream ended without a DONE");
        let v = v4::MessageView::parse(&m).unwrap();
        assert_eq!(v.xid, 0x0102_0304);
        messages4 += 1;
        match v.message_type() {
            Some(v4msg::LEASEACTIVE) => got4 += 1,
            // A query for all addresses lists, after a shard's bindings, the demo authority's
            // pool addresses without one (RFC 6926 §6.2).
            Some(v4msg::LEASEUNASSIGNED) => {}
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
    assert!(
        messages4 >= 2 && got4 < n,
        "the v4 stream was cut short ({got4} of {n})"
    );
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

/// Issue 19 item 6: the shutdown deadline is the moment the process has exited, counted from
/// the signal, even with a requestor that never reads (its stream cannot end by itself). The
/// server leaves itself a margin (it exits 100 ms before the deadline), which is what this test
/// allows for the test's own polling.
#[test]
fn shutdown_with_a_requestor_that_never_reads_exits_within_the_deadline() {
    const RCVBUF: usize = 16 * 1024;
    let shards = 2;
    let n = (2 * stream_capacity(shards, RCVBUF) / 200 + 1).max(60_000);
    for deadline in [1u64, 2] {
        let mut srv = ServerBuilder::new()
            .shards(shards)
            .import(import(n))
            .arg("--shutdown-deadline")
            .arg(deadline.to_string())
            .start();
        let mut c = common::Conn::connect_small_window(srv.lq4, RCVBUF);
        c.send(&bulk_v4_all(9));
        assert!(c.recv().is_some(), "the stream's first message");
        let signalled = std::time::Instant::now();
        srv.signal("TERM");
        let status = srv
            .wait_exit(Duration::from_secs(deadline + 10))
            .expect("server exited");
        let took = signalled.elapsed();
        assert!(
            took <= Duration::from_secs(deadline),
            "exit {took:?} after SIGTERM (deadline {deadline} s)"
        );
        assert!(
            took >= Duration::from_millis(deadline * 1000 / 2),
            "exited after {took:?}: before the queries had their time"
        );
        assert!(status.success(), "exit status {status:?}");
        drop(c);
    }
}
