//! Per-shard counters. Plain relaxed atomics: each shard writes its own, anyone may read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Declares the counters: each one's doc comment is also its help text in `/metrics`
/// (`src/metrics/mod.rs` exports every counter listed here; `STATS_MAP` there may rename it).
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters of one shard.
        #[derive(Debug, Default)]
        pub struct Stats { $( $(#[doc = $doc])* pub $name: AtomicU64, )* }
        impl Stats {
            /// Every counter as (name, doc comment), in declaration order.
            pub fn describe() -> &'static [(&'static str, &'static str)] {
                &[$( (stringify!($name), concat!($($doc),*)), )*]
            }
            /// `name=value` pairs of every non-zero counter, for the log.
            pub fn summary(&self) -> String {
                let mut s = String::new();
                $( let v = self.$name.load(Ordering::Relaxed); if v != 0 { s.push_str(&format!("{}={} ", stringify!($name), v)); } )*
                s
            }
            /// Every counter as (name, value).
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name.load(Ordering::Relaxed)), )*]
            }
        }
    };
}

counters! {
    /// TLS handshakes completed (STARTTLS / DHCPTLS accepted, requestor certificate accepted).
    tls_handshakes,
    /// TLS handshakes failed: the requestor sent no certificate.
    tls_failed_no_certificate,
    /// TLS handshakes failed: the requestor's certificate does not chain to `tls_client_ca`.
    tls_failed_unknown_ca,
    /// TLS handshakes failed: the requestor's certificate chains but is expired, not yet
    /// valid or otherwise unacceptable.
    tls_failed_bad_certificate,
    /// TLS handshakes failed: the certificate is not in `tls_allowed_requestors`.
    tls_failed_not_allowed,
    /// TLS handshakes not done within `tls_handshake_timeout`.
    tls_failed_timeout,
    /// TLS handshakes failed otherwise (not TLS, no common version or suite, peer alert or close).
    tls_failed_protocol,
    /// Plain active queries refused (NotAllowed, close): not over TLS, no `allow_insecure_active`.
    tls_refused_plain_active,
    /// Connections closed in `tls = "required"`: the first message was not STARTTLS / DHCPTLS.
    tls_refused_plain_required,
    /// STARTTLS / DHCPTLS answered with TLSConnectionRefused (`tls = "off"`).
    tls_refused_not_configured,
    /// Connections accepted and kept.
    connections_accepted,
    /// Connections open now on this shard.
    connections_open,
    /// Connections closed at once: over max_connections.
    refused_over_limit,
    /// Connections closed at once: source not in the allow-list.
    refused_not_allowed,
    /// Connections closed for a zero-length frame, garbage or a message type not allowed there.
    closed_protocol_error,
    /// Connections closed after BULK_LQ_DATA_TIMEOUT of idleness.
    closed_idle,
    /// Connections closed because a send stayed blocked for BULK_LQ_DATA_TIMEOUT.
    closed_send_timeout,
    /// Connections closed because a frame was not complete BULK_LQ_DATA_TIMEOUT after its first
    /// octet (a query trickled in).
    closed_frame_timeout,
    /// Queries received (all kinds).
    queries,
    /// Queries dropped: no OPTION_CLIENTID / OPTION_LQ_QUERY, or a foreign server id.
    queries_dropped,
    /// Queries dropped: transaction id already running on the connection.
    queries_duplicate_xid,
    /// Queries answered with an error status.
    queries_error,
    /// Bulk queries run to completion.
    bulk_completed,
    /// Bulk queries ended with QueryTerminated (shutdown, peer gone, or a record too long).
    bulk_terminated,
    /// Records (bindings) sent.
    records_sent,
    /// Bindings sent in DHCPv6 bulk leasequery replies (RFC 5460).
    records_sent_v6,
    /// Bindings sent in DHCPv4 bulk leasequery replies (RFC 6926).
    records_sent_v4,
    /// Bindings sent in DHCPv4-over-DHCPv6 bulk leasequery replies.
    records_sent_dhcp4o6,
    /// DHCPv6 bulk leasequeries started.
    queries_bulk_v6,
    /// DHCPv4 bulk leasequeries started.
    queries_bulk_v4,
    /// DHCPv4-over-DHCPv6 bulk leasequeries started.
    queries_bulk_dhcp4o6,
    /// Active leasequeries started on the DHCPv6 listener (DHCPv6 and DHCP4o6).
    queries_active_v6,
    /// Active leasequeries started on the DHCPv4 listener.
    queries_active_v4,
    /// Octets written to requestors.
    bytes_sent,
    /// Records that could not be encoded in 65535 octets (the query ended with QueryTerminated).
    records_too_long,
    /// Mailbox sends that failed (a peer shard stopped).
    mesh_send_failed,
    /// Binding changes published on this shard (history ring and fan-out).
    changes_published,
    /// Active queries started on this shard.
    active_started,
    /// Active subscriptions open now on this shard (a gauge).
    active_subscribers,
    /// Active leasequery update messages (bindings) written to subscribers.
    active_updates_sent,
    /// Updates that replaced a waiting update of the same binding (RFC 7653 §7).
    active_coalesced,
    /// Catch-up bindings received for this shard's subscribers.
    active_catch_up_records,
    /// Keepalives sent (ACTIVE_LQ_IDLE_TIMEOUT).
    active_keepalives,
    /// Active queries ended with QueryTerminated on shutdown.
    active_terminated_shutdown,
    /// Active queries ended because the send stayed blocked for ACTIVE_LQ_SEND_TIMEOUT.
    active_terminated_send_timeout,
    /// Active queries ended with QueryTerminated: backlog over its bound.
    active_terminated_backlog,
    /// Active queries ended with QueryTerminated: changes lost between shards.
    active_terminated_fanout,
    /// Active queries ended by the requestor (closed, or a protocol error).
    active_ended_peer,
    /// Feed file lines applied.
    feed_lines,
    /// Feed file lines skipped as bad.
    feed_bad_lines,
    /// DHCP4o6 datagrams dropped before routing (not a DHCPV4-QUERY, or from IPv4).
    dhcp4o6_dropped_unparsed,
    /// DHCP4o6 datagrams dropped: MAX_IN_FLIGHT handlings already waiting on this shard.
    dhcp4o6_dropped_busy,
    /// DHCP4o6 datagrams sent on to the shard that owns their client.
    dhcp4o6_forwarded,
    /// DHCPV4-RESPONSEs sent.
    dhcp4o6_replies,
    /// Journal appends or commits that failed (no reply was sent for them; their table changes
    /// were undone; a fed batch was not applied).
    journal_failures,
    /// DHCP4o6 datagrams dropped because this shard's journal failed earlier (its authority is
    /// stopped until a restart).
    dhcp4o6_dropped_journal_failed,
}
