//! The lwB4 client (`leasequery::requestor`) and `loadgen churn`: the client's messages as
//! dhcproto reads them, the client against the sans-io authority (DORA, renew with a new
//! softwire source, rebind, release, relayed), and small churns against a server the test
//! starts, with `--verify` passing, and failing when the server holds leases no client has.

mod common;

use std::net::Ipv6Addr;
use std::process::Command;

use common::{ServerBuilder, TempDir};
use dhcproto::{v4 as dp, Decodable, Decoder};
use leasequery::authority::{Authority, AuthorityConfig};
use leasequery::lease::LeaseTable;
use leasequery::lwb4::{
    client_id_of, mac_of, parse_response, softwire_of, Event, LwB4, Phase, RelayHop, ReplyKind,
};
use leasequery::proto::codes::{dhcp_state, v6msg};
use leasequery::proto::v6::{Message as V6Message, RelayMessage, V6Option};

const NOW: u32 = 1_767_225_600;

fn prefix() -> Ipv6Addr {
    "2001:db8:ff::".parse().unwrap()
}

fn hop(i: u32) -> RelayHop {
    RelayHop {
        link: "2001:db8:1::".parse().unwrap(),
        peer: format!("fe80::{i:x}").parse().unwrap(),
        interface_id: Some(format!("if{i}").into_bytes()),
        relay_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0x52, 0x4c]),
        remote_id: Some((32473, vec![1, 2, 3])),
    }
}

/// The DHCPv4 message inside a DHCPV4-QUERY (unwrapping one Relay-Forward when relayed).
fn inner(q: &[u8], relayed: bool) -> (V6Message, Vec<u8>) {
    let body = if relayed {
        let r = RelayMessage::decode(q).expect("relay-forw");
        assert_eq!(r.msg_type, v6msg::RELAY_FORW);
        r.options
            .into_iter()
            .find_map(|o| match o {
                V6Option::RelayMsg(m) => Some(m),
                _ => None,
            })
            .expect("relay-msg")
    } else {
        q.to_vec()
    };
    let m = V6Message::decode(&body).expect("dhcpv4-query");
    assert_eq!(m.msg_type, v6msg::DHCPV4_QUERY);
    let v4 = m
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::Dhcpv4Msg(v) => Some(v.clone()),
            _ => None,
        })
        .expect("option 87");
    (m, v4)
}

fn dp_decode(raw: &[u8]) -> dp::Message {
    dp::Message::decode(&mut Decoder::new(raw)).expect("dhcproto decodes")
}

fn dp_client_id(m: &dp::Message) -> Vec<u8> {
    match m.opts().get(dp::OptionCode::ClientIdentifier) {
        Some(dp::DhcpOption::ClientIdentifier(c)) => c.clone(),
        o => panic!("no client id: {o:?}"),
    }
}

fn dp_prl(m: &dp::Message) -> Vec<u8> {
    match m.opts().get(dp::OptionCode::ParameterRequestList) {
        Some(dp::DhcpOption::ParameterRequestList(p)) => p.iter().map(|c| u8::from(*c)).collect(),
        o => panic!("no PRL: {o:?}"),
    }
}

fn dp_unknown(m: &dp::Message, code: u8) -> Option<Vec<u8>> {
    m.opts()
        .iter()
        .find(|(c, _)| u8::from(**c) == code)
        .map(|(_, o)| {
            let mut buf = Vec::new();
            let mut e = dhcproto::Encoder::new(&mut buf);
            dhcproto::Encodable::encode(o, &mut e).unwrap();
            buf.get(2..).unwrap_or_default().to_vec()
        })
}

