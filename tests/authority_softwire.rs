//! RFC 8539 §8.2 softwire-source uniqueness across shards, sans-io: several [`Authority`]s (one
//! per shard) driven the way the shell drives them: a datagram goes to its client's shard, a
//! [`Outcome::needs_claim`] is decided by the source's owner shard
//! ([`Authority::claim_softwire`]) and the datagram handled again with the answer
//! ([`Authority::handle_claimed`]); frees go to the owners; restore re-registers the active
//! sources at their owners.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::rfc4361_client_id as cid;

use leasequery::authority::{
    client_shard, Authority, AuthorityConfig, ClaimAnswer, Outcome, SoftwireClaim, ValidConfig,
};
use leasequery::lease::{
    shard_of_client, shard_of_softwire, LeaseTable, ScanStep, V4Binding, V4Query,
};
use leasequery::proto::codes::v4msg;
use leasequery::proto::v4::{ClientId, Message as V4Message, V4Option};
use leasequery::proto::v6::{Message as V6Message, V6Option};

const NOW: u32 = 1_767_225_600;
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn src() -> Ipv6Addr {
    "::1".parse().unwrap()
}

/// A DHCPV4-QUERY (direct) carrying a DHCPv4 message of client `n`.
fn query(
    n: u32,
    t: u8,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    sw: Option<Ipv6Addr>,
) -> Vec<u8> {
    let mut m = V4Message::new(1, t, 0x1000 + n);
    m.set_hw_addr(1, &[2, 0, 0, 0, (n >> 8) as u8, n as u8])
        .unwrap();
    m.ciaddr = ciaddr;
    m.options
        .push(V4Option::ClientId(ClientId::decode(&cid(n)).unwrap()));
    m.options
        .push(V4Option::ParameterRequestList(vec![1, 3, 51]));
    if let Some(a) = requested {
        m.options.push(V4Option::RequestedIp(a));
        if ciaddr.is_unspecified() {
            m.options.push(V4Option::ServerId(SERVER));
        }
    }
    if let Some(s) = sw {
        m.options.push(V4Option::Dhcp4o6SoftwireSource(s));
    }
    let mut v4 = Vec::new();
    m.encode(&mut v4).unwrap();
    // The U flag (RFC 7341 §6.2) when the client has an address (it would unicast).
    leasequery::lwb4::dhcpv4_query(v4, !ciaddr.is_unspecified())
}

fn reply_v4(o: &Outcome) -> Option<V4Message> {
    let r = V6Message::decode(o.reply.as_ref()?).unwrap();
    r.options.iter().find_map(|x| match x {
        V6Option::Dhcpv4Msg(b) => Some(V4Message::decode(b).unwrap()),
        _ => None,
    })
}

fn sw_of(m: &V4Message) -> Option<Ipv6Addr> {
    match m.option(109) {
        Some(V4Option::Dhcp4o6SoftwireSource(a)) => Some(*a),
        _ => None,
    }
}

/// A client number whose shard is `shard` (of `shards`), from `from` on.
fn client_on(shard: usize, shards: usize, from: u32) -> u32 {
    (from..)
        .find(|&n| shard_of_client(&cid(n), shards) == shard)
        .unwrap()
}

/// A softwire source owned by `shard` (of `shards`).
fn sw_on(shard: usize, shards: usize, from: u16) -> Ipv6Addr {
    (from..)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, i))
        .find(|&a| shard_of_softwire(a, shards) == shard)
        .unwrap()
}

/// The shards of one server, driven like the shell drives them.
struct Cluster {
    cfg: ValidConfig,
    a: Vec<Authority>,
    t: Vec<LeaseTable>,
}

impl Cluster {
    fn new(cfg: &ValidConfig, shards: usize) -> Cluster {
        Cluster {
            cfg: cfg.clone(),
            a: (0..shards)
                .map(|s| Authority::new(cfg, s, shards))
                .collect(),
            t: (0..shards).map(|_| LeaseTable::new()).collect(),
        }
    }

    fn n(&self) -> usize {
        self.a.len()
    }

    fn claim(&mut self, c: &SoftwireClaim) -> bool {
        let o = c.owner(self.n());
        self.a[o].claim_softwire(c)
    }

