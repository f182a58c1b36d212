//! Scripted message sequences through [`Watch`]: every emitted change is checked against a
//! view rebuilt from the changes alone (no change emitted twice, none missed).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::*;
use crate::proto::codes::{v4msg, v4opt, v4status, v6msg, v6opt};
use crate::proto::record::PortParams;
use crate::proto::v4::{self, V4Option};
use crate::proto::v6::{Message as V6Message, V6Option};

const BACKOFF: Backoff = Backoff {
    initial_ms: 100,
    max_ms: 1600,
};

fn cfg(queries: usize) -> Config {
    Config {
        wire: Wire::V4,
        bulk_queries: queries,
        backoff: BACKOFF,
    }
}

fn enc4(m: &v4::Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

/// A DHCPLEASEACTIVE (or UNASSIGNED) for 192.0.2.`host`, PSID `psid` (of 4 bits), softwire
/// 2001:db8::`sw`, base time `base`.
fn lease(active: bool, host: u8, psid: u16, sw: u16, base: u32) -> Vec<u8> {
    let t = if active {
        v4msg::LEASEACTIVE
    } else {
        v4msg::LEASEUNASSIGNED
    };
    let mut m = v4::Message::new(2, t, 9);
    m.ciaddr = Ipv4Addr::new(192, 0, 2, host);
    m.options.push(V4Option::Unknown {
        code: v4opt::CLIENT_ID,
        data: vec![255, host, psid as u8],
    });
    let [x, y] = pp(psid).wire_psid().to_be_bytes();
    m.options.push(V4Option::Unknown {
        code: v4opt::V4_PORTPARAMS,
        data: vec![0, 4, x, y],
    });
    m.options.push(V4Option::Dhcp4o6SoftwireSource(
        format!("2001:db8::{sw:x}").parse().unwrap(),
    ));
    m.options.push(V4Option::BaseTime(base));
    enc4(&m)
}

fn pp(psid: u16) -> PortParams {
    PortParams {
        offset: 0,
        psid_len: 4,
        psid,
    }
}

fn key(host: u8, psid: u16) -> Key {
    Key::V4 {
        addr: Ipv4Addr::new(192, 0, 2, host),
        psid: Some(pp(psid)),
    }
}

fn status(t: u8, code: u8, base: u32) -> Vec<u8> {
    let mut m = v4::Message::new(2, t, 9);
    m.options.push(V4Option::StatusCode {
        code,
        message: String::new(),
    });
    m.options.push(V4Option::BaseTime(base));
    enc4(&m)
}

fn done(base: u32) -> Vec<u8> {
    status(v4msg::LEASEQUERYDONE, v4status::SUCCESS, base)
}

fn caught_up(base: u32) -> Vec<u8> {
    status(v4msg::LEASEQUERYSTATUS, v4status::CATCH_UP_COMPLETE, base)
}

fn keepalive(base: u32) -> Vec<u8> {
    status(v4msg::LEASEQUERYSTATUS, v4status::CONNECTION_ACTIVE, base)
}

/// Drives a [`Watch`], checks every change against a view built from the changes only.
struct H {
    w: Watch,
    /// The merged result of the emitted changes.
    view: HashMap<Key, Value>,
    /// Every change emitted, in order.
    changes: Vec<Change>,
    /// Everything else, in order.
    actions: Vec<Output>,
}

impl H {
    fn new(w: Watch) -> H {
        let mut h = H {
            w,
            view: HashMap::new(),
            changes: Vec::new(),
            actions: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(o) = self.w.poll() {
            match o {
                Output::Change(c) => {
                    assert_ne!(c.old, c.new, "a change that changes nothing: {c:?}");
                    assert_eq!(
                        self.view.get(&c.key),
                        c.old.as_ref(),
                        "the change's old state is not the last emitted one: {c:?}"
                    );
                    match &c.new {
                        Some(v) => self.view.insert(c.key.clone(), v.clone()),
                        None => self.view.remove(&c.key),
                    };
                    self.changes.push(c);
                }
                o => self.actions.push(o),
            }
        }
    }

    /// Actions since the last call, notes left out.
    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.actions)
            .into_iter()
            .filter(|o| !matches!(o, Output::Note(_)))
            .collect()
    }

    fn msg(&mut self, m: &[u8]) {
        self.w.message(m, 0, 0.0);
        self.drain();
    }

    fn msgs(&mut self, ms: &[Vec<u8>]) {
        for m in ms {
            self.msg(m);
        }
    }

    fn connected(&mut self) {
        self.w.connected(5_000);
        self.drain();
    }

    fn lose(&mut self, now_ms: u64) {
        self.w.disconnected(now_ms, 0.0, "test");
        self.drain();
    }

    /// The view equals the table, which holds exactly `want`.
    fn holds(&self, want: &[(Key, u16)]) {
        let table: HashMap<Key, Value> = self.w.table().iter().collect();
        assert_eq!(table, self.view, "the emitted changes add up to the table");
        let mut got: Vec<_> = table
            .iter()
            .map(|(k, v)| (format!("{k:?}"), v.softwire.unwrap().segments()[7]))
            .collect();
        got.sort();
        let mut want: Vec<_> = want.iter().map(|(k, s)| (format!("{k:?}"), *s)).collect();
        want.sort();
        assert_eq!(got, want);
    }

    fn upserts(&self, k: &Key) -> usize {
        self.changes
            .iter()
            .filter(|c| &c.key == k && !c.is_remove())
            .count()
    }
}

