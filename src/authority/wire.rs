//! The DHCPv6 side of a DHCPV4-QUERY: unwrapping the relay chain (RFC 8415 §9, RFC 7341 §11),
//! and wrapping the DHCPV4-RESPONSE back through it in Relay-Reply messages.

use std::net::Ipv6Addr;

use crate::proto::codes::{v6msg, v6opt};
use crate::proto::dhcp4o6::{write_dhcpv4_response, Flags};
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{AnyView, RelayMessage, V6Option};

/// The most Relay-Forward envelopes accepted around a DHCPV4-QUERY.
pub const MAX_RELAY_DEPTH: usize = 8;

/// Why a datagram was dropped before its DHCPv4 message was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unwrap {
    Oversize,
    MalformedV6,
    TooDeep,
    NotQuery,
    NoDhcpv4Msg,
    ManyDhcpv4Msg,
    MalformedV4,
}

/// One Relay-Forward of the chain, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop<'a> {
    pub hop_count: u8,
    pub link: Ipv6Addr,
    pub peer: Ipv6Addr,
    pub interface_id: Option<&'a [u8]>,
    pub relay_id: Option<&'a [u8]>,
    pub remote_id: Option<&'a [u8]>,
}

/// A DHCPV4-QUERY taken apart.
#[derive(Debug, Clone)]
pub(crate) struct Query<'a> {
    /// Outermost first.
    pub hops: Vec<Hop<'a>>,
    pub flags: Flags,
    pub oro_br: bool,
    pub oro_bind_prefix: bool,
    pub v4: V4View<'a>,
}

/// Takes a datagram apart: the relay chain, the DHCPV4-QUERY and its DHCPv4 message.
pub(crate) fn unwrap(datagram: &[u8], max: usize) -> Result<Query<'_>, Unwrap> {
    if datagram.len() > max {
        return Err(Unwrap::Oversize);
    }
    let mut cur = AnyView::parse(datagram).map_err(|_| Unwrap::MalformedV6)?;
    let mut hops = Vec::new();
    let msg = loop {
        match cur {
            AnyView::Message(m) => break m,
            AnyView::Relay(r) => {
                if r.msg_type != v6msg::RELAY_FORW {
                    return Err(Unwrap::NotQuery);
                }
                if hops.len() >= MAX_RELAY_DEPTH {
                    return Err(Unwrap::TooDeep);
                }
                let o = r.options();
                hops.push(Hop {
                    hop_count: r.hop_count,
                    link: r.link_address,
                    peer: r.peer_address,
                    interface_id: o.get(v6opt::INTERFACE_ID).map(|x| x.data),
                    relay_id: o.get(v6opt::RELAY_ID).map(|x| x.data),
                    remote_id: o.get(v6opt::REMOTE_ID).map(|x| x.data),
                });
                cur = r.relay_msg().map_err(|_| Unwrap::MalformedV6)?;
            }
        }
    };
    if msg.msg_type != v6msg::DHCPV4_QUERY {
        return Err(Unwrap::NotQuery);
    }
    let opts = msg.options();
    let mut v4 = opts.all(v6opt::DHCPV4_MSG);
    let raw = v4.next().ok_or(Unwrap::NoDhcpv4Msg)?;
    if v4.next().is_some() {
        return Err(Unwrap::ManyDhcpv4Msg);
    }
    let v4 = raw.dhcpv4_view().map_err(|_| Unwrap::MalformedV4)?;
    let (mut oro_br, mut oro_bind_prefix) = (false, false);
    for oro in opts.all(v6opt::ORO) {
        for code in oro.oro().map_err(|_| Unwrap::MalformedV6)? {
            oro_br |= code == v6opt::S46_BR;
            oro_bind_prefix |= code == v6opt::S46_BIND_IPV6_PREFIX;
        }
    }
    let [_, f0, f1, f2] = msg.xid.to_be_bytes();
    Ok(Query {
        hops,
        flags: Flags::from_bytes([f0, f1, f2]),
        oro_br,
        oro_bind_prefix,
        v4,
    })
}

