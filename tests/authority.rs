//! The DHCP4o6 lease authority, sans-io: DHCPV4-QUERY datagrams built with the crate's owned
//! codecs, replies checked with the crate's decoders and cross-checked with dhcproto 0.15.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::rfc4361_client_id as cid;

use dhcproto::{v4 as dp, Decodable, Decoder};
use leasequery::authority::{client_shard, Authority, AuthorityConfig, Outcome, ValidConfig};
use leasequery::lease::{Change, ChangeKind, LeaseTable};
use leasequery::proto::codes::{dhcp_state, v4msg, v4opt, v6msg, v6opt};
use leasequery::proto::record::PortParams;
use leasequery::proto::v4::{ClientId, Message as V4Message, V4Option};
use leasequery::proto::v6::{Message as V6Message, RelayMessage, V6Option};
use proptest::prelude::*;

const NOW: u32 = 1_767_225_600;

fn src() -> Ipv6Addr {
    "::1".parse().unwrap()
}

/// A client's DHCPv4 message.
#[derive(Clone)]
struct C {
    n: u32,
    t: u8,
    shared: bool,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    ciaddr: Ipv4Addr,
    sw: Option<Ipv6Addr>,
    pp: Option<PortParams>,
    /// More options, as given (option 82 goes last on the wire).
    extra: Vec<V4Option>,
    /// No option 55 at all (a RELEASE or DECLINE must not carry one: RFC 2131 §4.4.6).
    no_prl: bool,
}

fn c(n: u32, t: u8) -> C {
    C {
        n,
        t,
        shared: false,
        requested: None,
        server: None,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        sw: None,
        pp: None,
        extra: Vec::new(),
        no_prl: false,
    }
}

fn v4(c: &C) -> Vec<u8> {
    let mut m = V4Message::new(1, c.t, 0x1000 + c.n);
    m.set_hw_addr(1, &[2, 0, 0, 0, (c.n >> 8) as u8, c.n as u8])
        .unwrap();
    m.ciaddr = c.ciaddr;
    m.options
        .push(V4Option::ClientId(ClientId::decode(&cid(c.n)).unwrap()));
    let mut prl = vec![1, 3, 51];
    if c.shared {
        prl.push(159);
    }
    if !c.no_prl {
        m.options.push(V4Option::ParameterRequestList(prl));
    }
    if let Some(a) = c.requested {
        m.options.push(V4Option::RequestedIp(a));
    }
    if let Some(a) = c.server {
        m.options.push(V4Option::ServerId(a));
    }
    if let Some(s) = c.sw {
        m.options.push(V4Option::Dhcp4o6SoftwireSource(s));
    }
    if let Some(p) = c.pp {
        m.options.push(V4Option::V4PortParams(p));
    }
    m.options.extend(c.extra.iter().cloned());
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn query(v4msg: Vec<u8>, unicast: bool, oro: &[u16]) -> Vec<u8> {
    let mut options = Vec::new();
    if !oro.is_empty() {
        options.push(V6Option::Oro(oro.to_vec()));
    }
    options.push(V6Option::Dhcpv4Msg(v4msg));
    let m = V6Message {
        msg_type: v6msg::DHCPV4_QUERY,
        xid: if unicast { 0x80_0000 } else { 0 },
        options,
    };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

/// Wraps in Relay-Forwards; `links[0]` is the innermost relay's link.
fn relay(mut inner: Vec<u8>, links: &[&str]) -> Vec<u8> {
    for (i, l) in links.iter().enumerate() {
        let r = RelayMessage {
            msg_type: v6msg::RELAY_FORW,
            hop_count: i as u8,
            link_address: l.parse().unwrap(),
            peer_address: format!("fe80::{}", i + 1).parse().unwrap(),
            options: vec![
                V6Option::InterfaceId(format!("if{i}").into_bytes()),
                V6Option::RelayId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, i as u8]),
                V6Option::RemoteId {
                    enterprise: 4491,
                    remote_id: vec![7, i as u8],
                },
                V6Option::RelayMsg(inner),
            ],
        };
        inner = Vec::new();
        r.encode(&mut inner).unwrap();
    }
    inner
}

struct Reply {
    v6: V6Message,
    v4: V4Message,
    dp: dp::Message,
}

/// Unwraps a reply down to the DHCPV4-RESPONSE, checking each Relay-Reply against `links`.
fn open(bytes: &[u8], links: &[&str]) -> Reply {
    let mut cur = bytes.to_vec();
    for (i, l) in links.iter().enumerate().rev() {
        let r = RelayMessage::decode(&cur).expect("relay-repl");
        assert_eq!(r.msg_type, v6msg::RELAY_REPL);
        assert_eq!(r.hop_count, i as u8);
        assert_eq!(r.link_address, l.parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            r.peer_address,
            format!("fe80::{}", i + 1).parse::<Ipv6Addr>().unwrap()
        );
        assert!(r
            .options
            .contains(&V6Option::InterfaceId(format!("if{i}").into_bytes())));
        cur = r
            .options
            .iter()
            .find_map(|o| match o {
                V6Option::RelayMsg(m) => Some(m.clone()),
                _ => None,
            })
            .expect("relay-msg");
    }
    let v6 = V6Message::decode(&cur).expect("response");
    assert_eq!(v6.msg_type, v6msg::DHCPV4_RESPONSE);
    assert_eq!(v6.xid, 0, "response flags are zero");
    let raw = v6
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::Dhcpv4Msg(m) => Some(m.clone()),
            _ => None,
        })
        .expect("option 87");
    let v4 = V4Message::decode(&raw).expect("v4");
    let dp = dp::Message::decode(&mut Decoder::new(&raw)).expect("dhcproto");
    assert_eq!(dp.xid(), v4.xid);
    Reply { v6, v4, dp }
}

struct Env {
    a: Authority,
    t: LeaseTable,
    changes: Vec<Change>,
}

