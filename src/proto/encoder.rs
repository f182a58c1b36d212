//! The streaming bulk/active leasequery reply encoder (RFC 5460 §5.2, RFC 7653 §6.3, RFC 6926
//! §7.3, RFC 7724 §7.4, and DHCP4o6 leasequery, docs/DESIGN.md section 4).
//!
//! A [`Reply`] names one message to send (a binding record, or a REPLY / DONE / STATUS / keepalive
//! message) together with the per-query parameters. [`StreamWriter::write`] writes the 2-octet
//! TCP length prefix (RFC 5460 §5.1, RFC 6926 §6.1), the header and the options with direct
//! big-endian puts straight into the caller's pre-sized buffer, back-patching each length as its
//! option closes; the BOOTP header is one copy of a template. Nothing is allocated per message
//! and the buffer never reallocates: past the writer's limit the sink stops writing and only
//! counts, so a message that does not fit is rolled back, leaving the buffer as it was, and
//! reported with its exact size ([`EncodeError::BufferFull`]); the caller flushes and writes the
//! same message again. A message that could never be framed (over 65535 octets, or an option
//! over its length field) is [`EncodeError::TooLong`].
//!
//! [`Reply::frame_len`] runs the same generic code over a sink that only counts, so the length
//! it computes is the length written. (A count-then-write encoder measured no faster: the
//! counting pass costs about an eighth of a write; `cargo bench --bench encoder`.)
//!
//! Bulk scans encode DHCPv4 and DHCP4o6 bindings with [`BindingEncoder`] instead: a template
//! of each message's per-query part made once per scan turn, then per record one copy, patches
//! and direct puts; its output is this module's, octet for octet (`tests/encoder_template.rs`),
//! and anything unusual goes through the code here.
//!
//! Stream shapes (which message is first) are the caller's; the encoder applies the per-message
//! rules: LEASEQUERY-REPLY carries Client-ID (the requestor's) and Server-ID, LEASEQUERY-DATA and
//! LEASEQUERY-DONE never do (RFC 5460 §5.2.1, §5.2.2); OPTION_LQ_BASE_TIME goes in every v6
//! message when the query's ORO asked for it (RFC 7653 §9.3); DHCPv4 option 54 goes only in the
//! first message of a stream (RFC 6926 §7.3); associated-ip (92) and DHCPLEASEUNKNOWN are never
//! sent (RFC 6926 §5).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::codes::{self, dhcp_state, v4msg, v4opt, v6msg, v6opt};
use super::error::EncodeError;
use super::record::{PortParams, RelayRecord, V4Record, V6Record};

mod params;
mod template;
pub use params::{
    Dhcp4o6ReplyParams, OroSet, PrlSet, V4ReplyParams, V4Status, V6ReplyParams, V6Status,
};
pub use template::BindingEncoder;

/// Seconds from 1970-01-01 to 2000-01-01: the DHCPv6 time epoch (RFC 8415 §11.2).
const EPOCH_2000: u32 = 946_684_800;
/// Largest DHCPv6 option payload, DHCPv4 TCP message or TCP frame body.
const MAX_LEN: usize = u16::MAX as usize;

