//! The JSON-lines import: the example file loads into the right shards, and every kind of bad
//! line stops the load with file, line and reason.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use leasequery::feed::{load_file, load_str, ImportError};
use leasequery::lease::{
    shard_of_addr, shard_of_duid, LeaseTable, ScanStep, V4Query, V4Select, V6ContextBinding,
};
use leasequery::proto::codes::dhcp_state;
use leasequery::proto::record::{PortParams, V6Addr, V6Prefix};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-leases.jsonl")
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn demo_file_loads_into_the_owning_shards() {
    let got = load_file(&demo(), 4).unwrap();
    assert_eq!((got.v4.len(), got.v6.len()), (4, 4));
    assert_eq!((got.v4_count(), got.v6_count()), (20, 5));
    for (shard, list) in got.v4.iter().enumerate() {
        for b in list {
            assert_eq!(shard_of_addr(b.addr, 4), shard);
        }
    }
    for (shard, list) in got.v6.iter().enumerate() {
        for b in list {
            assert_eq!(shard_of_duid(&b.duid, 4), shard);
        }
    }
    // The first line, field by field.
    let first = got.v4[shard_of_addr(Ipv4Addr::new(192, 0, 2, 10), 4)]
        .iter()
        .find(|b| b.addr == Ipv4Addr::new(192, 0, 2, 10) && b.port_params.unwrap().psid == 0)
        .unwrap();
    assert_eq!(
        first.port_params,
        Some(PortParams {
            offset: 6,
            psid_len: 4,
            psid: 0
        })
    );
    assert_eq!(
        (first.htype, &first.chaddr[..]),
        (1, &[2u8, 0, 0, 0, 0x0a, 0][..])
    );
    assert_eq!(
        first.client_id.as_deref(),
        Some(&[0xff, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0x0a, 0][..])
    );
    assert_eq!(first.state, dhcp_state::ACTIVE);
    assert_eq!(
        (first.cltt, first.state_start, first.expires),
        (1767225660, 1767225660, 1767229260)
    );
    assert_eq!(
        first.relay_id.as_deref(),
        Some(&[0, 3, 0, 1, 0x0a, 0, 0, 0, 0, 1][..])
    );
    assert_eq!(first.remote_id.as_deref(), Some(&b"line-\x01"[..]));
    assert_eq!(first.softwire_src, Some(ip6("2001:db8:1:1::1")));
    assert_eq!(
        first.v6,
        Some(V6ContextBinding {
            client_src: ip6("2001:db8:1:1::1"),
            link: ip6("2001:db8:1::"),
            relay: None
        })
    );
    // Softwire source only: the link is unknown, the client source is the softwire source.
    let lone = got
        .v4
        .iter()
        .flatten()
        .find(|b| b.addr == Ipv4Addr::new(192, 0, 2, 13))
        .unwrap();
    assert_eq!(
        lone.v6,
        Some(V6ContextBinding {
            client_src: ip6("2001:db8:3::1"),
            link: Ipv6Addr::UNSPECIFIED,
            relay: None
        })
    );
    assert_eq!((lone.state, lone.expires), (dhcp_state::EXPIRED, 0));
    // A plain v4 line has no DHCPv6 context.
    let plain = got
        .v4
        .iter()
        .flatten()
        .find(|b| b.addr == Ipv4Addr::new(198, 51, 100, 1))
        .unwrap();
    assert_eq!((plain.v6.as_ref(), plain.port_params), (None, None));
    // v6 lifetimes are counted from cltt; all-ones is infinity.
    let v6 = got.v6.iter().flatten().collect::<Vec<_>>();
    let two = v6
        .iter()
        .find(|b| b.duid == [0, 3, 0, 1, 2, 0, 0, 0, 0xaa, 2])
        .unwrap();
    assert_eq!(two.link, ip6("2001:db8:10::"));
    assert_eq!(
        two.iana,
        vec![V6Addr {
            addr: ip6("2001:db8:10::2"),
            preferred_until: 1767228602 + 1800,
            valid_until: 1767228602 + 3600
        }]
    );
    assert_eq!(
        two.iapd,
        vec![V6Prefix {
            prefix: ip6("2001:db8:102::"),
            prefix_len: 56,
            preferred_until: 1767228602 + 1800,
            valid_until: 1767228602 + 3600
        }]
    );
    assert_eq!(
        two.remote_id.as_deref(),
        Some(&[0, 0, 0x0d, 0xe9, b's', b'u', b'b', 2][..])
    );
    let four = v6
        .iter()
        .find(|b| b.duid == [0, 3, 0, 1, 2, 0, 0, 0, 0xaa, 4])
        .unwrap();
    assert!(four.iana.is_empty());
    assert_eq!(
        (four.iapd[0].preferred_until, four.iapd[0].valid_until),
        (u32::MAX, u32::MAX)
    );
}

