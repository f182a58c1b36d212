//! DHCPv4 codec: golden vectors for every typed option and for leasequery messages, RFC 3396 long
//! options, errors, property tests, and a cross-check against dhcproto 0.15.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use dhcproto::v4 as dp;
use dhcproto::Decodable;
use leasequery::proto::codes::{v4msg, v4opt, BOOTREPLY, BOOTREQUEST};
use leasequery::proto::record::PortParams;
use leasequery::proto::v4::{ClientId, Message, MessageView, RelayAgentInfo, V4Option, MIN_LEN};
use leasequery::proto::{DecodeError, EncodeError};
use proptest::prelude::*;

/// Hex with spaces allowed; `z<N>` stands for N zero octets (the wide BOOTP fields).
fn bytes(parts: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for part in parts {
        for word in part.split_whitespace() {
            match word.strip_prefix('z') {
                Some(n) => s.push_str(&"00".repeat(n.parse().unwrap())),
                None => s.push_str(word),
            }
        }
    }
    hex::decode(s).unwrap()
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    assert_eq!(out.len(), m.encoded_len());
    out
}

fn encode_option(o: &V4Option) -> Vec<u8> {
    let mut out = Vec::new();
    o.encode(&mut out).unwrap();
    assert_eq!(out.len(), o.encoded_len());
    out
}

