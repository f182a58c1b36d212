//! What the conformance scenarios share: import files, query builders and stream readers.

use crate::common::Conn;
use crate::common::Server;
use crate::common::ServerBuilder;
use leasequery::proto::codes::query_type;
use leasequery::proto::codes::v4msg;
use leasequery::proto::codes::v4opt;
use leasequery::proto::codes::v4relay;
use leasequery::proto::codes::v6msg;
use leasequery::proto::codes::v6opt;
use leasequery::proto::record::PortParams;
use leasequery::proto::v4;
use leasequery::proto::v4::V4Option;
use leasequery::proto::v6;
use leasequery::proto::v6::Message;
use leasequery::proto::v6::V6Option;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

pub(crate) const RELAY: &str = "000300010a0000000003";

/// Three clients behind one relay on link 2001:db8:2::, one behind another relay.
pub(crate) fn import() -> String {
    let mut s = String::new();
    for i in 0..3 {
        s.push_str(&format!(
            "{{\"duid\":\"00030001020000000{i}00\",\"link\":\"2001:db8:2::\",\"iana\":[{{\"addr\":\"2001:db8:2::{}\",\"preferred\":3600,\"valid\":7200}}],\"cltt\":1767225600,\"relay_id\":\"{RELAY}\",\"remote_id\":\"00000de9aabb{i:02x}\"}}\n",
            i + 5
        ));
    }
    s.push_str("{\"duid\":\"000300010200000009ff\",\"link\":\"2001:db8:3::\",\"iana\":[{\"addr\":\"2001:db8:3::1\",\"preferred\":3600,\"valid\":7200}],\"cltt\":1767225600,\"relay_id\":\"000300010a00000000ff\"}\n");
    s
}

pub(crate) const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

pub(crate) fn lq(xid: u32, qtype: u8, link: &str, qopts: Vec<V6Option>) -> Vec<u8> {
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            V6Option::LqQuery {
                query_type: qtype,
                link_address: link.parse().unwrap(),
                options: qopts,
            },
        ],
    };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

pub(crate) fn relay_q(xid: u32) -> Vec<u8> {
    lq(
        xid,
        query_type::BY_RELAY_ID,
        "::",
        vec![V6Option::RelayId(hex::decode(RELAY).unwrap())],
    )
}

pub(crate) fn status(m: &Message) -> Option<u16> {
    m.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } => Some(*code),
        _ => None,
    })
}

pub(crate) fn has(m: &Message, code: u16) -> bool {
    m.options.iter().any(|o| o.code() == code)
}

pub(crate) fn recv(c: &mut Conn) -> Message {
    Message::decode(&c.recv().expect("a reply")).unwrap()
}

/// Reads one whole stream: a lone REPLY, or REPLY, DATA..., DONE.
pub(crate) fn stream(c: &mut Conn) -> Vec<Message> {
    let first = recv(c);
    assert_eq!(first.msg_type, v6msg::LEASEQUERY_REPLY);
    let data = has(&first, v6opt::CLIENT_DATA);
    let mut out = vec![first];
    if data {
        loop {
            let m = recv(c);
            let done = m.msg_type == v6msg::LEASEQUERY_DONE;
            out.push(m);
            if done {
                break;
            }
        }
    }
    out
}

/// `n` plain v6 bindings on link 2001:db8:7::, each with `addrs` IA_NA addresses.
pub(crate) fn v6_import(n: usize, addrs: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let mut iana = String::new();
        for a in 0..addrs {
            if a > 0 {
                iana.push(',');
            }
            write!(
                iana,
                r#"{{"addr":"2001:db8:7::{:x}:{:x}","preferred":3600,"valid":7200}}"#,
                i, a
            )
            .unwrap();
        }
        writeln!(
            s,
            r#"{{"duid":"0003000102{i:08x}","link":"2001:db8:7::","iana":[{iana}],"cltt":1767225600,"relay_id":"000300010a0000000007"}}"#
        )
        .unwrap();
    }
    s
}

