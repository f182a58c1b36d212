//! RFC 7341 (DHCPv4-over-DHCPv6): the lease authority over real loopback UDP (issue: "UDP 547 ... DHCPV4-QUERY"),
//! with the embedded demo setup: a DORA direct from `::1`, for a full and for a shared address,
//! a lease that survives a restart with `--data-dir`, the lease visible to bulk leasequery, and
//! scenario 26 (a bulk query type over UDP).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common::{ServerBuilder, TempDir};
use leasequery::lwb4::RelayHop;
use leasequery::proto::codes::{v4msg, v6msg, v6opt, v6status};
use leasequery::proto::v4::{self, ClientId, V4Option};
use leasequery::proto::v6::{Message, V6Option};

const DHCPV4_QUERY: u8 = 20;
const DHCPV4_RESPONSE: u8 = 21;

struct Client {
    /// Relay-Forward hops the queries go through, innermost first (empty: direct).
    hops: Vec<RelayHop>,
    sock: UdpSocket,
    server: SocketAddr,
    duid: Vec<u8>,
    mac: [u8; 6],
    shared: bool,
    softwire: Ipv6Addr,
}

impl Client {
    fn new(server: SocketAddr, n: u8, shared: bool) -> Client {
        let sock = UdpSocket::bind("[::1]:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client {
            hops: Vec::new(),
            sock,
            server,
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0x77, n],
            mac: [2, 0, 0, 0, 0x77, n],
            shared,
            softwire: format!("2001:db8:ff::{n:x}").parse().unwrap(),
        }
    }

    /// The same client behind these relays (innermost first).
    fn via(mut self, hops: Vec<RelayHop>) -> Client {
        self.hops = hops;
        self
    }

    fn v4(&self, msg_type: u8, xid: u32, extra: Vec<V4Option>) -> Vec<u8> {
        self.v4_from(msg_type, xid, Ipv4Addr::UNSPECIFIED, extra)
    }

    /// A DHCPv4 message with `ciaddr` (renewing: the address held).
    fn v4_from(&self, msg_type: u8, xid: u32, ciaddr: Ipv4Addr, extra: Vec<V4Option>) -> Vec<u8> {
        let mut prl = vec![1, 3, 51, 54];
        if self.shared {
            prl.push(159);
        }
        self.v4_with(msg_type, xid, ciaddr, Some(prl), extra)
    }

    /// A DHCPv4 message with option 55 `prl` (none: no option 55, as in a RELEASE or DECLINE,
    /// RFC 2131 §4.4.6).
    fn v4_with(
        &self,
        msg_type: u8,
        xid: u32,
        ciaddr: Ipv4Addr,
        prl: Option<Vec<u8>>,
        extra: Vec<V4Option>,
    ) -> Vec<u8> {
        let mut m = v4::Message::new(1, msg_type, xid);
        m.ciaddr = ciaddr;
        m.set_hw_addr(1, &self.mac).unwrap();
        m.options.push(V4Option::ClientId(ClientId::Rfc4361 {
            iaid: 1,
            duid: self.duid.clone(),
        }));
        if let Some(prl) = prl {
            m.options.push(V4Option::ParameterRequestList(prl));
        }
        m.options.extend(extra);
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    }

    /// Sends a DHCPV4-QUERY carrying `v4` and returns the DHCPv4 message of the response.
    fn exchange(&self, v4: Vec<u8>, unicast: bool) -> Option<v4::Message> {
        let q = Message {
            msg_type: DHCPV4_QUERY,
            xid: if unicast { 0x80_0000 } else { 0 },
            options: vec![V6Option::Dhcpv4Msg(v4)],
        };
        let mut out = Vec::new();
        q.encode(&mut out).unwrap();
        for (depth, hop) in self.hops.iter().enumerate() {
            out = hop.wrap(out);
            out[1] = depth as u8; // hop-count: relays the message passed before this one
        }
        self.sock.send_to(&out, self.server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        // The answer comes back through the same chain, outermost first, each hop's
        // link/peer addresses and Interface-ID echoed (RelayHop::unwrap checks them).
        let mut d = buf[..n].to_vec();
        for hop in self.hops.iter().rev() {
            d = hop.unwrap(&d).expect("a Relay-Reply for this hop");
        }
        let r = Message::decode(&d).unwrap();
        assert_eq!(r.msg_type, DHCPV4_RESPONSE);
        r.options.iter().find_map(|o| match o {
            V6Option::Dhcpv4Msg(b) => Some(v4::Message::decode(b).unwrap()),
            _ => None,
        })
    }

    /// DISCOVER, OFFER, REQUEST, ACK; returns the ACK.
    fn dora(&self, xid: u32) -> v4::Message {
        let offer = self
            .exchange(self.v4(v4msg::DISCOVER, xid, vec![]), false)
            .expect("an OFFER");
        assert_eq!(offer.message_type(), Some(v4msg::OFFER));
        assert_eq!(offer.xid, xid);
        let server_id = match offer.option(54) {
            Some(V4Option::ServerId(a)) => *a,
            o => panic!("OFFER without server id: {o:?}"),
        };
        let req = self.v4(
            v4msg::REQUEST,
            xid + 1,
            vec![
                V4Option::RequestedIp(offer.yiaddr),
                V4Option::ServerId(server_id),
                V4Option::Dhcp4o6SoftwireSource(self.softwire),
            ],
        );
        let ack = self.exchange(req, false).expect("an ACK");
        assert_eq!(ack.message_type(), Some(v4msg::ACK), "{ack:?}");
        assert_eq!(ack.yiaddr, offer.yiaddr);
        ack
    }
}

