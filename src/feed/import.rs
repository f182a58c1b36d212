//! The JSON-lines import file (`--import FILE`): one binding per line, loaded at start.
//!
//! Empty lines and lines whose first non-blank character is `#` are skipped. Every other line
//! is one JSON object; a line with `"ipv4"` is a DHCPv4 / DHCP4o6 binding, a line with `"duid"`
//! a plain DHCPv6 binding. Unknown fields are errors. The whole file is checked before anything
//! is returned: one bad line fails the load and nothing is half-loaded.
//!
//! v4 / 4o6 (`psid`, `client_id`, `relay_id`, `remote_id`, `link`, `softwire_src` optional):
//! `{"ipv4":"192.0.2.10","psid":{"offset":0,"len":4,"id":3},"chaddr":"02:00:00:00:00:01",
//! "client_id":"<hex>","state":"active","cltt":<unix s>,"expires":<unix s>,"relay_id":"<hex>",
//! "remote_id":"<hex>","link":"2001:db8:1::","softwire_src":"2001:db8:1::10"}`
//!
//! v6 (`iana`, `iapd`, `relay_id`, `remote_id` optional):
//! `{"duid":"<hex>","link":"2001:db8:1::","iana":[{"addr":"2001:db8:1::5","preferred":<s>,
//! "valid":<s>}],"iapd":[{"prefix":"2001:db8:100::/56","preferred":<s>,"valid":<s>}],
//! "cltt":<unix s>,"relay_id":"<hex>","remote_id":"<hex>"}`
//!
//! See [`load_str`] for the meaning of each field.

use hashbrown::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Deserialize;

use crate::lease::{shard_of_addr, shard_of_duid, V4Binding, V6Binding, V6ContextBinding};
use crate::proto::codes::dhcp_state;
use crate::proto::record::{PortParams, V6Addr, V6Prefix};

/// A failed import: the file, the 1-based line (0 when the file could not be read) and why.
/// Displays as `FILE:LINE: reason` (or `FILE: reason` for a read failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The file name as given.
    pub file: String,
    /// The 1-based line number; 0 when the file could not be read.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for ImportError {}

/// An import file's bindings, partitioned by owning shard ([`shard_of_addr`] for v4/4o6,
/// [`shard_of_duid`] for v6), in file order within each shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedShards {
    /// `v4[shard]`: the v4/4o6 bindings that shard owns.
    pub v4: Vec<Vec<V4Binding>>,
    /// `v6[shard]`: the plain v6 bindings that shard owns.
    pub v6: Vec<Vec<V6Binding>>,
}

impl ImportedShards {
    /// The number of v4/4o6 bindings over all shards.
    pub fn v4_count(&self) -> usize {
        self.v4.iter().map(Vec::len).sum()
    }

