//! The durable lease journal on glommio DMA files: append + commit + replay, group commit,
//! torn tails, corrupt middles, shard count changes, snapshots with compaction, server DUID.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use leasequery::lease::{
    shard_of_addr, shard_of_duid, Change, ChangeKind, LeaseTable, ScanStep, V4Binding, V4Query,
    V4Select, V6Binding,
};
use leasequery::proto::record::{PortParams, V6Addr};
use leasequery::store::record::{unframe, Frame, BLOCK};
use leasequery::store::{
    replay, server_duid, Journal, JournalConfig, StoreError, DEFAULT_JOURNAL_COMPACT_BYTES,
};

/// A unique scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("lq-store-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a fresh glommio executor thread (small io_uring buffers: memlock is 8 MiB).
fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("test body ran");
}

fn v4(i: u32, cltt: u32) -> V4Binding {
    let addr = Ipv4Addr::from(0xC000_0200u32 + i);
    V4Binding {
        addr,
        port_params: (i % 3 == 0).then_some(PortParams {
            offset: 0,
            psid_len: 4,
            psid: (i % 16) as u16,
        }),
        htype: 1,
        chaddr: vec![2, 0, 0, 0, (i >> 8) as u8, i as u8],
        client_id: Some(vec![255, 0, 0, 0, 1, (i >> 8) as u8, i as u8]),
        state: 2,
        cltt,
        state_start: cltt,
        expires: cltt + 3600,
        circuit_id: None,
        remote_id: (i % 2 == 0).then(|| vec![0, 0, 0, 9, i as u8]),
        relay_id: None,
        softwire_src: Some(std::net::Ipv6Addr::from(
            (0x2001_0db8u128 << 96) | u128::from(i + 1),
        )),
        v6: None,
        data_source: 0,
    }
}

fn v6(i: u32, cltt: u32) -> V6Binding {
    V6Binding {
        duid: vec![0, 3, 0, 1, 2, 0, 0, (i >> 8) as u8, i as u8],
        link: "2001:db8:1::".parse().unwrap(),
        iana: vec![V6Addr {
            addr: format!("2001:db8:1::{:x}", i + 1).parse().unwrap(),
            preferred_until: cltt + 100,
            valid_until: cltt + 200,
        }],
        iapd: vec![],
        cltt,
        relay_id: None,
        remote_id: None,
    }
}

fn ch4(kind: ChangeKind, b: &V4Binding) -> Change {
    Change::V4 {
        at: b.cltt,
        kind,
        binding: b.clone(),
    }
}

fn ch6(kind: ChangeKind, b: &V6Binding) -> Change {
    Change::V6 {
        at: b.cltt,
        kind,
        binding: b.clone(),
    }
}

type Key4 = (Ipv4Addr, Option<PortParams>);

/// The model: what replay must give.
#[derive(Default)]
struct Model {
    v4: HashMap<Key4, V4Binding>,
    v6: HashMap<(Vec<u8>, std::net::Ipv6Addr), V6Binding>,
}

impl Model {
    fn apply(&mut self, c: &Change) {
        match c {
            Change::V4 { kind, binding, .. } => {
                let k = (binding.addr, binding.port_params);
                if *kind == ChangeKind::Remove {
                    self.v4.remove(&k);
                } else {
                    self.v4.insert(k, binding.clone());
                }
            }
            Change::V6 { kind, binding, .. } => {
                let k = (binding.duid.clone(), binding.link);
                if *kind == ChangeKind::Remove {
                    self.v6.remove(&k);
                } else {
                    self.v6.insert(k, binding.clone());
                }
            }
        }
    }

    /// Checks `r` holds exactly the model's bindings, each on its shard for `shards`.
    fn check(&self, r: &leasequery::store::Replayed, shards: usize) {
        assert_eq!(r.v4.len(), shards);
        assert_eq!(r.v6.len(), shards);
        assert_eq!(r.v4_count(), self.v4.len(), "v4 count");
        assert_eq!(r.v6_count(), self.v6.len(), "v6 count");
        for (s, list) in r.v4.iter().enumerate() {
            for b in list {
                assert_eq!(shard_of_addr(b.addr, shards), s);
                assert_eq!(self.v4.get(&(b.addr, b.port_params)), Some(b));
            }
        }
        for (s, list) in r.v6.iter().enumerate() {
            for b in list {
                assert_eq!(shard_of_duid(&b.duid, shards), s);
                assert_eq!(self.v6.get(&(b.duid.clone(), b.link)), Some(b));
            }
        }
    }
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a journal segment's bytes.
fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut p = BLOCK;
    while p < data.len() {
        match unframe(&data[p..]) {
            Ok(Frame::Record { total, .. }) => {
                out.push(p);
                p += total;
            }
            Ok(Frame::Padding) => p = (p / BLOCK + 1) * BLOCK,
            Err(_) => break,
        }
    }
    out
}

