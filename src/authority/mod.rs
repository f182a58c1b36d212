//! The DHCPv4-over-DHCPv6 lease authority (RFC 7341, RFC 7618, RFC 8539, RFC 2131, RFC 4361),
//! sans-io: one [`Authority`] per shard turns a DHCPv6 datagram received on UDP 547 into an
//! optional reply and the lease [`Change`]s to journal before the reply leaves.
//!
//! # Flow
//!
//! The shell calls [`client_shard`] on each datagram and hands it to that shard's
//! [`Authority::handle`] with the shard's [`LeaseShard`], the IPv6 source and `now`. Timers:
//! [`Authority::next_deadline`] and [`Authority::expire`].
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
mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::lease::{
    shard_of_addr, shard_of_client, shard_of_softwire, Change, ChangeKind, LeaseShard,
    RelayBinding, ScanStep, V4Binding, V4Query, V6ContextBinding,
};
use crate::proto::codes::v4relay;
use crate::proto::codes::{dhcp_state, v4msg, v4opt, BOOTREPLY, BOOTREQUEST};
use crate::proto::record::{PortParams, V4Record};
use crate::proto::v4::{ClientId, Message, MessageView as V4View, RelayAgentInfo, V4Option};

pub use config::{AuthorityConfig, ConfigError, SubnetConfig, ValidConfig, ValidSubnet};
pub use wire::MAX_RELAY_DEPTH;

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

/// A claim on a softwire source (RFC 8539 option 109) by a client (option 61 payload).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SoftwireClaim {
    /// The softwire source address.
    pub softwire: Ipv6Addr,
    /// The claiming client's identifier.
    pub client: Vec<u8>,
    /// Increasing per client's shard: the owner keeps the highest it granted and drops a claim
    /// only on a free with that number, so a free overtaken by the same client's new claim
    /// (a source changed and changed back while the first change waited for its journal
    /// commit) cannot drop the new claim.
    pub seq: u64,
}

impl SoftwireClaim {
    /// The shard that decides this claim.
    pub fn owner(&self, shards: usize) -> usize {
        shard_of_softwire(self.softwire, shards)
    }
}

/// The owner shard's answer to an [`Outcome::needs_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAnswer {
    /// The claim asked.
    pub claim: SoftwireClaim,
    /// Whether the owner granted it (false: another client holds the source).
    pub granted: bool,
}

/// Counters of one shard's authority. Every dropped datagram is counted under exactly one
/// `drop_*` reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityCounters {
    /// Datagrams handed to [`Authority::handle`].
    pub received: u64,
    /// Replies produced.
    pub replies: u64,
    /// DHCPOFFERs.
    pub offers: u64,
    /// DHCPACKs (including INFORM's).
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
    /// Dropped: more than [`MAX_RELAY_DEPTH`] Relay-Forward envelopes.
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

/// A unit of the pool: an address, and for a shared subnet a PSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Unit {
    addr: u32,
    psid: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// An ACTIVE lease ends.
    Lease(Unit),
    /// An EXPIRED / RELEASED / ABANDONED hold ends.
    Hold(Unit),
    /// An offer's hold ends (offer id).
    Offer(u64),
}

/// A binding found by [`Authority::restore`]: unit, client-id, state, expires, cltt, softwire.
type Seen = (Unit, Vec<u8>, u8, u32, u32, Option<Ipv6Addr>);

#[derive(Debug, Clone)]
struct Offer {
    id: u64,
    unit: Unit,
    subnet: usize,
}

#[derive(Debug, Clone, Copy)]
struct DirEntry {
    unit: Unit,
    /// When the softwire source was last set (0 = unknown).
    sw_set_at: u32,
}

#[derive(Debug, Clone)]
struct PoolState {
    /// Next never-looked-at index into this shard's units of the subnet (address-major).
    cursor: u64,
    /// Units whose hold ended (validated again when taken).
    free: VecDeque<Unit>,
    in_free: HashSet<Unit>,
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
    /// Set by the lease logic when it needs a remote claim (the handling then stops).
    needs_claim: Option<SoftwireClaim>,
    /// The answer to a remote claim, during [`Authority::handle_claimed`].
    answer: Option<ClaimAnswer>,
    /// A claim granted during this handling that was not held before (freed again at the end
    /// when the lease logic did not keep it).
    fresh: Option<SoftwireClaim>,
    timers: BinaryHeap<Reverse<(u32, Timer)>>,
    next_offer_id: u64,
    counters: AuthorityCounters,
}

/// The request's facts the lease logic needs, owned.
struct Req<'a> {
    v4: V4View<'a>,
    client: Vec<u8>,
    wants_159: bool,
    unicast: bool,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    req_pp: Option<PortParams>,
    softwire: Option<Ipv6Addr>,
    ctx: V6ContextBinding,
    /// What the v4 binding records as circuit-id, remote-id and relay-id (see
    /// [`relay_fields`]).
    circuit_id: Option<Vec<u8>>,
    remote_id: Option<Vec<u8>>,
    relay_id: Option<Vec<u8>>,
    oro_br: bool,
    oro_bind_prefix: bool,
}

enum Reply {
    Offer(usize, Unit, Option<Ipv6Addr>),
    Ack(usize, Unit, Option<Ipv6Addr>),
    Nak,
    InformAck(usize),
}

