//! The durable lease journal (docs/DESIGN.md section 3, rule 7): per-shard journal segments of
//! binding changes on glommio DMA files with group commit, snapshots with compaction, replay
//! at start (also when the shard count changed), and the server DUID.
//!
//! - [`record`] (sans-io): the binary encoding of one [`Change`](crate::lease::Change), the
//!   record framing and the file header.
//! - [`Journal`] (glommio): one shard's writer: [`Journal::append`], [`Journal::commit`],
//!   [`Journal::wait_durable`], [`Journal::snapshot`].
//! - [`replay`] (blocking std I/O, run once before the executors start): rebuilds every binding
//!   and cuts torn tails.
//! - [`server_duid`]: the server DUID kept in the data directory.
//!
//! # Directory layout
//!
//! ```text
//! DIR/server-duid                          the server DUID, lower-case hex, one line
//! DIR/shards                               the shard set: the shard count, one line
//! DIR/journal-epoch                        the journal epoch (raised by every renumbering)
//! DIR/shard-K/journal-<seq>.log            journal segments of shard K (seq: 16 hex digits)
//! DIR/shard-K/snapshot-<seq>.snap          the snapshot of shard K (normally one)
//! DIR/shard-K/*.tmp                        a snapshot being written (removed by replay)
//! DIR/reshard.tmp/, DIR/reshard.new/       a shard-count change in progress (see replay)
//! ```
//!
//! `snapshot-S` holds the shard's state at a moment no earlier than the last change of every
//! segment below `S`, and every change after that moment is in segments `>= S`. Replay loads
//! the highest snapshot and applies the segments `>= S` in order; since every change carries
//! the binding's whole state, re-applying a change the snapshot already holds is harmless.
//! Each file starts with a [`record::FileHeader`] naming the shard count and the shard it was
//! written under; records follow at offset [`record::BLOCK`] (format in [`record`]).
//!
//! # Crash safety
//!
//! A journal segment is only appended to by the process that created it, in whole
//! [`record::BLOCK`]s: each group commit writes the records appended since the previous one,
//! zero-padded to the block size, at the next block boundary (synced data is never
//! rewritten), then `fdatasync`s; a new segment's directory entry is synced before the commit
//! that created it completes. Replay reads each segment to its end: a bad record (short, bad
//! CRC, bad length) with no valid record anywhere after it is a torn tail, cut by truncating
//! the file; a bad record followed by a valid one is a corrupt middle and stops the start with
//! [`StoreError::Corrupt`] naming the file and byte offset. The newest segment with a zero or
//! damaged header and no valid record is a torn first commit: it is removed (and counted). A
//! bad record at the end of an older segment (a later one exists) is a corrupt middle too.
//!
//! Records are numbered 1, 2, ... per shard without a gap (over rotation, restarts and
//! snapshots; see [`record`]): a valid record whose number is not the next one, or a segment
//! that does not start where the previous file ended, is a corrupt middle too (a zeroed block
//! reads as padding, so without the numbers the commit in it would vanish unnoticed).
//!
//! `DIR/shards` records the shard set; from the first replay on every `shard-K` (K below it)
//! holds a file (an empty snapshot when it has no data), so a missing or emptied shard
//! directory stops the start ([`StoreError::MissingShard`]); a shard-count change rewrites the
//! file with the layout.
//!
//! Limits: a segment is read whole into memory at replay (bounded by
//! [`JournalConfig::segment_bytes`] plus one commit); after a power loss (not `kill -9`) a
//! multi-block commit that was never acknowledged could persist out of order and be reported
//! as a corrupt middle rather than cut.

mod journal;
pub mod record;
mod replay;

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use journal::{DurableHook, Journal, JournalConfig, SnapshotInfo, StoreStats};
pub use replay::{journal_epoch, replay, write_state, Replayed, EPOCH_FILE, SHARDS_FILE};

use record::RecordError;

/// The default for the `journal_compact_bytes` config key (defined with the configuration).
pub use crate::config::DEFAULT_JOURNAL_COMPACT_BYTES;

