//! Replay at start (blocking std I/O, before the shard executors run): snapshot + journal per
//! old shard, torn tails cut, corrupt middles refused, bindings regrouped by the new shard
//! count, and the data directory rewritten when that count changed.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::record::{
    self, decode_payload, unframe, FileHeader, FileKind, Frame, Payload, RecordError, BLOCK,
    FRAME_LEN, HEADER_LEN, MAX_PAYLOAD,
};
use super::{io_err, parse_name, shard_dir, snapshot_name, sync_dir, StoreError};
use crate::lease::{shard_of_addr, shard_of_duid, Change, ChangeKind, V4Binding, V6Binding};
use crate::proto::record::PortParams;

/// What [`replay`] rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// `v4[shard]`: the v4/4o6 bindings the new shard owns ([`shard_of_addr`]), sorted by key.
    pub v4: Vec<Vec<V4Binding>>,
    /// `v6[shard]`: the plain v6 bindings the new shard owns ([`shard_of_duid`]), sorted by key.
    pub v6: Vec<Vec<V6Binding>>,
    /// Bindings loaded from snapshots.
    pub snapshot_bindings: u64,
    /// Journal records applied.
    pub journal_records: u64,
    /// Torn tails cut (files truncated, or empty new segments removed).
    pub torn_tails_cut: u64,
    /// The shard count the data was written under (`None` for an empty directory).
    pub old_shards: Option<usize>,
    /// True when the directory was rewritten for a new shard count.
    pub resharded: bool,
}

impl Replayed {
    /// The number of v4/4o6 bindings over all shards.
    pub fn v4_count(&self) -> usize {
        self.v4.iter().map(Vec::len).sum()
    }

    /// The number of plain v6 bindings over all shards.
    pub fn v6_count(&self) -> usize {
        self.v6.iter().map(Vec::len).sum()
    }

    /// Upserts bindings partitioned for the same shard count (an import): one with the key of
    /// a replayed binding (`(ipv4, psid)`, `(duid, link)`) replaces it, the others are added.
    pub fn upsert(&mut self, v4: Vec<Vec<V4Binding>>, v6: Vec<Vec<V6Binding>>) {
        for (into, from) in self.v4.iter_mut().zip(v4) {
            if into.is_empty() {
                *into = from;
                continue;
            }
            let mut at: HashMap<(Ipv4Addr, Option<PortParams>), usize> = into
                .iter()
                .enumerate()
                .map(|(i, b)| ((b.addr, b.port_params), i))
                .collect();
            for b in from {
                match at.get(&(b.addr, b.port_params)) {
                    Some(&i) => into[i] = b,
                    None => {
                        at.insert((b.addr, b.port_params), into.len());
                        into.push(b);
                    }
                }
            }
        }
        for (into, from) in self.v6.iter_mut().zip(v6) {
            if into.is_empty() {
                *into = from;
                continue;
            }
            let mut at: HashMap<(Vec<u8>, Ipv6Addr), usize> = into
                .iter()
                .enumerate()
                .map(|(i, b)| ((b.duid.clone(), b.link), i))
                .collect();
            for b in from {
                let key = (b.duid.clone(), b.link);
                match at.get(&key) {
                    Some(&i) => into[i] = b,
                    None => {
                        at.insert(key, into.len());
                        into.push(b);
                    }
                }
            }
        }
    }
}

type V4Map = HashMap<(Ipv4Addr, Option<PortParams>), V4Binding>;
type V6Map = HashMap<(Vec<u8>, Ipv6Addr), V6Binding>;

#[derive(Default)]
struct State {
    v4: V4Map,
    v6: V6Map,
}

impl State {
    fn apply(&mut self, c: Change) {
        match c {
            Change::V4 { kind, binding, .. } => {
                let key = (binding.addr, binding.port_params);
                if kind == ChangeKind::Remove {
                    self.v4.remove(&key);
                } else {
                    self.v4.insert(key, binding);
                }
            }
            Change::V6 { kind, binding, .. } => {
                let key = (binding.duid.clone(), binding.link);
                if kind == ChangeKind::Remove {
                    self.v6.remove(&key);
                } else {
                    self.v6.insert(key, binding);
                }
            }
        }
    }
}

