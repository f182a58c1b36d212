//! One shard's journal writer on glommio DMA files, with group commit and snapshots.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::io::DmaFile;

use super::record::{self, FileHeader, FileKind, BLOCK, HEADER_LEN};
use super::replay::snapshot_bytes;
use super::{io_err, journal_name, parse_name, shard_dir, snapshot_name, StoreError};
use crate::lease::{Change, V4Binding, V6Binding};

/// Limits of a [`Journal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// A new segment is started when the current one would exceed this (default 64 MiB).
    pub segment_bytes: u64,
    /// [`Journal::append`] refuses with [`StoreError::Backlog`] while this many octets are
    /// appended but not yet written (default 16 MiB).
    pub max_pending_bytes: usize,
    /// The largest single DMA write (default 1 MiB; keeps io_uring buffers small).
    pub write_chunk: usize,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            segment_bytes: 64 << 20,
            max_pending_bytes: 16 << 20,
            write_chunk: 1 << 20,
        }
    }
}

/// A journal's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Changes appended.
    pub appends: u64,
    /// Group commits done (one `fdatasync` of the journal each).
    pub commits: u64,
    /// Record octets appended (frames included, headers and padding not).
    pub bytes: u64,
    /// Octets written to journal segments (header and padding included).
    pub written: u64,
    /// Snapshots completed.
    pub snapshots: u64,
}

/// What a finished snapshot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's sequence number (`snapshot-<seq>.snap`).
    pub seq: u64,
    /// Bindings written.
    pub bindings: u64,
    /// Octets of the snapshot file.
    pub bytes: u64,
    /// Older files deleted.
    pub removed_files: usize,
}

struct Batch {
    segment: u64,
    bytes: Vec<u8>,
    /// The record sequence number of the batch's first record.
    first_seq: u64,
    last_seq: u64,
}

struct OpenSegment {
    seq: u64,
    file: Rc<DmaFile>,
    pos: u64,
}

struct State {
    next_seq: u64,
    durable: u64,
    batches: VecDeque<Batch>,
    pending: usize,
    flushing: bool,
    failed: Option<String>,
    segment: u64,
    segment_bytes: u64,
    journal_bytes: u64,
    /// The first segment after the last snapshot cut (older ones are compacted away).
    base: u64,
    open: Option<OpenSegment>,
    snapshotting: bool,
    stats: StoreStats,
}

struct Inner {
    dir: PathBuf,
    shard: usize,
    shards: usize,
    config: JournalConfig,
    st: RefCell<State>,
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// Where each group commit's duration (write and fdatasync) goes, when set.
    commit_histogram: RefCell<Option<std::sync::Arc<crate::metrics::Histogram>>>,
    /// Told the durable record sequence after every sync (the cluster publisher).
    durable_hook: RefCell<Option<DurableHook>>,
}

/// Called with a journal's durable record sequence number after every sync that advanced it
/// (and once when set): how the cluster publisher learns what it may read. It runs on the
/// shard's thread and must not block (store an atomic, wake a thread).
pub type DurableHook = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// One shard's journal: a cheap handle ([`Clone`] shares it) used by that shard's tasks only.
///
/// [`append`](Journal::append) encodes a change into memory and gives it a sequence number;
/// [`wait_durable`](Journal::wait_durable) returns once a sync covering that number finished.
/// One flusher task at a time writes everything appended so far (padded to [`BLOCK`]) and
/// `fdatasync`s once, so every append made while a sync is in flight shares the next sync
/// (group commit): the shell appends a change, awaits its durability, then sends the DHCPACK,
/// with many packets in flight. A failed write or sync makes the journal refuse everything
/// after it ([`StoreError::Failed`]).
#[derive(Clone)]
pub struct Journal {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("shard", &self.inner.shard)
            .field("shards", &self.inner.shards)
            .field("stats", &self.stats())
            .finish()
    }
}

fn gerr(path: &Path, e: glommio::GlommioError<()>) -> StoreError {
    io_err(path, e)
}