    fn free(&mut self, frees: &[SoftwireClaim]) {
        for c in frees {
            let o = c.owner(self.n());
            assert_ne!(
                o,
                client_shard_of(&c.client, self.n()),
                "local frees are inline"
            );
            self.a[o].free_softwire(c);
        }
    }

    /// First pass only (a claim may be left pending).
    fn first(&mut self, d: &[u8], now: u32) -> (usize, Outcome) {
        let s = client_shard(d, self.n()).unwrap();
        let o = self.a[s].handle(&mut self.t[s], d, src(), now);
        (s, o)
    }

    /// Second pass with the answer, frees sent.
    fn resume(
        &mut self,
        s: usize,
        d: &[u8],
        now: u32,
        claim: SoftwireClaim,
        granted: bool,
    ) -> Outcome {
        let o = self.a[s].handle_claimed(
            &mut self.t[s],
            d,
            src(),
            now,
            Some(ClaimAnswer { claim, granted }),
        );
        assert!(o.needs_claim.is_none(), "one claim per datagram");
        self.free(&o.frees);
        o
    }

    fn send(&mut self, d: &[u8], now: u32) -> Outcome {
        let (s, o) = self.first(d, now);
        match o.needs_claim.clone() {
            None => {
                self.free(&o.frees);
                o
            }
            Some(c) => {
                assert!(
                    o.reply.is_none() && o.changes.is_empty(),
                    "stopped unchanged"
                );
                let g = self.claim(&c);
                self.resume(s, d, now, c, g)
            }
        }
    }

    /// DISCOVER + REQUEST with `sw`; the answer to the REQUEST.
    fn dora(&mut self, n: u32, sw: Ipv6Addr, now: u32) -> V4Message {
        let off = reply_v4(&self.send(
            &query(n, v4msg::DISCOVER, Ipv4Addr::UNSPECIFIED, None, None),
            now,
        ))
        .expect("an offer");
        reply_v4(&self.send(
            &query(
                n,
                v4msg::REQUEST,
                Ipv4Addr::UNSPECIFIED,
                Some(off.yiaddr),
                Some(sw),
            ),
            now,
        ))
        .expect("an answer")
    }

    fn holder(&self, sw: Ipv6Addr) -> Option<Vec<u8>> {
        self.a[shard_of_softwire(sw, self.n())]
            .softwire_holder(&sw)
            .map(<[u8]>::to_vec)
    }

    fn conflicts(&self) -> u64 {
        self.a.iter().map(|a| a.counters().softwire_conflicts).sum()
    }

    /// A fresh cluster restored from these tables, registrations done the shell's way.
    fn restored(&self) -> Cluster {
        let mut c = Cluster::new(&self.cfg, self.n());
        for (i, t) in self.t.iter().enumerate() {
            c.t[i] = copy(t);
        }
        c.restore_all();
        c
    }

    fn restore_all(&mut self) {
        for s in 0..self.n() {
            self.a[s].restore(&self.t[s]);
        }
        for s in 0..self.n() {
            for r in self.a[s].take_registrations() {
                assert_ne!(r.owner(self.n()), s, "local registrations are inline");
                let g = self.claim(&r);
                self.a[s].settle_registration(r, g);
            }
        }
    }
}

/// A copy of a table's DHCPv4 bindings (what journal replay would load).
fn copy(t: &LeaseTable) -> LeaseTable {
    let mut out = LeaseTable::new();
    let q = V4Query::all();
    let mut cur = t.start_v4(&q);
    let mut all = Vec::new();
    while t.scan_v4(&q, &mut cur, usize::MAX, |r| {
        all.push(V4Binding::from_record(&r));
        true
    }) != ScanStep::Done
    {}
    for b in all {
        out.upsert_v4(b).unwrap();
    }
    out
}

fn client_shard_of(client: &[u8], shards: usize) -> usize {
    shard_of_client(client, shards)
}

fn cfg() -> ValidConfig {
    AuthorityConfig::demo().validate().unwrap()
}

