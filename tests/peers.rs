//! Independent peers (issue: "tshark dissects a captured v6 bulk stream from the server with no
//! malformed-packet marks; dhcpkit's bulk requestor queries the server for plain v6 bindings by
//! relay-id and link-address and lists them").
//!
//! Both tools speak to TCP port 547 only, so each test creates its own network namespace
//! (`unshare --net`, root) with just a loopback interface, runs `leasequeryd` there on
//! `[::1]:547`, and tears everything down when the script ends (the namespace goes with its
//! last process). The tools come from Debian (`tshark`) and PyPI (`dhcpkit`); `.ci/run` installs
//! them and sets `LQD_REQUIRE_PEERS=1`, which turns a missing tool into a failure. Without that
//! variable a missing tool skips the test: libtest still reports it `ok` (a test cannot mark
//! itself ignored at run time), so the skip writes `SKIPPED <test>: ...` straight to the
//! process's stderr, which libtest does not capture, and the line shows in the normal
//! `cargo test` output (`a_missing_peer_tool_is_reported_in_the_normal_output` checks that).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::TempDir;
use leasequery::proto::codes::{query_type, v6msg};
use leasequery::proto::v6::{Message, V6Option};

const RELAY: &str = "000300010a0000000007";

/// Runs this test binary's `test` alone with no tool on PATH (so every peer tool is missing);
/// `require` sets LQD_REQUIRE_PEERS. Returns (success, stdout, stderr).
fn run_without_tools(test: &str, require: bool) -> (bool, String, String) {
    let empty = TempDir::new("no-tools");
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args([test, "--exact", "--test-threads", "1"])
        .env("PATH", empty.path())
        .env_remove("LQD_REQUIRE_PEERS");
    if require {
        cmd.env("LQD_REQUIRE_PEERS", "1");
    }
    let out = cmd.output().expect("run the test binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 19 item 8: a peer test that skips for a missing tool says so in the normal output
/// (no --nocapture), and with LQD_REQUIRE_PEERS=1 (CI) the same test fails instead.
#[test]
fn a_missing_peer_tool_is_reported_in_the_normal_output() {
    for test in [
        "tshark_dissects_captured_v6_and_4o6_bulk_streams_without_malformed_marks",
        "dhcpkit_requestor_lists_v6_bindings_by_relay_id_and_link_address",
        "python_ssl_requestor_does_starttls_dhcptls_bulk_and_active",
    ] {
        let (ok, stdout, stderr) = run_without_tools(test, false);
        assert!(ok, "{stdout}{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert!(
            stderr.contains(&format!("SKIPPED {test}: peer tools missing: [")),
            "the skip is not in the normal output:\n{stdout}{stderr}"
        );
        let (ok, stdout, stderr) = run_without_tools(test, true);
        assert!(!ok, "LQD_REQUIRE_PEERS=1 must fail: {stdout}{stderr}");
        assert!(stdout.contains("peer tools missing"), "{stdout}{stderr}");
    }
}

/// 300 plain v6 bindings on link 2001:db8:7:: behind one relay, and 40 DHCP4o6 bindings on
/// link 2001:db8:1::.
fn import() -> String {
    let mut s = String::new();
    for i in 0..300u32 {
        writeln!(
            s,
            r#"{{"duid":"0003000102{i:08x}","link":"2001:db8:7::","iana":[{{"addr":"2001:db8:7::{:x}","preferred":3600,"valid":4000000000}}],"iapd":[{{"prefix":"2001:db9:{:x}::/56","preferred":3600,"valid":4000000000}}],"cltt":1767225600,"relay_id":"{RELAY}","remote_id":"00000de9aa{:02x}"}}"#,
            i + 1,
            i + 1,
            i % 256
        )
        .unwrap();
    }
    for i in 0..40u32 {
        writeln!(
            s,
            r#"{{"ipv4":"198.51.100.{}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"0200000000{:02x}","client_id":"ff0000000100030001020000000000{:02x}","state":"active","cltt":1767225600,"expires":4000000000,"relay_id":"{RELAY}","link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}"}}"#,
            i / 4 + 1,
            i % 4 + 1,
            i,
            i,
            i + 1
        )
        .unwrap();
    }
    s
}

/// A DHCP4o6 bulk query by link-address 2001:db8:1:: asking for OPTION_S46_V4V6BIND.
fn query_4o6(xid: u32) -> Vec<u8> {
    use leasequery::requestor::{query, BulkV4, BulkV6};
    let v4b = query::v4_bulk(0x4444_0001, &BulkV4::All, &[51, 109, 159]);
    let duid = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    let link = "2001:db8:1::".parse().unwrap();
    query::o6_bulk(xid, &duid, &BulkV6::Link(link), query::O6_ORO, v4b)
}

/// A requestor in Python (sockets only): sends one framed query in hex, reads until the stream
/// ends (DONE, or a REPLY without OPTION_CLIENT_DATA), prints the message count.
const PY_REQUESTOR: &str = r#"
import socket, struct, sys
q = bytes.fromhex(sys.argv[1])
s = socket.create_connection(("::1", 547), timeout=20)
s.sendall(struct.pack("!H", len(q)) + q)
buf = b""; n = 0
def client_data(m):
    i = 4
    while i + 4 <= len(m):
        code, ln = struct.unpack("!HH", m[i:i+4])
        if code == 45: return True
        i += 4 + ln
    return False
while True:
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        d = s.recv(65536)
        if not d: print("closed", n); sys.exit(1)
        buf += d
    ln = struct.unpack("!H", buf[:2])[0]; m = buf[2:2+ln]; buf = buf[2+ln:]; n += 1
    if m[0] == 16 or (m[0] == 15 and not client_data(m)): break
s.close()
print("messages", n)
"#;

/// Runs `body` (bash) in a fresh network namespace where `leasequeryd` serves the import on
/// `[::1]:547` and `127.0.0.1:67`; returns (status ok, stdout+stderr of the script).
fn in_netns(dir: &Path, body: &str) -> (bool, String) {
    std::fs::write(dir.join("leases.jsonl"), import()).unwrap();
    std::fs::write(dir.join("requestor.py"), PY_REQUESTOR).unwrap();
    let script = format!(
        r#"set -u
cd "{dir}"
ip link set lo up
"$LQD" --shards 2 --import leases.jsonl --lq6-listen "[::1]:547" --lq4-listen 127.0.0.1:67 --metrics-listen off 2>server.log &
SRV=$!
trap 'kill -TERM $SRV 2>/dev/null; wait $SRV 2>/dev/null' EXIT
for i in $(seq 200); do grep -q "leasequeryd serving" server.log && break; sleep 0.05; done
grep -q "leasequeryd serving" server.log || {{ echo "server did not start"; cat server.log; exit 1; }}
{body}
"#,
        dir = dir.display()
    );
    let out = Command::new("timeout")
        .arg("120")
        .arg("unshare")
        .arg("--net")
        .arg("bash")
        .arg("-c")
        .arg(script)
        .env("LQD", env!("CARGO_BIN_EXE_leasequeryd"))
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn tshark_dissects_captured_v6_and_4o6_bulk_streams_without_malformed_marks() {
    if !common::peers::tools(
        "tshark_dissects_captured_v6_and_4o6_bulk_streams_without_malformed_marks",
        &["unshare", "ip", "tshark", "python3", "timeout"],
    ) {
        return;
    }
    let dir = TempDir::new("tshark");
    let plain = {
        let m = Message {
            msg_type: v6msg::LEASEQUERY,
            xid: 0x5a_0001,
            options: vec![
                V6Option::ClientId(vec![0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
                V6Option::LqQuery {
                    query_type: query_type::BY_RELAY_ID,
                    link_address: "::".parse().unwrap(),
                    options: vec![V6Option::RelayId(hex::decode(RELAY).unwrap())],
                },
            ],
        };
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    };
    let body = format!(
        r#"tshark -q -i lo -w cap.pcapng -f "tcp port 547" 2>tshark.log &
TS=$!
for i in $(seq 200); do grep -q "Capture started" tshark.log && break; sleep 0.05; done
python3 requestor.py {plain} || exit 1
python3 requestor.py {o6} || exit 1
sleep 0.5
kill -INT $TS; wait $TS
"#,
        plain = hex::encode(&plain),
        o6 = hex::encode(query_4o6(0x5a_0002)),
    );
    let (ok, out) = in_netns(dir.path(), &body);
    assert!(ok, "{out}");
    // The plain stream: REPLY + 299 DATA + DONE; the 4o6 one: REPLY + 39 DATA + DONE.
    assert!(out.contains("messages 301"), "{out}");
    assert!(out.contains("messages 41"), "{out}");

    let fields = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("cap.pcapng"))
        .args(["-Y", "dhcpv6.bulk_leasequery", "-T", "fields"])
        .args([
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-E",
            "separator=;",
        ])
        .args(["-e", "dhcpv6.bulk_leasequery.msgtype"])
        .args(["-e", "dhcpv6.bulk_leasequery.size"])
        .args(["-e", "_ws.malformed"])
        .output()
        .expect("tshark -r");
    let text = String::from_utf8_lossy(&fields.stdout).to_string();
    let mut per_type: BTreeMap<u8, usize> = BTreeMap::new();
    let mut malformed_frames = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split(';').collect();
        assert!(cols.len() >= 3, "{line}");
        let types: Vec<u8> = cols[0].split(',').map(|t| t.parse().unwrap()).collect();
        let sizes: Vec<u16> = cols[1].split(',').map(|t| t.parse().unwrap()).collect();
        for t in &types {
            *per_type.entry(*t).or_default() += 1;
        }
        if !cols[2].is_empty() {
            // Wireshark's bulk-leasequery dissector reads past the end of a message with no
            // options, which a bare LEASEQUERY-DONE is (RFC 5460 §5.3 allows it); that mark,
            // on the frame's last message, is the only one allowed.
            malformed_frames += 1;
            assert_eq!(types.last(), Some(&v6msg::LEASEQUERY_DONE), "{line}");
            assert_eq!(sizes.last(), Some(&4), "{line}");
        }
    }
    assert_eq!(
        per_type.get(&v6msg::LEASEQUERY),
        Some(&2),
        "{per_type:?}\n{text}"
    );
    assert_eq!(
        per_type.get(&v6msg::LEASEQUERY_REPLY),
        Some(&2),
        "{per_type:?}"
    );
    assert_eq!(
        per_type.get(&v6msg::LEASEQUERY_DATA),
        Some(&(299 + 39)),
        "{per_type:?}"
    );
    assert!(
        malformed_frames <= 2,
        "only the two bare DONEs may be marked"
    );

    // The 4o6 stream's options dissect: OPTION_DHCPV4_MSG in the query and in each of the 41
    // answers (tshark 4.0 shows option 87 as opaque octets; tests/conformance/dhcp4o6.rs decodes
    // the DHCPv4 inside), and one OPTION_S46_V4V6BIND per binding, whose IPv4 addresses are
    // the imported ones.
    let o6 = Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("cap.pcapng"))
        .args([
            "-Y",
            "dhcpv6.bulk_leasequery",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
        ])
        .args(["-E", "aggregator=,", "-e", "dhcpv6.option.type"])
        .args(["-e", "dhcpv6.s46_v4v6bind.ipv4_address"])
        .output()
        .expect("tshark -r");
    let o6text = String::from_utf8_lossy(&o6.stdout).to_string();
    let mut opt87 = 0;
    let mut v4addrs = Vec::new();
    for line in o6text.lines() {
        let mut cols = line.split('\t');
        opt87 += cols
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|t| *t == "87")
            .count();
        v4addrs.extend(
            cols.next()
                .unwrap_or("")
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        );
    }
    assert_eq!(opt87, 1 + 41, "{o6text}");
    assert_eq!(v4addrs.len(), 40, "{o6text}");
    v4addrs.sort();
    v4addrs.dedup();
    assert_eq!(
        v4addrs.len(),
        10,
        "10 shared addresses, 4 PSIDs each: {v4addrs:?}"
    );
    assert!(v4addrs.iter().all(|a| a.starts_with("198.51.100.")));
}

#[test]
fn dhcpkit_requestor_lists_v6_bindings_by_relay_id_and_link_address() {
    if !common::peers::tools(
        "dhcpkit_requestor_lists_v6_bindings_by_relay_id_and_link_address",
        &["unshare", "ip", "ipv6-dhcp-test-leasequery", "timeout"],
    ) {
        return;
    }
    let dir = TempDir::new("dhcpkit");
    // dhcpkit names a DUID-LL (type 3) "linklayer:<hardware type>:<address>".
    let body = r#"timeout 60 ipv6-dhcp-test-leasequery -s ::1 -t relay-id linklayer:1:0a0000000007 > relay.out 2>&1 || { cat relay.out; exit 1; }
timeout 60 ipv6-dhcp-test-leasequery -s ::1 -t -L 2001:db8:7:: link-address > link.out 2>&1 || { cat link.out; exit 1; }
"#;
    let (ok, out) = in_netns(dir.path(), body);
    assert!(ok, "{out}");
    for (file, bindings) in [("relay.out", 300), ("link.out", 300)] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        // One response per binding, then the DONE.
        assert!(
            text.contains(&format!("{} responses received", bindings + 1)),
            "{file}: {}",
            text.lines().last().unwrap_or("")
        );
        assert_eq!(text.matches("LeasequeryReplyMessage(").count(), 1, "{file}");
        assert_eq!(text.matches("LeasequeryDoneMessage(").count(), 1, "{file}");
        assert_eq!(
            text.matches("ClientDataOption(").count(),
            bindings,
            "{file}"
        );
        // Every plain v6 binding's address is listed.
        for i in [1u32, 150, 300] {
            assert!(
                text.contains(&format!("IPv6Address('2001:db8:7::{i:x}')")),
                "{file}: 2001:db8:7::{i:x} missing"
            );
        }
    }
}