#[test]
fn append_commit_replay_round_trip() {
    let tmp = TempDir::new("roundtrip");
    let dir = tmp.0.clone();
    let changes: Vec<Change> = {
        let mut c = Vec::new();
        for i in 0..200 {
            c.push(ch4(ChangeKind::New, &v4(i, 1000 + i)));
        }
        for i in 0..20 {
            c.push(ch6(ChangeKind::New, &v6(i, 2000 + i)));
        }
        for i in 0..50 {
            c.push(ch4(ChangeKind::Renew, &v4(i, 5000 + i)));
        }
        c.push(ch4(ChangeKind::Remove, &v4(7, 6000)));
        c.push(ch6(ChangeKind::Remove, &v6(3, 6000)));
        c
    };
    let mut model = Model::default();
    changes.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        for (n, c) in changes.iter().enumerate() {
            assert_eq!(j.append(c).unwrap(), n as u64 + 1);
        }
        assert_eq!(j.durable_seq(), 0);
        j.commit().await.unwrap();
        assert_eq!(j.durable_seq(), changes.len() as u64);
        let s = j.stats();
        assert_eq!(s.appends, changes.len() as u64);
        assert_eq!(s.commits, 1);
        assert!(s.bytes > 0 && s.written >= s.bytes);
        assert_eq!(s.written % BLOCK as u64, 0);
        // Nothing new: commit returns at once without a sync.
        j.commit().await.unwrap();
        assert_eq!(j.stats().commits, 1);
    });
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.journal_records, 272);
    assert_eq!(r.torn_tails_cut, 0);
    assert_eq!(r.old_shards, Some(1));
    assert!(!r.resharded);
    model.check(&r, 1);
    // Replay is repeatable and a reopened journal appends to a new segment.
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        assert!(j.journal_bytes() > 0);
        j.append(&ch4(ChangeKind::New, &v4(900, 9))).unwrap();
        j.commit().await.unwrap();
        j.close().await.unwrap();
        // Still usable after close: a new segment, the closed one is not rewritten.
        j.append(&ch4(ChangeKind::New, &v4(901, 9))).unwrap();
        j.close().await.unwrap();
    });
    assert_eq!(journal_files(&dir.join("shard-0")).len(), 3);
    model.apply(&ch4(ChangeKind::New, &v4(900, 9)));
    model.apply(&ch4(ChangeKind::New, &v4(901, 9)));
    model.check(&replay(&dir, 1).unwrap(), 1);
}

#[test]
fn group_commit_shares_syncs() {
    const N: u32 = 64;
    let tmp = TempDir::new("group");
    let dir = tmp.0.clone();
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        let done = Rc::new(std::cell::Cell::new(0u32));
        let mut tasks = Vec::new();
        for i in 0..N {
            let j = j.clone();
            let done = done.clone();
            tasks.push(glommio::spawn_local(async move {
                let seq = j.append(&ch4(ChangeKind::New, &v4(i, 100))).unwrap();
                j.wait_durable(seq).await.unwrap();
                assert!(j.durable_seq() >= seq);
                done.set(done.get() + 1);
            }));
        }
        for t in tasks {
            t.await;
        }
        assert_eq!(done.get(), N);
        let s = j.stats();
        assert_eq!(s.appends, u64::from(N));
        eprintln!("group commit: {N} appends, {} syncs", s.commits);
        assert!(
            s.commits >= 1 && s.commits < u64::from(N),
            "syncs: {}",
            s.commits
        );
        // A second wave where every task yields between append and wait.
        let mut tasks = Vec::new();
        for i in N..2 * N {
            let j = j.clone();
            tasks.push(glommio::spawn_local(async move {
                let seq = j.append(&ch4(ChangeKind::New, &v4(i, 100))).unwrap();
                glommio::yield_if_needed().await;
                j.wait_durable(seq).await.unwrap();
            }));
        }
        for t in tasks {
            t.await;
        }
        assert!(j.stats().commits < u64::from(2 * N));
    });
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.journal_records, u64::from(2 * N));
    let mut model = Model::default();
    for i in 0..2 * N {
        model.apply(&ch4(ChangeKind::New, &v4(i, 100)));
    }
    model.check(&r, 1);
}