const RELAY_DUID: &str = "00030001020000000001";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Every typed option with its hand-written wire form (RFC 2132, 3046, 4388, 4361, 6607, 6926,
/// 7618, 8539 layouts).
fn option_vectors() -> Vec<(V4Option, &'static str)> {
    use V4Option::*;
    vec![
        (SubnetMask(ip("255.255.255.0")), "01 04 ffffff00"),
        (RequestedIp(ip("192.0.2.10")), "32 04 c000020a"),
        (LeaseTime(3600), "33 04 00000e10"),
        (MessageType(13), "35 01 0d"),
        (ServerId(ip("192.0.2.1")), "36 04 c0000201"),
        (
            ParameterRequestList(vec![1, 91, 159, 109]),
            "37 04 01 5b 9f 6d",
        ),
        (ParameterRequestList(vec![]), "37 00"),
        (RenewalTime(1800), "3a 04 00000708"),
        (RebindingTime(3150), "3b 04 00000c4e"),
        (
            ClientId(leasequery::proto::v4::ClientId::Rfc4361 {
                iaid: 0x0102_0304,
                duid: hex::decode(RELAY_DUID).unwrap(),
            }),
            "3d 0f ff 01020304 00030001020000000001",
        ),
        (
            ClientId(leasequery::proto::v4::ClientId::Other {
                htype: 1,
                id: hex::decode("aabbccddeeff").unwrap(),
            }),
            "3d 07 01 aabbccddeeff",
        ),
        (
            RelayAgentInfo(leasequery::proto::v4::RelayAgentInfo {
                sub_options: vec![
                    (1, b"eth0".to_vec()),
                    (2, vec![0x0a, 0x0b]),
                    (12, hex::decode(RELAY_DUID).unwrap()),
                    (5, vec![192, 0, 2, 0]),
                ],
            }),
            "52 1c 01 04 65746830 02 02 0a0b 0c 0a 00030001020000000001 05 04 c0000200",
        ),
        (ClientLastTransactionTime(300), "5b 04 0000012c"),
        (
            AssociatedIp(vec![ip("192.0.2.10"), ip("192.0.2.11")]),
            "5c 08 c000020a c000020b",
        ),
        (
            Dhcp4o6SoftwireSource("2001:db8::1".parse().unwrap()),
            "6d 10 20010db8000000000000000000000001",
        ),
        (
            StatusCode {
                code: 4,
                message: "no".into(),
            },
            "97 03 04 6e6f",
        ),
        (
            StatusCode {
                code: 0,
                message: String::new(),
            },
            "97 01 00",
        ),
        (BaseTime(1_700_000_000), "98 04 6553f100"),
        (StartTimeOfState(60), "99 04 0000003c"),
        (QueryStartTime(1_699_990_000), "9a 04 6553c9f0"),
        (QueryEndTime(1_700_000_000), "9b 04 6553f100"),
        (DhcpState(2), "9c 01 02"),
        (DataSource(1), "9d 01 01"),
        (
            V4PortParams(PortParams {
                offset: 6,
                psid_len: 8,
                psid: 0x34,
            }),
            "9f 04 06 08 3400",
        ),
        (
            Vss {
                kind: 1,
                id: hex::decode("00000c00000001").unwrap(),
            },
            "dd 08 01 00000c00000001",
        ),
        (
            Unknown {
                code: 60,
                data: b"abc".to_vec(),
            },
            "3c 03 616263",
        ),
    ]
}

#[test]
fn every_typed_option_matches_its_golden_bytes() {
    for (option, wire) in option_vectors() {
        let wire = bytes(&[wire]);
        assert_eq!(encode_option(&option), wire, "{option:?}");
        assert_eq!(V4Option::decode(wire[0], &wire[2..]), Ok(option.clone()));
        assert_eq!(option.code(), wire[0]);
    }
}

#[test]
fn wrong_lengths_and_values_are_errors() {
    let len = |code: u8, len: usize| {
        Err(DecodeError::BadOptionLength {
            code: code as u16,
            len,
        })
    };
    let value = |code: u8| Err(DecodeError::BadOptionValue { code: code as u16 });
    for code in [1, 50, 51, 54, 58, 59, 91, 152, 153, 154, 155, 159] {
        assert_eq!(V4Option::decode(code, &[0; 3]), len(code, 3), "code {code}");
        assert_eq!(V4Option::decode(code, &[0; 5]), len(code, 5), "code {code}");
    }
    for code in [53, 156, 157] {
        assert_eq!(V4Option::decode(code, &[]), len(code, 0), "code {code}");
        assert_eq!(V4Option::decode(code, &[1, 2]), len(code, 2), "code {code}");
    }
    assert_eq!(V4Option::decode(109, &[0; 15]), len(109, 15));
    assert_eq!(V4Option::decode(109, &[0; 17]), len(109, 17));
    assert_eq!(V4Option::decode(92, &[]), len(92, 0));
    assert_eq!(V4Option::decode(92, &[0; 6]), len(92, 6));
    assert_eq!(V4Option::decode(61, &[]), len(61, 0));
    assert_eq!(V4Option::decode(61, &[1]), len(61, 1));
    // RFC 4361: type 255, IAID and at least a 2-octet DUID type.
    assert_eq!(V4Option::decode(61, &[255, 0, 0, 0, 1, 0]), len(61, 6));
    assert_eq!(V4Option::decode(151, &[]), len(151, 0));
    assert_eq!(V4Option::decode(221, &[]), len(221, 0));
    assert_eq!(V4Option::decode(151, &[0, 0xff, 0xfe]), value(151));
    assert_eq!(V4Option::decode(151, &[0, b'a', 0, b'b']), value(151));
    // A bit below the 8-bit PSID is set; an offset of 16.
    assert_eq!(V4Option::decode(159, &[0, 8, 0x34, 0x01]), value(159));
    assert_eq!(V4Option::decode(159, &[16, 0, 0, 0]), value(159));
    // A sub-option running past the end of option 82, and a lone code octet.
    assert_eq!(V4Option::decode(82, &[1, 4, 0xaa]), value(82));
    assert_eq!(V4Option::decode(82, &[1, 1, 0xaa, 2]), value(82));
}

#[test]
fn unencodable_values_are_refused_and_write_nothing() {
    use V4Option::*;
    let refused = [
        ClientId(leasequery::proto::v4::ClientId::Other {
            htype: 1,
            id: vec![],
        }),
        ClientId(leasequery::proto::v4::ClientId::Other {
            htype: 255,
            id: vec![1, 2, 3, 4, 5, 6],
        }),
        ClientId(leasequery::proto::v4::ClientId::Rfc4361 {
            iaid: 1,
            duid: vec![0],
        }),
        RelayAgentInfo(leasequery::proto::v4::RelayAgentInfo {
            sub_options: vec![(1, vec![0; 256])],
        }),
        AssociatedIp(vec![]),
        StatusCode {
            code: 0,
            message: "a\0b".into(),
        },
        V4PortParams(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 16,
        }),
        V4PortParams(PortParams {
            offset: 10,
            psid_len: 8,
            psid: 1,
        }),
        Unknown {
            code: 0,
            data: vec![],
        },
        Unknown {
            code: 52,
            data: vec![1],
        },
        Unknown {
            code: 255,
            data: vec![],
        },
    ];
    for option in refused {
        let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 1);
        m.options.push(option.clone());
        let mut out = vec![0xaa];
        assert!(
            matches!(m.encode(&mut out), Err(EncodeError::Invalid(_))),
            "{option:?}"
        );
        assert_eq!(out, [0xaa], "{option:?}");
    }
    let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 1);
    m.hlen = 17;
    assert!(matches!(
        m.encode(&mut Vec::new()),
        Err(EncodeError::Invalid(_))
    ));
    let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 1);
    m.options.push(V4Option::Unknown {
        code: 200,
        data: vec![0; 65_535],
    });
    assert_eq!(
        m.encode(&mut Vec::new()),
        Err(EncodeError::TooLong {
            len: m.encoded_len(),
            max: 65_535
        })
    );
}

