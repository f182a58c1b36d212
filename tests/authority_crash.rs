//! Crash safety of the lease journal (issue: "a test drives thousands of DORA exchanges, kills
//! the server with SIGKILL at random moments several times, restarts it, and checks that every
//! lease whose DHCPACK the client received is present with the same address, PSID and softwire
//! source, and that no address/PSID is leased twice").

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerBuilder, TempDir};
use leasequery::proto::codes::v4msg;
use leasequery::proto::v4::{self, ClientId, V4Option};
use leasequery::proto::v6::{Message, V6Option};

/// What a client holds: (address, PSID, softwire source).
type Lease = (Ipv4Addr, Option<u16>, Ipv6Addr);

/// A DHCPV4-QUERY (RFC 7341 §6.2) carrying `v4`, U flag clear.
fn query(v4: Vec<u8>) -> Vec<u8> {
    leasequery::lwb4::dhcpv4_query(v4, false)
}

fn v4msg_for(n: u32, t: u8, xid: u32, extra: Vec<V4Option>) -> Vec<u8> {
    let mut m = v4::Message::new(1, t, xid);
    m.set_hw_addr(
        1,
        &[
            2,
            0,
            (n >> 24) as u8,
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ],
    )
    .unwrap();
    m.options.push(V4Option::ClientId(ClientId::Rfc4361 {
        iaid: 1,
        duid: [&[0u8, 3, 0, 1, 2, 0][..], &n.to_be_bytes()].concat(),
    }));
    // Every other client asks for a shared address (PSIDs).
    let mut prl = vec![1, 3, 51, 54];
    if n % 2 == 0 {
        prl.push(159);
    }
    m.options.push(V4Option::ParameterRequestList(prl));
    m.options.extend(extra);
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn exchange(sock: &UdpSocket, to: SocketAddr, v4: Vec<u8>) -> Option<v4::Message> {
    sock.send_to(&query(v4), to).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let r = Message::decode(&buf[..n]).ok()?;
    r.options.iter().find_map(|o| match o {
        V6Option::Dhcpv4Msg(b) => v4::Message::decode(b).ok(),
        _ => None,
    })
}

/// One DORA for client `n`; the lease when the ACK arrived.
fn dora(sock: &UdpSocket, to: SocketAddr, n: u32) -> Option<Lease> {
    let offer = exchange(sock, to, v4msg_for(n, v4msg::DISCOVER, n, vec![]))?;
    if offer.message_type() != Some(v4msg::OFFER) {
        return None;
    }
    let sid = match offer.option(54) {
        Some(V4Option::ServerId(a)) => *a,
        _ => return None,
    };
    let sw: Ipv6Addr = format!("2001:db8:ff::{:x}:{:x}", n >> 16, n & 0xffff)
        .parse()
        .unwrap();
    let ack = exchange(
        sock,
        to,
        v4msg_for(
            n,
            v4msg::REQUEST,
            n,
            vec![
                V4Option::RequestedIp(offer.yiaddr),
                V4Option::ServerId(sid),
                V4Option::Dhcp4o6SoftwireSource(sw),
            ],
        ),
    )?;
    if ack.message_type() != Some(v4msg::ACK) {
        return None;
    }
    let psid = match ack.option(159) {
        Some(V4Option::V4PortParams(p)) => Some(p.psid),
        _ => None,
    };
    Some((ack.yiaddr, psid, sw))
}

/// Every ACTIVE lease the server reports over DHCPv4 bulk leasequery (all addresses).
fn server_leases(srv: &common::Server) -> Vec<Lease> {
    let mut q = v4::Message::new(1, v4msg::BULKLEASEQUERY, 7);
    q.options
        .push(V4Option::ParameterRequestList(vec![109, 159]));
    let mut bytes = Vec::new();
    q.encode(&mut bytes).unwrap();
    let mut c = srv.connect4();
    c.send(&bytes);
    let mut out = Vec::new();
    loop {
        let m = v4::Message::decode(&c.recv().expect("bulk stream")).unwrap();
        match m.message_type() {
            Some(t) if t == v4msg::LEASEQUERYDONE => return out,
            Some(t) if t == v4msg::LEASEACTIVE => {
                let psid = match m.option(159) {
                    Some(V4Option::V4PortParams(p)) => Some(p.psid),
                    _ => None,
                };
                let sw = match m.option(109) {
                    Some(V4Option::Dhcp4o6SoftwireSource(a)) => *a,
                    _ => Ipv6Addr::UNSPECIFIED,
                };
                out.push((m.ciaddr, psid, sw));
            }
            _ => {}
        }
    }
}

#[test]
fn acknowledged_leases_survive_sigkill_and_none_is_leased_twice() {
    let data = TempDir::new("crash");
    let dir = data.path().join("data").display().to_string();
    // Two /16 pools (full and shared, PSID length 4) so that no client meets an empty pool.
    let cfg = data.path().join("lqd.toml");
    let subnet = |name: &str, pool: &str, extra: &str| {
        format!(
            "[[authority.subnet]]\nname = \"{name}\"\nlinks = [\"::1/128\"]\npool = \"{pool}\"\n\
             lease_time = 3600\nrenew_time = 1800\nrebind_time = 3000\n{extra}"
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[authority]\n{}{}",
            subnet("full", "10.0.0.0/16", ""),
            subnet("shared", "10.1.0.0/16", "psid_len = 4\n")
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    // Client -> the lease its last ACK gave it.
    let ledger: Arc<Mutex<BTreeMap<u32, Lease>>> = Arc::default();
    let mut next_client = 0u32;
    let mut acked_total = 0usize;
    // A small pseudo-random sequence for the kill moments (no clock-seeded flakiness).
    let mut rnd = 0x2545_f491_4f6c_dd1du64;
    for round in 0..4 {
        let mut srv = ServerBuilder::new()
            .arg("--config")
            .arg(cfg.clone())
            .arg("--data-dir")
            .arg(dir.clone())
            .start();
        // After a restart every acknowledged lease is there, and no unit twice.
        let leases = server_leases(&srv);
        let units: HashSet<(Ipv4Addr, Option<u16>)> =
            leases.iter().map(|(a, p, _)| (*a, *p)).collect();
        assert_eq!(units.len(), leases.len(), "an (address, PSID) leased twice");
        let held: HashSet<Lease> = leases.iter().copied().collect();
        for (client, lease) in ledger.lock().unwrap().iter() {
            assert!(
                held.contains(lease),
                "round {round}: client {client}'s acknowledged lease {lease:?} is missing"
            );
        }
        // Drive DORAs from 4 threads until a kill moment 300-900 ms away.
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        let kill_after = Duration::from_millis(300 + rnd % 600);
        let stop = Arc::new(AtomicBool::new(false));
        let to = srv.dhcp4o6;
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let (stop, ledger) = (stop.clone(), ledger.clone());
                let first = next_client + t * 100_000;
                std::thread::spawn(move || {
                    let sock = UdpSocket::bind("[::1]:0").unwrap();
                    sock.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let mut n = first;
                    let mut acked = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(l) = dora(&sock, to, n) {
                            ledger.lock().unwrap().insert(n, l);
                            acked += 1;
                        }
                        n += 1;
                    }
                    acked
                })
            })
            .collect();
        let t0 = Instant::now();
        std::thread::sleep(kill_after);
        srv.kill();
        stop.store(true, Ordering::Relaxed);
        let acked: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(
            acked > 0,
            "round {round}: no DORA completed in {:?}",
            t0.elapsed()
        );
        acked_total += acked;
        next_client += 4 * 100_000;
    }
    // The last check, after the fourth kill.
    let srv = ServerBuilder::new()
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(dir)
        .start();
    let leases = server_leases(&srv);
    let held: HashSet<Lease> = leases.iter().copied().collect();
    let units: HashSet<(Ipv4Addr, Option<u16>)> = leases.iter().map(|(a, p, _)| (*a, *p)).collect();
    assert_eq!(units.len(), leases.len(), "an (address, PSID) leased twice");
    let ledger = ledger.lock().unwrap();
    for (client, lease) in ledger.iter() {
        assert!(held.contains(lease), "client {client}: {lease:?} missing");
    }
    eprintln!(
        "{acked_total} acknowledged DORAs over 4 kills; {} leases held at the end",
        leases.len()
    );
    assert!(
        acked_total >= 1000,
        "only {acked_total} DORAs: not thousands"
    );
}