/// One message of a reply stream. `first` marks the first message of the stream: for v6 it
/// makes a binding a LEASEQUERY-REPLY (else LEASEQUERY-DATA), for v4 it adds option 54.
/// In every variant `p` is the query's parameters, `rec` the binding and `status` the status
/// the message carries (for DHCP4o6 the v6 one; the v4 twin is derived).
#[derive(Debug, Clone, Copy)]
pub enum Reply<'a> {
    /// A plain DHCPv6 binding: REPLY{CLIENTID, SERVERID, \[STATUS\], \[BASE_TIME\], CLIENT_DATA} when
    /// first, else DATA{\[BASE_TIME\], CLIENT_DATA} (RFC 5460 §5.2, RFC 5007 §4.4.2).
    V6Binding {
        p: &'a V6ReplyParams<'a>,
        rec: &'a V6Record<'a>,
        first: bool,
    },
    /// A lone LEASEQUERY-REPLY without bindings: no match (no status) or an error (RFC 5460 §7.2).
    V6Reply {
        p: &'a V6ReplyParams<'a>,
        status: Option<V6Status<'a>>,
    },
    /// LEASEQUERY-DONE{\[BASE_TIME\], \[STATUS\]} (RFC 5460 §5.2.2, RFC 7653 §8.4).
    V6Done {
        p: &'a V6ReplyParams<'a>,
        status: Option<V6Status<'a>>,
    },
    /// LEASEQUERY-DATA{\[BASE_TIME\], STATUS}: CatchUpComplete or DataMissing (RFC 7653 §9.3).
    V6DataStatus {
        p: &'a V6ReplyParams<'a>,
        status: V6Status<'a>,
    },
    /// The empty LEASEQUERY-DATA{\[BASE_TIME\]} keepalive (RFC 7653 §8.4).
    V6Keepalive { p: &'a V6ReplyParams<'a> },
    /// A DHCPv4 binding: DHCPLEASEACTIVE when ACTIVE, else DHCPLEASEUNASSIGNED (RFC 6926 §8.3).
    V4Binding {
        p: &'a V4ReplyParams,
        rec: &'a V4Record<'a>,
        first: bool,
    },
    /// DHCPLEASEQUERYDONE with an optional status (RFC 6926 §7.3).
    V4Done {
        p: &'a V4ReplyParams,
        status: Option<V4Status<'a>>,
        first: bool,
    },
    /// DHCPLEASEQUERYSTATUS (RFC 7724 §7.4): CatchUpComplete, DataMissing, ConnectionActive,
    /// QueryTerminated...
    V4Status {
        p: &'a V4ReplyParams,
        status: V4Status<'a>,
        first: bool,
    },
    /// A DHCP4o6 binding: the v6 REPLY/DATA of [`Reply::V6Binding`] carrying OPTION_DHCPV4_MSG
    /// (the v4 binding message) and OPTION_CLIENT_DATA with the related IPv6 options.
    O6Binding {
        p: &'a Dhcp4o6ReplyParams<'a>,
        rec: &'a V4Record<'a>,
        first: bool,
    },
    /// A lone DHCP4o6 LEASEQUERY-REPLY carrying a DHCPLEASEQUERYDONE (with option 54) whose
    /// status means the same as the v6 one.
    O6Reply {
        p: &'a Dhcp4o6ReplyParams<'a>,
        status: Option<V6Status<'a>>,
    },
    /// A DHCP4o6 LEASEQUERY-DONE carrying DHCPLEASEQUERYDONE (same status in both layers).
    O6Done {
        p: &'a Dhcp4o6ReplyParams<'a>,
        status: Option<V6Status<'a>>,
    },
    /// A DHCP4o6 status LEASEQUERY-DATA carrying DHCPLEASEQUERYSTATUS (same status).
    O6DataStatus {
        p: &'a Dhcp4o6ReplyParams<'a>,
        status: V6Status<'a>,
    },
    /// A DHCP4o6 keepalive: empty LEASEQUERY-DATA carrying DHCPLEASEQUERYSTATUS ConnectionActive
    /// (the v4 keepalive, RFC 7724 §7.4; the v6 keepalive has no status, RFC 7653 §8.4).
    O6Keepalive { p: &'a Dhcp4o6ReplyParams<'a> },
}

/// Where one written message sits in the buffer: its frame (length prefix included) and the
/// offsets of its transaction ids, for [`patch_xids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedAt {
    /// Offset of the 2-octet length prefix.
    pub start: usize,
    /// Frame length, prefix included.
    pub len: usize,
    /// Offset of the 3-octet DHCPv6 transaction id, for v6 and DHCP4o6 messages.
    pub v6_xid_at: Option<usize>,
    /// Offset of the 4-octet DHCPv4 xid, for v4 and DHCP4o6 messages.
    pub v4_xid_at: Option<usize>,
}

/// Rewrites the transaction ids of an already encoded message (RFC 7653 §9.3 / RFC 7724 §7.4:
/// every update carries the subscriber's query xid), so one encoding serves many subscribers.
/// `v6_xid` is truncated to 24 bits. Offsets outside `buf` are ignored.
pub fn patch_xids(buf: &mut [u8], at: &EncodedAt, v6_xid: u32, v4_xid: u32) {
    if let Some(dst) = at.v6_xid_at.and_then(|o| buf.get_mut(o..o.checked_add(3)?)) {
        dst.copy_from_slice(&v6_xid.to_be_bytes()[1..]);
    }
    if let Some(dst) = at.v4_xid_at.and_then(|o| buf.get_mut(o..o.checked_add(4)?)) {
        dst.copy_from_slice(&v4_xid.to_be_bytes());
    }
}