/// The inner DHCPv4 message of the worked example (codepoints-and-scenarios.md §4.4).
fn worked_example() -> Vec<u8> {
    bytes(&[
        "01 00 00 00 11223344 0000 0000",
        "00000000 00000000 00000000 00000000",
        "z16 z64 z128",
        "63825363",
        "35 01 0e",
        "37 02 5b 9f",
        "52 0c 0c 0a 0003000102 0000000001",
        "ff",
    ])
}

#[test]
fn worked_example_inner_message_decodes() {
    let wire = worked_example();
    assert_eq!(wire.len(), 262);
    let view = MessageView::parse(&wire).unwrap();
    assert_eq!(
        (view.op, view.htype, view.hlen, view.xid),
        (BOOTREQUEST, 0, 0, 0x1122_3344)
    );
    assert_eq!(view.chaddr, b"");
    assert_eq!(view.message_type(), Some(v4msg::BULKLEASEQUERY));
    assert_eq!(
        view.option(v4opt::PARAMETER_REQUEST_LIST),
        Some(Cow::Borrowed(&[91u8, 159][..]))
    );
    let relay = view.option(v4opt::RELAY_AGENT_INFO).unwrap();
    assert_eq!(
        RelayAgentInfo::find(&relay, 12),
        Ok(Some(&hex::decode(RELAY_DUID).unwrap()[..]))
    );
    assert_eq!(RelayAgentInfo::find(&relay, 2), Ok(None));
    let raw: Vec<(u8, &[u8])> = view.options().collect();
    assert_eq!(
        raw.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [53, 55, 82]
    );

    let m = Message::decode(&wire).unwrap();
    let mut expected = Message::new(BOOTREQUEST, v4msg::BULKLEASEQUERY, 0x1122_3344);
    expected
        .options
        .push(V4Option::ParameterRequestList(vec![91, 159]));
    expected
        .options
        .push(V4Option::RelayAgentInfo(RelayAgentInfo {
            sub_options: vec![(12, hex::decode(RELAY_DUID).unwrap())],
        }));
    assert_eq!(m, expected);
    match m.option(v4opt::RELAY_AGENT_INFO) {
        Some(V4Option::RelayAgentInfo(info)) => {
            assert_eq!(info.relay_id(), Some(&hex::decode(RELAY_DUID).unwrap()[..]));
            assert_eq!((info.circuit_id(), info.remote_id()), (None, None));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(encode(&expected), wire);
}

/// (message, hand-built bytes) pairs for the golden message tests.
fn message_vectors() -> Vec<(Message, Vec<u8>)> {
    use V4Option::*;
    let mac = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    let rfc4361 = leasequery::proto::v4::ClientId::Rfc4361 {
        iaid: 7,
        duid: hex::decode(RELAY_DUID).unwrap(),
    };
    let mut out = Vec::new();

    // DHCPBULKLEASEQUERY by MAC address with a query time window (RFC 6926 §6.2.5, §6.2.6).
    let mut m = Message::new(BOOTREQUEST, v4msg::BULKLEASEQUERY, 0xabcd);
    m.set_hw_addr(1, &mac).unwrap();
    m.options.extend([
        ParameterRequestList(vec![51, 61, 82, 91]),
        QueryStartTime(1_699_990_000),
        QueryEndTime(1_700_000_000),
    ]);
    out.push((
        m,
        bytes(&[
            "01 01 06 00 0000abcd 0000 0000",
            "z16",
            "001122334455 z10 z64 z128",
            "63825363",
            "35 01 0e",
            "37 04 33 3d 52 5b",
            "9a 04 6553c9f0",
            "9b 04 6553f100",
            "ff",
        ]),
    ));

    // DHCPLEASEACTIVE with the bulk leasequery options, option 82 last.
    let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 0xabcd);
    m.set_hw_addr(1, &mac).unwrap();
    m.ciaddr = ip("192.0.2.10");
    m.options.extend([
        ServerId(ip("192.0.2.1")),
        BaseTime(1_700_000_000),
        LeaseTime(3000),
        ClientLastTransactionTime(600),
        StartTimeOfState(600),
        DhcpState(2),
        DataSource(0),
        ClientId(rfc4361.clone()),
        RelayAgentInfo(leasequery::proto::v4::RelayAgentInfo {
            sub_options: vec![(1, b"eth0".to_vec()), (2, vec![0x0a, 0x0b])],
        }),
    ]);
    out.push((
        m,
        bytes(&[
            "02 01 06 00 0000abcd 0000 0000",
            "c000020a 00000000 00000000 00000000",
            "001122334455 z10 z64 z128",
            "63825363",
            "35 01 0d",
            "36 04 c0000201",
            "98 04 6553f100",
            "33 04 00000bb8",
            "5b 04 00000258",
            "99 04 00000258",
            "9c 01 02",
            "9d 01 00",
            "3d 0f ff 00000007 00030001020000000001",
            "52 0a 01 04 65746830 02 02 0a0b",
            "ff",
        ]),
    ));

    // DHCPLEASEQUERYDONE carrying a status (RFC 6926 §7.4, §6.2.2).
    let mut m = Message::new(BOOTREPLY, v4msg::LEASEQUERYDONE, 0xabcd);
    m.options.extend([
        ServerId(ip("192.0.2.1")),
        StatusCode {
            code: 4,
            message: "not allowed".into(),
        },
    ]);
    out.push((
        m,
        bytes(&[
            "02 00 00 00 0000abcd 0000 0000",
            "z16 z16 z64 z128",
            "63825363",
            "35 01 0f",
            "36 04 c0000201",
            "97 0c 04 6e6f7420616c6c6f776564",
            "ff",
        ]),
    ));

    // A DHCP 4o6 client's DISCOVER, REQUEST and the ACK (RFC 7341, 8539, 7618).
    let softwire: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut m = Message::new(BOOTREQUEST, v4msg::DISCOVER, 0x0102_0304);
    m.set_hw_addr(1, &mac).unwrap();
    m.flags = 0x8000;
    m.options.extend([
        ClientId(rfc4361.clone()),
        Dhcp4o6SoftwireSource(softwire),
        ParameterRequestList(vec![1, 159]),
    ]);
    out.push((
        m,
        bytes(&[
            "01 01 06 00 01020304 0000 8000",
            "z16",
            "001122334455 z10 z64 z128",
            "63825363",
            "35 01 01",
            "3d 0f ff 00000007 00030001020000000001",
            "6d 10 20010db8000000000000000000000001",
            "37 02 01 9f",
            "ff",
        ]),
    ));
    let mut m = Message::new(BOOTREQUEST, v4msg::REQUEST, 0x0102_0304);
    m.set_hw_addr(1, &mac).unwrap();
    m.secs = 3;
    m.options.extend([
        RequestedIp(ip("192.0.2.10")),
        ServerId(ip("192.0.2.1")),
        ClientId(rfc4361.clone()),
        Dhcp4o6SoftwireSource(softwire),
    ]);
    out.push((
        m,
        bytes(&[
            "01 01 06 00 01020304 0003 0000",
            "z16",
            "001122334455 z10 z64 z128",
            "63825363",
            "35 01 03",
            "32 04 c000020a",
            "36 04 c0000201",
            "3d 0f ff 00000007 00030001020000000001",
            "6d 10 20010db8000000000000000000000001",
            "ff",
        ]),
    ));
    let mut m = Message::new(BOOTREPLY, v4msg::ACK, 0x0102_0304);
    m.set_hw_addr(1, &mac).unwrap();
    m.yiaddr = ip("192.0.2.10");
    m.siaddr = ip("192.0.2.1");
    m.options.extend([
        ServerId(ip("192.0.2.1")),
        LeaseTime(3600),
        RenewalTime(1800),
        RebindingTime(3150),
        SubnetMask(ip("255.255.255.0")),
        ClientId(rfc4361),
        V4PortParams(PortParams {
            offset: 6,
            psid_len: 8,
            psid: 0x34,
        }),
    ]);
    out.push((
        m,
        bytes(&[
            "02 01 06 00 01020304 0000 0000",
            "00000000 c000020a c0000201 00000000",
            "001122334455 z10 z64 z128",
            "63825363",
            "35 01 05",
            "36 04 c0000201",
            "33 04 00000e10",
            "3a 04 00000708",
            "3b 04 00000c4e",
            "01 04 ffffff00",
            "3d 0f ff 00000007 00030001020000000001",
            "9f 04 06 08 3400",
            "ff",
        ]),
    ));
    out
}

#[test]
fn golden_messages_both_ways() {
    for (m, wire) in message_vectors() {
        assert_eq!(encode(&m), wire, "{m:?}");
        assert_eq!(Message::decode(&wire).as_ref(), Ok(&m));
        let view = MessageView::parse(&wire).unwrap();
        assert_eq!(view.message_type(), m.message_type());
        assert_eq!(
            (view.xid, view.ciaddr, view.yiaddr),
            (m.xid, m.ciaddr, m.yiaddr)
        );
        assert_eq!(view.chaddr, m.hw_addr());
    }
}

#[test]
fn option_82_is_encoded_last() {
    let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 9);
    m.options.insert(
        0,
        V4Option::RelayAgentInfo(RelayAgentInfo {
            sub_options: vec![(2, vec![7])],
        }),
    );
    m.options.push(V4Option::DhcpState(2));
    let wire = encode(&m);
    assert_eq!(
        &wire[MIN_LEN..],
        bytes(&["35 01 0d 9c 01 02 52 03 02 01 07 ff"]).as_slice()
    );
}

