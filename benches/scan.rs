//! The scanning shard's share of a bulk stream, in one process, without sockets or shards:
//! walking a lease shard (`LeaseTable::scan_v4` with its record view) and encoding what it
//! yields with the per-query template encoder, in the scanner's budgeted turns.
//!
//! `cargo bench --bench scan` (env `SCAN_N` bindings, default 500,000: one shard's half of the
//! bulk_stream bench; `SCAN_RUNS` passes per case, default 7; `SCAN_ONLY` runs only the cases
//! whose name contains it, e.g. `SCAN_ONLY=4o6` for a profile). Prints ns per record, the median
//! over the passes, for:
//! - `walk`: the scan with a consumer that only reads the record's address;
//! - `walk+fields`: the consumer reads every field the encoder reads (so the cache misses are
//!   charged to the walk, not to the encoder);
//! - `walk+encode 4o6` / `walk+encode v4`: the scan path of a DHCP4o6 / DHCPv4 bulk query,
//!   records encoded into a 256 KiB chunk that is cleared when full (the "send").
//!
//! Bindings as in bulk_stream: 16 PSIDs per address, one link, seven relay-ids, a unique
//! remote-id, client-id and softwire source each.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use leasequery::lease::{
    LeaseTable, ScanCursor, ScanStep, V4Binding, V4Query, V4Select, V6ContextBinding,
};
use leasequery::proto::codes::v6opt;
use leasequery::proto::encoder::{
    BindingEncoder, Dhcp4o6ReplyParams, OroSet, PrlSet, StreamWriter, V4ReplyParams, V6ReplyParams,
};
use leasequery::proto::record::{PortParams, V4Record};
use leasequery::proto::EncodeError;

const NOW: u32 = 1_700_000_100;
const CHUNK: usize = 256 * 1024;
/// The scanner's records per turn (`shard::scan`).
const TURN: usize = 512;
const DUID: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

fn binding(i: u32) -> V4Binding {
    let mut mac = [2u8, 0, 0, 0, 0, 0];
    mac[2..].copy_from_slice(&i.to_be_bytes());
    let mut client_id = vec![0xff, 0, 0, 0, 0, 0, 3, 0, 1, 2, 0, 0];
    client_id.extend_from_slice(&i.to_be_bytes()[1..]);
    let softwire = Ipv6Addr::from((0x2001_0db8_0001_u128 << 80) | u128::from(i));
    V4Binding {
        addr: Ipv4Addr::from((10u32 << 24) + i / 16),
        port_params: Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: (i % 16) as u16,
        }),
        htype: 1,
        chaddr: mac.to_vec(),
        client_id: Some(client_id),
        state: 2,
        cltt: 1_700_000_000,
        state_start: 1_700_000_000,
        expires: 2_000_000_000,
        circuit_id: None,
        remote_id: Some(u64::from(i).to_be_bytes().to_vec()),
        relay_id: Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, (i % 7) as u8]),
        softwire_src: Some(softwire),
        v6: Some(V6ContextBinding {
            client_src: softwire,
            link: "2001:db8:1::".parse().expect("literal"),
            relay: None,
        }),
        data_source: 0,
    }
}

