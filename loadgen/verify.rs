//! `--verify`: after a churn, DHCP4o6 bulk leasequeries over TCP (by link-address, one per link
//! the clients used: the direct clients' IPv6 source, the relay's link) must return exactly the
//! churn's ledger: every held lease present with the same IPv4, PSID and softwire source,
//! nothing else ACTIVE, no (IPv4, PSID) twice.
//!
//! The server has no single 4o6 bulk query for "everything" (a 4o6 LEASEQUERY needs a
//! selector; `All` is only for active queries), so the answers of the link queries are united.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use leasequery::proto::codes::{v6msg, v6opt};
use leasequery::proto::record::PortParams;
use leasequery::proto::v6::{Message, MessageView, V6Option};
use leasequery::requestor::reply::ReportedV4;

use crate::ledger::Entry;
use crate::requestor::{Conn, KindExt, Port, QueryKind, Tls};

/// One binding a bulk query returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Option 61, if sent.
    pub client_id: Option<Vec<u8>>,
    /// ciaddr.
    pub addr: Ipv4Addr,
    /// Option 159.
    pub port_params: Option<PortParams>,
    /// Option 109.
    pub softwire: Option<Ipv6Addr>,
    /// DHCPLEASEACTIVE (else DHCPLEASEUNASSIGNED).
    pub active: bool,
}

/// One difference between the ledger and the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// A lease the client holds is missing (or not ACTIVE) on the server.
    Missing(Entry),
    /// The server's lease for this client differs.
    Mismatch {
        /// What the client holds.
        ledger: Entry,
        /// What the server has.
        server: Found,
    },
    /// An ACTIVE binding on the server that no client holds.
    Extra(Found),
    /// The same (IPv4, PSID) ACTIVE more than once.
    Duplicate {
        /// The address.
        addr: Ipv4Addr,
        /// The port set.
        port_params: Option<PortParams>,
        /// How many times.
        count: usize,
    },
}

