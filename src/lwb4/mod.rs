//! The client side of DHCPv4-over-DHCPv6 (RFC 7341), sans-io: a simulated lwB4 ([`LwB4`]) that
//! builds DHCPV4-QUERY datagrams (message 20, option 87 carrying DISCOVER, REQUEST in the
//! SELECTING, RENEWING and REBINDING states, RELEASE), optionally wrapped in one Relay-Forward
//! ([`RelayHop`]), and reads the server's DHCPV4-RESPONSE (21), direct or inside a Relay-Reply
//! (13), into a [`Response`].
//!
//! Shared by `loadgen churn` and the tests. No sockets, no clock: the caller sends the bytes,
//! feeds back what it receives and keeps time.
//!
//! Client identity follows RFC 4361: option 61 is type 255, a 4-octet IAID and a DUID-LL
//! (type 3, hardware type 1, a 6-octet MAC derived from the client index). Clients marked
//! `shared` list option 159 in their Parameter Request List (RFC 7618 §4), which makes the demo
//! server choose its shared-address subnet. Every REQUEST carries option 109 (RFC 8539 §5.1)
//! with the client's softwire source.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::codes::{v4msg, v4opt, v6msg};
use crate::proto::dhcp4o6::Flags;
use crate::proto::record::PortParams;
use crate::proto::v4::{ClientId, Message as V4Message, V4Option};
use crate::proto::v6::{Message as V6Message, RelayMessage, V6Option};

/// Why a datagram received by the client is not a usable DHCPV4-RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The DHCPv6 envelope did not decode.
    #[error("malformed DHCPv6 envelope")]
    MalformedV6,
    /// A Relay-Reply was expected (the query was relayed) and something else came, or the
    /// reverse.
    #[error("unexpected DHCPv6 message type {0}")]
    UnexpectedType(u8),
    /// The Relay-Reply does not match the relay hop the query went through.
    #[error("Relay-Reply does not match the relay hop")]
    RelayMismatch,
    /// No option 9 (Relay Message) in the Relay-Reply.
    #[error("Relay-Reply without a Relay Message option")]
    NoRelayMsg,
    /// No (or more than one) option 87 in the DHCPV4-RESPONSE.
    #[error("DHCPV4-RESPONSE without exactly one DHCPv4-Message option")]
    NoDhcpv4Msg,
    /// The DHCPv4 message did not decode.
    #[error("malformed DHCPv4 message")]
    MalformedV4,
    /// The DHCPv4 message is not a BOOTREPLY OFFER, ACK or NAK.
    #[error("unexpected DHCPv4 message (op {op}, type {msg_type:?})")]
    UnexpectedV4 {
        /// BOOTP op.
        op: u8,
        /// Option 53, if any.
        msg_type: Option<u8>,
    },
}

/// What kind of DHCPv4 reply came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// DHCPOFFER.
    Offer,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
}

/// The fields of a DHCPV4-RESPONSE an lwB4 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// OFFER, ACK or NAK.
    pub kind: ReplyKind,
    /// The DHCPv4 transaction id (matches the query's).
    pub xid: u32,
    /// yiaddr.
    pub yiaddr: Ipv4Addr,
    /// Option 51, seconds.
    pub lease_time: Option<u32>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 159 (shared address: PSID length, offset and PSID).
    pub port_params: Option<PortParams>,
    /// Option 109 (the softwire source the server holds for this lease).
    pub softwire: Option<Ipv6Addr>,
    /// Option 61 echoed (RFC 6842), raw value.
    pub client_id: Option<Vec<u8>>,
}

/// One Relay-Forward hop the client's queries go through (a simulated relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHop {
    /// link-address (selects the server's subnet).
    pub link: Ipv6Addr,
    /// peer-address (the client's address as the relay saw it).
    pub peer: Ipv6Addr,
    /// Option 18 Interface-ID.
    pub interface_id: Option<Vec<u8>>,
    /// Option 53 Relay-ID (a DUID).
    pub relay_id: Option<Vec<u8>>,
    /// Option 37 Remote-ID: enterprise number and identifier.
    pub remote_id: Option<(u32, Vec<u8>)>,
}