/// `n` DHCP4o6 bindings (v4 bulk answers are about 300 octets each).
pub(crate) fn v4_bulk_import(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let a = std::net::Ipv4Addr::from(0xc633_6400u32 + (i / 16) as u32);
        writeln!(
            s,
            r#"{{"ipv4":"{a}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"020000{:06x}","client_id":"ff{:08x}0003000102{:08x}","state":"active","cltt":1767225600,"expires":1867225600,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}:{:x}"}}"#,
            i % 16,
            i,
            i,
            i,
            i >> 16,
            i & 0xffff
        )
        .unwrap();
    }
    s
}

/// LEASEQUERY by link-address 2001:db8:7::.
pub(crate) fn by_link(xid: u32) -> Vec<u8> {
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options: vec![
            V6Option::ClientId(REQUESTOR.to_vec()),
            V6Option::LqQuery {
                query_type: query_type::BY_LINK_ADDRESS,
                link_address: "2001:db8:7::".parse().unwrap(),
                options: vec![],
            },
        ],
    };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

pub(crate) fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

pub(crate) fn client_data(m: &Message) -> Option<&Vec<V6Option>> {
    m.options.iter().find_map(|o| match o {
        V6Option::ClientData(d) => Some(d),
        _ => None,
    })
}

/// Reads messages until every xid in `xids` has ended its stream; returns per xid the message
/// types in order, and the largest number of streams seen open at once.
pub(crate) fn read_streams(c: &mut Conn, xids: &[u32]) -> (HashMap<u32, Vec<u8>>, usize) {
    let mut seen: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut open = 0usize;
    let mut max_open = 0usize;
    let mut ended = 0;
    while ended < xids.len() {
        let m = recv(c);
        assert!(xids.contains(&m.xid), "unexpected xid {}", m.xid);
        let types = seen.entry(m.xid).or_default();
        if types.is_empty() {
            assert_eq!(
                m.msg_type,
                v6msg::LEASEQUERY_REPLY,
                "a stream starts with REPLY"
            );
            open += 1;
            max_open = max_open.max(open);
        }
        types.push(m.msg_type);
        let lone_reply = m.msg_type == v6msg::LEASEQUERY_REPLY && client_data(&m).is_none();
        if m.msg_type == v6msg::LEASEQUERY_DONE || lone_reply {
            open -= 1;
            ended += 1;
        }
    }
    (seen, max_open)
}

// ---------------------------------------------------------------------------------------------
// Shared data and helpers
// ---------------------------------------------------------------------------------------------

pub(crate) const BOOTREQUEST: u8 = 1;

pub(crate) const BOOTREPLY: u8 = 2;

/// The default DHCPv4 server identifier (option 54) of the server.
pub(crate) const SERVER_ID: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub(crate) const EXPIRES: u32 = 1_864_000_000;

/// Relay-id (82/12) shared by L1, L2 and L3; client-id (61) shared by L1 and L2.
pub(crate) const RELAY_A: &str = "0003000102000000aa02";

pub(crate) const CID_A: &str = "01aabbccddee01";

