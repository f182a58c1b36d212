//! A bulk query once accepted: what every shard scans, and how the stream is encoded.
//!
//! Shards encode every record as a non-first message (LEASEQUERY-DATA; for v4 without option
//! 54). The connection's shard turns the first record that reaches it into the first message of
//! the stream ([`ScanPlan::promote_first`]: LEASEQUERY-REPLY with Client-ID and Server-ID; v4
//! option 54) and ends the stream ([`ScanPlan::finish`], [`ScanPlan::terminated`]) the way
//! RFC 5460 §7.2 and RFC 6926 §7.3 say.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lease::{V4Query, V6Query};
use crate::proto::codes::{v4msg, v4opt, v6msg, v6opt, v6status};
use crate::proto::encoder::{
    BindingEncoder, Dhcp4o6ReplyParams, OroSet, PrlSet, Reply, StreamWriter, V4ReplyParams,
    V6ReplyParams, V6Status,
};
use crate::proto::framing::MAX_FRAME;
use crate::proto::record::{V4Record, V6Record};
use crate::proto::EncodeError;

/// Which bindings a query selects, on every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanTarget {
    /// DHCPv4 and DHCP4o6 bindings.
    V4(V4Query),
    /// Plain DHCPv6 bindings.
    V6(V6Query),
}

/// How a query's messages are encoded.
#[derive(Debug, Clone)]
pub enum Form {
    /// DHCPv6 (RFC 5460): REPLY, DATA..., DONE.
    V6(V6Form),
    /// DHCPv4 (RFC 6926): LEASEACTIVE/UNASSIGNED..., DONE.
    V4(V4Form),
    /// DHCP4o6 (the draft): v6 messages carrying the v4 ones in OPTION_DHCPV4_MSG.
    Dhcp4o6 {
        v6: V6Form,
        v4: V4Form,
        br: Option<Ipv6Addr>,
        bind_prefix: Option<(u8, Ipv6Addr)>,
    },
}

/// The owned parameters of the v6 layer.
#[derive(Debug, Clone)]
pub struct V6Form {
    pub xid: u32,
    pub requestor_duid: Vec<u8>,
    pub server_duid: Vec<u8>,
    pub oro: OroSet,
    pub base_time: bool,
}

/// The owned parameters of the v4 layer.
#[derive(Debug, Clone, Copy)]
pub struct V4Form {
    pub xid: u32,
    pub server_id: Ipv4Addr,
    pub prl: PrlSet,
}

impl V6Form {
    pub(crate) fn params(&self, now: u32) -> V6ReplyParams<'_> {
        V6ReplyParams {
            xid: self.xid,
            requestor_duid: &self.requestor_duid,
            server_duid: &self.server_duid,
            oro: self.oro.clone(),
            base_time: self.base_time,
            reply_status: None,
            now,
        }
    }
}

impl V4Form {
    pub(crate) fn params(&self, now: u32) -> V4ReplyParams {
        V4ReplyParams {
            xid: self.xid,
            server_id: self.server_id,
            prl: self.prl,
            now,
        }
    }
}

/// A bulk query: the scan and the encoding. Built by the session, shared (`Arc`) by every
/// shard that scans for it.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    /// The transaction id that names the query on its connection (v6 xid for v6 and DHCP4o6,
    /// v4 xid for v4): a second query with a running id is refused.
    pub xid: u32,
    pub target: ScanTarget,
    pub form: Form,
}

/// One binding lent by a shard's table.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    V4(V4Record<'a>),
    V6(V6Record<'a>),
}

/// What became of one record handed to [`PlanEncoder::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// Written to the buffer.
    Written,
    /// Does not fit in what is left of the buffer: flush and offer it again.
    NoRoom,
    /// Can never be encoded in one message (over 65535 octets): skipped and counted.
    TooLong,
}

/// The borrowed encoder parameters of a plan at one instant, made once per scan turn; for v4
/// and DHCP4o6 with the per-query template encoder made from them ([`BindingEncoder`]: the same
/// octets as the reference encoder, decided once per turn instead of once per record).
#[derive(Debug)]
pub enum PlanEncoder<'p> {
    V6(V6ReplyParams<'p>),
    V4(V4ReplyParams, BindingEncoder<'static>),
    Dhcp4o6(Dhcp4o6ReplyParams<'p>, BindingEncoder<'p>),
}

impl PlanEncoder<'_> {
    /// Appends `rec` as a non-first message to `buf` if it fits below `limit`.
    pub fn encode(&self, rec: Record<'_>, buf: &mut Vec<u8>, limit: usize) -> Encoded {
        let mut w = StreamWriter::with_limit(buf, limit);
        let res = match (self, &rec) {
            (PlanEncoder::V6(p), Record::V6(r)) => w.write(&Reply::V6Binding {
                p,
                rec: r,
                first: false,
            }),
            (PlanEncoder::V4(_, t) | PlanEncoder::Dhcp4o6(_, t), Record::V4(r)) => {
                t.write(&mut w, r)
            }
            // A record of the other family cannot come from a scan of this plan's target.
            _ => return Encoded::TooLong,
        };
        match res {
            Ok(_) => Encoded::Written,
            Err(EncodeError::BufferFull { .. }) => Encoded::NoRoom,
            Err(_) => Encoded::TooLong,
        }
    }
}

