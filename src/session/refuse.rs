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

use super::plan::Form;
use super::{form, Family, Identity};
use crate::proto::codes::{v4msg, v4opt, v6msg, v6opt, v6status};
use crate::proto::encoder::{Dhcp4o6ReplyParams, Reply, StreamWriter, V6Status};
use crate::proto::framing::MAX_FRAME;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::MessageView;

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