impl Journal {
    /// Opens shard `shard` of `shards` under the data directory `dir` (creating
    /// `DIR/shard-K`), with the default [`JournalConfig`]. Run [`replay`](super::replay) first:
    /// every file found must have been written under this shard count. Appends go to a new
    /// segment numbered after every existing file; nothing is created until the first commit.
    pub fn open(dir: &Path, shard: usize, shards: usize) -> Result<Journal, StoreError> {
        Journal::open_with(dir, shard, shards, JournalConfig::default())
    }

    /// [`Journal::open`] with explicit limits.
    pub fn open_with(
        dir: &Path,
        shard: usize,
        shards: usize,
        config: JournalConfig,
    ) -> Result<Journal, StoreError> {
        let shards = shards.max(1);
        let sdir = shard_dir(dir, shard);
        std::fs::create_dir_all(&sdir).map_err(|e| io_err(&sdir, e))?;
        let mut max_seq = 0u64;
        let mut last_snap = 0u64;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&sdir).map_err(|e| io_err(&sdir, e))? {
            let entry = entry.map_err(|e| io_err(&sdir, e))?;
            let Some((snap, seq)) = entry.file_name().to_str().and_then(parse_name) else {
                continue;
            };
            max_seq = max_seq.max(seq);
            if snap {
                last_snap = last_snap.max(seq);
            }
            files.push((snap, seq, entry.path()));
        }
        let mut journal_bytes = 0u64;
        // The newest file (a segment after the snapshot of the same number) says where the
        // record numbering goes on.
        let newest = files.iter().map(|(snap, seq, _)| (*seq, !*snap)).max();
        let mut next_seq = 1u64;
        for (snap, seq, path) in files {
            let mut head = [0u8; HEADER_LEN];
            let len = std::fs::File::open(&path)
                .and_then(|mut f| {
                    std::io::Read::read_exact(&mut f, &mut head)?;
                    Ok(f.metadata()?.len())
                })
                .map_err(|e| io_err(&path, e))?;
            let h = FileHeader::decode(&head).map_err(|e| StoreError::Corrupt {
                file: path.display().to_string(),
                offset: 0,
                reason: format!("header: {e}"),
            })?;
            if h.shards as usize != shards || h.shard as usize != shard {
                return Err(StoreError::WrongShard {
                    file: path.display().to_string(),
                    shard: h.shard,
                    shards: h.shards,
                    expected: shard,
                    expected_shards: shards,
                });
            }
            if !snap && seq >= last_snap {
                journal_bytes += len;
            }
            if newest == Some((seq, !snap)) {
                next_seq = if snap {
                    h.record_seq
                } else {
                    let data = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
                    last_record_seq(&data).map_or(h.record_seq, |s| s.saturating_add(1))
                };
            }
        }
        Ok(Journal {
            inner: Rc::new(Inner {
                commit_histogram: RefCell::new(None),
                dir: sdir,
                shard,
                shards,
                config,
                st: RefCell::new(State {
                    next_seq,
                    durable: next_seq - 1,
                    batches: VecDeque::new(),
                    pending: 0,
                    flushing: false,
                    failed: None,
                    segment: max_seq + 1,
                    segment_bytes: 0,
                    journal_bytes,
                    base: last_snap,
                    open: None,
                    snapshotting: false,
                    stats: StoreStats::default(),
                }),
                generation: Cell::new(0),
                waiters: RefCell::new(Vec::new()),
                durable_hook: RefCell::new(None),
            }),
        })
    }

    /// Sets the hook told the durable record sequence number after every sync (and calls it
    /// now with the current one).
    pub fn set_durable_hook(&self, hook: DurableHook) {
        hook(self.durable_seq());
        *self.inner.durable_hook.borrow_mut() = Some(hook);
    }

    /// The shard directory this journal writes.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Buffers `change` for the next group commit and returns its sequence number: the record
    /// sequence number written with it (1, 2, ... in append order over the shard's whole
    /// journal: a journal opened on existing files goes on after their last record). Nothing
    /// is durable until [`wait_durable`](Journal::wait_durable) or
    /// [`commit`](Journal::commit) says so.
    pub fn append(&self, change: &Change) -> Result<u64, StoreError> {
        let mut guard = self.inner.st.borrow_mut();
        let st = &mut *guard;
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        if st.pending >= self.inner.config.max_pending_bytes {
            return Err(StoreError::Backlog(st.pending));
        }
        // A segment is full once it reached its size (a record may end slightly past it).
        if st.segment_bytes >= self.inner.config.segment_bytes {
            st.segment += 1;
            st.segment_bytes = 0;
        }
        let segment = st.segment;
        if st.batches.back().is_none_or(|b| b.segment != segment) {
            st.batches.push_back(Batch {
                segment,
                bytes: Vec::with_capacity(4096),
                first_seq: st.next_seq,
                last_seq: 0,
            });
        }
        let seq = st.next_seq;
        let Some(batch) = st.batches.back_mut() else {
            return Err(StoreError::Failed("no batch".into()));
        };
        let before = batch.bytes.len();
        // Encoded in place; on error the batch is left as it was.
        let res = record::encode_change(seq, change, &mut batch.bytes);
        let len = (batch.bytes.len() - before) as u64;
        let empty = batch.bytes.is_empty();
        if res.is_ok() {
            batch.last_seq = seq;
        }
        if empty {
            st.batches.pop_back();
        }
        res?;
        if st.segment_bytes == 0 {
            st.segment_bytes = BLOCK as u64;
        }
        st.segment_bytes += len;
        st.journal_bytes += len;
        st.pending += len as usize;
        st.next_seq += 1;
        st.stats.appends += 1;
        st.stats.bytes += len;
        Ok(seq)
    }

    /// The sequence number of the last append (before any: of the last record on disk, 0
    /// when there is none).
    pub fn last_seq(&self) -> u64 {
        self.inner.st.borrow().next_seq - 1
    }

    /// The highest sequence number known durable.
    pub fn durable_seq(&self) -> u64 {
        self.inner.st.borrow().durable
    }

    /// Returns once every change up to `seq` is durable (written and synced), starting a group
    /// commit when none is running. Concurrent callers share syncs: a sync covers everything
    /// appended before it started.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        loop {
            let gen = {
                let mut st = self.inner.st.borrow_mut();
                if let Some(f) = &st.failed {
                    return Err(StoreError::Failed(f.clone()));
                }
                if st.durable >= seq {
                    return Ok(());
                }
                if st.batches.is_empty() && !st.flushing {
                    if seq >= st.next_seq {
                        // Never appended: nothing to wait for.
                        return Ok(());
                    }
                    return Err(StoreError::Failed(format!("change {seq} is not pending")));
                }
                // Read before spawning: glommio may run the flusher at once.
                let gen = self.inner.generation.get();
                if !st.flushing {
                    st.flushing = true;
                    drop(st);
                    glommio::spawn_local(flush_loop(self.inner.clone())).detach();
                }
                gen
            };
            Notified {
                inner: &self.inner,
                gen,
            }
            .await;
        }
    }

    /// Makes everything appended so far durable (see [`wait_durable`](Journal::wait_durable)).
    pub async fn commit(&self) -> Result<(), StoreError> {
        let seq = self.last_seq();
        self.wait_durable(seq).await
    }

    /// Makes everything appended durable and closes the open segment (for shutdown). The
    /// journal stays usable: a later append starts a new segment.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.commit().await?;
        let open = {
            let mut st = self.inner.st.borrow_mut();
            if st.flushing {
                // Another task's append is being written; it keeps the segment.
                return Ok(());
            }
            let open = st.open.take();
            if open.is_some() {
                // Never reopen (and truncate) a closed segment.
                st.segment += 1;
                st.segment_bytes = 0;
            }
            open
        };
        if let Some(o) = open {
            let path = self.inner.dir.join(journal_name(o.seq));
            o.file.close_rc().await.map_err(|e| gerr(&path, e))?;
        }
        Ok(())
    }

    /// Octets of journal segments since the last snapshot (existing files, records appended
    /// and not yet written, headers and commit padding included): the shell snapshots when
    /// this exceeds `journal_compact_bytes`
    /// ([`DEFAULT_JOURNAL_COMPACT_BYTES`](super::DEFAULT_JOURNAL_COMPACT_BYTES)).
    pub fn journal_bytes(&self) -> u64 {
        self.inner.st.borrow().journal_bytes
    }

    /// True while a snapshot is being written.
    pub fn snapshot_in_progress(&self) -> bool {
        self.inner.st.borrow().snapshotting
    }

    /// Records the duration of every later group commit (write and fdatasync) in `h`.
    pub fn set_commit_histogram(&self, h: std::sync::Arc<crate::metrics::Histogram>) {
        *self.inner.commit_histogram.borrow_mut() = Some(h);
    }

    /// The counters.
    pub fn stats(&self) -> StoreStats {
        self.inner.st.borrow().stats
    }

    /// Starts a snapshot of the shard's state given as all of its bindings *now*.
    ///
    /// The cut is taken in this call, not when the future first runs: pass the table's
    /// contents as they are at the time of the call (no await between reading the table and
    /// calling this). Changes appended before the call are in segments below the snapshot's
    /// number, changes appended after it go to a new segment. The returned future (it may be
    /// spawned) waits until the older changes are durable, writes `snapshot-<seq>.snap.tmp`,
    /// syncs, renames it into place, syncs the directory, then deletes the older segments and
    /// snapshots. Only one snapshot runs at a time ([`StoreError::SnapshotBusy`]).
    pub fn snapshot(
        &self,
        v4: impl IntoIterator<Item = V4Binding>,
        v6: impl IntoIterator<Item = V6Binding>,
    ) -> impl Future<Output = Result<SnapshotInfo, StoreError>> + 'static {
        let prepared = self.prepare_snapshot(v4, v6);
        let inner = self.inner.clone();
        async move {
            let (seq, cut, bindings, bytes) = prepared?;
            let guard = SnapshotGuard(inner.clone());
            let j = Journal {
                inner: inner.clone(),
            };
            j.wait_durable(cut).await?;
            let sdir = inner.dir.clone();
            let final_path = sdir.join(snapshot_name(seq));
            let tmp_path = sdir.join(format!("{}.tmp", snapshot_name(seq)));
            let file = DmaFile::create(&tmp_path)
                .await
                .map_err(|e| gerr(&tmp_path, e))?;
            let file = Rc::new(file);
            let padded = write_padded(&file, &tmp_path, &bytes, 0, inner.config.write_chunk).await;
            let synced = match padded {
                Ok(_) => file.fdatasync().await.map_err(|e| gerr(&tmp_path, e)),
                Err(e) => Err(e),
            };
            let _ = file.close_rc().await;
            // The file stays padded to a block: replay stops at the end record.
            synced?;
            glommio::io::rename(&tmp_path, &final_path)
                .await
                .map_err(|e| gerr(&final_path, e))?;
            sync_dir_async(&sdir).await?;
            let mut removed = 0;
            let entries = std::fs::read_dir(&sdir).map_err(|e| io_err(&sdir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&sdir, e))?;
                if let Some((_, s)) = entry.file_name().to_str().and_then(parse_name) {
                    if s < seq {
                        let p = entry.path();
                        std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                        removed += 1;
                    }
                }
            }
            sync_dir_async(&sdir).await?;
            inner.st.borrow_mut().stats.snapshots += 1;
            drop(guard);
            Ok(SnapshotInfo {
                seq,
                bindings,
                bytes: bytes.len() as u64,
                removed_files: removed,
            })
        }
    }

    fn prepare_snapshot(
        &self,
        v4: impl IntoIterator<Item = V4Binding>,
        v6: impl IntoIterator<Item = V6Binding>,
    ) -> Result<(u64, u64, u64, Vec<u8>), StoreError> {
        let mut st = self.inner.st.borrow_mut();
        if st.snapshotting {
            return Err(StoreError::SnapshotBusy);
        }
        if let Some(f) = &st.failed {
            return Err(StoreError::Failed(f.clone()));
        }
        let v4: Vec<V4Binding> = v4.into_iter().collect();
        let v6: Vec<V6Binding> = v6.into_iter().collect();
        let seq = st.segment + 1;
        let header = FileHeader {
            kind: FileKind::Snapshot,
            shards: self.inner.shards as u32,
            shard: self.inner.shard as u32,
            seq,
            record_seq: st.next_seq,
        };
        let bytes = snapshot_bytes(&header, &v4, &v6)?;
        st.segment = seq;
        st.base = seq;
        st.segment_bytes = 0;
        st.journal_bytes = 0;
        st.snapshotting = true;
        let cut = st.next_seq - 1;
        Ok((seq, cut, (v4.len() + v6.len()) as u64, bytes))
    }
}

