//! A shard's active leasequery state ([`Hub`]: history ring, subscription registry, pending
//! changes), the publication of a shard's changes and their fan-out to the shards with
//! subscribers (see the module docs of `shard::active`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel::LocalSender;
use hashbrown::HashMap;

use super::sub::Sub;
use crate::lease::{Change, History, HistoryLimits};
use crate::session::fanout::fan_out;
use crate::shard::mail::{ActiveMail, Mail, QueryKey};
use crate::shard::{unix_now, ShardCtx};

/// A shard's active leasequery state.
pub(crate) struct Hub {
    pub(super) history: RefCell<History>,
    pub(super) subs: RefCell<HashMap<QueryKey, Rc<Sub>>>,
    /// Catch-ups this shard runs (for subscriptions of any shard): where credits go.
    pub(super) catch_ups: RefCell<HashMap<QueryKey, LocalSender<bool>>>,
    pub(super) pending: RefCell<Vec<Change>>,
    /// When the oldest change in `pending` was published.
    pub(super) pending_since: Cell<Option<std::time::Instant>>,
    pub(super) lost: Cell<bool>,
    pub(super) flushing: Cell<bool>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subs", &self.subs.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub whose history starts at `started` (Unix seconds).
    pub(crate) fn new(limits: HistoryLimits, started: u32) -> Hub {
        Hub {
            history: RefCell::new(History::new(limits, started)),
            subs: RefCell::new(HashMap::new()),
            catch_ups: RefCell::new(HashMap::new()),
            pending: RefCell::new(Vec::new()),
            pending_since: Cell::new(None),
            lost: Cell::new(false),
            flushing: Cell::new(false),
        }
    }
}

impl Hub {
    /// The largest backlog over this shard's subscriptions: (distinct bindings, octets).
    pub(crate) fn backlog_max(&self) -> (usize, usize) {
        self.subs.borrow().values().fold((0, 0), |(n, b), sub| {
            let q = sub.backlog.borrow();
            (n.max(q.bindings()), b.max(q.bytes()))
        })
    }
}

/// The history limits of a config.
pub(crate) fn history_limits(c: &crate::config::Config) -> HistoryLimits {
    HistoryLimits {
        max_entries: c.history_entries,
        max_age: u32::try_from(c.history_age).unwrap_or(u32::MAX),
    }
}

impl ShardCtx {
    /// Publishes changes made to this shard's table (see the module docs): history, then
    /// fan-out, batched per executor turn.
    pub fn publish(self: &Rc<Self>, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let hub = &self.hub;
        {
            let mut h = hub.history.borrow_mut();
            for c in changes {
                h.push(c.clone());
            }
            h.trim(unix_now());
            self.shared.horizons[self.id].store(h.horizon(), Ordering::Release);
        }
        self.stats()
            .changes_published
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        let anyone = self
            .shared
            .subscribers
            .iter()
            .any(|n| n.load(Ordering::Acquire) > 0);
        if !anyone {
            return;
        }
        {
            let mut p = hub.pending.borrow_mut();
            if p.len() + changes.len() > self.shared.config.active_fanout_pending {
                p.clear();
                hub.lost.set(true);
            } else {
                p.extend_from_slice(changes);
                if hub.pending_since.get().is_none() {
                    hub.pending_since.set(Some(std::time::Instant::now()));
                }
            }
        }
        if !hub.flushing.replace(true) {
            let ctx = self.clone();
            glommio::spawn_local(async move { ctx.flush().await }).detach();
        }
    }

    /// Sends the pending changes, one batch per shard with subscribers, until none are left.
    async fn flush(self: Rc<Self>) {
        loop {
            let batch = std::mem::take(&mut *self.hub.pending.borrow_mut());
            let published = self
                .hub
                .pending_since
                .take()
                .unwrap_or_else(std::time::Instant::now);
            let lost = self.hub.lost.replace(false);
            if batch.is_empty() && !lost {
                break;
            }
            let batch: Arc<[Change]> = batch.into();
            for d in 0..self.shared.shards {
                if self.shared.subscribers[d].load(Ordering::Acquire) == 0 {
                    continue;
                }
                if lost {
                    self.post(d, Mail::Active(ActiveMail::Lost)).await;
                }
                if !batch.is_empty() {
                    let changes = batch.clone();
                    self.post(d, Mail::Active(ActiveMail::Changes { changes, published }))
                        .await;
                }
            }
        }
        self.hub.flushing.set(false);
    }

    /// Sends `mail` from a new task (for callers that cannot await).
    pub(super) fn post_later(self: &Rc<Self>, to: usize, mail: Mail) {
        let ctx = self.clone();
        glommio::spawn_local(async move { ctx.post(to, mail).await }).detach();
    }

    /// Live changes: encode once per wire key, queue for every matching subscriber; each
    /// change's binding key is built once for all of them ([`fan_out`]).
    /// `published`: when the oldest of them was published (the update-latency histogram).
    pub(super) fn dispatch(&self, changes: &[Change], published: std::time::Instant) {
        let subs: Vec<Rc<Sub>> = self.hub.subs.borrow().values().cloned().collect();
        if subs.is_empty() {
            return;
        }
        let too_long = fan_out(&subs, changes, unix_now(), |s, key, c, e| {
            if s.catching_up.get() > 0 && !s.first_copy(self, key, c) {
                return;
            }
            s.queue(self, Some(key.clone()), e.clone(), Some(published));
        });
        if too_long > 0 {
            self.stats()
                .records_too_long
                .fetch_add(too_long, Ordering::Relaxed);
        }
    }
}
