//! The JSON-lines import file (`--import FILE`): one binding per line, loaded into the right
//! shards at start. The whole file is parsed and checked before any shard sees a binding, so
//! a bad line stops the start with `FILE:LINE: reason` and nothing is half-loaded.
//!
//! Format (README "Import file format"):
//! - v4 / DHCP4o6 line: `{"ipv4":"192.0.2.10","psid":{"offset":0,"len":4,"id":3},
//!   "chaddr":"02:00:00:00:00:01","client_id":"<hex>","state":"active","cltt":<unix s>,
//!   "expires":<unix s>,"relay_id":"<hex>","remote_id":"<hex>","link":"2001:db8:1::",
//!   "softwire_src":"2001:db8:1::10"}`; psid, client_id, relay_id, remote_id, link and
//!   softwire_src are optional. A line with `link` or `softwire_src` is a DHCP4o6 binding.
//! - v6 line: `{"duid":"<hex>","link":"2001:db8:1::","iana":[{"addr":..,"preferred":<s>,
//!   "valid":<s>}],"iapd":[{"prefix":"2001:db8:100::/56","preferred":<s>,"valid":<s>}],
//!   "cltt":<unix s>,"relay_id":"<hex>","remote_id":"<hex>"}`; lifetimes count from cltt.
//! - Empty lines and lines starting with `#` are skipped; unknown fields are errors.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::hex_decode;
use crate::lease::{
    shard_of_addr, shard_of_duid, LeaseShard, V4Binding, V6Binding, V6ContextBinding,
};
use crate::proto::codes::dhcp_state;
use crate::proto::record::{PortParams, V6Addr, V6Prefix};
use crate::session::LinkSet;

/// A line that cannot be imported: `FILE:LINE: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based; 0 when the file itself could not be read.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

