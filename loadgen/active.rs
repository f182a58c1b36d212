//! The active-leasequery subscribers of the `active` and `mixed` scenarios.
//!
//! Each subscriber bulk-loads first, then follows: it notes the time `T` (Unix seconds), loads
//! the current bindings with bulk leasequery on its connection (DHCP4o6: one query by
//! link-address per link the churn clients use; DHCPv4: "all"; DHCPv6: nothing, the churn
//! changes no plain v6 binding), then sends its active query with a catch-up from `T`
//! (OPTION_LQ_START_TIME / query-start-time) on the same connection, so that no change between
//! the bulk load and the subscription is missed. It is ready when CatchUpComplete arrives (a
//! DataMissing answer, e.g. within a second of the server's import, is tried again a second
//! later).
//! From then on every update replaces the binding it is about (latest state wins), so at
//! quiescence its table must equal the churn's ledger (`--verify`).
//!
//! The subscribers are spread over one thread per core, each polling its connections with mio.
//!
//! Latency, on one monotonic clock (the churn threads stamp [`Stamps`], the subscriber threads
//! read them):
//! - `active_update`: from the churn client's receipt of the DHCPACK to the subscriber's
//!   receipt of the update that makes the binding ACTIVE with that state. The server publishes
//!   a change as it sends the DHCPACK, so an update can arrive before the client has taken
//!   its ACK: it is then recorded as 0 and counted (`active_update_before_ack`).
//! - `active_from_send`: from the moment the client sent the message that made the change
//!   (REQUEST, renewal REQUEST or RELEASE) to the update's receipt; never negative, and the
//!   only latency a RELEASE (no ACK) has.
//!
//! Updates of bindings whose client-id is not a loadgen client's (an import file's) are counted
//! but left out of the table; another run's clients' are tabled and show as extra.

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use leasequery::proto::codes::{v4msg, v4opt, v6msg, v6opt, v6status};
use leasequery::proto::record::PortParams;
use leasequery::proto::v4;
use leasequery::proto::v6::MessageView;

use leasequery::requestor::reply::{self, Answer, ReportedV4, Wire};
use leasequery::requestor::ActiveQuery;

use crate::ledger::{loadgen_client, Entry, Stamps};
use crate::report::{Counters, Metric};
use crate::requestor::{Conn, KindExt, Port, QueryKind, Stream, Tls};
use crate::verify::{self, Found};

/// The requestor DUID of the subscribers (DUID-LL 02:00:00:00:41:4c, "AL").
const SUBSCRIBER: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0x41, 0x4c];

/// The wire form of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// DHCPv4 DHCPACTIVELEASEQUERY on TCP 67 (every v4 and 4o6 binding).
    V4,
    /// DHCPv6 ACTIVELEASEQUERY on TCP 547 with no query (every plain v6 binding).
    V6,
    /// DHCP4o6 ACTIVELEASEQUERY + DHCPACTIVELEASEQUERY on TCP 547 (every 4o6 binding).
    O6,
}

impl FromStr for Form {
    type Err = String;
    fn from_str(s: &str) -> Result<Form, String> {
        match s {
            "v4" => Ok(Form::V4),
            "v6" => Ok(Form::V6),
            "4o6" => Ok(Form::O6),
            _ => Err(format!("{s}: unknown subscriber form (v4, v6, 4o6)")),
        }
    }
}

/// Every form, in the order of [`Form::index`].
const FORMS: [Form; 3] = [Form::V4, Form::V6, Form::O6];

impl Form {
    fn index(self) -> usize {
        match self {
            Form::V4 => 0,
            Form::V6 => 1,
            Form::O6 => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Form::V4 => "v4",
            Form::V6 => "v6",
            Form::O6 => "4o6",
        }
    }

    /// Whether its table is compared with the churn's ledger.
    fn follows_churn(self) -> bool {
        self != Form::V6
    }
}