impl Reply<'_> {
    /// The exact frame length (2-octet prefix included), or why it cannot be encoded.
    pub fn frame_len(&self) -> Result<usize, EncodeError> {
        let mut c = Count(0);
        self.encode(&mut c)?;
        Ok(c.0)
    }

    fn encode<S: Sink>(&self, s: &mut S) -> Result<Xids, EncodeError> {
        let mut x = Xids::default();
        framed(s, |s| match *self {
            Reply::V6Binding { p, rec, first } => {
                v6_head(s, &mut x, p, first, p.reply_status.filter(|_| first))?;
                v6_opt(s, v6opt::CLIENT_DATA, |s| v6_client_data(s, p, rec))
            }
            Reply::V6Reply { p, status } => v6_head(s, &mut x, p, true, status),
            Reply::V6Done { p, status } => v6_msg(s, &mut x, p, v6msg::LEASEQUERY_DONE, status),
            Reply::V6DataStatus { p, status } => {
                v6_msg(s, &mut x, p, v6msg::LEASEQUERY_DATA, Some(status))
            }
            Reply::V6Keepalive { p } => v6_msg(s, &mut x, p, v6msg::LEASEQUERY_DATA, None),
            Reply::V4Binding { p, rec, first } => v4_binding(s, &mut x, p, rec, first),
            Reply::V4Done { p, status, first } => {
                v4_lq_msg(s, &mut x, p, v4msg::LEASEQUERYDONE, status, first)
            }
            Reply::V4Status { p, status, first } => {
                v4_lq_msg(s, &mut x, p, v4msg::LEASEQUERYSTATUS, Some(status), first)
            }
            Reply::O6Binding { p, rec, first } => {
                v6_head(s, &mut x, &p.v6, first, p.v6.reply_status.filter(|_| first))?;
                v6_opt(s, v6opt::DHCPV4_MSG, |s| {
                    v4_binding(s, &mut x, &p.v4, rec, first)
                })?;
                v6_opt(s, v6opt::CLIENT_DATA, |s| o6_client_data(s, p, rec))
            }
            Reply::O6Reply { p, status } => {
                v6_head(s, &mut x, &p.v6, true, status)?;
                let v4 = status.map(|st| st.v4_twin());
                v6_opt(s, v6opt::DHCPV4_MSG, |s| {
                    v4_lq_msg(s, &mut x, &p.v4, v4msg::LEASEQUERYDONE, v4, true)
                })
            }
            Reply::O6Done { p, status } => {
                v6_msg(s, &mut x, &p.v6, v6msg::LEASEQUERY_DONE, status)?;
                let v4 = status.map(|st| st.v4_twin());
                v6_opt(s, v6opt::DHCPV4_MSG, |s| {
                    v4_lq_msg(s, &mut x, &p.v4, v4msg::LEASEQUERYDONE, v4, false)
                })
            }
            Reply::O6DataStatus { p, status } => {
                v6_msg(s, &mut x, &p.v6, v6msg::LEASEQUERY_DATA, Some(status))?;
                let v4 = status.v4_twin();
                v6_opt(s, v6opt::DHCPV4_MSG, |s| {
                    v4_lq_msg(s, &mut x, &p.v4, v4msg::LEASEQUERYSTATUS, Some(v4), false)
                })
            }
            Reply::O6Keepalive { p } => {
                v6_msg(s, &mut x, &p.v6, v6msg::LEASEQUERY_DATA, None)?;
                let v4 = V4Status {
                    code: codes::v4status::CONNECTION_ACTIVE,
                    text: "",
                };
                v6_opt(s, v6opt::DHCPV4_MSG, |s| {
                    v4_lq_msg(s, &mut x, &p.v4, v4msg::LEASEQUERYSTATUS, Some(v4), false)
                })
            }
        })?;
        Ok(x)
    }
}

/// Writes whole framed reply messages into a caller's pre-sized buffer, never past a fixed limit
/// (by default the buffer's capacity when the writer is made), so the buffer never reallocates.
///
/// Give it a buffer of at least [`MAX_FRAME`](crate::proto::framing::MAX_FRAME) octets (one
/// maximal frame) so that a message refused as [`EncodeError::BufferFull`] always fits once the
/// buffer has been flushed.
#[derive(Debug)]
pub struct StreamWriter<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
}

