//! Per-message decisions of a requestor connection (sans-io): what a received leasequery message
//! asks for, whether it is allowed, and which reply or scan it turns into.
//!
//! [`on_message`] takes one complete message (the TCP framing already removed) and returns an
//! [`Action`]; the glommio shell carries it out. A [`ScanPlan`] is what a bulk query becomes:
//! which bindings to scan on every shard ([`ScanTarget`]), and how to encode them (first
//! message, the rest, the end of the stream). What the operator allows is a [`Policy`], not
//! the whole configuration.
//!
//! | file | what |
//! |---|---|
//! | `v6.rs` | TCP 547: LEASEQUERY (plain and DHCP4o6), STARTTLS, UDP LEASEQUERY |
//! | `v4.rs` | TCP 67: DHCPBULKLEASEQUERY, DHCPTLS |
//! | `active/` | active queries: checking them, their filters, their stream's messages, the backlog |
//! | `form.rs` | what every reply echoes, read from the query (xids, DUIDs, ORO/PRL, time bounds) |
//! | `connection.rs` | one requestor connection, sans-io: framing and its deadlines, parallel-query slots, running xids, the active query alone, the stream's shape, idle and blocked-send deadlines |
//! | `plan.rs` | the scan plan of a bulk query and its encoder |
//! | `pools.rs` | the all-configured-addresses phase: pool addresses without a binding (RFC 6926 §6.2) |
//! | `fanout.rs` | an active change's wire forms, encoded once per form for every subscriber that wants it |
//! | `refuse.rs` | every error reply: [`refuse::refusal`] for each wire form, the TLS answers, [`refuse::busy_reply`] |

pub mod active;
pub mod connection;
pub mod fanout;
mod form;
mod plan;
pub mod pools;
pub mod refuse;
mod v4;
mod v6;

use std::net::Ipv4Addr;

pub use plan::{Encoded, Form, PlanEncoder, Record, ScanPlan, ScanTarget, V4Form, V6Form};
pub use v6::udp_leasequery;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// TCP 547: DHCPv6 and DHCP4o6 leasequery (RFC 5460, RFC 7653, the draft).
    V6,
    /// TCP 67: DHCPv4 leasequery (RFC 6926, RFC 7724).
    V4,
}

/// Who this server is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// OPTION_SERVERID payload (a DUID).
    pub server_duid: Vec<u8>,
    /// DHCPv4 server identifier (option 54).
    pub server_id: Ipv4Addr,
}

/// What the session may serve: the operator's settings it reads (config `active`,
/// `allow_insecure_active`, `tls`), so that the sans-io layer does not depend on the whole
/// configuration. [`crate::config::Config::session_policy`] builds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Active leasequery is served (RFC 7653, RFC 7724); otherwise a bulk-only server.
    pub active: bool,
    /// Active leasequery may run without TLS (RFC 7653 §9.1 insecure mode). The connection
    /// sets it for the message it decides when the connection is secured by TLS.
    pub allow_insecure_active: bool,
    /// Whether STARTTLS / DHCPTLS is accepted, and whether plain queries are (config `tls`).
    pub tls: TlsMode,
}

/// The TLS mode (config `tls`, flag `--tls`; issue 15 part 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// No TLS: STARTTLS / DHCPTLS get TLSConnectionRefused (RFC 7653 §9.1 insecure mode).
    #[default]
    Off,
    /// STARTTLS / DHCPTLS accepted; plain bulk leasequery still served; a plain active query
    /// is refused (NotAllowed, close) unless `allow_insecure_active`.
    Optional,
    /// Secure mode: the first message must be STARTTLS / DHCPTLS; anything else closes.
    Required,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "off" => Ok(TlsMode::Off),
            "optional" => Ok(TlsMode::Optional),
            "required" => Ok(TlsMode::Required),
            _ => Err(format!("{s:?}: must be off, optional or required")),
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::Optional => "optional",
            TlsMode::Required => "required",
        })
    }
}

