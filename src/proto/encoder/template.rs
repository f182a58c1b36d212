//! The per-query template path for bulk binding records (DHCPv4 and DHCP4o6).
//!
//! A [`BindingEncoder`] is made once per query (per scan turn: it fixes `now`) and decides there
//! everything that does not depend on the binding: the frame prefix, the v6 header (with
//! Client-ID, Server-ID, status and base-time for a first message), the OPTION_DHCPV4_MSG
//! header, the BOOTP header with the v4 xid, option 53's header, option 54 (first message),
//! base-time 152, which PRL- and ORO-selected options go in, the BR and the bind-prefix option
//! 137. Per record it computes the exact length with a few additions, copies the head template
//! once, patches the binding's fields (lengths, htype/hlen, ciaddr, chaddr, message type) and
//! appends the variable options with direct puts.
//!
//! The output is the reference encoder's ([`Reply::V4Binding`] / [`Reply::O6Binding`] through
//! [`StreamWriter::write`]) octet for octet, result included (`tests/encoder_template.rs` checks
//! it over random bindings and parameters). Anything the fast path does not handle (chaddr over
//! 16 octets, an option-82 sub-option over 255, a message over 65535 octets, a per-query value
//! the reference refuses) goes through the reference encoder, so errors are its errors.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    bind_prefix_opt, duid_of_client_id, relay_agent_info, v4_header, v4_opt, v4_u32, v6_head,
    Dhcp4o6ReplyParams, EncodedAt, Reply, Sink, StreamWriter, V4ReplyParams, Xids, MAX_LEN,
};
use crate::proto::codes::{dhcp_state, v4msg, v4opt, v4relay, v6msg, v6opt};
use crate::proto::error::EncodeError;
use crate::proto::record::{PortParams, RelayRecord, V4Record};

/// A plain vector as a sink: appends without a limit (the template path checks the size
/// first), used to build the head template and for the rare long options.
impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline]
    fn pos(&self) -> usize {
        self.len()
    }
    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        patch(self, at, &v.to_be_bytes());
    }
    #[inline]
    fn patch(&mut self, at: usize, b: &[u8]) {
        patch(self, at, b);
    }
}

/// One message's frame, already sized, written front to back with a cursor kept in a register
/// (a put past the end writes nothing but still moves the cursor, so `pos != b.len()` at the
/// end tells a length mistake).
struct Out<'b> {
    b: &'b mut [u8],
    pos: usize,
}

impl Sink for Out<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        let end = self.pos.saturating_add(b.len());
        if let Some(dst) = self.b.get_mut(self.pos..end) {
            dst.copy_from_slice(b);
        }
        self.pos = end;
    }
    #[inline]
    fn pos(&self) -> usize {
        self.pos
    }
    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        patch(self.b, at, &v.to_be_bytes());
    }
    #[inline]
    fn patch(&mut self, at: usize, b: &[u8]) {
        patch(self.b, at, b);
    }
}

/// Overwrites `b.len()` octets at `at`; out of range: nothing.
#[inline]
fn patch(buf: &mut [u8], at: usize, b: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at.saturating_add(b.len())) {
        dst.copy_from_slice(b);
    }
}

#[derive(Debug, Clone)]
enum TemplateParams<'a> {
    V4(V4ReplyParams),
    O6(Dhcp4o6ReplyParams<'a>),
}

/// Encodes the binding records of one query (DHCPv4 or DHCP4o6) from a per-query template;
/// see the module docs. Same output as [`Reply::V4Binding`] / [`Reply::O6Binding`] with the
/// parameters and `first` it was made with.
#[derive(Debug, Clone)]
pub struct BindingEncoder<'a> {
    form: TemplateParams<'a>,
    first: bool,
    /// Frame prefix, [v6 header, DHCPV4_MSG code and length,] BOOTP header, option 53, [54,]
    /// 152; the per-record fields are zero.
    head: Vec<u8>,
    /// Offset in `head` of the v4 message (BOOTP `op`).
    v4_at: usize,
    /// Offset in `head` of OPTION_DHCPV4_MSG's length (DHCP4o6).
    v4_len_at: usize,
    v6_xid_at: Option<usize>,
    v4_xid_at: Option<usize>,
    /// The v4 layer's and the v6 layer's `now`.
    now4: u32,
    now6: u32,
    // PRL-selected v4 options.
    w153: bool,
    w91: bool,
    w156: bool,
    w157: bool,
    w109: bool,
    w159: bool,
    /// Octets of the v4 options every record has past the head: 153, 156 when asked, END.
    v4_const: usize,
    // ORO-selected DHCP4o6 options.
    w92: bool,
    w96: bool,
    w47: bool,
    br: Option<Ipv6Addr>,
    /// Octets of 92 and 96{90, 92} for a binding with a softwire source, without and with port
    /// parameters.
    sw_len: [usize; 2],
    /// The whole OPTION_S46_BIND_IPV6_PREFIX when asked and configured, else empty.
    opt137: Vec<u8>,
    /// Every record goes through the reference encoder (the per-query part is one it refuses,
    /// e.g. a bind prefix over 128 bits, or a DUID over 65535 octets).
    reference_only: bool,
}

