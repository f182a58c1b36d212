//! What one message of a leasequery reply stream is, and where a stream ends.
//!
//! Borrowed views only: a message is classified without copying it, so a requestor that only
//! counts a million bindings decodes each message's type and options once.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::codes::{v4msg, v4opt, v4status, v6msg, v6opt, v6status};
use crate::proto::record::PortParams;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{MessageView as V6View, OptionsView};

/// The wire form of a query and its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// DHCPv6 leasequery (TCP 547).
    V6,
    /// DHCPv4 leasequery (TCP 67).
    V4,
    /// DHCP4o6: DHCPv6 messages (TCP 547) carrying the DHCPv4 ones in OPTION_DHCPV4_MSG.
    O6,
}

/// A status code in the space of the layer that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A DHCPv6 status code (RFC 8415 §21.13, RFC 5460 §5.3, RFC 7653 §5).
    V6(u16),
    /// A DHCPv4 status code, option 151 (RFC 6926 §6.2.2, RFC 7724 §5).
    V4(u8),
}

impl Status {
    /// The code in DHCPv6 terms (a DHCPv4 code is mapped when it has a v6 twin, else kept).
    pub fn v6(self) -> u16 {
        match self {
            Status::V6(c) => c,
            Status::V4(c) => crate::proto::codes::v6_status_for_v4(c).unwrap_or(u16::from(c)),
        }
    }
}

/// A binding in a reply, not yet decoded: the DHCPv4 answer (v4, or option 87 of a DHCP4o6
/// message) and the v6 OPTION_CLIENT_DATA payload when the message had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The DHCPv4 DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED (v4, DHCP4o6).
    pub v4: Option<&'a [u8]>,
    /// The OPTION_CLIENT_DATA payload (v6, DHCP4o6).
    pub client_data: Option<&'a [u8]>,
}

impl<'a> Binding<'a> {
    /// The DHCPv4 binding, when there is one and it decodes.
    pub fn v4_binding(&self) -> Option<ReportedV4<'a>> {
        ReportedV4::parse(self.v4?)
    }

    /// The DHCPv6 binding (a plain v6 OPTION_CLIENT_DATA), when it decodes.
    pub fn v6_binding(&self) -> Option<ReportedV6<'a>> {
        if self.v4.is_some() {
            return None;
        }
        ReportedV6::parse(self.client_data?)
    }
}

/// A binding as a DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED reports it (ciaddr, options 61, 159,
/// 109), borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedV4<'a> {
    /// ciaddr.
    pub addr: Ipv4Addr,
    /// Option 61 payload.
    pub client_id: Option<&'a [u8]>,
    /// Option 159.
    pub port_params: Option<PortParams>,
    /// Option 109.
    pub softwire: Option<Ipv6Addr>,
    /// DHCPLEASEACTIVE (else DHCPLEASEUNASSIGNED).
    pub active: bool,
}

impl<'a> ReportedV4<'a> {
    /// Parses a DHCPv4 message; `None` unless it is a DHCPLEASEACTIVE or DHCPLEASEUNASSIGNED.
    pub fn parse(raw: &'a [u8]) -> Option<ReportedV4<'a>> {
        let v4 = V4View::parse(raw).ok()?;
        let active = match v4.message_type()? {
            v4msg::LEASEACTIVE => true,
            v4msg::LEASEUNASSIGNED => false,
            _ => return None,
        };
        let mut b = ReportedV4 {
            addr: v4.ciaddr,
            client_id: None,
            port_params: None,
            softwire: None,
            active,
        };
        for (code, value) in v4.options() {
            match code {
                v4opt::CLIENT_ID => b.client_id = Some(value),
                v4opt::V4_PORTPARAMS => {
                    if let [offset, psid_len, x, y] = *value {
                        b.port_params =
                            PortParams::from_wire(offset, psid_len, u16::from_be_bytes([x, y]));
                    }
                }
                v4opt::DHCP4O6_S46_SADDR => {
                    b.softwire = <[u8; 16]>::try_from(value).ok().map(Ipv6Addr::from);
                }
                _ => {}
            }
        }
        Some(b)
    }
}

/// A DHCPv6 binding from OPTION_CLIENT_DATA (RFC 5007 §4.1.2.2): the client's DUID and its
/// first address (OPTION_IAADDR; `::` when it has only prefixes), bound while its valid
/// lifetime is not zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedV6<'a> {
    /// OPTION_CLIENTID.
    pub duid: &'a [u8],
    /// The first OPTION_IAADDR's address, else the first OPTION_IAPREFIX's prefix.
    pub addr: Ipv6Addr,
    /// Some address or prefix has a non-zero valid lifetime.
    pub active: bool,
}