/// Writes `batches` commits of `per` records each in shard 0 of 1; returns the model.
fn write_batches(dir: &Path, batches: u32, per: u32) -> Model {
    let d = dir.to_path_buf();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        for b in 0..batches {
            for i in 0..per {
                j.append(&ch4(ChangeKind::New, &v4(b * per + i, 10 + b)))
                    .unwrap();
            }
            j.commit().await.unwrap();
        }
        assert_eq!(j.stats().commits, u64::from(batches));
    });
    let mut m = Model::default();
    for b in 0..batches {
        for i in 0..per {
            m.apply(&ch4(ChangeKind::New, &v4(b * per + i, 10 + b)));
        }
    }
    m
}

#[test]
fn torn_tail_is_cut() {
    // Truncated mid-record.
    let tmp = TempDir::new("torn");
    let dir = tmp.0.clone();
    let _ = write_batches(&dir, 3, 10);
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let data = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&data);
    assert_eq!(offs.len(), 30);
    let last = *offs.last().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last as u64 + 11).unwrap();
    drop(f);
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 1);
    assert_eq!(r.journal_records, 29);
    let mut m = Model::default();
    for i in 0..29 {
        m.apply(&ch4(ChangeKind::New, &v4(i, 10 + i / 10)));
    }
    m.check(&r, 1);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), last as u64);
    // The cut is durable: a second replay finds nothing to cut.
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 0);
    m.check(&r, 1);

    // Garbage after the last record (a torn write of the next commit).
    let tmp = TempDir::new("torn-garbage");
    let dir = tmp.0.clone();
    let m = write_batches(&dir, 2, 10);
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&data);
    let end = {
        let last = *offs.last().unwrap();
        match unframe(&data[last..]).unwrap() {
            Frame::Record { total, .. } => last + total,
            Frame::Padding => unreachable!(),
        }
    };
    let mut x = 0x1234_5678u32;
    for b in data[end..].iter_mut().take(300) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x as u8) | 1;
    }
    data.extend((0..1000u32).map(|i| (i * 7 + 3) as u8));
    std::fs::write(&seg, &data).unwrap();
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 1);
    assert_eq!(r.journal_records, 20);
    m.check(&r, 1);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), end as u64);
}

#[test]
fn corrupt_middle_stops_with_file_and_offset() {
    let tmp = TempDir::new("corrupt");
    let dir = tmp.0.clone();
    let _ = write_batches(&dir, 3, 10);
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&data);
    let victim = offs[12];
    data[victim + 20] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    match replay(&dir, 1) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg.display().to_string());
            assert_eq!(offset, victim as u64);
        }
        other => panic!("expected a corrupt middle, got {other:?}"),
    }
    // Nothing was cut: the file is as damaged as before.
    assert_eq!(std::fs::read(&seg).unwrap(), data);
    let msg = replay(&dir, 1).unwrap_err().to_string();
    assert!(msg.contains(&format!("offset {victim}")), "{msg}");
    assert!(msg.contains("journal-"), "{msg}");
}

