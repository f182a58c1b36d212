//! Several servers' answers merged by binding key ((IPv4, PSID) for v4 and DHCP4o6, (DUID,
//! link) for v6). A key answered by two servers is a conflict: neither answer is written; the
//! conflict is reported on stderr and counted.

use hashbrown::HashMap;

use leasequery::requestor::{Lease, LeaseKey};

/// A key two or more servers answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key.
    pub key: LeaseKey,
    /// The servers (indexes into the `--server` list) that answered it, in order.
    pub servers: Vec<usize>,
}

/// The merge of every server's bindings.
#[derive(Debug, Default)]
pub struct Merged {
    /// The bindings only one server answered, sorted by key.
    pub bindings: Vec<Lease>,
    /// The keys more than one server answered (none of their bindings is in `bindings`),
    /// sorted by key.
    pub conflicts: Vec<Conflict>,
}

/// Merges `per_server[i]` (server i's bindings). A key answered twice by one server keeps
/// that server's last answer (the latest state wins, as in the requestor's table).
pub fn merge(per_server: Vec<Vec<Lease>>) -> Merged {
    let mut map: HashMap<LeaseKey, (Vec<usize>, Lease)> = HashMap::new();
    for (i, leases) in per_server.into_iter().enumerate() {
        for l in leases {
            match map.entry(l.key()) {
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert((vec![i], l));
                }
                hashbrown::hash_map::Entry::Occupied(mut o) => {
                    let (servers, kept) = o.get_mut();
                    if !servers.contains(&i) {
                        servers.push(i);
                    }
                    *kept = l;
                }
            }
        }
    }
    let mut out = Merged::default();
    let mut all: Vec<(LeaseKey, (Vec<usize>, Lease))> = map.into_iter().collect();
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, (servers, lease)) in all {
        if servers.len() > 1 {
            out.conflicts.push(Conflict { key, servers });
        } else {
            out.bindings.push(lease);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasequery::requestor::lease::V4Lease;
    use std::net::Ipv4Addr;

    fn v4(addr: [u8; 4], state: u8) -> Lease {
        Lease::V4(V4Lease {
            addr: Ipv4Addr::from(addr),
            port_params: None,
            htype: 1,
            chaddr: vec![2, 0, 0, 0, 0, 1],
            client_id: None,
            state,
            cltt: 1,
            expires: 2,
            relay_id: None,
            remote_id: None,
            softwire: None,
            dhcp4o6: false,
            link: None,
        })
    }

    #[test]
    fn disjoint_servers_give_the_union_and_a_shared_key_is_a_conflict() {
        let m = merge(vec![
            vec![v4([192, 0, 2, 1], 2), v4([192, 0, 2, 2], 2)],
            vec![v4([192, 0, 2, 3], 2)],
        ]);
        assert_eq!(m.bindings.len(), 3);
        assert!(m.conflicts.is_empty());
        let m = merge(vec![
            vec![v4([192, 0, 2, 1], 2), v4([192, 0, 2, 2], 2)],
            vec![v4([192, 0, 2, 2], 3), v4([192, 0, 2, 3], 2)],
            vec![v4([192, 0, 2, 2], 2)],
        ]);
        assert_eq!(
            m.bindings.iter().map(Lease::key).collect::<Vec<_>>(),
            vec![v4([192, 0, 2, 1], 2).key(), v4([192, 0, 2, 3], 2).key()]
        );
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].servers, vec![0, 1, 2]);
        // One server repeating a key is no conflict.
        let m = merge(vec![vec![v4([192, 0, 2, 1], 3), v4([192, 0, 2, 1], 2)]]);
        assert_eq!((m.bindings.len(), m.conflicts.len()), (1, 0));
        assert!(m.bindings[0].active());
    }
}