/// Connect, bulk-load hosts 1, 2, 3 (base 1000), subscribe.
fn loaded() -> H {
    let mut h = H::new(Watch::new(cfg(1)));
    assert_eq!(h.take(), vec![Output::Connect]);
    h.connected();
    assert_eq!(h.take(), vec![Output::SendBulk(0)]);
    h.msgs(&[
        lease(true, 1, 1, 1, 1000),
        lease(true, 2, 2, 2, 1000),
        lease(true, 3, 3, 3, 1001),
        done(1001),
    ]);
    assert_eq!(
        h.take(),
        vec![Output::SendActive {
            start: 1000 - RESUME_MARGIN
        }]
    );
    assert_eq!(h.changes.len(), 3);
    h
}

#[test]
fn bulk_load_then_catch_up_emits_each_change_once() {
    let mut h = loaded();
    assert_eq!(h.w.checkpoint(), Some(998));
    assert!(!h.w.caught_up());
    // The catch-up repeats host 1 as it was (nothing), changes host 2's softwire, removes 3.
    h.msgs(&[
        lease(true, 1, 1, 1, 1010),
        lease(true, 2, 2, 0x22, 1010),
        lease(false, 3, 3, 3, 1010),
        lease(false, 4, 4, 4, 1010), // never held: nothing
    ]);
    assert_eq!(h.changes.len(), 5);
    assert_eq!(
        h.w.checkpoint(),
        Some(998),
        "not caught up: the start holds"
    );
    h.msg(&caught_up(1010));
    assert!(h.w.caught_up());
    assert_eq!(h.w.checkpoint(), Some(1008));
    h.msgs(&[keepalive(1020), lease(true, 5, 5, 5, 1021)]);
    assert_eq!(h.w.checkpoint(), Some(1019));
    h.holds(&[(key(1, 1), 1), (key(2, 2), 0x22), (key(5, 5), 5)]);
    assert_eq!(h.upserts(&key(1, 1)), 1);
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.w.stats().changes, 6);
}

#[test]
fn several_bulk_queries_load_one_after_the_other() {
    let mut h = H::new(Watch::new(cfg(2)));
    h.take();
    h.connected();
    assert_eq!(h.take(), vec![Output::SendBulk(0)]);
    h.msgs(&[lease(true, 1, 1, 1, 1005), done(1005)]);
    assert_eq!(h.take(), vec![Output::SendBulk(1)]);
    h.msgs(&[lease(true, 2, 2, 2, 1003), done(1006)]);
    assert_eq!(h.take(), vec![Output::SendActive { start: 1001 }]);
    h.holds(&[(key(1, 1), 1), (key(2, 2), 2)]);
}

