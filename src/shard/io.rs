//! What a connection's tasks share with its writer: [`Signals`] (the socket is gone) and
//! [`ConnIo`] (what an active query's driver needs from its connection). In a file of its own
//! so that `conn.rs` (which starts active queries) and `active.rs` (which runs them) do not
//! import each other.

use std::cell::Cell;
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::mail::QueryKey;

/// How the writer tells the rest of the connection that the socket is gone.
pub(super) struct Signals {
    broken: Cell<bool>,
    /// Closed (every waiter wakes) when `broken` is set.
    pub(super) dead: Semaphore,
}

impl Signals {
    pub(super) fn new() -> Signals {
        Signals {
            broken: Cell::new(false),
            dead: Semaphore::new(0),
        }
    }

    /// True once the socket is gone.
    pub(super) fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// Marks the socket gone: the writer drops what is queued, the reader stops.
    pub(super) fn break_now(&self) {
        self.broken.set(true);
        self.dead.close();
    }
}

/// Queues a buffer for the connection's writer, with an optional credit key.
pub(super) type SendFn = Box<dyn Fn(Vec<u8>, Option<(usize, QueryKey)>)>;

/// What the active-query driver needs from its connection (see `conn.rs`).
pub(super) struct ConnIo {
    /// Queues a buffer for the writer; with a credit key, the writer hands the buffer back
    /// (as `Mail::Credit`) once written.
    pub send: SendFn,
    /// Closed when the writer failed (the socket is gone).
    pub dead: Rc<Signals>,
    /// Closed when the reader stopped (peer closed, protocol error, shutdown).
    pub reader_done: Rc<Semaphore>,
}
