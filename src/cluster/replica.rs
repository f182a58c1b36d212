//! The replica's follower thread (issue 18 part 2): its own current-thread tokio runtime and an
//! async-nats ordered consumer on the stream, from the last message of every subject
//! (`DeliverPolicy::LastPerSubject`: the current state) on, then following. Every payload is
//! decoded ([`contract::decode_payload`], untrusted) and checked against its subject; per
//! subject only a `seq` above the highest applied one passes (nothing is applied twice, nothing
//! older replaces newer), and what passes goes to shard 0 over a bounded channel, which routes
//! it to the owning shards (`shard::active::feed`). When the consumer fails (NATS lost) it is
//! made again after the newest stream message taken ([`resume_policy`]); the `seq` check drops
//! anything applied already.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use futures_lite::StreamExt;
use tracing::{info, warn};

use super::contract::{self, Message};
use super::ClusterConfig;

/// The replica's counters.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Changes applied (handed to the shards).
    pub applied: AtomicU64,
    /// Messages dropped because their `seq` was not above the binding's applied one.
    pub stale: AtomicU64,
    /// Messages that did not decode or did not match their subject (logged, skipped).
    pub bad: AtomicU64,
    /// The newest applied change's `changed` (Unix seconds; 0 before the first).
    pub newest_changed: AtomicU64,
    /// Seconds from the newest applied change to now when the last message came (the lag).
    pub lag_seconds: AtomicU64,
    /// Consumers made again after a failure.
    pub resubscribes: AtomicU64,
    /// 1 once the state that was on the stream when the replica subscribed is applied.
    pub loaded: AtomicU64,
}

impl ReplicaStats {
    /// The counters as `name=value` pairs (the log line).
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "applied={} stale={} bad={} newest_changed={} lag_seconds={} resubscribes={} loaded={}",
            g(&self.applied),
            g(&self.stale),
            g(&self.bad),
            g(&self.newest_changed),
            g(&self.lag_seconds),
            g(&self.resubscribes),
            g(&self.loaded)
        )
    }
}

/// Batches of changes in stream order, from the follower thread to shard 0.
pub type Batch = Vec<Message>;

/// A running follower.
#[derive(Debug)]
pub struct ReplicaHandle {
    /// Taken by shard 0.
    pub rx: Mutex<Option<Receiver<Batch>>>,
    /// The counters.
    pub stats: Arc<ReplicaStats>,
    stop: Arc<AtomicBool>,
}

impl ReplicaHandle {
    /// Stops the thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Most batches waiting for shard 0 (then the follower waits: the replica falls behind and its
/// lag shows it, the shards never block).
const QUEUE: usize = 1024;
/// Most changes per batch.
const BATCH: usize = 512;

/// Starts the follower thread.
pub fn start(cfg: &ClusterConfig) -> Result<ReplicaHandle, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let stats = Arc::new(ReplicaStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (cfg2, stats2, stop2) = (cfg.clone(), stats.clone(), stop.clone());
    info!(nats_url = %cfg.nats_url, stream = %cfg.stream, "cluster: replica following the stream");
    std::thread::Builder::new()
        .name("cluster-replica".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("cluster: no runtime for the replica: {e}");
                    return;
                }
            };
            rt.block_on(follow(cfg2, tx, stats2, stop2));
        })
        .map_err(|e| format!("cluster: cannot start the replica thread: {e}"))?;
    Ok(ReplicaHandle {
        rx: Mutex::new(Some(rx)),
        stats,
        stop,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts and logs messages skipped because they are not this contract's (they do not decode,
/// or do not match their subject): logged for the first 10, then every 1000th. The replica and
/// the publisher's reconcile read both use it.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    logged: u64,
}

impl Skipped {
    /// Counts one skipped message in `counter` and logs it (rate-limited).
    pub(crate) fn skip(&mut self, counter: &AtomicU64, subject: &str, why: &dyn std::fmt::Display) {
        counter.fetch_add(1, Ordering::Relaxed);
        if self.logged < 10 || self.logged % 1000 == 0 {
            warn!(subject, "cluster: message skipped: {why}");
        }
        self.logged += 1;
    }
}

struct Applier {
    prefix: String,
    seqs: HashMap<String, u64>,
    stats: Arc<ReplicaStats>,
    skipped: Skipped,
}

impl Applier {
    /// The decoded message when it is valid and newer than what was applied for its subject.
    fn accept(&mut self, subject: &str, payload: &[u8]) -> Option<Message> {
        let m = match contract::decode_on_subject(&self.prefix, subject, payload) {
            Ok(m) => m,
            Err(e) => {
                self.skipped.skip(&self.stats.bad, subject, &e);
                return None;
            }
        };
        match self.seqs.get_mut(subject) {
            Some(s) if *s >= m.seq => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(s) => *s = m.seq,
            None => {
                self.seqs.insert(subject.to_string(), m.seq);
            }
        }
        Some(m)
    }
}

/// Where a consumer starts. The first one, and one made after the stream went back (deleted
/// and made again: its last sequence is below what was taken), reads the last message of every
/// subject: the current state. One made again after a failure goes on after the newest message
/// taken: every message still on the stream after it (a change superseded meanwhile under
/// `max_msgs_per_subject = 1` is gone, its successor comes), without reading the whole state
/// again (on a large table that would be every binding, each then dropped as stale).
fn resume_policy(taken: u64, stream_last: u64) -> jetstream::consumer::DeliverPolicy {
    use jetstream::consumer::DeliverPolicy;
    if taken == 0 || stream_last < taken {
        DeliverPolicy::LastPerSubject
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: taken + 1,
        }
    }
}

