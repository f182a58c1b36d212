//! Following a server's bindings (`lqctl watch`), sans-io: bulk load, then active leasequery
//! with a catch-up from the bulk load's base time; on a lost connection, reconnect with
//! backoff and catch up from the last base time seen (RFC 7653 §8.3, RFC 7724 §7.3); on
//! DataMissing, load again by bulk query and emit the difference (RFC 7653 §8.4).
//!
//! The caller owns the socket and the clock. It feeds a [`Watch`] the connection's events
//! ([`Watch::connected`], [`Watch::disconnected`]), each received message
//! ([`Watch::message`]) and the time ([`Watch::tick`], [`Watch::wake_at`]), and after each
//! input drains [`Watch::poll`]: what to send ([`Output::SendBulk`], [`Output::SendActive`]),
//! when to connect or close, and the [`Change`]s to emit.
//!
//! Changes come from the table's difference only: a message that does not change what the
//! table holds emits nothing. A catch-up that repeats records already seen, a reconnect that
//! catches up from a little before the last base time, a reload that finds most bindings as
//! they were: none emits a change twice. The table holds bound bindings only (an unassigned
//! or expired one is removed), which keeps it small. A bulk load (the first, or a reload) is
//! applied as it comes, marking each binding it reports; at its end the bindings it did not
//! report are removed (mark and sweep), so a reload needs no second table. Every upsert is
//! thus emitted while the message that reports it is handled (a caller that wants the whole
//! record, lease times and all, decodes that message); removals at the end of a load come
//! with the DONE.
//!
//! Times: `now_ms` is any monotonic clock in milliseconds (only differences count); the
//! catch-up start times are the server's base times (Unix seconds) as its messages carry them
//! (the queries must ask for OPTION_LQ_BASE_TIME in v6 and DHCP4o6; DHCPv4 always carries
//! base-time), and `now_unix` is only a fallback when a bulk answer carries none.
//!
//! Several servers: one [`Watch`] each, and [`merge`] turns each server's change into the
//! change of the merged view (a key held by one server only) and names a conflict when two
//! servers hold the same key (left out of the view until only one holds it).

use std::collections::VecDeque;

use super::reply::{self, Answer, Ending, Stream, Wire};
use super::table::{Key, Table, Value};
use crate::proto::codes::v6status;

/// Seconds a catch-up starts before the last base time seen. A base time has a resolution of
/// one second and the server's shards send their updates on one stream each as they come, so
/// a change stamped a second before a message's base time may still be on its way when the
/// connection drops; catching up from a little earlier re-sends some changes, which the table
/// absorbs (they emit nothing).
pub const RESUME_MARGIN: u32 = 2;

/// A change of what the table holds for one binding: `old` and `new` are `None` when it is
/// not held (unknown, released, expired). `new: None` is a removal, else an upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The binding.
    pub key: Key,
    /// What was held before.
    pub old: Option<Value>,
    /// What is held now.
    pub new: Option<Value>,
}

impl Change {
    /// True for a removal.
    pub fn is_remove(&self) -> bool {
        self.new.is_none()
    }
}

/// Reconnect delays: `initial_ms` doubled after each failed attempt up to `max_ms`, then
/// scaled by a jitter factor between 0.5 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial_ms: u64,
    /// The cap.
    pub max_ms: u64,
}

impl Backoff {
    /// The delay before retry `attempt` (0 for the first), with `jitter` in 0..1 (out of range
    /// is clamped): `min(max, initial * 2^attempt) * (0.5 + jitter / 2)`.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let base = self
            .initial_ms
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.max_ms);
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        (base as f64 * (0.5 + j / 2.0)) as u64
    }
}

/// How one server is followed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The wire form of the queries and answers.
    pub wire: Wire,
    /// Bulk queries that make up a full load (sent one after the other on one connection;
    /// at least 1).
    pub bulk_queries: usize,
    /// Reconnect delays.
    pub backoff: Backoff,
}

