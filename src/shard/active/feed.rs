//! The feed follower (on shard 0) and the owning shard's side: fed bindings are upserted into
//! the table and published like any other change.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use crate::feed::follow::{FeedFollower, FeedState, POLL_INTERVAL};
use crate::feed::FeedBinding;
use crate::lease::{shard_of_addr, shard_of_duid, Change, ChangeKind, V4Binding, V6Binding};
use crate::shard::mail::{ActiveMail, Mail};
use crate::shard::{unix_now, ShardCtx};

impl ShardCtx {
    /// Upserts fed bindings this shard owns and publishes them (kind Feed, at now).
    pub(super) fn apply_feed(self: &Rc<Self>, v4: Vec<V4Binding>, v6: Vec<V6Binding>) {
        let at = unix_now();
        let mut changes = Vec::with_capacity(v4.len() + v6.len());
        {
            let mut t = self.table.borrow_mut();
            for b in v4 {
                match t.upsert_v4(b.clone()) {
                    Ok(()) => changes.push(Change::V4 {
                        at,
                        kind: ChangeKind::Feed,
                        binding: b,
                    }),
                    Err(e) => warn!(shard = self.id, "feed: {e}"),
                }
            }
            for b in v6 {
                match t.upsert_v6(b.clone()) {
                    Ok(()) => changes.push(Change::V6 {
                        at,
                        kind: ChangeKind::Feed,
                        binding: b,
                    }),
                    Err(e) => warn!(shard = self.id, "feed: {e}"),
                }
            }
        }
        self.publish(&changes);
    }
}

/// Follows the feed file (on shard 0): every poll's bindings go to their owning shards.
pub(in crate::shard) async fn follow_feed(ctx: Rc<ShardCtx>, path: std::path::PathBuf) {
    let mut f = FeedFollower::new(&path);
    let name = path.display().to_string();
    let shards = ctx.shared.shards;
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
                ctx.post(s, Mail::Active(ActiveMail::Feed { v4, v6 })).await;
            }
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