const RESHARD_TMP: &str = "reshard.tmp";
const RESHARD_NEW: &str = "reshard.new";
const RESHARD_DONE_MARK: &str = "old-removed";

/// The file in the data directory that records its shard set: the shard count, one line.
pub const SHARDS_FILE: &str = "shards";

/// The file in the data directory that holds the journal epoch: a decimal number, one line,
/// raised by one each time [`write_state`] renumbers the journals (an import, a shard-count
/// change); absent means 0. The cluster publisher puts it into every change's stream
/// sequence, so that sequence grows per binding across a renumbering.
pub const EPOCH_FILE: &str = "journal-epoch";

/// The journal epoch of `dir` (see [`EPOCH_FILE`]): 0 when the file does not exist.
pub fn journal_epoch(dir: &Path) -> Result<u32, StoreError> {
    let path = dir.join(EPOCH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse().map_err(|_| StoreError::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            reason: format!("not a journal epoch: {:?}", t.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Rebuilds every binding stored under `dir` and returns them grouped by shard for
/// `shards_now` shards (0 is taken as 1).
///
/// Reads every `shard-K` directory found, whatever shard count wrote it: per old shard, the
/// highest snapshot, then the journal segments from the snapshot's sequence number on, in
/// order. A torn tail is cut (the file truncated) and counted; a corrupt middle, a damaged
/// snapshot or header, or a file written for another shard stops with a [`StoreError`] naming
/// the file (and byte offset). When the shard count differs from the one the data was written
/// under, the directory is rewritten as one snapshot per new shard (written under
/// `DIR/reshard.tmp`, committed by renaming it to `DIR/reshard.new`, then moved into place; an
/// interrupted rewrite is finished or discarded by the next replay) so that
/// [`Journal::open`](super::Journal::open) finds the new layout. Creates `dir` if missing.
pub fn replay(dir: &Path, shards_now: usize) -> Result<Replayed, StoreError> {
    let shards_now = shards_now.max(1);
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = dir.join(RESHARD_TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    if dir.join(RESHARD_NEW).exists() {
        finish_reshard(dir)?;
    }
    let recorded = read_shard_count(dir)?;
    let mut out = Replayed::default();
    let mut state = State::default();
    let mut found_counts: Vec<u32> = Vec::new();
    let mut shard_ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(k) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            shard_ids.push(k);
        }
    }
    shard_ids.sort_unstable();
    // Every shard of the recorded set must be there (each always holds a file once its data
    // directory has a shard set): a lost `shard-K/` would otherwise start the server with the
    // other shards' leases only. Checked before a shard-count change too.
    if let Some(n) = recorded {
        for k in 0..n {
            let sdir = shard_dir(dir, k);
            if !has_store_files(&sdir)? {
                return Err(StoreError::MissingShard {
                    dir: sdir.display().to_string(),
                    shards: n,
                    file: dir.join(SHARDS_FILE).display().to_string(),
                });
            }
        }
    }
    for &k in &shard_ids {
        replay_shard(
            &shard_dir(dir, k),
            k,
            &mut state,
            &mut out,
            &mut found_counts,
        )?;
    }
    found_counts.sort_unstable();
    found_counts.dedup();
    out.old_shards = match found_counts.as_slice() {
        [] => None,
        [n] => Some(*n as usize),
        _ => {
            return Err(StoreError::Corrupt {
                file: dir.display().to_string(),
                offset: 0,
                reason: format!("files of several shard counts: {found_counts:?}"),
            })
        }
    };
    if let (Some(n), Some(old)) = (recorded, out.old_shards) {
        if n != old {
            return Err(StoreError::Corrupt {
                file: dir.join(SHARDS_FILE).display().to_string(),
                offset: 0,
                reason: format!("records {n} shards, but the files were written under {old}"),
            });
        }
    }
    let layout_ok =
        out.old_shards.is_none_or(|n| n == shards_now) && shard_ids.iter().all(|&k| k < shards_now);
    out.v4 = vec![Vec::new(); shards_now];
    out.v6 = vec![Vec::new(); shards_now];
    let mut v4: Vec<V4Binding> = state.v4.into_values().collect();
    v4.sort_by_key(|b| {
        (
            u32::from(b.addr),
            b.port_params.map(|p| (p.offset, p.psid_len, p.psid)),
        )
    });
    for b in v4 {
        let s = shard_of_addr(b.addr, shards_now);
        if let Some(v) = out.v4.get_mut(s) {
            v.push(b);
        }
    }
    let mut v6: Vec<V6Binding> = state.v6.into_values().collect();
    v6.sort_by(|a, b| (&a.duid, a.link).cmp(&(&b.duid, b.link)));
    for b in v6 {
        let s = shard_of_duid(&b.duid, shards_now);
        if let Some(v) = out.v6.get_mut(s) {
            v.push(b);
        }
    }
    if !layout_ok {
        reshard(dir, shards_now, &out)?;
        out.resharded = true;
    } else {
        // Every shard holds a file from now on (an empty snapshot when it has no data), and
        // the shard set is recorded, so that a missing shard directory is noticed.
        for k in 0..shards_now {
            let sdir = shard_dir(dir, k);
            if !has_store_files(&sdir)? {
                std::fs::create_dir_all(&sdir).map_err(|e| io_err(&sdir, e))?;
                let header = FileHeader {
                    kind: FileKind::Snapshot,
                    shards: shards_now as u32,
                    shard: k as u32,
                    seq: 1,
                    record_seq: 1,
                };
                let tmp = sdir.join(format!("{}.tmp", snapshot_name(1)));
                write_synced(&tmp, &snapshot_bytes(&header, &[], &[])?)?;
                let to = sdir.join(snapshot_name(1));
                std::fs::rename(&tmp, &to).map_err(|e| io_err(&to, e))?;
                sync_dir(&sdir)?;
            }
        }
        sync_dir(dir)?;
        if recorded != Some(shards_now) {
            write_shard_count(dir, shards_now)?;
        }
    }
    Ok(out)
}

/// The shard count recorded in `DIR/shards` (`None` when the file does not exist).
fn read_shard_count(dir: &Path) -> Result<Option<usize>, StoreError> {
    let path = dir.join(SHARDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .map(Some)
            .ok_or_else(|| corrupt(&path, 0, "not a shard count")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Records `shards` in `dir/shards` (temp file, sync, rename, directory sync).
fn write_shard_count(dir: &Path, shards: usize) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{SHARDS_FILE}.tmp"));
    write_synced(&tmp, format!("{shards}\n").as_bytes())?;
    let to = dir.join(SHARDS_FILE);
    std::fs::rename(&tmp, &to).map_err(|e| io_err(&to, e))?;
    sync_dir(dir)
}

/// True when `sdir` holds a journal segment or snapshot (false when it does not exist).
fn has_store_files(sdir: &Path) -> Result<bool, StoreError> {
    let entries = match std::fs::read_dir(sdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(sdir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(sdir, e))?;
        if entry.file_name().to_str().and_then(parse_name).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn corrupt(path: &Path, offset: usize, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        file: path.display().to_string(),
        offset: offset as u64,
        reason: reason.to_string(),
    }
}

fn check_header(
    path: &Path,
    data: &[u8],
    kind: FileKind,
    shard: usize,
) -> Result<FileHeader, StoreError> {
    let h = FileHeader::decode(data).map_err(|e| corrupt(path, 0, format!("header: {e}")))?;
    if h.kind != kind {
        return Err(corrupt(path, 0, "header: wrong file kind"));
    }
    if h.shard as usize != shard || h.shard >= h.shards {
        return Err(StoreError::WrongShard {
            file: path.display().to_string(),
            shard: h.shard,
            shards: h.shards,
            expected: shard,
            expected_shards: h.shards as usize,
        });
    }
    Ok(h)
}

fn replay_shard(
    sdir: &Path,
    k: usize,
    state: &mut State,
    out: &mut Replayed,
    counts: &mut Vec<u32>,
) -> Result<(), StoreError> {
    let mut journals = Vec::new();
    let mut snaps = Vec::new();
    for entry in std::fs::read_dir(sdir).map_err(|e| io_err(sdir, e))? {
        let entry = entry.map_err(|e| io_err(sdir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            continue;
        }
        match parse_name(&name) {
            Some((true, seq)) => snaps.push((seq, path)),
            Some((false, seq)) => journals.push((seq, path)),
            None => {}
        }
    }
    snaps.sort();
    journals.sort();
    let base = snaps.last().map_or(0, |(s, _)| *s);
    // The record sequence number the next journal record must have (a shard's numbering
    // starts at 1; a snapshot says where it goes on).
    let mut expected = 1u64;
    // The file the numbering so far comes from, for the error of a gap at a segment's start.
    let mut prev_file: Option<PathBuf> = None;
    if let Some((_, path)) = snaps.last() {
        let data = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let h = check_header(path, &data, FileKind::Snapshot, k)?;
        counts.push(h.shards);
        load_snapshot(path, &data, state, out)?;
        expected = h.record_seq;
        prev_file = Some(path.clone());
    }
    // Older snapshots and segments a finished compaction no longer needs.
    for (seq, path) in snaps.iter().chain(journals.iter()) {
        if *seq < base {
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
        }
    }
    let live: Vec<&(u64, PathBuf)> = journals.iter().filter(|(s, _)| *s >= base).collect();
    let n = live.len();
    for (i, (_, path)) in live.into_iter().enumerate() {
        let last = i + 1 == n;
        let data = std::fs::read(path).map_err(|e| io_err(path, e))?;
        if last
            && data
                .get(..HEADER_LEN)
                .is_none_or(|h| h.iter().all(|&b| b == 0))
        {
            // A segment created by a commit that never finished.
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            out.torn_tails_cut += 1;
            continue;
        }
        if let Err(e @ RecordError::BadVersion(_)) = FileHeader::decode(&data) {
            // Another format version is never taken for a torn write.
            return Err(corrupt(path, 0, format!("header: {e}")));
        }
        let h = match check_header(path, &data, FileKind::Journal, k) {
            Ok(h) => h,
            // A torn first write of the newest segment: a bad header and nothing valid after it.
            Err(StoreError::Corrupt { .. }) if last && next_valid_frame(&data, 0).is_none() => {
                std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
                out.torn_tails_cut += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        counts.push(h.shards);
        if h.record_seq != expected {
            let after = prev_file.as_ref().map_or_else(
                || "the shard's first record".to_string(),
                |f| format!("{} ends before record {expected}", f.display()),
            );
            let reason = if h.record_seq > expected {
                format!(
                    "segment starts at record {}, but {after}: records {expected}..={} are missing",
                    h.record_seq,
                    h.record_seq - 1
                )
            } else {
                format!(
                    "segment starts at record {}, but {after}: records overlap",
                    h.record_seq
                )
            };
            return Err(corrupt(path, 0, reason));
        }
        let (cut, next) = walk_journal(path, &data, last, expected, state, out)?;
        expected = next;
        prev_file = Some(path.clone());
        if let Some(cut) = cut {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_err(path, e))?;
            f.set_len(cut as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(path, e))?;
            out.torn_tails_cut += 1;
        }
    }
    Ok(())
}

fn load_snapshot(
    path: &Path,
    data: &[u8],
    state: &mut State,
    out: &mut Replayed,
) -> Result<(), StoreError> {
    let mut p = BLOCK;
    let mut count = 0u64;
    loop {
        let rest = data
            .get(p..)
            .ok_or_else(|| corrupt(path, p, "snapshot ends early"))?;
        let (seq, payload, total) = match unframe(rest) {
            Ok(Frame::Record {
                seq,
                payload,
                total,
            }) => (seq, payload, total),
            Ok(Frame::Padding) => return Err(corrupt(path, p, "snapshot ends early")),
            Err(e) => return Err(corrupt(path, p, e)),
        };
        if seq != count + 1 {
            return Err(corrupt(
                path,
                p,
                format!("snapshot record {seq} where record {} belongs", count + 1),
            ));
        }
        match decode_payload(payload).map_err(|e| corrupt(path, p, e))? {
            Payload::Change(c) => {
                state.apply(c);
                count += 1;
            }
            Payload::SnapshotEnd(n) if n == count => break,
            Payload::SnapshotEnd(n) => {
                return Err(corrupt(
                    path,
                    p,
                    format!("snapshot end says {n} bindings, found {count}"),
                ))
            }
        }
        p += total;
    }
    out.snapshot_bindings += count;
    Ok(())
}

/// Applies a segment's records, numbered from `expected` on; returns where to cut a torn
/// tail (only when `last`) and the number the next record (in the next segment) must have.
///
/// A record with a good checksum but another number than the next one is refused: a higher
/// number means that records vanished before it (a zeroed block reads as padding), a lower one
/// that data repeats. The offset named for a gap is the first block boundary after the last
/// good record, where the lost commit started.
fn walk_journal(
    path: &Path,
    data: &[u8],
    last: bool,
    mut expected: u64,
    state: &mut State,
    out: &mut Replayed,
) -> Result<(Option<usize>, u64), StoreError> {
    let mut p = BLOCK.min(data.len());
    // The end of the last good record (the records start at BLOCK).
    let mut good_end = p;
    while p < data.len() {
        let rest = data.get(p..).unwrap_or_default();
        let bad = match unframe(rest) {
            Ok(Frame::Record {
                seq,
                payload,
                total,
            }) => {
                if seq != expected {
                    let reason = if seq > expected {
                        let gap = good_end.div_ceil(BLOCK) * BLOCK;
                        return Err(corrupt(
                            path,
                            gap,
                            format!(
                                "records {expected}..={} are missing: no valid record between \
                                 offset {good_end} and record {seq} at offset {p} (zeroed or \
                                 lost data)",
                                seq - 1
                            ),
                        ));
                    } else {
                        format!("record {seq} where record {expected} belongs (repeated data)")
                    };
                    return Err(corrupt(path, p, reason));
                }
                match decode_payload(payload) {
                    Ok(Payload::Change(c)) => {
                        state.apply(c);
                        out.journal_records += 1;
                    }
                    // A record with a good checksum that does not decode is not a torn write.
                    Ok(Payload::SnapshotEnd(_)) => {
                        return Err(corrupt(path, p, "snapshot end record in a journal"))
                    }
                    Err(e) => return Err(corrupt(path, p, e)),
                }
                p += total;
                good_end = p;
                expected += 1;
                continue;
            }
            Ok(Frame::Padding) => {
                let next = (p / BLOCK + 1) * BLOCK;
                let pad = data.get(p..next.min(data.len())).unwrap_or_default();
                if pad.iter().all(|&b| b == 0) {
                    p = next;
                    continue;
                }
                "non-zero octets in block padding".to_string()
            }
            Err(e) => e.to_string(),
        };
        if let Some(q) = next_valid_frame(data, p + 1) {
            return Err(corrupt(
                path,
                p,
                format!("{bad}, followed by a valid record at offset {q}"),
            ));
        }
        if !last {
            return Err(corrupt(
                path,
                p,
                format!("{bad}, in a segment a later one follows"),
            ));
        }
        return Ok((Some(p), expected));
    }
    Ok((None, expected))
}

/// The offset of the first position at or after `from` holding a frame with a good checksum.
fn next_valid_frame(data: &[u8], from: usize) -> Option<usize> {
    let end = data.len().checked_sub(FRAME_LEN + 1)?;
    (from..=end).find(|&q| {
        let Some(len) = data
            .get(q..q + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        else {
            return false;
        };
        let len = len as usize;
        (1..=MAX_PAYLOAD).contains(&len)
            && q + FRAME_LEN + len <= data.len()
            && matches!(data.get(q..).map(unframe), Some(Ok(Frame::Record { .. })))
    })
}

/// The octets of a snapshot file: header block, one record per binding, the end record.
pub(crate) fn snapshot_bytes(
    header: &FileHeader,
    v4: &[V4Binding],
    v6: &[V6Binding],
) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; BLOCK];
    if let Some(h) = buf.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&header.encode());
    }
    let mut count = 0u64;
    for b in v4 {
        let c = Change::V4 {
            at: b.cltt,
            kind: ChangeKind::Feed,
            binding: b.clone(),
        };
        record::encode_change(count + 1, &c, &mut buf)?;
        count += 1;
    }
    for b in v6 {
        let c = Change::V6 {
            at: b.cltt,
            kind: ChangeKind::Feed,
            binding: b.clone(),
        };
        record::encode_change(count + 1, &c, &mut buf)?;
        count += 1;
    }
    record::encode_snapshot_end(count, &mut buf);
    Ok(buf)
}

/// Writes (streamed, then synced) the snapshot file [`snapshot_bytes`] would give.
fn write_snapshot_file(
    path: &Path,
    header: &FileHeader,
    v4: &[V4Binding],
    v6: &[V6Binding],
) -> Result<(), StoreError> {
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; BLOCK];
    if let Some(h) = buf.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&header.encode());
    }
    w.write_all(&buf).map_err(|e| io_err(path, e))?;
    let mut count = 0u64;
    let changes = v4
        .iter()
        .map(|b| Change::V4 {
            at: b.cltt,
            kind: ChangeKind::Feed,
            binding: b.clone(),
        })
        .chain(v6.iter().map(|b| Change::V6 {
            at: b.cltt,
            kind: ChangeKind::Feed,
            binding: b.clone(),
        }));
    for c in changes {
        buf.clear();
        record::encode_change(count + 1, &c, &mut buf)?;
        w.write_all(&buf).map_err(|e| io_err(path, e))?;
        count += 1;
    }
    buf.clear();
    record::encode_snapshot_end(count, &mut buf);
    w.write_all(&buf).map_err(|e| io_err(path, e))?;
    w.into_inner()
        .map_err(|e| io_err(path, e.error()))?
        .sync_all()
        .map_err(|e| io_err(path, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::File::create(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| io_err(path, e))
}

fn reshard(dir: &Path, shards: usize, r: &Replayed) -> Result<(), StoreError> {
    write_state(dir, shards, &r.v4, &r.v6)
}

/// Makes `v4[k]` / `v6[k]` the whole durable state of shard `k` of `shards` under `dir` (the
/// bindings must be partitioned by [`shard_of_addr`] / [`shard_of_duid`] for `shards`): one
/// snapshot per shard, written under `DIR/reshard.tmp` and committed by renaming it to
/// `DIR/reshard.new` (an interrupted rewrite is finished or discarded by the next [`replay`]),
/// then moved into place with the recorded shard set; every older file is removed. Run it
/// before any [`Journal`](super::Journal) of `dir` is open. The start uses it to make an
/// import durable.
pub fn write_state(
    dir: &Path,
    shards: usize,
    v4: &[Vec<V4Binding>],
    v6: &[Vec<V6Binding>],
) -> Result<(), StoreError> {
    let shards = shards.max(1);
    let tmp = dir.join(RESHARD_TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    for k in 0..shards {
        let sdir = shard_dir(&tmp, k);
        std::fs::create_dir_all(&sdir).map_err(|e| io_err(&sdir, e))?;
        let header = FileHeader {
            kind: FileKind::Snapshot,
            shards: shards as u32,
            shard: k as u32,
            seq: 1,
            record_seq: 1,
        };
        write_snapshot_file(
            &sdir.join(snapshot_name(1)),
            &header,
            v4.get(k).map_or(&[], Vec::as_slice),
            v6.get(k).map_or(&[], Vec::as_slice),
        )?;
        sync_dir(&sdir)?;
    }
    write_synced(&tmp.join(SHARDS_FILE), format!("{shards}\n").as_bytes())?;
    let epoch = journal_epoch(dir)?.saturating_add(1);
    write_synced(&tmp.join(EPOCH_FILE), format!("{epoch}\n").as_bytes())?;
    sync_dir(&tmp)?;
    let new = dir.join(RESHARD_NEW);
    std::fs::rename(&tmp, &new).map_err(|e| io_err(&new, e))?;
    sync_dir(dir)?;
    finish_reshard(dir)
}

/// Replaces the old `shard-*` directories with those of `DIR/reshard.new` (idempotent: an
/// interrupted run is finished by the next).
fn finish_reshard(dir: &Path) -> Result<(), StoreError> {
    let new = dir.join(RESHARD_NEW);
    let mark = new.join(RESHARD_DONE_MARK);
    if !mark.exists() {
        for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let is_shard = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("shard-"));
            if is_shard {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(|e| io_err(&p, e))?;
            }
        }
        sync_dir(dir)?;
        write_synced(&mark, b"")?;
        sync_dir(&new)?;
    }
    for entry in std::fs::read_dir(&new).map_err(|e| io_err(&new, e))? {
        let entry = entry.map_err(|e| io_err(&new, e))?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("shard-") || n == SHARDS_FILE || n == EPOCH_FILE)
        {
            let to = dir.join(&name);
            std::fs::rename(entry.path(), &to).map_err(|e| io_err(&to, e))?;
        }
    }
    sync_dir(dir)?;
    std::fs::remove_dir_all(&new).map_err(|e| io_err(&new, e))?;
    sync_dir(dir)
}
