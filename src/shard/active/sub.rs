//! One subscription on its connection's shard: its backlog, how it ends, and the duplicate
//! check of its catch-up. The fan-out ([`crate::session::fanout`]) sees it as a [`Member`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel::LocalSender;
use hashbrown::HashMap;
use tracing::debug;

use crate::lease::{BindingKey, Change};
use crate::session::active::{ActivePlan, Backlog, EncodedUpdate, WireKey};
use crate::session::fanout::Member;
use crate::shard::mail::{ActiveMail, Mail, QueryKey};
use crate::shard::ShardCtx;

/// Most bindings a catching-up subscription remembers (see `Sub::seen`); past it a state may
/// reach the subscriber twice (harmless: the same state again).
const SEEN_DURING_CATCH_UP: usize = 65_536;

/// Why a subscription ended (counted per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubEnd {
    Shutdown,
    PeerGone,
    SendTimeout,
    Backlog,
    Fanout,
}

/// One message waiting for a subscriber, with when its change was published (live updates;
/// `None` for catch-up and control messages), for the update-latency histogram.
pub(super) struct Queued {
    pub(super) e: Rc<EncodedUpdate>,
    pub(super) published: Option<std::time::Instant>,
}

/// One subscription, on its connection's shard.
pub(super) struct Sub {
    pub(super) plan: Arc<ActivePlan>,
    pub(super) wire: WireKey,
    pub(super) backlog: RefCell<Backlog<Queued>>,
    pub(super) wake: LocalSender<()>,
    pub(super) end: Cell<Option<SubEnd>>,
    /// Shards whose catch-up has not ended.
    pub(super) catching_up: Cell<usize>,
    pub(super) catch_up_lost: Cell<bool>,
    /// While catching up: the last change queued per binding, live or catch-up (at most
    /// [`SEEN_DURING_CATCH_UP`] bindings). A change published on a shard just before its
    /// catch-up window was fixed can reach this subscription both as a live update (its
    /// fan-out mail still on the way when the subscription was registered) and in that shard's
    /// catch-up, in either order; the second copy of the same change is skipped, so the
    /// subscriber gets that state once.
    pub(super) seen: RefCell<HashMap<Rc<BindingKey>, Change>>,
    /// Shards waiting for a catch-up credit.
    pub(super) owed: RefCell<Vec<u32>>,
}

impl Sub {
    pub(super) fn notify(&self) {
        let _ = self.wake.try_send(());
    }

    pub(super) fn terminate(&self, why: SubEnd) {
        if self.end.get().is_none() {
            self.end.set(Some(why));
        }
        self.notify();
    }

    /// Queues one message; over the backlog bound the subscription is terminated. The driver is
    /// woken only when the backlog was empty: otherwise it has been woken already, or it is
    /// writing and looks at the backlog again when the write completes.
    pub(super) fn queue(
        &self,
        ctx: &ShardCtx,
        key: Option<Rc<BindingKey>>,
        e: Rc<EncodedUpdate>,
        published: Option<std::time::Instant>,
    ) {
        if self.end.get().is_some() {
            return;
        }
        let len = e.bytes.len();
        let pushed = self
            .backlog
            .borrow_mut()
            .push(key, Queued { e, published }, len);
        match pushed {
            Ok(p) => {
                if p.coalesced > 0 {
                    ctx.stats()
                        .active_coalesced
                        .fetch_add(p.coalesced as u64, Ordering::Relaxed);
                }
                if p.was_empty {
                    self.notify();
                }
            }
            Err(o) => {
                debug!("active subscriber terminated: {o}");
                self.terminate(SubEnd::Backlog);
            }
        }
    }

    /// While catching up: false when this very change was queued already (live or by the
    /// catch-up, see `seen`), counted as coalesced; otherwise it is remembered.
    pub(super) fn first_copy(&self, ctx: &ShardCtx, key: &Rc<BindingKey>, c: &Change) -> bool {
        let mut seen = self.seen.borrow_mut();
        if seen.get(key) == Some(c) {
            ctx.stats().active_coalesced.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if seen.len() < SEEN_DURING_CATCH_UP || seen.contains_key(key) {
            seen.insert(key.clone(), c.clone());
        }
        true
    }

    pub(super) fn control(&self, ctx: &ShardCtx, bytes: Vec<u8>) {
        let e = Rc::new(EncodedUpdate {
            bytes,
            at: crate::proto::encoder::EncodedAt {
                start: 0,
                len: 0,
                v6_xid_at: None,
                v4_xid_at: None,
            },
        });
        self.queue(ctx, None, e, None);
    }
}

impl Member for Rc<Sub> {
    type Wire = WireKey;
    type Msg = EncodedUpdate;
    fn wire(&self) -> &WireKey {
        &self.wire
    }
    fn wants(&self, change: &Change) -> bool {
        self.end.get().is_none() && self.plan.filter.matches(change)
    }
    fn encode(&self, change: &Change, now: u32) -> Option<EncodedUpdate> {
        self.plan.encode_change(change, now)
    }
}

/// Gives back the catch-up credits a subscription owes while its backlog is below half its
/// octet bound.
pub(super) fn grant_owed(ctx: &Rc<ShardCtx>, key: QueryKey, sub: &Sub) {
    let half = ctx.shared.config.active_backlog_bytes / 2;
    if sub.backlog.borrow().bytes() > half {
        return;
    }
    for from in sub.owed.borrow_mut().drain(..) {
        ctx.post_later(
            from as usize,
            Mail::Active(ActiveMail::CatchUpCredit { key }),
        );
    }
}
