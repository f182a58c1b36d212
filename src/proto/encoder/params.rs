//! What the encoder is told about a query: the options it asked for ([`OroSet`], [`PrlSet`]),
//! the statuses a message may carry ([`V6Status`], [`V4Status`]) and the per-query parameters of
//! each wire form ([`V6ReplyParams`], [`V4ReplyParams`], [`Dhcp4o6ReplyParams`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use smallvec::SmallVec;

use crate::proto::codes;

/// The option codes a DHCPv6 requestor listed in the ORO inside OPTION_LQ_QUERY (RFC 5007
/// §4.1.2.1): a bit set for codes below 256 (every option the encoder looks up) and the rest
/// in a list, inline up to 8 codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OroSet {
    low: [u64; 4],
    high: SmallVec<[u16; 8]>,
}

impl OroSet {
    /// The set of the given codes (duplicates are kept once).
    pub fn from_codes(codes: impl IntoIterator<Item = u16>) -> OroSet {
        let mut set = OroSet::default();
        for c in codes {
            if c < 256 {
                set.low[usize::from(c >> 6)] |= 1 << (c & 63);
            } else if !set.high.contains(&c) {
                set.high.push(c);
            }
        }
        set
    }

    /// From an OPTION_ORO payload (2-octet codes; a trailing odd octet is ignored).
    pub fn from_oro_payload(payload: &[u8]) -> OroSet {
        OroSet::from_codes(
            payload
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
    }

    /// Whether `code` was asked for.
    #[inline]
    pub fn contains(&self, code: u16) -> bool {
        if code < 256 {
            self.low[usize::from(code >> 6)] & (1 << (code & 63)) != 0
        } else {
            self.high.contains(&code)
        }
    }
}

/// The DHCPv4 parameter request list (option 55) of a bulk/active query, as a 256-bit set
/// (RFC 6926 §7.2: the PRL of the query applies to every reply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrlSet([u64; 4]);

impl PrlSet {
    /// From an option 55 payload.
    pub fn from_prl(codes: &[u8]) -> PrlSet {
        let mut set = PrlSet::default();
        for &c in codes {
            set.insert(c);
        }
        set
    }

    /// Adds `code`.
    pub fn insert(&mut self, code: u8) {
        if let Some(w) = self.0.get_mut(usize::from(code >> 6)) {
            *w |= 1 << (code & 63);
        }
    }

    /// Whether `code` was asked for.
    pub fn contains(&self, code: u8) -> bool {
        self.0
            .get(usize::from(code >> 6))
            .is_some_and(|w| w & (1 << (code & 63)) != 0)
    }
}

/// A DHCPv6 status (OPTION_STATUS_CODE, RFC 8415 §21.13): code and UTF-8 text (may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Status<'a> {
    /// The status code ([`codes::v6status`]).
    pub code: u16,
    /// A message for humans; empty for none.
    pub text: &'a str,
}

/// A DHCPv4 leasequery status (option 151, RFC 6926 §6.2.2): code and UTF-8 text (may be empty,
/// must not contain NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Status<'a> {
    /// The status code ([`codes::v4status`]).
    pub code: u8,
    /// A message for humans; empty for none.
    pub text: &'a str,
}

impl<'a> V6Status<'a> {
    /// The DHCPv4 status of the same meaning (DHCP4o6: both layers must agree; see
    /// [`codes::v4_status_for_v6_lossy`]).
    pub fn v4_twin(self) -> V4Status<'a> {
        V4Status {
            code: codes::v4_status_for_v6_lossy(self.code),
            text: self.text,
        }
    }
}

/// Per-query parameters of a DHCPv6 (or the v6 layer of a DHCP4o6) reply stream.
#[derive(Debug, Clone)]
pub struct V6ReplyParams<'a> {
    /// The query's 24-bit transaction id (the top 8 bits are ignored).
    pub xid: u32,
    /// The requestor's DUID, echoed in LEASEQUERY-REPLY's OPTION_CLIENTID (RFC 5460 §5.2).
    pub requestor_duid: &'a [u8],
    /// This server's DUID (OPTION_SERVERID in LEASEQUERY-REPLY).
    pub server_duid: &'a [u8],
    /// The ORO inside OPTION_LQ_QUERY: which options go inside OPTION_CLIENT_DATA.
    pub oro: OroSet,
    /// The ORO asked for OPTION_LQ_BASE_TIME (100): put it in every message (RFC 7653 §9.3).
    pub base_time: bool,
    /// A status to put in the LEASEQUERY-REPLY that carries the first binding (None = success,
    /// the usual case: RFC 6926/5460 send no Success status without a reason).
    pub reply_status: Option<V6Status<'a>>,
    /// The time the messages are built, Unix seconds.
    pub now: u32,
}

/// Per-query parameters of a DHCPv4 (or the v4 layer of a DHCP4o6) reply stream.
#[derive(Debug, Clone, Copy)]
pub struct V4ReplyParams {
    /// The query's 32-bit transaction id.
    pub xid: u32,
    /// Server identifier (option 54), sent in the first message only.
    pub server_id: Ipv4Addr,
    /// The query's parameter request list.
    pub prl: PrlSet,
    /// The time the messages are built, Unix seconds (base-time 152).
    pub now: u32,
}

/// Per-query parameters of a DHCP4o6 leasequery reply stream: both layers, plus the lw4o6
/// configuration returned inside OPTION_CLIENT_DATA (docs/DESIGN.md section 4).
#[derive(Debug, Clone)]
pub struct Dhcp4o6ReplyParams<'a> {
    /// The DHCPv6 layer (xid, DUIDs, ORO, base-time).
    pub v6: V6ReplyParams<'a>,
    /// The DHCPv4 layer inside OPTION_DHCPV4_MSG (xid, server id, PRL).
    pub v4: V4ReplyParams,
    /// The BR address for OPTION_S46_BR (90) inside OPTION_S46_CONT_LW (96), RFC 7598 §4.2.
    pub br: Option<Ipv6Addr>,
    /// The bind-prefix hint (length, prefix) for OPTION_S46_BIND_IPV6_PREFIX (137), RFC 8539 §6.
    pub bind_prefix: Option<(u8, Ipv6Addr)>,
}