impl ScanPlan {
    /// The encoder parameters at Unix time `now` (base-time, remaining lifetimes).
    pub fn encoder(&self, now: u32) -> PlanEncoder<'_> {
        match &self.form {
            Form::V6(f) => PlanEncoder::V6(f.params(now)),
            Form::V4(f) => {
                let p = f.params(now);
                PlanEncoder::V4(p, BindingEncoder::v4(&p, false))
            }
            Form::Dhcp4o6 {
                v6,
                v4,
                br,
                bind_prefix,
            } => {
                let p = Dhcp4o6ReplyParams {
                    v6: v6.params(now),
                    v4: v4.params(now),
                    br: *br,
                    bind_prefix: *bind_prefix,
                };
                let t = BindingEncoder::dhcp4o6(&p, false);
                PlanEncoder::Dhcp4o6(p, t)
            }
        }
    }

    /// Turns the first frame of `chunk` (a non-first message) into the first message of the
    /// stream. Returns the new frame and how many octets of `chunk` it replaces; `None` when
    /// the chunk does not start with a frame this plan produced.
    pub fn promote_first(&self, chunk: &[u8]) -> Option<(Vec<u8>, usize)> {
        let len = u16::from_be_bytes([*chunk.first()?, *chunk.get(1)?]) as usize;
        let msg = chunk.get(2..2 + len)?;
        let body = match &self.form {
            Form::V6(v6) => promote_v6(msg, v6, None)?,
            Form::V4(v4) => insert_server_id(msg, v4.server_id)?,
            Form::Dhcp4o6 { v6, v4, .. } => promote_v6(msg, v6, Some(v4.server_id))?,
        };
        let mut out = Vec::with_capacity(body.len() + 2);
        out.extend_from_slice(&u16::try_from(body.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&body);
        Some((out, 2 + len))
    }

    /// The last message of a stream that sent `total` records: DONE, or for v6 a lone REPLY
    /// when nothing matched (RFC 5460 §7.2); v4 always DONE, with option 54 when it is the
    /// only message (RFC 6926 §7.3).
    pub fn finish(&self, total: u64, now: u32) -> Vec<u8> {
        self.end(
            if total == 0 {
                StreamEnd::Empty
            } else {
                StreamEnd::Done
            },
            None,
            now,
        )
    }

    /// The message that ends a stream cut short (shutdown, internal failure): QueryTerminated
    /// in a DONE when a first message was sent, else in the REPLY (RFC 5460 §5.5, §7.4).
    pub fn terminated(&self, replied: bool, now: u32) -> Vec<u8> {
        let st = V6Status {
            code: v6status::QUERY_TERMINATED,
            text: "query terminated",
        };
        self.end(
            if replied {
                StreamEnd::Done
            } else {
                StreamEnd::Empty
            },
            Some(st),
            now,
        )
    }

    fn end(&self, how: StreamEnd, status: Option<V6Status<'_>>, now: u32) -> Vec<u8> {
        let mut buf = Vec::with_capacity(1024);
        let mut w = StreamWriter::with_limit(&mut buf, MAX_FRAME);
        let res = match (&self.form, how) {
            (Form::V6(f), StreamEnd::Empty) => w.write(&Reply::V6Reply {
                p: &f.params(now),
                status,
            }),
            (Form::V6(f), StreamEnd::Done) => w.write(&Reply::V6Done {
                p: &f.params(now),
                status,
            }),
            (Form::V4(f), how) => {
                let st = status.map(|s| s.v4_twin());
                w.write(&Reply::V4Done {
                    p: &f.params(now),
                    status: st,
                    first: how == StreamEnd::Empty,
                })
            }
            (Form::Dhcp4o6 { .. }, how) => {
                let PlanEncoder::Dhcp4o6(p, _) = self.encoder(now) else {
                    unreachable!("form is Dhcp4o6")
                };
                match how {
                    StreamEnd::Empty => w.write(&Reply::O6Reply { p: &p, status }),
                    StreamEnd::Done => w.write(&Reply::O6Done { p: &p, status }),
                }
            }
        };
        debug_assert!(res.is_ok(), "end-of-stream messages are small: {res:?}");
        buf
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    Empty,
    Done,
}

/// LEASEQUERY-DATA -> LEASEQUERY-REPLY: same xid, the requestor's Client-ID and our Server-ID
/// first, then the DATA's options (for DHCP4o6, the inner v4 message gains option 54).
fn promote_v6(msg: &[u8], f: &V6Form, v4_server_id: Option<Ipv4Addr>) -> Option<Vec<u8>> {
    if msg.len() < 4 || msg[0] != v6msg::LEASEQUERY_DATA {
        return None;
    }
    let mut out =
        Vec::with_capacity(msg.len() + 8 + f.requestor_duid.len() + f.server_duid.len() + 6);
    out.push(v6msg::LEASEQUERY_REPLY);
    out.extend_from_slice(&msg[1..4]);
    for (code, val) in [
        (v6opt::CLIENTID, &f.requestor_duid),
        (v6opt::SERVERID, &f.server_duid),
    ] {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&u16::try_from(val.len()).ok()?.to_be_bytes());
        out.extend_from_slice(val);
    }
    let mut rest = &msg[4..];
    while !rest.is_empty() {
        let code = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        let len = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) as usize;
        let data = rest.get(4..4 + len)?;
        match (code, v4_server_id) {
            (v6opt::DHCPV4_MSG, Some(sid)) => {
                let inner = insert_server_id(data, sid)?;
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(&u16::try_from(inner.len()).ok()?.to_be_bytes());
                out.extend_from_slice(&inner);
            }
            _ => out.extend_from_slice(&rest[..4 + len]),
        }
        rest = &rest[4 + len..];
    }
    Some(out)
}

