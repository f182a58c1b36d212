//! Unit tests of the DHCP states: each message through decode, subnet selection and its
//! state's handler, on a table in memory.

use super::super::testutil::{authority, cfg, cid, query, src, v4, SERVER};
use super::*;
use crate::proto::v4::MessageView;

/// One message of client `n` through decode, subnet selection and its state's handler.
#[allow(clippy::too_many_arguments)]
fn send(
    a: &mut Authority,
    table: &mut LeaseTable,
    msg_type: u8,
    n: u32,
    ciaddr: Ipv4Addr,
    opts: Vec<V4Option>,
    unicast: bool,
    now: u32,
    answer: Option<&ClaimAnswer>,
) -> (Result<Decided, SoftwireClaim>, Vec<Change>) {
    let bytes = v4(msg_type, n, ciaddr, opts);
    let q = query(&bytes, Vec::new(), unicast);
    let (t, selector, r) = a.decode(&q, src(), answer.is_none()).expect("decoded");
    let mut changes = Vec::new();
    if t == v4msg::RELEASE {
        a.release(table, &r, now, &mut changes);
        return (Ok(None.into()), changes);
    }
    if t == v4msg::DECLINE {
        a.decline(table, &r, now, &mut changes);
        return (Ok(None.into()), changes);
    }
    let subnet = a.select(selector, r.wants_159).expect("a subnet");
    let d = match t {
        v4msg::DISCOVER => Ok(a.discover(table, subnet, &r, now).into()),
        _ => a.request(table, subnet, &r, now, &mut changes, answer),
    };
    (d, changes)
}

fn offered(d: &Result<Decided, SoftwireClaim>) -> Ipv4Addr {
    match d {
        Ok(Decided {
            reply: Some(ServerReply::Offer(0, u, None)),
            ..
        }) => Ipv4Addr::from(u.addr),
        _ => panic!("an offer"),
    }
}

fn is_ack(d: &Result<Decided, SoftwireClaim>) -> bool {
    matches!(
        d,
        Ok(Decided {
            reply: Some(ServerReply::Ack(..)),
            ..
        })
    )
}

fn kinds(changes: &[Change]) -> Vec<ChangeKind> {
    changes
        .iter()
        .map(|c| match c {
            Change::V4 { kind, .. } => *kind,
            _ => panic!("a v4 change"),
        })
        .collect()
}

const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

#[test]
fn discover_request_renew_release() {
    let mut a = authority(&cfg());
    let mut t = LeaseTable::new();
    let (d, ch) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        1,
        NONE,
        vec![],
        false,
        10,
        None,
    );
    let addr = offered(&d);
    assert!(ch.is_empty(), "an offer is no lease");
    assert_eq!(a.offers_outstanding(), 1);
    // A repeated DISCOVER keeps its offer.
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        1,
        NONE,
        vec![],
        false,
        11,
        None,
    );
    assert_eq!(offered(&d), addr);
    // SELECTING: the offer becomes the lease.
    let sel = vec![V4Option::ServerId(SERVER), V4Option::RequestedIp(addr)];
    let (d, ch) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        1,
        NONE,
        sel,
        false,
        12,
        None,
    );
    assert!(is_ack(&d));
    assert_eq!(kinds(&ch), vec![ChangeKind::New]);
    assert_eq!(a.offers_outstanding(), 0);
    let rec = t.get_v4(addr, None).expect("bound");
    assert_eq!((rec.state, rec.cltt), (dhcp_state::ACTIVE, 12));
    assert_eq!(rec.client_id, Some(&cid(1)[..]));
    // RENEWING (unicast, ciaddr set).
    let (d, ch) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        1,
        addr,
        vec![],
        true,
        20,
        None,
    );
    assert!(is_ack(&d));
    assert_eq!(kinds(&ch), vec![ChangeKind::Renew]);
    // RELEASE.
    let (_, ch) = send(
        &mut a,
        &mut t,
        v4msg::RELEASE,
        1,
        addr,
        vec![],
        true,
        30,
        None,
    );
    assert_eq!(kinds(&ch), vec![ChangeKind::Release]);
    let rec = t.get_v4(addr, None).expect("kept");
    assert_eq!(rec.state, dhcp_state::RELEASED);
    assert_eq!(a.counters.releases, 1);
    // A second RELEASE names nothing the client holds: silent.
    let (_, ch) = send(
        &mut a,
        &mut t,
        v4msg::RELEASE,
        1,
        addr,
        vec![],
        true,
        31,
        None,
    );
    assert!(ch.is_empty());
    assert_eq!(a.counters.silent, 1);
}

