//! Active leasequery over loopback (RFC 7653, RFC 7724, the DHCP4o6 draft): gating, live
//! updates in the three wire forms, catch-up with CatchUpComplete and DataMissing, keepalives,
//! one query per connection, and the final message on shutdown. Changes are driven through the
//! feed file (`--feed`); timers are shortened through the config file.

mod active_common;
mod common;

use std::time::Duration;

use active_common::*;
use common::ServerBuilder;
use leasequery::proto::codes::{v4msg, v4status, v6msg, v6opt, v6status};
use leasequery::proto::v4;
use leasequery::proto::v6::{self, V6Option};

#[test]
fn gating_off_by_default_and_insecure_needs_its_own_setting() {
    // Off by default: v6 REPLY NotSupported then close; v4 closes.
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    c.send(&active6(1, vec![]));
    let r = v6::Message::decode(&c.recv().unwrap()).unwrap();
    assert_eq!(r.msg_type, v6msg::LEASEQUERY_REPLY);
    assert!(r.options.iter().any(
        |o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::NOT_SUPPORTED)
    ));
    assert!(c.recv().is_none());
    let mut c = srv.connect4();
    c.send(&active4(2, None));
    assert!(c.closed_silently(Duration::from_secs(5)));
    drop(srv);

    // --active alone: refused (no TLS, and insecure mode is a separate setting).
    let srv = ServerBuilder::new().arg("--active").start();
    let mut c = srv.connect6();
    c.send(&active6(3, vec![]));
    let r = v6::Message::decode(&c.recv().unwrap()).unwrap();
    assert!(r
        .options
        .iter()
        .any(|o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::NOT_ALLOWED)));
    assert!(c.recv().is_none());
    let mut c = srv.connect4();
    c.send(&active4(4, None));
    let r = v4::Message::decode(&c.recv().unwrap()).unwrap();
    assert_eq!(r.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    assert_eq!(r.xid, 4);
    assert!(r.options.iter().any(
        |o| matches!(o, v4::V4Option::StatusCode { code, .. } if *code == v4status::NOT_ALLOWED)
    ));
    assert!(c.recv().is_none());
    // STARTTLS and DHCPTLS are refused (no TLS yet).
    let mut c = srv.connect6();
    c.send(&[v6msg::STARTTLS, 0, 0, 9]);
    let r = v6::Message::decode(&c.recv().unwrap()).unwrap();
    assert!(r.options.iter().any(|o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::TLS_CONNECTION_REFUSED)));
    let mut c = srv.connect4();
    c.send(&encode4(&v4::Message::new(1, v4msg::TLS, 10)));
    let r = v4::Message::decode(&c.recv().unwrap()).unwrap();
    assert_eq!(r.message_type(), Some(v4msg::TLS));
    assert!(r.options.iter().any(|o| matches!(o, v4::V4Option::StatusCode { code, .. } if *code == v4status::TLS_CONNECTION_REFUSED)));
    drop(srv);

    // The flag needs --active too (config validation).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leasequeryd"))
        .args(["--metrics-listen", "off"])
        .arg("--allow-insecure-active")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_insecure_active"));
}

