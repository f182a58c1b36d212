use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use super::*;
use crate::lease::{BindingKey, Change, ChangeKind, V4Binding, V6Binding};
use crate::proto::codes::{dhcp_state, query_type, v4msg, v4opt, v4status, v6msg, v6opt, v6status};
use crate::proto::encoder::{OroSet, PrlSet};
use crate::proto::record::V6Addr;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::MessageView;
use crate::session::plan::{Form, V4Form, V6Form};
use crate::session::{Action, Identity, Policy};

fn id() -> Identity {
    Identity {
        server_duid: vec![0, 4, 9, 9, 9, 9],
        server_id: Ipv4Addr::new(127, 0, 0, 1),
    }
}

fn on() -> Policy {
    Policy {
        active: true,
        allow_insecure_active: true,
        ..Policy::default()
    }
}

fn opt(code: u16, data: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn alq(xid: u32, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![v6msg::ACTIVELEASEQUERY];
    m.extend_from_slice(&xid.to_be_bytes()[1..]);
    m.extend(opt(v6opt::CLIENTID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

fn lq_query(qt: u8, link: Ipv6Addr, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![qt];
    d.extend_from_slice(&link.octets());
    for o in opts {
        d.extend_from_slice(o);
    }
    opt(v6opt::LQ_QUERY, &d)
}

fn run6(msg: &[u8], policy: &Policy) -> Action {
    super::super::on_message(
        super::super::Family::V6,
        msg,
        &id(),
        policy,
        &Default::default(),
        1_700_000_000,
    )
}

fn reply_status(a: &Action) -> (u16, bool) {
    let Action::Reply { bytes, close } = a else {
        panic!("not a reply: {a:?}")
    };
    let v = MessageView::parse(&bytes[2..]).unwrap();
    assert_eq!(v.msg_type, v6msg::LEASEQUERY_REPLY);
    let st = v.options().get(v6opt::STATUS_CODE).unwrap();
    (u16::from_be_bytes([st.data[0], st.data[1]]), *close)
}

#[test]
fn gating_needs_both_settings() {
    let m = alq(7, &[]);
    assert_eq!(
        reply_status(&run6(&m, &Policy::default())),
        (v6status::NOT_SUPPORTED, true)
    );
    let half = Policy {
        active: true,
        ..Policy::default()
    };
    assert_eq!(
        reply_status(&run6(&m, &half)),
        (v6status::NOT_ALLOWED, true)
    );
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(p.filter, ActiveFilter::V6(None));
    assert_eq!(p.since, None);
    assert_eq!(p.xid, 7);
}

#[test]
fn v6_validation() {
    // END_TIME: MalformedQuery and close.
    let m = alq(1, &[opt(v6opt::LQ_END_TIME, &[0, 0, 0, 1])]);
    assert_eq!(
        reply_status(&run6(&m, &on())),
        (v6status::MALFORMED_QUERY, true)
    );
    // A short START_TIME.
    let m = alq(1, &[opt(v6opt::LQ_START_TIME, &[0, 1])]);
    assert_eq!(
        reply_status(&run6(&m, &on())),
        (v6status::MALFORMED_QUERY, true)
    );
    // START_TIME converts from the 2000 epoch.
    let m = alq(1, &[opt(v6opt::LQ_START_TIME, &100u32.to_be_bytes())]);
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(p.since, Some(946_684_800 + 100));
    // Query types 3, 4, 5 filter.
    let link: Ipv6Addr = "2001:db8:1::".parse().unwrap();
    let m = alq(
        2,
        &[lq_query(
            query_type::BY_RELAY_ID,
            Ipv6Addr::UNSPECIFIED,
            &[opt(v6opt::RELAY_ID, &[0, 3, 0, 1, 9])],
        )],
    );
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(
        p.filter,
        ActiveFilter::V6(Some(V6Filter::RelayId(vec![0, 3, 0, 1, 9], None)))
    );
    let m = alq(2, &[lq_query(query_type::BY_LINK_ADDRESS, link, &[])]);
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(p.filter, ActiveFilter::V6(Some(V6Filter::Link(link))));
    let m = alq(
        2,
        &[lq_query(
            query_type::BY_LINK_ADDRESS,
            Ipv6Addr::UNSPECIFIED,
            &[],
        )],
    );
    assert_eq!(reply_status(&run6(&m, &on())).0, v6status::MALFORMED_QUERY);
    let m = alq(2, &[lq_query(9, Ipv6Addr::UNSPECIFIED, &[])]);
    assert_eq!(
        reply_status(&run6(&m, &on())).0,
        v6status::UNKNOWN_QUERY_TYPE
    );
    // Broken OPTION_LQ_QUERY.
    let m = alq(2, &[opt(v6opt::LQ_QUERY, &[1, 2])]);
    assert_eq!(reply_status(&run6(&m, &on())).0, v6status::MALFORMED_QUERY);
    // No Client-ID: dropped.
    let mut m = vec![v6msg::ACTIVELEASEQUERY, 0, 0, 1];
    m.extend(opt(v6opt::ORO, &[0, 100]));
    assert!(matches!(run6(&m, &on()), Action::Drop));
    // ORO at message level asks for base-time.
    let m = alq(3, &[opt(v6opt::ORO, &[0, 100])]);
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    let Form::V6(f) = &p.form else { panic!() };
    assert!(f.base_time);
}

fn v4q(f: impl FnOnce(&mut crate::proto::v4::Message)) -> Vec<u8> {
    let mut m = crate::proto::v4::Message::new(
        crate::proto::codes::BOOTREQUEST,
        v4msg::ACTIVELEASEQUERY,
        0x0a0b0c0d,
    );
    f(&mut m);
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn run4(msg: &[u8], policy: &Policy) -> Action {
    super::super::on_message(
        super::super::Family::V4,
        msg,
        &id(),
        policy,
        &Default::default(),
        1_700_000_000,
    )
}

fn v4_status(a: &Action) -> (u8, bool) {
    let Action::Reply { bytes, close } = a else {
        panic!("{a:?}")
    };
    let v = V4View::parse(&bytes[2..]).unwrap();
    assert_eq!(v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    (v.option(v4opt::STATUS_CODE).unwrap()[0], *close)
}

#[test]
fn v4_validation() {
    let plain = v4q(|_| {});
    assert!(matches!(run4(&plain, &Policy::default()), Action::Close));
    let half = Policy {
        active: true,
        ..Policy::default()
    };
    assert_eq!(
        v4_status(&run4(&plain, &half)),
        (v4status::NOT_ALLOWED, true)
    );
    let Action::Active(p) = run4(&plain, &on()) else {
        panic!()
    };
    assert_eq!(p.filter, ActiveFilter::V4All);
    assert_eq!(p.xid, 0x0a0b0c0d);
    let with_ciaddr = v4q(|m| m.ciaddr = Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        v4_status(&run4(&with_ciaddr, &on())),
        (v4status::MALFORMED_QUERY, true)
    );
    let with_chaddr = v4q(|m| {
        m.hlen = 6;
        m.chaddr[0] = 2;
    });
    assert_eq!(
        v4_status(&run4(&with_chaddr, &on())).0,
        v4status::MALFORMED_QUERY
    );
    let with_cid = v4q(|m| {
        m.options.push(crate::proto::v4::V4Option::Unknown {
            code: v4opt::CLIENT_ID,
            data: vec![1, 2, 3],
        })
    });
    assert_eq!(
        v4_status(&run4(&with_cid, &on())).0,
        v4status::MALFORMED_QUERY
    );
    let with_end = v4q(|m| m.options.push(crate::proto::v4::V4Option::QueryEndTime(9)));
    assert_eq!(
        v4_status(&run4(&with_end, &on())),
        (v4status::MALFORMED_QUERY, true)
    );
    let with_start = v4q(|m| {
        m.options
            .push(crate::proto::v4::V4Option::QueryStartTime(1_600_000_000))
    });
    let Action::Active(p) = run4(&with_start, &on()) else {
        panic!()
    };
    assert_eq!(p.since, Some(1_600_000_000));
}

#[test]
fn dhcp4o6_validation_and_forms() {
    let inner = v4q(|_| {});
    let oro = lq_query(
        query_type::BY_REMOTE_ID,
        Ipv6Addr::UNSPECIFIED,
        &[
            opt(v6opt::REMOTE_ID, &[0, 0, 0, 9, 1, 2]),
            opt(v6opt::ORO, &[0, 92]),
        ],
    );
    let m = alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &inner)]);
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(
        p.filter,
        ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 1, 2], None)))
    );
    assert_eq!((p.v6_xid(), p.v4_xid()), (5, 0x0a0b0c0d));
    // The opening REPLY carries a DHCPLEASEQUERYSTATUS with both xids.
    let open = p.opening(1_700_000_000, false).unwrap();
    let v = MessageView::parse(&open[2..]).unwrap();
    assert_eq!((v.msg_type, v.xid), (v6msg::LEASEQUERY_REPLY, 5));
    let inner_v = V4View::parse(v.options().get(v6opt::DHCPV4_MSG).unwrap().data).unwrap();
    assert_eq!(inner_v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    assert_eq!(inner_v.xid, 0x0a0b0c0d);
    // Shutdown: DONE QueryTerminated, base-time, v4 STATUS QueryTerminated.
    let t = p.terminated(1_700_000_000, "shutting down");
    let v = MessageView::parse(&t[2..]).unwrap();
    assert_eq!(v.msg_type, v6msg::LEASEQUERY_DONE);
    assert!(v.options().get(v6opt::LQ_BASE_TIME).is_some());
    let inner_v = V4View::parse(v.options().get(v6opt::DHCPV4_MSG).unwrap().data).unwrap();
    assert_eq!(inner_v.message_type(), Some(v4msg::LEASEQUERYSTATUS));
    assert_eq!(
        inner_v.option(v4opt::STATUS_CODE).unwrap()[0],
        v4status::QUERY_TERMINATED
    );
    // Wrong inner type, no ORO, query-end-time: MalformedQuery in both layers, close.
    let bulk = {
        let m = crate::proto::v4::Message::new(
            crate::proto::codes::BOOTREQUEST,
            v4msg::BULKLEASEQUERY,
            1,
        );
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    };
    let no_oro = lq_query(
        query_type::BY_REMOTE_ID,
        Ipv6Addr::UNSPECIFIED,
        &[opt(v6opt::REMOTE_ID, &[0, 0, 0, 9, 1, 2])],
    );
    let end = v4q(|m| m.options.push(crate::proto::v4::V4Option::QueryEndTime(9)));
    for m in [
        alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &bulk)]),
        alq(5, &[no_oro, opt(v6opt::DHCPV4_MSG, &inner)]),
        alq(5, &[opt(v6opt::DHCPV4_MSG, &inner)]),
        alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &end)]),
        alq(5, &[oro.clone(), opt(v6opt::DHCPV4_MSG, &[1, 2, 3])]),
    ] {
        let a = run6(&m, &on());
        assert_eq!(reply_status(&a), (v6status::MALFORMED_QUERY, true));
        let Action::Reply { bytes, .. } = a else {
            unreachable!()
        };
        let v = MessageView::parse(&bytes[2..]).unwrap();
        let d = v.options().get(v6opt::DHCPV4_MSG).unwrap().data;
        if let Ok(iv) = V4View::parse(d) {
            assert_eq!(iv.message_type(), Some(v4msg::LEASEQUERYSTATUS));
            assert_eq!(
                iv.option(v4opt::STATUS_CODE).unwrap()[0],
                v4status::MALFORMED_QUERY
            );
        }
    }
    // No OPTION_LQ_QUERY: every 4o6 binding, the ORO at message level.
    let m = alq(
        5,
        &[
            opt(v6opt::ORO, &[0, 92, 0, 100]),
            opt(v6opt::DHCPV4_MSG, &inner),
        ],
    );
    let Action::Active(p) = run6(&m, &on()) else {
        panic!()
    };
    assert_eq!(p.filter, ActiveFilter::Dhcp4o6(None));
}

