//! The journal record format (`leasequery::store::record`): round trips of every field, and
//! random bytes, truncations and bit flips give typed errors, never panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::lease::{Change, ChangeKind, RelayBinding, V4Binding, V6Binding, V6ContextBinding};
use leasequery::proto::record::{PortParams, V6Addr, V6Prefix};
use leasequery::store::record::{
    decode_payload, decode_record, encode_change, encode_snapshot_end, unframe, FileHeader,
    FileKind, Frame, Payload, RecordError, FRAME_LEN, HEADER_LEN, MAX_PAYLOAD,
};
use proptest::prelude::*;

fn opt_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
}

fn v6addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn port_params() -> impl Strategy<Value = Option<PortParams>> {
    proptest::option::of((0u8..=15, 0u8..=16, any::<u16>()).prop_filter_map(
        "valid port params",
        |(offset, len, id)| {
            if offset + len > 16 {
                return None;
            }
            let psid = if len == 0 {
                0
            } else {
                id & ((1u32 << len) - 1) as u16
            };
            Some(PortParams {
                offset,
                psid_len: len,
                psid,
            })
        },
    ))
}

fn relay() -> impl Strategy<Value = Option<RelayBinding>> {
    proptest::option::of(
        (
            any::<u8>(),
            v6addr(),
            v6addr(),
            opt_bytes(),
            opt_bytes(),
            opt_bytes(),
        )
            .prop_map(
                |(hop_count, link_address, peer_address, interface_id, relay_id, remote_id)| {
                    RelayBinding {
                        hop_count,
                        link_address,
                        peer_address,
                        interface_id,
                        relay_id,
                        remote_id,
                    }
                },
            ),
    )
}

fn v4binding() -> impl Strategy<Value = V4Binding> {
    (
        (
            any::<u32>(),
            port_params(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..=16),
            opt_bytes(),
            any::<u8>(),
            any::<(u32, u32, u32)>(),
        ),
        (
            opt_bytes(),
            opt_bytes(),
            opt_bytes(),
            proptest::option::of(v6addr()),
            proptest::option::of((v6addr(), v6addr(), relay())),
            any::<u8>(),
        ),
    )
        .prop_map(
            |(
                (addr, port_params, htype, chaddr, client_id, state, (cltt, state_start, expires)),
                (circuit_id, remote_id, relay_id, softwire_src, v6, data_source),
            )| V4Binding {
                addr: Ipv4Addr::from(addr),
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
                softwire_src,
                v6: v6.map(|(client_src, link, relay)| V6ContextBinding {
                    client_src,
                    link,
                    relay,
                }),
                data_source,
            },
        )
}

fn v6binding() -> impl Strategy<Value = V6Binding> {
    (
        proptest::collection::vec(any::<u8>(), 0..130),
        v6addr(),
        proptest::collection::vec((v6addr(), any::<u32>(), any::<u32>()), 0..4),
        proptest::collection::vec((v6addr(), 0u8..=128, any::<u32>(), any::<u32>()), 0..4),
        any::<u32>(),
        opt_bytes(),
        opt_bytes(),
    )
        .prop_map(
            |(duid, link, iana, iapd, cltt, relay_id, remote_id)| V6Binding {
                duid,
                link,
                iana: iana
                    .into_iter()
                    .map(|(addr, p, v)| V6Addr {
                        addr,
                        preferred_until: p,
                        valid_until: v,
                    })
                    .collect(),
                iapd: iapd
                    .into_iter()
                    .map(|(prefix, prefix_len, p, v)| V6Prefix {
                        prefix,
                        prefix_len,
                        preferred_until: p,
                        valid_until: v,
                    })
                    .collect(),
                cltt,
                relay_id,
                remote_id,
            },
        )
}

