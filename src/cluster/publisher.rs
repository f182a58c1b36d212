//! The publisher thread (issue 18 part 1): its own current-thread tokio runtime and an
//! async-nats client, off the shards. Each shard's journal tells it (through a
//! [`DurableHook`]: an atomic store and a wake-up, never a wait) how far its records are
//! durable; the thread reads them from the journal ([`super::spool`]), publishes them to
//! JetStream with `Nats-Msg-Id`, and keeps the last acknowledged record per shard in
//! `DIR/cluster-published`. A NATS outage or a restart loses nothing: publishing resumes from
//! the journal after the cursor, and JetStream drops what it already had (the message id) inside
//! its duplicate window; consumers keep the highest `seq` per subject for the rest. Before a
//! shard's snapshot is published whole, the thread reconciles the shard with the stream
//! ([`Run::reconcile`], [`super::spool`]): what the stream holds and the snapshot lacks gets a
//! remove.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_lite::StreamExt;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::contract::{self, Op};
use super::replica::Skipped;
use super::spool::{Cursor, Naming, Removal, ShardSpool, MAX_REMOVES};
use super::ClusterConfig;
use crate::feed::import::FeedBinding;
use crate::lease::{shard_of_addr, shard_of_duid};
use crate::store::DurableHook;

/// The publisher's counters (atomics, for the metrics endpoint and the `counters:` log line).
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Messages sent to JetStream (a republish after an error counts again).
    pub published: AtomicU64,
    /// Messages JetStream acknowledged (duplicates included).
    pub acknowledged: AtomicU64,
    /// Acknowledgements that said "duplicate" (a republish JetStream already had).
    pub duplicates: AtomicU64,
    /// Durable journal records not acknowledged yet, over all shards.
    pub pending: AtomicU64,
    /// Milliseconds since the oldest durable record not yet acknowledged became durable (0 when
    /// everything is acknowledged).
    pub oldest_unacknowledged_ms: AtomicU64,
    /// Unix time (milliseconds) at which the publisher first saw the oldest record not yet
    /// acknowledged (0 when everything is acknowledged): the metrics endpoint computes the
    /// age at scrape time from it, so the age grows even while the publisher waits on NATS.
    pub oldest_unacknowledged_since_unix_ms: AtomicU64,
    /// Connections to NATS made after the first (reconnects).
    pub reconnects: AtomicU64,
    /// Publishes that failed or timed out (each rewinds to the cursor and retries).
    pub errors: AtomicU64,
    /// 1 while connected to NATS.
    pub connected: AtomicU64,
    /// Reads of the stream's last message per subject done to reconcile a republished
    /// snapshot (completed ones).
    pub reconciles: AtomicU64,
    /// Removes those reads found (bindings on the stream the snapshot lacks).
    pub reconcile_removes: AtomicU64,
    /// Messages those reads skipped: not this contract's payload, or not matching the subject.
    pub reconcile_bad: AtomicU64,
}

impl PublisherStats {
    /// The counters as `name=value` pairs (the log line).
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "published={} acknowledged={} duplicates={} pending={} oldest_unacknowledged_ms={} reconnects={} errors={} connected={} reconciles={} reconcile_removes={} reconcile_bad={}",
            g(&self.published),
            g(&self.acknowledged),
            g(&self.duplicates),
            g(&self.pending),
            g(&self.oldest_unacknowledged_ms),
            g(&self.reconnects),
            g(&self.errors),
            g(&self.connected),
            g(&self.reconciles),
            g(&self.reconcile_removes),
            g(&self.reconcile_bad)
        )
    }
}

/// A running publisher: the hooks the shards' journals call and the counters.
#[derive(Debug)]
pub struct PublisherHandle {
    hooks: Vec<HookCell>,
    /// The counters.
    pub stats: Arc<PublisherStats>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

struct HookCell(DurableHook);

impl std::fmt::Debug for HookCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurableHook")
    }
}

impl PublisherHandle {
    /// The hook for shard `shard`'s journal.
    pub fn hook(&self, shard: usize) -> Option<DurableHook> {
        self.hooks.get(shard).map(|h| h.0.clone())
    }

