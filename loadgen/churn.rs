//! The `churn` scenario: N simulated lwB4 clients ([`leasequery::lwb4::LwB4`]) doing
//! DHCPv4-over-DHCPv6 DORA, renewals (some with a new softwire source) and releases over UDP,
//! direct or through one simulated relay hop, one thread per core, each with its own socket
//! and its share of the clients (client `i` belongs to thread `i % threads`).
//!
//! Load model: open loop at `rate` exchanges/s in total (each thread `rate / threads`; latency
//! is measured from the intended start so a stall is not hidden), or closed loop with
//! `concurrency` exchanges outstanding in total. An exchange that sees no answer within
//! `timeout` is retransmitted (same xid) up to `retries` times, then given up and counted.
//!
//! A RELEASE has no answer, so each is followed by a DHCPINFORM from the same client: its ACK
//! comes from the shard that owns the client, after the RELEASE, which paces the releases like
//! any other exchange and tells when the server has taken them (metric `release`: RELEASE sent
//! to the INFORM's ACK).
//!
//! Every ACK updates the ledger: what each client holds (client-id, IPv4, PSID, softwire
//! source), which `--verify` compares with the server's bulk leasequery answer.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasequery::lwb4::{softwire_of, Event, LwB4, RelayHop};

use crate::ledger::{Entry, Stamps};
use crate::report::{Counters, Metric, RunReport};

/// The default link-address of the simulated relay (`--link`).
pub const RELAY_LINK: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);
/// The relay's DUID (DUID-LL 02:00:00:00:52:4c, "RL"), sent as OPTION_RELAY_ID.
pub const RELAY_ID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0x52, 0x4c];

/// The parameters of a churn run.
#[derive(Debug, Clone)]
pub struct ChurnArgs {
    /// The server's DHCP4o6 UDP address.
    pub server: SocketAddr,
    /// Number of clients.
    pub clients: u32,
    /// Index of the first client (runs with disjoint ranges do not share clients).
    pub first: u32,
    /// Share of clients listing option 159 (shared addresses), 0..=1.
    pub shared_ratio: f64,
    /// Queries go through one Relay-Forward on `link`.
    pub relay: bool,
    /// The relay's link-address (the server selects the subnet by it).
    pub link: Ipv6Addr,
    /// Open loop: exchanges per second in total.
    pub rate: Option<f64>,
    /// Closed loop: exchanges outstanding in total.
    pub concurrency: usize,
    /// Renewal rounds after DORA.
    pub renewals: u32,
    /// Share of clients whose softwire source changes at each renewal.
    pub swchange_ratio: f64,
    /// Share of clients that release at the end.
    pub release_ratio: f64,
    /// Wait for an answer before retransmitting.
    pub timeout: Duration,
    /// Retransmissions before giving up an exchange.
    pub retries: u32,
    /// Threads (0: one per core).
    pub threads: usize,
    /// The /48 the softwire sources come from.
    pub softwire_prefix: Ipv6Addr,
    /// Start no exchange after this long from the run's start (the exchanges under way finish).
    pub duration: Option<Duration>,
}

/// Deterministic per-client choice: true for about `ratio` of the indexes, per `salt`.
pub fn pick(index: u32, salt: u32, ratio: f64) -> bool {
    let mut x = u64::from(index) ^ (u64::from(salt) << 32);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    ((x >> 11) as f64 / (1u64 << 53) as f64) < ratio
}

/// The relay hop client `index` goes through, on `link`.
pub fn relay_hop(index: u32, link: Ipv6Addr) -> RelayHop {
    RelayHop {
        link,
        peer: softwire_of(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), index, 0),
        interface_id: Some(format!("lwb4-{index}").into_bytes()),
        relay_id: Some(RELAY_ID.to_vec()),
        remote_id: Some((32473, index.to_be_bytes().to_vec())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Dora,
    Renew,
    Release,
}

struct Pending {
    client: usize,
    op: Op,
    intended: Instant,
    deadline: Instant,
    tries: u32,
}

struct Worker<'a> {
    a: &'a ChurnArgs,
    t0: Instant,
    sock: UdpSocket,
    clients: Vec<LwB4>,
    pending: HashMap<u32, Pending>,
    c: Counters,
    dora: Metric,
    renew: Metric,
    release: Metric,
    buf: Vec<u8>,
    progress: &'a AtomicU64,
    /// Send and ACK times for the active subscribers' latency (scenarios `active`, `mixed`).
    stamps: Option<&'a Stamps>,
}

fn add(c: &mut Counters, k: &str, v: u64) {
    *c.entry(k.to_owned()).or_default() += v;
}

