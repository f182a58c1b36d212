//! The journal as the publisher's spool (blocking std I/O, on the publisher thread): per shard,
//! the records after the last one JetStream acknowledged, read from the shard's journal
//! segments (`DIR/shard-K/journal-*.log`) up to the durable sequence number the shard reported,
//! and the cursor file that keeps what was acknowledged (`DIR/cluster-published`).
//!
//! When the records after the cursor are gone (a snapshot compacted them away, or nothing was
//! ever published in this journal epoch: an import or a shard-count change renumbered the
//! journals), the shard's newest snapshot is published whole (its bindings as upserts, all with
//! the stream sequence of the snapshot's cut) and the journal after it follows. The records
//! that were compacted away are not published one by one, so first the shard is reconciled
//! with the stream ([`Pos::Reconcile`]): the publisher reads the last message of every subject
//! of this node (`DeliverPolicy::LastPerSubject`), and every binding of this shard whose last
//! message is not a remove, whose `seq` is below the cut's and which the snapshot lacks (it was
//! removed among the compacted records, or an import's snapshot does not hold it) gets a
//! `remove` with the cut's stream sequence, its last state as payload, a `changed` of the
//! snapshot's write time (never below the last message's) and the id
//! [`contract::reconcile_msg_id`]. These removes come before the snapshot's upserts, and the
//! cursor moves only at the snapshot's end, once all of them are acknowledged: a crash or a
//! failed publish in between does the episode again (JetStream drops the ids it has; the
//! bindings already removed no longer qualify). A pass keeps at most [`MAX_REMOVES`] removes;
//! past that the shard reads the stream again after publishing them (README "Cluster").

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::warn;

use super::contract;
use crate::feed::import::FeedBinding;
use crate::lease::{Change, ChangeKind};
use crate::proto::record::PortParams;
use crate::store::record::{self, FileHeader, FileKind, Frame, Payload, BLOCK, HEADER_LEN};
use crate::store::{shard_dir, snapshot_name};

/// The cursor file in the data directory.
pub const CURSOR_FILE: &str = "cluster-published";
/// A durable sequence number not reported yet.
pub const UNKNOWN: u64 = u64::MAX;
const READ_CHUNK: usize = 256 * 1024;
/// Most removes one reconcile pass of a shard keeps (each with its binding's last state);
/// more are found by another pass once these are acknowledged.
pub const MAX_REMOVES: usize = 65_536;

/// How messages are named (the contract's inputs).
#[derive(Debug, Clone)]
pub struct Naming {
    /// `subject_prefix`.
    pub prefix: String,
    /// `node_id` in effect.
    pub node_id: String,
    /// The data directory's journal epoch.
    pub epoch: u32,
}

/// One thing to publish, or a marker that only moves the cursor (a change the stream does not
/// carry: an OFFER's reservation; the end of an empty snapshot).
#[derive(Debug)]
pub struct Item {
    /// The shard whose journal it comes from.
    pub shard: usize,
    /// `(subject, Nats-Msg-Id, payload)`; `None` for a marker.
    pub message: Option<(String, String, Vec<u8>)>,
    /// Once this item is acknowledged, every record of the shard up to this one is.
    pub advance: Option<u64>,
}

/// The keys of the bindings a snapshot holds (about 12 octets per v4 binding, the DUID plus 16
/// per v6 one, plus the hash table's overhead).
#[derive(Debug, Default)]
pub struct SnapshotKeys {
    v4: HashSet<(Ipv4Addr, Option<PortParams>)>,
    v6: HashSet<(Box<[u8]>, Ipv6Addr)>,
}

impl SnapshotKeys {
    fn insert(&mut self, c: &Change) {
        match c {
            Change::V4 { binding, .. } => {
                self.v4.insert((binding.addr, binding.port_params));
            }
            Change::V6 { binding, .. } => {
                self.v6
                    .insert((binding.duid.clone().into_boxed_slice(), binding.link));
            }
        }
    }

    /// Whether the snapshot holds a binding with `b`'s key.
    pub fn holds(&self, b: &FeedBinding) -> bool {
        match b {
            FeedBinding::V4(b) => self.v4.contains(&(b.addr, b.port_params)),
            FeedBinding::V6(b) => self
                .v6
                .contains(&(b.duid.clone().into_boxed_slice(), b.link)),
        }
    }

