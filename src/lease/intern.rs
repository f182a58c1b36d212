//! A refcounted interner of byte strings, each with a sorted posting list of table slots.
//! Used for values many bindings share (relay-ids, links) so a binding stores a `u32`.

use hashbrown::HashTable;

use super::stable_hash;

#[derive(Debug, Default)]
struct Entry {
    bytes: Box<[u8]>,
    refs: u32,
    posts: Vec<u32>,
}

/// Interned byte strings. Ids are `1..`; 0 means "none" in the tables.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    entries: Vec<Entry>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl Interner {
    fn entry(&self, id: u32) -> Option<&Entry> {
        self.entries.get((id as usize).wrapping_sub(1))
    }

    fn entry_mut(&mut self, id: u32) -> Option<&mut Entry> {
        self.entries.get_mut((id as usize).wrapping_sub(1))
    }

    /// The id of `bytes`, if interned.
    pub(crate) fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(stable_hash(bytes), |&id| {
                entries
                    .get((id as usize).wrapping_sub(1))
                    .is_some_and(|e| &*e.bytes == bytes)
            })
            .copied()
    }

    /// Interns `bytes` (or takes one more reference) and adds `slot` to its postings.
    /// `None` when the id space is exhausted.
    pub(crate) fn acquire(&mut self, bytes: &[u8], slot: u32) -> Option<u32> {
        let id = match self.lookup(bytes) {
            Some(id) => id,
            None => {
                let entry = Entry {
                    bytes: bytes.into(),
                    refs: 0,
                    posts: Vec::new(),
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        *self.entry_mut(id)? = entry;
                        id
                    }
                    None => {
                        let id = u32::try_from(self.entries.len()).ok()?.checked_add(1)?;
                        self.entries.push(entry);
                        id
                    }
                };
                let entries = &self.entries;
                self.index.insert_unique(stable_hash(bytes), id, |&i| {
                    entries
                        .get((i as usize).wrapping_sub(1))
                        .map_or(0, |e| stable_hash(&e.bytes))
                });
                id
            }
        };
        let e = self.entry_mut(id)?;
        e.refs = e.refs.saturating_add(1);
        if let Err(at) = e.posts.binary_search(&slot) {
            e.posts.insert(at, slot);
        }
        Some(id)
    }

    /// Drops one reference (and `slot`'s posting); the string is forgotten at zero.
    pub(crate) fn release(&mut self, id: u32, slot: u32) {
        let Some(e) = self.entry_mut(id) else { return };
        if let Ok(at) = e.posts.binary_search(&slot) {
            e.posts.remove(at);
        }
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let old = std::mem::take(e);
        if let Ok(found) = self.index.find_entry(stable_hash(&old.bytes), |&i| i == id) {
            found.remove();
        }
        self.free.push(id);
    }

    /// The interned string (empty for an unknown id).
    pub(crate) fn bytes(&self, id: u32) -> &[u8] {
        self.entry(id).map_or(&[], |e| &e.bytes)
    }

    /// The slots holding `id`, ascending.
    pub(crate) fn posts(&self, id: u32) -> &[u32] {
        self.entry(id).map_or(&[], |e| &e.posts)
    }

    /// Heap bytes held (capacity-based estimate).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .entries
                .iter()
                .map(|e| e.bytes.len() + e.posts.capacity() * 4)
                .sum::<usize>()
            + self.free.capacity() * 4
            + self.index.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_counts_references_and_postings() {
        let mut i = Interner::default();
        let a = i.acquire(b"relay-a", 5).unwrap();
        assert_eq!(i.acquire(b"relay-a", 2), Some(a));
        let b = i.acquire(b"relay-b", 1).unwrap();
        assert_ne!(a, b);
        assert_eq!(i.posts(a), &[2, 5]);
        assert_eq!(i.bytes(b), b"relay-b");
        i.release(a, 5);
        assert_eq!(i.lookup(b"relay-a"), Some(a));
        assert_eq!(i.posts(a), &[2]);
        i.release(a, 2);
        assert_eq!(i.lookup(b"relay-a"), None);
        // The freed id is reused for the next new string.
        assert_eq!(i.acquire(b"relay-c", 9), Some(a));
        assert_eq!(i.bytes(a), b"relay-c");
        assert_eq!(i.lookup(b"relay-b"), Some(b));
    }
}
