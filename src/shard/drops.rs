//! Drops that say why (README "Drop warnings"): every datagram or connection dropped for a
//! reason an operator can fix is counted (the reason's counter in [`super::stats::Stats`] or
//! [`crate::authority::AuthorityCounters`]) and logged at WARN with the peer and the reason, at
//! most one line per reason per window (10 s) and shard, carrying the count suppressed since
//! the reason's previous line. What is still suppressed at exit is logged then.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::ratelimit::RateLimiter;

/// One line per reason per this window and shard.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Test knob (not a config key): the window in milliseconds, for tests that cannot wait 10 s.
pub const WINDOW_ENV: &str = "LEASEQUERYD_DROP_LOG_WINDOW_MS";

/// A drop reason: its name in the log, the counter that counts it, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason {
    pub name: &'static str,
    pub counter: &'static str,
    pub why: &'static str,
}

macro_rules! reasons {
    ($($id:ident: $name:literal, $counter:literal, $why:literal;)*) => {
        $( pub(crate) const $id: Reason = Reason { name: $name, counter: $counter, why: $why }; )*
        /// Every reason.
        pub(crate) const ALL: &[Reason] = &[$($id),*];
    };
}

reasons! {
    NOT_ALLOWED: "requestor_not_allowed", "refused_not_allowed",
        "connection refused: requestor not in the allow-list (`allow`)";
    OVER_LIMIT: "over_max_connections", "refused_over_limit",
        "connection refused: over max_connections (RFC 6926 §8.1)";
    PROTOCOL_ERROR: "protocol_error", "closed_protocol_error",
        "connection closed: malformed frame or message, or a message type not allowed there";
    QUERY_DROPPED: "query_malformed", "queries_dropped",
        "query dropped: no OPTION_CLIENTID / OPTION_LQ_QUERY, or another server's identifier";
    UNPARSED: "malformed", "dhcp4o6_dropped_unparsed",
        "datagram dropped: malformed (not a DHCPV4-QUERY or UDP LEASEQUERY that parses, or from IPv4)";
    BUSY: "busy", "dhcp4o6_dropped_busy",
        "datagram dropped: too many handlings in flight on this shard (slow journal, or too few shards)";
    NO_SUBNET: "no_subnet", "drop_no_subnet",
        "datagram dropped: no subnet for the link (no `links` prefix of an authority subnet holds the relay's link-address or the client's address)";
    NEEDS_159: "needs_option_159", "drop_needs_159",
        "datagram dropped: option 159 needed (the link has only shared subnets, or a shared_only one, and the client's option 55 does not list 159; RFC 7618 §8)";
    OVERSIZE: "oversize", "drop_oversize",
        "datagram dropped: longer than max_datagram";
    MALFORMED_V6: "malformed_v6", "drop_malformed_v6",
        "datagram dropped: malformed DHCPv6 envelope or relay chain";
    TOO_DEEP: "relay_too_deep", "drop_too_deep",
        "datagram dropped: too many nested Relay-Forward envelopes";
    NOT_QUERY: "not_dhcpv4_query", "drop_not_query",
        "datagram dropped: not a DHCPV4-QUERY";
    NO_V4_MSG: "no_dhcpv4_msg", "drop_no_dhcpv4_msg",
        "datagram dropped: DHCPV4-QUERY without OPTION_DHCPV4_MSG (RFC 7341 §11)";
    MANY_V4_MSG: "many_dhcpv4_msg", "drop_many_dhcpv4_msg",
        "datagram dropped: more than one OPTION_DHCPV4_MSG (RFC 7341 §9)";
    MALFORMED_V4: "malformed_v4", "drop_malformed_v4",
        "datagram dropped: malformed DHCPv4 message or option value";
    BAD_V4_TYPE: "bad_dhcpv4_type", "drop_bad_v4_type",
        "datagram dropped: a DHCPv4 message type the server does not take";
    NO_CLIENT_ID: "no_client_id", "drop_no_client_id",
        "datagram dropped: no RFC 4361 client identifier (option 61, type 255)";
    WRONG_SHARD: "wrong_shard", "drop_wrong_shard",
        "datagram dropped: routed to a shard that does not own its client (a bug; please report)";
}

/// The reason an authority `drop_*` counter stands for; `None` for a routine drop that needs
/// no operator (`drop_other_server`: a REQUEST that chose another server).
pub(crate) fn authority_reason(counter: &str) -> Option<Reason> {
    ALL.iter().copied().find(|r| r.counter == counter)
}

/// One shard's drop log.
#[derive(Debug)]
pub(crate) struct DropLog {
    shard: usize,
    start: Instant,
    limiter: RefCell<RateLimiter<&'static str>>,
}

impl DropLog {
    /// The window is [`DEFAULT_WINDOW`], or [`WINDOW_ENV`] milliseconds when that is set.
    pub fn new(shard: usize) -> DropLog {
        let window = std::env::var(WINDOW_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_WINDOW);
        DropLog {
            shard,
            start: Instant::now(),
            limiter: RefCell::new(RateLimiter::new(window)),
        }
    }

    /// One drop for `reason` from `peer` (already counted by the caller): a WARN line unless
    /// the reason had one within the window.
    pub fn note(&self, reason: Reason, peer: SocketAddr) {
        let mut l = self.limiter.borrow_mut();
        if let Some(suppressed) = l.hit(reason.name, self.start.elapsed()) {
            warn!(
                shard = self.shard,
                reason = reason.name,
                counter = reason.counter,
                %peer,
                suppressed,
                window_ms = l.window().as_millis() as u64,
                "{}",
                reason.why
            );
        }
    }

    /// At exit: a line per reason with drops suppressed since its last line.
    pub fn flush(&self) {
        for (name, suppressed) in self.limiter.borrow_mut().flush() {
            let counter = ALL
                .iter()
                .find(|r| r.name == name)
                .map_or("", |r| r.counter);
            warn!(
                shard = self.shard,
                reason = name,
                counter,
                suppressed,
                "drops suppressed since the last line of this reason (at exit)"
            );
        }
    }
}
