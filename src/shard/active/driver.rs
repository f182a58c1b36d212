//! The driver of one subscription ([`run`], see the module docs of `shard::active`): the
//! opening message, catch-up, the write loop with its send timeout and keepalives, and the
//! last message when it ends.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver};
use hashbrown::HashMap;
use tracing::debug;

use super::sub::{grant_owed, Sub, SubEnd};
use crate::session::active::{ActivePlan, Backlog, BacklogLimits};
use crate::shard::io::ConnIo;
use crate::shard::mail::{ActiveMail, Mail};
use crate::shard::{unix_now, ShardCtx};

/// Runs one active query on its connection's shard until it ends (see the module docs).
pub(in crate::shard) async fn run(ctx: Rc<ShardCtx>, plan: Arc<ActivePlan>, io: ConnIo) {
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
            buf.reserve(items.iter().map(|q| q.e.bytes.len()).sum());
            let mut updates = 0u64;
            let mut published = Vec::new();
            for q in &items {
                q.e.append_to(&mut buf, v6x, v4x);
                updates += u64::from(q.e.at.v6_xid_at.is_some() || q.e.at.v4_xid_at.is_some());
                published.extend(q.published);
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
                    let h = &ctx.metrics().active_update_latency;
                    for t in published {
                        h.observe(t.elapsed());
                    }
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
        SubEnd::Shutdown => &st.active_terminated_shutdown,
        SubEnd::PeerGone => &st.active_ended_peer,
        SubEnd::SendTimeout => &st.active_terminated_send_timeout,
        SubEnd::Backlog => &st.active_terminated_backlog,
        SubEnd::Fanout => &st.active_terminated_fanout,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    debug!(shard = ctx.id, ?end, "active query ended");
    match end {
        // RFC 7653 §8.4, RFC 7724 §7.4: QueryTerminated with base-time is the last message, then
        // close. It waits behind what is queued; a requestor that does not read gets it cut off
        // (bounded by the send timeout and half the shutdown deadline).
        SubEnd::Shutdown | SubEnd::Backlog | SubEnd::Fanout => {
            let (text, limit) = match end {
                SubEnd::Shutdown => (
                    "server shutting down",
                    send_timeout.min(Duration::from_millis(
                        cfg.shutdown_deadline.saturating_mul(500),
                    )),
                ),
                SubEnd::Backlog => ("subscriber too slow: backlog over its bound", send_timeout),
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
            if end != SubEnd::Shutdown || written.is_err() {
                io.dead.break_now();
            }
        }
        SubEnd::SendTimeout | SubEnd::PeerGone => io.dead.break_now(),
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
    End(SubEnd),
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
async fn wait_end(ctx: &ShardCtx, io: &ConnIo) -> SubEnd {
    let stop = async {
        let _ = ctx.shutdown.acquire(1).await;
        SubEnd::Shutdown
    };
    let dead = async {
        let _ = io.dead.dead.acquire(1).await;
        SubEnd::PeerGone
    };
    let reader = async {
        let _ = io.reader_done.acquire(1).await;
        // The reader also stops on shutdown: tell the two apart.
        if ctx.shutdown.try_acquire(1).is_err() {
            SubEnd::Shutdown
        } else {
            SubEnd::PeerGone
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
) -> Result<Vec<u8>, SubEnd> {
    let got = async {
        match credits.recv().await {
            Some(Mail::Credit { buf, .. }) => Ok(buf),
            _ => Err(SubEnd::PeerGone),
        }
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        Err(SubEnd::SendTimeout)
    };
    let dead = async {
        let _ = io.dead.dead.acquire(1).await;
        Err(SubEnd::PeerGone)
    };
    let stop = async {
        if watch_stop {
            let _ = ctx.shutdown.acquire(1).await;
            Err(SubEnd::Shutdown)
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
