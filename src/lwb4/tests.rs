use super::*;
use crate::proto::v4::MessageView;

fn inner_v4(q: &[u8]) -> (u8, Vec<u8>) {
    let m = V6Message::decode(q).unwrap();
    let raw = m
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::Dhcpv4Msg(v) => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    (m.msg_type, raw)
}

fn sw() -> Ipv6Addr {
    "2001:db8:ff::".parse().unwrap()
}

#[test]
fn client_id_is_rfc4361() {
    let c = client_id_of(0x0102_0304);
    assert_eq!(c, vec![255, 1, 2, 3, 4, 0, 3, 0, 1, 2, 0x4c, 1, 2, 3, 4]);
    assert!(matches!(ClientId::decode(&c), Ok(ClientId::Rfc4361 { .. })));
    assert_eq!(
        softwire_of(sw(), 0x10005, 2),
        "2001:db8:ff:2::1:5".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn xids_stay_in_the_clients_range() {
    let mut c = LwB4::new(0x12_3456, false, sw(), None);
    c.discover();
    assert_eq!(c.xid(), 0x1234_5601);
    for _ in 0..300 {
        c.discover();
        assert_eq!(c.xid() >> 8, 0x12_3456);
    }
}

#[test]
fn discover_is_a_query_with_prl() {
    let mut c = LwB4::new(7, true, softwire_of(sw(), 7, 0), None);
    let q = c.discover();
    assert_eq!(q[1..4], [0, 0, 0], "U flag clear");
    let (t, raw) = inner_v4(&q);
    assert_eq!(t, v6msg::DHCPV4_QUERY);
    let v = MessageView::parse(&raw).unwrap();
    assert_eq!(v.message_type(), Some(v4msg::DISCOVER));
    assert_eq!(v.xid, c.xid());
    assert_eq!(v.option(v4opt::CLIENT_ID).unwrap().as_ref(), c.client_id());
    assert!(v
        .option(v4opt::PARAMETER_REQUEST_LIST)
        .unwrap()
        .contains(&159));
    let mut full = LwB4::new(8, false, softwire_of(sw(), 8, 0), None);
    let (_, raw) = inner_v4(&full.discover());
    let v = MessageView::parse(&raw).unwrap();
    assert!(!v
        .option(v4opt::PARAMETER_REQUEST_LIST)
        .unwrap()
        .contains(&159));
}

fn response(kind: u8, xid: u32, yi: Ipv4Addr, extra: Vec<V4Option>) -> Vec<u8> {
    let mut m = V4Message::new(2, kind, xid);
    m.yiaddr = yi;
    m.options.extend(extra);
    let mut v4 = Vec::new();
    m.encode(&mut v4).unwrap();
    let r = V6Message {
        msg_type: v6msg::DHCPV4_RESPONSE,
        xid: 0,
        options: vec![V6Option::Dhcpv4Msg(v4)],
    };
    let mut out = Vec::new();
    r.encode(&mut out).unwrap();
    out
}

#[test]
fn offer_request_ack_renew_release() {
    let s0 = softwire_of(sw(), 3, 0);
    let mut c = LwB4::new(3, true, s0, None);
    c.discover();
    let pp = PortParams {
        offset: 0,
        psid_len: 4,
        psid: 5,
    };
    let yi = Ipv4Addr::new(198, 51, 100, 9);
    let sid = Ipv4Addr::new(192, 0, 2, 1);
    // Wrong xid is ignored.
    let wrong = response(v4msg::OFFER, c.xid() ^ 1, yi, vec![]);
    assert_eq!(c.on_datagram(&wrong), Ok(Event::Ignored));
    let off = response(
        v4msg::OFFER,
        c.xid(),
        yi,
        vec![V4Option::ServerId(sid), V4Option::V4PortParams(pp)],
    );
    assert_eq!(c.on_datagram(&off), Ok(Event::Offered));
    let req = c.request().unwrap();
    let (_, raw) = inner_v4(&req);
    let m = V4Message::decode(&raw).unwrap();
    assert_eq!(m.message_type(), Some(v4msg::REQUEST));
    assert_eq!(
        m.option(v4opt::REQUESTED_IP),
        Some(&V4Option::RequestedIp(yi))
    );
    assert_eq!(m.option(v4opt::SERVER_ID), Some(&V4Option::ServerId(sid)));
    assert_eq!(
        m.option(v4opt::V4_PORTPARAMS),
        Some(&V4Option::V4PortParams(pp))
    );
    assert_eq!(
        m.option(v4opt::DHCP4O6_S46_SADDR),
        Some(&V4Option::Dhcp4o6SoftwireSource(s0))
    );
    assert_eq!(c.retransmit().unwrap(), req, "retransmission is identical");
    let ack = response(
        v4msg::ACK,
        c.xid(),
        yi,
        vec![
            V4Option::ServerId(sid),
            V4Option::LeaseTime(3600),
            V4Option::V4PortParams(pp),
            V4Option::Dhcp4o6SoftwireSource(s0),
        ],
    );
    let Ok(Event::Acked(h)) = c.on_datagram(&ack) else {
        panic!("ack")
    };
    assert_eq!(h.addr, yi);
    assert_eq!(h.port_params, Some(pp));
    assert_eq!(h.softwire, s0);
    assert_eq!(h.lease_time, 3600);
    assert_eq!(c.phase(), Phase::Bound);
    // A duplicate ACK in Bound is ignored.
    assert_eq!(c.on_datagram(&ack), Ok(Event::Ignored));

    let s1 = softwire_of(sw(), 3, 1);
    c.set_softwire(s1);
    let ren = c.renew().unwrap();
    assert_eq!(ren[1..4], [0x80, 0, 0], "U flag set");
    let (_, raw) = inner_v4(&ren);
    let m = V4Message::decode(&raw).unwrap();
    assert_eq!(m.ciaddr, yi);
    assert!(m.option(v4opt::SERVER_ID).is_none());
    assert!(m.option(v4opt::REQUESTED_IP).is_none());
    assert_eq!(
        m.option(v4opt::DHCP4O6_S46_SADDR),
        Some(&V4Option::Dhcp4o6SoftwireSource(s1))
    );
    let reb = c.rebind().unwrap();
    assert_eq!(reb[1..4], [0, 0, 0], "U flag clear when rebinding");
    let nak = response(v4msg::NAK, c.xid(), Ipv4Addr::UNSPECIFIED, vec![]);
    assert_eq!(c.on_datagram(&nak), Ok(Event::Naked));
    assert!(c.held().is_none());
    assert!(c.release().is_none());
    assert!(c.renew().is_none());
}

#[test]
fn release_carries_ciaddr_and_server_id() {
    let mut c = LwB4::new(1, false, softwire_of(sw(), 1, 0), None);
    c.discover();
    let yi = Ipv4Addr::new(192, 0, 2, 10);
    let sid = Ipv4Addr::new(192, 0, 2, 1);
    c.on_datagram(&response(
        v4msg::OFFER,
        c.xid(),
        yi,
        vec![V4Option::ServerId(sid)],
    ))
    .unwrap();
    c.request().unwrap();
    c.on_datagram(&response(
        v4msg::ACK,
        c.xid(),
        yi,
        vec![V4Option::ServerId(sid)],
    ))
    .unwrap();
    let rel = c.release().unwrap();
    let (_, raw) = inner_v4(&rel);
    let m = V4Message::decode(&raw).unwrap();
    assert_eq!(m.message_type(), Some(v4msg::RELEASE));
    assert_eq!(m.ciaddr, yi);
    assert_eq!(m.option(v4opt::SERVER_ID), Some(&V4Option::ServerId(sid)));
    assert_eq!(c.phase(), Phase::Released);
    let inf = c.inform().unwrap();
    assert_eq!(inf[1..4], [0x80, 0, 0]);
    let (_, raw) = inner_v4(&inf);
    let m = V4Message::decode(&raw).unwrap();
    assert_eq!(m.message_type(), Some(v4msg::INFORM));
    assert_eq!(c.retransmit().unwrap(), inf);
    let ack = response(v4msg::ACK, c.xid(), Ipv4Addr::UNSPECIFIED, vec![]);
    assert_eq!(c.on_datagram(&ack), Ok(Event::Informed));
    assert_eq!(c.phase(), Phase::Init);
    assert!(c.held().is_none());
}

fn hop() -> RelayHop {
    RelayHop {
        link: "2001:db8:1::".parse().unwrap(),
        peer: "fe80::1".parse().unwrap(),
        interface_id: Some(b"lwb4-0".to_vec()),
        relay_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]),
        remote_id: Some((4491, vec![1, 2])),
    }
}