impl<'b> StreamWriter<'b> {
    /// A writer that appends to `buf` up to its current capacity.
    pub fn new(buf: &'b mut Vec<u8>) -> StreamWriter<'b> {
        let limit = buf.capacity();
        StreamWriter { buf, limit }
    }

    /// A writer that appends to `buf` up to `limit` octets in total (at most its capacity).
    pub fn with_limit(buf: &'b mut Vec<u8>, limit: usize) -> StreamWriter<'b> {
        let limit = limit.min(buf.capacity());
        StreamWriter { buf, limit }
    }

    /// Octets in the buffer (including what was there before the writer was made).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer holds nothing.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Octets that can still be written.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Appends one framed message. `Err(BufferFull)` or `Err(TooLong)`/`Err(Invalid)` leave
    /// the buffer unchanged.
    pub fn write(&mut self, reply: &Reply<'_>) -> Result<EncodedAt, EncodeError> {
        // One pass: octets go straight into the buffer while they fit under the limit; past
        // it the sink only counts, so a message that does not fit is rolled back and reported
        // with its exact size. Lengths are back-patched as each option closes.
        let start = self.buf.len();
        let available = self.remaining();
        let mut sink = LimitSink {
            buf: self.buf,
            limit: self.limit,
            virt: start,
        };
        let res = reply.encode(&mut sink);
        let end = sink.virt;
        match res {
            Ok(_) if end > self.limit => {
                self.buf.truncate(start);
                Err(EncodeError::BufferFull {
                    needed: end - start,
                    available,
                })
            }
            Ok(x) => Ok(EncodedAt {
                start,
                len: end - start,
                v6_xid_at: x.v6,
                v4_xid_at: x.v4,
            }),
            Err(e) => {
                // Never leave half a frame.
                self.buf.truncate(start);
                Err(e)
            }
        }
    }
}

/// The offsets of the transaction ids written so far in one message.
#[derive(Debug, Default, Clone, Copy)]
struct Xids {
    v6: Option<usize>,
    v4: Option<usize>,
}

/// Where encoded octets go: counted, or appended to a vector.
trait Sink {
    fn put(&mut self, b: &[u8]);
    fn pos(&self) -> usize;
    /// Overwrites two octets already put at `at` (a length field).
    fn set_u16(&mut self, at: usize, v: u16);
    /// Overwrites octets already put at `at` (fields of a template).
    fn patch(&mut self, at: usize, b: &[u8]);

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 = self.0.saturating_add(b.len());
    }
    fn pos(&self) -> usize {
        self.0
    }
    fn set_u16(&mut self, _: usize, _: u16) {}
    fn patch(&mut self, _: usize, _: &[u8]) {}
}

/// Appends to a vector while the message fits under `limit`; from the first octet past it on,
/// only counts (`virt` is the message's end as if everything had been written). While nothing
/// overflowed, `virt == buf.len()`.
struct LimitSink<'v> {
    buf: &'v mut Vec<u8>,
    limit: usize,
    virt: usize,
}

impl Sink for LimitSink<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        let end = self.virt.saturating_add(b.len());
        if end <= self.limit {
            self.buf.extend_from_slice(b);
        }
        self.virt = end;
    }
    #[inline]
    fn pos(&self) -> usize {
        self.virt
    }
    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(2)) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }
    #[inline]
    fn patch(&mut self, at: usize, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(b.len())) {
            dst.copy_from_slice(b);
        }
    }
}

/// A 16-bit length field at `at` covering everything written after it.
#[inline]
fn close_len<S: Sink>(s: &mut S, at: usize) -> Result<(), EncodeError> {
    let len = s.pos() - at - 2;
    let v = u16::try_from(len).map_err(|_| EncodeError::TooLong { len, max: MAX_LEN })?;
    s.set_u16(at, v);
    Ok(())
}

/// A TCP frame: 2-octet message size, then the message (RFC 5460 §5.1, RFC 6926 §6.1).
fn framed<S: Sink>(
    s: &mut S,
    body: impl FnOnce(&mut S) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let at = s.pos();
    s.u16(0);
    body(s)?;
    close_len(s, at)
}

/// A DHCPv6 option: code, length, payload written by `body`.
#[inline]
fn v6_opt<S: Sink>(
    s: &mut S,
    code: u16,
    body: impl FnOnce(&mut S) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    s.u16(code);
    let at = s.pos();
    s.u16(0);
    body(s)?;
    close_len(s, at)
}

/// A DHCPv6 option whose payload is one slice.
#[inline]
fn v6_bytes<S: Sink>(s: &mut S, code: u16, payload: &[u8]) -> Result<(), EncodeError> {
    v6_opt(s, code, |s| {
        s.put(payload);
        Ok(())
    })
}

