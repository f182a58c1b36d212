//! Active leasequery (sans-io): ACTIVELEASEQUERY (RFC 7653), DHCPACTIVELEASEQUERY (RFC 7724) and
//! their DHCP4o6 form (the draft, DESIGN.md section 4).
//!
//! - [`v6_active`] / [`v4_active`] check a query and turn it into an [`ActivePlan`] (what to
//!   follow, how to encode it, where catch-up starts) or an error reply.
//! - [`ActivePlan`] encodes every message of the stream: the opening REPLY, updates (one
//!   encoding per [`WireKey`], the transaction ids patched per subscriber with
//!   [`crate::proto::encoder::patch_xids`]), CatchUpComplete, DataMissing, keepalives and the
//!   final QueryTerminated.
//! - [`Backlog`] is one subscriber's coalescing queue (the latest state of a binding replaces
//!   the queued one, RFC 7653 §7, RFC 7724 §6), bounded in bindings and octets.
//!
//! Our readings where the RFCs are silent (README "Active leasequery"):
//! - A removed v6 binding is sent with lifetimes 0; a removed v4 binding as DHCPLEASEUNASSIGNED
//!   (state EXPIRED when it was still ACTIVE).
//! - DHCP4o6: the opening REPLY carries a DHCPLEASEQUERYSTATUS (no status = success) in
//!   OPTION_DHCPV4_MSG, and every status of the stream (CatchUpComplete, DataMissing, keepalive,
//!   QueryTerminated, errors) is a DHCPLEASEQUERYSTATUS in the v4 layer (RFC 7724 §7.4).
//! - DHCP4o6 needs an OPTION_ORO: inside OPTION_LQ_QUERY, or at message level when the query has
//!   no OPTION_LQ_QUERY (follow every 4o6 binding).
//! - A link-address filter is accepted for a link the server does not know yet (bindings may
//!   appear there later).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use hashbrown::HashMap;

use super::plan::{Form, V4Form, V6Form};
use super::refuse::{self, Refused};
use super::{form, Action, Identity, Policy};
use crate::lease::{BindingKey, Change, ChangeKind, V4Binding, V6Binding};
use crate::proto::codes::{dhcp_state, query_type, v4msg, v4opt, v4status, v6opt, v6status};
use crate::proto::framing::MAX_FRAME;
use crate::proto::encoder::{
    duid_of_client_id, Dhcp4o6ReplyParams, EncodedAt, OroSet, Reply, StreamWriter, V4Status,
    V6Status,
};
use crate::proto::record::{RelayRecord, V4Record, V6Addr, V6Context, V6Prefix, V6Record};
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::MessageView;

/// Which binding changes an active query follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveFilter {
    /// Plain DHCPv6 bindings: all (`None`) or one query type of RFC 5007 / RFC 5460.
    V6(Option<V6Filter>),
    /// DHCPv4 active leasequery: every v4 and 4o6 binding (RFC 7724 has no query types).
    V4All,
    /// DHCP4o6: 4o6 bindings only, all (`None`) or filtered by the v6 query type.
    Dhcp4o6(Option<V6Filter>),
}

/// A v6 query type used as a filter (RFC 7653 §6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V6Filter {
    /// QUERY_BY_ADDRESS: v6, the binding holds the address (IA_NA) or a prefix containing it;
    /// 4o6, the softwire source is the address.
    Address(Ipv6Addr),
    /// QUERY_BY_CLIENTID: v6, the DUID; 4o6, the DUID inside the RFC 4361 client-id.
    ClientId(Vec<u8>),
    /// QUERY_BY_RELAY_ID, with an optional link restriction (/64).
    RelayId(Vec<u8>, Option<Ipv6Addr>),
    /// QUERY_BY_LINK_ADDRESS (/64).
    Link(Ipv6Addr),
    /// QUERY_BY_REMOTE_ID, with an optional link restriction (/64).
    RemoteId(Vec<u8>, Option<Ipv6Addr>),
}

fn same64(a: Ipv6Addr, b: Ipv6Addr) -> bool {
    (u128::from(a) >> 64) == (u128::from(b) >> 64)
}

fn in_prefix(a: Ipv6Addr, p: Ipv6Addr, len: u8) -> bool {
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(a) & mask == u128::from(p) & mask
}

impl V6Filter {
    fn matches_v6(&self, b: &V6Binding) -> bool {
        match self {
            V6Filter::Address(a) => {
                b.iana.iter().any(|x| x.addr == *a)
                    || b.iapd.iter().any(|p| in_prefix(*a, p.prefix, p.prefix_len))
            }
            V6Filter::ClientId(d) => b.duid == *d,
            V6Filter::RelayId(r, l) => {
                b.relay_id.as_deref() == Some(&r[..]) && l.is_none_or(|l| same64(l, b.link))
            }
            V6Filter::Link(l) => same64(*l, b.link),
            V6Filter::RemoteId(r, l) => {
                b.remote_id.as_deref() == Some(&r[..]) && l.is_none_or(|l| same64(l, b.link))
            }
        }
    }

    fn matches_4o6(&self, b: &V4Binding) -> bool {
        let link = b.v6.as_ref().map(|c| c.link);
        let on = |l: &Option<Ipv6Addr>| match (l, link) {
            (None, _) => true,
            (Some(l), Some(k)) => same64(*l, k),
            (Some(_), None) => false,
        };
        match self {
            V6Filter::Address(a) => b.softwire_src == Some(*a),
            V6Filter::ClientId(d) => b
                .client_id
                .as_deref()
                .and_then(duid_of_client_id)
                .is_some_and(|x| x == &d[..]),
            V6Filter::RelayId(r, l) => b.relay_id.as_deref() == Some(&r[..]) && on(l),
            V6Filter::Link(l) => link.is_some_and(|k| same64(*l, k)),
            V6Filter::RemoteId(r, l) => b.remote_id.as_deref() == Some(&r[..]) && on(l),
        }
    }
}

impl ActiveFilter {
    /// True when the query follows the binding this change is about.
    pub fn matches(&self, change: &Change) -> bool {
        match (self, change) {
            (ActiveFilter::V6(f), Change::V6 { binding, .. }) => {
                f.as_ref().is_none_or(|f| f.matches_v6(binding))
            }
            (ActiveFilter::V4All, Change::V4 { .. }) => true,
            (ActiveFilter::Dhcp4o6(f), Change::V4 { binding, .. }) => {
                binding.v6.is_some() && f.as_ref().is_none_or(|f| f.matches_4o6(binding))
            }
            _ => false,
        }
    }

    /// True when the query can only follow plain DHCPv6 bindings.
    pub fn is_v6(&self) -> bool {
        matches!(self, ActiveFilter::V6(_))
    }
}

/// An accepted active query: what it follows, how its messages are encoded, where its catch-up
/// starts. Built by the session; the shell keeps it (shared) for the subscription's life.
#[derive(Debug, Clone)]
pub struct ActivePlan {
    /// The transaction id that names the query on its connection (v6 xid for v6 and DHCP4o6,
    /// v4 xid for v4).
    pub xid: u32,
    /// What it follows.
    pub filter: ActiveFilter,
    /// How its messages are encoded (both transaction ids included).
    pub form: Form,
    /// OPTION_LQ_START_TIME / query-start-time as Unix seconds: catch-up from there.
    pub since: Option<u32>,
}

/// What makes two subscriptions' update messages identical except for the transaction ids:
/// updates are encoded once per wire key (DESIGN.md section 3, rule 5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireKey {
    kind: u8,
    oro: Vec<u16>,
    base_time: bool,
    prl: Vec<u8>,
}

/// One encoded message of a stream, with where its transaction ids sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The framed message (2-octet length prefix included).
    pub bytes: Vec<u8>,
    /// Transaction id offsets inside `bytes`.
    pub at: EncodedAt,
}

