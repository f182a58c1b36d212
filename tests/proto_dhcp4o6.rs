//! DHCP4o6 envelope (RFC 7341 §6, §8) and the draft's query-type pairing (docs/DESIGN.md section 4,
//! scenarios 47-56).

use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::proto::codes::{
    query_type, v4msg, v4status, v6msg, v6status, BOOTREPLY, BOOTREQUEST,
};
use leasequery::proto::dhcp4o6::{
    dhcpv4_response_len, select, write_dhcpv4_response, Dhcp4o6Select, Flags, LqQuery,
    MalformedQuery, V4Side, V6Side,
};
use leasequery::proto::EncodeError;

const RELAY_DUID: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const DUID: &[u8] = &[0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
const CID: &[u8] = &[
    255, 0, 0, 0, 7, 0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const REMOTE6: &[u8] = &[0, 0, 0x0d, 0xe9, b'c', b'p', b'e', b'1'];

#[test]
fn flags_unicast_is_the_top_bit_of_24() {
    assert!(Flags::from_bytes([0x80, 0, 0]).unicast());
    assert!(
        Flags::from_bytes([0x80, 0x12, 0x34]).unicast(),
        "MBZ bits are ignored"
    );
    assert!(!Flags::from_bytes([0x7f, 0xff, 0xff]).unicast());
    assert_eq!(Flags::query(true).to_bytes(), [0x80, 0, 0]);
    assert_eq!(Flags::query(false).to_bytes(), [0, 0, 0]);
    assert_eq!(Flags::from_bytes([1, 2, 3]).to_bytes(), [1, 2, 3]);
}

#[test]
fn dhcpv4_response_golden() {
    let v4 = [BOOTREPLY, 1, 6, 0];
    let br = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);
    let prefix = (56, Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 0, 0, 0, 0, 0));
    let mut out = b"ab".to_vec();
    write_dhcpv4_response(&mut out, &v4, &[br], Some(prefix)).unwrap();
    let want = hex::decode(
        "6162 15 000000 005a0010 20010db800000000000000000000000b 00890008 38 20010db8aa0000 \
         00570004 02010600"
            .replace(' ', ""),
    )
    .unwrap();
    assert_eq!(out, want);
    assert_eq!(out.len() - 2, dhcpv4_response_len(4, 1, Some(prefix)));
    let mut out = Vec::new();
    write_dhcpv4_response(&mut out, &v4, &[], None).unwrap();
    assert_eq!(out, [21, 0, 0, 0, 0, 87, 0, 4, 2, 1, 6, 0]);
    let mut out = vec![9];
    let big = vec![0u8; 65536];
    assert!(matches!(
        write_dhcpv4_response(&mut out, &big, &[], None),
        Err(EncodeError::TooLong { .. })
    ));
    assert_eq!(
        write_dhcpv4_response(&mut out, &v4, &[], Some((129, Ipv6Addr::UNSPECIFIED))),
        Err(EncodeError::Invalid("bind prefix length over 128"))
    );
    assert_eq!(out, [9]);
}

fn lq(qt: u8) -> LqQuery<'static> {
    LqQuery {
        query_type: qt,
        link_address: Ipv6Addr::UNSPECIFIED,
        client_id: None,
        relay_id: None,
        remote_id: None,
        iaaddr: None,
        has_oro: true,
    }
}

fn bulk(q: LqQuery<'static>) -> V6Side<'static> {
    V6Side {
        msg_type: v6msg::LEASEQUERY,
        query: Some(q),
    }
}

fn v4q(msg_type: u8) -> V4Side<'static> {
    V4Side {
        len: 262,
        op: BOOTREQUEST,
        msg_type: Some(msg_type),
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        hlen: 0,
        client_id: None,
        remote_id: None,
        relay_id: None,
    }
}

fn blq() -> V4Side<'static> {
    v4q(v4msg::BULKLEASEQUERY)
}

