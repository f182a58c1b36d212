//! The journal's binary encoding (sans-io): one [`Change`] per record, records framed with a
//! length, a sequence number and a CRC-32, and the header that starts every journal segment and
//! snapshot file.
//!
//! # Framing
//!
//! Every integer is big-endian. A record is
//!
//! ```text
//! [len: u32][crc: u32][seq: u64][payload: len octets]
//! ```
//!
//! `len` is 1..=[`MAX_PAYLOAD`] (the payload's length); `crc` is CRC-32 (IEEE 802.3, the
//! zlib/`crc32fast` one) of the four `len` octets, the eight `seq` octets and the payload, so a
//! damaged length or sequence number is caught too. A `len` of 0 is never a record: it marks
//! zero padding up to the next [`BLOCK`] boundary (the journal pads each group commit to the
//! O_DIRECT block size; records may span blocks inside one commit).
//!
//! `seq` numbers the records of one shard's journal: 1, 2, 3, ... in append order, without a
//! gap, across segment rotation, restarts and snapshots (each file header says where its
//! numbering starts, [`FileHeader::record_seq`]). Replay checks it, so data that vanished
//! between valid records (a zeroed block reads as padding) is a gap, not padding. In a snapshot
//! the records are numbered 1..=n and the end record n + 1.
//!
//! # Payload, format version 2
//!
//! The first octet is a tag:
//!
//! - `1` v4/4o6 change ([`Change::V4`]): `at u32`, `kind u8` ([`ChangeKind`] number), then the
//!   [`V4Binding`]: `addr [4]`, `port_params opt{offset u8, psid_len u8, psid u16}`, `htype u8`,
//!   `chaddr bytes8`, `client_id optbytes`, `state u8`, `cltt u32`, `state_start u32`,
//!   `expires u32`, `circuit_id optbytes`, `remote_id optbytes`, `relay_id optbytes`,
//!   `softwire_src opt[16]`, `v6 opt{client_src [16], link [16], relay opt{hop_count u8,
//!   link_address [16], peer_address [16], interface_id optbytes, relay_id optbytes, remote_id
//!   optbytes}}`, `data_source u8`.
//! - `2` plain v6 change ([`Change::V6`]): `at u32`, `kind u8`, then the [`V6Binding`]:
//!   `duid bytes16`, `link [16]`, `iana count u16 × {addr [16], preferred_until u32,
//!   valid_until u32}`, `iapd count u16 × {prefix [16], prefix_len u8, preferred_until u32,
//!   valid_until u32}`, `cltt u32`, `relay_id optbytes`, `remote_id optbytes`.
//! - `3` end of a snapshot: `count u64`, the number of binding records before it.
//!
//! where `opt{..}` is an octet 0 (absent) or 1 (present) followed by the fields when present,
//! `bytes8` is `u8` length + octets, `bytes16` is `u16` length + octets and `optbytes` is
//! `opt{bytes16}`. A payload must be consumed exactly; anything else is a [`RecordError`].
//! (The payload is the same as in format version 1; version 1 frames had no `seq`.)
//!
//! # File header
//!
//! Every journal segment and snapshot starts with a header of [`HEADER_LEN`] octets padded with
//! zeros to [`BLOCK`]: `magic "LQSTORE\0"`, `version u16` ([`FORMAT_VERSION`]), `file kind u8`
//! ([`FileKind`]), `reserved u8 (0)`, `shards u32`, `shard u32`, `seq u64`, `record_seq u64`,
//! `crc u32` (CRC-32 of the 36 octets before it). Records start at offset [`BLOCK`]. A file of
//! another version is refused ([`RecordError::BadVersion`]): this build reads version 2 only.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::lease::{Change, ChangeKind, RelayBinding, V4Binding, V6Binding, V6ContextBinding};
use crate::proto::record::{PortParams, V6Addr, V6Prefix};

/// The on-disk format version written in every file header.
pub const FORMAT_VERSION: u16 = 2;
/// The file header magic.
pub const MAGIC: [u8; 8] = *b"LQSTORE\0";
/// Octets of a file header before its padding.
pub const HEADER_LEN: usize = 40;
/// The block size files are written in (a multiple of every O_DIRECT alignment in use: 512 and
/// 4096); records start at this offset and every group commit is padded to it.
pub const BLOCK: usize = 4096;
/// Octets of a record's frame before its payload (length, CRC, sequence number).
pub const FRAME_LEN: usize = 16;
/// The largest payload a record may have (1 MiB): a larger length is damage, not data.
pub const MAX_PAYLOAD: usize = 1 << 20;