#[test]
fn client_messages_decode_in_dhcproto() {
    for relayed in [false, true] {
        let sw0 = softwire_of(prefix(), 5, 0);
        let mut c = LwB4::new(5, true, sw0, relayed.then(|| hop(5)));
        let d = c.discover();
        let (v6, raw) = inner(&d, relayed);
        assert_eq!(v6.xid, 0, "no U flag on DISCOVER");
        let m = dp_decode(&raw);
        assert_eq!(m.opcode(), dp::Opcode::BootRequest);
        assert_eq!(m.opts().msg_type(), Some(dp::MessageType::Discover));
        assert_eq!(m.xid(), c.xid());
        assert_eq!(&m.chaddr()[..6], &mac_of(5));
        assert_eq!(dp_client_id(&m), client_id_of(5));
        assert_eq!(dp_client_id(&m)[0], 255, "RFC 4361 type");
        assert!(dp_prl(&m).contains(&159));

        // Get an OFFER from the sans-io authority and check the REQUEST.
        let cfg = AuthorityConfig::demo().validate().unwrap();
        let mut a = Authority::new(&cfg, 0, 1);
        let mut t = LeaseTable::new();
        let src: Ipv6Addr = "::1".parse().unwrap();
        let o = a.handle(&mut t, &d, src, NOW);
        assert_eq!(c.on_datagram(&o.reply.expect("offer")), Ok(Event::Offered));
        let r = c.request().unwrap();
        let (_, raw) = inner(&r, relayed);
        let m = dp_decode(&raw);
        assert_eq!(m.opts().msg_type(), Some(dp::MessageType::Request));
        assert!(matches!(
            m.opts().get(dp::OptionCode::RequestedIpAddress),
            Some(dp::DhcpOption::RequestedIpAddress(a)) if a.octets()[..3] == [198, 51, 100]
        ));
        assert!(matches!(
            m.opts().get(dp::OptionCode::ServerIdentifier),
            Some(dp::DhcpOption::ServerIdentifier(_))
        ));
        assert_eq!(dp_unknown(&m, 109), Some(sw0.octets().to_vec()));
        let pp = dp_unknown(&m, 159).expect("159 in REQUEST");
        assert_eq!(&pp[..2], &[0, 4], "offset 0, PSID length 4");
        let o = a.handle(&mut t, &r, src, NOW);
        let Ok(Event::Acked(h)) = c.on_datagram(&o.reply.expect("ack")) else {
            panic!("ack")
        };
        // RENEWING: U flag, ciaddr, no 50/54.
        let n = c.renew().unwrap();
        let (v6, raw) = inner(&n, relayed);
        assert_eq!(v6.xid, 0x80_0000, "U flag on RENEWING");
        let m = dp_decode(&raw);
        assert_eq!(m.ciaddr(), h.addr);
        assert!(m.opts().get(dp::OptionCode::RequestedIpAddress).is_none());
        assert!(m.opts().get(dp::OptionCode::ServerIdentifier).is_none());
        // RELEASE.
        let rel = c.release().unwrap();
        let (_, raw) = inner(&rel, relayed);
        let m = dp_decode(&raw);
        assert_eq!(m.opts().msg_type(), Some(dp::MessageType::Release));
        assert_eq!(m.ciaddr(), h.addr);
    }
}

