//! Active leasequery under load, over loopback: a subscriber that stops reading is terminated
//! (send timeout) while 10 others receive every change; disconnect cleanup (the subscriber
//! gauge returns to 0); a requestor that bulk-loads and then follows active updates ends with
//! exactly the server's table after random churn.

mod active_common;
mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use active_common::*;
use common::Conn;
use leasequery::proto::codes::{v4msg, v4opt};
use leasequery::proto::v4::{self, V4Option};

/// Sums `name=value` over the per-shard counter lines of the shutdown log.
/// A requestor connection whose receive buffer is tiny, so the server's sends block soon.
fn stalled(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    s.into()
}

#[test]
fn a_stalled_subscriber_is_terminated_while_ten_others_get_every_change() {
    let mut env = Env::start(
        "active_backlog_bindings = 100000\nmax_connections = 20\n",
        None,
    );
    let subs: Vec<Sub> = (0..10).map(|i| Sub::v4_ready(&env, 0x100 + i)).collect();
    let mut slow = stalled(env.srv.lq4);
    {
        use std::io::Write;
        let q = active4(0x999, None);
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&q);
        slow.write_all(&f).unwrap();
    }
    // One more subscriber that goes away: its subscription is cleaned up.
    let gone = Sub::v4(&env, 0x777, None);
    std::thread::sleep(Duration::from_millis(300));
    drop(gone);

    // 20k distinct bindings, about 5.6 MB of updates per subscriber: more than the stalled
    // connection's socket buffers hold.
    const N: u32 = 20_000;
    let now = unix_now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(5000) {
        env.append(
            &chunk
                .iter()
                .map(|&i| v4_line(i, "active", now))
                .collect::<Vec<_>>(),
        );
    }
    // Every reading subscriber reads in its own thread (a subscriber that is not read would be
    // a stalled one).
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let all: Vec<u32> = (0..N).collect();
                let got = s.until_seen(&all);
                let keys: HashSet<u32> = got.iter().map(|(k, _)| *k).collect();
                assert_eq!(
                    keys.len(),
                    N as usize,
                    "every change reached a reading subscriber"
                );
                s
            })
        })
        .collect();
    let mut subs: Vec<Sub> = Vec::new();
    for h in readers {
        match h.join() {
            Ok(s) => subs.push(s),
            Err(_) => {
                env.srv.signal("TERM");
                env.srv.wait_exit(Duration::from_secs(15));
                panic!("a reading subscriber failed; log:\n{}", env.srv.log());
            }
        }
    }
    // The stalled subscriber is closed after the send timeout (2 s; wait past it): reading now
    // drains what the socket held, then the close (or a reset).
    std::thread::sleep(Duration::from_secs(3));
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut closed = false;
    let mut buf = vec![0u8; 65536];
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        use std::io::Read;
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the stalled subscriber was closed");
    // The ten others still receive new changes.
    env.append(&[v4_line(N + 1, "active", now)]);
    for s in &mut subs {
        assert_eq!(s.until_seen(&[N + 1]), vec![(N + 1, true)]);
    }
    env.srv.signal("TERM");
    env.srv.wait_exit(Duration::from_secs(15)).expect("exits");
    let log = env.srv.log();
    assert_eq!(common::log_counter(&log, "active_started"), 12, "{log}");
    assert_eq!(
        common::log_counter(&log, "active_terminated_send_timeout")
            + common::log_counter(&log, "active_terminated_backlog"),
        1,
        "{log}"
    );
    assert_eq!(common::log_counter(&log, "active_ended_peer"), 1, "{log}");
    assert_eq!(
        common::log_counter(&log, "active_terminated_shutdown"),
        10,
        "{log}"
    );
    // The gauge is back to 0 on every shard (zero counters are not logged).
    assert_eq!(common::log_counter(&log, "active_subscribers"), 0, "{log}");
    assert!(
        common::log_counter(&log, "active_updates_sent") >= 10 * u64::from(N),
        "{log}"
    );
}

