//! The scanner side of a bulk query: walks this shard's bindings with a resume cursor, encodes
//! matching records into the buffers the connection's shard lends it (credits), and sends them
//! back as chunks. No table borrow is held across an `.await`; each turn has a record budget.

use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::channels::local_channel;

use super::mail::{Mail, QueryKey};
use super::ShardCtx;
use crate::lease::{shard_of_addr, ScanCursor, ScanStep, V4Select};
use crate::proto::record::V4Record;
use crate::session::{Encoded, Record, ScanPlan, ScanTarget};

enum Cursor {
    V4(ScanCursor),
    V6(ScanCursor),
}

/// Records examined per turn before the scanner yields to other tasks.
const RECORDS_PER_TURN: usize = 512;

/// The second phase of a DHCPv4 query for all configured addresses (RFC 6926 §6.2 with no
/// primary query): after this shard's bindings, the authority's pool addresses this shard owns
/// that have no binding at all, each as DHCPLEASEUNASSIGNED with dhcp-state AVAILABLE. Addresses
/// with a binding (any PSID, any state) were listed by the first phase, so each address is
/// listed once. Not for a query with a time window: a never-leased address has no time.
struct Pools {
    /// Pool ranges (first, last), inclusive.
    ranges: Vec<(u32, u32)>,
    /// Per range, a bit per address: listed by the first phase.
    seen: Vec<Vec<u64>>,
    /// Next (range, address) of the second phase.
    next: (usize, u64),
}

impl Pools {
    fn for_plan(ctx: &ShardCtx, plan: &ScanPlan) -> Option<Pools> {
        let ScanTarget::V4(q) = &plan.target else {
            return None;
        };
        let all = q.select == V4Select::All
            && q.changed_since.is_none()
            && q.changed_until.is_none()
            && !q.only_4o6;
        let cfg = ctx.shared.authority.as_ref().filter(|_| all)?;
        let ranges: Vec<(u32, u32)> = cfg
            .subnets
            .iter()
            .map(|s| (u32::from(s.first), u32::from(s.last)))
            .collect();
        let seen = ranges
            .iter()
            .map(|(a, b)| vec![0u64; (u64::from(b - a) / 64 + 1) as usize])
            .collect();
        let first = ranges.first().map_or(0, |r| u64::from(r.0));
        Some(Pools {
            ranges,
            seen,
            next: (0, first),
        })
    }

    /// Notes an address the first phase listed (pools never overlap: the authority's config
    /// validation refuses it).
    fn mark(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        if let Some(i) = self.ranges.iter().position(|(f, l)| (*f..=*l).contains(&a)) {
            let bit = (a - self.ranges[i].0) as usize;
            self.seen[i][bit / 64] |= 1 << (bit % 64);
        }
    }

    fn listed(&self, range: usize, a: u32) -> bool {
        let bit = (a - self.ranges[range].0) as usize;
        self.seen[range][bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Emits up to `budget` examined addresses; `emit` false: no room, offered again next time.
    fn step(
        &mut self,
        shard: usize,
        shards: usize,
        budget: usize,
        mut emit: impl FnMut(V4Record<'_>) -> bool,
    ) -> ScanStep {
        let mut examined = 0;
        while let Some(&(first, last)) = self.ranges.get(self.next.0) {
            let (range, mut a) = self.next;
            a = a.max(u64::from(first));
            while a <= u64::from(last) {
                if examined == budget {
                    self.next = (range, a);
                    return ScanStep::More;
                }
                examined += 1;
                let addr = a as u32;
                if shard_of_addr(Ipv4Addr::from(addr), shards) == shard && !self.listed(range, addr)
                {
                    let rec = V4Record::available(Ipv4Addr::from(addr));
                    if !emit(rec) {
                        self.next = (range, a);
                        return ScanStep::More;
                    }
                }
                a += 1;
            }
            self.next = (range + 1, 0);
        }
        ScanStep::Done
    }
}

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
    let mut pools = Pools::for_plan(ctx, plan);
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