    /// Stops the thread (it writes its cursor first; what is not acknowledged stays in the
    /// journal for the next start).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Starts the publisher thread for `shards` shards of `data_dir`.
pub fn start(
    cfg: &ClusterConfig,
    data_dir: PathBuf,
    shards: usize,
    node_id: String,
) -> Result<PublisherHandle, String> {
    let epoch = crate::store::journal_epoch(&data_dir).map_err(|e| e.to_string())?;
    if epoch > super::contract::MAX_EPOCH {
        return Err(format!(
            "{}: journal epoch {epoch} is past {} (the stream sequence would leave 2^53)",
            data_dir.join(crate::store::EPOCH_FILE).display(),
            super::contract::MAX_EPOCH
        ));
    }
    let cursor = Cursor::load(&data_dir, epoch, shards);
    let spools: Vec<ShardSpool> = (0..shards)
        .map(|k| ShardSpool::new(&data_dir, k, cursor.acked[k]))
        .collect();
    let wake = Arc::new(Notify::new());
    let hooks = spools
        .iter()
        .map(|s| {
            let d = s.durable.clone();
            let w = wake.clone();
            HookCell(Arc::new(move |seq: u64| {
                d.store(seq, Ordering::Release);
                w.notify_one();
            }) as DurableHook)
        })
        .collect();
    let stats = Arc::new(PublisherStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let naming = Naming {
        prefix: cfg.subject_prefix.clone(),
        node_id,
        epoch,
    };
    info!(
        nats_url = %cfg.nats_url,
        stream = %cfg.stream,
        node_id = %naming.node_id,
        epoch,
        "cluster: publishing every durable change to JetStream"
    );
    let run = Run {
        cfg: cfg.clone(),
        data_dir,
        naming,
        spools,
        stats: stats.clone(),
        stop: stop.clone(),
        wake: wake.clone(),
        cursor,
        skipped: Skipped::default(),
        reconcile_failures: 0,
    };
    std::thread::Builder::new()
        .name("cluster-pub".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("cluster: no runtime for the publisher: {e}; nothing is published");
                    return;
                }
            };
            rt.block_on(run.run());
        })
        .map_err(|e| format!("cluster: cannot start the publisher thread: {e}"))?;
    Ok(PublisherHandle {
        hooks,
        stats,
        stop,
        wake,
    })
}

struct Run {
    cfg: ClusterConfig,
    data_dir: PathBuf,
    naming: Naming,
    spools: Vec<ShardSpool>,
    stats: Arc<PublisherStats>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    cursor: Cursor,
    skipped: Skipped,
    reconcile_failures: u32,
}

/// How long one acknowledgement may take before the publish counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the thread lets changes gather after a wake-up before it reads them (the price is
/// this much latency on the stream; tuning/cluster-2026-12-07.txt: without it the publisher
/// was woken per commit and DORA/s with publishing fell to 0.3-0.4 of off; 5 ms and 1 ms give
/// the same DORA/s, and 1 ms takes 2.5 ms off the replica's p50, tuning/cluster-2026-12-07c.txt).
const LINGER: Duration = Duration::from_millis(1);
/// How often the cursor file is written at most (and at the end of every burst).
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// A reconcile read fails when no message comes for this long while some are pending.
const RECONCILE_IDLE: Duration = Duration::from_secs(10);
/// A reconcile read fails when it takes longer than this in all, plus one second per
/// [`RECONCILE_RATE`] messages it has to read.
const RECONCILE_LIMIT: Duration = Duration::from_secs(300);
/// Messages per second a reconcile read is allowed to take (far below what it does).
const RECONCILE_RATE: u64 = 10_000;
/// Failed reconcile reads in a row, while connected, after which the waiting shards publish
/// their snapshots without (a stream this server may not read: the README's limits).
const RECONCILE_TRIES: u32 = 5;

/// A NATS client for `cfg`: [`connect_options`] and every address of `nats_url` (a
/// comma-separated list). The publisher and the replica both connect through it.
pub async fn connect(
    cfg: &ClusterConfig,
    stats: Option<Arc<PublisherStats>>,
) -> Result<async_nats::Client, String> {
    let opts = connect_options(cfg, stats).await?;
    let urls: Vec<async_nats::ServerAddr> = cfg
        .nats_url
        .split(',')
        .filter_map(|u| u.trim().parse().ok())
        .collect();
    opts.connect(urls)
        .await
        .map_err(|e| format!("cluster: cannot connect to NATS: {e}"))
}

