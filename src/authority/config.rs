//! Configuration of the DHCP4o6 lease authority: 4o6 subnets with IPv4 pools (full or shared
//! addresses), lease times and the hold times of the lease lifecycle.
//!
//! [`AuthorityConfig`] is the serde form (embedded in the server's TOML as `[[subnet]]` tables);
//! [`AuthorityConfig::validate`] checks it and gives the parsed [`ValidConfig`] the
//! [`Authority`](super::Authority) is built from.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The most subnets one configuration may hold.
pub const MAX_SUBNETS: usize = 4096;
/// The most link prefixes one subnet may list.
pub const MAX_LINKS: usize = 1024;
/// The longest finite `lease_time` (2^31 - 1 s, 68 years): a lease's expiry is a 32-bit Unix
/// time (the lease table, the journal and the import format), and a longer finite lease would
/// end past 2106. 4294967295 is the infinite lease.
pub const MAX_FINITE_LEASE_TIME: u32 = 0x7fff_ffff;

/// The lease authority's configuration (serde form).
///
/// # Subnet selection (documented rule)
///
/// A DHCPV4-QUERY is placed on a subnet by one IPv6 address, its *selector*: the link-address of
/// the innermost Relay-Forward that has a usable one (not `::`, not link-local), walking outwards;
/// if none has, the innermost relay's peer-address (the client's own address); for a direct query,
/// the query's IPv6 source. The candidate subnets are those with a `links` prefix containing the
/// selector, keeping only the longest matching prefix length. Among the candidates:
/// - a client that lists option 159 in its Parameter Request List (55) gets the first *shared*
///   candidate (one with `psid_len`), or the first full one when no candidate is shared;
/// - any other client gets the first *full* candidate; when there is none, or when a shared
///   candidate is `shared_only`, its message is discarded (RFC 7618 §8: a server with only shared
///   pools discards requests whose PRL lacks 159).
///
/// Only DISCOVER, REQUEST and INFORM are placed on a subnet. DHCPRELEASE and DHCPDECLINE name a
/// lease the client holds and find it by client identity and address, on any link (a RELEASE
/// carries no PRL at all, RFC 2131 §4.4.6).
///
/// A lease never falls back to another subnet when its subnet's pool is exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// The 4o6 subnets, in selection order (`[[subnet]]` tables).
    #[serde(default, alias = "subnet")]
    pub subnets: Vec<SubnetConfig>,
    /// How long an offered address (or address and PSID) stays reserved for the client, seconds.
    #[serde(default = "default_offer_hold")]
    pub offer_hold: u32,
    /// How long an EXPIRED or RELEASED lease stays reserved for its last client before the address
    /// may go to another client, seconds.
    #[serde(default = "default_expired_hold")]
    pub expired_hold: u32,
    /// How long a declined address is held as ABANDONED before reuse, seconds.
    #[serde(default = "default_abandoned_hold")]
    pub abandoned_hold: u32,
    /// RFC 8539 §8.1: the minimum interval between two changes of a lease's softwire source,
    /// seconds; 0 = no minimum. An update that comes too early is ACKed with the old address.
    #[serde(default)]
    pub softwire_min_update: u32,
    /// The server identifier (option 54), an IPv4 address. Default: the first address of the
    /// first subnet's pool, which is then taken out of that pool.
    #[serde(default)]
    pub server_id: Option<String>,
    /// Datagrams longer than this are dropped (1500..=65535, default 4096).
    #[serde(default = "default_max_datagram")]
    pub max_datagram: u32,
}

