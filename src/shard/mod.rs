//! The glommio shell: one pinned executor per shard, the TCP listeners, connections, the
//! cross-shard mailboxes of the bulk scatter-gather, and shutdown.
//!
//! Ownership (docs/DESIGN.md §3): each shard owns its slice of the lease table (`Rc<RefCell<LeaseTable>>`,
//! never borrowed across an `.await`) and the connections it accepted; only owned `Send`
//! messages ([`mail::Mail`]) cross shards, through a bounded glommio channel mesh.

mod active;
mod conn;
mod drops;
mod io;
mod mail;
mod publish;
mod scan;
pub mod stats;
mod udp;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::channels::local_channel::LocalSender;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::feed::import::{self, ImportedShards};
use crate::lease::LeaseTable;
use crate::lease::{V4Binding, V6Binding};
use crate::session::{Identity, LinkSet};
use mail::{Mail, QueryKey};
use stats::Stats;

/// The wall clock as Unix seconds: the one clock read the sans-io parts are handed.
pub(crate) fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// This server's identity: the configured DUID, or a DUID-UUID (RFC 6355, type 4) derived from
/// /etc/machine-id (stable across restarts), or from the host name when that file is missing.
fn identity(config: &Config) -> Identity {
    let server_duid = match config
        .server_duid
        .as_deref()
        .and_then(crate::config::hex_decode)
    {
        Some(d) => d,
        None => {
            let seed = std::fs::read_to_string("/etc/machine-id")
                .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
                .unwrap_or_else(|_| "leasequeryd".into());
            let a = crate::lease::stable_hash(seed.trim().as_bytes());
            let b = crate::lease::stable_hash(format!("{}/leasequeryd", seed.trim()).as_bytes());
            let mut d = vec![0, 4];
            d.extend_from_slice(&a.to_be_bytes());
            d.extend_from_slice(&b.to_be_bytes());
            d
        }
    };
    Identity {
        server_duid,
        // Validation refused a config without one; loopback is never reached.
        server_id: config
            .v4_server_id()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
    }
}

/// `now + d`, saturating: `d` is capped at [`crate::config::MAX_DATA_TIMEOUT_SECS`] times 365
/// (validation keeps every configured duration far below it), and an `Instant` that cannot hold
/// even that is replaced by `now` plus one day. Never panics, whatever `d` is.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    let cap = Duration::from_secs(crate::config::MAX_DATA_TIMEOUT_SECS.saturating_mul(365));
    now.checked_add(d.min(cap))
        .or_else(|| now.checked_add(Duration::from_secs(crate::config::MAX_DATA_TIMEOUT_SECS)))
        .unwrap_or(now)
}

/// What stops the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Import(#[from] import::ImportError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on metrics_listen {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("{0}")]
    Tls(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("lease store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("authority: {0}")]
    Authority(#[from] crate::authority::SubnetError),
    #[error("{0}")]
    Cluster(String),
}

/// Capacity of each cross-shard channel of the mesh (messages).
const MESH_CAPACITY: usize = 1024;

/// State every shard shares (read-only after start, or atomics).
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub identity: Identity,
    pub shards: usize,
    /// Connections open now, over every shard and listener.
    pub connections: AtomicUsize,
    pub stopping: AtomicBool,
    /// When the first SIGTERM/SIGINT arrived: every shutdown deadline counts from it.
    pub shutdown_at: std::sync::OnceLock<Instant>,
    /// The requestor allow-list now (`allow`; SIGHUP reloads it from the config file).
    pub allow: std::sync::RwLock<Vec<crate::config::Cidr>>,
    /// The TLS server configuration now (`tls` on; SIGHUP reloads its files).
    pub tls: std::sync::RwLock<Option<Arc<rustls::ServerConfig>>>,
    pub stats: Vec<Stats>,
    /// Every link a binding was imported on (for NotConfigured).
    pub links: LinkSet,
    /// Active subscriptions per shard: a shard sends its changes only where there are some.
    pub subscribers: Vec<AtomicUsize>,
    /// Each shard's history horizon (Unix seconds): a catch-up from before it is DataMissing.
    pub horizons: Vec<AtomicU32>,
    /// The DHCP4o6 authority's checked settings, when it runs.
    pub authority: Option<crate::authority::ValidConfig>,
    /// Shards that have claimed their restored softwire sources at the owners (none serves
    /// DHCP4o6 before all have).
    pub softwires_registered: AtomicUsize,
    /// What each shard publishes for `/metrics` beyond `stats`.
    pub metrics: Vec<crate::metrics::ShardMetrics>,
    /// The JetStream publisher (`[cluster]`, role authority): the shards' journals tell it
    /// what is durable.
    pub cluster: Option<crate::cluster::PublisherHandle>,
    /// The replica's follower (`[cluster] role = "replica"`): shard 0 takes its channel.
    pub replica: Option<crate::cluster::replica::ReplicaHandle>,
}

/// One shard's executor-local state.
pub(crate) struct ShardCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub table: RefCell<LeaseTable>,
    senders: Senders<Mail>,
    /// Scans this shard runs for queries of any shard: where their credits go.
    scans: RefCell<HashMap<QueryKey, LocalSender<Mail>>>,
    /// Queries whose connection lives here: where their chunks go.
    routes: RefCell<HashMap<QueryKey, LocalSender<Mail>>>,
    next_query: std::cell::Cell<u64>,
    /// Closed when the server stops: every waiter on it wakes at once.
    pub shutdown: Semaphore,
    /// Active leasequery: history ring, subscriptions, outgoing changes.
    hub: active::Hub,
    /// The DHCP4o6 lease authority of this shard, when it runs.
    auth: Option<Rc<udp::AuthShell>>,
    /// This shard's one journal writer (with `data_dir`): the authority's when it runs,
    /// otherwise one of its own for the feed and the cluster publisher.
    pub journal: Option<crate::store::Journal>,
    /// The feed's batches on this shard (`shard::active` feed).
    feed: active::FeedShard,
    /// Drop warnings, rate-limited per reason (README "Drop warnings").
    pub drops: drops::DropLog,
    /// Softwire claims this shard asked other shards for: where each answer goes.
    claims_pending: RefCell<HashMap<u64, LocalSender<Vec<bool>>>>,
    next_claim: std::cell::Cell<u64>,
}

