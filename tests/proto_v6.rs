//! DHCPv6 codec: golden vectors from the RFC layouts, the worked DHCP4o6 query of
//! codepoints-and-scenarios.md §4.4, length rules, round trips, robustness against random and
//! truncated input, and a cross-check against dhcproto 0.15.

use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::proto::codes::{query_type, v6msg, v6opt};
use leasequery::proto::framing::{decode_frame, encode_frame, Frame};
use leasequery::proto::record::PortParams;
use leasequery::proto::v6::{
    AnyView, Message, MessageView, OptionsView, RelayMessage, RelayView, V6Option, MAX_OPTION_DEPTH,
};
use leasequery::proto::{DecodeError, EncodeError};
use proptest::prelude::*;

fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test hex")
}

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const DUID_LL: &str = "00030001aabbccddeeff";
const RELAY_DUID: &str = "00030001020000000001";

fn port(offset: u8, psid_len: u8, psid: u16) -> PortParams {
    PortParams {
        offset,
        psid_len,
        psid,
    }
}

/// (value, exact wire bytes) for every typed option, hand-written from the RFC layouts.
fn golden_options() -> Vec<(V6Option, Vec<u8>)> {
    use V6Option::*;
    let iaaddr = IaAddr {
        addr: a6("2001:db8::1"),
        preferred: 7200,
        valid: 10800,
        options: vec![StatusCode {
            code: 0,
            message: "ok".into(),
        }],
    };
    let iaaddr_hex =
        "00050020 20010db8000000000000000000000001 00001c20 00002a30 000d0004 0000 6f6b";
    let iaprefix = IaPrefix {
        preferred: 100,
        valid: 200,
        prefix_len: 56,
        prefix: a6("2001:db8:0:100::"),
        options: vec![],
    };
    let iaprefix_hex = "001a0019 00000064 000000c8 38 20010db8000001000000000000000000";
    let bind40 = S46V4V6Bind {
        ipv4: Ipv4Addr::new(192, 0, 2, 2),
        prefix_len: 40,
        prefix: a6("2001:db8:aa00::"),
        options: vec![],
    };
    let bind40_hex = "005c000a c0000202 28 20010db8aa";
    let br_hex = "005a0010 20010db800000000000000000000000b";
    vec![
        (ClientId(h(DUID_LL)), h(&format!("0001000a {DUID_LL}"))),
        (
            ServerId(h("000100012a2b2c2d020000000001")),
            h("0002000e 00010001 2a2b2c2d 020000000001"),
        ),
        (
            IaNa {
                iaid: 1,
                t1: 3600,
                t2: 5400,
                options: vec![iaaddr.clone()],
            },
            h(&format!("00030030 00000001 00000e10 00001518 {iaaddr_hex}")),
        ),
        (iaaddr, h(iaaddr_hex)),
        (Oro(vec![92, 46]), h("00060004 005c 002e")),
        (Oro(vec![]), h("00060000")),
        (RelayMsg(h("0eabcdef")), h("00090004 0eabcdef")),
        (
            StatusCode {
                code: 11,
                message: "done".into(),
            },
            h("000d0006 000b 646f6e65"),
        ),
        (
            StatusCode {
                code: 13,
                message: String::new(),
            },
            h("000d0002 000d"),
        ),
        (InterfaceId(b"eth0".to_vec()), h("00120004 65746830")),
        (
            IaPd {
                iaid: 7,
                t1: 0,
                t2: 0,
                options: vec![iaprefix.clone()],
            },
            h(&format!(
                "00190029 00000007 00000000 00000000 {iaprefix_hex}"
            )),
        ),
        (iaprefix, h(iaprefix_hex)),
        (
            RemoteId {
                enterprise: 4491,
                remote_id: b"ab".to_vec(),
            },
            h("00250006 0000118b 6162"),
        ),
        (
            LqQuery {
                query_type: query_type::BY_RELAY_ID,
                link_address: Ipv6Addr::UNSPECIFIED,
                options: vec![RelayId(h(RELAY_DUID)), Oro(vec![92])],
            },
            h(&format!(
                "002c0025 03 {} 0035000a {RELAY_DUID} 00060002 005c",
                "00".repeat(16)
            )),
        ),
        (
            ClientData(vec![ClientId(h(DUID_LL)), CltTime(60)]),
            h(&format!("002d0016 0001000a {DUID_LL} 002e0004 0000003c")),
        ),
        (CltTime(60), h("002e0004 0000003c")),
        (
            LqRelayData {
                peer_address: a6("fe80::1"),
                relay_message: h("0c00 20010db8000000000000000000000001
                                  fe800000000000000000000000000001 00120001 61"),
            },
            h(
                "002f0037 fe800000000000000000000000000001 0c00 20010db8000000000000000000000001
               fe800000000000000000000000000001 00120001 61",
            ),
        ),
        (
            LqClientLink(vec![a6("2001:db8::1"), a6("2001:db8:1::1")]),
            h("00300020 20010db8000000000000000000000001 20010db8000100000000000000000001"),
        ),
        (LqClientLink(vec![]), h("00300000")),
        (RelayId(h(RELAY_DUID)), h(&format!("0035000a {RELAY_DUID}"))),
        (Dhcpv4Msg(h("01020304")), h("00570004 01020304")),
        (
            Dhcp4oDhcp6Server(vec![a6("2001:db8::547")]),
            h("00580010 20010db8000000000000000000000547"),
        ),
        (S46Br(a6("2001:db8::b")), h(br_hex)),
        (
            S46V4V6Bind {
                ipv4: Ipv4Addr::new(192, 0, 2, 1),
                prefix_len: 128,
                prefix: a6("2001:db8::2"),
                options: vec![S46PortParams(port(0, 4, 3))],
            },
            h("005c001d c0000201 80 20010db8000000000000000000000002 005d0004 00 04 3000"),
        ),
        (bind40.clone(), h(bind40_hex)),
        (S46PortParams(port(6, 8, 0x34)), h("005d0004 06 08 3400")),
        (
            S46ContLw(vec![S46Br(a6("2001:db8::b")), bind40]),
            h(&format!("00600022 {br_hex} {bind40_hex}")),
        ),
        (LqBaseTime(757_382_400), h("00640004 2d24bd00")),
        (LqStartTime(1), h("00650004 00000001")),
        (LqEndTime(u32::MAX), h("00660004 ffffffff")),
        (
            S46BindIpv6Prefix {
                prefix_len: 64,
                prefix: a6("2001:db8:1:2::"),
            },
            h("00890009 40 20010db800010002"),
        ),
        (
            S46BindIpv6Prefix {
                prefix_len: 0,
                prefix: Ipv6Addr::UNSPECIFIED,
            },
            h("00890001 00"),
        ),
        (
            V6Option::Unknown {
                code: 7,
                data: vec![255],
            },
            h("00070001 ff"),
        ),
    ]
}

#[test]
fn golden_options_both_ways() {
    for (value, bytes) in golden_options() {
        let mut out = Vec::new();
        value.encode(&mut out).unwrap();
        assert_eq!(hex::encode(&out), hex::encode(&bytes), "encode {value:?}");
        assert_eq!(value.encoded_len(), bytes.len(), "len {value:?}");
        let view = OptionsView::new(&bytes).unwrap();
        let raw = view.iter().next().unwrap();
        assert_eq!(raw.code, value.code());
        assert_eq!(
            raw.typed().unwrap(),
            value,
            "decode {}",
            hex::encode(&bytes)
        );
    }
}

/// One message of each type, hand-written.
fn golden_messages() -> Vec<(Message, Vec<u8>)> {
    use V6Option::*;
    let m = |msg_type, xid, options| Message {
        msg_type,
        xid,
        options,
    };
    let status = |code: u16, text: &str| StatusCode {
        code,
        message: text.into(),
    };
    vec![
        (
            m(v6msg::REPLY, 0x000102, vec![status(15, "")]),
            h("07 000102 000d0002 000f"),
        ),
        (
            m(
                v6msg::LEASEQUERY,
                0xabcdef,
                vec![
                    ClientId(h(DUID_LL)),
                    LqQuery {
                        query_type: query_type::BY_ADDRESS,
                        link_address: Ipv6Addr::UNSPECIFIED,
                        options: vec![IaAddr {
                            addr: a6("2001:db8::5"),
                            preferred: 0,
                            valid: 0,
                            options: vec![],
                        }],
                    },
                ],
            ),
            h(&format!(
                "0e abcdef 0001000a {DUID_LL} 002c002d 01 {} 00050018 20010db8000000000000000000000005 00000000 00000000",
                "00".repeat(16)
            )),
        ),
        (
            m(
                v6msg::LEASEQUERY_REPLY,
                0xabcdef,
                vec![
                    ClientId(h(DUID_LL)),
                    ServerId(h("00030001 0a0b0c0d0e0f")),
                    ClientData(vec![ClientId(h("0003000111")), CltTime(5)]),
                ],
            ),
            h(&format!(
                "0f abcdef 0001000a {DUID_LL} 0002000a 00030001 0a0b0c0d0e0f 002d0011 00010005 0003000111 002e0004 00000005"
            )),
        ),
        (m(v6msg::LEASEQUERY_DONE, 0xabcdef, vec![]), h("10 abcdef")),
        (
            m(v6msg::LEASEQUERY_DATA, 0x000001, vec![ClientData(vec![CltTime(0)])]),
            h("11 000001 002d0008 002e0004 00000000"),
        ),
        (
            m(v6msg::DHCPV4_QUERY, 0x800000, vec![Dhcpv4Msg(h("0101"))]),
            h("14 800000 00570002 0101"),
        ),
        (
            m(v6msg::DHCPV4_RESPONSE, 0, vec![Dhcpv4Msg(h("0202"))]),
            h("15 000000 00570002 0202"),
        ),
        (
            m(
                v6msg::ACTIVELEASEQUERY,
                0x123456,
                vec![ClientId(h(DUID_LL)), LqStartTime(757_382_400), Oro(vec![46])],
            ),
            h(&format!("16 123456 0001000a {DUID_LL} 00650004 2d24bd00 00060002 002e")),
        ),
        (m(v6msg::STARTTLS, 0x000007, vec![ClientId(h(DUID_LL))]), h(&format!("17 000007 0001000a {DUID_LL}"))),
    ]
}

#[test]
fn golden_messages_both_ways() {
    for (msg, bytes) in golden_messages() {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(
            hex::encode(&out),
            hex::encode(&bytes),
            "encode type {}",
            msg.msg_type
        );
        assert_eq!(msg.encoded_len(), bytes.len());
        assert_eq!(Message::decode(&bytes).unwrap(), msg);
        let view = MessageView::parse(&bytes).unwrap();
        assert_eq!((view.msg_type, view.xid), (msg.msg_type, msg.xid));
        assert_eq!(view.options().iter().count(), msg.options.len());
    }
}

/// RELAY-FORW wrapping a LEASEQUERY, and a RELAY-REPL wrapping a RELAY-REPL wrapping a REPLY.
#[test]
fn golden_relay_messages() {
    let lq = h("0e abcdef 00010004 00030001");
    let forw = RelayMessage {
        msg_type: v6msg::RELAY_FORW,
        hop_count: 0,
        link_address: a6("2001:db8::1"),
        peer_address: a6("fe80::2"),
        options: vec![
            V6Option::InterfaceId(b"p1".to_vec()),
            V6Option::RelayMsg(lq.clone()),
        ],
    };
    let forw_bytes = h(
        "0c 00 20010db8000000000000000000000001 fe800000000000000000000000000002
                        00120002 7031 0009000c 0eabcdef0001000400030001",
    );
    let mut out = Vec::new();
    forw.encode(&mut out).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&forw_bytes));
    assert_eq!(forw.encoded_len(), forw_bytes.len());
    assert_eq!(RelayMessage::decode(&forw_bytes).unwrap(), forw);
    let any = AnyView::parse(&forw_bytes).unwrap();
    assert_eq!(any.msg_type(), v6msg::RELAY_FORW);
    let inner = any.innermost().unwrap();
    assert_eq!((inner.msg_type, inner.xid), (v6msg::LEASEQUERY, 0xabcdef));
    assert_eq!(
        inner.options().get(v6opt::CLIENTID).unwrap().data,
        &[0, 3, 0, 1]
    );

    let reply = h("07 000102");
    let inner_repl = RelayMessage {
        msg_type: v6msg::RELAY_REPL,
        hop_count: 0,
        link_address: Ipv6Addr::UNSPECIFIED,
        peer_address: a6("fe80::3"),
        options: vec![V6Option::RelayMsg(reply)],
    };
    let mut inner_bytes = Vec::new();
    inner_repl.encode(&mut inner_bytes).unwrap();
    assert_eq!(
        hex::encode(&inner_bytes),
        hex::encode(h(&format!(
            "0d 00 {} fe800000000000000000000000000003 00090004 07000102",
            "00".repeat(16)
        )))
    );
    let outer = RelayMessage {
        msg_type: v6msg::RELAY_REPL,
        hop_count: 1,
        link_address: a6("2001:db8::9"),
        peer_address: a6("fe80::4"),
        options: vec![V6Option::RelayMsg(inner_bytes.clone())],
    };
    let mut outer_bytes = Vec::new();
    outer.encode(&mut outer_bytes).unwrap();
    assert_eq!(outer_bytes.len(), 34 + 4 + 38 + 4);
    let AnyView::Relay(r) = AnyView::parse(&outer_bytes).unwrap() else {
        panic!("relay")
    };
    assert_eq!(
        (r.hop_count, r.link_address, r.peer_address),
        (1, a6("2001:db8::9"), a6("fe80::4"))
    );
    let AnyView::Relay(r2) = r.relay_msg().unwrap() else {
        panic!("inner relay")
    };
    assert_eq!(r2.peer_address, a6("fe80::3"));
    assert_eq!(
        AnyView::parse(&outer_bytes)
            .unwrap()
            .innermost()
            .unwrap()
            .msg_type,
        v6msg::REPLY
    );
}