/// One whole scan of `q` in turns of `TURN`, every record handed to `each`; returns the
/// records seen.
fn scan(shard: &LeaseTable, q: &V4Query, mut each: impl FnMut(V4Record<'_>)) -> u64 {
    let mut cur: ScanCursor = shard.start_v4(q);
    let mut n = 0u64;
    loop {
        let step = shard.scan_v4(q, &mut cur, TURN, |r| {
            each(r);
            n += 1;
            true
        });
        if step == ScanStep::Done {
            return n;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("SCAN_N", 500_000);
    let runs = env("SCAN_RUNS", 7).max(1);
    let mut shard = LeaseTable::new();
    for i in 0..n {
        shard.upsert_v4(binding(i)).expect("insert");
    }
    let by_link = V4Query {
        select: V4Select::Link("2001:db8:1::".parse().expect("literal")),
        changed_since: None,
        changed_until: None,
        only_4o6: true,
        only_active: false,
    };
    let all = V4Query::all();
    // The bench's queries: DHCP4o6 with ORO [OPTION_S46_V4V6BIND], PRL [51, 91, 152, 159];
    // DHCPv4 with PRL [51, 91, 152, 159].
    let v4p = V4ReplyParams {
        xid: 0x1122_3344,
        server_id: Ipv4Addr::LOCALHOST,
        prl: PrlSet::from_prl(&[51, 91, 152, 159]),
        now: NOW,
    };
    let o6p = Dhcp4o6ReplyParams {
        v6: V6ReplyParams {
            xid: 0xabcdef,
            requestor_duid: &DUID,
            server_duid: &DUID,
            oro: OroSet::from_codes([v6opt::S46_V4V6BIND]),
            base_time: false,
            reply_status: None,
            now: NOW,
        },
        v4: v4p,
        br: None,
        bind_prefix: None,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    println!("scan: {n} DHCP4o6 bindings in one shard, {runs} passes per case, ns per record");
    let expect = u64::from(n);
    timed("walk (by link)", runs, expect, || {
        (
            scan(&shard, &by_link, |r| {
                black_box(r.addr);
            }),
            0,
        )
    });
    timed("walk+fields (by link)", runs, expect, || {
        (
            scan(&shard, &by_link, |r| {
                let mut x = r.chaddr.first().copied().unwrap_or(0);
                for f in [r.client_id, r.remote_id, r.relay_id, r.circuit_id]
                    .into_iter()
                    .flatten()
                {
                    x ^= f.last().copied().unwrap_or(0);
                }
                black_box((x, r.softwire_src, r.v6.map(|v| v.link), r.port_params));
            }),
            0,
        )
    });
    for (name, q, o6) in [
        ("walk+encode 4o6 (by link)", &by_link, true),
        ("walk+encode v4 (all)", &all, false),
    ] {
        timed(name, runs, expect, || {
            let (mut seen, mut octets) = (0u64, 0u64);
            let mut cur = shard.start_v4(q);
            loop {
                // A template per turn, as the scanner makes one per turn.
                let enc = if o6 {
                    BindingEncoder::dhcp4o6(&o6p, false)
                } else {
                    BindingEncoder::v4(&v4p, false)
                };
                let step = shard.scan_v4(q, &mut cur, TURN, |r| loop {
                    let mut w = StreamWriter::with_limit(&mut buf, CHUNK);
                    match enc.write(&mut w, &r) {
                        Ok(at) => {
                            seen += 1;
                            octets += at.len as u64;
                            return true;
                        }
                        Err(EncodeError::BufferFull { .. }) => {
                            // The chunk goes to the writer: here it is only cleared.
                            black_box(buf.as_slice());
                            buf.clear();
                        }
                        Err(e) => panic!("{e}"),
                    }
                });
                if step == ScanStep::Done {
                    return (seen, octets);
                }
            }
        });
    }
}

/// Runs `pass` `runs` times (each returns the records it saw and the octets it wrote) and
/// prints the median and the fastest ns per record.
fn timed(name: &str, runs: u32, expect: u64, mut pass: impl FnMut() -> (u64, u64)) {
    if std::env::var("SCAN_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let mut ns = vec![];
    let mut octets = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (seen, o) = pass();
        let took = t.elapsed();
        assert_eq!(seen, expect, "{name}: every binding once");
        ns.push(took.as_nanos() as f64 / expect as f64);
        octets = o;
    }
    let min = ns.iter().copied().fold(f64::MAX, f64::min);
    let per = if octets > 0 {
        format!(", {:.0} octets/record", octets as f64 / expect as f64)
    } else {
        String::new()
    };
    println!("  {name}: {:.1} ns/record (min {min:.1}){per}", median(ns));
}
