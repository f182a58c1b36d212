//! Reply encoder throughput: records/s and bytes/s encoding DHCP4o6, DHCPv4 and DHCPv6 binding
//! records into a 1 MiB buffer (flushed, i.e. cleared, whenever it is full).
//!
//! `records` and `bytes` measure the path a bulk scan uses: for DHCP4o6 and DHCPv4 the
//! per-query template encoder ([`BindingEncoder`], made once per query), for DHCPv6 the
//! reference encoder. `reference` measures the reference encoder ([`StreamWriter::write`] of a
//! [`Reply`]) for DHCP4o6 and DHCPv4, the path that was `records` before the template.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leasequery::proto::codes::{dhcp_state, v6opt};
use leasequery::proto::encoder::{
    BindingEncoder, Dhcp4o6ReplyParams, EncodedAt, OroSet, PrlSet, Reply, StreamWriter,
    V4ReplyParams, V6ReplyParams,
};
use leasequery::proto::record::{PortParams, RelayRecord, V4Record, V6Addr, V6Context, V6Record};
use leasequery::proto::EncodeError;

const RECORDS: u64 = 10_000;
const NOW: u32 = 1_700_000_000;
const DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const CID: [u8; 15] = [255, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];

fn bench(c: &mut Criterion) {
    let relay = RelayRecord {
        hop_count: 0,
        link_address: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
        peer_address: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        interface_id: Some(b"eth0"),
        relay_id: Some(&DUID),
        remote_id: None,
    };
    let v4rec = V4Record {
        addr: Ipv4Addr::new(198, 51, 100, 7),
        port_params: Some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: 3,
        }),
        htype: 1,
        chaddr: &[2, 0, 0, 0, 0, 1],
        client_id: Some(&CID),
        state: dhcp_state::ACTIVE,
        cltt: NOW - 30,
        state_start: NOW - 60,
        expires: NOW + 3600,
        circuit_id: None,
        remote_id: None,
        relay_id: Some(&DUID),
        softwire_src: Some(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
        v6: Some(V6Context {
            client_src: relay.peer_address,
            link: relay.link_address,
            relay: Some(relay),
        }),
        data_source: 0,
    };
    let addrs = [V6Addr {
        addr: Ipv6Addr::LOCALHOST,
        preferred_until: NOW + 5,
        valid_until: NOW + 9,
    }];
    let v6rec = V6Record {
        duid: &DUID,
        link: Ipv6Addr::LOCALHOST,
        iana: &addrs,
        iapd: &[],
        cltt: NOW - 3,
        relay_id: Some(&DUID),
        remote_id: None,
    };
    let v6 = V6ReplyParams {
        xid: 1,
        requestor_duid: &DUID,
        server_duid: &DUID,
        oro: OroSet::from_codes([v6opt::S46_V4V6BIND, v6opt::RELAY_ID]),
        base_time: false,
        reply_status: None,
        now: NOW,
    };
    let v4 = V4ReplyParams {
        xid: 2,
        server_id: Ipv4Addr::LOCALHOST,
        prl: PrlSet::from_prl(&[91, 153, 159]),
        now: NOW,
    };
    let o6 = Dhcp4o6ReplyParams {
        v6: v6.clone(),
        v4,
        br: None,
        bind_prefix: None,
    };

    let t6 = BindingEncoder::dhcp4o6(&o6, false);
    let t4 = BindingEncoder::v4(&v4, false);
    let cases: [(&str, Reply<'_>, Option<&BindingEncoder<'_>>); 3] = [
        (
            "4o6",
            Reply::O6Binding {
                p: &o6,
                rec: &v4rec,
                first: false,
            },
            Some(&t6),
        ),
        (
            "v4",
            Reply::V4Binding {
                p: &v4,
                rec: &v4rec,
                first: false,
            },
            Some(&t4),
        ),
        (
            "v6",
            Reply::V6Binding {
                p: &v6,
                rec: &v6rec,
                first: false,
            },
            None,
        ),
    ];
    let mut buf = Vec::with_capacity(1 << 20);
    for (name, reply, template) in cases {
        let per = reply.frame_len().expect("encodable") as u64;
        let mut g = c.benchmark_group(format!("encode_{name}"));
        let reference = |w: &mut StreamWriter<'_>| w.write(black_box(&reply));
        let scan_path = |w: &mut StreamWriter<'_>| match template {
            Some(t) => t.write(w, black_box(&v4rec)),
            None => w.write(black_box(&reply)),
        };
        g.throughput(Throughput::Elements(RECORDS));
        g.bench_function("records", |b| b.iter(|| fill(&mut buf, scan_path)));
        g.throughput(Throughput::Bytes(RECORDS * per));
        g.bench_function("bytes", |b| b.iter(|| fill(&mut buf, scan_path)));
        if template.is_some() {
            g.throughput(Throughput::Elements(RECORDS));
            g.bench_function("reference", |b| b.iter(|| fill(&mut buf, reference)));
        }
        // The sizing pass alone (what a count-then-write encoder spends on top of writing).
        g.throughput(Throughput::Elements(RECORDS));
        g.bench_function("frame_len_only", |b| {
            b.iter(|| {
                for _ in 0..RECORDS {
                    black_box(black_box(&reply).frame_len().unwrap());
                }
            })
        });
        g.finish();
    }
}

/// Writes `RECORDS` records with `write`, clearing the 1 MiB buffer whenever it is full.
fn fill(
    buf: &mut Vec<u8>,
    write: impl Fn(&mut StreamWriter<'_>) -> Result<EncodedAt, EncodeError>,
) {
    buf.clear();
    let mut w = StreamWriter::new(buf);
    let mut n = 0;
    while n < RECORDS {
        match write(&mut w) {
            Ok(_) => n += 1,
            Err(EncodeError::BufferFull { .. }) => {
                buf.clear(); // the "flush"
                w = StreamWriter::new(buf);
            }
            Err(e) => panic!("{e}"),
        }
    }
    black_box(w.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