/// Connect options from the `[cluster]` keys.
pub async fn connect_options(
    cfg: &ClusterConfig,
    stats: Option<Arc<PublisherStats>>,
) -> Result<async_nats::ConnectOptions, String> {
    let mut o = async_nats::ConnectOptions::new()
        .name("leasequeryd")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|n| Duration::from_millis((n as u64 * 100).min(2000)));
    if let Some(p) = &cfg.creds_file {
        o = o
            .credentials_file(p)
            .await
            .map_err(|e| format!("cluster.creds_file {}: {e}", p.display()))?;
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.token {
        o = o.token(t.clone());
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(c), Some(k)) = (&cfg.tls_cert, &cfg.tls_key) {
        o = o.add_client_certificate(c.clone(), k.clone());
    }
    if cfg.tls_required {
        o = o.require_tls(true);
    }
    if let Some(stats) = stats {
        let first = Arc::new(AtomicBool::new(true));
        o = o.event_callback(move |ev| {
            let stats = stats.clone();
            let first = first.clone();
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        stats.connected.store(1, Ordering::Relaxed);
                        if !first.swap(false, Ordering::Relaxed) {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        info!("cluster: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        stats.connected.store(0, Ordering::Relaxed);
                        warn!("cluster: disconnected from NATS");
                    }
                    other => info!("cluster: NATS event: {other}"),
                }
            }
        });
    }
    Ok(o)
}

/// The stream's configuration when this server creates it.
pub fn stream_config(cfg: &ClusterConfig) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        storage: jetstream::stream::StorageType::File,
        max_messages_per_subject: cfg.max_msgs_per_subject,
        ..Default::default()
    }
}

type Flight = (
    usize,
    Option<u64>,
    Option<jetstream::context::PublishAckFuture>,
);

