//! The DHCPv4-over-DHCPv6 lease authority (RFC 7341, RFC 7618, RFC 8539, RFC 2131, RFC 4361),
//! sans-io: one [`Authority`] per shard turns a DHCPv6 datagram received on UDP 547 into an
//! optional reply and the lease [`Change`]s to journal before the reply leaves.
//!
//! # Flow
//!
//! The shell calls [`client_shard`] on each datagram and hands it to that shard's
//! [`Authority::handle`] with the shard's [`LeaseTable`], the IPv6 source and `now`. Timers:
//! [`Authority::next_deadline`] and [`Authority::expire`].
//!
//! # Files, one concern each
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | [`Authority`], [`Outcome`], one handling from datagram to outcome |
//! | `wire.rs` | the DHCPv6 envelope: relay chain, DHCPV4-QUERY, DHCPV4-RESPONSE (RFC 7341) |
//! | `decode.rs` | the DHCPv4 message's facts the lease logic reads (options, client id, selector, relay fields) |
//! | `pools.rs` | units (address and PSID, RFC 7618), subnet selection, allocation |
//! | `softwire.rs` | the softwire directory: claims on option 109 sources across shards (RFC 8539 §8) |
//! | `timers.rs` | lease, hold and offer timers; restore after replay |
//! | `states.rs` | DHCP states (RFC 2131 §4.3): DISCOVER, REQUEST, DECLINE, RELEASE, and the reply |
//! | `counters.rs` | [`AuthorityCounters`] |
//! | `config.rs` | [`AuthorityConfig`] and its validation |
//!
//! The state of one handling (the owner's answer to a claim, a claim granted during it) is
//! passed as arguments and returned, never kept in the [`Authority`] between calls.
//!
//! # Readings (where the RFCs leave a choice)
//!
//! - Offers are kept in the authority, not in the lease table (an OFFERED address is not a
//!   lease and must never reach a requestor); they emit no [`Change`] and are lost on restart.
//! - OPTION_S46_BR (90) and OPTION_S46_BIND_IPV6_PREFIX (137) are DHCPv6 options of the
//!   DHCPV4-RESPONSE, sent (with OFFER and ACK) only when the DHCPv6 ORO of the DHCPV4-QUERY
//!   lists them (RFC 8539 §4.1, §5, §7.1). Option 159 goes inside the DHCPv4 message, only to
//!   clients listing 159 in option 55 (RFC 7618 §8).
//! - Option 109 (RFC 8539 §8.2): a DHCPREQUEST whose 109 is the softwire source of another
//!   client's ACTIVE lease (on any shard) gets a DHCPNAK when the client has no active lease,
//!   and otherwise an ACK with its existing binding (old source). An update sooner than
//!   `softwire_min_update` after the previous one is ACKed with the old source (§8.1).
//!
//! # Softwire directory (uniqueness across shards)
//!
//! Every softwire source has an owner shard, [`shard_of_softwire`]; the owner's authority keeps
//! the claims on the sources it owns (source -> client-id) and serializes them, so two clients
//! never both hold one source, whichever shards they live on. A client's shard keeps the claims
//! its clients hold (confirmed by their owners). A claim is asked only when a DHCPREQUEST sets a
//! source the client does not already hold (the DORA and renewal fast path asks nothing):
//!
//! - owner = this shard: decided inline, in [`Authority::handle`];
//! - owner elsewhere: [`Authority::handle`] stops before changing anything and returns
//!   [`Outcome::needs_claim`]; the shell asks the owner ([`Authority::claim_softwire`] there)
//!   and runs the same datagram again with [`Authority::handle_claimed`] and the answer. The
//!   second run decides afresh on the state it finds then; a granted claim it does not use is
//!   handed back in [`Outcome::frees`].
//!
//! A source a client stops holding (release, expiry, decline, a new source, the lease moved to
//! another unit) is freed at its owner: inline when local, else in [`Outcome::frees`] or
//! [`Authority::take_softwire_frees`] (after [`Authority::expire`]) for the shell to send, and
//! the owner's [`Authority::free_softwire`] drops it only if that client still holds it.
//! After [`Authority::restore`], the active leases' sources are claimed again: local ones at
//! once, the others listed by [`Authority::take_registrations`] for the shell to claim at their
//! owners (and report with [`Authority::settle_registration`]) before any shard serves. When
//! restored data holds one source twice, the first claim wins; the other lease keeps its
//! source in the table but not the claim, and its next REQUEST for that source is a conflict
//! (ACKed without a source).
//! - INIT-REBOOT for a client the authority has no record of: silence (RFC 2131 §4.3.2).
//!   RENEWING (U = 1) with no lease: DHCPNAK; REBINDING (U = 0) with no lease: silence (another
//!   server may hold it).
//! - The server echoes option 61 in every reply (RFC 6842).
//! - A client identifier (61) in RFC 4361 form (type 255) is required on every message.
//! - DHCPRELEASE and DHCPDECLINE select no subnet: the lease they name is found by client
//!   identity and address, whatever option 55 lists (a RELEASE has none, RFC 2131 §4.4.6) and
//!   whichever link they come from.
//! - Hold times: an EXPIRED or RELEASED lease stays the client's for `expired_hold`, a declined
//!   address is ABANDONED for `abandoned_hold`; after that the unit may go to another client (the
//!   record stays in the table, in its state, until then).

