//! Live metrics: what the shards publish (relaxed atomics only: a scrape never waits for a
//! shard) and how it is exported (the `prometheus-client` Prometheus text 0.0.4 encoder behind
//! the small HTTP responder of [`http`]). README "Metrics and health" lists every metric.
//!
//! The per-shard counters of `src/shard/stats.rs` are exported generically: every counter there
//! becomes `leasequeryd_<name>_total{shard}` with its doc comment as help, unless
//! [`STATS_MAP`] gives it another name, labels or kind. A counter added to the `counters!` list
//! is thus exported without more code; to give it a better name (or make it a gauge, or a label
//! of a family), add one line to [`STATS_MAP`] and its row to the README. The authority's
//! counters (`src/authority/counters.rs`) are exported the same way through [`AUTHORITY_MAP`]
//! (`drop_<reason>` fields become `leasequeryd_authority_dropped_total{reason}` by rule).

pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of every histogram's buckets, nanoseconds (100 µs .. 5 min; `+Inf` above).
pub const BUCKET_BOUNDS_NS: [u64; 19] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];

/// A fixed-bucket histogram of durations in relaxed atomics: one writer (its shard) without
/// locks, any reader. A reader may see a bucket and the sum of slightly different moments.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKET_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_NS.partition_point(|&b| b < ns);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket (upper bound in seconds, count) pairs, `+Inf` last).
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut count = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            let bound = BUCKET_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&b| b as f64 / 1e9);
            buckets.push((bound, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Binding classes of the `leasequeryd_bindings` gauge: (family, state).
pub const BINDING_CLASSES: [(&str, &str); 17] = [
    ("v6", "bound"),
    ("v4", "available"),
    ("v4", "active"),
    ("v4", "expired"),
    ("v4", "released"),
    ("v4", "abandoned"),
    ("v4", "reset"),
    ("v4", "remote"),
    ("v4", "transitioning"),
    ("dhcp4o6", "available"),
    ("dhcp4o6", "active"),
    ("dhcp4o6", "expired"),
    ("dhcp4o6", "released"),
    ("dhcp4o6", "abandoned"),
    ("dhcp4o6", "reset"),
    ("dhcp4o6", "remote"),
    ("dhcp4o6", "transitioning"),
];

/// The [`BINDING_CLASSES`] index of a v4 binding (`dhcp4o6` when it has a DHCPv6 context) in
/// dhcp-state `state` (RFC 6926 §6.2.2; unknown states count as `transitioning`).
pub fn binding_class_v4(dhcp4o6: bool, state: u8) -> usize {
    let s = usize::from(state.clamp(1, 8));
    if dhcp4o6 {
        8 + s
    } else {
        s
    }
}

/// Per authority subnet, this shard's part (summed over shards when exported).
#[derive(Debug, Default)]
pub struct SubnetGauges {
    /// Addresses with at least one ACTIVE lease (a unit of the pool).
    pub assigned_addresses: AtomicU64,
    /// Addresses held ABANDONED after a DHCPDECLINE.
    pub declined_addresses: AtomicU64,
    /// ACTIVE port-set leases (shared subnets).
    pub assigned_port_sets: AtomicU64,
    /// New leases made (DHCPACKs of an address the client did not hold), a counter.
    pub cumulative_assigned: AtomicU64,
}

/// What one shard publishes beyond `Stats`.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub bulk_duration: Histogram,
    pub bulk_first_binding: Histogram,
    pub journal_commit: Arc<Histogram>,
    pub dhcp4o6_handling: Histogram,
    pub active_update_latency: Histogram,
    /// Mirror of the authority's counters, in [`crate::authority::AuthorityCounters::pairs`]
    /// order.
    pub authority: Vec<AtomicU64>,
    /// Mirror of the journal's counters, in [`JOURNAL_FIELDS`] order.
    pub journal: [AtomicU64; 5],
    /// Bindings per [`BINDING_CLASSES`] entry, at the last count.
    pub bindings: [AtomicU64; BINDING_CLASSES.len()],
    /// Largest backlog over this shard's subscribers: distinct bindings, octets.
    pub backlog_bindings_max: AtomicU64,
    pub backlog_bytes_max: AtomicU64,
    pub subnets: Vec<SubnetGauges>,
}

impl ShardMetrics {
    /// For a server whose authority has `subnets` subnets.
    pub fn new(subnets: usize) -> ShardMetrics {
        ShardMetrics {
            authority: (0..crate::authority::AuthorityCounters::default().pairs().len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            subnets: (0..subnets).map(|_| SubnetGauges::default()).collect(),
            ..ShardMetrics::default()
        }
    }

    /// Copies the authority's counters into the mirror.
    pub fn publish_authority(&self, c: &crate::authority::AuthorityCounters) {
        for (m, (_, v)) in self.authority.iter().zip(c.pairs()) {
            m.store(v, Ordering::Relaxed);
        }
    }

    /// Copies the journal's counters into the mirror.
    pub fn publish_journal(&self, s: &crate::store::StoreStats) {
        let v = [s.appends, s.commits, s.bytes, s.written, s.snapshots];
        for (m, v) in self.journal.iter().zip(v) {
            m.store(v, Ordering::Relaxed);
        }
    }
}

/// The journal counters: (field, metric base name, help).
pub const JOURNAL_FIELDS: [(&str, &str, &str); 5] = [
    (
        "appends",
        "journal_appends",
        "Binding changes appended to the lease journal.",
    ),
    (
        "commits",
        "journal_commits",
        "Group commits of the lease journal (one fdatasync each).",
    ),
    (
        "bytes",
        "journal_record_bytes",
        "Record octets appended to the lease journal (frames included).",
    ),
    (
        "written",
        "journal_written_bytes",
        "Octets written to journal segments (headers and padding included).",
    ),
    (
        "snapshots",
        "journal_snapshots",
        "Snapshots of the lease table written (compaction).",
    ),
];

/// How one counter of `Stats` is exported.
#[derive(Debug, Clone, Copy)]
pub enum Export {
    /// `leasequeryd_<name>_total{shard, labels}` (a counter).
    Counter(&'static str, &'static [(&'static str, &'static str)]),
    /// `leasequeryd_<name>{shard, labels}` (a gauge).
    Gauge(&'static str, &'static [(&'static str, &'static str)]),
    /// Not exported (another metric carries it, e.g. a sum of a labelled family).
    Skip,
}

/// Counters of `src/shard/stats.rs` exported under another name, labels or kind. Counters not
/// listed are exported as `leasequeryd_<counter>_total{shard}` with their doc comment as help.
/// Rows with the same name make one family; its help is the first row's doc comment, unless
/// [`FAMILY_HELP`] has one.
pub const STATS_MAP: &[(&str, Export)] = &[
    (
        "connections_accepted",
        Export::Counter("connections_accepted", &[]),
    ),
    ("connections_open", Export::Gauge("connections_open", &[])),
    (
        "refused_over_limit",
        Export::Counter("connections_refused", &[("reason", "over_limit")]),
    ),
    (
        "refused_not_allowed",
        Export::Counter("connections_refused", &[("reason", "not_allowed")]),
    ),
    (
        "closed_protocol_error",
        Export::Counter("connections_closed", &[("reason", "protocol_error")]),
    ),
    (
        "closed_idle",
        Export::Counter("connections_closed", &[("reason", "idle")]),
    ),
    (
        "closed_send_timeout",
        Export::Counter("connections_closed", &[("reason", "send_timeout")]),
    ),
    (
        "closed_frame_timeout",
        Export::Counter("connections_closed", &[("reason", "frame_timeout")]),
    ),
    ("queries", Export::Counter("queries_received", &[])),
    (
        "queries_dropped",
        Export::Counter("queries_dropped", &[("reason", "malformed")]),
    ),
    (
        "queries_duplicate_xid",
        Export::Counter("queries_dropped", &[("reason", "duplicate_xid")]),
    ),
    (
        "queries_error",
        Export::Counter("queries_error_replies", &[]),
    ),
    (
        "queries_bulk_v6",
        Export::Counter("queries", &[("type", "bulk"), ("family", "v6")]),
    ),
    (
        "queries_bulk_v4",
        Export::Counter("queries", &[("type", "bulk"), ("family", "v4")]),
    ),
    (
        "queries_bulk_dhcp4o6",
        Export::Counter("queries", &[("type", "bulk"), ("family", "dhcp4o6")]),
    ),
    (
        "queries_active_v6",
        Export::Counter("queries", &[("type", "active"), ("family", "v6")]),
    ),
    (
        "queries_active_v4",
        Export::Counter("queries", &[("type", "active"), ("family", "v4")]),
    ),
    (
        "bulk_completed",
        Export::Counter("bulk_queries_ended", &[("outcome", "completed")]),
    ),
    (
        "bulk_terminated",
        Export::Counter("bulk_queries_ended", &[("outcome", "terminated")]),
    ),
    ("records_sent", Export::Skip),
    (
        "records_sent_v6",
        Export::Counter("bulk_bindings_sent", &[("family", "v6")]),
    ),
    (
        "records_sent_v4",
        Export::Counter("bulk_bindings_sent", &[("family", "v4")]),
    ),
    (
        "records_sent_dhcp4o6",
        Export::Counter("bulk_bindings_sent", &[("family", "dhcp4o6")]),
    ),
    ("bytes_sent", Export::Counter("sent_bytes", &[])),
    (
        "records_too_long",
        Export::Counter("bulk_bindings_too_long", &[]),
    ),
    (
        "mesh_send_failed",
        Export::Counter("mesh_send_failures", &[]),
    ),
    (
        "changes_published",
        Export::Counter("binding_changes_published", &[]),
    ),
    (
        "active_started",
        Export::Counter("active_queries_started", &[]),
    ),
    (
        "active_subscribers",
        Export::Gauge("active_subscribers", &[]),
    ),
    (
        "active_updates_sent",
        Export::Counter("active_updates_sent", &[]),
    ),
    (
        "active_coalesced",
        Export::Counter("active_updates_coalesced", &[]),
    ),
    (
        "active_catch_up_records",
        Export::Counter("active_catch_up_bindings", &[]),
    ),
    (
        "active_keepalives",
        Export::Counter("active_keepalives_sent", &[]),
    ),
    (
        "active_terminated_shutdown",
        Export::Counter("active_queries_ended", &[("reason", "shutdown")]),
    ),
    (
        "active_terminated_send_timeout",
        Export::Counter("active_queries_ended", &[("reason", "send_timeout")]),
    ),
    (
        "active_terminated_backlog",
        Export::Counter("active_queries_ended", &[("reason", "backlog")]),
    ),
    (
        "active_terminated_fanout",
        Export::Counter("active_queries_ended", &[("reason", "fanout")]),
    ),
    (
        "active_ended_peer",
        Export::Counter("active_queries_ended", &[("reason", "peer")]),
    ),
    (
        "feed_lines",
        Export::Counter("feed_lines", &[("result", "applied")]),
    ),
    (
        "feed_bad_lines",
        Export::Counter("feed_lines", &[("result", "bad")]),
    ),
    (
        "dhcp4o6_dropped_unparsed",
        Export::Counter("dhcp4o6_dropped", &[("reason", "unparsed")]),
    ),
    (
        "dhcp4o6_dropped_busy",
        Export::Counter("dhcp4o6_dropped", &[("reason", "busy")]),
    ),
    (
        "dhcp4o6_dropped_journal_failed",
        Export::Counter("dhcp4o6_dropped", &[("reason", "journal_failed")]),
    ),
    (
        "dhcp4o6_forwarded",
        Export::Counter("dhcp4o6_forwarded", &[]),
    ),
    (
        "dhcp4o6_replies",
        Export::Counter("dhcp4o6_replies_sent", &[]),
    ),
    ("journal_failures", Export::Counter("journal_failures", &[])),
];

/// Labels of one exported series (beside `shard`).
pub type Labels = &'static [(&'static str, &'static str)];

/// Authority counters exported under another name or labels (`drop_<reason>` fields are
/// `authority_dropped{reason}` by rule; others not listed are `authority_<field>`).
pub const AUTHORITY_MAP: &[(&str, &str, Labels)] = &[
    ("received", "authority_datagrams_received", &[]),
    ("replies", "authority_replies", &[]),
    ("offers", "dhcpv4_messages_sent", &[("type", "DHCPOFFER")]),
    ("acks", "dhcpv4_messages_sent", &[("type", "DHCPACK")]),
    ("naks", "dhcpv4_messages_sent", &[("type", "DHCPNAK")]),
    ("releases", "authority_releases", &[]),
    ("declines", "authority_declines", &[]),
    ("informs", "authority_informs", &[]),
    ("expirations", "authority_lease_expirations", &[]),
    ("offers_expired", "authority_offers_expired", &[]),
    ("pool_exhausted", "authority_pool_exhausted", &[]),
    ("softwire_conflicts", "softwire_conflicts", &[]),
    ("softwire_claims", "softwire_claims", &[]),
    ("softwire_remote_claims", "softwire_remote_claims", &[]),
    (
        "softwire_restore_conflicts",
        "softwire_restore_conflicts",
        &[],
    ),
    ("softwire_too_early", "softwire_updates_too_early", &[]),
    ("silent", "authority_silent", &[]),
];

/// Help of labelled families (where the first member's doc comment would be too narrow).
pub const FAMILY_HELP: &[(&str, &str)] = &[
    ("connections_refused", "Connections closed at once, by reason."),
    ("connections_closed", "Connections closed by the server, by reason."),
    ("queries_dropped", "Queries dropped without a reply, by reason."),
    ("queries", "Bulk and active queries started, by type and family."),
    ("bulk_queries_ended", "Bulk queries ended, by outcome (completed, or QueryTerminated)."),
    ("bulk_bindings_sent", "Bindings sent in bulk leasequery replies, by family (v6: DHCPv6, v4: DHCPv4, dhcp4o6: DHCPv4-over-DHCPv6)."),
    ("active_queries_ended", "Active queries ended, by reason."),
    ("feed_lines", "Feed file lines, applied or skipped as bad."),
    ("dhcp4o6_dropped", "DHCP4o6 datagrams dropped by the shell, by reason."),
    ("dhcpv4_messages_sent", "DHCPv4 replies of the DHCP4o6 lease authority, by DHCP message type (RFC 2132 names; DHCPACK includes the answers to DHCPINFORM)."),
    ("authority_dropped", "Datagrams the DHCP4o6 lease authority dropped, by reason."),
];

/// Startup figures, set once before the shards serve.
#[derive(Debug, Default)]
pub struct StartFigures {
    pub imported_v4: AtomicU64,
    pub imported_v6: AtomicU64,
    pub replayed_v4: AtomicU64,
    pub replayed_v6: AtomicU64,
    pub torn_tails_cut: AtomicU64,
    pub startup_seconds_ms: AtomicU64,
}

/// What the exporter reads: the server once it exists, the health flags, the start figures.
#[derive(Debug, Default)]
pub struct Exporter {
    server: OnceLock<Arc<crate::shard::Shared>>,
    /// Every shard serves and the journal is open.
    pub serving: AtomicBool,
    pub start: StartFigures,
}

impl Exporter {
    pub(crate) fn set_server(&self, shared: Arc<crate::shard::Shared>) {
        let _ = self.server.set(shared);
    }

    /// True when `/healthz` answers 200: every shard serves and no shutdown has begun.
    pub fn healthy(&self) -> bool {
        self.serving.load(Ordering::Acquire)
            && self.server.get().is_some_and(|s| {
                !s.stopping.load(Ordering::Acquire) && s.shutdown_at.get().is_none()
            })
    }

    /// The whole exposition (Prometheus text format 0.0.4).
    pub fn encode(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(64 * 1024);
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }

    fn families(&self) -> Families {
        let mut f = Families::default();
        f.gauge(
            "serving",
            "1 when every shard serves and no shutdown has begun (as /healthz), else 0.",
            vec![],
            u64::from(self.healthy()),
        );
        let st = &self.start;
        for (fam, v) in [("v4", &st.imported_v4), ("v6", &st.imported_v6)] {
            f.gauge(
                "imported_bindings",
                "Bindings loaded from the import file at start, by family (v4 includes DHCP4o6).",
                vec![("family", fam.into())],
                v.load(Ordering::Relaxed),
            );
        }
        for (fam, v) in [("v4", &st.replayed_v4), ("v6", &st.replayed_v6)] {
            f.gauge(
                "journal_replayed_bindings",
                "Bindings restored from the data directory (snapshot and journal) at start, by family.",
                vec![("family", fam.into())],
                v.load(Ordering::Relaxed),
            );
        }
        f.gauge(
            "journal_torn_tails_cut",
            "Torn journal tails cut at start (writes a crash left incomplete).",
            vec![],
            st.torn_tails_cut.load(Ordering::Relaxed),
        );
        f.gauge_f(
            "startup_duration_seconds",
            "From reading the configuration to every shard serving (import and replay included).",
            vec![],
            st.startup_seconds_ms.load(Ordering::Relaxed) as f64 / 1e3,
        );
        let Some(s) = self.server.get() else {
            return f;
        };
        let stats_help = crate::shard::stats::Stats::describe();
        let now = crate::shard::unix_now();
        for (shard, stats) in s.stats.iter().enumerate() {
            let sh = shard.to_string();
            for ((name, value), (_, doc)) in stats.snapshot().into_iter().zip(stats_help.iter()) {
                let export = STATS_MAP
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(Export::Counter(name, &[]), |(_, e)| *e);
                let (metric, labels, counter) = match export {
                    Export::Skip => continue,
                    Export::Counter(m, l) => (m, l, true),
                    Export::Gauge(m, l) => (m, l, false),
                };
                let mut ls = vec![("shard", sh.clone())];
                ls.extend(labels.iter().map(|&(k, v)| (k, v.to_string())));
                let help = help_of(metric, doc);
                if counter {
                    f.counter(metric, &help, ls, value);
                } else {
                    f.gauge(metric, &help, ls, value);
                }
            }
            let h = s
                .horizons
                .get(shard)
                .map_or(u32::MAX, |a| a.load(Ordering::Acquire));
            if h != u32::MAX {
                f.gauge(
                    "history_horizon_age_seconds",
                    "Age of the oldest change the shard keeps for active leasequery catch-up (RFC 7653 §4.2).",
                    vec![("shard", sh.clone())],
                    u64::from(now.saturating_sub(h)),
                );
            }
        }
        let auth_names = crate::authority::AuthorityCounters::default().pairs();
        for (shard, m) in s.metrics.iter().enumerate() {
            let sh = shard.to_string();
            let shard_label = || vec![("shard", sh.clone())];
            for (hist, name, help) in [
                (&m.bulk_duration, "bulk_query_duration_seconds", "Bulk queries from receipt to the last message queued."),
                (&m.bulk_first_binding, "bulk_query_first_binding_seconds", "Bulk queries from receipt to the first binding queued for the requestor."),
                (&m.journal_commit, "journal_commit_duration_seconds", "Lease journal group commits: write and fdatasync."),
                (&m.dhcp4o6_handling, "dhcp4o6_request_duration_seconds", "DHCP4o6 requests from receipt to the reply sent (journal commit included)."),
                (&m.active_update_latency, "active_update_latency_seconds", "Active leasequery updates from the change published to the update written to the subscriber's socket."),
            ] {
                f.histogram(name, help, shard_label(), hist.read());
            }
            for (i, &(fam, state)) in BINDING_CLASSES.iter().enumerate() {
                let v = m.bindings.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
                f.gauge(
                    "bindings",
                    "Bindings in the lease table by family and state (v4 states are RFC 6926 dhcp-state names; v6 bindings are `bound`), counted every few seconds.",
                    vec![("shard", sh.clone()), ("family", fam.into()), ("state", state.into())],
                    v,
                );
            }
            f.gauge(
                "active_backlog_bindings_max",
                "Largest backlog of the shard's active subscribers, distinct bindings.",
                shard_label(),
                m.backlog_bindings_max.load(Ordering::Relaxed),
            );
            f.gauge(
                "active_backlog_bytes_max",
                "Largest backlog of the shard's active subscribers, octets.",
                shard_label(),
                m.backlog_bytes_max.load(Ordering::Relaxed),
            );
            // The journal is the authority's (it is opened only when both run).
            if s.config.data_dir.is_some() && s.authority.is_some() {
                for (a, (_, name, help)) in m.journal.iter().zip(JOURNAL_FIELDS) {
                    f.counter(name, help, shard_label(), a.load(Ordering::Relaxed));
                }
            }
            if s.authority.is_some() {
                // RFC 2132: an INFORM is answered with a DHCPACK too; the authority counts those
                // under `informs`, not `acks`.
                let informs = auth_names
                    .iter()
                    .position(|(f, _)| *f == "informs")
                    .and_then(|i| m.authority.get(i))
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                for (a, (field, _)) in m.authority.iter().zip(auth_names.iter()) {
                    let (name, labels): (String, Vec<(&str, String)>) =
                        if let Some(reason) = field.strip_prefix("drop_") {
                            ("authority_dropped".into(), vec![("reason", reason.into())])
                        } else if let Some((_, n, l)) =
                            AUTHORITY_MAP.iter().find(|(f, _, _)| f == field)
                        {
                            (
                                (*n).into(),
                                l.iter().map(|&(k, v)| (k, v.to_string())).collect(),
                            )
                        } else {
                            (format!("authority_{field}"), vec![])
                        };
                    let mut ls = shard_label();
                    ls.extend(labels);
                    let doc = crate::authority::AuthorityCounters::describe()
                        .iter()
                        .find(|(n, _)| n == field)
                        .map_or("", |(_, d)| d);
                    let help = help_of(&name, doc);
                    let extra = if *field == "acks" { informs } else { 0 };
                    f.counter(&name, &help, ls, a.load(Ordering::Relaxed) + extra);
                }
            }
        }
        cluster_families(&mut f, s);
        if let Some(auth) = &s.authority {
            for (i, sub) in auth.subnets.iter().enumerate() {
                let sum = |g: fn(&SubnetGauges) -> &AtomicU64| -> u64 {
                    s.metrics
                        .iter()
                        .filter_map(|m| m.subnets.get(i))
                        .map(|x| g(x).load(Ordering::Relaxed))
                        .sum()
                };
                let l = || vec![("subnet", sub.name.clone())];
                let addrs = u64::from(u32::from(sub.last))
                    .saturating_sub(u64::from(u32::from(sub.first)))
                    + 1;
                f.gauge(
                    "subnet_total_addresses",
                    "Addresses in the subnet's pool (Kea total-addresses).",
                    l(),
                    addrs,
                );
                f.gauge("subnet_assigned_addresses", "Pool addresses with an active lease (Kea assigned-addresses; on a shared subnet, addresses with at least one leased port set).", l(), sum(|g| &g.assigned_addresses));
                f.gauge(
                    "subnet_declined_addresses",
                    "Pool addresses held abandoned after a DHCPDECLINE (Kea declined-addresses).",
                    l(),
                    sum(|g| &g.declined_addresses),
                );
                f.counter("subnet_cumulative_assigned_addresses", "New leases made in the subnet since the start (Kea cumulative-assigned-addresses).", l(), sum(|g| &g.cumulative_assigned));
                if sub.psid.is_some() {
                    let per = u64::from(sub.psids()).saturating_sub(u64::from(sub.first_psid));
                    f.gauge(
                        "subnet_total_port_sets",
                        "Port sets (address, PSID) the shared subnet can lease (RFC 7618).",
                        l(),
                        addrs * per,
                    );
                    f.gauge(
                        "subnet_assigned_port_sets",
                        "Port sets of the shared subnet with an active lease.",
                        l(),
                        sum(|g| &g.assigned_port_sets),
                    );
                }
            }
        }
        f
    }
}

/// The `[cluster]` figures (README "Metrics and health", "Cluster"): the publisher's on a
/// server that publishes, the follower's on a replica. Ages and lag are computed here, at
/// scrape time, from the timestamps the threads keep.
fn cluster_families(f: &mut Families, s: &crate::shard::Shared) {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let now_ms = crate::cluster::publisher::unix_ms();
    if let Some(p) = &s.cluster {
        let st = &p.stats;
        for (name, help, v) in [
            ("cluster_published", "Messages sent to JetStream (a republish after an error counts again).", &st.published),
            ("cluster_acknowledged", "Messages JetStream acknowledged (duplicates included).", &st.acknowledged),
            ("cluster_duplicates", "Acknowledgements that said duplicate (a republish JetStream already had).", &st.duplicates),
            ("cluster_publish_errors", "Publishes that failed or were not acknowledged in time (each rewinds to the cursor and retries).", &st.errors),
            ("cluster_reconnects", "Connections to NATS made after the first.", &st.reconnects),
            ("cluster_reconciles", "Reads of the stream's last message per subject to reconcile a snapshot published whole.", &st.reconciles),
            ("cluster_reconcile_removes", "Removes published for bindings the stream held and a republished snapshot lacked.", &st.reconcile_removes),
            ("cluster_reconcile_bad", "Stream messages a reconcile read skipped (not decodable, or not their subject's binding).", &st.reconcile_bad),
        ] {
            f.counter(name, help, vec![], g(v));
        }
        f.gauge(
            "cluster_pending",
            "Durable journal records not yet acknowledged by JetStream, over all shards.",
            vec![],
            g(&st.pending),
        );
        let since = g(&st.oldest_unacknowledged_since_unix_ms);
        let age = if since == 0 {
            0.0
        } else {
            now_ms.saturating_sub(since) as f64 / 1e3
        };
        f.gauge_f(
            "cluster_oldest_unacknowledged_age_seconds",
            "Age of the oldest durable change not yet acknowledged by JetStream (0 when none is pending).",
            vec![],
            age,
        );
        f.gauge(
            "cluster_connected",
            "1 while the publisher is connected to NATS.",
            vec![],
            g(&st.connected),
        );
    }
    if let Some(r) = &s.replica {
        let st = &r.stats;
        for (name, help, v) in [
            ("cluster_replica_applied", "Changes from the stream applied to the replica's lease table.", &st.applied),
            ("cluster_replica_stale", "Stream messages dropped because their seq was not above the binding's applied one.", &st.stale),
            ("cluster_replica_bad", "Stream messages that did not decode or did not match their subject (skipped).", &st.bad),
            ("cluster_replica_resubscribes", "Stream consumers made again after a failure or a lost connection.", &st.resubscribes),
        ] {
            f.counter(name, help, vec![], g(v));
        }
        let newest = g(&st.newest_changed);
        f.gauge(
            "cluster_replica_newest_change_timestamp_seconds",
            "The `changed` time (Unix seconds) of the newest change applied (0 before the first).",
            vec![],
            newest,
        );
        f.gauge(
            "cluster_replica_lag_seconds",
            "Now minus the newest applied change's `changed` time, at scrape time (0 before the first change; it also grows while the authorities make no change).",
            vec![],
            if newest == 0 { 0 } else { (now_ms / 1000).saturating_sub(newest) },
        );
        f.gauge(
            "cluster_replica_loaded",
            "1 once the state that was on the stream when the replica subscribed is applied.",
            vec![],
            g(&st.loaded),
        );
    }
}

/// The help of `metric`: [`FAMILY_HELP`], else the counter's doc comment.
fn help_of(metric: &str, doc: &str) -> String {
    FAMILY_HELP
        .iter()
        .find(|(m, _)| *m == metric)
        .map_or_else(|| doc.trim().to_string(), |(_, h)| (*h).to_string())
}

enum Value {
    Int(u64),
    Float(f64),
    Hist(f64, u64, Vec<(f64, u64)>),
}

struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<(Vec<(&'static str, String)>, Value)>,
}

/// Metric families in first-seen order; samples of one name are merged.
#[derive(Default)]
struct Families {
    list: Vec<Family>,
    index: HashMap<String, usize>,
}

impl Families {
    fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: Vec<(&'static str, String)>,
        v: Value,
    ) {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.list.push(Family {
                name: format!("leasequeryd_{name}"),
                help: help.to_string(),
                kind,
                samples: Vec::new(),
            });
            self.list.len() - 1
        });
        if let Some(f) = self.list.get_mut(i) {
            f.samples.push((labels, v));
        }
    }
    fn counter(&mut self, name: &str, help: &str, l: Vec<(&'static str, String)>, v: u64) {
        self.add(name, help, MetricType::Counter, l, Value::Int(v));
    }
    fn gauge(&mut self, name: &str, help: &str, l: Vec<(&'static str, String)>, v: u64) {
        self.add(name, help, MetricType::Gauge, l, Value::Int(v));
    }
    fn gauge_f(&mut self, name: &str, help: &str, l: Vec<(&'static str, String)>, v: f64) {
        self.add(name, help, MetricType::Gauge, l, Value::Float(v));
    }
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        l: Vec<(&'static str, String)>,
        (sum, count, buckets): (f64, u64, Vec<(f64, u64)>),
    ) {
        self.add(
            name,
            help,
            MetricType::Histogram,
            l,
            Value::Hist(sum, count, buckets),
        );
    }
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for fam in self.families().list {
            let mut me = encoder.encode_descriptor(&fam.name, &fam.help, None, fam.kind)?;
            for (labels, v) in &fam.samples {
                let mut e = me.encode_family(labels)?;
                match v {
                    Value::Int(n) if fam.kind == MetricType::Counter => {
                        e.encode_counter::<NoLabelSet, u64, u64>(n, None)?
                    }
                    Value::Int(n) => e.encode_gauge(&(*n as i64))?,
                    Value::Float(x) => e.encode_gauge(x)?,
                    Value::Hist(sum, count, buckets) => {
                        e.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100)); // on the first bound: first bucket
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(1000)); // +Inf
        let (sum, count, b) = h.read();
        assert_eq!(count, 3);
        assert_eq!(b[0], (0.0001, 1));
        assert_eq!(b[1], (0.00025, 1));
        assert_eq!(b.last(), Some(&(f64::INFINITY, 1)));
        assert!((sum - 1000.000201).abs() < 1e-6);
    }

    #[test]
    fn exposition_without_a_server_has_the_health_gauge() {
        let e = Arc::new(Exporter::default());
        let text = e.encode();
        assert!(
            text.contains("# TYPE leasequeryd_serving gauge\nleasequeryd_serving 0\n"),
            "{text}"
        );
        assert!(!e.healthy());
    }

    #[test]
    fn every_stats_map_row_names_a_counter() {
        let names: Vec<&str> = crate::shard::stats::Stats::describe()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for (n, _) in STATS_MAP {
            assert!(
                names.contains(n),
                "STATS_MAP names {n}, not a counter of stats.rs"
            );
        }
        let auth: Vec<&str> = crate::authority::AuthorityCounters::describe()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for (n, _, _) in AUTHORITY_MAP {
            assert!(auth.contains(n), "AUTHORITY_MAP names {n}");
        }
    }
}