/// The client identity a DHCPv4 message is routed and keyed by: the option 61 payload, else the
/// hardware address.
pub(crate) fn client_key<'a>(v4: &V4View<'a>) -> std::borrow::Cow<'a, [u8]> {
    v4.option(crate::proto::codes::v4opt::CLIENT_ID)
        .unwrap_or(std::borrow::Cow::Borrowed(v4.chaddr))
}

/// Builds the whole reply: DHCPV4-RESPONSE, wrapped in one Relay-Reply per hop (innermost first,
/// so the outermost ends up outside), each echoing hop-count, link-address, peer-address and
/// Interface-ID (RFC 8415 §19.3). `None` if it cannot be encoded.
pub(crate) fn wrap_reply(
    hops: &[Hop<'_>],
    v4_reply: &[u8],
    brs: &[Ipv6Addr],
    bind_prefix: Option<(u8, Ipv6Addr)>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write_dhcpv4_response(&mut out, v4_reply, brs, bind_prefix).ok()?;
    for h in hops.iter().rev() {
        let mut options = Vec::with_capacity(2);
        if let Some(id) = h.interface_id {
            options.push(V6Option::InterfaceId(id.to_vec()));
        }
        options.push(V6Option::RelayMsg(out));
        let r = RelayMessage {
            msg_type: v6msg::RELAY_REPL,
            hop_count: h.hop_count,
            link_address: h.link,
            peer_address: h.peer,
            options,
        };
        let mut next = Vec::with_capacity(r.encoded_len());
        r.encode(&mut next).ok()?;
        out = next;
    }
    (out.len() <= u16::MAX as usize).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cid, v4};
    use super::*;
    use crate::proto::codes::{v4msg, BOOTREPLY};
    use crate::proto::v4::Message;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    fn opt(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    /// A DHCPV4-QUERY (or another message type) with `flags` and these options, raw.
    fn message(msg_type: u8, flags: [u8; 3], opts: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![msg_type, flags[0], flags[1], flags[2]];
        for o in opts {
            m.extend_from_slice(o);
        }
        m
    }

    fn relay(msg_type: u8, inner: Vec<u8>, link: &str, interface_id: Option<&[u8]>) -> Vec<u8> {
        let mut options = Vec::new();
        if let Some(id) = interface_id {
            options.push(V6Option::InterfaceId(id.to_vec()));
        }
        options.push(V6Option::RelayMsg(inner));
        let r = RelayMessage {
            msg_type,
            hop_count: 0,
            link_address: v6(link),
            peer_address: v6("fe80::9"),
            options,
        };
        let mut out = Vec::new();
        r.encode(&mut out).expect("encode");
        out
    }

    fn discover() -> Vec<u8> {
        v4(
            v4msg::DISCOVER,
            3,
            std::net::Ipv4Addr::UNSPECIFIED,
            Vec::new(),
        )
    }

    #[test]
    fn a_direct_query_is_taken_apart() {
        let m4 = discover();
        let oro = opt(v6opt::ORO, &[0, v6opt::S46_BR as u8]);
        let d = message(
            v6msg::DHCPV4_QUERY,
            [0x80, 0, 0],
            &[opt(v6opt::DHCPV4_MSG, &m4), oro],
        );
        let q = unwrap(&d, 1500).expect("a query");
        assert!(q.hops.is_empty());
        assert!(q.flags.unicast());
        assert!(q.oro_br && !q.oro_bind_prefix);
        assert_eq!(q.v4.xid, 3);
        assert_eq!(client_key(&q.v4).as_ref(), &cid(3)[..]);
    }

    #[test]
    fn a_relayed_query_keeps_its_chain_and_the_reply_goes_back_through_it() {
        let m4 = discover();
        let d = message(v6msg::DHCPV4_QUERY, [0; 3], &[opt(v6opt::DHCPV4_MSG, &m4)]);
        let inner = relay(v6msg::RELAY_FORW, d, "2001:db8:2::1", Some(b"in"));
        let outer = relay(v6msg::RELAY_FORW, inner, "2001:db8:1::1", None);
        let q = unwrap(&outer, 1500).expect("a query");
        let links: Vec<_> = q.hops.iter().map(|h| h.link).collect();
        assert_eq!(links, vec![v6("2001:db8:1::1"), v6("2001:db8:2::1")]);
        assert_eq!(q.hops[1].interface_id, Some(&b"in"[..]));
        // The reply: Relay-Reply around Relay-Reply around the DHCPV4-RESPONSE.
        let mut reply = Message::new(BOOTREPLY, v4msg::OFFER, 3);
        reply.set_hw_addr(1, &[1, 2, 3, 4, 5, 6]).expect("hw");
        let mut r4 = Vec::new();
        reply.encode(&mut r4).expect("encode");
        let out = wrap_reply(&q.hops, &r4, &[], None).expect("encoded");
        let AnyView::Relay(o) = AnyView::parse(&out).expect("parse") else {
            panic!("a relay message");
        };
        assert_eq!(
            (o.msg_type, o.link_address),
            (v6msg::RELAY_REPL, v6("2001:db8:1::1"))
        );
        let AnyView::Relay(i) = o.relay_msg().expect("inner") else {
            panic!("a relay message");
        };
        assert_eq!(i.link_address, v6("2001:db8:2::1"));
        // The Interface-ID is echoed (RFC 8415 §19.3).
        assert_eq!(
            i.options().get(v6opt::INTERFACE_ID).map(|x| x.data),
            Some(&b"in"[..])
        );
        let AnyView::Message(m) = i.relay_msg().expect("response") else {
            panic!("the response");
        };
        assert_eq!(m.msg_type, v6msg::DHCPV4_RESPONSE);
    }

    #[test]
    fn each_way_of_being_unusable_has_its_reason() {
        let m4 = discover();
        let q = |opts: &[Vec<u8>]| message(v6msg::DHCPV4_QUERY, [0; 3], opts);
        let good = q(&[opt(v6opt::DHCPV4_MSG, &m4)]);
        assert_eq!(unwrap(&good, good.len() - 1).err(), Some(Unwrap::Oversize));
        assert_eq!(unwrap(&[20, 0], 1500).err(), Some(Unwrap::MalformedV6));
        let solicit = message(1, [0; 3], &[opt(v6opt::DHCPV4_MSG, &m4)]);
        assert_eq!(unwrap(&solicit, 1500).err(), Some(Unwrap::NotQuery));
        let reply_env = relay(v6msg::RELAY_REPL, good.clone(), "2001:db8::1", None);
        assert_eq!(unwrap(&reply_env, 1500).err(), Some(Unwrap::NotQuery));
        assert_eq!(unwrap(&q(&[]), 1500).err(), Some(Unwrap::NoDhcpv4Msg));
        let two = q(&[opt(v6opt::DHCPV4_MSG, &m4), opt(v6opt::DHCPV4_MSG, &m4)]);
        assert_eq!(unwrap(&two, 1500).err(), Some(Unwrap::ManyDhcpv4Msg));
        let bad4 = q(&[opt(v6opt::DHCPV4_MSG, &[1, 2, 3])]);
        assert_eq!(unwrap(&bad4, 1500).err(), Some(Unwrap::MalformedV4));
        let mut deep = good.clone();
        for _ in 0..MAX_RELAY_DEPTH {
            deep = relay(v6msg::RELAY_FORW, deep, "2001:db8::1", None);
        }
        assert!(
            unwrap(&deep, 4096).is_ok(),
            "{MAX_RELAY_DEPTH} envelopes are fine"
        );
        let deeper = relay(v6msg::RELAY_FORW, deep, "2001:db8::1", None);
        assert_eq!(unwrap(&deeper, 4096).err(), Some(Unwrap::TooDeep));
    }
}
