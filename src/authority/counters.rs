//! The authority's counters: every datagram handed in is either answered, kept silent by rule,
//! or dropped under exactly one `drop_*` reason.

/// Declares [`AuthorityCounters`]; each doc comment is also the counter's help in `/metrics`.
macro_rules! authority_counters {
    ($($(#[doc = $doc:literal])* pub $name:ident: u64,)*) => {
        /// Counters of one shard's authority. Every dropped datagram is counted under exactly
        /// one `drop_*` reason.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct AuthorityCounters { $( $(#[doc = $doc])* pub $name: u64, )* }
        impl AuthorityCounters {
            /// Every counter as (name, value), in declaration order.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
            /// Every counter as (name, doc comment), in declaration order (the help text of
            /// `/metrics`).
            pub fn describe() -> &'static [(&'static str, &'static str)] {
                &[$( (stringify!($name), concat!($($doc),*)), )*]
            }
        }
    };
}

authority_counters! {
    /// Datagrams handed to [`Authority::handle`](super::Authority::handle).
    pub received: u64,
    /// Replies produced.
    pub replies: u64,
    /// DHCPOFFERs.
    pub offers: u64,
    /// DHCPACKs of REQUESTs (the DHCPACKs answering DHCPINFORM are counted in `informs`).
    pub acks: u64,
    /// DHCPNAKs.
    pub naks: u64,
    /// DHCPRELEASEs that released a lease.
    pub releases: u64,
    /// DHCPDECLINEs that abandoned an address.
    pub declines: u64,
    /// DHCPINFORMs answered.
    pub informs: u64,
    /// Leases that expired.
    pub expirations: u64,
    /// Offers whose hold ran out unanswered.
    pub offers_expired: u64,
    /// DISCOVERs left unanswered because the subnet had no free unit.
    pub pool_exhausted: u64,
    /// REQUESTs whose option 109 belonged to another active lease.
    pub softwire_conflicts: u64,
    /// Softwire claims decided here as the owner shard (local and from other shards).
    pub softwire_claims: u64,
    /// Claims this shard's requests had to ask another shard for.
    pub softwire_remote_claims: u64,
    /// Restored active leases whose source another restored lease had claimed first.
    pub softwire_restore_conflicts: u64,
    /// Softwire updates refused as too early (ACKed with the old source).
    pub softwire_too_early: u64,
    /// Messages whose option 82 (inside the DHCPv4 message) was malformed and ignored.
    pub option82_malformed: u64,
    /// Dropped: longer than `max_datagram`.
    pub drop_oversize: u64,
    /// Dropped: the DHCPv6 envelope or relay chain did not parse.
    pub drop_malformed_v6: u64,
    /// Dropped: more than [`MAX_RELAY_DEPTH`](super::wire::MAX_RELAY_DEPTH) Relay-Forward envelopes.
    pub drop_too_deep: u64,
    /// Dropped: not a DHCPV4-QUERY (or a relay envelope other than Relay-Forward).
    pub drop_not_query: u64,
    /// Dropped: DHCPV4-QUERY without OPTION_DHCPV4_MSG (RFC 7341 §11).
    pub drop_no_dhcpv4_msg: u64,
    /// Dropped: more than one OPTION_DHCPV4_MSG (RFC 7341 §9: exactly one).
    pub drop_many_dhcpv4_msg: u64,
    /// Dropped: the DHCPv4 message did not parse, or had a bad option value.
    pub drop_malformed_v4: u64,
    /// Dropped: a DHCPv4 message type the server does not take (or a BOOTREPLY).
    pub drop_bad_v4_type: u64,
    /// Dropped: no RFC 4361 client identifier.
    pub drop_no_client_id: u64,
    /// Dropped: the client belongs to another shard (the shell should have routed it).
    pub drop_wrong_shard: u64,
    /// Dropped: no subnet for the selector address.
    pub drop_no_subnet: u64,
    /// Dropped: a shared-only link and a DISCOVER, REQUEST or INFORM that does not list 159
    /// (RELEASE and DECLINE select no subnet).
    pub drop_needs_159: u64,
    /// Dropped: a REQUEST for another server (option 54 not ours): the offer was withdrawn.
    pub drop_other_server: u64,
    /// Unanswered by rule: INIT-REBOOT or REBINDING with no record, DECLINE/RELEASE of
    /// nothing the client holds.
    pub silent: u64,
    /// The lease table refused a binding (reply withheld).
    pub table_errors: u64,
}

impl AuthorityCounters {
    /// Every `drop_*` counter as (name, value), in a fixed order: the shell compares two of
    /// these to learn why a datagram was dropped (and logs it, README "Drop warnings").
    pub fn drops(&self) -> [(&'static str, u64); 13] {
        [
            ("drop_oversize", self.drop_oversize),
            ("drop_malformed_v6", self.drop_malformed_v6),
            ("drop_too_deep", self.drop_too_deep),
            ("drop_not_query", self.drop_not_query),
            ("drop_no_dhcpv4_msg", self.drop_no_dhcpv4_msg),
            ("drop_many_dhcpv4_msg", self.drop_many_dhcpv4_msg),
            ("drop_malformed_v4", self.drop_malformed_v4),
            ("drop_bad_v4_type", self.drop_bad_v4_type),
            ("drop_no_client_id", self.drop_no_client_id),
            ("drop_wrong_shard", self.drop_wrong_shard),
            ("drop_no_subnet", self.drop_no_subnet),
            ("drop_needs_159", self.drop_needs_159),
            ("drop_other_server", self.drop_other_server),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::AuthorityCounters;

    #[test]
    fn drops_lists_every_drop_counter_once() {
        let c = AuthorityCounters::default();
        let debug = format!("{c:?}");
        let names: Vec<&str> = c.drops().iter().map(|d| d.0).collect();
        for field in debug
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| w.starts_with("drop_"))
        {
            assert!(names.contains(&field), "{field} missing from drops()");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