#[test]
fn shard_count_change_keeps_every_binding_once() {
    let tmp = TempDir::new("reshard");
    let dir = tmp.0.clone();
    let mut model = Model::default();
    let mut first = Vec::new();
    for i in 0..300 {
        first.push(ch4(ChangeKind::New, &v4(i, 100)));
    }
    for i in 0..40 {
        first.push(ch6(ChangeKind::New, &v6(i, 100)));
    }
    for i in (0..300).step_by(7) {
        first.push(ch4(ChangeKind::Renew, &v4(i, 200)));
    }
    first.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let js = [
            Journal::open(&d, 0, 2).unwrap(),
            Journal::open(&d, 1, 2).unwrap(),
        ];
        let mut shard1 = Model::default();
        for (n, c) in first.iter().enumerate() {
            let s = match c {
                Change::V4 { binding, .. } => shard_of_addr(binding.addr, 2),
                Change::V6 { binding, .. } => shard_of_duid(&binding.duid, 2),
            };
            js[s].append(c).unwrap();
            if s == 1 {
                shard1.apply(c);
            }
            if n == 150 {
                // A snapshot of shard 1 in the middle (its table: the model's part so far).
                js[0].commit().await.unwrap();
                let info = js[1]
                    .snapshot(shard1.v4.values().cloned(), shard1.v6.values().cloned())
                    .await
                    .unwrap();
                assert_eq!(info.bindings as usize, shard1.v4.len() + shard1.v6.len());
            }
        }
        js[0].commit().await.unwrap();
        js[1].commit().await.unwrap();
    });
    let r = replay(&dir, 2).unwrap();
    assert!(!r.resharded);
    assert!(r.snapshot_bindings > 0);
    model.check(&r, 2);

    // 2 -> 1.
    let r = replay(&dir, 1).unwrap();
    assert!(r.resharded);
    assert_eq!(r.old_shards, Some(2));
    model.check(&r, 1);
    assert!(!dir.join("shard-1").exists());
    assert!(!dir.join("reshard.new").exists());
    // Journal::open refuses a directory of another shard count.
    assert!(matches!(
        Journal::open(&dir, 0, 2),
        Err(StoreError::WrongShard { .. })
    ));
    let mut more = Vec::new();
    for i in 0..30 {
        more.push(ch4(ChangeKind::Renew, &v4(i, 300)));
    }
    more.push(ch4(ChangeKind::Remove, &v4(31, 300)));
    more.push(ch6(ChangeKind::Remove, &v6(5, 300)));
    for i in 300..320 {
        more.push(ch4(ChangeKind::New, &v4(i, 300)));
    }
    more.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        for c in &more {
            j.append(c).unwrap();
        }
        j.commit().await.unwrap();
    });
    let r = replay(&dir, 1).unwrap();
    assert!(!r.resharded);
    model.check(&r, 1);

    // 1 -> 3.
    let epoch = leasequery::store::journal_epoch(&dir).unwrap();
    let r = replay(&dir, 3).unwrap();
    assert!(r.resharded);
    assert_eq!(r.old_shards, Some(1));
    model.check(&r, 3);
    let r = replay(&dir, 3).unwrap();
    assert!(!r.resharded);
    assert_eq!(r.old_shards, Some(3));
    model.check(&r, 3);
    let mut dirs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        ["journal-epoch", "shard-0", "shard-1", "shard-2", "shards"]
    );
    assert_eq!(std::fs::read_to_string(dir.join("shards")).unwrap(), "3\n");
    // The rewrite renumbered the journals: a new epoch (issue 18, the stream's seq).
    assert_eq!(leasequery::store::journal_epoch(&dir).unwrap(), epoch + 1);
    // Every new shard's journal opens.
    for k in 0..3 {
        Journal::open(&dir, k, 3).unwrap();
    }
}

fn table_v4(t: &LeaseTable) -> Vec<V4Binding> {
    let q = V4Query {
        select: V4Select::All,
        changed_since: None,
        changed_until: None,
        only_4o6: false,
        only_active: false,
    };
    let mut cur = t.start_v4(&q);
    let mut out = Vec::new();
    loop {
        let step = t.scan_v4(&q, &mut cur, 1000, |r| {
            out.push(leasequery::lease::V4Binding::from_record(&r));
            true
        });
        if step == ScanStep::Done {
            break;
        }
    }
    out
}

#[test]
fn snapshot_compacts_and_replays_to_the_table() {
    let tmp = TempDir::new("snapshot");
    let dir = tmp.0.clone();
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open_with(
            &d,
            0,
            1,
            JournalConfig {
                segment_bytes: 8 * 1024,
                ..JournalConfig::default()
            },
        )
        .unwrap();
        let mut table = LeaseTable::new();
        let mut v6s: HashMap<Vec<u8>, V6Binding> = HashMap::new();
        for round in 0..3u32 {
            for i in 0..200 {
                let b = v4(i, 1000 * round + i);
                table.upsert_v4(b.clone()).unwrap();
                j.append(&ch4(ChangeKind::Renew, &b)).unwrap();
            }
            j.commit().await.unwrap();
        }
        for i in 0..10 {
            let b = v6(i, 50);
            table.upsert_v6(b.clone()).unwrap();
            v6s.insert(b.duid.clone(), b.clone());
            j.append(&ch6(ChangeKind::New, &b)).unwrap();
        }
        // Some appended but not yet durable at the cut.
        let gone = v4(3, 9999);
        table.remove_v4(gone.addr, gone.port_params);
        j.append(&ch4(ChangeKind::Remove, &gone)).unwrap();
        let segs_before = journal_files(j.dir()).len();
        assert!(segs_before > 1, "small segments rotate: {segs_before}");
        assert!(j.journal_bytes() > 0);
        let snap = j.snapshot(table_v4(&table), v6s.values().cloned());
        assert!(j.snapshot_in_progress());
        assert_eq!(j.journal_bytes(), 0);
        // Changes after the cut go to a new segment.
        let late = v4(500, 77);
        table.upsert_v4(late.clone()).unwrap();
        let seq = j.append(&ch4(ChangeKind::New, &late)).unwrap();
        assert!(matches!(
            j.snapshot(Vec::new(), Vec::new()).await,
            Err(StoreError::SnapshotBusy)
        ));
        let info = snap.await.unwrap();
        assert!(!j.snapshot_in_progress());
        assert_eq!(info.bindings, 199 + 10);
        assert!(info.removed_files >= segs_before);
        j.wait_durable(seq).await.unwrap();
        assert_eq!(j.stats().snapshots, 1);
        let names: Vec<String> = std::fs::read_dir(j.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.iter().filter(|n| n.ends_with(".snap")).count(), 1);
        assert_eq!(
            names.iter().filter(|n| n.ends_with(".log")).count(),
            1,
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.ends_with(".tmp")));

        drop(j);
        let r = replay(&d, 1).unwrap();
        assert_eq!(r.snapshot_bindings, 209);
        assert_eq!(r.journal_records, 1);
        let mut want = table_v4(&table);
        want.sort_by_key(|b| {
            (
                u32::from(b.addr),
                b.port_params.map(|p| (p.psid_len, p.psid)),
            )
        });
        let mut got = r.v4[0].clone();
        got.sort_by_key(|b| {
            (
                u32::from(b.addr),
                b.port_params.map(|p| (p.psid_len, p.psid)),
            )
        });
        assert_eq!(got, want);
        assert_eq!(r.v6_count(), 10);
        for b in &r.v6[0] {
            assert_eq!(v6s.get(&b.duid), Some(b));
        }
    });
}