fn b4(addr: u8, sw: bool) -> V4Binding {
    V4Binding {
        addr: Ipv4Addr::new(192, 0, 2, addr),
        port_params: None,
        htype: 1,
        chaddr: vec![2, 0, 0, 0, 0, addr],
        client_id: Some(vec![255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, addr]),
        state: dhcp_state::ACTIVE,
        cltt: 1_700_000_000,
        state_start: 1_700_000_000,
        expires: 1_700_003_600,
        circuit_id: None,
        remote_id: Some(vec![0, 0, 0, 9, addr]),
        relay_id: None,
        softwire_src: sw.then(|| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, addr.into())),
        v6: sw.then(|| crate::lease::V6ContextBinding {
            client_src: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, addr.into()),
            link: "2001:db8:1::".parse().unwrap(),
            relay: None,
        }),
        data_source: 0,
    }
}

fn b6(n: u8) -> V6Binding {
    V6Binding {
        duid: vec![0, 3, 0, 1, n],
        link: "2001:db8:2::".parse().unwrap(),
        iana: vec![V6Addr {
            addr: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, n.into()),
            preferred_until: 1_700_003_600,
            valid_until: 1_700_007_200,
        }],
        iapd: vec![],
        cltt: 1_700_000_000,
        relay_id: Some(vec![0, 3, 0, 1, 9]),
        remote_id: None,
    }
}