impl std::error::Error for ImportError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Psid {
    offset: u8,
    len: u8,
    id: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V4Line {
    ipv4: Ipv4Addr,
    psid: Option<Psid>,
    chaddr: String,
    client_id: Option<String>,
    state: String,
    cltt: u32,
    expires: u32,
    relay_id: Option<String>,
    remote_id: Option<String>,
    link: Option<Ipv6Addr>,
    softwire_src: Option<Ipv6Addr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifetime6 {
    addr: Ipv6Addr,
    preferred: u32,
    valid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prefix6 {
    prefix: String,
    preferred: u32,
    valid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V6Line {
    duid: String,
    link: Ipv6Addr,
    #[serde(default)]
    iana: Vec<Lifetime6>,
    #[serde(default)]
    iapd: Vec<Prefix6>,
    cltt: u32,
    relay_id: Option<String>,
    remote_id: Option<String>,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedBinding {
    V4(V4Binding),
    V6(V6Binding),
}

/// The bindings of one shard.
#[derive(Debug, Default)]
pub struct ShardImport {
    pub v4: Vec<V4Binding>,
    pub v6: Vec<V6Binding>,
}

impl ShardImport {
    /// Inserts every binding (they were checked when parsed, so none is refused).
    pub fn load_into(self, table: &mut LeaseShard) {
        for b in self.v4 {
            let _ = table.upsert_v4(b);
        }
        for b in self.v6 {
            let _ = table.upsert_v6(b);
        }
    }
}

/// The whole file, partitioned by shard.
#[derive(Debug)]
pub struct ImportedShards {
    shards: Vec<ShardImport>,
    links: LinkSet,
}

impl ImportedShards {
    /// Nothing to load.
    pub fn empty(shards: usize) -> ImportedShards {
        ImportedShards {
            shards: (0..shards).map(|_| ShardImport::default()).collect(),
            links: LinkSet::default(),
        }
    }
    /// Every link a binding is on.
    pub fn links(&self) -> LinkSet {
        self.links.clone()
    }
    /// (v4 and 4o6 bindings, v6 bindings).
    pub fn counts(&self) -> (usize, usize) {
        self.shards
            .iter()
            .fold((0, 0), |(a, b), s| (a + s.v4.len(), b + s.v6.len()))
    }
    pub fn into_shards(self) -> Vec<ShardImport> {
        self.shards
    }
}

fn hex_field(name: &str, s: &str) -> Result<Vec<u8>, String> {
    match hex_decode(s) {
        Some(b) if !b.is_empty() => Ok(b),
        _ => Err(format!("{name}: {s:?} is not hex")),
    }
}

fn state_of(name: &str) -> Result<u8, String> {
    Ok(match name {
        "available" => dhcp_state::AVAILABLE,
        "active" => dhcp_state::ACTIVE,
        "expired" => dhcp_state::EXPIRED,
        "released" => dhcp_state::RELEASED,
        "abandoned" => dhcp_state::ABANDONED,
        "reset" => dhcp_state::RESET,
        "remote" => dhcp_state::REMOTE,
        "transitioning" => dhcp_state::TRANSITIONING,
        _ => return Err(format!("state: unknown state {name:?}")),
    })
}

/// Parses one line (not empty, not a comment).
pub fn parse_line(line: &str) -> Result<ImportedBinding, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let is_v6 = value.get("duid").is_some();
    if is_v6 {
        let l: V6Line = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let duid = hex_field("duid", &l.duid)?;
        if duid.len() < 2 || duid.len() > 130 {
            return Err("duid: must be 2..130 octets".into());
        }
        let add = |s: u32| l.cltt.saturating_add(s);
        let iana = l
            .iana
            .iter()
            .map(|a| V6Addr {
                addr: a.addr,
                preferred_until: add(a.preferred),
                valid_until: add(a.valid),
            })
            .collect();
        let mut iapd = Vec::with_capacity(l.iapd.len());
        for p in &l.iapd {
            let (addr, len) = p
                .prefix
                .split_once('/')
                .ok_or_else(|| format!("iapd: {:?} is not PREFIX/LEN", p.prefix))?;
            let prefix: Ipv6Addr = addr
                .parse()
                .map_err(|_| format!("iapd: {addr:?} is not an IPv6 address"))?;
            let prefix_len: u8 = len
                .parse()
                .ok()
                .filter(|&l| l <= 128)
                .ok_or_else(|| format!("iapd: bad prefix length {len:?}"))?;
            iapd.push(V6Prefix {
                prefix,
                prefix_len,
                preferred_until: add(p.preferred),
                valid_until: add(p.valid),
            });
        }
        if l.iana.iter().any(|a| a.preferred > a.valid)
            || l.iapd.iter().any(|p| p.preferred > p.valid)
        {
            return Err("preferred lifetime longer than valid lifetime".into());
        }
        return Ok(ImportedBinding::V6(V6Binding {
            duid,
            link: l.link,
            iana,
            iapd,
            cltt: l.cltt,
            relay_id: l.relay_id.map(|s| hex_field("relay_id", &s)).transpose()?,
            remote_id: l
                .remote_id
                .map(|s| hex_field("remote_id", &s))
                .transpose()?,
        }));
    }
    let l: V4Line = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let chaddr =
        hex_decode(&l.chaddr).ok_or_else(|| format!("chaddr: {:?} is not hex", l.chaddr))?;
    if chaddr.len() > 16 {
        return Err("chaddr: longer than 16 octets".into());
    }
    let port_params = match l.psid {
        None => None,
        Some(p) => {
            let pp = PortParams {
                offset: p.offset,
                psid_len: p.len,
                psid: p.id,
            };
            let ok = p.offset <= 15
                && p.len <= 16
                && p.offset as u32 + p.len as u32 <= 16
                && (p.id as u32) < (1u32 << p.len);
            if !ok {
                return Err(format!(
                    "psid: offset {} len {} id {} out of range (RFC 7597 §5.1)",
                    p.offset, p.len, p.id
                ));
            }
            Some(pp)
        }
    };
    let state = state_of(&l.state)?;
    let v6 = if l.link.is_some() || l.softwire_src.is_some() {
        Some(V6ContextBinding {
            client_src: l.softwire_src.or(l.link).unwrap_or(Ipv6Addr::UNSPECIFIED),
            link: l.link.unwrap_or(Ipv6Addr::UNSPECIFIED),
            relay: None,
        })
    } else {
        None
    };
    Ok(ImportedBinding::V4(V4Binding {
        addr: l.ipv4,
        port_params,
        htype: if chaddr.is_empty() { 0 } else { 1 },
        chaddr,
        client_id: l
            .client_id
            .map(|s| hex_field("client_id", &s))
            .transpose()?,
        state,
        cltt: l.cltt,
        state_start: l.cltt,
        expires: l.expires,
        circuit_id: None,
        remote_id: l
            .remote_id
            .map(|s| hex_field("remote_id", &s))
            .transpose()?,
        relay_id: l.relay_id.map(|s| hex_field("relay_id", &s)).transpose()?,
        softwire_src: l.softwire_src,
        v6,
        data_source: 0,
    }))
}

/// Reads `path`, checks every line, and partitions the bindings over `shards` shards with the
/// routing functions of [`crate::lease`].
pub fn load_file(path: &Path, shards: usize) -> Result<ImportedShards, ImportError> {
    let err = |line: usize, reason: String| ImportError {
        file: path.to_path_buf(),
        line,
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| err(0, e.to_string()))?;
    let mut out = ImportedShards::empty(shards.max(1));
    let mut seen4: HashMap<(Ipv4Addr, Option<u16>), usize> = HashMap::new();
    let mut seen6: HashMap<(Vec<u8>, Ipv6Addr), usize> = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| err(n, e.to_string()))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match parse_line(t).map_err(|r| err(n, r))? {
            ImportedBinding::V4(b) => {
                let key = (b.addr, b.port_params.map(|p| p.psid));
                if let Some(prev) = seen4.insert(key, n) {
                    return Err(err(
                        n,
                        format!("duplicate binding {} (also on line {prev})", b.addr),
                    ));
                }
                if let Some(v6) = &b.v6 {
                    out.links.insert(v6.link);
                }
                out.shards[shard_of_addr(b.addr, shards.max(1))].v4.push(b);
            }
            ImportedBinding::V6(b) => {
                if let Some(prev) = seen6.insert((b.duid.clone(), b.link), n) {
                    return Err(err(
                        n,
                        format!("duplicate binding for this duid and link (also on line {prev})"),
                    ));
                }
                out.links.insert(b.link);
                out.shards[shard_of_duid(&b.duid, shards.max(1))].v6.push(b);
            }
        }
    }
    Ok(out)
}