/// Octets of a DHCPv4 option with an `n`-octet payload, split in 255-octet pieces (RFC 3396).
#[inline]
fn v4_opt_len(n: usize) -> usize {
    n.saturating_add(2 * n.div_ceil(255).max(1))
}

/// Octets of an OPTION_S46_V4V6BIND with or without OPTION_S46_PORTPARAMS.
const BIND_LEN: [usize; 2] = [4 + 4 + 1 + 16, 4 + 4 + 1 + 16 + 8];

impl BindingEncoder<'static> {
    /// For DHCPv4 binding messages ([`Reply::V4Binding`]).
    pub fn v4(p: &V4ReplyParams, first: bool) -> BindingEncoder<'static> {
        let mut head = Vec::with_capacity(272);
        head.u16(0);
        let mut e = BindingEncoder::empty(TemplateParams::V4(*p), first);
        e.v4_at = head.len();
        e.reference_only |= v4_head(&mut head, &mut e, p, first).is_err();
        e.head = head;
        e
    }
}

impl<'a> BindingEncoder<'a> {
    /// For DHCP4o6 binding messages ([`Reply::O6Binding`]).
    pub fn dhcp4o6(p: &Dhcp4o6ReplyParams<'a>, first: bool) -> BindingEncoder<'a> {
        let mut e = BindingEncoder::empty(TemplateParams::O6(p.clone()), first);
        let mut head = Vec::with_capacity(320);
        head.u16(0);
        let mut x = Xids::default();
        let status = p.v6.reply_status.filter(|_| first);
        e.reference_only |= v6_head(&mut head, &mut x, &p.v6, first, status).is_err();
        e.v6_xid_at = x.v6;
        head.u16(v6opt::DHCPV4_MSG);
        e.v4_len_at = head.len();
        head.u16(0);
        e.v4_at = head.len();
        e.reference_only |= v4_head(&mut head, &mut e, &p.v4, first).is_err();
        e.head = head;
        let oro = &p.v6.oro;
        e.now6 = p.v6.now;
        e.w92 = oro.contains(v6opt::S46_V4V6BIND);
        e.w96 = oro.contains(v6opt::S46_CONT_LW);
        e.w47 = oro.contains(v6opt::LQ_RELAY_DATA);
        e.br = p.br;
        let br_len = if p.br.is_some() { 20 } else { 0 };
        for (len, bind) in e.sw_len.iter_mut().zip(BIND_LEN) {
            *len = if e.w92 { bind } else { 0 } + if e.w96 { 4 + br_len + bind } else { 0 };
        }
        if let Some((len, prefix)) = p
            .bind_prefix
            .filter(|_| oro.contains(v6opt::S46_BIND_IPV6_PREFIX))
        {
            let mut opt = Vec::new();
            e.reference_only |= bind_prefix_opt(&mut opt, len, prefix).is_err();
            e.opt137 = opt;
        }
        e
    }

    fn empty(form: TemplateParams<'a>, first: bool) -> BindingEncoder<'a> {
        let (now4, prl) = match &form {
            TemplateParams::V4(p) => (p.now, p.prl),
            TemplateParams::O6(p) => (p.v4.now, p.v4.prl),
        };
        let w153 = prl.contains(v4opt::START_TIME_OF_STATE);
        let w156 = prl.contains(v4opt::DHCP_STATE);
        BindingEncoder {
            form,
            first,
            head: Vec::new(),
            v4_at: 0,
            v4_len_at: 0,
            v6_xid_at: None,
            v4_xid_at: None,
            now4,
            now6: 0,
            w153,
            w91: prl.contains(v4opt::CLIENT_LAST_TRANSACTION_TIME),
            w156,
            w157: prl.contains(v4opt::DATA_SOURCE),
            w109: prl.contains(v4opt::DHCP4O6_S46_SADDR),
            w159: prl.contains(v4opt::V4_PORTPARAMS),
            v4_const: if w153 { 6 } else { 0 } + if w156 { 3 } else { 0 } + 1,
            w92: false,
            w96: false,
            w47: false,
            br: None,
            sw_len: [0; 2],
            opt137: Vec::new(),
            reference_only: false,
        }
    }

    /// The message `rec` makes through the reference encoder.
    fn reference<'r>(&'r self, rec: &'r V4Record<'r>) -> Reply<'r> {
        match &self.form {
            TemplateParams::V4(p) => Reply::V4Binding {
                p,
                rec,
                first: self.first,
            },
            TemplateParams::O6(p) => Reply::O6Binding {
                p,
                rec,
                first: self.first,
            },
        }
    }