    /// The number of plain v6 bindings over all shards.
    pub fn v6_count(&self) -> usize {
        self.v6.iter().map(Vec::len).sum()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PsidLine {
    offset: u8,
    len: u8,
    id: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V4Line {
    ipv4: String,
    psid: Option<PsidLine>,
    chaddr: String,
    client_id: Option<String>,
    state: String,
    cltt: u32,
    expires: u32,
    relay_id: Option<String>,
    remote_id: Option<String>,
    link: Option<String>,
    softwire_src: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IaNaLine {
    addr: String,
    preferred: u32,
    valid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IaPdLine {
    prefix: String,
    preferred: u32,
    valid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V6Line {
    duid: String,
    link: String,
    #[serde(default)]
    iana: Vec<IaNaLine>,
    #[serde(default)]
    iapd: Vec<IaPdLine>,
    cltt: u32,
    relay_id: Option<String>,
    remote_id: Option<String>,
}

/// Lines each parsing thread takes per round of [`load_file`].
const BATCH_LINES: usize = 8192;
/// At most this many threads parse an import file (the checks after the parse are serial).
const MAX_PARSE_THREADS: usize = 8;

/// Reads and checks an import file; see [`load_str`] for the checks. The file is read a round
/// of lines at a time (never whole): the round's lines are parsed on up to
/// [`MAX_PARSE_THREADS`] threads, then checked and kept in file order, so the first bad line is
/// the one reported. A line that is not UTF-8 is an error on that line.
pub fn load_file(path: &Path, shards: usize) -> Result<ImportedShards, ImportError> {
    use std::io::BufRead;
    let name = path.display().to_string();
    let fail = |line: usize, e: std::io::Error| ImportError {
        file: name.clone(),
        line,
        reason: format!("cannot read: {e}"),
    };
    let f = std::fs::File::open(path).map_err(|e| fail(0, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_PARSE_THREADS);
    let mut loader = Loader::new(&name, shards);
    let mut lines: Vec<String> = Vec::with_capacity(threads * BATCH_LINES);
    let mut first = 1usize;
    loop {
        lines.clear();
        let mut read_error = None;
        let mut end = false;
        while lines.len() < threads * BATCH_LINES {
            let mut raw = String::new();
            match reader.read_line(&mut raw) {
                Ok(0) => {
                    end = true;
                    break;
                }
                Ok(_) => {
                    if raw.ends_with('\n') {
                        raw.pop();
                    }
                    lines.push(raw);
                }
                Err(e) => {
                    read_error = Some(fail(first + lines.len(), e));
                    break;
                }
            }
        }
        for (n, parsed) in (first..).zip(parse_lines(&lines, threads)) {
            loader.accept(n, parsed)?;
        }
        // The lines before an unreadable one were checked first: a bad one among them wins.
        if let Some(e) = read_error {
            return Err(e);
        }
        if end {
            return Ok(loader.out);
        }
        first += lines.len();
    }
}

/// [`parse_line`] of each line, in order, split over up to `threads` threads (this one too).
fn parse_lines(lines: &[String], threads: usize) -> Vec<Result<Option<FeedBinding>, String>> {
    let parse = |c: &[String]| c.iter().map(|l| parse_line(l)).collect::<Vec<_>>();
    if threads <= 1 || lines.len() <= BATCH_LINES {
        return parse(lines);
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut chunks = lines.chunks(per);
        let mine = chunks.next().unwrap_or(&[]);
        let others: Vec<_> = chunks.map(|c| s.spawn(move || parse(c))).collect();
        let mut out = parse(mine);
        for h in others {
            // A parse does not panic (its tests feed it arbitrary text); if one did, pass it on.
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// Checks the import text `text` (named `file` in errors) and partitions it into `shards`
/// shards (0 is taken as 1).
///
/// Field meanings:
/// - `ipv4`: the address; `psid`: RFC 7618 port set, `offset` 0..=15, `len` 1..=16 with
///   `offset + len <= 16`, `id < 2^len`. All bindings of one address must agree on full address
///   vs. port set and on offset/len.
/// - `chaddr`: hardware address, hex (`02:00:00:00:00:01` or `020000000001`), at most 16 octets;
///   htype is 1 (Ethernet) for 6 octets, else 0.
/// - `client_id`: option 61 payload, hex (RFC 4361 form `ff` + IAID + DUID allowed).
/// - `state`: RFC 6926 dhcp-state name in lower case: available, active, expired, released,
///   abandoned, reset, remote, transitioning. Its start time is taken as `cltt`.
/// - `cltt`, `expires`: absolute Unix seconds; `expires` 4294967295 is an infinite lease,
///   reported with option 51 = 0xffffffff (RFC 2132 §9.2).
/// - `relay_id`, `remote_id` (v4): option 82 sub-option 12 / 2 payloads, hex, 1..=255 octets.
/// - `link`, `softwire_src`: a line with either is a DHCP4o6 binding; its DHCPv6 context has
///   `link` (`::` when absent) and client source `softwire_src` (the link when absent), no
///   relay chain.
/// - v6 `duid` (hex, 1..=130 octets) and `link` key the binding; `iana` addresses and `iapd`
///   prefixes (`addr/len`, no bits set past `len`) carry `preferred` and `valid` lifetimes in
///   seconds counted from `cltt` (`preferred <= valid`; 4294967295 = infinity, reported as
///   0xffffffff, RFC 8415 §7.7; a finite lifetime whose end would pass 2^32-2 ends there, so
///   it is never taken for infinity). `relay_id` is an OPTION_RELAY_ID payload (a DUID),
///   `remote_id` an OPTION_REMOTE_ID payload (4-octet enterprise number + id, 5 to 1024 octets).
///   At most [`MAX_V6_LEASES`] (1000) `iana` + `iapd` entries per line.
/// - Duplicates (same `ipv4` + `psid`, or same `duid` + `link`) are errors naming both lines.
pub fn load_str(file: &str, text: &str, shards: usize) -> Result<ImportedShards, ImportError> {
    let mut loader = Loader::new(file, shards);
    for (n, raw) in (1usize..).zip(text.lines()) {
        loader.line(n, raw)?;
    }
    Ok(loader.out)
}

/// The checks that need the whole file (duplicates, one port-set shape per address), and the
/// bindings so far, partitioned into shards.
struct Loader<'f> {
    file: &'f str,
    shards: usize,
    out: ImportedShards,
    v4_seen: HashMap<(Ipv4Addr, Option<PortParams>), usize>,
    v4_shape: HashMap<Ipv4Addr, (Option<(u8, u8)>, usize)>,
    v6_seen: HashMap<(Vec<u8>, Ipv6Addr), usize>,
}

impl<'f> Loader<'f> {
    fn new(file: &'f str, shards: usize) -> Loader<'f> {
        let shards = shards.max(1);
        Loader {
            file,
            shards,
            out: ImportedShards {
                v4: vec![Vec::new(); shards],
                v6: vec![Vec::new(); shards],
            },
            v4_seen: HashMap::new(),
            v4_shape: HashMap::new(),
            v6_seen: HashMap::new(),
        }
    }

    /// Line `n` (1-based), without its line end.
    fn line(&mut self, n: usize, raw: &str) -> Result<(), ImportError> {
        self.accept(n, parse_line(raw))
    }

    /// Line `n`'s [`parse_line`] result: checked against the lines before it and kept.
    fn accept(
        &mut self,
        n: usize,
        parsed: Result<Option<FeedBinding>, String>,
    ) -> Result<(), ImportError> {
        let err = |reason: String| ImportError {
            file: self.file.to_string(),
            line: n,
            reason,
        };
        let b = match parsed.map_err(err)? {
            None => return Ok(()),
            Some(b) => b,
        };
        match b {
            FeedBinding::V4(b) => {
                let shape = b.port_params.map(|p| (p.offset, p.psid_len));
                if let Some(&(first_shape, first)) = self.v4_shape.get(&b.addr) {
                    if first_shape != shape {
                        return Err(err(format!(
                            "{} conflicts with line {first}: full address vs. port set, or another PSID offset/length",
                            b.addr
                        )));
                    }
                }
                if let Some(first) = self.v4_seen.insert((b.addr, b.port_params), n) {
                    return Err(err(format!(
                        "duplicate binding {} (first on line {first})",
                        key4(&b)
                    )));
                }
                self.v4_shape.entry(b.addr).or_insert((shape, n));
                if let Some(s) = self.out.v4.get_mut(shard_of_addr(b.addr, self.shards)) {
                    s.push(b);
                }
            }
            FeedBinding::V6(b) => {
                if let Some(first) = self.v6_seen.insert((b.duid.clone(), b.link), n) {
                    return Err(err(format!(
                        "duplicate binding for this duid on link {} (first on line {first})",
                        b.link
                    )));
                }
                if let Some(s) = self.out.v6.get_mut(shard_of_duid(&b.duid, self.shards)) {
                    s.push(b);
                }
            }
        }
        Ok(())
    }
}

/// One binding of a JSON-lines file (import or feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedBinding {
    /// A line with `"ipv4"`.
    V4(V4Binding),
    /// A line with `"duid"`.
    V6(V6Binding),
}

/// Parses one line of the JSON-lines format (see [`load_str`] for the fields): `Ok(None)` for an
/// empty or `#` comment line, `Err(reason)` for a bad line. Checks that need the whole file
/// (duplicates, port-set shape) are [`load_str`]'s.
pub fn parse_line(raw: &str) -> Result<Option<FeedBinding>, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // Fast path: the line straight into its typed form. Both forms refuse unknown fields and
    // need their key field, so a line that parses as one is exactly a line `parse_general`
    // reads as that form, with the same result (a test checks it). Anything else (a bad line,
    // a duplicated key) takes the general path, which words the error.
    let v4_first = line.contains("\"ipv4\"");
    for v4 in [v4_first, !v4_first] {
        if v4 {
            if let Ok(parsed) = serde_json::from_str::<V4Line>(line) {
                return v4_binding(parsed).map(|b| Some(FeedBinding::V4(b)));
            }
        } else if let Ok(parsed) = serde_json::from_str::<V6Line>(line) {
            return v6_binding(parsed).map(|b| Some(FeedBinding::V6(b)));
        }
    }
    parse_general(line)
}

/// A trimmed, non-comment line through a JSON value: the form is chosen by the `"ipv4"` or
/// `"duid"` key, and every error is worded here.
fn parse_general(line: &str) -> Result<Option<FeedBinding>, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("not a JSON object".into());
    };
    if obj.contains_key("ipv4") {
        let parsed: V4Line = serde_json::from_value(value).map_err(|e| e.to_string())?;
        v4_binding(parsed).map(|b| Some(FeedBinding::V4(b)))
    } else if obj.contains_key("duid") {
        let parsed: V6Line = serde_json::from_value(value).map_err(|e| e.to_string())?;
        v6_binding(parsed).map(|b| Some(FeedBinding::V6(b)))
    } else {
        Err("neither \"ipv4\" nor \"duid\": not a binding".into())
    }
}

fn key4(b: &V4Binding) -> String {
    match b.port_params {
        Some(p) => format!("{} psid {}", b.addr, p.psid),
        None => b.addr.to_string(),
    }
}

fn hex(field: &str, s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("{field}: invalid hex {s:?}");
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let pair = |p: &[u8]| match p {
        [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
        _ => None,
    };
    if s.contains(':') {
        s.split(':')
            .map(|p| pair(p.as_bytes()).ok_or_else(bad))
            .collect()
    } else if s.len() % 2 == 0 {
        s.as_bytes()
            .chunks(2)
            .map(|p| pair(p).ok_or_else(bad))
            .collect()
    } else {
        Err(bad())
    }
}

fn hex_opt(
    field: &str,
    s: Option<String>,
    min: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, String> {
    let Some(s) = s else { return Ok(None) };
    let b = hex(field, &s)?;
    if b.len() < min || b.len() > max {
        return Err(format!(
            "{field}: {} octets, expected {min} to {max}",
            b.len()
        ));
    }
    Ok(Some(b))
}

fn ipv6(field: &str, s: &str) -> Result<Ipv6Addr, String> {
    s.parse()
        .map_err(|_| format!("{field}: invalid IPv6 address {s:?}"))
}

fn state(s: &str) -> Result<u8, String> {
    Ok(match s {
        "available" => dhcp_state::AVAILABLE,
        "active" => dhcp_state::ACTIVE,
        "expired" => dhcp_state::EXPIRED,
        "released" => dhcp_state::RELEASED,
        "abandoned" => dhcp_state::ABANDONED,
        "reset" => dhcp_state::RESET,
        "remote" => dhcp_state::REMOTE,
        "transitioning" => dhcp_state::TRANSITIONING,
        _ => return Err(format!("state: unknown dhcp-state {s:?}")),
    })
}

fn v4_binding(l: V4Line) -> Result<V4Binding, String> {
    let addr: Ipv4Addr = l
        .ipv4
        .parse()
        .map_err(|_| format!("ipv4: invalid IPv4 address {:?}", l.ipv4))?;
    let port_params = match l.psid {
        None => None,
        Some(p) => {
            let ok = p.offset <= 15
                && (1..=16).contains(&p.len)
                && u32::from(p.offset) + u32::from(p.len) <= 16
                && u32::from(p.id) < 1u32 << p.len;
            if !ok {
                return Err(format!(
                    "psid: out of range (offset {}, len {}, id {}): need offset <= 15, len 1..=16, offset + len <= 16, id < 2^len",
                    p.offset, p.len, p.id
                ));
            }
            Some(PortParams {
                offset: p.offset,
                psid_len: p.len,
                psid: p.id,
            })
        }
    };
    let chaddr = hex("chaddr", &l.chaddr)?;
    if chaddr.len() > 16 {
        return Err(format!("chaddr: {} octets, at most 16", chaddr.len()));
    }
    let link = l.link.as_deref().map(|s| ipv6("link", s)).transpose()?;
    let softwire_src = l
        .softwire_src
        .as_deref()
        .map(|s| ipv6("softwire_src", s))
        .transpose()?;
    let v6 = (link.is_some() || softwire_src.is_some()).then(|| V6ContextBinding {
        client_src: softwire_src.or(link).unwrap_or(Ipv6Addr::UNSPECIFIED),
        link: link.unwrap_or(Ipv6Addr::UNSPECIFIED),
        relay: None,
    });
    Ok(V4Binding {
        addr,
        port_params,
        htype: if chaddr.len() == 6 { 1 } else { 0 },
        chaddr,
        client_id: hex_opt("client_id", l.client_id, 1, 255)?,
        state: state(&l.state)?,
        cltt: l.cltt,
        state_start: l.cltt,
        expires: l.expires,
        circuit_id: None,
        remote_id: hex_opt("remote_id", l.remote_id, 1, 255)?,
        relay_id: hex_opt("relay_id", l.relay_id, 1, 255)?,
        softwire_src,
        v6,
        data_source: 0,
    })
}

/// `(preferred_until, valid_until)` from lifetimes counted from `cltt`.
fn lifetimes(field: &str, cltt: u32, preferred: u32, valid: u32) -> Result<(u32, u32), String> {
    if preferred > valid {
        return Err(format!(
            "{field}: preferred {preferred} exceeds valid {valid}"
        ));
    }
    let until = |l: u32| {
        if l == u32::MAX {
            u32::MAX
        } else {
            // A finite lifetime stays finite: past 2106 it ends at u32::MAX - 1.
            cltt.saturating_add(l).min(u32::MAX - 1)
        }
    };
    Ok((until(preferred), until(valid)))
}

/// The most addresses + prefixes one v6 binding may hold: with the other limits of a line
/// (DUID 130, relay-id 130, remote-id 1024 octets) its bulk reply stays well under the
/// 65535-octet message limit (1000 x 29 octets of IAADDR/IAPREFIX).
pub const MAX_V6_LEASES: usize = 1000;

fn v6_binding(l: V6Line) -> Result<V6Binding, String> {
    let duid = hex("duid", &l.duid)?;
    if duid.is_empty() || duid.len() > 130 {
        return Err(format!("duid: {} octets, expected 1 to 130", duid.len()));
    }
    let link = ipv6("link", &l.link)?;
    if l.iana.len() + l.iapd.len() > MAX_V6_LEASES {
        return Err(format!(
            "iana + iapd: {} entries, at most {MAX_V6_LEASES} (one binding must fit in one message)",
            l.iana.len() + l.iapd.len()
        ));
    }
    let mut iana = Vec::with_capacity(l.iana.len());
    for a in l.iana {
        let (preferred_until, valid_until) = lifetimes("iana", l.cltt, a.preferred, a.valid)?;
        iana.push(V6Addr {
            addr: ipv6("iana addr", &a.addr)?,
            preferred_until,
            valid_until,
        });
    }
    let mut iapd = Vec::with_capacity(l.iapd.len());
    for p in l.iapd {
        let (preferred_until, valid_until) = lifetimes("iapd", l.cltt, p.preferred, p.valid)?;
        let bad = || format!("iapd prefix: invalid prefix {:?} (want addr/len)", p.prefix);
        let (a, len) = p.prefix.split_once('/').ok_or_else(bad)?;
        let prefix = ipv6("iapd prefix", a)?;
        let prefix_len: u8 = len.parse().ok().filter(|&n| n <= 128).ok_or_else(bad)?;
        let host_bits = match prefix_len {
            0 => u128::MAX,
            n => u128::MAX.checked_shr(u32::from(n)).unwrap_or(0),
        };
        if u128::from(prefix) & host_bits != 0 {
            return Err(format!(
                "iapd prefix: {:?} has bits set past /{prefix_len}",
                p.prefix
            ));
        }
        iapd.push(V6Prefix {
            prefix,
            prefix_len,
            preferred_until,
            valid_until,
        });
    }
    Ok(V6Binding {
        duid,
        link,
        iana,
        iapd,
        cltt: l.cltt,
        relay_id: hex_opt("relay_id", l.relay_id, 1, 130)?,
        remote_id: hex_opt("remote_id", l.remote_id, 5, 1024)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JSON member: keys of both forms (some escaped or unknown), values right and wrong.
    fn member() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "ipv4",
            "ipv\\u0034",
            "psid",
            "chaddr",
            "client_id",
            "state",
            "cltt",
            "expires",
            "relay_id",
            "remote_id",
            "link",
            "softwire_src",
            "duid",
            "iana",
            "iapd",
            "bogus",
        ]);
        let value = prop::sample::select(vec![
            r#""192.0.2.10""#,
            r#""192.0.2.300""#,
            r#"{"offset":0,"len":4,"id":3}"#,
            r#"{"offset":0,"len":4,"id":99}"#,
            r#""02:00:00:00:00:01""#,
            r#""0003000102""#,
            r#""zz""#,
            r#""active""#,
            r#""asleep""#,
            "1700000000",
            "2000000000",
            "-1",
            "1.5",
            "null",
            r#""2001:db8:1::""#,
            r#""2001:db8:1::10""#,
            r#"[{"addr":"2001:db8:1::5","preferred":10,"valid":20}]"#,
            r#"[{"prefix":"2001:db8:100::/56","preferred":10,"valid":20}]"#,
            "[]",
        ]);
        (key, value).prop_map(|(k, v)| format!("\"{k}\":{v}"))
    }

    /// Lines that are mostly complete bindings of either form, plus random members on top.
    fn line() -> impl Strategy<Value = String> {
        let v4 = r#""ipv4":"192.0.2.10","chaddr":"02:00:00:00:00:01","state":"active","cltt":1700000000,"expires":2000000000"#;
        let v6 = r#""duid":"000300010200","link":"2001:db8:1::","cltt":1700000000"#;
        (
            prop::sample::select(vec![v4, v6, ""]),
            prop::collection::vec(member(), 0..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(base, extra, extra_first, trailing)| {
                let mut parts: Vec<String> = Vec::new();
                if !base.is_empty() {
                    parts.push(base.to_string());
                }
                if extra_first {
                    parts.splice(0..0, extra);
                } else {
                    parts.extend(extra);
                }
                let tail = if trailing { " x" } else { "" };
                format!("{{{}}}{tail}", parts.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The fast path gives exactly what the general path gives: the same binding, or for a
        /// line it does not take, the general path's own error.
        #[test]
        fn fast_path_agrees_with_the_general_path(l in line()) {
            prop_assert_eq!(parse_line(&l), parse_general(l.trim()));
        }

        /// Any text at all: an answer, never a panic (a feed file is written by others).
        #[test]
        fn any_text_is_answered(l in any::<String>(), json in "[{}\\[\\]\":,0-9a-z.\\\\ -]{0,80}") {
            let _ = parse_line(&l);
            let _ = parse_line(&json);
        }
    }

    #[test]
    fn lines_parsed_on_threads_come_back_in_order() {
        let lines: Vec<String> = (0..3 * BATCH_LINES + 7)
            .map(|i| {
                if i % 1000 == 999 {
                    format!("bad {i}")
                } else {
                    format!(
                        r#"{{"ipv4":"10.{}.{}.{}","chaddr":"02:00:00:00:00:01","state":"active","cltt":1,"expires":2}}"#,
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    )
                }
            })
            .collect();
        let serial = parse_lines(&lines, 1);
        assert_eq!(parse_lines(&lines, 4), serial);
        assert_eq!(parse_lines(&lines, 3), serial);
        assert_eq!(serial.len(), lines.len());
        assert!(serial[998].is_ok() && serial[999].is_err());
    }

    #[test]
    fn duplicated_keys_and_both_forms_read_as_before() {
        // A duplicated key: the general path keeps the last one (the typed parse refuses it).
        let dup = r#"{"ipv4":"192.0.2.1","ipv4":"192.0.2.2","chaddr":"02:00:00:00:00:01","state":"active","cltt":1,"expires":2}"#;
        match parse_line(dup) {
            Ok(Some(FeedBinding::V4(b))) => assert_eq!(b.addr, Ipv4Addr::new(192, 0, 2, 2)),
            other => panic!("{other:?}"),
        }
        // Both key fields: read as v4, which refuses `duid`.
        let both = r#"{"duid":"00030001","ipv4":"192.0.2.1","chaddr":"02:00:00:00:00:01","state":"active","cltt":1,"expires":2}"#;
        let err = parse_line(both).expect_err("both forms");
        assert!(err.contains("duid"), "{err}");
    }
}
