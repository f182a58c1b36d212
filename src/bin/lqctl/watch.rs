//! `lqctl watch`: follow one or more servers' bindings and emit every change.
//!
//! The logic is the library's sans-io [`leasequery::requestor::watch`]; this module is the
//! sockets, the clock and the outputs: one reader thread per connection feeds the main thread
//! through a channel; the main thread drives each server's [`Watch`], merges several servers
//! ([`watch::merge`]), writes each change to stdout, and after each batch (`--batch-ms`) writes
//! `--snabb-conf`, queues `--snabb-apply` commands and, at most every `--state-interval`
//! seconds, the `--state` file. SIGINT / SIGTERM end it cleanly: the last batch is flushed,
//! the state written, a summary printed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv6Addr, Shutdown};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasequery::proto::codes::{dhcp_state, v6opt};
use leasequery::proto::framing;
use leasequery::proto::record::PortParams;
use leasequery::requestor::kind::{QueryKind, BULK_PRL};
use leasequery::requestor::lease::{Lease, V4Lease, V6Lease, V6Lease6};
use leasequery::requestor::query::ActiveQuery;
use leasequery::requestor::reply::Wire;
use leasequery::requestor::table::{Key, Table, Value};
use leasequery::requestor::watch::{self, Backoff, Change, Config, Note, Output, Watch};

use crate::format::{self, Format, Op, Options};
use crate::net::{self, Server};
use crate::{snabb, Common};

/// `lqctl watch`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = WATCH_HELP)]
pub struct WatchArgs {
    /// The bulk queries that load the table (repeatable, one wire form: v4-*, v6-* or 4o6-*;
    /// default v4-all). The active query that follows has no selector: it reports every
    /// change of that wire form, so give queries that cover every binding to follow (for
    /// 4o6 and v6, one `-link:` per link).
    #[arg(long = "query", value_name = "KIND")]
    pub queries: Vec<QueryKind>,
    /// Servers (several: merged by key; a key held by two is a conflict, reported on stderr,
    /// counted and left out while both hold it), format (table, jsonl with
    /// `"op":"upsert"|"remove"`, csv with an op column;
    /// the Snabb formats describe a whole table: see --snabb-conf), --br-address, the
    /// connect timeout, --verbose.
    #[command(flatten)]
    pub common: Common,
    /// Subscribe without TLS (the server needs --allow-insecure-active). Without it, watch
    /// needs --tls-cert, --tls-key and --tls-ca (RFC 7653 §9.1: active leasequery over TLS).
    #[arg(long)]
    pub insecure: bool,
    /// Keep the current table in FILE (written atomically after a batch, at most every
    /// --state-interval seconds, and at exit); a restart resumes from it and catches up.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Least seconds between two writes of --state.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub state_interval: f64,
    /// Keep a Snabb lwAFTR binding-table file (snabb-softwire-v3) current: rewritten and
    /// renamed into place after each batch of changes. Needs --br-address.
    #[arg(long, value_name = "FILE")]
    pub snabb_conf: Option<PathBuf>,
    /// Apply each change to the running Snabb lwAFTR instance ID with `snabb config
    /// add|remove|set -s snabb-softwire-v3 ID ...`. Needs --br-address.
    #[arg(long, value_name = "ID")]
    pub snabb_apply: Option<String>,
    /// The `snabb` program for --snabb-apply.
    #[arg(long, default_value = "snabb", value_name = "PATH")]
    pub snabb_bin: PathBuf,
    /// Tries per snabb command before the failure is reported.
    #[arg(long, default_value_t = 3)]
    pub snabb_tries: u32,
    /// Bound of the snabb command queue; changes that do not fit are applied by one `set` of
    /// the whole binding table.
    #[arg(long, default_value_t = 100_000)]
    pub snabb_queue: usize,
    /// A batch with more commands than this (a load, a burst) is applied by one `set` of the
    /// whole binding table instead of one command per change.
    #[arg(long, default_value_t = 1000)]
    pub snabb_batch: usize,
    /// The longest a batch of changes gathers before the files and the lwAFTR are updated,
    /// milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub batch_ms: u64,
    /// First reconnect delay, seconds (doubled after each failure, jittered).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub backoff: f64,
    /// Longest reconnect delay, seconds.
    #[arg(long, default_value_t = 60.0, value_name = "S")]
    pub backoff_max: f64,
    /// Seconds without any message (the server sends keepalives, every 60 s by default)
    /// after which the connection counts as lost and is reconnected.
    #[arg(long, default_value_t = 180.0, value_name = "S")]
    pub idle_timeout: f64,
}

