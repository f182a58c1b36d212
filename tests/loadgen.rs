//! `loadgen` smoke tests against a server the test starts (small counts, bounded time): the
//! bulk scenario's counts and report files, its count check failing when it must, the
//! percentiles of an interval log read back, and the ceiling scenario.

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::{ServerBuilder, TempDir};

/// 300 DHCP4o6 bindings on link 2001:db8:1:: (every one also answers v4 "all").
fn import() -> String {
    let mut s = String::new();
    for i in 0..300u32 {
        writeln!(
            s,
            r#"{{"ipv4":"198.51.100.{}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"0200000001{:02x}","client_id":"ff00000001000300010200000001{:04x}","state":"active","cltt":1767225600,"expires":4000000000,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}"}}"#,
            i / 16 + 1,
            i % 16,
            i % 256,
            i,
            i + 1
        )
        .unwrap();
    }
    s
}

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bulk_scenario_counts_every_binding_and_writes_every_report() {
    // No authority: its pools would add their free addresses to "v4-all".
    let srv = ServerBuilder::new()
        .import(import())
        .arg("--no-authority")
        .start();
    let out = TempDir::new("lg-bulk");
    let (s6, s4) = (srv.lq6.to_string(), srv.lq4.to_string());
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "bulk",
        "--server6",
        &s6,
        "--server4",
        &s4,
        "--requestors",
        "2",
        "--queries",
        "6",
        "--query",
        "4o6-link:2001:db8:1::",
        "--query",
        "v4-all",
        "--expect",
        "300",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("sent: 12"), "{stdout}");
    assert!(stdout.contains("drops: 0 (0.00%)"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["sent"], 12);
    assert_eq!(j["counters"]["received"], 12);
    assert_eq!(j["counters"]["bindings"], 12 * 300);
    assert_eq!(j["metrics"]["bindings_per_stream"]["min"], 300);
    assert_eq!(j["metrics"]["bindings_per_stream"]["max"], 300);
    assert_eq!(j["metrics"]["time_to_first_binding"]["count"], 12);
    for m in [
        "time_to_first_binding",
        "stream_duration",
        "bindings_per_stream",
    ] {
        for ext in ["hgrm", "hlog", "svg"] {
            let f = out.path().join(format!("{m}.{ext}"));
            assert!(
                std::fs::metadata(&f)
                    .map(|m| m.len() > 100)
                    .unwrap_or(false),
                "{f:?}"
            );
        }
    }
    // The interval log reads back to the same distribution.
    let p = loadgen(&[
        "percentiles",
        out.path()
            .join("bindings_per_stream.hlog")
            .to_str()
            .unwrap(),
    ]);
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(p.status.success(), "{text}");
    assert!(text.contains("Total count    =           12]"), "{text}");
    assert!(text.contains("#[Max     =      300.000"), "{text}");
}

