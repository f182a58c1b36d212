//! Catch-up (RFC 7653 §8.4.1, RFC 7724 §7.4.1): a shard replays its history from a
//! subscription's start time in credited batches; the subscription's shard queues them,
//! skipping what reached it live already, and ends the catch-up (complete, or DataMissing).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel::{self, LocalReceiver};
use hashbrown::HashMap;

use super::sub::grant_owed;
use crate::lease::{BindingKey, CatchUpStep, Change};
use crate::session::active::ActiveFilter;
use crate::shard::mail::{ActiveMail, CatchUpEnd, Mail, QueryKey};
use crate::shard::{unix_now, ShardCtx};

/// Most changes in one catch-up batch.
const CATCH_UP_BATCH: usize = 256;
/// History entries examined per catch-up step before yielding.
const CATCH_UP_EXAMINE: usize = 4096;

impl ShardCtx {
    pub(super) fn start_catch_up(
        self: &Rc<Self>,
        key: QueryKey,
        since: u32,
        filter: Arc<ActiveFilter>,
    ) {
        let (tx, rx) = local_channel::new_unbounded::<bool>();
        self.hub.catch_ups.borrow_mut().insert(key, tx);
        let ctx = self.clone();
        glommio::spawn_local(async move {
            ctx.catch_up(key, since, &filter, rx).await;
            ctx.hub.catch_ups.borrow_mut().remove(&key);
        })
        .detach();
    }

    async fn catch_up(
        self: &Rc<Self>,
        key: QueryKey,
        since: u32,
        filter: &ActiveFilter,
        rx: LocalReceiver<bool>,
    ) {
        let origin = key.origin as usize;
        let start = self.hub.history.borrow().catch_up(since);
        let Some(mut cur) = start else {
            let end = Some(CatchUpEnd::Lost);
            let m = ActiveMail::CatchUpBatch {
                key,
                from: self.id as u32,
                changes: Vec::new(),
                end,
            };
            self.post(origin, Mail::Active(m)).await;
            return;
        };
        loop {
            let mut batch = Vec::new();
            let step = self
                .hub
                .history
                .borrow()
                .catch_up_step(&mut cur, CATCH_UP_EXAMINE, |c| {
                    if batch.len() >= CATCH_UP_BATCH {
                        return false;
                    }
                    if filter.matches(c) {
                        batch.push(c.clone());
                    }
                    true
                });
            let end = match step {
                CatchUpStep::Done => Some(CatchUpEnd::Done),
                CatchUpStep::Lost => Some(CatchUpEnd::Lost),
                CatchUpStep::More => None,
            };
            if batch.is_empty() && end.is_none() {
                glommio::yield_if_needed().await;
                if !self.hub.catch_ups.borrow().contains_key(&key) {
                    return;
                }
                continue;
            }
            let m = ActiveMail::CatchUpBatch {
                key,
                from: self.id as u32,
                changes: batch,
                end,
            };
            self.post(origin, Mail::Active(m)).await;
            if end.is_some() {
                return;
            }
            // One batch in flight per shard and subscription: wait for the credit.
            match rx.recv().await {
                Some(true) => {}
                _ => return,
            }
        }
    }

    pub(super) fn on_catch_up_batch(
        self: &Rc<Self>,
        key: QueryKey,
        from: u32,
        changes: Vec<Change>,
        end: Option<CatchUpEnd>,
    ) {
        let Some(sub) = self.hub.subs.borrow().get(&key).cloned() else {
            return;
        };
        if sub.catch_up_lost.get() {
            return;
        }
        let now = unix_now();
        for c in &changes {
            let key = Rc::new(BindingKey::of(c));
            if !sub.first_copy(self, &key, c) {
                continue;
            }
            match sub.plan.encode_change(c, now) {
                Some(e) => sub.queue(self, Some(key), Rc::new(e), None),
                None => {
                    self.stats()
                        .records_too_long
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.stats()
            .active_catch_up_records
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        match end {
            None => {
                sub.owed.borrow_mut().push(from);
                grant_owed(self, key, &sub);
            }
            Some(CatchUpEnd::Lost) => {
                // RFC 7653 §8.4.1 case 2: stop catch-up at once, DataMissing, live goes on.
                sub.catch_up_lost.set(true);
                sub.catching_up.set(0);
                *sub.seen.borrow_mut() = HashMap::new();
                for s in 0..self.shared.shards {
                    self.post_later(s, Mail::Active(ActiveMail::CatchUpCancel { key }));
                }
                sub.control(self, sub.plan.data_missing(now));
            }
            Some(CatchUpEnd::Done) => {
                let left = sub.catching_up.get().saturating_sub(1);
                sub.catching_up.set(left);
                if left == 0 {
                    *sub.seen.borrow_mut() = HashMap::new();
                }
                if left == 0 {
                    sub.control(self, sub.plan.catch_up_complete(now));
                }
            }
        }
    }
}