#[test]
fn demo_file_fills_shards_that_answer_queries() {
    let got = load_file(&demo(), 2).unwrap();
    let mut shards: Vec<LeaseTable> = (0..2).map(|_| LeaseTable::new()).collect();
    for (t, (v4, v6)) in shards.iter_mut().zip(got.v4.into_iter().zip(got.v6)) {
        for b in v4 {
            t.upsert_v4(b).unwrap();
        }
        for b in v6 {
            t.upsert_v6(b).unwrap();
        }
    }
    let count = |select: V4Select, only_4o6: bool| {
        let q = V4Query {
            select,
            changed_since: None,
            changed_until: None,
            only_4o6,
            only_active: false,
        };
        let mut n = 0;
        for t in &shards {
            let mut cur = t.start_v4(&q);
            assert_eq!(
                t.scan_v4(&q, &mut cur, 1000, |_| {
                    n += 1;
                    true
                }),
                ScanStep::Done
            );
        }
        n
    };
    assert_eq!(count(V4Select::All, false), 20);
    assert_eq!(count(V4Select::All, true), 13);
    assert_eq!(
        count(
            V4Select::RelayId(vec![0, 3, 0, 1, 0x0a, 0, 0, 0, 0, 1]),
            false
        ),
        8
    );
    assert_eq!(count(V4Select::Link(ip6("2001:db8:2::")), false), 4);
    assert_eq!(count(V4Select::RelayId(vec![0xc0, 0, 2, 1]), false), 4);
    assert_eq!(shards.iter().map(LeaseTable::len_v6).sum::<usize>(), 5);
}

const GOOD_V4: &str = r#"{"ipv4":"192.0.2.10","psid":{"offset":0,"len":4,"id":3},"chaddr":"02:00:00:00:00:01","state":"active","cltt":100,"expires":200}"#;
const GOOD_V6: &str = r#"{"duid":"000300010200000000aa","link":"2001:db8:1::","cltt":100}"#;

/// Loads a file of a comment, the two good lines and `bad` (line 4); the error it gives.
fn bad_line(bad: &str) -> ImportError {
    let text = format!("# header\n{GOOD_V4}\n{GOOD_V6}\n{bad}\n{GOOD_V6}x\n");
    let e = load_str("leases.jsonl", &text, 3).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("leases.jsonl", 4), "{e}");
    e
}

fn v4_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD_V4).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn v6_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD_V6).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