/// Plain v4 bindings: L1, L2 active with the same client-id; L3 released; L4 active without
/// client-id or relay information.
pub(crate) fn v4_import() -> String {
    [
        format!(r#"{{"ipv4":"192.0.2.10","chaddr":"02:00:00:00:02:00","client_id":"{CID_A}","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_A}","remote_id":"52530000"}}"#),
        format!(r#"{{"ipv4":"192.0.2.11","chaddr":"02:00:00:00:02:01","client_id":"{CID_A}","state":"active","cltt":1764000100,"expires":{EXPIRES},"relay_id":"{RELAY_A}","remote_id":"52530001"}}"#),
        format!(r#"{{"ipv4":"192.0.2.12","chaddr":"02:00:00:00:02:02","client_id":"01aabbccddee03","state":"released","cltt":1764000200,"expires":1764000200,"relay_id":"{RELAY_A}","remote_id":"52530002"}}"#),
        format!(r#"{{"ipv4":"192.0.2.13","chaddr":"02:00:00:00:02:03","state":"active","cltt":1764000300,"expires":{EXPIRES}}}"#),
    ]
    .join("\n")
}

pub(crate) fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as u32
}

/// A DHCPBULKLEASEQUERY (BOOTREQUEST, option 53 = 14) with `xid`, shaped by `f`.
pub(crate) fn bulk_v4(xid: u32, f: impl FnOnce(&mut v4::Message)) -> Vec<u8> {
    let mut m = v4::Message::new(BOOTREQUEST, v4msg::BULKLEASEQUERY, xid);
    f(&mut m);
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode v4 query");
    out
}

/// Option 82 with the given sub-options, raw.
pub(crate) fn rai(subs: &[(u8, &[u8])]) -> V4Option {
    let mut data = Vec::new();
    for (code, v) in subs {
        data.push(*code);
        data.push(v.len() as u8);
        data.extend_from_slice(v);
    }
    V4Option::Unknown {
        code: v4opt::RELAY_AGENT_INFO,
        data,
    }
}

pub(crate) fn raw_opt(code: u8, data: &[u8]) -> V4Option {
    V4Option::Unknown {
        code,
        data: data.to_vec(),
    }
}

pub(crate) fn recv_v4(c: &mut Conn) -> v4::Message {
    let b = c.recv().expect("server closed the connection");
    v4::Message::decode(&b).expect("reply decodes as DHCPv4")
}

pub(crate) fn status_v4(m: &v4::Message) -> Option<(u8, String)> {
    match m.option(v4opt::STATUS_CODE) {
        Some(V4Option::StatusCode { code, message }) => Some((*code, message.clone())),
        None => None,
        Some(o) => panic!("option 151 decoded as {o:?}"),
    }
}

pub(crate) fn server_id_of(m: &v4::Message) -> Option<Ipv4Addr> {
    match m.option(v4opt::SERVER_ID) {
        Some(V4Option::ServerId(a)) => Some(*a),
        None => None,
        Some(o) => panic!("option 54 decoded as {o:?}"),
    }
}

pub(crate) fn u32_opt(m: &v4::Message, code: u8) -> Option<u32> {
    m.option(code).map(|o| match o {
        V4Option::BaseTime(v) | V4Option::LeaseTime(v) => *v,
        o => panic!("option {code} decoded as {o:?}"),
    })
}

/// Asserts a lone DHCPLEASEQUERYDONE for `xid`: BOOTREPLY, zero ciaddr and chaddr, option 54
/// (it is the first message of the stream), `status` in option 151 (None = no 151).
pub(crate) fn assert_lone_done(m: &v4::Message, xid: u32, status: Option<u8>) {
    assert_eq!(m.op, BOOTREPLY);
    assert_eq!(m.message_type(), Some(v4msg::LEASEQUERYDONE));
    assert_eq!(m.xid, xid);
    assert_eq!(m.ciaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!((m.htype, m.hlen), (0, 0));
    assert_eq!(server_id_of(m), Some(SERVER_ID));
    assert_eq!(status_v4(m).map(|s| s.0), status);
    assert!(m.option(v4opt::BASE_TIME).is_some());
}

/// Sends `query` and returns every message up to and including the DONE of `xid`, plus the
/// time window `[t0, t1]` (Unix seconds) around the exchange.
pub(crate) fn exchange_v4(c: &mut Conn, query: &[u8], xid: u32) -> (Vec<v4::Message>, u32, u32) {
    let t0 = unix_now();
    c.send(query);
    let mut out = Vec::new();
    loop {
        let m = recv_v4(c);
        assert_eq!(m.xid, xid, "message for another query");
        let done = m.message_type() == Some(v4msg::LEASEQUERYDONE);
        out.push(m);
        if done {
            return (out, t0, unix_now());
        }
    }
}

/// A server with `import` and no lease authority: these scenarios are about the imported
/// bindings (with the authority's pools, "all configured addresses" also lists every pool
/// address without a binding: `tests/conformance/rfc7341.rs`).
pub(crate) fn started(import: String, shards: usize) -> Server {
    ServerBuilder::new()
        .shards(shards)
        .import(import)
        .arg("--no-authority")
        .start()
}

/// Sets one of the address fields of a query.
pub(crate) type SetAddr = fn(&mut v4::Message, Ipv4Addr);

// ---------------------------------------------------------------------------------------------
// DHCP4o6 bulk over TCP 547 (scenarios 47-54)
// ---------------------------------------------------------------------------------------------

pub(crate) const REQUESTOR_DUID: &str = "00030001aabbccddeeff";

pub(crate) const RELAY_4O6: &str = "0003000102000000aa01";

pub(crate) const LINK1: &str = "2001:db8:1::";

/// 4o6 bindings: B1, B2 on relay RELAY_4O6 with softwire sources and port sets; B3 on the same
/// relay, no softwire source; B4 on another link and relay. Plus one plain v6 binding on the
/// same relay (scenario 50).
pub(crate) fn o6_import() -> String {
    [
        format!(r#"{{"ipv4":"198.51.100.10","psid":{{"offset":0,"len":4,"id":1}},"chaddr":"02:00:00:00:01:01","client_id":"ff0000000100030001020000000101","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_4O6}","remote_id":"00000de900000001","link":"{LINK1}","softwire_src":"2001:db8:1:0:1::1"}}"#),
        format!(r#"{{"ipv4":"198.51.100.10","psid":{{"offset":0,"len":4,"id":2}},"chaddr":"02:00:00:00:01:02","client_id":"ff0000000200030001020000000102","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"{RELAY_4O6}","remote_id":"00000de900000002","link":"{LINK1}","softwire_src":"2001:db8:1:0:1::2"}}"#),
        format!(r#"{{"ipv4":"198.51.100.11","chaddr":"02:00:00:00:01:03","client_id":"ff0000000300030001020000000103","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"0003000102000000aa03","link":"2001:db8:3::"}}"#),
        format!(r#"{{"ipv4":"198.51.100.12","chaddr":"02:00:00:00:01:04","state":"active","cltt":1764000000,"expires":{EXPIRES},"relay_id":"0003000102000000aa04","link":"2001:db8:4::","softwire_src":"2001:db8:4::4"}}"#),
        format!(r#"{{"duid":"000300010200000006aa","link":"{LINK1}","iana":[{{"addr":"2001:db8:1::100","preferred":3600,"valid":7200}}],"cltt":1764000000,"relay_id":"{RELAY_4O6}"}}"#),
    ]
    .join("\n")
}

/// A LEASEQUERY with the requestor's CLIENTID, OPTION_LQ_QUERY(`qt`, `link`, `qopts`) and, when
/// given, OPTION_DHCPV4_MSG holding `v4msg`.
pub(crate) fn lq6(
    xid: u32,
    qt: u8,
    link: Ipv6Addr,
    qopts: Vec<V6Option>,
    v4msg: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut options = vec![
        V6Option::ClientId(hex(REQUESTOR_DUID)),
        V6Option::LqQuery {
            query_type: qt,
            link_address: link,
            options: qopts,
        },
    ];
    if let Some(b) = v4msg {
        options.push(V6Option::Dhcpv4Msg(b));
    }
    let m = v6::Message {
        msg_type: v6msg::LEASEQUERY,
        xid,
        options,
    };
    let mut out = Vec::new();
    m.encode(&mut out).expect("encode v6 query");
    out
}

pub(crate) fn recv_v6(c: &mut Conn) -> v6::Message {
    let b = c.recv().expect("server closed the connection");
    v6::Message::decode(&b).expect("reply decodes as DHCPv6")
}

pub(crate) fn opts_of(m: &v6::Message, code: u16) -> Vec<&V6Option> {
    m.options.iter().filter(|o| o.code() == code).collect()
}

/// The DHCPv4 message inside the one OPTION_DHCPV4_MSG of `m`.
pub(crate) fn inner_v4(m: &v6::Message) -> v4::Message {
    let v = opts_of(m, v6opt::DHCPV4_MSG);
    assert_eq!(v.len(), 1, "exactly one OPTION_DHCPV4_MSG in {m:?}");
    let V6Option::Dhcpv4Msg(b) = v[0] else {
        unreachable!()
    };
    v4::Message::decode(b).expect("inner DHCPv4 message decodes")
}

pub(crate) fn status_v6(m: &v6::Message) -> Option<u16> {
    match opts_of(m, v6opt::STATUS_CODE).as_slice() {
        [] => None,
        [V6Option::StatusCode { code, .. }] => Some(*code),
        o => panic!("status options {o:?}"),
    }
}

/// Sends `query`; returns the messages of `xid` up to its end: a LEASEQUERY-DONE, or a
/// LEASEQUERY-REPLY without OPTION_CLIENT_DATA (an error or empty result).
pub(crate) fn exchange_v6(c: &mut Conn, query: &[u8], xid: u32) -> Vec<v6::Message> {
    c.send(query);
    let mut out = Vec::new();
    loop {
        let m = recv_v6(c);
        assert_eq!(m.xid, xid, "message for another query");
        let end = m.msg_type == v6msg::LEASEQUERY_DONE
            || (m.msg_type == v6msg::LEASEQUERY_REPLY
                && opts_of(&m, v6opt::CLIENT_DATA).is_empty());
        out.push(m);
        if end {
            return out;
        }
    }
}

/// Asserts a lone 4o6 error/empty REPLY: requestor CLIENTID, a SERVERID, v6 `status`, and a
/// DHCPLEASEQUERYDONE with option 54, v4 xid `v4xid` and v4 `v4status`.
pub(crate) fn assert_o6_lone_reply(
    m: &v6::Message,
    xid: u32,
    status: Option<u16>,
    v4xid: u32,
    v4st: Option<u8>,
) {
    assert_eq!(m.msg_type, v6msg::LEASEQUERY_REPLY);
    assert_eq!(m.xid, xid);
    assert_eq!(
        opts_of(m, v6opt::CLIENTID),
        vec![&V6Option::ClientId(hex(REQUESTOR_DUID))]
    );
    assert_eq!(opts_of(m, v6opt::SERVERID).len(), 1);
    assert!(opts_of(m, v6opt::CLIENT_DATA).is_empty());
    assert_eq!(status_v6(m), status);
    let d = inner_v4(m);
    assert_lone_done(&d, v4xid, v4st);
}

/// The DHCPBULKLEASEQUERY carried in OPTION_DHCPV4_MSG of a relay-id 4o6 query.
pub(crate) fn o6_relay_v4(xid: u32, relay: &[u8]) -> Vec<u8> {
    bulk_v4(xid, |m| {
        m.options.push(V4Option::ParameterRequestList(vec![
            v4opt::DHCP4O6_S46_SADDR,
            v4opt::V4_PORTPARAMS,
        ]));
        m.options.push(rai(&[(v4relay::RELAY_ID, relay)]));
    })
}

pub(crate) fn pp(id: u16) -> PortParams {
    PortParams {
        offset: 0,
        psid_len: 4,
        psid: id,
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency: 8 requestors x 4 parallel queries, 2 shards
// ---------------------------------------------------------------------------------------------

/// Bindings in the concurrency test. 100k also in debug builds: the whole test (import, 8
/// requestors, 20 streams, 2M messages) runs in about 9 s on the dev profile.
pub(crate) const BULK_N: u32 = 100_000;

pub(crate) const LINKS: u32 = 4;

pub(crate) fn bulk_link(l: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + l as u16, 0, 0, 0, 0, 0)
}

/// Binding `i`: 10.0.0.0 + i, on link i % 4, with a softwire source.
pub(crate) fn bulk_import(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 260);
    for i in 0..n {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        let b = i.to_be_bytes();
        let link = bulk_link(i % LINKS);
        let src = Ipv6Addr::from(u128::from(link) | 0x1_0000_0000 | u128::from(i));
        s.push_str(&format!(
            r#"{{"ipv4":"{ip}","chaddr":"02:00:{:02x}:{:02x}:{:02x}:{:02x}","state":"active","cltt":1764000000,"expires":{EXPIRES},"link":"{link}","softwire_src":"{src}"}}"#,
            b[0], b[1], b[2], b[3]
        ));
        s.push('\n');
    }
    s
}

/// One stream's bookkeeping: which binding indexes were seen, how many messages, whether the
/// first message carried the stream head (option 54 / LEASEQUERY-REPLY), and its end.
pub(crate) struct Stream {
    pub(crate) seen: Vec<bool>,
    pub(crate) count: u32,
    pub(crate) done: bool,
}

impl Stream {
    fn new(n: u32) -> Stream {
        Stream {
            seen: vec![false; n as usize],
            count: 0,
            done: false,
        }
    }
    fn binding(&mut self, ciaddr: Ipv4Addr, n: u32) {
        assert!(!self.done, "binding after the end of the stream");
        let i = u32::from(ciaddr).wrapping_sub(0x0a00_0000);
        assert!(i < n, "unknown address {ciaddr}");
        assert!(!self.seen[i as usize], "{ciaddr} twice in one stream");
        self.seen[i as usize] = true;
        self.count += 1;
    }
}

/// TCP 67: four parallel all-addresses queries; every stream holds every binding exactly once.
pub(crate) fn v4_requestor(c: &mut Conn, r: u32, n: u32) {
    let xids: Vec<u32> = (0..4).map(|k| 0x7700_0000 | (r << 8) | k).collect();
    for &x in &xids {
        c.send(&bulk_v4(x, |_| {}));
    }
    let mut streams: HashMap<u32, Stream> = xids.iter().map(|&x| (x, Stream::new(n))).collect();
    while streams.values().any(|s| !s.done) {
        let b = c.recv().expect("server closed mid-stream");
        let m = v4::MessageView::parse(&b).expect("v4 reply");
        let s = streams.get_mut(&m.xid).expect("reply for a query we sent");
        let first = s.count == 0 && !s.done;
        assert_eq!(
            m.has_option(v4opt::SERVER_ID),
            first,
            "option 54 only first"
        );
        match m.message_type() {
            Some(v4msg::LEASEACTIVE) => s.binding(m.ciaddr, n),
            Some(v4msg::LEASEQUERYDONE) => {
                assert!(!s.done, "two DONEs");
                assert!(!m.has_option(v4opt::STATUS_CODE), "DONE with a status");
                s.done = true;
            }
            t => panic!("unexpected message type {t:?}"),
        }
    }
    for (x, s) in streams {
        assert_eq!(s.count, n, "stream {x:#x}");
        assert!(s.seen.iter().all(|&b| b), "stream {x:#x} misses bindings");
    }
}

/// TCP 547: four parallel 4o6 link-address queries, one per link.
pub(crate) fn o6_requestor(c: &mut Conn, r: u32, n: u32) {
    let mut streams: HashMap<u32, (u32, Stream)> = HashMap::new();
    for l in 0..LINKS {
        let xid = 0x66_0000 | (r << 8) | l;
        let v4q = bulk_v4(xid << 4, |_| {});
        let q = lq6(
            xid,
            query_type::BY_LINK_ADDRESS,
            bulk_link(l),
            vec![V6Option::Oro(vec![v6opt::S46_V4V6BIND])],
            Some(v4q),
        );
        c.send(&q);
        streams.insert(xid, (l, Stream::new(n)));
    }
    while streams.values().any(|(_, s)| !s.done) {
        let b = c.recv().expect("server closed mid-stream");
        let m = v6::MessageView::parse(&b).expect("v6 reply");
        let (l, s) = streams.get_mut(&m.xid).expect("reply for a query we sent");
        let first = s.count == 0 && !s.done;
        let expect_type = match m.msg_type {
            v6msg::LEASEQUERY_DONE => None,
            t => Some(t),
        };
        let inner = m.options().get(v6opt::DHCPV4_MSG).expect("DHCPV4_MSG");
        let v = v4::MessageView::parse(inner.data).expect("inner v4");
        assert_eq!(v.xid, m.xid << 4, "v4 xid echo");
        match expect_type {
            Some(t) => {
                assert_eq!(
                    t,
                    if first {
                        v6msg::LEASEQUERY_REPLY
                    } else {
                        v6msg::LEASEQUERY_DATA
                    }
                );
                assert_eq!(v.message_type(), Some(v4msg::LEASEACTIVE));
                let i = u32::from(v.ciaddr).wrapping_sub(0x0a00_0000);
                assert_eq!(i % LINKS, *l, "binding from another link");
                let cd = m.options().get(v6opt::CLIENT_DATA).expect("CLIENT_DATA");
                let cd = cd.nested().expect("CLIENT_DATA options");
                assert!(cd.get(v6opt::S46_V4V6BIND).is_some(), "no S46_V4V6BIND");
                s.binding(v.ciaddr, n);
            }
            None => {
                assert!(!s.done, "two DONEs");
                assert!(m.options().get(v6opt::STATUS_CODE).is_none());
                assert_eq!(v.message_type(), Some(v4msg::LEASEQUERYDONE));
                s.done = true;
            }
        }
    }
    for (x, (l, s)) in streams {
        assert_eq!(s.count, n / LINKS, "stream {x:#x}");
        let missing = (0..n)
            .filter(|i| i % LINKS == l && !s.seen[*i as usize])
            .count();
        assert_eq!(missing, 0, "stream {x:#x} misses bindings");
    }
}
