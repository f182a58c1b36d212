//! The streaming reply encoder: golden bytes per message form (hand-computed), stream rules
//! (RFC 5460 §5.2, RFC 7653 §9.3, RFC 6926 §7.3), Full/resume, xid patching, and decoding by an
//! independent codec (dhcproto 0.15).

use std::net::{Ipv4Addr, Ipv6Addr};

use dhcproto::{Decodable, Decoder};
use leasequery::proto::codes::{dhcp_state, v4status, v6opt, v6status};
use leasequery::proto::encoder::{
    patch_xids, Dhcp4o6ReplyParams, OroSet, PrlSet, Reply, StreamWriter, V4ReplyParams, V4Status,
    V6ReplyParams, V6Status,
};
use leasequery::proto::record::{
    PortParams, RelayRecord, V4Record, V6Addr, V6Context, V6Prefix, V6Record,
};
use leasequery::proto::EncodeError;
use proptest::prelude::*;

const NOW: u32 = 1_700_000_000; // 0x6553f100; DHCPv6 time 0x2ce6ad80
const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
const SERVER: [u8; 10] = [0, 3, 0, 1, 1, 2, 3, 4, 5, 6];
const CLIENT_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const RELAY_DUID: [u8; 10] = [0, 3, 0, 1, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
/// Option 61, RFC 4361 form: type 255, IAID 1, CLIENT_DUID.
const CLIENT_ID_4361: [u8; 15] = [255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const CHADDR: [u8; 6] = [2, 0x11, 0x22, 0x33, 0x44, 0x55];

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn v6p(oro: &[u16], base_time: bool) -> V6ReplyParams<'static> {
    V6ReplyParams {
        xid: 0xabcdef,
        requestor_duid: &REQUESTOR,
        server_duid: &SERVER,
        oro: OroSet::from_codes(oro.iter().copied()),
        base_time,
        reply_status: None,
        now: NOW,
    }
}

fn v4p(prl: &[u8]) -> V4ReplyParams {
    V4ReplyParams {
        xid: 0x11223344,
        server_id: Ipv4Addr::new(192, 0, 2, 1),
        prl: PrlSet::from_prl(prl),
        now: NOW,
    }
}

const IANA: [V6Addr; 1] = [V6Addr {
    addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    preferred_until: NOW + 100,
    valid_until: NOW + 200,
}];
const IAPD: [V6Prefix; 1] = [V6Prefix {
    prefix: Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0),
    prefix_len: 56,
    preferred_until: NOW - 5, // expired: remaining 0
    valid_until: u32::MAX,    // infinity stays infinity
}];

fn v6rec() -> V6Record<'static> {
    V6Record {
        duid: &CLIENT_DUID,
        link: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
        iana: &IANA,
        iapd: &IAPD,
        cltt: NOW - 30,
        relay_id: Some(&RELAY_DUID),
        remote_id: Some(&[0, 0, 0, 9, 0x61, 0x62]),
    }
}

const RELAY: RelayRecord<'static> = RelayRecord {
    hop_count: 0,
    link_address: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    peer_address: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    interface_id: Some(b"eth0"),
    relay_id: Some(&RELAY_DUID),
    remote_id: None,
};

fn v4rec() -> V4Record<'static> {
    V4Record {
        addr: Ipv4Addr::new(198, 51, 100, 7),
        port_params: Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 3,
        }),
        htype: 1,
        chaddr: &CHADDR,
        client_id: Some(&CLIENT_ID_4361),
        state: dhcp_state::ACTIVE,
        cltt: NOW - 30,
        state_start: NOW - 3600,
        expires: NOW + 3000,
        circuit_id: None,
        remote_id: None,
        relay_id: Some(&RELAY_DUID),
        softwire_src: Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x1234)),
        v6: Some(V6Context {
            client_src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            link: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
            relay: Some(RELAY),
        }),
        data_source: 0,
    }
}

fn o6p(oro: &[u16], prl: &[u8]) -> Dhcp4o6ReplyParams<'static> {
    Dhcp4o6ReplyParams {
        v6: v6p(oro, false),
        v4: v4p(prl),
        br: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb)),
        bind_prefix: Some((56, Ipv6Addr::new(0x2001, 0xdb8, 0xaa00, 0, 0, 0, 0, 0))),
    }
}

/// Encodes one message alone into a fresh 64 KiB + 2 buffer.
fn enc(r: &Reply<'_>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(65537);
    let at = StreamWriter::new(&mut buf).write(r).unwrap();
    assert_eq!((at.start, at.len), (0, buf.len()));
    assert_eq!(r.frame_len().unwrap(), buf.len());
    let declared = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    assert_eq!(
        declared + 2,
        buf.len(),
        "length prefix counts the message only"
    );
    buf
}

/// Test-only DHCPv6 option walker: (code, payload) pairs, strict.
fn opts(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 4, "truncated option header");
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        assert!(b.len() >= 4 + len, "truncated option {code}");
        out.push((code, &b[4..4 + len]));
        b = &b[4 + len..];
    }
    out
}