/// Wraps `inner` in `n` RELAY-FORW envelopes.
fn nest_relays(inner: Vec<u8>, n: usize) -> Vec<u8> {
    (0..n).fold(inner, |msg, i| {
        let relay = RelayMessage {
            msg_type: v6msg::RELAY_FORW,
            hop_count: i as u8,
            link_address: Ipv6Addr::UNSPECIFIED,
            peer_address: Ipv6Addr::LOCALHOST,
            options: vec![V6Option::RelayMsg(msg)],
        };
        let mut out = Vec::new();
        relay.encode(&mut out).unwrap();
        out
    })
}

#[test]
fn relay_depth_limit() {
    let lq = h("0e000001");
    let ok = nest_relays(lq.clone(), 9);
    assert_eq!(
        AnyView::parse(&ok).unwrap().innermost().unwrap().msg_type,
        v6msg::LEASEQUERY
    );
    let deep = nest_relays(lq, 10);
    assert_eq!(
        AnyView::parse(&deep).unwrap().innermost(),
        Err(DecodeError::TooDeep)
    );
    // A relay without RELAY_MSG has no innermost message.
    let empty = h(&format!("0c00 {}", "00".repeat(32)));
    let err = DecodeError::BadOptionValue {
        code: v6opt::RELAY_MSG,
    };
    assert_eq!(AnyView::parse(&empty).unwrap().innermost(), Err(err));
    // Formats must match the type.
    assert_eq!(
        MessageView::parse(&empty),
        Err(DecodeError::UnexpectedMessageType(12))
    );
    assert_eq!(
        RelayView::parse(&h(&format!("0e00 {}", "00".repeat(32)))),
        Err(DecodeError::UnexpectedMessageType(14))
    );
}