#[test]
fn relayed_query_and_reply() {
    let mut c = LwB4::new(2, false, softwire_of(sw(), 2, 0), Some(hop()));
    let q = c.discover();
    let r = RelayMessage::decode(&q).unwrap();
    assert_eq!(r.msg_type, v6msg::RELAY_FORW);
    assert_eq!(r.link_address, hop().link);
    assert!(r
        .options
        .contains(&V6Option::InterfaceId(b"lwb4-0".to_vec())));
    assert!(r.options.iter().any(|o| matches!(o, V6Option::RelayId(_))));
    assert!(r.options.iter().any(|o| matches!(
        o,
        V6Option::RemoteId {
            enterprise: 4491,
            ..
        }
    )));
    let inner = r
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::RelayMsg(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(inner_v4(&inner).0, v6msg::DHCPV4_QUERY);
    // A Relay-Reply around an OFFER.
    let off = response(
        v4msg::OFFER,
        c.xid(),
        Ipv4Addr::new(192, 0, 2, 20),
        vec![V4Option::ServerId(Ipv4Addr::new(192, 0, 2, 1))],
    );
    let repl = |iface: &[u8]| {
        let r = RelayMessage {
            msg_type: v6msg::RELAY_REPL,
            hop_count: 0,
            link_address: hop().link,
            peer_address: hop().peer,
            options: vec![
                V6Option::InterfaceId(iface.to_vec()),
                V6Option::RelayMsg(off.clone()),
            ],
        };
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        out
    };
    assert_eq!(
        c.on_datagram(&repl(b"other")),
        Err(ResponseError::RelayMismatch)
    );
    assert_eq!(
        c.on_datagram(&off),
        Err(ResponseError::UnexpectedType(v6msg::DHCPV4_RESPONSE))
    );
    assert_eq!(c.on_datagram(&repl(b"lwb4-0")), Ok(Event::Offered));
}

#[test]
fn garbage_never_panics() {
    let mut c = LwB4::new(1, true, sw(), None);
    let mut r = LwB4::new(1, true, sw(), Some(hop()));
    let ok = response(v4msg::OFFER, 0, Ipv4Addr::LOCALHOST, vec![]);
    for cut in 0..ok.len() {
        let _ = c.on_datagram(&ok[..cut]);
        let _ = r.on_datagram(&ok[..cut]);
    }
    let mut x: u32 = 1;
    for len in 0..400 {
        let b: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = c.on_datagram(&b);
        let _ = r.on_datagram(&b);
    }
    assert_eq!(c.on_datagram(&[]), Err(ResponseError::MalformedV6));
    // A request from the server side (BOOTREQUEST inside a response) is refused.
    let mut m = V4Message::new(1, v4msg::DISCOVER, 0);
    m.yiaddr = Ipv4Addr::LOCALHOST;
    let mut v4 = Vec::new();
    m.encode(&mut v4).unwrap();
    let d = V6Message {
        msg_type: v6msg::DHCPV4_RESPONSE,
        xid: 0,
        options: vec![V6Option::Dhcpv4Msg(v4)],
    };
    let mut out = Vec::new();
    d.encode(&mut out).unwrap();
    assert!(matches!(
        parse_response(&out, None),
        Err(ResponseError::UnexpectedV4 { op: 1, .. })
    ));
}
