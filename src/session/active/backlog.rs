//! One subscriber's coalescing queue (the latest state of a binding replaces the queued one,
//! RFC 7653 §7, RFC 7724 §6), bounded in bindings and octets.

use std::collections::VecDeque;
use std::rc::Rc;

use hashbrown::HashMap;

use crate::lease::BindingKey;

/// Bounds of one subscriber's backlog (config `active_backlog_bindings`,
/// `active_backlog_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Most distinct bindings waiting.
    pub max_bindings: usize,
    /// Most octets waiting (encoded messages).
    pub max_bytes: usize,
}

/// What [`Backlog::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The backlog was empty before this push (the subscriber's writer needs a wake-up).
    pub was_empty: bool,
    /// Waiting messages replaced by a later state of their binding during this push (RFC 7653
    /// §7: the latest state wins): non-zero only when a bound was reached and the backlog was
    /// compacted, or while it stays indexed after that.
    pub coalesced: usize,
}

/// The backlog went over one of its bounds: the subscriber is to be terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subscriber backlog over its bound ({bindings} bindings, {bytes} octets)")]
pub struct Overflow {
    /// Bindings waiting, the refused one included.
    pub bindings: usize,
    /// Octets waiting, the refused one included.
    pub bytes: usize,
}

/// One waiting message.
#[derive(Debug)]
struct Slot<T> {
    key: Option<Rc<BindingKey>>,
    item: T,
    bytes: usize,
}

/// One subscriber's FIFO of encoded messages, bounded in bindings and octets, coalescing when it
/// has to.
///
/// A subscriber that keeps up costs one append and one pop per message: nothing is indexed.
/// When a push would take the backlog over a bound, the backlog is first compacted: every
/// binding's latest message replaces its oldest waiting one, in that one's place, and later
/// duplicates leave (RFC 7653 §7, RFC 7724 §6 allow sending only the latest state). Only if it
/// is still over a bound after that is the push refused. From the first compaction until the
/// backlog drains, an index keeps it compacted on every push. Control messages (statuses,
/// no key) are never coalesced and keep their place, so CatchUpComplete stays after every
/// catch-up binding.
///
/// The key is shared (`Rc`): one shard computes a change's key once for all its subscribers.
#[derive(Debug)]
pub struct Backlog<T> {
    limits: BacklogLimits,
    slots: VecDeque<Option<Slot<T>>>,
    /// Absolute position of `slots[0]`.
    head: u64,
    /// Binding -> absolute position of its waiting message; only after a compaction.
    index: Option<HashMap<Rc<BindingKey>, u64>>,
    /// Messages waiting (`Some` slots).
    waiting: usize,
    /// Keyed messages waiting (distinct bindings while indexed).
    keyed: usize,
    bytes: usize,
}

impl<T> Backlog<T> {
    /// An empty backlog.
    pub fn new(limits: BacklogLimits) -> Backlog<T> {
        Backlog {
            limits,
            slots: VecDeque::new(),
            head: 0,
            index: None,
            waiting: 0,
            keyed: 0,
            bytes: 0,
        }
    }

    /// Keyed messages waiting: distinct bindings once the backlog has been compacted, an upper
    /// bound on them before.
    pub fn bindings(&self) -> usize {
        self.keyed
    }

    /// Octets waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// True while the backlog keeps an index (it reached a bound since it was last empty).
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Queues `item` (`bytes` octets) for binding `key` (`None`: a control message). Over a
    /// bound, after compaction, the item is refused with [`Overflow`].
    pub fn push(
        &mut self,
        key: Option<Rc<BindingKey>>,
        item: T,
        bytes: usize,
    ) -> Result<Pushed, Overflow> {
        let was_empty = self.is_empty();
        let mut coalesced = 0;
        if self.index.is_none() && self.over(key.is_some(), bytes) {
            coalesced = self.compact();
        }
        if let (Some(index), Some(k)) = (&self.index, &key) {
            if let Some(&pos) = index.get(k) {
                let i = usize::try_from(pos - self.head).unwrap_or(usize::MAX);
                if let Some(Some(slot)) = self.slots.get_mut(i) {
                    let total = self.bytes - slot.bytes + bytes;
                    if total > self.limits.max_bytes {
                        return Err(Overflow {
                            bindings: self.keyed,
                            bytes: total,
                        });
                    }
                    self.bytes = total;
                    slot.item = item;
                    slot.bytes = bytes;
                    return Ok(Pushed {
                        was_empty,
                        coalesced: coalesced + 1,
                    });
                }
            }
        }
        if self.over(key.is_some(), bytes) {
            return Err(Overflow {
                bindings: self.keyed + usize::from(key.is_some()),
                bytes: self.bytes + bytes,
            });
        }
        if let (Some(index), Some(k)) = (&mut self.index, &key) {
            index.insert(k.clone(), self.head + self.slots.len() as u64);
        }
        self.keyed += usize::from(key.is_some());
        self.bytes += bytes;
        self.waiting += 1;
        self.slots.push_back(Some(Slot { key, item, bytes }));
        Ok(Pushed {
            was_empty,
            coalesced,
        })
    }

    /// Would one more message (`keyed`, `bytes` octets) go over a bound?
    fn over(&self, keyed: bool, bytes: usize) -> bool {
        self.keyed + usize::from(keyed) > self.limits.max_bindings
            || self.bytes + bytes > self.limits.max_bytes
    }

    /// Builds the index, moving each binding's latest message into the place of its oldest
    /// waiting one; returns how many messages were replaced.
    fn compact(&mut self) -> usize {
        let mut index: HashMap<Rc<BindingKey>, u64> = HashMap::with_capacity(self.keyed);
        let mut replaced = 0;
        for i in 0..self.slots.len() {
            let Some(key) = self.slots[i].as_ref().and_then(|s| s.key.clone()) else {
                continue;
            };
            let pos = self.head + i as u64;
            match index.get(&key) {
                None => {
                    index.insert(key, pos);
                }
                Some(&first) => {
                    let Some(later) = self.slots[i].take() else {
                        continue;
                    };
                    let j = usize::try_from(first - self.head).unwrap_or(usize::MAX);
                    if let Some(Some(slot)) = self.slots.get_mut(j) {
                        self.bytes -= slot.bytes;
                        slot.item = later.item;
                        slot.bytes = later.bytes;
                    }
                    self.keyed -= 1;
                    self.waiting -= 1;
                    replaced += 1;
                }
            }
        }
        self.index = Some(index);
        replaced
    }

    /// Takes the oldest waiting messages, in order, until about `max_bytes` octets (at least one).
    pub fn pop(&mut self, max_bytes: usize) -> Vec<T> {
        let mut out = Vec::new();
        let mut taken = 0;
        while let Some(front) = self.slots.pop_front() {
            self.head += 1;
            let Some(slot) = front else {
                continue;
            };
            if let Some(k) = slot.key {
                if let Some(index) = &mut self.index {
                    index.remove(&k);
                }
                self.keyed -= 1;
            }
            self.waiting -= 1;
            self.bytes -= slot.bytes;
            taken += slot.bytes;
            out.push(slot.item);
            if taken >= max_bytes {
                break;
            }
        }
        if self.waiting == 0 {
            // Drained: back to plain appends; a large ring's memory goes.
            self.slots.clear();
            if self.slots.capacity() > 4096 {
                self.slots = VecDeque::new();
            }
            self.index = None;
        }
        out
    }
}