/// Why the store failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Damaged data that is not a torn tail (a bad record followed by valid data, a bad
    /// snapshot, a bad header of a file that is not the last one).
    #[error("{file}: corrupt data at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// Where the bad record or header starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file written for another shard than the directory it is in, or (for
    /// [`Journal::open`]) under another shard count (run [`replay`] first).
    #[error("{file}: written for shard {shard} of {shards}, expected shard {expected} of {expected_shards}")]
    WrongShard {
        /// The file.
        file: String,
        /// The shard in its header.
        shard: u32,
        /// The shard count in its header.
        shards: u32,
        /// The shard expected.
        expected: usize,
        /// The shard count expected.
        expected_shards: usize,
    },
    /// A shard of the data directory's recorded shard set (`DIR/shards`) is missing: its
    /// directory is gone or holds no journal segment or snapshot.
    #[error(
        "{dir}: missing or empty, but {file} records {shards} shards: that shard's leases would \
         be lost (restore the directory; to start without them, remove {file})"
    )]
    MissingShard {
        /// The shard directory.
        dir: String,
        /// The recorded shard count.
        shards: usize,
        /// The file that records it.
        file: String,
    },
    /// A change could not be encoded.
    #[error("cannot encode change: {0}")]
    Encode(#[from] RecordError),
    /// More than [`JournalConfig::max_pending_bytes`] appended and not yet written: the caller
    /// should wait for durability before appending more.
    #[error("journal backlog full ({0} octets pending)")]
    Backlog(usize),
    /// An earlier write or sync failed; the journal accepts nothing more (restart and replay).
    #[error("journal failed earlier: {0}")]
    Failed(String),
    /// A snapshot of this journal is already being written.
    #[error("a snapshot is already in progress")]
    SnapshotBusy,
    /// The server DUID file is unreadable.
    #[error("{file}: bad server DUID: {reason}")]
    BadDuid {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The directory of shard `shard` under the data directory `dir`.
pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}"))
}

/// The file name of journal segment `seq`.
pub fn journal_name(seq: u64) -> String {
    format!("journal-{seq:016x}.log")
}

/// The file name of snapshot `seq`.
pub fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:016x}.snap")
}

/// What a store file name is: `(is_snapshot, seq)`; `None` for other names.
pub(crate) fn parse_name(name: &str) -> Option<(bool, u64)> {
    let (snap, hex) = if let Some(r) = name.strip_prefix("journal-") {
        (false, r.strip_suffix(".log")?)
    } else if let Some(r) = name.strip_prefix("snapshot-") {
        (true, r.strip_suffix(".snap")?)
    } else {
        return None;
    };
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|s| (snap, s))
}

/// Syncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// The name of the server DUID file in the data directory.
pub const SERVER_DUID_FILE: &str = "server-duid";

/// The server DUID kept in `DIR/server-duid`: read back when the file exists, else created once
/// as a DUID-UUID (RFC 6355: type 4 + a version-4 UUID from 16 octets of `/dev/urandom`) and
/// written (temp file, sync, rename, directory sync). The file holds the DUID in lower-case hex
/// on one line; a DUID of 3..=130 octets is accepted when read (RFC 8415 §11.1).
pub fn server_duid(dir: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let path = dir.join(SERVER_DUID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse_duid(&path, text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path, e)),
    }
    let mut uuid = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut uuid))
        .map_err(|e| io_err(Path::new("/dev/urandom"), e))?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut duid = vec![0, 4];
    duid.extend_from_slice(&uuid);
    let text: String = duid.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join("server-duid.tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    Ok(duid)
}

fn parse_duid(path: &Path, text: &str) -> Result<Vec<u8>, StoreError> {
    let bad = |reason: &str| StoreError::BadDuid {
        file: path.display().to_string(),
        reason: reason.to_string(),
    };
    if text.len() % 2 != 0 || !text.is_ascii() {
        return Err(bad("not an even number of hex digits"));
    }
    let duid = (0..text.len() / 2)
        .map(|i| {
            text.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| bad("not hex"))?;
    if !(3..=130).contains(&duid.len()) {
        return Err(bad("length not in 3..=130 octets"));
    }
    Ok(duid)
}