#[test]
fn long_option_splits_255_255_90_and_joins_back() {
    let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let option = V4Option::Unknown {
        code: 200,
        data: data.clone(),
    };
    let wire = encode_option(&option);
    let mut expected = vec![200, 255];
    expected.extend_from_slice(&data[..255]);
    expected.extend_from_slice(&[200, 255]);
    expected.extend_from_slice(&data[255..510]);
    expected.extend_from_slice(&[200, 90]);
    expected.extend_from_slice(&data[510..]);
    assert_eq!(wire, expected);

    let mut m = Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 1);
    m.options.push(option);
    m.options.push(V4Option::ParameterRequestList(
        (0..300u32).map(|i| i as u8).collect(),
    ));
    let encoded = encode(&m);
    let view = MessageView::parse(&encoded).unwrap();
    let lens: Vec<(u8, usize)> = view.options().map(|(c, v)| (c, v.len())).collect();
    assert_eq!(
        lens,
        [
            (53, 1),
            (200, 255),
            (200, 255),
            (200, 90),
            (55, 255),
            (55, 45)
        ]
    );
    assert_eq!(view.option(200), Some(Cow::Owned(data)));
    assert_eq!(Message::decode(&encoded), Ok(m));
}

#[test]
fn non_consecutive_instances_join_in_order() {
    let wire = bytes(&[
        "02 00 00 00 00000001 0000 0000 z16 z16 z64 z128 63825363",
        "35 01 0d",
        "3d 02 01 aa",
        "00 00",
        "36 04 c0000201",
        "3d 02 bb cc",
        "52 03 01 01 61",
        "37 01 01",
        "52 04 02 02 62 63",
        "ff",
    ]);
    let view = MessageView::parse(&wire).unwrap();
    assert_eq!(view.options().count(), 7);
    assert_eq!(view.option(61), Some(Cow::Owned(vec![1, 0xaa, 0xbb, 0xcc])));
    assert!(matches!(view.option(54), Some(Cow::Borrowed(_))));
    assert_eq!(view.option(58), None);
    assert!(view.has_option(55) && !view.has_option(58));
    let m = Message::decode(&wire).unwrap();
    assert_eq!(
        m.options,
        [
            V4Option::MessageType(13),
            V4Option::ClientId(ClientId::Other {
                htype: 1,
                id: vec![0xaa, 0xbb, 0xcc]
            }),
            V4Option::ServerId(ip("192.0.2.1")),
            V4Option::RelayAgentInfo(RelayAgentInfo {
                sub_options: vec![(1, b"a".to_vec()), (2, b"bc".to_vec())]
            }),
            V4Option::ParameterRequestList(vec![1]),
        ]
    );
}