fn ch4(b: V4Binding, kind: ChangeKind) -> Change {
    Change::V4 {
        at: 1_700_000_000,
        kind,
        binding: b,
    }
}

#[test]
fn filters_match_the_right_bindings() {
    let plain = ch4(b4(1, false), ChangeKind::Feed);
    let o6 = ch4(b4(2, true), ChangeKind::Feed);
    let v6c = Change::V6 {
        at: 0,
        kind: ChangeKind::Feed,
        binding: b6(3),
    };
    assert!(ActiveFilter::V4All.matches(&plain) && ActiveFilter::V4All.matches(&o6));
    assert!(!ActiveFilter::V4All.matches(&v6c));
    assert!(!ActiveFilter::Dhcp4o6(None).matches(&plain));
    assert!(ActiveFilter::Dhcp4o6(None).matches(&o6));
    let remote = ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 2], None)));
    assert!(remote.matches(&o6));
    let other = ActiveFilter::Dhcp4o6(Some(V6Filter::RemoteId(vec![0, 0, 0, 9, 7], None)));
    assert!(!other.matches(&o6));
    let duid = ActiveFilter::Dhcp4o6(Some(V6Filter::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 2])));
    assert!(duid.matches(&o6));
    let link = ActiveFilter::Dhcp4o6(Some(V6Filter::Link("2001:db8:1::77".parse().unwrap())));
    assert!(link.matches(&o6));
    assert!(ActiveFilter::V6(None).matches(&v6c) && !ActiveFilter::V6(None).matches(&o6));
    let relay = ActiveFilter::V6(Some(V6Filter::RelayId(
        vec![0, 3, 0, 1, 9],
        Some("2001:db8:2::1".parse().unwrap()),
    )));
    assert!(relay.matches(&v6c));
    let relay_elsewhere = ActiveFilter::V6(Some(V6Filter::RelayId(
        vec![0, 3, 0, 1, 9],
        Some("2001:db8:3::1".parse().unwrap()),
    )));
    assert!(!relay_elsewhere.matches(&v6c));
    let addr = ActiveFilter::V6(Some(V6Filter::Address(Ipv6Addr::new(
        0x2001, 0xdb8, 2, 0, 0, 0, 0, 3,
    ))));
    assert!(addr.matches(&v6c));
}

