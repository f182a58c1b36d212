//! Active leasequery in the glommio shell (DESIGN.md section 3, rules 5 and 6): the per-shard
//! [`Hub`] (history ring, subscription registry, outgoing change batches), the cross-shard
//! fan-out, catch-up, and the driver task of one subscription.
//!
//! # Publication API
//!
//! Whoever changes a shard's table (the 4o6 authority, the feed follower) calls
//! [`ShardCtx::publish`] **on the owning shard, after the table was changed**, with the changes
//! in the order they were made. `publish` is synchronous and cheap: it appends each change to
//! the shard's history ring and queues it for the shards that have subscribers; the queue is
//! flushed once per executor turn (one batch per destination shard, the batch shared as an
//! `Arc<[Change]>`) through the bounded mesh.
//!
//! # Fan-out
//!
//! `Shared::subscribers[s]` counts the subscriptions on shard `s` (every shard reads it before
//! sending); `Shared::horizons[s]` is shard `s`'s history horizon, so a connection's shard
//! answers DataMissing at once without asking. A destination shard encodes each change once per
//! [`WireKey`] among its subscribers that match it, builds the change's binding key once, and
//! queues the shared encoding in each subscriber's [`Backlog`] (plain appends while the
//! subscriber keeps up; coalescing by binding once a bound is reached); the subscriber's driver
//! patches its transaction ids when it copies the messages into its write buffer. The pending
//! batch of a shard is bounded (config `active_fanout_pending`): if the mesh cannot take it, the
//! subscribers that would miss changes are
//! terminated (QueryTerminated, counted as `active_terminated_fanout`), never silently skipped.
//!
//! # One subscription
//!
//! The driver ([`run`]) writes the opening message, starts catch-up on every shard, then loops:
//! take backlog messages (up to a chunk), write them through the connection's writer, wait for
//! the write to complete (the writer hands the buffer back as a credit) at most
//! `active_send_timeout`; when idle for `active_idle_timeout`, a keepalive. It ends on shutdown
//! (DONE / STATUS QueryTerminated with base-time, the last message), backlog overflow
//! (QueryTerminated, then close), send timeout (close), or the peer closing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use hashbrown::HashMap;
use tracing::{debug, info, warn};

use super::io::ConnIo;
use super::mail::{Mail, QueryKey};
use super::{unix_now, ShardCtx};
use crate::feed::follow::{FeedFollower, FeedState, POLL_INTERVAL};
use crate::feed::FeedBinding;
use crate::lease::{
    shard_of_addr, shard_of_duid, BindingKey, CatchUpStep, Change, ChangeKind, History,
    HistoryLimits, V4Binding, V6Binding,
};
use crate::session::active::{ActiveFilter, ActivePlan, Backlog, BacklogLimits, Encoded, WireKey};

/// Most bindings a catching-up subscription remembers (see `Sub::seen`); past it a state may
/// reach the subscriber twice (harmless: the same state again).
const SEEN_DURING_CATCH_UP: usize = 65_536;
/// Most changes in one catch-up batch.
const CATCH_UP_BATCH: usize = 256;
/// History entries examined per catch-up step before yielding.
const CATCH_UP_EXAMINE: usize = 4096;

/// Active leasequery messages between shards.
#[derive(Debug)]
pub(crate) enum ActiveMail {
    /// Owning shard -> every shard with subscribers: changes in the order they were made.
    Changes { changes: Arc<[Change]> },
    /// Owning shard -> shards with subscribers: changes were dropped (pending over its bound).
    Lost,
    /// Subscriber's shard -> every shard: catch up from `since` for subscription `key`.
    CatchUp {
        key: QueryKey,
        since: u32,
        filter: Arc<ActiveFilter>,
    },
    /// Shard -> subscriber's shard: catch-up changes; `end` on the last batch.
    CatchUpBatch {
        key: QueryKey,
        from: u32,
        changes: Vec<Change>,
        end: Option<CatchUpEnd>,
    },
    /// Subscriber's shard -> shard: send the next catch-up batch.
    CatchUpCredit { key: QueryKey },
    /// Subscriber's shard -> shard: stop the catch-up.
    CatchUpCancel { key: QueryKey },
    /// Feed follower -> owning shard: upsert these bindings and publish them.
    Feed {
        v4: Vec<V4Binding>,
        v6: Vec<V6Binding>,
    },
}