#[test]
fn every_kind_of_bad_line_is_reported_with_file_line_and_reason() {
    let many: String = (0..1001)
        .map(|i| format!(r#"{{"addr":"2001:db8:1::{i:x}","preferred":1,"valid":2}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let long_remote = format!("\"{}\"", "ab".repeat(1025));
    let cases: Vec<(String, &str)> = vec![
        (r#"{"ipv4":"192.0.2.1","#.into(), "bad JSON: "),
        (
            v6_with("iana", &format!("[{many}]")),
            "iana + iapd: 1001 entries, at most 1000",
        ),
        (v6_with("remote_id", &long_remote), "remote_id: 1025 octets"),
        ("[1,2]".into(), "not a JSON object"),
        (
            r#"{"addr":"192.0.2.1"}"#.into(),
            "neither \"ipv4\" nor \"duid\"",
        ),
        (v4_with("colour", r#""red""#), "unknown field `colour`"),
        (v6_with("lnk", r#""2001:db8::""#), "unknown field `lnk`"),
        (
            GOOD_V4.replace(r#","state":"active""#, ""),
            "missing field `state`",
        ),
        (
            v4_with("ipv4", r#""192.0.2.300""#),
            "ipv4: invalid IPv4 address \"192.0.2.300\"",
        ),
        (
            v4_with("link", r#""2001:db8::zz""#),
            "link: invalid IPv6 address",
        ),
        (
            v4_with("softwire_src", r#""192.0.2.1""#),
            "softwire_src: invalid IPv6 address",
        ),
        (
            v6_with("iana", r#"[{"addr":"x","preferred":1,"valid":2}]"#),
            "iana addr: invalid IPv6",
        ),
        (
            v4_with("client_id", r#""0g""#),
            "client_id: invalid hex \"0g\"",
        ),
        (v4_with("relay_id", r#""abc""#), "relay_id: invalid hex"),
        (v4_with("chaddr", r#""02:00:0""#), "chaddr: invalid hex"),
        (
            v4_with("chaddr", &format!("\"{}\"", "00".repeat(17))),
            "chaddr: 17 octets, at most 16",
        ),
        (
            v4_with("remote_id", r#""""#),
            "remote_id: 0 octets, expected 1 to 255",
        ),
        (v6_with("duid", r#""zz""#), "duid: invalid hex"),
        (
            v6_with("remote_id", r#""00000de9""#),
            "remote_id: 4 octets, expected 5",
        ),
        (
            v4_with("state", r#""leased""#),
            "state: unknown dhcp-state \"leased\"",
        ),
        (v4_with("state", r#""Active""#), "state: unknown dhcp-state"),
        (
            v4_with("psid", r#"{"offset":0,"len":4,"id":16}"#),
            "psid: out of range",
        ),
        (
            v4_with("psid", r#"{"offset":13,"len":4,"id":1}"#),
            "psid: out of range",
        ),
        (
            v4_with("psid", r#"{"offset":0,"len":0,"id":0}"#),
            "psid: out of range",
        ),
        (
            v4_with("psid", r#"{"offset":0,"len":4,"id":1,"x":1}"#),
            "unknown field `x`",
        ),
        (v4_with("cltt", "4294967296"), "invalid value"),
        (v4_with("expires", "-1"), "invalid value"),
        (
            v6_with(
                "iana",
                r#"[{"addr":"2001:db8::1","preferred":5,"valid":4}]"#,
            ),
            "iana: preferred 5 exceeds valid 4",
        ),
        (
            v6_with(
                "iapd",
                r#"[{"prefix":"2001:db8:1::/32","preferred":1,"valid":2}]"#,
            ),
            "has bits set past /32",
        ),
        (
            v6_with(
                "iapd",
                r#"[{"prefix":"2001:db8::/129","preferred":1,"valid":2}]"#,
            ),
            "iapd prefix: invalid prefix",
        ),
        (
            GOOD_V4.into(),
            "duplicate binding 192.0.2.10 psid 3 (first on line 2)",
        ),
        (GOOD_V6.into(), "(first on line 3)"),
        (
            v4_with("psid", "null"),
            "192.0.2.10 conflicts with line 2: full address vs. port set",
        ),
        (
            v4_with("psid", r#"{"offset":0,"len":6,"id":3}"#),
            "conflicts with line 2",
        ),
    ];
    for (line, reason) in cases {
        let e = bad_line(&line);
        assert!(
            e.reason.contains(reason),
            "line {line}: got {:?}, want {reason:?}",
            e.reason
        );
        assert_eq!(e.to_string(), format!("leases.jsonl:4: {}", e.reason));
    }
}

/// Issue 13 item 6: 4294967295 is infinity (u32::MAX, reported as 0xffffffff) for v4
/// `expires` and v6 lifetimes; a finite v6 lifetime whose end passes 2^32-2 ends there, so it is
/// never taken for infinity (it saturated to infinity before).
#[test]
fn infinite_and_very_long_lifetimes() {
    let text = [
        r#"{"ipv4":"192.0.2.30","chaddr":"02:00:00:00:00:30","state":"active","cltt":1767225600,"expires":4294967295}"#,
        r#"{"duid":"000300010200000000f1","link":"2001:db8:2::","iana":[{"addr":"2001:db8:2::f1","preferred":4294967295,"valid":4294967295}],"cltt":1767225600}"#,
        r#"{"duid":"000300010200000000f2","link":"2001:db8:2::","iana":[{"addr":"2001:db8:2::f2","preferred":3000000000,"valid":4294967294}],"cltt":1767225600}"#,
    ]
    .join("\n");
    let got = load_str("x", &text, 1).unwrap();
    let v4 = got.v4.iter().flatten().next().unwrap();
    assert_eq!(v4.expires, u32::MAX);
    let v6 = got.v6.iter().flatten().collect::<Vec<_>>();
    let find = |last: u8| {
        v6.iter()
            .find(|b| b.duid.last() == Some(&last))
            .unwrap()
            .iana[0]
    };
    let inf = find(0xf1);
    assert_eq!((inf.preferred_until, inf.valid_until), (u32::MAX, u32::MAX));
    let long = find(0xf2);
    assert_eq!(
        (long.preferred_until, long.valid_until),
        (u32::MAX - 1, u32::MAX - 1)
    );
}

#[test]
fn another_psid_of_the_same_address_is_fine() {
    let other = v4_with("psid", r#"{"offset":0,"len":4,"id":4}"#);
    let got = load_str("x", &format!("{GOOD_V4}\n\n   \n# c\r\n{other}\r\n"), 3).unwrap();
    assert_eq!(got.v4_count(), 2);
    let shard = shard_of_addr(Ipv4Addr::new(192, 0, 2, 10), 3);
    assert_eq!(got.v4[shard].len(), 2);
    // Same DUID on another link is another binding.
    let other6 = v6_with("link", r#""2001:db8:2::""#);
    assert_eq!(
        load_str("x", &format!("{GOOD_V6}\n{other6}"), 0)
            .unwrap()
            .v6_count(),
        2
    );
}

#[test]
fn a_bad_line_late_in_a_file_loads_nothing() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("late-bad-line.jsonl");
    let mut text = String::new();
    for i in 0..1000u32 {
        let a = Ipv4Addr::from(0xC633_6400 + i); // 198.51.100.0 onwards
        text.push_str(&GOOD_V4.replace("192.0.2.10", &a.to_string()));
        text.push('\n');
    }
    text.push_str(&v4_with("state", r#""bogus""#));
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let e = load_file(&path, 4).unwrap_err();
    assert_eq!(e.line, 1001);
    assert_eq!(e.file, path.display().to_string());
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1001: state: unknown dhcp-state \"bogus\"",
            path.display()
        )
    );
    // Without the bad line everything loads.
    let good: String = text.lines().take(1000).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, good).unwrap();
    assert_eq!(load_file(&path, 4).unwrap().v4_count(), 1000);
}

#[test]
fn an_unreadable_file_names_the_file() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-file.jsonl");
    let e = load_file(&path, 1).unwrap_err();
    assert_eq!((e.file, e.line), (path.display().to_string(), 0));
    assert!(e.reason.starts_with("cannot read: "), "{}", e.reason);
}

#[test]
fn a_line_that_is_not_utf8_is_named_by_its_number() {
    // The file is read a line at a time: the error names the line, and nothing is loaded.
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("not-utf8.jsonl");
    let mut bytes = format!("{GOOD_V4}\n").into_bytes();
    bytes.extend_from_slice(b"{\"ipv4\":\"192.0.2.9\xff\xfe\"}\n");
    std::fs::write(&path, bytes).unwrap();
    let e = load_file(&path, 2).unwrap_err();
    assert_eq!((e.file, e.line), (path.display().to_string(), 2));
    assert!(e.reason.starts_with("cannot read: "), "{}", e.reason);
}

#[test]
fn a_large_file_reports_its_first_bad_line_and_cross_round_duplicates() {
    // 50,000 lines: several rounds of parsing on threads. The first bad line is the one
    // named, whatever comes after it; a duplicate far from its first copy names both lines.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("large.jsonl");
    let line = |i: u32| GOOD_V4.replace("192.0.2.10", &Ipv4Addr::from(0x0a00_0000 + i).to_string());
    let mut lines: Vec<String> = (0..50_000).map(line).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    assert_eq!(load_file(&path, 2).unwrap().v4_count(), 50_000);

    lines[30_000] = v4_with("state", r#""bogus""#);
    lines[45_000] = "not json".into();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let e = load_file(&path, 2).unwrap_err();
    assert_eq!(e.line, 30_001, "{e}");

    lines[30_000] = line(30_000);
    lines[45_000] = line(45_000);
    lines[40_000] = line(4);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let e = load_file(&path, 2).unwrap_err();
    assert_eq!(e.line, 40_001, "{e}");
    assert!(e.reason.contains("first on line 5"), "{e}");
}