const TAG_V4: u8 = 1;
const TAG_V6: u8 = 2;
const TAG_END: u8 = 3;

/// Why bytes are not a valid record, payload or header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer octets than the frame or field needs.
    #[error("truncated")]
    Truncated,
    /// A length of 0 or above [`MAX_PAYLOAD`].
    #[error("record length {0} out of range")]
    BadLength(u32),
    /// The CRC does not match.
    #[error("checksum mismatch")]
    BadCrc,
    /// An unknown payload tag.
    #[error("unknown record tag {0}")]
    BadTag(u8),
    /// An unknown change kind number.
    #[error("unknown change kind {0}")]
    BadKind(u8),
    /// An option flag other than 0 or 1.
    #[error("bad presence flag {0}")]
    BadFlag(u8),
    /// A field's value is out of its range (chaddr above 16 octets, port parameters).
    #[error("field out of range: {0}")]
    BadField(&'static str),
    /// Octets left after the payload's last field.
    #[error("{0} trailing octets")]
    Trailing(usize),
    /// A file header with the wrong magic.
    #[error("bad magic")]
    BadMagic,
    /// A file header of another format version than [`FORMAT_VERSION`] (version 1, written
    /// before records had sequence numbers, is not read).
    #[error("unsupported store format version {0} (this build reads version 2 only)")]
    BadVersion(u16),
    /// A value too large to encode (a field above 65535 octets, more than 65535 addresses).
    #[error("too large to encode: {0}")]
    TooLarge(&'static str),
}

/// What a decoded payload holds (decoded one at a time, so the size difference is harmless).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A binding change (journal record or snapshot entry).
    Change(Change),
    /// The end of a snapshot, with the number of binding records before it.
    SnapshotEnd(u64),
}

/// The kind of a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// A journal segment (`journal-<seq>.log`).
    Journal = 1,
    /// A snapshot (`snapshot-<seq>.snap`).
    Snapshot = 2,
}

/// The header of a journal segment or snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Journal or snapshot.
    pub kind: FileKind,
    /// The shard count the file was written under.
    pub shards: u32,
    /// The shard it belongs to.
    pub shard: u32,
    /// The file's sequence number (the `<seq>` of its name).
    pub seq: u64,
    /// Journal segment: the record sequence number of its first record (the one it would
    /// have when it holds none). Snapshot: the sequence number of the first journal record
    /// after it (every record below it is in the snapshot).
    pub record_seq: u64,
}

impl FileHeader {
    /// The [`HEADER_LEN`] octets of this header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut w = Vec::with_capacity(HEADER_LEN);
        w.extend_from_slice(&MAGIC);
        w.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        w.push(self.kind as u8);
        w.push(0);
        w.extend_from_slice(&self.shards.to_be_bytes());
        w.extend_from_slice(&self.shard.to_be_bytes());
        w.extend_from_slice(&self.seq.to_be_bytes());
        w.extend_from_slice(&self.record_seq.to_be_bytes());
        let crc = crc32fast::hash(&w);
        w.extend_from_slice(&crc.to_be_bytes());
        out.copy_from_slice(&w);
        out
    }

    /// Decodes a header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, RecordError> {
        let h = bytes.get(..HEADER_LEN).ok_or(RecordError::Truncated)?;
        let (body, crc) = h.split_at(HEADER_LEN - 4);
        let mut r = Reader(body);
        if r.take(8)? != MAGIC {
            return Err(RecordError::BadMagic);
        }
        // The version before the CRC: a header of another version (another length) is named
        // as such, never taken for a torn write.
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(RecordError::BadVersion(version));
        }
        let mut c = Reader(crc);
        if c.u32()? != crc32fast::hash(body) {
            return Err(RecordError::BadCrc);
        }
        let kind = match r.u8()? {
            1 => FileKind::Journal,
            2 => FileKind::Snapshot,
            _ => return Err(RecordError::BadField("file kind")),
        };
        let _reserved = r.u8()?;
        Ok(FileHeader {
            kind,
            shards: r.u32()?,
            shard: r.u32()?,
            seq: r.u64()?,
            record_seq: r.u64()?,
        })
    }
}