#[test]
fn backlog_is_bounded() {
    let tmp = TempDir::new("backlog");
    let d = tmp.0.clone();
    run(move || async move {
        let j = Journal::open_with(
            &d,
            0,
            1,
            JournalConfig {
                max_pending_bytes: 2000,
                ..JournalConfig::default()
            },
        )
        .unwrap();
        let mut n = 0;
        let err = loop {
            match j.append(&ch4(ChangeKind::New, &v4(n, 1))) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, StoreError::Backlog(_)));
        assert!(n > 5);
        j.commit().await.unwrap();
        j.append(&ch4(ChangeKind::New, &v4(n, 1))).unwrap();
        j.commit().await.unwrap();
    });
    assert_eq!(DEFAULT_JOURNAL_COMPACT_BYTES, 256 << 20);
}

#[test]
fn server_duid_is_stable() {
    let tmp = TempDir::new("duid");
    let a = server_duid(&tmp.0).unwrap();
    assert_eq!(a.len(), 18);
    assert_eq!(&a[..2], &[0, 4]);
    let b = server_duid(&tmp.0).unwrap();
    assert_eq!(a, b);
    let text = std::fs::read_to_string(tmp.0.join("server-duid")).unwrap();
    assert_eq!(text.trim(), hex::encode(&a));
    let other = TempDir::new("duid2");
    assert_ne!(server_duid(&other.0).unwrap(), a);
    std::fs::write(other.0.join("server-duid"), "zz\n").unwrap();
    assert!(matches!(
        server_duid(&other.0),
        Err(StoreError::BadDuid { .. })
    ));
}

#[test]
fn rotated_segments_replay_in_order() {
    let tmp = TempDir::new("rotate");
    let dir = tmp.0.clone();
    let mut changes = Vec::new();
    for round in 0..6u32 {
        for i in 0..100 {
            changes.push(ch4(ChangeKind::Renew, &v4(i, round * 1000 + i)));
        }
    }
    let mut model = Model::default();
    changes.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open_with(
            &d,
            0,
            1,
            JournalConfig {
                segment_bytes: 6 * 1024,
                ..JournalConfig::default()
            },
        )
        .unwrap();
        for chunk in changes.chunks(70) {
            for c in chunk {
                j.append(c).unwrap();
            }
            j.commit().await.unwrap();
        }
        let files = journal_files(j.dir()).len();
        assert!(files > 3, "{files} segments");
        let on_disk: u64 = journal_files(j.dir())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(j.journal_bytes(), on_disk);
        assert_eq!(j.stats().written, on_disk);
    });
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.journal_records, 600);
    model.check(&r, 1);
}

