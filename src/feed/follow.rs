//! The feed file (`--feed FILE`, config key `feed`): a JSON-lines file in the import format
//! ([`super::import`]) that the server follows as it grows, like `tail -f`.
//!
//! Every complete line is one binding's new state: it is routed to its owning shard, upserted
//! there and published as a [`crate::lease::Change`] of kind `Feed` (active leasequery
//! subscribers see it); with a data directory it is journaled first and applied once durable,
//! and a line identical to the binding held is no change (`shard::active` feed). The shell
//! polls every 100 ms ([`POLL_INTERVAL`]).
//!
//! - A partial last line (no newline yet) waits for its newline.
//! - A bad line is logged with `FILE:LINE: reason`, counted ([`FeedFollower::bad_lines`]) and
//!   skipped; it never stops the server.
//! - The file is read from its start when the server starts (lines already there are applied
//!   as changes, after the import file if any); a file that does not exist yet is waited for;
//!   a file that shrinks (truncated or replaced) is read again from its start.
//! - Each poll reads at most [`MAX_READ`] octets; a line longer than [`MAX_LINE`] octets is a
//!   bad line.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::import::{parse_line, FeedBinding};

/// How often the shell looks at the file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most octets read per poll.
pub const MAX_READ: usize = 4 * 1024 * 1024;
/// Longest line accepted, octets.
pub const MAX_LINE: usize = 64 * 1024;

/// One bad line: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// What one poll found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The bindings of the complete new lines, in file order.
    pub bindings: Vec<FeedBinding>,
    /// The bad lines among them.
    pub bad: Vec<BadLine>,
    /// The file shrank and is read again from its start.
    pub restarted: bool,
    /// The file's state changed since the last poll (the first poll reports any state but
    /// [`FeedState::Readable`]): the shell logs it once, then nothing until it changes again.
    pub state: Option<FeedState>,
}

/// Whether the feed file can be followed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedState {
    /// A regular file, read.
    Readable,
    /// No file at the path (yet): waited for.
    Missing,
    /// Something other than a regular file (a directory, a FIFO, a device): not opened, waited
    /// for until it is a regular file.
    NotAFile,
    /// Opening or reading it failed (the error, e.g. permission denied): retried every poll.
    Unreadable(String),
}

impl std::fmt::Display for FeedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedState::Readable => f.write_str("readable: following it"),
            FeedState::Missing => {
                f.write_str("does not exist; waiting for it (logged again only when that changes)")
            }
            FeedState::NotAFile => f.write_str(
                "not a regular file (a directory?); ignored until it is one (logged again only \
                 when that changes)",
            ),
            FeedState::Unreadable(e) => write!(
                f,
                "cannot be read: {e}; retrying every poll (logged again only when that changes)"
            ),
        }
    }
}

/// Splits a growing byte stream into lines and parses each (no I/O).
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Lines completed so far.
    line: usize,
    /// The current partial line is over [`MAX_LINE`]: skip to its newline.
    skipping: bool,
}