#[test]
fn a_reconnect_mid_catch_up_catches_up_again_from_the_same_start() {
    let mut h = loaded();
    h.msgs(&[lease(true, 1, 1, 0x11, 1050)]);
    h.lose(10_000);
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.w.wake_at(), Some(10_050), "100 ms halved by jitter 0");
    assert_eq!(h.w.checkpoint(), Some(998));
    h.w.tick(10_049);
    h.drain();
    assert_eq!(h.take(), vec![]);
    h.w.tick(10_050);
    h.drain();
    assert_eq!(h.take(), vec![Output::Connect]);
    h.connected();
    assert_eq!(h.take(), vec![Output::SendActive { start: 998 }]);
    // The catch-up sends host 1 again (already emitted), and host 2 gone while disconnected.
    h.msgs(&[
        lease(true, 1, 1, 0x11, 1060),
        lease(false, 2, 2, 2, 1060),
        caught_up(1060),
    ]);
    h.holds(&[(key(1, 1), 0x11), (key(3, 3), 3)]);
    assert_eq!(h.upserts(&key(1, 1)), 2, "the bulk load's and the change's");
    assert_eq!(h.changes.len(), 5);
}

#[test]
fn a_reconnect_after_catch_up_resumes_from_the_last_base_time() {
    let mut h = loaded();
    h.msgs(&[caught_up(1010), lease(true, 7, 7, 7, 1100), keepalive(1200)]);
    h.lose(0);
    h.w.tick(u64::MAX);
    h.drain();
    h.connected();
    assert_eq!(
        h.take(),
        vec![Output::Connect, Output::SendActive { start: 1198 }]
    );
    // A duplicate of the last update in the catch-up window emits nothing.
    h.msgs(&[lease(true, 7, 7, 7, 1300), caught_up(1300)]);
    assert_eq!(h.upserts(&key(7, 7)), 1);
    assert_eq!(h.w.checkpoint(), Some(1298));
}

#[test]
fn data_missing_at_start_reloads_and_emits_the_difference() {
    // Resumed from a saved table (hosts 1, 2 as of 500), as `--state` does.
    let mut t = Table::new();
    let mut h0 = loaded();
    h0.msgs(&[lease(false, 3, 3, 3, 1002)]);
    for (k, v) in h0.w.table().iter() {
        t.insert(&k, &v);
    }
    let mut h = H::new(Watch::resume(cfg(1), t, 500));
    // The view starts as the saved table (what an earlier run emitted).
    h.view = h.w.table().iter().collect();
    assert_eq!(h.take(), vec![Output::Connect]);
    h.connected();
    assert_eq!(h.take(), vec![Output::SendActive { start: 500 }]);
    h.msg(&status(v4msg::LEASEQUERYDONE, v4status::DATA_MISSING, 2000));
    assert_eq!(h.take(), vec![Output::Close]);
    assert_eq!(h.w.wake_at(), Some(50), "a reload waits a backoff delay");
    h.w.tick(50);
    h.drain();
    assert_eq!(h.take(), vec![Output::Connect]);
    assert_eq!(h.w.checkpoint(), None);
    assert_eq!(h.w.stats().data_missing, 1);
    h.connected();
    assert_eq!(h.take(), vec![Output::SendBulk(0)]);
    assert!(h.actions.is_empty());
    // The reload: host 1 as it was, host 2 gone, host 6 new.
    h.msgs(&[lease(true, 1, 1, 1, 2001), lease(true, 6, 6, 6, 2001)]);
    assert_eq!(
        h.changes.len(),
        1,
        "a reload emits what changed as it comes"
    );
    h.msg(&done(2001));
    assert_eq!(h.take(), vec![Output::SendActive { start: 1999 }]);
    h.holds(&[(key(1, 1), 1), (key(6, 6), 6)]);
    assert_eq!(h.changes.len(), 2);
    assert!(h
        .changes
        .iter()
        .any(|c| c.key == key(2, 2) && c.is_remove()));
}

