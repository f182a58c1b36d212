//! `lqctl watch --snabb-conf FILE` and `--snabb-apply ID`: a Snabb lwAFTR binding table kept
//! current (snabb-softwire-v3, `softwire-config { binding-table { softwire { ... } } }`).
//!
//! The file is rewritten whole after each batch (to `FILE.tmp`, synced, renamed). The running
//! instance is changed by `snabb config add|remove|set -s snabb-softwire-v3 ID PATH [VALUE]`,
//! one command per change, in order, run by one thread from a bounded queue; a command that
//! fails is retried, then reported (binding and error) and counted. A batch larger than
//! `--snabb-batch`, or changes that do not fit the queue, are applied instead by one
//! `snabb config set` of the whole binding table (a value over 64 KiB goes on the command's
//! standard input, as `snabb config` reads it there when not given as an argument).

use std::io::Write as _;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use leasequery::requestor::reply::Wire;
use leasequery::requestor::table::{Key, Table, Value};
use leasequery::requestor::watch::Change;

/// The YANG module of the commands.
pub const SCHEMA: &str = "snabb-softwire-v3";
/// The list of softwires.
pub const LIST: &str = "/softwire-config/binding-table/softwire";

/// A softwire as Snabb keys and holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softwire {
    /// `ipv4`.
    pub ipv4: std::net::Ipv4Addr,
    /// `psid` (0 for a full address).
    pub psid: u16,
    /// `port-set/psid-length` (0 for a full address).
    pub psid_len: u8,
    /// `port-set/reserved-ports-bit-count`: option 159's offset.
    pub offset: u8,
    /// `b4-ipv6`: the lwB4's softwire source (option 109).
    pub b4: Ipv6Addr,
}

impl Softwire {
    /// The softwire of a v4 / DHCP4o6 binding as the `snabb` format derives it
    /// ([`crate::format::softwire`]); `None` for a v6 binding or one without a softwire
    /// source (no option 109: nothing for the lwAFTR).
    pub fn of(key: &Key, value: &Value) -> Option<Softwire> {
        let lease = crate::watch::lease_of(key, Some(value), true, Wire::O6, None);
        let (ipv4, psid, b4, psid_len, offset) = crate::format::softwire(&lease)?;
        Some(Softwire {
            ipv4,
            psid,
            psid_len,
            offset,
            b4,
        })
    }

    /// `/softwire-config/binding-table/softwire[ipv4=A][psid=P]`.
    pub fn path(&self) -> String {
        format!("{LIST}[ipv4={}][psid={}]", self.ipv4, self.psid)
    }

    /// The entry's body, `{ ipv4 A; psid P; b4-ipv6 X; br-address B; port-set { ... } }`.
    pub fn value(&self, br: Ipv6Addr) -> String {
        let mut s = format!(
            "{{ ipv4 {}; psid {}; b4-ipv6 {}; br-address {br}; port-set {{ psid-length {};",
            self.ipv4, self.psid, self.b4, self.psid_len
        );
        if self.offset != 0 {
            s.push_str(&format!(" reserved-ports-bit-count {};", self.offset));
        }
        s.push_str(" } }");
        s
    }
}

/// Writes `text` to `path` atomically: `PATH.tmp`, synced, renamed over `path`.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// One `snabb config` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// `add`, `remove` or `set`.
    pub op: &'static str,
    /// The path.
    pub path: String,
    /// The value (none for `remove`).
    pub value: Option<String>,
    /// What it is about, for the failure report (`ipv4 A psid P`, or `binding-table`).
    pub about: String,
}

/// The command that applies `c` (the change of the merged view), if the lwAFTR's table
/// changes: `add` a new softwire, `remove` a gone one, `set` one whose b4-ipv6 or port set
/// changed. A change of another field (client-id) or of a binding without a softwire source
/// needs none; a binding that loses its softwire source is removed.
pub fn command(c: &Change, br: Ipv6Addr) -> Option<Cmd> {
    let old = c.old.as_ref().and_then(|v| Softwire::of(&c.key, v));
    let new = c.new.as_ref().and_then(|v| Softwire::of(&c.key, v));
    let (op, s, value) = match (old, new) {
        (None, None) => return None,
        (Some(o), Some(n)) if o == n => return None,
        (None, Some(n)) => ("add", n.clone(), Some(n.value(br))),
        (Some(_), Some(n)) => ("set", n.clone(), Some(n.value(br))),
        (Some(o), None) => ("remove", o, None),
    };
    Some(Cmd {
        op,
        path: if op == "add" {
            LIST.to_string()
        } else {
            s.path()
        },
        value,
        about: format!("ipv4 {} psid {}", s.ipv4, s.psid),
    })
}

