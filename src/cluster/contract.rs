//! The cluster contract (issue 18 part 3, sans-io): what a binding change looks like on NATS
//! JetStream. The README's "Cluster contract" section is the normative text; this module is
//! its code, used by the publisher (encode) and by replicas and tests (decode).
//!
//! - Subject: `<prefix>.<node_id>.v4.<ipv4>[.<psid>]` for a v4/4o6 binding, with the address
//!   spelled with dashes (`192-0-2-10`: dots are subject separators) and, for a shared address,
//!   the port set as `<offset>-<len>-<id>` in decimal (`0-4-3`); `<prefix>.<node_id>.v6.<duid
//!   hex>.<link>` for a plain v6 binding, the DUID in lower-case hex and the link as 32
//!   lower-case hex digits (the 16 octets, no colons).
//! - Header `Nats-Msg-Id: <node_id>-<shard>-<seq>` (the journal sequence of the change: the
//!   shard's journal and the record's stream sequence `seq`), so JetStream drops a republished
//!   change inside its duplicate window. A binding is republished from a snapshot with
//!   `Nats-Msg-Id: <node_id>-<shard>-<seq>-<n>` (`n` numbers the snapshot's entries). A
//!   binding the stream holds and a republished snapshot lacks (removed among compacted
//!   records, or absent after an import) gets a remove with the snapshot's `seq` and
//!   `Nats-Msg-Id: <node_id>-<shard>-<seq>-rm.<key>` ([`reconcile_msg_id`]).
//! - Payload: one JSON object, the binding's import-file line (README "Import file format")
//!   plus `"v"` (the contract version, [`VERSION`]), `"op"` (`"upsert"` or `"remove"`),
//!   `"changed"` (Unix seconds of the change) and `"seq"`. `seq` grows with every change of a
//!   binding ([`stream_seq`]): a consumer keeps the highest `seq` per subject and ignores a
//!   message whose `seq` is not above it.
//!
//! Decoding ([`decode_payload`]) takes untrusted octets and never panics: a payload of another
//! version, a missing or unknown field, a bad value, more than [`MAX_PAYLOAD`] octets are
//! [`ContractError`]s.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::feed::import::{parse_line, FeedBinding};
use crate::lease::{Change, ChangeKind, V4Binding, V6Binding};

/// The contract version in every payload's `"v"`. A consumer refuses another.
pub const VERSION: u64 = 1;
/// The largest payload a decoder accepts (a v6 binding at the import format's limits is about
/// 80 KB of JSON).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Bits of [`stream_seq`] that hold the journal record number (the epoch is above them).
pub const EPOCH_SHIFT: u32 = 40;
/// The largest epoch [`stream_seq`] takes: it keeps every `seq` below 2^53, exact in every
/// JSON implementation.
pub const MAX_EPOCH: u32 = (1 << (53 - EPOCH_SHIFT)) - 1;
/// The longest `node_id` (a 130-octet DUID in hex is 260).
pub const MAX_NODE_ID: usize = 260;
/// The longest `subject_prefix`.
pub const MAX_PREFIX: usize = 128;

/// What a change does to the binding its subject names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The binding now has this state.
    Upsert,
    /// The binding is gone (the payload holds its last state).
    Remove,
}

impl Op {
    /// The payload's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Remove => "remove",
        }
    }

    /// The op of a journal change.
    pub fn of(kind: ChangeKind) -> Op {
        if kind == ChangeKind::Remove {
            Op::Remove
        } else {
            Op::Upsert
        }
    }
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Upsert or remove.
    pub op: Op,
    /// Unix seconds of the change.
    pub changed: u32,
    /// The change's stream sequence (grows per binding).
    pub seq: u64,
    /// The binding (import-file form).
    pub binding: FeedBinding,
}

