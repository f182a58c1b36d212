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
