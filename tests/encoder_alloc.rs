//! The reply encoder allocates nothing per record: 1000 records of each kind into a pre-sized
//! buffer, counted by a global allocator wrapper. Only allocations made by the test's own
//! thread count: the test harness's other threads allocate whenever they like.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};

use leasequery::proto::codes::{dhcp_state, v6opt};
use leasequery::proto::encoder::{
    BindingEncoder, Dhcp4o6ReplyParams, OroSet, PrlSet, Reply, StreamWriter, V4ReplyParams,
    V6ReplyParams,
};
use leasequery::proto::record::{PortParams, RelayRecord, V4Record, V6Addr, V6Context, V6Record};

struct Counting;

thread_local! {
    /// Allocations made by this thread.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn thousand_records_zero_allocations() {
    let now = 1_700_000_000;
    let duid = [0u8, 3, 0, 1, 2, 0, 0, 0, 0, 1];
    let cid = [255u8, 0, 0, 0, 1, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
    let relay = RelayRecord {
        hop_count: 0,
        link_address: Ipv6Addr::LOCALHOST,
        peer_address: Ipv6Addr::LOCALHOST,
        interface_id: Some(b"eth0"),
        relay_id: Some(&duid),
        remote_id: Some(&[0, 0, 0, 9, 1]),
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
        client_id: Some(&cid),
        state: dhcp_state::ACTIVE,
        cltt: now - 30,
        state_start: now - 60,
        expires: now + 3600,
        circuit_id: Some(b"c"),
        remote_id: Some(b"r"),
        relay_id: Some(&duid),
        softwire_src: Some(Ipv6Addr::LOCALHOST),
        v6: Some(V6Context {
            client_src: Ipv6Addr::LOCALHOST,
            link: Ipv6Addr::LOCALHOST,
            relay: Some(relay),
        }),
        data_source: 1,
    };
    let addrs = [V6Addr {
        addr: Ipv6Addr::LOCALHOST,
        preferred_until: now + 5,
        valid_until: now + 9,
    }; 2];
    let v6rec = V6Record {
        duid: &duid,
        link: Ipv6Addr::LOCALHOST,
        iana: &addrs,
        iapd: &[],
        cltt: now,
        relay_id: Some(&duid),
        remote_id: None,
    };
    let v6 = V6ReplyParams {
        xid: 1,
        requestor_duid: &duid,
        server_duid: &duid,
        oro: OroSet::from_codes([92, 96, 137, 47, v6opt::RELAY_ID, v6opt::LQ_BASE_TIME]),
        base_time: true,
        reply_status: None,
        now,
    };
    let v4 = V4ReplyParams {
        xid: 2,
        server_id: Ipv4Addr::LOCALHOST,
        prl: PrlSet::from_prl(&[91, 153, 156, 157, 109, 159]),
        now,
    };
    let o6 = Dhcp4o6ReplyParams {
        v6: v6.clone(),
        v4,
        br: Some(Ipv6Addr::LOCALHOST),
        bind_prefix: Some((56, Ipv6Addr::LOCALHOST)),
    };
    let mut buf = Vec::with_capacity(3 << 20);

    let before = allocs();
    let mut w = StreamWriter::new(&mut buf);
    let mut total = 0;
    for i in 0..1000 {
        let first = i == 0;
        total += w
            .write(&Reply::O6Binding {
                p: &o6,
                rec: &v4rec,
                first,
            })
            .unwrap()
            .len;
        total += w
            .write(&Reply::V4Binding {
                p: &v4,
                rec: &v4rec,
                first,
            })
            .unwrap()
            .len;
        total += w
            .write(&Reply::V6Binding {
                p: &v6,
                rec: &v6rec,
                first,
            })
            .unwrap()
            .len;
    }
    let after = allocs();

    assert_eq!(after - before, 0, "allocations while encoding 3000 records");
    assert_eq!(buf.len(), total);
    assert!(total > 3000 * 100);

    // The template path of the bulk scans: its templates are made once per query (they
    // allocate then), its records allocate nothing.
    let t6 = BindingEncoder::dhcp4o6(&o6, false);
    let t4 = BindingEncoder::v4(&v4, false);
    buf.clear();
    let before = allocs();
    let mut w = StreamWriter::new(&mut buf);
    for _ in 0..1000 {
        t6.write(&mut w, &v4rec).unwrap();
        t4.write(&mut w, &v4rec).unwrap();
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "allocations while encoding 2000 template records"
    );
    // The counter does see allocations.
    let probe: Vec<u8> = Vec::with_capacity(8);
    std::hint::black_box(&probe);
    assert!(allocs() > after);
}
