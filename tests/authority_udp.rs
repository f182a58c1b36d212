//! The DHCP4o6 lease authority over real loopback UDP (issue: "UDP 547 ... DHCPV4-QUERY"),
//! with the embedded demo setup: a DORA direct from `::1`, for a full and for a shared address,
//! a lease that survives a restart with `--data-dir`, the lease visible to bulk leasequery, and
//! scenario 26 (a bulk query type over UDP).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{ServerBuilder, TempDir};
use leasequery::proto::codes::{v4msg, v6msg, v6opt, v6status};
use leasequery::proto::v4::{self, ClientId, V4Option};
use leasequery::proto::v6::{Message, V6Option};

const DHCPV4_QUERY: u8 = 20;
const DHCPV4_RESPONSE: u8 = 21;

struct Client {
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
            sock,
            server,
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0x77, n],
            mac: [2, 0, 0, 0, 0x77, n],
            shared,
            softwire: format!("2001:db8:ff::{n:x}").parse().unwrap(),
        }
    }

    fn v4(&self, msg_type: u8, xid: u32, extra: Vec<V4Option>) -> Vec<u8> {
        let mut m = v4::Message::new(1, msg_type, xid);
        m.set_hw_addr(1, &self.mac).unwrap();
        m.options.push(V4Option::ClientId(ClientId::Rfc4361 {
            iaid: 1,
            duid: self.duid.clone(),
        }));
        let mut prl = vec![1, 3, 51, 54];
        if self.shared {
            prl.push(159);
        }
        m.options.push(V4Option::ParameterRequestList(prl));
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
        self.sock.send_to(&out, self.server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        let r = Message::decode(&buf[..n]).unwrap();
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

fn bulk_v4_all(xid: u32) -> Vec<u8> {
    let mut m = v4::Message::new(1, v4msg::BULKLEASEQUERY, xid);
    m.options
        .push(V4Option::ParameterRequestList(vec![51, 109, 159]));
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

/// Every (yiaddr, softwire source) a DHCPv4 bulk query of all addresses returns as ACTIVE.
fn active_leases(srv: &common::Server) -> Vec<(Ipv4Addr, Option<Ipv6Addr>)> {
    let mut c = srv.connect4();
    c.send(&bulk_v4_all(0x55));
    let mut out = Vec::new();
    loop {
        let m = v4::Message::decode(&c.recv().expect("a message")).unwrap();
        match m.message_type() {
            Some(t) if t == v4msg::LEASEQUERYDONE => break,
            Some(t) if t == v4msg::LEASEACTIVE => {
                let sw = match m.option(109) {
                    Some(V4Option::Dhcp4o6SoftwireSource(a)) => Some(*a),
                    _ => None,
                };
                out.push((m.ciaddr, sw));
            }
            _ => {}
        }
    }
    out.sort();
    out
}

#[test]
fn a_lease_survives_a_restart_with_a_data_dir_and_bulk_leasequery_sees_it() {
    let data = TempDir::new("authority-data");
    let dir = data.path().display().to_string();
    let mut srv = ServerBuilder::new()
        .arg("--data-dir")
        .arg(dir.clone())
        .start();
    let c = Client::new(srv.dhcp4o6, 9, true);
    let ack = c.dora(0x9000);
    assert_eq!(
        active_leases(&srv),
        vec![(ack.yiaddr, Some(c.softwire))],
        "bulk leasequery lists the new lease"
    );
    srv.kill(); // SIGKILL: only what the journal made durable survives.
    let srv = ServerBuilder::new().arg("--data-dir").arg(dir).start();
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