/// How a shard's catch-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUpEnd {
    /// Every changed binding was sent.
    Done,
    /// History was lost (DataMissing).
    Lost,
}

/// Why a subscription ended (counted per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    PeerGone,
    SendTimeout,
    Backlog,
    Fanout,
}

/// One subscription, on its connection's shard.
struct Sub {
    plan: Arc<ActivePlan>,
    wire: WireKey,
    backlog: RefCell<Backlog<Rc<Encoded>>>,
    wake: LocalSender<()>,
    end: Cell<Option<End>>,
    /// Shards whose catch-up has not ended.
    catching_up: Cell<usize>,
    catch_up_lost: Cell<bool>,
    /// While catching up: the last change queued per binding, live or catch-up (at most
    /// [`SEEN_DURING_CATCH_UP`] bindings). A change published on a shard just before its
    /// catch-up window was fixed can reach this subscription both as a live update (its
    /// fan-out mail still on the way when the subscription was registered) and in that shard's
    /// catch-up, in either order; the second copy of the same change is skipped, so the
    /// subscriber gets that state once.
    seen: RefCell<HashMap<Rc<BindingKey>, Change>>,
    /// Shards waiting for a catch-up credit.
    owed: RefCell<Vec<u32>>,
}

impl Sub {
    fn notify(&self) {
        let _ = self.wake.try_send(());
    }

    fn terminate(&self, why: End) {
        if self.end.get().is_none() {
            self.end.set(Some(why));
        }
        self.notify();
    }

    /// Queues one message; over the backlog bound the subscription is terminated. The driver is
    /// woken only when the backlog was empty: otherwise it has been woken already, or it is
    /// writing and looks at the backlog again when the write completes.
    fn queue(&self, ctx: &ShardCtx, key: Option<Rc<BindingKey>>, e: Rc<Encoded>) {
        if self.end.get().is_some() {
            return;
        }
        let len = e.bytes.len();
        let pushed = self.backlog.borrow_mut().push(key, e, len);
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
                self.terminate(End::Backlog);
            }
        }
    }

    /// While catching up: false when this very change was queued already (live or by the
    /// catch-up, see `seen`), counted as coalesced; otherwise it is remembered.
    fn first_copy(&self, ctx: &ShardCtx, key: &Rc<BindingKey>, c: &Change) -> bool {
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

    fn control(&self, ctx: &ShardCtx, bytes: Vec<u8>) {
        let e = Rc::new(Encoded {
            bytes,
            at: crate::proto::encoder::EncodedAt {
                start: 0,
                len: 0,
                v6_xid_at: None,
                v4_xid_at: None,
            },
        });
        self.queue(ctx, None, e);
    }
}

