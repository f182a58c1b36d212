//! Shared test support: runs `leasequeryd` as a child process on free loopback ports and stops
//! it (SIGTERM, then SIGKILL) when dropped.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod metrics;
pub mod peers;
pub mod pki;

/// Test client `n`'s option 61 payload in RFC 4361 form: type 255, IAID `n`, and a DUID-LL
/// (type 3, hardware type 1) of the MAC address 02:00:00:00 followed by `n`'s low 16 bits.
pub fn rfc4361_client_id(n: u32) -> Vec<u8> {
    let mut v = vec![255];
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&[0, 3, 0, 1, 2, 0, 0, 0, (n >> 8) as u8, n as u8]);
    v
}

/// The sum over shards of a counter in a server's exit log (its `counters:` lines).
pub fn log_counter(log: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    log.lines()
        .filter(|l| l.contains("counters:"))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix(key.as_str()))
        .map(|v| v.parse::<u64>().expect("a counter's value is a number"))
        .sum()
}

/// A free TCP port on loopback (IPv4 and IPv6 both checked), found by binding port 0.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if TcpListener::bind(("::1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("::1", port)).is_ok()
        {
            return port;
        }
    }
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub lq6: SocketAddr,
    pub lq4: SocketAddr,
    /// The DHCP4o6 authority's UDP address.
    pub dhcp4o6: SocketAddr,
    /// Where `/metrics` and `/healthz` answer (a free port of its own, so parallel servers
    /// never meet on the default 127.0.0.1:9967; `0.0.0.0:0` when the test passed
    /// `--metrics-listen off`).
    pub metrics: SocketAddr,
    pub log: Arc<Mutex<String>>,
    /// Signalled when the reader thread has taken the last of the log (the pipe closed).
    log_done: Option<std::sync::mpsc::Receiver<()>>,
    _dir: Option<TempDir>,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    /// A new, empty directory no other `TempDir` of any process shares: the name carries the
    /// process id and a per-process counter (a free port in the name was not unique: two test
    /// threads can be given the same port one after the other, and the first to finish removed
    /// the directory the other was still writing, tests/lqctl.rs), and creation fails if the
    /// path exists.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("lqd-{tag}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return TempDir(p),
                // Left by an earlier process with the same id: take the next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", p.display()),
            }
        }
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct ServerBuilder {
    fixed: Option<(SocketAddr, SocketAddr, SocketAddr)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    import: Option<String>,
    shards: usize,
}

