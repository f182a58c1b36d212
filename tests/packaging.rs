//! Issue 16 part 8: the systemd unit (systemd-analyze verify, sd_notify READY=1 / STOPPING=1,
//! MemoryDenyWriteExecute), the man pages generated from the clap definitions (the committed
//! pages in dist/man/ must equal what the code generates), the example config and the
//! `cargo deb` metadata. A missing tool fails under LQD_REQUIRE_PEERS=1 and skips loudly
//! otherwise (as in tests/peers.rs).

mod common;

use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ServerBuilder, TempDir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of a directory, name -> content.
fn files(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn committed_man_pages_are_what_the_code_generates() {
    let out = TempDir::new("man");
    for bin in [
        env!("CARGO_BIN_EXE_leasequeryd"),
        env!("CARGO_BIN_EXE_loadgen"),
        env!("CARGO_BIN_EXE_lqctl"),
    ] {
        let st = Command::new(bin)
            .arg("--man-page")
            .arg(out.path())
            .status()
            .unwrap();
        assert!(st.success(), "{bin} --man-page");
    }
    let generated = files(out.path());
    let committed = files(&root().join("dist/man"));
    assert!(generated.contains_key("leasequeryd.1") && generated.contains_key("loadgen.1"));
    for page in [
        "loadgen-churn.1",
        "lqctl.1",
        "lqctl-bulk.1",
        "lqctl-watch.1",
    ] {
        assert!(
            generated.contains_key(page),
            "{page}: {:?}",
            generated.keys()
        );
    }
    let names =
        |m: &std::collections::BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&generated),
        "dist/man/ is stale: regenerate it (README \"Packaging\")"
    );
    for (name, text) in &generated {
        assert_eq!(
            &committed[name], text,
            "dist/man/{name} is stale: regenerate it with `target/debug/leasequeryd --man-page \
             dist/man && target/debug/loadgen --man-page dist/man && target/debug/lqctl \
             --man-page dist/man` (README \"Packaging\")"
        );
    }
    // The page documents the flags, including this issue's.
    let page = &generated["leasequeryd.1"];
    for flag in [
        "\\-\\-log\\-format",
        "\\-\\-check\\-config",
        "\\-\\-data\\-dir",
    ] {
        assert!(page.contains(flag), "{flag} missing from leasequeryd.1");
    }
    // Version only, no commit: the page changes when the flags do, not at every commit.
    assert!(!page.contains("commit"), "{}", &page[..200]);
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(root().join("dist/leasequeryd.service")).unwrap();
    for line in [
        "Type=notify",
        "User=leasequeryd",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "StateDirectory=leasequeryd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "LimitMEMLOCK=infinity",
        "ExecStart=/usr/bin/leasequeryd --config /etc/leasequeryd/leasequeryd.toml",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "{line} missing from the unit"
        );
    }
    // No system call filter: glommio needs the io_uring calls.
    assert!(!unit.lines().any(|l| l.starts_with("SystemCallFilter")));
    if !common::peers::tools("unit_passes_systemd_analyze_verify", &["systemd-analyze"]) {
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one just built. The man
    // page it names is checked by committed_man_pages_are_what_the_code_generates (man-db
    // may not be installed here), so `--man=no`.
    let dir = TempDir::new("unit");
    let path = dir.path().join("leasequeryd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/leasequeryd", env!("CARGO_BIN_EXE_leasequeryd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("leasequeryd.service"),
        "systemd-analyze verify warned about the unit: {stderr}"
    );
}

#[test]
fn installed_example_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .args(["--check-config", "--config"])
        .arg(root().join("dist/leasequeryd.toml"))
        .args(["--data-dir", "/var/lib/leasequeryd"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("log_format = \"text\""), "{effective}");
}

#[test]
fn deb_metadata_lists_binaries_unit_man_pages_and_config() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(deb["name"].as_str(), Some("leasequeryd"));
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dest_of = |src: &str| {
        assets
            .iter()
            .find(|a| a.0 == src)
            .map(|a| a.1.clone())
            .unwrap_or_else(|| panic!("{src} not in the deb assets"))
    };
    assert_eq!(dest_of("target/release/leasequeryd"), "usr/bin/");
    assert_eq!(dest_of("target/release/loadgen"), "usr/bin/");
    assert_eq!(dest_of("dist/man/*.1"), "usr/share/man/man1/");
    assert_eq!(dest_of("dist/leasequeryd.toml"), "etc/leasequeryd/");
    // Every source outside target/ exists (a glob: at least one match).
    for (src, _) in &assets {
        if src.starts_with("target/") {
            continue;
        }
        if let Some(dir) = src.strip_suffix("/*.1") {
            assert!(files(&root().join(dir)).keys().any(|f| f.ends_with(".1")));
        } else {
            assert!(root().join(src).is_file(), "{src} missing");
        }
    }
    let conf: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(conf, ["/etc/leasequeryd/leasequeryd.toml"]);
    // The unit comes from systemd-units (dist/leasequeryd.service), the user from the postinst.
    let units = &deb["systemd-units"];
    assert_eq!(units["unit-scripts"].as_str(), Some("dist/"));
    assert!(root().join("dist/leasequeryd.service").is_file());
    let postinst = std::fs::read_to_string(root().join("dist/debian/postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("leasequeryd"));
    assert!(postinst.contains("#DEBHELPER#"));
}

/// sd_notify: READY=1 once the server serves, STOPPING=1 at SIGTERM, on the socket named by
/// NOTIFY_SOCKET (a unix datagram socket the test binds).
#[test]
fn notifies_systemd_ready_when_serving_and_stopping_at_sigterm() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut server = ServerBuilder::new()
        .shards(2)
        .env("NOTIFY_SOCKET", path.display().to_string())
        .start();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 15 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // Serving when READY=1 arrived: a query is answered.
    let mut c = server.connect6();
    c.send(&common::query_4o6_link(7));
    assert!(c.recv().is_some(), "no answer after READY=1");
    drop(c);
    server.signal("TERM");
    let n = sock.recv(&mut buf).expect("STOPPING=1 within 15 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
    assert!(server
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    // Nothing more (one READY, one STOPPING).
    sock.set_nonblocking(true).unwrap();
    assert!(sock.recv(&mut buf).is_err());
}

/// MemoryDenyWriteExecute=yes in the unit: the server starts and serves (journal and all)
/// with PR_SET_MDWE (Linux 6.3+), the kernel's own write-xor-execute switch, which refuses
/// the same mappings systemd's MemoryDenyWriteExecute= does.
#[test]
fn serves_under_memory_deny_write_execute() {
    if !common::peers::tools("serves_under_memory_deny_write_execute", &["python3"]) {
        return;
    }
    let dir = TempDir::new("mdwe");
    let data = TempDir::new("mdwe-data");
    let script = dir.path().join("mdwe.py");
    std::fs::write(
        &script,
        "import ctypes, os, sys\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         if libc.prctl(65, 1, 0, 0, 0) != 0:\n\
         \x20   sys.exit(77)\n\
         os.execv(sys.argv[1], sys.argv[1:])\n",
    )
    .unwrap();
    let port = common::free_port();
    let lq6 = format!("[::1]:{port}");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_leasequeryd"))
        .args(["--shards", "2", "--lq6-listen", &lq6])
        .args(["--metrics-listen", "off"])
        .arg("--lq4-listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--dhcp4o6-listen")
        .arg(format!("[::1]:{}", common::free_port()))
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("leasequeryd serving") {
                let _ = tx.send(Ok(()));
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = tx.send(Err(log));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(log)) => {
            let st = child.wait().unwrap();
            if st.code() == Some(77) {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED serves_under_memory_deny_write_execute: this kernel has no PR_SET_MDWE"
                );
                return;
            }
            panic!("leasequeryd did not start under MDWE ({st}): {log}");
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("leasequeryd did not start under MDWE within 30 s");
        }
    }
    let mut c = common::Conn::connect(lq6.parse().unwrap());
    c.send(&common::query_4o6_link(9));
    let answered = c.recv().is_some();
    drop(c);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let st = child.wait().unwrap();
    assert!(answered, "no answer under MDWE");
    assert!(st.success(), "exit under MDWE: {st}");
}