fn kind() -> impl Strategy<Value = ChangeKind> {
    (1u8..=9).prop_map(|k| ChangeKind::from_u8(k).expect("kinds 1..=9 exist"))
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<u32>(), kind(), v4binding()).prop_map(|(at, kind, binding)| Change::V4 {
            at,
            kind,
            binding
        }),
        (any::<u32>(), kind(), v6binding()).prop_map(|(at, kind, binding)| Change::V6 {
            at,
            kind,
            binding
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn change_round_trips(c in change(), seq in any::<u64>()) {
        let mut buf = Vec::new();
        encode_change(seq, &c, &mut buf).expect("encodes");
        let (s, p, used) = decode_record(&buf).expect("decodes");
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(s, seq);
        prop_assert_eq!(p, Payload::Change(c));
    }

    #[test]
    fn truncations_are_errors(c in change(), cut in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        encode_change(1, &c, &mut buf).expect("encodes");
        let n = cut.index(buf.len());
        prop_assert_eq!(decode_record(&buf[..n]).unwrap_err(), RecordError::Truncated);
    }

    #[test]
    fn bit_flips_are_caught(c in change(), bit in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        encode_change(77, &c, &mut buf).expect("encodes");
        let b = bit.index(buf.len() * 8);
        buf[b / 8] ^= 1 << (b % 8);
        // A flip in the length may make the frame shorter/longer (Truncated, BadLength, or a
        // CRC mismatch over other octets) or zero (padding): never the original record.
        match decode_record(&buf) {
            Ok((_, p, _)) => prop_assert!(false, "flipped record decoded: {:?}", p),
            Err(e) => prop_assert!(matches!(
                e,
                RecordError::BadCrc | RecordError::Truncated | RecordError::BadLength(_)
            ), "unexpected error {:?}", e),
        }
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_record(&data);
        let _ = decode_payload(&data);
        let _ = unframe(&data);
        let _ = FileHeader::decode(&data);
    }

    #[test]
    fn random_payloads_after_tag_never_panic(
        tag in 1u8..=3,
        data in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut p = vec![tag];
        p.extend_from_slice(&data);
        let _ = decode_payload(&p);
    }
}

fn sample_v4() -> V4Binding {
    V4Binding {
        addr: Ipv4Addr::new(192, 0, 2, 10),
        port_params: Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 3,
        }),
        htype: 1,
        chaddr: vec![2, 0, 0, 0, 0, 1],
        client_id: Some(vec![255, 0, 0, 0, 1, 0, 4, 1, 2]),
        state: 2,
        cltt: 1_767_225_600,
        state_start: 1_767_225_600,
        expires: 1_767_229_200,
        circuit_id: None,
        remote_id: Some(vec![0, 0, 0, 9, 7]),
        relay_id: Some(vec![0, 3, 0, 1, 1]),
        softwire_src: Some("2001:db8::5".parse().unwrap()),
        v6: Some(V6ContextBinding {
            client_src: "2001:db8::5".parse().unwrap(),
            link: "2001:db8:1::".parse().unwrap(),
            relay: None,
        }),
        data_source: 0,
    }
}

#[test]
fn payload_layout_is_pinned() {
    let c = Change::V4 {
        at: 7,
        kind: ChangeKind::New,
        binding: sample_v4(),
    };
    let mut buf = Vec::new();
    encode_change(0x0102_0304_0506_0708, &c, &mut buf).unwrap();
    let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
    assert_eq!(FRAME_LEN, 16);
    assert_eq!(len + FRAME_LEN, buf.len());
    // The record sequence number after length and CRC.
    assert_eq!(&buf[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    // tag, at, kind, address, port params.
    assert_eq!(
        &buf[FRAME_LEN..FRAME_LEN + 15],
        &[1, 0, 0, 0, 7, 1, 192, 0, 2, 10, 1, 0, 4, 0, 3]
    );
    // The CRC covers length, sequence number and payload.
    let crc = u32::from_be_bytes(buf[4..8].try_into().unwrap());
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..4]);
    h.update(&buf[8..]);
    assert_eq!(crc, h.finalize());
    let mut renumbered = buf.clone();
    renumbered[15] ^= 1;
    assert_eq!(decode_record(&renumbered).unwrap_err(), RecordError::BadCrc);
}