    /// Bindings held.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A binding on the stream that the republished snapshot lacks: published as a remove.
#[derive(Debug)]
pub struct Removal {
    /// Its subject.
    pub subject: String,
    /// Its last state on the stream (the remove's payload).
    pub binding: FeedBinding,
    /// Its last message's `changed`.
    pub changed: u32,
}

/// A loaded snapshot waiting to be published.
struct Snap {
    data: Vec<u8>,
    /// The record sequence of the cut (every record up to it is in the snapshot).
    cut: u64,
    /// The first journal record after it.
    next: u64,
    keys: SnapshotKeys,
    /// Unix seconds the snapshot file was written (its modification time).
    written: u32,
}

enum Pos {
    /// Publish the newest snapshot, then the journal after it.
    NeedSnapshot,
    /// A snapshot loaded: waiting for the publisher to read the stream ([`ShardSpool::reconcile`]).
    Reconcile(Box<Snap>),
    /// The removes the stream read found, then (`more`: another read, else) the snapshot.
    Removes {
        snap: Box<Snap>,
        list: std::vec::IntoIter<Removal>,
        more: bool,
    },
    /// Snapshot entries being published.
    Snapshot {
        data: Vec<u8>,
        off: usize,
        n: u64,
        seq: u64,
        next: u64,
    },
    /// Journal records from `want` on.
    Journal { want: u64, seg: Option<Segment> },
}

struct Segment {
    file: File,
    pos: u64,
    buf: Vec<u8>,
    buf_at: u64,
}

/// One shard's reader.
pub struct ShardSpool {
    shard: usize,
    dir: PathBuf,
    /// Every record up to this one is acknowledged (`None`: nothing in this epoch yet).
    pub acked: Option<u64>,
    pos: Pos,
    /// The durable record sequence number the shard reported ([`UNKNOWN`] before the first).
    pub durable: Arc<AtomicU64>,
    checked: bool,
    stuck_logged: bool,
}

impl std::fmt::Debug for ShardSpool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSpool")
            .field("shard", &self.shard)
            .field("acked", &self.acked)
            .finish()
    }
}

impl ShardSpool {
    /// A reader of shard `shard` of the data directory `data_dir`, resuming after `acked`.
    pub fn new(data_dir: &Path, shard: usize, acked: Option<u64>) -> ShardSpool {
        let mut s = ShardSpool {
            shard,
            dir: shard_dir(data_dir, shard),
            acked,
            pos: Pos::NeedSnapshot,
            durable: Arc::new(AtomicU64::new(UNKNOWN)),
            checked: false,
            stuck_logged: false,
        };
        s.rewind();
        s
    }

    /// Reading goes back to the first record not acknowledged (after a failed publish).
    pub fn rewind(&mut self) {
        self.pos = match self.acked {
            None => Pos::NeedSnapshot,
            Some(a) => Pos::Journal {
                want: a + 1,
                seg: None,
            },
        };
    }

    /// Durable records not acknowledged yet.
    pub fn pending(&self) -> u64 {
        match self.durable.load(Ordering::Acquire) {
            UNKNOWN => 0,
            d => d.saturating_sub(self.acked.unwrap_or(0)),
        }
    }