/// The circuit-id, remote-id and relay-id a v4 binding records: each from option 82 inside
/// the DHCPv4 message (sub-options 1, 2 and 12; RFC 3046, RFC 6925) when it has that
/// sub-option, otherwise from the innermost DHCPv6 relay (Remote-ID, Relay-ID; a v6 relay has
/// no circuit-id). `Err` when option 82 is present but malformed (a sub-option running past
/// its end); the caller then keeps the relay chain's values. Never panics.
#[allow(clippy::type_complexity)]
fn relay_fields(
    rai: Option<&[u8]>,
    relay: Option<&RelayBinding>,
) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>), ()> {
    let v6_remote = relay.and_then(|x| x.remote_id.clone());
    let v6_relay = relay.and_then(|x| x.relay_id.clone());
    let Some(rai) = rai else {
        return Ok((None, v6_remote, v6_relay));
    };
    let sub = |code| RelayAgentInfo::find(rai, code).map_err(|_| ());
    let (circuit, remote, relay_id) = (
        sub(v4relay::CIRCUIT_ID)?,
        sub(v4relay::REMOTE_ID)?,
        sub(v4relay::RELAY_ID)?,
    );
    Ok((
        circuit.map(<[u8]>::to_vec),
        remote.map(<[u8]>::to_vec).or(v6_remote),
        relay_id.map(<[u8]>::to_vec).or(v6_relay),
    ))
}

/// The lease time (option 51) and `expires` of an infinite lease (RFC 2131 §3.3).
const INFINITE: u32 = u32::MAX;