    /// Appends `rec`'s message, exactly as `w.write(&Reply::V4Binding { .. })` (or
    /// `O6Binding`) with this encoder's parameters would: same octets, same result, and on an
    /// error the buffer as it was.
    #[inline]
    pub fn write(
        &self,
        w: &mut StreamWriter<'_>,
        rec: &V4Record<'_>,
    ) -> Result<EncodedAt, EncodeError> {
        let Some((total, cd_len)) = self.frame_len(rec) else {
            return w.write(&self.reference(rec));
        };
        let start = w.buf.len();
        if start.saturating_add(total) > w.limit {
            return Err(EncodeError::BufferFull {
                needed: total,
                available: w.remaining(),
            });
        }
        if self.put(w.buf, rec, start, total, cd_len) {
            Ok(EncodedAt {
                start,
                len: total,
                v6_xid_at: self.v6_xid_at.map(|o| start + o),
                v4_xid_at: self.v4_xid_at.map(|o| start + o),
            })
        } else {
            // Not expected: the length pass disagrees with what was written.
            w.buf.truncate(start);
            w.write(&self.reference(rec))
        }
    }

    /// The exact frame length of `rec`'s message and, for DHCP4o6, OPTION_CLIENT_DATA's
    /// payload length; `None` when the message takes the reference path.
    #[inline]
    fn frame_len(&self, rec: &V4Record<'_>) -> Option<(usize, usize)> {
        if self.reference_only || rec.chaddr.len() > 16 {
            return None;
        }
        let mut n = self.head.len() + self.v4_const;
        if rec.expires != 0 {
            n += 6;
        }
        if rec.cltt != 0 && self.w91 {
            n += 6;
        }
        if rec.data_source != 0 && self.w157 {
            n += 3;
        }
        if let Some(id) = rec.client_id {
            n = n.saturating_add(v4_opt_len(id.len()));
        }
        if rec.softwire_src.is_some() && self.w109 {
            n += 18;
        }
        if rec.port_params.is_some() && self.w159 {
            n += 6;
        }
        if let Some(ri) = relay_info_len(rec)? {
            n = n.saturating_add(v4_opt_len(ri));
        }
        let mut cd = 0;
        if let TemplateParams::O6(_) = self.form {
            cd = 8 + self.opt137.len();
            if let Some(duid) = rec.client_id.and_then(duid_of_client_id) {
                cd = cd.saturating_add(4 + duid.len());
            }
            if rec.softwire_src.is_some() {
                cd += self.sw_len[usize::from(rec.port_params.is_some())];
            }
            if let Some(r) = self.relay(rec) {
                cd = cd.saturating_add(relay_data_len(&r));
            }
            n = n.saturating_add(cd.saturating_add(4));
        }
        (n - 2 <= MAX_LEN).then_some((n, cd))
    }