struct SnapshotGuard(Rc<Inner>);

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        self.0.st.borrow_mut().snapshotting = false;
    }
}

struct Notified<'a> {
    inner: &'a Inner,
    gen: u64,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.generation.get() != self.gen {
            return Poll::Ready(());
        }
        self.inner.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

fn notify_all(inner: &Inner) {
    inner.generation.set(inner.generation.get().wrapping_add(1));
    let waiters = std::mem::take(&mut *inner.waiters.borrow_mut());
    for w in waiters {
        w.wake();
    }
}

async fn sync_dir_async(dir: &Path) -> Result<(), StoreError> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| gerr(dir, e))?;
    let r = d.sync().await.map_err(|e| gerr(dir, e));
    let _ = d.close().await;
    r
}

/// Writes `bytes` at `pos` zero-padded to [`BLOCK`], in chunks; returns the padded length.
async fn write_padded(
    file: &DmaFile,
    path: &Path,
    bytes: &[u8],
    pos: u64,
    chunk: usize,
) -> Result<u64, StoreError> {
    let align = file.alignment() as usize;
    if align == 0 || align > BLOCK || BLOCK % align != 0 {
        return Err(io_err(
            path,
            format!("unsupported O_DIRECT alignment {align}"),
        ));
    }
    let chunk = (chunk.max(BLOCK) / BLOCK) * BLOCK;
    let mut off = 0usize;
    let total = bytes.len().div_ceil(BLOCK) * BLOCK;
    while off < total {
        let n = chunk.min(total - off);
        let mut buf = file.alloc_dma_buffer(n);
        let dst = buf.as_bytes_mut();
        dst.fill(0);
        let src = bytes.get(off..bytes.len().min(off + n)).unwrap_or_default();
        if let Some(d) = dst.get_mut(..src.len()) {
            d.copy_from_slice(src);
        }
        let written = file
            .write_at(buf, pos + off as u64)
            .await
            .map_err(|e| gerr(path, e))?;
        if written != n {
            return Err(io_err(path, format!("short write: {written} of {n}")));
        }
        off += n;
    }
    Ok(total as u64)
}