#[test]
fn header_errors() {
    let good = worked_example();
    assert_eq!(
        MessageView::parse(&good[..239]),
        Err(DecodeError::Truncated { at: 239, needed: 1 })
    );
    assert_eq!(
        Message::decode(&[]),
        Err(DecodeError::Truncated { at: 0, needed: 240 })
    );
    let mut bad = good.clone();
    bad[236] = 0x64;
    assert_eq!(Message::decode(&bad), Err(DecodeError::BadMagicCookie));
    let mut bad = good.clone();
    bad[2] = 17;
    assert_eq!(Message::decode(&bad), Err(DecodeError::BadHlen(17)));
    bad[2] = 16;
    assert_eq!(MessageView::parse(&bad).unwrap().chaddr.len(), 16);
    // No END: the option list just stops.
    assert_eq!(
        Message::decode(&good[..good.len() - 1]),
        Err(DecodeError::MissingEnd)
    );
    // Option overload is not supported (module docs).
    let overload =
        bytes(&["01 00 00 00 00000001 0000 0000 z16 z16 z64 z128 63825363 35 01 01 34 01 03 ff"]);
    assert_eq!(
        Message::decode(&overload),
        Err(DecodeError::BadOptionValue { code: 52 })
    );
    // Padding after END is ignored; a bad typed value fails the owned decode only.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 20]);
    assert_eq!(Message::decode(&padded), Message::decode(&good));
    let bad_value =
        bytes(&["01 00 00 00 00000001 0000 0000 z16 z16 z64 z128 63825363 35 02 01 01 ff"]);
    assert_eq!(MessageView::parse(&bad_value).unwrap().message_type(), None);
    assert_eq!(
        Message::decode(&bad_value),
        Err(DecodeError::BadOptionLength { code: 53, len: 2 })
    );
}