fn v4plan() -> ActivePlan {
    ActivePlan {
        xid: 0x01020304,
        filter: ActiveFilter::V4All,
        form: Form::V4(V4Form {
            xid: 0x01020304,
            server_id: Ipv4Addr::LOCALHOST,
            prl: PrlSet::from_prl(&[156]),
        }),
        since: None,
    }
}

#[test]
fn updates_are_encoded_once_and_patched_per_subscriber() {
    let p = v4plan();
    let e = p
        .encode_change(&ch4(b4(1, false), ChangeKind::Renew), 1_700_000_010)
        .unwrap();
    let mut out = Vec::new();
    e.append_to(&mut out, 0, 0xdeadbeef);
    let v = V4View::parse(&out[2..]).unwrap();
    assert_eq!(v.xid, 0xdeadbeef);
    assert_eq!(v.message_type(), Some(v4msg::LEASEACTIVE));
    assert_eq!(v.ciaddr, Ipv4Addr::new(192, 0, 2, 1));
    // A removed binding leaves the bound state: DHCPLEASEUNASSIGNED.
    let e = p
        .encode_change(&ch4(b4(1, false), ChangeKind::Remove), 1_700_000_010)
        .unwrap();
    let v = V4View::parse(&e.bytes[2..]).unwrap();
    assert_eq!(v.message_type(), Some(v4msg::LEASEUNASSIGNED));
    // A v6 change does not encode for a v4 plan.
    let v6c = Change::V6 {
        at: 0,
        kind: ChangeKind::Remove,
        binding: b6(3),
    };
    assert!(p.encode_change(&v6c, 0).is_none());
    // v6: removal sends lifetimes 0.
    let p6 = ActivePlan {
        xid: 9,
        filter: ActiveFilter::V6(None),
        form: Form::V6(V6Form {
            xid: 9,
            requestor_duid: vec![0, 3, 0, 1, 1],
            server_duid: vec![0, 4, 1],
            oro: OroSet::default(),
            base_time: true,
        }),
        since: None,
    };
    let e = p6.encode_change(&v6c, 1_700_000_010).unwrap();
    let v = MessageView::parse(&e.bytes[2..]).unwrap();
    assert_eq!(v.msg_type, v6msg::LEASEQUERY_DATA);
    let cd = v.options().get(v6opt::CLIENT_DATA).unwrap();
    let inner = crate::proto::v6::OptionsView::new(cd.data).unwrap();
    let ia = inner.get(v6opt::IAADDR).unwrap();
    assert_eq!(&ia.data[16..24], &[0; 8]);
    // Statuses.
    let k = p6.keepalive(1);
    let v = MessageView::parse(&k[2..]).unwrap();
    assert_eq!(v.msg_type, v6msg::LEASEQUERY_DATA);
    assert!(v.options().get(v6opt::CLIENT_DATA).is_none());
    let c = p6.catch_up_complete(1);
    let v = MessageView::parse(&c[2..]).unwrap();
    let st = v.options().get(v6opt::STATUS_CODE).unwrap();
    assert_eq!(st.data[..2], v6status::CATCH_UP_COMPLETE.to_be_bytes());
    let k4 = p.keepalive(1);
    let v = V4View::parse(&k4[2..]).unwrap();
    assert_eq!(
        v.option(v4opt::STATUS_CODE).unwrap()[0],
        v4status::CONNECTION_ACTIVE
    );
    assert!(p.opening(1, false).is_none());
    let dm = p.opening(1, true).unwrap();
    let v = V4View::parse(&dm[2..]).unwrap();
    assert_eq!(
        v.option(v4opt::STATUS_CODE).unwrap()[0],
        v4status::DATA_MISSING
    );
    assert!(v.has_option(v4opt::BASE_TIME));
    let dm6 = p6.opening(1, true).unwrap();
    let v = MessageView::parse(&dm6[2..]).unwrap();
    assert_eq!(v.msg_type, v6msg::LEASEQUERY_REPLY);
    assert!(v.options().get(v6opt::LQ_BASE_TIME).is_some());
    assert_ne!(p.wire_key(), p6.wire_key());
}