#[test]
fn data_missing_part_way_finds_removals_made_while_disconnected() {
    let mut h = loaded();
    h.msgs(&[caught_up(1010), lease(true, 4, 4, 4, 1020)]);
    h.lose(0);
    h.w.tick(u64::MAX);
    h.drain();
    h.connected();
    h.take();
    // The history no longer reaches back: DataMissing as a status in mid-catch-up.
    h.msgs(&[
        lease(true, 4, 4, 0x44, 5000),
        status(v4msg::LEASEQUERYSTATUS, v4status::DATA_MISSING, 5000),
    ]);
    assert_eq!(h.take(), vec![Output::Close]);
    h.w.tick(u64::MAX);
    h.drain();
    assert_eq!(h.take(), vec![Output::Connect]);
    h.connected();
    // Hosts 1 and 3 were released while disconnected; host 4 changed once more.
    h.msgs(&[
        lease(true, 2, 2, 2, 5001),
        lease(true, 4, 4, 0x45, 5001),
        done(5001),
    ]);
    h.holds(&[(key(2, 2), 2), (key(4, 4), 0x45)]);
    let removed: Vec<_> = h
        .changes
        .iter()
        .filter(|c| c.is_remove())
        .map(|c| c.key.clone())
        .collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&key(1, 1)) && removed.contains(&key(3, 3)));
    assert_eq!(h.upserts(&key(2, 2)), 1, "unchanged by the reload");
}

#[test]
fn a_first_load_cut_short_is_reloaded_without_repeating_changes() {
    let mut h = H::new(Watch::new(cfg(1)));
    h.take();
    h.connected();
    h.take();
    h.msgs(&[lease(true, 1, 1, 1, 1000), lease(true, 2, 2, 2, 1000)]);
    assert_eq!(h.changes.len(), 2, "a load emits as it goes");
    h.lose(0);
    assert_eq!(h.w.checkpoint(), None);
    h.w.tick(u64::MAX);
    h.drain();
    h.connected();
    assert_eq!(h.take(), vec![Output::Connect, Output::SendBulk(0)]);
    h.msgs(&[
        lease(true, 1, 1, 1, 1100),
        lease(true, 2, 2, 2, 1100),
        lease(true, 3, 3, 3, 1100),
        done(1100),
    ]);
    h.holds(&[(key(1, 1), 1), (key(2, 2), 2), (key(3, 3), 3)]);
    assert_eq!(h.changes.len(), 3);
}

#[test]
fn backoff_doubles_to_the_cap_and_resets_once_caught_up() {
    assert_eq!(BACKOFF.delay_ms(0, 1.0), 100);
    assert_eq!(BACKOFF.delay_ms(3, 1.0), 800);
    assert_eq!(BACKOFF.delay_ms(9, 1.0), 1600);
    assert_eq!(BACKOFF.delay_ms(64, 0.0), 800);
    assert_eq!(BACKOFF.delay_ms(1, f64::NAN), 100);
    assert_eq!(BACKOFF.delay_ms(1, 7.0), 200);
    let mut h = loaded();
    let mut waits = Vec::new();
    let mut now = 0;
    for _ in 0..6 {
        h.w.disconnected(now, 1.0, "refused");
        h.drain();
        let at = h.w.wake_at().unwrap();
        waits.push(at - now);
        now = at;
        h.w.tick(now);
        h.drain();
    }
    assert_eq!(waits, vec![100, 200, 400, 800, 1600, 1600]);
    h.connected();
    h.msg(&caught_up(1010));
    h.lose(now);
    assert_eq!(h.w.wake_at(), Some(now + 50));
    assert_eq!(h.w.stats().lost, 7);
}