impl Worker<'_> {
    /// Sends; `sent` (perfdhcp's: messages that expect an answer) leaves out RELEASEs, which
    /// have none, so `drops` = sent - received counts lost exchanges' messages only.
    fn send(&mut self, bytes: &[u8], kind: &str) {
        match self.sock.send_to(bytes, self.a.server) {
            Ok(_) => {
                if kind != "release" {
                    add(&mut self.c, "sent", 1);
                }
                add(&mut self.c, &format!("sent_{kind}"), 1);
            }
            Err(e) => add(&mut self.c, &format!("error_send_{:?}", e.kind()), 1),
        }
    }

    /// Starts `op` for client `i`; false when there is nothing to do (no lease).
    fn start(&mut self, i: usize, op: Op, intended: Instant, round: u32) -> bool {
        let cl = &mut self.clients[i];
        let (bytes, kind) = match op {
            Op::Dora => (Some(cl.discover()), "discover"),
            Op::Renew => {
                if pick(cl.index(), round + 1, self.a.swchange_ratio) && cl.held().is_some() {
                    cl.set_softwire(softwire_of(
                        self.a.softwire_prefix,
                        cl.index(),
                        round as u16 + 1,
                    ));
                    add(&mut self.c, "softwire_changes", 1);
                }
                (cl.renew(), "renew")
            }
            Op::Release => (cl.release(), "release"),
        };
        let Some(bytes) = bytes else {
            add(&mut self.c, &format!("skipped_{kind}_no_lease"), 1);
            return false;
        };
        if op != Op::Dora {
            // Before the send: the update can arrive before this thread runs again.
            self.stamp_sent(i);
        }
        self.send(&bytes, kind);
        if op == Op::Release {
            // The DHCPINFORM barrier: its ACK comes from the client's shard after the RELEASE.
            match self.clients[i].inform() {
                Some(b) => self.send(&b, "inform"),
                None => return true,
            }
        }
        let xid = self.clients[i].xid();
        if self.pending.contains_key(&xid) {
            // Only for client indexes at or above 2^24 (see LwB4::xid).
            add(&mut self.c, "error_xid_collision", 1);
            return true;
        }
        self.pending.insert(
            xid,
            Pending {
                client: i,
                op,
                intended,
                deadline: Instant::now() + self.a.timeout,
                tries: 0,
            },
        );
        true
    }

    fn stamp_sent(&self, i: usize) {
        if let Some(s) = self.stamps {
            s.sent(self.clients[i].index(), Instant::now());
        }
    }

    /// Waits at most `wait` for a datagram (ppoll: a nanosecond timeout, so an open-loop send
    /// is not held back by SO_RCVTIMEO's jiffy granularity, which the latency from the intended
    /// send would then charge to the server), reads every datagram there is, then handles
    /// expired deadlines.
    fn poll(&mut self, wait: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec};
        if !wait.is_zero() {
            let ts = Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
            if let Err(e) = rustix::event::poll(&mut fds, Some(&ts)) {
                if e != rustix::io::Errno::INTR {
                    add(&mut self.c, &format!("error_poll_{e:?}"), 1);
                }
            }
        }
        loop {
            // The socket is non-blocking.
            let n = match self.sock.recv_from(&mut self.buf) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    add(&mut self.c, &format!("error_recv_{:?}", e.kind()), 1);
                    break;
                }
            };
            add(&mut self.c, "received", 1);
            let d = self.buf[..n].to_vec();
            self.on_datagram(&d);
        }
        self.expire();
    }

    fn on_datagram(&mut self, d: &[u8]) {
        // The xid of the DHCPv4 message inside decides the client.
        let xid = match peek_xid(d, self.a.relay) {
            Some(x) => x,
            None => {
                add(&mut self.c, "error_malformed_reply", 1);
                return;
            }
        };
        let Some(p) = self.pending.remove(&xid) else {
            add(&mut self.c, "unmatched_replies", 1);
            return;
        };
        let cl = &mut self.clients[p.client];
        let ev = cl.on_datagram(d);
        let now = Instant::now();
        let at = now.duration_since(self.t0);
        let lat = now.saturating_duration_since(p.intended).as_micros() as u64;
        match ev {
            Ok(Event::Offered) => {
                if let Some(req) = cl.request() {
                    let xid = cl.xid();
                    if let Some(s) = self.stamps {
                        s.sent(cl.index(), Instant::now());
                    }
                    self.send(&req, "request");
                    self.pending.insert(
                        xid,
                        Pending {
                            deadline: now + self.a.timeout,
                            tries: 0,
                            ..p
                        },
                    );
                }
            }
            Ok(Event::Acked(_)) => {
                if let Some(s) = self.stamps {
                    s.acked(cl.index(), now);
                }
                add(&mut self.c, "acks", 1);
                match p.op {
                    Op::Dora => self.dora.record(at, lat),
                    _ => self.renew.record(at, lat),
                }
                self.progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Informed) => {
                add(&mut self.c, "inform_acks", 1);
                self.release.record(at, lat);
                self.progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Naked) => {
                add(&mut self.c, "naks", 1);
                self.progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Ignored) => {
                add(&mut self.c, "ignored_replies", 1);
                self.pending.insert(xid, p);
            }
            Err(e) => {
                add(
                    &mut self.c,
                    &format!("error_reply_{e:?}").replace(' ', ""),
                    1,
                );
                self.pending.insert(xid, p);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(x, _)| *x)
            .collect();
        for xid in due {
            let Some(mut p) = self.pending.remove(&xid) else {
                continue;
            };
            let kind = match (p.op, self.clients[p.client].phase()) {
                (Op::Dora, leasequery::lwb4::Phase::Selecting) => "discover",
                (Op::Dora, _) => "request",
                (Op::Release, _) => "inform",
                _ => "renew",
            };
            if p.tries < self.a.retries {
                if let Some(b) = self.clients[p.client].retransmit() {
                    p.tries += 1;
                    p.deadline = now + self.a.timeout;
                    add(&mut self.c, &format!("retransmits_{kind}"), 1);
                    self.send(&b, kind);
                    self.pending.insert(xid, p);
                    continue;
                }
            }
            add(&mut self.c, &format!("timeouts_{kind}"), 1);
            add(&mut self.c, "timeouts", 1);
            if kind == "discover" {
                // No OFFER at all: by the kind of address asked for, for the pool note.
                let shared = pick(self.clients[p.client].index(), 0x5eed, self.a.shared_ratio);
                let k = if shared { "shared" } else { "full" };
                add(&mut self.c, &format!("no_offer_{k}"), 1);
            }
            self.progress.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `op` for every local client, on the open- or closed-loop schedule.
    fn phase(&mut self, op: Op, round: u32, threads: usize) {
        let todo: Vec<usize> = (0..self.clients.len())
            .filter(|&i| {
                op != Op::Release || pick(self.clients[i].index(), 0, self.a.release_ratio)
            })
            .collect();
        let start = Instant::now();
        let per_thread_rate = self.a.rate.map(|r| r / threads as f64);
        let window = self.a.concurrency.div_ceil(threads).max(1);
        let mut k = 0u64;
        for i in todo {
            if self.a.duration.is_some_and(|d| self.t0.elapsed() >= d) {
                add(&mut self.c, "stopped_by_duration", 1);
                break;
            }
            let intended = match per_thread_rate {
                Some(r) => {
                    let at = start + Duration::from_secs_f64(k as f64 / r);
                    loop {
                        let now = Instant::now();
                        if now >= at {
                            break;
                        }
                        self.poll(at - now);
                    }
                    at
                }
                None => {
                    while self.pending.len() >= window {
                        self.poll(Duration::from_millis(5));
                    }
                    Instant::now()
                }
            };
            if self.start(i, op, intended, round) {
                k += 1;
            }
            if k % 64 == 0 {
                self.poll(Duration::ZERO);
            }
        }
        while !self.pending.is_empty() {
            self.poll(Duration::from_millis(5));
        }
    }
}

/// The DHCPv4 xid of a DHCPV4-RESPONSE (inside one Relay-Reply when `relayed`).
fn peek_xid(d: &[u8], relayed: bool) -> Option<u32> {
    use leasequery::proto::codes::v6opt;
    use leasequery::proto::v6::{AnyView, MessageView};
    let inner: Vec<u8>;
    let msg = if relayed {
        let AnyView::Relay(r) = AnyView::parse(d).ok()? else {
            return None;
        };
        inner = r.options().get(v6opt::RELAY_MSG)?.data.to_vec();
        &inner[..]
    } else {
        d
    };
    let m = MessageView::parse(msg).ok()?;
    let v4 = m.options().get(v6opt::DHCPV4_MSG)?.data;
    Some(u32::from_be_bytes(v4.get(4..8)?.try_into().ok()?))
}

/// Runs the churn; returns the report and the ledger (sorted by client-id).
pub fn run(
    a: &ChurnArgs,
    progress: Arc<AtomicU64>,
    stamps: Option<Arc<Stamps>>,
) -> io::Result<(RunReport, Vec<Entry>)> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let threads = if a.threads == 0 {
        cores.len().max(1)
    } else {
        a.threads
    }
    .min(a.clients.max(1) as usize);
    let t0 = Instant::now();
    let bind: SocketAddr = if a.server.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let mut socks = Vec::new();
    for _ in 0..threads {
        // A 4 MiB receive buffer (capped by net.core.rmem_max): with hundreds of exchanges
        // outstanding, bursts of replies overflow the kernel's default and read as drops.
        let s = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        s.set_recv_buffer_size(4 << 20)?;
        s.bind(&bind.into())?;
        s.set_nonblocking(true)?;
        socks.push(UdpSocket::from(s));
    }
    let handles: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(t, sock)| {
            let a = a.clone();
            let core = cores.get(t % cores.len().max(1)).copied();
            let progress = progress.clone();
            let stamps = stamps.clone();
            std::thread::spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let clients = (0..a.clients)
                    .filter(|i| *i as usize % threads == t)
                    .map(|i| {
                        let index = a.first + i;
                        LwB4::new(
                            index,
                            pick(index, 0x5eed, a.shared_ratio),
                            softwire_of(a.softwire_prefix, index, 0),
                            a.relay.then(|| relay_hop(index, a.link)),
                        )
                    })
                    .collect();
                let mut w = Worker {
                    a: &a,
                    t0,
                    sock,
                    clients,
                    pending: HashMap::new(),
                    c: Counters::new(),
                    dora: Metric::new("dora", "us"),
                    renew: Metric::new("renew", "us"),
                    release: Metric::new("release", "us"),
                    buf: vec![0; 65536],
                    progress: &progress,
                    stamps: stamps.as_deref(),
                };
                w.phase(Op::Dora, 0, threads);
                for r in 0..a.renewals {
                    w.phase(Op::Renew, r, threads);
                }
                w.phase(Op::Release, 0, threads);
                w.dora.finish();
                w.renew.finish();
                w.release.finish();
                let ledger: Vec<Entry> = w
                    .clients
                    .iter()
                    .filter_map(|c| {
                        c.held().map(|h| Entry {
                            client_id: c.client_id().to_vec(),
                            addr: h.addr,
                            port_params: h.port_params,
                            softwire: h.softwire,
                        })
                    })
                    .collect();
                (w.c, vec![w.dora, w.renew, w.release], ledger)
            })
        })
        .collect();
    let mut report = RunReport {
        scenario: "churn".into(),
        ..Default::default()
    };
    let mut ledger = Vec::new();
    for h in handles {
        let (c, m, l) = h
            .join()
            .map_err(|_| io::Error::other("a churn thread panicked"))?;
        report.absorb(&c, &m);
        ledger.extend(l);
    }
    report.elapsed = t0.elapsed();
    ledger.sort_by(|x, y| x.client_id.cmp(&y.client_id));
    report.counters.insert("held".into(), ledger.len() as u64);
    if let Some(note) = no_offer_note(a, &report.counters) {
        report.notes.push(note);
    }
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let acks = report.counters.get("acks").copied().unwrap_or(0) as f64;
    report.rates.insert("acks/s".into(), acks / secs);
    Ok((report, ledger))
}

