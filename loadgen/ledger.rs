//! The churn's ledger and its clock stamps, shared by the churn (which writes them), the
//! active subscribers and `--verify` (which read them): what each client holds after its last
//! DHCPACK ([`Entry`]), when it last sent and took an ACK ([`Stamps`]), and which client-ids are
//! loadgen clients' ([`loadgen_client`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use leasequery::proto::record::PortParams;

/// One lease in the ledger: what a client holds after its last ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Option 61 (RFC 4361).
    pub client_id: Vec<u8>,
    /// The IPv4 address.
    pub addr: Ipv4Addr,
    /// The port set of a shared address.
    pub port_params: Option<PortParams>,
    /// The softwire source the server echoed.
    pub softwire: Ipv6Addr,
}

impl Entry {
    /// The entry as one JSON line (no newline), as `churn --ledger` writes it.
    pub fn json(&self) -> String {
        let hex: String = self.client_id.iter().map(|b| format!("{b:02x}")).collect();
        let mut v = serde_json::json!({
            "client_id": hex,
            "ipv4": self.addr.to_string(),
            "softwire_src": self.softwire.to_string(),
        });
        if let Some(p) = self.port_params {
            v["psid"] = serde_json::json!({"offset": p.offset, "len": p.psid_len, "id": p.psid});
        }
        v.to_string()
    }
}

/// Writes `ledger` to `path` as JSON lines ([`Entry::json`]), through a temporary file renamed
/// into place.
pub fn write_jsonl(path: &std::path::Path, ledger: &[Entry]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for e in ledger {
        writeln!(w, "{}", e.json())?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The index of the loadgen client whose RFC 4361 client-id this is (any run's: 255, IAID =
/// index, DUID-LL with the client's MAC 02:4c:index, as [`leasequery::lwb4::client_id_of`]
/// builds it), if it is one. Allocates nothing (it runs once per active update).
pub fn loadgen_client(c: &[u8]) -> Option<u32> {
    if c.len() != 15 || c[0] != 255 || c[5..11] != [0, 3, 0, 1, 0x02, 0x4c] || c[1..5] != c[11..15]
    {
        return None;
    }
    Some(u32::from_be_bytes([c[1], c[2], c[3], c[4]]))
}

/// When each churn client last sent a change-making message and last took an ACK, in
/// nanoseconds since `t0` plus one (0: never). Written by the churn threads, read by the
/// subscriber threads.
#[derive(Debug)]
pub struct Stamps {
    t0: Instant,
    first: u32,
    sent: Vec<AtomicU64>,
    ack: Vec<AtomicU64>,
}

impl Stamps {
    /// Slots for clients `first .. first + clients`.
    pub fn new(t0: Instant, first: u32, clients: u32) -> Stamps {
        let n = clients as usize;
        Stamps {
            t0,
            first,
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ack: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, index: u32) -> Option<usize> {
        let i = index.checked_sub(self.first)? as usize;
        (i < self.sent.len()).then_some(i)
    }

    pub(crate) fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64 + 1
    }

    /// Client `index` sent a message that changes its binding.
    pub fn sent(&self, index: u32, at: Instant) {
        if let Some(i) = self.slot(index) {
            self.sent[i].store(self.ns(at), Ordering::Release);
        }
    }

    /// Client `index` took a DHCPACK.
    pub fn acked(&self, index: u32, at: Instant) {
        if let Some(i) = self.slot(index) {
            self.ack[i].store(self.ns(at), Ordering::Release);
        }
    }

    pub(crate) fn get(&self, index: u32) -> Option<(u64, u64)> {
        let i = self.slot(index)?;
        Some((
            self.sent[i].load(Ordering::Acquire),
            self.ack[i].load(Ordering::Acquire),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ledger_lines_name_every_field() {
        let e = Entry {
            client_id: vec![255, 1],
            addr: Ipv4Addr::new(192, 0, 2, 1),
            port_params: Some(PortParams {
                offset: 0,
                psid_len: 4,
                psid: 3,
            }),
            softwire: "2001:db8::1".parse().unwrap(),
        };
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["client_id"], "ff01");
        assert_eq!(v["ipv4"], "192.0.2.1");
        assert_eq!(v["psid"]["id"], 3);
        assert_eq!(v["psid"]["len"], 4);
        assert_eq!(v["softwire_src"], "2001:db8::1");
        let full = Entry {
            port_params: None,
            ..e
        };
        assert!(!full.json().contains("psid"));
        let dir = std::env::temp_dir().join(format!("ledger-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("l.jsonl");
        write_jsonl(&f, &[full.clone(), full]).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loadgen_client_ids_are_recognised() {
        for i in [0, 1, 255, 70_000, u32::MAX] {
            let id = leasequery::lwb4::client_id_of(i);
            assert_eq!(loadgen_client(&id), Some(i));
            let mut other = id.clone();
            other[14] ^= 1;
            assert_eq!(loadgen_client(&other), None);
            assert_eq!(loadgen_client(&id[..14]), None);
        }
        assert_eq!(loadgen_client(&[]), None);
    }

    #[test]
    fn stamps_know_the_run_s_clients() {
        let t0 = Instant::now();
        let s = Stamps::new(t0, 100, 10);
        assert_eq!(s.slot(105), Some(5));
        assert_eq!(s.slot(99), None);
        assert_eq!(s.slot(110), None);
        assert_eq!(s.get(110), None);
        assert_eq!(s.get(105), Some((0, 0)));
        s.sent(105, t0 + Duration::from_micros(5));
        s.acked(105, t0 + Duration::from_micros(9));
        assert_eq!(s.get(105), Some((5001, 9001)));
    }
}