/// When a lease of `lease_time` seconds granted at `now` ends: never (`u32::MAX`) for the
/// infinite 0xffffffff; otherwise at most `u32::MAX - 1` (2106), so that a finite lease is never
/// taken for an infinite one.
fn lease_end(lease_time: u32, now: u32) -> u32 {
    if lease_time == INFINITE {
        INFINITE
    } else {
        now.saturating_add(lease_time).min(INFINITE - 1)
    }
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

fn in_prefix(a: Ipv6Addr, (p, len): (Ipv6Addr, u8)) -> bool {
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    u128::from(a) & m == u128::from(p)
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
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
            needs_claim: None,
            answer: None,
            fresh: None,
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

    /// Rebuilds the client directory, the softwire claims and the timers from a table loaded by
    /// journal replay (and import). Call once, on a fresh authority, before the first
    /// [`Authority::handle`]. Bindings outside every subnet or owned by another shard are left
    /// alone (not indexed). The active leases' softwire sources owned by this shard are claimed
    /// at once; the others wait in [`Authority::take_registrations`] for the shell to claim at
    /// their owners (see the module docs).
    pub fn restore(&mut self, table: &LeaseShard) {
        let q = V4Query::all();
        let mut cur = table.start_v4(&q);
        let mut seen: Vec<Seen> = Vec::new();
        loop {
            let step = table.scan_v4(&q, &mut cur, 4096, |r: V4Record<'_>| {
                if let Some(cid) = r.client_id {
                    seen.push((
                        Unit {
                            addr: u32::from(r.addr),
                            psid: r.port_params.map(|p| p.psid),
                        },
                        cid.to_vec(),
                        r.state,
                        r.expires,
                        r.cltt,
                        r.softwire_src,
                    ));
                }
                true
            });
            if step == ScanStep::Done {
                break;
            }
        }
        // Latest transaction first wins the directory entry, ACTIVE before anything else.
        seen.sort_by_key(|s| (s.2 == dhcp_state::ACTIVE, s.4));
        for (unit, cid, state, expires, _cltt, sw) in seen {
            if self.subnet_of(unit.addr).is_none() || !self.owns(unit.addr) {
                continue;
            }
            self.dir
                .insert(cid.clone(), DirEntry { unit, sw_set_at: 0 });
            match state {
                dhcp_state::ACTIVE => {
                    if let Some(sw) = sw {
                        let claim = self.new_claim(sw, &cid);
                        if claim.owner(self.shards) == self.shard {
                            let granted = self.claim_softwire(&claim);
                            self.settle_registration(claim, granted);
                        } else {
                            self.registrations.push(claim);
                        }
                    }
                    if expires != INFINITE {
                        self.timers.push(Reverse((expires, Timer::Lease(unit))));
                    }
                }
                dhcp_state::EXPIRED | dhcp_state::RELEASED | dhcp_state::ABANDONED => {
                    self.timers.push(Reverse((expires, Timer::Hold(unit))));
                }
                _ => {}
            }
        }
    }

    /// The earliest time [`Authority::expire`] has work, if any.
    pub fn next_deadline(&self) -> Option<u32> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs every timer due at `now`: ACTIVE leases past their expiry become EXPIRED (a
    /// [`ChangeKind::Expire`] change each), ended holds make units reusable, unanswered offers
    /// are withdrawn.
    pub fn expire(&mut self, table: &mut LeaseShard, now: u32) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some(&Reverse((t, timer))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Lease(unit) => {
                    let Some(mut b) = self.binding(table, unit) else {
                        continue;
                    };
                    if b.state != dhcp_state::ACTIVE || b.expires != t {
                        continue;
                    }
                    if let Some(sw) = b.softwire_src {
                        self.drop_softwire(sw, b.client_id.as_deref());
                    }
                    b.state = dhcp_state::EXPIRED;
                    b.state_start = now;
                    b.expires = now.saturating_add(self.cfg.expired_hold);
                    if table.upsert_v4(b.clone()).is_err() {
                        self.counters.table_errors += 1;
                        continue;
                    }
                    self.timers.push(Reverse((b.expires, Timer::Hold(unit))));
                    self.counters.expirations += 1;
                    changes.push(Change::V4 {
                        at: now,
                        kind: ChangeKind::Expire,
                        binding: b,
                    });
                }
                Timer::Hold(unit) => {
                    let Some(b) = self.binding(table, unit) else {
                        continue;
                    };
                    if b.state != dhcp_state::ACTIVE && b.expires == t {
                        self.push_free(unit);
                    }
                }
                Timer::Offer(id) => {
                    let Some(cid) = self.offer_ids.get(&id).cloned() else {
                        continue;
                    };
                    if let Some(o) = self.withdraw_offer(&cid) {
                        self.counters.offers_expired += 1;
                        self.push_free(o.unit);
                    }
                }
            }
        }
        changes
    }

    /// Renewals leave stale timers behind; when they outnumber the live ones, keep only the
    /// live ones (so the heap stays within twice the bindings and offers, plus a constant).
    fn maybe_compact_timers(&mut self, table: &LeaseShard) {
        if self.timers.len() <= 2 * (table.len_v4() + self.offers.len()) + 1024 {
            return;
        }
        let timers = std::mem::take(&mut self.timers);
        self.timers = timers
            .into_iter()
            .filter(|Reverse((t, timer))| match timer {
                Timer::Lease(u) => self
                    .binding(table, *u)
                    .is_some_and(|b| b.state == dhcp_state::ACTIVE && b.expires == *t),
                Timer::Hold(u) => self
                    .binding(table, *u)
                    .is_some_and(|b| b.state != dhcp_state::ACTIVE && b.expires == *t),
                Timer::Offer(id) => self.offer_ids.contains_key(id),
            })
            .collect();
    }

    /// The number of pending timers (live and stale), for tests and metrics.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    fn push_free(&mut self, unit: Unit) {
        if let Some(s) = self.subnet_of(unit.addr) {
            if let Some(p) = self.pools.get_mut(s) {
                if p.in_free.insert(unit) {
                    p.free.push_back(unit);
                }
            }
        }
    }

    fn withdraw_offer(&mut self, cid: &[u8]) -> Option<Offer> {
        let o = self.offers.remove(cid)?;
        self.offered.remove(&o.unit);
        self.offer_ids.remove(&o.id);
        Some(o)
    }

    /// This shard's client `cid` no longer holds `sw`: forget it here and free it at its
    /// owner (inline when that is this shard).
    fn drop_softwire(&mut self, sw: Ipv6Addr, cid: Option<&[u8]>) {
        let Some(cid) = cid else {
            return;
        };
        let seq = match self.held.get(&sw) {
            Some((c, seq)) if c[..] == cid[..] => *seq,
            _ => return,
        };
        self.held.remove(&sw);
        self.free_claim(SoftwireClaim {
            softwire: sw,
            client: cid.to_vec(),
            seq,
        });
    }

    /// Frees a claim of this shard's at its owner: inline when local, else queued.
    fn free_claim(&mut self, claim: SoftwireClaim) {
        if claim.owner(self.shards) == self.shard {
            self.free_softwire(&claim);
        } else if !self.frees.contains(&claim) {
            self.frees.push(claim);
        }
    }

    fn new_claim(&mut self, sw: Ipv6Addr, client: &[u8]) -> SoftwireClaim {
        let seq = self.next_claim_seq;
        self.next_claim_seq += 1;
        SoftwireClaim {
            softwire: sw,
            client: client.to_vec(),
            seq,
        }
    }

    /// Owner side: claims `sw` for `client`. Granted when no client holds it or `client`
    /// already does; the claim then stands until [`Authority::free_softwire`].
    pub fn claim_softwire(&mut self, claim: &SoftwireClaim) -> bool {
        self.counters.softwire_claims += 1;
        match self.claims.get_mut(&claim.softwire) {
            Some((c, seq)) => {
                let mine = c[..] == claim.client[..];
                if mine {
                    *seq = (*seq).max(claim.seq);
                }
                mine
            }
            None => {
                self.claims
                    .insert(claim.softwire, (claim.client.clone(), claim.seq));
                true
            }
        }
    }

    /// Owner side: frees the source if this client holds it under this claim's number (a
    /// stale free is ignored).
    pub fn free_softwire(&mut self, claim: &SoftwireClaim) {
        if self
            .claims
            .get(&claim.softwire)
            .is_some_and(|(c, seq)| c[..] == claim.client[..] && *seq == claim.seq)
        {
            self.claims.remove(&claim.softwire);
        }
    }

    /// Owner side: who holds `sw`, if anyone.
    pub fn softwire_holder(&self, sw: &Ipv6Addr) -> Option<&[u8]> {
        self.claims.get(sw).map(|(c, _)| c.as_slice())
    }

    /// The number of claims this shard holds as owner.
    pub fn softwire_claims_owned(&self) -> usize {
        self.claims.len()
    }

    /// Claims freed by [`Authority::expire`] (or left over) for the shell to send to their
    /// owners with [`Authority::free_softwire`].
    pub fn take_softwire_frees(&mut self) -> Vec<SoftwireClaim> {
        std::mem::take(&mut self.frees)
    }

    /// The restored active leases' claims owned by other shards (see [`Authority::restore`]):
    /// the shell claims each at its owner and reports with [`Authority::settle_registration`],
    /// every shard before any serves.
    pub fn take_registrations(&mut self) -> Vec<SoftwireClaim> {
        std::mem::take(&mut self.registrations)
    }

    /// The owner's answer to a restored claim.
    pub fn settle_registration(&mut self, claim: SoftwireClaim, granted: bool) {
        if granted {
            self.held.insert(claim.softwire, (claim.client, claim.seq));
        } else {
            self.counters.softwire_restore_conflicts += 1;
        }
    }

    /// Whether a claim on `sw` for `client` stands: `Some(answer)`, or `None` after recording
    /// [`Outcome::needs_claim`] (the owner is another shard and no answer is at hand).
    fn claim(&mut self, sw: Ipv6Addr, client: &[u8]) -> Option<bool> {
        if self.held.get(&sw).is_some_and(|(c, _)| c[..] == client[..]) {
            return Some(true);
        }
        let (claim, granted) = if shard_of_softwire(sw, self.shards) == self.shard {
            let c = self.new_claim(sw, client);
            let g = self.claim_softwire(&c);
            (c, g)
        } else if let Some(a) = self
            .answer
            .as_ref()
            .filter(|a| a.claim.softwire == sw && a.claim.client[..] == client[..])
        {
            (a.claim.clone(), a.granted)
        } else {
            self.counters.softwire_remote_claims += 1;
            self.needs_claim = Some(self.new_claim(sw, client));
            return None;
        };
        if granted {
            self.fresh = Some(claim);
        }
        Some(granted)
    }

    fn owns(&self, addr: u32) -> bool {
        shard_of_addr(Ipv4Addr::from(addr), self.shards) == self.shard
    }

    fn subnet_of(&self, addr: u32) -> Option<usize> {
        self.cfg
            .subnets
            .iter()
            .position(|s| s.contains(Ipv4Addr::from(addr)))
    }

    fn pp(&self, subnet: usize, unit: Unit) -> Option<PortParams> {
        let s = self.cfg.subnets.get(subnet)?;
        let (offset, psid_len) = s.psid?;
        Some(PortParams {
            offset,
            psid_len,
            psid: unit.psid?,
        })
    }

    fn binding(&self, table: &LeaseShard, unit: Unit) -> Option<V4Binding> {
        let s = self.subnet_of(unit.addr)?;
        let r = table.get_v4(Ipv4Addr::from(unit.addr), self.pp(s, unit))?;
        Some(V4Binding::from_record(&r))
    }

    /// Whether `unit` may be given to `client` now.
    fn is_free_for(&self, table: &LeaseShard, unit: Unit, client: &[u8], now: u32) -> bool {
        if self.offered.get(&unit).is_some_and(|c| c != client) {
            return false;
        }
        match self.binding(table, unit) {
            None => true,
            Some(b) if b.client_id.as_deref() == Some(client) => b.state != dhcp_state::ABANDONED,
            Some(b) => b.state != dhcp_state::ACTIVE && b.expires <= now,
        }
    }

    /// The subnet for a selector address and PRL (see [`AuthorityConfig`]); `Err(true)` when the
    /// client needs 159, `Err(false)` when nothing matches.
    fn select(&self, selector: Ipv6Addr, wants_159: bool) -> Result<usize, bool> {
        let mut best: Option<u8> = None;
        for s in &self.cfg.subnets {
            for &l in &s.links {
                if in_prefix(selector, l) && best.is_none_or(|b| l.1 > b) {
                    best = Some(l.1);
                }
            }
        }
        let best = best.ok_or(false)?;
        let cands: Vec<usize> = self
            .cfg
            .subnets
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.links
                    .iter()
                    .any(|&l| l.1 == best && in_prefix(selector, l))
            })
            .map(|(i, _)| i)
            .collect();
        let shared = |i: &&usize| self.cfg.subnets.get(**i).is_some_and(|s| s.psid.is_some());
        if wants_159 {
            if let Some(&i) = cands.iter().find(shared) {
                return Ok(i);
            }
            return cands.first().copied().ok_or(false);
        }
        let shared_only = cands
            .iter()
            .filter(shared)
            .any(|&i| self.cfg.subnets.get(i).is_some_and(|s| s.shared_only));
        match cands.iter().find(|i| !shared(i)) {
            Some(&i) if !shared_only => Ok(i),
            _ => Err(true),
        }
    }

    /// A unit from `subnet` for `client`, following RFC 7618 §8.1 / RFC 2131 §4.3.1: its current
    /// or previous unit, the requested one, a unit whose hold ended, a never-used unit.
    fn allocate(
        &mut self,
        table: &LeaseShard,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
    ) -> Option<Unit> {
        let s = self.cfg.subnets.get(subnet)?.clone();
        if let Some(e) = self.dir.get(&r.client) {
            if s.contains(Ipv4Addr::from(e.unit.addr))
                && e.unit.psid.is_some() == s.psid.is_some()
                && self.is_free_for(table, e.unit, &r.client, now)
            {
                return Some(e.unit);
            }
        }
        if let Some(a) = r
            .requested
            .filter(|&a| s.contains(a) && self.owns(a.into()))
        {
            let psid = match s.psid {
                None => Some(None),
                Some((off, k)) => r
                    .req_pp
                    .filter(|p| p.offset == off && p.psid_len == k && p.psid >= s.first_psid)
                    .map(|p| Some(p.psid)),
            };
            if let Some(psid) = psid {
                let u = Unit {
                    addr: a.into(),
                    psid,
                };
                if self.is_free_for(table, u, &r.client, now) {
                    return Some(u);
                }
            }
        }
        while let Some(u) = self.pools.get_mut(subnet)?.free.pop_front() {
            if let Some(p) = self.pools.get_mut(subnet) {
                p.in_free.remove(&u);
            }
            if self.is_free_for(table, u, &r.client, now) {
                return Some(u);
            }
        }
        // Never-used units, address-major: index i -> address first + i / per, PSID
        // first_psid + i % per.
        let per = u64::from(s.psids() - u32::from(s.first_psid));
        let total = (u64::from(u32::from(s.last)) - u64::from(u32::from(s.first)) + 1) * per;
        loop {
            let i = self.pools.get(subnet)?.cursor;
            if i >= total {
                return None;
            }
            let addr = u32::from(s.first) + (i / per) as u32;
            if !self.owns(addr) {
                // Skip the whole address.
                if let Some(p) = self.pools.get_mut(subnet) {
                    p.cursor = (i / per + 1) * per;
                }
                continue;
            }
            if let Some(p) = self.pools.get_mut(subnet) {
                p.cursor = i + 1;
            }
            let u = Unit {
                addr,
                psid: s.psid.map(|_| s.first_psid + (i % per) as u16),
            };
            if self.is_free_for(table, u, &r.client, now) {
                return Some(u);
            }
        }
    }

    /// Handles one datagram from `src` (see the module docs). When the outcome has
    /// [`Outcome::needs_claim`], nothing was changed or answered: see
    /// [`Authority::handle_claimed`].
    pub fn handle(
        &mut self,
        table: &mut LeaseShard,
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
        table: &mut LeaseShard,
        datagram: &[u8],
        src: Ipv6Addr,
        now: u32,
        answer: Option<ClaimAnswer>,
    ) -> Outcome {
        self.answer = answer;
        self.needs_claim = None;
        self.fresh = None;
        let mut out = self.handle_inner(table, datagram, src, now);
        if let Some(c) = self.needs_claim.take() {
            // Stopped before any change.
            out = Outcome {
                needs_claim: Some(c),
                ..Outcome::default()
            };
        }
        // A granted claim the lease logic did not keep (a conflict fallback, too early an
        // update, a NAK) goes back to its owner; so does an answered one not asked again.
        let unused = self
            .fresh
            .take()
            .into_iter()
            .chain(self.answer.take().filter(|a| a.granted).map(|a| a.claim));
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

    fn handle_inner(
        &mut self,
        table: &mut LeaseShard,
        datagram: &[u8],
        src: Ipv6Addr,
        now: u32,
    ) -> Outcome {
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
                return Outcome::default();
            }
        };
        let v4 = q.v4;
        let Some(msg_type) = v4.message_type().filter(|_| v4.op == BOOTREQUEST) else {
            self.counters.drop_bad_v4_type += 1;
            return Outcome::default();
        };
        let client: Vec<u8> = match v4.option(v4opt::CLIENT_ID) {
            Some(c) if matches!(ClientId::decode(&c), Ok(ClientId::Rfc4361 { .. })) => {
                c.into_owned()
            }
            _ => {
                self.counters.drop_no_client_id += 1;
                return Outcome::default();
            }
        };
        if shard_of_client(&client, self.shards) != self.shard {
            self.counters.drop_wrong_shard += 1;
            return Outcome::default();
        }
        // Typed options; a bad value of one we use drops the message.
        let mut bad = false;
        let mut get4 = |code: u8| -> Option<Ipv4Addr> {
            let v = v4.option(code)?;
            let a = ip4(&v);
            bad |= a.is_none();
            a
        };
        let requested = get4(v4opt::REQUESTED_IP);
        let server_id = get4(v4opt::SERVER_ID);
        let req_pp = match v4.option(v4opt::V4_PORTPARAMS).as_deref() {
            None => None,
            Some(&[off, k, p0, p1]) => {
                let pp = PortParams::from_wire(off, k, u16::from_be_bytes([p0, p1]));
                bad |= pp.is_none();
                pp
            }
            Some(_) => {
                bad = true;
                None
            }
        };
        let softwire = match v4.option(v4opt::DHCP4O6_S46_SADDR) {
            None => None,
            Some(v) => match <[u8; 16]>::try_from(v.as_ref()) {
                Ok(b) => Some(Ipv6Addr::from(b)),
                Err(_) => {
                    bad = true;
                    None
                }
            },
        };
        let wants_159 = v4
            .option(v4opt::PARAMETER_REQUEST_LIST)
            .is_some_and(|p| p.contains(&v4opt::V4_PORTPARAMS));
        if bad {
            self.counters.drop_malformed_v4 += 1;
            return Outcome::default();
        }
        let innermost = q.hops.last();
        let selector = q
            .hops
            .iter()
            .rev()
            .map(|h| h.link)
            .find(|l| !l.is_unspecified() && !is_link_local(*l))
            .or(innermost.map(|h| h.peer))
            .unwrap_or(src);
        let ctx = V6ContextBinding {
            client_src: innermost.map_or(src, |h| h.peer),
            link: selector,
            relay: innermost.map(|h| RelayBinding {
                hop_count: h.hop_count,
                link_address: h.link,
                peer_address: h.peer,
                interface_id: h.interface_id.map(<[u8]>::to_vec),
                relay_id: h.relay_id.map(<[u8]>::to_vec),
                remote_id: h.remote_id.map(<[u8]>::to_vec),
            }),
        };
        let rai = v4.option(v4opt::RELAY_AGENT_INFO);
        let (circuit_id, remote_id, relay_id) =
            match relay_fields(rai.as_deref(), ctx.relay.as_ref()) {
                Ok(f) => f,
                Err(()) => {
                    // A relay agent's broken option 82 does not cost the client its lease: it is
                    // ignored (counted), the v6 relay chain's values are kept.
                    if self.answer.is_none() {
                        // (Counted once: not again when handled with a claim's answer.)
                        self.counters.option82_malformed += 1;
                    }
                    relay_fields(None, ctx.relay.as_ref()).unwrap_or_default()
                }
            };
        let req = Req {
            circuit_id,
            remote_id,
            relay_id,
            v4,
            client,
            wants_159,
            unicast: q.flags.unicast(),
            requested,
            server_id,
            req_pp,
            softwire,
            ctx,
            oro_br: q.oro_br,
            oro_bind_prefix: q.oro_bind_prefix,
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
            return Outcome {
                changes,
                ..Outcome::default()
            };
        }
        let subnet = match self.select(selector, wants_159) {
            Ok(s) => s,
            Err(true) => {
                self.counters.drop_needs_159 += 1;
                return Outcome::default();
            }
            Err(false) => {
                self.counters.drop_no_subnet += 1;
                return Outcome::default();
            }
        };
        let mut changes = Vec::new();
        let reply = match msg_type {
            v4msg::DISCOVER => self.discover(table, subnet, &req, now),
            v4msg::REQUEST => self.request(table, subnet, &req, now, &mut changes),
            v4msg::INFORM => {
                self.counters.informs += 1;
                Some(Reply::InformAck(subnet))
            }
            _ => {
                self.counters.drop_bad_v4_type += 1;
                None
            }
        };
        let reply = reply.and_then(|r| self.build(&q.hops, &req, r, now));
        self.maybe_compact_timers(table);
        if reply.is_some() {
            self.counters.replies += 1;
        }
        Outcome {
            reply,
            changes,
            ..Outcome::default()
        }
    }

    fn discover(
        &mut self,
        table: &LeaseShard,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
    ) -> Option<Reply> {
        // An active lease is offered again as is.
        if let Some(e) = self.dir.get(&r.client).copied() {
            if let Some(b) = self.binding(table, e.unit) {
                if b.state == dhcp_state::ACTIVE
                    && b.client_id.as_deref() == Some(&r.client[..])
                    && self.subnet_of(e.unit.addr) == Some(subnet)
                {
                    self.counters.offers += 1;
                    return Some(Reply::Offer(subnet, e.unit, b.softwire_src));
                }
            }
        }
        // A repeated DISCOVER keeps its offer.
        if let Some(o) = self.offers.get(&r.client) {
            if o.subnet == subnet {
                let unit = o.unit;
                self.counters.offers += 1;
                return Some(Reply::Offer(subnet, unit, None));
            }
            self.withdraw_offer(&r.client.clone());
        }
        let Some(unit) = self.allocate(table, subnet, r, now) else {
            self.counters.pool_exhausted += 1;
            return None;
        };
        let id = self.next_offer_id;
        self.next_offer_id += 1;
        self.offers
            .insert(r.client.clone(), Offer { id, unit, subnet });
        self.offered.insert(unit, r.client.clone());
        self.offer_ids.insert(id, r.client.clone());
        self.timers.push(Reverse((
            now.saturating_add(self.cfg.offer_hold),
            Timer::Offer(id),
        )));
        self.counters.offers += 1;
        Some(Reply::Offer(subnet, unit, None))
    }

    /// The client's ACTIVE lease, if any.
    fn active_of(&self, table: &LeaseShard, client: &[u8]) -> Option<(Unit, V4Binding)> {
        let e = self.dir.get(client)?;
        let b = self.binding(table, e.unit)?;
        (b.state == dhcp_state::ACTIVE && b.client_id.as_deref() == Some(client))
            .then_some((e.unit, b))
    }

    fn request(
        &mut self,
        table: &mut LeaseShard,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
    ) -> Option<Reply> {
        let ours = self.cfg.server_id;
        let pp_ok = |u: Unit| r.req_pp.is_none_or(|p| Some(p.psid) == u.psid);
        let in_subnet = |u: Unit| self.subnet_of(u.addr) == Some(subnet);
        if let Some(sid) = r.server_id {
            // SELECTING.
            if sid != ours {
                self.withdraw_offer(&r.client);
                self.counters.drop_other_server += 1;
                return None;
            }
            let Some(want) = r.requested else {
                self.counters.drop_malformed_v4 += 1;
                return None;
            };
            if let Some(o) = self.offers.get(&r.client).cloned() {
                if u32::from(want) == o.unit.addr && pp_ok(o.unit) && o.subnet == subnet {
                    return self.activate(table, subnet, o.unit, r, now, changes);
                }
                self.withdraw_offer(&r.client);
                return self.nak();
            }
            if let Some((u, _)) = self.active_of(table, &r.client) {
                if u.addr == u32::from(want) && pp_ok(u) && in_subnet(u) {
                    return self.activate(table, subnet, u, r, now, changes);
                }
            }
            return self.nak();
        }
        if let Some(want) = r.requested.filter(|_| r.v4.ciaddr.is_unspecified()) {
            // INIT-REBOOT.
            let Some(e) = self.dir.get(&r.client).copied() else {
                self.counters.silent += 1;
                return None;
            };
            if e.unit.addr == u32::from(want)
                && pp_ok(e.unit)
                && in_subnet(e.unit)
                && self.is_free_for(table, e.unit, &r.client, now)
            {
                return self.activate(table, subnet, e.unit, r, now, changes);
            }
            return self.nak();
        }
        if r.v4.ciaddr.is_unspecified() {
            self.counters.drop_malformed_v4 += 1;
            return None;
        }
        // RENEWING (U = 1) or REBINDING (U = 0).
        let ci = u32::from(r.v4.ciaddr);
        match self.dir.get(&r.client).copied() {
            Some(e)
                if e.unit.addr == ci
                    && pp_ok(e.unit)
                    && in_subnet(e.unit)
                    && self.is_free_for(table, e.unit, &r.client, now) =>
            {
                self.activate(table, subnet, e.unit, r, now, changes)
            }
            Some(_) => self.nak(),
            None if r.unicast => self.nak(),
            None => {
                self.counters.silent += 1;
                None
            }
        }
    }

    fn nak(&mut self) -> Option<Reply> {
        self.counters.naks += 1;
        Some(Reply::Nak)
    }

    /// Makes `unit` the client's ACTIVE lease (new or renewed) in the table, applying the
    /// option 109 rules, and records the [`Change`] (nothing is journaled here: the shell makes
    /// the changes durable before the reply leaves).
    fn activate(
        &mut self,
        table: &mut LeaseShard,
        subnet: usize,
        unit: Unit,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
    ) -> Option<Reply> {
        let s = self.cfg.subnets.get(subnet)?.clone();
        let active = self.active_of(table, &r.client);
        let renewing = active
            .as_ref()
            .filter(|(u, _)| *u == unit)
            .map(|(_, b)| b.clone());
        let old_sw = renewing.as_ref().and_then(|b| b.softwire_src);
        // The source the renewed lease holds a claim on (a restored duplicate does not).
        let old_held =
            old_sw.filter(|o| self.held.get(o).is_some_and(|(c, _)| c[..] == r.client[..]));
        let mut sw = r.softwire.or(old_sw);
        if let Some(new) = r.softwire {
            // Only a source the client does not hold yet is asked for (stops here, unchanged,
            // when its owner is another shard and no answer is at hand).
            let taken = !self.claim(new, &r.client)?;
            if taken {
                self.counters.softwire_conflicts += 1;
                if active.is_none() {
                    self.withdraw_offer(&r.client);
                    return self.nak();
                }
                // RFC 8539 §8.2: ACK with the existing binding.
                sw = old_held;
                if renewing.is_none() {
                    // The client's active lease is elsewhere; answer with it unchanged.
                    let (u, b) = active?;
                    let sub = self.subnet_of(u.addr)?;
                    self.counters.acks += 1;
                    return Some(Reply::Ack(sub, u, b.softwire_src));
                }
            } else if old_sw.is_some_and(|o| o != new) && self.cfg.softwire_min_update > 0 {
                let last = self.dir.get(&r.client).map_or(0, |e| e.sw_set_at);
                if now.saturating_sub(last) < self.cfg.softwire_min_update {
                    self.counters.softwire_too_early += 1;
                    sw = old_sw;
                }
            }
        }
        // Another ACTIVE lease of this client (for example on another subnet) is released.
        if let Some((u, mut b)) = active.filter(|(u, _)| *u != unit) {
            // Its source is freed unless the new lease keeps it.
            if let Some(o) = b.softwire_src.filter(|&o| Some(o) != sw) {
                self.drop_softwire(o, Some(&r.client));
            }
            b.state = dhcp_state::RELEASED;
            b.state_start = now;
            b.expires = now.saturating_add(self.cfg.expired_hold);
            if table.upsert_v4(b.clone()).is_ok() {
                self.timers.push(Reverse((b.expires, Timer::Hold(u))));
                changes.push(Change::V4 {
                    at: now,
                    kind: ChangeKind::Release,
                    binding: b,
                });
            }
        }
        // The previous holder of a reused unit loses its directory entry.
        if let Some(prev) = self.binding(table, unit) {
            if let Some(pc) = prev.client_id.filter(|c| c[..] != r.client[..]) {
                if self.dir.get(&pc).is_some_and(|e| e.unit == unit) {
                    self.dir.remove(&pc);
                }
            }
        }
        let v4 = &r.v4;
        let b = V4Binding {
            addr: Ipv4Addr::from(unit.addr),
            port_params: self.pp(subnet, unit),
            htype: v4.htype,
            chaddr: v4.chaddr.to_vec(),
            client_id: Some(r.client.clone()),
            state: dhcp_state::ACTIVE,
            cltt: now,
            state_start: renewing.as_ref().map_or(now, |b| b.state_start),
            expires: lease_end(s.lease_time, now),
            circuit_id: r.circuit_id.clone(),
            remote_id: r.remote_id.clone(),
            relay_id: r.relay_id.clone(),
            softwire_src: sw,
            v6: Some(r.ctx.clone()),
            data_source: 0,
        };
        if table.upsert_v4(b.clone()).is_err() {
            self.counters.table_errors += 1;
            return None;
        }
        let kind = match &renewing {
            None => ChangeKind::New,
            Some(_) if sw != old_sw => ChangeKind::SoftwireChange,
            Some(_) => ChangeKind::Renew,
        };
        if let Some(o) = old_sw.filter(|&o| Some(o) != sw) {
            self.drop_softwire(o, Some(&r.client));
        }
        // Held now: the new source claimed above (the old one, when kept, stays held).
        if let Some(f) = self.fresh.as_ref().filter(|f| Some(f.softwire) == sw) {
            self.held.insert(f.softwire, (f.client.clone(), f.seq));
        }
        let prev_set = self.dir.get(&r.client).map_or(0, |e| e.sw_set_at);
        let sw_set_at = if renewing.is_none() || sw != old_sw {
            now
        } else {
            prev_set
        };
        self.dir
            .insert(r.client.clone(), DirEntry { unit, sw_set_at });
        if self.offers.get(&r.client).is_some_and(|o| o.unit == unit) {
            self.withdraw_offer(&r.client);
        }
        if b.expires != INFINITE {
            self.timers.push(Reverse((b.expires, Timer::Lease(unit))));
        }
        changes.push(Change::V4 {
            at: now,
            kind,
            binding: b,
        });
        self.counters.acks += 1;
        Some(Reply::Ack(subnet, unit, sw))
    }

    /// The unit a DECLINE / RELEASE names: the client's unit at `addr` (PSID from 159 if given).
    fn named_unit(&self, r: &Req<'_>, addr: Option<Ipv4Addr>) -> Option<Unit> {
        let addr = u32::from(addr?);
        let e = self.dir.get(&r.client)?;
        (e.unit.addr == addr && r.req_pp.is_none_or(|p| Some(p.psid) == e.unit.psid))
            .then_some(e.unit)
    }

    fn decline(
        &mut self,
        table: &mut LeaseShard,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
    ) {
        if r.server_id != Some(self.cfg.server_id) {
            self.counters.silent += 1;
            return;
        }
        let unit = self
            .offers
            .get(&r.client)
            .map(|o| o.unit)
            .filter(|u| r.requested.is_some_and(|a| u32::from(a) == u.addr))
            .or_else(|| self.named_unit(r, r.requested));
        let Some(unit) = unit else {
            self.counters.silent += 1;
            return;
        };
        let Some(subnet) = self.subnet_of(unit.addr) else {
            return;
        };
        if let Some(b) = self.binding(table, unit) {
            if b.client_id.as_deref() != Some(&r.client[..]) && b.state == dhcp_state::ACTIVE {
                self.counters.silent += 1;
                return;
            }
            if let Some(sw) = b.softwire_src {
                self.drop_softwire(sw, Some(&r.client));
            }
        }
        self.withdraw_offer(&r.client);
        self.dir.remove(&r.client);
        let b = V4Binding {
            addr: Ipv4Addr::from(unit.addr),
            port_params: self.pp(subnet, unit),
            htype: r.v4.htype,
            chaddr: r.v4.chaddr.to_vec(),
            client_id: Some(r.client.clone()),
            state: dhcp_state::ABANDONED,
            cltt: now,
            state_start: now,
            expires: now.saturating_add(self.cfg.abandoned_hold),
            circuit_id: r.circuit_id.clone(),
            remote_id: r.remote_id.clone(),
            relay_id: r.relay_id.clone(),
            softwire_src: None,
            v6: Some(r.ctx.clone()),
            data_source: 0,
        };
        if table.upsert_v4(b.clone()).is_err() {
            self.counters.table_errors += 1;
            return;
        }
        self.timers.push(Reverse((b.expires, Timer::Hold(unit))));
        self.counters.declines += 1;
        changes.push(Change::V4 {
            at: now,
            kind: ChangeKind::Decline,
            binding: b,
        });
    }

    fn release(
        &mut self,
        table: &mut LeaseShard,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
    ) {
        let Some(unit) = self.named_unit(r, Some(r.v4.ciaddr)) else {
            self.counters.silent += 1;
            return;
        };
        let Some(mut b) = self.binding(table, unit).filter(|b| {
            b.state == dhcp_state::ACTIVE && b.client_id.as_deref() == Some(&r.client[..])
        }) else {
            self.counters.silent += 1;
            return;
        };
        if let Some(sw) = b.softwire_src {
            self.drop_softwire(sw, Some(&r.client));
        }
        b.state = dhcp_state::RELEASED;
        b.cltt = now;
        b.state_start = now;
        b.expires = now.saturating_add(self.cfg.expired_hold);
        if table.upsert_v4(b.clone()).is_err() {
            self.counters.table_errors += 1;
            return;
        }
        self.timers.push(Reverse((b.expires, Timer::Hold(unit))));
        self.counters.releases += 1;
        changes.push(Change::V4 {
            at: now,
            kind: ChangeKind::Release,
            binding: b,
        });
    }

    /// Encodes the DHCPv4 reply and wraps it for the wire.
    fn build(
        &self,
        hops: &[wire::Hop<'_>],
        r: &Req<'_>,
        reply: Reply,
        now: u32,
    ) -> Option<Vec<u8>> {
        let v4 = &r.v4;
        let (msg_type, subnet, unit, sw) = match reply {
            Reply::Offer(s, u, sw) => (v4msg::OFFER, Some(s), Some(u), sw),
            Reply::Ack(s, u, sw) => (v4msg::ACK, Some(s), Some(u), sw),
            Reply::InformAck(s) => (v4msg::ACK, Some(s), None, None),
            Reply::Nak => (v4msg::NAK, None, None, None),
        };
        let mut m = Message::new(BOOTREPLY, msg_type, v4.xid);
        m.set_hw_addr(v4.htype, v4.chaddr).ok()?;
        m.flags = v4.flags;
        m.giaddr = v4.giaddr;
        m.options.push(V4Option::ServerId(self.cfg.server_id));
        let sub = subnet.and_then(|s| self.cfg.subnets.get(s));
        if let (Some(s), Some(u)) = (sub, unit) {
            m.yiaddr = Ipv4Addr::from(u.addr);
            if msg_type == v4msg::ACK {
                m.ciaddr = v4.ciaddr;
            }
            // What the binding records (the same as a bulk query reports): 0xffffffff for an
            // infinite lease, else lease_time (less only past 2106, where expiry clamps).
            let lease = crate::proto::time::remaining(lease_end(s.lease_time, now), now);
            m.options.push(V4Option::LeaseTime(lease));
            m.options.push(V4Option::RenewalTime(s.renew_time.min(lease)));
            m.options.push(V4Option::RebindingTime(s.rebind_time.min(lease)));
            if let Some(mask) = s.mask {
                m.options.push(V4Option::SubnetMask(mask));
            }
            if let (Some(pp), true) = (subnet.and_then(|i| self.pp(i, u)), r.wants_159) {
                m.options.push(V4Option::V4PortParams(pp));
            }
            if msg_type == v4msg::ACK {
                if let Some(sw) = sw {
                    m.options.push(V4Option::Dhcp4o6SoftwireSource(sw));
                }
            }
        } else if let Some(s) = sub {
            // INFORM: no yiaddr, no lease time (RFC 2131 §4.3.5).
            m.ciaddr = v4.ciaddr;
            if let Some(mask) = s.mask {
                m.options.push(V4Option::SubnetMask(mask));
            }
        }
        if let Ok(cid) = ClientId::decode(&r.client) {
            m.options.push(V4Option::ClientId(cid));
        }
        let mut bytes = Vec::with_capacity(m.encoded_len());
        m.encode(&mut bytes).ok()?;
        let (brs, bind) = match (sub, unit) {
            (Some(s), Some(_)) => (
                s.br.filter(|_| r.oro_br).into_iter().collect::<Vec<_>>(),
                s.bind_prefix.filter(|_| r.oro_bind_prefix),
            ),
            _ => (Vec::new(), None),
        };
        wire::wrap_reply(hops, &bytes, &brs, bind)
    }
}
