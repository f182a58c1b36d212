//! The feed follower (on shard 0) and the owning shard's side: fed bindings are upserted into
//! the table and published like any other change. With `data_dir` a fed change is first
//! written to the owning shard's journal (the same writer the DHCP4o6 authority uses when it
//! runs), and only once it is durable is it applied to the table, sent to active subscribers
//! and, through the journal's durable hook, published to the cluster stream.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::feed::follow::{FeedFollower, FeedState, POLL_INTERVAL};
use crate::feed::FeedBinding;
use crate::lease::{shard_of_addr, shard_of_duid, Change, ChangeKind, V4Binding, V6Binding};
use crate::shard::mail::{ActiveMail, FeedTicket, Mail};
use crate::shard::{unix_now, ShardCtx};
use crate::store::StoreError;

/// A batch of fed bindings waiting for its turn on the owning shard.
type FeedBatch = (Vec<V4Binding>, Vec<V6Binding>, FeedTicket);

/// The owning shard's side of the feed: batches are journaled, made durable and applied one
/// at a time, in the order they came (a later line for a binding always wins).
#[derive(Debug, Default)]
pub(crate) struct FeedShard {
    queue: RefCell<VecDeque<FeedBatch>>,
    /// A task is draining `queue`.
    running: Cell<bool>,
    /// Fed records are in the journal but not yet in the table: a snapshot taken now would
    /// miss them (it is put off until they are applied).
    unapplied: Cell<bool>,
    /// The journal refused a fed change (logged once).
    failed: Cell<bool>,
}

impl FeedShard {
    /// True while fed records are journaled but not yet applied to the table.
    pub(crate) fn unapplied(&self) -> bool {
        self.unapplied.get()
    }
}

/// Keeps the last state of each binding key, in the order of those last states (one poll may
/// carry several lines for one binding: only its newest state is a change).
fn coalesce<T, K: std::hash::Hash + Eq>(v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = HashSet::with_capacity(v.len());
    let mut out: Vec<T> = v
        .into_iter()
        .rev()
        .filter(|b| seen.insert(key(b)))
        .collect();
    out.reverse();
    out
}

impl ShardCtx {
    /// Queues fed bindings this shard owns; they are applied in order by one task.
    pub(super) fn apply_feed(
        self: &Rc<Self>,
        v4: Vec<V4Binding>,
        v6: Vec<V6Binding>,
        done: FeedTicket,
    ) {
        self.feed.queue.borrow_mut().push_back((v4, v6, done));
        if !self.feed.running.replace(true) {
            let ctx = self.clone();
            glommio::spawn_local(async move {
                loop {
                    let next = ctx.feed.queue.borrow_mut().pop_front();
                    let Some((v4, v6, done)) = next else {
                        break;
                    };
                    ctx.apply_feed_batch(v4, v6).await;
                    drop(done);
                }
                ctx.feed.running.set(false);
            })
            .detach();
        }
    }