/// Why a payload or a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContractError {
    /// More than [`MAX_PAYLOAD`] octets.
    #[error("payload of {0} octets, at most {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// Not UTF-8 JSON, or not an object.
    #[error("bad JSON: {0}")]
    Json(String),
    /// `"v"` missing or not [`VERSION`].
    #[error("unsupported contract version {0} (this build reads version {VERSION})")]
    Version(String),
    /// A contract field (`op`, `changed`, `seq`) missing or of the wrong type.
    #[error("field {0}: {1}")]
    Field(&'static str, String),
    /// The binding part is not a valid import-file line.
    #[error("binding: {0}")]
    Binding(String),
    /// A `node_id` or `subject_prefix` that is not subject-safe.
    #[error("{0}")]
    Name(String),
    /// The payload's binding is not the one its subject names.
    #[error("the payload's binding is not the subject's")]
    Subject,
}

/// The stream sequence of journal record `record_seq` in epoch `epoch`: `epoch * 2^40 +
/// record_seq`. A shard's records are numbered 1, 2, ... without a gap; the epoch grows each
/// time the data directory's journal is renumbered (an import or a shard-count change rewrites
/// it, `store::journal_epoch`), so `seq` grows per binding across restarts. `None` past
/// [`MAX_EPOCH`] or 2^40 - 1 records.
pub fn stream_seq(epoch: u32, record_seq: u64) -> Option<u64> {
    (epoch <= MAX_EPOCH && record_seq < 1 << EPOCH_SHIFT)
        .then(|| (u64::from(epoch) << EPOCH_SHIFT) | record_seq)
}

/// Checks one subject token of a name: `[A-Za-z0-9_-]+`.
fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a `node_id`: 1..=[`MAX_NODE_ID`] of `A-Z a-z 0-9 _ -` (one subject token).
pub fn check_node_id(id: &str) -> Result<(), ContractError> {
    if id.len() > MAX_NODE_ID || !token_ok(id) {
        return Err(ContractError::Name(format!(
            "node_id {id:?}: want 1 to {MAX_NODE_ID} characters of A-Z a-z 0-9 _ - (one NATS subject token)"
        )));
    }
    Ok(())
}

/// Checks a `subject_prefix`: tokens of `A-Z a-z 0-9 _ -` joined by dots, at most
/// [`MAX_PREFIX`] characters (no wildcards, no empty token).
pub fn check_prefix(p: &str) -> Result<(), ContractError> {
    if p.len() > MAX_PREFIX || !p.split('.').all(token_ok) {
        return Err(ContractError::Name(format!(
            "subject_prefix {p:?}: want dot-separated tokens of A-Z a-z 0-9 _ -, at most {MAX_PREFIX} characters"
        )));
    }
    Ok(())
}

fn push_hex(out: &mut String, b: &[u8]) {
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b);
    s
}

/// The subject of a v4/4o6 binding.
pub fn subject_v4(prefix: &str, node_id: &str, b: &V4Binding) -> String {
    let [a, b1, c, d] = b.addr.octets();
    let mut s = format!("{prefix}.{node_id}.v4.{a}-{b1}-{c}-{d}");
    if let Some(p) = b.port_params {
        let _ = write!(s, ".{}-{}-{}", p.offset, p.psid_len, p.psid);
    }
    s
}

/// The subject of a plain v6 binding.
pub fn subject_v6(prefix: &str, node_id: &str, b: &V6Binding) -> String {
    let mut s = format!("{prefix}.{node_id}.v6.");
    push_hex(&mut s, &b.duid);
    s.push('.');
    push_hex(&mut s, &b.link.octets());
    s
}

/// The subject of a change's binding.
pub fn subject(prefix: &str, node_id: &str, c: &Change) -> String {
    match c {
        Change::V4 { binding, .. } => subject_v4(prefix, node_id, binding),
        Change::V6 { binding, .. } => subject_v6(prefix, node_id, binding),
    }
}

/// The subject every message of `node_id` matches (`<prefix>.<node_id>.>`).
pub fn node_wildcard(prefix: &str, node_id: &str) -> String {
    format!("{prefix}.{node_id}.>")
}

