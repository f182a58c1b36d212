//! `lqctl watch` against real servers on loopback (issue 17): under `loadgen churn` the emitted
//! stream is checked against the clients' ledger (`churn --ledger`): replayed binding by
//! binding, no change repeats the state before it (nothing twice) and the last state of every
//! binding equals the ledger (nothing missed); also with the server restarted mid-churn
//! (`--data-dir`), with a forced DataMissing (a history of a few entries) and a `--state`
//! resume of lqctl; `--snabb-conf` holds the ledger's softwires; `--snabb-apply` against a
//! stand-in `snabb` that records its arguments: its commands replay to the ledger and match the
//! emitted changes in order, binding by binding.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{Ca, Pki};
use common::{free_port, Server, ServerBuilder, TempDir};

const LINK: &str = "2001:db8:1::";

/// (IPv4, PSID as "offset/len/id" or "-").
type Key = (String, String);
/// (client-id, softwire source).
type State = (String, String);

fn key_of(v: &serde_json::Value) -> Key {
    let psid = match v.get("psid") {
        Some(p) => format!("{}/{}/{}", p["offset"], p["len"], p["id"]),
        None => "-".into(),
    };
    (v["ipv4"].as_str().unwrap().to_string(), psid)
}

fn state_of(v: &serde_json::Value) -> State {
    (
        v["client_id"].as_str().unwrap_or("").to_string(),
        v["softwire_src"].as_str().unwrap_or("").to_string(),
    )
}

/// The churn's ledger file, by key.
fn ledger(path: &Path) -> BTreeMap<Key, State> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            m.insert(key_of(&v), state_of(&v)).is_none(),
            "ledger key twice: {l}"
        );
    }
    m
}

/// The complete lines of a stream file, as (op, key, state).
fn stream(path: &Path) -> Vec<(String, Key, State)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["op"].as_str().unwrap().to_string(),
                key_of(&v),
                state_of(&v),
            )
        })
        .collect()
}

/// Replays `changes` on `view`; an error names a change that repeats the state before it.
fn replay(view: &mut BTreeMap<Key, State>, changes: &[(String, Key, State)]) -> Result<(), String> {
    for (n, (op, k, s)) in changes.iter().enumerate() {
        let before = view.get(k).cloned();
        let after = match op.as_str() {
            "upsert" => Some(s.clone()),
            "remove" => None,
            o => return Err(format!("change {n}: op {o}")),
        };
        if before == after {
            return Err(format!(
                "change {n} repeats the state before it (emitted twice): {op} {k:?}"
            ));
        }
        match after {
            Some(s) => view.insert(k.clone(), s),
            None => view.remove(k),
        };
    }
    Ok(())
}

fn diff(got: &BTreeMap<Key, State>, want: &BTreeMap<Key, State>) -> String {
    let mut d = Vec::new();
    for (k, v) in want {
        if got.get(k) != Some(v) {
            d.push(format!("ledger {k:?} {v:?}, watched {:?}", got.get(k)));
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            d.push(format!("extra {k:?} {v:?}"));
        }
    }
    format!("{} differences: {:?}", d.len(), &d[..d.len().min(10)])
}

struct Watcher {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Watcher {
    fn start(srv: &Server, dir: &Path, tag: &str, extra: &[String]) -> Watcher {
        let base = [
            "--server".to_string(),
            srv.lq6.to_string(),
            "--query".to_string(),
            format!("4o6-link:{LINK}"),
        ];
        Watcher::start_with(dir, tag, &[&base[..], extra].concat())
    }

