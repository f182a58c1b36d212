//! Builders the authority's unit tests share: the demo configuration, RFC 4361 client
//! identifiers, DHCPv4 requests and the [`wire::Query`] around them (built directly, so each
//! file's tests reach its logic without DHCPv6 encoding).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::{self, Hop};
use super::{Authority, AuthorityConfig, ValidConfig};
use crate::proto::codes::BOOTREQUEST;
use crate::proto::dhcp4o6::Flags;
use crate::proto::v4::{ClientId, Message, MessageView, V4Option};

/// The demo configuration (subnet 0 "full" 192.0.2.0/24, subnet 1 "shared" 198.51.100.0/24
/// with 4 PSID bits; both on ::1/128 and 2001:db8::/32; server id 192.0.2.1).
pub(super) fn cfg() -> ValidConfig {
    AuthorityConfig::demo().validate().expect("demo config")
}

/// A one-shard authority on `cfg`.
pub(super) fn authority(cfg: &ValidConfig) -> Authority {
    Authority::new(cfg, 0, 1)
}

/// The server id of [`cfg`].
pub(super) const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A direct client's IPv6 source on the demo links.
pub(super) fn src() -> Ipv6Addr {
    "2001:db8::5".parse().expect("addr")
}

/// Client `n`'s option 61 payload in RFC 4361 form (type 255, IAID, DUID).
pub(super) fn cid(n: u32) -> Vec<u8> {
    let mut v = vec![255];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0, 3, 0, 1, 2, 0, 0, 0, (n >> 8) as u8, n as u8]);
    v
}

/// An encoded BOOTREQUEST of `msg_type` from client `n` (chaddr and option 61 from `n`), with
/// `ciaddr` and the extra options.
pub(super) fn v4(msg_type: u8, n: u32, ciaddr: Ipv4Addr, opts: Vec<V4Option>) -> Vec<u8> {
    let mut m = Message::new(BOOTREQUEST, msg_type, n);
    m.set_hw_addr(1, &[2, 0, 0, 0, (n >> 8) as u8, n as u8])
        .expect("chaddr");
    m.ciaddr = ciaddr;
    m.options
        .push(V4Option::ClientId(ClientId::decode(&cid(n)).expect("cid")));
    m.options.extend(opts);
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode");
    out
}

/// The DHCPV4-QUERY taken apart around the DHCPv4 message `v4` (no relay, no ORO).
pub(super) fn query<'a>(v4: &'a [u8], hops: Vec<Hop<'a>>, unicast: bool) -> wire::Query<'a> {
    wire::Query {
        hops,
        flags: Flags::from_bytes([if unicast { 0x80 } else { 0 }, 0, 0]),
        oro_br: false,
        oro_bind_prefix: false,
        v4: MessageView::parse(v4).expect("parse"),
    }
}