#[test]
fn option_nesting_limit() {
    // CLIENT_DATA nested MAX_OPTION_DEPTH times decodes; one more level is TooDeep.
    let nest = |n: usize| {
        (0..n).fold(V6Option::CltTime(1), |inner, _| {
            V6Option::ClientData(vec![inner])
        })
    };
    let encode = |o: &V6Option| {
        let mut out = Vec::new();
        o.encode(&mut out).unwrap();
        out
    };
    let ok = nest(MAX_OPTION_DEPTH as usize);
    let bytes = encode(&ok);
    assert_eq!(
        OptionsView::new(&bytes)
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .typed()
            .unwrap(),
        ok
    );
    let bytes = encode(&nest(MAX_OPTION_DEPTH as usize + 1));
    let raw = OptionsView::new(&bytes).unwrap().iter().next().unwrap();
    assert_eq!(raw.typed(), Err(DecodeError::TooDeep));
}

/// The worked DHCP4o6 bulk query (codepoints-and-scenarios.md §4.4), framed.
fn worked_4o6_frame() -> Vec<u8> {
    let zeros = |n: usize| "00".repeat(n);
    let v4 = format!(
        "01000000 11223344 0000 0000 {} {} {} {} 63825363 35010e 37025b9f 520c 0c0a {RELAY_DUID} ff",
        zeros(16),
        zeros(16),
        zeros(64),
        zeros(128)
    );
    h(&format!(
        "0145 0e abcdef 0001000a {DUID_LL} 002c0025 03 {} 0035000a {RELAY_DUID} 00060002 005c 00570106 {v4}",
        zeros(16)
    ))
}