#[test]
fn live_updates_in_every_form_and_a_second_query_is_not_allowed() {
    let env = Env::start("", None);
    let mut s6 = Sub::v6(&env, 0x61, vec![V6Option::Oro(vec![v6opt::LQ_BASE_TIME])]);
    let mut s4 = Sub::v4_ready(&env, 0x4444_0001);
    let mut s46 = Sub::o6(&env, 0x46, 0x4646_0001, None);
    assert_eq!(s6.next_real(), Some(Got::Reply(None)));
    assert_eq!(s46.next_real(), Some(Got::Reply(None)));
    let now = unix_now();
    // 20 plain v4, 20 DHCP4o6 and 20 v6 bindings, over both shards.
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(v4_line(i, "active", now));
        lines.push(o6_line(1000 + i, "active", now));
        lines.push(v6_line(2000 + i, now));
    }
    env.append(&lines);
    let v4_keys: Vec<u32> = (0..20).chain(1000..1020).collect();
    let o6_keys: Vec<u32> = (1000..1020).collect();
    let v6_keys: Vec<u32> = (2000..2020).collect();
    let got4 = s4.until_seen(&v4_keys);
    assert!(
        got4.iter().all(|(k, b)| *b && v4_keys.contains(k)),
        "{got4:?}"
    );
    let got46 = s46.until_seen(&o6_keys);
    assert!(
        got46.iter().all(|(k, _)| o6_keys.contains(k)),
        "only 4o6 bindings: {got46:?}"
    );
    let got6 = s6.until_seen(&v6_keys);
    assert!(
        got6.iter().all(|(k, b)| *b && v6_keys.contains(k)),
        "{got6:?}"
    );

    // A binding leaving the bound state: DHCPLEASEUNASSIGNED.
    env.append(&[v4_line(3, "released", now)]);
    assert_eq!(
        s4.next_real(),
        Some(Got::Update {
            key: 3,
            bound: false
        })
    );

    // A second query on the active connection: REPLY NotAllowed on its own xid; the active
    // query goes on.
    let bulk = encode6(&v6::Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 0x77,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            // By client-id: link-address queries only know links of the import file (see the
            // README: the link set is built at start).
            V6Option::LqQuery {
                query_type: 2,
                link_address: "::".parse().unwrap(),
                options: vec![V6Option::ClientId(vec![0, 3, 0, 1, 0, 0, 0x07, 0xd5])],
            },
        ],
    });
    s6.c.send(&bulk);
    let r = loop {
        assert!(
            std::time::Instant::now() < s6.deadline,
            "no reply to xid 0x77"
        );
        let b = s6.c.recv().unwrap();
        let m = v6::Message::decode(&b).unwrap();
        if m.xid == 0x77 {
            break m;
        }
    };
    assert_eq!(r.msg_type, v6msg::LEASEQUERY_REPLY);
    assert!(r
        .options
        .iter()
        .any(|o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::NOT_ALLOWED)));
    let mut second4 = active4_msg(0x5555, None);
    second4.xid = 0x5555;
    s4.c.send(&encode4(&second4));
    let r = loop {
        assert!(
            std::time::Instant::now() < s4.deadline,
            "no reply to xid 0x5555"
        );
        let m = v4::Message::decode(&s4.c.recv().unwrap()).unwrap();
        if m.xid == 0x5555 {
            break m;
        }
    };
    assert_eq!(r.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    env.append(&[v6_line(2005, now + 1), v4_line(7, "active", now + 1)]);
    assert_eq!(s6.until_seen(&[2005]), vec![(2005, true)]);
    assert_eq!(s4.until_seen(&[7]), vec![(7, true)]);

    // A bulk query on another connection runs in parallel.
    let mut b = env.srv.connect6();
    b.send(&bulk);
    let first = v6::Message::decode(&b.recv().unwrap()).unwrap();
    assert_eq!((first.msg_type, first.xid), (v6msg::LEASEQUERY_REPLY, 0x77));
    assert!(first
        .options
        .iter()
        .any(|o| matches!(o, V6Option::ClientData(_))));
}