/// One 4o6 subnet (a `[[subnet]]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// A name for logs and counters.
    pub name: String,
    /// The IPv6 prefixes (CIDR) that select this subnet (see [`AuthorityConfig`]).
    pub links: Vec<String>,
    /// The IPv4 pool: a CIDR (`192.0.2.0/24`: the network and broadcast addresses are left out
    /// for prefixes up to /30) or an inclusive range (`192.0.2.10-192.0.2.99`). Only unicast
    /// host addresses: a pool touching 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 or 240.0.0.0/4 is
    /// refused (RFC 1122 §3.2.1.3).
    pub pool: String,
    /// Lease time (option 51), seconds: up to [`MAX_FINITE_LEASE_TIME`], or 4294967295
    /// (0xffffffff) for an infinite lease (RFC 2131 §3.3), which never expires and is reported
    /// as 0xffffffff by bulk and active leasequery too.
    pub lease_time: u32,
    /// T1 (option 58), seconds; below `rebind_time`.
    pub renew_time: u32,
    /// T2 (option 59), seconds; below `lease_time`.
    pub rebind_time: u32,
    /// RFC 7618 PSID length `k` (1..=16): the subnet hands out shared addresses, 2^k port sets
    /// per address. `None`: full addresses.
    #[serde(default)]
    pub psid_len: Option<u8>,
    /// RFC 7618 PSID offset `a` (0..=15, default 0 as in lw4o6).
    #[serde(default)]
    pub psid_offset: Option<u8>,
    /// Keep the well-known ports 0-1023 out of every handed-out port set (default true). With
    /// offset 0 the PSIDs holding ports 0-1023 are never leased (PSID 0 for k <= 6); with an
    /// offset 1..=6 the offset rule already excludes them (RFC 7597 §5.1); an offset above 6
    /// cannot exclude them, so that combination is a configuration error.
    #[serde(default)]
    pub reserve_well_known: Option<bool>,
    /// For a shared subnet: clients that do not list 159 are discarded on its links even when a
    /// full subnet matches them too (default false).
    #[serde(default)]
    pub shared_only: Option<bool>,
    /// The BR address sent as OPTION_S46_BR (90) when the DHCPv6 ORO asks for it.
    #[serde(default)]
    pub br: Option<String>,
    /// The bind-prefix hint sent as OPTION_S46_BIND_IPV6_PREFIX (137) when the ORO asks for it
    /// (an IPv6 CIDR).
    #[serde(default)]
    pub bind_prefix: Option<String>,
}

fn default_offer_hold() -> u32 {
    60
}
fn default_expired_hold() -> u32 {
    600
}
fn default_abandoned_hold() -> u32 {
    86_400
}
fn default_max_datagram() -> u32 {
    4096
}

/// A configuration error, naming the subnet and the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubnetError {
    /// A field's value does not parse or is out of range.
    #[error("subnet {subnet:?}: {field}: {reason}")]
    Invalid {
        /// The subnet's name (empty for a top-level field).
        subnet: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two subnets' pools overlap.
    #[error("subnets {0:?} and {1:?} have overlapping pools")]
    Overlap(String, String),
}

/// A checked subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSubnet {
    /// The name.
    pub name: String,
    /// Link prefixes (address masked, length).
    pub links: Vec<(Ipv6Addr, u8)>,
    /// First pool address.
    pub first: Ipv4Addr,
    /// Last pool address (inclusive).
    pub last: Ipv4Addr,
    /// The subnet mask (option 1) for a CIDR pool.
    pub mask: Option<Ipv4Addr>,
    /// Lease time, seconds.
    pub lease_time: u32,
    /// T1, seconds.
    pub renew_time: u32,
    /// T2, seconds.
    pub rebind_time: u32,
    /// `(offset, psid_len)` of a shared subnet.
    pub psid: Option<(u8, u8)>,
    /// The lowest PSID that may be leased (PSIDs below it hold well-known ports).
    pub first_psid: u16,
    /// See [`SubnetConfig::shared_only`].
    pub shared_only: bool,
    /// The BR address (option 90).
    pub br: Option<Ipv6Addr>,
    /// The bind-prefix hint (option 137): length and prefix.
    pub bind_prefix: Option<(u8, Ipv6Addr)>,
}

impl ValidSubnet {
    /// Whether `addr` is in this subnet's pool.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(addr))
    }

    /// The number of PSIDs per address (1 for a full subnet).
    pub fn psids(&self) -> u32 {
        self.psid.map_or(1, |(_, k)| 1u32 << k)
    }
}

