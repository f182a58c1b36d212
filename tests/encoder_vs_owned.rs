//! The streaming encoder against the owned codecs: what it writes decodes, with the owned
//! decoders, to the record it was given, and the owned encoders write the decoded message back
//! to the same octets.

use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::proto::codes::{dhcp_state, v4msg, v6msg, v6opt};
use leasequery::proto::encoder::{
    Dhcp4o6ReplyParams, OroSet, PrlSet, Reply, StreamWriter, V4ReplyParams, V6ReplyParams,
};
use leasequery::proto::record::{PortParams, V4Record, V6Addr, V6Context, V6Record};
use leasequery::proto::v4::{self, V4Option};
use leasequery::proto::v6::{self, V6Option};
use proptest::prelude::*;

const NOW: u32 = 1_767_225_600;

#[derive(Debug, Clone)]
struct Rec {
    addr: u32,
    psid: Option<(u8, u16)>,
    chaddr: Vec<u8>,
    client_id: Option<Vec<u8>>,
    active: bool,
    cltt_ago: u32,
    expires_in: u32,
    remote_id: Option<Vec<u8>>,
    relay_id: Option<Vec<u8>>,
    softwire: Option<u128>,
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        any::<u32>(),
        proptest::option::of((1u8..=16, any::<u16>())),
        proptest::collection::vec(any::<u8>(), 0..=16),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 2..40)),
        any::<bool>(),
        0u32..100_000,
        0u32..100_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 2..40)),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(
            |(
                addr,
                psid,
                chaddr,
                client_id,
                active,
                cltt_ago,
                expires_in,
                remote_id,
                relay_id,
                softwire,
            )| Rec {
                addr,
                psid: psid.map(|(len, id)| (len, if len == 16 { id } else { id % (1 << len) })),
                chaddr,
                // Type 255 is an RFC 4361 id, which needs IAID + a DUID of 2 octets or more
                // (7 octets in all); a shorter one is not a valid option 61.
                client_id: client_id.map(|mut c| {
                    if c[0] == 255 && c.len() < 7 {
                        c[0] = 1;
                    }
                    c
                }),
                active,
                cltt_ago,
                expires_in,
                remote_id,
                relay_id,
                softwire,
            },
        )
}

fn record(r: &Rec) -> V4Record<'_> {
    V4Record {
        addr: Ipv4Addr::from(r.addr),
        port_params: r.psid.map(|(len, id)| PortParams {
            offset: 0,
            psid_len: len,
            psid: id,
        }),
        htype: if r.chaddr.is_empty() { 0 } else { 1 },
        chaddr: &r.chaddr,
        client_id: r.client_id.as_deref(),
        state: if r.active {
            dhcp_state::ACTIVE
        } else {
            dhcp_state::EXPIRED
        },
        cltt: NOW - r.cltt_ago,
        state_start: NOW - r.cltt_ago,
        expires: if r.active { NOW + r.expires_in } else { 0 },
        circuit_id: None,
        remote_id: r.remote_id.as_deref(),
        relay_id: r.relay_id.as_deref(),
        softwire_src: r.softwire.map(Ipv6Addr::from),
        v6: Some(V6Context {
            client_src: Ipv6Addr::LOCALHOST,
            link: "2001:db8:1::".parse().unwrap(),
            relay: None,
        }),
        data_source: 0,
    }
}

fn v4p() -> V4ReplyParams {
    V4ReplyParams {
        xid: 0x1122_3344,
        server_id: Ipv4Addr::new(127, 0, 0, 1),
        prl: PrlSet::from_prl(&[51, 91, 109, 153, 156, 159]),
        now: NOW,
    }
}