impl Env {
    fn new(cfg: &ValidConfig) -> Env {
        Env {
            a: Authority::new(cfg, 0, 1),
            t: LeaseTable::new(),
            changes: Vec::new(),
        }
    }
    fn send(&mut self, dgram: &[u8], now: u32) -> Outcome {
        let o = self.a.handle(&mut self.t, dgram, src(), now);
        self.changes.extend(o.changes.iter().cloned());
        o
    }
    fn direct(&mut self, c: &C, unicast: bool, now: u32) -> Outcome {
        self.send(&query(v4(c), unicast, &[]), now)
    }
    /// DISCOVER + REQUEST; returns the ACK.
    fn dora(&mut self, cl: &C, now: u32) -> Reply {
        let o = self.direct(
            &C {
                t: v4msg::DISCOVER,
                ..cl.clone()
            },
            false,
            now,
        );
        assert!(o.changes.is_empty(), "an offer is not a change");
        let off = open(&o.reply.expect("offer"), &[]);
        assert_eq!(off.dp.opts().msg_type(), Some(dp::MessageType::Offer));
        let pp = off.v4.option(v4opt::V4_PORTPARAMS).map(|o| match o {
            V4Option::V4PortParams(p) => *p,
            _ => unreachable!(),
        });
        let req = C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            pp,
            ..cl.clone()
        };
        let o = self.direct(&req, false, now);
        let ack = open(&o.reply.expect("ack"), &[]);
        assert_eq!(
            ack.dp.opts().msg_type(),
            Some(dp::MessageType::Ack),
            "{:?}",
            ack.v4
        );
        assert_eq!(ack.v4.yiaddr, off.v4.yiaddr);
        ack
    }
}

fn server() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1)
}

fn demo() -> ValidConfig {
    AuthorityConfig::demo().validate().unwrap()
}

fn pp_of(m: &V4Message) -> Option<PortParams> {
    match m.option(v4opt::V4_PORTPARAMS) {
        Some(V4Option::V4PortParams(p)) => Some(*p),
        _ => None,
    }
}

fn sw_of(m: &V4Message) -> Option<Ipv6Addr> {
    match m.option(v4opt::DHCP4O6_S46_SADDR) {
        Some(V4Option::Dhcp4o6SoftwireSource(a)) => Some(*a),
        _ => None,
    }
}

#[test]
fn dora_renew_rebind_release_reboot_direct_full() {
    let mut e = Env::new(&demo());
    let ack = e.dora(&c(1, 0), NOW);
    let addr = ack.v4.yiaddr;
    assert!((Ipv4Addr::new(192, 0, 2, 2)..=Ipv4Addr::new(192, 0, 2, 254)).contains(&addr));
    assert_eq!(
        ack.dp.opts().get(dp::OptionCode::ServerIdentifier),
        Some(&dp::DhcpOption::ServerIdentifier(server()))
    );
    assert_eq!(
        ack.dp.opts().get(dp::OptionCode::AddressLeaseTime),
        Some(&dp::DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        ack.dp.opts().get(dp::OptionCode::ClientIdentifier),
        Some(&dp::DhcpOption::ClientIdentifier(cid(1)))
    );
    assert_eq!(pp_of(&ack.v4), None, "no 159 to a client that did not ask");
    assert_eq!(e.changes.len(), 1);
    assert_eq!(e.changes[0].kind(), ChangeKind::New);
    let r = e.t.get_v4(addr, None).expect("binding");
    assert_eq!(r.state, dhcp_state::ACTIVE);
    assert_eq!(r.client_id, Some(&cid(1)[..]));
    assert_eq!(r.expires, NOW + 3600);
    assert_eq!(r.v6.unwrap().client_src, src());

    // RENEWING (U = 1) and REBINDING (U = 0).
    for (unicast, t) in [(true, NOW + 1800), (false, NOW + 3200)] {
        let o = e.direct(
            &C {
                t: v4msg::REQUEST,
                ciaddr: addr,
                ..c(1, 0)
            },
            unicast,
            t,
        );
        let ack = open(&o.reply.unwrap(), &[]);
        assert_eq!(ack.v4.message_type(), Some(v4msg::ACK));
        assert_eq!(ack.v4.ciaddr, addr);
        assert_eq!(o.changes.len(), 1);
        assert_eq!(o.changes[0].kind(), ChangeKind::Renew);
        assert_eq!(e.t.get_v4(addr, None).unwrap().expires, t + 3600);
        assert_eq!(e.t.get_v4(addr, None).unwrap().state_start, NOW);
    }
    // RELEASE: no reply, state RELEASED.
    let o = e.direct(
        &C {
            t: v4msg::RELEASE,
            ciaddr: addr,
            server: Some(server()),
            ..c(1, 0)
        },
        true,
        NOW + 3300,
    );
    assert!(o.reply.is_none());
    assert_eq!(o.changes.len(), 1);
    assert_eq!(o.changes[0].kind(), ChangeKind::Release);
    assert_eq!(e.t.get_v4(addr, None).unwrap().state, dhcp_state::RELEASED);
    // INIT-REBOOT within the hold gets the same address back.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(addr),
            ..c(1, 0)
        },
        false,
        NOW + 3400,
    );
    assert_eq!(
        open(&o.reply.unwrap(), &[]).v4.message_type(),
        Some(v4msg::ACK)
    );
    assert_eq!(o.changes[0].kind(), ChangeKind::New);
    // INIT-REBOOT for a wrong address: NAK; unknown client: silence.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(Ipv4Addr::new(192, 0, 2, 200)),
            ..c(1, 0)
        },
        false,
        NOW + 3401,
    );
    let nak = open(&o.reply.unwrap(), &[]);
    assert_eq!(nak.dp.opts().msg_type(), Some(dp::MessageType::Nak));
    assert_eq!(nak.v4.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(o.changes.is_empty());
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(addr),
            ..c(9, 0)
        },
        false,
        NOW + 3402,
    );
    assert!(o.reply.is_none() && o.changes.is_empty());
    // RENEWING with no lease: NAK; REBINDING with no lease: silence.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: addr,
            ..c(9, 0)
        },
        true,
        NOW + 3403,
    );
    assert_eq!(
        open(&o.reply.unwrap(), &[]).v4.message_type(),
        Some(v4msg::NAK)
    );
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: addr,
            ..c(10, 0)
        },
        false,
        NOW + 3404,
    );
    assert!(o.reply.is_none());
    assert_eq!(e.a.counters().naks, 2);
}

