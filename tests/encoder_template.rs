//! The template path of the bulk encoder ([`BindingEncoder`]) against the reference encoder
//! ([`Reply::V4Binding`] / [`Reply::O6Binding`] through [`StreamWriter::write`]): for random
//! bindings, PRL/ORO sets, per-query parameters and buffer states, the same result (offsets,
//! lengths, errors) and the same buffer contents, octet for octet.

use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::proto::codes::{dhcp_state, v4opt, v6opt, v6status};
use leasequery::proto::encoder::{
    BindingEncoder, Dhcp4o6ReplyParams, OroSet, PrlSet, Reply, StreamWriter, V4ReplyParams,
    V6ReplyParams, V6Status,
};
use leasequery::proto::record::{PortParams, RelayRecord, V4Record, V6Context};
use leasequery::proto::EncodeError;
use proptest::prelude::*;

/// An owned binding the borrowed record is made from.
#[derive(Debug, Clone)]
struct Rec {
    addr: u32,
    port_params: Option<(u8, u8, u16)>,
    htype: u8,
    chaddr: Vec<u8>,
    client_id: Option<Vec<u8>>,
    state: u8,
    cltt: u32,
    state_start: u32,
    expires: u32,
    circuit_id: Option<Vec<u8>>,
    remote_id: Option<Vec<u8>>,
    relay_id: Option<Vec<u8>>,
    softwire: Option<u128>,
    v6: Option<(u128, u128, Option<Relay>)>,
    data_source: u8,
}

#[derive(Debug, Clone)]
struct Relay {
    hop_count: u8,
    link: u128,
    peer: u128,
    interface_id: Option<Vec<u8>>,
    relay_id: Option<Vec<u8>>,
    remote_id: Option<Vec<u8>>,
}

/// Mostly short octet strings, sometimes around the 255-octet option limit, rarely empty.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..24),
        2 => proptest::collection::vec(any::<u8>(), 240..300),
        1 => proptest::collection::vec(any::<u8>(), 500..800),
    ]
}

/// Option 61: often an RFC 4361 id (255, IAID, DUID), sometimes too short to hold a DUID.
fn client_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(),
        (any::<[u8; 4]>(), bytes()).prop_map(|(iaid, duid)| {
            let mut c = vec![255];
            c.extend_from_slice(&iaid);
            c.extend_from_slice(&duid);
            c
        }),
    ]
}

/// Times near `NOW` (so that saturations and zeros both happen) or anywhere.
fn time() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        (NOW - 100_000)..(NOW + 100_000),
        any::<u32>(),
    ]
}

const NOW: u32 = 1_767_225_600;

fn relay() -> impl Strategy<Value = Relay> {
    (
        any::<u8>(),
        any::<u128>(),
        any::<u128>(),
        proptest::option::of(bytes()),
        proptest::option::of(bytes()),
        proptest::option::of(bytes()),
    )
        .prop_map(
            |(hop_count, link, peer, interface_id, relay_id, remote_id)| Relay {
                hop_count,
                link,
                peer,
                interface_id,
                relay_id,
                remote_id,
            },
        )
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        (
            any::<u32>(),
            proptest::option::of((0u8..=16, 0u8..=17, any::<u16>())),
            any::<u8>(),
            prop_oneof![
                8 => proptest::collection::vec(any::<u8>(), 0..=16),
                1 => proptest::collection::vec(any::<u8>(), 17..20),
            ],
            proptest::option::of(client_id()),
            prop_oneof![Just(dhcp_state::ACTIVE), any::<u8>()],
            time(),
            time(),
        ),
        (
            time(),
            proptest::option::of(bytes()),
            proptest::option::of(bytes()),
            proptest::option::of(bytes()),
            proptest::option::of(any::<u128>()),
            proptest::option::of((any::<u128>(), any::<u128>(), proptest::option::of(relay()))),
            prop_oneof![Just(0u8), any::<u8>()],
        ),
    )
        .prop_map(
            |(
                (addr, port_params, htype, chaddr, client_id, state, cltt, state_start),
                (expires, circuit_id, remote_id, relay_id, softwire, v6, data_source),
            )| Rec {
                addr,
                port_params,
                htype,
                chaddr,
                client_id,
                state,
                cltt,
                state_start,
                expires,
                circuit_id,
                remote_id,
                relay_id,
                softwire,
                v6,
                data_source,
            },
        )
}

