//! One requestor connection as a state machine (sans-io, in the manner of quinn-proto's
//! `Connection`): no socket, no task, no clock. The glommio shell (`shard/conn.rs`) feeds it
//! what happened (`handle_*`: octets read, a message, a write begun or done, a query's last
//! message written, the time) and asks it what to do (`poll_*`: the next message to act on,
//! whether another may be read, which deadline to wait for, whether to close). Every `now` is
//! passed in.
//!
//! The rules it keeps, each with a unit test in `connection/tests.rs`:
//! - **Parallel queries** (RFC 5460 §7.3, RFC 6926 §8.4): at most `max_queries` queries are
//!   outstanding; a query holds its slot from the moment its frame is read until its last octet
//!   is written ([`Connection::handle_last_written`]), not until its scan ends. No frame is
//!   read while every slot is taken ([`Connection::poll_read`]).
//! - **Running transaction ids** (scenario 23): a bulk query whose xid is running is dropped
//!   and counted ([`Step::Duplicate`]).
//! - **An active query is alone on its connection** (RFC 7653 §9.4, RFC 7724 §8.3): any query
//!   beside it, and an active query beside a running one, is refused with NotAllowed on its own
//!   xid (the bytes come from `session::active::busy_reply`).
//! - **Message types allowed** on the connection: decided by [`super::on_message`]; a message
//!   not allowed closes the connection ([`Close::ProtocolError`]).
//! - **Stream shape** ([`BulkStream`]): the first record becomes the first message (REPLY; v4
//!   with option 54; promoted by the plan's encoder, once, without a copy of the other records),
//!   the stream ends with DONE, or a lone REPLY when nothing matched (RFC 5460 §7.2, RFC 6926
//!   §7.3), or QueryTerminated when cut short (RFC 5460 §5.5, §7.4).
//! - **Deadlines**, all BULK_LQ_DATA_TIMEOUT (T; RFC 5460 §7.1, §7.4): a frame must be complete
//!   within T of its first octet, however slowly its octets trickle in; the connection is idle
//!   (and closed) T after the last query finished, counted only while nothing is outstanding;
//!   a write blocked for T closes the connection, and the shell checks that deadline before it
//!   polls the write again ([`Connection::handle_timeout`] before
//!   [`Connection::handle_write_done`]).
//! - **TLS negotiation** (RFC 7653 §6.2.2, §9.1; RFC 7724 §8.1; issue 15): STARTTLS (TCP 547)
//!   or DHCPTLS (TCP 67) is allowed only as the first message. With `tls` on it becomes
//!   [`Step::StartTls`]: the shell writes the accepting answer in plain, takes the octets read
//!   after it ([`Connection::take_pending`], the ClientHello may be among them) and runs the
//!   handshake; then [`Connection::handle_tls_up`] marks the connection secured (or
//!   [`Connection::handle_tls_failed`] closes it). With `tls = "off"` it gets
//!   TLSConnectionRefused ([`Step::Refused`]). In `required` mode any other first message
//!   closes ([`Close::TlsRequired`]); a plain active query is refused unless
//!   `allow_insecure_active`, and allowed on a secured connection.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hashbrown::HashSet;

use super::active::ActivePlan;
use super::{Action, Family, Identity, LinkSet, ScanPlan};
use crate::proto::framing::{decode_frame, Frame};

#[cfg(test)]
mod tests;

/// A moment as the connection sees it: [`Instant`] in the shell, a virtual time in the tests
/// (which read no clock).
pub trait Moment: Copy + Ord + std::fmt::Debug {
    /// `self + d`, or `None` past what the type holds.
    fn after(self, d: Duration) -> Option<Self>;
}

impl Moment for Instant {
    fn after(self, d: Duration) -> Option<Instant> {
        self.checked_add(d)
    }
}

/// Read buffer size per connection; a frame larger than this grows it up to 65537 octets.
pub const READ_CHUNK: usize = 16 * 1024;

/// The limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// BULK_LQ_DATA_TIMEOUT.
    pub data_timeout: Duration,
    /// `max_queries_per_connection`.
    pub max_queries: usize,
    /// How many shards scan for every bulk query.
    pub shards: usize,
}

