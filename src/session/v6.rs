//! DHCPv6 (TCP 547) messages: LEASEQUERY (plain RFC 5460 and DHCP4o6), ACTIVELEASEQUERY,
//! STARTTLS; everything else closes the connection.

use std::net::Ipv6Addr;

use super::plan::{Form, ScanPlan, ScanTarget, V4Form, V6Form};
use super::refuse::{self, Refused};
use super::LinkSet;
use super::{form, Action, Identity, Policy};
use crate::lease::{V4Query, V4Select, V6Query, V6Select};
use crate::proto::codes::{query_type, v4relay, v6msg, v6opt, v6status};
use crate::proto::dhcp4o6::{self, Dhcp4o6Select, LqQuery as PairQuery, V4Side, V6Side};
use crate::proto::encoder::OroSet;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{LqQueryView, MessageView};

pub(super) fn on_message(
    msg: &[u8],
    id: &Identity,
    policy: &Policy,
    links: &LinkSet,
    now: u32,
) -> Action {
    let Ok(view) = MessageView::parse(msg) else {
        // Scenario 5: garbage closes the connection.
        return Action::Close;
    };
    match view.msg_type {
        v6msg::LEASEQUERY => leasequery(&view, id, links, now),
        v6msg::ACTIVELEASEQUERY => super::active::v6_active(&view, id, policy, now),
        v6msg::STARTTLS => {
            // RFC 7653 §6.2.2, §9.1: without TLS (insecure mode), STARTTLS gets a REPLY with
            // TLSConnectionRefused; the requestor then closes.
            let buf = refuse::starttls_refused(&view, id);
            Action::Reply {
                bytes: buf,
                close: false,
            }
        }
        // Scenario 6: any other type (SOLICIT, DATA from a requestor...) closes.
        _ => Action::Close,
    }
}

/// A LEASEQUERY received over UDP (on the DHCP4o6 authority's port). This server answers
/// leasequery over TCP only; the bulk-only query types 3, 4 and 5 get a LEASEQUERY-REPLY with
/// NotAllowed as RFC 5460 §4 requires (scenario 26), anything else (including a query without
/// Client-ID or with another server's Server-ID) is dropped (`None`). The reply is the UDP
/// payload, without a TCP length prefix.
pub fn udp_leasequery(msg: &[u8], id: &Identity, now: u32) -> Option<Vec<u8>> {
    let view = MessageView::parse(msg).ok()?;
    if view.msg_type != v6msg::LEASEQUERY {
        return None;
    }
    let form = form::requestor_form(&view, id)?;
    let q = view.options().get(v6opt::LQ_QUERY)?.lq_query().ok()?;
    if !(3..=5).contains(&q.query_type) {
        return None;
    }
    match error_reply(
        &form,
        v6status::NOT_ALLOWED,
        "bulk leasequery is TCP only",
        false,
        now,
    ) {
        Action::Reply { bytes, .. } => bytes.get(2..).map(<[u8]>::to_vec),
        _ => None,
    }
}

/// A lone LEASEQUERY-REPLY with an error status (RFC 5460 §7.2).
fn error_reply(form: &V6Form, code: u16, text: &str, close: bool, now: u32) -> Action {
    let form = Form::V6(form.clone());
    let bytes = refuse::refusal(&form, Refused::Bulk, code, text, now);
    Action::Reply { bytes, close }
}

/// The same for DHCP4o6: the REPLY carries a DHCPLEASEQUERYDONE with the matching v4 status.
fn error_reply_4o6(v6: &V6Form, v4: &V4Form, code: u16, text: &str, now: u32) -> Action {
    let form = Form::Dhcp4o6 {
        v6: v6.clone(),
        v4: *v4,
        br: None,
        bind_prefix: None,
    };
    Action::Reply {
        bytes: refuse::refusal(&form, Refused::Bulk, code, text, now),
        close: false,
    }
}