impl std::fmt::Debug for ShardCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCtx")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ShardCtx {
    pub fn stats(&self) -> &Stats {
        &self.shared.stats[self.id]
    }

    /// What this shard publishes for `/metrics` beyond [`Stats`].
    pub fn metrics(&self) -> &crate::metrics::ShardMetrics {
        &self.shared.metrics[self.id]
    }

    /// A query id unique in the process.
    pub fn new_query_key(&self) -> QueryKey {
        let n = self.next_query.get();
        self.next_query.set(n + 1);
        QueryKey {
            origin: self.id as u32,
            id: n,
        }
    }

    /// Sends `mail` to shard `to`: a direct call for this shard, the mesh for the others.
    pub async fn post(self: &Rc<Self>, to: usize, mail: Mail) {
        if to == self.id {
            self.deliver(mail);
        } else if self.senders.send_to(to, mail).await.is_err() {
            // The peer has stopped: only happens during shutdown.
            self.stats()
                .mesh_send_failed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Handles one mail addressed to this shard.
    fn deliver(self: &Rc<Self>, mail: Mail) {
        match mail {
            Mail::Scan { key, plan } => scan::start(self.clone(), key, plan),
            Mail::Credit { key, .. } | Mail::Cancel { key }
                if !self.scans.borrow().contains_key(&key) =>
            {
                // The scan has finished or was cancelled: the credit (and its buffer) is dropped.
            }
            m @ (Mail::Credit { .. } | Mail::Cancel { .. }) => {
                let key = m.key();
                let scans = self.scans.borrow();
                if let Some(tx) = scans.get(&key) {
                    let _ = tx.try_send(m);
                }
            }
            Mail::Active(m) => self.deliver_active(m),
            Mail::Dhcp4o6 { datagram, src } => {
                if let Some(shell) = &self.auth {
                    udp::spawn_handle(self, shell, datagram, src);
                }
            }
            Mail::SoftwireClaim { from, id, claims } => {
                let granted = match &self.auth {
                    // A shard whose journal failed grants nothing: the leases it undid may
                    // hold sources it had freed.
                    Some(shell) if !shell.failed.get() => {
                        let mut a = shell.authority.borrow_mut();
                        claims.iter().map(|c| a.claim_softwire(c)).collect()
                    }
                    _ => vec![false; claims.len()],
                };
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    ctx.post(from as usize, Mail::SoftwireClaimed { id, granted })
                        .await;
                })
                .detach();
            }
            Mail::SoftwireClaimed { id, granted } => {
                if let Some(tx) = self.claims_pending.borrow_mut().remove(&id) {
                    let _ = tx.try_send(granted);
                }
            }
            Mail::SoftwireFree { claims } => {
                if let Some(shell) = &self.auth {
                    let mut a = shell.authority.borrow_mut();
                    for c in &claims {
                        a.free_softwire(c);
                    }
                }
            }
            m @ Mail::Chunk { .. } => {
                let key = m.key();
                let routes = self.routes.borrow();
                if let Some(tx) = routes.get(&key) {
                    let _ = tx.try_send(m);
                }
            }
        }
    }
}