#[test]
fn worked_4o6_query_decodes_and_reencodes() {
    let frame = worked_4o6_frame();
    assert_eq!(frame.len(), 327);
    let Ok(Frame::Complete { msg, consumed }) = decode_frame(&frame) else {
        panic!("frame")
    };
    assert_eq!(consumed, 327);

    // Borrowed view, hot-path accessors.
    let view = MessageView::parse(msg).unwrap();
    assert_eq!((view.msg_type, view.xid), (v6msg::LEASEQUERY, 0xabcdef));
    let codes: Vec<u16> = view.options().iter().map(|o| o.code).collect();
    assert_eq!(codes, [v6opt::CLIENTID, v6opt::LQ_QUERY, v6opt::DHCPV4_MSG]);
    let q = view
        .options()
        .get(v6opt::LQ_QUERY)
        .unwrap()
        .lq_query()
        .unwrap();
    assert_eq!(
        (q.query_type, q.link_address),
        (query_type::BY_RELAY_ID, Ipv6Addr::UNSPECIFIED)
    );
    assert_eq!(
        q.options.get(v6opt::RELAY_ID).unwrap().data,
        h(RELAY_DUID).as_slice()
    );
    let oro: Vec<u16> = q.options.get(v6opt::ORO).unwrap().oro().unwrap().collect();
    assert_eq!(oro, [v6opt::S46_V4V6BIND]);
    let v4 = view.options().get(v6opt::DHCPV4_MSG).unwrap().data;
    assert_eq!(v4.len(), 262);
    assert_eq!(&v4[236..240], &[99, 130, 83, 99]);

    // Owned form.
    let decoded = Message::decode(msg).unwrap();
    let expected = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 0xabcdef,
        options: vec![
            V6Option::ClientId(h(DUID_LL)),
            V6Option::LqQuery {
                query_type: 3,
                link_address: Ipv6Addr::UNSPECIFIED,
                options: vec![V6Option::RelayId(h(RELAY_DUID)), V6Option::Oro(vec![92])],
            },
            V6Option::Dhcpv4Msg(v4.to_vec()),
        ],
    };
    assert_eq!(decoded, expected);
    let mut out = Vec::new();
    decoded.encode(&mut out).unwrap();
    let mut framed = Vec::new();
    encode_frame(&out, &mut framed).unwrap();
    assert_eq!(framed, frame);
}

#[test]
fn truncated_worked_query_never_panics() {
    let frame = worked_4o6_frame();
    for k in 0..frame.len() {
        assert_eq!(
            decode_frame(&frame[..k]),
            Ok(Frame::NeedMore),
            "frame cut at {k}"
        );
    }
    let msg = &frame[2..];
    for k in 0..msg.len() {
        let cut = &msg[..k];
        // A cut on an option boundary is a shorter valid message; anywhere else an error.
        match Message::decode(cut) {
            Ok(m) => {
                let mut out = Vec::new();
                m.encode(&mut out).unwrap();
                assert_eq!(out, cut, "cut at {k}");
                assert!([4, 18, 59].contains(&k), "unexpected valid cut at {k}");
            }
            Err(DecodeError::Truncated { .. }) => {}
            Err(e) => panic!("cut at {k}: {e:?}"),
        }
    }
}