#[test]
fn request_for_another_server_withdraws_the_offer() {
    let mut e = Env::new(&demo());
    let o = e.direct(&c(1, v4msg::DISCOVER), false, NOW);
    let off = open(&o.reply.unwrap(), &[]);
    assert_eq!(e.a.offers_outstanding(), 1);
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(Ipv4Addr::new(10, 9, 9, 9)),
            ..c(1, 0)
        },
        false,
        NOW,
    );
    assert!(o.reply.is_none() && o.changes.is_empty());
    assert_eq!(e.a.offers_outstanding(), 0);
    assert_eq!(e.a.counters().drop_other_server, 1);
    // A SELECTING REQUEST with no offer and no lease: NAK.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            ..c(1, 0)
        },
        false,
        NOW,
    );
    assert_eq!(
        open(&o.reply.unwrap(), &[]).v4.message_type(),
        Some(v4msg::NAK)
    );
}

#[test]
fn relayed_one_and_two_hops() {
    for links in [
        vec!["2001:db8:1::1"],
        vec!["2001:db8:1::1", "2001:db8:ffff::1"],
    ] {
        let mut e = Env::new(&demo());
        let o = e.send(
            &relay(query(v4(&c(5, v4msg::DISCOVER)), false, &[]), &links),
            NOW,
        );
        let off = open(&o.reply.unwrap(), &links);
        let req = C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            ..c(5, 0)
        };
        let o = e.send(&relay(query(v4(&req), false, &[]), &links), NOW);
        let ack = open(&o.reply.unwrap(), &links);
        assert_eq!(ack.v4.message_type(), Some(v4msg::ACK));
        let Change::V4 { binding, .. } = &o.changes[0] else {
            panic!()
        };
        let ctx = binding.v6.as_ref().unwrap();
        assert_eq!(
            ctx.link,
            "2001:db8:1::1".parse::<Ipv6Addr>().unwrap(),
            "innermost link"
        );
        assert_eq!(ctx.client_src, "fe80::1".parse::<Ipv6Addr>().unwrap());
        let r = ctx.relay.as_ref().unwrap();
        assert_eq!(r.hop_count, 0);
        assert_eq!(r.interface_id.as_deref(), Some(&b"if0"[..]));
        assert_eq!(
            binding.relay_id.as_deref(),
            Some(&[0, 3, 0, 1, 9, 9, 9, 9, 9, 0][..])
        );
        assert_eq!(
            binding.remote_id.as_deref(),
            Some(&[0, 0, 0x11, 0x8b, 7, 0][..])
        );
    }
}

#[test]
fn unknown_link_is_dropped() {
    let mut e = Env::new(&demo());
    let o = e.send(
        &relay(
            query(v4(&c(5, v4msg::DISCOVER)), false, &[]),
            &["2001:db9::1"],
        ),
        NOW,
    );
    assert!(o.reply.is_none());
    assert_eq!(e.a.counters().drop_no_subnet, 1);
}

#[test]
fn shared_psids_are_never_given_twice_and_br_on_oro() {
    let mut e = Env::new(&demo());
    let mut seen = std::collections::HashSet::new();
    let mut per_addr = std::collections::HashMap::<Ipv4Addr, usize>::new();
    for n in 1..=40 {
        let cl = C {
            shared: true,
            ..c(n, 0)
        };
        let o = e.send(
            &query(
                v4(&C {
                    t: v4msg::DISCOVER,
                    ..cl.clone()
                }),
                false,
                &[90, 137],
            ),
            NOW,
        );
        let off = open(&o.reply.unwrap(), &[]);
        assert!(off
            .v6
            .options
            .contains(&V6Option::S46Br("2001:db8::1".parse().unwrap())));
        let pp = pp_of(&off.v4).expect("159 in the offer");
        assert_eq!((pp.offset, pp.psid_len), (0, 4));
        assert_ne!(pp.psid, 0, "PSID 0 holds the well-known ports");
        let ack = e.dora(&cl, NOW);
        let pp = pp_of(&ack.v4).expect("159 in the ack");
        assert!(ack.dp.opts().get(dp::OptionCode::Unknown(159)).is_some() || pp.psid > 0);
        let a = ack.v4.yiaddr;
        assert_eq!(a.octets()[..3], [198, 51, 100]);
        assert!(seen.insert((a, pp.psid)), "({a}, {}) given twice", pp.psid);
        *per_addr.entry(a).or_default() += 1;
        let r = e.t.get_v4(a, Some(pp)).unwrap();
        assert_eq!(r.client_id, Some(&cid(n)[..]));
    }
    assert!(
        per_addr.values().any(|&k| k > 1),
        "one address is shared by several clients"
    );
    // No BR without the ORO asking.
    let o = e.direct(
        &C {
            shared: true,
            ..c(100, v4msg::DISCOVER)
        },
        false,
        NOW,
    );
    assert!(!open(&o.reply.unwrap(), &[])
        .v6
        .options
        .iter()
        .any(|o| o.code() == v6opt::S46_BR));
}

#[test]
fn shared_only_link_discards_clients_without_159() {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.remove(0);
    cfg.server_id = Some("192.0.2.1".into());
    let mut e = Env::new(&cfg.validate().unwrap());
    let o = e.direct(&c(1, v4msg::DISCOVER), false, NOW);
    assert!(o.reply.is_none());
    assert_eq!(e.a.counters().drop_needs_159, 1);
}

