//! # leasequery
//!
//! The library behind `leasequeryd`, a thread-per-core DHCP leasequery server: DHCPv6 Bulk and
//! Active Leasequery (RFC 5460, RFC 7653), DHCPv4 Bulk and Active Leasequery (RFC 6926,
//! RFC 7724), and both carried over DHCPv4-over-DHCPv6 (draft-cui-dhc-dhcp4o6-bulk-active-leasequery);
//! and the DHCPv4-over-DHCPv6 lease authority (RFC 7341, RFC 7618, RFC 8539) whose bindings it
//! publishes.
//!
//! ## Request flows
//!
//! - A bulk query: [`shard`]'s connection shell reads bytes and hands them to the sans-io
//!   [`session::connection::Connection`] (framing, slots, deadlines, the stream's shape), which
//!   asks [`session`] what the message means; a scan plan goes to every shard, each scans its
//!   slice of the [`lease`] table and encodes records with [`proto`]'s encoder into chunks, the
//!   connection's shard writes them.
//! - A DHCP4o6 client: [`shard`] receives the datagram, forwards it once to its client's shard,
//!   [`authority`] decides, [`store`] makes the change durable, the active leasequery fan-out in
//!   [`shard`] publishes it (encoded once per wire form by [`session::fanout`]), then the
//!   DHCPV4-RESPONSE leaves.
//! - An active query: [`session`] validates it, [`shard`] registers the subscriber, catches up
//!   from each shard's history ring and sends every later change.
//! - The other end: [`requestor`] builds leasequery queries and reads their reply streams (loadgen
//!   and the tests use it); [`lwb4`] plays a DHCP4o6 client.
//!
//! ## Map
//!
//! | module | what | I/O |
//! |---|---|---|
//! | [`proto`] | TCP framing, DHCPv6 and DHCPv4 codecs, the DHCP4o6 envelope, the streaming reply encoder | sans-io |
//! | [`lease`] | binding model, the per-shard table and its indexes, change events, the history ring, shard routing | sans-io |
//! | [`session`] | a requestor connection's state machine; what its messages mean: replies, scan plans, error replies, the pools phase, the active fan-out's encoding, active subscriptions | sans-io |
//! | [`authority`] | the DHCP4o6 lease authority, a file per concern: decode, pools and PSIDs, the option 109 directory, timers, DHCP states | sans-io |
//! | [`requestor`] | the leasequery client: query builders, reply-stream classification, the binding table (loadgen, tests, a CLI) | sans-io |
//! | [`lwb4`] | a simulated DHCP4o6 client (an lwB4, RFC 7341): DORA, renew, release (loadgen, tests) | sans-io |
//! | [`ratelimit`] | the log-line rate limiter of the drop warnings | sans-io |
//! | [`config`] | the TOML file and the command-line flags | file read at start |
//! | [`feed`] | lease sources other than the authority: the import file and the followed feed file | file reads |
//! | [`shard`] | the glommio shell: executors, listeners, the connection shell, mailboxes, active subscriptions, the UDP path, shutdown | glommio |
//! | [`store`] | the durable lease journal: record format, group commit, snapshots, replay, server DUID | glommio DMA files |
//!
//! The sans-io modules take `now` as an argument and never touch glommio, sockets or clocks
//! (`tests/sans_io.rs` checks it).
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod authority;
pub mod cluster;
pub mod config;
pub mod feed;
pub mod lease;
pub mod lwb4;
pub mod metrics;
pub mod proto;
pub mod ratelimit;
pub mod requestor;
pub mod session;
pub mod shard;
pub mod store;
pub mod tls;
pub mod tlsclient;