/// What SIGHUP reloads: the caller reads the configuration again (and applies what it owns,
/// the log filter) and returns it; the allow-list is taken from it. An error keeps everything
/// as it was.
pub type Reload = Box<dyn FnMut() -> Result<Config, String> + Send>;

impl Shared {
    /// True when `ip` may connect under the allow-list now.
    pub(crate) fn allowed(&self, ip: std::net::IpAddr) -> bool {
        let allow = self.allow.read().unwrap_or_else(|e| e.into_inner());
        allow.iter().any(|c| c.contains(ip))
    }

    /// The TLS configuration new handshakes use (`None` with `tls = "off"`).
    pub(crate) fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Logs every shard's counters (SIGUSR1, and at exit).
    fn log_counters(&self) {
        for (i, s) in self.stats.iter().enumerate() {
            let summary = s.summary();
            if !summary.is_empty() {
                info!(shard = i, "counters: {summary}");
            }
        }
        if let Some(p) = &self.cluster {
            info!("counters: cluster {}", p.stats.line());
        }
        if let Some(r) = &self.replica {
            info!("counters: replica {}", r.stats.line());
        }
    }
}

/// Runs the server until SIGTERM/SIGINT; returns once every shard has stopped (or the shutdown
/// deadline has passed).
pub fn run(config: Config, mut reload: Option<Reload>) -> Result<(), ServerError> {
    let shards = config.shard_count();
    let mut config = config;
    // `/metrics` and `/healthz` answer from the start (503 until every shard serves).
    let exporter = Arc::new(crate::metrics::Exporter::default());
    // Everything that can refuse the start without writing comes first (the settings, the
    // listen addresses, the import file), so a start that fails leaves the data dir untouched.
    let replica_role = config
        .cluster
        .as_ref()
        .is_some_and(|c| c.role == crate::cluster::Role::Replica);
    // A replica runs no lease authority: its leases come from the stream.
    let authority = if config.authority_enabled && !replica_role {
        Some(config.authority_config().validate()?)
    } else {
        None
    };
    // Check every address once here, so a bad one is reported before any executor starts;
    // every shard then binds its own SO_REUSEPORT socket on it.
    if let Some(addr) = config.metrics_listen.0 {
        crate::metrics::http::start(addr, exporter.clone())
            .map_err(|source| ServerError::MetricsListen { addr, source })?;
    }
    for addr in [config.lq6_listen, config.lq4_listen] {
        precheck(addr, socket2::Type::STREAM)?;
    }
    let tls = match config.tls {
        crate::session::TlsMode::Off => None,
        _ => Some(
            crate::tls::Material::load(&config)
                .map_err(ServerError::Tls)?
                .server,
        ),
    };
    if authority.is_some() {
        precheck(config.dhcp4o6_listen, socket2::Type::DGRAM)?;
    }
    let started = Instant::now();
    let mut imported = match &config.import {
        Some(path) => import::load_file(path, shards)?,
        None => ImportedShards {
            v4: vec![Vec::new(); shards],
            v6: vec![Vec::new(); shards],
        },
    };
    let (v4, v6) = (imported.v4_count(), imported.v6_count());
    if let (None, Some(dir)) = (&config.server_duid, &config.data_dir) {
        // A DUID created once and kept in the data directory (issue: "A server DUID is created
        // once and kept in the data dir").
        let duid = crate::store::server_duid(dir)?;
        config.server_duid = Some(duid.iter().map(|b| format!("{b:02x}")).collect());
    }
    let identity = identity(&config);
    if let Some(dir) = &config.data_dir {
        std::fs::create_dir_all(dir).map_err(|e| crate::store::StoreError::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut replayed = crate::store::replay(dir, shards)?;
        let st = &exporter.start;
        st.replayed_v4
            .store(replayed.v4_count() as u64, Ordering::Relaxed);
        st.replayed_v6
            .store(replayed.v6_count() as u64, Ordering::Relaxed);
        st.torn_tails_cut
            .store(replayed.torn_tails_cut, Ordering::Relaxed);
        // The start log (README "Start log"): what came from where.
        info!(
            source = "snapshot",
            dir = %dir.display(),
            bindings = replayed.snapshot_bindings,
            "start: bindings loaded"
        );
        info!(
            source = "journal",
            dir = %dir.display(),
            records = replayed.journal_records,
            torn_tails_cut = replayed.torn_tails_cut,
            resharded = replayed.resharded,
            v4 = replayed.v4_count(),
            v6 = replayed.v6_count(),
            "start: bindings loaded (journal replayed over the snapshots)"
        );
        if config.import.is_some() {
            // With a data directory an import is part of the durable state: upserted by key
            // into what the data directory holds, and written as its new snapshots before any
            // shard serves (a later start needs no --import).
            replayed.upsert(
                std::mem::take(&mut imported.v4),
                std::mem::take(&mut imported.v6),
            );
            crate::store::write_state(dir, shards, &replayed.v4, &replayed.v6)?;
            info!(
                v4 = replayed.v4_count(),
                v6 = replayed.v6_count(),
                "import written to the data directory"
            );
        }
        imported.v4 = replayed.v4;
        imported.v6 = replayed.v6;
    }
    let mut links = LinkSet::default();
    for b in imported.v4.iter().flatten() {
        if let Some(ctx) = &b.v6 {
            links.insert(ctx.link);
        }
    }
    for b in imported.v6.iter().flatten() {
        links.insert(b.link);
    }
    for s in authority.iter().flat_map(|a| &a.subnets) {
        for &(p, len) in &s.links {
            links.insert_prefix(p, len);
        }
    }
    exporter
        .start
        .imported_v4
        .store(v4 as u64, Ordering::Relaxed);
    exporter
        .start
        .imported_v6
        .store(v6 as u64, Ordering::Relaxed);
    if config.import.is_none() && config.data_dir.is_none() {
        info!(
            source = "none",
            "start: no bindings loaded (no import, no data_dir: leases live in memory only)"
        );
    }
    if let Some(path) = &config.import {
        info!(
            source = "import",
            file = %path.display(),
            v4,
            v6,
            ms = started.elapsed().as_millis() as u64,
            "start: bindings loaded (imported bindings)"
        );
    }
    let subnet_count = authority.as_ref().map_or(0, |a| a.subnets.len());
    // [cluster] role authority: the publisher thread, started before the shards open their
    // journals (each journal gets its hook). Validation made sure there is a data_dir.
    let cluster = match (&config.cluster, &config.data_dir) {
        (Some(c), Some(dir)) if c.role == crate::cluster::Role::Authority => Some(
            crate::cluster::publisher::start(
                c,
                dir.clone(),
                shards,
                c.node_id_or(&identity.server_duid),
            )
            .map_err(ServerError::Cluster)?,
        ),
        _ => None,
    };
    let replica = match &config.cluster {
        Some(c) if replica_role => {
            // A replica serves every authority's links, which it cannot know in advance: a
            // query for a link no binding is on gets an empty answer, not NotConfigured.
            links.insert_prefix(std::net::Ipv6Addr::UNSPECIFIED, 0);
            Some(crate::cluster::replica::start(c).map_err(ServerError::Cluster)?)
        }
        _ => None,
    };
    let shared = Arc::new(Shared {
        stats: (0..shards).map(|_| Stats::default()).collect(),
        connections: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        shutdown_at: std::sync::OnceLock::new(),
        allow: std::sync::RwLock::new(config.allow.clone()),
        tls: std::sync::RwLock::new(tls),
        identity,
        shards,
        links,
        subscribers: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
        horizons: (0..shards).map(|_| AtomicU32::new(u32::MAX)).collect(),
        authority,
        config,
        softwires_registered: AtomicUsize::new(0),
        metrics: (0..shards)
            .map(|_| crate::metrics::ShardMetrics::new(subnet_count))
            .collect(),
        cluster,
        replica,
    });
    exporter.set_server(shared.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // A thread waits for the signals and notes when the first arrived (the shutdown deadline
    // counts from that moment, not from when a poll noticed it).
    // SIGHUP reloads, SIGUSR1 logs the counters; every other signal whose default action would
    // end the process silently (SIGUSR2, SIGALRM, SIGIO, SIGPROF, SIGVTALRM, SIGPWR, SIGSTKFLT;
    // SIGPIPE is ignored by the Rust runtime; the real-time signals) is logged and ignored.
    use libc::{SIGPWR, SIGSTKFLT};
    use signal_hook::consts::{
        SIGALRM, SIGHUP, SIGINT, SIGIO, SIGPROF, SIGTERM, SIGUSR1, SIGUSR2, SIGVTALRM,
    };
    const IGNORED: [(i32, &str); 7] = [
        (SIGUSR2, "SIGUSR2"),
        (SIGALRM, "SIGALRM"),
        (SIGIO, "SIGIO"),
        (SIGPROF, "SIGPROF"),
        (SIGVTALRM, "SIGVTALRM"),
        (SIGPWR, "SIGPWR"),
        (SIGSTKFLT, "SIGSTKFLT"),
    ];
    // The real-time signals (default action: terminate) too.
    let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
    let mut signals = signal_hook::iterator::Signals::new(
        [SIGTERM, SIGINT, SIGHUP, SIGUSR1]
            .into_iter()
            .chain(IGNORED.iter().map(|s| s.0))
            .chain(realtime.clone()),
    )
    .map_err(ServerError::Signals)?;
    let (signalled_tx, signalled) = std::sync::mpsc::channel::<()>();
    {
        let stop = stop.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    match sig {
                        SIGHUP => reload_now(&shared, reload.as_mut()),
                        SIGUSR1 => shared.log_counters(),
                        SIGTERM | SIGINT => {
                            let _ = shared.shutdown_at.set(Instant::now());
                            stop.store(true, Ordering::SeqCst);
                            let _ = signalled_tx.send(());
                        }
                        other => {
                            let name = match IGNORED.iter().find(|s| s.0 == other) {
                                Some(s) => s.1.to_string(),
                                None if realtime.contains(&other) => {
                                    format!("SIGRTMIN+{}", other - realtime.start())
                                }
                                None => format!("signal {other}"),
                            };
                            info!(
                                signal = other,
                                "{name} ignored (SIGHUP reloads, SIGUSR1 logs the counters)"
                            )
                        }
                    }
                }
            })
            .map_err(ServerError::Signals)?;
    }

    let mesh = MeshBuilder::full(shards, MESH_CAPACITY);
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ServerError>>();
    let mut handles = Vec::with_capacity(shards);
    for (id, part) in imported.v4.into_iter().zip(imported.v6).enumerate() {
        let placement = match cpus.get(id % cpus.len().max(1)) {
            Some(&cpu) if !cpus.is_empty() => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        };
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("shard{id}"));
        if shared.config.spin_before_park_us > 0 {
            builder =
                builder.spin_before_park(Duration::from_micros(shared.config.spin_before_park_us));
        }
        let shared = shared.clone();
        let mesh = mesh.clone();
        let stop = stop.clone();
        let ready = ready_tx.clone();
        let h = builder
            .spawn(move || async move { shard_main(id, shared, mesh, part, stop, ready).await })
            .map_err(|e| ServerError::Executor {
                shard: id,
                message: e.to_string(),
            })?;
        handles.push(h);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
            Err(_) => break,
        }
    }
    log_served(&shared);
    exporter
        .start
        .startup_seconds_ms
        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    exporter.serving.store(true, Ordering::Release);
    info!(
        shards,
        metrics = %shared.config.metrics_listen,
        lq6 = %shared.config.lq6_listen,
        lq4 = %shared.config.lq4_listen,
        dhcp4o6 = %shared
            .authority
            .as_ref()
            .map(|_| shared.config.dhcp4o6_listen.to_string())
            .unwrap_or_else(|| "off".into()),
        durable = shared.config.data_dir.is_some(),
        // From reading the config to every shard serving: import, journal replay and the
        // shards' table builds included.
        startup_ms = started.elapsed().as_millis() as u64,
        "leasequeryd serving"
    );
    notify_systemd(sd_notify::NotifyState::Ready);

    while !stop.load(Ordering::SeqCst) {
        let _ = signalled.recv_timeout(Duration::from_millis(50));
    }
    info!("shutting down");
    notify_systemd(sd_notify::NotifyState::Stopping);
    shared.stopping.store(true, Ordering::SeqCst);
    if let Some(p) = &shared.cluster {
        p.stop();
    }
    if let Some(r) = &shared.replica {
        r.stop();
    }
    let deadline = shutdown_deadline(&shared, EXIT_MARGIN);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for h in handles {
            let _ = h.join();
        }
        let _ = done_tx.send(());
    });
    if done_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_err()
    {
        warn!("shutdown deadline passed; exiting with shards still running");
    }
    shared.log_counters();
    Ok(())
}