/// The flusher: while batches are pending, write them all and sync once, then wake waiters.
async fn flush_loop(inner: Rc<Inner>) {
    loop {
        let (batches, open) = {
            let mut st = inner.st.borrow_mut();
            if st.batches.is_empty() || st.failed.is_some() {
                st.flushing = false;
                break;
            }
            let b: Vec<Batch> = st.batches.drain(..).collect();
            (b, st.open.take())
        };
        match flush(&inner, batches, open).await {
            Ok((open, last_seq, written)) => {
                let mut st = inner.st.borrow_mut();
                st.open = open;
                st.durable = st.durable.max(last_seq);
                st.stats.written += written;
                let durable = st.durable;
                drop(st);
                if let Some(h) = inner.durable_hook.borrow().as_ref() {
                    h(durable);
                }
            }
            Err(e) => {
                let mut st = inner.st.borrow_mut();
                st.failed = Some(e.to_string());
                st.flushing = false;
                drop(st);
                notify_all(&inner);
                break;
            }
        }
        notify_all(&inner);
    }
    notify_all(&inner);
}

async fn flush(
    inner: &Inner,
    batches: Vec<Batch>,
    mut open: Option<OpenSegment>,
) -> Result<(Option<OpenSegment>, u64, u64), StoreError> {
    let mut last_seq = 0;
    let mut written = 0u64;
    let mut i = 0;
    while i < batches.len() {
        let segment = batches.get(i).map_or(0, |b| b.segment);
        let first_seq = batches.get(i).map_or(0, |b| b.first_seq);
        let mut data = Vec::new();
        while let Some(b) = batches.get(i).filter(|b| b.segment == segment) {
            data.extend_from_slice(&b.bytes);
            last_seq = b.last_seq;
            i += 1;
        }
        let mut created = false;
        if open.as_ref().is_none_or(|o| o.seq != segment) {
            if let Some(old) = open.take() {
                let _ = old.file.close_rc().await;
            }
            let path = inner.dir.join(journal_name(segment));
            let file = DmaFile::create(&path).await.map_err(|e| gerr(&path, e))?;
            let header = FileHeader {
                kind: FileKind::Journal,
                shards: inner.shards as u32,
                shard: inner.shard as u32,
                seq: segment,
                record_seq: first_seq,
            };
            let mut head = vec![0u8; BLOCK];
            if let Some(h) = head.get_mut(..HEADER_LEN) {
                h.copy_from_slice(&header.encode());
            }
            head.extend_from_slice(&data);
            data = head;
            open = Some(OpenSegment {
                seq: segment,
                file: Rc::new(file),
                pos: 0,
            });
            created = true;
        }
        let Some(o) = open.as_mut() else {
            return Err(io_err(&inner.dir, "no open segment"));
        };
        let path = inner.dir.join(journal_name(segment));
        let commit_started = std::time::Instant::now();
        #[cfg(feature = "fault-injection")]
        if fault::fail_write() {
            return Err(io_err(&path, "fault injection: journal write failed"));
        }
        let n = write_padded(&o.file, &path, &data, o.pos, inner.config.write_chunk).await?;
        o.pos += n;
        written += n;
        {
            // Count the header and padding too, so that size triggers follow the disk.
            let extra =
                n.saturating_sub(data.len() as u64) + if created { BLOCK as u64 } else { 0 };
            let mut st = inner.st.borrow_mut();
            if st.segment == segment {
                st.segment_bytes += n.saturating_sub(data.len() as u64);
            }
            if segment >= st.base {
                st.journal_bytes += extra;
            }
        }
        o.file.fdatasync().await.map_err(|e| gerr(&path, e))?;
        if created {
            sync_dir_async(&inner.dir).await?;
        }
        inner.st.borrow_mut().stats.commits += 1;
        if let Some(h) = inner.commit_histogram.borrow().as_ref() {
            h.observe(commit_started.elapsed());
        }
    }
    {
        let mut st = inner.st.borrow_mut();
        let freed: usize = batches.iter().map(|b| b.bytes.len()).sum();
        st.pending = st.pending.saturating_sub(freed);
    }
    Ok((open, last_seq, written))
}

