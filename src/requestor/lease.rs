//! A binding as a requestor writes it out: every field of the README's import-file format,
//! decoded from one answer message, with the server's remaining times turned back into
//! absolute Unix seconds through the message's base time.
//!
//! - DHCPv4 and DHCP4o6 (the DHCPv4 answer, ciaddr and chaddr, options 51, 61, 82, 91, 109,
//!   152, 156, 159): `cltt` = base-time - option 91, `expires` = base-time + option 51
//!   (0xffffffff stays infinite; without option 51, 0).
//! - DHCPv6 (OPTION_CLIENT_DATA: CLIENTID, IAADDR, IAPREFIX, CLT_TIME, RELAY_ID, REMOTE_ID) with
//!   the message's OPTION_LQ_BASE_TIME: `cltt` = base - CLT_TIME; each lifetime, counted from
//!   `cltt` as the import file counts it, = base + remaining - cltt (infinity stays).
//!
//! The link of a binding is not in the answer (RFC 5007 sends it only for a query by address
//! on several links): the caller passes the link its query named (`v6-link`, `4o6-link`), if
//! any. A message without a base time (a server that ignores the ORO) is read against the
//! caller's clock, `now`.
//!
//! Sans-io and panic-free on any input: a message that does not decode gives `None`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reply::{Binding, Wire};
use crate::proto::codes::{dhcp_state, v4msg, v4opt, v4relay, v6opt};
use crate::proto::record::PortParams;
use crate::proto::v4::MessageView as V4View;
use crate::proto::v6::{MessageView as V6View, OptionsView};

/// Infinity, for lease ends and lifetimes (RFC 2132 §9.2, RFC 8415 §7.7).
pub const INFINITE: u32 = u32::MAX;

/// A DHCPv4 or DHCP4o6 binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V4Lease {
    /// ciaddr.
    pub addr: Ipv4Addr,
    /// Option 159, for a shared address.
    pub port_params: Option<PortParams>,
    /// htype.
    pub htype: u8,
    /// chaddr (hlen octets, at most 16).
    pub chaddr: Vec<u8>,
    /// Option 61 payload.
    pub client_id: Option<Vec<u8>>,
    /// dhcp-state (option 156; from the message type when absent).
    pub state: u8,
    /// Client last transaction time, Unix seconds.
    pub cltt: u32,
    /// Lease end, Unix seconds ([`INFINITE`]; 0 without a lease time).
    pub expires: u32,
    /// Option 82 sub-option 12.
    pub relay_id: Option<Vec<u8>>,
    /// Option 82 sub-option 2.
    pub remote_id: Option<Vec<u8>>,
    /// Option 109: the lwB4's softwire source (DHCP4o6).
    pub softwire: Option<Ipv6Addr>,
    /// Answered in DHCP4o6 form.
    pub dhcp4o6: bool,
    /// The link, when the query named one.
    pub link: Option<Ipv6Addr>,
}

/// One address or prefix of a DHCPv6 binding; lifetimes in seconds from the binding's `cltt`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V6Lease6 {
    /// The address (IA_NA) or prefix (IA_PD).
    pub addr: Ipv6Addr,
    /// 128 for an address, the prefix length for a prefix.
    pub len: u8,
    /// Preferred lifetime.
    pub preferred: u32,
    /// Valid lifetime.
    pub valid: u32,
}

/// A plain DHCPv6 binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V6Lease {
    /// OPTION_CLIENTID.
    pub duid: Vec<u8>,
    /// The link, when the query named one.
    pub link: Option<Ipv6Addr>,
    /// Addresses (OPTION_IAADDR).
    pub iana: Vec<V6Lease6>,
    /// Prefixes (OPTION_IAPREFIX).
    pub iapd: Vec<V6Lease6>,
    /// Client last transaction time, Unix seconds.
    pub cltt: u32,
    /// OPTION_RELAY_ID payload.
    pub relay_id: Option<Vec<u8>>,
    /// OPTION_REMOTE_ID payload (enterprise number first).
    pub remote_id: Option<Vec<u8>>,
    /// Some address or prefix had a remaining valid lifetime (bound when answered).
    pub bound: bool,
}

/// A binding of either family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lease {
    /// DHCPv4 / DHCP4o6.
    V4(V4Lease),
    /// DHCPv6.
    V6(V6Lease),
}

