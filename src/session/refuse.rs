//! Refusals (sans-io): the one place where a refused query becomes the bytes of its error reply,
//! for each wire form.
//!
//! A refusal is a DHCPv6 status code (RFC 5460/7653 numbering) and a text; the DHCPv4 layer
//! carries the status that means the same ([`V6Status::v4_twin`], the numbers differ: see the
//! rules file). Which message carries it depends on the wire form and on what was refused
//! ([`Refused`]):
//!
//! | form     | bulk query (RFC 5460, RFC 6926)          | active query (RFC 7653, RFC 7724)          |
//! |----------|------------------------------------------|--------------------------------------------|
//! | v6       | LEASEQUERY-REPLY with the status         | the same                                   |
//! | v4       | DHCPLEASEQUERYDONE, option 54            | DHCPLEASEQUERYSTATUS, option 54            |
//! | DHCP4o6  | REPLY holding a DHCPLEASEQUERYDONE       | REPLY holding a DHCPLEASEQUERYSTATUS       |
//!
//! Also here: the answers to STARTTLS and DHCPTLS on a server without TLS
//! ([`starttls_refused`]; DHCPTLS is a v4 refusal retyped), and [`busy_reply`], the refusal of a
//! query beside an active one.

use super::plan::Form;
use super::{form, Family, Identity};
use crate::proto::codes::{v4msg, v4opt, v6msg, v6opt, v6status};
use crate::proto::encoder::{Dhcp4o6ReplyParams, Reply, StreamWriter, V6Status};
use crate::proto::framing::MAX_FRAME;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{MessageView, V6Option};

/// What a refusal ends: it decides the DHCPv4 message that carries the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A bulk query: v4 DHCPLEASEQUERYDONE (RFC 6926 §7.4).
    Bulk,
    /// An active query: v4 DHCPLEASEQUERYSTATUS (RFC 7724 §7.4).
    Active,
}

/// The framed error reply that refuses a query of `form` with the DHCPv6 status `code` and
/// `text` (the DHCPv4 layer gets the status of the same meaning). It is the first and only
/// message of the query's stream.
pub fn refusal(form: &Form, refused: Refused, code: u16, text: &str, now: u32) -> Vec<u8> {
    let status = V6Status { code, text };
    let mut buf = Vec::with_capacity(512);
    let mut w = StreamWriter::with_limit(&mut buf, MAX_FRAME);
    let _ = match form {
        Form::V6(f) => w.write(&Reply::V6Reply {
            p: &f.params(now),
            status: Some(status),
        }),
        Form::V4(f) => {
            let p = &f.params(now);
            let status = status.v4_twin();
            w.write(&match refused {
                Refused::Bulk => Reply::V4Done {
                    p,
                    status: Some(status),
                    first: true,
                },
                Refused::Active => Reply::V4Status {
                    p,
                    status,
                    first: true,
                },
            })
        }
        Form::Dhcp4o6 {
            v6,
            v4,
            br,
            bind_prefix,
        } => w.write(&Reply::O6Reply {
            p: &Dhcp4o6ReplyParams {
                v6: v6.params(now),
                v4: v4.params(now),
                br: *br,
                bind_prefix: *bind_prefix,
            },
            status: Some(status),
        }),
    };
    if refused == Refused::Active && matches!(form, Form::Dhcp4o6 { .. }) {
        // RFC 7724 §7.4: the v4 layer of an active status is a DHCPLEASEQUERYSTATUS.
        retype_inner_v4(&mut buf, v4msg::LEASEQUERYSTATUS);
    }
    buf
}

/// Rewrites option 53 of a framed DHCPv4 message written by the encoder (53 is its first option).
pub(super) fn retype_v4(frame: &mut [u8], t: u8) {
    if frame.get(2 + 240) == Some(&v4opt::MESSAGE_TYPE) {
        if let Some(b) = frame.get_mut(2 + 242) {
            *b = t;
        }
    }
}

