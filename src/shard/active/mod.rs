//! Active leasequery in the glommio shell (docs/DESIGN.md section 3, rules 5 and 6): the per-shard
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
//! wire key ([`WireKey`](crate::session::active::WireKey)) among its subscribers that match it,
//! builds the change's binding key once (the grouping is [`crate::session::fanout`], sans-io),
//! and queues the shared encoding in each subscriber's
//! [`Backlog`](crate::session::active::Backlog) (plain appends while the subscriber keeps up;
//! coalescing by binding once a bound is reached); the subscriber's driver patches its
//! transaction ids when it copies the messages into its write buffer. The pending batch of a
//! shard is bounded (config `active_fanout_pending`): if the mesh cannot take it, the
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
//!
//! # Files
//!
//! - `hub.rs`: the per-shard [`Hub`], publication and the flush to other shards, and the live
//!   fan-out (its pure part is [`crate::session::fanout`]).
//! - `sub.rs`: one subscription (backlog, end, catch-up duplicates).
//! - `catch_up.rs`: catch-up from the history, both sides.
//! - `driver.rs`: the task that writes one subscription's stream ([`run`]; what it needs of its
//!   connection is `shard::io::ConnIo`).
//! - `feed.rs`: the feed follower and the upsert of fed bindings.
//!
//! The messages between shards are in `shard::mail` ([`ActiveMail`]).

mod catch_up;
mod driver;
mod feed;
mod hub;
mod sub;

use std::rc::Rc;

use crate::shard::mail::ActiveMail;
use crate::shard::ShardCtx;
use sub::SubEnd;

pub(super) use driver::run;
pub(super) use feed::{follow_feed, follow_replica, FeedShard};
pub(crate) use hub::{history_limits, Hub};

impl ShardCtx {
    /// Handles an active leasequery mail addressed to this shard.
    pub(super) fn deliver_active(self: &Rc<Self>, mail: ActiveMail) {
        match mail {
            ActiveMail::Changes { changes, published } => self.dispatch(&changes, published),
            ActiveMail::Lost => {
                for s in self.hub.subs.borrow().values() {
                    s.terminate(SubEnd::Fanout);
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
            ActiveMail::Feed { v4, v6, done } => self.apply_feed(v4, v6, done),
            ActiveMail::Replica { msgs } => self.apply_replica(msgs),
        }
    }
}