#[test]
fn client_against_the_sans_io_authority() {
    let cfg = AuthorityConfig::demo().validate().unwrap();
    let mut a = Authority::new(&cfg, 0, 1);
    let mut t = LeaseTable::new();
    let src: Ipv6Addr = "::1".parse().unwrap();
    let mut clients: Vec<LwB4> = (0..40u32)
        .map(|i| {
            LwB4::new(
                i,
                i % 2 == 0,
                softwire_of(prefix(), i, 0),
                (i % 3 == 0).then(|| hop(i)),
            )
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for c in &mut clients {
        let o = a.handle(&mut t, &c.discover(), src, NOW);
        assert_eq!(c.on_datagram(&o.reply.unwrap()), Ok(Event::Offered));
        let o = a.handle(&mut t, &c.request().unwrap(), src, NOW);
        assert_eq!(o.changes.len(), 1);
        let Ok(Event::Acked(h)) = c.on_datagram(&o.reply.unwrap()) else {
            panic!("ack")
        };
        assert_eq!(h.port_params.is_some(), c.shared());
        let net = if c.shared() {
            [198, 51, 100]
        } else {
            [192, 0, 2]
        };
        assert_eq!(h.addr.octets()[..3], net);
        assert_eq!(h.softwire, c.softwire());
        assert!(
            seen.insert((h.addr, h.port_params.map(|p| p.psid))),
            "unit given twice"
        );
        let b = t.get_v4(h.addr, h.port_params).expect("in the table");
        assert_eq!(b.state, dhcp_state::ACTIVE);
        assert_eq!(b.client_id, Some(c.client_id()));
        assert_eq!(b.softwire_src, Some(c.softwire()));
    }
    // Renew with a new softwire source; rebind keeps it.
    for c in clients.iter_mut().step_by(2) {
        let s1 = softwire_of(prefix(), c.index(), 1);
        c.set_softwire(s1);
        let o = a.handle(&mut t, &c.renew().unwrap(), src, NOW + 10);
        let Ok(Event::Acked(h)) = c.on_datagram(&o.reply.unwrap()) else {
            panic!("renew ack")
        };
        assert_eq!(h.softwire, s1, "server echoes the new source");
        let o = a.handle(&mut t, &c.rebind().unwrap(), src, NOW + 20);
        assert!(matches!(
            c.on_datagram(&o.reply.unwrap()),
            Ok(Event::Acked(_))
        ));
        assert_eq!(
            t.get_v4(h.addr, h.port_params).unwrap().softwire_src,
            Some(s1)
        );
    }
    // Release: no reply; the binding is no longer ACTIVE.
    for c in clients.iter_mut().take(5) {
        let h = c.held().unwrap().clone();
        let o = a.handle(&mut t, &c.release().unwrap(), src, NOW + 30);
        assert!(o.reply.is_none());
        assert_eq!(o.changes.len(), 1);
        assert_ne!(
            t.get_v4(h.addr, h.port_params).unwrap().state,
            dhcp_state::ACTIVE
        );
        assert_eq!(c.phase(), Phase::Released);
    }
    // A renewing client the server does not know gets a NAK and goes back to INIT.
    let mut other = Authority::new(&cfg, 0, 1);
    let mut t2 = LeaseTable::new();
    let c = &mut clients[10];
    let o = other.handle(&mut t2, &c.renew().unwrap(), src, NOW);
    let r = parse_response(o.reply.as_deref().unwrap(), c.relay()).unwrap();
    assert_eq!(r.kind, ReplyKind::Nak);
    assert_eq!(c.on_response(r), Event::Naked);
    assert_eq!(c.phase(), Phase::Init);
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

fn churn(srv: &common::Server, out: &TempDir, extra: &[&str]) -> std::process::Output {
    let (s, lq) = (srv.dhcp4o6.to_string(), srv.lq6.to_string());
    let mut args = vec![
        "--out",
        out.path().to_str().unwrap(),
        "churn",
        "--server",
        &s,
        "--server6-lq",
        &lq,
        "--timeout",
        "2",
        "--retries",
        "3",
    ];
    args.extend_from_slice(extra);
    loadgen(&args)
}

fn counter(v: &serde_json::Value, k: &str) -> u64 {
    v["counters"][k].as_u64().unwrap_or(0)
}

#[test]
fn small_churn_direct_verifies() {
    let srv = ServerBuilder::new().start();
    let out = TempDir::new("churn-direct");
    let o = churn(
        &srv,
        &out,
        &[
            "--clients",
            "300",
            "--shared-ratio",
            "0.6",
            "--renewals",
            "2",
            "--swchange-ratio",
            "0.25",
            "--release-ratio",
            "0.2",
            "--concurrency",
            "32",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}\n{}", srv.log());
    assert!(stdout.contains("verify: OK"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    // 300 DORA + 2 x 300 renewals, all ACKed; nothing lost on loopback at this size.
    assert_eq!(counter(&j, "acks"), 900, "{j}");
    assert_eq!(counter(&j, "sent_discover"), 300);
    assert_eq!(counter(&j, "sent_request"), 300);
    assert_eq!(counter(&j, "sent_renew"), 600);
    assert_eq!(counter(&j, "timeouts"), 0);
    assert_eq!(counter(&j, "naks"), 0);
    let held = counter(&j, "held");
    assert_eq!(held, 300 - counter(&j, "sent_release"));
    assert!(held > 180 && held < 300, "about 20 % released: {held}");
    // Every RELEASE was followed by a DHCPINFORM the server answered.
    assert_eq!(counter(&j, "inform_acks"), counter(&j, "sent_release"));
    assert_eq!(counter(&j, "sent_inform"), counter(&j, "sent_release"));
    assert_eq!(
        counter(&j, "sent"),
        counter(&j, "received"),
        "nothing lost: {j}"
    );
    assert_eq!(counter(&j, "verify_ledger"), held);
    assert_eq!(counter(&j, "verify_server_active"), held);
    assert_eq!(counter(&j, "error_verify_differences"), 0);
    assert!(counter(&j, "softwire_changes") > 0);
    for f in [
        "dora.hgrm",
        "renew.hgrm",
        "release.hgrm",
        "dora.hlog",
        "dora.svg",
        "summary.txt",
    ] {
        assert!(out.path().join(f).exists(), "{f}");
    }
}

#[test]
fn small_churn_relayed_open_loop_durable_verifies() {
    let data = TempDir::new("churn-data");
    let srv = ServerBuilder::new().data_dir(data.path()).start();
    let out = TempDir::new("churn-relay");
    let o = churn(
        &srv,
        &out,
        &[
            "--clients",
            "200",
            "--relay",
            "--rate",
            "2000",
            "--renewals",
            "1",
            "--swchange-ratio",
            "0.5",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}\n{}", srv.log());
    let j = json(&out.path().join("summary.json"));
    assert_eq!(counter(&j, "acks"), 400, "{j}");
    assert_eq!(counter(&j, "error_verify_differences"), 0);
    assert_eq!(counter(&j, "verify_server_active"), counter(&j, "held"));
}

/// The server holds leases of clients that are not in this run's ledger: verification must
/// list them as extra and exit 1.
#[test]
fn verify_fails_on_leases_no_client_holds() {
    let srv = ServerBuilder::new().start();
    let out = TempDir::new("churn-extra");
    let o = churn(
        &srv,
        &out,
        &["--clients", "20", "--release-ratio", "0", "--renewals", "0"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = churn(
        &srv,
        &out,
        &[
            "--clients",
            "30",
            "--first-client",
            "1000",
            "--release-ratio",
            "0",
            "--renewals",
            "0",
            "--verify",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("verify: extra:").count(), 20, "{stderr}");
    assert!(
        stderr.contains("verify: FAILED, 20 differences"),
        "{stderr}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(counter(&j, "verify_ledger"), 30);
    assert_eq!(counter(&j, "verify_server_active"), 50);
    assert_eq!(counter(&j, "error_verify_differences"), 20);
}

/// Issue 6: verification must fail when the server loses bindings. The test-only fault switch
/// (`--features fault-injection`, run by `.ci/run`) makes the server drop every 10th new lease
/// from its table after the DHCPACK left.
#[cfg(feature = "fault-injection")]
#[test]
fn verify_fails_when_the_server_loses_bindings() {
    let srv = ServerBuilder::new()
        .env("LEASEQUERYD_FAULT_LOSE_EVERY", "10")
        .start();
    let out = TempDir::new("churn-fault");
    let o = churn(
        &srv,
        &out,
        &[
            "--clients",
            "100",
            "--release-ratio",
            "0",
            "--renewals",
            "0",
            "--verify",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("verify: missing:").count(), 10, "{stderr}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(counter(&j, "verify_ledger"), 100);
    assert_eq!(counter(&j, "error_verify_differences"), 10);
}

#[test]
fn churn_refuses_bad_arguments() {
    for bad in [
        &["churn", "--clients", "0"][..],
        &["churn", "--shared-ratio", "1.5"],
        &["churn", "--rate", "-3"],
    ] {
        let o = loadgen(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
}

/// Issue 6: verification through an active subscriber must fail when the server loses
/// updates. `LEASEQUERYD_FAULT_UNPUBLISHED_EVERY=10` (test-only feature) acknowledges every 10th
/// new lease but never publishes it: each following subscriber misses exactly those 10.
#[cfg(feature = "fault-injection")]
#[test]
fn active_verify_fails_when_the_server_loses_updates() {
    let srv = ServerBuilder::new()
        .env("LEASEQUERYD_FAULT_UNPUBLISHED_EVERY", "10")
        .arg("--active")
        .arg("--allow-insecure-active")
        .start();
    let out = TempDir::new("active-fault");
    let (s, lq6, lq4) = (
        srv.dhcp4o6.to_string(),
        srv.lq6.to_string(),
        srv.lq4.to_string(),
    );
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "active",
        "--server",
        &s,
        "--server6-lq",
        &lq6,
        "--server4-lq",
        &lq4,
        "--clients",
        "100",
        "--release-ratio",
        "0",
        "--renewals",
        "0",
        "--subscribers",
        "2",
        "--settle",
        "2",
        "--verify",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("verify: subscriber 0: missing:").count(),
        10,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("verify: subscriber 1: missing:").count(),
        10,
        "{stderr}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(counter(&j, "held"), 100);
    assert_eq!(counter(&j, "error_verify_subscribers_differing"), 2);
}

/// Issue 6 part 2: a run is bounded by duration as well as by count: with `--duration` the
/// churn starts no exchange after it, finishes the ones under way, and what the clients hold
/// still verifies.
#[test]
fn churn_stops_at_its_duration_and_verifies() {
    let srv = ServerBuilder::new().start();
    let out = TempDir::new("churn-duration");
    let t = std::time::Instant::now();
    let o = churn(
        &srv,
        &out,
        &[
            "--clients",
            "100000",
            "--rate",
            "200",
            "--duration",
            "0.5",
            "--shared-ratio",
            "1",
            "--verify",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    let j = json(&out.path().join("summary.json"));
    let acks = counter(&j, "acks");
    assert!((20..=1000).contains(&acks), "{acks}");
    assert!(counter(&j, "stopped_by_duration") >= 1);
    assert_eq!(counter(&j, "verify_ledger"), counter(&j, "held"));
    assert_eq!(counter(&j, "held"), acks);
    assert_eq!(counter(&j, "error_verify_differences"), 0);
}