impl Encoded {
    /// Appends this message to `out` with the subscriber's transaction ids.
    pub fn append_to(&self, out: &mut Vec<u8>, v6_xid: u32, v4_xid: u32) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(dst) = out.get_mut(start..) {
            crate::proto::encoder::patch_xids(dst, &self.at, v6_xid, v4_xid);
        }
    }
}

/// A v4 binding as the encoder borrows it; a removed one is no longer ACTIVE.
fn v4_record(b: &V4Binding, removed: bool) -> V4Record<'_> {
    V4Record {
        addr: b.addr,
        port_params: b.port_params,
        htype: b.htype,
        chaddr: &b.chaddr,
        client_id: b.client_id.as_deref(),
        state: if removed && b.state == dhcp_state::ACTIVE {
            dhcp_state::EXPIRED
        } else {
            b.state
        },
        cltt: b.cltt,
        state_start: b.state_start,
        expires: b.expires,
        circuit_id: b.circuit_id.as_deref(),
        remote_id: b.remote_id.as_deref(),
        relay_id: b.relay_id.as_deref(),
        softwire_src: b.softwire_src,
        v6: b.v6.as_ref().map(|c| V6Context {
            client_src: c.client_src,
            link: c.link,
            relay: c.relay.as_ref().map(|r| RelayRecord {
                hop_count: r.hop_count,
                link_address: r.link_address,
                peer_address: r.peer_address,
                interface_id: r.interface_id.as_deref(),
                relay_id: r.relay_id.as_deref(),
                remote_id: r.remote_id.as_deref(),
            }),
        }),
        data_source: b.data_source,
    }
}

impl ActivePlan {
    /// The v6 transaction id of the stream's messages (0 for plain v4).
    pub fn v6_xid(&self) -> u32 {
        match &self.form {
            Form::V6(f) => f.xid,
            Form::Dhcp4o6 { v6, .. } => v6.xid,
            Form::V4(_) => 0,
        }
    }

    /// The v4 transaction id of the stream's messages (0 for plain v6).
    pub fn v4_xid(&self) -> u32 {
        match &self.form {
            Form::V4(f) => f.xid,
            Form::Dhcp4o6 { v4, .. } => v4.xid,
            Form::V6(_) => 0,
        }
    }

    /// The subscription's wire key (see [`WireKey`]).
    pub fn wire_key(&self) -> WireKey {
        let oro = |f: &V6Form| {
            // Once per subscription: the ORO's codes in order.
            (0..=u16::MAX)
                .filter(|&c| f.oro.contains(c))
                .collect::<Vec<u16>>()
        };
        let prl = |f: &V4Form| (0..=u8::MAX).filter(|&c| f.prl.contains(c)).collect();
        match &self.form {
            Form::V6(f) => WireKey {
                kind: 6,
                oro: oro(f),
                base_time: f.base_time,
                prl: Vec::new(),
            },
            Form::V4(f) => WireKey {
                kind: 4,
                oro: Vec::new(),
                base_time: false,
                prl: prl(f),
            },
            Form::Dhcp4o6 { v6, v4, .. } => WireKey {
                kind: 46,
                oro: oro(v6),
                base_time: v6.base_time,
                prl: prl(v4),
            },
        }
    }

    fn write(&self, now: u32, force_base_time: bool, kind: Kind<'_>) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1024);
        let mut w = StreamWriter::with_limit(&mut buf, MAX_FRAME);
        let _ = match &self.form {
            Form::V6(v6) => {
                let mut p = v6.params(now);
                p.base_time |= force_base_time;
                let p = &p;
                w.write(&match kind {
                    Kind::Reply(status) => Reply::V6Reply { p, status },
                    Kind::DataStatus(status) => Reply::V6DataStatus { p, status },
                    Kind::Keepalive => Reply::V6Keepalive { p },
                    Kind::Done(st) => Reply::V6Done {
                        p,
                        status: Some(st),
                    },
                })
            }
            Form::V4(v4) => {
                let p = &v4.params(now);
                let (status, first) = match kind {
                    Kind::Reply(st) => (
                        st.map_or(
                            V4Status {
                                code: v4status::SUCCESS,
                                text: "",
                            },
                            V6Status::v4_twin,
                        ),
                        true,
                    ),
                    Kind::DataStatus(st) | Kind::Done(st) => (st.v4_twin(), false),
                    Kind::Keepalive => (
                        V4Status {
                            code: v4status::CONNECTION_ACTIVE,
                            text: "",
                        },
                        false,
                    ),
                };
                w.write(&Reply::V4Status { p, status, first })
            }
            Form::Dhcp4o6 {
                v6,
                v4,
                br,
                bind_prefix,
            } => {
                let mut p = Dhcp4o6ReplyParams {
                    v6: v6.params(now),
                    v4: v4.params(now),
                    br: *br,
                    bind_prefix: *bind_prefix,
                };
                p.v6.base_time |= force_base_time;
                let p = &p;
                w.write(&match kind {
                    Kind::Reply(status) => Reply::O6Reply { p, status },
                    Kind::DataStatus(status) => Reply::O6DataStatus { p, status },
                    Kind::Keepalive => Reply::O6Keepalive { p },
                    Kind::Done(st) => Reply::O6Done {
                        p,
                        status: Some(st),
                    },
                })
            }
        };
        if matches!(self.form, Form::Dhcp4o6 { .. }) {
            // RFC 7724 §7.4: the v4 layer of every active status is a DHCPLEASEQUERYSTATUS.
            refuse::retype_inner_v4(&mut buf, v4msg::LEASEQUERYSTATUS);
        }
        buf
    }

    /// The first message of an accepted query: v6 and 4o6, the LEASEQUERY-REPLY (with DataMissing
    /// and base-time when `missing`, RFC 7653 §8.4.1); v4 has no opening message except the
    /// DataMissing status (RFC 7724 §7.4.1).
    pub fn opening(&self, now: u32, missing: bool) -> Option<Vec<u8>> {
        if matches!(self.form, Form::V4(_)) && !missing {
            return None;
        }
        let status = missing.then_some(V6Status {
            code: v6status::DATA_MISSING,
            text: "history does not reach back to the start time",
        });
        Some(self.write(now, missing, Kind::Reply(status)))
    }

    fn status_data(&self, now: u32, code: u16, text: &str, base: bool) -> Vec<u8> {
        self.write(now, base, Kind::DataStatus(V6Status { code, text }))
    }

    /// The end of catch-up: DATA / DHCPLEASEQUERYSTATUS with CatchUpComplete (RFC 7653 §9.3,
    /// RFC 7724 §8.2).
    pub fn catch_up_complete(&self, now: u32) -> Vec<u8> {
        self.status_data(now, v6status::CATCH_UP_COMPLETE, "", false)
    }

    /// History lost part-way through catch-up: DATA / STATUS DataMissing with base-time now
    /// (RFC 7653 §8.4.1 case 2, RFC 7724 §7.4.1).
    pub fn data_missing(&self, now: u32) -> Vec<u8> {
        self.status_data(
            now,
            v6status::DATA_MISSING,
            "history lost during catch-up",
            true,
        )
    }

    /// The idle keepalive: an empty DATA (RFC 7653 §8.4), DHCPLEASEQUERYSTATUS ConnectionActive
    /// (RFC 7724 §7.4), or both layers for DHCP4o6.
    pub fn keepalive(&self, now: u32) -> Vec<u8> {
        self.write(now, false, Kind::Keepalive)
    }

    /// The last message: LEASEQUERY-DONE / DHCPLEASEQUERYSTATUS with QueryTerminated and base-time
    /// (RFC 7653 §8.4, RFC 7724 §7.4). The connection closes after it.
    pub fn terminated(&self, now: u32, text: &str) -> Vec<u8> {
        let st = V6Status {
            code: v6status::QUERY_TERMINATED,
            text,
        };
        self.write(now, true, Kind::Done(st))
    }