#[test]
fn empty_new_segment_is_cut_and_bad_older_segment_is_refused() {
    let tmp = TempDir::new("emptyseg");
    let dir = tmp.0.clone();
    let m = write_batches(&dir, 2, 10);
    let sdir = dir.join("shard-0");
    let seg = journal_files(&sdir).pop().unwrap();
    // A segment created by a commit whose header never reached the disk.
    let empty = sdir.join("journal-00000000000000ff.log");
    std::fs::write(&empty, vec![0u8; BLOCK]).unwrap();
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 1);
    assert!(!empty.exists());
    m.check(&r, 1);
    // Same with a half-written header and no record after it.
    let mut half = std::fs::read(&seg).unwrap()[..BLOCK].to_vec();
    half[16..].fill(0);
    std::fs::write(&empty, &half).unwrap();
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 1);
    assert!(!empty.exists());
    m.check(&r, 1);
    // A damaged header in front of valid records is not torn.
    let mut bad = std::fs::read(&seg).unwrap();
    bad[3] ^= 0xff;
    std::fs::write(&empty, &bad).unwrap();
    match replay(&dir, 1) {
        Err(StoreError::Corrupt {
            file, offset: 0, ..
        }) => {
            assert_eq!(file, empty.display().to_string())
        }
        other => panic!("expected a bad header, got {other:?}"),
    }
    std::fs::remove_file(&empty).unwrap();

    // A later segment exists: a short older segment is not a torn tail.
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        j.append(&ch4(ChangeKind::New, &v4(777, 1))).unwrap();
        j.commit().await.unwrap();
    });
    let data = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&data);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(offs[15] as u64 + 3).unwrap();
    drop(f);
    match replay(&dir, 1) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg.display().to_string());
            assert_eq!(offset, offs[15] as u64);
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn interrupted_reshard_is_finished_or_discarded() {
    let tmp = TempDir::new("reshard-crash");
    let dir = tmp.0.clone();
    let mut model = Model::default();
    let changes: Vec<Change> = (0..120).map(|i| ch4(ChangeKind::New, &v4(i, 5))).collect();
    changes.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let js = [
            Journal::open(&d, 0, 2).unwrap(),
            Journal::open(&d, 1, 2).unwrap(),
        ];
        for c in &changes {
            if let Change::V4 { binding, .. } = c {
                js[shard_of_addr(binding.addr, 2)].append(c).unwrap();
            }
        }
        js[0].commit().await.unwrap();
        js[1].commit().await.unwrap();
    });
    // The new layout for 3 shards, made in a copy.
    let scratch = TempDir::new("reshard-scratch");
    copy_dir(&dir, &scratch.0);
    replay(&scratch.0, 3).unwrap();

    // Crash after the commit point (reshard.new complete), before the old dirs went away.
    let new = dir.join("reshard.new");
    copy_dir(&scratch.0, &new);
    // And a leftover uncommitted attempt.
    std::fs::create_dir_all(dir.join("reshard.tmp/shard-0")).unwrap();
    let r = replay(&dir, 3).unwrap();
    assert!(
        !r.resharded,
        "the committed rewrite is finished, not redone"
    );
    assert_eq!(r.old_shards, Some(3));
    model.check(&r, 3);
    assert!(!new.exists() && !dir.join("reshard.tmp").exists());

    // Crash while moving: old dirs gone (marker written), shard-0 already moved.
    let tmp2 = TempDir::new("reshard-crash2");
    let dir2 = tmp2.0.clone();
    let new2 = dir2.join("reshard.new");
    copy_dir(&scratch.0, &new2);
    std::fs::write(new2.join("old-removed"), b"").unwrap();
    std::fs::rename(new2.join("shard-0"), dir2.join("shard-0")).unwrap();
    let r = replay(&dir2, 3).unwrap();
    model.check(&r, 3);
    assert!(!new2.exists());
}