fn malformed(r: Result<Dhcp4o6Select<'_>, MalformedQuery>) -> &'static str {
    match r {
        Err(m) => m.reason,
        Ok(s) => panic!("accepted: {s:?}"),
    }
}

#[test]
fn malformed_maps_to_both_statuses() {
    assert_eq!(MalformedQuery::V6_STATUS, v6status::MALFORMED_QUERY);
    assert_eq!(MalformedQuery::V4_STATUS, v4status::MALFORMED_QUERY);
}

/// Scenario 47 / the §4.4 example: q=3 with RELAY_ID D and 82/12 = D.
#[test]
fn relay_id_pair() {
    let q = LqQuery {
        relay_id: Some(RELAY_DUID),
        ..lq(query_type::BY_RELAY_ID)
    };
    let v4 = V4Side {
        relay_id: Some(RELAY_DUID),
        ..blq()
    };
    assert_eq!(
        select(&bulk(q), &v4),
        Ok(Dhcp4o6Select::RelayId(RELAY_DUID))
    );
    let other = V4Side {
        relay_id: Some(DUID),
        ..blq()
    };
    assert_eq!(
        malformed(select(&bulk(q), &other)),
        "82/12 relay-id differs from OPTION_RELAY_ID"
    );
    // Scenario 49: v6 relay-id but the v4 message selects by remote-id.
    let by_remote = V4Side {
        remote_id: Some(b"cpe1"),
        ..blq()
    };
    assert_eq!(
        malformed(select(&bulk(q), &by_remote)),
        "DHCPv6 query type and DHCPv4 selector do not pair"
    );
    // Two v4 selectors.
    let two = V4Side {
        relay_id: Some(RELAY_DUID),
        client_id: Some(CID),
        ..blq()
    };
    assert!(select(&bulk(q), &two).is_err());
    // Missing RELAY_ID in the v6 query.
    let noid = lq(query_type::BY_RELAY_ID);
    assert_eq!(
        malformed(select(&bulk(noid), &v4)),
        "QUERY_BY_RELAY_ID without a valid OPTION_RELAY_ID"
    );
}

#[test]
fn client_id_pair_compares_the_rfc4361_duid() {
    let q = LqQuery {
        client_id: Some(DUID),
        ..lq(query_type::BY_CLIENTID)
    };
    let v4 = V4Side {
        client_id: Some(CID),
        ..blq()
    };
    assert_eq!(select(&bulk(q), &v4), Ok(Dhcp4o6Select::ClientId(CID)));
    // A non-RFC 4361 client-id (type 1 + MAC) cannot equal a DUID.
    let mac = V4Side {
        client_id: Some(&[1, 2, 0, 0, 0, 0, 1]),
        ..blq()
    };
    assert!(select(&bulk(q), &mac).is_err());
    let q2 = LqQuery {
        client_id: Some(RELAY_DUID),
        ..q
    };
    assert_eq!(
        malformed(select(&bulk(q2), &v4)),
        "option 61 does not hold the DUID of OPTION_CLIENTID"
    );
    let no61 = blq();
    assert!(select(&bulk(q), &no61).is_err());
}

#[test]
fn remote_id_pair_with_or_without_enterprise_number() {
    let q = LqQuery {
        remote_id: Some(REMOTE6),
        ..lq(query_type::BY_REMOTE_ID)
    };
    for r in [REMOTE6, b"cpe1"] {
        let v4 = V4Side {
            remote_id: Some(r),
            ..blq()
        };
        assert_eq!(select(&bulk(q), &v4), Ok(Dhcp4o6Select::RemoteId(REMOTE6)));
    }
    let v4 = V4Side {
        remote_id: Some(b"cpe2"),
        ..blq()
    };
    assert_eq!(
        malformed(select(&bulk(q), &v4)),
        "82/2 remote-id differs from OPTION_REMOTE_ID"
    );
    // Scenario 16: an enterprise number with no remote-id is not a remote-id.
    let empty = LqQuery {
        remote_id: Some(&REMOTE6[..4]),
        ..q
    };
    let v4 = V4Side {
        remote_id: Some(b""),
        ..blq()
    };
    assert!(select(&bulk(empty), &v4).is_err());
}

#[test]
fn link_and_address_pairs_need_no_v4_selector() {
    let link = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let q = LqQuery {
        link_address: link,
        ..lq(query_type::BY_LINK_ADDRESS)
    };
    assert_eq!(select(&bulk(q), &blq()), Ok(Dhcp4o6Select::Link(link)));
    assert!(
        select(&bulk(lq(query_type::BY_LINK_ADDRESS)), &blq()).is_err(),
        "link ::"
    );
    let with_cid = V4Side {
        client_id: Some(CID),
        ..blq()
    };
    assert!(select(&bulk(q), &with_cid).is_err());

    let src = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x1234);
    let q = LqQuery {
        iaaddr: Some(src),
        ..lq(query_type::BY_ADDRESS)
    };
    assert_eq!(
        select(&bulk(q), &blq()),
        Ok(Dhcp4o6Select::SoftwireSrc(src))
    );
    assert!(select(&bulk(lq(query_type::BY_ADDRESS)), &blq()).is_err());
    // A v4 query by MAC address has no v6 twin.
    let by_mac = V4Side { hlen: 6, ..blq() };
    assert!(select(&bulk(q), &by_mac).is_err());
}

