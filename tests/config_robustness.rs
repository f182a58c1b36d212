//! Issue 19 items 2 and 5, against the real binary: durations that would overflow at run time
//! are refused at start, the largest accepted ones serve and shut down, a panicking shard ends
//! the process, every file of `examples/` loads, a feed path that is a directory is logged
//! once, and running out of file descriptors is warned at start and logged (rate-limited).

mod active_common;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use active_common::{v4_line, Env, Got, Sub};
use common::{free_port, ServerBuilder, TempDir};
use leasequery::proto::codes::{v4msg, v4status};
use leasequery::proto::v4;

/// Runs `leasequeryd ARGS` and waits (at most `within`) for it to exit; its status code and
/// stderr. A process still running then is killed and reported as `None`.
fn run_to_exit(args: &[&str], within: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn leasequeryd");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let deadline = Instant::now() + within;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, reader.join().unwrap_or_default())
}

/// Loopback listen flags on free ports.
fn listen_args() -> Vec<String> {
    vec![
        "--lq6-listen".into(),
        format!("[::1]:{}", free_port()),
        "--lq4-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--dhcp4o6-listen".into(),
        format!("[::1]:{}", free_port()),
        "--shards".into(),
        "1".into(),
        // Never the default 127.0.0.1:9967: parallel tests would meet there.
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

/// Item 2: `shutdown_deadline`, `bulk_lq_data_timeout`, `active_idle_timeout` and
/// `active_send_timeout` up to 2^63-1 passed validation, then `Instant + Duration` overflowed
/// (the first connection panicked its shard, SIGTERM panicked main). They are refused at start
/// now, exit 2, naming the key.
#[test]
fn durations_that_would_overflow_are_refused_at_start() {
    let dir = TempDir::new("cfg-huge");
    let huge = "9223372036854775807";
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--shutdown-deadline".into(), huge.into()],
            "shutdown_deadline",
        ),
        (
            vec!["--shutdown-deadline".into(), "3601".into()],
            "shutdown_deadline",
        ),
        (
            vec!["--bulk-lq-data-timeout".into(), huge.into()],
            "bulk_lq_data_timeout",
        ),
    ];
    for key in ["active_idle_timeout", "active_send_timeout"] {
        let f = dir.path().join(format!("{key}.toml"));
        std::fs::write(
            &f,
            format!("active = true\nallow_insecure_active = true\n{key} = {huge}\n"),
        )
        .unwrap();
        cases.push((vec!["--config".into(), f.display().to_string()], key));
    }
    for (extra, key) in cases {
        let mut args = listen_args();
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, log) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(
            code,
            Some(2),
            "{key}: must be refused at start; log:\n{log}"
        );
        assert!(log.contains(key), "{key}: the error names the key: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// Item 2: the largest accepted durations (a day; an hour for the shutdown deadline) reach
/// the connection timers, an active subscription's keepalive and send timers and the shutdown
/// deadlines without overflow: a bulk connection and an active subscriber are served, and
/// SIGTERM ends the subscription with QueryTerminated and exits 0.
#[test]
fn the_largest_durations_serve_and_shut_down_cleanly() {
    let mut env = Env::start(
        "active_idle_timeout = 86400\nactive_send_timeout = 86400\n\
         bulk_lq_data_timeout = 86400\nshutdown_deadline = 3600\n",
        None,
    );
    let idle = env.srv.connect6();
    let mut sub = Sub::v4_ready(&env, 0x4242);
    env.append(&[v4_line(1, "active", active_common::unix_now())]);
    match sub.next_real() {
        Some(Got::Update { .. }) => {}
        other => panic!("expected the feed's update, got {other:?}"),
    }
    let status = env.srv.terminate().expect("exits within 15 s");
    assert!(status.success(), "{status:?}; log:\n{}", env.srv.log());
    match sub.next_real() {
        Some(Got::Status { code, .. }) if code == u16::from(v4status::QUERY_TERMINATED) => {}
        other => panic!("expected QueryTerminated, got {other:?}"),
    }
    drop(idle);
    let log = env.srv.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Item 2: a panic in one shard ended that shard's executor while the process went on,
/// looking alive and serving nothing there. Any panic now exits the process at once with
/// status 70 (the panic hook in main.rs). The fault switch makes the shard that accepts a
/// connection panic; the other shard would keep the process running without the hook.
#[cfg(feature = "fault-injection")]
#[test]
fn a_panicking_shard_ends_the_process_with_status_70() {
    let mut srv = ServerBuilder::new()
        .shards(2)
        .env("LEASEQUERYD_FAULT_PANIC_ON_ACCEPT", "1")
        .start();
    let _c = std::net::TcpStream::connect_timeout(&srv.lq6, Duration::from_secs(5)).unwrap();
    let status = srv
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after a shard panicked:\n{}", srv.log()));
    assert_eq!(status.code(), Some(70), "{status:?}\n{}", srv.log());
    let log = srv.log();
    assert!(
        log.contains("fault injection: shard") && log.contains("exiting with status 70"),
        "{log}"
    );
}

/// Item 5: every file of `examples/` loads with the real binary: each `.toml` as `--config`
/// (listen addresses, shards and the data directory overridden by flags, so the test needs no
/// privileged port or /var/lib), each `.jsonl` as `--import`; the server serves and exits 0 on
/// SIGTERM. (`examples/authority-demo.toml` used to be a bare authority table, refused by
/// `--config`.)
#[test]
fn every_example_file_loads_with_the_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let path = dir.join(name).display().to_string();
        let data = TempDir::new("example");
        let b = ServerBuilder::new().data_dir(data.path());
        let b = if name.ends_with(".toml") {
            b.arg("--config").arg(path)
        } else if name.ends_with(".jsonl") {
            b.arg("--import").arg(path)
        } else {
            panic!("examples/{name}: no rule to load it; add one to this test");
        };
        let mut srv = b
            .try_start()
            .unwrap_or_else(|log| panic!("examples/{name} does not load:\n{log}"));
        let status = srv.terminate().expect("exits");
        assert!(
            status.success(),
            "examples/{name}: {status:?}\n{}",
            srv.log()
        );
    }
}

/// Item 5: a feed path that is a directory logged a WARN every 100 ms; now one line, then
/// quiet (ten more polls here).
#[test]
fn a_feed_path_that_is_a_directory_is_logged_once() {
    let dir = TempDir::new("feed-dir");
    let srv = ServerBuilder::new()
        .arg("--feed")
        .arg(dir.path().display().to_string())
        .start();
    let count = || {
        srv.log()
            .lines()
            .filter(|l| l.contains("feed ") && !l.contains("counters"))
            .count()
    };
    let t = Instant::now();
    while count() == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let log = srv.log();
    assert_eq!(count(), 1, "{log}");
    assert!(log.contains("not a regular file"), "{log}");
}

/// Item 5: `max_connections` above the open-file limit was not mentioned and running out of
/// descriptors was silent (a DEBUG line per failed accept). Now a WARN at start gives both
/// numbers, and the accept loop logs EMFILE at most once per 10 s per listener.
#[test]
fn running_out_of_file_descriptors_is_warned_and_logged_rate_limited() {
    let lq6 = format!("[::1]:{}", free_port());
    let mut args = vec![
        "ulimit -n 96 && exec \"$0\" \"$@\"".to_string(),
        env!("CARGO_BIN_EXE_leasequeryd").to_string(),
    ];
    args.extend(listen_args());
    args[3] = lq6.clone();
    args.extend(["--max-connections".into(), "1000".into()]);
    let mut child = Command::new("sh")
        .arg("-c")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.contains("leasequeryd serving") {
                    let _ = tx.send(());
                }
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
    }
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        stop(&mut child);
        panic!("did not start:\n{}", log.lock().unwrap());
    }
    {
        let l = log.lock().unwrap();
        assert!(
            l.contains("max_connections = 1000") && l.contains("is 96"),
            "start-up warning with both numbers:\n{l}"
        );
    }
    // More connections than the server has descriptors: the kernel completes them (backlog),
    // the server's accepts fail with EMFILE.
    let addr: std::net::SocketAddr = lq6.parse().unwrap();
    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..120 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(c) => conns.push(c),
            Err(_) => break,
        }
    }
    // (Linux's accept checks for a free descriptor before it waits for a connection, so both
    // listeners fail; the lines of this one are counted.)
    let listen = format!("listen=\"{lq6}\"");
    let emfile = || {
        log.lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains("out of file descriptors") && l.contains(&listen))
            .count()
    };
    let t = Instant::now();
    while emfile() == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Many failed accepts (one every 10 ms) meanwhile; lines at most one per 10 s.
    std::thread::sleep(Duration::from_millis(500));
    let n = emfile();
    let allowed = 1 + started.elapsed().as_secs() as usize / 10;
    let text = log.lock().unwrap().clone();
    stop(&mut child);
    assert!(n >= 1, "EMFILE logged:\n{text}");
    assert!(n <= allowed, "{n} lines, at most {allowed}:\n{text}");
    assert!(text.contains("open_file_limit=\"96\""), "{text}");
}