fn in_net(a: Ipv4Addr, net: [u8; 3]) -> bool {
    a.octets()[..3] == net
}

#[test]
fn dora_direct_full_and_shared_addresses_with_the_softwire_source_echoed() {
    let srv = ServerBuilder::new().start();
    let full = Client::new(srv.dhcp4o6, 1, false).dora(0x1000);
    assert!(in_net(full.yiaddr, [192, 0, 2]), "{:?}", full.yiaddr);
    assert!(
        full.option(159).is_none(),
        "no port set for a client without 159"
    );
    let a = Client::new(srv.dhcp4o6, 2, true);
    let b = Client::new(srv.dhcp4o6, 3, true);
    let (aa, ba) = (a.dora(0x2000), b.dora(0x3000));
    for ack in [&aa, &ba] {
        assert!(in_net(ack.yiaddr, [198, 51, 100]), "{:?}", ack.yiaddr);
        assert!(matches!(
            ack.option(109),
            Some(V4Option::Dhcp4o6SoftwireSource(_))
        ));
    }
    let pp = |m: &v4::Message| match m.option(159) {
        Some(V4Option::V4PortParams(p)) => (m.yiaddr, p.psid),
        o => panic!("a shared lease carries 159: {o:?}"),
    };
    assert_ne!(pp(&aa), pp(&ba), "two clients never share (IPv4, PSID)");
}

/// Sends one DHCPv4 bulk leasequery (PRL `prl`, then `extra`) and returns every reply before
/// its DHCPLEASEQUERYDONE, each checked to carry the query's xid.
fn bulk_v4(
    srv: &crate::common::Server,
    xid: u32,
    prl: Vec<u8>,
    extra: Vec<V4Option>,
) -> Vec<v4::Message> {
    let mut m = v4::Message::new(1, v4msg::BULKLEASEQUERY, xid);
    m.options.push(V4Option::ParameterRequestList(prl));
    m.options.extend(extra);
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    let mut c = srv.connect4();
    c.send(&out);
    let mut got = Vec::new();
    loop {
        let r = v4::Message::decode(&c.recv().expect("a message")).unwrap();
        assert_eq!(r.xid, xid);
        if r.message_type() == Some(v4msg::LEASEQUERYDONE) {
            return got;
        }
        got.push(r);
    }
}