/// Issue 15: an independent TLS requestor, Python's `ssl` module (OpenSSL) with hand-made
/// DHCP messages (`tests/peers/tls_requestor.py`), does STARTTLS + a DHCPv6 bulk query,
/// DHCPTLS + a DHCPv4 bulk query, and an active subscription whose update it checks. The
/// server runs `tls = "required"` (any plain query would be closed); certificates by rcgen.
#[test]
fn python_ssl_requestor_does_starttls_dhcptls_bulk_and_active() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    if !common::peers::tools(
        "python_ssl_requestor_does_starttls_dhcptls_bulk_and_active",
        &["python3", "timeout"],
    ) {
        return;
    }
    let dir = TempDir::new("pyssl");
    let d = dir.path();
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "peer test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    for (name, server) in [("lqd.test", true), ("requestor.test", false)] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress("::1".parse().unwrap()));
        }
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(d.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(d.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    // 25 plain v6 bindings on 2001:db8:2::, 12 plain v4 bindings.
    let mut import = String::new();
    for i in 1..=25u32 {
        writeln!(
            import,
            r#"{{"duid":"00030001{i:08x}","link":"2001:db8:2::","iana":[{{"addr":"2001:db8:2::{i:x}","preferred":3600,"valid":7200}}],"cltt":1767225600}}"#
        )
        .unwrap();
    }
    for i in 1..=12u32 {
        writeln!(
            import,
            r#"{{"ipv4":"10.9.0.{i}","chaddr":"02:00:0a:09:00:{i:02x}","state":"active","cltt":1767225600,"expires":1900000000}}"#
        )
        .unwrap();
    }
    let feed = d.join("feed.jsonl");
    std::fs::write(&feed, "").unwrap();
    let path = |n: &str| d.join(n).display().to_string();
    let cfg = d.join("lqd.toml");
    std::fs::write(
        &cfg,
        format!(
            "tls = \"required\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n\
             active = true\nauthority_enabled = false\n",
            path("lqd.test.pem"),
            path("lqd.test.key"),
            path("ca.pem")
        ),
    )
    .unwrap();
    let srv = common::ServerBuilder::new()
        .import(import)
        .arg("--config")
        .arg(path("lqd.toml"))
        .arg("--feed")
        .arg(feed.display().to_string())
        .start();
    let line = r#"{"duid":"000300010000abcd","link":"2001:db8:2::","iana":[{"addr":"2001:db8:2::abcd","preferred":3600,"valid":7200}],"cltt":1767225600}"#;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/tls_requestor.py");
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(script)
        .args(["--lq6", &srv.lq6.to_string(), "--lq4", &srv.lq4.to_string()])
        .args(["--ca", &path("ca.pem")])
        .args(["--cert", &path("requestor.test.pem")])
        .args(["--key", &path("requestor.test.key")])
        .args(["--feed", &feed.display().to_string(), "--feed-line", line])
        .args(["--duid", "000300010000abcd", "--link", "2001:db8:2::"])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", srv.log());
    assert!(stdout.contains(": 25 bindings"), "{stdout}");
    let v4: Vec<String> = (1..=12).map(|i| format!("10.9.0.{i}")).collect::<Vec<_>>();
    let mut v4 = v4;
    v4.sort();
    assert!(
        stdout.contains(&format!("12 bindings, {}", v4.join(","))),
        "{stdout}"
    );
    assert!(
        stdout.contains("active over TLSv1.3: update for 2001:db8:2::abcd"),
        "{stdout}"
    );
    let mut srv = srv;
    srv.terminate();
    assert_eq!(common::log_counter(&srv.log(), "tls_handshakes"), 3);
}
