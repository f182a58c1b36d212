//! Active leasequery (sans-io): ACTIVELEASEQUERY (RFC 7653), DHCPACTIVELEASEQUERY (RFC 7724) and
//! their DHCP4o6 form (the draft, docs/DESIGN.md section 4).
//!
//! - `query.rs`: [`v6_active`] / [`v4_active`] check a query and turn it into an
//!   [`ActivePlan`] (what to follow, how to encode it, where catch-up starts) or a refusal
//!   ([`super::refuse`]).
//! - `filter.rs`: [`ActiveFilter`], which binding changes the query follows.
//! - `stream.rs`: [`ActivePlan`] encodes every message of the stream: the opening REPLY, updates (one
//!   encoding per [`WireKey`], the transaction ids patched per subscriber with
//!   [`crate::proto::encoder::patch_xids`]), CatchUpComplete, DataMissing, keepalives and the
//!   final QueryTerminated.
//! - `backlog.rs`: [`Backlog`] is one subscriber's coalescing queue (the latest state of a binding replaces
//!   the queued one, RFC 7653 §7, RFC 7724 §6), bounded in bindings and octets.
//!
//! Our readings where the RFCs are silent (README "Active leasequery"):
//! - A removed v6 binding is sent with lifetimes 0; a removed v4 binding as DHCPLEASEUNASSIGNED
//!   (state EXPIRED when it was still ACTIVE).
//! - DHCP4o6: the opening REPLY carries a DHCPLEASEQUERYSTATUS (no status = success) in
//!   OPTION_DHCPV4_MSG, and every status of the stream (CatchUpComplete, DataMissing, keepalive,
//!   QueryTerminated, errors) is a DHCPLEASEQUERYSTATUS in the v4 layer (RFC 7724 §7.4).
//! - DHCP4o6 needs an OPTION_ORO: inside OPTION_LQ_QUERY, or at message level when the query has
//!   no OPTION_LQ_QUERY (follow every 4o6 binding).
//! - A link-address filter is accepted for a link the server does not know yet (bindings may
//!   appear there later).

mod backlog;
mod filter;
mod query;
mod stream;
#[cfg(test)]
mod tests;

pub use backlog::{Backlog, BacklogLimits, Overflow, Pushed};
pub use filter::{ActiveFilter, V6Filter};
pub(super) use query::{v4_active, v6_active};
pub use stream::{ActivePlan, EncodedUpdate, WireKey};

/// Refuses a query beside an active one (RFC 7653 §9.4, RFC 7724 §8.3); built with the other
/// refusals in [`super::refuse`].
pub use super::refuse::busy_reply;
