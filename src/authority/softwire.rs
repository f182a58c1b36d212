//! The softwire directory (RFC 8539 §8): claims on softwire sources (option 109), decided by
//! each source's owner shard, so that two clients never hold one source (see the module docs of
//! [`crate::authority`]).

use std::net::Ipv6Addr;

use super::Authority;
#[cfg(doc)]
use super::Outcome;
use crate::lease::shard_of_softwire;

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

/// What [`Authority::claim`] found for a source that stands decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claimed {
    /// The client may hold the source.
    pub granted: bool,
    /// The claim granted now that the client did not hold before: it becomes held when the
    /// lease keeps the source, else it goes back to its owner.
    pub fresh: Option<SoftwireClaim>,
}

impl Authority {
    /// This shard's client `cid` no longer holds `sw`: forget it here and free it at its
    /// owner (inline when that is this shard).
    pub(super) fn drop_softwire(&mut self, sw: Ipv6Addr, cid: Option<&[u8]>) {
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
    pub(super) fn free_claim(&mut self, claim: SoftwireClaim) {
        if claim.owner(self.shards) == self.shard {
            self.free_softwire(&claim);
        } else if !self.frees.contains(&claim) {
            self.frees.push(claim);
        }
    }

    pub(super) fn new_claim(&mut self, sw: Ipv6Addr, client: &[u8]) -> SoftwireClaim {
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

    /// Whether a claim on `sw` for `client` stands: a client's own held source stands; one this
    /// shard owns is decided at once; one another shard owns is taken from that owner's
    /// `answer` when it is about this source and client. `Err(claim)` when it is none of these
    /// (the claim to ask the owner; counted in `softwire_remote_claims`).
    pub(super) fn claim(
        &mut self,
        sw: Ipv6Addr,
        client: &[u8],
        answer: Option<&ClaimAnswer>,
    ) -> Result<Claimed, SoftwireClaim> {
        if self.held.get(&sw).is_some_and(|(c, _)| c[..] == client[..]) {
            return Ok(Claimed {
                granted: true,
                fresh: None,
            });
        }
        let (claim, granted) = if shard_of_softwire(sw, self.shards) == self.shard {
            let c = self.new_claim(sw, client);
            let g = self.claim_softwire(&c);
            (c, g)
        } else if let Some(a) =
            answer.filter(|a| a.claim.softwire == sw && a.claim.client[..] == client[..])
        {
            (a.claim.clone(), a.granted)
        } else {
            self.counters.softwire_remote_claims += 1;
            return Err(self.new_claim(sw, client));
        };
        Ok(Claimed {
            granted,
            fresh: granted.then_some(claim),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{cfg, cid};
    use super::*;

    /// A source whose owner is shard `owner` of `shards`.
    fn source_of(owner: usize, shards: usize) -> Ipv6Addr {
        (1u16..)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
            .find(|&sw| shard_of_softwire(sw, shards) == owner)
            .expect("a source")
    }

    fn claim(sw: Ipv6Addr, client: u32, seq: u64) -> SoftwireClaim {
        SoftwireClaim {
            softwire: sw,
            client: cid(client),
            seq,
        }
    }

    #[test]
    fn the_owner_grants_one_client_per_source_and_ignores_stale_frees() {
        let mut a = Authority::new(&cfg(), 0, 1);
        let sw = source_of(0, 1);
        assert!(a.claim_softwire(&claim(sw, 1, 1)));
        assert!(
            !a.claim_softwire(&claim(sw, 2, 1)),
            "another client is refused"
        );
        // The holder asks again with a higher number: granted, and that number stands.
        assert!(a.claim_softwire(&claim(sw, 1, 3)));
        // A free overtaken by the newer claim does not drop it.
        a.free_softwire(&claim(sw, 1, 1));
        assert_eq!(a.softwire_holder(&sw), Some(&cid(1)[..]));
        // Nor does another client's free.
        a.free_softwire(&claim(sw, 2, 3));
        assert_eq!(a.softwire_claims_owned(), 1);
        a.free_softwire(&claim(sw, 1, 3));
        assert_eq!(a.softwire_holder(&sw), None);
        assert!(a.claim_softwire(&claim(sw, 2, 1)));
        assert_eq!(a.counters.softwire_claims, 4);
    }

    #[test]
    fn a_local_claim_is_decided_inline_and_fresh_until_held() {
        let mut a = Authority::new(&cfg(), 0, 1);
        let sw = source_of(0, 1);
        let got = a.claim(sw, &cid(1), None).expect("local");
        assert!(got.granted);
        let fresh = got.fresh.expect("fresh");
        assert_eq!((fresh.softwire, &fresh.client[..]), (sw, &cid(1)[..]));
        // Another client: refused, nothing fresh.
        let got = a.claim(sw, &cid(2), None).expect("local");
        assert_eq!(
            got,
            Claimed {
                granted: false,
                fresh: None
            }
        );
        // Once held, the holder's claim stands without asking.
        a.held.insert(sw, (cid(1), fresh.seq));
        let got = a.claim(sw, &cid(1), None).expect("held");
        assert_eq!(
            got,
            Claimed {
                granted: true,
                fresh: None
            }
        );
    }

    #[test]
    fn a_remote_claim_stops_until_its_owner_answers() {
        let mut a = Authority::new(&cfg(), 0, 2);
        let sw = source_of(1, 2);
        let asked = a.claim(sw, &cid(1), None).expect_err("asks the owner");
        assert_eq!((asked.softwire, asked.owner(2)), (sw, 1));
        assert_eq!(a.counters.softwire_remote_claims, 1);
        // An answer to another client's claim does not count for this one.
        let other = ClaimAnswer {
            claim: claim(sw, 9, 1),
            granted: true,
        };
        assert!(a.claim(sw, &cid(1), Some(&other)).is_err());
        // The owner's answer decides.
        let yes = ClaimAnswer {
            claim: asked.clone(),
            granted: true,
        };
        let got = a.claim(sw, &cid(1), Some(&yes)).expect("answered");
        assert_eq!(
            got,
            Claimed {
                granted: true,
                fresh: Some(asked.clone())
            }
        );
        let no = ClaimAnswer {
            claim: asked,
            granted: false,
        };
        let got = a.claim(sw, &cid(1), Some(&no)).expect("answered");
        assert!(!got.granted && got.fresh.is_none());
        // Nothing was claimed here: the owner is the other shard.
        assert_eq!(a.softwire_claims_owned(), 0);
    }

    #[test]
    fn freeing_is_inline_for_local_sources_and_queued_for_remote_ones() {
        let mut a = Authority::new(&cfg(), 0, 2);
        let local = source_of(0, 2);
        let remote = source_of(1, 2);
        let lc = a
            .claim(local, &cid(1), None)
            .expect("local")
            .fresh
            .expect("fresh");
        a.held.insert(local, (cid(1), lc.seq));
        a.held.insert(remote, (cid(1), 7));
        a.drop_softwire(local, Some(&cid(1)));
        assert_eq!(a.softwire_holder(&local), None);
        // Not the holder: nothing happens.
        a.drop_softwire(remote, Some(&cid(2)));
        assert!(a.take_softwire_frees().is_empty());
        a.drop_softwire(remote, Some(&cid(1)));
        assert_eq!(a.take_softwire_frees(), vec![claim(remote, 1, 7)]);
        assert!(a.held.is_empty());
    }
}