impl Run {
    async fn run(mut self) {
        let client = match connect(&self.cfg, Some(self.stats.clone())).await {
            Ok(c) => c,
            Err(e) => {
                warn!("{e}; nothing is published");
                return;
            }
        };
        let mut js = jetstream::new(client);
        js.set_timeout(ACK_TIMEOUT);
        // The stream, created when missing (retried until NATS answers).
        let mut backoff = Duration::from_millis(100);
        let mut unacked_since: Vec<Option<Instant>> = vec![None; self.spools.len()];
        loop {
            self.update_gauges(&mut unacked_since);
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match js.get_or_create_stream(stream_config(&self.cfg)).await {
                Ok(_) => break,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(stream = %self.cfg.stream, "cluster: stream not ready: {e}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        let mut inflight: VecDeque<Flight> = VecDeque::new();
        let mut last_store = Instant::now();
        let mut dirty = false;
        let mut backoff = Duration::from_millis(100);
        let mut next_shard = 0usize;
        let max_in_flight = self.cfg.max_in_flight;
        while !self.stop.load(Ordering::SeqCst) {
            // Fill the window, round-robin over the shards; not while a shard waits for its
            // reconcile read (what is in flight must be on the stream before it is read).
            let reconciling = self
                .spools
                .iter()
                .any(|s| s.reconcile(&self.naming).is_some());
            let mut failed = false;
            let mut idle = 0;
            while !reconciling && inflight.len() < max_in_flight && idle < self.spools.len() {
                let k = next_shard;
                next_shard = (next_shard + 1) % self.spools.len();
                let Some(item) = self.spools[k].next(&self.naming) else {
                    idle += 1;
                    continue;
                };
                idle = 0;
                let fut = match item.message {
                    Some((subject, id, payload)) => {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert("Nats-Msg-Id", id.as_str());
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                        match js.publish_with_headers(subject, h, payload.into()).await {
                            Ok(f) => Some(f),
                            Err(e) => {
                                warn!("cluster: publish failed: {e}");
                                failed = true;
                                break;
                            }
                        }
                    }
                    None => None,
                };
                inflight.push_back((item.shard, item.advance, fut));
            }
            self.update_gauges(&mut unacked_since);
            if !failed {
                let Some((shard, advance, fut)) = inflight.pop_front() else {
                    if reconciling {
                        match self.reconcile(&js).await {
                            Ok(()) => {
                                self.reconcile_failures = 0;
                                backoff = Duration::from_millis(100);
                            }
                            Err(_) if self.stop.load(Ordering::SeqCst) => break,
                            Err(e) => {
                                self.reconcile_failed(&e);
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(2));
                            }
                        }
                        continue;
                    }
                    if dirty {
                        self.store_cursor();
                        dirty = false;
                        last_store = Instant::now();
                    }
                    let woken =
                        tokio::time::timeout(Duration::from_millis(250), self.wake.notified())
                            .await
                            .is_ok();
                    if woken {
                        // Let the shards' next commits gather: one read and one burst of
                        // publishes for several commits, and no wake-up of this thread (a
                        // context switch on the shards' cores) per commit.
                        tokio::time::sleep(LINGER).await;
                    }
                    continue;
                };
                if let Some(f) = fut {
                    match tokio::time::timeout(ACK_TIMEOUT * 2, f).await {
                        Ok(Ok(ack)) => {
                            self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                            if ack.duplicate {
                                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            backoff = Duration::from_millis(100);
                        }
                        Ok(Err(e)) => {
                            warn!("cluster: publish not acknowledged: {e}");
                            failed = true;
                        }
                        Err(_) => {
                            warn!("cluster: publish not acknowledged in time");
                            failed = true;
                        }
                    }
                }
                if !failed {
                    if let Some(a) = advance {
                        self.spools[shard].acked = Some(a);
                        dirty = true;
                    }
                    if dirty && last_store.elapsed() >= CURSOR_EVERY {
                        self.store_cursor();
                        dirty = false;
                        last_store = Instant::now();
                    }
                    continue;
                }
            }
            // A failure: forget what is in flight, go back to the cursor, wait, retry.
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            inflight.clear();
            for s in &mut self.spools {
                s.rewind();
            }
            if dirty {
                self.store_cursor();
                dirty = false;
            }
            self.update_gauges(&mut unacked_since);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if dirty {
            self.store_cursor();
        }
    }

    /// One read of the stream's last message per subject of this node (an ordered consumer,
    /// `DeliverPolicy::LastPerSubject`, filter [`contract::node_wildcard`]) for every shard
    /// waiting to publish a snapshot: the bindings of such a shard ([`shard_of_addr`],
    /// [`shard_of_duid`]) whose last message is not a remove, has a `seq` below the snapshot's
    /// cut and which the snapshot lacks become its removes (at most [`MAX_REMOVES`] per shard
    /// and pass). Messages that are not this contract's are skipped and counted. Bounded: it
    /// fails after [`RECONCILE_IDLE`] without a message, or [`RECONCILE_LIMIT`] plus a second
    /// per [`RECONCILE_RATE`] messages in all.
    async fn reconcile(&mut self, js: &jetstream::Context) -> Result<(), String> {
        let shards = self.spools.len();
        let waiting: Vec<Option<u64>> = self
            .spools
            .iter()
            .map(|s| s.reconcile(&self.naming).map(|(seq, _)| seq))
            .collect();
        let wildcard = contract::node_wildcard(&self.naming.prefix, &self.naming.node_id);
        let stream = js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", self.cfg.stream))?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: wildcard.clone(),
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("consumer on {wildcard}: {e}"))?;
        let mut found: Vec<std::collections::HashMap<String, Removal>> =
            (0..shards).map(|_| Default::default()).collect();
        let mut more = vec![false; shards];
        let mut read = 0u64;
        let to_read = consumer.cached_info().num_pending;
        if to_read > 0 {
            let mut msgs = consumer
                .messages()
                .await
                .map_err(|e| format!("reading {wildcard}: {e}"))?;
            let limit = RECONCILE_LIMIT + Duration::from_secs(to_read / RECONCILE_RATE);
            let deadline = Instant::now() + limit;
            loop {
                if self.stop.load(Ordering::SeqCst) {
                    return Err("stopping".into());
                }
                let next = tokio::time::timeout(RECONCILE_IDLE, msgs.next())
                    .await
                    .map_err(|_| format!("no message from {wildcard} for {RECONCILE_IDLE:?}"))?;
                let m = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(format!("reading {wildcard}: {e}")),
                    None => return Err(format!("reading {wildcard}: the consumer ended")),
                };
                read += 1;
                let pending = m.info().map(|i| i.pending).unwrap_or(0);
                let subject = m.subject.as_str();
                match contract::decode_on_subject(&self.naming.prefix, subject, &m.payload) {
                    Err(e) => self.skipped.skip(&self.stats.reconcile_bad, subject, &e),
                    Ok(msg) => {
                        let k = match &msg.binding {
                            FeedBinding::V4(b) => shard_of_addr(b.addr, shards),
                            FeedBinding::V6(b) => shard_of_duid(&b.duid, shards),
                        };
                        if let (Some(Some(cut)), Some(spool)) = (waiting.get(k), self.spools.get(k))
                        {
                            let lacks = spool
                                .reconcile(&self.naming)
                                .is_some_and(|(_, keys)| !keys.holds(&msg.binding));
                            // A later message of the same subject (a consumer recreated inside
                            // the ordered consumer) decides again.
                            if msg.op != Op::Remove && msg.seq < *cut && lacks {
                                let subject = subject.to_string();
                                if found[k].len() < MAX_REMOVES || found[k].contains_key(&subject) {
                                    found[k].insert(
                                        subject.clone(),
                                        Removal {
                                            subject,
                                            binding: msg.binding,
                                            changed: msg.changed,
                                        },
                                    );
                                } else {
                                    more[k] = true;
                                }
                            } else {
                                found[k].remove(subject);
                            }
                        }
                    }
                }
                if pending == 0 {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "reading {wildcard} ({to_read} messages) took over {limit:?}"
                    ));
                }
            }
        }
        self.stats.reconciles.fetch_add(1, Ordering::Relaxed);
        for (k, (f, more)) in found.into_iter().zip(more).enumerate() {
            if waiting[k].is_none() {
                continue;
            }
            let n = f.len();
            self.stats
                .reconcile_removes
                .fetch_add(n as u64, Ordering::Relaxed);
            info!(
                shard = k,
                read,
                removes = n,
                more,
                "cluster: reconciled the shard's snapshot with the stream"
            );
            self.spools[k].removals(f.into_values().collect(), more);
        }
        Ok(())
    }