/// Tells systemd (`Type=notify`, README "Packaging") that the server is ready or stopping;
/// nothing when `NOTIFY_SOCKET` is not set (not started by systemd).
fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, &[state]) {
        warn!("sd_notify to NOTIFY_SOCKET failed: {e}");
    }
}

/// The start log (README "Start log"), once every shard serves: one INFO line per item, the
/// shard count, every listener, and per authority subnet its links, pool, address count, PSID
/// length and port sets per address. (What was loaded from where is logged while it loads.)
fn log_served(shared: &Shared) {
    let config = &shared.config;
    info!(
        shards = shared.shards,
        cpus = core_affinity::get_core_ids().map_or(0, |c| c.len()),
        "start: shards"
    );
    info!(listener = "lq6", transport = "tcp", addr = %config.lq6_listen,
        "start: listening (DHCPv6 and DHCPv4-over-DHCPv6 bulk/active leasequery)");
    info!(listener = "lq4", transport = "tcp", addr = %config.lq4_listen,
        "start: listening (DHCPv4 bulk/active leasequery)");
    let Some(auth) = &shared.authority else {
        info!(
            listener = "dhcp4o6",
            "start: DHCP4o6 authority off (no UDP listener)"
        );
        return;
    };
    info!(listener = "dhcp4o6", transport = "udp", addr = %config.dhcp4o6_listen,
        "start: listening (DHCP4o6 lease authority)");
    for s in &auth.subnets {
        let links: Vec<String> = s.links.iter().map(|(p, l)| format!("{p}/{l}")).collect();
        let addresses = u64::from(u32::from(s.last)) - u64::from(u32::from(s.first)) + 1;
        // Port sets a client can get per address: the PSIDs below `first_psid` hold the
        // well-known ports and are never leased.
        let port_sets = u64::from(s.psids().saturating_sub(u32::from(s.first_psid)).max(1));
        let (psid_len, psid_offset) = match s.psid {
            Some((a, k)) => (k.to_string(), a.to_string()),
            None => ("none".to_string(), "none".to_string()),
        };
        info!(
            subnet = %s.name,
            links = %links.join(","),
            pool = %format_args!("{}-{}", s.first, s.last),
            addresses,
            psid_len = %psid_len,
            psid_offset = %psid_offset,
            port_sets_per_address = port_sets,
            leasable_units = addresses * port_sets,
            shared_only = s.shared_only,
            lease_time = s.lease_time,
            "start: authority subnet"
        );
    }
    info!(server_id = %auth.server_id, subnets = auth.subnets.len(), "start: DHCP4o6 authority");
}