    /// Encodes the update for `change` (a non-first message: DATA, DHCPLEASEACTIVE or
    /// DHCPLEASEUNASSIGNED) with this plan's transaction ids. `None` when the change is of the
    /// other family or does not fit in one message.
    pub fn encode_change(&self, change: &Change, now: u32) -> Option<Encoded> {
        let removed = change.kind() == ChangeKind::Remove;
        let mut buf = Vec::new();
        let at = match (&self.form, change) {
            (Form::V6(f), Change::V6 { binding: b, .. }) => {
                let zero = |until: u32| if removed { 0 } else { until };
                let iana: Vec<V6Addr> = b
                    .iana
                    .iter()
                    .map(|a| V6Addr {
                        addr: a.addr,
                        preferred_until: zero(a.preferred_until),
                        valid_until: zero(a.valid_until),
                    })
                    .collect();
                let iapd: Vec<V6Prefix> = b
                    .iapd
                    .iter()
                    .map(|p| V6Prefix {
                        preferred_until: zero(p.preferred_until),
                        valid_until: zero(p.valid_until),
                        ..*p
                    })
                    .collect();
                let rec = V6Record {
                    duid: &b.duid,
                    link: b.link,
                    iana: &iana,
                    iapd: &iapd,
                    cltt: b.cltt,
                    relay_id: b.relay_id.as_deref(),
                    remote_id: b.remote_id.as_deref(),
                };
                let p = f.params(now);
                write_one(
                    &mut buf,
                    &Reply::V6Binding {
                        p: &p,
                        rec: &rec,
                        first: false,
                    },
                )?
            }
            (Form::V4(f), Change::V4 { binding: b, .. }) => {
                let p = f.params(now);
                write_one(
                    &mut buf,
                    &Reply::V4Binding {
                        p: &p,
                        rec: &v4_record(b, removed),
                        first: false,
                    },
                )?
            }
            (
                Form::Dhcp4o6 {
                    v6,
                    v4,
                    br,
                    bind_prefix,
                },
                Change::V4 { binding: b, .. },
            ) => {
                let p = Dhcp4o6ReplyParams {
                    v6: v6.params(now),
                    v4: v4.params(now),
                    br: *br,
                    bind_prefix: *bind_prefix,
                };
                write_one(
                    &mut buf,
                    &Reply::O6Binding {
                        p: &p,
                        rec: &v4_record(b, removed),
                        first: false,
                    },
                )?
            }
            _ => return None,
        };
        Some(Encoded { bytes: buf, at })
    }
}

fn write_one(buf: &mut Vec<u8>, r: &Reply<'_>) -> Option<EncodedAt> {
    let n = r.frame_len().ok()?;
    buf.reserve_exact(n);
    let limit = buf.len() + n;
    StreamWriter::with_limit(buf, limit).write(r).ok()
}