/// What the subscribers need to know.
#[derive(Debug, Clone)]
pub struct SubArgs {
    /// The server's DHCPv6 / DHCP4o6 leasequery address.
    pub server6: SocketAddr,
    /// The server's DHCPv4 leasequery address.
    pub server4: SocketAddr,
    /// How many subscribers.
    pub subscribers: usize,
    /// Their forms, used in turn.
    pub forms: Vec<Form>,
    /// The links of the 4o6 bulk load.
    pub links: Vec<Ipv6Addr>,
    /// Connect and set-up read timeout.
    pub timeout: Duration,
    /// Threads (0: one per core).
    pub threads: usize,
    /// Subscribe over TLS.
    pub tls: Option<Tls>,
}

/// A subscription's connection once it follows (non-blocking, polled with mio): plain, or TLS
/// whose socket is the one registered.
enum SubStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl SubStream {
    /// From the blocking set-up connection, made non-blocking.
    fn from_set_up(s: Stream) -> io::Result<SubStream> {
        Ok(match s {
            Stream::Plain(tcp) => {
                tcp.set_nonblocking(true)?;
                SubStream::Plain(TcpStream::from_std(tcp))
            }
            Stream::Tls(t) => {
                let (conn, tcp) = t.into_parts();
                tcp.set_nonblocking(true)?;
                SubStream::Tls(Box::new(rustls::StreamOwned::new(
                    conn,
                    TcpStream::from_std(tcp),
                )))
            }
        })
    }

    /// The socket to register with the poll.
    fn socket(&mut self) -> &mut TcpStream {
        match self {
            SubStream::Plain(s) => s,
            SubStream::Tls(t) => &mut t.sock,
        }
    }
}

impl Read for SubStream {
    /// Plaintext; `WouldBlock` once neither TLS nor the socket holds more.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SubStream::Plain(s) => s.read(buf),
            SubStream::Tls(t) => t.read(buf),
        }
    }
}

/// One subscription.
struct Sub {
    form: Form,
    xid6: u32,
    xid4: u32,
    stream: SubStream,
    buf: Vec<u8>,
    have: usize,
    /// Loadgen clients' bindings by (IPv4, PSID) as last seen.
    table: hashbrown::HashMap<Unit, Seen>,
    /// Order-independent digest of the active entries (see [`digest`]), kept as updates come,
    /// so that a settle check costs O(1).
    digest: u64,
    /// Why the subscription ended early (closed, QueryTerminated, a decoding error).
    ended: Option<String>,
    settled: bool,
}

/// What a subscriber thread reports.
pub struct Outcome {
    /// Counters (updates, keepalives, statuses, ends by reason).
    pub counters: Counters,
    /// `active_update`, `active_from_send`.
    pub metrics: Vec<Metric>,
    /// Per follower subscriber: its form and its final table (the run's clients only).
    pub tables: Vec<(Form, Vec<Found>)>,
}

