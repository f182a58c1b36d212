//! The messages that cross shards: a bulk query's scatter-gather with credits (docs/DESIGN.md §3
//! rule 4), active leasequery's changes, catch-up and feed ([`ActiveMail`]), and the DHCP4o6
//! authority's forwarding and softwire claims. Each is owned and `Send`; buffers travel back and
//! forth so a query allocates its chunk buffers once. This module imports nothing else of the
//! shell: `shard::{active, conn, scan, udp}` all use it.

use std::sync::Arc;

use crate::lease::{Change, V4Binding, V6Binding};
use crate::session::active::ActiveFilter;
use crate::session::ScanPlan;

/// Names one bulk query in the whole process: the shard whose connection runs it, and a number
/// unique on that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub origin: u32,
    pub id: u64,
}

#[derive(Debug)]
pub enum Mail {
    /// Origin -> every shard: start scanning for this query.
    Scan { key: QueryKey, plan: Arc<ScanPlan> },
    /// Origin -> scanner: an empty buffer to fill (one credit).
    Credit { key: QueryKey, buf: Vec<u8> },
    /// Scanner -> origin: a buffer of encoded records; `done` on the scanner's last chunk;
    /// `failed` when the scanner met a binding it cannot encode in one message (the query then
    /// ends with QueryTerminated rather than silently missing a binding).
    Chunk {
        key: QueryKey,
        from: u32,
        buf: Vec<u8>,
        records: u32,
        done: bool,
        failed: bool,
    },
    /// Origin -> scanner: stop (the requestor went away or the server is stopping).
    Cancel { key: QueryKey },
    /// Active leasequery: changes, catch-up and feed (see `shard::active`).
    Active(ActiveMail),
    /// A DHCP4o6 datagram for the shard that owns its client (forwarded once, `shard::udp`).
    Dhcp4o6 {
        datagram: Vec<u8>,
        src: std::net::SocketAddr,
    },
    /// Client's shard -> the owner shard of these softwire sources: claim them (answered by
    /// `SoftwireClaimed` with the same `id`, one answer per claim, in order).
    SoftwireClaim {
        from: u32,
        id: u64,
        claims: Vec<crate::authority::SoftwireClaim>,
    },
    /// Owner -> client's shard: the answers to `SoftwireClaim` `id`.
    SoftwireClaimed { id: u64, granted: Vec<bool> },
    /// Client's shard -> owner: these clients no longer hold these sources.
    SoftwireFree {
        claims: Vec<crate::authority::SoftwireClaim>,
    },
}

impl Mail {
    pub fn key(&self) -> QueryKey {
        match self {
            Mail::Scan { key, .. }
            | Mail::Credit { key, .. }
            | Mail::Chunk { key, .. }
            | Mail::Cancel { key } => *key,
            // Not routed by key (`ShardCtx::deliver_active` routes it).
            Mail::Active(_)
            | Mail::Dhcp4o6 { .. }
            | Mail::SoftwireClaim { .. }
            | Mail::SoftwireClaimed { .. }
            | Mail::SoftwireFree { .. } => QueryKey {
                origin: u32::MAX,
                id: u64::MAX,
            },
        }
    }
}

/// Active leasequery messages between shards.
#[derive(Debug)]
pub enum ActiveMail {
    /// Owning shard -> every shard with subscribers: changes in the order they were made.
    Changes {
        changes: Arc<[Change]>,
        /// When the oldest of them was published on the owning shard.
        published: std::time::Instant,
    },
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
    /// Feed follower -> owning shard: upsert these bindings and publish them (with `data_dir`:
    /// journal them first). `done` is dropped once the batch is applied (or refused): the
    /// follower reads no further before every shard has dropped its ticket.
    Feed {
        v4: Vec<V4Binding>,
        v6: Vec<V6Binding>,
        done: FeedTicket,
    },
    /// Replica follower (shard 0) -> owning shard: apply these stream changes and publish them.
    Replica {
        msgs: Vec<crate::cluster::contract::Message>,
    },
}

/// How a shard's catch-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpEnd {
    /// Every changed binding was sent.
    Done,
    /// History was lost (DataMissing).
    Lost,
}

/// One owning shard's share of a feed poll, not yet applied: counted in an atomic the follower
/// waits on; the count goes down when the ticket is dropped (applied, refused, or the mail lost
/// at shutdown).
#[derive(Debug)]
pub struct FeedTicket(Arc<std::sync::atomic::AtomicUsize>);

impl FeedTicket {
    /// A ticket counted in `count` (incremented now).
    pub fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> FeedTicket {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        FeedTicket(count.clone())
    }
}

impl Drop for FeedTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