/// What keys a binding when answers from several servers are merged: (IPv4, PSID) for v4 and
/// DHCP4o6, (DUID, link) for v6 (the import file's keys; `::` for an unknown link).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKey {
    /// (IPv4, PSID offset/length/id); a full address has none.
    V4(Ipv4Addr, Option<(u8, u8, u16)>),
    /// (DUID, link).
    V6(Vec<u8>, Ipv6Addr),
}

impl std::fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseKey::V4(a, None) => write!(f, "{a}"),
            LeaseKey::V4(a, Some((_, len, id))) => write!(f, "{a} psid {id}/{len}"),
            LeaseKey::V6(d, l) => {
                write!(f, "duid ")?;
                for b in d {
                    write!(f, "{b:02x}")?;
                }
                write!(f, " link {l}")
            }
        }
    }
}

impl Lease {
    /// Its merge key.
    pub fn key(&self) -> LeaseKey {
        match self {
            Lease::V4(l) => LeaseKey::V4(
                l.addr,
                l.port_params.map(|p| (p.offset, p.psid_len, p.psid)),
            ),
            Lease::V6(l) => LeaseKey::V6(l.duid.clone(), l.link.unwrap_or(Ipv6Addr::UNSPECIFIED)),
        }
    }

    /// Bound: a DHCPv4 binding in state active, a DHCPv6 one with some non-zero valid
    /// lifetime.
    pub fn active(&self) -> bool {
        match self {
            Lease::V4(l) => l.state == dhcp_state::ACTIVE,
            Lease::V6(l) => l.bound,
        }
    }

    /// Decodes a binding of a `wire` stream. `base6` is the message's OPTION_LQ_BASE_TIME in
    /// Unix seconds ([`base_time6`]; v6 only), `link` the link the query named, `now` the
    /// caller's clock for a message without a base time.
    pub fn from_binding(
        wire: Wire,
        b: &Binding<'_>,
        base6: Option<u32>,
        link: Option<Ipv6Addr>,
        now: u32,
    ) -> Option<Lease> {
        match (wire, b.v4) {
            (Wire::V4 | Wire::O6, Some(v4)) => {
                let mut l = decode_v4(v4, now)?;
                l.dhcp4o6 = wire == Wire::O6;
                l.link = link;
                Some(Lease::V4(l))
            }
            (Wire::V6, None) => {
                let mut l = decode_v6(b.client_data?, base6.unwrap_or(now))?;
                l.link = link;
                Some(Lease::V6(l))
            }
            _ => None,
        }
    }

    /// Classifies and decodes one whole message of a `wire` stream: `None` unless it carries a
    /// binding that decodes.
    pub fn from_message(wire: Wire, msg: &[u8], link: Option<Ipv6Addr>, now: u32) -> Option<Lease> {
        let super::reply::Answer::Binding(b) = super::reply::classify(wire, msg) else {
            return None;
        };
        let base = match wire {
            Wire::V6 => base_time6(msg),
            _ => None,
        };
        Lease::from_binding(wire, &b, base, link, now)
    }
}

/// OPTION_LQ_BASE_TIME of a DHCPv6 message, in Unix seconds.
pub fn base_time6(msg: &[u8]) -> Option<u32> {
    let v = V6View::parse(msg).ok()?;
    let o = v.options().get(v6opt::LQ_BASE_TIME)?;
    let b: [u8; 4] = o.data.try_into().ok()?;
    let unix = crate::proto::time::v6_to_unix(u32::from_be_bytes(b));
    u32::try_from(unix).ok()
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.try_into().ok()?))
}