impl RelayHop {
    /// Wraps `inner` (a DHCPV4-QUERY) in a Relay-Forward with hop-count 0.
    pub fn wrap(&self, inner: Vec<u8>) -> Vec<u8> {
        let mut options = Vec::with_capacity(4);
        if let Some(i) = &self.interface_id {
            options.push(V6Option::InterfaceId(i.clone()));
        }
        if let Some(r) = &self.relay_id {
            options.push(V6Option::RelayId(r.clone()));
        }
        if let Some((enterprise, id)) = &self.remote_id {
            options.push(V6Option::RemoteId {
                enterprise: *enterprise,
                remote_id: id.clone(),
            });
        }
        options.push(V6Option::RelayMsg(inner));
        let r = RelayMessage {
            msg_type: v6msg::RELAY_FORW,
            hop_count: 0,
            link_address: self.link,
            peer_address: self.peer,
            options,
        };
        let mut out = Vec::new();
        // A Relay-Forward of a query this module built always fits in 64 KiB.
        let _ = r.encode(&mut out);
        out
    }

    /// Unwraps a Relay-Reply for this hop: checks link and peer addresses and the echoed
    /// Interface-ID, returns the Relay Message payload.
    pub fn unwrap(&self, datagram: &[u8]) -> Result<Vec<u8>, ResponseError> {
        let r = RelayMessage::decode(datagram).map_err(|_| {
            // Tell a direct DHCPV4-RESPONSE apart from garbage.
            match datagram.first() {
                Some(&t) if t != v6msg::RELAY_REPL => ResponseError::UnexpectedType(t),
                _ => ResponseError::MalformedV6,
            }
        })?;
        if r.msg_type != v6msg::RELAY_REPL {
            return Err(ResponseError::UnexpectedType(r.msg_type));
        }
        if r.link_address != self.link || r.peer_address != self.peer {
            return Err(ResponseError::RelayMismatch);
        }
        let echoed = r.options.iter().find_map(|o| match o {
            V6Option::InterfaceId(i) => Some(i),
            _ => None,
        });
        if echoed != self.interface_id.as_ref() {
            return Err(ResponseError::RelayMismatch);
        }
        r.options
            .into_iter()
            .find_map(|o| match o {
                V6Option::RelayMsg(m) => Some(m),
                _ => None,
            })
            .ok_or(ResponseError::NoRelayMsg)
    }
}

/// Builds a DHCPV4-QUERY around an encoded DHCPv4 message, with the U flag (RFC 7341 §6.2) set
/// when `unicast`.
pub fn dhcpv4_query(v4: Vec<u8>, unicast: bool) -> Vec<u8> {
    let f = Flags::query(unicast).to_bytes();
    let m = V6Message {
        msg_type: v6msg::DHCPV4_QUERY,
        xid: u32::from_be_bytes([0, f[0], f[1], f[2]]),
        options: vec![V6Option::Dhcpv4Msg(v4)],
    };
    let mut out = Vec::new();
    let _ = m.encode(&mut out);
    out
}