/// Checks the v4 message `bytes` (no frame) against the record; returns the decoded message.
fn check_v4(bytes: &[u8], r: &Rec, first: bool) -> v4::Message {
    let m = v4::Message::decode(bytes).expect("decodes");
    let rec = record(r);
    assert_eq!(m.xid, 0x1122_3344);
    assert_eq!(m.ciaddr, rec.addr);
    assert_eq!(m.hw_addr(), rec.chaddr);
    assert_eq!(
        m.message_type(),
        Some(if r.active {
            v4msg::LEASEACTIVE
        } else {
            v4msg::LEASEUNASSIGNED
        })
    );
    assert_eq!(
        m.option(54).is_some(),
        first,
        "option 54 only in the first message"
    );
    assert!(m.option(92).is_none(), "never associated-ip");
    if let Some(pp) = rec.port_params {
        assert_eq!(m.option(159), Some(&V4Option::V4PortParams(pp)));
    }
    if let Some(s) = rec.softwire_src {
        assert_eq!(m.option(109), Some(&V4Option::Dhcp4o6SoftwireSource(s)));
    }
    // The owned encoder writes the decoded message back to the very same octets.
    let mut again = Vec::new();
    m.encode(&mut again).unwrap();
    assert_eq!(again, bytes);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn v4_binding_matches_the_owned_codec(r in rec_strategy(), first in any::<bool>()) {
        let p = v4p();
        let rec = record(&r);
        let mut buf = Vec::with_capacity(70_000);
        let at = StreamWriter::new(&mut buf).write(&Reply::V4Binding { p: &p, rec: &rec, first }).unwrap();
        prop_assert_eq!(at.len, buf.len());
        check_v4(&buf[2..], &r, first);
    }

    #[test]
    fn dhcp4o6_binding_matches_the_owned_codecs(r in rec_strategy(), first in any::<bool>()) {
        let v6 = V6ReplyParams {
            xid: 0xabcdef,
            requestor_duid: &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6],
            server_duid: &[0, 4, 9, 9],
            oro: OroSet::from_codes([v6opt::S46_V4V6BIND]),
            base_time: true,
            reply_status: None,
            now: NOW,
        };
        let p = Dhcp4o6ReplyParams { v6, v4: v4p(), br: None, bind_prefix: None };
        let rec = record(&r);
        let mut buf = Vec::with_capacity(70_000);
        StreamWriter::new(&mut buf).write(&Reply::O6Binding { p: &p, rec: &rec, first }).unwrap();
        let m = v6::Message::decode(&buf[2..]).unwrap();
        prop_assert_eq!(m.msg_type, if first { v6msg::LEASEQUERY_REPLY } else { v6msg::LEASEQUERY_DATA });
        prop_assert_eq!(m.xid, 0xabcdef);
        let has = |c: u16| m.options.iter().any(|o| o.code() == c);
        prop_assert_eq!(has(v6opt::CLIENTID), first);
        prop_assert_eq!(has(v6opt::SERVERID), first);
        prop_assert!(has(v6opt::LQ_BASE_TIME));
        let inner = m.options.iter().find_map(|o| o.dhcpv4_message()).expect("OPTION_DHCPV4_MSG").unwrap();
        let mut inner_bytes = Vec::new();
        inner.encode(&mut inner_bytes).unwrap();
        check_v4(&inner_bytes, &r, first);
        let data = m.options.iter().find_map(|o| match o { V6Option::ClientData(d) => Some(d), _ => None }).expect("CLIENT_DATA");
        let bind = data.iter().find_map(|o| match o { V6Option::S46V4V6Bind { ipv4, prefix_len, prefix, .. } => Some((*ipv4, *prefix_len, *prefix)), _ => None });
        match rec.softwire_src {
            Some(s) => prop_assert_eq!(bind, Some((rec.addr, 128, s))),
            None => prop_assert_eq!(bind, None, "no softwire source: no 92 (scenario 54)"),
        }
        let mut again = Vec::new();
        m.encode(&mut again).unwrap();
        prop_assert_eq!(&again[..], &buf[2..]);
    }

    #[test]
    fn v6_binding_matches_the_owned_codec(
        duid in proptest::collection::vec(any::<u8>(), 2..30),
        addrs in proptest::collection::vec((any::<u128>(), 0u32..10_000, 0u32..10_000), 0..4),
        first in any::<bool>(),
    ) {
        let iana: Vec<V6Addr> = addrs.iter().map(|&(a, p, v)| V6Addr { addr: Ipv6Addr::from(a), preferred_until: NOW + p.min(v), valid_until: NOW + v }).collect();
        let rec = V6Record { duid: &duid, link: "2001:db8:2::".parse().unwrap(), iana: &iana, iapd: &[], cltt: NOW - 30, relay_id: None, remote_id: None };
        let p = V6ReplyParams { xid: 0x123456, requestor_duid: &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6], server_duid: &[0, 4, 9, 9], oro: OroSet::default(), base_time: false, reply_status: None, now: NOW };
        let mut buf = Vec::with_capacity(70_000);
        StreamWriter::new(&mut buf).write(&Reply::V6Binding { p: &p, rec: &rec, first }).unwrap();
        let m = v6::Message::decode(&buf[2..]).unwrap();
        let data = m.options.iter().find_map(|o| match o { V6Option::ClientData(d) => Some(d.clone()), _ => None }).expect("CLIENT_DATA");
        prop_assert_eq!(&data[0], &V6Option::ClientId(duid.clone()));
        let got: Vec<(Ipv6Addr, u32, u32)> = data.iter().filter_map(|o| match o { V6Option::IaAddr { addr, preferred, valid, .. } => Some((*addr, *preferred, *valid)), _ => None }).collect();
        let want: Vec<(Ipv6Addr, u32, u32)> = iana.iter().map(|a| (a.addr, a.preferred_until - NOW, a.valid_until - NOW)).collect();
        prop_assert_eq!(got, want);
        prop_assert!(data.contains(&V6Option::CltTime(30)));
        let mut again = Vec::new();
        m.encode(&mut again).unwrap();
        prop_assert_eq!(&again[..], &buf[2..]);
    }
}