fn decode_v4(raw: &[u8], now: u32) -> Option<V4Lease> {
    let v = V4View::parse(raw).ok()?;
    let state_of_type = match v.message_type()? {
        v4msg::LEASEACTIVE => dhcp_state::ACTIVE,
        v4msg::LEASEUNASSIGNED => dhcp_state::AVAILABLE,
        _ => return None,
    };
    let hlen = usize::from(v.hlen).min(16).min(v.chaddr.len());
    let mut l = V4Lease {
        addr: v.ciaddr,
        port_params: None,
        htype: v.htype,
        chaddr: v.chaddr[..hlen].to_vec(),
        client_id: None,
        state: state_of_type,
        cltt: 0,
        expires: 0,
        relay_id: None,
        remote_id: None,
        softwire: None,
        dhcp4o6: false,
        link: None,
    };
    let mut base = None;
    let mut ago = None;
    let mut lease_time = None;
    for (code, value) in v.options() {
        match code {
            v4opt::BASE_TIME => base = u32_of(value),
            v4opt::CLIENT_LAST_TRANSACTION_TIME => ago = u32_of(value),
            v4opt::LEASE_TIME => lease_time = u32_of(value),
            v4opt::DHCP_STATE => {
                if let [s] = *value {
                    l.state = s;
                }
            }
            v4opt::CLIENT_ID => l.client_id = Some(value.to_vec()),
            v4opt::V4_PORTPARAMS => {
                if let [offset, len, x, y] = *value {
                    l.port_params = PortParams::from_wire(offset, len, u16::from_be_bytes([x, y]));
                }
            }
            v4opt::DHCP4O6_S46_SADDR => {
                l.softwire = <[u8; 16]>::try_from(value).ok().map(Ipv6Addr::from);
            }
            v4opt::RELAY_AGENT_INFO => {
                let mut rest = value;
                while let [code, len, tail @ ..] = rest {
                    let Some(sub) = tail.get(..usize::from(*len)) else {
                        break;
                    };
                    match *code {
                        v4relay::RELAY_ID => l.relay_id = Some(sub.to_vec()),
                        v4relay::REMOTE_ID => l.remote_id = Some(sub.to_vec()),
                        _ => {}
                    }
                    rest = &tail[usize::from(*len)..];
                }
            }
            _ => {}
        }
    }
    let base = base.unwrap_or(now);
    l.cltt = base.saturating_sub(ago.unwrap_or(0));
    l.expires = match lease_time {
        None => 0,
        Some(INFINITE) => INFINITE,
        // A finite end is kept below infinity (as the import file keeps it).
        Some(t) => base.saturating_add(t).min(INFINITE - 1),
    };
    Some(l)
}

fn decode_v6(client_data: &[u8], base: u32) -> Option<V6Lease> {
    let opts = OptionsView::new(client_data).ok()?;
    let duid = opts.get(v6opt::CLIENTID)?.data.to_vec();
    let ago = opts
        .get(v6opt::CLT_TIME)
        .and_then(|o| u32_of(o.data))
        .unwrap_or(0);
    let cltt = base.saturating_sub(ago);
    // A remaining lifetime back into one counted from cltt.
    let life = |r: u32| match r {
        INFINITE => INFINITE,
        r => base
            .saturating_add(r)
            .min(INFINITE - 1)
            .saturating_sub(cltt)
            .min(INFINITE - 1),
    };
    let mut l = V6Lease {
        duid,
        link: None,
        iana: Vec::new(),
        iapd: Vec::new(),
        cltt,
        relay_id: None,
        remote_id: None,
        bound: false,
    };
    for o in opts.iter() {
        let d = o.data;
        let valid_at = match o.code {
            v6opt::IAADDR => 20,
            _ => 4,
        };
        if matches!(o.code, v6opt::IAADDR | v6opt::IAPREFIX) {
            l.bound |= d
                .get(valid_at..valid_at + 4)
                .and_then(u32_of)
                .is_some_and(|v| v > 0);
        }
        match o.code {
            // IAADDR: addr(16) preferred(4) valid(4) [options].
            v6opt::IAADDR if d.len() >= 24 => l.iana.push(V6Lease6 {
                addr: Ipv6Addr::from(<[u8; 16]>::try_from(&d[..16]).ok()?),
                len: 128,
                preferred: life(u32_of(&d[16..20])?),
                valid: life(u32_of(&d[20..24])?),
            }),
            // IAPREFIX: preferred(4) valid(4) len(1) prefix(16) [options].
            v6opt::IAPREFIX if d.len() >= 25 => l.iapd.push(V6Lease6 {
                addr: Ipv6Addr::from(<[u8; 16]>::try_from(&d[9..25]).ok()?),
                len: d[8].min(128),
                preferred: life(u32_of(&d[..4])?),
                valid: life(u32_of(&d[4..8])?),
            }),
            v6opt::RELAY_ID => l.relay_id = Some(d.to_vec()),
            v6opt::REMOTE_ID => l.remote_id = Some(d.to_vec()),
            _ => {}
        }
    }
    Some(l)
}