/// Appends one framed record with sequence number `seq` holding `payload` to `out`.
pub fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(RecordError::TooLarge("record payload"));
    }
    let len = (payload.len() as u32).to_be_bytes();
    let seq = seq.to_be_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&seq);
    h.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(payload);
    Ok(())
}

/// One framed record found at the start of a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A record whose CRC matches; `total` octets (frame + payload) were used.
    Record {
        /// Its sequence number.
        seq: u64,
        /// The payload.
        payload: &'a [u8],
        /// Frame and payload length.
        total: usize,
    },
    /// Zero padding (a length of 0): the rest of the block is padding.
    Padding,
}

/// Reads the framed record at the start of `bytes` (the CRC is checked, the payload is not
/// decoded).
pub fn unframe(bytes: &[u8]) -> Result<Frame<'_>, RecordError> {
    let mut r = Reader(bytes);
    let len_octets: [u8; 4] = r.take(4)?.try_into().map_err(|_| RecordError::Truncated)?;
    let len = u32::from_be_bytes(len_octets);
    if len == 0 {
        return Ok(Frame::Padding);
    }
    if len as usize > MAX_PAYLOAD {
        return Err(RecordError::BadLength(len));
    }
    let crc = r.u32()?;
    let seq_octets = r.array::<8>()?;
    let payload = r.take(len as usize)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&len_octets);
    h.update(&seq_octets);
    h.update(payload);
    if h.finalize() != crc {
        return Err(RecordError::BadCrc);
    }
    Ok(Frame::Record {
        seq: u64::from_be_bytes(seq_octets),
        payload,
        total: FRAME_LEN + len as usize,
    })
}

/// Appends the framed record of `change`, numbered `seq`, to `out` (on error `out` is
/// unchanged).
pub fn encode_change(seq: u64, change: &Change, out: &mut Vec<u8>) -> Result<(), RecordError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    let res = encode_payload(change, out).and_then(|()| {
        let len = out.len() - start - FRAME_LEN;
        if len > MAX_PAYLOAD {
            return Err(RecordError::TooLarge("record payload"));
        }
        Ok(len as u32)
    });
    let len = match res {
        Ok(len) => len.to_be_bytes(),
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let seq = seq.to_be_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&seq);
    h.update(out.get(start + FRAME_LEN..).unwrap_or_default());
    let crc = h.finalize().to_be_bytes();
    if let Some(f) = out.get_mut(start..start + FRAME_LEN) {
        f[..4].copy_from_slice(&len);
        f[4..8].copy_from_slice(&crc);
        f[8..].copy_from_slice(&seq);
    }
    Ok(())
}

/// Appends the framed snapshot end record (`count` binding records before it, so numbered
/// `count + 1`) to `out`.
pub fn encode_snapshot_end(count: u64, out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(9);
    p.push(TAG_END);
    p.extend_from_slice(&count.to_be_bytes());
    // A 9-octet payload always frames.
    let _ = frame(count.saturating_add(1), &p, out);
}

/// Writes the unframed payload of `change` to `out`.
pub fn encode_payload(change: &Change, out: &mut Vec<u8>) -> Result<(), RecordError> {
    match change {
        Change::V4 { at, kind, binding } => {
            out.push(TAG_V4);
            out.extend_from_slice(&at.to_be_bytes());
            out.push(*kind as u8);
            encode_v4(binding, out)
        }
        Change::V6 { at, kind, binding } => {
            out.push(TAG_V6);
            out.extend_from_slice(&at.to_be_bytes());
            out.push(*kind as u8);
            encode_v6(binding, out)
        }
    }
}

fn put_opt_bytes(v: &Option<Vec<u8>>, out: &mut Vec<u8>) -> Result<(), RecordError> {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes16(b, out)?;
        }
    }
    Ok(())
}