/// Every length rule of codepoints-and-scenarios.md §1.2, violated.
#[test]
fn malformed_options_are_errors() {
    let len = |code, len| DecodeError::BadOptionLength { code, len };
    let val = |code| DecodeError::BadOptionValue { code };
    let cases: Vec<(&str, DecodeError)> = vec![
        ("00010001 00", len(1, 1)),
        ("00020000", len(2, 0)),
        ("0003000b 0000000000000000000000", len(3, 11)),
        (
            "00050017 0000000000000000000000000000000000000000000000",
            len(5, 23),
        ),
        ("00060003 000100", len(6, 3)),
        ("000d0001 00", len(13, 1)),
        ("000d0004 0000 ff fe", val(13)),
        ("0019000b 0000000000000000000000", len(25, 11)),
        (
            "001a0018 0000000000000000 40 000000000000000000000000000000",
            len(26, 24),
        ),
        (
            "001a0019 0000000000000000 81 00000000000000000000000000000000",
            val(26),
        ),
        ("00250003 000000", len(37, 3)),
        ("002c0010 03 000000000000000000000000000000", len(44, 16)),
        ("002e0003 000000", len(46, 3)),
        ("002e0005 0000000000", len(46, 5)),
        ("002f000f 000000000000000000000000000000", len(47, 15)),
        ("00300011 0000000000000000000000000000000000", len(48, 17)),
        ("00350001 00", len(53, 1)),
        ("0058000f 000000000000000000000000000000", len(88, 15)),
        ("005a000f 000000000000000000000000000000", len(90, 15)),
        ("005a0011 0000000000000000000000000000000000", len(90, 17)),
        ("005c0004 c0000201", len(92, 4)),
        ("005c0006 c0000201 10 20", len(92, 6)),
        ("005c0005 c0000201 81", val(92)),
        ("005d0003 000400", len(93, 3)),
        ("005d0005 0004300000", len(93, 5)),
        ("005d0004 00 04 3001", val(93)),
        ("005d0004 10 00 0000", val(93)),
        ("00640003 000000", len(100, 3)),
        ("00650005 0000000000", len(101, 5)),
        ("00660000", len(102, 0)),
        ("00890000", len(137, 0)),
        ("00890002 10 20", len(137, 2)),
        ("00890004 10 200102", len(137, 4)),
        ("00890001 81", val(137)),
        // Nested rules apply inside containers.
        ("002d0007 002e0003 000000", len(46, 3)),
        ("00600007 005d0003 000000", len(93, 3)),
    ];
    for (opt, err) in cases {
        let bytes = h(&format!("0e000001 {opt}"));
        assert_eq!(Message::decode(&bytes), Err(err), "{opt}");
        // The view still walks the list: the TLV framing itself is fine.
        assert!(MessageView::parse(&bytes).is_ok(), "{opt}");
    }
}

#[test]
fn truncated_tlvs_and_headers() {
    assert_eq!(
        Message::decode(&h("0e00")),
        Err(DecodeError::Truncated { at: 0, needed: 2 })
    );
    assert_eq!(
        Message::decode(&[]),
        Err(DecodeError::Truncated { at: 0, needed: 4 })
    );
    assert_eq!(
        MessageView::parse(&h("0e000001 0001")),
        Err(DecodeError::Truncated { at: 4, needed: 2 })
    );
    assert_eq!(
        MessageView::parse(&h("0e000001 00010005 0102")),
        Err(DecodeError::Truncated { at: 8, needed: 3 })
    );
    assert_eq!(
        RelayView::parse(&h("0c00 0000")),
        Err(DecodeError::Truncated { at: 0, needed: 30 })
    );
    // Nested lists are walked too.
    assert_eq!(
        Message::decode(&h("0e000001 002d0005 002e0004 00")),
        Err(DecodeError::Truncated { at: 4, needed: 3 })
    );
}

#[test]
fn accessors_check_their_option() {
    let bytes = h("002e0004 0000003c 00250006 0000118b 6162 00060003 000100 002c0005 0300000000");
    let opts = OptionsView::new(&bytes).unwrap();
    let clt = opts.get(46).unwrap();
    assert_eq!(clt.u32_value(), Ok(60));
    assert_eq!(clt.nested(), Err(DecodeError::BadOptionValue { code: 46 }));
    assert_eq!(
        opts.get(37).unwrap().u32_value(),
        Err(DecodeError::BadOptionLength { code: 37, len: 6 })
    );
    assert!(opts.get(6).unwrap().oro().is_err());
    assert_eq!(
        opts.get(44).unwrap().lq_query(),
        Err(DecodeError::BadOptionLength { code: 44, len: 5 })
    );
    assert_eq!(
        clt.lq_query(),
        Err(DecodeError::BadOptionValue { code: 46 })
    );
    assert!(opts.get(9).is_none());
    // Repeats are kept in order; get() is the first.
    let rep = h("00120001 61 00010002 0001 00120001 62");
    let opts = OptionsView::new(&rep).unwrap();
    let ids: Vec<&[u8]> = opts.all(18).map(|o| o.data).collect();
    assert_eq!(ids, [b"a", b"b"]);
    assert_eq!(opts.get(18).unwrap().data, b"a");
    // nested() on S46_V4V6BIND skips its variable header.
    let bind = h("005c000f c0000201 10 2001 005d0004 0004 3000");
    let raw = OptionsView::new(&bind).unwrap().iter().next().unwrap();
    let inner: Vec<u16> = raw.nested().unwrap().iter().map(|o| o.code).collect();
    assert_eq!(inner, [93]);
}

