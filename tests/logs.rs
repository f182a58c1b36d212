//! Issue 16 parts 4, 5, 7: the start log names what the config says, JSON log lines parse and
//! carry their fields, SIGHUP reloads the log filter in both formats, and drops say why
//! (rate-limited, with the suppressed count). Loopback only, bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{import_4o6, log_counter, Server, ServerBuilder, TempDir};
use leasequery::lwb4::{LwB4, RelayHop};

/// A config with two authority subnets on distinct links (full on ::1, shared with psid_len 6
/// on 2001:db8:7::/48, shared-only), in `format`.
fn config_file(dir: &TempDir, log: &str, format: &str) -> std::path::PathBuf {
    let path = dir.path().join("leasequeryd.toml");
    std::fs::write(&path, config_text(log, format)).unwrap();
    path
}

fn config_text(log: &str, format: &str) -> String {
    format!(
        r#"log = "{log}"
log_format = "{format}"

[authority]
server_id = "192.0.2.1"

[[authority.subnet]]
name = "loopback-full"
links = ["::1/128"]
pool = "192.0.2.16/28"
lease_time = 3600
renew_time = 1800
rebind_time = 3150

[[authority.subnet]]
name = "far-shared"
links = ["2001:db8:7::/48", "2001:db8:8::/64"]
pool = "203.0.113.0/25"
lease_time = 7200
renew_time = 3600
rebind_time = 6300
psid_len = 6
psid_offset = 0
shared_only = true
"#
    )
}

/// Every JSON log line with `fields.message` starting with `prefix`.
fn json_lines(log: &str, prefix: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

fn wait_for(server: &Server, what: &str, within: Duration) -> bool {
    server.log_when(within, |log| log.contains(what)).is_some()
}

#[test]
fn start_log_names_every_listener_subnet_and_binding_source() {
    let dir = TempDir::new("startlog");
    let data = TempDir::new("startlog-data");
    let cfg = config_file(&dir, "info", "json");
    let mut server = ServerBuilder::new()
        .shards(2)
        .import(import_4o6(40))
        .data_dir(data.path())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let log = server.log();

    let shards = json_lines(&log, "start: shards");
    assert_eq!(shards.len(), 1, "{log}");
    assert_eq!(shards[0]["fields"]["shards"], 2);

    let listening = json_lines(&log, "start: listening");
    let addr_of = |name: &str| {
        let l: Vec<_> = listening
            .iter()
            .filter(|v| v["fields"]["listener"] == name)
            .collect();
        assert_eq!(l.len(), 1, "one line for listener {name}: {log}");
        (
            l[0]["fields"]["addr"].as_str().unwrap().to_string(),
            l[0]["fields"]["transport"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(addr_of("lq6"), (server.lq6.to_string(), "tcp".into()));
    assert_eq!(addr_of("lq4"), (server.lq4.to_string(), "tcp".into()));
    assert_eq!(
        addr_of("dhcp4o6"),
        (server.dhcp4o6.to_string(), "udp".into())
    );

    let subnets = json_lines(&log, "start: authority subnet");
    assert_eq!(subnets.len(), 2, "{log}");
    let full = &subnets[0]["fields"];
    assert_eq!(full["subnet"], "loopback-full");
    assert_eq!(full["links"], "::1/128");
    // 192.0.2.16/28 without network and broadcast: .17-.30.
    assert_eq!(full["pool"], "192.0.2.17-192.0.2.30");
    assert_eq!(full["addresses"], 14);
    assert_eq!(full["psid_len"], "none");
    assert_eq!(full["port_sets_per_address"], 1);
    let shared = &subnets[1]["fields"];
    assert_eq!(shared["subnet"], "far-shared");
    assert_eq!(shared["links"], "2001:db8:7::/48,2001:db8:8::/64");
    assert_eq!(shared["pool"], "203.0.113.1-203.0.113.126");
    assert_eq!(shared["addresses"], 126);
    assert_eq!(shared["psid_len"], "6");
    assert_eq!(shared["psid_offset"], "0");
    // 2^6 PSIDs, PSID 0 (ports 0-1023 with offset 0) never leased.
    assert_eq!(shared["port_sets_per_address"], 63);
    assert_eq!(shared["leasable_units"], 126 * 63);
    assert_eq!(shared["shared_only"], true);

    let loaded = json_lines(&log, "start: bindings loaded");
    let by_source = |s: &str| {
        let l: Vec<_> = loaded
            .iter()
            .filter(|v| v["fields"]["source"] == s)
            .collect();
        assert_eq!(l.len(), 1, "one line for source {s}: {log}");
        l[0]["fields"].clone()
    };
    assert_eq!(by_source("import")["v4"], 40);
    assert_eq!(by_source("snapshot")["bindings"], 0);
    assert_eq!(by_source("journal")["records"], 0);
    assert!(server.terminate().is_some_and(|s| s.success()));

    // A restart without --import: the 40 bindings come from the snapshot the import wrote.
    let server = ServerBuilder::new()
        .shards(2)
        .data_dir(data.path())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let log = server.log();
    let loaded = json_lines(&log, "start: bindings loaded");
    assert!(
        loaded.iter().all(|v| v["fields"]["source"] != "import"),
        "{log}"
    );
    let snap: Vec<_> = loaded
        .iter()
        .filter(|v| v["fields"]["source"] == "snapshot")
        .collect();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0]["fields"]["bindings"], 40, "{log}");

    // The text format says the same, readably.
    drop(server);
    let text_cfg = dir.path().join("text.toml");
    std::fs::write(&text_cfg, config_text("info", "text")).unwrap();
    let server = ServerBuilder::new()
        .shards(1)
        .arg("--config")
        .arg(text_cfg.display().to_string())
        .start();
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("start: no bindings loaded") && l.contains("source=\"none\"")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("INFO")
            && l.contains("start: authority subnet")
            && l.contains("subnet=far-shared")
            && l.contains("pool=203.0.113.1-203.0.113.126")
            && l.contains("psid_len=6")
            && l.contains("port_sets_per_address=63")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("start: listening")
                && l.contains(&format!("addr={}", server.dhcp4o6))),
        "{log}"
    );
}