    /// One batch: the bindings that differ from what the table holds (the last line per key)
    /// become changes of kind Feed at now; with a journal they are appended and awaited, then
    /// upserted and published. A journal failure drops the batch (nothing of it is visible).
    async fn apply_feed_batch(self: &Rc<Self>, v4: Vec<V4Binding>, v6: Vec<V6Binding>) {
        let mut v4 = coalesce(v4, |b| (b.addr, b.port_params));
        let mut v6 = coalesce(v6, |b| (b.duid.clone(), b.link));
        {
            // A binding identical to the table's is not a change (a feed file read again from
            // its start after a restart: the journal replay already holds its bindings).
            let t = self.table.borrow();
            v4.retain(|b| {
                t.get_v4(b.addr, b.port_params)
                    .is_none_or(|r| V4Binding::from_record(&r) != *b)
            });
            v6.retain(|b| {
                t.get_v6(&b.duid, b.link)
                    .is_none_or(|r| V6Binding::from_record(&r) != *b)
            });
        }
        if v4.is_empty() && v6.is_empty() {
            return;
        }
        let at = unix_now();
        let changes: Vec<Change> = v4
            .into_iter()
            .map(|binding| Change::V4 {
                at,
                kind: ChangeKind::Feed,
                binding,
            })
            .chain(v6.into_iter().map(|binding| Change::V6 {
                at,
                kind: ChangeKind::Feed,
                binding,
            }))
            .collect();
        if let Some(j) = &self.journal {
            self.feed.unapplied.set(true);
            let r = journal_all(j, &changes).await;
            self.feed.unapplied.set(false);
            if let Err(e) = r {
                self.stats()
                    .journal_failures
                    .fetch_add(1, Ordering::Relaxed);
                if !self.feed.failed.replace(true) {
                    error!(
                        shard = self.id,
                        dropped = changes.len(),
                        "feed: journal failed: {e}; fed changes are not applied until a restart \
                         (which reads the feed file again)"
                    );
                }
                return;
            }
        }
        let mut applied = Vec::with_capacity(changes.len());
        {
            let mut t = self.table.borrow_mut();
            for c in changes {
                let r = match &c {
                    Change::V4 { binding, .. } => t.upsert_v4(binding.clone()),
                    Change::V6 { binding, .. } => t.upsert_v6(binding.clone()),
                };
                match r {
                    Ok(()) => applied.push(c),
                    Err(e) => warn!(shard = self.id, "feed: {e}"),
                }
            }
        }
        self.publish(&applied);
        if let Some(j) = &self.journal {
            if j.journal_bytes() > self.shared.config.journal_compact_bytes
                && !j.snapshot_in_progress()
            {
                crate::shard::udp::snapshot(self, j);
            }
        }
    }
}

/// Appends `changes` to the journal in order and waits until the last is durable. A full
/// journal buffer ([`StoreError::Backlog`], the authority's changes share it) is waited out:
/// what was appended is made durable, then appending goes on.
async fn journal_all(j: &crate::store::Journal, changes: &[Change]) -> Result<(), StoreError> {
    let mut last = None;
    let mut i = 0;
    while let Some(c) = changes.get(i) {
        match j.append(c) {
            Ok(seq) => {
                last = Some(seq);
                i += 1;
            }
            Err(StoreError::Backlog(_)) => j.commit().await?,
            Err(e) => return Err(e),
        }
    }
    match last {
        Some(seq) => j.wait_durable(seq).await,
        None => Ok(()),
    }
}

/// How often the follower looks whether the owning shards have applied its last poll.
const FEED_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Follows the feed file (on shard 0): every poll's bindings go to their owning shards.
pub(in crate::shard) async fn follow_feed(ctx: Rc<ShardCtx>, path: std::path::PathBuf) {
    let mut f = FeedFollower::new(&path);
    let name = path.display().to_string();
    let shards = ctx.shared.shards;
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let p = f.poll();
        match &p.state {
            None => {}
            Some(FeedState::Readable) => info!("feed {name}: {}", FeedState::Readable),
            Some(s) => warn!("feed {name}: {s}"),
        }
        if p.restarted {
            warn!("feed {name}: the file shrank; reading it again from its start");
        }
        for b in &p.bad {
            warn!("feed {name}:{}: {} (line skipped)", b.line, b.reason);
        }
        ctx.stats()
            .feed_bad_lines
            .fetch_add(p.bad.len() as u64, Ordering::Relaxed);
        ctx.stats()
            .feed_lines
            .fetch_add(p.bindings.len() as u64, Ordering::Relaxed);
        let mut per: Vec<(Vec<V4Binding>, Vec<V6Binding>)> =
            (0..shards).map(|_| (Vec::new(), Vec::new())).collect();
        for b in p.bindings {
            match b {
                FeedBinding::V4(b) => {
                    if let Some(s) = per.get_mut(shard_of_addr(b.addr, shards)) {
                        s.0.push(b);
                    }
                }
                FeedBinding::V6(b) => {
                    if let Some(s) = per.get_mut(shard_of_duid(&b.duid, shards)) {
                        s.1.push(b);
                    }
                }
            }
        }
        for (s, (v4, v6)) in per.into_iter().enumerate() {
            if !v4.is_empty() || !v6.is_empty() {
                let done = FeedTicket::new(&in_flight);
                ctx.post(s, Mail::Active(ActiveMail::Feed { v4, v6, done }))
                    .await;
            }
        }
        // Nothing more is read before every owning shard has applied its share (with a journal:
        // made it durable), so a slow disk holds the file back instead of growing queues.
        while in_flight.load(Ordering::Acquire) > 0 {
            glommio::timer::sleep(FEED_WAIT).await;
        }

        glommio::timer::sleep(POLL_INTERVAL).await;
    }
}

