//! Requestor connections, the glommio shell around the sans-io
//! [`Connection`](crate::session::connection::Connection): accept (limits, allow-list), read
//! octets and hand them to the connection, carry out what it decides (run bulk queries, the
//! origin side of the scatter-gather; start active queries), and write replies through one
//! writer task per connection. Sockets, tasks, timers and mail live here; every rule of the
//! connection (parallel queries, transaction ids, the active query alone, the stream shape,
//! the deadlines) lives in `session::connection`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use tracing::debug;

use super::io::{ConnIo, Signals};
use super::mail::{Mail, QueryKey};
use super::{unix_now, ShardCtx};
use crate::session::connection::{
    BulkStream, ChunkStep, Close, Connection, Env, Limits, Refusal, Step, READ_CHUNK,
};
use crate::session::Form;
use crate::session::{self, ScanPlan, TlsMode};

pub use crate::session::Family;

/// Accepts connections on one listener until the task is cancelled.
///
/// A failed accept is retried after 10 ms; it is logged at WARN, at most once per 10 s per
/// listener and shard (with the count of failures since the last line). Running out of file
/// descriptors (EMFILE / ENFILE) says so, with the open-file limit: the connections wait in the
/// listen backlog until descriptors are free again.
pub(super) async fn accept_loop(ctx: Rc<ShardCtx>, listener: TcpListener, family: Family) {
    const LOG_EVERY: Duration = Duration::from_secs(10);
    fn os_error(e: &glommio::GlommioError<()>) -> Option<i32> {
        match e {
            glommio::GlommioError::IoError(io) => io.raw_os_error(),
            glommio::GlommioError::EnhancedIoError { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
    // Read now: once descriptors run out, /proc/self/limits cannot be opened either.
    let fd_limit = crate::config::open_file_limit()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut last_log: Option<std::time::Instant> = None;
    let mut failed_since_log = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                failed_since_log += 1;
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    let local = listener.local_addr().ok();
                    let listen = local.map(|a| a.to_string()).unwrap_or_default();
                    if matches!(os_error(&e), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        tracing::warn!(
                            shard = ctx.id,
                            listen,
                            failures = failed_since_log,
                            open_file_limit = fd_limit.as_str(),
                            max_connections = ctx.shared.config.max_connections,
                            "accept failed: out of file descriptors ({e}); connections wait \
                             in the backlog (raise the open-file limit or lower max_connections)"
                        );
                    } else {
                        tracing::warn!(
                            shard = ctx.id,
                            listen,
                            failures = failed_since_log,
                            "accept failed: {e}"
                        );
                    }
                    last_log = Some(std::time::Instant::now());
                    failed_since_log = 0;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Test-only (cargo feature `fault-injection`): the shard that accepts a connection
        // panics, as a bug in a shard would (the process must exit, not limp on).
        #[cfg(feature = "fault-injection")]
        if std::env::var_os("LEASEQUERYD_FAULT_PANIC_ON_ACCEPT").is_some() {
            panic!("fault injection: shard {} panics on accept", ctx.id);
        }
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let shared = &ctx.shared;
        if !shared.allowed(peer.ip()) {
            ctx.stats()
                .refused_not_allowed
                .fetch_add(1, Ordering::Relaxed);
            ctx.drops.note(super::drops::NOT_ALLOWED, peer);
            drop(stream);
            continue;
        }
        // RFC 6926 §8.1: accept connections over the limit, then close them at once.
        let open = shared.connections.fetch_add(1, Ordering::AcqRel);
        if open >= shared.config.max_connections {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            ctx.stats()
                .refused_over_limit
                .fetch_add(1, Ordering::Relaxed);
            ctx.drops.note(super::drops::OVER_LIMIT, peer);
            drop(stream);
            continue;
        }
        ctx.stats()
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        ctx.stats().connections_open.fetch_add(1, Ordering::Relaxed);
        let ctx2 = ctx.clone();
        glommio::spawn_local(async move {
            let _ = stream.set_nodelay(true);
            Conn::serve(ctx2.clone(), stream, peer, family).await;
            ctx2.stats()
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            ctx2.shared.connections.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
}

/// One buffer for the writer task: `buf[skip..]` is written, then the buffer goes back to the
/// scanner it came from as a credit (when `credit` is set).
///
/// What the queue holds is bounded although its type is not: a query holds one of the
/// connection's `max_queries_per_connection` slots from the moment its frame is read until its
/// last message leaves this queue (written, or dropped because the socket is gone), and while it
/// holds it the query has at most `shards x credits_per_shard` scanner buffers (every chunk is
/// written into a credit), its promoted first message and its last message queued. An active
/// query holds no slot; its sends are bounded by its own backlog (`shard::active`).
struct Out {
    buf: Vec<u8>,
    skip: usize,
    credit: Option<(usize, QueryKey)>,
    /// On a query's last message (or a lone error reply): the query's slot, given back when the
    /// writer is done with this buffer (RFC 5460 §7.3: a query is finished when its last octet
    /// is written, not when its scan ends).
    _slot: Option<Slot>,
}

/// One of a connection's parallel-query slots: when it is dropped the connection learns that
/// the query's last message left the writer (and the reader, if it waits for a slot, wakes).
struct Slot {
    state: Rc<RefCell<Connection>>,
    freed: Rc<LocalSender<()>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.borrow_mut().handle_last_written(Instant::now());
        let _ = self.freed.try_send(());
    }
}

/// The shell of one requestor connection, shared by its reader, writer and query tasks. The
/// decisions are the sans-io `state`'s; it is borrowed only between awaits.
struct Conn {
    ctx: Rc<ShardCtx>,
    out: LocalSender<Out>,
    state: Rc<RefCell<Connection>>,
    /// A token each time a slot is freed.
    freed_tx: Rc<LocalSender<()>>,
    freed_rx: LocalReceiver<()>,
    /// Shared with the writer: set when a write failed or timed out.
    signals: Rc<Signals>,
    /// Closed when the reader stops (an active query ends with it).
    reader_done: Rc<Semaphore>,
    /// The requestor's address (for the drop warnings).
    peer: SocketAddr,
    /// The listener the connection came in on.
    family: Family,
}

impl Conn {
    async fn serve(ctx: Rc<ShardCtx>, mut stream: TcpStream, peer: SocketAddr, family: Family) {
        let (out_tx, out_rx) = local_channel::new_unbounded::<Out>();
        let (freed_tx, freed_rx) = local_channel::new_unbounded::<()>();
        let limits = Limits {
            data_timeout: ctx.shared.config.data_timeout(),
            max_queries: ctx.shared.config.max_queries_per_connection,
            shards: ctx.shared.shards,
        };
        let state = Rc::new(RefCell::new(Connection::new(
            family,
            limits,
            Instant::now(),
        )));
        let conn = Rc::new(Conn {
            ctx: ctx.clone(),
            out: out_tx,
            state,
            freed_tx: Rc::new(freed_tx),
            freed_rx,
            signals: Rc::new(Signals::new()),
            reader_done: Rc::new(Semaphore::new(0)),
            peer,
            family,
        });
        if ctx.shared.config.tls == TlsMode::Off {
            conn.run(stream, None, out_rx, peer, false).await;
            return;
        }
        // With TLS on, the first message is read on the whole socket: STARTTLS / DHCPTLS
        // switches the connection to TLS before the reader and the writer split it.
        let Some(msg) = conn.next_message(&mut stream).await else {
            return;
        };
        match conn.handle(&msg) {
            Step::StartTls(answer) => {
                let Some(tls) = conn.start_tls(stream, answer, peer).await else {
                    return;
                };
                // One DHCPv4 message per TLS record on TCP 67 (RFC 7724 §5.1).
                let per_message = family == Family::V4;
                conn.run(tls, None, out_rx, peer, per_message).await;
            }
            step => conn.run(stream, Some(step), out_rx, peer, false).await,
        }
    }

    /// Serves the connection on `stream` (plain TCP, or TLS after STARTTLS) until it closes:
    /// the reader here (starting with `first`, a step already decided), a writer task that
    /// writes `out_rx` (every framed message on its own when `per_message`).
    async fn run<S>(
        self: Rc<Self>,
        stream: S,
        first: Option<Step>,
        out_rx: LocalReceiver<Out>,
        peer: SocketAddr,
        per_message: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (reader, writer) = futures_lite::io::split(stream);
        let writer_task = glommio::spawn_local(writer_loop(
            self.ctx.clone(),
            self.signals.clone(),
            self.state.clone(),
            peer,
            writer,
            out_rx,
            per_message,
        ));
        self.clone().read_loop(reader, first).await;
        self.reader_done.close();
        // Wait for running queries to finish and their last messages to be written (RFC 5460
        // §7.4: finish outstanding requests after the peer closed), then let the writer stop.
        while self.state.borrow().outstanding() > 0 {
            if self.freed_rx.recv().await.is_none() {
                break;
            }
        }
        drop(self);
        writer_task.await;
        debug!(%peer, "connection closed");
    }

    /// Writes the answer accepting STARTTLS / DHCPTLS in plain, then runs the TLS handshake
    /// on the socket, fed first with the octets already read after the request. Both within
    /// `tls_handshake_timeout`; a failure is counted by its reason and closes the connection.
    async fn start_tls(
        &self,
        mut stream: TcpStream,
        answer: Vec<u8>,
        peer: SocketAddr,
    ) -> Option<futures_rustls::server::TlsStream<Prefixed<TcpStream>>> {
        let ctx = &self.ctx;
        let stats = ctx.stats();
        let Some(config) = ctx.shared.tls_config() else {
            self.state.borrow_mut().handle_tls_failed();
            return None;
        };
        let wait = Duration::from_secs(ctx.shared.config.tls_handshake_timeout);
        let handshake = async {
            stream.write_all(&answer).await?;
            stream.flush().await?;
            let pending = self.state.borrow_mut().take_pending();
            let io = Prefixed {
                pre: pending,
                at: 0,
                io: stream,
            };
            futures_rustls::TlsAcceptor::from(config).accept(io).await
        };
        let stop = async {
            let _ = ctx.shutdown.acquire(1).await;
            Err(std::io::Error::other("shutting down"))
        };
        let res = glommio::timer::timeout(wait, async {
            Ok(futures_lite::future::or(handshake, stop).await)
        })
        .await;
        let failure = match res {
            Ok(Ok(mut tls)) => {
                // Each write hands rustls a whole message or chunk (so a message is never
                // split across records by a buffer limit); the writer flushes after every
                // buffer, which bounds what rustls holds.
                tls.get_mut().1.set_buffer_limit(None);
                stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                self.state.borrow_mut().handle_tls_up(Instant::now());
                debug!(%peer, "TLS established");
                return Some(tls);
            }
            Ok(Err(e)) => {
                debug!(%peer, "TLS handshake failed: {e}");
                crate::tls::Failure::of(&e)
            }
            Err(_) => {
                debug!(%peer, "TLS handshake not done within tls_handshake_timeout");
                crate::tls::Failure::Timeout
            }
        };
        use crate::tls::Failure;
        let counter = match failure {
            Failure::NoCertificate => &stats.tls_failed_no_certificate,
            Failure::UnknownCa => &stats.tls_failed_unknown_ca,
            Failure::BadCertificate => &stats.tls_failed_bad_certificate,
            Failure::NotAllowed => &stats.tls_failed_not_allowed,
            Failure::Timeout => &stats.tls_failed_timeout,
            Failure::Protocol => &stats.tls_failed_protocol,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.state.borrow_mut().handle_tls_failed();
        None
    }

    /// What one message read now becomes (the sans-io connection decides).
    fn handle(&self, msg: &[u8]) -> Step {
        let ctx = &self.ctx;
        ctx.stats().queries.fetch_add(1, Ordering::Relaxed);
        let policy = ctx.shared.config.session_policy();
        let env = Env {
            identity: &ctx.shared.identity,
            policy: &policy,
            links: &ctx.shared.links,
            unix_now: unix_now(),
        };
        self.state
            .borrow_mut()
            .handle_message(Instant::now(), msg, &env)
    }

    async fn read_loop<R: AsyncRead + Unpin>(self: Rc<Self>, mut reader: R, first: Option<Step>) {
        let ctx = &self.ctx;
        let mut first = first;
        loop {
            let step = match first.take() {
                Some(step) => step,
                None => {
                    // Never read more queries than we can run at once (RFC 5460 §7.3, RFC 6926
                    // §8.4).
                    loop {
                        let (may_read, closing) = {
                            let st = self.state.borrow();
                            (st.poll_read(), st.poll_close().is_some())
                        };
                        if may_read {
                            break;
                        }
                        if closing || self.freed_rx.recv().await.is_none() {
                            return;
                        }
                    }
                    let Some(msg) = self.next_message(&mut reader).await else {
                        return;
                    };
                    self.handle(&msg)
                }
            };
            match step {
                Step::Close | Step::StartTls(_) => {
                    let stats = ctx.stats();
                    if self.state.borrow().poll_close() == Some(Close::TlsRequired) {
                        stats
                            .tls_refused_plain_required
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.closed_protocol_error.fetch_add(1, Ordering::Relaxed);
                        ctx.drops.note(super::drops::PROTOCOL_ERROR, self.peer);
                    }
                    return;
                }
                Step::Drop => {
                    ctx.stats().queries_dropped.fetch_add(1, Ordering::Relaxed);
                    ctx.drops.note(super::drops::QUERY_DROPPED, self.peer);
                }
                Step::Duplicate => {
                    ctx.stats()
                        .queries_duplicate_xid
                        .fetch_add(1, Ordering::Relaxed);
                }
                Step::Ignore => {}
                Step::Refused(bytes, why) => {
                    let stats = ctx.stats();
                    stats.queries_error.fetch_add(1, Ordering::Relaxed);
                    match why {
                        Refusal::TlsNotConfigured => &stats.tls_refused_not_configured,
                        Refusal::PlainActive => &stats.tls_refused_plain_active,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    self.send_last(bytes, Some(self.slot()));
                    if self.state.borrow().poll_close().is_some() {
                        return;
                    }
                }
                Step::Reply(bytes) => {
                    ctx.stats().queries_error.fetch_add(1, Ordering::Relaxed);
                    self.send_last(bytes, Some(self.slot()));
                    if self.state.borrow().poll_close().is_some() {
                        return;
                    }
                }
                Step::Active(plan) => {
                    let c = match self.family {
                        Family::V4 => &ctx.stats().queries_active_v4,
                        _ => &ctx.stats().queries_active_v6,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    self.start_active(plan)
                }
                Step::Scan(plan, stream) => {
                    let received = Instant::now();
                    let conn = self.clone();
                    let slot = self.slot();
                    let st = ctx.stats();
                    match plan.form {
                        Form::V6(_) => &st.queries_bulk_v6,
                        Form::V4(_) => &st.queries_bulk_v4,
                        Form::Dhcp4o6 { .. } => &st.queries_bulk_dhcp4o6,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    glommio::spawn_local(async move {
                        let xid = plan.xid;
                        conn.run_bulk(Arc::from(plan), stream, slot, received).await;
                        conn.state.borrow_mut().handle_stream_end(xid);
                    })
                    .detach();
                }
            }
        }
    }

    /// The slot of a query the connection just accepted (see [`Step::Reply`], [`Step::Scan`]).
    fn slot(&self) -> Slot {
        Slot {
            state: self.state.clone(),
            freed: self.freed_tx.clone(),
        }
    }

    /// The next complete message, or `None` when the connection is to close: the peer closed
    /// (a partial frame is discarded, scenario 2), a bad frame (scenario 1), shutdown, the
    /// writer failed, or a deadline of the connection ran out (the frame clock, or idleness).
    async fn next_message<R: AsyncRead + Unpin>(&self, reader: &mut R) -> Option<Vec<u8>> {
        self.state.borrow_mut().start_read(Instant::now());
        loop {
            if self.signals.is_broken() {
                return None;
            }
            let (msg, close, deadline) = {
                let mut st = self.state.borrow_mut();
                let msg = st.poll_message();
                (msg, st.poll_close(), st.poll_read_timeout())
            };
            if msg.is_some() {
                return msg;
            }
            if let Some(close) = close {
                if close == Close::ProtocolError {
                    self.ctx
                        .stats()
                        .closed_protocol_error
                        .fetch_add(1, Ordering::Relaxed);
                    self.ctx.drops.note(super::drops::PROTOCOL_ERROR, self.peer);
                }
                return None;
            }
            match self.read_some(reader, deadline).await {
                ReadOutcome::Data(n) if n > 0 => {}
                ReadOutcome::TimedOut => {
                    let closed = self.state.borrow_mut().handle_read_timeout(Instant::now());
                    let stats = self.ctx.stats();
                    match closed {
                        Some(Close::FrameTimeout) => {
                            stats.closed_frame_timeout.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                        Some(Close::Idle) => {
                            stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                        Some(_) => return None,
                        None => {}
                    }
                }
                _ => return None,
            }
        }
    }

    /// Reads more octets into the connection, waiting at most until `deadline`, shutdown, or
    /// the connection broken.
    async fn read_some<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
        deadline: Option<Instant>,
    ) -> ReadOutcome {
        let ctx = &self.ctx;
        let mut tmp = [0u8; READ_CHUNK];
        let read = async {
            let stop = ctx.shutdown.acquire(1);
            let dead = self.signals.dead.acquire(1);
            futures_lite::future::or(async { Some(reader.read(&mut tmp).await) }, async {
                // Shutdown, or the connection was broken (an active query closing it).
                let _ = futures_lite::future::or(stop, dead).await;
                None
            })
            .await
        };
        let res = match deadline {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                match glommio::timer::timeout(wait, async { Ok(read.await) }).await {
                    Ok(r) => r,
                    Err(_) => return ReadOutcome::TimedOut,
                }
            }
            None => read.await,
        };
        match res {
            Some(Ok(n)) => {
                self.state
                    .borrow_mut()
                    .handle_read(Instant::now(), &tmp[..n]);
                ReadOutcome::Data(n)
            }
            Some(Err(_)) => ReadOutcome::Closed,
            None => ReadOutcome::Stop,
        }
    }

    /// Starts the active query's driver (`shard::active::run`).
    fn start_active(self: &Rc<Self>, plan: Box<session::active::ActivePlan>) {
        let xid = plan.xid;
        let conn = self.clone();
        let sender = self.clone();
        let io = ConnIo {
            send: Box::new(move |buf, credit| {
                let _ = sender.out.try_send(Out {
                    buf,
                    skip: 0,
                    credit,
                    _slot: None,
                });
            }),
            dead: self.signals.clone(),
            reader_done: self.reader_done.clone(),
        };
        glommio::spawn_local(async move {
            super::active::run(conn.ctx.clone(), Arc::from(plan), io).await;
            conn.state.borrow_mut().handle_active_end(xid);
        })
        .detach();
    }

    /// Queues bytes for the writer.
    fn send(&self, bytes: Vec<u8>) {
        self.send_last(bytes, None);
    }

    /// Queues a query's last message, with the query's slot (given back once it is written).
    fn send_last(&self, bytes: Vec<u8>, slot: Option<Slot>) {
        let _ = self.out.try_send(Out {
            buf: bytes,
            skip: 0,
            credit: None,
            _slot: slot,
        });
    }

    /// The origin side of a bulk query: scatter the scan, gather chunks; the stream's shape
    /// (which message is first, how it ends) is the [`BulkStream`]'s.
    async fn run_bulk(
        self: &Rc<Self>,
        plan: Arc<ScanPlan>,
        mut stream: BulkStream,
        slot: Slot,
        received: Instant,
    ) {
        let mut first_binding = true;
        let ctx = &self.ctx;
        let shards = ctx.shared.shards;
        let key = ctx.new_query_key();
        let (tx, rx): (LocalSender<Mail>, LocalReceiver<Mail>) = local_channel::new_unbounded();
        ctx.routes.borrow_mut().insert(key, tx);
        let credits = ctx.shared.config.credits_per_shard;
        let chunk = ctx.shared.config.chunk_size;
        for s in 0..shards {
            ctx.post(
                s,
                Mail::Scan {
                    key,
                    plan: plan.clone(),
                },
            )
            .await;
            for _ in 0..credits {
                ctx.post(
                    s,
                    Mail::Credit {
                        key,
                        buf: Vec::with_capacity(chunk),
                    },
                )
                .await;
            }
        }
        let outcome = loop {
            if stream.is_complete() {
                break Ok(());
            }
            let next = futures_lite::future::or(async { Some(rx.recv().await) }, async {
                let stop = ctx.shutdown.acquire(1);
                let dead = self.signals.dead.acquire(1);
                futures_lite::future::or(async { stop.await.is_ok() }, async {
                    dead.await.is_ok()
                })
                .await;
                None
            })
            .await;
            let Some(Some(Mail::Chunk {
                buf,
                records,
                done,
                from,
                failed,
                ..
            })) = next
            else {
                break Err(());
            };
            if self.signals.is_broken() {
                break Err(());
            }
            if first_binding && records > 0 {
                first_binding = false;
                ctx.metrics().bulk_first_binding.observe(received.elapsed());
            }
            let skip = match stream.handle_chunk(&plan, &buf, records, done, failed) {
                ChunkStep::Cut => break Err(()),
                ChunkStep::Write { first, skip } => {
                    if let Some(first) = first {
                        self.send(first);
                    }
                    skip
                }
            };
            let credit = if done {
                None
            } else {
                Some((from as usize, key))
            };
            if skip < buf.len() || credit.is_some() {
                let _ = self.out.try_send(Out {
                    buf,
                    skip,
                    credit,
                    _slot: None,
                });
            }
        };
        ctx.routes.borrow_mut().remove(&key);
        ctx.stats()
            .records_sent
            .fetch_add(stream.total(), Ordering::Relaxed);
        let st = ctx.stats();
        match plan.form {
            Form::V6(_) => &st.records_sent_v6,
            Form::V4(_) => &st.records_sent_v4,
            Form::Dhcp4o6 { .. } => &st.records_sent_dhcp4o6,
        }
        .fetch_add(stream.total(), Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                ctx.stats().bulk_completed.fetch_add(1, Ordering::Relaxed);
                let last = stream.last_message(&plan, false, unix_now());
                self.send_last(last, Some(slot));
            }
            Err(()) => {
                for s in 0..shards {
                    ctx.post(s, Mail::Cancel { key }).await;
                }
                ctx.stats().bulk_terminated.fetch_add(1, Ordering::Relaxed);
                if !self.signals.is_broken() {
                    let last = stream.last_message(&plan, true, unix_now());
                    self.send_last(last, Some(slot));
                }
            }
        }
        ctx.metrics().bulk_duration.observe(received.elapsed());
    }
}

/// How one write of the writer task ended.
enum WriteEnd {
    Written,
    TimedOut,
    Failed(std::io::Error),
}

enum ReadOutcome {
    Data(usize),
    Closed,
    Stop,
    TimedOut,
}

/// Writes queued buffers in order; returns each scanner buffer as a credit once written. A
/// write blocked for BULK_LQ_DATA_TIMEOUT breaks the connection (the deadline is the
/// connection's: `handle_write_start`, `poll_write_timeout`, `handle_write_timeout`).
///
/// With `per_message` (DHCPv4 over TLS, RFC 7724 §5.1) every framed message of a buffer is
/// handed to TLS in its own write, so it is its own TLS record (rustls seals each write
/// separately and never coalesces two); the records of one buffer leave in one flush. Else a
/// buffer is written whole (over TLS: coalesced into full records, issue 15 part 5).
async fn writer_loop<W: AsyncWrite + Unpin>(
    ctx: Rc<ShardCtx>,
    signals: Rc<Signals>,
    state: Rc<RefCell<Connection>>,
    peer: SocketAddr,
    mut writer: W,
    rx: LocalReceiver<Out>,
    per_message: bool,
) {
    while let Some(out) = rx.recv().await {
        if signals.is_broken() {
            // The socket is gone: drop what is queued (queries stop on `dead`).
            continue;
        }
        let data = &out.buf[out.skip.min(out.buf.len())..];
        state.borrow_mut().handle_write_start(Instant::now());
        // In a block: the write borrows the buffer, which goes back as a credit below.
        let res = {
            let mut write = std::pin::pin!(async {
                let res = if per_message {
                    write_per_message(&mut writer, data).await
                } else {
                    writer.write_all(data).await
                };
                let res = match res {
                    Ok(()) => writer.flush().await,
                    e => e,
                };
                match res {
                    Ok(()) => WriteEnd::Written,
                    Err(e) => WriteEnd::Failed(e),
                }
            });
            loop {
                let deadline = state.borrow().poll_write_timeout();
                // The deadline is checked before the write is polled again: when the timer fires,
                // the poll it causes may find room in the socket that readiness did not report (the
                // kernel accepts data below the POLLOUT threshold), and a write rescued that way
                // would let a requestor that reads nothing hold the connection for 2T, not T.
                let res = futures_lite::future::or(
                    async {
                        match deadline {
                            Some(d) => {
                                glommio::timer::sleep(d.saturating_duration_since(Instant::now()))
                                    .await
                            }
                            None => futures_lite::future::pending::<()>().await,
                        }
                        WriteEnd::TimedOut
                    },
                    // A connection broken elsewhere (an active query's send timeout) abandons the
                    // write.
                    futures_lite::future::or(write.as_mut(), async {
                        let _ = signals.dead.acquire(1).await;
                        WriteEnd::Failed(std::io::Error::other("connection broken"))
                    }),
                )
                .await;
                if !matches!(res, WriteEnd::TimedOut) {
                    break res;
                }
                let closed = state.borrow_mut().handle_write_timeout(Instant::now());
                if closed == Some(Close::SendTimeout) {
                    break res;
                }
                // The timer fired before the connection's deadline: wait on.
            }
        };
        state.borrow_mut().handle_write_done();
        match res {
            WriteEnd::Written => {}
            WriteEnd::TimedOut => {
                debug!(%peer, "send blocked for BULK_LQ_DATA_TIMEOUT: connection closed");
                ctx.stats()
                    .closed_send_timeout
                    .fetch_add(1, Ordering::Relaxed);
                signals.break_now();
                continue;
            }
            WriteEnd::Failed(e) => {
                debug!(%peer, "write failed: {e}");
                signals.break_now();
                continue;
            }
        }
        ctx.stats()
            .bytes_sent
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Some((shard, key)) = out.credit {
            let mut buf = out.buf;
            buf.clear();
            ctx.post(shard, Mail::Credit { key, buf }).await;
        }
    }
    let _ = writer.close().await;
}

/// Writes `data` (whole framed messages) one framed message per write.
async fn write_per_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut data: &[u8],
) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = match data {
            [a, b, ..] => 2 + usize::from(u16::from_be_bytes([*a, *b])),
            _ => data.len(),
        };
        let (msg, rest) = data.split_at(n.min(data.len()));
        writer.write_all(msg).await?;
        data = rest;
    }
    Ok(())
}

/// A stream whose first octets are `pre` (read before it was handed over), then `io`'s: the
/// octets a requestor sent after STARTTLS in the same segment (its ClientHello) reach TLS.
pub(super) struct Prefixed<S> {
    pre: Vec<u8>,
    at: usize,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.at < this.pre.len() {
            let n = buf.len().min(this.pre.len() - this.at);
            buf[..n].copy_from_slice(&this.pre[this.at..this.at + n]);
            this.at += n;
            if this.at == this.pre.len() {
                this.pre = Vec::new();
                this.at = 0;
            }
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_close(cx)
    }
}