/// A shared-only link with one unit: one address, PSID length 1 (PSID 0 holds the well-known
/// ports, so PSID 1 is the only one leased).
fn one_shared_unit() -> AuthorityConfig {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.remove(0);
    cfg.subnets[0].pool = "198.51.100.10/32".into();
    cfg.subnets[0].psid_len = Some(1);
    cfg.subnets[0].shared_only = Some(true);
    cfg.server_id = Some("192.0.2.1".into());
    cfg.expired_hold = 100;
    cfg.abandoned_hold = 500;
    cfg
}

/// Issue 13 item 1: on a link with only a shared pool, a DHCPRELEASE (which never carries
/// option 55, RFC 2131 §4.4.6) releases the client's lease, found by client identity and
/// ciaddr; after `expired_hold` the (IPv4, PSID) goes to another client. Before the fix the
/// release was dropped as `drop_needs_159` and the unit stayed ACTIVE until expiry.
#[test]
fn release_on_a_shared_only_link_frees_the_unit() {
    let mut e = Env::new(&one_shared_unit().validate().unwrap());
    let shared = |n| C {
        shared: true,
        ..c(n, 0)
    };
    let ack = e.dora(&shared(1), NOW);
    let (a, pp) = (ack.v4.yiaddr, pp_of(&ack.v4).expect("159"));
    assert_eq!((a, pp.psid), (Ipv4Addr::new(198, 51, 100, 10), 1));
    // The pool is exhausted meanwhile.
    let o = e.direct(
        &C {
            t: v4msg::DISCOVER,
            ..shared(2)
        },
        false,
        NOW + 1,
    );
    assert!(o.reply.is_none());
    let o = e.direct(
        &C {
            t: v4msg::RELEASE,
            ciaddr: a,
            server: Some(server()),
            no_prl: true,
            ..c(1, 0)
        },
        true,
        NOW + 10,
    );
    assert!(o.reply.is_none(), "no answer to a RELEASE");
    assert_eq!(e.a.counters().drop_needs_159, 0);
    assert_eq!(e.a.counters().releases, 1);
    assert_eq!(o.changes.len(), 1);
    assert_eq!(o.changes[0].kind(), ChangeKind::Release);
    let r = e.t.get_v4(a, Some(pp)).expect("binding");
    assert_eq!(r.state, dhcp_state::RELEASED);
    assert_eq!(r.expires, NOW + 10 + 100);
    // A second RELEASE of the same lease changes nothing.
    let o = e.direct(
        &C {
            t: v4msg::RELEASE,
            ciaddr: a,
            server: Some(server()),
            no_prl: true,
            ..c(1, 0)
        },
        true,
        NOW + 11,
    );
    assert!(o.changes.is_empty());
    // Another client's RELEASE naming the unit does nothing either.
    let o = e.direct(
        &C {
            t: v4msg::RELEASE,
            ciaddr: a,
            no_prl: true,
            ..c(2, 0)
        },
        true,
        NOW + 12,
    );
    assert!(o.changes.is_empty());
    assert_eq!(e.a.counters().releases, 1);
    // After the hold the unit is another client's.
    assert!(e.a.expire(&mut e.t, NOW + 110).is_empty());
    let ack = e.dora(&shared(2), NOW + 111);
    assert_eq!((ack.v4.yiaddr, pp_of(&ack.v4)), (a, Some(pp)));
    assert_eq!(
        e.t.get_v4(a, Some(pp)).unwrap().client_id,
        Some(&cid(2)[..])
    );
}

/// Issue 13 item 1, DHCPDECLINE (no option 55 either, RFC 2131 §4.4.6): on a shared-only link
/// the unit becomes ABANDONED for `abandoned_hold`, then goes to another client.
#[test]
fn decline_on_a_shared_only_link_abandons_the_unit() {
    let mut e = Env::new(&one_shared_unit().validate().unwrap());
    let shared = |n| C {
        shared: true,
        ..c(n, 0)
    };
    let ack = e.dora(&shared(1), NOW);
    let (a, pp) = (ack.v4.yiaddr, pp_of(&ack.v4).expect("159"));
    let o = e.direct(
        &C {
            t: v4msg::DECLINE,
            requested: Some(a),
            server: Some(server()),
            pp: Some(pp),
            no_prl: true,
            ..c(1, 0)
        },
        false,
        NOW + 5,
    );
    assert!(o.reply.is_none());
    assert_eq!(e.a.counters().drop_needs_159, 0);
    assert_eq!(e.a.counters().declines, 1);
    assert_eq!(o.changes.len(), 1);
    assert_eq!(o.changes[0].kind(), ChangeKind::Decline);
    let r = e.t.get_v4(a, Some(pp)).unwrap();
    assert_eq!(r.state, dhcp_state::ABANDONED);
    assert_eq!(r.expires, NOW + 5 + 500);
    // Held: nobody gets it during abandoned_hold, the declining client neither.
    for n in [1, 2] {
        let o = e.direct(
            &C {
                t: v4msg::DISCOVER,
                ..shared(n)
            },
            false,
            NOW + 100,
        );
        assert!(o.reply.is_none(), "client {n}");
    }
    assert!(e.a.expire(&mut e.t, NOW + 505).is_empty());
    let ack = e.dora(&shared(2), NOW + 506);
    assert_eq!((ack.v4.yiaddr, pp_of(&ack.v4)), (a, Some(pp)));
}