/// Subscribers connected, loaded and caught up, spread over threads that run until
/// [`Running::finish`].
pub struct Running {
    handles: Vec<std::thread::JoinHandle<Outcome>>,
    stop: Arc<AtomicBool>,
    ledger: Arc<OnceLock<Vec<Entry>>>,
    settled: Arc<AtomicUsize>,
    followers: usize,
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

fn add(c: &mut Counters, k: &str, v: u64) {
    *c.entry(k.to_owned()).or_default() += v;
}

/// The DHCPv4 PRL of the subscribers: state, softwire source and port set.
const PRL: &[u8] = &[
    v4opt::DHCP_STATE,
    v4opt::DHCP4O6_S46_SADDR,
    v4opt::V4_PORTPARAMS,
];

/// The active query of a subscriber of `form`, with a catch-up from `start` (Unix seconds; the
/// builders put it on the wire in each layer's epoch, RFC 7653 §6.3, RFC 7724 §6.3).
fn active_query(form: Form, xid6: u32, xid4: u32, start: u32) -> Vec<u8> {
    let q = |xid, oro| ActiveQuery {
        xid,
        duid: &SUBSCRIBER,
        start: Some(start),
        oro,
        prl: PRL,
    };
    match form {
        Form::V4 => q(xid4, &[]).v4(),
        Form::V6 => q(xid6, &[v6opt::LQ_BASE_TIME]).v6(),
        Form::O6 => q(xid6, &[v6opt::S46_V4V6BIND, v6opt::LQ_BASE_TIME]).o6(xid4),
    }
}

/// How often a subscription is tried again when its catch-up cannot be served (DataMissing: the
/// server's history starts after the start time, e.g. within a second of an import).
const SET_UP_TRIES: u32 = 5;

/// Connects subscriber `n`, bulk-loads, subscribes and reads its catch-up up to
/// CatchUpComplete; returns it with its table. A DataMissing answer to the catch-up is tried
/// again a second later (up to [`SET_UP_TRIES`] times) on a new connection.
fn connect(a: &SubArgs, n: usize) -> io::Result<Sub> {
    let mut tries = 0;
    loop {
        tries += 1;
        match try_connect(a, n)? {
            Some(sub) => return Ok(sub),
            None if tries < SET_UP_TRIES => std::thread::sleep(Duration::from_secs(1)),
            None => {
                return Err(io::Error::other(format!(
                    "the server answered DataMissing to {SET_UP_TRIES} catch-ups"
                )))
            }
        }
    }
}

/// One set-up attempt; `None` when the catch-up was answered with DataMissing.
fn try_connect(a: &SubArgs, n: usize) -> io::Result<Option<Sub>> {
    let form = a.forms[n % a.forms.len()];
    let xid6 = 0x50_0000 + n as u32;
    let xid4 = 0x4c51_0000 + n as u32;
    let start = unix_now();
    let (server, port) = if form == Form::V4 {
        (a.server4, Port::V4)
    } else {
        (a.server6, Port::V6)
    };
    let mut conn = Conn::connect(server, port, a.timeout, a.tls.as_ref())?;
    let mut loaded = match form {
        Form::O6 => verify::query_links_on(&mut conn, &a.links, 0x7d_0000)?
            .iter()
            .map(seen_of_found)
            .collect(),
        Form::V4 => {
            let mut out = Vec::new();
            conn.send(&QueryKind::V4All.query(xid4 ^ 0x8000_0000))?;
            conn.read_stream(|m| {
                match v4::MessageView::parse(m)
                    .ok()
                    .and_then(|v| v.message_type())
                {
                    Some(t) if t == v4msg::LEASEQUERYDONE => false,
                    _ => {
                        out.extend(seen_of_v4(m));
                        true
                    }
                }
            })?;
            out
        }
        Form::V6 => Vec::new(),
    };
    let query = active_query(form, xid6, xid4, start);
    conn.send(&query)?;
    // The catch-up, read in blocking mode: updates (the latest state wins), up to
    // CatchUpComplete.
    let mut outcome: Result<bool, String> = Ok(false);
    conn.read_stream(|m| {
        let msg = match form {
            Form::V4 => decode4(m),
            _ => decode6(m),
        };
        match msg {
            Msg::Update(u, seen) => {
                loaded.push((u, seen));
                true
            }
            Msg::Keepalive | Msg::Reply(0) => true,
            Msg::Status {
                code: v6status::CATCH_UP_COMPLETE,
                done: false,
            } => {
                outcome = Ok(true);
                false
            }
            Msg::Reply(v6status::DATA_MISSING)
            | Msg::Status {
                code: v6status::DATA_MISSING,
                ..
            } => false,
            other => {
                outcome = Err(format!("{other:?} during the catch-up"));
                false
            }
        }
    })?;
    match outcome {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return Err(io::Error::other(e)),
    }
    let (stream, rest) = conn.into_parts();
    let stream = SubStream::from_set_up(stream)?;
    let mut buf = vec![0; 1 << 20];
    buf[..rest.len()].copy_from_slice(&rest);
    let mut sub = Sub {
        form,
        xid6,
        xid4,
        stream,
        buf,
        have: rest.len(),
        table: hashbrown::HashMap::new(),
        digest: 0,
        ended: None,
        settled: false,
    };
    for f in loaded {
        sub.keep(f);
    }
    Ok(Some(sub))
}

type Unit = (Ipv4Addr, Option<(u8, u8, u16)>);

fn unit(addr: Ipv4Addr, p: Option<PortParams>) -> Unit {
    (addr, p.map(|p| (p.offset, p.psid_len, p.psid)))
}

/// What an update says of a binding (its key is the [`Unit`]), decoded without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Seen {
    /// The loadgen client's index, when the client-id is a loadgen client's.
    client: Option<u32>,
    softwire: Option<Ipv6Addr>,
    active: bool,
}