/// What happened, for a person following along (`--verbose`) and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A bulk load starts (`reload`: after DataMissing or a load cut short, the table is
    /// diffed against it).
    Loading {
        /// A reload.
        reload: bool,
    },
    /// The bulk load is complete.
    Loaded {
        /// Bindings it held (bound or not).
        bindings: u64,
    },
    /// The active query is sent, catching up from `start`.
    Subscribed {
        /// Unix seconds.
        start: u32,
    },
    /// CatchUpComplete: following in real time.
    CaughtUp,
    /// The server cannot catch up from that start time: reloading (after a backoff delay,
    /// see [`Note::Lost`]).
    DataMissing,
    /// The connection was lost or the server ended the query; reconnecting after `retry_ms`.
    Lost {
        /// Why.
        reason: String,
        /// Delay before the next attempt.
        retry_ms: u64,
    },
}

/// What the caller must do, or emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open the connection; then call [`Watch::connected`] or [`Watch::disconnected`].
    Connect,
    /// Close the connection (no [`Watch::disconnected`] needed after it).
    Close,
    /// Send bulk query number `i` (of [`Config::bulk_queries`]).
    SendBulk(usize),
    /// Send the active query with this catch-up start time (Unix seconds).
    SendActive {
        /// The catch-up start.
        start: u32,
    },
    /// Emit this change.
    Change(Change),
    /// Something to tell a person.
    Note(Note),
    /// Following this server failed for good (a refusal or an error status): exit 1.
    Fail(String),
}

/// Counters for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bulk loads completed.
    pub loads: u64,
    /// Bindings received (bulk and active).
    pub bindings: u64,
    /// Changes emitted.
    pub changes: u64,
    /// Connections lost.
    pub lost: u64,
    /// DataMissing answers.
    pub data_missing: u64,
}

#[derive(Debug)]
enum Phase {
    /// Reconnect at this time.
    Down(u64),
    Connecting,
    Bulk {
        stream: Stream,
        query: usize,
        /// The earliest base time of the load.
        base: Option<u32>,
        /// Base time when the answers carry none: the local clock at the start.
        fallback: u32,
        bindings: u64,
    },
    Active {
        stream: Stream,
    },
    Failed,
}

/// The state of following one server.
#[derive(Debug)]
pub struct Watch {
    cfg: Config,
    table: Table,
    phase: Phase,
    /// Where the next active query catches up from; `None` when a bulk load is needed.
    resume: Option<u32>,
    /// Failed attempts since the last successful catch-up.
    attempt: u32,
    out: VecDeque<Output>,
    stats: Stats,
}

impl Watch {
    /// Follows a server from nothing: connects, bulk-loads, subscribes.
    pub fn new(cfg: Config) -> Watch {
        Watch::with_table(cfg, Table::new(), None)
    }

    /// Resumes from a saved table that was current at `base` (see [`Watch::checkpoint`]):
    /// connects and catches up from `base`; a DataMissing answer reloads and diffs.
    pub fn resume(cfg: Config, table: Table, base: u32) -> Watch {
        Watch::with_table(cfg, table, Some(base))
    }

    fn with_table(mut cfg: Config, table: Table, resume: Option<u32>) -> Watch {
        cfg.bulk_queries = cfg.bulk_queries.max(1);
        let mut out = VecDeque::new();
        out.push_back(Output::Connect);
        Watch {
            cfg,
            table,
            phase: Phase::Connecting,
            resume,
            attempt: 0,
            out,
            stats: Stats::default(),
        }
    }

    /// The next thing to do or emit; drain after every input.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The table: the bound bindings as the server holds them, as far as this watch knows.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The catch-up start time to save with [`Watch::table`] (a later [`Watch::resume`] from
    /// both misses nothing), or `None` while the table is not a consistent point (before the
    /// first load completes, during a reload).
    pub fn checkpoint(&self) -> Option<u32> {
        match self.phase {
            Phase::Bulk { .. } => None,
            _ => self.resume,
        }
    }

    /// True once the active query has caught up and updates come as they happen.
    pub fn caught_up(&self) -> bool {
        matches!(&self.phase, Phase::Active { stream } if stream.caught_up())
    }

    /// True after [`Output::Fail`].
    pub fn failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// When [`Watch::tick`] must be called next (a reconnect is due), if ever.
    pub fn wake_at(&self) -> Option<u64> {
        match self.phase {
            Phase::Down(at) => Some(at),
            _ => None,
        }
    }

    /// The time is `now_ms`: starts a due reconnect.
    pub fn tick(&mut self, now_ms: u64) {
        if let Phase::Down(at) = self.phase {
            if now_ms >= at {
                self.phase = Phase::Connecting;
                self.out.push_back(Output::Connect);
            }
        }
    }