#[test]
fn padding_trailing_and_bad_fields() {
    assert_eq!(unframe(&[0, 0, 0, 0, 9, 9]).unwrap(), Frame::Padding);
    assert_eq!(
        decode_record(&[0, 0, 0, 0]).unwrap_err(),
        RecordError::BadLength(0)
    );
    let big = ((MAX_PAYLOAD + 1) as u32).to_be_bytes();
    assert!(matches!(
        unframe(&[big[0], big[1], big[2], big[3], 0, 0, 0, 0]),
        Err(RecordError::BadLength(_))
    ));
    // Trailing octets after a valid payload.
    let mut p = Vec::new();
    leasequery::store::record::encode_payload(
        &Change::V4 {
            at: 1,
            kind: ChangeKind::Renew,
            binding: sample_v4(),
        },
        &mut p,
    )
    .unwrap();
    p.push(0);
    assert_eq!(decode_payload(&p).unwrap_err(), RecordError::Trailing(1));
    assert_eq!(decode_payload(&[9]).unwrap_err(), RecordError::BadTag(9));
    assert_eq!(
        decode_payload(&[1, 0, 0, 0, 0, 42]).unwrap_err(),
        RecordError::BadKind(42)
    );
    // chaddr above 16 octets cannot be encoded.
    let mut b = sample_v4();
    b.chaddr = vec![0; 17];
    let mut out = Vec::new();
    assert!(encode_change(
        1,
        &Change::V4 {
            at: 0,
            kind: ChangeKind::New,
            binding: b
        },
        &mut out
    )
    .is_err());
    assert!(out.is_empty());
    let mut end = Vec::new();
    encode_snapshot_end(5, &mut end);
    assert_eq!(
        decode_record(&end).unwrap(),
        (6, Payload::SnapshotEnd(5), end.len())
    );
}

#[test]
fn header_round_trip_and_damage() {
    let h = FileHeader {
        kind: FileKind::Snapshot,
        shards: 3,
        shard: 2,
        seq: 0x1234,
        record_seq: 0x0a0b_0c0d_0e0f_1011,
    };
    let bytes = h.encode();
    assert_eq!(HEADER_LEN, 40);
    assert_eq!(&bytes[..8], b"LQSTORE\0");
    assert_eq!(&bytes[8..10], &[0, 2], "format version 2");
    assert_eq!(&bytes[28..36], &[10, 11, 12, 13, 14, 15, 16, 17]);
    assert_eq!(FileHeader::decode(&bytes).unwrap(), h);
    assert_eq!(
        FileHeader::decode(&bytes[..HEADER_LEN - 1]).unwrap_err(),
        RecordError::Truncated
    );
    let mut bad = bytes;
    bad[0] ^= 1;
    assert_eq!(FileHeader::decode(&bad).unwrap_err(), RecordError::BadMagic);
    let mut bad = bytes;
    bad[20] ^= 1;
    assert_eq!(FileHeader::decode(&bad).unwrap_err(), RecordError::BadCrc);
    let mut bad = bytes;
    bad[31] ^= 1;
    assert_eq!(FileHeader::decode(&bad).unwrap_err(), RecordError::BadCrc);
}

/// A header written by format version 1 (32 octets, no record numbering) is named as that
/// version, never read as a damaged or torn header.
#[test]
fn format_version_1_header_is_refused_by_version() {
    let mut v1 = Vec::new();
    v1.extend_from_slice(b"LQSTORE\0");
    v1.extend_from_slice(&1u16.to_be_bytes());
    v1.extend_from_slice(&[1, 0]);
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&0u32.to_be_bytes());
    v1.extend_from_slice(&1u64.to_be_bytes());
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_be_bytes());
    v1.resize(4096, 0);
    let err = FileHeader::decode(&v1).unwrap_err();
    assert_eq!(err, RecordError::BadVersion(1));
    assert!(err.to_string().contains("version 1"), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn record_module_is_sans_io() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/record.rs");
    let text = std::fs::read_to_string(path).unwrap();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for f in [
            "glommio",
            "std::fs",
            ".await",
            "async fn",
            "SystemTime",
            "Instant::now",
        ] {
            assert!(!code.contains(f), "record.rs:{}: {f}", i + 1);
        }
    }
}