/// Rewrites the message type (option 53) of the DHCPv4 message inside OPTION_DHCPV4_MSG of a
/// framed DHCPv6 message (the encoder writes 53 first).
pub(super) fn retype_inner_v4(frame: &mut [u8], t: u8) {
    let mut at = 2 + 4;
    while let (Some(c), Some(l)) = (frame.get(at..at + 2), frame.get(at + 2..at + 4)) {
        let code = u16::from_be_bytes([c[0], c[1]]);
        let len = u16::from_be_bytes([l[0], l[1]]) as usize;
        if code == v6opt::DHCPV4_MSG {
            let inner = at + 4;
            if frame.get(inner + 240) == Some(&v4opt::MESSAGE_TYPE) {
                if let Some(b) = frame.get_mut(inner + 242) {
                    *b = t;
                }
            }
            return;
        }
        at += 4 + len;
    }
}

/// The answer to STARTTLS on a server without TLS (insecure mode, RFC 7653 §6.2.2, §9.1):
/// TLSConnectionRefused; the requestor then closes.
pub fn starttls_refused(view: &MessageView<'_>, id: &Identity) -> Vec<u8> {
    starttls_reply(view, id, true)
}

/// The answer to DHCPTLS (RFC 7724 §6.2, §8.1): a DHCPTLS with option 54, with
/// TLSConnectionRefused when `refused`, without dhcp-status-code when TLS goes ahead.
pub fn dhcptls_reply(view: &V4View<'_>, id: &Identity, refused: bool, now: u32) -> Vec<u8> {
    let form = form::form_of(view, id);
    let mut buf = if refused {
        let code = v6status::TLS_CONNECTION_REFUSED;
        let text = "TLS is not available";
        refusal(&Form::V4(form), Refused::Active, code, text, now)
    } else {
        let mut buf = Vec::with_capacity(300);
        let mut w = StreamWriter::with_limit(&mut buf, MAX_FRAME);
        let _ = w.write(&Reply::V4Done {
            p: &form.params(now),
            status: None,
            first: true,
        });
        buf
    };
    retype_v4(&mut buf, v4msg::TLS);
    buf
}

/// The answer to STARTTLS (RFC 7653 §6.2.2): a REPLY with TLSConnectionRefused when
/// `refused`, without a status code when TLS goes ahead.
pub fn starttls_reply(view: &MessageView<'_>, id: &Identity, refused: bool) -> Vec<u8> {
    // The answer is an RFC 8415 REPLY (7) with the STARTTLS xid, our Server-ID, the
    // requestor's Client-ID when it sent one (STARTTLS SHOULD carry no options), and
    // the status when refused.
    let mut msg = vec![v6msg::REPLY];
    msg.extend_from_slice(&view.xid.to_be_bytes()[1..]);
    let mut opts = vec![V6Option::ServerId(id.server_duid.clone())];
    if let Some(c) = view
        .options()
        .get(v6opt::CLIENTID)
        .filter(|c| c.data.len() >= 2)
    {
        opts.insert(0, V6Option::ClientId(c.data.to_vec()));
    }
    if refused {
        opts.push(V6Option::StatusCode {
            code: v6status::TLS_CONNECTION_REFUSED,
            message: "TLS is not available".into(),
        });
    }
    for o in &opts {
        let _ = o.encode(&mut msg);
    }
    let mut buf = Vec::with_capacity(msg.len() + 2);
    let _ = crate::proto::framing::encode_frame(&msg, &mut buf);
    buf
}

