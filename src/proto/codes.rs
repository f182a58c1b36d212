//! Code points used on the wire: DHCPv6 and DHCPv4 message types, option codes, status codes,
//! leasequery query types and DHCPv4 lease states.
//!
//! Numbers are from the RFCs (see `shared/spec/codepoints-and-scenarios.md` section 1). Watch
//! the classic traps: LEASEQUERY-DONE is 16 and LEASEQUERY-DATA is 17; the DHCPv4 and DHCPv6
//! status numbers differ (see [`v4_status_for_v6`] and [`v6_status_for_v4`]).

/// DHCPv6 message types (RFC 8415, 5007, 5460, 7341, 7653).
pub mod v6msg {
    /// REPLY (RFC 8415): the answer to STARTTLS (RFC 7653 §6.2.2).
    pub const REPLY: u8 = 7;
    /// RELAY-FORW (RFC 8415).
    pub const RELAY_FORW: u8 = 12;
    /// RELAY-REPL (RFC 8415).
    pub const RELAY_REPL: u8 = 13;
    /// LEASEQUERY (RFC 5007).
    pub const LEASEQUERY: u8 = 14;
    /// LEASEQUERY-REPLY (RFC 5007).
    pub const LEASEQUERY_REPLY: u8 = 15;
    /// LEASEQUERY-DONE (RFC 5460). Lower than DATA: easy to swap.
    pub const LEASEQUERY_DONE: u8 = 16;
    /// LEASEQUERY-DATA (RFC 5460).
    pub const LEASEQUERY_DATA: u8 = 17;
    /// DHCPV4-QUERY (RFC 7341).
    pub const DHCPV4_QUERY: u8 = 20;
    /// DHCPV4-RESPONSE (RFC 7341).
    pub const DHCPV4_RESPONSE: u8 = 21;
    /// ACTIVELEASEQUERY (RFC 7653).
    pub const ACTIVELEASEQUERY: u8 = 22;
    /// STARTTLS (RFC 7653).
    pub const STARTTLS: u8 = 23;
}

/// DHCPv6 option codes.
pub mod v6opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IAADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const RELAY_MSG: u16 = 9;
    pub const STATUS_CODE: u16 = 13;
    pub const INTERFACE_ID: u16 = 18;
    pub const IA_PD: u16 = 25;
    pub const IAPREFIX: u16 = 26;
    pub const REMOTE_ID: u16 = 37;
    pub const LQ_QUERY: u16 = 44;
    pub const CLIENT_DATA: u16 = 45;
    pub const CLT_TIME: u16 = 46;
    pub const LQ_RELAY_DATA: u16 = 47;
    pub const LQ_CLIENT_LINK: u16 = 48;
    pub const RELAY_ID: u16 = 53;
    pub const DHCPV4_MSG: u16 = 87;
    pub const DHCP4_O_DHCP6_SERVER: u16 = 88;
    pub const S46_BR: u16 = 90;
    pub const S46_V4V6BIND: u16 = 92;
    pub const S46_PORTPARAMS: u16 = 93;
    pub const S46_CONT_LW: u16 = 96;
    pub const LQ_BASE_TIME: u16 = 100;
    pub const LQ_START_TIME: u16 = 101;
    pub const LQ_END_TIME: u16 = 102;
    pub const S46_BIND_IPV6_PREFIX: u16 = 137;
}

/// DHCPv6 status codes (OPTION_STATUS_CODE).
pub mod v6status {
    pub const SUCCESS: u16 = 0;
    pub const UNSPEC_FAIL: u16 = 1;
    pub const UNKNOWN_QUERY_TYPE: u16 = 7;
    pub const MALFORMED_QUERY: u16 = 8;
    pub const NOT_CONFIGURED: u16 = 9;
    pub const NOT_ALLOWED: u16 = 10;
    pub const QUERY_TERMINATED: u16 = 11;
    pub const DATA_MISSING: u16 = 12;
    pub const CATCH_UP_COMPLETE: u16 = 13;
    pub const NOT_SUPPORTED: u16 = 14;
    pub const TLS_CONNECTION_REFUSED: u16 = 15;
}