fn leasequery(view: &MessageView<'_>, id: &Identity, links: &LinkSet, now: u32) -> Action {
    let Some(mut form) = form::requestor_form(view, id) else {
        return Action::Drop;
    };
    let opts = view.options();
    let Some(lq) = opts.get(v6opt::LQ_QUERY) else {
        // RFC 5007 §4.2.1: no OPTION_LQ_QUERY -> discard.
        return Action::Drop;
    };
    let v4msg_opt = opts.get(v6opt::DHCPV4_MSG);
    let Ok(q) = lq.lq_query() else {
        // Scenario 21: OPTION_LQ_QUERY shorter than 17 octets or with broken query-options.
        return match v4msg_opt.and_then(|o| V4View::parse(o.data).ok()) {
            Some(v4) => error_reply_4o6(
                &form,
                &v4_form(&v4, id),
                v6status::MALFORMED_QUERY,
                "malformed OPTION_LQ_QUERY",
                now,
            ),
            None => error_reply(
                &form,
                v6status::MALFORMED_QUERY,
                "malformed OPTION_LQ_QUERY",
                false,
                now,
            ),
        };
    };
    // ORO inside the query-options selects per-binding options; OPTION_LQ_BASE_TIME may be asked
    // in either ORO (leasequery-rules.md §2.4).
    let q_oro = q.options.get(v6opt::ORO);
    form.oro = q_oro
        .map(|o| OroSet::from_oro_payload(o.data))
        .unwrap_or_default();
    form.base_time = form.oro.contains(v6opt::LQ_BASE_TIME)
        || opts
            .get(v6opt::ORO)
            .is_some_and(|o| OroSet::from_oro_payload(o.data).contains(v6opt::LQ_BASE_TIME));

    // OPTION_LQ_START_TIME / OPTION_LQ_END_TIME (RFC 7653 §5): absolute, epoch 2000.
    let (start, end) = match (
        form::time_opt(&opts, v6opt::LQ_START_TIME),
        form::time_opt(&opts, v6opt::LQ_END_TIME),
    ) {
        (Err(()), _) | (_, Err(())) => {
            return error_reply(
                &form,
                v6status::MALFORMED_QUERY,
                "bad time option",
                false,
                now,
            )
        }
        (Ok(s), Ok(e)) => (s, e),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return error_reply(
                &form,
                v6status::MALFORMED_QUERY,
                "start time after end time",
                false,
                now,
            );
        }
    }

    if let Some(v4opt) = v4msg_opt {
        return leasequery_4o6(form, &q, v4opt.data, id, links, (start, end), now);
    }

    let select = match q.query_type {
        query_type::BY_ADDRESS => match q.options.get(v6opt::IAADDR).and_then(|o| o.data.get(..16))
        {
            Some(a) => {
                V6Select::Address(Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16 octets")))
            }
            None => {
                return error_reply(
                    &form,
                    v6status::MALFORMED_QUERY,
                    "QUERY_BY_ADDRESS without OPTION_IAADDR",
                    false,
                    now,
                )
            }
        },
        query_type::BY_CLIENTID => match q.options.get(v6opt::CLIENTID) {
            Some(c) if !c.data.is_empty() => V6Select::ClientId(c.data.to_vec()),
            _ => {
                return error_reply(
                    &form,
                    v6status::MALFORMED_QUERY,
                    "QUERY_BY_CLIENTID without OPTION_CLIENTID",
                    false,
                    now,
                )
            }
        },
        query_type::BY_RELAY_ID => match q.options.get(v6opt::RELAY_ID) {
            Some(r) if !r.data.is_empty() => V6Select::RelayId(r.data.to_vec()),
            _ => {
                return error_reply(
                    &form,
                    v6status::MALFORMED_QUERY,
                    "QUERY_BY_RELAY_ID without OPTION_RELAY_ID",
                    false,
                    now,
                )
            }
        },
        query_type::BY_LINK_ADDRESS => {
            if q.link_address.is_unspecified() {
                return error_reply(
                    &form,
                    v6status::MALFORMED_QUERY,
                    "QUERY_BY_LINK_ADDRESS with link-address ::",
                    false,
                    now,
                );
            }
            V6Select::Link(q.link_address)
        }
        query_type::BY_REMOTE_ID => match q.options.get(v6opt::REMOTE_ID) {
            // RFC 4649: enterprise-number (4) + a non-empty remote-id.
            Some(r) if r.data.len() > 4 => V6Select::RemoteId(r.data.to_vec()),
            _ => {
                return error_reply(
                    &form,
                    v6status::MALFORMED_QUERY,
                    "QUERY_BY_REMOTE_ID without a Remote-ID",
                    false,
                    now,
                )
            }
        },
        _ => {
            return error_reply(
                &form,
                v6status::UNKNOWN_QUERY_TYPE,
                "unknown query type",
                false,
                now,
            )
        }
    };
    // A non-zero link-address restricts the query to that link (RFC 5460 §5.3); one we do not
    // know is NotConfigured.
    let link_filter = (!q.link_address.is_unspecified()).then_some(q.link_address);
    if let Some(l) = link_filter {
        if !links.contains(l) {
            return error_reply(
                &form,
                v6status::NOT_CONFIGURED,
                "link-address not configured",
                false,
                now,
            );
        }
    }
    let query = V6Query {
        select,
        link_filter: link_filter.filter(|_| q.query_type != query_type::BY_LINK_ADDRESS),
        changed_since: start,
        changed_until: end,
    };
    Action::Scan(Box::new(ScanPlan {
        xid: form.xid,
        target: ScanTarget::V6(query),
        form: Form::V6(form),
    }))
}

fn v4_form(v4: &V4View<'_>, id: &Identity) -> V4Form {
    form::form_of(v4, id)
}

