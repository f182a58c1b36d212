//! Bulk streaming benchmark (issue: "Stream every binding of 1 million 4o6 bindings to one
//! requestor"), with the loopback ceiling measured in the same run.
//!
//! `cargo bench --bench bulk_stream` (env: `BULK_N` bindings, default 1000000; `BULK_RUNS`
//! runs per case, default 5; `BULK_SHARDS` "1,2"; `BULK_CONCURRENT` requestors for the
//! concurrent case, default 8; `BULK_CHUNK` the server's chunk_size; `BULK_CONFIG` more config
//! lines, `;`-separated, e.g. `BULK_CONFIG="spin_before_park_us = 50;credits_per_shard = 4"`;
//! `BULK_SCRAPE_HZ` e.g. 100: every second run of a case scrapes the server's `/metrics` at that
//! rate during the stream, and the medians with and without scraping are printed side by side;
//! `BULK_TLS=0` leaves out the TLS case). Prints one line per run and the medians; quote
//! ratios, not absolute figures (the machine is shared and noisy).
//!
//! The TLS case (issue 15): the same DHCP4o6 stream over STARTTLS to one requestor
//! (`leasequery::tlsclient`, certificates by tests/common/pki.rs with rcgen, the server in `tls =
//! "optional"` so that the plain cases run against the same server), with the STARTTLS +
//! handshake time reported apart and the time to first binding counted from the query, after
//! the handshake; then the ratio of its median bindings/s to the plain stream's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasequery::requestor::Wire;
use leasequery::tlsclient;

/// The test PKI (a CA, the server's and a requestor's certificates), shared with the tests.
#[path = "../tests/common/pki.rs"]
mod pki;

/// The server's default chunk_size: octets per socket write.
const CHUNK: usize = 256 * 1024;

/// The write size of this run: `BULK_CHUNK` (also given to the server) or the default, so the
/// ceiling writes what the server writes.
fn chunk() -> usize {
    std::env::var("BULK_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CHUNK)
}

fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if TcpListener::bind(("::1", p)).is_ok() {
            return p;
        }
    }
}

fn write_import(n: usize, path: &std::path::Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        // 16 PSIDs per address: n/16 addresses from 10.0.0.0 on (benchmark data, never sent
        // anywhere: the server only listens on loopback).
        let a = (i / 16) as u32 + (10u32 << 24);
        let psid = i % 16;
        let ip = std::net::Ipv4Addr::from(a);
        writeln!(
            f,
            r#"{{"ipv4":"{ip}","psid":{{"offset":0,"len":4,"id":{psid}}},"chaddr":"02:00:{:02x}:{:02x}:{:02x}:{:02x}","client_id":"ff{:08x}00030001020000{:06x}","state":"active","cltt":1700000000,"expires":2000000000,"relay_id":"000300010200000000{:02x}","remote_id":"{:016x}","link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}:{:x}"}}"#,
            (i >> 24) & 255,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            i,
            i & 0xffffff,
            i % 7,
            i,
            i >> 16,
            i & 0xffff
        )
        .unwrap();
    }
}

struct Srv {
    child: Child,
    lq6: SocketAddr,
    lq4: SocketAddr,
    metrics: SocketAddr,
}