fn record(r: &Rec) -> V4Record<'_> {
    V4Record {
        addr: Ipv4Addr::from(r.addr),
        port_params: r.port_params.map(|(offset, psid_len, psid)| PortParams {
            offset,
            psid_len,
            psid,
        }),
        htype: r.htype,
        chaddr: &r.chaddr,
        client_id: r.client_id.as_deref(),
        state: r.state,
        cltt: r.cltt,
        state_start: r.state_start,
        expires: r.expires,
        circuit_id: r.circuit_id.as_deref(),
        remote_id: r.remote_id.as_deref(),
        relay_id: r.relay_id.as_deref(),
        softwire_src: r.softwire.map(Ipv6Addr::from),
        v6: r.v6.as_ref().map(|(src, link, relay)| V6Context {
            client_src: Ipv6Addr::from(*src),
            link: Ipv6Addr::from(*link),
            relay: relay.as_ref().map(|x| RelayRecord {
                hop_count: x.hop_count,
                link_address: Ipv6Addr::from(x.link),
                peer_address: Ipv6Addr::from(x.peer),
                interface_id: x.interface_id.as_deref(),
                relay_id: x.relay_id.as_deref(),
                remote_id: x.remote_id.as_deref(),
            }),
        }),
        data_source: r.data_source,
    }
}

/// Per-query parameters of both layers.
#[derive(Debug, Clone)]
struct Query {
    xid6: u32,
    xid4: u32,
    requestor: Vec<u8>,
    server: Vec<u8>,
    oro: Vec<u16>,
    base_time: bool,
    status: Option<(u16, String)>,
    now6: u32,
    now4: u32,
    server_id: u32,
    prl: Vec<u8>,
    br: Option<u128>,
    bind_prefix: Option<(u8, u128)>,
    first: bool,
}

fn query() -> impl Strategy<Value = Query> {
    let codes6 = prop_oneof![
        Just(v6opt::S46_V4V6BIND),
        Just(v6opt::S46_CONT_LW),
        Just(v6opt::S46_BIND_IPV6_PREFIX),
        Just(v6opt::LQ_RELAY_DATA),
        Just(v6opt::LQ_BASE_TIME),
        Just(v6opt::RELAY_ID),
        any::<u16>(),
    ];
    let codes4 = prop_oneof![
        Just(v4opt::START_TIME_OF_STATE),
        Just(v4opt::CLIENT_LAST_TRANSACTION_TIME),
        Just(v4opt::DHCP_STATE),
        Just(v4opt::DATA_SOURCE),
        Just(v4opt::DHCP4O6_S46_SADDR),
        Just(v4opt::V4_PORTPARAMS),
        any::<u8>(),
    ];
    (
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..20),
            proptest::collection::vec(any::<u8>(), 0..20),
            proptest::collection::vec(codes6, 0..8),
            any::<bool>(),
            proptest::option::of((
                prop_oneof![Just(v6status::SUCCESS), any::<u16>()],
                "[a-z ]{0,12}",
            )),
        ),
        (
            time(),
            prop_oneof![Just(None), time().prop_map(Some)],
            any::<u32>(),
            proptest::collection::vec(codes4, 0..8),
            proptest::option::of(any::<u128>()),
            proptest::option::of((prop_oneof![8 => 0u8..=128, 1 => 129u8..=255], any::<u128>())),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (xid6, xid4, requestor, server, oro, base_time, status),
                (now6, now4, server_id, prl, br, bind_prefix, first),
            )| Query {
                xid6,
                xid4,
                requestor,
                server,
                oro,
                base_time,
                status,
                now6,
                now4: now4.unwrap_or(now6),
                server_id,
                prl,
                br,
                bind_prefix,
                first,
            },
        )
}

fn v4_params(q: &Query) -> V4ReplyParams {
    V4ReplyParams {
        xid: q.xid4,
        server_id: Ipv4Addr::from(q.server_id),
        prl: PrlSet::from_prl(&q.prl),
        now: q.now4,
    }
}

fn o6_params(q: &Query) -> Dhcp4o6ReplyParams<'_> {
    Dhcp4o6ReplyParams {
        v6: V6ReplyParams {
            xid: q.xid6,
            requestor_duid: &q.requestor,
            server_duid: &q.server,
            oro: OroSet::from_codes(q.oro.iter().copied()),
            base_time: q.base_time,
            reply_status: q
                .status
                .as_ref()
                .map(|(code, text)| V6Status { code: *code, text }),
            now: q.now6,
        },
        v4: v4_params(q),
        br: q.br.map(Ipv6Addr::from),
        bind_prefix: q.bind_prefix.map(|(l, p)| (l, Ipv6Addr::from(p))),
    }
}

/// A buffer holding `pre` octets already, with room up to `limit`.
fn buffer(pre: usize, cap: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(cap.max(pre));
    b.extend((0..pre).map(|i| i as u8));
    b
}

/// Writes `rec` both ways into equal buffers and checks that result and contents agree.
fn same(
    fast: &BindingEncoder<'_>,
    reference: &Reply<'_>,
    rec: &V4Record<'_>,
    pre: usize,
    limit: usize,
) -> Result<(), TestCaseError> {
    let mut a = buffer(pre, 70_000);
    let mut b = buffer(pre, 70_000);
    let ra = fast.write(&mut StreamWriter::with_limit(&mut a, limit), rec);
    let rb = StreamWriter::with_limit(&mut b, limit).write(reference);
    prop_assert_eq!(&ra, &rb);
    prop_assert_eq!(a, b);
    Ok(())
}

