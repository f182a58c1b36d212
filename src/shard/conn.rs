//! Requestor connections: accept (limits, allow-list), read frames one at a time, hand each
//! message to the sans-io session, run bulk queries (the origin side of the scatter-gather), and
//! write replies through one writer task per connection.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::{Semaphore, StaticPermit};
use hashbrown::HashSet;
use tracing::debug;

use super::io::{ConnIo, Signals};
use super::mail::{Mail, QueryKey};
use super::{unix_now, ShardCtx};
use crate::proto::framing::{decode_frame, Frame};
use crate::session::{self, Action, ScanPlan};

pub use crate::session::Family;

/// Read buffer size per connection; a frame larger than this grows it up to 65537 octets.
const READ_CHUNK: usize = 16 * 1024;

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
        if !shared.config.allowed(peer.ip()) {
            ctx.stats()
                .refused_not_allowed
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "requestor not in the allow-list: closed");
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
            debug!(%peer, "over max_connections: closed");
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
            Connection::serve(ctx2.clone(), stream, peer, family).await;
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
/// connection's `max_queries_per_connection` permits from the moment its frame is read until its
/// last message leaves this queue (written, or dropped because the socket is gone), and while it
/// holds it the query has at most `shards x credits_per_shard` scanner buffers (every chunk is
/// written into a credit), its promoted first message and its last message queued. An active
/// query holds no permit; its sends are bounded by its own backlog (`shard::active`).
struct Out {
    buf: Vec<u8>,
    skip: usize,
    credit: Option<(usize, QueryKey)>,
    /// On a query's last message (or a lone error reply): the query's permit, returned when the
    /// writer is done with this buffer (RFC 5460 §7.3: a query is finished when its last octet
    /// is written, not when its scan ends).
    _permit: Option<QueryPermit>,
}

/// One of a connection's parallel-query permits; when it is dropped the connection notes the
/// time (the idle timeout counts from the moment the last outstanding query finished).
struct QueryPermit {
    _permit: StaticPermit,
    last_done: Rc<Cell<Instant>>,
}

impl Drop for QueryPermit {
    fn drop(&mut self) {
        self.last_done.set(Instant::now());
    }
}

/// The state of one requestor connection, shared by its reader, writer and query tasks.
struct Connection {
    ctx: Rc<ShardCtx>,
    family: Family,
    out: LocalSender<Out>,
    /// Transaction ids of queries running now (duplicates are dropped).
    running: RefCell<HashSet<u32>>,
    /// Permits for parallel queries: the reader takes one before reading a frame; a query gives
    /// it back when its last message has been written.
    permits: Rc<Semaphore>,
    /// `max_queries_per_connection`.
    max_queries: u64,
    /// When the last outstanding query finished (or the connection opened).
    last_done: Rc<Cell<Instant>>,
    /// Shared with the writer: set when a write failed or timed out.
    signals: Rc<Signals>,
    /// The transaction id of the active query running on this connection (RFC 7653 §9.4: at
    /// most one, and no other query beside it).
    active: Cell<Option<u32>>,
    /// Closed when the reader stops (an active query ends with it).
    reader_done: Rc<Semaphore>,
}