fn codes(o: &[(u16, &[u8])]) -> Vec<u16> {
    o.iter().map(|&(c, _)| c).collect()
}

fn find<'a>(o: &[(u16, &'a [u8])], code: u16) -> &'a [u8] {
    o.iter()
        .find(|&&(c, _)| c == code)
        .unwrap_or_else(|| panic!("option {code} missing"))
        .1
}

/// A v6 frame: (msg-type, xid, options).
fn v6_parts(frame: &[u8]) -> (u8, u32, Vec<(u16, &[u8])>) {
    let m = &frame[2..];
    (
        m[0],
        u32::from_be_bytes([0, m[1], m[2], m[3]]),
        opts(&m[4..]),
    )
}

const REQ_SRV: &str = "0001 000a 00030001aabbccddeeff  0002 000a 00030001010203040506";
const CLIENT_DATA: &str = "
    0001 000a 00030001020000000001
    0005 0018 20010db8000000000000000000000001 00000064 000000c8
    001a 0019 00000000 ffffffff 38 20010db8010000000000000000000000
    002e 0004 0000001e
    0035 000a 000300010a0b0c0d0e0f";

#[test]
fn v6_lone_reply_golden() {
    let p = v6p(&[], false);
    assert_eq!(
        enc(&Reply::V6Reply {
            p: &p,
            status: None
        }),
        hx(&format!("0020 0f abcdef {REQ_SRV}"))
    );
    let st = V6Status {
        code: v6status::MALFORMED_QUERY,
        text: "bad",
    };
    assert_eq!(
        enc(&Reply::V6Reply {
            p: &p,
            status: Some(st)
        }),
        hx(&format!("0029 0f abcdef {REQ_SRV} 000d 0005 0008 626164"))
    );
}