// ---- property tests ----

/// Option codes with no typed variant here (and not PAD, OVERLOAD, END).
fn untyped_code() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("typed or reserved", |c| {
        ![
            0, 1, 50, 51, 52, 53, 54, 55, 58, 59, 61, 82, 91, 92, 109, 151, 152, 153, 154, 155,
            156, 157, 159, 221, 255,
        ]
        .contains(c)
    })
}

/// Untyped codes that dhcproto 0.15 also leaves raw (it types 1-121 sparsely, 150-157).
fn dhcproto_raw_code() -> impl Strategy<Value = u8> {
    prop_oneof![160u8..=220, 222u8..=254]
}

fn port_params() -> impl Strategy<Value = PortParams> {
    (0u8..=16)
        .prop_flat_map(|k| (0u8..=16 - k, Just(k), any::<u16>()))
        .prop_map(|(offset, psid_len, raw)| PortParams {
            offset: offset.min(15),
            psid_len,
            psid: if psid_len == 0 {
                0
            } else {
                ((raw as u32) & ((1u32 << psid_len) - 1)) as u16
            },
        })
}

fn client_id() -> impl Strategy<Value = ClientId> {
    prop_oneof![
        (any::<u32>(), prop::collection::vec(any::<u8>(), 2..40))
            .prop_map(|(iaid, duid)| ClientId::Rfc4361 { iaid, duid }),
        (0u8..255, prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(htype, id)| ClientId::Other { htype, id }),
    ]
}

fn relay_info(sub_code: BoxedStrategy<u8>) -> impl Strategy<Value = RelayAgentInfo> {
    prop::collection::vec((sub_code, prop::collection::vec(any::<u8>(), 0..40)), 0..6)
        .prop_map(|sub_options| RelayAgentInfo { sub_options })
}

fn option(
    unknown_code: BoxedStrategy<u8>,
    sub_code: BoxedStrategy<u8>,
) -> impl Strategy<Value = V4Option> {
    use V4Option::*;
    let ipv4 = any::<u32>().prop_map(Ipv4Addr::from);
    prop_oneof![
        ipv4.clone().prop_map(SubnetMask),
        ipv4.clone().prop_map(RequestedIp),
        any::<u32>().prop_map(LeaseTime),
        ipv4.clone().prop_map(ServerId),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(ParameterRequestList),
        any::<u32>().prop_map(RenewalTime),
        any::<u32>().prop_map(RebindingTime),
        client_id().prop_map(ClientId),
        relay_info(sub_code).prop_map(RelayAgentInfo),
        any::<u32>().prop_map(ClientLastTransactionTime),
        prop::collection::vec(ipv4, 1..70).prop_map(AssociatedIp),
        any::<u128>().prop_map(|a| Dhcp4o6SoftwireSource(Ipv6Addr::from(a))),
        (any::<u8>(), "[^\\x00]{0,20}").prop_map(|(code, message)| StatusCode { code, message }),
        any::<u32>().prop_map(BaseTime),
        any::<u32>().prop_map(StartTimeOfState),
        any::<u32>().prop_map(QueryStartTime),
        any::<u32>().prop_map(QueryEndTime),
        any::<u8>().prop_map(DhcpState),
        any::<u8>().prop_map(DataSource),
        port_params().prop_map(V4PortParams),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(kind, id)| Vss { kind, id }),
        (unknown_code, prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(code, data)| Unknown { code, data }),
    ]
}

