//! Connection policy (RFC 5460 §7.1, RFC 6926 §8.1): the requestor allow-list.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::ServerBuilder;

/// A requestor outside the allow-list is closed at once, without a reply.
#[test]
fn requestor_outside_the_allow_list_is_closed_at_once() {
    let srv = ServerBuilder::new()
        .shards(1)
        .arg("--allow")
        .arg("192.0.2.0/24")
        .start();
    for addr in [srv.lq6, srv.lq4] {
        let mut c = common::Conn::connect(addr);
        assert!(
            c.closed_silently(Duration::from_secs(5)),
            "{addr}: not closed"
        );
    }
}

/// Inside the allow-list the connection stays open (the idle timeout is 300 s by default).
#[test]
fn requestor_inside_the_allow_list_stays_connected() {
    let srv = ServerBuilder::new().shards(1).start();
    let mut c = srv.connect6();
    assert!(
        !c.closed_silently(Duration::from_millis(500)),
        "closed although allowed"
    );
}

/// RFC 5460 §7.3, RFC 6926 §8.4 (issue 19 item 1): a requestor that pipelines 12,000 bulk
/// queries and never reads cannot make the server hold their answers. A query counts against
/// `max_queries_per_connection` until its last octet is written, so the server holds at most
/// that many queries' chunks (`shards x credits_per_shard x chunk_size` each) however many
/// queries arrive, and cuts the connection BULK_LQ_DATA_TIMEOUT after its sends blocked.
#[test]
fn pipelined_queries_never_read_are_bounded_in_memory_and_cut_at_the_send_timeout() {
    const QUERIES: u32 = 12_000;
    let mut srv = ServerBuilder::new()
        .shards(2)
        // 100 bindings on the link: each answer (about 38 KB) fits in one chunk per shard.
        .import(common::import_4o6(100))
        .arg("--bulk-lq-data-timeout")
        .arg("3")
        .start();
    // Warm up (the first query's buffers), then take the baseline.
    {
        let mut c = srv.connect6();
        c.send(&common::query_4o6_link(1));
        while let Some(m) = c.recv() {
            if m[0] == leasequery::proto::codes::v6msg::LEASEQUERY_DONE {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let base = srv.rss_kib().expect("the server's RSS");

    let c = common::Conn::connect_small_window(srv.lq6, 16 * 1024);
    let mut s = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut frames = Vec::new();
        for xid in 0..QUERIES {
            let m = common::query_4o6_link(xid + 100);
            frames.extend_from_slice(&(m.len() as u16).to_be_bytes());
            frames.extend_from_slice(&m);
        }
        // Blocks while the server does not read (or fits in the socket buffers); then one more
        // query every 50 ms until a write fails: the server has cut the connection.
        let mut cut = s.write_all(&frames).is_err();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        let more = &frames[..2 + u16::from_be_bytes([frames[0], frames[1]]) as usize];
        while !cut && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            cut = s.write_all(more).is_err();
        }
        (cut, std::time::Instant::now())
    });
    let started = std::time::Instant::now();
    let mut peak = base;
    while !writer.is_finished() && started.elapsed() < Duration::from_secs(30) {
        peak = peak.max(srv.rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cut, at) = writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = srv.rss_kib().unwrap();
    // The documented bound: 4 queries x 2 shards x 2 credits x 256 KiB = 4 MiB of chunks, plus
    // the server's fixed per-connection state; 16 MiB of slack for the allocator.
    let bound_kib = 4 * 2 * 2 * 256 + 16 * 1024;
    eprintln!(
        "RSS: base {base} KiB, peak +{} KiB, after the cut +{} KiB",
        peak - base,
        after.saturating_sub(base)
    );
    assert!(
        peak - base < bound_kib,
        "RSS grew {} KiB (bound {bound_kib} KiB) for {QUERIES} pipelined queries",
        peak - base
    );
    assert!(after.saturating_sub(base) < bound_kib, "RSS after the cut");
    assert!(cut, "the server never cut the connection");
    let waited = at.duration_since(started);
    assert!(
        waited < Duration::from_secs(9),
        "cut after {waited:?} (BULK_LQ_DATA_TIMEOUT 3 s)"
    );
    drop(c);
    srv.terminate();
    let log = srv.log();
    assert_eq!(common::log_counter(&log, "closed_send_timeout"), 1, "{log}");
    assert_eq!(common::log_counter(&log, "closed_idle"), 0, "{log}");
}

/// RFC 5460 §7.2 (issue 19 item 3): a send blocked for BULK_LQ_DATA_TIMEOUT ends the
/// connection: T, not 2T, and counted once. A requestor that stops reading for T/2 still gets
/// its whole stream; one that stops for 3T/2 finds it cut. Each stream is more than twice what
/// the kernel buffers and the server's chunks can hold, so the server's send is blocked during
/// the pause whatever the buffer sizes.
#[test]
fn a_send_blocked_for_the_data_timeout_ends_the_connection_once() {
    use leasequery::proto::codes::{v4msg, v4opt, v4status};
    use leasequery::proto::v4;
    const T: u64 = 2;
    const RCVBUF: usize = 16 * 1024;
    let shards = 2;
    let server_queue = shards * 2 * 256 * 1024;
    // The smallest DHCPv4 LEASEACTIVE of these bindings is about 300 octets.
    let n = (2 * (common::kernel_capacity(RCVBUF) + server_queue) / 200 + 1).max(60_000);
    let mut srv = ServerBuilder::new()
        .shards(shards)
        .import(common::import_4o6(n))
        .arg("--bulk-lq-data-timeout")
        .arg(T.to_string())
        .start();
    let run = |pause: Duration| -> (usize, bool) {
        let mut c = common::Conn::connect_small_window(srv.lq4, RCVBUF);
        c.send(&common::bulk_v4_all(7));
        assert!(c.recv().is_some(), "the stream's first message");
        std::thread::sleep(pause);
        let mut active = 0;
        while let Some(m) = c.recv() {
            let v = v4::MessageView::parse(&m).unwrap();
            match v.message_type() {
                Some(v4msg::LEASEACTIVE) => active += 1,
                Some(v4msg::LEASEQUERYDONE) => {
                    let ok = v
                        .option(v4opt::STATUS_CODE)
                        .is_none_or(|s| s[0] == v4status::SUCCESS);
                    return (active, ok);
                }
                _ => {}
            }
        }
        (active, false)
    };
    let (got, done) = run(Duration::from_millis(T * 1000 / 2));
    assert!(done, "a pause of T/2 cut the stream after {got} of {n}");
    let (got, done) = run(Duration::from_millis(T * 1500));
    assert!(
        !done && got < n,
        "a pause of 3T/2 did not cut the stream ({got} of {n})"
    );
    srv.terminate();
    let log = srv.log();
    assert_eq!(common::log_counter(&log, "closed_send_timeout"), 1, "{log}");
    assert_eq!(common::log_counter(&log, "closed_idle"), 0, "{log}");
}

/// RFC 5460 §7.1, §8 (issue 19 item 4): a frame must be complete BULK_LQ_DATA_TIMEOUT after its
/// first octet, however slowly its octets trickle in; otherwise a few slow peers hold every
/// connection slot.
#[test]
fn a_query_trickled_in_is_cut_at_the_data_timeout_from_its_first_octet() {
    const T: u64 = 2;
    let mut srv = ServerBuilder::new()
        .shards(1)
        .arg("--bulk-lq-data-timeout")
        .arg(T.to_string())
        .start();
    let mut c = common::Conn::connect(srv.lq6);
    // A frame of 100 octets, sent one octet every 250 ms (it would take 25 s).
    let start = std::time::Instant::now();
    c.send_raw(&[0, 100]);
    let cut_at = loop {
        std::thread::sleep(Duration::from_millis(250));
        if c.s.write(&[0]).is_err() || start.elapsed() > Duration::from_secs(4 * T) {
            break start.elapsed();
        }
        let mut b = [0u8; 1];
        c.s.set_nonblocking(true).unwrap();
        let r = c.s.read(&mut b);
        c.s.set_nonblocking(false).unwrap();
        match r {
            Ok(0) => break start.elapsed(),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break start.elapsed(),
            _ => {}
        }
    };
    assert!(
        cut_at >= Duration::from_millis(T * 1000 / 2) && cut_at < Duration::from_millis(T * 1750),
        "cut after {cut_at:?} (BULK_LQ_DATA_TIMEOUT {T} s)"
    );
    srv.terminate();
    let log = srv.log();
    assert_eq!(
        common::log_counter(&log, "closed_frame_timeout"),
        1,
        "{log}"
    );
    assert_eq!(common::log_counter(&log, "closed_idle"), 0, "{log}");
}

/// Issue 16 part 6: SIGHUP reloads the allow-list (and the log filter) from the config file, a
/// file that does not load changes nothing, SIGUSR1 writes the counters to the log, SIGUSR2 and
/// the other signals whose default would end the process are ignored; none of them stops the server, and SIGTERM still exits 0.
#[test]
fn sighup_reloads_the_allow_list_and_sigusr1_logs_counters_without_stopping() {
    let dir = common::TempDir::new("sighup");
    let cfg = dir.path().join("leasequeryd.toml");
    std::fs::write(&cfg, "allow = [\"127.0.0.0/8\", \"::1/128\"]\n").unwrap();
    let mut srv = ServerBuilder::new()
        .shards(1)
        .arg("--config")
        .arg(cfg.to_str().unwrap())
        .start();
    let wait_log = |srv: &common::Server, what: &str, n: usize| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while srv.log().matches(what).count() < n {
            assert!(
                std::time::Instant::now() < until,
                "no {what:?} in:\n{}",
                srv.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut c = srv.connect6();
    assert!(
        !c.closed_silently(Duration::from_millis(300)),
        "allowed at first"
    );

    // SIGUSR1: the counters, while serving.
    srv.signal("USR1");
    wait_log(&srv, "counters:", 1);
    // Every other signal whose default action ends the process is logged and ignored.
    for (sig, logged) in [
        ("USR2", "SIGUSR2"),
        ("ALRM", "SIGALRM"),
        ("POLL", "SIGIO"),
        ("PROF", "SIGPROF"),
        ("VTALRM", "SIGVTALRM"),
        ("PWR", "SIGPWR"),
        ("STKFLT", "SIGSTKFLT"),
        ("RTMIN+3", "SIGRTMIN+3"),
    ] {
        srv.signal(sig);
        wait_log(&srv, &format!("{logged} ignored"), 1);
    }

    // A file that does not load: nothing changes.
    std::fs::write(&cfg, "allow = [\"not a block\"]\n").unwrap();
    srv.signal("HUP");
    wait_log(&srv, "SIGHUP: configuration not reloaded", 1);
    let mut c2 = srv.connect6();
    assert!(
        !c2.closed_silently(Duration::from_millis(300)),
        "still allowed"
    );

    // A new allow-list: loopback is refused from now on; the open connection stays.
    std::fs::write(&cfg, "allow = [\"192.0.2.0/24\"]\n").unwrap();
    srv.signal("HUP");
    wait_log(&srv, "SIGHUP: reloaded", 1);
    let mut c3 = srv.connect6();
    assert!(
        c3.closed_silently(Duration::from_secs(5)),
        "refused after the reload"
    );
    assert!(
        !c.closed_silently(Duration::from_millis(100)),
        "the open connection stays"
    );

    let status = srv.terminate().expect("exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(common::log_counter(&srv.log(), "refused_not_allowed"), 1);
}
