//! Issue 13 item 5: a journal write failure must not leave the table changed. With the
//! test-only switch `LEASEQUERYD_FAULT_JOURNAL_FAIL_AFTER=1` (`--features fault-injection`) the
//! first journal write succeeds and every later one fails: the lease whose commit failed gets
//! no DHCPACK and is not in the table (a bulk query does not return it), the shard's authority
//! stops, and after a restart only the durable lease is there.
#![cfg(feature = "fault-injection")]

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{ServerBuilder, TempDir};
use leasequery::proto::codes::v4msg;
use leasequery::proto::v4::{self, ClientId, V4Option};
use leasequery::proto::v6::{Message, V6Option};

/// A DHCPV4-QUERY (RFC 7341 §6.2) carrying `v4`, U flag clear.
fn query(v4: Vec<u8>) -> Vec<u8> {
    leasequery::lwb4::dhcpv4_query(v4, false)
}

fn v4msg_for(n: u32, t: u8, extra: Vec<V4Option>) -> Vec<u8> {
    let mut m = v4::Message::new(1, t, n);
    m.set_hw_addr(1, &[2, 0, 0, 0, 0, n as u8]).unwrap();
    m.options.push(V4Option::ClientId(ClientId::Rfc4361 {
        iaid: 1,
        duid: [&[0u8, 3, 0, 1, 2, 0][..], &n.to_be_bytes()].concat(),
    }));
    m.options
        .push(V4Option::ParameterRequestList(vec![1, 3, 51, 54]));
    m.options.extend(extra);
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn exchange(sock: &UdpSocket, to: SocketAddr, v4: Vec<u8>) -> Option<v4::Message> {
    sock.send_to(&query(v4), to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let r = Message::decode(&buf[..n]).ok()?;
    r.options.iter().find_map(|o| match o {
        V6Option::Dhcpv4Msg(b) => v4::Message::decode(b).ok(),
        _ => None,
    })
}

/// DISCOVER then REQUEST for client `n`: (the offered address, the ACK's address if any).
fn dora(sock: &UdpSocket, to: SocketAddr, n: u32) -> (Ipv4Addr, Option<Ipv4Addr>) {
    let offer = exchange(sock, to, v4msg_for(n, v4msg::DISCOVER, vec![])).expect("an OFFER");
    assert_eq!(offer.message_type(), Some(v4msg::OFFER));
    let sid = match offer.option(54) {
        Some(V4Option::ServerId(a)) => *a,
        other => panic!("no server id: {other:?}"),
    };
    let ack = exchange(
        sock,
        to,
        v4msg_for(
            n,
            v4msg::REQUEST,
            vec![V4Option::RequestedIp(offer.yiaddr), V4Option::ServerId(sid)],
        ),
    );
    let acked = ack
        .filter(|m| m.message_type() == Some(v4msg::ACK))
        .map(|m| m.yiaddr);
    (offer.yiaddr, acked)
}

/// The addresses a DHCPv4 bulk query for all addresses reports DHCPLEASEACTIVE.
fn active(srv: &common::Server) -> HashSet<Ipv4Addr> {
    let q = v4::Message::new(1, v4msg::BULKLEASEQUERY, 7);
    let mut bytes = Vec::new();
    q.encode(&mut bytes).unwrap();
    let mut c = srv.connect4();
    c.send(&bytes);
    let mut out = HashSet::new();
    loop {
        let m = v4::Message::decode(&c.recv().expect("bulk stream")).unwrap();
        match m.message_type() {
            Some(t) if t == v4msg::LEASEQUERYDONE => return out,
            Some(t) if t == v4msg::LEASEACTIVE => {
                out.insert(m.ciaddr);
            }
            _ => {}
        }
    }
}

#[test]
fn a_failed_journal_write_leaves_the_table_as_it_was() {
    let data = TempDir::new("journal-fault");
    let dir = data.path().join("data");
    let mut srv = ServerBuilder::new()
        .shards(1)
        .data_dir(&dir)
        .env("LEASEQUERYD_FAULT_JOURNAL_FAIL_AFTER", "1")
        .start();
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let (_, first) = dora(&sock, srv.dhcp4o6, 1);
    let first = first.expect("the first lease is acknowledged (its journal write succeeds)");
    // The second lease's journal write fails: no ACK, and the table does not hold it.
    let (offered, acked) = dora(&sock, srv.dhcp4o6, 2);
    assert_eq!(
        acked, None,
        "acknowledged although its journal write failed"
    );
    assert_ne!(offered, first);
    assert_eq!(
        active(&srv),
        HashSet::from([first]),
        "the table holds a lease that is not durable"
    );
    // The authority of the failed shard answers nothing more (not even an OFFER).
    assert!(exchange(&sock, srv.dhcp4o6, v4msg_for(3, v4msg::DISCOVER, vec![])).is_none());
    assert_eq!(active(&srv), HashSet::from([first]));
    let st = srv.terminate().expect("exits");
    let log = srv.log();
    assert!(st.success(), "{log}");
    assert!(log.contains("journal commit failed"), "{log}");
    assert!(log.contains("undone=1"), "{log}");
    assert!(common::log_counter(&log, "journal_failures") >= 1, "{log}");
    assert_eq!(
        common::log_counter(&log, "dhcp4o6_dropped_journal_failed"),
        1,
        "{log}"
    );

    // After a restart only the durable lease is there, and the second client gets its lease.
    let srv = ServerBuilder::new().shards(1).data_dir(&dir).start();
    assert_eq!(active(&srv), HashSet::from([first]));
    let (_, again) = dora(&sock, srv.dhcp4o6, 2);
    let again = again.expect("acknowledged once the journal works");
    assert_eq!(active(&srv), HashSet::from([first, again]));
}

/// Issue 18 part 1, the feed's side: with `data_dir` a fed change is applied only once its
/// journal record is durable. Every journal write failing (`FAIL_AFTER=0`), a fed line is
/// logged as a journal failure and never reaches the table (a bulk query does not return it);
/// the server goes on serving. A restart without the fault reads the feed file again and the
/// binding is then journaled and served.
#[test]
fn a_fed_change_whose_journal_write_fails_is_not_applied() {
    let dir = TempDir::new("feed-fault");
    let data = dir.path().join("data");
    let feed = dir.path().join("feed.jsonl");
    std::fs::write(
        &feed,
        "{\"ipv4\":\"10.7.0.1\",\"chaddr\":\"02:00:0a:07:00:01\",\"state\":\"active\",\
         \"cltt\":1767225600,\"expires\":1900000000}\n",
    )
    .unwrap();
    let start = |fault: bool| {
        let mut b = ServerBuilder::new()
            .data_dir(&data)
            .arg("--no-authority")
            .arg("--feed")
            .arg(feed.display().to_string());
        if fault {
            b = b.env("LEASEQUERYD_FAULT_JOURNAL_FAIL_AFTER", "0");
        }
        b.start()
    };
    let fed: Ipv4Addr = "10.7.0.1".parse().unwrap();
    let mut srv = start(true);
    let log = srv
        .log_when(Duration::from_secs(20), |l| {
            l.contains("feed: journal failed")
        })
        .unwrap_or_else(|| panic!("no feed journal failure logged:\n{}", srv.log()));
    assert!(
        log.contains("fault injection: journal write fails"),
        "{log}"
    );
    assert!(
        !active(&srv).contains(&fed),
        "a fed change that is not durable must not be served"
    );
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );

    let mut srv = start(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !active(&srv).contains(&fed) {
        assert!(
            std::time::Instant::now() < deadline,
            "the fed binding never served after the restart:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );
    let r = leasequery::store::replay(&data, 2).unwrap();
    assert_eq!(r.v4_count(), 1, "durable after the restart");
}