#[test]
fn prefix_bits_beyond_length_are_zeroed() {
    // /12 with bits set past bit 12: decoded prefix is masked.
    let bytes = h("00890003 0c 2fff");
    let raw = OptionsView::new(&bytes).unwrap().iter().next().unwrap();
    let masked = V6Option::S46BindIpv6Prefix {
        prefix_len: 12,
        prefix: a6("2ff0::"),
    };
    assert_eq!(raw.typed().unwrap(), masked);
    // And encode masks an unmasked value.
    let unmasked = V6Option::S46BindIpv6Prefix {
        prefix_len: 12,
        prefix: a6("2fff:ffff::"),
    };
    let mut out = Vec::new();
    unmasked.encode(&mut out).unwrap();
    assert_eq!(out, h("00890003 0c 2ff0"));
}

#[test]
fn encode_errors_write_nothing() {
    let too_long = V6Option::ClientData(vec![V6Option::Dhcpv4Msg(vec![0; 65532])]);
    let mut out = vec![0xaa];
    assert_eq!(
        too_long.encode(&mut out),
        Err(EncodeError::TooLong {
            len: 65536,
            max: 65535
        })
    );
    assert_eq!(out, [0xaa]);
    let msg = Message {
        msg_type: v6msg::LEASEQUERY_DATA,
        xid: 1,
        options: vec![V6Option::CltTime(1), V6Option::Dhcpv4Msg(vec![0; 65536])],
    };
    assert_eq!(
        msg.encode(&mut out),
        Err(EncodeError::TooLong {
            len: 65536,
            max: 65535
        })
    );
    assert_eq!(out, [0xaa]);
    let wide = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 0x0100_0000,
        options: vec![],
    };
    assert!(matches!(
        wide.encode(&mut out),
        Err(EncodeError::Invalid(_))
    ));
    let bad_prefix = V6Option::S46BindIpv6Prefix {
        prefix_len: 129,
        prefix: Ipv6Addr::UNSPECIFIED,
    };
    assert!(matches!(
        bad_prefix.encode(&mut out),
        Err(EncodeError::Invalid(_))
    ));
    let bad_port = V6Option::S46PortParams(port(0, 4, 16));
    assert!(matches!(
        bad_port.encode(&mut out),
        Err(EncodeError::Invalid(_))
    ));
    let relay_type = Message {
        msg_type: v6msg::RELAY_FORW,
        xid: 0,
        options: vec![],
    };
    assert!(matches!(
        relay_type.encode(&mut out),
        Err(EncodeError::Invalid(_))
    ));
    assert_eq!(out, [0xaa]);
    // The largest payload still fits.
    let max = V6Option::Dhcpv4Msg(vec![0; 65535]);
    max.encode(&mut out).unwrap();
    assert_eq!(&out[1..5], &[0, 87, 0xff, 0xff]);
}

// ---------- proptest ----------

fn masked(prefix_len: u8, bits: u128) -> Ipv6Addr {
    let keep = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv6Addr::from(bits & keep)
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), min..max)
}

fn addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn port_params() -> impl Strategy<Value = PortParams> {
    (0u8..=15)
        .prop_flat_map(|offset| (Just(offset), 0u8..=16 - offset))
        .prop_flat_map(|(offset, psid_len)| {
            let max = if psid_len == 16 {
                u16::MAX
            } else {
                (1u16 << psid_len) - 1
            };
            (Just(offset), Just(psid_len), 0..=max)
        })
        .prop_map(|(offset, psid_len, psid)| port(offset, psid_len, psid))
}

