//! `lqctl bulk` against real servers on loopback (issue 17): the jsonl round trip (import ->
//! server -> lqctl -> a second server's import) for v4, DHCP4o6 and v6; the Snabb formats
//! validated by an independent validator (`yanglint`, Debian `libyang-tools`; a missing
//! yanglint fails under LQD_REQUIRE_PEERS=1 and skips loudly otherwise) and the text form
//! compared with the JSON; several servers merged, with a conflict; exit codes.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, ServerBuilder, TempDir};
use leasequery::feed::import::{parse_line, FeedBinding};
use leasequery::proto::codes::dhcp_state;

/// What one lqctl run gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs lqctl with `args`; killed (and the test failed) if it takes over 60 s.
fn lqctl(args: &[&str]) -> Run {
    let dir = TempDir::new("lqctl-run");
    let out = std::fs::File::create(dir.path().join("out")).unwrap();
    let err = std::fs::File::create(dir.path().join("err")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lqctl"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn lqctl");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lqctl {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(dir.path().join("out")).unwrap(),
        stderr: std::fs::read_to_string(dir.path().join("err")).unwrap(),
    }
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// The bound bindings of a JSON-lines text, read by the server's own import parser, as
/// comparable strings (every field; `Debug` of the parsed binding).
fn active_set(jsonl: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for (n, line) in jsonl.lines().enumerate() {
        let b = parse_line(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        match b {
            Some(FeedBinding::V4(b)) if b.state == dhcp_state::ACTIVE => {
                set.insert(format!("{b:?}"));
            }
            Some(FeedBinding::V6(b))
                if b.iana.iter().any(|a| a.valid_until > now())
                    || b.iapd.iter().any(|p| p.valid_until > now()) =>
            {
                set.insert(format!("{b:?}"));
            }
            _ => {}
        }
    }
    set
}

/// Plain DHCPv4 bindings 10.`net`.0.1.., active (and a few released ones that must not count).
fn import_v4(net: u8, n: usize) -> String {
    let (cltt, expires) = (now() - 100, now() + 3600);
    let mut s = String::new();
    for i in 0..n {
        let state = if i % 10 == 9 { "released" } else { "active" };
        writeln!(
            s,
            r#"{{"ipv4":"10.{net}.{}.{}","chaddr":"02:00:0a:{net:02x}:{:02x}:{:02x}","client_id":"01020000{:08x}","state":"{state}","cltt":{cltt},"expires":{expires},"relay_id":"000300010a00000000{net:02x}","remote_id":"6c696e65{i:04x}"}}"#,
            i / 250,
            i % 250 + 1,
            i / 256,
            i % 256,
            i
        )
        .unwrap();
    }
    s
}

/// DHCP4o6 bindings on link 2001:db8:1::: `shared` on shared addresses (offset 6, 4-bit PSIDs)
/// and `full` full addresses, each with a softwire source.
fn import_4o6(shared: usize, full: usize) -> String {
    let (cltt, expires) = (now() - 100, now() + 7200);
    let mut s = String::new();
    for i in 0..shared {
        writeln!(
            s,
            r#"{{"ipv4":"198.51.100.{}","psid":{{"offset":6,"len":4,"id":{}}},"chaddr":"02:00:00:00:{:02x}:{:02x}","client_id":"ff{i:08x}00030001020000{i:06x}","state":"active","cltt":{cltt},"expires":{expires},"relay_id":"000300010a0000000001","link":"2001:db8:1::","softwire_src":"2001:db8:1:{i:x}::1"}}"#,
            i / 16 + 1,
            i % 16,
            i / 256,
            i % 256
        )
        .unwrap();
    }
    for i in 0..full {
        writeln!(
            s,
            r#"{{"ipv4":"203.0.113.{}","chaddr":"02:00:00:01:00:{i:02x}","state":"active","cltt":{cltt},"expires":4294967295,"link":"2001:db8:1::","softwire_src":"2001:db8:1:f00::{i:x}"}}"#,
            i + 1
        )
        .unwrap();
    }
    s
}

/// Plain DHCPv6 bindings on link 2001:db8:2:: with addresses, prefixes, relay and remote ids;
/// one with infinite lifetimes.
fn import_v6(n: usize) -> String {
    let cltt = now() - 100;
    let mut s = String::new();
    for i in 0..n {
        let (pref, valid) = if i == 0 {
            (4294967295u32, 4294967295u32)
        } else {
            (1800, 3600)
        };
        writeln!(
            s,
            r#"{{"duid":"000300010200000b{i:04x}","link":"2001:db8:2::","iana":[{{"addr":"2001:db8:2::{:x}","preferred":{pref},"valid":{valid}}}],"iapd":[{{"prefix":"2001:db8:{:x}00::/56","preferred":{pref},"valid":{valid}}}],"cltt":{cltt},"relay_id":"000300010a0000000002","remote_id":"00000de9{i:04x}"}}"#,
            i + 1,
            i + 2
        )
        .unwrap();
    }
    s
}

/// import -> server -> `lqctl bulk --format jsonl` -> the same bound bindings; that output
/// imported by a second server -> lqctl -> the same again.
fn round_trip(import: &str, query: &str, v4_port: bool) {
    let want = active_set(import);
    assert!(want.len() >= 10, "the import has bindings: {}", want.len());
    let mut texts = vec![import.to_string()];
    for round in 0..2 {
        let srv = ServerBuilder::new()
            .arg("--no-authority")
            .import(texts.last().unwrap().clone())
            .start();
        let addr = if v4_port { srv.lq4 } else { srv.lq6 }.to_string();
        let r = lqctl(&[
            "bulk", "--server", &addr, "--query", query, "--format", "jsonl",
        ]);
        assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
        assert_eq!(
            active_set(&r.stdout),
            want,
            "round {round}: lqctl's jsonl holds other bound bindings than the import"
        );
        assert!(r.stderr.contains("1 answered, 0 failed"), "{}", r.stderr);
        texts.push(r.stdout);
    }
}

#[test]
fn round_trip_v4() {
    round_trip(&import_v4(1, 60), "v4-all", true);
}

#[test]
fn round_trip_4o6() {
    round_trip(&import_4o6(48, 8), "4o6-link:2001:db8:1::", false);
}

#[test]
fn round_trip_v6() {
    round_trip(&import_v6(24), "v6-link:2001:db8:2::", false);
}

/// yanglint's verdict on `doc` (a snabb-softwire-v3 config in JSON): Ok, or its message.
fn yanglint(doc: &str, dir: &TempDir, name: &str) -> Result<(), String> {
    let yang = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/yang");
    assert!(
        std::path::Path::new(yang)
            .join("snabb-softwire-v3.yang")
            .is_file(),
        "{yang}/snabb-softwire-v3.yang missing: the YANG modules live beside the repository"
    );
    let f = dir.path().join(name);
    std::fs::write(&f, doc).unwrap();
    let out = Command::new("yanglint")
        .args(["-p", yang, "-t", "config"])
        .arg(format!("{yang}/snabb-softwire-v3.yang"))
        .arg(&f)
        .output()
        .expect("run yanglint");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// (ipv4, psid, b4-ipv6, br-address, psid-length, reserved-ports-bit-count)
type Softwire = (String, u64, String, String, u64, u64);

fn softwires_of_json(doc: &str) -> BTreeSet<Softwire> {
    let v: serde_json::Value = serde_json::from_str(doc).expect("snabb-json is JSON");
    let list = v["snabb-softwire-v3:softwire-config"]["binding-table"]["softwire"]
        .as_array()
        .expect("a softwire list");
    list.iter()
        .map(|s| {
            (
                s["ipv4"].as_str().unwrap().to_string(),
                s["psid"].as_u64().unwrap(),
                s["b4-ipv6"].as_str().unwrap().to_string(),
                s["br-address"].as_str().unwrap().to_string(),
                s["port-set"]["psid-length"].as_u64().unwrap(),
                s["port-set"]["reserved-ports-bit-count"]
                    .as_u64()
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// The softwires of the Snabb configuration text (leaf statements `name value;` inside
/// `softwire { ... }` blocks, `port-set { ... }` nested).
fn softwires_of_text(doc: &str) -> BTreeSet<Softwire> {
    let mut out = BTreeSet::new();
    let mut cur: Option<std::collections::HashMap<String, String>> = None;
    let mut depth = 0;
    for line in doc.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.ends_with('{') {
            depth += 1;
            if line.starts_with("softwire ") && !line.starts_with("softwire-config") {
                assert!(cur.is_none(), "nested softwire");
                cur = Some(Default::default());
            }
        } else if line == "}" {
            depth -= 1;
            if let Some(m) = cur.as_ref().filter(|_| depth == 2) {
                let g = |k: &str| m.get(k).cloned().unwrap_or_else(|| panic!("no {k}: {m:?}"));
                out.insert((
                    g("ipv4"),
                    g("psid").parse().unwrap(),
                    g("b4-ipv6"),
                    g("br-address"),
                    g("psid-length").parse().unwrap(),
                    m.get("reserved-ports-bit-count")
                        .map_or(0, |v| v.parse().unwrap()),
                ));
                cur = None;
            }
        } else {
            let (k, v) = line
                .strip_suffix(';')
                .and_then(|l| l.split_once(' '))
                .unwrap_or_else(|| panic!("not a leaf statement: {line}"));
            if let Some(m) = cur.as_mut() {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
    assert_eq!(depth, 0, "unbalanced braces");
    out
}

/// `--format snabb-json` validates against snabb-softwire-v3 (yanglint) for shared and full
/// addresses; `--format snabb` carries the same softwires; each value is the binding's.
#[test]
fn snabb_formats_validate_and_agree() {
    if !common::peers::tools("snabb_formats_validate_and_agree", &["yanglint"]) {
        return;
    }
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(import_4o6(40, 6))
        .start();
    let addr = srv.lq6.to_string();
    let args = |f: &'static str| {
        vec![
            "bulk",
            "--server",
            Box::leak(addr.clone().into_boxed_str()),
            "--query",
            "4o6-link:2001:db8:1::",
            "--format",
            f,
            "--br-address",
            "2001:db8:ffff::1",
        ]
    };
    let json = lqctl(&args("snabb-json"));
    assert_eq!(json.code, 0, "{}", json.stderr);
    let text = lqctl(&args("snabb"));
    assert_eq!(text.code, 0, "{}", text.stderr);
    let dir = TempDir::new("yang");
    yanglint(&json.stdout, &dir, "all.json").expect("snabb-json validates");
    let from_json = softwires_of_json(&json.stdout);
    assert_eq!(from_json.len(), 46);
    assert_eq!(softwires_of_text(&text.stdout), from_json);
    // Shared: PSID and length from option 159, its offset as reserved-ports-bit-count.
    assert!(from_json.contains(&(
        "198.51.100.1".into(),
        3,
        "2001:db8:1:3::1".into(),
        "2001:db8:ffff::1".into(),
        4,
        6
    )));
    // Full: PSID 0, psid-length 0.
    assert!(from_json.contains(&(
        "203.0.113.2".into(),
        0,
        "2001:db8:1:f00::1".into(),
        "2001:db8:ffff::1".into(),
        0,
        0
    )));
    // The validator does refuse a document without a mandatory leaf (so its Ok above means
    // something): br-address removed.
    let broken = json
        .stdout
        .replacen("\"br-address\": \"2001:db8:ffff::1\", ", "", 1);
    assert_ne!(broken, json.stdout);
    assert!(yanglint(&broken, &dir, "broken.json").is_err());
}

/// Two servers with disjoint bindings: the merged output is the union (exit 0). Two servers
/// answering one key: a conflict on stderr, neither binding written, the rest written, exit 3.
#[test]
fn several_servers_merge_and_report_conflicts() {
    let a = import_v4(1, 30);
    let b = import_v4(2, 30);
    let sa = ServerBuilder::new()
        .arg("--no-authority")
        .import(a.clone())
        .start();
    let sb = ServerBuilder::new()
        .arg("--no-authority")
        .import(b.clone())
        .start();
    let (la, lb) = (sa.lq4.to_string(), sb.lq4.to_string());
    let r = lqctl(&[
        "bulk",
        "--server",
        &la,
        "--server",
        &lb,
        "--query",
        "v4-all",
        "--format",
        "jsonl",
        "--verbose",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let union: BTreeSet<String> = active_set(&a).union(&active_set(&b)).cloned().collect();
    assert_eq!(active_set(&r.stdout), union);
    assert!(r.stderr.contains("2 answered, 0 failed"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("[{la}] done")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("[{lb}] done")), "{}", r.stderr);
    // A third server holding 10.1.0.1 (a line of `a`) and one binding of its own.
    let own = import_v4(3, 1);
    let dup = a.lines().next().unwrap().to_string() + "\n" + &own;
    let sc = ServerBuilder::new()
        .arg("--no-authority")
        .import(dup)
        .start();
    let lc = sc.lq4.to_string();
    let r = lqctl(&[
        "bulk", "--server", &la, "--server", &lc, "--query", "v4-all", "--format", "jsonl",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("conflict: 10.1.0.1 answered by {la} and {lc}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("1 conflicts"), "{}", r.stderr);
    let got = active_set(&r.stdout);
    let mut want: BTreeSet<String> = active_set(&a).union(&active_set(&own)).cloned().collect();
    let first = active_set(a.lines().next().unwrap());
    want.retain(|x| !first.contains(x));
    assert_eq!(got, want);
    assert!(!r.stdout.contains("\"10.1.0.1\""));
}

/// A server that is down, or one answering an error status: exit 1, the others' bindings
/// still written.
#[test]
fn failures_exit_1() {
    let import = import_v4(1, 20);
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(import.clone())
        .start();
    let up = srv.lq4.to_string();
    let down = format!("127.0.0.1:{}", free_port());
    let r = lqctl(&["bulk", "--server", &down, "--query", "v4-all"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("connect"), "{}", r.stderr);
    let r = lqctl(&[
        "bulk", "--server", &up, "--server", &down, "--query", "v4-all", "--format", "jsonl",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(active_set(&r.stdout), active_set(&import));
    assert!(r.stderr.contains("1 answered, 1 failed"), "{}", r.stderr);
    // A link the server does not know: NotConfigured.
    let r = lqctl(&[
        "bulk",
        "--server",
        &srv.lq6.to_string(),
        "--query",
        "v6-link:2001:db8:99::",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("NotConfigured"), "{}", r.stderr);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &[][..],
        &["bulk"],
        &["bulk", "--server", "127.0.0.1"],
        &["bulk", "--server", "127.0.0.1", "--query", "v9-all"],
        &["bulk", "--server", "127.0.0.1", "--query", "v6-link:nope"],
        &["bulk", "--server", "a b", "--query", "v4-all"],
        &["bulk", "--server", "127.0.0.1:x", "--query", "v4-all"],
        &[
            "bulk",
            "--server",
            "127.0.0.1",
            "--query",
            "v4-all",
            "--format",
            "xml",
        ],
        &[
            "bulk",
            "--server",
            "127.0.0.1",
            "--query",
            "v4-all",
            "--format",
            "snabb",
        ],
        &[
            "bulk",
            "--server",
            "127.0.0.1",
            "--query",
            "v4-all",
            "--timeout",
            "0",
        ],
        &["frobnicate"],
    ] {
        let r = lqctl(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?} says why");
    }
    let r = lqctl(&["bulk", "--help"]);
    assert_eq!(r.code, 0);
    for word in [
        "--server",
        "--query",
        "--format",
        "--br-address",
        "4o6-address:ADDR",
    ] {
        assert!(r.stdout.contains(word), "--help names {word}");
    }
}

/// Each query kind reaches the server and selects its bindings: by MAC, client-id, relay-id,
/// remote-id, address, for v4, DHCP4o6 and v6 (the count of bindings lqctl writes).
#[test]
fn every_query_kind_selects_its_bindings() {
    let import = import_v4(1, 20) + &import_4o6(16, 2) + &import_v6(8);
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(import)
        .start();
    let (l6, l4) = (srv.lq6.to_string(), srv.lq4.to_string());
    let count = |server: &str, query: &str| {
        let r = lqctl(&[
            "bulk", "--server", server, "--query", query, "--format", "jsonl",
        ]);
        assert_eq!(r.code, 0, "{query}: {}", r.stderr);
        r.stdout.lines().count()
    };
    // v4 binding 5: chaddr 02:00:0a:01:00:05, client-id 0102000000000005, remote-id line0005.
    assert_eq!(count(&l4, "v4-mac:02:00:0a:01:00:05"), 1);
    assert_eq!(count(&l4, "v4-client:0102000000000005"), 1);
    assert_eq!(count(&l4, "v4-remote:6c696e650005"), 1);
    // Relay 000300010a0000000001: the 18 bound v4 bindings (a query by relay-id returns current
    // bindings only, RFC 6926 §8.2; 2 of the 20 are released) and the 16 shared DHCP4o6 ones.
    assert_eq!(count(&l4, "v4-relay:000300010a0000000001"), 34);
    assert_eq!(count(&l6, "4o6-relay:000300010a0000000001"), 16);
    assert_eq!(count(&l6, "4o6-address:2001:db8:1:3::1"), 1);
    assert_eq!(count(&l6, "4o6-client:ff0000000300030001020000000003"), 1);
    assert_eq!(count(&l6, "4o6-link:2001:db8:1::"), 18);
    assert_eq!(count(&l6, "v6-client:000300010200000b0003"), 1);
    assert_eq!(count(&l6, "v6-relay:000300010a0000000002"), 8);
    assert_eq!(count(&l6, "v6-remote:00000de90002"), 1);
    assert_eq!(count(&l6, "v6-address:2001:db8:2::4"), 1);
    assert_eq!(count(&l6, "v6-link:2001:db8:2::"), 8);
}
