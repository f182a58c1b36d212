//! A shard's publisher for `/metrics`: what lives in the shard's own (non-`Send`) state is
//! copied into its [`ShardMetrics`](crate::metrics::ShardMetrics) atomics here, so a scrape
//! only reads atomics. Counters (authority, journal) and backlogs every [`PUBLISH_EVERY`]; the
//! binding and per-subnet counts every [`COUNT_EVERY`] ticks, by a scan of the shard's table in
//! slices of [`COUNT_SLICE`] records with a yield between slices.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ShardCtx;
use crate::lease::{ScanStep, V4Query};
use crate::metrics::{binding_class_v4, BINDING_CLASSES};
use crate::proto::codes::dhcp_state;

/// How often counters and backlogs are copied.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Binding counts are refreshed every this many publications.
const COUNT_EVERY: u32 = 5;
/// Records counted per slice before the task yields.
const COUNT_SLICE: usize = 4096;

/// Copies the shard-local counters into the atomics (also called once at shutdown).
pub(super) fn publish_counters(ctx: &ShardCtx) {
    let m = ctx.metrics();
    if let Some(shell) = &ctx.auth {
        m.publish_authority(shell.authority.borrow().counters());
    }
    if let Some(j) = &ctx.journal {
        m.publish_journal(&j.stats());
    }
    let (bindings, bytes) = ctx.hub.backlog_max();
    m.backlog_bindings_max
        .store(bindings as u64, Ordering::Relaxed);
    m.backlog_bytes_max.store(bytes as u64, Ordering::Relaxed);
}

/// Counts the shard's bindings by family and state, and the authority subnets' assigned and
/// declined units, then publishes them.
async fn count_bindings(ctx: &ShardCtx) {
    let subnets = ctx
        .shared
        .authority
        .as_ref()
        .map(|a| a.subnets.clone())
        .unwrap_or_default();
    let mut classes = [0u64; BINDING_CLASSES.len()];
    // Per subnet: assigned addresses, declined addresses, assigned port sets.
    let mut per = vec![(0u64, 0u64, 0u64); subnets.len()];
    let mut shared_addrs: Vec<HashSet<u32>> = vec![HashSet::new(); subnets.len()];
    let q = V4Query::all();
    let mut cur = ctx.table.borrow().start_v4(&q);
    loop {
        let step = ctx.table.borrow().scan_v4(&q, &mut cur, COUNT_SLICE, |r| {
            if let Some(c) = classes.get_mut(binding_class_v4(r.v6.is_some(), r.state)) {
                *c += 1;
            }
            if let Some(i) = subnets.iter().position(|s| s.contains(r.addr)) {
                if let (Some(p), Some(set)) = (per.get_mut(i), shared_addrs.get_mut(i)) {
                    match (r.state, r.port_params) {
                        (dhcp_state::ACTIVE, Some(_)) => {
                            p.2 += 1;
                            set.insert(u32::from(r.addr));
                        }
                        (dhcp_state::ACTIVE, None) => p.0 += 1,
                        (dhcp_state::ABANDONED, _) => p.1 += 1,
                        _ => {}
                    }
                }
            }
            true
        });
        if step == ScanStep::Done {
            break;
        }
        glommio::yield_if_needed().await;
    }
    classes[0] = ctx.table.borrow().len_v6() as u64;
    let m = ctx.metrics();
    for (a, v) in m.bindings.iter().zip(classes) {
        a.store(v, Ordering::Relaxed);
    }
    for ((g, (assigned, declined, port_sets)), set) in m.subnets.iter().zip(per).zip(shared_addrs) {
        g.assigned_addresses
            .store(assigned + set.len() as u64, Ordering::Relaxed);
        g.declined_addresses.store(declined, Ordering::Relaxed);
        g.assigned_port_sets.store(port_sets, Ordering::Relaxed);
    }
}

/// The publisher task: runs until cancelled.
pub(super) async fn run(ctx: Rc<ShardCtx>) {
    let mut tick = 0u32;
    loop {
        publish_counters(&ctx);
        if tick % COUNT_EVERY == 0 {
            count_bindings(&ctx).await;
        }
        tick = tick.wrapping_add(1);
        glommio::timer::sleep(PUBLISH_EVERY).await;
    }
}