    fn reconcile_failed(&mut self, e: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.stats.connected.load(Ordering::Relaxed) == 1 {
            self.reconcile_failures += 1;
        }
        if self.reconcile_failures < RECONCILE_TRIES {
            warn!("cluster: cannot read the stream to reconcile a snapshot: {e}; retrying");
            return;
        }
        warn!(
            "cluster: cannot read the stream to reconcile a snapshot: {e}; {RECONCILE_TRIES} \
             tries failed: publishing the snapshot without (bindings it lacks stay on the \
             stream)"
        );
        self.reconcile_failures = 0;
        for s in &mut self.spools {
            s.removals(Vec::new(), false);
        }
    }

    fn update_gauges(&self, since: &mut [Option<Instant>]) {
        let mut pending = 0;
        let mut oldest: Option<Instant> = None;
        for (s, t) in self.spools.iter().zip(since.iter_mut()) {
            let p = s.pending();
            pending += p;
            if p == 0 {
                *t = None;
            } else {
                let at = *t.get_or_insert_with(Instant::now);
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        self.stats.pending.store(pending, Ordering::Relaxed);
        let age_ms = oldest.map_or(0, |o| o.elapsed().as_millis() as u64);
        self.stats
            .oldest_unacknowledged_ms
            .store(age_ms, Ordering::Relaxed);
        let since = if oldest.is_some() {
            unix_ms().saturating_sub(age_ms).max(1)
        } else {
            0
        };
        self.stats
            .oldest_unacknowledged_since_unix_ms
            .store(since, Ordering::Relaxed);
    }

    fn store_cursor(&mut self) {
        for (k, s) in self.spools.iter().enumerate() {
            self.cursor.acked[k] = s.acked;
        }
        if let Err(e) = self.cursor.store(&self.data_dir) {
            warn!(dir = %self.data_dir.display(), "cluster: cannot write the published cursor: {e}");
        }
    }
}

/// Unix time in milliseconds (0 before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