#[test]
fn the_same_source_is_refused_to_a_client_of_another_shard_until_released() {
    // Both placements of the owner: the first client's shard, and the second client's.
    for owner in 0..2 {
        let mut c = Cluster::new(&cfg(), 2);
        let a = client_on(0, 2, 1);
        let b = client_on(1, 2, 1);
        let x = sw_on(owner, 2, 1);
        let ack = c.dora(a, x, NOW);
        assert_eq!(ack.message_type(), Some(v4msg::ACK));
        assert_eq!(sw_of(&ack), Some(x));
        assert_eq!(c.holder(x), Some(cid(a)));
        let nak = c.dora(b, x, NOW);
        assert_eq!(nak.message_type(), Some(v4msg::NAK), "owner {owner}");
        assert_eq!(c.conflicts(), 1);
        assert_eq!(
            c.a[1].counters().softwire_conflicts,
            1,
            "counted at b's shard"
        );
        // a releases: x is free at its owner, b takes it.
        let o = c.send(&query(a, v4msg::RELEASE, ack.yiaddr, None, None), NOW + 1);
        assert!(o.reply.is_none());
        assert_eq!(c.holder(x), None);
        let ack_b = c.dora(b, x, NOW + 2);
        assert_eq!(ack_b.message_type(), Some(v4msg::ACK));
        assert_eq!(sw_of(&ack_b), Some(x));
        assert_eq!(c.holder(x), Some(cid(b)));
    }
}

#[test]
fn renewals_with_the_held_source_ask_no_claim() {
    let mut c = Cluster::new(&cfg(), 2);
    let a = client_on(0, 2, 1);
    let x = sw_on(1, 2, 1);
    let ack = c.dora(a, x, NOW);
    assert_eq!(c.a[0].counters().softwire_remote_claims, 1);
    for i in 1..5 {
        let (_, o) = c.first(
            &query(a, v4msg::REQUEST, ack.yiaddr, None, Some(x)),
            NOW + i,
        );
        assert!(o.needs_claim.is_none(), "fast path");
        assert_eq!(reply_v4(&o).unwrap().message_type(), Some(v4msg::ACK));
    }
    assert_eq!(c.a[0].counters().softwire_remote_claims, 1);
}

#[test]
fn concurrent_claims_from_two_shards_end_with_one_winner() {
    let mut c = Cluster::new(&cfg(), 3);
    let a = client_on(0, 3, 1);
    let b = client_on(1, 3, 1);
    let x = sw_on(2, 3, 1);
    let offer = |c: &mut Cluster, n: u32| {
        reply_v4(&c.send(
            &query(n, v4msg::DISCOVER, Ipv4Addr::UNSPECIFIED, None, None),
            NOW,
        ))
        .unwrap()
        .yiaddr
    };
    let (ya, yb) = (offer(&mut c, a), offer(&mut c, b));
    let da = query(a, v4msg::REQUEST, Ipv4Addr::UNSPECIFIED, Some(ya), Some(x));
    let db = query(b, v4msg::REQUEST, Ipv4Addr::UNSPECIFIED, Some(yb), Some(x));
    // Both shards stop for the claim before either is decided.
    let (sa, oa) = c.first(&da, NOW);
    let (sb, ob) = c.first(&db, NOW);
    let (ca, cb) = (oa.needs_claim.unwrap(), ob.needs_claim.unwrap());
    // The owner serializes them: b's arrives first.
    let gb = c.claim(&cb);
    let ga = c.claim(&ca);
    assert!(gb && !ga);
    let ra = reply_v4(&c.resume(sa, &da, NOW, ca, ga)).unwrap();
    let rb = reply_v4(&c.resume(sb, &db, NOW, cb, gb)).unwrap();
    assert_eq!(ra.message_type(), Some(v4msg::NAK));
    assert_eq!(rb.message_type(), Some(v4msg::ACK));
    assert_eq!(sw_of(&rb), Some(x));
    assert_eq!(c.holder(x), Some(cid(b)));
}

