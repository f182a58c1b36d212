//! The scanner side of a bulk query: walks this shard's bindings with a resume cursor, encodes
//! matching records into the buffers the connection's shard lends it (credits), and sends them
//! back as chunks. No table borrow is held across an `.await`; each turn has a record budget.
//! A query for all configured addresses then lists the pool addresses with no binding
//! ([`crate::session::pools`]).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel;

use super::mail::{Mail, QueryKey};
use super::ShardCtx;
use crate::lease::{ScanCursor, ScanStep};
use crate::session::pools::Pools;
use crate::session::{Encoded, Record, ScanPlan, ScanTarget};

enum Cursor {
    V4(ScanCursor),
    V6(ScanCursor),
}

/// Records examined per turn before the scanner yields to other tasks.
const RECORDS_PER_TURN: usize = 512;

/// Registers the scan and starts its task. Credits arriving before the task runs queue in its
/// channel (their number is bounded by `credits_per_shard`).
pub(super) fn start(ctx: Rc<ShardCtx>, key: QueryKey, plan: Arc<ScanPlan>) {
    let (tx, rx) = local_channel::new_unbounded::<Mail>();
    ctx.scans.borrow_mut().insert(key, tx);
    glommio::spawn_local(async move {
        run(&ctx, key, &plan, rx).await;
        ctx.scans.borrow_mut().remove(&key);
    })
    .detach();
}

async fn run(
    ctx: &Rc<ShardCtx>,
    key: QueryKey,
    plan: &ScanPlan,
    rx: local_channel::LocalReceiver<Mail>,
) {
    let mut cursor = match &plan.target {
        ScanTarget::V4(q) => Cursor::V4(ctx.table.borrow().start_v4(q)),
        ScanTarget::V6(q) => Cursor::V6(ctx.table.borrow().start_v6(q)),
    };
    // The all-configured-addresses phase (RFC 6926 §6.2), over the authority's pools.
    let mut pools = ctx.shared.authority.as_ref().and_then(|cfg| {
        let ranges = cfg.subnets.iter().map(|s| (s.first, s.last));
        Pools::for_target(&plan.target, ranges)
    });
    let mut bindings_done = false;
    loop {
        let mut buf: Vec<u8> = match rx.recv().await {
            Some(Mail::Credit { buf, .. }) => buf,
            // Cancel, or the scan was removed (the sender dropped): stop.
            _ => return,
        };
        buf.clear();
        let limit = buf.capacity();
        let mut records = 0u32;
        let mut failed = false;
        let done = loop {
            let mut full = false;
            let mut too_long = 0u64;
            let finished = {
                let table = ctx.table.borrow();
                let enc = plan.encoder(super::unix_now());
                let mut emit = |rec: Record<'_>| match enc.encode(rec, &mut buf, limit) {
                    Encoded::Written => {
                        records += 1;
                        true
                    }
                    Encoded::NoRoom => {
                        full = true;
                        false
                    }
                    Encoded::TooLong => {
                        too_long += 1;
                        false
                    }
                };
                if !bindings_done {
                    let step = match (&plan.target, &mut cursor) {
                        (ScanTarget::V4(q), Cursor::V4(c)) => {
                            table.scan_v4(q, c, RECORDS_PER_TURN, |r| {
                                let addr = r.addr;
                                let ok = emit(Record::V4(r));
                                if ok {
                                    if let Some(p) = pools.as_mut() {
                                        p.mark(addr);
                                    }
                                }
                                ok
                            })
                        }
                        (ScanTarget::V6(q), Cursor::V6(c)) => {
                            table.scan_v6(q, c, RECORDS_PER_TURN, |r| emit(Record::V6(r)))
                        }
                        _ => unreachable!("the cursor is made from the same target"),
                    };
                    bindings_done = step == ScanStep::Done;
                }
                match pools.as_mut() {
                    Some(p) if bindings_done => {
                        p.step(ctx.id, ctx.shared.shards, RECORDS_PER_TURN, |r| {
                            emit(Record::V4(r))
                        }) == ScanStep::Done
                    }
                    Some(_) => false,
                    None => bindings_done,
                }
            };
            if too_long > 0 {
                ctx.stats()
                    .records_too_long
                    .fetch_add(too_long, Ordering::Relaxed);
            }
            if too_long > 0 {
                // Stop here: the origin ends the query with QueryTerminated.
                failed = true;
                break true;
            }
            if finished {
                break true;
            }
            if full {
                break false;
            }
            glommio::yield_if_needed().await;
            if !ctx.scans.borrow().contains_key(&key) {
                return;
            }
        };
        ctx.post(
            key.origin as usize,
            Mail::Chunk {
                key,
                from: ctx.id as u32,
                buf,
                records,
                done,
                failed,
            },
        )
        .await;
        if done {
            return;
        }
    }
}