/// One entry's share of a table digest: a hash of the active entries (0 for the others), summed
/// over the table. Equal tables have equal digests; a settle check compares digests and only
/// the final `--verify` compares the tables themselves.
fn digest(u: &Unit, s: &Seen) -> u64 {
    if !s.active {
        return 0;
    }
    // A fixed function (the subscriber threads and the ledger must hash alike), cheap enough to
    // run twice per update: the fields packed into two words, each mixed (splitmix64's
    // finalizer) and combined.
    let (p_some, offset, psid_len, psid) = match u.1 {
        Some((o, l, p)) => (1u64, u64::from(o), u64::from(l), u64::from(p)),
        None => (0, 0, 0, 0),
    };
    let a = u64::from(u32::from(u.0))
        | p_some << 32
        | offset << 33
        | psid_len << 41
        | (psid & 0x7f) << 49
        | u64::from(s.client.is_some()) << 56
        | u64::from(s.softwire.is_some()) << 57;
    let b = (psid >> 7) << 32 | u64::from(s.client.unwrap_or(0));
    let sw = s.softwire.map_or(0, u128::from);
    let mut h = mix(a) ^ mix(b.wrapping_add(0x9e37_79b9_7f4a_7c15));
    h = mix(h ^ sw as u64) ^ mix(h.wrapping_add((sw >> 64) as u64));
    h
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ledger_digest(ledger: &[Entry]) -> u64 {
    ledger
        .iter()
        .map(|e| {
            let u = unit(e.addr, e.port_params);
            let s = Seen {
                client: loadgen_client(&e.client_id),
                softwire: Some(e.softwire),
                active: true,
            };
            digest(&u, &s)
        })
        .fold(0u64, u64::wrapping_add)
}

fn seen_of_found(f: &Found) -> (Unit, Seen) {
    (
        unit(f.addr, f.port_params),
        Seen {
            client: f.client_id.as_deref().and_then(loadgen_client),
            softwire: f.softwire,
            active: f.active,
        },
    )
}

/// The binding of a DHCPLEASEACTIVE / DHCPLEASEUNASSIGNED, as tabled.
fn seen_of_v4(raw: &[u8]) -> Option<(Unit, Seen)> {
    let b = ReportedV4::parse(raw)?;
    let seen = Seen {
        client: b.client_id.and_then(loadgen_client),
        softwire: b.softwire,
        active: b.active,
    };
    Some((unit(b.addr, b.port_params), seen))
}

/// One decoded message of a subscription.
#[derive(Debug)]
enum Msg {
    Update(Unit, Seen),
    Keepalive,
    Status { code: u16, done: bool },
    Reply(u16),
    Other,
}

/// Decodes a DHCPv4 active-leasequery message (statuses in DHCPv6 terms).
fn decode4(m: &[u8]) -> Msg {
    match reply::classify(Wire::V4, m) {
        Answer::Binding(b) => {
            b.v4.and_then(seen_of_v4)
                .map_or(Msg::Other, |(u, s)| Msg::Update(u, s))
        }
        Answer::Keepalive => Msg::Keepalive,
        Answer::Status(s) => Msg::Status {
            code: s.v6(),
            done: false,
        },
        Answer::Done(s) => Msg::Status {
            code: s.map_or(0, |s| s.v6()),
            done: true,
        },
        Answer::Reply(_) | Answer::Other => Msg::Other,
    }
}

/// Decodes a DHCPv6 or DHCP4o6 active-leasequery message.
fn decode6(m: &[u8]) -> Msg {
    let Ok(v) = MessageView::parse(m) else {
        return Msg::Other;
    };
    let status = v
        .options()
        .get(v6opt::STATUS_CODE)
        .and_then(|o| o.data.get(..2))
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    match v.msg_type {
        t if t == v6msg::LEASEQUERY_REPLY => Msg::Reply(status.unwrap_or(0)),
        t if t == v6msg::LEASEQUERY_DONE => Msg::Status {
            code: status.unwrap_or(0),
            done: true,
        },
        t if t == v6msg::LEASEQUERY_DATA => {
            if let Some(code) = status {
                return Msg::Status { code, done: false };
            }
            if v.options().get(v6opt::CLIENT_DATA).is_none() {
                return Msg::Keepalive;
            }
            match v.options().get(v6opt::DHCPV4_MSG) {
                Some(inner) => {
                    seen_of_v4(inner.data).map_or(Msg::Other, |(u, s)| Msg::Update(u, s))
                }
                // A plain v6 binding: counted, not tabled (the churn makes none).
                None => Msg::Update(
                    unit(Ipv4Addr::UNSPECIFIED, None),
                    Seen {
                        client: None,
                        softwire: None,
                        active: false,
                    },
                ),
            }
        }
        _ => Msg::Other,
    }
}

struct Thread<'a> {
    stamps: &'a Stamps,
    /// Updates per form, indexed like [`FORMS`] (folded into the counters at the end).
    updates: [u64; 3],
    /// Updates that arrived before their DHCPACK was taken (folded in at the end).
    before_ack: u64,
    t0: Instant,
    c: Counters,
    update: Metric,
    from_send: Metric,
}