async fn send(tx: &SyncSender<Batch>, mut batch: Batch, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(batch) {
            Ok(()) => return true,
            Err(TrySendError::Full(b)) => {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                batch = b;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

async fn follow(
    cfg: ClusterConfig,
    tx: SyncSender<Batch>,
    stats: Arc<ReplicaStats>,
    stop: Arc<AtomicBool>,
) {
    let client = match super::publisher::connect(&cfg, None).await {
        Ok(c) => c,
        Err(e) => {
            warn!("{e}; the replica follows nothing");
            return;
        }
    };
    let js = jetstream::new(client);
    let mut applier = Applier {
        prefix: cfg.subject_prefix.clone(),
        seqs: HashMap::new(),
        stats: stats.clone(),
        skipped: Skipped::default(),
    };
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    // The stream sequence of the newest message taken (0: none yet).
    let mut taken = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if !first {
            stats.resubscribes.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        first = false;
        let mut stream = match js.get_stream(&cfg.stream).await {
            Ok(s) => s,
            Err(e) => {
                warn!(stream = %cfg.stream, "cluster: stream not available: {e}; retrying");
                continue;
            }
        };
        // What is on the stream now: the state is loaded once that much is applied.
        let target = match stream.info().await {
            Ok(i) => i.state.last_sequence,
            Err(_) => 0,
        };
        let deliver_policy = resume_policy(taken, target);
        let consumer = match stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: format!("{}.>", cfg.subject_prefix),
                deliver_policy,
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(e) => {
                warn!("cluster: cannot subscribe to the stream: {e}; retrying");
                continue;
            }
        };
        let mut msgs = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                warn!("cluster: cannot read the stream: {e}; retrying");
                continue;
            }
        };
        if target == 0 {
            stats.loaded.store(1, Ordering::Relaxed);
        }
        let mut batch: Batch = Vec::new();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            // Take what is there without waiting while a batch is open; wait (bounded) when
            // the batch is empty.
            let next = if batch.is_empty() {
                match tokio::time::timeout(Duration::from_millis(500), msgs.next()).await {
                    Ok(n) => n,
                    Err(_) => continue,
                }
            } else {
                match tokio::time::timeout(Duration::from_millis(1), msgs.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let b = std::mem::take(&mut batch);
                        if !send(&tx, b, &stop).await {
                            return;
                        }
                        continue;
                    }
                }
            };
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    warn!("cluster: the stream consumer failed: {e}; subscribing again");
                    break;
                }
                None => break,
            };
            backoff = Duration::from_millis(100);
            let stream_seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            taken = taken.max(stream_seq);
            if let Some(c) = applier.accept(m.subject.as_str(), &m.payload) {
                stats
                    .newest_changed
                    .fetch_max(u64::from(c.changed), Ordering::Relaxed);
                stats.lag_seconds.store(
                    now().saturating_sub(stats.newest_changed.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                stats.applied.fetch_add(1, Ordering::Relaxed);
                batch.push(c);
            }
            if stream_seq >= target {
                stats.loaded.store(1, Ordering::Relaxed);
            }
            if batch.len() >= BATCH {
                let b = std::mem::take(&mut batch);
                if !send(&tx, b, &stop).await {
                    return;
                }
            }
        }
        if !batch.is_empty() && !send(&tx, std::mem::take(&mut batch), &stop).await {
            return;
        }
    }
}