#[test]
fn a_granted_claim_the_lease_does_not_keep_is_freed() {
    let mut cfg = AuthorityConfig::demo();
    cfg.softwire_min_update = 60;
    let mut c = Cluster::new(&cfg.validate().unwrap(), 2);
    let a = client_on(0, 2, 1);
    let x = sw_on(1, 2, 1);
    let y = sw_on(1, 2, x.segments()[7] + 1);
    let ack = c.dora(a, x, NOW);
    // Too early an update to y: ACKed with x; the claim on y is handed back.
    let r = reply_v4(&c.send(
        &query(a, v4msg::REQUEST, ack.yiaddr, None, Some(y)),
        NOW + 5,
    ))
    .unwrap();
    assert_eq!(sw_of(&r), Some(x));
    assert_eq!(c.holder(y), None);
    assert_eq!(c.holder(x), Some(cid(a)));
    // In time: y is held, x freed.
    let r = reply_v4(&c.send(
        &query(a, v4msg::REQUEST, ack.yiaddr, None, Some(y)),
        NOW + 100,
    ))
    .unwrap();
    assert_eq!(sw_of(&r), Some(y));
    assert_eq!(c.holder(y), Some(cid(a)));
    assert_eq!(c.holder(x), None);
    // Expiry frees y (handed to the shell by take_softwire_frees).
    let changes = c.a[0].expire(&mut c.t[0], NOW + 1_000_000);
    assert_eq!(changes.len(), 1);
    let frees = c.a[0].take_softwire_frees();
    assert_eq!(frees.len(), 1);
    c.free(&frees);
    assert_eq!(c.holder(y), None);
    assert_eq!(
        c.a.iter().map(|a| a.softwire_claims_owned()).sum::<usize>(),
        0
    );
}

#[test]
fn restore_re_registers_active_sources_at_their_owners() {
    let mut c = Cluster::new(&cfg(), 2);
    let a = client_on(0, 2, 1);
    let b = client_on(1, 2, 1);
    let x = sw_on(1, 2, 1); // owned by b's shard, held by a
    let y = sw_on(0, 2, 1); // owned by a's shard, held by b
    let ack_a = c.dora(a, x, NOW);
    assert_eq!(ack_a.message_type(), Some(v4msg::ACK));
    assert_eq!(c.dora(b, y, NOW).message_type(), Some(v4msg::ACK));
    let mut r = c.restored();
    assert_eq!(r.holder(x), Some(cid(a)));
    assert_eq!(r.holder(y), Some(cid(b)));
    // A third client of either shard is refused both.
    for shard in 0..2 {
        let n = client_on(shard, 2, 100);
        for sw in [x, y] {
            assert_eq!(r.dora(n, sw, NOW + 1).message_type(), Some(v4msg::NAK));
        }
    }
    // The restored holder renews without a claim.
    let ya = ack_a.yiaddr;
    let (_, o) = r.first(&query(a, v4msg::REQUEST, ya, None, Some(x)), NOW + 2);
    assert!(o.needs_claim.is_none());
    assert_eq!(reply_v4(&o).unwrap().message_type(), Some(v4msg::ACK));
}

#[test]
fn restored_duplicates_keep_one_holder() {
    // Two servers' data that both gave x away (a's and b's shards) restored together.
    let a = client_on(0, 2, 1);
    let b = client_on(1, 2, 1);
    let x = sw_on(1, 2, 1);
    let mut c1 = Cluster::new(&cfg(), 2);
    let mut c2 = Cluster::new(&cfg(), 2);
    let ack_a = c1.dora(a, x, NOW);
    let ack_b = c2.dora(b, x, NOW);
    assert_eq!(sw_of(&ack_b), Some(x));
    let mut r = Cluster::new(&cfg(), 2);
    r.t[0] = copy(&c1.t[0]);
    r.t[1] = copy(&c2.t[1]);
    r.restore_all();
    let holder = r.holder(x).expect("one holder");
    let conflicts: u64 =
        r.a.iter()
            .map(|a| a.counters().softwire_restore_conflicts)
            .sum();
    assert_eq!(conflicts, 1);
    // The loser's next REQUEST for x is a conflict: ACKed without the source.
    let (loser, addr) = if holder == cid(a) {
        (b, ack_b.yiaddr)
    } else {
        (a, ack_a.yiaddr)
    };
    let r2 =
        reply_v4(&r.send(&query(loser, v4msg::REQUEST, addr, None, Some(x)), NOW + 1)).unwrap();
    assert_eq!(r2.message_type(), Some(v4msg::ACK));
    assert_eq!(sw_of(&r2), None);
    assert_eq!(r.holder(x), Some(holder));
}