/// The `Nats-Msg-Id` of journal change `seq` of `shard`.
pub fn msg_id(node_id: &str, shard: usize, seq: u64) -> String {
    format!("{node_id}-{shard}-{seq}")
}

/// The `Nats-Msg-Id` of entry `n` of a snapshot republished with stream sequence `seq`.
pub fn snapshot_msg_id(node_id: &str, shard: usize, seq: u64, n: u64) -> String {
    format!("{node_id}-{shard}-{seq}-{n}")
}

/// The `Nats-Msg-Id` of the remove a republished snapshot (stream sequence `seq`) implies for
/// a binding on `subject` it lacks: `<node_id>-<shard>-<seq>-rm.<key>`, `<key>` the subject
/// after `<prefix>.<node_id>.` (`v4.192-0-2-10.0-4-3`). It names the binding, not a position,
/// so a retry after a crash carries the same id whatever else changed on the stream.
pub fn reconcile_msg_id(
    prefix: &str,
    node_id: &str,
    shard: usize,
    seq: u64,
    subject: &str,
) -> String {
    let key = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_prefix(node_id))
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(subject);
    format!("{node_id}-{shard}-{seq}-rm.{key}")
}

/// The import format's name of a dhcp-state; it has no name for other codes, and
/// "transitioning" is RFC 6926's "in between".
fn state_name(s: u8) -> &'static str {
    crate::requestor::lease::state_name(s).unwrap_or("transitioning")
}

/// A v4/4o6 binding as its import-file line's fields.
pub fn v4_fields(b: &V4Binding) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ipv4".into(), b.addr.to_string().into());
    if let Some(p) = b.port_params {
        m.insert(
            "psid".into(),
            serde_json::json!({"offset": p.offset, "len": p.psid_len, "id": p.psid}),
        );
    }
    m.insert("chaddr".into(), hex(&b.chaddr).into());
    // The import format wants 1..=255 octets in each optional hex field; an empty one (never
    // made by the authority) is left out rather than written as a line that does not load.
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<Vec<u8>>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty() && v.len() <= 255) {
            m.insert(k.into(), hex(v).into());
        }
    };
    opt(&mut m, "client_id", &b.client_id);
    m.insert("state".into(), state_name(b.state).into());
    m.insert("cltt".into(), b.cltt.into());
    m.insert("expires".into(), b.expires.into());
    opt(&mut m, "relay_id", &b.relay_id);
    opt(&mut m, "remote_id", &b.remote_id);
    if let Some(v6) = &b.v6 {
        m.insert("link".into(), v6.link.to_string().into());
    }
    if let Some(s) = b.softwire_src {
        m.insert("softwire_src".into(), s.to_string().into());
    }
    m
}

fn lifetime(cltt: u32, until: u32) -> u32 {
    if until == u32::MAX {
        u32::MAX
    } else {
        until.saturating_sub(cltt)
    }
}

/// A plain v6 binding as its import-file line's fields.
pub fn v6_fields(b: &V6Binding) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("duid".into(), hex(&b.duid).into());
    m.insert("link".into(), b.link.to_string().into());
    let iana: Vec<Value> = b
        .iana
        .iter()
        .map(|a| {
            serde_json::json!({"addr": a.addr.to_string(),
                "preferred": lifetime(b.cltt, a.preferred_until),
                "valid": lifetime(b.cltt, a.valid_until)})
        })
        .collect();
    let iapd: Vec<Value> = b
        .iapd
        .iter()
        .map(|p| {
            serde_json::json!({"prefix": format!("{}/{}", p.prefix, p.prefix_len),
                "preferred": lifetime(b.cltt, p.preferred_until),
                "valid": lifetime(b.cltt, p.valid_until)})
        })
        .collect();
    if !iana.is_empty() {
        m.insert("iana".into(), iana.into());
    }
    if !iapd.is_empty() {
        m.insert("iapd".into(), iapd.into());
    }
    m.insert("cltt".into(), b.cltt.into());
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<Vec<u8>>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            m.insert(k.into(), hex(v).into());
        }
    };
    opt(&mut m, "relay_id", &b.relay_id);
    opt(&mut m, "remote_id", &b.remote_id);
    m
}