/// A non-binding message of an active stream, in v6 terms (the v4 twin is derived).
#[derive(Clone, Copy)]
enum Kind<'t> {
    /// LEASEQUERY-REPLY (v4: a DHCPLEASEQUERYSTATUS with option 54).
    Reply(Option<V6Status<'t>>),
    /// LEASEQUERY-DATA with a status.
    DataStatus(V6Status<'t>),
    /// The idle keepalive.
    Keepalive,
    /// LEASEQUERY-DONE with a status (v4: DHCPLEASEQUERYSTATUS).
    Done(V6Status<'t>),
}

/// Refuses a query beside an active one (RFC 7653 §9.4, RFC 7724 §8.3); built with the other
/// refusals in [`super::refuse`].
pub use super::refuse::busy_reply;

fn close_with(bytes: Vec<u8>) -> Action {
    Action::Reply { bytes, close: true }
}

/// ACTIVELEASEQUERY (RFC 7653 §6.2.1, §9.3; DHCP4o6 with OPTION_DHCPV4_MSG, the draft §5.2).
pub(super) fn v6_active(
    view: &MessageView<'_>,
    id: &Identity,
    policy: &Policy,
    now: u32,
) -> Action {
    let Some(mut form) = form::requestor_form(view, id) else {
        return Action::Drop;
    };
    let opts = view.options();
    let v4msg_opt = opts.get(v6opt::DHCPV4_MSG);
    let v4parsed = v4msg_opt.map(|o| V4View::parse(o.data));
    let v4form = match &v4parsed {
        Some(Ok(v)) => Some(form::form_of(v, id)),
        Some(Err(_)) => Some(V4Form {
            xid: 0,
            server_id: id.server_id,
            prl: Default::default(),
        }),
        None => None,
    };
    let fail = |v6: &V6Form, code: u16, text: &str| {
        let form = match v4form {
            None => Form::V6(v6.clone()),
            Some(v4) => Form::Dhcp4o6 {
                v6: v6.clone(),
                v4,
                br: None,
                bind_prefix: None,
            },
        };
        close_with(refuse::refusal(&form, Refused::Active, code, text, now))
    };
    if !policy.active {
        // RFC 7653 §9.2: a bulk-only server answers NotSupported and closes.
        return fail(
            &form,
            v6status::NOT_SUPPORTED,
            "active leasequery is not enabled",
        );
    }
    if !policy.allow_insecure_active {
        // RFC 7653 §9.1: without TLS only the insecure mode could serve it, and that needs its
        // own explicit setting.
        return fail(
            &form,
            v6status::NOT_ALLOWED,
            "active leasequery without TLS is not allowed (allow_insecure_active)",
        );
    }
    if opts.get(v6opt::LQ_END_TIME).is_some() {
        // RFC 7653 §6.2.1, §9.3.
        return fail(
            &form,
            v6status::MALFORMED_QUERY,
            "OPTION_LQ_END_TIME in an active query",
        );
    }
    let Ok(mut since) = form::time_opt(&opts, v6opt::LQ_START_TIME) else {
        return fail(&form, v6status::MALFORMED_QUERY, "bad OPTION_LQ_START_TIME");
    };
    let msg_oro = opts
        .get(v6opt::ORO)
        .map(|o| OroSet::from_oro_payload(o.data));
    let mut oro_present = msg_oro.is_some();
    let mut filter = None;
    if let Some(lq) = opts.get(v6opt::LQ_QUERY) {
        let Ok(q) = lq.lq_query() else {
            return fail(
                &form,
                v6status::MALFORMED_QUERY,
                "malformed OPTION_LQ_QUERY",
            );
        };
        if let Some(o) = q.options.get(v6opt::ORO) {
            form.oro = OroSet::from_oro_payload(o.data);
            oro_present = true;
        } else if v4msg_opt.is_some() {
            // The draft §5.2: the query options MUST include an OPTION_ORO.
            oro_present = false;
        }
        let link = (!q.link_address.is_unspecified()).then_some(q.link_address);
        let bad = |t: &str| fail(&form, v6status::MALFORMED_QUERY, t);
        filter = Some(match q.query_type {
            query_type::BY_ADDRESS => {
                match q.options.get(v6opt::IAADDR).and_then(|o| o.data.get(..16)) {
                    Some(a) => match <[u8; 16]>::try_from(a) {
                        Ok(a) => V6Filter::Address(Ipv6Addr::from(a)),
                        Err(_) => return bad("QUERY_BY_ADDRESS without OPTION_IAADDR"),
                    },
                    None => return bad("QUERY_BY_ADDRESS without OPTION_IAADDR"),
                }
            }
            query_type::BY_CLIENTID => match q.options.get(v6opt::CLIENTID) {
                Some(c) if !c.data.is_empty() => V6Filter::ClientId(c.data.to_vec()),
                _ => return bad("QUERY_BY_CLIENTID without OPTION_CLIENTID"),
            },
            query_type::BY_RELAY_ID => match q.options.get(v6opt::RELAY_ID) {
                Some(r) if !r.data.is_empty() => V6Filter::RelayId(r.data.to_vec(), link),
                _ => return bad("QUERY_BY_RELAY_ID without OPTION_RELAY_ID"),
            },
            query_type::BY_LINK_ADDRESS => match link {
                Some(l) => V6Filter::Link(l),
                None => return bad("QUERY_BY_LINK_ADDRESS with link-address ::"),
            },
            query_type::BY_REMOTE_ID => match q.options.get(v6opt::REMOTE_ID) {
                Some(r) if r.data.len() > 4 => V6Filter::RemoteId(r.data.to_vec(), link),
                _ => return bad("QUERY_BY_REMOTE_ID without a Remote-ID"),
            },
            _ => {
                return fail(&form, v6status::UNKNOWN_QUERY_TYPE, "unknown query type");
            }
        });
    } else if let Some(o) = &msg_oro {
        form.oro = o.clone();
    }
    form.base_time = form.oro.contains(v6opt::LQ_BASE_TIME)
        || msg_oro
            .as_ref()
            .is_some_and(|o| o.contains(v6opt::LQ_BASE_TIME));

    let Some(v4res) = v4parsed else {
        return Action::Active(Box::new(ActivePlan {
            xid: form.xid,
            filter: ActiveFilter::V6(filter),
            form: Form::V6(form),
            since,
        }));
    };
    // DHCP4o6 (the draft §5.2).
    let v4f = v4form.unwrap_or(V4Form {
        xid: 0,
        server_id: id.server_id,
        prl: Default::default(),
    });
    let Ok(v4view) = v4res else {
        return fail(
            &form,
            v6status::MALFORMED_QUERY,
            "OPTION_DHCPV4_MSG is not a DHCPv4 message",
        );
    };
    if v4view.message_type() != Some(v4msg::ACTIVELEASEQUERY) {
        // Scenario 56.
        return fail(
            &form,
            v6status::MALFORMED_QUERY,
            "OPTION_DHCPV4_MSG of an ACTIVELEASEQUERY must hold a DHCPACTIVELEASEQUERY",
        );
    }
    if let Err(text) = v4_selectors_absent(&v4view) {
        return fail(&form, v6status::MALFORMED_QUERY, text);
    }
    match form::time_window(&v4view) {
        Err(text) => return fail(&form, v6status::MALFORMED_QUERY, text),
        Ok((_, Some(_))) => {
            return fail(
                &form,
                v6status::MALFORMED_QUERY,
                "query-end-time in an active query",
            )
        }
        Ok((s, None)) => since = since.max(s),
    }
    if !oro_present {
        return fail(
            &form,
            v6status::MALFORMED_QUERY,
            "a DHCP4o6 active query needs an OPTION_ORO",
        );
    }
    Action::Active(Box::new(ActivePlan {
        xid: form.xid,
        filter: ActiveFilter::Dhcp4o6(filter),
        form: Form::Dhcp4o6 {
            v6: form,
            v4: v4f,
            br: None,
            bind_prefix: None,
        },
        since,
    }))
}

/// RFC 7724 §7.3: a DHCPACTIVELEASEQUERY MUST NOT carry ciaddr, chaddr or a client-identifier.
fn v4_selectors_absent(v: &V4View<'_>) -> Result<(), &'static str> {
    if v.ciaddr != Ipv4Addr::UNSPECIFIED {
        return Err("ciaddr in an active query");
    }
    if v.chaddr.iter().any(|&b| b != 0) {
        return Err("chaddr in an active query");
    }
    if v.has_option(v4opt::CLIENT_ID) {
        return Err("client-identifier in an active query");
    }
    Ok(())
}

/// DHCPACTIVELEASEQUERY on TCP 67 (RFC 7724 §7.3, §8.2).
pub(super) fn v4_active(view: &V4View<'_>, id: &Identity, policy: &Policy, now: u32) -> Action {
    if !policy.active {
        // RFC 7724 §9: a bulk-only server closes (unsupported message type, §8.1.1).
        return Action::Close;
    }
    let form = form::form_of(view, id);
    let fail = |code: u16, text: &str| {
        close_with(refuse::refusal(
            &Form::V4(form),
            Refused::Active,
            code,
            text,
            now,
        ))
    };
    if !policy.allow_insecure_active {
        return fail(
            v6status::NOT_ALLOWED,
            "active leasequery without TLS is not allowed (allow_insecure_active)",
        );
    }
    if let Err(text) = v4_selectors_absent(view) {
        return fail(v6status::MALFORMED_QUERY, text);
    }
    let since = match form::time_window(view) {
        Err(text) => return fail(v6status::MALFORMED_QUERY, text),
        Ok((_, Some(_))) => {
            return fail(
                v6status::MALFORMED_QUERY,
                "query-end-time in an active query",
            )
        }
        Ok((s, None)) => s,
    };
    Action::Active(Box::new(ActivePlan {
        xid: form.xid,
        filter: ActiveFilter::V4All,
        form: Form::V4(form),
        since,
    }))
}

/// Bounds of one subscriber's backlog (config `active_backlog_bindings`,
/// `active_backlog_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Most distinct bindings waiting.
    pub max_bindings: usize,
    /// Most octets waiting (encoded messages).
    pub max_bytes: usize,
}

/// What [`Backlog::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The backlog was empty before this push (the subscriber's writer needs a wake-up).
    pub was_empty: bool,
    /// Waiting messages replaced by a later state of their binding during this push (RFC 7653
    /// §7: the latest state wins): non-zero only when a bound was reached and the backlog was
    /// compacted, or while it stays indexed after that.
    pub coalesced: usize,
}

/// The backlog went over one of its bounds: the subscriber is to be terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subscriber backlog over its bound ({bindings} bindings, {bytes} octets)")]
pub struct Overflow {
    /// Bindings waiting, the refused one included.
    pub bindings: usize,
    /// Octets waiting, the refused one included.
    pub bytes: usize,
}

/// One waiting message.
#[derive(Debug)]
struct Slot<T> {
    key: Option<Rc<BindingKey>>,
    item: T,
    bytes: usize,
}

/// One subscriber's FIFO of encoded messages, bounded in bindings and octets, coalescing when it
/// has to.
///
/// A subscriber that keeps up costs one append and one pop per message: nothing is indexed.
/// When a push would take the backlog over a bound, the backlog is first compacted: every
/// binding's latest message replaces its oldest waiting one, in that one's place, and later
/// duplicates leave (RFC 7653 §7, RFC 7724 §6 allow sending only the latest state). Only if it
/// is still over a bound after that is the push refused. From the first compaction until the
/// backlog drains, an index keeps it compacted on every push. Control messages (statuses,
/// no key) are never coalesced and keep their place, so CatchUpComplete stays after every
/// catch-up binding.
///
/// The key is shared (`Rc`): one shard computes a change's key once for all its subscribers.
#[derive(Debug)]
pub struct Backlog<T> {
    limits: BacklogLimits,
    slots: VecDeque<Option<Slot<T>>>,
    /// Absolute position of `slots[0]`.
    head: u64,
    /// Binding -> absolute position of its waiting message; only after a compaction.
    index: Option<HashMap<Rc<BindingKey>, u64>>,
    /// Messages waiting (`Some` slots).
    waiting: usize,
    /// Keyed messages waiting (distinct bindings while indexed).
    keyed: usize,
    bytes: usize,
}

impl<T> Backlog<T> {
    /// An empty backlog.
    pub fn new(limits: BacklogLimits) -> Backlog<T> {
        Backlog {
            limits,
            slots: VecDeque::new(),
            head: 0,
            index: None,
            waiting: 0,
            keyed: 0,
            bytes: 0,
        }
    }

    /// Keyed messages waiting: distinct bindings once the backlog has been compacted, an upper
    /// bound on them before.
    pub fn bindings(&self) -> usize {
        self.keyed
    }

    /// Octets waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// True while the backlog keeps an index (it reached a bound since it was last empty).
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Queues `item` (`bytes` octets) for binding `key` (`None`: a control message). Over a
    /// bound, after compaction, the item is refused with [`Overflow`].
    pub fn push(
        &mut self,
        key: Option<Rc<BindingKey>>,
        item: T,
        bytes: usize,
    ) -> Result<Pushed, Overflow> {
        let was_empty = self.is_empty();
        let mut coalesced = 0;
        if self.index.is_none() && self.over(key.is_some(), bytes) {
            coalesced = self.compact();
        }
        if let (Some(index), Some(k)) = (&self.index, &key) {
            if let Some(&pos) = index.get(k) {
                let i = usize::try_from(pos - self.head).unwrap_or(usize::MAX);
                if let Some(Some(slot)) = self.slots.get_mut(i) {
                    let total = self.bytes - slot.bytes + bytes;
                    if total > self.limits.max_bytes {
                        return Err(Overflow {
                            bindings: self.keyed,
                            bytes: total,
                        });
                    }
                    self.bytes = total;
                    slot.item = item;
                    slot.bytes = bytes;
                    return Ok(Pushed {
                        was_empty,
                        coalesced: coalesced + 1,
                    });
                }
            }
        }
        if self.over(key.is_some(), bytes) {
            return Err(Overflow {
                bindings: self.keyed + usize::from(key.is_some()),
                bytes: self.bytes + bytes,
            });
        }
        if let (Some(index), Some(k)) = (&mut self.index, &key) {
            index.insert(k.clone(), self.head + self.slots.len() as u64);
        }
        self.keyed += usize::from(key.is_some());
        self.bytes += bytes;
        self.waiting += 1;
        self.slots.push_back(Some(Slot { key, item, bytes }));
        Ok(Pushed {
            was_empty,
            coalesced,
        })
    }

    /// Would one more message (`keyed`, `bytes` octets) go over a bound?
    fn over(&self, keyed: bool, bytes: usize) -> bool {
        self.keyed + usize::from(keyed) > self.limits.max_bindings
            || self.bytes + bytes > self.limits.max_bytes
    }

    /// Builds the index, moving each binding's latest message into the place of its oldest
    /// waiting one; returns how many messages were replaced.
    fn compact(&mut self) -> usize {
        let mut index: HashMap<Rc<BindingKey>, u64> = HashMap::with_capacity(self.keyed);
        let mut replaced = 0;
        for i in 0..self.slots.len() {
            let Some(key) = self.slots[i].as_ref().and_then(|s| s.key.clone()) else {
                continue;
            };
            let pos = self.head + i as u64;
            match index.get(&key) {
                None => {
                    index.insert(key, pos);
                }
                Some(&first) => {
                    let Some(later) = self.slots[i].take() else {
                        continue;
                    };
                    let j = usize::try_from(first - self.head).unwrap_or(usize::MAX);
                    if let Some(Some(slot)) = self.slots.get_mut(j) {
                        self.bytes -= slot.bytes;
                        slot.item = later.item;
                        slot.bytes = later.bytes;
                    }
                    self.keyed -= 1;
                    self.waiting -= 1;
                    replaced += 1;
                }
            }
        }
        self.index = Some(index);
        replaced
    }

    /// Takes the oldest waiting messages, in order, until about `max_bytes` octets (at least one).
    pub fn pop(&mut self, max_bytes: usize) -> Vec<T> {
        let mut out = Vec::new();
        let mut taken = 0;
        while let Some(front) = self.slots.pop_front() {
            self.head += 1;
            let Some(slot) = front else {
                continue;
            };
            if let Some(k) = slot.key {
                if let Some(index) = &mut self.index {
                    index.remove(&k);
                }
                self.keyed -= 1;
            }
            self.waiting -= 1;
            self.bytes -= slot.bytes;
            taken += slot.bytes;
            out.push(slot.item);
            if taken >= max_bytes {
                break;
            }
        }
        if self.waiting == 0 {
            // Drained: back to plain appends; a large ring's memory goes.
            self.slots.clear();
            if self.slots.capacity() > 4096 {
                self.slots = VecDeque::new();
            }
            self.index = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::V6Binding;
    use crate::proto::codes::v6msg;
    use crate::proto::encoder::PrlSet;

    fn id() -> Identity {
        Identity {
            server_duid: vec![0, 4, 9, 9, 9, 9],
            server_id: Ipv4Addr::new(127, 0, 0, 1),
        }
    }

    fn on() -> Policy {
        Policy {
            active: true,
            allow_insecure_active: true,
            ..Policy::default()
        }
    }

    fn opt(code: u16, data: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn alq(xid: u32, opts: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![v6msg::ACTIVELEASEQUERY];
        m.extend_from_slice(&xid.to_be_bytes()[1..]);
        m.extend(opt(v6opt::CLIENTID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        for o in opts {
            m.extend_from_slice(o);
        }
        m
    }

    fn lq_query(qt: u8, link: Ipv6Addr, opts: &[Vec<u8>]) -> Vec<u8> {
        let mut d = vec![qt];
        d.extend_from_slice(&link.octets());
        for o in opts {
            d.extend_from_slice(o);
        }
        opt(v6opt::LQ_QUERY, &d)
    }

    fn run6(msg: &[u8], policy: &Policy) -> Action {
        super::super::on_message(
            super::super::Family::V6,
            msg,
            &id(),
            policy,
            &Default::default(),
            1_700_000_000,
        )
    }

    fn reply_status(a: &Action) -> (u16, bool) {
        let Action::Reply { bytes, close } = a else {
            panic!("not a reply: {a:?}")
        };
        let v = MessageView::parse(&bytes[2..]).unwrap();
        assert_eq!(v.msg_type, v6msg::LEASEQUERY_REPLY);
        let st = v.options().get(v6opt::STATUS_CODE).unwrap();
        (u16::from_be_bytes([st.data[0], st.data[1]]), *close)
    }

    #[test]
    fn gating_needs_both_settings() {
        let m = alq(7, &[]);
        assert_eq!(
            reply_status(&run6(&m, &Policy::default())),
            (v6status::NOT_SUPPORTED, true)
        );
        let half = Policy {
            active: true,
            ..Policy::default()
        };
        assert_eq!(
            reply_status(&run6(&m, &half)),
            (v6status::NOT_ALLOWED, true)
        );
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(p.filter, ActiveFilter::V6(None));
        assert_eq!(p.since, None);
        assert_eq!(p.xid, 7);
    }

    #[test]
    fn v6_validation() {
        // END_TIME: MalformedQuery and close.
        let m = alq(1, &[opt(v6opt::LQ_END_TIME, &[0, 0, 0, 1])]);
        assert_eq!(
            reply_status(&run6(&m, &on())),
            (v6status::MALFORMED_QUERY, true)
        );
        // A short START_TIME.
        let m = alq(1, &[opt(v6opt::LQ_START_TIME, &[0, 1])]);
        assert_eq!(
            reply_status(&run6(&m, &on())),
            (v6status::MALFORMED_QUERY, true)
        );
        // START_TIME converts from the 2000 epoch.
        let m = alq(1, &[opt(v6opt::LQ_START_TIME, &100u32.to_be_bytes())]);
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(p.since, Some(946_684_800 + 100));
        // Query types 3, 4, 5 filter.
        let link: Ipv6Addr = "2001:db8:1::".parse().unwrap();
        let m = alq(
            2,
            &[lq_query(
                query_type::BY_RELAY_ID,
                Ipv6Addr::UNSPECIFIED,
                &[opt(v6opt::RELAY_ID, &[0, 3, 0, 1, 9])],
            )],
        );
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(
            p.filter,
            ActiveFilter::V6(Some(V6Filter::RelayId(vec![0, 3, 0, 1, 9], None)))
        );
        let m = alq(2, &[lq_query(query_type::BY_LINK_ADDRESS, link, &[])]);
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(p.filter, ActiveFilter::V6(Some(V6Filter::Link(link))));
        let m = alq(
            2,
            &[lq_query(
                query_type::BY_LINK_ADDRESS,
                Ipv6Addr::UNSPECIFIED,
                &[],
            )],
        );
        assert_eq!(reply_status(&run6(&m, &on())).0, v6status::MALFORMED_QUERY);
        let m = alq(2, &[lq_query(9, Ipv6Addr::UNSPECIFIED, &[])]);
        assert_eq!(
            reply_status(&run6(&m, &on())).0,
            v6status::UNKNOWN_QUERY_TYPE
        );
        // Broken OPTION_LQ_QUERY.
        let m = alq(2, &[opt(v6opt::LQ_QUERY, &[1, 2])]);
        assert_eq!(reply_status(&run6(&m, &on())).0, v6status::MALFORMED_QUERY);
        // No Client-ID: dropped.
        let mut m = vec![v6msg::ACTIVELEASEQUERY, 0, 0, 1];
        m.extend(opt(v6opt::ORO, &[0, 100]));
        assert!(matches!(run6(&m, &on()), Action::Drop));
        // ORO at message level asks for base-time.
        let m = alq(3, &[opt(v6opt::ORO, &[0, 100])]);
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        let Form::V6(f) = &p.form else { panic!() };
        assert!(f.base_time);
    }

    fn v4q(f: impl FnOnce(&mut crate::proto::v4::Message)) -> Vec<u8> {
        let mut m = crate::proto::v4::Message::new(
            crate::proto::codes::BOOTREQUEST,
            v4msg::ACTIVELEASEQUERY,
            0x0a0b0c0d,
        );
        f(&mut m);
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    }

    fn run4(msg: &[u8], policy: &Policy) -> Action {
        super::super::on_message(
            super::super::Family::V4,
            msg,
            &id(),
            policy,
            &Default::default(),
            1_700_000_000,
        )
    }

    fn v4_status(a: &Action) -> (u8, bool) {
        let Action::Reply { bytes, close } = a else {
            panic!("{a:?}")
        };
        let v = V4View::parse(&bytes[2..]).unwrap();
        assert_eq!(v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
        (v.option(v4opt::STATUS_CODE).unwrap()[0], *close)
    }

    #[test]
    fn v4_validation() {
        let plain = v4q(|_| {});
        assert!(matches!(run4(&plain, &Policy::default()), Action::Close));
        let half = Policy {
            active: true,
            ..Policy::default()
        };
        assert_eq!(
            v4_status(&run4(&plain, &half)),
            (v4status::NOT_ALLOWED, true)
        );
        let Action::Active(p) = run4(&plain, &on()) else {
            panic!()
        };
        assert_eq!(p.filter, ActiveFilter::V4All);
        assert_eq!(p.xid, 0x0a0b0c0d);
        let with_ciaddr = v4q(|m| m.ciaddr = Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(
            v4_status(&run4(&with_ciaddr, &on())),
            (v4status::MALFORMED_QUERY, true)
        );
        let with_chaddr = v4q(|m| {
            m.hlen = 6;
            m.chaddr[0] = 2;
        });
        assert_eq!(
            v4_status(&run4(&with_chaddr, &on())).0,
            v4status::MALFORMED_QUERY
        );
        let with_cid = v4q(|m| {
            m.options.push(crate::proto::v4::V4Option::Unknown {
                code: v4opt::CLIENT_ID,
                data: vec![1, 2, 3],
            })
        });
        assert_eq!(
            v4_status(&run4(&with_cid, &on())).0,
            v4status::MALFORMED_QUERY
        );
        let with_end = v4q(|m| m.options.push(crate::proto::v4::V4Option::QueryEndTime(9)));
        assert_eq!(
            v4_status(&run4(&with_end, &on())),
            (v4status::MALFORMED_QUERY, true)
        );
        let with_start = v4q(|m| {
            m.options
                .push(crate::proto::v4::V4Option::QueryStartTime(1_600_000_000))
        });
        let Action::Active(p) = run4(&with_start, &on()) else {
            panic!()
        };
        assert_eq!(p.since, Some(1_600_000_000));
    }

    #[test]
    fn dhcp4o6_validation_and_forms() {
        let inner = v4q(|_| {});
        let oro = lq_query(
            query_type::BY_REMOTE_ID,
            Ipv6Addr::UNSPECIFIED,
            &[
                opt(v6opt::REMOTE_ID, &[0, 0, 0, 9, 1, 2]),
                opt(v6opt::ORO, &[0, 92]),
            ],
        );
        let m = alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &inner)]);
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(
            p.filter,
            ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 1, 2], None)))
        );
        assert_eq!((p.v6_xid(), p.v4_xid()), (5, 0x0a0b0c0d));
        // The opening REPLY carries a DHCPLEASEQUERYSTATUS with both xids.
        let open = p.opening(1_700_000_000, false).unwrap();
        let v = MessageView::parse(&open[2..]).unwrap();
        assert_eq!((v.msg_type, v.xid), (v6msg::LEASEQUERY_REPLY, 5));
        let inner_v = V4View::parse(v.options().get(v6opt::DHCPV4_MSG).unwrap().data).unwrap();
        assert_eq!(inner_v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
        assert_eq!(inner_v.xid, 0x0a0b0c0d);
        // Shutdown: DONE QueryTerminated, base-time, v4 STATUS QueryTerminated.
        let t = p.terminated(1_700_000_000, "shutting down");
        let v = MessageView::parse(&t[2..]).unwrap();
        assert_eq!(v.msg_type, v6msg::LEASEQUERY_DONE);
        assert!(v.options().get(v6opt::LQ_BASE_TIME).is_some());
        let inner_v = V4View::parse(v.options().get(v6opt::DHCPV4_MSG).unwrap().data).unwrap();
        assert_eq!(inner_v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
        assert_eq!(
            inner_v.option(v4opt::STATUS_CODE).unwrap()[0],
            v4status::QUERY_TERMINATED
        );
        // Wrong inner type, no ORO, query-end-time: MalformedQuery in both layers, close.
        let bulk = {
            let m = crate::proto::v4::Message::new(
                crate::proto::codes::BOOTREQUEST,
                v4msg::BULKLEASEQUERY,
                1,
            );
            let mut out = Vec::new();
            m.encode(&mut out).unwrap();
            out
        };
        let no_oro = lq_query(
            query_type::BY_REMOTE_ID,
            Ipv6Addr::UNSPECIFIED,
            &[opt(v6opt::REMOTE_ID, &[0, 0, 0, 9, 1, 2])],
        );
        let end = v4q(|m| m.options.push(crate::proto::v4::V4Option::QueryEndTime(9)));
        for m in [
            alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &bulk)]),
            alq(5, &[no_oro, opt(v6opt::DHCPV4_MSG, &inner)]),
            alq(5, &[opt(v6opt::DHCPV4_MSG, &inner)]),
            alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &end)]),
            alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &[1, 2, 3])]),
        ] {
            let a = run6(&m, &on());
            assert_eq!(reply_status(&a), (v6status::MALFORMED_QUERY, true));
            let Action::Reply { bytes, .. } = a else {
                unreachable!()
            };
            let v = MessageView::parse(&bytes[2..]).unwrap();
            let d = v.options().get(v6opt::DHCPV4_MSG).unwrap().data;
            if let Ok(iv) = V4View::parse(d) {
                assert_eq!(iv.message_type(), Some(v4msg::LEASEQUERYSTATUS));
                assert_eq!(
                    iv.option(v4opt::STATUS_CODE).unwrap()[0],
                    v4status::MALFORMED_QUERY
                );
            }
        }
        // No OPTION_LQ_QUERY: every 4o6 binding, the ORO at message level.
        let m = alq(
            5,
            &[
                opt(v6opt::ORO, &[0, 92, 0, 100]),
                opt(v6opt::DHCPV4_MSG, &inner),
            ],
        );
        let Action::Active(p) = run6(&m, &on()) else {
            panic!()
        };
        assert_eq!(p.filter, ActiveFilter::Dhcp4o6(None));
    }

    fn b4(addr: u8, sw: bool) -> V4Binding {
        V4Binding {
            addr: Ipv4Addr::new(192, 0, 2, addr),
            port_params: None,
            htype: 1,
            chaddr: vec![2, 0, 0, 0, 0, addr],
            client_id: Some(vec![255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, addr]),
            state: dhcp_state::ACTIVE,
            cltt: 1_700_000_000,
            state_start: 1_700_000_000,
            expires: 1_700_003_600,
            circuit_id: None,
            remote_id: Some(vec![0, 0, 0, 9, addr]),
            relay_id: None,
            softwire_src: sw.then(|| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, addr.into())),
            v6: sw.then(|| crate::lease::V6ContextBinding {
                client_src: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, addr.into()),
                link: "2001:db8:1::".parse().unwrap(),
                relay: None,
            }),
            data_source: 0,
        }
    }

    fn b6(n: u8) -> V6Binding {
        V6Binding {
            duid: vec![0, 3, 0, 1, n],
            link: "2001:db8:2::".parse().unwrap(),
            iana: vec![V6Addr {
                addr: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, n.into()),
                preferred_until: 1_700_003_600,
                valid_until: 1_700_007_200,
            }],
            iapd: vec![],
            cltt: 1_700_000_000,
            relay_id: Some(vec![0, 3, 0, 1, 9]),
            remote_id: None,
        }
    }

    fn ch4(b: V4Binding, kind: ChangeKind) -> Change {
        Change::V4 {
            at: 1_700_000_000,
            kind,
            binding: b,
        }
    }

    #[test]
    fn filters_match_the_right_bindings() {
        let plain = ch4(b4(1, false), ChangeKind::Feed);
        let o6 = ch4(b4(2, true), ChangeKind::Feed);
        let v6c = Change::V6 {
            at: 0,
            kind: ChangeKind::Feed,
            binding: b6(3),
        };
        assert!(ActiveFilter::V4All.matches(&plain) && ActiveFilter::V4All.matches(&o6));
        assert!(!ActiveFilter::V4All.matches(&v6c));
        assert!(!ActiveFilter::Dhcp4o6(None).matches(&plain));
        assert!(ActiveFilter::Dhcp4o6(None).matches(&o6));
        let remote = ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 2], None)));
        assert!(remote.matches(&o6));
        let other = ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 7], None)));
        assert!(!other.matches(&o6));
        let duid =
            ActiveFilter::Dhcp4o6(Some(V6Filter::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 2])));
        assert!(duid.matches(&o6));
        let link = ActiveFilter::Dhcp4o6(Some(V6Filter::Link("2001:db8:1::77".parse().unwrap())));
        assert!(link.matches(&o6));
        assert!(ActiveFilter::V6(None).matches(&v6c) && !ActiveFilter::V6(None).matches(&o6));
        let relay = ActiveFilter::V6(Some(V6Filter::RelayId(
            vec![0, 3, 0, 1, 9],
            Some("2001:db8:2::1".parse().unwrap()),
        )));
        assert!(relay.matches(&v6c));
        let relay_elsewhere = ActiveFilter::V6(Some(V6Filter::RelayId(
            vec![0, 3, 0, 1, 9],
            Some("2001:db8:3::1".parse().unwrap()),
        )));
        assert!(!relay_elsewhere.matches(&v6c));
        let addr = ActiveFilter::V6(Some(V6Filter::Address(Ipv6Addr::new(
            0x2001, 0xdb8, 2, 0, 0, 0, 0, 3,
        ))));
        assert!(addr.matches(&v6c));
    }

    fn v4plan() -> ActivePlan {
        ActivePlan {
            xid: 0x01020304,
            filter: ActiveFilter::V4All,
            form: Form::V4(V4Form {
                xid: 0x01020304,
                server_id: Ipv4Addr::LOCALHOST,
                prl: PrlSet::from_prl(&[156]),
            }),
            since: None,
        }
    }

    #[test]
    fn updates_are_encoded_once_and_patched_per_subscriber() {
        let p = v4plan();
        let e = p
            .encode_change(&ch4(b4(1, false), ChangeKind::Renew), 1_700_000_010)
            .unwrap();
        let mut out = Vec::new();
        e.append_to(&mut out, 0, 0xdeadbeef);
        let v = V4View::parse(&out[2..]).unwrap();
        assert_eq!(v.xid, 0xdeadbeef);
        assert_eq!(v.message_type(), Some(v4msg::LEASEACTIVE));
        assert_eq!(v.ciaddr, Ipv4Addr::new(192, 0, 2, 1));
        // A removed binding leaves the bound state: DHCPLEASEUNASSIGNED.
        let e = p
            .encode_change(&ch4(b4(1, false), ChangeKind::Remove), 1_700_000_010)
            .unwrap();
        let v = V4View::parse(&e.bytes[2..]).unwrap();
        assert_eq!(v.message_type(), Some(v4msg::LEASEUNASSIGNED));
        // A v6 change does not encode for a v4 plan.
        let v6c = Change::V6 {
            at: 0,
            kind: ChangeKind::Remove,
            binding: b6(3),
        };
        assert!(p.encode_change(&v6c, 0).is_none());
        // v6: removal sends lifetimes 0.
        let p6 = ActivePlan {
            xid: 9,
            filter: ActiveFilter::V6(None),
            form: Form::V6(V6Form {
                xid: 9,
                requestor_duid: vec![0, 3, 0, 1, 1],
                server_duid: vec![0, 4, 1],
                oro: OroSet::default(),
                base_time: true,
            }),
            since: None,
        };
        let e = p6.encode_change(&v6c, 1_700_000_010).unwrap();
        let v = MessageView::parse(&e.bytes[2..]).unwrap();
        assert_eq!(v.msg_type, v6msg::LEASEQUERY_DATA);
        let cd = v.options().get(v6opt::CLIENT_DATA).unwrap();
        let inner = crate::proto::v6::OptionsView::new(cd.data).unwrap();
        let ia = inner.get(v6opt::IAADDR).unwrap();
        assert_eq!(&ia.data[16..24], &[0; 8]);
        // Statuses.
        let k = p6.keepalive(1);
        let v = MessageView::parse(&k[2..]).unwrap();
        assert_eq!(v.msg_type, v6msg::LEASEQUERY_DATA);
        assert!(v.options().get(v6opt::CLIENT_DATA).is_none());
        let c = p6.catch_up_complete(1);
        let v = MessageView::parse(&c[2..]).unwrap();
        let st = v.options().get(v6opt::STATUS_CODE).unwrap();
        assert_eq!(st.data[..2], v6status::CATCH_UP_COMPLETE.to_be_bytes());
        let k4 = p.keepalive(1);
        let v = V4View::parse(&k4[2..]).unwrap();
        assert_eq!(
            v.option(v4opt::STATUS_CODE).unwrap()[0],
            v4status::CONNECTION_ACTIVE
        );
        assert!(p.opening(1, false).is_none());
        let dm = p.opening(1, true).unwrap();
        let v = V4View::parse(&dm[2..]).unwrap();
        assert_eq!(
            v.option(v4opt::STATUS_CODE).unwrap()[0],
            v4status::DATA_MISSING
        );
        assert!(v.has_option(v4opt::BASE_TIME));
        let dm6 = p6.opening(1, true).unwrap();
        let v = MessageView::parse(&dm6[2..]).unwrap();
        assert_eq!(v.msg_type, v6msg::LEASEQUERY_REPLY);
        assert!(v.options().get(v6opt::LQ_BASE_TIME).is_some());
        assert_ne!(p.wire_key(), p6.wire_key());
    }

    fn k(n: u8) -> Option<Rc<BindingKey>> {
        Some(Rc::new(BindingKey::V4(crate::lease::V4Key {
            addr: Ipv4Addr::new(10, 0, 0, n),
            port_params: None,
        })))
    }

    #[test]
    fn backlog_appends_until_a_bound_then_coalesces() {
        let mut b: Backlog<u32> = Backlog::new(BacklogLimits {
            max_bindings: 3,
            max_bytes: 100,
        });
        let q = |was_empty, coalesced| {
            Ok(Pushed {
                was_empty,
                coalesced,
            })
        };
        assert_eq!(b.push(k(1), 1, 10), q(true, 0));
        assert_eq!(b.push(None, 2, 5), q(false, 0));
        // Below the bounds nothing is indexed: a second state of binding 1 is appended.
        assert_eq!(b.push(k(1), 3, 20), q(false, 0));
        assert!(!b.is_indexed());
        assert_eq!((b.bindings(), b.bytes()), (2, 35));
        assert_eq!(b.push(k(2), 4, 10), q(false, 0));
        // A fourth keyed message would pass max_bindings: the backlog compacts first (3 moves
        // into 1's place), then takes it.
        assert_eq!(b.push(k(3), 5, 10), q(false, 1));
        assert!(b.is_indexed());
        assert_eq!((b.bindings(), b.bytes()), (3, 45));
        // Indexed: every later state coalesces at once.
        assert_eq!(b.push(k(2), 6, 10), q(false, 1));
        assert!(b.push(k(4), 7, 10).is_err(), "a fourth binding");
        assert!(b.push(None, 8, 60).is_err(), "over the octets");
        // The coalesced message keeps the oldest place, before the control message.
        assert_eq!(b.pop(usize::MAX), vec![3, 2, 6, 5]);
        assert!(b.is_empty());
        assert!(!b.is_indexed(), "drained: back to appends");
        assert_eq!((b.bindings(), b.bytes()), (0, 0));
        assert_eq!(b.push(k(1), 9, 10), q(true, 0));
        assert_eq!(b.push(k(2), 10, 10), q(false, 0));
        assert_eq!(b.pop(1), vec![9]);
        assert_eq!(b.push(k(1), 11, 10), q(false, 0));
        assert_eq!(b.pop(usize::MAX), vec![10, 11]);
    }

    #[test]
    fn backlog_over_the_octets_after_compaction_is_refused() {
        let mut b: Backlog<u32> = Backlog::new(BacklogLimits {
            max_bindings: 100,
            max_bytes: 30,
        });
        b.push(k(1), 1, 10).unwrap();
        b.push(k(1), 2, 10).unwrap();
        b.push(k(2), 3, 10).unwrap();
        // 40 octets would not fit; compaction frees 10 (1's first state): it fits.
        assert_eq!(b.push(k(3), 4, 10).map(|p| p.coalesced), Ok(1));
        assert_eq!(b.bytes(), 30);
        assert!(b.push(k(4), 5, 1).is_err());
        assert_eq!(b.pop(usize::MAX), vec![2, 3, 4]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Against a model: nothing is lost (each binding's last pushed state is the last one
        /// delivered for it), control messages come in order and after everything pushed before
        /// them, the counters match what waits, and a refusal happens only when the distinct
        /// bindings or their latest octets are over a bound.
        #[test]
        fn backlog_loses_nothing_and_keeps_order(
            ops in proptest::collection::vec((0u8..12, 1usize..40, proptest::bool::ANY), 1..300),
            max_bindings in 1usize..10,
            max_bytes in 40usize..400,
        ) {
            use std::collections::BTreeMap;
            let mut b: Backlog<(Option<u8>, u32)> =
                Backlog::new(BacklogLimits { max_bindings, max_bytes });
            // Waiting, as the model sees it: latest state (seq, octets) per binding, control
            // messages in order.
            let mut latest: BTreeMap<u8, (u32, usize)> = BTreeMap::new();
            let mut delivered_last: BTreeMap<u8, u32> = BTreeMap::new();
            // Per control message: the bindings waiting when it was pushed, with how many
            // messages of each had been delivered then.
            let mut pushed_before_control: Vec<(u32, Vec<(u8, usize)>)> = Vec::new();
            let mut control_bytes = 0usize;
            let mut deliveries: BTreeMap<u8, usize> = BTreeMap::new();
            let mut next_control = 0u32;
            for (seq, (n, bytes, pop)) in ops.into_iter().enumerate() {
                let seq = seq as u32;
                if pop {
                    for (key, s) in b.pop(bytes * 8) {
                        match key {
                            Some(n) => {
                                delivered_last.insert(n, s);
                                *deliveries.entry(n).or_default() += 1;
                                if latest.get(&n).map(|l| l.0) == Some(s) {
                                    latest.remove(&n);
                                }
                            }
                            None => {
                                let (want, keys) = pushed_before_control.remove(0);
                                proptest::prop_assert_eq!(s, want, "control messages in order");
                                for (k, then) in keys {
                                    proptest::prop_assert!(deliveries.get(&k).copied().unwrap_or(0) > then,
                                        "binding {} pushed before a control message came after it", k);
                                }
                                control_bytes -= 10;
                            }
                        }
                    }
                    if b.is_empty() {
                        proptest::prop_assert!(latest.is_empty() && pushed_before_control.is_empty());
                    }
                    continue;
                }
                if n == 11 {
                    let keys: Vec<(u8, usize)> = latest
                        .keys()
                        .map(|k| (*k, deliveries.get(k).copied().unwrap_or(0)))
                        .collect();
                    match b.push(None, (None, next_control), 10) {
                        Ok(_) => {
                            pushed_before_control.push((next_control, keys));
                            next_control += 1;
                            control_bytes += 10;
                        }
                        Err(_) => {
                            let octets: usize = latest.values().map(|v| v.1).sum::<usize>() + control_bytes;
                            proptest::prop_assert!(octets + 10 > max_bytes, "refused a control message that fits");
                        }
                    }
                    continue;
                }
                let distinct = latest.len() + usize::from(!latest.contains_key(&n));
                let octets: usize = latest.iter().filter(|(k, _)| **k != n).map(|(_, v)| v.1).sum::<usize>()
                    + bytes + control_bytes;
                match b.push(k(n), (Some(n), seq), bytes) {
                    Ok(_) => {
                        // Within the bounds counted over the latest states.
                        latest.insert(n, (seq, bytes));
                    }
                    Err(_) => {
                        proptest::prop_assert!(distinct > max_bindings || octets > max_bytes,
                            "refused although {} bindings / {} octets fit", distinct, octets);
                        // A refusal terminates the subscriber in the server: stop here.
                        break;
                    }
                }
                proptest::prop_assert!(b.bindings() >= latest.len());
            }
            // Drain: every binding's last pushed state is the last delivered.
            for (key, s) in b.pop(usize::MAX) {
                if let Some(n) = key {
                    delivered_last.insert(n, s);
                }
            }
            for (n, (s, _)) in latest {
                proptest::prop_assert_eq!(delivered_last.get(&n), Some(&s));
            }
            proptest::prop_assert!(b.is_empty());
            proptest::prop_assert_eq!((b.bindings(), b.bytes()), (0, 0));
        }
    }
}
