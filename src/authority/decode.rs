//! Decode: the DHCPv4 message of a DHCPV4-QUERY into the request facts the lease logic reads
//! ([`Req`]): typed options (a bad value of one the server uses drops the message), the RFC 4361
//! client identifier, the subnet selector address and the DHCPv6 context, and the circuit-id,
//! remote-id and relay-id the binding records (option 82 first, else the DHCPv6 relay).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{wire, Authority};
use crate::lease::{shard_of_client, RelayBinding, V6ContextBinding};
use crate::proto::codes::{v4opt, v4relay, BOOTREQUEST};
use crate::proto::record::PortParams;
use crate::proto::v4::{ClientId, MessageView as V4View, RelayAgentInfo};

/// The request's facts the lease logic needs, owned.
pub(super) struct Req<'a> {
    pub(super) v4: V4View<'a>,
    pub(super) client: Vec<u8>,
    pub(super) wants_159: bool,
    pub(super) unicast: bool,
    pub(super) requested: Option<Ipv4Addr>,
    pub(super) server_id: Option<Ipv4Addr>,
    pub(super) req_pp: Option<PortParams>,
    pub(super) softwire: Option<Ipv6Addr>,
    pub(super) ctx: V6ContextBinding,
    /// What the v4 binding records as circuit-id, remote-id and relay-id (see
    /// [`relay_fields`]).
    pub(super) circuit_id: Option<Vec<u8>>,
    pub(super) remote_id: Option<Vec<u8>>,
    pub(super) relay_id: Option<Vec<u8>>,
    pub(super) oro_br: bool,
    pub(super) oro_bind_prefix: bool,
}

/// The circuit-id, remote-id and relay-id a v4 binding records: each from option 82 inside
/// the DHCPv4 message (sub-options 1, 2 and 12; RFC 3046, RFC 6925) when it has that
/// sub-option, otherwise from the innermost DHCPv6 relay (Remote-ID, Relay-ID; a v6 relay has
/// no circuit-id). `Err` when option 82 is present but malformed (a sub-option running past
/// its end); the caller then keeps the relay chain's values. Never panics.
#[allow(clippy::type_complexity)]
pub(super) fn relay_fields(
    rai: Option<&[u8]>,
    relay: Option<&RelayBinding>,
) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>), ()> {
    let v6_remote = relay.and_then(|x| x.remote_id.clone());
    let v6_relay = relay.and_then(|x| x.relay_id.clone());
    let Some(rai) = rai else {
        return Ok((None, v6_remote, v6_relay));
    };
    let sub = |code| RelayAgentInfo::find(rai, code).map_err(|_| ());
    let (circuit, remote, relay_id) = (
        sub(v4relay::CIRCUIT_ID)?,
        sub(v4relay::REMOTE_ID)?,
        sub(v4relay::RELAY_ID)?,
    );
    Ok((
        circuit.map(<[u8]>::to_vec),
        remote.map(<[u8]>::to_vec).or(v6_remote),
        relay_id.map(<[u8]>::to_vec).or(v6_relay),
    ))
}

pub(super) fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

pub(super) fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