#[test]
fn the_backlog_bound_terminates_a_stalled_subscriber() {
    // A small backlog bound and a long send timeout: only the bound can end it.
    let mut env = Env::start(
        "active_backlog_bindings = 2000\nactive_send_timeout = 120\n",
        None,
    );
    let mut good = Sub::v4_ready(&env, 0x1);
    let mut slow = stalled(env.srv.lq4);
    {
        use std::io::Write;
        let q = active4(0x2, None);
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&q);
        slow.write_all(&f).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let now = unix_now();
    // Batches of 1000 (below the bound) until the stalled one is over it.
    let mut next = 0u32;
    for _ in 0..40 {
        let batch: Vec<u32> = (next..next + 1000).collect();
        next += 1000;
        env.append(
            &batch
                .iter()
                .map(|&i| v4_line(i, "active", now))
                .collect::<Vec<_>>(),
        );
        good.until_seen(&batch);
    }
    env.srv.signal("TERM");
    env.srv.wait_exit(Duration::from_secs(15)).expect("exits");
    let log = env.srv.log();
    assert_eq!(
        common::log_counter(&log, "active_terminated_backlog"),
        1,
        "{log}"
    );
    assert_eq!(
        common::log_counter(&log, "active_terminated_shutdown"),
        1,
        "{log}"
    );
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// The requestor's view of one binding: message type and dhcp-state.
type Table = BTreeMap<Ipv4Addr, (u8, Option<u8>)>;

fn apply(table: &mut Table, m: &v4::Message) {
    let state = m.options.iter().find_map(|o| match o {
        V4Option::DhcpState(s) => Some(*s),
        _ => None,
    });
    if let Some(t) = m.message_type() {
        table.insert(m.ciaddr, (t, state));
    }
}

/// A whole v4 bulk query (all bindings, PRL 156): the table and the DONE's base-time.
fn bulk(c: &mut Conn, xid: u32) -> (Table, u32) {
    let mut q = v4::Message::new(1, v4msg::BULKLEASEQUERY, xid);
    q.options
        .push(V4Option::ParameterRequestList(vec![v4opt::DHCP_STATE]));
    c.send(&encode4(&q));
    let mut t = Table::new();
    loop {
        let m = v4::Message::decode(&c.recv().expect("bulk stream")).unwrap();
        assert_eq!(m.xid, xid);
        if m.message_type() == Some(v4msg::LEASEQUERYDONE) {
            let base = m
                .options
                .iter()
                .find_map(|o| match o {
                    V4Option::BaseTime(b) => Some(*b),
                    _ => None,
                })
                .expect("DONE has base-time");
            return (t, base);
        }
        apply(&mut t, &m);
    }
}

fn churn(env: &Env, rng: &mut Rng, n: usize, pool: u32) {
    let states = ["active", "released", "expired", "active"];
    let now = unix_now();
    let lines: Vec<String> = (0..n)
        .map(|_| {
            let i = rng.below(pool);
            let s = states[rng.below(4) as usize];
            v4_line(i, s, now - rng.below(1000))
        })
        .collect();
    env.append(&lines);
}

#[test]
fn bulk_load_then_follow_ends_with_the_servers_table() {
    const POOL: u32 = 400;
    let import: String = (0..200)
        .map(|i| v4_line(i, "active", 1_800_000_000) + "\n")
        .collect();
    let env = Env::start("", Some(import));
    // The history starts a second after the import: let it begin.
    std::thread::sleep(Duration::from_millis(1200));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    churn(&env, &mut rng, 300, POOL);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = env.srv.connect4();
    let (mut table, base) = bulk(&mut c, 0x10);
    assert!(table.len() >= 200);
    churn(&env, &mut rng, 300, POOL);
    let mut s = Sub::v4(&env, 0x20, Some(base));
    churn(&env, &mut rng, 300, POOL);
    // A sentinel binding, last: once it arrives (and catch-up is complete) the requestor has
    // seen everything before it.
    let sentinel = 100_000u32;
    env.append(&[v4_line(sentinel, "active", unix_now())]);
    let (mut complete, mut sentinel_seen) = (false, false);
    while !(complete && sentinel_seen) {
        assert!(
            std::time::Instant::now() < s.deadline,
            "catch-up never completed"
        );
        let raw = s.c.recv().expect("open");
        let m = v4::Message::decode(&raw).unwrap();
        match m.message_type() {
            Some(v4msg::LEASEQUERYSTATUS) => {
                let code = m.options.iter().find_map(|o| match o {
                    V4Option::StatusCode { code, .. } => Some(*code),
                    _ => None,
                });
                match code {
                    Some(7) => complete = true,
                    Some(6) => {}
                    other => panic!("unexpected status {other:?}"),
                }
            }
            _ => {
                if m.ciaddr == addr(sentinel) {
                    sentinel_seen = true;
                }
                apply(&mut table, &m);
            }
        }
    }
    let mut c2 = env.srv.connect4();
    let (server, _) = bulk(&mut c2, 0x30);
    assert_eq!(table, server, "the requestor's table equals the server's");
}
