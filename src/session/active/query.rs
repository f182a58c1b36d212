//! Checking an active query and turning it into an [`ActivePlan`] or a refusal:
//! ACTIVELEASEQUERY (RFC 7653 §6.2.1, §9.3), its DHCP4o6 form (the draft §5.2) and
//! DHCPACTIVELEASEQUERY (RFC 7724 §7.3, §8.2).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::filter::{ActiveFilter, V6Filter};
use super::stream::ActivePlan;
use crate::proto::codes::{query_type, v4msg, v4opt, v6opt, v6status};
use crate::proto::encoder::OroSet;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::MessageView;
use crate::session::plan::{Form, V4Form, V6Form};
use crate::session::refuse::{self, Refused};
use crate::session::{form, Action, Identity, Policy};

fn close_with(bytes: Vec<u8>) -> Action {
    Action::Reply { bytes, close: true }
}

/// ACTIVELEASEQUERY (RFC 7653 §6.2.1, §9.3; DHCP4o6 with OPTION_DHCPV4_MSG, the draft §5.2).
pub(in crate::session) fn v6_active(
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
pub(in crate::session) fn v4_active(
    view: &V4View<'_>,
    id: &Identity,
    policy: &Policy,
    now: u32,
) -> Action {
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