/// True when `msg` asks for TLS: STARTTLS on TCP 547, DHCPTLS on TCP 67 (options ignored).
pub fn is_tls_request(family: Family, msg: &[u8]) -> bool {
    match family {
        Family::V6 => msg.first() == Some(&crate::proto::codes::v6msg::STARTTLS),
        Family::V4 => {
            crate::proto::v4::MessageView::parse(msg)
                .ok()
                .and_then(|v| v.message_type())
                == Some(crate::proto::codes::v4msg::TLS)
        }
    }
}

/// True when `msg` is an active query (ACTIVELEASEQUERY, DHCPACTIVELEASEQUERY).
pub fn is_active_query(family: Family, msg: &[u8]) -> bool {
    match family {
        Family::V6 => msg.first() == Some(&crate::proto::codes::v6msg::ACTIVELEASEQUERY),
        Family::V4 => {
            crate::proto::v4::MessageView::parse(msg)
                .ok()
                .and_then(|v| v.message_type())
                == Some(crate::proto::codes::v4msg::ACTIVELEASEQUERY)
        }
    }
}

/// The framed answer that accepts STARTTLS / DHCPTLS in `msg` (REPLY without a status, copying
/// the STARTTLS xid; DHCPTLS without dhcp-status-code): `None` when `msg` cannot be parsed
/// (the connection closes).
pub fn tls_accept(family: Family, msg: &[u8], id: &Identity, now: u32) -> Option<Vec<u8>> {
    match family {
        Family::V6 => {
            let view = crate::proto::v6::MessageView::parse(msg).ok()?;
            Some(refuse::starttls_reply(&view, id, false))
        }
        Family::V4 => {
            let view = crate::proto::v4::MessageView::parse(msg).ok()?;
            Some(refuse::dhcptls_reply(&view, id, false, now))
        }
    }
}

/// What the connection does with one received message.
#[derive(Debug)]
pub enum Action {
    /// A protocol violation (garbage, a message type not allowed on the connection): close
    /// without a reply (RFC 7724 §8.1.1; Kea does the same for v6).
    Close,
    /// Discard silently and keep the connection (RFC 5007 §4.2.1: no Client-ID, no
    /// OPTION_LQ_QUERY, or a Server-ID that is not ours).
    Drop,
    /// Send this complete, framed reply; the query is over. Close afterwards when `close`.
    Reply { bytes: Vec<u8>, close: bool },
    /// Run a bulk query.
    Scan(Box<ScanPlan>),
    /// Start an active query (RFC 7653, RFC 7724, the DHCP4o6 draft).
    Active(Box<active::ActivePlan>),
}

/// Decides what to do with one message received on a `family` connection at Unix time `now`.
pub fn on_message(
    family: Family,
    msg: &[u8],
    id: &Identity,
    policy: &Policy,
    links: &LinkSet,
    now: u32,
) -> Action {
    match family {
        Family::V6 => v6::on_message(msg, id, policy, links, now),
        Family::V4 => v4::on_message(msg, id, policy, now),
    }
}

/// The links this server has bindings or subnets on, as /64 prefixes: a link-address query on
/// any other link is NotConfigured (RFC 5460 §5.3). Built at start, read-only afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSet(hashbrown::HashSet<u64>, Vec<(u128, u8)>);

impl LinkSet {
    /// Adds a configured prefix (an authority subnet's `links`): every address inside it is a
    /// known link.
    pub fn insert_prefix(&mut self, prefix: std::net::Ipv6Addr, len: u8) {
        let len = len.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        self.1.push((u128::from(prefix) & mask, len));
    }
    /// Adds the /64 of `link`.
    pub fn insert(&mut self, link: std::net::Ipv6Addr) {
        self.0.insert(prefix64(link));
    }
    /// True when a link with the same /64 as `addr` is known.
    pub fn contains(&self, addr: std::net::Ipv6Addr) -> bool {
        self.0.contains(&prefix64(addr))
            || self.1.iter().any(|&(p, len)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(addr) & mask == p
            })
    }
}

fn prefix64(a: std::net::Ipv6Addr) -> u64 {
    (u128::from(a) >> 64) as u64
}