fn put_bytes16(b: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let len = u16::try_from(b.len()).map_err(|_| RecordError::TooLarge("field"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn encode_v4(b: &V4Binding, out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.extend_from_slice(&b.addr.octets());
    match b.port_params {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.push(p.offset);
            out.push(p.psid_len);
            out.extend_from_slice(&p.psid.to_be_bytes());
        }
    }
    out.push(b.htype);
    let clen = u8::try_from(b.chaddr.len())
        .ok()
        .filter(|&l| l <= 16)
        .ok_or(RecordError::TooLarge("chaddr"))?;
    out.push(clen);
    out.extend_from_slice(&b.chaddr);
    put_opt_bytes(&b.client_id, out)?;
    out.push(b.state);
    out.extend_from_slice(&b.cltt.to_be_bytes());
    out.extend_from_slice(&b.state_start.to_be_bytes());
    out.extend_from_slice(&b.expires.to_be_bytes());
    put_opt_bytes(&b.circuit_id, out)?;
    put_opt_bytes(&b.remote_id, out)?;
    put_opt_bytes(&b.relay_id, out)?;
    match b.softwire_src {
        None => out.push(0),
        Some(a) => {
            out.push(1);
            out.extend_from_slice(&a.octets());
        }
    }
    match &b.v6 {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            out.extend_from_slice(&c.client_src.octets());
            out.extend_from_slice(&c.link.octets());
            match &c.relay {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.push(r.hop_count);
                    out.extend_from_slice(&r.link_address.octets());
                    out.extend_from_slice(&r.peer_address.octets());
                    put_opt_bytes(&r.interface_id, out)?;
                    put_opt_bytes(&r.relay_id, out)?;
                    put_opt_bytes(&r.remote_id, out)?;
                }
            }
        }
    }
    out.push(b.data_source);
    Ok(())
}

fn encode_v6(b: &V6Binding, out: &mut Vec<u8>) -> Result<(), RecordError> {
    put_bytes16(&b.duid, out)?;
    out.extend_from_slice(&b.link.octets());
    let n = u16::try_from(b.iana.len()).map_err(|_| RecordError::TooLarge("iana"))?;
    out.extend_from_slice(&n.to_be_bytes());
    for a in &b.iana {
        out.extend_from_slice(&a.addr.octets());
        out.extend_from_slice(&a.preferred_until.to_be_bytes());
        out.extend_from_slice(&a.valid_until.to_be_bytes());
    }
    let n = u16::try_from(b.iapd.len()).map_err(|_| RecordError::TooLarge("iapd"))?;
    out.extend_from_slice(&n.to_be_bytes());
    for p in &b.iapd {
        out.extend_from_slice(&p.prefix.octets());
        out.push(p.prefix_len);
        out.extend_from_slice(&p.preferred_until.to_be_bytes());
        out.extend_from_slice(&p.valid_until.to_be_bytes());
    }
    out.extend_from_slice(&b.cltt.to_be_bytes());
    put_opt_bytes(&b.relay_id, out)?;
    put_opt_bytes(&b.remote_id, out)?;
    Ok(())
}

/// Decodes one unframed payload; never panics.
pub fn decode_payload(bytes: &[u8]) -> Result<Payload, RecordError> {
    let mut r = Reader(bytes);
    let out = match r.u8()? {
        TAG_V4 => {
            let at = r.u32()?;
            let k = r.u8()?;
            let kind = ChangeKind::from_u8(k).ok_or(RecordError::BadKind(k))?;
            let binding = decode_v4(&mut r)?;
            Payload::Change(Change::V4 { at, kind, binding })
        }
        TAG_V6 => {
            let at = r.u32()?;
            let k = r.u8()?;
            let kind = ChangeKind::from_u8(k).ok_or(RecordError::BadKind(k))?;
            let binding = decode_v6(&mut r)?;
            Payload::Change(Change::V6 { at, kind, binding })
        }
        TAG_END => Payload::SnapshotEnd(r.u64()?),
        t => return Err(RecordError::BadTag(t)),
    };
    if !r.0.is_empty() {
        return Err(RecordError::Trailing(r.0.len()));
    }
    Ok(out)
}