/// Scrapes `GET /metrics` at `hz` per second until `stop`; the number of complete answers.
fn scraper(
    addr: SocketAddr,
    hz: f64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let period = Duration::from_secs_f64(1.0 / hz);
        let mut next = Instant::now();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n");
                let mut body = Vec::new();
                if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                    n += 1;
                }
            }
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        n
    })
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(import: &std::path::Path, shards: usize, tls: Option<&pki::Pki>) -> Srv {
    let lq6: SocketAddr = format!("[::1]:{}", free_port()).parse().unwrap();
    let lq4: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasequeryd"));
    // BULK_CHUNK: the server's chunk_size (octets per socket write); BULK_CONFIG: more config
    // lines (e.g. "spin_before_park_us = 50"); both through a config file.
    let mut cfg_text = String::new();
    if let Ok(chunk) = std::env::var("BULK_CHUNK") {
        cfg_text.push_str(&format!("chunk_size = {chunk}\n"));
    }
    if let Some(p) = tls {
        cfg_text.push_str(&p.config("optional"));
    }
    if let Ok(extra) = std::env::var("BULK_CONFIG") {
        cfg_text.push_str(&extra.replace(';', "\n"));
        cfg_text.push('\n');
    }
    if !cfg_text.is_empty() {
        let cfg = import.with_extension(format!("{shards}.toml"));
        std::fs::write(&cfg, cfg_text).unwrap();
        cmd.arg("--config").arg(cfg);
    }
    let mut child = cmd
        .args([
            "--shards",
            &shards.to_string(),
            "--lq6-listen",
            &lq6.to_string(),
            "--lq4-listen",
            &lq4.to_string(),
            "--metrics-listen",
            &metrics.to_string(),
        ])
        .arg("--import")
        .arg(import)
        // The imported bindings only: with the embedded demo authority, the v4 "all" query
        // would also list its free pool addresses.
        .args(["--max-connections", "64", "--log", "warn", "--no-authority"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if TcpStream::connect(lq4).is_ok() && TcpStream::connect(lq6).is_ok() {
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            panic!("server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Srv {
        child,
        lq6,
        lq4,
        metrics,
    }
}

/// DHCP4o6 bulk query: LEASEQUERY(q=4 link 2001:db8:1::, ORO[92]) + OPTION_DHCPV4_MSG(DHCPBULKLEASEQUERY).
fn query_4o6(xid: u32) -> Vec<u8> {
    let mut m = vec![14, (xid >> 16) as u8, (xid >> 8) as u8, xid as u8];
    m.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    m.extend_from_slice(&[0, 44, 0, 23, 4]);
    m.extend_from_slice(
        &"2001:db8:1::"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    m.extend_from_slice(&[0, 6, 0, 2, 0, 92]);
    let v4 = bulk_v4(0x11223344);
    m.extend_from_slice(&[0, 87]);
    m.extend_from_slice(&(v4.len() as u16).to_be_bytes());
    m.extend_from_slice(&v4);
    m
}

/// DHCPv4 DHCPBULKLEASEQUERY with no primary selector (all configured addresses).
fn bulk_v4(xid: u32) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m.extend_from_slice(&[99, 130, 83, 99, 53, 1, 14, 55, 4, 51, 91, 152, 159, 255]);
    m
}

struct Run {
    first: Duration,
    total: Duration,
    bytes: u64,
    messages: u64,
    /// CPU time of the requestor's thread over the stream.
    cpu: Duration,
    /// Over TLS: connect to the end of the handshake (STARTTLS, its REPLY, the TLS handshake).
    handshake: Option<Duration>,
}

/// A requestor's connection: plain TCP or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID, nanosecond resolution).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A process's CPU time so far: (all threads' run time from `/proc/PID/task/*/schedstat`, in
/// ns; user and system clock ticks from `/proc/PID/stat`, for the split). Threads that have
/// exited are not in `task/`: the server's shards live as long as the process.
fn proc_cpu(pid: u32) -> (u64, u64, u64) {
    let mut run_ns = 0u64;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                run_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
    (run_ns, tick(11), tick(12))
}

/// Sends one framed query and reads until the stream's end: DONE (v6 16) or a lone REPLY (15
/// without data) for v6, DHCPLEASEQUERYDONE for v4. With `tls`, STARTTLS (v6) / DHCPTLS (v4)
/// and the handshake come first and are timed apart: the stream's times start at the query.
fn run_query(
    addr: SocketAddr,
    query: &[u8],
    v4: bool,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Run {
    let h0 = Instant::now();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let (mut s, handshake): (Box<dyn Conn>, Option<Duration>) = match tls {
        None => (Box::new(tcp), None),
        Some(config) => {
            tcp.set_nodelay(true).unwrap();
            let wire = if v4 { Wire::V4 } else { Wire::V6 };
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let s = tlsclient::connect(tcp, wire, 0x5151, config.clone(), name).unwrap();
            (Box::new(s), Some(h0.elapsed()))
        }
    };
    let mut f = (query.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(query);
    let t0 = Instant::now();
    let c0 = thread_cpu();
    s.write_all(&f).unwrap();
    s.flush().unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let (mut have, mut pos) = (0usize, 0usize);
    let mut first = None;
    let mut bytes = 0u64;
    let mut messages = 0u64;
    loop {
        // Parse complete frames.
        while have - pos >= 2 {
            let n = u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize;
            if have - pos < 2 + n {
                break;
            }
            let msg = &buf[pos + 2..pos + 2 + n];
            messages += 1;
            if first.is_none() {
                first = Some(t0.elapsed());
            }
            let end = if v4 {
                msg.len() > 242 && find_v4_type(msg) == Some(15)
            } else {
                msg[0] == 16 || (msg[0] == 15 && messages == 1 && n < 64)
            };
            pos += 2 + n;
            if end {
                return Run {
                    first: first.unwrap(),
                    total: t0.elapsed(),
                    bytes: bytes + pos as u64,
                    messages,
                    cpu: thread_cpu() - c0,
                    handshake,
                };
            }
        }
        if pos > 0 {
            buf.copy_within(pos..have, 0);
            bytes += pos as u64;
            have -= pos;
            pos = 0;
        }
        let r = s.read(&mut buf[have..]).unwrap();
        assert!(r > 0, "server closed before the end of the stream");
        have += r;
    }
}

fn find_v4_type(m: &[u8]) -> Option<u8> {
    let mut i = 240;
    while i + 1 < m.len() {
        match m[i] {
            0 => i += 1,
            255 => return None,
            53 => return m.get(i + 2).copied(),
            _ => i += 2 + m[i + 1] as usize,
        }
    }
    None
}

/// What the ceiling took: the reader's wall time from its connect to the last octet, and the
/// CPU time of the sending and of the reading thread.
struct Ceiling {
    wall: Duration,
    sender_cpu: Duration,
    reader_cpu: Duration,
}

/// The loopback ceiling: a plain sender of pre-filled buffers of the server's write size
/// (`chunk()`), `bytes` in all.
fn ceiling(bytes: u64) -> Ceiling {
    let l = TcpListener::bind("[::1]:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let write_size = chunk();
        let buf = vec![0x5au8; write_size];
        let c0 = thread_cpu();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(write_size as u64) as usize;
            s.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
        thread_cpu() - c0
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let t0 = Instant::now();
    let c0 = thread_cpu();
    let mut got = 0u64;
    while got < bytes {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n as u64;
    }
    let wall = t0.elapsed();
    let reader_cpu = thread_cpu() - c0;
    let sender_cpu = sender.join().unwrap();
    Ceiling {
        wall,
        sender_cpu,
        reader_cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BULK_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("BULK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let conc: usize = std::env::var("BULK_CONCURRENT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let shard_list: Vec<usize> = std::env::var("BULK_SHARDS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let scrape_hz: f64 = std::env::var("BULK_SCRAPE_HZ")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&h: &f64| h > 0.0)
        .unwrap_or(0.0);
    let with_tls = std::env::var("BULK_TLS").map_or(true, |v| v != "0");
    let dir = std::env::temp_dir().join(format!("lq-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let import = dir.join("leases.jsonl");
    write_import(n, &import);
    let pki = with_tls.then(|| pki::Pki::new(&dir));
    let client = pki.as_ref().map(|p| p.client());
    println!(
        "bulk_stream: {n} 4o6 bindings, {runs} runs per case, chunk {} octets{}",
        chunk(),
        if with_tls {
            ", TLS case on (server tls = optional)"
        } else {
            ""
        }
    );
    for &shards in &shard_list {
        let srv = start(&import, shards, pki.as_ref());
        let mut cases = vec![
            (
                "4o6 by-link (TCP 547)",
                srv.lq6,
                query_4o6(0xabcdef),
                false,
                None,
            ),
            ("v4 all (TCP 67)", srv.lq4, bulk_v4(7), true, None),
        ];
        if let Some(c) = &client {
            cases.push((
                "4o6 by-link over TLS (TCP 547)",
                srv.lq6,
                query_4o6(0xabcdef),
                false,
                Some(c),
            ));
        }
        // Median bindings/s of the plain and the TLS 4o6 stream, for their ratio.
        let (mut plain_rate, mut tls_rate) = (None, None);
        for (name, addr, q, v4, tls) in cases {
            let (mut rates, mut bps, mut firsts, mut ratios) = (vec![], vec![], vec![], vec![]);
            let (mut srv_cpu, mut req_cpu, mut ceil_cpu, mut cpu_ratios, mut busy) =
                (vec![], vec![], vec![], vec![], vec![]);
            let mut handshakes = vec![];
            let (mut plain_rates, mut scraped_rates, mut scrapes) = (vec![], vec![], 0u64);
            for run in 0..runs {
                // With BULK_SCRAPE_HZ, odd runs scrape /metrics during the stream.
                let scraping = scrape_hz > 0.0 && run % 2 == 1;
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let scr = scraping.then(|| scraper(srv.metrics, scrape_hz, stop.clone()));
                let p0 = proc_cpu(srv.child.id());
                let r = run_query(addr, &q, v4, tls);
                let p1 = proc_cpu(srv.child.id());
                if let Some(h) = r.handshake {
                    handshakes.push(h.as_secs_f64() * 1e3);
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let note = if let Some(h) = scr {
                    let got = h.join().unwrap();
                    scrapes += got;
                    scraped_rates.push(n as f64 / r.total.as_secs_f64());
                    format!(
                        " [/metrics scraped {got} times, {:.0}/s]",
                        got as f64 / r.total.as_secs_f64()
                    )
                } else {
                    plain_rates.push(n as f64 / r.total.as_secs_f64());
                    String::new()
                };
                assert_eq!(
                    r.messages as usize,
                    n + 1,
                    "{name}: every binding once plus the end"
                );
                let c = ceiling(r.bytes);
                let secs = r.total.as_secs_f64();
                let csecs = c.wall.as_secs_f64();
                rates.push(n as f64 / secs);
                bps.push(r.bytes as f64 / secs);
                firsts.push(r.first.as_secs_f64() * 1e3);
                ratios.push(csecs / secs);
                // CPU per record: the server (all shards), the requestor's thread, and the
                // ceiling's two threads for the same octets. If both were limited by the cores'
                // time alone, the ratio to the ceiling would be ceiling CPU / stream CPU.
                let server_ns = p1.0.saturating_sub(p0.0) as f64 / n as f64;
                let (du, ds) = (p1.1.saturating_sub(p0.1), p1.2.saturating_sub(p0.2));
                let user_share = du as f64 / (du + ds).max(1) as f64;
                let req_ns = r.cpu.as_nanos() as f64 / n as f64;
                let ceil_ns = (c.sender_cpu + c.reader_cpu).as_nanos() as f64 / n as f64;
                srv_cpu.push(server_ns);
                req_cpu.push(req_ns);
                ceil_cpu.push(ceil_ns);
                cpu_ratios.push(ceil_ns / (server_ns + req_ns));
                busy.push((server_ns + req_ns) * n as f64 / 1e9 / secs);
                println!(
                    "  shards={shards} {name}: {:.0} bindings/s, {:.1} MB/s, first {:.2} ms, {} octets; ceiling {:.1} MB/s; ratio {:.2}{}{note}",
                    n as f64 / secs,
                    r.bytes as f64 / secs / 1e6,
                    r.first.as_secs_f64() * 1e3,
                    r.bytes,
                    r.bytes as f64 / csecs / 1e6,
                    csecs / secs,
                    r.handshake.map_or(String::new(), |h| format!(
                        "; handshake {:.2} ms",
                        h.as_secs_f64() * 1e3
                    ))
                );
                println!(
                    "    CPU per record: server {server_ns:.0} ns ({:.0}% user), requestor {req_ns:.0} ns, {:.2} cores busy; ceiling sender {:.0} + reader {:.0} ns, {:.2} cores busy",
                    user_share * 100.0,
                    (server_ns + req_ns) * n as f64 / 1e9 / secs,
                    c.sender_cpu.as_nanos() as f64 / n as f64,
                    c.reader_cpu.as_nanos() as f64 / n as f64,
                    (c.sender_cpu + c.reader_cpu).as_secs_f64() / csecs,
                );
            }
            let rate = median(rates.clone());
            match (tls.is_some(), v4) {
                (true, _) => tls_rate = Some(rate),
                (false, false) => plain_rate = Some(rate),
                _ => {}
            }
            if !handshakes.is_empty() {
                println!(
                    "MEDIAN shards={shards} {name}: handshake (connect, STARTTLS, TLS) {:.2} ms (not in the first binding's time)",
                    median(handshakes)
                );
            }
            println!(
                "MEDIAN shards={shards} {name}: {:.0} bindings/s, {:.1} MB/s, first binding {:.2} ms, ratio to ceiling {:.2}",
                median(rates),
                median(bps) / 1e6,
                median(firsts),
                median(ratios)
            );
            if scrape_hz > 0.0 && !scraped_rates.is_empty() {
                let (a, b) = (median(plain_rates), median(scraped_rates));
                println!(
                    "MEDIAN shards={shards} {name}: without scraping {a:.0} bindings/s, with /metrics scraped at {scrape_hz} Hz {b:.0} bindings/s ({scrapes} scrapes); with/without {:.3}",
                    b / a
                );
            }
            println!(
                "MEDIAN shards={shards} {name}: CPU per record server {:.0} ns + requestor {:.0} ns (ceiling {:.0} ns), {:.2} cores busy; CPU ratio {:.2}",
                median(srv_cpu),
                median(req_cpu),
                median(ceil_cpu),
                median(busy),
                median(cpu_ratios)
            );
        }
        if let (Some(p), Some(t)) = (plain_rate, tls_rate) {
            println!(
                "MEDIAN shards={shards} 4o6 TLS/plain bindings/s: {:.2} (goal >= 0.6)",
                t / p
            );
        }
        // Concurrent requestors, each streaming everything.
        let mut totals = vec![];
        for _ in 0..runs.min(3) {
            let t0 = Instant::now();
            let hs: Vec<_> = (0..conc)
                .map(|i| {
                    let addr = srv.lq6;
                    std::thread::spawn(move || {
                        run_query(addr, &query_4o6(0x100 + i as u32), false, None)
                    })
                })
                .collect();
            let mut bytes = 0;
            for h in hs {
                let r = h.join().unwrap();
                assert_eq!(r.messages as usize, n + 1);
                bytes += r.bytes;
            }
            let secs = t0.elapsed().as_secs_f64();
            totals.push((conc * n) as f64 / secs);
            println!("  shards={shards} {conc} concurrent 4o6 requestors: {:.0} bindings/s total, {:.1} MB/s", (conc * n) as f64 / secs, bytes as f64 / secs / 1e6);
        }
        println!(
            "MEDIAN shards={shards} {conc} concurrent: {:.0} bindings/s total",
            median(totals)
        );
        drop(srv);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