    /// The relay chain to put in OPTION_LQ_RELAY_DATA, when asked and known.
    #[inline]
    fn relay<'r>(&self, rec: &V4Record<'r>) -> Option<RelayRecord<'r>> {
        rec.v6.and_then(|v6| v6.relay).filter(|_| self.w47)
    }

    /// Writes the message (`total` octets, checked to fit) at `start`, the buffer's end; false
    /// on a failure the length pass should have caught. The head is one copy; the rest is
    /// written into the frame's remaining, zeroed octets.
    #[inline]
    fn put(
        &self,
        buf: &mut Vec<u8>,
        rec: &V4Record<'_>,
        start: usize,
        total: usize,
        cd_len: usize,
    ) -> bool {
        buf.extend_from_slice(&self.head);
        buf.resize(start + total, 0);
        let Some(frame) = buf.get_mut(start..) else {
            return false;
        };
        let mut o = Out {
            b: frame,
            pos: self.head.len(),
        };
        {
            let h = &mut *o.b;
            patch(h, 0, &((total - 2) as u16).to_be_bytes());
            if let TemplateParams::O6(_) = self.form {
                let v4_len = total - cd_len - 4 - self.v4_at;
                patch(h, self.v4_len_at, &(v4_len as u16).to_be_bytes());
            }
            let b = self.v4_at;
            patch(h, b + 1, &[rec.htype, rec.chaddr.len() as u8]);
            patch(h, b + 12, &rec.addr.octets());
            patch(h, b + 28, rec.chaddr);
            let msg_type = if rec.state == dhcp_state::ACTIVE {
                v4msg::LEASEACTIVE
            } else {
                v4msg::LEASEUNASSIGNED
            };
            patch(h, b + 242, &[msg_type]);
        }
        let ok = self.put_v4_options(&mut o, rec);
        if let TemplateParams::O6(_) = self.form {
            put_v6_head(&mut o, v6opt::CLIENT_DATA, cd_len);
            self.put_client_data(&mut o, rec);
        }
        ok && o.pos == total
    }

    /// The v4 options past the head, in [`super::v4_binding`]'s order, and END.
    #[inline]
    fn put_v4_options(&self, buf: &mut Out<'_>, rec: &V4Record<'_>) -> bool {
        let now = self.now4;
        if rec.expires != 0 {
            // An infinite lease (expires u32::MAX) stays 0xffffffff (RFC 2132 §9.2).
            put_v4_u32(
                buf,
                v4opt::LEASE_TIME,
                crate::proto::time::remaining(rec.expires, now),
            );
        }
        if self.w153 {
            put_v4_u32(
                buf,
                v4opt::START_TIME_OF_STATE,
                now.saturating_sub(rec.state_start),
            );
        }
        if rec.cltt != 0 && self.w91 {
            put_v4_u32(
                buf,
                v4opt::CLIENT_LAST_TRANSACTION_TIME,
                now.saturating_sub(rec.cltt),
            );
        }
        if self.w156 {
            buf.put(&[v4opt::DHCP_STATE, 1, rec.state]);
        }
        if rec.data_source != 0 && self.w157 {
            buf.put(&[v4opt::DATA_SOURCE, 1, rec.data_source]);
        }
        if let Some(id) = rec.client_id {
            match u8::try_from(id.len()) {
                Ok(len) => {
                    buf.put(&[v4opt::CLIENT_ID, len]);
                    buf.put(id);
                }
                Err(_) => v4_opt(buf, v4opt::CLIENT_ID, &[id]),
            }
        }
        if let Some(src) = rec.softwire_src.filter(|_| self.w109) {
            let mut o = [0u8; 18];
            o[0] = v4opt::DHCP4O6_S46_SADDR;
            o[1] = 16;
            o[2..].copy_from_slice(&src.octets());
            buf.put(&o);
        }
        if let Some(pp) = rec.port_params.filter(|_| self.w159) {
            let [hi, lo] = pp.wire_psid().to_be_bytes();
            buf.put(&[v4opt::V4_PORTPARAMS, 4, pp.offset, pp.psid_len, hi, lo]);
        }
        let mut ok = true;
        match relay_info_len(rec) {
            Some(None) => {}
            Some(Some(len)) if len <= 255 => {
                buf.put(&[v4opt::RELAY_AGENT_INFO, len as u8]);
                for (code, v) in [
                    (v4relay::CIRCUIT_ID, rec.circuit_id),
                    (v4relay::REMOTE_ID, rec.remote_id),
                    (v4relay::RELAY_ID, rec.relay_id),
                ] {
                    if let Some(v) = v {
                        buf.put(&[code, v.len() as u8]);
                        buf.put(v);
                    }
                }
            }
            _ => ok = relay_agent_info(buf, rec).is_ok(),
        }
        buf.put(&[v4opt::END]);
        ok
    }

    /// OPTION_CLIENT_DATA's contents, in [`super::o6_client_data`]'s order.
    #[inline]
    fn put_client_data(&self, buf: &mut Out<'_>, rec: &V4Record<'_>) {
        if let Some(duid) = rec.client_id.and_then(duid_of_client_id) {
            put_v6_head(buf, v6opt::CLIENTID, duid.len());
            buf.put(duid);
        }
        let since = if rec.cltt != 0 {
            rec.cltt
        } else {
            rec.state_start
        };
        put_v6_head(buf, v6opt::CLT_TIME, 4);
        buf.put(&self.now6.saturating_sub(since).to_be_bytes());
        if let Some(src) = rec.softwire_src {
            let (bind, bind_len) = v4v6bind(rec.addr, src, rec.port_params);
            let bind = bind.get(..bind_len).unwrap_or_default();
            if self.w92 {
                buf.put(bind);
            }
            if self.w96 {
                let br_len = if self.br.is_some() { 20 } else { 0 };
                put_v6_head(buf, v6opt::S46_CONT_LW, br_len + bind_len);
                if let Some(br) = self.br {
                    put_v6_head(buf, v6opt::S46_BR, 16);
                    buf.put(&br.octets());
                }
                buf.put(bind);
            }
        }
        buf.put(&self.opt137);
        if let Some(r) = self.relay(rec) {
            put_v6_head(buf, v6opt::LQ_RELAY_DATA, relay_data_len(&r) - 4);
            let mut fixed = [0u8; 16 + 2 + 32];
            fixed[16] = v6msg::RELAY_FORW;
            fixed[17] = r.hop_count;
            fixed[18..34].copy_from_slice(&r.link_address.octets());
            fixed[34..].copy_from_slice(&r.peer_address.octets());
            buf.put(&fixed);
            for (code, v) in [
                (v6opt::INTERFACE_ID, r.interface_id),
                (v6opt::RELAY_ID, r.relay_id),
                (v6opt::REMOTE_ID, r.remote_id),
            ] {
                if let Some(v) = v {
                    put_v6_head(buf, code, v.len());
                    buf.put(v);
                }
            }
        }
    }
}