/// Why the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// A bad frame or a message not allowed on the connection (no reply).
    ProtocolError,
    /// A reply that ends the connection was handed out (the shell writes it, then closes).
    AfterReply,
    /// A frame was not complete within T of its first octet.
    FrameTimeout,
    /// Nothing outstanding and no frame begun for T.
    Idle,
    /// A write was blocked for T.
    SendTimeout,
    /// `tls = "required"` and the message came before TLS (secure mode, RFC 7653 §9.1).
    TlsRequired,
    /// The TLS handshake failed or ran out of time.
    TlsFailed,
}

/// Why a query was refused for want of TLS (the shell counts each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// STARTTLS / DHCPTLS with `tls = "off"`: TLSConnectionRefused.
    TlsNotConfigured,
    /// A plain active query without `allow_insecure_active`: NotAllowed, then close.
    PlainActive,
}

/// What the world around the connection says a message means (identity, policy, links) and
/// the Unix time it is answered at.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    pub identity: &'a Identity,
    pub policy: &'a super::Policy,
    pub links: &'a LinkSet,
    pub unix_now: u32,
}

/// What the shell does with one message.
#[derive(Debug)]
pub enum Step {
    /// Nothing to send; the connection closes (see [`Connection::poll_close`]).
    Close,
    /// Discarded silently (RFC 5007 §4.2.1); counted as dropped.
    Drop,
    /// A bulk query whose xid is running (scenario 23): discarded and counted.
    Duplicate,
    /// A query beside an active one that no reply can be built for: discarded, not counted.
    Ignore,
    /// An error reply, the query's last message: it holds a slot until it is written
    /// ([`Connection::handle_last_written`]).
    Reply(Vec<u8>),
    /// The same, a refusal for want of TLS (counted by its reason).
    Refused(Vec<u8>, Refusal),
    /// STARTTLS / DHCPTLS accepted: write this answer in plain (no slot), then run the TLS
    /// handshake on the connection, fed first with [`Connection::take_pending`]. Nothing is
    /// read until [`Connection::handle_tls_up`].
    StartTls(Vec<u8>),
    /// Run a bulk query: it holds a slot until its last message is written, and its xid until
    /// [`Connection::handle_stream_end`].
    Scan(Box<ScanPlan>, BulkStream),
    /// Start the active query (no slot: the reader keeps reading, to refuse other queries and
    /// to see the peer close); its xid is held until [`Connection::handle_active_end`].
    Active(Box<ActivePlan>),
}

/// The state of one requestor connection.
#[derive(Debug)]
pub struct Connection<I: Moment = Instant> {
    family: Family,
    limits: Limits,
    /// Octets read and not yet part of a message.
    rbuf: BytesMut,
    /// Transaction ids of queries running now (bulk and active).
    running: HashSet<u32>,
    /// The xid of the active query, if one runs (at most one, alone).
    active: Option<u32>,
    /// Queries read whose last message is not yet written.
    outstanding: usize,
    /// When the last outstanding query finished (or the connection opened).
    last_done: I,
    /// The reader waits for a message (between [`Connection::start_read`] and the message).
    reading: bool,
    /// When the first octet of the frame being read arrived.
    frame_since: Option<I>,
    /// When the idle clock (re)started.
    idle_since: I,
    /// When the write in progress began.
    write_since: Option<I>,
    close: Option<Close>,
    /// A message was handled already (STARTTLS is allowed only as the first).
    started: bool,
    /// STARTTLS accepted, the handshake not yet done.
    negotiating: bool,
    /// The connection runs over TLS.
    secured: bool,
}

impl<I: Moment> Connection<I> {
    /// A connection opened at `now`.
    pub fn new(family: Family, limits: Limits, now: I) -> Connection<I> {
        Connection {
            family,
            limits,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            running: HashSet::new(),
            active: None,
            outstanding: 0,
            last_done: now,
            reading: false,
            frame_since: None,
            idle_since: now,
            write_since: None,
            close: None,
            started: false,
            negotiating: false,
            secured: false,
        }
    }

    /// True once the TLS handshake completed on this connection.
    pub fn is_secured(&self) -> bool {
        self.secured
    }