#[test]
fn one_shard_decides_every_claim_inline() {
    let mut c = Cluster::new(&cfg(), 1);
    let x = sw_on(0, 1, 1);
    assert_eq!(c.dora(1, x, NOW).message_type(), Some(v4msg::ACK));
    let (_, o) = c.first(
        &query(2, v4msg::DISCOVER, Ipv4Addr::UNSPECIFIED, None, None),
        NOW,
    );
    let y = reply_v4(&o).unwrap().yiaddr;
    let (_, o) = c.first(
        &query(2, v4msg::REQUEST, Ipv4Addr::UNSPECIFIED, Some(y), Some(x)),
        NOW,
    );
    assert!(o.needs_claim.is_none() && o.frees.is_empty());
    assert_eq!(reply_v4(&o).unwrap().message_type(), Some(v4msg::NAK));
    let r = c.restored();
    assert_eq!(r.holder(x), Some(cid(1)));
}

/// A free overtaken by the same client's new claim on that source (the client changed its
/// source x -> y -> x; the free of x was sent after the first change's journal commit, the new
/// claim on x went out before it): the stale free must not drop the new claim.
#[test]
fn a_free_overtaken_by_a_new_claim_of_the_same_client_is_ignored() {
    let mut c = Cluster::new(&cfg(), 2);
    let a = client_on(0, 2, 1);
    let x = sw_on(1, 2, 1);
    let y = sw_on(0, 2, 1);
    let ack = c.dora(a, x, NOW);
    // x -> y: the free of x is held back (the shell sends it after the journal commit).
    let (s, o) = c.first(
        &query(a, v4msg::REQUEST, ack.yiaddr, None, Some(y)),
        NOW + 1,
    );
    assert_eq!(s, 0);
    assert!(o.needs_claim.is_none(), "y is owned by a's shard");
    assert_eq!(sw_of(&reply_v4(&o).unwrap()), Some(y));
    let late_free = o.frees.clone();
    assert_eq!(late_free.len(), 1);
    assert_eq!(late_free[0].softwire, x);
    // y -> x before that free arrives: claimed at x's owner (still a's, so granted).
    let r = reply_v4(&c.send(
        &query(a, v4msg::REQUEST, ack.yiaddr, None, Some(x)),
        NOW + 2,
    ))
    .unwrap();
    assert_eq!(sw_of(&r), Some(x));
    // Now the stale free arrives: ignored.
    c.free(&late_free);
    assert_eq!(c.holder(x), Some(cid(a)));
    assert_eq!(c.holder(y), None);
    // So another client is still refused x.
    let b = client_on(1, 2, 1);
    assert_eq!(c.dora(b, x, NOW + 3).message_type(), Some(v4msg::NAK));
    // And a's release frees x for real (the current number).
    c.send(&query(a, v4msg::RELEASE, ack.yiaddr, None, None), NOW + 4);
    assert_eq!(c.holder(x), None);
}

/// Two copies of one REQUEST (a retransmission) both claim at the owner before either is
/// resumed: the lease holds the source once, and its release frees it at the owner.
#[test]
fn a_retransmitted_request_claiming_twice_leaves_no_stale_claim() {
    let mut c = Cluster::new(&cfg(), 2);
    let a = client_on(0, 2, 1);
    let x = sw_on(1, 2, 1);
    let off = reply_v4(&c.send(
        &query(a, v4msg::DISCOVER, Ipv4Addr::UNSPECIFIED, None, None),
        NOW,
    ))
    .unwrap();
    let d = query(
        a,
        v4msg::REQUEST,
        Ipv4Addr::UNSPECIFIED,
        Some(off.yiaddr),
        Some(x),
    );
    let (s, o1) = c.first(&d, NOW);
    let (_, o2) = c.first(&d, NOW);
    let (c1, c2) = (o1.needs_claim.unwrap(), o2.needs_claim.unwrap());
    assert!(
        c.claim(&c2) && c.claim(&c1),
        "the same client: both granted"
    );
    let r1 = reply_v4(&c.resume(s, &d, NOW, c1, true)).unwrap();
    let r2 = reply_v4(&c.resume(s, &d, NOW, c2, true)).unwrap();
    assert_eq!(
        (r1.message_type(), r2.message_type()),
        (Some(v4msg::ACK), Some(v4msg::ACK))
    );
    assert_eq!(c.holder(x), Some(cid(a)));
    c.send(&query(a, v4msg::RELEASE, off.yiaddr, None, None), NOW + 1);
    assert_eq!(c.holder(x), None, "no claim left behind");
}