    /// The connection is up: subscribe (catching up) when the table is current as of a base
    /// time, else bulk-load first. `now_unix` (Unix seconds) is the fallback base time of a
    /// bulk answer without one.
    pub fn connected(&mut self, now_unix: u32) {
        if !matches!(self.phase, Phase::Connecting) {
            return;
        }
        match self.resume {
            Some(start) => self.subscribe(start),
            None => {
                let reload = !self.table.is_empty();
                self.out.push_back(Output::Note(Note::Loading { reload }));
                // Mark and sweep: every binding the load reports is set (emitting what
                // changed, as it comes) and marked; what is left unmarked at the end is gone.
                self.table.unmark();
                self.phase = Phase::Bulk {
                    stream: Stream::bulk(self.cfg.wire),
                    query: 0,
                    base: None,
                    fallback: now_unix.saturating_sub(RESUME_MARGIN),
                    bindings: 0,
                };
                self.out.push_back(Output::SendBulk(0));
            }
        }
    }

    /// The connection failed or was lost (also when connecting failed): reconnect after a
    /// backoff delay, `jitter` in 0..1 from the caller's random source.
    pub fn disconnected(&mut self, now_ms: u64, jitter: f64, reason: &str) {
        if matches!(self.phase, Phase::Down(_) | Phase::Failed) {
            return;
        }
        // A bulk load cut short is dropped; with nothing held before, the table holds part of
        // it, and the next load is a reload (diffed, so nothing is emitted twice).
        self.stats.lost += 1;
        self.lost(now_ms, jitter, reason.to_string());
    }

    fn lost(&mut self, now_ms: u64, jitter: f64, reason: String) {
        let retry_ms = self.cfg.backoff.delay_ms(self.attempt, jitter);
        self.attempt = self.attempt.saturating_add(1);
        self.phase = Phase::Down(now_ms.saturating_add(retry_ms));
        self.out
            .push_back(Output::Note(Note::Lost { reason, retry_ms }));
    }

    fn subscribe(&mut self, start: u32) {
        self.phase = Phase::Active {
            stream: Stream::active(self.cfg.wire),
        };
        self.out.push_back(Output::Note(Note::Subscribed { start }));
        self.out.push_back(Output::SendActive { start });
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Failed;
        self.out.push_back(Output::Close);
        self.out.push_back(Output::Fail(why));
    }

    /// Sets what the table holds for `key` (a binding that is not bound is not held) and emits
    /// the change, if it is one.
    fn set(&mut self, key: Key, value: Value) {
        let old = if value.active {
            self.table.insert(&key, &value)
        } else {
            self.table.remove(&key)
        };
        let new = value.active.then_some(value);
        if old != new {
            self.stats.changes += 1;
            self.out.push_back(Output::Change(Change { key, old, new }));
        }
    }

    /// A message received on the connection, at `now_ms`; `jitter` (0..1) scales the delay
    /// of a reconnect the message may cause (the server ended the query, DataMissing).
    pub fn message(&mut self, msg: &[u8], now_ms: u64, jitter: f64) {
        let wire = self.cfg.wire;
        match &mut self.phase {
            Phase::Bulk {
                stream,
                base,
                bindings,
                ..
            } => {
                let a = stream.handle(msg);
                if let Some(t) = reply::base_time(wire, msg) {
                    *base = Some(base.map_or(t, |b| b.min(t)));
                }
                if let Answer::Binding(b) = a {
                    self.stats.bindings += 1;
                    *bindings += 1;
                    if let Some((key, value)) = Table::decode(&b) {
                        self.set(key, value);
                    }
                }
                self.after_bulk_message();
            }
            Phase::Active { stream } => {
                let was_caught_up = stream.caught_up();
                let a = stream.handle(msg);
                let caught_up = stream.caught_up();
                let end = stream.end();
                if let Answer::Binding(b) = a {
                    self.stats.bindings += 1;
                    if let Some((key, value)) = Table::decode(&b) {
                        self.set(key, value);
                    }
                }
                if caught_up {
                    // From CatchUpComplete on, a message's base time is a consistent point:
                    // every change before it has been sent (within RESUME_MARGIN).
                    if let Some(t) = reply::base_time(wire, msg) {
                        let t = t.saturating_sub(RESUME_MARGIN);
                        self.resume = Some(self.resume.map_or(t, |r| r.max(t)));
                    }
                    if !was_caught_up {
                        self.attempt = 0;
                        self.out.push_back(Output::Note(Note::CaughtUp));
                    }
                }
                match end {
                    None => {}
                    Some(Ending::DataMissing) => {
                        self.stats.data_missing += 1;
                        self.resume = None;
                        self.out.push_back(Output::Note(Note::DataMissing));
                        // Reload on a new connection (the server has ended the query), after a
                        // backoff delay: a server that cannot serve the catch-up of a fresh
                        // load either (it started a moment ago, or its history is too short
                        // for its rate of change) is not asked again and again at once.
                        self.out.push_back(Output::Close);
                        self.lost(now_ms, jitter, "reloading after DataMissing".into());
                    }
                    Some(Ending::Complete(s)) => {
                        self.out.push_back(Output::Close);
                        self.stats.lost += 1;
                        let why = match s {
                            Some(s) => {
                                format!("the server ended the active query (status {})", s.v6())
                            }
                            None => "the server ended the active query".to_string(),
                        };
                        self.lost(now_ms, jitter, why);
                    }
                    Some(Ending::Refused(s)) => self.fail(format!(
                        "the server refused the active query (status {})",
                        s.v6()
                    )),
                    Some(Ending::Unexpected) => {
                        self.out.push_back(Output::Close);
                        self.stats.lost += 1;
                        self.lost(
                            now_ms,
                            jitter,
                            "a message that is no leasequery answer".into(),
                        );
                    }
                }
            }
            Phase::Down(_) | Phase::Connecting | Phase::Failed => {}
        }
    }

