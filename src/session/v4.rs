//! DHCPv4 (TCP 67) messages: DHCPBULKLEASEQUERY (RFC 6926), DHCPACTIVELEASEQUERY and DHCPTLS
//! (RFC 7724); every other message type closes the connection (RFC 7724 §8.1.1).

use std::net::Ipv4Addr;

use super::plan::{Form, ScanPlan, ScanTarget, V4Form};
use super::refuse::{self, Refused};
use super::{form, Action, Identity, Policy};
use crate::lease::{V4Query, V4Select};
use crate::proto::codes::{v4msg, v4opt, v4relay, v6status};
use crate::proto::v4::{MessageView, RelayAgentInfo};

pub(super) fn on_message(msg: &[u8], id: &Identity, policy: &Policy, now: u32) -> Action {
    let Ok(view) = MessageView::parse(msg) else {
        return Action::Close;
    };
    match view.message_type() {
        Some(v4msg::BULKLEASEQUERY) => bulk(&view, id, now),
        Some(v4msg::ACTIVELEASEQUERY) => super::active::v4_active(&view, id, policy, now),
        Some(v4msg::TLS) => {
            // RFC 7724 §8.1: without TLS, DHCPTLS is answered with TLSConnectionRefused (the
            // connection accepts it with TLS on: `Connection::handle_message`).
            Action::Reply {
                bytes: refuse::dhcptls_reply(&view, id, true, now),
                close: false,
            }
        }
        // Scenario 37: anything else closes the connection (so does DHCPACTIVELEASEQUERY while
        // active leasequery is off: RFC 7724 §9, a bulk-only server closes).
        _ => Action::Close,
    }
}

/// DHCPLEASEQUERYDONE with an error status (`code`: the DHCPv6 twin of the v4 status), option
/// 54 included: it is the only message.
fn done_error(form: &V4Form, code: u16, text: &str, now: u32) -> Action {
    Action::Reply {
        bytes: refuse::refusal(&Form::V4(*form), Refused::Bulk, code, text, now),
        close: false,
    }
}

fn bulk(view: &MessageView<'_>, id: &Identity, now: u32) -> Action {
    let form = form::form_of(view, id);
    // RFC 6926 §8.2: a non-zero ciaddr, yiaddr or siaddr is MalformedQuery (scenario 30).
    if [view.ciaddr, view.yiaddr, view.siaddr]
        .iter()
        .any(|a| *a != Ipv4Addr::UNSPECIFIED)
    {
        return done_error(
            &form,
            v6status::MALFORMED_QUERY,
            "ciaddr, yiaddr and siaddr must be zero",
            now,
        );
    }
    // RFC 6926 §8.2: VPN queries are not supported (scenario 36).
    if view.has_option(v4opt::VSS) {
        return done_error(
            &form,
            v6status::NOT_ALLOWED,
            "VPN queries are not supported",
            now,
        );
    }
    let (start, end) = match form::time_window(view) {
        Ok(w) => w,
        Err(text) => return done_error(&form, v6status::MALFORMED_QUERY, text, now),
    };
    let mut primaries = Vec::with_capacity(2);
    if view.hlen > 0 {
        primaries.push(V4Select::Chaddr {
            htype: view.htype,
            chaddr: view.chaddr.to_vec(),
        });
    }
    if let Some(c) = view.option(v4opt::CLIENT_ID) {
        primaries.push(V4Select::ClientId(c.to_vec()));
    }
    if let Some(rai) = view.option(v4opt::RELAY_AGENT_INFO) {
        let sub = |code| RelayAgentInfo::find(&rai, code);
        match (sub(v4relay::REMOTE_ID), sub(v4relay::RELAY_ID)) {
            (Ok(remote), Ok(relay)) => {
                if let Some(r) = remote {
                    primaries.push(V4Select::RemoteId(r.to_vec()));
                }
                if let Some(r) = relay {
                    primaries.push(V4Select::RelayId(r.to_vec()));
                }
            }
            _ => return done_error(&form, v6status::MALFORMED_QUERY, "malformed option 82", now),
        }
    }
    // RFC 6926 §8.2: more than one primary query is NotAllowed (scenarios 31, 32).
    let select = match primaries.len() {
        0 => V4Select::All,
        1 => primaries.pop().expect("one"),
        _ => {
            return done_error(
                &form,
                v6status::NOT_ALLOWED,
                "more than one primary query",
                now,
            )
        }
    };
    // RFC 6926 §8.2: a primary query returns the addresses with a current binding to the
    // client it names; only the query for all configured addresses lists the others too.
    let only_active = select != V4Select::All;
    let query = V4Query {
        select,
        changed_since: start,
        changed_until: end,
        only_4o6: false,
        only_active,
    };
    Action::Scan(Box::new(ScanPlan {
        xid: form.xid,
        target: ScanTarget::V4(query),
        form: Form::V4(form),
    }))
}