impl<'a> ReportedV6<'a> {
    /// Parses an OPTION_CLIENT_DATA payload; `None` without an OPTION_CLIENTID.
    pub fn parse(client_data: &'a [u8]) -> Option<ReportedV6<'a>> {
        let opts = OptionsView::new(client_data).ok()?;
        let duid = opts.get(v6opt::CLIENTID)?.data;
        let mut addr = None;
        let mut active = false;
        for o in opts.iter() {
            // IAADDR: addr(16) preferred(4) valid(4); IAPREFIX: preferred(4) valid(4) len(1) prefix(16).
            let (a, valid) = match o.code {
                v6opt::IAADDR if o.data.len() >= 24 => (&o.data[..16], &o.data[20..24]),
                v6opt::IAPREFIX if o.data.len() >= 25 => (&o.data[9..25], &o.data[4..8]),
                _ => continue,
            };
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?);
            addr.get_or_insert(a);
            active |= u32::from_be_bytes(valid.try_into().ok()?) > 0;
        }
        Some(ReportedV6 {
            duid,
            addr: addr.unwrap_or(Ipv6Addr::UNSPECIFIED),
            active,
        })
    }
}

/// One message of a reply stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A binding: v6 LEASEQUERY-REPLY or -DATA with OPTION_CLIENT_DATA (a DHCP4o6 one with the
    /// DHCPv4 answer in option 87), v4 DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED.
    Binding(Binding<'a>),
    /// A v6 LEASEQUERY-REPLY without a binding, with its status when it has one: the whole
    /// answer to a bulk query (empty, or refused), or the first answer to an active query.
    Reply(Option<u16>),
    /// A keepalive: v6 LEASEQUERY-DATA with neither binding nor status (RFC 7653 §8.2), v4
    /// DHCPLEASEQUERYSTATUS ConnectionActive (RFC 7724 §7.3).
    Keepalive,
    /// A status in mid-stream: v6 LEASEQUERY-DATA with a status (CatchUpComplete,
    /// DataMissing...), v4 DHCPLEASEQUERYSTATUS with another code (0 when it has none).
    Status(Status),
    /// The end: v6 LEASEQUERY-DONE (its status, if any), v4 DHCPLEASEQUERYDONE (0 when none).
    Done(Option<Status>),
    /// Anything else (not a leasequery answer, or undecodable).
    Other,
}

/// The status of a v6 message (the first two octets of OPTION_STATUS_CODE).
fn status6(v: &V6View<'_>) -> Option<u16> {
    v.options()
        .get(v6opt::STATUS_CODE)
        .and_then(|o| o.data.get(..2))
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Classifies one message of a stream in `wire` form. For DHCP4o6 the answer is the v6
/// layer's (its binding carries the DHCPv4 message); [`inner`] gives the DHCPv4 layer.
/// Never panics on any input.
pub fn classify(wire: Wire, msg: &[u8]) -> Answer<'_> {
    match wire {
        Wire::V4 => classify4(msg),
        Wire::V6 | Wire::O6 => classify6(msg),
    }
}

fn classify6(msg: &[u8]) -> Answer<'_> {
    let Ok(v) = V6View::parse(msg) else {
        return Answer::Other;
    };
    let t = v.msg_type;
    if t == v6msg::LEASEQUERY_DONE {
        return Answer::Done(status6(&v).map(Status::V6));
    }
    if t != v6msg::LEASEQUERY_REPLY && t != v6msg::LEASEQUERY_DATA {
        return Answer::Other;
    }
    if let Some(cd) = v.options().get(v6opt::CLIENT_DATA) {
        return Answer::Binding(Binding {
            v4: v.options().get(v6opt::DHCPV4_MSG).map(|o| o.data),
            client_data: Some(cd.data),
        });
    }
    match (t == v6msg::LEASEQUERY_REPLY, status6(&v)) {
        (true, s) => Answer::Reply(s),
        (false, Some(s)) => Answer::Status(Status::V6(s)),
        (false, None) => Answer::Keepalive,
    }
}