/// SIGHUP: reads the configuration again through `reload` and applies what can change without
/// a restart (the log filter, applied by `reload` itself, and the allow-list); anything else
/// waits for a restart. A configuration that does not load changes nothing.
fn reload_now(shared: &Shared, reload: Option<&mut Reload>) {
    let Some(reload) = reload else {
        info!("SIGHUP: nothing to reload");
        return;
    };
    match reload() {
        Ok(new) => {
            if shared.config.tls != crate::session::TlsMode::Off {
                // New handshakes use the files as they are now; running sessions keep theirs.
                match crate::tls::Material::load(&new) {
                    Ok(m) => {
                        *shared.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(m.server);
                        info!("SIGHUP: reloaded the TLS certificate, key and requestor CA");
                    }
                    Err(e) => warn!("SIGHUP: TLS material not reloaded, the old one is kept: {e}"),
                }
            }
            let blocks = new.allow.len();
            *shared.allow.write().unwrap_or_else(|e| e.into_inner()) = new.allow;
            info!(
                allow_blocks = blocks,
                log = %new.log,
                "SIGHUP: reloaded the log filter and the allow-list (other settings take effect at a restart)"
            );
        }
        Err(e) => warn!("SIGHUP: configuration not reloaded, nothing changed: {e}"),
    }
}