/// Every line of a `--log-format json` server parses as one JSON object with timestamp, level,
/// target and fields.message; SIGHUP's filter reload works in both formats.
#[test]
fn json_lines_parse_and_sighup_reloads_the_filter_in_both_formats() {
    for format in ["json", "text"] {
        let dir = TempDir::new("logfmt");
        let cfg = config_file(&dir, "info", format);
        let mut server = ServerBuilder::new()
            .shards(1)
            .arg("--config")
            .arg(cfg.display().to_string())
            .start();
        // Debug lines of the connection shell appear only once the new filter is in.
        std::fs::write(
            &cfg,
            config_text("info,leasequery::shard::conn=debug", format),
        )
        .unwrap();
        server.signal("HUP");
        assert!(
            wait_for(&server, "SIGHUP: reloaded", Duration::from_secs(10)),
            "{format}: no reload line: {}",
            server.log()
        );
        let before = server.log();
        drop(server.connect6());
        assert!(
            wait_for(&server, "connection closed", Duration::from_secs(10)),
            "{format}: the debug filter was not applied: {}",
            server.log()
        );
        assert!(!before.contains("connection closed"));
        assert!(
            !before.contains("DEBUG"),
            "{format}: debug before the reload: {before}"
        );
        assert!(server.terminate().is_some_and(|s| s.success()));
        let log = server.log();
        if format == "json" {
            let mut n = 0;
            for line in log.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(
                    v["timestamp"].as_str().is_some_and(|t| t.contains('T')),
                    "{line}"
                );
                assert!(
                    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                        .contains(&v["level"].as_str().unwrap_or("")),
                    "{line}"
                );
                assert!(
                    v["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("leasequery")),
                    "{line}"
                );
                assert!(v["fields"]["message"].is_string(), "{line}");
                n += 1;
            }
            assert!(n >= 8, "{log}");
            let reload = json_lines(&log, "SIGHUP: reloaded");
            assert_eq!(
                reload[0]["fields"]["log"],
                "info,leasequery::shard::conn=debug"
            );
            let closed = json_lines(&log, "connection closed");
            assert_eq!(closed[0]["level"], "DEBUG");
            assert!(closed[0]["fields"]["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("[::1]:")));
        } else {
            assert!(
                log.lines().all(|l| !l.trim_start().starts_with('{')),
                "{log}"
            );
            assert!(
                log.contains("DEBUG leasequery::shard::conn: connection closed"),
                "{log}"
            );
        }
    }
}

/// One drop-warning line of the server log: (seconds of day, reason, suppressed).
fn drop_lines(log: &str) -> Vec<(f64, String, u64)> {
    log.lines()
        .filter(|l| l.contains(" WARN ") && l.contains(" reason="))
        .filter(|l| !l.contains("at exit"))
        .map(|l| {
            let ts = l.split_whitespace().next().unwrap();
            let time = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
            let mut p = time.split(':');
            let h: f64 = p.next().unwrap().parse().unwrap();
            let m: f64 = p.next().unwrap().parse().unwrap();
            let s: f64 = p.next().unwrap().parse().unwrap();
            (
                h * 3600.0 + m * 60.0 + s,
                field(l, "reason"),
                field(l, "suppressed").parse().unwrap(),
            )
        })
        .collect()
}

/// The value of `key=value` in a text log line (quotes stripped).
fn field(line: &str, key: &str) -> String {
    let k = format!(" {key}=");
    let at = line
        .find(&k)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + k.len();
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// `name: N` in the authority's exit counters (summed over shards).
fn authority_counter(log: &str, name: &str) -> u64 {
    let key = format!("{name}: ");
    log.lines()
        .filter(|l| l.contains("AuthorityCounters"))
        .filter_map(|l| l.split(&key).nth(1))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

/// The suppressed counts of the exit flush, per reason.
fn flushed(log: &str, reason: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("at exit") && field(l, "reason") == reason)
        .map(|l| field(l, "suppressed").parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_flood_of_bad_datagrams_gives_one_line_per_reason_per_window_with_the_suppressed_count() {
    const WINDOW_MS: u64 = 1000;
    const FLOOD: usize = 10_000;
    // At most BATCH small datagrams wait in the socket buffer (about 60 KiB of kernel
    // memory at worst), far below any receive buffer the kernel grants.
    const BATCH: usize = 25;
    let dir = TempDir::new("drops");
    let cfg = config_file(&dir, "info", "text");
    // One shard: one limiter, and the datagrams of one socket are received in order.
    let mut server = ServerBuilder::new()
        .shards(1)
        .env("LEASEQUERYD_DROP_LOG_WINDOW_MS", WINDOW_MS.to_string())
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let to: SocketAddr = server.dhcp4o6;
    // Three reasons: garbage (malformed), a relayed DISCOVER from a link no subnet has
    // (no_subnet), a relayed DISCOVER without 159 on the shared-only link (needs_option_159).
    let relay = |link: &str| RelayHop {
        link: link.parse().unwrap(),
        peer: "fe80::1".parse().unwrap(),
        interface_id: None,
        relay_id: None,
        remote_id: None,
    };
    let sw = "2001:db8:ff::1".parse().unwrap();
    let mut no_subnet = LwB4::new(1, false, sw, Some(relay("2001:db8:99::1")));
    let mut needs_159 = LwB4::new(2, false, sw, Some(relay("2001:db8:7::1")));
    // The sentinel: a direct DISCOVER from ::1 (the full subnet) gets an OFFER; it comes back
    // after the server has taken every datagram sent before it (one shard, one socket), so
    // at most BATCH datagrams are ever waiting in the socket buffer.
    let mut sentinel = LwB4::new(3, false, sw, None);
    let round_trip = |sentinel: &mut LwB4| {
        sock.send_to(&sentinel.discover(), to).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let (n, _) = sock.recv_from(&mut buf).expect("the sentinel's OFFER");
            if sentinel.on_datagram(&buf[..n]).is_ok() {
                return;
            }
        }
    };
    let send_bad = |i: usize, a: &mut LwB4, b: &mut LwB4| {
        let d = match i % 3 {
            0 => vec![0xff, 0x01, 0x02, 0x03, 0x04],
            1 => a.discover(),
            _ => b.discover(),
        };
        sock.send_to(&d, to).unwrap();
    };
    let t0 = Instant::now();
    for i in 0..FLOOD {
        send_bad(i, &mut no_subnet, &mut needs_159);
        if i % BATCH == BATCH - 1 {
            round_trip(&mut sentinel);
        }
    }
    let flood_secs = t0.elapsed().as_secs_f64();
    // After a whole window, one more of each: its line carries what was suppressed since the
    // reason's previous line.
    std::thread::sleep(Duration::from_millis(WINDOW_MS + 200));
    for i in 0..3 {
        send_bad(i, &mut no_subnet, &mut needs_159);
    }
    round_trip(&mut sentinel);
    // The three lines were written before the sentinel's answer, but reach this process
    // through the log pipe: wait for them (bounded) rather than read the log at once.
    let reasons = ["malformed", "no_subnet", "needs_option_159"];
    let after_sleep = server
        .log_when(Duration::from_secs(10), |log| {
            let lines = drop_lines(log);
            reasons
                .iter()
                .all(|r| lines.iter().filter(|l| l.1 == *r).count() >= 2)
        })
        .unwrap_or_else(|| server.log());
    assert!(server.terminate().is_some_and(|s| s.success()));
    let log = server.log();
    let lines = drop_lines(&log);

    let counted = [
        ("malformed", log_counter(&log, "dhcp4o6_dropped_unparsed")),
        ("no_subnet", authority_counter(&log, "drop_no_subnet")),
        (
            "needs_option_159",
            authority_counter(&log, "drop_needs_159"),
        ),
    ];
    // i % 3 == 0, 1, 2 over the flood, plus one of each after the quiet window.
    let expected = [FLOOD.div_ceil(3) + 1, (FLOOD + 1) / 3 + 1, FLOOD / 3 + 1];
    for ((reason, count), want) in counted.iter().zip(expected) {
        // Counted exactly (paced: nothing lost in the kernel).
        assert_eq!(*count, want as u64, "{reason}: {log}");
        let mine: Vec<&(f64, String, u64)> = lines.iter().filter(|l| l.1 == *reason).collect();
        // Every drop is a line or counted in one (the flush at exit included).
        let accounted: u64 = mine.iter().map(|l| 1 + l.2).sum::<u64>() + flushed(&log, reason);
        assert_eq!(accounted, *count, "{reason}: lines {mine:?}");
        // One line per window: during the flood at most one per started window (the server
        // handled every flood datagram between t0 and the last sentinel's answer). The log
        // timestamps are not compared: the formatter reads its own clock after the limiter's,
        // and a descheduled thread can put any delay between the two.
        let flood_lines = mine.len() - 1;
        assert!(
            flood_lines as f64 <= flood_secs / (WINDOW_MS as f64 / 1000.0) + 1.0,
            "{reason}: {flood_lines} lines in {flood_secs} s"
        );
        // The line after the quiet window carries the suppressed count: the flood's lines
        // were few, so most of its drops were suppressed and reported there or before.
        assert!(
            mine.iter().map(|l| l.2).sum::<u64>() > 0,
            "{reason}: {mine:?}"
        );
        // The datagram sent after the quiet window got its own line (before the exit), and
        // that line reports what was suppressed since the previous one.
        let before_exit = drop_lines(&after_sleep);
        let before_exit: Vec<_> = before_exit.iter().filter(|l| l.1 == *reason).collect();
        assert_eq!(before_exit.len(), mine.len(), "{reason}: {mine:?}");
        assert!(
            mine.len() >= 2,
            "{reason}: no line after the quiet window: {mine:?}"
        );
    }
    // The lines name the peer and the counter, at WARN.
    let sample = log
        .lines()
        .find(|l| l.contains("reason=\"no_subnet\""))
        .unwrap();
    assert!(sample.contains(" WARN "), "{sample}");
    assert!(
        sample.contains(&format!("peer={}", sock.local_addr().unwrap())),
        "{sample}"
    );
    assert!(sample.contains("counter=\"drop_no_subnet\""), "{sample}");
    assert!(sample.contains("no subnet for the link"), "{sample}");
}

#[test]
fn refused_connections_say_why() {
    // lq4 listens on 127.0.0.1, which the allow-list leaves out; one connection at most.
    let server = ServerBuilder::new()
        .shards(1)
        .arg("--allow")
        .arg("::1/128")
        .arg("--max-connections")
        .arg("1")
        .start();
    let mut refused = server.connect4();
    assert!(refused.closed_silently(Duration::from_secs(5)));
    assert!(wait_for(
        &server,
        "requestor_not_allowed",
        Duration::from_secs(10)
    ));
    let held = server.connect6();
    // The held connection is counted before the next is refused: a query answered on it
    // proves the server accepted it.
    let mut held = held;
    held.send(&common::query_4o6_link(1));
    assert!(held.recv().is_some());
    let mut over = server.connect6();
    assert!(over.closed_silently(Duration::from_secs(5)));
    assert!(wait_for(
        &server,
        "over_max_connections",
        Duration::from_secs(10)
    ));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("requestor_not_allowed"))
        .unwrap();
    assert!(
        line.contains(" WARN ") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("allow-list"), "{line}");
    let line = log
        .lines()
        .find(|l| l.contains("over_max_connections"))
        .unwrap();
    assert!(
        line.contains("peer=[::1]:") && line.contains("max_connections"),
        "{line}"
    );
}