/// A checked configuration, ready for [`Authority::new`](super::Authority::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    /// The subnets in selection order.
    pub subnets: Vec<ValidSubnet>,
    /// The server identifier (option 54).
    pub server_id: Ipv4Addr,
    /// See [`AuthorityConfig::offer_hold`].
    pub offer_hold: u32,
    /// See [`AuthorityConfig::expired_hold`].
    pub expired_hold: u32,
    /// See [`AuthorityConfig::abandoned_hold`].
    pub abandoned_hold: u32,
    /// See [`AuthorityConfig::softwire_min_update`].
    pub softwire_min_update: u32,
    /// See [`AuthorityConfig::max_datagram`].
    pub max_datagram: usize,
}

fn bad(subnet: &str, field: &'static str, reason: impl Into<String>) -> SubnetError {
    SubnetError::Invalid {
        subnet: subnet.to_string(),
        field,
        reason: reason.into(),
    }
}

fn mask6(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Ipv6Addr::from(bits & m)
}

/// Parses an IPv6 CIDR (`2001:db8::/32`; a bare address is a /128). The address is masked.
fn parse_v6_cidr(s: &str) -> Option<(Ipv6Addr, u8)> {
    let (a, l) = s.split_once('/').unwrap_or((s, "128"));
    let len: u8 = l.trim().parse().ok().filter(|&l| l <= 128)?;
    Some((mask6(a.trim().parse().ok()?, len), len))
}

/// Parses a pool: CIDR or `a-b`. Returns (first, last, mask).
fn parse_pool(s: &str) -> Option<(Ipv4Addr, Ipv4Addr, Option<Ipv4Addr>)> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().ok()?;
        let b: Ipv4Addr = b.trim().parse().ok()?;
        return (u32::from(a) <= u32::from(b)).then_some((a, b, None));
    }
    let (a, l) = s.split_once('/')?;
    let len: u32 = l.trim().parse().ok().filter(|&l| l <= 32)?;
    let a: Ipv4Addr = a.trim().parse().ok()?;
    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let net = u32::from(a) & m;
    let bcast = net | !m;
    let (first, last) = if len <= 30 {
        (net + 1, bcast - 1)
    } else {
        (net, bcast)
    };
    Some((first.into(), last.into(), Some(m.into())))
}

/// IPv4 blocks whose addresses are not unicast host addresses (RFC 1122 §3.2.1.3; multicast and
/// the reserved class E, RFC 1112 §4): a pool must not hold any of them.
const NOT_UNICAST: [(u32, u32, &str); 4] = [
    (
        0x0000_0000,
        0x00ff_ffff,
        "0.0.0.0/8 addresses (\"this network\")",
    ),
    (0x7f00_0000, 0x7fff_ffff, "127.0.0.0/8 addresses (loopback)"),
    (
        0xe000_0000,
        0xefff_ffff,
        "224.0.0.0/4 addresses (multicast)",
    ),
    (
        0xf000_0000,
        0xffff_ffff,
        "240.0.0.0/4 addresses (reserved, and 255.255.255.255 broadcast)",
    ),
];

/// The first block of [`NOT_UNICAST`] that the inclusive range `first..=last` touches.
fn not_unicast_hosts(first: Ipv4Addr, last: Ipv4Addr) -> Option<&'static str> {
    let (f, l) = (u32::from(first), u32::from(last));
    NOT_UNICAST
        .iter()
        .find(|(a, b, _)| f <= *b && *a <= l)
        .map(|(_, _, why)| *why)
}

/// The lowest PSID that holds no port below 1024, for offset 0 and length `k`.
fn first_free_psid(k: u8) -> u16 {
    // PSID p covers ports [p * 2^(16-k), (p+1) * 2^(16-k)).
    let per = 1u32 << (16 - u32::from(k));
    (1024u32.div_ceil(per)).min(1 << k) as u16
}