impl Sub {
    /// Tables a loadgen client's binding (as `--verify` through bulk does); returns the
    /// client's index.
    fn keep(&mut self, (u, seen): (Unit, Seen)) -> Option<u32> {
        let index = seen.client?;
        if let Some(old) = self.table.insert(u, seen) {
            self.digest = self.digest.wrapping_sub(digest(&u, &old));
        }
        self.digest = self.digest.wrapping_add(digest(&u, &seen));
        Some(index)
    }

    /// The table as `verify::compare` takes it.
    fn found(&self) -> Vec<Found> {
        self.table
            .iter()
            .map(|(u, s)| Found {
                client_id: s.client.map(leasequery::lwb4::client_id_of),
                addr: u.0,
                port_params: u.1.map(|(offset, psid_len, psid)| PortParams {
                    offset,
                    psid_len,
                    psid,
                }),
                softwire: s.softwire,
                active: s.active,
            })
            .collect()
    }

    /// Reads what has arrived; false when the connection is done.
    fn on_readable(&mut self, th: &mut Thread<'_>) -> bool {
        loop {
            if self.have == self.buf.len() {
                self.end(th, "a message over the buffer");
                return false;
            }
            match self.stream.read(&mut self.buf[self.have..]) {
                Ok(0) => {
                    self.end(th, "closed by the server");
                    return false;
                }
                Ok(n) => {
                    self.have += n;
                    let now = Instant::now();
                    if !self.drain(th, now) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.end(th, &format!("read error {:?}", e.kind()));
                    return false;
                }
            }
        }
    }

    fn end(&mut self, th: &mut Thread<'_>, why: &str) {
        if self.ended.is_none() {
            add(&mut th.c, &format!("error_active_ended: {why}"), 1);
            self.ended = Some(why.to_owned());
        }
    }

    /// Handles every complete message in the buffer.
    fn drain(&mut self, th: &mut Thread<'_>, now: Instant) -> bool {
        let mut pos = 0;
        let mut open = true;
        while self.have - pos >= 2 {
            let n = u16::from_be_bytes([self.buf[pos], self.buf[pos + 1]]) as usize;
            if self.have - pos < 2 + n {
                break;
            }
            let (start, end) = (pos + 2, pos + 2 + n);
            pos = end;
            let msg = match self.form {
                Form::V4 => decode4(&self.buf[start..end]),
                _ => decode6(&self.buf[start..end]),
            };
            let xid_ok = match self.form {
                Form::V4 => {
                    v4::MessageView::parse(&self.buf[start..end]).is_ok_and(|v| v.xid == self.xid4)
                }
                _ => {
                    self.buf.get(start + 1..start + 4)
                        == Some(&(self.xid6 & 0xff_ffff).to_be_bytes()[1..])
                }
            };
            if !xid_ok {
                add(&mut th.c, "error_active_wrong_xid", 1);
            }
            open &= self.on_msg(msg, th, now);
        }
        self.buf.copy_within(pos..self.have, 0);
        self.have -= pos;
        open
    }