fn k(n: u8) -> Option<Rc<BindingKey>> {
    Some(Rc::new(BindingKey::V4(crate::lease::V4Key {
        addr: Ipv4Addr::new(10, 0, 0, n),
        port_params: None,
    })))
}

#[test]
fn backlog_appends_until_a_bound_then_coalesces() {
    let mut b: Backlog<u32> = Backlog::new(BacklogLimits {
        max_bindings: 3,
        max_bytes: 100,
    });
    let q = |was_empty, coalesced| {
        Ok(Pushed {
            was_empty,
            coalesced,
        })
    };
    assert_eq!(b.push(k(1), 1, 10), q(true, 0));
    assert_eq!(b.push(None, 2, 5), q(false, 0));
    // Below the bounds nothing is indexed: a second state of binding 1 is appended.
    assert_eq!(b.push(k(1), 3, 20), q(false, 0));
    assert!(!b.is_indexed());
    assert_eq!((b.bindings(), b.bytes()), (2, 35));
    assert_eq!(b.push(k(2), 4, 10), q(false, 0));
    // A fourth keyed message would pass max_bindings: the backlog compacts first (3 moves
    // into 1's place), then takes it.
    assert_eq!(b.push(k(3), 5, 10), q(false, 1));
    assert!(b.is_indexed());
    assert_eq!((b.bindings(), b.bytes()), (3, 45));
    // Indexed: every later state coalesces at once.
    assert_eq!(b.push(k(2), 6, 10), q(false, 1));
    assert!(b.push(k(4), 7, 10).is_err(), "a fourth binding");
    assert!(b.push(None, 8, 60).is_err(), "over the octets");
    // The coalesced message keeps the oldest place, before the control message.
    assert_eq!(b.pop(usize::MAX), vec![3, 2, 6, 5]);
    assert!(b.is_empty());
    assert!(!b.is_indexed(), "drained: back to appends");
    assert_eq!((b.bindings(), b.bytes()), (0, 0));
    assert_eq!(b.push(k(1), 9, 10), q(true, 0));
    assert_eq!(b.push(k(2), 10, 10), q(false, 0));
    assert_eq!(b.pop(1), vec![9]);
    assert_eq!(b.push(k(1), 11, 10), q(false, 0));
    assert_eq!(b.pop(usize::MAX), vec![10, 11]);
}

