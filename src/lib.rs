//! # leasequery
//!
//! The library behind `leasequeryd`, a thread-per-core DHCP leasequery server: DHCPv6 Bulk and
//! Active Leasequery (RFC 5460, RFC 7653), DHCPv4 Bulk and Active Leasequery (RFC 6926,
//! RFC 7724), and both carried over DHCPv4-over-DHCPv6 (draft-cui-dhc-dhcp4o6-bulk-active-leasequery).
//!
//! ## Map
//!
//! | module | what | I/O |
//! |---|---|---|
//! | [`proto`] | TCP framing, DHCPv6 and DHCPv4 codecs, the DHCP4o6 envelope, the streaming reply encoder | sans-io |
//! | [`lease`] | binding model, the per-shard table and its indexes, shard routing | sans-io |
//! | [`feed`] | lease sources other than the authority: the JSON-lines import file | file reads at start |
//! | [`store`] | the durable lease journal: record format, group commit, snapshots, replay, server DUID | glommio DMA files |
//!
//! The sans-io modules take `now` as an argument and never touch glommio, sockets or clocks
//! (`tests/sans_io.rs` checks it).
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod authority;
pub mod config;
pub mod feed;
pub mod lease;
pub mod proto;
pub mod requestor;
pub mod session;
pub mod shard;
pub mod store;