/// A shard's active leasequery state.
pub(crate) struct Hub {
    history: RefCell<History>,
    subs: RefCell<HashMap<QueryKey, Rc<Sub>>>,
    /// Catch-ups this shard runs (for subscriptions of any shard): where credits go.
    catch_ups: RefCell<HashMap<QueryKey, LocalSender<bool>>>,
    pending: RefCell<Vec<Change>>,
    lost: Cell<bool>,
    flushing: Cell<bool>,
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
            lost: Cell::new(false),
            flushing: Cell::new(false),
        }
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
                    self.post(d, Mail::Active(ActiveMail::Changes { changes }))
                        .await;
                }
            }
        }
        self.hub.flushing.set(false);
    }

    /// Sends `mail` from a new task (for callers that cannot await).
    fn post_later(self: &Rc<Self>, to: usize, mail: Mail) {
        let ctx = self.clone();
        glommio::spawn_local(async move { ctx.post(to, mail).await }).detach();
    }

    /// Handles an active leasequery mail addressed to this shard.
    pub(super) fn deliver_active(self: &Rc<Self>, mail: ActiveMail) {
        match mail {
            ActiveMail::Changes { changes } => self.dispatch(&changes),
            ActiveMail::Lost => {
                for s in self.hub.subs.borrow().values() {
                    s.terminate(End::Fanout);
                }
            }
            ActiveMail::CatchUp { key, since, filter } => self.start_catch_up(key, since, filter),
            ActiveMail::CatchUpBatch {
                key,
                from,
                changes,
                end,
            } => self.on_catch_up_batch(key, from, changes, end),
            ActiveMail::CatchUpCredit { key } => {
                if let Some(tx) = self.hub.catch_ups.borrow().get(&key) {
                    let _ = tx.try_send(true);
                }
            }
            ActiveMail::CatchUpCancel { key } => {
                if let Some(tx) = self.hub.catch_ups.borrow_mut().remove(&key) {
                    let _ = tx.try_send(false);
                }
            }
            ActiveMail::Feed { v4, v6 } => self.apply_feed(v4, v6),
        }
    }

    /// Live changes: encode once per wire key, queue for every matching subscriber; each
    /// change's binding key is built once for all of them.
    fn dispatch(&self, changes: &[Change]) {
        let subs: Vec<Rc<Sub>> = self.hub.subs.borrow().values().cloned().collect();
        if subs.is_empty() {
            return;
        }
        let now = unix_now();
        let mut groups: HashMap<&WireKey, Vec<&Rc<Sub>>> = HashMap::new();
        for s in &subs {
            groups.entry(&s.wire).or_default().push(s);
        }
        for c in changes {
            let mut key: Option<Rc<BindingKey>> = None;
            for group in groups.values() {
                let mut enc: Option<Option<Rc<Encoded>>> = None;
                for s in group {
                    if s.end.get().is_some() || !s.plan.filter.matches(c) {
                        continue;
                    }
                    let e = enc.get_or_insert_with(|| s.plan.encode_change(c, now).map(Rc::new));
                    match e {
                        Some(e) => {
                            let k = key.get_or_insert_with(|| Rc::new(BindingKey::of(c)));
                            if s.catching_up.get() > 0 && !s.first_copy(self, k, c) {
                                continue;
                            }
                            s.queue(self, Some(k.clone()), e.clone());
                        }
                        None => {
                            self.stats()
                                .records_too_long
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    fn start_catch_up(self: &Rc<Self>, key: QueryKey, since: u32, filter: Arc<ActiveFilter>) {
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

    fn on_catch_up_batch(
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
                Some(e) => sub.queue(self, Some(key), Rc::new(e)),
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

    /// Upserts fed bindings this shard owns and publishes them (kind Feed, at now).
    fn apply_feed(self: &Rc<Self>, v4: Vec<V4Binding>, v6: Vec<V6Binding>) {
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

/// Gives back the catch-up credits a subscription owes while its backlog is below half its
/// octet bound.
fn grant_owed(ctx: &Rc<ShardCtx>, key: QueryKey, sub: &Sub) {
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

/// Follows the feed file (on shard 0): every poll's bindings go to their owning shards.
pub(super) async fn follow_feed(ctx: Rc<ShardCtx>, path: std::path::PathBuf) {
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

/// Runs one active query on its connection's shard until it ends (see the module docs).
pub(super) async fn run(ctx: Rc<ShardCtx>, plan: Arc<ActivePlan>, io: ConnIo) {
    let key = ctx.new_query_key();
    let shards = ctx.shared.shards;
    let cfg = &ctx.shared.config;
    let (wake_tx, wake_rx) = local_channel::new_bounded::<()>(1);
    let (credit_tx, credit_rx) = local_channel::new_unbounded::<Mail>();
    let sub = Rc::new(Sub {
        wire: plan.wire_key(),
        plan: plan.clone(),
        backlog: RefCell::new(Backlog::new(BacklogLimits {
            max_bindings: cfg.active_backlog_bindings,
            max_bytes: cfg.active_backlog_bytes,
        })),
        wake: wake_tx,
        end: Cell::new(None),
        catching_up: Cell::new(0),
        catch_up_lost: Cell::new(false),
        seen: RefCell::new(HashMap::new()),
        owed: RefCell::new(Vec::new()),
    });
    // Registered before catch-up starts anywhere, so that no change falls between the two.
    ctx.hub.subs.borrow_mut().insert(key, sub.clone());
    ctx.scans.borrow_mut().insert(key, credit_tx);
    ctx.shared.subscribers[ctx.id].fetch_add(1, Ordering::AcqRel);
    ctx.stats()
        .active_subscribers
        .fetch_add(1, Ordering::Relaxed);
    ctx.stats().active_started.fetch_add(1, Ordering::Relaxed);

    let now = unix_now();
    let missing = plan.since.is_some_and(|t| {
        ctx.shared
            .horizons
            .iter()
            .any(|h| h.load(Ordering::Acquire) > t)
    });
    if let Some(open) = plan.opening(now, missing) {
        (io.send)(open, None);
    }
    if let (Some(since), false) = (plan.since, missing) {
        sub.catching_up.set(shards);
        let filter = Arc::new(plan.filter.clone());
        for s in 0..shards {
            let m = ActiveMail::CatchUp {
                key,
                since,
                filter: filter.clone(),
            };
            ctx.post(s, Mail::Active(m)).await;
        }
    }

    // Validation keeps both within a day; the cap keeps glommio's `Instant + Duration` timers
    // from overflowing whatever reaches here.
    let idle = timer_secs(cfg.active_idle_timeout);
    let send_timeout = timer_secs(cfg.active_send_timeout);
    let chunk = cfg.chunk_size;
    let (v6x, v4x) = (plan.v6_xid(), plan.v4_xid());
    // The write buffer grows to what a write needs (at most about a chunk) and shrinks back after
    // a burst, so an idle subscriber costs little memory.
    let mut spare: Vec<u8> = Vec::new();
    let mut last_write = Instant::now();
    let end = loop {
        if let Some(e) = sub.end.get() {
            break e;
        }
        let items = {
            let mut b = sub.backlog.borrow_mut();
            if b.is_empty() {
                Vec::new()
            } else {
                b.pop(chunk)
            }
        };
        if !items.is_empty() {
            let mut buf = std::mem::take(&mut spare);
            buf.clear();
            buf.reserve(items.iter().map(|e| e.bytes.len()).sum());
            let mut updates = 0u64;
            for e in &items {
                e.append_to(&mut buf, v6x, v4x);
                updates += u64::from(e.at.v6_xid_at.is_some() || e.at.v4_xid_at.is_some());
            }
            drop(items);
            ctx.stats()
                .active_updates_sent
                .fetch_add(updates, Ordering::Relaxed);
            (io.send)(buf, Some((ctx.id, key)));
            match wait_write(
                &ctx,
                &io,
                &credit_rx,
                send_timeout,
                Some((&sub, &wake_rx)),
                true,
            )
            .await
            {
                Ok(mut buf) => {
                    // (The writer hands it back cleared.) While more waits the buffer is kept
                    // whatever its size (no allocation and page faults per write); once the
                    // backlog is drained, only a small one is kept.
                    if buf.capacity() > 64 * 1024 && sub.backlog.borrow().is_empty() {
                        buf = Vec::new();
                    }
                    spare = buf;
                }
                Err(e) => break e,
            }
            // A wake consumed while writing may have announced new backlog: look again.
            let _ = sub.wake.try_send(());
            last_write = Instant::now();
            grant_owed(&ctx, key, &sub);
            continue;
        }
        let wait = idle.saturating_sub(last_write.elapsed());
        match wait_event(&ctx, &io, &wake_rx, wait).await {
            Event::Wake => {}
            Event::Idle => {
                (io.send)(plan.keepalive(unix_now()), None);
                ctx.stats()
                    .active_keepalives
                    .fetch_add(1, Ordering::Relaxed);
                last_write = Instant::now();
            }
            Event::End(e) => break e,
        }
    };

    // Cleanup: nothing more reaches this subscription.
    ctx.hub.subs.borrow_mut().remove(&key);
    ctx.scans.borrow_mut().remove(&key);
    ctx.shared.subscribers[ctx.id].fetch_sub(1, Ordering::AcqRel);
    ctx.stats()
        .active_subscribers
        .fetch_sub(1, Ordering::Relaxed);
    if sub.catching_up.get() > 0 {
        for s in 0..shards {
            ctx.post(s, Mail::Active(ActiveMail::CatchUpCancel { key }))
                .await;
        }
    }
    let st = ctx.stats();
    let counter = match end {
        End::Shutdown => &st.active_terminated_shutdown,
        End::PeerGone => &st.active_ended_peer,
        End::SendTimeout => &st.active_terminated_send_timeout,
        End::Backlog => &st.active_terminated_backlog,
        End::Fanout => &st.active_terminated_fanout,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    debug!(shard = ctx.id, ?end, "active query ended");
    match end {
        // RFC 7653 §8.4, RFC 7724 §7.4: QueryTerminated with base-time is the last message, then
        // close. It waits behind what is queued; a requestor that does not read gets it cut off
        // (bounded by the send timeout and half the shutdown deadline).
        End::Shutdown | End::Backlog | End::Fanout => {
            let (text, limit) = match end {
                End::Shutdown => (
                    "server shutting down",
                    send_timeout.min(Duration::from_millis(
                        cfg.shutdown_deadline.saturating_mul(500),
                    )),
                ),
                End::Backlog => ("subscriber too slow: backlog over its bound", send_timeout),
                _ => ("updates lost between shards", send_timeout),
            };
            let (tx, rx) = local_channel::new_unbounded::<Mail>();
            let k2 = ctx.new_query_key();
            ctx.scans.borrow_mut().insert(k2, tx);
            (io.send)(plan.terminated(unix_now(), text), Some((ctx.id, k2)));
            let written = wait_write(&ctx, &io, &rx, limit, None, false).await;
            ctx.scans.borrow_mut().remove(&k2);
            // After shutdown the reader has stopped and the writer closes once drained; otherwise
            // (or when the message could not be written) the connection is broken now.
            if end != End::Shutdown || written.is_err() {
                io.dead.break_now();
            }
        }
        End::SendTimeout | End::PeerGone => io.dead.break_now(),
    }
}

/// A timer of `secs` seconds, capped at [`crate::config::MAX_DATA_TIMEOUT_SECS`]: glommio adds
/// a timer's duration to `Instant::now()` unchecked, which panics near 2^63 seconds.
fn timer_secs(secs: u64) -> Duration {
    Duration::from_secs(secs.min(crate::config::MAX_DATA_TIMEOUT_SECS))
}

enum Event {
    Wake,
    Idle,
    End(End),
}

/// Waits for new backlog, the idle timer, or the end of the connection / server.
async fn wait_event(
    ctx: &ShardCtx,
    io: &ConnIo,
    wake: &LocalReceiver<()>,
    idle: Duration,
) -> Event {
    let woke = async {
        wake.recv().await;
        Event::Wake
    };
    let timer = async {
        glommio::timer::sleep(idle).await;
        Event::Idle
    };
    let ends = async { Event::End(wait_end(ctx, io).await) };
    futures_lite::future::or(ends, futures_lite::future::or(woke, timer)).await
}

/// Resolves when the server stops, the writer fails or the reader stops.
async fn wait_end(ctx: &ShardCtx, io: &ConnIo) -> End {
    let stop = async {
        let _ = ctx.shutdown.acquire(1).await;
        End::Shutdown
    };
    let dead = async {
        let _ = io.dead.dead.acquire(1).await;
        End::PeerGone
    };
    let reader = async {
        let _ = io.reader_done.acquire(1).await;
        // The reader also stops on shutdown: tell the two apart.
        if ctx.shutdown.try_acquire(1).is_err() {
            End::Shutdown
        } else {
            End::PeerGone
        }
    };
    futures_lite::future::or(stop, futures_lite::future::or(dead, reader)).await
}

/// Waits for the writer to hand the buffer back (the write completed), at most `timeout`; ends
/// early when the subscription is terminated meanwhile (`sub`, woken through `wake`) or, with
/// `watch_stop`, when the server stops.
async fn wait_write(
    ctx: &ShardCtx,
    io: &ConnIo,
    credits: &LocalReceiver<Mail>,
    timeout: Duration,
    watch: Option<(&Sub, &LocalReceiver<()>)>,
    watch_stop: bool,
) -> Result<Vec<u8>, End> {
    let got = async {
        match credits.recv().await {
            Some(Mail::Credit { buf, .. }) => Ok(buf),
            _ => Err(End::PeerGone),
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        Err(End::SendTimeout)
    };
    let dead = async {
        let _ = io.dead.dead.acquire(1).await;
        Err(End::PeerGone)
    };
    let stop = async {
        if watch_stop {
            let _ = ctx.shutdown.acquire(1).await;
            Err(End::Shutdown)
        } else {
            std::future::pending().await
        }
    };
    let ended = async {
        match watch {
            Some((sub, wake)) => loop {
                if let Some(e) = sub.end.get() {
                    return Err(e);
                }
                wake.recv().await;
            },
            None => std::future::pending().await,
        }
    };
    futures_lite::future::or(
        got,
        futures_lite::future::or(
            timer,
            futures_lite::future::or(dead, futures_lite::future::or(stop, ended)),
        ),
    )
    .await
}