#[inline]
fn v6_u32<S: Sink>(s: &mut S, code: u16, v: u32) -> Result<(), EncodeError> {
    v6_bytes(s, code, &v.to_be_bytes())
}

fn v6_status<S: Sink>(s: &mut S, st: V6Status<'_>) -> Result<(), EncodeError> {
    v6_opt(s, v6opt::STATUS_CODE, |s| {
        s.u16(st.code);
        s.put(st.text.as_bytes());
        Ok(())
    })
}

/// msg-type and the 24-bit transaction id (its offset is recorded).
#[inline]
fn v6_header<S: Sink>(s: &mut S, x: &mut Xids, msg_type: u8, xid: u32) {
    s.u8(msg_type);
    x.v6 = Some(s.pos());
    s.put(&xid.to_be_bytes()[1..]);
}

/// OPTION_LQ_BASE_TIME: now in DHCPv6 time (seconds since 2000-01-01 UTC, modulo 2^32).
fn v6_base_time<S: Sink>(s: &mut S, p: &V6ReplyParams<'_>) -> Result<(), EncodeError> {
    if p.base_time {
        v6_u32(s, v6opt::LQ_BASE_TIME, p.now.wrapping_sub(EPOCH_2000))?;
    }
    Ok(())
}

/// REPLY{CLIENTID, SERVERID, [STATUS], [BASE_TIME]} when `reply`, else DATA{[BASE_TIME]}.
fn v6_head<S: Sink>(
    s: &mut S,
    x: &mut Xids,
    p: &V6ReplyParams<'_>,
    reply: bool,
    status: Option<V6Status<'_>>,
) -> Result<(), EncodeError> {
    if reply {
        v6_header(s, x, v6msg::LEASEQUERY_REPLY, p.xid);
        v6_bytes(s, v6opt::CLIENTID, p.requestor_duid)?;
        v6_bytes(s, v6opt::SERVERID, p.server_duid)?;
        if let Some(st) = status {
            v6_status(s, st)?;
        }
        v6_base_time(s, p)
    } else {
        v6_header(s, x, v6msg::LEASEQUERY_DATA, p.xid);
        v6_base_time(s, p)
    }
}

/// DONE or DATA with `[STATUS]` and `[BASE_TIME]`, never Client-ID or Server-ID.
fn v6_msg<S: Sink>(
    s: &mut S,
    x: &mut Xids,
    p: &V6ReplyParams<'_>,
    msg_type: u8,
    status: Option<V6Status<'_>>,
) -> Result<(), EncodeError> {
    v6_header(s, x, msg_type, p.xid);
    if let Some(st) = status {
        v6_status(s, st)?;
    }
    v6_base_time(s, p)
}

// A remaining lifetime: `u32::MAX` (infinity) stays, past times are 0 (RFC 5007 §4.1.2.2).
use super::time::remaining;

/// OPTION_CLIENT_DATA contents of a plain v6 binding (RFC 5007 §4.1.2.2, RFC 5460 §5.2):
/// CLIENTID, IAADDR and IAPREFIX with remaining lifetimes, CLT_TIME, then ORO-selected
/// OPTION_RELAY_ID (53) and OPTION_REMOTE_ID (37) when recorded.
fn v6_client_data<S: Sink>(
    s: &mut S,
    p: &V6ReplyParams<'_>,
    rec: &V6Record<'_>,
) -> Result<(), EncodeError> {
    v6_bytes(s, v6opt::CLIENTID, rec.duid)?;
    for a in rec.iana {
        v6_opt(s, v6opt::IAADDR, |s| {
            s.put(&a.addr.octets());
            s.u32(remaining(a.preferred_until, p.now));
            s.u32(remaining(a.valid_until, p.now));
            Ok(())
        })?;
    }
    for pd in rec.iapd {
        v6_opt(s, v6opt::IAPREFIX, |s| {
            s.u32(remaining(pd.preferred_until, p.now));
            s.u32(remaining(pd.valid_until, p.now));
            s.u8(pd.prefix_len);
            s.put(&pd.prefix.octets());
            Ok(())
        })?;
    }
    v6_u32(s, v6opt::CLT_TIME, p.now.saturating_sub(rec.cltt))?;
    if let Some(id) = rec.relay_id.filter(|_| p.oro.contains(v6opt::RELAY_ID)) {
        v6_bytes(s, v6opt::RELAY_ID, id)?;
    }
    if let Some(id) = rec.remote_id.filter(|_| p.oro.contains(v6opt::REMOTE_ID)) {
        v6_bytes(s, v6opt::REMOTE_ID, id)?;
    }
    Ok(())
}