/// Limits: unbounded, and around the message's own size (fits exactly, one octet short).
fn limits(reference: &Reply<'_>, pre: usize) -> Vec<usize> {
    let mut l = vec![70_000, pre];
    if let Ok(n) = reference.frame_len() {
        l.extend([pre + n, pre + n - 1, pre + n / 2]);
    }
    l
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// DHCPv4 binding messages: the template path writes what the reference writes.
    #[test]
    fn v4_template_equals_reference(r in rec(), q in query(), pre in 0usize..64) {
        let rec = record(&r);
        let p = v4_params(&q);
        let fast = BindingEncoder::v4(&p, q.first);
        let reference = Reply::V4Binding { p: &p, rec: &rec, first: q.first };
        for limit in limits(&reference, pre) {
            same(&fast, &reference, &rec, pre, limit)?;
        }
    }

    /// DHCP4o6 binding messages: the template path writes what the reference writes.
    #[test]
    fn o6_template_equals_reference(r in rec(), q in query(), pre in 0usize..64) {
        let rec = record(&r);
        let p = o6_params(&q);
        let fast = BindingEncoder::dhcp4o6(&p, q.first);
        let reference = Reply::O6Binding { p: &p, rec: &rec, first: q.first };
        for limit in limits(&reference, pre) {
            same(&fast, &reference, &rec, pre, limit)?;
        }
    }

    /// One encoder, many records (the way a scan uses it): each equals the reference.
    #[test]
    fn one_template_many_records(rs in proptest::collection::vec(rec(), 1..8), q in query()) {
        let p = o6_params(&q);
        let fast6 = BindingEncoder::dhcp4o6(&p, q.first);
        let fast4 = BindingEncoder::v4(&p.v4, q.first);
        let (mut a, mut b) = (buffer(0, 70_000), buffer(0, 70_000));
        for r in &rs {
            let rec = record(r);
            let ra = fast6.write(&mut StreamWriter::new(&mut a), &rec);
            let rb = StreamWriter::new(&mut b).write(&Reply::O6Binding { p: &p, rec: &rec, first: q.first });
            prop_assert_eq!(ra, rb);
            let ra = fast4.write(&mut StreamWriter::new(&mut a), &rec);
            let rb = StreamWriter::new(&mut b).write(&Reply::V4Binding { p: &p.v4, rec: &rec, first: q.first });
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a, b);
    }
}

/// Messages over 65535 octets go through the reference and fail the same way.
#[test]
fn too_long_is_the_references_error() {
    let q = Query {
        xid6: 1,
        xid4: 2,
        requestor: vec![1; 10],
        server: vec![2; 10],
        oro: vec![v6opt::LQ_RELAY_DATA, v6opt::S46_V4V6BIND],
        base_time: true,
        status: None,
        now6: NOW,
        now4: NOW,
        server_id: 1,
        prl: vec![],
        br: None,
        bind_prefix: None,
        first: false,
    };
    let p = o6_params(&q);
    let fast6 = BindingEncoder::dhcp4o6(&p, false);
    let fast4 = BindingEncoder::v4(&p.v4, false);
    for n in [65_000usize, 65_300, 65_600, 70_000] {
        let mut cid = vec![255, 0, 0, 0, 1];
        cid.resize(n, 7);
        let relay = RelayRecord {
            hop_count: 0,
            link_address: Ipv6Addr::LOCALHOST,
            peer_address: Ipv6Addr::LOCALHOST,
            interface_id: Some(&cid[..n.min(65_535)]),
            relay_id: None,
            remote_id: None,
        };
        let mut rec = V4Record::available(Ipv4Addr::new(192, 0, 2, 1));
        rec.client_id = Some(&cid);
        for with_relay in [false, true] {
            rec.v6 = with_relay.then_some(V6Context {
                client_src: Ipv6Addr::LOCALHOST,
                link: Ipv6Addr::LOCALHOST,
                relay: Some(relay),
            });
            let mut a = buffer(3, 200_000);
            let mut b = buffer(3, 200_000);
            let ra = fast6.write(&mut StreamWriter::new(&mut a), &rec);
            let rb = StreamWriter::new(&mut b).write(&Reply::O6Binding {
                p: &p,
                rec: &rec,
                first: false,
            });
            assert_eq!(ra, rb);
            assert!(matches!(ra, Err(EncodeError::TooLong { .. })), "{ra:?}");
            assert_eq!(a, b);
            let ra = fast4.write(&mut StreamWriter::new(&mut a), &rec);
            let rb = StreamWriter::new(&mut b).write(&Reply::V4Binding {
                p: &p.v4,
                rec: &rec,
                first: false,
            });
            assert_eq!(ra, rb);
            assert_eq!(a, b);
        }
    }
}
