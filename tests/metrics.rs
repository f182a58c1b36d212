//! Issue 16 parts 1 and 2: `GET /metrics` (Prometheus text 0.0.4) and `GET /healthz`.
//!
//! - the figures follow the work: a churn (`loadgen churn`) and a DHCP4o6 bulk query move the
//!   counters exactly (DHCPACKs sent = DHCPACKs the clients got, bindings streamed = the bulk
//!   answer's bindings, new leases = clients), and `promtool check metrics` accepts the output;
//! - `/healthz` is 503 before the shards serve (the import file is a FIFO the test has not
//!   written yet, so "before" is certain), 200 while serving, 503 during a shutdown that a
//!   running query holds open;
//! - slow, garbage, oversize and flooding HTTP clients get bounded answers while a bulk query on
//!   the same server completes;
//! - a `metrics_listen` that cannot be bound stops the start (exit 1, naming the key), and
//!   `--check-config` checks the key.

mod active_common;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::metrics::{get, http, promtool_check, scrape, scrape_until, sum};
use common::{free_port, query_4o6_link, ServerBuilder, TempDir};
use leasequery::proto::codes::v6msg;

/// Sends a DHCP4o6 bulk query by link and reads it to its end: the bindings received.
fn bulk_4o6(lq6: SocketAddr, xid: u32) -> usize {
    let mut c = common::Conn::connect(lq6);
    c.send(&query_4o6_link(xid));
    let mut bindings = 0;
    loop {
        let m = c.recv().expect("the stream ended without LEASEQUERY-DONE");
        match m[0] {
            v6msg::LEASEQUERY_REPLY | v6msg::LEASEQUERY_DATA => bindings += 1,
            v6msg::LEASEQUERY_DONE => return bindings,
            t => panic!("unexpected message type {t}"),
        }
    }
}