/// A DHCP4o6 bulk query (the draft; docs/DESIGN.md §4): the v4 DHCPBULKLEASEQUERY inside option 87
/// must agree with the v6 query type.
fn leasequery_4o6(
    v6: V6Form,
    q: &LqQueryView<'_>,
    v4bytes: &[u8],
    id: &Identity,
    links: &LinkSet,
    (start, end): (Option<u32>, Option<u32>),
    now: u32,
) -> Action {
    let v4view = match V4View::parse(v4bytes) {
        Ok(v) => v,
        // Scenario 51: not a DHCPv4 message. There is no v4 xid to echo: answer with a
        // DHCPLEASEQUERYDONE of xid 0.
        Err(_) => {
            let v4 = V4Form {
                xid: 0,
                server_id: id.server_id,
                prl: Default::default(),
            };
            return error_reply_4o6(
                &v6,
                &v4,
                v6status::MALFORMED_QUERY,
                "OPTION_DHCPV4_MSG is not a DHCPv4 message",
                now,
            );
        }
    };
    let v4 = v4_form(&v4view, id);
    let pair = dhcp4o6::select(
        &v6_side(view_type_leasequery(), q),
        &v4_side(v4bytes.len(), &v4view),
    );
    let select = match pair {
        Ok(s) => s,
        Err(e) => return error_reply_4o6(&v6, &v4, v6status::MALFORMED_QUERY, e.reason, now),
    };
    // The v4 qualifiers apply too; the tighter of each bound wins.
    let (v4start, v4end) = match form::time_window(&v4view) {
        Ok(w) => w,
        Err(text) => return error_reply_4o6(&v6, &v4, v6status::MALFORMED_QUERY, text, now),
    };
    let changed_since = start.max(v4start);
    let changed_until = match (end, v4end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Dhcp4o6Select::Link(l) = select {
        if !links.contains(l) {
            return error_reply_4o6(
                &v6,
                &v4,
                v6status::NOT_CONFIGURED,
                "link-address not configured",
                now,
            );
        }
    }
    // The pairs with a v4 primary query (client-id, relay-id, remote-id) return current
    // bindings only, as that v4 query does (RFC 6926 §8.2); link and address pair with the v4
    // query for all configured addresses and list every state.
    let (select, only_active) = match select {
        Dhcp4o6Select::ClientId(c) => (V4Select::ClientId(c.to_vec()), true),
        Dhcp4o6Select::RelayId(r) => (V4Select::RelayId(r.to_vec()), true),
        Dhcp4o6Select::RemoteId(r) => (V4Select::RemoteId(r.to_vec()), true),
        Dhcp4o6Select::Link(l) => (V4Select::Link(l), false),
        Dhcp4o6Select::SoftwireSrc(a) => (V4Select::SoftwireSrc(a), false),
        Dhcp4o6Select::All => (V4Select::All, false),
    };
    let query = V4Query {
        select,
        changed_since,
        changed_until,
        only_4o6: true,
        only_active,
    };
    Action::Scan(Box::new(ScanPlan {
        xid: v6.xid,
        target: ScanTarget::V4(query),
        form: Form::Dhcp4o6 {
            v6,
            v4,
            br: None,
            bind_prefix: None,
        },
    }))
}

fn view_type_leasequery() -> u8 {
    v6msg::LEASEQUERY
}

/// The v6 layer as the DHCP4o6 pairing rules see it.
fn v6_side<'a>(msg_type: u8, q: &LqQueryView<'a>) -> V6Side<'a> {
    let o = &q.options;
    V6Side {
        msg_type,
        query: Some(PairQuery {
            query_type: q.query_type,
            link_address: q.link_address,
            client_id: o.get(v6opt::CLIENTID).map(|r| r.data),
            relay_id: o.get(v6opt::RELAY_ID).map(|r| r.data),
            remote_id: o.get(v6opt::REMOTE_ID).map(|r| r.data),
            iaaddr: o
                .get(v6opt::IAADDR)
                .and_then(|r| r.data.get(..16))
                .map(|a| Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16 octets"))),
            has_oro: o.get(v6opt::ORO).is_some(),
        }),
    }
}

/// The v4 layer as the pairing rules see it.
fn v4_side<'a>(len: usize, v: &V4View<'a>) -> V4Side<'a> {
    let rai = v
        .options()
        .find(|(c, _)| *c == crate::proto::codes::v4opt::RELAY_AGENT_INFO)
        .map(|(_, d)| d);
    let sub = |code: u8| {
        rai.and_then(|d| {
            crate::proto::v4::RelayAgentInfo::find(d, code)
                .ok()
                .flatten()
        })
    };
    V4Side {
        len,
        op: v.op,
        msg_type: v.message_type(),
        ciaddr: v.ciaddr,
        yiaddr: v.yiaddr,
        siaddr: v.siaddr,
        hlen: v.hlen,
        client_id: v
            .options()
            .find(|(c, _)| *c == crate::proto::codes::v4opt::CLIENT_ID)
            .map(|(_, d)| d),
        remote_id: sub(v4relay::REMOTE_ID),
        relay_id: sub(v4relay::RELAY_ID),
    }
}