impl ServerBuilder {
    pub fn new() -> Self {
        ServerBuilder {
            fixed: None,
            env: Vec::new(),
            args: Vec::new(),
            import: None,
            shards: 2,
        }
    }
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    /// JSON-lines import content.
    pub fn import(mut self, jsonl: impl Into<String>) -> Self {
        self.import = Some(jsonl.into());
        self
    }
    /// Listen on these addresses (TCP v6 leasequery, TCP v4 leasequery, UDP DHCP4o6) instead
    /// of fresh free ports.
    pub fn listen(mut self, lq6: SocketAddr, lq4: SocketAddr, dhcp4o6: SocketAddr) -> Self {
        self.fixed = Some((lq6, lq4, dhcp4o6));
        self
    }
    /// An environment variable for the server process.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// Runs the server durable, with its journal in `dir` (`--data-dir`).
    pub fn data_dir(self, dir: &Path) -> Self {
        self.arg("--data-dir").arg(dir.display().to_string())
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn start(self) -> Server {
        self.try_start()
            .unwrap_or_else(|log| panic!("leasequeryd did not start; log:\n{log}"))
    }
    /// Starts the server; its log when it does not come up within 30 s.
    pub fn try_start(self) -> Result<Server, String> {
        let dir = TempDir::new("srv");
        let (lq6, lq4, dhcp4o6) = self.fixed.unwrap_or_else(|| {
            (
                format!("[::1]:{}", free_port()).parse().unwrap(),
                format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                format!("[::1]:{}", free_port()).parse().unwrap(),
            )
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasequeryd"));
        if !self.args.iter().any(|a| a == "--dhcp4o6-listen") {
            cmd.arg("--dhcp4o6-listen").arg(dhcp4o6.to_string());
        }
        let metrics: SocketAddr = match self.args.iter().position(|a| a == "--metrics-listen") {
            Some(i) => self
                .args
                .get(i + 1)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| "0.0.0.0:0".parse().unwrap()),
            None => {
                let m: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                cmd.arg("--metrics-listen").arg(m.to_string());
                m
            }
        };
        cmd.arg("--shards").arg(self.shards.to_string());
        cmd.arg("--lq6-listen")
            .arg(lq6.to_string())
            .arg("--lq4-listen")
            .arg(lq4.to_string());
        if let Some(j) = &self.import {
            let f = dir.path().join("leases.jsonl");
            std::fs::write(&f, j).unwrap();
            cmd.arg("--import").arg(f);
        }
        cmd.args(&self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn leasequeryd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.contains("leasequeryd serving") {
                    let _ = tx.send(());
                }
                log2.lock().unwrap().push_str(&line);
                line.clear();
            }
            let _ = done_tx.send(());
        });
        let mut server = Server {
            child: Some(child),
            lq6,
            lq4,
            dhcp4o6,
            metrics,
            log,
            log_done: Some(done_rx),
            _dir: Some(dir),
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let log = server.log.lock().unwrap().clone();
            server.kill();
            return Err(log);
        }
        Ok(server)
    }
}