/// Every (yiaddr, softwire source) a DHCPv4 bulk query of all addresses returns as ACTIVE.
fn active_leases(srv: &crate::common::Server) -> Vec<(Ipv4Addr, Option<Ipv6Addr>)> {
    let mut out: Vec<_> = bulk_v4(srv, 0x55, vec![51, 109, 159], vec![])
        .into_iter()
        .filter(|m| m.message_type() == Some(v4msg::LEASEACTIVE))
        .map(|m| {
            let sw = match m.option(109) {
                Some(V4Option::Dhcp4o6SoftwireSource(a)) => Some(*a),
                _ => None,
            };
            (m.ciaddr, sw)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_lease_survives_a_restart_with_a_data_dir_and_bulk_leasequery_sees_it() {
    let data = TempDir::new("authority-data");
    let mut srv = ServerBuilder::new().data_dir(data.path()).start();
    let c = Client::new(srv.dhcp4o6, 9, true);
    let ack = c.dora(0x9000);
    assert_eq!(
        active_leases(&srv),
        vec![(ack.yiaddr, Some(c.softwire))],
        "bulk leasequery lists the new lease"
    );
    srv.kill(); // SIGKILL: only what the journal made durable survives.
    let srv = ServerBuilder::new().data_dir(data.path()).start();
    assert_eq!(active_leases(&srv), vec![(ack.yiaddr, Some(c.softwire))]);
    // The restarted server knows the client: a renewal keeps the address.
    let c2 = Client {
        server: srv.dhcp4o6,
        ..c
    };
    let renew = c2.v4(
        v4msg::REQUEST,
        0x9100,
        vec![V4Option::Dhcp4o6SoftwireSource(c2.softwire)],
    );
    let mut renew_msg = v4::Message::decode(&renew).unwrap();
    renew_msg.ciaddr = ack.yiaddr;
    let mut bytes = Vec::new();
    renew_msg.encode(&mut bytes).unwrap();
    let r = c2.exchange(bytes, true).expect("an answer to the renewal");
    assert_eq!(r.message_type(), Some(v4msg::ACK), "{r:?}");
    assert_eq!(r.yiaddr, ack.yiaddr);
}

#[test]
fn s26_rfc5460_5_2_bulk_query_types_over_udp_are_not_allowed() {
    let srv = ServerBuilder::new().start();
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 0x2626,
        options: vec![
            V6Option::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0x26]),
            V6Option::LqQuery {
                query_type: 3,
                link_address: Ipv6Addr::UNSPECIFIED,
                options: vec![V6Option::RelayId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6])],
            },
        ],
    };
    let mut out = Vec::new();
    q.encode(&mut out).unwrap();
    sock.send_to(&out, srv.dhcp4o6).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a LEASEQUERY-REPLY");
    let r = Message::decode(&buf[..n]).unwrap();
    assert_eq!((r.msg_type, r.xid), (v6msg::LEASEQUERY_REPLY, 0x2626));
    let status = r.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(status, Some(v6status::NOT_ALLOWED));
    assert!(r.options.iter().any(|o| o.code() == v6opt::SERVERID));
}