pub mod config;
mod counters;
mod decode;
mod pools;
mod softwire;
mod states;
mod timers;
mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::Ipv6Addr;

#[cfg(doc)]
use crate::lease::shard_of_softwire;
use crate::lease::{shard_of_client, Change, LeaseTable};
use crate::proto::codes::v4msg;

pub use config::{AuthorityConfig, SubnetConfig, SubnetError, ValidConfig, ValidSubnet};
pub use counters::AuthorityCounters;
pub use softwire::{ClaimAnswer, SoftwireClaim};
pub use wire::MAX_RELAY_DEPTH;

use pools::{PoolState, Unit};
use states::{Decided, Offer, ServerReply};
use timers::Timer;

/// Which shard owns the client of this datagram: [`shard_of_client`] over the option 61 payload
/// of the DHCPv4 message inside the DHCPV4-QUERY (RFC 4361), or its chaddr when there is none.
/// `None` when the datagram is not a well-formed DHCPV4-QUERY (the caller drops it). Never
/// panics; no allocation unless option 61 is split (RFC 3396).
pub fn client_shard(datagram: &[u8], shards: usize) -> Option<usize> {
    let q = wire::unwrap(datagram, u16::MAX as usize).ok()?;
    Some(shard_of_client(&wire::client_key(&q.v4), shards))
}

/// What [`Authority::handle`] decided for one datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The whole UDP payload to send back to the datagram's source (port 547 for a relay, the
    /// client's port for a direct query), or `None`.
    pub reply: Option<Vec<u8>>,
    /// Lease changes, to be made durable before the reply is sent.
    pub changes: Vec<Change>,
    /// Softwire claims to free at their owner shards (never this shard's: those are freed
    /// inline). Send them after `changes` are durable.
    pub frees: Vec<SoftwireClaim>,
    /// The handling stopped before changing anything: this claim must be decided by the
    /// owner shard ([`shard_of_softwire`]) with [`Authority::claim_softwire`], then the same
    /// datagram handed to [`Authority::handle_claimed`] with the answer.
    pub needs_claim: Option<SoftwireClaim>,
}

/// A client's entry in the directory (client-id -> its unit).
#[derive(Debug, Clone, Copy)]
struct DirEntry {
    unit: Unit,
    /// When the softwire source was last set (0 = unknown).
    sw_set_at: u32,
}

