//! DHCP states (RFC 2131 §4.3, RFC 7341, RFC 8539 §8): DISCOVER and its offer, REQUEST in
//! SELECTING, INIT-REBOOT, RENEWING and REBINDING, DECLINE and RELEASE; the lease each makes
//! ACTIVE, RELEASED or ABANDONED in the table, the [`Change`]s, and the encoded reply.

use std::cmp::Reverse;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::decode::Req;
use super::pools::Unit;
use super::softwire::{ClaimAnswer, SoftwireClaim};
use super::timers::{lease_end, Timer, INFINITE};
use super::{wire, Authority, DirEntry, ValidSubnet};
use crate::lease::{Change, ChangeKind, LeaseTable, V4Binding};
use crate::proto::codes::{dhcp_state, v4msg, BOOTREPLY};
use crate::proto::v4::{ClientId, Message, V4Option};

/// What the lease logic decided for one message: the reply to encode, and the claim granted
/// during it that the client did not hold before (the caller frees it again when the lease did
/// not keep it).
pub(super) struct Decided {
    pub(super) reply: Option<ServerReply>,
    pub(super) fresh: Option<SoftwireClaim>,
}

impl From<Option<ServerReply>> for Decided {
    fn from(reply: Option<ServerReply>) -> Decided {
        Decided { reply, fresh: None }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Offer {
    pub(super) id: u64,
    pub(super) unit: Unit,
    pub(super) subnet: usize,
}

pub(super) enum ServerReply {
    Offer(usize, Unit, Option<Ipv6Addr>),
    Ack(usize, Unit, Option<Ipv6Addr>),
    Nak,
    InformAck(usize),
}

impl Authority {
    pub(super) fn withdraw_offer(&mut self, cid: &[u8]) -> Option<Offer> {
        let o = self.offers.remove(cid)?;
        self.offered.remove(&o.unit);
        self.offer_ids.remove(&o.id);
        Some(o)
    }

    pub(super) fn discover(
        &mut self,
        table: &LeaseTable,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
    ) -> Option<ServerReply> {
        // An active lease is offered again as is.
        if let Some(e) = self.dir.get(&r.client).copied() {
            if let Some(b) = self.binding(table, e.unit) {
                if b.state == dhcp_state::ACTIVE
                    && b.client_id.as_deref() == Some(&r.client[..])
                    && self.subnet_of(e.unit.addr) == Some(subnet)
                {
                    self.counters.offers += 1;
                    return Some(ServerReply::Offer(subnet, e.unit, b.softwire_src));
                }
            }
        }
        // A repeated DISCOVER keeps its offer.
        if let Some(o) = self.offers.get(&r.client) {
            if o.subnet == subnet {
                let unit = o.unit;
                self.counters.offers += 1;
                return Some(ServerReply::Offer(subnet, unit, None));
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
        Some(ServerReply::Offer(subnet, unit, None))
    }

    /// The client's ACTIVE lease, if any.
    pub(super) fn active_of(&self, table: &LeaseTable, client: &[u8]) -> Option<(Unit, V4Binding)> {
        let e = self.dir.get(client)?;
        let b = self.binding(table, e.unit)?;
        (b.state == dhcp_state::ACTIVE && b.client_id.as_deref() == Some(client))
            .then_some((e.unit, b))
    }

    pub(super) fn request(
        &mut self,
        table: &mut LeaseTable,
        subnet: usize,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
        answer: Option<&ClaimAnswer>,
    ) -> Result<Decided, SoftwireClaim> {
        let ours = self.cfg.server_id;
        let pp_ok = |u: Unit| r.req_pp.is_none_or(|p| Some(p.psid) == u.psid);
        let in_subnet = |u: Unit| self.subnet_of(u.addr) == Some(subnet);
        if let Some(sid) = r.server_id {
            // SELECTING.
            if sid != ours {
                self.withdraw_offer(&r.client);
                self.counters.drop_other_server += 1;
                return Ok(None.into());
            }
            let Some(want) = r.requested else {
                self.counters.drop_malformed_v4 += 1;
                return Ok(None.into());
            };
            if let Some(o) = self.offers.get(&r.client).cloned() {
                if u32::from(want) == o.unit.addr && pp_ok(o.unit) && o.subnet == subnet {
                    return self.activate(table, subnet, o.unit, r, now, changes, answer);
                }
                self.withdraw_offer(&r.client);
                return Ok(self.nak().into());
            }
            if let Some((u, _)) = self.active_of(table, &r.client) {
                if u.addr == u32::from(want) && pp_ok(u) && in_subnet(u) {
                    return self.activate(table, subnet, u, r, now, changes, answer);
                }
            }
            return Ok(self.nak().into());
        }
        if let Some(want) = r.requested.filter(|_| r.v4.ciaddr.is_unspecified()) {
            // INIT-REBOOT.
            let Some(e) = self.dir.get(&r.client).copied() else {
                self.counters.silent += 1;
                return Ok(None.into());
            };
            if e.unit.addr == u32::from(want)
                && pp_ok(e.unit)
                && in_subnet(e.unit)
                && self.is_free_for(table, e.unit, &r.client, now)
            {
                return self.activate(table, subnet, e.unit, r, now, changes, answer);
            }
            return Ok(self.nak().into());
        }
        if r.v4.ciaddr.is_unspecified() {
            self.counters.drop_malformed_v4 += 1;
            return Ok(None.into());
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
                self.activate(table, subnet, e.unit, r, now, changes, answer)
            }
            Some(_) => Ok(self.nak().into()),
            None if r.unicast => Ok(self.nak().into()),
            None => {
                self.counters.silent += 1;
                Ok(None.into())
            }
        }
    }

    pub(super) fn nak(&mut self) -> Option<ServerReply> {
        self.counters.naks += 1;
        Some(ServerReply::Nak)
    }

    /// Makes `unit` the client's ACTIVE lease (new or renewed) in the table, applying the
    /// option 109 rules, and records the [`Change`] (nothing is journaled here: the shell makes
    /// the changes durable before the reply leaves). `Err` (nothing changed) when the source
    /// the client asks for needs its owner shard's decision and `answer` is not it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn activate(
        &mut self,
        table: &mut LeaseTable,
        subnet: usize,
        unit: Unit,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
        answer: Option<&ClaimAnswer>,
    ) -> Result<Decided, SoftwireClaim> {
        let Some(s) = self.cfg.subnets.get(subnet).cloned() else {
            return Ok(None.into());
        };
        // Only a source the client does not hold yet is asked for (stops here, unchanged,
        // when its owner is another shard and no answer is at hand).
        let claimed = match r.softwire {
            Some(new) => Some(self.claim(new, &r.client, answer)?),
            None => None,
        };
        let fresh = claimed.as_ref().and_then(|c| c.fresh.clone());
        let reply = self.activate_claimed(
            table,
            (subnet, &s),
            unit,
            r,
            now,
            changes,
            claimed.map(|c| c.granted),
            fresh.as_ref(),
        );
        Ok(Decided { reply, fresh })
    }

    /// [`Authority::activate`] once the asked source is decided (`granted`, `None` when none
    /// was asked); `fresh` is the claim granted now, held from here when the lease keeps it.
    #[allow(clippy::too_many_arguments)]
    fn activate_claimed(
        &mut self,
        table: &mut LeaseTable,
        (subnet, s): (usize, &ValidSubnet),
        unit: Unit,
        r: &Req<'_>,
        now: u32,
        changes: &mut Vec<Change>,
        granted: Option<bool>,
        fresh: Option<&SoftwireClaim>,
    ) -> Option<ServerReply> {
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
        if let (Some(new), Some(granted)) = (r.softwire, granted) {
            if !granted {
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
                    return Some(ServerReply::Ack(sub, u, b.softwire_src));
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
        if let Some(f) = fresh.filter(|f| Some(f.softwire) == sw) {
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
        Some(ServerReply::Ack(subnet, unit, sw))
    }

    /// The unit a DECLINE / RELEASE names: the client's unit at `addr` (PSID from 159 if given).
    pub(super) fn named_unit(&self, r: &Req<'_>, addr: Option<Ipv4Addr>) -> Option<Unit> {
        let addr = u32::from(addr?);
        let e = self.dir.get(&r.client)?;
        (e.unit.addr == addr && r.req_pp.is_none_or(|p| Some(p.psid) == e.unit.psid))
            .then_some(e.unit)
    }

    pub(super) fn decline(
        &mut self,
        table: &mut LeaseTable,
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

    pub(super) fn release(
        &mut self,
        table: &mut LeaseTable,
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
    pub(super) fn build(
        &self,
        hops: &[wire::Hop<'_>],
        r: &Req<'_>,
        reply: ServerReply,
        now: u32,
    ) -> Option<Vec<u8>> {
        let v4 = &r.v4;
        let (msg_type, subnet, unit, sw) = match reply {
            ServerReply::Offer(s, u, sw) => (v4msg::OFFER, Some(s), Some(u), sw),
            ServerReply::Ack(s, u, sw) => (v4msg::ACK, Some(s), Some(u), sw),
            ServerReply::InformAck(s) => (v4msg::ACK, Some(s), None, None),
            ServerReply::Nak => (v4msg::NAK, None, None, None),
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
            m.options
                .push(V4Option::RenewalTime(s.renew_time.min(lease)));
            m.options
                .push(V4Option::RebindingTime(s.rebind_time.min(lease)));
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

#[cfg(test)]
mod tests;