/// How often a shard looks at the stop flag the signal thread sets.
const STOP_POLL: Duration = Duration::from_millis(10);
/// The process exits this long before `shutdown_deadline` has passed since the signal (time
/// for the counters' log lines and the process's own exit).
const EXIT_MARGIN: Duration = Duration::from_millis(100);
/// Shards stop waiting for their connections this long before the deadline (time to leave
/// their executors before the process exits).
const SHARD_MARGIN: Duration = Duration::from_millis(150);

/// The moment `margin` before `shutdown_deadline` has passed since the signal arrived (or
/// since now, when the stop came from elsewhere).
fn shutdown_deadline(shared: &Shared, margin: Duration) -> Instant {
    let at = *shared.shutdown_at.get_or_init(Instant::now);
    let total = Duration::from_secs(shared.config.shutdown_deadline)
        .saturating_sub(margin)
        .max(Duration::from_millis(10));
    deadline_after(at, total)
}

/// Checks that `addr` can be bound the way the shards bind it (SO_REUSEADDR + SO_REUSEPORT, so
/// the connections a previous run left in TIME-WAIT do not block a restart), and that no other
/// server already listens there on TCP (SO_REUSEPORT would otherwise let two processes share
/// the port silently).
fn precheck(addr: std::net::SocketAddr, ty: socket2::Type) -> Result<(), ServerError> {
    let err = |source| ServerError::Listen { addr, source };
    // A listener that answers for a whole second is another server. One that stops answering
    // within it was a server that just exited: its io_uring teardown runs after the process
    // is gone and can keep the listening socket alive for a moment (a restart right after a
    // stop, by systemd or by hand, must not be refused for that).
    if ty == socket2::Type::STREAM {
        let answered = |_| {
            let up =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            if up {
                std::thread::sleep(Duration::from_millis(50));
            }
            up
        };
        if (0..20).all(answered) {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another server is already listening there",
            )));
        }
    }
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    Ok(())
}

