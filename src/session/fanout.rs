//! The fan-out of live active-leasequery changes to one shard's subscriptions (sans-io,
//! docs/DESIGN.md section 3, rule 5): which subscription gets which change, encoded how often.
//!
//! Subscriptions whose update messages are identical except for the transaction ids share a
//! wire form (for the server, [`crate::session::active::WireKey`]). For each change, in order,
//! [`fan_out`] encodes it at most once per wire form, and only when a subscription of that form
//! wants it; it builds the change's [`BindingKey`] at most once for all of them; and it hands
//! each subscription that wants the change the shared encoding. What a subscription does with it
//! (its backlog, the duplicate check of a catch-up) is the caller's `deliver`.
//!
//! Whether a subscription wants a change is asked at the moment it is reached, so one that
//! ends while a batch is fanned out (its backlog overflowed in `deliver`) gets nothing after.

use std::hash::Hash;
use std::rc::Rc;

use hashbrown::HashMap;

use crate::lease::{BindingKey, Change};

/// A subscription as the fan-out sees it.
pub trait Member {
    /// What makes two members' messages identical except for the transaction ids.
    type Wire: Hash + Eq;
    /// One encoded message.
    type Msg;
    /// This member's wire form.
    fn wire(&self) -> &Self::Wire;
    /// True when this member takes `change` now (it still runs and its filter matches).
    fn wants(&self, change: &Change) -> bool;
    /// `change` in this member's wire form; `None` when it does not fit in one message.
    fn encode(&self, change: &Change, now: u32) -> Option<Self::Msg>;
}

/// Fans `changes` out to `members` (see the module docs): `deliver(member, key, change, msg)` for
/// every member that wants a change, in the order of the changes. Returns how many deliveries
/// were missed because the encoding did not fit in one message (one per member that wanted it).
pub fn fan_out<'a, M: Member>(
    members: &'a [M],
    changes: &[Change],
    now: u32,
    mut deliver: impl FnMut(&'a M, &Rc<BindingKey>, &Change, &Rc<M::Msg>),
) -> u64 {
    if members.is_empty() {
        return 0;
    }
    let mut groups: HashMap<&M::Wire, Vec<&'a M>> = HashMap::new();
    for m in members {
        groups.entry(m.wire()).or_default().push(m);
    }
    let mut too_long = 0u64;
    for c in changes {
        let mut key: Option<Rc<BindingKey>> = None;
        for group in groups.values() {
            let mut enc: Option<Option<Rc<M::Msg>>> = None;
            for &m in group {
                if !m.wants(c) {
                    continue;
                }
                let e = enc.get_or_insert_with(|| m.encode(c, now).map(Rc::new));
                match e {
                    Some(e) => {
                        let k = key.get_or_insert_with(|| Rc::new(BindingKey::of(c)));
                        deliver(m, k, c, e);
                    }
                    None => too_long += 1,
                }
            }
        }
    }
    too_long
}

#[cfg(test)]
mod tests;