/// The template's v4 part: BOOTP header (record fields zero), option 53 (type patched per
/// record), 54 when first, base-time 152.
fn v4_head(
    head: &mut Vec<u8>,
    e: &mut BindingEncoder<'_>,
    p: &V4ReplyParams,
    first: bool,
) -> Result<(), EncodeError> {
    let mut x = Xids::default();
    v4_header(
        head,
        &mut x,
        p,
        v4msg::LEASEACTIVE,
        0,
        &[],
        Ipv4Addr::UNSPECIFIED,
        first,
    )?;
    e.v4_xid_at = x.v4;
    v4_u32(head, v4opt::BASE_TIME, p.now);
    Ok(())
}

/// A DHCPv6 option header (the length was checked to fit in 16 bits).
#[inline]
fn put_v6_head(buf: &mut Out<'_>, code: u16, len: usize) {
    let [c0, c1] = code.to_be_bytes();
    let [l0, l1] = (len as u16).to_be_bytes();
    buf.put(&[c0, c1, l0, l1]);
}

#[inline]
fn put_v4_u32(buf: &mut Out<'_>, code: u8, v: u32) {
    let [a, b, c, d] = v.to_be_bytes();
    buf.put(&[code, 4, a, b, c, d]);
}

/// Option 82's payload length: `Some(None)` without sub-options, `None` when a sub-option is
/// over 255 octets (the reference encoder's error).
#[inline]
fn relay_info_len(rec: &V4Record<'_>) -> Option<Option<usize>> {
    let mut len = 0usize;
    let mut any = false;
    for v in [rec.circuit_id, rec.remote_id, rec.relay_id]
        .into_iter()
        .flatten()
    {
        if v.len() > 255 {
            return None;
        }
        len += 2 + v.len();
        any = true;
    }
    Some(any.then_some(len))
}

/// Octets of OPTION_LQ_RELAY_DATA (header included).
#[inline]
fn relay_data_len(r: &RelayRecord<'_>) -> usize {
    let opt = |v: Option<&[u8]>| v.map_or(0, |v| v.len().saturating_add(4));
    (4 + 16 + 2 + 32usize)
        .saturating_add(opt(r.interface_id))
        .saturating_add(opt(r.relay_id))
        .saturating_add(opt(r.remote_id))
}

/// OPTION_S46_V4V6BIND (with OPTION_S46_PORTPARAMS for a shared address) and its length.
#[inline]
fn v4v6bind(addr: Ipv4Addr, src: Ipv6Addr, pp: Option<PortParams>) -> ([u8; 33], usize) {
    let mut o = [0u8; 33];
    let len = BIND_LEN[usize::from(pp.is_some())];
    o[..2].copy_from_slice(&v6opt::S46_V4V6BIND.to_be_bytes());
    o[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
    o[4..8].copy_from_slice(&addr.octets());
    o[8] = 128;
    o[9..25].copy_from_slice(&src.octets());
    if let Some(pp) = pp {
        o[25..27].copy_from_slice(&v6opt::S46_PORTPARAMS.to_be_bytes());
        o[27..29].copy_from_slice(&4u16.to_be_bytes());
        o[29] = pp.offset;
        o[30] = pp.psid_len;
        o[31..33].copy_from_slice(&pp.wire_psid().to_be_bytes());
    }
    (o, len)
}
