//! The messages of an accepted active query's stream: the opening REPLY, updates (one encoding
//! per [`WireKey`], the transaction ids patched per subscriber), CatchUpComplete, DataMissing,
//! keepalives and the final QueryTerminated.

use super::filter::ActiveFilter;
use crate::lease::{Change, ChangeKind, V4Binding};
use crate::proto::codes::{dhcp_state, v4msg, v4status, v6status};
use crate::proto::encoder::{
    Dhcp4o6ReplyParams, EncodedAt, Reply, StreamWriter, V4Status, V6Status,
};
use crate::proto::framing::MAX_FRAME;
use crate::proto::record::{RelayRecord, V4Record, V6Addr, V6Context, V6Prefix, V6Record};
use crate::session::plan::{Form, V4Form, V6Form};
use crate::session::refuse;

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
/// updates are encoded once per wire key (docs/DESIGN.md section 3, rule 5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireKey {
    kind: u8,
    oro: Vec<u16>,
    base_time: bool,
    prl: Vec<u8>,
}

/// One encoded message of a stream, with where its transaction ids sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedUpdate {
    /// The framed message (2-octet length prefix included).
    pub bytes: Vec<u8>,
    /// Transaction id offsets inside `bytes`.
    pub at: EncodedAt,
}

impl EncodedUpdate {
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
    pub fn encode_change(&self, change: &Change, now: u32) -> Option<EncodedUpdate> {
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
        Some(EncodedUpdate { bytes: buf, at })
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