#[test]
fn refusals_and_error_statuses_fail_for_good_but_a_server_end_reconnects() {
    let mut h = loaded();
    h.msg(&status(v4msg::LEASEQUERYSTATUS, v4status::NOT_ALLOWED, 1));
    let a = h.take();
    assert_eq!(a[0], Output::Close);
    assert!(matches!(&a[1], Output::Fail(s) if s.contains("refused")));
    assert!(h.w.failed());
    h.lose(0);
    assert_eq!(h.w.wake_at(), None, "a failed watch stays failed");

    let mut h = H::new(Watch::new(cfg(1)));
    h.take();
    h.connected();
    h.take();
    h.msg(&status(v4msg::LEASEQUERYDONE, v4status::MALFORMED_QUERY, 1));
    assert!(matches!(&h.take()[1], Output::Fail(s) if s.contains("bulk query 1")));

    let mut h = loaded();
    h.msg(&caught_up(1010));
    h.msg(&status(
        v4msg::LEASEQUERYDONE,
        v4status::QUERY_TERMINATED,
        1020,
    ));
    assert_eq!(h.take(), vec![Output::Close]);
    assert!(h.w.wake_at().is_some());
    assert_eq!(h.w.checkpoint(), Some(1018));

    // Garbage on the active stream: reconnect, never panic.
    let mut h = loaded();
    h.msg(&[0xff; 3]);
    assert_eq!(h.take(), vec![Output::Close]);
    assert!(h.w.wake_at().is_some());
}

#[test]
fn undecodable_and_stray_input_changes_nothing() {
    let mut h = loaded();
    let n = h.changes.len();
    for junk in [&[][..], &[1, 2, 3][..], &[0u8; 300][..]] {
        h.msg(junk);
        h.w.connected(0); // not connecting: ignored
        h.drain();
    }
    assert_eq!(h.changes.len(), n);
    // A truncated lease: classify sees no binding; nothing emitted.
    let mut h = loaded();
    let l = lease(true, 9, 9, 9, 1);
    for cut in 0..l.len() {
        h.w.message(&l[..cut], 0, 0.0);
    }
    h.drain();
    assert_eq!(h.upserts(&key(9, 9)), 0);
}

#[test]
fn merge_leaves_a_key_held_twice_out_and_reports_the_conflict() {
    let v = |sw: u16| Value {
        client_id: None,
        softwire: Some(format!("2001:db8::{sw:x}").parse().unwrap()),
        active: true,
    };
    let ch = |old: Option<Value>, new: Option<Value>| Change {
        key: key(1, 1),
        old,
        new,
    };
    let (mut a, mut b) = (Table::new(), Table::new());
    let k = key(1, 1);
    // Server 1 learns k: the view gains it, no conflict.
    b.insert(&k, &v(2));
    let c = ch(None, Some(v(2)));
    let m = merge(&[&a, &b], 1, &c);
    assert_eq!((m.change, m.conflict), (Some(c), None));
    // Server 0 learns k too: a conflict, and k leaves the view.
    a.insert(&k, &v(1));
    let m = merge(&[&a, &b], 0, &ch(None, Some(v(1))));
    assert_eq!(m.conflict, Some(1));
    assert_eq!(m.change, Some(ch(Some(v(2)), None)));
    // Server 1 changes k: still a conflict, the view does not change.
    b.insert(&k, &v(3));
    let m = merge(&[&a, &b], 1, &ch(Some(v(2)), Some(v(3))));
    assert_eq!((m.change, m.conflict), (None, Some(0)));
    // Server 0 drops k: server 1's binding shows.
    a.remove(&k);
    let m = merge(&[&a, &b], 0, &ch(Some(v(1)), None));
    assert_eq!((m.change, m.conflict), (Some(ch(None, Some(v(3)))), None));
    // Server 1 drops it too: removed.
    b.remove(&k);
    let m = merge(&[&a, &b], 1, &ch(Some(v(3)), None));
    assert_eq!(m.change, Some(ch(Some(v(3)), None)));
    // Three servers: two holders are a conflict whichever the third does.
    let (mut x, mut y, z) = (Table::new(), Table::new(), Table::new());
    x.insert(&k, &v(1));
    y.insert(&k, &v(2));
    let m = merge(&[&x, &y, &z], 1, &ch(None, Some(v(2))));
    assert_eq!(m.conflict, Some(0));
    assert_eq!(m.change, Some(ch(Some(v(1)), None)));
}