/// Issue 4: DORA, a renewal (unicast, U flag) and a release through one and through two
/// Relay-Forward hops over loopback UDP, full and shared addresses: the answer comes back in
/// Relay-Replies through the same chain with every Interface-ID echoed, the subnet is chosen by
/// the innermost relay's link-address (demo setup: relayed links under 2001:db8::/32), and the
/// leases are what bulk leasequery then reports.
#[test]
fn dora_renew_release_through_one_and_two_relay_hops() {
    let srv = ServerBuilder::new().start();
    let hop = |link: &str, n: u8| RelayHop {
        link: link.parse().unwrap(),
        peer: format!("fe80::{n:x}").parse().unwrap(),
        interface_id: Some(vec![b'i', b'f', n]),
        relay_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0x52, n]),
        remote_id: Some((32473, vec![n])),
    };
    let chains = [
        vec![hop("2001:db8:1::", 1)],
        vec![hop("2001:db8:2::", 2), hop("2001:db8:ffff::", 3)],
    ];
    let mut held = Vec::new();
    let mut n = 40u8;
    for chain in &chains {
        for shared in [false, true] {
            n += 1;
            let c = Client::new(srv.dhcp4o6, n, shared).via(chain.clone());
            let xid = 0x7000 + u32::from(n) * 16;
            let ack = c.dora(xid);
            let net = if shared { [198, 51, 100] } else { [192, 0, 2] };
            assert!(
                in_net(ack.yiaddr, net),
                "{:?} via {} hops",
                ack.yiaddr,
                chain.len()
            );
            // RENEWING: unicast (U flag), ciaddr set, a new softwire source.
            let sw: Ipv6Addr = format!("2001:db8:fe::{n:x}").parse().unwrap();
            let renew = c.v4_from(
                v4msg::REQUEST,
                xid + 2,
                ack.yiaddr,
                vec![V4Option::Dhcp4o6SoftwireSource(sw)],
            );
            let r = c.exchange(renew, true).expect("an ACK to the renewal");
            assert_eq!(r.message_type(), Some(v4msg::ACK), "{r:?}");
            assert_eq!(r.yiaddr, ack.yiaddr);
            assert!(matches!(r.option(109), Some(V4Option::Dhcp4o6SoftwireSource(a)) if *a == sw));
            held.push((ack.yiaddr, Some(sw), c));
        }
    }
    let leases = active_leases(&srv);
    for (addr, sw, _) in &held {
        assert!(
            leases.contains(&(*addr, *sw)),
            "{addr} {sw:?} in {leases:?}"
        );
    }
    // RELEASE through the chain (no answer), then the lease is no longer ACTIVE.
    let (addr, sw, c) = held.pop().unwrap();
    let rel = c.v4_from(v4msg::RELEASE, 0x7fff, addr, vec![]);
    let q = Message {
        msg_type: DHCPV4_QUERY,
        xid: 0x80_0000,
        options: vec![V6Option::Dhcpv4Msg(rel)],
    };
    let mut out = Vec::new();
    q.encode(&mut out).unwrap();
    for (depth, hop) in c.hops.iter().enumerate() {
        out = hop.wrap(out);
        out[1] = depth as u8;
    }
    c.sock.send_to(&out, c.server).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while active_leases(&srv).contains(&(addr, sw)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the release was not taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = active_leases(&srv);
    for (a, s, _) in &held {
        assert!(after.contains(&(*a, *s)), "the other leases stay");
    }
}

/// Issue 3, RFC 6926 §6.2 with no primary query ("all configured addresses", §8.3): with the
/// authority's pools, every pool address is listed exactly once: the leased ones (a full and a
/// shared address here) as DHCPLEASEACTIVE, every other one as DHCPLEASEUNASSIGNED with
/// dhcp-state AVAILABLE. A query with a time window lists bindings only (a never-leased address
/// has no time).
#[test]
fn all_configured_addresses_lists_every_pool_address_once() {
    let srv = ServerBuilder::new().start();
    let full = Client::new(srv.dhcp4o6, 61, false).dora(0x6100).yiaddr;
    let shared = Client::new(srv.dhcp4o6, 62, true).dora(0x6200).yiaddr;
    let pools = leasequery::authority::AuthorityConfig::demo()
        .validate()
        .unwrap()
        .subnets;
    let query = |xid: u32, extra: Vec<V4Option>| {
        let prl = vec![leasequery::proto::codes::v4opt::DHCP_STATE];
        bulk_v4(&srv, xid, prl, extra)
            .into_iter()
            .map(|r| {
                let state = match r.option(leasequery::proto::codes::v4opt::DHCP_STATE) {
                    Some(V4Option::DhcpState(s)) => Some(*s),
                    _ => None,
                };
                (r.ciaddr, r.message_type(), state)
            })
            .collect::<Vec<_>>()
    };
    let got = query(0x6300, vec![]);
    let mut count = std::collections::HashMap::new();
    for (a, _, _) in &got {
        *count.entry(*a).or_insert(0) += 1;
    }
    let mut expected = 0;
    for s in &pools {
        for a in u32::from(s.first)..=u32::from(s.last) {
            expected += 1;
            let a = Ipv4Addr::from(a);
            assert_eq!(count.get(&a), Some(&1), "{a} listed once");
        }
    }
    assert_eq!(got.len(), expected, "nothing but the pool addresses");
    for (a, t, state) in &got {
        if *a == full || *a == shared {
            assert_eq!(*t, Some(v4msg::LEASEACTIVE), "{a}");
            assert_eq!(*state, Some(2), "{a} ACTIVE");
        } else {
            assert_eq!(*t, Some(v4msg::LEASEUNASSIGNED), "{a}");
            assert_eq!(*state, Some(1), "{a} AVAILABLE");
        }
    }
    // With query-start-time: the two bindings only.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
        - 3600;
    let got = query(0x6301, vec![V4Option::QueryStartTime(since)]);
    let mut addrs: Vec<Ipv4Addr> = got.iter().map(|g| g.0).collect();
    addrs.sort();
    let mut want = vec![full, shared];
    want.sort();
    assert_eq!(addrs, want);
}