impl Authority {
    /// Takes the DHCPv4 message of a DHCPV4-QUERY apart: its message type, the selector
    /// address (the innermost relay's link-address that is neither unspecified nor link-local,
    /// else the innermost peer, else `src`) and the [`Req`] the lease logic reads. `None` when
    /// it is dropped (counted under its `drop_*` reason). `first_run` is false when the same
    /// datagram is handled again with a claim's answer, so nothing is counted twice.
    pub(super) fn decode<'a>(
        &mut self,
        q: &wire::Query<'a>,
        src: Ipv6Addr,
        first_run: bool,
    ) -> Option<(u8, Ipv6Addr, Req<'a>)> {
        let v4 = q.v4;
        let Some(msg_type) = v4.message_type().filter(|_| v4.op == BOOTREQUEST) else {
            self.counters.drop_bad_v4_type += 1;
            return None;
        };
        let client: Vec<u8> = match v4.option(v4opt::CLIENT_ID) {
            Some(c) if matches!(ClientId::decode(&c), Ok(ClientId::Rfc4361 { .. })) => {
                c.into_owned()
            }
            _ => {
                self.counters.drop_no_client_id += 1;
                return None;
            }
        };
        if shard_of_client(&client, self.shards) != self.shard {
            self.counters.drop_wrong_shard += 1;
            return None;
        }
        // Typed options; a bad value of one we use drops the message.
        let mut bad = false;
        let mut get4 = |code: u8| -> Option<Ipv4Addr> {
            let v = v4.option(code)?;
            let a = ip4(&v);
            bad |= a.is_none();
            a
        };
        let requested = get4(v4opt::REQUESTED_IP);
        let server_id = get4(v4opt::SERVER_ID);
        let req_pp = match v4.option(v4opt::V4_PORTPARAMS).as_deref() {
            None => None,
            Some(&[off, k, p0, p1]) => {
                let pp = PortParams::from_wire(off, k, u16::from_be_bytes([p0, p1]));
                bad |= pp.is_none();
                pp
            }
            Some(_) => {
                bad = true;
                None
            }
        };
        let softwire = match v4.option(v4opt::DHCP4O6_S46_SADDR) {
            None => None,
            Some(v) => match <[u8; 16]>::try_from(v.as_ref()) {
                Ok(b) => Some(Ipv6Addr::from(b)),
                Err(_) => {
                    bad = true;
                    None
                }
            },
        };
        let wants_159 = v4
            .option(v4opt::PARAMETER_REQUEST_LIST)
            .is_some_and(|p| p.contains(&v4opt::V4_PORTPARAMS));
        if bad {
            self.counters.drop_malformed_v4 += 1;
            return None;
        }
        let innermost = q.hops.last();
        let selector = q
            .hops
            .iter()
            .rev()
            .map(|h| h.link)
            .find(|l| !l.is_unspecified() && !is_link_local(*l))
            .or(innermost.map(|h| h.peer))
            .unwrap_or(src);
        let ctx = V6ContextBinding {
            client_src: innermost.map_or(src, |h| h.peer),
            link: selector,
            relay: innermost.map(|h| RelayBinding {
                hop_count: h.hop_count,
                link_address: h.link,
                peer_address: h.peer,
                interface_id: h.interface_id.map(<[u8]>::to_vec),
                relay_id: h.relay_id.map(<[u8]>::to_vec),
                remote_id: h.remote_id.map(<[u8]>::to_vec),
            }),
        };
        let rai = v4.option(v4opt::RELAY_AGENT_INFO);
        let (circuit_id, remote_id, relay_id) =
            match relay_fields(rai.as_deref(), ctx.relay.as_ref()) {
                Ok(f) => f,
                Err(()) => {
                    // A relay agent's broken option 82 does not cost the client its lease: it is
                    // ignored (counted), the v6 relay chain's values are kept.
                    if first_run {
                        // (Counted once: not again when handled with a claim's answer.)
                        self.counters.option82_malformed += 1;
                    }
                    relay_fields(None, ctx.relay.as_ref()).unwrap_or_default()
                }
            };
        let req = Req {
            circuit_id,
            remote_id,
            relay_id,
            v4,
            client,
            wants_159,
            unicast: q.flags.unicast(),
            requested,
            server_id,
            req_pp,
            softwire,
            ctx,
            oro_br: q.oro_br,
            oro_bind_prefix: q.oro_bind_prefix,
        };
        Some((msg_type, selector, req))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::testutil::{authority, cfg, cid, query, src, v4, SERVER};
    use super::super::wire::Hop;
    use super::*;
    use crate::proto::codes::{v4msg, BOOTREPLY};
    use crate::proto::v4::{Message, V4Option};

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    #[test]
    fn a_request_is_taken_apart_into_its_facts() {
        let sw = v6("2001:db8:1::9");
        let bytes = v4(
            v4msg::REQUEST,
            7,
            Ipv4Addr::UNSPECIFIED,
            vec![
                V4Option::RequestedIp(Ipv4Addr::new(192, 0, 2, 9)),
                V4Option::ServerId(SERVER),
                V4Option::Dhcp4o6SoftwireSource(sw),
                V4Option::ParameterRequestList(vec![1, v4opt::V4_PORTPARAMS]),
            ],
        );
        let q = query(&bytes, Vec::new(), true);
        let mut a = authority(&cfg());
        let (t, selector, r) = a.decode(&q, src(), true).expect("decoded");
        assert_eq!(t, v4msg::REQUEST);
        // No relay: the selector is the client's own source.
        assert_eq!(selector, src());
        assert_eq!(r.client, cid(7));
        assert_eq!(r.requested, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(r.server_id, Some(SERVER));
        assert_eq!(r.softwire, Some(sw));
        assert!(r.wants_159 && r.unicast);
        assert_eq!(r.ctx.client_src, src());
        assert_eq!(r.ctx.relay, None);
    }

    #[test]
    fn the_selector_skips_link_local_relay_links() {
        let bytes = v4(v4msg::DISCOVER, 1, Ipv4Addr::UNSPECIFIED, Vec::new());
        let hop = |link: &str, peer: &str| Hop {
            hop_count: 0,
            link: v6(link),
            peer: v6(peer),
            interface_id: None,
            relay_id: Some(&[1, 2]),
            remote_id: None,
        };
        let mut a = authority(&cfg());
        // Outer relay on a global link, inner one on a link-local link: the outer link wins.
        let q = query(
            &bytes,
            vec![hop("2001:db8:7::1", "fe80::2"), hop("fe80::1", "fe80::3")],
            false,
        );
        let (_, selector, r) = a.decode(&q, src(), true).expect("decoded");
        assert_eq!(selector, v6("2001:db8:7::1"));
        assert_eq!(r.ctx.link, selector);
        // The innermost relay is recorded, and its peer is the client's source.
        assert_eq!(r.ctx.client_src, v6("fe80::3"));
        assert_eq!(r.relay_id.as_deref(), Some(&[1, 2][..]));
        // Only link-local links: the innermost peer.
        let q = query(&bytes, vec![hop("fe80::1", "2001:db8:9::3")], false);
        let (_, selector, _) = a.decode(&q, src(), true).expect("decoded");
        assert_eq!(selector, v6("2001:db8:9::3"));
    }

    #[test]
    fn drops_are_counted_under_their_reason() {
        let mut a = authority(&cfg());
        // No RFC 4361 client identifier.
        let mut m = Message::new(BOOTREQUEST, v4msg::DISCOVER, 1);
        m.set_hw_addr(1, &[1, 2, 3, 4, 5, 6]).expect("hw");
        let mut bytes = Vec::new();
        m.encode(&mut bytes).expect("encode");
        assert!(a
            .decode(&query(&bytes, Vec::new(), false), src(), true)
            .is_none());
        assert_eq!(a.counters.drop_no_client_id, 1);
        // A BOOTREPLY.
        let mut m = Message::new(BOOTREPLY, v4msg::ACK, 1);
        m.options
            .push(V4Option::ClientId(ClientId::decode(&cid(1)).expect("cid")));
        let mut bytes = Vec::new();
        m.encode(&mut bytes).expect("encode");
        assert!(a
            .decode(&query(&bytes, Vec::new(), false), src(), true)
            .is_none());
        assert_eq!(a.counters.drop_bad_v4_type, 1);
        // A client of another shard.
        let mut two = Authority::new(&cfg(), 0, 2);
        let n = (0..64)
            .find(|&n| shard_of_client(&cid(n), 2) == 1)
            .expect("a client of shard 1");
        let bytes = v4(v4msg::DISCOVER, n, Ipv4Addr::UNSPECIFIED, Vec::new());
        assert!(two
            .decode(&query(&bytes, Vec::new(), false), src(), true)
            .is_none());
        assert_eq!(two.counters.drop_wrong_shard, 1);
    }

    #[test]
    fn option_82_sub_options_win_over_the_v6_relay() {
        let relay = RelayBinding {
            hop_count: 0,
            link_address: Ipv6Addr::UNSPECIFIED,
            peer_address: Ipv6Addr::UNSPECIFIED,
            interface_id: None,
            relay_id: Some(vec![9]),
            remote_id: Some(vec![8]),
        };
        // Circuit-id 1 and remote-id 2 present; relay-id 12 absent: from the v6 relay.
        let rai = [1, 2, 0xaa, 0xbb, 2, 1, 0xcc];
        let got = relay_fields(Some(&rai), Some(&relay)).expect("well formed");
        assert_eq!(
            got,
            (Some(vec![0xaa, 0xbb]), Some(vec![0xcc]), Some(vec![9]))
        );
        // No option 82: the relay chain's values, no circuit-id.
        let got = relay_fields(None, Some(&relay)).expect("none");
        assert_eq!(got, (None, Some(vec![8]), Some(vec![9])));
        // A sub-option running past the end is an error (the caller keeps the relay's).
        assert!(relay_fields(Some(&[1, 5, 0]), Some(&relay)).is_err());
    }

    #[test]
    fn small_helpers() {
        assert_eq!(ip4(&[192, 0, 2, 1]), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(ip4(&[192, 0, 2]), None);
        assert!(is_link_local(v6("fe80::1")));
        assert!(is_link_local(v6("febf::1")));
        assert!(!is_link_local(v6("fec0::1")));
        assert!(!is_link_local(v6("2001:db8::1")));
    }
}