impl ShardCtx {
    /// A replica's changes this shard owns, in stream order: upserted or removed, and published
    /// with the change's own time (`changed`), so catch-up and time windows answer as the
    /// authority does.
    pub(super) fn apply_replica(self: &Rc<Self>, msgs: Vec<crate::cluster::contract::Message>) {
        use crate::cluster::contract::Op;
        let mut changes = Vec::with_capacity(msgs.len());
        {
            let mut t = self.table.borrow_mut();
            for m in msgs {
                let at = m.changed;
                match (m.op, m.binding) {
                    (Op::Upsert, FeedBinding::V4(b)) => match t.upsert_v4(b.clone()) {
                        Ok(()) => changes.push(Change::V4 {
                            at,
                            kind: ChangeKind::Feed,
                            binding: b,
                        }),
                        Err(e) => warn!(shard = self.id, "replica: {e}"),
                    },
                    (Op::Upsert, FeedBinding::V6(b)) => match t.upsert_v6(b.clone()) {
                        Ok(()) => changes.push(Change::V6 {
                            at,
                            kind: ChangeKind::Feed,
                            binding: b,
                        }),
                        Err(e) => warn!(shard = self.id, "replica: {e}"),
                    },
                    (Op::Remove, FeedBinding::V4(b)) => {
                        if t.remove_v4(b.addr, b.port_params) {
                            changes.push(Change::V4 {
                                at,
                                kind: ChangeKind::Remove,
                                binding: b,
                            });
                        }
                    }
                    (Op::Remove, FeedBinding::V6(b)) => {
                        if t.remove_v6(&b.duid, b.link) {
                            changes.push(Change::V6 {
                                at,
                                kind: ChangeKind::Remove,
                                binding: b,
                            });
                        }
                    }
                }
            }
        }
        self.publish(&changes);
    }
}

/// A replica's changes (on shard 0): taken from the follower thread's channel and routed to
/// their owning shards, in order.
pub(in crate::shard) async fn follow_replica(
    ctx: Rc<ShardCtx>,
    rx: std::sync::mpsc::Receiver<crate::cluster::replica::Batch>,
) {
    let shards = ctx.shared.shards;
    loop {
        let mut per: Vec<Vec<crate::cluster::contract::Message>> =
            (0..shards).map(|_| Vec::new()).collect();
        let mut got = 0usize;
        loop {
            match rx.try_recv() {
                Ok(batch) => {
                    for m in batch {
                        let s = match &m.binding {
                            FeedBinding::V4(b) => shard_of_addr(b.addr, shards),
                            FeedBinding::V6(b) => shard_of_duid(&b.duid, shards),
                        };
                        if let Some(v) = per.get_mut(s) {
                            v.push(m);
                            got += 1;
                        }
                    }
                    if got >= 4096 {
                        break;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for (s, msgs) in per.into_iter().enumerate() {
            if !msgs.is_empty() {
                ctx.post(s, Mail::Active(ActiveMail::Replica { msgs }))
                    .await;
            }
        }
        if got == 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::coalesce;

    #[test]
    fn coalesce_keeps_each_keys_last_state_in_the_order_of_those_states() {
        let v = vec![(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')];
        assert_eq!(coalesce(v, |x| x.0), vec![(1, 'c'), (3, 'd'), (2, 'e')]);
        assert_eq!(coalesce(Vec::<(u8, u8)>::new(), |x| x.0), vec![]);
        assert_eq!(coalesce(vec![(7, 1)], |x| x.0), vec![(7, 1)]);
    }
}