/// One shard's lease authority. See the module docs.
#[derive(Debug)]
pub struct Authority {
    cfg: ValidConfig,
    shard: usize,
    shards: usize,
    pools: Vec<PoolState>,
    /// client-id (option 61 payload) -> its unit.
    dir: HashMap<Vec<u8>, DirEntry>,
    offers: HashMap<Vec<u8>, Offer>,
    offered: HashMap<Unit, Vec<u8>>,
    /// offer id -> client-id, for the offer timers.
    offer_ids: HashMap<u64, Vec<u8>>,
    /// softwire source -> the client-id of this shard's ACTIVE lease holding it (a claim its
    /// owner has granted).
    held: HashMap<Ipv6Addr, (Vec<u8>, u64)>,
    /// Owner side: softwire source (with [`shard_of_softwire`] = this shard) -> the client-id
    /// holding it, on whichever shard, and the claim's sequence number.
    claims: HashMap<Ipv6Addr, (Vec<u8>, u64)>,
    /// The next [`SoftwireClaim::seq`] of this shard's claims.
    next_claim_seq: u64,
    /// Claims to free at other shards, not yet handed to the shell.
    frees: Vec<SoftwireClaim>,
    /// Restored claims owned by other shards, not yet handed to the shell.
    registrations: Vec<SoftwireClaim>,
    timers: BinaryHeap<Reverse<(u32, Timer)>>,
    next_offer_id: u64,
    counters: AuthorityCounters,
}