#[test]
fn bulk_scenario_fails_when_a_stream_is_short_of_the_expected_count() {
    let srv = ServerBuilder::new().import(import()).start();
    let out = TempDir::new("lg-short");
    let s6 = srv.lq6.to_string();
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "bulk",
        "--server6",
        &s6,
        "--requestors",
        "1",
        "--queries",
        "2",
        "--query",
        "4o6-link:2001:db8:1::",
        "--expect",
        "301",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["error_wrong_binding_count"], 2);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let o = loadgen(&["bulk", "--query", "v6-relay:xyz"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an even number of hex digits"));
    let o = loadgen(&["bulk", "--requestors", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ceiling_scenario_reports_a_rate() {
    let out = TempDir::new("lg-ceil");
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "ceiling",
        "--bytes",
        "20000000",
        "--runs",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["runs"], 3);
    assert!(j["rates"]["median_bytes/s"].as_f64().unwrap() > 0.0);
    assert!(j["rates"]["min_bytes/s"].as_f64() <= j["rates"]["max_bytes/s"].as_f64());
}

/// A server with active leasequery on (no TLS) and room for the subscribers' connections.
fn active_server() -> common::Server {
    ServerBuilder::new()
        .arg("--active")
        .arg("--allow-insecure-active")
        .arg("--max-connections")
        .arg("40")
        .start()
}

/// The arguments that point an `active` / `mixed` run at `srv`.
fn active_args(srv: &common::Server, out: &TempDir) -> Vec<String> {
    vec![
        "--out".into(),
        out.path().to_str().unwrap().into(),
        "--server".into(),
        srv.dhcp4o6.to_string(),
        "--server6-lq".into(),
        srv.lq6.to_string(),
        "--server4-lq".into(),
        srv.lq4.to_string(),
        "--timeout".into(),
        "2".into(),
    ]
}

fn run_scenario(
    scenario: &str,
    srv: &common::Server,
    out: &TempDir,
    extra: &[&str],
) -> std::process::Output {
    let mut args = active_args(srv, out);
    args.insert(2, scenario.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(&args)
        .output()
        .expect("run loadgen")
}

fn n(j: &serde_json::Value, k: &str) -> u64 {
    j["counters"][k].as_u64().unwrap_or(0)
}

/// Issue 6 `active` (and issue 5's latency figure): subscribers of the three forms bulk-load,
/// catch up, follow a churn of 150 clients with renewals, softwire changes and releases, and
/// end with exactly the clients' leases; the latency metrics are written.
#[test]
fn active_scenario_subscribers_end_with_the_clients_leases() {
    let srv = active_server();
    let out = TempDir::new("lg-active");
    let o = run_scenario(
        "active",
        &srv,
        &out,
        &[
            "--clients",
            "150",
            "--renewals",
            "2",
            "--swchange-ratio",
            "0.3",
            "--release-ratio",
            "0.2",
            "--subscribers",
            "6",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("verify: OK, all 4 following subscribers' tables equal the ledger"),
        "{stdout}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "active_catch_up_complete"), 6);
    assert_eq!(n(&j, "verify_subscribers"), 4);
    assert_eq!(n(&j, "error_verify_subscribers_differing"), 0);
    let held = n(&j, "held");
    assert!(held > 90 && held < 150, "{held}");
    // Each 4o6 and v4 follower sees at least one update per client (its DORA).
    assert!(n(&j, "active_updates_4o6") >= 2 * 150, "{j}");
    assert!(n(&j, "active_updates_v4") >= 2 * 150, "{j}");
    assert_eq!(
        n(&j, "active_updates_v6"),
        0,
        "the churn changes no plain v6 binding"
    );
    // Every change the followers saw has a latency from its send; the ACTIVE ones from the ACK.
    let from_send = j["metrics"]["active_from_send"]["count"].as_u64().unwrap();
    let update = j["metrics"]["active_update"]["count"].as_u64().unwrap();
    assert!(from_send >= 4 * 150, "{from_send}");
    assert!(
        update >= 4 * 150 && update <= from_send,
        "{update} {from_send}"
    );
    for m in ["active_update", "active_from_send"] {
        for ext in ["hgrm", "hlog", "svg"] {
            let f = out.path().join(format!("{m}.{ext}"));
            assert!(
                std::fs::metadata(&f)
                    .map(|m| m.len() > 100)
                    .unwrap_or(false),
                "{f:?}"
            );
        }
    }
}

/// Issue 6 `mixed --verify`: churn, bulk requestors and subscribers at once; the bulk check and
/// every subscriber agree with the ledger (relayed clients).
#[test]
fn mixed_scenario_verifies_through_bulk_and_subscribers() {
    let srv = active_server();
    let out = TempDir::new("lg-mixed");
    let o = run_scenario(
        "mixed",
        &srv,
        &out,
        &[
            "--clients",
            "120",
            "--relay",
            "--rate",
            "400",
            "--subscribers",
            "3",
            "--requestors",
            "2",
            "--bulk-queries",
            "3",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("***** mixed *****"), "{stdout}");
    assert!(
        stdout.contains("verify: OK, all 2 following subscribers'"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK, the server's"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "bulk_sent"), 6);
    assert_eq!(n(&j, "bulk_received"), 6);
    assert_eq!(n(&j, "error_verify_differences"), 0);
    assert_eq!(n(&j, "verify_ledger"), n(&j, "held"));
    assert!(
        j["metrics"]["time_to_first_binding"]["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn active_scenario_refuses_bad_arguments() {
    for bad in [
        &["active", "--subscribers", "0"][..],
        &["active", "--form", "v5"],
        &["mixed", "--requestors", "0"],
        &["active", "--settle", "-1"],
    ] {
        let o = loadgen(bad);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Issue 6 part 8: the README's newcomer path works as written: its first command's server
/// arguments, then its `loadgen mixed --verify` line (only the ports are the test's own, given
/// as the overriding flags, and the report directory a temporary one).
#[test]
fn readme_newcomer_path_verifies() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let args_of = |prefix: &str| -> Vec<String> {
        let line = readme
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README has a line starting {prefix:?}"));
        line[prefix.len()..]
            .split('#')
            .next()
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let mut b = ServerBuilder::new();
    for a in args_of("cargo run --release -- ") {
        b = b.arg(a);
    }
    let srv = b.start();
    let out = TempDir::new("lg-readme");
    let mut args = args_of("cargo run --release --bin loadgen -- --out lg-out mixed ");
    args.splice(0..0, active_args(&srv, &out));
    args.insert(2, "mixed".into());
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(&args)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{args:?}\n{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("verify: OK, all 2 following subscribers'"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK, the server's"), "{stdout}");
    assert!(out.path().join("active_update.svg").exists());
}