#[test]
fn metrics_follow_a_churn_and_a_bulk_query_and_pass_promtool() {
    const IMPORTED: usize = 300;
    const CLIENTS: u64 = 60;
    let data = TempDir::new("metrics-data");
    let srv = ServerBuilder::new()
        .shards(2)
        .import(common::import_4o6(IMPORTED))
        .data_dir(data.path())
        .start();
    let m = srv.metrics;
    let first = scrape(m);
    assert_eq!(sum(&first, "leasequeryd_serving", &[]), 1.0, "{first}");
    assert_eq!(
        sum(&first, "leasequeryd_imported_bindings", &[("family", "v4")]),
        IMPORTED as f64
    );
    promtool_check(&first);

    // The churn: CLIENTS DORAs and one renewal each.
    let out = TempDir::new("metrics-churn");
    let (s, lq) = (srv.dhcp4o6.to_string(), srv.lq6.to_string());
    let clients = CLIENTS.to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--out",
            out.path().to_str().unwrap(),
            "churn",
            "--server",
            &s,
        ])
        .args(["--server6-lq", &lq, "--timeout", "10", "--retries", "3"])
        .args([
            "--clients",
            &clients,
            "--renewals",
            "1",
            "--concurrency",
            "8",
        ])
        .output()
        .expect("run loadgen");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let counter = |k: &str| summary["counters"][k].as_u64().unwrap_or(0);
    // DHCPACKs the clients got (REQUESTs and INFORMs), and leases they hold at the end (some
    // clients release theirs).
    let acks = counter("acks") + counter("inform_acks");
    assert_eq!(counter("acks"), 2 * CLIENTS, "{summary}");
    let held = counter("held");

    // The bulk query: every binding on the link.
    let streamed = bulk_4o6(srv.lq6, 0x4d45);
    assert!(streamed >= IMPORTED, "{streamed}");

    let text = scrape_until(&srv, "the churn's DHCPACKs published", |t| {
        sum(
            t,
            "leasequeryd_dhcpv4_messages_sent_total",
            &[("type", "DHCPACK")],
        ) == acks as f64
    });
    let s = |name: &str, labels: &[(&str, &str)]| sum(&text, name, labels);
    assert!(
        s(
            "leasequeryd_dhcpv4_messages_sent_total",
            &[("type", "DHCPOFFER")]
        ) >= CLIENTS as f64
    );
    assert_eq!(
        s(
            "leasequeryd_subnet_cumulative_assigned_addresses_total",
            &[]
        ),
        CLIENTS as f64,
        "one new lease per client"
    );
    assert_eq!(
        s("leasequeryd_dhcp4o6_replies_sent_total", &[]),
        s("leasequeryd_dhcp4o6_request_duration_seconds_count", &[]),
        "one handling time per reply sent"
    );
    assert!(s("leasequeryd_dhcp4o6_replies_sent_total", &[]) >= acks as f64);
    // Bulk: exactly what the requestor received, in the dhcp4o6 family, one query.
    assert_eq!(
        s(
            "leasequeryd_bulk_bindings_sent_total",
            &[("family", "dhcp4o6")]
        ),
        streamed as f64
    );
    assert_eq!(
        s("leasequeryd_bulk_bindings_sent_total", &[("family", "v6")]),
        0.0
    );
    assert_eq!(
        s(
            "leasequeryd_queries_total",
            &[("type", "bulk"), ("family", "dhcp4o6")]
        ),
        1.0
    );
    assert_eq!(
        s(
            "leasequeryd_bulk_queries_ended_total",
            &[("outcome", "completed")]
        ),
        1.0
    );
    assert_eq!(s("leasequeryd_bulk_query_duration_seconds_count", &[]), 1.0);
    assert_eq!(
        s("leasequeryd_bulk_query_first_binding_seconds_count", &[]),
        1.0
    );
    // The journal: one commit-duration observation per commit, and commits happened.
    let commits = s("leasequeryd_journal_commits_total", &[]);
    assert!(commits >= 1.0, "{text}");
    assert_eq!(
        s("leasequeryd_journal_commit_duration_seconds_count", &[]),
        commits
    );
    assert!(s("leasequeryd_journal_appends_total", &[]) >= (2 * CLIENTS) as f64);
    // Gauges: the table holds the imported bindings and the leases the clients hold, active.
    let text = scrape_until(&srv, "the binding counts refreshed", |t| {
        sum(
            t,
            "leasequeryd_bindings",
            &[("family", "dhcp4o6"), ("state", "active")],
        ) == (IMPORTED as u64 + held) as f64
    });
    // Per subnet (the embedded demo: "full" 192.0.2.0/24, "shared" 198.51.100.0/24 with
    // 16 PSIDs per address, where the imported bindings are): every active lease in a pool is
    // an assigned address of "full" or an assigned port set of "shared". The 16 imported
    // bindings of 198.51.100.0 are outside the pool (it starts at .1).
    let sub = |name: &str, subnet: &str| sum(&text, name, &[("subnet", subnet)]);
    assert_eq!(
        sub("leasequeryd_subnet_assigned_addresses", "full")
            + sub("leasequeryd_subnet_assigned_port_sets", "shared"),
        (IMPORTED as u64 - 16 + held) as f64,
        "{text}"
    );
    assert!(sub("leasequeryd_subnet_assigned_addresses", "shared") >= (IMPORTED / 16 - 1) as f64);
    assert!(sub("leasequeryd_subnet_total_addresses", "full") > 0.0);
    assert_eq!(sub("leasequeryd_subnet_declined_addresses", "full"), 0.0);
    assert!(sub("leasequeryd_subnet_total_port_sets", "shared") > 0.0);
    // An open connection is a gauge; it goes back to 0 when closed.
    let c = srv.connect6();
    scrape_until(&srv, "one connection open", |t| {
        sum(t, "leasequeryd_connections_open", &[]) == 1.0
    });
    drop(c);
    let last = scrape_until(&srv, "no connection open", |t| {
        sum(t, "leasequeryd_connections_open", &[]) == 0.0
    });
    promtool_check(&last);
}