impl Authority {
    /// The authority of shard `shard` of `shards`: it leases the pool addresses (and all their
    /// PSIDs) with `shard_of_addr(addr, shards) == shard`.
    pub fn new(cfg: &ValidConfig, shard: usize, shards: usize) -> Authority {
        let pools = cfg
            .subnets
            .iter()
            .map(|_| PoolState {
                cursor: 0,
                free: VecDeque::new(),
                in_free: HashSet::new(),
            })
            .collect();
        Authority {
            cfg: cfg.clone(),
            shard,
            shards: shards.max(1),
            pools,
            dir: HashMap::new(),
            offers: HashMap::new(),
            offered: HashMap::new(),
            offer_ids: HashMap::new(),
            held: HashMap::new(),
            claims: HashMap::new(),
            next_claim_seq: 1,
            frees: Vec::new(),
            registrations: Vec::new(),
            timers: BinaryHeap::new(),
            next_offer_id: 1,
            counters: AuthorityCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> &AuthorityCounters {
        &self.counters
    }

    /// The number of outstanding offers.
    pub fn offers_outstanding(&self) -> usize {
        self.offers.len()
    }

    /// Handles one datagram from `src` (see the module docs). When the outcome has
    /// [`Outcome::needs_claim`], nothing was changed or answered: see
    /// [`Authority::handle_claimed`].
    pub fn handle(
        &mut self,
        table: &mut LeaseTable,
        datagram: &[u8],
        src: Ipv6Addr,
        now: u32,
    ) -> Outcome {
        self.counters.received += 1;
        self.handle_claimed(table, datagram, src, now, None)
    }

    /// Handles again a datagram whose first [`Authority::handle`] returned
    /// [`Outcome::needs_claim`], with the owner shard's `answer` (or, with `None`, the same as
    /// `handle` without counting the datagram again). The datagram is decided afresh on the
    /// state found now; a granted claim left unused is in [`Outcome::frees`].
    pub fn handle_claimed(
        &mut self,
        table: &mut LeaseTable,
        datagram: &[u8],
        src: Ipv6Addr,
        now: u32,
        answer: Option<ClaimAnswer>,
    ) -> Outcome {
        let (mut out, fresh) = match self.handle_inner(table, datagram, src, now, answer.as_ref()) {
            Ok(done) => done,
            // Stopped before any change.
            Err(c) => {
                let out = Outcome {
                    needs_claim: Some(c),
                    ..Outcome::default()
                };
                (out, None)
            }
        };
        // A granted claim the lease logic did not keep (a conflict fallback, too early an
        // update, a NAK) goes back to its owner; so does an answered one not asked again.
        let unused = fresh
            .into_iter()
            .chain(answer.filter(|a| a.granted).map(|a| a.claim));
        for c in unused {
            match self.held.get_mut(&c.softwire) {
                // Kept (or held by an earlier copy of this request): the owner keeps the
                // highest number it granted, so does the holder.
                Some((cid, seq)) if cid[..] == c.client[..] => *seq = (*seq).max(c.seq),
                _ => self.free_claim(c),
            }
        }
        out.frees = std::mem::take(&mut self.frees);
        out
    }

    /// One handling; `Err` when it stopped, before changing anything, on a claim only another
    /// shard can decide. `Ok` carries the claim granted during it that was not held before
    /// (the caller frees it when the lease did not keep it).
    fn handle_inner(
        &mut self,
        table: &mut LeaseTable,
        datagram: &[u8],
        src: Ipv6Addr,
        now: u32,
        answer: Option<&ClaimAnswer>,
    ) -> Result<(Outcome, Option<SoftwireClaim>), SoftwireClaim> {
        let q = match wire::unwrap(datagram, self.cfg.max_datagram) {
            Ok(q) => q,
            Err(e) => {
                let c = &mut self.counters;
                *match e {
                    wire::Unwrap::Oversize => &mut c.drop_oversize,
                    wire::Unwrap::MalformedV6 => &mut c.drop_malformed_v6,
                    wire::Unwrap::TooDeep => &mut c.drop_too_deep,
                    wire::Unwrap::NotQuery => &mut c.drop_not_query,
                    wire::Unwrap::NoDhcpv4Msg => &mut c.drop_no_dhcpv4_msg,
                    wire::Unwrap::ManyDhcpv4Msg => &mut c.drop_many_dhcpv4_msg,
                    wire::Unwrap::MalformedV4 => &mut c.drop_malformed_v4,
                } += 1;
                return Ok((Outcome::default(), None));
            }
        };
        let Some((msg_type, selector, req)) = self.decode(&q, src, answer.is_none()) else {
            return Ok((Outcome::default(), None));
        };
        if matches!(msg_type, v4msg::DECLINE | v4msg::RELEASE) {
            // These name a lease the client holds, found by its identity and address (and
            // PSID when given); no subnet is selected for them. A RELEASE carries no option 55
            // (RFC 2131 §4.4.6), so the selection would drop it on a shared-only link.
            let mut changes = Vec::new();
            if msg_type == v4msg::DECLINE {
                self.decline(table, &req, now, &mut changes);
            } else {
                self.release(table, &req, now, &mut changes);
            }
            self.maybe_compact_timers(table);
            let out = Outcome {
                changes,
                ..Outcome::default()
            };
            return Ok((out, None));
        }
        let subnet = match self.select(selector, req.wants_159) {
            Ok(s) => s,
            Err(true) => {
                self.counters.drop_needs_159 += 1;
                return Ok((Outcome::default(), None));
            }
            Err(false) => {
                self.counters.drop_no_subnet += 1;
                return Ok((Outcome::default(), None));
            }
        };
        let mut changes = Vec::new();
        let decided = match msg_type {
            v4msg::DISCOVER => Ok(self.discover(table, subnet, &req, now).into()),
            v4msg::REQUEST => self.request(table, subnet, &req, now, &mut changes, answer),
            v4msg::INFORM => {
                self.counters.informs += 1;
                Ok(Some(ServerReply::InformAck(subnet)).into())
            }
            _ => {
                self.counters.drop_bad_v4_type += 1;
                Ok(None.into())
            }
        };
        let Decided { reply, fresh } = match decided {
            Ok(d) => d,
            Err(claim) => {
                self.maybe_compact_timers(table);
                return Err(claim);
            }
        };
        let reply = reply.and_then(|r| self.build(&q.hops, &req, r, now));
        self.maybe_compact_timers(table);
        if reply.is_some() {
            self.counters.replies += 1;
        }
        let out = Outcome {
            reply,
            changes,
            ..Outcome::default()
        };
        Ok((out, fresh))
    }
}

#[cfg(test)]
mod testutil;