/// The payload of a change with stream sequence `seq`.
pub fn encode_payload(c: &Change, seq: u64) -> Vec<u8> {
    let mut m = match c {
        Change::V4 { binding, .. } => v4_fields(binding),
        Change::V6 { binding, .. } => v6_fields(binding),
    };
    m.insert("v".into(), VERSION.into());
    m.insert("op".into(), Op::of(c.kind()).as_str().into());
    m.insert("changed".into(), c.at().into());
    m.insert("seq".into(), seq.into());
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

/// Decodes an untrusted payload (never panics).
pub fn decode_payload(bytes: &[u8]) -> Result<Message, ContractError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(ContractError::TooLarge(bytes.len()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ContractError::Json(e.to_string()))?;
    let Value::Object(mut m) = value else {
        return Err(ContractError::Json("not a JSON object".into()));
    };
    match m.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(v) => return Err(ContractError::Version(v.to_string())),
        None => return Err(ContractError::Version("missing".into())),
    }
    let op = match m.remove("op") {
        Some(Value::String(s)) if s == "upsert" => Op::Upsert,
        Some(Value::String(s)) if s == "remove" => Op::Remove,
        Some(v) => {
            return Err(ContractError::Field(
                "op",
                format!("{v} (want \"upsert\" or \"remove\")"),
            ))
        }
        None => return Err(ContractError::Field("op", "missing".into())),
    };
    let changed = match m.remove("changed") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ContractError::Field("changed", format!("{n}: not Unix seconds")))?,
        _ => {
            return Err(ContractError::Field(
                "changed",
                "missing or not a number".into(),
            ))
        }
    };
    let seq = match m.remove("seq") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| ContractError::Field("seq", format!("{n}: not an unsigned integer")))?,
        _ => {
            return Err(ContractError::Field(
                "seq",
                "missing or not a number".into(),
            ))
        }
    };
    let line =
        serde_json::to_string(&Value::Object(m)).map_err(|e| ContractError::Json(e.to_string()))?;
    let binding = parse_line(&line)
        .map_err(ContractError::Binding)?
        .ok_or_else(|| ContractError::Binding("empty".into()))?;
    Ok(Message {
        op,
        changed,
        seq,
        binding,
    })
}

/// The payload of a remove of `binding` (its last state) at `changed` with stream sequence
/// `seq`.
pub fn encode_remove(binding: &FeedBinding, changed: u32, seq: u64) -> Vec<u8> {
    let c = match binding {
        FeedBinding::V4(b) => Change::V4 {
            at: changed,
            kind: ChangeKind::Remove,
            binding: b.clone(),
        },
        FeedBinding::V6(b) => Change::V6 {
            at: changed,
            kind: ChangeKind::Remove,
            binding: b.clone(),
        },
    };
    encode_payload(&c, seq)
}

/// Decodes an untrusted message and checks it against its subject (`<prefix>.<node>.…`, the
/// node taken from the subject): the payload must decode and its binding must be the one the
/// subject names. Never panics.
pub fn decode_on_subject(
    prefix: &str,
    subject: &str,
    payload: &[u8],
) -> Result<Message, ContractError> {
    let m = decode_payload(payload)?;
    let node = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.split('.').next())
        .unwrap_or_default();
    if subject_of(prefix, node, &m.binding) != subject {
        return Err(ContractError::Subject);
    }
    Ok(m)
}

/// The subject a decoded message's binding belongs on (to check a message against its
/// subject).
pub fn subject_of(prefix: &str, node_id: &str, b: &FeedBinding) -> String {
    match b {
        FeedBinding::V4(b) => subject_v4(prefix, node_id, b),
        FeedBinding::V6(b) => subject_v6(prefix, node_id, b),
    }
}

