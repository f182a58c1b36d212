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
    let srv = ServerBuilder::new().import(import()).start();
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