/// The RFC 6926 name of a dhcp-state (the import file's `state`), `None` for an unknown code.
pub fn state_name(state: u8) -> Option<&'static str> {
    Some(match state {
        dhcp_state::AVAILABLE => "available",
        dhcp_state::ACTIVE => "active",
        dhcp_state::EXPIRED => "expired",
        dhcp_state::RELEASED => "released",
        dhcp_state::ABANDONED => "abandoned",
        dhcp_state::RESET => "reset",
        dhcp_state::REMOTE => "remote",
        dhcp_state::TRANSITIONING => "transitioning",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codes::{v6msg, BOOTREPLY};
    use crate::proto::v4::{Message as V4Message, V4Option};
    use crate::proto::v6::{Message as V6Message, V6Option};

    const BASE: u32 = 1_800_000_000;

    fn raw(code: u8, data: &[u8]) -> V4Option {
        V4Option::Unknown {
            code,
            data: data.to_vec(),
        }
    }

    /// A DHCPLEASEACTIVE for 192.0.2.7 PSID 3/4 offset 6, with every option lqctl reads.
    fn v4_active(lease_time: u32) -> Vec<u8> {
        let mut m = V4Message::new(BOOTREPLY, v4msg::LEASEACTIVE, 9);
        m.ciaddr = "192.0.2.7".parse().unwrap();
        m.set_hw_addr(1, &[2, 0, 0, 0, 0, 7]).unwrap();
        m.options.extend([
            raw(v4opt::BASE_TIME, &BASE.to_be_bytes()),
            raw(v4opt::LEASE_TIME, &lease_time.to_be_bytes()),
            raw(v4opt::CLIENT_LAST_TRANSACTION_TIME, &100u32.to_be_bytes()),
            raw(v4opt::DHCP_STATE, &[dhcp_state::ACTIVE]),
            raw(
                v4opt::CLIENT_ID,
                &[0xff, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 7],
            ),
            raw(
                v4opt::DHCP4O6_S46_SADDR,
                &"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets(),
            ),
            // offset 6, length 4, PSID 3 left-aligned: 0x3000.
            raw(v4opt::V4_PORTPARAMS, &[6, 4, 0x30, 0x00]),
            // circuit-id 1, remote-id 2, relay-id 12.
            raw(
                v4opt::RELAY_AGENT_INFO,
                &[1, 1, 9, 2, 2, b'r', b'1', 12, 2, 0, 3],
            ),
        ]);
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    }

    fn v6_reply(valid: u32, with_base: bool) -> Vec<u8> {
        let mut options = vec![V6Option::ClientData(vec![
            V6Option::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9]),
            V6Option::IaAddr {
                addr: "2001:db8:2::9".parse().unwrap(),
                preferred: valid / 2,
                valid,
                options: vec![],
            },
            V6Option::IaPrefix {
                preferred: valid,
                valid,
                prefix_len: 56,
                prefix: "2001:db8:900::".parse().unwrap(),
                options: vec![],
            },
            V6Option::CltTime(50),
            V6Option::RelayId(vec![0, 3, 0, 1, 10, 0, 0, 0, 0, 2]),
            V6Option::RemoteId {
                enterprise: 3561,
                remote_id: b"x".to_vec(),
            },
        ])];
        if with_base {
            options.push(V6Option::LqBaseTime(crate::proto::time::unix_to_v6(
                u64::from(BASE),
            )));
        }
        let m = V6Message {
            msg_type: v6msg::LEASEQUERY_DATA,
            xid: 1,
            options,
        };
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn v4_binding_with_every_field() {
        let l = Lease::from_message(Wire::V4, &v4_active(3600), None, 0).unwrap();
        let Lease::V4(v) = &l else { panic!("{l:?}") };
        assert_eq!(v.addr, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(
            v.port_params,
            Some(PortParams {
                offset: 6,
                psid_len: 4,
                psid: 3
            })
        );
        assert_eq!((v.htype, v.chaddr.as_slice()), (1, &[2, 0, 0, 0, 0, 7][..]));
        assert_eq!((v.cltt, v.expires), (BASE - 100, BASE + 3600));
        assert_eq!(v.relay_id.as_deref(), Some(&[0, 3][..]));
        assert_eq!(v.remote_id.as_deref(), Some(&b"r1"[..]));
        assert_eq!(v.softwire, Some("2001:db8::7".parse().unwrap()));
        assert!(!v.dhcp4o6 && l.active());
        assert_eq!(l.key(), LeaseKey::V4(v.addr, Some((6, 4, 3))));
        // Infinite stays infinite.
        let Some(Lease::V4(v)) = Lease::from_message(Wire::V4, &v4_active(INFINITE), None, 0)
        else {
            panic!()
        };
        assert_eq!(v.expires, INFINITE);
    }

    #[test]
    fn o6_binding_takes_the_inner_message_and_the_link() {
        let inner = v4_active(60);
        let b = Binding {
            v4: Some(&inner),
            client_data: Some(&[]),
        };
        let link = "2001:db8:1::".parse().unwrap();
        let Some(Lease::V4(v)) = Lease::from_binding(Wire::O6, &b, None, Some(link), 0) else {
            panic!()
        };
        assert!(v.dhcp4o6);
        assert_eq!(v.link, Some(link));
        // A v6 wire with a DHCPv4 binding, or a v4 wire without one, is no binding.
        assert_eq!(Lease::from_binding(Wire::V6, &b, None, None, 0), None);
        let b = Binding {
            v4: None,
            client_data: Some(&[]),
        };
        assert_eq!(Lease::from_binding(Wire::V4, &b, None, None, 0), None);
    }

    #[test]
    fn v6_binding_lifetimes_count_from_cltt() {
        let msg = v6_reply(3600, true);
        assert_eq!(base_time6(&msg), Some(BASE));
        let link = "2001:db8:2::".parse().unwrap();
        let l = Lease::from_message(Wire::V6, &msg, Some(link), 0).unwrap();
        let Lease::V6(v) = &l else { panic!() };
        assert_eq!(v.cltt, BASE - 50);
        assert_eq!(
            (v.iana[0].preferred, v.iana[0].valid),
            (1800 + 50, 3600 + 50)
        );
        assert_eq!(
            (v.iapd[0].addr, v.iapd[0].len),
            ("2001:db8:900::".parse().unwrap(), 56)
        );
        assert_eq!(v.remote_id.as_deref(), Some(&[0, 0, 0x0d, 0xe9, b'x'][..]));
        assert!(l.active());
        assert_eq!(
            l.key(),
            LeaseKey::V6(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 9], link)
        );
        // Expired: remaining 0, not bound. Infinite: stays.
        let l = Lease::from_message(Wire::V6, &v6_reply(0, true), None, 0).unwrap();
        assert!(!l.active());
        let Some(Lease::V6(v)) = Lease::from_message(Wire::V6, &v6_reply(INFINITE, true), None, 0)
        else {
            panic!()
        };
        assert_eq!(v.iana[0].valid, INFINITE);
        // No base time: the caller's clock.
        let Some(Lease::V6(v)) = Lease::from_message(Wire::V6, &v6_reply(10, false), None, 7000)
        else {
            panic!()
        };
        assert_eq!(v.cltt, 6950);
    }

    /// Every truncation and every one-octet corruption of valid answers decodes to something
    /// or nothing, never a panic; garbage is no binding.
    #[test]
    fn malformed_answers_never_panic() {
        for (wire, msg) in [
            (Wire::V4, v4_active(3600)),
            (Wire::V6, v6_reply(3600, true)),
        ] {
            for n in 0..msg.len() {
                let _ = Lease::from_message(wire, &msg[..n], None, 0);
                let _ = base_time6(&msg[..n]);
                for x in [0u8, 1, 0x7f, 0xff] {
                    let mut m = msg.clone();
                    m[n] = x;
                    let _ = Lease::from_message(wire, &m, None, 0);
                    let _ = Lease::from_message(Wire::O6, &m, None, 0);
                }
            }
        }
        for g in [&[][..], &[0], &[13, 0, 0], &[0xff; 300]] {
            for w in [Wire::V4, Wire::V6, Wire::O6] {
                assert_eq!(Lease::from_message(w, g, None, 0), None);
            }
        }
        // A relay agent option whose sub-option overruns it, a short client data option.
        let b = Binding {
            v4: None,
            client_data: Some(&[0, 1, 0, 2, 0, 3, 0, 5, 0, 24, 1, 2]),
        };
        assert_eq!(Lease::from_binding(Wire::V6, &b, Some(1), None, 0), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            for w in [Wire::V4, Wire::V6, Wire::O6] {
                let _ = Lease::from_message(w, &bytes, None, 0);
                let b = Binding { v4: Some(&bytes), client_data: Some(&bytes) };
                let _ = Lease::from_binding(w, &b, None, None, 0);
                let b = Binding { v4: None, client_data: Some(&bytes) };
                let _ = Lease::from_binding(w, &b, Some(5), None, 0);
            }
            let _ = base_time6(&bytes);
        }
    }

    #[test]
    fn state_names() {
        assert_eq!(state_name(dhcp_state::ACTIVE), Some("active"));
        assert_eq!(state_name(dhcp_state::TRANSITIONING), Some("transitioning"));
        assert_eq!(state_name(0), None);
        assert_eq!(state_name(9), None);
    }
}