const WATCH_HELP: &str = "\
What it does (RFC 7653, RFC 7724; README \"lqctl watch\"): per server, a bulk load (--query),
then an active leasequery with a catch-up from the bulk load's base time, following every
change. A lost connection is reconnected with backoff and catches up from the last base time
seen; a DataMissing answer (the server's history does not reach back that far) reloads by bulk
query and emits the difference. A change is emitted only when the table changes, so nothing is
emitted twice across reconnects, catch-ups and reloads. Only bound bindings are held: an
unassigned, released or expired one is a removal.

Security: with --tls-cert, --tls-key and --tls-ca every connection asks for TLS (STARTTLS on
TCP 547, DHCPTLS on TCP 67) and verifies the server's certificate (the server in `tls =
optional` or `required`). Without TLS, --insecure is required and the server needs --active
--allow-insecure-active; the summary line then says so.

Exit codes: 0 ended by SIGINT/SIGTERM with every server followed, 1 a server refused or
answered an error status (the others are still followed), a snabb command failed or was left
unapplied, or a file could not be written, 2 bad arguments.";

/// The requestor DUID of lqctl's v6 and DHCP4o6 queries (DUID-EN, enterprise 32473 from the
/// documentation range, id \"lqctl\").
pub const DUID: &[u8] = &[0, 2, 0, 0, 0x7e, 0xd9, b'l', b'q', b'c', b't', b'l'];

/// How many conflicts are reported one by one (the rest are counted).
const CONFLICT_REPORTS: u64 = 100;

enum Ev {
    Connected(net::Writer),
    Failed(String),
    Msg(Vec<u8>),
    Lost(String),
}

struct Srv {
    label: String,
    server: Server,
    /// The last message received: the whole record of the change it makes.
    last: Option<Vec<u8>>,
    watch: Watch,
    /// The connection's generation: events of an older one are stale.
    gen: u64,
    stream: Option<net::Writer>,
    xid: u32,
    failed: bool,
    conflicts: u64,
}

fn jitter() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(now_ns());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn unix_now() -> u32 {
    (now_ns() / 1_000_000_000) as u32
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn wire_name(w: Wire) -> &'static str {
    match w {
        Wire::V4 => "v4",
        Wire::V6 => "v6",
        Wire::O6 => "4o6",
    }
}

/// A binding as one JSON object (the import file's key and binding fields that the table
/// holds: `ipv4`, `psid`, `client_id`, `softwire_src`; `duid`, `addr` for v6).
pub fn binding_json(
    key: &Key,
    value: Option<&Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    match key {
        Key::V4 { addr, psid } => {
            m.insert("ipv4".into(), addr.to_string().into());
            if let Some(p) = psid {
                m.insert(
                    "psid".into(),
                    serde_json::json!({"offset": p.offset, "len": p.psid_len, "id": p.psid}),
                );
            }
        }
        Key::V6 { duid, addr } => {
            m.insert("duid".into(), hex(duid).into());
            m.insert("addr".into(), addr.to_string().into());
        }
    }
    if let Some(v) = value {
        if let Some(c) = &v.client_id {
            m.insert("client_id".into(), hex(c).into());
        }
        if let Some(s) = v.softwire {
            m.insert("softwire_src".into(), s.to_string().into());
        }
    }
    m
}

/// Reads a binding written by [`binding_json`].
fn binding_of_json(m: &serde_json::Value) -> Option<(Key, Value)> {
    let key = if let Some(a) = m.get("ipv4") {
        let psid = match m.get("psid") {
            Some(p) => Some(PortParams {
                offset: u8::try_from(p.get("offset")?.as_u64()?).ok()?,
                psid_len: u8::try_from(p.get("len")?.as_u64()?).ok()?,
                psid: u16::try_from(p.get("id")?.as_u64()?).ok()?,
            }),
            None => None,
        };
        Key::V4 {
            addr: a.as_str()?.parse().ok()?,
            psid,
        }
    } else {
        Key::V6 {
            duid: leasequery::config::hex_decode(m.get("duid")?.as_str()?)?,
            addr: m.get("addr")?.as_str()?.parse().ok()?,
        }
    };
    let value = Value {
        client_id: match m.get("client_id") {
            Some(c) => Some(leasequery::config::hex_decode(c.as_str()?)?),
            None => None,
        },
        softwire: match m.get("softwire_src") {
            Some(s) => Some(s.as_str()?.parse().ok()?),
            None => None,
        },
        active: true,
    };
    Some((key, value))
}

/// How a change's binding is written when no message carries its whole record (a removal
/// found by a reload, a merged view's fallback): the fields the table holds, state active or
/// released, no times.
pub fn lease_of(
    key: &Key,
    value: Option<&Value>,
    active: bool,
    wire: Wire,
    link: Option<Ipv6Addr>,
) -> Lease {
    match key {
        Key::V4 { addr, psid } => Lease::V4(V4Lease {
            addr: *addr,
            port_params: *psid,
            htype: 1,
            chaddr: Vec::new(),
            client_id: value.and_then(|v| v.client_id.clone()),
            state: if active {
                dhcp_state::ACTIVE
            } else {
                dhcp_state::RELEASED
            },
            cltt: 0,
            expires: 0,
            relay_id: None,
            remote_id: None,
            softwire: value.and_then(|v| v.softwire),
            dhcp4o6: wire == Wire::O6,
            link,
        }),
        Key::V6 { duid, addr } => Lease::V6(V6Lease {
            duid: duid.clone(),
            link,
            iana: if addr.is_unspecified() {
                Vec::new()
            } else {
                vec![V6Lease6 {
                    addr: *addr,
                    len: 128,
                    preferred: 0,
                    valid: 0,
                }]
            },
            iapd: Vec::new(),
            cltt: 0,
            relay_id: None,
            remote_id: None,
            bound: active,
        }),
    }
}

/// The record to write for change `c`: the whole binding decoded from `msg` (the message
/// that made the change) when it is the one the change says, else [`lease_of`].
pub fn lease_for(c: &Change, msg: Option<&[u8]>, wire: Wire, link: Option<Ipv6Addr>) -> Lease {
    let shown = if c.is_remove() { &c.old } else { &c.new };
    let from_msg = msg
        .and_then(|m| Lease::from_message(wire, m, link, unix_now()))
        .filter(|l| {
            l.active() != c.is_remove()
                && match (l, &c.key) {
                    (Lease::V4(l), Key::V4 { addr, psid }) => {
                        l.addr == *addr
                            && l.port_params == *psid
                            && (c.is_remove()
                                || shown.as_ref().is_some_and(|v| {
                                    v.softwire == l.softwire && v.client_id == l.client_id
                                }))
                    }
                    (Lease::V6(l), Key::V6 { duid, .. }) => l.duid == *duid,
                    _ => false,
                }
        });
    from_msg.unwrap_or_else(|| lease_of(&c.key, shown.as_ref(), !c.is_remove(), wire, link))
}

/// Writes `table` as a Snabb binding-table file (the `snabb` format), sorted by (IPv4, PSID),
/// atomically.
fn write_snabb_conf(path: &Path, table: &Table, br: Ipv6Addr, wire: Wire) -> Result<(), String> {
    let mut keys: Vec<(u32, u32)> = table
        .iter()
        .filter_map(|(k, _)| match k {
            Key::V4 { addr, psid } => Some((
                u32::from(addr),
                psid.map_or(0, |p| {
                    1 << 31
                        | u32::from(p.offset) << 24
                        | u32::from(p.psid_len) << 16
                        | u32::from(p.psid)
                }),
            )),
            Key::V6 { .. } => None,
        })
        .collect();
    keys.sort_unstable_by_key(|&(a, p)| (a, p as u16, p));
    let mut f = format::formatter(
        Format::Snabb,
        &Options {
            br_address: Some(br),
            ops: false,
        },
    )?;
    let mut buf = Vec::with_capacity(160 * keys.len() + 64);
    let io = |e: std::io::Error| e.to_string();
    f.header(&mut buf).map_err(io)?;
    for (a, p) in keys {
        let key = Key::V4 {
            addr: a.into(),
            psid: (p >> 31 == 1).then_some(PortParams {
                offset: (p >> 24) as u8 & 0x7f,
                psid_len: (p >> 16) as u8,
                psid: p as u16,
            }),
        };
        if let Some(v) = table.get(&key) {
            f.binding(&mut buf, &lease_of(&key, Some(&v), true, wire, None), None)
                .map_err(io)?;
        }
    }
    f.footer(&mut buf).map_err(io)?;
    snabb::write_atomic(path, &buf).map_err(|e| e.to_string())
}

/// The saved state: each server's table and catch-up start.
struct Saved {
    servers: Vec<(String, String, Option<u32>, Table)>,
}

fn write_state(path: &Path, srvs: &[Srv], wire: Wire) -> std::io::Result<()> {
    let mut buf =
        Vec::with_capacity(128 * srvs.iter().map(|s| s.watch.table().len()).sum::<usize>() + 256);
    let head: Vec<serde_json::Value> = srvs
        .iter()
        .map(|s| {
            serde_json::json!({
                "server": s.label,
                "wire": wire_name(wire),
                "base": s.watch.checkpoint(),
            })
        })
        .collect();
    writeln!(
        buf,
        "{}",
        serde_json::json!({"lqctl_watch_state": 1, "servers": head})
    )?;
    for (i, s) in srvs.iter().enumerate() {
        for (k, v) in s.watch.table().iter() {
            let mut m = serde_json::Map::new();
            m.insert("server".into(), i.into());
            m.extend(binding_json(&k, Some(&v)));
            writeln!(buf, "{}", serde_json::Value::Object(m))?;
        }
    }
    snabb::write_atomic(path, &buf)
}

fn read_state(path: &Path) -> Result<Option<Saved>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("--state {}: {e}", path.display())),
    };
    let bad = |n: usize, why: &str| format!("--state {}:{}: {why}", path.display(), n + 1);
    let mut lines = BufReader::new(f).lines();
    let head = match lines.next() {
        Some(Ok(l)) => l,
        _ => return Err(bad(0, "empty or unreadable")),
    };
    let head: serde_json::Value =
        serde_json::from_str(&head).map_err(|e| bad(0, &e.to_string()))?;
    if head.get("lqctl_watch_state").and_then(|v| v.as_u64()) != Some(1) {
        return Err(bad(0, "not an lqctl watch state file (version 1)"));
    }
    let mut servers = Vec::new();
    for s in head
        .get("servers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad(0, "no servers"))?
    {
        let label = s.get("server").and_then(|v| v.as_str()).unwrap_or_default();
        let wire = s.get("wire").and_then(|v| v.as_str()).unwrap_or_default();
        let base = s
            .get("base")
            .and_then(|v| v.as_u64())
            .and_then(|b| u32::try_from(b).ok());
        servers.push((label.to_string(), wire.to_string(), base, Table::new()));
    }
    for (n, l) in lines.enumerate() {
        let l = l.map_err(|e| bad(n + 1, &e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&l).map_err(|e| bad(n + 1, &e.to_string()))?;
        let i = v
            .get("server")
            .and_then(|i| i.as_u64())
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < servers.len())
            .ok_or_else(|| bad(n + 1, "no server index"))?;
        let (k, val) = binding_of_json(&v).ok_or_else(|| bad(n + 1, "not a binding"))?;
        servers[i].3.insert(&k, &val);
    }
    Ok(Some(Saved { servers }))
}

/// The active query for `wire`: base time asked for (v6 and DHCP4o6 ORO) so that each message
/// says where a catch-up can resume; the bulk PRL so that updates carry what bulk answers do.
fn active_query(wire: Wire, xid: u32, start: u32) -> Vec<u8> {
    let oro_o6 = [v6opt::S46_V4V6BIND, v6opt::LQ_BASE_TIME];
    let oro_v6 = [v6opt::LQ_BASE_TIME];
    let q = ActiveQuery {
        xid,
        duid: DUID,
        start: Some(start),
        oro: match wire {
            Wire::O6 => &oro_o6,
            Wire::V6 => &oro_v6,
            Wire::V4 => &[],
        },
        prl: BULK_PRL,
    };
    match wire {
        Wire::V4 => q.v4(),
        Wire::V6 => q.v6(),
        Wire::O6 => q.o6(xid.wrapping_add(1)),
    }
}

/// Opens a connection in a thread of its own (through `net::connect`, plain or TLS),
/// hands the main thread a writer and then every message it reads.
fn spawn_connection(
    server: Server,
    port: u16,
    timeouts: (Duration, Duration),
    (tls, wire): (Option<net::Tls>, Wire),
    gen: u64,
    idx: usize,
    tx: SyncSender<(usize, u64, Ev)>,
) {
    std::thread::spawn(move || {
        let mut conn = match net::connect(&server, port, timeouts.0, tls.as_ref(), wire) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send((idx, gen, Ev::Failed(e.to_string())));
                return;
            }
        };
        let w = match conn.writer(Some(timeouts.1)) {
            Ok(w) => w,
            Err(e) => {
                let _ = tx.send((idx, gen, Ev::Failed(e.to_string())));
                return;
            }
        };
        if tx.send((idx, gen, Ev::Connected(w))).is_err() {
            return;
        }
        let r = conn.read_stream(|m| tx.send((idx, gen, Ev::Msg(m.to_vec()))).is_ok());
        if let Err(e) = r {
            let why = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("no message for {} s", timeouts.1.as_secs())
                }
                _ => e.to_string(),
            };
            let _ = tx.send((idx, gen, Ev::Lost(why)));
        }
    });
}

/// Runs `lqctl watch`.
pub fn run(a: &WatchArgs) -> ExitCode {
    match run_inner(a) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("lqctl watch: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_inner(a: &WatchArgs) -> Result<ExitCode, (u8, String)> {
    let usage = |m: String| (2u8, m);
    let tls = a.common.tls.tls().map_err(usage)?;
    match (&tls, a.insecure) {
        (None, false) => {
            return Err(usage(
                "--insecure is required to subscribe without TLS (the server needs \
                 --allow-insecure-active); give --tls-cert, --tls-key and --tls-ca for TLS"
                    .into(),
            ))
        }
        (Some(_), true) => {
            return Err(usage(
                "--insecure and --tls-cert/--tls-key/--tls-ca together: choose one".into(),
            ))
        }
        (None, true) => {
            eprintln!("lqctl watch: subscribing without TLS (--insecure)");
        }
        (Some(_), false) => {}
    }
    let queries = if a.queries.is_empty() {
        vec![QueryKind::V4All]
    } else {
        a.queries.clone()
    };
    let wire = queries[0].wire();
    if queries.iter().any(|q| q.wire() != wire) {
        return Err(usage(
            "--query: every query must be of one wire form (v4-*, v6-* or 4o6-*): one \
             active subscription follows them"
                .into(),
        ));
    }
    let c = &a.common;
    if c.format.is_snabb() {
        return Err(usage(
            "--format snabb / snabb-json describe a whole table, not changes: use \
             --snabb-conf FILE (kept current) and table, jsonl or csv for stdout"
                .into(),
        ));
    }
    if (a.snabb_conf.is_some() || a.snabb_apply.is_some()) && c.br_address.is_none() {
        return Err(usage(
            "--snabb-conf and --snabb-apply need --br-address".into(),
        ));
    }
    if (a.snabb_conf.is_some() || a.snabb_apply.is_some()) && wire == Wire::V6 {
        return Err(usage(
            "--snabb-conf and --snabb-apply follow v4 or 4o6 bindings (softwires), not v6".into(),
        ));
    }
    let secs = |v: f64, name: &str| {
        if (0.0..1e9).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(usage(format!("{name}: a number of seconds")))
        }
    };
    let backoff = Backoff {
        initial_ms: secs(a.backoff, "--backoff")?.as_millis() as u64,
        max_ms: secs(a.backoff_max, "--backoff-max")?.as_millis() as u64,
    };
    let timeouts = (
        Duration::from_secs(c.timeout),
        secs(a.idle_timeout, "--idle-timeout")?.max(Duration::from_secs(1)),
    );
    // The link of a single link query: every binding it loads is on it (written in jsonl).
    let link = match queries.as_slice() {
        [q] => q.link(),
        _ => None,
    };
    let state_interval = secs(a.state_interval, "--state-interval")?;
    let batch = Duration::from_millis(a.batch_ms);
    let cfg = Config {
        wire,
        bulk_queries: queries.len(),
        backoff,
    };
    let port = queries[0].default_port();
    let saved = match &a.state {
        Some(p) => read_state(p).map_err(usage)?,
        None => None,
    };
    let mut srvs = Vec::new();
    for server in &c.servers {
        let label = server.label(port);
        let resumed = saved.as_ref().and_then(|sv| {
            sv.servers
                .iter()
                .find(|(l, w, base, _)| *l == label && w == wire_name(wire) && base.is_some())
        });
        let watch = match resumed {
            Some((_, _, Some(base), table)) => {
                if c.verbose {
                    eprintln!(
                        "lqctl watch: {label}: resuming {} bindings from {}",
                        table.len(),
                        a.state
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string())
                    );
                }
                Watch::resume(cfg.clone(), table.clone(), *base)
            }
            _ => Watch::new(cfg.clone()),
        };
        srvs.push(Srv {
            label,
            server: server.clone(),
            last: None,
            watch,
            gen: 0,
            stream: None,
            xid: (jitter() * f64::from(u32::MAX)) as u32,
            failed: false,
            conflicts: 0,
        });
    }
    drop(saved);
    let br = c.br_address.unwrap_or(Ipv6Addr::UNSPECIFIED);
    let mut fmt = format::formatter(
        c.format,
        &Options {
            br_address: c.br_address,
            ops: true,
        },
    )
    .map_err(usage)?;
    let mut applier = a.snabb_apply.as_ref().map(|id| {
        snabb::Applier::start(snabb::ApplyOpts {
            bin: a.snabb_bin.clone(),
            id: id.clone(),
            tries: a.snabb_tries,
            retry_delay: Duration::from_millis(100),
            queue: a.snabb_queue,
        })
    });

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| (1, format!("signals: {e}")))?;
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    fmt.header(&mut out)
        .map_err(|e| (1, format!("writing output: {e}")))?;
    // Bounded: a reader waits while the main thread catches up (memory stays flat during a
    // bulk load of millions of bindings).
    let (tx, rx) = sync_channel::<(usize, u64, Ev)>(4096);
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
    let mut exit = 0u8;
    let mut emitted = 0u64;
    let mut conflicts = 0u64;
    // The batch: when it started, its snabb commands, whether the files must be written.
    let mut batch_start: Option<Instant> = None;
    let mut batch_cmds: Vec<snabb::Cmd> = Vec::new();
    let mut dirty_conf = a.snabb_conf.is_some();
    let mut last_state: Option<Instant> = None;
    let mut dirty_state = false;
    let mut merged_table: Option<Table> = None;

    loop {
        // Drain every watch's outputs.
        let mut any_change = false;
        for i in 0..srvs.len() {
            while let Some(o) = srvs[i].watch.poll() {
                match o {
                    Output::Connect => {
                        srvs[i].gen += 1;
                        spawn_connection(
                            srvs[i].server.clone(),
                            port,
                            timeouts,
                            (tls.clone(), wire),
                            srvs[i].gen,
                            i,
                            tx.clone(),
                        );
                    }
                    Output::Close => {
                        srvs[i].gen += 1;
                        if let Some(s) = srvs[i].stream.take() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    Output::SendBulk(q) => {
                        srvs[i].xid = srvs[i].xid.wrapping_add(2);
                        let msg = queries[q].encode(srvs[i].xid, DUID);
                        send(&mut srvs[i], &msg, ms(Instant::now()));
                    }
                    Output::SendActive { start } => {
                        srvs[i].xid = srvs[i].xid.wrapping_add(2);
                        let msg = active_query(wire, srvs[i].xid, start);
                        send(&mut srvs[i], &msg, ms(Instant::now()));
                    }
                    Output::Change(c) => {
                        let c = if srvs.len() > 1 {
                            let tables: Vec<&Table> =
                                srvs.iter().map(|s| s.watch.table()).collect();
                            let m = watch::merge(&tables, i, &c);
                            if let Some(j) = m.conflict {
                                conflicts += 1;
                                srvs[i].conflicts += 1;
                                if conflicts <= CONFLICT_REPORTS {
                                    eprintln!(
                                        "lqctl watch: conflict: {} is held by {} and {}; left out until one server holds it",
                                        key_text(&c.key),
                                        srvs[i].label,
                                        srvs[j].label
                                    );
                                }
                            }
                            match m.change {
                                Some(c) => c,
                                None => continue,
                            }
                        } else {
                            c
                        };
                        emitted += 1;
                        any_change = true;
                        let lease = lease_for(&c, srvs[i].last.as_deref(), wire, link);
                        let op = if c.is_remove() {
                            Op::Remove
                        } else {
                            Op::Upsert
                        };
                        if let Err(e) = fmt.binding(&mut out, &lease, Some(op)) {
                            // stdout is gone (a closed pipe): nothing more to write to.
                            eprintln!("lqctl watch: writing output: {e}");
                            stop.store(true, Ordering::Relaxed);
                            exit = 1;
                        }
                        if srvs.len() > 1 && (a.snabb_conf.is_some() || applier.is_some()) {
                            let t = merged_table.get_or_insert_with(Table::new);
                            match &c.new {
                                Some(v) => {
                                    t.insert(&c.key, v);
                                }
                                None => {
                                    t.remove(&c.key);
                                }
                            }
                        }
                        if let Some(ap) = applier.as_mut() {
                            if !ap.resync {
                                if let Some(cmd) = snabb::command(&c, br) {
                                    batch_cmds.push(cmd);
                                }
                                // A large batch (a load, say) is applied as a whole instead:
                                // the commands held stay bounded.
                                if batch_cmds.len() > a.snabb_batch {
                                    ap.resync = true;
                                    batch_cmds.clear();
                                }
                            }
                        }
                        batch_start.get_or_insert_with(Instant::now);
                        dirty_conf |= a.snabb_conf.is_some();
                        dirty_state = true;
                    }
                    Output::Note(n) => note(c.verbose, &srvs[i].label, &n),
                    Output::Fail(why) => {
                        eprintln!("lqctl watch: {}: {why}", srvs[i].label);
                        srvs[i].failed = true;
                        exit = 1;
                    }
                }
            }
        }
        if any_change {
            let _ = out.flush();
        }
        let stopping = stop.load(Ordering::Relaxed) || srvs.iter().all(|s| s.failed);
        // Close the batch when due (or at the end).
        // While a server loads (its first load, a reload) the table is not yet the server's:
        // the Snabb file and the lwAFTR wait for the load's end, then one batch (a whole-table
        // set for the lwAFTR) brings them up to date.
        let loading = srvs
            .iter()
            .any(|s| !s.failed && s.watch.checkpoint().is_none());
        let resync = applier.as_ref().is_some_and(|ap| ap.resync);
        let due = !loading
            && (batch_start.is_some_and(|t| t.elapsed() >= batch)
                || stopping
                || resync
                || (dirty_conf && batch_start.is_none()));
        if stopping && loading && (dirty_conf || resync || batch_start.is_some()) {
            eprintln!(
                "lqctl watch: stopped during a load: --snabb-conf / --snabb-apply were not \
                 updated from it"
            );
        }
        if due {
            let view = merged_table
                .as_ref()
                .unwrap_or_else(|| srvs[0].watch.table());
            if dirty_conf {
                if let Some(p) = &a.snabb_conf {
                    if let Err(e) = write_snabb_conf(p, view, br, wire) {
                        eprintln!("lqctl watch: --snabb-conf {}: {e}", p.display());
                        exit = 1;
                    }
                }
                dirty_conf = false;
            }
            if let Some(ap) = applier.as_mut() {
                if ap.resync {
                    ap.resync = false;
                    ap.push_wait(snabb::set_all(view, br));
                    batch_cmds.clear();
                } else {
                    for cmd in batch_cmds.drain(..) {
                        if !ap.push(cmd) {
                            break;
                        }
                    }
                    batch_cmds.clear();
                }
            }
            batch_start = None;
        }
        if let Some(p) = &a.state {
            let consistent = srvs
                .iter()
                .all(|s| s.failed || s.watch.checkpoint().is_some());
            let interval_ok = last_state.is_none_or(|t| t.elapsed() >= state_interval);
            if dirty_state && consistent && (interval_ok || stopping) {
                if let Err(e) = write_state(p, &srvs, wire) {
                    eprintln!("lqctl watch: --state {}: {e}", p.display());
                    exit = 1;
                }
                last_state = Some(Instant::now());
                dirty_state = false;
            }
        }
        if stopping {
            break;
        }
        // Wait for the next event, a reconnect, the batch's end or a signal check.
        let now = Instant::now();
        let mut wait = Duration::from_millis(200);
        if let Some(t) = batch_start {
            wait = wait.min(batch.saturating_sub(t.elapsed()));
        }
        for s in &srvs {
            if let Some(at) = s.watch.wake_at() {
                wait = wait.min(Duration::from_millis(at.saturating_sub(ms(now))));
            }
        }
        match rx.recv_timeout(wait) {
            // One event at a time: its outputs are drawn before the next (a merge of several
            // servers sees every table as it was when the change was made).
            Ok(ev) => dispatch(&mut srvs, ev, ms(Instant::now())),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        let now = ms(Instant::now());
        for s in &mut srvs {
            s.watch.tick(now);
        }
    }
    let _ = fmt.footer(&mut out);
    let _ = out.flush();
    for s in &mut srvs {
        if let Some(st) = s.stream.take() {
            let _ = st.shutdown(Shutdown::Both);
        }
    }
    let (mut applied, mut failed) = (0, 0);
    if let Some(ap) = applier {
        let counts = ap.counts.clone();
        let left = ap.finish(Duration::from_secs(10));
        if left > 0 {
            eprintln!(
                "lqctl watch: --snabb-apply: {left} commands not applied (stopped after waiting \
                 10 s for the queue); the lwAFTR may lag the table: restart watch or load \
                 --snabb-conf"
            );
            exit = 1;
        }
        applied = counts.applied.load(Ordering::Relaxed);
        failed = counts.failed.load(Ordering::Relaxed);
        if failed > 0 {
            exit = 1;
        }
    }
    let held = merged_table
        .as_ref()
        .map_or_else(|| srvs[0].watch.table().len(), Table::len);
    let mut summary = format!(
        "lqctl watch: {held} bindings held, {emitted} changes emitted, {conflicts} conflicts"
    );
    if a.snabb_apply.is_some() {
        summary.push_str(&format!(
            ", snabb commands {applied} applied {failed} failed"
        ));
    }
    for s in &srvs {
        let st = s.watch.stats();
        summary.push_str(&format!(
            "; {}: {} ({} loads, {} bindings received, {} lost, {} DataMissing)",
            s.label,
            if s.failed {
                "failed"
            } else if s.watch.caught_up() {
                "following"
            } else {
                "not caught up"
            },
            st.loads,
            st.bindings,
            st.lost,
            st.data_missing
        ));
    }
    summary.push_str(if a.insecure {
        "; without TLS (--insecure)"
    } else {
        "; over TLS"
    });
    eprintln!("{summary}");
    Ok(ExitCode::from(exit))
}

fn send(s: &mut Srv, msg: &[u8], now_ms: u64) {
    let mut buf = Vec::with_capacity(msg.len() + 2);
    let ok = framing::encode_frame(msg, &mut buf).is_ok()
        && s.stream
            .as_mut()
            .is_some_and(|st| st.write_all(&buf).is_ok());
    if !ok {
        s.gen += 1;
        if let Some(st) = s.stream.take() {
            let _ = st.shutdown(Shutdown::Both);
        }
        s.watch
            .disconnected(now_ms, jitter(), "the query could not be sent");
    }
}

fn dispatch(srvs: &mut [Srv], (i, gen, ev): (usize, u64, Ev), now_ms: u64) {
    let s = &mut srvs[i];
    if gen != s.gen {
        if let Ev::Connected(st) = ev {
            let _ = st.shutdown(Shutdown::Both);
        }
        return;
    }
    match ev {
        Ev::Connected(st) => {
            s.stream = Some(st);
            s.watch.connected(unix_now());
        }
        Ev::Failed(why) | Ev::Lost(why) => {
            s.stream = None;
            s.gen += 1;
            s.watch.disconnected(now_ms, jitter(), &why);
        }
        Ev::Msg(m) => {
            s.watch.message(&m, now_ms, jitter());
            s.last = Some(m);
        }
    }
}

fn key_text(k: &Key) -> String {
    match k {
        Key::V4 { addr, psid: None } => addr.to_string(),
        Key::V4 {
            addr,
            psid: Some(p),
        } => format!("{addr} psid {}/{}", p.psid, p.psid_len),
        Key::V6 { duid, addr } => format!("duid {} addr {addr}", hex(duid)),
    }
}

fn note(verbose: bool, label: &str, n: &Note) {
    match n {
        Note::Lost { reason, retry_ms } => eprintln!(
            "lqctl watch: {label}: {reason}; reconnecting in {:.1} s",
            *retry_ms as f64 / 1000.0
        ),
        Note::DataMissing => eprintln!(
            "lqctl watch: {label}: DataMissing (the server's history does not reach back): reloading"
        ),
        _ if !verbose => {}
        Note::Loading { reload } => eprintln!(
            "lqctl watch: {label}: connected, {}",
            if *reload { "reloading by bulk query" } else { "bulk loading" }
        ),
        Note::Loaded { bindings } => eprintln!("lqctl watch: {label}: loaded {bindings} bindings"),
        Note::Subscribed { start } => eprintln!(
            "lqctl watch: {label}: active query, catching up from {start} ({} s ago)",
            i64::from(unix_now()) - i64::from(*start)
        ),
        Note::CaughtUp => eprintln!("lqctl watch: {label}: caught up, following"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(remove: bool) -> Change {
        let v = Value {
            client_id: Some(vec![0xff, 1]),
            softwire: Some("2001:db8::1".parse().unwrap()),
            active: true,
        };
        Change {
            key: Key::V4 {
                addr: "192.0.2.1".parse().unwrap(),
                psid: Some(PortParams {
                    offset: 0,
                    psid_len: 4,
                    psid: 3,
                }),
            },
            old: remove.then(|| v.clone()),
            new: (!remove).then_some(v),
        }
    }

    #[test]
    fn changes_without_a_message_are_written_from_the_table() {
        let link = Some("2001:db8:1::".parse().unwrap());
        let up = lease_for(&change(false), None, Wire::O6, link);
        let Lease::V4(l) = &up else { panic!() };
        assert!(up.active());
        assert_eq!(l.softwire, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(l.port_params.unwrap().psid, 3);
        assert!(l.dhcp4o6);
        let rm = lease_for(&change(true), Some(&[1, 2, 3]), Wire::O6, link);
        assert!(!rm.active(), "a removal is written released");
        let mut f = format::formatter(Format::Jsonl, &Options::default()).unwrap();
        let mut out = Vec::new();
        f.binding(&mut out, &rm, Some(Op::Remove)).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["op"], "remove");
        assert_eq!(j["ipv4"], "192.0.2.1");
        assert_eq!(j["state"], "released");
    }

    #[test]
    fn the_state_file_round_trips_every_binding() {
        let c = change(false);
        let v = c.new.unwrap();
        let j = serde_json::Value::Object(binding_json(&c.key, Some(&v)));
        assert_eq!(binding_of_json(&j), Some((c.key.clone(), v.clone())));
        let k6 = Key::V6 {
            duid: vec![0, 1, 2],
            addr: "2001:db8::5".parse().unwrap(),
        };
        let v6 = Value {
            client_id: None,
            softwire: None,
            active: true,
        };
        let j = serde_json::Value::Object(binding_json(&k6, Some(&v6)));
        assert_eq!(binding_of_json(&j), Some((k6, v6)));
        for bad in [
            serde_json::json!({"ipv4": "x"}),
            serde_json::json!({"ipv4": "192.0.2.1", "psid": {"offset": 0, "len": 300, "id": 1}}),
            serde_json::json!({"duid": "0g", "addr": "::1"}),
            serde_json::json!({}),
        ] {
            assert_eq!(binding_of_json(&bad), None, "{bad}");
        }
    }
}