/// Issue 13 item 6: `lease_time = 4294967295` (RFC 2131 §3.3) is infinite: 51 = 0xffffffff
/// in the OFFER and ACK, `expires` is u32::MAX (what the encoders report as 0xffffffff), and no
/// expiry is scheduled, on the first lease, a renewal and after a restore.
#[test]
fn an_infinite_lease_never_expires() {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.truncate(1);
    cfg.subnets[0].lease_time = u32::MAX;
    cfg.server_id = Some("192.0.2.1".into());
    let cfg = cfg.validate().unwrap();
    let mut e = Env::new(&cfg);
    let ack = e.dora(&c(1, 0), NOW);
    assert_eq!(
        ack.dp.opts().get(dp::OptionCode::AddressLeaseTime),
        Some(&dp::DhcpOption::AddressLeaseTime(u32::MAX))
    );
    let a = ack.v4.yiaddr;
    assert_eq!(e.t.get_v4(a, None).unwrap().expires, u32::MAX);
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: a,
            ..c(1, 0)
        },
        true,
        NOW + 1800,
    );
    assert_eq!(
        open(&o.reply.unwrap(), &[]).v4.option(v4opt::LEASE_TIME),
        Some(&V4Option::LeaseTime(u32::MAX))
    );
    assert_eq!(e.t.get_v4(a, None).unwrap().expires, u32::MAX);
    // Only the (stale) offer timer was ever scheduled; nothing expires, however late.
    assert!(e.a.expire(&mut e.t, NOW + 60).is_empty());
    assert_eq!(e.a.next_deadline(), None);
    assert!(e.a.expire(&mut e.t, u32::MAX - 1).is_empty());
    assert_eq!(e.t.get_v4(a, None).unwrap().state, dhcp_state::ACTIVE);
    let mut r = Authority::new(&cfg, 0, 1);
    r.restore(&e.t);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn pool_exhaustion_sends_no_offer() {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.truncate(1);
    cfg.subnets[0].pool = "192.0.2.10-192.0.2.11".into();
    cfg.server_id = Some("192.0.2.1".into());
    let mut e = Env::new(&cfg.validate().unwrap());
    e.dora(&c(1, 0), NOW);
    e.dora(&c(2, 0), NOW);
    let o = e.direct(&c(3, v4msg::DISCOVER), false, NOW);
    assert!(o.reply.is_none() && o.changes.is_empty());
    assert_eq!(e.a.counters().pool_exhausted, 1);
}

#[test]
fn softwire_source_rules() {
    let mut cfg = AuthorityConfig::demo();
    cfg.softwire_min_update = 60;
    let mut e = Env::new(&cfg.validate().unwrap());
    let x: Ipv6Addr = "2001:db8:1::100".parse().unwrap();
    let y: Ipv6Addr = "2001:db8:1::200".parse().unwrap();
    let ack = e.dora(
        &C {
            sw: Some(x),
            ..c(1, 0)
        },
        NOW,
    );
    assert_eq!(sw_of(&ack.v4), Some(x), "109 echoed");
    let a1 = ack.v4.yiaddr;
    assert_eq!(e.t.get_v4(a1, None).unwrap().softwire_src, Some(x));
    // Another client without a lease asking for X: NAK at REQUEST.
    let o = e.direct(&c(2, v4msg::DISCOVER), false, NOW);
    let off = open(&o.reply.unwrap(), &[]);
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            sw: Some(x),
            ..c(2, 0)
        },
        false,
        NOW,
    );
    assert_eq!(
        open(&o.reply.unwrap(), &[]).v4.message_type(),
        Some(v4msg::NAK)
    );
    assert!(o.changes.is_empty());
    assert_eq!(e.a.counters().softwire_conflicts, 1);
    // Too early an update: ACK with the old source.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: a1,
            sw: Some(y),
            ..c(1, 0)
        },
        true,
        NOW + 10,
    );
    assert_eq!(sw_of(&open(&o.reply.unwrap(), &[]).v4), Some(x));
    assert_eq!(o.changes[0].kind(), ChangeKind::Renew);
    // After the minimum interval: updated, echoed, a SoftwireChange.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: a1,
            sw: Some(y),
            ..c(1, 0)
        },
        true,
        NOW + 100,
    );
    assert_eq!(sw_of(&open(&o.reply.unwrap(), &[]).v4), Some(y));
    assert_eq!(o.changes[0].kind(), ChangeKind::SoftwireChange);
    assert_eq!(e.t.get_v4(a1, None).unwrap().softwire_src, Some(y));
    // X is free now: client 2 gets it.
    let ack2 = e.dora(
        &C {
            sw: Some(x),
            ..c(2, 0)
        },
        NOW + 101,
    );
    assert_eq!(sw_of(&ack2.v4), Some(x));
    // Client 2, holding a lease, asks for Y (client 1's): ACK with its existing binding.
    let a2 = ack2.v4.yiaddr;
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            ciaddr: a2,
            sw: Some(y),
            ..c(2, 0)
        },
        true,
        NOW + 300,
    );
    assert_eq!(sw_of(&open(&o.reply.unwrap(), &[]).v4), Some(x));
    assert_eq!(e.t.get_v4(a2, None).unwrap().softwire_src, Some(x));
}

#[test]
fn expiry_then_reuse_after_hold() {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.truncate(1);
    cfg.subnets[0].pool = "192.0.2.10-192.0.2.10".into();
    cfg.server_id = Some("192.0.2.1".into());
    cfg.expired_hold = 100;
    let mut e = Env::new(&cfg.validate().unwrap());
    let a = e.dora(&c(1, 0), NOW).v4.yiaddr;
    // The accepted offer's timer is stale: it fires and does nothing.
    assert!(e.a.expire(&mut e.t, NOW + 60).is_empty());
    assert_eq!(e.a.next_deadline(), Some(NOW + 3600));
    assert!(e.a.expire(&mut e.t, NOW + 3599).is_empty());
    let ch = e.a.expire(&mut e.t, NOW + 3600);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].kind(), ChangeKind::Expire);
    assert_eq!(ch[0].at(), NOW + 3600);
    assert_eq!(e.t.get_v4(a, None).unwrap().state, dhcp_state::EXPIRED);
    // During the hold another client gets nothing.
    let o = e.direct(&c(2, v4msg::DISCOVER), false, NOW + 3650);
    assert!(o.reply.is_none());
    assert!(e.a.expire(&mut e.t, NOW + 3700).is_empty());
    // Withdraw nothing; after the hold client 2 gets the address.
    let ack = e.dora(&c(2, 0), NOW + 3701);
    assert_eq!(ack.v4.yiaddr, a);
    assert_eq!(e.t.get_v4(a, None).unwrap().client_id, Some(&cid(2)[..]));
    // Client 1 comes back: the address is not his any more.
    let o = e.direct(
        &C {
            t: v4msg::REQUEST,
            requested: Some(a),
            ..c(1, 0)
        },
        false,
        NOW + 3702,
    );
    assert!(o
        .reply
        .map(|r| open(&r, &[]).v4.message_type() == Some(v4msg::NAK))
        .unwrap_or(true));
}