    fn after_bulk_message(&mut self) {
        let Phase::Bulk {
            stream,
            query,
            base,
            fallback,
            bindings,
        } = &mut self.phase
        else {
            return;
        };
        match stream.end() {
            None => {}
            Some(Ending::Complete(s)) if s.is_none_or(|s| s.v6() == v6status::SUCCESS) => {
                *query += 1;
                if *query < self.cfg.bulk_queries {
                    *stream = Stream::bulk(self.cfg.wire);
                    self.out.push_back(Output::SendBulk(*query));
                    return;
                }
                let start = base.unwrap_or(*fallback).saturating_sub(RESUME_MARGIN);
                let loaded = *bindings;
                self.stats.loads += 1;
                self.out
                    .push_back(Output::Note(Note::Loaded { bindings: loaded }));
                for (key, old) in self.table.sweep() {
                    self.stats.changes += 1;
                    self.out.push_back(Output::Change(Change {
                        key,
                        old: Some(old),
                        new: None,
                    }));
                }
                self.resume = Some(start);
                self.subscribe(start);
            }
            Some(Ending::Complete(s)) => {
                let q = *query;
                self.fail(format!(
                    "bulk query {} answered status {}",
                    q + 1,
                    s.map_or(0, |s| s.v6())
                ));
            }
            Some(e) => {
                let q = *query;
                self.fail(format!("bulk query {} ended: {e:?}", q + 1));
            }
        }
    }
}

/// What one server's change makes of the merged view of several servers' tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The change of the merged view, if any. A key is in the view while exactly one server
    /// holds it: held by two or more it is a conflict and left out (never merged silently,
    /// as `lqctl bulk` leaves it out), and it shows again once only one holds it.
    pub change: Option<Change>,
    /// Another server that holds the key this server now holds: a conflict to report.
    pub conflict: Option<usize>,
}

/// Merges `change`, from server `from`, into the view over `tables` (every server's, in order;
/// `tables[from]` already holds the change and is not read).
pub fn merge(tables: &[&Table], from: usize, change: &Change) -> Merged {
    let others: Vec<Value> = tables
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != from)
        .filter_map(|(_, t)| t.get(&change.key))
        .collect();
    let view = |mine: &Option<Value>| match (mine, others.as_slice()) {
        (Some(v), []) => Some(v.clone()),
        (None, [v]) => Some(v.clone()),
        _ => None,
    };
    let before = view(&change.old);
    let after = view(&change.new);
    let conflict = change.new.as_ref().and_then(|_| {
        (0..tables.len()).find(|&i| i != from && tables[i].get(&change.key).is_some())
    });
    Merged {
        change: (before != after).then(|| Change {
            key: change.key.clone(),
            old: before,
            new: after,
        }),
        conflict,
    }
}

#[cfg(test)]
mod tests;