#[test]
fn healthz_before_while_and_during_a_held_shutdown() {
    const RCVBUF: usize = 16 * 1024;
    let dir = TempDir::new("metrics-fifo");
    let fifo = dir.path().join("import.jsonl");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    // Enough bindings that a requestor that does not read holds its stream (tests/shutdown.rs).
    let n = (2 * (common::kernel_capacity(RCVBUF) + 2 * 3 * 256 * 1024) / 200 + 1).max(60_000);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let builder = ServerBuilder::new()
        .shards(2)
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--shutdown-deadline")
        .arg("30")
        .arg("--import")
        .arg(fifo.display().to_string());
    let starting = std::thread::spawn(move || builder.start());
    // Before: the server waits for the import file, which the test has not written.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        if let Some(a) = get(metrics, "/healthz") {
            break a;
        }
        assert!(Instant::now() < deadline, "/healthz never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(before.0, 503, "{before:?}");
    let early = scrape(metrics);
    assert_eq!(sum(&early, "leasequeryd_serving", &[]), 0.0, "{early}");
    promtool_check(&early);
    {
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(common::import_4o6(n).as_bytes()).unwrap();
    }
    let mut srv = starting.join().expect("server started");
    assert_eq!(srv.metrics, metrics);
    // While serving.
    let (status, _, body) = get(metrics, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let head = http(metrics, b"HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((head.0, head.2.as_str()), (200, ""));
    // During shutdown: a stream its requestor does not read holds the shutdown open.
    let mut c = common::Conn::connect_small_window(srv.lq6, RCVBUF);
    c.send(&query_4o6_link(7));
    assert!(c.recv().is_some(), "the stream's first message");
    srv.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(metrics, "/healthz").expect("the server still answers");
        if status == 503 {
            assert!(body.contains("not serving"), "{body}");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "/healthz stayed 200 after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = scrape(metrics);
    assert_eq!(sum(&t, "leasequeryd_serving", &[]), 0.0);
    drop(c);
    let status = srv.wait_exit(Duration::from_secs(40)).expect("exits");
    assert!(status.success(), "{status:?}\n{}", srv.log());
}

#[test]
fn slow_garbage_and_oversize_http_clients_get_bounded_answers_while_a_bulk_query_completes() {
    const N: usize = 3000;
    let srv = ServerBuilder::new()
        .shards(2)
        .import(common::import_4o6(N))
        .start();
    let m = srv.metrics;
    // Slow clients: connect and never send; more of them than the responder serves at once.
    let slow: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(m).unwrap()).collect();
    // A bulk query on the same server completes meanwhile.
    let lq6 = srv.lq6;
    let bulk = std::thread::spawn(move || bulk_4o6(lq6, 0x51));
    // Each slow client is closed by the server within the connection bound (5 s) or refused at
    // once (over the 16 connections served at once).
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "a slow client was not closed: {r:?}"
        );
    }
    assert_eq!(bulk.join().unwrap(), N, "the bulk answer is whole");
    // Garbage and wrong requests: bounded answers.
    let cases: [(&[u8], u16); 6] = [
        (b"\x00\xff\xfe garbage\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405),
        (
            b"POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            405,
        ),
        (b"GET /healthz?verbose=1 HTTP/1.0\r\n\r\n", 200),
    ];
    for (req, want) in cases {
        let (status, head, _) = http(m, req).expect("an answer");
        assert_eq!(status, want, "{:?}: {head}", String::from_utf8_lossy(req));
    }
    // A request head over the limit (8 KiB) is refused.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    let (status, _, _) = http(m, &big).expect("an answer to the oversize request");
    assert_eq!(status, 431);
    // The server is still whole: a second bulk query and a scrape.
    assert_eq!(bulk_4o6(srv.lq6, 0x52), N);
    let text = scrape_until(&srv, "both bulk queries counted", |t| {
        sum(t, "leasequeryd_bulk_bindings_sent_total", &[]) == (2 * N) as f64
    });
    assert_eq!(
        sum(
            &text,
            "leasequeryd_bulk_queries_ended_total",
            &[("outcome", "completed")]
        ),
        2.0
    );
}

#[test]
fn a_metrics_listen_in_use_stops_the_start_and_check_config_checks_the_key() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .args(["--shards", "1", "--metrics-listen", &addr])
        .args(["--lq6-listen", &format!("[::1]:{}", free_port())])
        .args(["--lq4-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--dhcp4o6-listen", &format!("[::1]:{}", free_port())])
        .stdin(Stdio::null())
        .output()
        .expect("run leasequeryd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("metrics_listen") && err.contains(&addr),
        "{err}"
    );
    drop(held);

    let check = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
            .arg("--check-config")
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, _) = check(&[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("metrics_listen = \"127.0.0.1:9967\""), "{out}");
    let (code, out, _) = check(&["--metrics-listen", "off"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("metrics_listen = \"off\""), "{out}");
    let (code, _, err) = check(&["--metrics-listen", "nowhere"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("metrics-listen") || err.contains("metrics_listen"),
        "{err}"
    );
    let dir = TempDir::new("metrics-cfg");
    for (text, needle) in [
        ("metrics_listen = \"9967\"\n", "metrics_listen"),
        (
            "lq4_listen = \"127.0.0.1:6767\"\nmetrics_listen = \"127.0.0.1:6767\"\n",
            "metrics_listen 127.0.0.1:6767 is also lq4_listen",
        ),
    ] {
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = check(&["--config", f.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: {err}");
    }
}

/// Active leasequery: one update-latency observation per live update written, the subscriber
/// gauge, and the largest backlog gauge back at 0 once the updates are written.
#[test]
fn active_updates_are_timed_and_subscribers_counted() {
    use active_common::{unix_now, v4_line, Env, Sub};
    const N: u32 = 40;
    let env = Env::start("", None);
    let mut sub = Sub::v4_ready(&env, 0x77);
    scrape_until(&env.srv, "one active subscriber", |t| {
        sum(t, "leasequeryd_active_subscribers", &[]) == 1.0
    });
    let now = unix_now();
    let lines: Vec<String> = (0..N).map(|i| v4_line(i, "active", now)).collect();
    env.append(&lines);
    let want: Vec<u32> = (0..N).collect();
    let seen = sub.until_seen(&want);
    assert!(seen.len() >= N as usize);
    let text = scrape_until(&env.srv, "every update written and timed", |t| {
        sum(t, "leasequeryd_active_updates_sent_total", &[]) == seen.len() as f64
            && sum(t, "leasequeryd_active_update_latency_seconds_count", &[]) == seen.len() as f64
            // (published once a second: the backlog as it stands once everything is written)
            && sum(t, "leasequeryd_active_backlog_bindings_max", &[]) == 0.0
    });
    assert_eq!(
        sum(
            &text,
            "leasequeryd_feed_lines_total",
            &[("result", "applied")]
        ),
        N as f64
    );
    assert_eq!(
        sum(
            &text,
            "leasequeryd_queries_total",
            &[("type", "active"), ("family", "v4")]
        ),
        1.0
    );
    promtool_check(&text);
    drop(sub);
    scrape_until(&env.srv, "no active subscriber", |t| {
        sum(t, "leasequeryd_active_subscribers", &[]) == 0.0
    });
}

/// Without promtool on PATH the lint fails under LQD_REQUIRE_PEERS and skips loudly without it.
#[test]
fn a_missing_promtool_fails_under_lqd_require_peers() {
    if std::env::var("LQD_METRICS_INNER").is_ok() {
        promtool_check("leasequeryd_x 1\n");
        return;
    }
    let empty = TempDir::new("no-promtool");
    for require in [true, false] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "a_missing_promtool_fails_under_lqd_require_peers",
            "--exact",
        ])
        .env("PATH", empty.path())
        .env("LQD_METRICS_INNER", "1")
        .env_remove("LQD_REQUIRE_PEERS");
        if require {
            cmd.env("LQD_REQUIRE_PEERS", "1");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.success(), !require, "{err}");
        assert!(err.contains("promtool"), "{err}");
        if !require {
            assert!(err.contains("SKIPPED"), "{err}");
        }
    }
}
