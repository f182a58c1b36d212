//! Issue 16 part 3, against the real binary: `leasequeryd --check-config` exits 0 on every file
//! of `examples/` and prints the effective configuration as TOML (defaults included) that
//! loads back; a bad file exits 2 with a message naming the key; it binds no port (it succeeds
//! while other sockets hold the listen ports) and writes nothing to the data directory.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, TempDir};
use leasequery::config::Config;

/// Runs `leasequeryd --check-config ARGS`; (exit code, stdout, stderr). Killed after 20 s.
fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .arg("--check-config")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn leasequeryd");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, o.join().unwrap(), e.join().unwrap())
}

#[test]
fn every_example_checks_and_prints_toml_with_the_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let (code, out, err) = check(&["--config", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{}: {err}", path.display());
        let printed = Config::from_toml(&out).unwrap_or_else(|e| {
            panic!("{}: printed TOML does not load: {e}\n{out}", path.display())
        });
        printed.validate().unwrap();
        let file = Config::from_file(&path).unwrap();
        // What the file says is kept; what it leaves out is printed with its default.
        assert_eq!(printed.lq6_listen, file.lq6_listen, "{}", path.display());
        assert_eq!(printed.authority, Some(file.authority_config()));
        for key in [
            "max_connections = 10",
            "bulk_lq_data_timeout = 300",
            "chunk_size = 262144",
            "journal_compact_bytes = 268435456",
            "log = \"info\"",
        ] {
            assert!(
                out.contains(key),
                "{}: no {key:?} in\n{out}",
                path.display()
            );
        }
    }
    assert!(n >= 2, "examples/ holds {n} config files");
    // No file at all: the defaults, demo authority and derived server_id written out.
    let (code, out, err) = check(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("[authority]") && out.contains("server_id = \"127.0.0.1\""),
        "{out}"
    );
    // Flags count as they do at start.
    let (code, out, err) = check(&["--max-connections", "77", "--no-authority"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("max_connections = 77") && !out.contains("[authority]"),
        "{out}"
    );
}

#[test]
fn bad_files_exit_2_naming_the_key() {
    let tmp = TempDir::new("checkcfg-bad");
    let table: &[(&str, &str)] = &[
        ("max_connections = 0", "max_connections"),
        ("max_conections = 5", "max_conections"),
        ("lq6_listen = \"not an address\"", "lq6_listen"),
        ("allow = [\"10.0.0.0/99\"]", "allow"),
        ("bulk_lq_data_timeout = 0", "bulk_lq_data_timeout"),
        ("log = \"info,[\"", "log"),
        ("server_duid = \"zz\"", "server_duid"),
        ("allow_insecure_active = true", "allow_insecure_active"),
        ("import = \"/nonexistent/leases.jsonl\"", "import"),
        ("data_dir = \"/proc/self/status\"", "data_dir"),
        (
            "[authority]\n[[authority.subnet]]\nname = \"a\"\nlinks = [\"::1/128\"]\npool = \"192.0.2.0/24\"\nlease_time = 3600\nrenew_time = 1800\nrebind_time = 3150\n\
             [[authority.subnet]]\nname = \"b\"\nlinks = [\"::1/128\"]\npool = \"192.0.2.128/25\"\nlease_time = 3600\nrenew_time = 1800\nrebind_time = 3150\n",
            "pool",
        ),
        (
            "[authority]\n[[authority.subnet]]\nname = \"a\"\nlinks = [\"::1/128\"]\npool = \"192.0.2.0/24\"\nlease_time = 3600\nrenew_time = 1800\nrebind_time = 3150\npsid_len = 17\n",
            "psid_len",
        ),
    ];
    for (i, (body, key)) in table.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, body).unwrap();
        let (code, out, err) = check(&["--config", path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{body:?}: {err}");
        assert!(out.is_empty(), "{body:?}: printed {out}");
        assert!(err.starts_with("leasequeryd: "), "{body:?}: {err}");
        assert!(err.contains(key), "{body:?}: {err:?} does not name {key}");
    }
    // A missing config file is named too.
    let (code, _, err) = check(&["--config", "/nonexistent/leasequeryd.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/leasequeryd.toml"), "{err}");
}

#[test]
fn binds_no_port_and_writes_nothing() {
    // Other sockets hold every listen port: a start would fail to bind, the check does not.
    let (p6, p4, pu) = (free_port(), free_port(), free_port());
    let _h6 = std::net::TcpListener::bind(("::1", p6)).unwrap();
    let _h4 = std::net::TcpListener::bind(("127.0.0.1", p4)).unwrap();
    let _hu = std::net::UdpSocket::bind(("::1", pu)).unwrap();
    let data = TempDir::new("checkcfg-data");
    let missing = data.path().join("not-yet");
    for dir in [data.path(), missing.as_path()] {
        let (code, out, err) = check(&[
            "--lq6-listen",
            &format!("[::1]:{p6}"),
            "--lq4-listen",
            &format!("127.0.0.1:{p4}"),
            "--dhcp4o6-listen",
            &format!("[::1]:{pu}"),
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            out.contains(&format!("lq6_listen = \"[::1]:{p6}\"")),
            "{out}"
        );
    }
    // Nothing written: no server-duid, no journal, the missing directory not created.
    let left: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the check wrote {left:?}");
}

/// Issue 16 part 3: a start that fails (a bad import line, a listen port in use) writes nothing
/// into the data dir, not even `server-duid`.
#[test]
fn a_failed_start_leaves_the_data_dir_untouched() {
    let dir = common::TempDir::new("failed-start");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"ipv4\": \"not an address\"}\n").unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap().to_string();
    for args in [
        vec!["--import".to_string(), bad.display().to_string()],
        vec!["--lq4-listen".to_string(), held_addr.clone()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--lq6-listen")
            .arg(format!("[::1]:{}", common::free_port()))
            .arg("--dhcp4o6-listen")
            .arg(format!("[::1]:{}", common::free_port()))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", common::free_port()))
            .args(&args)
            .output()
            .expect("run leasequeryd");
        assert!(!out.status.success(), "{args:?} started");
        let left: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    drop(held);
}