    /// The next item, `None` when nothing more is durable now.
    pub fn next(&mut self, naming: &Naming) -> Option<Item> {
        let durable = self.durable.load(Ordering::Acquire);
        if durable == UNKNOWN {
            return None;
        }
        if !self.checked {
            self.checked = true;
            // A cursor past the journal (a data directory restored from an older copy): start
            // over from the snapshot rather than skip what the journal will number again.
            if self.acked.is_some_and(|a| a > durable) {
                warn!(
                    shard = self.shard,
                    acked = self.acked,
                    durable,
                    "cluster: the published cursor is past the journal; publishing the shard's state again"
                );
                self.acked = None;
                self.rewind();
            }
        }
        let mut relocated = false;
        loop {
            match &mut self.pos {
                Pos::NeedSnapshot => match self.load_snapshot() {
                    Ok(p) => self.pos = p,
                    Err(e) => {
                        self.stuck(&e);
                        return None;
                    }
                },
                Pos::Reconcile(_) => return None,
                Pos::Removes { snap, list, more } => {
                    if let Some(r) = list.next() {
                        return Some(removal_item(self.shard, naming, snap, r));
                    }
                    let more = *more;
                    let Pos::Removes { snap, .. } =
                        std::mem::replace(&mut self.pos, Pos::NeedSnapshot)
                    else {
                        return None;
                    };
                    self.pos = if more {
                        Pos::Reconcile(snap)
                    } else {
                        let Snap {
                            data, cut, next, ..
                        } = *snap;
                        Pos::Snapshot {
                            data,
                            off: BLOCK,
                            n: 0,
                            seq: cut,
                            next,
                        }
                    };
                }
                Pos::Snapshot {
                    data,
                    off,
                    n,
                    seq,
                    next,
                } => {
                    let (done, item) = snapshot_item(self.shard, naming, data, off, n, *seq, *next);
                    if done {
                        let next = *next;
                        self.pos = Pos::Journal {
                            want: next,
                            seg: None,
                        };
                    }
                    if item.is_some() {
                        return item;
                    }
                }
                Pos::Journal { want, seg } => {
                    if *want > durable {
                        return None;
                    }
                    if seg.is_none() {
                        match locate(&self.dir, *want) {
                            Located::Segment(s) => *seg = Some(s),
                            Located::NotYet => return None,
                            Located::Gone => {
                                warn!(
                                    shard = self.shard,
                                    want = *want,
                                    "cluster: journal records after the published cursor were \
                                     compacted away; publishing the shard's snapshot"
                                );
                                self.pos = Pos::NeedSnapshot;
                                continue;
                            }
                        }
                    }
                    let s = seg.as_mut()?;
                    match read_record(s, *want, durable) {
                        Read::Record(seq, change) => {
                            *want = seq + 1;
                            self.stuck_logged = false;
                            return Some(journal_item(self.shard, naming, seq, &change));
                        }
                        Read::Wait => return None,
                        Read::End => {
                            // The segment ends before `want`: a newer segment holds it (look
                            // once per call).
                            *seg = None;
                            if relocated {
                                return None;
                            }
                            relocated = true;
                        }
                        Read::Bad(e) => {
                            *seg = None;
                            self.stuck(&e);
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn stuck(&mut self, e: &str) {
        if !self.stuck_logged {
            self.stuck_logged = true;
            warn!(
                shard = self.shard,
                "cluster: cannot read the journal yet: {e}"
            );
        }
    }

    fn load_snapshot(&self) -> Result<Pos, String> {
        let mut newest: Option<u64> = None;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        for e in entries.flatten() {
            if let Some(rest) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("snapshot-"))
            {
                if let Some(hex) = rest.strip_suffix(".snap") {
                    if let Ok(s) = u64::from_str_radix(hex, 16) {
                        newest = newest.max(Some(s));
                    }
                }
            }
        }
        let Some(s) = newest else {
            // No snapshot: the journal from its first record is the whole state.
            return Ok(Pos::Journal { want: 1, seg: None });
        };
        let path = self.dir.join(snapshot_name(s));
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let h = FileHeader::decode(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        if h.kind != FileKind::Snapshot {
            return Err(format!("{}: not a snapshot", path.display()));
        }
        let cut = h.record_seq.saturating_sub(1);
        let written = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32);
        let mut keys = SnapshotKeys::default();
        let mut off = BLOCK;
        while let Some(rest) = data.get(off..) {
            match record::unframe(rest) {
                Ok(Frame::Record { payload, total, .. }) => {
                    off += total;
                    match record::decode_payload(payload) {
                        Ok(Payload::Change(c)) => keys.insert(&c),
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        Ok(Pos::Reconcile(Box::new(Snap {
            data,
            cut,
            next: h.record_seq,
            keys,
            written,
        })))
    }

    /// When the shard waits for its reconcile read: the stream sequence of the snapshot's cut
    /// (a binding's last message with a `seq` below it, not a remove, qualifies) and the
    /// snapshot's keys.
    pub fn reconcile(&self, naming: &Naming) -> Option<(u64, &SnapshotKeys)> {
        match &self.pos {
            Pos::Reconcile(snap) => Some((cut_seq(naming, snap.cut), &snap.keys)),
            _ => None,
        }
    }

    /// The removes the reconcile read found (`more`: it stopped at [`MAX_REMOVES`]; the shard
    /// reads again after publishing them). Without a waiting snapshot, nothing.
    pub fn removals(&mut self, mut list: Vec<Removal>, more: bool) {
        if let Pos::Reconcile(_) = self.pos {
            let Pos::Reconcile(snap) = std::mem::replace(&mut self.pos, Pos::NeedSnapshot) else {
                return;
            };
            // In subject order: the same removes in the same order on a retry.
            list.sort_by(|a, b| a.subject.cmp(&b.subject));
            self.pos = Pos::Removes {
                snap,
                list: list.into_iter(),
                more,
            };
        }
    }
}

/// The stream sequence of a snapshot's cut (its entries' and its removes' `seq`).
fn cut_seq(naming: &Naming, cut: u64) -> u64 {
    contract::stream_seq(naming.epoch, cut).unwrap_or(u64::MAX >> 11)
}

/// The remove of a binding the snapshot lacks.
fn removal_item(shard: usize, naming: &Naming, snap: &Snap, r: Removal) -> Item {
    let seq = cut_seq(naming, snap.cut);
    let changed = snap.written.max(r.changed);
    let id = contract::reconcile_msg_id(&naming.prefix, &naming.node_id, shard, seq, &r.subject);
    let payload = contract::encode_remove(&r.binding, changed, seq);
    Item {
        shard,
        message: Some((r.subject, id, payload)),
        advance: None,
    }
}

/// The next entry of a snapshot: `(done, item)`.
fn snapshot_item(
    shard: usize,
    naming: &Naming,
    data: &[u8],
    off: &mut usize,
    n: &mut u64,
    cut: u64,
    next: u64,
) -> (bool, Option<Item>) {
    let end_marker = || Item {
        shard,
        message: None,
        advance: Some(next - 1),
    };
    // Snapshot records are contiguous up to the end record (replay checked the file).
    let Some(rest) = data.get(*off..) else {
        return (true, Some(end_marker()));
    };
    match record::unframe(rest) {
        Ok(Frame::Padding) | Err(_) => (true, Some(end_marker())),
        Ok(Frame::Record { payload, total, .. }) => {
            *off += total;
            match record::decode_payload(payload) {
                Ok(Payload::Change(c)) => {
                    *n += 1;
                    let seq = cut_seq(naming, cut);
                    let subject = contract::subject(&naming.prefix, &naming.node_id, &c);
                    let id = contract::snapshot_msg_id(&naming.node_id, shard, seq, *n);
                    let payload = contract::encode_payload(&c, seq);
                    (
                        false,
                        Some(Item {
                            shard,
                            message: Some((subject, id, payload)),
                            advance: None,
                        }),
                    )
                }
                Ok(Payload::SnapshotEnd(_)) | Err(_) => (true, Some(end_marker())),
            }
        }
    }
}

fn journal_item(shard: usize, naming: &Naming, rec: u64, c: &Change) -> Item {
    // An OFFER reserves an address; it is not a lease and active leasequery does not publish
    // it either: the stream does not carry it (the cursor moves past it).
    if c.kind() == ChangeKind::Offer {
        return Item {
            shard,
            message: None,
            advance: Some(rec),
        };
    }
    let seq = contract::stream_seq(naming.epoch, rec).unwrap_or(u64::MAX >> 11);
    Item {
        shard,
        message: Some((
            contract::subject(&naming.prefix, &naming.node_id, c),
            contract::msg_id(&naming.node_id, shard, seq),
            contract::encode_payload(c, seq),
        )),
        advance: Some(rec),
    }
}

enum Located {
    Segment(Segment),
    /// No segment holds it yet.
    NotYet,
    /// Older than every segment left: compacted away.
    Gone,
}

fn locate(dir: &Path, want: u64) -> Located {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Located::NotYet;
    };
    let mut segs: Vec<(u64, PathBuf)> = Vec::new();
    let mut newest_snap_start: Option<u64> = None;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name
            .strip_prefix("journal-")
            .and_then(|r| r.strip_suffix(".log"))
        {
            if let Ok(s) = u64::from_str_radix(hex, 16) {
                segs.push((s, e.path()));
            }
        } else if name.starts_with("snapshot-") && name.ends_with(".snap") {
            let mut head = [0u8; HEADER_LEN];
            if File::open(e.path())
                .and_then(|f| f.read_exact_at(&mut head, 0))
                .is_ok()
            {
                if let Ok(h) = FileHeader::decode(&head) {
                    newest_snap_start = newest_snap_start.max(Some(h.record_seq));
                }
            }
        }
    }
    segs.sort();
    let mut best: Option<(u64, File)> = None;
    let mut first_start: Option<u64> = None;
    for (_, path) in segs {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut head = [0u8; HEADER_LEN];
        if file.read_exact_at(&mut head, 0).is_err() {
            continue;
        }
        let Ok(h) = FileHeader::decode(&head) else {
            continue;
        };
        first_start = Some(first_start.map_or(h.record_seq, |f: u64| f.min(h.record_seq)));
        if h.record_seq <= want && best.as_ref().is_none_or(|(s, _)| h.record_seq >= *s) {
            best = Some((h.record_seq, file));
        }
    }
    match best {
        Some((_, file)) => Located::Segment(Segment {
            file,
            pos: BLOCK as u64,
            buf: Vec::new(),
            buf_at: BLOCK as u64,
        }),
        None => {
            // Nothing at or below `want`: gone when a snapshot or a segment starts past it.
            let past = newest_snap_start.is_some_and(|s| s > want)
                || first_start.is_some_and(|s| s > want);
            if past {
                Located::Gone
            } else {
                Located::NotYet
            }
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum Read {
    Record(u64, Change),
    /// Not written (or not durable) yet.
    Wait,
    /// The segment ends before `want`.
    End,
    Bad(String),
}

fn read_record(s: &mut Segment, want: u64, durable: u64) -> Read {
    let end = if want <= durable {
        Read::End
    } else {
        Read::Wait
    };
    // True right after a read at `s.pos` that came back shorter than asked (the end of what
    // is written).
    let mut short = false;
    let mut need = READ_CHUNK;
    loop {
        let have = if s.pos >= s.buf_at {
            s.buf.get((s.pos - s.buf_at) as usize..).unwrap_or_default()
        } else {
            &[]
        };
        match record::unframe(have) {
            Ok(Frame::Padding) => {
                let block = BLOCK as u64;
                if s.pos % block == 0 {
                    // A block that starts with zeros holds no commit (yet).
                    return end;
                }
                s.pos = (s.pos / block + 1) * block;
                short = false;
            }
            Ok(Frame::Record {
                seq,
                payload,
                total,
            }) => {
                if seq > durable {
                    return Read::Wait;
                }
                if seq < want {
                    s.pos += total as u64;
                    short = false;
                    continue;
                }
                if seq > want {
                    return Read::Bad(format!("record {seq} where record {want} belongs"));
                }
                let change = match record::decode_payload(payload) {
                    Ok(Payload::Change(c)) => c,
                    Ok(Payload::SnapshotEnd(_)) => {
                        return Read::Bad("end record in a journal".into())
                    }
                    Err(e) => return Read::Bad(format!("record {seq}: {e}")),
                };
                s.pos += total as u64;
                return Read::Record(seq, change);
            }
            Err(record::RecordError::Truncated) => {
                if short {
                    return end;
                }
                if let Some(l) = have.get(..4) {
                    let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    need = need.max(len.min(record::MAX_PAYLOAD) + record::FRAME_LEN);
                }
                let mut buf = vec![0u8; need];
                let n = match read_at_most(&s.file, &mut buf, s.pos) {
                    Ok(n) => n,
                    Err(e) => return Read::Bad(e.to_string()),
                };
                buf.truncate(n);
                short = n < need;
                s.buf = buf;
                s.buf_at = s.pos;
                if n == 0 {
                    return end;
                }
            }
            Err(e) => {
                // A torn or unwritten region: wait while the record is not durable; past it
                // the data is damaged.
                return if want <= durable {
                    Read::Bad(format!("at byte offset {}: {e}", s.pos))
                } else {
                    Read::Wait
                };
            }
        }
    }
}

fn read_at_most(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The cursor: the epoch and shard count it was written under, and per shard the last
/// acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The journal epoch.
    pub epoch: u32,
    /// Per shard: every record up to this one is acknowledged.
    pub acked: Vec<Option<u64>>,
}

impl Cursor {
    /// The text of the cursor file: `epoch E`, `shards N`, then one line per shard `K SEQ` (or
    /// `K -` when nothing of this epoch is acknowledged).
    pub fn encode(&self) -> String {
        let mut s = format!("epoch {}\nshards {}\n", self.epoch, self.acked.len());
        for (k, a) in self.acked.iter().enumerate() {
            match a {
                Some(a) => s.push_str(&format!("{k} {a}\n")),
                None => s.push_str(&format!("{k} -\n")),
            }
        }
        s
    }

    /// Parses the cursor file's text (`None` when it is not one).
    pub fn decode(text: &str) -> Option<Cursor> {
        let mut lines = text.lines();
        let epoch = lines.next()?.strip_prefix("epoch ")?.parse().ok()?;
        let shards: usize = lines.next()?.strip_prefix("shards ")?.parse().ok()?;
        if shards > 1024 {
            return None;
        }
        let mut acked = Vec::with_capacity(shards);
        for k in 0..shards {
            let (i, v) = lines.next()?.split_once(' ')?;
            if i.parse::<usize>().ok()? != k {
                return None;
            }
            acked.push(if v == "-" {
                None
            } else {
                Some(v.parse().ok()?)
            });
        }
        Some(Cursor { epoch, acked })
    }

    /// The cursor kept in `data_dir` when it matches `epoch` and `shards`; otherwise (none,
    /// another epoch or shard count: the journals were renumbered) nothing is acknowledged.
    pub fn load(data_dir: &Path, epoch: u32, shards: usize) -> Cursor {
        let fresh = Cursor {
            epoch,
            acked: vec![None; shards],
        };
        let path = data_dir.join(CURSOR_FILE);
        match std::fs::read_to_string(&path) {
            Ok(t) => match Cursor::decode(&t) {
                Some(c) if c.epoch == epoch && c.acked.len() == shards => c,
                Some(_) => fresh,
                None => {
                    warn!(file = %path.display(), "cluster: unreadable cursor file; publishing the whole state again");
                    fresh
                }
            },
            Err(_) => fresh,
        }
    }

    /// Writes it (temporary file, data sync, rename).
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{CURSOR_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(self.encode().as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, data_dir.join(CURSOR_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let c = Cursor {
            epoch: 3,
            acked: vec![Some(10), None, Some(0)],
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        for bad in [
            "",
            "epoch x\nshards 1\n0 1\n",
            "epoch 1\nshards 2\n0 1\n",
            "epoch 1\nshards 1\n1 1\n",
            "epoch 1\nshards 1\n0 -1\n",
            "epoch 1\nshards 99999\n",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("lqd-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        c.store(&dir).unwrap();
        assert_eq!(Cursor::load(&dir, 3, 3), c);
        // Another epoch or shard count: start over.
        assert_eq!(Cursor::load(&dir, 4, 3).acked, vec![None; 3]);
        assert_eq!(Cursor::load(&dir, 3, 2).acked, vec![None; 2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn v4(line: &str) -> crate::lease::V4Binding {
        match crate::feed::import::parse_line(line) {
            Ok(Some(FeedBinding::V4(b))) => b,
            other => panic!("{other:?}"),
        }
    }

    fn line(a: &str) -> String {
        format!(
            r#"{{"ipv4":"{a}","chaddr":"020000000001","state":"active","cltt":100,"expires":200,"link":"::1"}}"#
        )
    }

    /// A snapshot published whole waits for its reconcile read; the removes it is given come
    /// first (no cursor move), then its entries, and only its end moves the cursor; a rewind
    /// before the end does the reconcile again; `more` reads again after the removes.
    #[test]
    fn a_republished_snapshot_publishes_its_removes_before_the_cursor_moves() {
        let dir = std::env::temp_dir().join(format!("lqd-spool-rec-{}", std::process::id()));
        let sdir = shard_dir(&dir, 0);
        std::fs::create_dir_all(&sdir).unwrap();
        let header = FileHeader {
            kind: FileKind::Snapshot,
            shards: 1,
            shard: 0,
            seq: 1,
            record_seq: 6,
        };
        let mut data = vec![0u8; BLOCK];
        data[..HEADER_LEN].copy_from_slice(&header.encode());
        let held = [v4(&line("192.0.2.1")), v4(&line("192.0.2.2"))];
        for (i, b) in held.iter().enumerate() {
            let c = Change::V4 {
                at: 100,
                kind: ChangeKind::Feed,
                binding: b.clone(),
            };
            record::encode_change(i as u64 + 1, &c, &mut data).unwrap();
        }
        record::encode_snapshot_end(2, &mut data);
        std::fs::write(sdir.join(snapshot_name(1)), &data).unwrap();
        let naming = Naming {
            prefix: "lq".into(),
            node_id: "n1".into(),
            epoch: 2,
        };
        let cut = contract::stream_seq(2, 5).unwrap();
        let ghost = v4(&line("192.0.2.9"));
        let ghost_subject = contract::subject_v4("lq", "n1", &ghost);
        let removal = || Removal {
            subject: ghost_subject.clone(),
            binding: FeedBinding::V4(ghost.clone()),
            changed: u32::MAX - 1,
        };

        let mut sp = ShardSpool::new(&dir, 0, None);
        sp.durable.store(5, Ordering::Release);
        assert!(sp.next(&naming).is_none(), "waits for the reconcile read");
        let (seq, keys) = sp.reconcile(&naming).expect("a reconcile is wanted");
        assert_eq!(seq, cut);
        assert_eq!(keys.len(), 2);
        assert!(keys.holds(&FeedBinding::V4(held[1].clone())));
        assert!(!keys.holds(&FeedBinding::V4(ghost.clone())));
        // Nothing is published while it waits.
        assert!(sp.next(&naming).is_none());

        // One pass that stopped at its bound: the remove, then another read.
        sp.removals(vec![removal()], true);
        let it = sp.next(&naming).unwrap();
        assert_eq!(it.advance, None);
        let (subject, id, payload) = it.message.unwrap();
        assert_eq!(subject, ghost_subject);
        assert_eq!(id, format!("n1-0-{cut}-rm.v4.192-0-2-9"));
        let m = contract::decode_payload(&payload).unwrap();
        assert_eq!(m.op, contract::Op::Remove);
        assert_eq!((m.seq, m.changed), (cut, u32::MAX - 1));
        assert_eq!(m.binding, FeedBinding::V4(ghost.clone()));
        assert!(sp.next(&naming).is_none());
        assert!(
            sp.reconcile(&naming).is_some(),
            "reads again after a full pass"
        );

        // A failure before the snapshot's end: everything again, the reconcile first.
        sp.removals(vec![removal()], false);
        assert!(sp.next(&naming).unwrap().message.is_some());
        sp.rewind();
        assert!(sp.next(&naming).is_none());
        assert!(sp.reconcile(&naming).is_some());

        sp.removals(vec![removal()], false);
        let mut items = Vec::new();
        while let Some(it) = sp.next(&naming) {
            items.push(it);
        }
        // The remove, the two entries, the end marker (the only cursor move, at the cut).
        assert_eq!(items.len(), 4, "{items:?}");
        assert!(items[..3].iter().all(|i| i.advance.is_none()));
        assert!(items[1..3].iter().all(|i| {
            let (_, _, p) = i.message.as_ref().unwrap();
            let m = contract::decode_payload(p).unwrap();
            m.op == contract::Op::Upsert && m.seq == cut
        }));
        assert_eq!(items[3].advance, Some(5));
        assert!(items[3].message.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