/// An IPv4 address as its subject token (`192-0-2-10`).
pub fn v4_token(a: Ipv4Addr) -> String {
    let [a, b, c, d] = a.octets();
    format!("{a}-{b}-{c}-{d}")
}

/// An IPv6 link as its subject token (32 hex digits).
pub fn v6_token(a: Ipv6Addr) -> String {
    hex(&a.octets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::import::parse_line;

    const V4: &str = r#"{"ipv4":"192.0.2.10","psid":{"offset":0,"len":4,"id":3},"chaddr":"020000000001","client_id":"ff000000010003000102000000000001","state":"active","cltt":1767225600,"expires":1767229200,"relay_id":"000300010a0000000001","remote_id":"6c696e652d31","link":"2001:db8:1::","softwire_src":"2001:db8:1::10"}"#;
    const V6: &str = r#"{"duid":"00030001020000000300","link":"2001:db8:2::","iana":[{"addr":"2001:db8:2::5","preferred":3600,"valid":7200}],"iapd":[{"prefix":"2001:db8:200::/56","preferred":3600,"valid":4294967295}],"cltt":1767225600,"relay_id":"000300010a0000000003","remote_id":"00000de96c696e65"}"#;

    fn v4() -> V4Binding {
        match parse_line(V4).unwrap().unwrap() {
            FeedBinding::V4(b) => b,
            _ => unreachable!(),
        }
    }

    fn v6() -> V6Binding {
        match parse_line(V6).unwrap().unwrap() {
            FeedBinding::V6(b) => b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn subjects_are_subject_safe_and_name_the_key() {
        let mut b = v4();
        assert_eq!(subject_v4("lq", "n1", &b), "lq.n1.v4.192-0-2-10.0-4-3");
        b.port_params = None;
        assert_eq!(subject_v4("a.b", "n1", &b), "a.b.n1.v4.192-0-2-10");
        assert_eq!(
            subject_v6("lq", "n1", &v6()),
            "lq.n1.v6.00030001020000000300.20010db8000200000000000000000000"
        );
        assert_eq!(node_wildcard("lq", "n1"), "lq.n1.>");
        assert_eq!(msg_id("n1", 2, 77), "n1-2-77");
        assert_eq!(snapshot_msg_id("n1", 2, 77, 5), "n1-2-77-5");
    }

    #[test]
    fn v4_and_v6_round_trip_through_the_payload() {
        for (c, line) in [
            (
                Change::V4 {
                    at: 1767225601,
                    kind: ChangeKind::New,
                    binding: v4(),
                },
                V4,
            ),
            (
                Change::V6 {
                    at: 1767225602,
                    kind: ChangeKind::Remove,
                    binding: v6(),
                },
                V6,
            ),
        ] {
            let seq = stream_seq(3, 42).unwrap();
            let p = encode_payload(&c, seq);
            let m = decode_payload(&p).unwrap();
            assert_eq!(m.seq, (3 << 40) | 42);
            assert_eq!(m.changed, c.at());
            assert_eq!(m.op, Op::of(c.kind()));
            assert_eq!(m.binding, parse_line(line).unwrap().unwrap());
            // The payload minus the contract fields is the import line, field for field.
            let mut v: Map<String, Value> = serde_json::from_slice(&p).unwrap();
            for k in ["v", "op", "changed", "seq"] {
                assert!(v.remove(k).is_some(), "{k}");
            }
            let want: Map<String, Value> = serde_json::from_str(line).unwrap();
            assert_eq!(v, want);
        }
    }

    /// A reconcile's remove: the binding's last state with op remove, an id that names the
    /// binding; a message is checked against its subject.
    #[test]
    fn removes_and_messages_on_their_subjects() {
        for b in [
            FeedBinding::V4(v4()),
            match parse_line(V6).unwrap().unwrap() {
                FeedBinding::V6(b) => FeedBinding::V6(b),
                other => panic!("{other:?}"),
            },
        ] {
            let subject = subject_of("isp.lq", "node-1", &b);
            let p = encode_remove(&b, 77, 1 << 41);
            let m = decode_on_subject("isp.lq", &subject, &p).unwrap();
            assert_eq!((m.op, m.changed, m.seq), (Op::Remove, 77, 1 << 41));
            assert_eq!(m.binding, b);
            let id = reconcile_msg_id("isp.lq", "node-1", 3, 1 << 41, &subject);
            let key = subject.strip_prefix("isp.lq.node-1.").unwrap();
            assert_eq!(id, format!("node-1-3-{}-rm.{key}", 1u64 << 41));
            // Another subject (another binding, node or prefix), or not this contract.
            for bad in [
                "isp.lq.node-1.v4.192-0-2-11.0-4-3",
                "isp.lq.node-1.v6.00.20010db8000200000000000000000000",
                "isp.lq",
                "",
                "other.node-1.v4.192-0-2-10.0-4-3",
            ] {
                assert_eq!(
                    decode_on_subject("isp.lq", bad, &p),
                    Err(ContractError::Subject),
                    "{bad}"
                );
            }
            assert!(matches!(
                decode_on_subject("isp.lq", &subject, b"{\"v\":2}"),
                Err(ContractError::Version(_))
            ));
            assert!(decode_on_subject("isp.lq", &subject, b"\xff").is_err());
        }
    }

    #[test]
    fn stream_seq_limits() {
        assert_eq!(stream_seq(0, 1), Some(1));
        assert_eq!(stream_seq(MAX_EPOCH, (1 << 40) - 1), Some((1 << 53) - 1));
        assert_eq!(stream_seq(MAX_EPOCH + 1, 1), None);
        assert_eq!(stream_seq(0, 1 << 40), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_node_id("0004abcdef").is_ok());
        assert!(check_node_id("node_1-a").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", "é"] {
            assert!(check_node_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_node_id(&"a".repeat(MAX_NODE_ID + 1)).is_err());
        assert!(check_prefix("leasequeryd").is_ok());
        assert!(check_prefix("isp.region-1.lq").is_ok());
        for bad in ["", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let good = encode_payload(
            &Change::V4 {
                at: 5,
                kind: ChangeKind::Renew,
                binding: v4(),
            },
            9,
        );
        let good: Map<String, Value> = serde_json::from_slice(&good).unwrap();
        let with = |k: &str, v: Value| {
            let mut m = good.clone();
            m.insert(k.into(), v);
            serde_json::to_vec(&m).unwrap()
        };
        let without = |k: &str| {
            let mut m = good.clone();
            m.remove(k);
            serde_json::to_vec(&m).unwrap()
        };
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"\xff\xfe".to_vec(),
            b"{".to_vec(),
            b"{}".to_vec(),
            vec![b' '; MAX_PAYLOAD + 1],
            with("v", 2.into()),
            with("v", "1".into()),
            without("v"),
            with("op", "delete".into()),
            with("op", 1.into()),
            without("op"),
            with("changed", (-1).into()),
            with("changed", (1u64 << 32).into()),
            with("changed", 1.5.into()),
            without("changed"),
            with("seq", (-3).into()),
            with("seq", "1".into()),
            without("seq"),
            with("ipv4", "300.1.1.1".into()),
            with("chaddr", "zz".into()),
            with("state", "bound".into()),
            with("extra", 1.into()),
            without("ipv4"),
            format!("{}{}", "[".repeat(10000), "]".repeat(10000)).into_bytes(),
        ];
        for c in cases {
            assert!(
                decode_payload(&c).is_err(),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
        assert!(decode_payload(&serde_json::to_vec(&good).unwrap()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn any_octets_are_answered(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_payload(&b);
        }

        #[test]
        fn any_json_text_is_answered(s in "[{}\\[\\]\":,0-9a-z.\\\\ -]{0,120}") {
            let _ = decode_payload(s.as_bytes());
            let _ = decode_payload(format!("{{\"v\":1,\"op\":\"upsert\",\"changed\":1,\"seq\":1,{s}").as_bytes());
        }
    }
}