    /// The octets read after the STARTTLS / DHCPTLS frame (the start of the TLS handshake):
    /// the shell feeds them to TLS before anything it reads from the socket.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.frame_since = None;
        self.rbuf.split().to_vec()
    }

    /// The TLS handshake completed at `now`: the connection is secured, and reads again (the
    /// idle clock starts now).
    pub fn handle_tls_up(&mut self, now: I) {
        self.negotiating = false;
        self.secured = true;
        self.last_done = now;
        self.idle_since = now;
    }

    /// The TLS handshake failed (or ran out of time): the connection closes.
    pub fn handle_tls_failed(&mut self) {
        self.negotiating = false;
        self.close = Some(Close::TlsFailed);
    }

    /// The listener family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// True when another frame may be read: not closing, and a query slot is free (never read
    /// more queries than can run at once).
    pub fn poll_read(&self) -> bool {
        self.close.is_none() && !self.negotiating && self.outstanding < self.limits.max_queries
    }

    /// True when no query is outstanding (no slot held, no query running).
    pub fn is_quiet(&self) -> bool {
        self.running.is_empty() && self.outstanding == 0
    }

    /// Queries read whose last message is not yet written.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Why the connection closes, once it does.
    pub fn poll_close(&self) -> Option<Close> {
        self.close
    }

    /// The reader starts waiting for the next message at `now` (once [`Connection::poll_read`]
    /// allows it). Octets of a frame already buffered start the frame clock now; otherwise the
    /// idle clock runs from now, or from when the last query finished if that is later.
    pub fn start_read(&mut self, now: I) {
        self.reading = true;
        self.frame_since = (!self.rbuf.is_empty()).then_some(now);
        self.idle_since = now;
    }

    /// Octets arrived at `now`.
    pub fn handle_read(&mut self, now: I, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.rbuf.extend_from_slice(data);
        self.frame_since.get_or_insert(now);
    }

    /// The next complete message, if the buffer holds one (a bad frame closes the connection
    /// with [`Close::ProtocolError`]). Call [`Connection::handle_message`] with it.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        if self.close.is_some() {
            return None;
        }
        match decode_frame(&self.rbuf) {
            Ok(Frame::Complete { msg, consumed }) => {
                let msg = msg.to_vec();
                self.rbuf.advance(consumed);
                self.reading = false;
                self.frame_since = None;
                Some(msg)
            }
            Ok(Frame::NeedMore) => None,
            Err(_) => {
                self.close = Some(Close::ProtocolError);
                None
            }
        }
    }

    /// Decides what one message read at `now` becomes.
    pub fn handle_message(&mut self, now: I, msg: &[u8], env: &Env<'_>) -> Step {
        let first = !std::mem::replace(&mut self.started, true);
        let mut policy = *env.policy;
        if super::is_tls_request(self.family, msg) {
            if !first || self.secured {
                // RFC 7653 §6.2.2, RFC 7724 §8.1: only the first message may ask for TLS.
                self.close = Some(Close::ProtocolError);
                return Step::Close;
            }
            if policy.tls != super::TlsMode::Off {
                let Some(bytes) = super::tls_accept(self.family, msg, env.identity, env.unix_now)
                else {
                    self.close = Some(Close::ProtocolError);
                    return Step::Close;
                };
                self.negotiating = true;
                self.last_done = now;
                return Step::StartTls(bytes);
            }
            // `tls = "off"`: TLSConnectionRefused (below, from `on_message`).
            return match self.decide(now, msg, env, &policy) {
                Step::Reply(bytes) => Step::Refused(bytes, Refusal::TlsNotConfigured),
                other => other,
            };
        }
        if policy.tls == super::TlsMode::Required && !self.secured {
            // Secure mode (RFC 7653 §9.1, RFC 7724 §8.1): close any connection not under TLS.
            self.close = Some(Close::TlsRequired);
            return Step::Close;
        }
        if self.secured {
            // Active leasequery over TLS needs no insecure-mode switch.
            policy.allow_insecure_active = true;
        }
        let plain_active = policy.active
            && !policy.allow_insecure_active
            && super::is_active_query(self.family, msg);
        match self.decide(now, msg, env, &policy) {
            Step::Reply(bytes) if plain_active && self.close == Some(Close::AfterReply) => {
                Step::Refused(bytes, Refusal::PlainActive)
            }
            other => other,
        }
    }

    /// What one message becomes under `policy` (TLS already decided).
    fn decide(&mut self, now: I, msg: &[u8], env: &Env<'_>, policy: &super::Policy) -> Step {
        // One active query per connection, alone (RFC 7653 §9.4, RFC 7724 §8.3): any other
        // query beside it is refused with NotAllowed on its own xid.
        if self.active.is_some() {
            if let Some(bytes) = self.busy(msg, env) {
                return self.reply(bytes);
            }
        }
        let action = super::on_message(
            self.family,
            msg,
            env.identity,
            policy,
            env.links,
            env.unix_now,
        );
        match action {
            Action::Close => {
                self.close = Some(Close::ProtocolError);
                Step::Close
            }
            Action::Drop => self.discard(now, Step::Drop),
            Action::Reply { bytes, close } => {
                if close {
                    self.close = Some(Close::AfterReply);
                }
                self.reply(bytes)
            }
            Action::Active(plan) => {
                if !self.running.is_empty() {
                    return match self.busy(msg, env) {
                        Some(bytes) => self.reply(bytes),
                        None => self.discard(now, Step::Ignore),
                    };
                }
                self.running.insert(plan.xid);
                self.active = Some(plan.xid);
                self.discard(now, Step::Active(plan))
            }
            Action::Scan(plan) => {
                if !self.running.insert(plan.xid) {
                    // Scenario 23: any answer would carry the same xid as the running stream.
                    return self.discard(now, Step::Duplicate);
                }
                self.outstanding += 1;
                Step::Scan(plan, BulkStream::new(self.limits.shards))
            }
        }
    }

    /// The NotAllowed answer to a query beside a running one.
    fn busy(&self, msg: &[u8], env: &Env<'_>) -> Option<Vec<u8>> {
        super::active::busy_reply(self.family, msg, env.identity, env.unix_now)
    }

    /// A reply that is the query's last message: it holds a slot until it is written.
    fn reply(&mut self, bytes: Vec<u8>) -> Step {
        self.outstanding += 1;
        Step::Reply(bytes)
    }

    /// A message that holds no slot: it is finished the moment it is read.
    fn discard(&mut self, now: I, step: Step) -> Step {
        self.last_done = now;
        step
    }

    /// A bulk query's stream ended (its last message is queued, or the socket is gone): its xid
    /// is free again. Its slot is held until [`Connection::handle_last_written`].
    pub fn handle_stream_end(&mut self, xid: u32) {
        self.running.remove(&xid);
    }

    /// The active query ended.
    pub fn handle_active_end(&mut self, xid: u32) {
        self.running.remove(&xid);
        if self.active == Some(xid) {
            self.active = None;
        }
    }

    /// A query's last message left the writer at `now` (written, or dropped because the socket
    /// is gone): its slot is free, and the idle clock counts from now.
    pub fn handle_last_written(&mut self, now: I) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.last_done = now;
    }

    /// The writer began a write at `now`.
    pub fn handle_write_start(&mut self, now: I) {
        self.write_since = Some(now);
    }

    /// The write in progress completed. After [`Close::SendTimeout`] it changes nothing.
    pub fn handle_write_done(&mut self) {
        self.write_since = None;
    }

    /// The deadline the reader waits for: the frame clock, or the idle check. `None` while the
    /// reader does not read, or when the deadline is past what the moment type holds.
    pub fn poll_read_timeout(&self) -> Option<I> {
        if !self.reading || self.close.is_some() {
            return None;
        }
        self.read_since().after(self.limits.data_timeout)
    }

    /// The deadline of the write in progress.
    pub fn poll_write_timeout(&self) -> Option<I> {
        if self.close == Some(Close::SendTimeout) {
            return None;
        }
        self.write_since?.after(self.limits.data_timeout)
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<I> {
        match (self.poll_read_timeout(), self.poll_write_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The time is `now`: a deadline reached closes the connection (or restarts the idle
    /// clock when a query is outstanding). Returns the close this call caused, if any (the
    /// caller counts it). The shell's reader and writer each ask for their own side
    /// ([`Connection::handle_read_timeout`], [`Connection::handle_write_timeout`]).
    pub fn handle_timeout(&mut self, now: I) -> Option<Close> {
        self.handle_write_timeout(now)
            .or_else(|| self.handle_read_timeout(now))
    }

    /// The write side of [`Connection::handle_timeout`]: a write blocked for T closes the
    /// connection, whatever else closed it before (its queued messages are dropped).
    pub fn handle_write_timeout(&mut self, now: I) -> Option<Close> {
        if self.poll_write_timeout().is_some_and(|d| now >= d) {
            self.close = Some(Close::SendTimeout);
            return self.close;
        }
        None
    }

    /// The read side of [`Connection::handle_timeout`]: the frame clock and the idle check.
    pub fn handle_read_timeout(&mut self, now: I) -> Option<Close> {
        if self.close.is_some() || self.poll_read_timeout().is_none_or(|d| now < d) {
            return None;
        }
        if self.frame_since.is_some() {
            self.close = Some(Close::FrameTimeout);
        } else if self.is_quiet() {
            self.close = Some(Close::Idle);
        } else {
            // A query is outstanding (not idle; a blocked send is the writer's deadline): the
            // idle clock starts again.
            self.idle_since = now;
        }
        self.close
    }

    fn read_since(&self) -> I {
        match self.frame_since {
            Some(t) => t,
            None => self.idle_since.max(self.last_done),
        }
    }
}

/// The shape of one bulk query's reply stream, gathered from every shard's chunks: which chunk
/// carries the first message, how many records went out, when every shard is done, and the
/// message that ends the stream.
#[derive(Debug, Clone)]
pub struct BulkStream {
    shards: usize,
    finished: usize,
    total: u64,
    replied: bool,
}

/// What to do with one chunk of records.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkStep {
    /// The stream is cut short (a shard failed, or the chunk is not what the plan encodes):
    /// end it with [`BulkStream::last_message`] `(cut = true)`.
    Cut,
    /// Write `first` (the promoted first message) if any, then the chunk from `skip` on.
    Write { first: Option<Vec<u8>>, skip: usize },
}

impl BulkStream {
    /// A stream gathered from `shards` shards.
    pub fn new(shards: usize) -> BulkStream {
        BulkStream {
            shards,
            finished: 0,
            total: 0,
            replied: false,
        }
    }

    /// A chunk of `records` encoded records (non-first messages) from one shard; `done` when it
    /// is that shard's last, `failed` when the shard could not finish. The first record of the
    /// stream is promoted to the first message by the plan's encoder; the others are written
    /// as they are.
    pub fn handle_chunk(
        &mut self,
        plan: &ScanPlan,
        buf: &[u8],
        records: u32,
        done: bool,
        failed: bool,
    ) -> ChunkStep {
        if failed {
            return ChunkStep::Cut;
        }
        let mut first = None;
        let mut skip = 0;
        if records > 0 && !self.replied {
            let Some((msg, consumed)) = plan.promote_first(buf) else {
                return ChunkStep::Cut;
            };
            first = Some(msg);
            skip = consumed;
            self.replied = true;
        }
        self.total += u64::from(records);
        if done {
            self.finished += 1;
        }
        ChunkStep::Write { first, skip }
    }

    /// True when every shard sent its last chunk.
    pub fn is_complete(&self) -> bool {
        self.finished >= self.shards
    }

    /// Records sent so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True once the first message went out.
    pub fn replied(&self) -> bool {
        self.replied
    }

    /// The message that ends the stream at Unix time `now`: complete, DONE (or a lone REPLY
    /// when nothing matched); cut short, QueryTerminated in a DONE after a first message, else
    /// in the REPLY.
    pub fn last_message(&self, plan: &ScanPlan, cut: bool, now: u32) -> Vec<u8> {
        if cut {
            plan.terminated(self.replied, now)
        } else {
            plan.finish(self.total, now)
        }
    }
}