#[test]
fn two_watches_merged_follow_disjoint_and_shared_keys() {
    let mut hs = [loaded(), H::new(Watch::new(cfg(1)))];
    hs[1].take();
    hs[1].connected();
    // Server 1 holds host 3 (also on server 0: a conflict) and host 8.
    hs[1].msgs(&[
        lease(true, 3, 3, 0x33, 1000),
        lease(true, 8, 8, 8, 1000),
        done(1000),
    ]);
    let mut view: HashMap<Key, Value> = HashMap::new();
    let mut conflicts = 0;
    for (from, h) in hs.iter().enumerate() {
        for c in &h.changes {
            let m = merge(&[hs[0].w.table(), hs[1].w.table()], from, c);
            conflicts += usize::from(m.conflict.is_some());
            if let Some(c) = m.change {
                match c.new {
                    Some(v) => view.insert(c.key, v),
                    None => view.remove(&c.key),
                };
            }
        }
    }
    assert_eq!(
        conflicts, 2,
        "one per change of the shared key, on each side"
    );
    assert_eq!(view.len(), 3, "hosts 1, 2, 8; host 3 is held twice");
    assert!(!view.contains_key(&key(3, 3)));
}

#[test]
fn base_time_is_read_from_each_wire_form() {
    assert_eq!(reply::base_time(Wire::V4, &done(1234)), Some(1234));
    let v6 = |opts: Vec<V6Option>| {
        let mut out = Vec::new();
        V6Message {
            msg_type: v6msg::LEASEQUERY_DATA,
            xid: 1,
            options: opts,
        }
        .encode(&mut out)
        .unwrap();
        out
    };
    let t = 1_800_000_000u32;
    let m = v6(vec![V6Option::LqBaseTime(crate::proto::time::unix_to_v6(
        u64::from(t),
    ))]);
    assert_eq!(reply::base_time(Wire::V6, &m), Some(t));
    // DHCP4o6 without OPTION_LQ_BASE_TIME: the DHCPv4 layer's.
    let m = v6(vec![V6Option::Dhcpv4Msg(done(t))]);
    assert_eq!(reply::base_time(Wire::O6, &m), Some(t));
    assert_eq!(reply::base_time(Wire::O6, &v6(vec![])), None);
    // Malformed: a short option, garbage, truncations.
    let mut bad = v6(vec![]);
    bad.extend_from_slice(&[0, v6opt::LQ_BASE_TIME as u8, 0, 2, 1, 2]);
    assert_eq!(reply::base_time(Wire::V6, &bad), None);
    for wire in [Wire::V4, Wire::V6, Wire::O6] {
        let full = done(7);
        for cut in 0..full.len() {
            let _ = reply::base_time(wire, &full[..cut]);
        }
        assert_eq!(reply::base_time(wire, &[0xff; 9]), None);
    }
}

#[test]
fn the_table_round_trips_keys_and_values_compactly() {
    let mut t = Table::new();
    let v = Value {
        client_id: Some((0..40).collect()),
        softwire: None,
        active: true,
    };
    let keys = [
        key(1, 15),
        Key::V4 {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            psid: None,
        },
        Key::V4 {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            psid: Some(PortParams {
                offset: 6,
                psid_len: 0,
                psid: 0,
            }),
        },
        Key::V6 {
            duid: vec![0, 1, 2],
            addr: "2001:db8::1".parse().unwrap(),
        },
    ];
    for k in &keys {
        assert_eq!(t.insert(k, &v), None);
    }
    assert_eq!(t.len(), 4);
    for k in &keys {
        let got = t.get(k).unwrap();
        match k {
            Key::V4 { .. } => assert_eq!(got, v),
            Key::V6 { .. } => assert!(got.active && got.client_id.is_none()),
        }
    }
    let mut back: Vec<Key> = t.iter().map(|(k, _)| k).collect();
    assert_eq!(back.len(), 4);
    back.retain(|k| !keys.contains(k));
    assert!(back.is_empty());
    assert!(t.remove(&keys[0]).is_some());
    assert_eq!(t.get(&keys[0]), None);
    // Mark and sweep: what is not inserted again after unmark is swept, v4 and v6 alike.
    t.unmark();
    t.insert(&keys[1], &v);
    let mut gone: Vec<Key> = t.sweep().into_iter().map(|(k, _)| k).collect();
    gone.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(gone, vec![keys[2].clone(), keys[3].clone()]);
    assert_eq!(t.len(), 1);
    assert!(t.sweep().is_empty());
    assert!(super::super::table::v4_entry_size() <= 56);
}