impl Connection {
    async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream, peer: SocketAddr, family: Family) {
        let (reader, writer) = futures_lite::io::split(stream);
        let (out_tx, out_rx) = local_channel::new_unbounded::<Out>();
        let conn = Rc::new(Connection {
            permits: Rc::new(Semaphore::new(
                ctx.shared.config.max_queries_per_connection as u64,
            )),
            max_queries: ctx.shared.config.max_queries_per_connection as u64,
            last_done: Rc::new(Cell::new(Instant::now())),
            ctx: ctx.clone(),
            family,

            out: out_tx,
            running: RefCell::new(HashSet::new()),
            signals: Rc::new(Signals::new()),
            active: Cell::new(None),
            reader_done: Rc::new(Semaphore::new(0)),
        });
        let writer_task = glommio::spawn_local(writer_loop(
            ctx.clone(),
            conn.signals.clone(),
            peer,
            writer,
            out_rx,
        ));
        conn.clone().read_loop(reader).await;
        conn.reader_done.close();
        // Wait for running queries to finish and their last messages to be written (RFC 5460
        // §7.4: finish outstanding requests after the peer closed), then let the writer stop.
        let _ = conn.permits.acquire(conn.max_queries).await;
        conn.permits.close();
        drop(conn);
        writer_task.await;
        debug!(%peer, "connection closed");
    }

    async fn read_loop(self: Rc<Self>, mut reader: ReadHalf<TcpStream>) {
        let ctx = &self.ctx;
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            // Never read more queries than we can run at once (RFC 5460 §7.3, RFC 6926 §8.4).
            let Some(permit) = self.take_permit().await else {
                return;
            };
            // From here one permit is held: it is dropped with an answer that needs no writing,
            // or travels with the query to its last message.
            let Some(msg) = self.next_message(&mut reader, &mut rbuf).await else {
                return;
            };
            ctx.stats().queries.fetch_add(1, Ordering::Relaxed);
            // One active query per connection, alone (RFC 7653 §9.4, RFC 7724 §8.3): any other
            // query beside it is refused with NotAllowed on its own xid.
            if self.active.get().is_some() {
                let busy = session::active::busy_reply(
                    self.family,
                    &msg,
                    &ctx.shared.identity,
                    unix_now(),
                );
                if let Some(bytes) = busy {
                    ctx.stats().queries_error.fetch_add(1, Ordering::Relaxed);
                    self.send_last(bytes, Some(permit));
                    continue;
                }
            }
            let action = session::on_message(
                self.family,
                &msg,
                &ctx.shared.identity,
                &ctx.shared.config,
                &ctx.shared.links,
                unix_now(),
            );
            match action {
                Action::Close => {
                    ctx.stats()
                        .closed_protocol_error
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Action::Drop => {
                    ctx.stats().queries_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Action::Reply { bytes, close } => {
                    ctx.stats().queries_error.fetch_add(1, Ordering::Relaxed);
                    self.send_last(bytes, Some(permit));
                    if close {
                        return;
                    }
                }
                Action::Active(plan) => {
                    // The active query holds no permit: the reader keeps reading, to refuse
                    // further queries and to see the peer close.
                    if !self.running.borrow().is_empty() {
                        let id = &ctx.shared.identity;
                        if let Some(b) =
                            session::active::busy_reply(self.family, &msg, id, unix_now())
                        {
                            ctx.stats().queries_error.fetch_add(1, Ordering::Relaxed);
                            self.send_last(b, Some(permit));
                        }
                        continue;
                    }
                    drop(permit);
                    self.start_active(plan);
                }
                Action::Scan(plan) => {
                    if !self.running.borrow_mut().insert(plan.xid) {
                        // Scenario 23: a second query with a running transaction id is
                        // dropped (any answer would carry the same xid as the running stream).
                        ctx.stats()
                            .queries_duplicate_xid
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let conn = self.clone();
                    glommio::spawn_local(async move {
                        let xid = plan.xid;
                        conn.run_bulk(Arc::from(plan), permit).await;
                        conn.running.borrow_mut().remove(&xid);
                    })
                    .detach();
                }
            }
        }
    }

    /// Waits for one of the connection's parallel-query permits; `None` once they are closed.
    async fn take_permit(&self) -> Option<QueryPermit> {
        let permit = self.permits.acquire_static_permit(1).await.ok()?;
        Some(QueryPermit {
            _permit: permit,
            last_done: self.last_done.clone(),
        })
    }

    /// True when no query is outstanding: no active query, and every permit but the reader's
    /// own is free (each bulk query holds one until its last octet is written).
    fn quiet(&self) -> bool {
        self.running.borrow().is_empty() && self.permits.available() + 1 >= self.max_queries
    }

    /// The next complete message, or `None` when the connection is to close: the peer closed
    /// (a partial frame is discarded, scenario 2), a zero-length frame (scenario 1), shutdown,
    /// the writer failed, or BULK_LQ_DATA_TIMEOUT ran out. Two clocks use that timeout (RFC
    /// 5460 §7.1, §7.4): a frame must be complete within it of its first octet (however slowly
    /// the octets trickle in), and a connection without a frame begun and with no query
    /// outstanding is closed after it of idleness.
    async fn next_message(
        &self,
        reader: &mut ReadHalf<TcpStream>,
        rbuf: &mut BytesMut,
    ) -> Option<Vec<u8>> {
        let limit = self.ctx.shared.config.data_timeout();
        // A frame begun (octets of it already here) has its clock start now; otherwise the
        // idle clock runs from now, or from when the last query finished if that is later.
        let mut frame_since = (!rbuf.is_empty()).then(Instant::now);
        let mut idle_since = Instant::now();
        loop {
            if self.signals.is_broken() {
                return None;
            }
            match decode_frame(rbuf) {
                Ok(Frame::Complete { msg, consumed }) => {
                    let msg = msg.to_vec();
                    rbuf.advance(consumed);
                    return Some(msg);
                }
                Ok(Frame::NeedMore) => {}
                Err(_) => {
                    self.ctx
                        .stats()
                        .closed_protocol_error
                        .fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            let since = match frame_since {
                Some(t) => t,
                None => idle_since.max(self.last_done.get()),
            };
            // `None` (a deadline past what `Instant` holds) waits without a limit.
            let deadline = since.checked_add(limit);
            match self.read_some(reader, rbuf, deadline).await {
                ReadOutcome::Data(n) if n > 0 => {
                    frame_since.get_or_insert_with(Instant::now);
                }
                ReadOutcome::TimedOut => {
                    if frame_since.is_some() {
                        self.ctx
                            .stats()
                            .closed_frame_timeout
                            .fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    if self.quiet() && self.last_done.get() <= since {
                        self.ctx.stats().closed_idle.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    // A query is outstanding (not idle; a blocked send is the writer's to
                    // time out), or one finished since: the idle clock starts again.
                    idle_since = Instant::now();
                }
                _ => return None,
            }
        }
    }

    /// Reads more bytes, waiting at most until `deadline`, shutdown, or the connection broken.
    async fn read_some(
        &self,
        reader: &mut ReadHalf<TcpStream>,
        rbuf: &mut BytesMut,
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
                rbuf.extend_from_slice(&tmp[..n]);
                ReadOutcome::Data(n)
            }
            Some(Err(_)) => ReadOutcome::Closed,
            None => ReadOutcome::Stop,
        }
    }

    /// Starts the active query's driver (`shard::active::run`).
    fn start_active(self: &Rc<Self>, plan: Box<session::active::ActivePlan>) {
        let xid = plan.xid;
        self.running.borrow_mut().insert(xid);
        self.active.set(Some(xid));
        let conn = self.clone();
        let sender = self.clone();
        let io = ConnIo {
            send: Box::new(move |buf, credit| {
                let _ = sender.out.try_send(Out {
                    buf,
                    skip: 0,
                    credit,
                    _permit: None,
                });
            }),
            dead: self.signals.clone(),
            reader_done: self.reader_done.clone(),
        };
        glommio::spawn_local(async move {
            super::active::run(conn.ctx.clone(), Arc::from(plan), io).await;
            conn.running.borrow_mut().remove(&xid);
            conn.active.set(None);
        })
        .detach();
    }

    /// Queues bytes for the writer.
    fn send(&self, bytes: Vec<u8>) {
        self.send_last(bytes, None);
    }

    /// Queues a query's last message, with the query's permit (given back once it is written).
    fn send_last(&self, bytes: Vec<u8>, permit: Option<QueryPermit>) {
        let _ = self.out.try_send(Out {
            buf: bytes,
            skip: 0,
            credit: None,
            _permit: permit,
        });
    }

    /// The origin side of a bulk query: scatter the scan, gather chunks, promote the first
    /// record, end the stream the way the RFC says.
    async fn run_bulk(self: &Rc<Self>, plan: Arc<ScanPlan>, permit: QueryPermit) {
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
        let mut finished = 0usize;
        let mut total: u64 = 0;
        let mut first_sent = false;
        let outcome = loop {
            if finished == shards {
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
            if failed {
                break Err(());
            }
            if self.signals.is_broken() {
                break Err(());
            }
            let mut skip = 0;
            if records > 0 && !first_sent {
                match plan.promote_first(&buf) {
                    Some((first, consumed)) => {
                        self.send(first);
                        skip = consumed;
                        first_sent = true;
                    }
                    None => break Err(()),
                }
            }
            total += records as u64;
            let credit = if done {
                None
            } else {
                Some((from as usize, key))
            };
            if done {
                finished += 1;
            }
            if skip < buf.len() || credit.is_some() {
                let _ = self.out.try_send(Out {
                    buf,
                    skip,
                    credit,
                    _permit: None,
                });
            }
        };
        ctx.routes.borrow_mut().remove(&key);
        ctx.stats().records_sent.fetch_add(total, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                ctx.stats().bulk_completed.fetch_add(1, Ordering::Relaxed);
                self.send_last(plan.finish(total, unix_now()), Some(permit));
            }
            Err(()) => {
                for s in 0..shards {
                    ctx.post(s, Mail::Cancel { key }).await;
                }
                ctx.stats().bulk_terminated.fetch_add(1, Ordering::Relaxed);
                if !self.signals.is_broken() {
                    self.send_last(plan.terminated(first_sent, unix_now()), Some(permit));
                }
            }
        }
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
/// write blocked for BULK_LQ_DATA_TIMEOUT breaks the connection.
async fn writer_loop(
    ctx: Rc<ShardCtx>,
    signals: Rc<Signals>,
    peer: SocketAddr,
    mut writer: WriteHalf<TcpStream>,
    rx: LocalReceiver<Out>,
) {
    let timeout = ctx.shared.config.data_timeout();
    while let Some(out) = rx.recv().await {
        if signals.is_broken() {
            // The socket is gone: drop what is queued (queries stop on `dead`).
            continue;
        }
        let data = &out.buf[out.skip.min(out.buf.len())..];
        // The deadline is checked before the write is polled again: when the timer fires, the
        // poll it causes may find room in the socket that readiness did not report (the kernel
        // accepts data below the POLLOUT threshold), and a write rescued that way would let a
        // requestor that reads nothing hold the connection for 2T, not T.
        let res = futures_lite::future::or(
            async {
                glommio::timer::sleep(timeout).await;
                WriteEnd::TimedOut
            },
            // A connection broken elsewhere (an active query's send timeout) abandons the write.
            futures_lite::future::or(
                async {
                    match writer.write_all(data).await {
                        Ok(()) => WriteEnd::Written,
                        Err(e) => WriteEnd::Failed(e),
                    }
                },
                async {
                    let _ = signals.dead.acquire(1).await;
                    WriteEnd::Failed(std::io::Error::other("connection broken"))
                },
            ),
        )
        .await;
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