/// Options as a generator. `relay_msg`: include OPTION_RELAY_MSG with arbitrary payloads
/// (dhcproto would try to parse those as relay messages).
fn option(relay_msg: bool) -> impl Strategy<Value = V6Option> {
    use V6Option::*;
    let leaf = prop_oneof![
        bytes(2, 20).prop_map(ClientId),
        bytes(2, 20).prop_map(ServerId),
        prop::collection::vec(any::<u16>(), 0..5).prop_map(Oro),
        bytes(0, 20).prop_map(move |b| if relay_msg {
            RelayMsg(b)
        } else {
            InterfaceId(b)
        }),
        (any::<u16>(), "[a-zA-Z é]{0,12}").prop_map(|(code, message)| StatusCode { code, message }),
        bytes(0, 10).prop_map(InterfaceId),
        (any::<u32>(), bytes(0, 10)).prop_map(|(enterprise, remote_id)| RemoteId {
            enterprise,
            remote_id
        }),
        any::<u32>().prop_map(CltTime),
        (addr(), bytes(0, 40)).prop_map(|(peer_address, relay_message)| LqRelayData {
            peer_address,
            relay_message
        }),
        prop::collection::vec(addr(), 0..3).prop_map(LqClientLink),
        bytes(2, 20).prop_map(RelayId),
        bytes(0, 300).prop_map(Dhcpv4Msg),
        prop::collection::vec(addr(), 0..3).prop_map(Dhcp4oDhcp6Server),
        addr().prop_map(S46Br),
        port_params().prop_map(S46PortParams),
        any::<u32>().prop_map(LqBaseTime),
        any::<u32>().prop_map(LqStartTime),
        any::<u32>().prop_map(LqEndTime),
        (0u8..=128, any::<u128>()).prop_map(|(prefix_len, bits)| S46BindIpv6Prefix {
            prefix_len,
            prefix: masked(prefix_len, bits)
        }),
        (150u16..=250, bytes(0, 10)).prop_map(|(code, data)| Unknown { code, data }),
    ];
    leaf.prop_recursive(3, 32, 3, |inner| {
        let list = prop::collection::vec(inner, 0..3);
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u32>(), list.clone()).prop_map(
                |(iaid, t1, t2, options)| IaNa {
                    iaid,
                    t1,
                    t2,
                    options
                }
            ),
            (addr(), any::<u32>(), any::<u32>(), list.clone()).prop_map(
                |(addr, preferred, valid, options)| IaAddr {
                    addr,
                    preferred,
                    valid,
                    options
                }
            ),
            (any::<u32>(), any::<u32>(), any::<u32>(), list.clone()).prop_map(
                |(iaid, t1, t2, options)| IaPd {
                    iaid,
                    t1,
                    t2,
                    options
                }
            ),
            (any::<u32>(), any::<u32>(), 0u8..=128, addr(), list.clone()).prop_map(
                |(preferred, valid, prefix_len, prefix, options)| IaPrefix {
                    preferred,
                    valid,
                    prefix_len,
                    prefix,
                    options
                }
            ),
            (1u8..=5, addr(), list.clone()).prop_map(|(query_type, link_address, options)| {
                LqQuery {
                    query_type,
                    link_address,
                    options,
                }
            }),
            list.clone().prop_map(ClientData),
            (any::<u32>(), 0u8..=128, any::<u128>(), list.clone()).prop_map(
                |(v4, prefix_len, bits, options)| S46V4V6Bind {
                    ipv4: Ipv4Addr::from(v4),
                    prefix_len,
                    prefix: masked(prefix_len, bits),
                    options
                }
            ),
            list.prop_map(S46ContLw),
        ]
    })
}

fn client_type() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![7u8, 14, 15, 16, 17, 20, 21, 22, 23])
}

fn message(relay_msg: bool) -> impl Strategy<Value = Message> {
    (
        client_type(),
        0u32..=0xff_ffff,
        prop::collection::vec(option(relay_msg), 0..6),
    )
        .prop_map(|(msg_type, xid, options)| Message {
            msg_type,
            xid,
            options,
        })
}

fn relay_message(relay_msg: bool) -> impl Strategy<Value = RelayMessage> {
    (
        prop::sample::select(vec![12u8, 13]),
        any::<u8>(),
        addr(),
        addr(),
        prop::collection::vec(option(relay_msg), 0..5),
    )
        .prop_map(
            |(msg_type, hop_count, link_address, peer_address, options)| RelayMessage {
                msg_type,
                hop_count,
                link_address,
                peer_address,
                options,
            },
        )
}

/// Top-level option codes as dhcproto sees them, sorted (a multiset).
fn dhcproto_codes<'a>(opts: impl Iterator<Item = &'a dhcproto::v6::DhcpOption>) -> Vec<u16> {
    let mut codes: Vec<u16> = opts
        .map(|o| u16::from(dhcproto::v6::OptionCode::from(o)))
        .collect();
    codes.sort_unstable();
    codes
}