impl LineSplitter {
    /// Feeds new octets; complete lines are parsed into `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Polled) {
        while !bytes.is_empty() {
            let (chunk, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.skipping {
                if self.partial.len() + chunk.len() > MAX_LINE {
                    self.skipping = true;
                    self.partial.clear();
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
            if !complete {
                return;
            }
            self.line += 1;
            let line = self.line;
            if std::mem::take(&mut self.skipping) {
                out.bad.push(BadLine {
                    line,
                    reason: format!("line longer than {MAX_LINE} octets"),
                });
                continue;
            }
            let text = std::mem::take(&mut self.partial);
            match std::str::from_utf8(&text) {
                Err(_) => out.bad.push(BadLine {
                    line,
                    reason: "not UTF-8".into(),
                }),
                Ok(t) => match parse_line(t) {
                    Ok(Some(b)) => out.bindings.push(b),
                    Ok(None) => {}
                    Err(reason) => out.bad.push(BadLine { line, reason }),
                },
            }
        }
    }
}

/// Follows one feed file.
#[derive(Debug)]
pub struct FeedFollower {
    path: PathBuf,
    offset: u64,
    split: LineSplitter,
    bad_lines: u64,
    applied: u64,
    /// The state the last poll found (`None` before the first).
    state: Option<FeedState>,
}

impl FeedFollower {
    /// A follower of `path`, starting at its beginning.
    pub fn new(path: &Path) -> FeedFollower {
        FeedFollower {
            path: path.to_path_buf(),
            offset: 0,
            split: LineSplitter::default(),
            bad_lines: 0,
            applied: 0,
            state: None,
        }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bad lines skipped so far.
    pub fn bad_lines(&self) -> u64 {
        self.bad_lines
    }

    /// Bindings read so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Reads what was appended since the last poll (at most [`MAX_READ`] octets). A missing
    /// file, a path that is not a regular file and a read error are not errors of the poll:
    /// nothing is read, and [`Polled::state`] reports the state when it changed.
    pub fn poll(&mut self) -> Polled {
        let mut out = Polled::default();
        let state = match self.read(&mut out) {
            Ok(()) => FeedState::Readable,
            Err(s) => s,
        };
        let first = self.state.is_none();
        if self.state.as_ref() != Some(&state) {
            if !(first && state == FeedState::Readable) {
                out.state = Some(state.clone());
            }
            self.state = Some(state);
        }
        out
    }

    fn read(&mut self, out: &mut Polled) -> Result<(), FeedState> {
        let unreadable = |e: std::io::Error| FeedState::Unreadable(e.to_string());
        // Looked at before opening: opening a directory succeeds (the read fails), opening a
        // FIFO blocks the executor.
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FeedState::Missing),
            Err(e) => return Err(unreadable(e)),
            Ok(m) if !m.is_file() => return Err(FeedState::NotAFile),
            Ok(_) => {}
        }
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FeedState::Missing),
            Err(e) => return Err(unreadable(e)),
        };
        let meta = f.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(FeedState::NotAFile);
        }
        let len = meta.len();
        if len < self.offset {
            self.offset = 0;
            self.split = LineSplitter::default();
            out.restarted = true;
        }
        if len == self.offset {
            return Ok(());
        }
        f.seek(SeekFrom::Start(self.offset)).map_err(unreadable)?;
        let want = usize::try_from(len - self.offset)
            .unwrap_or(MAX_READ)
            .min(MAX_READ);
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match f.read(&mut buf[got..]).map_err(unreadable)? {
                0 => break,
                n => got += n,
            }
        }
        self.offset += got as u64;
        self.split.push(&buf[..got], out);
        self.bad_lines += out.bad.len() as u64;
        self.applied += out.bindings.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = r#"{"ipv4":"192.0.2.1","chaddr":"02:00:00:00:00:01","state":"active","cltt":1700000000,"expires":1700003600}"#;

    #[test]
    fn partial_lines_wait_and_bad_lines_are_counted() {
        let mut s = LineSplitter::default();
        let mut out = Polled::default();
        let (a, b) = V4.split_at(20);
        s.push(a.as_bytes(), &mut out);
        assert!(out.bindings.is_empty() && out.bad.is_empty());
        s.push(b.as_bytes(), &mut out);
        assert!(out.bindings.is_empty(), "no newline yet");
        s.push(b"\n# comment\n{bad json\n\n", &mut out);
        assert_eq!(out.bindings.len(), 1);
        assert_eq!(out.bad.len(), 1);
        assert_eq!(out.bad[0].line, 3);
        s.push(format!("{V4}\n").as_bytes(), &mut out);
        assert_eq!(out.bindings.len(), 2);
        let long = vec![b'x'; MAX_LINE + 10];
        s.push(&long, &mut out);
        s.push(b"\n", &mut out);
        assert_eq!(out.bad.len(), 2);
        assert_eq!(out.bad[1].line, 6);
        s.push(&[0xff, b'\n'], &mut out);
        assert_eq!(out.bad[2].reason, "not UTF-8");
    }

    #[test]
    fn follows_a_growing_file() {
        let dir = std::env::temp_dir().join(format!("lqd-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("feed.jsonl");
        let _ = std::fs::remove_file(&p);
        let mut f = FeedFollower::new(&p);
        assert_eq!(
            f.poll(),
            Polled {
                state: Some(FeedState::Missing),
                ..Polled::default()
            },
            "missing file: nothing yet, said once"
        );
        assert_eq!(f.poll(), Polled::default(), "then quiet");
        std::fs::write(&p, format!("{V4}\n{}", &V4[..10])).unwrap();
        let got = f.poll();
        assert_eq!(got.bindings.len(), 1);
        assert_eq!(got.state, Some(FeedState::Readable), "it appeared");
        let mut more = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut more, format!("{}\n", &V4[10..]).as_bytes()).unwrap();
        assert_eq!(f.poll().bindings.len(), 1);
        assert_eq!(f.applied(), 2);
        std::fs::write(&p, "nope\n").unwrap();
        let r = f.poll();
        assert!(r.restarted);
        assert_eq!(r.bad.len(), 1);
        assert_eq!(f.bad_lines(), 1);
        assert_eq!(r.state, None, "still readable: nothing to say");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A directory at the feed path is said once (not every poll), then quiet; a missing file
    /// is said once too; each change of state is said once.
    #[test]
    fn a_directory_or_missing_feed_is_logged_once_per_change() {
        let dir = std::env::temp_dir().join(format!("lqd-follow-dir-{}", std::process::id()));
        let p = dir.join("feed.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&p).unwrap();
        let mut f = FeedFollower::new(&p);
        assert_eq!(f.poll().state, Some(FeedState::NotAFile));
        for _ in 0..20 {
            assert_eq!(f.poll(), Polled::default());
        }
        std::fs::remove_dir(&p).unwrap();
        assert_eq!(f.poll().state, Some(FeedState::Missing));
        assert_eq!(f.poll().state, None);
        std::fs::write(&p, format!("{V4}\n")).unwrap();
        let r = f.poll();
        assert_eq!((r.state, r.bindings.len()), (Some(FeedState::Readable), 1));
        assert_eq!(f.poll(), Polled::default());
        assert!(FeedState::NotAFile
            .to_string()
            .contains("not a regular file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