#[test]
fn catch_up_then_complete_then_live_across_shards() {
    let env = Env::start("", None);
    // A live subscriber tells us when the feed was applied.
    let mut watch = Sub::v4_ready(&env, 1);
    let now = unix_now();
    let before: Vec<u32> = (0..30).collect();
    env.append(
        &before
            .iter()
            .map(|&i| v4_line(i, "active", now))
            .collect::<Vec<_>>(),
    );
    watch.until_seen(&before);
    // The start time: a second after every "before" change.
    std::thread::sleep(Duration::from_millis(1100));
    let t = unix_now();
    let after: Vec<u32> = (100..140).collect();
    let mut lines: Vec<String> = after.iter().map(|&i| v4_line(i, "active", t)).collect();
    // Binding 5 changes again after the start time, twice: its latest state once.
    lines.push(v4_line(5, "released", t));
    lines.push(v4_line(5, "active", t + 1));
    env.append(&lines);
    let mut want: Vec<u32> = after.clone();
    want.push(5);
    watch.until_seen(&want);

    for form in 0..3 {
        let mut s = match form {
            0 => Sub::v4(&env, 0x4000, Some(t)),
            1 => Sub::v6(&env, 0x6000, vec![V6Option::LqStartTime(t - EPOCH_2000)]),
            _ => {
                // DHCP4o6 catch-up: only the 4o6 bindings of the earlier rounds match.
                Sub::o6(&env, 0x4600, 0x4601, Some(t - EPOCH_2000))
            }
        };
        if form != 0 {
            assert_eq!(s.next_real(), Some(Got::Reply(None)));
        }
        let mut seen = std::collections::HashMap::new();
        loop {
            match s.next_real().unwrap() {
                Got::Update { key, bound } => {
                    assert!(
                        seen.insert(key, bound).is_none(),
                        "binding {key} twice in catch-up"
                    );
                }
                Got::Status { done: false, code } => {
                    let complete = if form == 0 {
                        7
                    } else {
                        v6status::CATCH_UP_COMPLETE
                    };
                    assert_eq!(code, complete);
                    break;
                }
                g => panic!("{g:?}"),
            }
        }
        match form {
            0 => {
                let mut keys: Vec<u32> = seen.keys().copied().collect();
                keys.sort();
                assert_eq!(
                    keys,
                    want.iter()
                        .copied()
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect::<Vec<_>>()
                );
                assert!(seen[&5], "binding 5 is bound in its current state");
            }
            // The live lines appended by the earlier rounds changed after `t` too.
            1 => assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(520, true)]),
            _ => {
                let mut keys: Vec<u32> = seen.keys().copied().collect();
                keys.sort();
                assert_eq!(keys, vec![510, 511]);
            }
        }
        // Live after CatchUpComplete.
        let k = 500 + form;
        env.append(&[
            v4_line(k, "active", t + 2),
            o6_line(k + 10, "active", t + 2),
            v6_line(k + 20, t + 2),
        ]);
        let expect = match form {
            0 => k,
            1 => k + 20,
            _ => k + 10,
        };
        let got = s.until_seen(&[expect]);
        assert!(got.contains(&(expect, true)), "{got:?}");
    }
}

#[test]
fn data_missing_when_history_does_not_reach_back() {
    let env = Env::start("", None);
    let long_ago = unix_now() - 3600;
    // v6: REPLY with DataMissing and BASE_TIME, then live updates.
    let mut c = env.srv.connect6();
    c.send(&active6(
        0x10,
        vec![V6Option::LqStartTime(long_ago - EPOCH_2000)],
    ));
    let r = v6::Message::decode(&c.recv().unwrap()).unwrap();
    assert_eq!((r.msg_type, r.xid), (v6msg::LEASEQUERY_REPLY, 0x10));
    assert!(r.options.iter().any(
        |o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::DATA_MISSING)
    ));
    let base = r.options.iter().find_map(|o| match o {
        V6Option::LqBaseTime(t) => Some(*t),
        _ => None,
    });
    let base = base.expect("BASE_TIME with DataMissing") + EPOCH_2000;
    assert!(base.abs_diff(unix_now()) < 5);
    let mut s6 = Sub {
        c,
        form: Form::V6 { xid: 0x10 },
        deadline: std::time::Instant::now() + SUB_DEADLINE,
    };
    // v4: STATUS DataMissing with base-time, then live.
    let mut s4 = Sub::v4(&env, 0x11, Some(long_ago));
    let m = v4::Message::decode(&s4.c.recv().unwrap()).unwrap();
    assert_eq!(m.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    assert!(m.options.iter().any(
        |o| matches!(o, v4::V4Option::StatusCode { code, .. } if *code == v4status::DATA_MISSING)
    ));
    assert!(m
        .options
        .iter()
        .any(|o| matches!(o, v4::V4Option::BaseTime(_))));
    env.append(&[v6_line(1, unix_now()), v4_line(2, "active", unix_now())]);
    assert_eq!(s6.until_seen(&[1]), vec![(1, true)]);
    assert_eq!(s4.until_seen(&[2]), vec![(2, true)]);
}

