//! `loadgen bulk`: K requestors run bulk queries in parallel (closed loop, or open loop at a
//! target rate with latency taken from each query's intended start, so a stalled server shows
//! up as latency instead of as fewer samples).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{Counters, Metric, RunReport};
use crate::requestor::{classify, Conn, Kind, KindExt, Port, QueryKind, Tls};

/// What `loadgen bulk` was asked to do.
#[derive(Debug, Clone)]
pub struct BulkArgs {
    /// TCP 547 address.
    pub server6: SocketAddr,
    /// TCP 67 address.
    pub server4: SocketAddr,
    /// Requestors (one thread and one connection per kind each).
    pub requestors: usize,
    /// Queries per requestor.
    pub queries: u64,
    /// Stop after this long even if queries remain.
    pub duration: Option<Duration>,
    /// Open loop: queries per second per requestor (None: closed loop).
    pub rate: Option<f64>,
    /// Query kinds, used in turn.
    pub kinds: Vec<QueryKind>,
    /// Bindings every stream must return (checked when given).
    pub expect: Option<u64>,
    /// Read/connect timeout.
    pub timeout: Duration,
    /// Bulk leasequery over TLS.
    pub tls: Option<Tls>,
}

/// Runs the scenario; `progress` counts finished queries.
pub fn run(a: &BulkArgs, progress: Arc<AtomicU64>) -> RunReport {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..a.requestors)
        .map(|i| {
            let a = a.clone();
            let core = cores.get(i % cores.len().max(1)).copied();
            let progress = progress.clone();
            std::thread::spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                requestor(i, &a, t0, &progress)
            })
        })
        .collect();
    let mut report = RunReport {
        scenario: "bulk".into(),
        ..Default::default()
    };
    for h in handles {
        let (c, m) = h.join().expect("requestor thread");
        report.absorb(&c, &m);
    }
    report.elapsed = t0.elapsed();
    let secs = report.elapsed.as_secs_f64();
    let get = |k: &str| report.counters.get(k).copied().unwrap_or(0) as f64;
    report
        .rates
        .insert("bindings/s".into(), get("bindings") / secs);
    report.rates.insert("bytes/s".into(), get("bytes") / secs);
    report
}

fn requestor(i: usize, a: &BulkArgs, t0: Instant, progress: &AtomicU64) -> (Counters, Vec<Metric>) {
    let mut c = Counters::new();
    let mut first = Metric::new("time_to_first_binding", "us");
    let mut dur = Metric::new("stream_duration", "us");
    let mut per = Metric::new("bindings_per_stream", "bindings");
    let mut conns: [Option<Conn>; 2] = [None, None];
    let add = |c: &mut Counters, k: &str, v: u64| *c.entry(k.to_owned()).or_default() += v;
    for q in 0..a.queries {
        // The intended start: now (closed loop) or on the open-loop schedule.
        let intended = match a.rate {
            Some(r) => t0 + Duration::from_secs_f64(q as f64 / r),
            None => Instant::now(),
        };
        if let Some(d) = a.duration {
            if intended.duration_since(t0) >= d {
                break;
            }
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let kind = &a.kinds[(i + q as usize) % a.kinds.len()];
        let (slot, addr) = match kind.port() {
            Port::V6 => (0, a.server6),
            Port::V4 => (1, a.server4),
        };
        if conns[slot].is_none() {
            match Conn::connect(addr, kind.port(), a.timeout, a.tls.as_ref()) {
                Ok(conn) => conns[slot] = Some(conn),
                Err(e) => {
                    // A TLS failure (a certificate the CA does not sign, a refusal) is said
                    // once per requestor and counted apart.
                    let tls = a.tls.is_some() && e.to_string().starts_with("TLS with ");
                    let key = if tls {
                        "error_connect_tls".to_string()
                    } else {
                        format!("error_connect_{:?}", e.kind())
                    };
                    if !c.contains_key(&key) {
                        eprintln!("loadgen: requestor {i}: connect to {addr}: {e}");
                    }
                    add(&mut c, &key, 1);
                    progress.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let conn = conns[slot].as_mut().expect("connected above");
        let xid = ((i as u32) << 16 | (q as u32 & 0xffff)) & 0xff_ffff;
        add(&mut c, "sent", 1);
        if let Err(e) = conn.send(&kind.query(xid)) {
            add(&mut c, &format!("error_send_{:?}", e.kind()), 1);
            conns[slot] = None;
            continue;
        }
        let before = conn.bytes();
        let mut bindings = 0u64;
        let mut first_at = None;
        let port = kind.port();
        let res = conn.read_stream(|m| match classify(port, m) {
            Kind::Binding => {
                if first_at.is_none() {
                    first_at = Some(Instant::now());
                }
                bindings += 1;
                true
            }
            Kind::End => false,
            Kind::Other => true,
        });
        let end = Instant::now();
        let at = end.duration_since(t0);
        match res {
            Ok(()) => {
                add(&mut c, "received", 1);
                add(&mut c, "bindings", bindings);
                add(&mut c, "bytes", conn.bytes() - before);
                if let Some(f) = first_at {
                    first.record(at, f.duration_since(intended).as_micros() as u64);
                }
                dur.record(at, end.duration_since(intended).as_micros() as u64);
                per.record(at, bindings);
                if a.expect.is_some_and(|e| e != bindings) {
                    add(&mut c, "error_wrong_binding_count", 1);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                add(&mut c, "timeouts", 1);
                conns[slot] = None;
            }
            Err(e) => {
                let key = format!("error_read_{:?}", e.kind());
                if !c.contains_key(&key) {
                    eprintln!("loadgen: requestor {i}: reading from {addr}: {e}");
                }
                add(&mut c, &key, 1);
                conns[slot] = None;
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    for m in [&mut first, &mut dur, &mut per] {
        m.finish();
    }
    (c, vec![first, dur, per])
}