/// Item 5: option 54 on TCP 67 was 127.0.0.1 whatever `lq4_listen` was; it is now the
/// listener's address (here 127.0.0.2, a loopback address that is not 127.0.0.1) when
/// `server_id` is not set, and `server_id` when it is.
#[test]
fn option_54_comes_from_lq4_listen_unless_server_id_is_set() {
    let first_server_id = |extra: &[&str]| {
        let lq4: std::net::SocketAddr = format!("127.0.0.2:{}", free_port()).parse().unwrap();
        let lq6 = format!("[::1]:{}", free_port()).parse().unwrap();
        let udp = format!("[::1]:{}", free_port()).parse().unwrap();
        let mut b = ServerBuilder::new().shards(1).listen(lq6, lq4, udp);
        let dir = TempDir::new("sid");
        if !extra.is_empty() {
            let f = dir.path().join("c.toml");
            std::fs::write(&f, extra.join("\n")).unwrap();
            b = b.arg("--config").arg(f.display().to_string());
        }
        let srv = b.start();
        let mut c = srv.connect4();
        let mut m = v4::Message::new(1, v4msg::BULKLEASEQUERY, 0x5401);
        m.options.push(v4::V4Option::ParameterRequestList(vec![51]));
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        c.send(&out);
        let first = v4::Message::decode(&c.recv().expect("a reply")).unwrap();
        first.options.iter().find_map(|o| match o {
            v4::V4Option::ServerId(a) => Some(a.to_string()),
            _ => None,
        })
    };
    assert_eq!(first_server_id(&[]).as_deref(), Some("127.0.0.2"));
    assert_eq!(
        first_server_id(&["server_id = \"192.0.2.54\""]).as_deref(),
        Some("192.0.2.54")
    );
}