/// Not a benchmark with assertions: prints how many durable appends per second group commit
/// gives with 256 tasks in flight, or `LQ_PROBE_TASKS` (`cargo test --test store_journal -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput_probe() {
    let tmp = TempDir::new("probe");
    let d = tmp.0.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        let n: u32 = std::env::var("LQ_PROBE_TASKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        let per = 102_400 / n.max(1);
        for t in 0..n {
            let j = j.clone();
            tasks.push(glommio::spawn_local(async move {
                for k in 0..per {
                    let seq = j
                        .append(&ch4(ChangeKind::Renew, &v4(t * per + k, k)))
                        .unwrap();
                    j.wait_durable(seq).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        let s = j.stats();
        eprintln!(
            "{} durable appends in {secs:.2}s = {:.0}/s, {} syncs ({:.1} appends/sync), {} KiB written",
            s.appends,
            s.appends as f64 / secs,
            s.commits,
            s.appends as f64 / s.commits as f64,
            s.written / 1024
        );
    });
}

/// Issue 13 item 4: a zeroed 4 KiB block between valid records was read as padding and the
/// commit in it silently dropped (`torn_tails_cut=0`). Records are numbered now: the gap stops
/// the start with the file and the offset of the lost block.
#[test]
fn zeroed_block_between_records_is_a_gap_not_padding() {
    let tmp = TempDir::new("zeroed-block");
    let dir = tmp.0.clone();
    let _ = write_batches(&dir, 3, 10);
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&data);
    assert_eq!(offs.len(), 30);
    // Each commit of 10 records fits in one block: commit 2 is the block at offset 8192.
    assert_eq!((offs[0], offs[10], offs[20]), (BLOCK, 2 * BLOCK, 3 * BLOCK));
    data[2 * BLOCK..3 * BLOCK].fill(0);
    std::fs::write(&seg, &data).unwrap();
    match replay(&dir, 1) {
        Err(StoreError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, seg.display().to_string());
            assert_eq!(offset, 2 * BLOCK as u64, "{reason}");
            assert!(reason.contains("records 11..=20 are missing"), "{reason}");
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    // Nothing was cut or changed.
    assert_eq!(std::fs::read(&seg).unwrap(), data);

    // The first block of records zeroed: the first record found is not record 1.
    let tmp = TempDir::new("zeroed-first");
    let dir = tmp.0.clone();
    let _ = write_batches(&dir, 2, 10);
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    data[BLOCK..2 * BLOCK].fill(0);
    std::fs::write(&seg, &data).unwrap();
    match replay(&dir, 1) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg.display().to_string());
            assert_eq!(offset, BLOCK as u64);
        }
        other => panic!("expected a gap, got {other:?}"),
    }

    // The last block of an older segment zeroed: the next segment does not follow on.
    let tmp = TempDir::new("zeroed-older-tail");
    let dir = tmp.0.clone();
    let _ = write_batches(&dir, 3, 10);
    let first = journal_files(&dir.join("shard-0")).pop().unwrap();
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open(&d, 0, 1).unwrap();
        assert_eq!(j.last_seq(), 30, "the numbering goes on after a restart");
        assert_eq!(j.append(&ch4(ChangeKind::New, &v4(500, 1))).unwrap(), 31);
        j.commit().await.unwrap();
    });
    let files = journal_files(&dir.join("shard-0"));
    assert_eq!(files.len(), 2);
    let mut data = std::fs::read(&first).unwrap();
    data[3 * BLOCK..4 * BLOCK].fill(0);
    std::fs::write(&first, &data).unwrap();
    match replay(&dir, 1) {
        Err(StoreError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, files[1].display().to_string());
            assert_eq!(offset, 0);
            assert!(reason.contains("records 21..=30 are missing"), "{reason}");
        }
        other => panic!("expected a gap, got {other:?}"),
    }
}

/// The numbering goes on over segment rotation, a snapshot and restarts; a torn tail of the
/// newest segment is still only cut, and the next run numbers on from the last record kept.
#[test]
fn record_numbers_survive_rotation_snapshots_and_restarts() {
    let tmp = TempDir::new("numbering");
    let dir = tmp.0.clone();
    let cfg = JournalConfig {
        segment_bytes: 6 * 1024,
        ..JournalConfig::default()
    };
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open_with(&d, 0, 1, cfg).unwrap();
        let mut table = LeaseTable::new();
        for i in 0..150 {
            let b = v4(i, 10);
            table.upsert_v4(b.clone()).unwrap();
            assert_eq!(
                j.append(&ch4(ChangeKind::New, &b)).unwrap(),
                u64::from(i) + 1
            );
            if i % 20 == 19 {
                j.commit().await.unwrap();
            }
        }
        j.commit().await.unwrap();
        assert!(journal_files(j.dir()).len() > 2);
        let snap = j.snapshot(table_v4(&table), Vec::new());
        let late = v4(900, 11);
        assert_eq!(j.append(&ch4(ChangeKind::New, &late)).unwrap(), 151);
        snap.await.unwrap();
        j.commit().await.unwrap();
    });
    let r = replay(&dir, 1).unwrap();
    assert_eq!((r.snapshot_bindings, r.journal_records), (150, 1));
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open_with(&d, 0, 1, cfg).unwrap();
        assert_eq!(j.last_seq(), 151);
        for i in 0..3 {
            assert_eq!(
                j.append(&ch4(ChangeKind::New, &v4(901 + i, 12))).unwrap(),
                152 + u64::from(i)
            );
            j.commit().await.unwrap();
        }
    });
    // A torn tail: the last record half written.
    let seg = journal_files(&dir.join("shard-0")).pop().unwrap();
    let data = std::fs::read(&seg).unwrap();
    let last = *record_offsets(&data).last().unwrap();
    std::fs::write(&seg, &data[..last + 20]).unwrap();
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 1);
    assert_eq!(r.v4_count(), 150 + 1 + 2);
    let d = dir.clone();
    run(move || async move {
        let j = Journal::open_with(&d, 0, 1, cfg).unwrap();
        assert_eq!(j.last_seq(), 153, "numbered on from the last record kept");
        j.append(&ch4(ChangeKind::New, &v4(950, 13))).unwrap();
        j.commit().await.unwrap();
    });
    let r = replay(&dir, 1).unwrap();
    assert_eq!(r.torn_tails_cut, 0);
    assert_eq!(r.v4_count(), 150 + 1 + 3);
}

