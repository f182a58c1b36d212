//! The DHCP4o6 lease authority's shell (docs/DESIGN.md §3 rules 2 and 7): every shard listens on UDP
//! (`dhcp4o6_listen`, SO_REUSEPORT, so the kernel spreads clients over shards), sends each
//! datagram once to the shard that owns its client ([`authority::client_shard`]), and there
//! runs the sans-io [`Authority`]. Lease changes go to the shard's journal and are durable
//! before the reply leaves; then they are published to active leasequery; then the reply is
//! sent from the owning shard's socket (all shards' sockets share the address and port).
//! A timer task runs expiry and, past `journal_compact_bytes`, a snapshot of the shard.
//!
//! The authority writes its changes into the table at once; until the journal says they are
//! durable the shell keeps what each of them replaced ([`AuthShell`]'s undo log). When the
//! journal fails (an append, a write or a sync), every change not yet durable is undone in the
//! table, newest first, nothing of it is published or acknowledged, and this shard's authority
//! stops: it answers no datagram, runs no expiry and grants no softwire claim until a restart
//! replays the journal (which refuses everything after a failure anyway).
//!
//! Softwire sources (RFC 8539 §8.2) are unique across shards: when the authority stops with
//! `needs_claim`, [`claim_at_owners`] asks the source's owner shard by mail and the datagram is
//! handled again with the answer; freed claims go to their owners ([`free_at_owners`]) once the
//! changes are durable.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use glommio::net::UdpSocket;
use tracing::{debug, error, warn};

use super::drops;
use super::mail::Mail;
use super::{unix_now, ShardCtx};
use crate::authority::{self, Authority};
use crate::lease::table::V4Undo;
use crate::lease::{Change, LeaseTable, ScanStep, V4Binding, V4Query, V6Binding, V6Query};
use crate::store::Journal;

/// Datagrams received beyond this size are cut by the kernel and dropped by the authority.
const RECV_BUF: usize = 65_536;
/// Most handlings in flight on one shard (each waits for its journal commit); past it new
/// datagrams are dropped and counted.
const MAX_IN_FLIGHT: usize = 4096;

/// One shard's authority and what it needs.
pub(crate) struct AuthShell {
    pub authority: RefCell<Authority>,
    pub journal: Option<Journal>,
    pub socket: UdpSocket,
    in_flight: Rc<glommio::sync::Semaphore>,
    /// What the table changes not yet durable replaced, in the order they were made, each
    /// with the journal sequence number that makes it durable (only with a journal).
    undo: RefCell<VecDeque<(u64, V4Undo)>>,
    /// The journal failed: the authority of this shard is stopped.
    pub failed: Cell<bool>,
}

impl std::fmt::Debug for AuthShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthShell").finish_non_exhaustive()
    }
}

impl AuthShell {
    pub fn new(authority: Authority, journal: Option<Journal>, socket: UdpSocket) -> AuthShell {
        AuthShell {
            authority: RefCell::new(authority),
            journal,
            socket,
            in_flight: Rc::new(glommio::sync::Semaphore::new(MAX_IN_FLIGHT as u64)),
            undo: RefCell::new(VecDeque::new()),
            failed: Cell::new(false),
        }
    }

    /// Runs `f` (the authority on the table) and returns its result with what its table
    /// changes replaced (recorded only when there is a journal to wait for).
    fn run<T>(
        &self,
        table: &mut LeaseTable,
        f: impl FnOnce(&mut LeaseTable) -> T,
    ) -> (T, Vec<V4Undo>) {
        if self.journal.is_none() {
            return (f(table), Vec::new());
        }
        table.record_v4_undo();
        let out = f(table);
        (out, table.take_v4_undo())
    }
}