/// The line that explains DISCOVER timeouts: the server sends no OFFER when the subnet's pool
/// has no free address (or port set) left, so clients that never got one point at the pool.
fn no_offer_note(a: &ChurnArgs, c: &Counters) -> Option<String> {
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    let n = get("timeouts_discover");
    if n == 0 {
        return None;
    }
    let selector = if a.relay {
        format!("relay link-address {}", a.link)
    } else {
        match direct_source(a.server) {
            Ok(s) => format!("direct clients from {s}"),
            Err(_) => "direct clients".to_string(),
        }
    };
    Some(format!(
        "no OFFER for {n} clients: the server's pool for this link may be exhausted ({selector}; \
         {} asked for a full address, {} for a shared one; see `loadgen churn --help` for how \
         the server picks the subnet)",
        get("no_offer_full"),
        get("no_offer_shared")
    ))
}

/// The IPv6 source the kernel picks for datagrams to `server`: the link a direct client's
/// bindings are recorded under (the server selects by the client's source).
pub fn direct_source(server: SocketAddr) -> io::Result<Ipv6Addr> {
    let s = UdpSocket::bind("[::]:0")?;
    s.connect(server)?;
    match s.local_addr()?.ip() {
        std::net::IpAddr::V6(a) => Ok(a),
        std::net::IpAddr::V4(_) => Err(io::Error::other("not an IPv6 server")),
    }
}

/// How many progress steps a run takes (for the progress bar).
pub fn steps(a: &ChurnArgs) -> u64 {
    let n = u64::from(a.clients);
    let rel = (0..a.clients)
        .filter(|i| pick(a.first + i, 0, a.release_ratio))
        .count() as u64;
    n * (1 + u64::from(a.renewals)) + rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_is_deterministic_and_near_the_ratio() {
        let n = (0..10_000).filter(|i| pick(*i, 1, 0.3)).count();
        assert!((2_700..3_300).contains(&n), "{n}");
        assert_eq!(pick(5, 1, 0.3), pick(5, 1, 0.3));
        assert!((0..1000).all(|i| !pick(i, 2, 0.0)));
        assert!((0..1000).all(|i| pick(i, 2, 1.0)));
    }
}