fn classify4(msg: &[u8]) -> Answer<'_> {
    let Ok(v) = V4View::parse(msg) else {
        return Answer::Other;
    };
    let status = || {
        v.option(v4opt::STATUS_CODE)
            .and_then(|s| s.first().copied())
            .unwrap_or(v4status::SUCCESS)
    };
    match v.message_type() {
        Some(v4msg::LEASEACTIVE | v4msg::LEASEUNASSIGNED) => Answer::Binding(Binding {
            v4: Some(msg),
            client_data: None,
        }),
        Some(v4msg::LEASEQUERYSTATUS) => match status() {
            v4status::CONNECTION_ACTIVE => Answer::Keepalive,
            s => Answer::Status(Status::V4(s)),
        },
        Some(v4msg::LEASEQUERYDONE) => Answer::Done(Some(Status::V4(status()))),
        _ => Answer::Other,
    }
}

/// The DHCPv4 layer of a DHCP4o6 message: the payload of its OPTION_DHCPV4_MSG.
pub fn inner(msg: &[u8]) -> Option<&[u8]> {
    V6View::parse(msg)
        .ok()?
        .options()
        .get(v6opt::DHCPV4_MSG)
        .map(|o| o.data)
}

/// How a stream ended, as [`Stream`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server ended the stream: a bulk answer is complete (v6 LEASEQUERY-DONE, a REPLY
    /// without bindings, v4 DHCPLEASEQUERYDONE), or an active query was ended (DONE with, e.g.,
    /// QueryTerminated); with the status it carried.
    Complete(Option<Status>),
    /// The server cannot serve the catch-up from that start time (DataMissing, RFC 7653 §8.1,
    /// RFC 7724 §8.1): load the bindings again with a bulk query and subscribe anew.
    DataMissing,
    /// An active query's answer refused it (REPLY or a status message other than success and
    /// CatchUpComplete).
    Refused(Status),
    /// An active query got a message that is no leasequery answer.
    Unexpected,
}

/// Follows one reply stream: counts its bindings, says when an active query's catch-up is
/// complete and where the stream ends. Sans-io: the caller feeds each received message.
#[derive(Debug, Clone)]
pub struct Stream {
    wire: Wire,
    active: bool,
    caught_up: bool,
    bindings: u64,
    end: Option<Ending>,
}

impl Stream {
    /// The stream of a bulk query.
    pub fn bulk(wire: Wire) -> Stream {
        Stream {
            wire,
            active: false,
            caught_up: false,
            bindings: 0,
            end: None,
        }
    }

    /// The stream of an active query: the catch-up (up to CatchUpComplete, see
    /// [`Stream::caught_up`]) and then the updates, until the server ends it or refuses.
    pub fn active(wire: Wire) -> Stream {
        Stream {
            active: true,
            ..Stream::bulk(wire)
        }
    }

