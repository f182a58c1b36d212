//! What every reply of a query echoes or is bounded by, read from the query itself: the v6
//! and v4 reply forms ([`requestor_form`], [`form_of`]) and the time qualifiers of both layers
//! ([`time_opt`], [`time_window`]). Shared by bulk (`v4`, `v6`) and active (`active`) queries.

use super::plan::{V4Form, V6Form};
use super::Identity;
use crate::proto::codes::{v4opt, v6opt};
use crate::proto::encoder::{OroSet, PrlSet};
use crate::proto::time;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{MessageView, OptionsView};

/// The v6 reply parameters of a query, when it carries the requestor's Client-ID and either
/// no Server-ID or ours (RFC 5007 §4.2.1: otherwise the query is discarded).
pub(super) fn requestor_form(view: &MessageView<'_>, id: &Identity) -> Option<V6Form> {
    let opts = view.options();
    let client = opts.get(v6opt::CLIENTID)?;
    if let Some(sid) = opts.get(v6opt::SERVERID) {
        if sid.data != id.server_duid.as_slice() {
            return None;
        }
    }
    Some(V6Form {
        xid: view.xid,
        requestor_duid: client.data.to_vec(),
        server_duid: id.server_duid.clone(),
        oro: OroSet::default(),
        base_time: false,
    })
}

/// An absent option, a valid 4-octet time (converted to Unix seconds), or malformed.
pub(super) fn time_opt(opts: &OptionsView<'_>, code: u16) -> Result<Option<u32>, ()> {
    match opts.get(code) {
        None => Ok(None),
        Some(o) => {
            let b: [u8; 4] = o.data.try_into().map_err(|_| ())?;
            Ok(Some(
                u32::try_from(time::v6_to_unix(u32::from_be_bytes(b))).unwrap_or(u32::MAX),
            ))
        }
    }
}

/// The v4 reply parameters of a query: its xid, our server id, its PRL.
pub(super) fn form_of(view: &V4View<'_>, id: &Identity) -> V4Form {
    let prl = view
        .option(v4opt::PARAMETER_REQUEST_LIST)
        .map(|p| PrlSet::from_prl(&p))
        .unwrap_or_default();
    V4Form {
        xid: view.xid,
        server_id: id.server_id,
        prl,
    }
}

/// query-start-time (154) and query-end-time (155) as Unix seconds; MalformedQuery when a
/// length is wrong or start is after end (scenario 34).
pub(super) fn time_window(view: &V4View<'_>) -> Result<(Option<u32>, Option<u32>), &'static str> {
    let get = |code| -> Result<Option<u32>, &'static str> {
        match view.option(code) {
            None => Ok(None),
            Some(b) => <[u8; 4]>::try_from(&b[..])
                .map(|b| Some(u32::from_be_bytes(b)))
                .map_err(|_| "bad query time option"),
        }
    };
    let (s, e) = (get(v4opt::QUERY_START_TIME)?, get(v4opt::QUERY_END_TIME)?);
    if let (Some(s), Some(e)) = (s, e) {
        if s > e {
            return Err("query-start-time after query-end-time");
        }
    }
    Ok((s, e))
}
