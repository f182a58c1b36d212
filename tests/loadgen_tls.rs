//! `loadgen` over TLS (issue 15 part 7) against a server in secure mode (`tls = "required"`):
//! `bulk` (STARTTLS on TCP 547 and DHCPTLS on TCP 67), `active --verify` and `mixed --verify`
//! pass with the requestor certificate; a CA that did not sign the server's certificate, a
//! requestor certificate from another CA and incomplete TLS flags fail with the reason.
//! Certificates are tests/common/pki.rs's (rcgen).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::pki::{Ca, Leaf, Pki};
use common::{import_4o6, log_counter, ServerBuilder, TempDir};

/// The server's PKI (tests/common/pki.rs) and another CA with a requestor certificate of its
/// own.
struct Setup {
    dir: TempDir,
    pki: Pki,
    other_ca: Ca,
    stranger: Leaf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let pki = Pki::new(dir.path());
        let other_ca = Ca::new(dir.path(), "other");
        Setup {
            stranger: other_ca.leaf("stranger.test", false),
            other_ca,
            pki,
            dir,
        }
    }

    /// A server in secure mode (`tls = "required"`, active leasequery on, no
    /// `allow_insecure_active`) with `builder`'s import and arguments.
    fn server(&self, builder: ServerBuilder) -> common::Server {
        let cfg = self.dir.path().join("lqd.toml");
        std::fs::write(&cfg, self.pki.config("required")).unwrap();
        builder
            .arg("--config")
            .arg(cfg.display().to_string())
            .start()
    }

    fn good(&self) -> Vec<String> {
        self.pki.flags()
    }
}