/// A data directory written by format version 1 is refused by its version (file and offset),
/// never cut or removed as a torn write.
#[test]
fn format_version_1_files_are_refused() {
    let tmp = TempDir::new("v1");
    let dir = tmp.0.clone();
    let sdir = dir.join("shard-0");
    std::fs::create_dir_all(&sdir).unwrap();
    let mut v1 = Vec::new();
    v1.extend_from_slice(b"LQSTORE\0");
    v1.extend_from_slice(&1u16.to_be_bytes());
    v1.extend_from_slice(&[1, 0]);
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&0u32.to_be_bytes());
    v1.extend_from_slice(&1u64.to_be_bytes());
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_be_bytes());
    v1.resize(2 * BLOCK, 0);
    // A version 1 record: [len][crc][payload] (no sequence number).
    v1[BLOCK..BLOCK + 4].copy_from_slice(&5u32.to_be_bytes());
    let seg = sdir.join("journal-0000000000000001.log");
    std::fs::write(&seg, &v1).unwrap();
    for _ in 0..2 {
        match replay(&dir, 1) {
            Err(StoreError::Corrupt {
                file,
                offset: 0,
                reason,
            }) => {
                assert_eq!(file, seg.display().to_string());
                assert!(reason.contains("format version 1"), "{reason}");
            }
            other => panic!("expected a version error, got {other:?}"),
        }
        assert_eq!(std::fs::read(&seg).unwrap(), v1, "left as it was");
    }
}

/// Issue 13 item 4: a missing `shard-N/` was not noticed (replay gave the other shards'
/// bindings only). The shard set is recorded in `DIR/shards` and every shard holds a file, so
/// a missing or emptied shard directory is refused, also for a shard-count change.
#[test]
fn a_missing_shard_directory_is_refused() {
    let tmp = TempDir::new("missing-shard");
    let dir = tmp.0.clone();
    let mut model = Model::default();
    // Three shards; shard 2 gets no change at all.
    let changes: Vec<Change> = (0..60)
        .map(|i| ch4(ChangeKind::New, &v4(i, 5)))
        .filter(|c| matches!(c, Change::V4 { binding, .. } if shard_of_addr(binding.addr, 3) < 2))
        .collect();
    changes.iter().for_each(|c| model.apply(c));
    let d = dir.clone();
    run(move || async move {
        let js: Vec<Journal> = (0..3).map(|k| Journal::open(&d, k, 3).unwrap()).collect();
        for c in &changes {
            if let Change::V4 { binding, .. } = c {
                js[shard_of_addr(binding.addr, 3)].append(c).unwrap();
            }
        }
        js[0].commit().await.unwrap();
        js[1].commit().await.unwrap();
    });
    model.check(&replay(&dir, 3).unwrap(), 3);
    assert_eq!(std::fs::read_to_string(dir.join("shards")).unwrap(), "3\n");
    // The shard without data holds an empty snapshot now.
    assert!(dir.join("shard-2/snapshot-0000000000000001.snap").exists());
    let keep = TempDir::new("missing-shard-keep");
    copy_dir(&dir, &keep.0);
    for lost in [1usize, 2] {
        std::fs::remove_dir_all(dir.join(format!("shard-{lost}"))).unwrap();
        for shards in [3, 2] {
            match replay(&dir, shards) {
                Err(e @ StoreError::MissingShard { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("shard-{lost}: missing")), "{msg}");
                    assert!(msg.contains("records 3 shards"), "{msg}");
                }
                other => panic!("shard-{lost} missing, {shards} shards: {other:?}"),
            }
        }
        // Emptied is missing too.
        std::fs::create_dir_all(dir.join(format!("shard-{lost}"))).unwrap();
        assert!(matches!(
            replay(&dir, 3),
            Err(StoreError::MissingShard { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        copy_dir(&keep.0, &dir);
    }
    // All there: a shard-count change on purpose works and records the new set.
    model.check(&replay(&dir, 2).unwrap(), 2);
    assert_eq!(std::fs::read_to_string(dir.join("shards")).unwrap(), "2\n");
    model.check(&replay(&dir, 2).unwrap(), 2);
}