/// Receives datagrams on this shard's socket and routes each to its client's shard.
pub(super) async fn recv_loop(ctx: Rc<ShardCtx>, shell: Rc<AuthShell>) {
    let mut buf = vec![0u8; RECV_BUF];
    let shards = ctx.shared.shards;
    loop {
        let (n, src) = match shell.socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!(shard = ctx.id, "dhcp4o6 receive failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let datagram = &buf[..n];
        if datagram.first() == Some(&crate::proto::codes::v6msg::LEASEQUERY) {
            // Leasequery over UDP: bulk query types get NotAllowed (RFC 5460 §4).
            let reply = crate::session::udp_leasequery(datagram, &ctx.shared.identity, unix_now());
            match reply {
                Some(r) => {
                    let _ = shell.socket.send_to(&r, src).await;
                }
                None => {
                    ctx.stats()
                        .dhcp4o6_dropped_unparsed
                        .fetch_add(1, Ordering::Relaxed);
                    ctx.drops.note(drops::UNPARSED, src);
                }
            }
            continue;
        }
        match authority::client_shard(datagram, shards) {
            None => {
                ctx.stats()
                    .dhcp4o6_dropped_unparsed
                    .fetch_add(1, Ordering::Relaxed);
                ctx.drops.note(drops::UNPARSED, src);
            }
            Some(s) if s == ctx.id => spawn_handle(&ctx, &shell, datagram.to_vec(), src),
            Some(s) => {
                ctx.stats()
                    .dhcp4o6_forwarded
                    .fetch_add(1, Ordering::Relaxed);
                ctx.post(
                    s,
                    Mail::Dhcp4o6 {
                        datagram: datagram.to_vec(),
                        src,
                    },
                )
                .await;
            }
        }
    }
}

/// Starts handling one datagram of a client this shard owns, received here or forwarded by
/// another shard. At most `MAX_IN_FLIGHT` handlings wait for their journal commit at once; past
/// that the datagram is dropped and counted (the client retransmits), so neither path can queue
/// without bound.
pub(super) fn spawn_handle(
    ctx: &Rc<ShardCtx>,
    shell: &Rc<AuthShell>,
    datagram: Vec<u8>,
    src: SocketAddr,
) {
    let Ok(permit) = shell.in_flight.try_acquire_static_permit(1) else {
        ctx.stats()
            .dhcp4o6_dropped_busy
            .fetch_add(1, Ordering::Relaxed);
        ctx.drops.note(drops::BUSY, src);
        return;
    };
    let (ctx, shell) = (ctx.clone(), shell.clone());
    let received = std::time::Instant::now();
    glommio::spawn_local(async move {
        handle(&ctx, &shell, &datagram, src, received).await;
        drop(permit);
    })
    .detach();
}

/// Runs the authority on one datagram; makes its changes durable, publishes them, replies.
async fn handle(
    ctx: &Rc<ShardCtx>,
    shell: &Rc<AuthShell>,
    datagram: &[u8],
    src: SocketAddr,
    received: std::time::Instant,
) {
    let IpAddr::V6(src_ip) = src.ip() else {
        ctx.stats()
            .dhcp4o6_dropped_unparsed
            .fetch_add(1, Ordering::Relaxed);
        ctx.drops.note(drops::UNPARSED, src);
        return;
    };
    if shell.failed.get() {
        ctx.stats()
            .dhcp4o6_dropped_journal_failed
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    let before = shell.authority.borrow().counters().drops();
    let (mut out, mut undo) = {
        let mut table = ctx.table.borrow_mut();
        shell.run(&mut table, |t| {
            shell
                .authority
                .borrow_mut()
                .handle(t, datagram, src_ip, unix_now())
        })
    };
    note_drops(ctx, shell, &before, src);
    if let Some(claim) = out.needs_claim.take() {
        // RFC 8539 §8.2 across shards: the source's owner decides, then the datagram is
        // handled again with the answer (it asks no second claim).
        let granted = claim_at_owners(ctx, std::slice::from_ref(&claim)).await;
        let answer = authority::ClaimAnswer {
            claim,
            granted: granted.first().copied().unwrap_or(false),
        };
        if shell.failed.get() {
            // The journal failed while the claim was asked.
            ctx.stats()
                .dhcp4o6_dropped_journal_failed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = shell.authority.borrow().counters().drops();
        let (again, more) = {
            let mut table = ctx.table.borrow_mut();
            shell.run(&mut table, |t| {
                shell.authority.borrow_mut().handle_claimed(
                    t,
                    datagram,
                    src_ip,
                    unix_now(),
                    Some(answer),
                )
            })
        };
        note_drops(ctx, shell, &before, src);
        out = again;
        // (The first handling stops before it changes the table; kept in order all the same.)
        undo.extend(more);
        if let Some(c) = out.needs_claim.take() {
            // Not expected: the answer covers the one claim a datagram makes. Dropped (the
            // client retransmits).
            debug!(?c, "dhcp4o6: a second softwire claim for one datagram");
            return;
        }
    }
    let durable = make_durable_then_publish(ctx, shell, &out.changes, undo).await;
    if !durable {
        // Not durable: the changes were undone, no acknowledgement leaves and the claims it
        // freed stay held (the leases that hold them are back in the table).
        return;
    }
    count_new_leases(ctx, &out.changes);
    free_at_owners(ctx, std::mem::take(&mut out.frees)).await;
    if let Some(reply) = out.reply {
        match shell.socket.send_to(&reply, src).await {
            Ok(_) => {
                ctx.stats().dhcp4o6_replies.fetch_add(1, Ordering::Relaxed);
                ctx.metrics().dhcp4o6_handling.observe(received.elapsed());
            }
            Err(e) => debug!(%src, "dhcp4o6 send failed: {e}"),
        }
    }
    #[cfg(feature = "fault-injection")]
    fault::maybe_lose(ctx, &out.changes);
}

/// Logs (rate-limited) the reasons the authority counted a drop under since `before` (its
/// `drop_*` counters before one handling; no await between the two reads).
fn note_drops(ctx: &ShardCtx, shell: &AuthShell, before: &[(&'static str, u64)], src: SocketAddr) {
    let after = shell.authority.borrow().counters().drops();
    for (b, a) in before.iter().zip(after.iter()) {
        if a.1 > b.1 {
            if let Some(reason) = drops::authority_reason(a.0) {
                ctx.drops.note(reason, src);
            }
        }
    }
}

/// Counts the durable new leases of `changes` per authority subnet (Kea's
/// cumulative-assigned-addresses).
fn count_new_leases(ctx: &ShardCtx, changes: &[Change]) {
    let Some(auth) = &ctx.shared.authority else {
        return;
    };
    for c in changes {
        if let Change::V4 {
            kind: crate::lease::ChangeKind::New,
            binding,
            ..
        } = c
        {
            if let Some(g) = auth
                .subnets
                .iter()
                .position(|s| s.contains(binding.addr))
                .and_then(|i| ctx.metrics().subnets.get(i))
            {
                g.cumulative_assigned.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Test-only fault switch (cargo feature `fault-injection`): see Cargo.toml.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::ShardCtx;
    use crate::lease::{Change, ChangeKind};

    /// New leases over every shard, so "every Nth" holds process-wide.
    static ACKED: AtomicU64 = AtomicU64::new(0);
    /// New leases seen by [`unpublished`], process-wide.
    static PUBLISHED: AtomicU64 = AtomicU64::new(0);

    fn every(var: &str) -> Option<u64> {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
    }

    /// `LEASEQUERYD_FAULT_UNPUBLISHED_EVERY=N`: every Nth new lease is committed and
    /// acknowledged but never published to active leasequery (its update is lost).
    pub(super) fn unpublished(changes: &[Change]) -> Vec<Change> {
        let Some(every) = every("LEASEQUERYD_FAULT_UNPUBLISHED_EVERY") else {
            return changes.to_vec();
        };
        changes
            .iter()
            .filter(|c| {
                if !matches!(
                    c,
                    Change::V4 {
                        kind: ChangeKind::New,
                        ..
                    }
                ) {
                    return true;
                }
                let n = PUBLISHED.fetch_add(1, Ordering::Relaxed) + 1;
                if n % every == 0 {
                    tracing::warn!("fault injection: update not published");
                    return false;
                }
                true
            })
            .cloned()
            .collect()
    }

    pub(super) fn maybe_lose(ctx: &Rc<ShardCtx>, changes: &[Change]) {
        let Some(every) = every("LEASEQUERYD_FAULT_LOSE_EVERY") else {
            return;
        };
        for c in changes {
            if let Change::V4 {
                kind: ChangeKind::New,
                binding,
                ..
            } = c
            {
                let n = ACKED.fetch_add(1, Ordering::Relaxed) + 1;
                if n % every == 0 {
                    ctx.table
                        .borrow_mut()
                        .remove_v4(binding.addr, binding.port_params);
                    tracing::warn!(addr = %binding.addr, "fault injection: binding dropped");
                }
            }
        }
    }
}

/// Longest wait for an owner shard's answer to a softwire claim.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Claims softwire sources at their owner shards (the local ones by a direct call); one answer
/// per claim, in order. A claim whose owner cannot be reached (shutdown) is refused.
pub(super) async fn claim_at_owners(
    ctx: &Rc<ShardCtx>,
    claims: &[authority::SoftwireClaim],
) -> Vec<bool> {
    let shards = ctx.shared.shards;
    let mut granted = vec![false; claims.len()];
    let Some(shell) = &ctx.auth else {
        return granted;
    };
    for owner in 0..shards {
        let idx: Vec<usize> = (0..claims.len())
            .filter(|&i| claims[i].owner(shards) == owner)
            .collect();
        if idx.is_empty() {
            continue;
        }
        if owner == ctx.id {
            let mut a = shell.authority.borrow_mut();
            for &i in &idx {
                granted[i] = a.claim_softwire(&claims[i]);
            }
            continue;
        }
        let id = ctx.next_claim.get();
        ctx.next_claim.set(id + 1);
        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
        ctx.claims_pending.borrow_mut().insert(id, tx);
        let mail = Mail::SoftwireClaim {
            from: ctx.id as u32,
            id,
            claims: idx.iter().map(|&i| claims[i].clone()).collect(),
        };
        if ctx.senders.send_to(owner, mail).await.is_err() {
            ctx.claims_pending.borrow_mut().remove(&id);
            ctx.stats().mesh_send_failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // The owner answers within a turn of its executor; a shard that does not answer within
        // CLAIM_WAIT (stopping, or stalled) counts as a refusal, so no handler waits forever.
        let answer = futures_lite::future::or(async { rx.recv().await }, async {
            glommio::timer::sleep(CLAIM_WAIT).await;
            None
        })
        .await;
        match answer {
            Some(answers) => {
                for (&i, g) in idx.iter().zip(answers) {
                    granted[i] = g;
                }
            }
            None => {
                ctx.claims_pending.borrow_mut().remove(&id);
                ctx.stats().mesh_send_failed.fetch_add(1, Ordering::Relaxed);
                // Should the owner still grant them, the frees (same sequence numbers) undo it.
                let frees = idx.iter().map(|&i| claims[i].clone()).collect();
                free_at_owners(ctx, frees).await;
            }
        }
    }
    granted
}

/// Frees softwire claims at their owner shards (the authority has freed the local ones).
async fn free_at_owners(ctx: &Rc<ShardCtx>, frees: Vec<authority::SoftwireClaim>) {
    if frees.is_empty() {
        return;
    }
    let shards = ctx.shared.shards;
    let mut by_owner: Vec<Vec<authority::SoftwireClaim>> = vec![Vec::new(); shards];
    for c in frees {
        let o = c.owner(shards);
        by_owner[o].push(c);
    }
    for (owner, claims) in by_owner.into_iter().enumerate() {
        if !claims.is_empty() {
            ctx.post(owner, Mail::SoftwireFree { claims }).await;
        }
    }
}

impl AuthShell {
    /// The journal failed: every table change not yet durable is undone (newest first) and the
    /// authority of this shard stops.
    fn journal_failed(&self, ctx: &ShardCtx, what: &str, e: &crate::store::StoreError) {
        ctx.stats().journal_failures.fetch_add(1, Ordering::Relaxed);
        let undo: Vec<V4Undo> = self.undo.borrow_mut().drain(..).map(|(_, u)| u).collect();
        let n = undo.len();
        ctx.table.borrow_mut().undo_v4(undo);
        if !self.failed.replace(true) {
            error!(
                shard = ctx.id,
                undone = n,
                "journal {what} failed: {e}; the changes not yet durable were undone and this \
                 shard's DHCP4o6 authority stops until a restart"
            );
        }
    }
}

/// Journals `changes` (whose table changes replaced `undo`) and waits until they are durable
/// (when there is a journal), then publishes them to active leasequery. False when the journal
/// failed: then every table change not yet durable has been undone and nothing was published.
async fn make_durable_then_publish(
    ctx: &Rc<ShardCtx>,
    shell: &AuthShell,
    changes: &[Change],
    undo: Vec<V4Undo>,
) -> bool {
    if let Some(j) = &shell.journal {
        // No await between the table changes and these appends: the undo log is in the order
        // the changes were made.
        let mut last = None;
        let mut failure = None;
        for c in changes {
            match j.append(c) {
                Ok(seq) => last = Some(seq),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        {
            let tag = last.unwrap_or_else(|| j.last_seq());
            let mut log = shell.undo.borrow_mut();
            log.extend(undo.into_iter().map(|u| (tag, u)));
        }
        if let Some(e) = failure {
            shell.journal_failed(ctx, "append", &e);
            return false;
        }
        if let Some(seq) = last {
            if let Err(e) = j.wait_durable(seq).await {
                shell.journal_failed(ctx, "commit", &e);
                return false;
            }
        }
        // Durable: forget what the durable changes replaced.
        let durable = j.durable_seq();
        let mut log = shell.undo.borrow_mut();
        while log.front().is_some_and(|(seq, _)| *seq <= durable) {
            log.pop_front();
        }
    }
    if changes.is_empty() {
        return true;
    }
    #[cfg(feature = "fault-injection")]
    let changes = &fault::unpublished(changes)[..];
    ctx.publish(changes);
    true
}

/// Expiry (every second, or sooner when the authority asks) and journal compaction.
pub(super) async fn timer_loop(ctx: Rc<ShardCtx>, shell: Rc<AuthShell>) {
    let compact_at = ctx.shared.config.journal_compact_bytes;
    loop {
        // Timers have one-second resolution (lease times are whole seconds).
        glommio::timer::sleep(Duration::from_secs(1)).await;
        if shell.failed.get() {
            continue;
        }
        let (changes, undo) = {
            let mut table = ctx.table.borrow_mut();
            shell.run(&mut table, |t| {
                shell.authority.borrow_mut().expire(t, unix_now())
            })
        };
        if !make_durable_then_publish(&ctx, &shell, &changes, undo).await {
            continue;
        }
        let frees = shell.authority.borrow_mut().take_softwire_frees();
        free_at_owners(&ctx, frees).await;
        if let Some(j) = &shell.journal {
            if j.journal_bytes() > compact_at && !j.snapshot_in_progress() {
                snapshot(&ctx, j);
            }
        }
    }
}

/// Starts a snapshot of this shard's table (the cut is taken now, with no await in between).
/// Put off while fed changes are journaled but not yet applied (the cut would miss them).
pub(super) fn snapshot(ctx: &Rc<ShardCtx>, j: &Journal) {
    if ctx.feed.unapplied() {
        return;
    }
    let (v4, v6) = {
        let table = ctx.table.borrow();
        let mut v4 = Vec::with_capacity(table.len_v4());
        let q = V4Query::all();
        let mut cur = table.start_v4(&q);
        while table.scan_v4(&q, &mut cur, usize::MAX, |r| {
            v4.push(V4Binding::from_record(&r));
            true
        }) != ScanStep::Done
        {}
        let mut v6 = Vec::with_capacity(table.len_v6());
        let q = V6Query::all();
        let mut cur = table.start_v6(&q);
        while table.scan_v6(&q, &mut cur, usize::MAX, |r| {
            v6.push(V6Binding::from_record(&r));
            true
        }) != ScanStep::Done
        {}
        (v4, v6)
    };
    let fut = j.snapshot(v4, v6);
    let id = ctx.id;
    glommio::spawn_local(async move {
        match fut.await {
            Ok(info) => debug!(shard = id, ?info, "snapshot written"),
            Err(e) => error!(shard = id, "snapshot failed: {e}"),
        }
    })
    .detach();
}