    /// Takes the next message; returns its classification. Once [`Stream::end`] is set the
    /// stream is over (later messages still classify but do not change it).
    pub fn handle<'a>(&mut self, msg: &'a [u8]) -> Answer<'a> {
        let a = classify(self.wire, msg);
        if self.end.is_some() {
            return a;
        }
        let data_missing = |s: Status| s.v6() == v6status::DATA_MISSING;
        self.end = match (self.active, a) {
            (_, Answer::Binding(_)) => {
                self.bindings += 1;
                None
            }
            (_, Answer::Done(Some(s))) if self.active && data_missing(s) => {
                Some(Ending::DataMissing)
            }
            (_, Answer::Done(s)) => Some(Ending::Complete(s)),
            (false, Answer::Reply(s)) => Some(Ending::Complete(s.map(Status::V6))),
            (false, _) => None,
            (true, Answer::Keepalive | Answer::Reply(None | Some(v6status::SUCCESS))) => None,
            (true, Answer::Status(s)) if s.v6() == v6status::CATCH_UP_COMPLETE => {
                self.caught_up = true;
                None
            }
            (true, Answer::Status(s)) if s.v6() == v6status::SUCCESS => None,
            (true, Answer::Reply(Some(s))) if data_missing(Status::V6(s)) => {
                Some(Ending::DataMissing)
            }
            (true, Answer::Status(s)) if data_missing(s) => Some(Ending::DataMissing),
            (true, Answer::Reply(Some(s))) => Some(Ending::Refused(Status::V6(s))),
            (true, Answer::Status(s)) => Some(Ending::Refused(s)),
            (true, Answer::Other) => Some(Ending::Unexpected),
        };
        a
    }

    /// Bindings seen so far.
    pub fn bindings(&self) -> u64 {
        self.bindings
    }

    /// An active query's catch-up is complete (CatchUpComplete came): the table now holds
    /// every binding changed since the start time, and updates follow.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// How the stream ended, once it has.
    pub fn end(&self) -> Option<Ending> {
        self.end
    }
}

/// What the server answered to STARTTLS / DHCPTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsAnswer {
    /// REPLY (v6) or DHCPTLS (v4) without a status (or status Success), with the xid of the
    /// request: the TLS handshake follows.
    Accepted,
    /// The same with another status (TLSConnectionRefused...): the requestor closes.
    Refused(Status),
    /// Not an answer to the request (another type or xid, undecodable).
    Other,
}

/// Classifies the answer `msg` to a STARTTLS (`wire` V6 or O6) or DHCPTLS (V4) with
/// transaction id `xid`. Never panics on any input.
pub fn tls_answer(wire: Wire, xid: u32, msg: &[u8]) -> TlsAnswer {
    match wire {
        Wire::V6 | Wire::O6 => {
            let Ok(v) = V6View::parse(msg) else {
                return TlsAnswer::Other;
            };
            if v.msg_type != v6msg::REPLY || v.xid != xid & 0xff_ffff {
                return TlsAnswer::Other;
            }
            match status6(&v) {
                None | Some(0) => TlsAnswer::Accepted,
                Some(s) => TlsAnswer::Refused(Status::V6(s)),
            }
        }
        Wire::V4 => {
            let Ok(v) = V4View::parse(msg) else {
                return TlsAnswer::Other;
            };
            if v.message_type() != Some(v4msg::TLS) || v.xid != xid || v.op != 2 {
                return TlsAnswer::Other;
            }
            match v
                .option(v4opt::STATUS_CODE)
                .and_then(|s| s.first().copied())
            {
                None | Some(v4status::SUCCESS) => TlsAnswer::Accepted,
                Some(s) => TlsAnswer::Refused(Status::V4(s)),
            }
        }
    }
}

/// The server's base time a message carries, in Unix seconds: OPTION_LQ_BASE_TIME of a v6 or
/// DHCP4o6 message (sent when the query's ORO asked for it, RFC 7653 §6.3.1), else the
/// base-time option 152 of a DHCPv4 message or of a DHCP4o6 message's DHCPv4 layer (RFC 6926
/// §6.2.4). `None` when there is none or the message does not decode. Never panics.
pub fn base_time(wire: Wire, msg: &[u8]) -> Option<u32> {
    let v4 = |raw: &[u8]| {
        let m = V4View::parse(raw).ok()?;
        let b = m.option(v4opt::BASE_TIME)?;
        Some(u32::from_be_bytes(<[u8; 4]>::try_from(&b[..]).ok()?))
    };
    match wire {
        Wire::V4 => v4(msg),
        Wire::V6 | Wire::O6 => {
            let v = V6View::parse(msg).ok()?;
            if let Some(o) = v.options().get(v6opt::LQ_BASE_TIME) {
                let t = u32::from_be_bytes(o.data.try_into().ok()?);
                return u32::try_from(crate::proto::time::v6_to_unix(t)).ok();
            }
            v4(v.options().get(v6opt::DHCPV4_MSG)?.data)
        }
    }
}