#[test]
fn keepalives_at_the_configured_interval() {
    let env = Env::start("", None);
    let mut s6 = Sub::v6(&env, 0x21, vec![]);
    let mut s4 = Sub::v4(&env, 0x22, None);
    let mut s46 = Sub::o6(&env, 0x23, 0x24, None);
    assert_eq!(s6.next(), Some(Got::Reply(None)));
    assert_eq!(s46.next(), Some(Got::Reply(None)));
    for _ in 0..2 {
        assert_eq!(s6.next(), Some(Got::Keepalive));
        assert_eq!(s4.next(), Some(Got::Keepalive));
    }
    // The DHCP4o6 keepalive: empty DATA with a DHCPLEASEQUERYSTATUS ConnectionActive inside.
    let raw = s46.c.recv().unwrap();
    let m = v6::Message::decode(&raw).unwrap();
    assert_eq!(m.msg_type, v6msg::LEASEQUERY_DATA);
    assert!(!m
        .options
        .iter()
        .any(|o| matches!(o, V6Option::ClientData(_))));
    let inner = m
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::Dhcpv4Msg(b) => Some(v4::Message::decode(b).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(inner.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    assert_eq!(inner.xid, 0x24);
}

#[test]
fn shutdown_sends_query_terminated_last_on_every_active_connection() {
    let mut env = Env::start("", None);
    let mut s6 = Sub::v6(&env, 0x31, vec![]);
    let mut s4 = Sub::v4(&env, 0x32, None);
    let mut s46 = Sub::o6(&env, 0x33, 0x34, None);
    assert_eq!(s6.next(), Some(Got::Reply(None)));
    assert_eq!(s46.next(), Some(Got::Reply(None)));
    env.srv.signal("TERM");
    let last = |s: &mut Sub| -> Vec<u8> {
        let mut last = None;
        while let Some(b) = s.c.recv() {
            last = Some(b);
        }
        last.expect("a final message before the close")
    };
    let m = v6::Message::decode(&last(&mut s6)).unwrap();
    assert_eq!((m.msg_type, m.xid), (v6msg::LEASEQUERY_DONE, 0x31));
    assert!(m.options.iter().any(
        |o| matches!(o, V6Option::StatusCode { code, .. } if *code == v6status::QUERY_TERMINATED)
    ));
    assert!(m
        .options
        .iter()
        .any(|o| matches!(o, V6Option::LqBaseTime(_))));
    let m = v4::Message::decode(&last(&mut s4)).unwrap();
    assert_eq!(
        (m.message_type(), m.xid),
        (Some(v4msg::LEASEQUERYSTATUS), 0x32)
    );
    assert!(m.options.iter().any(|o| matches!(o, v4::V4Option::StatusCode { code, .. } if *code == v4status::QUERY_TERMINATED)));
    assert!(m
        .options
        .iter()
        .any(|o| matches!(o, v4::V4Option::BaseTime(_))));
    let m = v6::Message::decode(&last(&mut s46)).unwrap();
    assert_eq!((m.msg_type, m.xid), (v6msg::LEASEQUERY_DONE, 0x33));
    assert!(m
        .options
        .iter()
        .any(|o| matches!(o, V6Option::LqBaseTime(_))));
    let inner = m
        .options
        .iter()
        .find_map(|o| match o {
            V6Option::Dhcpv4Msg(b) => Some(v4::Message::decode(b).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(inner.xid, 0x34);
    assert!(inner.options.iter().any(|o| matches!(o, v4::V4Option::StatusCode { code, .. } if *code == v4status::QUERY_TERMINATED)));
    let st = env.srv.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(st.success());
    assert!(
        env.srv.log().contains("active_terminated_shutdown="),
        "{}",
        env.srv.log()
    );
}

#[test]
fn bad_feed_lines_are_skipped_and_partial_lines_wait() {
    let env = Env::start("", None);
    let mut s4 = Sub::v4_ready(&env, 0x41);
    let now = unix_now();
    let line = v4_line(1, "active", now);
    let (a, b) = line.split_at(30);
    env.append_raw(&format!("{{not json}}\n{a}"));
    // The partial line waits for its newline: nothing arrives but keepalives.
    assert_eq!(s4.next(), Some(Got::Keepalive));
    env.append_raw(&format!("{b}\n"));
    assert_eq!(s4.until_seen(&[1]), vec![(1, true)]);
    let log = env.srv.log();
    assert!(
        log.contains("feed.jsonl:1:"),
        "bad line logged with FILE:LINE: {log}"
    );
}

/// RFC 7653 §8.4.1 case 2, the DATA form of DataMissing: the history is lost part-way through a
/// catch-up. 20,000 v6 changes with 20 addresses each (about 12 MB of updates) come through the feed; a subscriber with a tiny receive window
/// asks for a catch-up from before them and does not read, so the catch-up stalls (credits are
/// withheld while its backlog is over half of `active_backlog_bytes`); the changes then age out
/// of the history (`history_age = 4`, trimmed by the next change); when the subscriber reads
/// again it gets the catch-up up to the loss, then LEASEQUERY-DATA with DataMissing (never
/// CatchUpComplete), and live updates go on.
#[test]
fn data_missing_in_data_form_when_history_is_lost_during_catch_up() {
    const N: u32 = 20_000;
    let env = Env::start(
        "history_age = 4\nactive_backlog_bytes = 1048576\nactive_send_timeout = 60\n",
        None,
    );
    // Live subscribers that follow one binding each (QUERY_BY_CLIENTID as the filter) tell
    // when a change has been applied, without taking the whole flood.
    let probe = |xid: u32, i: u32| {
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&i.to_be_bytes());
        let mut p = Sub::v6(
            &env,
            xid,
            vec![V6Option::LqQuery {
                query_type: 2,
                link_address: std::net::Ipv6Addr::UNSPECIFIED,
                options: vec![V6Option::ClientId(duid)],
            }],
        );
        assert_eq!(p.next(), Some(Got::Reply(None)));
        p
    };
    let (mut last, mut next) = (probe(0x60, N - 1), probe(0x62, N));
    let start = unix_now();
    // Bindings with 20 addresses each (about 600 octets an update), so that the catch-up is
    // far larger than what the sockets and the backlog can hold.
    let big = |i: u32| {
        let addrs: Vec<String> = (0..20)
            .map(|k| {
                format!(
                    r#"{{"addr":"2001:db8:2::{:x}:{k:x}","preferred":3600,"valid":7200}}"#,
                    i & 0xffff
                )
            })
            .collect();
        format!(
            r#"{{"duid":"00030001{i:08x}","link":"2001:db8:2::","iana":[{}],"cltt":{start}}}"#,
            addrs.join(",")
        )
    };
    let lines: Vec<String> = (0..N).map(big).collect();
    env.append(&lines);
    last.until_seen(&[N - 1]);
    let mut c = common::Conn::connect_small_window(env.srv.lq6, 4096);
    c.send(&active6(
        0x61,
        vec![V6Option::LqStartTime(start - EPOCH_2000)],
    ));
    // Not reading: the catch-up stalls. Then everything in the history ages out and the next
    // change trims it.
    std::thread::sleep(Duration::from_millis(5500));
    env.append(&[v6_line(N, unix_now())]);
    next.until_seen(&[N]);
    let mut s = Sub {
        c,
        form: Form::V6 { xid: 0x61 },
        deadline: std::time::Instant::now() + SUB_DEADLINE,
    };
    assert_eq!(
        s.next(),
        Some(Got::Reply(None)),
        "the catch-up was accepted"
    );
    let mut caught_up = std::collections::HashSet::new();
    loop {
        match s.next_real().expect("connection open") {
            Got::Update { key, .. } => {
                caught_up.insert(key);
            }
            Got::Status {
                done: false,
                code: v6status::DATA_MISSING,
            } => break,
            g => panic!(
                "expected updates then DataMissing, got {g:?} after {} updates",
                caught_up.len()
            ),
        }
    }
    let before = caught_up.iter().filter(|k| **k < N).count() as u32;
    assert!(
        before > 0 && before < N,
        "part of the catch-up arrived before the loss ({before} of {N})"
    );
    // Live updates go on, and no CatchUpComplete comes.
    env.append(&[v6_line(N + 1, unix_now())]);
    loop {
        match s.next_real().expect("connection open") {
            Got::Update { key, .. } if key == N + 1 => break,
            Got::Update { key, .. } if key <= N => {}
            g => panic!("expected live updates after DataMissing, got {g:?}"),
        }
    }
}

/// The cross-shard fan-out bound (`active_fanout_pending`): a shard that would have to hold more
/// changes for the subscribers' shards than the bound drops that batch, and every subscriber that
/// would miss it gets QueryTerminated as its last message and is closed; none is left with a
/// silent gap. With a bound of 8, a change or two passes as usual; then one feed poll of 400
/// bindings (about 200 per shard, each shard publishing its share at once) overflows it.
#[test]
fn fanout_overflow_terminates_subscribers_instead_of_losing_updates() {
    let mut env = Env::start("active_fanout_pending = 8\n", None);
    let mut s6 = Sub::v6(&env, 0x71, vec![]);
    assert_eq!(s6.next(), Some(Got::Reply(None)));
    let mut s4 = Sub::v4_ready(&env, 0x72);
    // Below the bound the fan-out works.
    let now = unix_now();
    env.append(&[v6_line(1, now), v4_line(1, "active", now)]);
    assert_eq!(s6.until_seen(&[1]), vec![(1, true)]);
    assert_eq!(s4.until_seen(&[1]), vec![(1, true)]);
    let mut lines: Vec<String> = (2..202).map(|i| v6_line(i, now)).collect();
    lines.extend((2..202).map(|i| v4_line(i, "active", now)));
    env.append(&lines);
    // Whatever came through before the overflow, each subscriber ends with QueryTerminated, then
    // the close.
    let ends = |s: &mut Sub| {
        let mut updates = 0;
        loop {
            match s.next_real() {
                Some(Got::Update { .. }) => updates += 1,
                Some(Got::Status { code, .. }) => {
                    assert!(s.next().is_none(), "closed after the final status");
                    return (code, updates);
                }
                other => panic!("expected updates then QueryTerminated, got {other:?}"),
            }
        }
    };
    let (code6, got6) = ends(&mut s6);
    assert_eq!(code6, v6status::QUERY_TERMINATED);
    let (code4, got4) = ends(&mut s4);
    assert_eq!(code4, u16::from(v4status::QUERY_TERMINATED));
    assert!(
        got6 < 200 && got4 < 200,
        "a batch was dropped, so not every change came ({got6} v6, {got4} v4 updates)"
    );
    env.srv.signal("TERM");
    env.srv.wait_exit(Duration::from_secs(20)).expect("exits");
    let log = env.srv.log();
    assert_eq!(
        common::log_counter(&log, "active_terminated_fanout"),
        2,
        "{log}"
    );
    assert_eq!(common::log_counter(&log, "active_subscribers"), 0, "{log}");
}

/// The v4 bindings a bulk `v4-all` query returns, as `lqctl bulk --format jsonl` lines.
fn bulk_v4_lines(srv: &common::Server) -> Vec<serde_json::Value> {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lqctl"))
        .args(["bulk", "--format", "jsonl", "--query", "v4-all", "--server"])
        .arg(srv.lq4.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Issue 18 part 1, feed + `data_dir`: fed changes are written to the owning shard's journal
/// (here the DHCP4o6 authority's, which runs too), so a restart without the feed still serves
/// them (journal replay, kind Feed restores the binding); a restart with the unchanged feed
/// file journals nothing again (every line is identical to the replayed binding), and a later
/// line that changes a binding is journaled once.
#[test]
fn fed_bindings_are_journaled_and_survive_a_restart() {
    use leasequery::proto::codes::dhcp_state;
    let data = common::TempDir::new("feed-durable");
    let extra = format!("data_dir = \"{}\"\n", data.path().display());
    let env = Env::start(&extra, None);
    let mut s4 = Sub::v4_ready(&env, 0x51);
    let now = unix_now();
    let mut lines: Vec<String> = (0..20).map(|i| v4_line(i, "active", now)).collect();
    lines.push(v6_line(7, now));
    // Binding 3 twice in one poll: only its last state is a change.
    lines.push(v4_line(3, "released", now));
    env.append(&lines);
    let seen = s4.until_seen(&(0..20).collect::<Vec<_>>());
    assert_eq!(seen.iter().filter(|(k, _)| *k == 3).count(), 1, "{seen:?}");
    assert!(seen.contains(&(3, false)), "{seen:?}");
    drop(s4);
    let Env { mut srv, feed, dir } = env;
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );

    let r = leasequery::store::replay(data.path(), 2).unwrap();
    assert_eq!(r.journal_records, 21, "20 v4 changes and one v6 change");
    let v4: Vec<_> = r.v4.iter().flatten().collect();
    assert_eq!(v4.len(), 20);
    for b in &v4 {
        let i = u32::from(b.addr) - u32::from(addr(0));
        let want = if i == 3 {
            dhcp_state::RELEASED
        } else {
            dhcp_state::ACTIVE
        };
        assert_eq!(b.state, want, "binding {i}");
    }
    assert_eq!(r.v6_count(), 1);

    // Restarted without the feed: the journal alone restores what was fed.
    let cfg = dir.path().join("lqd.toml");
    let mut srv = ServerBuilder::new()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start();
    // (The demo authority's pool answers too: only the fed addresses, 10.0.0.x, count.)
    let fed: Vec<_> = bulk_v4_lines(&srv)
        .into_iter()
        .filter(|v| v["ipv4"].as_str().is_some_and(|a| a.starts_with("10.0.0.")))
        .collect();
    assert_eq!(fed.len(), 20, "{fed:?}");
    for v in &fed {
        let want = if v["ipv4"] == "10.0.0.3" {
            "released"
        } else {
            "active"
        };
        assert_eq!(v["state"], want, "{v}");
    }
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );

    // Restarted with the unchanged feed file (read again from its start), then a later line
    // that changes binding 5 and one for a new binding 30: only those two are journaled.
    let srv = ServerBuilder::new()
        .arg("--config")
        .arg(cfg.display().to_string())
        .arg("--feed")
        .arg(feed.display().to_string())
        .start();
    let env = Env { srv, feed, dir };
    // A server that starts with bindings begins its history a second after its start (a
    // catch-up from before it is DataMissing): the ready subscriber asks from after that.
    std::thread::sleep(Duration::from_millis(1100));
    let mut s4 = Sub::v4_ready(&env, 0x52);
    env.append(&[
        v4_line(5, "released", now + 1),
        v4_line(30, "active", now + 1),
    ]);
    let seen = s4.until_seen(&[5, 30]);
    assert_eq!(
        seen,
        vec![(5, false), (30, true)],
        "nothing of the old lines again"
    );
    drop(s4);
    let Env { mut srv, feed, dir } = env;
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );
    let r = leasequery::store::replay(data.path(), 2).unwrap();
    assert_eq!(r.journal_records, 23, "the two later lines only");
    assert_eq!(r.v4_count(), 21);
    let b5 = r.v4.iter().flatten().find(|b| b.addr == addr(5)).unwrap();
    assert_eq!(b5.state, dhcp_state::RELEASED);
    drop((feed, dir));
}

/// True when every shard directory of `data` (2 shards) holds a snapshot.
fn snapshots_in(data: &std::path::Path) -> bool {
    (0..2).all(|k| {
        std::fs::read_dir(data.join(format!("shard-{k}"))).is_ok_and(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("snapshot-") && n.ends_with(".snap")
            })
        })
    })
}