/// Parses a datagram received by a client: a DHCPV4-RESPONSE, or a Relay-Reply around one when
/// `relay` is given. Never panics on any input.
pub fn parse_response(
    datagram: &[u8],
    relay: Option<&RelayHop>,
) -> Result<Response, ResponseError> {
    let owned;
    let body = match relay {
        Some(h) => {
            owned = h.unwrap(datagram)?;
            owned.as_slice()
        }
        None => datagram,
    };
    let v6 = V6Message::decode(body).map_err(|_| ResponseError::MalformedV6)?;
    if v6.msg_type != v6msg::DHCPV4_RESPONSE {
        return Err(ResponseError::UnexpectedType(v6.msg_type));
    }
    let mut msgs = v6.options.iter().filter_map(|o| match o {
        V6Option::Dhcpv4Msg(m) => Some(m),
        _ => None,
    });
    let (Some(raw), None) = (msgs.next(), msgs.next()) else {
        return Err(ResponseError::NoDhcpv4Msg);
    };
    let m = V4Message::decode(raw).map_err(|_| ResponseError::MalformedV4)?;
    let mt = m.message_type();
    let kind = match (m.op, mt) {
        (2, Some(v4msg::OFFER)) => ReplyKind::Offer,
        (2, Some(v4msg::ACK)) => ReplyKind::Ack,
        (2, Some(v4msg::NAK)) => ReplyKind::Nak,
        (op, msg_type) => return Err(ResponseError::UnexpectedV4 { op, msg_type }),
    };
    let mut r = Response {
        kind,
        xid: m.xid,
        yiaddr: m.yiaddr,
        lease_time: None,
        server_id: None,
        port_params: None,
        softwire: None,
        client_id: None,
    };
    for o in &m.options {
        match o {
            V4Option::LeaseTime(t) => r.lease_time = Some(*t),
            V4Option::ServerId(a) => r.server_id = Some(*a),
            V4Option::V4PortParams(p) => r.port_params = Some(*p),
            V4Option::Dhcp4o6SoftwireSource(a) => r.softwire = Some(*a),
            V4Option::ClientId(c) => {
                let mut v = Vec::new();
                c.write(&mut v);
                r.client_id = Some(v);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// The RFC 4361 client identifier (option 61 value) of simulated client `index`: type 255,
/// IAID = index, DUID-LL with the MAC of [`mac_of`].
pub fn client_id_of(index: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(15);
    v.push(255);
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(&[0, 3, 0, 1]);
    v.extend_from_slice(&mac_of(index));
    v
}

/// A locally administered MAC for client `index` (02:4c:xx:xx:xx:xx).
pub fn mac_of(index: u32) -> [u8; 6] {
    let b = index.to_be_bytes();
    [0x02, 0x4c, b[0], b[1], b[2], b[3]]
}

/// The softwire source of client `index` in generation `generation` under a /48: the prefix,
/// then the generation in the 4th group and the index in the low 32 bits.
pub fn softwire_of(prefix48: Ipv6Addr, index: u32, generation: u16) -> Ipv6Addr {
    let mut s = prefix48.segments();
    s[3] = generation;
    s[4] = 0;
    s[5] = 0;
    s[6] = (index >> 16) as u16;
    s[7] = index as u16;
    Ipv6Addr::from(s)
}

/// The lease an lwB4 holds after a DHCPACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The IPv4 address.
    pub addr: Ipv4Addr,
    /// The port set for a shared address.
    pub port_params: Option<PortParams>,
    /// The softwire source the server echoed in option 109 (falls back to the one sent).
    pub softwire: Ipv6Addr,
    /// The server identifier.
    pub server_id: Ipv4Addr,
    /// Lease time, seconds.
    pub lease_time: u32,
}

/// Where an lwB4 is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No lease, nothing outstanding.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST (SELECTING) sent, waiting for an ACK.
    Requesting,
    /// Holding a lease, nothing outstanding.
    Bound,
    /// REQUEST (RENEWING, U = 1) sent.
    Renewing,
    /// REQUEST (REBINDING, U = 0) sent.
    Rebinding,
    /// RELEASE sent (no reply expected); the lease is gone on the client's side.
    Released,
    /// DHCPINFORM sent, waiting for its DHCPACK (no lease involved).
    Informing,
}

/// What a response did to an [`LwB4`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An OFFER for the DISCOVER: send [`LwB4::request`] next.
    Offered,
    /// The REQUEST was ACKed: the client holds the lease.
    Acked(Held),
    /// A NAK: the client is back in INIT with no lease.
    Naked,
    /// The DHCPACK of a DHCPINFORM (configuration only, no lease).
    Informed,
    /// Not for this client now (wrong xid, wrong client-id, wrong phase); ignore it.
    Ignored,
}

/// A simulated lwB4 (one DHCP4o6 client), sans-io.
#[derive(Debug, Clone)]
pub struct LwB4 {
    index: u32,
    client_id: Vec<u8>,
    shared: bool,
    softwire: Ipv6Addr,
    relay: Option<RelayHop>,
    xid: u32,
    phase: Phase,
    offer: Option<Response>,
    held: Option<Held>,
}

impl LwB4 {
    /// Client `index` with its softwire source; `shared` lists option 159 in the PRL; `relay`
    /// wraps every query in that Relay-Forward.
    pub fn new(index: u32, shared: bool, softwire: Ipv6Addr, relay: Option<RelayHop>) -> LwB4 {
        LwB4 {
            index,
            client_id: client_id_of(index),
            shared,
            softwire,
            relay,
            xid: index << 8,
            phase: Phase::Init,
            offer: None,
            held: None,
        }
    }

    /// The client index.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The option 61 value.
    pub fn client_id(&self) -> &[u8] {
        &self.client_id
    }
    /// Lists option 159.
    pub fn shared(&self) -> bool {
        self.shared
    }
    /// The softwire source the client sends.
    pub fn softwire(&self) -> Ipv6Addr {
        self.softwire
    }
    /// The relay hop, if relayed.
    pub fn relay(&self) -> Option<&RelayHop> {
        self.relay.as_ref()
    }
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// The lease held, if any.
    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }
    /// The xid of the outstanding (or last) message: `index << 8 | n`.
    pub fn xid(&self) -> u32 {
        self.xid
    }
    /// Sets the softwire source sent from the next REQUEST on (an lwB4 whose IPv6 address
    /// changed, RFC 8539 §8.1).
    pub fn set_softwire(&mut self, s: Ipv6Addr) {
        self.softwire = s;
    }

    /// xids are `index << 8 | n` (n counts the client's transactions modulo 256), so the
    /// outstanding xids of clients whose indexes are below 2^24 never collide.
    fn next_xid(&mut self) {
        self.xid = (self.xid & !0xff) | (self.xid.wrapping_add(1) & 0xff);
    }

    fn v4(&self, msg_type: u8) -> V4Message {
        let mut m = V4Message::new(1, msg_type, self.xid);
        let _ = m.set_hw_addr(1, &mac_of(self.index));
        if let Ok(c) = ClientId::decode(&self.client_id) {
            m.options.push(V4Option::ClientId(c));
        }
        m
    }

    fn prl(&self, m: &mut V4Message) {
        let mut prl = vec![v4opt::SUBNET_MASK, v4opt::LEASE_TIME, 58, 59];
        if self.shared {
            prl.push(v4opt::V4_PORTPARAMS);
        }
        m.options.push(V4Option::ParameterRequestList(prl));
    }

    fn finish(&self, m: V4Message, unicast: bool) -> Vec<u8> {
        let mut v4 = Vec::new();
        let _ = m.encode(&mut v4);
        let q = dhcpv4_query(v4, unicast);
        match &self.relay {
            Some(h) => h.wrap(q),
            None => q,
        }
    }

    /// A DHCPDISCOVER (new xid); the client enters SELECTING and forgets any lease.
    pub fn discover(&mut self) -> Vec<u8> {
        self.next_xid();
        self.phase = Phase::Selecting;
        self.offer = None;
        self.held = None;
        let mut m = self.v4(v4msg::DISCOVER);
        self.prl(&mut m);
        self.finish(m, false)
    }

    /// The DHCPREQUEST (SELECTING) for the last OFFER: requested IP, server id, option 159 of
    /// the offer, option 109. `None` when there is no offer.
    pub fn request(&mut self) -> Option<Vec<u8>> {
        let o = self.offer.clone()?;
        self.phase = Phase::Requesting;
        let mut m = self.v4(v4msg::REQUEST);
        self.prl(&mut m);
        m.options.push(V4Option::RequestedIp(o.yiaddr));
        if let Some(s) = o.server_id {
            m.options.push(V4Option::ServerId(s));
        }
        if let Some(p) = o.port_params {
            m.options.push(V4Option::V4PortParams(p));
        }
        m.options
            .push(V4Option::Dhcp4o6SoftwireSource(self.softwire));
        Some(self.finish(m, false))
    }

    /// The same message again (a retransmission keeps the xid). `None` when nothing is
    /// outstanding.
    pub fn retransmit(&mut self) -> Option<Vec<u8>> {
        match self.phase {
            Phase::Selecting => {
                let mut m = self.v4(v4msg::DISCOVER);
                self.prl(&mut m);
                Some(self.finish(m, false))
            }
            Phase::Requesting => self.request(),
            Phase::Renewing => self.extend(true, false),
            Phase::Rebinding => self.extend(false, false),
            Phase::Informing => Some(self.inform_msg()),
            _ => None,
        }
    }

    /// A DHCPREQUEST in RENEWING (U = 1: ciaddr, no server id, no requested IP; new xid).
    /// `None` without a lease.
    pub fn renew(&mut self) -> Option<Vec<u8>> {
        self.extend(true, true)
    }

    /// A DHCPREQUEST in REBINDING (U = 0; new xid). `None` without a lease.
    pub fn rebind(&mut self) -> Option<Vec<u8>> {
        self.extend(false, true)
    }

    fn extend(&mut self, unicast: bool, new_xid: bool) -> Option<Vec<u8>> {
        let h = self.held.clone()?;
        if new_xid {
            self.next_xid();
        }
        self.phase = if unicast {
            Phase::Renewing
        } else {
            Phase::Rebinding
        };
        let mut m = self.v4(v4msg::REQUEST);
        m.ciaddr = h.addr;
        self.prl(&mut m);
        if let Some(p) = h.port_params {
            m.options.push(V4Option::V4PortParams(p));
        }
        m.options
            .push(V4Option::Dhcp4o6SoftwireSource(self.softwire));
        Some(self.finish(m, unicast))
    }

    /// A DHCPRELEASE of the lease (U = 1, ciaddr, server id); the client forgets the lease.
    /// `None` without a lease.
    pub fn release(&mut self) -> Option<Vec<u8>> {
        let h = self.held.take()?;
        self.next_xid();
        self.phase = Phase::Released;
        let mut m = self.v4(v4msg::RELEASE);
        m.ciaddr = h.addr;
        m.options.push(V4Option::ServerId(h.server_id));
        if let Some(p) = h.port_params {
            m.options.push(V4Option::V4PortParams(p));
        }
        Some(self.finish(m, true))
    }

    /// A DHCPINFORM (U = 1, new xid) from a client without a lease from this server: the
    /// server answers with a DHCPACK carrying configuration only. `loadgen churn` sends one
    /// after each RELEASE: its answer comes from the shard that owns the client, after the
    /// RELEASE, so it paces the releases and tells when they have been taken. `None` while the
    /// client holds a lease (RFC 2131 §3.4 is for externally configured addresses).
    pub fn inform(&mut self) -> Option<Vec<u8>> {
        if self.held.is_some() {
            return None;
        }
        self.next_xid();
        self.phase = Phase::Informing;
        Some(self.inform_msg())
    }

    fn inform_msg(&self) -> Vec<u8> {
        let mut m = self.v4(v4msg::INFORM);
        self.prl(&mut m);
        self.finish(m, true)
    }

    /// Feeds a received datagram. Errors are for datagrams that are not DHCPV4-RESPONSEs at
    /// all; a well-formed response for another xid, client or phase is [`Event::Ignored`].
    pub fn on_datagram(&mut self, datagram: &[u8]) -> Result<Event, ResponseError> {
        let r = parse_response(datagram, self.relay.as_ref())?;
        Ok(self.on_response(r))
    }

    /// Feeds a parsed response (see [`LwB4::on_datagram`]).
    pub fn on_response(&mut self, r: Response) -> Event {
        if r.xid != self.xid {
            return Event::Ignored;
        }
        if r.client_id.as_ref().is_some_and(|c| *c != self.client_id) {
            return Event::Ignored;
        }
        match (self.phase, r.kind) {
            (Phase::Selecting, ReplyKind::Offer) => {
                self.offer = Some(r);
                Event::Offered
            }
            (Phase::Requesting | Phase::Renewing | Phase::Rebinding, ReplyKind::Ack) => {
                let server_id = r
                    .server_id
                    .or(self.held.as_ref().map(|h| h.server_id))
                    .or(self.offer.as_ref().and_then(|o| o.server_id))
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                let h = Held {
                    addr: r.yiaddr,
                    port_params: r.port_params,
                    softwire: r.softwire.unwrap_or(self.softwire),
                    server_id,
                    lease_time: r.lease_time.unwrap_or(0),
                };
                self.held = Some(h.clone());
                self.offer = None;
                self.phase = Phase::Bound;
                Event::Acked(h)
            }
            (Phase::Informing, ReplyKind::Ack) => {
                self.phase = Phase::Init;
                Event::Informed
            }
            (Phase::Requesting | Phase::Renewing | Phase::Rebinding, ReplyKind::Nak) => {
                self.held = None;
                self.offer = None;
                self.phase = Phase::Init;
                Event::Naked
            }
            _ => Event::Ignored,
        }
    }
}

#[cfg(test)]
mod tests;