#[test]
fn v6_binding_reply_then_data_golden() {
    // ORO asks for RELAY_ID (recorded: included) but not REMOTE_ID (recorded: left out), and 100.
    let p = v6p(&[v6opt::RELAY_ID, v6opt::LQ_BASE_TIME], true);
    let rec = v6rec();
    let reply = enc(&Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    let want = format!("0089 0f abcdef {REQ_SRV} 0064 0004 2ce6ad80 002d 005d {CLIENT_DATA}");
    assert_eq!(reply, hx(&want));
    let data = enc(&Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    assert_eq!(
        data,
        hx(&format!(
            "006d 11 abcdef 0064 0004 2ce6ad80 002d 005d {CLIENT_DATA}"
        ))
    );
}

#[test]
fn v6_reply_status_only_in_the_reply() {
    let mut p = v6p(&[], false);
    p.reply_status = Some(V6Status {
        code: v6status::SUCCESS,
        text: "ok",
    });
    let rec = v6rec();
    let frame = enc(&Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    let (_, _, o) = v6_parts(&frame);
    assert_eq!(codes(&o), [1, 2, 13, 45]);
    assert_eq!(find(&o, 13), hx("0000 6f6b"));
    let frame = enc(&Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let (t, _, o) = v6_parts(&frame);
    assert_eq!((t, codes(&o)), (17, vec![45]));
}

#[test]
fn v6_done_data_status_keepalive_golden() {
    let p = v6p(&[v6opt::LQ_BASE_TIME], true);
    let base = "0064 0004 2ce6ad80";
    assert_eq!(
        enc(&Reply::V6Done {
            p: &p,
            status: None
        }),
        hx(&format!("000c 10 abcdef {base}"))
    );
    let term = V6Status {
        code: v6status::QUERY_TERMINATED,
        text: "",
    };
    assert_eq!(
        enc(&Reply::V6Done {
            p: &p,
            status: Some(term)
        }),
        hx(&format!("0012 10 abcdef 000d 0002 000b {base}"))
    );
    let cuc = V6Status {
        code: v6status::CATCH_UP_COMPLETE,
        text: "",
    };
    assert_eq!(
        enc(&Reply::V6DataStatus { p: &p, status: cuc }),
        hx(&format!("0012 11 abcdef 000d 0002 000d {base}"))
    );
    assert_eq!(
        enc(&Reply::V6Keepalive { p: &p }),
        hx(&format!("000c 11 abcdef {base}"))
    );
    // Without base-time in the ORO, DONE is the bare 4-octet message of RFC 5460.
    let p = v6p(&[], false);
    assert_eq!(
        enc(&Reply::V6Done {
            p: &p,
            status: None
        }),
        hx("0004 10 abcdef")
    );
    assert_eq!(enc(&Reply::V6Keepalive { p: &p }), hx("0004 11 abcdef"));
}

/// The fixed 240-octet BOOTREPLY head: op 2, htype, hlen, xid, ciaddr, chaddr, cookie.
fn bootreply(htype: u8, chaddr: &[u8], xid: u32, ciaddr: [u8; 4]) -> Vec<u8> {
    let mut h = vec![2, htype, chaddr.len() as u8, 0];
    h.extend_from_slice(&xid.to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&ciaddr);
    h.extend_from_slice(&[0; 12]);
    h.extend_from_slice(chaddr);
    h.resize(236, 0);
    h.extend_from_slice(&[99, 130, 83, 99]);
    h
}

const V4_BINDING_OPTS_FIRST: &str = "
    35 01 0d
    36 04 c0000201
    98 04 6553f100
    33 04 00000bb8
    5b 04 0000001e
    3d 0f ff00000001 00030001020000000001
    9f 04 00 04 3000
    52 0c 0c 0a 000300010a0b0c0d0e0f
    ff";

fn v4_binding_golden(first: bool) -> Vec<u8> {
    let mut m = bootreply(1, &CHADDR, 0x11223344, [198, 51, 100, 7]);
    let opts = if first {
        V4_BINDING_OPTS_FIRST.to_string()
    } else {
        V4_BINDING_OPTS_FIRST.replace("36 04 c0000201", "")
    };
    m.extend(hx(&opts));
    let mut f = (m.len() as u16).to_be_bytes().to_vec();
    f.extend(m);
    f
}

#[test]
fn v4_binding_golden_and_option_54_only_first() {
    let p = v4p(&[91, 159]);
    let rec = v4rec();
    let first = enc(&Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    assert_eq!(first.len(), 2 + 305);
    assert_eq!(first, v4_binding_golden(true));
    let later = enc(&Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    assert_eq!(later, v4_binding_golden(false));
}

#[test]
fn v4_unassigned_and_prl_selected_options() {
    // PRL asks 153, 156, 157, 109; 91/159 not asked. Data source REMOTE is non-zero.
    let p = v4p(&[153, 156, 157, 109]);
    let mut rec = v4rec();
    rec.state = dhcp_state::EXPIRED;
    rec.expires = 0; // no timeout: no option 51
    rec.client_id = None;
    rec.relay_id = None;
    rec.data_source = 1;
    let f = enc(&Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let mut m = bootreply(1, &CHADDR, 0x11223344, [198, 51, 100, 7]);
    m.extend(hx(
        "35 01 0b  98 04 6553f100  99 04 00000e10  9c 01 03  9d 01 01
                 6d 10 20010db8ffff00000000000000001234  ff",
    ));
    assert_eq!(&f[2..], &m[..]);
}

#[test]
fn v4_done_and_status_golden() {
    let p = v4p(&[]);
    let head = bootreply(0, &[], 0x11223344, [0; 4]);
    let frame = |opts: &str| {
        let mut m = head.clone();
        m.extend(hx(opts));
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend(m);
        f
    };
    // A lone DONE is the first message of its stream: it carries 54 (RFC 6926 §7.3).
    assert_eq!(
        enc(&Reply::V4Done {
            p: &p,
            status: None,
            first: true
        }),
        frame("35 01 0f 36 04 c0000201 98 04 6553f100 ff")
    );
    let mq = V4Status {
        code: v4status::MALFORMED_QUERY,
        text: "ciaddr",
    };
    assert_eq!(
        enc(&Reply::V4Done {
            p: &p,
            status: Some(mq),
            first: false
        }),
        frame("35 01 0f 97 07 03 636961646472 98 04 6553f100 ff")
    );
    let ca = V4Status {
        code: v4status::CONNECTION_ACTIVE,
        text: "",
    };
    assert_eq!(
        enc(&Reply::V4Status {
            p: &p,
            status: ca,
            first: false
        }),
        frame("35 01 11 97 01 06 98 04 6553f100 ff")
    );
    let nul = V4Status {
        code: 1,
        text: "a\0b",
    };
    assert_eq!(
        Reply::V4Status {
            p: &p,
            status: nul,
            first: false
        }
        .frame_len(),
        Err(EncodeError::Invalid("status text contains NUL"))
    );
}

#[test]
fn v4_long_option_is_split_per_rfc3396() {
    let p = v4p(&[]);
    let long_id: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut rec = v4rec();
    rec.client_id = Some(&long_id);
    rec.relay_id = None;
    let f = enc(&Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let m = &f[2..];
    let at = m.windows(2).position(|w| w == [61, 255]).unwrap();
    assert_eq!(&m[at + 2..at + 257], &long_id[..255]);
    assert_eq!(&m[at + 257..at + 259], &[61, 45]);
    assert_eq!(&m[at + 259..at + 304], &long_id[255..]);
    // dhcproto joins consecutive pieces back into one value.
    let d = dhcproto::v4::Message::decode(&mut Decoder::new(m)).unwrap();
    assert_eq!(
        d.opts().get(dhcproto::v4::OptionCode::ClientIdentifier),
        Some(&dhcproto::v4::DhcpOption::ClientIdentifier(long_id.clone()))
    );
}

const O6_CLIENT_DATA: &str = "
    0001 000a 00030001020000000001
    002e 0004 0000001e
    005c 001d c6336407 80 20010db8ffff00000000000000001234 005d 0004 00 04 3000
    0060 0035 005a 0010 20010db800000000000000000000000b
              005c 001d c6336407 80 20010db8ffff00000000000000001234 005d 0004 00 04 3000
    0089 0008 38 20010db8aa0000
    002f 0048 00000000000000000000000000000000
              0c 00 20010db8000100000000000000000001 fe800000000000000000000000000001
              0012 0004 65746830
              0035 000a 000300010a0b0c0d0e0f";

/// codepoints-and-scenarios.md §4.4, expected answer shape: REPLY{CLIENTID, SERVERID,
/// DHCPV4_MSG{LEASEACTIVE..}, CLIENT_DATA{CLIENTID, CLT_TIME, 92{.., 93}}}, then DATA, then DONE.
#[test]
fn dhcp4o6_section_4_4_answer_shape() {
    let p = o6p(&[v6opt::S46_V4V6BIND], &[91, 159]);
    let rec = v4rec();
    let reply = enc(&Reply::O6Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    let (t, xid, o) = v6_parts(&reply);
    assert_eq!((t, xid, codes(&o)), (15, 0xabcdef, vec![1, 2, 87, 45]));
    assert_eq!(find(&o, 1), REQUESTOR);
    // The v4 message is exactly the plain v4 binding (with 54: first message).
    assert_eq!(find(&o, 87), &v4_binding_golden(true)[2..]);
    let cd = opts(find(&o, 45));
    assert_eq!(codes(&cd), [1, 46, 92]);
    assert_eq!(
        find(&cd, 1),
        CLIENT_DUID,
        "the DUID of the RFC 4361 client-id"
    );
    assert_eq!(
        find(&cd, 92),
        hx("c6336407 80 20010db8ffff00000000000000001234 005d 0004 0004 3000")
    );

    let data = enc(&Reply::O6Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let (t, xid, o) = v6_parts(&data);
    assert_eq!((t, xid, codes(&o)), (17, 0xabcdef, vec![87, 45]));
    assert_eq!(find(&o, 87), &v4_binding_golden(false)[2..]);

    let done = enc(&Reply::O6Done {
        p: &p,
        status: None,
    });
    let (t, _, o) = v6_parts(&done);
    assert_eq!((t, codes(&o)), (16, vec![87]));
    let v4 = dhcproto::v4::Message::decode(&mut Decoder::new(find(&o, 87))).unwrap();
    assert_eq!(v4.xid(), 0x11223344);
    assert_eq!(
        v4.opts().get(dhcproto::v4::OptionCode::MessageType),
        Some(&dhcproto::v4::DhcpOption::MessageType(
            dhcproto::v4::MessageType::LeaseQueryDone
        ))
    );
    assert_eq!(
        v4.opts().get(dhcproto::v4::OptionCode::ServerIdentifier),
        None
    );
}

#[test]
fn dhcp4o6_client_data_all_related_options_golden() {
    let oro = [
        v6opt::S46_V4V6BIND,
        v6opt::S46_CONT_LW,
        v6opt::S46_BIND_IPV6_PREFIX,
        v6opt::LQ_RELAY_DATA,
    ];
    let p = o6p(&oro, &[]);
    let rec = v4rec();
    let frame = enc(&Reply::O6Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let (_, _, o) = v6_parts(&frame);
    assert_eq!(find(&o, 45), hx(O6_CLIENT_DATA));
}

/// Scenario 54: no known softwire source -> no S46_V4V6BIND (and no LW container) is made up.
#[test]
fn scenario_54_no_softwire_source_no_92() {
    let p = o6p(&[v6opt::S46_V4V6BIND, v6opt::S46_CONT_LW], &[109]);
    let mut rec = v4rec();
    rec.softwire_src = None;
    rec.cltt = 0; // unknown: CLT_TIME counts from the state start
    let frame = enc(&Reply::O6Binding {
        p: &p,
        rec: &rec,
        first: false,
    });
    let (_, _, o) = v6_parts(&frame);
    let cd = opts(find(&o, 45));
    assert_eq!(codes(&cd), [1, 46]);
    assert_eq!(find(&cd, 46), 3600u32.to_be_bytes());
    assert!(!find(&o, 87).windows(2).any(|w| w == [109, 16]));
}

#[test]
fn dhcp4o6_statuses_mean_the_same_in_both_layers() {
    let p = o6p(&[], &[]);
    let check = |frame: &[u8], v6_type: u8, v6_st: Option<u16>, v4_type: u8, v4_st: Option<u8>| {
        let (t, _, o) = v6_parts(frame);
        assert_eq!(t, v6_type);
        let got6 = o
            .iter()
            .find(|x| x.0 == 13)
            .map(|x| u16::from_be_bytes([x.1[0], x.1[1]]));
        assert_eq!(got6, v6_st);
        assert!(!codes(&o).contains(&45));
        let m = find(&o, 87);
        assert!(m.len() >= 240);
        let opts4 = &m[240..];
        assert_eq!(&opts4[..3], &[53, 1, v4_type]);
        let st_at = opts4.windows(1).position(|w| w[0] == 151);
        assert_eq!(st_at.map(|i| opts4[i + 2]), v4_st);
    };
    // Scenario 48/52: MalformedQuery 8 <-> 3, in a lone REPLY (whose DONE carries 54).
    let mq = V6Status {
        code: v6status::MALFORMED_QUERY,
        text: "",
    };
    let r = enc(&Reply::O6Reply {
        p: &p,
        status: Some(mq),
    });
    check(&r, 15, Some(8), 15, Some(3));
    assert!(r.windows(6).any(|w| w == [54, 4, 192, 0, 2, 1]));
    // Scenario 53: zero matches -> lone REPLY with a success DONE.
    check(
        &enc(&Reply::O6Reply {
            p: &p,
            status: None,
        }),
        15,
        None,
        15,
        None,
    );
    // Late error: DONE QueryTerminated 11 <-> 2.
    let qt = V6Status {
        code: v6status::QUERY_TERMINATED,
        text: "",
    };
    check(
        &enc(&Reply::O6Done {
            p: &p,
            status: Some(qt),
        }),
        16,
        Some(11),
        15,
        Some(2),
    );
    // Scenario 55: CatchUpComplete 13 <-> 7 as DATA + DHCPLEASEQUERYSTATUS.
    let cuc = V6Status {
        code: v6status::CATCH_UP_COMPLETE,
        text: "",
    };
    check(
        &enc(&Reply::O6DataStatus { p: &p, status: cuc }),
        17,
        Some(13),
        17,
        Some(7),
    );
    // Keepalive: v6 empty DATA, v4 ConnectionActive (no v6 twin).
    check(&enc(&Reply::O6Keepalive { p: &p }), 17, None, 17, Some(6));
}

#[test]
fn data_and_done_never_carry_clientid_serverid_status() {
    let p = o6p(&[v6opt::LQ_BASE_TIME], &[]);
    let rec = v4rec();
    let v6r = v6rec();
    for f in [
        enc(&Reply::V6Binding {
            p: &p.v6,
            rec: &v6r,
            first: false,
        }),
        enc(&Reply::V6Done {
            p: &p.v6,
            status: None,
        }),
        enc(&Reply::V6Keepalive { p: &p.v6 }),
        enc(&Reply::O6Binding {
            p: &p,
            rec: &rec,
            first: false,
        }),
        enc(&Reply::O6Done {
            p: &p,
            status: None,
        }),
        enc(&Reply::O6Keepalive { p: &p }),
    ] {
        let (_, _, o) = v6_parts(&f);
        for c in [v6opt::CLIENTID, v6opt::SERVERID, v6opt::STATUS_CODE] {
            assert!(!codes(&o).contains(&c), "{c} in {:?}", codes(&o));
        }
    }
}

#[test]
fn base_time_in_every_message_when_asked() {
    let mut p = o6p(&[v6opt::LQ_BASE_TIME], &[]);
    p.v6.base_time = true;
    let rec = v4rec();
    let v6r = v6rec();
    let st = V6Status {
        code: v6status::DATA_MISSING,
        text: "",
    };
    let frames = [
        enc(&Reply::V6Binding {
            p: &p.v6,
            rec: &v6r,
            first: true,
        }),
        enc(&Reply::V6Binding {
            p: &p.v6,
            rec: &v6r,
            first: false,
        }),
        enc(&Reply::V6Reply {
            p: &p.v6,
            status: None,
        }),
        enc(&Reply::V6Done {
            p: &p.v6,
            status: None,
        }),
        enc(&Reply::V6DataStatus {
            p: &p.v6,
            status: st,
        }),
        enc(&Reply::V6Keepalive { p: &p.v6 }),
        enc(&Reply::O6Binding {
            p: &p,
            rec: &rec,
            first: true,
        }),
        enc(&Reply::O6Binding {
            p: &p,
            rec: &rec,
            first: false,
        }),
        enc(&Reply::O6Reply {
            p: &p,
            status: None,
        }),
        enc(&Reply::O6Done {
            p: &p,
            status: None,
        }),
        enc(&Reply::O6DataStatus { p: &p, status: st }),
        enc(&Reply::O6Keepalive { p: &p }),
    ];
    for f in &frames {
        let (_, _, o) = v6_parts(f);
        assert_eq!(find(&o, v6opt::LQ_BASE_TIME), hx("2ce6ad80"));
        // Never inside CLIENT_DATA.
        if let Some(cd) = o.iter().find(|x| x.0 == 45) {
            assert!(!codes(&opts(cd.1)).contains(&v6opt::LQ_BASE_TIME));
        }
    }
}

#[test]
fn full_buffer_refuses_without_writing_then_resumes() {
    let p = v4p(&[91, 159]);
    let rec = v4rec();
    let first = Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: true,
    };
    let next = Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: false,
    };
    let (a, b) = (first.frame_len().unwrap(), next.frame_len().unwrap());
    let mut buf = Vec::with_capacity(a + 2 * b);
    let cap = buf.capacity();
    let mut w = StreamWriter::with_limit(&mut buf, a + 2 * b);
    assert_eq!(w.write(&first).unwrap().start, 0);
    assert_eq!(w.write(&next).unwrap().start, a);
    assert_eq!(w.write(&next).unwrap().start, a + b);
    assert_eq!(w.remaining(), 0);
    let before = buf.clone();
    let mut w = StreamWriter::with_limit(&mut buf, a + 2 * b);
    assert_eq!(
        w.write(&next),
        Err(EncodeError::BufferFull {
            needed: b,
            available: 0
        })
    );
    assert_eq!(buf, before, "a refused record leaves the buffer unchanged");
    assert_eq!(buf.capacity(), cap, "never reallocated");
    // The caller flushes and resumes with the same record.
    buf.clear();
    let at = StreamWriter::new(&mut buf).write(&next).unwrap();
    assert_eq!((at.start, at.len), (0, b));
    assert_eq!(buf, v4_binding_golden(false));
}

#[test]
fn too_long_is_an_error_not_a_truncation() {
    let p = v6p(&[], false);
    let huge = vec![7u8; 65_530];
    let mut rec = v6rec();
    rec.duid = &huge; // CLIENT_DATA payload would exceed 65535
    let r = Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: true,
    };
    assert!(matches!(r.frame_len(), Err(EncodeError::TooLong { .. })));
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(b"xy");
    assert!(matches!(
        StreamWriter::new(&mut buf).write(&r),
        Err(EncodeError::TooLong { .. })
    ));
    assert_eq!(buf, b"xy");
    // A message just under the limit is fine; the frame counts 65535 + 2.
    let p = v6p(&[], false);
    let duid = vec![1u8; 65535 - 4 - 14 - 4];
    let r = Reply::V6Reply {
        p: &V6ReplyParams {
            requestor_duid: &duid,
            ..p
        },
        status: None,
    };
    assert_eq!(r.frame_len(), Ok(65537));
}

#[test]
fn xid_patching_equals_fresh_encoding() {
    let p = o6p(&[v6opt::S46_V4V6BIND], &[91]);
    let rec = v4rec();
    let mut buf = Vec::with_capacity(4096);
    buf.extend_from_slice(&[0xee; 5]); // something already in the buffer
    let at = StreamWriter::new(&mut buf)
        .write(&Reply::O6Binding {
            p: &p,
            rec: &rec,
            first: false,
        })
        .unwrap();
    assert_eq!(at.start, 5);
    assert_eq!(at.v6_xid_at, Some(5 + 3));
    patch_xids(&mut buf, &at, 0x01020304, 0xdeadbeef); // v6 keeps 24 bits
    let mut q = o6p(&[v6opt::S46_V4V6BIND], &[91]);
    q.v6.xid = 0x020304;
    q.v4.xid = 0xdeadbeef;
    assert_eq!(
        &buf[5..],
        &enc(&Reply::O6Binding {
            p: &q,
            rec: &rec,
            first: false
        })[..]
    );

    let v4 = v4p(&[]);
    let mut buf = Vec::with_capacity(4096);
    let at = StreamWriter::new(&mut buf)
        .write(&Reply::V4Binding {
            p: &v4,
            rec: &rec,
            first: false,
        })
        .unwrap();
    assert_eq!((at.v6_xid_at, at.v4_xid_at), (None, Some(2 + 4)));
    patch_xids(&mut buf, &at, 0, 7);
    assert_eq!(&buf[6..10], &[0, 0, 0, 7]);
    // Offsets out of range are ignored, not a panic.
    let mut short = [0u8; 3];
    patch_xids(&mut short, &at, 1, 2);
    assert_eq!(short, [0; 3]);
}

#[test]
fn dhcproto_decodes_the_v6_and_v4_messages() {
    use dhcproto::v6;
    let p = v6p(&[], false);
    let rec = v6rec();
    let f = enc(&Reply::V6Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    let m = v6::Message::decode(&mut Decoder::new(&f[2..])).unwrap();
    assert_eq!(m.msg_type(), v6::MessageType::LeaseQueryReply);
    assert_eq!(m.xid_num(), 0xabcdef);
    assert_eq!(
        m.opts().get(v6::OptionCode::ClientId),
        Some(&v6::DhcpOption::ClientId(REQUESTOR.to_vec()))
    );
    assert_eq!(
        m.opts().get(v6::OptionCode::ServerId),
        Some(&v6::DhcpOption::ServerId(SERVER.to_vec()))
    );
    let f = enc(&Reply::V6Done {
        p: &p,
        status: None,
    });
    let m = v6::Message::decode(&mut Decoder::new(&f[2..])).unwrap();
    assert_eq!(m.msg_type(), v6::MessageType::LeaseQueryDone);

    use dhcproto::v4;
    let p = v4p(&[91]);
    let rec = v4rec();
    let f = enc(&Reply::V4Binding {
        p: &p,
        rec: &rec,
        first: true,
    });
    let m = v4::Message::decode(&mut Decoder::new(&f[2..])).unwrap();
    assert_eq!(m.opcode(), v4::Opcode::BootReply);
    assert_eq!(
        (m.xid(), m.ciaddr(), m.chaddr()),
        (0x11223344, rec.addr, &CHADDR[..])
    );
    let o = m.opts();
    assert_eq!(
        o.get(v4::OptionCode::MessageType),
        Some(&v4::DhcpOption::MessageType(v4::MessageType::LeaseActive))
    );
    assert_eq!(
        o.get(v4::OptionCode::ServerIdentifier),
        Some(&v4::DhcpOption::ServerIdentifier(p.server_id))
    );
    assert_eq!(
        o.get(v4::OptionCode::AddressLeaseTime),
        Some(&v4::DhcpOption::AddressLeaseTime(3000))
    );
    assert_eq!(
        o.get(v4::OptionCode::BulkLeaseQueryBaseTime),
        Some(&v4::DhcpOption::BulkLeaseQueryBaseTime(NOW))
    );
    assert_eq!(
        o.get(v4::OptionCode::ClientLastTransactionTime),
        Some(&v4::DhcpOption::ClientLastTransactionTime(30))
    );
    assert_eq!(o.get(v4::OptionCode::AssociatedIp), None);
}

/// duid, (addr, preferred, valid)*, (prefix, len, preferred, valid)*, cltt, relay-id.
type ArbV6 = (
    Vec<u8>,
    Vec<(u128, u32, u32)>,
    Vec<(u128, u8, u32, u32)>,
    u32,
    Option<Vec<u8>>,
);

fn arb_v6() -> impl Strategy<Value = ArbV6> {
    (
        proptest::collection::vec(any::<u8>(), 1..40),
        proptest::collection::vec((any::<u128>(), any::<u32>(), any::<u32>()), 0..4),
        proptest::collection::vec((any::<u128>(), 0u8..=128, any::<u32>(), any::<u32>()), 0..4),
        any::<u32>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..30)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any v6 binding: the frame is exactly frame_len() long, options nest cleanly, every
    /// lifetime is the remaining one (saturating, infinity kept), and dhcproto reads it.
    #[test]
    fn v6_binding_roundtrips(
        (duid, addrs, prefixes, cltt, relay) in arb_v6(),
        now in any::<u32>(),
        first in any::<bool>(),
    ) {
        let iana: Vec<V6Addr> = addrs.iter().map(|&(a, pr, va)| V6Addr { addr: a.into(), preferred_until: pr, valid_until: va }).collect();
        let iapd: Vec<V6Prefix> = prefixes.iter().map(|&(a, l, pr, va)| V6Prefix { prefix: a.into(), prefix_len: l, preferred_until: pr, valid_until: va }).collect();
        let rec = V6Record { duid: &duid, link: Ipv6Addr::UNSPECIFIED, iana: &iana, iapd: &iapd, cltt, relay_id: relay.as_deref(), remote_id: None };
        let mut p = v6p(&[v6opt::RELAY_ID], now % 2 == 0);
        p.now = now;
        let f = enc(&Reply::V6Binding { p: &p, rec: &rec, first });
        let (t, xid, o) = v6_parts(&f);
        prop_assert_eq!(t, if first { 15 } else { 17 });
        prop_assert_eq!(xid, 0xabcdef);
        let cd = opts(find(&o, 45));
        prop_assert_eq!(find(&cd, 1), &duid[..]);
        let rem = |u: u32| if u == u32::MAX { u32::MAX } else { u.saturating_sub(now) };
        let got_addrs: Vec<&[u8]> = cd.iter().filter(|x| x.0 == 5).map(|x| x.1).collect();
        prop_assert_eq!(got_addrs.len(), iana.len());
        for (g, a) in got_addrs.iter().zip(&iana) {
            prop_assert_eq!(&g[..16], &a.addr.octets()[..]);
            prop_assert_eq!(&g[16..20], &rem(a.preferred_until).to_be_bytes()[..]);
            prop_assert_eq!(&g[20..24], &rem(a.valid_until).to_be_bytes()[..]);
        }
        let got_pfx: Vec<&[u8]> = cd.iter().filter(|x| x.0 == 26).map(|x| x.1).collect();
        prop_assert_eq!(got_pfx.len(), iapd.len());
        for (g, a) in got_pfx.iter().zip(&iapd) {
            prop_assert_eq!(&g[4..8], &rem(a.valid_until).to_be_bytes()[..]);
            prop_assert_eq!(g[8], a.prefix_len);
        }
        prop_assert_eq!(find(&cd, 46), &now.saturating_sub(cltt).to_be_bytes()[..]);
        prop_assert_eq!(cd.iter().any(|x| x.0 == 53), relay.is_some());
        let m = dhcproto::v6::Message::decode(&mut Decoder::new(&f[2..])).unwrap();
        prop_assert_eq!(m.xid_num(), 0xabcdef);
    }

    /// Any v4 binding decodes with dhcproto to the record's fields.
    #[test]
    fn v4_binding_roundtrips(
        addr in any::<u32>(), xid in any::<u32>(), chaddr in proptest::collection::vec(any::<u8>(), 0..=16),
        active in any::<bool>(), now in any::<u32>(), expires in any::<u32>(),
        client_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 2..300)),
        first in any::<bool>(),
    ) {
        let mut rec = v4rec();
        rec.addr = addr.into();
        rec.chaddr = &chaddr;
        rec.state = if active { dhcp_state::ACTIVE } else { dhcp_state::RELEASED };
        rec.expires = expires;
        rec.client_id = client_id.as_deref();
        let mut p = v4p(&[]);
        p.xid = xid;
        p.now = now;
        let f = enc(&Reply::V4Binding { p: &p, rec: &rec, first });
        use dhcproto::v4;
        let m = v4::Message::decode(&mut Decoder::new(&f[2..])).unwrap();
        prop_assert_eq!((m.xid(), m.ciaddr(), m.hlen() as usize), (xid, rec.addr, chaddr.len()));
        let o = m.opts();
        let want = if active { v4::MessageType::LeaseActive } else { v4::MessageType::LeaseUnassigned };
        prop_assert_eq!(o.get(v4::OptionCode::MessageType), Some(&v4::DhcpOption::MessageType(want)));
        prop_assert_eq!(o.get(v4::OptionCode::ServerIdentifier).is_some(), first);
        let lease = (expires != 0).then(|| v4::DhcpOption::AddressLeaseTime(expires.saturating_sub(now)));
        prop_assert_eq!(o.get(v4::OptionCode::AddressLeaseTime), lease.as_ref());
        let cid = client_id.clone().map(v4::DhcpOption::ClientIdentifier);
        prop_assert_eq!(o.get(v4::OptionCode::ClientIdentifier), cid.as_ref());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any DHCP4o6 binding: v6 options nest cleanly, the inner v4 message is the plain v4
    /// encoding, 92 appears exactly when asked and a softwire source is known, and patching
    /// the xids equals encoding with them.
    #[test]
    fn dhcp4o6_binding_roundtrips(
        src in proptest::option::of(any::<u128>()),
        psid in proptest::option::of((0u8..=15, 0u8..=16, any::<u16>())),
        oro in proptest::collection::vec(prop_oneof![Just(92u16), Just(96), Just(137), Just(47), Just(100)], 0..5),
        plen in 0u8..=128,
        first in any::<bool>(),
        xids in (any::<u32>(), any::<u32>()),
    ) {
        let mut rec = v4rec();
        rec.softwire_src = src.map(Ipv6Addr::from);
        rec.port_params = psid.map(|(offset, psid_len, v)| PortParams {
            offset,
            psid_len,
            psid: if psid_len == 0 { 0 } else { v >> (16 - psid_len) },
        });
        let mut p = o6p(&oro, &[159, 109]);
        p.bind_prefix = Some((plen, Ipv6Addr::from(u128::MAX)));
        let frame = enc(&Reply::O6Binding { p: &p, rec: &rec, first });
        let (t, _, o) = v6_parts(&frame);
        prop_assert_eq!(t, if first { 15 } else { 17 });
        let v4 = enc(&Reply::V4Binding { p: &p.v4, rec: &rec, first });
        prop_assert_eq!(find(&o, 87), &v4[2..]);
        let cd = opts(find(&o, 45));
        prop_assert_eq!(cd.iter().any(|x| x.0 == 92), src.is_some() && oro.contains(&92));
        prop_assert_eq!(cd.iter().any(|x| x.0 == 96), src.is_some() && oro.contains(&96));
        if oro.contains(&137) {
            prop_assert_eq!(find(&cd, 137).len(), 1 + usize::from(plen).div_ceil(8));
        }
        if let Some(b) = cd.iter().find(|x| x.0 == 92) {
            let sub = opts(&b.1[21..]);
            prop_assert_eq!(sub.len(), usize::from(psid.is_some()));
        }
        let mut buf = Vec::with_capacity(frame.len());
        let at = StreamWriter::new(&mut buf).write(&Reply::O6Binding { p: &p, rec: &rec, first }).unwrap();
        patch_xids(&mut buf, &at, xids.0, xids.1);
        let mut q = p.clone();
        q.v6.xid = xids.0 & 0xff_ffff;
        q.v4.xid = xids.1;
        prop_assert_eq!(buf, enc(&Reply::O6Binding { p: &q, rec: &rec, first }));
    }
}