/// The DUID inside an RFC 4361 client identifier (option 61: type 255, IAID(4), DUID).
pub fn duid_of_client_id(client_id: &[u8]) -> Option<&[u8]> {
    match client_id {
        [255, _, _, _, _, duid @ ..] if !duid.is_empty() => Some(duid),
        _ => None,
    }
}

/// OPTION_S46_V4V6BIND (92): ipv4, bindprefix6-len 128, the softwire source, and
/// OPTION_S46_PORTPARAMS (93) for a shared address (RFC 7598 §4.4, §4.5).
fn s46_v4v6bind<S: Sink>(
    s: &mut S,
    addr: Ipv4Addr,
    src: Ipv6Addr,
    pp: Option<PortParams>,
) -> Result<(), EncodeError> {
    v6_opt(s, v6opt::S46_V4V6BIND, |s| {
        s.put(&addr.octets());
        s.u8(128);
        s.put(&src.octets());
        if let Some(pp) = pp {
            v6_opt(s, v6opt::S46_PORTPARAMS, |s| {
                s.put(&[pp.offset, pp.psid_len]);
                s.u16(pp.wire_psid());
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// OPTION_LQ_RELAY_DATA (47, RFC 5007 §4.1.2.4): peer-address, then the Relay-Forward rebuilt
/// from the record, without its OPTION_RELAY_MSG. The record does not keep the address the relay
/// message came from, so peer-address is the unspecified address `::`.
fn lq_relay_data<S: Sink>(s: &mut S, r: &RelayRecord<'_>) -> Result<(), EncodeError> {
    v6_opt(s, v6opt::LQ_RELAY_DATA, |s| {
        s.put(&Ipv6Addr::UNSPECIFIED.octets());
        s.put(&[v6msg::RELAY_FORW, r.hop_count]);
        s.put(&r.link_address.octets());
        s.put(&r.peer_address.octets());
        if let Some(v) = r.interface_id {
            v6_bytes(s, v6opt::INTERFACE_ID, v)?;
        }
        if let Some(v) = r.relay_id {
            v6_bytes(s, v6opt::RELAY_ID, v)?;
        }
        if let Some(v) = r.remote_id {
            v6_bytes(s, v6opt::REMOTE_ID, v)?;
        }
        Ok(())
    })
}

/// OPTION_CLIENT_DATA contents of a DHCP4o6 binding (docs/DESIGN.md section 4): CLIENTID (the DUID of
/// an RFC 4361 client-id, when there is one), CLT_TIME always (from the state start when the
/// last transaction time is unknown), then what the ORO asks for and is known: 92, 96{90, 92},
/// 137, 47. No softwire source -> no 92 and no 96 (never fabricated).
fn o6_client_data<S: Sink>(
    s: &mut S,
    p: &Dhcp4o6ReplyParams<'_>,
    rec: &V4Record<'_>,
) -> Result<(), EncodeError> {
    let now = p.v6.now;
    if let Some(duid) = rec.client_id.and_then(duid_of_client_id) {
        v6_bytes(s, v6opt::CLIENTID, duid)?;
    }
    let since = if rec.cltt != 0 {
        rec.cltt
    } else {
        rec.state_start
    };
    v6_u32(s, v6opt::CLT_TIME, now.saturating_sub(since))?;
    let oro = &p.v6.oro;
    if let Some(src) = rec.softwire_src {
        if oro.contains(v6opt::S46_V4V6BIND) {
            s46_v4v6bind(s, rec.addr, src, rec.port_params)?;
        }
        if oro.contains(v6opt::S46_CONT_LW) {
            v6_opt(s, v6opt::S46_CONT_LW, |s| {
                if let Some(br) = p.br {
                    v6_bytes(s, v6opt::S46_BR, &br.octets())?;
                }
                s46_v4v6bind(s, rec.addr, src, rec.port_params)
            })?;
        }
    }
    if let Some((len, prefix)) = p
        .bind_prefix
        .filter(|_| oro.contains(v6opt::S46_BIND_IPV6_PREFIX))
    {
        bind_prefix_opt(s, len, prefix)?;
    }
    if let Some(relay) = rec
        .v6
        .and_then(|v6| v6.relay)
        .filter(|_| oro.contains(v6opt::LQ_RELAY_DATA))
    {
        lq_relay_data(s, &relay)?;
    }
    Ok(())
}

/// OPTION_S46_BIND_IPV6_PREFIX (137, RFC 8539 §6): prefix length, then the prefix's octets.
fn bind_prefix_opt<S: Sink>(s: &mut S, len: u8, prefix: Ipv6Addr) -> Result<(), EncodeError> {
    if len > 128 {
        return Err(EncodeError::Invalid("bind prefix length over 128"));
    }
    v6_opt(s, v6opt::S46_BIND_IPV6_PREFIX, |s| {
        s.u8(len);
        s.put(
            prefix
                .octets()
                .get(..usize::from(len).div_ceil(8))
                .unwrap_or_default(),
        );
        Ok(())
    })
}

/// A DHCPv4 option of any length: split into consecutive 255-octet pieces (RFC 3396) when
/// longer. `parts` are concatenated into one payload.
#[inline]
fn v4_opt<S: Sink>(s: &mut S, code: u8, parts: &[&[u8]]) {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total <= 255 {
        // The common case: one piece.
        s.put(&[code, total as u8]);
        for part in parts {
            s.put(part);
        }
        return;
    }
    let mut left_total = total;
    let mut left_chunk = 0usize;
    for part in parts {
        let mut part: &[u8] = part;
        while !part.is_empty() {
            if left_chunk == 0 {
                left_chunk = left_total.min(255);
                s.put(&[code, left_chunk as u8]);
            }
            let (now, rest) = part.split_at(left_chunk.min(part.len()));
            s.put(now);
            left_chunk -= now.len();
            left_total -= now.len();
            part = rest;
        }
    }
}

#[inline]
fn v4_u32<S: Sink>(s: &mut S, code: u8, v: u32) {
    v4_opt(s, code, &[&v.to_be_bytes()]);
}

fn v4_status<S: Sink>(s: &mut S, st: V4Status<'_>) -> Result<(), EncodeError> {
    if st.text.as_bytes().contains(&0) {
        return Err(EncodeError::Invalid("status text contains NUL"));
    }
    v4_opt(s, v4opt::STATUS_CODE, &[&[st.code], st.text.as_bytes()]);
    Ok(())
}

/// A BOOTREPLY's fixed header (op 2, everything else zero) and the magic cookie: 240 octets.
const V4_FIXED: [u8; 240] = {
    let mut t = [0u8; 240];
    t[0] = codes::BOOTREPLY;
    t[236] = codes::MAGIC_COOKIE[0];
    t[237] = codes::MAGIC_COOKIE[1];
    t[238] = codes::MAGIC_COOKIE[2];
    t[239] = codes::MAGIC_COOKIE[3];
    t
};

/// The fixed BOOTREPLY header, magic cookie, option 53 and (first message) option 54.
#[allow(clippy::too_many_arguments)]
fn v4_header<S: Sink>(
    s: &mut S,
    x: &mut Xids,
    p: &V4ReplyParams,
    msg_type: u8,
    htype: u8,
    chaddr: &[u8],
    ciaddr: Ipv4Addr,
    first: bool,
) -> Result<(), EncodeError> {
    let hlen = u8::try_from(chaddr.len())
        .ok()
        .filter(|&l| l <= 16)
        .ok_or(EncodeError::Invalid("chaddr longer than 16 octets"))?;
    // The fixed part is one copy of a template; its variable fields are patched in place.
    let at = s.pos();
    s.put(&V4_FIXED);
    s.patch(at + 1, &[htype, hlen]);
    x.v4 = Some(at + 4);
    s.patch(at + 4, &p.xid.to_be_bytes());
    s.patch(at + 12, &ciaddr.octets());
    s.patch(at + 28, chaddr);
    s.put(&[v4opt::MESSAGE_TYPE, 1, msg_type]);
    if first {
        v4_opt(s, v4opt::SERVER_ID, &[&p.server_id.octets()]);
    }
    Ok(())
}

/// DHCPLEASEQUERYDONE / DHCPLEASEQUERYSTATUS: zero ciaddr, no client; [54], [151], 152.
fn v4_lq_msg<S: Sink>(
    s: &mut S,
    x: &mut Xids,
    p: &V4ReplyParams,
    msg_type: u8,
    status: Option<V4Status<'_>>,
    first: bool,
) -> Result<(), EncodeError> {
    v4_header(s, x, p, msg_type, 0, &[], Ipv4Addr::UNSPECIFIED, first)?;
    if let Some(st) = status {
        v4_status(s, st)?;
    }
    v4_u32(s, v4opt::BASE_TIME, p.now);
    s.u8(v4opt::END);
    Ok(())
}

/// A DHCPv4 binding message (RFC 6926 §7.3, §8.3; RFC 4388 §6.4.2).
///
/// Always: 53, 54 (first only), base-time 152, lease time 51 (when the state has a timeout),
/// client-id 61 and relay agent information 82 (when recorded; 82 last). When the PRL asks and
/// the value is known: start-time-of-state 153, client-last-transaction-time 91, dhcp-state 156,
/// data-source 157 (when non-zero), softwire source 109, port params 159. Never 92.
fn v4_binding<S: Sink>(
    s: &mut S,
    x: &mut Xids,
    p: &V4ReplyParams,
    rec: &V4Record<'_>,
    first: bool,
) -> Result<(), EncodeError> {
    let msg_type = if rec.state == dhcp_state::ACTIVE {
        v4msg::LEASEACTIVE
    } else {
        v4msg::LEASEUNASSIGNED
    };
    v4_header(s, x, p, msg_type, rec.htype, rec.chaddr, rec.addr, first)?;
    let now = p.now;
    let prl = &p.prl;
    v4_u32(s, v4opt::BASE_TIME, now);
    if rec.expires != 0 {
        // An infinite lease (expires u32::MAX) stays 0xffffffff (RFC 2132 §9.2, RFC 4388 §6.4.2).
        v4_u32(s, v4opt::LEASE_TIME, remaining(rec.expires, now));
    }
    if prl.contains(v4opt::START_TIME_OF_STATE) {
        v4_u32(
            s,
            v4opt::START_TIME_OF_STATE,
            now.saturating_sub(rec.state_start),
        );
    }
    if rec.cltt != 0 && prl.contains(v4opt::CLIENT_LAST_TRANSACTION_TIME) {
        v4_u32(
            s,
            v4opt::CLIENT_LAST_TRANSACTION_TIME,
            now.saturating_sub(rec.cltt),
        );
    }
    if prl.contains(v4opt::DHCP_STATE) {
        v4_opt(s, v4opt::DHCP_STATE, &[&[rec.state]]);
    }
    if rec.data_source != 0 && prl.contains(v4opt::DATA_SOURCE) {
        v4_opt(s, v4opt::DATA_SOURCE, &[&[rec.data_source]]);
    }
    if let Some(id) = rec.client_id {
        v4_opt(s, v4opt::CLIENT_ID, &[id]);
    }
    if let Some(src) = rec
        .softwire_src
        .filter(|_| prl.contains(v4opt::DHCP4O6_S46_SADDR))
    {
        v4_opt(s, v4opt::DHCP4O6_S46_SADDR, &[&src.octets()]);
    }
    if let Some(pp) = rec
        .port_params
        .filter(|_| prl.contains(v4opt::V4_PORTPARAMS))
    {
        let psid = pp.wire_psid().to_be_bytes();
        v4_opt(s, v4opt::V4_PORTPARAMS, &[&[pp.offset, pp.psid_len], &psid]);
    }
    relay_agent_info(s, rec)?;
    s.u8(v4opt::END);
    Ok(())
}

/// Option 82 with the recorded circuit-id (1), remote-id (2) and relay-id (12) sub-options
/// (RFC 3046, RFC 6925), when any is recorded.
fn relay_agent_info<S: Sink>(s: &mut S, rec: &V4Record<'_>) -> Result<(), EncodeError> {
    use codes::v4relay;
    let subs = [
        (v4relay::CIRCUIT_ID, rec.circuit_id),
        (v4relay::REMOTE_ID, rec.remote_id),
        (v4relay::RELAY_ID, rec.relay_id),
    ];
    let mut heads = [[0u8; 2]; 3];
    for ((code, v), head) in subs.iter().zip(heads.iter_mut()) {
        if let Some(v) = v {
            let len = u8::try_from(v.len()).map_err(|_| EncodeError::TooLong {
                len: v.len(),
                max: 255,
            })?;
            *head = [*code, len];
        }
    }
    let mut parts: [&[u8]; 6] = [&[]; 6];
    let mut any = false;
    for (i, ((_, v), head)) in subs.iter().zip(heads.iter()).enumerate() {
        if let Some(v) = v {
            any = true;
            parts[2 * i] = head;
            parts[2 * i + 1] = v;
        }
    }
    if any {
        v4_opt(s, v4opt::RELAY_AGENT_INFO, &parts);
    }
    Ok(())
}