    fn on_msg(&mut self, msg: Msg, th: &mut Thread<'_>, now: Instant) -> bool {
        let form = self.form.index();
        match msg {
            Msg::Update(u, seen) => {
                th.updates[form] += 1;
                if let Some(index) = self.keep((u, seen)) {
                    // Not one of this run's clients: `record` ignores it.
                    th.record(index, seen.active, now);
                }
            }
            Msg::Keepalive => add(&mut th.c, "active_keepalives", 1),
            Msg::Reply(0) => {}
            Msg::Reply(code) => {
                self.end(th, &format!("REPLY with status {code}"));
                return false;
            }
            Msg::Status {
                code: v6status::DATA_MISSING,
                done: false,
            } => {
                // History lost after the subscription began (the server's mailbox or history
                // overflowed): the table cannot be trusted any more.
                add(&mut th.c, "error_active_data_missing", 1);
            }
            Msg::Status { code, done } => {
                self.end(
                    th,
                    &format!("{} status {code}", if done { "DONE" } else { "DATA" }),
                );
                return false;
            }
            Msg::Other => add(&mut th.c, "error_active_undecodable", 1),
        }
        true
    }
}

impl Thread<'_> {
    fn record(&mut self, index: u32, active: bool, now: Instant) {
        let Some((sent, ack)) = self.stamps.get(index) else {
            return;
        };
        let u = self.stamps.ns(now);
        let at = now.saturating_duration_since(self.t0);
        if sent == 0 {
            // A change the run did not make (before it started).
            return;
        }
        self.from_send.record(at, u.saturating_sub(sent) / 1000);
        if active {
            if ack >= sent && u >= ack {
                self.update.record(at, (u - ack) / 1000);
            } else {
                self.before_ack += 1;
                self.update.record(at, 0);
            }
        }
    }
}