/// Issue 13 item 1 (the usual lw4o6 layout: a link with only a shared pool, `shared_only`):
/// a DHCPRELEASE and a DHCPDECLINE, which carry no option 55 (RFC 2131 §4.4.6), end the leases
/// they name; a bulk query for all configured addresses then lists those (IPv4, PSID) units as
/// DHCPLEASEUNASSIGNED, RELEASED and ABANDONED. Before the fix both were dropped
/// (`drop_needs_159`) and the units stayed ACTIVE.
#[test]
fn release_and_decline_on_a_shared_only_link_end_the_leases() {
    let dir = TempDir::new("shared-only");
    let cfg = dir.path().join("lqd.toml");
    std::fs::write(
        &cfg,
        "[authority]\nserver_id = \"192.0.2.1\"\n[[authority.subnet]]\nname = \"lw4o6\"\n\
         links = [\"::1/128\"]\npool = \"198.51.100.0/29\"\nlease_time = 3600\n\
         renew_time = 1800\nrebind_time = 3000\npsid_len = 4\nshared_only = true\n",
    )
    .unwrap();
    let mut srv = ServerBuilder::new()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let unit = |m: &v4::Message| match m.option(159) {
        Some(V4Option::V4PortParams(p)) => (m.yiaddr, p.psid),
        o => panic!("a shared lease carries 159: {o:?}"),
    };
    let (a, b, k) = (
        Client::new(srv.dhcp4o6, 91, true),
        Client::new(srv.dhcp4o6, 92, true),
        Client::new(srv.dhcp4o6, 93, true),
    );
    let (ua, ub, uk) = (
        unit(&a.dora(0x9100)),
        unit(&b.dora(0x9200)),
        unit(&k.dora(0x9300)),
    );
    // (IPv4, PSID) -> (message type, dhcp-state) of a bulk query for all configured addresses.
    let states = || {
        let prl = vec![leasequery::proto::codes::v4opt::DHCP_STATE, 159];
        bulk_v4(&srv, 0x9400, prl, vec![])
            .into_iter()
            .filter_map(|r| {
                let psid = match r.option(159) {
                    Some(V4Option::V4PortParams(p)) => p.psid,
                    _ => return None,
                };
                let state = match r.option(leasequery::proto::codes::v4opt::DHCP_STATE) {
                    Some(V4Option::DhcpState(s)) => *s,
                    o => panic!("no dhcp-state: {o:?}"),
                };
                Some(((r.ciaddr, psid), (r.message_type(), state)))
            })
            .collect::<std::collections::HashMap<_, _>>()
    };
    let before = states();
    for u in [ua, ub, uk] {
        assert_eq!(
            before.get(&u),
            Some(&(Some(v4msg::LEASEACTIVE), 2)),
            "{u:?}"
        );
    }
    let sid = V4Option::ServerId(Ipv4Addr::new(192, 0, 2, 1));
    send_only(
        &a,
        a.v4_with(v4msg::RELEASE, 0x9101, ua.0, None, vec![sid.clone()]),
    );
    send_only(
        &b,
        b.v4_with(
            v4msg::DECLINE,
            0x9201,
            Ipv4Addr::UNSPECIFIED,
            None,
            vec![V4Option::RequestedIp(ub.0), sid],
        ),
    );
    // Neither message has an answer: wait (bounded) until the bulk query shows both.
    let want_a = (Some(v4msg::LEASEUNASSIGNED), 4);
    let want_b = (Some(v4msg::LEASEUNASSIGNED), 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = states();
        if now.get(&ua) == Some(&want_a) && now.get(&ub) == Some(&want_b) {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "release / decline not taken: {:?} {:?}; log:\n{}",
            now.get(&ua),
            now.get(&ub),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        after.get(&uk),
        Some(&(Some(v4msg::LEASEACTIVE), 2)),
        "the other lease stays"
    );
    srv.terminate();
    let log = srv.log();
    let total = |name: &str| -> u64 {
        log.match_indices(name)
            .filter_map(|(i, m)| {
                let rest = &log[i + m.len()..];
                rest[..rest.find(|ch: char| !ch.is_ascii_digit())?]
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(total(" releases: "), 1, "{log}");
    assert_eq!(total(" declines: "), 1, "{log}");
    assert!(log.contains("drop_needs_159: 0"), "{log}");
    assert_eq!(total("drop_needs_159: "), 0, "{log}");
}

/// Issue 13 item 6: `lease_time = 4294967295` is an infinite lease (RFC 2131 §3.3): the OFFER
/// and ACK carry option 51 = 0xffffffff, and so does a bulk query's DHCPLEASEACTIVE (RFC 4388
/// §6.4.2), where it was the seconds left to 2106 before the fix.
#[test]
fn an_infinite_lease_is_reported_infinite_by_bulk_leasequery() {
    let dir = TempDir::new("infinite");
    let cfg = dir.path().join("lqd.toml");
    std::fs::write(
        &cfg,
        "[authority]\nserver_id = \"192.0.2.1\"\n[[authority.subnet]]\nname = \"forever\"\n\
         links = [\"::1/128\"]\npool = \"192.0.2.0/28\"\nlease_time = 4294967295\n\
         renew_time = 1800\nrebind_time = 3000\n",
    )
    .unwrap();
    let srv = ServerBuilder::new()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let ack = Client::new(srv.dhcp4o6, 95, false).dora(0x9500);
    assert_eq!(ack.option(51), Some(&V4Option::LeaseTime(u32::MAX)));
    assert_eq!(ack.option(58), Some(&V4Option::RenewalTime(1800)));
    let got: Vec<_> = bulk_v4(&srv, 0x9501, vec![51], vec![])
        .into_iter()
        .filter(|m| m.message_type() == Some(v4msg::LEASEACTIVE))
        .map(|m| (m.ciaddr, m.option(51).cloned()))
        .collect();
    assert_eq!(got, vec![(ack.yiaddr, Some(V4Option::LeaseTime(u32::MAX)))]);
}

/// The shard (of `shards`) that owns a test client: option 61 in RFC 4361 form (type 255,
/// IAID 1, the DUID), through the library's client directory function.
fn shard_of(c: &Client, shards: usize) -> usize {
    let mut id = vec![255, 0, 0, 0, 1];
    id.extend_from_slice(&c.duid);
    leasequery::lease::shard_of_client(&id, shards)
}

/// Sends a DHCPV4-QUERY expecting no answer (RELEASE).
fn send_only(c: &Client, v4: Vec<u8>) {
    let q = Message {
        msg_type: DHCPV4_QUERY,
        xid: 0x80_0000,
        options: vec![V6Option::Dhcpv4Msg(v4)],
    };
    let mut out = Vec::new();
    q.encode(&mut out).unwrap();
    c.sock.send_to(&out, c.server).unwrap();
}

/// RFC 8539 §8.2 across shards: two clients owned by different shards ask for the same
/// softwire source (option 109). The second gets DHCPNAK (it has no active lease) and the
/// conflict is counted; once the first releases, the second gets it.
#[test]
fn rfc8539_8_2_softwire_source_is_unique_across_shards() {
    let mut srv = ServerBuilder::new().shards(2).start();
    let mut first = None;
    let mut second = None;
    for n in 100..200u8 {
        let c = Client::new(srv.dhcp4o6, n, false);
        match (shard_of(&c, 2), &first) {
            (0, None) => first = Some(c),
            (1, _) if second.is_none() => second = Some(c),
            _ => {}
        }
        if first.is_some() && second.is_some() {
            break;
        }
    }
    let a = first.unwrap();
    let mut b = second.unwrap();
    b.softwire = a.softwire;
    let ack = a.dora(0xa000);
    assert!(
        matches!(ack.option(109), Some(V4Option::Dhcp4o6SoftwireSource(s)) if *s == a.softwire)
    );
    // b: an offer, then a REQUEST with a's source: NAK.
    let offer = b
        .exchange(b.v4(v4msg::DISCOVER, 0xb000, vec![]), false)
        .expect("an OFFER");
    let req = b.v4(
        v4msg::REQUEST,
        0xb001,
        vec![
            V4Option::RequestedIp(offer.yiaddr),
            match offer.option(54) {
                Some(o @ V4Option::ServerId(_)) => o.clone(),
                o => panic!("OFFER without server id: {o:?}"),
            },
            V4Option::Dhcp4o6SoftwireSource(b.softwire),
        ],
    );
    let nak = b.exchange(req, false).expect("an answer");
    assert_eq!(nak.message_type(), Some(v4msg::NAK), "{nak:?}");
    assert_eq!(active_leases(&srv), vec![(ack.yiaddr, Some(a.softwire))]);
    // a releases; then b gets the source.
    send_only(&a, a.v4_from(v4msg::RELEASE, 0xa100, ack.yiaddr, vec![]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !active_leases(&srv).is_empty() {
        assert!(std::time::Instant::now() < deadline, "release not taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ack_b = b.dora(0xb100);
    assert!(
        matches!(ack_b.option(109), Some(V4Option::Dhcp4o6SoftwireSource(s)) if *s == a.softwire)
    );
    assert_eq!(active_leases(&srv), vec![(ack_b.yiaddr, Some(a.softwire))]);
    srv.terminate();
    let log = srv.log();
    let total = |name: &str| -> u64 {
        log.match_indices(name)
            .filter_map(|(i, m)| {
                let rest = &log[i + m.len()..];
                rest[..rest.find(|ch: char| !ch.is_ascii_digit())?]
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(total("softwire_conflicts: "), 1, "{log}");
    // One of the two clients lives away from the source's owner: its claims crossed shards.
    assert!(total("softwire_remote_claims: ") >= 1, "{log}");
}

/// One DHCPv4 bulk leasequery with this primary query (option 82 with one sub-option); every
/// LEASEACTIVE as (ciaddr, option 82 sub-options circuit-id, remote-id, relay-id).
#[allow(clippy::type_complexity)]
fn bulk_v4_by_82(
    srv: &crate::common::Server,
    xid: u32,
    sub: (u8, Vec<u8>),
) -> Vec<(Ipv4Addr, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>)> {
    let query = V4Option::RelayAgentInfo(v4::RelayAgentInfo {
        sub_options: vec![sub],
    });
    bulk_v4(srv, xid, vec![51, 82, 109], vec![query])
        .into_iter()
        .map(|r| {
            assert_eq!(r.message_type(), Some(v4msg::LEASEACTIVE));
            let info = match r.option(82) {
                Some(V4Option::RelayAgentInfo(i)) => i.clone(),
                o => panic!("no option 82: {o:?}"),
            };
            let own = |x: Option<&[u8]>| x.map(<[u8]>::to_vec);
            (
                r.ciaddr,
                own(info.circuit_id()),
                own(info.remote_id()),
                own(info.relay_id()),
            )
        })
        .collect()
}

/// Option 82 in the DHCPv4 message of a 4o6 DORA (relayed, so the v6 chain has its own
/// Remote-ID): the binding records 82's circuit-id, remote-id and relay-id (option 82 wins for
/// the v4 fields), a DHCPv4 bulk leasequery by remote-id and by relay-id (RFC 6926) finds it
/// and returns them in option 82, and so does the restarted server (journal replay).
#[test]
fn option_82_inside_the_4o6_message_is_recorded_and_queryable() {
    let data = TempDir::new("authority-82");
    let mut srv = ServerBuilder::new().data_dir(data.path()).start();
    let hop = RelayHop {
        link: "2001:db8:1::".parse().unwrap(),
        peer: "fe80::82".parse().unwrap(),
        interface_id: Some(b"if82".to_vec()),
        relay_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0x82, 6]),
        remote_id: Some((32473, b"v6-remote".to_vec())),
    };
    let c = Client::new(srv.dhcp4o6, 82, false).via(vec![hop]);
    let circuit = b"olt-1/2/3".to_vec();
    let remote = b"cpe-0082".to_vec();
    let relay = vec![0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0, 0, 0x82];
    let offer = c
        .exchange(c.v4(v4msg::DISCOVER, 0x8200, vec![]), false)
        .expect("an OFFER");
    let req = c.v4(
        v4msg::REQUEST,
        0x8201,
        vec![
            V4Option::RequestedIp(offer.yiaddr),
            offer.option(54).expect("server id").clone(),
            V4Option::Dhcp4o6SoftwireSource(c.softwire),
            V4Option::RelayAgentInfo(v4::RelayAgentInfo {
                sub_options: vec![
                    (1, circuit.clone()),
                    (2, remote.clone()),
                    (12, relay.clone()),
                ],
            }),
        ],
    );
    let ack = c.exchange(req, false).expect("an ACK");
    assert_eq!(ack.message_type(), Some(v4msg::ACK), "{ack:?}");
    let want = vec![(
        ack.yiaddr,
        Some(circuit.clone()),
        Some(remote.clone()),
        Some(relay.clone()),
    )];
    assert_eq!(bulk_v4_by_82(&srv, 0x8210, (2, remote.clone())), want);
    assert_eq!(bulk_v4_by_82(&srv, 0x8211, (12, relay.clone())), want);
    // The v6 chain's Remote-ID is not what the v4 binding answers to.
    assert!(bulk_v4_by_82(&srv, 0x8212, (2, b"v6-remote".to_vec())).is_empty());
    srv.kill();
    let srv = ServerBuilder::new().data_dir(data.path()).start();
    assert_eq!(bulk_v4_by_82(&srv, 0x8213, (2, remote)), want);
    assert_eq!(bulk_v4_by_82(&srv, 0x8214, (12, relay)), want);
}

/// After a restart with `--data-dir`, every shard claims its restored leases' softwire sources
/// at their owners before serving: with the source owned by the OTHER client's shard (so only
/// the restart's cross-shard registration tells that shard about it), that client is refused.
#[test]
fn softwire_claims_survive_a_restart_across_shards() {
    let data = TempDir::new("authority-sw-restart");
    let mut srv = ServerBuilder::new().data_dir(data.path()).start();
    let mut clients = (100..200u8).map(|n| Client::new(srv.dhcp4o6, n, false));
    let mut a = clients.find(|c| shard_of(c, 2) == 0).unwrap();
    let b = clients.find(|c| shard_of(c, 2) == 1).unwrap();
    // A source owned by b's shard.
    a.softwire = (1..)
        .map(|i: u16| Ipv6Addr::new(0x2001, 0xdb8, 0xee, 0, 0, 0, 0, i))
        .find(|s| leasequery::lease::shard_of_softwire(*s, 2) == 1)
        .unwrap();
    let ack = a.dora(0xc000);
    assert!(
        matches!(ack.option(109), Some(V4Option::Dhcp4o6SoftwireSource(s)) if *s == a.softwire)
    );
    srv.kill();
    let srv = ServerBuilder::new().data_dir(data.path()).start();
    let b = Client {
        server: srv.dhcp4o6,
        softwire: a.softwire,
        ..b
    };
    let offer = b
        .exchange(b.v4(v4msg::DISCOVER, 0xc100, vec![]), false)
        .expect("an OFFER");
    let req = b.v4(
        v4msg::REQUEST,
        0xc101,
        vec![
            V4Option::RequestedIp(offer.yiaddr),
            offer.option(54).expect("server id").clone(),
            V4Option::Dhcp4o6SoftwireSource(b.softwire),
        ],
    );
    let nak = b.exchange(req, false).expect("an answer");
    assert_eq!(nak.message_type(), Some(v4msg::NAK), "{nak:?}");
}