#[test]
fn offer_hold_expires() {
    let mut cfg = AuthorityConfig::demo();
    cfg.subnets.truncate(1);
    cfg.subnets[0].pool = "192.0.2.10-192.0.2.10".into();
    cfg.server_id = Some("192.0.2.1".into());
    let mut e = Env::new(&cfg.validate().unwrap());
    assert!(e.direct(&c(1, v4msg::DISCOVER), false, NOW).reply.is_some());
    assert!(e.direct(&c(2, v4msg::DISCOVER), false, NOW).reply.is_none());
    assert!(e.a.expire(&mut e.t, NOW + 60).is_empty());
    assert_eq!(e.a.counters().offers_expired, 1);
    assert!(e
        .direct(&c(2, v4msg::DISCOVER), false, NOW + 61)
        .reply
        .is_some());
}

#[test]
fn decline_abandons_and_inform_acks_without_lease() {
    let mut e = Env::new(&demo());
    let a = e.dora(&c(1, 0), NOW).v4.yiaddr;
    let o = e.direct(
        &C {
            t: v4msg::DECLINE,
            requested: Some(a),
            server: Some(server()),
            ..c(1, 0)
        },
        false,
        NOW + 5,
    );
    assert!(o.reply.is_none());
    assert_eq!(o.changes[0].kind(), ChangeKind::Decline);
    assert_eq!(e.t.get_v4(a, None).unwrap().state, dhcp_state::ABANDONED);
    // The next DORA gives another address.
    assert_ne!(e.dora(&c(1, 0), NOW + 6).v4.yiaddr, a);
    let o = e.direct(
        &C {
            t: v4msg::INFORM,
            ciaddr: Ipv4Addr::new(192, 0, 2, 77),
            ..c(3, 0)
        },
        true,
        NOW,
    );
    let r = open(&o.reply.unwrap(), &[]);
    assert_eq!(r.dp.opts().msg_type(), Some(dp::MessageType::Ack));
    assert_eq!(r.v4.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(r.v4.option(v4opt::LEASE_TIME).is_none());
    assert!(o.changes.is_empty());
}

#[test]
fn restore_from_changes_gives_the_same_decisions() {
    let cfg = demo();
    let mut e = Env::new(&cfg);
    for n in 1..=20 {
        e.dora(
            &C {
                shared: n % 2 == 0,
                sw: Some(format!("2001:db8:2::{n}").parse().unwrap()),
                ..c(n, 0)
            },
            NOW,
        );
    }
    let a3 =
        e.t.get_v4(Ipv4Addr::new(192, 0, 2, 3), None)
            .map(|r| r.addr)
            .unwrap();
    e.direct(
        &C {
            t: v4msg::RELEASE,
            ciaddr: a3,
            ..c(3, 0)
        },
        true,
        NOW + 1,
    );
    let mut t2 = LeaseTable::new();
    for ch in &e.changes {
        if let Change::V4 { binding, .. } = ch {
            t2.upsert_v4(binding.clone()).unwrap();
        }
    }
    let mut a2 = Authority::new(&cfg, 0, 1);
    a2.restore(&t2);
    // Restored timers: client 3's release hold (NOW + 1 + 600) is the earliest.
    assert_eq!(a2.next_deadline(), Some(NOW + 601));
    let probes = vec![
        query(
            v4(&C {
                t: v4msg::REQUEST,
                ciaddr: e.t.get_v4(Ipv4Addr::new(192, 0, 2, 2), None).unwrap().addr,
                ..c(1, 0)
            }),
            true,
            &[],
        ),
        query(
            v4(&C {
                t: v4msg::REQUEST,
                requested: Some(a3),
                ..c(3, 0)
            }),
            false,
            &[],
        ),
        query(v4(&c(50, v4msg::DISCOVER)), false, &[]),
        query(
            v4(&C {
                shared: true,
                ..c(51, v4msg::DISCOVER)
            }),
            false,
            &[],
        ),
        query(
            v4(&C {
                t: v4msg::REQUEST,
                requested: Some(Ipv4Addr::new(192, 0, 2, 9)),
                sw: Some("2001:db8:2::1".parse().unwrap()),
                ..c(52, 0)
            }),
            false,
            &[],
        ),
    ];
    for p in probes {
        let o1 = e.a.handle(&mut e.t, &p, src(), NOW + 10);
        let o2 = a2.handle(&mut t2, &p, src(), NOW + 10);
        assert_eq!(o1, o2);
    }
    assert_eq!(
        e.a.expire(&mut e.t, NOW + 4000),
        a2.expire(&mut t2, NOW + 4000)
    );
}

type Counter = fn(&leasequery::authority::AuthorityCounters) -> u64;

#[test]
fn malformed_input_is_dropped_and_counted() {
    let mut e = Env::new(&demo());
    let good = v4(&c(1, v4msg::DISCOVER));
    // No option 87.
    let mut no87 = Vec::new();
    V6Message {
        msg_type: v6msg::DHCPV4_QUERY,
        xid: 0,
        options: vec![V6Option::Oro(vec![90])],
    }
    .encode(&mut no87)
    .unwrap();
    // Two options 87.
    let mut two = Vec::new();
    V6Message {
        msg_type: v6msg::DHCPV4_QUERY,
        xid: 0,
        options: vec![
            V6Option::Dhcpv4Msg(good.clone()),
            V6Option::Dhcpv4Msg(good.clone()),
        ],
    }
    .encode(&mut two)
    .unwrap();
    // Wrong v6 type.
    let mut solicit = Vec::new();
    V6Message {
        msg_type: 1,
        xid: 0,
        options: vec![V6Option::Dhcpv4Msg(good.clone())],
    }
    .encode(&mut solicit)
    .unwrap();
    // No client id / non-4361 client id.
    let mut m = V4Message::decode(&good).unwrap();
    m.options.retain(|o| o.code() != v4opt::CLIENT_ID);
    let mut noid = Vec::new();
    m.encode(&mut noid).unwrap();
    m.options.push(V4Option::ClientId(ClientId::Other {
        htype: 1,
        id: vec![1, 2, 3],
    }));
    let mut hwid = Vec::new();
    m.encode(&mut hwid).unwrap();
    // A BOOTREPLY / an OFFER from a client.
    let offer = v4(&c(1, v4msg::OFFER));
    let too_deep = relay(query(good.clone(), false, &[]), &["2001:db8::1"; 9]);
    let mut truncated = relay(
        query(good.clone(), false, &[]),
        &["2001:db8::1", "2001:db8::2"],
    );
    truncated.truncate(truncated.len() - 30);
    let oversize = query(vec![0; 5000], false, &[]);
    let cases: Vec<(Vec<u8>, Counter)> = vec![
        (no87, |c| c.drop_no_dhcpv4_msg),
        (two, |c| c.drop_many_dhcpv4_msg),
        (solicit, |c| c.drop_not_query),
        (query(noid, false, &[]), |c| c.drop_no_client_id),
        (query(hwid, false, &[]), |c| c.drop_no_client_id),
        (query(offer, false, &[]), |c| c.drop_bad_v4_type),
        (query(good[..200].to_vec(), false, &[]), |c| {
            c.drop_malformed_v4
        }),
        (too_deep, |c| c.drop_too_deep),
        (truncated, |c| c.drop_malformed_v6),
        (oversize, |c| c.drop_oversize),
        (vec![], |c| c.drop_malformed_v6),
    ];
    for (i, (d, f)) in cases.into_iter().enumerate() {
        let o = e.send(&d, NOW);
        assert!(o.reply.is_none() && o.changes.is_empty(), "case {i}");
        assert_eq!(
            f(e.a.counters()),
            if i == 4 || i == 10 { 2 } else { 1 },
            "case {i}: {:?}",
            e.a.counters()
        );
    }
    assert_eq!(e.t.len_v4(), 0);
    assert_eq!(e.a.offers_outstanding(), 0);
}

#[test]
fn client_shard_matches_the_shard_that_answers() {
    let cfg = demo();
    for n in 0..40 {
        let d = query(v4(&c(n, v4msg::DISCOVER)), false, &[]);
        let s = client_shard(&d, 2).unwrap();
        let mut t = LeaseTable::new();
        let mut right = Authority::new(&cfg, s, 2);
        let mut wrong = Authority::new(&cfg, 1 - s, 2);
        let off = right.handle(&mut t, &d, src(), NOW).reply.expect("offer");
        let a = open(&off, &[]).v4.yiaddr;
        assert_eq!(
            leasequery::lease::shard_of_addr(a, 2),
            s,
            "allocated from the shard's own addresses"
        );
        assert!(wrong.handle(&mut t, &d, src(), NOW).reply.is_none());
        assert_eq!(wrong.counters().drop_wrong_shard, 1);
    }
    assert_eq!(client_shard(&[1, 2, 3], 2), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_nor_change(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut e = Env::new(&demo());
        let o = e.send(&bytes, NOW);
        prop_assert!(o.changes.is_empty());
        let _ = client_shard(&bytes, 3);
    }

    #[test]
    fn mutated_requests_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut e = Env::new(&demo());
        let off = open(&e.direct(&c(1, v4msg::DISCOVER), false, NOW).reply.unwrap(), &[]);
        let req = C { t: v4msg::REQUEST, requested: Some(off.v4.yiaddr), server: Some(server()), ..c(1, 0) };
        let mut d = relay(query(v4(&req), false, &[90]), &["2001:db8::1"]);
        for (at, x) in flips {
            let n = d.len();
            d[at % n] ^= x | 1;
        }
        let keep = d.len() - cut % 8;
        d.truncate(keep);
        let o = e.send(&d, NOW);
        // A mutation may still be a valid request from the same client; anything else changes nothing.
        for ch in &o.changes {
            let Change::V4 { binding, .. } = ch else { panic!() };
            prop_assert_eq!(binding.state, dhcp_state::ACTIVE);
        }
        let _ = client_shard(&d, 2);
    }
}

#[test]
fn example_file_is_the_demo() {
    // A server config file (`--config`) whose [authority] table is the embedded demo.
    let text = include_str!("../examples/authority-demo.toml");
    let parsed = leasequery::config::Config::from_toml(text).expect("example parses");
    parsed.validate().expect("example validates");
    assert_eq!(parsed.authority, Some(AuthorityConfig::demo()));
}

#[test]
fn renewals_do_not_grow_the_timer_heap_without_bound() {
    let mut e = Env::new(&demo());
    let a = e.dora(&c(1, 0), NOW).v4.yiaddr;
    for i in 0..5000 {
        let o = e.direct(
            &C {
                t: v4msg::REQUEST,
                ciaddr: a,
                ..c(1, 0)
            },
            true,
            NOW + i,
        );
        assert!(o.reply.is_some());
    }
    assert!(
        e.a.timers_pending() <= 2 + 1024 + 1,
        "{}",
        e.a.timers_pending()
    );
    // The live timer survived compaction.
    let ch = e.a.expire(&mut e.t, NOW + 4999 + 3600);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].kind(), ChangeKind::Expire);
}