impl AuthorityConfig {
    /// The embedded demo setup (issue 4 part 7), used when the server runs with no config file:
    /// direct clients from `::1` and relayed links under `2001:db8::/32` select both subnets,
    /// - `full`: 192.0.2.0/24, full addresses, for clients that do not list option 159;
    /// - `shared`: 198.51.100.0/24, PSID length 4, offset 0 (PSID 0, holding ports 0-1023, is
    ///   reserved), BR 2001:db8::1, for clients that list 159 in their PRL.
    ///
    /// Leases last 3600 s (T1 1800 s, T2 3150 s); the server identifier is 192.0.2.1.
    /// `Config::validate` runs it only on a loopback `dhcp4o6_listen`.
    pub fn demo() -> AuthorityConfig {
        let links = vec!["::1/128".to_string(), "2001:db8::/32".to_string()];
        AuthorityConfig {
            subnets: vec![
                SubnetConfig {
                    name: "full".into(),
                    links: links.clone(),
                    pool: "192.0.2.0/24".into(),
                    lease_time: 3600,
                    renew_time: 1800,
                    rebind_time: 3150,
                    psid_len: None,
                    psid_offset: None,
                    reserve_well_known: None,
                    shared_only: None,
                    br: None,
                    bind_prefix: None,
                },
                SubnetConfig {
                    name: "shared".into(),
                    links,
                    pool: "198.51.100.0/24".into(),
                    lease_time: 3600,
                    renew_time: 1800,
                    rebind_time: 3150,
                    psid_len: Some(4),
                    psid_offset: Some(0),
                    reserve_well_known: Some(true),
                    shared_only: None,
                    br: Some("2001:db8::1".into()),
                    bind_prefix: None,
                },
            ],
            offer_hold: default_offer_hold(),
            expired_hold: default_expired_hold(),
            abandoned_hold: default_abandoned_hold(),
            softwire_min_update: 0,
            server_id: None,
            max_datagram: default_max_datagram(),
        }
    }