/// The command that replaces the whole binding table with `table`'s.
pub fn set_all(table: &Table, br: Ipv6Addr) -> Cmd {
    let mut sw: Vec<Softwire> = table
        .iter()
        .filter_map(|(k, v)| Softwire::of(&k, &v))
        .collect();
    sw.sort_by_key(|s| (s.ipv4, s.psid));
    let mut v = String::from("{");
    for s in &sw {
        v.push_str(" softwire ");
        v.push_str(&s.value(br));
    }
    v.push_str(" }");
    Cmd {
        op: "set",
        path: "/softwire-config/binding-table".into(),
        value: Some(v),
        about: format!("binding-table ({} softwires)", sw.len()),
    }
}

/// The applier's counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// Commands that succeeded.
    pub applied: AtomicU64,
    /// Commands that failed after every retry.
    pub failed: AtomicU64,
    /// Tries that failed (retried or not).
    pub tries_failed: AtomicU64,
    /// Commands queued and not yet run to the end.
    pub pending: AtomicU64,
}

/// The thread that runs the commands, fed through a bounded queue.
pub struct Applier {
    tx: Option<SyncSender<Cmd>>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub counts: Arc<Counts>,
    /// Changes did not fit the queue: the whole table must be set at the next batch.
    pub resync: bool,
}

/// How commands run.
#[derive(Debug, Clone)]
pub struct ApplyOpts {
    /// The `snabb` program.
    pub bin: PathBuf,
    /// The instance (name or PID).
    pub id: String,
    /// Tries per command.
    pub tries: u32,
    /// The first delay between tries (doubled each time).
    pub retry_delay: Duration,
    /// The queue's bound (commands).
    pub queue: usize,
}

impl Applier {
    /// Starts the thread.
    pub fn start(o: ApplyOpts) -> Applier {
        let (tx, rx) = sync_channel(o.queue.max(1));
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("snabb-apply".into())
            .spawn(move || run(&o, &rx, &c))
            .expect("spawn the snabb-apply thread");
        Applier {
            tx: Some(tx),
            thread: Some(thread),
            counts,
            resync: false,
        }
    }