fn rai(subs: &[(u8, &[u8])]) -> V4Option {
    V4Option::RelayAgentInfo(leasequery::proto::v4::RelayAgentInfo {
        sub_options: subs.iter().map(|(c, v)| (*c, v.to_vec())).collect(),
    })
}

/// Option 82 inside the 4o6 DHCPv4 message: its circuit-id (1), remote-id (2) and relay-id
/// (12) are recorded in the v4 binding, each winning over the DHCPv6 relay chain's value; a
/// sub-option it lacks falls back to the relay chain (remote-id, relay-id), the v6 relay
/// context itself is kept as received.
#[test]
fn option_82_in_the_dhcpv4_message_is_recorded() {
    let mut e = Env::new(&demo());
    let links = ["2001:db8:1::"];
    let dora = |e: &mut Env, n: u32, extra: Vec<V4Option>| {
        let cl = C { extra, ..c(n, 0) };
        let o = e.send(
            &relay(
                query(
                    v4(&C {
                        t: v4msg::DISCOVER,
                        ..cl.clone()
                    }),
                    false,
                    &[],
                ),
                &links,
            ),
            NOW,
        );
        let off = open(&o.reply.expect("offer"), &links);
        let req = C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            ..cl
        };
        let o = e.send(&relay(query(v4(&req), false, &[]), &links), NOW);
        let ack = open(&o.reply.expect("ack"), &links);
        assert_eq!(ack.v4.message_type(), Some(v4msg::ACK));
        let Change::V4 { binding, .. } = &o.changes[0] else {
            panic!()
        };
        binding.clone()
    };
    let b = dora(
        &mut e,
        1,
        vec![rai(&[
            (1, b"eth0/1"),
            (2, b"cpe-7"),
            (12, &[0, 3, 0, 1, 5, 5, 5, 5, 5, 5]),
        ])],
    );
    assert_eq!(b.circuit_id.as_deref(), Some(&b"eth0/1"[..]));
    assert_eq!(b.remote_id.as_deref(), Some(&b"cpe-7"[..]));
    assert_eq!(
        b.relay_id.as_deref(),
        Some(&[0, 3, 0, 1, 5, 5, 5, 5, 5, 5][..])
    );
    let v6 = b.v6.as_ref().unwrap().relay.as_ref().unwrap();
    assert_eq!(
        v6.relay_id.as_deref(),
        Some(&[0, 3, 0, 1, 9, 9, 9, 9, 9, 0][..])
    );
    // The table stored them (what a bulk query by remote-id / relay-id finds).
    let r = e.t.get_v4(b.addr, None).unwrap();
    assert_eq!(r.circuit_id, Some(&b"eth0/1"[..]));
    assert_eq!(r.remote_id, Some(&b"cpe-7"[..]));
    // Only a circuit-id in 82: remote-id and relay-id from the v6 relay chain.
    let b2 = dora(&mut e, 2, vec![rai(&[(1, b"eth0/2")])]);
    assert_eq!(b2.circuit_id.as_deref(), Some(&b"eth0/2"[..]));
    assert_eq!(b2.remote_id, v6_remote_of(&b2));
    assert_eq!(
        b2.relay_id.as_deref(),
        Some(&[0, 3, 0, 1, 9, 9, 9, 9, 9, 0][..])
    );
    // No 82 at all: as before (no circuit-id).
    let b3 = dora(&mut e, 3, vec![]);
    assert_eq!(b3.circuit_id, None);
    assert_eq!(b3.remote_id, v6_remote_of(&b3));
    assert_eq!(e.a.counters().option82_malformed, 0);
}