/// Messages with one option per code (decode joins repeated codes), option 82 last (encode
/// moves it there) and option 53 first.
fn message(
    unknown_code: BoxedStrategy<u8>,
    sub_code: BoxedStrategy<u8>,
) -> impl Strategy<Value = Message> {
    let header = (
        (
            any::<u8>(),
            any::<u8>(),
            0u8..=16,
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            any::<[u32; 4]>(),
            any::<[u8; 16]>(),
            prop::collection::vec(any::<u8>(), 64),
            prop::collection::vec(any::<u8>(), 128),
        ),
    );
    let options = prop::collection::vec(option(unknown_code, sub_code), 0..12);
    (header, 1u8..=18, options).prop_map(
        |((h, (addrs, chaddr, sname, file)), msg_type, options)| {
            let mut m = Message::new(h.0, msg_type, h.4);
            (m.htype, m.hlen, m.hops, m.secs, m.flags) = (h.1, h.2, h.3, h.5, h.6);
            [m.ciaddr, m.yiaddr, m.siaddr, m.giaddr] = addrs.map(Ipv4Addr::from);
            m.chaddr = chaddr;
            m.sname = Box::new(sname.try_into().unwrap());
            m.file = Box::new(file.try_into().unwrap());
            let mut seen = [false; 256];
            seen[53] = true;
            for o in options {
                if !std::mem::replace(&mut seen[o.code() as usize], true) {
                    m.options.push(o);
                }
            }
            m.options
                .sort_by_key(|o| o.code() == v4opt::RELAY_AGENT_INFO);
            m
        },
    )
}

fn any_message() -> impl Strategy<Value = Message> {
    message(untyped_code().boxed(), any::<u8>().boxed())
}

/// Messages dhcproto 0.15 reads: raw codes it does not type, and option 82 sub-options it
/// keeps raw (1, 2, 12 and codes without a typed layout; not 4, 5, 6, 10, 11).
fn dhcproto_message() -> impl Strategy<Value = Message> {
    let sub = prop_oneof![Just(1u8), Just(2u8), Just(12u8), 13u8..=150].boxed();
    message(dhcproto_raw_code().boxed(), sub)
}

/// Check that dhcproto reads `wire` to the same header and option values as `m`.
fn cross_check(m: &Message, wire: &[u8]) {
    let theirs = dp::Message::from_bytes(wire).expect("dhcproto decodes");
    assert_eq!(theirs.xid(), m.xid);
    assert_eq!(u8::from(theirs.opcode()), m.op);
    assert_eq!(theirs.hlen(), m.hlen);
    assert_eq!(theirs.chaddr(), m.hw_addr());
    assert_eq!(
        [
            theirs.ciaddr(),
            theirs.yiaddr(),
            theirs.siaddr(),
            theirs.giaddr()
        ],
        [m.ciaddr, m.yiaddr, m.siaddr, m.giaddr]
    );
    assert_eq!(theirs.opts().msg_type().map(u8::from), m.message_type());
    // One entry per code on both sides: nothing was dropped by dhcproto.
    assert_eq!(theirs.opts().iter().count(), m.options.len());
    for ours in &m.options {
        let code = dp::OptionCode::from(ours.code());
        let got = theirs
            .opts()
            .get(code)
            .unwrap_or_else(|| panic!("dhcproto lacks {ours:?}"));
        match (ours, got) {
            (V4Option::SubnetMask(a), dp::DhcpOption::SubnetMask(b)) => assert_eq!(a, b),
            (V4Option::RequestedIp(a), dp::DhcpOption::RequestedIpAddress(b)) => assert_eq!(a, b),
            (V4Option::LeaseTime(a), dp::DhcpOption::AddressLeaseTime(b)) => assert_eq!(a, b),
            (V4Option::MessageType(a), dp::DhcpOption::MessageType(b)) => {
                assert_eq!(*a, u8::from(*b))
            }
            (V4Option::ServerId(a), dp::DhcpOption::ServerIdentifier(b)) => assert_eq!(a, b),
            (V4Option::ParameterRequestList(a), dp::DhcpOption::ParameterRequestList(b)) => {
                assert_eq!(*a, b.iter().map(|c| u8::from(*c)).collect::<Vec<_>>())
            }
            (V4Option::RenewalTime(a), dp::DhcpOption::Renewal(b)) => assert_eq!(a, b),
            (V4Option::RebindingTime(a), dp::DhcpOption::Rebinding(b)) => assert_eq!(a, b),
            (V4Option::ClientId(a), dp::DhcpOption::ClientIdentifier(b)) => {
                let mut value = Vec::new();
                a.write(&mut value);
                assert_eq!(&value, b);
            }
            (V4Option::RelayAgentInfo(a), dp::DhcpOption::RelayAgentInformation(b)) => {
                // dhcproto keeps the last of duplicate sub-options.
                let last = |code: u8| {
                    a.sub_options
                        .iter()
                        .rev()
                        .find(|(c, _)| *c == code)
                        .map(|(_, v)| v.clone())
                };
                let circuit = b
                    .get(dp::relay::RelayCode::AgentCircuitId)
                    .map(|i| match i {
                        dp::relay::RelayInfo::AgentCircuitId(v) => v.clone(),
                        other => panic!("{other:?}"),
                    });
                let remote = b.get(dp::relay::RelayCode::AgentRemoteId).map(|i| match i {
                    dp::relay::RelayInfo::AgentRemoteId(v) => v.clone(),
                    other => panic!("{other:?}"),
                });
                assert_eq!((circuit, remote), (last(1), last(2)));
            }
            (
                V4Option::ClientLastTransactionTime(a),
                dp::DhcpOption::ClientLastTransactionTime(b),
            ) => assert_eq!(a, b),
            (V4Option::AssociatedIp(a), dp::DhcpOption::AssociatedIp(b)) => assert_eq!(a, b),
            (
                V4Option::StatusCode { code, message },
                dp::DhcpOption::BulkLeaseQueryStatusCode(c, t),
            ) => {
                assert_eq!((*code, message), (u8::from(*c), t))
            }
            (V4Option::BaseTime(a), dp::DhcpOption::BulkLeaseQueryBaseTime(b)) => assert_eq!(a, b),
            (V4Option::StartTimeOfState(a), dp::DhcpOption::BulkLeasQueryStartTimeOfState(b)) => {
                assert_eq!(a, b)
            }
            (V4Option::QueryStartTime(a), dp::DhcpOption::BulkLeaseQueryQueryStartTime(b)) => {
                assert_eq!(a, b)
            }
            (V4Option::QueryEndTime(a), dp::DhcpOption::BulkLeaseQueryQueryEndTime(b)) => {
                assert_eq!(a, b)
            }
            (V4Option::DhcpState(a), dp::DhcpOption::BulkLeaseQueryDhcpState(b)) => {
                assert_eq!(*a, u8::from(*b))
            }
            (V4Option::DataSource(a), dp::DhcpOption::BulkLeaseQueryDataSource(b)) => {
                assert_eq!(*a, u8::from(*b))
            }
            (ours, dp::DhcpOption::Unknown(b)) => {
                let mut value = Vec::new();
                ours.write_value(&mut value);
                assert_eq!(b.data(), value.as_slice(), "{ours:?}");
            }
            (ours, theirs) => panic!("{ours:?} read by dhcproto as {theirs:?}"),
        }
    }
}