    /// Queues a command; false (and [`Applier::resync`] set) when the queue is full.
    pub fn push(&mut self, cmd: Cmd) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(cmd) {
            Ok(()) => {
                self.counts.pending.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.resync = true;
                false
            }
        }
    }

    /// Queues a command, waiting for room (a whole-table `set`).
    pub fn push_wait(&mut self, cmd: Cmd) {
        if let Some(tx) = &self.tx {
            self.counts.pending.fetch_add(1, Ordering::Relaxed);
            if tx.send(cmd).is_err() {
                self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs what is queued, then stops the thread; gives up waiting after `bound` and returns
    /// the commands left unapplied (0 when all ran).
    pub fn finish(mut self, bound: Duration) -> u64 {
        self.tx = None;
        let t0 = std::time::Instant::now();
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && t0.elapsed() < bound {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.counts.pending.load(Ordering::Relaxed)
    }
}

/// Values longer than this go to `snabb config` on its standard input (as `snabb config`
/// reads a value it is not given), not as an argument: Linux caps one argument at 128 KiB.
const ARG_MAX_VALUE: usize = 64 * 1024;

fn run_once(o: &ApplyOpts, cmd: &Cmd) -> std::io::Result<std::process::Output> {
    let mut c = Command::new(&o.bin);
    c.args(["config", cmd.op, "-s", SCHEMA, &o.id, &cmd.path]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let stdin_value = match &cmd.value {
        Some(v) if v.len() > ARG_MAX_VALUE => {
            c.stdin(Stdio::piped());
            Some(v)
        }
        Some(v) => {
            c.arg(v).stdin(Stdio::null());
            None
        }
        None => {
            c.stdin(Stdio::null());
            None
        }
    };
    let mut child = c.spawn()?;
    if let (Some(v), Some(mut i)) = (stdin_value, child.stdin.take()) {
        // A program that exits without reading it all is reported by its exit status.
        let _ = i.write_all(v.as_bytes());
    }
    child.wait_with_output()
}

fn run(o: &ApplyOpts, rx: &Receiver<Cmd>, counts: &Counts) {
    for cmd in rx {
        let mut delay = o.retry_delay;
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..o.tries.max(1) {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2);
            }
            match run_once(o, &cmd) {
                Ok(out) if out.status.success() => {
                    ok = true;
                    break;
                }
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    last = format!(
                        "{}: {}",
                        out.status,
                        err.lines().next().unwrap_or("").trim()
                    );
                }
                Err(e) => last = format!("{}: {e}", o.bin.display()),
            }
            counts.tries_failed.fetch_add(1, Ordering::Relaxed);
        }
        counts.pending.fetch_sub(1, Ordering::Relaxed);
        if ok {
            counts.applied.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "lqctl: snabb-apply: {} {} failed after {} tries: {last}",
                cmd.op,
                cmd.about,
                o.tries.max(1)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasequery::proto::record::PortParams;
    use std::net::Ipv4Addr;

    fn key(psid: Option<(u8, u8, u16)>) -> Key {
        Key::V4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
            psid: psid.map(|(offset, psid_len, psid)| PortParams {
                offset,
                psid_len,
                psid,
            }),
        }
    }

    fn val(sw: Option<&str>, cid: u8) -> Value {
        Value {
            client_id: Some(vec![cid]),
            softwire: sw.map(|s| s.parse().unwrap()),
            active: true,
        }
    }

    #[test]
    fn commands_follow_the_softwire_not_the_other_fields() {
        let br: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let k = key(Some((6, 4, 3)));
        let ch = |old: Option<Value>, new: Option<Value>| Change {
            key: k.clone(),
            old,
            new,
        };
        let add = command(&ch(None, Some(val(Some("2001:db8::5"), 1))), br).unwrap();
        assert_eq!(add.op, "add");
        assert_eq!(add.path, LIST);
        assert_eq!(
            add.value.unwrap(),
            "{ ipv4 192.0.2.1; psid 3; b4-ipv6 2001:db8::5; br-address 2001:db8::1; \
             port-set { psid-length 4; reserved-ports-bit-count 6; } }"
        );
        let set = command(
            &ch(
                Some(val(Some("2001:db8::5"), 1)),
                Some(val(Some("2001:db8::6"), 1)),
            ),
            br,
        )
        .unwrap();
        assert_eq!(set.op, "set");
        assert_eq!(set.path, format!("{LIST}[ipv4=192.0.2.1][psid=3]"));
        assert_eq!(
            command(
                &ch(
                    Some(val(Some("2001:db8::5"), 1)),
                    Some(val(Some("2001:db8::5"), 2))
                ),
                br
            ),
            None,
            "a client-id change leaves the lwAFTR alone"
        );
        let rm = command(&ch(Some(val(Some("2001:db8::5"), 1)), None), br).unwrap();
        assert_eq!((rm.op, rm.value), ("remove", None));
        assert_eq!(command(&ch(None, Some(val(None, 1))), br), None);
        let lost = command(
            &ch(Some(val(Some("2001:db8::5"), 1)), Some(val(None, 1))),
            br,
        )
        .unwrap();
        assert_eq!(lost.op, "remove");
        // A full address: PSID 0, psid-length 0.
        let full = command(
            &Change {
                key: key(None),
                old: None,
                new: Some(val(Some("2001:db8::7"), 1)),
            },
            br,
        )
        .unwrap();
        assert!(full.value.unwrap().contains(
            "psid 0; b4-ipv6 2001:db8::7; br-address 2001:db8::1; port-set { psid-length 0; }"
        ));
    }

    #[test]
    fn the_whole_table_set_lists_every_softwire_and_files_are_replaced_whole() {
        let br: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut t = Table::new();
        t.insert(&key(Some((0, 4, 2))), &val(Some("2001:db8::2"), 1));
        t.insert(&key(Some((0, 4, 1))), &val(Some("2001:db8::3"), 1));
        t.insert(&key(None), &val(None, 1));
        let s = set_all(&t, br);
        let v = s.value.unwrap();
        assert_eq!(v.matches("softwire {").count(), 2);
        assert!(v.find("psid 1;").unwrap() < v.find("psid 2;").unwrap());
        assert_eq!(s.path, "/softwire-config/binding-table");
        let dir = std::env::temp_dir().join(format!("lqctl-snabb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bt.conf");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "two");
        assert!(!dir.join("bt.conf.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_large_value_goes_on_stdin_and_failures_are_counted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lqctl-snabb-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("snabb");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\necho $# >> '{0}/argc'\ncat >> '{0}/in'\n[ \"$2\" = remove ] && exit 3\nexit 0\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut a = Applier::start(ApplyOpts {
            bin: bin.clone(),
            id: "x".into(),
            tries: 2,
            retry_delay: Duration::from_millis(1),
            queue: 4,
        });
        let big = "{ softwire { ipv4 192.0.2.1; } }".repeat(4000);
        assert!(big.len() > ARG_MAX_VALUE);
        a.push_wait(Cmd {
            op: "set",
            path: "/softwire-config/binding-table".into(),
            value: Some(big.clone()),
            about: "binding-table".into(),
        });
        a.push_wait(Cmd {
            op: "remove",
            path: format!("{LIST}[ipv4=192.0.2.1][psid=0]"),
            value: None,
            about: "ipv4 192.0.2.1 psid 0".into(),
        });
        let counts = a.counts.clone();
        assert_eq!(a.finish(Duration::from_secs(30)), 0);
        assert_eq!(std::fs::read_to_string(dir.join("in")).unwrap(), big);
        // config set -s SCHEMA ID PATH: the value was not an argument; remove tried twice.
        assert_eq!(
            std::fs::read_to_string(dir.join("argc")).unwrap(),
            "6\n6\n6\n"
        );
        assert_eq!(counts.applied.load(Ordering::Relaxed), 1);
        assert_eq!(counts.failed.load(Ordering::Relaxed), 1);
        assert_eq!(counts.tries_failed.load(Ordering::Relaxed), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