/// A DHCPv4 leasequery message with option 54 added right after option 53 (RFC 6926 §7.3:
/// the server identifier goes in the first message of every reply stream).
fn insert_server_id(msg: &[u8], sid: Ipv4Addr) -> Option<Vec<u8>> {
    const OPTIONS: usize = 240;
    if msg.len() < OPTIONS + 3 || msg[OPTIONS] != v4opt::MESSAGE_TYPE || msg[OPTIONS + 1] != 1 {
        return None;
    }
    if !matches!(
        msg[OPTIONS + 2],
        v4msg::LEASEACTIVE
            | v4msg::LEASEUNASSIGNED
            | v4msg::LEASEQUERYDONE
            | v4msg::LEASEQUERYSTATUS
    ) {
        return None;
    }
    let at = OPTIONS + 3;
    let mut out = Vec::with_capacity(msg.len() + 6);
    out.extend_from_slice(&msg[..at]);
    out.extend_from_slice(&[v4opt::SERVER_ID, 4]);
    out.extend_from_slice(&sid.octets());
    out.extend_from_slice(&msg[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codes::dhcp_state;
    use crate::proto::record::{PortParams, V6Addr, V6Context};

    fn v4rec() -> V4Record<'static> {
        V4Record {
            addr: Ipv4Addr::new(192, 0, 2, 10),
            port_params: Some(PortParams {
                offset: 0,
                psid_len: 4,
                psid: 3,
            }),
            htype: 1,
            chaddr: &[2, 0, 0, 0, 0, 1],
            client_id: Some(&[255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1]),
            state: dhcp_state::ACTIVE,
            cltt: 1_700_000_000,
            state_start: 1_700_000_000,
            expires: 1_700_003_600,
            circuit_id: None,
            remote_id: Some(b"line-1"),
            relay_id: Some(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 9]),
            softwire_src: Some("2001:db8:1::10".parse().unwrap()),
            v6: Some(V6Context {
                client_src: "2001:db8:1::10".parse().unwrap(),
                link: "2001:db8:1::".parse().unwrap(),
                relay: None,
            }),
            data_source: 0,
        }
    }

    fn v6form() -> V6Form {
        V6Form {
            xid: 0xabcdef,
            requestor_duid: vec![0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
            server_duid: vec![0, 4, 1, 2, 3, 4],
            oro: OroSet::from_codes([v6opt::S46_V4V6BIND]),
            base_time: true,
        }
    }

    fn v4form() -> V4Form {
        V4Form {
            xid: 0x11223344,
            server_id: Ipv4Addr::new(127, 0, 0, 1),
            prl: PrlSet::from_prl(&[51, 91, 109, 159]),
        }
    }

    /// Promoting a non-first message must give exactly what the encoder writes for a first one.
    fn check(plan: &ScanPlan, rec: Record<'_>, first: impl Fn(&PlanEncoder<'_>, &mut Vec<u8>)) {
        let now = 1_700_000_100;
        let enc = plan.encoder(now);
        let mut chunk = Vec::with_capacity(70_000);
        assert_eq!(enc.encode(rec, &mut chunk, 70_000), Encoded::Written);
        let data_len = chunk.len();
        assert_eq!(enc.encode(rec, &mut chunk, 70_000), Encoded::Written);
        let (promoted, consumed) = plan.promote_first(&chunk).expect("promotable");
        assert_eq!(consumed, data_len);
        let mut direct = Vec::with_capacity(70_000);
        first(&enc, &mut direct);
        assert_eq!(promoted, direct);
    }

    #[test]
    fn promoted_first_equals_the_encoders_first_message() {
        let rec = v4rec();
        let v4 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::V4(v4form()),
        };
        check(&v4, Record::V4(rec), |e, b| {
            let PlanEncoder::V4(p, _) = e else { panic!() };
            StreamWriter::new(b)
                .write(&Reply::V4Binding {
                    p,
                    rec: &rec,
                    first: true,
                })
                .unwrap();
        });
        let o6 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::Dhcp4o6 {
                v6: v6form(),
                v4: v4form(),
                br: None,
                bind_prefix: None,
            },
        };
        check(&o6, Record::V4(rec), |e, b| {
            let PlanEncoder::Dhcp4o6(p, _) = e else {
                panic!()
            };
            StreamWriter::new(b)
                .write(&Reply::O6Binding {
                    p,
                    rec: &rec,
                    first: true,
                })
                .unwrap();
        });
        let addrs = [V6Addr {
            addr: "2001:db8:2::5".parse().unwrap(),
            preferred_until: 1_700_003_600,
            valid_until: 1_700_007_200,
        }];
        let r6 = V6Record {
            duid: &[0, 3, 0, 1, 2, 0, 0, 0, 0, 5],
            link: "2001:db8:2::".parse().unwrap(),
            iana: &addrs,
            iapd: &[],
            cltt: 1_700_000_000,
            relay_id: None,
            remote_id: None,
        };
        let v6 = ScanPlan {
            xid: 1,
            target: ScanTarget::V6(V6Query {
                select: crate::lease::V6Select::Link(r6.link),
                link_filter: None,
                changed_since: None,
                changed_until: None,
            }),
            form: Form::V6(v6form()),
        };
        check(&v6, Record::V6(r6), |e, b| {
            let PlanEncoder::V6(p) = e else { panic!() };
            StreamWriter::new(b)
                .write(&Reply::V6Binding {
                    p,
                    rec: &r6,
                    first: true,
                })
                .unwrap();
        });
    }

    fn all() -> V4Query {
        V4Query {
            select: crate::lease::V4Select::All,
            changed_since: None,
            changed_until: None,
            only_4o6: false,
            only_active: false,
        }
    }

    #[test]
    fn stream_ends_follow_the_rfcs() {
        let now = 1_700_000_100;
        let v6 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::V6(v6form()),
        };
        // No match: a lone LEASEQUERY-REPLY; matches: LEASEQUERY-DONE (RFC 5460 §7.2).
        assert_eq!(v6.finish(0, now)[2], v6msg::LEASEQUERY_REPLY);
        assert_eq!(v6.finish(3, now)[2], v6msg::LEASEQUERY_DONE);
        assert_eq!(v6.terminated(true, now)[2], v6msg::LEASEQUERY_DONE);
        assert_eq!(v6.terminated(false, now)[2], v6msg::LEASEQUERY_REPLY);
        let v4 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::V4(v4form()),
        };
        for (msg, has54) in [(v4.finish(0, now), true), (v4.finish(2, now), false)] {
            let view = crate::proto::v4::MessageView::parse(&msg[2..]).unwrap();
            assert_eq!(view.message_type(), Some(v4msg::LEASEQUERYDONE));
            assert_eq!(view.has_option(v4opt::SERVER_ID), has54);
        }
        let t = v4.terminated(true, now);
        let view = crate::proto::v4::MessageView::parse(&t[2..]).unwrap();
        assert_eq!(
            view.option(crate::proto::codes::v4opt::STATUS_CODE)
                .unwrap()[0],
            crate::proto::codes::v4status::QUERY_TERMINATED
        );
    }

    #[test]
    fn promote_rejects_foreign_frames() {
        let v6 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::V6(v6form()),
        };
        assert!(v6.promote_first(&[]).is_none());
        assert!(
            v6.promote_first(&[0, 4, 15, 0, 0, 1]).is_none(),
            "a REPLY is not a DATA"
        );
        assert!(
            v6.promote_first(&[0, 9, 17, 0, 0, 1]).is_none(),
            "truncated frame"
        );
        let v4 = ScanPlan {
            xid: 1,
            target: ScanTarget::V4(all()),
            form: Form::V4(v4form()),
        };
        assert!(v4.promote_first(&[0, 4, 1, 2, 3, 4]).is_none());
    }
}