/// Reads and decodes the framed record at the start of `bytes`: its sequence number, the
/// payload and the octets used. Padding is reported as [`RecordError::BadLength`]`(0)`.
pub fn decode_record(bytes: &[u8]) -> Result<(u64, Payload, usize), RecordError> {
    match unframe(bytes)? {
        Frame::Padding => Err(RecordError::BadLength(0)),
        Frame::Record {
            seq,
            payload,
            total,
        } => Ok((seq, decode_payload(payload)?, total)),
    }
}

fn decode_v4(r: &mut Reader<'_>) -> Result<V4Binding, RecordError> {
    let addr = Ipv4Addr::from(r.array::<4>()?);
    let port_params = if r.flag()? {
        let offset = r.u8()?;
        let psid_len = r.u8()?;
        let psid = r.u16()?;
        let p = PortParams {
            offset,
            psid_len,
            psid,
        };
        if PortParams::from_wire(offset, psid_len, p.wire_psid()) != Some(p) {
            return Err(RecordError::BadField("port parameters"));
        }
        Some(p)
    } else {
        None
    };
    let htype = r.u8()?;
    let clen = r.u8()? as usize;
    if clen > 16 {
        return Err(RecordError::BadField("chaddr"));
    }
    let chaddr = r.take(clen)?.to_vec();
    let client_id = r.opt_bytes()?;
    let state = r.u8()?;
    let cltt = r.u32()?;
    let state_start = r.u32()?;
    let expires = r.u32()?;
    let circuit_id = r.opt_bytes()?;
    let remote_id = r.opt_bytes()?;
    let relay_id = r.opt_bytes()?;
    let softwire_src = if r.flag()? { Some(r.v6addr()?) } else { None };
    let v6 = if r.flag()? {
        let client_src = r.v6addr()?;
        let link = r.v6addr()?;
        let relay = if r.flag()? {
            Some(RelayBinding {
                hop_count: r.u8()?,
                link_address: r.v6addr()?,
                peer_address: r.v6addr()?,
                interface_id: r.opt_bytes()?,
                relay_id: r.opt_bytes()?,
                remote_id: r.opt_bytes()?,
            })
        } else {
            None
        };
        Some(V6ContextBinding {
            client_src,
            link,
            relay,
        })
    } else {
        None
    };
    let data_source = r.u8()?;
    Ok(V4Binding {
        addr,
        port_params,
        htype,
        chaddr,
        client_id,
        state,
        cltt,
        state_start,
        expires,
        circuit_id,
        remote_id,
        relay_id,
        softwire_src,
        v6,
        data_source,
    })
}

fn decode_v6(r: &mut Reader<'_>) -> Result<V6Binding, RecordError> {
    let dlen = r.u16()? as usize;
    let duid = r.take(dlen)?.to_vec();
    let link = r.v6addr()?;
    let n = r.u16()? as usize;
    // Each entry is at least 24 octets: check before reserving.
    if r.0.len() < n.saturating_mul(24) {
        return Err(RecordError::Truncated);
    }
    let mut iana = Vec::with_capacity(n);
    for _ in 0..n {
        iana.push(V6Addr {
            addr: r.v6addr()?,
            preferred_until: r.u32()?,
            valid_until: r.u32()?,
        });
    }
    let n = r.u16()? as usize;
    if r.0.len() < n.saturating_mul(25) {
        return Err(RecordError::Truncated);
    }
    let mut iapd = Vec::with_capacity(n);
    for _ in 0..n {
        iapd.push(V6Prefix {
            prefix: r.v6addr()?,
            prefix_len: r.u8()?,
            preferred_until: r.u32()?,
            valid_until: r.u32()?,
        });
    }
    Ok(V6Binding {
        duid,
        link,
        iana,
        iapd,
        cltt: r.u32()?,
        relay_id: r.opt_bytes()?,
        remote_id: r.opt_bytes()?,
    })
}

/// A cursor over untrusted octets: every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        self.take(N)?.try_into().map_err(|_| RecordError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn v6addr(&mut self) -> Result<Ipv6Addr, RecordError> {
        Ok(Ipv6Addr::from(self.array::<16>()?))
    }

    fn flag(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            f => Err(RecordError::BadFlag(f)),
        }
    }

    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, RecordError> {
        if !self.flag()? {
            return Ok(None);
        }
        let n = self.u16()? as usize;
        Ok(Some(self.take(n)?.to_vec()))
    }
}