fn v6_remote_of(b: &leasequery::lease::V4Binding) -> Option<Vec<u8>> {
    b.v6.as_ref()?.relay.as_ref()?.remote_id.clone()
}

/// A malformed option 82 (a sub-option running past its end) is ignored and counted: the
/// client still gets its lease, with the relay chain's values.
#[test]
fn malformed_option_82_is_ignored_and_counted() {
    let mut e = Env::new(&demo());
    let bad = V4Option::Unknown {
        code: 82,
        data: vec![1, 9, b'x', 2, 1],
    };
    let ack = e.dora(
        &C {
            extra: vec![bad],
            ..c(1, 0)
        },
        NOW,
    );
    let r = e.t.get_v4(ack.v4.yiaddr, None).unwrap();
    assert_eq!((r.circuit_id, r.remote_id, r.relay_id), (None, None, None));
    assert_eq!(e.a.counters().option82_malformed, 2, "DISCOVER and REQUEST");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any option 82 value in a REQUEST: no panic; when the lease is granted, what is recorded
    /// is the value's own sub-options (or nothing).
    #[test]
    fn any_option_82_value_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut e = Env::new(&demo());
        let off = open(&e.direct(&c(1, v4msg::DISCOVER), false, NOW).reply.unwrap(), &[]);
        let req = C {
            t: v4msg::REQUEST,
            requested: Some(off.v4.yiaddr),
            server: Some(server()),
            extra: vec![V4Option::Unknown { code: 82, data: data.clone() }],
            ..c(1, 0)
        };
        let o = e.direct(&req, false, NOW);
        for ch in &o.changes {
            let Change::V4 { binding, .. } = ch else { panic!() };
            if let Ok(info) = leasequery::proto::v4::RelayAgentInfo::decode(&data) {
                prop_assert_eq!(binding.circuit_id.as_deref(), info.circuit_id());
                prop_assert_eq!(binding.remote_id.as_deref(), info.remote_id());
                prop_assert_eq!(binding.relay_id.as_deref(), info.relay_id());
            } else {
                prop_assert_eq!(&binding.circuit_id, &None);
            }
        }
    }
}