    /// `lqctl watch` with the test's common options and `args` (servers and queries).
    fn start_with(dir: &Path, tag: &str, args: &[String]) -> Watcher {
        let out = dir.join(format!("{tag}.out"));
        let err = dir.join(format!("{tag}.err"));
        // Over TLS (the test gives the --tls-* flags) without --insecure.
        let tls = args.iter().any(|a| a == "--tls-cert");
        let child = Command::new(env!("CARGO_BIN_EXE_lqctl"))
            .arg("watch")
            .args((!tls).then_some("--insecure"))
            .args([
                "--format",
                "jsonl",
                "--verbose",
                "--backoff",
                "0.1",
                "--backoff-max",
                "0.5",
                "--batch-ms",
                "50",
                "--state-interval",
                "0",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn lqctl watch");
        Watcher {
            child: Some(child),
            out,
            err,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (at most 30 s) until stderr says `what` `times` times.
    fn wait_for(&self, what: &str, times: usize) {
        let t0 = Instant::now();
        while self.stderr().matches(what).count() < times {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "lqctl never said {what:?} {times} times:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most 30 s) until replaying the stream on `initial` gives `want`; panics on a
    /// repeated state at once.
    fn converge(&self, initial: &BTreeMap<Key, State>, want: &BTreeMap<Key, State>) {
        let t0 = Instant::now();
        loop {
            let mut view = initial.clone();
            replay(&mut view, &stream(&self.out))
                .unwrap_or_else(|e| panic!("{e}\n{}", self.stderr()));
            if view == *want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the watched stream does not reach the ledger: {}\n{}",
                diff(&view, want),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; the exit code (bounded wait).
    fn stop(&mut self) -> i32 {
        let mut c = self.child.take().unwrap();
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if t0.elapsed() > Duration::from_secs(15) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("lqctl watch did not stop on SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn active_server() -> ServerBuilder {
    ServerBuilder::new()
        .arg("--active")
        .arg("--allow-insecure-active")
}

/// A churn of `clients` relayed lwB4s from index `first`; its ledger.
fn churn(srv: &Server, dir: &Path, first: u32, clients: u32) -> BTreeMap<Key, State> {
    let l = dir.join(format!("ledger-{first}.jsonl"));
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--out",
            dir.join(format!("lg-{first}")).to_str().unwrap(),
            "churn",
            "--server",
            &srv.dhcp4o6.to_string(),
            "--link",
            LINK,
            "--first-client",
            &first.to_string(),
            "--clients",
            &clients.to_string(),
            "--shared-ratio",
            "0.7",
            "--renewals",
            "2",
            "--swchange-ratio",
            "0.3",
            "--release-ratio",
            "0.2",
            "--concurrency",
            "16",
            "--timeout",
            "2",
            "--retries",
            "3",
            "--ledger",
            l.to_str().unwrap(),
        ])
        .output()
        .expect("run loadgen");
    assert!(
        o.status.success(),
        "loadgen churn: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let m = ledger(&l);
    assert!(!m.is_empty(), "an empty ledger proves nothing");
    m
}

/// The (ipv4, psid, b4-ipv6) of every softwire of a Snabb configuration text.
fn snabb_softwires(text: &str) -> BTreeSet<(String, String, String)> {
    let field = |block: &str, name: &str| {
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name} ")))
            .map(|v| v.trim_end_matches(';').to_string())
            .unwrap()
    };
    text.split("softwire {")
        .skip(1)
        .map(|b| (field(b, "ipv4"), field(b, "psid"), field(b, "b4-ipv6")))
        .collect()
}

fn ledger_softwires(l: &BTreeMap<Key, State>) -> BTreeSet<(String, String, String)> {
    l.iter()
        .map(|((a, p), (_, sw))| {
            let psid = p.rsplit('/').next().unwrap();
            let psid = if p == "-" { "0" } else { psid };
            (a.clone(), psid.to_string(), sw.clone())
        })
        .collect()
}

#[test]
fn watch_under_churn_emits_every_change_once_and_keeps_the_files() {
    let srv = active_server().start();
    let dir = TempDir::new("watch-churn");
    let conf = dir.path().join("bt.conf");
    let state = dir.path().join("state.jsonl");
    let mut w = Watcher::start(
        &srv,
        dir.path(),
        "w",
        &[
            "--snabb-conf".into(),
            conf.display().to_string(),
            "--br-address".into(),
            "2001:db8::ff".into(),
            "--state".into(),
            state.display().to_string(),
        ],
    );
    w.wait_for("caught up, following", 1);
    let want = churn(&srv, dir.path(), 0, 200);
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    assert!(w.stderr().contains("following"), "summary: {}", w.stderr());
    // The Snabb file and the state file hold the ledger.
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(snabb_softwires(&text), ledger_softwires(&want));
    let st = std::fs::read_to_string(&state).unwrap();
    assert_eq!(
        st.lines().count(),
        want.len() + 1,
        "a header and one line per binding"
    );
}

#[test]
fn watch_converges_across_a_server_restart_and_a_forced_data_missing() {
    let data = TempDir::new("watch-restart-data");
    let dir = TempDir::new("watch-restart");
    let cfg = dir.path().join("lqd.toml");
    // A history of a few changes per shard: a catch-up from before a churn cannot be served.
    std::fs::write(&cfg, "history_entries = 4\n").unwrap();
    let addrs = (
        format!("[::1]:{}", free_port())
            .parse::<SocketAddr>()
            .unwrap(),
        format!("127.0.0.1:{}", free_port())
            .parse::<SocketAddr>()
            .unwrap(),
        format!("[::1]:{}", free_port())
            .parse::<SocketAddr>()
            .unwrap(),
    );
    let server = || {
        active_server()
            .listen(addrs.0, addrs.1, addrs.2)
            .data_dir(data.path())
            .arg("--config")
            .arg(cfg.display().to_string())
            .start()
    };
    let mut srv = server();
    let state = dir.path().join("state.jsonl");
    let st = ["--state".to_string(), state.display().to_string()];
    let mut w = Watcher::start(&srv, dir.path(), "w1", &st);
    w.wait_for("caught up, following", 1);
    let mut want = churn(&srv, dir.path(), 0, 120);
    w.converge(&BTreeMap::new(), &want);

    // The server restarts (its leases are durable); the watch reconnects and catches up or
    // reloads, while a second churn runs.
    srv.terminate();
    srv = server();
    want.extend(churn(&srv, dir.path(), 1000, 120));
    w.converge(&BTreeMap::new(), &want);
    let e = w.stderr();
    assert!(e.contains("reconnecting"), "{e}");

    // lqctl stops (state written), a churn runs past the history, lqctl resumes from its
    // state: DataMissing, a reload, and only the difference is emitted.
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    let before = {
        let mut v = BTreeMap::new();
        replay(&mut v, &stream(&w.out)).unwrap();
        v
    };
    assert_eq!(before, want);
    want.extend(churn(&srv, dir.path(), 2000, 120));
    let mut w2 = Watcher::start(&srv, dir.path(), "w2", &st);
    w2.converge(&before, &want);
    let e = w2.stderr();
    assert!(e.contains("resuming"), "{e}");
    assert!(
        e.contains("DataMissing"),
        "a catch-up past a 4-entry history: {e}"
    );
    assert_eq!(w2.stop(), 0, "{}", w2.stderr());
    // The resumed run emitted the second churn's changes, not the table again.
    let n = stream(&w2.out).len();
    assert!(n < before.len() + 3 * 120, "{n} changes after resuming");
    drop(w);
}

#[test]
fn watch_resumes_from_its_state_without_repeating_a_change() {
    let srv = active_server().start();
    let dir = TempDir::new("watch-resume");
    let state = dir.path().join("state.jsonl");
    let st = ["--state".to_string(), state.display().to_string()];
    let mut w = Watcher::start(&srv, dir.path(), "w1", &st);
    w.wait_for("caught up, following", 1);
    let mut want = churn(&srv, dir.path(), 0, 100);
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0);
    let mut before = BTreeMap::new();
    replay(&mut before, &stream(&w.out)).unwrap();
    // Changes while lqctl is down come by catch-up (the history reaches back).
    want.extend(churn(&srv, dir.path(), 500, 100));
    let mut w2 = Watcher::start(&srv, dir.path(), "w2", &st);
    w2.converge(&before, &want);
    let e = w2.stderr();
    assert!(e.contains("resuming") && !e.contains("DataMissing"), "{e}");
    assert!(
        !e.contains("bulk loading"),
        "a resume catches up, it does not reload: {e}"
    );
    assert_eq!(w2.stop(), 0);
}

/// The stand-in `snabb` (a shell script, quick to start): records each invocation's arguments
/// as one line (separated by 0x1f); fails (exit 1) for any command about `fail_ipv4`.
fn stand_in(dir: &Path, fail_ipv4: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("snabb-calls.log");
    let bin = dir.join("snabb");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in *\"ipv4 {fail_ipv4};\"*|*\"ipv4={fail_ipv4}]\"*) \
         echo 'no such softwire' >&2; exit 1;; esac\n\
         printf '%s\\037' \"$@\" >> '{}'\nprintf '\\n' >> '{}'\n",
        log.display(),
        log.display()
    );
    std::fs::write(&bin, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, log)
}

fn calls(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            l.trim_end_matches('\u{1f}')
                .split('\u{1f}')
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn snabb_apply_runs_one_command_per_change_in_order() {
    let srv = active_server().start();
    let dir = TempDir::new("watch-snabb");
    let (bin, log) = stand_in(dir.path(), "192.0.2.255");
    let mut w = Watcher::start(
        &srv,
        dir.path(),
        "w",
        &[
            "--snabb-apply".into(),
            "lwaftr1".into(),
            "--snabb-bin".into(),
            bin.display().to_string(),
            "--snabb-batch".into(),
            "100000".into(),
            "--br-address".into(),
            "2001:db8::ff".into(),
        ],
    );
    w.wait_for("caught up, following", 1);
    let want = churn(&srv, dir.path(), 0, 80);
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    // Replay the recorded commands on a binding table.
    let calls = calls(&log);
    assert!(!calls.is_empty());
    let field = |v: &str, name: &str| {
        let i = v.find(&format!("{name} ")).unwrap() + name.len() + 1;
        v[i..].split(';').next().unwrap().to_string()
    };
    let mut table: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut per_binding: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in &calls {
        assert_eq!(&c[0], "config");
        assert_eq!(&c[2..5], ["-s", "snabb-softwire-v3", "lwaftr1"]);
        let (op, path) = (c[1].as_str(), c[5].as_str());
        let key = if op == "add" {
            assert_eq!(path, "/softwire-config/binding-table/softwire");
            (field(&c[6], "ipv4"), field(&c[6], "psid"))
        } else {
            let ip = path
                .split("[ipv4=")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap();
            let ps = path
                .split("[psid=")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap();
            (ip.to_string(), ps.to_string())
        };
        match op {
            "add" => assert!(
                table.insert(key.clone(), field(&c[6], "b4-ipv6")).is_none(),
                "add of a present softwire: {c:?}"
            ),
            "set" => assert!(
                table.insert(key.clone(), field(&c[6], "b4-ipv6")).is_some(),
                "set of an absent softwire: {c:?}"
            ),
            "remove" => assert!(table.remove(&key).is_some(), "remove of an absent one"),
            o => panic!("op {o}"),
        }
        per_binding.entry(key).or_default().push(op.to_string());
    }
    let got: BTreeSet<_> = table.into_iter().map(|((a, p), b)| (a, p, b)).collect();
    assert_eq!(got, ledger_softwires(&want));
    // The same changes, binding by binding, in the emitted stream's order.
    let mut expect: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut seen: BTreeMap<Key, State> = BTreeMap::new();
    for (op, k, s) in stream(&w.out) {
        let psid = if k.1 == "-" {
            "0".to_string()
        } else {
            k.1.rsplit('/').next().unwrap().to_string()
        };
        let sk = (k.0.clone(), psid);
        let before = seen.get(&k).map(|s| s.1.clone());
        let cmd = match (op.as_str(), before) {
            ("upsert", None) => Some("add"),
            ("upsert", Some(sw)) if sw != s.1 => Some("set"),
            ("upsert", Some(_)) => None,
            _ => Some("remove"),
        };
        if let Some(c) = cmd {
            expect.entry(sk).or_default().push(c.to_string());
        }
        if op == "upsert" {
            seen.insert(k, s);
        } else {
            seen.remove(&k);
        }
    }
    assert_eq!(per_binding, expect);
}

#[test]
fn snabb_apply_reports_a_failing_binding_and_exits_1() {
    let srv = active_server().import(common::import_4o6(3)).start();
    let dir = TempDir::new("watch-snabb-fail");
    // The import's second binding: 198.51.100.0 PSID 1.
    let (bin, log) = stand_in(dir.path(), "198.51.100.0");
    let mut w = Watcher::start(
        &srv,
        dir.path(),
        "w",
        &[
            "--snabb-apply".into(),
            "7".into(),
            "--snabb-bin".into(),
            bin.display().to_string(),
            "--snabb-tries".into(),
            "2".into(),
            "--br-address".into(),
            "2001:db8::ff".into(),
        ],
    );
    w.wait_for("caught up, following", 1);
    w.wait_for("failed after 2 tries", 3);
    assert_eq!(w.stop(), 1, "a failed command exits 1: {}", w.stderr());
    let e = w.stderr();
    assert!(
        e.contains("add ipv4 198.51.100.0 psid 1 failed after 2 tries"),
        "{e}"
    );
    assert!(e.contains("no such softwire"), "{e}");
    assert!(e.contains("3 failed"), "{e}");
    assert!(
        !log.exists(),
        "every binding of the import is on 198.51.100.0"
    );
}

#[test]
fn snabb_apply_sets_the_whole_table_after_a_large_load() {
    let srv = active_server().import(common::import_4o6(5)).start();
    let dir = TempDir::new("watch-snabb-all");
    let (bin, log) = stand_in(dir.path(), "0.0.0.0");
    let conf = dir.path().join("bt.conf");
    let mut w = Watcher::start(
        &srv,
        dir.path(),
        "w",
        &[
            "--snabb-apply".into(),
            "lw".into(),
            "--snabb-bin".into(),
            bin.display().to_string(),
            "--snabb-batch".into(),
            "2".into(),
            "--snabb-conf".into(),
            conf.display().to_string(),
            "--br-address".into(),
            "2001:db8::ff".into(),
        ],
    );
    w.wait_for("caught up, following", 1);
    let t0 = Instant::now();
    while !log.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    let calls = calls(&log);
    assert_eq!(calls.len(), 1, "one command for the whole load: {calls:?}");
    let c = &calls[0];
    assert_eq!(
        &c[..6],
        [
            "config",
            "set",
            "-s",
            "snabb-softwire-v3",
            "lw",
            "/softwire-config/binding-table"
        ]
    );
    assert_eq!(c[6].matches("softwire {").count(), 5, "{}", c[6]);
    assert_eq!(
        snabb_softwires(&std::fs::read_to_string(&conf).unwrap()).len(),
        5
    );
}

#[test]
fn watch_in_dhcpv4_form_follows_the_same_churn() {
    let srv = active_server().start();
    let dir = TempDir::new("watch-v4");
    let args = [
        "--server".to_string(),
        srv.lq4.to_string(),
        "--query".to_string(),
        "v4-all".to_string(),
    ];
    let mut w = Watcher::start_with(dir.path(), "w", &args);
    w.wait_for("caught up, following", 1);
    let want = churn(&srv, dir.path(), 0, 100);
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
}

/// DHCP4o6 import lines on 203.0.113.`net`, PSIDs `psids`, client-ids tagged `tag`.
fn import(net: u8, psids: std::ops::Range<u16>, tag: u8) -> String {
    psids
        .map(|p| {
            format!(
                r#"{{"ipv4":"203.0.113.{net}","psid":{{"offset":0,"len":4,"id":{p}}},"chaddr":"02000000{tag:02x}{p:02x}","client_id":"ff{tag:02x}{p:02x}","state":"active","cltt":1767225600,"expires":1867225600,"link":"{LINK}","softwire_src":"2001:db8:{tag:x}::{p:x}"}}"#
            ) + "\n"
        })
        .collect()
}

#[test]
fn two_servers_merge_by_key_and_report_a_conflict() {
    // Server A: 203.0.113.1 PSIDs 0..3; server B: 203.0.113.2 PSIDs 0..3 and 203.0.113.1 PSID 0.
    let a = active_server().import(import(1, 0..3, 0xa)).start();
    let b = active_server()
        .import(import(2, 0..3, 0xb) + &import(1, 0..1, 0xb))
        .start();
    let dir = TempDir::new("watch-two");
    let args: Vec<String> = [
        "--server",
        &a.lq6.to_string(),
        "--server",
        &b.lq6.to_string(),
        "--query",
        &format!("4o6-link:{LINK}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut w = Watcher::start_with(dir.path(), "w", &args);
    w.wait_for("caught up, following", 2);
    let mut want = BTreeMap::new();
    for (net, tag) in [(1u8, 0xau8), (2, 0xb)] {
        for p in 0..3u16 {
            want.insert(
                (format!("203.0.113.{net}"), format!("0/4/{p}")),
                (
                    format!("ff{tag:02x}{p:02x}"),
                    format!("2001:db8:{tag:x}::{p:x}")
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .to_string(),
                ),
            );
        }
    }
    // The union, less the key both hold (a conflict is never merged).
    want.remove(&("203.0.113.1".to_string(), "0/4/0".to_string()));
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    let e = w.stderr();
    assert!(
        e.contains("conflict: 203.0.113.1 psid 0/4 is held by"),
        "the shared key is reported: {e}"
    );
    assert!(e.contains(", 1 conflicts;"), "and counted once: {e}");
}

#[test]
fn watch_in_dhcpv6_form_loads_and_keys_by_duid() {
    let mut import = String::new();
    for i in 0..5 {
        import += &format!(
            r#"{{"duid":"000300010200000c{i:04x}","link":"2001:db8:2::","iana":[{{"addr":"2001:db8:2::{:x}","preferred":4294967295,"valid":4294967295}}],"cltt":1767225600}}"#,
            i + 1
        );
        import.push('\n');
    }
    let srv = active_server().import(import).start();
    let dir = TempDir::new("watch-v6");
    let args = [
        "--server".to_string(),
        srv.lq6.to_string(),
        "--query".to_string(),
        "v6-link:2001:db8:2::".to_string(),
    ];
    let mut w = Watcher::start_with(dir.path(), "w", &args);
    w.wait_for("caught up, following", 1);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    let text = std::fs::read_to_string(&w.out).unwrap();
    let mut duids = BTreeSet::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["op"], "upsert", "{l}");
        assert_eq!(v["link"], "2001:db8:2::", "{l}");
        assert!(
            duids.insert(v["duid"].as_str().unwrap().to_string()),
            "twice: {l}"
        );
    }
    assert_eq!(duids.len(), 5, "{text}");
}

#[test]
fn watch_needs_insecure_and_refuses_snabb_stdout() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lqctl"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["watch", "--server", "127.0.0.1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--insecure is required"));
    let o = run(&[
        "watch",
        "--insecure",
        "--server",
        "::1",
        "--format",
        "snabb",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        "watch",
        "--insecure",
        "--server",
        "::1",
        "--snabb-conf",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--br-address"));
    let o = run(&[
        "watch",
        "--insecure",
        "--server",
        "::1",
        "--query",
        "v4-all",
        "--query",
        "4o6-link:2001:db8:1::",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["watch", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("Without TLS, --insecure is required"),
        "{help}"
    );
}

/// Issue 17 part 1 over TLS (issue 15): against a server in secure mode (`tls = "required"`,
/// active leasequery without --allow-insecure-active), `lqctl watch` with --tls-cert,
/// --tls-key, --tls-ca loads, catches up and follows a churn to the ledger, and `lqctl bulk`
/// over TLS answers the same bindings; plain `lqctl bulk` gets nothing, and `watch` without
/// TLS and without --insecure is refused with the reason.
#[test]
fn watch_and_bulk_over_tls_against_a_server_in_secure_mode() {
    let dir = TempDir::new("watch-tls");
    let pki = Pki::new(dir.path());
    let tls = pki.flags();
    let cfg = dir.path().join("lqd.toml");
    std::fs::write(&cfg, pki.config("required")).unwrap();
    let srv = ServerBuilder::new()
        .arg("--active")
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    let mut w = Watcher::start(&srv, dir.path(), "tls", &tls);
    w.wait_for("caught up, following", 1);
    let want = churn(&srv, dir.path(), 0, 120);
    w.converge(&BTreeMap::new(), &want);
    assert_eq!(w.stop(), 0, "{}", w.stderr());
    assert!(w.stderr().contains("over TLS"), "summary: {}", w.stderr());

    let bulk = |extra: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_lqctl"))
            .args(["bulk", "--server", &srv.lq6.to_string()])
            .args(["--query", &format!("4o6-link:{LINK}"), "--format", "jsonl"])
            .args(["--timeout", "5"])
            .args(extra)
            .output()
            .expect("run lqctl bulk")
    };
    let o = bulk(&tls);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got = BTreeMap::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v.get("state").and_then(|s| s.as_str()).unwrap_or("active") == "active" {
            got.insert(key_of(&v), state_of(&v));
        }
    }
    assert_eq!(got, want, "{}", diff(&got, &want));
    // Plain against secure mode: the server closes, lqctl fails with exit 1.
    let o = bulk(&[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
    // A CA that did not sign the server's certificate: the handshake fails, said.
    let other = TempDir::new("watch-tls-other");
    let other_ca = Ca::new(other.path(), "other");
    let wrong_ca = pki.requestor.flags(&other_ca.path);
    let o = bulk(&wrong_ca);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS: the TLS handshake failed"), "{err}");
    // watch without TLS needs --insecure.
    let o = Command::new(env!("CARGO_BIN_EXE_lqctl"))
        .args(["watch", "--server", &srv.lq6.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--insecure is required to subscribe without TLS"),
        "{err}"
    );
}