#[test]
fn backlog_over_the_octets_after_compaction_is_refused() {
    let mut b: Backlog<u32> = Backlog::new(BacklogLimits {
        max_bindings: 100,
        max_bytes: 30,
    });
    b.push(k(1), 1, 10).unwrap();
    b.push(k(1), 2, 10).unwrap();
    b.push(k(2), 3, 10).unwrap();
    // 40 octets would not fit; compaction frees 10 (1's first state): it fits.
    assert_eq!(b.push(k(3), 4, 10).map(|p| p.coalesced), Ok(1));
    assert_eq!(b.bytes(), 30);
    assert!(b.push(k(4), 5, 1).is_err());
    assert_eq!(b.pop(usize::MAX), vec![2, 3, 4]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Against a model: nothing is lost (each binding's last pushed state is the last one
    /// delivered for it), control messages come in order and after everything pushed before
    /// them, the counters match what waits, and a refusal happens only when the distinct
    /// bindings or their latest octets are over a bound.
    #[test]
    fn backlog_loses_nothing_and_keeps_order(
        ops in proptest::collection::vec((0u8..12, 1usize..40, proptest::bool::ANY), 1..300),
        max_bindings in 1usize..10,
        max_bytes in 40usize..400,
    ) {
        use std::collections::BTreeMap;
        let mut b: Backlog<(Option<u8>, u32)> =
            Backlog::new(BacklogLimits { max_bindings, max_bytes });
        // Waiting, as the model sees it: latest state (seq, octets) per binding, control
        // messages in order.
        let mut latest: BTreeMap<u8, (u32, usize)> = BTreeMap::new();
        let mut delivered_last: BTreeMap<u8, u32> = BTreeMap::new();
        // Per control message: the bindings waiting when it was pushed, with how many
        // messages of each had been delivered then.
        let mut pushed_before_control: Vec<(u32, Vec<(u8, usize)>)> = Vec::new();
        let mut control_bytes = 0usize;
        let mut deliveries: BTreeMap<u8, usize> = BTreeMap::new();
        let mut next_control = 0u32;
        for (seq, (n, bytes, pop)) in ops.into_iter().enumerate() {
            let seq = seq as u32;
            if pop {
                for (key, s) in b.pop(bytes * 8) {
                    match key {
                        Some(n) => {
                            delivered_last.insert(n, s);
                            *deliveries.entry(n).or_default() += 1;
                            if latest.get(&n).map(|l| l.0) == Some(s) {
                                latest.remove(&n);
                            }
                        }
                        None => {
                            let (want, keys) = pushed_before_control.remove(0);
                            proptest::prop_assert_eq!(s, want, "control messages in order");
                            for (k, then) in keys {
                                proptest::prop_assert!(deliveries.get(&k).copied().unwrap_or(0) > then,
                                    "binding {} pushed before a control message came after it", k);
                            }
                            control_bytes -= 10;
                        }
                    }
                }
                if b.is_empty() {
                    proptest::prop_assert!(latest.is_empty() && pushed_before_control.is_empty());
                }
                continue;
            }
            if n == 11 {
                let keys: Vec<(u8, usize)> = latest
                    .keys()
                    .map(|k| (*k, deliveries.get(k).copied().unwrap_or(0)))
                    .collect();
                match b.push(None, (None, next_control), 10) {
                    Ok(_) => {
                        pushed_before_control.push((next_control, keys));
                        next_control += 1;
                        control_bytes += 10;
                    }
                    Err(_) => {
                        let octets: usize = latest.values().map(|v| v.1).sum::<usize>() + control_bytes;
                        proptest::prop_assert!(octets + 10 > max_bytes, "refused a control message that fits");
                    }
                }
                continue;
            }
            let distinct = latest.len() + usize::from(!latest.contains_key(&n));
            let octets: usize = latest.iter().filter(|(k, _)| **k != n).map(|(_, v)| v.1).sum::<usize>()
                + bytes + control_bytes;
            match b.push(k(n), (Some(n), seq), bytes) {
                Ok(_) => {
                    // Within the bounds counted over the latest states.
                    latest.insert(n, (seq, bytes));
                }
                Err(_) => {
                    proptest::prop_assert!(distinct > max_bindings || octets > max_bytes,
                        "refused although {} bindings / {} octets fit", distinct, octets);
                    // A refusal terminates the subscriber in the server: stop here.
                    break;
                }
            }
            proptest::prop_assert!(b.bindings() >= latest.len());
        }
        // Drain: every binding's last pushed state is the last delivered.
        for (key, s) in b.pop(usize::MAX) {
            if let Some(n) = key {
                delivered_last.insert(n, s);
            }
        }
        for (n, (s, _)) in latest {
            proptest::prop_assert_eq!(delivered_last.get(&n), Some(&s));
        }
        proptest::prop_assert!(b.is_empty());
        proptest::prop_assert_eq!((b.bindings(), b.bytes()), (0, 0));
    }
}