/// A durable server fed only by `--feed` (no authority) compacts its own journal: past
/// `journal_compact_bytes` each shard writes a snapshot; the data directory then replays to
/// every fed binding, and a restart that reads the feed file again changes nothing (the next
/// change a subscriber sees is the line appended after the restart).
#[test]
fn a_feed_only_durable_server_compacts_its_journal() {
    let data = common::TempDir::new("feed-compact");
    let extra = format!(
        "data_dir = \"{}\"\nauthority_enabled = false\njournal_compact_bytes = 1048576\n",
        data.path().display()
    );
    let env = Env::start(&extra, None);
    let now = unix_now();
    const N: u32 = 40_000;
    // About 4 MB of journal records over two shards: past 1 MiB on each.
    env.append(
        &(0..N)
            .map(|i| o6_line(i, "active", now))
            .collect::<Vec<_>>(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !snapshots_in(data.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot on every shard; log:\n{}",
            env.srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A marker after the bulk: once a subscriber sees it, every earlier line is applied (the
    // subscriber may see the last of them first: a snapshot came after the first 4 MiB poll).
    let mut s4 = Sub::v4_ready(&env, 0x61);
    env.append(&[v4_line(N + 1, "active", now)]);
    assert_eq!(s4.until_seen(&[N + 1]).last(), Some(&(N + 1, true)));
    drop(s4);
    let Env { mut srv, feed, dir } = env;
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );
    let r = leasequery::store::replay(data.path(), 2).unwrap();
    assert!(r.snapshot_bindings > 0, "replayed from the snapshots");
    assert_eq!(r.v4_count(), N as usize + 1);

    // The feed file is moved away while the server starts (a missing file is waited for) and
    // put back once a subscriber is there, so the subscriber would see anything the second
    // reading of the file changed.
    let held = dir.path().join("feed.held");
    std::fs::rename(&feed, &held).unwrap();
    let srv = ServerBuilder::new()
        .arg("--config")
        .arg(dir.path().join("lqd.toml").display().to_string())
        .arg("--feed")
        .arg(feed.display().to_string())
        .start();
    let env = Env { srv, feed, dir };
    std::thread::sleep(Duration::from_millis(1100));
    let mut s4 = Sub::v4_ready(&env, 0x62);
    std::fs::rename(&held, &env.feed).unwrap();
    env.append(&[v4_line(N + 2, "active", now)]);
    let seen = s4.until_seen(&[N + 2]);
    assert_eq!(
        seen.len(),
        1,
        "only the appended line is a change; first seen: {:?}",
        &seen[..seen.len().min(10)]
    );
    drop(s4);
    let Env { mut srv, .. } = env;
    assert!(
        srv.terminate().is_some_and(|s| s.success()),
        "{}",
        srv.log()
    );
    let again = leasequery::store::replay(data.path(), 2).unwrap();
    assert_eq!(again.v4_count(), N as usize + 2);
    assert_eq!(
        again.journal_records,
        r.journal_records + 1,
        "only the line appended after the restart was journaled"
    );
}