/// Scenario 48: OPTION_LQ_QUERY without ORO.
#[test]
fn missing_oro_is_malformed() {
    let q = LqQuery {
        relay_id: Some(RELAY_DUID),
        has_oro: false,
        ..lq(query_type::BY_RELAY_ID)
    };
    let v4 = V4Side {
        relay_id: Some(RELAY_DUID),
        ..blq()
    };
    assert_eq!(
        malformed(select(&bulk(q), &v4)),
        "no OPTION_ORO in OPTION_LQ_QUERY"
    );
}

/// Scenarios 51, 52, 56: the v4 message itself.
#[test]
fn bad_v4_messages_are_malformed() {
    let q = LqQuery {
        link_address: Ipv6Addr::LOCALHOST,
        ..lq(query_type::BY_LINK_ADDRESS)
    };
    let cases = [
        (
            V4Side { len: 239, ..blq() },
            "DHCPv4 message shorter than 240 octets",
        ),
        (
            V4Side {
                op: BOOTREPLY,
                ..blq()
            },
            "DHCPv4 message is not a BOOTREQUEST",
        ),
        (
            V4Side {
                ciaddr: Ipv4Addr::new(10, 0, 0, 1),
                ..blq()
            },
            "non-zero ciaddr, yiaddr or siaddr",
        ),
        (
            V4Side {
                yiaddr: Ipv4Addr::new(10, 0, 0, 1),
                ..blq()
            },
            "non-zero ciaddr, yiaddr or siaddr",
        ),
        (
            V4Side {
                siaddr: Ipv4Addr::new(10, 0, 0, 1),
                ..blq()
            },
            "non-zero ciaddr, yiaddr or siaddr",
        ),
        (
            v4q(v4msg::DISCOVER),
            "DHCPv4 message type does not match the DHCPv6 query",
        ),
        (
            v4q(v4msg::ACTIVELEASEQUERY),
            "DHCPv4 message type does not match the DHCPv6 query",
        ),
        (
            V4Side {
                msg_type: None,
                ..blq()
            },
            "DHCPv4 message type does not match the DHCPv6 query",
        ),
    ];
    for (v4, why) in cases {
        assert_eq!(malformed(select(&bulk(q), &v4)), why);
    }
    // A bulk query with no OPTION_LQ_QUERY at all.
    let none = V6Side {
        msg_type: v6msg::LEASEQUERY,
        query: None,
    };
    assert_eq!(malformed(select(&none, &blq())), "no OPTION_LQ_QUERY");
}

#[test]
fn active_pairs() {
    let act = v4q(v4msg::ACTIVELEASEQUERY);
    let all = V6Side {
        msg_type: v6msg::ACTIVELEASEQUERY,
        query: None,
    };
    assert_eq!(select(&all, &act), Ok(Dhcp4o6Select::All));
    let q = LqQuery {
        relay_id: Some(RELAY_DUID),
        ..lq(query_type::BY_RELAY_ID)
    };
    let v6 = V6Side {
        msg_type: v6msg::ACTIVELEASEQUERY,
        query: Some(q),
    };
    assert_eq!(select(&v6, &act), Ok(Dhcp4o6Select::RelayId(RELAY_DUID)));
    let q = LqQuery {
        remote_id: Some(REMOTE6),
        ..lq(query_type::BY_REMOTE_ID)
    };
    let v6 = V6Side {
        msg_type: v6msg::ACTIVELEASEQUERY,
        query: Some(q),
    };
    assert_eq!(select(&v6, &act), Ok(Dhcp4o6Select::RemoteId(REMOTE6)));
    // Query types RFC 7653 §6.2.1 does not allow in an active query.
    let q = LqQuery {
        client_id: Some(DUID),
        ..lq(query_type::BY_CLIENTID)
    };
    let v6 = V6Side {
        msg_type: v6msg::ACTIVELEASEQUERY,
        query: Some(q),
    };
    assert_eq!(
        malformed(select(&v6, &act)),
        "query type not allowed in an active query"
    );
    // DHCPACTIVELEASEQUERY must not carry a client-id (RFC 7724 §7.3).
    assert!(select(
        &all,
        &V4Side {
            client_id: Some(CID),
            ..act
        }
    )
    .is_err());
    // Scenario 56: ACTIVELEASEQUERY carrying a DHCPBULKLEASEQUERY.
    assert!(select(&all, &blq()).is_err());
}