/// OPTION_LQ_QUERY query types (RFC 5007, 5460).
pub mod query_type {
    pub const BY_ADDRESS: u8 = 1;
    pub const BY_CLIENTID: u8 = 2;
    pub const BY_RELAY_ID: u8 = 3;
    pub const BY_LINK_ADDRESS: u8 = 4;
    pub const BY_REMOTE_ID: u8 = 5;
}

/// DHCPv4 message types (option 53).
pub mod v4msg {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
    pub const FORCERENEW: u8 = 9;
    pub const LEASEQUERY: u8 = 10;
    pub const LEASEUNASSIGNED: u8 = 11;
    pub const LEASEUNKNOWN: u8 = 12;
    pub const LEASEACTIVE: u8 = 13;
    pub const BULKLEASEQUERY: u8 = 14;
    pub const LEASEQUERYDONE: u8 = 15;
    pub const ACTIVELEASEQUERY: u8 = 16;
    pub const LEASEQUERYSTATUS: u8 = 17;
    pub const TLS: u8 = 18;
}

/// DHCPv4 option codes.
pub mod v4opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_LAST_TRANSACTION_TIME: u8 = 91;
    pub const ASSOCIATED_IP: u8 = 92;
    pub const DHCP4O6_S46_SADDR: u8 = 109;
    pub const STATUS_CODE: u8 = 151;
    pub const BASE_TIME: u8 = 152;
    pub const START_TIME_OF_STATE: u8 = 153;
    pub const QUERY_START_TIME: u8 = 154;
    pub const QUERY_END_TIME: u8 = 155;
    pub const DHCP_STATE: u8 = 156;
    pub const DATA_SOURCE: u8 = 157;
    pub const V4_PORTPARAMS: u8 = 159;
    pub const VSS: u8 = 221;
    pub const END: u8 = 255;
}

/// Option 82 sub-options (RFC 3046, 4649 equivalents, 6925).
pub mod v4relay {
    pub const CIRCUIT_ID: u8 = 1;
    pub const REMOTE_ID: u8 = 2;
    pub const RELAY_ID: u8 = 12;
}

/// DHCPv4 bulk/active leasequery status codes (option 151, RFC 6926 and 7724).
pub mod v4status {
    pub const SUCCESS: u8 = 0;
    pub const UNSPEC_FAIL: u8 = 1;
    pub const QUERY_TERMINATED: u8 = 2;
    pub const MALFORMED_QUERY: u8 = 3;
    pub const NOT_ALLOWED: u8 = 4;
    pub const DATA_MISSING: u8 = 5;
    pub const CONNECTION_ACTIVE: u8 = 6;
    pub const CATCH_UP_COMPLETE: u8 = 7;
    pub const TLS_CONNECTION_REFUSED: u8 = 8;
}

/// dhcp-state values (option 156, RFC 6926 §6.2.7).
pub mod dhcp_state {
    pub const AVAILABLE: u8 = 1;
    pub const ACTIVE: u8 = 2;
    pub const EXPIRED: u8 = 3;
    pub const RELEASED: u8 = 4;
    pub const ABANDONED: u8 = 5;
    pub const RESET: u8 = 6;
    pub const REMOTE: u8 = 7;
    pub const TRANSITIONING: u8 = 8;
}