#[test]
fn requests_without_a_lease_follow_rfc_2131_4_3_2() {
    let mut a = authority(&cfg());
    let mut t = LeaseTable::new();
    let addr = Ipv4Addr::new(192, 0, 2, 50);
    // INIT-REBOOT for a client with no record: silence.
    let ask = vec![V4Option::RequestedIp(addr)];
    let (d, _) = send(&mut a, &mut t, v4msg::REQUEST, 1, NONE, ask, false, 1, None);
    assert!(matches!(d, Ok(Decided { reply: None, .. })));
    assert_eq!(a.counters.silent, 1);
    // RENEWING (unicast) with no lease: DHCPNAK.
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        1,
        addr,
        vec![],
        true,
        1,
        None,
    );
    assert!(matches!(
        d,
        Ok(Decided {
            reply: Some(ServerReply::Nak),
            ..
        })
    ));
    // REBINDING (broadcast) with no lease: silence (another server may hold it).
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        1,
        addr,
        vec![],
        false,
        1,
        None,
    );
    assert!(matches!(d, Ok(Decided { reply: None, .. })));
    assert_eq!((a.counters.naks, a.counters.silent), (1, 2));
    // SELECTING another server: the offer is withdrawn, nothing sent.
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        2,
        NONE,
        vec![],
        false,
        1,
        None,
    );
    let o = offered(&d);
    let other = vec![
        V4Option::ServerId(Ipv4Addr::new(192, 0, 2, 200)),
        V4Option::RequestedIp(o),
    ];
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        2,
        NONE,
        other,
        false,
        1,
        None,
    );
    assert!(matches!(d, Ok(Decided { reply: None, .. })));
    assert_eq!(
        (a.counters.drop_other_server, a.offers_outstanding()),
        (1, 0)
    );
}

#[test]
fn decline_abandons_the_offered_address() {
    let mut a = authority(&cfg());
    let mut t = LeaseTable::new();
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        1,
        NONE,
        vec![],
        false,
        1,
        None,
    );
    let addr = offered(&d);
    let dec = vec![V4Option::ServerId(SERVER), V4Option::RequestedIp(addr)];
    let (_, ch) = send(&mut a, &mut t, v4msg::DECLINE, 1, NONE, dec, false, 2, None);
    assert_eq!(kinds(&ch), vec![ChangeKind::Decline]);
    let rec = t.get_v4(addr, None).expect("recorded");
    assert_eq!(rec.state, dhcp_state::ABANDONED);
    assert_eq!(rec.expires, 2 + a.cfg.abandoned_hold);
    // The client's next DISCOVER gets another address.
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        1,
        NONE,
        vec![],
        false,
        3,
        None,
    );
    assert_ne!(offered(&d), addr);
}

#[test]
fn a_remote_softwire_claim_stops_before_any_change_then_decides_on_the_answer() {
    let c = cfg();
    let mut a = Authority::new(&c, 0, 2);
    let mut t = LeaseTable::new();
    let n = (0..64)
        .find(|&n| crate::lease::shard_of_client(&cid(n), 2) == 0)
        .expect("a client of shard 0");
    let sw = (1u16..)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
        .find(|&sw| crate::lease::shard_of_softwire(sw, 2) == 1)
        .expect("a source of shard 1");
    let (d, _) = send(
        &mut a,
        &mut t,
        v4msg::DISCOVER,
        n,
        NONE,
        vec![],
        false,
        1,
        None,
    );
    let addr = offered(&d);
    let sel = vec![
        V4Option::ServerId(SERVER),
        V4Option::RequestedIp(addr),
        V4Option::Dhcp4o6SoftwireSource(sw),
    ];
    let (d, ch) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        n,
        NONE,
        sel.clone(),
        false,
        2,
        None,
    );
    let Err(asked) = d else {
        panic!("the owner must decide");
    };
    assert_eq!(asked.softwire, sw);
    assert!(ch.is_empty());
    assert_eq!((t.len_v4(), a.offers_outstanding()), (0, 1));
    // Granted: the lease holds the source, and the claim comes back as fresh.
    let yes = ClaimAnswer {
        claim: asked.clone(),
        granted: true,
    };
    let (d, ch) = send(
        &mut a,
        &mut t,
        v4msg::REQUEST,
        n,
        NONE,
        sel,
        false,
        3,
        Some(&yes),
    );
    let Ok(Decided {
        reply: Some(ServerReply::Ack(_, _, Some(got))),
        fresh,
    }) = d
    else {
        panic!("an ACK with the source");
    };
    assert_eq!((got, fresh), (sw, Some(asked)));
    assert_eq!(kinds(&ch), vec![ChangeKind::New]);
    assert_eq!(a.held.get(&sw).map(|(c, _)| c.clone()), Some(cid(n)));
}

#[test]
fn the_reply_is_a_bootreply_with_the_lease_times() {
    let mut a = authority(&cfg());
    let t = LeaseTable::new();
    let bytes = v4(v4msg::DISCOVER, 1, NONE, vec![]);
    let q = query(&bytes, Vec::new(), false);
    let (_, _, r) = a.decode(&q, src(), true).expect("decoded");
    let reply = a.discover(&t, 0, &r, 10).expect("an offer");
    let ServerReply::Offer(_, unit, _) = reply else {
        panic!("an offer");
    };
    let out = a.build(&q.hops, &r, reply, 10).expect("encoded");
    // DHCPV4-RESPONSE (RFC 7341 §6.2): msg-type 21, flags, then OPTION_DHCPV4_MSG (87).
    assert_eq!(out[0], crate::proto::codes::v6msg::DHCPV4_RESPONSE);
    let v4 = &out[8..];
    assert_eq!(u16::from_be_bytes([out[4], out[5]]), 87);
    let m = MessageView::parse(v4).expect("parse");
    assert_eq!((m.op, m.message_type()), (BOOTREPLY, Some(v4msg::OFFER)));
    assert_eq!(m.yiaddr, Ipv4Addr::from(unit.addr));
    assert_eq!(m.xid, 1);
    assert_eq!(
        m.option(crate::proto::codes::v4opt::LEASE_TIME).as_deref(),
        Some(&3600u32.to_be_bytes()[..])
    );
}