/// Item 5: `allow = ["::ffff:127.0.0.1/128"]` did not admit 127.0.0.1 (sources were
/// normalized from v4-mapped, blocks were not); it does now.
#[test]
fn a_v4_mapped_allow_block_admits_its_ipv4_requestor() {
    let srv = ServerBuilder::new()
        .shards(1)
        .arg("--allow")
        .arg("::ffff:127.0.0.1/128")
        .start();
    let mut c = srv.connect4();
    assert!(
        !c.closed_silently(Duration::from_millis(500)),
        "127.0.0.1 closed although ::ffff:127.0.0.1/128 is allowed"
    );
    // ::1 is not in that list.
    let mut c6 = srv.connect6();
    assert!(c6.closed_silently(Duration::from_secs(5)));
}

/// Issue 16 part 8: `--version` names the version and the git commit the binary was built from.
#[test]
fn version_names_the_git_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .arg("--version")
        .output()
        .expect("run leasequeryd --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "leasequeryd {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_default();
    let hex = commit.trim_end_matches("+dirty");
    // Built from a git checkout (the tests run in one): a 12-digit commit, or `unknown` outside.
    let in_git = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists();
    if in_git {
        assert!(
            hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{text}"
        );
    } else {
        assert_eq!(hex, "unknown", "{text}");
    }
}