/// One shard's DHCP4o6 UDP socket: SO_REUSEPORT (every shard binds the address),
/// SO_REUSEADDR, IPv6-only, and SO_RCVBUF of `recv_buffer` octets (the kernel caps it at
/// `net.core.rmem_max`; the size it granted is logged, a shortfall as a warning).
fn bind_udp(
    addr: std::net::SocketAddr,
    recv_buffer: usize,
    shard: usize,
) -> std::io::Result<glommio::net::UdpSocket> {
    use glommio_socket2 as gs;
    let s = gs::Socket::new(
        gs::Domain::for_address(addr),
        gs::Type::DGRAM,
        Some(gs::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_recv_buffer_size(recv_buffer)?;
    // Linux reports twice the size it keeps for data (socket(7)).
    let granted = s.recv_buffer_size()? / 2;
    if granted < recv_buffer {
        warn!(
            shard,
            requested = recv_buffer,
            granted,
            "dhcp4o6 UDP receive buffer capped by net.core.rmem_max (raise it, tuning/README.md)"
        );
    } else {
        debug!(shard, granted, "dhcp4o6 UDP receive buffer");
    }
    s.bind(&addr.into())?;
    Ok(glommio::net::UdpSocket::from(s))
}

async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    mesh: MeshBuilder<Mail, glommio::channels::channel_mesh::Full>,
    part: (Vec<V4Binding>, Vec<V6Binding>),
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), ServerError>>,
) {
    let mut table = LeaseTable::new();
    // Bindings were checked when the file was read; a refusal here (a shard over 2^32 slots)
    // is logged, not fatal.
    let (v4, v6) = part;
    let imported = !v4.is_empty() || !v6.is_empty();
    table.reserve_for(&v4, &v6);
    for b in v4 {
        if let Err(e) = table.upsert_v4(b) {
            warn!(shard = id, "import: {e}");
        }
    }
    for b in v6 {
        if let Err(e) = table.upsert_v6(b) {
            warn!(shard = id, "import: {e}");
        }
    }
    let listeners = [shared.config.lq6_listen, shared.config.lq4_listen].map(|addr| {
        TcpListener::bind(addr).map_err(|e| ServerError::Listen {
            addr,
            source: std::io::Error::other(e.to_string()),
        })
    });
    let [l6, l4] = listeners;
    let (l6, l4) = match (l6, l4) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let auth = match shared.authority.as_ref().map(|cfg| {
        let mut a = crate::authority::Authority::new(cfg, id, shared.shards);
        a.restore(&table);
        let addr = shared.config.dhcp4o6_listen;
        let socket = bind_udp(addr, shared.config.udp_recv_buffer, id)
            .map_err(|source| ServerError::Listen { addr, source })?;
        let journal = match &shared.config.data_dir {
            Some(dir) => {
                let j = crate::store::Journal::open(dir, id, shared.shards)?;
                j.set_commit_histogram(shared.metrics[id].journal_commit.clone());
                if let Some(h) = shared.cluster.as_ref().and_then(|p| p.hook(id)) {
                    j.set_durable_hook(h);
                }
                Some(j)
            }
            None => None,
        };
        Ok::<_, ServerError>(Rc::new(udp::AuthShell::new(a, journal, socket)))
    }) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // The shard's one journal writer. Without an authority, a durable server fed by `--feed`
    // or publishing (`[cluster]`) opens its own: fed changes are journaled before they are
    // applied, and the publisher reads them (or, import only, what the data directory holds).
    let journal = match (&auth, &shared.config.data_dir) {
        (Some(shell), _) => shell.journal.clone(),
        (None, Some(dir)) if shared.config.feed.is_some() || shared.cluster.is_some() => {
            match crate::store::Journal::open(dir, id, shared.shards) {
                Ok(j) => {
                    j.set_commit_histogram(shared.metrics[id].journal_commit.clone());
                    if let Some(h) = shared.cluster.as_ref().and_then(|p| p.hook(id)) {
                        j.set_durable_hook(h);
                    }
                    Some(j)
                }
                Err(e) => {
                    let _ = ready.send(Err(e.into()));
                    return;
                }
            }
        }
        _ => None,
    };
    // The history starts now; bindings imported in this second are older than it.
    let history_start = unix_now().saturating_add(u32::from(imported));
    let (senders, mut receivers) = match mesh.join().await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(ServerError::Executor {
                shard: id,
                message: format!("mesh join failed: {e}"),
            }));
            return;
        }
    };
    let ctx = Rc::new(ShardCtx {
        id,
        shared: shared.clone(),
        table: RefCell::new(table),
        senders,
        scans: RefCell::new(HashMap::new()),
        routes: RefCell::new(HashMap::new()),
        next_query: std::cell::Cell::new(0),
        shutdown: Semaphore::new(0),
        hub: active::Hub::new(active::history_limits(&shared.config), history_start),
        auth,
        journal,
        feed: active::FeedShard::default(),
        drops: drops::DropLog::new(id),
        claims_pending: RefCell::new(HashMap::new()),
        next_claim: std::cell::Cell::new(0),
    });
    shared.horizons[id].store(history_start, Ordering::Release);
    // One task per peer drains that peer's channel into `deliver`.
    let mut inbound = Vec::new();
    for (_peer, rx) in receivers.streams() {
        let ctx = ctx.clone();
        inbound.push(glommio::spawn_local(async move {
            while let Some(m) = rx.recv().await {
                ctx.deliver(m);
            }
        }));
    }
    // RFC 8539 §8.2 across shards: the restored leases' softwire sources are claimed at their
    // owners, by every shard, before any shard serves DHCP4o6.
    if let Some(shell) = &ctx.auth {
        let regs = shell.authority.borrow_mut().take_registrations();
        let granted = udp::claim_at_owners(&ctx, &regs).await;
        {
            let mut a = shell.authority.borrow_mut();
            for (c, g) in regs.into_iter().zip(granted) {
                a.settle_registration(c, g);
            }
        }
        shared.softwires_registered.fetch_add(1, Ordering::AcqRel);
        while shared.softwires_registered.load(Ordering::Acquire) < shared.shards
            && !stop.load(Ordering::SeqCst)
        {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
    let _ = ready.send(Ok(()));

    // The feed file is read on shard 0; every binding goes to its owning shard.
    let feed = match (&shared.config.feed, id) {
        (Some(path), 0) => Some(glommio::spawn_local(active::follow_feed(
            ctx.clone(),
            path.clone(),
        ))),
        _ => None,
    };
    let replica_rx = match (&shared.replica, id) {
        (Some(r), 0) => r.rx.lock().ok().and_then(|mut g| g.take()),
        _ => None,
    };
    let replica =
        replica_rx.map(|rx| glommio::spawn_local(active::follow_replica(ctx.clone(), rx)));
    let authority_tasks = ctx.auth.clone().map(|shell| {
        [
            glommio::spawn_local(udp::recv_loop(ctx.clone(), shell.clone())),
            glommio::spawn_local(udp::timer_loop(ctx.clone(), shell)),
        ]
    });
    let publisher = glommio::spawn_local(publish::run(ctx.clone()));
    let acceptors = [(l6, conn::Family::V6), (l4, conn::Family::V4)].map(|(l, fam)| {
        let ctx = ctx.clone();
        glommio::spawn_local(async move { conn::accept_loop(ctx, l, fam).await })
    });

    // Shutdown watcher: the signal thread only sets an atomic; poll it.
    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(STOP_POLL).await;
    }
    ctx.shutdown.close();
    if let Some(f) = feed {
        f.cancel().await;
    }
    if let Some(r) = replica {
        r.cancel().await;
    }
    for a in acceptors {
        a.cancel().await;
    }
    for t in authority_tasks.into_iter().flatten() {
        t.cancel().await;
    }
    publisher.cancel().await;
    publish::publish_counters(&ctx);
    if let Some(shell) = &ctx.auth {
        info!(shard = id, counters = ?shell.authority.borrow().counters(), "authority");
    }
    if let Some(j) = &ctx.journal {
        if let Err(e) = j.close().await {
            warn!(shard = id, "journal close: {e}");
        }
    }
    // Wait (bounded by the process-wide deadline) for connections of this shard to finish
    // their QueryTerminated messages.
    let deadline = shutdown_deadline(&shared, SHARD_MARGIN);
    while ctx.stats().connections_open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    ctx.drops.flush();
    ctx.senders.close();
    for t in inbound {
        t.cancel().await;
    }
}