impl Running {
    /// Connects, loads and subscribes every subscriber (in parallel over the threads), and
    /// returns once every one is caught up (or `timeout` passed: an error).
    pub fn start(a: &SubArgs, stamps: Arc<Stamps>, t0: Instant) -> io::Result<Running> {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let threads = if a.threads == 0 {
            cores.len().max(1)
        } else {
            a.threads
        }
        .min(a.subscribers.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let ledger: Arc<OnceLock<Vec<Entry>>> = Arc::new(OnceLock::new());
        let settled = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicUsize::new(0));
        let failed: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let followers = (0..a.subscribers)
            .filter(|n| a.forms[n % a.forms.len()].follows_churn())
            .count();
        let mut handles = Vec::new();
        for t in 0..threads {
            let a = a.clone();
            let core = cores.get(t % cores.len().max(1)).copied();
            let (stamps, stop, ledger, settled, ready, failed) = (
                stamps.clone(),
                stop.clone(),
                ledger.clone(),
                settled.clone(),
                ready.clone(),
                failed.clone(),
            );
            handles.push(std::thread::spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let mut th = Thread {
                    stamps: &stamps,
                    t0,
                    c: Counters::new(),
                    updates: [0; 3],
                    before_ack: 0,
                    update: Metric::new("active_update", "us"),
                    from_send: Metric::new("active_from_send", "us"),
                };
                let mut subs = Vec::new();
                for n in (0..a.subscribers).filter(|n| n % threads == t) {
                    match connect(&a, n) {
                        Ok(s) => subs.push(s),
                        Err(e) => {
                            let _ = failed.set(format!("subscriber {n}: {e}"));
                            return th.outcome(subs);
                        }
                    }
                }
                run_thread(&mut th, &mut subs, &stop, &ledger, &settled, &ready);
                th.outcome(subs)
            }));
        }
        let running = Running {
            handles,
            stop,
            ledger,
            settled,
            followers,
        };
        let deadline = Instant::now() + a.timeout + Duration::from_secs(a.subscribers as u64 / 20);
        loop {
            if let Some(e) = failed.get() {
                running.stop.store(true, Ordering::Release);
                return Err(io::Error::other(e.clone()));
            }
            if ready.load(Ordering::Acquire) >= a.subscribers {
                return Ok(running);
            }
            if Instant::now() > deadline {
                running.stop.store(true, Ordering::Release);
                return Err(io::Error::other(format!(
                    "only {} of {} subscribers caught up in time",
                    ready.load(Ordering::Acquire),
                    a.subscribers
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Gives the subscribers the churn's ledger, waits until every follower's table equals it
    /// (or `settle` passed), stops the threads and returns what they saw.
    pub fn finish(self, ledger: Vec<Entry>, settle: Duration) -> (Vec<Outcome>, Duration) {
        let t = Instant::now();
        let _ = self.ledger.set(ledger);
        while self.settled.load(Ordering::Acquire) < self.followers && t.elapsed() < settle {
            std::thread::sleep(Duration::from_millis(20));
        }
        let waited = t.elapsed();
        self.stop.store(true, Ordering::Release);
        let outcomes = self
            .handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect();
        (outcomes, waited)
    }
}

impl Thread<'_> {
    fn outcome(mut self, subs: Vec<Sub>) -> Outcome {
        for (form, n) in FORMS.iter().zip(self.updates) {
            if n > 0 {
                add(&mut self.c, &format!("active_updates_{}", form.name()), n);
            }
        }
        if self.before_ack > 0 {
            add(&mut self.c, "active_update_before_ack", self.before_ack);
        }
        self.update.finish();
        self.from_send.finish();
        let tables = subs
            .into_iter()
            .filter(|s| s.form.follows_churn())
            .map(|s| (s.form, s.found()))
            .collect();
        Outcome {
            counters: self.c,
            metrics: vec![self.update, self.from_send],
            tables,
        }
    }
}

fn run_thread(
    th: &mut Thread<'_>,
    subs: &mut [Sub],
    stop: &AtomicBool,
    ledger: &OnceLock<Vec<Entry>>,
    settled: &AtomicUsize,
    ready: &AtomicUsize,
) {
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            add(&mut th.c, &format!("error_active_poll_{:?}", e.kind()), 1);
            return;
        }
    };
    for (i, s) in subs.iter_mut().enumerate() {
        if let Err(e) = poll
            .registry()
            .register(s.stream.socket(), Token(i), Interest::READABLE)
        {
            s.end(th, &format!("register error {:?}", e.kind()));
        }
    }
    // Bytes that arrived with the bulk load's last read, then what TLS or the socket holds
    // already (no readiness event comes for it).
    let now = Instant::now();
    for s in subs.iter_mut() {
        if s.drain(th, now) && !s.on_readable(th) {
            let _ = poll.registry().deregister(s.stream.socket());
        }
    }
    // Every subscriber here has caught up (see `connect`).
    add(&mut th.c, "active_catch_up_complete", subs.len() as u64);
    ready.fetch_add(subs.len(), Ordering::AcqRel);
    let mut events = Events::with_capacity(1024);
    let mut last_check = Instant::now();
    let mut want: Option<u64> = None;
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() != io::ErrorKind::Interrupted {
                add(&mut th.c, &format!("error_active_poll_{:?}", e.kind()), 1);
                return;
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if let Some(s) = subs.get_mut(i) {
                if s.ended.is_none() && !s.on_readable(th) {
                    let _ = poll.registry().deregister(s.stream.socket());
                }
            }
        }
        if let Some(l) = ledger.get() {
            if last_check.elapsed() >= Duration::from_millis(20) {
                last_check = Instant::now();
                let want = *want.get_or_insert_with(|| ledger_digest(l));
                for s in subs
                    .iter_mut()
                    .filter(|s| !s.settled && s.form.follows_churn())
                {
                    if s.ended.is_some() || s.digest == want {
                        s.settled = true;
                        settled.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "active_tests.rs"]
mod tests;