impl Server {
    pub fn start_default() -> Server {
        ServerBuilder::new().start()
    }
    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(15))
    }
    /// Sends a signal (by name, e.g. "TERM") to the server.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            unsafe_free_kill(c.id(), sig);
        }
    }
    /// Waits (bounded) for the server to exit; kills it when the time runs out.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                self.drain_log();
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.drain_log();
        }
    }
    /// Waits (bounded) until the reader thread has taken the whole log of the exited server:
    /// the exit does not wait for the pipe, and the last lines (the exit flush) may still be
    /// in it when `wait` returns.
    fn drain_log(&mut self) {
        if let Some(done) = self.log_done.take() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }
    /// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
    /// The log once `done` holds for it, or `None` after `within`. The log reaches the test
    /// through a pipe and a reader thread, so a line the server wrote before it answered a
    /// datagram may still be on its way when the answer arrives.
    pub fn log_when(&self, within: Duration, done: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if done(&log) {
                return Some(log);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn connect6(&self) -> Conn {
        Conn::connect(self.lq6)
    }
    pub fn connect4(&self) -> Conn {
        Conn::connect(self.lq4)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

/// Sends a signal with the `kill` command (the tests keep `unsafe` out, like the crate).
fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// What a requestor connection reads and writes when it is not the plain socket (a TLS
/// stream over it, `tests/tls.rs`).
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A blocking requestor connection with the 2-octet framing.
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
    /// Messages go through this instead of `s` when set (TLS); `s` is the socket under it.
    io: Option<Box<dyn Io>>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            s,
            buf: Vec::new(),
            io: None,
        }
    }
    /// A connection whose messages go through `io` (e.g. TLS) over the socket `s`.
    pub fn with_io(s: TcpStream, io: Box<dyn Io>) -> Conn {
        Conn {
            s,
            buf: Vec::new(),
            io: Some(io),
        }
    }
    /// A requestor connection over TLS (`leasequery::tlsclient`): STARTTLS (`wire` V6 or O6)
    /// or DHCPTLS (V4) to `addr`, then the handshake with `cfg`, the server's certificate
    /// checked for the address connected to.
    pub fn tls(
        addr: SocketAddr,
        wire: leasequery::requestor::Wire,
        cfg: Arc<rustls::ClientConfig>,
    ) -> Result<Conn, leasequery::tlsclient::ConnectError> {
        let c = Conn::connect(addr);
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let t = leasequery::tlsclient::connect(c.s.try_clone()?, wire, 0x5151, cfg, name)?;
        Ok(Conn::with_io(c.s, Box::new(t)))
    }
    /// Like [`Conn::connect`], with SO_RCVBUF set to `rcvbuf` octets before connecting (no
    /// receive-window autotuning: a requestor that reads slowly stalls the server's sends soon).
    pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> Conn {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        sock.set_recv_buffer_size(rcvbuf).unwrap();
        sock.connect_timeout(&addr.into(), Duration::from_secs(5))
            .expect("connect");
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            s,
            buf: Vec::new(),
            io: None,
        }
    }
    /// Writes one framed message.
    pub fn send(&mut self, msg: &[u8]) {
        let mut f = (msg.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(msg);
        self.send_raw(&f);
    }
    pub fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.io {
            Some(io) => {
                io.write_all(bytes).unwrap();
                io.flush().unwrap();
            }
            None => self.s.write_all(bytes).unwrap(),
        }
    }
    /// Reads one framed message; `None` when the server closed the connection.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 2 {
                let n = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
                if self.buf.len() >= 2 + n {
                    let m = self.buf[2..2 + n].to_vec();
                    self.buf.drain(..2 + n);
                    return Some(m);
                }
            }
            let mut tmp = [0u8; 65536];
            let read = match &mut self.io {
                Some(io) => io.read(&mut tmp),
                None => self.s.read(&mut tmp),
            };
            match read {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no reply within the read timeout")
                }
                Err(_) => return None,
            }
        }
    }
    /// True when the server closes the connection within `within` without sending anything.
    pub fn closed_silently(&mut self, within: Duration) -> bool {
        self.s.set_read_timeout(Some(within)).unwrap();
        let mut tmp = [0u8; 16];
        match self.s.read(&mut tmp) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// `n` DHCP4o6 bindings on one link, 16 PSIDs per address.
pub fn import_4o6(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let a = std::net::Ipv4Addr::from(0xc633_6400u32 + (i / 16) as u32);
        writeln!(
            s,
            r#"{{"ipv4":"{a}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"020000{:06x}","client_id":"ff{:08x}0003000102{:08x}","state":"active","cltt":1767225600,"expires":1867225600,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}:{:x}"}}"#,
            i % 16,
            i,
            i,
            i,
            i >> 16,
            i & 0xffff
        )
        .unwrap();
    }
    s
}

/// A DHCPv4 bulk query for all configured addresses (RFC 6926 §6.2), PRL 51, 91, 109, 159.
pub fn bulk_v4_all(xid: u32) -> Vec<u8> {
    use leasequery::requestor::{query, BulkV4};
    query::v4_bulk(xid, &BulkV4::All, &[51, 91, 109, 159])
}

/// A DHCP4o6 bulk query by link address 2001:db8:1:: carrying `bulk_v4_all` (the draft's
/// QUERY_BY_LINK_ADDRESS), ORO 92, from the requestor DUID-LL aa:bb:cc:dd:ee:ff.
pub fn query_4o6_link(xid: u32) -> Vec<u8> {
    use leasequery::requestor::{query, BulkV6};
    let link = "2001:db8:1::".parse().unwrap();
    let duid = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    query::o6_bulk(
        xid,
        &duid,
        &BulkV6::Link(link),
        query::O6_ORO,
        bulk_v4_all(0x11223344),
    )
}

/// The most octets the kernel can hold of one stream whose requestor does not read: the
/// server's send buffer (at most `tcp_wmem`'s maximum, or twice `wmem_max`, read from /proc)
/// and the requestor's locked receive buffer of `rcvbuf` (4x, for the kernel's doubling and
/// overhead). Tests that need a stream the kernel cannot swallow make it larger than this.
pub fn kernel_capacity(rcvbuf: usize) -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20);
    let core_wmem = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0usize);
    wmem_max.max(2 * core_wmem) + 4 * rcvbuf
}