fn pp(p: &Option<PortParams>) -> String {
    match p {
        Some(p) => format!(" psid {}/{} offset {}", p.psid, p.psid_len, p.offset),
        None => String::new(),
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing(e) => write!(
                f,
                "missing: client {} holds {}{} softwire {}",
                hex(&e.client_id),
                e.addr,
                pp(&e.port_params),
                e.softwire
            ),
            Difference::Mismatch { ledger, server } => write!(
                f,
                "mismatch: client {} holds {}{} softwire {}; server has {}{} softwire {:?}{}",
                hex(&ledger.client_id),
                ledger.addr,
                pp(&ledger.port_params),
                ledger.softwire,
                server.addr,
                pp(&server.port_params),
                server.softwire,
                if server.active { "" } else { " (not active)" }
            ),
            Difference::Extra(s) => write!(
                f,
                "extra: server has {}{} softwire {:?} for client {} that no client holds",
                s.addr,
                pp(&s.port_params),
                s.softwire,
                s.client_id.as_deref().map(hex).unwrap_or_default()
            ),
            Difference::Duplicate {
                addr,
                port_params,
                count,
            } => write!(
                f,
                "duplicate: {addr}{} active {count} times",
                pp(port_params)
            ),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A lease unit as compared: address and (offset, PSID length, PSID).
type Unit = (Ipv4Addr, Option<(u8, u8, u16)>);

fn unit(addr: Ipv4Addr, p: &Option<PortParams>) -> Unit {
    (addr, p.map(|p| (p.offset, p.psid_len, p.psid)))
}

/// Compares the ledger with what the server returned. Empty when they agree.
pub fn compare(ledger: &[Entry], found: &[Found]) -> Vec<Difference> {
    let mut diffs = Vec::new();
    let mut units: BTreeMap<Unit, (usize, Option<PortParams>)> = BTreeMap::new();
    for f in found.iter().filter(|f| f.active) {
        units.entry(unit(f.addr, &f.port_params)).or_default().0 += 1;
        units.entry(unit(f.addr, &f.port_params)).or_default().1 = f.port_params;
    }
    for ((addr, _), (count, port_params)) in &units {
        if *count > 1 {
            diffs.push(Difference::Duplicate {
                addr: *addr,
                port_params: *port_params,
                count: *count,
            });
        }
    }
    // Server bindings by client-id, as indexes into `found`.
    let mut by_client: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, f) in found.iter().enumerate() {
        if let Some(c) = &f.client_id {
            by_client.entry(c).or_default().push(i);
        }
    }
    let mut matched = vec![false; found.len()];
    for e in ledger {
        let mine = by_client.get(&e.client_id[..]).cloned().unwrap_or_default();
        let exact = mine.iter().copied().find(|&i| {
            let f = &found[i];
            f.active
                && unit(f.addr, &f.port_params) == unit(e.addr, &e.port_params)
                && f.softwire == Some(e.softwire)
        });
        if let Some(i) = exact {
            matched[i] = true;
            continue;
        }
        let near = mine
            .iter()
            .copied()
            .find(|&i| found[i].active)
            .or(mine.first().copied());
        match near {
            Some(i) => {
                matched[i] = true;
                diffs.push(Difference::Mismatch {
                    ledger: e.clone(),
                    server: found[i].clone(),
                });
            }
            None => diffs.push(Difference::Missing(e.clone())),
        }
    }
    for (f, m) in found.iter().zip(&matched) {
        if f.active && !m {
            diffs.push(Difference::Extra(f.clone()));
        }
    }
    diffs
}

/// Decodes one message of a 4o6 bulk stream: the binding in OPTION_CLIENT_DATA's DHCPv4 reply.
pub fn binding_of(msg: &[u8]) -> Option<Found> {
    let m = MessageView::parse(msg).ok()?;
    if m.msg_type != v6msg::LEASEQUERY_REPLY && m.msg_type != v6msg::LEASEQUERY_DATA {
        return None;
    }
    m.options().get(v6opt::CLIENT_DATA)?;
    found_of_v4(m.options().get(v6opt::DHCPV4_MSG)?.data)
}

/// The binding a DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED reports, owned.
pub fn found_of_v4(raw: &[u8]) -> Option<Found> {
    let b = ReportedV4::parse(raw)?;
    Some(Found {
        client_id: b.client_id.map(<[u8]>::to_vec),
        addr: b.addr,
        port_params: b.port_params,
        softwire: b.softwire,
        active: b.active,
    })
}

/// Runs one DHCP4o6 bulk query by link-address per link and returns every binding (a binding
/// seen by two queries once).
pub fn query_links(
    server: SocketAddr,
    links: &[Ipv6Addr],
    timeout: Duration,
    tls: Option<&Tls>,
) -> io::Result<Vec<Found>> {
    let mut conn = Conn::connect(server, Port::V6, timeout, tls)?;
    query_links_on(&mut conn, links, 0x7e_0000)
}

/// [`query_links`] on an open connection, transaction ids from `xid`.
pub fn query_links_on(conn: &mut Conn, links: &[Ipv6Addr], xid: u32) -> io::Result<Vec<Found>> {
    let mut out: Vec<Found> = Vec::new();
    for (n, link) in links.iter().enumerate() {
        let q = QueryKind::O6Link(*link).query(xid + n as u32);
        conn.send(&q)?;
        let mut err = None;
        conn.read_stream(|m| match m.first() {
            Some(&t) if t == v6msg::LEASEQUERY_DONE => false,
            Some(&t) if t == v6msg::LEASEQUERY_REPLY || t == v6msg::LEASEQUERY_DATA => {
                match binding_of(m) {
                    Some(f) => {
                        if !out.contains(&f) {
                            out.push(f);
                        }
                        true
                    }
                    // A REPLY without a binding ends the stream (empty result or an error).
                    None if t == v6msg::LEASEQUERY_REPLY => {
                        if let Some(s) = status_of(m) {
                            err = Some(s);
                        }
                        false
                    }
                    None => true,
                }
            }
            _ => true,
        })?;
        if let Some(s) = err {
            return Err(io::Error::other(format!(
                "bulk query by link {link}: the server answered status {s}"
            )));
        }
    }
    Ok(out)
}

/// The v6 status code of a REPLY, when it is not Success (0) or NotConfigured for an unknown
/// link (an empty answer, RFC 5460 §5.2.2 leaves it to the server).
fn status_of(m: &[u8]) -> Option<u16> {
    let m = Message::decode(m).ok()?;
    m.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } if *code != 0 && *code != 9 => Some(*code),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(c: u8, a: u8, psid: Option<u16>, sw: u16) -> Entry {
        Entry {
            client_id: vec![255, c],
            addr: Ipv4Addr::new(192, 0, 2, a),
            port_params: psid.map(|psid| PortParams {
                offset: 0,
                psid_len: 4,
                psid,
            }),
            softwire: Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, sw),
        }
    }

    fn f(x: &Entry) -> Found {
        Found {
            client_id: Some(x.client_id.clone()),
            addr: x.addr,
            port_params: x.port_params,
            softwire: Some(x.softwire),
            active: true,
        }
    }

    #[test]
    fn equal_sets_agree() {
        let l = vec![e(1, 10, None, 1), e(2, 11, Some(3), 2)];
        let mut found: Vec<Found> = l.iter().map(f).collect();
        // A released binding that no one holds is not a difference.
        found.push(Found {
            active: false,
            ..f(&e(3, 12, None, 3))
        });
        assert_eq!(compare(&l, &found), vec![]);
    }

    #[test]
    fn every_kind_of_difference_is_listed() {
        let l = vec![e(1, 10, None, 1), e(2, 11, Some(3), 2), e(4, 13, None, 4)];
        let mut found = vec![
            f(&l[0]),
            Found {
                softwire: Some(Ipv6Addr::LOCALHOST),
                ..f(&l[1])
            },
            f(&e(5, 10, None, 5)),
        ];
        found.push(f(&e(6, 14, None, 6)));
        let d = compare(&l, &found);
        assert!(d.contains(&Difference::Duplicate {
            addr: Ipv4Addr::new(192, 0, 2, 10),
            port_params: None,
            count: 2
        }));
        assert!(d.contains(&Difference::Missing(l[2].clone())));
        assert!(d
            .iter()
            .any(|x| matches!(x, Difference::Mismatch { ledger, .. } if *ledger == l[1])));
        assert_eq!(
            d.iter()
                .filter(|x| matches!(x, Difference::Extra(_)))
                .count(),
            2
        );
        assert_eq!(d.len(), 5, "{d:#?}");
        for x in &d {
            assert!(!x.to_string().is_empty());
        }
    }
}