/// The sequence number of the last record of a journal segment's bytes (walked from
/// [`BLOCK`] to the first bad frame; replay has cut torn tails before a journal opens).
fn last_record_seq(data: &[u8]) -> Option<u64> {
    let mut p = BLOCK;
    let mut last = None;
    while let Some(rest) = data.get(p..).filter(|r| !r.is_empty()) {
        match record::unframe(rest) {
            Ok(record::Frame::Record { seq, total, .. }) => {
                last = Some(seq);
                p += total;
            }
            Ok(record::Frame::Padding) => p = (p / BLOCK + 1) * BLOCK,
            Err(_) => break,
        }
    }
    last
}

/// Test-only fault switch (cargo feature `fault-injection`): see Cargo.toml.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Journal writes tried, over every shard of the process.
    static WRITES: AtomicU64 = AtomicU64::new(0);

    /// `LEASEQUERYD_FAULT_JOURNAL_FAIL_AFTER=N`: the first N journal writes (one per group
    /// commit and segment, over every shard) succeed, every later one fails as a disk error
    /// would.
    pub(super) fn fail_write() -> bool {
        let Some(after) = std::env::var("LEASEQUERYD_FAULT_JOURNAL_FAIL_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return false;
        };
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        if n >= after {
            tracing::warn!("fault injection: journal write fails");
            return true;
        }
        false
    }
}