    /// Checks every field and parses addresses, prefixes and pools.
    pub fn validate(&self) -> Result<ValidConfig, SubnetError> {
        if self.subnets.is_empty() || self.subnets.len() > MAX_SUBNETS {
            return Err(bad("", "subnet", format!("need 1..={MAX_SUBNETS} subnets")));
        }
        if !(1500..=65535).contains(&self.max_datagram) {
            return Err(bad("", "max_datagram", "must be 1500..=65535"));
        }
        let mut subnets = Vec::with_capacity(self.subnets.len());
        let mut names = std::collections::HashSet::with_capacity(self.subnets.len());
        for s in &self.subnets {
            let n = s.name.as_str();
            // Names key logs and counters: two subnets with one name could not be told apart.
            if !names.insert(n) {
                return Err(bad(n, "name", "used by two subnets (names must be unique)"));
            }
            if s.links.is_empty() || s.links.len() > MAX_LINKS {
                return Err(bad(n, "links", format!("need 1..={MAX_LINKS} prefixes")));
            }
            let links = s
                .links
                .iter()
                .map(|l| {
                    parse_v6_cidr(l).ok_or_else(|| bad(n, "links", format!("bad prefix {l:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (first, last, mask) = parse_pool(&s.pool)
                .ok_or_else(|| bad(n, "pool", format!("bad pool {:?}", s.pool)))?;
            if let Some(why) = not_unicast_hosts(first, last) {
                return Err(bad(
                    n,
                    "pool",
                    format!("{:?} holds {why} (RFC 1122 §3.2.1.3)", s.pool),
                ));
            }
            if s.lease_time > MAX_FINITE_LEASE_TIME && s.lease_time != u32::MAX {
                return Err(bad(
                    n,
                    "lease_time",
                    format!(
                        "{} is longer than the longest finite lease ({MAX_FINITE_LEASE_TIME} s); \
                         4294967295 is an infinite lease",
                        s.lease_time
                    ),
                ));
            }
            if s.lease_time == 0 || s.rebind_time >= s.lease_time || s.renew_time >= s.rebind_time {
                return Err(bad(
                    n,
                    "lease_time",
                    "need 0 < renew_time < rebind_time < lease_time",
                ));
            }
            let mut first_psid = 0;
            let psid = match s.psid_len {
                None => {
                    if s.psid_offset.is_some() {
                        return Err(bad(n, "psid_offset", "set without psid_len"));
                    }
                    None
                }
                Some(k) => {
                    let a = s.psid_offset.unwrap_or(0);
                    if !(1..=16).contains(&k) || a > 15 || a + k > 16 {
                        return Err(bad(n, "psid_len", "need 1 <= k, a <= 15, a + k <= 16"));
                    }
                    if s.reserve_well_known.unwrap_or(true) {
                        if a == 0 {
                            first_psid = first_free_psid(k);
                            if u32::from(first_psid) >= 1u32 << k {
                                return Err(bad(
                                    n,
                                    "psid_len",
                                    "every PSID holds well-known ports",
                                ));
                            }
                        } else if a > 6 {
                            return Err(bad(
                                n,
                                "psid_offset",
                                "an offset above 6 cannot keep ports 0-1023 out",
                            ));
                        }
                    }
                    Some((a, k))
                }
            };
            let br =
                s.br.as_deref()
                    .map(|b| {
                        b.parse::<Ipv6Addr>()
                            .map_err(|_| bad(n, "br", format!("bad address {b:?}")))
                    })
                    .transpose()?;
            let bind_prefix = s
                .bind_prefix
                .as_deref()
                .map(|p| {
                    parse_v6_cidr(p)
                        .map(|(a, l)| (l, a))
                        .ok_or_else(|| bad(n, "bind_prefix", format!("bad prefix {p:?}")))
                })
                .transpose()?;
            subnets.push(ValidSubnet {
                name: s.name.clone(),
                links,
                first,
                last,
                mask,
                lease_time: s.lease_time,
                renew_time: s.renew_time,
                rebind_time: s.rebind_time,
                psid,
                first_psid,
                shared_only: s.shared_only.unwrap_or(false),
                br,
                bind_prefix,
            });
        }
        for (i, a) in subnets.iter().enumerate() {
            for b in subnets.iter().skip(i + 1) {
                if u32::from(a.first) <= u32::from(b.last)
                    && u32::from(b.first) <= u32::from(a.last)
                {
                    return Err(SubnetError::Overlap(a.name.clone(), b.name.clone()));
                }
            }
        }
        let server_id = match &self.server_id {
            Some(s) => {
                let a: Ipv4Addr = s
                    .parse()
                    .map_err(|_| bad("", "server_id", format!("bad address {s:?}")))?;
                if let Some(why) = not_unicast_hosts(a, a) {
                    return Err(bad(
                        "",
                        "server_id",
                        format!("{s:?} is one of the {why} (RFC 1122 §3.2.1.3)"),
                    ));
                }
                a
            }
            None => {
                // Take the first pool address of the first subnet out of its pool.
                let s = subnets
                    .first_mut()
                    .ok_or_else(|| bad("", "subnet", "none"))?;
                let id = s.first;
                if s.first == s.last {
                    return Err(bad(&s.name, "pool", "one address; set server_id"));
                }
                s.first = Ipv4Addr::from(u32::from(s.first) + 1);
                id
            }
        };
        // A configured server identifier inside a pool is never leased: shrink the pool's end
        // that holds it, or refuse when it is inside.
        for s in &mut subnets {
            if s.contains(server_id) {
                if server_id == s.first && s.first != s.last {
                    s.first = Ipv4Addr::from(u32::from(s.first) + 1);
                } else if server_id == s.last && s.first != s.last {
                    s.last = Ipv4Addr::from(u32::from(s.last) - 1);
                } else {
                    return Err(bad(
                        &s.name,
                        "pool",
                        "holds server_id inside; move one of them",
                    ));
                }
            }
        }
        Ok(ValidConfig {
            subnets,
            server_id,
            offer_hold: self.offer_hold,
            expired_hold: self.expired_hold,
            abandoned_hold: self.abandoned_hold,
            softwire_min_update: self.softwire_min_update,
            max_datagram: self.max_datagram as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_validates() {
        let v = AuthorityConfig::demo().validate().expect("demo");
        assert_eq!(v.server_id, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(v.subnets[0].first, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(v.subnets[0].last, Ipv4Addr::new(192, 0, 2, 254));
        assert_eq!(v.subnets[1].psid, Some((0, 4)));
        assert_eq!(v.subnets[1].first_psid, 1);
        assert_eq!(v.subnets[1].br, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn well_known_psids() {
        assert_eq!(first_free_psid(4), 1);
        assert_eq!(first_free_psid(8), 4);
        assert_eq!(first_free_psid(6), 1);
        assert_eq!(first_free_psid(7), 2);
        assert_eq!(first_free_psid(1), 1);
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = AuthorityConfig::demo();
        c.subnets[1].psid_offset = Some(8);
        assert!(matches!(
            c.validate(),
            Err(SubnetError::Invalid {
                field: "psid_offset",
                ..
            })
        ));
        let mut c = AuthorityConfig::demo();
        c.subnets[0].pool = "198.51.100.128/25".into();
        assert!(matches!(c.validate(), Err(SubnetError::Overlap(..))));
        let mut c = AuthorityConfig::demo();
        c.subnets[0].renew_time = 4000;
        assert!(c.validate().is_err());
        let mut c = AuthorityConfig::demo();
        c.subnets[0].links[0] = "nope".into();
        assert!(c.validate().is_err());
    }

    /// Issue 13 item 7: pools (and a server identifier) of addresses that are not unicast host
    /// addresses are refused, the message naming the subnet (RFC 1122 §3.2.1.3).
    #[test]
    fn pools_of_non_unicast_addresses_are_refused() {
        for pool in [
            "127.0.0.0/30",
            "224.0.0.0/30",
            "0.0.0.0/0",
            "0.1.2.3-0.1.2.9",
            "126.255.255.250-127.0.0.1",
            "239.255.255.255/32",
            "240.0.0.0/24",
            "255.255.255.255/32",
            "223.255.255.250-224.0.0.0",
        ] {
            let mut c = AuthorityConfig::demo();
            c.subnets[1].pool = pool.into();
            let err = c.validate().expect_err(pool);
            assert!(
                matches!(
                    &err,
                    SubnetError::Invalid { subnet, field: "pool", .. } if subnet == "shared"
                ),
                "{pool}: {err}"
            );
            assert!(err.to_string().contains("\"shared\""), "{pool}: {err}");
        }
        // The edges just outside the refused blocks are fine.
        for pool in [
            "1.0.0.0/24",
            "126.255.255.0/24",
            "128.0.0.0/24",
            "223.255.255.0/24",
        ] {
            let mut c = AuthorityConfig::demo();
            c.subnets[1].pool = pool.into();
            let v = c.validate().unwrap_or_else(|e| panic!("{pool}: {e}"));
            assert!(v.subnets[1].first < v.subnets[1].last);
        }
        for id in ["127.0.0.1", "224.0.0.1", "255.255.255.255", "0.0.0.0"] {
            let mut c = AuthorityConfig::demo();
            c.server_id = Some(id.into());
            assert!(
                matches!(
                    c.validate(),
                    Err(SubnetError::Invalid {
                        field: "server_id",
                        ..
                    })
                ),
                "{id}"
            );
        }
    }

    /// Issue 13 item 6: 4294967295 is the infinite lease; a finite lease too long for a 32-bit
    /// expiry is refused rather than silently shortened.
    #[test]
    fn infinite_and_too_long_lease_times() {
        let mut c = AuthorityConfig::demo();
        c.subnets[0].lease_time = u32::MAX;
        assert_eq!(c.validate().unwrap().subnets[0].lease_time, u32::MAX);
        c.subnets[0].lease_time = MAX_FINITE_LEASE_TIME;
        assert!(c.validate().is_ok());
        for lt in [MAX_FINITE_LEASE_TIME + 1, 3_000_000_000, u32::MAX - 1] {
            c.subnets[0].lease_time = lt;
            let e = c.validate().expect_err("too long");
            assert!(
                matches!(&e, SubnetError::Invalid { subnet, field: "lease_time", .. } if subnet == "full"),
                "{e}"
            );
            assert!(e.to_string().contains("4294967295"), "{e}");
        }
    }

    #[test]
    fn toml_round_trip_denies_unknown_fields() {
        let t = toml::to_string(&AuthorityConfig::demo()).expect("ser");
        let back: AuthorityConfig = toml::from_str(&t).expect("de");
        assert_eq!(back, AuthorityConfig::demo());
        let bad = "offer_hold = 5\nbogus = 1\n";
        assert!(toml::from_str::<AuthorityConfig>(bad).is_err());
    }
}
