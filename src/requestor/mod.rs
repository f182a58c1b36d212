//! The leasequery client (a "requestor" in RFC 5460, RFC 6926, RFC 7653 and RFC 7724), sans-io:
//! what a requestor sends, what it makes of each answer, and the table of bindings it keeps.
//!
//! - [`query`]: the query messages (unframed): DHCPv6 bulk by address, client-id, relay-id,
//!   link-address or remote-id (RFC 5460 §5.3); DHCPv4 bulk for all configured addresses, by
//!   relay-id, remote-id, client-id or MAC (RFC 6926 §6.2); both in DHCP4o6 (a LEASEQUERY
//!   carrying the DHCPBULKLEASEQUERY in OPTION_DHCPV4_MSG); active queries in the three forms
//!   with a catch-up start time (RFC 7653 §6.3, RFC 7724 §6.3).
//! - [`reply`]: the classification of one message of a reply stream: v6 LEASEQUERY-REPLY,
//!   -DATA, -DONE with their status; v4 DHCPLEASEACTIVE, DHCPLEASEUNASSIGNED, DHCPLEASEQUERYDONE,
//!   DHCPLEASEQUERYSTATUS; for DHCP4o6 both layers (the v6 envelope and the DHCPv4 answer in
//!   option 87). A [`reply::Stream`] follows a whole stream: where it ends, and whether an
//!   active query's catch-up is complete or must be tried again (DataMissing).
//! - [`kind`]: the bulk query kinds of the command lines (`v6-link:ADDR` ... `4o6-address:ADDR`),
//!   parsed and built with [`query`].
//! - [`lease`]: a binding with every field of the import-file format, decoded from an answer
//!   (what `lqctl` writes out).
//! - [`table`]: the bindings a requestor has learnt, keyed by (IPv4, PSID) for v4 and DHCP4o6
//!   and by (DUID, address) for v6; bulk answers and active updates apply alike, the latest
//!   state wins.
//!
//! No sockets, no clock: the caller frames and sends the bytes (`proto::framing`), feeds back
//! each received message and passes the time a catch-up starts from. Used by `loadgen` and the
//! tests; a command-line requestor (bulk dump; watch with catch-up, reloading on DataMissing)
//! is the three steps [`query`] -> [`reply::Stream`] -> [`table::Table`].

pub mod kind;
pub mod lease;
pub mod query;
pub mod reply;
pub mod table;
pub mod watch;

#[cfg(test)]
mod tests;

pub use kind::{QueryKind, Request};
pub use lease::{Lease, LeaseKey};
pub use query::{ActiveQuery, BulkV4, BulkV6};
pub use reply::{Answer, Binding, Ending, Stream, Wire};
pub use table::{Key, Table, Value};