/// A reply that refuses the query in `msg`, sent on a connection that already runs an active
/// query, or an active query on a connection that runs another query (RFC 7653 §9.4, RFC 7724
/// §8.3: one request per connection with an active query): v6, REPLY NotAllowed on the query's
/// xid; v4, DHCPLEASEQUERYDONE (bulk) or DHCPLEASEQUERYSTATUS (active) NotAllowed. `None` when
/// the message is not a query that could be answered (the caller drops it).
pub fn busy_reply(family: Family, msg: &[u8], id: &Identity, now: u32) -> Option<Vec<u8>> {
    const TEXT: &str = "this connection already runs a query";
    let (form, refused) = match family {
        Family::V6 => {
            let view = MessageView::parse(msg).ok()?;
            if !matches!(view.msg_type, v6msg::LEASEQUERY | v6msg::ACTIVELEASEQUERY) {
                return None;
            }
            // The v6 layer only, also for DHCP4o6 (a plain REPLY: both kinds alike).
            (Form::V6(form::requestor_form(&view, id)?), Refused::Bulk)
        }
        Family::V4 => {
            let view = V4View::parse(msg).ok()?;
            let refused = match view.message_type()? {
                v4msg::BULKLEASEQUERY => Refused::Bulk,
                v4msg::ACTIVELEASEQUERY => Refused::Active,
                _ => return None,
            };
            (Form::V4(form::form_of(&view, id)), refused)
        }
    };
    Some(refusal(&form, refused, v6status::NOT_ALLOWED, TEXT, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codes::v4status;
    use crate::session::plan::{V4Form, V6Form};

    fn v4() -> V4Form {
        V4Form {
            xid: 0x0102_0304,
            server_id: std::net::Ipv4Addr::new(192, 0, 2, 1),
            prl: Default::default(),
        }
    }

    fn v6() -> V6Form {
        V6Form {
            xid: 0x00ab_cdef,
            requestor_duid: vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6],
            server_duid: vec![0, 4, 9, 9, 9, 9],
            oro: Default::default(),
            base_time: false,
        }
    }

    /// The v4 message type and status (code) of a framed DHCPv4 reply.
    fn v4_type_status(msg: &[u8]) -> (Option<u8>, u8) {
        let v = V4View::parse(msg).unwrap();
        (v.message_type(), v.option(v4opt::STATUS_CODE).unwrap()[0])
    }

    #[test]
    fn a_v4_refusal_is_done_for_bulk_and_status_for_active_with_the_v4_twin() {
        let f = Form::V4(v4());
        for (refused, t) in [
            (Refused::Bulk, v4msg::LEASEQUERYDONE),
            (Refused::Active, v4msg::LEASEQUERYSTATUS),
        ] {
            let b = refusal(&f, refused, v6status::MALFORMED_QUERY, "x", 1_700_000_000);
            assert_eq!(usize::from(u16::from_be_bytes([b[0], b[1]])), b.len() - 2);
            assert_eq!(
                v4_type_status(&b[2..]),
                (Some(t), v4status::MALFORMED_QUERY)
            );
            let v = V4View::parse(&b[2..]).unwrap();
            assert_eq!(v.xid, 0x0102_0304);
            assert!(
                v.has_option(v4opt::SERVER_ID),
                "option 54: the only message"
            );
        }
    }

    #[test]
    fn a_v6_refusal_is_a_reply_with_the_status_for_both_kinds() {
        let f = Form::V6(v6());
        let bulk = refusal(&f, Refused::Bulk, v6status::NOT_ALLOWED, "x", 1);
        assert_eq!(
            bulk,
            refusal(&f, Refused::Active, v6status::NOT_ALLOWED, "x", 1)
        );
        let v = MessageView::parse(&bulk[2..]).unwrap();
        assert_eq!((v.msg_type, v.xid), (v6msg::LEASEQUERY_REPLY, 0x00ab_cdef));
        let st = v.options().get(v6opt::STATUS_CODE).unwrap();
        assert_eq!(
            u16::from_be_bytes([st.data[0], st.data[1]]),
            v6status::NOT_ALLOWED
        );
    }

    #[test]
    fn a_dhcp4o6_refusal_carries_done_or_status_inside_option_87() {
        let f = Form::Dhcp4o6 {
            v6: v6(),
            v4: v4(),
            br: None,
            bind_prefix: None,
        };
        for (refused, t) in [
            (Refused::Bulk, v4msg::LEASEQUERYDONE),
            (Refused::Active, v4msg::LEASEQUERYSTATUS),
        ] {
            let b = refusal(&f, refused, v6status::UNKNOWN_QUERY_TYPE, "x", 1);
            let v = MessageView::parse(&b[2..]).unwrap();
            assert_eq!(v.msg_type, v6msg::LEASEQUERY_REPLY);
            let inner = v.options().get(v6opt::DHCPV4_MSG).unwrap();
            // UnknownQueryType has no v4 twin: MalformedQuery (codes::v4_status_for_v6_lossy).
            assert_eq!(
                v4_type_status(inner.data),
                (Some(t), v4status::MALFORMED_QUERY)
            );
        }
    }

    #[test]
    fn busy_reply_answers_queries_only() {
        let id = Identity {
            server_duid: vec![0, 4, 9, 9, 9, 9],
            server_id: std::net::Ipv4Addr::new(192, 0, 2, 1),
        };
        assert_eq!(busy_reply(Family::V6, b"garbage", &id, 1), None);
        assert_eq!(busy_reply(Family::V4, b"garbage", &id, 1), None);
    }
}