fn loadgen(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn n(j: &serde_json::Value, k: &str) -> u64 {
    j["counters"][k].as_u64().unwrap_or(0)
}

/// `loadgen bulk` arguments: 2 requestors x 4 queries, DHCP4o6 by link (TCP 547, STARTTLS) and
/// DHCPv4 all (TCP 67, DHCPTLS) in turn, each stream exactly 300 bindings.
fn bulk_args(srv: &common::Server, out: &TempDir, tls: Vec<String>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--out",
        out.path().to_str().unwrap(),
        "bulk",
        "--server6-lq",
        &srv.lq6.to_string(),
        "--server4-lq",
        &srv.lq4.to_string(),
        "--requestors",
        "2",
        "--queries",
        "4",
        "--query",
        "4o6-link:2001:db8:1::",
        "--query",
        "v4-all",
        "--expect",
        "300",
        "--timeout",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(tls);
    a
}

#[test]
fn bulk_over_tls_streams_every_binding_and_a_wrong_ca_fails_clearly() {
    let pki = Setup::new("lg-tls-bulk");
    // No authority: its pools would add their free addresses to "v4-all".
    let mut srv = pki.server(
        ServerBuilder::new()
            .import(import_4o6(300))
            .arg("--no-authority"),
    );
    let out = TempDir::new("lg-tls-bulk-out");
    let o = loadgen(&bulk_args(&srv, &out, pki.good()));
    assert!(o.status.success(), "{}", text(&o));
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "sent"), 8, "{j}");
    assert_eq!(n(&j, "received"), 8, "{j}");
    assert_eq!(n(&j, "bindings"), 8 * 300, "{j}");
    assert_eq!(j["metrics"]["bindings_per_stream"]["min"], 300);
    assert_eq!(j["metrics"]["bindings_per_stream"]["max"], 300);

    // The server's certificate is not signed by the CA loadgen is given: no stream, exit 1,
    // the reason said.
    let out2 = TempDir::new("lg-tls-bulk-wrong-ca");
    let o = loadgen(&bulk_args(
        &srv,
        &out2,
        pki.pki.requestor.flags(&pki.other_ca.path),
    ));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("the TLS handshake failed"), "{t}");
    assert!(t.contains("UnknownIssuer"), "{t}");
    let j = json(&out2.path().join("summary.json"));
    assert_eq!(n(&j, "bindings"), 0, "{j}");
    assert_eq!(n(&j, "error_connect_tls"), 8, "{j}");

    // A requestor certificate from another CA: the server ends the session, loadgen says so.
    let out3 = TempDir::new("lg-tls-bulk-stranger");
    let o = loadgen(&bulk_args(
        &srv,
        &out3,
        pki.stranger.flags(&pki.pki.ca.path),
    ));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let j = json(&out3.path().join("summary.json"));
    assert_eq!(n(&j, "bindings"), 0, "{j}");
    assert_eq!(n(&j, "received"), 0, "{j}");

    // Plain loadgen against secure mode gets nothing.
    let out4 = TempDir::new("lg-tls-bulk-plain");
    let o = loadgen(&bulk_args(&srv, &out4, vec![]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = json(&out4.path().join("summary.json"));
    assert_eq!(n(&j, "bindings"), 0, "{j}");

    srv.terminate();
    let log = srv.log();
    // The first run's connections: 2 requestors x 2 ports, each one handshake.
    assert_eq!(log_counter(&log, "tls_handshakes"), 4, "{log}");
    assert!(log_counter(&log, "tls_failed_unknown_ca") >= 1, "{log}");
    assert!(
        log_counter(&log, "tls_refused_plain_required") >= 1,
        "{log}"
    );
}

/// Arguments of an `active` / `mixed` run against `srv` with `tls`.
fn active_args(
    scenario: &str,
    srv: &common::Server,
    out: &TempDir,
    extra: &[&str],
    tls: Vec<String>,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--out".into(),
        out.path().to_str().unwrap().into(),
        scenario.into(),
        "--server".into(),
        srv.dhcp4o6.to_string(),
        "--server6-lq".into(),
        srv.lq6.to_string(),
        "--server4-lq".into(),
        srv.lq4.to_string(),
        "--timeout".into(),
        "2".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(tls);
    a
}

/// `active --verify` over TLS, without `--allow-insecure-active`: subscribers of the three
/// forms (4o6 and v6 over STARTTLS, v4 over DHCPTLS) bulk-load, catch up, follow a churn and
/// end with exactly the clients' leases; then `mixed --verify` (bulk requestors and the final
/// bulk check over TLS too); a wrong CA fails the set-up with the reason.
#[test]
fn active_and_mixed_over_tls_verify_and_a_wrong_ca_fails_clearly() {
    let pki = Setup::new("lg-tls-active");
    let mut srv = pki.server(
        ServerBuilder::new()
            .arg("--active")
            .arg("--max-connections")
            .arg("40"),
    );
    let out = TempDir::new("lg-tls-active-out");
    let o = loadgen(&active_args(
        "active",
        &srv,
        &out,
        &[
            "--clients",
            "120",
            "--renewals",
            "1",
            "--swchange-ratio",
            "0.3",
            "--release-ratio",
            "0.2",
            "--subscribers",
            "6",
            "--verify",
        ],
        pki.good(),
    ));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("verify: OK, all 4 following subscribers' tables equal the ledger"),
        "{t}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "active_catch_up_complete"), 6, "{j}");
    assert_eq!(n(&j, "error_verify_subscribers_differing"), 0, "{j}");
    assert!(n(&j, "active_updates_4o6") >= 2 * 120, "{j}");
    assert!(n(&j, "active_updates_v4") >= 2 * 120, "{j}");

    // Mixed on a fresh server (the active run's clients would count as extra).
    let mixed_srv = pki.server(
        ServerBuilder::new()
            .arg("--active")
            .arg("--max-connections")
            .arg("40"),
    );
    let out2 = TempDir::new("lg-tls-mixed-out");
    let o = loadgen(&active_args(
        "mixed",
        &mixed_srv,
        &out2,
        &[
            "--clients",
            "60",
            "--relay",
            "--subscribers",
            "3",
            "--requestors",
            "2",
            "--bulk-queries",
            "2",
            "--verify",
        ],
        pki.good(),
    ));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("verify: OK, the server's"), "{t}");
    let j = json(&out2.path().join("summary.json"));
    assert_eq!(n(&j, "bulk_received"), 4, "{j}");

    let out3 = TempDir::new("lg-tls-active-wrong-ca");
    let o = loadgen(&active_args(
        "active",
        &srv,
        &out3,
        &["--clients", "10", "--subscribers", "2"],
        pki.pki.requestor.flags(&pki.other_ca.path),
    ));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("loadgen: subscribers: subscriber") && t.contains("UnknownIssuer"),
        "{t}"
    );

    srv.terminate();
    let log = srv.log();
    // The 6 subscribers; the wrong-CA run's never finish a handshake.
    assert_eq!(log_counter(&log, "tls_handshakes"), 6, "{log}");
    assert_eq!(log_counter(&log, "tls_refused_plain_active"), 0, "{log}");
}

#[test]
fn incomplete_tls_flags_are_refused_naming_the_missing_ones() {
    let pki = Setup::new("lg-tls-flags");
    let cert = pki.pki.requestor.cert_path.display().to_string();
    for scenario in ["bulk", "active", "mixed", "churn"] {
        let o = loadgen(&[scenario.to_string(), "--tls-cert".into(), cert.clone()]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{scenario}: {t}");
        assert!(t.contains("missing --tls-key, --tls-ca"), "{scenario}: {t}");
    }
    let o = loadgen(&[
        "bulk".into(),
        "--tls-cert".into(),
        cert,
        "--tls-key".into(),
        "/nonexistent/key.pem".into(),
        "--tls-ca".into(),
        pki.pki.ca.path.display().to_string(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("/nonexistent/key.pem"), "{t}");
}