fn our_codes(opts: &[V6Option]) -> Vec<u16> {
    let mut codes: Vec<u16> = opts.iter().map(V6Option::code).collect();
    codes.sort_unstable();
    codes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn message_roundtrip(msg in message(true)) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        prop_assert_eq!(out.len(), msg.encoded_len());
        prop_assert_eq!(Message::decode(&out).unwrap(), msg);
    }

    #[test]
    fn relay_roundtrip(msg in relay_message(true)) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        prop_assert_eq!(out.len(), msg.encoded_len());
        prop_assert_eq!(RelayMessage::decode(&out).unwrap(), msg);
    }

    /// A decoder we did not write agrees on type, xid and the multiset of option codes.
    #[test]
    fn dhcproto_agrees_on_messages(msg in message(false)) {
        use dhcproto::{Decodable, Decoder};
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        let theirs = dhcproto::v6::Message::decode(&mut Decoder::new(&out)).unwrap();
        prop_assert_eq!(u8::from(theirs.msg_type()), msg.msg_type);
        prop_assert_eq!(theirs.xid_num(), msg.xid);
        prop_assert_eq!(dhcproto_codes(theirs.opts().iter()), our_codes(&msg.options));
    }

    /// Relay messages whose options do not include RELAY_MSG (dhcproto would parse a client
    /// message inside it as a relay message).
    #[test]
    fn dhcproto_agrees_on_relays(msg in relay_message(false)) {
        use dhcproto::{Decodable, Decoder};
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        let theirs = dhcproto::v6::RelayMessage::decode(&mut Decoder::new(&out)).unwrap();
        prop_assert_eq!(u8::from(theirs.msg_type()), msg.msg_type);
        prop_assert_eq!(theirs.hop_count(), msg.hop_count);
        prop_assert_eq!(theirs.link_addr(), msg.link_address);
        prop_assert_eq!(theirs.peer_addr(), msg.peer_address);
        prop_assert_eq!(dhcproto_codes(theirs.opts().iter()), our_codes(&msg.options));
    }

    /// Random bytes: no decoder or accessor panics, and whatever decodes re-encodes to
    /// something that decodes to the same value.
    #[test]
    fn random_bytes_never_panic(buf in bytes(0, 200), ty in prop::option::of(client_type())) {
        let mut buf = buf;
        if let (Some(t), Some(first)) = (ty, buf.first_mut()) {
            *first = t;
        }
        if let Ok(m) = Message::decode(&buf) {
            let mut out = Vec::new();
            m.encode(&mut out).unwrap();
            prop_assert_eq!(Message::decode(&out).unwrap(), m);
        }
        if let Ok(r) = RelayMessage::decode(&buf) {
            let mut out = Vec::new();
            r.encode(&mut out).unwrap();
            prop_assert_eq!(RelayMessage::decode(&out).unwrap(), r);
        }
        if let Ok(any) = AnyView::parse(&buf) {
            let _ = any.innermost();
            for o in any.options().iter() {
                let _ = (o.typed(), o.u32_value(), o.lq_query());
                if let Ok(n) = o.nested() {
                    prop_assert!(n.as_bytes().len() <= o.data.len());
                }
                if let Ok(codes) = o.oro() {
                    prop_assert_eq!(codes.count(), o.data.len() / 2);
                }
            }
        }
        if let Ok(v) = OptionsView::new(&buf) {
            prop_assert_eq!(v.iter().map(|o| 4 + o.data.len()).sum::<usize>(), buf.len());
            v.iter().for_each(|o| drop(o.typed()));
        }
    }

    /// A valid message cut anywhere is an error, or (cut on an option boundary) the shorter
    /// message it still is; never a panic.
    #[test]
    fn truncated_messages(msg in message(true), at in any::<prop::sample::Index>()) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        let cut = &out[..at.index(out.len())];
        match Message::decode(cut) {
            Ok(m) => {
                let mut again = Vec::new();
                m.encode(&mut again).unwrap();
                prop_assert_eq!(again.as_slice(), cut);
                prop_assert!(msg.options.starts_with(&m.options));
            }
            Err(e) => prop_assert!(matches!(e, DecodeError::Truncated { .. }), "{:?}", e),
        }
    }

    /// Corrupting one octet of a valid message never panics.
    #[test]
    fn mutated_messages_never_panic(msg in message(true), at in any::<prop::sample::Index>(), v in any::<u8>()) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        let i = at.index(out.len());
        out[i] = v;
        if let Ok(m) = Message::decode(&out) {
            let mut again = Vec::new();
            m.encode(&mut again).unwrap();
            prop_assert_eq!(Message::decode(&again).unwrap(), m);
        }
    }
}

/// OPTION_DHCPV4_MSG (87) gives its nested DHCPv4 message, typed, through both forms.
#[test]
fn dhcpv4_msg_nests_a_typed_dhcpv4_message() {
    use leasequery::proto::codes::{v4msg, v6opt};
    use leasequery::proto::v4;
    let mut inner = v4::Message::new(1, v4msg::BULKLEASEQUERY, 0x1122_3344);
    inner
        .options
        .push(v4::V4Option::ParameterRequestList(vec![91, 159]));
    let mut bytes = Vec::new();
    inner.encode(&mut bytes).unwrap();
    let opt = leasequery::proto::v6::V6Option::Dhcpv4Msg(bytes.clone());
    assert_eq!(opt.dhcpv4_message(), Some(Ok(inner.clone())));
    assert_eq!(
        leasequery::proto::v6::V6Option::CltTime(5).dhcpv4_message(),
        None
    );
    let mut msg = vec![14, 0, 0, 1];
    msg.extend_from_slice(&v6opt::DHCPV4_MSG.to_be_bytes());
    msg.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    msg.extend_from_slice(&bytes);
    let view = leasequery::proto::v6::MessageView::parse(&msg).unwrap();
    let v4view = view
        .options()
        .get(v6opt::DHCPV4_MSG)
        .unwrap()
        .dhcpv4_view()
        .unwrap();
    assert_eq!(v4view.xid, 0x1122_3344);
    assert_eq!(v4view.message_type(), Some(v4msg::BULKLEASEQUERY));
    // A truncated nested message is an error, not a panic.
    let bad = leasequery::proto::v6::V6Option::Dhcpv4Msg(bytes[..100].to_vec());
    assert!(matches!(bad.dhcpv4_message(), Some(Err(_))));
}
