//! `lqctl bulk`: one bulk query per server, its answer decoded into [`Lease`]s.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leasequery::requestor::reply::{Answer, Ending, Status, Stream, Wire};
use leasequery::requestor::{lease, Lease, QueryKind};

use crate::net::{self, Server};

/// lqctl's DUID (DUID-LL 02:00:00:00:4c:51, "LQ").
pub const REQUESTOR_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0x4c, 0x51];

/// Unix seconds now (for answers without a base time).
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// The name of a DHCPv6 status code (v4 codes are mapped to their v6 twins first).
pub fn status_name(code: u16) -> &'static str {
    match code {
        0 => "Success",
        1 => "UnspecFail",
        2 => "NoAddrsAvail",
        3 => "NoBinding",
        4 => "NotOnLink",
        5 => "UseMulticast",
        7 => "UnknownQueryType",
        8 => "MalformedQuery",
        9 => "NotConfigured",
        10 => "NotAllowed",
        11 => "QueryTerminated",
        12 => "DataMissing",
        13 => "CatchUpComplete",
        14 => "NotSupported",
        15 => "TLSConnectionRefused",
        _ => "unknown status",
    }
}

/// The shared progress line: bindings and bindings/s on stderr, shown only when stderr is a
/// terminal and the dump has taken more than a second.
pub struct Progress {
    pb: ProgressBar,
    start: Instant,
    enabled: bool,
    shown: AtomicBool,
    total: AtomicU64,
}

impl Progress {
    /// A progress line that shows itself after a second when stderr is a terminal and
    /// `enabled`.
    pub fn new(enabled: bool) -> Arc<Progress> {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {pos} bindings, {per_sec} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Arc::new(Progress {
            pb,
            start: Instant::now(),
            enabled: enabled && std::io::stderr().is_terminal(),
            shown: AtomicBool::new(false),
            total: AtomicU64::new(0),
        })
    }

    /// `n` more bindings.
    pub fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        if !self.enabled {
            return;
        }
        if !self.shown.load(Ordering::Relaxed)
            && self.start.elapsed() > Duration::from_secs(1)
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.pb.set_draw_target(ProgressDrawTarget::stderr());
            self.pb.enable_steady_tick(Duration::from_millis(200));
        }
        self.pb.inc(n);
    }

    /// Bindings so far, over all servers.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Removes the line.
    pub fn finish(&self) {
        if self.shown.load(Ordering::Relaxed) {
            self.pb.finish_and_clear();
        }
    }
}

/// One server's bulk query.
pub struct Job {
    /// Its place in the `--server` list.
    pub index: usize,
    /// The server.
    pub server: Server,
    /// The query.
    pub kind: QueryKind,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// Over TLS (`--tls-cert`, `--tls-key`, `--tls-ca`).
    pub tls: Option<net::Tls>,
    /// `--verbose`.
    pub verbose: bool,
    /// The shared progress line.
    pub progress: Arc<Progress>,
}

impl Job {
    /// The server as it will be reached.
    pub fn label(&self) -> String {
        self.server.label(self.kind.default_port())
    }

    fn say(&self, what: &str) {
        if self.verbose {
            eprintln!("lqctl: [{}] {what}", self.label());
        }
    }

    /// Connects, sends the query and hands every binding of the answer to `sink` in order.
    /// Returns the bindings seen, or why the query failed (a connection or read error, an
    /// error status, `sink`'s error).
    pub fn run(&self, sink: &mut dyn FnMut(Lease) -> Result<(), String>) -> Result<u64, String> {
        let t0 = Instant::now();
        let label = self.label();
        self.say("connecting");
        let mut conn = net::connect(
            &self.server,
            self.kind.default_port(),
            self.timeout,
            self.tls.as_ref(),
            self.kind.wire(),
        )
        .map_err(|e| format!("{label}: connect: {e}"))?;
        self.say(&format!("connected; query {}", self.kind));
        // Any xid will do (one query per connection); a clock-derived one tells runs apart in
        // a capture.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let xid = (nanos ^ ((self.index as u32) << 20)) & 0xff_ffff;
        conn.send(&self.kind.encode(xid, &REQUESTOR_DUID))
            .map_err(|e| format!("{label}: send: {e}"))?;
        let wire = self.kind.wire();
        let link = self.kind.link();
        let now = unix_now();
        let mut stream = Stream::bulk(wire);
        let mut undecodable = 0u64;
        let mut batch = 0u64;
        let mut failed: Option<String> = None;
        let mut last_note = Instant::now();
        let read = conn.read_stream(|msg| {
            if let Answer::Binding(b) = stream.handle(msg) {
                let base6 = match wire {
                    Wire::V6 => lease::base_time6(msg),
                    _ => None,
                };
                match Lease::from_binding(wire, &b, base6, link, now) {
                    Some(l) => {
                        if let Err(e) = sink(l) {
                            failed = Some(e);
                            return false;
                        }
                    }
                    None => undecodable += 1,
                }
                batch += 1;
                if batch == 1024 {
                    self.progress.add(batch);
                    batch = 0;
                    // --verbose: this server's count every 2 seconds of a long dump.
                    if self.verbose && last_note.elapsed() >= Duration::from_secs(2) {
                        last_note = Instant::now();
                        self.say(&format!("{} bindings so far", stream.bindings()));
                    }
                }
            }
            stream.end().is_none()
        });
        self.progress.add(batch);
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(|e| {
            format!(
                "{label}: {} after {} bindings",
                match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut =>
                        format!("no answer within {:?}", self.timeout),
                    _ => e.to_string(),
                },
                stream.bindings()
            )
        })?;
        if undecodable > 0 {
            eprintln!("lqctl: [{label}] {undecodable} bindings did not decode and were skipped");
        }
        match stream.end() {
            Some(Ending::Complete(None)) => {}
            Some(Ending::Complete(Some(s))) if s.v6() == 0 => {}
            Some(Ending::Complete(Some(s))) => {
                let (layer, code) = match s {
                    Status::V6(c) => ("DHCPv6", c),
                    Status::V4(c) => ("DHCPv4", u16::from(c)),
                };
                return Err(format!(
                    "{label}: the server answered {layer} status {code} ({})",
                    status_name(s.v6())
                ));
            }
            other => {
                return Err(format!(
                    "{label}: the stream ended unexpectedly ({other:?})"
                ))
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        self.say(&format!(
            "done: {} bindings in {secs:.2} s ({:.0} bindings/s)",
            stream.bindings(),
            stream.bindings() as f64 / secs.max(1e-9)
        ));
        Ok(stream.bindings())
    }
}