/// BOOTP `op` values.
pub const BOOTREQUEST: u8 = 1;
/// BOOTP `op` values.
pub const BOOTREPLY: u8 = 2;
/// The DHCPv4 magic cookie (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The DHCPv4 status that means the same as a DHCPv6 status, for DHCP4o6 replies where both
/// layers carry a status (the draft: "the statuses must mean the same"). `None` when the v6
/// status has no v4 twin (UnknownQueryType, NotConfigured, NotSupported): callers map those to
/// the nearest v4 meaning themselves (see [`v4_status_for_v6_lossy`]).
pub fn v4_status_for_v6(v6: u16) -> Option<u8> {
    Some(match v6 {
        v6status::SUCCESS => v4status::SUCCESS,
        v6status::UNSPEC_FAIL => v4status::UNSPEC_FAIL,
        v6status::QUERY_TERMINATED => v4status::QUERY_TERMINATED,
        v6status::MALFORMED_QUERY => v4status::MALFORMED_QUERY,
        v6status::NOT_ALLOWED => v4status::NOT_ALLOWED,
        v6status::DATA_MISSING => v4status::DATA_MISSING,
        v6status::CATCH_UP_COMPLETE => v4status::CATCH_UP_COMPLETE,
        v6status::TLS_CONNECTION_REFUSED => v4status::TLS_CONNECTION_REFUSED,
        _ => return None,
    })
}

/// Like [`v4_status_for_v6`], but total: v6 statuses with no v4 twin map to the v4 status
/// closest in meaning. UnknownQueryType becomes MalformedQuery (the v4 query was not a query the
/// server understands), NotConfigured and NotSupported become NotAllowed (the server will not
/// answer it), any other unknown value becomes UnspecFail.
pub fn v4_status_for_v6_lossy(v6: u16) -> u8 {
    v4_status_for_v6(v6).unwrap_or(match v6 {
        v6status::UNKNOWN_QUERY_TYPE => v4status::MALFORMED_QUERY,
        v6status::NOT_CONFIGURED | v6status::NOT_SUPPORTED => v4status::NOT_ALLOWED,
        _ => v4status::UNSPEC_FAIL,
    })
}

/// The DHCPv6 status that means the same as a DHCPv4 status. `None` for ConnectionActive (6),
/// which has no DHCPv6 twin (DHCPv6 uses an empty LEASEQUERY-DATA as its keepalive).
pub fn v6_status_for_v4(v4: u8) -> Option<u16> {
    Some(match v4 {
        v4status::SUCCESS => v6status::SUCCESS,
        v4status::UNSPEC_FAIL => v6status::UNSPEC_FAIL,
        v4status::QUERY_TERMINATED => v6status::QUERY_TERMINATED,
        v4status::MALFORMED_QUERY => v6status::MALFORMED_QUERY,
        v4status::NOT_ALLOWED => v6status::NOT_ALLOWED,
        v4status::DATA_MISSING => v6status::DATA_MISSING,
        v4status::CATCH_UP_COMPLETE => v6status::CATCH_UP_COMPLETE,
        v4status::TLS_CONNECTION_REFUSED => v6status::TLS_CONNECTION_REFUSED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs from RFC 6926/7724 vs RFC 5460/7653 (codepoints-and-scenarios.md §7 fact 4).
    #[test]
    fn status_pairs_match_the_rfcs() {
        let pairs: &[(u16, u8)] = &[
            (0, 0),
            (1, 1),
            (11, 2),
            (8, 3),
            (10, 4),
            (12, 5),
            (13, 7),
            (15, 8),
        ];
        for &(v6, v4) in pairs {
            assert_eq!(v4_status_for_v6(v6), Some(v4), "v6 {v6}");
            assert_eq!(v6_status_for_v4(v4), Some(v6), "v4 {v4}");
        }
        assert_eq!(v6_status_for_v4(v4status::CONNECTION_ACTIVE), None);
        assert_eq!(v4_status_for_v6(v6status::NOT_SUPPORTED), None);
        assert_eq!(
            v4_status_for_v6_lossy(v6status::UNKNOWN_QUERY_TYPE),
            v4status::MALFORMED_QUERY
        );
        assert_eq!(
            v4_status_for_v6_lossy(v6status::NOT_CONFIGURED),
            v4status::NOT_ALLOWED
        );
        assert_eq!(v4_status_for_v6_lossy(999), v4status::UNSPEC_FAIL);
    }

    #[test]
    fn done_is_sixteen_data_is_seventeen() {
        assert_eq!(v6msg::LEASEQUERY_DONE, 16);
        assert_eq!(v6msg::LEASEQUERY_DATA, 17);
    }
}