#[test]
fn golden_messages_cross_check_with_dhcproto() {
    for (m, wire) in message_vectors() {
        cross_check(&m, &wire);
    }
    cross_check(
        &Message::decode(&worked_example()).unwrap(),
        &worked_example(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(m in any_message()) {
        let wire = encode(&m);
        prop_assert_eq!(Message::decode(&wire), Ok(m));
    }

    #[test]
    fn dhcproto_reads_what_we_write(m in dhcproto_message()) {
        let wire = encode(&m);
        cross_check(&m, &wire);
    }

    #[test]
    fn every_truncation_is_an_error(m in any_message()) {
        let wire = encode(&m);
        for len in 0..wire.len() {
            prop_assert!(MessageView::parse(&wire[..len]).is_err(), "prefix {}", len);
            prop_assert!(Message::decode(&wire[..len]).is_err(), "prefix {}", len);
        }
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(&data);
        // The same bytes as options behind a valid header reach the option parsers.
        let mut wire = worked_example()[..MIN_LEN].to_vec();
        wire.extend_from_slice(&data);
        if let Ok(view) = MessageView::parse(&wire) {
            for (code, _) in view.options() {
                prop_assert!(view.option(code).is_some());
            }
        }
        let _ = Message::decode(&wire);
    }

    #[test]
    fn corrupted_messages_never_panic(m in any_message(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut wire = encode(&m);
        for (at, value) in edits {
            let i = at.index(wire.len());
            wire[i] = value;
        }
        if let Ok(mut decoded) = Message::decode(&wire) {
            // Whatever decodes re-encodes, and decodes back the same (with option 82 moved last).
            let mut again = Vec::new();
            prop_assert_eq!(decoded.encode(&mut again), Ok(()));
            decoded.options.sort_by_key(|o| o.code() == v4opt::RELAY_AGENT_INFO);
            prop_assert_eq!(Message::decode(&again), Ok(decoded));
        }
    }
}
