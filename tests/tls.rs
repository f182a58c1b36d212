//! TLS with mutual authentication (issue 15): STARTTLS on TCP 547 (DHCPv6 and DHCP4o6),
//! DHCPTLS on TCP 67, bulk and active leasequery over TLS, the refusals and their counters,
//! the ClientHello in the STARTTLS segment, SIGHUP reloading the server certificate, and one
//! DHCPv4 message per TLS record. Certificates are made here with rcgen; the requestor side
//! is the library's connector (`leasequery::tlsclient`).

#[path = "active_common/mod.rs"]
mod active_common;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use active_common::{o6_line, unix_now, v4_line, v6_line, Env, Form, Got, Sub, EPOCH_2000};
use common::pki::{Ca, Leaf, Pki};
use common::{import_4o6, log_counter, query_4o6_link, Conn, ServerBuilder, TempDir};
use leasequery::proto::codes::{v4status, v6status};
use leasequery::proto::v6::V6Option;
use leasequery::requestor::{query, reply, Answer, BulkV6, Table, Wire};
use leasequery::tlsclient;
use rustls::pki_types::ServerName;

/// The server's PKI (tests/common/pki.rs), in a directory of its own with the config files.
struct Setup {
    dir: TempDir,
    pki: Pki,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let pki = Pki::new(dir.path());
        Setup { dir, pki }
    }

    /// Config lines: `tls = mode`, the three files, and `extra` (no DHCP4o6 authority: its
    /// demo pools would add unbound addresses to the DHCPv4 "all configured" answers).
    fn config(&self, mode: &str, extra: &str) -> String {
        format!(
            "authority_enabled = false\n{}{extra}\n",
            self.pki.config(mode)
        )
    }

    /// The client configuration of requestor `leaf` (or none: no certificate).
    fn client(&self, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        self.pki.ca.client(leaf)
    }

    /// A config file with `text`, kept in the PKI's directory.
    fn write_config(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("lqd.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn name_of(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A TLS requestor connection (STARTTLS on TCP 547, DHCPTLS on TCP 67).
fn tls(addr: SocketAddr, wire: Wire, cfg: Arc<rustls::ClientConfig>) -> Conn {
    Conn::tls(addr, wire, cfg).expect("TLS connection")
}

/// Runs one bulk query on `c`: every message, and the table of bindings they carry.
fn bulk(c: &mut Conn, wire: Wire, msg: &[u8]) -> (Vec<Vec<u8>>, Table) {
    c.send(msg);
    let mut stream = reply::Stream::bulk(wire);
    let mut table = Table::new();
    let mut msgs = Vec::new();
    while stream.end().is_none() {
        let m = c.recv().expect("the stream ends before the server closes");
        if let Answer::Binding(b) = stream.handle(&m) {
            table.apply(&b);
        }
        msgs.push(m);
    }
    (msgs, table)
}

fn kinds(wire: Wire, msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .map(|m| match reply::classify(wire, m) {
            Answer::Binding(_) => "binding".to_string(),
            a => format!("{a:?}"),
        })
        .collect()
}

fn v6_query(xid: u32) -> Vec<u8> {
    let duid = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    query::v6_bulk(
        xid,
        &duid,
        &BulkV6::Link("2001:db8:2::".parse().unwrap()),
        &[],
    )
}

fn import_all() -> String {
    let mut s = import_4o6(300);
    for i in 0..120 {
        s.push_str(&v6_line(i, 1_767_225_600));
        s.push('\n');
    }
    s
}

/// True when the connection ends without any message: closed, reset, or a TLS alert.
fn refused(c: &mut Conn) -> bool {
    c.recv().is_none()
}

#[test]
fn bulk_over_tls_gives_the_plain_results_for_v6_dhcp4o6_and_v4() {
    let st = Setup::new("tls-bulk");
    let cfg = st.write_config(&st.config("optional", ""));
    let srv = ServerBuilder::new()
        .import(import_all())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let client = st.client(Some(&st.pki.requestor));
    for (wire, addr, msg, bindings) in [
        (Wire::V6, srv.lq6, v6_query(0x601), 120),
        (Wire::O6, srv.lq6, query_4o6_link(0x602), 300),
        (Wire::V4, srv.lq4, common::bulk_v4_all(0x603), 300),
    ] {
        let mut plain = Conn::connect(addr);
        let (pm, pt) = bulk(&mut plain, wire, &msg);
        let mut secure = tls(addr, wire, client.clone());
        let (tm, tt) = bulk(&mut secure, wire, &msg);
        assert_eq!(pt.len(), bindings, "{wire:?}: every binding, plain");
        assert_eq!(
            tt.iter().collect::<std::collections::HashMap<_, _>>(),
            pt.iter().collect::<std::collections::HashMap<_, _>>(),
            "{wire:?}: the same bindings over TLS"
        );
        assert_eq!(kinds(wire, &tm), kinds(wire, &pm), "{wire:?}: same stream");
        assert_eq!(tm.len(), pm.len());
        // A second query on the same TLS connection works too.
        let (tm2, _) = bulk(&mut secure, wire, &msg);
        assert_eq!(tm2.len(), pm.len());
    }
}

#[test]
fn active_over_tls_in_every_form_with_catch_up_and_live_updates() {
    let st = Setup::new("tls-active");
    let env = Env::start(
        &st.config("required", "allow_insecure_active = false"),
        None,
    );
    let client = st.client(Some(&st.pki.requestor));
    let sub = |addr, wire, form: Form, msg: Vec<u8>| {
        let mut c = tls(addr, wire, client.clone());
        c.send(&msg);
        Sub {
            c,
            form,
            deadline: Instant::now() + active_common::SUB_DEADLINE,
        }
    };
    // A v4 watcher (catch-up from now: it is registered once its CatchUpComplete comes).
    let mut watch = sub(
        env.srv.lq4,
        Wire::V4,
        Form::V4 { xid: 1 },
        active_common::active4(1, Some(unix_now())),
    );
    assert_eq!(
        watch.next_real(),
        Some(Got::Status {
            done: false,
            code: 7
        })
    );
    // The catch-up start: no later than the changes below.
    let t0 = unix_now();
    let now = t0;
    let mut lines = Vec::new();
    for i in 0..10 {
        lines.push(v4_line(i, "active", now));
        lines.push(o6_line(1000 + i, "active", now));
        lines.push(v6_line(2000 + i, now));
    }
    env.append(&lines);
    let v4_keys: Vec<u32> = (0..10).chain(1000..1010).collect();
    watch.until_seen(&v4_keys);
    // Every form over TLS, with a catch-up from before those changes.
    let mut s4 = sub(
        env.srv.lq4,
        Wire::V4,
        Form::V4 { xid: 0x44 },
        active_common::active4(0x44, Some(t0)),
    );
    let mut s6 = sub(
        env.srv.lq6,
        Wire::V6,
        Form::V6 { xid: 0x66 },
        active_common::active6(0x66, vec![V6Option::LqStartTime(t0 - EPOCH_2000)]),
    );
    let mut s46 = sub(
        env.srv.lq6,
        Wire::O6,
        Form::O6 {
            xid6: 0x46,
            xid4: 0x4646,
        },
        active_common::active4o6(0x46, 0x4646, Some(t0 - EPOCH_2000)),
    );
    assert_eq!(s6.next_real(), Some(Got::Reply(None)));
    assert_eq!(s46.next_real(), Some(Got::Reply(None)));
    let catch_up = |s: &mut Sub, complete: u16| {
        let mut keys = Vec::new();
        loop {
            match s.next_real().expect("open") {
                Got::Update { key, bound } => {
                    assert!(bound);
                    keys.push(key);
                }
                Got::Status { done: false, code } if code == complete => break,
                g => panic!("{g:?}"),
            }
        }
        keys.sort();
        keys
    };
    assert_eq!(catch_up(&mut s4, 7), v4_keys);
    assert_eq!(
        catch_up(&mut s6, v6status::CATCH_UP_COMPLETE),
        (2000..2010).collect::<Vec<_>>()
    );
    assert_eq!(
        catch_up(&mut s46, v6status::CATCH_UP_COMPLETE),
        (1000..1010).collect::<Vec<_>>()
    );
    // Live updates.
    env.append(&[
        v4_line(50, "active", now + 1),
        o6_line(1050, "active", now + 1),
        v6_line(2050, now + 1),
    ]);
    assert_eq!(s4.until_seen(&[50, 1050]).len(), 2);
    assert_eq!(s46.until_seen(&[1050]), vec![(1050, true)]);
    assert_eq!(s6.until_seen(&[2050]), vec![(2050, true)]);
    drop((s4, s6, s46, watch));
    let mut srv = env.srv;
    srv.terminate();
    let log = srv.log();
    assert_eq!(log_counter(&log, "tls_handshakes"), 4, "{log}");
    assert_eq!(log_counter(&log, "active_started"), 4, "{log}");
}

#[test]
fn every_refusal_closes_moves_its_counter_and_leaves_others_alone() {
    let st = Setup::new("tls-refuse");
    let other_dir = TempDir::new("tls-other");
    let other_ca = Ca::new(other_dir.path(), "other");
    let foreign = other_ca.leaf("requestor1.test", false);
    let expired = st.pki.ca.expired("requestor-old.test", false);
    let stranger = st.pki.ca.leaf("stranger.test", false);
    let spki = leasequery::tls::spki_sha256_hex(
        &rustls::pki_types::CertificateDer::from_pem_slice(st.pki.requestor.cert.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let cfg = st.write_config(&st.config(
        "required",
        &format!(
            "active = true\ntls_handshake_timeout = 1\n\
             tls_allowed_requestors = [\"dns:requestor1.test\", \"cn:requestor-old.test\", \"spki-sha256:{spki}\"]"
        ),
    ));
    let srv = ServerBuilder::new()
        .import(import_all())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    use rustls::pki_types::pem::PemObject;
    let good = st.client(Some(&st.pki.requestor));
    // A good requestor keeps a TLS connection open through all the refusals.
    let mut keeper = tls(srv.lq6, Wire::V6, good.clone());
    let attempt = |cfg: Arc<rustls::ClientConfig>, wire: Wire| {
        let addr = if wire == Wire::V4 { srv.lq4 } else { srv.lq6 };
        match Conn::tls(addr, wire, cfg) {
            // TLS 1.3: the client is done before the server judged its certificate; the
            // server's alert (and close) comes on the first read.
            Ok(mut c) => {
                let q = if wire == Wire::V4 {
                    common::bulk_v4_all(9)
                } else {
                    v6_query(9)
                };
                // The server may have closed already: a failed write is a refusal too.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.send(&q)));
                assert!(
                    refused(&mut c),
                    "{wire:?}: no answer after a refused handshake"
                );
            }
            Err(e) => eprintln!("refused in the handshake: {e}"),
        }
    };
    attempt(st.client(None), Wire::V6);
    attempt(st.client(Some(&foreign)), Wire::V4);
    attempt(st.client(Some(&expired)), Wire::V6);
    attempt(st.client(Some(&stranger)), Wire::V4);
    // A handshake that stalls past tls_handshake_timeout (1 s): STARTTLS answered, then
    // nothing; the server closes.
    let mut stall = tcp(srv.lq6);
    stall.write_all(&framed(&query::starttls(3))).unwrap();
    let mut c = Conn::with_io(stall.try_clone().unwrap(), Box::new(stall));
    let answer = c.recv().expect("STARTTLS answered");
    assert_eq!(
        reply::tls_answer(Wire::V6, 3, &answer),
        reply::TlsAnswer::Accepted
    );
    assert!(c.closed_silently(Duration::from_secs(10)));
    // Not TLS after DHCPTLS: the handshake fails (protocol), the connection closes.
    let mut s = tcp(srv.lq4);
    s.write_all(&framed(&query::dhcptls(11))).unwrap();
    let mut c = Conn::with_io(s.try_clone().unwrap(), Box::new(s));
    let answer = c.recv().expect("DHCPTLS answered");
    assert_eq!(
        reply::tls_answer(Wire::V4, 11, &answer),
        reply::TlsAnswer::Accepted
    );
    c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused(&mut c));
    // Any plain query in required mode: closed without an answer.
    let mut c = Conn::connect(srv.lq6);
    c.send(&v6_query(4));
    assert!(refused(&mut c));
    let mut c = Conn::connect(srv.lq4);
    c.send(&common::bulk_v4_all(4));
    assert!(refused(&mut c));
    // STARTTLS as a second message (over TLS): closed.
    let mut c = tls(srv.lq6, Wire::V6, good.clone());
    c.send(&query::starttls(5));
    assert!(refused(&mut c));
    // The allowed ones: by DNS name (good) and by the key's SHA-256 both pass.
    let (_, t) = bulk(&mut keeper, Wire::V6, &v6_query(6));
    assert_eq!(t.len(), 120, "the kept connection is unaffected");
    let mut c = tls(srv.lq4, Wire::V4, good.clone());
    assert_eq!(bulk(&mut c, Wire::V4, &common::bulk_v4_all(7)).1.len(), 300);
    drop((keeper, c));
    let mut srv = srv;
    srv.terminate();
    let log = srv.log();
    for (name, n) in [
        ("tls_failed_no_certificate", 1),
        ("tls_failed_unknown_ca", 1),
        ("tls_failed_bad_certificate", 1),
        ("tls_failed_not_allowed", 1),
        ("tls_failed_timeout", 1),
        ("tls_failed_protocol", 1),
        ("tls_refused_plain_required", 2),
        ("tls_handshakes", 3),
    ] {
        assert_eq!(log_counter(&log, name), n, "{name}\n{log}");
    }
    assert!(log_counter(&log, "closed_protocol_error") >= 1, "{log}");
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

#[test]
fn optional_mode_refuses_plain_active_and_off_refuses_starttls() {
    let st = Setup::new("tls-modes");
    let env = Env::start(
        &st.config("optional", "allow_insecure_active = false"),
        None,
    );
    // Plain active: NotAllowed and close.
    let mut c = env.srv.connect6();
    c.send(&active_common::active6(0x61, vec![]));
    let m = c.recv().expect("an answer");
    assert_eq!(
        active_common::classify6(&m, 0x61, None),
        Got::Reply(Some(v6status::NOT_ALLOWED))
    );
    assert!(c.recv().is_none());
    let mut c = env.srv.connect4();
    c.send(&active_common::active4(0x41, None));
    let m = c.recv().expect("an answer");
    assert_eq!(
        active_common::classify4(&m, 0x41),
        Got::Status {
            done: false,
            code: u16::from(v4status::NOT_ALLOWED)
        }
    );
    assert!(c.recv().is_none());
    // Plain bulk is still served; active over TLS too.
    let mut c = env.srv.connect4();
    assert!(bulk(&mut c, Wire::V4, &common::bulk_v4_all(1)).0.len() == 1);
    let mut c = tls(env.srv.lq6, Wire::V6, st.client(Some(&st.pki.requestor)));
    c.send(&active_common::active6(0x62, vec![]));
    assert_eq!(
        active_common::classify6(&c.recv().unwrap(), 0x62, None),
        Got::Reply(None)
    );
    drop(c);
    let mut srv = env.srv;
    srv.terminate();
    let log = srv.log();
    assert_eq!(log_counter(&log, "tls_refused_plain_active"), 2, "{log}");

    // tls = off: TLSConnectionRefused, counted.
    let mut srv = ServerBuilder::new().start();
    for wire in [Wire::V6, Wire::V4] {
        let addr = if wire == Wire::V4 { srv.lq4 } else { srv.lq6 };
        match tlsclient::connect(
            tcp(addr),
            wire,
            8,
            st.client(Some(&st.pki.requestor)),
            name_of(addr),
        ) {
            Err(tlsclient::ConnectError::Refused(s)) => {
                assert_eq!(s.v6(), v6status::TLS_CONNECTION_REFUSED)
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("TLS is off"),
        }
    }
    srv.terminate();
    assert_eq!(
        log_counter(&srv.log(), "tls_refused_not_configured"),
        2,
        "{}",
        srv.log()
    );
}

#[test]
fn a_client_hello_in_the_starttls_segment_is_not_lost() {
    let st = Setup::new("tls-hello");
    let cfg = st.write_config(&st.config("required", ""));
    let srv = ServerBuilder::new()
        .import(import_all())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    for (wire, addr, q) in [
        (Wire::V6, srv.lq6, v6_query(1)),
        (Wire::V4, srv.lq4, common::bulk_v4_all(1)),
    ] {
        let mut conn =
            rustls::ClientConnection::new(st.client(Some(&st.pki.requestor)), name_of(addr))
                .unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        assert!(!hello.is_empty());
        let req = if wire == Wire::V4 {
            query::dhcptls(0x99)
        } else {
            query::starttls(0x99)
        };
        // STARTTLS and the ClientHello in one write (one segment on loopback).
        let mut seg = framed(&req);
        seg.extend_from_slice(&hello);
        let mut s = tcp(addr);
        s.write_all(&seg).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(
            reply::tls_answer(wire, 0x99, &answer),
            reply::TlsAnswer::Accepted
        );
        while conn.is_handshaking() {
            conn.complete_io(&mut s).unwrap();
        }
        let keep = s.try_clone().unwrap();
        let mut c = Conn::with_io(keep, Box::new(rustls::StreamOwned::new(conn, s)));
        let n = if wire == Wire::V4 { 300 } else { 120 };
        assert_eq!(bulk(&mut c, wire, &q).1.len(), n);
    }
}

#[test]
fn sighup_reloads_the_server_certificate_and_keeps_running_subscriptions() {
    let st = Setup::new("tls-reload");
    let env = Env::start(&st.config("required", ""), None);
    let client = st.client(Some(&st.pki.requestor));
    let peer_cert = |addr| {
        let s = tcp(addr);
        let t = tlsclient::connect(s, Wire::V6, 1, client.clone(), name_of(addr)).unwrap();
        t.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    let first = peer_cert(env.srv.lq6);
    let mut sub = {
        let mut c = tls(env.srv.lq4, Wire::V4, client.clone());
        c.send(&active_common::active4(0x40, Some(unix_now())));
        Sub {
            c,
            form: Form::V4 { xid: 0x40 },
            deadline: Instant::now() + active_common::SUB_DEADLINE,
        }
    };
    assert_eq!(
        sub.next_real(),
        Some(Got::Status {
            done: false,
            code: 7
        })
    );
    // A new server certificate in the same files; SIGHUP.
    let renewed = st.pki.ca.leaf("lqd.test", true);
    assert_eq!(renewed.cert_path, st.pki.server.cert_path);
    let reloads = |log: &str| log.matches("reloaded the TLS certificate").count();
    env.srv.signal("HUP");
    wait_for(|| reloads(&env.srv.log()) == 1);
    let second = peer_cert(env.srv.lq6);
    assert_ne!(first, second, "new handshakes get the new certificate");
    assert_eq!(
        second,
        rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert.as_bytes())
            .unwrap()
            .as_ref()
    );
    // A bad file on reload: logged, the old material kept.
    std::fs::write(&st.pki.server.cert_path, "not a certificate").unwrap();
    env.srv.signal("HUP");
    wait_for(|| env.srv.log().contains("TLS material not reloaded"));
    assert_eq!(peer_cert(env.srv.lq6), second);
    // The subscription that started before the reloads still gets its updates.
    env.append(&[v4_line(7, "active", unix_now())]);
    assert_eq!(sub.until_seen(&[7]), vec![(7, true)]);
    use rustls::pki_types::pem::PemObject;
}

fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A transport that keeps a copy of every octet read from the server once `on` is set.
struct Tap {
    s: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
    on: Arc<AtomicBool>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.s.read(buf)?;
        if self.on.load(Ordering::SeqCst) {
            self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

/// The TLS records (content type, length) in `raw`.
fn records(raw: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= raw.len() {
        let len = u16::from_be_bytes([raw[at + 3], raw[at + 4]]) as usize;
        out.push((raw[at], len));
        at += 5 + len;
    }
    assert_eq!(at, raw.len(), "whole records");
    out
}

/// A bulk stream over TLS 1.3 whose records are seen raw: (messages, records after the
/// handshake).
fn tapped_bulk(addr: SocketAddr, wire: Wire, st: &Setup, q: &[u8]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let cfg = {
        let c = rustls::ClientConfig::builder_with_provider(leasequery::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates({
                let mut r = rustls::RootCertStore::empty();
                r.add(st.pki.ca.cert.der().clone()).unwrap();
                r
            })
            .with_client_auth_cert(
                vec![rustls::pki_types::CertificateDer::from_pem_slice(
                    st.pki.requestor.cert.as_bytes(),
                )
                .unwrap()],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(st.pki.requestor.key.as_bytes())
                    .unwrap(),
            )
            .unwrap();
        Arc::new(c)
    };
    use rustls::pki_types::pem::PemObject;
    let s = tcp(addr);
    let keep = s.try_clone().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let on = Arc::new(AtomicBool::new(false));
    let tap = Tap {
        s,
        log: log.clone(),
        on: on.clone(),
    };
    let t = tlsclient::connect(tap, wire, 2, cfg, name_of(addr)).unwrap();
    // The handshake is done (no session tickets are sent): every record from here on carries
    // the stream.
    on.store(true, Ordering::SeqCst);
    let mut c = Conn::with_io(keep, Box::new(t));
    let (msgs, _) = bulk(&mut c, wire, q);
    // Every record of the stream has arrived once the last message is read.
    let raw = log.lock().unwrap().clone();
    let recs = records(&raw);
    assert!(
        recs.iter().all(|&(t, _)| t == 23),
        "application data only: {recs:?}"
    );
    // TLS 1.3 AEAD: the plaintext is the record less the inner content type and the 16-octet tag.
    (msgs, recs.iter().map(|&(_, l)| l - 17).collect())
}

#[test]
fn one_dhcpv4_message_per_tls_record_and_v6_streams_coalesce() {
    let st = Setup::new("tls-records");
    let cfg = st.write_config(&st.config("required", ""));
    let srv = ServerBuilder::new()
        .import(import_all())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    // TCP 67: as many records as messages, each exactly one framed message.
    let (msgs, recs) = tapped_bulk(srv.lq4, Wire::V4, &st, &common::bulk_v4_all(3));
    assert_eq!(msgs.len(), 301, "300 bindings and the DONE");
    let framed: Vec<usize> = msgs.iter().map(|m| m.len() + 2).collect();
    assert_eq!(recs, framed, "one DHCPv4 message per TLS record");
    // TCP 547: the same bindings in DHCP4o6 coalesce into few, full records.
    let (msgs, recs) = tapped_bulk(srv.lq6, Wire::O6, &st, &query_4o6_link(4));
    assert_eq!(msgs.len(), 301);
    let total: usize = msgs.iter().map(|m| m.len() + 2).sum();
    assert_eq!(recs.iter().sum::<usize>(), total, "every octet, in records");
    assert!(
        recs.len() * 4 < msgs.len(),
        "{} records for {} messages: coalesced",
        recs.len(),
        msgs.len()
    );
}

#[test]
fn bad_tls_settings_stop_the_start_naming_the_key_and_the_file() {
    let st = Setup::new("tls-config");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
            .args(args)
            .args(["--metrics-listen", "off"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let cert = st.pki.server.cert_path.display().to_string();
    let key = st.pki.server.key_path.display().to_string();
    let ca = st.pki.ca.path.display().to_string();
    // tls on without the files.
    let (code, err) = run(&["--check-config", "--tls", "required", "--tls-cert", &cert]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_key"), "{err}");
    // A missing file.
    let missing = st.dir.path().join("missing.pem");
    let m = missing.display().to_string();
    let (code, err) = run(&[
        "--check-config",
        "--tls",
        "optional",
        "--tls-cert",
        &m,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_cert") && err.contains(&m), "{err}");
    // A key that does not go with the certificate (the requestor's key).
    let other_key = st.pki.requestor.key_path.display().to_string();
    let (code, err) = run(&[
        "--check-config",
        "--tls",
        "optional",
        "--tls-cert",
        &cert,
        "--tls-key",
        &other_key,
        "--tls-client-ca",
        &ca,
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_key") && err.contains(&other_key), "{err}");
    // Garbage as the CA.
    let (code, err) = run(&[
        "--check-config",
        "--tls",
        "optional",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &key,
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_client_ca"), "{err}");
    // The same at a real start (no --check-config): exit code and message.
    let (code, err) = run(&[
        "--tls",
        "optional",
        "--tls-cert",
        &cert,
        "--tls-key",
        &other_key,
        "--tls-client-ca",
        &ca,
        "--lq6-listen",
        "[::1]:0",
        "--lq4-listen",
        "127.0.0.1:0",
        "--no-authority",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("tls_key"), "{err}");
    // A good setup passes the check.
    let (code, err) = run(&[
        "--check-config",
        "--tls",
        "optional",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    assert_eq!(code, Some(0), "{err}");
    // A bad allowed-requestor entry names the key.
    let cfg = st.write_config(&st.config("optional", "tls_allowed_requestors = [\"ip:1.2.3.4\"]"));
    let (code, err) = run(&["--check-config", "--config", &cfg.display().to_string()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_allowed_requestors"), "{err}");
}
